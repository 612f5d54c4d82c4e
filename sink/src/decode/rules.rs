//! The sink's input rules: how one JSON value becomes the value of one column, or
//! why it cannot. Both decoding tiers ([`super::flat`] and [`super::checked`]) ask
//! these rules, so they cannot disagree about what a value means; only how they
//! read JSON differs.
//!
//! # Invariant: a value is kept exactly or refused, never changed
//!
//! | column | accepted | refused (the record is dead-lettered) |
//! |---|---|---|
//! | `string` | a string | numbers, booleans, arrays, objects (no coercion: `1`, `1.0` and `1e0` would all have to become some text) |
//! | `binary` | a string of hex digits, two per byte (as arrow-json reads binary) | other strings, numbers, booleans |
//! | `boolean` | `true`, `false` | everything else (`"true"`, `0`, `1`) |
//! | `int`, `long` | a number whose exact value is whole and in range, in any notation (`1000`, `1e3`, `1000.0`) | fractions (`1.5`), values out of range, strings, booleans |
//! | `float`, `double` | a number, rounded to the nearest representable value (IEEE 754, as every JSON reader does) | numbers beyond the type's range, non-zero numbers that would round to zero, strings (`"NaN"`), booleans |
//! | `decimal(P,S)` | a number whose exact value needs at most `S` decimals (trailing zeros and exponents are fine: `2.990`, `299e-2`) and at most `P` digits | more decimals than the scale (`2.999` into `decimal(10,2)`: never rounded), more digits than the precision, strings, booleans |
//! | `date` | `"YYYY-MM-DD"` | a time part or a zone (`"2023-10-27T10:00:00"`: not truncated), impossible dates, numbers |
//! | `timestamp` | `"YYYY-MM-DD[T or space]HH:MM:SS[.f…]"` with an optional zone (`Z`, `±HH:MM`, `±HHMM`, `±HH`); the wall clock is kept and the zone dropped (PostgreSQL's `timestamp`, Spark's `TIMESTAMP_NTZ`); a number is epoch **milliseconds** (as Iceberg's Kafka Connect sink reads numbers), taken as a UTC wall clock | fractions finer than a microsecond, a date without a time, times like `24:00:00` or `23:59:60`, booleans |
//! | `timestamptz` | the same strings, as the instant they name: a zone is applied, no zone means UTC; a number is epoch milliseconds | as for `timestamp` |
//!
//! Everywhere: `null` or a missing key is null, so only for optional columns; an
//! array or an object under a column is refused; a key that appears twice in one
//! record is refused (RFC 8259 leaves its meaning to the reader).

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};

/// How one column's values are read: the column types event schemas allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Utf8,
    /// Bytes, written as hex digits.
    Binary,
    Boolean,
    Int32,
    Int64,
    Float32,
    Float64,
    Date32,
    /// µs; `tz` is the Arrow zone of a `timestamptz` column (always UTC here).
    Timestamp {
        tz: Option<Arc<str>>,
    },
    Decimal {
        precision: u8,
        scale: u32,
    },
}

