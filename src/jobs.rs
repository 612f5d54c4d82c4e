//! `icefjord run | plan | test | list`: the job runner's commands.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use icefjord_catalog::LakeCatalog;
use icefjord_engine::arrow_array::{RecordBatch, StringArray};
use icefjord_engine::arrow_schema::{DataType, Field, Schema};
use icefjord_runner::{ModelEvent, Pipeline, Progress, RunReport, RunStatus, Runner};

use crate::exit::JobFailed;

/// How a run report is printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One line per model.
    #[default]
    Text,
    /// The whole report as one JSON object.
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline folder (holding pipeline.toml), e.g. jobs/retail.
    pub pipeline: PathBuf,
    /// Models to run: NAME, NAME+ (with everything downstream), +NAME (with
    /// everything upstream); repeatable. Default: all.
    #[arg(long, short = 's', value_name = "MODEL")]
    pub select: Vec<String>,
    /// The run's id (default: a new UUID). Re-running a published run id does
    /// nothing, so a scheduler can retry safely; a failed one runs again.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Re-run this range of every incremental_by_time model, done or not:
    /// START/END as dates or times (UTC), e.g. 2023-10-27/2023-10-29.
    #[arg(long, value_name = "START/END")]
    pub interval: Option<String>,
    /// Run and audit every model but write and publish nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Report format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: ReportFormat,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The pipeline folder, e.g. jobs/retail.
    pub pipeline: PathBuf,
    /// Models to plan (as for run); default: all.
    #[arg(long, short = 's', value_name = "MODEL")]
    pub select: Vec<String>,
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: ReportFormat,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// A pipeline folder, or a folder of pipeline folders.
    #[arg(default_value = "jobs")]
    pub path: PathBuf,
}

fn load(path: &Path) -> Result<Pipeline> {
    Ok(Pipeline::load(path)?)
}

fn progress() -> Option<Progress> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    Some(Arc::new(|event: ModelEvent<'_>| match event {
        ModelEvent::Started {
            model,
            position,
            of,
        } => eprint!("\r\x1b[2K[{position}/{of}] {model} …"),
        ModelEvent::Finished(report) => eprintln!(
            "\r\x1b[2K{:>13}  {}  {:.2}s",
            report.status.as_str(),
            report.model,
            (report.finished_at - report.started_at).num_milliseconds() as f64 / 1000.0
        ),
    }))
}

pub async fn run(args: RunArgs, lake: LakeCatalog) -> Result<()> {
    let interval = match &args.interval {
        None => None,
        Some(text) => Some(icefjord_runner::interval::parse_range(text).ok_or_else(|| {
            crate::exit::Usage::new(
                "--interval",
                format!("{text:?} is not START/END (dates or times, START before END)"),
            )
        })?),
    };
    let pipeline = load(&args.pipeline)?;
    let report = Runner::new(&lake, &pipeline)?
        .with_select(&args.select)?
        .with_run_id(args.run_id)
        .with_interval(interval)
        .with_dry_run(args.dry_run)
        .with_progress(progress())
        .run()
        .await
        .with_context(|| format!("pipeline {}", pipeline.name))?;
    print_report(&report, args.output)?;
    finish(&report)
}

pub async fn test(args: PlanArgs, lake: LakeCatalog) -> Result<()> {
    let pipeline = load(&args.pipeline)?;
    let report = Runner::new(&lake, &pipeline)?
        .with_select(&args.select)?
        .test()
        .await
        .with_context(|| format!("pipeline {}", pipeline.name))?;
    print_report(&report, args.output)?;
    finish(&report)
}

fn finish(report: &RunReport) -> Result<()> {
    match report.status {
        RunStatus::Failed => {
            let failures: Vec<String> = report
                .models
                .iter()
                .filter_map(|m| m.error.as_ref().map(|e| format!("{}: {e}", m.model)))
                .chain(report.models.iter().flat_map(|m| {
                    m.audits.iter().filter(|a| !a.passed).map(move |a| {
                        format!("{}: audit {} failed ({} rows)", m.model, a.audit, a.failing)
                    })
                }))
                .collect();
            Err(JobFailed {
                pipeline: report.pipeline.clone(),
                message: failures.join("; "),
            }
            .into())
        }
        _ => Ok(()),
    }
}

