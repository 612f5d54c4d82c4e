//! `icefjord ingest`: one route from flags, or every `[[ingest.routes]]` of
//! `icefjord.toml`, each running its own exactly-once sink in this process.
//! Settings resolve once: flags, then `[ingest]`, then the defaults shown in
//! `--help`; a route's own entries beat `[ingest]`'s.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use futures::FutureExt;
use icefjord_catalog::LakeCatalog;
use icefjord_engine::schema::EventSchema;
use icefjord_sink::{Assign, BatchLimits, Ingest, ResetOffsets, Route};

use crate::config::{parse_duration, FileConfig, IngestFile, RouteFile};
use crate::exit::Usage;
use crate::kafka::{key_values, KafkaArgs};

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Topic to read. Without it, every [[ingest.routes]] entry of icefjord.toml runs.
    #[arg(long, requires_all = ["table", "schema"])]
    topic: Option<String>,
    /// Target table, namespace.table (created from --schema when missing).
    #[arg(long, requires = "topic")]
    table: Option<String>,
    /// Event schema file (see data/README.md).
    #[arg(long, value_name = "FILE", requires = "topic")]
    schema: Option<PathBuf>,
    /// Consumer group; also names the offsets stored in the table
    /// [default: [ingest].group].
    #[arg(long)]
    group: Option<String>,
    /// Close a batch after this long, e.g. 10s, 500ms [default: 10s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    commit_interval: Option<Duration>,
    /// Close a batch after this many records [default: 500000].
    #[arg(long, value_name = "N")]
    commit_rows: Option<usize>,
    /// Close a batch after this many bytes of record values [default: 268435456].
    #[arg(long, value_name = "BYTES")]
    commit_bytes: Option<usize>,
    /// Exit 0 once all partitions are drained and nothing arrived for this long.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    until_idle: Option<Duration>,
    /// Stop with an error when a batch has a larger share of bad records
    /// [default: 1.0 = never].
    #[arg(long, value_name = "RATIO")]
    max_error_ratio: Option<f64>,
    /// Evolve the table's schema: new keys become optional columns, int/float
    /// columns widen to long/double (otherwise new keys are ignored and values that
    /// do not fit are dead-lettered).
    #[arg(long)]
    evolve_schema: bool,
    /// How partitions are shared: `group` (join the consumer group) or `all` (read
    /// every partition without joining; for a single scheduled sink per topic)
    /// [default: group].
    #[arg(long)]
    assign: Option<Assign>,
    /// Kafka group session timeout: how long a crashed sink holds its partitions
    /// [default: 10s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    session_timeout: Option<Duration>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9464).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Move the table's stored position of TOPIC deliberately, before ingesting:
    /// `TOPIC=earliest` (the log's start: ingest what it holds now) or
    /// `TOPIC=latest` (its end: skip it). Only for partitions whose stored offset
    /// lies outside the broker's log (a recreated topic, records deleted by
    /// retention), which otherwise stop the sink; refused when there is none. The
    /// new positions are recorded in a commit of their own. Use it for one run.
    #[arg(long, value_name = "TOPIC=earliest|latest")]
    reset_offsets: Option<ResetOffsets>,
    /// Extra librdkafka consumer setting, KEY=VALUE (repeatable), e.g.
    /// group.instance.id=sink-1 for static membership.
    #[arg(long = "consumer-property", value_name = "KEY=VALUE")]
    consumer_properties: Vec<String>,
}

/// A route with the settings that may differ per route.
struct Planned {
    route: Route,
    max_error_ratio: f64,
}