impl Kind {
    /// The kind of an Arrow column type, `None` outside the rules (nested types,
    /// binary, zones other than UTC, other units).
    pub(crate) fn of(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Utf8 => Self::Utf8,
            DataType::Binary => Self::Binary,
            DataType::Boolean => Self::Boolean,
            DataType::Int32 => Self::Int32,
            DataType::Int64 => Self::Int64,
            DataType::Float32 => Self::Float32,
            DataType::Float64 => Self::Float64,
            DataType::Date32 => Self::Date32,
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                // Iceberg's timestamptz is UTC; another zone would need its rules.
                if tz
                    .as_deref()
                    .is_some_and(|tz| !matches!(tz, "+00:00" | "UTC" | "Z"))
                {
                    return None;
                }
                Self::Timestamp { tz: tz.clone() }
            }
            DataType::Decimal128(precision, scale)
                if *precision <= 38 && (0..=*precision as i8).contains(scale) =>
            {
                Self::Decimal {
                    precision: *precision,
                    scale: *scale as u32,
                }
            }
            _ => return None,
        })
    }

    /// The column type as event schemas spell it (for messages).
    fn name(&self) -> String {
        match self {
            Self::Utf8 => "string".into(),
            Self::Binary => "binary".into(),
            Self::Boolean => "boolean".into(),
            Self::Int32 => "int".into(),
            Self::Int64 => "long".into(),
            Self::Float32 => "float".into(),
            Self::Float64 => "double".into(),
            Self::Date32 => "date".into(),
            Self::Timestamp { tz: None } => "timestamp".into(),
            Self::Timestamp { tz: Some(_) } => "timestamptz".into(),
            Self::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
        }
    }

    /// The value `json` gives this column, or why it gives none (a message for the
    /// dead letter, without the column's name). Strings of a `string` or `binary`
    /// column are left to the caller ([`Value::Text`]): it copies their bytes as
    /// they are, or decodes their hex digits (checked here).
    pub(crate) fn convert(&self, json: Json<'_>) -> Result<Value, String> {
        match (self, json) {
            (_, Json::Null) => Err("null".into()),
            (Self::Utf8, Json::String(_)) => Ok(Value::Text),
            (Self::Binary, Json::String(text)) => match hex_bytes(text) {
                Some(_) => Ok(Value::Text),
                None => Err(format!(
                    "\"{}\" is not hex digits (binary columns take two per byte)",
                    shorten(text)
                )),
            },
            (Self::Boolean, Json::Bool(b)) => Ok(Value::Boolean(b)),
            (Self::Int32, Json::Number(text)) => {
                let whole = self.whole(text)?;
                i32::try_from(whole)
                    .map(Value::Int32)
                    .map_err(|_| format!("{text} is out of range for int"))
            }
            (Self::Int64, Json::Number(text)) => {
                let whole = self.whole(text)?;
                i64::try_from(whole)
                    .map(Value::Int64)
                    .map_err(|_| format!("{text} is out of range for long"))
            }
            (Self::Float32, Json::Number(text)) => float::<f32>(text, "float").map(Value::Float32),
            (Self::Float64, Json::Number(text)) => float::<f64>(text, "double").map(Value::Float64),
            (Self::Decimal { precision, scale }, Json::Number(text)) => {
                decimal(text, *precision, *scale).map(Value::Decimal)
            }
            (Self::Date32, Json::String(text)) => date(text).map(Value::Date32),
            (Self::Timestamp { tz }, Json::String(text)) => {
                timestamp(text, tz.is_some()).map(Value::Micros)
            }
            (Self::Timestamp { .. }, Json::Number(text)) => epoch_millis(text).map(Value::Micros),
            (kind, found) => {
                let name = kind.name();
                let article = if name.starts_with('i') { "an" } else { "a" };
                Err(format!(
                    "{article} {name} column does not take {}",
                    found.describe()
                ))
            }
        }
    }

    /// The whole number `text` names (exactly), for integer columns.
    fn whole(&self, text: &str) -> Result<i128, String> {
        match scaled(text, 0) {
            Ok(v) => Ok(v),
            Err(NumberError::Decimals) => Err(format!(
                "{text} is not a whole number ({} columns take whole numbers)",
                self.name()
            )),
            Err(NumberError::Range) => Err(format!("{text} is out of range for {}", self.name())),
            Err(NumberError::Syntax) => Err(format!("{text} is not a JSON number")),
        }
    }
}

/// One JSON value, as both tiers read it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    /// The number's text, valid by RFC 8259's grammar.
    Number(&'a str),
    /// The string's content, unescaped (not checked to be UTF-8: only the
    /// caller's `string` columns need that, and dates and times are ASCII).
    String(&'a [u8]),
    Array,
    Object,
}

impl Json<'_> {
    fn describe(&self) -> String {
        match self {
            Json::Null => "null".into(),
            Json::Bool(b) => format!("a boolean ({b})"),
            Json::Number(text) => format!("a number ({})", shorten(text.as_bytes())),
            Json::String(text) => format!("a string (\"{}\")", shorten(text)),
            Json::Array => "an array".into(),
            Json::Object => "an object".into(),
        }
    }
}

/// A column value; strings are copied by the caller.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Value {
    Text,
    Boolean(bool),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    /// Days since 1970-01-01.
    Date32(i32),
    /// µs since 1970-01-01 00:00:00 (UTC for `timestamptz`, the wall clock for
    /// `timestamp`).
    Micros(i64),
    /// The unscaled value at the column's scale.
    Decimal(i128),
}

