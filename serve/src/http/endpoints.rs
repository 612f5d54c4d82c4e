//! Named insight endpoints: the `[[endpoints]]` of the pipeline folders given
//! with `--pipeline` ([`icefjord_runner::endpoint`]), each served as
//! `GET <path>?<param>=<value>…` and described in the OpenAPI document with
//! its typed parameters.
//!
//! - Parameters come from the query string, typed by their declaration
//!   (`?top=5&since=2024-01-01T00:00:00Z`); an unknown, repeated, missing
//!   required or ill-typed parameter is 400. An absent optional parameter is
//!   its default, or SQL NULL.
//! - `format` is every endpoint's result format (as for `/v1/query`); a
//!   parameter may not be called `format`.
//! - `returns = "rows"` answers like `/v1/query`; `returns = "row"` answers
//!   the one row as a JSON object (`{"active_users": 42}`), 404 without a row.
//! - Loading refuses, naming file, line and field: a spec the runner refuses,
//!   a path of the API itself or of another endpoint, SQL that is not one
//!   read-only query.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use datafusion::sql::sqlparser::ast::Statement;
use icefjord_runner::endpoint::{Endpoint, ParamType, ParamValue, Returns};
use icefjord_runner::Pipeline;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::{
    ContentBuilder, KnownFormat, ObjectBuilder, Required, ResponseBuilder, ResponsesBuilder,
    SchemaFormat, Type,
};
use utoipa::IntoParams;

use super::auth::Caller;
use super::error::{ApiError, QueryErrors};
use super::formats;
use super::query::{Admitted, FormatQuery};
use super::AppState;
use crate::error::ServeError;
use crate::execution::QueryLabel;
use crate::metrics::Protocol;
use crate::sqlstate::{self, Failure};
use crate::statement::{self, Kind, StatementParser};

/// Paths (and path prefixes) of the API itself.
const RESERVED: [&str; 5] = ["/v1", "/healthz", "/readyz", "/metrics", "/openapi.json"];

/// The query-string parameter every endpoint reads as its result format.
const FORMAT: &str = "format";

/// An endpoint ready to serve.
#[derive(Debug)]
pub struct NamedEndpoint {
    pub spec: Endpoint,
    /// The pipeline that declares it.
    pub pipeline: String,
    /// Its SQL, parsed once.
    statement: Statement,
}

/// The endpoints of every pipeline folder in `dirs`.
pub fn load(
    dirs: &[PathBuf],
    statements: &StatementParser,
) -> Result<Vec<Arc<NamedEndpoint>>, ServeError> {
    let mut all: Vec<Arc<NamedEndpoint>> = Vec::new();
    for dir in dirs {
        let pipeline = Pipeline::load(dir)?;
        for spec in pipeline.endpoints {
            if let Some(reserved) = RESERVED
                .iter()
                .find(|r| spec.path == **r || spec.path.starts_with(&format!("{r}/")))
            {
                return Err(spec
                    .error("path", format!("{reserved} is a route of the API itself"))
                    .into());
            }
            if let Some(first) = all.iter().find(|e| e.spec.path == spec.path) {
                let at = &first.spec.origin;
                return Err(spec
                    .error(
                        "path",
                        format!("also declared at {}:{}", at.file.display(), at.line),
                    )
                    .into());
            }
            if spec.param(FORMAT).is_some() {
                return Err(spec
                    .error(
                        "params.name",
                        "`format` is every endpoint's result format: name the parameter otherwise",
                    )
                    .into());
            }
            let statement = one_query(statements, &spec.sql)
                .map_err(|message| ServeError::from(spec.error("sql", message)))?;
            all.push(Arc::new(NamedEndpoint {
                spec,
                pipeline: pipeline.name.clone(),
                statement,
            }));
        }
    }
    Ok(all)
}

fn one_query(statements: &StatementParser, sql: &str) -> Result<Statement, String> {
    let mut parsed = statements.parse(sql).map_err(|f| f.message)?;
    if parsed.len() != 1 {
        return Err(format!(
            "holds {} statements; an endpoint is one query",
            parsed.len()
        ));
    }
    let statement = parsed.remove(0);
    match statement::kind(&statement) {
        Kind::Query => Ok(statement),
        Kind::Refused(message) => Err(message),
        _ => Err("is not a query".into()),
    }
}

