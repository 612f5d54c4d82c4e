//! `icefjord ingest`: one topic into one table, exactly once.
//!
//! # Protocol (see also [`crate::offsets`])
//!
//! 1. On start the table's stored offsets are read; every partition the group
//!    assigns starts there (or at the beginning when the table holds none). Each
//!    stored offset must lie within the broker's log, on start and on every
//!    assignment; a recreated topic or records lost to retention stop the sink
//!    (see [`position`], also for `--reset-offsets`).
//! 2. Records are accepted per partition strictly after the last accepted offset;
//!    anything at or below it (a refetch after a seek or rebalance) is skipped, so a
//!    batch never holds a record twice.
//! 3. A batch closes on time, rows or bytes. Its good rows go to the table and its
//!    bad records to `<table>_dlq` (tombstones are counted and skipped), in ONE
//!    commit that also stores the merged
//!    offsets, guarded by the offset fence: it lands only if the table still holds
//!    each partition's batch start.
//! 4. A closed batch is decoded, written and committed in the background while the
//!    next one fills. At most one batch is in flight, and it is settled before the
//!    next is sealed, before a rebalance is handled, when idle and at shutdown:
//!    commits land in offset order, so each batch's fence expects exactly what its
//!    predecessor stored.
//! 5. A refused commit (another writer moved a partition, or evolved the schema in
//!    a way this batch's schema does not extend) drops the batch and the open one
//!    that continues it, re-reads the table's offsets (and schema) and seeks
//!    there. Lost compare-and-swaps and ambiguous
//!    outcomes are retried and reconciled inside the commit path (same commit id;
//!    found in the history = already landed). A failure it cannot resolve (catalog
//!    or storage down) stops the sink with a retryable error (exit code 3); the
//!    next start resumes from the table's offsets, so nothing is lost or doubled.
//! 6. Kafka group offsets are committed after the table commit, for lag monitoring
//!    only; the sink never reads them back as truth.
//!
//! A crash at any point loses only uncommitted work, which is re-read from the
//! table's offsets on restart.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::datatypes::Schema;
use futures::{FutureExt, StreamExt};
use iceberg::TableIdent;
use icefjord_catalog::{CommitId, LakeCatalog};
use icefjord_engine::schema::EventSchema;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

use crate::decode::{self, EventDecoder, Evolution};
use crate::error::{Result, SinkError};
use crate::kafka::{Assignment, KafkaSettings, SinkContext};
use crate::offsets::Span;
use crate::record::{ByteArena, SourceRecord};

mod commit;
mod position;
mod run;

use run::Run;

pub use position::{ResetOffsets, ResetTo, RESET_PROPERTY};

/// Consumer settings the exactly-once protocol depends on; not overridable.
pub const PROTECTED_CONSUMER_SETTINGS: [&str; 4] = [
    "enable.auto.commit",
    "auto.offset.reset",
    "isolation.level",
    "enable.auto.offset.store",
];

/// The most records a new batch reserves room for (see [`Run::accept`]).
const MAX_PREALLOCATED_ROWS: usize = 1 << 20;

/// At most this many already-fetched records are taken between two checks of the
/// clock, the batch interval and the shutdown signal.
const BURST: usize = 1024;

/// Consumer settings for throughput, overridable with `--consumer-property`:
/// - fetch up to 8 MiB per partition (librdkafka's default is 1 MiB), and do not
///   let a broker hold a fetch longer than 100 ms when it has less to give;
/// - keep prefetching while the sink is busy committing: librdkafka stops at
///   `queued.min.messages` (100 000 by default) and then waits
///   `fetch.queue.backoff.ms` (1 s) before it fetches again, which left a sink
///   that had just committed a batch idle for a second. The prefetch is bounded
///   by `queued.max.messages.kbytes` instead: 16 MiB (librdkafka's 64 MiB bought
///   no throughput here and cost ~150 MiB of peak RSS).
pub const DEFAULT_CONSUMER_SETTINGS: [(&str, &str); 6] = [
    ("max.partition.fetch.bytes", "8388608"),
    ("fetch.max.bytes", "67108864"),
    ("fetch.wait.max.ms", "100"),
    ("queued.min.messages", "1000000"),
    ("queued.max.messages.kbytes", "16384"),
    ("fetch.queue.backoff.ms", "20"),
];

