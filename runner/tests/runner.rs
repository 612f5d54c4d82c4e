//! The runner over a real lake on a temporary directory: write-audit-publish,
//! history, idempotent run ids and spec errors found by planning.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Int64Type};
use iceberg::spec::{NestedField, PrimitiveType, Type};
use icefjord_catalog::{parse_table, CommitId, LakeCatalog, LakeConfig, TableSpec, TableWrite};
use icefjord_engine::{LakeSession, TableWriter};
use icefjord_runner::{ModelStatus, Pipeline, RunStatus, Runner, RunnerError};

async fn lake() -> (tempfile::TempDir, LakeCatalog) {
    let dir = tempfile::tempdir().unwrap();
    let lake = LakeCatalog::open(&LakeConfig::local(&dir.path().join("lake")).unwrap())
        .await
        .unwrap();
    (dir, lake)
}

/// Append rows (`arrays`, one per column) to `table`, created on first use with
/// the required `columns`.
async fn append_rows(
    lake: &LakeCatalog,
    table: &str,
    columns: &[(&str, PrimitiveType)],
    arrays: Vec<arrow::array::ArrayRef>,
) {
    write_rows(lake, table, columns, arrays, false).await;
}

/// Write rows to `table` as [`append_rows`] does, or instead of all its rows.
async fn write_rows(
    lake: &LakeCatalog,
    table: &str,
    columns: &[(&str, PrimitiveType)],
    arrays: Vec<arrow::array::ArrayRef>,
    overwrite: bool,
) {
    let ident = parse_table(table).unwrap();
    let table = lake
        .load_or_create(&ident, || {
            let fields = columns
                .iter()
                .enumerate()
                .map(|(i, (name, ty))| {
                    Arc::new(NestedField::required(
                        i as i32 + 1,
                        *name,
                        Type::Primitive(ty.clone()),
                    ))
                })
                .collect::<Vec<_>>();
            Ok(TableSpec {
                schema: iceberg::spec::Schema::builder()
                    .with_fields(fields)
                    .build()
                    .unwrap(),
                partition_spec: None,
                properties: Default::default(),
            })
        })
        .await
        .unwrap();
    let mut writer = TableWriter::new(&table).await.unwrap();
    let batch = RecordBatch::try_new(writer.schema().clone(), arrays).unwrap();
    writer.write(batch).await.unwrap();
    let (files, _) = writer.close().await.unwrap();
    let write = match overwrite {
        true => TableWrite::overwrite(ident, files),
        false => TableWrite::append(ident, files),
    };
    lake.commit(CommitId::mint())
        .with_write(write)
        .execute()
        .await
        .unwrap();
}

/// Append orders `(id, store, amount in cents, kind)` to `raw.orders`.
async fn add_orders(lake: &LakeCatalog, orders: &[(i64, i32, i128, &str)]) {
    let amount = PrimitiveType::Decimal {
        precision: 10,
        scale: 2,
    };
    append_rows(
        lake,
        "raw.orders",
        &[
            ("id", PrimitiveType::Long),
            ("store", PrimitiveType::Int),
            ("amount", amount),
            ("kind", PrimitiveType::String),
        ],
        vec![
            Arc::new(Int64Array::from_iter_values(orders.iter().map(|o| o.0))),
            Arc::new(Int32Array::from_iter_values(orders.iter().map(|o| o.1))),
            Arc::new(
                Decimal128Array::from_iter_values(orders.iter().map(|o| o.2))
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
            Arc::new(StringArray::from_iter_values(orders.iter().map(|o| o.3))),
        ],
    )
    .await;
}

const ORDERS: [(i64, i32, i128, &str); 4] = [
    (1, 1, 1000, "SALE"),
    (2, 1, 550, "SALE"),
    (3, 2, 725, "RETURN"),
    (4, 2, 300, "SALE"),
];

const PIPELINE: &str = r#"name = "shop"

[[models]]
name = "historical.store_totals"
kind = "table"
sort_by = ["store"]

[[models.audits]]
check = "not_null"
columns = ["store", "sales"]

[[models.audits]]
check = "unique"
columns = ["store"]

[[models.audits]]
check = "row_count_min"
min = 1

[[models]]
name = "historical.sale_log"
kind = "append"

[[models.audits]]
check = "accepted_values"
column = "kind"
values = ["SALE"]

[[models]]
name = "historical.latest"
kind = "incremental_by_key"
unique_key = ["id"]
"#;

fn write_pipeline(dir: &Path, toml: &str, files: &[(&str, &str)]) -> Pipeline {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("pipeline.toml"), toml).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    Pipeline::load(dir).unwrap()
}

const FILES: [(&str, &str); 4] = [
    (
        "store_totals.sql",
        "SELECT store,\n  sum(CASE WHEN kind = 'SALE' THEN amount ELSE 0 END) AS sales,\n  count(*) AS events\nFROM raw.orders GROUP BY store",
    ),
    ("sale_log.sql", "SELECT id, kind, amount FROM raw.orders WHERE kind = 'SALE'"),
    (
        "latest.sql",
        "SELECT id, max(amount) AS amount FROM raw.orders GROUP BY id",
    ),
    (
        "big_stores.sql",
        "-- name = \"unified.big_stores\"\n-- kind = \"view\"\nSELECT store, sales FROM historical.store_totals WHERE sales > 5",
    ),
];

