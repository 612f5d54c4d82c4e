//! `POST /v1/query`, and the life of every HTTP query (the named endpoints and
//! `/v1/runs` too): admitted under the query limit ([`Admitted`]), planned
//! read-only in a fresh session, run on the query runtime, its rows streamed
//! in the asked format ([`Rows`]).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::sql::sqlparser::ast::Statement;
use futures::{Stream, StreamExt};
use icefjord_engine::LakeSession;
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::ApiError;
use super::formats::{Encoder, Format};
use super::AppState;
use crate::execution::{GuardedStream, QueryLabel};
use crate::lake::{self, SessionSettings};
use crate::metrics::{self, Protocol};
use crate::result_cache::CacheKey;
use crate::sqlstate::{self, Failure};
use crate::statement::{self, Kind};

/// A query to run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// One read-only SQL statement (PostgreSQL syntax); `$1`, `$2`, …
    /// placeholders take `params` in order.
    #[schema(
        example = "SELECT category, net_revenue FROM unified.sales_by_category WHERE net_revenue > $1 ORDER BY category"
    )]
    pub sql: String,
    /// One value per placeholder: a string, number, boolean or null, cast to
    /// the placeholder's inferred type (`"2024-01-31"` binds to a date).
    #[serde(default)]
    #[schema(schema_with = param_values, example = json!([100]))]
    pub params: Vec<serde_json::Value>,
    /// The catalog-wide branch or tag to read (default `main`), as
    /// `icefjord branch create` made it.
    #[serde(default)]
    #[schema(example = "main")]
    pub branch: Option<String>,
}

/// `params`: an array of strings, numbers, booleans and nulls.
fn param_values() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    let scalar = ObjectBuilder::new().schema_type(SchemaType::from_iter([
        Type::String,
        Type::Number,
        Type::Boolean,
        Type::Null,
    ]));
    ArrayBuilder::new().items(scalar).build()
}

/// `?format=`, which wins over the `Accept` header.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatQuery {
    /// `json` (default), `ndjson`, `csv` or `arrow`.
    pub format: Option<Format>,
}

impl FormatQuery {
    /// The format a request asks for ([`Format::negotiate`]).
    pub fn of(uri: &Uri, headers: &HeaderMap) -> Result<Format, ApiError> {
        let query = Query::<FormatQuery>::try_from_uri(uri)
            .map_err(|e| ApiError::bad_request(format!("format: {}", e.body_text())))?;
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        Ok(Format::negotiate(query.0.format, accept))
    }
}

/// Run one read-only SQL query.
#[utoipa::path(
    post,
    path = "/v1/query",
    tag = "query",
    request_body = QueryRequest,
    params(FormatQuery),
    responses(
        super::formats::RowsResponse,
        super::error::QueryErrors,
    )
)]
pub async fn query(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let format = FormatQuery::of(&uri, &headers)?;
    let request: QueryRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not a query request ({{\"sql\": \"…\", \"params\": […]}}): {e}"
        ))
    })?;
    let label = QueryLabel::new(Protocol::Http, caller.0, &request.sql);
    let admitted = Admitted::new(&state, label, started)?.on_branch(request.branch.clone());
    let statement = admitted.statement(&state, &request.sql)?;
    let reuse = format!(
        "{statement} {}",
        serde_json::Value::from(request.params.clone())
    );
    let rows = admitted
        .run(&state, statement, reuse, |plan| {
            crate::params::bind_json(plan, &request.params)
        })
        .await?;
    Ok(rows.respond(format))
}

/// A query let in under the limit of queries at once: it holds its permit
/// until its rows are sent.
pub(super) struct Admitted {
    permit: OwnedSemaphorePermit,
    label: QueryLabel,
    started: Instant,
    settings: SessionSettings,
}

impl Admitted {
    /// Read the catalog-wide branch or tag `branch` (main when `None`).
    pub fn on_branch(mut self, branch: Option<String>) -> Self {
        self.settings.branch = branch.filter(|b| b != icefjord_catalog::MAIN);
        self
    }

    /// A permit, or 503 when `max_connections` queries run.
    pub fn new(state: &AppState, label: QueryLabel, started: Instant) -> Result<Self, ApiError> {
        match state.queries.clone().try_acquire_owned() {
            Ok(permit) => Ok(Self {
                permit,
                label,
                started,
                settings: SessionSettings::default(),
            }),
            Err(_) => {
                let failure = Failure::new(
                    sqlstate::TOO_MANY_CONNECTIONS,
                    "too many queries at once: retry later",
                );
                metrics::refused(label, started, &failure.message);
                Err(failure.into())
            }
        }
    }

