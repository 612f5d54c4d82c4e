//! A JSON decoder specialised to flat event schemas: one pass over each message,
//! straight into Arrow builders, with no tape and no per-value string copies.
//!
//! # Contract: a strict subset of arrow-json
//!
//! arrow-json stays the judge of what a record means. This decoder accepts only
//! input whose meaning is beyond doubt, and produces exactly the rows arrow-json
//! would for it; for anything else it gives up on the whole batch ([`None`]) and the
//! caller decodes with arrow-json as before. So it can make the sink faster, never
//! different. Accepted, per message:
//! - one JSON object (RFC 8259 grammar, whitespace around it), no duplicate keys;
//! - keys naming columns hold `null` (nullable columns only) or a scalar of the
//!   column's type: a string for `Utf8`; `true`/`false` for `Boolean`; an integer
//!   in range for `Int32`/`Int64`; a finite number for `Float32`/`Float64`; a number
//!   with at most `scale` decimals and at most `precision` digits for `Decimal128`;
//!   `"YYYY-MM-DD"` for `Date32`; `"YYYY-MM-DD[T| ]HH:MM:SS[.f…f]"` with at most six
//!   decimals and an optional `Z` for µs timestamps (read as UTC, as arrow-json
//!   does);
//! - a missing key is null, so only for nullable columns;
//! - other keys are skipped (their values are still checked to be valid JSON), or,
//!   with `strict` (schema evolution on), give up so the caller can evolve.
//!
//! The differential tests below hold it to that contract against arrow-json itself.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::NullBufferBuilder;
use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringArray,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};

/// The input is outside the subset this decoder accepts (see the module docs).
#[derive(Debug)]
struct GiveUp;

type Step<T> = Result<T, GiveUp>;

/// How one column's values are read.
#[derive(Clone, Debug)]
enum Kind {
    Utf8,
    Boolean,
    Int32,
    Int64,
    Float32,
    Float64,
    Date32,
    Timestamp(Option<Arc<str>>),
    Decimal { precision: u8, scale: u32 },
}

impl Kind {
    fn of(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Utf8 => Self::Utf8,
            DataType::Boolean => Self::Boolean,
            DataType::Int32 => Self::Int32,
            DataType::Int64 => Self::Int64,
            DataType::Float32 => Self::Float32,
            DataType::Float64 => Self::Float64,
            DataType::Date32 => Self::Date32,
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                // A named zone would shift zone-less strings; only UTC reads as-is.
                if tz
                    .as_deref()
                    .is_some_and(|tz| !matches!(tz, "+00:00" | "UTC" | "Z"))
                {
                    return None;
                }
                Self::Timestamp(tz.clone())
            }
            DataType::Decimal128(precision, scale) if (0..=18).contains(scale) => Self::Decimal {
                precision: *precision,
                scale: *scale as u32,
            },
            _ => return None,
        })
    }
}

/// A string column as raw bytes: each string is checked for UTF-8 once, with the
/// whole column, when it is finished.
struct Utf8Column {
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

    fn end_value(&mut self) -> Step<()> {
        self.offsets
            .push(i32::try_from(self.values.len()).map_err(|_| GiveUp)?);
        Ok(())
    }

    fn finish(mut self) -> Step<ArrayRef> {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        // Checks the values are UTF-8 and every offset falls between characters.
        let array = StringArray::try_new(offsets, self.values.into(), self.nulls.finish())
            .map_err(|_| GiveUp)?;
        Ok(Arc::new(array))
    }
}

