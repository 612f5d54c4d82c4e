//! Time intervals of `incremental_by_time` models.
//!
//! # Invariants
//!
//! - A model's time axis is cut into intervals of its `grain` (hour, day or month,
//!   UTC), from its `start`. An interval is *done* once a published snapshot of the
//!   output covers it; the done intervals are recorded in that snapshot's summary
//!   (`icefjord.intervals`, merged `[start, end)` ranges in µs), not in a side
//!   database, so they change exactly when the data does.
//! - A run processes the intervals that are not done, up to the last complete one
//!   before now; `--interval a/b` re-runs a range whether done or not. The query
//!   sees each contiguous range through the bound parameters `$interval_start` and
//!   `$interval_end` (never formatted into the SQL). Its rows replace the output's
//!   partitions of those ranges (the output is partitioned by the grain),
//!   including partitions it no longer produces rows for ([`partitions_in`]).

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike};
use iceberg::spec::{Literal, PrimitiveLiteral, Struct, Transform};
use iceberg::table::Table;
use serde::Serialize;

/// How finely the time axis is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grain {
    Hour,
    Day,
    Month,
}

impl Grain {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "hour" => Self::Hour,
            "day" => Self::Day,
            "month" => Self::Month,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// The interval start at or before `micros`.
    pub fn floor(self, micros: i64) -> i64 {
        let Some(t) = DateTime::from_timestamp_micros(micros).map(|t| t.naive_utc()) else {
            return micros;
        };
        let floored = match self {
            Self::Hour => t.date().and_hms_opt(t.hour(), 0, 0),
            Self::Day => t.date().and_hms_opt(0, 0, 0),
            Self::Month => t.date().with_day(1).and_then(|d| d.and_hms_opt(0, 0, 0)),
        };
        floored.map_or(micros, |t| t.and_utc().timestamp_micros())
    }

    /// The start of the interval after the one starting at `start`.
    pub fn next(self, start: i64) -> i64 {
        match self {
            Self::Hour => start + 3_600_000_000,
            Self::Day => start + 86_400_000_000,
            Self::Month => {
                let Some(t) = DateTime::from_timestamp_micros(start) else {
                    return start + 31 * 86_400_000_000;
                };
                let d = t.date_naive();
                let (y, m) = if d.month() == 12 {
                    (d.year() + 1, 1)
                } else {
                    (d.year(), d.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map_or(start + 31 * 86_400_000_000, |t| {
                        t.and_utc().timestamp_micros()
                    })
            }
        }
    }
}

/// Merged, sorted `[start, end)` ranges in µs (the value of the output's
/// `IntervalsKey` position).
pub use icefjord_catalog::protocol::Ranges;

/// `ranges` sorted and merged (touching ranges join).
pub fn merged(mut ranges: Ranges) -> Ranges {
    ranges.retain(|(s, e)| s < e);
    ranges.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The intervals of `grain` in `[from, to)` that `done` does not cover, as merged
/// ranges.
pub fn missing(grain: Grain, from: i64, to: i64, done: &Ranges) -> Ranges {
    let mut out = Vec::new();
    let mut start = grain.floor(from);
    while start < to {
        let end = grain.next(start);
        if !done.iter().any(|(s, e)| *s <= start && end <= *e) {
            out.push((start, end));
        }
        start = end;
    }
    merged(out)
}

/// `YYYY-MM-DD` or `YYYY-MM-DD[T ]HH:MM:SS` as µs (UTC).
pub fn parse_instant(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

/// `a/b` (see [`parse_instant`]) as a `[a, b)` range.
pub fn parse_range(text: &str) -> Option<(i64, i64)> {
    let (a, b) = text.split_once('/')?;
    let (a, b) = (parse_instant(a)?, parse_instant(b)?);
    (a < b).then_some((a, b))
}

/// The partitions of `table` (its default spec) whose `grain(column)` value lies
/// in `ranges`: what re-running those ranges replaces, including partitions the
/// re-run no longer writes rows to.
pub async fn partitions_in(
    table: &Table,
    axis: &crate::spec::TimeAxis,
    ranges: &Ranges,
) -> Result<Vec<Struct>, icefjord_catalog::CatalogError> {
    let metadata = table.metadata();
    let spec = metadata.default_partition_spec();
    let transform = match axis.grain {
        Grain::Hour => Transform::Hour,
        Grain::Day => Transform::Day,
        Grain::Month => Transform::Month,
    };
    let source = metadata
        .current_schema()
        .field_by_name(&axis.column)
        .map(|f| f.id);
    let Some(field) = spec
        .fields()
        .iter()
        .position(|f| Some(f.source_id) == source && f.transform == transform)
    else {
        return Ok(Vec::new());
    };
    let live =
        icefjord_catalog::commit::live_entries(table, metadata.current_snapshot_id()).await?;
    let mut partitions: Vec<Struct> = Vec::new();
    for entry in live {
        let partition = entry.data_file().partition();
        if partition.fields().len() != spec.fields().len() || partitions.contains(partition) {
            continue;
        }
        let Some(Some(Literal::Primitive(PrimitiveLiteral::Int(value)))) =
            partition.fields().get(field)
        else {
            continue;
        };
        let start = unit_start(axis.grain, i64::from(*value));
        if ranges
            .iter()
            .any(|(from, to)| *from <= start && start < *to)
        {
            partitions.push(partition.clone());
        }
    }
    Ok(partitions)
}

/// The first µs of a partition value of an Iceberg `hour`/`day`/`month` transform
/// (units since 1970-01-01 UTC).
fn unit_start(grain: Grain, value: i64) -> i64 {
    match grain {
        Grain::Hour => value * 3_600_000_000,
        Grain::Day => value * 86_400_000_000,
        Grain::Month => {
            let year = i32::try_from(1970 + value.div_euclid(12)).unwrap_or(i32::MAX);
            let month = u32::try_from(value.rem_euclid(12) + 1).unwrap_or(1);
            NaiveDate::from_ymd_opt(year, month, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map_or(i64::MAX, |t| t.and_utc().timestamp_micros())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        parse_instant(text).unwrap()
    }

    #[test]
    fn missing_intervals_skip_what_is_done_and_merge() {
        let done = vec![(at("2023-10-27"), at("2023-10-29"))];
        let gaps = missing(Grain::Day, at("2023-10-26"), at("2023-11-01"), &done);
        assert_eq!(
            gaps,
            vec![
                (at("2023-10-26"), at("2023-10-27")),
                (at("2023-10-29"), at("2023-11-01"))
            ]
        );
        assert_eq!(
            missing(Grain::Month, at("2023-12-15"), at("2024-02-01"), &vec![]),
            vec![(at("2023-12-01"), at("2024-02-01"))]
        );
        assert_eq!(
            Grain::Hour.floor(at("2023-10-27 10:59:59")),
            at("2023-10-27 10:00:00")
        );
        assert_eq!(
            merged(vec![(5, 7), (1, 3), (3, 4), (6, 9)]),
            vec![(1, 4), (5, 9)]
        );
        assert_eq!(
            parse_range("2023-10-27/2023-10-28"),
            Some((at("2023-10-27"), at("2023-10-28")))
        );
        assert_eq!(parse_range("2023-10-28/2023-10-27"), None);
        assert_eq!(parse_range("yesterday/today"), None);
    }
}
