//! The HTTP API (axum 0.8), described by the OpenAPI document it serves at
//! `/openapi.json` (generated with utoipa from the handlers below and the
//! named endpoints of `--pipeline` folders):
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/query` | `{"sql": "…", "params": […]}` → rows ([`formats`]: JSON, NDJSON, CSV, Arrow IPC stream) |
//! | `GET /v1/tables` | every table and view of the lake, with its kind |
//! | `GET /v1/tables/{namespace}/{table}` | schema, partition spec, snapshots, row count |
//! | `GET /v1/runs` | the run history (`icefjord.runs`), newest first |
//! | `GET <path>` | named endpoints, `[[endpoints]]` of a pipeline ([`endpoints`]) |
//! | `GET /healthz`, `/readyz`, `/metrics`, `/openapi.json` | probes, Prometheus, the document: never behind a token |
//!
//! # Invariants
//! - **Read-only, one catalog state per query**: every query is parsed by the
//!   parser the PostgreSQL wire uses ([`crate::statement`]), refused with 403
//!   unless it only reads, and runs in a fresh session ([`QueryLake::session`])
//!   with its own memory pool, under the server's timeout; its rows stream
//!   through [`crate::execution::GuardedStream`], which counts it in the
//!   metrics and logs it once. A client that disconnects drops the stream,
//!   which stops the query.
//! - **At most `max_connections` queries at once**: past that, 503 with
//!   `Retry-After`, before any work.
//! - **Tokens**: when bearer tokens are configured, every route but the probes,
//!   `/metrics` and `/openapi.json` needs one ([`auth`]); tokens never reach
//!   logs or errors ([`crate::config::Secret`]).
//! - **Shutdown**: new connections stop at once; running queries get the grace
//!   period, then end (their responses are cut off).

mod auth;
pub mod endpoints;
pub mod error;
pub mod formats;
mod health;
mod openapi;
mod query;
mod runs;
mod tables;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::config::{Secret, ServeConfig};
use crate::error::{Result, ServeError};
use crate::lake::QueryLake;
use crate::listener::GaugedListener;
use crate::metrics::Protocol;
use crate::statement::StatementParser;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

pub(crate) struct Shared {
    lake: QueryLake,
    /// True once the grace period is over: running queries end.
    abort: watch::Receiver<bool>,
    /// True once the server stops accepting (readiness fails).
    stopping: AtomicBool,
    /// One permit per running query.
    queries: Arc<Semaphore>,
    tokens: Vec<Secret>,
    statements: StatementParser,
    metrics: Option<&'static metrics_exporter_prometheus::PrometheusHandle>,
    /// `/openapi.json`, rendered once at start.
    openapi: Bytes,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// A bound HTTP listener.
pub struct HttpServer {
    listener: TcpListener,
    state: AppState,
    endpoints: Vec<Arc<endpoints::NamedEndpoint>>,
}

impl HttpServer {
    /// Bind `addr`, load the named endpoints of `config.pipelines` (a bad
    /// spec stops start-up) and install the Prometheus recorder.
    pub async fn bind(
        addr: SocketAddr,
        config: &ServeConfig,
        lake: QueryLake,
        abort: watch::Receiver<bool>,
    ) -> Result<Self> {
        let statements = StatementParser::new();
        let endpoints = endpoints::load(&config.pipelines, &statements)?;
        let openapi = openapi::document(&endpoints, !config.http_tokens.is_empty())?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let state = AppState(Arc::new(Shared {
            lake,
            abort,
            stopping: AtomicBool::new(false),
            queries: Arc::new(Semaphore::new(config.limits.max_connections)),
            tokens: config.http_tokens.clone(),
            statements,
            metrics: health::recorder(),
            openapi,
        }));
        Ok(Self {
            listener,
            state,
            endpoints,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Accept connections until `stop` turns true. Requests in progress go on
    /// in their own tasks (until they end or the grace period's abort ends
    /// their queries).
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<()> {
        let state = self.state.clone();
        let router = router(self.state, &self.endpoints);
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let serve = axum::serve(GaugedListener::new(self.listener, Protocol::Http), router)
            .with_graceful_shutdown(async move {
                let mut stopped = stopped_rx;
                let _ = stopped.wait_for(|s| *s).await;
            });
        let server = tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "the HTTP server failed");
            }
        });
        let _ = stop.wait_for(|stop| *stop).await;
        state.stopping.store(true, Ordering::SeqCst);
        let _ = stopped_tx.send(true);
        // The server task lives on until its open connections end.
        drop(server);
        Ok(())
    }
}

fn router(state: AppState, named: &[Arc<endpoints::NamedEndpoint>]) -> Router {
    let protected = Router::new()
        .route("/v1/query", post(query::query))
        .route("/v1/tables", get(tables::list))
        .route("/v1/tables/{namespace}/{table}", get(tables::detail))
        .route("/v1/runs", get(runs::runs))
        .merge(endpoints::routes(named))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::serve))
        .merge(protected)
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        crate::sqlstate::Failure::new(
            crate::sqlstate::NO_DATA,
            format!("no route {} (see /openapi.json)", uri.path()),
        ),
    )
}
