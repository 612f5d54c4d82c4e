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
    "regexp_like",
    "regexp_match",
    "approx_percentile_cont",
    "array_element",
    "starts_with",
];

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
    let mut out = String::with_capacity(sql.len() + 64);
    let mut i = 0;
    while i < tokens.len() {
        // `ns . "input@since:output"`
        if let (Token::Word(ns), Some(Token::Period), Some(Token::Word(name))) =
            (&tokens[i], tokens.get(i + 1), tokens.get(i + 2))
        {
            if let Some((input, output)) = parse_since(&name.value) {
                let input = format!("{}.{input}", ns.value);
                let aliased = next_is_alias(&tokens[i + 3..]);
                out.push_str(&since_subquery(&input, output, since)?);
                if !aliased {
                    let table = input.rsplit('.').next().unwrap_or(&input);
                    let _ = write!(out, " AS {}", identifier(table));
                }
                i += 3;
                continue;
            }
        }
        write_token(&mut out, &tokens, i)?;
        i += 1;
    }
    Ok(out)
}

/// Whether the tokens after a table name start its alias.
fn next_is_alias(rest: &[Token]) -> bool {
    let next = rest.iter().find(|t| !matches!(t, Token::Whitespace(_)));
    match next {
        Some(Token::Word(w)) => {
            w.keyword == Keyword::AS || w.keyword == Keyword::NoKeyword || w.quote_style.is_some()
        }
        _ => false,
    }
}

fn write_token(out: &mut String, tokens: &[Token], i: usize) -> Result<(), Unreadable> {
    match &tokens[i] {
        Token::Word(word) => write_word(out, word, tokens.get(i + 1))?,
        Token::SingleQuotedString(s) => out.push_str(&literal(s)),
        // Our comments describe our SQL (`@since:` tables): not carried over.
        Token::Whitespace(Whitespace::SingleLineComment { .. }) => out.push('\n'),
        Token::Whitespace(Whitespace::MultiLineComment(_)) => out.push(' '),
        Token::DoubleColon => {
            return Err(Unreadable(
                "PostgreSQL's `::` cast has no Spark 3.5 form; write CAST(x AS type)".into(),
            ))
        }
        Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::DollarQuotedString(_) => {
            return Err(Unreadable(format!(
                "the string literal {} has no Spark form",
                tokens[i]
            )))
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
    Ok(())
}

fn write_word(out: &mut String, word: &Word, next: Option<&Token>) -> Result<(), Unreadable> {
    if word.quote_style.is_some() {
        out.push_str(&identifier(&word.value));
        return Ok(());
    }
    let lower = word.value.to_ascii_lowercase();
    if matches!(next, Some(Token::LParen)) && NOT_IN_SPARK.contains(&lower.as_str()) {
        return Err(Unreadable(format!(
            "the function {lower}() is DataFusion's and has no Spark 3.5 equivalent"
        )));
    }
    out.push_str(&word.value);
    Ok(())
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
    }
}
