//! Where the lake is, resolved once: flags over environment over `icefjord.toml`,
//! over the default `./lake`. Each setting is resolved on its own; at any level an
//! explicit `warehouse`/`catalog` beats one derived from `lake` at the same level.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use icefjord_catalog::{CatalogUri, LakeConfig, S3Options, Secret, Warehouse};
use serde::Deserialize;

/// `icefjord.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// A lake directory (SQLite catalog + local warehouse inside it).
    pub lake: Option<PathBuf>,
    /// `s3://bucket/prefix` or a directory.
    pub warehouse: Option<String>,
    /// `sqlite://FILE` or `postgres://…`.
    pub catalog: Option<Secret>,
    #[serde(default)]
    pub s3: S3File,
    /// Kafka connection settings (used by `ingest` and `simulate`).
    #[serde(default)]
    pub kafka: KafkaFile,
    /// Sink settings and routes (`icefjord ingest` without `--topic`).
    #[serde(default)]
    pub ingest: IngestFile,
}

/// `[kafka]`: how to reach the brokers. Passwords never live here: they come
/// from `ICEFJORD_KAFKA_PASSWORD` / `ICEFJORD_KAFKA_KEY_PASSWORD`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaFile {
    pub brokers: Option<String>,
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub tls: Option<bool>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// `[ingest]`: defaults for every route, and the routes.
///
/// ```toml
/// [ingest]
/// group = "icefjord"
/// commit_interval = "10s"
/// evolve_schema = true
///
/// [[ingest.routes]]
/// topic = "retail_events"
/// table = "raw.retail_events"
/// schema = "data/schemas/retail_event.json"   # relative to this file
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestFile {
    pub group: Option<String>,
    pub commit_interval: Option<String>,
    pub commit_rows: Option<usize>,
    pub commit_bytes: Option<usize>,
    pub max_error_ratio: Option<f64>,
    pub evolve_schema: Option<bool>,
    pub assign: Option<String>,
    pub session_timeout: Option<String>,
    pub metrics_addr: Option<String>,
    #[serde(default)]
    pub consumer_properties: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub routes: Vec<RouteFile>,
}

/// One `[[ingest.routes]]` entry: a topic into a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub topic: String,
    pub table: String,
    /// Event schema file; a relative path is relative to the config file.
    pub schema: PathBuf,
    /// Consumer group (default: `[ingest].group`).
    pub group: Option<String>,
    /// Overrides `[ingest].evolve_schema` for this route.
    pub evolve_schema: Option<bool>,
    /// Overrides `[ingest].max_error_ratio` for this route.
    pub max_error_ratio: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3File {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub allow_http: Option<bool>,
    pub virtual_hosted_style: Option<bool>,
}

/// One level of settings (file, environment or flags).
#[derive(Debug, Default)]
pub struct Level {
    pub lake: Option<PathBuf>,
    pub warehouse: Option<String>,
    pub catalog: Option<String>,
}

/// Read `path` (or `./icefjord.toml` when it exists). Relative route schema paths
/// are resolved against the file's directory.
pub fn read_file(path: Option<&Path>) -> Result<FileConfig> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from("icefjord.toml"), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(FileConfig::default());
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read config file {}", path.display()))
        }
    };
    let mut file: FileConfig = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start].matches('\n').count() + 1)
            .unwrap_or(0);
        crate::exit::Usage::new(
            format!("config file {}", path.display()),
            format!("line {line}: {}", e.message()),
        )
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    for route in &mut file.ingest.routes {
        if route.schema.is_relative() {
            route.schema = dir.join(&route.schema);
        }
    }
    Ok(file)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The environment level: `ICEFJORD_LAKE`, `ICEFJORD_WAREHOUSE`, `ICEFJORD_CATALOG`.
pub fn env_level() -> Level {
    Level {
        lake: env("ICEFJORD_LAKE").map(PathBuf::from),
        warehouse: env("ICEFJORD_WAREHOUSE"),
        catalog: env("ICEFJORD_CATALOG"),
    }
}

/// Resolve the lake from the three levels (lowest first: file, env, flags).
pub fn resolve(file: &FileConfig, env_level: Level, flags: Level) -> Result<LakeConfig> {
    let file_level = Level {
        lake: file.lake.clone(),
        warehouse: file.warehouse.clone(),
        catalog: file.catalog.as_ref().map(|s| s.expose().to_string()),
    };
    let levels = [file_level, env_level, flags];
    let mut warehouse = Warehouse::Local(std::path::absolute("lake/warehouse")?);
    let mut catalog = CatalogUri::Sqlite(std::path::absolute("lake/catalog.db")?);
    for level in &levels {
        if let Some(dir) = &level.lake {
            let local = LakeConfig::local(dir)?;
            warehouse = local.warehouse;
            catalog = local.catalog;
        }
        if let Some(w) = &level.warehouse {
            warehouse = Warehouse::parse(w)?;
        }
        if let Some(c) = &level.catalog {
            catalog = CatalogUri::parse(c)?;
        }
    }
    let s3 = S3Options {
        endpoint: env("ICEFJORD_S3_ENDPOINT")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| file.s3.endpoint.clone()),
        region: env("AWS_REGION").or_else(|| file.s3.region.clone()),
        access_key_id: env("AWS_ACCESS_KEY_ID").or_else(|| file.s3.access_key_id.clone()),
        secret_access_key: env("AWS_SECRET_ACCESS_KEY")
            .map(Secret::new)
            .or_else(|| file.s3.secret_access_key.clone()),
        allow_http: env("ICEFJORD_S3_ALLOW_HTTP")
            .map(|v| v == "true" || v == "1")
            .or(file.s3.allow_http)
            .unwrap_or(false),
        virtual_hosted_style: file.s3.virtual_hosted_style.unwrap_or(false),
    };
    Ok(LakeConfig {
        warehouse,
        catalog,
        s3,
    })
}

/// `10s`, `500ms`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 10s, 500ms)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?} (ms, s, m, h)")),
    };
    std::time::Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_env_beat_file() {
        let file = FileConfig {
            warehouse: Some("s3://from-file/w".into()),
            catalog: Some(Secret::new("postgres://u:secret@db/lake")),
            ..Default::default()
        };
        let env = Level {
            warehouse: Some("s3://from-env/w".into()),
            ..Default::default()
        };
        let config = resolve(&file, env, Level::default()).unwrap();
        assert_eq!(config.warehouse.root_url(), "s3://from-env/w");
        assert!(matches!(config.catalog, CatalogUri::Postgres(_)));

        let flags = Level {
            lake: Some("/tmp/flag-lake".into()),
            ..Default::default()
        };
        let config = resolve(&FileConfig::default(), Level::default(), flags).unwrap();
        assert_eq!(
            config.warehouse.root_url(),
            "file:///tmp/flag-lake/warehouse"
        );
        assert_eq!(
            config.catalog.to_string(),
            "sqlite:///tmp/flag-lake/catalog.db"
        );
    }

    #[test]
    fn durations_take_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("2m").unwrap().as_secs(), 120);
        assert_eq!(parse_duration("3").unwrap().as_secs(), 3);
        assert!(parse_duration("10 parsecs").unwrap_err().contains("unit"));
        // Regression: from_secs_f64 panicked on a duration past u64 seconds.
        assert!(parse_duration("99999999999999999999999s").is_err());
    }

    #[test]
    fn unknown_keys_in_the_file_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("icefjord.toml");
        std::fs::write(&path, "warehouse = \"s3://b/p\"\nwarehose = 1\n").unwrap();
        let err = read_file(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("warehose"), "{err}");
    }
}
