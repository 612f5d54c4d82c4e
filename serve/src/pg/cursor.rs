//! Server-side cursors: `DECLARE name CURSOR FOR query`, `FETCH [FORWARD] n
//! FROM name`, `CLOSE name` (what psycopg's named cursors and pgjdbc's fetch
//! size use to stream results larger than memory).
//!
//! # Invariants
//! - A cursor is the query's row stream, pulled as the client fetches: rows are
//!   produced on demand, never materialised, so a million-row cursor holds one
//!   batch at a time.
//! - `DECLARE` plans the query (a bad query fails there) and runs nothing; the
//!   first `FETCH` starts it, as in PostgreSQL, so unfetched cursors cost no
//!   CPU or memory. Its time limit counts from that `FETCH`.
//! - Cursors belong to their connection (its session extensions) and end with
//!   it, with `CLOSE`, with `DISCARD ALL`, or with the transaction (`COMMIT`,
//!   `ROLLBACK`) unless declared `WITH HOLD`. They scan forward only, as
//!   PostgreSQL's `NO SCROLL` cursors.
//! - `DECLARE` also leaves a portal of the cursor's name, so a client's
//!   `Describe` of that portal (psycopg does this) gets the cursor's columns;
//!   a `FETCH` is described with the same columns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{FetchDirection, Value};
use futures::future::BoxFuture;
use futures::StreamExt;
use pgwire::api::ClientInfo;
use pgwire::error::PgWireResult;

use super::sqlstate;
use crate::execution::GuardedStream;

/// Starts a cursor's query (at its first `FETCH`).
pub type Start = Box<dyn FnOnce() -> BoxFuture<'static, PgWireResult<GuardedStream>> + Send>;

/// One open cursor.
pub struct Cursor {
    schema: SchemaRef,
    /// The query's rows once started.
    rows: Option<GuardedStream>,
    /// What starts the query, until it is.
    start: Option<Start>,
    /// `WITH HOLD`: it outlives the transaction that declared it.
    hold: bool,
    /// Rows of a batch that the last `FETCH` did not take.
    pending: Option<RecordBatch>,
    /// The error that ended the query: every later `FETCH` reports it again
    /// (an ended stream would otherwise look like the end of the rows).
    failed: Option<String>,
}

impl Cursor {
    /// A cursor over rows already on their way.
    pub fn new(rows: GuardedStream) -> Self {
        Self {
            schema: rows.schema(),
            rows: Some(rows),
            start: None,
            hold: false,
            pending: None,
            failed: None,
        }
    }

    /// A cursor whose query `start` runs at the first `FETCH`, as
    /// PostgreSQL's `DECLARE` runs nothing.
    pub fn lazy(schema: SchemaRef, start: Start) -> Self {
        Self {
            schema,
            rows: None,
            start: Some(start),
            hold: false,
            pending: None,
            failed: None,
        }
    }

