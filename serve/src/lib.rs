//! `icefjord serve`: the lake's front door, over the PostgreSQL wire protocol
//! (BI tools, drivers, psql) and HTTP (apps, curl, the OpenAPI document), both
//! read-only, and the Iceberg REST catalog (Spark, Trino, PyIceberg, DuckDB),
//! through which other engines also commit. DESIGN §6.
//!
//! ```no_run
//! # async fn demo(catalog: icefjord_catalog::LakeCatalog) -> icefjord_serve::Result<()> {
//! use icefjord_serve::{Server, ServeConfig};
//! let config = ServeConfig {
//!     pg_addr: Some("127.0.0.1:5433".parse().expect("address")),
//!     ..ServeConfig::default()
//! };
//! let server = Server::bind(catalog, config).await?;
//! println!("PostgreSQL wire on {:?}", server.pg_addr());
//! server.run(icefjord_serve::shutdown_signal()).await
//! # }
//! ```
//!
//! # Invariants
//! - Start-up refuses what §6 forbids before any port is bound
//!   ([`ServeConfig::validate`]): a non-loopback listener without a password
//!   or token, a TLS pair that does not load.
//! - Every query runs in its own session: one catalog state, read-only, its
//!   own memory pool and deadline ([`lake::QueryLake`]).
//! - Shutdown (SIGTERM, Ctrl-C) first stops accepting, lets running queries
//!   finish for [`ServeConfig::shutdown_grace`], then stops what still runs
//!   with `57P01` / HTTP 503 and returns.

pub mod config;
pub mod error;
pub mod execution;
pub mod http;
pub mod lake;
mod listener;
pub mod metrics;
pub mod params;
pub mod pg;
pub mod pg_catalog;
pub mod rest;
pub mod result_cache;
pub mod sqlstate;
pub mod statement;

use std::future::Future;
use std::net::SocketAddr;

use icefjord_catalog::LakeCatalog;
use tokio::sync::watch;

pub use config::{PasswordMethod, PgUser, QueryLimits, RestClient, Secret, ServeConfig, TlsFiles};
pub use error::{Result, ServeError};

/// How long finished queries' last messages get to reach their clients at
/// shutdown.
const FLUSH: std::time::Duration = std::time::Duration::from_millis(300);

/// Bound listeners, ready to [`Server::run`].
pub struct Server {
    lake: lake::QueryLake,
    pg: Option<pg::PgServer>,
    http: Option<http::HttpServer>,
    rest: Option<rest::RestServer>,
    grace: std::time::Duration,
    /// True once no new connection may start.
    stop: watch::Sender<bool>,
    /// True once the grace period is over: running queries end.
    abort: watch::Sender<bool>,
}

impl Server {
    /// Check `config`, load TLS and bind every listener.
    pub async fn bind(catalog: LakeCatalog, config: ServeConfig) -> Result<Self> {
        config.validate()?;
        let rest = match config.rest_addr {
            Some(addr) => Some(rest::RestServer::bind(addr, &config, catalog.clone()).await?),
            None => None,
        };
        let lake = lake::QueryLake::new(catalog, config.limits.clone()).await?;
        let (stop, _) = watch::channel(false);
        let (abort, _) = watch::channel(false);
        let pg = match config.pg_addr {
            Some(addr) => {
                Some(pg::PgServer::bind(addr, &config, lake.clone(), abort.subscribe()).await?)
            }
            None => None,
        };
        let http = match config.http_addr {
            Some(addr) => {
                Some(http::HttpServer::bind(addr, &config, lake.clone(), abort.subscribe()).await?)
            }
            None => None,
        };
        Ok(Self {
            lake,
            pg,
            http,
            rest,
            grace: config.shutdown_grace,
            stop,
            abort,
        })
    }

    /// Where the PostgreSQL listener is bound.
    pub fn pg_addr(&self) -> Option<SocketAddr> {
        self.pg.as_ref().and_then(|pg| pg.local_addr().ok())
    }

    /// Where the HTTP listener is bound.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|http| http.local_addr().ok())
    }

    /// Where the Iceberg REST catalog listener is bound.
    pub fn rest_addr(&self) -> Option<SocketAddr> {
        self.rest.as_ref().and_then(|rest| rest.local_addr().ok())
    }

    /// Serve until `shutdown` resolves, then shut down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let mut listeners = Vec::new();
        if let Some(pg) = self.pg {
            listeners.push(tokio::spawn(pg.run(self.stop.subscribe())));
        }
        if let Some(http) = self.http {
            let stop = self.stop.subscribe();
            listeners.push(tokio::spawn(async move {
                if let Err(e) = http.run(stop).await {
                    tracing::error!(error = %e, "the HTTP listener stopped");
                }
            }));
        }
        if let Some(rest) = self.rest {
            let stop = self.stop.subscribe();
            listeners.push(tokio::spawn(async move {
                if let Err(e) = rest.run(stop).await {
                    tracing::error!(error = %e, "the REST catalog listener stopped");
                }
            }));
        }
        shutdown.await;
        tracing::info!(grace_ms = self.grace.as_millis() as u64, "shutting down");
        let _ = self.stop.send(true);
        for listener in listeners {
            let _ = listener.await;
        }
        if !self.lake.drained(self.grace).await {
            tracing::warn!("queries still running after the grace period: stopping them");
            let _ = self.abort.send(true);
            let _ = self.lake.drained(std::time::Duration::from_secs(2)).await;
        }
        // A query's stream ends before its last messages (CommandComplete,
        // ReadyForQuery) are flushed: give them time to reach the client.
        tokio::time::sleep(FLUSH).await;
        Ok(())
    }
}

/// Resolves on SIGTERM (Kubernetes' stop) or Ctrl-C. The handlers are
/// installed when this is called, not when it is first polled: call it before
/// saying the server is ready, or a SIGTERM just after would kill the process
/// without a graceful shutdown.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            let term = async {
                match term {
                    Some(mut term) => term.recv().await,
                    None => std::future::pending().await,
                }
            };
            let interrupt = async {
                match interrupt {
                    Some(mut interrupt) => interrupt.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = term => {},
                _ = interrupt => {},
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
