//! Where each partition stands: the offsets the table holds, the broker's log
//! (watermarks) and the consumer's position.
//!
//! # Invariants
//!
//! - **The stored position lies within the broker's log.** On start and on every
//!   assignment, each partition's stored offset `s` is compared with the log's
//!   watermarks `[low, high]`: `high < s` means the log is behind the table (the
//!   topic was deleted and recreated, or the log truncated); `low > s` means
//!   records were deleted (retention) before the sink read them. Either stops the
//!   sink ([`SinkError::LogMoved`]) instead of skipping records silently: offsets
//!   `0..s` of a recreated topic would otherwise be dropped as already read, and
//!   the records `s..low` lost. The same check runs when a partition delivers a
//!   record past the offset the sink expects.
//! - **Only a deliberate reset moves a position backwards or over a gap**:
//!   `--reset-offsets TOPIC=earliest|latest` names the topic, acts only on
//!   partitions outside the log, or on every partition when the table has lost
//!   its position (`CatalogError::PositionLost`: history cut by another engine's
//!   snapshot expiry with no usable mirror), refusing when there is nothing to
//!   reset (so a flag left in a deployment fails loudly instead of acting
//!   later), and records each new position in a commit of its own, fenced like a
//!   batch (a lost position: fenced on its still being lost).
//! - **Caught up is judged from the consumer's position**, not from the last
//!   record's offset + 1: transaction markers (and aborted records under
//!   `read_committed`) occupy offsets that no consumer receives, so a partition
//!   whose log ends with a marker has a high watermark one past the last record
//!   forever. A partition is drained when the table's offset or, with nothing of
//!   it pending, the consumer's position has reached the high watermark.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use iceberg::spec::MAIN_BRANCH;
use icefjord_catalog::protocol::keys;
use icefjord_catalog::{CatalogError, CommitId, TableWrite};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::*;
use crate::error::{Result, SinkError};
use crate::kafka::SinkContext;
use crate::offsets::{self, OffsetFence, Span};

/// The reset `--reset-offsets TOPIC=earliest|latest` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetOffsets {
    /// Must be the route's topic: a reset never applies to a topic by accident.
    pub topic: String,
    pub to: ResetTo,
}

/// Where a reset moves a position outside the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetTo {
    /// The log's start (low watermark): ingest everything the log holds now.
    Earliest,
    /// The log's end (high watermark): skip what the log holds now.
    Latest,
}

impl std::str::FromStr for ResetOffsets {
    type Err = String;

    /// `TOPIC=earliest` or `TOPIC=latest`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (topic, to) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("{s:?} is not TOPIC=earliest or TOPIC=latest"))?;
        let to = match to {
            "earliest" => ResetTo::Earliest,
            "latest" => ResetTo::Latest,
            other => return Err(format!("{other:?} is not earliest or latest")),
        };
        if topic.is_empty() {
            return Err(format!(
                "{s:?} names no topic (TOPIC=earliest or TOPIC=latest)"
            ));
        }
        Ok(Self {
            topic: topic.to_string(),
            to,
        })
    }
}

impl ResetTo {
    fn as_str(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
        }
    }
}

/// The summary property a reset commit carries: `{partition: "old -> new (to)"}`.
pub use icefjord_catalog::protocol::keys::KAFKA_RESET as RESET_PROPERTY;

/// A partition's log as the broker reports it: offsets `low..high` (its
/// watermarks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Log {
    low: i64,
    high: i64,
}

impl Log {
    /// Whether reading can continue at `stored`: at a record of the log, or at its
    /// end.
    fn continues(self, stored: i64) -> bool {
        self.low <= stored && stored <= self.high
    }

    /// [`SinkError::LogMoved`] unless reading can continue at `stored`.
    fn check(self, topic: &str, partition: i32, stored: i64) -> Result<()> {
        if self.continues(stored) {
            return Ok(());
        }
        Err(SinkError::LogMoved {
            topic: topic.to_string(),
            partition,
            stored,
            low: self.low,
            high: self.high,
        })
    }
}

