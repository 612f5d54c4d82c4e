//! The PostgreSQL wire protocol front door (pgwire 0.40, with the catalog
//! emulation, `SET`/`SHOW` and cursor hooks of `datafusion-postgres` 0.17).
//!
//! One [`PgServer`] accepts connections; each gets its own start-up handler
//! (the SASL exchange keeps state) and shares the query handler. TLS, when
//! configured, is offered through PostgreSQL's `SSLRequest`; the connection
//! limit answers `53300` past [`crate::config::QueryLimits::max_connections`].

pub(crate) mod catalog_rewrite;
mod cursor;
mod encode;
mod handler;
mod parser;
mod portal;
mod settings;
pub mod sqlstate;
mod startup;
pub mod statement;

use std::net::SocketAddr;
use std::sync::Arc;

use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{
    ConnectionManager, NoopHandler, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

pub use handler::QueryHandler;
use startup::{Parameters, Secured, Startup, Users};

use crate::config::ServeConfig;
use crate::error::{Result, ServeError};
use crate::lake::QueryLake;
use crate::metrics::{ConnectionGauge, Protocol};

/// The handlers of one connection.
struct Connection {
    startup: Arc<Secured>,
    queries: Arc<QueryHandler>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        Arc::new(NoopHandler)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// A bound PostgreSQL listener, ready to serve.
pub struct PgServer {
    listener: TcpListener,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    users: Arc<Users>,
    keys: Arc<dyn PidSecretKeyGenerator>,
    manager: Arc<ConnectionManager>,
    parameters: Arc<Parameters>,
    queries: Arc<QueryHandler>,
    connections: Arc<Semaphore>,
}

impl PgServer {
    /// Bind `addr` (TLS files are loaded here: a bad pair stops start-up).
    pub async fn bind(
        addr: SocketAddr,
        config: &ServeConfig,
        lake: QueryLake,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self> {
        let tls = match &config.tls {
            Some(files) => Some(pgwire::tokio::TlsAcceptor::from(files.load()?)),
            None => None,
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let manager = Arc::new(ConnectionManager::new());
        Ok(Self {
            listener,
            tls,
            users: Arc::new(Users::new(config.users.clone(), config.password_method)),
            keys: Arc::new(RandomPidSecretKeyGenerator::default()),
            manager,
            parameters: Arc::new(Parameters::default()),
            connections: Arc::new(Semaphore::new(config.limits.max_connections)),
            queries: Arc::new(QueryHandler::new(lake, shutdown)),
        })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Accept connections until `stop` turns true; connections already open
    /// are served by their own tasks until the process ends.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            let (socket, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a PostgreSQL connection failed");
                    continue;
                }
            };
            let permit = self.connections.clone().try_acquire_owned().ok();
            let startup = match permit {
                Some(_) => Startup::new(&self.users, &self.keys, &self.manager, &self.parameters),
                None => {
                    tracing::warn!(%peer, "refusing a PostgreSQL connection: too many clients");
                    Startup::Refuse
                }
            };
            let connection = Arc::new(Connection {
                startup: Arc::new(Secured {
                    startup,
                    tls_required: self.tls.is_some(),
                }),
                queries: self.queries.clone(),
                cancel: Arc::new(DefaultCancelHandler::new(self.manager.clone())),
            });
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let _gauge = ConnectionGauge::open(Protocol::Pg);
                if let Err(e) = pgwire::tokio::process_socket(socket, tls, connection).await {
                    tracing::debug!(%peer, error = %e, "PostgreSQL connection ended with an error");
                }
            });
        }
    }
}
