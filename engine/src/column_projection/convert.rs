//! How one column of a data file becomes a column of the table: the plan
//! ([`Conversion`], made once per file schema) and the [`FieldIdProjection`]
//! expression that applies it to each batch.
//!
//! Children of structs are matched by field id at every depth (renamed,
//! reordered, dropped and added struct fields); lists and maps convert their
//! elements, keys and values; primitives are cast for the promotions the Iceberg
//! spec allows (`int → long`, `float → double`, `decimal(P,S) → decimal(P',S)`)
//! and for Arrow layouts of the same type (`Utf8 → Utf8View`).

use std::any::Any;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, GenericListArray, MapArray, OffsetSizeTrait, RecordBatch, StructArray,
};
use arrow::compute::{can_cast_types, cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema};
use arrow::error::ArrowError;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use iceberg::spec::{Literal, NestedField, PrimitiveLiteral, Type};

use super::file_ids::FileField;

/// How a file's array becomes the table's (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Conversion {
    /// The file's array is already the table's.
    Same,
    /// Cast to the table's type (a promotion, or another layout of the type).
    Cast(DataType),
    /// A struct rebuilt field by field, as `fields`.
    Struct {
        fields: Fields,
        children: Vec<Child>,
    },
    /// A list (`i32` or `i64` offsets, as in the file) with converted elements.
    List {
        element: FieldRef,
        conversion: Box<Conversion>,
    },
    /// A map with converted keys and values, its entries as `entries`.
    Map {
        entries: FieldRef,
        key: Box<Conversion>,
        value: Box<Conversion>,
    },
}

/// One field of a rebuilt struct.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Child {
    /// The file's child at `index`, converted.
    From {
        index: usize,
        conversion: Conversion,
    },
    /// Not in the file: the field's initial default, or nulls.
    Missing(MissingValue),
}

/// The value of a field a file does not have: its `initial-default` when it has
/// one (Iceberg v3), else null.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MissingValue(pub(crate) ScalarValue);

impl MissingValue {
    pub(crate) fn of(field: &NestedField, data_type: &DataType) -> DfResult<Self> {
        let value = field
            .initial_default
            .as_ref()
            .and_then(|d| scalar_of(d, data_type));
        Ok(Self(match value {
            Some(value) => value,
            None => ScalarValue::Null.cast_to(data_type)?,
        }))
    }

    fn array(&self, rows: usize) -> DfResult<ArrayRef> {
        self.0.to_array_of_size(rows)
    }
}

/// An Iceberg literal as a value of the column's Arrow type (`None`: a pairing
/// this reader does not know, read as null).
fn scalar_of(literal: &Literal, data_type: &DataType) -> Option<ScalarValue> {
    use arrow::datatypes::TimeUnit;
    let Literal::Primitive(value) = literal else {
        return None;
    };
    let scalar = match (value, data_type) {
        (PrimitiveLiteral::Boolean(v), DataType::Boolean) => ScalarValue::Boolean(Some(*v)),
        (PrimitiveLiteral::Int(v), DataType::Int32) => ScalarValue::Int32(Some(*v)),
        (PrimitiveLiteral::Int(v), DataType::Date32) => ScalarValue::Date32(Some(*v)),
        (PrimitiveLiteral::Int(v), DataType::Int64) => ScalarValue::Int64(Some(i64::from(*v))),
        (PrimitiveLiteral::Long(v), DataType::Int64) => ScalarValue::Int64(Some(*v)),
        (PrimitiveLiteral::Long(v), DataType::Time64(TimeUnit::Microsecond)) => {
            ScalarValue::Time64Microsecond(Some(*v))
        }
        (PrimitiveLiteral::Long(v), DataType::Timestamp(TimeUnit::Microsecond, tz)) => {
            ScalarValue::TimestampMicrosecond(Some(*v), tz.clone())
        }
        (PrimitiveLiteral::Long(v), DataType::Timestamp(TimeUnit::Nanosecond, tz)) => {
            ScalarValue::TimestampNanosecond(Some(*v), tz.clone())
        }
        (PrimitiveLiteral::Float(v), DataType::Float32) => ScalarValue::Float32(Some(v.0)),
        (PrimitiveLiteral::Double(v), DataType::Float64) => ScalarValue::Float64(Some(v.0)),
        (PrimitiveLiteral::Float(v), DataType::Float64) => {
            ScalarValue::Float64(Some(f64::from(v.0)))
        }
        (PrimitiveLiteral::Int128(v), DataType::Decimal128(p, s)) => {
            ScalarValue::Decimal128(Some(*v), *p, *s)
        }
        (PrimitiveLiteral::String(v), _) => {
            ScalarValue::Utf8(Some(v.clone())).cast_to(data_type).ok()?
        }
        (PrimitiveLiteral::Binary(v), _) => ScalarValue::Binary(Some(v.clone()))
            .cast_to(data_type)
            .ok()?,
        _ => return None,
    };
    Some(scalar)
}

