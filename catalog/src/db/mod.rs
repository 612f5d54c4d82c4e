//! The catalog database: the Iceberg SQL/JDBC catalog tables (`iceberg_tables`,
//! `iceberg_namespace_properties`, JDBC catalog schema v1 with `iceberg_type`), so
//! PyIceberg's `SqlCatalog` and Spark's JDBC catalog open the same database. SQLite by default, PostgreSQL behind the same SQL.
//!
//! Invariant: a table's `metadata_location` only ever moves by compare-and-swap
//! ([`CatalogDb::swap`]): an update names the location it read, and changes nothing
//! unless every named row still holds it. A multi-table swap is one transaction.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{install_default_drivers, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row};

mod objects;
mod refs;

pub(crate) use objects::ObjectKind;
use objects::WriteKind;
pub(crate) use refs::Move;

use crate::config::CatalogUri;
use crate::error::{CatalogError, Result};

const SCHEMA: [&str; 6] = [
    "CREATE TABLE IF NOT EXISTS iceberg_tables (
        catalog_name VARCHAR(255) NOT NULL,
        table_namespace VARCHAR(255) NOT NULL,
        table_name VARCHAR(255) NOT NULL,
        metadata_location VARCHAR(1000),
        previous_metadata_location VARCHAR(1000),
        iceberg_type VARCHAR(5),
        PRIMARY KEY (catalog_name, table_namespace, table_name))",
    "CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (
        catalog_name VARCHAR(255) NOT NULL,
        namespace VARCHAR(255) NOT NULL,
        property_key VARCHAR(255) NOT NULL,
        property_value VARCHAR(1000),
        PRIMARY KEY (catalog_name, namespace, property_key))",
    // Ours (DESIGN §4): SQL views published by pipelines, see `crate::views`.
    "CREATE TABLE IF NOT EXISTS icefjord_views (
        catalog_name VARCHAR(255) NOT NULL,
        view_namespace VARCHAR(255) NOT NULL,
        view_name VARCHAR(255) NOT NULL,
        view_sql TEXT NOT NULL,
        owner VARCHAR(1000),
        commit_id VARCHAR(255),
        PRIMARY KEY (catalog_name, view_namespace, view_name))",
    // Ours: the Delta version each Delta table's last commit published, see `crate::delta`.
    "CREATE TABLE IF NOT EXISTS icefjord_delta_tables (
        catalog_name VARCHAR(255) NOT NULL,
        table_namespace VARCHAR(255) NOT NULL,
        table_name VARCHAR(255) NOT NULL,
        location VARCHAR(1000) NOT NULL,
        version BIGINT NOT NULL,
        commit_id VARCHAR(255),
        PRIMARY KEY (catalog_name, table_namespace, table_name))",
    // Ours: catalog-wide branches and tags (see `refs`). A ref's rows live in
    // the tables above under the catalog name `<catalog>@<ref>`.
    "CREATE TABLE IF NOT EXISTS icefjord_refs (
        catalog_name VARCHAR(255) NOT NULL,
        ref_name VARCHAR(255) NOT NULL,
        ref_type VARCHAR(6) NOT NULL,
        created_from VARCHAR(255) NOT NULL,
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (catalog_name, ref_name))",
    // Ours: each branch's merge base, the state of every object when the branch
    // was created or last merged.
    "CREATE TABLE IF NOT EXISTS icefjord_ref_bases (
        catalog_name VARCHAR(255) NOT NULL,
        ref_name VARCHAR(255) NOT NULL,
        kind VARCHAR(5) NOT NULL,
        object_namespace VARCHAR(255) NOT NULL,
        object_name VARCHAR(255) NOT NULL,
        base TEXT NOT NULL,
        version BIGINT,
        PRIMARY KEY (catalog_name, ref_name, kind, object_namespace, object_name))",
];

