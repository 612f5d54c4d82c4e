//! Column bounds of the data files we write, true for every value in the file.
//!
//! Other engines (PyIceberg, Spark, Trino, DuckDB) skip a data file when a filter
//! cannot match anything between its lower and upper bounds, so a wrong bound
//! silently drops rows from their answers. The invariants kept here:
//!
//! - **Every bound holds for every non-null, non-NaN value in the file**, or the
//!   bound is absent. iceberg-rust 0.10 folds the Parquet row-group statistics
//!   into file bounds and skips the row groups whose statistics are inexact
//!   (Parquet truncates long string/binary statistics to 64 bytes by default), so
//!   the bounds of the other row groups became the file's: a first row group of
//!   long strings and a second of `'a'` gave lower = upper = `'a'`. We turn
//!   Parquet's statistics truncation off ([`BoundsWriterBuilder::new`]), so every
//!   row-group statistic is exact, and truncate the file's bounds ourselves.
//! - **Strings and binaries follow the Iceberg spec's truncation** (spec, "Appendix
//!   D / Metrics": a lower bound may be a prefix, an upper bound is truncated and
//!   then incremented): lower = the first [`TRUNCATE_LENGTH`] code points (bytes
//!   for binary); upper = the first [`TRUNCATE_LENGTH`] with its last code point
//!   (byte) incremented, dropping trailing ones that cannot be incremented; no upper
//!   bound when none can (Java's `UnicodeUtil.truncateStringMax` /
//!   `BinaryUtil.truncateBinaryMax`). Values no longer than the length stay exact.
//!   `fixed` and `uuid` are never truncated (their length is their type).
//! - **Floats**: bounds never are NaN (spec: "NaNs are not permitted as lower or
//!   upper bounds"; Parquet leaves NaN out of its statistics and iceberg-rust
//!   counts NaN into `nan_value_counts`); -0.0 precedes +0.0 (spec: IEEE 754
//!   totalOrder), so a zero lower bound is -0.0 and a zero upper bound +0.0.
//! - **Null counts** come from Parquet's statistics, which parquet-rs writes for
//!   every column chunk; value, null and NaN counts are not changed here. So
//!   statistics must stay enabled for every column (parquet-rs's default,
//!   `EnabledStatistics::Page`): a row group without them would drop out of the
//!   file's bounds and null counts, as inexact ones did.
//! - The cost of exact row-group statistics: the Parquet footer holds each row
//!   group's longest-value min and max in full (two values per column and row
//!   group); the page index keeps its own 64-byte truncation.
//!
//! Cost: no pass over the data; a few map lookups per file when it closes.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use iceberg::io::OutputFile;
use iceberg::spec::{DataFile, DataFileBuilder, Datum, PrimitiveLiteral, PrimitiveType, SchemaRef};
use iceberg::writer::file_writer::{
    FileWriter, FileWriterBuilder, ParquetWriter, ParquetWriterBuilder,
};
use iceberg::writer::CurrentFileStatus;
use parquet::file::properties::WriterPropertiesBuilder;

/// Code points (strings) or bytes (binaries) kept in a bound: Iceberg's default
/// metrics mode `truncate(16)` (table property `write.metadata.metrics.default`).
pub const TRUNCATE_LENGTH: usize = 16;

/// The lower bound of strings starting with `value`: its first `length` code points.
pub fn string_lower(value: &str, length: usize) -> &str {
    match value.char_indices().nth(length) {
        Some((end, _)) => &value[..end],
        None => value,
    }
}

