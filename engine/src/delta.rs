//! Delta Lake tables as job outputs (`target = "delta"`, deltalake 0.32).
//!
//! - [`DeltaOutput`]: one Delta table opened for a run: its writer, a reader of
//!   its current version plus the run's uncommitted files, and the commit.
//! - [`DeltaScan`]: a DataFusion `TableProvider` over one version of a Delta table
//!   (plus staged files). The log lists the files; DataFusion's own Parquet reader
//!   scans them, with partition values from the log as partition columns.
//!
//! Commit invariants (see also `icefjord_catalog::delta`):
//! - a run's files of one table become ONE Delta version, committed after every
//!   model and audit of the run succeeded and before the catalog commit pins it;
//! - the commit info carries the run's commit id (`icefjord.commitId`): a retry of
//!   the same commit finds its version in the log and does not write it twice;
//! - the commit reads the version the run started from, so a concurrent writer
//!   makes Delta's conflict check fail the commit rather than lose either write.

use std::any::Any;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::project_schema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::scalar::ScalarValue;
use datafusion_datasource::TableSchema;
use deltalake_core::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, StructType};
use deltalake_core::logstore::ObjectStoreRef;
use deltalake_core::logstore::{
    default_logstore, logstore_factories, LogStoreFactory, LogStoreRef, StorageConfig,
};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::writer::{DeltaWriter as _, RecordBatchWriter};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use icefjord_catalog::WarehouseStore;
use object_store::path::Path;
use object_store::ObjectStoreExt as _;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{EngineError, Result};
use crate::scan::{parquet_scan, StagedMode};
use crate::write::{conform, WriteMetrics};

/// A data file of a Delta table, as its log records it.
pub type DeltaAdd = Add;

use icefjord_catalog::protocol::keys::{COMMIT_ID, LEGACY_DELTA_COMMIT_ID};

/// How much a [`DeltaWriter`] buffers before writing files out.
const FLUSH_BYTES: usize = 128 << 20;

/// A Delta table opened by a run at its latest version.
#[derive(Debug, Clone)]
pub struct DeltaOutput {
    table: DeltaTable,
    location: String,
    store: WarehouseStore,
    /// The opened version's files, schema and partitioning (read from the log once).
    published: DeltaScan,
}

impl DeltaOutput {
    /// The Delta table at `location`, at its latest version. `None` when there is
    /// no Delta table there.
    pub async fn open(store: &WarehouseStore, location: &str) -> Result<Option<Self>> {
        let mut table = builder(store, location)?.build().map_err(delta(location))?;
        if !table
            .verify_deltatable_existence()
            .await
            .map_err(delta(location))?
        {
            return Ok(None);
        }
        table.load().await.map_err(delta(location))?;
        Ok(Some(Self::opened(table, store, location).await?))
    }

    async fn opened(table: DeltaTable, store: &WarehouseStore, location: &str) -> Result<Self> {
        Ok(Self {
            published: DeltaScan::of(&table, location, store).await?,
            table,
            location: location.to_string(),
            store: store.clone(),
        })
    }

