//! Where a lake lives: a warehouse location (local directory or `s3://bucket/prefix`)
//! and a catalog database (SQLite file or PostgreSQL). Parsed once, at the edge, into
//! these types; secrets are wrapped in [`Secret`] so they never reach logs or output.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{CatalogError, Result};

/// A value that must never be printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for handing to a client library. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the secret, compared in time independent of
    /// where the first difference is (a password or token check).
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where table data and metadata files are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warehouse {
    /// A directory on local disk (absolute).
    Local(PathBuf),
    /// A bucket and key prefix on an S3-compatible store.
    S3 { bucket: String, prefix: String },
}

impl Warehouse {
    /// Parse `s3://bucket/prefix`, `file:///abs/dir` or a plain directory path
    /// (made absolute against the current directory).
    pub fn parse(value: &str) -> Result<Self> {
        let invalid = |message: String| CatalogError::Config {
            field: "warehouse".into(),
            message,
        };
        if let Some(rest) = value
            .strip_prefix("s3://")
            .or_else(|| value.strip_prefix("s3a://"))
        {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid(format!("{value:?} names no bucket")));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        let path = if value.starts_with("file:") {
            url::Url::parse(value)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .ok_or_else(|| invalid(format!("{value:?} is not a valid file URL")))?
        } else if value.contains("://") {
            return Err(invalid(format!(
                "{value:?}: only s3:// and local directories are supported"
            )));
        } else {
            PathBuf::from(value)
        };
        Ok(Self::Local(absolute(&path)?))
    }

    /// The warehouse root as a URL string without a trailing slash: `file:///abs/dir`
    /// or `s3://bucket/prefix`. Table locations are `<root>/<namespace>/<table>`.
    pub fn root_url(&self) -> String {
        match self {
            Self::Local(dir) => {
                let url = url::Url::from_directory_path(dir)
                    .map(|u| u.to_string())
                    .unwrap_or_else(|_| format!("file://{}", dir.display()));
                url.trim_end_matches('/').to_string()
            }
            Self::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            Self::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }
}

impl fmt::Display for Warehouse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.root_url())
    }
}

/// The catalog database.
#[derive(Clone, PartialEq, Eq)]
pub enum CatalogUri {
    /// A SQLite file (created when missing).
    Sqlite(PathBuf),
    /// A PostgreSQL server; the URL may hold a password, so it is never displayed whole.
    Postgres(Secret),
}

impl CatalogUri {
    /// Parse `sqlite:///abs/file.db`, `sqlite://relative.db`, `postgres://…` or `postgresql://…`.
    pub fn parse(value: &str) -> Result<Self> {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            url::Url::parse(value).map_err(|e| CatalogError::Config {
                field: "catalog".into(),
                message: format!("not a valid PostgreSQL URL: {e}"),
            })?;
            return Ok(Self::Postgres(Secret::new(value)));
        }
        if let Some(rest) = value.strip_prefix("sqlite://") {
            let path = rest.split('?').next().unwrap_or(rest);
            if path.is_empty() {
                return Err(CatalogError::Config {
                    field: "catalog".into(),
                    message: "sqlite:// URL names no file".into(),
                });
            }
            return Ok(Self::Sqlite(absolute(Path::new(path))?));
        }
        Err(CatalogError::Config {
            field: "catalog".into(),
            message: format!(
                "{:?}: expected sqlite://FILE or postgres://…",
                redact_url(value)
            ),
        })
    }

    /// The URL handed to the database driver (holds the password: never log it).
    pub(crate) fn connect_url(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}?mode=rwc", path.display()),
            Self::Postgres(url) => url.expose().to_string(),
        }
    }
}

impl fmt::Display for CatalogUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => f.write_str(&redact_url(url.expose())),
        }
    }
}

impl fmt::Debug for CatalogUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A URL with its password replaced by `***`.
pub fn redact_url(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => value.to_string(),
    }
}

/// Settings of an S3-compatible object store (MinIO, AWS, …). Credentials come from
/// the environment or a config file, never from job specs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// Plain-HTTP endpoints (a loopback MinIO); off unless asked for.
    pub allow_http: bool,
    /// Virtual-hosted–style requests; path style (what MinIO wants) is the default.
    pub virtual_hosted_style: bool,
}

/// A lake: a warehouse plus the catalog that indexes its tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LakeConfig {
    pub warehouse: Warehouse,
    pub catalog: CatalogUri,
    pub s3: S3Options,
}

impl LakeConfig {
    /// The embedded default for a lake directory: `DIR/catalog.db` + `DIR/warehouse/`.
    pub fn local(dir: &Path) -> Result<Self> {
        let dir = absolute(dir)?;
        Ok(Self {
            warehouse: Warehouse::Local(dir.join("warehouse")),
            catalog: CatalogUri::Sqlite(dir.join("catalog.db")),
            s3: S3Options::default(),
        })
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| CatalogError::Config {
        field: "path".into(),
        message: format!("{}: {e}", path.display()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_and_display() {
        let uri = CatalogUri::parse("postgres://icefjord:hunter2@db:5432/lake").unwrap();
        assert!(!format!("{uri}").contains("hunter2"));
        assert!(!format!("{uri:?}").contains("hunter2"));
        assert!(format!("{}", Secret::new("hunter2")) == "***");
    }

    #[test]
    fn warehouse_urls_parse() {
        assert_eq!(
            Warehouse::parse("s3://lake/prod/").unwrap(),
            Warehouse::S3 {
                bucket: "lake".into(),
                prefix: "prod".into()
            }
        );
        assert!(Warehouse::parse("s3:///x").is_err());
        assert!(Warehouse::parse("gs://x").is_err());
        let local = Warehouse::parse("/tmp/wh").unwrap();
        assert_eq!(local.root_url(), "file:///tmp/wh");
    }

    #[test]
    fn catalog_uri_rejects_unknown_schemes() {
        let err = CatalogUri::parse("mysql://u:pw@h/db")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected sqlite"), "{err}");
        assert!(!err.contains("pw@"), "{err}");
    }
}
