//! What the catalog's test files share: a fresh lake on each catalog backend
//! (a real SQLite file or PostgreSQL server) and a small table.

#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;

use iceberg::spec::{NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec};
use iceberg::TableIdent;
use icefjord_catalog::{parse_table, CatalogUri, LakeCatalog, LakeConfig, TableSpec};
use icefjord_test_harness::Postgres;

pub struct Lake {
    _dir: tempfile::TempDir,
    _postgres: Option<Postgres>,
    pub catalog: LakeCatalog,
}

#[derive(Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh lake: local warehouse, catalog on the given backend (a real server).
pub async fn lake(backend: Backend) -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LakeConfig::local(dir.path()).unwrap();
    let postgres = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let server = Postgres::start();
            config.catalog = CatalogUri::parse(&server.create_database("lake")).unwrap();
            Some(server)
        }
    };
    let catalog = LakeCatalog::open(&config).await.unwrap();
    Lake {
        _dir: dir,
        _postgres: postgres,
        catalog,
    }
}

/// Every case runs on every catalog backend.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::common::lake(super::common::Backend::Sqlite).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::common::lake(super::common::Backend::Postgres).await).await
                }
            )*
        }
    };
}

pub fn schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "day", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::optional(2, "n", Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .unwrap()
}

pub async fn table(lake: &Lake, name: &str, partitioned: bool) -> TableIdent {
    let ident = parse_table(name).unwrap();
    let partition_spec = partitioned.then(|| {
        UnboundPartitionSpec::builder()
            .add_partition_field(1, "day", Transform::Identity)
            .unwrap()
            .build()
    });
    lake.catalog
        .create(
            &ident,
            TableSpec {
                schema: schema(),
                partition_spec,
                properties: BTreeMap::new(),
            },
        )
        .await
        .unwrap();
    ident
}
