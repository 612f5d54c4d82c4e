//! A DataFusion session over a lake: catalog `icefjord`, one schema per namespace
//! (`SELECT … FROM raw.retail_events`), tables read through [`IcebergTable`], and
//! the lake's published views (`icefjord_views`) planned when they are read, and
//! its Delta tables read through [`crate::delta::DeltaScan`] at their pinned version.
//!
//! # Consistent reads
//!
//! A session resolves every table and view from one [`CatalogState`], read in one
//! statement when the session starts (and again on [`LakeSession::refresh`]): the
//! tables of a query (a view over a historical table and its raw input, say) are
//! all as of one instant, so a multi-table commit is seen wholly or not at all.
//!
//! A session can also *stage* table providers under lake names
//! ([`LakeSession::stage`]): the job runner shows the unpublished output of a model
//! to the models and audits after it, in its own session only.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock, Weak};

use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{CatalogProvider, MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;

use crate::partitionwise::with_partitionwise_aggregation;
use datafusion::prelude::{SessionConfig, SessionContext};
use iceberg::spec::{FormatVersion, MAIN_BRANCH};
use iceberg::{NamespaceIdent, TableIdent};
use icefjord_catalog::protocol::{find_position, BoundaryKey, InputSnapshotKey};
use icefjord_catalog::{CatalogError, CatalogState, LakeCatalog, CATALOG_NAME};

use crate::error::{EngineError, Result};
use crate::scan::IcebergTable;

mod faces;

/// Which version of a table to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AsOf {
    /// The current snapshot of `main`.
    Current,
    /// A snapshot id.
    Snapshot(i64),
    /// The snapshot of `main` that was current at this time (milliseconds since
    /// the epoch), from the table's snapshot log as Iceberg's readers find it.
    Timestamp(i64),
    /// The head of a table-level branch (`table.metadata().refs()`).
    Branch(String),
    /// The snapshot a table-level tag points at.
    Tag(String),
}

/// A DataFusion session that sees every table of a lake.
#[derive(Clone)]
pub struct LakeSession {
    catalog: LakeCatalog,
    ctx: SessionContext,
    provider: Arc<LakeCatalogProvider>,
}

/// The environment variable that overrides our partial-aggregation threshold.
const SKIP_PARTIAL_AGGREGATION_ENV: &str =
    "DATAFUSION_EXECUTION_SKIP_PARTIAL_AGGREGATION_PROBE_RATIO_THRESHOLD";

impl LakeSession {
    /// A session over `catalog`, with its warehouse store registered. DataFusion
    /// settings can be given as `DATAFUSION_*` environment variables (e.g.
    /// `DATAFUSION_EXECUTION_TARGET_PARTITIONS=4`); a malformed one is an error.
    pub async fn new(catalog: &LakeCatalog) -> Result<Self> {
        Self::with_config(catalog, Self::default_config()?).await
    }

    /// The settings [`LakeSession::new`] uses: `DATAFUSION_*` environment
    /// variables over our defaults.
    pub fn default_config() -> Result<SessionConfig> {
        let mut config = SessionConfig::from_env()?;
        if std::env::var_os(SKIP_PARTIAL_AGGREGATION_ENV).is_none() {
            // Partial aggregation pays when it shrinks the rows a lot. DataFusion
            // keeps it up to 80% groups per row; a job's GROUP BY often reduces less
            // (the retail history: 71%), and then the partial hash table costs more
            // CPU than it saves and as much memory again (measured: -10% CPU,
            // -1.3 GB peak at 20 M events). Skip it from 50%.
            config
                .options_mut()
                .execution
                .skip_partial_aggregation_probe_ratio_threshold = 0.5;
        }
        Ok(config)
    }

    pub async fn with_config(catalog: &LakeCatalog, config: SessionConfig) -> Result<Self> {
        Self::with_runtime(catalog, config, RuntimeEnvBuilder::new()).await
    }

