//! The rows a copy-on-write merge writes, one key range at a time.
//!
//! # Invariants
//!
//! - **Ranges.** The touched files are grouped by the range of the output
//!   order's first column their bounds allow
//!   ([`icefjord_engine::file_bounds::column_ranges`]); overlapping ranges form
//!   one range, so ranges are disjoint and every old row lies in its file's
//!   range. That column is a key column, so a new key's old row (if any) lies in
//!   the range holding the new key's value: each range is merged alone, with
//!   the new keys inside it, and a new key outside every range is new to the
//!   output. When the order does not start with a key column the touched files
//!   form one range (merged values could otherwise leave it).
//! - **Only matched rows are regrouped.** Within a range, an old row whose key
//!   is among the range's new keys (NULLs match NULLs, as in [`crate::merge`])
//!   is merged with the new row by [`merge::merge_by_key`]; every other old row
//!   is written as read.
//! - **Sorted output.** Each range's rows are sorted by the output order
//!   (ascending, NULLs first) and the ranges follow each other in that order, so
//!   the stream is sorted as a whole. A stable sort of old rows already in order
//!   costs a pass over them plus the merged rows.
//! - **Memory.** A run holds its new rows (merged among themselves) and one
//!   range's rows at a time: with files written sorted, one file's worth.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::kernels::boolean::not;
use arrow::compute::{
    filter_record_batch, interleave_record_batch, take_record_batch, SortOptions,
};
use arrow::datatypes::SchemaRef;
use arrow::row::{OwnedRow, Row, RowConverter, SortField};
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use iceberg::spec::DataFile;
use icefjord_engine::file_bounds::column_ranges;
use icefjord_engine::IcebergTable;

use super::{conformed, mem_table};
use crate::error::{Result, RunnerError};
use crate::merge;
use crate::scanned::collect_counted;
use crate::spec::{Merge, Model};

/// Rows per written batch.
const BATCH_ROWS: usize = 8192;

/// Rows read from data files while a stream runs (the run report's `rows_read`).
#[derive(Clone, Debug, Default)]
pub(super) struct ReadCounter(Arc<AtomicU64>);

impl ReadCounter {
    fn add(&self, rows: u64) {
        self.0.fetch_add(rows, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One part of the output's order: old files (none for new keys between the
/// ranges) and the new rows inside it.
struct Chunk {
    files: Vec<DataFile>,
    new: Vec<RecordBatch>,
}

/// A range of the order's first column, in row format (`None`: unbounded).
struct Range {
    lower: Option<OwnedRow>,
    upper: Option<OwnedRow>,
    files: Vec<DataFile>,
}

/// The rewritten rows of a merge as a stream: see the module docs.
pub(super) struct Rewrite(Arc<Parts>);

struct Parts {
    ctx: SessionContext,
    model: Model,
    published: IcebergTable,
    schema: SchemaRef,
    order: Vec<String>,
    chunks: Vec<Chunk>,
    read: ReadCounter,
}

impl Rewrite {
    /// The rewrite of `touched` (files of `published`, whose current Iceberg
    /// schema is `table_schema`) with the run's `new` rows, merged among
    /// themselves (one row per key) and shaped as `schema`, in `order`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &SessionContext,
        model: &Model,
        published: &IcebergTable,
        table_schema: &iceberg::spec::Schema,
        schema: &SchemaRef,
        order: Vec<String>,
        touched: &[DataFile],
        new: &[RecordBatch],
    ) -> Result<Self> {
        let new = arrow::compute::concat_batches(schema, new)?;
        let lead = order.first().filter(|c| model.unique_key.contains(c));
        let ranges = match lead {
            _ if touched.is_empty() => Vec::new(),
            Some(lead) => ranges(model, table_schema, schema, lead, touched)?,
            None => vec![Range {
                lower: None,
                upper: None,
                files: touched.to_vec(),
            }],
        };
        // Chunk 2i: new keys below range i; chunk 2i + 1: range i; the last
        // chunk: new keys above every range.
        let mut slots: Vec<Vec<u32>> = vec![Vec::new(); 2 * ranges.len() + 1];
        match lead {
            Some(lead) if !ranges.is_empty() => {
                let converter = order_converter(schema, std::slice::from_ref(lead))?;
                let values = converter.convert_columns(&[new
                    .column_by_name(lead)
                    .cloned()
                    .ok_or_else(|| missing(model, lead))?])?;
                for (i, value) in values.iter().enumerate() {
                    // The first range not wholly below the value.
                    let at = ranges
                        .partition_point(|r| r.upper.as_ref().is_some_and(|u| u.row() < value));
                    let inside = ranges
                        .get(at)
                        .is_some_and(|r| r.lower.as_ref().is_none_or(|l| l.row() <= value));
                    slots[2 * at + usize::from(inside)].push(i as u32);
                }
            }
            // One unbounded range, or no touched file: one chunk holds all.
            _ => slots[usize::from(!ranges.is_empty())] = (0..new.num_rows() as u32).collect(),
        }
        let mut ranges = ranges.into_iter();
        let mut chunks = Vec::new();
        for (i, rows) in slots.into_iter().enumerate() {
            let files = match i % 2 {
                1 => ranges.next().map(|r| r.files).unwrap_or_default(),
                _ => Vec::new(),
            };
            if rows.is_empty() && files.is_empty() {
                continue;
            }
            let rows = take_record_batch(&new, &UInt32Array::from(rows))?;
            chunks.push(Chunk {
                files,
                new: vec![rows],
            });
        }
        Ok(Self(Arc::new(Parts {
            ctx: ctx.clone(),
            model: model.clone(),
            published: published.clone(),
            schema: schema.clone(),
            order,
            chunks,
            read: ReadCounter::default(),
        })))
    }

    /// What the stream has read from the touched files so far.
    pub fn read_counter(&self) -> ReadCounter {
        self.0.read.clone()
    }
}

impl std::fmt::Debug for Rewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewrite")
            .field("model", &self.0.model.name)
            .field("chunks", &self.0.chunks.len())
            .finish()
    }
}

