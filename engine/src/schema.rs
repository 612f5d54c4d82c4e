//! Event schemas (`data/schemas/*.json`): the typed columns of a table and its
//! partitioning, turned into an Iceberg schema and partition spec.
//!
//! ```json
//! {"name": "retail_event",
//!  "fields": [{"name": "event_time", "type": "timestamp", "required": true}, …],
//!  "partition_by": ["day(event_time)"]}
//! ```
//! Types: `string`, `boolean`, `int`, `long`, `float`, `double`, `date`,
//! `timestamp` (no zone, µs), `timestamptz`, `decimal(P,S)`.

use iceberg::spec::{NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec};
use serde::Deserialize;

use icefjord_catalog::protocol::columns as kafka;

use crate::error::{EngineError, Result};

/// A parsed event schema.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSchema {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub fields: Vec<FieldSpec>,
    #[serde(default)]
    pub partition_by: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub doc: Option<String>,
}

/// The shipped schemas, compiled in so the binary needs no data directory.
pub mod builtin {
    pub const RETAIL_EVENT: &str = include_str!("../../data/schemas/retail_event.json");
    pub const CLICKSTREAM_EVENT: &str = include_str!("../../data/schemas/clickstream_event.json");
    pub const USER_ACTIVITY: &str = include_str!("../../data/schemas/user_activity.json");
}

impl EventSchema {
    /// Parse a schema; `source_name` (usually the file path) appears in errors.
    pub fn parse(source_name: &str, text: &str) -> Result<Self> {
        let schema: Self = serde_json::from_str(text).map_err(|e| EngineError::InvalidSchema {
            source_name: source_name.to_string(),
            message: format!("line {}, column {}: {e}", e.line(), e.column()),
        })?;
        schema.iceberg_schema(&[])?;
        Ok(schema)
    }

    /// The Iceberg schema: the event fields (ids 1..) followed by `extra` columns.
    pub fn iceberg_schema(&self, extra: &[FieldSpec]) -> Result<Schema> {
        let mut fields = Vec::new();
        for (i, field) in self.fields.iter().chain(extra).enumerate() {
            let ty = Type::Primitive(parse_type(&field.data_type).ok_or_else(|| {
                EngineError::InvalidSchema {
                    source_name: self.name.clone(),
                    message: format!("field {:?}: unknown type {:?}", field.name, field.data_type),
                }
            })?);
            let id = i as i32 + 1;
            let mut nested = if field.required {
                NestedField::required(id, &field.name, ty)
            } else {
                NestedField::optional(id, &field.name, ty)
            };
            if let Some(doc) = &field.doc {
                nested = nested.with_doc(doc);
            }
            fields.push(nested.into());
        }
        Schema::builder()
            .with_fields(fields)
            .build()
            .map_err(|e| EngineError::InvalidSchema {
                source_name: self.name.clone(),
                message: e.to_string(),
            })
    }

    /// The partition spec named by `partition_by` (`day(col)`, `hour(col)`,
    /// `month(col)`, `year(col)`, `identity(col)` or `col`, `bucket(N, col)`).
    pub fn partition_spec(&self, schema: &Schema) -> Result<UnboundPartitionSpec> {
        partition_spec(&self.name, &self.partition_by, schema)
    }
}