/// How long a crashed sink holds its partitions, unless set otherwise.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the consumer-lag gauges are refreshed.
const LAG_UPDATE_EVERY: Duration = Duration::from_secs(5);

/// How often an idle `--until-idle` sink asks whether the topic is fully ingested.
const DRAIN_CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long `--until-idle` waits for the group to assign partitions at all.
const ASSIGNMENT_WAIT: Duration = Duration::from_secs(60);

/// When a batch closes: whichever limit is reached first.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub interval: Duration,
    pub rows: usize,
    pub bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            rows: 500_000,
            bytes: 256 * 1024 * 1024,
        }
    }
}

/// How the sink gets its partitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Assign {
    /// Join the consumer group; the group spreads partitions over its members.
    #[default]
    Group,
    /// Read every partition of the topic without joining the group (one sink per
    /// topic, e.g. a scheduled `--until-idle` step). Positions still come from the
    /// table, and the offset fence still refuses a second writer's batches.
    All,
}

impl std::str::FromStr for Assign {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "group" => Ok(Self::Group),
            "all" => Ok(Self::All),
            other => Err(format!("unknown assignment {other:?} (group or all)")),
        }
    }
}

/// One topic → one table.
#[derive(Clone, Debug)]
pub struct Route {
    pub topic: String,
    pub table: TableIdent,
    pub schema: EventSchema,
    pub group: String,
    /// New keys become optional columns and `int`/`float` columns widen, instead
    /// of being ignored / dead-lettered (see [`crate::decode`]).
    pub evolve_schema: bool,
}

/// What a run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct IngestReport {
    pub topic: String,
    pub table: String,
    pub consumed: u64,
    pub written: u64,
    pub dead_lettered: u64,
    /// Records without a value (tombstones): skipped, neither rows nor dead
    /// letters, their offsets stored all the same.
    pub tombstones: u64,
    pub commits: u64,
    pub refused_commits: u64,
    /// Commits that also changed the table's schema (schema evolution).
    pub schema_changes: u64,
}

/// A progress snapshot, handed to the observer of [`Ingest::with_progress`] about
/// once a second.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub consumed: u64,
    pub written: u64,
    pub dead_lettered: u64,
    /// Records consumed per second since the previous snapshot.
    pub records_per_second: f64,
    /// Records in the topic not yet in the table (assigned partitions).
    pub lag: i64,
}

/// Receives [`Progress`] snapshots (e.g. a terminal progress line).
pub type ProgressObserver = Box<dyn Fn(&Progress) + Send + Sync>;

/// The sink. Runs when [`Ingest::run`] is awaited.
pub struct Ingest {
    catalog: LakeCatalog,
    kafka: KafkaSettings,
    route: Route,
    limits: BatchLimits,
    until_idle: Option<Duration>,
    max_error_ratio: f64,
    session_timeout: Duration,
    consumer_properties: Vec<(String, String)>,
    assign: Assign,
    progress: Option<ProgressObserver>,
    reset_offsets: Option<ResetOffsets>,
    /// An emptied record buffer of a committed batch, for the next batch to fill:
    /// reusing it saves faulting in a fresh batch-sized buffer each time.
    spare_records: Mutex<Vec<SourceRecord>>,
}

#[derive(Clone, Copy, Debug)]
struct Cursor {
    /// Next offset to accept; `None`: the table holds none, accept from the start.
    next: Option<i64>,
    /// The first record must be exactly `next` (else seek there once).
    exact: bool,
}

