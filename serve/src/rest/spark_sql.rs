//! A pipeline view's SQL in Spark's dialect, for the `spark` representation
//! of the Iceberg views the REST catalog publishes (issue 14 part 3).
//!
//! Our views are PostgreSQL-dialect SQL that DataFusion plans. Spark 3.5
//! reads the same plain SELECT / aggregate / join / union once the lexical
//! differences are rewritten, token by token (the text is re-tokenized, never
//! pattern-matched as a string):
//! - `"quoted"` identifiers become `` `quoted` `` (in Spark a double-quoted
//!   token is a string literal);
//! - string literals are written with Spark's backslash escapes;
//! - comments are left out (they describe our SQL);
//! - an `@since:` table (`raw."retail_events@since:historical.sales_hourly"`,
//!   see `icefjord_engine::fresh`) becomes a subquery over the input with the
//!   boundary the output records *now*, as a filter on the Kafka position
//!   columns, so the view means what it means in `icefjord sql` at the time
//!   it is loaded.
//!
//! What has no Spark 3.5 form (PostgreSQL's `::` cast, DataFusion-only
//! functions) makes the view [`Unreadable`] for Spark with the reason.

use std::fmt::Write as _;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace, Word};
use icefjord_catalog::protocol::columns::{OFFSET, PARTITION, TOPIC};
use icefjord_catalog::protocol::BoundaryOffsets;
use icefjord_engine::fresh::parse_since;

/// Functions DataFusion has and Spark 3.5 does not (or has with another
/// meaning), lower case.
const NOT_IN_SPARK: &[&str] = &[
    "arrow_cast",
    "arrow_typeof",
    "date_bin",
    "to_timestamp_seconds",
    "to_timestamp_millis",
    "to_timestamp_micros",
    "to_timestamp_nanos",
    "make_array",
    "string_agg",
    "regexp_match",
    "approx_percentile_cont",
    "array_element",
    "starts_with",
    "ends_with",
    "to_char",
];

/// How a function call translates: `Ok(Some(name))` renamed, `Ok(None)` as is.
fn function(name: &str, args: usize) -> Result<Option<&'static str>, Unreadable> {
    let reason = match (name, args) {
        (name, _) if NOT_IN_SPARK.contains(&name) => {
            format!("the function {name}() is DataFusion's and has no Spark 3.5 equivalent")
        }
        ("strpos", _) => return Ok(Some("instr")),
        ("log", 1) => "log(x) is base 10 in DataFusion and natural in Spark: write log10(x) or ln(x)".into(),
        ("trunc", _) => "trunc() truncates a number in DataFusion and a date in Spark".into(),
        ("to_timestamp" | "to_date", 2..) => format!(
            "{name}() formats are chrono's (%Y-%m-%d) in DataFusion and Java's (yyyy-MM-dd) in Spark"
        ),
        _ => return Ok(None),
    };
    Err(Unreadable(reason))
}

/// A PostgreSQL type name in a CAST as Spark spells it; `None` when the same.
fn spark_type(name: &str) -> Option<&'static str> {
    Some(match name {
        "VARCHAR" | "TEXT" | "BPCHAR" | "CHAR" | "CHARACTER" => "STRING",
        "INT2" => "SMALLINT",
        "INT4" | "INTEGER" => "INT",
        "INT8" => "BIGINT",
        "FLOAT4" | "REAL" => "FLOAT",
        "FLOAT8" => "DOUBLE",
        "BOOL" => "BOOLEAN",
        "BYTEA" => "BINARY",
        "TIMESTAMPTZ" => "TIMESTAMP",
        _ => return None,
    })
}

/// Why a view has no Spark representation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable(pub String);

/// How an `@since:` table reads: the boundary its output records, `None`
/// when the output has none yet (every input row is fresh).
pub trait SinceResolver {
    /// `input` is `namespace.table`, `output` the output's `namespace.table`.
    fn boundary(&self, input: &str, output: &str) -> Result<Option<BoundaryOffsets>, Unreadable>;
}

/// The `@since:` tables `sql` reads, as `(input, output)` table names
/// (`("raw.retail_events", "historical.sales_hourly")`).
pub fn since_tables(sql: &str) -> Vec<(String, String)> {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return Vec::new();
    };
    tokens
        .windows(3)
        .filter_map(|w| match w {
            [Token::Word(ns), Token::Period, Token::Word(name)] => parse_since(&name.value)
                .map(|(input, output)| (format!("{}.{input}", ns.value), output.to_string())),
            _ => None,
        })
        .collect()
}

/// `sql` (one SELECT in our dialect) in Spark SQL.
pub fn to_spark(sql: &str, since: &dyn SinceResolver) -> Result<String, Unreadable> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| Unreadable(format!("the view's SQL does not tokenize: {e}")))?;
    let mut translation = Translation {
        tokens: &tokens,
        out: String::with_capacity(sql.len() + 64),
        casts: Vec::new(),
        previous: None,
    };
    let mut i = 0;
    while i < tokens.len() {
        i = translation.step(i, since)?;
    }
    Ok(translation.out)
}