/// The conversion of the file column `file` (Arrow field `physical`, ids
/// `ids`) to the table column `table` (Iceberg field `iceberg`, Arrow field
/// `table`). An error names the column and both types.
pub(crate) fn plan(
    iceberg: &NestedField,
    table: &Field,
    physical: &Field,
    ids: &FileField,
) -> DfResult<Conversion> {
    let mismatch = || {
        datafusion::error::DataFusionError::Execution(format!(
            "column {} (field id {}) is {} in the table but {} in the data file",
            iceberg.name,
            iceberg.id,
            table.data_type(),
            physical.data_type()
        ))
    };
    let conversion = match (
        &*iceberg.field_type,
        table.data_type(),
        physical.data_type(),
    ) {
        (Type::Struct(s), DataType::Struct(fields), DataType::Struct(file_fields)) => {
            let mut children = Vec::with_capacity(fields.len());
            for (child, target) in s.fields().iter().zip(fields.iter()) {
                let found = ids.children.iter().position(|c| c.id == Some(child.id));
                children.push(match found {
                    Some(index) => Child::From {
                        index,
                        conversion: plan(child, target, &file_fields[index], &ids.children[index])?,
                    },
                    None => Child::Missing(MissingValue::of(child, target.data_type())?),
                });
            }
            let in_place = children.len() == file_fields.len()
                && children.iter().enumerate().all(|(i, c)| {
                    matches!(c, Child::From { index, conversion: Conversion::Same } if *index == i)
                });
            if in_place && table.data_type() == physical.data_type() {
                Conversion::Same
            } else {
                Conversion::Struct {
                    fields: fields.clone(),
                    children,
                }
            }
        }
        (Type::List(l), DataType::List(element), DataType::List(file_element))
        | (Type::List(l), DataType::LargeList(element), DataType::LargeList(file_element)) => {
            let child = ids.children.first().ok_or_else(mismatch)?;
            let conversion = plan(&l.element_field, element, file_element, child)?;
            if conversion == Conversion::Same && table.data_type() == physical.data_type() {
                Conversion::Same
            } else {
                Conversion::List {
                    element: element.clone(),
                    conversion: Box::new(conversion),
                }
            }
        }
        (Type::Map(m), DataType::Map(entries, _), DataType::Map(file_entries, _)) => {
            let (DataType::Struct(kv), DataType::Struct(file_kv)) =
                (entries.data_type(), file_entries.data_type())
            else {
                return Err(mismatch());
            };
            let (Some(key), Some(value), Some(file_key), Some(file_value)) =
                (kv.first(), kv.get(1), file_kv.first(), file_kv.get(1))
            else {
                return Err(mismatch());
            };
            let (Some(key_ids), Some(value_ids)) = (ids.children.first(), ids.children.get(1))
            else {
                return Err(mismatch());
            };
            let key = plan(&m.key_field, key, file_key, key_ids)?;
            let value = plan(&m.value_field, value, file_value, value_ids)?;
            if key == Conversion::Same
                && value == Conversion::Same
                && table.data_type() == physical.data_type()
            {
                Conversion::Same
            } else {
                Conversion::Map {
                    entries: entries.clone(),
                    key: Box::new(key),
                    value: Box::new(value),
                }
            }
        }
        (Type::Primitive(_), to, from) if to == from => Conversion::Same,
        (Type::Primitive(_), to, from) if can_cast_types(from, to) => Conversion::Cast(to.clone()),
        _ => return Err(mismatch()),
    };
    Ok(conversion)
}

/// Casts fail on a value that does not fit rather than making it null.
const STRICT: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: arrow::util::display::FormatOptions::new(),
};

