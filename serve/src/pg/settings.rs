//! `SET search_path` as PostgreSQL takes it: identifiers or strings, one or
//! a list (`SET search_path TO unified, public`). The `SET` hook of
//! `datafusion-postgres` keeps only a single string literal, so `SET
//! search_path = unified` (what BI tools send) would be lost; this comes first.
//! The value is kept in the connection's metadata, where
//! [`super::handler`] reads it for every session.

use datafusion::sql::sqlparser::ast::{Expr, Set, Statement, Value};
use datafusion_postgres::hooks::HookClient;
use pgwire::api::results::{Response, Tag};
use pgwire::error::PgWireResult;
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::PgWireBackendMessage;

/// The client metadata key of `search_path` (shared with the hook's `SHOW`).
pub const SEARCH_PATH: &str = "search_path";

/// Answer `SET search_path …`, or `None` for any other statement.
pub async fn set_search_path(
    client: &mut (dyn HookClient + Send + Sync),
    statement: &Statement,
) -> Option<PgWireResult<Response>> {
    let Statement::Set(Set::SingleAssignment {
        variable, values, ..
    }) = statement
    else {
        return None;
    };
    if !variable.to_string().eq_ignore_ascii_case(SEARCH_PATH) {
        return None;
    }
    let schemas: Vec<String> = values
        .iter()
        .map(|value| match value {
            Expr::Identifier(ident) => ident.value.clone(),
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            other => other.to_string(),
        })
        .collect();
    let path = schemas.join(", ");
    client
        .metadata_mut()
        .insert(SEARCH_PATH.to_string(), path.clone());
    if let Err(e) = client
        .send_message(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
            SEARCH_PATH.to_string(),
            path,
        )))
        .await
    {
        return Some(Err(e));
    }
    Some(Ok(Response::Execution(Tag::new("SET"))))
}
