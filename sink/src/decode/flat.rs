//! The fast tier: a decoder specialised to flat event schemas, one pass over each
//! message straight into Arrow builders, with no tape and no per-value string
//! copies, for a whole batch at once.
//!
//! # Contract: the same rows as the checked tier, or none
//!
//! Every value goes through the input rules ([`super::rules`]), as in the checked
//! tier ([`super::checked`]); this decoder only reads JSON faster. It accepts a
//! batch only when every message is clean: one JSON object (RFC 8259, whitespace
//! around it), no duplicate keys, every value fitting its column, every required
//! column present. For anything else it gives up on the whole batch ([`None`]) and
//! the caller decodes the batch record by record with the checked tier, which finds
//! the dead letters. Other keys are skipped (their values still checked to be valid
//! JSON), or, with `strict` (schema evolution on), make it give up so the caller
//! can evolve.
//!
//! The agreement tests (`super::agreement`) hold both tiers to the same rows and
//! the same dead letters for every column type and kind of JSON value.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::column::Column;
use super::cursor::{Cursor, GiveUp, Scalar, Step};
use super::rules::{Kind, Value};

/// Decodes flat JSON events of one schema (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct FlatDecoder {
    schema: SchemaRef,
    names: Vec<Box<str>>,
    kinds: Vec<Kind>,
    /// Bit `i` set: column `i` may be null.
    nullable: u64,
    strict: bool,
}

impl FlatDecoder {
    /// A decoder for `schema`, or `None` when a column's type is outside the input
    /// rules (or there are more than 64 columns).
    pub(crate) fn new(schema: &SchemaRef, strict: bool) -> Option<Self> {
        if schema.fields().len() > 64 {
            return None;
        }
        let mut nullable = 0u64;
        let mut kinds = Vec::with_capacity(schema.fields().len());
        for (i, field) in schema.fields().iter().enumerate() {
            kinds.push(Kind::of(field.data_type())?);
            if field.is_nullable() {
                nullable |= 1 << i;
            }
        }
        Some(Self {
            schema: schema.clone(),
            names: schema
                .fields()
                .iter()
                .map(|f| f.name().as_str().into())
                .collect(),
            kinds,
            nullable,
            strict,
        })
    }

    /// One row per message, in order; `None` as soon as one message is not clean
    /// (the caller then decodes the batch record by record).
    pub(crate) fn decode<'a>(
        &self,
        messages: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> Option<RecordBatch> {
        let capacity = messages.len();
        let mut columns: Vec<Column> = self
            .kinds
            .iter()
            .map(|kind| Column::new(kind, capacity))
            .collect();
        for message in messages {
            self.decode_one(message, &mut columns).ok()?;
        }
        debug_assert!(columns.iter().all(|c| c.len() == capacity));
        let arrays = columns
            .into_iter()
            .map(Column::finish)
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        RecordBatch::try_new(self.schema.clone(), arrays).ok()
    }

    fn decode_one(&self, message: &[u8], columns: &mut [Column]) -> Step<()> {
        let mut json = Cursor::new(message);
        let mut seen = 0u64;
        // Keys usually come in schema order: try the column after the last match first.
        let mut next = 0usize;
        json.expect(b'{')?;
        if !json.eat(b'}') {
            loop {
                let key = json.key()?;
                json.expect(b':')?;
                match self.column_of(&key, next) {
                    Some(i) => {
                        let bit = 1u64 << i;
                        if seen & bit != 0 {
                            return Err(GiveUp); // a duplicate key
                        }
                        seen |= bit;
                        self.append(i, json.scalar()?, &mut columns[i])?;
                        next = i + 1;
                    }
                    None if self.strict => return Err(GiveUp),
                    None => {
                        std::str::from_utf8(&key).map_err(|_| GiveUp)?;
                        json.skip_value(0)?;
                    }
                }
                if json.eat(b'}') {
                    break;
                }
                json.expect(b',')?;
            }
        }
        json.end()?;
        let missing = !seen & low_bits(columns.len());
        if missing & !self.nullable != 0 {
            return Err(GiveUp);
        }
        if missing != 0 {
            for (i, column) in columns.iter_mut().enumerate() {
                if missing & (1 << i) != 0 {
                    column.append_null().map_err(|_| GiveUp)?;
                }
            }
        }
        Ok(())
    }

    /// Append the value of column `i`, when it fits.
    fn append(&self, i: usize, value: Scalar<'_>, column: &mut Column) -> Step<()> {
        let kind = &self.kinds[i];
        match (&value, kind) {
            (Scalar::Null, _) if self.nullable & (1 << i) != 0 => column.append_null(),
            // Strings as they are, checked to be UTF-8 with the whole column.
            (Scalar::String(text), Kind::Utf8) => column.append_text(text),
            _ => match kind.convert(value.json()).map_err(|_| GiveUp)? {
                Value::Text => match &value {
                    Scalar::String(text) => column.append_text(text),
                    _ => return Err(GiveUp),
                },
                value => column.append(value),
            },
        }
        .map_err(|_| GiveUp)
    }

