//! `GET /v1/tables` and `GET /v1/tables/{namespace}/{table}`: the lake's
//! tables as the catalog has them, each answer from one catalog state
//! ([`icefjord_catalog::LakeCatalog::state`]).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use iceberg::spec::TableMetadata;
use iceberg::{NamespaceIdent, TableIdent};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::AppState;
use crate::sqlstate::Failure;

/// What a catalog entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// An Apache Iceberg table.
    Iceberg,
    /// A Delta Lake table, read at the version a pipeline published.
    Delta,
    /// A SQL view published by a pipeline.
    View,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TableList {
    /// Sorted by namespace, then name.
    pub tables: Vec<TableSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TableSummary {
    pub namespace: String,
    pub name: String,
    pub kind: TableKind,
}

/// One table: for an Iceberg table its schema, partition spec, snapshots
/// and row count; for a view its SQL; for a Delta table its location and
/// published version. Fields that do not apply to the kind are null.
#[derive(Debug, Serialize, ToSchema)]
pub struct TableDetail {
    pub namespace: String,
    pub name: String,
    pub kind: TableKind,
    /// Where the table's files are (Iceberg, Delta).
    pub location: Option<String>,
    /// The current metadata file (Iceberg).
    pub metadata_location: Option<String>,
    /// 1, 2 or 3 (Iceberg).
    pub format_version: Option<u8>,
    /// The current schema (Iceberg).
    pub schema: Option<SchemaView>,
    /// The default partition spec (Iceberg).
    pub partition_spec: Option<PartitionSpecView>,
    /// Null before the first commit (Iceberg).
    pub current_snapshot_id: Option<i64>,
    /// Every snapshot of the table, oldest first (Iceberg; empty otherwise).
    pub snapshots: Vec<SnapshotView>,
    /// Rows in the current snapshot, from its `total-records` summary
    /// (Iceberg; 0 before the first commit).
    pub row_count: Option<u64>,
    /// The view's query (view).
    pub sql: Option<String>,
    /// The published Delta version (Delta).
    pub delta_version: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaView {
    pub schema_id: i32,
    pub fields: Vec<FieldView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldView {
    /// The Iceberg field id (what readers resolve columns by).
    pub id: i32,
    pub name: String,
    /// The Iceberg type as the table metadata JSON writes it: a string for
    /// primitives (`long`, `decimal(10,2)`, `timestamptz`), an object for
    /// `struct`, `list` and `map`.
    #[serde(rename = "type")]
    pub field_type: serde_json::Value,
    pub required: bool,
    pub doc: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionSpecView {
    pub spec_id: i32,
    pub fields: Vec<PartitionFieldView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionFieldView {
    pub source_id: i32,
    pub field_id: i32,
    pub name: String,
    /// `identity`, `year`, `month`, `day`, `hour`, `bucket[N]`, `truncate[W]`, `void`.
    pub transform: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotView {
    pub snapshot_id: i64,
    pub parent_snapshot_id: Option<i64>,
    pub sequence_number: i64,
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// `append`, `overwrite`, `replace` or `delete`.
    pub operation: String,
    /// The snapshot summary's other properties (`added-records`,
    /// `total-records`, icefjord's commit ids and positions, …).
    pub summary: BTreeMap<String, String>,
    pub manifest_list: String,
}

/// Every table and view of the lake.
#[utoipa::path(
    get,
    path = "/v1/tables",
    tag = "tables",
    responses(
        (status = 200, description = "Every table and view", body = TableList),
        super::error::CatalogErrors,
    )
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<TableList>, ApiError> {
    let catalog = state.lake.catalog().state().await.map_err(catalog_error)?;
    let mut tables = Vec::new();
    for (kind, entries) in [
        (TableKind::Iceberg, catalog.tables.keys_by_namespace()),
        (TableKind::Delta, catalog.delta.keys_by_namespace()),
        (TableKind::View, catalog.views.keys_by_namespace()),
    ] {
        tables.extend(entries.into_iter().map(|(namespace, name)| TableSummary {
            namespace,
            name,
            kind,
        }));
    }
    tables.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(Json(TableList { tables }))
}

/// One table or view.
#[utoipa::path(
    get,
    path = "/v1/tables/{namespace}/{table}",
    tag = "tables",
    params(
        ("namespace" = String, Path, description = "The namespace (schema)", example = "raw"),
        ("table" = String, Path, description = "The table or view", example = "retail_events"),
    ),
    responses(
        (status = 200, description = "The table", body = TableDetail),
        (status = 404, description = "No such table or view (42P01)", body = super::error::ErrorBody),
        super::error::CatalogErrors,
    )
)]
pub async fn detail(
    State(state): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
) -> Result<Json<TableDetail>, ApiError> {
    let catalog = state.lake.catalog().state().await.map_err(catalog_error)?;
    let blank = |kind| TableDetail {
        namespace: namespace.clone(),
        name: table.clone(),
        kind,
        location: None,
        metadata_location: None,
        format_version: None,
        schema: None,
        partition_spec: None,
        current_snapshot_id: None,
        snapshots: Vec::new(),
        row_count: None,
        sql: None,
        delta_version: None,
    };
    if let Some(metadata_location) = catalog.tables.entry_of(&namespace, &table) {
        let ident = TableIdent::new(NamespaceIdent::new(namespace.clone()), table.clone());
        let loaded = state
            .lake
            .catalog()
            .load_at(&ident, &metadata_location)
            .await
            .map_err(catalog_error)?;
        let mut detail = blank(TableKind::Iceberg);
        describe_iceberg(&mut detail, loaded.metadata())?;
        detail.metadata_location = Some(metadata_location);
        return Ok(Json(detail));
    }
    if let Some(sql) = catalog.views.entry_of(&namespace, &table) {
        return Ok(Json(TableDetail {
            sql: Some(sql),
            ..blank(TableKind::View)
        }));
    }
    if let Some((location, version)) = catalog.delta.entry_of(&namespace, &table) {
        return Ok(Json(TableDetail {
            location: Some(location),
            delta_version: Some(version),
            ..blank(TableKind::Delta)
        }));
    }
    Err(ApiError::not_found(format!(
        "table {namespace}.{table} does not exist"
    )))
}

fn describe_iceberg(detail: &mut TableDetail, metadata: &TableMetadata) -> Result<(), ApiError> {
    let schema = metadata.current_schema();
    let fields = schema
        .as_struct()
        .fields()
        .iter()
        .map(|field| {
            Ok(FieldView {
                id: field.id,
                name: field.name.clone(),
                field_type: serde_json::to_value(field.field_type.as_ref()).map_err(|e| {
                    ApiError::from(Failure::new(
                        crate::sqlstate::INTERNAL_ERROR,
                        format!("the type of field {}: {e}", field.name),
                    ))
                })?,
                required: field.required,
                doc: field.doc.clone(),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let spec = metadata.default_partition_spec();
    let current = metadata.current_snapshot();
    detail.location = Some(metadata.location().to_string());
    detail.format_version = Some(metadata.format_version() as u8);
    detail.schema = Some(SchemaView {
        schema_id: schema.schema_id(),
        fields,
    });
    detail.partition_spec = Some(PartitionSpecView {
        spec_id: spec.spec_id(),
        fields: spec
            .fields()
            .iter()
            .map(|f| PartitionFieldView {
                source_id: f.source_id,
                field_id: f.field_id,
                name: f.name.clone(),
                transform: f.transform.to_string(),
            })
            .collect(),
    });
    detail.current_snapshot_id = current.map(|s| s.snapshot_id());
    detail.row_count = Some(current.map_or(0, |s| {
        s.summary()
            .additional_properties
            .get("total-records")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }));
    let mut snapshots: Vec<SnapshotView> = metadata
        .snapshots()
        .map(|s| SnapshotView {
            snapshot_id: s.snapshot_id(),
            parent_snapshot_id: s.parent_snapshot_id(),
            sequence_number: s.sequence_number(),
            timestamp_ms: s.timestamp_ms(),
            operation: s.summary().operation.as_str().to_string(),
            summary: s
                .summary()
                .additional_properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            manifest_list: s.manifest_list().to_string(),
        })
        .collect();
    snapshots.sort_by_key(|s| (s.sequence_number, s.timestamp_ms));
    detail.snapshots = snapshots;
    Ok(())
}

/// Catalog failures: a missing table is 404, an unreachable catalog 503.
fn catalog_error(e: icefjord_catalog::CatalogError) -> ApiError {
    ApiError::from(&crate::error::ServeError::from(e))
}

/// A [`icefjord_catalog::CatalogState`] map, `namespace → name → entry`.
trait ByNamespace<V> {
    /// Every `(namespace, name)`.
    fn keys_by_namespace(&self) -> Vec<(String, String)>;
    fn entry_of(&self, namespace: &str, name: &str) -> Option<V>;
}

impl<V: Clone> ByNamespace<V> for BTreeMap<String, BTreeMap<String, V>> {
    fn entry_of(&self, namespace: &str, name: &str) -> Option<V> {
        self.get(namespace)
            .and_then(|names| names.get(name))
            .cloned()
    }

    fn keys_by_namespace(&self) -> Vec<(String, String)> {
        self.iter()
            .flat_map(|(namespace, names)| {
                names.keys().map(|name| (namespace.clone(), name.clone()))
            })
            .collect()
    }
}
