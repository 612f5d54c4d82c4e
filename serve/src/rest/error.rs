//! Errors of the REST catalog in the spec's error model: an HTTP status and
//! `{"error": {"message", "type", "code"}}`, where `type` is the exception
//! name clients map to their own (PyIceberg's `NoSuchTableError`, Iceberg
//! Java's `NoSuchTableException`, …).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use icefjord_catalog::CatalogError;

use super::model::{ErrorModel, ErrorResponse};

/// A failed REST call.
#[derive(Debug)]
pub struct RestError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl RestError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
    }

    pub fn not_found(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, kind, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "NotAuthorizedException", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "ForbiddenException", message)
    }
}

impl From<CatalogError> for RestError {
    /// The spec's status for each failure: 404 for a missing namespace or
    /// table, 409 for a name taken or a commit whose requirements fail (the
    /// client reloads and retries), 400 for an invalid change, 403 for a
    /// location outside the warehouse, 503 for what retrying may fix.
    fn from(err: CatalogError) -> Self {
        let message = err.to_string();
        let (status, kind) = match &err {
            CatalogError::TableNotFound { .. } => (StatusCode::NOT_FOUND, "NoSuchTableException"),
            CatalogError::ViewNotFound { .. } => (StatusCode::NOT_FOUND, "NoSuchViewException"),
            CatalogError::ViewExists { .. } => (StatusCode::CONFLICT, "AlreadyExistsException"),
            CatalogError::ViewNotWritable { .. } => (StatusCode::FORBIDDEN, "ForbiddenException"),
            CatalogError::NamespaceNotFound { .. } => {
                (StatusCode::NOT_FOUND, "NoSuchNamespaceException")
            }
            CatalogError::TableExists { .. } | CatalogError::NamespaceExists { .. } => {
                (StatusCode::CONFLICT, "AlreadyExistsException")
            }
            CatalogError::UnknownRef { .. } => (StatusCode::NOT_FOUND, "NotFoundException"),
            CatalogError::RefNotWritable { .. } => (StatusCode::FORBIDDEN, "ForbiddenException"),
            CatalogError::RefExists { .. } => (StatusCode::CONFLICT, "AlreadyExistsException"),
            CatalogError::MergeConflict { .. } => (StatusCode::CONFLICT, "CommitFailedException"),
            CatalogError::NamespaceNotEmpty { .. } => {
                (StatusCode::CONFLICT, "NamespaceNotEmptyException")
            }
            CatalogError::RequirementFailed { .. }
            | CatalogError::Conflict { .. }
            | CatalogError::Refused { .. }
            | CatalogError::RetriesExhausted { .. } => {
                (StatusCode::CONFLICT, "CommitFailedException")
            }
            CatalogError::OutsideWarehouse { .. } => (StatusCode::FORBIDDEN, "ForbiddenException"),
            CatalogError::InvalidCommit { .. } | CatalogError::Config { .. } => {
                (StatusCode::BAD_REQUEST, "BadRequestException")
            }
            CatalogError::Iceberg(e) if e.kind() == iceberg::ErrorKind::DataInvalid => {
                (StatusCode::BAD_REQUEST, "BadRequestException")
            }
            other if other.is_retryable() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
            ),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "ServerErrorException"),
        };
        Self::new(status, kind, message)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "REST catalog call failed");
        }
        let body = ErrorResponse {
            error: ErrorModel {
                message: self.message,
                r#type: self.kind,
                code: self.status.as_u16(),
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// A request body that does not parse is the spec's 400, not axum's 422.
pub fn rejected(rejection: axum::extract::rejection::JsonRejection) -> RestError {
    RestError::bad_request(rejection.body_text())
}

pub type RestResult<T> = Result<T, RestError>;
