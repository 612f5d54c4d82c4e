//! [`IcebergTable`]: a DataFusion `TableProvider` over one snapshot of an Iceberg
//! table. Planning lists the snapshot's live data files from its manifests; the scan
//! itself is DataFusion's own Parquet reader (projection, row-group pruning and
//! filter pushdown included) on the warehouse's object store, with each file's
//! columns found by Iceberg field id ([`crate::column_projection`]). String columns come
//! out as `Utf8View`, and each file carries its partition
//! ([`crate::partitionwise::FilePartition`]) for partition-wise aggregation.

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{project_schema, Statistics};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr_adapter::PhysicalExprAdapterFactory;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_datasource::TableSchema;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::{Literal, PrimitiveLiteral, Transform};
use iceberg::table::Table;
use iceberg::TableIdent;
use icefjord_catalog::{commit::live_entries_after, CatalogError, WarehouseStore};

use crate::column_projection::ColumnProjection;
use crate::error::Result;
use crate::file_bounds::FileStatistics;
use crate::partitionwise::{FilePartition, PartitionField, PartitionKey};
use datafusion::physical_optimizer::pruning::PruningPredicate;

/// One snapshot of an Iceberg table, readable by DataFusion.
#[derive(Debug, Clone)]
pub struct IcebergTable {
    table: Table,
    snapshot_id: Option<i64>,
    schema: SchemaRef,
    store: WarehouseStore,
    staged: Option<Staged>,
    /// Only files committed with a data sequence number above this.
    after_sequence: Option<i64>,
    /// Exactly these live files of the snapshot, listed by the caller (the
    /// manifests are not read again).
    only_files: Option<Arc<Vec<iceberg::spec::DataFile>>>,
    /// A row filter always applied (not a pushed-down hint).
    filter: Option<Expr>,
    /// Other tables whose metadata chose the slice read
    /// ([`IcebergTable::determined_by`]).
    depends_on: Vec<(TableIdent, String)>,
    /// Source column and transform of each field of the table's partition spec
    /// (`None` for a source that is not a top-level column), when it has a single spec (see
    /// [`crate::partitionwise`]).
    partition_fields: Option<Vec<Option<(String, Transform)>>>,
    /// Finds each data file's columns by field id.
    projection: Arc<ColumnProjection>,
    /// The Iceberg schema of `schema` (field ids of the files' bounds).
    iceberg_schema: iceberg::spec::SchemaRef,
}

/// Data files written but not committed, read as if a commit had added them: how
/// the job runner shows a model's new output to later models before publishing.
#[derive(Debug, Clone)]
pub struct Staged {
    pub files: Vec<iceberg::spec::DataFile>,
    pub mode: StagedMode,
    /// More partitions a `ReplacePartitions` stage empties (see
    /// `TableWrite::with_replaced_partitions`).
    pub replaced: Vec<iceberg::spec::Struct>,
    /// Published files the stage removes (an `Append` stage that removes
    /// files is `TableWrite::overwrite_files`).
    pub deleted: std::collections::HashSet<String>,
}

/// What the staged files do to the snapshot's files (as the commit will).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StagedMode {
    /// Added to them.
    Append,
    /// Replace them all.
    Overwrite,
    /// Replace those in the partitions the staged files fall into.
    ReplacePartitions,
}

