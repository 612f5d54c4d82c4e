//! What the catalog's test files share: a fresh lake on each catalog backend
//! (a real SQLite file or PostgreSQL server) and a small table.

#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;

use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Literal, NestedField,
    PrimitiveType, Schema, Struct, Transform, Type, UnboundPartitionSpec,
};
use iceberg::TableIdent;
use icefjord_catalog::commit::{head_of, live_entries};
use icefjord_catalog::{
    parse_table, CatalogUri, CommitId, LakeCatalog, LakeConfig, TableSpec, TableWrite,
};
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

pub async fn table_in(catalog: &LakeCatalog, name: &str, partitioned: bool) -> TableIdent {
    let ident = parse_table(name).unwrap();
    let partition_spec = partitioned.then(|| {
        UnboundPartitionSpec::builder()
            .add_partition_field(1, "day", Transform::Identity)
            .unwrap()
            .build()
    });
    catalog
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

pub async fn table(lake: &Lake, name: &str, partitioned: bool) -> TableIdent {
    table_in(&lake.catalog, name, partitioned).await
}

/// A data file entry (the protocol never opens the file itself).
pub fn file(name: &str, rows: u64, day: Option<&str>) -> DataFile {
    let partition = match day {
        Some(day) => Struct::from_iter([Some(Literal::string(day))]),
        None => Struct::empty(),
    };
    DataFileBuilder::default()
        .content(DataContentType::Data)
        .file_path(format!("file:///nowhere/{name}.parquet"))
        .file_format(DataFileFormat::Parquet)
        .partition(partition)
        .record_count(rows)
        .file_size_in_bytes(rows * 10)
        .partition_spec_id(0)
        .build()
        .unwrap()
}

pub async fn live_paths_of(catalog: &LakeCatalog, ident: &TableIdent, branch: &str) -> Vec<String> {
    let table = catalog.load(ident).await.unwrap();
    let head = head_of(table.metadata(), branch);
    let mut paths: Vec<String> = live_entries(&table, head)
        .await
        .unwrap()
        .iter()
        .map(|e| e.file_path().rsplit('/').next().unwrap().to_string())
        .collect();
    paths.sort();
    paths
}

pub async fn append_to(catalog: &LakeCatalog, ident: &TableIdent, id: &str, files: Vec<DataFile>) {
    catalog
        .commit(CommitId::new(id))
        .with_write(TableWrite::append(ident.clone(), files))
        .execute()
        .await
        .unwrap();
}
