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

/// `datafusion-pg-catalog` with one correction: its `pg_namespace` numbers
/// every schema from a counter, `pg_catalog` included, so the built-in types
/// (`typnamespace = 11`) belong to no namespace and a driver's
/// `pg_type JOIN pg_namespace` (Npgsql's type loading) finds no type. Here
/// `pg_catalog` has OID 11, as in PostgreSQL.
#[derive(Debug)]
struct LakePgCatalog {
    inner: Arc<dyn SchemaProvider>,
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
        let table = self.inner.table(name).await?;
        if !name.eq_ignore_ascii_case("pg_namespace") {
            return Ok(table);
        }
        Ok(table.map(|inner| Arc::new(FixedNamespaceOids { inner }) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// `pg_namespace` with PostgreSQL's OID for `pg_catalog`.
#[derive(Debug)]
struct FixedNamespaceOids {
    inner: Arc<dyn TableProvider>,
}

#[async_trait]
impl TableProvider for FixedNamespaceOids {
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
        let plan = self.inner.scan(state, None, &[], None).await?;
        let batches = collect(plan, state.task_ctx()).await?;
        let fixed = batches
            .iter()
            .map(fix_namespace_oids)
            .collect::<Result<Vec<_>, _>>()?;
        MemTable::try_new(self.schema(), vec![fixed])?
            .scan(state, projection, filters, limit)
            .await
    }
}

fn fix_namespace_oids(batch: &RecordBatch) -> Result<RecordBatch, DataFusionError> {
    let (Some(oids), Some(names)) = (
        batch.column(0).as_any().downcast_ref::<Int32Array>(),
        batch.column(1).as_any().downcast_ref::<StringArray>(),
    ) else {
        return Ok(batch.clone());
    };
    let fixed: Int32Array = oids
        .iter()
        .zip(names.iter())
        .map(|(oid, name)| match name {
            Some("pg_catalog") => Some(PG_CATALOG_NAMESPACE_OID),
            _ => oid,
        })
        .collect();
    let mut columns = batch.columns().to_vec();
    columns[0] = Arc::new(fixed);
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
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
