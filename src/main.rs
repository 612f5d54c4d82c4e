//! `icefjord`: one binary for the lakehouse loop. This file parses the command line
//! once, calls the crates, and maps errors to the exit codes of [`exit`].

mod config;
mod exit;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use icefjord_catalog::{LakeCatalog, LakeConfig};
use icefjord_engine::arrow_array::{Int64Array, RecordBatch, StringArray};
use icefjord_engine::arrow_schema::{DataType, Field, Schema, SchemaRef};
use icefjord_engine::demo::Demo;
use icefjord_engine::LakeSession;
use icefjord_sql::{query, write_batches, OutputFormat};

/// Icefjord: Kafka ingest, DataFusion jobs and SQL serving over Apache Iceberg.
///
/// A lake is a warehouse (local directory or s3://bucket/prefix) plus a catalog
/// (SQLite file or PostgreSQL). By default `--lake ./lake` means
/// `./lake/catalog.db` + `./lake/warehouse/`.
#[derive(Debug, Parser)]
#[command(name = "icefjord", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    lake: LakeArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct LakeArgs {
    /// Lake directory: SQLite catalog DIR/catalog.db, warehouse DIR/warehouse/.
    #[arg(long, global = true, value_name = "DIR")]
    lake: Option<PathBuf>,
    /// Warehouse location (s3://bucket/prefix or a directory); overrides --lake's.
    #[arg(long, global = true, value_name = "URL")]
    warehouse: Option<String>,
    /// Catalog database (sqlite://FILE or postgres://…); overrides --lake's.
    #[arg(long, global = true, value_name = "URL")]
    catalog: Option<String>,
    /// Config file (default: ./icefjord.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one read-only SQL query over the lake (`SELECT … FROM raw.retail_events`).
    Sql {
        /// The query.
        query: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// List namespaces and tables with their current snapshot and row count.
    Tables {
        #[command(flatten)]
        output: OutputArg,
    },
    /// The main job on the embedded default: generate retail events into
    /// raw.retail_events, build historical.sales_by_category, print it.
    /// Safe to re-run: nothing is written twice.
    Demo {
        /// How many synthetic retail events the raw table should hold.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Seed of the deterministic generator.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show the resolved lake configuration (secrets redacted).
    Config,
}

#[derive(Debug, Args)]
struct OutputArg {
    /// Result format: table, json (one array of row objects) or csv.
    /// Default: table on a terminal, csv otherwise.
    #[arg(long, short = 'o', value_name = "FORMAT")]
    output: Option<OutputFormat>,
}

impl OutputArg {
    fn format(&self) -> OutputFormat {
        self.output.unwrap_or(if std::io::stdout().is_terminal() {
            OutputFormat::Table
        } else {
            OutputFormat::Csv
        })
    }
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ICEFJORD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(exit::FAILED);
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            exit::code(&e)
        }
    };
    std::process::exit(code);
}

/// The error and its causes on one line, without repeats.
fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

fn lake_config(args: &LakeArgs) -> Result<LakeConfig> {
    let file = config::read_file(args.config.as_deref())?;
    let flags = config::Level {
        lake: args.lake.clone(),
        warehouse: args.warehouse.clone(),
        catalog: args.catalog.clone(),
    };
    config::resolve(file, config::env_level(), flags)
}

async fn open(args: &LakeArgs) -> Result<LakeCatalog> {
    let config = lake_config(args)?;
    LakeCatalog::open(&config)
        .await
        .with_context(|| format!("cannot open lake (catalog {})", config.catalog))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Sql { query: sql, output } => {
            let lake = open(&cli.lake).await?;
            let session = LakeSession::new(&lake).await?;
            let (schema, batches) = query::run(&session, &sql).await?;
            print(output.format(), &schema, &batches)
        }
        Command::Tables { output } => {
            let lake = open(&cli.lake).await?;
            let batch = tables_batch(&lake).await?;
            print(output.format(), &batch.schema(), &[batch])
        }
        Command::Demo {
            events,
            seed,
            output,
        } => {
            let lake = open(&cli.lake).await?;
            let report = Demo::new(&lake)
                .with_events(events)
                .with_seed(seed)
                .run()
                .await?;
            eprintln!(
                "raw.retail_events: {} new events in {} files ({:.2}s); snapshot {}",
                report.events_written,
                report.raw_files_written,
                report.ingest_time.as_secs_f64(),
                report.raw_snapshot_id
            );
            eprintln!(
                "historical.sales_by_category: snapshot {}{} ({:.2}s)",
                report.output_snapshot_id,
                if report.output_unchanged {
                    " (unchanged)"
                } else {
                    ""
                },
                report.transform_time.as_secs_f64()
            );
            let schema = match report.result.first() {
                Some(b) => b.schema(),
                None => Arc::new(Schema::empty()),
            };
            print(output.format(), &schema, &report.result)
        }
        Command::Config => {
            let config = lake_config(&cli.lake)?;
            println!("warehouse = {:?}", config.warehouse.root_url());
            println!("catalog = {:?}", config.catalog.to_string());
            if let Some(endpoint) = &config.s3.endpoint {
                println!("s3.endpoint = {endpoint:?}");
            }
            if config.s3.access_key_id.is_some() {
                println!("s3.access_key_id = \"***\"");
            }
            if config.s3.secret_access_key.is_some() {
                println!("s3.secret_access_key = \"***\"");
            }
            Ok(())
        }
    }
}

/// One row per table: namespace, table, current snapshot, row count.
async fn tables_batch(lake: &LakeCatalog) -> Result<RecordBatch> {
    let (mut namespaces, mut names, mut snapshots, mut counts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for namespace in lake.namespaces().await? {
        for ident in lake.tables(&namespace).await? {
            let table = lake.load(&ident).await?;
            let snapshot = table.metadata().current_snapshot();
            namespaces.push(namespace.clone());
            names.push(ident.name().to_string());
            snapshots.push(snapshot.map(|s| s.snapshot_id()));
            counts.push(
                snapshot
                    .and_then(|s| {
                        s.summary()
                            .additional_properties
                            .get("total-records")
                            .cloned()
                    })
                    .and_then(|v| v.parse::<i64>().ok()),
            );
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("namespace", DataType::Utf8, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("snapshot_id", DataType::Int64, true),
        Field::new("row_count", DataType::Int64, true),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(namespaces)),
            Arc::new(StringArray::from(names)),
            Arc::new(Int64Array::from(snapshots)),
            Arc::new(Int64Array::from(counts)),
        ],
    )?)
}

fn print(format: OutputFormat, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    write_batches(format, schema, batches, &mut out)?;
    out.flush()?;
    Ok(())
}
