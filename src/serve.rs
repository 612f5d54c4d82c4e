//! `icefjord serve`: flags and environment into an [`icefjord_serve::ServeConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use icefjord_catalog::LakeCatalog;
use icefjord_serve::config::{parse_rest_clients, parse_tokens, parse_users};
use icefjord_serve::{
    PasswordMethod, PgUser, QueryLimits, RestClient, Secret, ServeConfig, TlsFiles,
};

use crate::exit::Usage;

/// The PostgreSQL user when only `ICEFJORD_PG_PASSWORD` is set.
const DEFAULT_USER: &str = "icefjord";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// PostgreSQL wire listener, or `off`. A non-loopback address needs a
    /// password (ICEFJORD_PG_PASSWORD or ICEFJORD_PG_USERS_FILE).
    #[arg(long, default_value = "127.0.0.1:5433", value_name = "ADDR|off")]
    pg_addr: String,
    /// HTTP API listener, or `off`. A non-loopback address needs a bearer token
    /// (ICEFJORD_HTTP_TOKEN or ICEFJORD_HTTP_TOKENS_FILE).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR|off")]
    http_addr: String,
    /// Iceberg REST catalog listener, or `off`. A non-loopback address needs
    /// OAuth2 clients (ICEFJORD_REST_CLIENTS_FILE with client_id:secret[:read]
    /// lines, or ICEFJORD_REST_CLIENT_ID + ICEFJORD_REST_CLIENT_SECRET); tokens
    /// are signed with ICEFJORD_REST_TOKEN_KEY (set it alike on every replica)
    /// or a random key per process.
    #[arg(long, default_value = "127.0.0.1:8181", value_name = "ADDR|off")]
    rest_addr: String,
    /// How PostgreSQL clients send their password: scram-sha-256 or md5.
    #[arg(long, default_value = "scram-sha-256", value_name = "METHOD")]
    password_method: PasswordMethod,
    /// TLS certificate chain (PEM) for the PostgreSQL listener; needs --tls-key.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the PostgreSQL listener; needs --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Memory one query may use, in MiB; past it the query fails, others go on.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    query_memory_mib: usize,
    /// Memory for reusing results of repeated queries, in MiB (0: off). A
    /// result is reused while every table it read is unchanged; one over
    /// 1/16 of this is never kept.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    result_cache_mib: usize,
    /// Longest a query may run, in seconds (rows streamed included).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    query_timeout: u64,
    /// Open PostgreSQL connections, and HTTP queries running at once, at most.
    #[arg(long, default_value_t = 64)]
    max_connections: usize,
    /// After SIGTERM, how long running queries may finish, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    shutdown_grace: u64,
    /// Pipeline folders whose `[[endpoints]]` the HTTP API serves (repeatable).
    #[arg(long = "pipeline", value_name = "DIR")]
    pipelines: Vec<PathBuf>,
}

fn listener(flag: &str, text: &str) -> Result<Option<SocketAddr>> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e| Usage::new(flag, format!("{text:?}: {e} (expected HOST:PORT or off)")).into())
}

/// The path and text of the file an environment variable names, if set.
fn env_file(var: &str) -> Result<Option<(PathBuf, String)>> {
    let Some(path) = std::env::var_os(var) else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Usage::new(var, format!("{}: {e}", path.display())))?;
    Ok(Some((path, text)))
}

/// Users from `ICEFJORD_PG_USERS_FILE` (`user:password` lines) or
/// `ICEFJORD_PG_USER` (default `icefjord`) + `ICEFJORD_PG_PASSWORD`.
fn users() -> Result<Vec<PgUser>> {
    if let Some((path, text)) = env_file("ICEFJORD_PG_USERS_FILE")? {
        return Ok(parse_users(&path, &text)?);
    }
    match std::env::var("ICEFJORD_PG_PASSWORD") {
        Ok(password) => Ok(vec![PgUser {
            name: std::env::var("ICEFJORD_PG_USER").unwrap_or_else(|_| DEFAULT_USER.into()),
            password: Secret::new(password),
        }]),
        Err(_) => Ok(Vec::new()),
    }
}

fn tokens() -> Result<Vec<Secret>> {
    if let Some((_, text)) = env_file("ICEFJORD_HTTP_TOKENS_FILE")? {
        return Ok(parse_tokens(&text));
    }
    Ok(std::env::var("ICEFJORD_HTTP_TOKEN")
        .map(|t| vec![Secret::new(t)])
        .unwrap_or_default())
}

/// OAuth2 clients of the REST catalog from `ICEFJORD_REST_CLIENTS_FILE`, or
/// one from `ICEFJORD_REST_CLIENT_ID` + `ICEFJORD_REST_CLIENT_SECRET`.
fn rest_clients() -> Result<Vec<RestClient>> {
    if let Some((path, text)) = env_file("ICEFJORD_REST_CLIENTS_FILE")? {
        return Ok(parse_rest_clients(&path, &text)?);
    }
    match (
        std::env::var("ICEFJORD_REST_CLIENT_ID"),
        std::env::var("ICEFJORD_REST_CLIENT_SECRET"),
    ) {
        (Ok(id), Ok(secret)) => Ok(vec![RestClient {
            id,
            secret: Secret::new(secret),
            write: true,
        }]),
        (Ok(_), Err(_)) | (Err(_), Ok(_)) => Err(Usage::new(
            "ICEFJORD_REST_CLIENT_SECRET",
            "set both ICEFJORD_REST_CLIENT_ID and ICEFJORD_REST_CLIENT_SECRET, or neither",
        )
        .into()),
        _ => Ok(Vec::new()),
    }
}

impl ServeArgs {
    fn config(&self) -> Result<ServeConfig> {
        Ok(ServeConfig {
            pg_addr: listener("--pg-addr", &self.pg_addr)?,
            http_addr: listener("--http-addr", &self.http_addr)?,
            users: users()?,
            password_method: self.password_method,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            limits: QueryLimits {
                memory_per_query: self.query_memory_mib.saturating_mul(1 << 20),
                timeout: Duration::from_secs(self.query_timeout),
                max_connections: self.max_connections,
                result_cache: self.result_cache_mib.saturating_mul(1 << 20),
            },
            http_tokens: tokens()?,
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
            pipelines: self.pipelines.clone(),
            rest_addr: listener("--rest-addr", &self.rest_addr)?,
            rest_clients: rest_clients()?,
            rest_token_key: std::env::var("ICEFJORD_REST_TOKEN_KEY")
                .ok()
                .map(Secret::new),
        })
    }
}

/// Serve until SIGTERM or Ctrl-C. Prints one JSON line with the bound
/// addresses on stdout once it listens (port 0 picks a free port).
pub async fn serve(args: ServeArgs, lake: LakeCatalog) -> Result<()> {
    let config = args.config()?;
    let server = icefjord_serve::Server::bind(lake, config)
        .await
        .context("icefjord serve cannot start")?;
    // Install the signal handlers before saying the server is ready.
    let shutdown = icefjord_serve::shutdown_signal();
    let ready = serde_json::json!({
        "pg": server.pg_addr().map(|a| a.to_string()),
        "http": server.http_addr().map(|a| a.to_string()),
        "rest": server.rest_addr().map(|a| a.to_string()),
    });
    println!("{ready}");
    server.run(shutdown).await?;
    Ok(())
}