/// One column being built.
enum Column {
    Utf8(Utf8Column),
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
    fn new(kind: &Kind, capacity: usize) -> Self {
        match kind {
            Kind::Utf8 => Self::Utf8(Utf8Column::with_capacity(capacity)),
            Kind::Boolean => Self::Boolean(BooleanBuilder::with_capacity(capacity)),
            Kind::Int32 => Self::Int32(Int32Builder::with_capacity(capacity)),
            Kind::Int64 => Self::Int64(Int64Builder::with_capacity(capacity)),
            Kind::Float32 => Self::Float32(Float32Builder::with_capacity(capacity)),
            Kind::Float64 => Self::Float64(Float64Builder::with_capacity(capacity)),
            Kind::Date32 => Self::Date32(Date32Builder::with_capacity(capacity)),
            Kind::Timestamp(tz) => Self::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone_opt(tz.clone()),
            ),
            Kind::Decimal { precision, scale } => Self::Decimal(
                Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(*precision, *scale as i8)
                    .unwrap_or_else(|_| Decimal128Builder::with_capacity(capacity)),
            ),
        }
    }

    fn append_null(&mut self) -> Step<()> {
        match self {
            Self::Utf8(b) => {
                b.nulls.append_null();
                b.end_value()?;
            }
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

    /// Read a non-null value of this column's type at the cursor.
    fn append(&mut self, kind: &Kind, json: &mut Cursor<'_>) -> Step<()> {
        match self {
            Self::Utf8(b) => {
                json.string_into(&mut b.values)?;
                b.nulls.append_non_null();
                b.end_value()?;
            }
            Self::Boolean(b) => b.append_value(json.boolean()?),
            Self::Int32(b) => {
                b.append_value(i32::try_from(json.number()?.integer()?).map_err(|_| GiveUp)?)
            }
            Self::Int64(b) => b.append_value(json.number()?.integer()?),
            Self::Float32(b) => b.append_value(json.number()?.float::<f32>()?),
            Self::Float64(b) => b.append_value(json.number()?.float::<f64>()?),
            // Only ASCII digits and separators are accepted: no UTF-8 check needed.
            Self::Date32(b) => b.append_value(date32(&json.raw_string()?)?),
            Self::Timestamp(b) => b.append_value(timestamp_micros(&json.raw_string()?)?),
            Self::Decimal(b) => {
                let Kind::Decimal { precision, scale } = kind else {
                    return Err(GiveUp);
                };
                b.append_value(json.number()?.decimal(*precision, *scale)?)
            }
        }
        Ok(())
    }

    fn len(&self) -> usize {
        match self {
            Self::Utf8(b) => b.offsets.len() - 1,
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

    fn finish(self) -> Step<ArrayRef> {
        Ok(match self {
            Self::Utf8(b) => b.finish()?,
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
    /// A decoder for `schema`, or `None` when a column's type is outside the subset
    /// (or there are more than 64 columns).
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

    /// One row per message, in order; `None` as soon as one message is outside the
    /// subset (the caller then decodes the batch with arrow-json).
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
            .collect::<Step<Vec<_>>>()
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
                        if json.null()? {
                            if self.nullable & bit == 0 {
                                return Err(GiveUp);
                            }
                            columns[i].append_null()?;
                        } else {
                            columns[i].append(&self.kinds[i], &mut json)?;
                        }
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
                    column.append_null()?;
                }
            }
        }
        Ok(())
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

/// A JSON number token, validated against RFC 8259's grammar.
struct Number<'a> {
    text: &'a str,
    negative: bool,
    int_digits: &'a [u8],
    frac_digits: &'a [u8],
    has_exponent: bool,
}

impl Number<'_> {
    fn integer(&self) -> Step<i64> {
        if !self.frac_digits.is_empty() || self.has_exponent {
            return Err(GiveUp);
        }
        let magnitude = digits_value(self.int_digits)?;
        if self.negative {
            0i64.checked_sub_unsigned(magnitude).ok_or(GiveUp)
        } else {
            i64::try_from(magnitude).map_err(|_| GiveUp)
        }
    }

    fn float<F: std::str::FromStr + Finite>(&self) -> Step<F> {
        let value: F = self.text.parse().map_err(|_| GiveUp)?;
        value.finite().then_some(value).ok_or(GiveUp)
    }

    /// The unscaled value at `scale`, when it is exact and has at most `precision`
    /// digits.
    fn decimal(&self, precision: u8, scale: u32) -> Step<i128> {
        let decimals = self.frac_digits.len() as u32;
        if self.has_exponent || decimals > scale || self.int_digits.len() > 38 {
            return Err(GiveUp);
        }
        let mut unscaled: i128 = 0;
        for &d in self.int_digits.iter().chain(self.frac_digits) {
            unscaled = unscaled
                .checked_mul(10)
                .and_then(|v| v.checked_add(i128::from(d - b'0')))
                .ok_or(GiveUp)?;
        }
        unscaled = unscaled
            .checked_mul(10i128.checked_pow(scale - decimals).ok_or(GiveUp)?)
            .ok_or(GiveUp)?;
        let bound = 10i128.checked_pow(u32::from(precision)).ok_or(GiveUp)?;
        if unscaled >= bound {
            return Err(GiveUp);
        }
        Ok(if self.negative { -unscaled } else { unscaled })
    }
}

trait Finite {
    fn finite(&self) -> bool;
}

impl Finite for f32 {
    fn finite(&self) -> bool {
        self.is_finite()
    }
}

impl Finite for f64 {
    fn finite(&self) -> bool {
        self.is_finite()
    }
}

/// The value of 1–19 decimal digits.
fn digits_value(digits: &[u8]) -> Step<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return Err(GiveUp);
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
            .ok_or(GiveUp)
    })
}