impl Parts {
    /// Chunk `i`'s rows, sorted.
    async fn chunk(&self, i: usize) -> Result<Vec<RecordBatch>> {
        let chunk = &self.chunks[i];
        if chunk.files.is_empty() {
            return sorted(&self.schema, &self.order, &chunk.new);
        }
        let old = self.published.clone().with_only_files(chunk.files.clone());
        let old = conformed(self.ctx.read_table(Arc::new(old))?, &self.schema)?;
        let (old, read) = collect_counted(old).await?;
        self.read.add(read);
        let (matched, mut rows) = split_by_keys(&self.model, &self.schema, &old, &chunk.new)?;
        match self.model.merge {
            // A matched old row is replaced by its new row.
            Merge::Replace => rows.extend(chunk.new.iter().cloned()),
            Merge::Sum => {
                let read = |batches: &[RecordBatch]| -> Result<_> {
                    let table = mem_table(&self.schema, batches)?;
                    conformed(self.ctx.read_table(table)?, &self.schema)
                };
                let merged = merge::merge_by_key(
                    &self.model,
                    Some(read(&matched)?),
                    read(&chunk.new)?,
                    &self.schema,
                )
                .await?;
                rows.extend(conformed(merged, &self.schema)?.collect().await?);
            }
        }
        sorted(&self.schema, &self.order, &rows)
    }
}

impl PartitionStream for Rewrite {
    fn schema(&self) -> &SchemaRef {
        &self.0.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let this = self.0.clone();
        let stream = futures::stream::iter(0..this.chunks.len())
            .then(move |i| {
                let this = this.clone();
                async move { this.chunk(i).await.map_err(into_datafusion) }
            })
            .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
            .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(self.0.schema.clone(), stream))
    }
}

/// A runner error as a stream's error, a query error unwrapped.
fn into_datafusion(error: RunnerError) -> DataFusionError {
    match error {
        RunnerError::Query(e) => e,
        RunnerError::Arrow(e) => DataFusionError::ArrowError(Box::new(e), None),
        other => DataFusionError::External(Box::new(other)),
    }
}

fn missing(model: &Model, column: &str) -> RunnerError {
    model
        .error(
            Some("sort_by"),
            format!("the output has no column {column}"),
        )
        .into()
}

