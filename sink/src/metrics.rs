//! The sink's Prometheus metrics (served by `icefjord ingest --metrics-addr`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `icefjord_sink_records_consumed_total` | counter | topic |
//! | `icefjord_sink_records_written_total` | counter | table |
//! | `icefjord_sink_records_dead_lettered_total` | counter | table |
//! | `icefjord_sink_tombstones_total` | counter | topic (records without a value, skipped) |
//! | `icefjord_sink_commits_total` | counter | table, result = ok, refused, error |
//! | `icefjord_sink_commit_duration_seconds` | histogram | table |
//! | `icefjord_sink_last_committed_offset` | gauge | topic, partition (next offset to read) |
//! | `icefjord_sink_consumer_lag` | gauge | topic, partition (high watermark − how far it is read: the table's offset, or the consumer's position past transaction markers when nothing is pending) |

use ::metrics::{counter, gauge, histogram};

/// The consumed-records counter of `topic`; keep the handle (incrementing it is
/// one atomic add, looking it up is a registry search).
pub fn consumed(topic: &str) -> ::metrics::Counter {
    counter!("icefjord_sink_records_consumed_total", "topic" => topic.to_string())
}

pub fn committed(table: &str, written: u64, dead: u64, seconds: f64) {
    counter!("icefjord_sink_records_written_total", "table" => table.to_string())
        .increment(written);
    counter!("icefjord_sink_records_dead_lettered_total", "table" => table.to_string())
        .increment(dead);
    commit_result(table, "ok");
    histogram!("icefjord_sink_commit_duration_seconds", "table" => table.to_string())
        .record(seconds);
}

/// Count tombstones of `topic` that a commit skipped.
pub fn tombstones(topic: &str, n: u64) {
    counter!("icefjord_sink_tombstones_total", "topic" => topic.to_string()).increment(n);
}

pub fn commit_result(table: &str, result: &'static str) {
    counter!("icefjord_sink_commits_total", "table" => table.to_string(), "result" => result)
        .increment(1);
}

pub fn position(topic: &str, partition: i32, next_offset: i64) {
    gauge!("icefjord_sink_last_committed_offset", "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(next_offset as f64);
}

pub fn lag(topic: &str, partition: i32, lag: i64) {
    gauge!("icefjord_sink_consumer_lag", "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(lag.max(0) as f64);
}
