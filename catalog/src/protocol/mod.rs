//! The table protocol: what Icefjord's writers record in a table besides its rows,
//! defined once. Writers and readers use these names and types, never the strings.
//!
//! - [`keys`]: the snapshot-summary properties of our commits (commit id, writer,
//!   run, watermark) and the typed **position keys** ([`PositionKey`]): Kafka
//!   offsets, runner boundaries and input snapshots, done intervals, the
//!   generator's position. Each parses and formats its value; an unreadable value
//!   is an error, never "start over".
//! - [`position`]: the one "find my position" walk every writer uses
//!   ([`find_position`]), which survives other engines' commits and snapshot
//!   expiry (see its invariants).
//! - [`columns`]: the `_kafka_*` columns sink tables carry.
//!
//! Modelled on iceberg-rust's `spec/snapshot_summary.rs` and
//! `spec/table_properties.rs`: keys are constants or small types, values parse
//! into typed Rust values.

pub mod columns;
pub mod keys;
pub mod position;

pub use keys::{
    BoundaryKey, BoundaryOffsets, GeneratorPositionKey, InputSnapshotKey, IntervalsKey,
    KafkaOffsetsKey, PartitionOffsets, PositionKey, Ranges,
};
pub use position::{find_position, mirror_property, Found, PositionSource};
