//! The PostgreSQL simple and extended query protocols over the lake.
//!
//! # Invariants
//! - Each query (a simple-protocol statement, an extended-protocol `Execute`)
//!   plans in a fresh session ([`QueryLake::session`]): one catalog state per
//!   query, so a statement prepared an hour ago still reads the lake as it is
//!   now. The plan made at `Parse` only answers `Describe` (parameter and
//!   result types).
//! - Nothing that is not read-only reaches the planner ([`statement::kind`]),
//!   and every plan is checked again ([`crate::lake::plan`]).
//! - Per-connection settings (`search_path`, `TimeZone`, `statement_timeout`)
//!   live in the connection's metadata, where the `SET` hooks of
//!   `datafusion-postgres` keep them; each session starts from them.
//! - A query's rows stream under its deadline and the connection's cancel
//!   request ([`crate::execution::GuardedStream`]); a cancel stops the work
//!   where it is, mid-stream included.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, ParamValues};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{CloseCursor, Statement};
use datafusion_postgres::arrow_pg::datatypes::arrow_schema_to_pg_fields;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use futures::{stream, StreamExt};
use icefjord_engine::LakeSession;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::api::stmt::StoredStatement;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionHandle};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;

use super::cursor::{Cursor, Cursors};
use super::encode;
use super::parser::LakeQueryParser;
use super::settings::{self, SEARCH_PATH};
use super::sqlstate;
use super::statement::{self, Kind, StatementParser};
use crate::execution::{CancelSlot, GuardedStream, QueryLabel};
use crate::lake::{self, QueryLake, SessionSettings};
use crate::metrics::{self, Protocol};
use crate::result_cache::CacheKey;

/// The statement kept between `Parse` and `Execute`: the SQL and, when it
/// parsed, the statement and the plan made at `Parse` (for `Describe`). The
/// shape is `datafusion-postgres`'s, so its cursor hook can share the portal
/// store.
pub type PgStatement = (String, Option<(Statement, LogicalPlan)>);

/// Client metadata keys: the `SET` hooks of `datafusion-postgres` write them.
const TIME_ZONE: &str = "timezone";
const STATEMENT_TIMEOUT_MS: &str = "statement_timeout_ms";
const USER: &str = pgwire::api::METADATA_USER;

