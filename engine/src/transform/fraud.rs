//! `fraud_rules`: purchases → alerts. Each purchase is checked against the same
//! user's earlier purchases (in time order; the same rows in any order give the
//! same alerts). Rules:
//!
//! - `burst`: the purchase is at least the [`BURST_COUNT`]rd (3rd) by its user
//!   within [`BURST_WINDOW_MICROS`] (10 minutes, the window ending at it);
//! - `big_spender`: its amount (`price × quantity`, no quantity counts 1) is more
//!   than [`BIG_SPENDER_FACTOR`] (5) times the mean of the user's earlier purchases,
//!   once there are at least [`BIG_SPENDER_HISTORY`] (3) of them;
//! - `country_hop`: the user's previous purchase, less than [`HOP_WINDOW_MICROS`]
//!   (60 minutes) earlier, came from another country.
//!
//! One row per (purchase, rule that fired): `user_id`, `session_id`, `event_time`,
//! `rule`, `amount`, `detail`.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{Decimal128Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::columns;
use super::Transform;
use crate::error::Result;

pub const BURST_COUNT: usize = 3;
pub const BURST_WINDOW_MICROS: i64 = 10 * 60 * 1_000_000;
pub const BIG_SPENDER_FACTOR: i128 = 5;
pub const BIG_SPENDER_HISTORY: usize = 3;
pub const HOP_WINDOW_MICROS: i64 = 60 * 60 * 1_000_000;

pub struct FraudRules;

const NAME: &str = "fraud_rules";

struct Purchase {
    user: String,
    session: Option<String>,
    country: Option<String>,
    time: i64,
    cents: i128,
}

impl Transform for FraudRules {
    fn name(&self) -> &'static str {
        NAME
    }

    fn description(&self) -> &'static str {
        "purchases -> fraud alerts (burst, big_spender, country_hop)"
    }

    fn input_columns(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("user_id", "string"),
            ("session_id", "string"),
            ("country", "string"),
            ("event_time", "timestamp"),
            ("price", "decimal"),
            ("quantity", "integer"),
        ]
    }

    fn output_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("session_id", DataType::Utf8, true),
            Field::new(
                "event_time",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("rule", DataType::Utf8, false),
            Field::new("amount", DataType::Decimal128(18, 2), false),
            Field::new("detail", DataType::Utf8, false),
        ]))
    }

    fn apply(&self, input: &[RecordBatch]) -> Result<RecordBatch> {
        let Some(batch) = columns::concat(input, NAME)? else {
            return Ok(RecordBatch::new_empty(self.output_schema()));
        };
        let user = columns::strings(&batch, "user_id", NAME)?;
        let session = columns::strings(&batch, "session_id", NAME)?;
        let country = columns::strings(&batch, "country", NAME)?;
        let time = columns::micros(&batch, "event_time", NAME)?;
        let price = columns::cents(&batch, "price", NAME)?;
        let quantity = columns::longs(&batch, "quantity", NAME)?;
        let mut purchases: Vec<Purchase> = (0..batch.num_rows())
            .filter_map(|i| {
                Some(Purchase {
                    user: user[i].clone()?,
                    session: session[i].clone(),
                    country: country[i].clone(),
                    time: time[i]?,
                    cents: price[i]? * i128::from(quantity[i].unwrap_or(1)),
                })
            })
            .collect();
        purchases.sort_by(|a, b| {
            (&a.user, a.time, &a.session, a.cents).cmp(&(&b.user, b.time, &b.session, b.cents))
        });

        let mut alerts = Alerts::default();
        let mut start = 0;
        while start < purchases.len() {
            let end = purchases[start..]
                .iter()
                .position(|p| p.user != purchases[start].user)
                .map_or(purchases.len(), |n| start + n);
            check_user(&purchases[start..end], &mut alerts);
            start = end;
        }
        alerts.finish(self.output_schema())
    }
}

