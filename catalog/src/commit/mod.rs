//! THE commit path: every change to every table goes through [`Commit`].
//!
//! # Protocol and invariants
//!
//! 1. **Idempotent.** A commit carries a [`CommitId`], minted once per batch by the
//!    writer and reused on every retry. It is stored in the snapshot summary under
//!    [`COMMIT_ID_PROPERTY`], next to the writer's position (Kafka offsets, job run
//!    ids, …) which the writer puts in [`TableWrite::with_property`]. Before writing
//!    anything, an attempt looks for its id in the target branch's history: found
//!    means the commit already landed, and it reports so instead of writing again.
//! 2. **Compare-and-swap.** An attempt writes manifests, a manifest list and a new
//!    metadata file, then moves the catalog row from the metadata location it read
//!    to the new one. If another writer moved it first, nothing changed and the
//!    attempt is redone on the new state (bounded retries with back-off).
//! 3. **Atomic across tables.** A commit with several [`TableWrite`]s swaps all
//!    rows in one database transaction: readers see all of them or none.
//! 4. **Safe rebase.** An append rebases onto whatever landed meanwhile. An
//!    overwrite or partition replacement remembers the branch head it was computed
//!    against (its *base*); if data was added to the replaced range since then, it
//!    fails with [`CatalogError::Conflict`] instead of silently deleting rows it
//!    never saw.
//! 5. **Guards see every attempt.** A [`CommitGuard`] (e.g. the Kafka sink's offset
//!    fence) runs against the freshly loaded table on every attempt, and may refuse
//!    the commit ([`CatalogError::Refused`]) or add summary properties computed from
//!    the current state (e.g. offsets merged with what the table already holds).
//! 6. **Schema changes ride with the data.** A write whose files were written with
//!    an evolved schema ([`TableWrite::with_schema`]) makes that schema current in
//!    the same metadata update as its snapshot, after [`check_evolution`] accepted
//!    it against the table's schema on this attempt: readers never see the new
//!    files without their columns, or the columns without a writer's files.
//! 7. **Views and Delta versions ride along.** Views of the commit
//!    ([`Commit::with_view`]) are created or replaced, and Delta tables pinned at
//!    their new version ([`Commit::with_delta`], see [`crate::delta`]), in the same
//!    database transaction as the table swaps.
//! 8. **Ambiguous outcomes are reconciled, never blindly retried.** When the
//!    database may or may not have applied the swap (a lost connection during
//!    commit), the tables are reloaded and the commit id looked up: found means
//!    done; absent means the swap did not land and a retry is safe.
//! 9. **New tables appear with their first snapshot.** A write to a table the
//!    catalog does not have yet ([`TableWrite::creating`], on a table from
//!    [`LakeCatalog::unregistered`]) registers it in the same transaction (an
//!    insert that loses, and retries as an ordinary write, if another writer
//!    registered the table first): a failed writer leaves no empty table behind.

pub(crate) mod snapshot;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use iceberg::spec::{DataFile, TableMetadata, MAIN_BRANCH};
use iceberg::table::Table;
use iceberg::TableIdent;

use crate::catalog::{display, split, LakeCatalog};
use crate::db::{DeltaRow, SwapError, ViewRow};
use crate::delta::DeltaPointer;
use crate::error::{CatalogError, Result};
#[cfg(doc)]
use crate::evolution::check_evolution;
use crate::protocol::PositionKey;
use crate::views::ViewWrite;

pub use snapshot::{live_entries, live_entries_after, load_manifests, mint_snapshot_id};

/// Summary property holding the commit id of the snapshot.
pub const COMMIT_ID_PROPERTY: &str = crate::protocol::keys::COMMIT_ID;

/// Identifies one logical commit across retries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CommitId(String);

impl CommitId {
    /// A fresh, unique id (UUID v7: time-ordered).
    pub fn mint() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// An id derived by the writer from its position (deterministic across restarts).
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a write changes a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// Add the files; keep everything.
    Append,
    /// Replace all data of the branch with the files.
    Overwrite,
    /// Replace the partitions the files fall into; keep the others.
    ReplacePartitions,
    /// Replace exactly the files named by [`TableWrite::overwrite_files`] (Iceberg's
    /// `OverwriteFiles`, as Spark's copy-on-write `MERGE` commits it): the
    /// files an incremental merge read are swapped for its rewritten files; the
    /// others are kept. Every named file must still be live, or the commit is a
    /// [`CatalogError::Conflict`].
    OverwriteFiles,
}

