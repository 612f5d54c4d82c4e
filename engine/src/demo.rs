//! The built-in event source of `icefjord demo`: generates retail events into
//! `raw.retail_events` through the writer and the commit path, in exactly the
//! layout the Kafka sink writes (event columns + `_kafka_*` positions of a
//! three-partition topic `retail_events`), so every pipeline runs on it as on
//! ingested data.
//!
//! Re-running is safe: the raw table stores the generator's next position in its
//! snapshot summary (as the Kafka sink stores offsets), so only missing events are
//! written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use iceberg::spec::MAIN_BRANCH;
use icefjord_catalog::protocol::columns as kafka;
use icefjord_catalog::protocol::{find_position, keys, GeneratorPositionKey};
use icefjord_catalog::{parse_table, CommitId, LakeCatalog, TableSpec, TableWrite};

use crate::error::{EngineError, Result};
use crate::generate::shape::{check_top_up, GeneratorShapeKey, Shape, ShapeError};
use crate::generate::{activity, clickstream, retail};
use crate::schema::{builtin, kafka_field_specs, producer_schema, EventSchema};
use crate::write::TableWriter;

pub const RAW_TABLE: &str = "raw.retail_events";

/// Which events the demo generates, into which raw table (the layouts and names
/// `icefjord ingest` would use for the shipped schemas).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoKind {
    Retail,
    Clickstream,
    Activity,
}

impl DemoKind {
    pub fn table(self) -> &'static str {
        match self {
            Self::Retail => RAW_TABLE,
            Self::Clickstream => "raw.clickstream_events",
            Self::Activity => "raw.user_activity",
        }
    }

    /// The topic the generated positions pretend to come from.
    pub fn topic(self) -> &'static str {
        match self {
            Self::Retail => "retail_events",
            Self::Clickstream => "clickstream",
            Self::Activity => "user_activity",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Retail => "retail",
            Self::Clickstream => "clickstream",
            Self::Activity => "activity",
        }
    }

    fn schema(self) -> (&'static str, &'static str) {
        match self {
            Self::Retail => ("retail_event.json", builtin::RETAIL_EVENT),
            Self::Clickstream => ("clickstream_event.json", builtin::CLICKSTREAM_EVENT),
            Self::Activity => ("user_activity.json", builtin::USER_ACTIVITY),
        }
    }
}
/// Its partitions: event `i` is offset `i / 3` of partition `i % 3`.
pub const PARTITIONS: u64 = 3;
const BATCH_ROWS: u64 = 128 * 1024;

/// Generates the demo's raw events. Awaited through [`Demo::run`].
pub struct Demo<'a> {
    catalog: &'a LakeCatalog,
    kind: DemoKind,
    events: u64,
    seed: u64,
    shape: Shape,
    batch_events: u64,
}

/// What the generator did.
#[derive(Debug)]
pub struct DemoReport {
    /// Events written by this run (0 when the lake already had them).
    pub events_written: u64,
    pub raw_files_written: usize,
    pub raw_snapshot_id: i64,
    pub ingest_time: Duration,
}

impl<'a> Demo<'a> {
    pub fn new(catalog: &'a LakeCatalog) -> Self {
        Self {
            catalog,
            kind: DemoKind::Retail,
            events: 200_000,
            seed: 42,
            shape: Shape::default(),
            batch_events: u64::MAX,
        }
    }

    pub fn with_kind(mut self, kind: DemoKind) -> Self {
        self.kind = kind;
        self
    }

