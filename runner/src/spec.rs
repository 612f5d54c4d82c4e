//! Pipeline specs: a folder `jobs/<name>/` with `pipeline.toml` and one `.sql` file
//! per SQL model, parsed once into typed [`Pipeline`] and [`Model`] values.
//!
//! ```toml
//! name = "retail"
//! description = "Hourly sales history and unified views"
//!
//! [[models]]
//! name = "historical.sales_hourly"   # the output: namespace.table
//! kind = "table"                     # view | table | append | incremental_by_key
//! sql = "sales_hourly.sql"           # default: <table>.sql
//! partition_by = ["day(hour)"]
//! sort_by = ["hour", "store_id"]
//! # target = "delta"                 # write a Delta table instead of Iceberg
//! # transform = "sessionize"         # a Rust transform of the query's rows
//! # incremental_by_key: unique_key = [...], merge = "replace" | "sum",
//! # incremental_input = "raw.retail_events" (read only rows new since the last run)
//!
//! [[models.audits]]
//! check = "not_null"                 # not_null | unique | accepted_values | row_count_min | sql
//! columns = ["hour", "store_id"]
//! ```
//!
//! A model may instead be configured in a comment header of its SQL file (leading
//! `-- key = value` lines, TOML), e.g. `-- name = "unified.sales_by_store"` and
//! `-- kind = "view"`; each model is configured in exactly one place.
//!
//! Every error names the file and line, the model and the field ([`SpecError`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::resolve::resolve_table_references;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use iceberg::TableIdent;
use serde::Deserialize;
use toml::Spanned;

/// A spec problem: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: usize,
    pub model: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        write!(f, ":")?;
        if let Some(model) = &self.model {
            write!(f, " model {model},")?;
        }
        if let Some(field) = &self.field {
            write!(f, " field {field}:")?;
        }
        write!(f, " {}", self.message)
    }
}

/// How a model's output is maintained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A view in the catalog: the query, run by whoever reads it.
    View,
    /// Full refresh: each run replaces the table's rows (one overwrite commit).
    Table,
    /// Each run appends the query's rows.
    Append,
    /// Each run merges the query's rows on `unique_key`: rows with a key the run
    /// produced are replaced, the others kept.
    IncrementalByKey,
    /// Only new intervals of `time_column` are processed.
    IncrementalByTime,
}

impl Kind {
    const NAMES: &'static str = "view, table, append, incremental_by_key, incremental_by_time";

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "view" => Self::View,
            "table" => Self::Table,
            "append" => Self::Append,
            "incremental_by_key" => Self::IncrementalByKey,
            "incremental_by_time" => Self::IncrementalByTime,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Table => "table",
            Self::Append => "append",
            Self::IncrementalByKey => "incremental_by_key",
            Self::IncrementalByTime => "incremental_by_time",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The table format a model's output is written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// An Apache Iceberg table in the lake's catalog (the default).
    #[default]
    Iceberg,
    /// A Delta Lake table at the output's location, pinned in the catalog at the
    /// version each run publishes (`icefjord_catalog::delta`).
    Delta,
}

/// How an `incremental_by_key` model combines a key's new row with its old one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Merge {
    /// The new row replaces the old.
    Replace,
    /// Every column outside the key is added up (partial aggregates of new input
    /// rows fold into the totals).
    Sum,
}

/// How an `incremental_by_time` model cuts time (see [`crate::interval`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeAxis {
    /// The output column holding each row's time.
    pub column: String,
    pub grain: crate::interval::Grain,
    /// The first interval starts here (µs since the epoch, UTC).
    pub start: i64,
}

/// A check on a model's output that must pass before anything is published.
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum Audit {
    /// No null in any of these columns.
    NotNull { columns: Vec<String> },
    /// No two rows share these columns' values.
    Unique { columns: Vec<String> },
    /// Every non-null value of `column` is one of `values`.
    AcceptedValues {
        column: String,
        values: Vec<toml::Value>,
    },
    /// At least `min` rows.
    RowCountMin { min: u64 },
    /// A query (over the model's output by its name) that must return no rows.
    Sql { name: String, sql: String },
}

