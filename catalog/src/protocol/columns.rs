//! The Kafka position columns every sink table carries (DESIGN §5), so that
//! exactly-once is checkable in SQL and incremental reads can select by position.

/// The source topic of a row.
pub const TOPIC: &str = "_kafka_topic";
/// The source partition of a row (`int`).
pub const PARTITION: &str = "_kafka_partition";
/// The row's offset in its partition (`long`).
pub const OFFSET: &str = "_kafka_offset";
/// The record's Kafka timestamp (`timestamp`, µs since the epoch in UTC; optional).
pub const TIMESTAMP: &str = "_kafka_timestamp";

/// All four, in the order sink tables append them.
pub const ALL: [&str; 4] = [TOPIC, PARTITION, OFFSET, TIMESTAMP];
