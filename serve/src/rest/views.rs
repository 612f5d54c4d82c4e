//! View routes: list, create, load, exists, replace, drop, rename.
//!
//! Two kinds of views share the namespace's view names:
//! - **Pipeline views** (`unified.*`, published by `icefjord run`) are served
//!   read-only as Iceberg views whose metadata is built when they are loaded:
//!   a `spark` representation translated from our SQL ([`super::spark_sql`], built in [`super::published`]), with
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
use iceberg::{TableIdent, ViewCreation};
use icefjord_catalog::{display, CatalogError, IcebergView};

use super::error::{rejected, RestResult};
use super::model::{
    CommitViewRequest, CreateViewRequest, ListTablesResponse, LoadViewResult, RenameTableRequest,
};
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
    let creation = ViewCreation::builder()
        .name(request.name)
        .location(request.location.unwrap_or_default())
        .representations(version.representations().clone())
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
        Some(def) => Ok(view_result(
            super::published::published(&lake, &target, def).await?,
        )),
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
