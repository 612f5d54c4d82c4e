//! Catalog-wide branches and tags, Nessie-style: a ref is a named copy of the
//! catalog's pointers (every table's metadata location, every view's SQL,
//! every Delta table's version), never of data.
//!
//! # Protocol and invariants
//!
//! 1. **`main` is the catalog.** Main's state is the rows JDBC/SQL-catalog
//!    readers see (PyIceberg `SqlCatalog`, Spark's JDBC catalog). A ref's rows
//!    are the same rows under the catalog name `<catalog>@<ref>`
//!    ([`crate::db`]), so every read and write of [`LakeCatalog`] works on a
//!    ref through [`LakeCatalog::on_ref`], with the same commit path.
//! 2. **Creating a ref copies pointers in one transaction** (O(tables)): the
//!    source's whole state at one instant. A branch also records that state
//!    as its *merge base*.
//! 3. **Tags are read-only**: every write through a tag's catalog fails with
//!    [`CatalogError::RefNotWritable`] before anything is written.
//! 4. **A merge is one transaction** ([`LakeCatalog::merge`]). For each object
//!    (table, view, Delta table) compared source vs base vs target:
//!    - changed on the source only: the target moves to the source's pointer
//!      (a fast-forward: the branch's metadata files are successors of the
//!      base's, in the same table location);
//!    - changed on both: a conflict, unless it is a table to which both sides
//!      only appended, with the base's schema and spec: then the source's new
//!      files are appended on top of the target's state (a rebase, as the
//!      commit path rebases concurrent appends);
//!    - any conflict fails the merge with [`CatalogError::MergeConflict`],
//!      naming every conflicting object, and changes nothing.
//!
//!    Every target row is compare-and-swapped from the value this merge read;
//!    if one moved meanwhile (a sink committing), the merge is recomputed. The
//!    merged objects' rows on the branch and its base are set to what the
//!    target now holds, so a second merge moves only what changed since.
//! 5. **Bases are the fork point's state.** A branch made from a tag or
//!    another branch takes that ref's state as its base; merging it into main
//!    then compares against that state, which is conservative only when the
//!    source was forked from main.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use iceberg::spec::{Operation, TableMetadata, MAIN_BRANCH};
use iceberg::{NamespaceIdent, TableIdent};

use crate::catalog::LakeCatalog;
use crate::commit::snapshot::{live_entries_after, produce};
use crate::commit::{ancestry, head_of, CommitId, TableWrite};
use crate::db::{Move, StateKind, StateRow, SwapError};
use crate::error::{CatalogError, Result};
use crate::protocol::keys;

/// The name of the catalog's own state.
pub const MAIN: &str = "main";

/// How often a merge is recomputed after losing a row to a concurrent commit.
const MAX_ATTEMPTS: u32 = 10;

/// A branch (writable) or a tag (read-only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefKind {
    Branch,
    Tag,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Branch => "branch",
            Self::Tag => "tag",
        }
    }
}

/// A branch or tag of the catalog.
#[derive(Clone, Debug)]
pub struct CatalogRef {
    pub name: String,
    pub kind: RefKind,
    /// The ref (or `main`) whose state it was created from.
    pub created_from: String,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: i64,
}

/// What a merge did to one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged {
    /// `namespace.name`.
    pub object: String,
    /// `table`, `view` or `delta`.
    pub kind: &'static str,
    /// `fast-forward`, `rebased`, `added` or `dropped`.
    pub how: &'static str,
}

/// The outcome of [`LakeCatalog::merge`].
#[derive(Clone, Debug)]
pub struct MergeReport {
    pub branch: String,
    pub into: String,
    pub merged: Vec<Merged>,
    pub attempts: u32,
}

type Key = (u8, String, String);
type Value = (String, Option<i64>);

fn key(row: &StateRow) -> Key {
    let kind = match row.kind {
        StateKind::Table => 0,
        StateKind::View => 1,
        StateKind::Delta => 2,
    };
    (kind, row.namespace.clone(), row.name.clone())
}

fn kind_of(kind: u8) -> StateKind {
    match kind {
        0 => StateKind::Table,
        1 => StateKind::View,
        _ => StateKind::Delta,
    }
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        0 => "table",
        1 => "view",
        _ => "delta",
    }
}

fn index(rows: Vec<StateRow>) -> BTreeMap<Key, Value> {
    rows.into_iter()
        .map(|row| (key(&row), (row.text.clone(), row.version)))
        .collect()
}

