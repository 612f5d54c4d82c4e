//! The third name part that reads another face of a table: `raw.t.snapshots`,
//! `raw.t.snapshot_id_123`, `raw.t.tag_v1`, … The grammar is Iceberg Spark's own
//! (Iceberg docs, "Spark Queries": "Time travel" identifiers and "Inspecting
//! tables"; `SparkCatalog`'s `snapshot_id_`, `at_timestamp_`, `branch_`, `tag_`
//! prefixes), defined here once: the session resolves these names
//! ([`crate::session`]) and the SQL front door writes them when it rewrites
//! `VERSION AS OF` / `TIMESTAMP AS OF` (crate `icefjord-sql`).
//!
//! | suffix | reads |
//! |---|---|
//! | `snapshot_id_<id>` | the table at snapshot `<id>` |
//! | `at_timestamp_<ms>` | the snapshot of `main` current at `<ms>` milliseconds since the epoch |
//! | `branch_<name>` | the head of branch `<name>` |
//! | `tag_<name>` | the snapshot tag `<name>` points at |
//! | `snapshots`, `history`, `refs`, `files`, `manifests`, `partitions` | a metadata table ([`crate::metadata_tables`]) |
//!
//! A name part is lower-cased unless quoted (DataFusion's identifier rule): a
//! branch or tag with capitals is `raw.t."branch_Dev"`.

use std::fmt;

use crate::session::AsOf;

/// Iceberg's metadata tables that the session serves (Spark's and PyIceberg's
/// `table.inspect.*` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataTable {
    Snapshots,
    History,
    Refs,
    Files,
    Manifests,
    Partitions,
}

impl MetadataTable {
    pub const ALL: [Self; 6] = [
        Self::Snapshots,
        Self::History,
        Self::Refs,
        Self::Files,
        Self::Manifests,
        Self::Partitions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Snapshots => "snapshots",
            Self::History => "history",
            Self::Refs => "refs",
            Self::Files => "files",
            Self::Manifests => "manifests",
            Self::Partitions => "partitions",
        }
    }
}

/// A third name part after `namespace.table`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableSuffix {
    /// `snapshot_id_<id>`
    Snapshot(i64),
    /// `at_timestamp_<ms>`
    Timestamp(i64),
    /// `branch_<name>`
    Branch(String),
    /// `tag_<name>`
    Tag(String),
    /// `snapshots`, `history`, …
    Metadata(MetadataTable),
}

const SNAPSHOT_ID: &str = "snapshot_id_";
const AT_TIMESTAMP: &str = "at_timestamp_";
const BRANCH: &str = "branch_";
const TAG: &str = "tag_";

/// What a suffix may be, for errors that reject one.
pub const SUFFIXES: &str = "snapshots, history, refs, files, manifests, partitions, \
                            snapshot_id_<id>, at_timestamp_<epoch ms>, branch_<name> or tag_<name>";

impl TableSuffix {
    /// The suffix `part` names, if any.
    pub fn parse(part: &str) -> Option<Self> {
        if let Some(table) = MetadataTable::ALL.into_iter().find(|t| t.name() == part) {
            return Some(Self::Metadata(table));
        }
        if let Some(id) = part.strip_prefix(SNAPSHOT_ID) {
            return id.parse().ok().map(Self::Snapshot);
        }
        if let Some(ms) = part.strip_prefix(AT_TIMESTAMP) {
            return ms.parse().ok().map(Self::Timestamp);
        }
        if let Some(name) = part.strip_prefix(BRANCH).filter(|n| !n.is_empty()) {
            return Some(Self::Branch(name.to_string()));
        }
        if let Some(name) = part.strip_prefix(TAG).filter(|n| !n.is_empty()) {
            return Some(Self::Tag(name.to_string()));
        }
        None
    }

    /// The version of the table this suffix reads (`None`: a metadata table).
    pub fn as_of(&self) -> Option<AsOf> {
        match self {
            Self::Snapshot(id) => Some(AsOf::Snapshot(*id)),
            Self::Timestamp(ms) => Some(AsOf::Timestamp(*ms)),
            Self::Branch(name) => Some(AsOf::Branch(name.clone())),
            Self::Tag(name) => Some(AsOf::Tag(name.clone())),
            Self::Metadata(_) => None,
        }
    }
}

impl fmt::Display for TableSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Snapshot(id) => write!(f, "{SNAPSHOT_ID}{id}"),
            Self::Timestamp(ms) => write!(f, "{AT_TIMESTAMP}{ms}"),
            Self::Branch(name) => write!(f, "{BRANCH}{name}"),
            Self::Tag(name) => write!(f, "{TAG}{name}"),
            Self::Metadata(table) => f.write_str(table.name()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_parse_back_to_what_they_print() {
        for suffix in [
            TableSuffix::Snapshot(5_937_117_119_577_207_000),
            TableSuffix::Snapshot(-3),
            TableSuffix::Timestamp(1_700_000_000_000),
            TableSuffix::Branch("audit_2024".into()),
            TableSuffix::Tag("Q4".into()),
            TableSuffix::Metadata(MetadataTable::Partitions),
        ] {
            assert_eq!(TableSuffix::parse(&suffix.to_string()), Some(suffix));
        }
    }

    #[test]
    fn spark_spellings_parse() {
        assert_eq!(
            TableSuffix::parse("snapshot_id_10963874102873"),
            Some(TableSuffix::Snapshot(10_963_874_102_873))
        );
        assert_eq!(
            TableSuffix::parse("at_timestamp_1548707878000"),
            Some(TableSuffix::Timestamp(1_548_707_878_000))
        );
        assert_eq!(
            TableSuffix::parse("branch_dev"),
            Some(TableSuffix::Branch("dev".into()))
        );
        assert_eq!(
            TableSuffix::parse("history"),
            Some(TableSuffix::Metadata(MetadataTable::History))
        );
        for other in [
            "snapshot_id_x",
            "at_timestamp_",
            "branch_",
            "tag_",
            "entries",
            "",
        ] {
            assert_eq!(TableSuffix::parse(other), None, "{other}");
        }
    }
}
