//! The query service's Prometheus metrics (served at `GET /metrics` of the
//! HTTP API) and its one log line per query (target `icefjord::query`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `icefjord_query_total` | counter | protocol = pg, http; outcome = ok, error, canceled, timeout, over_memory, refused |
//! | `icefjord_query_duration_seconds` | histogram | protocol |
//! | `icefjord_query_rows_sent_total` | counter | protocol |
//! | `icefjord_query_bytes_sent_total` | counter | protocol (Arrow bytes of the batches sent, before wire encoding) |
//! | `icefjord_query_active_connections` | gauge | protocol |
//! | `icefjord_query_result_cache_total` | counter | result = hit, miss (lookups of [`crate::result_cache`]) |

use std::time::Instant;

use ::metrics::{counter, gauge, histogram};
use datafusion::arrow::record_batch::RecordBatch;

use crate::execution::QueryLabel;

/// Which front door a query came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Pg,
    Http,
    Rest,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pg => "pg",
            Self::Http => "http",
            Self::Rest => "rest",
        }
    }
}

/// How a query ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
    Canceled,
    Timeout,
    OverMemory,
    /// Refused before it ran: not read-only, bad SQL, no such table.
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Canceled => "canceled",
            Self::Timeout => "timeout",
            Self::OverMemory => "over_memory",
            Self::Refused => "refused",
        }
    }
}

/// One query between its start and its end.
#[derive(Debug)]
pub struct QueryRecord {
    label: QueryLabel,
    started: Instant,
    rows: u64,
    bytes: u64,
}

impl QueryRecord {
    pub fn start(label: QueryLabel, started: Instant) -> Self {
        Self {
            label,
            started,
            rows: 0,
            bytes: 0,
        }
    }

    /// A batch went to the client.
    pub fn sent(&mut self, batch: &RecordBatch) {
        self.rows += batch.num_rows() as u64;
        self.bytes += batch.get_array_memory_size() as u64;
    }

    /// Count the query and write its log line.
    pub fn finish(self, outcome: Outcome, error: Option<&str>) {
        let protocol = self.label.protocol.as_str();
        let seconds = self.started.elapsed().as_secs_f64();
        counter!("icefjord_query_total", "protocol" => protocol, "outcome" => outcome.as_str())
            .increment(1);
        histogram!("icefjord_query_duration_seconds", "protocol" => protocol).record(seconds);
        counter!("icefjord_query_rows_sent_total", "protocol" => protocol).increment(self.rows);
        counter!("icefjord_query_bytes_sent_total", "protocol" => protocol).increment(self.bytes);
        let duration_ms = (seconds * 1000.0).round() as u64;
        match error {
            None => tracing::info!(
                target: "icefjord::query",
                protocol,
                user = %self.label.user,
                outcome = outcome.as_str(),
                duration_ms,
                rows = self.rows,
                statement = %self.label.statement,
                "query"
            ),
            Some(error) => tracing::warn!(
                target: "icefjord::query",
                protocol,
                user = %self.label.user,
                outcome = outcome.as_str(),
                duration_ms,
                rows = self.rows,
                statement = %self.label.statement,
                error,
                "query"
            ),
        }
    }
}

/// Count a query refused before it ran (and log it).
pub fn refused(label: QueryLabel, started: Instant, error: &str) {
    QueryRecord::start(label, started).finish(Outcome::Refused, Some(error));
}

/// Count a lookup of the result cache.
pub fn result_cache(hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    counter!("icefjord_query_result_cache_total", "result" => result).increment(1);
}

/// Holds one open connection in `icefjord_query_active_connections`.
#[derive(Debug)]
pub struct ConnectionGauge(Protocol);

impl ConnectionGauge {
    pub fn open(protocol: Protocol) -> Self {
        gauge!("icefjord_query_active_connections", "protocol" => protocol.as_str()).increment(1);
        Self(protocol)
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        gauge!("icefjord_query_active_connections", "protocol" => self.0.as_str()).decrement(1);
    }
}
