//! Retail transactions of the seed schema (`data/schemas/retail_event.json`):
//! sales, returns and restocks of a product catalog across stores.

use std::sync::Arc;

use arrow::array::{
    Decimal128Builder, Int32Builder, RecordBatch, StringBuilder, StringDictionaryBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

use super::shape::Shape;
use super::SplitMix64;

pub const STORES: i64 = 20;

/// (product_id, category, list price in cents)
pub const PRODUCTS: &[(&str, &str, i64)] = &[
    ("Laptop", "Electronics", 45_000),
    ("Smartphone", "Electronics", 69_900),
    ("Headphones", "Electronics", 7_999),
    ("Tablet", "Electronics", 32_900),
    ("Monitor", "Electronics", 18_950),
    ("Jeans", "Clothing", 4_999),
    ("T-Shirt", "Clothing", 1_499),
    ("Jacket", "Clothing", 8_900),
    ("Sneakers", "Clothing", 6_450),
    ("Coffee Maker", "Home", 5_999),
    ("Blender", "Home", 3_975),
    ("Desk Lamp", "Home", 2_250),
    ("Cookware Set", "Home", 12_000),
    ("Coffee Beans", "Grocery", 1_295),
    ("Olive Oil", "Grocery", 899),
    ("Pasta", "Grocery", 249),
    ("Tennis Racket", "Sports", 11_500),
    ("Yoga Mat", "Sports", 2_999),
    ("Football", "Sports", 2_499),
    ("Board Game", "Toys", 3_499),
    ("Puzzle", "Toys", 1_799),
    ("Novel", "Books", 1_599),
    ("Cookbook", "Books", 2_899),
    ("Shampoo", "Beauty", 699),
    ("Perfume", "Beauty", 7_500),
];

/// The Arrow schema of generated batches (matches the Iceberg table's columns).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("store_id", DataType::Int32, false),
        Field::new("product_id", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("transaction_type", DataType::Utf8, false),
        Field::new("quantity", DataType::Int32, false),
        Field::new("unit_price", DataType::Decimal128(10, 2), false),
    ]))
}

/// One generated event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetailEvent {
    pub event_time_micros: i64,
    pub store_id: i32,
    pub product: usize,
    pub transaction_type: &'static str,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

/// Event `position` of stream `seed`, in the default [`Shape`].
pub fn event(seed: u64, position: u64) -> RetailEvent {
    Retail::new(seed, &Shape::default()).event(position)
}

/// A retail event stream of one seed and [`Shape`], with its key distributions
/// computed once.
#[derive(Clone, Debug)]
pub struct Retail {
    seed: u64,
    shape: Shape,
    stores: Keys,
    products: Keys,
}

/// Draw of a 0-based key index from one `u64` of the generator.
#[derive(Clone, Debug)]
enum Keys {
    /// `0..n` uniformly (the original generator's draw).
    Uniform(u64),
    /// Zipf-like: index `k` with weight `(k+1)^-s`; the upper bounds of each
    /// index's share of the `u64` range, ascending.
    Skewed(Vec<u64>),
}

impl Keys {
    fn new(n: usize, skew: f64) -> Self {
        if skew == 0.0 {
            return Self::Uniform(n as u64);
        }
        let weights: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-skew)).collect();
        let total: f64 = weights.iter().sum();
        let mut cumulative = 0.0;
        let bounds = weights
            .iter()
            .map(|w| {
                cumulative += w / total;
                // f64 → u64 saturates: the last bound is u64::MAX.
                (cumulative * u64::MAX as f64) as u64
            })
            .collect();
        Self::Skewed(bounds)
    }

    fn draw(&self, rng: &mut SplitMix64) -> usize {
        match self {
            Self::Uniform(n) => rng.below(*n) as usize,
            Self::Skewed(bounds) => {
                let x = rng.next_u64();
                bounds
                    .partition_point(|&b| b < x)
                    .min(bounds.len().saturating_sub(1))
            }
        }
    }
}

/// Salt of the late events' own stream, so lateness draws nothing from the
/// event's stream (the default shape's events stay the original ones).
const LATE_STREAM: u64 = 0x1A7E_0000_0000_0000;

