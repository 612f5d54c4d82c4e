//! Table changes as other engines describe them: the Iceberg REST catalog's
//! `requirements` + `updates` (REST spec `CommitTableRequest`, what PyIceberg,
//! Spark, Trino and DuckDB send), applied through the catalog's one
//! compare-and-swap.
//!
//! # Protocol and invariants
//!
//! 1. **Requirements are checked on the state that is swapped.** Every attempt
//!    loads each table, checks every requirement against that metadata
//!    (`TableRequirement::check`), applies the updates with
//!    `TableMetadataBuilder`, writes a new metadata file and moves the catalog
//!    row by compare-and-swap from the location it loaded. A failed requirement
//!    changes nothing and is [`CatalogError::RequirementFailed`] (REST: 409, the
//!    client reloads and retries).
//! 2. **A lost swap is redone, not reported.** If another writer moved a row
//!    between load and swap, the attempt is redone on the new state: the
//!    requirements encode everything the client's change depends on, so if they
//!    still hold the change is still valid (a PyIceberg append asserts the
//!    branch head, so a concurrent append fails its requirement on the redo).
//! 3. **Atomic across tables.** [`LakeCatalog::apply_changes`] with several
//!    tables swaps every row in one database transaction (REST
//!    `POST /v1/transactions/commit`).
//! 4. **Ambiguous outcomes are looked up.** When the database may have applied
//!    a swap (connection lost during commit), the rows are read again: each
//!    holding the metadata file this attempt wrote (a fresh UUID name) means
//!    done; none means the swap did not land and the attempt is redone.
//! 5. **Our writers' positions stay ours.** An update that sets or removes a
//!    position mirror property (`icefjord.position.*`, see
//!    [`crate::protocol::position`]) is refused: other engines' commits keep
//!    table properties, and the positions in our snapshots' summaries are found
//!    past foreign snapshots by the position walk, so nothing else is needed
//!    for the Kafka sink's offsets or the runner's boundaries to survive.
//! 6. **Locations stay in the warehouse.** A table created, registered or moved
//!    (`set-location`) outside the warehouse root is refused
//!    ([`CatalogError::OutsideWarehouse`]).

use std::collections::HashMap;
use std::time::Duration;

use iceberg::spec::{FormatVersion, TableMetadata, TableMetadataBuilder};
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableCreation, TableIdent, TableRequirement, TableUpdate};

use crate::catalog::{display, split, LakeCatalog};
use crate::db::{ObjectKind, Swap, SwapError};
use crate::error::{CatalogError, Result};

/// Prefix of the table properties that mirror our writers' positions.
const POSITION_MIRROR_PREFIX: &str = "icefjord.position.";

/// How often an attempt is redone after losing the compare-and-swap.
const MAX_ATTEMPTS: u32 = 10;

/// One table's change: requirements on its current metadata, then updates.
#[derive(Clone, Debug)]
pub struct TableChange {
    pub ident: TableIdent,
    pub requirements: Vec<TableRequirement>,
    pub updates: Vec<TableUpdate>,
}

impl LakeCatalog {
    /// Apply `changes` atomically (see the module docs). Returns each table as
    /// committed, in the order of `changes`.
    ///
    /// Errors: [`CatalogError::RequirementFailed`] (retry after reloading),
    /// [`CatalogError::TableNotFound`], [`CatalogError::InvalidCommit`] (an
    /// update the metadata builder refuses), [`CatalogError::OutsideWarehouse`],
    /// [`CatalogError::RetriesExhausted`].
    pub async fn apply_changes(&self, changes: &[TableChange]) -> Result<Vec<Table>> {
        let mut seen = std::collections::HashSet::new();
        for change in changes {
            if !seen.insert(display(&change.ident)) {
                return Err(CatalogError::InvalidCommit {
                    table: display(&change.ident),
                    message: "a transaction may change each table once".into(),
                });
            }
            self.check_updates(change)?;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut swaps = Vec::with_capacity(changes.len());
            let mut staged = Vec::with_capacity(changes.len());
            for change in changes {
                let (table, metadata, create) = self.stage(change).await?;
                let swap = self.write_metadata(&table, &metadata, create).await?;
                staged.push(table.identifier().clone());
                swaps.push(swap);
            }
            let reason = match self.db().swap(&swaps, &[], &[]).await {
                Ok(()) => return self.committed(&staged, &swaps).await,
                Err(SwapError::Lost { table }) => format!("table {table} changed concurrently"),
                Err(SwapError::Failed(e)) if e.is_retryable() => e.to_string(),
                Err(SwapError::Failed(e)) => return Err(e),
                Err(SwapError::Ambiguous(e)) => {
                    if self.landed(&swaps).await? {
                        return self.committed(&staged, &swaps).await;
                    }
                    e.to_string()
                }
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(CatalogError::RetriesExhausted {
                    table: staged.iter().map(display).collect::<Vec<_>>().join(","),
                    commit_id: "-".into(),
                    attempts: attempt,
                });
            }
            tracing::debug!(attempt, %reason, "redoing a table change");
            tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
        }
    }

