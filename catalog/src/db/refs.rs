//! Catalog-wide branches and tags in the catalog database (see
//! [`crate::refs`] for the protocol).
//!
//! A ref's rows are copies of the catalog's own rows (`iceberg_tables`,
//! `iceberg_namespace_properties`, `icefjord_views`, `icefjord_delta_tables`)
//! under the catalog name `<catalog>@<ref>`: every query of [`CatalogDb`]
//! works on a ref unchanged, creating one copies pointers (O(tables), never
//! data), and readers of the JDBC/SQL catalog under the plain name (PyIceberg's
//! `SqlCatalog`, Spark's JDBC catalog) see main only.

use sqlx::{Any, Row, Transaction};

use super::{is_unique_violation, CatalogDb, StateKind, StateRow, SwapError};
use crate::config::CatalogUri;
use crate::error::{CatalogError, Result};
use crate::refs::RefKind;

/// One row of `icefjord_refs`.
#[derive(Clone, Debug)]
pub struct RefRow {
    pub name: String,
    pub kind: RefKind,
    pub created_from: String,
    pub created_at_ms: i64,
}

/// One object move of a merge: from `expected` (absent: the object is new on
/// the target) to `new` (absent: the object is dropped), compared and moved
/// in one transaction.
#[derive(Clone, Debug)]
pub struct Move {
    pub kind: StateKind,
    pub namespace: String,
    pub name: String,
    pub expected: Option<(String, Option<i64>)>,
    pub new: Option<(String, Option<i64>)>,
}

/// The tables a ref is copied through, with the columns copied as they are.
const COPIES: [(&str, &str); 4] = [
    (
        "iceberg_tables",
        "table_namespace, table_name, metadata_location, previous_metadata_location, iceberg_type",
    ),
    (
        "iceberg_namespace_properties",
        "namespace, property_key, property_value",
    ),
    (
        "icefjord_views",
        "view_namespace, view_name, view_sql, owner, commit_id",
    ),
    (
        "icefjord_delta_tables",
        "table_namespace, table_name, location, version, commit_id",
    ),
];

fn kind_text(kind: StateKind) -> &'static str {
    match kind {
        StateKind::Table => "table",
        StateKind::View => "view",
        StateKind::Delta => "delta",
    }
}

impl CatalogDb {
    /// The catalog name under which a ref's rows live.
    pub fn ref_catalog(&self, name: &str) -> String {
        if name == crate::refs::MAIN {
            return self.main_name.clone();
        }
        format!("{}@{name}", self.main_name)
    }

    /// A handle on a ref's rows; a tag's refuses every write.
    pub fn for_ref(&self, name: &str, kind: RefKind) -> Self {
        let mut handle = self.clone();
        handle.catalog_name = self.ref_catalog(name);
        handle.read_only = (kind == RefKind::Tag).then(|| name.to_string());
        handle
    }

    /// `Err` on a tag's handle.
    pub(crate) fn writable(&self) -> Result<()> {
        match &self.read_only {
            None => Ok(()),
            Some(tag) => Err(CatalogError::RefNotWritable {
                reference: tag.clone(),
            }),
        }
    }

