//! PostgreSQL's system catalog as BI tools and drivers query it on connect:
//! `pg_catalog.*` (`pg_namespace`, `pg_class`, `pg_attribute`, `pg_type`,
//! `pg_range`, `pg_enum`, `pg_proc`, `pg_settings`, `pg_database`, …) and the
//! functions they call (`current_schema()`, `has_table_privilege`, …), from
//! `datafusion-pg-catalog`: lake namespaces are schemas, Iceberg and Delta
//! tables are tables (`relkind 'r'`), published views are views (`'v'`).
//! `information_schema` is DataFusion's own.
//!
//! # Stable OIDs
//! Clients look a relation up by name in one query and read its columns by OID
//! in the next (psql's `\d`, pgjdbc's `getColumns`), each in its own session.
//! So one [`PgCatalog`] serves the whole server: one OID assignment, kept for
//! the server's life. Its view of the lake is a server-wide session refreshed
//! each time a catalog table is built, so `pg_class` lists what was committed
//! up to that moment.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProviderList, MemTable, SchemaProvider, Session};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::{
    self as pg, format_type, has_privilege_udf, pg_get_expr_udf, quote_ident_udf,
    PgCatalogSchemaProvider, PgCatalogStaticTables,
};
use icefjord_catalog::{LakeCatalog, CATALOG_NAME};
use icefjord_engine::LakeSession;

use crate::error::Result;

/// The PostgreSQL release whose catalog and behaviour we emulate; clients
/// (pgjdbc, Npgsql, psql) pick their queries by it.
pub const SERVER_VERSION: &str = "16.0";

/// `pg_catalog`'s schema name.
const SCHEMA: &str = "pg_catalog";

/// `version()` as PostgreSQL words it (clients parse the leading
/// `PostgreSQL <major>.<minor>`).
pub fn version_string() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (icefjord {}, Apache DataFusion {}) on {}-{}",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION,
        std::env::consts::ARCH,
        std::env::consts::OS,
    )
}

/// The lake as `datafusion-pg-catalog` enumerates it: a long-lived session,
/// refreshed whenever an enumeration starts.
#[derive(Clone)]
struct LakeCatalogInfo {
    session: LakeSession,
}

impl fmt::Debug for LakeCatalogInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LakeCatalogInfo")
    }
}

impl LakeCatalogInfo {
    fn list(&self) -> Arc<dyn CatalogProviderList> {
        self.session.context().state().catalog_list().clone()
    }
}

