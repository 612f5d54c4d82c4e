//! Issue 13, item 3: Spark's names for a table's versions (`raw.t.snapshot_id_…`,
//! `at_timestamp_…`, `branch_…`, `tag_…`) and metadata tables (`raw.t.snapshots`,
//! …), resolved by the session. Expected values come from what each test wrote.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use iceberg::spec::{SnapshotReference, SnapshotRetention};
use iceberg::{Catalog, TableIdent};
use icefjord_catalog::{CommitId, LakeCatalog, TableWrite};
use icefjord_engine::LakeSession;

use super::{daily_append, daily_table, data_files, first_i64, lake, long_table, publish_view};

/// Append `values` to `ident` (one commit, one file); the new snapshot id.
async fn append(lake: &LakeCatalog, ident: &TableIdent, values: &[i64], branch: &str) -> i64 {
    let table = lake.load(ident).await.unwrap();
    let files = data_files(&table, vec![Arc::new(Int64Array::from(values.to_vec()))]).await;
    let report = lake
        .commit(CommitId::mint())
        .with_write(TableWrite::append(ident.clone(), files).to_branch(branch))
        .execute()
        .await
        .unwrap();
    // Commits a few milliseconds apart have distinct times in the snapshot log.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    report.tables[0].snapshot_id
}

/// `raw.t` with three snapshots of `main`: {1}, {1, 2, 3}, {1, …, 6}.
async fn three_snapshots(lake: &LakeCatalog) -> (TableIdent, [i64; 3]) {
    let ident = long_table(lake, "raw.t").await;
    let first = append(lake, &ident, &[1], "main").await;
    let second = append(lake, &ident, &[2, 3], "main").await;
    let third = append(lake, &ident, &[4, 5, 6], "main").await;
    (ident, [first, second, third])
}

/// Every row of `sql`'s result, its values joined with `|`.
async fn lines(session: &LakeSession, sql: &str) -> Vec<String> {
    let batches = session.query(sql).await.unwrap();
    text(&batches)
}

fn text(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let values: Vec<_> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            rows.push(values.join("|"));
        }
    }
    rows
}

async fn count_and_sum(session: &LakeSession, name: &str) -> String {
    lines(session, &format!("SELECT count(*), sum(n) FROM {name}"))
        .await
        .remove(0)
}

