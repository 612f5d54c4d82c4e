//! What `icefjord serve` is told at start-up, parsed once at the edge and
//! checked before any port is bound (DESIGN §6):
//!
//! - a PostgreSQL listener on a non-loopback address needs at least one user
//!   with a password ([`ServeConfig::validate`]);
//! - a TLS certificate/key pair that does not load stops start-up
//!   ([`TlsFiles::load`]), it never falls back to plain text;
//! - passwords and bearer tokens are [`Secret`]s: their `Debug` and `Display`
//!   print `***`, so they cannot reach logs or error messages.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Result, ServeError};

pub use icefjord_catalog::Secret;

/// A PostgreSQL-wire user.
#[derive(Clone, Debug)]
pub struct PgUser {
    pub name: String,
    pub password: Secret,
}

/// How PostgreSQL clients prove their password. SCRAM-SHA-256 is PostgreSQL's
/// default since 14; MD5 only when a client cannot do SCRAM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PasswordMethod {
    #[default]
    ScramSha256,
    Md5,
}

impl std::str::FromStr for PasswordMethod {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "scram-sha-256" | "scram" => Ok(Self::ScramSha256),
            "md5" => Ok(Self::Md5),
            other => Err(format!("{other}: expected scram-sha-256 or md5")),
        }
    }
}

/// A PEM certificate chain and PKCS#8/RSA/EC private key for TLS.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The rustls server config, or an error naming the file that does not load.
    pub fn load(&self) -> Result<Arc<tokio_rustls::rustls::ServerConfig>> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |path: &Path, message: String| ServeError::Tls {
            path: path.to_path_buf(),
            message,
        };
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| bad(&self.cert, e.to_string()))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(&self.cert, e.to_string()))?;
        if certs.is_empty() {
            return Err(bad(&self.cert, "no certificate in the file".into()));
        }
        let key =
            PrivateKeyDer::from_pem_file(&self.key).map_err(|e| bad(&self.key, e.to_string()))?;
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let config = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| bad(&self.key, e.to_string()))?;
        Ok(Arc::new(config))
    }
}

/// Limits every query runs under.
#[derive(Clone, Debug)]
pub struct QueryLimits {
    /// Memory one query may hold (bytes) before it fails with
    /// "Resources exhausted"; the other queries go on.
    pub memory_per_query: usize,
    /// Wall-clock limit of one query, streaming of its rows included.
    pub timeout: Duration,
    /// Open PostgreSQL connections (and concurrent HTTP queries) at most.
    pub max_connections: usize,
    /// Bytes of results kept for reuse ([`crate::result_cache`]); 0 turns
    /// reuse off.
    pub result_cache: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            memory_per_query: 1 << 30,
            timeout: Duration::from_secs(300),
            max_connections: 64,
            result_cache: 64 << 20,
        }
    }
}

/// Everything `icefjord serve` needs besides the lake.
#[derive(Clone, Debug, Default)]
pub struct ServeConfig {
    /// PostgreSQL wire listener (None: off).
    pub pg_addr: Option<SocketAddr>,
    /// HTTP API listener (None: off).
    pub http_addr: Option<SocketAddr>,
    /// PostgreSQL users; empty means no password is asked (loopback only).
    pub users: Vec<PgUser>,
    pub password_method: PasswordMethod,
    pub tls: Option<TlsFiles>,
    pub limits: QueryLimits,
    /// Bearer tokens the HTTP API accepts; empty means no token is asked
    /// (loopback only, like the PostgreSQL listener).
    pub http_tokens: Vec<Secret>,
    /// How long running queries may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Pipeline folders whose `[[endpoints]]` the HTTP API serves.
    pub pipelines: Vec<PathBuf>,
    /// Iceberg REST catalog listener (None: off).
    pub rest_addr: Option<SocketAddr>,
    /// OAuth2 clients of the REST catalog; empty means no token is asked
    /// (loopback only).
    pub rest_clients: Vec<RestClient>,
    /// The key REST tokens are signed with (the same on every replica); a
    /// random one per process when `None`.
    pub rest_token_key: Option<Secret>,
}

/// An OAuth2 client of the REST catalog (client-credentials grant) and the
/// scopes it may be given.
#[derive(Clone, Debug)]
pub struct RestClient {
    pub id: String,
    pub secret: Secret,
    /// May it commit, create, drop (scope `write`) or only read (`read`)?
    pub write: bool,
}

/// Parse `client_id:client_secret[:read|:write]` lines (`#` comments); a
/// client without a scope may write. Errors name the line.
pub fn parse_rest_clients(path: &Path, text: &str) -> Result<Vec<RestClient>> {
    let mut clients = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |message: &str| ServeError::Config {
            setting: format!("{}:{}", path.display(), n + 1),
            message: message.to_string(),
        };
        let mut parts = line.splitn(3, ':');
        let id = parts.next().unwrap_or_default();
        let secret = parts
            .next()
            .ok_or_else(|| bad("expected client_id:client_secret[:read|:write]"))?;
        let write = match parts.next() {
            None | Some("write") => true,
            Some("read") => false,
            Some(_) => return Err(bad("the scope after the secret must be read or write")),
        };
        if id.is_empty() || secret.is_empty() {
            return Err(bad("a client with an empty id or secret"));
        }
        clients.push(RestClient {
            id: id.to_string(),
            secret: Secret::new(secret.to_string()),
            write,
        });
    }
    Ok(clients)
}

