//! The OpenAPI 3.1 document at `/openapi.json`, generated from the code: the
//! handlers' `#[utoipa::path]` and the request and response types'
//! `ToSchema`, plus a path item per named endpoint built from its spec at
//! start. When bearer tokens are configured, every route but the open ones
//! carries the `bearer` security requirement and its 401 response.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use bytes::Bytes;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::{IntoResponses, OpenApi};

use super::endpoints::NamedEndpoint;
use super::error::{ErrorBody, ErrorDetail};
use super::formats::{Column, Format, QueryResult};
use super::query::QueryRequest;
use super::tables::{
    FieldView, PartitionFieldView, PartitionSpecView, SchemaView, SnapshotView, TableDetail,
    TableKind, TableList, TableSummary,
};
use super::{health, query, runs, tables, AppState};
use crate::error::{Result, ServeError};

/// The name of the bearer security scheme.
const BEARER: &str = "bearer";

/// Routes that never need a token.
pub const OPEN: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/openapi.json"];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "icefjord serve",
        description = "The lake, read-only, over HTTP: SQL queries, tables, run history and the named insight endpoints of pipelines. Errors are {\"error\": {\"code\": SQLSTATE, \"message\": …}}."
    ),
    paths(
        query::query,
        tables::list,
        tables::detail,
        runs::runs,
        health::healthz,
        health::readyz,
        health::metrics,
        serve,
    ),
    components(schemas(
        QueryRequest, QueryResult, Column, Format, ErrorBody, ErrorDetail, TableList,
        TableSummary, TableKind, TableDetail, SchemaView, FieldView, PartitionSpecView,
        PartitionFieldView, SnapshotView, health::Status,
    )),
    tags(
        (name = "query", description = "Read-only SQL"),
        (name = "tables", description = "The catalog"),
        (name = "runs", description = "The run history"),
        (name = "endpoints", description = "Named insight endpoints of pipelines"),
        (name = "health", description = "Probes, metrics and this document: never behind a token"),
    )
)]
struct ApiDoc;

/// A missing or wrong token.
#[derive(IntoResponses)]
#[allow(dead_code)] // only described, never built
enum AuthErrors {
    /// No token, or not one of the configured tokens (28000).
    #[response(status = 401, headers(("WWW-Authenticate" = String, description = "Bearer")))]
    Unauthorized(ErrorBody),
}

/// The document, rendered once.
pub fn document(endpoints: &[Arc<NamedEndpoint>], tokens: bool) -> Result<Bytes> {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    for endpoint in endpoints {
        doc.paths
            .paths
            .insert(endpoint.spec.path.clone(), endpoint.path_item());
    }
    if tokens {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                BEARER,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        for (path, item) in doc.paths.paths.iter_mut() {
            if OPEN.contains(&path.as_str()) {
                continue;
            }
            for operation in [item.get.as_mut(), item.post.as_mut()]
                .into_iter()
                .flatten()
            {
                operation.security =
                    Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                operation
                    .responses
                    .responses
                    .extend(AuthErrors::responses());
            }
        }
    }
    let json = serde_json::to_vec(&doc).map_err(|e| ServeError::Config {
        setting: "the OpenAPI document".into(),
        message: e.to_string(),
    })?;
    Ok(Bytes::from(json))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document of this server", content_type = "application/json", body = Object)))]
pub async fn serve(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, super::formats::JSON)],
        state.openapi.clone(),
    )
}