    /// Create a table from a REST `CreateTableRequest`. With `stage`, only the
    /// metadata is built (REST `stage-create`: the table appears with a later
    /// commit that asserts `assert-create`); otherwise it is written and
    /// registered. A location outside the warehouse is refused.
    pub async fn create_from(
        &self,
        ident: &TableIdent,
        creation: TableCreation,
        stage: bool,
    ) -> Result<(Option<String>, TableMetadata)> {
        // A staged create on a tag would only fail at its commit: refuse it now.
        self.db().writable()?;
        check_identifier(ident)?;
        let (namespace, name) = split(ident);
        if self.exists(ident).await? {
            return Err(CatalogError::TableExists {
                table: display(ident),
            });
        }
        let metadata = self.fresh_metadata(ident, creation)?;
        if stage {
            return Ok((None, metadata));
        }
        self.ensure_namespace(&namespace).await?;
        let location = MetadataLocation::new_with_metadata(metadata.location(), &metadata);
        metadata.write_to(self.file_io(), &location).await?;
        let location = location.to_string();
        if !self
            .db()
            .insert_object(ObjectKind::Table, &namespace, name, &location)
            .await?
        {
            let _ = self.file_io().delete(&location).await;
            return Err(CatalogError::TableExists {
                table: display(ident),
            });
        }
        Ok((Some(location), metadata))
    }

    /// Register an existing metadata file under a name (REST `register`): the
    /// file must be in the warehouse and readable. With `overwrite`, a table of
    /// that name is repointed.
    pub async fn register(
        &self,
        ident: &TableIdent,
        metadata_location: &str,
        overwrite: bool,
    ) -> Result<Table> {
        check_identifier(ident)?;
        let location = self.within_warehouse(ident, metadata_location)?;
        let table = self.table_at(ident, &location).await?;
        self.within_warehouse(ident, table.metadata().location())?;
        let (namespace, name) = split(ident);
        self.ensure_namespace(&namespace).await?;
        if self
            .db()
            .insert_object(ObjectKind::Table, &namespace, name, &location)
            .await?
        {
            return Ok(table);
        }
        if !overwrite {
            return Err(CatalogError::TableExists {
                table: display(ident),
            });
        }
        let current = self.load(ident).await?;
        let swap = Swap {
            namespace,
            table: name.to_string(),
            expected: current.metadata_location_result()?.to_string(),
            new: location,
            create: false,
        };
        match self.db().swap(std::slice::from_ref(&swap), &[], &[]).await {
            Ok(()) => Ok(table),
            Err(SwapError::Lost { table }) => Err(CatalogError::RequirementFailed {
                table,
                message: "the table changed while it was being re-registered".into(),
            }),
            Err(SwapError::Failed(e)) | Err(SwapError::Ambiguous(e)) => Err(e),
        }
    }

    /// Drop a table from this catalog state; with `purge` also delete its
    /// data and metadata files, which is refused while another table, branch,
    /// tag or branch base still points into its location (they share files).
    pub async fn drop(&self, ident: &TableIdent, purge: bool) -> Result<()> {
        let (namespace, name) = split(ident);
        let table = self.load(ident).await?;
        if purge {
            let sharing = self
                .db()
                .sharing(table.metadata().location(), &namespace, name)
                .await?;
            if !sharing.is_empty() {
                return Err(CatalogError::InvalidCommit {
                    table: display(ident),
                    message: format!(
                        "its files are shared with {} (branches and tags copy pointers, not \
                         data): drop it without purging; maintenance deletes files no ref reaches",
                        sharing.join(", ")
                    ),
                });
            }
        }
        if !self
            .db()
            .delete_object(ObjectKind::Table, &namespace, name)
            .await?
        {
            return Err(CatalogError::TableNotFound {
                table: display(ident),
            });
        }
        if purge {
            iceberg::drop_table_data(&table).await?;
        }
        Ok(())
    }

