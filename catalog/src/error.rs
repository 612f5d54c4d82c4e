//! Errors of the catalog crate. Each variant carries the value that caused it and
//! knows whether retrying the same call may help ([`CatalogError::is_retryable`]).

use std::fmt;

/// Result alias of the catalog crate.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// What went wrong in the catalog, the commit path or object storage.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A table named in a query or command is not in the catalog.
    #[error("table {table} does not exist")]
    TableNotFound { table: String },
    /// `create_table` for a name that is taken.
    #[error("table {table} already exists")]
    TableExists { table: String },
    /// A view named in a call is not in the catalog.
    #[error("view {view} does not exist")]
    ViewNotFound { view: String },
    /// Creating or renaming a view to a name a table or view holds.
    #[error("{view} already exists (as a table or a view)")]
    ViewExists { view: String },
    /// A commit would create a table or publish a pipeline view under a name
    /// another kind of object holds (a table, a pipeline view, an Iceberg view
    /// another engine created): nothing was changed.
    #[error("{name} is {by}: drop or rename it first, or write under another name")]
    NameTaken { name: String, by: &'static str },
    /// A change from another engine to a view a pipeline publishes: the
    /// pipeline owns its definition.
    #[error("view {view} is published by {owner}; change it there (its model file), not here")]
    ViewNotWritable { view: String, owner: String },
    /// A namespace (schema) is not in the catalog.
    #[error("namespace {namespace} does not exist")]
    NamespaceNotFound { namespace: String },
    /// `create_namespace` for a name that is taken.
    #[error("namespace {namespace} already exists")]
    NamespaceExists { namespace: String },
    /// A namespace still holds tables.
    #[error("namespace {namespace} is not empty")]
    NamespaceNotEmpty { namespace: String },
    /// A branch or tag that a commit or read names is not on the table.
    #[error("branch or tag {reference} does not exist on table {table}")]
    RefNotFound { table: String, reference: String },
    /// A snapshot id or timestamp that a read names is not in the table's history.
    #[error("table {table} has no snapshot {what}")]
    SnapshotNotFound { table: String, what: String },
    /// The catalog database could not be opened or queried.
    #[error("catalog database {location}: {message}")]
    Database {
        location: String,
        message: String,
        retryable: bool,
    },
    /// Another writer changed data this commit depends on (e.g. an append landed
    /// between the read and the commit of an overwrite). Re-running the writer is needed.
    #[error("commit {commit_id} to table {table} conflicts with a concurrent commit: {reason}")]
    Conflict {
        table: String,
        commit_id: String,
        reason: String,
    },
    /// A commit guard refused the commit on the table's current state (e.g. the
    /// Kafka offsets it would commit were already advanced by another writer).
    #[error("commit {commit_id} to table {table} refused: {reason}")]
    Refused {
        table: String,
        commit_id: String,
        reason: String,
    },
    /// Compare-and-swap kept losing against concurrent writers.
    #[error(
        "commit {commit_id} to table {table} lost the compare-and-swap {attempts} times; giving up"
    )]
    RetriesExhausted {
        table: String,
        commit_id: String,
        attempts: u32,
    },
    /// A lake, warehouse or catalog setting is invalid.
    #[error("invalid setting {field}: {message}")]
    Config { field: String, message: String },
    /// Object storage (local disk or S3) failed.
    #[error("object storage at {location}: {message}")]
    Storage {
        location: String,
        message: String,
        retryable: bool,
    },
    /// An input to the commit path is invalid (wrong partition spec, schema mismatch, ...).
    #[error("invalid commit to table {table}: {message}")]
    InvalidCommit { table: String, message: String },
    /// A catalog-wide branch or tag that a command names does not exist.
    #[error("branch or tag {reference} does not exist (icefjord branch list)")]
    UnknownRef { reference: String },
    /// `branch create` / `tag create` with a name that is taken.
    #[error("branch or tag {reference} already exists")]
    RefExists { reference: String },
    /// A write to a tag: tags are read-only.
    #[error("{reference} is a tag: tags are read-only (write to a branch)")]
    RefNotWritable { reference: String },
    /// A merge found tables changed on both sides since the branch's base, in
    /// ways that do not rebase (not appends on both): nothing was changed.
    #[error(
        "merging {branch} into {into} conflicts on {}: changed (or created) on both since the \
         branch's base, and not only by appends that rebase (appends of the same table, same \
         schema, no Kafka or generator positions); nothing was changed",
        tables.join(", ")
    )]
    MergeConflict {
        branch: String,
        into: String,
        tables: Vec<String>,
    },
    /// A requirement of a change from another engine (REST `assert-*`) does not
    /// hold on the table's current metadata: nothing was changed; reload and retry.
    #[error("commit to {table} failed its requirement: {message}")]
    RequirementFailed { table: String, message: String },
    /// A table location or metadata file outside the lake's warehouse.
    #[error("table {table}: location {location} is outside the warehouse {warehouse}")]
    OutsideWarehouse {
        table: String,
        location: String,
        warehouse: String,
    },
    /// A writer's position (Kafka offsets, a runner boundary, done intervals, …)
    /// cannot be found although the table may hold rows written at it: starting
    /// over would write them twice. See `crate::protocol::position`.
    #[error(
        "table {table} has lost position {key}: {reason}. Nothing was written; to go on, \
         {reset}"
    )]
    PositionLost {
        table: String,
        key: String,
        reason: String,
        /// How to reset the position deliberately (the writer's flag or command).
        reset: String,
    },
    /// A stored position does not parse.
    #[error("table {table} holds an unreadable position {key} = {value:?}: {message}")]
    PositionCorrupt {
        table: String,
        key: String,
        value: String,
        message: String,
    },
    /// An error reported by the Iceberg library (metadata, manifests, Avro).
    #[error("iceberg: {0}")]
    Iceberg(#[from] iceberg::Error),
}

