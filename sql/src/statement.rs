//! User SQL from text to a read-only plan, the same way for every front door
//! (`icefjord sql`, the PostgreSQL wire, HTTP): [`parse`] with
//! [`LakeDialect`](crate::dialect::LakeDialect), then [`plan`], which rewrites
//! time travel ([`crate::time_travel`]), plans with the session and refuses DDL
//! and DML ([`read_only`]).

use datafusion::execution::context::SQLOptions;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{DFParserBuilder, Statement};

use crate::dialect::LakeDialect;
use crate::error::Result;

/// The statements of `sql`, parsed with [`LakeDialect`] (PostgreSQL's SQL plus
/// table version clauses, and DataFusion's own statements: `EXPLAIN`, `COPY`, …).
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    let statements = DFParserBuilder::new(sql)
        .with_dialect(&LakeDialect::default())
        .build()?
        .parse_statements()?;
    Ok(statements.into_iter().collect())
}

/// The options every user statement is checked with: no DDL, no DML; `SET` and
/// `SHOW` are allowed for BI clients.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(true)
}

/// The read-only plan of one parsed statement: its version clauses rewritten,
/// planned with `state` (the session's one catalog state), checked with
/// [`read_only`].
pub async fn plan(state: &SessionState, mut statement: Statement) -> Result<LogicalPlan> {
    crate::time_travel::rewrite(&mut statement, state)?;
    let plan = state.statement_to_plan(statement).await?;
    read_only().verify_plan(&plan)?;
    Ok(plan)
}