    /// A session with its own runtime, e.g. a memory pool per query
    /// (`icefjord serve`).
    pub async fn with_runtime(
        catalog: &LakeCatalog,
        config: SessionConfig,
        runtime: RuntimeEnvBuilder,
    ) -> Result<Self> {
        // The default schema is the config's (DataFusion's default: `public`).
        let schema = config.options().catalog.default_schema.clone();
        let config = config
            .with_default_catalog_and_schema(CATALOG_NAME, schema)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true);
        let runtime = runtime.build_arc()?;
        let store = catalog.store();
        runtime.register_object_store(&store.base_url()?, store.client()?);
        let provider = Arc::new(LakeCatalogProvider {
            catalog: catalog.clone(),
            namespaces: RwLock::default(),
            local: Arc::new(MemorySchemaProvider::new()),
            added: RwLock::default(),
            staged: Arc::default(),
            state: Arc::new(OnceLock::new()),
            read: RwLock::default(),
        });
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            // `raw.t.snapshots`, `raw.t.snapshot_id_…` (Spark's names, faces.rs).
            .with_catalog_list(Arc::new(faces::LakeCatalogList::new(provider.clone())))
            .with_physical_optimizer_rules(with_partitionwise_aggregation(
                PhysicalOptimizer::new().rules,
            ))
            .build();
        // DataFusion would read the current table for `t VERSION AS OF …`.
        state.register_relation_planner(Arc::new(faces::RefuseTableVersions))?;
        let ctx = SessionContext::new_with_state(state);
        // Integer and decimal sums fail on overflow instead of wrapping (sum.rs).
        ctx.register_udaf(crate::sum::checked_sum_udaf().as_ref().clone());
        // So do integer + - * (arithmetic.rs).
        ctx.add_analyzer_rule(Arc::new(crate::arithmetic::CheckedArithmetic));
        let _ = provider.state.set(ctx.state_weak_ref());
        provider.refresh().await?;
        ctx.register_catalog(CATALOG_NAME, provider.clone());
        Ok(Self {
            catalog: catalog.clone(),
            ctx,
            provider,
        })
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    pub fn catalog(&self) -> &LakeCatalog {
        &self.catalog
    }

    /// The catalog state this session resolves tables and views from (read
    /// when it started or at its last [`LakeSession::refresh`]).
    pub fn catalog_state(&self) -> Result<Arc<CatalogState>> {
        Ok(self.provider.read.read().map_err(|_| poisoned())?.clone())
    }

    /// Pick up namespaces and tables created since the session started.
    pub async fn refresh(&self) -> Result<()> {
        self.provider.refresh().await
    }

    /// Read `provider` wherever this session's queries name `ident`, in place of the
    /// lake's table or view of that name (until [`LakeSession::unstage`]).
    pub fn stage(&self, ident: &TableIdent, provider: Arc<dyn TableProvider>) -> Result<()> {
        self.provider
            .staged
            .write()
            .map_err(|_| poisoned())?
            .insert(staged_key(ident), provider);
        Ok(())
    }

    /// Read the lake's `ident` again.
    pub fn unstage(&self, ident: &TableIdent) -> Result<()> {
        self.provider
            .staged
            .write()
            .map_err(|_| poisoned())?
            .remove(&staged_key(ident));
        Ok(())
    }

    /// A table provider for `ident` at `as_of`.
    pub async fn table(&self, ident: &TableIdent, as_of: AsOf) -> Result<IcebergTable> {
        let table = self.catalog.load(ident).await?;
        let snapshot_id = snapshot_for(&table, &as_of)?;
        IcebergTable::try_new(table, snapshot_id, self.catalog.store().clone())
    }

    /// Register `ident` at `as_of` under a plain name (e.g. for time travel).
    pub async fn register_as(&self, name: &str, ident: &TableIdent, as_of: AsOf) -> Result<()> {
        let provider = self.table(ident, as_of).await?;
        self.ctx.register_table(name, Arc::new(provider))?;
        Ok(())
    }

    /// Run a query and collect its result.
    pub async fn query(&self, sql: &str) -> Result<Vec<arrow::array::RecordBatch>> {
        Ok(self.ctx.sql(sql).await?.collect().await?)
    }
}

