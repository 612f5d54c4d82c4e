//! The Arrow column being built for one event column, fed with the [`Value`]s the
//! input rules give (both decoding tiers build their rows with it).

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    Float32Builder, Float64Builder, Int32Builder, Int64Builder, NullBufferBuilder, StringArray,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::error::ArrowError;

use super::rules::{hex_bytes, Kind, Value};

/// A string column as raw bytes: the strings are checked to be UTF-8 once, with
/// the whole column, when it is finished.
pub(crate) struct Utf8Column {
    values: Vec<u8>,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
}

impl Utf8Column {
    fn with_capacity(capacity: usize) -> Self {
        let mut offsets = Vec::with_capacity(capacity + 1);
        offsets.push(0);
        Self {
            values: Vec::with_capacity(capacity * 12),
            offsets,
            nulls: NullBufferBuilder::new(capacity),
        }
    }

    fn end_value(&mut self) -> Result<(), ArrowError> {
        let end = i32::try_from(self.values.len())
            .map_err(|_| ArrowError::JsonError("a string column exceeds 2 GiB".into()))?;
        self.offsets.push(end);
        Ok(())
    }

    /// Checks the values are UTF-8 and every offset falls between characters.
    fn finish(mut self) -> Result<ArrayRef, ArrowError> {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        let array = StringArray::try_new(offsets, self.values.into(), self.nulls.finish())?;
        Ok(Arc::new(array))
    }
}

/// One column being built.
pub(crate) enum Column {
    Utf8(Utf8Column),
    Binary(BinaryBuilder),
    Boolean(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Date32(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Decimal(Decimal128Builder),
}

impl Column {
    pub(crate) fn new(kind: &Kind, capacity: usize) -> Self {
        match kind {
            Kind::Utf8 => Self::Utf8(Utf8Column::with_capacity(capacity)),
            Kind::Binary => Self::Binary(BinaryBuilder::with_capacity(capacity, capacity * 16)),
            Kind::Boolean => Self::Boolean(BooleanBuilder::with_capacity(capacity)),
            Kind::Int32 => Self::Int32(Int32Builder::with_capacity(capacity)),
            Kind::Int64 => Self::Int64(Int64Builder::with_capacity(capacity)),
            Kind::Float32 => Self::Float32(Float32Builder::with_capacity(capacity)),
            Kind::Float64 => Self::Float64(Float64Builder::with_capacity(capacity)),
            Kind::Date32 => Self::Date32(Date32Builder::with_capacity(capacity)),
            Kind::Timestamp { tz } => Self::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone_opt(tz.clone()),
            ),
            Kind::Decimal { precision, scale } => Self::Decimal(
                Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(*precision, *scale as i8)
                    .unwrap_or_else(|_| Decimal128Builder::with_capacity(capacity)),
            ),
        }
    }

    pub(crate) fn append_null(&mut self) -> Result<(), ArrowError> {
        match self {
            Self::Utf8(b) => {
                b.nulls.append_null();
                b.end_value()?;
            }
            Self::Binary(b) => b.append_null(),
            Self::Boolean(b) => b.append_null(),
            Self::Int32(b) => b.append_null(),
            Self::Int64(b) => b.append_null(),
            Self::Float32(b) => b.append_null(),
            Self::Float64(b) => b.append_null(),
            Self::Date32(b) => b.append_null(),
            Self::Timestamp(b) => b.append_null(),
            Self::Decimal(b) => b.append_null(),
        }
        Ok(())
    }

    /// Append a string's content: its bytes to a `string` column (UTF-8 is checked
    /// by [`Self::finish`]), the bytes its hex digits spell to a `binary` one.
    pub(crate) fn append_text(&mut self, text: &[u8]) -> Result<(), ArrowError> {
        match self {
            Self::Utf8(b) => {
                b.values.extend_from_slice(text);
                b.nulls.append_non_null();
                b.end_value()
            }
            Self::Binary(b) => {
                b.append_value(hex_bytes(text).ok_or_else(mismatch)?);
                Ok(())
            }
            _ => Err(mismatch()),
        }
    }

    /// Append a value the rules gave for this column's kind.
    pub(crate) fn append(&mut self, value: Value) -> Result<(), ArrowError> {
        match (self, value) {
            (Self::Boolean(b), Value::Boolean(v)) => b.append_value(v),
            (Self::Int32(b), Value::Int32(v)) => b.append_value(v),
            (Self::Int64(b), Value::Int64(v)) => b.append_value(v),
            (Self::Float32(b), Value::Float32(v)) => b.append_value(v),
            (Self::Float64(b), Value::Float64(v)) => b.append_value(v),
            (Self::Date32(b), Value::Date32(v)) => b.append_value(v),
            (Self::Timestamp(b), Value::Micros(v)) => b.append_value(v),
            (Self::Decimal(b), Value::Decimal(v)) => b.append_value(v),
            _ => return Err(mismatch()),
        }
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Utf8(b) => b.offsets.len() - 1,
            Self::Binary(b) => b.len(),
            Self::Boolean(b) => b.len(),
            Self::Int32(b) => b.len(),
            Self::Int64(b) => b.len(),
            Self::Float32(b) => b.len(),
            Self::Float64(b) => b.len(),
            Self::Date32(b) => b.len(),
            Self::Timestamp(b) => b.len(),
            Self::Decimal(b) => b.len(),
        }
    }

    pub(crate) fn finish(self) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            Self::Utf8(b) => b.finish()?,
            Self::Binary(mut b) => Arc::new(b.finish()),
            Self::Boolean(mut b) => Arc::new(b.finish()),
            Self::Int32(mut b) => Arc::new(b.finish()),
            Self::Int64(mut b) => Arc::new(b.finish()),
            Self::Float32(mut b) => Arc::new(b.finish()),
            Self::Float64(mut b) => Arc::new(b.finish()),
            Self::Date32(mut b) => Arc::new(b.finish()),
            Self::Timestamp(mut b) => Arc::new(b.finish()),
            Self::Decimal(mut b) => Arc::new(b.finish()),
        })
    }
}

/// A value of another kind than the column's: a bug in the caller.
fn mismatch() -> ArrowError {
    ArrowError::InvalidArgumentError("a value of another type than its column".into())
}
