//! The shape of a generated retail history: how dense, from when, how skewed its
//! keys and how late its events. A table stores the shape with the generator's
//! position ([`GeneratorShapeKey`]), so a top-up continues exactly the history it
//! holds, or refuses.
//!
//! # Invariants
//!
//! 1. **Deterministic.** Event `i` depends only on (seed, `i`, shape).
//! 2. **The default is the original generator.** [`Shape::default`] (8 640 events
//!    a day from 2023-10-27, uniform keys, nothing late) draws exactly the events
//!    the generator drew before shapes existed, and a table generated then (a
//!    position without a stored shape) holds the default shape.
//! 3. **One shape per table and seed.** A top-up whose shape differs from the
//!    stored one is [`ShapeError::Mismatch`], naming the first differing flag.

pub use chrono::NaiveDate;
use iceberg::spec::{TableMetadata, MAIN_BRANCH};
use icefjord_catalog::protocol::{find_position, PositionKey};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// One day in microseconds.
pub const DAY_MICROS: i64 = 86_400_000_000;
/// The original density: one event per 10 s on average.
pub const DEFAULT_EVENTS_PER_DAY: u64 = 8_640;
/// Latest allowed end of a history (exclusive), 3000-01-01 UTC in microseconds.
const LATEST_END_MICROS: i64 = 32_503_680_000_000_000;

/// How a generated history looks. Build with [`Shape::new`] (validates) or
/// [`Shape::default`].
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// Events per day (> 0): event `i` is on time in the slot
    /// `[start + i·day/N, start + (i+1)·day/N)` (µs, integer division), so every
    /// day holds exactly N on-time events.
    pub events_per_day: u64,
    /// The first day of the history (00:00 UTC).
    pub start: NaiveDate,
    /// Zipf exponent over products and stores: key of rank `k` (1-based) drawn
    /// with weight `k^-skew`. 0 = uniform. Finite, ≥ 0.
    pub skew: f64,
    /// Fraction of events (0 ≤ late ≤ 1) whose time is drawn uniformly from the
    /// history before their slot, `[start, slot start)`. The first event is
    /// never late (it has no history).
    pub late: f64,
}

/// A flag that is out of range, or a top-up that does not match the table.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    #[error("{flag} {value}: {message}")]
    Invalid {
        flag: &'static str,
        value: String,
        message: String,
    },
    #[error(
        "{table} holds seed {seed}'s events generated with {flag} {stored}, not {asked}: \
         top it up with the table's shape, generate with another --seed, or drop {table} \
         (with any Iceberg client) and generate again"
    )]
    Mismatch {
        table: String,
        seed: u64,
        flag: &'static str,
        stored: String,
        asked: String,
    },
}

impl ShapeError {
    /// The command-line flag at fault.
    pub fn flag(&self) -> &'static str {
        match self {
            Self::Invalid { flag, .. } | Self::Mismatch { flag, .. } => flag,
        }
    }
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            events_per_day: DEFAULT_EVENTS_PER_DAY,
            start: NaiveDate::from_ymd_opt(2023, 10, 27).unwrap_or_default(),
            skew: 0.0,
            late: 0.0,
        }
    }
}

impl Shape {
    /// A validated shape. Errors: [`ShapeError::Invalid`] naming the flag when
    /// `events_per_day` is 0, `skew` is negative or not finite, or `late` is
    /// outside `[0, 1]`.
    pub fn new(
        events_per_day: u64,
        start: NaiveDate,
        skew: f64,
        late: f64,
    ) -> Result<Self, ShapeError> {
        let invalid = |flag, value: String, message: &str| ShapeError::Invalid {
            flag,
            value,
            message: message.into(),
        };
        if events_per_day == 0 {
            return Err(invalid(
                "--events-per-day",
                "0".into(),
                "must be at least 1",
            ));
        }
        if !(skew.is_finite() && skew >= 0.0) {
            return Err(invalid(
                "--skew",
                skew.to_string(),
                "must be a finite exponent ≥ 0 (0 = uniform keys)",
            ));
        }
        if !(0.0..=1.0).contains(&late) {
            return Err(invalid(
                "--late",
                late.to_string(),
                "must be a fraction between 0 and 1",
            ));
        }
        Ok(Self {
            events_per_day,
            start,
            skew,
            late,
        })
    }