/// Answers every query of every connection (it holds no per-connection state).
pub struct QueryHandler {
    lake: QueryLake,
    parser: Arc<LakeQueryParser>,
    hooks: Vec<Arc<dyn QueryHook>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl QueryHandler {
    pub fn new(lake: QueryLake, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        let hooks: Vec<Arc<dyn QueryHook>> =
            vec![Arc::new(SetShowHook), Arc::new(TransactionStatementHook)];
        Self {
            parser: Arc::new(LakeQueryParser {
                lake: lake.clone(),
                statements: StatementParser::new(),
                hooks: hooks.clone(),
            }),
            lake,
            hooks,
            shutdown,
        }
    }

    /// Plan and start one query: its guarded record batch stream.
    async fn stream(
        &self,
        client: &(dyn ClientInfo + Send + Sync),
        statement: Statement,
        label: QueryLabel,
        started: Instant,
    ) -> PgWireResult<GuardedStream> {
        match self.prepare(client, statement, label, started).await? {
            Prepared::Reused(rows) => Ok(rows),
            Prepared::Planned(planned) => planned.start().await,
        }
    }

    /// A query's kept result ([`crate::result_cache`]), or its plan, made on
    /// the query runtime under the query's time limit (the planner can
    /// compute for long on deep expressions or huge `IN` lists), so it holds
    /// no connection thread and cannot escape the limit.
    async fn prepare(
        &self,
        client: &(dyn ClientInfo + Send + Sync),
        statement: Statement,
        label: QueryLabel,
        started: Instant,
    ) -> PgWireResult<Prepared> {
        let limit = timeout(&self.lake, client);
        let settings = settings(client);
        // Parameters are bound into the statement ([`bind`]): its text is the key.
        let key = CacheKey::new(statement.to_string(), &settings);
        if let Some(rows) = self.lake.reused(&key).await {
            return Ok(Prepared::Reused(
                GuardedStream::new(rows, label, started, limit)
                    .with_shutdown(self.shutdown.clone())
                    .with_in_flight(self.lake.in_flight()),
            ));
        }
        let lake = self.lake.clone();
        let planned = self
            .lake
            .runtime()
            .run(limit, async move {
                let (session, plan) = session_and_plan(&lake, &settings, statement.clone()).await?;
                let reads = lake.reusable(&session, &statement, &plan);
                Ok((session, plan, reads))
            })
            .await;
        let (session, plan, reads) = planned.map_err(|e| {
            metrics::refused(label.clone(), started, &e.to_string());
            refusal(&e)
        })?;
        Ok(Prepared::Planned(Planned {
            lake: self.lake.clone(),
            shutdown: self.shutdown.clone(),
            session,
            plan,
            key,
            reads,
            label,
            limit: limit.saturating_sub(started.elapsed()),
        }))
    }

    /// Run one query and stream its rows; `cancel` is filled when the
    /// request's handler returns ([`fill_cancel`]).
    async fn execute(
        &self,
        client: &(dyn ClientInfo + Send + Sync),
        statement: Statement,
        format: &Format,
        label: QueryLabel,
        started: Instant,
        cancel: &CancelSlot,
    ) -> PgWireResult<QueryResponse> {
        let guarded = self
            .stream(client, statement, label, started)
            .await?
            .with_cancel(cancel.clone());
        let schema = guarded.schema();
        rows_response(client, &schema, format, guarded)
    }

    /// `DECLARE`, `FETCH` and `CLOSE` ([`super::cursor`]).
    async fn cursor<C>(
        &self,
        client: &mut C,
        statement: &Statement,
        params: &ParamValues,
        format: &Format,
        sql: &str,
    ) -> PgWireResult<Response>
    where
        C: HookClient,
    {
        match statement {
            Statement::Declare { stmts } => {
                for declare in stmts {
                    let (Some(name), Some(query)) = (declare.names.first(), &declare.for_query)
                    else {
                        return Err(sqlstate::error(
                            sqlstate::SYNTAX_ERROR,
                            "DECLARE needs a cursor name and FOR query",
                        ));
                    };
                    let started = Instant::now();
                    let label = label(client, sql);
                    let mut query = Statement::Query(query.clone());
                    bind(&mut query, params)?;
                    // As PostgreSQL: planned (and its errors reported) now,
                    // run from the first FETCH.
                    let cursor = match self.prepare(client, query, label, started).await? {
                        Prepared::Reused(rows) => Cursor::new(rows),
                        Prepared::Planned(planned) => {
                            let schema = Arc::new(planned.plan.schema().as_arrow().clone());
                            Cursor::lazy(schema, Box::new(move || Box::pin(planned.start())))
                        }
                    };
                    let described = described_as(cursor.schema())?;
                    let cursor = cursor.holding(declare.hold == Some(true));
                    Cursors::of(client).declare(&name.value, cursor)?;
                    let stored = StoredStatement::new(
                        name.value.clone(),
                        (sql.to_string(), Some((statement.clone(), described))),
                        vec![],
                    );
                    client
                        .portal_store()
                        .put_portal(Arc::new(Portal::new_cursor(
                            name.value.clone(),
                            Arc::new(stored),
                        )));
                }
                Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
            }
            Statement::Fetch {
                name, direction, ..
            } => {
                let (schema, batches) = Cursors::of(client).fetch(&name.value, direction).await?;
                let rows = futures::stream::iter(batches.into_iter().map(Ok));
                let mut response = rows_response(client, &schema, format, rows)?;
                response.set_command_tag("FETCH");
                Ok(Response::Query(response))
            }
            Statement::Close { cursor } => {
                match cursor {
                    CloseCursor::All => {
                        Cursors::of(client).close(None)?;
                        client.portal_store().clear_portals();
                    }
                    CloseCursor::Specific { name } => {
                        Cursors::of(client).close(Some(&name.value))?;
                        client.portal_store().rm_portal(&name.value);
                    }
                }
                Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
            }
            other => Err(sqlstate::error(
                sqlstate::INTERNAL_ERROR,
                format!("not a cursor statement: {other}"),
            )),
        }
    }

    /// One statement of a simple query: its response, or the error that
    /// ends the query there.
    async fn simple_statement<C>(
        &self,
        client: &mut C,
        statement: Statement,
        cancel: &CancelSlot,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let started = Instant::now();
        let text = statement.to_string();
        match statement::kind(&statement) {
            Kind::Refused(message) => {
                metrics::refused(label(client, &text), started, &message);
                Err(statement::refusal(message))
            }
            Kind::Discard => Ok(Self::discard(client, &statement)),
            Kind::Acknowledge(tag) => Ok(Response::Execution(Tag::new(tag))),
            Kind::Cursor => {
                self.cursor(
                    client,
                    &statement,
                    &ParamValues::List(vec![]),
                    &Format::UnifiedText,
                    &text,
                )
                .await
            }
            Kind::Session => {
                if let Some(response) = settings::set_search_path(client, &statement).await {
                    return response;
                }
                if let Some(response) = settings::set_time_zone(client, &statement).await {
                    return response;
                }
                if let Some(response) =
                    settings::set_branch(client, &statement, self.lake.catalog()).await
                {
                    return response;
                }
                if let Some(response) = settings::show(client, &statement) {
                    return Ok(response);
                }
                end_transaction(client, &statement);
                // Settings made by an earlier statement of this query count.
                let session = session_for(&self.lake, client).await?;
                let mut answered = None;
                for hook in &self.hooks {
                    answered = hook
                        .handle_simple_query(&statement, session.context(), client)
                        .await;
                    if answered.is_some() {
                        break;
                    }
                }
                answered.unwrap_or_else(|| {
                    Err(sqlstate::error(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!("{text}: not supported"),
                    ))
                })
            }
            Kind::Query => {
                let label = label(client, &text);
                let response = self
                    .execute(
                        client,
                        statement,
                        &Format::UnifiedText,
                        label,
                        started,
                        cancel,
                    )
                    .await?;
                Ok(Response::Query(response))
            }
        }
    }

    /// `DISCARD ALL`: the connection's settings go back to their defaults.
    fn discard<C: HookClient + ?Sized>(client: &mut C, statement: &Statement) -> Response {
        let tag = match statement {
            Statement::Reset(_) => "RESET",
            _ => "DISCARD ALL",
        };
        for key in [
            SEARCH_PATH,
            TIME_ZONE,
            STATEMENT_TIMEOUT_MS,
            settings::BRANCH,
        ] {
            client.metadata_mut().remove(key);
        }
        client.portal_store().clear_portals();
        if let Some(cursors) = client.session_extensions().get::<Cursors>() {
            let _ = cursors.close(None);
        }
        Response::Execution(Tag::new(tag))
    }
}

/// A query ready to run: its kept result, or its plan.
// One per statement, moved once: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Prepared {
    Reused(GuardedStream),
    Planned(Planned),
}