/// One row move of a compare-and-swap.
#[derive(Clone, Debug)]
pub(crate) struct Swap {
    pub namespace: String,
    pub table: String,
    pub expected: String,
    pub new: String,
    /// The table is not in the catalog yet: the swap registers it (and loses if
    /// another writer registered it first).
    pub create: bool,
}

/// A view definition to publish with a swap.
#[derive(Clone, Debug)]
pub(crate) struct ViewRow {
    pub namespace: String,
    pub name: String,
    pub sql: String,
    pub owner: Option<String>,
    pub commit_id: String,
}

/// A Delta table's published version to record with a swap.
#[derive(Clone, Debug)]
pub(crate) struct DeltaRow {
    pub namespace: String,
    pub name: String,
    pub location: String,
    pub version: i64,
    pub commit_id: String,
}

/// What one row of [`CatalogDb::state`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StateKind {
    Table,
    View,
    Delta,
}

/// One row of [`CatalogDb::state`]: `text` is a metadata location, a view's SQL or
/// a Delta table's location; `version` is the Delta version.
#[derive(Clone, Debug)]
pub(crate) struct StateRow {
    pub kind: StateKind,
    pub namespace: String,
    pub name: String,
    pub text: String,
    pub version: Option<i64>,
}

/// Why a swap did not apply.
#[derive(Debug)]
pub(crate) enum SwapError {
    /// A row no longer held the expected location: nothing was changed.
    Lost { table: String },
    /// The database failed before the commit was sent: nothing was changed.
    Failed(CatalogError),
    /// The commit was sent but its outcome is unknown (connection lost).
    Ambiguous(CatalogError),
}

/// A connection pool on the catalog database.
#[derive(Clone, Debug)]
pub(crate) struct CatalogDb {
    pool: AnyPool,
    uri: CatalogUri,
    /// The rows this handle reads and moves: the lake's catalog name for main,
    /// `<catalog>@<ref>` for a branch or tag (see [`refs`]).
    catalog_name: String,
    /// The lake's catalog name (main's rows), where refs are recorded.
    main_name: String,
    /// Set on a tag's handle: every write is refused with this tag's name.
    read_only: Option<String>,
    pub faults: Arc<Faults>,
}