    /// Declared `WITH HOLD` (kept after `COMMIT` and `ROLLBACK`).
    pub fn holding(mut self, hold: bool) -> Self {
        self.hold = hold;
        self
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The rows, the query started if it was not.
    async fn rows(&mut self) -> PgWireResult<&mut GuardedStream> {
        if let Some(start) = self.start.take() {
            match start().await {
                Ok(rows) => self.rows = Some(rows),
                Err(e) => {
                    self.failed = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        self.rows
            .as_mut()
            .ok_or_else(|| sqlstate::error(sqlstate::INTERNAL_ERROR, "the cursor has no query"))
    }

    /// Up to `limit` rows (all that remain for `None`).
    async fn fetch(&mut self, limit: Option<usize>) -> PgWireResult<Vec<RecordBatch>> {
        if let Some(message) = &self.failed {
            return Err(sqlstate::error(
                sqlstate::INVALID_CURSOR_STATE,
                format!("the cursor's query failed: {message}"),
            ));
        }
        let mut out = Vec::new();
        let mut wanted = limit.unwrap_or(usize::MAX);
        while wanted > 0 {
            let batch = match self.pending.take() {
                Some(batch) => batch,
                None => match self.rows().await?.next().await {
                    Some(Ok(batch)) => batch,
                    Some(Err(e)) => {
                        self.failed = Some(e.to_string());
                        return Err(sqlstate::from_datafusion(&e));
                    }
                    None => break,
                },
            };
            if batch.num_rows() > wanted {
                out.push(batch.slice(0, wanted));
                self.pending = Some(batch.slice(wanted, batch.num_rows() - wanted));
                wanted = 0;
            } else {
                wanted -= batch.num_rows();
                out.push(batch);
            }
        }
        Ok(out)
    }
}

/// The open cursors of one connection.
#[derive(Default)]
pub struct Cursors {
    open: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Cursor>>>>,
}

impl Cursors {
    /// The cursors of `client`'s connection.
    pub fn of(client: &(dyn ClientInfo + Send + Sync)) -> Arc<Cursors> {
        client
            .session_extensions()
            .get_or_insert_with(Cursors::default)
    }

    fn get(&self, name: &str) -> PgWireResult<Arc<tokio::sync::Mutex<Cursor>>> {
        self.open
            .lock()
            .map_err(|_| sqlstate::error(sqlstate::INTERNAL_ERROR, "cursor table poisoned"))?
            .get(name)
            .cloned()
            .ok_or_else(|| {
                sqlstate::error(
                    sqlstate::INVALID_CURSOR_NAME,
                    format!("cursor \"{name}\" does not exist"),
                )
            })
    }

    /// The columns of cursor `name`.
    pub async fn schema(&self, name: &str) -> PgWireResult<SchemaRef> {
        Ok(self.get(name)?.lock().await.schema.clone())
    }

    /// Open `name`; an open cursor of that name is an error, as in PostgreSQL.
    pub fn declare(&self, name: &str, cursor: Cursor) -> PgWireResult<()> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| sqlstate::error(sqlstate::INTERNAL_ERROR, "cursor table poisoned"))?;
        if open.contains_key(name) {
            return Err(sqlstate::error(
                sqlstate::DUPLICATE_CURSOR,
                format!("cursor \"{name}\" already exists"),
            ));
        }
        open.insert(name.to_string(), Arc::new(tokio::sync::Mutex::new(cursor)));
        Ok(())
    }

    /// Rows of `name` as `direction` asks (forward only).
    pub async fn fetch(
        &self,
        name: &str,
        direction: &FetchDirection,
    ) -> PgWireResult<(SchemaRef, Vec<RecordBatch>)> {
        let limit = forward_count(direction)?;
        let cursor = self.get(name)?;
        let mut cursor = cursor.lock().await;
        let batches = cursor.fetch(limit).await?;
        Ok((cursor.schema.clone(), batches))
    }

    /// The transaction ended (`COMMIT`, `ROLLBACK`): its cursors close, as
    /// PostgreSQL closes every cursor not declared `WITH HOLD` (clients rely
    /// on it: psycopg sends no `CLOSE` for a named cursor after a commit).
    pub fn end_transaction(&self) {
        if let Ok(mut open) = self.open.lock() {
            open.retain(|_, cursor| cursor.try_lock().map_or(true, |cursor| cursor.hold));
        }
    }

    /// Close `name`, or every cursor for `None`.
    pub fn close(&self, name: Option<&str>) -> PgWireResult<()> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| sqlstate::error(sqlstate::INTERNAL_ERROR, "cursor table poisoned"))?;
        match name {
            None => open.clear(),
            Some(name) => {
                if open.remove(name).is_none() {
                    return Err(sqlstate::error(
                        sqlstate::INVALID_CURSOR_NAME,
                        format!("cursor \"{name}\" does not exist"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// How many rows a `FETCH` asks for (`None`: all); backward moves are refused.
fn forward_count(direction: &FetchDirection) -> PgWireResult<Option<usize>> {
    let count = |value: &Value| match value {
        Value::Number(n, _) => n.parse::<usize>().map_err(|_| {
            sqlstate::error(
                sqlstate::SYNTAX_ERROR,
                format!("FETCH count {n} is not a row count"),
            )
        }),
        other => Err(sqlstate::error(
            sqlstate::SYNTAX_ERROR,
            format!("FETCH count {other} is not a row count"),
        )),
    };
    match direction {
        FetchDirection::Next | FetchDirection::Forward { limit: None } => Ok(Some(1)),
        FetchDirection::Forward { limit: Some(v) } | FetchDirection::Count { limit: v } => {
            count(v).map(Some)
        }
        FetchDirection::All | FetchDirection::ForwardAll => Ok(None),
        _ => Err(sqlstate::error(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "cursor can only scan forward",
        )),
    }
}
