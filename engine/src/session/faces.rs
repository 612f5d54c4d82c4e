//! Spark's three-part names for a table's other faces: `raw.t.snapshots`,
//! `raw.t.snapshot_id_123`, `raw.t.tag_v1` (grammar: [`crate::table_suffix`]).
//!
//! DataFusion reads `raw.t.snapshots` as catalog `raw`, schema `t`, table
//! `snapshots`. The session's catalog list therefore resolves a namespace name to
//! a pseudo-catalog ([`NamespaceCatalog`]) whose schemas are that namespace's
//! tables ([`TableFaces`]) and whose tables are the suffixes. Invariants:
//!
//! - **One state.** Every face is resolved from the session's [`CatalogState`]
//!   (the same metadata location `raw.t` reads), so `raw.t` and `raw.t.snapshots`
//!   in one query agree.
//! - **Not listed.** `catalog_names()` lists only the real catalog (`icefjord`):
//!   `information_schema`, `SHOW TABLES` and BI tools see no pseudo-catalogs.
//!   A namespace named like a real catalog is reached through that catalog.
//! - **Never the wrong version.** A table factor with a version clause
//!   (`VERSION AS OF`, `TIMESTAMP AS OF`, `FOR SYSTEM_TIME AS OF`, `AT(…)`) that
//!   reaches the planner was not rewritten to a suffix: it is refused
//!   ([`RefuseTableVersions`]), never read as the current table.
//!
//! [`CatalogState`]: icefjord_catalog::CatalogState

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProviderList, SchemaProvider,
};
use datafusion::common::plan_err;
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::planner::{
    RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use datafusion::sql::sqlparser::ast::TableFactor;

use super::{snapshot_for, LakeCatalogProvider, LakeSchemaProvider};
use crate::scan::IcebergTable;
use crate::table_suffix::{MetadataTable, TableSuffix, SUFFIXES};

/// The session's catalogs: the registered ones (`icefjord`), and each namespace
/// of the lake as a pseudo-catalog of its tables' faces.
#[derive(Debug)]
pub(super) struct LakeCatalogList {
    registered: MemoryCatalogProviderList,
    lake: Arc<LakeCatalogProvider>,
}

impl LakeCatalogList {
    pub(super) fn new(lake: Arc<LakeCatalogProvider>) -> Self {
        Self {
            registered: MemoryCatalogProviderList::new(),
            lake,
        }
    }
}

impl CatalogProviderList for LakeCatalogList {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn register_catalog(
        &self,
        name: String,
        catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        self.registered.register_catalog(name, catalog)
    }

    fn catalog_names(&self) -> Vec<String> {
        self.registered.catalog_names()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        if let Some(catalog) = self.registered.catalog(name) {
            return Some(catalog);
        }
        let namespace = self.lake.namespaces.read().ok()?.get(name)?.clone();
        Some(Arc::new(NamespaceCatalog { namespace }))
    }
}

/// A namespace as a catalog: its schemas are its tables (and views, so that a
/// suffix on a view gets an error that says so).
#[derive(Debug)]
struct NamespaceCatalog {
    namespace: Arc<LakeSchemaProvider>,
}

impl CatalogProvider for NamespaceCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        self.namespace.tables.keys().cloned().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let known = self.namespace.tables.contains_key(name)
            || self.namespace.views.contains_key(name)
            || self.namespace.delta.contains_key(name);
        known.then(|| {
            Arc::new(TableFaces {
                namespace: self.namespace.clone(),
                table: name.to_string(),
            }) as Arc<dyn SchemaProvider>
        })
    }
}

/// One table's faces: its versions and metadata tables.
#[derive(Debug)]
struct TableFaces {
    namespace: Arc<LakeSchemaProvider>,
    table: String,
}

impl TableFaces {
    fn name(&self) -> String {
        format!("{}.{}", self.namespace.namespace, self.table)
    }
}

#[async_trait]
impl SchemaProvider for TableFaces {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        MetadataTable::ALL
            .iter()
            .map(|t| t.name().to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(suffix) = TableSuffix::parse(name) else {
            return plan_err!(
                "{}.{name}: {name} is not a version or metadata table of {}; use {SUFFIXES}",
                self.name(),
                self.name()
            );
        };
        let kind = if self.namespace.views.contains_key(&self.table) {
            Some("a view")
        } else if self.namespace.delta.contains_key(&self.table) {
            Some("a Delta table")
        } else {
            None
        };
        if let Some(kind) = kind {
            return plan_err!(
                "{}.{suffix}: {} is {kind}; versions and metadata tables are read from Iceberg tables only",
                self.name(),
                self.name()
            );
        }
        let Some(location) = self.namespace.tables.get(&self.table) else {
            return Ok(None);
        };
        let external = |e: crate::EngineError| DataFusionError::External(Box::new(e));
        let table = self
            .namespace
            .catalog
            .load_at(&self.namespace.ident(&self.table), location)
            .await
            .map_err(|e| external(e.into()))?;
        let provider: Arc<dyn TableProvider> = match (suffix.as_of(), suffix) {
            (Some(as_of), _) => {
                let snapshot = snapshot_for(&table, &as_of).map_err(external)?;
                let store = self.namespace.catalog.store().clone();
                Arc::new(IcebergTable::try_new(table, snapshot, store).map_err(external)?)
            }
            (None, TableSuffix::Metadata(which)) => crate::metadata_tables::provider(&table, which)
                .await
                .map_err(external)?,
            (None, _) => return Ok(None),
        };
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        TableSuffix::parse(name).is_some()
    }
}

/// Refuses a table factor with a version clause: DataFusion 53 plans
/// `t VERSION AS OF 1` as the current `t`. The SQL front door rewrites the
/// clauses it knows into suffixes before planning (`icefjord_sql::time_travel`);
/// anything left is an error here.
#[derive(Debug)]
pub(super) struct RefuseTableVersions;

impl RelationPlanner for RefuseTableVersions {
    fn plan_relation(
        &self,
        relation: TableFactor,
        _context: &mut dyn RelationPlannerContext,
    ) -> DfResult<RelationPlanning> {
        if let TableFactor::Table {
            name,
            version: Some(version),
            ..
        } = &relation
        {
            return plan_err!(
                "{name} {version}: this version clause is not supported here; \
                 use VERSION AS OF <snapshot id>, TIMESTAMP AS OF <time> or \
                 {name}.<{SUFFIXES}>"
            );
        }
        Ok(RelationPlanning::Original(Box::new(relation)))
    }
}