    /// One transaction whose statements all read one state of the database
    /// (PostgreSQL's default isolation would let each statement see another).
    async fn consistent(&self) -> Result<Transaction<'static, Any>> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        if !matches!(self.uri, CatalogUri::Sqlite(_)) {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(tx)
    }

    /// Record a ref and copy `from`'s rows under it (and, for a branch, as
    /// its merge base), in one transaction. `false` when the name is taken.
    pub async fn create_ref(
        &self,
        name: &str,
        kind: RefKind,
        from: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.consistent().await?;
        let inserted = sqlx::query(
            "INSERT INTO icefjord_refs (catalog_name, ref_name, ref_type, created_from, created_at_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&self.main_name)
        .bind(name)
        .bind(kind.as_str())
        .bind(from)
        .bind(now_ms)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Ok(false),
            Err(e) => return Err(self.err(e)),
            Ok(_) => {}
        }
        let (target, source) = (self.ref_catalog(name), self.ref_catalog(from));
        // Rows a deleted ref of this name left (a write racing its deletion).
        for (table, _) in COPIES {
            sqlx::query(&format!("DELETE FROM {table} WHERE catalog_name = $1"))
                .bind(&target)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        for (table, columns) in COPIES {
            sqlx::query(&format!(
                "INSERT INTO {table} (catalog_name, {columns})
                 SELECT $1, {columns} FROM {table} WHERE catalog_name = $2"
            ))
            .bind(&target)
            .bind(&source)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        }
        if kind == RefKind::Branch {
            for (kind, select) in [
                (
                    "table",
                    "table_namespace, table_name, metadata_location, CAST(NULL AS BIGINT)
                     FROM iceberg_tables WHERE metadata_location IS NOT NULL AND",
                ),
                (
                    "view",
                    "view_namespace, view_name, view_sql, CAST(NULL AS BIGINT) FROM icefjord_views WHERE",
                ),
                (
                    "delta",
                    "table_namespace, table_name, location, version FROM icefjord_delta_tables WHERE",
                ),
            ] {
                sqlx::query(&format!(
                    "INSERT INTO icefjord_ref_bases
                       (catalog_name, ref_name, kind, object_namespace, object_name, base, version)
                     SELECT $1, $2, '{kind}', {select} catalog_name = $3"
                ))
                .bind(&self.main_name)
                .bind(name)
                .bind(&source)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(true)
    }

    /// Every row of any ref (main included) or branch base, other than this
    /// handle's row `(namespace, name)`, whose metadata is under the table
    /// location `location`: `ref:namespace.name`, where files would be shared.
    pub async fn sharing(
        &self,
        location: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<String>> {
        let pattern = format!(
            "{}/metadata/%",
            location
                .trim_end_matches('/')
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let rows = sqlx::query(
            "SELECT catalog_name, table_namespace, table_name FROM iceberg_tables
             WHERE (catalog_name = $1 OR catalog_name LIKE $2 ESCAPE '\\')
               AND metadata_location LIKE $3 ESCAPE '\\'
               AND NOT (catalog_name = $4 AND table_namespace = $5 AND table_name = $6)
             UNION ALL
             SELECT 'base of ' || ref_name, object_namespace, object_name FROM icefjord_ref_bases
             WHERE catalog_name = $1 AND kind = 'table' AND base LIKE $3 ESCAPE '\\'",
        )
        .bind(&self.main_name)
        .bind(format!(
            "{}@%",
            self.main_name.replace('%', "\\%").replace('_', "\\_")
        ))
        .bind(&pattern)
        .bind(&self.catalog_name)
        .bind(namespace)
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                let catalog: String = r.try_get(0).map_err(|e| self.err(e))?;
                let reference = catalog
                    .strip_prefix(&format!("{}@", self.main_name))
                    .map(str::to_string)
                    .unwrap_or_else(|| match catalog == self.main_name {
                        true => crate::refs::MAIN.to_string(),
                        false => catalog.clone(),
                    });
                Ok(format!(
                    "{reference}:{}.{}",
                    r.try_get::<String, _>(1).map_err(|e| self.err(e))?,
                    r.try_get::<String, _>(2).map_err(|e| self.err(e))?
                ))
            })
            .collect()
    }

    /// Every ref, by name.
    pub async fn refs(&self) -> Result<Vec<RefRow>> {
        let rows = sqlx::query(
            "SELECT ref_name, ref_type, created_from, created_at_ms FROM icefjord_refs
             WHERE catalog_name = $1 ORDER BY ref_name",
        )
        .bind(&self.main_name)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                Ok(RefRow {
                    name: r.try_get(0).map_err(|e| self.err(e))?,
                    kind: match r.try_get::<String, _>(1).map_err(|e| self.err(e))?.as_str() {
                        "tag" => RefKind::Tag,
                        _ => RefKind::Branch,
                    },
                    created_from: r.try_get(2).map_err(|e| self.err(e))?,
                    created_at_ms: r.try_get(3).map_err(|e| self.err(e))?,
                })
            })
            .collect()
    }

    /// Forget a ref and its rows; `false` when there was none.
    pub async fn delete_ref(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let done =
            sqlx::query("DELETE FROM icefjord_refs WHERE catalog_name = $1 AND ref_name = $2")
                .bind(&self.main_name)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let rows = self.ref_catalog(name);
        for (table, _) in COPIES {
            sqlx::query(&format!("DELETE FROM {table} WHERE catalog_name = $1"))
                .bind(&rows)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        sqlx::query("DELETE FROM icefjord_ref_bases WHERE catalog_name = $1 AND ref_name = $2")
            .bind(&self.main_name)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(true)
    }

    /// A branch's merge base: every object as it was at creation or the last merge.
    pub async fn bases(&self, branch: &str) -> Result<Vec<StateRow>> {
        let rows = sqlx::query(
            "SELECT kind, object_namespace, object_name, base, version FROM icefjord_ref_bases
             WHERE catalog_name = $1 AND ref_name = $2",
        )
        .bind(&self.main_name)
        .bind(branch)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                Ok(StateRow {
                    kind: match r.try_get::<String, _>(0).map_err(|e| self.err(e))?.as_str() {
                        "view" => StateKind::View,
                        "delta" => StateKind::Delta,
                        _ => StateKind::Table,
                    },
                    namespace: r.try_get(1).map_err(|e| self.err(e))?,
                    name: r.try_get(2).map_err(|e| self.err(e))?,
                    text: r.try_get(3).map_err(|e| self.err(e))?,
                    version: r.try_get(4).map_err(|e| self.err(e))?,
                })
            })
            .collect()
    }

    /// Apply a merge in one transaction: every move on `target`'s rows
    /// (compare-and-swap each; a row that moved meanwhile loses it all), each
    /// moved object's row on `branch` set to what the target now holds, and
    /// the branch's base for it too (so the next merge starts from here).
    pub async fn merge_apply(
        &self,
        target: &str,
        branch: &str,
        moves: &[Move],
    ) -> Result<(), SwapError> {
        let fail = |e| SwapError::Failed(self.err(e));
        let mut tx = self.pool.begin().await.map_err(fail)?;
        let (target, source) = (self.ref_catalog(target), self.ref_catalog(branch));
        for m in moves {
            let expect = match &m.expected {
                Some(value) => Expect::Value(value),
                None => Expect::Absent,
            };
            if !move_row(&mut tx, &target, m, expect).await.map_err(fail)? {
                return Err(SwapError::Lost {
                    table: format!("{}.{}", m.namespace, m.name),
                });
            }
            // The branch row: rebased tables get the target's new location.
            move_row(&mut tx, &source, m, Expect::Any)
                .await
                .map_err(fail)?;
            sqlx::query(
                "DELETE FROM icefjord_ref_bases WHERE catalog_name = $1 AND ref_name = $2
                   AND kind = $3 AND object_namespace = $4 AND object_name = $5",
            )
            .bind(&self.main_name)
            .bind(branch)
            .bind(kind_text(m.kind))
            .bind(&m.namespace)
            .bind(&m.name)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
            if let Some((text, version)) = &m.new {
                sqlx::query(
                    "INSERT INTO icefjord_ref_bases
                       (catalog_name, ref_name, kind, object_namespace, object_name, base, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&self.main_name)
                .bind(branch)
                .bind(kind_text(m.kind))
                .bind(&m.namespace)
                .bind(&m.name)
                .bind(text)
                .bind(*version)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            }
        }
        tx.commit()
            .await
            .map_err(|e| SwapError::Ambiguous(self.err(e)))
    }
}

