//! Errors of `icefjord serve`: start-up refusals (exit 2) and failures while
//! serving. Each says whether retrying may help ([`ServeError::is_retryable`]).

use std::path::PathBuf;

pub type Result<T, E = ServeError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A flag, variable or file that DESIGN §6 does not allow, named.
    #[error("invalid setting {setting}: {message}")]
    Config { setting: String, message: String },
    /// The TLS certificate or key does not load: start-up stops (no plain-text
    /// fallback).
    #[error("TLS file {path}: {message}")]
    Tls { path: PathBuf, message: String },
    /// A listener could not bind its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// A pipeline folder given with `--pipeline` (its `[[endpoints]]`, or
    /// the pipeline itself) is invalid: the error names file, line and field.
    #[error(transparent)]
    Spec(#[from] icefjord_runner::SpecError),
    #[error(transparent)]
    Engine(#[from] icefjord_engine::EngineError),
    #[error(transparent)]
    Catalog(#[from] icefjord_catalog::CatalogError),
    #[error(transparent)]
    Sql(#[from] icefjord_sql::SqlError),
    #[error("{0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl ServeError {
    /// Whether the same call may succeed when tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Engine(e) => e.is_retryable(),
            Self::Catalog(e) => e.is_retryable(),
            Self::Sql(e) => e.is_retryable(),
            Self::Bind { .. } | Self::Io(_) => true,
            _ => false,
        }
    }

    /// Whether this is a start-up refusal the user fixes by changing a setting.
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::Config { .. } | Self::Tls { .. } | Self::Spec(_))
    }
}
