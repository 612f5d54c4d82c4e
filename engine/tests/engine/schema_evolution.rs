//! Tables whose schema another engine changed (rename, drop and re-add, reorder,
//! nested fields, promotions, files without field ids): every read finds a data
//! file's columns by Iceberg field id, and writers keep writing. The schema
//! changes are made as PyIceberg or Spark make them: a new current schema in new
//! table metadata (which our own commit path refuses to do).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Decimal128Array, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, StructArray,
};
use arrow::datatypes::DataType;
use iceberg::spec::{NestedField, PrimitiveType, Schema, StructType, TableMetadataBuilder, Type};
use iceberg::{Catalog, MetadataLocation, TableIdent};
use icefjord_catalog::{parse_table, CommitId, LakeCatalog, TableWrite};
use icefjord_engine::{LakeSession, TableWriter};

use super::lake;

fn primitive(ty: PrimitiveType) -> Box<Type> {
    Box::new(Type::Primitive(ty))
}

fn decimal(precision: u32) -> PrimitiveType {
    PrimitiveType::Decimal {
        precision,
        scale: 2,
    }
}

fn location_struct(fields: Vec<NestedField>) -> Type {
    Type::Struct(StructType::new(fields.into_iter().map(Arc::new).collect()))
}

/// `events`: id, store_id, price, amount, loc {lat, city} (ids 1 to 7).
fn first_schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(2, "store_id", Type::Primitive(PrimitiveType::Int)).into(),
            NestedField::optional(3, "price", Type::Primitive(PrimitiveType::Float)).into(),
            NestedField::optional(4, "amount", Type::Primitive(decimal(5))).into(),
            NestedField::optional(
                5,
                "loc",
                location_struct(vec![
                    NestedField::optional(6, "lat", Type::Primitive(PrimitiveType::Double)),
                    NestedField::optional(7, "city", Type::Primitive(PrimitiveType::String)),
                ]),
            )
            .into(),
        ])
        .build()
        .unwrap()
}

/// `historical.events` with three rows in one data file written by our writer.
async fn events_table(lake: &LakeCatalog) -> TableIdent {
    let ident = parse_table("historical.events").unwrap();
    let table = lake
        .create(
            &ident,
            icefjord_catalog::TableSpec {
                schema: first_schema(),
                partition_spec: None,
                properties: Default::default(),
            },
        )
        .await
        .unwrap();
    let mut writer = TableWriter::new(&table).await.unwrap();
    let schema = writer.schema().clone();
    let DataType::Struct(loc_fields) = schema.field(4).data_type().clone() else {
        panic!("loc is a struct");
    };
    let loc = StructArray::try_new(
        loc_fields,
        vec![
            Arc::new(Float64Array::from(vec![60.0, 61.0, 62.0])),
            Arc::new(StringArray::from(vec!["Oslo", "Bergen", "Tromsø"])),
        ],
        None,
    )
    .unwrap();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![1, 2, 3])),
        Arc::new(Int32Array::from(vec![7, 8, 9])),
        Arc::new(Float32Array::from(vec![1.5, 2.5, 3.5])),
        Arc::new(
            Decimal128Array::from(vec![125, 250, 375])
                .with_precision_and_scale(5, 2)
                .unwrap(),
        ),
        Arc::new(loc),
    ];
    writer
        .write(RecordBatch::try_new(schema, columns).unwrap())
        .await
        .unwrap();
    let (files, _) = writer.close().await.unwrap();
    append(lake, &ident, files).await;
    ident
}

async fn append(lake: &LakeCatalog, ident: &TableIdent, files: Vec<iceberg::spec::DataFile>) {
    lake.commit(CommitId::mint())
        .with_write(TableWrite::append(ident.clone(), files))
        .execute()
        .await
        .unwrap();
}

