//! [`LakeCatalog`]: the Iceberg catalog of a lake. It implements `iceberg::Catalog`
//! (so iceberg-rust and its DataFusion integration work on it) over the catalog
//! database, and hands out the one commit path ([`crate::commit`]).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use iceberg::io::FileIO;
use iceberg::spec::{
    FormatVersion, Schema, TableMetadata, TableMetadataBuilder, UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::{
    Catalog, MetadataLocation, Namespace, NamespaceIdent, TableCommit, TableCreation, TableIdent,
};

#[cfg(doc)]
use crate::commit::TableWrite;
use crate::config::{LakeConfig, Warehouse};
use crate::db::{CatalogDb, ObjectKind, Swap, SwapError};
use crate::error::{CatalogError, Result};
use crate::storage::WarehouseStore;

/// The namespace property that marks an empty namespace as existing
/// (PyIceberg's `SqlCatalog` writes it too).
pub(crate) const NAMESPACE_MARKER: &str = "exists";

/// The catalog name PyIceberg and Spark use for an Icefjord lake.
pub const CATALOG_NAME: &str = "icefjord";

/// A lake's catalog: database + warehouse storage. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LakeCatalog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: CatalogDb,
    store: WarehouseStore,
    file_io: FileIO,
    config: LakeConfig,
    /// The catalog-wide branch or tag this handle reads and writes
    /// ([`crate::refs`]); `main` by default.
    ref_name: String,
}

/// What a new table looks like.
#[derive(Clone, Debug)]
pub struct TableSpec {
    pub schema: Schema,
    pub partition_spec: Option<UnboundPartitionSpec>,
    pub properties: BTreeMap<String, String>,
}

