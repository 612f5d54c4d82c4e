//! `icefjord branch | tag | merge | log`: catalog-wide branches and tags
//! (`icefjord_catalog::refs`), printed as tables, JSON or CSV.

use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Subcommand};
use icefjord_catalog::{CatalogRef, LakeCatalog, RefKind, MAIN};
use icefjord_engine::arrow_array::{RecordBatch, StringArray};
use icefjord_engine::arrow_schema::{DataType, Field, Schema};

use crate::{print, OutputArg};

#[derive(Debug, Args)]
pub struct BranchArgs {
    #[command(subcommand)]
    command: RefCommand,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    #[command(subcommand)]
    command: RefCommand,
}

#[derive(Debug, Subcommand)]
enum RefCommand {
    /// Create it from the current state of --from / --at (main, a branch or a tag).
    Create {
        name: String,
        #[arg(long, visible_alias = "at", default_value = MAIN, value_name = "REF")]
        from: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Every branch and tag.
    List {
        #[command(flatten)]
        output: OutputArg,
    },
    /// Delete it (its pointers; data files stay for maintenance to collect).
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The branch to merge.
    branch: String,
    /// The branch to merge into.
    #[arg(long, default_value = MAIN, value_name = "BRANCH")]
    into: String,
    #[command(flatten)]
    output: OutputArg,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// How many commits, newest first.
    #[arg(long, short = 'n', default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    output: OutputArg,
}

fn strings(columns: &[&str], rows: Vec<Vec<String>>) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let arrays = (0..columns.len())
        .map(|i| {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r[i].as_str()),
            )) as icefjord_engine::arrow_array::ArrayRef
        })
        .collect();
    Ok(RecordBatch::try_new(schema, arrays)?)
}

/// RFC 3339 in UTC with milliseconds.
fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn ref_rows(refs: &[CatalogRef]) -> Result<RecordBatch> {
    strings(
        &["name", "kind", "created_from", "created_at"],
        refs.iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.kind.as_str().to_string(),
                    r.created_from.clone(),
                    iso(r.created_at_ms),
                ]
            })
            .collect(),
    )
}

async fn refs(command: RefCommand, kind: RefKind, lake: LakeCatalog) -> Result<()> {
    match command {
        RefCommand::Create { name, from, output } => {
            let created = lake.create_ref(&name, kind, &from).await?;
            let batch = ref_rows(&[created])?;
            print(output.format(), &batch.schema(), &[batch])
        }
        RefCommand::List { output } => {
            let batch = ref_rows(&lake.refs().await?)?;
            print(output.format(), &batch.schema(), &[batch])
        }
        RefCommand::Delete { name } => {
            let found = lake.refs().await?.into_iter().find(|r| r.name == name);
            if let Some(other) = found.filter(|r| r.kind != kind) {
                anyhow::bail!(crate::exit::Usage::new(
                    "NAME",
                    format!(
                        "{name} is a {}, not a {}",
                        other.kind.as_str(),
                        kind.as_str()
                    )
                ));
            }
            Ok(lake.delete_ref(&name).await?)
        }
    }
}

pub async fn branch(args: BranchArgs, lake: LakeCatalog) -> Result<()> {
    refs(args.command, RefKind::Branch, lake).await
}

pub async fn tag(args: TagArgs, lake: LakeCatalog) -> Result<()> {
    refs(args.command, RefKind::Tag, lake).await
}

pub async fn merge(args: MergeArgs, lake: LakeCatalog) -> Result<()> {
    let report = lake.merge(&args.branch, &args.into).await?;
    let batch = strings(
        &["object", "kind", "how"],
        report
            .merged
            .iter()
            .map(|m| vec![m.object.clone(), m.kind.to_string(), m.how.to_string()])
            .collect(),
    )?;
    print(args.output.format(), &batch.schema(), &[batch])
}

pub async fn log(args: LogArgs, lake: LakeCatalog) -> Result<()> {
    let entries = lake.history(args.limit).await?;
    let batch = strings(
        &[
            "committed_at",
            "commit_id",
            "writer",
            "operation",
            "tables",
            "run_id",
        ],
        entries
            .into_iter()
            .map(|e| {
                vec![
                    iso(e.committed_at_ms),
                    e.commit_id,
                    e.writer,
                    e.operation,
                    e.tables.join(","),
                    e.run_id.unwrap_or_default(),
                ]
            })
            .collect(),
    )?;
    print(args.output.format(), &batch.schema(), &[batch])
}
