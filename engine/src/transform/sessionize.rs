//! `sessionize`: clickstream events → one row per session.
//!
//! Events are grouped by `session_id` and ordered by time. A session whose events
//! are more than [`SESSION_GAP_MICROS`] (30 minutes) apart is split: the part after
//! the gap is a session of its own, `<session_id>~2` (then `~3`, …), as web
//! analytics count a visit that went idle as two. Per session:
//! `user_id` and `country` of its first event, `started_at`/`ended_at` (first and
//! last event), `duration_s` (whole seconds between them), `events`,
//! `products_viewed` (distinct products of `product_viewed` events), `cart_adds`
//! (`product_added_to_cart` events), `purchases` (`purchase` events) and `revenue`
//! (sum of `price × quantity` over purchases; a missing quantity counts 1).

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    Decimal128Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::columns;
use super::Transform;
use crate::error::Result;

/// Inactivity that ends a session: 30 minutes.
pub const SESSION_GAP_MICROS: i64 = 30 * 60 * 1_000_000;

pub struct Sessionize;

const NAME: &str = "sessionize";

impl Transform for Sessionize {
    fn name(&self) -> &'static str {
        NAME
    }

    fn description(&self) -> &'static str {
        "clickstream events -> sessions (split after 30 minutes idle)"
    }

    fn input_columns(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("session_id", "string"),
            ("user_id", "string"),
            ("country", "string"),
            ("event_time", "timestamp"),
            ("event_type", "string"),
            ("product_id", "string"),
            ("price", "decimal"),
            ("quantity", "integer"),
        ]
    }

    fn output_schema(&self) -> SchemaRef {
        let ts = || DataType::Timestamp(TimeUnit::Microsecond, None);
        Arc::new(Schema::new(vec![
            Field::new("session_id", DataType::Utf8, false),
            Field::new("user_id", DataType::Utf8, true),
            Field::new("country", DataType::Utf8, true),
            Field::new("started_at", ts(), false),
            Field::new("ended_at", ts(), false),
            Field::new("duration_s", DataType::Int64, false),
            Field::new("events", DataType::Int64, false),
            Field::new("products_viewed", DataType::Int64, false),
            Field::new("cart_adds", DataType::Int64, false),
            Field::new("purchases", DataType::Int64, false),
            Field::new("revenue", DataType::Decimal128(18, 2), false),
        ]))
    }

    fn apply(&self, input: &[RecordBatch]) -> Result<RecordBatch> {
        let Some(batch) = columns::concat(input, NAME)? else {
            return Ok(RecordBatch::new_empty(self.output_schema()));
        };
        let session = columns::strings(&batch, "session_id", NAME)?;
        let user = columns::strings(&batch, "user_id", NAME)?;
        let country = columns::strings(&batch, "country", NAME)?;
        let time = columns::micros(&batch, "event_time", NAME)?;
        let kind = columns::strings(&batch, "event_type", NAME)?;
        let product = columns::strings(&batch, "product_id", NAME)?;
        let price = columns::cents(&batch, "price", NAME)?;
        let quantity = columns::longs(&batch, "quantity", NAME)?;

        // Rows with a session and a time, in (session, time, type, product) order:
        // the same rows in any order give the same sessions.
        let mut rows: Vec<usize> = (0..batch.num_rows())
            .filter(|&i| session[i].is_some() && time[i].is_some())
            .collect();
        rows.sort_by(|&a, &b| {
            (&session[a], time[a], &kind[a], &product[a]).cmp(&(
                &session[b],
                time[b],
                &kind[b],
                &product[b],
            ))
        });

        let mut out = Sessions::default();
        let mut current: Option<Open> = None;
        for i in rows {
            let (id, t) = (
                session[i].as_deref().unwrap_or_default(),
                time[i].unwrap_or_default(),
            );
            let continues = current
                .as_ref()
                .is_some_and(|s| s.base == id && t - s.ended <= SESSION_GAP_MICROS);
            if !continues {
                let part = match &current {
                    Some(s) if s.base == id => s.part + 1,
                    _ => 1,
                };
                if let Some(done) = current.take() {
                    out.push(done);
                }
                current = Some(Open {
                    base: id.to_string(),
                    part,
                    user: user[i].clone(),
                    country: country[i].clone(),
                    started: t,
                    ended: t,
                    events: 0,
                    viewed: BTreeSet::new(),
                    cart_adds: 0,
                    purchases: 0,
                    revenue: 0,
                });
            }
            let Some(s) = current.as_mut() else { continue };
            s.ended = t;
            s.events += 1;
            match kind[i].as_deref() {
                Some("product_viewed") => {
                    if let Some(p) = &product[i] {
                        s.viewed.insert(p.clone());
                    }
                }
                Some("product_added_to_cart") => s.cart_adds += 1,
                Some("purchase") => {
                    s.purchases += 1;
                    s.revenue += price[i].unwrap_or(0) * i128::from(quantity[i].unwrap_or(1));
                }
                _ => {}
            }
        }
        if let Some(done) = current {
            out.push(done);
        }
        out.finish(self.output_schema())
    }
}

struct Open {
    base: String,
    part: u32,
    user: Option<String>,
    country: Option<String>,
    started: i64,
    ended: i64,
    events: i64,
    viewed: BTreeSet<String>,
    cart_adds: i64,
    purchases: i64,
    revenue: i128,
}