/// The snapshot of `table` that `as_of` names (`None`: the table has no snapshot
/// yet and `as_of` is [`AsOf::Current`]); an id, time or ref the table does not
/// have is an error naming the table and what was asked.
pub fn snapshot_for(table: &iceberg::table::Table, as_of: &AsOf) -> Result<Option<i64>> {
    let metadata = table.metadata();
    let missing = |what: String| CatalogError::SnapshotNotFound {
        table: icefjord_catalog::display(table.identifier()),
        what,
    };
    let refs = || crate::metadata_tables::refs_of(metadata);
    let reference = |name: &str, branch: bool| -> Result<i64> {
        let kind = if branch { "branch" } else { "tag" };
        match refs()?.get(name) {
            Some(found) if found.is_branch() == branch => Ok(found.snapshot_id),
            Some(_) => Err(missing(format!(
                "for {kind} {name} ({name} is a {})",
                if branch { "tag" } else { "branch" }
            ))
            .into()),
            None => Err(CatalogError::RefNotFound {
                table: icefjord_catalog::display(table.identifier()),
                reference: name.to_string(),
            }
            .into()),
        }
    };
    let id = match as_of {
        AsOf::Current => return Ok(metadata.current_snapshot_id()),
        AsOf::Snapshot(id) => match metadata.snapshot_by_id(*id) {
            Some(_) => *id,
            None => return Err(missing(format!("with id {id}")).into()),
        },
        AsOf::Timestamp(ms) => snapshot_at(table, *ms)
            .ok_or_else(|| missing(format!("at or before {ms} ms since the epoch")))?,
        AsOf::Branch(name) => reference(name, true)?,
        AsOf::Tag(name) => reference(name, false)?,
    };
    Ok(Some(id))
}

/// The snapshot of `main` that was current at `ms` (from the snapshot log).
pub fn snapshot_at(table: &iceberg::table::Table, ms: i64) -> Option<i64> {
    table
        .metadata()
        .history()
        .iter()
        .filter(|log| log.timestamp_ms <= ms)
        .max_by_key(|log| log.timestamp_ms)
        .map(|log| log.snapshot_id)
}

fn staged_key(ident: &TableIdent) -> (String, String) {
    (ident.namespace().join("."), ident.name().to_string())
}

type Staged = RwLock<BTreeMap<(String, String), Arc<dyn TableProvider>>>;

/// `icefjord` as a DataFusion catalog: namespaces are schemas. The default schema
/// `public` (unless the lake has a namespace of that name) holds tables registered
/// in this session only, e.g. pinned inputs of a job or time-travel aliases.
struct LakeCatalogProvider {
    catalog: LakeCatalog,
    namespaces: RwLock<BTreeMap<String, Arc<LakeSchemaProvider>>>,
    local: Arc<MemorySchemaProvider>,
    /// Schemas registered by a front door (see `register_schema`).
    added: RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>,
    /// Providers shown in place of lake tables (see [`LakeSession::stage`]).
    staged: Arc<Staged>,
    /// The session's state, to plan views with (weak: the session owns this).
    state: Arc<OnceLock<Weak<parking_lot::RwLock<SessionState>>>>,
    /// The catalog state the tables and views are resolved from.
    read: RwLock<Arc<CatalogState>>,
}

impl std::fmt::Debug for LakeCatalogProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeCatalogProvider")
            .field("namespaces", &self.namespaces)
            .finish_non_exhaustive()
    }
}

const LOCAL_SCHEMA: &str = "public";

impl LakeCatalogProvider {
    async fn refresh(&self) -> Result<()> {
        let state = self.catalog.state().await?;
        let mut fresh = BTreeMap::new();
        for namespace in self.catalog.namespaces().await? {
            let provider = self.schema_provider(namespace.clone(), &state);
            fresh.insert(namespace, Arc::new(provider));
        }
        *self.namespaces.write().map_err(|_| poisoned())? = fresh;
        *self.read.write().map_err(|_| poisoned())? = Arc::new(state);
        Ok(())
    }