impl IcebergTable {
    /// The table at `snapshot_id` (`None`: the current snapshot of `main`).
    ///
    /// Its columns are those of the table's current schema, or for a given
    /// snapshot (time travel) those of the schema that snapshot was written with,
    /// as Iceberg readers do (a schema change commits no snapshot: the current
    /// snapshot's schema may be older than the table's).
    pub fn try_new(table: Table, snapshot_id: Option<i64>, store: WarehouseStore) -> Result<Self> {
        let iceberg_schema = match snapshot_id.and_then(|id| table.metadata().snapshot_by_id(id)) {
            Some(snapshot) => snapshot.schema(table.metadata())?,
            None => table.metadata().current_schema().clone(),
        };
        let snapshot_id = snapshot_id.or_else(|| table.metadata().current_snapshot_id());
        let with_ids = schema_to_arrow_schema(&iceberg_schema)?;
        let schema = Arc::new(Schema::new(
            with_ids
                .fields()
                .iter()
                .map(|f| {
                    let field = f.as_ref().clone().with_metadata(Default::default());
                    // Strings are read as views (DataFusion's own default for
                    // Parquet): decoded without copying each value, and short
                    // ones compared and hashed inline.
                    match field.data_type() {
                        DataType::Utf8 | DataType::LargeUtf8 => {
                            field.with_data_type(DataType::Utf8View)
                        }
                        _ => field,
                    }
                })
                .collect::<Vec<_>>(),
        ));
        let metadata = table.metadata();
        let partition_fields = (metadata.partition_specs_iter().count() == 1).then(|| {
            metadata
                .default_partition_spec()
                .fields()
                .iter()
                .map(|f| {
                    // Top-level columns only: a nested source's leaf name could
                    // be mistaken for a top-level column of the same name.
                    let column = iceberg_schema
                        .as_struct()
                        .field_by_id(f.source_id)?
                        .name
                        .clone();
                    Some((column, f.transform))
                })
                .collect()
        });
        let projection = Arc::new(ColumnProjection::try_new(
            &icefjord_catalog::display(table.identifier()),
            iceberg_schema.clone(),
            metadata.properties(),
        )?);
        Ok(Self {
            table,
            snapshot_id,
            schema,
            store,
            staged: None,
            after_sequence: None,
            only_files: None,
            filter: None,
            depends_on: Vec::new(),
            partition_fields,
            projection,
            iceberg_schema,
        })
    }

    /// Only the data files committed after the snapshot with this sequence number
    /// (an incremental read; see [`crate::fresh`]).
    pub fn with_files_after(mut self, sequence_number: i64) -> Self {
        self.after_sequence = Some(sequence_number);
        self
    }

    /// Only the rows of these live data files of the snapshot, as the caller
    /// listed them from its manifests: the files an incremental merge rewrites.
    pub fn with_only_files(mut self, files: Vec<iceberg::spec::DataFile>) -> Self {
        self.only_files = Some(Arc::new(files));
        self
    }

    /// Only the rows `filter` keeps, whatever the query asks.
    pub fn with_filter(mut self, filter: Expr) -> Self {
        self.filter = Some(filter);
        self
    }

    /// This snapshot with uncommitted `files` applied as `mode` would apply them.
    pub fn with_staged(mut self, files: Vec<iceberg::spec::DataFile>, mode: StagedMode) -> Self {
        self.staged = Some(Staged {
            files,
            mode,
            replaced: Vec::new(),
            deleted: Default::default(),
        });
        self
    }

    /// This snapshot without the files at `deleted` and with `files` added, as
    /// `TableWrite::overwrite_files` will commit it.
    pub fn with_staged_overwriting_files(
        mut self,
        files: Vec<iceberg::spec::DataFile>,
        deleted: std::collections::HashSet<String>,
    ) -> Self {
        self.staged = Some(Staged {
            files,
            mode: StagedMode::Append,
            replaced: Vec::new(),
            deleted,
        });
        self
    }

    /// Staged files that also empty `partitions` (as the commit will).
    pub fn with_staged_replacing(
        mut self,
        files: Vec<iceberg::spec::DataFile>,
        partitions: Vec<iceberg::spec::Struct>,
    ) -> Self {
        self.staged = Some(Staged {
            files,
            mode: StagedMode::ReplacePartitions,
            replaced: partitions,
            deleted: Default::default(),
        });
        self
    }

    /// The tables whose metadata decides what this provider reads, with the
    /// metadata location each was read at: its own table, and the tables
    /// whose positions chose a slice of it (the output whose boundary picks an
    /// `@since` slice, [`IcebergTable::with_dependency`]). `None` when
    /// something outside the catalog chose what it reads (staged or listed
    /// files, a filter no dependency explains), or its table has no
    /// metadata location.
    pub fn determined_by(&self) -> Option<Vec<(TableIdent, String)>> {
        let sliced = self.filter.is_some() || self.after_sequence.is_some();
        if self.staged.is_some()
            || self.only_files.is_some()
            || (sliced && self.depends_on.is_empty())
        {
            return None;
        }
        let own = (
            self.table.identifier().clone(),
            self.table.metadata_location()?.to_string(),
        );
        Some(
            std::iter::once(own)
                .chain(self.depends_on.iter().cloned())
                .collect(),
        )
    }

    /// What this provider reads also depends on `table` as of `location`.
    pub fn with_dependency(mut self, table: TableIdent, location: String) -> Self {
        self.depends_on.push((table, location));
        self
    }

