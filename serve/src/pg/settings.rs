//! `SET search_path` as PostgreSQL takes it: identifiers or strings, one or
//! a list (`SET search_path TO unified, public`). The `SET` hook of
//! `datafusion-postgres` keeps only a single string literal, so `SET
//! search_path = unified` (what BI tools send) would be lost; this comes first.
//! The value is kept in the connection's metadata, where
//! [`super::handler`] reads it for every session.

use datafusion::sql::sqlparser::ast::{Expr, Set, Statement, Value};
use datafusion_postgres::hooks::HookClient;
use std::sync::Arc;

use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::Type;

use super::sqlstate;
use crate::pg_catalog::SERVER_VERSION;
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

/// The client metadata key the `SET TIME ZONE` hook and our sessions read.
const TIME_ZONE: &str = "timezone";

/// `SET timezone = 'Europe/Oslo'`, `SET TimeZone TO …` and `SET TIME ZONE …`:
/// the zone is checked (an unknown one is 22023, as PostgreSQL answers), kept
/// for the connection's sessions and reported as the `TimeZone` parameter.
pub async fn set_time_zone(
    client: &mut (dyn HookClient + Send + Sync),
    statement: &Statement,
) -> Option<PgWireResult<Response>> {
    let value = match statement {
        Statement::Set(Set::SingleAssignment {
            variable, values, ..
        }) if variable.to_string().eq_ignore_ascii_case("timezone") => values.first()?,
        Statement::Set(Set::SetTimeZone { value, .. }) => value,
        _ => return None,
    };
    let zone = match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(ident) => ident.value.clone(),
        other => other.to_string(),
    };
    let zone = if zone.eq_ignore_ascii_case("local") || zone.eq_ignore_ascii_case("default") {
        "UTC".to_string()
    } else {
        zone
    };
    if zone
        .parse::<datafusion::arrow::array::timezone::Tz>()
        .is_err()
    {
        return Some(Err(sqlstate::error(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("invalid value for parameter \"TimeZone\": \"{zone}\""),
        )));
    }
    client
        .metadata_mut()
        .insert(TIME_ZONE.to_string(), zone.clone());
    if let Err(e) = client
        .send_message(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
            "TimeZone".to_string(),
            zone,
        )))
        .await
    {
        return Some(Err(e));
    }
    Some(Ok(Response::Execution(Tag::new("SET"))))
}

/// The client metadata key and setting name of the session's branch.
pub const BRANCH: &str = "icefjord.branch";

/// `SET icefjord.branch = 'dev'` (or `TO main`, `DEFAULT`): later queries of
/// the connection read that catalog-wide branch or tag. An unknown one is
/// 22023, as PostgreSQL answers an invalid parameter value.
pub async fn set_branch(
    client: &mut (dyn HookClient + Send + Sync),
    statement: &Statement,
    lake: &icefjord_catalog::LakeCatalog,
) -> Option<PgWireResult<Response>> {
    let Statement::Set(Set::SingleAssignment {
        variable, values, ..
    }) = statement
    else {
        return None;
    };
    if !variable.to_string().eq_ignore_ascii_case(BRANCH) {
        return None;
    }
    let name = match values.first()? {
        Expr::Identifier(ident) => ident.value.clone(),
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    };
    let name = match name.eq_ignore_ascii_case("default") {
        true => icefjord_catalog::MAIN.to_string(),
        false => name,
    };
    if let Err(e) = lake.on_ref(&name).await {
        return Some(Err(sqlstate::error(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("invalid value for parameter \"{BRANCH}\": {e}"),
        )));
    }
    client.metadata_mut().insert(BRANCH.to_string(), name);
    Some(Ok(Response::Execution(Tag::new("SET"))))
}

/// `SHOW` of the settings drivers and tools read, answered as PostgreSQL
/// [`SERVER_VERSION`] answers them; `None` for the others (the hook's).
pub fn show(client: &(dyn HookClient + Send + Sync), statement: &Statement) -> Option<Response> {
    let Statement::ShowVariable { variable } = statement else {
        return None;
    };
    let name = variable
        .iter()
        .map(|ident| ident.value.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    let value = match name.as_str() {
        "server_version" => SERVER_VERSION.to_string(),
        "server_version_num" => SERVER_VERSION_NUM.to_string(),
        "timezone" | "time zone" => client
            .metadata()
            .get(TIME_ZONE)
            .cloned()
            .unwrap_or_else(|| "UTC".into()),
        "icefjord.branch" | "icefjord branch" => client
            .metadata()
            .get(BRANCH)
            .cloned()
            .unwrap_or_else(|| icefjord_catalog::MAIN.into()),
        "standard_conforming_strings" | "integer_datetimes" => "on".into(),
        "transaction_read_only" | "default_transaction_read_only" => "on".into(),
        "client_encoding" | "server_encoding" => "UTF8".into(),
        "transaction_isolation" | "transaction isolation level" => "read committed".into(),
        _ => return None,
    };
    let column = match name.as_str() {
        "time zone" => "TimeZone".to_string(),
        "transaction isolation level" => "transaction_isolation".to_string(),
        other => other.to_string(),
    };
    let fields = Arc::new(vec![FieldInfo::new(
        column,
        None,
        None,
        Type::TEXT,
        FieldFormat::Text,
    )]);
    let mut encoder = DataRowEncoder::new(fields.clone());
    if let Err(e) = encoder.encode_field(&Some(value)) {
        return Some(Response::Error(Box::new(e.into())));
    }
    let row = encoder.take_row();
    Some(Response::Query(QueryResponse::new(
        fields,
        futures::stream::once(async move { Ok(row) }),
    )))
}

/// `server_version_num` of [`SERVER_VERSION`].
const SERVER_VERSION_NUM: &str = "160000";
