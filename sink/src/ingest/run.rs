//! The state of one run of the sink and the steps of its loop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use icefjord_catalog::CommitId;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;

use super::*;
use crate::decode::EventDecoder;
use crate::error::Result;
use crate::kafka::{Assignment, SinkContext};
use crate::offsets::Span;
use crate::record::{ByteArena, SourceRecord};

/// The state of one `run`: the consumer, the open batch and where each partition
/// stands. Data flows one way: [`Run::accept`] → [`Run::flush`] → the table.
pub(super) struct Run<'a> {
    pub(super) ingest: &'a Ingest,
    pub(super) consumer: Arc<StreamConsumer<SinkContext>>,
    pub(super) decoder: EventDecoder,
    pub(super) assignment: Arc<Assignment>,
    pub(super) report: IngestReport,
    pub(super) cursors: BTreeMap<i32, Cursor>,
    pub(super) batch: Batch,
    /// Holds the bytes of the records of the open batch (and reuses those of
    /// committed ones).
    pub(super) arena: ByteArena,
    /// The batch being committed, if any (at most one: commits land in order).
    pub(super) in_flight: Option<InFlight<'a>>,
    /// The topic's name, shared by its records.
    pub(super) topic_name: Arc<str>,
    /// `icefjord_sink_records_consumed_total{topic}`, looked up once.
    pub(super) consumed_counter: ::metrics::Counter,
}