/// The state of one translation, token by token.
struct Translation<'a> {
    tokens: &'a [Token],
    out: String,
    /// Open parentheses, innermost last: whether each is a CAST's.
    casts: Vec<bool>,
    /// The last token that is not whitespace.
    previous: Option<&'a Token>,
}

impl<'a> Translation<'a> {
    /// Translate the token at `i` (and what belongs to it); the next index.
    fn step(&mut self, i: usize, since: &dyn SinceResolver) -> Result<usize, Unreadable> {
        let tokens = self.tokens;
        let token = &tokens[i];
        let previous = match token {
            Token::Whitespace(_) => self.previous,
            _ => self.previous.replace(token),
        };
        if let Token::Word(word) = token {
            return Ok(self.word(i, word, previous, since)?.unwrap_or(i + 1));
        }
        match token {
            Token::LParen => {
                let cast = matches!(previous, Some(Token::Word(w))
                    if w.quote_style.is_none() && matches!(w.keyword, Keyword::CAST | Keyword::TRY_CAST));
                self.casts.push(cast);
                self.out.push('(');
            }
            Token::RParen => {
                self.casts.pop();
                self.out.push(')');
            }
            Token::SingleQuotedString(s) => self.out.push_str(&literal(s)),
            // Our comments describe our SQL (`@since:` tables): not carried over.
            Token::Whitespace(Whitespace::SingleLineComment { .. }) => self.out.push('\n'),
            Token::Whitespace(Whitespace::MultiLineComment(_)) => self.out.push(' '),
            Token::DoubleColon => {
                return Err(Unreadable(
                    "PostgreSQL's `::` cast has no Spark 3.5 form; write CAST(x AS type)".into(),
                ))
            }
            Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::DollarQuotedString(_) => {
                return Err(Unreadable(format!(
                    "the string literal {token} has no Spark form"
                )))
            }
            other => {
                let _ = write!(self.out, "{other}");
            }
        }
        Ok(i + 1)
    }

    /// A word: an `@since:` table, a quoted identifier, a type in a CAST, a
    /// function name or anything else. `Some(next index)` when it took more
    /// tokens than itself.
    fn word(
        &mut self,
        i: usize,
        word: &Word,
        previous: Option<&Token>,
        since: &dyn SinceResolver,
    ) -> Result<Option<usize>, Unreadable> {
        let tokens = self.tokens;
        // `ns . "input@since:output"`
        if let (Some(Token::Period), Some(Token::Word(name))) =
            (tokens.get(i + 1), tokens.get(i + 2))
        {
            if let Some((input, output)) = parse_since(&name.value) {
                let input = format!("{}.{input}", word.value);
                let aliased = next_is_alias(tokens, i + 3);
                self.out.push_str(&since_subquery(&input, output, since)?);
                if !aliased {
                    let table = input.rsplit('.').next().unwrap_or(&input);
                    let _ = write!(self.out, " AS {}", identifier(table));
                }
                self.previous = Some(&tokens[i + 2]);
                return Ok(Some(i + 3));
            }
        }
        if word.quote_style.is_some() {
            self.out.push_str(&identifier(&word.value));
            return Ok(None);
        }
        let after_as = matches!(previous, Some(Token::Word(w)) if w.keyword == Keyword::AS && w.quote_style.is_none());
        if after_as && self.casts.last() == Some(&true) {
            return Ok(Some(self.cast_type(i, word)));
        }
        let next = significant(tokens, i + 1);
        if let Some(open) = next.filter(|&j| tokens[j] == Token::LParen) {
            let lower = word.value.to_ascii_lowercase();
            if let Some(renamed) = function(&lower, arguments(tokens, open))? {
                self.out.push_str(renamed);
                return Ok(None);
            }
        }
        self.out.push_str(&word.value);
        Ok(None)
    }