/// How long a watermark query may take.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);

impl Ingest {
    /// The broker's log of `partition` is where the table's position `stored` can
    /// continue: `low <= stored <= high`. Otherwise the error that stops the sink.
    pub(super) fn check_log(
        &self,
        consumer: &StreamConsumer<SinkContext>,
        partition: i32,
        stored: i64,
    ) -> Result<()> {
        let (low, high) =
            consumer.fetch_watermarks(&self.route.topic, partition, WATERMARK_TIMEOUT)?;
        Log { low, high }.check(&self.route.topic, partition, stored)
    }

    /// [`Self::check_log`] for every partition in `partitions` that has a stored
    /// offset.
    pub(super) fn check_logs(
        &self,
        consumer: &StreamConsumer<SinkContext>,
        partitions: impl IntoIterator<Item = i32>,
        stored: &BTreeMap<i32, i64>,
    ) -> Result<()> {
        for p in partitions {
            if let Some(&offset) = stored.get(&p) {
                self.check_log(consumer, p, offset)?;
            }
        }
        Ok(())
    }

    /// Apply `--reset-offsets` (see the module docs): commit new positions for the
    /// partitions of the topic whose stored offset is outside the log (or for
    /// every partition, when the table has lost its position: `CatalogError::
    /// PositionLost`), then return the stored offsets as they are now.
    pub(super) async fn reset_offsets(
        &self,
        consumer: &StreamConsumer<SinkContext>,
        reset: &ResetOffsets,
    ) -> Result<BTreeMap<i32, i64>> {
        if reset.topic != self.route.topic {
            return Err(SinkError::Config {
                field: "--reset-offsets".into(),
                message: format!(
                    "it names topic {}, but this sink reads {}",
                    reset.topic, self.route.topic
                ),
            });
        }
        let stored = match self.stored_offsets().await {
            Ok(stored) => Some(stored),
            Err(SinkError::Catalog(CatalogError::PositionLost { .. })) => None,
            Err(e) => return Err(e),
        };
        let partitions = match &stored {
            Some(stored) => stored.iter().map(|(&p, &o)| (p, Some(o))).collect(),
            None => self
                .topic_partitions(consumer)?
                .into_iter()
                .map(|p| (p, None))
                .collect::<Vec<_>>(),
        };
        let mut spans = BTreeMap::new();
        let mut moved = BTreeMap::new();
        for (p, offset) in partitions {
            let (low, high) = consumer.fetch_watermarks(&self.route.topic, p, WATERMARK_TIMEOUT)?;
            if offset.is_some_and(|o| (Log { low, high }).continues(o)) {
                continue;
            }
            let to = match reset.to {
                ResetTo::Earliest => low,
                ResetTo::Latest => high,
            };
            spans.insert(p, (offset, to));
            let from = offset.map_or("lost".to_string(), |o| o.to_string());
            moved.insert(
                p.to_string(),
                format!("{from} -> {to} ({})", reset.to.as_str()),
            );
        }
        if spans.is_empty() {
            return Err(SinkError::Config {
                field: "--reset-offsets".into(),
                message: format!(
                    "every stored offset of topic {} in {} lies within the broker's log: \
                     nothing to reset (remove the flag)",
                    self.route.topic,
                    icefjord_catalog::display(&self.route.table)
                ),
            });
        }
        let guard: Arc<dyn icefjord_catalog::CommitGuard> = match stored {
            Some(_) => Arc::new(OffsetFence {
                group: self.route.group.clone(),
                topic: self.route.topic.clone(),
                spans: spans
                    .iter()
                    .map(|(&p, &(start, end))| {
                        let span = Span {
                            start: start.unwrap_or(end),
                            end,
                            from_scratch: false,
                        };
                        (p, span)
                    })
                    .collect(),
            }),
            None => Arc::new(offsets::LostReset {
                group: self.route.group.clone(),
                topic: self.route.topic.clone(),
                offsets: spans.iter().map(|(&p, &(_, to))| (p, to)).collect(),
            }),
        };
        let moved_text = serde_json::to_string(&moved).unwrap_or_default();
        self.catalog
            .commit(CommitId::mint())
            .with_write(
                TableWrite::append(self.route.table.clone(), Vec::new())
                    .with_guard(guard)
                    .with_property(keys::WRITER, keys::writer::RESET_OFFSETS)
                    .with_property(keys::KAFKA_RESET, moved_text.clone()),
            )
            .execute()
            .await?;
        tracing::warn!(topic = %self.route.topic, moved = %moved_text, "reset stored offsets");
        self.stored_offsets().await
    }