/// A check run on every commit attempt against the table as it is now.
pub trait CommitGuard: Send + Sync + fmt::Debug {
    /// `Ok(properties)` lets the attempt proceed and adds these summary properties,
    /// which are positions (mirrored like [`TableWrite::with_position`]'s);
    /// `Err(reason)` refuses the commit (nothing is written).
    fn check(
        &self,
        metadata: &TableMetadata,
        branch: &str,
    ) -> Result<BTreeMap<String, String>, String>;
}

/// The change one commit makes to one table.
#[derive(Clone, Debug)]
pub struct TableWrite {
    table: TableIdent,
    mode: WriteMode,
    files: Vec<DataFile>,
    branch: String,
    properties: BTreeMap<String, String>,
    base: Option<Option<i64>>,
    guard: Option<std::sync::Arc<dyn CommitGuard>>,
    schema: Option<iceberg::spec::SchemaRef>,
    snapshot_id: Option<i64>,
    /// More partitions a replace-partitions write empties (beyond its files').
    replaced: Vec<iceberg::spec::Struct>,
    /// The paths of the live files an `OverwriteFiles` write removes.
    deleted: std::collections::BTreeSet<String>,
    /// The table to register if the catalog does not have it yet.
    creating: Option<Table>,
    /// The keys of `properties` that are positions (mirrored, see
    /// [`crate::protocol::position`]).
    positions: std::collections::BTreeSet<String>,
}

impl TableWrite {
    pub fn new(table: TableIdent, mode: WriteMode, files: Vec<DataFile>) -> Self {
        Self {
            table,
            mode,
            files,
            branch: MAIN_BRANCH.to_string(),
            properties: BTreeMap::new(),
            base: None,
            guard: None,
            schema: None,
            snapshot_id: None,
            replaced: Vec::new(),
            deleted: Default::default(),
            creating: None,
            positions: Default::default(),
        }
    }

    /// Give the new snapshot this id (e.g. from [`mint_snapshot_id`]), so the
    /// writer can record it in another table of the same commit. The same id is
    /// used by every attempt.
    pub fn with_snapshot_id(mut self, id: i64) -> Self {
        self.snapshot_id = Some(id);
        self
    }

    pub fn append(table: TableIdent, files: Vec<DataFile>) -> Self {
        Self::new(table, WriteMode::Append, files)
    }

    pub fn overwrite(table: TableIdent, files: Vec<DataFile>) -> Self {
        Self::new(table, WriteMode::Overwrite, files)
    }

    pub fn replace_partitions(table: TableIdent, files: Vec<DataFile>) -> Self {
        Self::new(table, WriteMode::ReplacePartitions, files)
    }

    /// Remove the live data files at `deleted` (paths as the manifests hold
    /// them) and add `files`, keeping every other file; see
    /// [`WriteMode::OverwriteFiles`]. With no path and no file, the snapshot
    /// only carries the write's positions and properties.
    pub fn overwrite_files(table: TableIdent, deleted: Vec<String>, files: Vec<DataFile>) -> Self {
        let mut write = Self::new(table, WriteMode::OverwriteFiles, files);
        write.deleted = deleted.into_iter().collect();
        write
    }

    /// Commit to this branch instead of `main` (created from `main` when missing).
    pub fn to_branch(mut self, branch: impl Into<String>) -> Self {
        self.branch = branch.into();
        self
    }

    /// A writer's position, stored in the snapshot's summary and mirrored in a
    /// table property that survives snapshot expiry (see
    /// [`crate::protocol::position`]); read it back with
    /// [`crate::protocol::find_position`].
    pub fn with_position<K: PositionKey>(mut self, key: &K, value: &K::Value) -> Self {
        let name = key.key();
        self.properties.insert(name.clone(), key.format(value));
        self.positions.insert(name);
        self
    }

    /// A summary property (writer, run id, watermark, …) stored in the snapshot.
    /// Positions go through [`Self::with_position`].
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// The branch head this write was computed from (`None`: the branch was empty).
    /// Overwrites and partition replacements fail if data landed in their range
    /// since then. Unset, the head seen by the first attempt is used.
    pub fn with_base_snapshot(mut self, snapshot_id: Option<i64>) -> Self {
        self.base = Some(snapshot_id);
        self
    }