    /// Count the query as refused (and log it): the error for the client.
    pub fn refuse(&self, failure: Failure) -> ApiError {
        metrics::refused(self.label.clone(), self.started, &failure.message);
        failure.into()
    }

    /// The one statement of `sql`, if it is a query.
    pub fn statement(&self, state: &AppState, sql: &str) -> Result<Statement, ApiError> {
        let mut statements = state
            .statements
            .parse(sql)
            .map_err(|failure| self.refuse(failure))?;
        if statements.len() != 1 {
            return Err(self.refuse(Failure::new(
                sqlstate::SYNTAX_ERROR,
                format!(
                    "one statement per request, not {} (separate requests run separately)",
                    statements.len()
                ),
            )));
        }
        let statement = statements.remove(0);
        match statement::kind(&statement) {
            Kind::Query => Ok(statement),
            Kind::Refused(message) => Err(self.refuse(statement::refusal(message))),
            Kind::Session | Kind::Cursor | Kind::Discard | Kind::Acknowledge(_) => Err(self
                .refuse(Failure::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "a session statement (SET, SHOW, BEGIN, cursors, DISCARD) has no meaning over \
                 HTTP: each request is one query in a fresh session",
                ))),
        }
    }

    /// Run `statement` with the values `bind` finds for its parameters: a
    /// result kept for `reuse` (the statement and its values, see
    /// [`crate::result_cache`]) while what it read is unchanged, else a fresh
    /// session, the plan, and its rows (kept for the next time if reusable).
    pub async fn run(
        self,
        state: &AppState,
        statement: Statement,
        reuse: String,
        bind: impl FnOnce(&LogicalPlan) -> Result<ParamValues, Failure>,
    ) -> Result<Rows, ApiError> {
        let key = CacheKey::new(reuse, &self.settings);
        if let Some(rows) = state.lake.reused(&key).await {
            return self.rows(state, None, rows).await;
        }
        let session = self.session(state).await?;
        let plan = self.plan(&session, statement.clone()).await?;
        let values = bind(&plan).map_err(|failure| self.refuse(failure))?;
        let plan = plan
            .replace_params_with_values(&values)
            .map_err(|e| self.refuse(Failure::datafusion(&e)))?;
        let reads = state.lake.reusable(&session, &statement, &plan);
        let frame = self.frame(&session, plan).await?;
        let batches = self.start(state, frame).await?;
        let batches = state.lake.keep(key, reads, batches);
        self.rows(state, Some(session), batches).await
    }

    /// Start `frame` on the query runtime; its rows as [`Admitted::rows`].
    pub async fn execute(
        self,
        state: &AppState,
        session: LakeSession,
        frame: DataFrame,
    ) -> Result<Rows, ApiError> {
        let batches = self.start(state, frame).await?;
        self.rows(state, Some(session), batches).await
    }

    async fn start(
        &self,
        state: &AppState,
        frame: DataFrame,
    ) -> Result<SendableRecordBatchStream, ApiError> {
        state
            .lake
            .runtime()
            .execute(frame)
            .await
            .map_err(|e| self.refuse(Failure::datafusion(&e)))
    }

    /// A fresh session: the catalog as it is now, the per-query memory pool.
    pub async fn session(&self, state: &AppState) -> Result<LakeSession, ApiError> {
        state
            .lake
            .session(&self.settings)
            .await
            .map_err(|e| self.refuse(Failure::serve(&e)))
    }

    /// Plan `statement` read-only.
    pub async fn plan(
        &self,
        session: &LakeSession,
        statement: Statement,
    ) -> Result<LogicalPlan, ApiError> {
        lake::plan(session, statement)
            .await
            .map_err(|e| self.refuse(Failure::serve(&e)))
    }

    pub async fn frame(
        &self,
        session: &LakeSession,
        plan: LogicalPlan,
    ) -> Result<DataFrame, ApiError> {
        session
            .context()
            .execute_logical_plan(plan)
            .await
            .map_err(|e| self.refuse(Failure::datafusion(&e)))
    }

    /// Guard the started query's `batches` and wait for the first, so that
    /// an early failure (most of them: planning, a memory pool spent by an
    /// aggregation, the timeout) still gets its status code.
    async fn rows(
        self,
        state: &AppState,
        session: Option<LakeSession>,
        batches: SendableRecordBatchStream,
    ) -> Result<Rows, ApiError> {
        let timeout = state.lake.limits().timeout;
        let mut rows = GuardedStream::new(batches, self.label, self.started, timeout)
            .with_shutdown(state.abort.clone())
            .with_in_flight(state.lake.in_flight());
        if let Some(session) = session {
            rows = rows.with_session(session);
        }
        let first = match rows.next().await {
            Some(Ok(batch)) => Some(batch),
            // The stream has counted and logged the query.
            Some(Err(e)) => return Err(Failure::datafusion(&e).into()),
            None => None,
        };
        Ok(Rows {
            first,
            rest: rows,
            permit: self.permit,
        })
    }
}

