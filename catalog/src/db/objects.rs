//! The rows of `iceberg_tables`: tables, and the Iceberg views other engines
//! create through the REST catalog, kept as the JDBC catalog keeps them (schema
//! v1: `iceberg_type` `'TABLE'` or `'VIEW'`, `metadata_location` the table's or
//! view's metadata file; Iceberg's `JdbcTableOperations`/`JdbcViewOperations`),
//! so Spark's JDBC catalog and PyIceberg's `SqlCatalog` see the same objects.
//!
//! A name is one table, one Iceberg view or one pipeline view
//! (`icefjord_views`, see `crate::views`), never two: the primary key keeps
//! tables and Iceberg views apart, and every insert or rename here checks that
//! no pipeline view has the name. A row's location only moves by
//! compare-and-swap (tables: [`CatalogDb::swap`]; views:
//! [`CatalogDb::swap_view_location`]).

use sqlx::{AnyConnection, Row};

use super::{is_unique_violation, CatalogDb};
use crate::error::{CatalogError, Result};

/// What a row of `iceberg_tables` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ObjectKind {
    /// `iceberg_type = 'TABLE'`, or NULL as the JDBC catalog's schema v0 left it.
    Table,
    /// `iceberg_type = 'VIEW'`.
    View,
}

impl ObjectKind {
    /// The SQL predicate selecting rows of this kind (a constant, never input).
    fn predicate(self) -> &'static str {
        match self {
            Self::Table => "(iceberg_type = 'TABLE' OR iceberg_type IS NULL)",
            Self::View => "iceberg_type = 'VIEW'",
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Self::Table => "TABLE",
            Self::View => "VIEW",
        }
    }
}

/// No pipeline view has the name `($1 catalog, $2 namespace, $3 name)`.
const NO_PIPELINE_VIEW: &str = "NOT EXISTS (SELECT 1 FROM icefjord_views
    WHERE catalog_name = $1 AND view_namespace = $2 AND view_name = $3)";

impl CatalogDb {
    /// The names of a namespace's objects of one kind, sorted.
    pub async fn list_objects(&self, kind: ObjectKind, namespace: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(&format!(
            "SELECT table_name FROM iceberg_tables
             WHERE catalog_name = $1 AND table_namespace = $2 AND {}
             ORDER BY table_name",
            kind.predicate()
        ))
        .bind(&self.catalog_name)
        .bind(namespace)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        self.first_strings(&rows)
    }