    /// Create the Delta table at `location` (version 0, no files) with `schema`,
    /// partitioned by the columns `partition_by` (Delta partitions by value).
    pub async fn create(
        store: &WarehouseStore,
        location: &str,
        name: &str,
        schema: &SchemaRef,
        partition_by: &[String],
    ) -> Result<Self> {
        let kernel = delta_schema(schema).map_err(|e| mismatch(location, e))?;
        let log_store = builder(store, location)?
            .build_storage()
            .map_err(delta(location))?;
        let table = CreateBuilder::new()
            .with_log_store(log_store)
            .with_table_name(name)
            .with_columns(kernel.fields().cloned())
            .with_partition_columns(partition_by.to_vec())
            .with_save_mode(SaveMode::ErrorIfExists)
            .await
            .map_err(delta(location))?;
        Self::opened(table, store, location).await
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// The version the table was opened at.
    pub fn version(&self) -> u64 {
        self.table.version().unwrap_or_default()
    }

    /// The table's columns as Arrow.
    pub fn schema(&self) -> SchemaRef {
        self.published.schema.clone()
    }

    pub fn partition_columns(&self) -> &[String] {
        &self.published.partition_columns
    }

    /// A writer of new data files (uncommitted until [`DeltaOutput::commit`]).
    pub fn writer(&self) -> Result<DeltaWriter> {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
            .set_max_row_group_row_count(Some(1 << 20))
            .build();
        let inner = RecordBatchWriter::for_table(&self.table)
            .map_err(delta(&self.location))?
            .with_writer_properties(props);
        Ok(DeltaWriter {
            location: self.location.clone(),
            schema: self.schema(),
            inner,
            adds: Vec::new(),
            rows: 0,
        })
    }

    /// The table at its opened version, with `staged` files read as if committed.
    pub fn scan(&self, staged: Option<(Vec<Add>, StagedMode)>) -> DeltaScan {
        let mut scan = self.published.clone();
        if let Some((files, mode)) = staged {
            scan.stage(files, mode);
        }
        scan
    }

    /// Commit `files` as one new version, as `mode` says, unless a version with
    /// this `commit_id` is already in the log. Returns the version holding them.
    pub async fn commit(&self, files: Vec<Add>, mode: StagedMode, commit_id: &str) -> Result<u64> {
        if let Some(version) = self.committed(commit_id).await? {
            return Ok(version);
        }
        let snapshot = self.table.snapshot().map_err(delta(&self.location))?;
        let removed = removed(&self.published.files, &files, mode);
        let now = chrono::Utc::now().timestamp_millis();
        let mut actions: Vec<Action> = removed
            .into_iter()
            .map(|add| Action::Remove(add.remove_action(now)))
            .collect();
        actions.extend(files.into_iter().map(Action::Add));
        let partition_by = snapshot.metadata().partition_columns().to_vec();
        let operation = DeltaOperation::Write {
            mode: match mode {
                StagedMode::Append => SaveMode::Append,
                StagedMode::Overwrite | StagedMode::ReplacePartitions => SaveMode::Overwrite,
            },
            partition_by: (!partition_by.is_empty()).then_some(partition_by),
            predicate: None,
        };
        let properties = CommitProperties::default().with_metadata([(
            COMMIT_ID.to_string(),
            serde_json::Value::String(commit_id.to_string()),
        )]);
        let done = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(Some(snapshot), self.table.log_store(), operation)
            .await
            .map_err(delta(&self.location))?;
        Ok(done.version())
    }

    /// The version committed with `commit_id`, among the latest 20 in the log
    /// (read from the commit files, newest first, including versions newer than
    /// the one this table was opened at).
    async fn committed(&self, commit_id: &str) -> Result<Option<u64>> {
        let latest = self
            .table
            .get_latest_version()
            .await
            .map_err(delta(&self.location))?;
        let client = self.store.client()?;
        let log: Path = self.store.path_of(&self.location)?.join("_delta_log");
        for version in (latest.saturating_sub(19)..=latest).rev() {
            let path = log.clone().join(format!("{version:020}.json").as_str());
            let bytes = match client.get(&path).await {
                Ok(found) => found.bytes().await,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => Err(e),
            }
            .map_err(|e| EngineError::Delta {
                location: self.location.clone(),
                message: e.to_string(),
            })?;
            if commit_id_of(&bytes).as_deref() == Some(commit_id) {
                return Ok(Some(version));
            }
        }
        Ok(None)
    }
}

/// The icefjord commit id in a Delta commit file's `commitInfo`, if any.
fn commit_id_of(commit: &[u8]) -> Option<String> {
    commit
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .find_map(|action| {
            let info = action.get("commitInfo")?;
            info.get(COMMIT_ID)
                .or_else(|| info.get(LEGACY_DELTA_COMMIT_ID))?
                .as_str()
                .map(str::to_string)
        })
}

/// The live data files of the table's loaded version.
// `add_action` is deprecated in favour of reading the log's Arrow arrays; the few
// fields we need are simpler to carry as `Add`s, which commits take anyway.
#[allow(deprecated)]
async fn files_of(table: &DeltaTable, location: &str) -> Result<Vec<Add>> {
    let snapshot = table.snapshot().map_err(delta(location))?;
    snapshot
        .snapshot()
        .file_views(&table.log_store(), None)
        .map_ok(|file| file.add_action())
        .try_collect()
        .await
        .map_err(delta(location))
}

/// The published files `mode` removes when `staged` files are committed.
fn removed(current: &[Add], staged: &[Add], mode: StagedMode) -> Vec<Add> {
    match mode {
        StagedMode::Append => Vec::new(),
        StagedMode::Overwrite => current.to_vec(),
        StagedMode::ReplacePartitions => current
            .iter()
            .filter(|file| {
                staged
                    .iter()
                    .any(|s| s.partition_values == file.partition_values)
            })
            .cloned()
            .collect(),
    }
}

trait RemoveAction {
    fn remove_action(&self, now: i64) -> deltalake_core::kernel::Remove;
}

impl RemoveAction for Add {
    fn remove_action(&self, now: i64) -> deltalake_core::kernel::Remove {
        deltalake_core::kernel::Remove {
            path: self.path.clone(),
            data_change: true,
            deletion_timestamp: Some(now),
            extended_file_metadata: Some(true),
            partition_values: Some(self.partition_values.clone()),
            size: Some(self.size),
            deletion_vector: self.deletion_vector.clone(),
            tags: None,
            base_row_id: self.base_row_id,
            default_row_commit_version: self.default_row_commit_version,
        }
    }
}

/// Writes record batches into Parquet data files of one Delta table, split by its
/// partition columns; the files are not part of the table until committed.
pub struct DeltaWriter {
    location: String,
    schema: SchemaRef,
    inner: RecordBatchWriter,
    adds: Vec<Add>,
    rows: u64,
}

impl DeltaWriter {
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = conform(&self.location, &self.schema, &batch)?;
        self.rows += batch.num_rows() as u64;
        self.inner
            .write(batch)
            .await
            .map_err(delta(&self.location))?;
        if self.inner.buffer_len() > FLUSH_BYTES {
            let adds = self.inner.flush().await.map_err(delta(&self.location))?;
            self.adds.extend(adds);
        }
        Ok(())
    }

