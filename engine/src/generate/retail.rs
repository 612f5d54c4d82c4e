//! Retail transactions of the seed schema (`data/schemas/retail_event.json`):
//! sales, returns and restocks of a product catalog across stores.

use std::sync::Arc;

use arrow::array::{
    Decimal128Builder, Int32Builder, RecordBatch, StringBuilder, StringDictionaryBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

use super::SplitMix64;

/// 2023-10-27 00:00:00 UTC, the seed's first day, in microseconds.
pub const EPOCH_START_MICROS: i64 = 1_698_364_800_000_000;
/// Events are spaced ~10 s apart on average, so 200 000 events span ~23 days.
pub const MEAN_GAP_MICROS: i64 = 10_000_000;
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

/// Event `position` of stream `seed`.
pub fn event(seed: u64, position: u64) -> RetailEvent {
    let mut rng = SplitMix64::at(seed, position);
    let event_time_micros = EPOCH_START_MICROS
        + position as i64 * MEAN_GAP_MICROS
        + rng.between(0, MEAN_GAP_MICROS - 1);
    let store_id = rng.between(1, STORES) as i32;
    let product = rng.below(PRODUCTS.len() as u64) as usize;
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

/// Events `start..end` as one record batch.
pub fn batch(seed: u64, start: u64, end: u64) -> Result<RecordBatch, ArrowError> {
    let n = end.saturating_sub(start) as usize;
    let mut time = TimestampMicrosecondBuilder::with_capacity(n);
    let mut store = Int32Builder::with_capacity(n);
    let mut product = StringBuilder::with_capacity(n, n * 8);
    let mut category = StringBuilder::with_capacity(n, n * 8);
    let mut kind = StringDictionaryBuilder::<Int32Type>::new();
    let mut quantity = Int32Builder::with_capacity(n);
    let mut price = Decimal128Builder::with_capacity(n);
    for position in start..end {
        let e = event(seed, position);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn events_depend_only_on_seed_and_position() {
        assert_eq!(event(7, 12_345), event(7, 12_345));
        assert_ne!(event(7, 12_345), event(8, 12_345));
        let whole = batch(7, 0, 100).unwrap();
        let tail = batch(7, 60, 100).unwrap();
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
}
