//! Errors of the sink.

use icefjord_catalog::CatalogError;
use icefjord_engine::EngineError;

pub type Result<T, E = SinkError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("decoding records: {0}")]
    Decode(#[from] arrow::error::ArrowError),
    /// A batch had more bad records than `--max-error-ratio` allows; nothing of it
    /// was committed.
    #[error(
        "{dead} of {consumed} records in a batch from {topic} are bad (ratio {ratio:.3} > max {max}); \
         first error at partition {partition} offset {offset}: {error}. Nothing of the batch was \
         committed; fix the producer, or raise --max-error-ratio to commit the batch with its \
         bad records in the dead-letter table"
    )]
    TooManyErrors {
        topic: String,
        consumed: usize,
        dead: usize,
        ratio: f64,
        max: f64,
        partition: i32,
        offset: i64,
        error: String,
    },
    /// No partition of the topic was assigned to this sink in time.
    #[error("no partition of topic {topic} was assigned to this member of group {group} within {waited:?}: {}",
        if *exists { "the group has more members than the topic has partitions, or the group is stuck rebalancing" }
        else { "the topic does not exist" })]
    NoAssignment {
        exists: bool,
        topic: String,
        group: String,
        waited: std::time::Duration,
    },
    /// A partition's log no longer continues the position the table holds: the
    /// topic was recreated (`high < stored`) or records were deleted by retention
    /// before the sink read them (`low > stored`). Nothing was skipped.
    #[error(
        "partition {partition} of topic {topic}: the table's stored offset is {stored}, but the \
         broker's log spans offsets {low}..{high} ({}); nothing was ingested past it. To move \
         the position deliberately, run once with --reset-offsets {topic}=earliest (ingest what \
         the log holds now) or --reset-offsets {topic}=latest (skip it)",
        if high < stored { "the log is behind the table: was the topic deleted and recreated?" }
        else { "records before the log's start were deleted (retention) before they were read" }
    )]
    LogMoved {
        topic: String,
        partition: i32,
        stored: i64,
        low: i64,
        high: i64,
    },
    /// The events need a schema change that is not a safe evolution.
    #[error("cannot evolve the schema of table {table}: {message}")]
    SchemaEvolution { table: String, message: String },
    /// A background task of the sink (decoding, writing files) panicked.
    #[error("sink task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The table has a column whose type the sink's input rules do not cover
    /// (`data/README.md`), e.g. a nested column another engine added.
    #[error(
        "table {table} has column {column} of type {data_type}, which the sink's input rules \
         do not cover (scalar columns only, data/README.md): it will not guess how JSON maps \
         onto it; drop the column or write it with another tool"
    )]
    UnsupportedColumn {
        table: String,
        column: String,
        data_type: String,
    },
    #[error("invalid sink setting {field}: {message}")]
    Config { field: String, message: String },
}

impl SinkError {
    /// Whether restarting the sink later may help (a broker or catalog was down).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Catalog(e) => e.is_retryable(),
            Self::Engine(e) => e.is_retryable(),
            Self::Kafka(_) | Self::NoAssignment { .. } => true,
            _ => false,
        }
    }
}
