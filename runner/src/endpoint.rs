//! Named insight endpoints of a pipeline: `[[endpoints]]` in `pipeline.toml`,
//! a query with typed parameters that `icefjord serve --pipeline DIR` offers as
//! `GET <path>?<param>=<value>…` (the FastAPI insight services users run today,
//! seed 002, without the service).
//!
//! ```toml
//! [[endpoints]]
//! path = "/api/top-products"              # GET path: /segment/segment…
//! description = "Best products by net revenue"
//! returns = "rows"                        # rows (default): every row | row: exactly one, as an object
//! sql = """
//! SELECT product_id, net_revenue FROM unified.product_performance
//! WHERE revenue_rank <= $top AND ($category IS NULL OR category = $category)
//! """
//!
//! [[endpoints.params]]
//! name = "top"
//! type = "int"                            # int | float | string | date | timestamp | bool
//! default = 10                            # or required = true; neither: NULL when absent
//! description = "How many ranks"
//!
//! [[endpoints.params]]
//! name = "category"
//! type = "string"
//! ```
//!
//! # Invariants
//! - Parameters are **named placeholders** `$name` in the SQL (DataFusion binds
//!   them by name); values are bound, never formatted into the SQL text.
//!   Positional `$1` is refused here, so every placeholder has a declared type.
//! - Every placeholder is a declared parameter and every parameter is used.
//! - A default has the parameter's type; a parameter is not both required and
//!   defaulted.
//! - Errors name the file, the line and the field ([`SpecError`]).

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use serde::Deserialize;
use toml::Spanned;

use crate::spec::{Origin, SpecError};

/// One named endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// The GET path, e.g. `/api/sales-by-category`.
    pub path: String,
    pub description: Option<String>,
    /// One query, with `$name` placeholders for [`Endpoint::params`].
    pub sql: String,
    pub params: Vec<Param>,
    pub returns: Returns,
    /// Where the endpoint is declared (its `path`).
    pub origin: Origin,
}

impl Endpoint {
    pub fn error(&self, field: &str, message: impl Into<String>) -> SpecError {
        self.origin.error(
            None,
            Some(field),
            format!("endpoint {}: {}", self.path, message.into()),
        )
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// What an endpoint answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Returns {
    /// Every row of the query (the same shapes as `POST /v1/query`).
    #[default]
    Rows,
    /// The query's one row as a JSON object (`{"active_users": 42}`): no row
    /// is "not found", more than one is an error of the endpoint.
    Row,
}

/// A typed query parameter of an endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub ty: ParamType,
    /// A request without it is refused.
    pub required: bool,
    /// Bound when the request does not give the parameter (else SQL NULL).
    pub default: Option<ParamValue>,
    pub description: Option<String>,
}

/// The types a parameter may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    /// A 64-bit integer.
    Int,
    /// A 64-bit float.
    Float,
    String,
    /// `YYYY-MM-DD`.
    Date,
    /// `YYYY-MM-DD[T ]HH:MM:SS[.ffffff]`, optionally with an offset
    /// (`Z`, `+02:00`): an offset is converted to UTC, no offset is taken as UTC.
    Timestamp,
    /// `true` / `false` (also `1` / `0`).
    Bool,
}