/// A position in one message.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// How deep [`Cursor::skip_value`] follows nested values before giving up.
const MAX_DEPTH: usize = 64;

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next non-whitespace byte, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.pos).copied()
    }

    /// Consume `byte` if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect(&mut self, byte: u8) -> Step<()> {
        self.eat(byte).then_some(()).ok_or(GiveUp)
    }

    /// Only whitespace is left.
    fn end(&mut self) -> Step<()> {
        self.skip_whitespace();
        (self.pos == self.bytes.len()).then_some(()).ok_or(GiveUp)
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let found = self.bytes[self.pos..].starts_with(word);
        if found {
            self.pos += word.len();
        }
        found
    }

    /// Consume `null` if it is next.
    fn null(&mut self) -> Step<bool> {
        self.peek().ok_or(GiveUp)?;
        Ok(self.literal(b"null"))
    }

    fn boolean(&mut self) -> Step<bool> {
        self.peek().ok_or(GiveUp)?;
        if self.literal(b"true") {
            Ok(true)
        } else if self.literal(b"false") {
            Ok(false)
        } else {
            Err(GiveUp)
        }
    }

    /// A string's content, unescaped, not yet checked to be UTF-8.
    fn raw_string(&mut self) -> Step<Cow<'a, [u8]>> {
        self.expect(b'"')?;
        let start = self.pos;
        loop {
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    let content = &self.bytes[start..self.pos];
                    self.pos += 1;
                    return Ok(Cow::Borrowed(content));
                }
                Some(b'\\') => {
                    let mut out = self.bytes[start..self.pos].to_vec();
                    self.unescape_rest(&mut out)?;
                    return Ok(Cow::Owned(out));
                }
                Some(&b) if b < 0x20 => return Err(GiveUp),
                Some(_) => self.pos += 1,
                None => return Err(GiveUp),
            }
        }
    }

    /// An object key: compared as bytes with the column names, which are UTF-8.
    fn key(&mut self) -> Step<Cow<'a, [u8]>> {
        self.raw_string()
    }

    fn string(&mut self) -> Step<Cow<'a, str>> {
        match self.raw_string()? {
            Cow::Borrowed(b) => std::str::from_utf8(b)
                .map(Cow::Borrowed)
                .map_err(|_| GiveUp),
            Cow::Owned(b) => String::from_utf8(b).map(Cow::Owned).map_err(|_| GiveUp),
        }
    }

    /// Append a string's unescaped content to `out`, leaving the UTF-8 check to the
    /// caller. Escapes produce whole characters, so the content is UTF-8 exactly when
    /// each raw run between escapes is.
    fn string_into(&mut self, out: &mut Vec<u8>) -> Step<()> {
        out.extend_from_slice(&self.raw_string()?);
        Ok(())
    }

    /// The rest of a string from an escape on, up to and including its closing quote.
    fn unescape_rest(&mut self, out: &mut Vec<u8>) -> Step<()> {
        loop {
            match self.bytes.get(self.pos) {
                Some(b'"') => break,
                Some(b'\\') => {
                    let escape = *self.bytes.get(self.pos + 1).ok_or(GiveUp)?;
                    self.pos += 2;
                    let c = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(GiveUp),
                    };
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                Some(&b) if b < 0x20 => return Err(GiveUp),
                Some(&b) => {
                    out.push(b);
                    self.pos += 1;
                }
                None => return Err(GiveUp),
            }
        }
        self.pos += 1;
        Ok(())
    }

    /// The character of `\uXXXX` (its `\u` consumed), joining a surrogate pair.
    fn unicode_escape(&mut self) -> Step<char> {
        let high = self.hex4()?;
        let code = match high {
            0xD800..=0xDBFF => {
                if !self.bytes[self.pos..].starts_with(b"\\u") {
                    return Err(GiveUp);
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(GiveUp);
                }
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(GiveUp),
            _ => high,
        };
        char::from_u32(code).ok_or(GiveUp)
    }

    fn hex4(&mut self) -> Step<u32> {
        let digits = self.bytes.get(self.pos..self.pos + 4).ok_or(GiveUp)?;
        let mut value = 0;
        for &d in digits {
            value = value * 16 + char::from(d).to_digit(16).ok_or(GiveUp)?;
        }
        self.pos += 4;
        Ok(value)
    }

    fn number(&mut self) -> Step<Number<'a>> {
        self.peek().ok_or(GiveUp)?;
        let start = self.pos;
        let negative = self.bytes.get(self.pos) == Some(&b'-');
        if negative {
            self.pos += 1;
        }
        let int_digits = self.digits();
        // No empty integer part, no leading zeros.
        if int_digits.is_empty() || (int_digits.len() > 1 && int_digits[0] == b'0') {
            return Err(GiveUp);
        }
        let mut frac_digits: &[u8] = &[];
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            frac_digits = self.digits();
            if frac_digits.is_empty() {
                return Err(GiveUp);
            }
        }
        let has_exponent = matches!(self.bytes.get(self.pos), Some(b'e' | b'E'));
        if has_exponent {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if self.digits().is_empty() {
                return Err(GiveUp);
            }
        }
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).map_err(|_| GiveUp)?;
        Ok(Number {
            text,
            negative,
            int_digits,
            frac_digits,
            has_exponent,
        })
    }

    fn digits(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        &self.bytes[start..self.pos]
    }

    /// Step over any JSON value, checking it is well formed.
    fn skip_value(&mut self, depth: usize) -> Step<()> {
        if depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        match self.peek().ok_or(GiveUp)? {
            b'"' => self.string().map(drop),
            b'{' => {
                self.pos += 1;
                if self.eat(b'}') {
                    return Ok(());
                }
                loop {
                    self.string()?;
                    self.expect(b':')?;
                    self.skip_value(depth + 1)?;
                    if self.eat(b'}') {
                        return Ok(());
                    }
                    self.expect(b',')?;
                }
            }
            b'[' => {
                self.pos += 1;
                if self.eat(b']') {
                    return Ok(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    if self.eat(b']') {
                        return Ok(());
                    }
                    self.expect(b',')?;
                }
            }
            b't' | b'f' => self.boolean().map(drop),
            b'n' => self.null()?.then_some(()).ok_or(GiveUp),
            _ => self.number().map(drop),
        }
    }
}