    /// Rename a table within this catalog state.
    pub async fn rename(&self, from: &TableIdent, to: &TableIdent) -> Result<()> {
        check_identifier(to)?;
        let (from_ns, from_name) = split(from);
        let (to_ns, to_name) = split(to);
        self.require_namespace(&to_ns).await?;
        if self.exists(to).await? {
            return Err(CatalogError::TableExists { table: display(to) });
        }
        if !self
            .db()
            .rename_object(ObjectKind::Table, (&from_ns, from_name), (&to_ns, to_name))
            .await?
        {
            // Either the source is gone or a view holds the destination name.
            return Err(match self.exists(from).await? {
                true => CatalogError::TableExists { table: display(to) },
                false => CatalogError::TableNotFound {
                    table: display(from),
                },
            });
        }
        Ok(())
    }

    /// `location` as a URL under the warehouse root, or
    /// [`CatalogError::OutsideWarehouse`]. A bare absolute path is read as a
    /// local file URL.
    pub fn within_warehouse(&self, ident: &TableIdent, location: &str) -> Result<String> {
        let root = self.config().warehouse.root_url();
        let location = match location.starts_with('/') {
            true => format!("file://{location}"),
            false => location.to_string(),
        };
        let inside = location
            .strip_prefix(&root)
            .is_some_and(|rest| rest.starts_with('/') && !rest.split('/').any(|p| p == ".."));
        match inside {
            true => Ok(location),
            false => Err(CatalogError::OutsideWarehouse {
                table: display(ident),
                location,
                warehouse: root,
            }),
        }
    }

    /// First metadata of a new table: at its default location unless the
    /// request names one inside the warehouse.
    fn fresh_metadata(
        &self,
        ident: &TableIdent,
        mut creation: TableCreation,
    ) -> Result<TableMetadata> {
        creation.location = Some(match creation.location.take() {
            Some(location) => self.within_warehouse(ident, location.trim_end_matches('/'))?,
            None => self.default_location(ident),
        });
        creation
            .properties
            .entry("write.parquet.compression-codec".into())
            .or_insert_with(|| "zstd".into());
        Ok(TableMetadataBuilder::from_table_creation(creation)
            .map_err(|e| invalid(ident, e))?
            .build()
            .map_err(|e| invalid(ident, e))?
            .metadata)
    }

