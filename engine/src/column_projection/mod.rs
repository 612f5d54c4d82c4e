//! Iceberg column projection: the columns of each data file are found by Iceberg
//! field id, never by name (Iceberg spec, "Column Projection").
//!
//! [`ColumnProjection`] is the `PhysicalExprAdapterFactory` of every scan of an
//! [`crate::IcebergTable`]. DataFusion's Parquet reader asks it, once per data
//! file, for an adapter from the table's columns (the read schema, as Arrow) to
//! the file's columns; the adapter rewrites the scan's projection and its pushed
//! down predicate, so row-group and page pruning, late filtering and the output
//! all see the file column with the table column's field id.
//!
//! Invariants:
//! - A table column is read from the file column with its field id (ids from the
//!   file, else from the table's name mapping, else from names: see
//!   [`file_ids`]). A column whose name is in the file under another id (a
//!   dropped column, re-added under its old name) is *not* that column.
//! - A table column the file lacks reads as its `initial-default`, else null.
//! - A file column of another type is cast to the table's type only where
//!   Arrow can (the spec's promotions, string layouts); otherwise reading the
//!   column fails with an error naming it and both types.
//! - The mapping of a file is computed once, when the file is opened (per file
//!   schema), never per batch: each batch only evaluates the rewritten columns.

mod convert;
mod file_ids;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::Result as DfResult;
use datafusion::error::DataFusionError;
use datafusion::physical_expr::expressions::{lit, CastColumnExpr, Column};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapterFactory, PhysicalExprAdapter, PhysicalExprAdapterFactory,
};
use iceberg::spec::{NameMapping, Schema as IcebergSchema, DEFAULT_SCHEMA_NAME_MAPPING};

use crate::error::{EngineError, Result};
use convert::{plan, Conversion, FieldIdProjection, MissingValue};
use file_ids::{file_ids, IdSource};

/// Reads each data file's columns by field id for one read schema (see the
/// module docs).
#[derive(Debug, Clone)]
pub struct ColumnProjection {
    read_schema: Arc<IcebergSchema>,
    name_mapping: Option<Arc<NameMapping>>,
}

impl ColumnProjection {
    /// Projection onto `read_schema` (the snapshot's schema), with the table's
    /// `properties` for its name mapping. Fails on a name mapping that is not the
    /// spec's JSON.
    pub fn try_new(
        table: &str,
        read_schema: Arc<IcebergSchema>,
        properties: &HashMap<String, String>,
    ) -> Result<Self> {
        let name_mapping = properties
            .get(DEFAULT_SCHEMA_NAME_MAPPING)
            .map(|json| {
                serde_json::from_str::<NameMapping>(json).map_err(|e| {
                    EngineError::InvalidNameMapping {
                        table: table.to_string(),
                        message: e.to_string(),
                    }
                })
            })
            .transpose()?
            .map(Arc::new);
        Ok(Self {
            read_schema,
            name_mapping,
        })
    }
}

impl PhysicalExprAdapterFactory for ColumnProjection {
    fn create(
        &self,
        logical_file_schema: SchemaRef,
        physical_file_schema: SchemaRef,
    ) -> DfResult<Arc<dyn PhysicalExprAdapter>> {
        let (ids, source) = file_ids(
            physical_file_schema.fields(),
            self.name_mapping.as_deref(),
            self.read_schema.as_struct(),
        );
        let mut columns = HashMap::with_capacity(logical_file_schema.fields().len());
        for table_field in logical_file_schema.fields() {
            let Some(iceberg) = self
                .read_schema
                .as_struct()
                .field_by_name(table_field.name())
            else {
                continue;
            };
            let found = ids.iter().position(|f| f.id == Some(iceberg.id));
            let column: DfResult<Arc<dyn PhysicalExpr>> = match found {
                None => MissingValue::of(iceberg, table_field.data_type()).map(|v| lit(v.0)),
                Some(index) => {
                    let file_field = physical_file_schema.field(index);
                    let input: Arc<dyn PhysicalExpr> =
                        Arc::new(Column::new(file_field.name(), index));
                    plan(iceberg, table_field, file_field, &ids[index]).map(|conversion| {
                        match conversion {
                            Conversion::Same => input,
                            // A plain cast that pruning and literal
                            // simplification understand.
                            Conversion::Cast(_) => Arc::new(CastColumnExpr::new(
                                input,
                                Arc::new(file_field.clone()),
                                table_field.clone(),
                                None,
                            )),
                            nested => {
                                Arc::new(FieldIdProjection::new(input, nested, table_field.clone()))
                            }
                        }
                    })
                }
            };
            columns.insert(table_field.name().clone(), column.map_err(Arc::new));
        }
        let fallback = DefaultPhysicalExprAdapterFactory
            .create(logical_file_schema, physical_file_schema.clone())?;
        Ok(Arc::new(FileProjection {
            columns,
            source,
            fallback,
        }))
    }
}

/// The table columns of one data file (see [`ColumnProjection`]).
#[derive(Debug)]
struct FileProjection {
    /// Each table column's expression over the file's columns, or why it cannot
    /// be read (reported only when a query uses the column).
    columns: HashMap<String, Result<Arc<dyn PhysicalExpr>, Arc<DataFusionError>>>,
    source: IdSource,
    /// For columns that are not the table's (none today).
    fallback: Arc<dyn PhysicalExprAdapter>,
}

impl PhysicalExprAdapter for FileProjection {
    fn rewrite(&self, expr: Arc<dyn PhysicalExpr>) -> DfResult<Arc<dyn PhysicalExpr>> {
        expr.transform_down(|expr| {
            let Some(column) = expr.as_any().downcast_ref::<Column>() else {
                return Ok(Transformed::no(expr));
            };
            match self.columns.get(column.name()) {
                Some(Ok(replacement)) => Ok(Transformed::new(
                    replacement.clone(),
                    true,
                    datafusion::common::tree_node::TreeNodeRecursion::Jump,
                )),
                Some(Err(e)) => Err(DataFusionError::Shared(e.clone())),
                None => {
                    tracing::debug!(column = column.name(), source = ?self.source, "not a table column");
                    self.fallback.rewrite(expr).map(Transformed::yes)
                }
            }
        })
        .data()
    }
}