fn external(e: icefjord_engine::EngineError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl CatalogInfo for LakeCatalogInfo {
    async fn catalog_names(&self) -> Result<Vec<String>, DataFusionError> {
        // Every enumeration (pg_class, pg_namespace, …) starts here.
        self.session.refresh().await.map_err(external)?;
        CatalogInfo::catalog_names(&self.list()).await
    }

    async fn schema_names(&self, catalog: &str) -> Result<Option<Vec<String>>, DataFusionError> {
        CatalogInfo::schema_names(&self.list(), catalog).await
    }

    async fn table_names(
        &self,
        catalog: &str,
        schema: &str,
    ) -> Result<Option<Vec<String>>, DataFusionError> {
        CatalogInfo::table_names(&self.list(), catalog, schema).await
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<SchemaRef>, DataFusionError> {
        CatalogInfo::table_schema(&self.list(), catalog, schema, table).await
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<TableType>, DataFusionError> {
        CatalogInfo::table_type(&self.list(), catalog, schema, table).await
    }
}

/// PostgreSQL's fixed OID of the `pg_catalog` namespace; the static
/// `pg_type`, `pg_proc`, … rows name it as their `typnamespace`.
const PG_CATALOG_NAMESPACE_OID: i32 = 11;
/// PostgreSQL's fixed OID of `public`.
const PUBLIC_NAMESPACE_OID: i32 = 2200;
/// Our other namespaces get OIDs from here, below the range
/// `datafusion-pg-catalog` numbers relations from (16384).
const FIRST_NAMESPACE_OID: i32 = 12000;

/// Namespace OIDs by name, kept for the server's life.
#[derive(Debug, Default)]
struct NamespaceOids {
    by_name: std::sync::Mutex<std::collections::HashMap<String, i32>>,
}

impl NamespaceOids {
    fn of(&self, name: &str) -> i32 {
        match name {
            "pg_catalog" => return PG_CATALOG_NAMESPACE_OID,
            "public" => return PUBLIC_NAMESPACE_OID,
            _ => {}
        }
        let Ok(mut by_name) = self.by_name.lock() else {
            return FIRST_NAMESPACE_OID;
        };
        let next = FIRST_NAMESPACE_OID + by_name.len() as i32;
        *by_name.entry(name.to_string()).or_insert(next)
    }
}

/// `datafusion-pg-catalog` with stable namespace OIDs.
///
/// It numbers schemas from a counter and forgets their numbers whenever
/// `pg_attribute` is built, so a schema's OID changes between (and even
/// within) queries, and `pg_class.relnamespace` may not match
/// `pg_namespace.oid` (pgjdbc's `getColumns` joins the three tables in one
/// query). Its `pg_catalog` is not PostgreSQL's OID 11 either, so the built-in
/// types (`typnamespace = 11`) belong to no namespace and a driver's
/// `pg_type JOIN pg_namespace` (Npgsql's type loading) finds none.
///
/// Here every catalog table is built under one lock and materialised;
/// `pg_class` is built right after `pg_namespace` (so the library's schema
/// numbers agree between the two), and both are renumbered by name
/// ([`NamespaceOids`]): `pg_catalog` 11, `public` 2200, the lake's namespaces
/// from 12000, for the server's life. Relation OIDs are the library's, which
/// it keeps while a relation exists.
#[derive(Debug)]
struct LakePgCatalog {
    inner: Arc<dyn SchemaProvider>,
    namespaces: Arc<NamespaceOids>,
    builds: Arc<tokio::sync::Mutex<()>>,
}

#[async_trait]
impl SchemaProvider for LakePgCatalog {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let Some(table) = self.inner.table(name).await? else {
            return Ok(None);
        };
        let kind = match name.to_ascii_lowercase().as_str() {
            "pg_namespace" => CatalogTable::Namespace,
            "pg_class" => CatalogTable::Class {
                namespaces: self.inner.table("pg_namespace").await?.ok_or_else(|| {
                    DataFusionError::Internal("pg_catalog has no pg_namespace".into())
                })?,
            },
            _ => CatalogTable::Other,
        };
        Ok(Some(Arc::new(StableOids {
            inner: table,
            kind,
            namespaces: self.namespaces.clone(),
            builds: self.builds.clone(),
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

#[derive(Debug)]
enum CatalogTable {
    Namespace,
    /// `pg_class`, with the `pg_namespace` to build just before it.
    Class {
        namespaces: Arc<dyn TableProvider>,
    },
    Other,
}

/// One catalog table, built under the lock and renumbered (see
/// [`LakePgCatalog`]).
#[derive(Debug)]
struct StableOids {
    inner: Arc<dyn TableProvider>,
    kind: CatalogTable,
    namespaces: Arc<NamespaceOids>,
    builds: Arc<tokio::sync::Mutex<()>>,
}

async fn build(
    table: &Arc<dyn TableProvider>,
    state: &dyn Session,
) -> Result<Vec<RecordBatch>, DataFusionError> {
    let plan = table.scan(state, None, &[], None).await?;
    collect(plan, state.task_ctx()).await
}

/// `name` → OID from `pg_namespace` batches (the library's numbering).
fn namespace_names(batches: &[RecordBatch]) -> std::collections::HashMap<i32, String> {
    let mut names = std::collections::HashMap::new();
    for batch in batches {
        if let (Some(oids), Some(nspnames)) = (
            batch.column(0).as_any().downcast_ref::<Int32Array>(),
            batch.column(1).as_any().downcast_ref::<StringArray>(),
        ) {
            for (oid, name) in oids.iter().zip(nspnames.iter()) {
                if let (Some(oid), Some(name)) = (oid, name) {
                    names.insert(oid, name.to_string());
                }
            }
        }
    }
    names
}

/// Replace column `index` (namespace OIDs in the library's numbering) by
/// stable ones; `name_of` maps the library's OID to the namespace's name.
fn renumber(
    batch: &RecordBatch,
    index: usize,
    name_of: impl Fn(i32) -> Option<String>,
    namespaces: &NamespaceOids,
) -> Result<RecordBatch, DataFusionError> {
    let Some(oids) = batch.column(index).as_any().downcast_ref::<Int32Array>() else {
        return Ok(batch.clone());
    };
    let stable: Int32Array = oids
        .iter()
        .map(|oid| oid.map(|oid| name_of(oid).map_or(oid, |name| namespaces.of(&name))))
        .collect();
    let mut columns = batch.columns().to_vec();
    columns[index] = Arc::new(stable);
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

#[async_trait]
impl TableProvider for StableOids {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        let batches = {
            let _build = self.builds.lock().await;
            match &self.kind {
                CatalogTable::Other => build(&self.inner, state).await?,
                CatalogTable::Namespace => {
                    let batches = build(&self.inner, state).await?;
                    let names = namespace_names(&batches);
                    batches
                        .iter()
                        .map(|b| renumber(b, 0, |oid| names.get(&oid).cloned(), &self.namespaces))
                        .collect::<Result<Vec<_>, _>>()?
                }
                CatalogTable::Class { namespaces } => {
                    let names = namespace_names(&build(namespaces, state).await?);
                    build(&self.inner, state)
                        .await?
                        .iter()
                        // pg_class: oid, relname, relnamespace, …
                        .map(|b| renumber(b, 2, |oid| names.get(&oid).cloned(), &self.namespaces))
                        .collect::<Result<Vec<_>, _>>()?
                }
            }
        };
        MemTable::try_new(self.schema(), vec![batches])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// The server's one `pg_catalog` (see the module docs).
#[derive(Clone)]
pub struct PgCatalog {
    schema: Arc<dyn SchemaProvider>,
    statics: Arc<PgCatalogStaticTables>,
}

impl PgCatalog {
    pub async fn new(catalog: &LakeCatalog) -> Result<Self> {
        let session = LakeSession::new(catalog).await?;
        let statics = Arc::new(PgCatalogStaticTables::try_new()?);
        let info = LakeCatalogInfo {
            session: session.clone(),
        };
        let schema: Arc<dyn SchemaProvider> = Arc::new(LakePgCatalog {
            inner: Arc::new(PgCatalogSchemaProvider::try_new(
                info,
                statics.clone(),
                EmptyContextProvider,
            )?),
            namespaces: Arc::default(),
            builds: Arc::default(),
        });
        let pg_catalog = Self { schema, statics };
        // The enumerating session lists pg_catalog among the schemas, as
        // PostgreSQL's pg_namespace does.
        pg_catalog.register(session.context())?;
        Ok(pg_catalog)
    }

    /// Register `pg_catalog` and the PostgreSQL functions in `ctx` (the list
    /// `datafusion_pg_catalog::setup_pg_catalog` registers, over our shared
    /// schema, plus `version()`).
    pub fn register(&self, ctx: &SessionContext) -> Result<()> {
        let catalog = ctx.catalog(CATALOG_NAME).ok_or_else(|| {
            DataFusionError::Internal(format!("the session has no catalog {CATALOG_NAME}"))
        })?;
        catalog.register_schema(SCHEMA, self.schema.clone())?;
        for udf in [
            pg::create_current_database_udf(),
            pg::create_current_schema_udf(),
            pg::create_current_schemas_udf(),
            pg::create_pg_get_userbyid_udf(),
            has_privilege_udf::create_has_privilege_udf("has_table_privilege"),
            has_privilege_udf::create_has_privilege_udf("has_schema_privilege"),
            has_privilege_udf::create_has_privilege_udf("has_database_privilege"),
            has_privilege_udf::create_has_privilege_udf("has_any_column_privilege"),
            pg::create_pg_table_is_visible(),
            format_type::create_format_type_udf(),
            pg::create_session_user_udf(),
            pg_get_expr_udf::create_pg_get_expr_udf(),
            pg::create_pg_get_partkeydef_udf(),
            pg::create_pg_relation_is_publishable_udf(),
            pg::create_pg_get_statisticsobjdef_columns_udf(),
            pg::create_pg_encoding_to_char_udf(),
            pg::create_pg_backend_pid_udf(),
            pg::create_pg_relation_size_udf(),
            pg::create_pg_total_relation_size_udf(),
            pg::create_pg_stat_get_numscans(),
            pg::create_pg_get_constraintdef(),
            pg::create_pg_get_partition_ancestors_udf(),
            quote_ident_udf::create_quote_ident_udf(),
            quote_ident_udf::create_parse_ident_udf(),
            version_udf(),
        ] {
            ctx.register_udf(udf);
        }
        ctx.register_udtf("pg_get_keywords", self.statics.pg_get_keywords.clone());
        Ok(())
    }
}

fn version_udf() -> ScalarUDF {
    let text = version_string();
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))
        }),
    )
}
