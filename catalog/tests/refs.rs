//! Catalog-wide branches, tags and merges against a real SQLite file and a
//! real PostgreSQL server.

#![allow(clippy::unwrap_used)]

use icefjord_catalog::{CatalogError, LakeCatalog, RefKind, MAIN};

#[macro_use]
mod common;
use common::{append_to, file, live_paths_of, table, table_in, Lake};

suite!(
    a_branch_isolates_until_a_fast_forward_merge,
    a_tag_keeps_its_state_and_refuses_writes,
    appends_on_both_sides_rebase,
    an_overwrite_on_the_target_conflicts_and_changes_nothing,
    refs_are_listed_and_deleted,
);

/// `raw.events` with one file `a` on main, and branch `dev` made from it.
async fn forked(lake: &Lake) -> (iceberg::TableIdent, LakeCatalog) {
    let ident = table(lake, "raw.events", false).await;
    append_to(&lake.catalog, &ident, "c1", vec![file("a", 1, None)]).await;
    lake.catalog
        .create_ref("dev", RefKind::Branch, MAIN)
        .await
        .unwrap();
    (ident, lake.catalog.on_ref("dev").await.unwrap())
}

async fn a_branch_isolates_until_a_fast_forward_merge(lake: Lake) {
    let (ident, dev) = forked(&lake).await;
    assert_eq!(dev.ref_name(), "dev");
    append_to(&dev, &ident, "c2", vec![file("b", 1, None)]).await;
    let other = table_in(&dev, "raw.only_on_dev", false).await;
    assert_eq!(
        live_paths_of(&lake.catalog, &ident, "main").await,
        ["a.parquet"]
    );
    assert_eq!(
        live_paths_of(&dev, &ident, "main").await,
        ["a.parquet", "b.parquet"]
    );
    assert!(!lake.catalog.exists(&other).await.unwrap());

    let report = lake.catalog.merge("dev", MAIN).await.unwrap();
    let moved: Vec<_> = report
        .merged
        .iter()
        .map(|m| (m.object.as_str(), m.how))
        .collect();
    assert_eq!(
        moved,
        [("raw.events", "fast-forward"), ("raw.only_on_dev", "added")]
    );
    assert_eq!(
        lake.catalog.load(&ident).await.unwrap().metadata_location(),
        dev.load(&ident).await.unwrap().metadata_location()
    );
    assert!(lake.catalog.exists(&other).await.unwrap());
    // Nothing changed since: a second merge moves nothing.
    assert!(lake
        .catalog
        .merge("dev", MAIN)
        .await
        .unwrap()
        .merged
        .is_empty());
}

async fn a_tag_keeps_its_state_and_refuses_writes(lake: Lake) {
    let ident = table(&lake, "raw.events", false).await;
    append_to(&lake.catalog, &ident, "c1", vec![file("a", 1, None)]).await;
    lake.catalog
        .create_ref("v1", RefKind::Tag, MAIN)
        .await
        .unwrap();
    append_to(&lake.catalog, &ident, "c2", vec![file("b", 1, None)]).await;
    let v1 = lake.catalog.on_ref("v1").await.unwrap();
    assert_eq!(live_paths_of(&v1, &ident, "main").await, ["a.parquet"]);
    let err = v1
        .commit(icefjord_catalog::CommitId::new("c3"))
        .with_write(icefjord_catalog::TableWrite::append(
            ident.clone(),
            vec![file("c", 1, None)],
        ))
        .execute()
        .await
        .unwrap_err();
    assert!(
        matches!(err, CatalogError::RefNotWritable { ref reference } if reference == "v1"),
        "{err}"
    );
    assert_eq!(live_paths_of(&v1, &ident, "main").await, ["a.parquet"]);
    let err = lake.catalog.merge("v1", MAIN).await.unwrap_err();
    assert!(err.to_string().contains("is a tag"), "{err}");
}

async fn appends_on_both_sides_rebase(lake: Lake) {
    let (ident, dev) = forked(&lake).await;
    append_to(&dev, &ident, "on-dev", vec![file("d", 1, None)]).await;
    append_to(&lake.catalog, &ident, "on-main", vec![file("m", 1, None)]).await;
    let report = lake.catalog.merge("dev", MAIN).await.unwrap();
    assert_eq!(report.merged[0].how, "rebased");
    assert_eq!(
        live_paths_of(&lake.catalog, &ident, "main").await,
        ["a.parquet", "d.parquet", "m.parquet"]
    );
    // The branch follows: it now holds what main holds for the table.
    assert_eq!(
        live_paths_of(&dev, &ident, "main").await,
        ["a.parquet", "d.parquet", "m.parquet"]
    );
}

async fn an_overwrite_on_the_target_conflicts_and_changes_nothing(lake: Lake) {
    let ident = table(&lake, "raw.events", false).await;
    let quiet = table(&lake, "raw.quiet", false).await;
    append_to(&lake.catalog, &ident, "c1", vec![file("a", 1, None)]).await;
    lake.catalog
        .create_ref("dev", RefKind::Branch, MAIN)
        .await
        .unwrap();
    let dev = lake.catalog.on_ref("dev").await.unwrap();
    append_to(&dev, &ident, "on-dev", vec![file("d", 1, None)]).await;
    append_to(&dev, &quiet, "on-dev-2", vec![file("q", 1, None)]).await;
    lake.catalog
        .commit(icefjord_catalog::CommitId::new("rewrite"))
        .with_write(icefjord_catalog::TableWrite::overwrite(
            ident.clone(),
            vec![file("r", 1, None)],
        ))
        .execute()
        .await
        .unwrap();
    let before = lake.catalog.state().await.unwrap();
    let err = lake.catalog.merge("dev", MAIN).await.unwrap_err();
    match err {
        CatalogError::MergeConflict { tables, .. } => assert_eq!(tables, ["raw.events"]),
        other => panic!("{other}"),
    }
    assert_eq!(lake.catalog.state().await.unwrap().tables, before.tables);
    assert!(live_paths_of(&lake.catalog, &quiet, "main")
        .await
        .is_empty());
}

async fn refs_are_listed_and_deleted(lake: Lake) {
    table(&lake, "raw.events", false).await;
    lake.catalog
        .create_ref("dev", RefKind::Branch, MAIN)
        .await
        .unwrap();
    lake.catalog
        .create_ref("v1", RefKind::Tag, "dev")
        .await
        .unwrap();
    let err = lake
        .catalog
        .create_ref("dev", RefKind::Branch, MAIN)
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::RefExists { .. }));
    let err = lake
        .catalog
        .create_ref("x", RefKind::Branch, "nope")
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::UnknownRef { .. }));
    let names: Vec<_> = lake
        .catalog
        .refs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.name, r.kind, r.created_from))
        .collect();
    assert_eq!(
        names,
        [
            ("dev".to_string(), RefKind::Branch, "main".to_string()),
            ("v1".to_string(), RefKind::Tag, "dev".to_string())
        ]
    );
    lake.catalog.delete_ref("dev").await.unwrap();
    assert!(matches!(
        lake.catalog.on_ref("dev").await.unwrap_err(),
        CatalogError::UnknownRef { .. }
    ));
    // The tag made from it keeps its own copy.
    assert_eq!(
        lake.catalog
            .on_ref("v1")
            .await
            .unwrap()
            .tables("raw")
            .await
            .unwrap()
            .len(),
        1
    );
}
