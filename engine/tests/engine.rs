//! The engine over a real lake on a temporary directory: time travel and the writer.

#![allow(clippy::unwrap_used)]

use arrow::array::{Array, Int64Array};
use icefjord_catalog::{parse_table, CatalogError, LakeCatalog, LakeConfig};
use icefjord_engine::demo::Demo;
use icefjord_engine::{AsOf, EngineError, LakeSession};

#[path = "engine/encodings.rs"]
mod encodings;
#[path = "engine/pruning.rs"]
mod pruning;
#[path = "engine/schema_evolution.rs"]
mod schema_evolution;
#[path = "engine/time_travel.rs"]
mod time_travel;

async fn count(session: &LakeSession, name: &str) -> i64 {
    let batches = session
        .query(&format!("SELECT count(*) FROM {name}"))
        .await
        .unwrap();
    first_i64(&batches)
}

/// The first value of the first column, a long.
fn first_i64(batches: &[arrow::array::RecordBatch]) -> i64 {
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

/// A fresh local lake (keep the directory alive as long as the lake).
async fn lake() -> (tempfile::TempDir, LakeCatalog) {
    let dir = tempfile::tempdir().unwrap();
    let lake = LakeCatalog::open(&LakeConfig::local(dir.path()).unwrap())
        .await
        .unwrap();
    (dir, lake)
}

#[tokio::test]
async fn reads_at_a_snapshot_id_or_a_timestamp() {
    let (_dir, lake) = lake().await;
    let first = Demo::new(&lake).with_events(1_000).run().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = Demo::new(&lake).with_events(2_500).run().await.unwrap();
    assert_ne!(first.raw_snapshot_id, second.raw_snapshot_id);

    let raw = parse_table("raw.retail_events").unwrap();
    let session = LakeSession::new(&lake).await.unwrap();
    assert_eq!(count(&session, "raw.retail_events").await, 2_500);

    session
        .register_as("at_first", &raw, AsOf::Snapshot(first.raw_snapshot_id))
        .await
        .unwrap();
    assert_eq!(count(&session, "at_first").await, 1_000);

    let table = lake.load(&raw).await.unwrap();
    let first_ms = table
        .metadata()
        .snapshot_by_id(first.raw_snapshot_id)
        .unwrap()
        .timestamp_ms();
    session
        .register_as("at_time", &raw, AsOf::Timestamp(first_ms))
        .await
        .unwrap();
    assert_eq!(count(&session, "at_time").await, 1_000);

    let err = session
        .table(&raw, AsOf::Timestamp(first_ms - 60_000))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Catalog(CatalogError::SnapshotNotFound { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("raw.retail_events"), "{err}");
    let err = session.table(&raw, AsOf::Snapshot(42)).await.unwrap_err();
    assert!(err.to_string().contains("42"), "{err}");
}

#[tokio::test]
async fn partitioned_writes_put_one_day_in_each_file() {
    let (_dir, lake) = lake().await;
    // 30 000 events at ~10 s apart span 4 days.
    Demo::new(&lake).with_events(30_000).run().await.unwrap();
    let session = LakeSession::new(&lake).await.unwrap();
    let days = session
        .query("SELECT count(DISTINCT date_trunc('day', event_time)) FROM raw.retail_events")
        .await
        .unwrap();
    let days = days[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    let table = lake
        .load(&parse_table("raw.retail_events").unwrap())
        .await
        .unwrap();
    let entries =
        icefjord_catalog::commit::live_entries(&table, table.metadata().current_snapshot_id())
            .await
            .unwrap();
    assert_eq!(entries.len() as i64, days, "one file per day partition");
    let partitions: std::collections::HashSet<_> = entries
        .iter()
        .map(|e| e.data_file().partition().clone())
        .collect();
    assert_eq!(partitions.len() as i64, days);
    let rows: u64 = entries.iter().map(|e| e.record_count()).sum();
    assert_eq!(rows, 30_000);
}

#[test]
fn writes_that_do_not_fit_name_the_column() {
    use std::sync::Arc;

    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    let table_schema = Arc::new(Schema::new(vec![
        Field::new("quantity", DataType::Int32, false),
        Field::new("note", DataType::Utf8, true),
    ]));
    let input = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "quantity",
            DataType::Utf8,
            false,
        )])),
        vec![Arc::new(StringArray::from(vec!["3", "lots"]))],
    )
    .unwrap();
    let err = icefjord_engine::write::conform("raw.t", &table_schema, &input)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("raw.t") && err.contains("column quantity"),
        "{err}"
    );

    let ok = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "quantity",
            DataType::Utf8,
            false,
        )])),
        vec![Arc::new(StringArray::from(vec!["3"]))],
    )
    .unwrap();
    let conformed = icefjord_engine::write::conform("raw.t", &table_schema, &ok).unwrap();
    assert_eq!(conformed.schema(), table_schema);
    assert_eq!(
        conformed.column(1).null_count(),
        1,
        "missing optional column is null"
    );
}

