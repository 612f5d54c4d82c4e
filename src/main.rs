//! `icefjord`: one binary for the lakehouse loop. This file parses the command line
//! once, calls the crates, and maps errors to the exit codes of [`exit`].

mod config;
mod exit;
mod ingest;
mod jobs;
mod kafka;
mod refs;
mod serve;
mod shipped;

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
#[command(
    name = "icefjord",
    version,
    about,
    long_about,
    after_help = "Exit codes: 0 ok · 1 the command failed · 2 usage or configuration error · \
                  3 an external service was unavailable (retrying may help)"
)]
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
    /// The catalog-wide branch or tag to read and write (default main): every
    /// command sees that state of the lake; a tag is read-only.
    #[arg(long, global = true, env = "ICEFJORD_BRANCH", value_name = "NAME")]
    branch: Option<String>,
    /// Log lines on stderr as text or json (one object per line); the level
    /// comes from ICEFJORD_LOG (default warn; `serve` logs each query at info).
    #[arg(long, global = true, default_value = "text", value_name = "FORMAT")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one read-only SQL query over the lake (`SELECT … FROM raw.retail_events`).
    ///
    /// PostgreSQL's SQL plus Spark's time travel: `raw.t VERSION AS OF <snapshot id>`,
    /// `raw.t TIMESTAMP AS OF '2026-01-31 10:00:00'` (UTC), `raw.t.branch_<name>`,
    /// `raw.t.tag_<name>`; metadata tables `raw.t.snapshots`, `.history`, `.refs`,
    /// `.files`, `.manifests`, `.partitions` (README, "Time travel and metadata tables").
    Sql {
        /// The query.
        query: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// List namespaces and tables (Iceberg and Delta) with their current snapshot
    /// (a Delta table's published version) and row count.
    Tables {
        #[command(flatten)]
        output: OutputArg,
    },
    /// The main job on the embedded default: generate retail, clickstream and
    /// activity events into raw.* (in the sink's layout), run the three shipped
    /// pipelines (jobs/retail, jobs/clickstream, jobs/activity), print
    /// unified.sales_by_category. Safe to re-run: nothing is written twice.
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
    /// Generate events straight into a raw table, in the sink's layout (no Kafka):
    /// raw.retail_events, raw.clickstream_events or raw.user_activity. Tops the
    /// table up to --events; deterministic for a seed and shape.
    ///
    /// Retail histories have a shape (--events-per-day, --start, --skew, --late),
    /// stored in the table with the generator's position: a top-up must repeat
    /// the shape the table holds (else exit 2, naming the flag).
    ///
    /// Example: icefjord generate --events 10000000 --events-per-day 2000000
    ///   --start 2024-01-01 --skew 1.1 --late 0.01
    Generate {
        /// retail, clickstream or activity.
        #[arg(long, default_value = "retail")]
        kind: icefjord_sink::simulate::EventKind,
        /// How many events the raw table should hold.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Retail: events per day (each day holds exactly this many on-time
        /// events); 8640 = one per 10 s on average.
        #[arg(long, default_value_t = icefjord_engine::generate::shape::DEFAULT_EVENTS_PER_DAY)]
        events_per_day: u64,
        /// Retail: the first day of the history (YYYY-MM-DD, UTC).
        #[arg(long, default_value = "2023-10-27")]
        start: icefjord_engine::generate::shape::NaiveDate,
        /// Retail: Zipf exponent of product and store popularity (key of rank k
        /// drawn with weight k^-S); 0 = uniform, 1.1 = a few hot keys.
        #[arg(long, default_value_t = 0.0)]
        skew: f64,
        /// Retail: the fraction of events (0–1) whose time is drawn uniformly
        /// from the history before them (late arrivals).
        #[arg(long, default_value_t = 0.0)]
        late: f64,
        /// Commit every N events, as the Kafka sink commits a batch (one
        /// snapshot and a few small files each); default: one commit.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        batch_events: Option<u64>,
    },
    /// Move Kafka events into an Iceberg table, exactly once (offsets live in the
    /// table). Bad records go to <table>_dlq in the same commit.
    ///
    /// Example: icefjord ingest --brokers 127.0.0.1:9092 --topic retail_events
    ///   --table raw.retail_events --schema data/schemas/retail_event.json
    ///   --group icefjord-retail --until-idle 5s
    ///
    /// Without --topic, every [[ingest.routes]] entry of icefjord.toml runs, each
    /// into its own table; one JSON report line per route on stdout.
    Ingest(Box<ingest::IngestArgs>),
    /// Produce realistic events (retail, clickstream, activity) to a Kafka topic,
    /// deterministic for a seed; prints a JSON report.
    Simulate(Box<SimulateArgs>),
    /// Run a pipeline (jobs/<name>/: pipeline.toml + SQL models): every model is
    /// written and audited, then all outputs are published in one commit.
    ///
    /// Exit codes: 0 ok · 1 a model or audit failed (nothing was published) ·
    /// 2 bad spec or usage · 3 a service was unavailable (retrying may help).
    ///
    /// Example: icefjord run jobs/retail --select historical.sales_hourly+ --output json
    Run(jobs::RunArgs),
    /// Show what `run` would do, in order, and why; checks every query and audit.
    Plan(jobs::PlanArgs),
    /// Run the audits of a pipeline's published outputs (exit 1 if one fails).
    Test(jobs::PlanArgs),
    /// List the models of a pipeline, or of every pipeline under a folder.
    List {
        #[command(flatten)]
        args: jobs::ListArgs,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Serve the lake read-only over the PostgreSQL wire protocol (psql, BI
    /// tools, drivers) and HTTP (apps, curl), and as an Iceberg REST catalog
    /// (Spark, Trino, PyIceberg, DuckDB; they may commit), until SIGTERM or Ctrl-C.
    ///
    /// Passwords and tokens come from the environment only: ICEFJORD_PG_USER +
    /// ICEFJORD_PG_PASSWORD or ICEFJORD_PG_USERS_FILE (user:password lines);
    /// ICEFJORD_HTTP_TOKEN or ICEFJORD_HTTP_TOKENS_FILE; REST OAuth2 clients in
    /// ICEFJORD_REST_CLIENTS_FILE. Prints {"pg": ADDR, "http": ADDR, "rest":
    /// ADDR} on stdout once it listens.
    ///
    /// Example: icefjord serve --pg-addr 127.0.0.1:5433 --http-addr 127.0.0.1:8080
    ///   then: psql -h 127.0.0.1 -p 5433 -U icefjord -c 'SELECT * FROM unified.sales_by_category'
    Serve(Box<serve::ServeArgs>),
    /// Catalog-wide branches (Nessie-style): `branch create dev [--from main]`,
    /// `branch list`, `branch delete dev`. Creating one copies pointers, never
    /// data; then `--branch dev` on any command reads and writes it.
    Branch(refs::BranchArgs),
    /// Catalog-wide tags (read-only branches): `tag create release-2026-11
    /// [--at main]`, `tag list`, `tag delete NAME`.
    Tag(refs::TagArgs),
    /// Merge a branch into main (or --into another): atomic across every table;
    /// a table changed on both sides conflicts unless both only appended
    /// (then rebased); a conflict changes nothing and names the tables.
    Merge(refs::MergeArgs),
    /// The commit history of the lake (every table of --branch, default
    /// main): when, which writer, which tables, the run that made it.
    Log(refs::LogArgs),
    /// Show the resolved lake configuration (secrets redacted).
    Config,
}

#[derive(Debug, Args)]
struct SimulateArgs {
    #[command(flatten)]
    kafka: kafka::KafkaArgs,
    /// Topic to write.
    #[arg(long)]
    topic: String,
    /// retail, clickstream or activity.
    #[arg(long, default_value = "retail")]
    kind: icefjord_sink::simulate::EventKind,
    /// How many events.
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    /// Events per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of malformed records to mix in (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    bad_ratio: f64,
    /// Extra librdkafka producer setting, KEY=VALUE (repeatable).
    #[arg(long = "producer-property", value_name = "KEY=VALUE")]
    producer_properties: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct OutputArg {
    /// Result format: table, json (one array of row objects) or csv.
    /// Default: table on a terminal, csv otherwise.
    #[arg(long, short = 'o', value_name = "FORMAT")]
    output: Option<OutputFormat>,
}

impl OutputArg {
    pub(crate) fn format(&self) -> OutputFormat {
        self.output.unwrap_or(if std::io::stdout().is_terminal() {
            OutputFormat::Table
        } else {
            OutputFormat::Csv
        })
    }
}

/// mimalloc instead of glibc malloc: the job runner's hash aggregations and
/// Parquet writes allocate and free large buffers all the time; on the retail
/// benchmark (bench/RESULTS.md) it cut `icefjord run`'s CPU by ~6% and its peak
/// memory by ~8%, and made runs steadier. Built with `no_thp` (Cargo.toml): mimalloc
/// v3 asks for transparent huge pages, and the kernel then zeroes and counts every
/// touched 2 MiB page; on the dense benchmark shapes that cost `icefjord run`
/// 3x its CPU and 6x its peak memory (bench/RESULTS.md, "Pipeline shapes"). On a
/// host whose THP mode is `always` (not `madvise`), also set
/// `MIMALLOC_ALLOW_THP=0`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let default_level = match cli.command {
        // One line per query (target icefjord::query) unless ICEFJORD_LOG says otherwise.
        Command::Serve(_) => "warn,icefjord::query=info,icefjord_serve=info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ICEFJORD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.lake.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // Deep SQL expressions recurse deeply in the planner (`icefjord sql`,
        // serve's parsing); 2 MiB (tokio's default) is not enough for them.
        .thread_stack_size(icefjord_serve::execution::QUERY_THREAD_STACK)
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

fn lake_config(args: &LakeArgs, file: &config::FileConfig) -> Result<LakeConfig> {
    let flags = config::Level {
        lake: args.lake.clone(),
        warehouse: args.warehouse.clone(),
        catalog: args.catalog.clone(),
    };
    config::resolve(file, config::env_level(), flags)
}

async fn open(args: &LakeArgs) -> Result<LakeCatalog> {
    open_with(args, &config::read_file(args.config.as_deref())?).await
}

async fn open_with(args: &LakeArgs, file: &config::FileConfig) -> Result<LakeCatalog> {
    let config = lake_config(args, file)?;
    let lake = LakeCatalog::open(&config)
        .await
        .with_context(|| format!("cannot open lake (catalog {})", config.catalog))?;
    match &args.branch {
        Some(branch) => Ok(lake.on_ref(branch).await?),
        None => Ok(lake),
    }
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
            let scratch =
                std::env::temp_dir().join(format!("icefjord-demo-{}", std::process::id()));
            let result = demo(&lake, events, seed, &scratch).await;
            let _ = std::fs::remove_dir_all(&scratch);
            result?;
            let session = LakeSession::new(&lake).await?;
            let (schema, batches) = query::run(
                &session,
                "SELECT * FROM unified.sales_by_category ORDER BY net_revenue DESC, category",
            )
            .await?;
            print(output.format(), &schema, &batches)
        }
        Command::Generate {
            kind,
            events,
            seed,
            events_per_day,
            start,
            skew,
            late,
            batch_events,
        } => {
            use icefjord_engine::demo::DemoKind;
            use icefjord_engine::generate::shape::{Shape, ShapeError};
            use icefjord_sink::simulate::EventKind;
            // A flag out of range or a top-up of another shape: usage, exit 2.
            let usage = |e: ShapeError| exit::Usage::new(e.flag(), e.to_string());
            let shape = Shape::new(events_per_day, start, skew, late).map_err(usage)?;
            let lake = open(&cli.lake).await?;
            let kind = match kind {
                EventKind::Retail => DemoKind::Retail,
                EventKind::Clickstream => DemoKind::Clickstream,
                EventKind::Activity => DemoKind::Activity,
            };
            let raw = Demo::new(&lake)
                .with_kind(kind)
                .with_events(events)
                .with_seed(seed)
                .with_shape(shape)
                .with_batch_events(batch_events.unwrap_or(u64::MAX))
                .run()
                .await
                .map_err(|e| match e {
                    icefjord_engine::EngineError::Shape(e) => anyhow::Error::from(usage(e)),
                    other => other.into(),
                })?;
            println!(
                "{}",
                serde_json::json!({
                    "table": kind.table(),
                    "events_written": raw.events_written,
                    "files": raw.raw_files_written,
                    "snapshot_id": raw.raw_snapshot_id,
                    "seconds": raw.ingest_time.as_secs_f64(),
                })
            );
            Ok(())
        }
        Command::Ingest(args) => {
            let file = config::read_file(cli.lake.config.as_deref())?;
            let lake = open_with(&cli.lake, &file).await?;
            ingest::run(*args, lake, &file).await
        }
        Command::Simulate(args) => {
            let file = config::read_file(cli.lake.config.as_deref())?;
            let mut simulation = icefjord_sink::simulate::Simulate::new(
                args.kafka.settings(&file.kafka)?,
                &args.topic,
                args.kind,
                args.events,
            )
            .with_rate(args.rate)
            .with_seed(args.seed)
            .with_bad_ratio(args.bad_ratio);
            for (key, value) in kafka::key_values("--producer-property", &args.producer_properties)?
            {
                simulation = simulation.with_producer_property(key, value);
            }
            let report = simulation.run().await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Serve(args) => serve::serve(*args, open(&cli.lake).await?).await,
        Command::Branch(args) => refs::branch(args, open(&cli.lake).await?).await,
        Command::Tag(args) => refs::tag(args, open(&cli.lake).await?).await,
        Command::Merge(args) => refs::merge(args, open(&cli.lake).await?).await,
        Command::Log(args) => refs::log(args, open(&cli.lake).await?).await,
        Command::Run(args) => jobs::run(args, open(&cli.lake).await?).await,
        Command::Plan(args) => jobs::plan(args, open(&cli.lake).await?).await,
        Command::Test(args) => jobs::test(args, open(&cli.lake).await?).await,
        Command::List { args, output } => {
            let batch = jobs::list(&args)?;
            print(output.format(), &batch.schema(), &[batch])
        }
        Command::Config => {
            let config = lake_config(&cli.lake, &config::read_file(cli.lake.config.as_deref())?)?;
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

/// `icefjord demo`: generate the three raw tables (retail `events`, clickstream and
/// activity half as many), then run the three shipped pipelines on them, each once
/// per raw snapshot. Progress and a few figures go to stderr.
async fn demo(lake: &LakeCatalog, events: u64, seed: u64, scratch: &std::path::Path) -> Result<()> {
    use icefjord_engine::demo::DemoKind;
    let plan = [
        (DemoKind::Retail, events, &shipped::RETAIL),
        (DemoKind::Clickstream, events / 2, &shipped::CLICKSTREAM),
        (DemoKind::Activity, events / 2, &shipped::ACTIVITY),
    ];
    for (kind, count, pipeline) in plan {
        let raw = Demo::new(lake)
            .with_kind(kind)
            .with_events(count)
            .with_seed(seed)
            .run()
            .await?;
        eprintln!(
            "{}: {} new events in {} files ({:.2}s); snapshot {}",
            kind.table(),
            raw.events_written,
            raw.raw_files_written,
            raw.ingest_time.as_secs_f64(),
            raw.raw_snapshot_id
        );
        let folder = pipeline.materialize(scratch).with_context(|| {
            format!(
                "cannot write the shipped pipelines to {}",
                scratch.display()
            )
        })?;
        let pipeline = icefjord_runner::Pipeline::load(&folder)?;
        // One run per raw snapshot: re-running the demo on the same data is a no-op.
        let report = icefjord_runner::Runner::new(lake, &pipeline)?
            .with_run_id(Some(format!("demo-{}", raw.raw_snapshot_id)))
            .run()
            .await?;
        eprintln!(
            "pipeline {}: {} ({} models, {:.2}s)",
            pipeline.name,
            serde_json::to_value(report.status)?
                .as_str()
                .unwrap_or_default(),
            report.models.len(),
            report.duration_s
        );
        if report.failed() {
            return Err(exit::JobFailed {
                pipeline: report.pipeline,
                message: "see SELECT * FROM icefjord.runs".into(),
            }
            .into());
        }
    }
    let session = LakeSession::new(lake).await?;
    for (label, sql) in [
        ("sessions", "SELECT count(*) AS n FROM historical.sessions"),
        (
            "fraud alerts",
            "SELECT count(*) AS n FROM historical.fraud_alerts",
        ),
        (
            "users active in the last 7 days",
            "SELECT active_users AS n FROM unified.active_users WHERE window_days = 7",
        ),
    ] {
        let batches = session.query(sql).await?;
        let n = batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0);
        eprintln!("{label}: {n}");
    }
    Ok(())
}

/// One row per table: namespace, table, current snapshot, row count.
/// `icefjord tables`: every Iceberg table with its current snapshot and row count,
/// then every Delta table with its published version (as `snapshot_id`).
async fn tables_batch(lake: &LakeCatalog) -> Result<RecordBatch> {
    let (mut namespaces, mut names, mut formats, mut snapshots, mut counts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for namespace in lake.namespaces().await? {
        for ident in lake.tables(&namespace).await? {
            let table = lake.load(&ident).await?;
            let snapshot = table.metadata().current_snapshot();
            namespaces.push(namespace.clone());
            names.push(ident.name().to_string());
            formats.push("iceberg");
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
    for (namespace, tables) in lake.state().await?.delta {
        for (name, (_, version)) in tables {
            namespaces.push(namespace.clone());
            names.push(name);
            formats.push("delta");
            snapshots.push(i64::try_from(version).ok());
            counts.push(None);
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("namespace", DataType::Utf8, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("format", DataType::Utf8, false),
        Field::new("snapshot_id", DataType::Int64, true),
        Field::new("row_count", DataType::Int64, true),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(namespaces)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(formats)),
            Arc::new(Int64Array::from(snapshots)),
            Arc::new(Int64Array::from(counts)),
        ],
    )?)
}

pub(crate) fn print(
    format: OutputFormat,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    write_batches(format, schema, batches, &mut out)?;
    out.flush()?;
    Ok(())
}
