//! The Iceberg field id of each column of one data file, nested columns included
//! (Iceberg spec, "Column Projection" and "Name Mapping Serialization").
//!
//! A file's ids come from one source, chosen once per file:
//! 1. the Parquet field ids (parquet-rs puts them on the Arrow fields as
//!    [`PARQUET_FIELD_ID_META_KEY`]), when the file has any;
//! 2. else the table's name mapping (`schema.name-mapping.default`): a column
//!    whose name is one of a mapped field's `names` gets its `field-id`;
//! 3. else the read schema's own names: a column gets the id of the field of the
//!    same name at the same place (files written without ids and without a
//!    mapping, as Icefjord read every file before field ids).

use arrow::datatypes::{DataType, Field, Fields};
use iceberg::spec::{MappedField, NameMapping, NestedField, StructType, Type};
use parquet::arrow::PARQUET_FIELD_ID_META_KEY;

/// One column of a data file: its field id (if it has one) and its children
/// (struct fields; a list's element; a map's key and value), in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileField {
    pub(crate) id: Option<i32>,
    pub(crate) children: Vec<FileField>,
}

/// Where a file's field ids come from (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdSource {
    Parquet,
    NameMapping,
    Names,
}

/// The field ids of the top-level columns `fields` of one file, and where they
/// came from. `read_schema` is the table schema the read uses (for
/// [`IdSource::Names`]).
pub(crate) fn file_ids(
    fields: &Fields,
    name_mapping: Option<&NameMapping>,
    read_schema: &StructType,
) -> (Vec<FileField>, IdSource) {
    if fields.iter().any(|f| parquet_id(f).is_some()) {
        let ids = fields.iter().map(|f| from_parquet(f)).collect();
        return (ids, IdSource::Parquet);
    }
    if let Some(mapping) = name_mapping {
        let mapped: Vec<&MappedField> = mapping.fields().iter().collect();
        return (by_name(fields, &mapped), IdSource::NameMapping);
    }
    let named: Vec<&NestedField> = read_schema.fields().iter().map(|f| f.as_ref()).collect();
    (by_name(fields, &named), IdSource::Names)
}

fn parquet_id(field: &Field) -> Option<i32> {
    field
        .metadata()
        .get(PARQUET_FIELD_ID_META_KEY)
        .and_then(|v| v.parse().ok())
}

/// The children of a nested Arrow type, in the order [`FileField::children`] keeps.
pub(crate) fn arrow_children(data_type: &DataType) -> Vec<&Field> {
    match data_type {
        DataType::Struct(fields) => fields.iter().map(|f| f.as_ref()).collect(),
        DataType::List(element)
        | DataType::LargeList(element)
        | DataType::ListView(element)
        | DataType::LargeListView(element)
        | DataType::FixedSizeList(element, _) => vec![element.as_ref()],
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) => kv.iter().map(|f| f.as_ref()).collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// The children of a nested Iceberg type, in the same order as [`arrow_children`].
pub(crate) fn iceberg_children(ty: &Type) -> Vec<&NestedField> {
    match ty {
        Type::Struct(s) => s.fields().iter().map(|f| f.as_ref()).collect(),
        Type::List(l) => vec![l.element_field.as_ref()],
        Type::Map(m) => vec![m.key_field.as_ref(), m.value_field.as_ref()],
        Type::Primitive(_) => Vec::new(),
    }
}

fn from_parquet(field: &Field) -> FileField {
    FileField {
        id: parquet_id(field),
        children: arrow_children(field.data_type())
            .into_iter()
            .map(from_parquet)
            .collect(),
    }
}

/// Where ids come from for a file without Parquet field ids: a name-mapping
/// entry, or a field of the read schema.
trait IdNode: Copy {
    fn id(self) -> Option<i32>;
    fn is_named(self, name: &str) -> bool;
    /// Children in [`arrow_children`]'s order for lists and maps.
    fn children(self) -> Vec<Self>;
}

impl IdNode for &MappedField {
    fn id(self) -> Option<i32> {
        self.field_id()
    }
    fn is_named(self, name: &str) -> bool {
        self.names().iter().any(|n| n == name)
    }
    fn children(self) -> Vec<Self> {
        self.fields().iter().map(|f| f.as_ref()).collect()
    }
}

impl IdNode for &NestedField {
    fn id(self) -> Option<i32> {
        Some(self.id)
    }
    fn is_named(self, name: &str) -> bool {
        self.name == name
    }
    fn children(self) -> Vec<Self> {
        iceberg_children(&self.field_type)
    }
}

/// The ids of `fields` from the nodes of the same names.
fn by_name<N: IdNode>(fields: &Fields, nodes: &[N]) -> Vec<FileField> {
    fields
        .iter()
        .map(|f| assign(f, nodes.iter().copied().find(|n| n.is_named(f.name()))))
        .collect()
}

/// `field`'s id from `node`, and its children's from `node`'s children: a
/// struct's by name; a list's element or a map's key and value by place (their
/// names differ between writers: `element`, `item`, `array`; `key_value`).
fn assign<N: IdNode>(field: &Field, node: Option<N>) -> FileField {
    let nodes: Vec<N> = node.map(IdNode::children).unwrap_or_default();
    let by_place = !matches!(field.data_type(), DataType::Struct(_));
    FileField {
        id: node.and_then(IdNode::id),
        children: arrow_children(field.data_type())
            .into_iter()
            .enumerate()
            .map(|(i, child)| {
                let node = if by_place {
                    nodes.get(i).copied()
                } else {
                    nodes.iter().copied().find(|n| n.is_named(child.name()))
                };
                assign(child, node)
            })
            .collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use iceberg::spec::PrimitiveType;

    use super::*;

    fn with_id(field: Field, id: i32) -> Field {
        field.with_metadata(HashMap::from([(
            PARQUET_FIELD_ID_META_KEY.to_string(),
            id.to_string(),
        )]))
    }

    fn read_schema() -> StructType {
        StructType::new(vec![
            NestedField::optional(1, "store", Type::Primitive(PrimitiveType::Int)).into(),
            NestedField::optional(2, "price", Type::Primitive(PrimitiveType::Double)).into(),
        ])
    }

    #[test]
    fn parquet_ids_win_over_names() {
        let fields = Fields::from(vec![
            with_id(Field::new("store_id", DataType::Int32, true), 1),
            with_id(Field::new("store", DataType::Int32, true), 7),
        ]);
        let (ids, source) = file_ids(&fields, None, &read_schema());
        assert_eq!(source, IdSource::Parquet);
        assert_eq!(ids[0].id, Some(1));
        assert_eq!(ids[1].id, Some(7));
    }

    #[test]
    fn files_without_ids_use_the_name_mapping_then_names() {
        let fields = Fields::from(vec![
            Field::new("store_id", DataType::Int32, true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]);
        let mapping: NameMapping = serde_json::from_str(
            r#"[{"field-id": 1, "names": ["store_id", "store"]},
                {"field-id": 3, "names": ["tags"],
                 "fields": [{"field-id": 4, "names": ["element"]}]}]"#,
        )
        .unwrap();
        let (ids, source) = file_ids(&fields, Some(&mapping), &read_schema());
        assert_eq!(source, IdSource::NameMapping);
        assert_eq!(ids[0].id, Some(1));
        assert_eq!(ids[1].id, Some(3));
        assert_eq!(ids[1].children[0].id, Some(4), "item is the list's element");

        let (ids, source) = file_ids(&fields, None, &read_schema());
        assert_eq!(source, IdSource::Names);
        assert_eq!(ids[0].id, None, "store_id is no column of the read schema");
    }
}