impl Conversion {
    /// Apply this conversion to `array` (the file's column).
    pub(crate) fn apply(&self, array: &ArrayRef) -> DfResult<ArrayRef> {
        Ok(match self {
            Self::Same => array.clone(),
            Self::Cast(to) => cast_with_options(array, to, &STRICT)?,
            Self::Struct { fields, children } => {
                let file = array
                    .as_struct_opt()
                    .ok_or_else(|| not_a("struct", array))?;
                let columns = children
                    .iter()
                    .map(|child| match child {
                        Child::From { index, conversion } => conversion.apply(file.column(*index)),
                        Child::Missing(value) => value.array(file.len()),
                    })
                    .collect::<DfResult<Vec<_>>>()?;
                Arc::new(StructArray::try_new_with_length(
                    fields.clone(),
                    columns,
                    file.nulls().cloned(),
                    file.len(),
                )?)
            }
            Self::List {
                element,
                conversion,
            } => match array.data_type() {
                DataType::LargeList(_) => list::<i64>(array, element, conversion)?,
                _ => list::<i32>(array, element, conversion)?,
            },
            Self::Map {
                entries,
                key,
                value,
            } => {
                let file = array.as_map_opt().ok_or_else(|| not_a("map", array))?;
                let DataType::Struct(kv) = entries.data_type() else {
                    return Err(not_a("map", array).into());
                };
                let columns = vec![key.apply(file.keys())?, value.apply(file.values())?];
                let pairs = StructArray::try_new(kv.clone(), columns, None)?;
                let ordered = matches!(array.data_type(), DataType::Map(_, true));
                Arc::new(MapArray::try_new(
                    entries.clone(),
                    file.offsets().clone(),
                    pairs,
                    file.nulls().cloned(),
                    ordered,
                )?)
            }
        })
    }
}

fn not_a(what: &str, array: &ArrayRef) -> ArrowError {
    ArrowError::SchemaError(format!(
        "expected a {what} column, the data file has {}",
        array.data_type()
    ))
}

fn list<O: OffsetSizeTrait>(
    array: &ArrayRef,
    element: &FieldRef,
    conversion: &Conversion,
) -> DfResult<ArrayRef> {
    let file = array
        .as_list_opt::<O>()
        .ok_or_else(|| not_a("list", array))?;
    let values = conversion.apply(file.values())?;
    Ok(Arc::new(GenericListArray::<O>::try_new(
        element.clone(),
        file.offsets().clone(),
        values,
        file.nulls().cloned(),
    )?))
}

/// A file column (`input`) converted to its table column `field` by a nested
/// [`Conversion`]; what [`super::ColumnProjection`] puts in place of a table
/// column whose struct, list or map changed since the file was written.
#[derive(Debug, Clone, Eq)]
pub(crate) struct FieldIdProjection {
    input: Arc<dyn PhysicalExpr>,
    conversion: Arc<Conversion>,
    field: FieldRef,
}

// By hand: `derive` cannot compare `Arc<dyn PhysicalExpr>` (as DataFusion's
// own `CastColumnExpr`).
impl PartialEq for FieldIdProjection {
    fn eq(&self, other: &Self) -> bool {
        self.input.eq(&other.input)
            && self.conversion == other.conversion
            && self.field == other.field
    }
}

impl Hash for FieldIdProjection {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.input.hash(state);
        self.conversion.hash(state);
        self.field.hash(state);
    }
}

impl FieldIdProjection {
    pub(crate) fn new(
        input: Arc<dyn PhysicalExpr>,
        conversion: Conversion,
        field: FieldRef,
    ) -> Self {
        Self {
            input,
            conversion: Arc::new(conversion),
            field,
        }
    }
}

impl fmt::Display for FieldIdProjection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "by_field_id({} AS {})", self.input, self.field.name())
    }
}

impl PhysicalExpr for FieldIdProjection {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn data_type(&self, _input_schema: &Schema) -> DfResult<DataType> {
        Ok(self.field.data_type().clone())
    }

    fn nullable(&self, _input_schema: &Schema) -> DfResult<bool> {
        Ok(self.field.is_nullable())
    }

    fn return_field(&self, _input_schema: &Schema) -> DfResult<FieldRef> {
        Ok(self.field.clone())
    }