impl LakeCatalog {
    /// Open a lake, creating the warehouse directory and the catalog tables as needed.
    pub async fn open(config: &LakeConfig) -> Result<Self> {
        if let Warehouse::Local(dir) = &config.warehouse {
            create_dir(dir, "warehouse")?;
        }
        if let crate::config::CatalogUri::Sqlite(file) = &config.catalog {
            if let Some(parent) = file.parent() {
                create_dir(parent, "catalog")?;
            }
        }
        let store = WarehouseStore::new(&config.warehouse, &config.s3)?;
        let db = CatalogDb::connect(&config.catalog, CATALOG_NAME).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                file_io: store.file_io(),
                db,
                store,
                config: config.clone(),
                ref_name: crate::refs::MAIN.to_string(),
            }),
        })
    }

    /// This catalog on other database rows (a ref's, see [`crate::refs`]).
    pub(crate) fn with_db(&self, db: CatalogDb, ref_name: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                store: self.inner.store.clone(),
                file_io: self.inner.file_io.clone(),
                config: self.inner.config.clone(),
                ref_name: ref_name.to_string(),
            }),
        }
    }

    /// The catalog-wide branch or tag this handle reads and writes (`main`
    /// unless opened with [`LakeCatalog::on_ref`]).
    pub fn ref_name(&self) -> &str {
        &self.inner.ref_name
    }

    pub fn config(&self) -> &LakeConfig {
        &self.inner.config
    }

    /// The object store of the warehouse (shared with DataFusion).
    pub fn store(&self) -> &WarehouseStore {
        &self.inner.store
    }

    pub fn file_io(&self) -> &FileIO {
        &self.inner.file_io
    }

    pub(crate) fn db(&self) -> &CatalogDb {
        &self.inner.db
    }

    /// Test hook: the next `count` commits land in the database but report a lost
    /// connection, as a dropped commit response would. The commit path must
    /// reconcile them by commit id (see [`crate::commit`]).
    pub fn inject_lost_commit_responses(&self, count: u32) {
        self.inner.db.faults.inject_lost_commit_responses(count);
    }

    /// Every namespace, sorted.
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        self.inner.db.list_namespaces().await
    }

    /// The tables of a namespace, sorted.
    pub async fn tables(&self, namespace: &str) -> Result<Vec<TableIdent>> {
        let names = self
            .inner
            .db
            .list_objects(ObjectKind::Table, namespace)
            .await?;
        Ok(names
            .into_iter()
            .map(|name| {
                let levels = NamespaceIdent::from_strs(namespace.split('.'))
                    .unwrap_or_else(|_| NamespaceIdent::new(namespace.to_string()));
                TableIdent::new(levels, name)
            })
            .collect())
    }

    /// Create a namespace unless it exists.
    pub async fn ensure_namespace(&self, namespace: &str) -> Result<()> {
        self.inner
            .db
            .create_namespace(namespace, &BTreeMap::new())
            .await?;
        Ok(())
    }

    /// A namespace's properties, `None` when the namespace does not exist.
    pub async fn namespace_properties(
        &self,
        namespace: &str,
    ) -> Result<Option<BTreeMap<String, String>>> {
        self.inner.db.namespace_properties(namespace).await
    }

    /// Create a namespace with properties; [`CatalogError::NamespaceExists`] when taken.
    pub async fn create_namespace_with(
        &self,
        namespace: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<()> {
        for level in namespace.split('.') {
            crate::changes::check_name("namespace", level)?;
        }
        match self
            .inner
            .db
            .create_namespace(namespace, properties)
            .await?
        {
            true => Ok(()),
            false => Err(CatalogError::NamespaceExists {
                namespace: namespace.to_string(),
            }),
        }
    }

    /// [`CatalogError::NamespaceNotFound`] unless the namespace exists.
    pub async fn require_namespace(&self, namespace: &str) -> Result<()> {
        match self.inner.db.namespace_properties(namespace).await? {
            Some(_) => Ok(()),
            None => Err(CatalogError::NamespaceNotFound {
                namespace: namespace.to_string(),
            }),
        }
    }

    /// Set and remove properties of a namespace (one transaction); returns the
    /// removals that were not set.
    pub async fn update_namespace_properties(
        &self,
        namespace: &str,
        updates: &BTreeMap<String, String>,
        removals: &[String],
    ) -> Result<Vec<String>> {
        self.require_namespace(namespace).await?;
        if updates.contains_key(NAMESPACE_MARKER) || removals.iter().any(|k| k == NAMESPACE_MARKER)
        {
            return Err(CatalogError::Config {
                field: NAMESPACE_MARKER.into(),
                message: format!(
                    "the namespace property {NAMESPACE_MARKER:?} marks that the namespace exists \
                     (PyIceberg's SqlCatalog convention); it cannot be set or removed"
                ),
            });
        }
        self.inner
            .db
            .update_namespace_properties(namespace, updates, removals)
            .await
    }

    /// Drop an empty namespace (no table, no Iceberg view, no pipeline view).
    pub async fn drop_namespace_checked(&self, namespace: &str) -> Result<()> {
        self.require_namespace(namespace).await?;
        let db = &self.inner.db;
        if !db
            .list_objects(ObjectKind::Table, namespace)
            .await?
            .is_empty()
            || !db
                .list_objects(ObjectKind::View, namespace)
                .await?
                .is_empty()
            || !db.list_views(namespace).await?.is_empty()
        {
            return Err(CatalogError::NamespaceNotEmpty {
                namespace: namespace.to_string(),
            });
        }
        self.inner.db.drop_namespace(namespace).await
    }

    /// Load a table at its current metadata.
    pub async fn load(&self, ident: &TableIdent) -> Result<Table> {
        let (namespace, name) = split(ident);
        let location = self
            .inner
            .db
            .metadata_location(&namespace, name)
            .await?
            .ok_or_else(|| CatalogError::TableNotFound {
                table: display(ident),
            })?;
        self.table_at(ident, &location).await
    }

    /// Whether a table exists.
    pub async fn exists(&self, ident: &TableIdent) -> Result<bool> {
        let (namespace, name) = split(ident);
        Ok(self
            .inner
            .db
            .metadata_location(&namespace, name)
            .await?
            .is_some())
    }

    pub(crate) async fn table_at(&self, ident: &TableIdent, location: &str) -> Result<Table> {
        let metadata = TableMetadata::read_from(&self.inner.file_io, location).await?;
        Ok(Table::builder()
            .identifier(ident.clone())
            .metadata(metadata)
            .metadata_location(location)
            .file_io(self.inner.file_io.clone())
            .runtime(iceberg::Runtime::try_current()?)
            .build()?)
    }

    /// The default location of a table: `<warehouse>/<namespace>/<table>`.
    pub fn default_location(&self, ident: &TableIdent) -> String {
        let (namespace, name) = split(ident);
        format!(
            "{}/{}/{}",
            self.inner.config.warehouse.root_url(),
            namespace.replace('.', "/"),
            name
        )
    }

    /// Create a table (its namespace too, when missing).
    pub async fn create(&self, ident: &TableIdent, spec: TableSpec) -> Result<Table> {
        let (namespace, name) = split(ident);
        if self.exists(ident).await? {
            return Err(CatalogError::TableExists {
                table: display(ident),
            });
        }
        self.ensure_namespace(&namespace).await?;
        let table = self.unregistered(ident, spec).await?;
        let metadata_location = table.metadata_location_result()?.to_string();
        if !self
            .inner
            .db
            .insert_object(ObjectKind::Table, &namespace, name, &metadata_location)
            .await?
        {
            // Lost a race with another creator; our metadata file is an orphan.
            let _ = self.inner.file_io.delete(&metadata_location).await;
            return Err(CatalogError::TableExists {
                table: display(ident),
            });
        }
        Ok(table)
    }

    /// A new table's first metadata, written at its default location but not in
    /// the catalog: a commit that writes it with [`TableWrite::creating`]
    /// registers it, so the table appears with its first snapshot (or never).
    pub async fn unregistered(&self, ident: &TableIdent, spec: TableSpec) -> Result<Table> {
        let (_, name) = split(ident);
        let location = self.default_location(ident);
        let mut properties: HashMap<String, String> = spec.properties.into_iter().collect();
        properties
            .entry("write.parquet.compression-codec".into())
            .or_insert_with(|| "zstd".into());
        let creation = TableCreation::builder()
            .name(name.to_string())
            .location(location.clone())
            .schema(spec.schema)
            .partition_spec_opt(spec.partition_spec)
            .properties(properties)
            .format_version(FormatVersion::V2)
            .build();
        let metadata = TableMetadataBuilder::from_table_creation(creation)?
            .build()?
            .metadata;
        let metadata_location = MetadataLocation::new_with_metadata(&location, &metadata);
        metadata
            .write_to(&self.inner.file_io, &metadata_location)
            .await?;
        self.table_at(ident, &metadata_location.to_string()).await
    }

    /// Load a table, creating it with `spec` when it does not exist (a concurrent
    /// creator winning the race is fine: its table is returned).
    pub async fn load_or_create(
        &self,
        ident: &TableIdent,
        spec: impl FnOnce() -> Result<TableSpec>,
    ) -> Result<Table> {
        match self.load(ident).await {
            Err(CatalogError::TableNotFound { .. }) => match self.create(ident, spec()?).await {
                Err(CatalogError::TableExists { .. }) => self.load(ident).await,
                other => other,
            },
            other => other,
        }
    }

    /// Write new metadata for a table and swap it in (one compare-and-swap).
    pub(crate) async fn write_metadata(
        &self,
        table: &Table,
        metadata: &TableMetadata,
        create: bool,
    ) -> Result<Swap> {
        let current = table.metadata_location_result()?;
        // A table registered from another engine may name its files otherwise
        // (`v3.metadata.json`): its next file starts our numbering.
        let next = match MetadataLocation::from_str(current) {
            Ok(location) => location.with_next_version().with_new_metadata(metadata),
            Err(_) => MetadataLocation::new_with_metadata(metadata.location(), metadata)
                .with_next_version(),
        };
        metadata.write_to(&self.inner.file_io, &next).await?;
        let (namespace, name) = split(table.identifier());
        Ok(Swap {
            namespace,
            table: name.to_string(),
            expected: current.to_string(),
            new: next.to_string(),
            create,
        })
    }
}

