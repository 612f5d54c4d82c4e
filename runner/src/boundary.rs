//! Incremental reads by ingestion position, and the boundary that makes unified
//! (Lambda) views exact.
//!
//! A model with `incremental_input = "raw.retail_events"` reads, on each run, only
//! the rows of that sink table that no earlier run has read. Position, not event
//! time, decides: a row belongs to the run that first saw its
//! `(_kafka_topic, _kafka_partition, _kafka_offset)`.
//!
//! # Invariants
//!
//! - The **boundary** is, per topic and partition, the next offset after the
//!   last row read. Rows at or past it are *fresh*; rows before it were read by an
//!   earlier run. A partition the boundary does not name is wholly fresh.
//! - The sink commits each partition's records in offset order (DESIGN §5), so at
//!   any snapshot a partition's rows are a prefix of what it consumed: "row was in
//!   the input when the run read it" is exactly "offset < boundary".
//! - A run reads its input at the run's one catalog state, computes its output
//!   from the fresh rows and the new boundary from the same rows, and publishes
//!   both in its one commit: the output's snapshot summary holds the boundary
//!   (`icefjord.boundary.<input>`, authoritative), and the companion table
//!   `<output>__boundary(topic, partition, next_offset)` holds it for SQL.
//! - A reader that combines the output with the input's rows past the companion's
//!   boundary (a unified view) counts every input row exactly once, because its
//!   session resolves all three tables from one catalog state.
//! - Compaction of the input keeps `_kafka_*` values, so it moves no row across
//!   the boundary.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef};
use datafusion::common::Column;
use datafusion::functions_aggregate::min_max::max;
use datafusion::logical_expr::{cast, Expr};
use datafusion::prelude::DataFrame;
use iceberg::spec::MAIN_BRANCH;
use iceberg::table::Table;
use iceberg::TableIdent;

use crate::error::Result;
use icefjord_catalog::protocol::{find_position, BoundaryKey, PositionKey};
pub use icefjord_engine::fresh::{fresh_filter, since_name, Boundary, OFFSET, PARTITION, TOPIC};

/// The companion table of `output`: `<namespace>.<table>__boundary`.
pub fn companion(output: &TableIdent) -> TableIdent {
    TableIdent::new(
        output.namespace().clone(),
        format!("{}__boundary", output.name()),
    )
}

/// The boundary `output` records for `input` (empty for a new table or a first
/// run), found by the table protocol's walk: past other engines' snapshots of
/// the output (a compaction must not make every input row fresh again), through
/// the position mirror after snapshot expiry. A lost or corrupt boundary is an
/// error, never "read everything again".
pub fn previous(output: Option<&Table>, input: &str) -> Result<Boundary> {
    let Some(table) = output else {
        return Ok(Boundary::new());
    };
    let key = BoundaryKey {
        input: input.to_string(),
    };
    let found = find_position(
        table.metadata(),
        &icefjord_catalog::display(table.identifier()),
        MAIN_BRANCH,
        &key,
    )?;
    Ok(found.map(|f| f.value).unwrap_or_default())
}

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// The boundary after reading `fresh`: per partition, past its last offset;
/// and the rows read from data files to find it.
pub async fn advance(previous: &Boundary, fresh: DataFrame) -> Result<(Boundary, u64)> {
    let ends = fresh.aggregate(
        vec![
            cast(column(TOPIC), DataType::Utf8).alias("t"),
            column(PARTITION).alias("p"),
        ],
        vec![max(column(OFFSET)).alias("o")],
    )?;
    let (ends, rows_read) = crate::scanned::collect_counted(ends).await?;
    let mut next = previous.clone();
    for batch in ends {
        let topics = batch.column(0).as_string::<i32>();
        let partitions = batch.column(1).as_primitive::<Int32Type>();
        let offsets = batch.column(2).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            if topics.is_null(i) || partitions.is_null(i) || offsets.is_null(i) {
                continue;
            }
            let key = (topics.value(i).to_string(), partitions.value(i));
            let end = offsets.value(i) + 1;
            let slot = next.entry(key).or_insert(end);
            *slot = (*slot).max(end);
        }
    }
    Ok((next, rows_read))
}

/// Refuses a commit when another run moved the output's boundary since this run
/// read it (two runs reading the same rows would both add them).
#[derive(Debug)]
pub struct Fence {
    pub key: BoundaryKey,
    /// The boundary the run started from (empty: the first run).
    pub expected: Boundary,
}

impl icefjord_catalog::CommitGuard for Fence {
    fn check(
        &self,
        metadata: &iceberg::spec::TableMetadata,
        branch: &str,
    ) -> std::result::Result<BTreeMap<String, String>, String> {
        let current = find_position(metadata, "the output", branch, &self.key)
            .map_err(|e| e.to_string())?
            .map(|found| found.value)
            .unwrap_or_default();
        if current == self.expected {
            Ok(BTreeMap::new())
        } else {
            Err(format!(
                "another run moved {} since this run read it; nothing of this run was published",
                self.key.key()
            ))
        }
    }
}

/// The companion table's layout.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("next_offset", DataType::Int64, false),
    ]))
}

/// The boundary as rows of the companion table.
pub fn rows(boundary: &Boundary) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                boundary.keys().map(|(t, _)| t.as_str()),
            )),
            Arc::new(Int32Array::from_iter_values(
                boundary.keys().map(|(_, p)| *p),
            )),
            Arc::new(Int64Array::from_iter_values(boundary.values().copied())),
        ],
    )?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    #[tokio::test]
    async fn fresh_rows_are_those_past_the_boundary_and_the_boundary_advances() {
        let ctx = SessionContext::new();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new(TOPIC, DataType::Utf8, false),
                Field::new(PARTITION, DataType::Int32, false),
                Field::new(OFFSET, DataType::Int64, false),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["t", "t", "t", "t", "t", "u"])),
                Arc::new(Int32Array::from(vec![0, 0, 0, 1, 2, 0])),
                Arc::new(Int64Array::from(vec![5, 6, 7, 3, 0, 9])),
            ],
        )
        .unwrap();
        let input = ctx.read_batch(batch).unwrap();
        let previous: Boundary = [(("t".into(), 0), 6), (("t".into(), 1), 4)].into();
        let fresh = input.filter(fresh_filter(&previous)).unwrap();
        let rows: Vec<(i32, i64)> = fresh
            .clone()
            .collect()
            .await
            .unwrap()
            .iter()
            .flat_map(|b| {
                let p = b.column(1).as_primitive::<Int32Type>().clone();
                let o = b.column(2).as_primitive::<Int64Type>().clone();
                (0..b.num_rows()).map(move |i| (p.value(i), o.value(i)))
            })
            .collect();
        // t/0 from offset 6 on; nothing of t/1; all of t/2 and u/0 (unknown).
        assert_eq!(rows, vec![(0, 6), (0, 7), (2, 0), (0, 9)]);
        let (next, _) = advance(&previous, fresh).await.unwrap();
        let expected: Boundary = [
            (("t".into(), 0), 8),
            (("t".into(), 1), 4),
            (("t".into(), 2), 1),
            (("u".into(), 0), 10),
        ]
        .into();
        assert_eq!(next, expected);
        assert_eq!(rows_of(&next).num_rows(), 4);
    }

    fn rows_of(b: &Boundary) -> RecordBatch {
        rows(b).unwrap()
    }
}
