//! `icefjord ingest`: one topic into one table, exactly once.
//!
//! # Protocol (see also [`crate::offsets`])
//!
//! 1. On start the table's stored offsets are read; every partition the group
//!    assigns starts there (or at the beginning when the table holds none).
//! 2. Records are accepted per partition strictly after the last accepted offset;
//!    anything at or below it (a refetch after a seek or rebalance) is skipped, so a
//!    batch never holds a record twice.
//! 3. A batch closes on time, rows or bytes. Its good rows go to the table and its
//!    bad records to `<table>_dlq`, in ONE commit that also stores the merged
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

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, Schema};
use futures::{FutureExt, StreamExt};
use iceberg::spec::MAIN_BRANCH;
use iceberg::TableIdent;
use icefjord_catalog::{
    CatalogError, CommitId, LakeCatalog, SchemaEvolution, TableSpec, TableWrite,
};
use icefjord_engine::schema::{kafka_field_specs, EventSchema};
use icefjord_engine::TableWriter;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;

use crate::decode::{self, EventDecoder, Evolution};
use crate::error::{Result, SinkError};
use crate::kafka::{Assignment, KafkaSettings, SinkContext};
use crate::offsets::{self, OffsetFence, Span};
use crate::record::{ByteArena, SourceRecord};
use icefjord_catalog::protocol::keys;

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

    fn dlq_ident(&self) -> TableIdent {
        TableIdent::new(
            self.route.table.namespace().clone(),
            format!("{}_dlq", self.route.table.name()),
        )
    }

    async fn ensure_tables(&self) -> Result<()> {
        let schema = self.route.schema.clone();
        self.catalog
            .load_or_create(&self.route.table, || {
                let extra = kafka_field_specs();
                let iceberg = schema.iceberg_schema(&extra).map_err(engine_to_catalog)?;
                Ok(TableSpec {
                    partition_spec: Some(
                        schema.partition_spec(&iceberg).map_err(engine_to_catalog)?,
                    ),
                    schema: iceberg,
                    properties: Default::default(),
                })
            })
            .await?;
        self.catalog
            .load_or_create(&self.dlq_ident(), || {
                Ok(TableSpec {
                    schema: iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(
                        &decode::dead_letter_schema(),
                    )?,
                    partition_spec: None,
                    properties: Default::default(),
                })
            })
            .await?;
        Ok(())
    }

    /// Write `rows` as data files of `table` (not yet committed), with `schema`
    /// when the commit will evolve the table to it. Parquet encoding is CPU work:
    /// it runs as a task of its own, off the task that polls Kafka.
    async fn write(
        &self,
        table: &TableIdent,
        rows: RecordBatch,
        schema: Option<iceberg::spec::SchemaRef>,
    ) -> Result<Vec<iceberg::spec::DataFile>> {
        let catalog = self.catalog.clone();
        let table = table.clone();
        tokio::spawn(async move {
            let table = catalog.load(&table).await?;
            let mut writer = match schema {
                Some(schema) => TableWriter::for_schema(&table, schema).await?,
                None => TableWriter::new(&table).await?,
            };
            writer.write(rows).await?;
            Ok(writer.close().await?.0)
        })
        .await?
    }

    /// Decode, write and commit one sealed batch (see the module docs): its rows
    /// to the table and its dead letters to `<table>_dlq` in one commit, guarded
    /// by the offset fence.
    async fn commit_batch(&self, decoder: EventDecoder, sealed: Sealed) -> Result<Settled> {
        let route = &self.route;
        let Sealed {
            records,
            spans,
            commit_id,
        } = sealed;
        let consumed = records.len();
        // Decoding is CPU work: off the runtime's threads. Dropping the records
        // there too keeps their deallocation off the loop.
        let phase = Instant::now();
        let (decoded, mut records) = tokio::task::spawn_blocking(move || {
            let decoded = decoder.decode(&records);
            let mut records = records;
            records.clear();
            (decoded, records)
        })
        .await?;
        let decoded = decoded?;
        std::mem::swap(&mut *lock(&self.spare_records), &mut records);
        let decode_time = phase.elapsed();
        if let Some(first) = decoded.dead.first() {
            let ratio = decoded.dead.len() as f64 / consumed as f64;
            if ratio > self.max_error_ratio {
                return Err(SinkError::TooManyErrors {
                    topic: route.topic.clone(),
                    consumed,
                    dead: decoded.dead.len(),
                    ratio,
                    max: self.max_error_ratio,
                    partition: first.record.partition,
                    offset: first.record.offset,
                    error: first.error.clone(),
                });
            }
        }
        let fence = Arc::new(OffsetFence {
            group: route.group.clone(),
            topic: route.topic.clone(),
            spans: spans.clone(),
        });
        let schema = match &decoded.evolution {
            Some(evolution) => Some(self.evolved_schema(evolution).await?),
            None => None,
        };
        let written = decoded.rows.num_rows() as u64;
        let watermark = max_event_time(&decoded.rows);
        let mut main = TableWrite::append(
            route.table.clone(),
            self.write(&route.table, decoded.rows, schema.clone())
                .await?,
        )
        .with_guard(fence)
        .with_property(keys::WRITER, keys::writer::INGEST)
        .with_property(keys::KAFKA_RECORDS, consumed.to_string());
        if let Some(watermark) = watermark {
            main = main.with_property(keys::WATERMARK, watermark);
        }
        if let Some(schema) = schema {
            main = main.with_schema(schema);
        }
        let mut commit = self.catalog.commit(commit_id).with_write(main);
        if !decoded.dead.is_empty() {
            let files = self
                .write(
                    &self.dlq_ident(),
                    decode::dead_letter_batch(&decoded.dead)?,
                    None,
                )
                .await?;
            commit = commit.with_write(
                TableWrite::append(self.dlq_ident(), files)
                    .with_property(keys::WRITER, keys::writer::INGEST),
            );
        }
        let started = Instant::now();
        let write_time = phase.elapsed() - decode_time;
        let outcome = commit.execute().await;
        tracing::debug!(?decode_time, ?write_time, commit_time = ?started.elapsed(), "batch timings");
        match outcome {
            Ok(result) => Ok(Settled::Landed {
                spans,
                written,
                dead: decoded.dead.len() as u64,
                evolution: decoded.evolution,
                already_applied: result.already_applied,
                seconds: started.elapsed().as_secs_f64(),
            }),
            Err(CatalogError::Refused { reason, .. }) => Ok(Settled::Refused {
                reason,
                schema: false,
            }),
            Err(CatalogError::Conflict { reason, .. }) if decoded.evolution.is_some() => {
                Ok(Settled::Refused {
                    reason,
                    schema: true,
                })
            }
            Err(e) => {
                crate::metrics::commit_result(&icefjord_catalog::display(&route.table), "error");
                Err(e.into())
            }
        }
    }

    /// The table's schema with `evolution` applied (new ids above the table's
    /// last column id).
    async fn evolved_schema(&self, evolution: &Evolution) -> Result<iceberg::spec::SchemaRef> {
        let table = self.catalog.load(&self.route.table).await?;
        let metadata = table.metadata();
        let failed = |message: String| SinkError::SchemaEvolution {
            table: icefjord_catalog::display(&self.route.table),
            message,
        };
        let primitive = |name: &str, ty: &DataType| {
            iceberg::arrow::arrow_type_to_type(ty)
                .ok()
                .and_then(|t| t.as_primitive_type().cloned())
                .ok_or_else(|| failed(format!("column {name}: no Iceberg type for {ty}")))
        };
        let mut next = SchemaEvolution::new(metadata.current_schema(), metadata.last_column_id());
        for (name, ty) in &evolution.widened {
            next = next.promote(name, primitive(name, ty)?).map_err(failed)?;
        }
        for (name, ty) in &evolution.added {
            next = next
                .add_column(name, primitive(name, ty)?)
                .map_err(failed)?;
        }
        Ok(Arc::new(next.build().map_err(failed)?))
    }

    async fn stored_offsets(&self) -> Result<BTreeMap<i32, i64>> {
        let table = self.catalog.load(&self.route.table).await?;
        Ok(offsets::stored(
            table.metadata(),
            &icefjord_catalog::display(&self.route.table),
            MAIN_BRANCH,
            &self.route.group,
            &self.route.topic,
        )?)
    }

    /// Run until idle (with `until_idle`) or until `shutdown` resolves; the open
    /// batch is committed before returning.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<IngestReport> {
        self.ensure_tables().await?;
        let assignment = Arc::new(Assignment::default());
        *lock(&assignment.table_offsets) = self.stored_offsets().await?;
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
            .set("auto.offset.reset", "earliest")
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
                            Some(Some(Err(e))) => {
                                tracing::warn!(error = %e, "kafka consumer error");
                                break;
                            }
                            Some(None) | None => break,
                        }
                    }
                    last_record = Instant::now();
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
                    if self.drained(&run.consumer).await? {
                        return Ok(run.report);
                    }
                }
            }
        }
    }

    /// A decoder for the table's current event columns.
    async fn decoder(&self) -> Result<EventDecoder> {
        Ok(EventDecoder::new(self.event_schema().await?)
            .with_schema_evolution(self.route.evolve_schema))
    }

    /// The table's event columns (without `_kafka_*`), as the decoder's schema. A
    /// column renamed since the route's event schema named it keeps the producer's
    /// key (`icefjord_catalog::writer_columns`); the writer puts it back in place.
    async fn event_schema(&self) -> Result<Arc<Schema>> {
        let table = self.catalog.load(&self.route.table).await?;
        let arrow = iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())
            .map_err(CatalogError::from)?;
        let producer = icefjord_catalog::writer_columns::producer_names(
            table.metadata(),
            self.route.schema.fields.iter().map(|f| f.name.as_str()),
        );
        Ok(Arc::new(Schema::new(
            arrow
                .fields()
                .iter()
                .filter(|f| !decode::KAFKA_COLUMNS.contains(&f.name().as_str()))
                .map(|f| {
                    let field = f.as_ref().clone().with_metadata(Default::default());
                    match producer.get(f.name()) {
                        Some(key) => field.with_name(key),
                        None => field,
                    }
                })
                .collect::<Vec<_>>(),
        )))
    }

    /// Assign every partition of the topic, each at the table's stored offset.
    async fn assign_all(
        &self,
        consumer: &StreamConsumer<SinkContext>,
        assignment: &Assignment,
    ) -> Result<()> {
        let deadline = Instant::now() + ASSIGNMENT_WAIT;
        let partitions = loop {
            let metadata =
                consumer.fetch_metadata(Some(&self.route.topic), Duration::from_secs(10))?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == self.route.topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
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

    fn topic_exists(&self, consumer: &StreamConsumer<SinkContext>) -> Result<bool> {
        let metadata = consumer.fetch_metadata(Some(&self.route.topic), Duration::from_secs(10))?;
        Ok(metadata.topics().iter().any(|t| {
            t.name() == self.route.topic && t.error().is_none() && !t.partitions().is_empty()
        }))
    }

    /// The table has caught up with every partition of the topic: its stored offset
    /// is at the high watermark. Partitions held by other members (or by members
    /// that died and still hold them until their session ends) count too, so an
    /// `--until-idle` run never stops with records of the topic left behind.
    async fn drained(&self, consumer: &StreamConsumer<SinkContext>) -> Result<bool> {
        let metadata = consumer.fetch_metadata(Some(&self.route.topic), Duration::from_secs(10))?;
        let Some(topic) = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.route.topic)
        else {
            return Ok(false);
        };
        let stored = self.stored_offsets().await?;
        for partition in topic.partitions() {
            let (low, high) = consumer.fetch_watermarks(
                &self.route.topic,
                partition.id(),
                Duration::from_secs(5),
            )?;
            let at = stored.get(&partition.id()).copied().unwrap_or(low);
            if at < high {
                return Ok(false);
            }
        }
        Ok(!topic.partitions().is_empty())
    }
}