/// Make `next` the table's current schema (and add `properties`) as another
/// engine does: new table metadata, swapped into the catalog.
async fn evolve(
    lake: &LakeCatalog,
    ident: &TableIdent,
    next: Schema,
    properties: HashMap<String, String>,
) {
    let table = lake.load(ident).await.unwrap();
    let current = table.metadata_location().unwrap().to_string();
    let mut builder =
        TableMetadataBuilder::new_from_metadata(table.metadata().clone(), Some(current.clone()))
            .add_current_schema(next)
            .unwrap();
    if !properties.is_empty() {
        builder = builder.set_properties(properties).unwrap();
    }
    let metadata = builder.build().unwrap().metadata;
    let location = MetadataLocation::from_str(&current)
        .unwrap()
        .with_next_version()
        .with_new_metadata(&metadata);
    metadata.write_to(table.file_io(), &location).await.unwrap();
    lake.drop_table(ident).await.unwrap();
    lake.register_table(ident, location.to_string())
        .await
        .unwrap();
}

/// `sql`'s result as the pretty-printed table.
async fn rows(lake: &LakeCatalog, sql: &str) -> String {
    let session = LakeSession::new(lake).await.unwrap();
    let batches = session.query(sql).await.unwrap();
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

/// The fields of `first_schema` with `change` applied to the one with `id`.
fn fields_with(change: impl Fn(NestedField) -> Option<NestedField>) -> Vec<Arc<NestedField>> {
    first_schema()
        .as_struct()
        .fields()
        .iter()
        .filter_map(|f| change(f.as_ref().clone()))
        .map(Arc::new)
        .collect()
}

fn schema_of(fields: Vec<Arc<NestedField>>) -> Schema {
    Schema::builder().with_fields(fields).build().unwrap()
}

fn renamed(id: i32, name: &str) -> impl Fn(NestedField) -> Option<NestedField> + '_ {
    move |mut f| {
        if f.id == id {
            f.name = name.to_string();
        }
        Some(f)
    }
}

#[tokio::test]
async fn a_renamed_column_reads_the_values_written_under_its_old_name() {
    let (_dir, lake) = lake().await;
    let ident = events_table(&lake).await;
    evolve(
        &lake,
        &ident,
        schema_of(fields_with(renamed(2, "store"))),
        HashMap::new(),
    )
    .await;
    assert_eq!(
        rows(
            &lake,
            "SELECT id, store FROM historical.events ORDER BY id"
        )
        .await,
        "+----+-------+\n| id | store |\n+----+-------+\n| 1  | 7     |\n| 2  | 8     |\n| 3  | 9     |\n+----+-------+"
    );
    // A predicate on the renamed column prunes with the file column's statistics
    // (store_id 7..9), and keeps the rows.
    assert_eq!(
        rows(
            &lake,
            "SELECT count(*) AS n FROM historical.events WHERE store >= 8"
        )
        .await,
        "+---+\n| n |\n+---+\n| 2 |\n+---+"
    );
    assert_eq!(
        rows(
            &lake,
            "SELECT count(store) AS n FROM historical.events WHERE store < 7"
        )
        .await,
        "+---+\n| n |\n+---+\n| 0 |\n+---+"
    );
}

#[tokio::test]
async fn a_column_dropped_and_added_again_under_its_name_reads_null_in_older_files() {
    let (_dir, lake) = lake().await;
    let ident = events_table(&lake).await;
    // store_id (id 2) dropped, then a new store_id (id 8, a string) added.
    let mut fields = fields_with(|f| (f.id != 2).then_some(f));
    fields.push(Arc::new(NestedField::optional(
        8,
        "store_id",
        Type::Primitive(PrimitiveType::String),
    )));
    evolve(&lake, &ident, schema_of(fields), HashMap::new()).await;
    assert_eq!(
        rows(
            &lake,
            "SELECT id, store_id FROM historical.events ORDER BY id"
        )
        .await,
        "+----+----------+\n| id | store_id |\n+----+----------+\n| 1  |          |\n| 2  |          |\n| 3  |          |\n+----+----------+"
    );
    assert_eq!(
        rows(
            &lake,
            "SELECT count(*) AS n FROM historical.events WHERE store_id IS NULL"
        )
        .await,
        "+---+\n| n |\n+---+\n| 3 |\n+---+"
    );
}