    pub fn with_events(mut self, events: u64) -> Self {
        self.events = events;
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The retail events' [`Shape`] (other kinds have only the default one).
    pub fn with_shape(mut self, shape: Shape) -> Self {
        self.shape = shape;
        self
    }

    /// Commit every `events` events (at least 1), as the sink commits a batch:
    /// many small files and snapshots instead of one commit (the default).
    pub fn with_batch_events(mut self, events: u64) -> Self {
        self.batch_events = events.max(1);
        self
    }

    fn shape_key(&self) -> GeneratorShapeKey {
        GeneratorShapeKey {
            kind: self.kind.name().to_string(),
            seed: self.seed,
        }
    }

    fn position_key(&self) -> GeneratorPositionKey {
        GeneratorPositionKey {
            kind: self.kind.name().to_string(),
            seed: self.seed,
        }
    }

    pub async fn run(self) -> Result<DemoReport> {
        let started = Instant::now();
        let shaped = self.kind == DemoKind::Retail;
        if shaped {
            self.shape.check_range(self.events)?;
        } else if self.shape != Shape::default() {
            return Err(ShapeError::Invalid {
                flag: "--kind",
                value: self.kind.name().into(),
                message: "--events-per-day, --start, --skew and --late shape retail events only"
                    .into(),
            }
            .into());
        }
        let raw_ident = parse_table(self.kind.table())?;
        let raw = self
            .catalog
            .load_or_create(&raw_ident, || {
                let (file, text) = self.kind.schema();
                let schema = EventSchema::parse(file, text).map_err(to_catalog)?;
                let iceberg = schema
                    .iceberg_schema(&kafka_field_specs())
                    .map_err(to_catalog)?;
                Ok(TableSpec {
                    partition_spec: Some(schema.partition_spec(&iceberg).map_err(to_catalog)?),
                    schema: iceberg,
                    properties: Default::default(),
                })
            })
            .await?;
        // Found past other engines' snapshots and through snapshot expiry; a
        // lost or corrupt position is an error, never "generate from 0 again".
        let start = find_position(
            raw.metadata(),
            self.kind.table(),
            MAIN_BRANCH,
            &self.position_key(),
        )?
        .map_or(0, |found| found.value);
        if shaped {
            let table = self.kind.table();
            check_top_up(raw.metadata(), table, &self.shape_key(), start, &self.shape)?;
        }
        let (mut events_written, mut raw_files_written) = (0, 0);
        if start < self.events {
            let (file, text) = self.kind.schema();
            let producer = EventSchema::parse(file, text)?;
            let events = producer_schema(
                raw.metadata(),
                producer.fields.iter().map(|f| f.name.as_str()),
            )?;
            let retail = retail::Retail::new(self.seed, &self.shape);
            let mut position = start;
            while position < self.events {
                let end = position.saturating_add(self.batch_events).min(self.events);
                let raw = self.catalog.load(&raw_ident).await?;
                let (rows, files) = self
                    .commit_range(&raw, &events, &retail, position, end)
                    .await?;
                events_written += rows;
                raw_files_written += files;
                position = end;
            }
        }
        let ingest_time = started.elapsed();
        let raw = self.catalog.load(&raw_ident).await?;
        let raw_snapshot_id = raw.metadata().current_snapshot_id().ok_or_else(|| {
            EngineError::Catalog(icefjord_catalog::CatalogError::SnapshotNotFound {
                table: self.kind.table().into(),
                what: "(the table is empty)".into(),
            })
        })?;
        Ok(DemoReport {
            events_written,
            raw_files_written,
            raw_snapshot_id,
            ingest_time,
        })
    }
}

impl Demo<'_> {
    /// Writes events `start..end` into `raw` and commits them with the position
    /// `end` (and the retail shape): one batch of the sink. Returns (rows, files).
    async fn commit_range(
        &self,
        raw: &iceberg::table::Table,
        events: &SchemaRef,
        retail: &retail::Retail,
        start: u64,
        end: u64,
    ) -> Result<(u64, usize)> {
        let mut writer = TableWriter::new(raw).await?;
        let mut position = start;
        while position < end {
            let next = (position + BATCH_ROWS).min(end);
            let batch = match self.kind {
                DemoKind::Retail => retail.batch(position, next)?,
                _ => self.decoded(events, position, next)?,
            };
            writer
                .write(with_positions(batch, position, self.kind.topic())?)
                .await?;
            position = next;
        }
        let (files, metrics) = writer.close().await?;
        // The id is derived from the position range: a retry after a crash
        // between commit and report finds it and writes nothing twice.
        let id = CommitId::new(format!(
            "demo-{}-{}-{start}-{end}",
            self.kind.name(),
            self.seed,
        ));
        let mut write = TableWrite::append(parse_table(self.kind.table())?, files)
            .with_position(&self.position_key(), &end)
            .with_property(keys::WRITER, keys::writer::GENERATE);
        if self.kind == DemoKind::Retail {
            write = write.with_position(&self.shape_key(), &self.shape);
        }
        self.catalog.commit(id).with_write(write).execute().await?;
        Ok((metrics.rows, metrics.files))
    }

    /// Events `start..end` of the JSON generators, decoded into `events` (the raw
    /// table's event columns, [`crate::schema::producer_schema`], as the sink
    /// decodes them).
    fn decoded(&self, events: &SchemaRef, start: u64, end: u64) -> Result<RecordBatch> {
        let lines: Vec<String> = match self.kind {
            DemoKind::Clickstream => clickstream::Sessions::new(self.seed)
                .skip(start as usize)
                .take((end - start) as usize)
                .map(|e| e.json)
                .collect(),
            _ => (start..end)
                .map(|i| activity::event(self.seed, i).1)
                .collect(),
        };
        let mut decoder = arrow::json::ReaderBuilder::new(events.clone())
            .with_batch_size(lines.len().max(1))
            .build_decoder()?;
        decoder.decode(lines.join("\n").as_bytes())?;
        Ok(decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(events.clone())))
    }
}

/// `batch` (events `start..`) with the `_kafka_*` columns of their positions.
fn with_positions(batch: RecordBatch, start: u64, topic: &str) -> Result<RecordBatch> {
    let n = batch.num_rows() as u64;
    let positions = start..start + n;
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend([
        Field::new(kafka::TOPIC, DataType::Utf8, false),
        Field::new(kafka::PARTITION, DataType::Int32, false),
        Field::new(kafka::OFFSET, DataType::Int64, false),
        Field::new(
            kafka::TIMESTAMP,
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
    ]);
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(StringArray::from_iter_values(
        positions.clone().map(|_| topic),
    )));
    columns.push(Arc::new(Int32Array::from_iter_values(
        positions.clone().map(|i| (i % PARTITIONS) as i32),
    )));
    columns.push(Arc::new(Int64Array::from_iter_values(
        positions.clone().map(|i| (i / PARTITIONS) as i64),
    )));
    columns.push(Arc::new(TimestampMicrosecondArray::from(vec![
        None;
        n as usize
    ])));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

fn to_catalog(e: EngineError) -> icefjord_catalog::CatalogError {
    match e {
        EngineError::Catalog(c) => c,
        other => icefjord_catalog::CatalogError::Config {
            field: "schema".into(),
            message: other.to_string(),
        },
    }
}