    fn evaluate(&self, batch: &RecordBatch) -> DfResult<ColumnarValue> {
        match self.input.evaluate(batch)? {
            ColumnarValue::Array(array) => Ok(ColumnarValue::Array(self.conversion.apply(&array)?)),
            ColumnarValue::Scalar(scalar) => {
                let array = self.conversion.apply(&scalar.to_array_of_size(1)?)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                    &array, 0,
                )?))
            }
        }
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> DfResult<Arc<dyn PhysicalExpr>> {
        let [input] = <[_; 1]>::try_from(children).map_err(|c| {
            datafusion::error::DataFusionError::Internal(format!(
                "by_field_id takes one child, got {}",
                c.len()
            ))
        })?;
        Ok(Arc::new(Self {
            input,
            conversion: self.conversion.clone(),
            field: self.field.clone(),
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use arrow::array::{
        Int32Array, Int32Builder, Int64Array, ListArray, MapBuilder, StringBuilder,
    };
    use arrow::buffer::OffsetBuffer;
    use iceberg::arrow::schema_to_arrow_schema;
    use iceberg::spec::{ListType, MapType, PrimitiveType, Schema as IcebergSchema, StructType};
    use parquet::arrow::PARQUET_FIELD_ID_META_KEY;

    use super::super::file_ids::file_ids;
    use super::*;

    fn with_id(field: Field, id: i32) -> Field {
        field.with_metadata(HashMap::from([(
            PARQUET_FIELD_ID_META_KEY.to_string(),
            id.to_string(),
        )]))
    }

    /// The table's column `name` (Iceberg and Arrow) in `schema`.
    fn table_column(schema: &IcebergSchema, name: &str) -> (NestedField, Field) {
        let arrow = schema_to_arrow_schema(schema).unwrap();
        let iceberg = schema.field_by_name(name).unwrap().as_ref().clone();
        (iceberg, arrow.field_with_name(name).unwrap().clone())
    }

    #[test]
    fn list_elements_match_struct_fields_by_id() {
        // items: list<struct<2: qty int>> in the file; the table renamed qty to
        // units, promoted it to long and added 4: note.
        let file_item = with_id(
            Field::new_struct(
                "element",
                vec![with_id(Field::new("qty", DataType::Int32, true), 2)],
                true,
            ),
            1,
        );
        let file_field = with_id(
            Field::new("items", DataType::List(Arc::new(file_item.clone())), true),
            10,
        );
        let DataType::Struct(item_fields) = file_item.data_type().clone() else {
            panic!()
        };
        let items = StructArray::new(
            item_fields,
            vec![Arc::new(Int32Array::from(vec![3, 4, 5]))],
            None,
        );
        let file_array: ArrayRef = Arc::new(ListArray::new(
            Arc::new(file_item),
            OffsetBuffer::from_lengths([2, 1]),
            Arc::new(items),
            None,
        ));

        let element = NestedField::optional(
            1,
            "element",
            Type::Struct(StructType::new(vec![
                NestedField::optional(4, "note", Type::Primitive(PrimitiveType::String)).into(),
                NestedField::optional(2, "units", Type::Primitive(PrimitiveType::Long)).into(),
            ])),
        );
        let schema = IcebergSchema::builder()
            .with_fields(vec![NestedField::optional(
                10,
                "items",
                Type::List(ListType::new(element.into())),
            )
            .into()])
            .build()
            .unwrap();
        let (iceberg, table) = table_column(&schema, "items");
        let (ids, _) = file_ids(&vec![file_field.clone()].into(), None, schema.as_struct());
        let conversion = plan(&iceberg, &table, &file_field, &ids[0]).unwrap();
        let read = conversion.apply(&file_array).unwrap();
        assert_eq!(read.data_type(), table.data_type());
        let list = read.as_list::<i32>();
        let structs = list.values().as_struct();
        assert_eq!(structs.column(0).null_count(), 3, "note is not in the file");
        let units = structs
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(units.values(), &[3, 4, 5]);
        assert_eq!(list.value_offsets(), &[0, 2, 3]);
    }

    #[test]
    fn map_values_are_promoted() {
        let mut builder = MapBuilder::new(None, StringBuilder::new(), Int32Builder::new());
        builder.keys().append_value("a");
        builder.values().append_value(7);
        builder.append(true).unwrap();
        let file_array: ArrayRef = Arc::new(builder.finish());
        let file_field = Field::new("m", file_array.data_type().clone(), true);

        let schema = IcebergSchema::builder()
            .with_fields(vec![NestedField::optional(
                1,
                "m",
                Type::Map(MapType::new(
                    NestedField::map_key_element(2, Type::Primitive(PrimitiveType::String)).into(),
                    NestedField::map_value_element(3, Type::Primitive(PrimitiveType::Long), false)
                        .into(),
                )),
            )
            .into()])
            .build()
            .unwrap();
        let (iceberg, table) = table_column(&schema, "m");
        // A file without field ids: matched by names, keys and values by place.
        let (ids, _) = file_ids(&vec![file_field.clone()].into(), None, schema.as_struct());
        let conversion = plan(&iceberg, &table, &file_field, &ids[0]).unwrap();
        let read = conversion.apply(&file_array).unwrap();
        assert_eq!(read.data_type(), table.data_type());
        let values = read
            .as_map()
            .values()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(values.values(), &[7]);
    }
}
