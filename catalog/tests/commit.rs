//! The commit path against a real SQLite catalog on a temporary directory.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use iceberg::spec::{DataFile, PrimitiveType, Schema};
use iceberg::TableIdent;
use icefjord_catalog::commit::{ancestry, find_commit, head_of};
use icefjord_catalog::{
    parse_table, CatalogError, CommitId, LakeCatalog, SchemaEvolution, TableSpec, TableWrite,
};

#[macro_use]
mod common;
use common::{file, schema, table, Lake};

suite!(
    appends_accumulate_and_totals_add_up,
    a_retried_commit_id_is_not_applied_twice,
    a_lost_commit_response_is_reconciled_by_commit_id,
    concurrent_appends_all_land,
    an_overwrite_conflicts_with_an_append_it_did_not_see,
    replace_partitions_keeps_other_partitions_and_checks_only_its_own,
    overwrite_files_swaps_exactly_the_files_it_read,
    branch_commits_leave_main_alone,
    multi_table_commits_land_together,
    missing_tables_are_named,
    iceberg_rust_transactions_commit_through_the_catalog_trait,
    an_evolved_schema_becomes_current_with_its_snapshot,
    a_schema_evolution_that_lost_its_ids_to_another_writer_conflicts,
    views_are_published_with_the_tables_of_their_commit,
    a_table_created_by_its_commit_appears_with_its_first_snapshot,
);

async fn live_paths(lake: &Lake, ident: &TableIdent, branch: &str) -> Vec<String> {
    common::live_paths_of(&lake.catalog, ident, branch).await
}

async fn append(lake: &Lake, ident: &TableIdent, id: &str, files: Vec<DataFile>) {
    common::append_to(&lake.catalog, ident, id, files).await
}

async fn appends_accumulate_and_totals_add_up(lake: Lake) {
    let ident = table(&lake, "raw.events", false).await;
    append(&lake, &ident, "c1", vec![file("a", 10, None)]).await;
    append(
        &lake,
        &ident,
        "c2",
        vec![file("b", 5, None), file("c", 1, None)],
    )
    .await;
    assert_eq!(
        live_paths(&lake, &ident, "main").await,
        ["a.parquet", "b.parquet", "c.parquet"]
    );
    let table = lake.catalog.load(&ident).await.unwrap();
    let summary = table.metadata().current_snapshot().unwrap().summary();
    assert_eq!(summary.additional_properties["total-records"], "16");
    assert_eq!(summary.additional_properties["total-data-files"], "3");
    assert_eq!(summary.additional_properties["icefjord.commit-id"], "c2");
}

async fn a_retried_commit_id_is_not_applied_twice(lake: Lake) {
    let ident = table(&lake, "raw.events", false).await;
    append(&lake, &ident, "batch-7", vec![file("a", 10, None)]).await;
    let again = lake
        .catalog
        .commit(CommitId::new("batch-7"))
        .with_write(TableWrite::append(
            ident.clone(),
            vec![file("a2", 10, None)],
        ))
        .execute()
        .await
        .unwrap();
    assert!(again.already_applied);
    assert_eq!(live_paths(&lake, &ident, "main").await, ["a.parquet"]);
}

async fn a_lost_commit_response_is_reconciled_by_commit_id(lake: Lake) {
    let ident = table(&lake, "raw.events", false).await;
    lake.catalog.inject_lost_commit_responses(1);
    let report = lake
        .catalog
        .commit(CommitId::new("lost-response"))
        .with_write(TableWrite::append(ident.clone(), vec![file("a", 3, None)]))
        .execute()
        .await
        .unwrap();
    assert!(!report.already_applied);
    let table = lake.catalog.load(&ident).await.unwrap();
    // Exactly one snapshot: the landed commit was found, not redone.
    assert_eq!(
        ancestry(table.metadata(), head_of(table.metadata(), "main")).count(),
        1
    );
    assert_eq!(live_paths(&lake, &ident, "main").await, ["a.parquet"]);
}

