//! The Icefjord engine: DataFusion over the lake's Iceberg tables, and the writer
//! that turns Arrow batches into Iceberg data files.
//!
//! ```no_run
//! # async fn demo() -> icefjord_engine::Result<()> {
//! use icefjord_catalog::{LakeCatalog, LakeConfig};
//! use icefjord_engine::LakeSession;
//!
//! let lake = LakeCatalog::open(&LakeConfig::local("lake".as_ref())?).await?;
//! let session = LakeSession::new(&lake).await?;
//! let batches = session.query("SELECT category, count(*) FROM raw.retail_events GROUP BY 1").await?;
//! # Ok(()) }
//! ```

pub mod arithmetic;
pub mod bounds;
pub mod column_projection;
pub mod delta;
pub mod demo;
pub mod error;
pub mod file_bounds;
pub mod fresh;
pub mod generate;
pub mod metadata_tables;
pub mod partition;
pub mod partitionwise;
pub mod scan;
pub mod schema;
pub mod session;
pub mod sum;
pub mod table_suffix;
pub mod transform;
pub mod write;

pub use delta::{DeltaOutput, DeltaScan, DeltaWriter};
pub use error::{EngineError, Result};
pub use scan::{IcebergTable, StagedMode};
pub use session::{snapshot_for, AsOf, LakeSession};
pub use table_suffix::{MetadataTable, TableSuffix};
pub use write::{TableWriter, WriteMetrics};

/// Arrow re-exports, so callers use the same versions as the engine.
pub use arrow::array as arrow_array;
pub use arrow::datatypes as arrow_schema;