/// An upper bound of strings starting with `value`: `value` itself when it has at
/// most `length` code points, else its first `length` code points with the last one
/// incremented (skipping the surrogate range; a code point at U+10FFFF is dropped
/// and the one before it incremented). `None` when no code point can be incremented.
pub fn string_upper(value: &str, length: usize) -> Option<String> {
    let prefix = string_lower(value, length);
    if prefix.len() == value.len() {
        return Some(value.to_string());
    }
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 + 1 {
            0xD800 => Some('\u{E000}'),
            code => char::from_u32(code),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The lower bound of binaries starting with `value`: its first `length` bytes.
pub fn binary_lower(value: &[u8], length: usize) -> &[u8] {
    &value[..value.len().min(length)]
}

/// An upper bound of binaries starting with `value`: `value` itself when at most
/// `length` bytes long, else its first `length` bytes with the last one below 0xFF
/// incremented and the 0xFF bytes after it dropped. `None` when all are 0xFF.
pub fn binary_upper(value: &[u8], length: usize) -> Option<Vec<u8>> {
    if value.len() <= length {
        return Some(value.to_vec());
    }
    let mut bytes = value[..length].to_vec();
    while let Some(last) = bytes.pop() {
        if let Some(next) = last.checked_add(1) {
            bytes.push(next);
            return Some(bytes);
        }
    }
    None
}

/// Which end of the value range a bound closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Lower,
    Upper,
}

/// The bound that an exact `bound` of a file's values becomes in its manifest entry,
/// `None` when it must be absent (see the module invariants).
fn manifest_bound(bound: &Datum, end: End) -> Option<Datum> {
    let truncatable = matches!(
        bound.data_type(),
        PrimitiveType::String | PrimitiveType::Binary
    );
    match (bound.literal(), end) {
        (PrimitiveLiteral::String(s), End::Lower) if truncatable => {
            Some(Datum::string(string_lower(s, TRUNCATE_LENGTH)))
        }
        (PrimitiveLiteral::String(s), End::Upper) if truncatable => {
            string_upper(s, TRUNCATE_LENGTH).map(Datum::string)
        }
        (PrimitiveLiteral::Binary(b), End::Lower) if truncatable => {
            Some(Datum::binary(binary_lower(b, TRUNCATE_LENGTH).to_vec()))
        }
        (PrimitiveLiteral::Binary(b), End::Upper) if truncatable => {
            binary_upper(b, TRUNCATE_LENGTH).map(Datum::binary)
        }
        (PrimitiveLiteral::Float(f), _) if f.is_nan() => None,
        (PrimitiveLiteral::Double(d), _) if d.is_nan() => None,
        (PrimitiveLiteral::Float(f), End::Lower) if f.0 == 0.0 => Some(Datum::float(-0.0)),
        (PrimitiveLiteral::Float(f), End::Upper) if f.0 == 0.0 => Some(Datum::float(0.0)),
        (PrimitiveLiteral::Double(d), End::Lower) if d.0 == 0.0 => Some(Datum::double(-0.0)),
        (PrimitiveLiteral::Double(d), End::Upper) if d.0 == 0.0 => Some(Datum::double(0.0)),
        _ => Some(bound.clone()),
    }
}

/// The manifest bounds of a file whose exact bounds are `bounds`.
fn manifest_bounds(bounds: &HashMap<i32, Datum>, end: End) -> HashMap<i32, Datum> {
    bounds
        .iter()
        .filter_map(|(id, bound)| Some((*id, manifest_bound(bound, end)?)))
        .collect()
}

/// Builds [`BoundsWriter`]s: iceberg-rust's Parquet writer with exact row-group
/// statistics, whose data files carry the manifest bounds of the module invariants.
#[derive(Clone, Debug)]
pub struct BoundsWriterBuilder(ParquetWriterBuilder);

impl BoundsWriterBuilder {
    /// A writer of `schema` (Iceberg field ids in its Arrow metadata) with `props`,
    /// Parquet's statistics truncation turned off.
    pub fn new(props: WriterPropertiesBuilder, schema: SchemaRef) -> Self {
        let props = props.set_statistics_truncate_length(None).build();
        Self(ParquetWriterBuilder::new(props, schema))
    }
}

impl FileWriterBuilder for BoundsWriterBuilder {
    type R = BoundsWriter;

    async fn build(&self, output_file: OutputFile) -> iceberg::Result<BoundsWriter> {
        Ok(BoundsWriter(self.0.build(output_file).await?))
    }
}

/// A Parquet data file being written; see [`BoundsWriterBuilder`].
pub struct BoundsWriter(ParquetWriter);

impl FileWriter for BoundsWriter {
    async fn write(&mut self, batch: &RecordBatch) -> iceberg::Result<()> {
        self.0.write(batch).await
    }

    async fn close(self) -> iceberg::Result<Vec<DataFileBuilder>> {
        let mut builders = self.0.close().await?;
        for builder in &mut builders {
            // The builder cannot be read; a trial build can (all its required
            // fields are set by the Parquet writer).
            let file: DataFile = builder
                .clone()
                .build()
                .map_err(|e| iceberg::Error::new(iceberg::ErrorKind::Unexpected, e.to_string()))?;
            builder
                .lower_bounds(manifest_bounds(file.lower_bounds(), End::Lower))
                .upper_bounds(manifest_bounds(file.upper_bounds(), End::Upper));
        }
        Ok(builders)
    }
}

impl CurrentFileStatus for BoundsWriter {
    fn current_file_path(&self) -> String {
        self.0.current_file_path()
    }

    fn current_row_num(&self) -> usize {
        self.0.current_row_num()
    }

    fn current_written_size(&self) -> usize {
        self.0.current_written_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_stay_exact() {
        assert_eq!(string_lower("abc", 16), "abc");
        assert_eq!(string_upper("abc", 16).as_deref(), Some("abc"));
        assert_eq!(string_upper("", 16).as_deref(), Some(""));
        let sixteen = "abcdefghijklmnop";
        assert_eq!(string_lower(sixteen, 16), sixteen);
        assert_eq!(string_upper(sixteen, 16).as_deref(), Some(sixteen));
    }

    #[test]
    fn long_strings_truncate_to_code_points_and_increment_the_last() {
        assert_eq!(string_lower("abcdefghijklmnopq", 16), "abcdefghijklmnop");
        assert_eq!(
            string_upper("abcdefghijklmnopq", 16).as_deref(),
            Some("abcdefghijklmnoq")
        );
        // Code points, not bytes: 'é' is two bytes, '😀' four.
        assert_eq!(string_lower("éééé", 2), "éé");
        assert_eq!(string_upper("éééé", 2).as_deref(), Some("éê"));
        assert_eq!(string_upper("a😀😀", 2).as_deref(), Some("a😁"));
        // A code point may grow in bytes when incremented (U+007F → U+0080).
        assert_eq!(string_upper("a\u{7F}z", 2).as_deref(), Some("a\u{80}"));
    }

    #[test]
    fn string_upper_skips_surrogates_and_the_last_code_point() {
        assert_eq!(string_upper("a\u{D7FF}z", 2).as_deref(), Some("a\u{E000}"));
        assert_eq!(
            string_upper("a\u{10FFFF}z", 2).as_deref(),
            Some("b"),
            "U+10FFFF cannot grow: it is dropped and 'a' incremented"
        );
        assert_eq!(string_upper("\u{10FFFF}\u{10FFFF}z", 2), None);
    }

    #[test]
    fn binaries_truncate_to_bytes_and_increment_the_last() {
        assert_eq!(binary_lower(&[1, 2, 3], 2), &[1, 2]);
        assert_eq!(binary_lower(&[1, 2], 2), &[1, 2]);
        assert_eq!(binary_upper(&[1, 2], 2), Some(vec![1, 2]));
        assert_eq!(binary_upper(&[1, 2, 3], 2), Some(vec![1, 3]));
        assert_eq!(binary_upper(&[1, 0xFF, 3], 2), Some(vec![2]));
        assert_eq!(binary_upper(&[0xFF, 0xFF, 3], 2), None);
    }

    #[test]
    fn float_bounds_are_never_nan_and_zero_is_signed_by_end() {
        assert_eq!(manifest_bound(&Datum::double(f64::NAN), End::Lower), None);
        assert_eq!(manifest_bound(&Datum::float(f32::NAN), End::Upper), None);
        let lower = manifest_bound(&Datum::double(0.0), End::Lower);
        assert!(
            matches!(lower.as_ref().map(Datum::literal), Some(PrimitiveLiteral::Double(d)) if d.is_sign_negative())
        );
        let upper = manifest_bound(&Datum::float(-0.0), End::Upper);
        assert!(
            matches!(upper.as_ref().map(Datum::literal), Some(PrimitiveLiteral::Float(f)) if f.is_sign_positive())
        );
        assert_eq!(
            manifest_bound(&Datum::double(-1.5), End::Lower),
            Some(Datum::double(-1.5))
        );
    }

    #[test]
    fn fixed_and_other_types_are_kept() {
        let fixed = Datum::fixed(vec![0xFF; 20]);
        assert_eq!(manifest_bound(&fixed, End::Upper), Some(fixed));
        assert_eq!(
            manifest_bound(&Datum::long(7), End::Upper),
            Some(Datum::long(7))
        );
    }
}
