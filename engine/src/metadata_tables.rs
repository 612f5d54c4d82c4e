//! Iceberg's metadata tables of one table, as of the metadata the session read:
//! `snapshots`, `history`, `refs`, `files`, `manifests`, `partitions`
//! (`SELECT * FROM raw.t.snapshots`; names from [`crate::table_suffix`]).
//!
//! Columns and values follow Iceberg's own tables (Iceberg docs, "Spark Queries:
//! Inspecting tables"; `org.apache.iceberg.*Table` in iceberg-core) and PyIceberg's
//! `table.inspect.*`, with Arrow types every front door can send (the PostgreSQL
//! wire has no map type):
//!
//! - Iceberg's `map` columns (`summary`, `column_sizes`, `value_counts`,
//!   `null_value_counts`, `nan_value_counts`, `lower_bounds`, `upper_bounds`) are
//!   JSON text objects: `summary` keyed by property, the others by field id,
//!   bounds as readable values (Iceberg stores them as binary).
//! - Timestamps (`committed_at`, `made_current_at`, `last_updated_at`) are
//!   `timestamp with time zone` in UTC, as Iceberg's own tables type them.
//! - `partition` is a struct of every partition field of every spec (by field
//!   id, as Iceberg's unified partition type); an unpartitioned table's `files`
//!   and `partitions` have no `partition` column (nor `spec_id` in `partitions`),
//!   as in Iceberg.
//! - `files` has no `readable_metrics` column; `refs.type` is `BRANCH` or `TAG`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, TableProvider};
use futures::TryStreamExt;
use iceberg::spec::{
    DataContentType, DataFile, Datum, ManifestContentType, ManifestFile, ManifestStatus,
    PrimitiveLiteral, PrimitiveType, SnapshotReference, SnapshotRetention, Struct, TableMetadata,
    Type,
};
use iceberg::table::Table;
use icefjord_catalog::commit::{ancestry, load_manifests};

use crate::error::Result;
use crate::file_bounds::primitive_scalar;
use crate::table_suffix::MetadataTable;

/// The metadata table `which` of `table`, ready to query.
pub async fn provider(table: &Table, which: MetadataTable) -> Result<Arc<dyn TableProvider>> {
    let batch = batch(table, which).await?;
    Ok(Arc::new(MemTable::try_new(
        batch.schema(),
        vec![vec![batch]],
    )?))
}

/// The rows of the metadata table `which` of `table`.
pub async fn batch(table: &Table, which: MetadataTable) -> Result<RecordBatch> {
    let metadata = table.metadata();
    match which {
        MetadataTable::Snapshots => snapshots(metadata),
        MetadataTable::History => history(metadata),
        MetadataTable::Refs => refs(metadata),
        MetadataTable::Manifests => manifests(table).await,
        MetadataTable::Files => files(table).await,
        MetadataTable::Partitions => partitions(table).await,
    }
}

/// The table's branches and tags, by name (iceberg-rust keeps them private: read
/// from the metadata's JSON form, whose `refs` is the spec's).
pub fn refs_of(metadata: &TableMetadata) -> Result<BTreeMap<String, SnapshotReference>> {
    let invalid = |e: serde_json::Error| {
        iceberg::Error::new(
            iceberg::ErrorKind::DataInvalid,
            format!("table metadata refs: {e}"),
        )
    };
    let json = serde_json::to_value(metadata).map_err(invalid)?;
    match json.get("refs") {
        Some(refs) => Ok(serde_json::from_value(refs.clone()).map_err(invalid)?),
        None => Ok(BTreeMap::new()),
    }
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
}

fn timestamps(ms: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(
        TimestampMicrosecondArray::from_iter(ms.into_iter().map(|v| v.map(|ms| ms * 1000)))
            .with_timezone("+00:00"),
    )
}