impl Audit {
    /// A short name for reports, e.g. `not_null(hour, store_id)`.
    pub fn label(&self) -> String {
        match self {
            Self::NotNull { columns } => format!("not_null({})", columns.join(", ")),
            Self::Unique { columns } => format!("unique({})", columns.join(", ")),
            Self::AcceptedValues { column, .. } => format!("accepted_values({column})"),
            Self::RowCountMin { min } => format!("row_count_min({min})"),
            Self::Sql { name, .. } => format!("sql({name})"),
        }
    }

    /// The columns this audit names (checked against the model's output).
    pub fn columns(&self) -> Vec<&str> {
        match self {
            Self::NotNull { columns } | Self::Unique { columns } => {
                columns.iter().map(String::as_str).collect()
            }
            Self::AcceptedValues { column, .. } => vec![column.as_str()],
            Self::RowCountMin { .. } | Self::Sql { .. } => vec![],
        }
    }
}

/// Where a spec item was written: file and line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl Origin {
    pub fn error(
        &self,
        model: Option<&str>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> SpecError {
        SpecError {
            file: self.file.clone(),
            line: self.line,
            model: model.map(str::to_string),
            field: field.map(str::to_string),
            message: message.into(),
        }
    }
}

/// A model's query.
#[derive(Clone, Debug)]
pub struct ModelSql {
    pub file: PathBuf,
    /// The file's text (a header, if any, is SQL comments).
    pub text: String,
    /// Tables the query reads, as written (`namespace.table`).
    pub reads: Vec<TableRead>,
}

/// A table a query reads, and the line of the query that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRead {
    pub table: String,
    pub line: usize,
}

/// One model of a pipeline.
#[derive(Clone, Debug)]
pub struct Model {
    /// The output, `namespace.table`.
    pub name: String,
    pub ident: TableIdent,
    pub kind: Kind,
    /// The output's table format.
    pub target: Target,
    pub sql: ModelSql,
    pub partition_by: Vec<String>,
    pub sort_by: Vec<String>,
    pub unique_key: Vec<String>,
    /// How rows with a key already in the table combine with the new ones.
    pub merge: Merge,
    /// The raw input read incrementally (see [`crate::boundary`]).
    pub incremental_input: Option<String>,
    /// A Rust transform applied to the query's rows
    /// (`icefjord_engine::transform::REGISTRY`).
    pub transform: Option<&'static dyn icefjord_engine::transform::Transform>,
    /// The time axis of an `incremental_by_time` model.
    pub time: Option<TimeAxis>,
    pub audits: Vec<Audit>,
    pub description: Option<String>,
    /// Where the model is configured.
    pub origin: Origin,
}

impl Model {
    pub fn error(&self, field: Option<&str>, message: impl Into<String>) -> SpecError {
        self.origin.error(Some(&self.name), field, message)
    }
}

/// A parsed pipeline folder.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub name: String,
    pub description: Option<String>,
    pub schedule: Option<String>,
    pub dir: PathBuf,
    /// In the order they are configured (see [`crate::graph`] for run order).
    pub models: Vec<Model>,
    /// Named insight endpoints, in the order they are declared.
    pub endpoints: Vec<crate::endpoint::Endpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    models: Vec<ModelFile>,
    /// Served by `icefjord serve --pipeline DIR` ([`crate::endpoint`]).
    #[serde(default)]
    endpoints: Vec<crate::endpoint::EndpointFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    name: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    sql: Option<Spanned<String>>,
    #[serde(default)]
    partition_by: Vec<String>,
    #[serde(default)]
    sort_by: Vec<String>,
    #[serde(default)]
    unique_key: Vec<String>,
    #[serde(default)]
    merge: Option<String>,
    #[serde(default)]
    incremental_input: Option<String>,
    #[serde(default)]
    transform: Option<String>,
    #[serde(default)]
    time_column: Option<String>,
    #[serde(default)]
    grain: Option<String>,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    audits: Vec<Audit>,
}