    /// The history's first instant, µs since the Unix epoch.
    pub fn start_micros(&self) -> i64 {
        self.start
            .and_hms_opt(0, 0, 0)
            .map_or(0, |t| t.and_utc().timestamp_micros())
    }

    /// The on-time slot `[lo, hi)` (µs) of event `position`.
    pub fn slot(&self, position: u64) -> (i64, i64) {
        let at = |p: u64| {
            let offset = i128::from(p) * i128::from(DAY_MICROS) / i128::from(self.events_per_day);
            self.start_micros() + i64::try_from(offset).unwrap_or(i64::MAX / 2)
        };
        (at(position), at(position + 1))
    }

    /// Checks that `events` events of this shape end before the year 3000.
    /// Errors: [`ShapeError::Invalid`] naming `--events-per-day`.
    pub fn check_range(&self, events: u64) -> Result<(), ShapeError> {
        let days = i128::from(events) / i128::from(self.events_per_day) + 1;
        let end = i128::from(self.start_micros()) + days * i128::from(DAY_MICROS);
        if end > i128::from(LATEST_END_MICROS) {
            return Err(ShapeError::Invalid {
                flag: "--events-per-day",
                value: self.events_per_day.to_string(),
                message: format!("{events} events would run past the year 3000"),
            });
        }
        Ok(())
    }

    /// The first flag whose value differs from `other`'s, with both values as
    /// the user would type them.
    fn difference(&self, other: &Self) -> Option<(&'static str, String, String)> {
        let (a, b) = (self.flags(), other.flags());
        a.into_iter()
            .zip(b)
            .find(|((_, x), (_, y))| x != y)
            .map(|((flag, x), (_, y))| (flag, x, y))
    }

    /// (flag, value) pairs.
    fn flags(&self) -> [(&'static str, String); 4] {
        [
            ("--events-per-day", self.events_per_day.to_string()),
            ("--start", self.start.to_string()),
            ("--skew", self.skew.to_string()),
            ("--late", self.late.to_string()),
        ]
    }
}

/// The stored form of a [`Shape`] (JSON; the start day as `YYYY-MM-DD`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredShape {
    events_per_day: u64,
    start: String,
    skew: f64,
    late: f64,
}

/// The shape of a seeded generator's events in a table:
/// `icefjord.generator.<kind>.seed-<seed>.shape` =
/// `{"events_per_day":8640,"start":"2023-10-27","skew":0.0,"late":0.0}`. Stored
/// as a position, so maintenance carries it forward with the position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratorShapeKey {
    pub kind: String,
    pub seed: u64,
}

impl PositionKey for GeneratorShapeKey {
    type Value = Shape;

    fn key(&self) -> String {
        format!("icefjord.generator.{}.seed-{}.shape", self.kind, self.seed)
    }

    fn parse(&self, text: &str) -> Result<Shape, String> {
        let stored: StoredShape = serde_json::from_str(text)
            .map_err(|e| format!("unreadable generator shape {text:?}: {e}"))?;
        let start = NaiveDate::parse_from_str(&stored.start, "%Y-%m-%d")
            .map_err(|e| format!("generator shape {text:?}: start: {e}"))?;
        Shape::new(stored.events_per_day, start, stored.skew, stored.late)
            .map_err(|e| format!("generator shape {text:?}: {e}"))
    }

    fn format(&self, value: &Shape) -> String {
        serde_json::to_string(&StoredShape {
            events_per_day: value.events_per_day,
            start: value.start.to_string(),
            skew: value.skew,
            late: value.late,
        })
        .unwrap_or_default()
    }