    /// The column named `key` (raw bytes: names are UTF-8, so a match is too).
    fn column_of(&self, key: &[u8], next: usize) -> Option<usize> {
        if self
            .names
            .get(next)
            .is_some_and(|name| name.as_bytes() == key)
        {
            return Some(next);
        }
        self.names.iter().position(|name| name.as_bytes() == key)
    }
}

fn low_bits(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use arrow::json::ReaderBuilder;

    use super::super::checked::CheckedDecoder;
    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(
                "event_time",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("store_id", DataType::Int32, false),
            Field::new("product_id", DataType::Utf8, false),
            Field::new("unit_price", DataType::Decimal128(10, 2), true),
            Field::new("quantity", DataType::Int64, true),
            Field::new("score", DataType::Float64, true),
            Field::new("ratio", DataType::Float32, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("day", DataType::Date32, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                true,
            ),
        ]))
    }

    fn shown(messages: &[&[u8]]) -> Vec<String> {
        messages
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect()
    }

    /// The contract: whatever the fast tier accepts, the checked tier accepts too,
    /// with the same rows; whatever it gives up on, the checked tier refuses at
    /// least one record of.
    fn assert_agrees(messages: &[&[u8]]) -> bool {
        let schema = schema();
        let (rows, outcomes) = CheckedDecoder::new(&schema)
            .unwrap()
            .decode(messages.iter().copied())
            .unwrap();
        let all_rows = outcomes.iter().all(Result::is_ok);
        let mut accepted = false;
        for strict in [false, true] {
            let flat = FlatDecoder::new(&schema, strict).unwrap();
            match flat.decode(messages.iter().copied()) {
                Some(ours) => {
                    assert!(
                        all_rows,
                        "accepted what the checked tier refuses: {:?} {outcomes:?}",
                        shown(messages)
                    );
                    assert_eq!(ours, rows, "{:?}", shown(messages));
                    accepted = true;
                }
                // Strict mode also gives up on unknown keys (for schema evolution).
                None if strict => {}
                None => assert!(!all_rows, "gave up on clean records: {:?}", shown(messages)),
            }
        }
        accepted
    }

    const BASE: &str = r#"{"event_time": "2023-10-27 10:00:00", "store_id": 7, "product_id": "P-1", "unit_price": 12.5}"#;

    #[test]
    fn accepts_typical_events_and_matches_the_checked_tier() {
        let accepted = [
            BASE,
            r#"{"event_time":"2023-10-27T10:00:00.123456","store_id":-7,"product_id":"","unit_price":-0.01,"quantity":9007199254740993,"score":1e-7,"ratio":0.1,"ok":true,"day":"2024-02-29","at":"1969-12-31 23:59:59.5Z"}"#,
            " {\"store_id\":2147483647 ,\n\"product_id\":\"caf\u{e9} \\\"q\\\" \\u00e9\\ud83d\\ude00\\n\\/\" , \"event_time\":\"0001-01-01 00:00:00\", \"unit_price\":null, \"ok\":false}\t",
            r#"{"event_time": "9999-12-31 23:59:59.999999", "store_id": -2147483648, "product_id": "x", "extra": {"a": [1, {"b": null}, "s"], "c": -1.5e3}, "unit_price": 99999999.99}"#,
            r#"{"event_time": "2000-03-01 00:00:00", "store_id": 0, "product_id": "x", "score": 5, "ratio": 3.4028234e38, "quantity": -9223372036854775808}"#,
            r#"{"event_time": 1698400800000, "store_id": 1e3, "product_id": "x", "unit_price": 1e2, "at": "2023-10-27T00:30:00+02:00"}"#,
        ];
        for message in accepted {
            assert!(assert_agrees(&[message.as_bytes()]), "gave up on {message}");
        }
        let all: Vec<&[u8]> = accepted.iter().map(|m| m.as_bytes()).collect();
        assert!(assert_agrees(&all));
    }

    #[test]
    fn gives_up_on_records_the_checked_tier_refuses() {
        let outside = [
            "",
            "[1]",
            "{} {}",
            r#"{"store_id": 1}"#, // required columns missing
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "x", "store_id": 2}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": "1", "product_id": "x"}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1.5, "product_id": "x"}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 2147483648, "product_id": "x"}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "x", "unit_price": 1.005}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "x", "unit_price": 100000000}"#,
            r#"{"event_time": "2023-02-29 10:00:00", "store_id": 1, "product_id": "x"}"#,
            r#"{"event_time": "2023-10-27 24:00:00", "store_id": 1, "product_id": "x"}"#,
            r#"{"event_time": "2023-10-27 10:00:00.1234567", "store_id": 1, "product_id": "x"}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 01, "product_id": "x"}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "\ud800"}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "x", "score": 1e999}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "x", "extra": [1,]}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "x",}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": null}"#,
        ];
        for message in outside {
            assert!(!assert_agrees(&[message.as_bytes()]), "accepted {message}");
        }
        let schema = schema();
        // Invalid UTF-8 inside a string.
        let mut bad = BASE.as_bytes().to_vec();
        let at = BASE.find("P-1").unwrap();
        bad[at] = 0xff;
        assert!(!assert_agrees(&[&bad]));
        // A character split across two rows' strings: the column's bytes are UTF-8
        // as a whole, but neither string is.
        let split = |s: &[u8]| {
            let mut m =
                br#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": ""#.to_vec();
            m.extend_from_slice(s);
            m.extend_from_slice(br#""}"#);
            m
        };
        let (first, second) = (split(b"x\xc3"), split(b"\xa9y"));
        assert!(!assert_agrees(&[&first, &second]));
        // An unknown key that is not UTF-8.
        let key = br#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "x", "\xff": 1}"#;
        assert!(!assert_agrees(&[key]));
        // Strict mode gives up on an unknown key, so the caller can evolve.
        let extra =
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "x", "new": 1}"#;
        assert!(FlatDecoder::new(&schema, false)
            .unwrap()
            .decode([extra.as_bytes()].into_iter())
            .is_some());
        assert!(FlatDecoder::new(&schema, true)
            .unwrap()
            .decode([extra.as_bytes()].into_iter())
            .is_none());
    }

    #[test]
    fn unsupported_column_types_leave_it_to_arrow_json() {
        let nested = Arc::new(Schema::new(vec![Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        )]));
        assert!(FlatDecoder::new(&nested, false).is_none());
        assert!(CheckedDecoder::new(&nested).is_none());
        let zoned = Arc::new(Schema::new(vec![Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("Europe/Oslo".into())),
            true,
        )]));
        assert!(FlatDecoder::new(&zoned, false).is_none());
        assert!(CheckedDecoder::new(&zoned).is_none());
    }

    /// Every single-byte corruption of a few valid events: both tiers agree.
    #[test]
    fn corrupted_events_never_decode_differently() {
        let seeds = [
            BASE.to_string(),
            r#"{"event_time":"2023-10-27T10:00:00.5","store_id":12,"product_id":"a\"b","unit_price":0.5,"quantity":-12,"score":-2.5e-3,"ratio":7,"ok":true,"day":"2020-01-31","at":"2020-01-31 01:02:03Z","x":[null,true]}"#.to_string(),
        ];
        let replacements = b" \"\\{}[],:.-+eE0159aZT\x00\xc3";
        let mut accepted = 0;
        for seed in &seeds {
            let bytes = seed.as_bytes();
            for at in 0..bytes.len() {
                for &r in replacements {
                    let mut m = bytes.to_vec();
                    m[at] = r;
                    if assert_agrees(&[&m]) {
                        accepted += 1;
                    }
                    let mut deleted = bytes.to_vec();
                    deleted.remove(at);
                    if assert_agrees(&[&deleted]) {
                        accepted += 1;
                    }
                }
            }
        }
        // The corpus exercises the accepting side too, not only giving up.
        assert!(accepted > 500, "only {accepted} corrupted events accepted");
    }

    /// Random decimals, floats and integers as text: the same values as arrow-json,
    /// an independent reader whose meaning of these inputs is the rules' meaning.
    #[test]
    fn random_numbers_match_arrow_json() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut messages = Vec::new();
        for _ in 0..5000 {
            let r = next();
            let price = format!(
                "{}.{:0width$}",
                r % 100_000,
                (r >> 20) % 100,
                width = (1 + (r >> 40) % 2) as usize
            );
            let score = f64::from_bits(next() >> 2);
            let score = if score.is_finite() && (score == 0.0 || score.abs() > 1e-300) {
                format!("{score:e}")
            } else {
                "0".into()
            };
            let ratio = format!("{}", ((next() % 2_000_000) as f64 - 1_000_000.0) / 997.0);
            messages.push(format!(
                r#"{{"event_time":"2023-10-27 10:00:00","store_id":{},"product_id":"p","unit_price":{price},"quantity":{},"score":{score},"ratio":{ratio}}}"#,
                (next() as i32),
                (next() as i64),
            ));
        }
        let all: Vec<&[u8]> = messages.iter().map(|m| m.as_bytes()).collect();
        assert!(assert_agrees(&all));
        let schema = schema();
        let mut decoder = ReaderBuilder::new(schema.clone())
            .with_batch_size(all.len())
            .build_decoder()
            .unwrap();
        for m in &all {
            assert_eq!(decoder.decode(m).unwrap(), m.len());
        }
        let theirs = decoder.flush().unwrap().unwrap();
        let ours = FlatDecoder::new(&schema, false)
            .unwrap()
            .decode(all.iter().copied())
            .unwrap();
        assert_eq!(ours, theirs);
    }
}