/// The state of one `run`: the consumer, the open batch and where each partition
/// stands. Data flows one way: [`Run::accept`] → [`Run::flush`] → the table.
struct Run<'a> {
    ingest: &'a Ingest,
    consumer: Arc<StreamConsumer<SinkContext>>,
    decoder: EventDecoder,
    assignment: Arc<Assignment>,
    report: IngestReport,
    cursors: BTreeMap<i32, Cursor>,
    batch: Batch,
    /// Holds the bytes of the records of the open batch (and reuses those of
    /// committed ones).
    arena: ByteArena,
    /// The batch being committed, if any (at most one: commits land in order).
    in_flight: Option<InFlight<'a>>,
    /// The topic's name, shared by its records.
    topic_name: Arc<str>,
    /// `icefjord_sink_records_consumed_total{topic}`, looked up once.
    consumed_counter: ::metrics::Counter,
}

impl Run<'_> {
    fn topic(&self) -> &str {
        &self.ingest.route.topic
    }

    /// The open batch reached its row or byte limit.
    fn batch_full(&self) -> bool {
        let limits = &self.ingest.limits;
        self.batch.records.len() >= limits.rows || self.batch.bytes >= limits.bytes
    }

    /// The open batch should be committed now (full, or open for the interval).
    fn batch_due(&self) -> bool {
        self.batch_full()
            || self
                .batch
                .opened
                .is_some_and(|t| t.elapsed() >= self.ingest.limits.interval)
    }

    /// Resolves when the batch in flight is committed (never when there is none).
    /// Cancel-safe: dropped early, the batch stays in flight.
    async fn landed(in_flight: &mut Option<InFlight<'_>>) -> Result<Settled> {
        match in_flight {
            Some(commit) => {
                let settled = commit.as_mut().await;
                *in_flight = None;
                settled
            }
            None => std::future::pending().await,
        }
    }

    /// After a rebalance: the batch in flight lands first; partitions in the open
    /// batch keep their cursors; the others restart from the table (the fence
    /// catches anything that moved).
    async fn rebalanced(&mut self) -> Result<()> {
        self.settle_in_flight().await?;
        let stored = self.ingest.stored_offsets().await?;
        *lock(&self.assignment.table_offsets) = stored.clone();
        let batch = &self.batch;
        self.cursors.retain(|p, _| batch.spans.contains_key(p));
        for (p, &o) in &stored {
            self.cursors.entry(*p).or_insert(Cursor {
                next: Some(o),
                exact: true,
            });
        }
        Ok(())
    }

    /// Take a record into the open batch, or skip it when the table or the batch
    /// already holds its offset.
    fn accept(&mut self, m: &BorrowedMessage<'_>) -> Result<()> {
        let (partition, offset) = (m.partition(), m.offset());
        let table_offsets = &self.assignment.table_offsets;
        let cursor = *self.cursors.entry(partition).or_insert_with(|| Cursor {
            next: lock(table_offsets).get(&partition).copied(),
            exact: true,
        });
        match cursor.next {
            Some(next) if offset < next => return Ok(()),
            Some(next) if offset > next && cursor.exact => {
                // Started past the table's offset (e.g. the group offset ran ahead):
                // go back once; a real gap (compaction) is accepted after that.
                tracing::warn!(
                    partition,
                    offset,
                    next,
                    "seeking back to the table's offset"
                );
                self.consumer.seek(
                    self.topic(),
                    partition,
                    Offset::Offset(next),
                    Duration::from_secs(10),
                )?;
                self.cursors.insert(
                    partition,
                    Cursor {
                        next: Some(next),
                        exact: false,
                    },
                );
                return Ok(());
            }
            _ => {}
        }
        let start = cursor.next.unwrap_or(offset);
        let span = self.batch.spans.entry(partition).or_insert(Span {
            start,
            end: start,
            from_scratch: cursor.next.is_none(),
        });
        span.end = offset + 1;
        self.cursors.insert(
            partition,
            Cursor {
                next: Some(offset + 1),
                exact: false,
            },
        );
        let arena = &mut self.arena;
        let value = m.payload().map(|v| arena.copy(v));
        let key = m.key().map(|k| arena.copy(k));
        self.batch.bytes += value.as_ref().map_or(0, |v| v.len());
        if self.batch.records.capacity() == 0 {
            // Room for a full batch up front: growing by doubling copied ~2× the
            // batch and faulted in fresh pages for each copy (a fifth of the sink's
            // page faults). Pages are touched only as records arrive.
            let rows = self.ingest.limits.rows.min(MAX_PREALLOCATED_ROWS);
            self.batch.records.reserve(rows);
        }
        self.batch.records.push(SourceRecord {
            topic: self.topic_name.clone(),
            partition,
            offset,
            timestamp_ms: m.timestamp().to_millis(),
            key,
            value,
        });
        self.batch.opened.get_or_insert_with(Instant::now);
        self.report.consumed += 1;
        self.consumed_counter.increment(1);
        Ok(())
    }

    /// Take the open batch for committing (`None` when it is empty).
    fn seal(&mut self) -> Option<Sealed> {
        if self.batch.spans.is_empty() {
            return None;
        }
        let batch = std::mem::take(&mut self.batch);
        std::mem::swap(
            &mut self.batch.records,
            &mut *lock(&self.ingest.spare_records),
        );
        tracing::debug!(
            records = batch.records.len(),
            open_for = ?batch.opened.map(|t| t.elapsed()),
            "sealed batch"
        );
        Some(Sealed {
            records: batch.records,
            spans: batch.spans,
            commit_id: CommitId::mint(),
        })
    }

    /// Commit the open batch in the background, after the one in flight (commits
    /// land in order: each batch's fence expects its predecessor's offsets). With
    /// `wait`, also wait for it to land.
    async fn flush(&mut self, wait: bool) -> Result<()> {
        self.settle_in_flight().await?;
        if let Some(sealed) = self.seal() {
            self.in_flight = Some(Box::pin(
                self.ingest.commit_batch(self.decoder.clone(), sealed),
            ));
        }
        if wait {
            self.settle_in_flight().await?;
        }
        Ok(())
    }

    /// Wait for the batch in flight, if any, and apply its outcome.
    async fn settle_in_flight(&mut self) -> Result<()> {
        match self.in_flight.take() {
            Some(in_flight) => {
                let settled = in_flight.await?;
                self.settle(settled).await
            }
            None => Ok(()),
        }
    }

    /// Apply the outcome of a commit: offsets, report and metrics, or (refused) a
    /// restart of every partition from the table, dropping the open batch too
    /// (it continues the refused one).
    async fn settle(&mut self, settled: Settled) -> Result<()> {
        let route = &self.ingest.route;
        let table_name = icefjord_catalog::display(&route.table);
        match settled {
            Settled::Landed {
                spans,
                written,
                dead,
                evolution,
                already_applied,
                seconds,
            } => {
                if let Some(evolution) = &evolution {
                    tracing::info!(
                        table = %table_name,
                        added = ?evolution.added,
                        widened = ?evolution.widened,
                        "evolved the table's schema"
                    );
                    self.report.schema_changes += u64::from(!already_applied);
                    self.decoder = self.ingest.decoder().await?;
                }
                if !already_applied {
                    self.report.written += written;
                    self.report.dead_lettered += dead;
                    self.report.commits += 1;
                    crate::metrics::committed(&table_name, written, dead, seconds);
                }
                let mut tpl = TopicPartitionList::new();
                {
                    let mut stored = lock(&self.assignment.table_offsets);
                    for (p, span) in &spans {
                        stored.insert(*p, span.end);
                        crate::metrics::position(&route.topic, *p, span.end);
                        tpl.add_partition_offset(&route.topic, *p, Offset::Offset(span.end))?;
                    }
                }
                // For lag monitoring only; failures are harmless.
                if self.ingest.assign == Assign::Group {
                    if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                        tracing::debug!(error = %e, "group offset commit failed");
                    }
                }
                tracing::info!(table = %table_name, rows = written, dead, "committed batch");
                Ok(())
            }
            Settled::Refused { reason, schema } => {
                if schema {
                    // Another writer evolved the schema first: decode again
                    // against the table's schema as it is now.
                    tracing::warn!(%reason, "schema changed concurrently; re-reading the batch");
                    self.decoder = self.ingest.decoder().await?;
                } else {
                    tracing::warn!(%reason, "batch refused by the offset fence; re-reading offsets from the table");
                }
                self.report.refused_commits += 1;
                crate::metrics::commit_result(&table_name, "refused");
                self.reset_to_table().await
            }
        }
    }

    /// Refresh the lag gauges (high watermark − table offset, per assigned
    /// partition) and return the total.
    fn update_lag(&self) -> i64 {
        let Ok(assigned) = self.consumer.assignment() else {
            return 0;
        };
        let mut total = 0;
        let stored = lock(&self.assignment.table_offsets).clone();
        for element in assigned.elements() {
            let p = element.partition();
            if let Ok((low, high)) =
                self.consumer
                    .fetch_watermarks(self.topic(), p, Duration::from_secs(2))
            {
                let lag = (high - stored.get(&p).copied().unwrap_or(low)).max(0);
                crate::metrics::lag(self.topic(), p, lag);
                total += lag;
            }
        }
        total
    }

    /// Drop the open batch and put every assigned partition back at the offset the
    /// table holds (after another writer moved it).
    async fn reset_to_table(&mut self) -> Result<()> {
        self.batch = Batch::default();
        let stored = self.ingest.stored_offsets().await?;
        self.cursors.clear();
        for element in self.consumer.assignment()?.elements() {
            let p = element.partition();
            let offset = stored
                .get(&p)
                .map_or(Offset::Beginning, |&o| Offset::Offset(o));
            self.consumer
                .seek(self.topic(), p, offset, Duration::from_secs(10))?;
            self.cursors.insert(
                p,
                Cursor {
                    next: stored.get(&p).copied(),
                    exact: false,
                },
            );
        }
        *lock(&self.assignment.table_offsets) = stored;
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn engine_to_catalog(e: icefjord_engine::EngineError) -> CatalogError {
    match e {
        icefjord_engine::EngineError::Catalog(c) => c,
        other => CatalogError::Config {
            field: "schema".into(),
            message: other.to_string(),
        },
    }
}

/// The largest event timestamp of the batch (first timestamp column), as text.
fn max_event_time(rows: &RecordBatch) -> Option<String> {
    let (i, _) = rows.schema().fields().iter().enumerate().find(|(_, f)| {
        matches!(f.data_type(), DataType::Timestamp(..)) && !f.name().starts_with("_kafka")
    })?;
    let column = rows.column(i);
    let micros = arrow::compute::cast(column, &DataType::Int64).ok()?;
    let micros = micros.as_any().downcast_ref::<arrow::array::Int64Array>()?;
    arrow::compute::max(micros).map(icefjord_engine::generate::format_micros)
}