    /// Run `guard` on every attempt (see the module docs).
    pub fn with_guard(mut self, guard: std::sync::Arc<dyn CommitGuard>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// The files were written with `schema`, an evolution of the table's schema
    /// (see [`crate::evolution`]); the commit makes it current together with the
    /// snapshot, or fails with [`CatalogError::Conflict`] when the table's schema
    /// moved in a way that `schema` does not extend.
    /// A replace-partitions write also empties these partitions (of the table's
    /// default spec), whether or not its files fall into them: a re-run of a time
    /// range replaces the range's partitions even where it now produces no rows.
    pub fn with_replaced_partitions(mut self, partitions: Vec<iceberg::spec::Struct>) -> Self {
        self.replaced = partitions;
        self
    }

    /// Write to `table` (from [`LakeCatalog::unregistered`]) and register it, if
    /// the catalog has no table of this name when the commit runs; otherwise
    /// write to the table the catalog has, as usual.
    pub fn creating(mut self, table: Table) -> Self {
        self.creating = Some(table);
        self
    }

    pub fn with_schema(mut self, schema: iceberg::spec::SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    pub fn table(&self) -> &TableIdent {
        &self.table
    }
}

/// What a table looks like after a commit.
#[derive(Clone, Debug)]
pub struct CommittedTable {
    pub table: TableIdent,
    pub branch: String,
    pub snapshot_id: i64,
    pub metadata_location: String,
}

/// The outcome of [`Commit::execute`].
#[derive(Clone, Debug)]
pub struct CommitReport {
    pub commit_id: CommitId,
    /// True when the commit id was found already applied: nothing was written.
    pub already_applied: bool,
    pub attempts: u32,
    pub tables: Vec<CommittedTable>,
}

/// One logical commit over one or more tables. Runs when executed.
pub struct Commit<'a> {
    catalog: &'a LakeCatalog,
    id: CommitId,
    writes: Vec<TableWrite>,
    views: Vec<ViewWrite>,
    deltas: Vec<DeltaPointer>,
    max_attempts: u32,
}

impl LakeCatalog {
    /// Start a commit with the given id.
    pub fn commit(&self, id: CommitId) -> Commit<'_> {
        Commit {
            catalog: self,
            id,
            writes: Vec::new(),
            views: Vec::new(),
            deltas: Vec::new(),
            max_attempts: 20,
        }
    }
}

impl<'a> Commit<'a> {
    pub fn with_write(mut self, write: TableWrite) -> Self {
        self.writes.push(write);
        self
    }

    /// Create or replace a view in the same transaction as the table writes.
    pub fn with_view(mut self, view: ViewWrite) -> Self {
        self.views.push(view);
        self
    }