/// A route for each endpoint.
pub(crate) fn routes(endpoints: &[Arc<NamedEndpoint>]) -> Router<AppState> {
    endpoints.iter().fold(Router::new(), |router, endpoint| {
        let path = endpoint.spec.path.clone();
        let endpoint = Arc::clone(endpoint);
        router.route(
            &path,
            get(
                move |State(state): State<AppState>,
                      Extension(caller): Extension<Caller>,
                      uri: Uri,
                      headers: HeaderMap| async move {
                    call(&state, caller, &uri, &headers, &endpoint).await
                },
            ),
        )
    })
}

async fn call(
    state: &AppState,
    caller: Caller,
    uri: &Uri,
    headers: &HeaderMap,
    endpoint: &NamedEndpoint,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let format = FormatQuery::of(uri, headers)?;
    let values = endpoint.values(uri)?;
    let label = QueryLabel::new(Protocol::Http, caller.0, &endpoint.spec.path);
    let admitted = Admitted::new(state, label, started)?;
    let bound = crate::params::bind_named(values).map_err(|failure| admitted.refuse(failure))?;
    let reuse = format!("{} {bound:?}", endpoint.statement);
    let rows = admitted
        .run(state, endpoint.statement.clone(), reuse, |_| Ok(bound))
        .await?;
    match endpoint.spec.returns {
        Returns::Rows => Ok(rows.respond(format)),
        Returns::Row => rows.one_row().await,
    }
}

impl NamedEndpoint {
    /// Each declared parameter's value from the query string: given, its
    /// default, or none (NULL).
    fn values(&self, uri: &Uri) -> Result<Vec<(String, ParamType, Option<ParamValue>)>, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let mut given: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, value) in &pairs {
            if name == FORMAT {
                continue;
            }
            if self.spec.param(name).is_none() {
                let known: Vec<&str> = self.spec.params.iter().map(|p| p.name.as_str()).collect();
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {name:?} ({} takes: {}{FORMAT})",
                    self.spec.path,
                    known.iter().map(|k| format!("{k}, ")).collect::<String>()
                )));
            }
            if given.insert(name, value).is_some() {
                return Err(ApiError::bad_request(format!(
                    "parameter {name} is given more than once"
                )));
            }
        }
        self.spec
            .params
            .iter()
            .map(|param| {
                let value = match given.get(param.name.as_str()) {
                    Some(text) => Some(param.ty.value(text).map_err(|message| {
                        ApiError::from(Failure::new(
                            sqlstate::INVALID_TEXT_REPRESENTATION,
                            format!("parameter {}: {message}", param.name),
                        ))
                    })?),
                    None if param.required => {
                        return Err(ApiError::bad_request(format!(
                            "parameter {} ({}) is required",
                            param.name, param.ty
                        )))
                    }
                    None => param.default.clone(),
                };
                Ok((param.name.clone(), param.ty, value))
            })
            .collect()
    }

    /// The endpoint's path item for the OpenAPI document.
    pub fn path_item(&self) -> PathItem {
        let mut parameters: Vec<_> = self
            .spec
            .params
            .iter()
            .map(|param| {
                let (ty, format) = match param.ty {
                    ParamType::Int => (Type::Integer, Some(KnownFormat::Int64)),
                    ParamType::Float => (Type::Number, Some(KnownFormat::Double)),
                    ParamType::String => (Type::String, None),
                    ParamType::Date => (Type::String, Some(KnownFormat::Date)),
                    ParamType::Timestamp => (Type::String, Some(KnownFormat::DateTime)),
                    ParamType::Bool => (Type::Boolean, None),
                };
                let schema = ObjectBuilder::new()
                    .schema_type(ty)
                    .format(format.map(SchemaFormat::KnownFormat))
                    .default(param.default.as_ref().map(ParamValue::to_json));
                ParameterBuilder::new()
                    .name(&param.name)
                    .parameter_in(ParameterIn::Query)
                    .required(if param.required {
                        Required::True
                    } else {
                        Required::False
                    })
                    .description(param.description.clone())
                    .schema(Some(schema))
                    .build()
            })
            .collect();
        let ok = match self.spec.returns {
            Returns::Rows => {
                parameters.extend(FormatQuery::into_params(|| Some(ParameterIn::Query)));
                formats::rows_response()
            }
            Returns::Row => ResponseBuilder::new()
                .description("The query's one row: column name to value")
                .content(
                    formats::JSON,
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                        .build(),
                )
                .build(),
        };
        let operation = OperationBuilder::new()
            .operation_id(Some(operation_id(&self.spec.path)))
            .summary(self.spec.description.clone())
            .description(Some(format!(
                "Named endpoint of pipeline {}.",
                self.pipeline
            )))
            .tag("endpoints")
            .parameters(Some(parameters))
            .responses(
                ResponsesBuilder::new()
                    .response("200", ok)
                    .responses_from_into_responses::<QueryErrors>()
                    .build(),
            );
        PathItem::new(HttpMethod::Get, operation)
    }
}