/// The rules over one user's purchases, in time order.
fn check_user(purchases: &[Purchase], alerts: &mut Alerts) {
    let mut window: VecDeque<i64> = VecDeque::new();
    let mut total: i128 = 0;
    for (n, p) in purchases.iter().enumerate() {
        while window
            .front()
            .is_some_and(|&t| p.time - t >= BURST_WINDOW_MICROS)
        {
            window.pop_front();
        }
        window.push_back(p.time);
        if window.len() >= BURST_COUNT {
            alerts.push(
                p,
                "burst",
                format!("{} purchases within 10 minutes", window.len()),
            );
        }
        if n >= BIG_SPENDER_HISTORY && p.cents * n as i128 > BIG_SPENDER_FACTOR * total {
            alerts.push(
                p,
                "big_spender",
                format!(
                    "{} is over {BIG_SPENDER_FACTOR}x the mean of {n} earlier purchases ({})",
                    money(p.cents),
                    money(total / n as i128)
                ),
            );
        }
        if let Some(previous) = n.checked_sub(1).map(|i| &purchases[i]) {
            if p.time - previous.time < HOP_WINDOW_MICROS
                && previous.country.is_some()
                && p.country.is_some()
                && previous.country != p.country
            {
                alerts.push(
                    p,
                    "country_hop",
                    format!(
                        "from {} to {} in {} minutes",
                        previous.country.as_deref().unwrap_or_default(),
                        p.country.as_deref().unwrap_or_default(),
                        (p.time - previous.time) / 60_000_000
                    ),
                );
            }
        }
        total += p.cents;
    }
}

fn money(cents: i128) -> String {
    format!("{}.{:02}", cents / 100, (cents % 100).abs())
}

#[derive(Default)]
struct Alerts {
    user: Vec<String>,
    session: Vec<Option<String>>,
    time: Vec<i64>,
    rule: Vec<&'static str>,
    amount: Vec<i128>,
    detail: Vec<String>,
}

impl Alerts {
    fn push(&mut self, p: &Purchase, rule: &'static str, detail: String) {
        self.user.push(p.user.clone());
        self.session.push(p.session.clone());
        self.time.push(p.time);
        self.rule.push(rule);
        self.amount.push(p.cents);
        self.detail.push(detail);
    }

    fn finish(self, schema: SchemaRef) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(self.user)),
                Arc::new(StringArray::from(self.session)),
                Arc::new(TimestampMicrosecondArray::from(self.time)),
                Arc::new(StringArray::from(self.rule)),
                Arc::new(Decimal128Array::from(self.amount).with_precision_and_scale(18, 2)?),
                Arc::new(StringArray::from(self.detail)),
            ],
        )?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use arrow::array::{AsArray, Int64Array};

    use super::*;

    /// (user, country, minute, cents)
    fn input(purchases: &[(&str, &str, i64, i128)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("session_id", DataType::Utf8, true),
            Field::new("country", DataType::Utf8, true),
            Field::new(
                "event_time",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("price", DataType::Decimal128(10, 2), false),
            Field::new("quantity", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(purchases.iter().map(|p| p.0))),
                Arc::new(StringArray::from_iter_values(purchases.iter().map(|_| "s"))),
                Arc::new(StringArray::from_iter_values(purchases.iter().map(|p| p.1))),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    purchases.iter().map(|p| p.2 * 60_000_000),
                )),
                Arc::new(
                    Decimal128Array::from_iter_values(purchases.iter().map(|p| p.3))
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
                Arc::new(Int64Array::from(vec![None; purchases.len()])),
            ],
        )
        .unwrap()
    }

    fn fired(out: &RecordBatch) -> Vec<(String, i64, String)> {
        let users = out.column(0).as_string::<i32>();
        let times = out
            .column(2)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        let rules = out.column(3).as_string::<i32>();
        (0..out.num_rows())
            .map(|i| {
                (
                    users.value(i).to_string(),
                    times.value(i) / 60_000_000,
                    rules.value(i).to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn each_rule_fires_where_it_should_and_only_there() {
        let out = FraudRules
            .apply(&[input(&[
                // u1: three purchases in 9 minutes (burst on the third), not a fourth
                // 11 minutes after the first two.
                ("u1", "IT", 0, 1000),
                ("u1", "IT", 5, 1000),
                ("u1", "IT", 9, 1000),
                ("u1", "IT", 30, 1000),
                // u1's fifth, far later: 5 × the mean 10.00 is 50.00, this is 50.01.
                ("u1", "IT", 300, 5001),
                // u2: another country 59 minutes later (hop), then 61 minutes later (none).
                ("u2", "IT", 0, 500),
                ("u2", "FR", 59, 500),
                ("u2", "DE", 120, 500),
                // u3: exactly 5 × the mean is not over it.
                ("u3", "SE", 0, 100),
                ("u3", "SE", 100, 100),
                ("u3", "SE", 200, 100),
                ("u3", "SE", 300, 500),
            ])])
            .unwrap();
        assert_eq!(
            fired(&out),
            vec![
                ("u1".into(), 9, "burst".into()),
                ("u1".into(), 300, "big_spender".into()),
                ("u2".into(), 59, "country_hop".into()),
            ]
        );
        let detail = out.column(5).as_string::<i32>().value(1);
        assert!(
            detail.contains("50.01") && detail.contains("10.00"),
            "{detail}"
        );
    }
}
