//! The commit history of a whole catalog state (`icefjord log`): every
//! snapshot on the `main` ref of every table, grouped by the commit that made
//! it (our commit id; other engines' snapshots are one commit each), newest
//! first. Derived from the tables' own metadata, so it also shows what other
//! engines committed and needs no log of its own; expired snapshots are gone
//! from it as they are from the tables.

use std::collections::BTreeMap;

use iceberg::spec::MAIN_BRANCH;

use crate::catalog::{display, LakeCatalog};
use crate::commit::{ancestry, head_of};
use crate::error::Result;
use crate::protocol::keys;

/// One commit of [`LakeCatalog::history`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When its first snapshot was made, ms since the Unix epoch.
    pub committed_at_ms: i64,
    /// Our commit id, or `snapshot:<id>` for another engine's snapshot.
    pub commit_id: String,
    /// Which command made it (`icefjord ingest`, `icefjord run`, …), or the
    /// engine that says so in its summary (`engine-name`), or `other engine`.
    pub writer: String,
    /// The Iceberg operations of its snapshots (`append`, `overwrite`, …).
    pub operation: String,
    /// `namespace.table` of every table it changed, sorted.
    pub tables: Vec<String>,
    /// The run id of a runner commit.
    pub run_id: Option<String>,
}

impl LakeCatalog {
    /// The newest `limit` commits of this catalog state (see the module docs).
    pub async fn history(&self, limit: usize) -> Result<Vec<HistoryEntry>> {
        let mut commits: BTreeMap<String, HistoryEntry> = BTreeMap::new();
        for namespace in self.namespaces().await? {
            for ident in self.tables(&namespace).await? {
                let table = self.load(&ident).await?;
                let metadata = table.metadata();
                for snapshot in ancestry(metadata, head_of(metadata, MAIN_BRANCH)) {
                    let summary = &snapshot.summary().additional_properties;
                    let id = summary
                        .get(keys::COMMIT_ID)
                        .cloned()
                        .unwrap_or_else(|| format!("snapshot:{}", snapshot.snapshot_id()));
                    let writer = summary
                        .get(keys::WRITER)
                        .or_else(|| summary.get("engine-name"))
                        .cloned()
                        .unwrap_or_else(|| "other engine".into());
                    let operation = snapshot.summary().operation.as_str().to_string();
                    let entry = commits.entry(id.clone()).or_insert_with(|| HistoryEntry {
                        committed_at_ms: snapshot.timestamp_ms(),
                        commit_id: id,
                        writer,
                        operation: String::new(),
                        tables: Vec::new(),
                        run_id: summary.get(keys::RUN_ID).cloned(),
                    });
                    entry.committed_at_ms = entry.committed_at_ms.min(snapshot.timestamp_ms());
                    let name = display(&ident);
                    if !entry.tables.contains(&name) {
                        entry.tables.push(name);
                    }
                    if !entry.operation.split(',').any(|o| o == operation) {
                        if !entry.operation.is_empty() {
                            entry.operation.push(',');
                        }
                        entry.operation.push_str(&operation);
                    }
                }
            }
        }
        let mut entries: Vec<HistoryEntry> = commits.into_values().collect();
        for entry in &mut entries {
            entry.tables.sort();
        }
        entries.sort_by(|a, b| {
            b.committed_at_ms
                .cmp(&a.committed_at_ms)
                .then_with(|| a.commit_id.cmp(&b.commit_id))
        });
        entries.truncate(limit);
        Ok(entries)
    }
}
