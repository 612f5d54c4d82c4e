//! The Iceberg REST catalog (`--rest-addr`, default `127.0.0.1:8181`), as
//! the REST spec (apache/iceberg `open-api/rest-catalog-open-api.yaml`)
//! defines it, so that PyIceberg, Spark, Trino and DuckDB use the lake's
//! tables through the catalog our own writers use:
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/config` | `overrides.prefix` = the branch (`?warehouse=`), the endpoints served |
//! | `POST /v1/oauth/tokens` | OAuth2 client credentials ([`auth`]) |
//! | `/v1/{prefix}/namespaces[/{ns}[/properties]]` | list, create, load, exists, properties, drop |
//! | `/v1/{prefix}/namespaces/{ns}/tables[/{t}]` | list, create (staged too), load, exists, commit, drop (purge) |
//! | `POST /v1/{prefix}/namespaces/{ns}/register` | register a metadata file of the warehouse |
//! | `POST /v1/{prefix}/tables/rename` | rename within the catalog |
//! | `POST /v1/{prefix}/namespaces/{ns}/tables/{t}/metrics` | scan/commit reports: accepted, counted, dropped |
//! | `POST /v1/{prefix}/transactions/commit` | several tables in one atomic commit |
//! | `/v1/{prefix}/namespaces/{ns}/views[/{v}]`, `POST …/views/rename` | pipeline views (read-only, with a `spark` representation) and clients' Iceberg views ([`views`]) |
//!
//! Every route is also served without `{prefix}` (main).
//!
//! # Invariants
//! - **One commit path.** Commits from other engines are requirements +
//!   updates applied by [`LakeCatalog::apply_changes`]: compare-and-swap on
//!   the catalog row our writers swap, failed requirements as 409
//!   `CommitFailedException` with nothing changed (clients reload and retry),
//!   our writers' position properties protected, locations kept inside the
//!   warehouse (403).
//! - **Errors in the spec's model** ([`error`]): `{"error": {message, type,
//!   code}}` with the exception name clients map.
//! - **Data files by location**: metadata and data locations are those of the
//!   warehouse (`file://` for a local one); no credentials are vended.
//! - **Tokens** ([`auth`]): when OAuth2 clients are configured, every route
//!   but `/v1/config` and the token endpoint needs a bearer token we signed,
//!   and writes need its `write` scope.

mod auth;
mod error;
mod model;
mod namespaces;
mod published;
mod spark_sql;
mod tables;
mod views;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use icefjord_catalog::LakeCatalog;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::ServeConfig;
use crate::error::{Result, ServeError};
use crate::listener::GaugedListener;
use crate::metrics::Protocol;
use error::RestError;
use model::CatalogConfig;

/// What every REST handler shares.
#[derive(Clone)]
pub(crate) struct RestState(Arc<Shared>);

pub(crate) struct Shared {
    lake: LakeCatalog,
    auth: Option<auth::TokenAuth>,
}

impl std::ops::Deref for RestState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// A bound REST catalog listener.
pub struct RestServer {
    listener: TcpListener,
    state: RestState,
}

impl RestServer {
    pub async fn bind(addr: SocketAddr, config: &ServeConfig, lake: LakeCatalog) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let state = RestState(Arc::new(Shared {
            lake,
            auth: auth::TokenAuth::new(&config.rest_clients, config.rest_token_key.as_ref()),
        }));
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serve until `stop` turns true; calls in progress finish.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<()> {
        let router = router(self.state);
        let serve = axum::serve(GaugedListener::new(self.listener, Protocol::Rest), router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
        serve.await?;
        Ok(())
    }
}

/// The routes of one prefix (`""` for the unprefixed ones).
fn catalog_routes(state: &RestState) -> Router<RestState> {
    Router::new()
        .route(
            "/namespaces",
            get(namespaces::list).post(namespaces::create),
        )
        .route(
            "/namespaces/{namespace}",
            get(namespaces::load)
                .head(namespaces::exists)
                .delete(namespaces::drop),
        )
        .route(
            "/namespaces/{namespace}/properties",
            post(namespaces::update_properties),
        )
        .route(
            "/namespaces/{namespace}/tables",
            get(tables::list).post(tables::create),
        )
        .route(
            "/namespaces/{namespace}/tables/{table}",
            get(tables::load)
                .head(tables::exists)
                .post(tables::commit)
                .delete(tables::drop),
        )
        .route(
            "/namespaces/{namespace}/tables/{table}/metrics",
            post(tables::report_metrics),
        )
        .route("/namespaces/{namespace}/register", post(tables::register))
        .route("/tables/rename", post(tables::rename))
        .route(
            "/namespaces/{namespace}/views",
            get(views::list).post(views::create),
        )
        .route(
            "/namespaces/{namespace}/views/{view}",
            get(views::load)
                .head(views::exists)
                .post(views::replace)
                .delete(views::drop),
        )
        .route("/views/rename", post(views::rename))
        .route("/transactions/commit", post(tables::commit_transaction))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
}

fn router(state: RestState) -> Router {
    Router::new()
        .route("/v1/config", get(config))
        .route("/v1/oauth/tokens", post(auth::token))
        .nest("/v1", catalog_routes(&state))
        .nest("/v1/{prefix}", catalog_routes(&state))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> RestError {
    RestError::not_found(
        "NotFoundException",
        format!("no REST catalog route {}", uri.path()),
    )
}

/// The routes [`CatalogConfig::endpoints`] announces.
const ENDPOINTS: &[&str] = &[
    "GET /v1/{prefix}/namespaces",
    "POST /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "DELETE /v1/{prefix}/namespaces/{namespace}",
    "POST /v1/{prefix}/namespaces/{namespace}/properties",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "POST /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "DELETE /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/register",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
    "POST /v1/{prefix}/tables/rename",
    "POST /v1/{prefix}/transactions/commit",
    "GET /v1/{prefix}/namespaces/{namespace}/views",
    "POST /v1/{prefix}/namespaces/{namespace}/views",
    "GET /v1/{prefix}/namespaces/{namespace}/views/{view}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/views/{view}",
    "POST /v1/{prefix}/namespaces/{namespace}/views/{view}",
    "DELETE /v1/{prefix}/namespaces/{namespace}/views/{view}",
    "POST /v1/{prefix}/views/rename",
];

/// `GET /v1/config[?warehouse=BRANCH]`: the prefix clients put in every
/// later route is the branch or tag (Nessie's convention for REST clients).
async fn config(
    State(state): State<RestState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<CatalogConfig>, RestError> {
    let branch = branch_of(&state, query.get("warehouse").map(String::as_str));
    state.lake.on_ref(&branch).await?;
    Ok(Json(CatalogConfig {
        defaults: BTreeMap::new(),
        overrides: BTreeMap::from([("prefix".to_string(), branch)]),
        endpoints: ENDPOINTS.to_vec(),
    }))
}

/// The branch a warehouse name or prefix selects; none (or empty) selects
/// the one `icefjord serve --branch` serves (main by default).
fn branch_of(state: &RestState, name: Option<&str>) -> String {
    match name.map(str::trim) {
        None | Some("") => state.lake.ref_name().to_string(),
        Some(other) => other.to_string(),
    }
}

/// The path parameters of a catalog route: the branch its prefix selects,
/// the namespace (levels joined by `.`; the spec separates them with the
/// unit separator, `%1F`) and the table or view.
pub(crate) struct Target {
    pub branch: String,
    pub namespace: String,
    pub table: String,
}

impl Target {
    /// The catalog as the route's branch or tag has it (404 when it does not exist).
    pub async fn lake(&self, state: &RestState) -> Result<LakeCatalog, RestError> {
        Ok(state.lake.on_ref(&self.branch).await?)
    }

    pub fn ident(&self) -> iceberg::TableIdent {
        iceberg::TableIdent::new(
            iceberg::NamespaceIdent::from_strs(self.namespace.split('.'))
                .unwrap_or_else(|_| iceberg::NamespaceIdent::new(self.namespace.clone())),
            self.table.clone(),
        )
    }

    /// The namespace as the spec spells it (one string per level).
    pub fn levels(&self) -> Vec<String> {
        self.namespace.split('.').map(str::to_string).collect()
    }
}

impl FromRequestParts<RestState> for Target {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, state: &RestState) -> Result<Self, RestError> {
        let Path(params): Path<HashMap<String, String>> = Path::from_request_parts(parts, state)
            .await
            .map_err(|e| RestError::bad_request(e.body_text()))?;
        Ok(Self {
            branch: branch_of(state, params.get("prefix").map(String::as_str)),
            namespace: params
                .get("namespace")
                .map(|n| n.split('\u{1f}').collect::<Vec<_>>().join("."))
                .unwrap_or_default(),
            table: params
                .get("table")
                .or_else(|| params.get("view"))
                .cloned()
                .unwrap_or_default(),
        })
    }
}