/// What a row must hold before [`move_row`] moves it.
enum Expect<'a> {
    /// Anything or nothing (the branch's own row).
    Any,
    /// Nothing: the object is new there.
    Absent,
    /// This value.
    Value(&'a (String, Option<i64>)),
}

/// Move one object's row under `catalog` to `m.new` (absent: delete it);
/// `false` when the row does not hold what `expect` says.
async fn move_row(
    tx: &mut Transaction<'static, Any>,
    catalog: &str,
    m: &Move,
    expect: Expect<'_>,
) -> std::result::Result<bool, sqlx::Error> {
    let (table, ns_col, name_col, value_col) = match m.kind {
        StateKind::Table => (
            "iceberg_tables",
            "table_namespace",
            "table_name",
            "metadata_location",
        ),
        StateKind::View => ("icefjord_views", "view_namespace", "view_name", "view_sql"),
        StateKind::Delta => (
            "icefjord_delta_tables",
            "table_namespace",
            "table_name",
            "location",
        ),
    };
    let key = format!("catalog_name = $1 AND {ns_col} = $2 AND {name_col} = $3");
    match expect {
        Expect::Value((old, _)) => {
            let done = sqlx::query(&format!(
                "DELETE FROM {table} WHERE {key} AND {value_col} = $4"
            ))
            .bind(catalog)
            .bind(&m.namespace)
            .bind(&m.name)
            .bind(old)
            .execute(&mut **tx)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
        }
        Expect::Any => {
            sqlx::query(&format!("DELETE FROM {table} WHERE {key}"))
                .bind(catalog)
                .bind(&m.namespace)
                .bind(&m.name)
                .execute(&mut **tx)
                .await?;
        }
        Expect::Absent => {}
    }
    let Some((new, version)) = &m.new else {
        return Ok(true);
    };
    // Views and Delta tables lose their owner and commit id columns: the
    // merge is their new commit.
    let insert = match m.kind {
        StateKind::Table => {
            "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name,
               metadata_location, previous_metadata_location, iceberg_type)
             VALUES ($1, $2, $3, $4, NULL, 'TABLE')"
        }
        StateKind::View => {
            "INSERT INTO icefjord_views
               (catalog_name, view_namespace, view_name, view_sql, owner, commit_id)
             VALUES ($1, $2, $3, $4, NULL, NULL)"
        }
        StateKind::Delta => {
            "INSERT INTO icefjord_delta_tables
               (catalog_name, table_namespace, table_name, location, version, commit_id)
             VALUES ($1, $2, $3, $4, $5, NULL)"
        }
    };
    let mut query = sqlx::query(insert)
        .bind(catalog)
        .bind(&m.namespace)
        .bind(&m.name)
        .bind(new);
    if m.kind == StateKind::Delta {
        query = query.bind(version.unwrap_or_default());
    }
    match query.execute(&mut **tx).await {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}
