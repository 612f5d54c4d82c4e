//! Merging a run's new rows into an `incremental_by_key` output.
//!
//! The output holds one row per value of the model's `unique_key`; a run's query
//! yields the *new* rows, and the merged content replaces the output's whole
//! content in the run's commit (`StagedMode::Overwrite`). Invariants:
//!
//! - **Keys match with IS NOT DISTINCT FROM** (SQL:1999; PostgreSQL's and DuckDB's
//!   `IS NOT DISTINCT FROM`): a NULL key part matches a NULL key part, so a NULL
//!   key is one key like any other and is merged, never added again each run.
//!   The join below uses DataFusion's `NullEquality::NullEqualsNull`; `GROUP BY`
//!   (the `sum` merge and the duplicate check) groups NULLs together by definition.
//! - **`merge = "replace"`**: the new rows hold each key at most once, or the run
//!   fails with [`RunnerError::RepeatedKey`] naming the model and the key (a MERGE
//!   whose target row matches two source rows is an error in the SQL standard,
//!   Snowflake and BigQuery alike: which row wins would be arbitrary). The output
//!   becomes the old rows whose key is not among the new keys, plus the new rows.
//! - **`merge = "sum"`**: the output becomes one row per key whose measures (every
//!   column not in the key) are the sums over the old and the new rows; a key
//!   repeated within the new rows is summed like any other (the deterministic rule
//!   of this mode). Sums never wrap: an overflow fails the run
//!   ([`icefjord_engine::sum`]).
//! - The first run (nothing published yet) follows the same rules with no old rows.
//!   When the query's plan makes the key unique by construction (a `GROUP BY`
//!   of the key, [`unique_by_plan`]), both rules leave its rows as they are: the
//!   runner then streams them to files instead of holding and re-grouping them.

use arrow::datatypes::SchemaRef;
use datafusion::common::{Column, Dependency, JoinType, NullEquality, ScalarValue};
use datafusion::functions_aggregate::count::count;
use datafusion::logical_expr::{lit, Expr, LogicalPlanBuilder};
use datafusion::prelude::DataFrame;
use icefjord_engine::sum::sum;

use crate::error::{Result, RunnerError};
use crate::spec::{Merge, Model};

/// The column counting rows per key in the duplicate check.
const ROWS_PER_KEY: &str = "__icefjord_rows_per_key";

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// The merged content of `model`'s output: its published rows `old` (None before
/// the first publish) merged with the run's `new` rows, both shaped as `schema`.
/// Errors: [`RunnerError::RepeatedKey`] (replace), a query error (e.g. a sum's
/// overflow).
pub async fn merge_by_key(
    model: &Model,
    old: Option<DataFrame>,
    new: DataFrame,
    schema: &SchemaRef,
) -> Result<DataFrame> {
    let keys: Vec<&str> = model.unique_key.iter().map(String::as_str).collect();
    match model.merge {
        Merge::Replace => {
            if let Some(key) = repeated_key(&new, &keys).await? {
                return Err(RunnerError::RepeatedKey {
                    model: model.name.clone(),
                    key,
                });
            }
            let Some(old) = old else {
                return Ok(new);
            };
            let (session, old_plan) = old.into_parts();
            let new_keys = new.clone().select_columns(&keys)?.into_unoptimized_plan();
            let key_columns: Vec<Column> = keys.iter().map(|k| Column::from_name(*k)).collect();
            let kept = LogicalPlanBuilder::from(old_plan)
                .join_detailed(
                    new_keys,
                    JoinType::LeftAnti,
                    (key_columns.clone(), key_columns),
                    None,
                    NullEquality::NullEqualsNull,
                )?
                .build()?;
            Ok(DataFrame::new(session, kept).union(new)?)
        }
        Merge::Sum => {
            let measures: Vec<Expr> = schema
                .fields()
                .iter()
                .filter(|f| !keys.contains(&f.name().as_str()))
                .map(|f| sum(column(f.name())).alias(f.name()))
                .collect();
            let key_columns: Vec<Expr> = keys.iter().map(|k| column(k)).collect();
            let rows = match old {
                Some(old) => old.union(new)?,
                None => new,
            };
            Ok(rows.aggregate(key_columns, measures)?)
        }
    }
}

/// Whether `frame`'s plan makes `keys` unique by construction: a `GROUP BY` over
/// (a subset of) the key columns, as DataFusion's functional dependencies record
/// it (NULLs group together, as the merge matches them). Such rows need no
/// duplicate check, and a first run may stream them straight to its files.
pub fn unique_by_plan(frame: &DataFrame, keys: &[String]) -> bool {
    let schema = frame.schema();
    let Some(indices) = keys
        .iter()
        .map(|k| schema.index_of_column_by_name(None, k))
        .collect::<Option<Vec<usize>>>()
    else {
        return false;
    };
    schema.functional_dependencies().iter().any(|dependence| {
        dependence.mode == Dependency::Single
            && !dependence.source_indices.is_empty()
            && dependence
                .source_indices
                .iter()
                .all(|i| indices.contains(i))
    })
}

/// A key that occurs more than once in `rows`, shown as `a = 1, b = NULL`.
async fn repeated_key(rows: &DataFrame, keys: &[&str]) -> Result<Option<String>> {
    let key_columns: Vec<Expr> = keys.iter().map(|k| column(k)).collect();
    let found = rows
        .clone()
        .aggregate(key_columns, vec![count(lit(1)).alias(ROWS_PER_KEY)])?
        .filter(column(ROWS_PER_KEY).gt(lit(1i64)))?
        .limit(0, Some(1))?
        .collect()
        .await?;
    let Some(batch) = found.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let mut parts = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let value = ScalarValue::try_from_array(batch.column(i), 0)?;
        parts.push(format!("{key} = {value}"));
    }
    Ok(Some(parts.join(", ")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[tokio::test]
    async fn a_group_by_of_the_key_makes_it_unique_by_plan() {
        let ctx = SessionContext::new();
        ctx.sql(
            "CREATE TABLE t (t TIMESTAMP, s INT, v DECIMAL(10, 2)) AS VALUES \
             (TIMESTAMP '2023-10-27 10:00:00', 1, 2.5), (TIMESTAMP '2023-10-27 10:30:00', 1, 1)",
        )
        .await
        .unwrap();
        let frame = |sql: &'static str| {
            let ctx = ctx.clone();
            async move { ctx.sql(sql).await.unwrap() }
        };
        // The retail history's shape: date_trunc keys, casted sums.
        let hourly = frame(
            "SELECT date_trunc('hour', t) AS hour, s AS store_id, \
             CAST(sum(v) AS DECIMAL(18, 2)) AS amount, count(*) AS n FROM t GROUP BY 1, 2",
        )
        .await;
        assert!(unique_by_plan(&hourly, &keys(&["hour", "store_id"])));
        assert!(!unique_by_plan(&hourly, &keys(&["hour"])));
        let plain = frame("SELECT s, v FROM t").await;
        assert!(!unique_by_plan(&plain, &keys(&["s"])));
        assert!(!unique_by_plan(&plain, &keys(&["missing"])));
        let by_store = frame("SELECT s, sum(v) AS v FROM t GROUP BY s").await;
        assert!(unique_by_plan(&by_store, &keys(&["s"])));
        // A wider key than the GROUP BY is unique too.
        assert!(unique_by_plan(&by_store, &keys(&["s", "v"])));
    }
}