impl CatalogDb {
    /// Connect and create the catalog tables when missing.
    pub async fn connect(uri: &CatalogUri, catalog_name: &str) -> Result<Self> {
        install_default_drivers();
        let is_sqlite = matches!(uri, CatalogUri::Sqlite(_));
        // One plain connection first: a corrupt file or a refused login fails here at
        // once, instead of the pool retrying it until its acquire timeout.
        let mut probe = AnyConnection::connect(&uri.connect_url())
            .await
            .map_err(|e| CatalogError::database(uri, e))?;
        if is_sqlite {
            probe
                .execute("PRAGMA journal_mode = WAL")
                .await
                .map_err(|e| CatalogError::database(uri, e))?;
        }
        for statement in SCHEMA {
            probe
                .execute(statement)
                .await
                .map_err(|e| CatalogError::database(uri, e))?;
        }
        let _ = probe.close().await;
        let pool = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if is_sqlite {
                        conn.execute("PRAGMA busy_timeout = 30000").await?;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                    }
                    Ok(())
                })
            })
            .connect(&uri.connect_url())
            .await
            .map_err(|e| CatalogError::database(uri, e))?;
        Ok(Self {
            pool,
            uri: uri.clone(),
            catalog_name: catalog_name.to_string(),
            main_name: catalog_name.to_string(),
            read_only: None,
            faults: Arc::new(Faults::from_env()),
        })
    }

    pub(crate) fn err(&self, e: sqlx::Error) -> CatalogError {
        CatalogError::database(&self.uri, e)
    }

    /// The first column of each row, as text.
    fn first_strings(&self, rows: &[sqlx::any::AnyRow]) -> Result<Vec<String>> {
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(|e| self.err(e)))
            .collect()
    }

    pub async fn list_namespaces(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT table_namespace FROM iceberg_tables WHERE catalog_name = $1
             UNION
             SELECT DISTINCT namespace FROM iceberg_namespace_properties WHERE catalog_name = $1
             UNION
             SELECT DISTINCT view_namespace FROM icefjord_views WHERE catalog_name = $1
             UNION
             SELECT DISTINCT table_namespace FROM icefjord_delta_tables WHERE catalog_name = $1
             ORDER BY 1",
        )
        .bind(&self.catalog_name)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        self.first_strings(&rows)
    }

    pub async fn namespace_properties(
        &self,
        namespace: &str,
    ) -> Result<Option<BTreeMap<String, String>>> {
        let rows = sqlx::query(
            "SELECT property_key, property_value FROM iceberg_namespace_properties
             WHERE catalog_name = $1 AND namespace = $2",
        )
        .bind(&self.catalog_name)
        .bind(namespace)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        if rows.is_empty()
            && self
                .list_objects(ObjectKind::Table, namespace)
                .await?
                .is_empty()
        {
            return Ok(None);
        }
        let mut props = BTreeMap::new();
        for row in rows {
            let key: String = row.try_get(0).map_err(|e| self.err(e))?;
            let value: Option<String> = row.try_get(1).map_err(|e| self.err(e))?;
            if key != crate::catalog::NAMESPACE_MARKER {
                props.insert(key, value.unwrap_or_default());
            }
        }
        Ok(Some(props))
    }

    /// Create a namespace; `false` when it existed already.
    pub async fn create_namespace(
        &self,
        namespace: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<bool> {
        self.writable()?;
        if self.namespace_properties(namespace).await?.is_some() {
            return Ok(false);
        }
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        // PyIceberg marks namespaces with an `exists` property; we do the same.
        let marker = (
            crate::catalog::NAMESPACE_MARKER.to_string(),
            "true".to_string(),
        );
        for (key, value) in std::iter::once((&marker.0, &marker.1)).chain(properties.iter()) {
            let inserted = sqlx::query(
                "INSERT INTO iceberg_namespace_properties
                 (catalog_name, namespace, property_key, property_value) VALUES ($1, $2, $3, $4)",
            )
            .bind(&self.catalog_name)
            .bind(namespace)
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await;
            if let Err(e) = inserted {
                if is_unique_violation(&e) {
                    return Ok(false);
                }
                return Err(self.err(e));
            }
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(true)
    }

    /// Set `updates` and delete `removals` of a namespace's properties in one
    /// transaction; returns the removals that were not there.
    pub async fn update_namespace_properties(
        &self,
        namespace: &str,
        updates: &BTreeMap<String, String>,
        removals: &[String],
    ) -> Result<Vec<String>> {
        self.writable()?;
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let mut missing = Vec::new();
        for key in removals {
            let done = sqlx::query(
                "DELETE FROM iceberg_namespace_properties
                 WHERE catalog_name = $1 AND namespace = $2 AND property_key = $3",
            )
            .bind(&self.catalog_name)
            .bind(namespace)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
            if done.rows_affected() == 0 {
                missing.push(key.clone());
            }
        }
        for (key, value) in updates {
            sqlx::query(
                "INSERT INTO iceberg_namespace_properties
                 (catalog_name, namespace, property_key, property_value) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (catalog_name, namespace, property_key)
                 DO UPDATE SET property_value = excluded.property_value",
            )
            .bind(&self.catalog_name)
            .bind(namespace)
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(missing)
    }

    pub async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        self.writable()?;
        sqlx::query(
            "DELETE FROM iceberg_namespace_properties WHERE catalog_name = $1 AND namespace = $2",
        )
        .bind(&self.catalog_name)
        .bind(namespace)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every table's metadata location, every view's SQL and every Delta table's
    /// published version, read by ONE statement so that they are one consistent
    /// state of the catalog (a multi-table commit is either wholly in it or not at all).
    pub async fn state(&self) -> Result<Vec<StateRow>> {
        self.state_in(&self.catalog_name).await
    }

    /// [`Self::state`] of the rows under another catalog name (a ref's).
    pub async fn state_in(&self, catalog_name: &str) -> Result<Vec<StateRow>> {
        let rows = sqlx::query(
            "SELECT 'table', table_namespace, table_name, metadata_location, CAST(NULL AS BIGINT)
             FROM iceberg_tables
             WHERE catalog_name = $1 AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)
               AND metadata_location IS NOT NULL
             UNION ALL
             SELECT 'view', view_namespace, view_name, view_sql, CAST(NULL AS BIGINT)
             FROM icefjord_views WHERE catalog_name = $1
             UNION ALL
             SELECT 'delta', table_namespace, table_name, location, version
             FROM icefjord_delta_tables WHERE catalog_name = $1",
        )
        .bind(catalog_name)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                let kind = match r.try_get::<String, _>(0).map_err(|e| self.err(e))?.as_str() {
                    "view" => StateKind::View,
                    "delta" => StateKind::Delta,
                    _ => StateKind::Table,
                };
                Ok(StateRow {
                    kind,
                    namespace: r.try_get::<String, _>(1).map_err(|e| self.err(e))?,
                    name: r.try_get::<String, _>(2).map_err(|e| self.err(e))?,
                    text: r.try_get::<String, _>(3).map_err(|e| self.err(e))?,
                    version: r.try_get::<Option<i64>, _>(4).map_err(|e| self.err(e))?,
                })
            })
            .collect()
    }

    pub async fn list_views(&self, namespace: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT view_name FROM icefjord_views
             WHERE catalog_name = $1 AND view_namespace = $2 ORDER BY view_name",
        )
        .bind(&self.catalog_name)
        .bind(namespace)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        self.first_strings(&rows)
    }

    /// A Delta table's location and published version.
    pub async fn delta_table(&self, namespace: &str, name: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query(
            "SELECT location, version FROM icefjord_delta_tables
             WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3",
        )
        .bind(&self.catalog_name)
        .bind(namespace)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        row.map(|r| {
            Ok((
                r.try_get::<String, _>(0).map_err(|e| self.err(e))?,
                r.try_get::<i64, _>(1).map_err(|e| self.err(e))?,
            ))
        })
        .transpose()
    }

    /// A view's SQL, owner and the commit that last published it.
    pub async fn view(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<(String, Option<String>, Option<String>)>> {
        let row = sqlx::query(
            "SELECT view_sql, owner, commit_id FROM icefjord_views
             WHERE catalog_name = $1 AND view_namespace = $2 AND view_name = $3",
        )
        .bind(&self.catalog_name)
        .bind(namespace)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        row.map(|r| {
            Ok((
                r.try_get::<String, _>(0).map_err(|e| self.err(e))?,
                r.try_get::<Option<String>, _>(1).map_err(|e| self.err(e))?,
                r.try_get::<Option<String>, _>(2).map_err(|e| self.err(e))?,
            ))
        })
        .transpose()
    }

    /// Move every table row of `swaps`, upsert every view of `views` and every Delta
    /// version of `deltas`, all in one transaction (see the module docs).
    pub async fn swap(
        &self,
        swaps: &[Swap],
        views: &[ViewRow],
        deltas: &[DeltaRow],
    ) -> Result<(), SwapError> {
        self.writable().map_err(SwapError::Failed)?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| SwapError::Failed(self.err(e)))?;
        for swap in swaps {
            if swap.create {
                // An Iceberg view or a pipeline view holding the name is no
                // race to retry: refused.
                objects::check_name_free(
                    self,
                    &mut tx,
                    WriteKind::Table,
                    &swap.namespace,
                    &swap.table,
                )
                .await
                .map_err(SwapError::Failed)?;
            }
            let statement = match swap.create {
                true => sqlx::query(
                    "INSERT INTO iceberg_tables
                       (catalog_name, table_namespace, table_name, metadata_location,
                        previous_metadata_location, iceberg_type)
                     VALUES ($1, $2, $3, $4, NULL, 'TABLE')
                     ON CONFLICT (catalog_name, table_namespace, table_name) DO NOTHING",
                )
                .bind(&self.catalog_name)
                .bind(&swap.namespace)
                .bind(&swap.table)
                .bind(&swap.new),
                false => sqlx::query(
                    "UPDATE iceberg_tables SET metadata_location = $1, previous_metadata_location = $2
                     WHERE catalog_name = $3 AND table_namespace = $4 AND table_name = $5
                       AND metadata_location = $6",
                )
                .bind(&swap.new)
                .bind(&swap.expected)
                .bind(&self.catalog_name)
                .bind(&swap.namespace)
                .bind(&swap.table)
                .bind(&swap.expected),
            };
            let done = statement
                .execute(&mut *tx)
                .await
                .map_err(|e| SwapError::Failed(self.err(e)))?;
            if done.rows_affected() != 1 {
                // Dropping the transaction rolls it back.
                return Err(SwapError::Lost {
                    table: format!("{}.{}", swap.namespace, swap.table),
                });
            }
        }
        for view in views {
            objects::check_name_free(
                self,
                &mut tx,
                WriteKind::PipelineView,
                &view.namespace,
                &view.name,
            )
            .await
            .map_err(SwapError::Failed)?;
            sqlx::query(
                "INSERT INTO icefjord_views
                   (catalog_name, view_namespace, view_name, view_sql, owner, commit_id)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (catalog_name, view_namespace, view_name)
                 DO UPDATE SET view_sql = excluded.view_sql, owner = excluded.owner,
                               commit_id = excluded.commit_id",
            )
            .bind(&self.catalog_name)
            .bind(&view.namespace)
            .bind(&view.name)
            .bind(&view.sql)
            .bind(&view.owner)
            .bind(&view.commit_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| SwapError::Failed(self.err(e)))?;
        }
        for delta in deltas {
            sqlx::query(
                "INSERT INTO icefjord_delta_tables
                   (catalog_name, table_namespace, table_name, location, version, commit_id)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (catalog_name, table_namespace, table_name)
                 DO UPDATE SET location = excluded.location, version = excluded.version,
                               commit_id = excluded.commit_id",
            )
            .bind(&self.catalog_name)
            .bind(&delta.namespace)
            .bind(&delta.name)
            .bind(&delta.location)
            .bind(delta.version)
            .bind(&delta.commit_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| SwapError::Failed(self.err(e)))?;
        }
        if self.faults.take_lost_commit_response() {
            tx.commit()
                .await
                .map_err(|e| SwapError::Failed(self.err(e)))?;
            return Err(SwapError::Ambiguous(CatalogError::Database {
                location: self.uri.to_string(),
                message: "connection lost while committing (injected fault)".into(),
                retryable: true,
            }));
        }
        tx.commit()
            .await
            .map_err(|e| SwapError::Ambiguous(self.err(e)))
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db.message().contains("UNIQUE constraint failed")
                || db.code().as_deref() == Some("23505")
        }
        _ => false,
    }
}

/// Fault injection for tests of the commit protocol: make the next swaps land in
/// the database but report a lost connection, as a dropped commit response would.
/// Armed per catalog ([`crate::LakeCatalog::inject_lost_commit_responses`]) or, for
/// a whole process, by the environment variable `ICEFJORD_FAULT_LOST_COMMIT_RESPONSES`.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    lost_commit_responses: AtomicU32,
}

impl Faults {
    pub fn from_env() -> Self {
        let n = std::env::var("ICEFJORD_FAULT_LOST_COMMIT_RESPONSES")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0);
        Self {
            lost_commit_responses: AtomicU32::new(n),
        }
    }

    pub fn inject_lost_commit_responses(&self, count: u32) {
        self.lost_commit_responses.store(count, Ordering::SeqCst);
    }

    fn take_lost_commit_response(&self) -> bool {
        self.lost_commit_responses
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}