    pub(super) async fn stored_offsets(&self) -> Result<BTreeMap<i32, i64>> {
        let table = self.catalog.load(&self.route.table).await?;
        Ok(offsets::stored(
            table.metadata(),
            &icefjord_catalog::display(&self.route.table),
            MAIN_BRANCH,
            &self.route.group,
            &self.route.topic,
        )?)
    }

    /// The topic's partitions as the broker's metadata lists them (none when the
    /// topic does not exist).
    pub(super) fn topic_partitions(
        &self,
        consumer: &StreamConsumer<SinkContext>,
    ) -> Result<Vec<i32>> {
        let metadata = consumer.fetch_metadata(Some(&self.route.topic), Duration::from_secs(10))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.route.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect())
    }

    pub(super) fn topic_exists(&self, consumer: &StreamConsumer<SinkContext>) -> Result<bool> {
        let metadata = consumer.fetch_metadata(Some(&self.route.topic), Duration::from_secs(10))?;
        Ok(metadata.topics().iter().any(|t| {
            t.name() == self.route.topic && t.error().is_none() && !t.partitions().is_empty()
        }))
    }

    /// Every partition of the topic is caught up: the table's stored offset, or
    /// the position of the consumer that reads it, is at the high watermark (see
    /// the module docs: markers occupy offsets no consumer receives). Call it with
    /// nothing pending (the open batch committed). Partitions held by other members
    /// (or by members that died and still hold them until their session ends) count
    /// too, judged by the position their members last committed to the group, so an
    /// `--until-idle` run never stops with records of the topic left behind.
    pub(super) async fn drained(&self, consumer: &StreamConsumer<SinkContext>) -> Result<bool> {
        let metadata = consumer.fetch_metadata(Some(&self.route.topic), Duration::from_secs(10))?;
        let Some(topic) = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.route.topic)
        else {
            return Ok(false);
        };
        let stored = self.stored_offsets().await?;
        let positions = consumer_positions(consumer);
        let mut committed: Option<BTreeMap<i32, i64>> = None;
        for partition in topic.partitions() {
            let p = partition.id();
            let (low, high) = consumer.fetch_watermarks(&self.route.topic, p, WATERMARK_TIMEOUT)?;
            let at = stored.get(&p).copied().unwrap_or(low);
            if at >= high || positions.get(&p).is_some_and(|&pos| pos >= high) {
                continue;
            }
            if positions.contains_key(&p) || self.assign == Assign::All {
                return Ok(false);
            }
            // Another member's partition: the position it committed to the group.
            let committed = match &committed {
                Some(c) => c,
                None => committed.insert(self.group_offsets(consumer, topic.partitions().len())?),
            };
            if committed.get(&p).is_none_or(|&c| c < high) {
                return Ok(false);
            }
        }
        Ok(!topic.partitions().is_empty())
    }
}

impl Ingest {
    /// The offsets the group's members committed (positions, for monitoring).
    fn group_offsets(
        &self,
        consumer: &StreamConsumer<SinkContext>,
        partitions: usize,
    ) -> Result<BTreeMap<i32, i64>> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            tpl.add_partition(&self.route.topic, p);
        }
        let committed = consumer.committed_offsets(tpl, WATERMARK_TIMEOUT)?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| {
                e.offset()
                    .to_raw()
                    .filter(|&o| o >= 0)
                    .map(|o| (e.partition(), o))
            })
            .collect())
    }
}