fn print_report(report: &RunReport, format: ReportFormat) -> Result<()> {
    match format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(report)?),
        ReportFormat::Text => {
            println!(
                "pipeline {}  run {}  {}  {:.2}s",
                report.pipeline,
                if report.run_id.is_empty() {
                    "-"
                } else {
                    &report.run_id
                },
                serde_json::to_value(report.status)?
                    .as_str()
                    .unwrap_or_default(),
                report.duration_s
            );
            for m in &report.models {
                let audits: Vec<String> = m
                    .audits
                    .iter()
                    .map(|a| format!("{} {}", a.audit, if a.passed { "ok" } else { "FAILED" }))
                    .collect();
                println!(
                    "  {:<13} {:<40} {:<19} rows={:<9} {}{}",
                    m.status.as_str(),
                    m.model,
                    m.kind.as_str(),
                    m.rows.map_or("-".to_string(), |r| r.to_string()),
                    audits.join(", "),
                    m.error
                        .as_ref()
                        .map(|e| format!("  error: {e}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

pub async fn plan(args: PlanArgs, lake: LakeCatalog) -> Result<()> {
    let pipeline = load(&args.pipeline)?;
    let planned = Runner::new(&lake, &pipeline)?
        .with_select(&args.select)?
        .plan()
        .await
        .with_context(|| format!("pipeline {}", pipeline.name))?;
    match args.output {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&planned)?),
        ReportFormat::Text => {
            println!(
                "pipeline {}: {} models, in run order",
                pipeline.name,
                planned.len()
            );
            for (i, p) in planned.iter().enumerate() {
                println!(
                    "{:>3}. {} ({}): {}",
                    i + 1,
                    p.model,
                    p.kind.as_str(),
                    p.action
                );
                println!("       reads: {}", p.reads.join(", "));
                if !p.audits.is_empty() {
                    println!("       audits: {}", p.audits.join(", "));
                }
            }
        }
    }
    Ok(())
}

/// The models of one pipeline, or of every pipeline folder under `path`.
pub fn list(args: &ListArgs) -> Result<RecordBatch> {
    let mut folders = Vec::new();
    if args
        .path
        .join(icefjord_runner::spec::PIPELINE_FILE)
        .is_file()
    {
        folders.push(args.path.clone());
    } else {
        let entries = std::fs::read_dir(&args.path).map_err(|e| {
            crate::exit::Usage::new("path", format!("{}: {e}", args.path.display()))
        })?;
        for entry in entries.flatten() {
            if entry
                .path()
                .join(icefjord_runner::spec::PIPELINE_FILE)
                .is_file()
            {
                folders.push(entry.path());
            }
        }
        folders.sort();
    }
    let (mut pipelines, mut models, mut kinds, mut sources, mut audits) =
        (vec![], vec![], vec![], vec![], vec![]);
    for folder in folders {
        let pipeline = load(&folder)?;
        for model in &pipeline.models {
            pipelines.push(pipeline.name.clone());
            models.push(model.name.clone());
            kinds.push(model.kind.as_str().to_string());
            sources.push(model.sql.file.display().to_string());
            audits.push(
                model
                    .audits
                    .iter()
                    .map(|a| a.label())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
    }
    let column = |name: &str| Field::new(name, DataType::Utf8, false);
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            column("pipeline"),
            column("model"),
            column("kind"),
            column("sql"),
            column("audits"),
        ])),
        vec![
            Arc::new(StringArray::from(pipelines)),
            Arc::new(StringArray::from(models)),
            Arc::new(StringArray::from(kinds)),
            Arc::new(StringArray::from(sources)),
            Arc::new(StringArray::from(audits)),
        ],
    )?)
}