/// The TOML file of a pipeline folder.
pub const PIPELINE_FILE: &str = "pipeline.toml";

impl Pipeline {
    /// Read and check the pipeline in `dir`.
    pub fn load(dir: &Path) -> Result<Self, SpecError> {
        let toml_path = dir.join(PIPELINE_FILE);
        let whole = |file: &Path, message: String| SpecError {
            file: file.to_path_buf(),
            line: 0,
            model: None,
            field: None,
            message,
        };
        let text = std::fs::read_to_string(&toml_path)
            .map_err(|e| whole(&toml_path, format!("cannot read the pipeline: {e}")))?;
        let file: PipelineFile = toml::from_str(&text).map_err(|e| SpecError {
            file: toml_path.clone(),
            line: e.span().map_or(0, |span| line_of(&text, span.start)),
            model: None,
            field: None,
            message: e.message().to_string(),
        })?;
        let at = |offset: usize| Origin {
            file: toml_path.clone(),
            line: line_of(&text, offset),
        };
        let name = file.name.get_ref().trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        {
            return Err(at(file.name.span().start).error(
                None,
                Some("name"),
                format!("{name:?} is not a pipeline name (letters, digits, _ and -)"),
            ));
        }
        let mut models = Vec::new();
        let mut configured_files = BTreeSet::new();
        for entry in file.models {
            let origin = at(entry.name.span().start);
            let model_name = entry.name.get_ref().clone();
            let sql_file = match &entry.sql {
                Some(sql) => dir.join(sql.get_ref()),
                None => dir.join(format!("{}.sql", table_part(&model_name))),
            };
            let sql_origin = entry
                .sql
                .as_ref()
                .map_or(origin.clone(), |s| at(s.span().start));
            let kind_origin = at(entry.kind.span().start);
            let origins = Origins {
                model: origin,
                kind: kind_origin,
                sql: sql_origin,
            };
            let model = build_model(entry, sql_file.clone(), origins, false)?;
            configured_files.insert(sql_file);
            models.push(model);
        }
        // SQL files configured by their own header.
        let mut sql_files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| whole(dir, format!("cannot list the pipeline folder: {e}")))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
            .collect();
        sql_files.sort();
        for path in sql_files {
            if configured_files.contains(&path) {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| whole(&path, format!("cannot read: {e}")))?;
            let Some(header) = header_of(&path, &text)? else {
                return Err(whole(
                    &path,
                    format!(
                        "not a model: name it in {PIPELINE_FILE} or give it a header \
                         (-- name = \"namespace.table\" and -- kind = \"…\")"
                    ),
                ));
            };
            let origin = Origin {
                file: path.clone(),
                line: 1,
            };
            if let Some(sql) = &header.sql {
                return Err(origin.error(
                    Some(header.name.get_ref()),
                    Some("sql"),
                    format!(
                        "{:?}: a header configures the file it is in; sql belongs in {PIPELINE_FILE}",
                        sql.get_ref()
                    ),
                ));
            }
            let origins = Origins {
                model: origin.clone(),
                kind: origin.clone(),
                sql: origin,
            };
            let model = build_model(header, path.clone(), origins, true)?;
            models.push(model);
        }
        let mut seen = BTreeMap::new();
        for model in &models {
            if let Some(first) = seen.insert(model.name.clone(), model.origin.clone()) {
                return Err(model.error(
                    Some("name"),
                    format!(
                        "the output {} is also the output of the model at {}:{}",
                        model.name,
                        first.file.display(),
                        first.line
                    ),
                ));
            }
        }
        let endpoints = crate::endpoint::build_endpoints(file.endpoints, &at)?;
        Ok(Self {
            name,
            description: file.description,
            schedule: file.schedule,
            dir: dir.to_path_buf(),
            models,
            endpoints,
        })
    }

    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }
}