/// The consumer's position (next offset it will deliver) per assigned partition
/// that has one; it moves past transaction markers as they are read.
fn consumer_positions(consumer: &StreamConsumer<SinkContext>) -> BTreeMap<i32, i64> {
    let Ok(positions) = consumer.position() else {
        return BTreeMap::new();
    };
    positions
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

impl Run<'_> {
    /// With nothing pending, tell the group how far this member has read (its
    /// positions, past transaction markers), so members judging whether the topic
    /// is drained can count this member's partitions (monitoring only, like every
    /// group commit of the sink; the table holds the truth).
    pub(super) fn commit_positions(&self) {
        if self.ingest.assign != Assign::Group || self.in_flight.is_some() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, pos) in consumer_positions(&self.consumer) {
            if !self.pending(p)
                && tpl
                    .add_partition_offset(self.topic(), p, Offset::Offset(pos))
                    .is_err()
            {
                return;
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(error = %e, "group position commit failed");
            }
        }
    }

    /// Refresh the lag gauges (high watermark − how far the partition is read,
    /// per assigned partition) and return the total. How far: the table's offset,
    /// or the consumer's position when nothing of the partition is pending (the
    /// position moves past transaction markers, which no record ever fills).
    pub(super) fn update_lag(&self) -> i64 {
        let Ok(assigned) = self.consumer.assignment() else {
            return 0;
        };
        let mut total = 0;
        let stored = lock(&self.assignment.table_offsets).clone();
        let positions = consumer_positions(&self.consumer);
        for element in assigned.elements() {
            let p = element.partition();
            if let Ok((low, high)) =
                self.consumer
                    .fetch_watermarks(self.topic(), p, Duration::from_secs(2))
            {
                let table = stored.get(&p).copied().unwrap_or(low);
                let read = match positions.get(&p) {
                    Some(&pos) if !self.pending(p) => table.max(pos),
                    _ => table,
                };
                let lag = (high - read).max(0);
                crate::metrics::lag(self.topic(), p, lag);
                total += lag;
            }
        }
        total
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_position_outside_the_log_names_the_cause_the_offsets_and_the_flag() {
        let log = Log { low: 0, high: 3 };
        assert!(log.check("t", 0, 0).is_ok() && log.check("t", 0, 3).is_ok());
        // A recreated topic: the log is behind the table.
        let recreated = log.check("retail", 2, 5).unwrap_err().to_string();
        for part in [
            "partition 2 of topic retail",
            "stored offset is 5",
            "0..3",
            "recreated",
            "--reset-offsets retail=earliest",
            "--reset-offsets retail=latest",
        ] {
            assert!(recreated.contains(part), "{part}: {recreated}");
        }
        // Retention: the log starts after the table's position.
        let trimmed = Log { low: 8, high: 10 }
            .check("retail", 0, 5)
            .unwrap_err()
            .to_string();
        assert!(
            trimmed.contains("retention") && trimmed.contains("8..10"),
            "{trimmed}"
        );
        assert!(Log { low: 8, high: 10 }.check("retail", 0, 8).is_ok());
    }

    #[test]
    fn reset_flags_name_their_topic_and_direction() {
        assert_eq!(
            "retail.events=earliest".parse::<ResetOffsets>(),
            Ok(ResetOffsets {
                topic: "retail.events".into(),
                to: ResetTo::Earliest
            })
        );
        assert_eq!(
            "a=b=latest"
                .parse::<ResetOffsets>()
                .map(|r| (r.topic, r.to)),
            Ok(("a=b".into(), ResetTo::Latest))
        );
        for bad in ["earliest", "=earliest", "t=beginning", "t="] {
            assert!(bad.parse::<ResetOffsets>().is_err(), "{bad}");
        }
    }
}
