//! Finding a writer's position in a table that other engines share.
//!
//! Every writer of ours (the Kafka sink, the job runner, the generator) keeps its
//! position in the summary of the snapshot that moved it, atomically with the
//! rows (DESIGN §4, §5). Other engines commit to the same tables without our
//! summary properties: Spark's `rewrite_data_files`, PyIceberg's overwrite, a
//! `DELETE`, a schema change, and `expire_snapshots`, which drops old snapshots,
//! ours included. [`find_position`] is the one walk that finds a position again.
//!
//! # Invariants
//!
//! 1. **Summary first.** The position is the value in the newest snapshot of the
//!    branch's ancestry (head → parent → …) that carries the key. Snapshots of
//!    other engines on top of ours are walked past: they move no position.
//! 2. **A mirror survives expiry.** Every commit of ours to `main` also records,
//!    in one metadata update with its snapshot, each position it sets as the table
//!    property [`mirror_property`] = `{"snapshot-id", "sequence-number",
//!    "value"}`. Table properties outlive snapshot expiry and are kept by other
//!    engines' commits. The mirror is used only when the walk cannot find the key
//!    because the ancestry is cut short (expired snapshots).
//! 3. **A mirror is trusted only if its snapshot was an ancestor.** The snapshot
//!    that set it must be gone (expired), and older than the oldest snapshot left
//!    in the ancestry (by sequence number). A mirror whose snapshot still exists
//!    off the branch, or that is newer than a surviving ancestor, means the table
//!    was rolled back past our commit: that is an error, never a silent rewind.
//!    One case cannot be told from maintenance: a rollback past our commit
//!    `S`, then another engine's commit, then the expiry of `S` and of the
//!    snapshot rolled back to. `S` is then gone and older than every snapshot
//!    left, as after ordinary compaction and expiry, and the mirror is trusted
//!    though the rows after the rollback point are gone. After rolling back a
//!    table we write, let the writer commit once (its position is then found in
//!    the history) before expiring snapshots, or reset its position.
//! 4. **Never silently from the beginning.** No position at all is "start from
//!    the beginning" only when the whole ancestry back to the table's first
//!    snapshot (sequence number 1) is visible (this writer never wrote here) or
//!    the branch holds no rows. A cut ancestry with rows and no usable mirror is
//!    [`CatalogError::PositionLost`]: the writer refuses to start and says how to
//!    reset.
//! 5. **A corrupt value is an error** ([`CatalogError::PositionCorrupt`]), in the
//!    summary or in the mirror, wherever it is read.

use iceberg::spec::{TableMetadata, MAIN_BRANCH};
use serde::{Deserialize, Serialize};

use super::keys::PositionKey;
use crate::commit::{ancestry, head_of};
use crate::error::{CatalogError, Result};

/// Where [`find_position`] found a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PositionSource {
    /// In the summary of this snapshot of the branch's ancestry.
    Summary { snapshot_id: i64 },
    /// In the table-property mirror; this (expired) snapshot of ours set it.
    Mirror { snapshot_id: i64 },
}

/// A position and where it was found.
#[derive(Clone, Debug, PartialEq)]
pub struct Found<V> {
    pub value: V,
    pub source: PositionSource,
}

/// The table property mirroring the summary property `key`:
/// `icefjord.kafka.g.t` → `icefjord.position.kafka.g.t`.
pub fn mirror_property(key: &str) -> String {
    format!(
        "icefjord.position.{}",
        key.strip_prefix("icefjord.").unwrap_or(key)
    )
}

/// The mirror's value (invariant 2).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct Mirror {
    pub snapshot_id: i64,
    pub sequence_number: i64,
    pub value: String,
}

