//! Parse and Describe of the extended protocol: statements planned on the
//! query runtime, their parameter and result types for the client.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{DataType as SqlDataType, Statement};
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, into_pg_type};
use datafusion_postgres::hooks::QueryHook;
use pgwire::api::portal::Format;
use pgwire::api::results::FieldInfo;
use pgwire::api::stmt::QueryParser;
use pgwire::api::{ClientInfo, Type};
use pgwire::error::PgWireResult;

use super::cursor::Cursors;
use super::handler::{
    described_as, parameter_types, refusal, session_and_plan, session_for, settings, timeout,
    PgStatement,
};
use super::sqlstate;
use super::statement::{self, Kind, StatementParser};
use crate::lake::QueryLake;

/// Parses and describes statements for the extended protocol.
pub struct LakeQueryParser {
    pub(super) lake: QueryLake,
    pub(super) statements: StatementParser,
    pub(super) hooks: Vec<Arc<dyn QueryHook>>,
}

impl LakeQueryParser {
    /// Plan `statement` for Describe: on the query runtime, under the time
    /// limit, as at Execute.
    async fn plan<C>(&self, client: &C, statement: Statement) -> PgWireResult<LogicalPlan>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let settings = settings(client);
        let lake = self.lake.clone();
        self.lake
            .runtime()
            .run(timeout(&self.lake, client), async move {
                Ok(session_and_plan(&lake, &settings, statement).await?.1)
            })
            .await
            .map_err(|e| refusal(&e))
    }
}

/// The SQL type of a parameter type a client declared at Parse, for the ones
/// a placeholder is cast to ([`crate::params::type_placeholders`]); `None`
/// leaves the placeholder as it is (`numeric`: DataFusion's unbounded
/// `NUMERIC` is `DECIMAL(38, 10)`, which would change how the value reads).
fn sql_type(declared: &Type) -> Option<SqlDataType> {
    use datafusion::sql::sqlparser::ast::TimezoneInfo;
    Some(match *declared {
        Type::BOOL => SqlDataType::Boolean,
        Type::INT2 => SqlDataType::SmallInt(None),
        Type::INT4 => SqlDataType::Int(None),
        Type::INT8 => SqlDataType::BigInt(None),
        Type::FLOAT4 => SqlDataType::Real,
        Type::FLOAT8 => SqlDataType::DoublePrecision,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => SqlDataType::Text,
        Type::DATE => SqlDataType::Date,
        Type::TIMESTAMP => SqlDataType::Timestamp(None, TimezoneInfo::None),
        Type::TIMESTAMPTZ => SqlDataType::Timestamp(None, TimezoneInfo::WithTimeZone),
        _ => return None,
    })
}

#[async_trait]
impl QueryParser for LakeQueryParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Self::Statement>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = self.statements.parse(sql)?;
        if statements.is_empty() {
            return Ok((sql.to_string(), None));
        }
        if statements.len() > 1 {
            return Err(sqlstate::error(
                sqlstate::SYNTAX_ERROR,
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let statement = statements.remove(0);
        let plan = match statement::kind(&statement) {
            // Refused at Execute, with its metrics; describe it as empty.
            Kind::Refused(_) | Kind::Discard | Kind::Acknowledge(_) => empty_plan(),
            Kind::Cursor => match &statement {
                Statement::Fetch { name, .. } => {
                    described_as(Cursors::of(client).schema(&name.value).await?)?
                }
                _ => empty_plan(),
            },
            Kind::Session => {
                let session = session_for(&self.lake, client).await?;
                let mut described = None;
                for hook in &self.hooks {
                    described = hook
                        .handle_extended_parse_query(&statement, session.context(), client)
                        .await;
                    if described.is_some() {
                        break;
                    }
                }
                described.unwrap_or_else(|| Ok(empty_plan()))?
            }
            Kind::Query => {
                let plan = self.plan(client, statement.clone()).await?;
                // `SELECT $1`: nothing decides the type; PostgreSQL's rules do.
                let untyped: Vec<Option<SqlDataType>> = parameter_types(&plan)?
                    .iter()
                    .enumerate()
                    .map(|(i, inferred)| match inferred {
                        Some(_) => None,
                        None => Some(
                            types
                                .get(i)
                                .cloned()
                                .flatten()
                                .map_or(Some(SqlDataType::Text), |declared| sql_type(&declared)),
                        )
                        .flatten(),
                    })
                    .collect();
                if untyped.iter().any(Option::is_some) {
                    let mut typed = statement.clone();
                    crate::params::type_placeholders(&mut typed, &untyped);
                    let plan = self.plan(client, typed.clone()).await?;
                    return Ok((sql.to_string(), Some((typed, plan))));
                }
                plan
            }
        };
        Ok((sql.to_string(), Some((statement, plan))))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        let Some((_, plan)) = &stmt.1 else {
            return Ok(vec![]);
        };
        parameter_types(plan)?
            .iter()
            .map(|ty| ty.as_ref().map_or(Ok(Type::UNKNOWN), into_pg_type))
            .collect()
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let Some((_, plan)) = &stmt.1 else {
            return Ok(vec![]);
        };
        if matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Dml(_)) {
            return Ok(vec![]);
        }
        arrow_schema_to_pg_fields(
            plan.schema().as_arrow(),
            column_format.unwrap_or(&Format::UnifiedText),
            None,
        )
    }
}

fn empty_plan() -> LogicalPlan {
    LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(datafusion::common::DFSchema::empty()),
    })
}