impl Retail {
    pub fn new(seed: u64, shape: &Shape) -> Self {
        Self {
            seed,
            shape: shape.clone(),
            stores: Keys::new(STORES as usize, shape.skew),
            products: Keys::new(PRODUCTS.len(), shape.skew),
        }
    }

    /// Event `position`: on time in its slot ([`Shape::slot`]) unless it is late.
    pub fn event(&self, position: u64) -> RetailEvent {
        let mut rng = SplitMix64::at(self.seed, position);
        let (lo, hi) = self.shape.slot(position);
        let mut event_time_micros = lo + rng.below((hi - lo).max(1) as u64) as i64;
        let history = lo - self.shape.start_micros();
        if self.shape.late > 0.0 && history > 0 {
            let mut late = SplitMix64::at(self.seed ^ LATE_STREAM, position);
            if late.chance(self.shape.late) {
                event_time_micros = self.shape.start_micros() + late.below(history as u64) as i64;
            }
        }
        let store_id = 1 + self.stores.draw(&mut rng) as i32;
        let product = self.products.draw(&mut rng);
        let roll = rng.below(100);
        let (transaction_type, quantity) = match roll {
            0..=79 => ("SALE", rng.between(1, 5)),
            80..=89 => ("RETURN", rng.between(1, 2)),
            _ => ("RESTOCK", rng.between(10, 100)),
        };
        // Prices vary ±10 % around list price, to the cent.
        let list = PRODUCTS[product].2;
        let unit_price_cents = list + (list * rng.between(-10, 10)) / 100;
        RetailEvent {
            event_time_micros,
            store_id,
            product,
            transaction_type,
            quantity: quantity as i32,
            unit_price_cents,
        }
    }
}

impl RetailEvent {
    /// The event as the JSON the seed's producers send, e.g.
    /// `{"event_time": "2023-10-27 10:00:00", "store_id": 1, …, "unit_price": 450.00}`.
    pub fn to_json(&self) -> String {
        let (product_id, category, _) = PRODUCTS[self.product];
        format!(
            r#"{{"event_time":"{}","store_id":{},"product_id":"{}","category":"{}","transaction_type":"{}","quantity":{},"unit_price":{}.{:02}}}"#,
            super::format_micros(self.event_time_micros),
            self.store_id,
            product_id,
            category,
            self.transaction_type,
            self.quantity,
            self.unit_price_cents / 100,
            self.unit_price_cents % 100
        )
    }
}

impl Retail {
    /// Events `start..end` as one record batch of [`schema`].
    pub fn batch(&self, start: u64, end: u64) -> Result<RecordBatch, ArrowError> {
        let n = end.saturating_sub(start) as usize;
        let mut time = TimestampMicrosecondBuilder::with_capacity(n);
        let mut store = Int32Builder::with_capacity(n);
        let mut product = StringBuilder::with_capacity(n, n * 8);
        let mut category = StringBuilder::with_capacity(n, n * 8);
        let mut kind = StringDictionaryBuilder::<Int32Type>::new();
        let mut quantity = Int32Builder::with_capacity(n);
        let mut price = Decimal128Builder::with_capacity(n);
        for position in start..end {
            let e = self.event(position);
            time.append_value(e.event_time_micros);
            store.append_value(e.store_id);
            product.append_value(PRODUCTS[e.product].0);
            category.append_value(PRODUCTS[e.product].1);
            kind.append_value(e.transaction_type);
            quantity.append_value(e.quantity);
            price.append_value(i128::from(e.unit_price_cents));
        }
        let kind = arrow::compute::cast(&kind.finish(), &DataType::Utf8)?;
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(time.finish()),
                Arc::new(store.finish()),
                Arc::new(product.finish()),
                Arc::new(category.finish()),
                kind,
                Arc::new(quantity.finish()),
                Arc::new(price.finish().with_precision_and_scale(10, 2)?),
            ],
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn events_depend_only_on_seed_and_position() {
        assert_eq!(event(7, 12_345), event(7, 12_345));
        assert_ne!(event(7, 12_345), event(8, 12_345));
        let retail = Retail::new(7, &Shape::default());
        let whole = retail.batch(0, 100).unwrap();
        let tail = retail.batch(60, 100).unwrap();
        assert_eq!(whole.slice(60, 40), tail);
    }

