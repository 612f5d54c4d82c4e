//! Probes and metrics, never behind a token: `/healthz` (the process
//! answers), `/readyz` (the catalog answers and the server is not stopping),
//! `/metrics` (Prometheus text: the `icefjord_query_*` metrics of
//! [`crate::metrics`]).

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::AppState;
use crate::sqlstate::{self, Failure};

/// How long `/readyz` waits for the catalog.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Upper bounds of the query duration histogram's buckets, in seconds.
const DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    #[schema(example = "ok")]
    pub status: String,
}

/// The process's Prometheus recorder, installed once (a process has one
/// global recorder); `None` when another recorder was installed first.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("icefjord_query_duration_seconds".into()),
                    &DURATION_BUCKETS,
                )
                .and_then(PrometheusBuilder::install_recorder)
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "no Prometheus recorder: /metrics will answer 503");
                })
                .ok()
        })
        .as_ref()
}

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process answers", body = Status)))]
pub async fn healthz() -> Json<Status> {
    Json(Status {
        status: "ok".into(),
    })
}

/// The catalog answers and the server is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready for queries", body = Status),
        (status = 503, description = "The catalog does not answer, or the server is stopping", body = super::error::ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    if state.stopping.load(Ordering::SeqCst) {
        return Err(Failure::new(sqlstate::ADMIN_SHUTDOWN, "the server is shutting down").into());
    }
    match tokio::time::timeout(READY_TIMEOUT, state.lake.catalog().state()).await {
        Ok(Ok(_)) => Ok(Json(Status {
            status: "ready".into(),
        })),
        Ok(Err(e)) => Err(Failure::new(
            sqlstate::IO_ERROR,
            format!("the catalog does not answer: {e}"),
        )
        .into()),
        Err(_) => Err(Failure::new(
            sqlstate::IO_ERROR,
            format!(
                "the catalog did not answer within {} s",
                READY_TIMEOUT.as_secs()
            ),
        )
        .into()),
    }
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "The icefjord_query_* metrics", content_type = "text/plain", body = String),
        (status = 503, description = "No recorder in this process", body = super::error::ErrorBody),
    ))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(handle) = state.metrics else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Failure::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "no Prometheus recorder in this process",
            ),
        ));
    };
    handle.run_upkeep();
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response())
}
