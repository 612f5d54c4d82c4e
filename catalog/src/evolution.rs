//! Schema evolution: the changes a writer may make to a table's schema without
//! rewriting data, and the check the commit path runs before making a new schema
//! current.
//!
//! # Allowed changes (Iceberg's safe evolutions)
//!
//! - **Add an optional column.** It gets a fresh field id above the table's
//!   `last-column-id`; files written before it read as null.
//! - **Promote a type**: `int → long`, `float → double`, `decimal(P,S) →
//!   decimal(P',S)` with `P' > P`. Old files are read with the wider type.
//!
//! Nothing else (dropping, renaming, narrowing, required new columns) is allowed
//! here. A schema produced by [`SchemaEvolution`] is compared with the table's
//! schema *at commit time* by [`check_evolution`]: every field of the current schema
//! must still be there with the same id and name and the same or a promoted type,
//! and every new field must be optional with an id above `last-column-id`. A
//! concurrent evolution that took the same ids for other columns is therefore
//! refused rather than silently mixing two schemas.

use iceberg::spec::{NestedField, NestedFieldRef, PrimitiveType, Schema, Type};

/// Builds an evolved schema from a table's current one.
#[derive(Clone, Debug)]
pub struct SchemaEvolution {
    fields: Vec<NestedFieldRef>,
    next_id: i32,
    identifier_field_ids: Vec<i32>,
}

impl SchemaEvolution {
    /// Start from `current`; new columns get ids above `last_column_id` (the table
    /// metadata's `last-column-id`, which may exceed the schema's highest id).
    pub fn new(current: &Schema, last_column_id: i32) -> Self {
        Self {
            fields: current.as_struct().fields().to_vec(),
            next_id: last_column_id.max(current.highest_field_id()) + 1,
            identifier_field_ids: current.identifier_field_ids().collect(),
        }
    }

    /// Add an optional top-level column (a no-op when it exists with this type).
    pub fn add_column(mut self, name: &str, ty: PrimitiveType) -> Result<Self, String> {
        if let Some(existing) = self.fields.iter().find(|f| f.name == name) {
            return match existing.field_type.as_primitive_type() {
                Some(t) if *t == ty => Ok(self),
                _ => Err(format!(
                    "column {name} already exists as {}, cannot add it as {ty}",
                    existing.field_type
                )),
            };
        }
        let field = NestedField::optional(self.next_id, name, Type::Primitive(ty));
        self.next_id += 1;
        self.fields.push(field.into());
        Ok(self)
    }

    /// Widen a top-level column to `ty` (a no-op when it already has that type).
    pub fn promote(mut self, name: &str, ty: PrimitiveType) -> Result<Self, String> {
        let Some(slot) = self.fields.iter_mut().find(|f| f.name == name) else {
            return Err(format!(
                "cannot widen column {name}: the table has no such column"
            ));
        };
        let from = slot
            .field_type
            .as_primitive_type()
            .ok_or_else(|| format!("cannot widen column {name}: it is not a primitive"))?;
        if *from == ty {
            return Ok(self);
        }
        if !is_promotion(from, &ty) {
            return Err(format!(
                "column {name} cannot change from {from} to {ty} (allowed: int→long, \
                 float→double, decimal precision increase)"
            ));
        }
        let mut field = slot.as_ref().clone();
        field.field_type = Box::new(Type::Primitive(ty));
        *slot = field.into();
        Ok(self)
    }

    pub fn build(self) -> Result<Schema, String> {
        Schema::builder()
            .with_fields(self.fields)
            .with_identifier_field_ids(self.identifier_field_ids)
            .build()
            .map_err(|e| e.to_string())
    }
}

/// Whether `from → to` is a type promotion Iceberg allows.
pub fn is_promotion(from: &PrimitiveType, to: &PrimitiveType) -> bool {
    match (from, to) {
        (PrimitiveType::Int, PrimitiveType::Long) => true,
        (PrimitiveType::Float, PrimitiveType::Double) => true,
        (
            PrimitiveType::Decimal {
                precision: p1,
                scale: s1,
            },
            PrimitiveType::Decimal {
                precision: p2,
                scale: s2,
            },
        ) => s1 == s2 && p2 > p1,
        _ => false,
    }
}

