//! Iceberg views other engines create through the REST catalog: metadata files
//! plus `iceberg_type = 'VIEW'` rows, against a real SQLite file and a real
//! PostgreSQL server.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use iceberg::spec::{ViewRepresentations, ViewVersion};
use iceberg::{NamespaceIdent, ViewCreation, ViewUpdate};
use icefjord_catalog::{
    parse_table, CatalogError, CommitId, TableWrite, ViewRequirement, ViewWrite,
};

#[macro_use]
mod common;
use common::{file, schema, table, Lake};

suite!(
    a_view_is_created_replaced_renamed_and_dropped,
    names_are_shared_with_tables_and_pipeline_views,
    a_failed_requirement_changes_nothing,
);

fn sql(text: &str) -> ViewRepresentations {
    serde_json::from_value(serde_json::json!([
        {"type": "sql", "sql": text, "dialect": "spark"}
    ]))
    .unwrap()
}

fn creation(name: &str, text: &str) -> ViewCreation {
    ViewCreation::builder()
        .name(name.to_string())
        .location(String::new())
        .representations(sql(text))
        .schema(schema())
        .default_namespace(NamespaceIdent::new("raw".into()))
        .build()
}

/// The SQL of the view's current version.
fn current_sql(view: &icefjord_catalog::IcebergView) -> String {
    let version = view.metadata.current_version();
    let Some(iceberg::spec::ViewRepresentation::Sql(sql)) = version.representations().iter().next()
    else {
        panic!("no SQL representation")
    };
    sql.sql.clone()
}

async fn a_view_is_created_replaced_renamed_and_dropped(lake: Lake) {
    table(&lake, "raw.t", false).await;
    let ident = parse_table("raw.v").unwrap();
    let created = lake
        .catalog
        .create_iceberg_view(&ident, creation("v", "SELECT * FROM raw.t"))
        .await
        .unwrap();
    assert!(created.metadata_location.contains("/raw/v/metadata/00000-"));
    assert_eq!(
        lake.catalog.iceberg_views("raw").await.unwrap(),
        vec![ident.clone()]
    );
    // A view is not a table to the table routes (nor to SqlCatalog readers).
    assert!(!lake.catalog.exists(&ident).await.unwrap());
    assert_eq!(lake.catalog.tables("raw").await.unwrap().len(), 1);

    let next = ViewVersion::builder()
        .with_version_id(2)
        .with_schema_id(0)
        .with_timestamp_ms(now_ms())
        .with_default_namespace(NamespaceIdent::new("raw".into()))
        .with_representations(sql("SELECT day FROM raw.t"))
        .build();
    let replaced = lake
        .catalog
        .replace_iceberg_view(
            &ident,
            &[ViewRequirement::AssertViewUuid {
                uuid: created.metadata.uuid(),
            }],
            vec![
                ViewUpdate::AddViewVersion { view_version: next },
                ViewUpdate::SetCurrentViewVersion {
                    view_version_id: -1,
                },
            ],
        )
        .await
        .unwrap();
    assert!(replaced.metadata_location.contains("/metadata/00001-"));
    let loaded = lake.catalog.iceberg_view(&ident).await.unwrap().unwrap();
    assert_eq!(current_sql(&loaded), "SELECT day FROM raw.t");
    assert_eq!(loaded.metadata.uuid(), created.metadata.uuid());

    let renamed = parse_table("raw.w").unwrap();
    lake.catalog
        .rename_iceberg_view(&ident, &renamed)
        .await
        .unwrap();
    assert!(lake.catalog.iceberg_view(&ident).await.unwrap().is_none());
    lake.catalog.drop_iceberg_view(&renamed).await.unwrap();
    assert!(matches!(
        lake.catalog.drop_iceberg_view(&renamed).await,
        Err(CatalogError::ViewNotFound { .. })
    ));
}