    fn schema_provider(&self, namespace: String, state: &CatalogState) -> LakeSchemaProvider {
        LakeSchemaProvider {
            catalog: self.catalog.clone(),
            tables: state.tables.get(&namespace).cloned().unwrap_or_default(),
            views: state.views.get(&namespace).cloned().unwrap_or_default(),
            delta: state.delta.get(&namespace).cloned().unwrap_or_default(),
            all_tables: Arc::new(state.tables.clone()),
            namespace,
            staged: self.staged.clone(),
            state: self.state.clone(),
        }
    }
}

fn poisoned() -> EngineError {
    EngineError::Query(DataFusionError::Internal(
        "catalog cache lock poisoned".into(),
    ))
}

impl CatalogProvider for LakeCatalogProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .namespaces
            .read()
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default();
        if !names.iter().any(|n| n == LOCAL_SCHEMA) {
            names.push(LOCAL_SCHEMA.to_string());
        }
        if let Ok(added) = self.added.read() {
            names.extend(
                added
                    .keys()
                    .filter(|n| !names.contains(n))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
        }
        names
    }

    /// Schemas a front door adds for its clients (e.g. `pg_catalog`); a lake
    /// namespace of the same name stays visible in its place.
    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        Ok(self
            .added
            .write()
            .map_err(|_| DataFusionError::Internal("catalog cache lock poisoned".into()))?
            .insert(name.to_string(), schema))
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let namespaces = self.namespaces.read().ok()?;
        if !namespaces.contains_key(name) {
            if let Some(added) = self.added.read().ok()?.get(name) {
                return Some(added.clone());
            }
        }
        match namespaces.get(name) {
            Some(schema) => Some(schema.clone() as Arc<dyn SchemaProvider>),
            None if name == LOCAL_SCHEMA => Some(self.local.clone() as Arc<dyn SchemaProvider>),
            // A namespace that so far holds only staged tables.
            None if self
                .staged
                .read()
                .ok()?
                .keys()
                .any(|(namespace, _)| namespace == name) =>
            {
                Some(Arc::new(
                    self.schema_provider(name.to_string(), &CatalogState::default()),
                ))
            }
            None => None,
        }
    }
}

struct LakeSchemaProvider {
    catalog: LakeCatalog,
    namespace: String,
    /// Table → metadata location, from the session's catalog state.
    tables: BTreeMap<String, String>,
    /// View → SQL, from the same state.
    views: BTreeMap<String, String>,
    /// Delta table → (location, published version), from the same state.
    delta: BTreeMap<String, (String, u64)>,
    /// Every namespace's tables in the same state (for `@since:` outputs).
    all_tables: Arc<BTreeMap<String, BTreeMap<String, String>>>,
    staged: Arc<Staged>,
    state: Arc<OnceLock<Weak<parking_lot::RwLock<SessionState>>>>,
}

impl std::fmt::Debug for LakeSchemaProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeSchemaProvider")
            .field("namespace", &self.namespace)
            .field("tables", &self.tables)
            .field("views", &self.views)
            .field("delta", &self.delta)
            .finish_non_exhaustive()
    }
}

impl LakeSchemaProvider {
    fn staged(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        let staged = self.staged.read().ok()?;
        staged
            .get(&(self.namespace.clone(), name.to_string()))
            .cloned()
    }

    fn ident(&self, name: &str) -> TableIdent {
        TableIdent::new(
            NamespaceIdent::new(self.namespace.clone()),
            name.to_string(),
        )
    }