    /// Write out what is buffered; the files written and what they hold.
    pub async fn close(mut self) -> Result<(Vec<Add>, WriteMetrics)> {
        let adds = self.inner.flush().await.map_err(delta(&self.location))?;
        self.adds.extend(adds);
        let metrics = WriteMetrics {
            rows: self.rows,
            files: self.adds.len(),
            bytes: self.adds.iter().map(|a| a.size.max(0) as u64).sum(),
        };
        Ok((self.adds, metrics))
    }
}

/// One version of a Delta table (plus staged files), readable by DataFusion.
#[derive(Debug, Clone)]
pub struct DeltaScan {
    location: String,
    /// The table's object-store path (data file paths are relative to it).
    root: Path,
    schema: SchemaRef,
    partition_columns: Vec<String>,
    files: Vec<Add>,
    store: WarehouseStore,
}

impl DeltaScan {
    /// The Delta table at `location`, at `version`.
    pub async fn open(store: &WarehouseStore, location: &str, version: u64) -> Result<Self> {
        let table = builder(store, location)?
            .with_version(version)
            .load()
            .await
            .map_err(delta(location))?;
        Self::of(&table, location, store).await
    }

    async fn of(table: &DeltaTable, location: &str, store: &WarehouseStore) -> Result<Self> {
        let snapshot = table.snapshot().map_err(delta(location))?;
        let files = files_of(table, location).await?;
        if files.iter().any(|f| f.deletion_vector.is_some()) {
            return Err(mismatch(
                location,
                "the table has deletion vectors; reading them is not supported yet".into(),
            ));
        }
        Ok(Self {
            location: location.to_string(),
            root: store.path_of(location)?,
            schema: arrow_schema(location, &snapshot.schema())?,
            partition_columns: snapshot.metadata().partition_columns().to_vec(),
            files,
            store: store.clone(),
        })
    }

