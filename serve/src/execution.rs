//! One query's life after planning, the same for every front door: its record
//! batches stream to the client under a deadline and a cancel signal, and when
//! the stream ends (all rows sent, an error, a cancel or the deadline) the query
//! is counted in the metrics and logged once.
//!
//! The deadline and the cancel cover the whole stream, not only planning:
//! DataFusion does its work while the batches are polled, so a long query is
//! stopped where it spends its time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::physical_plan::SendableRecordBatchStream;
use std::sync::{Arc, OnceLock};

use futures::channel::oneshot;
use futures::future::Shared;
use futures::{FutureExt, Stream};

use crate::metrics::{Outcome, Protocol, QueryRecord};

/// Why a query was stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    /// The client asked (PostgreSQL cancel request, HTTP client gone).
    #[error("canceling statement due to user request")]
    Canceled,
    /// The query ran past its time limit.
    #[error("canceling statement due to statement timeout")]
    Timeout,
    /// The server is shutting down and the grace period ended.
    #[error("terminating connection due to administrator command")]
    Shutdown,
}

impl Stopped {
    /// The `Stopped` inside a DataFusion error, if that is what ended a query.
    pub fn of(error: &DataFusionError) -> Option<Stopped> {
        match error {
            DataFusionError::External(e) => e.downcast_ref::<Stopped>().copied(),
            DataFusionError::Context(_, inner) => Stopped::of(inner),
            DataFusionError::Shared(inner) => Stopped::of(inner),
            _ => None,
        }
    }
}

/// Where query plans run: a multi-thread runtime of its own, so that a long
/// poll of a plan (a join producing from buffered input can compute for
/// seconds without yielding) never holds the threads that serve connections,
/// and a cancel is answered at once (DataFusion's `thread_pools` example).
pub struct QueryRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

/// Stack of a query thread. DataFusion's planner, analyzer and optimizer
/// recurse once per expression level; 2 MiB (tokio's default) overflowed at
/// about 180 chained `+` (a debug build) and took the whole server down.
pub const QUERY_THREAD_STACK: usize = 64 << 20;

impl QueryRuntime {
    pub fn new() -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_stack_size(QUERY_THREAD_STACK)
            .thread_name("icefjord-query")
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Run `work` (a query's planning, say) on the query runtime, for at most
    /// `limit`: past it the work is dropped and the error is
    /// [`Stopped::Timeout`]. The calling task only waits, so a planner that
    /// computes for seconds holds no connection thread.
    pub async fn run<T: Send + 'static>(
        &self,
        limit: Duration,
        work: impl Future<Output = DfResult<T>> + Send + 'static,
    ) -> DfResult<T> {
        let Some(runtime) = self.runtime.as_ref() else {
            return work.await;
        };
        let (tx, rx) = oneshot::channel();
        let _task = AbortOnDrop(runtime.spawn(async move {
            let _ = tx.send(work.await);
        }));
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(DataFusionError::Internal(
                "the query task ended without an answer".into(),
            )),
            Err(_) => Err(DataFusionError::External(Box::new(Stopped::Timeout))),
        }
    }

    /// Plan and run `frame` on the query runtime (DataFusion spawns its
    /// partitions' tasks where `execute_stream` is called, so that happens
    /// there too). The returned stream reads the batches through a small
    /// channel and stops the plan when dropped.
    pub async fn execute(&self, frame: DataFrame) -> DfResult<SendableRecordBatchStream> {
        let Some(runtime) = self.runtime.as_ref() else {
            return frame.execute_stream().await;
        };
        let (started_tx, started_rx) = futures::channel::oneshot::channel();
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let task = AbortOnDrop(runtime.spawn(async move {
            let mut plan_stream = match frame.execute_stream().await {
                Ok(stream) => {
                    let _ = started_tx.send(Ok(stream.schema()));
                    stream
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                    return;
                }
            };
            while let Some(batch) = futures::StreamExt::next(&mut plan_stream).await {
                if tx.send(batch).await.is_err() {
                    return; // the reader is gone
                }
            }
        }));
        let schema = started_rx
            .await
            .map_err(|_| DataFusionError::Internal("the query task ended early".into()))??;
        let batches = SpawnedBatches { rx, _task: task };
        Ok(Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, batches),
        ))
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // Dropping a runtime inside another one's task would panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct SpawnedBatches {
    rx: tokio::sync::mpsc::Receiver<DfResult<RecordBatch>>,
    _task: AbortOnDrop,
}

impl Stream for SpawnedBatches {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// The cancel signal of the statements of one client request, filled when the
/// request's handler is done (pgwire races the handler itself with the
/// connection's cancel signal, so the streams may only take the signal over
/// once the handler has returned).
#[derive(Clone, Default)]
pub struct CancelSlot(Arc<OnceLock<Shared<oneshot::Receiver<()>>>>);

impl CancelSlot {
    /// Hand the request's cancel receiver to every stream of the slot.
    pub fn fill(&self, cancel: oneshot::Receiver<()>) {
        let _ = self.0.set(cancel.shared());
    }

    fn get(&self) -> Option<Shared<oneshot::Receiver<()>>> {
        self.0.get().cloned()
    }
}

/// Who ran a query and how, for its metrics and log line.
#[derive(Clone, Debug)]
pub struct QueryLabel {
    pub protocol: Protocol,
    pub user: String,
    /// The SQL text, or the endpoint path for named HTTP endpoints.
    pub statement: String,
}

impl QueryLabel {
    /// Longest statement text kept for the log line, in characters.
    const MAX_STATEMENT: usize = 500;

