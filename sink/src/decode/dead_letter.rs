//! Dead letters as rows of the dead-letter table (`<target>_dlq`).

use std::sync::Arc;

use arrow::array::{
    BinaryBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

use super::{millis_to_micros, DeadLetter};

/// The layout of a dead-letter table (`<target>_dlq`).
pub fn dead_letter_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source_topic", DataType::Utf8, false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("source_offset", DataType::Int64, false),
        Field::new(
            "source_timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
        Field::new("stage", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, false),
    ]))
}

/// Dead letters as rows of [`dead_letter_schema`].
pub fn dead_letter_batch(dead: &[DeadLetter]) -> Result<RecordBatch, ArrowError> {
    let n = dead.len();
    let mut topic = StringBuilder::with_capacity(n, n * 16);
    let mut partition = Int32Builder::with_capacity(n);
    let mut offset = Int64Builder::with_capacity(n);
    let mut timestamp = TimestampMicrosecondBuilder::with_capacity(n);
    let mut key = BinaryBuilder::with_capacity(n, 0);
    let mut value = BinaryBuilder::with_capacity(n, 0);
    let mut stage = StringBuilder::with_capacity(n, n * 8);
    let mut error = StringBuilder::with_capacity(n, n * 64);
    for d in dead {
        topic.append_value(&*d.record.topic);
        partition.append_value(d.record.partition);
        offset.append_value(d.record.offset);
        timestamp.append_option(d.record.timestamp_ms.and_then(millis_to_micros));
        key.append_option(d.record.key.as_deref());
        value.append_option(d.record.value.as_deref());
        stage.append_value(d.stage.as_str());
        error.append_value(&d.error);
    }
    RecordBatch::try_new(
        dead_letter_schema(),
        vec![
            Arc::new(topic.finish()),
            Arc::new(partition.finish()),
            Arc::new(offset.finish()),
            Arc::new(timestamp.finish()),
            Arc::new(key.finish()),
            Arc::new(value.finish()),
            Arc::new(stage.finish()),
            Arc::new(error.finish()),
        ],
    )
}
