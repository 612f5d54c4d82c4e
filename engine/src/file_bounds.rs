//! What a data file's column bounds (Iceberg spec, "Manifests": `lower_bounds`,
//! `upper_bounds`, `null_value_counts` per field id) say about the rows it may
//! hold, without opening it.
//!
//! Bounds are conservative by the spec: a lower bound is at most the column's
//! smallest value and an upper bound at least its largest (truncated string
//! bounds are rounded so that this holds; a bound that cannot be is left out).
//! So "no row of `keys` falls inside a file's bounds" proves that the file holds
//! none of those keys, and a missing bound or statistic proves nothing (the file
//! may hold anything). Comparisons are Arrow's (byte-wise for strings, as the
//! spec orders UTF-8 bounds; numeric for decimals of the column's scale).

use arrow::array::UInt64Array;
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, Scalar};
use arrow::compute::kernels::boolean::{and_kleene, or_kleene};
use arrow::compute::kernels::cmp::{gt_eq, lt_eq};
use arrow::compute::{is_null, prep_null_mask_filter};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, ScalarValue};
use iceberg::spec::{DataFile, Datum, PrimitiveLiteral, PrimitiveType, Schema};

use crate::error::{EngineError, Result};

/// The Arrow scalar of an Iceberg bound, of `column`'s Arrow type (`None`: a
/// bound of a type this reader does not compare; then the bound proves nothing).
fn scalar(datum: &Datum, data_type: &DataType) -> Option<ScalarValue> {
    let value = primitive_scalar(datum.data_type(), datum.literal())?;
    // Same value in the column's layout (Utf8View strings, a timestamp's zone,
    // the query's decimal precision); a value that does not fit proves nothing.
    value.cast_to(data_type).ok()
}

/// The Arrow scalar of an Iceberg value of type `ty`, in the Arrow type Iceberg's
/// own mapping gives `ty` (`None`: a type this engine does not convert).
pub(crate) fn primitive_scalar(
    ty: &PrimitiveType,
    literal: &PrimitiveLiteral,
) -> Option<ScalarValue> {
    let value = match (ty, literal) {
        (PrimitiveType::Boolean, PrimitiveLiteral::Boolean(v)) => ScalarValue::Boolean(Some(*v)),
        (PrimitiveType::Int, PrimitiveLiteral::Int(v)) => ScalarValue::Int32(Some(*v)),
        (PrimitiveType::Long, PrimitiveLiteral::Long(v)) => ScalarValue::Int64(Some(*v)),
        (PrimitiveType::Float, PrimitiveLiteral::Float(v)) => {
            ScalarValue::Float32(Some(v.into_inner()))
        }
        (PrimitiveType::Double, PrimitiveLiteral::Double(v)) => {
            ScalarValue::Float64(Some(v.into_inner()))
        }
        (PrimitiveType::String, PrimitiveLiteral::String(v)) => ScalarValue::Utf8(Some(v.clone())),
        (PrimitiveType::Date, PrimitiveLiteral::Int(v)) => ScalarValue::Date32(Some(*v)),
        (PrimitiveType::Timestamp, PrimitiveLiteral::Long(v)) => {
            ScalarValue::TimestampMicrosecond(Some(*v), None)
        }
        (PrimitiveType::Timestamptz, PrimitiveLiteral::Long(v)) => {
            ScalarValue::TimestampMicrosecond(Some(*v), Some("+00:00".into()))
        }
        (PrimitiveType::Decimal { precision, scale }, PrimitiveLiteral::Int128(v)) => {
            ScalarValue::Decimal128(
                Some(*v),
                u8::try_from(*precision).ok()?,
                i8::try_from(*scale).ok()?,
            )
        }
        _ => return None,
    };
    Some(value)
}

/// Which values of a float column are NaN (`None` for other types).
fn nan_mask(column: &dyn Array) -> Result<Option<BooleanArray>> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Float32Type, Float64Type};
    Ok(match column.data_type() {
        DataType::Float32 => Some(
            column
                .as_primitive::<Float32Type>()
                .iter()
                .map(|v| Some(v.is_some_and(f32::is_nan)))
                .collect(),
        ),
        DataType::Float64 => Some(
            column
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| Some(v.is_some_and(f64::is_nan)))
                .collect(),
        ),
        _ => None,
    })
}

