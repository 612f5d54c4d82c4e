//! Why a query failed, as the SQLSTATE a PostgreSQL server would give for the
//! same failure (PostgreSQL documentation, appendix A "Error Codes"), for both
//! front doors: the PostgreSQL wire sends the code as is (drivers and BI tools
//! react as they do to PostgreSQL: `57014` for a canceled query, `42P01` for a
//! missing table, `25006` for a write in a read-only session, `53200` for a
//! query over its memory pool), the HTTP API sends it in its JSON error with an
//! HTTP status chosen from it (`crate::http::error`).

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

use crate::error::ServeError;
use crate::execution::{is_resources_exhausted, Stopped};

pub const SYNTAX_ERROR: &str = "42601";
pub const INVALID_CURSOR_NAME: &str = "34000";
pub const INVALID_CURSOR_STATE: &str = "24000";
pub const DUPLICATE_CURSOR: &str = "42P03";
pub const UNDEFINED_TABLE: &str = "42P01";
pub const UNDEFINED_COLUMN: &str = "42703";
pub const UNDEFINED_FUNCTION: &str = "42883";
pub const UNDEFINED_PARAMETER: &str = "42P02";
pub const READ_ONLY_SQL_TRANSACTION: &str = "25006";
pub const QUERY_CANCELED: &str = "57014";
pub const ADMIN_SHUTDOWN: &str = "57P01";
pub const OUT_OF_MEMORY: &str = "53200";
pub const TOO_MANY_CONNECTIONS: &str = "53300";
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
pub const DIVISION_BY_ZERO: &str = "22012";
pub const DATETIME_FIELD_OVERFLOW: &str = "22008";
pub const INVALID_PARAMETER_VALUE: &str = "22023";
pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
pub const INVALID_AUTHORIZATION: &str = "28000";
pub const NO_DATA: &str = "02000";
pub const CARDINALITY_VIOLATION: &str = "21000";
pub const IO_ERROR: &str = "58030";
pub const INTERNAL_ERROR: &str = "XX000";

/// A failure with its SQLSTATE and a message for the client (never a secret:
/// the messages are those of our errors, whose secrets print as `***`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn parser(e: &ParserError) -> Self {
        Self::new(SYNTAX_ERROR, format!("syntax error: {e}"))
    }

    /// A query that failed while planning or running.
    pub fn datafusion(e: &DataFusionError) -> Self {
        if let Some(stopped) = Stopped::of(e) {
            let code = match stopped {
                Stopped::Canceled | Stopped::Timeout => QUERY_CANCELED,
                Stopped::Shutdown => ADMIN_SHUTDOWN,
            };
            return Self::new(code, stopped.to_string());
        }
        if is_resources_exhausted(e) {
            return Self::new(
                OUT_OF_MEMORY,
                format!("the query went over its memory limit: {e}"),
            );
        }
        let message = e.to_string();
        Self::new(code_of(e, &message), message)
    }

    /// One of our errors.
    pub fn serve(e: &ServeError) -> Self {
        match e {
            ServeError::Query(q) => Self::datafusion(q),
            ServeError::Sql(icefjord_sql::SqlError::Query(q)) => Self::datafusion(q),
            ServeError::Sql(icefjord_sql::SqlError::Version { .. }) => {
                Self::new(INVALID_PARAMETER_VALUE, e.to_string())
            }
            ServeError::Sql(icefjord_sql::SqlError::Statements { .. }) => {
                Self::new(SYNTAX_ERROR, e.to_string())
            }
            ServeError::Engine(icefjord_engine::EngineError::Query(q)) => Self::datafusion(q),
            ServeError::Catalog(icefjord_catalog::CatalogError::TableNotFound { .. }) => {
                Self::new(UNDEFINED_TABLE, e.to_string())
            }
            ServeError::Catalog(icefjord_catalog::CatalogError::UnknownRef { .. }) => {
                Self::new(INVALID_PARAMETER_VALUE, e.to_string())
            }
            e if e.is_retryable() => Self::new(IO_ERROR, e.to_string()),
            e => Self::new(INTERNAL_ERROR, e.to_string()),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

fn code_of(e: &DataFusionError, message: &str) -> &'static str {
    match e {
        DataFusionError::SQL(_, _) => SYNTAX_ERROR,
        DataFusionError::NotImplemented(_) => FEATURE_NOT_SUPPORTED,
        DataFusionError::Context(_, inner) => code_of(inner, message),
        DataFusionError::Shared(inner) => code_of(inner, message),
        DataFusionError::Diagnostic(_, inner) => code_of(inner, message),
        DataFusionError::Plan(_) | DataFusionError::SchemaError(_, _) => {
            if message.contains("table '") && message.contains("not found") {
                UNDEFINED_TABLE
            } else if message.contains("No field named") || message.contains("not found") {
                UNDEFINED_COLUMN
            } else if message.contains("Invalid function") {
                UNDEFINED_FUNCTION
            } else if message.contains("DDL not supported")
                || message.contains("DML not supported")
                || message.contains("Statement not supported")
            {
                READ_ONLY_SQL_TRANSACTION
            } else {
                SYNTAX_ERROR
            }
        }
        _ if message.contains("overflow") => NUMERIC_VALUE_OUT_OF_RANGE,
        // A date or time outside what the engine represents (e.g. a year-300
        // date compared with a nanosecond timestamp).
        _ if message.contains("exceeds the representable") => DATETIME_FIELD_OVERFLOW,
        _ if message.contains("Divide by zero") => DIVISION_BY_ZERO,
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => IO_ERROR,
        _ => INTERNAL_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: &DataFusionError) -> &'static str {
        Failure::datafusion(e).code
    }

    #[test]
    fn stopped_queries_are_57014() {
        let e = DataFusionError::External(Box::new(Stopped::Canceled));
        assert_eq!(code(&e), QUERY_CANCELED);
        let e = DataFusionError::Context(
            "x".into(),
            Box::new(DataFusionError::External(Box::new(Stopped::Timeout))),
        );
        assert_eq!(code(&e), QUERY_CANCELED);
    }

    #[test]
    fn missing_table_and_column() {
        let e = DataFusionError::Plan("table 'icefjord.raw.nope' not found".into());
        assert_eq!(code(&e), UNDEFINED_TABLE);
        let e = DataFusionError::Plan("No field named x.".into());
        assert_eq!(code(&e), UNDEFINED_COLUMN);
    }

    #[test]
    fn values_out_of_range_are_data_exceptions() {
        let e = DataFusionError::Context(
            "Optimizer rule 'simplify_expressions' failed".into(),
            Box::new(DataFusionError::Execution(
                "Cannot cast Date32 value -602108 to Timestamp(ns): converted value exceeds the \
                 representable i64 range"
                    .into(),
            )),
        );
        assert_eq!(code(&e), DATETIME_FIELD_OVERFLOW);
    }

    #[test]
    fn memory_pool() {
        let e = DataFusionError::ResourcesExhausted("pool".into());
        assert_eq!(code(&e), OUT_OF_MEMORY);
    }
}