#[tokio::test]
async fn reordered_columns_are_read_by_field_id() {
    let (_dir, lake) = lake().await;
    let ident = events_table(&lake).await;
    let mut fields = fields_with(Some);
    fields.reverse();
    evolve(&lake, &ident, schema_of(fields), HashMap::new()).await;
    assert_eq!(
        rows(
            &lake,
            "SELECT amount, price, store_id, id, loc['city'] AS city \
             FROM historical.events ORDER BY id"
        )
        .await,
        "+--------+-------+----------+----+--------+\n\
         | amount | price | store_id | id | city   |\n\
         +--------+-------+----------+----+--------+\n\
         | 1.25   | 1.5   | 7        | 1  | Oslo   |\n\
         | 2.50   | 2.5   | 8        | 2  | Bergen |\n\
         | 3.75   | 3.5   | 9        | 3  | Tromsø |\n\
         +--------+-------+----------+----+--------+"
    );
}

#[tokio::test]
async fn nested_struct_fields_are_matched_by_field_id() {
    let (_dir, lake) = lake().await;
    let ident = events_table(&lake).await;
    // loc.city renamed to town, loc.lat dropped, loc.lat added again (id 9) and
    // loc.zip added (id 10), in another order.
    let fields = fields_with(|mut f| {
        if f.id == 5 {
            f.field_type = Box::new(location_struct(vec![
                NestedField::optional(10, "zip", Type::Primitive(PrimitiveType::String)),
                NestedField::optional(7, "town", Type::Primitive(PrimitiveType::String)),
                NestedField::optional(9, "lat", Type::Primitive(PrimitiveType::Double)),
            ]));
        }
        Some(f)
    });
    evolve(&lake, &ident, schema_of(fields), HashMap::new()).await;
    assert_eq!(
        rows(
            &lake,
            "SELECT id, loc['town'] AS town, loc['lat'] AS lat, loc['zip'] AS zip \
             FROM historical.events ORDER BY id"
        )
        .await,
        "+----+--------+-----+-----+\n\
         | id | town   | lat | zip |\n\
         +----+--------+-----+-----+\n\
         | 1  | Oslo   |     |     |\n\
         | 2  | Bergen |     |     |\n\
         | 3  | Tromsø |     |     |\n\
         +----+--------+-----+-----+"
    );
}

#[tokio::test]
async fn promoted_types_read_older_files_widened() {
    let (_dir, lake) = lake().await;
    let ident = events_table(&lake).await;
    let fields = fields_with(|mut f| {
        f.field_type = match f.id {
            2 => primitive(PrimitiveType::Long),
            3 => primitive(PrimitiveType::Double),
            4 => primitive(decimal(9)),
            _ => f.field_type,
        };
        Some(f)
    });
    evolve(&lake, &ident, schema_of(fields), HashMap::new()).await;
    assert_eq!(
        rows(
            &lake,
            "SELECT arrow_typeof(store_id) AS s, arrow_typeof(price) AS p, \
             arrow_typeof(amount) AS a, sum(store_id) AS stores, sum(price) AS prices, \
             sum(amount) AS amounts FROM historical.events GROUP BY 1, 2, 3"
        )
        .await,
        "+-------+---------+------------------+--------+--------+---------+\n\
         | s     | p       | a                | stores | prices | amounts |\n\
         +-------+---------+------------------+--------+--------+---------+\n\
         | Int64 | Float64 | Decimal128(9, 2) | 24     | 7.5    | 7.50    |\n\
         +-------+---------+------------------+--------+--------+---------+"
    );
    // Pruning with the promoted column's literal keeps the rows.
    assert_eq!(
        rows(
            &lake,
            "SELECT count(*) AS n FROM historical.events WHERE store_id > 7 AND price < 3.0"
        )
        .await,
        "+---+\n| n |\n+---+\n| 1 |\n+---+"
    );
}

