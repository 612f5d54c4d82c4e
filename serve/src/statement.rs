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

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Statement, TableFactor, Visit, Visitor};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use icefjord_sql::dialect::LakeDialect;

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
    /// `DISCARD ALL` / `DISCARD …` / `RESET …`: forget the connection's
    /// settings (every one of them, whatever the statement names).
    Discard,
    /// Answered with this command tag and nothing else: transaction and
    /// prepared-statement bookkeeping that has nothing to undo in a read-only
    /// session (`SAVEPOINT`, `RELEASE`, `ROLLBACK TO SAVEPOINT`, `DEALLOCATE`,
    /// `UNLISTEN`), as drivers send them (psycopg's rollback sends
    /// `DEALLOCATE ALL`; nested transactions send savepoints).
    Acknowledge(&'static str),
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
        Statement::Rollback {
            savepoint: Some(_), ..
        } => Kind::Acknowledge("ROLLBACK"),
        Statement::Savepoint { .. } => Kind::Acknowledge("SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => Kind::Acknowledge("RELEASE"),
        Statement::Deallocate { .. } => Kind::Acknowledge("DEALLOCATE"),
        Statement::UNLISTEN { .. } => Kind::Acknowledge("UNLISTEN"),
        Statement::Reset(_) => Kind::Discard,
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
    ///
    /// PostgreSQL has no time travel clause; the compatibility parser reads
    /// plain PostgreSQL. What it cannot read is tried with
    /// [`icefjord_sql::dialect::LakeDialect`] (PostgreSQL plus `VERSION AS OF` /
    /// `TIMESTAMP AS OF`, as `icefjord sql` reads it) and gets the same
    /// compatibility rewrites.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, Failure> {
        let mut statements = match self.compat.parse(sql) {
            Ok(statements) => statements,
            Err(e) => match Parser::parse_sql(&LakeDialect::default(), sql) {
                Ok(statements) if statements.iter().any(has_version_clause) => statements
                    .into_iter()
                    .map(|s| self.compat.rewrite(s))
                    .collect(),
                _ => return Err(refused_syntax(sql).unwrap_or_else(|| Failure::parser(&e))),
            },
        };
        statements
            .iter_mut()
            .for_each(crate::pg::catalog_rewrite::rewrite);
        Ok(statements)
    }
}

/// Whether `statement` reads a table `AS OF` a version or time.
fn has_version_clause(statement: &Statement) -> bool {
    let mut found = false;
    let _ = statement.visit(&mut VersionFinder(&mut found));
    found
}

struct VersionFinder<'a>(&'a mut bool);

impl Visitor for VersionFinder<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            version: Some(_), ..
        } = factor
        {
            *self.0 = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
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

    #[test]
    fn time_travel_parses() {
        assert_eq!(kind_of("SELECT * FROM raw.t VERSION AS OF 42"), Kind::Query);
        let statements = StatementParser::new()
            .parse("SELECT * FROM raw.t TIMESTAMP AS OF '2026-11-30 10:00:00'")
            .expect("parses");
        assert!(has_version_clause(&statements[0]));
    }
}