/// Create `ns.name` with one long column `n` (no rows).
async fn long_table(lake: &LakeCatalog, name: &str) -> iceberg::TableIdent {
    use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
    let ident = parse_table(name).unwrap();
    lake.create(
        &ident,
        icefjord_catalog::TableSpec {
            schema: Schema::builder()
                .with_fields(vec![NestedField::required(
                    1,
                    "n",
                    Type::Primitive(PrimitiveType::Long),
                )
                .into()])
                .build()
                .unwrap(),
            partition_spec: None,
            properties: Default::default(),
        },
    )
    .await
    .unwrap();
    ident
}

/// Append `n` to every table in one commit.
async fn append_everywhere(lake: &LakeCatalog, tables: &[&iceberg::TableIdent], n: i64) {
    use icefjord_catalog::{CommitId, TableWrite};
    let mut commit = lake.commit(CommitId::mint());
    for ident in tables {
        let table = lake.load(ident).await.unwrap();
        let files = data_files(&table, vec![std::sync::Arc::new(Int64Array::from(vec![n]))]).await;
        commit = commit.with_write(TableWrite::append((*ident).clone(), files));
    }
    commit.execute().await.unwrap();
}

/// Uncommitted data files of `table` holding `columns` (in the table's column order).
async fn data_files(
    table: &iceberg::table::Table,
    columns: Vec<arrow::array::ArrayRef>,
) -> Vec<iceberg::spec::DataFile> {
    let mut writer = icefjord_engine::TableWriter::new(table).await.unwrap();
    let schema = writer.schema().clone();
    writer
        .write(arrow::array::RecordBatch::try_new(schema, columns).unwrap())
        .await
        .unwrap();
    writer.close().await.unwrap().0
}

#[tokio::test]
async fn a_session_reads_every_table_as_of_one_catalog_state() {
    let (_dir, lake) = lake().await;
    let a = long_table(&lake, "historical.a").await;
    let b = long_table(&lake, "historical.b").await;
    append_everywhere(&lake, &[&a, &b], 1).await;
    let session = LakeSession::new(&lake).await.unwrap();
    // Another writer commits to both tables after the session started.
    append_everywhere(&lake, &[&a, &b], 2).await;
    let pair =
        "SELECT (SELECT count(*) FROM historical.a) * 10 + (SELECT count(*) FROM historical.b)";
    assert_eq!(
        first_i64(&session.query(pair).await.unwrap()),
        11,
        "both as of the start"
    );
    session.refresh().await.unwrap();
    assert_eq!(
        first_i64(&session.query(pair).await.unwrap()),
        22,
        "both as of the refresh"
    );

    // Views published with a commit are part of the state too.
    publish_view(
        &lake,
        &a,
        "unified.both",
        "SELECT n FROM historical.a UNION ALL SELECT n FROM historical.b",
    )
    .await;
    assert!(session.query("SELECT * FROM unified.both").await.is_err());
    session.refresh().await.unwrap();
    assert_eq!(count(&session, "unified.both").await, 4);
}