impl CatalogError {
    /// Whether the same call may succeed if tried again later (a service was
    /// unavailable, a lock was held). Conflicts are not retryable here: the commit
    /// path already retried what was safe to retry.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Database { retryable, .. } | Self::Storage { retryable, .. } => *retryable,
            Self::RetriesExhausted { .. } => true,
            Self::Iceberg(e) => e.retryable(),
            _ => false,
        }
    }

    pub(crate) fn database(location: &impl fmt::Display, err: sqlx::Error) -> Self {
        let retryable = matches!(
            err,
            sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
        ) || err.to_string().contains("database is locked");
        let message = match &err {
            sqlx::Error::Database(db) => db.message().to_string(),
            other => other.to_string(),
        };
        Self::Database {
            location: location.to_string(),
            message,
            retryable,
        }
    }

    pub(crate) fn storage(location: impl Into<String>, err: object_store::Error) -> Self {
        let retryable = !matches!(
            err,
            object_store::Error::NotFound { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::InvalidPath { .. }
                | object_store::Error::NotSupported { .. }
                | object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        );
        Self::Storage {
            location: location.into(),
            message: err.to_string(),
            retryable,
        }
    }
}

/// Map our errors onto Iceberg's kinds, for the `iceberg::Catalog` trait.
impl From<CatalogError> for iceberg::Error {
    fn from(err: CatalogError) -> Self {
        use iceberg::ErrorKind;
        if let CatalogError::Iceberg(e) = err {
            return e;
        }
        let kind = match &err {
            CatalogError::TableNotFound { .. } => ErrorKind::TableNotFound,
            CatalogError::TableExists { .. } => ErrorKind::TableAlreadyExists,
            CatalogError::ViewExists { .. } | CatalogError::NameTaken { .. } => {
                ErrorKind::TableAlreadyExists
            }
            CatalogError::NamespaceNotFound { .. } => ErrorKind::NamespaceNotFound,
            CatalogError::NamespaceExists { .. } => ErrorKind::NamespaceAlreadyExists,
            CatalogError::Conflict { .. }
            | CatalogError::RetriesExhausted { .. }
            | CatalogError::RequirementFailed { .. } => ErrorKind::CatalogCommitConflicts,
            CatalogError::InvalidCommit { .. }
            | CatalogError::Config { .. }
            | CatalogError::OutsideWarehouse { .. } => ErrorKind::DataInvalid,
            _ => ErrorKind::Unexpected,
        };
        let retryable = err.is_retryable();
        iceberg::Error::new(kind, err.to_string()).with_retryable(retryable)
    }
}
