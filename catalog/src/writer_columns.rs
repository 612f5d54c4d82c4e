//! Where a writer's column goes once other engines have renamed or dropped the
//! table's columns.
//!
//! Icefjord's writers name their columns as the table's schema named them when
//! the writer was made: the generator's batches, a Kafka producer's JSON keys
//! (the sink's event schema), a query's output. After Spark or PyIceberg renames
//! `store_id` to `store`, the producer still says `store_id`.
//!
//! # Rule
//! A writer's column named `N`, written with the schema `target` (the table's
//! current schema, or the evolution of it that the commit will make current):
//! 1. goes to `target`'s top-level column `N` when there is one (a column dropped
//!    and re-added under its old name is that new column);
//! 2. else, if the newest earlier schema of the table (highest schema id) that has
//!    a top-level column `N` gave it field id `X`, and `target` has `X`, goes to
//!    that column: `N` was renamed;
//! 3. else, if such a schema exists but `target` no longer has `X`, the column was
//!    dropped: its values are refused (the writer reports it), never silently
//!    thrown away;
//! 4. else the table never had `N`.
//!
//! Columns are matched by field id in the data files (the Iceberg spec's "Column
//! Projection"), so rule 2 writes the renamed column's id and every engine reads
//! the values under the new name.

use std::collections::HashMap;

use iceberg::spec::{NestedFieldRef, Schema, TableMetadata};

/// Where a writer's column goes (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub enum WriterColumn<'a> {
    /// The target schema's column of the same name (rule 1).
    Current(&'a NestedFieldRef),
    /// The column was renamed: it is now `field` (rule 2); `schema_id` is the
    /// newest earlier schema that still had the old name.
    Renamed {
        field: &'a NestedFieldRef,
        schema_id: i32,
    },
    /// The column (field id `field_id`, last named so in schema `schema_id`) was
    /// dropped (rule 3).
    Dropped { field_id: i32, schema_id: i32 },
    /// The table never had a top-level column of this name (rule 4).
    Unknown,
}

/// Where the writer's column `name` goes when writing `target`, an evolution of
/// `metadata`'s current schema (see the module docs for the rule).
pub fn resolve_writer_column<'a>(
    metadata: &TableMetadata,
    target: &'a Schema,
    name: &str,
) -> WriterColumn<'a> {
    if let Some(field) = target.as_struct().field_by_name(name) {
        return WriterColumn::Current(field);
    }
    let mut earlier: Vec<_> = metadata.schemas_iter().collect();
    earlier.sort_by_key(|s| std::cmp::Reverse(s.schema_id()));
    let Some((schema_id, field_id)) = earlier.iter().find_map(|schema| {
        let field = schema.as_struct().field_by_name(name)?;
        Some((schema.schema_id(), field.id))
    }) else {
        return WriterColumn::Unknown;
    };
    match target
        .as_struct()
        .fields()
        .iter()
        .find(|f| f.id == field_id)
    {
        Some(field) => WriterColumn::Renamed { field, schema_id },
        None => WriterColumn::Dropped {
            field_id,
            schema_id,
        },
    }
}

/// For each column of the table's current schema that one of `producer_names`
/// names by an old name (rule 2), that old name: current name → producer's name.
/// Used where a producer's keys become columns (the Kafka sink's decoder).
pub fn producer_names<'n>(
    metadata: &TableMetadata,
    producer_names: impl IntoIterator<Item = &'n str>,
) -> HashMap<String, String> {
    let current = metadata.current_schema();
    producer_names
        .into_iter()
        .filter_map(
            |name| match resolve_writer_column(metadata, current, name) {
                WriterColumn::Renamed { field, .. } => Some((field.name.clone(), name.to_string())),
                _ => None,
            },
        )
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use iceberg::spec::{
        FormatVersion, NestedField, PrimitiveType, SortOrder, TableMetadataBuilder, Type,
        UnboundPartitionSpec,
    };

    use super::*;

    fn schema(fields: &[(i32, &str)]) -> Schema {
        Schema::builder()
            .with_fields(
                fields
                    .iter()
                    .map(|(id, name)| {
                        NestedField::optional(*id, *name, Type::Primitive(PrimitiveType::Int))
                            .into()
                    })
                    .collect::<Vec<_>>(),
            )
            .build()
            .unwrap()
    }

    /// A table whose schemas went through `history`, the last one current.
    fn table(history: &[Schema]) -> TableMetadata {
        let mut builder = TableMetadataBuilder::new(
            history[0].clone(),
            UnboundPartitionSpec::builder().build(),
            SortOrder::unsorted_order(),
            "memory://t".into(),
            FormatVersion::V2,
            Default::default(),
        )
        .unwrap();
        for next in &history[1..] {
            builder = builder.add_current_schema(next.clone()).unwrap();
        }
        builder.build().unwrap().metadata
    }

    #[test]
    fn renamed_columns_take_the_old_name_and_dropped_ones_are_named() {
        let metadata = table(&[
            schema(&[(1, "store_id"), (2, "qty"), (3, "note")]),
            // store_id renamed to store; note dropped
            schema(&[(1, "store"), (2, "qty")]),
            // then qty dropped and re-added under its old name
            schema(&[(1, "store"), (4, "qty")]),
        ]);
        let current = metadata.current_schema();
        assert!(matches!(
            resolve_writer_column(&metadata, current, "store_id"),
            WriterColumn::Renamed { field, .. } if field.name == "store"
        ));
        assert!(matches!(
            resolve_writer_column(&metadata, current, "qty"),
            WriterColumn::Current(field) if field.id == 4
        ));
        assert!(matches!(
            resolve_writer_column(&metadata, current, "note"),
            WriterColumn::Dropped { field_id: 3, .. }
        ));
        assert_eq!(
            resolve_writer_column(&metadata, current, "colour"),
            WriterColumn::Unknown
        );
        let names = producer_names(&metadata, ["store_id", "qty", "note"]);
        assert_eq!(names, HashMap::from([("store".into(), "store_id".into())]));
    }

    #[test]
    fn the_newest_earlier_schema_decides() {
        // a → b, then a new column named a, then that one renamed to c: "a"
        // was last the second column's name.
        let metadata = table(&[
            schema(&[(1, "a")]),
            schema(&[(1, "b")]),
            schema(&[(1, "b"), (2, "a")]),
            schema(&[(1, "b"), (2, "c")]),
        ]);
        assert!(matches!(
            resolve_writer_column(&metadata, metadata.current_schema(), "a"),
            WriterColumn::Renamed { field, .. } if field.id == 2
        ));
    }
}
