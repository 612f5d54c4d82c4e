//! A consumed Kafka record, independent of the client library.

use std::sync::Arc;

use bytes::Bytes;

/// One record as consumed: where it came from and its raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRecord {
    /// Shared by every record of the topic (no allocation per record).
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Record timestamp in milliseconds since the epoch, when the broker gave one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}
