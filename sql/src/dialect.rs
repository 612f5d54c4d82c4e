//! [`LakeDialect`]: the SQL dialect of every front door. PostgreSQL's (what BI
//! tools and `psql` speak), plus Spark's and SQL:2011's table version clauses:
//! `t VERSION AS OF <snapshot id>`, `t TIMESTAMP AS OF <time>` and
//! `t FOR SYSTEM_TIME AS OF <time>` (Spark SQL reference, "Time travel"; Iceberg
//! docs, "Spark Queries"). sqlparser parses these only for dialects whose
//! `supports_table_versioning()` is true, which `PostgreSqlDialect` is not.
//!
//! The wrapper answers `dialect()` with `PostgreSqlDialect`'s type id, so the
//! parser's `dialect_of!(… is PostgreSqlDialect)` rules apply unchanged (the way
//! sqlparser supports wrapped dialects), and delegates every method
//! `PostgreSqlDialect` overrides (sqlparser 0.61, `src/dialect/postgresql.rs`);
//! the unit tests below check a few of them against `PostgreSqlDialect` itself.
//!
//! With versioning on, a table name followed by `AT (…)` or `BEFORE (…)` is a
//! (Snowflake) version clause too: an alias named `at` or `before` needs `AS`.

use std::any::TypeId;

use datafusion::sql::sqlparser::dialect::{Dialect, PostgreSqlDialect, Precedence};
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

/// PostgreSQL's dialect with table version clauses (see the module docs).
#[derive(Debug, Default)]
pub struct LakeDialect(PostgreSqlDialect);

impl Dialect for LakeDialect {
    fn dialect(&self) -> TypeId {
        self.0.dialect()
    }

    /// `VERSION AS OF`, `TIMESTAMP AS OF`, `FOR SYSTEM_TIME AS OF` (the reason
    /// this dialect exists).
    fn supports_table_versioning(&self) -> bool {
        true
    }

    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        self.0.identifier_quote_style(identifier)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.0.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        self.0.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.0.is_identifier_part(ch)
    }

    fn supports_unicode_string_literal(&self) -> bool {
        self.0.supports_unicode_string_literal()
    }

    fn is_custom_operator_part(&self, ch: char) -> bool {
        self.0.is_custom_operator_part(ch)
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        self.0.get_next_precedence(parser)
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        self.0.supports_filter_during_aggregation()
    }

    fn supports_group_by_expr(&self) -> bool {
        self.0.supports_group_by_expr()
    }

    fn prec_value(&self, prec: Precedence) -> u8 {
        self.0.prec_value(prec)
    }

    fn allow_extract_custom(&self) -> bool {
        self.0.allow_extract_custom()
    }

    fn allow_extract_single_quotes(&self) -> bool {
        self.0.allow_extract_single_quotes()
    }

    fn supports_create_index_with_clause(&self) -> bool {
        self.0.supports_create_index_with_clause()
    }

    fn supports_explain_with_utility_options(&self) -> bool {
        self.0.supports_explain_with_utility_options()
    }

    fn supports_listen_notify(&self) -> bool {
        self.0.supports_listen_notify()
    }

    fn supports_factorial_operator(&self) -> bool {
        self.0.supports_factorial_operator()
    }

    fn supports_bitwise_shift_operators(&self) -> bool {
        self.0.supports_bitwise_shift_operators()
    }

    fn supports_comment_on(&self) -> bool {
        self.0.supports_comment_on()
    }

    fn supports_load_extension(&self) -> bool {
        self.0.supports_load_extension()
    }

    fn supports_named_fn_args_with_colon_operator(&self) -> bool {
        self.0.supports_named_fn_args_with_colon_operator()
    }

    fn supports_named_fn_args_with_expr_name(&self) -> bool {
        self.0.supports_named_fn_args_with_expr_name()
    }

    fn supports_empty_projections(&self) -> bool {
        self.0.supports_empty_projections()
    }

    fn supports_nested_comments(&self) -> bool {
        self.0.supports_nested_comments()
    }

    fn supports_string_escape_constant(&self) -> bool {
        self.0.supports_string_escape_constant()
    }

    fn supports_numeric_literal_underscores(&self) -> bool {
        self.0.supports_numeric_literal_underscores()
    }

    fn supports_array_typedef_with_brackets(&self) -> bool {
        self.0.supports_array_typedef_with_brackets()
    }

    fn supports_geometric_types(&self) -> bool {
        self.0.supports_geometric_types()
    }

    fn supports_set_names(&self) -> bool {
        self.0.supports_set_names()
    }

    fn supports_alter_column_type_using(&self) -> bool {
        self.0.supports_alter_column_type_using()
    }

    fn supports_notnull_operator(&self) -> bool {
        self.0.supports_notnull_operator()
    }

    fn supports_interval_options(&self) -> bool {
        self.0.supports_interval_options()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use datafusion::sql::sqlparser::ast::{Statement, TableFactor, TableVersion};

    use super::*;

    fn parse(dialect: &dyn Dialect, sql: &str) -> Vec<Statement> {
        Parser::parse_sql(dialect, sql).unwrap()
    }

    #[test]
    fn postgres_syntax_parses_as_postgres_does() {
        for sql in [
            "SELECT '1'::int, x::text FROM t",
            "SELECT * FROM t WHERE a = $1 AND b = $2",
            r"SELECT E'a\nb', U&'\0041'",
            "SELECT * FROM t WHERE name ILIKE '%a%' OR name !~~* 'b'",
            "SELECT a ->> 'k', b #> '{a,b}', c @> d FROM t",
            "SELECT 5 !, 1 << 2, 2 ^ 3, 1_000",
            "SELECT count(*) FILTER (WHERE a > 1) FROM t",
            "SELECT x FROM t WHERE x NOTNULL",
            "SELECT INTERVAL '1' HOUR",
            "SELECT \"Mixed Case\" FROM \"Raw\".\"T\" /* a /* nested */ comment */",
            "SET search_path TO raw",
        ] {
            assert_eq!(
                parse(&LakeDialect::default(), sql),
                parse(&PostgreSqlDialect {}, sql),
                "{sql}"
            );
        }
    }

    fn version(sql: &str) -> Option<TableVersion> {
        let statement = parse(&LakeDialect::default(), sql).remove(0);
        let Statement::Query(query) = statement else {
            panic!("{sql}: not a query");
        };
        let datafusion::sql::sqlparser::ast::SetExpr::Select(select) = *query.body else {
            panic!("{sql}: not a select");
        };
        match &select.from[0].relation {
            TableFactor::Table { version, .. } => version.clone(),
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn table_version_clauses_parse() {
        assert!(matches!(
            version("SELECT * FROM raw.t VERSION AS OF 4242 AS x"),
            Some(TableVersion::VersionAsOf(_))
        ));
        assert!(matches!(
            version("SELECT * FROM raw.t TIMESTAMP AS OF '2024-01-01 10:00:00' x"),
            Some(TableVersion::TimestampAsOf(_))
        ));
        assert!(matches!(
            version("SELECT * FROM t TIMESTAMP AS OF now() - interval '1 hour'"),
            Some(TableVersion::TimestampAsOf(_))
        ));
        assert!(matches!(
            version("SELECT * FROM t FOR SYSTEM_TIME AS OF '2024-01-01'"),
            Some(TableVersion::ForSystemTimeAsOf(_))
        ));
        assert_eq!(version("SELECT * FROM raw.t AS version"), None);
        // PostgreSqlDialect itself does not take them.
        assert!(
            Parser::parse_sql(&PostgreSqlDialect {}, "SELECT * FROM t VERSION AS OF 1").is_err()
        );
    }
}