/// Where the parts of a model's configuration were written.
struct Origins {
    /// The model as a whole (its `name`).
    model: Origin,
    kind: Origin,
    sql: Origin,
}

fn build_model(
    parts: ModelFile,
    sql_path: PathBuf,
    origins: Origins,
    from_header: bool,
) -> Result<Model, SpecError> {
    let Origins {
        model: origin,
        kind: kind_origin,
        sql: sql_origin,
    } = origins;
    let name = parts.name.get_ref().trim().to_string();
    let ident = icefjord_catalog::parse_table(&name).map_err(|_| {
        origin.error(
            Some(&name),
            Some("name"),
            format!("{name:?} is not of the form namespace.table"),
        )
    })?;
    let kind_text = parts.kind.into_inner();
    let kind = Kind::parse(&kind_text).ok_or_else(|| {
        kind_origin.error(
            Some(&name),
            Some("kind"),
            format!(
                "unknown kind {kind_text:?} (expected one of {})",
                Kind::NAMES
            ),
        )
    })?;
    let text = std::fs::read_to_string(&sql_path).map_err(|e| {
        sql_origin.error(
            Some(&name),
            Some("sql"),
            format!("cannot read {}: {e}", sql_path.display()),
        )
    })?;
    if !from_header && header_of(&sql_path, &text)?.is_some() {
        return Err(origin.error(
            Some(&name),
            None,
            format!(
                "configured twice: here and in the header of {}",
                sql_path.display()
            ),
        ));
    }
    let reads = query_reads(&sql_path, &text, &name)?;
    match kind {
        Kind::IncrementalByKey if parts.unique_key.is_empty() => {
            return Err(origin.error(
                Some(&name),
                Some("unique_key"),
                "incremental_by_key needs unique_key = [\"column\", …]",
            ));
        }

        Kind::View if !parts.partition_by.is_empty() || !parts.sort_by.is_empty() => {
            return Err(origin.error(
                Some(&name),
                Some("partition_by"),
                "a view has no partitioning or sort order",
            ));
        }
        _ => {}
    }
    let target = match parts.target.as_deref() {
        None | Some("iceberg") => Target::Iceberg,
        Some("delta") => Target::Delta,
        Some(other) => {
            return Err(origin.error(
                Some(&name),
                Some("target"),
                format!("{other:?}: target is \"iceberg\" (the default) or \"delta\""),
            ))
        }
    };
    if target == Target::Delta {
        let refused = match kind {
            Kind::View => Some(("target", "a view has no table format")),
            Kind::IncrementalByTime => Some((
                "kind",
                "a Delta output cannot be incremental_by_time: Delta partitions by column \
                 values, not by a time grain (use the Iceberg target)",
            )),
            _ if parts.incremental_input.is_some() => Some((
                "incremental_input",
                "a Delta output cannot read its input incrementally: the boundary rides in \
                 an Iceberg snapshot summary (use the Iceberg target)",
            )),
            _ => None,
        };
        if let Some((field, message)) = refused {
            return Err(origin.error(Some(&name), Some(field), message));
        }
        if let Some(bad) = parts.partition_by.iter().find(|p| p.contains('(')) {
            return Err(origin.error(
                Some(&name),
                Some("partition_by"),
                format!("{bad:?}: a Delta output is partitioned by plain columns only"),
            ));
        }
    }
    let merge = match parts.merge.as_deref() {
        None | Some("replace") => Merge::Replace,
        Some("sum") if kind == Kind::IncrementalByKey => Merge::Sum,
        Some(other) => {
            return Err(origin.error(
                Some(&name),
                Some("merge"),
                format!(
                "{other:?}: merge is \"replace\" or \"sum\", and \"sum\" is for incremental_by_key"
            ),
            ))
        }
    };
    if let Some(input) = &parts.incremental_input {
        if !matches!(kind, Kind::Append | Kind::IncrementalByKey) {
            return Err(origin.error(
                Some(&name),
                Some("incremental_input"),
                "only append and incremental_by_key models read an input incrementally",
            ));
        }
        if !reads.iter().any(|r| &r.table == input) {
            return Err(origin.error(
                Some(&name),
                Some("incremental_input"),
                format!("{input} is not a table the query reads"),
            ));
        }
    }
    let time = match (kind, (parts.time_column, parts.grain, parts.start)) {
        (Kind::IncrementalByTime, (Some(column), grain, Some(start))) => {
            let grain_text = grain.unwrap_or_else(|| "day".into());
            let grain = crate::interval::Grain::parse(&grain_text).ok_or_else(|| {
                origin.error(
                    Some(&name),
                    Some("grain"),
                    format!("{grain_text:?}: grain is hour, day or month"),
                )
            })?;
            let start = crate::interval::parse_instant(&start).ok_or_else(|| {
                origin.error(
                    Some(&name),
                    Some("start"),
                    format!("{start:?} is not a date (YYYY-MM-DD) or time (YYYY-MM-DD HH:MM:SS)"),
                )
            })?;
            let partition = format!("{}({column})", grain.as_str());
            if !parts
                .partition_by
                .iter()
                .any(|p| p.replace(' ', "") == partition)
            {
                return Err(origin.error(
                    Some(&name),
                    Some("partition_by"),
                    format!("an incremental_by_time model is partitioned by its grain: add \"{partition}\""),
                ));
            }
            Some(TimeAxis {
                column,
                grain,
                start,
            })
        }
        (Kind::IncrementalByTime, (None, _, _)) => {
            return Err(origin.error(
                Some(&name),
                Some("time_column"),
                "incremental_by_time needs time_column (the output's time), start and grain",
            ))
        }
        (Kind::IncrementalByTime, (_, _, None)) => {
            return Err(origin.error(
                Some(&name),
                Some("start"),
                "incremental_by_time needs start = \"YYYY-MM-DD\" (its first interval)",
            ))
        }
        (_, (Some(_), _, _) | (_, Some(_), _) | (_, _, Some(_))) => {
            return Err(origin.error(
                Some(&name),
                Some("time_column"),
                "time_column, grain and start are for incremental_by_time models",
            ))
        }
        _ => None,
    };
    let transform = match &parts.transform {
        None => None,
        Some(wanted) => {
            let found = icefjord_engine::transform::lookup(wanted).ok_or_else(|| {
                origin.error(
                    Some(&name),
                    Some("transform"),
                    format!(
                        "no transform {wanted:?} (known: {})",
                        icefjord_engine::transform::names().join(", ")
                    ),
                )
            })?;
            if kind == Kind::View {
                return Err(origin.error(
                    Some(&name),
                    Some("transform"),
                    "a view cannot have a transform; make it a table",
                ));
            }
            Some(found)
        }
    };
    for audit in &parts.audits {
        if let Audit::Sql {
            sql,
            name: audit_name,
        } = audit
        {
            query_reads(&sql_path, sql, &name).map_err(|e| {
                origin.error(
                    Some(&name),
                    Some("audits"),
                    format!("audit {audit_name}: {}", e.message),
                )
            })?;
        }
    }
    Ok(Model {
        name,
        ident,
        kind,
        target,
        sql: ModelSql {
            file: sql_path,
            text,
            reads,
        },
        partition_by: parts.partition_by,
        sort_by: parts.sort_by,
        unique_key: parts.unique_key,
        merge,
        incremental_input: parts.incremental_input,
        transform,
        time,
        audits: parts.audits,
        description: parts.description,
        origin,
    })
}