/// For each of `files`: whether it may hold a row whose `keys` columns equal
/// those of some row of `keys` (named as `schema`'s columns; NULLs match NULLs,
/// as `IS NOT DISTINCT FROM` does). `false` is a proof by the file's bounds;
/// `true` means it may. Errors: a key column `schema` (of `table`) does not have.
pub fn may_hold_keys(
    table: &str,
    files: &[&DataFile],
    schema: &Schema,
    keys: &RecordBatch,
) -> Result<Vec<bool>> {
    let mut columns: Vec<(i32, &ArrayRef, BooleanArray)> = Vec::new();
    for (field, column) in keys.schema().fields().iter().zip(keys.columns()) {
        let id = schema
            .field_by_name(field.name())
            .ok_or_else(|| EngineError::SchemaMismatch {
                table: table.to_string(),
                message: format!("no column {}", field.name()),
            })?
            .id;
        columns.push((id, column, is_null(column.as_ref())?));
    }
    let mut found = Vec::with_capacity(files.len());
    for file in files {
        found.push(may_hold(file, &columns)?);
    }
    Ok(found)
}

/// [`may_hold_keys`] for one file: narrows a row mask column by column, and
/// stops as soon as no row is left.
fn may_hold(file: &DataFile, columns: &[(i32, &ArrayRef, BooleanArray)]) -> Result<bool> {
    let mut mask: Option<BooleanArray> = None;
    for (id, column, nulls) in columns {
        let (Some(lower), Some(upper)) = (file.lower_bounds().get(id), file.upper_bounds().get(id))
        else {
            continue;
        };
        let data_type = column.data_type();
        let (Some(lower), Some(upper)) = (scalar(lower, data_type), scalar(upper, data_type))
        else {
            continue;
        };
        let lower = Scalar::new(lower.to_array()?);
        let upper = Scalar::new(upper.to_array()?);
        let mut inside = and_kleene(&gt_eq(column, &lower)?, &lt_eq(column, &upper)?)?;
        // A NULL key part matches a file that may hold NULLs in that column; a
        // NaN, one that may hold NaNs (bounds never hold NaN, Iceberg spec).
        let file_nulls = file.null_value_counts().get(id).is_none_or(|n| *n > 0);
        if file_nulls && nulls.true_count() > 0 {
            inside = or_kleene(&inside, nulls)?;
        }
        if let Some(nans) = nan_mask(column.as_ref())? {
            let file_nans = file.nan_value_counts().get(id).is_none_or(|n| *n > 0);
            if file_nans && nans.true_count() > 0 {
                inside = or_kleene(&inside, &nans)?;
            }
        }
        // NULL (an unknown comparison) is no match.
        let inside = match inside.null_count() {
            0 => inside,
            _ => prep_null_mask_filter(&inside),
        };
        let narrowed = match mask {
            None => inside,
            Some(mask) => and_kleene(&mask, &inside)?,
        };
        if narrowed.true_count() == 0 {
            return Ok(false);
        }
        mask = Some(narrowed);
    }
    Ok(true)
}

/// The values of one column a data file may hold, as far as its bounds tell,
/// in the order of an ascending sort with NULLs first (the order a merge writes).
#[derive(Clone, Debug)]
pub struct ColumnRange {
    /// At most the smallest value; `None`: unbounded below (the file may hold
    /// NULLs, which sort first, or has no lower bound).
    pub lower: Option<ScalarValue>,
    /// At least the largest value; `None`: unbounded above (no upper bound, or
    /// a float column that may hold NaN, which bounds leave out and sorts last).
    pub upper: Option<ScalarValue>,
}

/// For each of `files`: the range of its `column` (of `schema`, of `table`),
/// as `data_type` values. A missing bound or statistic leaves that side
/// unbounded. Errors: a column `schema` does not have.
pub fn column_ranges(
    table: &str,
    files: &[&DataFile],
    schema: &Schema,
    column: &str,
    data_type: &DataType,
) -> Result<Vec<ColumnRange>> {
    let id = schema
        .field_by_name(column)
        .ok_or_else(|| EngineError::SchemaMismatch {
            table: table.to_string(),
            message: format!("no column {column}"),
        })?
        .id;
    let is_float = matches!(
        data_type,
        DataType::Float16 | DataType::Float32 | DataType::Float64
    );
    Ok(files
        .iter()
        .map(|file| {
            let nulls = file.null_value_counts().get(&id).is_none_or(|n| *n > 0);
            let nans = is_float && file.nan_value_counts().get(&id).is_none_or(|n| *n > 0);
            let bound = |bounds: &std::collections::HashMap<i32, Datum>| {
                bounds.get(&id).and_then(|datum| scalar(datum, data_type))
            };
            ColumnRange {
                lower: (!nulls).then(|| bound(file.lower_bounds())).flatten(),
                upper: (!nans).then(|| bound(file.upper_bounds())).flatten(),
            }
        })
        .collect())
}