    /// The type of a CAST at `i`, as Spark spells it: `VARCHAR(20)` and
    /// `CHARACTER VARYING` are `STRING`, `DOUBLE PRECISION` is `DOUBLE`,
    /// `TIMESTAMP [WITHOUT TIME ZONE]` is `TIMESTAMP_NTZ`, `TIMESTAMP WITH
    /// TIME ZONE` is `TIMESTAMP`. The index after the type.
    fn cast_type(&mut self, i: usize, word: &Word) -> usize {
        let tokens = self.tokens;
        let upper = word.value.to_ascii_uppercase();
        // The words that follow, upper case, with their indices.
        let following = |from: usize, n: usize| -> Vec<(usize, String)> {
            let mut found = Vec::new();
            let mut at = from;
            while found.len() < n {
                match significant(tokens, at) {
                    Some(j) => match &tokens[j] {
                        Token::Word(w) => {
                            found.push((j, w.value.to_ascii_uppercase()));
                            at = j + 1;
                        }
                        _ => break,
                    },
                    None => break,
                }
            }
            found
        };
        let mut next = i + 1;
        let spelled = match upper.as_str() {
            "DOUBLE" => {
                if let Some((j, _)) = following(i + 1, 1).pop().filter(|(_, w)| w == "PRECISION") {
                    next = j + 1;
                }
                "DOUBLE".to_string()
            }
            "TIMESTAMP" => {
                let words = following(i + 1, 3);
                let zone: Vec<&str> = words.iter().map(|(_, w)| w.as_str()).collect();
                match zone.as_slice() {
                    ["WITH", "TIME", "ZONE"] => {
                        next = words[2].0 + 1;
                        "TIMESTAMP".to_string()
                    }
                    ["WITHOUT", "TIME", "ZONE"] => {
                        next = words[2].0 + 1;
                        "TIMESTAMP_NTZ".to_string()
                    }
                    _ => "TIMESTAMP_NTZ".to_string(),
                }
            }
            other => match spark_type(other) {
                Some("STRING") => {
                    if let Some((j, _)) = following(i + 1, 1).pop().filter(|(_, w)| w == "VARYING")
                    {
                        next = j + 1;
                    }
                    // A length, which Spark's STRING has not.
                    if let Some(open) =
                        significant(tokens, next).filter(|&j| tokens[j] == Token::LParen)
                    {
                        if let Some(close) =
                            (open + 1..tokens.len()).find(|&j| tokens[j] == Token::RParen)
                        {
                            next = close + 1;
                        }
                    }
                    "STRING".to_string()
                }
                Some(spark) => spark.to_string(),
                None => word.value.clone(),
            },
        };
        self.out.push_str(&spelled);
        if next > i + 1 {
            self.previous = tokens[..next]
                .iter()
                .rev()
                .find(|t| !matches!(t, Token::Whitespace(_)));
        }
        next
    }
}

/// The index of the first token at or after `from` that is not whitespace.
fn significant(tokens: &[Token], from: usize) -> Option<usize> {
    (from..tokens.len()).find(|&j| !matches!(tokens[j], Token::Whitespace(_)))
}

/// How many arguments the call whose `(` is at `open` passes.
fn arguments(tokens: &[Token], open: usize) -> usize {
    let (mut depth, mut commas, mut any) = (0usize, 0usize, false);
    for token in &tokens[open..] {
        match token {
            Token::LParen => {
                any |= depth > 0;
                depth += 1;
            }
            Token::RParen => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            Token::Comma if depth == 1 => commas += 1,
            Token::Whitespace(_) => {}
            _ => any = true,
        }
    }
    if any {
        commas + 1
    } else {
        0
    }
}

/// Whether the tokens after a table name start its alias.
fn next_is_alias(tokens: &[Token], from: usize) -> bool {
    match significant(tokens, from).map(|j| &tokens[j]) {
        Some(Token::Word(w)) => {
            w.keyword == Keyword::AS || w.keyword == Keyword::NoKeyword || w.quote_style.is_some()
        }
        _ => false,
    }
}

