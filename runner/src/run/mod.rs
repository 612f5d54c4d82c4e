//! Running a pipeline: write, audit, then publish everything at once.
//!
//! # Lifecycle and invariants (write-audit-publish)
//!
//! 1. **Plan.** Every selected model's query is planned, in dependency order, before
//!    anything runs: an unknown table or column, an audit naming a missing column
//!    or a bad partition column is a spec error (exit 2) naming the file, and
//!    nothing has been written. Upstream outputs are staged as empty tables of
//!    their planned schema so that downstream queries plan against them.
//! 2. **Write.** Each model runs in order. Its rows go to new data files of its
//!    output table that no snapshot references yet, and its output is *staged* in
//!    the run's own session: later models and audits read the new version, no one
//!    else does.
//! 3. **Audit.** A model's audits run over its staged output. A failed model or
//!    audit stops the run; later models are skipped.
//! 4. **Publish.** Only when every model ran and passed, one commit
//!    (`run:<pipeline>:<run id>`) moves every output table, replaces every view,
//!    pins every Delta output's new version and appends the run's rows to
//!    `icefjord.runs`, atomically: icefjord readers see the whole run or none of it. A failed run publishes nothing (its history rows are
//!    committed on their own); the data files it wrote are never referenced.
//! 5. **Idempotent.** A run id whose publish commit is in `icefjord.runs` is done:
//!    running it again does nothing. A failed run id can be run again.
//!
//! A new Iceberg output table is registered by the publishing commit itself
//! (`TableWrite::creating`): until then no reader sees it, and a failed run
//! leaves none behind. Delta outputs (`target = "delta"`) are written the same
//! way and committed as one Delta version each just before that commit, which
//! pins them (see `publish`); a new Delta table gets its empty version 0 when its
//! model first runs.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::datatypes::{DataType, TimeUnit};
use chrono::Utc;
use datafusion::catalog::view::ViewTable;
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{cast, lit, Expr, SortExpr};
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::DataFrame;
use futures::StreamExt;
use iceberg::spec::MAIN_BRANCH;
use iceberg::table::Table;
use icefjord_catalog::commit::find_commit;
use icefjord_catalog::protocol::{
    find_position, keys, BoundaryKey, InputSnapshotKey, IntervalsKey,
};
use icefjord_catalog::{
    mint_snapshot_id, CatalogError, CommitId, DeltaPointer, LakeCatalog, TableSpec, TableWrite,
    ViewWrite,
};
use icefjord_engine::delta::DeltaAdd;
use icefjord_engine::schema::{iceberg_schema_for, partition_spec};
use icefjord_engine::{DeltaOutput, IcebergTable, LakeSession, StagedMode, TableWriter};
use serde::Serialize;

use crate::audit;
use crate::boundary;
use crate::error::{Result, RunnerError};
use crate::graph::Graph;
use crate::history;
use crate::interval;
use crate::merge;
use crate::report::{ModelReport, ModelStatus, RunReport, RunStatus};
use crate::scanned::{collect_counted, scanned_rows};
use crate::spec::{Kind, Model, Pipeline, SpecError, Target};

mod by_key;
mod model;
mod publish;
mod rewrite;
mod tables;

use rewrite::ReadCounter;

/// Called as models start and finish (e.g. a terminal progress line).
pub type Progress = Arc<dyn Fn(ModelEvent<'_>) + Send + Sync>;

/// A step of a run, for [`Progress`].
#[derive(Clone, Copy, Debug)]
pub enum ModelEvent<'a> {
    Started {
        model: &'a str,
        position: usize,
        of: usize,
    },
    Finished(&'a ModelReport),
}

/// What `icefjord plan` shows for a model.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedModel {
    pub model: String,
    pub kind: Kind,
    /// What a run would do, and why.
    pub action: String,
    /// Models of this pipeline it reads (they run first when selected).
    pub upstream: Vec<String>,
    /// Tables and views it reads.
    pub reads: Vec<String>,
    /// The output's columns: name and type.
    pub columns: Vec<(String, String)>,
    pub audits: Vec<String>,
}

