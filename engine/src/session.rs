//! A DataFusion session over a lake: catalog `icefjord`, one schema per namespace
//! (`SELECT … FROM raw.retail_events`), tables read through [`IcebergTable`].

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use iceberg::{NamespaceIdent, TableIdent};
use icefjord_catalog::{CatalogError, LakeCatalog, CATALOG_NAME};

use crate::error::{EngineError, Result};
use crate::scan::IcebergTable;

/// Which version of a table to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsOf {
    /// The current snapshot of `main`.
    Current,
    /// A snapshot id.
    Snapshot(i64),
    /// The snapshot that was current at this time (milliseconds since the epoch).
    Timestamp(i64),
}

/// A DataFusion session that sees every table of a lake.
#[derive(Clone)]
pub struct LakeSession {
    catalog: LakeCatalog,
    ctx: SessionContext,
    provider: Arc<LakeCatalogProvider>,
}

impl LakeSession {
    /// A session over `catalog`, with its warehouse store registered.
    pub async fn new(catalog: &LakeCatalog) -> Result<Self> {
        Self::with_config(catalog, SessionConfig::new()).await
    }

    pub async fn with_config(catalog: &LakeCatalog, config: SessionConfig) -> Result<Self> {
        let config = config
            .with_default_catalog_and_schema(CATALOG_NAME, "public")
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true);
        let runtime = RuntimeEnvBuilder::new().build_arc()?;
        let store = catalog.store();
        runtime.register_object_store(&store.base_url()?, store.client()?);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        let ctx = SessionContext::new_with_state(state);
        let provider = Arc::new(LakeCatalogProvider {
            catalog: catalog.clone(),
            namespaces: RwLock::default(),
            local: Arc::new(MemorySchemaProvider::new()),
        });
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

    /// Pick up namespaces and tables created since the session started.
    pub async fn refresh(&self) -> Result<()> {
        self.provider.refresh().await
    }

    /// A table provider for `ident` at `as_of`.
    pub async fn table(&self, ident: &TableIdent, as_of: AsOf) -> Result<IcebergTable> {
        let table = self.catalog.load(ident).await?;
        let snapshot_id = match as_of {
            AsOf::Current => None,
            AsOf::Snapshot(id) => {
                if table.metadata().snapshot_by_id(id).is_none() {
                    return Err(CatalogError::SnapshotNotFound {
                        table: icefjord_catalog::display(ident),
                        what: format!("with id {id}"),
                    }
                    .into());
                }
                Some(id)
            }
            AsOf::Timestamp(ms) => {
                Some(
                    snapshot_at(&table, ms).ok_or_else(|| CatalogError::SnapshotNotFound {
                        table: icefjord_catalog::display(ident),
                        what: format!("at or before {ms} ms since the epoch"),
                    })?,
                )
            }
        };
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

/// `icefjord` as a DataFusion catalog: namespaces are schemas. The default schema
/// `public` (unless the lake has a namespace of that name) holds tables registered
/// in this session only, e.g. pinned inputs of a job or time-travel aliases.
#[derive(Debug)]
struct LakeCatalogProvider {
    catalog: LakeCatalog,
    namespaces: RwLock<BTreeMap<String, Arc<LakeSchemaProvider>>>,
    local: Arc<MemorySchemaProvider>,
}

const LOCAL_SCHEMA: &str = "public";

impl LakeCatalogProvider {
    async fn refresh(&self) -> Result<()> {
        let mut fresh = BTreeMap::new();
        for namespace in self.catalog.namespaces().await? {
            let tables = self
                .catalog
                .tables(&namespace)
                .await?
                .into_iter()
                .map(|t| t.name().to_string())
                .collect();
            fresh.insert(
                namespace.clone(),
                Arc::new(LakeSchemaProvider {
                    catalog: self.catalog.clone(),
                    namespace,
                    tables,
                }),
            );
        }
        *self.namespaces.write().map_err(|_| poisoned())? = fresh;
        Ok(())
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
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let namespaces = self.namespaces.read().ok()?;
        match namespaces.get(name) {
            Some(schema) => Some(schema.clone() as Arc<dyn SchemaProvider>),
            None if name == LOCAL_SCHEMA => Some(self.local.clone() as Arc<dyn SchemaProvider>),
            None => None,
        }
    }
}

#[derive(Debug)]
struct LakeSchemaProvider {
    catalog: LakeCatalog,
    namespace: String,
    tables: Vec<String>,
}

#[async_trait]
impl SchemaProvider for LakeSchemaProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.tables.clone()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if !self.table_exist(name) {
            return Ok(None);
        }
        let ident = TableIdent::new(
            NamespaceIdent::new(self.namespace.clone()),
            name.to_string(),
        );
        let table = match self.catalog.load(&ident).await {
            Ok(table) => table,
            Err(CatalogError::TableNotFound { .. }) => return Ok(None),
            Err(e) => return Err(DataFusionError::External(Box::new(e))),
        };
        let provider = IcebergTable::try_new(table, None, self.catalog.store().clone())
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Some(Arc::new(provider)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t == name)
    }
}