    fn stage(&mut self, staged: Vec<Add>, mode: StagedMode) {
        let gone = removed(&self.files, &staged, mode);
        self.files
            .retain(|f| !gone.iter().any(|g| g.path == f.path));
        self.files.extend(staged);
    }

    /// The file's object path: data file paths in the log are relative to the
    /// table and URL-encoded.
    fn file_path(&self, add: &Add) -> DfResult<Path> {
        let relative = Path::from_url_path(&add.path).map_err(|e| {
            DataFusionError::Execution(format!(
                "{}: bad file path {}: {e}",
                self.location, add.path
            ))
        })?;
        Ok(self.root.parts().chain(relative.parts()).collect())
    }
}

#[async_trait]
impl TableProvider for DeltaScan {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.files.is_empty() {
            let projected = project_schema(&self.schema, projection)?;
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        // DataFusion puts partition columns after the file's columns: map the
        // table's column order onto that.
        let is_partition = |f: &FieldRef| self.partition_columns.contains(f.name());
        let data: Vec<FieldRef> = self
            .schema
            .fields()
            .iter()
            .filter(|f| !is_partition(f))
            .cloned()
            .collect();
        let partitions: Vec<FieldRef> = self
            .partition_columns
            .iter()
            .map(|name| {
                self.schema
                    .field_with_name(name)
                    .map(|f| Arc::new(f.clone()))
            })
            .collect::<Result<_, _>>()?;
        let order: Vec<usize> = self
            .schema
            .fields()
            .iter()
            .map(
                |f| match self.partition_columns.iter().position(|p| p == f.name()) {
                    Some(p) => data.len() + p,
                    None => data.iter().position(|d| d.name() == f.name()).unwrap_or(0),
                },
            )
            .collect();
        let mut files = Vec::with_capacity(self.files.len());
        for add in &self.files {
            let values = partitions
                .iter()
                .map(|field| partition_value(&self.location, add, field))
                .collect::<DfResult<Vec<_>>>()?;
            let mut file =
                crate::scan::partitioned_file(self.file_path(add)?, add.size.max(0) as u64);
            file.partition_values = values;
            files.push(file);
        }
        let indices = match projection {
            Some(projection) => projection.iter().map(|&i| order[i]).collect(),
            None => order,
        };
        let file_schema = Arc::new(Schema::new(data));
        parquet_scan(
            state,
            &self.store,
            TableSchema::new(file_schema, partitions),
            files,
            Some(indices),
            limit,
            None,
        )
        .await
    }
}

/// A file's value of a partition column: the log keeps it as text.
fn partition_value(location: &str, add: &Add, field: &Field) -> DfResult<ScalarValue> {
    match add.partition_values.get(field.name()).cloned().flatten() {
        None => ScalarValue::try_from(field.data_type()),
        Some(text) => ScalarValue::try_from_string(text.clone(), field.data_type()).map_err(|e| {
            DataFusionError::Execution(format!(
                "{location}: partition value {}={text} of {}: {e}",
                field.name(),
                add.path
            ))
        }),
    }
}

/// The Delta schema of Arrow columns, or why there is none.
pub fn delta_schema(schema: &SchemaRef) -> std::result::Result<StructType, String> {
    schema
        .as_ref()
        .try_into_kernel()
        .map_err(|e| format!("the output has no Delta schema: {e}"))
}

