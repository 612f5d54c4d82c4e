//! Errors of the engine crate.

use icefjord_catalog::CatalogError;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A query failed to plan or run (bad SQL, unknown column, …).
    #[error("{0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// A record batch does not fit the table it is written to.
    #[error("data does not fit table {table}: {message}")]
    SchemaMismatch { table: String, message: String },
    /// A writer's column was dropped from the table by a schema change
    /// (see `icefjord_catalog::writer_columns`); its values are not written.
    #[error(
        "table {table} no longer has column {column} (field id {field_id} was dropped); \
         stop writing it or add the column back"
    )]
    DroppedColumn {
        table: String,
        column: String,
        field_id: i32,
    },
    /// An event schema file is invalid.
    #[error("schema {source_name}: {message}")]
    InvalidSchema {
        source_name: String,
        message: String,
    },
    #[error("iceberg: {0}")]
    Iceberg(#[from] iceberg::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A Delta table could not be read, written or committed.
    #[error("delta table {location}: {message}")]
    Delta { location: String, message: String },
    /// The table's `schema.name-mapping.default` is not the spec's name mapping JSON.
    #[error("table {table}: schema.name-mapping.default is not a valid name mapping: {message}")]
    InvalidNameMapping { table: String, message: String },
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A generator flag out of range, or a top-up whose shape differs from the
    /// table's (`icefjord generate`).
    #[error(transparent)]
    Shape(#[from] crate::generate::shape::ShapeError),
}

impl EngineError {
    /// Whether the same call may succeed when tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Catalog(e) => e.is_retryable(),
            Self::Iceberg(e) => e.retryable(),
            _ => false,
        }
    }

    /// The catalog error behind this one, if any (also when wrapped by DataFusion).
    pub fn catalog_error(&self) -> Option<&CatalogError> {
        match self {
            Self::Catalog(e) => Some(e),
            Self::Query(e) => match e.find_root() {
                datafusion::error::DataFusionError::External(inner) => {
                    inner.downcast_ref::<CatalogError>()
                }
                _ => None,
            },
            _ => None,
        }
    }
}
