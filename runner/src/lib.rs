//! Icefjord's job runner: declarative pipelines of SQL models over the lake,
//! audited and published together (write-audit-publish).
//!
//! ```no_run
//! # async fn demo() -> icefjord_runner::Result<()> {
//! use icefjord_catalog::{LakeCatalog, LakeConfig};
//! use icefjord_runner::{Pipeline, Runner};
//!
//! let lake = LakeCatalog::open(&LakeConfig::local("lake".as_ref())?).await?;
//! let pipeline = Pipeline::load("jobs/retail".as_ref())?;
//! let report = Runner::new(&lake, &pipeline)?.run().await?;
//! println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
//! # Ok(()) }
//! ```
//!
//! - [`spec`]: `pipeline.toml` + `.sql` files → typed models, errors with file/line;
//! - [`endpoint`]: `[[endpoints]]`, the named queries `icefjord serve` offers over HTTP;
//! - [`graph`]: run order from what each query reads, cycles, `--select`;
//! - [`run`]: the write-audit-publish lifecycle and its invariants;
//! - [`audit`]: the checks; [`history`]: `icefjord.runs`; [`report`]: run reports.

pub mod audit;
pub mod boundary;
pub mod endpoint;
pub mod error;
pub mod graph;
pub mod history;
pub mod interval;
pub mod merge;
pub mod report;
pub mod run;
mod scanned;
pub mod spec;

pub use error::{Result, RunnerError};
pub use report::{ModelReport, ModelStatus, RunReport, RunStatus};
pub use run::{ModelEvent, PlannedModel, Progress, Runner};
pub use spec::{Kind, Pipeline, SpecError};