/// A planned query, not started: it starts when its rows are first wanted.
struct Planned {
    lake: QueryLake,
    shutdown: tokio::sync::watch::Receiver<bool>,
    session: LakeSession,
    plan: LogicalPlan,
    key: CacheKey,
    /// What it reads, if its result may be kept ([`QueryLake::reusable`]).
    reads: Option<crate::result_cache::Reads>,
    label: QueryLabel,
    /// What is left of the query's time limit; it runs from the start.
    limit: Duration,
}

impl Planned {
    /// Start the plan on the query runtime (DataFusion spawns its partitions
    /// there); its rows kept for reuse when it may be.
    async fn start(self) -> PgWireResult<GuardedStream> {
        let started = Instant::now();
        let Planned {
            lake,
            shutdown,
            session,
            plan,
            key,
            reads,
            label,
            limit,
        } = self;
        let runtime_lake = lake.clone();
        let context = session.context().clone();
        let batches = lake
            .runtime()
            .run(limit, async move {
                let frame = context.execute_logical_plan(plan).await?;
                let batches = runtime_lake.runtime().execute(frame).await?;
                Ok(runtime_lake.keep(key, reads, batches))
            })
            .await
            .map_err(|e| {
                metrics::refused(label.clone(), started, &e.to_string());
                refusal(&e)
            })?;
        Ok(GuardedStream::new(batches, label, started, limit)
            .with_shutdown(shutdown)
            .with_in_flight(lake.in_flight())
            .with_session(session))
    }
}

/// `COMMIT` and `ROLLBACK` close the transaction's cursors.
fn end_transaction(client: &(dyn ClientInfo + Send + Sync), statement: &Statement) {
    if matches!(
        statement,
        Statement::Commit { .. } | Statement::Rollback { .. }
    ) {
        if let Some(cursors) = client.session_extensions().get::<Cursors>() {
            cursors.end_transaction();
        }
    }
}

/// Bind a portal's values into `statement` as literals
/// ([`crate::params::bind_literals`]: they keep the client's type).
fn bind(statement: &mut Statement, params: &ParamValues) -> PgWireResult<()> {
    if let ParamValues::List(values) = params {
        let values: Vec<_> = values.iter().map(|v| v.value.clone()).collect();
        crate::params::bind_literals(statement, &values)?;
    }
    Ok(())
}

