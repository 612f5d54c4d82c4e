//! `GET /v1/runs`: the run history, the Iceberg table `icefjord.runs` that
//! `icefjord run` appends to (one row per model per run,
//! [`icefjord_runner::history`]), newest first. It is a query like any other
//! (admitted, logged, counted, in every result format), built with the
//! DataFrame API so no filter value is ever formatted into SQL.

use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::Extension;
use datafusion::prelude::{col, lit};
use datafusion::sql::TableReference;
use icefjord_catalog::CommitId;
use icefjord_runner::{history, RunReport};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::error::ApiError;
use super::query::{Admitted, FormatQuery};
use super::AppState;
use crate::execution::QueryLabel;
use crate::metrics::Protocol;
use crate::sqlstate::Failure;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 10_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only the runs of this pipeline.
    pub pipeline: Option<String>,
    /// Rows at most (one row per model per run), newest first; default 100.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
}

/// The run history (`icefjord.runs`): one row per model per run, newest
/// first, with the columns run_id, pipeline, model, kind, status, rows,
/// files, snapshot_id, commit_id, started_at, finished_at, duration_ms and
/// error. Before the first run the result has the columns and no row.
#[utoipa::path(
    get,
    path = "/v1/runs",
    tag = "runs",
    params(RunsQuery, FormatQuery),
    responses(super::formats::RowsResponse, super::error::QueryErrors,)
)]
pub async fn runs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let format = FormatQuery::of(&uri, &headers)?;
    let Query(query) =
        Query::<RunsQuery>::try_from_uri(&uri).map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit: {limit} is not between 1 and {MAX_LIMIT}"
        )));
    }
    let label = QueryLabel::new(Protocol::Http, caller.0, uri.path());
    let admitted = Admitted::new(&state, label, started)?;
    let session = admitted.session(&state).await?;
    let refuse = |e: datafusion::error::DataFusionError| admitted.refuse(Failure::datafusion(&e));
    let ctx = session.context();
    let ident = history::runs_table();
    let table = TableReference::partial(ident.namespace().join("."), ident.name());
    let frame = if ctx.table_exist(table.clone()).map_err(refuse)? {
        ctx.table(table).await.map_err(refuse)?
    } else {
        // No run yet: the columns, no row.
        let none = RunReport::start("", String::new(), Default::default());
        let empty = history::rows(&none, &CommitId::new(String::new())).map_err(|e| {
            admitted.refuse(Failure::new(crate::sqlstate::INTERNAL_ERROR, e.to_string()))
        })?;
        ctx.read_batch(empty).map_err(refuse)?
    };
    let frame = match query.pipeline {
        Some(pipeline) => frame
            .filter(col("pipeline").eq(lit(pipeline)))
            .map_err(refuse)?,
        None => frame,
    };
    let frame = frame
        .sort(vec![
            col("started_at").sort(false, true),
            col("run_id").sort(true, false),
            col("model").sort(true, false),
        ])
        .and_then(|f| f.limit(0, Some(limit as usize)))
        .map_err(refuse)?;
    Ok(admitted
        .execute(&state, session, frame)
        .await?
        .respond(format))
}
