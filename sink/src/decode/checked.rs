//! The checked tier: records one by one, each either a row or a dead letter with
//! the reason. JSON is read by serde_json (keeping each value's raw text, so no
//! number passes through a float), values go through the input rules
//! ([`super::rules`]), exactly as in the fast tier. arrow-json is not involved: its
//! readings of numbers in timestamp columns (µs), of zoned strings in zone-less
//! columns (converted to UTC), of fractions in integer columns and of extra
//! decimals are not the sink's rules.

use std::borrow::Cow;
use std::fmt;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::column::Column;
use super::cursor::Scalar;
use super::rules::{Kind, Value};
use super::Stage;

/// Decodes events of one schema record by record (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct CheckedDecoder {
    schema: SchemaRef,
    kinds: Vec<Kind>,
}

/// What a record became.
pub(crate) type Outcome = Result<(), (Stage, String)>;

/// One column's value of a record, before it is appended.
enum Staged {
    Null,
    Text(Vec<u8>),
    Value(Value),
}

impl CheckedDecoder {
    /// A decoder for `schema`, or `None` when a column's type is outside the rules.
    pub(crate) fn new(schema: &SchemaRef) -> Option<Self> {
        let kinds = schema
            .fields()
            .iter()
            .map(|f| Kind::of(f.data_type()))
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            schema: schema.clone(),
            kinds,
        })
    }

    /// The rows of the messages that fit (in order) and, per message, whether it
    /// became a row or why not.
    pub(crate) fn decode<'a>(
        &self,
        messages: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> Result<(RecordBatch, Vec<Outcome>), ArrowError> {
        let mut columns: Vec<Column> = self
            .kinds
            .iter()
            .map(|kind| Column::new(kind, messages.len()))
            .collect();
        let mut outcomes = Vec::with_capacity(messages.len());
        for message in messages {
            let outcome = match self.stage(message) {
                Ok(row) => {
                    for (column, value) in columns.iter_mut().zip(row) {
                        match value {
                            Staged::Null => column.append_null()?,
                            Staged::Text(text) => column.append_text(&text)?,
                            Staged::Value(value) => column.append(value)?,
                        }
                    }
                    Ok(())
                }
                Err(why) => Err(why),
            };
            outcomes.push(outcome);
        }
        let arrays = columns
            .into_iter()
            .map(Column::finish)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((RecordBatch::try_new(self.schema.clone(), arrays)?, outcomes))
    }

    /// The values of one message, one per column, or why it has none.
    fn stage(&self, message: &[u8]) -> Result<Vec<Staged>, (Stage, String)> {
        if message.is_empty() {
            return Err((Stage::Empty, "the record's value is empty".into()));
        }
        let members = match serde_json::from_slice::<Members<'_>>(message) {
            Ok(members) => members.0,
            Err(e) => {
                return Err((
                    Stage::Json,
                    match serde_json::from_slice::<serde_json::Value>(message) {
                        Ok(other) => format!(
                            "expected one JSON object, found {}",
                            super::json_kind(&other)
                        ),
                        Err(_) => format!("not JSON: {e}"),
                    },
                ))
            }
        };
        let mut row = Vec::with_capacity(self.kinds.len());
        for (field, kind) in self.schema.fields().iter().zip(&self.kinds) {
            let name = field.name();
            let mut found = members.iter().filter(|(key, _)| key == name);
            let raw = found.next().map(|(_, raw)| *raw);
            if found.next().is_some() {
                return Err((Stage::Schema, format!("key {name} appears more than once")));
            }
            let refuse = |why: String| (Stage::Schema, format!("column {name}: {why}"));
            let value = raw
                .map(scalar)
                .transpose()
                .map_err(|e| (Stage::Json, format!("not JSON: {e}")))?;
            let staged = match value {
                None | Some(Scalar::Null) if field.is_nullable() => Staged::Null,
                None => return Err(refuse("required, but the key is missing".into())),
                Some(Scalar::Null) => return Err(refuse("required, but the value is null".into())),
                Some(value) => match kind.convert(value.json()).map_err(refuse)? {
                    Value::Text => match value {
                        Scalar::String(text) => Staged::Text(text.into_owned()),
                        _ => return Err(refuse("not a string".into())),
                    },
                    converted => Staged::Value(converted),
                },
            };
            row.push(staged);
        }
        Ok(row)
    }
}

/// The value of a raw JSON value (valid JSON: serde_json checked it).
fn scalar(raw: &RawValue) -> Result<Scalar<'_>, String> {
    let text = raw.get();
    Ok(match text.as_bytes().first() {
        Some(b'n') => Scalar::Null,
        Some(b't') => Scalar::Bool(true),
        Some(b'f') => Scalar::Bool(false),
        Some(b'"') => Scalar::String(Cow::Owned(
            serde_json::from_str::<String>(text)
                .map_err(|e| e.to_string())?
                .into_bytes(),
        )),
        Some(b'[') => Scalar::Array,
        Some(b'{') => Scalar::Object,
        _ => Scalar::Number(text),
    })
}

/// An object's members in order, duplicates kept, values as raw text.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;

        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }

        deserializer.deserialize_map(MembersVisitor)
    }
}