/// The bytes hex digits spell (`None` for an odd count or another character).
pub(crate) fn hex_bytes(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2)
        .map(|pair| {
            let digit = |d: u8| char::from(d).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

/// At most this much of a value is quoted in a message.
const QUOTED: usize = 64;

fn shorten(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    match text.char_indices().nth(QUOTED) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum NumberError {
    /// Not a JSON number.
    Syntax,
    /// Non-zero digits beyond the wanted scale.
    Decimals,
    /// Does not fit 128 bits at the wanted scale.
    Range,
}

/// The value of the number `text` × 10^`scale`, when that is whole.
fn scaled(text: &str, scale: u32) -> Result<i128, NumberError> {
    plain(text, scale).map_or_else(|| Exact::parse(text)?.scaled(scale), Ok)
}

/// [`scaled`] in one pass for the common case: no exponent, at most `scale`
/// decimals, at most 18 digits in all (`None` otherwise: the general path).
fn plain(text: &str, scale: u32) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (digits, ""),
    };
    let zeros = scale.checked_sub(frac.len() as u32)?;
    if int.is_empty() || int.len() + scale as usize > 18 {
        return None;
    }
    let mut value = 0i64;
    for d in int.bytes().chain(frac.bytes()) {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(d - b'0');
    }
    let value = value * 10i64.pow(zeros);
    Some(i128::from(if negative { -value } else { value }))
}

/// A JSON number's exact decimal value: `±digits × 10^(exponent − frac_len)`.
struct Exact<'a> {
    negative: bool,
    int_digits: &'a [u8],
    frac_digits: &'a [u8],
    exponent: i64,
}

/// Exponents beyond this are clamped (the value is then out of every range or 0).
const MAX_EXPONENT: i64 = 1 << 40;

impl<'a> Exact<'a> {
    /// Parse RFC 8259's `-? int frac? exp?`.
    fn parse(text: &'a str) -> Result<Self, NumberError> {
        let bytes = text.as_bytes();
        let (negative, rest) = match bytes.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, bytes),
        };
        let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let (int_digits, mut rest) = rest.split_at(int_len);
        if int_digits.is_empty() || (int_digits.len() > 1 && int_digits[0] == b'0') {
            return Err(NumberError::Syntax);
        }
        let mut frac_digits: &[u8] = &[];
        if let Some(after) = rest.strip_prefix(b".") {
            let n = after.iter().take_while(|b| b.is_ascii_digit()).count();
            if n == 0 {
                return Err(NumberError::Syntax);
            }
            (frac_digits, rest) = after.split_at(n);
        }
        let mut exponent = 0i64;
        if let Some((b'e' | b'E', after)) = rest.split_first() {
            let (sign, digits) = match after.split_first() {
                Some((b'-', d)) => (-1, d),
                Some((b'+', d)) => (1, d),
                _ => (1, after),
            };
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(NumberError::Syntax);
            }
            let magnitude = digits.iter().fold(0i64, |acc, d| {
                (acc * 10 + i64::from(d - b'0')).min(MAX_EXPONENT)
            });
            exponent = sign * magnitude;
            rest = &[];
        }
        if !rest.is_empty() {
            return Err(NumberError::Syntax);
        }
        Ok(Self {
            negative,
            int_digits,
            frac_digits,
            exponent,
        })
    }

    /// The value × 10^`scale` when that is a whole number of at most 38 digits.
    fn scaled(&self, scale: u32) -> Result<i128, NumberError> {
        let digits = self.int_digits.iter().chain(self.frac_digits);
        let len = (self.int_digits.len() + self.frac_digits.len()) as i64;
        // Digits before this index form the scaled whole number.
        let keep = self.int_digits.len() as i64 + self.exponent + i64::from(scale);
        let mut unscaled: i128 = 0;
        for (i, &d) in digits.enumerate() {
            let d = i128::from(d - b'0');
            if (i as i64) < keep {
                unscaled = unscaled
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(d))
                    .ok_or(NumberError::Range)?;
            } else if d != 0 {
                return Err(NumberError::Decimals);
            }
        }
        if unscaled != 0 && keep > len {
            let zeros = u32::try_from(keep - len).map_err(|_| NumberError::Range)?;
            unscaled = 10i128
                .checked_pow(zeros)
                .and_then(|p| unscaled.checked_mul(p))
                .ok_or(NumberError::Range)?;
        }
        Ok(if self.negative { -unscaled } else { unscaled })
    }

    fn is_zero(&self) -> bool {
        self.int_digits
            .iter()
            .chain(self.frac_digits)
            .all(|&d| d == b'0')
    }
}

