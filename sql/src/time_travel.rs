//! Time travel in SQL: Spark's table version clauses, rewritten into the
//! three-part names the session resolves (`icefjord_engine::table_suffix`).
//!
//! | written (Spark SQL, Iceberg docs "Spark Queries: Time travel") | read as |
//! |---|---|
//! | `raw.t VERSION AS OF 4348509151428475111` | `raw.t.snapshot_id_4348509151428475111` |
//! | `raw.t TIMESTAMP AS OF '2026-01-31 10:00:00'` | `raw.t.at_timestamp_<ms>` |
//! | `raw.t FOR SYSTEM_TIME AS OF <time>` (SQL:2011) | the same as `TIMESTAMP AS OF` |
//!
//! The time is any constant expression, evaluated once with the session when the
//! statement is rewritten: a timestamp (one without a zone is UTC), a string that
//! casts to one (`'2026-01-31 10:00:00'`, `'2026-01-31T10:00:00+01:00'`), a date
//! (its midnight, UTC), `now() - interval '1 hour'`, or an integer of seconds since
//! the epoch (as Spark reads one). `TIMESTAMP AS OF t` reads the snapshot of
//! `main` that was current at `t` (the table's snapshot log).
//!
//! sqlparser takes only a number after `VERSION AS OF`, so Spark's
//! `VERSION AS OF 'tag'` is written `raw.t.tag_<name>` (and a branch
//! `raw.t.branch_<name>`). An unqualified table is in the session's default
//! schema; `icefjord.raw.t` is `raw.t`.
//!
//! Invariant: after [`rewrite`] no table factor of the statement holds a version
//! clause: each one was turned into a name, or the rewrite failed. (The session
//! also refuses any version clause that reaches its planner.)

use std::ops::ControlFlow;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::Expr;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::sql::parser::{CopyToSource, Statement};
use datafusion::sql::sqlparser::ast::{
    self, ExprWithAlias, Ident, ObjectName, ObjectNamePart, TableFactor, TableVersion, Value,
    VisitMut, VisitorMut,
};
use icefjord_engine::TableSuffix;

use crate::error::{Result, SqlError};

/// Rewrite every version clause of `statement` (as [`crate::statement::parse`]
/// returns it) into the name of that version; `state` evaluates the times.
pub fn rewrite(statement: &mut Statement, state: &SessionState) -> Result<()> {
    match statement {
        Statement::Statement(statement) => rewrite_ast(statement, state),
        Statement::Explain(explain) => rewrite(&mut explain.statement, state),
        Statement::CopyTo(copy) => match &mut copy.source {
            CopyToSource::Query(query) => visit(query.as_mut(), state),
            CopyToSource::Relation(_) => Ok(()),
        },
        Statement::CreateExternalTable(_) | Statement::Reset(_) => Ok(()),
    }
}

/// [`rewrite`] for a statement parsed by sqlparser itself (with
/// [`crate::dialect::LakeDialect`], e.g. by the PostgreSQL wire front door).
pub fn rewrite_ast(statement: &mut ast::Statement, state: &SessionState) -> Result<()> {
    visit(statement, state)
}

fn visit(node: &mut impl VisitMut, state: &SessionState) -> Result<()> {
    match node.visit(&mut Rewriter { state }) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(e) => Err(e),
    }
}

struct Rewriter<'a> {
    state: &'a SessionState,
}

impl VisitorMut for Rewriter<'_> {
    type Break = SqlError;

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<SqlError> {
        if let TableFactor::Table { name, version, .. } = factor {
            if let Some(clause) = version.take() {
                match self.versioned(name, &clause) {
                    Ok(versioned) => *name = versioned,
                    Err(e) => return ControlFlow::Break(e),
                }
            }
        }
        ControlFlow::Continue(())
    }
}

