//! Errors of the HTTP API: `{"error": {"code": "<SQLSTATE>", "message": "…"}}`
//! with the SQLSTATE of [`crate::sqlstate`] (the one the PostgreSQL wire would
//! send for the same failure) and an HTTP status chosen from it:
//!
//! | status | when | SQLSTATE |
//! |---|---|---|
//! | 400 | bad SQL, bad parameters, bad request body or query string, a session statement (`SET`, cursors) | 42601, 42703, 42883, 42P02, 22xxx, 0A000 |
//! | 401 | missing or wrong bearer token (with `WWW-Authenticate: Bearer`) | 28000 |
//! | 403 | a statement that is not read-only (DDL, DML, `COPY`, …) | 25006 |
//! | 404 | unknown table (in a query too), unknown path, a `returns = "row"` endpoint without a row | 42P01, 02000 |
//! | 500 | anything else (a bug: the message says what) | XX000, 21000 |
//! | 503 | too many queries at once or shutting down (with `Retry-After`), catalog or storage unreachable | 53300, 57P01, 58030 |
//! | 504 | the query ran past the server's `--query-timeout` | 57014 |
//! | 507 | the query went over its memory pool (`--query-memory-mib`); chosen over 413, which is about the request's size | 53200 |
//!
//! An error after the first rows were sent cannot change the status: the
//! response body is cut off (the HTTP/1.1 chunked stream ends without its last
//! chunk), which clients report as an incomplete transfer.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::sqlstate::{self, Failure};

/// Seconds a client is asked to wait before retrying a 503.
const RETRY_AFTER_SECONDS: &str = "1";

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The SQLSTATE a PostgreSQL server would give, e.g. `42P01`.
    #[schema(example = "42P01")]
    pub code: String,
    #[schema(example = "table 'icefjord.raw.nope' not found")]
    pub message: String,
}

/// The errors of a route that runs a query, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only described, never built
pub enum QueryErrors {
    /// Bad SQL, bad parameters, a bad body or query string, a session statement.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Not a read-only statement (DDL, DML, COPY, …): SQLSTATE 25006.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// A table the query names does not exist (42P01), or a one-row endpoint found no row (02000).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// A bug, or a one-row endpoint whose query gave several rows.
    #[response(status = 500)]
    Internal(ErrorBody),
    /// Too many queries at once, shutting down, or the catalog or storage unreachable: retry (Retry-After).
    #[response(status = 503, headers(("Retry-After" = u32, description = "Seconds to wait")))]
    Unavailable(ErrorBody),
    /// The query ran past the server's timeout (57014).
    #[response(status = 504)]
    Timeout(ErrorBody),
    /// The query went over its memory pool (53200).
    #[response(status = 507)]
    OverMemory(ErrorBody),
}

/// The errors of a route that reads the catalog, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only described, never built
pub enum CatalogErrors {
    /// The catalog or storage is unreachable: retry (Retry-After).
    #[response(status = 503, headers(("Retry-After" = u32, description = "Seconds to wait")))]
    Unavailable(ErrorBody),
    /// A bug: the message says what.
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    failure: Failure,
}

impl ApiError {
    pub fn new(status: StatusCode, failure: Failure) -> Self {
        Self { status, failure }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Failure::new(sqlstate::INVALID_PARAMETER_VALUE, message).into()
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Failure::new(sqlstate::UNDEFINED_TABLE, message),
        )
    }

    pub fn unauthorized() -> Self {
        Failure::new(
            sqlstate::INVALID_AUTHORIZATION,
            "a bearer token is required (Authorization: Bearer <token>)",
        )
        .into()
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn failure(&self) -> &Failure {
        &self.failure
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        Self {
            status: status_of(failure.code),
            failure,
        }
    }
}

impl From<&crate::error::ServeError> for ApiError {
    fn from(e: &crate::error::ServeError) -> Self {
        Failure::serve(e).into()
    }
}

/// The HTTP status for a SQLSTATE (the table of the module docs).
pub fn status_of(code: &str) -> StatusCode {
    match code {
        sqlstate::INVALID_AUTHORIZATION => StatusCode::UNAUTHORIZED,
        sqlstate::READ_ONLY_SQL_TRANSACTION => StatusCode::FORBIDDEN,
        sqlstate::UNDEFINED_TABLE | sqlstate::NO_DATA => StatusCode::NOT_FOUND,
        sqlstate::QUERY_CANCELED => StatusCode::GATEWAY_TIMEOUT,
        sqlstate::OUT_OF_MEMORY => StatusCode::INSUFFICIENT_STORAGE,
        sqlstate::TOO_MANY_CONNECTIONS | sqlstate::ADMIN_SHUTDOWN | sqlstate::IO_ERROR => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        sqlstate::INTERNAL_ERROR | sqlstate::CARDINALITY_VIOLATION => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        // Syntax errors and access rule violations (42), data exceptions (22),
        // feature not supported (0A): the request is at fault.
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.failure.code.to_string(),
                message: self.failure.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match self.status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_table() {
        for (code, status) in [
            (sqlstate::SYNTAX_ERROR, 400),
            (sqlstate::INVALID_TEXT_REPRESENTATION, 400),
            (sqlstate::FEATURE_NOT_SUPPORTED, 400),
            (sqlstate::INVALID_AUTHORIZATION, 401),
            (sqlstate::READ_ONLY_SQL_TRANSACTION, 403),
            (sqlstate::UNDEFINED_TABLE, 404),
            (sqlstate::INTERNAL_ERROR, 500),
            (sqlstate::TOO_MANY_CONNECTIONS, 503),
            (sqlstate::IO_ERROR, 503),
            (sqlstate::QUERY_CANCELED, 504),
            (sqlstate::OUT_OF_MEMORY, 507),
        ] {
            assert_eq!(status_of(code).as_u16(), status, "{code}");
        }
    }
}