/// The config header of a SQL file: its leading `-- key = value` comment lines,
/// when they set `kind`. `None` for a file without one.
fn header_of(path: &Path, text: &str) -> Result<Option<ModelFile>, SpecError> {
    // The leading comment lines that set a key (`-- key = value`); other leading
    // comment lines are prose. The line numbers stay those of the file.
    let mut lines: Vec<&str> = Vec::new();
    for line in text
        .lines()
        .map_while(|line| line.trim_start().strip_prefix("--"))
    {
        let is_setting = line.split_once('=').is_some_and(|(key, _)| {
            let key = key.trim();
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        lines.push(if is_setting { line } else { "" });
    }
    if !lines
        .iter()
        .any(|l| l.trim_start().starts_with("kind") && l.contains('='))
    {
        return Ok(None);
    }
    let toml_text = lines.join("\n");
    toml::from_str(&toml_text).map(Some).map_err(|e| SpecError {
        file: path.to_path_buf(),
        line: e.span().map_or(0, |span| line_of(&toml_text, span.start)),
        model: None,
        field: None,
        message: format!("in the header: {}", e.message()),
    })
}

/// Check that `sql` is one query and list the tables it reads.
pub(crate) fn query_reads(
    path: &Path,
    sql: &str,
    model: &str,
) -> Result<Vec<TableRead>, SpecError> {
    let error = |line: usize, message: String| SpecError {
        file: path.to_path_buf(),
        line,
        model: Some(model.to_string()),
        field: Some("sql".into()),
        message,
    };
    let statements = DFParser::parse_sql_with_dialect(sql, &GenericDialect {})
        .map_err(|e| error(0, format!("does not parse: {e}")))?;
    if statements.len() != 1 {
        return Err(error(
            0,
            format!(
                "holds {} statements; a model is one SELECT",
                statements.len()
            ),
        ));
    }
    let statement = &statements[0];
    if !matches!(statement, DfStatement::Statement(s) if matches!(**s, Statement::Query(_))) {
        return Err(error(
            first_code_line(sql),
            "is not a query: job SQL is one SELECT (no DDL or DML)".into(),
        ));
    }
    let (tables, _ctes) = resolve_table_references(statement, true)
        .map_err(|e| error(0, format!("cannot resolve its tables: {e}")))?;
    let mut reads = Vec::new();
    for table in tables {
        let name = table.to_string();
        if table.schema().is_none() {
            return Err(error(
                line_naming(sql, table.table()),
                format!("reads {name}: name tables as namespace.table"),
            ));
        }
        let short = format!("{}.{}", table.schema().unwrap_or_default(), table.table());
        reads.push(TableRead {
            line: line_naming(sql, &short),
            table: short,
        });
    }
    Ok(reads)
}

/// The 1-based line of `text` holding byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// The first line of `sql` that names `table` (1 when none does).
fn line_naming(sql: &str, table: &str) -> usize {
    sql.lines()
        .position(|line| {
            line.to_ascii_lowercase()
                .contains(&table.to_ascii_lowercase())
        })
        .map_or(1, |i| i + 1)
}

fn first_code_line(sql: &str) -> usize {
    sql.lines()
        .position(|line| {
            let line = line.trim();
            !line.is_empty() && !line.starts_with("--")
        })
        .map_or(1, |i| i + 1)
}

fn table_part(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(_, table)| table)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn error_of(files: &[(&str, &str)]) -> SpecError {
        let dir = folder(files);
        Pipeline::load(dir.path()).unwrap_err()
    }

    const TOML: &str = r#"name = "shop"

[[models]]
name = "historical.daily"
kind = "table"
partition_by = ["day"]

[[models.audits]]
check = "not_null"
columns = ["day"]
"#;

    #[test]
    fn a_pipeline_parses_with_toml_and_header_models() {
        let dir = folder(&[
            ("pipeline.toml", TOML),
            (
                "daily.sql",
                "SELECT date_trunc('day', t) AS day, count(*) AS n\nFROM raw.events GROUP BY 1",
            ),
            (
                "by_day.sql",
                "-- name = \"unified.by_day\"\n-- kind = \"view\"\nSELECT * FROM historical.daily",
            ),
        ]);
        let pipeline = Pipeline::load(dir.path()).unwrap();
        assert_eq!(pipeline.name, "shop");
        let daily = pipeline.model("historical.daily").unwrap();
        assert_eq!(daily.kind, Kind::Table);
        assert_eq!(daily.origin.line, 4);
        assert_eq!(
            daily.sql.reads,
            vec![TableRead {
                table: "raw.events".into(),
                line: 2
            }]
        );
        assert_eq!(daily.audits.len(), 1);
        let view = pipeline.model("unified.by_day").unwrap();
        assert_eq!(view.kind, Kind::View);
        assert_eq!(view.sql.reads[0].table, "historical.daily");
    }

    #[test]
    fn an_unknown_kind_names_file_line_model_and_field() {
        let e = error_of(&[
            (
                "pipeline.toml",
                &TOML.replace("kind = \"table\"", "kind = \"tabel\""),
            ),
            ("daily.sql", "SELECT 1 AS day"),
        ]);
        assert!(e.file.ends_with("pipeline.toml"), "{e}");
        assert_eq!(e.line, 5);
        assert_eq!(e.model.as_deref(), Some("historical.daily"));
        assert_eq!(e.field.as_deref(), Some("kind"));
        assert!(e.to_string().contains("unknown kind \"tabel\""), "{e}");
    }

    #[test]
    fn a_missing_sql_file_is_named() {
        let e = error_of(&[("pipeline.toml", TOML)]);
        assert_eq!(e.field.as_deref(), Some("sql"));
        assert!(e.message.contains("daily.sql"), "{e}");
        assert_eq!(e.line, 4);
    }

    #[test]
    fn unknown_fields_and_audit_checks_name_their_line() {
        let e = error_of(&[
            (
                "pipeline.toml",
                &TOML.replace("partition_by", "partitoin_by"),
            ),
            ("daily.sql", "SELECT 1 AS day"),
        ]);
        assert_eq!(e.line, 6, "{e}");
        assert!(e.message.contains("partitoin_by"), "{e}");
        let e = error_of(&[
            ("pipeline.toml", &TOML.replace("not_null", "not_nul")),
            ("daily.sql", "SELECT 1 AS day"),
        ]);
        assert!(e.message.contains("not_nul"), "{e}");
        assert!(e.line >= 8, "{e}");
    }

    #[test]
    fn a_delta_target_refuses_what_delta_cannot_hold() {
        let model = |kind: &str, extra: &str| {
            format!(
                "name = \"t\"\n[[models]]\nname = \"export.daily\"\nkind = \"{kind}\"\ntarget = \"delta\"\n{extra}"
            )
        };
        for (kind, extra, field, words) in [
            ("view", "", "target", "a view has no table format"),
            (
                "incremental_by_time",
                "time_column = \"day\"\nstart = \"2023-10-27\"\npartition_by = [\"day(day)\"]",
                "kind",
                "cannot be incremental_by_time",
            ),
            (
                "append",
                "incremental_input = \"raw.events\"",
                "incremental_input",
                "Iceberg target",
            ),
            (
                "table",
                "partition_by = [\"day(day)\"]",
                "partition_by",
                "plain columns",
            ),
        ] {
            let e = error_of(&[
                ("pipeline.toml", &model(kind, extra)),
                ("daily.sql", "SELECT day FROM raw.events"),
            ]);
            assert_eq!(e.field.as_deref(), Some(field), "{kind}: {e}");
            assert!(e.message.contains(words), "{kind}: {e}");
            assert_eq!(e.model.as_deref(), Some("export.daily"), "{e}");
        }
        let e = error_of(&[
            (
                "pipeline.toml",
                &model("table", "").replace("\"delta\"", "\"hudi\""),
            ),
            ("daily.sql", "SELECT 1 AS day"),
        ]);
        assert_eq!(e.field.as_deref(), Some("target"), "{e}");
        assert!(
            e.message.contains("\"iceberg\" (the default) or \"delta\""),
            "{e}"
        );
    }

    #[test]
    fn incremental_by_time_needs_its_time_axis() {
        let model = |extra: &str| {
            format!(
                "name = \"t\"\n[[models]]\nname = \"historical.daily\"\nkind = \"incremental_by_time\"\n{extra}"
            )
        };
        for (extra, field, words) in [
            ("start = \"2023-10-27\"\npartition_by = [\"day(day)\"]", "time_column", "needs time_column"),
            ("time_column = \"day\"\npartition_by = [\"day(day)\"]", "start", "needs start"),
            ("time_column = \"day\"\nstart = \"27.10.2023\"\npartition_by = [\"day(day)\"]", "start", "not a date"),
            ("time_column = \"day\"\nstart = \"2023-10-27\"\ngrain = \"week\"\npartition_by = [\"day(day)\"]", "grain", "hour, day or month"),
            ("time_column = \"day\"\nstart = \"2023-10-27\"", "partition_by", "day(day)"),
        ] {
            let e = error_of(&[("pipeline.toml", &model(extra)), ("daily.sql", "SELECT 1 AS day")]);
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
            assert!(e.message.contains(words), "{e}");
            assert_eq!(e.line, 3, "{e}");
        }
        let e = error_of(&[
            (
                "pipeline.toml",
                &TOML.replace("partition_by", "time_column = \"day\"\npartition_by"),
            ),
            ("daily.sql", "SELECT 1 AS day"),
        ]);
        assert!(e.message.contains("for incremental_by_time"), "{e}");
    }

    #[test]
    fn an_unknown_transform_lists_the_known_ones() {
        let e = error_of(&[
            (
                "pipeline.toml",
                &TOML.replace(
                    "kind = \"table\"",
                    "kind = \"table\"\ntransform = \"sessionise\"",
                ),
            ),
            ("daily.sql", "SELECT 1 AS day"),
        ]);
        assert_eq!(e.field.as_deref(), Some("transform"));
        assert!(
            e.message.contains("sessionize") && e.message.contains("fraud_rules"),
            "{e}"
        );
    }

    #[test]
    fn job_sql_is_one_query() {
        for (sql, words) in [
            ("DROP TABLE raw.events", "not a query"),
            ("INSERT INTO raw.events VALUES (1)", "not a query"),
            ("SELECT 1; SELECT 2", "2 statements"),
            ("SELEC 1", "does not parse"),
            ("SELECT * FROM events", "namespace.table"),
        ] {
            let e = error_of(&[("pipeline.toml", TOML), ("daily.sql", sql)]);
            assert!(e.file.ends_with("daily.sql"), "{e}");
            assert!(e.to_string().contains(words), "{sql}: {e}");
        }
    }

    #[test]
    fn stray_sql_files_and_duplicate_outputs_are_errors() {
        let e = error_of(&[
            ("pipeline.toml", TOML),
            ("daily.sql", "SELECT 1 AS day"),
            ("notes.sql", "SELECT 2"),
        ]);
        assert!(
            e.file.ends_with("notes.sql") && e.message.contains("not a model"),
            "{e}"
        );
        let e = error_of(&[
            ("pipeline.toml", TOML),
            ("daily.sql", "SELECT 1 AS day"),
            (
                "again.sql",
                "-- name = \"historical.daily\"\n-- kind = \"view\"\nSELECT 1",
            ),
        ]);
        assert!(e.message.contains("also the output"), "{e}");
        let e = error_of(&[
            ("pipeline.toml", TOML),
            (
                "daily.sql",
                "-- name = \"historical.daily\"\n-- kind = \"table\"\nSELECT 1 AS day",
            ),
        ]);
        assert!(e.message.contains("configured twice"), "{e}");
    }
}