/// `/api/sales-by-category` → `endpoint_api_sales_by_category`.
fn operation_id(path: &str) -> String {
    let words: Vec<String> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    format!("endpoint_{}", words.join("_"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn folder(toml: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pipeline.toml"),
            format!("name = \"shop\"\n\n{toml}"),
        )
        .unwrap();
        dir
    }

    const STORE: &str = r#"[[endpoints]]
path = "/api/store"
returns = "row"
sql = "SELECT * FROM unified.sales_by_store WHERE store_id = $store_id"

[[endpoints.params]]
name = "store_id"
type = "int"
required = true
"#;

    fn load_one(toml: &str) -> Result<Vec<Arc<NamedEndpoint>>, ServeError> {
        let dir = folder(toml);
        load(&[dir.path().to_path_buf()], &StatementParser::new())
    }

    #[test]
    fn endpoints_load_and_bad_ones_name_file_line_and_field() {
        let loaded = load_one(STORE).unwrap();
        assert_eq!(loaded[0].spec.path, "/api/store");
        assert_eq!(loaded[0].pipeline, "shop");
        for (toml, line, field) in [
            (STORE.replace("/api/store", "/v1/store"), 4, "path"),
            (
                STORE
                    .replace("store_id\"", "format\"")
                    .replace("$store_id", "$format"),
                4,
                "params.name",
            ),
            (
                STORE.replace("type = \"int\"", "type = \"long\""),
                10,
                "params.type",
            ),
        ] {
            let e = load_one(&toml).unwrap_err();
            let ServeError::Spec(spec) = &e else {
                panic!("not a spec error: {e}")
            };
            assert!(spec.file.ends_with("pipeline.toml"), "{e}");
            assert_eq!(
                (spec.line, spec.field.as_deref()),
                (line, Some(field)),
                "{e}"
            );
            assert!(e.is_usage(), "{e}");
        }
    }

    #[test]
    fn query_string_values_are_typed() {
        let loaded = load_one(STORE).unwrap();
        let endpoint = &loaded[0];
        let uri = |q: &str| format!("/api/store?{q}").parse::<Uri>().unwrap();
        let values = endpoint.values(&uri("store_id=7&format=csv")).unwrap();
        assert_eq!(
            values,
            vec![("store_id".into(), ParamType::Int, Some(ParamValue::Int(7)))]
        );
        for (query, status, words) in [
            (
                "store_id=seven",
                400,
                "parameter store_id: \"seven\" is not a 64-bit integer",
            ),
            ("", 400, "parameter store_id (int) is required"),
            ("store_id=1&store_id=2", 400, "more than once"),
            ("store_id=1&shop=2", 400, "unknown parameter \"shop\""),
        ] {
            let e = endpoint.values(&uri(query)).unwrap_err();
            assert_eq!(e.status().as_u16(), status, "{query}");
            assert!(e.failure().message.contains(words), "{query}: {e:?}");
        }
    }

    #[test]
    fn operation_ids() {
        assert_eq!(
            operation_id("/api/sales-by-category"),
            "endpoint_api_sales_by_category"
        );
    }
}
