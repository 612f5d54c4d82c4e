//! The lake as the front doors see it: one fresh, read-only [`LakeSession`] per
//! query.
//!
//! # Invariants
//! - **One catalog state per query.** Every query gets a session that read the
//!   catalog once when it was made ([`LakeSession`]'s consistent reads), so a
//!   run's multi-table commit is seen wholly or not at all, and a connection
//!   held open for hours still sees each new commit on its next query.
//! - **A memory pool per query** of [`QueryLimits::memory_per_query`] bytes,
//!   with spilling to disk off: a query over it fails with DataFusion's
//!   "Resources exhausted" and no other query is touched.
//! - **Read-only.** Plans are checked with [`icefjord_sql::query::read_only`]
//!   before they run (no DDL, DML, `COPY`, `CREATE EXTERNAL TABLE`).

use std::sync::Arc;

use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::sql::sqlparser::ast::Statement;
use icefjord_catalog::LakeCatalog;
use icefjord_engine::LakeSession;
use tokio::sync::watch;

use crate::config::QueryLimits;
use crate::error::Result;
use crate::execution::QueryRuntime;
use crate::metrics;
use crate::pg_catalog::PgCatalog;
use crate::result_cache::{self, CacheKey, Reads, ResultCache};

/// Per-connection settings a session starts from (PostgreSQL `search_path`,
/// `TimeZone`).
#[derive(Clone, Debug, Default)]
pub struct SessionSettings {
    /// Unqualified table names resolve in this namespace.
    pub default_schema: Option<String>,
    /// Session time zone (`SET TIME ZONE`), e.g. `Europe/Oslo` or `+02:00`.
    pub time_zone: Option<String>,
    /// The catalog-wide branch or tag to read (`SET icefjord.branch = 'dev'`,
    /// HTTP's `branch`); main when `None`.
    pub branch: Option<String>,
}

/// Hands out sessions over one lake under the server's limits, and counts the
/// queries in flight (for a graceful shutdown).
#[derive(Clone)]
pub struct QueryLake {
    catalog: LakeCatalog,
    limits: QueryLimits,
    pg_catalog: PgCatalog,
    runtime: Arc<QueryRuntime>,
    in_flight: Arc<watch::Sender<usize>>,
    results: Arc<ResultCache>,
}

/// Holds one query in [`QueryLake::in_flight`] until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<watch::Sender<usize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl QueryLake {
    pub async fn new(catalog: LakeCatalog, limits: QueryLimits) -> Result<Self> {
        let results = Arc::new(ResultCache::new(limits.result_cache));
        Ok(Self {
            pg_catalog: PgCatalog::new(&catalog).await?,
            runtime: Arc::new(QueryRuntime::new()?),
            results,
            catalog,
            limits,
            in_flight: Arc::new(watch::Sender::new(0)),
        })
    }

    /// Count a query as running until the guard drops.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.send_modify(|n| *n += 1);
        InFlight(self.in_flight.clone())
    }

    /// Wait until no query runs (or `deadline` passes); true if none runs.
    pub async fn drained(&self, deadline: std::time::Duration) -> bool {
        let mut running = self.in_flight.subscribe();
        let drained = tokio::time::timeout(deadline, running.wait_for(|n| *n == 0)).await;
        drained.is_ok()
    }

    pub fn catalog(&self) -> &LakeCatalog {
        &self.catalog
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Where plans run ([`QueryRuntime`]).
    pub fn runtime(&self) -> &QueryRuntime {
        &self.runtime
    }

    /// The kept result of `key`, if what it read is unchanged now
    /// ([`crate::result_cache`]). A catalog that cannot be read is a miss
    /// (the query's own session then says why).
    pub async fn reused(&self, key: &CacheKey) -> Option<SendableRecordBatchStream> {
        if !self.results.enabled() {
            return None;
        }
        let state = self.catalog.state().await.ok()?;
        let reused = self.results.lookup(key, &state);
        metrics::result_cache(reused.is_some());
        reused
    }

    /// What `plan` reads, if its result may be kept for reuse (`plan` as
    /// planned from `statement` in `session`, before it runs).
    pub fn reusable(
        &self,
        session: &LakeSession,
        statement: &Statement,
        plan: &LogicalPlan,
    ) -> Option<Reads> {
        if !self.results.enabled()
            || !result_cache::calls_only_immutable(statement, session.context())
        {
            return None;
        }
        let state = session.catalog_state().ok()?;
        result_cache::reads(plan, &state)
    }

    /// `batches`, kept under `key` for reuse once they all arrived.
    pub fn keep(
        &self,
        key: CacheKey,
        reads: Option<Reads>,
        batches: SendableRecordBatchStream,
    ) -> SendableRecordBatchStream {
        match reads {
            Some(reads) => self.results.record(key, reads, batches),
            None => batches,
        }
    }

    /// A session as of the catalog's state now, under the per-query limits,
    /// with the PostgreSQL catalog emulation registered (`pg_catalog.*`,
    /// `current_schema()`, `has_*_privilege`, …).
    pub async fn session(&self, settings: &SessionSettings) -> Result<LakeSession> {
        let mut config = LakeSession::default_config()?;
        if let Some(schema) = &settings.default_schema {
            config.options_mut().catalog.default_schema = schema.clone();
        }
        if let Some(zone) = &settings.time_zone {
            config.options_mut().execution.time_zone = Some(zone.clone());
        }
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_per_query, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            );
        let catalog = match settings.branch.as_deref() {
            None => self.catalog.clone(),
            Some(branch) => self.catalog.on_ref(branch).await?,
        };
        let session = LakeSession::with_runtime(&catalog, config, runtime).await?;
        self.pg_catalog.register(session.context())?;
        Ok(session)
    }
}

/// Plan one parsed statement in `session`, as `icefjord sql` does: time
/// travel clauses rewritten (`VERSION AS OF`, `TIMESTAMP AS OF`), anything
/// that is not read-only refused.
pub async fn plan(session: &LakeSession, statement: Statement) -> Result<LogicalPlan> {
    let state = session.context().state();
    let statement = datafusion::sql::parser::Statement::Statement(Box::new(statement));
    Ok(icefjord_sql::statement::plan(&state, statement).await?)
}