/// Records of the open batch.
#[derive(Default)]
struct Batch {
    records: Vec<SourceRecord>,
    spans: BTreeMap<i32, Span>,
    bytes: usize,
    opened: Option<Instant>,
}

/// A closed batch on its way to the table, with the commit id minted for it
/// (reused by every attempt of the commit path).
struct Sealed {
    records: Vec<SourceRecord>,
    spans: BTreeMap<i32, Span>,
    commit_id: CommitId,
}

/// What committing a sealed batch came to.
enum Settled {
    Landed {
        spans: BTreeMap<i32, Span>,
        written: u64,
        dead: u64,
        /// Records without a value, skipped (not dead letters).
        tombstones: u64,
        evolution: Option<Evolution>,
        /// The commit id was already in the table (an earlier attempt landed).
        already_applied: bool,
        seconds: f64,
    },
    /// Nothing landed: another writer moved the offsets (fence) or, with
    /// `schema`, evolved the schema in a way this batch's schema does not extend.
    Refused { reason: String, schema: bool },
}

/// The commit of a sealed batch, running while the loop fills the next batch.
type InFlight<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Settled>> + Send + 'a>>;

impl Ingest {
    pub fn new(catalog: LakeCatalog, kafka: KafkaSettings, route: Route) -> Self {
        Self {
            catalog,
            kafka,
            route,
            limits: BatchLimits::default(),
            until_idle: None,
            max_error_ratio: 1.0,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            consumer_properties: Vec::new(),
            assign: Assign::Group,
            progress: None,
            reset_offsets: None,
            spare_records: Mutex::new(Vec::new()),
        }
    }

    /// Call `observer` with a progress snapshot about once a second.
    pub fn with_progress(mut self, observer: ProgressObserver) -> Self {
        self.progress = Some(observer);
        self
    }

    pub fn with_assign(mut self, assign: Assign) -> Self {
        self.assign = assign;
        self
    }