#[tokio::test]
async fn files_without_field_ids_are_read_through_the_name_mapping() {
    let (_dir, lake) = lake().await;
    let ident = events_table(&lake).await;
    // The column that files without ids call store_id is now store.
    let mapping = r#"[{"field-id": 1, "names": ["id"]},
                      {"field-id": 2, "names": ["store_id", "store"]},
                      {"field-id": 3, "names": ["price"]}]"#;
    evolve(
        &lake,
        &ident,
        schema_of(fields_with(renamed(2, "store"))),
        HashMap::from([(
            "schema.name-mapping.default".to_string(),
            mapping.to_string(),
        )]),
    )
    .await;
    // A file written by a tool that sets no field ids (as an imported file).
    let table = lake.load(&ident).await.unwrap();
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(vec![10])) as ArrayRef),
        ("store_id", Arc::new(Int32Array::from(vec![42])) as ArrayRef),
        ("price", Arc::new(Float32Array::from(vec![9.5])) as ArrayRef),
        // not in the mapping: another column, whatever its name
        ("amount", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
    ])
    .unwrap();
    let mut bytes = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let path = format!("{}/data/imported.parquet", table.metadata().location());
    let output = table.file_io().new_output(&path).unwrap();
    let size = bytes.len() as u64;
    output.write(bytes.into()).await.unwrap();
    let file = iceberg::spec::DataFileBuilder::default()
        .content(iceberg::spec::DataContentType::Data)
        .file_path(path)
        .file_format(iceberg::spec::DataFileFormat::Parquet)
        .partition_spec_id(0)
        .record_count(1)
        .file_size_in_bytes(size)
        .build()
        .unwrap();
    append(&lake, &ident, vec![file]).await;
    assert_eq!(
        rows(
            &lake,
            "SELECT id, store, price, amount FROM historical.events WHERE store > 8 ORDER BY id"
        )
        .await,
        "+----+-------+-------+--------+\n\
         | id | store | price | amount |\n\
         +----+-------+-------+--------+\n\
         | 3  | 9     | 3.5   | 3.75   |\n\
         | 10 | 42    | 9.5   |        |\n\
         +----+-------+-------+--------+"
    );
}

#[tokio::test]
async fn writers_naming_a_renamed_column_write_it_and_refuse_a_dropped_one() {
    let (_dir, lake) = lake().await;
    let ident = events_table(&lake).await;
    let fields = fields_with(|f| match f.id {
        3 => None,
        _ => renamed(2, "store")(f),
    });
    evolve(&lake, &ident, schema_of(fields), HashMap::new()).await;
    let table = lake.load(&ident).await.unwrap();
    // The writer still says store_id (as the generator and producers do).
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(vec![4])) as ArrayRef),
        ("store_id", Arc::new(Int32Array::from(vec![11])) as ArrayRef),
    ])
    .unwrap();
    let mut writer = TableWriter::new(&table).await.unwrap();
    writer.write(batch).await.unwrap();
    let (files, _) = writer.close().await.unwrap();
    append(&lake, &ident, files).await;
    assert_eq!(
        rows(&lake, "SELECT id, store FROM historical.events WHERE id >= 3 ORDER BY id").await,
        "+----+-------+\n| id | store |\n+----+-------+\n| 3  | 9     |\n| 4  | 11    |\n+----+-------+"
    );

    let with_price = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(vec![5])) as ArrayRef),
        ("price", Arc::new(Float32Array::from(vec![1.0])) as ArrayRef),
    ])
    .unwrap();
    let mut writer = TableWriter::new(&table).await.unwrap();
    let err = writer.write(with_price).await.unwrap_err().to_string();
    assert!(
        err.contains("historical.events")
            && err.contains("column price")
            && err.contains("dropped"),
        "{err}"
    );
}
