//! JSON records → Arrow rows of the target table, plus dead letters for the records
//! that are not JSON, lack a required field or hold a value that does not fit its
//! column. Nothing is dropped unseen: `records = rows + dead letters + tombstones`,
//! always.
//!
//! What fits a column, and as what value, is decided by the input rules
//! ([`rules`], summarised in `data/README.md`): a value is kept exactly or the
//! record is dead-lettered, never changed. Two tiers apply them, each the fallback
//! of the one before, and agree on every row and every dead letter (the
//! `agreement` tests):
//! 1. [`flat`]: a fast decoder for the whole batch, when every record is clean;
//! 2. [`checked`]: record by record, isolating the bad ones as dead letters.
//!
//! Tables with columns of types outside the rules (nested types, zones other than
//! UTC: a table another engine evolved) are left to arrow-json, whole batch first,
//! then record by record.
//!
//! # Tombstones
//!
//! A record without a value (a tombstone: compacted topics and CDC deletes carry
//! them) becomes neither a row nor a dead letter: it is counted
//! ([`Decoded::tombstones`]) and skipped. Its offset still advances the stored
//! position, as every consumed record's does.
//!
//! # Schema evolution ([`EventDecoder::with_schema_evolution`])
//!
//! Without it, keys the table has no column for are ignored. With it, the fast path
//! is strict (an unknown key sends the batch to the slow path), and the slow path
//! works out an [`Evolution`] for the batch:
//! - a key the table lacks becomes a new optional column, typed by its first
//!   non-null value: `true`/`false` → boolean, an integer → long, any other number
//!   → double (an integer column seen later as a fraction becomes double), a
//!   string → string;
//! - an integer outside `int`'s range widens an `int` column to `long`; a number
//!   outside `float`'s range widens a `float` column to `double`;
//! - anything else (a nested object or array under a new key, a string where a
//!   number column is, …) makes that record a dead letter.
//!
//! The batch is then decoded with the evolved schema; the caller commits the
//! schema change with the rows (`TableWrite::with_schema`).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::json::ReaderBuilder;

use crate::record::SourceRecord;

#[cfg(test)]
mod agreement;
mod checked;
mod column;
mod cursor;
mod dead_letter;
mod flat;
mod rules;
#[cfg(test)]
mod tests;

pub use dead_letter::{dead_letter_batch, dead_letter_schema};

/// The first column of `events` whose type the input rules do not cover
/// (`rules.rs`; nested types, another engine's additions): the sink refuses such
/// a table rather than let arrow-json guess (it truncates, converts zones,
/// coerces strings: issue 11 F).
pub fn column_outside_the_rules(events: &Schema) -> Option<&Field> {
    events
        .fields()
        .iter()
        .find(|f| rules::Kind::of(f.data_type()).is_none())
        .map(|f| f.as_ref())
}

/// The Kafka position columns appended to every row of a sink table.
pub const KAFKA_COLUMNS: [&str; 4] = icefjord_catalog::protocol::columns::ALL;

/// Where a record failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// An empty value (zero bytes; a record without a value is a tombstone, not
    /// a dead letter).
    Empty,
    /// The value is not one JSON object.
    Json,
    /// Valid JSON that does not fit the table (missing field, wrong type, …).
    Schema,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Json => "json",
            Self::Schema => "schema",
        }
    }
}

/// A record that could not become a row, with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub record: SourceRecord,
    pub stage: Stage,
    pub error: String,
}

/// The outcome of decoding a batch of records.
#[derive(Debug)]
pub struct Decoded {
    /// Rows in the sink table's layout: event fields, then [`KAFKA_COLUMNS`].
    pub rows: RecordBatch,
    pub dead: Vec<DeadLetter>,
    /// Records without a value, skipped (see the module docs).
    pub tombstones: usize,
    /// The schema change `rows` need (only with schema evolution on).
    pub evolution: Option<Evolution>,
}

/// Columns a batch needs beyond the table's current event columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evolution {
    /// New optional columns, in the order their keys were first seen.
    pub added: Vec<(String, DataType)>,
    /// Existing columns to widen (`Int32 → Int64`, `Float32 → Float64`).
    pub widened: Vec<(String, DataType)>,
}