fn label(client: &(dyn ClientInfo + Send + Sync), sql: &str) -> QueryLabel {
    QueryLabel::new(
        Protocol::Pg,
        client.metadata().get(USER).cloned().unwrap_or_default(),
        sql,
    )
}

/// A fresh session and `statement` planned in it (for the query runtime: our
/// errors travel as DataFusion's external errors, see [`refusal`]).
pub(super) async fn session_and_plan(
    lake: &QueryLake,
    settings: &SessionSettings,
    statement: Statement,
) -> datafusion::error::Result<(LakeSession, LogicalPlan)> {
    let external =
        |e: crate::error::ServeError| datafusion::error::DataFusionError::External(Box::new(e));
    let session = lake.session(settings).await.map_err(external)?;
    let plan = lake::plan(&session, statement).await.map_err(external)?;
    Ok((session, plan))
}

/// The response for a query that failed before its first row: our own
/// errors (wrapped to cross the query runtime) keep their SQLSTATE.
pub(super) fn refusal(e: &datafusion::error::DataFusionError) -> PgWireError {
    if let datafusion::error::DataFusionError::External(inner) = e {
        if let Some(serve) = inner.downcast_ref::<crate::error::ServeError>() {
            return sqlstate::from_serve(serve);
        }
    }
    sqlstate::from_datafusion(e)
}

/// Give the streams of a request the connection's cancel signal. pgwire
/// races the handler with the signal until the handler returns, so this must
/// be the handler's last await (a fresh `start_query` ends pgwire's race).
async fn fill_cancel(client: &(dyn ClientInfo + Send + Sync), cancel: &CancelSlot) {
    if let Some(handle) = client.session_extensions().get::<Arc<ConnectionHandle>>() {
        cancel.fill(handle.start_query().await);
    }
}

/// A row description and the rows of `batches`, encoded for the client.
fn rows_response<S>(
    client: &(dyn ClientInfo + Send + Sync),
    schema: &datafusion::arrow::datatypes::SchemaRef,
    format: &Format,
    batches: S,
) -> PgWireResult<QueryResponse>
where
    S: futures::Stream<
            Item = datafusion::error::Result<datafusion::arrow::record_batch::RecordBatch>,
        > + Send
        + 'static,
{
    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    let fields = Arc::new(arrow_schema_to_pg_fields(schema, format, Some(options))?);
    let row_fields = fields.clone();
    let rows = batches
        .map(move |batch| {
            let rows: Vec<PgWireResult<_>> = match batch {
                Ok(batch) => match encode::encode_batch(&row_fields, &batch) {
                    Ok(rows) => rows.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                },
                Err(e) => vec![Err(sqlstate::from_datafusion(&e))],
            };
            stream::iter(rows)
        })
        .flatten();
    Ok(QueryResponse::new(fields, rows))
}

/// A plan that only describes `schema` (for `Describe` of a cursor and its
/// `FETCH`es).
pub(super) fn described_as(
    schema: datafusion::arrow::datatypes::SchemaRef,
) -> PgWireResult<LogicalPlan> {
    let schema =
        DFSchema::try_from(schema.as_ref().clone()).map_err(|e| sqlstate::from_datafusion(&e))?;
    Ok(LogicalPlan::EmptyRelation(
        datafusion::logical_expr::EmptyRelation {
            produce_one_row: false,
            schema: Arc::new(schema),
        },
    ))
}

/// The session settings of a connection, from its metadata.
pub(super) fn settings(client: &(dyn ClientInfo + Send + Sync)) -> SessionSettings {
    SessionSettings {
        default_schema: client
            .metadata()
            .get(SEARCH_PATH)
            .and_then(|path| first_schema(path)),
        time_zone: client.metadata().get(TIME_ZONE).cloned(),
        branch: client
            .metadata()
            .get(settings::BRANCH)
            .filter(|b| *b != icefjord_catalog::MAIN)
            .cloned(),
    }
}

/// The first schema of a `search_path` that the lake has (`"$user"` and
/// `pg_catalog` skipped, as PostgreSQL skips schemas that do not exist).
fn first_schema(search_path: &str) -> Option<String> {
    search_path
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .find(|s| !s.is_empty() && s != "$user" && s != "pg_catalog")
}

/// The connection's `statement_timeout`, capped by the server's limit.
pub(super) fn timeout(lake: &QueryLake, client: &(dyn ClientInfo + Send + Sync)) -> Duration {
    let limit = lake.limits().timeout;
    client
        .metadata()
        .get(STATEMENT_TIMEOUT_MS)
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis)
        .map_or(limit, |asked| asked.min(limit))
}

