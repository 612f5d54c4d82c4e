//! The HTTP API (axum). Being built: health only.

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::ServeConfig;
use crate::error::{Result, ServeError};
use crate::lake::QueryLake;

/// A bound HTTP listener.
pub struct HttpServer {
    listener: TcpListener,
    router: Router,
}

impl HttpServer {
    pub async fn bind(
        addr: SocketAddr,
        _config: &ServeConfig,
        _lake: QueryLake,
        _abort: watch::Receiver<bool>,
    ) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let router = Router::new().route("/healthz", get(|| async { "ok" }));
        Ok(Self { listener, router })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serve until `stop` turns true (requests in progress finish).
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            })
            .await?;
        Ok(())
    }
}