/// Publish view `name` as `sql`, in a commit (with no files) to `table`.
async fn publish_view(lake: &LakeCatalog, table: &iceberg::TableIdent, name: &str, sql: &str) {
    use icefjord_catalog::{CommitId, TableWrite, ViewWrite};
    lake.commit(CommitId::mint())
        .with_write(TableWrite::append(table.clone(), vec![]))
        .with_view(ViewWrite::new(parse_table(name).unwrap(), sql))
        .execute()
        .await
        .unwrap();
}

/// Append sink-shaped rows `(partition, offset)` of topic `t` to `raw.events`.
async fn append_positions(lake: &LakeCatalog, rows: &[(i32, i64)]) -> i64 {
    use arrow::array::{Int32Array, StringArray};
    use icefjord_catalog::{CommitId, TableWrite};
    let ident = parse_table("raw.events").unwrap();
    let table = lake
        .load_or_create(&ident, || {
            use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
            Ok(icefjord_catalog::TableSpec {
                schema: Schema::builder()
                    .with_fields(vec![
                        NestedField::required(
                            1,
                            "_kafka_topic",
                            Type::Primitive(PrimitiveType::String),
                        )
                        .into(),
                        NestedField::required(
                            2,
                            "_kafka_partition",
                            Type::Primitive(PrimitiveType::Int),
                        )
                        .into(),
                        NestedField::required(
                            3,
                            "_kafka_offset",
                            Type::Primitive(PrimitiveType::Long),
                        )
                        .into(),
                    ])
                    .build()
                    .unwrap(),
                partition_spec: None,
                properties: Default::default(),
            })
        })
        .await
        .unwrap();
    let files = data_files(
        &table,
        vec![
            std::sync::Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "t"))),
            std::sync::Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.0))),
            std::sync::Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .await;
    let report = lake
        .commit(CommitId::mint())
        .with_write(TableWrite::append(ident, files))
        .execute()
        .await
        .unwrap();
    report.tables[0].snapshot_id
}