/// The columns a JSON producer's records decode into (the Kafka sink's decoder,
/// the generators' events): the table's current columns without the `_kafka_*`
/// ones, without field-id metadata, Iceberg's `binary` as Arrow `Binary`. A
/// column renamed since the producer named it keeps the producer's key
/// (`icefjord_catalog::writer_columns`); the writer puts it under its new name.
pub fn producer_schema<'n>(
    metadata: &iceberg::spec::TableMetadata,
    producer_names: impl IntoIterator<Item = &'n str>,
) -> Result<arrow::datatypes::SchemaRef> {
    use arrow::datatypes::DataType;
    let table = iceberg::arrow::schema_to_arrow_schema(metadata.current_schema())?;
    let producer = icefjord_catalog::writer_columns::producer_names(metadata, producer_names);
    let fields: Vec<arrow::datatypes::Field> = table
        .fields()
        .iter()
        .filter(|f| !kafka::ALL.contains(&f.name().as_str()))
        .map(|f| {
            let mut field = f.as_ref().clone().with_metadata(Default::default());
            if field.data_type() == &DataType::LargeBinary {
                field = field.with_data_type(DataType::Binary);
            }
            match producer.get(f.name()) {
                Some(key) => field.with_name(key),
                None => field,
            }
        })
        .collect();
    Ok(std::sync::Arc::new(arrow::datatypes::Schema::new(fields)))
}

/// The `_kafka_*` columns the sink appends to every row of a raw table (its
/// ingestion position: topic, partition, offset, and the record's timestamp).
pub fn kafka_field_specs() -> Vec<FieldSpec> {
    [
        (kafka::TOPIC, "string", true),
        (kafka::PARTITION, "int", true),
        (kafka::OFFSET, "long", true),
        (kafka::TIMESTAMP, "timestamp", false),
    ]
    .into_iter()
    .map(|(name, ty, required)| FieldSpec {
        name: name.into(),
        data_type: ty.into(),
        required,
        doc: Some("Kafka position of the record".into()),
    })
    .collect()
}

/// A partition spec from entries such as `day(event_time)`, `bucket(16, id)` or a
/// bare column (identity); `source_name` appears in errors.
pub fn partition_spec(
    source_name: &str,
    partition_by: &[String],
    schema: &Schema,
) -> Result<UnboundPartitionSpec> {
    let invalid = |message: String| EngineError::InvalidSchema {
        source_name: source_name.to_string(),
        message,
    };
    let mut builder = UnboundPartitionSpec::builder().with_spec_id(0);
    for entry in partition_by {
        let (transform, column) = parse_transform(entry)
            .ok_or_else(|| invalid(format!("partition_by {entry:?} is not a transform")))?;
        let field = schema
            .field_by_name(&column)
            .ok_or_else(|| invalid(format!("partition_by {entry:?} names no column")))?;
        let name = match transform {
            Transform::Identity => column.clone(),
            other => format!("{column}_{}", transform_name(other)),
        };
        builder = builder
            .add_partition_field(field.id, name, transform)
            .map_err(|e| invalid(e.to_string()))?;
    }
    Ok(builder.build())
}

/// The Iceberg schema for query output of `arrow` (field ids 1..), e.g. a job
/// model's table; `source_name` appears in errors. Strings of any Arrow layout
/// become `string`, timestamps of any unit become µs `timestamp`/`timestamptz`.
pub fn iceberg_schema_for(source_name: &str, arrow: &arrow::datatypes::Schema) -> Result<Schema> {
    use arrow::datatypes::DataType as A;
    let mut fields = Vec::with_capacity(arrow.fields().len());
    for (i, field) in arrow.fields().iter().enumerate() {
        let ty = match field.data_type() {
            A::Boolean => PrimitiveType::Boolean,
            A::Int8 | A::Int16 | A::Int32 | A::UInt8 | A::UInt16 => PrimitiveType::Int,
            A::Int64 | A::UInt32 => PrimitiveType::Long,
            A::Float16 | A::Float32 => PrimitiveType::Float,
            A::Float64 => PrimitiveType::Double,
            A::Decimal128(p, s) if *s >= 0 => PrimitiveType::Decimal {
                precision: u32::from(*p),
                scale: *s as u32,
            },
            A::Utf8 | A::LargeUtf8 | A::Utf8View => PrimitiveType::String,
            A::Binary | A::LargeBinary | A::BinaryView => PrimitiveType::Binary,
            A::Date32 | A::Date64 => PrimitiveType::Date,
            A::Timestamp(_, None) => PrimitiveType::Timestamp,
            A::Timestamp(_, Some(_)) => PrimitiveType::Timestamptz,
            other => {
                return Err(EngineError::InvalidSchema {
                    source_name: source_name.to_string(),
                    message: format!(
                        "column {} has type {other}, which has no Iceberg counterpart here",
                        field.name()
                    ),
                })
            }
        };
        let id = i as i32 + 1;
        let nested = if field.is_nullable() {
            NestedField::optional(id, field.name(), Type::Primitive(ty))
        } else {
            NestedField::required(id, field.name(), Type::Primitive(ty))
        };
        fields.push(nested.into());
    }
    Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| EngineError::InvalidSchema {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })
}