#[derive(Default)]
struct Sessions {
    id: Vec<String>,
    user: Vec<Option<String>>,
    country: Vec<Option<String>>,
    started: Vec<i64>,
    ended: Vec<i64>,
    duration: Vec<i64>,
    events: Vec<i64>,
    viewed: Vec<i64>,
    cart_adds: Vec<i64>,
    purchases: Vec<i64>,
    revenue: Vec<i128>,
}

impl Sessions {
    fn push(&mut self, s: Open) {
        self.id.push(match s.part {
            1 => s.base,
            n => format!("{}~{n}", s.base),
        });
        self.user.push(s.user);
        self.country.push(s.country);
        self.started.push(s.started);
        self.ended.push(s.ended);
        self.duration.push((s.ended - s.started) / 1_000_000);
        self.events.push(s.events);
        self.viewed.push(s.viewed.len() as i64);
        self.cart_adds.push(s.cart_adds);
        self.purchases.push(s.purchases);
        self.revenue.push(s.revenue);
    }

    fn finish(self, schema: SchemaRef) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(self.id)),
                Arc::new(StringArray::from(self.user)),
                Arc::new(StringArray::from(self.country)),
                Arc::new(TimestampMicrosecondArray::from(self.started)),
                Arc::new(TimestampMicrosecondArray::from(self.ended)),
                Arc::new(Int64Array::from(self.duration)),
                Arc::new(Int64Array::from(self.events)),
                Arc::new(Int64Array::from(self.viewed)),
                Arc::new(Int64Array::from(self.cart_adds)),
                Arc::new(Int64Array::from(self.purchases)),
                Arc::new(Decimal128Array::from(self.revenue).with_precision_and_scale(18, 2)?),
            ],
        )?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use arrow::array::{Array, AsArray, Int32Array};
    use arrow::datatypes::{Decimal128Type, Int64Type};

    use super::*;

    /// (session, user, minute, type, product, price in cents, quantity)
    type Event = (
        &'static str,
        &'static str,
        i64,
        &'static str,
        Option<&'static str>,
        Option<i128>,
        Option<i32>,
    );

    fn input(events: &[Event]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("session_id", DataType::Utf8, false),
            Field::new("user_id", DataType::Utf8, false),
            Field::new("country", DataType::Utf8, false),
            Field::new(
                "event_time",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("event_type", DataType::Utf8, false),
            Field::new("product_id", DataType::Utf8, true),
            Field::new("price", DataType::Decimal128(10, 2), true),
            Field::new("quantity", DataType::Int32, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.0))),
                Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.1))),
                Arc::new(StringArray::from_iter_values(events.iter().map(|_| "IT"))),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    events.iter().map(|e| e.2 * 60_000_000),
                )),
                Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.3))),
                Arc::new(StringArray::from_iter(events.iter().map(|e| e.4))),
                Arc::new(
                    Decimal128Array::from_iter(events.iter().map(|e| e.5))
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
                Arc::new(Int32Array::from_iter(events.iter().map(|e| e.6))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn sessions_count_their_events_and_split_after_thirty_idle_minutes() {
        let events: Vec<Event> = vec![
            ("s1", "u1", 0, "session_started", None, None, None),
            ("s1", "u1", 1, "product_viewed", Some("a"), Some(1000), None),
            ("s1", "u1", 2, "product_viewed", Some("a"), Some(1000), None),
            ("s1", "u1", 3, "product_viewed", Some("b"), Some(250), None),
            (
                "s1",
                "u1",
                4,
                "product_added_to_cart",
                Some("b"),
                Some(250),
                None,
            ),
            ("s1", "u1", 5, "purchase", Some("b"), Some(250), Some(3)),
            ("s1", "u1", 6, "purchase", Some("a"), Some(1000), None),
            // 31 idle minutes: a new session.
            ("s1", "u1", 37, "product_viewed", Some("c"), Some(99), None),
            ("s2", "u2", 10, "session_started", None, None, None),
            ("s2", "u2", 40, "session_ended", None, None, None),
        ];
        // Shuffled input gives the same output.
        let mut shuffled = events.clone();
        shuffled.reverse();
        for order in [events, shuffled] {
            let batch = input(&order);
            let half = batch.num_rows() / 2;
            let out = Sessionize
                .apply(&[
                    batch.slice(0, half),
                    batch.slice(half, batch.num_rows() - half),
                ])
                .unwrap();
            let ids: Vec<&str> = (0..out.num_rows())
                .map(|i| out.column(0).as_string::<i32>().value(i))
                .collect();
            assert_eq!(ids, ["s1", "s1~2", "s2"]);
            let long = |c: usize| out.column(c).as_primitive::<Int64Type>().values().to_vec();
            assert_eq!(long(5), [360, 0, 1800], "duration_s");
            assert_eq!(long(6), [7, 1, 2], "events");
            assert_eq!(long(7), [2, 1, 0], "distinct products viewed");
            assert_eq!(long(8), [1, 0, 0], "cart adds");
            assert_eq!(long(9), [2, 0, 0], "purchases");
            let revenue = out.column(10).as_primitive::<Decimal128Type>();
            // 3 × 2.50 + 1 × 10.00 (no quantity counts one)
            assert_eq!(revenue.value(0), 1750);
            assert!(revenue.is_valid(2));
        }
    }

    #[test]
    fn no_input_is_no_sessions() {
        assert_eq!(Sessionize.apply(&[]).unwrap().num_rows(), 0);
    }
}