/// A running query's rows, the first batch already read.
pub(super) struct Rows {
    first: Option<RecordBatch>,
    rest: GuardedStream,
    permit: OwnedSemaphorePermit,
}

impl Rows {
    /// A 200 response streaming every row in `format`.
    pub fn respond(self, format: Format) -> Response {
        let encoder = Encoder::new(format, self.rest.schema());
        let content_type = encoder.content_type();
        let body = Encoded {
            encoder,
            first: self.first,
            rest: self.rest,
            phase: Phase::Head,
            _permit: self.permit,
        };
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            Body::from_stream(body),
        )
            .into_response()
    }

    /// The query's one row as a JSON object: 404 without a row, 500 with
    /// more than one (the endpoint's SQL is wrong).
    pub async fn one_row(mut self) -> Result<Response, ApiError> {
        let mut row: Option<RecordBatch> = None;
        let mut count = 0;
        let mut next = self.first.take();
        loop {
            let batch = match next.take() {
                Some(batch) => batch,
                None => match self.rest.next().await {
                    Some(Ok(batch)) => batch,
                    Some(Err(e)) => return Err(Failure::datafusion(&e).into()),
                    None => break,
                },
            };
            count += batch.num_rows();
            if count > 1 {
                return Err(Failure::new(
                    sqlstate::CARDINALITY_VIOLATION,
                    "the endpoint returns one row, and its query gave more than one",
                )
                .into());
            }
            if batch.num_rows() == 1 {
                row = Some(batch);
            }
        }
        let Some(row) = row else {
            return Err(Failure::new(sqlstate::NO_DATA, "no row matches").into());
        };
        let object = super::formats::json_object(&row)?;
        Ok((
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(super::formats::JSON),
            )],
            object,
        )
            .into_response())
    }
}

enum Phase {
    Head,
    First,
    Rest,
    Done,
}

/// The response body: the encoded rows, pulled from the query as the client
/// reads. Dropping it (the client went away) drops the query's stream, which
/// stops the query.
struct Encoded {
    encoder: Encoder,
    first: Option<RecordBatch>,
    rest: GuardedStream,
    phase: Phase,
    _permit: OwnedSemaphorePermit,
}

impl Stream for Encoded {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let chunk = match this.phase {
                Phase::Head => {
                    this.phase = Phase::First;
                    this.encoder.head()
                }
                Phase::First => {
                    this.phase = Phase::Rest;
                    match this.first.take() {
                        Some(batch) => this.encoder.batch(&batch),
                        None => continue,
                    }
                }
                Phase::Rest => match this.rest.poll_next_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(batch))) => this.encoder.batch(&batch),
                    Poll::Ready(Some(Err(e))) => {
                        // Cut the body off: the status was sent with the head.
                        this.phase = Phase::Done;
                        let failure = Failure::datafusion(&e);
                        return Poll::Ready(Some(Err(std::io::Error::other(failure.to_string()))));
                    }
                    Poll::Ready(None) => {
                        this.phase = Phase::Done;
                        this.encoder.tail()
                    }
                },
                Phase::Done => return Poll::Ready(None),
            };
            match chunk {
                Ok(bytes) if bytes.is_empty() => continue,
                Ok(bytes) => return Poll::Ready(Some(Ok(bytes))),
                Err(e) => {
                    this.phase = Phase::Done;
                    tracing::warn!(error = %e, "encoding a result failed");
                    return Poll::Ready(Some(Err(std::io::Error::other(e.to_string()))));
                }
            }
        }
    }
}
