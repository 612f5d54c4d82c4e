//! Namespace routes: list, create, load, exists, update properties, drop.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use icefjord_catalog::CatalogError;

use super::error::{rejected, RestError, RestResult};
use super::model::{
    CreateNamespaceRequest, ListNamespacesResponse, NamespaceResponse,
    UpdateNamespacePropertiesRequest, UpdateNamespacePropertiesResponse,
};
use super::{RestState, Target};

/// `GET …/namespaces[?parent=a%1Fb]`: the namespaces one level under
/// `parent` (the top level without it).
pub async fn list(
    State(state): State<RestState>,
    target: Target,
    Query(query): Query<HashMap<String, String>>,
) -> RestResult<Json<ListNamespacesResponse>> {
    let lake = target.lake(&state).await?;
    let parent: Vec<String> = match query.get("parent").map(|p| p.trim()) {
        None | Some("") => Vec::new(),
        Some(p) => p.split(['\u{1f}', '.']).map(str::to_string).collect(),
    };
    let all = lake.namespaces().await?;
    let prefix = parent.join(".");
    let under = |n: &String| *n == prefix || n.starts_with(&format!("{prefix}."));
    if !parent.is_empty() && !all.iter().any(under) {
        return Err(CatalogError::NamespaceNotFound {
            namespace: parent.join("."),
        }
        .into());
    }
    let mut namespaces: Vec<Vec<String>> = all
        .iter()
        .map(|n| n.split('.').map(str::to_string).collect::<Vec<_>>())
        .filter(|levels| levels.len() > parent.len() && levels.starts_with(&parent))
        .map(|levels| levels[..=parent.len()].to_vec())
        .collect();
    namespaces.dedup();
    Ok(Json(ListNamespacesResponse {
        namespaces,
        next_page_token: None,
    }))
}

/// `POST …/namespaces`.
pub async fn create(
    State(state): State<RestState>,
    target: Target,
    body: Result<Json<CreateNamespaceRequest>, axum::extract::rejection::JsonRejection>,
) -> RestResult<Json<NamespaceResponse>> {
    let lake = target.lake(&state).await?;
    let Json(request) = body.map_err(rejected)?;
    if request.namespace.is_empty()
        || request
            .namespace
            .iter()
            .any(|l| l.is_empty() || l.contains('.'))
    {
        return Err(RestError::bad_request(format!(
            "namespace {:?}: levels must be non-empty and may not contain '.'",
            request.namespace
        )));
    }
    lake.create_namespace_with(&request.namespace.join("."), &request.properties)
        .await?;
    Ok(Json(NamespaceResponse {
        namespace: request.namespace,
        properties: request.properties,
    }))
}

/// `GET …/namespaces/{ns}`.
pub async fn load(
    State(state): State<RestState>,
    target: Target,
) -> RestResult<Json<NamespaceResponse>> {
    let lake = target.lake(&state).await?;
    let properties = lake
        .namespace_properties(&target.namespace)
        .await?
        .ok_or_else(|| CatalogError::NamespaceNotFound {
            namespace: target.namespace.clone(),
        })?;
    Ok(Json(NamespaceResponse {
        namespace: target.levels(),
        properties,
    }))
}

/// `HEAD …/namespaces/{ns}`: 204 or 404.
pub async fn exists(State(state): State<RestState>, target: Target) -> RestResult<StatusCode> {
    let lake = target.lake(&state).await?;
    match lake.namespace_properties(&target.namespace).await? {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Ok(StatusCode::NOT_FOUND),
    }
}

/// `DELETE …/namespaces/{ns}`: only an empty namespace (409 otherwise).
pub async fn drop(State(state): State<RestState>, target: Target) -> RestResult<StatusCode> {
    let lake = target.lake(&state).await?;
    lake.drop_namespace_checked(&target.namespace).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/namespaces/{ns}/properties`: a key both set and removed is 422,
/// as the spec says.
pub async fn update_properties(
    State(state): State<RestState>,
    target: Target,
    body: Result<Json<UpdateNamespacePropertiesRequest>, axum::extract::rejection::JsonRejection>,
) -> RestResult<Json<UpdateNamespacePropertiesResponse>> {
    let lake = target.lake(&state).await?;
    let Json(request) = body.map_err(rejected)?;
    if let Some(key) = request
        .removals
        .iter()
        .find(|k| request.updates.contains_key(*k))
    {
        return Err(RestError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "UnprocessableEntityException",
            format!("property {key} is both set and removed"),
        ));
    }
    let missing = lake
        .update_namespace_properties(&target.namespace, &request.updates, &request.removals)
        .await?;
    Ok(Json(UpdateNamespacePropertiesResponse {
        updated: request.updates.keys().cloned().collect(),
        removed: request
            .removals
            .into_iter()
            .filter(|k| !missing.contains(k))
            .collect(),
        missing,
    }))
}