pub(super) async fn session_for(
    lake: &QueryLake,
    client: &(dyn ClientInfo + Send + Sync),
) -> PgWireResult<LakeSession> {
    lake.session(&settings(client))
        .await
        .map_err(|e| sqlstate::from_serve(&e))
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let started = Instant::now();
        let statements = self.parser.statements.parse(query).inspect_err(|e| {
            metrics::refused(label(client, query), started, &e.to_string());
        })?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        let cancel = CancelSlot::default();
        for statement in statements {
            // As PostgreSQL: the results before an error are sent, then the
            // error, and the statements after it do not run.
            match self.simple_statement(client, statement, &cancel).await {
                Ok(response) => responses.push(response),
                Err(PgWireError::UserError(info)) => {
                    responses.push(Response::Error(info));
                    break;
                }
                Err(e) if responses.is_empty() => return Err(e),
                Err(e) => {
                    responses.push(Response::Error(Box::new(ErrorInfo::new(
                        "ERROR".to_owned(),
                        sqlstate::INTERNAL_ERROR.to_owned(),
                        e.to_string(),
                    ))));
                    break;
                }
            }
        }
        fill_cancel(client, &cancel).await;
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = PgStatement;
    type QueryParser = LakeQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    /// A whole query portal streams ([`super::portal`]).
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        super::portal::execute(self, client, message).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let started = Instant::now();
        let (sql, parsed) = &portal.statement.statement;
        let Some((statement, described)) = parsed else {
            return Ok(Response::EmptyQuery);
        };
        // The client's declared type wins; the type we described stands in
        // for the rest (the client may send those in binary, in that type).
        // Every value the client sent (a cursor's `DECLARE` describes none).
        let mut inferred = parameter_types(described)?;
        inferred.resize(inferred.len().max(portal.parameters.len()), None);
        let types: Vec<Option<DataType>> = inferred
            .into_iter()
            .enumerate()
            .map(|(i, inferred)| {
                let declared = portal
                    .statement
                    .parameter_types
                    .get(i)
                    .is_some_and(Option::is_some);
                // Undeclared and not inferred: text, as PostgreSQL reads an
                // `unknown` literal (arrow-pg's own guess turns '{…}' into a
                // list and drops a NULL).
                if declared {
                    None
                } else {
                    Some(inferred.unwrap_or(DataType::Utf8))
                }
            })
            .collect();
        let params = deserialize_parameters(
            portal,
            &types.iter().map(Option::as_ref).collect::<Vec<_>>(),
        )?;
        match statement::kind(statement) {
            Kind::Refused(message) => {
                metrics::refused(label(client, sql), started, &message);
                Err(statement::refusal(message))
            }
            Kind::Discard => Ok(Self::discard(client, statement)),
            Kind::Acknowledge(tag) => Ok(Response::Execution(Tag::new(tag))),
            Kind::Cursor => {
                self.cursor(
                    client,
                    statement,
                    &params,
                    &portal.result_column_format,
                    sql,
                )
                .await
            }
            Kind::Session => {
                if let Some(response) = settings::set_search_path(client, statement).await {
                    return response;
                }
                if let Some(response) = settings::set_time_zone(client, statement).await {
                    return response;
                }
                if let Some(response) =
                    settings::set_branch(client, statement, self.lake.catalog()).await
                {
                    return response;
                }
                if let Some(response) = settings::show(client, statement) {
                    return Ok(response);
                }
                end_transaction(client, statement);
                let session = session_for(&self.lake, client).await?;
                for hook in &self.hooks {
                    if let Some(response) = hook
                        .handle_extended_query(
                            statement,
                            described,
                            &params,
                            session.context(),
                            client,
                        )
                        .await
                    {
                        return response;
                    }
                }
                Err(sqlstate::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("{sql}: not supported"),
                ))
            }
            Kind::Query => {
                let label = label(client, sql);
                let mut statement = statement.clone();
                bind(&mut statement, &params)?;
                let cancel = CancelSlot::default();
                let response = self
                    .execute(
                        client,
                        statement,
                        &portal.result_column_format,
                        label,
                        started,
                        &cancel,
                    )
                    .await?;
                fill_cancel(client, &cancel).await;
                Ok(Response::Query(response))
            }
        }
    }
}

/// The parameter types of a plan, `$1` first (DataFusion's inference; `None`
/// where it has none and the client's declared type is used).
pub(super) fn parameter_types(plan: &LogicalPlan) -> PgWireResult<Vec<Option<DataType>>> {
    crate::params::positional_types(plan).map_err(|e| sqlstate::from_datafusion(&e))
}
