//! Kafka offsets held by the table (DESIGN §5): the table, not the consumer group,
//! is the source of truth for what has been ingested.
//!
//! # Invariants
//!
//! - Each sink commit stores, in the snapshot summary under
//!   `icefjord.kafka.<group>.<topic>`, a JSON object `{"<partition>": next_offset}`
//!   merged with the value the table held before, so every partition ever ingested
//!   keeps its position even when a batch touches only some partitions.
//! - Readers find it with the table protocol's one walk
//!   (`icefjord_catalog::protocol::find_position`): past snapshots of maintenance
//!   or other engines, through the position mirror after snapshot expiry; a lost
//!   position stops the sink instead of starting the topic over.
//! - **Fence**: a batch that starts partition `p` at offset `s` may commit only if the
//!   table holds exactly `s` for `p` (or nothing for `p` and `s` is the first offset
//!   the consumer saw). Anything else means another writer (a zombie from before a
//!   rebalance, a second sink) moved the partition: the batch is refused whole, the
//!   sink re-reads the stored offsets and seeks there. Records therefore land once.
//! - The check and the merge run on every commit attempt against the freshly loaded
//!   table ([`OffsetFence`] is an `icefjord_catalog::CommitGuard`), so a lost
//!   compare-and-swap never commits against stale offsets.

use std::collections::BTreeMap;

use iceberg::spec::TableMetadata;
use icefjord_catalog::protocol::{find_position, KafkaOffsetsKey, PositionKey};
use icefjord_catalog::{CatalogError, CommitGuard};

pub use icefjord_catalog::protocol::PartitionOffsets;

/// The offsets `table` holds for `group`/`topic` on `branch` (empty when this
/// sink never wrote there), found by the protocol's one walk
/// ([`find_position`]): past other engines' snapshots, through the mirror after
/// snapshot expiry. An unreadable or lost position is an error, never "none":
/// treating it as none would start the topic over and ingest everything twice.
pub fn stored(
    metadata: &TableMetadata,
    table: &str,
    branch: &str,
    group: &str,
    topic: &str,
) -> Result<PartitionOffsets, CatalogError> {
    let key = KafkaOffsetsKey {
        group: group.to_string(),
        topic: topic.to_string(),
    };
    Ok(find_position(metadata, table, branch, &key)?
        .map(|found| found.value)
        .unwrap_or_default())
}

/// The range of offsets a batch covers in one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// First offset of the batch in this partition.
    pub start: i64,
    /// One past the last offset consumed (the next offset to read).
    pub end: i64,
    /// Whether `start` is where the consumer began with no stored offset (the
    /// earliest offset of the partition): allowed only when the table holds none.
    pub from_scratch: bool,
}

/// The fence and merge of one batch, run on every commit attempt.
#[derive(Clone, Debug)]
pub struct OffsetFence {
    pub group: String,
    pub topic: String,
    pub spans: BTreeMap<i32, Span>,
}

impl OffsetFence {
    /// Check the batch against `stored` and return the merged offsets.
    pub fn apply(&self, stored: &PartitionOffsets) -> Result<PartitionOffsets, String> {
        for (partition, span) in &self.spans {
            match stored.get(partition) {
                Some(&held) if held == span.start => {}
                None if span.from_scratch => {}
                Some(&held) => {
                    return Err(format!(
                        "partition {partition} of {} is at offset {held} in the table, \
                         but this batch starts at {}",
                        self.topic, span.start
                    ));
                }
                None => {
                    return Err(format!(
                        "partition {partition} of {} has no stored offset, but this batch \
                         starts at {} (not from the beginning)",
                        self.topic, span.start
                    ));
                }
            }
        }
        let mut merged = stored.clone();
        for (partition, span) in &self.spans {
            merged.insert(*partition, span.end);
        }
        Ok(merged)
    }
}

impl CommitGuard for OffsetFence {
    fn check(
        &self,
        metadata: &TableMetadata,
        branch: &str,
    ) -> Result<BTreeMap<String, String>, String> {
        let key = KafkaOffsetsKey {
            group: self.group.clone(),
            topic: self.topic.clone(),
        };
        // The guard runs on the table being committed to; its name is in the
        // commit's own error.
        let stored = stored(metadata, "the table", branch, &self.group, &self.topic)
            .map_err(|e| e.to_string())?;
        let merged = self.apply(&stored)?;
        Ok(BTreeMap::from([(key.key(), key.format(&merged))]))
    }
}

/// The guard of a deliberate reset of a lost position (`--reset-offsets` when
/// the table lost it, see `icefjord_catalog::protocol::position`): lands only
/// while the position is still lost, and sets it to `offsets`.
#[derive(Clone, Debug)]
pub struct LostReset {
    pub group: String,
    pub topic: String,
    pub offsets: PartitionOffsets,
}

impl CommitGuard for LostReset {
    fn check(
        &self,
        metadata: &TableMetadata,
        branch: &str,
    ) -> Result<BTreeMap<String, String>, String> {
        match stored(metadata, "the table", branch, &self.group, &self.topic) {
            Err(CatalogError::PositionLost { .. }) => {
                let key = KafkaOffsetsKey {
                    group: self.group.clone(),
                    topic: self.topic.clone(),
                };
                Ok(BTreeMap::from([(key.key(), key.format(&self.offsets))]))
            }
            Ok(_) => Err(format!(
                "the offsets of {} are no longer lost (another writer set them): \
                 nothing was reset",
                self.topic
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fence(spans: &[(i32, i64, i64, bool)]) -> OffsetFence {
        OffsetFence {
            group: "g".into(),
            topic: "t".into(),
            spans: spans
                .iter()
                .map(|&(p, start, end, from_scratch)| {
                    (
                        p,
                        Span {
                            start,
                            end,
                            from_scratch,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn a_batch_continuing_the_stored_offsets_merges() {
        let stored = PartitionOffsets::from([(0, 10), (1, 7)]);
        let merged = fence(&[(0, 10, 25, false)]).apply(&stored).unwrap();
        assert_eq!(merged, PartitionOffsets::from([(0, 25), (1, 7)]));
    }

    #[test]
    fn a_zombie_batch_is_refused() {
        let stored = PartitionOffsets::from([(0, 25)]);
        let err = fence(&[(0, 10, 25, false)]).apply(&stored).unwrap_err();
        assert!(
            err.contains("partition 0") && err.contains("25") && err.contains("10"),
            "{err}"
        );
        // Even a batch from scratch is refused once the table holds an offset.
        assert!(fence(&[(0, 0, 5, true)]).apply(&stored).is_err());
    }

    #[test]
    fn a_new_partition_may_start_only_from_scratch() {
        let stored = PartitionOffsets::new();
        assert!(fence(&[(2, 0, 5, true)]).apply(&stored).is_ok());
        assert!(fence(&[(2, 40, 45, false)]).apply(&stored).is_err());
    }
}