async fn names_are_shared_with_tables_and_pipeline_views(lake: Lake) {
    let t = table(&lake, "raw.t", false).await;
    let taken = lake
        .catalog
        .create_iceberg_view(&t, creation("t", "SELECT 1"))
        .await;
    assert!(
        matches!(taken, Err(CatalogError::ViewExists { .. })),
        "{taken:?}"
    );

    let published = parse_table("raw.p").unwrap();
    lake.catalog
        .commit(CommitId::new("run-1"))
        .with_write(TableWrite::append(t.clone(), vec![file("a", 1, None)]))
        .with_view(
            ViewWrite::new(published.clone(), "SELECT * FROM raw.t").with_owner("pipeline x"),
        )
        .execute()
        .await
        .unwrap();
    let taken = lake
        .catalog
        .create_iceberg_view(&published, creation("p", "SELECT 1"))
        .await;
    assert!(
        matches!(taken, Err(CatalogError::ViewExists { .. })),
        "{taken:?}"
    );
    // The pipeline owns its view: not dropped, not replaced from outside.
    let refused = lake.catalog.drop_iceberg_view(&published).await;
    assert!(
        matches!(&refused, Err(CatalogError::ViewNotWritable { owner, .. }) if owner == "pipeline x"),
        "{refused:?}"
    );
    assert!(lake.catalog.view(&published).await.unwrap().is_some());

    // Nor can a pipeline publish a view where an Iceberg view is: nothing lands.
    let taken = parse_table("raw.q").unwrap();
    lake.catalog
        .create_iceberg_view(&taken, creation("q", "SELECT 1"))
        .await
        .unwrap();
    let refused = lake
        .catalog
        .commit(CommitId::new("run-2"))
        .with_write(TableWrite::append(t.clone(), vec![file("b", 1, None)]))
        .with_view(ViewWrite::new(taken.clone(), "SELECT 2"))
        .execute()
        .await;
    assert!(
        matches!(&refused, Err(CatalogError::NameTaken { name, .. }) if name == "raw.q"),
        "{refused:?}"
    );
    assert!(lake.catalog.view(&taken).await.unwrap().is_none());
    let rows = lake.catalog.load(&t).await.unwrap();
    assert_eq!(
        rows.metadata().snapshots().count(),
        1,
        "run-2 changed nothing"
    );

    // A view cannot be renamed onto a table or a pipeline view.
    let v = parse_table("raw.v").unwrap();
    lake.catalog
        .create_iceberg_view(&v, creation("v", "SELECT 1"))
        .await
        .unwrap();
    for onto in [&t, &published] {
        let refused = lake.catalog.rename_iceberg_view(&v, onto).await;
        assert!(
            matches!(refused, Err(CatalogError::ViewExists { .. })),
            "{refused:?}"
        );
    }
    assert!(lake.catalog.iceberg_view(&v).await.unwrap().is_some());
}

async fn a_failed_requirement_changes_nothing(lake: Lake) {
    table(&lake, "raw.t", false).await;
    let ident = parse_table("raw.v").unwrap();
    let created = lake
        .catalog
        .create_iceberg_view(&ident, creation("v", "SELECT 1"))
        .await
        .unwrap();
    let refused = lake
        .catalog
        .replace_iceberg_view(
            &ident,
            &[ViewRequirement::AssertViewUuid {
                uuid: uuid::Uuid::nil(),
            }],
            vec![ViewUpdate::SetProperties {
                updates: HashMap::from([("k".to_string(), "v".to_string())]),
            }],
        )
        .await;
    assert!(
        matches!(refused, Err(CatalogError::RequirementFailed { .. })),
        "{refused:?}"
    );
    let loaded = lake.catalog.iceberg_view(&ident).await.unwrap().unwrap();
    assert_eq!(loaded.metadata_location, created.metadata_location);
    // Outside the warehouse is refused like a table's location.
    let outside = lake
        .catalog
        .replace_iceberg_view(
            &ident,
            &[],
            vec![ViewUpdate::SetLocation {
                location: "file:///tmp/elsewhere".into(),
            }],
        )
        .await;
    assert!(
        matches!(outside, Err(CatalogError::OutsideWarehouse { .. })),
        "{outside:?}"
    );
}

fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(now.as_millis()).unwrap() + 1
}
