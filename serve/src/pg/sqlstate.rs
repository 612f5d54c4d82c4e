//! Our errors as PostgreSQL error responses: the SQLSTATE of
//! [`crate::sqlstate`] (shared with the HTTP API) in an `ERROR` or `FATAL`
//! message.

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use pgwire::error::{ErrorInfo, PgWireError};

pub use crate::sqlstate::*;

use crate::error::ServeError;

/// An `ERROR` response.
pub fn error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

/// A `FATAL` response (the connection ends).
pub fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

impl From<Failure> for PgWireError {
    fn from(failure: Failure) -> Self {
        error(failure.code, failure.message)
    }
}

pub fn from_parser(e: &ParserError) -> PgWireError {
    Failure::parser(e).into()
}

/// The response for a query that failed while planning or running.
pub fn from_datafusion(e: &DataFusionError) -> PgWireError {
    Failure::datafusion(e).into()
}

/// The response for one of our errors.
pub fn from_serve(e: &ServeError) -> PgWireError {
    Failure::serve(e).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::Stopped;

    #[test]
    fn the_shared_code_is_the_error_code() {
        let e = DataFusionError::External(Box::new(Stopped::Timeout));
        match from_datafusion(&e) {
            PgWireError::UserError(info) => {
                assert_eq!(info.code, QUERY_CANCELED);
                assert_eq!(info.severity, "ERROR");
            }
            other => panic!("not a user error: {other}"),
        }
    }
}
