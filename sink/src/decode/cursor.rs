//! A JSON reader for one message at a time: RFC 8259's grammar, checked as it
//! goes, with no tape and no per-value string copies. Any deviation from the
//! grammar is a [`GiveUp`]; the caller then reads the message another way.

use std::borrow::Cow;

/// The input is outside what this reader (or its caller) accepts.
#[derive(Debug)]
pub(crate) struct GiveUp;

pub(crate) type Step<T> = Result<T, GiveUp>;

/// A position in one message.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// How deep [`Cursor::skip_value`] follows nested values before giving up.
const MAX_DEPTH: usize = 64;

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next non-whitespace byte, not consumed.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.pos).copied()
    }

    /// Consume `byte` if it is next.
    pub(crate) fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    pub(crate) fn expect(&mut self, byte: u8) -> Step<()> {
        self.eat(byte).then_some(()).ok_or(GiveUp)
    }

    /// Only whitespace is left.
    pub(crate) fn end(&mut self) -> Step<()> {
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
    pub(crate) fn null(&mut self) -> Step<bool> {
        self.peek().ok_or(GiveUp)?;
        Ok(self.literal(b"null"))
    }

    pub(crate) fn boolean(&mut self) -> Step<bool> {
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
    pub(crate) fn raw_string(&mut self) -> Step<Cow<'a, [u8]>> {
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
    pub(crate) fn key(&mut self) -> Step<Cow<'a, [u8]>> {
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

    /// A number's text, checked against RFC 8259's grammar.
    pub(crate) fn number(&mut self) -> Step<&'a str> {
        self.peek().ok_or(GiveUp)?;
        let start = self.pos;
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        let int_digits = self.digits();
        // No empty integer part, no leading zeros.
        if int_digits.is_empty() || (int_digits.len() > 1 && int_digits[0] == b'0') {
            return Err(GiveUp);
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits().is_empty() {
                return Err(GiveUp);
            }
        }
        if matches!(self.bytes.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if self.digits().is_empty() {
                return Err(GiveUp);
            }
        }
        std::str::from_utf8(&self.bytes[start..self.pos]).map_err(|_| GiveUp)
    }

    /// The scalar value at the cursor; an array or object is stepped over (checked
    /// to be well formed) and only its kind returned.
    pub(crate) fn scalar(&mut self) -> Step<Scalar<'a>> {
        Ok(match self.peek().ok_or(GiveUp)? {
            b'"' => Scalar::String(self.raw_string()?),
            b't' | b'f' => Scalar::Bool(self.boolean()?),
            b'n' if self.literal(b"null") => Scalar::Null,
            b'[' => {
                self.skip_value(0)?;
                Scalar::Array
            }
            b'{' => {
                self.skip_value(0)?;
                Scalar::Object
            }
            _ => Scalar::Number(self.number()?),
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
    pub(crate) fn skip_value(&mut self, depth: usize) -> Step<()> {
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

/// A value as [`Cursor::scalar`] reads it.
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    Number(&'a str),
    String(Cow<'a, [u8]>),
    Array,
    Object,
}

impl Scalar<'_> {
    /// The value as the input rules take it.
    pub(crate) fn json(&self) -> super::rules::Json<'_> {
        use super::rules::Json;
        match self {
            Self::Null => Json::Null,
            Self::Bool(b) => Json::Bool(*b),
            Self::Number(text) => Json::Number(text),
            Self::String(bytes) => Json::String(bytes),
            Self::Array => Json::Array,
            Self::Object => Json::Object,
        }
    }
}