    #[test]
    fn json_matches_the_seed_shape() {
        let json = event(3, 0).to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(value["event_time"]
            .as_str()
            .unwrap()
            .starts_with("2023-10-27 "));
        assert!(
            value["unit_price"].is_f64() && value["quantity"].is_i64(),
            "{json}"
        );
    }

    #[test]
    fn transaction_mix_is_realistic() {
        let n = 20_000;
        let sales = (0..n)
            .filter(|&i| event(1, i).transaction_type == "SALE")
            .count();
        assert!((15_000..17_000).contains(&sales), "{sales}");
    }

    /// The generator as it was before shapes (f9f65f7), written out again: the
    /// default shape must keep drawing exactly these events.
    fn original(seed: u64, position: u64) -> RetailEvent {
        let mut rng = SplitMix64::at(seed, position);
        let t = 1_698_364_800_000_000 + position as i64 * 10_000_000 + rng.between(0, 9_999_999);
        let store_id = rng.between(1, 20) as i32;
        let product = rng.below(25) as usize;
        let (transaction_type, quantity) = match rng.below(100) {
            0..=79 => ("SALE", rng.between(1, 5)),
            80..=89 => ("RETURN", rng.between(1, 2)),
            _ => ("RESTOCK", rng.between(10, 100)),
        };
        let list = PRODUCTS[product].2;
        RetailEvent {
            event_time_micros: t,
            store_id,
            product,
            transaction_type,
            quantity: quantity as i32,
            unit_price_cents: list + (list * rng.between(-10, 10)) / 100,
        }
    }

    #[test]
    fn the_default_shape_draws_the_original_events() {
        for position in (0..20_000).chain([1 << 33, 7_777_777_777]) {
            assert_eq!(event(11, position), original(11, position), "{position}");
        }
    }

    #[test]
    fn skewed_keys_follow_their_zipf_weights() {
        let shape = Shape {
            skew: 1.0,
            ..Shape::default()
        };
        let retail = Retail::new(3, &shape);
        let n = 200_000;
        let mut products = [0u32; 25];
        let mut stores = [0u32; 20];
        for i in 0..n {
            let e = retail.event(i);
            products[e.product] += 1;
            stores[e.store_id as usize - 1] += 1;
        }
        // Weight 1/k: the first key's share is 1 / H(n), H the harmonic number.
        let harmonic = |n: u32| (1..=n).map(|k| 1.0 / f64::from(k)).sum::<f64>();
        let share = |count: u32| f64::from(count) / n as f64;
        assert!(
            (share(products[0]) - 1.0 / harmonic(25)).abs() < 0.005,
            "{products:?}"
        );
        assert!(
            (share(stores[0]) - 1.0 / harmonic(20)).abs() < 0.005,
            "{stores:?}"
        );
        // The second is half as frequent as the first, the tenth a tenth.
        let ratio = f64::from(products[1]) / f64::from(products[0]);
        assert!((ratio - 0.5).abs() < 0.02, "{ratio}");
        let ratio = f64::from(products[9]) / f64::from(products[0]);
        assert!((ratio - 0.1).abs() < 0.01, "{ratio}");
    }

    #[test]
    fn late_events_land_uniformly_in_the_history_before_them() {
        let shape = Shape {
            late: 0.25,
            ..Shape::default()
        };
        let retail = Retail::new(5, &shape);
        let start = shape.start_micros();
        let (mut late, mut first_half) = (0, 0);
        let n = 40_000u64;
        for i in 0..n {
            let e = retail.event(i);
            let (lo, hi) = shape.slot(i);
            assert!(
                e.event_time_micros >= start && e.event_time_micros < hi,
                "{i}"
            );
            if e.event_time_micros < lo {
                late += 1;
                first_half += u32::from(e.event_time_micros - start < (lo - start) / 2);
            }
        }
        let fraction = f64::from(late) / n as f64;
        assert!((fraction - 0.25).abs() < 0.01, "{fraction}");
        let half = f64::from(first_half) / f64::from(late);
        assert!((half - 0.5).abs() < 0.02, "{half}");
        // Lateness moves times only: the other columns are the on-time ones.
        let on_time = Retail::new(5, &Shape::default());
        let (a, b) = (retail.event(30_000), on_time.event(30_000));
        assert_eq!(
            (a.store_id, a.product, a.quantity),
            (b.store_id, b.product, b.quantity)
        );
    }
}