async fn concurrent_appends_all_land(lake: Lake) {
    let ident = table(&lake, "raw.events", false).await;
    let writers = 6;
    let commits_each = 5;
    let mut tasks = Vec::new();
    for w in 0..writers {
        // Each writer opens its own catalog (own connection pool), like separate processes.
        let config = lake.catalog.config().clone();
        let ident = ident.clone();
        tasks.push(tokio::spawn(async move {
            let catalog = LakeCatalog::open(&config).await.unwrap();
            for c in 0..commits_each {
                catalog
                    .commit(CommitId::new(format!("w{w}-c{c}")))
                    .with_write(TableWrite::append(
                        ident.clone(),
                        vec![file(&format!("w{w}-c{c}"), 1, None)],
                    ))
                    .execute()
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let paths = live_paths(&lake, &ident, "main").await;
    assert_eq!(paths.len(), writers * commits_each, "{paths:?}");
    let table = lake.catalog.load(&ident).await.unwrap();
    let history = ancestry(table.metadata(), head_of(table.metadata(), "main")).count();
    assert_eq!(history, writers * commits_each);
    assert_eq!(
        table
            .metadata()
            .current_snapshot()
            .unwrap()
            .summary()
            .additional_properties["total-records"],
        (writers * commits_each).to_string()
    );
}

async fn an_overwrite_conflicts_with_an_append_it_did_not_see(lake: Lake) {
    let ident = table(&lake, "historical.totals", false).await;
    append(&lake, &ident, "seed", vec![file("old", 4, None)]).await;
    let base = head_of(lake.catalog.load(&ident).await.unwrap().metadata(), "main");
    // Another writer appends after the overwrite computed its result from `base`.
    append(&lake, &ident, "late", vec![file("late", 1, None)]).await;
    let err = lake
        .catalog
        .commit(CommitId::new("rewrite"))
        .with_write(
            TableWrite::overwrite(ident.clone(), vec![file("new", 5, None)])
                .with_base_snapshot(base),
        )
        .execute()
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("late.parquet"), "{err}");
    assert_eq!(
        live_paths(&lake, &ident, "main").await,
        ["late.parquet", "old.parquet"]
    );

    // Recomputed from the current head, the overwrite replaces everything.
    let base = head_of(lake.catalog.load(&ident).await.unwrap().metadata(), "main");
    lake.catalog
        .commit(CommitId::new("rewrite-2"))
        .with_write(
            TableWrite::overwrite(ident.clone(), vec![file("new", 5, None)])
                .with_base_snapshot(base),
        )
        .execute()
        .await
        .unwrap();
    assert_eq!(live_paths(&lake, &ident, "main").await, ["new.parquet"]);
    let table = lake.catalog.load(&ident).await.unwrap();
    let summary = &table
        .metadata()
        .current_snapshot()
        .unwrap()
        .summary()
        .additional_properties;
    assert_eq!(summary["total-records"], "5");
    assert_eq!(summary["deleted-data-files"], "2");

    // An append after the overwrite rebases and keeps the overwrite's data.
    append(&lake, &ident, "after", vec![file("after", 1, None)]).await;
    assert_eq!(
        live_paths(&lake, &ident, "main").await,
        ["after.parquet", "new.parquet"]
    );
}

async fn replace_partitions_keeps_other_partitions_and_checks_only_its_own(lake: Lake) {
    let ident = table(&lake, "historical.daily", true).await;
    append(
        &lake,
        &ident,
        "load",
        vec![
            file("a1", 1, Some("2024-01-01")),
            file("b1", 1, Some("2024-01-02")),
        ],
    )
    .await;
    let base = head_of(lake.catalog.load(&ident).await.unwrap().metadata(), "main");
    // Data landing in another partition does not conflict ...
    append(
        &lake,
        &ident,
        "other-day",
        vec![file("c1", 1, Some("2024-01-03"))],
    )
    .await;
    lake.catalog
        .commit(CommitId::new("redo-jan-1"))
        .with_write(
            TableWrite::replace_partitions(ident.clone(), vec![file("a2", 2, Some("2024-01-01"))])
                .with_base_snapshot(base),
        )
        .execute()
        .await
        .unwrap();
    assert_eq!(
        live_paths(&lake, &ident, "main").await,
        ["a2.parquet", "b1.parquet", "c1.parquet"]
    );
    // ... data landing in the replaced partition does.
    let base = head_of(lake.catalog.load(&ident).await.unwrap().metadata(), "main");
    append(
        &lake,
        &ident,
        "late-jan-2",
        vec![file("b2", 1, Some("2024-01-02"))],
    )
    .await;
    let err = lake
        .catalog
        .commit(CommitId::new("redo-jan-2"))
        .with_write(
            TableWrite::replace_partitions(ident.clone(), vec![file("b3", 2, Some("2024-01-02"))])
                .with_base_snapshot(base),
        )
        .execute()
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Conflict { .. }), "{err}");
}

async fn overwrite_files_swaps_exactly_the_files_it_read(lake: Lake) {
    let ident = table(&lake, "historical.hourly", false).await;
    append(
        &lake,
        &ident,
        "load",
        vec![file("a", 3, None), file("b", 4, None), file("c", 5, None)],
    )
    .await;
    let path = |name: &str| format!("file:///nowhere/{name}.parquet");
    lake.catalog
        .commit(CommitId::new("merge-1"))
        .with_write(TableWrite::overwrite_files(
            ident.clone(),
            vec![path("b")],
            vec![file("b2", 6, None)],
        ))
        .execute()
        .await
        .unwrap();
    assert_eq!(
        live_paths(&lake, &ident, "main").await,
        ["a.parquet", "b2.parquet", "c.parquet"]
    );
    let table = lake.catalog.load(&ident).await.unwrap();
    let summary = table.metadata().current_snapshot().unwrap().summary();
    assert_eq!(summary.additional_properties["total-records"], "14");
    assert_eq!(summary.additional_properties["deleted-data-files"], "1");
    // A write that only carries its position changes no file.
    lake.catalog
        .commit(CommitId::new("position-only"))
        .with_write(
            TableWrite::overwrite_files(ident.clone(), vec![], vec![])
                .with_property("icefjord.note", "x"),
        )
        .execute()
        .await
        .unwrap();
    assert_eq!(
        live_paths(&lake, &ident, "main").await,
        ["a.parquet", "b2.parquet", "c.parquet"]
    );
    // A file that another writer removed meanwhile is a conflict, and nothing lands.
    let err = lake
        .catalog
        .commit(CommitId::new("merge-2"))
        .with_write(TableWrite::overwrite_files(
            ident.clone(),
            vec![path("b"), path("c")],
            vec![file("c2", 1, None)],
        ))
        .execute()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CatalogError::Conflict { reason, .. } if reason.contains("b.parquet")),
        "{err}"
    );
    assert_eq!(
        live_paths(&lake, &ident, "main").await,
        ["a.parquet", "b2.parquet", "c.parquet"]
    );
    // Data appended after the write's base is a conflict too (the write never saw it).
    let base = head_of(lake.catalog.load(&ident).await.unwrap().metadata(), "main");
    append(&lake, &ident, "late", vec![file("d", 1, None)]).await;
    let err = lake
        .catalog
        .commit(CommitId::new("merge-3"))
        .with_write(
            TableWrite::overwrite_files(ident.clone(), vec![path("a")], vec![file("a2", 1, None)])
                .with_base_snapshot(base),
        )
        .execute()
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Conflict { .. }), "{err}");
}