async fn query(lake: &LakeCatalog, sql: &str) -> Vec<RecordBatch> {
    LakeSession::new(lake)
        .await
        .unwrap()
        .query(sql)
        .await
        .unwrap()
}

async fn snapshot(lake: &LakeCatalog, table: &str) -> Option<i64> {
    lake.load(&parse_table(table).unwrap())
        .await
        .unwrap()
        .metadata()
        .current_snapshot_id()
}

fn int64s(batches: &[RecordBatch], column: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(column)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

fn strings(batches: &[RecordBatch], column: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = arrow::compute::cast(b.column(column), &DataType::Utf8).unwrap();
            let s = c.as_string::<i32>();
            (0..s.len())
                .map(|i| s.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The shop pipeline's outputs (in `namespace`) after its first run over ORDERS.
async fn assert_first_run(lake: &LakeCatalog, namespace: &str) {
    // Sales per store: 10.00 + 5.50 for store 1; the return does not count.
    let totals = query(
        lake,
        &format!("SELECT store, sales, events FROM {namespace}.store_totals ORDER BY store"),
    )
    .await;
    assert_eq!(strings(&totals, 0), ["1", "2"]);
    assert_eq!(strings(&totals, 1), ["15.50", "3.00"]);
    assert_eq!(int64s(&totals, 2), [2, 2]);
    let view = query(lake, "SELECT store FROM unified.big_stores").await;
    assert_eq!(strings(&view, 0), ["1"]);
    let log = query(
        lake,
        &format!("SELECT id FROM {namespace}.sale_log ORDER BY id"),
    )
    .await;
    assert_eq!(int64s(&log, 0), [1, 2, 4]);
}

/// New orders and a second run of the shop pipeline (outputs in `namespace`).
async fn assert_second_run(lake: &LakeCatalog, pipeline: &Pipeline, namespace: &str) {
    add_orders(lake, &[(5, 2, 400, "SALE"), (2, 1, 999, "RETURN")]).await;
    let second = Runner::new(lake, pipeline).unwrap().run().await.unwrap();
    assert_eq!(second.status, RunStatus::Success, "{second:?}");
    let totals = query(
        lake,
        &format!("SELECT store, sales FROM {namespace}.store_totals ORDER BY store"),
    )
    .await;
    assert_eq!(strings(&totals, 1), ["15.50", "7.00"]);
    let log = query(
        lake,
        &format!("SELECT id FROM {namespace}.sale_log ORDER BY id"),
    )
    .await;
    assert_eq!(
        int64s(&log, 0),
        [1, 1, 2, 2, 4, 4, 5],
        "append adds every run's rows"
    );
    let latest = query(lake, &format!("SELECT count(*) FROM {namespace}.latest")).await;
    // ids 1–5: the two raw rows of id 2 are one key (a key repeated within one
    // run's new rows would fail the run, see merge.rs).
    assert_eq!(int64s(&latest, 0), [5]);
}

#[tokio::test]
async fn a_run_publishes_tables_views_and_history_in_one_commit() {
    let (dir, lake) = lake().await;
    add_orders(&lake, &ORDERS).await;
    let pipeline = write_pipeline(&dir.path().join("shop"), PIPELINE, &FILES);

    let report = Runner::new(&lake, &pipeline)
        .unwrap()
        .with_run_id(Some("r1".into()))
        .run()
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Success, "{report:?}");
    assert!(report
        .models
        .iter()
        .all(|m| m.status == ModelStatus::Published));

    assert_first_run(&lake, "historical").await;

    // Every output and the history row landed in the same commit, with the
    // snapshot ids the history names.
    let history = query(
        &lake,
        "SELECT model, status, snapshot_id, commit_id, rows FROM icefjord.runs WHERE run_id = 'r1' ORDER BY model",
    )
    .await;
    let models = strings(&history, 0);
    assert_eq!(
        models,
        [
            "historical.latest",
            "historical.sale_log",
            "historical.store_totals",
            "unified.big_stores"
        ]
    );
    assert!(strings(&history, 1).iter().all(|s| s == "published"));
    assert!(strings(&history, 3).iter().all(|c| c == "run:shop:r1"));
    let ids = history[0].column(2).as_primitive::<Int64Type>();
    for (i, model) in models.iter().enumerate() {
        if model.starts_with("historical.") {
            assert_eq!(Some(ids.value(i)), snapshot(&lake, model).await, "{model}");
        } else {
            assert!(ids.is_null(i), "a view has no snapshot");
        }
    }

    // The output's snapshot names the input snapshot it was computed from.
    let totals_table = lake
        .load(&parse_table("historical.store_totals").unwrap())
        .await
        .unwrap();
    let summary = &totals_table
        .metadata()
        .current_snapshot()
        .unwrap()
        .summary()
        .additional_properties;
    assert_eq!(
        summary.get("icefjord.input.raw.orders").cloned(),
        snapshot(&lake, "raw.orders").await.map(|id| id.to_string())
    );
    assert_eq!(
        summary.get("icefjord.run-id").map(String::as_str),
        Some("r1")
    );

    // The same run id again: nothing happens.
    let before = snapshot(&lake, "historical.sale_log").await;
    let again = Runner::new(&lake, &pipeline)
        .unwrap()
        .with_run_id(Some("r1".into()))
        .run()
        .await
        .unwrap();
    assert_eq!(again.status, RunStatus::AlreadyDone);
    assert_eq!(snapshot(&lake, "historical.sale_log").await, before);

    // New input, a new run: full refresh, append and merge each do their part.
    assert_second_run(&lake, &pipeline, "historical").await;
    let view = query(&lake, "SELECT store FROM unified.big_stores ORDER BY store").await;
    assert_eq!(
        strings(&view, 0),
        ["1", "2"],
        "the view reads the new totals"
    );
}

#[tokio::test]
async fn a_failed_audit_or_model_publishes_nothing() {
    let (dir, lake) = lake().await;
    add_orders(&lake, &ORDERS).await;
    // A first run that fails its audit creates no output table at all.
    let failing_first = write_pipeline(
        &dir.path().join("first"),
        PIPELINE,
        &[
            FILES[0],
            ("sale_log.sql", "SELECT id, kind, amount FROM raw.orders"),
            FILES[2],
            FILES[3],
        ],
    );
    let report = Runner::new(&lake, &failing_first)
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    for table in [
        "historical.store_totals",
        "historical.sale_log",
        "historical.latest",
    ] {
        assert!(
            !lake.exists(&parse_table(table).unwrap()).await.unwrap(),
            "{table} was created by a failed run"
        );
    }

    let pipeline = write_pipeline(&dir.path().join("shop"), PIPELINE, &FILES);
    let first = Runner::new(&lake, &pipeline).unwrap().run().await.unwrap();
    assert_eq!(first.status, RunStatus::Success, "{first:?}");
    let tables = [
        "historical.store_totals",
        "historical.sale_log",
        "historical.latest",
    ];
    let mut before = Vec::new();
    for t in tables {
        before.push(snapshot(&lake, t).await);
    }
    let view_before = lake
        .view(&parse_table("unified.big_stores").unwrap())
        .await
        .unwrap();

    // An audit that fails (a RETURN reaches the sale log) after other models ran.
    let failing = write_pipeline(
        &dir.path().join("shop"),
        PIPELINE,
        &[("sale_log.sql", "SELECT id, kind, amount FROM raw.orders")],
    );
    let report = Runner::new(&lake, &failing)
        .unwrap()
        .with_run_id(Some("bad".into()))
        .run()
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    let status = |name: &str| {
        report
            .models
            .iter()
            .find(|m| m.model == name)
            .unwrap()
            .status
    };
    assert_eq!(status("historical.sale_log"), ModelStatus::AuditFailed);
    let audit = &report
        .models
        .iter()
        .find(|m| m.model == "historical.sale_log")
        .unwrap()
        .audits[0];
    assert_eq!((audit.passed, audit.failing), (false, 1));
    for (t, b) in tables.iter().zip(&before) {
        assert_eq!(snapshot(&lake, t).await, *b, "{t} changed");
    }
    assert_eq!(
        lake.view(&parse_table("unified.big_stores").unwrap())
            .await
            .unwrap(),
        view_before
    );
    let history = query(
        &lake,
        "SELECT status FROM icefjord.runs WHERE run_id = 'bad' ORDER BY model",
    )
    .await;
    assert!(strings(&history, 0).contains(&"audit_failed".to_string()));

    // A model that fails while running (a cast that cannot hold), after others ran.
    let erroring = write_pipeline(
        &dir.path().join("shop"),
        PIPELINE,
        &[
            (
                "sale_log.sql",
                "SELECT id, kind, amount FROM raw.orders WHERE kind = 'SALE'",
            ),
            (
                "latest.sql",
                "SELECT id, CAST(kind AS INT) AS amount FROM raw.orders",
            ),
        ],
    );
    let report = Runner::new(&lake, &erroring).unwrap().run().await.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    let latest = report
        .models
        .iter()
        .find(|m| m.model == "historical.latest")
        .unwrap();
    assert_eq!(latest.status, ModelStatus::Failed);
    assert!(
        latest.error.as_deref().unwrap().contains("SALE"),
        "{latest:?}"
    );
    for (t, b) in tables.iter().zip(&before) {
        assert_eq!(snapshot(&lake, t).await, *b, "{t} changed");
    }

    // A failed run id can be retried once fixed.
    let fixed = write_pipeline(&dir.path().join("shop"), PIPELINE, &FILES);
    let retry = Runner::new(&lake, &fixed)
        .unwrap()
        .with_run_id(Some("bad".into()))
        .run()
        .await
        .unwrap();
    assert_eq!(retry.status, RunStatus::Success);
}

#[tokio::test]
async fn planning_finds_spec_errors_before_anything_runs() {
    let (dir, lake) = lake().await;
    add_orders(&lake, &ORDERS).await;
    let bad_audit = PIPELINE.replace(
        "columns = [\"store\", \"sales\"]",
        "columns = [\"store\", \"salez\"]",
    );
    let bad_key = PIPELINE.replace("unique_key = [\"id\"]", "unique_key = [\"key\"]");
    let cases = [
        (
            vec![("store_totals.sql", "SELECT store, nope FROM raw.orders")],
            PIPELINE.to_string(),
            "store_totals.sql",
            "nope",
        ),
        (
            vec![("latest.sql", "SELECT id, amount\nFROM raw.missing")],
            PIPELINE.to_string(),
            "latest.sql:2",
            "raw.missing",
        ),
        (vec![], bad_audit, "pipeline.toml:4", "salez"),
        (vec![], bad_key, "pipeline.toml", "key"),
    ];
    for (files, toml, place, word) in cases {
        let folder = dir.path().join("p");
        let _ = std::fs::remove_dir_all(&folder);
        let mut all: Vec<(&str, &str)> = FILES.to_vec();
        all.retain(|(name, _)| !files.iter().any(|(n, _)| n == name));
        all.extend_from_slice(&files);
        let pipeline = write_pipeline(&folder, &toml, &all);
        let err = Runner::new(&lake, &pipeline)
            .unwrap()
            .run()
            .await
            .unwrap_err();
        assert!(matches!(err, RunnerError::Spec(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(place) && text.contains(word),
            "{place}/{word}: {text}"
        );
        assert!(!lake
            .exists(&parse_table("historical.store_totals").unwrap())
            .await
            .unwrap());
    }
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_plan_explains() {
    let (dir, lake) = lake().await;
    add_orders(&lake, &ORDERS).await;
    let pipeline = write_pipeline(&dir.path().join("shop"), PIPELINE, &FILES);
    let plan = Runner::new(&lake, &pipeline).unwrap().plan().await.unwrap();
    let names: Vec<&str> = plan.iter().map(|p| p.model.as_str()).collect();
    assert_eq!(
        names,
        [
            "historical.latest",
            "historical.sale_log",
            "historical.store_totals",
            "unified.big_stores"
        ]
    );
    let view = plan
        .iter()
        .find(|p| p.model == "unified.big_stores")
        .unwrap();
    assert_eq!(view.upstream, ["historical.store_totals"]);
    assert!(plan[2].action.contains("create"), "{:?}", plan[2]);

    let report = Runner::new(&lake, &pipeline)
        .unwrap()
        .with_dry_run(true)
        .run()
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::DryRun);
    let log = report
        .models
        .iter()
        .find(|m| m.model == "historical.sale_log")
        .unwrap();
    assert_eq!(log.rows, Some(3));
    assert!(
        !lake
            .exists(&parse_table("historical.sale_log").unwrap())
            .await
            .unwrap(),
        "nothing published, not even an empty table"
    );
    assert!(lake
        .view(&parse_table("unified.big_stores").unwrap())
        .await
        .unwrap()
        .is_none());
}

/// Run `pipeline` re-running the interval `[start, end)` (µs).
async fn run_interval(
    lake: &LakeCatalog,
    pipeline: &Pipeline,
    start: i64,
    end: i64,
) -> icefjord_runner::RunReport {
    Runner::new(lake, pipeline)
        .unwrap()
        .with_interval(Some((start, end)))
        .run()
        .await
        .unwrap()
}

/// Append visits `(day of October 2023, hour, n)` to `raw.visits`.
async fn add_visits(lake: &LakeCatalog, visits: &[(u32, u32, i64)]) {
    write_visits(lake, visits, false).await;
}

/// Visits `(day of October 2023, hour, n)` into `raw.visits`, appended or
/// replacing all its rows.
async fn write_visits(lake: &LakeCatalog, visits: &[(u32, u32, i64)], overwrite: bool) {
    use arrow::array::TimestampMicrosecondArray;
    let micros = |day: u32, hour: u32| {
        chrono::NaiveDate::from_ymd_opt(2023, 10, day)
            .unwrap()
            .and_hms_opt(hour, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros()
    };
    write_rows(
        lake,
        "raw.visits",
        &[("ts", PrimitiveType::Timestamp), ("n", PrimitiveType::Long)],
        vec![
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                visits.iter().map(|v| micros(v.0, v.1)),
            )),
            Arc::new(Int64Array::from_iter_values(visits.iter().map(|v| v.2))),
        ],
        overwrite,
    )
    .await;
}

#[tokio::test]
async fn incremental_by_time_processes_new_intervals_and_reruns_a_range_on_demand() {
    let (dir, lake) = lake().await;
    add_visits(&lake, &[(27, 1, 1), (27, 5, 2), (28, 3, 10), (29, 23, 100)]).await;
    let pipeline = write_pipeline(
        &dir.path().join("visits"),
        r#"name = "visits"

[[models]]
name = "historical.daily_visits"
kind = "incremental_by_time"
time_column = "day"
grain = "day"
start = "2023-10-27"
partition_by = ["day(day)"]
"#,
        &[(
            "daily_visits.sql",
            "SELECT date_trunc('day', ts) AS day, sum(n) AS visits, count(*) AS events\n\
             FROM raw.visits WHERE ts >= $interval_start AND ts < $interval_end GROUP BY 1",
        )],
    );
    let daily =
        "SELECT CAST(day AS VARCHAR) AS day, visits FROM historical.daily_visits ORDER BY day";
    let first = Runner::new(&lake, &pipeline).unwrap().run().await.unwrap();
    assert_eq!(first.status, RunStatus::Success, "{first:?}");
    let rows = query(&lake, daily).await;
    assert_eq!(int64s(&rows, 1), [3, 10, 100]);

    // A late visit for the 28th: its interval is done, so a plain run leaves it.
    add_visits(&lake, &[(28, 4, 1000)]).await;
    let before = snapshot(&lake, "historical.daily_visits").await;
    let second = Runner::new(&lake, &pipeline).unwrap().run().await.unwrap();
    assert_eq!(second.status, RunStatus::Success);
    assert_eq!(second.models[0].rows, Some(0));
    assert_eq!(
        snapshot(&lake, "historical.daily_visits").await,
        before,
        "nothing to do"
    );

    // --interval re-runs the 28th only: its partition is replaced, the others kept.
    let start = icefjord_runner::interval::parse_instant("2023-10-28").unwrap();
    let end = icefjord_runner::interval::parse_instant("2023-10-29").unwrap();
    let rerun = run_interval(&lake, &pipeline, start, end).await;
    assert_eq!(rerun.status, RunStatus::Success, "{rerun:?}");
    assert_eq!(rerun.models[0].rows, Some(1));
    let rows = query(&lake, daily).await;
    assert_eq!(int64s(&rows, 1), [3, 1010, 100]);
    assert_eq!(strings(&rows, 0)[1], "2023-10-28T00:00:00");

    // The 28th's raw visits are withdrawn (bad data); re-running the 28th and
    // 29th now produces no row for the 28th: its partition is emptied all the same.
    write_visits(&lake, &[(27, 1, 1), (27, 5, 2), (29, 23, 100)], true).await;
    let end = icefjord_runner::interval::parse_instant("2023-10-30").unwrap();
    let rerun = run_interval(&lake, &pipeline, start, end).await;
    assert_eq!(rerun.status, RunStatus::Success, "{rerun:?}");
    let rows = query(&lake, daily).await;
    assert_eq!(int64s(&rows, 1), [3, 100]);
    assert_eq!(
        strings(&rows, 0),
        ["2023-10-27T00:00:00", "2023-10-29T00:00:00"]
    );
}

const DELTA_PIPELINE: &str = r#"name = "shop"

[[models]]
name = "export.store_totals"
kind = "table"
target = "delta"
sql = "store_totals.sql"
partition_by = ["store"]

[[models.audits]]
check = "unique"
columns = ["store"]

[[models]]
name = "export.sale_log"
kind = "append"
target = "delta"
sql = "sale_log.sql"

[[models]]
name = "export.latest"
kind = "incremental_by_key"
target = "delta"
sql = "latest.sql"
unique_key = ["id"]
"#;

/// Commit run r1 of the shop pipeline again: it must find its version, 1, and
/// write nothing.
async fn retry_r1(output: &icefjord_engine::DeltaOutput) {
    let version = output
        .commit(
            Vec::new(),
            icefjord_engine::StagedMode::Overwrite,
            "run:shop:r1",
        )
        .await
        .unwrap();
    assert_eq!(version, 1);
}

/// The versions in a Delta table's log, from its files.
fn delta_versions(table_dir: &Path) -> Vec<u64> {
    let mut versions: Vec<u64> = std::fs::read_dir(table_dir.join("_delta_log"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json")?.parse().ok()
        })
        .collect();
    versions.sort();
    versions
}

#[tokio::test]
async fn delta_outputs_are_written_audited_and_pinned_with_the_run() {
    let (dir, lake) = lake().await;
    add_orders(&lake, &ORDERS).await;
    let files = [
        FILES[0],
        FILES[1],
        FILES[2],
        (
            "big_stores.sql",
            "-- name = \"unified.big_stores\"\n-- kind = \"view\"\nSELECT store, sales FROM export.store_totals WHERE sales > 5",
        ),
    ];
    let pipeline = write_pipeline(&dir.path().join("shop"), DELTA_PIPELINE, &files);
    let first = Runner::new(&lake, &pipeline)
        .unwrap()
        .with_run_id(Some("r1".into()))
        .run()
        .await
        .unwrap();
    assert_eq!(first.status, RunStatus::Success, "{first:?}");

    // Read back through the lake: the Delta tables and a view over one.
    assert_first_run(&lake, "export").await;

    // On disk it is a Delta table: version 0 created it, version 1 is the run's,
    // tagged with the run's commit id; partitions are Hive-style folders.
    let table_dir = dir.path().join("lake/warehouse/export/store_totals");
    assert_eq!(delta_versions(&table_dir), [0, 1]);
    let entry =
        std::fs::read_to_string(table_dir.join("_delta_log/00000000000000000001.json")).unwrap();
    assert!(
        entry.contains("\"icefjord.commit-id\":\"run:shop:r1\""),
        "{entry}"
    );
    assert!(table_dir.join("store=1").is_dir() && table_dir.join("store=2").is_dir());
    // The history names the Delta version each output published.
    let history = query(
        &lake,
        "SELECT snapshot_id FROM icefjord.runs WHERE run_id = 'r1' AND model = 'export.store_totals'",
    )
    .await;
    assert_eq!(int64s(&history, 0), [1]);

    // The commit is idempotent by commit id: retrying r1's commit finds version 1.
    let location = lake
        .delta_table(&parse_table("export.store_totals").unwrap())
        .await
        .unwrap()
        .unwrap()
        .location;
    let output = icefjord_engine::DeltaOutput::open(lake.store(), &location)
        .await
        .unwrap()
        .unwrap();
    retry_r1(&output).await;
    assert_eq!(delta_versions(&table_dir), [0, 1]);

    // A second run: full refresh, append and merge each do their part.
    assert_second_run(&lake, &pipeline, "export").await;
    assert_eq!(delta_versions(&table_dir), [0, 1, 2]);
    // Still found behind a newer version, even by a writer opened before it.
    retry_r1(&output).await;
    assert_eq!(delta_versions(&table_dir), [0, 1, 2]);

    // A failing audit: no Delta version is written and the lake still reads the
    // last published one.
    add_orders(&lake, &[(6, 3, 100, "SALE")]).await;
    let failing = DELTA_PIPELINE.replace(
        "check = \"unique\"\ncolumns = [\"store\"]",
        "check = \"row_count_min\"\nmin = 100",
    );
    let pipeline = write_pipeline(&dir.path().join("failing"), &failing, &files);
    let third = Runner::new(&lake, &pipeline).unwrap().run().await.unwrap();
    assert_eq!(third.status, RunStatus::Failed, "{third:?}");
    assert_eq!(delta_versions(&table_dir), [0, 1, 2]);
    let totals = query(&lake, "SELECT count(*) FROM export.store_totals").await;
    assert_eq!(int64s(&totals, 0), [2], "store 3 is not published");
}

/// A pipeline of one `incremental_by_key` model `historical.by_store` keyed on
/// `store_key`, merged by `merge`, over `sql`; with `audit` appended to the model.
fn keyed_pipeline(dir: &Path, merge: &str, sql: &str, audit: &str) -> Pipeline {
    let toml = format!(
        "name = \"keys\"\n\n[[models]]\nname = \"historical.by_store\"\n\
         kind = \"incremental_by_key\"\nunique_key = [\"store_key\"]\nmerge = \"{merge}\"\n{audit}"
    );
    write_pipeline(dir, &toml, &[("by_store.sql", sql)])
}

/// Store 2's key is NULL.
const NULL_KEY_SQL: &str = "SELECT CASE WHEN store = 2 THEN NULL ELSE store END AS store_key, \
     count(*) AS events FROM raw.orders GROUP BY 1";

/// `(store_key, events)` of `historical.by_store`, NULL key first (as -1).
async fn by_store(lake: &LakeCatalog) -> Vec<(i64, i64)> {
    let rows = query(
        lake,
        "SELECT coalesce(CAST(store_key AS BIGINT), -1), CAST(events AS BIGINT) \
         FROM historical.by_store ORDER BY 1",
    )
    .await;
    int64s(&rows, 0).into_iter().zip(int64s(&rows, 1)).collect()
}

/// `historical.by_store` (see [`by_store`]) after two runs of [`NULL_KEY_SQL`]
/// over ORDERS merged by `merge`.
async fn null_key_twice(merge: &str) -> Vec<(i64, i64)> {
    let (dir, lake) = lake().await;
    add_orders(&lake, &ORDERS).await;
    let pipeline = keyed_pipeline(dir.path(), merge, NULL_KEY_SQL, "");
    for _ in 0..2 {
        let report = Runner::new(&lake, &pipeline).unwrap().run().await.unwrap();
        assert_eq!(report.status, RunStatus::Success, "{report:?}");
    }
    by_store(&lake).await
}

/// Issue 11 D: a NULL key never matched the LEFT ANTI join of `merge = "replace"`,
/// so the NULL-key row was added again by every run.
#[tokio::test]
async fn a_null_key_is_replaced_not_added_again_each_run() {
    assert_eq!(null_key_twice("replace").await, [(-1, 2), (1, 2)]);
}

#[tokio::test]
async fn a_null_key_is_summed_as_one_key() {
    assert_eq!(null_key_twice("sum").await, [(-1, 4), (1, 4)]);
}

/// A key twice in one run's new rows: which row replaces the old one would be
/// arbitrary, so the run fails naming the model and the key (first run and later).
#[tokio::test]
async fn a_key_repeated_in_one_runs_rows_fails_the_run_naming_it() {
    let (dir, lake) = lake().await;
    add_orders(&lake, &ORDERS).await;
    let once = keyed_pipeline(
        dir.path(),
        "replace",
        "SELECT DISTINCT store AS store_key, 1 AS events FROM raw.orders",
        "",
    );
    let report = Runner::new(&lake, &once).unwrap().run().await.unwrap();
    assert_eq!(report.status, RunStatus::Success, "{report:?}");
    let before = snapshot(&lake, "historical.by_store").await;
    for sql in [
        "SELECT store AS store_key, id AS events FROM raw.orders",
        "SELECT CAST(NULL AS INT) AS store_key, id AS events FROM raw.orders",
    ] {
        let twice = keyed_pipeline(dir.path(), "replace", sql, "");
        let report = Runner::new(&lake, &twice).unwrap().run().await.unwrap();
        assert_eq!(report.status, RunStatus::Failed, "{report:?}");
        let error = report.models[0].error.clone().unwrap_or_default();
        assert!(error.contains("historical.by_store"), "{error}");
        assert!(
            error.contains("store_key = 1")
                || error.contains("store_key = 2")
                || error.contains("store_key = NULL"),
            "{error}"
        );
        assert_eq!(snapshot(&lake, "historical.by_store").await, before);
    }
    // The same on a first run (nothing published yet).
    let (dir, lake) = self::lake().await;
    add_orders(&lake, &ORDERS).await;
    let twice = keyed_pipeline(
        dir.path(),
        "replace",
        "SELECT store AS store_key, id AS events FROM raw.orders",
        "",
    );
    let report = Runner::new(&lake, &twice).unwrap().run().await.unwrap();
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert!(!lake
        .exists(&parse_table("historical.by_store").unwrap())
        .await
        .unwrap());
}

/// The `unique` audit counts NULL keys as equal (IS NOT DISTINCT FROM, as the
/// merge does); dbt's `unique` test skips NULLs instead.
#[tokio::test]
async fn the_unique_audit_counts_two_null_keys_as_a_duplicate() {
    let (dir, lake) = lake().await;
    add_orders(&lake, &ORDERS).await;
    let toml =
        "name = \"keys\"\n\n[[models]]\nname = \"historical.by_store\"\nkind = \"table\"\n\n\
                [[models.audits]]\ncheck = \"unique\"\ncolumns = [\"store_key\"]\n";
    let sql = "SELECT CASE WHEN store = 2 THEN NULL ELSE id END AS store_key FROM raw.orders";
    let pipeline = write_pipeline(dir.path(), toml, &[("by_store.sql", sql)]);
    let report = Runner::new(&lake, &pipeline).unwrap().run().await.unwrap();
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    let audit = &report.models[0].audits[0];
    assert_eq!((audit.passed, audit.failing), (false, 1));
}

/// Issue 11 E: `merge = "sum"` wrapped an overflowing BIGINT sum around.
#[tokio::test]
async fn a_sum_merge_that_overflows_fails_the_run() {
    let (dir, lake) = lake().await;
    let big = |v: i64| -> Vec<arrow::array::ArrayRef> {
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(Int64Array::from(vec![v])),
        ]
    };
    let columns = [("store", PrimitiveType::Long), ("v", PrimitiveType::Long)];
    append_rows(&lake, "raw.big", &columns, big(i64::MAX)).await;
    let pipeline = keyed_pipeline(
        dir.path(),
        "sum",
        "SELECT store AS store_key, v AS events FROM raw.big",
        "",
    );
    let report = Runner::new(&lake, &pipeline).unwrap().run().await.unwrap();
    assert_eq!(report.status, RunStatus::Success, "{report:?}");
    assert_eq!(by_store(&lake).await, [(1, i64::MAX)]);
    let before = snapshot(&lake, "historical.by_store").await;
    write_rows(&lake, "raw.big", &columns, big(1), true).await;
    let report = Runner::new(&lake, &pipeline).unwrap().run().await.unwrap();
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    let error = report.models[0].error.clone().unwrap_or_default();
    assert!(error.contains("overflow"), "{error}");
    assert_eq!(snapshot(&lake, "historical.by_store").await, before);
    assert_eq!(by_store(&lake).await, [(1, i64::MAX)]);
}

/// Sales `(day, store, units)` replacing those of `raw.sales` (store 0 stands
/// for a NULL store in [`LATE_SQL`]).
async fn put_sales(lake: &LakeCatalog, sales: &[(i64, i32, i64)], overwrite: bool) {
    let columns = [
        ("day", PrimitiveType::Long),
        ("store", PrimitiveType::Int),
        ("units", PrimitiveType::Long),
    ];
    let arrays: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(sales.iter().map(|s| s.0))),
        Arc::new(Int32Array::from_iter_values(sales.iter().map(|s| s.1))),
        Arc::new(Int64Array::from_iter_values(sales.iter().map(|s| s.2))),
    ];
    write_rows(lake, "raw.sales", &columns, arrays, overwrite).await;
}

