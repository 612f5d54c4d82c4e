//! Column encodings the writer chooses (`TableWriter` in `engine/src/write.rs`).

use std::sync::Arc;

use arrow::array::{Int64Array, StringArray};
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use icefjord_catalog::{parse_table, TableSpec};
use parquet::basic::Encoding;
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::{data_files, lake};

/// A sink table's Kafka offsets never repeat, so they are written without a
/// dictionary (plain), while a repetitive string column keeps its dictionary;
/// the offsets' statistics (which file pruning by position relies on) stay.
#[tokio::test]
async fn kafka_offsets_are_plain_encoded_and_keep_their_statistics() {
    let (_dir, lake) = lake().await;
    let ident = parse_table("raw.offsets").unwrap();
    let string = |id, name| NestedField::required(id, name, Type::Primitive(PrimitiveType::String));
    let long = |id, name| NestedField::required(id, name, Type::Primitive(PrimitiveType::Long));
    let schema = Schema::builder()
        .with_fields(vec![
            string(1, "_kafka_topic").into(),
            long(2, "_kafka_offset").into(),
            long(3, "n").into(),
        ])
        .build()
        .unwrap();
    let spec = TableSpec {
        schema,
        partition_spec: None,
        properties: Default::default(),
    };
    let table = lake.create(&ident, spec).await.unwrap();
    let rows = 5_000;
    let files = data_files(
        &table,
        vec![
            Arc::new(StringArray::from_iter_values((0..rows).map(|_| "topic"))),
            Arc::new(Int64Array::from_iter_values(1_000..1_000 + rows)),
            Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i % 7))),
        ],
    )
    .await;
    assert_eq!(files.len(), 1);
    let path = files[0].file_path();
    let path = path.strip_prefix("file://").unwrap_or(path);
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let row_group = reader.metadata().row_group(0);
    let column = |name: &str| {
        (0..row_group.num_columns())
            .map(|i| row_group.column(i))
            .find(|c| c.column_path().string() == name)
            .unwrap()
    };
    let dictionary = |name: &str| {
        column(name)
            .encodings()
            .any(|e| e == Encoding::RLE_DICTIONARY)
    };
    assert!(!dictionary("_kafka_offset"));
    assert!(dictionary("_kafka_topic"));
    assert!(dictionary("n"));
    let stats = column("_kafka_offset").statistics().unwrap();
    assert_eq!(stats.min_bytes_opt(), Some(&1_000i64.to_le_bytes()[..]));
    assert_eq!(stats.max_bytes_opt(), Some(&5_999i64.to_le_bytes()[..]));
}
