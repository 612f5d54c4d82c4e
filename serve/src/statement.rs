//! SQL text from a client (PostgreSQL wire or HTTP) into statements we may
//! run.
//!
//! Parsing goes through `datafusion-pg-catalog`'s PostgreSQL compatibility
//! parser, which rewrites what clients send on connect (`::regclass` casts,
//! `ANY(array)`, psql's and pgjdbc's catalog queries) into SQL DataFusion
//! plans. Every statement is then sorted into what runs ([`Kind`]):
//! session statements answered by the handler (`SET`, `SHOW`, `BEGIN`,
//! cursors, `DISCARD`), queries, and everything else, refused as PostgreSQL
//! refuses a write in a read-only transaction (SQLSTATE 25006).

use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::sqlstate::{self, Failure};

/// What a parsed statement is to the handler.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// A query (or `EXPLAIN` of one): planned and run read-only.
    Query,
    /// Answered by the session hooks without reading the lake.
    Session,
    /// `DECLARE`, `FETCH`, `CLOSE` (the PostgreSQL wire's cursors).
    Cursor,
    /// `DISCARD ALL` / `DISCARD …`: forget the connection's settings.
    Discard,
    /// Refused with this message.
    Refused(String),
}

/// Sort `statement` (see the module docs).
pub fn kind(statement: &Statement) -> Kind {
    match statement {
        Statement::Query(_) => Kind::Query,
        Statement::Explain { statement, .. } => match kind(statement) {
            Kind::Query => Kind::Query,
            Kind::Refused(message) => Kind::Refused(message),
            _ => refused(statement),
        },
        Statement::Set(_)
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. } => Kind::Session,
        Statement::Declare { .. } | Statement::Fetch { .. } | Statement::Close { .. } => {
            Kind::Cursor
        }
        Statement::Discard { .. } => Kind::Discard,
        other => refused(other),
    }
}

fn refused(statement: &Statement) -> Kind {
    let text = statement.to_string();
    let mut words = text.split_whitespace();
    let first = words
        .next()
        .unwrap_or("this statement")
        .to_ascii_uppercase();
    let verb = match first.as_str() {
        "CREATE" | "DROP" | "ALTER" => match words.next() {
            Some(second) => format!("{first} {}", second.to_ascii_uppercase()),
            None => first,
        },
        _ => first,
    };
    Kind::Refused(format!(
        "cannot execute {verb} in a read-only transaction (icefjord serve only reads the lake)"
    ))
}

/// The error for a refused statement.
pub fn refusal(message: String) -> Failure {
    Failure::new(sqlstate::READ_ONLY_SQL_TRANSACTION, message)
}

/// DataFusion's own DDL (`CREATE EXTERNAL TABLE … LOCATION`) is not
/// PostgreSQL and does not parse; say it is refused rather than misspelt.
fn refused_syntax(sql: &str) -> Option<Failure> {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(3)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    (words.len() >= 2
        && words[0] == "CREATE"
        && (words[1] == "EXTERNAL" || words[1] == "UNBOUNDED"))
        .then(|| {
            refusal(format!(
                "cannot execute CREATE {} TABLE in a read-only transaction \
                 (icefjord serve only reads the lake)",
                words[1]
            ))
        })
}

/// Parses client SQL (one per server; it holds no per-connection state).
#[derive(Debug, Default)]
pub struct StatementParser {
    compat: PostgresCompatibilityParser,
}

impl StatementParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// The statements of `sql`; a syntax error is SQLSTATE 42601.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, Failure> {
        let mut statements = self
            .compat
            .parse(sql)
            .map_err(|e| refused_syntax(sql).unwrap_or_else(|| Failure::parser(&e)))?;
        statements
            .iter_mut()
            .for_each(crate::pg::catalog_rewrite::rewrite);
        Ok(statements)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(sql: &str) -> Kind {
        let statements = StatementParser::new().parse(sql).expect("parses");
        kind(&statements[0])
    }

    #[test]
    fn queries_run() {
        assert_eq!(kind_of("SELECT 1"), Kind::Query);
        assert_eq!(kind_of("EXPLAIN SELECT 1"), Kind::Query);
        assert_eq!(kind_of("WITH a AS (SELECT 1) SELECT * FROM a"), Kind::Query);
    }

    #[test]
    fn writes_are_refused_by_name() {
        for (sql, verb) in [
            ("CREATE TABLE t (a int)", "CREATE TABLE"),
            ("INSERT INTO t VALUES (1)", "INSERT"),
            ("DELETE FROM t", "DELETE"),
            ("DROP TABLE raw.retail_events", "DROP TABLE"),
            ("COPY raw.retail_events TO '/tmp/x.csv'", "COPY"),
            ("EXPLAIN ANALYZE INSERT INTO t VALUES (1)", "INSERT"),
        ] {
            match kind_of(sql) {
                Kind::Refused(message) => assert!(
                    message.contains(&format!("cannot execute {verb} ")),
                    "{sql}: {message}"
                ),
                other => panic!("{sql} not refused: {other:?}"),
            }
        }
    }

    #[test]
    fn session_statements() {
        assert_eq!(kind_of("SET search_path = raw"), Kind::Session);
        assert_eq!(kind_of("SHOW search_path"), Kind::Session);
        assert_eq!(kind_of("BEGIN"), Kind::Session);
        assert_eq!(kind_of("DISCARD ALL"), Kind::Discard);
        assert_eq!(kind_of("DECLARE c CURSOR FOR SELECT 1"), Kind::Cursor);
        assert_eq!(kind_of("FETCH FORWARD 10 FROM c"), Kind::Cursor);
    }
}
