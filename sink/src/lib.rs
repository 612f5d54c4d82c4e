//! The exactly-once Kafka → Iceberg sink.
//!
//! The pieces, usable without a broker:
//! - [`offsets`]: the protocol by which the table holds the Kafka offsets and fences
//!   zombie writers (a `CommitGuard` on the commit path);
//! - [`decode`]: JSON records → Arrow rows with `_kafka_*` columns, and dead letters
//!   for everything that does not fit, so `consumed = written + dead-lettered`.

pub mod decode;
pub mod error;
pub mod ingest;
pub mod kafka;
pub mod metrics;
pub mod offsets;
pub mod record;
pub mod simulate;

pub use decode::{DeadLetter, Decoded, EventDecoder, Evolution, Stage};
pub use error::{Result, SinkError};
pub use ingest::{
    Assign, BatchLimits, Ingest, IngestReport, Progress, ProgressObserver, ResetOffsets, ResetTo,
    Route,
};
pub use kafka::{KafkaSettings, SaslMechanism};
pub use offsets::{OffsetFence, PartitionOffsets, Span};
pub use record::SourceRecord;