async fn branch_commits_leave_main_alone(lake: Lake) {
    let ident = table(&lake, "raw.events", false).await;
    append(&lake, &ident, "main-1", vec![file("m", 1, None)]).await;
    lake.catalog
        .commit(CommitId::new("audit-1"))
        .with_write(TableWrite::append(ident.clone(), vec![file("x", 1, None)]).to_branch("audit"))
        .execute()
        .await
        .unwrap();
    assert_eq!(live_paths(&lake, &ident, "main").await, ["m.parquet"]);
    assert_eq!(
        live_paths(&lake, &ident, "audit").await,
        ["m.parquet", "x.parquet"]
    );
    let table = lake.catalog.load(&ident).await.unwrap();
    assert!(find_commit(table.metadata(), "main", &CommitId::new("audit-1")).is_none());
    assert!(find_commit(table.metadata(), "audit", &CommitId::new("audit-1")).is_some());
}

async fn multi_table_commits_land_together(lake: Lake) {
    let a = table(&lake, "historical.a", false).await;
    let b = table(&lake, "unified.b", false).await;
    let report = lake
        .catalog
        .commit(CommitId::new("run-1"))
        .with_write(TableWrite::overwrite(a.clone(), vec![file("a", 1, None)]))
        .with_write(TableWrite::overwrite(b.clone(), vec![file("b", 1, None)]))
        .execute()
        .await
        .unwrap();
    assert_eq!(report.tables.len(), 2);
    for ident in [&a, &b] {
        let table = lake.catalog.load(ident).await.unwrap();
        assert!(find_commit(table.metadata(), "main", &CommitId::new("run-1")).is_some());
    }
    // A stale base on one table fails the whole commit: neither table changes.
    let stale = head_of(lake.catalog.load(&a).await.unwrap().metadata(), "main");
    append(&lake, &a, "sneak", vec![file("sneak", 1, None)]).await;
    let err = lake
        .catalog
        .commit(CommitId::new("run-2"))
        .with_write(TableWrite::overwrite(b.clone(), vec![file("b2", 1, None)]))
        .with_write(
            TableWrite::overwrite(a.clone(), vec![file("a2", 1, None)]).with_base_snapshot(stale),
        )
        .execute()
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Conflict { .. }), "{err}");
    assert_eq!(live_paths(&lake, &b, "main").await, ["b.parquet"]);
}