/// The unscaled value of `text` for a `decimal(precision, scale)` column.
/// Errors are dead-letter messages; they are formatted only when a value is
/// refused (formatting the column's name for every value cost ~2% of the sink's
/// CPU).
fn decimal(text: &str, precision: u8, scale: u32) -> Result<i128, String> {
    let column = || format!("decimal({precision},{scale})");
    let unscaled = match scaled(text, scale) {
        Ok(v) => v,
        Err(NumberError::Decimals) => {
            return Err(format!(
                "{text} has more decimals than the column's scale ({} keeps {scale}); \
                 it is not rounded",
                column()
            ))
        }
        Err(NumberError::Range) => {
            return Err(format!("{text} has more digits than {} holds", column()))
        }
        Err(NumberError::Syntax) => return Err(format!("{text} is not a JSON number")),
    };
    let bound = 10i128.pow(u32::from(precision));
    if unscaled.unsigned_abs() >= bound.unsigned_abs() {
        return Err(format!("{text} has more digits than {} holds", column()));
    }
    Ok(unscaled)
}

/// A float type the rules read numbers into.
trait Float: std::str::FromStr + Copy {
    fn is_finite(self) -> bool;
    fn is_zero(self) -> bool;
}

impl Float for f32 {
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    fn is_zero(self) -> bool {
        self == 0.0
    }
}

impl Float for f64 {
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    fn is_zero(self) -> bool {
        self == 0.0
    }
}

fn float<F: Float>(text: &str, name: &str) -> Result<F, String> {
    let exact = Exact::parse(text).map_err(|_| format!("{text} is not a JSON number"))?;
    let value: F = text
        .parse()
        .map_err(|_| format!("{text} is not a JSON number"))?;
    if !value.is_finite() {
        return Err(format!("{text} is out of range for {name}"));
    }
    if value.is_zero() && !exact.is_zero() {
        return Err(format!(
            "{text} is too small for {name} (it would become 0)"
        ));
    }
    Ok(value)
}

/// µs of a number of epoch milliseconds (exact to the µs).
fn epoch_millis(text: &str) -> Result<i64, String> {
    match scaled(text, 3) {
        Ok(micros) => i64::try_from(micros)
            .map_err(|_| format!("{text} (epoch milliseconds) is out of range for a timestamp")),
        Err(NumberError::Decimals) => Err(format!(
            "{text} (epoch milliseconds) is finer than a microsecond"
        )),
        Err(NumberError::Range) => Err(format!(
            "{text} (epoch milliseconds) is out of range for a timestamp"
        )),
        Err(NumberError::Syntax) => Err(format!("{text} is not a JSON number")),
    }
}

fn date(text: &[u8]) -> Result<i32, String> {
    let refuse = |why: &str| format!("\"{}\" is not a date (YYYY-MM-DD){why}", shorten(text));
    if text.len() > 10 && text.get(..10).is_some_and(|d| civil_days(d).is_some()) {
        return Err(refuse(": a date column keeps no time of day or zone"));
    }
    civil_days(text)
        .and_then(|days| i32::try_from(days).ok())
        .ok_or_else(|| refuse(""))
}

/// µs of `YYYY-MM-DD[T| ]HH:MM:SS[.f…][zone]`: the wall clock (`instant` false) or
/// the instant, the zone applied (`instant` true).
fn timestamp(text: &[u8], instant: bool) -> Result<i64, String> {
    let refuse = |why: &str| {
        format!(
            "\"{}\" is not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff][zone]){why}",
            shorten(text)
        )
    };
    if text.len() == 10 && civil_days(text).is_some() {
        return Err(refuse(": it has no time of day"));
    }
    let (micros, offset) = wall_clock(text).ok_or_else(|| refuse(""))?;
    let micros = micros.map_err(|()| refuse(": finer than a microsecond"))?;
    Ok(match instant {
        true => micros - offset * 60_000_000,
        false => micros,
    })
}

