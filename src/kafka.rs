//! Kafka connection flags, resolved once over `[kafka]` of `icefjord.toml`:
//! flags beat environment (clap's `env`), which beats the file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use icefjord_catalog::Secret;
use icefjord_sink::{KafkaSettings, SaslMechanism};

use crate::config::KafkaFile;
use crate::exit::Usage;

#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// Bootstrap brokers, host:port[,host:port…] (or [kafka].brokers).
    #[arg(long, env = "ICEFJORD_KAFKA_BROKERS", value_name = "HOSTS")]
    brokers: Option<String>,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (password from
    /// ICEFJORD_KAFKA_PASSWORD).
    #[arg(long, env = "ICEFJORD_KAFKA_SASL_MECHANISM", value_name = "MECHANISM")]
    sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name.
    #[arg(long, env = "ICEFJORD_KAFKA_USERNAME", value_name = "USER")]
    sasl_username: Option<String>,
    /// Use TLS (implied by --tls-ca / --tls-cert).
    #[arg(long)]
    tls: bool,
    /// CA certificate file (PEM) to verify the brokers.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Client key (PEM); its password from ICEFJORD_KAFKA_KEY_PASSWORD.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
}

impl KafkaArgs {
    /// The connection settings: flags and environment over `file`.
    pub fn settings(&self, file: &KafkaFile) -> Result<KafkaSettings> {
        let secret = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new)
        };
        let brokers = self
            .brokers
            .clone()
            .or_else(|| file.brokers.clone())
            .ok_or_else(|| {
                Usage::new(
                    "--brokers",
                    "no Kafka brokers: give --brokers, ICEFJORD_KAFKA_BROKERS or [kafka].brokers",
                )
            })?;
        let mechanism = match (self.sasl_mechanism, &file.sasl_mechanism) {
            (Some(m), _) => Some(m),
            (None, Some(text)) => Some(
                text.parse::<SaslMechanism>()
                    .map_err(|e| Usage::new("[kafka].sasl_mechanism", e))?,
            ),
            (None, None) => None,
        };
        let username = self
            .sasl_username
            .clone()
            .or_else(|| file.sasl_username.clone());
        let sasl = match (mechanism, username) {
            (Some(mechanism), Some(user)) => {
                let password = secret("ICEFJORD_KAFKA_PASSWORD").ok_or_else(|| {
                    Usage::new(
                        "ICEFJORD_KAFKA_PASSWORD",
                        "SASL needs a password in this environment variable",
                    )
                })?;
                Some((mechanism, user, password))
            }
            (None, None) => None,
            _ => {
                return Err(
                    Usage::new("--sasl-mechanism/--sasl-username", "give both or neither").into(),
                )
            }
        };
        let ca_file = self.tls_ca.clone().or_else(|| file.tls_ca.clone());
        let cert_file = self.tls_cert.clone().or_else(|| file.tls_cert.clone());
        let key_file = self.tls_key.clone().or_else(|| file.tls_key.clone());
        // librdkafka's own error names the setting but not the file.
        for (flag, path) in [
            ("--tls-ca", &ca_file),
            ("--tls-cert", &cert_file),
            ("--tls-key", &key_file),
        ] {
            if let Some(path) = path {
                std::fs::File::open(path).map_err(|e| {
                    Usage::new(flag, format!("cannot read {}: {e}", path.display()))
                })?;
            }
        }
        Ok(KafkaSettings {
            brokers,
            sasl,
            tls: self.tls || file.tls.unwrap_or(false),
            ca_file,
            cert_file,
            key_file,
            key_password: secret("ICEFJORD_KAFKA_KEY_PASSWORD"),
        })
    }
}

/// `KEY=VALUE` pairs of a repeatable flag.
pub fn key_values<'a>(flag: &str, items: &'a [String]) -> Result<Vec<(&'a str, &'a str)>> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .ok_or_else(|| Usage::new(flag, format!("{item:?} is not KEY=VALUE")).into())
        })
        .collect()
}
