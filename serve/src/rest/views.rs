//! View routes: list, create, load, exists, replace, drop, rename.
//!
//! Two kinds of views share the namespace's view names:
//! - **Pipeline views** (`unified.*`, published by `icefjord run`) are served
//!   read-only as Iceberg views whose metadata is built when they are loaded:
//!   a `spark` representation translated from our SQL ([`spark_sql`]), with
//!   `@since:` tables resolved to the boundary recorded at that moment, and an
//!   `icefjord` representation (our SQL as written). A view Spark cannot read
//!   gets a `spark` representation that raises the reason, and the reason in
//!   the property [`SPARK_UNREADABLE`]. Its `metadata-location` names the
//!   version it was built for; no file is written (the pipeline's catalog row
//!   is the source of truth).
//! - **Iceberg views** that clients create are metadata files plus catalog
//!   rows ([`icefjord_catalog::iceberg_views`]), replaced by compare-and-swap.
//!
//! Changing or dropping a pipeline view here is refused (403): its pipeline
//! owns it.

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use datafusion::sql::TableReference;
use iceberg::spec::{ViewMetadata, ViewMetadataBuilder, ViewRepresentations, MAIN_BRANCH};
use iceberg::{NamespaceIdent, TableIdent, ViewCreation};
use icefjord_catalog::iceberg_views::engine_summary;
use icefjord_catalog::protocol::{find_position, BoundaryKey, BoundaryOffsets};
use icefjord_catalog::{display, CatalogError, IcebergView, LakeCatalog, ViewDef};
use icefjord_engine::LakeSession;
use sha2::{Digest, Sha256};

use super::error::{rejected, RestError, RestResult};
use super::model::{
    CommitViewRequest, CreateViewRequest, ListTablesResponse, LoadViewResult, RenameTableRequest,
};
use super::spark_sql::{self, SinceResolver, Unreadable};
use super::{RestState, Target};

/// The dialect name of our own representation.
pub const OUR_DIALECT: &str = "icefjord";
/// Spark's dialect name in view representations.
pub const SPARK_DIALECT: &str = "spark";
/// The view property that says why Spark cannot read a pipeline view.
pub const SPARK_UNREADABLE: &str = "icefjord.spark-unreadable";

fn view_result(view: IcebergView) -> Json<LoadViewResult> {
    Json(LoadViewResult {
        metadata_location: view.metadata_location,
        metadata: view.metadata,
        config: BTreeMap::new(),
    })
}

/// `GET …/namespaces/{ns}/views[?pageToken=&pageSize=]`: pipeline and
/// Iceberg views, sorted by name.
pub async fn list(
    State(state): State<RestState>,
    target: Target,
    Query(query): Query<HashMap<String, String>>,
) -> RestResult<Json<ListTablesResponse>> {
    let lake = target.lake(&state).await?;
    lake.require_namespace(&target.namespace).await?;
    let mut identifiers = lake.views(&target.namespace).await?;
    identifiers.extend(lake.iceberg_views(&target.namespace).await?);
    identifiers.sort_by(|a, b| a.name().cmp(b.name()));
    let (identifiers, next_page_token) = super::tables::page(identifiers, &query)?;
    Ok(Json(ListTablesResponse {
        identifiers,
        next_page_token,
    }))
}

/// `POST …/namespaces/{ns}/views`.
pub async fn create(
    State(state): State<RestState>,
    target: Target,
    body: Result<Json<CreateViewRequest>, JsonRejection>,
) -> RestResult<Json<LoadViewResult>> {
    let lake = target.lake(&state).await?;
    let Json(request) = body.map_err(rejected)?;
    let ident = TableIdent::new(super::tables::namespace_of(&target)?, request.name.clone());
    let version = request.view_version;
    let representations: ViewRepresentations =
        serde_json::from_value(serde_json::to_value(version.representations()).map_err(bad)?)
            .map_err(bad)?;
    let creation = ViewCreation::builder()
        .name(request.name)
        .location(request.location.unwrap_or_default())
        .representations(representations)
        .schema(request.schema)
        .properties(request.properties)
        .default_namespace(version.default_namespace().clone())
        .default_catalog(version.default_catalog().cloned())
        .summary(version.summary().clone())
        .build();
    Ok(view_result(
        lake.create_iceberg_view(&ident, creation).await?,
    ))
}

fn bad(e: serde_json::Error) -> RestError {
    RestError::bad_request(format!("view representations: {e}"))
}

/// `GET …/views/{view}`: an Iceberg view, or a pipeline view as one.
pub async fn load(
    State(state): State<RestState>,
    target: Target,
) -> RestResult<Json<LoadViewResult>> {
    let lake = target.lake(&state).await?;
    let ident = target.ident();
    if let Some(view) = lake.iceberg_view(&ident).await? {
        return Ok(view_result(view));
    }
    match lake.view(&ident).await? {
        Some(def) => Ok(view_result(published(&lake, &target, def).await?)),
        None => Err(CatalogError::ViewNotFound {
            view: display(&ident),
        }
        .into()),
    }
}

/// `HEAD …/views/{view}`: 204 or 404.
pub async fn exists(State(state): State<RestState>, target: Target) -> RestResult<StatusCode> {
    let lake = target.lake(&state).await?;
    let ident = target.ident();
    let found = lake.iceberg_view(&ident).await?.is_some() || lake.view(&ident).await?.is_some();
    Ok(match found {
        true => StatusCode::NO_CONTENT,
        false => StatusCode::NOT_FOUND,
    })
}