/// The touched files' disjoint ranges of `lead`, in order.
fn ranges(
    model: &Model,
    table_schema: &iceberg::spec::Schema,
    schema: &SchemaRef,
    lead: &str,
    touched: &[DataFile],
) -> Result<Vec<Range>> {
    let data_type = schema
        .field_with_name(lead)
        .map_err(|_| missing(model, lead))?
        .data_type()
        .clone();
    let files: Vec<&DataFile> = touched.iter().collect();
    let bounds = column_ranges(&model.name, &files, table_schema, lead, &data_type)?;
    let converter = order_converter(schema, &[lead.to_string()])?;
    let row = |value: &Option<datafusion::common::ScalarValue>| -> Result<Option<OwnedRow>> {
        let Some(value) = value else { return Ok(None) };
        let rows = converter.convert_columns(&[value.to_array()?])?;
        Ok(Some(rows.row(0).owned()))
    };
    let mut single: Vec<Range> = Vec::with_capacity(touched.len());
    for (file, bound) in touched.iter().zip(bounds) {
        single.push(Range {
            lower: row(&bound.lower)?,
            upper: row(&bound.upper)?,
            files: vec![file.clone()],
        });
    }
    // By lower end, unbounded first; then overlapping ranges merge.
    single.sort_by(|a, b| match (&a.lower, &b.lower) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(a), Some(b)) => a.cmp(b),
    });
    let mut merged: Vec<Range> = Vec::new();
    for range in single {
        if let Some(last) = merged.last_mut() {
            let overlaps = match (&last.upper, &range.lower) {
                (None, _) | (_, None) => true,
                (Some(upper), Some(lower)) => lower <= upper,
            };
            if overlaps {
                last.upper = match (last.upper.take(), range.upper) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
                last.files.extend(range.files);
                continue;
            }
        }
        merged.push(range);
    }
    Ok(merged)
}

/// A row converter for `columns` of `schema` in the output order: ascending,
/// NULLs first.
fn order_converter(schema: &SchemaRef, columns: &[String]) -> Result<RowConverter> {
    let fields = columns
        .iter()
        .map(|c| {
            let field = schema.field_with_name(c)?;
            Ok(SortField::new_with_options(
                field.data_type().clone(),
                SortOptions {
                    descending: false,
                    nulls_first: true,
                },
            ))
        })
        .collect::<Result<Vec<_>, arrow::error::ArrowError>>()?;
    Ok(RowConverter::new(fields)?)
}

fn columns(batch: &RecordBatch, names: &[String]) -> Result<Vec<ArrayRef>> {
    names
        .iter()
        .map(|n| Ok(batch.column(batch.schema().index_of(n)?).clone()))
        .collect()
}

/// `old`'s rows split into those whose key is among `new`'s keys and the rest.
/// Keys compare in row format: equal values, and NULL equal to NULL.
fn split_by_keys(
    model: &Model,
    schema: &SchemaRef,
    old: &[RecordBatch],
    new: &[RecordBatch],
) -> Result<(Vec<RecordBatch>, Vec<RecordBatch>)> {
    let keys = &model.unique_key;
    let converter = order_converter(schema, keys)?;
    let mut new_keys = converter.empty_rows(0, 0);
    for batch in new {
        converter.append(&mut new_keys, &columns(batch, keys)?)?;
    }
    let wanted: std::collections::HashSet<Row<'_>> = new_keys.iter().collect();
    let (mut matched, mut unmatched) = (Vec::new(), Vec::new());
    for batch in old {
        let rows = converter.convert_columns(&columns(batch, keys)?)?;
        let mask: BooleanArray = rows.iter().map(|r| Some(wanted.contains(&r))).collect();
        match mask.true_count() {
            0 => unmatched.push(batch.clone()),
            n if n == batch.num_rows() => matched.push(batch.clone()),
            _ => {
                matched.push(filter_record_batch(batch, &mask)?);
                unmatched.push(filter_record_batch(batch, &not(&mask)?)?);
            }
        }
    }
    Ok((matched, unmatched))
}

/// `batches`' rows sorted by `order` (ascending, NULLs first; stable), as
/// `schema` batches of at most [`BATCH_ROWS`] rows.
fn sorted(
    schema: &SchemaRef,
    order: &[String],
    batches: &[RecordBatch],
) -> Result<Vec<RecordBatch>> {
    let batches: Vec<RecordBatch> = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
        .collect::<Result<_, _>>()?;
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut at: Vec<(usize, usize)> = Vec::with_capacity(total);
    for (b, batch) in batches.iter().enumerate() {
        at.extend((0..batch.num_rows()).map(|r| (b, r)));
    }
    if !order.is_empty() {
        let converter = order_converter(schema, order)?;
        let mut rows = converter.empty_rows(total, 0);
        for batch in &batches {
            converter.append(&mut rows, &columns(batch, order)?)?;
        }
        let mut positions: Vec<usize> = (0..total).collect();
        positions.sort_by(|a, b| rows.row(*a).cmp(&rows.row(*b)));
        at = positions.into_iter().map(|p| at[p]).collect();
    }
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    Ok(at
        .chunks(BATCH_ROWS)
        .map(|part| interleave_record_batch(&refs, part))
        .collect::<Result<_, _>>()?)
}