impl IngestArgs {
    /// The routes to run: the flags' one, or the file's.
    fn routes(&self, section: &IngestFile) -> Result<Vec<Planned>> {
        let entries = match (&self.topic, &self.table, &self.schema) {
            (Some(topic), Some(table), Some(schema)) => vec![RouteFile {
                topic: topic.clone(),
                table: table.clone(),
                schema: schema.clone(),
                group: self.group.clone(),
                evolve_schema: None,
                max_error_ratio: None,
            }],
            _ if section.routes.is_empty() => {
                return Err(Usage::new(
                    "--topic",
                    "nothing to ingest: give --topic, --table, --schema and --group, \
                     or [[ingest.routes]] in icefjord.toml",
                )
                .into())
            }
            _ => section.routes.clone(),
        };
        let mut seen = std::collections::HashSet::new();
        entries
            .into_iter()
            .map(|entry| {
                if !seen.insert(entry.table.clone()) {
                    return Err(Usage::new(
                        "[[ingest.routes]].table",
                        format!(
                            "table {} has more than one route (one writer per table)",
                            entry.table
                        ),
                    )
                    .into());
                }
                let group = self
                    .group
                    .clone()
                    .or(entry.group)
                    .or_else(|| section.group.clone())
                    .ok_or_else(|| {
                        Usage::new(
                            "--group",
                            format!(
                                "topic {}: no consumer group (--group or [ingest].group)",
                                entry.topic
                            ),
                        )
                    })?;
                let text = std::fs::read_to_string(&entry.schema).map_err(|e| {
                    Usage::new(
                        "--schema",
                        format!("cannot read {}: {e}", entry.schema.display()),
                    )
                })?;
                let schema = EventSchema::parse(&entry.schema.display().to_string(), &text)?;
                let ratio = self
                    .max_error_ratio
                    .or(entry.max_error_ratio)
                    .or(section.max_error_ratio)
                    .unwrap_or(1.0);
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(Usage::new(
                        "--max-error-ratio",
                        format!("{ratio} is not within 0..1"),
                    )
                    .into());
                }
                Ok(Planned {
                    route: Route {
                        topic: entry.topic,
                        table: icefjord_catalog::parse_table(&entry.table)?,
                        schema,
                        group,
                        evolve_schema: self.evolve_schema
                            || entry
                                .evolve_schema
                                .or(section.evolve_schema)
                                .unwrap_or(false),
                    },
                    max_error_ratio: ratio,
                })
            })
            .collect()
    }

    fn limits(&self, section: &IngestFile) -> Result<BatchLimits> {
        let defaults = BatchLimits::default();
        Ok(BatchLimits {
            interval: match (self.commit_interval, &section.commit_interval) {
                (Some(d), _) => d,
                (None, Some(text)) => file_duration("[ingest].commit_interval", text)?,
                (None, None) => defaults.interval,
            },
            rows: self
                .commit_rows
                .or(section.commit_rows)
                .unwrap_or(defaults.rows),
            bytes: self
                .commit_bytes
                .or(section.commit_bytes)
                .unwrap_or(defaults.bytes),
        })
    }
}

fn file_duration(field: &str, text: &str) -> Result<Duration> {
    Ok(parse_duration(text).map_err(|e| Usage::new(field, e))?)
}

/// Run every route until idle or until SIGINT/SIGTERM; print one JSON report line
/// per route.
pub async fn run(args: IngestArgs, lake: LakeCatalog, file: &FileConfig) -> Result<()> {
    let section = &file.ingest;
    let metrics_addr = match (args.metrics_addr, &section.metrics_addr) {
        (Some(addr), _) => Some(addr),
        (None, Some(text)) => Some(
            text.parse::<SocketAddr>()
                .map_err(|e| Usage::new("[ingest].metrics_addr", format!("{text:?}: {e}")))?,
        ),
        (None, None) => None,
    };
    let routes = args.routes(section)?;
    if let Some(reset) = &args.reset_offsets {
        if !routes.iter().any(|r| r.route.topic == reset.topic) {
            return Err(Usage::new(
                "--reset-offsets",
                format!("no route reads topic {}", reset.topic),
            )
            .into());
        }
    }
    let kafka = args.kafka.settings(&file.kafka)?;
    let limits = args.limits(section)?;
    let assign = match (args.assign, &section.assign) {
        (Some(a), _) => a,
        (None, Some(text)) => text
            .parse()
            .map_err(|e: String| Usage::new("[ingest].assign", e))?,
        (None, None) => Assign::Group,
    };
    let session_timeout = match (args.session_timeout, &section.session_timeout) {
        (Some(d), _) => d,
        (None, Some(text)) => file_duration("[ingest].session_timeout", text)?,
        (None, None) => icefjord_sink::ingest::DEFAULT_SESSION_TIMEOUT,
    };
    let mut properties: Vec<(String, String)> = section
        .consumer_properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in key_values("--consumer-property", &args.consumer_properties)? {
        properties.retain(|(k, _)| k != key);
        properties.push((key.to_string(), value.to_string()));
    }
    if let Some(addr) = metrics_addr {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
    }

    let bars = std::io::stderr()
        .is_terminal()
        .then(indicatif::MultiProgress::new);
    let shutdown = shutdown_signal().shared();
    let mut sinks = Vec::with_capacity(routes.len());
    for planned in routes {
        let label = planned.route.topic.clone();
        let reset = args
            .reset_offsets
            .clone()
            .filter(|r| r.topic == planned.route.topic);
        let mut ingest = Ingest::new(lake.clone(), kafka.clone(), planned.route)
            .with_limits(limits)
            .until_idle(args.until_idle)
            .with_max_error_ratio(planned.max_error_ratio)
            .with_session_timeout(session_timeout)
            .with_assign(assign)
            .with_reset_offsets(reset);
        for (key, value) in &properties {
            ingest = ingest.with_consumer_property(key, value)?;
        }
        if let Some(bars) = &bars {
            let bar = bars.add(indicatif::ProgressBar::new_spinner());
            ingest = ingest.with_progress(Box::new(move |p: &icefjord_sink::Progress| {
                bar.set_message(format!(
                    "{label}: {} consumed ({:.0}/s) · {} written · {} dead-lettered · lag {}",
                    p.consumed, p.records_per_second, p.written, p.dead_lettered, p.lag
                ));
                bar.tick();
            }));
        }
        sinks.push(ingest.run(shutdown.clone()));
    }
    // One failing route ends the others; their uncommitted batches are re-read
    // from the tables' offsets on the next start.
    for report in futures::future::try_join_all(sinks).await? {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}