impl Mirror {
    pub(crate) fn render(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The newest position `key` on `branch` of the table (`table` names it in
/// errors). `Ok(None)`: this writer has no position here and may start from the
/// beginning (invariant 4). Errors: [`CatalogError::PositionLost`] when the
/// position cannot be found although the table may hold rows written at it;
/// [`CatalogError::PositionCorrupt`] for an unreadable value.
pub fn find_position<K: PositionKey>(
    metadata: &TableMetadata,
    table: &str,
    branch: &str,
    key: &K,
) -> Result<Option<Found<K::Value>>> {
    let name = key.key();
    let corrupt = |value: &str, message: String| CatalogError::PositionCorrupt {
        table: table.to_string(),
        key: name.clone(),
        value: value.to_string(),
        message,
    };
    let lost = |reason: String| CatalogError::PositionLost {
        table: table.to_string(),
        key: name.clone(),
        reason,
        reset: key.reset(table),
    };
    let Some(head) = head_of(metadata, branch).and_then(|id| metadata.snapshot_by_id(id)) else {
        return Ok(None);
    };
    let mut oldest = head;
    for snapshot in ancestry(metadata, Some(head.snapshot_id())) {
        if let Some(text) = snapshot.summary().additional_properties.get(&name) {
            let value = key.parse(text).map_err(|e| corrupt(text, e))?;
            return Ok(Some(Found {
                value,
                source: PositionSource::Summary {
                    snapshot_id: snapshot.snapshot_id(),
                },
            }));
        }
        oldest = snapshot;
    }
    // The whole history is visible when the oldest ancestor is the table's first
    // snapshot. A missing parent alone does not say so: PyIceberg's expiry
    // clears the parent id of the snapshots it keeps. In v2+ the first snapshot
    // has sequence number 1 (numbers start at 1 and grow with every commit).
    let complete = oldest.parent_snapshot_id().is_none()
        && (metadata.format_version() == iceberg::spec::FormatVersion::V1
            || oldest.sequence_number() <= 1);
    let mirror = (branch == MAIN_BRANCH)
        .then(|| metadata.properties().get(&mirror_property(&name)))
        .flatten();
    if let Some(text) = mirror {
        let mirror: Mirror = serde_json::from_str(text)
            .map_err(|e| corrupt(text, format!("unreadable position mirror: {e}")))?;
        let id = mirror.snapshot_id;
        if metadata.snapshot_by_id(id).is_some() || complete {
            return Err(lost(format!(
                "snapshot {id}, which set it, is not in the history of branch {branch} \
                 any more: the table was rolled back past it"
            )));
        }
        let versioned = metadata.format_version() != iceberg::spec::FormatVersion::V1;
        if versioned && mirror.sequence_number >= oldest.sequence_number() {
            return Err(lost(format!(
                "snapshot {id} (sequence number {}), which set it, is newer than snapshot {} \
                 (sequence number {}) of the history of branch {branch}, yet gone: the table \
                 was rolled back past it",
                mirror.sequence_number,
                oldest.snapshot_id(),
                oldest.sequence_number()
            )));
        }
        let value = key
            .parse(&mirror.value)
            .map_err(|e| corrupt(&mirror.value, e))?;
        return Ok(Some(Found {
            value,
            source: PositionSource::Mirror { snapshot_id: id },
        }));
    }
    if complete || !holds_rows(head) {
        return Ok(None);
    }
    Err(lost(format!(
        "no snapshot left in the history of branch {branch} carries it (the oldest, {}, \
         has an expired parent) and the table holds rows",
        oldest.snapshot_id()
    )))
}

/// Whether a snapshot's table state may hold rows (`total-records`, written by
/// every Iceberg writer we know; assumed when absent).
fn holds_rows(snapshot: &iceberg::spec::Snapshot) -> bool {
    snapshot
        .summary()
        .additional_properties
        .get("total-records")
        .and_then(|n| n.parse::<u64>().ok())
        .is_none_or(|n| n > 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use iceberg::spec::{
        FormatVersion, NestedField, Operation, PrimitiveType, Schema, Snapshot, SnapshotReference,
        SnapshotRetention, SortOrder, Summary, TableMetadataBuilder, Type, UnboundPartitionSpec,
    };

    use super::*;
    use crate::protocol::GeneratorPositionKey;

    const KEY: &str = "icefjord.generator.retail.seed-1.next-position";

    fn key() -> GeneratorPositionKey {
        GeneratorPositionKey {
            kind: "retail".into(),
            seed: 1,
        }
    }

    /// A table's metadata as a log of commits; `ours` sets the position (and its
    /// mirror, as our commit path does), `theirs` is another engine's commit.
    struct Log {
        metadata: TableMetadata,
    }

    impl Log {
        fn new() -> Self {
            let schema = Schema::builder()
                .with_fields(vec![NestedField::required(
                    1,
                    "x",
                    Type::Primitive(PrimitiveType::Long),
                )
                .into()])
                .build()
                .unwrap();
            let metadata = TableMetadataBuilder::new(
                schema,
                UnboundPartitionSpec::builder().build(),
                SortOrder::unsorted_order(),
                "memory://t".into(),
                FormatVersion::V2,
                HashMap::new(),
            )
            .unwrap()
            .build()
            .unwrap()
            .metadata;
            Self { metadata }
        }

        fn commit(&mut self, id: i64, parent: Option<i64>, position: Option<u64>, rows: u64) {
            let sequence_number = self.metadata.last_sequence_number() + 1;
            let mut properties = HashMap::from([("total-records".into(), rows.to_string())]);
            let mut mirrors = HashMap::new();
            if let Some(p) = position {
                properties.insert(KEY.into(), p.to_string());
                let mirror = Mirror {
                    snapshot_id: id,
                    sequence_number,
                    value: p.to_string(),
                };
                mirrors.insert(mirror_property(KEY), mirror.render());
            }
            let snapshot = Snapshot::builder()
                .with_snapshot_id(id)
                .with_parent_snapshot_id(parent)
                .with_sequence_number(sequence_number)
                .with_timestamp_ms(self.metadata.last_updated_ms() + 1)
                .with_manifest_list(format!("memory://t/snap-{id}.avro"))
                .with_schema_id(0)
                .with_summary(Summary {
                    operation: Operation::Append,
                    additional_properties: properties,
                })
                .build();
            self.metadata = self
                .metadata
                .clone()
                .into_builder(None)
                .set_properties(mirrors)
                .unwrap()
                .add_snapshot(snapshot)
                .unwrap()
                .set_ref(
                    MAIN_BRANCH,
                    SnapshotReference::new(id, SnapshotRetention::branch(None, None, None)),
                )
                .unwrap()
                .build()
                .unwrap()
                .metadata;
        }

        fn ours(&mut self, id: i64, parent: Option<i64>, position: u64) {
            self.commit(id, parent, Some(position), position);
        }

        fn theirs(&mut self, id: i64, parent: i64, rows: u64) {
            self.commit(id, Some(parent), None, rows);
        }

        fn expire(&mut self, ids: &[i64]) {
            self.metadata = self
                .metadata
                .clone()
                .into_builder(None)
                .remove_snapshots(ids)
                .build()
                .unwrap()
                .metadata;
        }

        fn find(&self) -> Result<Option<Found<u64>>> {
            find_position(&self.metadata, "raw.t", MAIN_BRANCH, &key())
        }
    }

    #[test]
    fn the_walk_passes_other_engines_snapshots() {
        let mut log = Log::new();
        assert_eq!(log.find().unwrap(), None);
        log.ours(1, None, 10);
        log.ours(2, Some(1), 20);
        log.theirs(3, 2, 20);
        log.theirs(4, 3, 18);
        let found = log.find().unwrap().unwrap();
        assert_eq!(found.value, 20);
        assert_eq!(found.source, PositionSource::Summary { snapshot_id: 2 });
    }

    #[test]
    fn after_expiry_the_mirror_carries_the_position() {
        let mut log = Log::new();
        log.ours(1, None, 10);
        log.ours(2, Some(1), 20);
        log.theirs(3, 2, 20);
        log.expire(&[1, 2]);
        let found = log.find().unwrap().unwrap();
        assert_eq!(found.value, 20);
        assert_eq!(found.source, PositionSource::Mirror { snapshot_id: 2 });
        // Two foreign commits, the older one expired with ours.
        log.theirs(4, 3, 20);
        log.expire(&[3]);
        assert_eq!(log.find().unwrap().unwrap().value, 20);
    }

    #[test]
    fn a_table_that_never_had_the_position_starts_from_the_beginning() {
        // A foreign table whose whole history is visible: this writer never wrote.
        let mut log2 = Log::new();
        log2.commit(7, None, None, 100);
        assert_eq!(log2.find().unwrap(), None);
        // Cut history, but no rows: nothing to write twice.
        let mut log3 = Log::new();
        log3.commit(1, None, None, 5);
        log3.commit(2, Some(1), None, 0);
        log3.expire(&[1]);
        assert_eq!(log3.find().unwrap(), None);
    }

    #[test]
    fn a_cut_history_with_rows_and_no_mirror_is_lost() {
        let mut log = Log::new();
        log.ours(1, None, 10);
        log.theirs(2, 1, 10);
        log.metadata = log
            .metadata
            .clone()
            .into_builder(None)
            .remove_properties(&[mirror_property(KEY)])
            .unwrap()
            .build()
            .unwrap()
            .metadata;
        log.expire(&[1]);
        let err = log.find().unwrap_err();
        assert!(
            matches!(&err, CatalogError::PositionLost { table, key, .. } if table == "raw.t" && key == KEY),
            "{err}"
        );
        assert!(err.to_string().contains("holds rows"), "{err}");
    }

    #[test]
    fn a_mirror_past_a_rollback_is_lost_not_trusted() {
        // Rolled back to 1, another engine rewrote on top, 1 expired: the
        // mirror's snapshot 2 still exists off the branch.
        let mut log = Log::new();
        log.ours(1, None, 10);
        log.ours(2, Some(1), 20);
        log.theirs(3, 1, 10);
        log.expire(&[1]);
        let err = log.find().unwrap_err();
        assert!(err.to_string().contains("rolled back"), "{err}");
        // Rolled back from our 3 to their 2, with 1 and 3 expired: 3 is gone,
        // but its sequence number is newer than 2, which it would have to precede.
        let mut log = Log::new();
        log.ours(1, None, 10);
        log.theirs(2, 1, 10);
        log.ours(3, Some(2), 20);
        log.metadata = log
            .metadata
            .clone()
            .into_builder(None)
            .set_ref(
                MAIN_BRANCH,
                SnapshotReference::new(2, SnapshotRetention::branch(None, None, None)),
            )
            .unwrap()
            .build()
            .unwrap()
            .metadata;
        log.expire(&[1, 3]);
        let err = log.find().unwrap_err();
        assert!(err.to_string().contains("newer than snapshot 2"), "{err}");
    }

    #[test]
    fn corrupt_values_are_errors_in_the_summary_and_in_the_mirror() {
        let mut log = Log::new();
        log.ours(1, None, 10);
        log.metadata = log
            .metadata
            .clone()
            .into_builder(None)
            .set_properties(HashMap::from([(mirror_property(KEY), "{oops".to_string())]))
            .unwrap()
            .build()
            .unwrap()
            .metadata;
        log.theirs(2, 1, 10);
        log.expire(&[1]);
        let err = log.find().unwrap_err();
        assert!(matches!(err, CatalogError::PositionCorrupt { .. }), "{err}");
    }
}
