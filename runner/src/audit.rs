//! Audits: checks on a model's output, run before anything is published
//! (write-audit-publish). Built-in checks are DataFrame operations, so no value or
//! name is ever formatted into SQL; a custom audit is the user's own query.

use datafusion::common::{Column, ScalarValue};
use datafusion::functions_aggregate::count::count;
use datafusion::logical_expr::{lit, Expr};
use datafusion::prelude::{DataFrame, SessionContext};

use crate::error::Result;
use crate::report::AuditReport;
use crate::spec::Audit;

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// Run `audit` over `output` (the model's rows; custom SQL audits name the model
/// and see the same rows through `ctx`).
pub async fn run(audit: &Audit, output: DataFrame, ctx: &SessionContext) -> Result<AuditReport> {
    let failing = match audit {
        Audit::NotNull { columns } => {
            let any_null = columns
                .iter()
                .map(|c| column(c).is_null())
                .reduce(Expr::or)
                .unwrap_or_else(|| lit(false));
            output.filter(any_null)?.count().await? as u64
        }
        Audit::Unique { columns } => {
            // GROUP BY puts NULLs in one group: NULL keys count as equal (IS NOT
            // DISTINCT FROM), as the `incremental_by_key` merge matches them
            // (merge.rs). dbt's `unique` test skips NULL values instead.
            let keys: Vec<Expr> = columns.iter().map(|c| column(c)).collect();
            output
                .aggregate(keys, vec![count(lit(1)).alias("__icefjord_n")])?
                .filter(column("__icefjord_n").gt(lit(1i64)))?
                .count()
                .await? as u64
        }
        Audit::AcceptedValues {
            column: name,
            values,
        } => {
            let list: Vec<Expr> = values
                .iter()
                .map(|v| Expr::Literal(scalar(v), None))
                .collect();
            output
                .filter(
                    column(name)
                        .is_not_null()
                        .and(column(name).in_list(list, true)),
                )?
                .count()
                .await? as u64
        }
        Audit::RowCountMin { min } => {
            let rows = output.count().await? as u64;
            min.saturating_sub(rows)
        }
        Audit::Sql { sql, .. } => ctx.sql(sql).await?.count().await? as u64,
    };
    Ok(AuditReport {
        audit: audit.label(),
        passed: failing == 0,
        failing,
    })
}

/// Whether `audit` can check the rows of a run alone (see `Runner::audit`): a
/// check of each row on its own, or `unique` on columns that include the
/// output's `unique_key` (a merge's rewritten files hold every row of the keys
/// it touched; the other files hold none of those keys). A custom SQL audit
/// always sees the whole output: it may count or reconcile it (and a filter on
/// its rows mostly costs the manifests, whose bounds skip the files).
pub fn local(audit: &Audit, unique_key: &[String]) -> bool {
    match audit {
        Audit::NotNull { .. } | Audit::AcceptedValues { .. } => true,
        Audit::Unique { columns } => {
            !unique_key.is_empty() && unique_key.iter().all(|k| columns.contains(k))
        }
        Audit::RowCountMin { .. } | Audit::Sql { .. } => false,
    }
}

fn scalar(value: &toml::Value) -> ScalarValue {
    match value {
        toml::Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        toml::Value::Integer(i) => ScalarValue::Int64(Some(*i)),
        toml::Value::Float(f) => ScalarValue::Float64(Some(*f)),
        toml::Value::Boolean(b) => ScalarValue::Boolean(Some(*b)),
        other => ScalarValue::Utf8(Some(other.to_string())),
    }
}
