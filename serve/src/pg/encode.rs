//! Record batches as PostgreSQL `DataRow`s, in the client's text or binary
//! format.
//!
//! arrow-pg 0.14 encodes most types right and is used for them. This module
//! encodes the ones it gets wrong or slowly, the way PostgreSQL 16's output
//! functions do:
//! - `TINYINT` (Arrow `Int8`) is described as `int2` but arrow-pg sends one
//!   byte in binary, which clients read shifted (1 became 256): sent as `int2`.
//! - Non-finite floats are `Infinity`, `-Infinity`, `NaN` in text
//!   (`float8out`), not Rust's `inf` (pgjdbc cannot parse that).
//! - `numeric` from `Decimal128` of any precision up to 38 (arrow-pg goes
//!   through `rust_decimal`, which stops at 28 digits): text as `numeric_out`
//!   writes it (`dscale` digits after the point), binary in `numeric_send`'s
//!   base-10000 layout.
//! - Timestamps (ISO `DateStyle`, the only one the server speaks) as
//!   `timestamp_out` / `timestamptz_out` write them: fractional seconds
//!   without trailing zeros, the offset as `+HH` or `+HH:MM`; binary as
//!   microseconds since 2000-01-01. arrow-pg formats each value through
//!   chrono's `strftime` and parses the column's time zone again per value
//!   (a fifth of the server's CPU when streaming `raw.retail_events`).
//!   Years outside 1–9999 and named time zones go to arrow-pg.
//! - Dates in text, as `date_out` (ISO).
//! - Records (Arrow structs) as `record_out` / `record_send`: a NULL field is
//!   empty in text (`(,)`, not `("","")`), and a field is quoted when
//!   PostgreSQL quotes it.
//!
//! Every value is written as the protocol's `DataRow` field: an `Int32`
//! length (`-1` for NULL) and the bytes.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int64Array,
    Int8Array, StructArray,
};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Field, Int64Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion_postgres::arrow_pg::datatypes::field_into_pg_type;
use datafusion_postgres::arrow_pg::encoder::{encode_value, Encoder};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use postgres_types::{IsNull, ToSql};

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The rows of `batch`, each a `DataRow` of `fields` (one per column, in
/// order, with the format the client asked for).
pub fn encode_batch(fields: &[FieldInfo], batch: &RecordBatch) -> PgWireResult<Vec<DataRow>> {
    let schema = batch.schema();
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .zip(fields)
        .map(|((array, field), pg)| Column::new(array, field, pg))
        .collect::<PgWireResult<Vec<_>>>()?;
    let mut out = BytesMut::with_capacity(batch.num_rows() * 16 * columns.len().max(1));
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for column in &columns {
            column.write(&mut out, row)?;
        }
        rows.push(DataRow::new(out.split(), columns.len() as i16));
    }
    Ok(rows)
}

/// One column of a batch, with what its values are written by.
enum Column {
    /// arrow-pg's encoding.
    Generic {
        array: ArrayRef,
        field: Arc<Field>,
        pg: FieldInfo,
    },
    /// `int2` from `Int8`.
    Int8 {
        values: Int8Array,
        text: bool,
    },
    /// Floats in text: non-finite values spelled as PostgreSQL does.
    Float64(Float64Array, FieldInfo),
    Float32(Float32Array, FieldInfo),
    Decimal {
        values: Decimal128Array,
        scale: i8,
        text: bool,
    },
    /// Timestamps as microseconds since the Unix epoch; `offset` seconds east
    /// of UTC for `timestamptz` (text only), `None` for `timestamp`.
    Timestamp {
        micros: Int64Array,
        offset: Option<i32>,
        text: bool,
        generic: Box<Column>,
    },
    /// Dates in text.
    Date(Date32Array, Box<Column>),
    Record {
        array: StructArray,
        children: Vec<(Column, Type)>,
        text: bool,
    },
}

