//! Execute of a whole portal (`max_rows = 0`), streamed.
//!
//! pgwire's default Execute fetches a portal's rows into a `Vec` and only then
//! sends them: for `max_rows = 0`, what psycopg, pgjdbc in autocommit and
//! Npgsql send for every query, a result of any size was held in server
//! memory, outside the query's memory pool, before its first row left.
//!
//! # Invariants
//! - A query portal executed whole sends each `DataRow` as it is encoded,
//!   then `CommandComplete` with the row count, as PostgreSQL does; the
//!   portal is then finished (a later Execute answers zero rows).
//! - The cancel request stops it while it plans (the same race as pgwire's)
//!   and while it streams (the handler hands the signal to the row stream).
//! - Everything else (a row limit, a portal already started, a statement
//!   that is not a query) goes through pgwire's own Execute.

use std::fmt::Debug;
use std::sync::Arc;

use futures::future::{select, Either};
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::portal::PortalExecutionState;
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::DEFAULT_NAME;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionHandle, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::PgWireBackendMessage;

use super::handler::{PgStatement, QueryHandler};
use super::statement::{self, Kind};

/// Execute `message`: a whole query portal streamed, anything else as
/// pgwire does it.
pub async fn execute<C>(
    handler: &QueryHandler,
    client: &mut C,
    message: Execute,
) -> PgWireResult<()>
where
    C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::PortalStore: PortalStore<Statement = PgStatement>,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
    let portal = client.portal_store().get_portal(name);
    let whole_query = match &portal {
        Some(portal) if message.max_rows == 0 => {
            is_query(&portal.statement.statement)
                && matches!(*portal.state.lock().await, PortalExecutionState::Initial)
        }
        _ => false,
    };
    let Some(portal) = portal.filter(|_| whole_query) else {
        return handler._on_execute(client, message).await;
    };
    if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
        return Err(PgWireError::NotReadyForQuery);
    }
    client.set_state(PgWireConnectionState::QueryInProgress);
    let planned = match cancel_signal(client).await {
        Some(cancel) => match select(handler.do_query(client, &portal, 0), cancel).await {
            Either::Left((response, _)) => response,
            Either::Right(_) => Err(PgWireError::QueryCanceled),
        },
        None => handler.do_query(client, &portal, 0).await,
    }?;
    *portal.state.lock().await = PortalExecutionState::Finished;
    let Response::Query(mut response) = planned else {
        return Err(PgWireError::ApiError(
            "a query portal answered without rows".into(),
        ));
    };
    let tag = response.command_tag().to_owned();
    let mut rows = 0;
    while let Some(row) = response.data_rows().next().await {
        client.feed(PgWireBackendMessage::DataRow(row?)).await?;
        rows += 1;
    }
    client
        .send(PgWireBackendMessage::CommandComplete(
            Tag::new(&tag).with_rows(rows).into(),
        ))
        .await?;
    client.set_state(PgWireConnectionState::ReadyForQuery);
    Ok(())
}

fn is_query(statement: &PgStatement) -> bool {
    matches!(&statement.1, Some((statement, _)) if matches!(statement::kind(statement), Kind::Query))
}

/// A fresh cancel receiver for this connection (pgwire's own race).
async fn cancel_signal<C: ClientInfo>(
    client: &C,
) -> Option<futures::channel::oneshot::Receiver<()>> {
    let handle = client.session_extensions().get::<Arc<ConnectionHandle>>()?;
    Some(handle.start_query().await)
}