fn create_dir(dir: &std::path::Path, what: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| CatalogError::Config {
        field: what.to_string(),
        message: format!("cannot create directory {}: {e}", dir.display()),
    })?;
    let probe = dir.join(".icefjord-write-probe");
    std::fs::write(&probe, b"").map_err(|e| CatalogError::Config {
        field: what.to_string(),
        message: format!("directory {} is not writable: {e}", dir.display()),
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

pub(crate) fn split(ident: &TableIdent) -> (String, &str) {
    (ident.namespace().join("."), ident.name())
}

/// `namespace.table`.
pub fn display(ident: &TableIdent) -> String {
    format!("{}.{}", ident.namespace().join("."), ident.name())
}

/// Parse `namespace.table` (the last dot separates the table name).
pub fn parse_table(name: &str) -> Result<TableIdent> {
    let invalid = || CatalogError::Config {
        field: "table".into(),
        message: format!("{name:?} is not of the form namespace.table"),
    };
    let (namespace, table) = name.rsplit_once('.').ok_or_else(invalid)?;
    if namespace.is_empty() || table.is_empty() {
        return Err(invalid());
    }
    Ok(TableIdent::new(
        NamespaceIdent::from_strs(namespace.split('.')).map_err(|_| invalid())?,
        table.to_string(),
    ))
}

#[async_trait]
impl Catalog for LakeCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> iceberg::Result<Vec<NamespaceIdent>> {
        if parent.is_some() {
            return Ok(vec![]);
        }
        let names = self.namespaces().await?;
        Ok(names
            .into_iter()
            .map(|n| NamespaceIdent::from_strs(n.split('.')))
            .collect::<iceberg::Result<_>>()?)
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<Namespace> {
        let name = namespace.join(".");
        let props: BTreeMap<_, _> = properties.clone().into_iter().collect();
        if !self.inner.db.create_namespace(&name, &props).await? {
            return Err(CatalogError::NamespaceExists { namespace: name }.into());
        }
        Ok(Namespace::with_properties(namespace.clone(), properties))
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<Namespace> {
        let name = namespace.join(".");
        let props = self
            .inner
            .db
            .namespace_properties(&name)
            .await?
            .ok_or(CatalogError::NamespaceNotFound { namespace: name })?;
        Ok(Namespace::with_properties(
            namespace.clone(),
            props.into_iter().collect(),
        ))
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> iceberg::Result<bool> {
        Ok(self
            .inner
            .db
            .namespace_properties(&namespace.join("."))
            .await?
            .is_some())
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        let updates = properties.into_iter().collect();
        self.update_namespace_properties(&namespace.join("."), &updates, &[])
            .await?;
        Ok(())
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<()> {
        Ok(self.drop_namespace_checked(&namespace.join(".")).await?)
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        Ok(self.tables(&namespace.join(".")).await?)
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> iceberg::Result<Table> {
        let ident = TableIdent::new(namespace.clone(), creation.name.clone());
        let spec = TableSpec {
            schema: creation.schema,
            partition_spec: creation.partition_spec,
            properties: creation.properties.into_iter().collect(),
        };
        Ok(self.create(&ident, spec).await?)
    }

    async fn load_table(&self, table: &TableIdent) -> iceberg::Result<Table> {
        Ok(self.load(table).await?)
    }

    async fn drop_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        Ok(self.drop(table, false).await?)
    }

    async fn purge_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        Ok(self.drop(table, true).await?)
    }

    async fn table_exists(&self, table: &TableIdent) -> iceberg::Result<bool> {
        Ok(self.exists(table).await?)
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> iceberg::Result<()> {
        Ok(self.rename(src, dest).await?)
    }

    async fn register_table(
        &self,
        table: &TableIdent,
        metadata_location: String,
    ) -> iceberg::Result<Table> {
        let (namespace, name) = split(table);
        self.ensure_namespace(&namespace).await?;
        if !self
            .inner
            .db
            .insert_object(ObjectKind::Table, &namespace, name, &metadata_location)
            .await?
        {
            return Err(CatalogError::TableExists {
                table: display(table),
            }
            .into());
        }
        Ok(self.table_at(table, &metadata_location).await?)
    }

    /// Apply an iceberg-rust `Transaction` (e.g. `fast_append`): one compare-and-swap,
    /// a lost race is reported as `CatalogCommitConflicts` (iceberg-rust retries it).
    async fn update_table(&self, commit: TableCommit) -> iceberg::Result<Table> {
        let current = self.load(commit.identifier()).await?;
        let staged = commit.apply(current.clone())?;
        let swap = self
            .write_metadata(&current, staged.metadata(), false)
            .await?;
        match self
            .inner
            .db
            .swap(std::slice::from_ref(&swap), &[], &[])
            .await
        {
            Ok(()) => Ok(self.table_at(current.identifier(), &swap.new).await?),
            Err(SwapError::Lost { table }) => Err(iceberg::Error::new(
                iceberg::ErrorKind::CatalogCommitConflicts,
                format!("table {table} changed concurrently"),
            )
            .with_retryable(true)),
            Err(SwapError::Failed(e)) | Err(SwapError::Ambiguous(e)) => Err(e.into()),
        }
    }
}
