//! Changes from other engines (REST requirements + updates) on the catalog's
//! compare-and-swap, against a real SQLite file and a real PostgreSQL server.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use iceberg::spec::MAIN_BRANCH;
use iceberg::{TableRequirement, TableUpdate};
use icefjord_catalog::{parse_table, CatalogError, TableChange};

#[macro_use]
mod common;
use common::{schema, table, Lake};

suite!(
    a_failed_requirement_changes_nothing,
    changes_without_conflicting_requirements_all_land,
    a_transaction_lands_on_every_table_or_none,
    assert_create_makes_the_table_from_its_updates,
    positions_and_locations_outside_the_warehouse_are_refused,
);

fn set(ident: &iceberg::TableIdent, key: &str, value: &str) -> TableChange {
    TableChange {
        ident: ident.clone(),
        requirements: vec![],
        updates: vec![TableUpdate::SetProperties {
            updates: HashMap::from([(key.to_string(), value.to_string())]),
        }],
    }
}

async fn a_failed_requirement_changes_nothing(lake: Lake) {
    let ident = table(&lake, "raw.t", false).await;
    let before = lake.catalog.load(&ident).await.unwrap();
    let mut change = set(&ident, "owner", "spark");
    change.requirements = vec![TableRequirement::CurrentSchemaIdMatch {
        current_schema_id: 7,
    }];
    let err = lake
        .catalog
        .apply_changes(&[change.clone()])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CatalogError::RequirementFailed { table, .. } if table == "raw.t"),
        "{err}"
    );
    let after = lake.catalog.load(&ident).await.unwrap();
    assert_eq!(after.metadata_location(), before.metadata_location());

    change.requirements = vec![TableRequirement::CurrentSchemaIdMatch {
        current_schema_id: before.metadata().current_schema_id(),
    }];
    let [committed] =
        <[_; 1]>::try_from(lake.catalog.apply_changes(&[change]).await.unwrap()).unwrap();
    let reloaded = lake.catalog.load(&ident).await.unwrap();
    assert_eq!(reloaded.metadata_location(), committed.metadata_location());
    assert_eq!(reloaded.metadata().properties()["owner"], "spark");
}

async fn changes_without_conflicting_requirements_all_land(lake: Lake) {
    let ident = table(&lake, "raw.t", false).await;
    // Sixteen writers race for one row: the losers redo their change on the
    // winner's state, so every property lands.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let catalog = lake.catalog.clone();
        let change = set(&ident, &format!("k{i}"), &i.to_string());
        tasks.push(tokio::spawn(async move {
            catalog.apply_changes(&[change]).await.unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let table = lake.catalog.load(&ident).await.unwrap();
    for i in 0..16 {
        assert_eq!(
            table.metadata().properties()[&format!("k{i}")],
            i.to_string()
        );
    }
}

async fn a_transaction_lands_on_every_table_or_none(lake: Lake) {
    let a = table(&lake, "raw.a", false).await;
    let b = table(&lake, "raw.b", false).await;
    let mut failing = set(&b, "release", "1");
    failing.requirements = vec![TableRequirement::RefSnapshotIdMatch {
        r#ref: MAIN_BRANCH.into(),
        snapshot_id: Some(42),
    }];
    let err = lake
        .catalog
        .apply_changes(&[set(&a, "release", "1"), failing])
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::RequirementFailed { ref table, .. } if table == "raw.b"));
    let loaded = lake.catalog.load(&a).await.unwrap();
    assert!(!loaded.metadata().properties().contains_key("release"));

    lake.catalog
        .apply_changes(&[set(&a, "release", "2"), set(&b, "release", "2")])
        .await
        .unwrap();
    for ident in [&a, &b] {
        let loaded = lake.catalog.load(ident).await.unwrap();
        assert_eq!(loaded.metadata().properties()["release"], "2");
    }
}

async fn assert_create_makes_the_table_from_its_updates(lake: Lake) {
    let ident = parse_table("raw.staged").unwrap();
    let change = TableChange {
        ident: ident.clone(),
        requirements: vec![TableRequirement::NotExist],
        updates: vec![
            TableUpdate::AddSchema { schema: schema() },
            TableUpdate::SetCurrentSchema { schema_id: -1 },
            TableUpdate::SetProperties {
                updates: HashMap::from([("owner".to_string(), "spark".to_string())]),
            },
        ],
    };
    lake.catalog
        .apply_changes(std::slice::from_ref(&change))
        .await
        .unwrap();
    let created = lake.catalog.load(&ident).await.unwrap();
    assert_eq!(created.metadata().properties()["owner"], "spark");
    assert_eq!(
        created.metadata().current_schema().as_struct(),
        schema().as_struct()
    );
    assert!(created
        .metadata()
        .location()
        .starts_with(&lake.catalog.config().warehouse.root_url()));
    // Asserting creation again fails: the table exists now.
    let err = lake.catalog.apply_changes(&[change]).await.unwrap_err();
    assert!(
        matches!(err, CatalogError::RequirementFailed { .. }),
        "{err}"
    );
}

async fn positions_and_locations_outside_the_warehouse_are_refused(lake: Lake) {
    let ident = table(&lake, "raw.t", false).await;
    let before = lake.catalog.load(&ident).await.unwrap();
    let mirror = set(&ident, "icefjord.position.kafka.g.t", "{}");
    let err = lake.catalog.apply_changes(&[mirror]).await.unwrap_err();
    assert!(
        matches!(&err, CatalogError::InvalidCommit { message, .. } if message.contains("icefjord.position.kafka.g.t")),
        "{err}"
    );
    let removal = TableChange {
        ident: ident.clone(),
        requirements: vec![],
        updates: vec![TableUpdate::RemoveProperties {
            removals: vec!["icefjord.position.x".into()],
        }],
    };
    assert!(lake.catalog.apply_changes(&[removal]).await.is_err());
    let elsewhere = TableChange {
        ident: ident.clone(),
        requirements: vec![],
        updates: vec![TableUpdate::SetLocation {
            location: "file:///tmp/elsewhere".into(),
        }],
    };
    let err = lake.catalog.apply_changes(&[elsewhere]).await.unwrap_err();
    assert!(
        matches!(err, CatalogError::OutsideWarehouse { .. }),
        "{err}"
    );
    let after = lake.catalog.load(&ident).await.unwrap();
    assert_eq!(after.metadata_location(), before.metadata_location());
}