/// The bounds of data files as DataFusion's [`PruningStatistics`], one
/// container per file: a `PruningPredicate` over them skips the files a
/// query's filters rule out without opening them (min/max per column, null and
/// row counts; `IN` lists are left to min/max).
pub struct FileStatistics<'a> {
    files: &'a [&'a DataFile],
    /// The table's columns as the scan shows them (Arrow types of the bounds).
    schema: SchemaRef,
    /// The same columns' field ids (of the table's schema).
    iceberg: &'a Schema,
}

impl<'a> FileStatistics<'a> {
    pub fn new(files: &'a [&'a DataFile], schema: SchemaRef, iceberg: &'a Schema) -> Self {
        Self {
            files,
            schema,
            iceberg,
        }
    }

    fn field(&self, column: &Column) -> Option<(i32, DataType)> {
        let data_type = self
            .schema
            .field_with_name(&column.name)
            .ok()?
            .data_type()
            .clone();
        Some((self.iceberg.field_by_name(&column.name)?.id, data_type))
    }

    fn bounds(&self, column: &Column, lower: bool) -> Option<ArrayRef> {
        let (id, data_type) = self.field(column)?;
        let values = self.files.iter().map(|file| {
            let bounds = match lower {
                true => file.lower_bounds(),
                false => file.upper_bounds(),
            };
            bounds
                .get(&id)
                .and_then(|datum| scalar(datum, &data_type))
                .unwrap_or(ScalarValue::try_from(&data_type).unwrap_or(ScalarValue::Null))
        });
        ScalarValue::iter_to_array(values).ok()
    }
}

