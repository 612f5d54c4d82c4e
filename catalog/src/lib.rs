//! The Icefjord catalog: where a lake's tables are, and the one path by which
//! they change.
//!
//! ```no_run
//! # async fn demo() -> icefjord_catalog::Result<()> {
//! use icefjord_catalog::{LakeCatalog, LakeConfig, parse_table};
//!
//! let lake = LakeCatalog::open(&LakeConfig::local("lake".as_ref())?).await?;
//! for namespace in lake.namespaces().await? {
//!     for table in lake.tables(&namespace).await? {
//!         let table = lake.load(&table).await?;
//!         println!("{:?}", table.metadata().current_snapshot_id());
//!     }
//! }
//! let raw = lake.load(&parse_table("raw.retail_events")?).await?;
//! # Ok(()) }
//! ```
//!
//! - [`config`]: warehouse + catalog settings, redacted secrets.
//! - [`storage`]: one `object_store` client per warehouse, also Iceberg's `FileIO`.
//! - [`catalog`]: [`LakeCatalog`], an `iceberg::Catalog` on SQLite/PostgreSQL.
//! - [`changes`]: REST-style requirements + updates from other engines, on the same swap.
//! - [`commit`]: the commit protocol (idempotent, compare-and-swap, multi-table).
//! - [`evolution`]: the schema changes a writer may make (add optional columns, widen).
//! - [`iceberg_views`]: Iceberg views other engines create through the REST catalog.
//! - [`refs`]: catalog-wide branches and tags, merges (Nessie-style).
//! - [`protocol`]: what our writers record besides rows (summary keys, positions,
//!   `_kafka_*` columns) and the walk that finds a position again.
//! - [`writer_columns`]: where a writer's column goes after other engines renamed or
//!   dropped columns.

pub mod catalog;
pub mod changes;
pub mod commit;
pub mod config;
mod db;
pub mod delta;
pub mod error;
pub mod evolution;
pub mod history;
pub mod iceberg_views;
pub mod protocol;
pub mod refs;
pub mod storage;
pub mod views;
pub mod writer_columns;

pub use catalog::{display, parse_table, LakeCatalog, TableSpec, CATALOG_NAME};
pub use changes::TableChange;
pub use commit::{
    mint_snapshot_id, Commit, CommitGuard, CommitId, CommitReport, CommittedTable, TableWrite,
    WriteMode, COMMIT_ID_PROPERTY,
};
pub use config::{CatalogUri, LakeConfig, S3Options, Secret, Warehouse};
pub use delta::DeltaPointer;
pub use error::{CatalogError, Result};
pub use evolution::SchemaEvolution;
pub use history::HistoryEntry;
pub use iceberg_views::{IcebergView, ViewRequirement};
pub use refs::{CatalogRef, MergeReport, Merged, RefKind, MAIN};
pub use storage::WarehouseStore;
pub use views::{CatalogState, ViewDef, ViewWrite};
pub use writer_columns::{resolve_writer_column, WriterColumn};