/// Daily totals keyed on `(day, store)`, one file per day.
const LATE_SQL: &str = "SELECT day, CASE WHEN store = 0 THEN NULL ELSE store END AS store, \
     sum(units) AS units, count(*) AS events FROM raw.sales GROUP BY 1, 2";

/// `(day, store (NULL as -1), units, events)` of `historical.daily`, in key order.
async fn daily(lake: &LakeCatalog, filter: &str) -> Vec<[i64; 4]> {
    let rows = query(
        lake,
        &format!(
            "SELECT day, coalesce(CAST(store AS BIGINT), -1), units, events \
             FROM historical.daily {filter}"
        ),
    )
    .await;
    (0..int64s(&rows, 0).len())
        .map(|i| [0, 1, 2, 3].map(|c| int64s(&rows, c)[i]))
        .collect()
}

/// The rows of `historical.daily` the next run of [`late_rows_merged_by`] keeps
/// as the first run wrote them, and those of the keys it adds.
const UNMATCHED: [[i64; 4]; 10] = [
    [1, 1, 10, 1],
    [1, 3, 30, 1],
    [2, 1, 11, 1],
    [3, 1, 12, 1],
    [3, 3, 32, 1],
    [5, 1, 50, 1],
    [0, 1, 3, 1],
    [2, 3, 40, 1],
    [4, 1, 9, 1],
    [6, 2, 60, 1],
];

