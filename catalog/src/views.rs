//! SQL views published by pipelines, kept in our own catalog table
//! `icefjord_views` (DESIGN §4: extra tables of ours have their own names).
//!
//! A view is a query text, planned by the reader when it is used, so it always
//! reads the current state of what it names. Views are published by the one
//! commit path ([`Commit::with_view`]) in the same database transaction as the
//! tables of the commit: a run's tables and views change together or not at all.

use iceberg::{NamespaceIdent, TableIdent};

use crate::catalog::{display, split, LakeCatalog};
#[cfg(doc)]
use crate::commit::Commit;
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
        Ok(names
            .into_iter()
            .map(|name| TableIdent::new(NamespaceIdent::new(namespace.to_string()), name))
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