    /// A label whose statement is cut to [`Self::MAX_STATEMENT`] characters.
    pub fn new(protocol: Protocol, user: impl Into<String>, statement: &str) -> Self {
        let statement = match statement.char_indices().nth(Self::MAX_STATEMENT) {
            Some((cut, _)) => format!("{}…", &statement[..cut]),
            None => statement.to_string(),
        };
        Self {
            protocol,
            user: user.into(),
            statement,
        }
    }
}

/// A record batch stream that stops on its deadline or cancel signal and
/// reports the query when it ends or is dropped.
pub struct GuardedStream {
    inner: SendableRecordBatchStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    cancel: Option<Shared<oneshot::Receiver<()>>>,
    cancel_slot: Option<CancelSlot>,
    shutdown: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    record: Option<QueryRecord>,
    in_flight: Option<crate::lake::InFlight>,
    /// The session the plan came from: its views are planned through it while
    /// the rows stream (e.g. `pg_class` reading every view's schema).
    session: Option<icefjord_engine::LakeSession>,
    done: bool,
}

impl GuardedStream {
    /// Guard `inner`, which started at `started`, for at most `timeout` in all.
    pub fn new(
        inner: SendableRecordBatchStream,
        label: QueryLabel,
        started: Instant,
        timeout: Duration,
    ) -> Self {
        let deadline = tokio::time::Instant::from_std(started) + timeout;
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            cancel: None,
            cancel_slot: None,
            shutdown: None,
            record: Some(QueryRecord::start(label, started)),
            in_flight: None,
            session: None,
            done: false,
        }
    }

    /// Keep `session` alive until the stream ends.
    pub fn with_session(mut self, session: icefjord_engine::LakeSession) -> Self {
        self.session = Some(session);
        self
    }

    /// Count the query as running until the stream ends.
    pub fn with_in_flight(mut self, in_flight: crate::lake::InFlight) -> Self {
        self.in_flight = Some(in_flight);
        self
    }

    /// Stop when the signal `slot` gets fires (a dropped sender is not a
    /// cancel).
    pub fn with_cancel(mut self, slot: CancelSlot) -> Self {
        self.cancel_slot = Some(slot);
        self
    }

    /// Stop when the server's shutdown grace period has ended.
    pub fn with_shutdown(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        self.shutdown = Some(Box::pin(async move {
            if shutdown.wait_for(|abort| *abort).await.is_err() {
                // The server is gone without an abort: never fire.
                std::future::pending::<()>().await;
            }
        }));
        self
    }

    pub fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.inner.schema()
    }

    fn finish(&mut self, outcome: Outcome, error: Option<String>) {
        self.done = true;
        if let Some(record) = self.record.take() {
            record.finish(outcome, error.as_deref());
        }
        self.in_flight = None;
        self.session = None;
    }

    fn stop(&mut self, why: Stopped) -> Poll<Option<DfResult<RecordBatch>>> {
        let outcome = match why {
            Stopped::Canceled => Outcome::Canceled,
            Stopped::Timeout => Outcome::Timeout,
            Stopped::Shutdown => Outcome::Error,
        };
        self.finish(outcome, Some(why.to_string()));
        Poll::Ready(Some(Err(DataFusionError::External(Box::new(why)))))
    }
}

impl Stream for GuardedStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.cancel.is_none() {
            if let Some(cancel) = self.cancel_slot.as_ref().and_then(CancelSlot::get) {
                self.cancel = Some(cancel);
                self.cancel_slot = None;
            }
        }
        if let Some(cancel) = self.cancel.as_mut() {
            match cancel.poll_unpin(cx) {
                Poll::Ready(Ok(())) => return self.stop(Stopped::Canceled),
                // The sender is gone: no cancel can come any more.
                Poll::Ready(Err(_)) => self.cancel = None,
                Poll::Pending => {}
            }
        }
        if let Some(shutdown) = self.shutdown.as_mut() {
            if shutdown.as_mut().poll(cx).is_ready() {
                return self.stop(Stopped::Shutdown);
            }
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return self.stop(Stopped::Timeout);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                if let Some(record) = self.record.as_mut() {
                    record.sent(&batch);
                }
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(Some(Err(e))) => {
                let outcome = if is_resources_exhausted(&e) {
                    Outcome::OverMemory
                } else {
                    Outcome::Error
                };
                self.finish(outcome, Some(e.to_string()));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.finish(Outcome::Ok, None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        // The client went away (or stopped reading) before the end.
        self.finish(
            Outcome::Canceled,
            Some("the client closed the stream".into()),
        );
    }
}

/// Whether a query failed because it went over its memory pool.
pub fn is_resources_exhausted(error: &DataFusionError) -> bool {
    match error {
        DataFusionError::ResourcesExhausted(_) => true,
        DataFusionError::Context(_, inner) => is_resources_exhausted(inner),
        DataFusionError::Shared(inner) => is_resources_exhausted(inner),
        DataFusionError::ArrowError(_, _) | DataFusionError::External(_) => {
            error.to_string().contains("Resources exhausted")
        }
        _ => false,
    }
}
