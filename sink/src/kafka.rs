//! Kafka client settings (brokers, SASL, TLS) and the consumer context that starts
//! every newly assigned partition at the offset the table holds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use icefjord_catalog::Secret;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

/// SASL mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl std::str::FromStr for SaslMechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            other => Err(format!(
                "unknown SASL mechanism {other:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
            )),
        }
    }
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// How to reach and authenticate to the brokers. Secrets stay in [`Secret`]s.
#[derive(Clone, Debug, Default)]
pub struct KafkaSettings {
    pub brokers: String,
    pub sasl: Option<(SaslMechanism, String, Secret)>,
    /// TLS: on when any of these is set, or `tls` is true.
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub key_password: Option<Secret>,
}

impl KafkaSettings {
    /// The librdkafka configuration for these settings.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        let tls = self.tls || self.ca_file.is_some() || self.cert_file.is_some();
        let protocol = match (&self.sasl, tls) {
            (Some(_), true) => "SASL_SSL",
            (Some(_), false) => "SASL_PLAINTEXT",
            (None, true) => "SSL",
            (None, false) => "PLAINTEXT",
        };
        config.set("security.protocol", protocol);
        if let Some((mechanism, user, password)) = &self.sasl {
            config.set("sasl.mechanism", mechanism.as_str());
            config.set("sasl.username", user);
            config.set("sasl.password", password.expose());
        }
        if let Some(ca) = &self.ca_file {
            config.set("ssl.ca.location", ca.display().to_string());
        }
        if let Some(cert) = &self.cert_file {
            config.set("ssl.certificate.location", cert.display().to_string());
        }
        if let Some(key) = &self.key_file {
            config.set("ssl.key.location", key.display().to_string());
        }
        if let Some(password) = &self.key_password {
            config.set("ssl.key.password", password.expose());
        }
        config
    }
}

/// Shared between the consumer's rebalance callback and the ingest loop.
#[derive(Debug, Default)]
pub struct Assignment {
    /// The offsets the table holds (as last seen by the loop), per partition.
    pub table_offsets: Mutex<BTreeMap<i32, i64>>,
    /// Set by every rebalance; the loop re-reads the table and re-checks cursors.
    pub changed: AtomicBool,
}

/// The consumer context: starts assigned partitions at the table's offsets.
pub struct SinkContext {
    pub assignment: Arc<Assignment>,
}

impl ClientContext for SinkContext {}

impl ConsumerContext for SinkContext {
    fn rebalance(
        &self,
        base_consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            if let Ok(offsets) = self.assignment.table_offsets.lock() {
                let assigned: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                for (topic, partition) in assigned {
                    let offset = match offsets.get(&partition) {
                        Some(&o) => Offset::Offset(o),
                        None => Offset::Beginning,
                    };
                    let _ = tpl.set_partition_offset(&topic, partition, offset);
                }
            }
        }
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                tracing::info!(?partitions, "partitions assigned")
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(?partitions, "partitions revoked")
            }
            other => tracing::warn!(error = ?other, "rebalance error"),
        }
        self.assignment.changed.store(true, Ordering::SeqCst);
        // The library's own assign/unassign logic, with our offsets in `tpl`.
        let default = DefaultRebalance;
        default.run(base_consumer, err, tpl);
    }
}

/// Runs rdkafka's default rebalance steps for a [`SinkContext`].
struct DefaultRebalance;

impl DefaultRebalance {
    fn run(
        &self,
        consumer: &BaseConsumer<SinkContext>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::consumer::{Consumer, RebalanceProtocol};
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS if cooperative => {
                consumer.incremental_assign(tpl)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => consumer.assign(tpl),
            _ if cooperative => consumer.incremental_unassign(tpl),
            _ => consumer.unassign(),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "rebalance step failed");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rdkafka::consumer::BaseConsumer;

    use super::*;

    #[test]
    fn scram_over_tls_sets_librdkafka_security_and_keeps_secrets_out_of_debug() {
        let settings = KafkaSettings {
            brokers: "kafka-0:9093".into(),
            sasl: Some((
                SaslMechanism::ScramSha512,
                "icefjord".into(),
                Secret::new("pw-123"),
            )),
            ca_file: Some("/etc/kafka/ca.pem".into()),
            key_password: Some(Secret::new("kp-456")),
            ..Default::default()
        };
        let config = settings.client_config();
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.username"), Some("icefjord"));
        assert_eq!(config.get("sasl.password"), Some("pw-123"));
        assert_eq!(config.get("ssl.ca.location"), Some("/etc/kafka/ca.pem"));
        assert_eq!(config.get("ssl.key.password"), Some("kp-456"));
        let debug = format!("{settings:?}");
        assert!(
            !debug.contains("pw-123") && !debug.contains("kp-456"),
            "{debug}"
        );
        // Without TLS, SASL is over plaintext; without either, plaintext.
        let plain = KafkaSettings {
            ca_file: None,
            ..settings
        };
        assert_eq!(
            plain.client_config().get("security.protocol"),
            Some("SASL_PLAINTEXT")
        );
        let none = KafkaSettings::default().client_config();
        assert_eq!(none.get("security.protocol"), Some("PLAINTEXT"));
    }

    #[test]
    fn mechanisms_parse_case_insensitively_and_unknown_ones_are_named() {
        assert_eq!(
            "scram-sha-256".parse::<SaslMechanism>(),
            Ok(SaslMechanism::ScramSha256)
        );
        let err = "GSSAPI".parse::<SaslMechanism>().unwrap_err();
        assert!(
            err.contains("GSSAPI") && err.contains("SCRAM-SHA-512"),
            "{err}"
        );
    }

    /// TLS that cannot load its CA fails when the client is made, instead of
    /// connecting without verification. (librdkafka names the setting, not the
    /// file; the CLI checks the files first and names them.)
    #[test]
    fn an_unreadable_ca_file_stops_the_client_from_starting() {
        let settings = KafkaSettings {
            brokers: "127.0.0.1:1".into(),
            ca_file: Some("/nonexistent/icefjord-ca.pem".into()),
            ..Default::default()
        };
        let err = settings
            .client_config()
            .create::<BaseConsumer>()
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("ssl.ca.location"), "{err}");
    }
}