impl Run<'_> {
    pub(super) fn topic(&self) -> &str {
        &self.ingest.route.topic
    }

    /// The open batch reached its row or byte limit.
    pub(super) fn batch_full(&self) -> bool {
        let limits = &self.ingest.limits;
        self.batch.records.len() >= limits.rows || self.batch.bytes >= limits.bytes
    }

    /// The open batch should be committed now (full, or open for the interval).
    pub(super) fn batch_due(&self) -> bool {
        self.batch_full()
            || self
                .batch
                .opened
                .is_some_and(|t| t.elapsed() >= self.ingest.limits.interval)
    }

    /// Resolves when the batch in flight is committed (never when there is none).
    /// Cancel-safe: dropped early, the batch stays in flight.
    pub(super) async fn landed(in_flight: &mut Option<InFlight<'_>>) -> Result<Settled> {
        match in_flight {
            Some(commit) => {
                let settled = commit.as_mut().await;
                *in_flight = None;
                settled
            }
            None => std::future::pending().await,
        }
    }

    /// After a rebalance: the batch in flight lands first; partitions in the open
    /// batch keep their cursors; the others restart from the table (the fence
    /// catches anything that moved).
    pub(super) async fn rebalanced(&mut self) -> Result<()> {
        self.settle_in_flight().await?;
        let stored = self.ingest.stored_offsets().await?;
        *lock(&self.assignment.table_offsets) = stored.clone();
        // Every assignment: the stored positions must lie within the log.
        self.check_assigned_logs(&stored)?;
        let batch = &self.batch;
        self.cursors.retain(|p, _| batch.spans.contains_key(p));
        for (p, &o) in &stored {
            self.cursors.entry(*p).or_insert(Cursor {
                next: Some(o),
                exact: true,
            });
        }
        Ok(())
    }

    /// Take a record into the open batch, or skip it when the table or the batch
    /// already holds its offset.
    pub(super) fn accept(&mut self, m: &BorrowedMessage<'_>) -> Result<()> {
        let (partition, offset) = (m.partition(), m.offset());
        let table_offsets = &self.assignment.table_offsets;
        let cursor = *self.cursors.entry(partition).or_insert_with(|| Cursor {
            next: lock(table_offsets).get(&partition).copied(),
            exact: true,
        });
        match cursor.next {
            Some(next) if offset < next => return Ok(()),
            Some(next) if offset > next && cursor.exact => {
                // Started past the table's offset: records deleted before they were
                // read stop the sink (position.rs); otherwise (e.g. the group offset
                // ran ahead) go back once; a real gap (compaction, transaction
                // markers) is accepted after that.
                self.ingest.check_log(&self.consumer, partition, next)?;
                tracing::warn!(
                    partition,
                    offset,
                    next,
                    "seeking back to the table's offset"
                );
                self.consumer.seek(
                    self.topic(),
                    partition,
                    Offset::Offset(next),
                    Duration::from_secs(10),
                )?;
                self.cursors.insert(
                    partition,
                    Cursor {
                        next: Some(next),
                        exact: false,
                    },
                );
                return Ok(());
            }
            _ => {}
        }
        let start = cursor.next.unwrap_or(offset);
        let span = self.batch.spans.entry(partition).or_insert(Span {
            start,
            end: start,
            from_scratch: cursor.next.is_none(),
        });
        span.end = offset + 1;
        self.cursors.insert(
            partition,
            Cursor {
                next: Some(offset + 1),
                exact: false,
            },
        );
        let arena = &mut self.arena;
        let value = m.payload().map(|v| arena.copy(v));
        let key = m.key().map(|k| arena.copy(k));
        self.batch.bytes += value.as_ref().map_or(0, |v| v.len());
        if self.batch.records.capacity() == 0 {
            // Room for a full batch up front: growing by doubling copied ~2× the
            // batch and faulted in fresh pages for each copy (a fifth of the sink's
            // page faults). Pages are touched only as records arrive.
            let rows = self.ingest.limits.rows.min(MAX_PREALLOCATED_ROWS);
            self.batch.records.reserve(rows);
        }
        self.batch.records.push(SourceRecord {
            topic: self.topic_name.clone(),
            partition,
            offset,
            timestamp_ms: m.timestamp().to_millis(),
            key,
            value,
        });
        self.batch.opened.get_or_insert_with(Instant::now);
        self.report.consumed += 1;
        self.consumed_counter.increment(1);
        Ok(())
    }

    /// Whether records of `partition` are in the open batch or may be in the
    /// batch being committed.
    pub(super) fn pending(&self, partition: i32) -> bool {
        self.batch.spans.contains_key(&partition) || self.in_flight.is_some()
    }

    /// [`Ingest::check_logs`] for the partitions assigned to this consumer.
    fn check_assigned_logs(&self, stored: &BTreeMap<i32, i64>) -> Result<()> {
        let assigned: Vec<i32> = self
            .consumer
            .assignment()?
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        self.ingest.check_logs(&self.consumer, assigned, stored)
    }

    /// The consumer could not continue a partition at its position (the offset is
    /// outside the log; `auto.offset.reset` is `error`): find which and say so.
    pub(super) fn position_lost(&self, error: &rdkafka::error::KafkaError) -> Result<()> {
        let stored = lock(&self.assignment.table_offsets).clone();
        self.check_assigned_logs(&stored)?;
        // Within the log again (the broker caught up): librdkafka retries the fetch.
        tracing::warn!(%error, "the consumer's position was out of range; the table's offsets are within the log");
        Ok(())
    }

    /// Take the open batch for committing (`None` when it is empty).
    pub(super) fn seal(&mut self) -> Option<Sealed> {
        if self.batch.spans.is_empty() {
            return None;
        }
        let batch = std::mem::take(&mut self.batch);
        std::mem::swap(
            &mut self.batch.records,
            &mut *lock(&self.ingest.spare_records),
        );
        tracing::debug!(
            records = batch.records.len(),
            open_for = ?batch.opened.map(|t| t.elapsed()),
            "sealed batch"
        );
        Some(Sealed {
            records: batch.records,
            spans: batch.spans,
            commit_id: CommitId::mint(),
        })
    }

    /// Commit the open batch in the background, after the one in flight (commits
    /// land in order: each batch's fence expects its predecessor's offsets). With
    /// `wait`, also wait for it to land.
    pub(super) async fn flush(&mut self, wait: bool) -> Result<()> {
        self.settle_in_flight().await?;
        if let Some(sealed) = self.seal() {
            self.in_flight = Some(Box::pin(
                self.ingest.commit_batch(self.decoder.clone(), sealed),
            ));
        }
        if wait {
            self.settle_in_flight().await?;
        }
        Ok(())
    }

    /// Wait for the batch in flight, if any, and apply its outcome.
    pub(super) async fn settle_in_flight(&mut self) -> Result<()> {
        match self.in_flight.take() {
            Some(in_flight) => {
                let settled = in_flight.await?;
                self.settle(settled).await
            }
            None => Ok(()),
        }
    }

    /// Apply the outcome of a commit: offsets, report and metrics, or (refused) a
    /// restart of every partition from the table, dropping the open batch too
    /// (it continues the refused one).
    pub(super) async fn settle(&mut self, settled: Settled) -> Result<()> {
        let route = &self.ingest.route;
        let table_name = icefjord_catalog::display(&route.table);
        match settled {
            Settled::Landed {
                spans,
                written,
                dead,
                tombstones,
                evolution,
                already_applied,
                seconds,
            } => {
                if let Some(evolution) = &evolution {
                    tracing::info!(
                        table = %table_name,
                        added = ?evolution.added,
                        widened = ?evolution.widened,
                        "evolved the table's schema"
                    );
                    self.report.schema_changes += u64::from(!already_applied);
                    self.decoder = self.ingest.decoder().await?;
                }
                if !already_applied {
                    self.report.written += written;
                    self.report.dead_lettered += dead;
                    self.report.tombstones += tombstones;
                    self.report.commits += 1;
                    crate::metrics::committed(&table_name, written, dead, seconds);
                    crate::metrics::tombstones(&route.topic, tombstones);
                }
                let mut tpl = TopicPartitionList::new();
                {
                    let mut stored = lock(&self.assignment.table_offsets);
                    for (p, span) in &spans {
                        stored.insert(*p, span.end);
                        crate::metrics::position(&route.topic, *p, span.end);
                        tpl.add_partition_offset(&route.topic, *p, Offset::Offset(span.end))?;
                    }
                }
                // For lag monitoring only; failures are harmless.
                if self.ingest.assign == Assign::Group {
                    if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                        tracing::debug!(error = %e, "group offset commit failed");
                    }
                }
                tracing::info!(table = %table_name, rows = written, dead, tombstones, "committed batch");
                Ok(())
            }
            Settled::Refused { reason, schema } => {
                if schema {
                    // Another writer evolved the schema first: decode again
                    // against the table's schema as it is now.
                    tracing::warn!(%reason, "schema changed concurrently; re-reading the batch");
                    self.decoder = self.ingest.decoder().await?;
                } else {
                    tracing::warn!(%reason, "batch refused by the offset fence; re-reading offsets from the table");
                }
                self.report.refused_commits += 1;
                crate::metrics::commit_result(&table_name, "refused");
                self.reset_to_table().await
            }
        }
    }

    /// Drop the open batch and put every assigned partition back at the offset the
    /// table holds (after another writer moved it).
    pub(super) async fn reset_to_table(&mut self) -> Result<()> {
        self.batch = Batch::default();
        let stored = self.ingest.stored_offsets().await?;
        self.cursors.clear();
        for element in self.consumer.assignment()?.elements() {
            let p = element.partition();
            let offset = stored
                .get(&p)
                .map_or(Offset::Beginning, |&o| Offset::Offset(o));
            self.consumer
                .seek(self.topic(), p, offset, Duration::from_secs(10))?;
            self.cursors.insert(
                p,
                Cursor {
                    next: stored.get(&p).copied(),
                    exact: false,
                },
            );
        }
        *lock(&self.assignment.table_offsets) = stored;
        Ok(())
    }
}