/// Days since 1970-01-01 of `"YYYY-MM-DD"`.
fn date32(text: &[u8]) -> Step<i32> {
    if text.len() != 10 {
        return Err(GiveUp);
    }
    let days = civil_days(text)?;
    i32::try_from(days).map_err(|_| GiveUp)
}

/// µs since the epoch of `"YYYY-MM-DD[T| ]HH:MM:SS[.f…f][Z]"` (UTC).
fn timestamp_micros(text: &[u8]) -> Step<i64> {
    if text.len() < 19 || !matches!(text[10], b'T' | b' ') || text[13] != b':' || text[16] != b':' {
        return Err(GiveUp);
    }
    let days = civil_days(&text[..10])?;
    let hour = two_digits(&text[11..13])?;
    let minute = two_digits(&text[14..16])?;
    let second = two_digits(&text[17..19])?;
    if hour > 23 || minute > 59 || second > 59 {
        return Err(GiveUp);
    }
    let mut rest = &text[19..];
    let mut micros = 0i64;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 6 {
            return Err(GiveUp);
        }
        for &d in &fraction[..n] {
            micros = micros * 10 + i64::from(d - b'0');
        }
        micros *= 10i64.pow(6 - n as u32);
        rest = &fraction[n..];
    }
    if !(rest.is_empty() || rest == b"Z") {
        return Err(GiveUp);
    }
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Ok(seconds * 1_000_000 + micros)
}

