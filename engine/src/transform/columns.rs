//! Reading a transform's input columns by name, in the types it computes with.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Decimal128Type, TimeUnit, TimestampMicrosecondType};

use crate::error::{EngineError, Result};

/// All input rows as one batch.
pub fn concat(input: &[RecordBatch], transform: &str) -> Result<Option<RecordBatch>> {
    let Some(first) = input.first() else {
        return Ok(None);
    };
    let batch = arrow::compute::concat_batches(&first.schema(), input).map_err(|e| {
        EngineError::SchemaMismatch {
            table: format!("transform {transform}"),
            message: e.to_string(),
        }
    })?;
    Ok(Some(batch))
}

fn column(batch: &RecordBatch, name: &str, to: &DataType, transform: &str) -> Result<ArrayRef> {
    let found = batch
        .column_by_name(name)
        .ok_or_else(|| EngineError::SchemaMismatch {
            table: format!("transform {transform}"),
            message: format!("the input has no column {name}"),
        })?;
    cast(found, to).map_err(|e| EngineError::SchemaMismatch {
        table: format!("transform {transform}"),
        message: format!("column {name}: {e}"),
    })
}

/// Strings (any layout); `None` for nulls.
pub fn strings(batch: &RecordBatch, name: &str, transform: &str) -> Result<Vec<Option<String>>> {
    let array = column(batch, name, &DataType::Utf8, transform)?;
    let array = array.as_string::<i32>();
    Ok((0..array.len())
        .map(|i| array.is_valid(i).then(|| array.value(i).to_string()))
        .collect())
}

/// Timestamps in µs.
pub fn micros(batch: &RecordBatch, name: &str, transform: &str) -> Result<Vec<Option<i64>>> {
    let array = column(
        batch,
        name,
        &DataType::Timestamp(TimeUnit::Microsecond, None),
        transform,
    )?;
    let array = array.as_primitive::<TimestampMicrosecondType>();
    Ok((0..array.len())
        .map(|i| array.is_valid(i).then(|| array.value(i)))
        .collect())
}

/// Money as cents (a decimal with two places).
pub fn cents(batch: &RecordBatch, name: &str, transform: &str) -> Result<Vec<Option<i128>>> {
    let array = column(batch, name, &DataType::Decimal128(38, 2), transform)?;
    let array = array.as_primitive::<Decimal128Type>();
    Ok((0..array.len())
        .map(|i| array.is_valid(i).then(|| array.value(i)))
        .collect())
}

/// Whole numbers.
pub fn longs(batch: &RecordBatch, name: &str, transform: &str) -> Result<Vec<Option<i64>>> {
    let array = column(batch, name, &DataType::Int64, transform)?;
    let array = array.as_primitive::<arrow::datatypes::Int64Type>();
    Ok((0..array.len())
        .map(|i| array.is_valid(i).then(|| array.value(i)))
        .collect())
}
