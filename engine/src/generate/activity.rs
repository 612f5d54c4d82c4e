//! User activity of a real-time platform (seed 002): `{"user_id", "action", "timestamp"}`.

use super::{format_micros, SplitMix64};

pub const ACTIONS: &[&str] = &[
    "login",
    "view",
    "search",
    "click",
    "add_to_cart",
    "purchase",
    "logout",
];
pub const USERS: u64 = 2_000;
/// 2024-06-01 00:00:00 UTC in microseconds.
pub const START_MICROS: i64 = 1_717_200_000_000_000;

/// Event `position` of stream `seed` as JSON, with its user id (the Kafka key).
pub fn event(seed: u64, position: u64) -> (String, String) {
    let mut rng = SplitMix64::at(seed ^ 0xAC71_0000, position);
    let user_id = format!("user_{:04}", rng.below(USERS));
    // Purchases are rarer than views.
    let action = match rng.below(100) {
        0..=9 => "login",
        10..=49 => "view",
        50..=64 => "search",
        65..=84 => "click",
        85..=91 => "add_to_cart",
        92..=95 => "purchase",
        _ => "logout",
    };
    // ~2 events a second.
    let t = START_MICROS + position as i64 * 500_000 + rng.between(0, 499_999);
    let json = format!(
        r#"{{"user_id":"{user_id}","action":"{action}","timestamp":"{}"}}"#,
        format_micros(t)
    );
    (user_id, json)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn events_are_valid_json_of_the_seed_shape() {
        let (user, json) = super::event(1, 10);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["user_id"], user);
        assert!(super::ACTIONS.contains(&v["action"].as_str().unwrap()));
    }
}