fn transform_name(t: Transform) -> String {
    match t {
        Transform::Bucket(n) => format!("bucket_{n}"),
        other => other.to_string(),
    }
}

fn parse_transform(entry: &str) -> Option<(Transform, String)> {
    let entry = entry.trim();
    let Some((name, rest)) = entry.split_once('(') else {
        return Some((Transform::Identity, entry.to_string()));
    };
    let args = rest.strip_suffix(')')?;
    let transform = match name.trim() {
        "identity" => Transform::Identity,
        "year" | "years" => Transform::Year,
        "month" | "months" => Transform::Month,
        "day" | "days" => Transform::Day,
        "hour" | "hours" => Transform::Hour,
        "bucket" => {
            let (n, column) = args.split_once(',')?;
            return Some((
                Transform::Bucket(n.trim().parse().ok()?),
                column.trim().to_string(),
            ));
        }
        _ => return None,
    };
    Some((transform, args.trim().to_string()))
}

fn parse_type(text: &str) -> Option<PrimitiveType> {
    let text = text.trim().to_ascii_lowercase();
    Some(match text.as_str() {
        "string" => PrimitiveType::String,
        "boolean" | "bool" => PrimitiveType::Boolean,
        "int" | "integer" => PrimitiveType::Int,
        "long" | "bigint" => PrimitiveType::Long,
        "float" => PrimitiveType::Float,
        "double" => PrimitiveType::Double,
        "date" => PrimitiveType::Date,
        "timestamp" => PrimitiveType::Timestamp,
        "timestamptz" => PrimitiveType::Timestamptz,
        "binary" => PrimitiveType::Binary,
        other => {
            let inner = other.strip_prefix("decimal(")?.strip_suffix(')')?;
            let (p, s) = inner.split_once(',')?;
            PrimitiveType::Decimal {
                precision: p.trim().parse().ok()?,
                scale: s.trim().parse().ok()?,
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn retail_schema_parses_with_day_partitioning() {
        let schema = EventSchema::parse("retail_event.json", builtin::RETAIL_EVENT).unwrap();
        let iceberg = schema.iceberg_schema(&[]).unwrap();
        assert!(iceberg.field_by_name("unit_price").is_some());
        let spec = schema.partition_spec(&iceberg).unwrap();
        assert_eq!(spec.fields().len(), 1);
        assert_eq!(spec.fields()[0].transform, Transform::Day);
    }

    #[test]
    fn every_shipped_schema_parses() {
        for (name, text) in [
            ("retail_event", builtin::RETAIL_EVENT),
            ("clickstream_event", builtin::CLICKSTREAM_EVENT),
            ("user_activity", builtin::USER_ACTIVITY),
        ] {
            let schema = EventSchema::parse(name, text).unwrap();
            let iceberg = schema.iceberg_schema(&[]).unwrap();
            schema.partition_spec(&iceberg).unwrap();
        }
    }

    #[test]
    fn unknown_types_and_fields_are_named() {
        let err = EventSchema::parse(
            "bad.json",
            r#"{"name": "x", "fields": [{"name": "a", "type": "uuidish"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"a\"") && err.contains("uuidish"), "{err}");
        let err = EventSchema::parse("bad.json", r#"{"name": "x", "fields": [], "colour": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.json") && err.contains("colour"), "{err}");
    }
}
