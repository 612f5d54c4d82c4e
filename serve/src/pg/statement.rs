//! SQL text from a PostgreSQL client into statements we may run: the parser
//! and classification shared with the HTTP API ([`crate::statement`]), with
//! refusals as PostgreSQL error responses (SQLSTATE 25006, as PostgreSQL
//! refuses a write in a read-only transaction).

use pgwire::error::PgWireError;

pub use crate::statement::{kind, Kind, StatementParser};

/// The error for a refused statement.
pub fn refusal(message: String) -> PgWireError {
    crate::statement::refusal(message).into()
}