fn two_digits(text: &[u8]) -> Step<u32> {
    match text {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Ok(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
        }
        _ => Err(GiveUp),
    }
}

/// Days since 1970-01-01 of `YYYY-MM-DD` (proleptic Gregorian), checking the day
/// exists.
fn civil_days(text: &[u8]) -> Step<i64> {
    if text.len() != 10 || text[4] != b'-' || text[7] != b'-' {
        return Err(GiveUp);
    }
    let year = i64::from(two_digits(&text[0..2])? * 100 + two_digits(&text[2..4])?);
    let month = two_digits(&text[5..7])?;
    let day = two_digits(&text[8..10])?;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(GiveUp),
    };
    if day == 0 || day > month_days {
        return Err(GiveUp);
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use arrow::datatypes::{Field, Schema};
    use arrow::json::ReaderBuilder;

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

    /// arrow-json's rows for the messages, `None` when it rejects any of them.
    fn arrow_json(schema: &SchemaRef, strict: bool, messages: &[&[u8]]) -> Option<RecordBatch> {
        let mut decoder = ReaderBuilder::new(schema.clone())
            .with_batch_size(messages.len().max(1))
            .with_strict_mode(strict)
            .build_decoder()
            .unwrap();
        for m in messages {
            if decoder.decode(m).ok()? != m.len() {
                return None;
            }
        }
        let batch = decoder.flush().ok()??;
        (batch.num_rows() == messages.len()).then_some(batch)
    }

    /// The contract: whatever the flat decoder accepts, arrow-json accepts too, with
    /// the same rows.
    fn assert_agrees(messages: &[&[u8]]) -> bool {
        let schema = schema();
        let mut accepted = false;
        for strict in [false, true] {
            let flat = FlatDecoder::new(&schema, strict).unwrap();
            if let Some(ours) = flat.decode(messages.iter().copied()) {
                let theirs = arrow_json(&schema, strict, messages).unwrap_or_else(|| {
                    panic!(
                        "accepted what arrow-json rejects: {:?}",
                        messages
                            .iter()
                            .map(|m| String::from_utf8_lossy(m))
                            .collect::<Vec<_>>()
                    )
                });
                assert_eq!(
                    ours,
                    theirs,
                    "{:?}",
                    messages
                        .iter()
                        .map(|m| String::from_utf8_lossy(m))
                        .collect::<Vec<_>>()
                );
                accepted = true;
            }
        }
        accepted
    }

    const BASE: &str = r#"{"event_time": "2023-10-27 10:00:00", "store_id": 7, "product_id": "P-1", "unit_price": 12.5}"#;

    #[test]
    fn accepts_typical_events_and_matches_arrow_json() {
        let accepted = [
            BASE,
            r#"{"event_time":"2023-10-27T10:00:00.123456","store_id":-7,"product_id":"","unit_price":-0.01,"quantity":9007199254740993,"score":1e-7,"ratio":0.1,"ok":true,"day":"2024-02-29","at":"1969-12-31 23:59:59.5Z"}"#,
            " {\"store_id\":2147483647 ,\n\"product_id\":\"caf\u{e9} \\\"q\\\" \\u00e9\\ud83d\\ude00\\n\\/\" , \"event_time\":\"0001-01-01 00:00:00\", \"unit_price\":null, \"ok\":false}\t",
            r#"{"event_time": "9999-12-31 23:59:59.999999", "store_id": -2147483648, "product_id": "x", "extra": {"a": [1, {"b": null}, "s"], "c": -1.5e3}, "unit_price": 99999999.99}"#,
            r#"{"event_time": "2000-03-01 00:00:00", "store_id": 0, "product_id": "x", "score": 5, "ratio": 3.4028234e38, "quantity": -9223372036854775808}"#,
        ];
        for message in accepted {
            assert!(assert_agrees(&[message.as_bytes()]), "gave up on {message}");
        }
        let all: Vec<&[u8]> = accepted.iter().map(|m| m.as_bytes()).collect();
        assert!(assert_agrees(&all));
    }

    #[test]
    fn gives_up_outside_the_subset() {
        let outside = [
            "",
            "[1]",
            "{} {}",
            r#"{"store_id": 1}"#, // required columns missing
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "x", "store_id": 2}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": "1", "product_id": "x"}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1.0, "product_id": "x"}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 2147483648, "product_id": "x"}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "x", "unit_price": 1.005}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "x", "unit_price": 1e2}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "x", "unit_price": 100000000}"#,
            r#"{"event_time": "2023-10-27 10:00:00+02:00", "store_id": 1, "product_id": "x"}"#,
            r#"{"event_time": "2023-02-29 10:00:00", "store_id": 1, "product_id": "x"}"#,
            r#"{"event_time": "2023-10-27 24:00:00", "store_id": 1, "product_id": "x"}"#,
            r#"{"event_time": "2023-10-27 10:00:00.1234567", "store_id": 1, "product_id": "x"}"#,
            r#"{"event_time": 1698400800000000, "store_id": 1, "product_id": "x"}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 01, "product_id": "x"}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "\ud800"}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "x", "score": 1e999}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "x", "extra": [1,]}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "x",}"#,
            r#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": null}"#,
        ];
        let schema = schema();
        for message in outside {
            let flat = FlatDecoder::new(&schema, false).unwrap();
            assert!(
                flat.decode([message.as_bytes()].into_iter()).is_none(),
                "accepted {message}"
            );
        }
        // Invalid UTF-8 inside a string.
        let mut bad = BASE.as_bytes().to_vec();
        let at = BASE.find("P-1").unwrap();
        bad[at] = 0xff;
        assert!(FlatDecoder::new(&schema, false)
            .unwrap()
            .decode([bad.as_slice()].into_iter())
            .is_none());
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
        assert!(FlatDecoder::new(&schema, false)
            .unwrap()
            .decode([first.as_slice(), second.as_slice()].into_iter())
            .is_none());
        // An unknown key that is not UTF-8.
        let key = br#"{"event_time": "2023-10-27 10:00:00", "store_id": 1, "product_id": "x", "\xff": 1}"#;
        assert!(FlatDecoder::new(&schema, false)
            .unwrap()
            .decode([key.as_slice()].into_iter())
            .is_none());
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
        let zoned = Arc::new(Schema::new(vec![Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("Europe/Oslo".into())),
            true,
        )]));
        assert!(FlatDecoder::new(&zoned, false).is_none());
    }

    /// Every single-byte corruption of a few valid events: when the flat decoder
    /// still accepts the message, arrow-json must agree with it exactly.
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

    #[test]
    fn calendar_arithmetic_matches_chrono() {
        use chrono::NaiveDate;
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let mut day = NaiveDate::from_ymd_opt(1, 1, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(9999, 12, 31).unwrap();
        while day <= end {
            let text = day.format("%Y-%m-%d").to_string();
            assert_eq!(
                civil_days(text.as_bytes()).unwrap(),
                (day - epoch).num_days(),
                "{text}"
            );
            day = day + chrono::Days::new(17);
        }
    }

    /// Random decimals, floats and integers as text: same values as arrow-json.
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
            let score = if score.is_finite() {
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
    }
}