/// A ref name: a letter or digit, then letters, digits, `.`, `_`, `-` (it is
/// a REST route's prefix, so no `/`); not `main`, not the catalog's name.
fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name.len() <= 200
        && name != MAIN
        && name != crate::CATALOG_NAME;
    match ok {
        true => Ok(()),
        false => Err(CatalogError::Config {
            field: "branch".into(),
            message: format!(
                "{name:?} is not a valid branch or tag name (a letter or digit, then letters, \
                 digits, . _ -; not main or {})",
                crate::CATALOG_NAME
            ),
        }),
    }
}

impl LakeCatalog {
    /// The catalog as the ref `name` has it (`main`: this catalog's own
    /// state). Reads and writes go to the ref's rows; a tag's refuse writes.
    pub async fn on_ref(&self, name: &str) -> Result<LakeCatalog> {
        if name == MAIN {
            return Ok(self.with_db(self.db().for_ref(MAIN, RefKind::Branch), MAIN));
        }
        let found = self.refs().await?.into_iter().find(|r| r.name == name);
        let found = found.ok_or_else(|| CatalogError::UnknownRef {
            reference: name.to_string(),
        })?;
        Ok(self.with_db(self.db().for_ref(name, found.kind), name))
    }

    /// Every branch and tag, by name (main is not listed).
    pub async fn refs(&self) -> Result<Vec<CatalogRef>> {
        Ok(self
            .db()
            .refs()
            .await?
            .into_iter()
            .map(|r| CatalogRef {
                name: r.name,
                kind: r.kind,
                created_from: r.created_from,
                created_at_ms: r.created_at_ms,
            })
            .collect())
    }

