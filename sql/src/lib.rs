//! Icefjord's query front doors: read-only execution of user SQL over a
//! [`icefjord_engine::LakeSession`] and result formatting. Every front door
//! parses with [`dialect::LakeDialect`] ([`statement::parse`]) and plans with
//! [`statement::plan`], which rewrites Spark's time travel clauses
//! ([`time_travel`]) and refuses DDL and DML.
//!
//! ```no_run
//! # async fn demo(session: icefjord_engine::LakeSession) -> icefjord_sql::Result<()> {
//! use icefjord_sql::{OutputFormat, query, write_batches};
//! let (schema, batches) = query::run(&session, "SELECT 1 AS one").await?;
//! write_batches(OutputFormat::Json, &schema, &batches, &mut std::io::stdout())?;
//! # Ok(()) }
//! ```

pub mod dialect;
pub mod error;
pub mod format;
pub mod query;
pub mod statement;
pub mod time_travel;

pub use error::{Result, SqlError};
pub use format::{write_batches, OutputFormat};
