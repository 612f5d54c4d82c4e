//! The decoder as a whole: positions, dead letters, evolution, tombstones, and the
//! regressions of the issue's inputs.

#![allow(clippy::unwrap_used)]

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

const GOOD: &str = r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "unit_price": 450.00}"#;

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
            Some(r#"{"event_time": "2023-10-27 10:00:00", "store_id": "one", "unit_price": 1}"#),
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
    let value = r#"{"event_time": "2023-10-27T00:30:00+02:00", "store_id": 1, "unit_price": 1}"#;
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