    /// Create a branch or tag from `from` (`main` or another ref's name).
    pub async fn create_ref(&self, name: &str, kind: RefKind, from: &str) -> Result<CatalogRef> {
        check_name(name)?;
        if from != MAIN && !self.refs().await?.iter().any(|r| r.name == from) {
            return Err(CatalogError::UnknownRef {
                reference: from.to_string(),
            });
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        if !self.db().create_ref(name, kind, from, now).await? {
            return Err(CatalogError::RefExists {
                reference: name.to_string(),
            });
        }
        Ok(CatalogRef {
            name: name.to_string(),
            kind,
            created_from: from.to_string(),
            created_at_ms: now,
        })
    }

    /// Delete a branch or tag (its pointers, never data files).
    pub async fn delete_ref(&self, name: &str) -> Result<()> {
        match self.db().delete_ref(name).await? {
            true => Ok(()),
            false => Err(CatalogError::UnknownRef {
                reference: name.to_string(),
            }),
        }
    }

    /// Merge branch `branch` into `into` (see the module docs).
    pub async fn merge(&self, branch: &str, into: &str) -> Result<MergeReport> {
        if branch == into {
            return Err(CatalogError::Config {
                field: "branch".into(),
                message: format!("cannot merge {branch} into itself"),
            });
        }
        if branch == MAIN {
            return Err(CatalogError::Config {
                field: "branch".into(),
                message: "main is merged into, not from: make a branch of it instead".into(),
            });
        }
        let refs = self.refs().await?;
        let source = refs.iter().find(|r| r.name == branch);
        match source {
            Some(r) if r.kind == RefKind::Branch => {}
            Some(_) => {
                return Err(CatalogError::Config {
                    field: "branch".into(),
                    message: format!("{branch} is a tag: only a branch can be merged"),
                })
            }
            None => {
                return Err(CatalogError::UnknownRef {
                    reference: branch.to_string(),
                })
            }
        }
        let target = self.on_ref(into).await?;
        target.db().writable()?;
        let db = self.db();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let source = index(db.state_in(&db.ref_catalog(branch)).await?);
            let target_state = index(db.state_in(&db.ref_catalog(into)).await?);
            let base = index(db.bases(branch).await?);
            let (moves, merged) = target
                .plan_merge(branch, &source, &base, &target_state)
                .await?;
            match db.merge_apply(into, branch, &moves).await {
                Ok(()) => {
                    return Ok(MergeReport {
                        branch: branch.to_string(),
                        into: into.to_string(),
                        merged,
                        attempts: attempt,
                    })
                }
                Err(SwapError::Lost { table }) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(%table, attempt, "merge lost a row to a concurrent commit; recomputing");
                }
                Err(SwapError::Lost { table }) => {
                    return Err(CatalogError::RetriesExhausted {
                        table,
                        commit_id: format!("merge {branch} into {into}"),
                        attempts: attempt,
                    })
                }
                Err(SwapError::Failed(e)) | Err(SwapError::Ambiguous(e)) => return Err(e),
            }
        }
    }

    /// The moves of a merge into this catalog's ref, or the conflicts.
    async fn plan_merge(
        &self,
        branch: &str,
        source: &BTreeMap<Key, Value>,
        base: &BTreeMap<Key, Value>,
        target: &BTreeMap<Key, Value>,
    ) -> Result<(Vec<Move>, Vec<Merged>)> {
        let keys: BTreeSet<&Key> = source.keys().chain(base.keys()).collect();
        let (mut moves, mut merged, mut conflicts) = (Vec::new(), Vec::new(), Vec::new());
        for k in keys {
            let (s, b, t) = (source.get(k), base.get(k), target.get(k));
            if s == b || s == t {
                continue;
            }
            let object = format!("{}.{}", k.1, k.2);
            let (new, how) = if t == b {
                let how = match (b, s) {
                    (None, _) => "added",
                    (_, None) => "dropped",
                    _ => "fast-forward",
                };
                (s.cloned(), how)
            } else {
                match (k.0, s, b, t) {
                    (0, Some(s), Some(b), Some(t)) => {
                        match self.rebase(branch, &k.1, &k.2, &s.0, &b.0, &t.0).await? {
                            Some(location) => (Some((location, None)), "rebased"),
                            None => {
                                conflicts.push(object);
                                continue;
                            }
                        }
                    }
                    _ => {
                        conflicts.push(object);
                        continue;
                    }
                }
            };
            moves.push(Move {
                kind: kind_of(k.0),
                namespace: k.1.clone(),
                name: k.2.clone(),
                expected: t.cloned(),
                new,
            });
            merged.push(Merged {
                object,
                kind: kind_name(k.0),
                how,
            });
        }
        if !conflicts.is_empty() {
            return Err(CatalogError::MergeConflict {
                branch: branch.to_string(),
                into: self.ref_name().to_string(),
                tables: conflicts,
            });
        }
        Ok((moves, merged))
    }

    /// The source's appends since the base, appended on top of the target's
    /// state: the new metadata location, or `None` when the table does not
    /// rebase (not appends only on both sides, or its schema or spec changed).
    async fn rebase(
        &self,
        branch: &str,
        namespace: &str,
        name: &str,
        source: &str,
        base: &str,
        target: &str,
    ) -> Result<Option<String>> {
        let ident = TableIdent::new(
            NamespaceIdent::from_strs(namespace.split('.'))?,
            name.to_string(),
        );
        let source = self.load_at(&ident, source).await?;
        let base = self.load_at(&ident, base).await?;
        let target = self.load_at(&ident, target).await?;
        let (s, b, t) = (source.metadata(), base.metadata(), target.metadata());
        let same_shape = |m: &TableMetadata| {
            m.current_schema_id() == b.current_schema_id()
                && m.default_partition_spec_id() == b.default_partition_spec_id()
        };
        let base_head = head_of(b, MAIN_BRANCH);
        if !same_shape(s)
            || !same_shape(t)
            || !appends_since(s, base_head)
            || !appends_since(t, base_head)
            || reads_a_source(s, base_head)
        {
            return Ok(None);
        }
        let after = base_head
            .and_then(|id| b.snapshot_by_id(id))
            .map(|snapshot| snapshot.sequence_number());
        let files = live_entries_after(&source, head_of(s, MAIN_BRANCH), after)
            .await?
            .into_iter()
            .map(|entry| entry.data_file().clone())
            .collect();
        let id = CommitId::new(format!("merge:{branch}:{}", CommitId::mint()));
        let write =
            TableWrite::append(ident, files).with_property(keys::WRITER, keys::writer::MERGE);
        let (metadata, _) = produce(&target, &write, &BTreeMap::new(), &id).await?;
        let swap = self.write_metadata(&target, &metadata, false).await?;
        Ok(Some(swap.new))
    }
}

/// Whether a snapshot since `base` advanced a source position (Kafka offsets,
/// the generator's sequence): its records may also be on the target, read by
/// the same writer there, so rebasing could write them twice.
fn reads_a_source(metadata: &TableMetadata, base: Option<i64>) -> bool {
    ancestry(metadata, head_of(metadata, MAIN_BRANCH))
        .take_while(|snapshot| Some(snapshot.snapshot_id()) != base)
        .any(|snapshot| {
            snapshot.summary().additional_properties.keys().any(|k| {
                keys::SOURCE_POSITION_PREFIXES
                    .iter()
                    .any(|prefix| k.starts_with(prefix))
            })
        })
}

/// Whether every snapshot from the branch head of `metadata` back to `base`
/// (exclusive; the root when `None`) is an append, and `base` is reached.
fn appends_since(metadata: &TableMetadata, base: Option<i64>) -> bool {
    let mut reached = base.is_none();
    for snapshot in ancestry(metadata, head_of(metadata, MAIN_BRANCH)) {
        if Some(snapshot.snapshot_id()) == base {
            reached = true;
            break;
        }
        if snapshot.summary().operation != Operation::Append {
            return false;
        }
    }
    reached
}
