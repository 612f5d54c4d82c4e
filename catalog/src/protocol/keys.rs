//! Snapshot-summary properties of Icefjord's commits.
//!
//! Plain keys are constants. Keys that hold a writer's **position** (how far it
//! has read or written, which it must find again after any restart) implement
//! [`PositionKey`]: each names its property and parses and formats its value, so
//! a corrupt value is an error wherever it is read.

use std::collections::BTreeMap;
use std::fmt::Debug;

/// The commit id of the snapshot (idempotent retries; see `crate::commit`). Also
/// the key in a Delta commit's `commitInfo`.
pub const COMMIT_ID: &str = "icefjord.commit-id";
/// How Delta commits spelled [`COMMIT_ID`] before it was defined once: read, never
/// written, so retries of runs made by older releases still find their version.
pub const LEGACY_DELTA_COMMIT_ID: &str = "icefjord.commitId";
/// Which Icefjord command wrote the snapshot (`icefjord ingest`, `icefjord run`, …).
pub const WRITER: &str = "icefjord.writer";
/// The pipeline of a runner commit.
pub const PIPELINE: &str = "icefjord.pipeline";
/// The model of a runner commit.
pub const MODEL: &str = "icefjord.model";
/// The run id of a runner commit.
pub const RUN_ID: &str = "icefjord.run-id";
/// Records a sink batch consumed (rows + dead letters + skipped tombstones).
pub const KAFKA_RECORDS: &str = "icefjord.kafka-records";
/// What a deliberate `icefjord ingest --reset-offsets` moved:
/// `{"<partition>": "<old> -> <new> (earliest|latest)"}`.
pub const KAFKA_RESET: &str = "icefjord.kafka-reset";
/// The greatest event time of a sink batch (µs, as text).
pub const WATERMARK: &str = "icefjord.watermark.max-event-time";

/// The values of `WRITER`.
pub mod writer {
    pub const INGEST: &str = "icefjord ingest";
    pub const RESET_OFFSETS: &str = "icefjord ingest --reset-offsets";
    pub const RUN: &str = "icefjord run";
    pub const GENERATE: &str = "icefjord demo";
    /// A merge's rebase of a branch's appends (`icefjord merge`).
    pub const MERGE: &str = "icefjord merge";
}

/// Prefixes of the positions our writers keep in a *source* (Kafka offsets,
/// the generator's sequence): appends carrying one, made on two catalog
/// branches, read the same records twice, so a merge never rebases them
/// (`crate::refs`).
pub const SOURCE_POSITION_PREFIXES: [&str; 2] = ["icefjord.kafka.", "icefjord.generator."];

/// A summary property holding a writer's position, with its value's type.
pub trait PositionKey: Debug {
    type Value: Debug + Clone + PartialEq;
    /// The property name.
    fn key(&self) -> String;
    /// The value of a stored property; `Err` names what is wrong.
    fn parse(&self, text: &str) -> Result<Self::Value, String>;
    /// The property value for `value` (inverse of [`Self::parse`]).
    fn format(&self, value: &Self::Value) -> String;
    /// How a user resets this position deliberately when it is lost (for the
    /// error message; `table` is the table that lost it).
    fn reset(&self, table: &str) -> String;
}

/// Partition → next offset to read.
pub type PartitionOffsets = BTreeMap<i32, i64>;

/// The sink's offsets for one consumer group and topic (DESIGN §5):
/// `icefjord.kafka.<group>.<topic>` = `{"<partition>": next_offset}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaOffsetsKey {
    pub group: String,
    pub topic: String,
}

impl PositionKey for KafkaOffsetsKey {
    type Value = PartitionOffsets;

    fn key(&self) -> String {
        format!("icefjord.kafka.{}.{}", self.group, self.topic)
    }

    fn parse(&self, text: &str) -> Result<PartitionOffsets, String> {
        let map = serde_json::from_str::<BTreeMap<String, i64>>(text)
            .map_err(|e| format!("unreadable Kafka offsets {text:?}: {e}"))?;
        map.into_iter()
            .map(|(p, o)| {
                let partition = p
                    .parse::<i32>()
                    .map_err(|_| format!("unreadable partition {p:?} in Kafka offsets {text:?}"))?;
                if o < 0 {
                    return Err(format!("negative offset {o} in Kafka offsets {text:?}"));
                }
                Ok((partition, o))
            })
            .collect()
    }

    fn format(&self, value: &PartitionOffsets) -> String {
        let map: BTreeMap<String, i64> = value.iter().map(|(p, o)| (p.to_string(), *o)).collect();
        serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
    }

    fn reset(&self, table: &str) -> String {
        format!(
            "choose where group {} resumes reading {} with `icefjord ingest --reset-offsets \
             {}=earliest|latest` (`earliest` writes again the records the table already \
             holds), or restore {table}",
            self.group, self.topic, self.topic
        )
    }
}

/// `(topic, partition) → next offset`: the rows of a sink table an incremental
/// output has read (see `icefjord_runner::boundary`).
pub type BoundaryOffsets = BTreeMap<(String, i32), i64>;

/// An output's boundary in an input: `icefjord.boundary.<input>` =
/// `[["topic", partition, next_offset], …]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundaryKey {
    /// The input table, `namespace.table`.
    pub input: String,
}

impl PositionKey for BoundaryKey {
    type Value = BoundaryOffsets;

