//! E-commerce clickstream sessions (seed 003): `session_started`, `category_viewed`,
//! `product_viewed`, `product_added_to_cart`, `product_removed_from_cart`,
//! `purchase`, `session_ended`, with user, country, category, product and price.
//! Sessions are generated one after another; session `n` of a seed is always the same.

use super::{format_micros, SplitMix64};

pub const COUNTRIES: &[&str] = &["IT", "DE", "FR", "ES", "NL", "SE", "PL", "US", "GB", "JP"];
/// (category, products: (product_id, price in cents))
pub const CATALOG: &[(&str, &[(&str, i64)])] = &[
    (
        "Shoes",
        &[
            ("p-sneaker-01", 8_990),
            ("p-boot-02", 12_900),
            ("p-sandal-03", 3_450),
        ],
    ),
    ("Dresses", &[("p-dress-04", 5_990), ("p-gown-05", 19_900)]),
    ("Bags", &[("p-tote-06", 4_500), ("p-backpack-07", 7_990)]),
    (
        "Electronics",
        &[
            ("p-phone-08", 69_900),
            ("p-earbuds-09", 12_990),
            ("p-watch-10", 24_900),
        ],
    ),
    ("Home", &[("p-lamp-11", 3_990), ("p-rug-12", 14_900)]),
];
pub const USERS: u64 = 5_000;
/// 2024-03-01 00:00:00 UTC in microseconds.
pub const START_MICROS: i64 = 1_709_251_200_000_000;

/// One clickstream event as JSON, with its session id (the Kafka key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClickEvent {
    pub session_id: String,
    pub json: String,
}

/// An endless, deterministic stream of sessions' events.
pub struct Sessions {
    seed: u64,
    next_session: u64,
    pending: std::vec::IntoIter<ClickEvent>,
}

impl Sessions {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            next_session: 0,
            pending: Vec::new().into_iter(),
        }
    }

    fn session(&self, n: u64) -> Vec<ClickEvent> {
        let mut rng = SplitMix64::at(self.seed ^ 0xC11C_C11C, n);
        let session_id = format!("s-{n:09}");
        let user_id = format!("u-{:05}", rng.below(USERS));
        let country = COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize];
        // Sessions start ~3 s apart; events within a session 2–90 s apart.
        let mut t = START_MICROS + n as i64 * 3_000_000 + rng.between(0, 2_999_999);
        let mut events = Vec::new();
        let mut emit = |t: i64, kind: &str, extra: String| {
            events.push(ClickEvent {
                session_id: session_id.clone(),
                json: format!(
                    r#"{{"event_type":"{kind}","event_time":"{}","session_id":"{session_id}","user_id":"{user_id}","country":"{country}"{extra}}}"#,
                    format_micros(t)
                ),
            });
        };
        emit(t, "session_started", String::new());
        let mut cart: Vec<(&str, &str, i64)> = Vec::new();
        let views = rng.between(1, 6);
        for _ in 0..views {
            let (category, products) = CATALOG[rng.below(CATALOG.len() as u64) as usize];
            t += rng.between(2_000_000, 90_000_000);
            emit(t, "category_viewed", format!(r#","category":"{category}""#));
            let (product, price) = products[rng.below(products.len() as u64) as usize];
            t += rng.between(2_000_000, 90_000_000);
            emit(
                t,
                "product_viewed",
                product_fields(category, product, price),
            );
            if rng.chance(0.3) {
                t += rng.between(2_000_000, 60_000_000);
                emit(
                    t,
                    "product_added_to_cart",
                    product_fields(category, product, price),
                );
                cart.push((category, product, price));
            }
        }
        if !cart.is_empty() && rng.chance(0.15) {
            let (category, product, price) = cart.remove(0);
            t += rng.between(2_000_000, 60_000_000);
            emit(
                t,
                "product_removed_from_cart",
                product_fields(category, product, price),
            );
        }
        if !cart.is_empty() && rng.chance(0.45) {
            for (category, product, price) in &cart {
                t += rng.between(1_000_000, 20_000_000);
                emit(
                    t,
                    "purchase",
                    format!(
                        r#"{},"quantity":1"#,
                        product_fields(category, product, *price)
                    ),
                );
            }
        }
        t += rng.between(5_000_000, 120_000_000);
        emit(t, "session_ended", String::new());
        events
    }
}

/// The JSON fields of an event about a product.
fn product_fields(category: &str, product: &str, cents: i64) -> String {
    format!(
        r#","category":"{category}","product_id":"{product}","price":{}"#,
        price_text(cents)
    )
}

fn price_text(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

impl Iterator for Sessions {
    type Item = ClickEvent;

    fn next(&mut self) -> Option<ClickEvent> {
        loop {
            if let Some(event) = self.pending.next() {
                return Some(event);
            }
            let session = self.session(self.next_session);
            self.next_session += 1;
            self.pending = session.into_iter();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_and_close_and_repeat_per_seed() {
        let a: Vec<_> = Sessions::new(5).take(500).collect();
        let b: Vec<_> = Sessions::new(5).take(500).collect();
        assert_eq!(a, b);
        let first: serde_json::Value = serde_json::from_str(&a[0].json).unwrap();
        assert_eq!(first["event_type"], "session_started");
        let kinds: std::collections::HashSet<String> = a
            .iter()
            .map(|e| {
                serde_json::from_str::<serde_json::Value>(&e.json).unwrap()["event_type"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        for kind in [
            "category_viewed",
            "product_viewed",
            "product_added_to_cart",
            "purchase",
            "session_ended",
        ] {
            assert!(kinds.contains(kind), "{kind} missing in {kinds:?}");
        }
    }
}