/// Runs (or plans, or tests) a pipeline over a lake.
pub struct Runner<'a> {
    catalog: &'a LakeCatalog,
    pipeline: &'a Pipeline,
    graph: Graph,
    selected: Vec<usize>,
    run_id: Option<String>,
    interval: Option<(i64, i64)>,
    dry_run: bool,
    progress: Option<Progress>,
}

/// Where a model's table output goes, and what is published there now (one per
/// model run: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Destination {
    Iceberg {
        table: Table,
        published: IcebergTable,
    },
    Delta(DeltaOutput),
}

impl Destination {
    fn published(&self) -> Arc<dyn TableProvider> {
        match self {
            Self::Iceberg { published, .. } => Arc::new(published.clone()),
            Self::Delta(output) => Arc::new(output.scan(None)),
        }
    }
}

/// What running one model produced, before its audits and the publish.
struct ModelRun {
    output: Output,
    /// The model's new rows (an incremental merge: before merging).
    rows: Option<u64>,
    /// Data files written.
    files: Option<usize>,
    /// Rows the model's plans read from data files.
    rows_read: Option<u64>,
    /// Published data files the run replaces (an incremental merge).
    files_deleted: Option<usize>,
    bytes_written: Option<u64>,
    /// The rows this run wrote, when audits check only them (incremental outputs).
    audit_scope: Option<Arc<dyn TableProvider>>,
}

impl ModelRun {
    fn of(output: Output) -> Self {
        Self {
            output,
            rows: None,
            files: None,
            rows_read: None,
            files_deleted: None,
            bytes_written: None,
            audit_scope: None,
        }
    }

    /// Nothing new for the model: nothing written, nothing to publish
    /// (`rows_read` rows were read to find out).
    fn up_to_date(rows_read: u64) -> Self {
        Self {
            rows: Some(0),
            files: Some(0),
            rows_read: Some(rows_read),
            ..Self::of(Output::UpToDate)
        }
    }
}

/// A model's result before publishing.
enum Output {
    /// An incremental model with nothing new to process: its output stays as
    /// published (no snapshot, no audit).
    UpToDate,
    View(ViewWrite),
    Table {
        write: Box<TableWrite>,
        snapshot_id: i64,
        /// The boundary table of an incremental model.
        companion: Option<Box<TableWrite>>,
    },
    /// Files of a Delta output, committed as one Delta version when publishing.
    Delta {
        ident: iceberg::TableIdent,
        output: Box<DeltaOutput>,
        files: Vec<DeltaAdd>,
        mode: StagedMode,
    },
}

impl<'a> Runner<'a> {
    pub fn new(catalog: &'a LakeCatalog, pipeline: &'a Pipeline) -> Result<Self> {
        let graph = Graph::of(pipeline)?;
        let selected = graph.order.clone();
        Ok(Self {
            catalog,
            pipeline,
            graph,
            selected,
            run_id: None,
            interval: None,
            dry_run: false,
            progress: None,
        })
    }

    /// Run only these models (`model`, `model+`, `+model`; see [`crate::graph`]).
    pub fn with_select(mut self, selectors: &[String]) -> Result<Self> {
        self.selected = self
            .graph
            .select(self.pipeline, selectors)
            .map_err(RunnerError::Usage)?;
        Ok(self)
    }

    /// The run's id (default: a new UUID). A run id already published is a no-op.
    pub fn with_run_id(mut self, run_id: Option<String>) -> Self {
        self.run_id = run_id;
        self
    }

    /// Re-run this `[start, end)` range (µs) of every incremental_by_time model,
    /// done or not (see [`crate::interval`]).
    pub fn with_interval(mut self, interval: Option<(i64, i64)>) -> Self {
        self.interval = interval;
        self
    }