impl ParamType {
    const NAMES: &'static str = "int, float, string, date, timestamp, bool";

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "int" => Self::Int,
            "float" => Self::Float,
            "string" => Self::String,
            "date" => Self::Date,
            "timestamp" => Self::Timestamp,
            "bool" => Self::Bool,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Int => "int",
            Self::Float => "float",
            Self::String => "string",
            Self::Date => "date",
            Self::Timestamp => "timestamp",
            Self::Bool => "bool",
        }
    }

    /// A value of this type from its text (a query string's value).
    pub fn value(self, text: &str) -> Result<ParamValue, String> {
        let bad = || format!("{text:?} is not a {}", self.described());
        Ok(match self {
            Self::Int => ParamValue::Int(text.trim().parse().map_err(|_| bad())?),
            Self::Float => {
                let value: f64 = text.trim().parse().map_err(|_| bad())?;
                if !value.is_finite() {
                    return Err(bad());
                }
                ParamValue::Float(value)
            }
            Self::String => ParamValue::String(text.to_string()),
            Self::Date => {
                let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| bad())?;
                ParamValue::Date(days_since_epoch(date))
            }
            Self::Timestamp => ParamValue::Timestamp(parse_timestamp(text).ok_or_else(bad)?),
            Self::Bool => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => ParamValue::Bool(true),
                "false" | "0" => ParamValue::Bool(false),
                _ => return Err(bad()),
            },
        })
    }

    /// A value of this type from TOML (a `default`): the TOML type that matches,
    /// or a string in the query-string form.
    fn toml_value(self, value: &toml::Value) -> Result<ParamValue, String> {
        match (self, value) {
            (_, toml::Value::String(text)) => self.value(text),
            (Self::Int, toml::Value::Integer(i)) => Ok(ParamValue::Int(*i)),
            (Self::Float, toml::Value::Float(f)) if f.is_finite() => Ok(ParamValue::Float(*f)),
            (Self::Float, toml::Value::Integer(i)) => Ok(ParamValue::Float(*i as f64)),
            (Self::Bool, toml::Value::Boolean(b)) => Ok(ParamValue::Bool(*b)),
            (Self::Date | Self::Timestamp, toml::Value::Datetime(dt)) => {
                self.value(&dt.to_string())
            }
            (_, other) => Err(format!(
                "{other} is not a {} (write it as a {} or a string)",
                self.described(),
                self.as_str()
            )),
        }
    }

    fn described(self) -> &'static str {
        match self {
            Self::Int => "64-bit integer",
            Self::Float => "finite number",
            Self::String => "string",
            Self::Date => "date (YYYY-MM-DD)",
            Self::Timestamp => "timestamp (YYYY-MM-DDTHH:MM:SS, optional offset)",
            Self::Bool => "boolean (true or false)",
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parameter's value, typed.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    Int(i64),
    Float(f64),
    String(String),
    /// Days since 1970-01-01.
    Date(i32),
    /// µs since the epoch, UTC.
    Timestamp(i64),
    Bool(bool),
}

impl ParamValue {
    /// The value as JSON (dates and timestamps as ISO 8601 text), e.g. for the
    /// `default` of an OpenAPI parameter.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Int(i) => (*i).into(),
            Self::Float(f) => (*f).into(),
            Self::String(s) => s.clone().into(),
            Self::Date(days) => NaiveDate::default()
                .checked_add_signed(chrono::TimeDelta::days(i64::from(*days)))
                .map_or(serde_json::Value::Null, |d| d.to_string().into()),
            Self::Timestamp(micros) => {
                DateTime::from_timestamp_micros(*micros).map_or(serde_json::Value::Null, |t| {
                    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                        .into()
                })
            }
            Self::Bool(b) => (*b).into(),
        }
    }
}