impl ServeConfig {
    /// Refuse what DESIGN §6 forbids, before anything listens.
    pub fn validate(&self) -> Result<()> {
        if self.pg_addr.is_none() && self.http_addr.is_none() && self.rest_addr.is_none() {
            return Err(ServeError::Config {
                setting: "--pg-addr / --http-addr / --rest-addr".into(),
                message: "nothing to serve: every listener is off".into(),
            });
        }
        if let Some(addr) = self.rest_addr {
            if !addr.ip().is_loopback() && self.rest_clients.is_empty() {
                return Err(ServeError::Config {
                    setting: "ICEFJORD_REST_CLIENTS_FILE".into(),
                    message: format!(
                        "--rest-addr {addr} is not a loopback address: configure OAuth2 clients \
                         (ICEFJORD_REST_CLIENTS_FILE or ICEFJORD_REST_CLIENT_ID / \
                         ICEFJORD_REST_CLIENT_SECRET)"
                    ),
                });
            }
        }
        if let Some(addr) = self.pg_addr {
            if !addr.ip().is_loopback() && self.users.is_empty() {
                return Err(ServeError::Config {
                    setting: "ICEFJORD_PG_PASSWORD".into(),
                    message: format!(
                        "--pg-addr {addr} is not a loopback address: set a password \
                         (ICEFJORD_PG_USER / ICEFJORD_PG_PASSWORD or ICEFJORD_PG_USERS_FILE)"
                    ),
                });
            }
        }
        if let Some(addr) = self.http_addr {
            if !addr.ip().is_loopback() && self.http_tokens.is_empty() {
                return Err(ServeError::Config {
                    setting: "ICEFJORD_HTTP_TOKEN".into(),
                    message: format!(
                        "--http-addr {addr} is not a loopback address: set a bearer token \
                         (ICEFJORD_HTTP_TOKEN or ICEFJORD_HTTP_TOKENS_FILE)"
                    ),
                });
            }
        }
        for user in &self.users {
            if user.name.is_empty() || user.password.expose().is_empty() {
                return Err(ServeError::Config {
                    setting: "ICEFJORD_PG_USERS_FILE".into(),
                    message: "a user with an empty name or password".into(),
                });
            }
        }
        if self.limits.max_connections == 0 {
            return Err(ServeError::Config {
                setting: "--max-connections".into(),
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// `user:password` lines (a Kubernetes Secret mounted as a file); `#` comments
/// and blank lines are skipped. The error names the line, never its password.
pub fn parse_users(path: &Path, text: &str) -> Result<Vec<PgUser>> {
    let mut users = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, password)) = line.split_once(':') else {
            return Err(ServeError::Config {
                setting: format!("{}:{}", path.display(), index + 1),
                message: "expected user:password".into(),
            });
        };
        users.push(PgUser {
            name: name.trim().to_string(),
            password: Secret::new(password),
        });
    }
    Ok(users)
}

/// One token per line (`#` comments and blank lines skipped).
pub fn parse_tokens(text: &str) -> Vec<Secret> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(Secret::new)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().expect("test address"))
    }

    #[test]
    fn secrets_never_print() {
        let user = PgUser {
            name: "bi".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{user:?}").contains("hunter2"));
        assert_eq!(Secret::new("hunter2").to_string(), "***");
        assert!(Secret::new("hunter2").matches("hunter2"));
        assert!(!Secret::new("hunter2").matches("hunter3"));
        assert!(!Secret::new("hunter2").matches("hunter"));
    }

    #[test]
    fn non_loopback_without_password_is_refused() {
        let config = ServeConfig {
            pg_addr: addr("0.0.0.0:5433"),
            ..Default::default()
        };
        let err = config.validate().expect_err("must refuse");
        assert!(err.to_string().contains("ICEFJORD_PG_PASSWORD"), "{err}");
        let with_user = ServeConfig {
            users: vec![PgUser {
                name: "bi".into(),
                password: Secret::new("pw"),
            }],
            ..config
        };
        with_user.validate().expect("a password makes it allowed");
        let loopback = ServeConfig {
            pg_addr: addr("127.0.0.1:5433"),
            ..Default::default()
        };
        loopback.validate().expect("loopback needs no password");
    }

    #[test]
    fn non_loopback_http_without_token_is_refused() {
        let config = ServeConfig {
            http_addr: addr("0.0.0.0:8080"),
            ..Default::default()
        };
        let err = config.validate().expect_err("must refuse");
        assert!(err.to_string().contains("ICEFJORD_HTTP_TOKEN"), "{err}");
    }

    #[test]
    fn users_file_names_the_bad_line_not_the_password() {
        let path = Path::new("users");
        let users = parse_users(path, "# comment\nbi:s3cret\n\nops:a:b\n").expect("parses");
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].password.expose(), "a:b");
        let err = parse_users(path, "bi:x\nnopassword\n").expect_err("bad line");
        assert!(err.to_string().contains("users:2"), "{err}");
    }
}