    /// Run and audit every model, write nothing.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    pub fn with_progress(mut self, progress: Option<Progress>) -> Self {
        self.progress = progress;
        self
    }

    fn models(&self) -> impl Iterator<Item = &'a Model> + '_ {
        self.selected.iter().map(|&i| &self.pipeline.models[i])
    }

    /// Check and plan every selected model without running anything.
    pub async fn plan(&self) -> Result<Vec<PlannedModel>> {
        let session = LakeSession::new(self.catalog).await?;
        let schemas = self.prepare(&session).await?;
        let mut planned = Vec::new();
        for model in self.models() {
            let exists = match model.target {
                Target::Iceberg => self.catalog.exists(&model.ident).await?,
                Target::Delta => self.catalog.delta_table(&model.ident).await?.is_some(),
            };
            let mut action = match (model.kind, exists) {
                (Kind::View, _) => "publish the view's definition".to_string(),
                (Kind::Table, false) => "create the table and fill it".to_string(),
                (Kind::Table, true) => "replace all rows (full refresh)".to_string(),
                (Kind::Append, false) => "create the table and append the query's rows".into(),
                (Kind::Append, true) => "append the query's rows".to_string(),
                (Kind::IncrementalByKey, exists) => format!(
                    "{}merge the query's rows on ({})",
                    if exists { "" } else { "create the table, " },
                    model.unique_key.join(", ")
                ),
                (Kind::IncrementalByTime, _) => "process new intervals".to_string(),
            };
            if model.target == Target::Delta {
                action.push_str(" (Delta table: one new version)");
            }
            let schema = schemas.get(&model.name);
            planned.push(PlannedModel {
                model: model.name.clone(),
                kind: model.kind,
                action,
                upstream: model
                    .sql
                    .reads
                    .iter()
                    .filter(|r| self.pipeline.model(&r.table).is_some())
                    .map(|r| r.table.clone())
                    .collect(),
                reads: model.sql.reads.iter().map(|r| r.table.clone()).collect(),
                columns: schema
                    .map(|s| {
                        s.fields()
                            .iter()
                            .map(|f| (f.name().clone(), f.data_type().to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
                audits: model.audits.iter().map(|a| a.label()).collect(),
            });
        }
        Ok(planned)
    }

    /// Steps 1–5 of the module docs.
    pub async fn run(self) -> Result<RunReport> {
        let started_at = Utc::now();
        let clock = Instant::now();
        let run_id = self
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let commit_id = history::publish_commit_id(&self.pipeline.name, &run_id);
        let mut report = RunReport::start(&self.pipeline.name, run_id.clone(), started_at);
        if !self.dry_run && self.already_published(&commit_id).await? {
            report.status = RunStatus::AlreadyDone;
            report.commit_id = Some(commit_id.to_string());
            return Ok(report);
        }
        let session = LakeSession::new(self.catalog).await?;
        self.prepare(&session).await?;
        let total = self.selected.len();
        let mut outputs: Vec<(usize, Output)> = Vec::new();
        let mut failed = false;
        for (position, model) in self.models().enumerate() {
            let started = Utc::now();
            if failed {
                report.models.push(ModelReport::new(
                    &model.name,
                    model.kind,
                    ModelStatus::Skipped,
                    started,
                ));
                continue;
            }
            if let Some(progress) = &self.progress {
                progress(ModelEvent::Started {
                    model: &model.name,
                    position: position + 1,
                    of: total,
                });
            }
            let mut entry =
                ModelReport::new(&model.name, model.kind, ModelStatus::NotPublished, started);
            match self.run_model(&session, model, &run_id).await {
                Ok(run) => {
                    entry.rows = run.rows;
                    entry.files = run.files;
                    entry.rows_read = run.rows_read;
                    entry.files_deleted = run.files_deleted;
                    entry.bytes_written = run.bytes_written;
                    let audits = match run.output {
                        // Unchanged output: its audits passed when it was published.
                        Output::UpToDate => {
                            entry.status = ModelStatus::UpToDate;
                            Ok(Vec::new())
                        }
                        _ => self.audit(&session, model, run.audit_scope).await,
                    };
                    match audits {
                        Ok(audits) => {
                            if audits.iter().any(|a| !a.passed) {
                                entry.status = ModelStatus::AuditFailed;
                                let broken: Vec<String> = audits
                                    .iter()
                                    .filter(|a| !a.passed)
                                    .map(|a| format!("{} ({} failing)", a.audit, a.failing))
                                    .collect();
                                entry.error = Some(format!("audit failed: {}", broken.join("; ")));
                                failed = true;
                            }
                            entry.audits = audits;
                        }
                        Err(e) => {
                            entry.status = ModelStatus::Failed;
                            entry.error = Some(format!("audit could not run: {e}"));
                            failed = true;
                        }
                    }
                    if let Output::Table { snapshot_id, .. } = &run.output {
                        entry.snapshot_id = Some(*snapshot_id);
                    }
                    outputs.push((position, run.output));
                }
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => {
                    entry.status = ModelStatus::Failed;
                    entry.error = Some(e.to_string());
                    failed = true;
                }
            }
            entry.finished_at = Utc::now();
            if let Some(progress) = &self.progress {
                progress(ModelEvent::Finished(&entry));
            }
            report.models.push(entry);
        }
        report.duration_s = clock.elapsed().as_secs_f64();
        if failed {
            report.status = RunStatus::Failed;
            for entry in &mut report.models {
                entry.snapshot_id = None;
            }
            if !self.dry_run {
                self.record_failure(&report).await?;
            }
            return Ok(report);
        }
        if self.dry_run {
            report.status = RunStatus::DryRun;
            for entry in &mut report.models {
                entry.snapshot_id = None;
            }
            return Ok(report);
        }
        for entry in &mut report.models {
            if entry.status != ModelStatus::UpToDate {
                entry.status = ModelStatus::Published;
            }
        }
        self.publish(&commit_id, outputs, &mut report).await?;
        report.commit_id = Some(commit_id.to_string());
        report.duration_s = clock.elapsed().as_secs_f64();
        Ok(report)
    }

    /// `icefjord test`: run the selected models' audits over what is published.
    pub async fn test(&self) -> Result<RunReport> {
        let started_at = Utc::now();
        let clock = Instant::now();
        let session = LakeSession::new(self.catalog).await?;
        let mut report = RunReport::start(&self.pipeline.name, String::new(), started_at);
        for model in self.models() {
            let started = Utc::now();
            let mut entry = ModelReport::new(&model.name, model.kind, ModelStatus::Passed, started);
            let published = match model.kind {
                Kind::View => self.catalog.view(&model.ident).await?.is_some(),
                _ => self.catalog.exists(&model.ident).await?,
            };
            if !published {
                entry.status = ModelStatus::Failed;
                entry.error = Some(format!("{} is not published yet", model.name));
            } else {
                let audits = self.audit(&session, model, None).await?;
                if audits.iter().any(|a| !a.passed) {
                    entry.status = ModelStatus::AuditFailed;
                }
                entry.audits = audits;
            }
            entry.finished_at = Utc::now();
            if entry.status != ModelStatus::Passed {
                report.status = RunStatus::Failed;
            }
            report.models.push(entry);
        }
        report.duration_s = clock.elapsed().as_secs_f64();
        Ok(report)
    }

    async fn already_published(&self, commit_id: &CommitId) -> Result<bool> {
        let runs = history::runs_table();
        match self.catalog.load(&runs).await {
            Ok(table) => Ok(find_commit(table.metadata(), "main", commit_id).is_some()),
            Err(CatalogError::TableNotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Step 1: check what each model reads and plan it; returns the planned
    /// output schemas by model name.
    async fn prepare(&self, session: &LakeSession) -> Result<BTreeMap<String, SchemaRef>> {
        let mut schemas = BTreeMap::new();
        for model in self.models() {
            for read in &model.sql.reads {
                let in_pipeline = self.pipeline.model(&read.table);
                let selected = in_pipeline.is_some_and(|m| schemas.contains_key(&m.name))
                    || schemas.contains_key(&read.table);
                if selected {
                    continue;
                }
                let ident = icefjord_catalog::parse_table(&read.table)?;
                let exists = self.catalog.exists(&ident).await?
                    || self.catalog.view(&ident).await?.is_some()
                    || self.catalog.delta_table(&ident).await?.is_some();
                if !exists {
                    let message = match in_pipeline {
                        Some(_) => format!(
                            "reads {}, a model of this pipeline that is not published yet: \
                             select it too (--select +{})",
                            read.table, model.name
                        ),
                        None => format!(
                            "reads {}, which is no table or view of the lake",
                            read.table
                        ),
                    };
                    return Err(SpecError {
                        file: model.sql.file.clone(),
                        line: read.line,
                        model: Some(model.name.clone()),
                        field: Some("sql".into()),
                        message,
                    }
                    .into());
                }
            }
            let frame = plan_error(model, session.context().sql(&model.sql.text).await)?;
            let mut schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            if let Some(transform) = model.transform {
                for (column, what) in transform.input_columns() {
                    if schema.field_with_name(column).is_err() {
                        return Err(SpecError {
                            file: model.sql.file.clone(),
                            line: 0,
                            model: Some(model.name.clone()),
                            field: Some("sql".into()),
                            message: format!(
                                "transform {} needs a column {column} ({what}) from the query",
                                transform.name()
                            ),
                        }
                        .into());
                    }
                }
                schema = transform.output_schema();
            }
            for audit in &model.audits {
                for column in audit.columns() {
                    if schema.field_with_name(column).is_err() {
                        return Err(model
                            .error(
                                Some("audits"),
                                format!(
                                    "audit {} names no column {column} of the output",
                                    audit.label()
                                ),
                            )
                            .into());
                    }
                }
            }
            let time_column: Vec<String> = model.time.iter().map(|t| t.column.clone()).collect();
            for (field, columns) in [
                ("time_column", &time_column),
                ("unique_key", &model.unique_key),
                ("sort_by", &model.sort_by),
            ] {
                for column in columns {
                    if schema.field_with_name(column).is_err() {
                        return Err(model
                            .error(
                                Some(field),
                                format!("names no column {column} of the output"),
                            )
                            .into());
                    }
                }
            }
            if !model.partition_by.is_empty() {
                let iceberg = iceberg_schema_for(&model.name, &schema)
                    .map_err(|e| model.error(None, e.to_string()))?;
                partition_spec(&model.name, &model.partition_by, &iceberg)
                    .map_err(|e| model.error(Some("partition_by"), e.to_string()))?;
            }
            if model.target == Target::Delta {
                icefjord_engine::delta::delta_schema(&schema)
                    .map_err(|e| model.error(Some("target"), e))?;
            }
            if let Some(input) = &model.incremental_input {
                let provider = session.context().table_provider(input.as_str()).await?;
                let input_schema = provider.schema();
                for column in [boundary::TOPIC, boundary::PARTITION, boundary::OFFSET] {
                    if input_schema.field_with_name(column).is_err() {
                        return Err(model
                            .error(
                                Some("incremental_input"),
                                format!(
                                    "{input} has no column {column}: incremental inputs are sink tables"
                                ),
                            )
                            .into());
                    }
                }
                let companion = boundary::companion(&model.ident);
                let empty = MemTable::try_new(boundary::schema(), vec![vec![]])?;
                session.stage(&companion, Arc::new(empty))?;
                schemas.insert(icefjord_catalog::display(&companion), boundary::schema());
                // `input@since:<model>` is provided too (read from the lake until
                // the model runs and stages it).
                schemas.insert(
                    boundary::since_name(input, &model.name),
                    input_schema.clone(),
                );
            }
            let stub: Arc<dyn TableProvider> = match model.kind {
                Kind::View => Arc::new(ViewTable::new(frame.into_unoptimized_plan(), None)),
                _ => Arc::new(MemTable::try_new(schema.clone(), vec![vec![]])?),
            };
            session.stage(&model.ident, stub)?;
            schemas.insert(model.name.clone(), schema);
        }
        Ok(schemas)
    }

    /// Step 3 for one model: its audits over its staged output, or where
    /// `scope` is given (an incremental output), over the rows this run wrote,
    /// as SQLMesh audits an incremental model's processed intervals: the rows
    /// kept from earlier runs passed these audits when they were published.
    /// Audits about the whole output (`row_count_min`, `unique` on columns
    /// short of the unique key, custom SQL) always see all of it. `icefjord test` audits
    /// the whole published output.
    async fn audit(
        &self,
        session: &LakeSession,
        model: &Model,
        scope: Option<Arc<dyn TableProvider>>,
    ) -> Result<Vec<crate::report::AuditReport>> {
        let ctx = session.context();
        let mut reports = Vec::new();
        for check in &model.audits {
            let scoped = scope
                .as_ref()
                .filter(|_| audit::local(check, &model.unique_key));
            let whole = match scoped {
                Some(rows) => {
                    let whole = ctx.table_provider(model.name.as_str()).await?;
                    session.stage(&model.ident, rows.clone())?;
                    Some(whole)
                }
                None => None,
            };
            let output = ctx.table(model.name.as_str()).await;
            let report = match output {
                Ok(output) => audit::run(check, output, ctx).await,
                Err(e) => Err(e.into()),
            };
            if let Some(whole) = whole {
                session.stage(&model.ident, whole)?;
            }
            reports.push(report?);
        }
        Ok(reports)
    }
}

/// `frame` with `schema`'s columns, in its order (a published table may carry its
/// columns with other Arrow layouts than the query produces).
fn conformed(frame: DataFrame, schema: &SchemaRef) -> Result<DataFrame> {
    let columns: Vec<Expr> = schema
        .fields()
        .iter()
        .map(|f| {
            datafusion::logical_expr::cast(
                Expr::Column(Column::new_unqualified(f.name())),
                f.data_type().clone(),
            )
            .alias(f.name())
        })
        .collect();
    Ok(frame.select(columns)?)
}

/// A filter for the rows of `model`'s time column inside `ranges`.
fn replaced_ranges(model: &Model, ranges: Option<&interval::Ranges>) -> Expr {
    let Some(axis) = model.time.as_ref() else {
        return lit(false);
    };
    ranges
        .into_iter()
        .flatten()
        .map(|(from, to)| {
            let t = cast(
                column_expr(&axis.column),
                DataType::Timestamp(TimeUnit::Microsecond, None),
            );
            let at = |micros: i64| {
                Expr::Literal(ScalarValue::TimestampMicrosecond(Some(micros), None), None)
            };
            t.clone().gt_eq(at(*from)).and(t.lt(at(*to)))
        })
        .reduce(Expr::or)
        .unwrap_or_else(|| lit(false))
}

/// Batches as a table; their own schema when there are any (it may differ from
/// the planned one in nullability), else `schema`.
fn mem_table(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Arc<MemTable>> {
    let schema = batches.first().map_or(schema.clone(), RecordBatch::schema);
    let batches = batches
        .iter()
        .map(|b| b.clone().with_schema(schema.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}

fn column_expr(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// A planning error of a model's query: a spec error naming the SQL file, unless
/// the catalog or storage failed underneath.
fn plan_error(model: &Model, planned: Result<DataFrame, DataFusionError>) -> Result<DataFrame> {
    match planned {
        Ok(frame) => Ok(frame),
        Err(DataFusionError::External(e)) => match e.downcast::<CatalogError>() {
            Ok(catalog) => Err(RunnerError::Catalog(*catalog)),
            Err(other) => Err(spec_error(model, &other.to_string())),
        },
        Err(e) => Err(spec_error(model, &e.to_string())),
    }
}

fn spec_error(model: &Model, message: &str) -> RunnerError {
    SpecError {
        file: model.sql.file.clone(),
        line: 0,
        model: Some(model.name.clone()),
        field: Some("sql".into()),
        message: format!("does not plan: {message}"),
    }
    .into()
}