#[tokio::test]
async fn since_tables_read_the_rows_past_an_outputs_boundary_from_newer_files() {
    use icefjord_catalog::{CommitId, TableWrite};
    let (_dir, lake) = lake().await;
    // (3, 9) could not be there by the sink's invariants (a partition the boundary
    // does not name has no rows yet): it shows that files up to the snapshot the
    // output read are skipped, not merely filtered.
    let read = append_positions(&lake, &[(0, 0), (0, 1), (1, 0), (3, 9)]).await;
    // An output that read that snapshot: its boundary is t/0 → 2, t/1 → 1.
    let output = long_table(&lake, "historical.out").await;
    lake.commit(CommitId::mint())
        .with_write(
            TableWrite::append(output.clone(), vec![])
                .with_property("icefjord.boundary.raw.events", r#"[["t",0,2],["t",1,1]]"#)
                .with_property("icefjord.input.raw.events", read.to_string()),
        )
        .execute()
        .await
        .unwrap();
    // New rows, plus an old position again (as a rewritten file would hold it).
    append_positions(&lake, &[(0, 2), (1, 1), (2, 0), (0, 1)]).await;
    let session = LakeSession::new(&lake).await.unwrap();
    let rows = session
        .query(
            r#"SELECT _kafka_partition * 100 + _kafka_offset AS p
               FROM raw."events@since:historical.out" ORDER BY p"#,
        )
        .await
        .unwrap();
    let positions: Vec<i64> = rows
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(
        positions,
        [2, 101, 200],
        "past the boundary, once each, newer files only"
    );
    // An output with no boundary yet: every row is unread.
    assert_eq!(
        count(&session, r#"raw."events@since:historical.nothing""#).await,
        8
    );
}

/// Create `ns.name` with columns `ts` (timestamp) and `n` (long), partitioned by
/// `day(ts)`.
async fn daily_table(lake: &LakeCatalog, name: &str) -> iceberg::TableIdent {
    use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
    let ident = parse_table(name).unwrap();
    let schema = Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "ts", Type::Primitive(PrimitiveType::Timestamp)).into(),
            NestedField::required(2, "n", Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .unwrap();
    let partition_spec =
        icefjord_engine::schema::partition_spec(name, &["day(ts)".to_string()], &schema).unwrap();
    lake.create(
        &ident,
        icefjord_catalog::TableSpec {
            schema,
            partition_spec: Some(partition_spec),
            properties: Default::default(),
        },
    )
    .await
    .unwrap();
    ident
}

/// A batch of `daily_table`'s schema: one row per `(day, n)`, at noon of `day`.
fn daily_batch(
    schema: &arrow::datatypes::SchemaRef,
    rows: &[(i64, i64)],
) -> arrow::array::RecordBatch {
    use arrow::array::TimestampMicrosecondArray;
    const DAY_US: i64 = 86_400_000_000;
    let ts = TimestampMicrosecondArray::from_iter_values(
        rows.iter().map(|(day, _)| day * DAY_US + DAY_US / 2),
    );
    let n = Int64Array::from_iter_values(rows.iter().map(|(_, n)| *n));
    arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![std::sync::Arc::new(ts), std::sync::Arc::new(n)],
    )
    .unwrap()
}

#[tokio::test]
async fn partitioned_writes_close_finished_partitions_and_keep_spread_ones_open() {
    let (_dir, lake) = lake().await;
    let ident = daily_table(&lake, "t.daily").await;
    let table = lake.load(&ident).await.unwrap();

    // Clustered input: 20 days, one after the other, 1 000 rows each in batches of
    // 250. A day no row came for during 600 rows is finished.
    let mut writer = icefjord_engine::TableWriter::new(&table)
        .await
        .unwrap()
        .with_cold_rows(600);
    let schema = writer.schema().clone();
    let mut most_open = 0;
    for day in 0..20 {
        for chunk in 0..4 {
            let rows: Vec<_> = (0..250).map(|i| (day, chunk * 250 + i)).collect();
            writer.write(daily_batch(&schema, &rows)).await.unwrap();
            most_open = most_open.max(writer.open_partitions());
        }
    }
    let (files, metrics) = writer.close().await.unwrap();
    assert_eq!(metrics.rows, 20_000);
    assert!(
        most_open <= 3,
        "clustered input kept {most_open} partitions open"
    );
    let partitions: std::collections::HashSet<_> =
        files.iter().map(|f| f.partition().clone()).collect();
    assert_eq!(files.len(), 20, "one file per day");
    assert_eq!(partitions.len(), 20);

    // Spread input: every batch holds rows of all 20 days, so none goes cold, and
    // each day still gets one file.
    let mut writer = icefjord_engine::TableWriter::new(&table)
        .await
        .unwrap()
        .with_cold_rows(600);
    let mut least_open = usize::MAX;
    for round in 0..20 {
        let rows: Vec<_> = (0..20)
            .flat_map(|day| (0..50).map(move |i| (day, round * 50 + i)))
            .collect();
        writer.write(daily_batch(&schema, &rows)).await.unwrap();
        least_open = least_open.min(writer.open_partitions());
    }
    let (files, metrics) = writer.close().await.unwrap();
    assert_eq!(metrics.rows, 20_000);
    assert_eq!(least_open, 20);
    assert_eq!(files.len(), 20, "one file per day");
    let rows: u64 = files.iter().map(|f| f.record_count()).sum();
    assert_eq!(rows, 20_000);
}

/// `query` through the lake session and through stock DataFusion (no Icefjord
/// optimizer rules) over the same table, both sorted: (lake plan, lake rows, stock rows).
async fn lake_and_stock(
    lake: &LakeCatalog,
    table: &str,
    query: &str,
) -> (String, Vec<String>, Vec<String>) {
    use datafusion::prelude::{SessionConfig, SessionContext};
    let config = SessionConfig::new().with_target_partitions(2);
    let session = LakeSession::with_config(lake, config.clone())
        .await
        .unwrap();
    let plan = session.query(&format!("EXPLAIN {query}")).await.unwrap();
    let plan = arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string();
    let rows = |batches: &[arrow::array::RecordBatch]| {
        let text = arrow::util::pretty::pretty_format_batches(batches)
            .unwrap()
            .to_string();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("| "))
            .skip(1)
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    let ours = rows(&session.query(query).await.unwrap());

    let ident = parse_table(table).unwrap();
    let provider = session.table(&ident, AsOf::Current).await.unwrap();
    let stock = SessionContext::new_with_config(config);
    let store = lake.store();
    stock
        .runtime_env()
        .register_object_store(&store.base_url().unwrap(), store.client().unwrap());
    stock
        .register_table("t", std::sync::Arc::new(provider))
        .unwrap();
    let theirs = rows(
        &stock
            .sql(&query.replace(table, "t"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap(),
    );
    (plan, ours, theirs)
}

#[tokio::test]
async fn aggregations_keyed_within_a_partition_run_one_partition_at_a_time() {
    let (_dir, lake) = lake().await;
    // Events ~10 s apart: 12 day partitions, two runs' files in most of them.
    Demo::new(&lake).with_events(60_000).run().await.unwrap();
    Demo::new(&lake)
        .with_events(100_000)
        .with_seed(3)
        .run()
        .await
        .unwrap();

    // The hour pins the day partition: aligned, same rows as stock DataFusion.
    let hourly = "SELECT date_trunc('hour', event_time) AS hour, store_id, count(*) AS n, \
                  sum(quantity) AS q FROM raw.retail_events GROUP BY 1, 2";
    let (plan, ours, theirs) = lake_and_stock(&lake, "raw.retail_events", hourly).await;
    assert!(plan.contains("PartitionAlignedExec"), "{plan}");
    assert!(plan.contains("__icefjord_partition"), "{plan}");
    assert!(ours.len() > 500, "{} groups", ours.len());
    assert_eq!(ours, theirs);

    // The raw timestamp pins it too.
    let exact = "SELECT event_time, count(*) AS n FROM raw.retail_events GROUP BY event_time";
    let (plan, ours, theirs) = lake_and_stock(&lake, "raw.retail_events", exact).await;
    assert!(plan.contains("PartitionAlignedExec"), "{plan}");
    assert_eq!(ours, theirs);

    // Aligned aggregations inside bigger queries: their output partitioning is
    // not DataFusion's hash partitioning, so a join above must repartition.
    for query in [
        "SELECT a.hour, a.n, b.stores FROM (SELECT date_trunc('hour', event_time) AS hour, \
         count(*) AS n FROM raw.retail_events GROUP BY 1) a JOIN (SELECT date_trunc('hour', \
         event_time) AS hour, count(DISTINCT store_id) AS stores FROM raw.retail_events \
         GROUP BY 1) b ON a.hour = b.hour",
        "SELECT date_trunc('minute', event_time) AS m, sum(quantity) AS q FROM raw.retail_events \
         WHERE store_id < 5 GROUP BY 1 HAVING count(*) > 1 ORDER BY q DESC, m LIMIT 20",
    ] {
        let (plan, ours, theirs) = lake_and_stock(&lake, "raw.retail_events", query).await;
        assert!(plan.contains("PartitionAlignedExec"), "{query}: {plan}");
        assert!(!ours.is_empty());
        assert_eq!(ours, theirs, "{query}");
    }

    // A month spans day partitions, a store is not a time: left to DataFusion.
    for query in [
        "SELECT date_trunc('month', event_time) AS m, count(*) AS n FROM raw.retail_events GROUP BY 1",
        "SELECT date_trunc('week', event_time) AS w, count(*) AS n FROM raw.retail_events GROUP BY 1",
        "SELECT store_id, sum(quantity) AS q FROM raw.retail_events GROUP BY 1",
    ] {
        let (plan, ours, theirs) = lake_and_stock(&lake, "raw.retail_events", query).await;
        assert!(!plan.contains("PartitionAlignedExec"), "{query}: {plan}");
        assert!(!ours.is_empty());
        assert_eq!(ours, theirs, "{query}");
    }
}

/// `daily_table` `name` holding `rows` (one commit).
async fn daily_rows(lake: &LakeCatalog, name: &str, rows: &[(i64, i64)]) {
    let ident = daily_table(lake, name).await;
    daily_append(lake, &ident, rows).await;
}

/// Append `rows` (see [`daily_batch`]) to `ident` in one commit.
async fn daily_append(lake: &LakeCatalog, ident: &iceberg::TableIdent, rows: &[(i64, i64)]) {
    use icefjord_catalog::{CommitId, TableWrite};
    let table = lake.load(ident).await.unwrap();
    let mut writer = icefjord_engine::TableWriter::new(&table).await.unwrap();
    let schema = writer.schema().clone();
    writer.write(daily_batch(&schema, rows)).await.unwrap();
    let (files, _) = writer.close().await.unwrap();
    lake.commit(CommitId::mint())
        .with_write(TableWrite::append(ident.clone(), files))
        .execute()
        .await
        .unwrap();
}

#[tokio::test]
async fn day_partitions_before_1970_are_not_aligned() {
    let (_dir, lake) = lake().await;
    // iceberg-rust's day transform may file a pre-1970 row under the next day, so
    // such partitions do not promise an order.
    let before: Vec<_> = (-4..2)
        .flat_map(|day| (0..10).map(move |n| (day, n)))
        .collect();
    daily_rows(&lake, "t.old", &before).await;
    let after: Vec<_> = (0..6)
        .flat_map(|day| (0..10).map(move |n| (day, n)))
        .collect();
    daily_rows(&lake, "t.new", &after).await;
    for (table, aligned) in [("t.old", false), ("t.new", true)] {
        let query =
            format!("SELECT date_trunc('hour', ts) AS h, count(*) AS c, sum(n) AS s FROM {table} GROUP BY 1");
        let (plan, ours, theirs) = lake_and_stock(&lake, table, &query).await;
        assert_eq!(
            plan.contains("PartitionAlignedExec"),
            aligned,
            "{table}: {plan}"
        );
        assert_eq!(ours.len(), 6, "{table}");
        assert_eq!(ours, theirs, "{table}");
    }
}

/// Create `ns.name` with one optional string column `s` (no rows).
async fn string_table(lake: &LakeCatalog, name: &str) -> iceberg::TableIdent {
    use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
    let ident = parse_table(name).unwrap();
    let schema = Schema::builder()
        .with_fields(vec![NestedField::optional(
            1,
            "s",
            Type::Primitive(PrimitiveType::String),
        )
        .into()])
        .build()
        .unwrap();
    let spec = icefjord_catalog::TableSpec {
        schema,
        partition_spec: None,
        properties: Default::default(),
    };
    lake.create(&ident, spec).await.unwrap();
    ident
}

/// Issue 11 B: a first row group of strings longer than Parquet's 64-byte
/// statistics and a second holding 'a' gave bounds lower = upper = 'a', and a
/// reader filtering `s > 'b'` skipped the file.
#[tokio::test]
async fn long_strings_in_one_row_group_keep_the_file_bounds_true() {
    use iceberg::expr::Reference;
    use iceberg::spec::Datum;
    use icefjord_catalog::{CommitId, TableWrite};
    let (_dir, lake) = lake().await;
    let ident = string_table(&lake, "historical.long_strings").await;
    let table = lake.load(&ident).await.unwrap();
    let long = format!("c{}", "x".repeat(99));
    let mut writer = icefjord_engine::TableWriter::new(&table).await.unwrap();
    let schema = writer.schema().clone();
    let rows = vec![Some(long.as_str()); 1 << 20]
        .into_iter()
        .chain([Some("a"), None])
        .collect::<arrow::array::StringArray>();
    let batch =
        arrow::array::RecordBatch::try_new(schema, vec![std::sync::Arc::new(rows)]).unwrap();
    writer.write(batch).await.unwrap();
    let (two_groups, _) = writer.close().await.unwrap();
    assert_eq!(two_groups.len(), 1);
    let file = &two_groups[0];
    assert_eq!(file.lower_bounds().get(&1), Some(&Datum::string("a")));
    // 16 code points (Iceberg's truncate(16)), the last one incremented.
    assert_eq!(
        file.upper_bounds().get(&1),
        Some(&Datum::string("cxxxxxxxxxxxxxxy"))
    );
    assert_eq!(file.null_value_counts().get(&1), Some(&1));
    lake.commit(CommitId::mint())
        .with_write(TableWrite::append(ident.clone(), two_groups))
        .execute()
        .await
        .unwrap();
    // iceberg-rust's own file pruning (the inclusive metrics evaluator, as
    // PyIceberg's) keeps the file for values past the truncated bounds.
    let table = lake.load(&ident).await.unwrap();
    for (filter, kept) in [
        (Reference::new("s").greater_than(Datum::string("b")), 1),
        (
            Reference::new("s").equal_to(Datum::string(long.as_str())),
            1,
        ),
        (
            Reference::new("s").greater_than(Datum::string(long.as_str())),
            1,
        ),
        (Reference::new("s").less_than(Datum::string("a")), 0),
        (
            Reference::new("s").greater_than(Datum::string("cxxxxxxxxxxxxxxy")),
            0,
        ),
    ] {
        let scan = table.scan().with_filter(filter.clone()).build().unwrap();
        let files: Vec<_> = futures::TryStreamExt::try_collect(scan.plan_files().await.unwrap())
            .await
            .unwrap();
        assert_eq!(files.len(), kept, "files kept for {filter}");
    }
}

/// Issue 12: a `@since:` read of a table of many small commits (the sink's
/// layout) planned by reading every manifest of the snapshot, ~65% of a view
/// query's CPU at 500 commits. Manifests added up to the output's input snapshot
/// cannot hold newer files: the read must not open them.
#[tokio::test]
async fn since_tables_do_not_read_the_manifests_before_the_boundary() {
    use icefjord_catalog::{CommitId, TableWrite};
    let (_dir, lake) = lake().await;
    append_positions(&lake, &[(0, 0)]).await;
    let read = append_positions(&lake, &[(0, 1)]).await;
    let output = long_table(&lake, "historical.out").await;
    lake.commit(CommitId::mint())
        .with_write(
            TableWrite::append(output, vec![])
                .with_property("icefjord.boundary.raw.events", r#"[["t",0,2]]"#)
                .with_property("icefjord.input.raw.events", read.to_string()),
        )
        .execute()
        .await
        .unwrap();
    append_positions(&lake, &[(0, 2), (0, 3)]).await;
    // Remove the manifests of the two commits the output read.
    let table = lake
        .load(&parse_table("raw.events").unwrap())
        .await
        .unwrap();
    let metadata = table.metadata();
    let read_sequence = metadata.snapshot_by_id(read).unwrap().sequence_number();
    let head = metadata.current_snapshot().unwrap();
    let list = table.manifest_list_reader(head).load().await.unwrap();
    let mut removed = 0;
    for manifest in list.entries() {
        if manifest.sequence_number <= read_sequence {
            let path = manifest.manifest_path.trim_start_matches("file://");
            std::fs::remove_file(path).unwrap();
            removed += 1;
        }
    }
    assert_eq!(removed, 2);
    let session = LakeSession::new(&lake).await.unwrap();
    assert_eq!(
        count(&session, r#"raw."events@since:historical.out""#).await,
        2
    );
    // A full read needs them (so the read above really skipped them).
    assert!(session
        .query("SELECT count(*) FROM raw.events")
        .await
        .is_err());
}
