//! Read-only query execution: the only way the front doors run user SQL. DDL and
//! DML are refused; `SET` and `SHOW` still work for BI clients; time travel and
//! metadata tables work as in Spark (see [`crate::time_travel`]).

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use icefjord_engine::LakeSession;

use crate::error::{Result, SqlError};
use crate::statement;

pub use crate::statement::read_only;

/// Run one read-only statement ([`statement::parse`], then [`statement::plan`]);
/// returns its schema and batches.
pub async fn run(session: &LakeSession, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let mut statements = statement::parse(sql)?;
    let count = statements.len();
    let (Some(one), 1) = (statements.pop(), count) else {
        return Err(SqlError::Statements { count });
    };
    let state = session.context().state();
    let plan = statement::plan(&state, one).await?;
    let frame = session.context().execute_logical_plan(plan).await?;
    let schema = frame.schema().inner().clone();
    let batches = frame.collect().await?;
    Ok((schema, batches))
}