    pub fn snapshot_id(&self) -> Option<i64> {
        self.snapshot_id
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The partition `file` holds, by source column and transform, for
    /// [`crate::partitionwise`]; `None` unless the table has a single spec.
    fn file_partition(&self, file: &iceberg::spec::DataFile) -> Option<FilePartition> {
        let spec = self.partition_fields.as_ref()?;
        let values = file.partition();
        if values.fields().len() != spec.len() {
            return None;
        }
        let fields = spec
            .iter()
            .zip(values.iter())
            .filter_map(|(field, value)| {
                let (column, transform) = field.as_ref()?;
                let value = match value {
                    None => Some(None),
                    Some(Literal::Primitive(PrimitiveLiteral::Int(v))) => {
                        Some(Some(PartitionKey::Int(i64::from(*v))))
                    }
                    Some(Literal::Primitive(PrimitiveLiteral::Long(v))) => {
                        Some(Some(PartitionKey::Int(*v)))
                    }
                    Some(Literal::Primitive(PrimitiveLiteral::String(v))) => {
                        Some(Some(PartitionKey::Str(v.clone())))
                    }
                    Some(_) => None,
                };
                Some(PartitionField {
                    column: column.clone(),
                    transform: *transform,
                    value,
                })
            })
            .collect();
        Some(FilePartition { fields })
    }

    /// The files whose column bounds may hold rows that `filters` and the fixed
    /// filter keep (DataFusion's `PruningPredicate` over the manifests' bounds,
    /// [`crate::file_bounds::FileStatistics`]); the filters still run on every
    /// row read.
    fn pruned(
        &self,
        state: &dyn Session,
        filters: &[Expr],
        entries: Vec<iceberg::spec::DataFile>,
    ) -> DfResult<Vec<iceberg::spec::DataFile>> {
        let all = filters.iter().cloned().chain(self.filter.clone());
        let Some(predicate) = datafusion::logical_expr::utils::conjunction(all) else {
            return Ok(entries);
        };
        if entries.len() < 2 {
            return Ok(entries);
        }
        // A filter that cannot be turned into a pruning predicate only costs
        // the skipping: every file is scanned and filtered.
        let df_schema = datafusion::common::DFSchema::try_from(self.schema.as_ref().clone())?;
        let Ok(pruning) = state
            .create_physical_expr(predicate, &df_schema)
            .and_then(|physical| PruningPredicate::try_new(physical, self.schema.clone()))
        else {
            return Ok(entries);
        };
        if pruning.always_true() {
            return Ok(entries);
        }
        let files: Vec<&iceberg::spec::DataFile> = entries.iter().collect();
        let statistics = FileStatistics::new(&files, self.schema.clone(), &self.iceberg_schema);
        let Ok(keep) = pruning.prune(&statistics) else {
            return Ok(entries);
        };
        Ok(entries
            .into_iter()
            .zip(keep)
            .filter_map(|(file, keep)| keep.then_some(file))
            .collect())
    }

    fn has_delete_files(&self) -> bool {
        self.snapshot_id
            .and_then(|id| self.table.metadata().snapshot_by_id(id))
            .and_then(|s| {
                s.summary()
                    .additional_properties
                    .get("total-delete-files")
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .is_some_and(|n| n > 0)
    }
}

fn external(e: impl Into<CatalogError>) -> DataFusionError {
    DataFusionError::External(Box::new(e.into()))
}

#[async_trait]
impl TableProvider for IcebergTable {
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
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.has_delete_files() {
            return Err(DataFusionError::NotImplemented(format!(
                "table {} has delete files (merge-on-read); reading them is not supported yet",
                icefjord_catalog::display(self.table.identifier())
            )));
        }
        let mut entries: Vec<iceberg::spec::DataFile> = match &self.only_files {
            Some(files) => files.as_ref().clone(),
            None => live_entries_after(&self.table, self.snapshot_id, self.after_sequence)
                .await
                .map_err(external)?
                .iter()
                .map(|e| e.data_file().clone())
                .collect(),
        };
        if let Some(staged) = &self.staged {
            entries.retain(|e| !staged.deleted.contains(e.file_path()));
            match staged.mode {
                StagedMode::Append => {}
                StagedMode::Overwrite => entries.clear(),
                StagedMode::ReplacePartitions => {
                    let replaced: Vec<_> = staged
                        .files
                        .iter()
                        .map(|f| f.partition())
                        .chain(&staged.replaced)
                        .collect();
                    entries.retain(|e| !replaced.contains(&e.partition()));
                }
            }
            entries.extend(staged.files.iter().cloned());
        }
        let entries = self.pruned(state, filters, entries)?;
        if entries.is_empty() {
            let projected = project_schema(&self.schema, projection)?;
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let mut files = Vec::with_capacity(entries.len());
        for entry in &entries {
            let path = self.store.path_of(entry.file_path()).map_err(external)?;
            let stats = Statistics {
                num_rows: Precision::Exact(entry.record_count() as usize),
                total_byte_size: Precision::Inexact(entry.file_size_in_bytes() as usize),
                column_statistics: Statistics::unknown_column(&self.schema),
            };
            let mut file =
                partitioned_file(path, entry.file_size_in_bytes()).with_statistics(Arc::new(stats));
            if let Some(partition) = self.file_partition(entry) {
                file = file.with_extensions(Arc::new(partition));
            }
            files.push(file);
        }
        // A fixed filter needs its columns: scan them all, filter, then project.
        let (scan_projection, scan_limit) = match &self.filter {
            Some(_) => (None, None),
            None => (projection.cloned(), limit),
        };
        let plan = parquet_scan(
            state,
            &self.store,
            TableSchema::from_file_schema(self.schema.clone()),
            files,
            scan_projection,
            scan_limit,
            Some(self.projection.clone()),
        )
        .await?;
        let Some(filter) = &self.filter else {
            return Ok(plan);
        };
        let df_schema = datafusion::common::DFSchema::try_from(self.schema.as_ref().clone())?;
        let predicate = state.create_physical_expr(filter.clone(), &df_schema)?;
        let filtered: Arc<dyn ExecutionPlan> = Arc::new(
            datafusion::physical_plan::filter::FilterExec::try_new(predicate, plan)?,
        );
        let Some(projection) = projection else {
            return Ok(filtered);
        };
        let columns = projection
            .iter()
            .map(|&i| {
                let field = self.schema.field(i);
                let column: Arc<dyn datafusion::physical_expr::PhysicalExpr> = Arc::new(
                    datafusion::physical_expr::expressions::Column::new(field.name(), i),
                );
                (column, field.name().clone())
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(
            datafusion::physical_plan::projection::ProjectionExec::try_new(columns, filtered)?,
        ))
    }
}

/// DataFusion's own Parquet scan of `files` on the warehouse store, spread over
/// the session's target partitions (`projection` indexes `table_schema`'s
/// columns: file columns, then partition columns). `columns` finds each file's
/// columns (`None`: DataFusion's default, by name).
pub(crate) async fn parquet_scan(
    state: &dyn Session,
    store: &WarehouseStore,
    table_schema: TableSchema,
    files: Vec<PartitionedFile>,
    projection: Option<Vec<usize>>,
    limit: Option<usize>,
    columns: Option<Arc<dyn PhysicalExprAdapterFactory>>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let target = state.config_options().execution.target_partitions.max(1);
    let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
    let source = format.file_source(table_schema);
    let url = ObjectStoreUrl::parse(store.base_url().map_err(external)?.as_str())?;
    let config = FileScanConfigBuilder::new(url, source)
        .with_file_groups(balance(files, target))
        .with_projection_indices(projection)?
        .with_limit(limit)
        .with_expr_adapter(columns)
        .build();
    format.create_physical_plan(state, config).await
}

/// Spread files over `n` groups, largest first onto the lightest group.
/// A file to scan, from its object store `Path` itself: `PartitionedFile::new`
/// re-parses the path's text, which percent-encodes every non-ASCII byte
/// (`café` → `caf%C3%A9`, a name no file has).
pub(crate) fn partitioned_file(location: object_store::path::Path, size: u64) -> PartitionedFile {
    PartitionedFile::new_from_meta(object_store::ObjectMeta {
        location,
        last_modified: chrono::DateTime::UNIX_EPOCH,
        size,
        e_tag: None,
        version: None,
    })
}

fn balance(mut files: Vec<PartitionedFile>, n: usize) -> Vec<FileGroup> {
    files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> =
        (0..n.min(files.len())).map(|_| (0, Vec::new())).collect();
    for file in files {
        if let Some(lightest) = groups.iter_mut().min_by_key(|(size, _)| *size) {
            lightest.0 += file.object_meta.size;
            lightest.1.push(file);
        }
    }
    groups
        .into_iter()
        .map(|(_, files)| FileGroup::new(files))
        .collect()
}