    /// The current metadata location of a table or view, `None` when there is
    /// no such object of that kind.
    pub async fn metadata_location_of(
        &self,
        kind: ObjectKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>> {
        let row = sqlx::query(&format!(
            "SELECT metadata_location FROM iceberg_tables
             WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3 AND {}",
            kind.predicate()
        ))
        .bind(&self.catalog_name)
        .bind(namespace)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        match row {
            None => Ok(None),
            Some(row) => row.try_get::<Option<String>, _>(0).map_err(|e| self.err(e)),
        }
    }

    /// The current metadata location of a table.
    pub async fn metadata_location(&self, namespace: &str, table: &str) -> Result<Option<String>> {
        self.metadata_location_of(ObjectKind::Table, namespace, table)
            .await
    }

    /// Register a new table or view; `false` when the name is taken (by a
    /// table, an Iceberg view or a pipeline view).
    pub async fn insert_object(
        &self,
        kind: ObjectKind,
        namespace: &str,
        name: &str,
        location: &str,
    ) -> Result<bool> {
        self.writable()?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO iceberg_tables
               (catalog_name, table_namespace, table_name, metadata_location,
                previous_metadata_location, iceberg_type)
             SELECT $1, $2, $3, $4, NULL, '{}' WHERE {NO_PIPELINE_VIEW}",
            kind.type_name()
        ))
        .bind(&self.catalog_name)
        .bind(namespace)
        .bind(name)
        .bind(location)
        .execute(&self.pool)
        .await;
        self.one_row_unless_taken(inserted)
    }

    /// Remove a table or view row; `false` when it was not there.
    pub async fn delete_object(
        &self,
        kind: ObjectKind,
        namespace: &str,
        name: &str,
    ) -> Result<bool> {
        self.writable()?;
        let done = sqlx::query(&format!(
            "DELETE FROM iceberg_tables
             WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3 AND {}",
            kind.predicate()
        ))
        .bind(&self.catalog_name)
        .bind(namespace)
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Rename a table or view; `false` when the source is not there or the
    /// destination name is taken.
    pub async fn rename_object(
        &self,
        kind: ObjectKind,
        from: (&str, &str),
        to: (&str, &str),
    ) -> Result<bool> {
        self.writable()?;
        let done = sqlx::query(&format!(
            "UPDATE iceberg_tables SET table_namespace = $2, table_name = $3
             WHERE catalog_name = $1 AND table_namespace = $4 AND table_name = $5 AND {}
               AND {NO_PIPELINE_VIEW}",
            kind.predicate()
        ))
        .bind(&self.catalog_name)
        .bind(to.0)
        .bind(to.1)
        .bind(from.0)
        .bind(from.1)
        .execute(&self.pool)
        .await;
        self.one_row_unless_taken(done)
    }

    /// Whether a statement that claims a name changed its one row; a name
    /// that another row holds (unique violation) is `false`, not an error.
    fn one_row_unless_taken(
        &self,
        result: std::result::Result<sqlx::any::AnyQueryResult, sqlx::Error>,
    ) -> Result<bool> {
        match result {
            Ok(done) => Ok(done.rows_affected() == 1),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Move an Iceberg view from `expected` to `new`; `false` when another
    /// writer moved it first (or it is gone).
    pub async fn swap_view_location(
        &self,
        namespace: &str,
        name: &str,
        expected: &str,
        new: &str,
    ) -> Result<bool> {
        self.writable()?;
        let done = sqlx::query(
            "UPDATE iceberg_tables SET metadata_location = $1, previous_metadata_location = $2
             WHERE catalog_name = $3 AND table_namespace = $4 AND table_name = $5
               AND iceberg_type = 'VIEW' AND metadata_location = $2",
        )
        .bind(new)
        .bind(expected)
        .bind(&self.catalog_name)
        .bind(namespace)
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() == 1)
    }
}

/// What holds a name, as [`CatalogError::NameTaken`] says it.
const AN_ICEBERG_VIEW: &str =
    "an Iceberg view (created by another engine through the REST catalog)";
const A_PIPELINE_VIEW: &str = "a view a pipeline publishes";
const A_TABLE: &str = "a table";

/// Refuse writing `kind` under `namespace.name` when another kind of object
/// holds the name, inside the commit's transaction. A table row where a table
/// is created is not refused here: that is a lost race the commit path redoes.
pub(super) async fn check_name_free(
    db: &CatalogDb,
    conn: &mut AnyConnection,
    writing: WriteKind,
    namespace: &str,
    name: &str,
) -> Result<()> {
    let rows = sqlx::query(
        "SELECT COALESCE(iceberg_type, 'TABLE') FROM iceberg_tables
         WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3
         UNION ALL
         SELECT 'PIPELINE' FROM icefjord_views
         WHERE catalog_name = $1 AND view_namespace = $2 AND view_name = $3",
    )
    .bind(&db.catalog_name)
    .bind(namespace)
    .bind(name)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| db.err(e))?;
    for held in db.first_strings(&rows)? {
        let by = match (writing, held.as_str()) {
            (_, "VIEW") => AN_ICEBERG_VIEW,
            (WriteKind::Table, "PIPELINE") => A_PIPELINE_VIEW,
            (WriteKind::PipelineView, "TABLE") => A_TABLE,
            _ => continue,
        };
        return Err(CatalogError::NameTaken {
            name: format!("{namespace}.{name}"),
            by,
        });
    }
    Ok(())
}

/// What a commit writes under a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WriteKind {
    Table,
    PipelineView,
}