/// Check that `next` is a safe evolution of `current` (see the module docs).
pub fn check_evolution(current: &Schema, last_column_id: i32, next: &Schema) -> Result<(), String> {
    for field in current.as_struct().fields() {
        let Some(new) = next.field_by_id(field.id) else {
            return Err(format!(
                "column {} (id {}) would be dropped",
                field.name, field.id
            ));
        };
        if new.name != field.name {
            return Err(format!(
                "column id {} is {} in the table but {} in the new schema",
                field.id, field.name, new.name
            ));
        }
        if new.required && !field.required {
            return Err(format!(
                "optional column {} cannot become required",
                field.name
            ));
        }
        if new.field_type != field.field_type {
            let promoted = match (
                field.field_type.as_primitive_type(),
                new.field_type.as_primitive_type(),
            ) {
                (Some(from), Some(to)) => is_promotion(from, to),
                _ => false,
            };
            if !promoted {
                return Err(format!(
                    "column {} cannot change from {} to {}",
                    field.name, field.field_type, new.field_type
                ));
            }
        }
    }
    for field in next.as_struct().fields() {
        if current.field_by_id(field.id).is_some() {
            continue;
        }
        if field.id <= last_column_id {
            return Err(format!(
                "new column {} has id {}, but ids up to {last_column_id} are taken \
                 (the table's schema changed concurrently)",
                field.name, field.id
            ));
        }
        if current.field_by_name(&field.name).is_some() {
            return Err(format!(
                "column {} already exists with another id",
                field.name
            ));
        }
        if field.required {
            return Err(format!("new column {} must be optional", field.name));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn current() -> Schema {
        Schema::builder()
            .with_fields(vec![
                NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::required(2, "quantity", Type::Primitive(PrimitiveType::Int)).into(),
                NestedField::optional(3, "score", Type::Primitive(PrimitiveType::Float)).into(),
            ])
            .build()
            .unwrap()
    }

    #[test]
    fn added_columns_are_optional_with_fresh_ids_and_promotions_widen() {
        let next = SchemaEvolution::new(&current(), 5)
            .add_column("coupon", PrimitiveType::String)
            .unwrap()
            .promote("quantity", PrimitiveType::Long)
            .unwrap()
            .promote("score", PrimitiveType::Double)
            .unwrap()
            .build()
            .unwrap();
        let coupon = next.field_by_name("coupon").unwrap();
        assert_eq!(
            coupon.id, 6,
            "above last-column-id, not the schema's highest id"
        );
        assert!(!coupon.required);
        assert_eq!(
            *next.field_by_name("quantity").unwrap().field_type,
            Type::Primitive(PrimitiveType::Long)
        );
        check_evolution(&current(), 5, &next).unwrap();
    }

    #[test]
    fn unsafe_changes_are_refused() {
        let narrowing = SchemaEvolution::new(&current(), 3).promote("id", PrimitiveType::Int);
        assert!(narrowing.unwrap_err().contains("long to int"));
        let retyped = SchemaEvolution::new(&current(), 3).add_column("id", PrimitiveType::String);
        assert!(retyped.unwrap_err().contains("already exists"));
        // A schema built against an older state whose new id was taken meanwhile.
        let next = SchemaEvolution::new(&current(), 3)
            .add_column("coupon", PrimitiveType::String)
            .unwrap()
            .build()
            .unwrap();
        let err = check_evolution(&current(), 4, &next).unwrap_err();
        assert!(err.contains("changed concurrently"), "{err}");
        // Dropping a column.
        let dropped = Schema::builder()
            .with_fields(vec![NestedField::required(
                1,
                "id",
                Type::Primitive(PrimitiveType::Long),
            )
            .into()])
            .build()
            .unwrap();
        assert!(check_evolution(&current(), 3, &dropped)
            .unwrap_err()
            .contains("dropped"));
    }
}
