//! An `incremental_by_key` run on a published Iceberg output: copy-on-write of
//! the files the new rows' keys touch, and nothing else.
//!
//! # Invariants
//!
//! - **Which files are read.** A published file is read and rewritten when its
//!   column bounds may hold a key of the run's new rows
//!   ([`icefjord_engine::file_bounds::may_hold_keys`]); every other file provably
//!   holds none of them and stays as it is. So every old row whose key the merge
//!   must see is read, and the merged rows replace exactly the files they came
//!   from ([`TableWrite::overwrite_files`]).
//! - **One row per key still holds.** The kept files held no new key, the
//!   rewritten files hold the merge of the touched files' rows with the new rows
//!   ([`merge::merge_by_key`]: one row per key when the published output had one).
//!   Only the old rows whose key is among the new keys are merged; the others
//!   are written as read ([`super::rewrite`]).
//! - **Sorted output.** The rewritten rows are written sorted by the model's
//!   `sort_by`, else by its `unique_key`, so each rewritten file covers a narrow
//!   key range (e.g. recent hours) and the next run's new keys touch few files.
//! - **Cost.** A run reads the new rows, the manifests and the touched files:
//!   what changed, not the history. It holds the new rows and one key range of
//!   the touched files at a time (one file, when they were written sorted). The commit fails with a conflict when one of
//!   the touched files was removed meanwhile (e.g. by a compaction); the next
//!   run starts over from the published state.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::prelude::{DataFrame, SessionContext};
use iceberg::spec::DataFile;
use iceberg::table::Table;
use icefjord_catalog::commit::live_entries;
use icefjord_engine::file_bounds::may_hold_keys;
use icefjord_engine::IcebergTable;

use super::rewrite::{ReadCounter, Rewrite};
use super::{conformed, mem_table};
use crate::error::Result;
use crate::merge;
use crate::scanned::collect_counted;
use crate::spec::Model;

/// What a run changes in the output: the merged rows and the files they replace.
pub(super) struct FileMerge {
    /// The merged rows, sorted (see the module docs).
    pub content: DataFrame,
    /// The published files the merge read and its files replace.
    pub touched: Vec<DataFile>,
    /// The run's new rows (before merging).
    pub new_rows: u64,
    /// Rows read from data files for the new rows.
    pub rows_read: u64,
    /// Rows read from the touched files, counted as `content` streams.
    pub touched_rows_read: ReadCounter,
}

impl FileMerge {
    /// The touched files' paths, as the manifests hold them.
    pub fn touched_paths(&self) -> HashSet<String> {
        self.touched
            .iter()
            .map(|f| f.file_path().to_string())
            .collect()
    }
}

/// Merge `new_frame` (the run's new rows, `frame_schema`) into the published
/// output `table` (read through `published`), rows shaped as `schema`.
pub(super) async fn merge_into_files(
    ctx: &SessionContext,
    model: &Model,
    table: &Table,
    published: &IcebergTable,
    new_frame: DataFrame,
    frame_schema: &SchemaRef,
    schema: &SchemaRef,
) -> Result<FileMerge> {
    // A column of the output the query does not produce (another engine added
    // it) would be lost from every rewritten file: refuse, naming it.
    if let Some(extra) = table
        .metadata()
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .find(|f| schema.field_with_name(&f.name).is_err())
    {
        return Err(model
            .error(
                Some("sql"),
                format!(
                    "the output has a column {} that the query does not produce; a merge \
                     would rewrite files without its values: add it to the query or drop it \
                     from the table",
                    extra.name
                ),
            )
            .into());
    }
    let (batches, rows_read) = collect_counted(new_frame).await?;
    let new_rows = batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
    let touched = match new_rows {
        0 => Vec::new(),
        _ => touched_files(model, table, frame_schema, &batches).await?,
    };
    // The new rows merged among themselves: one row per key (summed, or the
    // repeated-key check of `replace`). Few next to the history: held.
    let new = conformed(ctx.read_table(mem_table(frame_schema, &batches)?)?, schema)?;
    let new = conformed(merge::merge_by_key(model, None, new, schema).await?, schema)?
        .collect()
        .await?;
    let order = match model.sort_by.is_empty() {
        true => model.unique_key.clone(),
        false => model.sort_by.clone(),
    };
    let rewrite = Rewrite::new(
        ctx,
        model,
        published,
        table.metadata().current_schema(),
        schema,
        order,
        &touched,
        &new,
    )?;
    let touched_rows_read = rewrite.read_counter();
    let stream = StreamingTable::try_new(schema.clone(), vec![Arc::new(rewrite)])?;
    Ok(FileMerge {
        content: ctx.read_table(Arc::new(stream))?,
        touched,
        new_rows,
        rows_read,
        touched_rows_read,
    })
}

/// The live files of `table`'s current snapshot whose bounds may hold a key of
/// `batches` (the new rows, `schema`).
async fn touched_files(
    model: &Model,
    table: &Table,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<DataFile>> {
    let entries = live_entries(table, table.metadata().current_snapshot_id()).await?;
    let files: Vec<&DataFile> = entries.iter().map(|e| e.data_file()).collect();
    let all = arrow::compute::concat_batches(schema, batches)?;
    let indices = model
        .unique_key
        .iter()
        .map(|k| all.schema().index_of(k))
        .collect::<Result<Vec<usize>, _>>()?;
    let keys = all.project(&indices)?;
    let may = may_hold_keys(
        &model.name,
        &files,
        table.metadata().current_schema(),
        &keys,
    )?;
    Ok(files
        .into_iter()
        .zip(may)
        .filter(|(_, may)| *may)
        .map(|(file, _)| file.clone())
        .collect())
}