/// The late and new sales of the next run: a NULL store and store 2 of day 2,
/// store 2 of day 1 twice (summed), a new store on day 2; new days 0, 4, 6
/// (before, between and after the published files). Days 3 and 5 get nothing.
const LATE: [(i64, i32, i64); 8] = [
    (2, 2, 100),
    (2, 0, 7),
    (2, 3, 40),
    (1, 2, 1),
    (1, 2, 2),
    (4, 1, 9),
    (6, 2, 60),
    (0, 1, 3),
];

/// Issue 12: late rows whose keys hit files that also hold other keys. Only the
/// `matched` rows change (expected values by hand); the others, and the files
/// no new key can be in, are kept exactly; new keys before, between and after
/// the files are added; the rewritten files come out sorted by the key (NULLs
/// first); the report counts the files replaced and the old rows read.
async fn late_rows_merged_by(merge: &str, late: &[(i64, i32, i64)], matched: [[i64; 4]; 3]) {
    let (dir, lake) = lake().await;
    let toml = format!(
        "name = \"late\"\n\n[[models]]\nname = \"historical.daily\"\n\
         kind = \"incremental_by_key\"\nunique_key = [\"day\", \"store\"]\nmerge = \"{merge}\"\n\
         partition_by = [\"day\"]\n"
    );
    let pipeline = write_pipeline(dir.path(), &toml, &[("daily.sql", LATE_SQL)]);
    let history = [
        (1, 1, 10),
        (1, 2, 20),
        (1, 3, 30),
        (2, 1, 11),
        (2, 2, 21),
        (2, 0, 5),
        (3, 1, 12),
        (3, 3, 32),
        (5, 1, 50),
    ];
    put_sales(&lake, &history, false).await;
    let first = Runner::new(&lake, &pipeline).unwrap().run().await.unwrap();
    assert_eq!(first.status, RunStatus::Success, "{first:?}");
    // The next run's query sees only the late and new sales.
    put_sales(&lake, late, true).await;
    let next = Runner::new(&lake, &pipeline).unwrap().run().await.unwrap();
    assert_eq!(next.status, RunStatus::Success, "{next:?}");
    let mut expected: Vec<[i64; 4]> = UNMATCHED.iter().chain(&matched).copied().collect();
    expected.sort();
    let all = daily(&lake, "ORDER BY day, store NULLS FIRST").await;
    assert_eq!(all, expected);
    // Day 2's rewritten file, in file order.
    let day2: Vec<[i64; 4]> = expected.into_iter().filter(|r| r[0] == 2).collect();
    assert_eq!(daily(&lake, "WHERE day = 2").await, day2);
    // The files of days 1 and 2 were replaced, their 6 rows read.
    let report = &next.models[0];
    assert_eq!(report.files_deleted, Some(2), "{report:?}");
    assert_eq!(report.rows_read, Some(late.len() as u64 + 6), "{report:?}");
}

#[tokio::test]
async fn late_rows_sum_into_their_keys_and_leave_the_others_exact() {
    let matched = [[1, 2, 23, 3], [2, -1, 12, 2], [2, 2, 121, 2]];
    late_rows_merged_by("sum", &LATE, matched).await;
}

#[tokio::test]
async fn late_rows_replace_their_keys_and_leave_the_others_exact() {
    // `replace` needs one new row per key: day 1's store 2 once.
    let late: Vec<_> = LATE.iter().copied().filter(|s| *s != (1, 2, 2)).collect();
    let matched = [[1, 2, 1, 1], [2, -1, 7, 1], [2, 2, 100, 1]];
    late_rows_merged_by("replace", &late, matched).await;
}
