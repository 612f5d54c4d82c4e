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
use arrow::compute::{
    filter_record_batch, interleave_record_batch, take_record_batch, SortOptions,
};
use arrow::datatypes::SchemaRef;
use arrow::row::{OwnedRow, Row, RowConverter, Rows, SortField};
use datafusion::common::HashSet;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
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
        // One range at a time, each read in the stream's own task: no
        // repartitioning threads holding (and allocating) batches beside it.
        let state = SessionStateBuilder::new_from_existing(ctx.state())
            .with_config(ctx.copied_config().with_target_partitions(1))
            .build();
        Ok(Self(Arc::new(Parts {
            ctx: SessionContext::new_with_state(state),
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
    async fn chunk(&self, i: usize) -> Result<Ordered> {
        let chunk = &self.chunks[i];
        let mut ordered = Ordered::new(&self.schema, &self.order)?;
        if chunk.files.is_empty() {
            for batch in &chunk.new {
                let added = ordered.add(batch)?;
                ordered.choose(added);
            }
            return Ok(ordered.sorted());
        }
        let old = self.published.clone().with_only_files(chunk.files.clone());
        let old = conformed(self.ctx.read_table(Arc::new(old))?, &self.schema)?;
        let (old, read) = collect_counted(old).await?;
        self.read.add(read);
        // The new keys, and a converter for old keys into the same format.
        let keys = &self.model.unique_key;
        let same = self.order == *keys;
        let key_converter = match same {
            true => None,
            false => Some(order_converter(&self.schema, keys)?),
        };
        let converter = key_converter.as_ref().unwrap_or(&ordered.converter);
        let mut new_keys = converter.empty_rows(0, 0);
        for batch in &chunk.new {
            converter.append(&mut new_keys, &columns(batch, keys)?)?;
        }
        let wanted: HashSet<Row<'_>> = new_keys.iter().collect();
        // Old rows whose key is new are merged; the others are written as read.
        let mut matched = Vec::new();
        for batch in &old {
            let added = ordered.add(batch)?;
            let is_new: Vec<bool> = match &key_converter {
                None => added
                    .clone()
                    .map(|p| wanted.contains(&ordered.rows.row(p)))
                    .collect(),
                Some(converter) => converter
                    .convert_columns(&columns(batch, keys)?)?
                    .iter()
                    .map(|r| wanted.contains(&r))
                    .collect(),
            };
            ordered.choose(added.zip(&is_new).filter(|(_, m)| !**m).map(|(p, _)| p));
            if is_new.contains(&true) {
                matched.push(filter_record_batch(batch, &BooleanArray::from(is_new))?);
            }
        }
        let merged = match (self.model.merge, matched.is_empty()) {
            // A matched old row is replaced by its new row; with no match, the
            // new rows are merged already (among themselves).
            (Merge::Replace, _) | (Merge::Sum, true) => chunk.new.clone(),
            (Merge::Sum, false) => {
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
                conformed(merged, &self.schema)?.collect().await?
            }
        };
        for batch in &merged {
            let added = ordered.add(batch)?;
            ordered.choose(added);
        }
        Ok(ordered.sorted())
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
            .map_ok(|ordered| futures::stream::iter(ordered.into_batches()))
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

/// Rows to write in order: batches, their values of the order's columns in
/// row format, and which of their rows are written.
struct Ordered {
    schema: SchemaRef,
    order: Vec<String>,
    converter: RowConverter,
    rows: Rows,
    batches: Vec<RecordBatch>,
    /// Per row of `rows`: its batch and row in `batches`.
    at: Vec<(usize, usize)>,
    /// Positions in `rows` of the rows to write.
    chosen: Vec<usize>,
}

impl Ordered {
    fn new(schema: &SchemaRef, order: &[String]) -> Result<Self> {
        let converter = order_converter(schema, order)?;
        Ok(Self {
            schema: schema.clone(),
            order: order.to_vec(),
            rows: converter.empty_rows(0, 0),
            converter,
            batches: Vec::new(),
            at: Vec::new(),
            chosen: Vec::new(),
        })
    }

    /// Add `batch` (of `schema`'s columns); returns its rows' positions.
    fn add(&mut self, batch: &RecordBatch) -> Result<std::ops::Range<usize>> {
        let start = self.at.len();
        if batch.num_rows() == 0 {
            return Ok(start..start);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?;
        self.converter
            .append(&mut self.rows, &columns(&batch, &self.order)?)?;
        let b = self.batches.len();
        self.at.extend((0..batch.num_rows()).map(|r| (b, r)));
        self.batches.push(batch);
        Ok(start..self.at.len())
    }

    /// Write the rows at `positions`.
    fn choose(&mut self, positions: impl IntoIterator<Item = usize>) {
        self.chosen.extend(positions);
    }

    /// The chosen rows in order (a stable sort: rows already in order cost a
    /// pass).
    fn sorted(mut self) -> Self {
        let rows = &self.rows;
        self.chosen.sort_by(|a, b| rows.row(*a).cmp(&rows.row(*b)));
        self
    }

    /// The chosen rows, as batches of at most [`BATCH_ROWS`] rows each copied
    /// when it is taken.
    fn into_batches(self) -> impl Iterator<Item = Result<RecordBatch, DataFusionError>> {
        // The rows' order values are done with: only the batches stay.
        let Self {
            batches,
            at,
            chosen,
            ..
        } = self;
        let parts = chosen.len().div_ceil(BATCH_ROWS);
        (0..parts).map(move |i| {
            let part = &chosen[i * BATCH_ROWS..((i + 1) * BATCH_ROWS).min(chosen.len())];
            let at: Vec<(usize, usize)> = part.iter().map(|p| at[*p]).collect();
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            Ok(interleave_record_batch(&refs, &at)?)
        })
    }
}
