//! How many rows a plan read from data files (the run report's `rows_read`).

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::DataFrame;

use crate::error::Result;

/// Collect `frame`'s rows, and count the rows its plan read from data files.
pub async fn collect_counted(frame: DataFrame) -> Result<(Vec<RecordBatch>, u64)> {
    let task = Arc::new(frame.task_ctx());
    let plan = frame.create_physical_plan().await?;
    let batches = datafusion::physical_plan::collect(plan.clone(), task).await?;
    Ok((batches, scanned_rows(&plan)))
}

/// Rows the file scans of an executed `plan` produced (DataFusion's
/// `output_rows` of each file-reading `DataSourceExec`).
pub fn scanned_rows(plan: &Arc<dyn ExecutionPlan>) -> u64 {
    use datafusion::datasource::physical_plan::FileScanConfig;
    use datafusion::datasource::source::DataSourceExec;
    let own = plan
        .as_any()
        .downcast_ref::<DataSourceExec>()
        .filter(|exec| exec.data_source().as_any().is::<FileScanConfig>())
        .and_then(|exec| exec.metrics())
        .and_then(|metrics| metrics.output_rows())
        .unwrap_or(0) as u64;
    let hidden = icefjord_engine::partitionwise::aligned_input(plan.as_ref());
    own + plan
        .children()
        .into_iter()
        .chain(hidden)
        .map(scanned_rows)
        .sum::<u64>()
}