impl PruningStatistics for FileStatistics<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bounds(column, true)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bounds(column, false)
    }

    fn num_containers(&self) -> usize {
        self.files.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let (id, _) = self.field(column)?;
        let counts = self
            .files
            .iter()
            .map(|file| file.null_value_counts().get(&id).copied());
        Some(std::sync::Arc::new(UInt64Array::from_iter(counts)))
    }

    fn row_counts(&self, _column: &Column) -> Option<ArrayRef> {
        let counts = self.files.iter().map(|file| Some(file.record_count()));
        Some(std::sync::Arc::new(UInt64Array::from_iter(counts)))
    }

    fn contained(
        &self,
        _column: &Column,
        _values: &std::collections::HashSet<ScalarValue>,
    ) -> Option<BooleanArray> {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use arrow::array::{Int32Array, StringViewArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, TimeUnit};
    use iceberg::spec::{
        DataContentType, DataFileBuilder, DataFileFormat, NestedField, Struct, Type,
    };

    use super::*;

    fn schema() -> Schema {
        Schema::builder()
            .with_fields(vec![
                NestedField::optional(1, "hour", Type::Primitive(PrimitiveType::Timestamp)).into(),
                NestedField::optional(2, "store_id", Type::Primitive(PrimitiveType::Int)).into(),
                NestedField::optional(3, "product_id", Type::Primitive(PrimitiveType::String))
                    .into(),
            ])
            .build()
            .unwrap()
    }

    /// A file of hours `[h0, h1]`, stores `[s0, s1]`, products `[p0, p1]`.
    fn file(h: (i64, i64), s: (i32, i32), p: (&str, &str), store_nulls: u64) -> DataFile {
        DataFileBuilder::default()
            .content(DataContentType::Data)
            .file_path("file:///x.parquet".into())
            .file_format(DataFileFormat::Parquet)
            .partition(Struct::empty())
            .record_count(10)
            .file_size_in_bytes(100)
            .lower_bounds(HashMap::from([
                (1, Datum::timestamp_micros(h.0)),
                (2, Datum::int(s.0)),
                (3, Datum::string(p.0)),
            ]))
            .upper_bounds(HashMap::from([
                (1, Datum::timestamp_micros(h.1)),
                (2, Datum::int(s.1)),
                (3, Datum::string(p.1)),
            ]))
            .null_value_counts(HashMap::from([(1, 0), (2, store_nulls), (3, 0)]))
            .build()
            .unwrap()
    }

    fn keys(rows: &[(i64, Option<i32>, &str)]) -> RecordBatch {
        let schema = Arc::new(ArrowSchema::new(vec![
            Field::new(
                "hour",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
            Field::new("store_id", DataType::Int32, true),
            Field::new("product_id", DataType::Utf8View, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    rows.iter().map(|r| r.0),
                )),
                Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.1))),
                Arc::new(StringViewArray::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_file_is_skipped_only_when_no_key_row_fits_all_its_bounds() {
        let a = file((0, 99), (1, 5), ("Blender", "Laptop"), 0);
        let b = file((100, 199), (1, 5), ("Blender", "Laptop"), 0);
        let c = file((100, 199), (6, 9), ("Blender", "Laptop"), 0);
        let files = [&a, &b, &c];
        // Hour 150, store 7: only c. Hour 150, store 3 and hour 50, store 7:
        // each column alone fits a and c, but no single row fits either but b.
        let found =
            may_hold_keys("t", &files, &schema(), &keys(&[(150, Some(7), "Jeans")])).unwrap();
        assert_eq!(found, [false, false, true]);
        let found = may_hold_keys(
            "t",
            &files,
            &schema(),
            &keys(&[(150, Some(3), "Jeans"), (50, Some(7), "Jeans")]),
        )
        .unwrap();
        assert_eq!(found, [false, true, false]);
        // Strings compare byte-wise: "Monitor" > "Laptop" is outside every file.
        let found =
            may_hold_keys("t", &files, &schema(), &keys(&[(150, Some(7), "Monitor")])).unwrap();
        assert_eq!(found, [false, false, false]);
    }

    #[test]
    fn a_null_key_part_matches_files_that_may_hold_nulls() {
        let none = file((0, 99), (1, 5), ("A", "Z"), 0);
        let some = file((0, 99), (1, 5), ("A", "Z"), 2);
        let found =
            may_hold_keys("t", &[&none, &some], &schema(), &keys(&[(10, None, "B")])).unwrap();
        assert_eq!(found, [false, true]);
    }

    #[test]
    fn a_nan_key_matches_files_that_may_hold_nans() {
        use arrow::array::Float64Array;
        let schema = Schema::builder()
            .with_fields(vec![NestedField::optional(
                1,
                "x",
                Type::Primitive(PrimitiveType::Double),
            )
            .into()])
            .build()
            .unwrap();
        let file = |nans: u64| {
            DataFileBuilder::default()
                .content(DataContentType::Data)
                .file_path("file:///n.parquet".into())
                .file_format(DataFileFormat::Parquet)
                .partition(Struct::empty())
                .record_count(3)
                .file_size_in_bytes(10)
                .lower_bounds(HashMap::from([(1, Datum::double(1.0))]))
                .upper_bounds(HashMap::from([(1, Datum::double(2.0))]))
                .null_value_counts(HashMap::from([(1, 0)]))
                .nan_value_counts(HashMap::from([(1, nans)]))
                .build()
                .unwrap()
        };
        let (without, with) = (file(0), file(1));
        let keys = RecordBatch::try_new(
            Arc::new(ArrowSchema::new(vec![Field::new(
                "x",
                DataType::Float64,
                true,
            )])),
            vec![Arc::new(Float64Array::from(vec![f64::NAN]))],
        )
        .unwrap();
        let found = may_hold_keys("t", &[&without, &with], &schema, &keys).unwrap();
        assert_eq!(found, [false, true]);
    }

    #[test]
    fn missing_bounds_prove_nothing() {
        let bare = DataFileBuilder::default()
            .content(DataContentType::Data)
            .file_path("file:///y.parquet".into())
            .file_format(DataFileFormat::Parquet)
            .partition(Struct::empty())
            .record_count(1)
            .file_size_in_bytes(1)
            .build()
            .unwrap();
        let found = may_hold_keys("t", &[&bare], &schema(), &keys(&[(1, Some(1), "A")])).unwrap();
        assert_eq!(found, [true]);
        let err = may_hold_keys(
            "t",
            &[&bare],
            &Schema::builder().build().unwrap(),
            &keys(&[(1, Some(1), "A")]),
        );
        assert!(err.is_err());
    }
}