async fn error(session: &LakeSession, sql: &str) -> String {
    match session.query(sql).await {
        Ok(batches) => panic!("{sql} returned {:?}", text(&batches)),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn each_snapshot_id_and_time_reads_that_snapshots_rows() {
    let (_dir, lake) = lake().await;
    let (ident, ids) = three_snapshots(&lake).await;
    let session = LakeSession::new(&lake).await.unwrap();
    for (id, expected) in ids.iter().zip(["1|1", "3|6", "6|21"]) {
        assert_eq!(
            count_and_sum(&session, &format!("raw.t.snapshot_id_{id}")).await,
            expected
        );
    }
    assert_eq!(count_and_sum(&session, "raw.t").await, "6|21");

    let table = lake.load(&ident).await.unwrap();
    let at = |id: i64| table.metadata().snapshot_by_id(id).unwrap().timestamp_ms();
    let between = (at(ids[1]) + at(ids[2])) / 2;
    assert!(at(ids[1]) < between && between < at(ids[2]));
    assert_eq!(
        count_and_sum(&session, &format!("raw.t.at_timestamp_{between}")).await,
        "3|6"
    );
    assert_eq!(
        count_and_sum(&session, &format!("raw.t.at_timestamp_{}", at(ids[0]))).await,
        "1|1",
        "a snapshot is current from its own time on"
    );

    let before = at(ids[0]) - 1;
    let err = error(
        &session,
        &format!("SELECT * FROM raw.t.at_timestamp_{before}"),
    )
    .await;
    assert!(
        err.contains("raw.t") && err.contains(&before.to_string()),
        "{err}"
    );
    let err = error(&session, "SELECT * FROM raw.t.snapshot_id_42").await;
    assert!(err.contains("raw.t") && err.contains("42"), "{err}");
    let err = error(&session, "SELECT * FROM raw.t.snapshot_id_x").await;
    assert!(err.contains("snapshot_id_<id>"), "{err}");
}

/// Point tag `name` of `ident` at `snapshot`, as another engine (Spark's
/// `ALTER TABLE … CREATE TAG`) would: a new metadata file, registered in place.
async fn tag(lake: &LakeCatalog, ident: &TableIdent, name: &str, snapshot: i64) {
    let table = lake.load(ident).await.unwrap();
    let location = table.metadata_location().unwrap().to_string();
    let metadata = iceberg::spec::TableMetadataBuilder::new_from_metadata(
        table.metadata().clone(),
        Some(location.clone()),
    )
    .set_ref(
        name,
        SnapshotReference::new(
            snapshot,
            SnapshotRetention::Tag {
                max_ref_age_ms: None,
            },
        ),
    )
    .unwrap()
    .build()
    .unwrap()
    .metadata;
    let tagged = location.replace(".metadata.json", "-tagged.metadata.json");
    table
        .file_io()
        .new_output(&tagged)
        .unwrap()
        .write(serde_json::to_vec(&metadata).unwrap().into())
        .await
        .unwrap();
    lake.drop_table(ident).await.unwrap();
    lake.register_table(ident, tagged).await.unwrap();
}

#[tokio::test]
async fn branches_and_tags_read_the_snapshot_they_point_at() {
    let (_dir, lake) = lake().await;
    let (ident, ids) = three_snapshots(&lake).await;
    // A branch from main's head, one commit ahead of it.
    append(&lake, &ident, &[100], "audit").await;
    tag(&lake, &ident, "v1", ids[0]).await;
    let session = LakeSession::new(&lake).await.unwrap();
    assert_eq!(count_and_sum(&session, "raw.t.branch_audit").await, "7|121");
    assert_eq!(count_and_sum(&session, "raw.t.branch_main").await, "6|21");
    assert_eq!(count_and_sum(&session, "raw.t.tag_v1").await, "1|1");
    assert_eq!(count_and_sum(&session, "raw.t").await, "6|21");

    let err = error(&session, "SELECT * FROM raw.t.tag_v2").await;
    assert!(err.contains("raw.t") && err.contains("v2"), "{err}");
    let err = error(&session, "SELECT * FROM raw.t.branch_v1").await;
    assert!(
        err.contains("raw.t") && err.contains("v1 is a tag"),
        "{err}"
    );
}

#[tokio::test]
async fn versions_of_views_and_unknown_tables_are_errors() {
    let (_dir, lake) = lake().await;
    let (ident, _) = three_snapshots(&lake).await;
    publish_view(&lake, &ident, "unified.v", "SELECT n FROM raw.t").await;
    let session = LakeSession::new(&lake).await.unwrap();
    assert_eq!(count_and_sum(&session, "unified.v").await, "6|21");
    for suffix in ["snapshots", "snapshot_id_1", "tag_x"] {
        let err = error(&session, &format!("SELECT * FROM unified.v.{suffix}")).await;
        assert!(err.contains("unified.v is a view"), "{err}");
    }
    let err = error(&session, "SELECT * FROM raw.nope.snapshots").await;
    assert!(err.contains("raw.nope.snapshots"), "{err}");
    // Pseudo-catalogs are not listed anywhere.
    assert_eq!(
        lines(
            &session,
            "SELECT DISTINCT table_catalog FROM information_schema.tables"
        )
        .await,
        ["icefjord"]
    );
}

#[tokio::test]
async fn snapshots_history_and_refs_list_the_tables_metadata() {
    let (_dir, lake) = lake().await;
    let (ident, ids) = three_snapshots(&lake).await;
    let branch_head = append(&lake, &ident, &[100], "audit").await;
    let session = LakeSession::new(&lake).await.unwrap();
    // A commit after the session started is not in its metadata tables.
    append(&lake, &ident, &[7], "main").await;

    let [a, b, c] = ids;
    assert_eq!(
        lines(
            &session,
            "SELECT snapshot_id, parent_id, operation FROM raw.t.snapshots ORDER BY committed_at"
        )
        .await,
        [
            format!("{a}|NULL|append"),
            format!("{b}|{a}|append"),
            format!("{c}|{b}|append"),
            format!("{branch_head}|{c}|append"),
        ]
    );
    let summaries = lines(
        &session,
        "SELECT summary FROM raw.t.snapshots ORDER BY committed_at",
    )
    .await;
    let added: Vec<_> = summaries
        .iter()
        .map(|s| {
            let json: serde_json::Value = serde_json::from_str(s).unwrap();
            json["added-records"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(added, ["1", "2", "3", "1"]);

    // History is main's log: the branch commit never became main's current.
    assert_eq!(
        lines(
            &session,
            "SELECT snapshot_id, parent_id, is_current_ancestor FROM raw.t.history \
             ORDER BY made_current_at"
        )
        .await,
        [
            format!("{a}|NULL|true"),
            format!("{b}|{a}|true"),
            format!("{c}|{b}|true"),
        ]
    );
    assert_eq!(
        lines(
            &session,
            "SELECT name, type, snapshot_id FROM raw.t.refs ORDER BY name"
        )
        .await,
        [
            format!("audit|BRANCH|{branch_head}"),
            format!("main|BRANCH|{c}"),
        ]
    );
    // Joined with the table itself, in one query: the same state.
    assert_eq!(
        lines(
            &session,
            "SELECT (SELECT count(*) FROM raw.t), (SELECT max(snapshot_id) FILTER \
             (WHERE name = 'main') FROM raw.t.refs)"
        )
        .await,
        [format!("6|{c}")]
    );
}

#[tokio::test]
async fn files_manifests_and_partitions_describe_the_current_snapshot() {
    let (_dir, lake) = lake().await;
    let ident = daily_table(&lake, "raw.daily").await;
    // Two commits, each one file per day: days 0, 1 then days 1, 2.
    daily_append(&lake, &ident, &[(0, 1), (0, 2), (1, 3)]).await;
    daily_append(&lake, &ident, &[(1, 4), (2, 5), (2, 6), (2, 7)]).await;
    let head = lake
        .load(&ident)
        .await
        .unwrap()
        .metadata()
        .current_snapshot_id()
        .unwrap();
    let session = LakeSession::new(&lake).await.unwrap();

    assert_eq!(
        lines(
            &session,
            "SELECT content, file_format, spec_id, partition.ts_day, record_count, \
             value_counts, null_value_counts, lower_bounds, upper_bounds \
             FROM raw.daily.files ORDER BY partition.ts_day, record_count"
        )
        .await,
        [
            r#"0|PARQUET|0|1970-01-01|2|{"1":2,"2":2}|{"1":0,"2":0}|{"1":"1970-01-01 12:00:00","2":"1"}|{"1":"1970-01-01 12:00:00","2":"2"}"#,
            r#"0|PARQUET|0|1970-01-02|1|{"1":1,"2":1}|{"1":0,"2":0}|{"1":"1970-01-02 12:00:00","2":"3"}|{"1":"1970-01-02 12:00:00","2":"3"}"#,
            r#"0|PARQUET|0|1970-01-02|1|{"1":1,"2":1}|{"1":0,"2":0}|{"1":"1970-01-02 12:00:00","2":"4"}|{"1":"1970-01-02 12:00:00","2":"4"}"#,
            r#"0|PARQUET|0|1970-01-03|3|{"1":3,"2":3}|{"1":0,"2":0}|{"1":"1970-01-03 12:00:00","2":"5"}|{"1":"1970-01-03 12:00:00","2":"7"}"#,
        ]
    );
    let sizes = first_i64(
        &session
            .query("SELECT sum(file_size_in_bytes) FROM raw.daily.files")
            .await
            .unwrap(),
    );
    assert!(sizes > 0);

    assert_eq!(
        lines(
            &session,
            "SELECT partition.ts_day, spec_id, record_count, file_count, \
             position_delete_file_count, last_updated_snapshot_id IS NOT NULL \
             FROM raw.daily.partitions ORDER BY 1"
        )
        .await,
        [
            "1970-01-01|0|2|1|0|true",
            "1970-01-02|0|2|2|0|true",
            "1970-01-03|0|3|1|0|true",
        ]
    );
    assert_eq!(
        first_i64(
            &session
                .query("SELECT sum(total_data_file_size_in_bytes) FROM raw.daily.partitions")
                .await
                .unwrap()
        ),
        sizes
    );
    // The day-2 partition was last written by the head.
    assert_eq!(
        lines(
            &session,
            "SELECT last_updated_snapshot_id FROM raw.daily.partitions \
             WHERE partition.ts_day = DATE '1970-01-03'"
        )
        .await,
        [head.to_string()]
    );

    // Our commit path writes one new manifest per commit and keeps the others.
    assert_eq!(
        lines(
            &session,
            "SELECT content, added_data_files_count, existing_data_files_count, \
             deleted_data_files_count, added_delete_files_count, \
             partition_summaries[1]['lower_bound'], partition_summaries[1]['upper_bound'], \
             partition_summaries[1]['contains_null'] \
             FROM raw.daily.manifests ORDER BY 6"
        )
        .await,
        [
            "0|2|0|0|0|1970-01-01|1970-01-02|false",
            "0|2|0|0|0|1970-01-02|1970-01-03|false",
        ]
    );
}

#[tokio::test]
async fn metadata_tables_of_an_unpartitioned_table_have_no_partition_column() {
    let (_dir, lake) = lake().await;
    three_snapshots(&lake).await;
    let session = LakeSession::new(&lake).await.unwrap();
    assert_eq!(
        lines(
            &session,
            "SELECT record_count, file_count FROM raw.t.partitions"
        )
        .await,
        ["6|3"]
    );
    let err = error(&session, "SELECT partition FROM raw.t.files").await;
    assert!(err.contains("partition"), "{err}");
    assert_eq!(
        lines(&session, "SELECT sum(record_count) FROM raw.t.files").await,
        ["6"]
    );
}

/// Rows of `sql` run as the front doors run it (`icefjord_sql::query::run`).
async fn front_door(session: &LakeSession, sql: &str) -> icefjord_sql::Result<Vec<String>> {
    let (_, batches) = icefjord_sql::query::run(session, sql).await?;
    Ok(text(&batches))
}

#[tokio::test]
async fn version_and_timestamp_as_of_read_each_snapshot() {
    let (_dir, lake) = lake().await;
    let (ident, ids) = three_snapshots(&lake).await;
    let session = LakeSession::new(&lake).await.unwrap();
    for (id, expected) in ids.iter().zip(["1|1", "3|6", "6|21"]) {
        for sql in [
            format!("SELECT count(*), sum(n) FROM raw.t VERSION AS OF {id}"),
            format!("SELECT count(*), sum(t.n) FROM icefjord.raw.t VERSION AS OF {id} AS t"),
            format!("SELECT count(*), sum(n) FROM raw.t.snapshot_id_{id}"),
        ] {
            assert_eq!(
                front_door(&session, &sql).await.unwrap(),
                [expected],
                "{sql}"
            );
        }
    }
    // Two versions of one table in one query.
    assert_eq!(
        front_door(
            &session,
            &format!(
                "SELECT (SELECT count(*) FROM raw.t VERSION AS OF {}) * 10 + \
                 (SELECT count(*) FROM raw.t VERSION AS OF {})",
                ids[2], ids[0]
            )
        )
        .await
        .unwrap(),
        ["61"]
    );

    let table = lake.load(&ident).await.unwrap();
    let at = |id: i64| table.metadata().snapshot_by_id(id).unwrap().timestamp_ms();
    let between = (at(ids[1]) + at(ids[2])) / 2;
    let time = chrono::DateTime::from_timestamp_millis(between)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string();
    for clause in [
        format!("TIMESTAMP AS OF '{time}'"),
        format!("TIMESTAMP AS OF TIMESTAMP '{time}'"),
        format!("TIMESTAMP AS OF '{time}+00:00'"),
        format!("FOR SYSTEM_TIME AS OF '{time}'"),
    ] {
        let sql = format!("SELECT count(*), sum(n) FROM raw.t {clause}");
        assert_eq!(front_door(&session, &sql).await.unwrap(), ["3|6"], "{sql}");
    }
    // Now is after every commit: the current snapshot.
    assert_eq!(
        front_door(
            &session,
            "SELECT count(*) FROM raw.t TIMESTAMP AS OF now() - interval '1 millisecond'"
        )
        .await
        .unwrap(),
        ["6"]
    );

    let err = front_door(&session, "SELECT * FROM raw.t VERSION AS OF 42")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("raw.t") && err.contains("42"), "{err}");
    let err = front_door(
        &session,
        "SELECT * FROM raw.t TIMESTAMP AS OF '2001-01-01 00:00:00'",
    )
    .await
    .unwrap_err()
    .to_string();
    // 2001-01-01T00:00:00Z = 978307200 s.
    assert!(
        err.contains("raw.t") && err.contains("978307200000"),
        "{err}"
    );
}

#[tokio::test]
async fn a_version_clause_never_reads_the_current_table() {
    let (_dir, lake) = lake().await;
    let (ident, ids) = three_snapshots(&lake).await;
    publish_view(&lake, &ident, "unified.v", "SELECT n FROM raw.t").await;
    let session = LakeSession::new(&lake).await.unwrap();
    // Planned without the rewrite (as a front door that forgot it would):
    // refused by the session, not read as the current table.
    let state = session.context().state();
    let statement = icefjord_sql::statement::parse(&format!(
        "SELECT count(*) FROM raw.t VERSION AS OF {}",
        ids[0]
    ))
    .unwrap()
    .remove(0);
    let err = state.statement_to_plan(statement).await.unwrap_err();
    assert!(err.to_string().contains("VERSION AS OF"), "{err}");
    // Snowflake's AT(…) parses (the dialect enables versions) but is no
    // version we read.
    let err = front_door(
        &session,
        "SELECT * FROM raw.t AT(TIMESTAMP => '2024-01-01')",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, icefjord_sql::SqlError::Version { ref table, .. } if table == "raw.t"),
        "{err}"
    );
    // A view has no versions.
    let err = front_door(&session, "SELECT * FROM unified.v VERSION AS OF 1")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unified.v is a view"), "{err}");
    // An unqualified name is in the default schema (`public`, no such table).
    let err = front_door(&session, "SELECT * FROM t VERSION AS OF 1")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("public.t"), "{err}");
}
