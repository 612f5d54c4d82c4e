//! Errors of the query front doors.

pub type Result<T, E = SqlError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error(transparent)]
    Engine(#[from] icefjord_engine::EngineError),
    #[error("{0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// A run of user SQL held no statement or several (one query at a time).
    #[error("expected one SQL statement, found {count}")]
    Statements { count: usize },
    /// A table version clause (`VERSION AS OF`, `TIMESTAMP AS OF`, …) that does
    /// not name a version of a lake table: `clause` as written, and why.
    #[error("{table} {clause}: {message}")]
    Version {
        table: String,
        clause: String,
        message: String,
    },
    #[error("formatting results: {0}")]
    Format(#[from] arrow::error::ArrowError),
    #[error("writing results: {0}")]
    Output(std::io::Error),
}

impl SqlError {
    /// Whether the same call may succeed when tried again later (a service was
    /// unavailable); a bad query or version clause never does.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Engine(e) => e.is_retryable(),
            // A catalog or engine error behind a planning error (e.g. storage
            // unavailable while a table was resolved).
            Self::Query(e) => match e.find_root() {
                datafusion::error::DataFusionError::External(inner) => {
                    if let Some(e) = inner.downcast_ref::<icefjord_engine::EngineError>() {
                        e.is_retryable()
                    } else {
                        inner
                            .downcast_ref::<icefjord_catalog::CatalogError>()
                            .is_some_and(|e| e.is_retryable())
                    }
                }
                _ => false,
            },
            _ => false,
        }
    }
}
