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

/// Read `path` (or `./icefjord.toml` when it exists).
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
    toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start].matches('\n').count() + 1)
            .unwrap_or(0);
        anyhow::anyhow!(
            "config file {}, line {line}: {}",
            path.display(),
            e.message()
        )
    })
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
pub fn resolve(file: FileConfig, env_level: Level, flags: Level) -> Result<LakeConfig> {
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
            .or(file.s3.endpoint),
        region: env("AWS_REGION").or(file.s3.region),
        access_key_id: env("AWS_ACCESS_KEY_ID").or(file.s3.access_key_id),
        secret_access_key: env("AWS_SECRET_ACCESS_KEY")
            .map(Secret::new)
            .or(file.s3.secret_access_key),
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
        let config = resolve(file, env, Level::default()).unwrap();
        assert_eq!(config.warehouse.root_url(), "s3://from-env/w");
        assert!(matches!(config.catalog, CatalogUri::Postgres(_)));

        let flags = Level {
            lake: Some("/tmp/flag-lake".into()),
            ..Default::default()
        };
        let config = resolve(FileConfig::default(), Level::default(), flags).unwrap();
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
    fn unknown_keys_in_the_file_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("icefjord.toml");
        std::fs::write(&path, "warehouse = \"s3://b/p\"\nwarehose = 1\n").unwrap();
        let err = read_file(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("warehose"), "{err}");
    }
}