impl Column {
    fn new(array: &ArrayRef, field: &Arc<Field>, pg: &FieldInfo) -> PgWireResult<Self> {
        let text = pg.format() == FieldFormat::Text;
        let generic = || Column::Generic {
            array: array.clone(),
            field: field.clone(),
            pg: pg.clone(),
        };
        Ok(match array.data_type() {
            DataType::Int8 => Column::Int8 {
                values: array.as_primitive().clone(),
                text,
            },
            DataType::Float64 if text => Column::Float64(array.as_primitive().clone(), pg.clone()),
            DataType::Float32 if text => Column::Float32(array.as_primitive().clone(), pg.clone()),
            DataType::Decimal128(_, scale) => Column::Decimal {
                values: array.as_primitive().clone(),
                scale: *scale,
                text,
            },
            DataType::Timestamp(unit, zone) => {
                let offset = match zone {
                    None => None,
                    Some(zone) => match fixed_offset(zone) {
                        Some(seconds) => Some(seconds),
                        // A named zone (DST rules): arrow-pg resolves it.
                        None if text => return Ok(generic()),
                        None => Some(0),
                    },
                };
                match micros(array, *unit) {
                    Some(micros) => Column::Timestamp {
                        micros,
                        offset,
                        text,
                        generic: Box::new(generic()),
                    },
                    None => generic(),
                }
            }
            DataType::Date32 if text => Column::Date(
                array.as_primitive::<Date32Type>().clone(),
                Box::new(generic()),
            ),
            DataType::Struct(fields) => {
                let array = array.as_struct().clone();
                let children = fields
                    .iter()
                    .zip(array.columns())
                    .map(|(field, child)| {
                        let ty = field_into_pg_type(field)?;
                        let info = FieldInfo::new(
                            field.name().clone(),
                            None,
                            None,
                            ty.clone(),
                            pg.format(),
                        )
                        .with_format_options(pg.format_options().clone());
                        Ok((Column::new(child, field, &info)?, ty))
                    })
                    .collect::<PgWireResult<Vec<_>>>()?;
                Column::Record {
                    array,
                    children,
                    text,
                }
            }
            _ => generic(),
        })
    }

    fn write(&self, out: &mut BytesMut, row: usize) -> PgWireResult<()> {
        match self {
            Column::Generic { array, field, pg } => {
                encode_value(&mut Fields(out), array, row, field, pg)
            }
            Column::Int8 { values, text } => match values.is_null(row) {
                true => null(out),
                false => {
                    let value = i16::from(values.value(row));
                    match text {
                        true => field(out, |out| out.put_slice(value.to_string().as_bytes())),
                        false => field(out, |out| out.put_i16(value)),
                    }
                }
            },
            Column::Float64(values, pg) => match values.is_valid(row) {
                true => float_text(out, values.value(row), pg),
                false => null(out),
            },
            Column::Float32(values, pg) => match values.is_valid(row) {
                true if values.value(row).is_finite() => {
                    Fields(out).encode_field(&values.value(row), pg)
                }
                true => float_text(out, f64::from(values.value(row)), pg),
                false => null(out),
            },
            Column::Decimal {
                values,
                scale,
                text,
            } => match values.is_null(row) {
                true => null(out),
                false if *text => field(out, |out| numeric_text(out, values.value(row), *scale)),
                false => field(out, |out| numeric_binary(out, values.value(row), *scale)),
            },
            Column::Timestamp {
                micros,
                offset,
                text,
                generic,
            } => {
                if micros.is_null(row) {
                    return null(out);
                }
                let value = micros.value(row);
                if !*text {
                    return field(out, |out| out.put_i64(value - PG_EPOCH_MICROS));
                }
                match timestamp_text(value, *offset) {
                    Some(text) => field(out, |out| out.put_slice(text.as_bytes())),
                    None => generic.write(out, row),
                }
            }
            Column::Date(days, generic) => {
                if days.is_null(row) {
                    return null(out);
                }
                match civil(i64::from(days.value(row))) {
                    Some((y, m, d)) if (1..=9999).contains(&y) => field(out, |out| {
                        out.put_slice(format!("{y:04}-{m:02}-{d:02}").as_bytes())
                    }),
                    _ => generic.write(out, row),
                }
            }
            Column::Record {
                array,
                children,
                text,
            } => {
                if array.is_null(row) {
                    return null(out);
                }
                let at = begin(out);
                match text {
                    true => record_text(out, children, row)?,
                    false => record_binary(out, children, row)?,
                }
                end(out, at);
                Ok(())
            }
        }
    }
}