fn days_since_epoch(date: NaiveDate) -> i32 {
    (date - NaiveDate::default()).num_days() as i32
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.f]` with an optional offset, or a date (midnight),
/// as µs since the epoch (UTC).
fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.timestamp_micros());
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

/// `[[endpoints]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointFile {
    path: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    sql: Spanned<String>,
    #[serde(default)]
    returns: Option<Spanned<String>>,
    #[serde(default)]
    params: Vec<ParamFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamFile {
    name: Spanned<String>,
    #[serde(rename = "type")]
    ty: Spanned<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<Spanned<toml::Value>>,
    #[serde(default)]
    description: Option<String>,
}

/// Check the `[[endpoints]]` of a pipeline file; `at` turns a byte offset of
/// the file into its [`Origin`].
pub(crate) fn build_endpoints(
    files: Vec<EndpointFile>,
    at: &dyn Fn(usize) -> Origin,
) -> Result<Vec<Endpoint>, SpecError> {
    let mut endpoints: Vec<Endpoint> = Vec::with_capacity(files.len());
    for file in files {
        let endpoint = build_endpoint(file, at)?;
        if let Some(first) = endpoints.iter().find(|e| e.path == endpoint.path) {
            return Err(endpoint.error(
                "path",
                format!("also declared at line {}", first.origin.line),
            ));
        }
        endpoints.push(endpoint);
    }
    Ok(endpoints)
}

fn build_endpoint(file: EndpointFile, at: &dyn Fn(usize) -> Origin) -> Result<Endpoint, SpecError> {
    let origin = at(file.path.span().start);
    let path = file.path.get_ref().clone();
    let error = |offset: usize, field: &str, message: String| {
        at(offset).error(None, Some(field), format!("endpoint {path}: {message}"))
    };
    if !is_endpoint_path(&path) {
        return Err(error(
            file.path.span().start,
            "path",
            "not a path: /segment[/segment…] of letters, digits, '-', '_', '.' and '~'".into(),
        ));
    }
    let returns = match file.returns.as_ref().map(|r| (r.get_ref().as_str(), r)) {
        None | Some(("rows", _)) => Returns::Rows,
        Some(("row", _)) => Returns::Row,
        Some((other, spanned)) => {
            return Err(error(
                spanned.span().start,
                "returns",
                format!("{other:?}: returns is \"rows\" (the default) or \"row\""),
            ))
        }
    };
    let sql_at = file.sql.span().start;
    let sql = file.sql.into_inner();
    crate::spec::query_reads(&origin.file, &sql, &path)
        .map_err(|e| error(sql_at, "sql", e.message))?;
    let mut params: Vec<Param> = Vec::with_capacity(file.params.len());
    for param in file.params {
        let name_at = param.name.span().start;
        let name = param.name.into_inner();
        if !is_identifier(&name) {
            return Err(error(
                name_at,
                "params.name",
                format!(
                    "{name:?} is not a parameter name (a letter or _, then letters, digits, _)"
                ),
            ));
        }
        if params.iter().any(|p| p.name == name) {
            return Err(error(
                name_at,
                "params.name",
                format!("parameter {name} is declared twice"),
            ));
        }
        let ty = ParamType::parse(param.ty.get_ref()).ok_or_else(|| {
            error(
                param.ty.span().start,
                "params.type",
                format!(
                    "parameter {name}: {:?} is not a type (expected one of {})",
                    param.ty.get_ref(),
                    ParamType::NAMES
                ),
            )
        })?;
        let default = match &param.default {
            None => None,
            Some(value) if param.required => {
                return Err(error(
                    value.span().start,
                    "params.default",
                    format!("parameter {name} is required and has a default: choose one"),
                ))
            }
            Some(value) => Some(ty.toml_value(value.get_ref()).map_err(|message| {
                error(
                    value.span().start,
                    "params.default",
                    format!("parameter {name}: {message}"),
                )
            })?),
        };
        params.push(Param {
            name,
            ty,
            required: param.required,
            default,
            description: param.description,
        });
    }
    let used = placeholders(&sql).map_err(|message| error(sql_at, "sql", message))?;
    if let Some(unknown) = used.iter().find(|p| !params.iter().any(|d| &d.name == *p)) {
        return Err(error(
            sql_at,
            "sql",
            format!("${unknown} is not a declared parameter (add [[endpoints.params]] name = {unknown:?})"),
        ));
    }
    if let Some(unused) = params.iter().find(|p| !used.contains(&p.name)) {
        return Err(error(
            sql_at,
            "params.name",
            format!(
                "parameter {} is not used in the SQL (as ${})",
                unused.name, unused.name
            ),
        ));
    }
    Ok(Endpoint {
        path,
        description: file.description,
        sql,
        params,
        returns,
        origin,
    })
}

/// The named placeholders of `sql` (`$name`), refusing positional ones.
fn placeholders(sql: &str) -> Result<BTreeSet<String>, String> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| format!("does not parse: {e}"))?;
    let mut names = BTreeSet::new();
    for token in tokens {
        if let Token::Placeholder(text) = token {
            let name = text.trim_start_matches('$');
            if !text.starts_with('$') || !is_identifier(name) {
                return Err(format!(
                    "placeholder {text}: use named placeholders, $name, one per declared parameter"
                ));
            }
            names.insert(name.to_string());
        }
    }
    Ok(names)
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_endpoint_path(path: &str) -> bool {
    path.strip_prefix('/').is_some_and(|rest| {
        rest.split('/').all(|segment| {
            !segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c))
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spec::Pipeline;

    const HEAD: &str = "name = \"shop\"\n\n";

    fn load(toml: &str) -> Result<Vec<Endpoint>, SpecError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pipeline.toml"), format!("{HEAD}{toml}")).unwrap();
        Pipeline::load(dir.path()).map(|p| p.endpoints)
    }

    const TOP: &str = r#"[[endpoints]]
path = "/api/top-products"
description = "Best products"
sql = "SELECT product_id FROM unified.products WHERE rank <= $top AND ($category IS NULL OR category = $category)"

[[endpoints.params]]
name = "top"
type = "int"
default = 10

[[endpoints.params]]
name = "category"
type = "string"
"#;

    #[test]
    fn an_endpoint_parses_with_typed_params() {
        let endpoints = load(TOP).unwrap();
        assert_eq!(endpoints.len(), 1);
        let e = &endpoints[0];
        assert_eq!(e.path, "/api/top-products");
        assert_eq!(e.returns, Returns::Rows);
        assert_eq!(e.origin.line, 4);
        assert_eq!(e.params[0].ty, ParamType::Int);
        assert_eq!(e.params[0].default, Some(ParamValue::Int(10)));
        assert!(!e.params[1].required);
        assert_eq!(e.params[1].default, None);
    }

    #[test]
    fn bad_specs_name_file_line_and_field() {
        // (replace, with, line, field, words of the message)
        for (from, to, line, field, words) in [
            (
                "type = \"int\"",
                "type = \"integer\"",
                10,
                "params.type",
                "\"integer\" is not a type",
            ),
            (
                "default = 10",
                "default = \"ten\"",
                11,
                "params.default",
                "\"ten\" is not a 64-bit integer",
            ),
            (
                "default = 10",
                "default = 10\nrequired = true",
                11,
                "params.default",
                "required and has a default",
            ),
            (
                "$category)",
                "$categroy)",
                6,
                "sql",
                "$categroy is not a declared parameter",
            ),
            (
                "rank <= $top",
                "rank <= 10",
                6,
                "params.name",
                "parameter top is not used",
            ),
            ("$top", "$1", 6, "sql", "use named placeholders"),
            (
                "/api/top-products",
                "api/top products",
                4,
                "path",
                "not a path",
            ),
            ("SELECT product_id", "DELETE", 6, "sql", "is not a query"),
            (
                "description = \"Best products\"",
                "returns = \"one\"",
                5,
                "returns",
                "\"one\"",
            ),
        ] {
            let e = load(&TOP.replace(from, to)).unwrap_err();
            assert!(e.file.ends_with("pipeline.toml"), "{e}");
            assert_eq!((e.line, e.field.as_deref()), (line, Some(field)), "{e}");
            assert!(e.message.contains(words), "{e}");
            assert!(
                e.to_string().contains(&format!("pipeline.toml:{line}:")),
                "{e}"
            );
        }
    }

    #[test]
    fn unknown_fields_and_paths_declared_twice() {
        let e = load(&TOP.replace("description = ", "summary = ")).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("unknown field `summary`"), "{e}");
        let twice = format!("{TOP}\n{}", TOP.replace("$top", "$top "));
        let e = load(&twice).unwrap_err();
        assert_eq!(e.line, 18, "{e}");
        assert!(e.message.contains("also declared at line 4"), "{e}");
    }

    #[test]
    fn values_parse_by_type() {
        assert_eq!(ParamType::Int.value(" 42"), Ok(ParamValue::Int(42)));
        assert!(ParamType::Int.value("4.2").is_err());
        assert!(ParamType::Float.value("NaN").is_err());
        assert_eq!(ParamType::Date.value("1970-01-02"), Ok(ParamValue::Date(1)));
        assert_eq!(ParamType::Bool.value("TRUE"), Ok(ParamValue::Bool(true)));
        assert!(ParamType::Bool.value("yes").is_err());
        for (text, micros) in [
            ("1970-01-01T00:00:01Z", 1_000_000),
            ("1970-01-01T01:00:01+01:00", 1_000_000),
            ("1970-01-01 00:00:01.5", 1_500_000),
            ("1970-01-01T00:00:01", 1_000_000),
            ("1970-01-02", 86_400_000_000),
        ] {
            assert_eq!(
                ParamType::Timestamp.value(text),
                Ok(ParamValue::Timestamp(micros)),
                "{text}"
            );
        }
        assert_eq!(
            ParamValue::Timestamp(1_500_000).to_json(),
            serde_json::json!("1970-01-01T00:00:01.500Z")
        );
        assert_eq!(
            ParamValue::Date(1).to_json(),
            serde_json::json!("1970-01-02")
        );
    }
}