    /// Refuse what no attempt could apply: a change of our position mirrors, a
    /// location outside the warehouse.
    fn check_updates(&self, change: &TableChange) -> Result<()> {
        let refuse = |key: &str| CatalogError::InvalidCommit {
            table: display(&change.ident),
            message: format!(
                "property {key} holds the position of an Icefjord writer (Kafka offsets, run \
                 boundaries); other engines may not set or remove it"
            ),
        };
        for update in &change.updates {
            match update {
                TableUpdate::SetProperties { updates } => {
                    if let Some(key) = updates
                        .keys()
                        .find(|k| k.starts_with(POSITION_MIRROR_PREFIX))
                    {
                        return Err(refuse(key));
                    }
                }
                TableUpdate::RemoveProperties { removals } => {
                    if let Some(key) = removals
                        .iter()
                        .find(|k| k.starts_with(POSITION_MIRROR_PREFIX))
                    {
                        return Err(refuse(key));
                    }
                }
                TableUpdate::SetLocation { location } => {
                    self.within_warehouse(&change.ident, location)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Load the table of `change` (or start it, for `assert-create`), check the
    /// requirements and apply the updates: the table as loaded, its new
    /// metadata, and whether the swap registers it.
    async fn stage(&self, change: &TableChange) -> Result<(Table, TableMetadata, bool)> {
        let ident = &change.ident;
        let creating = change
            .requirements
            .iter()
            .any(|r| matches!(r, TableRequirement::NotExist));
        let current = match self.load(ident).await {
            Ok(table) => Some(table),
            Err(CatalogError::TableNotFound { .. }) if creating => None,
            Err(e) => return Err(e),
        };
        for requirement in &change.requirements {
            requirement
                .check(current.as_ref().map(|t| t.metadata()))
                .map_err(|e| CatalogError::RequirementFailed {
                    table: display(ident),
                    message: e.message().to_string(),
                })?;
        }
        let create = current.is_none();
        let (base, builder, updates) = match current {
            Some(table) => {
                let location = table.metadata_location_result()?.to_string();
                let builder = table.metadata().clone().into_builder(Some(location));
                (table, builder, change.updates.iter().collect::<Vec<_>>())
            }
            None => self.start(change).await?,
        };
        let mut builder = builder;
        for update in updates {
            builder = update
                .clone()
                .apply(builder)
                .map_err(|e| invalid(ident, e))?;
        }
        let metadata = builder.build().map_err(|e| invalid(ident, e))?.metadata;
        self.within_warehouse(ident, metadata.location())?;
        Ok((base, metadata, create))
    }

    /// A table that `change` creates (`assert-create`, after a staged create):
    /// its schema, spec, sort order, location and format come from the first
    /// updates that set them; the other updates are applied on top.
    async fn start<'c>(
        &self,
        change: &'c TableChange,
    ) -> Result<(Table, TableMetadataBuilder, Vec<&'c TableUpdate>)> {
        let ident = &change.ident;
        let mut schema = None;
        let mut spec = None;
        let mut order = None;
        let mut location = None;
        let mut format = FormatVersion::V2;
        let mut rest = Vec::new();
        for update in &change.updates {
            match update {
                TableUpdate::AddSchema { schema: s } if schema.is_none() => {
                    schema = Some(s.clone())
                }
                TableUpdate::AddSpec { spec: s } if spec.is_none() => spec = Some(s.clone()),
                TableUpdate::AddSortOrder { sort_order } if order.is_none() => {
                    order = Some(sort_order.clone())
                }
                TableUpdate::SetLocation { location: l } if location.is_none() => {
                    location = Some(l.clone())
                }
                TableUpdate::UpgradeFormatVersion { format_version } => format = *format_version,
                TableUpdate::SetCurrentSchema { .. }
                | TableUpdate::SetDefaultSpec { .. }
                | TableUpdate::SetDefaultSortOrder { .. } => {}
                other => rest.push(other),
            }
        }
        let schema = schema.ok_or_else(|| CatalogError::InvalidCommit {
            table: display(ident),
            message: "a commit that creates a table (assert-create) needs an add-schema update"
                .into(),
        })?;
        let creation = TableCreation::builder()
            .name(ident.name().to_string())
            .location_opt(location)
            .schema(schema)
            .partition_spec_opt(spec)
            .sort_order_opt(order)
            .properties(HashMap::new())
            .format_version(format)
            .build();
        let metadata = self.fresh_metadata(ident, creation)?;
        let location = MetadataLocation::new_with_metadata(metadata.location(), &metadata);
        // The first metadata file: the swap that registers the table points at
        // the one written on top of it, so a lost create leaves only orphans.
        metadata.write_to(self.file_io(), &location).await?;
        let builder = metadata.clone().into_builder(Some(location.to_string()));
        let table = self.table_at(ident, &location.to_string()).await?;
        Ok((table, builder, rest))
    }

    /// Whether every swap's row holds the file its attempt wrote.
    async fn landed(&self, swaps: &[Swap]) -> Result<bool> {
        for swap in swaps {
            let now = self
                .db()
                .metadata_location(&swap.namespace, &swap.table)
                .await?;
            if now.as_deref() != Some(swap.new.as_str()) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn committed(&self, idents: &[TableIdent], swaps: &[Swap]) -> Result<Vec<Table>> {
        let mut tables = Vec::with_capacity(swaps.len());
        for (ident, swap) in idents.iter().zip(swaps) {
            tables.push(self.table_at(ident, &swap.new).await?);
        }
        Ok(tables)
    }
}

/// A namespace level or table name that is a safe path segment and URI part:
/// not empty, not `.`/`..`, none of `/ \\ # ? %` or control characters, at
/// most 255 bytes (the catalog's column width).
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > 255
        || name
            .chars()
            .any(|c| c.is_control() || matches!(c, '/' | '\\' | '#' | '?' | '%'));
    match bad {
        false => Ok(()),
        true => Err(CatalogError::Config {
            field: what.to_string(),
            message: format!(
                "{name:?} is not a valid {what} name (non-empty, at most 255 bytes, not . or .., \
                 none of / \\ # ? % or control characters)"
            ),
        }),
    }
}

pub(crate) fn check_identifier(ident: &TableIdent) -> Result<()> {
    for level in ident.namespace().iter() {
        check_name("namespace", level)?;
    }
    check_name("table", ident.name())
}

fn invalid(ident: &TableIdent, e: iceberg::Error) -> CatalogError {
    CatalogError::InvalidCommit {
        table: display(ident),
        message: e.message().to_string(),
    }
}
