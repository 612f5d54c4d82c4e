//! Errors of the query front doors.

pub type Result<T, E = SqlError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error(transparent)]
    Engine(#[from] icefjord_engine::EngineError),
    #[error("{0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("formatting results: {0}")]
    Format(#[from] arrow::error::ArrowError),
    #[error("writing results: {0}")]
    Output(std::io::Error),
}
