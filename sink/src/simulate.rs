//! `icefjord simulate`: a producer of realistic events at a target rate,
//! deterministic for a seed, optionally mixing in malformed records.

use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use icefjord_engine::generate::{activity, clickstream, retail, SplitMix64};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::error::{Result, SinkError};
use crate::kafka::KafkaSettings;

/// Which events to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Retail transactions (seed 004), keyed by store.
    Retail,
    /// E-commerce sessions (seed 003), keyed by session.
    Clickstream,
    /// User activity (seed 002), keyed by user.
    Activity,
}

impl std::str::FromStr for EventKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "retail" => Ok(Self::Retail),
            "clickstream" => Ok(Self::Clickstream),
            "activity" => Ok(Self::Activity),
            other => Err(format!(
                "unknown event kind {other:?} (retail, clickstream, activity)"
            )),
        }
    }
}

/// What a simulation produced.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SimulateReport {
    pub produced: u64,
    pub malformed: u64,
    pub seconds: f64,
}

/// A configured simulation; runs when [`Simulate::run`] is awaited.
pub struct Simulate {
    kafka: KafkaSettings,
    topic: String,
    kind: EventKind,
    events: u64,
    rate: Option<f64>,
    seed: u64,
    bad_ratio: f64,
    producer_properties: Vec<(String, String)>,
}

impl Simulate {
    pub fn new(
        kafka: KafkaSettings,
        topic: impl Into<String>,
        kind: EventKind,
        events: u64,
    ) -> Self {
        Self {
            kafka,
            topic: topic.into(),
            kind,
            events,
            rate: None,
            seed: 42,
            bad_ratio: 0.0,
            producer_properties: Vec::new(),
        }
    }

    /// Events per second (`None`: as fast as the broker takes them).
    pub fn with_rate(mut self, rate: Option<f64>) -> Self {
        self.rate = rate.filter(|r| *r > 0.0);
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Share of records replaced by malformed ones (not JSON, missing field, wrong type).
    pub fn with_bad_ratio(mut self, ratio: f64) -> Self {
        self.bad_ratio = ratio.clamp(0.0, 1.0);
        self
    }

    /// Extra librdkafka producer settings (e.g. `batch.num.messages=1`).
    pub fn with_producer_property(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.producer_properties.push((key.into(), value.into()));
        self
    }

    pub async fn run(self) -> Result<SimulateReport> {
        let mut config = self.kafka.client_config();
        config
            .set("linger.ms", "5")
            .set("acks", "all")
            .set("enable.idempotence", "false");
        for (key, value) in &self.producer_properties {
            config.set(key, value);
        }
        let producer: FutureProducer = config.create()?;
        let started = Instant::now();
        let mut sessions = clickstream::Sessions::new(self.seed);
        let mut in_flight = FuturesUnordered::new();
        let mut report = SimulateReport::default();
        for position in 0..self.events {
            let (key, mut value) = match self.kind {
                EventKind::Retail => {
                    let e = retail::event(self.seed, position);
                    (e.store_id.to_string(), e.to_json())
                }
                EventKind::Clickstream => match sessions.next() {
                    Some(e) => (e.session_id, e.json),
                    None => break,
                },
                EventKind::Activity => activity::event(self.seed, position),
            };
            let mut rng = SplitMix64::at(self.seed ^ 0xBAD, position);
            if self.bad_ratio > 0.0 && rng.chance(self.bad_ratio) {
                value = malformed(&value, rng.below(3));
                report.malformed += 1;
            }
            if let Some(rate) = self.rate {
                let due = started + Duration::from_secs_f64(position as f64 / rate);
                let now = Instant::now();
                if due > now {
                    tokio::time::sleep(due - now).await;
                }
            }
            let producer = producer.clone();
            let topic = self.topic.clone();
            in_flight.push(async move {
                producer
                    .send(
                        FutureRecord::to(&topic).key(&key).payload(&value),
                        Duration::from_secs(30),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e)
            });
            if in_flight.len() >= 10_000 {
                if let Some(result) = in_flight.next().await {
                    result?;
                }
            }
            report.produced += 1;
        }
        while let Some(result) = in_flight.next().await {
            result.map_err(SinkError::Kafka)?;
        }
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }
}

/// A malformed variant of a good JSON record.
fn malformed(good: &str, variant: u64) -> String {
    match variant {
        0 => good[..good.len() / 2].to_string(),
        1 => r#"{"unexpected": true}"#.to_string(),
        _ => good.replacen(':', r#":"not-a-value","_was":"#, 1),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn malformed_variants_are_really_malformed() {
        let good = icefjord_engine::generate::retail::event(1, 1).to_json();
        assert!(serde_json::from_str::<serde_json::Value>(&super::malformed(&good, 0)).is_err());
        let missing: serde_json::Value = serde_json::from_str(&super::malformed(&good, 1)).unwrap();
        assert!(missing.get("event_time").is_none());
        let wrong: serde_json::Value = serde_json::from_str(&super::malformed(&good, 2)).unwrap();
        assert_eq!(wrong["event_time"], "not-a-value");
    }
}