    /// Extra librdkafka consumer settings (e.g. `group.instance.id` for static
    /// membership, fetch sizes). Settings the protocol relies on
    /// ([`PROTECTED_CONSUMER_SETTINGS`]) are refused.
    pub fn with_consumer_property(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self> {
        let key = key.into();
        if PROTECTED_CONSUMER_SETTINGS.contains(&key.as_str()) {
            return Err(SinkError::Config {
                field: format!("--consumer-property {key}"),
                message: "the sink sets this itself (offsets live in the table)".into(),
            });
        }
        self.consumer_properties.push((key, value.into()));
        Ok(self)
    }
    pub fn with_limits(mut self, limits: BatchLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Exit once nothing arrived for `idle` and every assigned partition is drained.
    pub fn until_idle(mut self, idle: Option<Duration>) -> Self {
        self.until_idle = idle;
        self
    }

    pub fn with_max_error_ratio(mut self, ratio: f64) -> Self {
        self.max_error_ratio = ratio;
        self
    }

    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Before ingesting, move the stored position of `topic`'s partitions that lie
    /// outside the broker's log to its start or end, in a commit of its own (see
    /// [`ResetOffsets`]).
    pub fn with_reset_offsets(mut self, reset: Option<ResetOffsets>) -> Self {
        self.reset_offsets = reset;
        self
    }

    /// Run until idle (with `until_idle`) or until `shutdown` resolves; the open
    /// batch is committed before returning.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<IngestReport> {
        self.ensure_tables().await?;
        let assignment = Arc::new(Assignment::default());
        // With a reset the position may be lost: the reset below reads it.
        if self.reset_offsets.is_none() {
            *lock(&assignment.table_offsets) = self.stored_offsets().await?;
        }
        let mut config = self.kafka.client_config();
        if self.assign == Assign::Group {
            config.set("group.id", &self.route.group);
        } else {
            // Without a group the client needs an id of its own; nothing is committed
            // to Kafka (the table holds the offsets; lag is table vs. high watermark).
            config.set(
                "group.id",
                format!("{}-unmanaged-{}", self.route.group, uuid::Uuid::now_v7()),
            );
        }
        config
            .set("enable.auto.commit", "false")
            // Never skip or rewind silently: a position outside the log is an
            // error the loop reports (position.rs); new partitions are assigned
            // at their beginning explicitly.
            .set("auto.offset.reset", "error")
            .set("isolation.level", "read_committed")
            .set(
                "session.timeout.ms",
                self.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout.as_millis() / 5).max(100).to_string(),
            );
        for (key, value) in DEFAULT_CONSUMER_SETTINGS {
            config.set(key, value);
        }
        for (key, value) in &self.consumer_properties {
            config.set(key, value);
        }
        let consumer: StreamConsumer<SinkContext> = config.create_with_context(SinkContext {
            assignment: assignment.clone(),
        })?;
        if let Some(reset) = &self.reset_offsets {
            *lock(&assignment.table_offsets) = self.reset_offsets(&consumer, reset).await?;
        }
        // The stored positions must lie within the broker's log (position.rs).
        let stored = lock(&assignment.table_offsets).clone();
        self.check_logs(&consumer, self.topic_partitions(&consumer)?, &stored)?;
        match self.assign {
            Assign::Group => consumer.subscribe(&[&self.route.topic])?,
            Assign::All => self.assign_all(&consumer, &assignment).await?,
        }

        let mut run = Run {
            ingest: &self,
            decoder: self.decoder().await?,
            consumer: Arc::new(consumer),
            assignment,
            report: IngestReport {
                topic: self.route.topic.clone(),
                table: icefjord_catalog::display(&self.route.table),
                ..Default::default()
            },
            cursors: BTreeMap::new(),
            batch: Batch::default(),
            arena: ByteArena::default(),
            in_flight: None,
            topic_name: Arc::from(self.route.topic.as_str()),
            consumed_counter: crate::metrics::consumed(&self.route.topic),
        };
        let mut last_record = Instant::now();
        let mut last_drain_check: Option<Instant> = None;
        let mut last_lag_update: Option<Instant> = None;
        let mut lag = 0;
        let mut last_progress = (Instant::now(), 0u64);
        let started = Instant::now();
        // Members that died without leaving hold partitions until their session ends.
        let assignment_wait = ASSIGNMENT_WAIT.max(self.session_timeout * 3);
        tokio::pin!(shutdown);
        let tick = Duration::from_millis(200);
        // Messages borrow the consumer; this handle keeps that borrow off `run`.
        let consumer = run.consumer.clone();
        // One stream for the whole run (each `recv()` would register a waker anew).
        let mut messages = consumer.stream();
        loop {
            if run.assignment.changed.swap(false, Ordering::SeqCst) {
                run.rebalanced().await?;
            }
            let message = tokio::select! {
                biased;
                _ = &mut shutdown => {
                    run.flush(true).await?;
                    return Ok(run.report);
                }
                settled = Run::landed(&mut run.in_flight) => {
                    run.settle(settled?).await?;
                    continue;
                }
                m = tokio::time::timeout(tick, messages.next()) => m,
            };
            match message {
                Ok(Some(Ok(m))) => {
                    run.accept(&m)?;
                    // Take what librdkafka already fetched without waiting: the
                    // checks below then run once per burst, not once per record.
                    for _ in 1..BURST {
                        if run.batch_full() {
                            break;
                        }
                        match messages.next().now_or_never() {
                            Some(Some(Ok(m))) => run.accept(&m)?,
                            Some(Some(Err(e)))
                                if e.rdkafka_error_code()
                                    == Some(RDKafkaErrorCode::AutoOffsetReset) =>
                            {
                                run.position_lost(&e)?;
                                break;
                            }
                            Some(Some(Err(e))) => {
                                tracing::warn!(error = %e, "kafka consumer error");
                                break;
                            }
                            Some(None) | None => break,
                        }
                    }
                    last_record = Instant::now();
                }
                Ok(Some(Err(e)))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) =>
                {
                    run.position_lost(&e)?;
                }
                Ok(Some(Err(e))) => tracing::warn!(error = %e, "kafka consumer error"),
                Ok(None) | Err(_) => {}
            }
            if run.batch_due() {
                run.flush(false).await?;
            }
            if last_lag_update.is_none_or(|t| t.elapsed() >= LAG_UPDATE_EVERY) {
                last_lag_update = Some(Instant::now());
                lag = run.update_lag();
            }
            if let Some(observer) = &self.progress {
                let elapsed = last_progress.0.elapsed().as_secs_f64();
                if elapsed >= 1.0 {
                    observer(&Progress {
                        consumed: run.report.consumed,
                        written: run.report.written,
                        dead_lettered: run.report.dead_lettered,
                        records_per_second: (run.report.consumed - last_progress.1) as f64
                            / elapsed,
                        lag,
                    });
                    last_progress = (Instant::now(), run.report.consumed);
                }
            }
            if let Some(idle) = self.until_idle {
                let wait = idle.max(assignment_wait);
                // Only when idle: asking librdkafka for the assignment is not free.
                if last_record.elapsed() >= idle
                    && started.elapsed() >= wait
                    && run.consumer.assignment()?.count() == 0
                {
                    return Err(SinkError::NoAssignment {
                        exists: self.topic_exists(&run.consumer)?,
                        topic: self.route.topic.clone(),
                        group: self.route.group.clone(),
                        waited: wait,
                    });
                }
                if last_record.elapsed() >= idle
                    && last_drain_check.is_none_or(|t| t.elapsed() >= DRAIN_CHECK_EVERY)
                {
                    last_drain_check = Some(Instant::now());
                    run.flush(true).await?;
                    run.commit_positions();
                    if self.drained(&run.consumer).await? {
                        return Ok(run.report);
                    }
                }
            }
        }
    }

    /// A decoder for the table's current event columns.
    async fn decoder(&self) -> Result<EventDecoder> {
        let events = self.event_schema().await?;
        if let Some(field) = decode::column_outside_the_rules(&events) {
            return Err(SinkError::UnsupportedColumn {
                table: icefjord_catalog::display(&self.route.table),
                column: field.name().clone(),
                data_type: field.data_type().to_string(),
            });
        }
        Ok(EventDecoder::new(events).with_schema_evolution(self.route.evolve_schema))
    }

    /// The table's event columns as the decoder's schema
    /// (`icefjord_engine::schema::producer_schema`: a renamed column keeps the
    /// producer's key, the writer puts it back in place).
    async fn event_schema(&self) -> Result<Arc<Schema>> {
        let table = self.catalog.load(&self.route.table).await?;
        Ok(icefjord_engine::schema::producer_schema(
            table.metadata(),
            self.route.schema.fields.iter().map(|f| f.name.as_str()),
        )?)
    }

    /// Assign every partition of the topic, each at the table's stored offset.
    async fn assign_all(
        &self,
        consumer: &StreamConsumer<SinkContext>,
        assignment: &Assignment,
    ) -> Result<()> {
        let deadline = Instant::now() + ASSIGNMENT_WAIT;
        let partitions = loop {
            let partitions = self.topic_partitions(consumer)?;
            if !partitions.is_empty() {
                break partitions;
            }
            if Instant::now() >= deadline {
                return Err(SinkError::NoAssignment {
                    exists: false,
                    topic: self.route.topic.clone(),
                    group: self.route.group.clone(),
                    waited: ASSIGNMENT_WAIT,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let stored = lock(&assignment.table_offsets).clone();
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            let offset = stored
                .get(&p)
                .map_or(Offset::Beginning, |&o| Offset::Offset(o));
            tpl.add_partition_offset(&self.route.topic, p, offset)?;
        }
        consumer.assign(&tpl)?;
        assignment.changed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
