//! Exit codes, stable for scripts, Airflow and CronJobs:
//! 0 ok · 1 the command failed (bad query, job failure) · 2 usage or configuration
//! error · 3 an external service was unavailable (retrying may help).

use icefjord_catalog::CatalogError;
use icefjord_engine::EngineError;
use icefjord_sql::SqlError;

pub const OK: i32 = 0;
pub const FAILED: i32 = 1;
pub const USAGE: i32 = 2;
pub const UNAVAILABLE: i32 = 3;

/// A flag, environment variable or config entry that is missing or invalid.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {field}: {message}")]
pub struct Usage {
    pub field: String,
    pub message: String,
}

impl Usage {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A job run ended with a failed model or audit (exit 1); the report was printed.
#[derive(Debug, thiserror::Error)]
#[error("pipeline {pipeline} failed: {message}")]
pub struct JobFailed {
    pub pipeline: String,
    pub message: String,
}

/// The exit code for an error that ended a command.
pub fn code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.downcast_ref::<Usage>().is_some() {
            return USAGE;
        }
        if let Some(e) = cause.downcast_ref::<CatalogError>() {
            return catalog(e);
        }
        if let Some(e) = cause.downcast_ref::<icefjord_serve::ServeError>() {
            return match e {
                icefjord_serve::ServeError::Catalog(c) => catalog(c),
                icefjord_serve::ServeError::Engine(c) => engine(c),
                e if e.is_usage() => USAGE,
                e if e.is_retryable() => UNAVAILABLE,
                _ => FAILED,
            };
        }
        if let Some(e) = cause.downcast_ref::<EngineError>() {
            return engine(e);
        }
        if let Some(SqlError::Engine(e)) = cause.downcast_ref::<SqlError>() {
            return engine(e);
        }
        if let Some(e) = cause.downcast_ref::<icefjord_sink::SinkError>() {
            return match e {
                icefjord_sink::SinkError::Catalog(c) => catalog(c),
                icefjord_sink::SinkError::Engine(c) => engine(c),
                icefjord_sink::SinkError::Config { .. } => USAGE,
                e if e.is_retryable() => UNAVAILABLE,
                _ => FAILED,
            };
        }
        if let Some(e) = cause.downcast_ref::<icefjord_runner::RunnerError>() {
            return match e {
                icefjord_runner::RunnerError::Spec(_) | icefjord_runner::RunnerError::Usage(_) => {
                    USAGE
                }
                icefjord_runner::RunnerError::Catalog(c) => catalog(c),
                icefjord_runner::RunnerError::Engine(c) => engine(c),
                e if e.is_retryable() => UNAVAILABLE,
                _ => FAILED,
            };
        }
        if cause.downcast_ref::<icefjord_runner::SpecError>().is_some() {
            return USAGE;
        }
        if cause.downcast_ref::<toml::de::Error>().is_some() {
            return USAGE;
        }
    }
    FAILED
}

fn engine(e: &EngineError) -> i32 {
    if matches!(e, EngineError::InvalidSchema { .. }) {
        return USAGE;
    }
    match e.catalog_error() {
        Some(c) => catalog(c),
        None if e.is_retryable() => UNAVAILABLE,
        None => FAILED,
    }
}

fn catalog(e: &CatalogError) -> i32 {
    match e {
        CatalogError::Config { .. }
        | CatalogError::UnknownRef { .. }
        | CatalogError::RefExists { .. }
        | CatalogError::RefNotWritable { .. }
        | CatalogError::NameTaken { .. } => USAGE,
        e if e.is_retryable() => UNAVAILABLE,
        _ => FAILED,
    }
}