/// `POST …/views/{view}`: requirements + updates, compare-and-swap.
pub async fn replace(
    State(state): State<RestState>,
    target: Target,
    body: Result<Json<CommitViewRequest>, JsonRejection>,
) -> RestResult<Json<LoadViewResult>> {
    let lake = target.lake(&state).await?;
    let Json(request) = body.map_err(rejected)?;
    let ident = target.ident();
    super::tables::same_identifier("view", request.identifier.as_ref(), &ident)?;
    let view = lake
        .replace_iceberg_view(&ident, &request.requirements, request.updates)
        .await?;
    Ok(view_result(view))
}

/// `DELETE …/views/{view}`.
pub async fn drop(State(state): State<RestState>, target: Target) -> RestResult<StatusCode> {
    let lake = target.lake(&state).await?;
    lake.drop_iceberg_view(&target.ident()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/views/rename`.
pub async fn rename(
    State(state): State<RestState>,
    target: Target,
    body: Result<Json<RenameTableRequest>, JsonRejection>,
) -> RestResult<StatusCode> {
    let lake = target.lake(&state).await?;
    let Json(request) = body.map_err(rejected)?;
    lake.rename_iceberg_view(&request.source, &request.destination)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A pipeline view as an Iceberg view (see the module docs).
async fn published(lake: &LakeCatalog, target: &Target, def: ViewDef) -> RestResult<IcebergView> {
    let ident = def.ident.clone();
    let schema = view_schema(lake, &target.namespace, &target.table).await?;
    let boundaries = boundaries(lake, &def.sql).await?;
    let mut properties = HashMap::new();
    if let Some(owner) = &def.owner {
        properties.insert("icefjord.owner".to_string(), owner.clone());
    }
    let spark = match spark_sql::to_spark(&def.sql, &boundaries) {
        Ok(sql) => sql,
        Err(Unreadable(reason)) => {
            let reason = format!("view {} cannot be read by Spark: {reason}", display(&ident));
            let columns = schema
                .as_struct()
                .fields()
                .iter()
                .map(|f| {
                    format!(
                        "raise_error({}) AS `{}`",
                        spark_sql::literal(&reason),
                        f.name.replace('`', "``")
                    )
                })
                .collect::<Vec<_>>();
            properties.insert(SPARK_UNREADABLE.to_string(), reason);
            format!("SELECT {}", columns.join(", "))
        }
    };
    let representations: ViewRepresentations = serde_json::from_value(serde_json::json!([
        {"type": "sql", "sql": spark, "dialect": SPARK_DIALECT},
        {"type": "sql", "sql": def.sql, "dialect": OUR_DIALECT},
    ]))
    .map_err(|e| {
        RestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServerErrorException",
            e.to_string(),
        )
    })?;
    let location = lake.default_location(&ident);
    let creation = ViewCreation::builder()
        .name(target.table.clone())
        .location(location.clone())
        .representations(representations)
        .schema(schema)
        .properties(properties)
        .default_namespace(
            NamespaceIdent::from_vec(target.levels())
                .map_err(|e| RestError::bad_request(e.message()))?,
        )
        .summary(engine_summary())
        .build();
    let metadata: ViewMetadata = ViewMetadataBuilder::from_view_creation(creation)
        .and_then(|b| b.assign_uuid(view_uuid(lake, &ident)).build())
        .map_err(CatalogError::from)?
        .metadata;
    let version = def.commit_id.as_deref().unwrap_or("unversioned");
    Ok(IcebergView {
        ident,
        metadata_location: format!("{location}/metadata/published-{version}.metadata.json"),
        metadata,
    })
}

/// The same UUID every time a view is loaded from the same ref.
fn view_uuid(lake: &LakeCatalog, ident: &TableIdent) -> uuid::Uuid {
    let digest = Sha256::digest(format!("{}\u{1f}{}", lake.ref_name(), display(ident)));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The view's columns as our engine plans it, in Iceberg types.
async fn view_schema(
    lake: &LakeCatalog,
    namespace: &str,
    name: &str,
) -> RestResult<iceberg::spec::Schema> {
    let session = LakeSession::new(lake).await.map_err(server)?;
    let frame = session
        .context()
        .table(TableReference::partial(namespace, name))
        .await
        .map_err(|e| server(format!("view {namespace}.{name} does not plan: {e}")))?;
    iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(frame.schema().as_arrow()).map_err(|e| {
        server(format!(
            "view {namespace}.{name} has a column Iceberg cannot type: {e}"
        ))
    })
}

fn server(e: impl ToString) -> RestError {
    RestError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ServerErrorException",
        e.to_string(),
    )
}

/// `(input, output) → boundary` for every `@since:` table of `sql`, read now.
type Boundaries = HashMap<(String, String), Option<BoundaryOffsets>>;

impl SinceResolver for Boundaries {
    fn boundary(&self, input: &str, output: &str) -> Result<Option<BoundaryOffsets>, Unreadable> {
        self.get(&(input.to_string(), output.to_string()))
            .cloned()
            .ok_or_else(|| Unreadable(format!("no boundary was read for {input} of {output}")))
    }
}

async fn boundaries(lake: &LakeCatalog, sql: &str) -> RestResult<Boundaries> {
    let mut found = Boundaries::new();
    for (input, output) in spark_sql::since_tables(sql) {
        let ident = icefjord_catalog::parse_table(&output)?;
        let boundary = match lake.load(&ident).await {
            Ok(table) => find_position(
                table.metadata(),
                &output,
                MAIN_BRANCH,
                &BoundaryKey {
                    input: input.clone(),
                },
            )?
            .map(|f| f.value),
            // No output yet: every input row is fresh (as `icefjord sql` reads it).
            Err(CatalogError::TableNotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        found.insert((input, output), boundary);
    }
    Ok(found)
}
