//! Parse and Describe of the extended protocol: statements planned on the
//! query runtime, their parameter and result types for the client.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
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

/// The type `$n` is cast to before planning, if any: PostgreSQL plans a
/// parameter with the type the client declared at Parse, and an undeclared
/// one that nothing in the query types as `text` (its "unknown" literal
/// resolution). DataFusion infers a parameter's type from its context
/// instead, which may differ from what the client sends (`$1 + 0` inferred
/// `int8` while psycopg sends `numeric`): the client would then be told one
/// type at Describe and sent another at Execute. So a declared type that
/// differs from the inferred one wins, as in PostgreSQL.
fn placeholder_cast(inferred: Option<&DataType>, declared: Option<&Type>) -> Option<SqlDataType> {
    let declared = declared.filter(|ty| **ty != Type::UNKNOWN);
    let Some(declared) = declared else {
        return inferred.is_none().then_some(SqlDataType::Text);
    };
    let (sql, same) = declared_type(declared)?;
    match inferred {
        Some(inferred) if same(inferred) => None,
        _ => Some(sql),
    }
}

/// The SQL type of a declared parameter type, and which inferred types are
/// the same for the client (`None`: leave the placeholder as it is).
/// Whether an inferred type is the same, for the client, as a declared one.
type SameType = fn(&DataType) -> bool;

fn declared_type(declared: &Type) -> Option<(SqlDataType, SameType)> {
    use datafusion::sql::sqlparser::ast::{ExactNumberInfo, TimezoneInfo};
    Some(match *declared {
        Type::BOOL => (SqlDataType::Boolean, |t| *t == DataType::Boolean),
        Type::INT2 => (SqlDataType::SmallInt(None), |t| *t == DataType::Int16),
        Type::INT4 => (SqlDataType::Int(None), |t| *t == DataType::Int32),
        Type::INT8 => (SqlDataType::BigInt(None), |t| *t == DataType::Int64),
        Type::FLOAT4 => (SqlDataType::Real, |t| *t == DataType::Float32),
        Type::FLOAT8 => (SqlDataType::DoublePrecision, |t| *t == DataType::Float64),
        // DataFusion's unbounded NUMERIC.
        Type::NUMERIC => (
            SqlDataType::Decimal(ExactNumberInfo::PrecisionAndScale(38, 10)),
            |t| matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)),
        ),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => (SqlDataType::Text, |t| {
            matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
        }),
        Type::DATE => (SqlDataType::Date, |t| *t == DataType::Date32),
        Type::TIMESTAMP => (SqlDataType::Timestamp(None, TimezoneInfo::None), |t| {
            matches!(t, DataType::Timestamp(_, None))
        }),
        Type::TIMESTAMPTZ => (
            SqlDataType::Timestamp(None, TimezoneInfo::WithTimeZone),
            |t| matches!(t, DataType::Timestamp(_, Some(_))),
        ),
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
                // PostgreSQL's parameter types, where DataFusion's differ.
                let untyped: Vec<Option<SqlDataType>> = parameter_types(&plan)?
                    .iter()
                    .enumerate()
                    .map(|(i, inferred)| {
                        placeholder_cast(inferred.as_ref(), types.get(i).and_then(Option::as_ref))
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
