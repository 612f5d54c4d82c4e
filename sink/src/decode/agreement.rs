//! Both tiers against hand-written expectations: every column type the event
//! schemas allow × every kind of JSON value. For each pair, the fast tier gives
//! the expected row (or gives up), the checked tier gives the same row (or the
//! expected dead letter), and the whole decoder agrees.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Float32Type, Float64Type, Int32Type, Int64Type,
    Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use chrono::{NaiveDate, NaiveDateTime};

use super::checked::CheckedDecoder;
use super::flat::FlatDecoder;
use super::{EventDecoder, Stage};
use crate::record::SourceRecord;

/// What a value must become.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Str(&'static str),
    Bytes(&'static [u8]),
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Days of this `YYYY-MM-DD`.
    Date(&'static str),
    /// µs of this wall clock `YYYY-MM-DD HH:MM:SS[.f]` (UTC for timestamptz).
    Ts(&'static str),
    /// The unscaled decimal.
    Dec(i128),
    Null,
    /// A dead letter whose message contains this.
    Dead(&'static str),
}

use Expect::*;

const STRING: &str = "string";
const BINARY: &str = "binary";
const BOOLEAN: &str = "boolean";
const INT: &str = "int";
const LONG: &str = "long";
const FLOAT: &str = "float";
const DOUBLE: &str = "double";
const DATE: &str = "date";
const TIMESTAMP: &str = "timestamp";
const TIMESTAMPTZ: &str = "timestamptz";
const DECIMAL: &str = "decimal(10,2)";

/// (column type, required, the JSON value, the outcome).
#[rustfmt::skip]
const CASES: &[(&str, bool, &str, Expect)] = &[
    // string
    (STRING, true, r#""caf\u00e9 \"q\"""#, Str("café \"q\"")),
    (STRING, true, r#""""#, Str("")),
    (STRING, true, "1", Dead("does not take a number")),
    (STRING, true, "1.5e3", Dead("does not take a number")),
    (STRING, true, "true", Dead("does not take a boolean")),
    (STRING, true, "null", Dead("required, but the value is null")),
    (STRING, false, "null", Null),
    (STRING, true, "[1]", Dead("does not take an array")),
    (STRING, true, r#"{"a":1}"#, Dead("does not take an object")),
    // binary (hex digits, as arrow-json reads them)
    (BINARY, true, r#""00ff10""#, Bytes(&[0, 255, 16])),
    (BINARY, true, r#""""#, Bytes(&[])),
    (BINARY, true, r#""0f0""#, Dead("is not hex digits")),
    (BINARY, true, r#""zz""#, Dead("is not hex digits")),
    (BINARY, true, "12", Dead("a binary column does not take a number")),
    (BINARY, false, "null", Null),
    // boolean
    (BOOLEAN, true, "true", Bool(true)),
    (BOOLEAN, true, "false", Bool(false)),
    (BOOLEAN, true, r#""true""#, Dead("does not take a string")),
    (BOOLEAN, true, "1", Dead("does not take a number")),
    (BOOLEAN, true, "0", Dead("does not take a number")),
    (BOOLEAN, false, "null", Null),
    // int
    (INT, true, "42", Int(42)),
    (INT, true, "-2147483648", Int(-2147483648)),
    (INT, true, "2147483647", Int(2147483647)),
    (INT, true, "2147483648", Dead("out of range for int")),
    (INT, true, "-2147483649", Dead("out of range for int")),
    (INT, true, "1e3", Int(1000)),
    (INT, true, "1000.0", Int(1000)),
    (INT, true, "1.5", Dead("not a whole number")),
    (INT, true, "1.5e1", Int(15)),
    (INT, true, "1e-1", Dead("not a whole number")),
    (INT, true, "1e10", Dead("out of range for int")),
    (INT, true, "-0", Int(0)),
    (INT, true, r#""42""#, Dead("does not take a string")),
    (INT, true, "true", Dead("does not take a boolean")),
    (INT, true, "null", Dead("required, but the value is null")),
    (INT, false, "null", Null),
    // long
    (LONG, true, "9223372036854775807", Int(i64::MAX)),
    (LONG, true, "-9223372036854775808", Int(i64::MIN)),
    (LONG, true, "9223372036854775808", Dead("out of range for long")),
    (LONG, true, "123456789012345678901234567890", Dead("out of range for long")),
    (LONG, true, "1e18", Int(1_000_000_000_000_000_000)),
    (LONG, true, "1e19", Dead("out of range for long")),
    (LONG, true, "9007199254740993", Int(9_007_199_254_740_993)),
    (LONG, true, "2.5", Dead("not a whole number")),
    (LONG, true, r#""7""#, Dead("does not take a string")),
    // float
    (FLOAT, true, "0.1", Float(0.1f32 as f64)),
    (FLOAT, true, "-2.5e-3", Float(-2.5e-3f32 as f64)),
    (FLOAT, true, "7", Float(7.0)),
    (FLOAT, true, "3.4028235e38", Float(f32::MAX as f64)),
    (FLOAT, true, "1e39", Dead("out of range for float")),
    (FLOAT, true, "1e-50", Dead("too small for float")),
    (FLOAT, true, "0e-50", Float(0.0)),
    (FLOAT, true, r#""NaN""#, Dead("does not take a string")),
    (FLOAT, true, "false", Dead("does not take a boolean")),
    // double
    (DOUBLE, true, "1e300", Float(1e300)),
    (DOUBLE, true, "-0.5", Float(-0.5)),
    (DOUBLE, true, "12345678901234567890", Float(12345678901234567890.0)),
    (DOUBLE, true, "1e999", Dead("out of range for double")),
    (DOUBLE, true, "1e-400", Dead("too small for double")),
    (DOUBLE, true, r#""1.5""#, Dead("does not take a string")),
    (DOUBLE, false, "null", Null),
    // decimal(10,2)
    (DECIMAL, true, "2.99", Dec(299)),
    (DECIMAL, true, "2.999", Dead("more decimals than the column's scale")),
    (DECIMAL, true, "2.990", Dec(299)),
    (DECIMAL, true, "450", Dec(45000)),
    (DECIMAL, true, "-0.01", Dec(-1)),
    (DECIMAL, true, "1e3", Dec(100000)),
    (DECIMAL, true, "299e-2", Dec(299)),
    (DECIMAL, true, "1e-3", Dead("more decimals than the column's scale")),
    (DECIMAL, true, "99999999.99", Dec(9_999_999_999)),
    (DECIMAL, true, "100000000", Dead("more digits than decimal(10,2) holds")),
    (DECIMAL, true, "1e10", Dead("more digits than decimal(10,2) holds")),
    (DECIMAL, true, "1e40", Dead("more digits than decimal(10,2) holds")),
    (DECIMAL, true, r#""2.99""#, Dead("does not take a string")),
    (DECIMAL, true, "true", Dead("does not take a boolean")),
    (DECIMAL, false, "null", Null),
    // date
    (DATE, true, r#""2023-10-27""#, Date("2023-10-27")),
    (DATE, true, r#""2024-02-29""#, Date("2024-02-29")),
    (DATE, true, r#""2023-02-29""#, Dead("is not a date")),
    (DATE, true, r#""2023-10-27T10:00:00""#, Dead("keeps no time of day")),
    (DATE, true, r#""2023-10-27 00:00:00""#, Dead("keeps no time of day")),
    (DATE, true, r#""2023-10-27Z""#, Dead("keeps no time of day or zone")),
    (DATE, true, r#""2023-10-27+02:00""#, Dead("keeps no time of day or zone")),
    (DATE, true, r#""27/10/2023""#, Dead("is not a date")),
    (DATE, true, "19657", Dead("does not take a number")),
    (DATE, true, "true", Dead("does not take a boolean")),
    (DATE, false, "null", Null),
    // timestamp (no zone: the wall clock)
    (TIMESTAMP, true, r#""2023-10-27 10:00:00""#, Ts("2023-10-27 10:00:00")),
    (TIMESTAMP, true, r#""2023-10-27T10:00:00.123456""#, Ts("2023-10-27 10:00:00.123456")),
    (TIMESTAMP, true, r#""2023-10-27T00:30:00+02:00""#, Ts("2023-10-27 00:30:00")),
    (TIMESTAMP, true, r#""2023-10-27T00:30:00-0530""#, Ts("2023-10-27 00:30:00")),
    (TIMESTAMP, true, r#""2023-10-27T00:30:00+02""#, Ts("2023-10-27 00:30:00")),
    (TIMESTAMP, true, r#""2023-10-27T00:30:00Z""#, Ts("2023-10-27 00:30:00")),
    (TIMESTAMP, true, r#""2023-10-27T00:30:00.5000000Z""#, Ts("2023-10-27 00:30:00.5")),
    (TIMESTAMP, true, r#""2023-10-27T00:30:00.1234567""#, Dead("finer than a microsecond")),
    (TIMESTAMP, true, r#""2023-10-27T00:30:00+25:00""#, Dead("is not a timestamp")),
    (TIMESTAMP, true, r#""2023-10-27""#, Dead("has no time of day")),
    (TIMESTAMP, true, r#""2023-10-27 24:00:00""#, Dead("is not a timestamp")),
    (TIMESTAMP, true, r#""2023-10-27 23:59:60""#, Dead("is not a timestamp")),
    (TIMESTAMP, true, r#""2023-02-29 10:00:00""#, Dead("is not a timestamp")),
    (TIMESTAMP, true, r#""yesterday""#, Dead("is not a timestamp")),
    (TIMESTAMP, true, "1698400800000", Ts("2023-10-27 10:00:00")),
    (TIMESTAMP, true, "1698400800000.5", Ts("2023-10-27 10:00:00.0005")),
    (TIMESTAMP, true, "1.6984008e12", Ts("2023-10-27 10:00:00")),
    (TIMESTAMP, true, "-1000", Ts("1969-12-31 23:59:59")),
    (TIMESTAMP, true, "1698400800000.0005", Dead("finer than a microsecond")),
    (TIMESTAMP, true, "1e20", Dead("out of range for a timestamp")),
    (TIMESTAMP, true, "true", Dead("does not take a boolean")),
    (TIMESTAMP, true, "null", Dead("required, but the value is null")),
    // timestamptz (the instant, in UTC)
    (TIMESTAMPTZ, true, r#""2023-10-27T00:30:00+02:00""#, Ts("2023-10-26 22:30:00")),
    (TIMESTAMPTZ, true, r#""2023-10-27T00:30:00-05:30""#, Ts("2023-10-27 06:00:00")),
    (TIMESTAMPTZ, true, r#""2023-10-27 10:00:00""#, Ts("2023-10-27 10:00:00")),
    (TIMESTAMPTZ, true, r#""2023-10-27 10:00:00Z""#, Ts("2023-10-27 10:00:00")),
    (TIMESTAMPTZ, true, "1698400800000", Ts("2023-10-27 10:00:00")),
    (TIMESTAMPTZ, true, r#""2023-10-27""#, Dead("has no time of day")),
    (TIMESTAMPTZ, false, "null", Null),
];

fn data_type(name: &str) -> DataType {
    match name {
        STRING => DataType::Utf8,
        BINARY => DataType::Binary,
        BOOLEAN => DataType::Boolean,
        INT => DataType::Int32,
        LONG => DataType::Int64,
        FLOAT => DataType::Float32,
        DOUBLE => DataType::Float64,
        DATE => DataType::Date32,
        TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        DECIMAL => DataType::Decimal128(10, 2),
        other => panic!("no column type {other}"),
    }
}

/// A schema with the column under test, `v`, and a required string `id` beside it.
fn schema(column: &str, required: bool) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("v", data_type(column), !required),
    ]))
}

fn micros(text: &str) -> i64 {
    let format = if text.contains('.') {
        "%Y-%m-%d %H:%M:%S%.f"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    NaiveDateTime::parse_from_str(text, format)
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

/// Whether row 0's `v` is what `expect` says.
fn check(batch: &RecordBatch, expect: Expect, case: &str) {
    let v = batch.column_by_name("v").unwrap();
    assert_eq!(batch.num_rows(), 1, "{case}");
    match expect {
        Null => assert!(v.is_null(0), "{case}: not null"),
        Str(s) => assert_eq!(v.as_string::<i32>().value(0), s, "{case}"),
        Bytes(b) => assert_eq!(v.as_binary::<i32>().value(0), b, "{case}"),
        Bool(b) => assert_eq!(v.as_boolean().value(0), b, "{case}"),
        Int(i) => match v.data_type() {
            DataType::Int32 => assert_eq!(
                i64::from(v.as_primitive::<Int32Type>().value(0)),
                i,
                "{case}"
            ),
            _ => assert_eq!(v.as_primitive::<Int64Type>().value(0), i, "{case}"),
        },
        Float(f) => match v.data_type() {
            DataType::Float32 => assert_eq!(
                f64::from(v.as_primitive::<Float32Type>().value(0)),
                f,
                "{case}"
            ),
            _ => assert_eq!(v.as_primitive::<Float64Type>().value(0), f, "{case}"),
        },
        Date(d) => {
            let days = (NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap()
                - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
            .num_days();
            assert_eq!(
                i64::from(v.as_primitive::<Date32Type>().value(0)),
                days,
                "{case}"
            );
        }
        Ts(t) => assert_eq!(
            v.as_primitive::<TimestampMicrosecondType>().value(0),
            micros(t),
            "{case}"
        ),
        Dec(d) => assert_eq!(v.as_primitive::<Decimal128Type>().value(0), d, "{case}"),
        Dead(_) => panic!("{case}: a row where a dead letter was expected"),
    }
}

#[test]
fn both_tiers_give_the_same_row_or_the_same_dead_letter_for_every_type_and_value() {
    for &(column, required, json, expect) in CASES {
        let case = format!("{column} (required: {required}) ← {json}");
        let schema = schema(column, required);
        let message = format!(r#"{{"id": "x", "v": {json}}}"#);
        // Fast tier: the row, or it gives up on a value that does not fit.
        let fast = FlatDecoder::new(&schema, false)
            .unwrap()
            .decode([message.as_bytes()].into_iter());
        // Checked tier: the row, or the dead letter.
        let (rows, outcomes) = CheckedDecoder::new(&schema)
            .unwrap()
            .decode([message.as_bytes()].into_iter())
            .unwrap();
        // The whole decoder.
        let decoded = EventDecoder::new(schema.clone())
            .decode(&[record(0, &message)])
            .unwrap();
        match expect {
            Dead(text) => {
                assert!(fast.is_none(), "{case}: the fast tier accepted it");
                let (stage, error) = outcomes[0].clone().unwrap_err();
                assert_eq!(stage, Stage::Schema, "{case}");
                assert!(
                    error.contains(text) && error.contains("column v"),
                    "{case}: {error}"
                );
                let dead = &decoded.dead[0];
                assert_eq!((dead.record.offset, &dead.error), (0, &error), "{case}");
            }
            expect => {
                let fast = fast.unwrap_or_else(|| panic!("{case}: the fast tier gave up"));
                check(&fast, expect, &case);
                assert_eq!(outcomes, vec![Ok(())], "{case}");
                assert_eq!(rows, fast, "{case}: the tiers disagree");
                assert!(decoded.dead.iter().all(|d| d.record.offset != 0), "{case}");
                check(&decoded.rows.slice(0, 1), expect, &case);
            }
        }
    }
}

fn record(offset: i64, value: &str) -> SourceRecord {
    SourceRecord {
        topic: "t".into(),
        partition: 0,
        offset,
        timestamp_ms: None,
        key: None,
        value: Some(bytes::Bytes::copy_from_slice(value.as_bytes())),
    }
}

/// Record-level faults: both tiers refuse them, the checked one says why.
#[test]
fn malformed_records_are_refused_by_both_tiers_with_a_reason() {
    let schema = schema(INT, false);
    let cases: &[(&str, Stage, &str)] = &[
        (
            r#"{"id": "x", "v": 1, "v": 2}"#,
            Stage::Schema,
            "appears more than once",
        ),
        (
            r#"{"v": 1}"#,
            Stage::Schema,
            "column id: required, but the key is missing",
        ),
        (
            "[1, 2]",
            Stage::Json,
            "expected one JSON object, found an array",
        ),
        (
            "\"text\"",
            Stage::Json,
            "expected one JSON object, found a string",
        ),
        ("not json", Stage::Json, "not JSON"),
        (r#"{"id": "x"} {"id": "y"}"#, Stage::Json, "not JSON"),
        (r#"{"id": "x",}"#, Stage::Json, "not JSON"),
        (r#"{"id": "\ud800"}"#, Stage::Json, "not JSON"),
        ("", Stage::Empty, "empty"),
    ];
    for &(message, stage, text) in cases {
        let fast = FlatDecoder::new(&schema, false)
            .unwrap()
            .decode([message.as_bytes()].into_iter());
        assert!(fast.is_none(), "the fast tier accepted {message}");
        let (_, outcomes) = CheckedDecoder::new(&schema)
            .unwrap()
            .decode([message.as_bytes()].into_iter())
            .unwrap();
        let (got_stage, error) = outcomes[0].clone().unwrap_err();
        assert_eq!(got_stage, stage, "{message}: {error}");
        assert!(error.contains(text), "{message}: {error}");
    }
}