    fn reset(&self, table: &str) -> String {
        format!(
            "generate with another --seed, or drop {table} (with any Iceberg client) and \
             generate again"
        )
    }
}

/// Checks that a top-up of `table` (whose metadata is `metadata`, holding
/// `held` events of the generator `key`) asks for the shape the table holds.
/// A table holding events but no stored shape was generated before shapes
/// existed and holds [`Shape::default`]. Errors: [`ShapeError::Mismatch`] (in
/// [`crate::EngineError::Shape`]) naming the first differing flag; a corrupt or
/// lost stored shape as the catalog error of [`find_position`].
pub fn check_top_up(
    metadata: &TableMetadata,
    table: &str,
    key: &GeneratorShapeKey,
    held: u64,
    asked: &Shape,
) -> Result<()> {
    if held == 0 {
        return Ok(());
    }
    let stored = find_position(metadata, table, MAIN_BRANCH, key)?
        .map_or_else(Shape::default, |found| found.value);
    match stored.difference(asked) {
        None => Ok(()),
        Some((flag, stored, asked)) => Err(ShapeError::Mismatch {
            table: table.into(),
            seed: key.seed,
            flag,
            stored,
            asked,
        }
        .into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_default_slot_is_the_original_ten_second_gap() {
        let shape = Shape::default();
        assert_eq!(shape.start_micros(), 1_698_364_800_000_000);
        assert_eq!(
            shape.slot(3),
            (1_698_364_830_000_000, 1_698_364_840_000_000)
        );
    }

    #[test]
    fn uneven_densities_still_fill_each_day_exactly() {
        let shape = Shape::new(7, NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(), 0.0, 0.0).unwrap();
        let day_one = shape.start_micros() + DAY_MICROS;
        assert_eq!(shape.slot(6).1, day_one);
        assert_eq!(shape.slot(7).0, day_one);
    }

    #[test]
    fn bad_flags_are_named() {
        let day = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        assert_eq!(
            Shape::new(0, day, 0.0, 0.0).unwrap_err().flag(),
            "--events-per-day"
        );
        assert_eq!(Shape::new(1, day, -1.0, 0.0).unwrap_err().flag(), "--skew");
        assert_eq!(
            Shape::new(1, day, f64::NAN, 0.0).unwrap_err().flag(),
            "--skew"
        );
        assert_eq!(Shape::new(1, day, 0.0, 1.5).unwrap_err().flag(), "--late");
        let err = Shape::new(1, day, 0.0, 0.0)
            .unwrap()
            .check_range(10_000_000);
        assert_eq!(err.unwrap_err().flag(), "--events-per-day");
    }

    #[test]
    fn stored_shapes_round_trip_and_corrupt_ones_are_errors() {
        let key = GeneratorShapeKey {
            kind: "retail".into(),
            seed: 7,
        };
        assert_eq!(key.key(), "icefjord.generator.retail.seed-7.shape");
        let shape = Shape::new(
            2_000_000,
            NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            1.1,
            0.01,
        )
        .unwrap();
        let text = key.format(&shape);
        assert_eq!(
            text,
            r#"{"events_per_day":2000000,"start":"2024-01-01","skew":1.1,"late":0.01}"#
        );
        assert_eq!(key.parse(&text).unwrap(), shape);
        for bad in [
            "nope",
            r#"{"events_per_day":0,"start":"2024-01-01","skew":0.0,"late":0.0}"#,
            r#"{"events_per_day":5,"start":"Jan 1","skew":0.0,"late":0.0}"#,
            r#"{"events_per_day":5,"start":"2024-01-01","skew":0.0,"late":0.0,"x":1}"#,
        ] {
            assert!(key.parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_first_differing_flag_is_named() {
        let a = Shape::default();
        let b = Shape {
            skew: 1.0,
            late: 0.5,
            ..Shape::default()
        };
        assert_eq!(
            a.difference(&b),
            Some(("--skew", "0".to_string(), "1".to_string()))
        );
        assert_eq!(a.difference(&a.clone()), None);
    }
}