fn batch_of(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

fn snapshots(metadata: &TableMetadata) -> Result<RecordBatch> {
    let mut snapshots: Vec<_> = metadata.snapshots().collect();
    snapshots.sort_by_key(|s| (s.timestamp_ms(), s.sequence_number()));
    let summary = |s: &iceberg::spec::Snapshot| {
        let sorted: BTreeMap<_, _> = s.summary().additional_properties.iter().collect();
        serde_json::to_string(&sorted).ok()
    };
    batch_of(
        vec![
            Field::new("committed_at", utc_micros(), false),
            Field::new("snapshot_id", DataType::Int64, false),
            Field::new("parent_id", DataType::Int64, true),
            Field::new("operation", DataType::Utf8, true),
            Field::new("manifest_list", DataType::Utf8, false),
            Field::new("summary", DataType::Utf8, true),
        ],
        vec![
            timestamps(snapshots.iter().map(|s| Some(s.timestamp_ms()))),
            Arc::new(Int64Array::from_iter_values(
                snapshots.iter().map(|s| s.snapshot_id()),
            )),
            Arc::new(Int64Array::from_iter(
                snapshots.iter().map(|s| s.parent_snapshot_id()),
            )),
            Arc::new(StringArray::from_iter(
                snapshots
                    .iter()
                    .map(|s| Some(s.summary().operation.as_str())),
            )),
            Arc::new(StringArray::from_iter_values(
                snapshots.iter().map(|s| s.manifest_list()),
            )),
            Arc::new(StringArray::from_iter(snapshots.iter().map(|s| summary(s)))),
        ],
    )
}

fn history(metadata: &TableMetadata) -> Result<RecordBatch> {
    let log = metadata.history();
    let current: HashSet<i64> = ancestry(metadata, metadata.current_snapshot_id())
        .map(|s| s.snapshot_id())
        .collect();
    let parent = |id: i64| {
        metadata
            .snapshot_by_id(id)
            .and_then(|s| s.parent_snapshot_id())
    };
    batch_of(
        vec![
            Field::new("made_current_at", utc_micros(), false),
            Field::new("snapshot_id", DataType::Int64, false),
            Field::new("parent_id", DataType::Int64, true),
            Field::new("is_current_ancestor", DataType::Boolean, false),
        ],
        vec![
            timestamps(log.iter().map(|l| Some(l.timestamp_ms))),
            Arc::new(Int64Array::from_iter_values(
                log.iter().map(|l| l.snapshot_id),
            )),
            Arc::new(Int64Array::from_iter(
                log.iter().map(|l| parent(l.snapshot_id)),
            )),
            Arc::new(BooleanArray::from_iter(
                log.iter().map(|l| Some(current.contains(&l.snapshot_id))),
            )),
        ],
    )
}

fn refs(metadata: &TableMetadata) -> Result<RecordBatch> {
    let refs = refs_of(metadata)?;
    let retention = |r: &SnapshotReference| match r.retention {
        SnapshotRetention::Branch {
            min_snapshots_to_keep,
            max_snapshot_age_ms,
            max_ref_age_ms,
        } => (
            "BRANCH",
            max_ref_age_ms,
            min_snapshots_to_keep,
            max_snapshot_age_ms,
        ),
        SnapshotRetention::Tag { max_ref_age_ms } => ("TAG", max_ref_age_ms, None, None),
    };
    let rows: Vec<_> = refs
        .iter()
        .map(|(name, r)| (name.as_str(), r.snapshot_id, retention(r)))
        .collect();
    batch_of(
        vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("type", DataType::Utf8, false),
            Field::new("snapshot_id", DataType::Int64, false),
            Field::new("max_reference_age_in_ms", DataType::Int64, true),
            Field::new("min_snapshots_to_keep", DataType::Int32, true),
            Field::new("max_snapshot_age_in_ms", DataType::Int64, true),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| (r.2).0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| (r.2).1))),
            Arc::new(Int32Array::from_iter(rows.iter().map(|r| (r.2).2))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| (r.2).3))),
        ],
    )
}

/// The manifest files of the current snapshot of `main`.
async fn manifest_files(table: &Table) -> Result<Vec<ManifestFile>> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(Vec::new());
    };
    let list = table.manifest_list_reader(snapshot).load().await?;
    Ok(list.entries().to_vec())
}

/// A partition bound or value as Iceberg's "human string" (no quotes on strings).
fn readable(datum: &Datum) -> String {
    match datum.literal() {
        PrimitiveLiteral::String(s) => s.clone(),
        _ => datum.to_string(),
    }
}