impl Evolution {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.widened.is_empty()
    }

    /// `events` with the columns widened and added.
    pub fn apply(&self, events: &Schema) -> Schema {
        let mut fields: Vec<Field> = events
            .fields()
            .iter()
            .map(
                |f| match self.widened.iter().find(|(name, _)| name == f.name()) {
                    Some((_, wider)) => f.as_ref().clone().with_data_type(wider.clone()),
                    None => f.as_ref().clone(),
                },
            )
            .collect();
        fields.extend(
            self.added
                .iter()
                .map(|(name, ty)| Field::new(name, ty.clone(), true)),
        );
        Schema::new(fields)
    }

    /// Record that key `name` holds `value`; `Err` when that cannot be stored.
    fn observe(
        &mut self,
        events: &Schema,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<(), String> {
        use serde_json::Value;
        match events.field_with_name(name) {
            Ok(field) => {
                let wider = match (field.data_type(), value) {
                    (DataType::Int32, Value::Number(n))
                        if n.as_i64().is_some_and(|v| i32::try_from(v).is_err()) =>
                    {
                        DataType::Int64
                    }
                    (DataType::Float32, Value::Number(n))
                        if n.as_f64()
                            .is_some_and(|v| v.is_finite() && v.abs() > f32::MAX as f64) =>
                    {
                        DataType::Float64
                    }
                    _ => return Ok(()),
                };
                if !self.widened.iter().any(|(n, _)| n == name) {
                    self.widened.push((name.to_string(), wider));
                }
                Ok(())
            }
            Err(_) if KAFKA_COLUMNS.contains(&name) => Ok(()),
            Err(_) => {
                let ty = match value {
                    Value::Null => return Ok(()),
                    Value::Bool(_) => DataType::Boolean,
                    Value::Number(n) if n.is_i64() || n.is_u64() => DataType::Int64,
                    Value::Number(_) => DataType::Float64,
                    Value::String(_) => DataType::Utf8,
                    Value::Array(_) | Value::Object(_) => {
                        return Err(format!(
                            "new key {name} holds {}, which cannot become a column",
                            json_kind(value)
                        ))
                    }
                };
                match self.added.iter_mut().find(|(n, _)| n == name) {
                    None => self.added.push((name.to_string(), ty)),
                    Some((_, seen)) if *seen == DataType::Int64 && ty == DataType::Float64 => {
                        *seen = DataType::Float64;
                    }
                    Some(_) => {}
                }
                Ok(())
            }
        }
    }
}

/// Decodes records of one event schema.
#[derive(Clone, Debug)]
pub struct EventDecoder {
    events: SchemaRef,
    output: SchemaRef,
    evolve: bool,
}