    /// `input@since:output` (see [`crate::fresh`]): the input's rows past the
    /// boundary the output's snapshot records, as of the session's catalog state.
    async fn since(&self, input: &str, output: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let external = |e: CatalogError| DataFusionError::External(Box::new(e));
        let Some(location) = self.tables.get(input) else {
            return Ok(None);
        };
        let input_table = self
            .catalog
            .load_at(&self.ident(input), location)
            .await
            .map_err(external)?;
        let input_name = format!("{}.{input}", self.namespace);
        let (namespace, table) = output.rsplit_once('.').unwrap_or_default();
        let mut provider =
            IcebergTable::try_new(input_table.clone(), None, self.catalog.store().clone())
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let Some(location) = self.all_tables.get(namespace).and_then(|t| t.get(table)) else {
            return Ok(Some(Arc::new(provider)));
        };
        let ident = TableIdent::new(NamespaceIdent::new(namespace.to_string()), table.into());
        let output_table = self
            .catalog
            .load_at(&ident, location)
            .await
            .map_err(external)?;
        provider = provider.with_dependency(ident, location.clone());
        // The output's position, found past other engines' snapshots (a
        // compaction of the output must not make every input row fresh again).
        let metadata = output_table.metadata();
        let boundary = find_position(
            metadata,
            output,
            MAIN_BRANCH,
            &BoundaryKey {
                input: input_name.clone(),
            },
        )
        .map_err(external)?;
        if let Some(boundary) = boundary {
            provider = provider.with_filter(crate::fresh::fresh_filter(&boundary.value));
            // Files committed up to the snapshot the output read hold no row
            // past its boundary: skip them (if that snapshot is still known;
            // after its expiry, or with the record itself lost, every file is
            // scanned: the filter alone is exact, the snapshot only saves work).
            let read = match find_position(
                metadata,
                output,
                MAIN_BRANCH,
                &InputSnapshotKey { input: input_name },
            ) {
                Ok(found) => found,
                Err(CatalogError::PositionLost { .. }) => None,
                Err(e) => return Err(external(e)),
            }
            .and_then(|found| input_table.metadata().snapshot_by_id(found.value));
            // Format v1 has no sequence numbers (all 0): every file is scanned.
            let sequenced = input_table.metadata().format_version() != FormatVersion::V1;
            if let Some(snapshot) = read.filter(|_| sequenced) {
                provider = provider.with_files_after(snapshot.sequence_number());
            }
        }
        Ok(Some(Arc::new(provider)))
    }

    /// Plan a published view with the session's state: it reads what it names as
    /// of the session's catalog state (and sees staged tables, like any query of
    /// the session).
    async fn view(&self, name: &str, sql: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let state = self
            .state
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| DataFusionError::Internal("the session is gone".into()))?;
        let state = state.read().clone();
        let plan = state.create_logical_plan(sql).await.map_err(|e| {
            DataFusionError::Plan(format!("view {}.{name} does not plan: {e}", self.namespace))
        })?;
        Ok(Some(Arc::new(ViewTable::new(plan, Some(sql.to_string())))))
    }
}

#[async_trait]
impl SchemaProvider for LakeSchemaProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tables.keys().cloned().collect();
        names.extend(self.views.keys().cloned());
        names.extend(self.delta.keys().cloned());
        if let Ok(staged) = self.staged.read() {
            names.extend(
                staged
                    .keys()
                    .filter(|(namespace, _)| *namespace == self.namespace)
                    .map(|(_, name)| name.clone()),
            );
        }
        names.sort();
        names.dedup();
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(staged) = self.staged(name) {
            return Ok(Some(staged));
        }
        if let Some((input, output)) = crate::fresh::parse_since(name) {
            return self.since(input, output).await;
        }
        if let Some(sql) = self.views.get(name) {
            return self.view(name, sql).await;
        }
        if let Some((location, version)) = self.delta.get(name) {
            let scan = crate::delta::DeltaScan::open(self.catalog.store(), location, *version)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            return Ok(Some(Arc::new(scan)));
        }
        let Some(location) = self.tables.get(name) else {
            return Ok(None);
        };
        let table = self
            .catalog
            .load_at(&self.ident(name), location)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let provider = IcebergTable::try_new(table, None, self.catalog.store().clone())
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Some(Arc::new(provider)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.staged(name).is_some()
            || self.tables.contains_key(name)
            || self.views.contains_key(name)
            || self.delta.contains_key(name)
            || crate::fresh::parse_since(name)
                .is_some_and(|(input, _)| self.tables.contains_key(input))
    }
}
