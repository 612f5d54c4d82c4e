//! Delta Lake tables published by pipelines (`target = "delta"`), pinned in our own
//! catalog table `icefjord_delta_tables` (DESIGN §4: extra tables of ours have
//! their own names).
//!
//! Protocol:
//! - A Delta table's own log (`<location>/_delta_log/`) is the truth for Delta
//!   readers (Spark, delta-rs, Polars). Our catalog records, per table, the Delta
//!   version that a commit of ours published.
//! - The writer first commits the new Delta version, then moves the pointer with
//!   [`Commit::with_delta`], in the same database transaction as the commit's
//!   Iceberg tables and views.
//! - Icefjord readers read a Delta table at its pinned version, so they see a run's
//!   Iceberg and Delta outputs change together, or not at all.
//!
//! Invariant: a pinned version exists in the table's log (it is written before the
//! pointer moves, and Delta never rewrites a version). Between the two steps, or if
//! the catalog commit then fails, Delta readers can see a version that icefjord
//! readers do not; the writer recognises its own version on retry by the commit id
//! it wrote into the Delta commit info.

use iceberg::TableIdent;

use crate::catalog::{split, LakeCatalog};
#[cfg(doc)]
use crate::commit::Commit;
use crate::db::DeltaRow;
use crate::error::Result;

impl LakeCatalog {
    /// The published version of a Delta table, `None` when there is none.
    pub async fn delta_table(&self, ident: &TableIdent) -> Result<Option<DeltaPointer>> {
        let (namespace, name) = split(ident);
        let found = self.db().delta_table(&namespace, name).await?;
        Ok(found.map(|(location, version)| {
            DeltaPointer::new(
                ident.clone(),
                location,
                u64::try_from(version).unwrap_or_default(),
            )
        }))
    }
}

/// A Delta table at a version: where it is and which version to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaPointer {
    pub ident: TableIdent,
    /// The table's URL (`file:///…` or `s3://bucket/…`).
    pub location: String,
    pub version: u64,
}

impl DeltaPointer {
    pub fn new(ident: TableIdent, location: impl Into<String>, version: u64) -> Self {
        Self {
            ident,
            location: location.into(),
            version,
        }
    }

    pub(crate) fn row(&self, commit_id: &str) -> DeltaRow {
        let (namespace, name) = split(&self.ident);
        DeltaRow {
            namespace,
            name: name.to_string(),
            location: self.location.clone(),
            version: i64::try_from(self.version).unwrap_or(i64::MAX),
            commit_id: commit_id.to_string(),
        }
    }
}