/// arrow-pg's encoder writing into our row.
struct Fields<'a>(&'a mut BytesMut);

impl Encoder for Fields<'_> {
    type Item = ();

    fn encode_field<T>(&mut self, value: &T, pg: &FieldInfo) -> PgWireResult<()>
    where
        T: ToSql + ToSqlText + Sized,
    {
        let at = begin(self.0);
        let is_null = match pg.format() {
            FieldFormat::Text => value.to_sql_text(pg.datatype(), self.0, pg.format_options()),
            FieldFormat::Binary => value.to_sql(pg.datatype(), self.0),
        }
        .map_err(PgWireError::ApiError)?;
        match is_null {
            IsNull::No => end(self.0, at),
            // The length stays -1.
            IsNull::Yes => self.0.truncate(at + 4),
        }
        Ok(())
    }

    fn take_row(&mut self) -> Self::Item {}
}

/// Start a field: its length, -1 (NULL) until [`end`].
fn begin(out: &mut BytesMut) -> usize {
    let at = out.len();
    out.put_i32(-1);
    at
}

/// End the field started at `at`: its length is what was written since.
fn end(out: &mut BytesMut, at: usize) {
    let length = (out.len() - at - 4) as i32;
    out[at..at + 4].copy_from_slice(&length.to_be_bytes());
}

fn field(out: &mut BytesMut, write: impl FnOnce(&mut BytesMut)) -> PgWireResult<()> {
    let at = begin(out);
    write(out);
    end(out, at);
    Ok(())
}

fn null(out: &mut BytesMut) -> PgWireResult<()> {
    out.put_i32(-1);
    Ok(())
}

/// A float in text: finite values as pgwire writes them (shortest exact, per
/// `extra_float_digits`), the rest as `float8out` spells them.
fn float_text(out: &mut BytesMut, value: f64, pg: &FieldInfo) -> PgWireResult<()> {
    let spelled = match value {
        v if v.is_nan() => "NaN",
        v if v == f64::INFINITY => "Infinity",
        v if v == f64::NEG_INFINITY => "-Infinity",
        v => return Fields(out).encode_field(&v, pg),
    };
    field(out, |out| out.put_slice(spelled.as_bytes()))
}

/// The digits of `unscaled` with the point `scale` digits from the right, as
/// `numeric_out` writes them (`-0.50`, `12`, `1200` for a negative scale).
fn decimal_parts(unscaled: i128, scale: i8) -> (bool, String, String) {
    let negative = unscaled < 0;
    let mut digits = unscaled.unsigned_abs().to_string();
    if scale <= 0 {
        digits.extend(std::iter::repeat_n('0', scale.unsigned_abs() as usize));
        return (negative, digits, String::new());
    }
    let scale = scale as usize;
    if digits.len() <= scale {
        digits = format!("{}{digits}", "0".repeat(scale + 1 - digits.len()));
    }
    let fraction = digits.split_off(digits.len() - scale);
    (negative, digits, fraction)
}

fn numeric_text(out: &mut BytesMut, unscaled: i128, scale: i8) {
    let (negative, integer, fraction) = decimal_parts(unscaled, scale);
    if negative {
        out.put_u8(b'-');
    }
    out.put_slice(integer.as_bytes());
    if !fraction.is_empty() {
        out.put_u8(b'.');
        out.put_slice(fraction.as_bytes());
    }
}

/// `numeric_send`: `ndigits`, `weight`, `sign`, `dscale` (each 16 bits), then
/// `ndigits` base-10000 digits, most significant first; the value is
/// `Σ digit[i] · 10000^(weight − i)`. Zero digits at either end are left out.
fn numeric_binary(out: &mut BytesMut, unscaled: i128, scale: i8) {
    let (negative, integer, fraction) = decimal_parts(unscaled, scale);
    let integer = integer.trim_start_matches('0');
    // Whole groups of four: the integer part padded on the left, the
    // fraction on the right.
    let pad_left = (4 - integer.len() % 4) % 4;
    let pad_right = (4 - fraction.len() % 4) % 4;
    let integer = format!("{}{integer}", "0".repeat(pad_left));
    let fraction = format!("{fraction}{}", "0".repeat(pad_right));
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(4)
            .map(|chunk| chunk.iter().fold(0i16, |n, d| n * 10 + i16::from(d - b'0')))
            .collect()
    };
    let integer_groups = group(&integer);
    let mut digits = integer_groups.clone();
    digits.extend(group(&fraction));
    let mut weight = integer_groups.len() as i16 - 1;
    let leading = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..leading);
    weight -= leading as i16;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    out.put_i16(digits.len() as i16);
    out.put_i16(weight);
    out.put_u16(if negative && !digits.is_empty() {
        0x4000
    } else {
        0
    });
    out.put_u16(u16::from(scale.max(0).unsigned_abs()));
    for digit in digits {
        out.put_i16(digit);
    }
}

