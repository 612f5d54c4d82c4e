//! Scans skip the data files whose column bounds rule out every row a query's
//! filters keep (issue 12: the cost of a query is the files that may match).

use std::sync::Arc;

use arrow::array::Int64Array;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;
use icefjord_catalog::{CommitId, TableWrite};
use icefjord_engine::LakeSession;

use super::{data_files, first_i64, lake, long_table};

/// Data files the scans of `plan` read.
fn scanned_files(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let own = plan
        .as_any()
        .downcast_ref::<DataSourceExec>()
        .and_then(|exec| exec.data_source().as_any().downcast_ref::<FileScanConfig>())
        .map_or(0, |config| config.file_groups.iter().map(|g| g.len()).sum());
    own + plan
        .children()
        .into_iter()
        .map(scanned_files)
        .sum::<usize>()
}

#[tokio::test]
async fn scans_skip_files_whose_bounds_rule_out_the_filter() {
    let (_dir, lake) = lake().await;
    let ident = long_table(&lake, "raw.numbers").await;
    // Three commits, one file each: 1..=10, 11..=20, 21..=30.
    for start in [1i64, 11, 21] {
        let table = lake.load(&ident).await.unwrap();
        let values = Int64Array::from_iter_values(start..start + 10);
        let files = data_files(&table, vec![Arc::new(values)]).await;
        lake.commit(CommitId::mint())
            .with_write(TableWrite::append(ident.clone(), files))
            .execute()
            .await
            .unwrap();
    }
    let session = LakeSession::new(&lake).await.unwrap();
    for (sql, files, count) in [
        ("SELECT count(*) FROM raw.numbers WHERE n > 25", 1, 5),
        (
            "SELECT count(*) FROM raw.numbers WHERE n BETWEEN 10 AND 11",
            2,
            2,
        ),
        ("SELECT count(*) FROM raw.numbers WHERE n > 30", 0, 0),
        ("SELECT count(*) FROM raw.numbers WHERE n % 2 = 0", 3, 15),
        ("SELECT count(*) FROM raw.numbers", 3, 30),
    ] {
        let frame = session.context().sql(sql).await.unwrap();
        let plan = frame.clone().create_physical_plan().await.unwrap();
        assert_eq!(scanned_files(&plan), files, "{sql}");
        assert_eq!(first_i64(&frame.collect().await.unwrap()), count, "{sql}");
    }
}