/// The wall clock in µs (`Err` for non-zero digits past the µs) and the zone's
/// offset in minutes (0 without a zone).
#[allow(clippy::result_unit_err)]
fn wall_clock(text: &[u8]) -> Option<(Result<i64, ()>, i64)> {
    if text.len() < 19
        || !matches!(text[10], b'T' | b't' | b' ')
        || text[13] != b':'
        || text[16] != b':'
    {
        return None;
    }
    let days = civil_days(&text[..10])?;
    let hour = two_digits(&text[11..13])?;
    let minute = two_digits(&text[14..16])?;
    let second = two_digits(&text[17..19])?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &text[19..];
    let mut micros = Ok(0i64);
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let digits = &fraction[..n];
        micros = match digits.iter().skip(6).all(|&d| d == b'0') {
            true => Ok(digits
                .iter()
                .chain(std::iter::repeat(&b'0'))
                .take(6)
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))),
            false => Err(()),
        };
        rest = &fraction[n..];
    }
    let offset = zone_offset(rest)?;
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some((micros.map(|m| seconds * 1_000_000 + m), offset))
}

/// Minutes east of UTC of `""`, `Z`, `±HH:MM`, `±HHMM` or `±HH` (at most 18 hours).
fn zone_offset(zone: &[u8]) -> Option<i64> {
    let (sign, hours, minutes) = match zone {
        [] | [b'Z' | b'z'] => return Some(0),
        [sign, h @ ..] if matches!(sign, b'+' | b'-') => match h {
            [a, b] => (sign, [*a, *b], [b'0', b'0']),
            [a, b, b':', c, d] | [a, b, c, d] => (sign, [*a, *b], [*c, *d]),
            _ => return None,
        },
        _ => return None,
    };
    let hours = two_digits(&hours)?;
    let minutes = two_digits(&minutes)?;
    if minutes > 59 || hours * 60 + minutes > 18 * 60 {
        return None;
    }
    let offset = i64::from(hours * 60 + minutes);
    Some(if *sign == b'-' { -offset } else { offset })
}

fn two_digits(text: &[u8]) -> Option<u32> {
    match text {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
        }
        _ => None,
    }
}

/// Days since 1970-01-01 of `YYYY-MM-DD` (proleptic Gregorian), checking the day
/// exists.
pub(crate) fn civil_days(text: &[u8]) -> Option<i64> {
    if text.len() != 10 || text[4] != b'-' || text[7] != b'-' {
        return None;
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
        _ => return None,
    };
    if day == 0 || day > month_days {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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

    #[test]
    fn exact_numbers_scale_without_rounding() {
        let general = |text: &str, scale| Exact::parse(text).and_then(|n| n.scaled(scale));
        for (text, scale) in [
            ("2.99", 2),
            ("-0.5", 3),
            ("450", 2),
            ("123456789012345678", 0),
        ] {
            assert_eq!(
                plain(text, scale).map(Ok),
                Some(general(text, scale)),
                "{text}"
            );
        }
        assert_eq!(plain("2.999", 2), None);
        assert_eq!(plain("1e3", 0), None);
        assert_eq!(scaled("2.99", 2), Ok(299));
        assert_eq!(scaled("2.990", 2), Ok(299));
        assert_eq!(scaled("2.999", 2), Err(NumberError::Decimals));
        assert_eq!(scaled("299e-2", 2), Ok(299));
        assert_eq!(scaled("1e3", 0), Ok(1000));
        assert_eq!(scaled("-1.5E1", 0), Ok(-15));
        assert_eq!(scaled("0e999999999999", 0), Ok(0));
        assert_eq!(scaled("1e999999999999", 0), Err(NumberError::Range));
        assert_eq!(scaled("1e-999999999999", 0), Err(NumberError::Decimals));
        assert_eq!(scaled("0.000", 0), Ok(0));
        assert_eq!(scaled("-0", 0), Ok(0));
        assert!(Exact::parse("01").is_err() && Exact::parse("1.").is_err());
        assert!(Exact::parse("1e").is_err() && Exact::parse("+1").is_err());
    }
}
