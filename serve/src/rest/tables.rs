//! Table routes: list, create (staged too), load, exists, commit, drop,
//! register, rename, metrics reports and multi-table transactions. Every
//! change goes through [`icefjord_catalog::LakeCatalog::apply_changes`] or the
//! catalog's own create/register/rename/drop.

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use iceberg::spec::TableMetadata;
use iceberg::{NamespaceIdent, TableCreation, TableIdent};
use icefjord_catalog::{display, CatalogError, TableChange};

use super::error::{rejected, RestError, RestResult};
use super::model::{
    CommitTableRequest, CommitTransactionRequest, CreateTableRequest, ListTablesResponse,
    LoadTableResult, RegisterTableRequest, RenameTableRequest,
};
use super::{RestState, Target};

fn loaded(location: Option<String>, metadata: TableMetadata) -> Json<LoadTableResult> {
    Json(LoadTableResult {
        metadata_location: location,
        metadata,
        config: BTreeMap::new(),
    })
}

fn loaded_table(table: &iceberg::table::Table) -> Json<LoadTableResult> {
    loaded(
        table.metadata_location().map(str::to_string),
        table.metadata().clone(),
    )
}

/// A namespace the spec's way (one string per level).
pub(super) fn namespace_of(target: &Target) -> RestResult<NamespaceIdent> {
    NamespaceIdent::from_vec(target.levels()).map_err(|e| RestError::bad_request(e.message()))
}

/// `GET …/namespaces/{ns}/tables[?pageToken=&pageSize=]`: the page token is
/// the last name of the previous page.
pub async fn list(
    State(state): State<RestState>,
    target: Target,
    Query(query): Query<HashMap<String, String>>,
) -> RestResult<Json<ListTablesResponse>> {
    let lake = target.lake(&state).await?;
    lake.require_namespace(&target.namespace).await?;
    let identifiers = lake.tables(&target.namespace).await?;
    let (identifiers, next_page_token) = page(identifiers, &query)?;
    Ok(Json(ListTablesResponse {
        identifiers,
        next_page_token,
    }))
}

/// A body that names its table or view names the one of the path (400).
pub(super) fn same_identifier(
    what: &str,
    named: Option<&TableIdent>,
    path: &TableIdent,
) -> RestResult<()> {
    match named {
        Some(named) if named != path => Err(RestError::bad_request(format!(
            "the body names {what} {} but the path {}",
            display(named),
            display(path)
        ))),
        _ => Ok(()),
    }
}

/// One page of a sorted listing (`?pageToken=&pageSize=`, the token being
/// the last name of the previous page) and the next page's token.
pub(super) fn page(
    mut identifiers: Vec<TableIdent>,
    query: &HashMap<String, String>,
) -> RestResult<(Vec<TableIdent>, Option<String>)> {
    if let Some(after) = query.get("pageToken").filter(|t| !t.is_empty()) {
        identifiers.retain(|t| t.name() > after.as_str());
    }
    let mut next_page_token = None;
    if let Some(size) = query.get("pageSize") {
        let size: usize = size.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
            RestError::bad_request(format!("pageSize {size:?} is not a positive integer"))
        })?;
        if identifiers.len() > size {
            identifiers.truncate(size);
            next_page_token = identifiers.last().map(|t| t.name().to_string());
        }
    }
    Ok((identifiers, next_page_token))
}

/// `POST …/namespaces/{ns}/tables`: create, or with `stage-create` only
/// build the metadata (the table appears with the commit that asserts
/// `assert-create`).
pub async fn create(
    State(state): State<RestState>,
    target: Target,
    body: Result<Json<CreateTableRequest>, JsonRejection>,
) -> RestResult<Json<LoadTableResult>> {
    let lake = target.lake(&state).await?;
    let Json(request) = body.map_err(rejected)?;
    lake.require_namespace(&target.namespace).await?;
    let ident = TableIdent::new(namespace_of(&target)?, request.name.clone());
    let creation = TableCreation::builder()
        .name(request.name)
        .location_opt(request.location)
        .schema(request.schema)
        .partition_spec_opt(request.partition_spec)
        .sort_order_opt(request.write_order)
        .properties(request.properties)
        .build();
    let (location, metadata) = lake
        .create_from(&ident, creation, request.stage_create)
        .await?;
    Ok(loaded(location, metadata))
}

