//! SQL views published by pipelines, kept in our own catalog table
//! `icefjord_views` (DESIGN §4: extra tables of ours have their own names).
//!
//! A view is a query text, planned by the reader when it is used, so it always
//! reads the current state of what it names. Views are published by the one
//! commit path ([`Commit::with_view`]) in the same database transaction as the
//! tables of the commit: a run's tables and views change together or not at all.

use std::collections::BTreeMap;

use iceberg::{NamespaceIdent, TableIdent};

use crate::catalog::{display, split, LakeCatalog};
#[cfg(doc)]
use crate::commit::Commit;
use crate::db::StateKind;
use crate::error::Result;

/// A published view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewDef {
    pub ident: TableIdent,
    /// One SELECT statement.
    pub sql: String,
    /// Who publishes it, e.g. `pipeline retail`.
    pub owner: Option<String>,
    /// The commit that last published it.
    pub commit_id: Option<String>,
}

/// A view to create or replace with a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewWrite {
    pub ident: TableIdent,
    pub sql: String,
    pub owner: Option<String>,
}

impl LakeCatalog {
    /// The views of a namespace, sorted.
    pub async fn views(&self, namespace: &str) -> Result<Vec<TableIdent>> {
        let names = self.db().list_views(namespace).await?;
        let namespace = NamespaceIdent::from_strs(namespace.split('.'))?;
        Ok(names
            .into_iter()
            .map(|name| TableIdent::new(namespace.clone(), name))
            .collect())
    }

    /// A view by name, `None` when there is none.
    pub async fn view(&self, ident: &TableIdent) -> Result<Option<ViewDef>> {
        let (namespace, name) = split(ident);
        let found = self.db().view(&namespace, name).await?;
        Ok(found.map(|(sql, owner, commit_id)| ViewDef {
            ident: ident.clone(),
            sql,
            owner,
            commit_id,
        }))
    }
}

/// One consistent state of the catalog: where each table's metadata is, what
/// each view says and which version of each Delta table is published, read at one
/// instant ([`LakeCatalog::state`]).
#[derive(Clone, Debug, Default)]
pub struct CatalogState {
    /// `namespace → table → metadata location`.
    pub tables: BTreeMap<String, BTreeMap<String, String>>,
    /// `namespace → view → SQL`.
    pub views: BTreeMap<String, BTreeMap<String, String>>,
    /// `namespace → Delta table → (location, published version)`.
    pub delta: BTreeMap<String, BTreeMap<String, (String, u64)>>,
}

impl LakeCatalog {
    /// Every table and view as of one instant: a reader that resolves all the
    /// tables of a query from one state sees each multi-table commit wholly or not
    /// at all.
    pub async fn state(&self) -> Result<CatalogState> {
        let mut state = CatalogState::default();
        for row in self.db().state().await? {
            let into = match (row.kind, row.version) {
                (StateKind::Delta, Some(version)) => {
                    state.delta.entry(row.namespace).or_default().insert(
                        row.name,
                        (row.text, u64::try_from(version).unwrap_or_default()),
                    );
                    continue;
                }
                (StateKind::Delta, None) => continue,
                (StateKind::View, _) => &mut state.views,
                (StateKind::Table, _) => &mut state.tables,
            };
            into.entry(row.namespace)
                .or_default()
                .insert(row.name, row.text);
        }
        Ok(state)
    }

    /// A table at a metadata location (e.g. from a [`CatalogState`]).
    pub async fn load_at(
        &self,
        ident: &TableIdent,
        metadata_location: &str,
    ) -> Result<iceberg::table::Table> {
        self.table_at(ident, metadata_location).await
    }
}

impl ViewWrite {
    pub fn new(ident: TableIdent, sql: impl Into<String>) -> Self {
        Self {
            ident,
            sql: sql.into(),
            owner: None,
        }
    }

    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    pub(crate) fn display(&self) -> String {
        display(&self.ident)
    }
}
