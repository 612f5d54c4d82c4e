//! Errors of the runner, with what the CLI's exit code needs to know.

use icefjord_catalog::CatalogError;
use icefjord_engine::EngineError;

use crate::spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The pipeline spec is wrong (exit 2): file, line, model and field.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A flag is wrong (exit 2), e.g. `--select` of an unknown model.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("query: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// An `incremental_by_key` model with `merge = "replace"` yielded one key
    /// twice in a run's new rows (see `merge.rs`); `key` is `a = 1, b = NULL`.
    #[error("model {model}: key ({key}) occurs more than once in this run's new rows; merge = \"replace\" needs one row per key")]
    RepeatedKey { model: String, key: String },
    /// A Rust transform failed outright (a bug, not bad input).
    #[error("transform {transform}: {message}")]
    Transform { transform: String, message: String },
}

impl RunnerError {
    /// Retrying may help (a service was unavailable).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Catalog(e) => e.is_retryable(),
            Self::Engine(e) => e.is_retryable(),
            _ => false,
        }
    }
}

pub type Result<T, E = RunnerError> = std::result::Result<T, E>;