/// A Spark identifier: back-quoted, back quotes doubled.
fn identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A Spark string literal: single-quoted with backslash escapes (Spark's
/// default `spark.sql.parser.escapedStringLiterals=false`).
pub fn literal(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('\'');
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\'' => s.push_str("\\'"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

/// `(SELECT * FROM ns.input WHERE <rows at or past the boundary>)`: the same
/// rows `icefjord_engine::fresh::fresh_filter` keeps.
fn since_subquery(
    input: &str,
    output: &str,
    since: &dyn SinceResolver,
) -> Result<String, Unreadable> {
    let table = input
        .split('.')
        .map(identifier)
        .collect::<Vec<_>>()
        .join(".");
    let filter = since
        .boundary(input, output)?
        .map(|boundary| boundary_filter(&boundary))
        .unwrap_or_else(|| "TRUE".to_string());
    Ok(format!("(SELECT * FROM {table} WHERE {filter})"))
}

/// `(pos of p1 past n1) OR … OR NOT (known partitions)`.
fn boundary_filter(boundary: &BoundaryOffsets) -> String {
    if boundary.is_empty() {
        return "TRUE".to_string();
    }
    let mut past = Vec::new();
    let mut known = Vec::new();
    for ((topic, partition), next) in boundary {
        let here = format!(
            "({} = {} AND {} = {partition})",
            identifier(TOPIC),
            literal(topic),
            identifier(PARTITION)
        );
        past.push(format!("({here} AND {} >= {next})", identifier(OFFSET)));
        known.push(here);
    }
    format!("({} OR NOT ({}))", past.join(" OR "), known.join(" OR "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct Fixed(Option<BoundaryOffsets>);

    impl SinceResolver for Fixed {
        fn boundary(
            &self,
            input: &str,
            output: &str,
        ) -> Result<Option<BoundaryOffsets>, Unreadable> {
            assert_eq!(input, "raw.retail_events");
            assert_eq!(output, "historical.sales_hourly");
            Ok(self.0.clone())
        }
    }

    #[test]
    fn quoted_identifiers_and_literals_take_spark_quoting() {
        let sql = "-- about \"x\"\nSELECT \"Order Id\", 'it''s' AS s, 'a\\b' /* c */ FROM raw.t WHERE x = 'q'";
        let spark = to_spark(sql, &Fixed(None)).unwrap();
        assert_eq!(
            spark,
            "\nSELECT `Order Id`, 'it\\'s' AS s, 'a\\\\b'   FROM raw.t WHERE x = 'q'"
        );
    }

    #[test]
    fn since_tables_read_past_the_boundary_recorded_now() {
        let boundary = BoundaryOffsets::from([
            (("retail".to_string(), 0), 10),
            (("retail".to_string(), 1), 7),
        ]);
        let sql =
            r#"SELECT count(*) FROM raw."retail_events@since:historical.sales_hourly" GROUP BY 1"#;
        let spark = to_spark(sql, &Fixed(Some(boundary))).unwrap();
        assert_eq!(
            spark,
            "SELECT count(*) FROM (SELECT * FROM `raw`.`retail_events` WHERE \
             (((`_kafka_topic` = 'retail' AND `_kafka_partition` = 0) AND `_kafka_offset` >= 10) OR \
             ((`_kafka_topic` = 'retail' AND `_kafka_partition` = 1) AND `_kafka_offset` >= 7) OR \
             NOT ((`_kafka_topic` = 'retail' AND `_kafka_partition` = 0) OR \
             (`_kafka_topic` = 'retail' AND `_kafka_partition` = 1)))) AS `retail_events` GROUP BY 1"
        );
        // An alias of the author's is kept; no boundary yet reads every row.
        let aliased = r#"SELECT e.x FROM raw."retail_events@since:historical.sales_hourly" e"#;
        assert_eq!(
            to_spark(aliased, &Fixed(None)).unwrap(),
            "SELECT e.x FROM (SELECT * FROM `raw`.`retail_events` WHERE TRUE) e"
        );
    }

    #[test]
    fn what_spark_cannot_read_is_refused_with_the_reason() {
        let cast = to_spark("SELECT x::int FROM raw.t", &Fixed(None)).unwrap_err();
        assert!(cast.0.contains("`::` cast"), "{cast:?}");
        let function =
            to_spark("SELECT arrow_cast(x, 'Int8') FROM raw.t", &Fixed(None)).unwrap_err();
        assert!(function.0.contains("arrow_cast()"), "{function:?}");
        // A column that merely shares a function's name is fine.
        assert!(to_spark("SELECT date_bin FROM raw.t", &Fixed(None)).is_ok());
        let log = to_spark("SELECT log(x) FROM raw.t", &Fixed(None)).unwrap_err();
        assert!(log.0.contains("base 10"), "{log:?}");
        assert!(to_spark("SELECT log(2, x) FROM raw.t", &Fixed(None)).is_ok());
        let format = to_spark("SELECT to_date(d, '%Y') FROM raw.t", &Fixed(None)).unwrap_err();
        assert!(format.0.contains("chrono"), "{format:?}");
        assert!(to_spark("SELECT to_date(d) FROM raw.t", &Fixed(None)).is_ok());
    }

    #[test]
    fn cast_types_and_functions_take_their_spark_names() {
        let sql = "SELECT CAST(a AS VARCHAR), CAST(b AS varchar(20)), CAST(c AS CHARACTER VARYING), \
                   CAST(d AS DOUBLE PRECISION), CAST(e AS TIMESTAMP WITH TIME ZONE), CAST(f AS TIMESTAMP), \
                   CAST(g AS DECIMAL(18, 2)), CAST(h AS int8), strpos(s, 'x'), a AS text, \
                   CAST(coalesce(a, b) AS TEXT) AS t FROM raw.t";
        assert_eq!(
            to_spark(sql, &Fixed(None)).unwrap(),
            "SELECT CAST(a AS STRING), CAST(b AS STRING), CAST(c AS STRING), \
                   CAST(d AS DOUBLE), CAST(e AS TIMESTAMP), CAST(f AS TIMESTAMP_NTZ), \
                   CAST(g AS DECIMAL(18, 2)), CAST(h AS BIGINT), instr(s, 'x'), a AS text, \
                   CAST(coalesce(a, b) AS STRING) AS t FROM raw.t"
        );
    }
}