/// The Arrow layout of `_kafka_*` columns.
pub fn kafka_fields() -> Vec<Field> {
    vec![
        Field::new(KAFKA_COLUMNS[0], DataType::Utf8, false),
        Field::new(KAFKA_COLUMNS[1], DataType::Int32, false),
        Field::new(KAFKA_COLUMNS[2], DataType::Int64, false),
        Field::new(
            KAFKA_COLUMNS[3],
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
    ]
}

impl EventDecoder {
    /// A decoder for events of `events` (the table's event columns, no `_kafka_*`).
    pub fn new(events: SchemaRef) -> Self {
        let mut fields: Vec<Field> = events.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(kafka_fields());
        Self {
            events,
            output: Arc::new(Schema::new(fields)),
            evolve: false,
        }
    }

    /// Evolve the schema for new keys and wider numbers instead of ignoring them or
    /// dead-lettering the records (see the module docs).
    pub fn with_schema_evolution(mut self, evolve: bool) -> Self {
        self.evolve = evolve;
        self
    }

    /// The layout of decoded rows.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output
    }

    /// One row per record with a value, in order, or a dead letter; records
    /// without a value are counted as tombstones.
    pub fn decode(&self, records: &[SourceRecord]) -> Result<Decoded, ArrowError> {
        // One pass into one vector sized up front (growing it by doubling copies
        // and faults in fresh pages); the tombstones are only counted.
        let mut with_value: Vec<&SourceRecord> = Vec::with_capacity(records.len());
        with_value.extend(records.iter().filter(|r| r.value.is_some()));
        let tombstones = records.len() - with_value.len();
        let mut decoded = self.decode_values(with_value)?;
        decoded.tombstones = tombstones;
        Ok(decoded)
    }

    /// Decode records that have a value.
    fn decode_values(&self, records: Vec<&SourceRecord>) -> Result<Decoded, ArrowError> {
        if let Some(fast) = self.decode_all(&records, self.evolve)? {
            return Ok(fast);
        }
        if !self.evolve {
            return self.decode_one_by_one(&records);
        }
        let mut evolution = Evolution::default();
        let mut kept = Vec::with_capacity(records.len());
        let mut rejected = Vec::new();
        for record in records {
            match self.observe(&mut evolution, record) {
                Ok(()) => kept.push(record),
                Err(error) => rejected.push(DeadLetter {
                    record: record.clone(),
                    stage: Stage::Schema,
                    error,
                }),
            }
        }
        // Keys whose values were all null stay unknown: ignored, as the new column
        // would read null for them anyway.
        let evolved = match evolution.is_empty() {
            true => self.clone(),
            false => Self::new(Arc::new(evolution.apply(&self.events))),
        };
        let mut decoded = match evolved.decode_all(&kept, false)? {
            Some(decoded) => decoded,
            None => evolved.decode_one_by_one(&kept)?,
        };
        decoded.dead.extend(rejected);
        decoded.evolution = (!evolution.is_empty()).then_some(evolution);
        Ok(decoded)
    }

    /// Add what `record` needs to `evolution`; `Err` when it cannot be stored.
    /// Records that are not JSON objects are left to the decoder to dead-letter.
    fn observe(&self, evolution: &mut Evolution, record: &SourceRecord) -> Result<(), String> {
        let Some(value) = record.value.as_deref() else {
            return Ok(());
        };
        let Ok(object) =
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(value)
        else {
            return Ok(());
        };
        let mut trial = evolution.clone();
        for (key, value) in &object {
            trial.observe(&self.events, key, value)?;
        }
        *evolution = trial;
        Ok(())
    }

    fn decoder(
        &self,
        capacity: usize,
        strict: bool,
    ) -> Result<arrow::json::reader::Decoder, ArrowError> {
        ReaderBuilder::new(self.events.clone())
            .with_batch_size(capacity.max(1))
            .with_strict_mode(strict)
            .build_decoder()
    }

    /// Decode the batch in one go; `None` when any record needs a closer look
    /// (with `strict`, also when a record has a key the schema lacks).
    fn decode_all(
        &self,
        records: &[&SourceRecord],
        strict: bool,
    ) -> Result<Option<Decoded>, ArrowError> {
        if let Some(batch) = flat::FlatDecoder::new(&self.events, strict).and_then(|flat| {
            flat.decode(
                records
                    .iter()
                    .map(|r| r.value.as_deref().unwrap_or_default()),
            )
        }) {
            return Ok(Some(Decoded {
                rows: self.with_kafka_columns(&batch, records)?,
                dead: Vec::new(),
                tombstones: 0,
                evolution: None,
            }));
        }
        // The rules decide every column they know: arrow-json only reads columns
        // outside them.
        if checked::CheckedDecoder::new(&self.events).is_some() {
            return Ok(None);
        }
        let mut decoder = self.decoder(records.len(), strict)?;
        for (i, record) in records.iter().enumerate() {
            let Some(value) = record.value.as_deref().filter(|v| !v.is_empty()) else {
                return Ok(None);
            };
            // Each message must be consumed whole and add exactly one row: a message
            // holding two objects (or none) would shift every later row off its
            // offset, and a full decoder stops reading (returns fewer bytes).
            match decoder.decode(value) {
                Ok(consumed) if consumed == value.len() => {}
                _ => return Ok(None),
            }
            if decoder.has_partial_record() || decoder.len() != i + 1 {
                return Ok(None);
            }
        }
        let batch = match decoder.flush() {
            Ok(Some(batch)) => batch,
            Ok(None) if records.is_empty() => RecordBatch::new_empty(self.events.clone()),
            Ok(None) | Err(_) => return Ok(None),
        };
        // One row per record, or the rows would not line up with their offsets.
        if batch.num_rows() != records.len() {
            return Ok(None);
        }
        Ok(Some(Decoded {
            rows: self.with_kafka_columns(&batch, records)?,
            dead: Vec::new(),
            tombstones: 0,
            evolution: None,
        }))
    }

    fn decode_one_by_one(&self, records: &[&SourceRecord]) -> Result<Decoded, ArrowError> {
        if let Some(checked) = checked::CheckedDecoder::new(&self.events) {
            let (batch, outcomes) = checked.decode(
                records
                    .iter()
                    .map(|r| r.value.as_deref().unwrap_or_default()),
            )?;
            let mut good = Vec::with_capacity(batch.num_rows());
            let mut dead = Vec::new();
            for (&record, outcome) in records.iter().zip(outcomes) {
                match outcome {
                    Ok(()) => good.push(record),
                    Err((stage, error)) => dead.push(DeadLetter {
                        record: record.clone(),
                        stage,
                        error,
                    }),
                }
            }
            return Ok(Decoded {
                rows: self.with_kafka_columns(&batch, &good)?,
                dead,
                tombstones: 0,
                evolution: None,
            });
        }
        let mut batches = Vec::new();
        let mut good = Vec::new();
        let mut dead = Vec::new();
        for &record in records {
            match self.decode_record(record)? {
                Ok(batch) => {
                    batches.push(batch);
                    good.push(record);
                }
                Err((stage, error)) => dead.push(DeadLetter {
                    record: record.clone(),
                    stage,
                    error,
                }),
            }
        }
        let batch = arrow::compute::concat_batches(&self.events, &batches)?;
        Ok(Decoded {
            rows: self.with_kafka_columns(&batch, &good)?,
            dead,
            tombstones: 0,
            evolution: None,
        })
    }

    #[allow(clippy::type_complexity)]
    fn decode_record(
        &self,
        record: &SourceRecord,
    ) -> Result<Result<RecordBatch, (Stage, String)>, ArrowError> {
        let Some(value) = record.value.as_deref().filter(|v| !v.is_empty()) else {
            return Ok(Err((Stage::Empty, "the record has no value".into())));
        };
        match serde_json::from_slice::<serde_json::Value>(value) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(other) => {
                return Ok(Err((
                    Stage::Json,
                    format!("expected one JSON object, found {}", json_kind(&other)),
                )));
            }
            Err(e) => return Ok(Err((Stage::Json, format!("not JSON: {e}")))),
        }
        let mut decoder = self.decoder(1, false)?;
        let decoded = decoder.decode(value).and_then(|consumed| {
            if consumed == value.len() {
                decoder.flush()
            } else {
                Ok(None)
            }
        });
        Ok(match decoded {
            Ok(Some(batch)) if batch.num_rows() == 1 => Ok(batch),
            Ok(_) => Err((Stage::Schema, "the value did not decode to one row".into())),
            Err(e) => Err((Stage::Schema, schema_error(&e))),
        })
    }

    fn with_kafka_columns(
        &self,
        events: &RecordBatch,
        records: &[&SourceRecord],
    ) -> Result<RecordBatch, ArrowError> {
        let mut topic = StringBuilder::with_capacity(records.len(), records.len() * 16);
        let mut partition = Int32Builder::with_capacity(records.len());
        let mut offset = Int64Builder::with_capacity(records.len());
        let mut timestamp = TimestampMicrosecondBuilder::with_capacity(records.len());
        for record in records {
            topic.append_value(&*record.topic);
            partition.append_value(record.partition);
            offset.append_value(record.offset);
            timestamp.append_option(record.timestamp_ms.and_then(millis_to_micros));
        }
        let mut columns: Vec<ArrayRef> = events.columns().to_vec();
        columns.push(Arc::new(topic.finish()));
        columns.push(Arc::new(partition.finish()));
        columns.push(Arc::new(offset.finish()));
        columns.push(Arc::new(timestamp.finish()));
        RecordBatch::try_new(self.output.clone(), columns)
    }
}

/// A producer-chosen timestamp in µs; absurd values become null, never overflow.
fn millis_to_micros(ms: i64) -> Option<i64> {
    ms.checked_mul(1000)
}

pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// arrow-json's message, without its "Json error: " prefix.
fn schema_error(e: &ArrowError) -> String {
    let text = e.to_string();
    text.strip_prefix("Json error: ")
        .unwrap_or(&text)
        .to_string()
}