    /// Pin a Delta table at a version it already has, in the same transaction as
    /// the table writes (see [`crate::delta`]).
    pub fn with_delta(mut self, delta: DeltaPointer) -> Self {
        self.deltas.push(delta);
        self
    }

    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Run the protocol described in the module docs.
    pub async fn execute(mut self) -> Result<CommitReport> {
        if self.writes.is_empty() {
            return Err(CatalogError::InvalidCommit {
                table: "-".into(),
                message: "a commit needs at least one table write".into(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for view in &self.views {
            if !seen.insert((view.display(), String::new())) {
                return Err(CatalogError::InvalidCommit {
                    table: view.display(),
                    message: "a commit may write each view once".into(),
                });
            }
        }
        let views: Vec<ViewRow> = self
            .views
            .iter()
            .map(|view| {
                let (namespace, name) = split(&view.ident);
                ViewRow {
                    namespace,
                    name: name.to_string(),
                    sql: view.sql.clone(),
                    owner: view.owner.clone(),
                    commit_id: self.id.to_string(),
                }
            })
            .collect();
        let deltas: Vec<DeltaRow> = self
            .deltas
            .iter()
            .map(|delta| delta.row(self.id.as_str()))
            .collect();
        for write in &self.writes {
            if !seen.insert((display(&write.table), write.branch.clone())) {
                return Err(CatalogError::InvalidCommit {
                    table: display(&write.table),
                    message: "a commit may write each table branch once".into(),
                });
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (tables, created) = self.load_tables().await?;
            if let Some(report) = self.already_applied(&tables, attempt)? {
                return Ok(report);
            }
            let mut swaps = Vec::with_capacity(tables.len());
            let mut produced = Vec::with_capacity(tables.len());
            for ((write, table), create) in self.writes.iter_mut().zip(&tables).zip(created) {
                let head = head_of(table.metadata(), &write.branch);
                let base = *write.base.get_or_insert(head);
                if base != head {
                    snapshot::check_no_conflict(table, write, base, &self.id).await?;
                }
                let mut extra = BTreeMap::new();
                if let Some(guard) = &write.guard {
                    extra = guard
                        .check(table.metadata(), &write.branch)
                        .map_err(|reason| CatalogError::Refused {
                            table: display(&write.table),
                            commit_id: self.id.to_string(),
                            reason,
                        })?;
                }
                let (metadata, snapshot_id) =
                    snapshot::produce(table, write, &extra, &self.id).await?;
                let swap = self
                    .catalog
                    .write_metadata(table, &metadata, create)
                    .await?;
                produced.push(CommittedTable {
                    table: write.table.clone(),
                    branch: write.branch.clone(),
                    snapshot_id,
                    metadata_location: swap.new.clone(),
                });
                swaps.push(swap);
            }
            let outcome = self.catalog.db().swap(&swaps, &views, &deltas).await;
            let retry_reason = match outcome {
                Ok(()) => {
                    return Ok(CommitReport {
                        commit_id: self.id,
                        already_applied: false,
                        attempts: attempt,
                        tables: produced,
                    });
                }
                Err(SwapError::Lost { table }) => format!("table {table} changed concurrently"),
                Err(SwapError::Failed(e)) if e.is_retryable() => e.to_string(),
                Err(SwapError::Failed(e)) => return Err(e),
                Err(SwapError::Ambiguous(e)) => {
                    tracing::warn!(commit_id = %self.id, error = %e, "commit outcome unknown; reconciling by commit id");
                    let (tables, _) = self.load_tables().await?;
                    if let Some(mut report) = self.already_applied(&tables, attempt)? {
                        report.already_applied = false;
                        return Ok(report);
                    }
                    e.to_string()
                }
            };
            if attempt >= self.max_attempts {
                return Err(CatalogError::RetriesExhausted {
                    table: self
                        .writes
                        .iter()
                        .map(|w| display(&w.table))
                        .collect::<Vec<_>>()
                        .join(","),
                    commit_id: self.id.to_string(),
                    attempts: attempt,
                });
            }
            tracing::debug!(commit_id = %self.id, attempt, reason = %retry_reason, "retrying commit");
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// Every written table as the catalog has it now, or the table a write is
    /// creating (then `true`: its swap registers it).
    async fn load_tables(&self) -> Result<(Vec<Table>, Vec<bool>)> {
        let mut tables = Vec::with_capacity(self.writes.len());
        let mut created = Vec::with_capacity(self.writes.len());
        for write in &self.writes {
            match (self.catalog.load(&write.table).await, &write.creating) {
                (Err(CatalogError::TableNotFound { .. }), Some(table)) => {
                    tables.push(table.clone());
                    created.push(true);
                }
                (loaded, _) => {
                    tables.push(loaded?);
                    created.push(false);
                }
            }
        }
        Ok((tables, created))
    }

    /// `Some` when every table already holds this commit id on its branch.
    fn already_applied(&self, tables: &[Table], attempts: u32) -> Result<Option<CommitReport>> {
        let mut found = Vec::new();
        for (write, table) in self.writes.iter().zip(tables) {
            match find_commit(table.metadata(), &write.branch, &self.id) {
                Some(snapshot_id) => found.push(CommittedTable {
                    table: write.table.clone(),
                    branch: write.branch.clone(),
                    snapshot_id,
                    metadata_location: table.metadata_location().unwrap_or_default().to_string(),
                }),
                None if found.is_empty() => return Ok(None),
                None => {
                    return Err(CatalogError::InvalidCommit {
                        table: display(&write.table),
                        message: format!(
                            "commit {} is present on some tables of the commit but not on this one",
                            self.id
                        ),
                    });
                }
            }
        }
        Ok(Some(CommitReport {
            commit_id: self.id.clone(),
            already_applied: true,
            attempts,
            tables: found,
        }))
    }
}

/// The snapshot id a branch points at, `None` for an empty or missing branch.
pub fn head_of(metadata: &TableMetadata, branch: &str) -> Option<i64> {
    metadata.snapshot_for_ref(branch).map(|s| s.snapshot_id())
}

/// Walk a branch's ancestry (newest first).
pub fn ancestry<'m>(
    metadata: &'m TableMetadata,
    from: Option<i64>,
) -> impl Iterator<Item = &'m iceberg::spec::SnapshotRef> + 'm {
    let mut next = from;
    std::iter::from_fn(move || {
        let snapshot = metadata.snapshot_by_id(next?)?;
        next = snapshot.parent_snapshot_id();
        Some(snapshot)
    })
}

/// The snapshot on `branch` that carries `id`, if any.
pub fn find_commit(metadata: &TableMetadata, branch: &str, id: &CommitId) -> Option<i64> {
    ancestry(metadata, head_of(metadata, branch))
        .find(|s| {
            s.summary()
                .additional_properties
                .get(COMMIT_ID_PROPERTY)
                .is_some_and(|v| v == id.as_str())
        })
        .map(|s| s.snapshot_id())
}

fn backoff(attempt: u32) -> Duration {
    let base = 10u64 * 2u64.saturating_pow(attempt.min(7));
    // Jitter from the clock's low bits keeps concurrent writers from lock-stepping.
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    ) % base.max(1);
    Duration::from_millis(base + jitter)
}