impl Rewriter<'_> {
    /// `name` at the version `clause` names, as `namespace.table.<suffix>`.
    fn versioned(&self, name: &ObjectName, clause: &TableVersion) -> Result<ObjectName> {
        let error = |message: String| SqlError::Version {
            table: name.to_string(),
            clause: clause.to_string(),
            message,
        };
        let suffix = match clause {
            TableVersion::VersionAsOf(ast::Expr::Value(value)) => match &value.value {
                Value::Number(n, _) => n
                    .parse()
                    .map(TableSuffix::Snapshot)
                    .map_err(|_| error(format!("{n} is not a snapshot id (a 64-bit integer)")))?,
                other => return Err(error(format!("{other} is not a snapshot id"))),
            },
            TableVersion::TimestampAsOf(time) | TableVersion::ForSystemTimeAsOf(time) => {
                TableSuffix::Timestamp(self.epoch_ms(time).map_err(error)?)
            }
            TableVersion::VersionAsOf(_) | TableVersion::Function(_) => {
                return Err(error(
                    "use VERSION AS OF <snapshot id>, TIMESTAMP AS OF <time>, or the \
                     table's branch_<name> / tag_<name>"
                        .into(),
                ))
            }
        };
        let mut parts = Vec::new();
        for part in &name.0 {
            match part {
                ObjectNamePart::Identifier(ident) => parts.push(ident.clone()),
                ObjectNamePart::Function(_) => {
                    return Err(error("time travel reads lake tables by name".into()))
                }
            }
        }
        let options = &self.state.config_options().catalog;
        let catalog = parts.len() == 3 && self.normalized(&parts[0]) == options.default_catalog;
        let table = match parts.len() {
            1 => vec![
                Ident::with_quote('"', &options.default_schema),
                parts.remove(0),
            ],
            2 => parts,
            3 if catalog => parts.split_off(1),
            _ => {
                return Err(error(format!(
                    "time travel reads lake tables: namespace.table or {}.namespace.table",
                    options.default_catalog
                )))
            }
        };
        let mut versioned = table;
        versioned.push(Ident::with_quote('"', suffix.to_string()));
        Ok(ObjectName::from(versioned))
    }

    /// An identifier as DataFusion resolves it (unquoted ones lower-cased).
    fn normalized(&self, ident: &Ident) -> String {
        let normalize = self
            .state
            .config_options()
            .sql_parser
            .enable_ident_normalization;
        if ident.quote_style.is_none() && normalize {
            ident.value.to_lowercase()
        } else {
            ident.value.clone()
        }
    }

    /// The constant time `expr` evaluates to, in milliseconds since the epoch.
    fn epoch_ms(&self, expr: &ast::Expr) -> std::result::Result<i64, String> {
        let planned = self
            .state
            .create_logical_expr_from_sql_expr(
                ExprWithAlias {
                    expr: expr.clone(),
                    alias: None,
                },
                &DFSchema::empty(),
            )
            .map_err(|e| e.to_string())?;
        let context = SimplifyContext::default()
            .with_config_options(self.state.config_options().clone())
            .with_current_time();
        let simplified = ExprSimplifier::new(context)
            .simplify(planned)
            .map_err(|e| e.to_string())?;
        let Expr::Literal(value, _) = simplified else {
            return Err(format!(
                "{expr} is not a constant time (it reads columns or is volatile)"
            ));
        };
        scalar_ms(&value).ok_or_else(|| {
            format!(
                "{expr} is {value:?}, not a time (a timestamp, a date, a string that \
                 casts to a timestamp, or seconds since the epoch)"
            )
        })
    }
}