async fn manifests(table: &Table) -> Result<RecordBatch> {
    let metadata = table.metadata();
    let files = manifest_files(table).await?;
    let summary_fields = Fields::from(vec![
        Field::new("contains_null", DataType::Boolean, false),
        Field::new("contains_nan", DataType::Boolean, true),
        Field::new("lower_bound", DataType::Utf8, true),
        Field::new("upper_bound", DataType::Utf8, true),
    ]);
    let (mut nulls, mut nans, mut lowers, mut uppers, mut offsets) =
        (vec![], vec![], vec![], vec![], vec![0usize]);
    for file in &files {
        let types = metadata
            .partition_spec_by_id(file.partition_spec_id)
            .and_then(|spec| spec.partition_type(metadata.current_schema()).ok());
        let summaries = file.partitions.as_deref().unwrap_or_default();
        for (i, summary) in summaries.iter().enumerate() {
            let ty = types
                .as_ref()
                .and_then(|t| t.fields().get(i))
                .and_then(|f| f.field_type.as_primitive_type().cloned());
            let bound = |bytes: Option<&[u8]>| {
                Datum::try_from_bytes(bytes?, ty.clone()?)
                    .ok()
                    .map(|d| readable(&d))
            };
            nulls.push(summary.contains_null);
            nans.push(summary.contains_nan);
            lowers.push(bound(summary.lower_bound.as_ref().map(|b| b.as_slice())));
            uppers.push(bound(summary.upper_bound.as_ref().map(|b| b.as_slice())));
        }
        offsets.push(nulls.len());
    }
    let summaries = StructArray::try_new(
        summary_fields.clone(),
        vec![
            Arc::new(BooleanArray::from(nulls)),
            Arc::new(BooleanArray::from(nans)),
            Arc::new(StringArray::from(lowers)),
            Arc::new(StringArray::from(uppers)),
        ],
        None,
    )?;
    let item = Arc::new(Field::new("item", DataType::Struct(summary_fields), false));
    let partition_summaries = ListArray::try_new(
        item.clone(),
        OffsetBuffer::from_lengths(offsets.windows(2).map(|w| w[1] - w[0])),
        Arc::new(summaries),
        None,
    )?;
    // A manifest's file counts are data counts or delete counts by its content.
    let int_column = |of_data: bool, pick: fn(&ManifestFile) -> Option<u32>| {
        Arc::new(Int32Array::from_iter_values(files.iter().map(|m| {
            if (m.content == ManifestContentType::Data) == of_data {
                i32::try_from(pick(m).unwrap_or(0)).unwrap_or(i32::MAX)
            } else {
                0
            }
        }))) as ArrayRef
    };
    batch_of(
        vec![
            Field::new("content", DataType::Int32, false),
            Field::new("path", DataType::Utf8, false),
            Field::new("length", DataType::Int64, false),
            Field::new("partition_spec_id", DataType::Int32, false),
            Field::new("added_snapshot_id", DataType::Int64, false),
            Field::new("added_data_files_count", DataType::Int32, false),
            Field::new("existing_data_files_count", DataType::Int32, false),
            Field::new("deleted_data_files_count", DataType::Int32, false),
            Field::new("added_delete_files_count", DataType::Int32, false),
            Field::new("existing_delete_files_count", DataType::Int32, false),
            Field::new("deleted_delete_files_count", DataType::Int32, false),
            Field::new("partition_summaries", DataType::List(item), false),
        ],
        vec![
            Arc::new(Int32Array::from_iter_values(
                files.iter().map(|m| m.content as i32),
            )),
            Arc::new(StringArray::from_iter_values(
                files.iter().map(|m| m.manifest_path.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                files.iter().map(|m| m.manifest_length),
            )),
            Arc::new(Int32Array::from_iter_values(
                files.iter().map(|m| m.partition_spec_id),
            )),
            Arc::new(Int64Array::from_iter_values(
                files.iter().map(|m| m.added_snapshot_id),
            )),
            int_column(true, |m| m.added_files_count),
            int_column(true, |m| m.existing_files_count),
            int_column(true, |m| m.deleted_files_count),
            int_column(false, |m| m.added_files_count),
            int_column(false, |m| m.existing_files_count),
            int_column(false, |m| m.deleted_files_count),
            Arc::new(partition_summaries),
        ],
    )
}

/// A live file of the current snapshot and the spec it was written with.
struct LiveFile {
    spec_id: i32,
    snapshot_id: Option<i64>,
    file: DataFile,
}

/// Every live data and delete file of the current snapshot of `main`.
async fn live_files(table: &Table) -> Result<Vec<LiveFile>> {
    let manifests = manifest_files(table).await?;
    let mut loaded = load_manifests(table, &manifests);
    let mut files = Vec::new();
    while let Some(manifest) = loaded.try_next().await? {
        let (entries, meta) = manifest.into_parts();
        let spec_id = meta.partition_spec().spec_id();
        files.extend(
            entries
                .into_iter()
                .filter(|e| e.status() != ManifestStatus::Deleted)
                .map(|e| LiveFile {
                    spec_id,
                    snapshot_id: e.snapshot_id(),
                    file: e.data_file().clone(),
                }),
        );
    }
    Ok(files)
}

/// Iceberg's unified partition type: every partition field of every spec of the
/// table, by field id (a file of one spec is null in the others' fields).
struct PartitionColumns {
    /// Field id → (name, result type), in field id order.
    fields: BTreeMap<i32, (String, PrimitiveType)>,
    /// Spec id → the field id of each of its fields, in order.
    specs: HashMap<i32, Vec<i32>>,
}

impl PartitionColumns {
    fn new(metadata: &TableMetadata) -> Self {
        let schema = metadata.current_schema();
        let mut fields = BTreeMap::new();
        let mut specs = HashMap::new();
        for spec in metadata.partition_specs_iter() {
            let mut ids = Vec::new();
            for field in spec.fields() {
                ids.push(field.field_id);
                let result = schema
                    .field_by_id(field.source_id)
                    .and_then(|source| field.transform.result_type(&source.field_type).ok());
                if let Some(Type::Primitive(ty)) = result {
                    fields.insert(field.field_id, (field.name.clone(), ty));
                }
            }
            specs.insert(spec.spec_id(), ids);
        }
        Self { fields, specs }
    }

    fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The value of each unified field for a file of `spec_id` (nulls elsewhere).
    fn values(&self, spec_id: i32, partition: &Struct) -> Vec<ScalarValue> {
        let ids = self.specs.get(&spec_id);
        self.fields
            .iter()
            .map(|(id, (_, ty))| {
                let literal = ids
                    .and_then(|ids| ids.iter().position(|i| i == id))
                    .and_then(|i| partition.fields().get(i).cloned().flatten());
                match literal {
                    Some(iceberg::spec::Literal::Primitive(p)) => primitive_scalar(ty, &p),
                    _ => None,
                }
                .unwrap_or_else(|| null_of(ty))
            })
            .collect()
    }

    /// The `partition` struct column of `rows` (each from [`Self::values`]).
    fn column(&self, rows: &[Vec<ScalarValue>]) -> Result<(Field, ArrayRef)> {
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        for (i, (name, ty)) in self.fields.values().enumerate() {
            let values = rows.iter().map(|r| r[i].clone());
            let array = if rows.is_empty() {
                arrow::array::new_empty_array(&null_of(ty).data_type())
            } else {
                ScalarValue::iter_to_array(values)?
            };
            fields.push(Field::new(name, array.data_type().clone(), true));
            columns.push(array);
        }
        let fields = Fields::from(fields);
        let array = StructArray::try_new(fields.clone(), columns, None)?;
        Ok((
            Field::new("partition", DataType::Struct(fields), false),
            Arc::new(array),
        ))
    }
}

fn null_of(ty: &PrimitiveType) -> ScalarValue {
    let data_type =
        iceberg::arrow::type_to_arrow_type(&Type::Primitive(ty.clone())).unwrap_or(DataType::Null);
    ScalarValue::try_from(&data_type).unwrap_or(ScalarValue::Null)
}

/// A map keyed by field id as a JSON object (`None` when empty, as Iceberg
/// leaves an absent map null).
fn json_map<V: ToString>(map: &HashMap<i32, V>) -> Option<String> {
    if map.is_empty() {
        return None;
    }
    let sorted: BTreeMap<i32, String> = map.iter().map(|(k, v)| (*k, v.to_string())).collect();
    serde_json::to_string(&sorted).ok()
}

fn json_counts(map: &HashMap<i32, u64>) -> Option<String> {
    if map.is_empty() {
        return None;
    }
    let sorted: BTreeMap<i32, u64> = map.iter().map(|(k, v)| (*k, *v)).collect();
    serde_json::to_string(&sorted).ok()
}

async fn files(table: &Table) -> Result<RecordBatch> {
    let files = live_files(table).await?;
    let partition = PartitionColumns::new(table.metadata());
    let mut fields = vec![
        Field::new("content", DataType::Int32, false),
        Field::new("file_path", DataType::Utf8, false),
        Field::new("file_format", DataType::Utf8, false),
        Field::new("spec_id", DataType::Int32, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(
            files.iter().map(|l| l.file.content_type() as i32),
        )),
        Arc::new(StringArray::from_iter_values(
            files.iter().map(|l| l.file.file_path()),
        )),
        Arc::new(StringArray::from_iter_values(
            files
                .iter()
                .map(|l| l.file.file_format().to_string().to_uppercase()),
        )),
        Arc::new(Int32Array::from_iter_values(
            files.iter().map(|l| l.spec_id),
        )),
    ];
    if !partition.is_empty() {
        let rows: Vec<_> = files
            .iter()
            .map(|l| partition.values(l.spec_id, l.file.partition()))
            .collect();
        let (field, column) = partition.column(&rows)?;
        fields.push(field);
        columns.push(column);
    }
    let counts = |pick: fn(&DataFile) -> &HashMap<i32, u64>| {
        Arc::new(StringArray::from_iter(
            files.iter().map(|l| json_counts(pick(&l.file))),
        )) as ArrayRef
    };
    let bounds = |pick: fn(&DataFile) -> &HashMap<i32, Datum>| {
        Arc::new(StringArray::from_iter(files.iter().map(|l| {
            let readable: HashMap<i32, String> = pick(&l.file)
                .iter()
                .map(|(k, v)| (*k, readable(v)))
                .collect();
            json_map(&readable)
        }))) as ArrayRef
    };
    fields.extend([
        Field::new("record_count", DataType::Int64, false),
        Field::new("file_size_in_bytes", DataType::Int64, false),
        Field::new("column_sizes", DataType::Utf8, true),
        Field::new("value_counts", DataType::Utf8, true),
        Field::new("null_value_counts", DataType::Utf8, true),
        Field::new("nan_value_counts", DataType::Utf8, true),
        Field::new("lower_bounds", DataType::Utf8, true),
        Field::new("upper_bounds", DataType::Utf8, true),
        Field::new("key_metadata", DataType::Binary, true),
        Field::new(
            "split_offsets",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            true,
        ),
        Field::new(
            "equality_ids",
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            true,
        ),
        Field::new("sort_order_id", DataType::Int32, true),
    ]);
    columns.extend([
        Arc::new(Int64Array::from_iter_values(
            files.iter().map(|l| saturating(l.file.record_count())),
        )) as ArrayRef,
        Arc::new(Int64Array::from_iter_values(
            files
                .iter()
                .map(|l| saturating(l.file.file_size_in_bytes())),
        )),
        counts(DataFile::column_sizes),
        counts(DataFile::value_counts),
        counts(DataFile::null_value_counts),
        counts(DataFile::nan_value_counts),
        bounds(DataFile::lower_bounds),
        bounds(DataFile::upper_bounds),
        Arc::new(BinaryArray::from_iter(
            files.iter().map(|l| l.file.key_metadata()),
        )),
        Arc::new(ListArray::from_iter_primitive::<
            arrow::datatypes::Int64Type,
            _,
            _,
        >(files.iter().map(|l| {
            l.file
                .split_offsets()
                .map(|o| o.iter().map(|v| Some(*v)).collect::<Vec<_>>())
        }))),
        Arc::new(ListArray::from_iter_primitive::<
            arrow::datatypes::Int32Type,
            _,
            _,
        >(files.iter().map(|l| {
            l.file
                .equality_ids()
                .map(|ids| ids.into_iter().map(Some).collect::<Vec<_>>())
        }))),
        Arc::new(Int32Array::from_iter(
            files.iter().map(|l| l.file.sort_order_id()),
        )),
    ]);
    batch_of(fields, columns)
}

fn saturating(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One row of `partitions`.
#[derive(Default)]
struct PartitionRow {
    record_count: i64,
    file_count: i32,
    total_data_file_size_in_bytes: i64,
    position_delete_record_count: i64,
    position_delete_file_count: i32,
    equality_delete_record_count: i64,
    equality_delete_file_count: i32,
    /// (timestamp ms, snapshot id) of the newest snapshot that added a file.
    last_updated: Option<(i64, i64)>,
}

async fn partitions(table: &Table) -> Result<RecordBatch> {
    let metadata = table.metadata();
    let files = live_files(table).await?;
    let partition = PartitionColumns::new(metadata);
    let mut order: Vec<(i32, Struct)> = Vec::new();
    let mut rows: HashMap<(i32, Struct), PartitionRow> = HashMap::new();
    for live in &files {
        // Unpartitioned tables have one row (Iceberg's spec ids aside).
        let key = if partition.is_empty() {
            (0, Struct::empty())
        } else {
            (live.spec_id, live.file.partition().clone())
        };
        let row = rows.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            PartitionRow::default()
        });
        let records = saturating(live.file.record_count());
        match live.file.content_type() {
            DataContentType::Data => {
                row.record_count += records;
                row.file_count += 1;
                row.total_data_file_size_in_bytes += saturating(live.file.file_size_in_bytes());
            }
            DataContentType::PositionDeletes => {
                row.position_delete_record_count += records;
                row.position_delete_file_count += 1;
            }
            DataContentType::EqualityDeletes => {
                row.equality_delete_record_count += records;
                row.equality_delete_file_count += 1;
            }
        }
        let updated = live
            .snapshot_id
            .and_then(|id| metadata.snapshot_by_id(id))
            .map(|s| (s.timestamp_ms(), s.snapshot_id()));
        if updated > row.last_updated {
            row.last_updated = updated;
        }
    }
    let rows: Vec<_> = order
        .into_iter()
        .filter_map(|key| rows.remove(&key).map(|row| (key, row)))
        .collect();
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    if !partition.is_empty() {
        let values: Vec<_> = rows
            .iter()
            .map(|((spec, p), _)| partition.values(*spec, p))
            .collect();
        let (field, column) = partition.column(&values)?;
        fields.extend([field, Field::new("spec_id", DataType::Int32, false)]);
        columns.extend([
            column,
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|((s, _), _)| *s),
            )),
        ]);
    }
    let long = |pick: fn(&PartitionRow) -> i64| {
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(_, r)| pick(r)),
        )) as ArrayRef
    };
    let int = |pick: fn(&PartitionRow) -> i32| {
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|(_, r)| pick(r)),
        )) as ArrayRef
    };
    fields.extend([
        Field::new("record_count", DataType::Int64, false),
        Field::new("file_count", DataType::Int32, false),
        Field::new("total_data_file_size_in_bytes", DataType::Int64, false),
        Field::new("position_delete_record_count", DataType::Int64, false),
        Field::new("position_delete_file_count", DataType::Int32, false),
        Field::new("equality_delete_record_count", DataType::Int64, false),
        Field::new("equality_delete_file_count", DataType::Int32, false),
        Field::new("last_updated_at", utc_micros(), true),
        Field::new("last_updated_snapshot_id", DataType::Int64, true),
    ]);
    columns.extend([
        long(|r| r.record_count),
        int(|r| r.file_count),
        long(|r| r.total_data_file_size_in_bytes),
        long(|r| r.position_delete_record_count),
        int(|r| r.position_delete_file_count),
        long(|r| r.equality_delete_record_count),
        int(|r| r.equality_delete_file_count),
        timestamps(rows.iter().map(|(_, r)| r.last_updated.map(|u| u.0))),
        Arc::new(Int64Array::from_iter(
            rows.iter().map(|(_, r)| r.last_updated.map(|u| u.1)),
        )),
    ]);
    batch_of(fields, columns)
}
