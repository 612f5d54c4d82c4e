//! Read-only query execution: the only way the front doors run user SQL. DDL and
//! DML are refused (`SQLOptions`); `SET` and `SHOW` still work for BI clients.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::context::SQLOptions;
use icefjord_engine::LakeSession;

use crate::error::Result;

/// The options every user query runs with.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(true)
}

/// Run one read-only query; returns its schema and batches.
pub async fn run(session: &LakeSession, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let frame = session.context().sql_with_options(sql, read_only()).await?;
    let schema = frame.schema().inner().clone();
    let batches = frame.collect().await?;
    Ok((schema, batches))
}