/// deltalake ships log stores for `file://` and `memory://` only; S3 support is
/// its deltalake-aws crate (the AWS SDK and DynamoDB locking). Delta's default
/// log store commits a version with a create-only put, which our S3 client does
/// with `If-None-Match: *` (S3, MinIO): atomic without a lock table. Register it
/// for `s3://` and `s3a://`.
fn register_s3_log_store() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for scheme in ["s3://", "s3a://"] {
            if let Ok(url) = url::Url::parse(scheme) {
                logstore_factories().insert(url, Arc::new(ConditionalPutLogStores));
            }
        }
    });
}

struct ConditionalPutLogStores;

impl LogStoreFactory for ConditionalPutLogStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &url::Url,
        options: &StorageConfig,
    ) -> deltalake_core::DeltaResult<LogStoreRef> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn builder(store: &WarehouseStore, location: &str) -> Result<DeltaTableBuilder> {
    register_s3_log_store();
    let url = url::Url::parse(location)
        .map_err(|e| mismatch(location, format!("not a table URL: {e}")))?;
    Ok(DeltaTableBuilder::from_url(url.clone())
        .map_err(delta(location))?
        .with_storage_backend(store.client()?, url))
}

fn arrow_schema(location: &str, schema: &StructType) -> Result<SchemaRef> {
    let arrow: Schema = schema
        .try_into_arrow()
        .map_err(|e| mismatch(location, format!("no Arrow type for the table: {e}")))?;
    Ok(Arc::new(arrow))
}

fn delta(location: &str) -> impl Fn(DeltaTableError) -> EngineError + '_ {
    move |e| EngineError::Delta {
        location: location.to_string(),
        message: e.to_string(),
    }
}

fn mismatch(location: &str, message: String) -> EngineError {
    EngineError::SchemaMismatch {
        table: location.to_string(),
        message,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn add(path: &str, part: Option<&str>) -> Add {
        Add {
            path: path.into(),
            partition_values: part
                .map(|p| HashMap::from([("day".to_string(), Some(p.to_string()))]))
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    #[test]
    fn s3_tables_get_a_log_store() {
        let store = WarehouseStore::new(
            &icefjord_catalog::Warehouse::S3 {
                bucket: "lake".into(),
                prefix: String::new(),
            },
            &icefjord_catalog::S3Options {
                endpoint: Some("http://127.0.0.1:9".into()),
                allow_http: true,
                ..Default::default()
            },
        )
        .unwrap();
        // Without our registration deltalake refuses s3:// as an unknown location.
        let log_store = builder(&store, "s3://lake/export/sales")
            .unwrap()
            .build_storage()
            .unwrap();
        assert_eq!(log_store.root_url().as_str(), "s3://lake/export/sales/");
    }

    #[test]
    fn the_commit_id_is_read_from_the_commit_info_line() {
        let commit = br#"{"add":{"path":"a.parquet"}}
{"commitInfo":{"operation":"WRITE","icefjord.commit-id":"run:shop:r1"}}
"#;
        assert_eq!(commit_id_of(commit).as_deref(), Some("run:shop:r1"));
        // Versions written by releases that spelled the key in camel case.
        let legacy = br#"{"commitInfo":{"operation":"WRITE","icefjord.commitId":"run:shop:r0"}}"#;
        assert_eq!(commit_id_of(legacy).as_deref(), Some("run:shop:r0"));
        assert_eq!(
            commit_id_of(br#"{"commitInfo":{"operation":"WRITE"}}"#),
            None
        );
        assert_eq!(commit_id_of(b"not json"), None);
    }

    #[test]
    fn replace_partitions_removes_only_the_partitions_written() {
        let current = [
            add("a", Some("1")),
            add("b", Some("2")),
            add("c", Some("2")),
        ];
        let staged = [add("d", Some("2"))];
        let gone: Vec<String> = removed(&current, &staged, StagedMode::ReplacePartitions)
            .into_iter()
            .map(|a| a.path)
            .collect();
        assert_eq!(gone, ["b", "c"]);
        assert_eq!(removed(&current, &staged, StagedMode::Overwrite).len(), 3);
        assert!(removed(&current, &staged, StagedMode::Append).is_empty());
    }
}