/// `value` as milliseconds since the epoch (timestamps without a zone are UTC;
/// integers are seconds, as Spark reads `TIMESTAMP AS OF 1700000000`).
fn scalar_ms(value: &ScalarValue) -> Option<i64> {
    let utc = DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into()));
    match value {
        ScalarValue::Int8(Some(_))
        | ScalarValue::Int16(Some(_))
        | ScalarValue::Int32(Some(_))
        | ScalarValue::Int64(Some(_))
        | ScalarValue::UInt8(Some(_))
        | ScalarValue::UInt16(Some(_))
        | ScalarValue::UInt32(Some(_))
        | ScalarValue::UInt64(Some(_)) => {
            let seconds = value.cast_to(&DataType::Int64).ok()?;
            match seconds {
                ScalarValue::Int64(Some(s)) => s.checked_mul(1000),
                _ => None,
            }
        }
        ScalarValue::TimestampSecond(Some(_), _)
        | ScalarValue::TimestampMillisecond(Some(_), _)
        | ScalarValue::TimestampMicrosecond(Some(_), _)
        | ScalarValue::TimestampNanosecond(Some(_), _)
        | ScalarValue::Date32(Some(_))
        | ScalarValue::Date64(Some(_))
        | ScalarValue::Utf8(Some(_))
        | ScalarValue::Utf8View(Some(_))
        | ScalarValue::LargeUtf8(Some(_)) => match value.cast_to(&utc).ok()? {
            ScalarValue::TimestampMillisecond(Some(ms), _) => Some(ms),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::statement::parse;

    fn rewritten(sql: &str) -> Result<String> {
        let state = SessionContext::new().state();
        let mut statement = parse(sql)?.remove(0);
        rewrite(&mut statement, &state)?;
        Ok(statement.to_string())
    }

    #[test]
    fn version_clauses_become_suffixes() {
        assert_eq!(
            rewritten("SELECT * FROM raw.t VERSION AS OF 4348509151428475111 AS x").unwrap(),
            r#"SELECT * FROM raw.t."snapshot_id_4348509151428475111" AS x"#
        );
        // 2024-01-01 10:00:00 UTC is 1704103200 s (date -u -d ... +%s).
        for time in [
            "'2024-01-01 10:00:00'",
            "'2024-01-01T11:00:00+01:00'",
            "TIMESTAMP '2024-01-01 10:00:00'",
            "1704103200",
            "CAST('2024-01-01 12:00:00' AS TIMESTAMP) - INTERVAL '2 hours'",
        ] {
            assert_eq!(
                rewritten(&format!("SELECT 1 FROM raw.t TIMESTAMP AS OF {time}")).unwrap(),
                r#"SELECT 1 FROM raw.t."at_timestamp_1704103200000""#,
                "{time}"
            );
        }
        assert_eq!(
            rewritten("SELECT 1 FROM raw.t FOR SYSTEM_TIME AS OF DATE '2024-01-01'").unwrap(),
            r#"SELECT 1 FROM raw.t."at_timestamp_1704067200000""#
        );
    }

    #[test]
    fn names_resolve_as_the_session_does() {
        assert_eq!(
            rewritten("SELECT * FROM t VERSION AS OF 1").unwrap(),
            r#"SELECT * FROM "public".t."snapshot_id_1""#
        );
        assert_eq!(
            rewritten("SELECT * FROM DataFusion.raw.t VERSION AS OF 1").unwrap(),
            r#"SELECT * FROM raw.t."snapshot_id_1""#
        );
        assert!(rewritten("SELECT * FROM other.raw.t VERSION AS OF 1").is_err());
    }

    #[test]
    fn clauses_in_joins_subqueries_and_explain_are_rewritten() {
        let sql = rewritten(
            "EXPLAIN SELECT * FROM raw.a VERSION AS OF 1 JOIN raw.b VERSION AS OF 2 ON true \
             WHERE a.x IN (SELECT x FROM raw.c VERSION AS OF 3)",
        )
        .unwrap();
        for suffix in ["snapshot_id_1", "snapshot_id_2", "snapshot_id_3"] {
            assert!(sql.contains(suffix), "{sql}");
        }
        assert!(!sql.contains("AS OF"), "{sql}");
    }

    #[test]
    fn times_that_are_not_constant_or_not_times_are_errors() {
        let err = rewritten("SELECT * FROM raw.t TIMESTAMP AS OF 'yesterday-ish'").unwrap_err();
        assert!(
            matches!(err, SqlError::Version { ref table, .. } if table == "raw.t"),
            "{err}"
        );
        let err = rewritten("SELECT * FROM raw.t TIMESTAMP AS OF random()").unwrap_err();
        assert!(err.to_string().contains("raw.t"), "{err}");
        let err = rewritten("SELECT * FROM raw.t TIMESTAMP AS OF true").unwrap_err();
        assert!(err.to_string().contains("not a time"), "{err}");
    }
}