/// A timestamp column as microseconds since the Unix epoch (`None` when a
/// value does not fit).
fn micros(array: &ArrayRef, unit: TimeUnit) -> Option<Int64Array> {
    let (values, per_micro): (Int64Array, i64) = match unit {
        TimeUnit::Microsecond => (
            array
                .as_primitive::<TimestampMicrosecondType>()
                .reinterpret_cast::<Int64Type>(),
            1,
        ),
        TimeUnit::Nanosecond => {
            let nanos = array
                .as_primitive::<TimestampNanosecondType>()
                .reinterpret_cast::<Int64Type>();
            return Some(nanos.unary(|n| n.div_euclid(1000)));
        }
        TimeUnit::Millisecond => (
            array
                .as_primitive::<TimestampMillisecondType>()
                .reinterpret_cast::<Int64Type>(),
            1000,
        ),
        TimeUnit::Second => (
            array
                .as_primitive::<TimestampSecondType>()
                .reinterpret_cast::<Int64Type>(),
            1_000_000,
        ),
    };
    if per_micro == 1 {
        return Some(values);
    }
    values
        .try_unary(|v| v.checked_mul(per_micro).ok_or(()))
        .ok()
}

/// `+00:00`, `-05:30`, `UTC`, `Z`: seconds east of UTC (`None` for a named
/// zone, whose offset changes).
fn fixed_offset(zone: &str) -> Option<i32> {
    if matches!(zone, "UTC" | "Etc/UTC" | "Z" | "+00" | "+00:00" | "GMT") {
        return Some(0);
    }
    let (sign, rest) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    let (hours, minutes) = match rest.split_once(':') {
        Some((h, m)) => (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?),
        None if rest.len() == 4 => (rest[..2].parse().ok()?, rest[2..].parse().ok()?),
        None => (rest.parse().ok()?, 0),
    };
    (hours <= 15 && minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
}

/// `timestamp_out` (ISO): `2024-01-31 23:59:59.5`, with `+01` or `+05:30`
/// for a `timestamptz` shown at `offset`. `None` outside years 1–9999.
fn timestamp_text(micros: i64, offset: Option<i32>) -> Option<String> {
    let local = micros.checked_add(i64::from(offset.unwrap_or(0)) * 1_000_000)?;
    let seconds = local.div_euclid(1_000_000);
    let fraction = local.rem_euclid(1_000_000);
    let (year, month, day) = civil(seconds.div_euclid(86_400))?;
    if !(1..=9999).contains(&year) {
        return None;
    }
    let of_day = seconds.rem_euclid(86_400);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    if let Some(offset) = offset {
        let sign = if offset < 0 { '-' } else { '+' };
        let offset = offset.unsigned_abs();
        text.push_str(&format!("{sign}{:02}", offset / 3600));
        if offset % 3600 != 0 {
            text.push_str(&format!(":{:02}", offset / 60 % 60));
        }
    }
    Some(text)
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil(days: i64) -> Option<(i64, u32, u32)> {
    let z = days.checked_add(719_468)?;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some((year, month, day))
}

/// `record_out`: `(a,,"b c")`. A NULL field is empty; a value is quoted when
/// empty or holding `"`, `\`, `(`, `)`, `,` or white space, with `"` and `\`
/// doubled inside the quotes.
fn record_text(out: &mut BytesMut, children: &[(Column, Type)], row: usize) -> PgWireResult<()> {
    out.put_u8(b'(');
    let mut value = BytesMut::new();
    for (i, (child, _)) in children.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        value.clear();
        child.write(&mut value, row)?;
        let length = i32::from_be_bytes([value[0], value[1], value[2], value[3]]);
        if length < 0 {
            continue;
        }
        let text = &value[4..];
        let quote = text.is_empty()
            || text
                .iter()
                .any(|b| matches!(b, b'"' | b'\\' | b'(' | b')' | b',') || b.is_ascii_whitespace());
        if !quote {
            out.put_slice(text);
            continue;
        }
        out.put_u8(b'"');
        for &b in text {
            if b == b'"' || b == b'\\' {
                out.put_u8(b);
            }
            out.put_u8(b);
        }
        out.put_u8(b'"');
    }
    out.put_u8(b')');
    Ok(())
}

/// `record_send`: the field count, then each field's type OID and value
/// (length-prefixed, -1 for NULL).
fn record_binary(out: &mut BytesMut, children: &[(Column, Type)], row: usize) -> PgWireResult<()> {
    out.put_i32(children.len() as i32);
    for (child, ty) in children {
        out.put_u32(ty.oid());
        child.write(out, row)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, StringArray};
    use datafusion::arrow::datatypes::Schema;

    fn text(write: impl FnOnce(&mut BytesMut)) -> String {
        let mut out = BytesMut::new();
        write(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn numeric_text_is_numeric_out() {
        assert_eq!(text(|o| numeric_text(o, 12_345, 2)), "123.45");
        assert_eq!(text(|o| numeric_text(o, -5, 2)), "-0.05");
        assert_eq!(text(|o| numeric_text(o, 0, 3)), "0.000");
        assert_eq!(text(|o| numeric_text(o, 12, -2)), "1200");
        let widest = 99_999_999_999_999_999_999_999_999_999_999_999_999_i128;
        assert_eq!(
            text(|o| numeric_text(o, widest, 10)),
            "9999999999999999999999999999.9999999999"
        );
    }

    fn binary(unscaled: i128, scale: i8) -> Vec<i16> {
        let mut out = BytesMut::new();
        numeric_binary(&mut out, unscaled, scale);
        out.chunks(2)
            .map(|pair| i16::from_be_bytes([pair[0], pair[1]]))
            .collect()
    }

    #[test]
    fn numeric_binary_is_numeric_send() {
        // ndigits, weight, sign, dscale, digits (base 10000)
        assert_eq!(binary(12_345, 2), vec![2, 0, 0, 2, 123, 4500]);
        assert_eq!(binary(-5, 2), vec![1, -1, 0x4000, 2, 500]);
        assert_eq!(binary(1, -4), vec![1, 1, 0, 0, 1]);
        assert_eq!(binary(10_000, 0), vec![1, 1, 0, 0, 1]);
        assert_eq!(binary(0, 2), vec![0, 0, 0, 2]);
        assert_eq!(binary(-1, 0), vec![1, 0, 0x4000, 0, 1]);
        // 10^37 + 1 at scale 5: 100000000000000000000000000000000.00001
        assert_eq!(
            binary(10_i128.pow(37) + 1, 5),
            vec![11, 8, 0, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1000]
        );
    }

    #[test]
    fn timestamps_are_timestamp_out() {
        assert_eq!(
            timestamp_text(0, Some(0)).unwrap(),
            "1970-01-01 00:00:00+00"
        );
        assert_eq!(
            timestamp_text(1_500_000, None).unwrap(),
            "1970-01-01 00:00:01.5"
        );
        assert_eq!(
            timestamp_text(-1, None).unwrap(),
            "1969-12-31 23:59:59.999999"
        );
        assert_eq!(
            timestamp_text(0, Some(19_800)).unwrap(),
            "1970-01-01 05:30:00+05:30"
        );
        assert_eq!(
            timestamp_text(0, Some(-3600)).unwrap(),
            "1969-12-31 23:00:00-01"
        );
        // 2024-02-29 12:34:56.000789 UTC
        assert_eq!(
            timestamp_text(1_709_210_096_000_789, None).unwrap(),
            "2024-02-29 12:34:56.000789"
        );
        // Year 10000 and BC are left to arrow-pg.
        assert_eq!(timestamp_text(253_402_300_800_000_000, None), None);
        assert_eq!(timestamp_text(-62_135_596_800_000_001, None), None);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), Some((1970, 1, 1)));
        assert_eq!(civil(19_723), Some((2024, 1, 1)));
        assert_eq!(civil(-719_162), Some((1, 1, 1)));
        assert_eq!(civil(11_016), Some((2000, 2, 29)));
    }

    #[test]
    fn fixed_offsets() {
        assert_eq!(fixed_offset("+00:00"), Some(0));
        assert_eq!(fixed_offset("UTC"), Some(0));
        assert_eq!(fixed_offset("+05:30"), Some(19_800));
        assert_eq!(fixed_offset("-0130"), Some(-5400));
        assert_eq!(fixed_offset("-03"), Some(-10_800));
        assert_eq!(fixed_offset("Europe/Oslo"), None);
    }

    fn rows(batch: &RecordBatch, format: FieldFormat) -> Vec<Vec<Option<Vec<u8>>>> {
        let fields: Vec<FieldInfo> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| {
                FieldInfo::new(
                    f.name().clone(),
                    None,
                    None,
                    field_into_pg_type(f).unwrap(),
                    format,
                )
            })
            .collect();
        encode_batch(&fields, batch)
            .unwrap()
            .into_iter()
            .map(|row| {
                let mut values = Vec::new();
                let mut data = &row.data[..];
                while !data.is_empty() {
                    let length = i32::from_be_bytes(data[..4].try_into().unwrap());
                    data = &data[4..];
                    if length < 0 {
                        values.push(None);
                    } else {
                        values.push(Some(data[..length as usize].to_vec()));
                        data = &data[length as usize..];
                    }
                }
                values
            })
            .collect()
    }

    #[test]
    fn tinyint_is_int2_in_both_formats() {
        let array: ArrayRef = Arc::new(Int8Array::from(vec![Some(1), Some(-128), None]));
        let batch = RecordBatch::try_from_iter([("t", array)]).unwrap();
        let binary = rows(&batch, FieldFormat::Binary);
        assert_eq!(binary[0][0], Some(vec![0, 1]));
        assert_eq!(binary[1][0], Some((-128_i16).to_be_bytes().to_vec()));
        assert_eq!(binary[2][0], None);
        let text = rows(&batch, FieldFormat::Text);
        assert_eq!(text[1][0], Some(b"-128".to_vec()));
    }

    #[test]
    fn non_finite_floats_are_spelled_as_postgresql_does() {
        let array: ArrayRef = Arc::new(Float64Array::from(vec![
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1.5,
        ]));
        let batch = RecordBatch::try_from_iter([("f", array)]).unwrap();
        let text: Vec<_> = rows(&batch, FieldFormat::Text)
            .into_iter()
            .map(|row| String::from_utf8(row[0].clone().unwrap()).unwrap())
            .collect();
        assert_eq!(text, ["Infinity", "-Infinity", "NaN", "1.5"]);
    }

    #[test]
    fn records_quote_and_leave_nulls_empty() {
        let words: ArrayRef = Arc::new(StringArray::from(vec![Some("x y"), Some(""), None]));
        let numbers: ArrayRef = Arc::new(Int32Array::from(vec![None, Some(7), None]));
        let record: ArrayRef = Arc::new(StructArray::from(vec![
            (Arc::new(Field::new("w", DataType::Utf8, true)), words),
            (Arc::new(Field::new("n", DataType::Int32, true)), numbers),
        ]));
        let schema = Schema::new(vec![Field::new("r", record.data_type().clone(), true)]);
        let batch = RecordBatch::try_new(Arc::new(schema), vec![record]).unwrap();
        let text: Vec<_> = rows(&batch, FieldFormat::Text)
            .into_iter()
            .map(|row| String::from_utf8(row[0].clone().unwrap()).unwrap())
            .collect();
        assert_eq!(text, [r#"("x y",)"#, r#"("",7)"#, "(,)"]);
        let binary = rows(&batch, FieldFormat::Binary);
        // 2 fields; text (oid 25) "x y"; int4 (oid 23) NULL.
        let mut expected = vec![0, 0, 0, 2, 0, 0, 0, 25, 0, 0, 0, 3];
        expected.extend(b"x y");
        expected.extend([0, 0, 0, 23, 255, 255, 255, 255]);
        assert_eq!(binary[0][0], Some(expected));
    }
}