async fn missing_tables_are_named(lake: Lake) {
    let err = lake
        .catalog
        .load(&parse_table("raw.nothing").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "table raw.nothing does not exist");
}

/// iceberg-rust's own `Transaction` (fast append) works on our `Catalog` impl.
async fn iceberg_rust_transactions_commit_through_the_catalog_trait(lake: Lake) {
    use iceberg::transaction::{ApplyTransactionAction, Transaction};
    use iceberg::Catalog;

    let ident = table(&lake, "raw.events", false).await;
    append(&lake, &ident, "ours", vec![file("a", 1, None)]).await;
    let loaded = lake.catalog.load_table(&ident).await.unwrap();
    let tx = Transaction::new(&loaded);
    let tx = tx
        .fast_append()
        .add_data_files(vec![file("theirs", 2, None)])
        .apply(tx)
        .unwrap();
    tx.commit(&lake.catalog).await.unwrap();
    assert_eq!(
        live_paths(&lake, &ident, "main").await,
        ["a.parquet", "theirs.parquet"]
    );
    assert!(lake.catalog.table_exists(&ident).await.unwrap());
    assert_eq!(
        lake.catalog.list_tables(ident.namespace()).await.unwrap(),
        vec![ident.clone()]
    );
}

async fn evolve(lake: &Lake, ident: &TableIdent, column: &str) -> std::sync::Arc<Schema> {
    let table = lake.catalog.load(ident).await.unwrap();
    let metadata = table.metadata();
    std::sync::Arc::new(
        SchemaEvolution::new(metadata.current_schema(), metadata.last_column_id())
            .add_column(column, PrimitiveType::String)
            .unwrap()
            .build()
            .unwrap(),
    )
}

async fn an_evolved_schema_becomes_current_with_its_snapshot(lake: Lake) {
    let ident = table(&lake, "raw.evolving", true).await;
    append(&lake, &ident, "c1", vec![file("a", 1, Some("d1"))]).await;
    let next = evolve(&lake, &ident, "coupon").await;
    let write =
        TableWrite::append(ident.clone(), vec![file("b", 1, Some("d2"))]).with_schema(next.clone());
    let report = lake
        .catalog
        .commit(CommitId::new("c2"))
        .with_write(write.clone())
        .execute()
        .await
        .unwrap();
    let table = lake.catalog.load(&ident).await.unwrap();
    let metadata = table.metadata();
    let coupon = metadata.current_schema().field_by_name("coupon").unwrap();
    assert_eq!(coupon.id, 3);
    assert!(!coupon.required);
    let snapshot = metadata
        .snapshot_by_id(report.tables[0].snapshot_id)
        .unwrap();
    assert_eq!(snapshot.schema_id(), Some(metadata.current_schema_id()));
    // The first snapshot keeps the schema it was written with.
    let first = metadata
        .snapshot_by_id(snapshot.parent_snapshot_id().unwrap())
        .unwrap();
    assert!(first
        .schema(metadata)
        .unwrap()
        .field_by_name("coupon")
        .is_none());
    // Retrying the same commit is a no-op; a later plain append keeps the schema.
    let again = lake
        .catalog
        .commit(CommitId::new("c2"))
        .with_write(write)
        .execute()
        .await
        .unwrap();
    assert!(again.already_applied);
    append(&lake, &ident, "c3", vec![file("c", 1, Some("d3"))]).await;
    let table = lake.catalog.load(&ident).await.unwrap();
    assert!(table
        .metadata()
        .current_schema()
        .field_by_name("coupon")
        .is_some());
    assert_eq!(table.metadata().schemas_iter().count(), 2);
}

async fn a_schema_evolution_that_lost_its_ids_to_another_writer_conflicts(lake: Lake) {
    let ident = table(&lake, "raw.contested", false).await;
    let ours = evolve(&lake, &ident, "coupon").await;
    let theirs = evolve(&lake, &ident, "channel").await;
    lake.catalog
        .commit(CommitId::new("theirs"))
        .with_write(TableWrite::append(ident.clone(), vec![file("t", 1, None)]).with_schema(theirs))
        .execute()
        .await
        .unwrap();
    let err = lake
        .catalog
        .commit(CommitId::new("ours"))
        .with_write(TableWrite::append(ident.clone(), vec![file("o", 1, None)]).with_schema(ours))
        .execute()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CatalogError::Conflict { reason, .. } if reason.contains("coupon")),
        "{err}"
    );
    assert_eq!(live_paths(&lake, &ident, "main").await, vec!["t.parquet"]);
}