    fn key(&self) -> String {
        format!("icefjord.boundary.{}", self.input)
    }

    fn parse(&self, text: &str) -> Result<BoundaryOffsets, String> {
        let entries: Vec<(String, i32, i64)> =
            serde_json::from_str(text).map_err(|e| format!("unreadable boundary {text:?}: {e}"))?;
        Ok(entries
            .into_iter()
            .map(|(topic, partition, next)| ((topic, partition), next))
            .collect())
    }

    fn format(&self, value: &BoundaryOffsets) -> String {
        let entries: Vec<(&str, i32, i64)> = value
            .iter()
            .map(|((topic, partition), next)| (topic.as_str(), *partition, *next))
            .collect();
        serde_json::to_string(&entries).unwrap_or_default()
    }

    fn reset(&self, table: &str) -> String {
        format!(
            "rebuild {table} from all of {}: drop it and its __boundary table (with any \
             Iceberg client) and run the pipeline again",
            self.input
        )
    }
}

/// The snapshot id of an input that a runner commit read:
/// `icefjord.input.<input>` = snapshot id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSnapshotKey {
    pub input: String,
}

impl PositionKey for InputSnapshotKey {
    type Value = i64;

    fn key(&self) -> String {
        format!("icefjord.input.{}", self.input)
    }

    fn parse(&self, text: &str) -> Result<i64, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("unreadable snapshot id {text:?}"))
    }

    fn format(&self, value: &i64) -> String {
        value.to_string()
    }

    fn reset(&self, table: &str) -> String {
        format!("run the pipeline that writes {table} again")
    }
}

/// Merged half-open `[start, end)` ranges of µs since the epoch.
pub type Ranges = Vec<(i64, i64)>;

/// The intervals an `incremental_by_time` output has done: `icefjord.intervals`
/// = `[[start_us, end_us], …]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntervalsKey;

impl PositionKey for IntervalsKey {
    type Value = Ranges;

    fn key(&self) -> String {
        "icefjord.intervals".into()
    }

    fn parse(&self, text: &str) -> Result<Ranges, String> {
        let ranges: Ranges = serde_json::from_str(text)
            .map_err(|e| format!("unreadable done intervals {text:?}: {e}"))?;
        match ranges.iter().find(|(start, end)| start >= end) {
            Some((start, end)) => Err(format!("empty interval [{start}, {end}) in {text:?}")),
            None => Ok(ranges),
        }
    }

    fn format(&self, value: &Ranges) -> String {
        serde_json::to_string(value).unwrap_or_default()
    }

    fn reset(&self, table: &str) -> String {
        format!("rebuild {table}: drop it (with any Iceberg client) and run the pipeline again")
    }
}

/// How many events of a seeded generator a table holds:
/// `icefjord.generator.<kind>.seed-<seed>.next-position` = count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratorPositionKey {
    pub kind: String,
    pub seed: u64,
}

impl PositionKey for GeneratorPositionKey {
    type Value = u64;

    fn key(&self) -> String {
        format!(
            "icefjord.generator.{}.seed-{}.next-position",
            self.kind, self.seed
        )
    }

    fn parse(&self, text: &str) -> Result<u64, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("unreadable generator position {text:?}"))
    }

    fn format(&self, value: &u64) -> String {
        value.to_string()
    }

    fn reset(&self, table: &str) -> String {
        format!(
            "generate with another --seed, or drop {table} (with any Iceberg client) and \
             generate again"
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_corrupt_ones_are_errors() {
        let offsets = KafkaOffsetsKey {
            group: "g".into(),
            topic: "t".into(),
        };
        assert_eq!(offsets.key(), "icefjord.kafka.g.t");
        let value = PartitionOffsets::from([(0, 10), (2, 7)]);
        assert_eq!(offsets.format(&value), r#"{"0":10,"2":7}"#);
        assert_eq!(offsets.parse(r#"{"0":10,"2":7}"#).unwrap(), value);
        for bad in ["nope", r#"{"zero":4}"#, r#"{"0":-1}"#, "[]"] {
            assert!(offsets.parse(bad).is_err(), "{bad}");
        }

        let boundary = BoundaryKey {
            input: "raw.events".into(),
        };
        assert_eq!(boundary.key(), "icefjord.boundary.raw.events");
        let value = BoundaryOffsets::from([(("t".to_string(), 1), 5)]);
        assert_eq!(boundary.format(&value), r#"[["t",1,5]]"#);
        assert_eq!(boundary.parse(r#"[["t",1,5]]"#).unwrap(), value);
        assert!(boundary.parse(r#"{"t":1}"#).is_err());

        assert_eq!(
            IntervalsKey.parse("[[1,2],[5,9]]").unwrap(),
            vec![(1, 2), (5, 9)]
        );
        assert!(IntervalsKey.parse("[[3,3]]").is_err());
        assert!(IntervalsKey.parse("garbage").is_err());

        let generator = GeneratorPositionKey {
            kind: "retail".into(),
            seed: 42,
        };
        assert_eq!(
            generator.key(),
            "icefjord.generator.retail.seed-42.next-position"
        );
        assert!(generator.parse("-3").is_err());
        assert_eq!(
            InputSnapshotKey {
                input: "a.b".into()
            }
            .parse("17")
            .unwrap(),
            17
        );
    }
}
