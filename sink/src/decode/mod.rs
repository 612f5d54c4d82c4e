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
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
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
mod flat;
mod rules;

/// The Kafka position columns appended to every row of a sink table.
pub const KAFKA_COLUMNS: [&str; 4] = [
    "_kafka_topic",
    "_kafka_partition",
    "_kafka_offset",
    "_kafka_timestamp",
];

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

    pub fn decode(&self, records: &[SourceRecord]) -> Result<Decoded, ArrowError> {
        let (records, tombstones): (Vec<&SourceRecord>, Vec<&SourceRecord>) =
            records.iter().partition(|r| r.value.is_some());
        let mut decoded = self.decode_values(records)?;
        decoded.tombstones = tombstones.len();
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

/// The layout of a dead-letter table (`<target>_dlq`).
pub fn dead_letter_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source_topic", DataType::Utf8, false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("source_offset", DataType::Int64, false),
        Field::new(
            "source_timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
        Field::new("stage", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, false),
    ]))
}

/// Dead letters as rows of [`dead_letter_schema`].
pub fn dead_letter_batch(dead: &[DeadLetter]) -> Result<RecordBatch, ArrowError> {
    let n = dead.len();
    let mut topic = StringBuilder::with_capacity(n, n * 16);
    let mut partition = Int32Builder::with_capacity(n);
    let mut offset = Int64Builder::with_capacity(n);
    let mut timestamp = TimestampMicrosecondBuilder::with_capacity(n);
    let mut key = BinaryBuilder::with_capacity(n, 0);
    let mut value = BinaryBuilder::with_capacity(n, 0);
    let mut stage = StringBuilder::with_capacity(n, n * 8);
    let mut error = StringBuilder::with_capacity(n, n * 64);
    for d in dead {
        topic.append_value(&*d.record.topic);
        partition.append_value(d.record.partition);
        offset.append_value(d.record.offset);
        timestamp.append_option(d.record.timestamp_ms.and_then(millis_to_micros));
        key.append_option(d.record.key.as_deref());
        value.append_option(d.record.value.as_deref());
        stage.append_value(d.stage.as_str());
        error.append_value(&d.error);
    }
    RecordBatch::try_new(
        dead_letter_schema(),
        vec![
            Arc::new(topic.finish()),
            Arc::new(partition.finish()),
            Arc::new(offset.finish()),
            Arc::new(timestamp.finish()),
            Arc::new(key.finish()),
            Arc::new(value.finish()),
            Arc::new(stage.finish()),
            Arc::new(error.finish()),
        ],
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
    use bytes::Bytes;

    use super::*;

    fn decoder() -> EventDecoder {
        EventDecoder::new(Arc::new(Schema::new(vec![
            Field::new(
                "event_time",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("store_id", DataType::Int32, false),
            Field::new("unit_price", DataType::Decimal128(10, 2), false),
            Field::new("note", DataType::Utf8, true),
        ])))
    }

    fn record(offset: i64, value: Option<&str>) -> SourceRecord {
        SourceRecord {
            topic: "retail".into(),
            partition: 2,
            offset,
            timestamp_ms: Some(1_700_000_000_000),
            key: Some(Bytes::from_static(b"k")),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        }
    }

    const GOOD: &str =
        r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "unit_price": 450.00}"#;

    #[test]
    fn good_records_decode_in_one_go_with_their_positions() {
        let records: Vec<_> = (0..3).map(|i| record(10 + i, Some(GOOD))).collect();
        let decoded = decoder().decode(&records).unwrap();
        assert!(decoded.dead.is_empty());
        assert_eq!(decoded.rows.num_rows(), 3);
        let offsets = decoded.rows.column_by_name("_kafka_offset").unwrap();
        assert_eq!(offsets.as_primitive::<Int64Type>().values(), &[10, 11, 12]);
        assert_eq!(decoded.rows.column_by_name("note").unwrap().null_count(), 3);
    }

    /// Regression: a message with two objects filled the decoder early, and the next
    /// (good) record was silently skipped while its offset was committed.
    #[test]
    fn a_two_object_message_cannot_hide_the_next_record() {
        let two = format!("{GOOD}{GOOD}");
        let records = vec![
            record(0, Some(GOOD)),
            record(1, Some(&two)),
            record(2, Some(GOOD)),
        ];
        let decoded = decoder().decode(&records).unwrap();
        let offsets = decoded.rows.column_by_name("_kafka_offset").unwrap();
        assert_eq!(offsets.as_primitive::<Int64Type>().values(), &[0, 2]);
        assert_eq!(decoded.dead.len(), 1);
        assert_eq!(decoded.dead[0].record.offset, 1);
        // Also when the two-object message comes last, and for whitespace-only values.
        let records = vec![record(0, Some(GOOD)), record(1, Some(&two))];
        let decoded = decoder().decode(&records).unwrap();
        assert_eq!(decoded.rows.num_rows() + decoded.dead.len(), 2);
        assert_eq!(decoded.dead[0].record.offset, 1);
        let records = vec![
            record(0, Some("   ")),
            record(1, Some(&two)),
            record(2, Some(GOOD)),
        ];
        let decoded = decoder().decode(&records).unwrap();
        let offsets = decoded.rows.column_by_name("_kafka_offset").unwrap();
        assert_eq!(offsets.as_primitive::<Int64Type>().values(), &[2]);
        assert_eq!(decoded.dead.len(), 2);
    }

    #[test]
    fn evolution_adds_typed_columns_widens_ints_and_rejects_nested_values() {
        let int_decoder = || {
            EventDecoder::new(Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int32, false),
                Field::new("score", DataType::Float32, true),
            ])))
        };
        let records = vec![
            record(0, Some(r#"{"id": 1, "coupon": "A", "n": 2}"#)),
            record(1, Some(r#"{"id": 5000000000, "n": 2.5, "flag": true}"#)),
            record(2, Some(r#"{"id": 3, "later": null}"#)),
            record(3, Some(r#"{"id": 4, "basket": {"items": 3}}"#)),
            record(4, Some(r#"{"id": 5, "score": 1e300}"#)),
            record(5, Some(r#"{"id": 6, "coupon": 7}"#)),
        ];
        let decoded = int_decoder()
            .with_schema_evolution(true)
            .decode(&records)
            .unwrap();
        let evolution = decoded.evolution.unwrap();
        assert_eq!(
            evolution.added,
            vec![
                ("coupon".to_string(), DataType::Utf8),
                ("n".to_string(), DataType::Float64),
                ("flag".to_string(), DataType::Boolean),
            ]
        );
        assert_eq!(
            evolution.widened,
            vec![
                ("id".to_string(), DataType::Int64),
                ("score".to_string(), DataType::Float64)
            ]
        );
        let mut dead: Vec<_> = decoded
            .dead
            .iter()
            .map(|d| (d.record.offset, d.stage))
            .collect();
        dead.sort_by_key(|(offset, _)| *offset);
        // The nested value, and a number under the column that became a string.
        assert_eq!(dead, vec![(3, Stage::Schema), (5, Stage::Schema)]);
        let ids = decoded.rows.column_by_name("id").unwrap();
        assert_eq!(
            ids.as_primitive::<Int64Type>().values(),
            &[1, 5_000_000_000, 3, 5]
        );
        let coupons = decoded
            .rows
            .column_by_name("coupon")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(coupons.value(0), "A");
        assert_eq!(decoded.rows.num_rows() + decoded.dead.len(), records.len());

        // Without evolution: unknown keys are ignored, an overflowing int is dead,
        // and so is 1e300 in a float column (arrow-json stored it as infinity).
        let decoded = int_decoder().decode(&records).unwrap();
        assert!(decoded.evolution.is_none());
        let dead: Vec<_> = decoded.dead.iter().map(|d| d.record.offset).collect();
        assert_eq!(dead, vec![1, 4]);
        assert_eq!(decoded.rows.num_columns(), 2 + KAFKA_COLUMNS.len());
    }

    #[test]
    fn a_batch_without_new_keys_needs_no_evolution() {
        let records: Vec<_> = (0..3).map(|i| record(i, Some(GOOD))).collect();
        let decoded = decoder()
            .with_schema_evolution(true)
            .decode(&records)
            .unwrap();
        assert!(decoded.evolution.is_none() && decoded.dead.is_empty());
        assert_eq!(decoded.rows.num_rows(), 3);
    }

    #[test]
    fn absurd_producer_timestamps_become_null() {
        let mut r = record(0, Some(GOOD));
        r.timestamp_ms = Some(i64::MAX / 10);
        let decoded = decoder().decode(&[r]).unwrap();
        assert_eq!(
            decoded
                .rows
                .column_by_name("_kafka_timestamp")
                .unwrap()
                .null_count(),
            1
        );
    }

    #[test]
    fn bad_records_become_dead_letters_and_nothing_is_lost() {
        let records = vec![
            record(0, Some(GOOD)),
            record(1, Some("not json {")),
            record(
                2,
                Some(r#"{"event_time": "2023-10-27 10:00:00", "unit_price": 1}"#),
            ),
            record(
                3,
                Some(
                    r#"{"event_time": "2023-10-27 10:00:00", "store_id": "one", "unit_price": 1}"#,
                ),
            ),
            record(4, Some("")),
            record(5, Some("[1, 2]")),
            record(6, Some(&format!("{GOOD}{GOOD}"))),
            record(7, Some(GOOD)),
        ];
        let decoded = decoder().decode(&records).unwrap();
        let offsets = decoded.rows.column_by_name("_kafka_offset").unwrap();
        assert_eq!(offsets.as_primitive::<Int64Type>().values(), &[0, 7]);
        let dead: Vec<_> = decoded
            .dead
            .iter()
            .map(|d| (d.record.offset, d.stage))
            .collect();
        assert_eq!(
            dead,
            vec![
                (1, Stage::Json),
                (2, Stage::Schema),
                (3, Stage::Schema),
                (4, Stage::Empty),
                (5, Stage::Json),
                (6, Stage::Json),
            ]
        );
        assert!(
            decoded.dead[1].error.contains("store_id"),
            "{}",
            decoded.dead[1].error
        );
        assert_eq!(decoded.rows.num_rows() + decoded.dead.len(), records.len());
        let table = dead_letter_batch(&decoded.dead).unwrap();
        assert_eq!(table.num_rows(), 6);
        let values = table.column_by_name("value").unwrap().as_binary::<i32>();
        assert_eq!(values.value(0), b"not json {");
        assert!(values.value(3).is_empty(), "an empty value stays empty");
    }

    /// Regression: a number in a timestamp column was read as µs (1970-01-20).
    /// It is epoch milliseconds, as Iceberg's Kafka Connect sink reads it.
    #[test]
    fn a_number_in_a_timestamp_column_is_epoch_milliseconds_not_1970() {
        let value = r#"{"event_time": 1698400800000, "store_id": 1, "unit_price": 450.00}"#;
        let decoded = decoder().decode(&[record(0, Some(value))]).unwrap();
        assert!(decoded.dead.is_empty(), "{:?}", decoded.dead);
        let times = decoded.rows.column_by_name("event_time").unwrap();
        // 2023-10-27 10:00:00 UTC.
        assert_eq!(
            times.as_primitive::<TimestampMicrosecondType>().value(0),
            1_698_400_800_000_000
        );
    }

    /// Regression: 2.999 into decimal(10,2) was stored as 2.99 (truncated).
    #[test]
    fn extra_decimals_are_a_dead_letter_never_truncated() {
        let value = r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "unit_price": 2.999}"#;
        let decoded = decoder()
            .decode(&[record(0, Some(value)), record(1, Some(GOOD))])
            .unwrap();
        assert_eq!(decoded.rows.num_rows(), 1);
        assert_eq!(decoded.dead.len(), 1);
        assert_eq!(decoded.dead[0].record.offset, 0);
        assert!(
            decoded.dead[0]
                .error
                .contains("more decimals than the column's scale"),
            "{}",
            decoded.dead[0].error
        );
    }

    /// Regression: "2023-10-27T00:30:00+02:00" into a zone-less timestamp column was
    /// stored as 2023-10-26 22:30 (converted to UTC); the wall clock stays.
    #[test]
    fn a_zoned_string_keeps_its_wall_clock_in_a_timestamp_column() {
        let value =
            r#"{"event_time": "2023-10-27T00:30:00+02:00", "store_id": 1, "unit_price": 1}"#;
        let decoded = decoder().decode(&[record(0, Some(value))]).unwrap();
        assert!(decoded.dead.is_empty(), "{:?}", decoded.dead);
        let times = decoded.rows.column_by_name("event_time").unwrap();
        // 2023-10-27 00:30:00.
        assert_eq!(
            times.as_primitive::<TimestampMicrosecondType>().value(0),
            1_698_366_600_000_000
        );
    }

    /// Regression: tombstones were dead letters (stage "empty"), counted as errors.
    #[test]
    fn tombstones_are_counted_and_skipped_not_dead_lettered() {
        let mut records: Vec<_> = (0..9).map(|i| record(i, None)).collect();
        records.push(record(9, Some(GOOD)));
        let decoded = decoder().decode(&records).unwrap();
        assert!(decoded.dead.is_empty(), "{:?}", decoded.dead);
        assert_eq!(decoded.tombstones, 9);
        let offsets = decoded.rows.column_by_name("_kafka_offset").unwrap();
        assert_eq!(offsets.as_primitive::<Int64Type>().values(), &[9]);
    }
}