async fn views_are_published_with_the_tables_of_their_commit(lake: Lake) {
    use icefjord_catalog::ViewWrite;
    let a = table(&lake, "historical.a", false).await;
    let view = parse_table("unified.v").unwrap();
    let before = lake.catalog.state().await.unwrap();
    assert!(before.views.is_empty());
    let report = lake
        .catalog
        .commit(CommitId::new("run-1"))
        .with_write(
            TableWrite::overwrite(a.clone(), vec![file("a", 1, None)]).with_snapshot_id(4242),
        )
        .with_view(
            ViewWrite::new(view.clone(), "SELECT * FROM historical.a").with_owner("pipeline t"),
        )
        .execute()
        .await
        .unwrap();
    assert_eq!(
        report.tables[0].snapshot_id, 4242,
        "the pre-minted snapshot id is used"
    );
    let published = lake.catalog.view(&view).await.unwrap().unwrap();
    assert_eq!(published.sql, "SELECT * FROM historical.a");
    assert_eq!(published.commit_id.as_deref(), Some("run-1"));
    assert_eq!(published.owner.as_deref(), Some("pipeline t"));
    assert!(lake
        .catalog
        .namespaces()
        .await
        .unwrap()
        .contains(&"unified".to_string()));

    // One state holds both: the table's new metadata and the view.
    let state = lake.catalog.state().await.unwrap();
    let location = lake
        .catalog
        .load(&a)
        .await
        .unwrap()
        .metadata_location()
        .unwrap()
        .to_string();
    assert_eq!(state.tables["historical"]["a"], location);
    assert_ne!(before.tables["historical"]["a"], location);
    assert_eq!(state.views["unified"]["v"], "SELECT * FROM historical.a");

    // A failed commit (stale base) changes neither the table nor the view.
    let stale = head_of(lake.catalog.load(&a).await.unwrap().metadata(), "main");
    append(&lake, &a, "sneak", vec![file("sneak", 1, None)]).await;
    let err = lake
        .catalog
        .commit(CommitId::new("run-2"))
        .with_write(
            TableWrite::overwrite(a.clone(), vec![file("a2", 1, None)]).with_base_snapshot(stale),
        )
        .with_view(ViewWrite::new(view.clone(), "SELECT 2"))
        .execute()
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Conflict { .. }), "{err}");
    assert_eq!(
        lake.catalog.view(&view).await.unwrap().unwrap().sql,
        "SELECT * FROM historical.a"
    );
    // A snapshot id that is taken is refused.
    let err = lake
        .catalog
        .commit(CommitId::new("run-3"))
        .with_write(TableWrite::append(a.clone(), vec![file("a3", 1, None)]).with_snapshot_id(4242))
        .execute()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("4242"), "{err}");
}

async fn a_table_created_by_its_commit_appears_with_its_first_snapshot(lake: Lake) {
    let ident = parse_table("historical.fresh").unwrap();
    let spec = || TableSpec {
        schema: schema(),
        partition_spec: None,
        properties: BTreeMap::new(),
    };
    let staged = lake.catalog.unregistered(&ident, spec()).await.unwrap();
    assert!(
        !lake.catalog.exists(&ident).await.unwrap(),
        "an unregistered table is not in the catalog"
    );
    let other = table(&lake, "historical.other", false).await;
    lake.catalog
        .commit(CommitId::new("create"))
        .with_write(
            TableWrite::append(ident.clone(), vec![file("a", 5, None)]).creating(staged.clone()),
        )
        .with_write(TableWrite::append(other, vec![file("b", 1, None)]))
        .execute()
        .await
        .unwrap();
    assert_eq!(live_paths(&lake, &ident, "main").await, ["a.parquet"]);

    // Another writer that also meant to create it finds the table registered and
    // appends to it instead.
    lake.catalog
        .commit(CommitId::new("second"))
        .with_write(TableWrite::append(ident.clone(), vec![file("c", 2, None)]).creating(staged))
        .execute()
        .await
        .unwrap();
    assert_eq!(
        live_paths(&lake, &ident, "main").await,
        ["a.parquet", "c.parquet"]
    );
}