/// `GET …/tables/{t}`: the current metadata and its location.
pub async fn load(
    State(state): State<RestState>,
    target: Target,
) -> RestResult<Json<LoadTableResult>> {
    let lake = target.lake(&state).await?;
    let table = lake.load(&target.ident()).await?;
    Ok(loaded_table(&table))
}

/// `HEAD …/tables/{t}`: 204 or 404.
pub async fn exists(State(state): State<RestState>, target: Target) -> RestResult<StatusCode> {
    let lake = target.lake(&state).await?;
    match lake.exists(&target.ident()).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Ok(StatusCode::NOT_FOUND),
    }
}

/// `DELETE …/tables/{t}[?purgeRequested=true]`: purging also deletes the
/// table's files.
pub async fn drop(
    State(state): State<RestState>,
    target: Target,
    Query(query): Query<HashMap<String, String>>,
) -> RestResult<StatusCode> {
    let lake = target.lake(&state).await?;
    let ident = target.ident();
    let purge = query
        .get("purgeRequested")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    lake.drop(&ident, purge).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/tables/{t}`: requirements + updates, one compare-and-swap.
pub async fn commit(
    State(state): State<RestState>,
    target: Target,
    body: Result<Json<CommitTableRequest>, JsonRejection>,
) -> RestResult<Json<LoadTableResult>> {
    let lake = target.lake(&state).await?;
    let Json(request) = body.map_err(rejected)?;
    let ident = target.ident();
    same_identifier("table", request.identifier.as_ref(), &ident)?;
    let change = TableChange {
        ident,
        requirements: request.requirements,
        updates: request.updates,
    };
    let committed = counted(lake.apply_changes(std::slice::from_ref(&change)).await)?;
    let table = committed
        .into_iter()
        .next()
        .ok_or_else(|| RestError::bad_request("nothing was committed"))?;
    Ok(loaded_table(&table))
}

/// `POST …/transactions/commit`: every table change in one atomic commit.
pub async fn commit_transaction(
    State(state): State<RestState>,
    target: Target,
    body: Result<Json<CommitTransactionRequest>, JsonRejection>,
) -> RestResult<StatusCode> {
    let lake = target.lake(&state).await?;
    let Json(request) = body.map_err(rejected)?;
    let mut changes = Vec::with_capacity(request.table_changes.len());
    for change in request.table_changes {
        let ident = change.identifier.ok_or_else(|| {
            RestError::bad_request("every change of a transaction needs its identifier")
        })?;
        changes.push(TableChange {
            ident,
            requirements: change.requirements,
            updates: change.updates,
        });
    }
    if changes.is_empty() {
        return Err(RestError::bad_request(
            "a transaction needs at least one table change",
        ));
    }
    counted(lake.apply_changes(&changes).await)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Count a commit's outcome in `icefjord_rest_commits_total{outcome}`.
fn counted<T>(result: icefjord_catalog::Result<T>) -> RestResult<T> {
    let outcome = match &result {
        Ok(_) => "committed",
        Err(CatalogError::RequirementFailed { .. }) => "conflict",
        Err(_) => "error",
    };
    metrics::counter!("icefjord_rest_commits_total", "outcome" => outcome).increment(1);
    Ok(result?)
}

/// `POST …/namespaces/{ns}/register`.
pub async fn register(
    State(state): State<RestState>,
    target: Target,
    body: Result<Json<RegisterTableRequest>, JsonRejection>,
) -> RestResult<Json<LoadTableResult>> {
    let lake = target.lake(&state).await?;
    let Json(request) = body.map_err(rejected)?;
    lake.require_namespace(&target.namespace).await?;
    let ident = TableIdent::new(namespace_of(&target)?, request.name);
    let table = lake
        .register(&ident, &request.metadata_location, request.overwrite)
        .await?;
    Ok(loaded_table(&table))
}

/// `POST …/tables/rename`: the destination namespace must exist.
pub async fn rename(
    State(state): State<RestState>,
    target: Target,
    body: Result<Json<RenameTableRequest>, JsonRejection>,
) -> RestResult<StatusCode> {
    let lake = target.lake(&state).await?;
    let Json(request) = body.map_err(rejected)?;
    lake.rename(&request.source, &request.destination).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/tables/{t}/metrics`: clients' scan and commit reports are
/// accepted and counted (`icefjord_rest_metrics_reports_total`), not kept.
pub async fn report_metrics(_target: Target) -> StatusCode {
    metrics::counter!("icefjord_rest_metrics_reports_total").increment(1);
    StatusCode::NO_CONTENT
}
