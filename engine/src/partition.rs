//! Splitting a record batch by the table's partition spec, in one pass.
//!
//! Each row's partition values are computed with Iceberg's transforms
//! (`day(event_time)`, `bucket(16, id)`, …), row-encoded, and grouped in a hash
//! map; every group is then taken out of the batch once. Cost: O(rows), however
//! many partitions a batch touches. (iceberg-rust's `RecordBatchPartitionSplitter`
//! builds a full-length mask per partition: O(rows × partitions), which dominates
//! a sink batch spanning months of day partitions.) Groups come out in the order
//! their first row appears, so output is deterministic. A batch that is a few runs
//! of distinct partitions (clustered input) is split by zero-copy slices instead.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StructArray, UInt32Array};
use arrow::compute::partition;
use arrow::compute::take_record_batch;
use arrow::datatypes::{
    DataType, Date32Type, TimeUnit, TimestampMicrosecondType, TimestampNanosecondType,
};
use arrow::row::{RowConverter, SortField};
use iceberg::arrow::{arrow_struct_to_literal, PartitionValueCalculator};
use iceberg::spec::{Literal, PartitionKey, PartitionSpecRef, SchemaRef, StructType, Transform};

use crate::error::{EngineError, Result};

/// Runs of equal partition values up to which a batch is split by slicing.
const MAX_RUNS: usize = 16;

/// A batch's rows by partition.
pub struct Split {
    /// Each partition's rows, with its key, in the order their first row appears.
    pub parts: Vec<(PartitionKey, RecordBatch)>,
    /// Whether the parts are slices sharing the batch's buffers (clustered
    /// input) rather than copies.
    pub sliced: bool,
}

pub struct PartitionSplitter {
    calculator: PartitionValueCalculator,
    partition_type: StructType,
    spec: PartitionSpecRef,
    schema: SchemaRef,
    /// `day` fields of a top-level source column: (partition field index, column).
    day_fields: Vec<(usize, String)>,
}

impl PartitionSplitter {
    pub fn try_new(schema: SchemaRef, spec: PartitionSpecRef) -> Result<Self> {
        let calculator = PartitionValueCalculator::try_new(&spec, &schema)?;
        let day_fields = spec
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.transform == Transform::Day)
            .filter_map(|(i, f)| {
                Some((i, schema.as_struct().field_by_id(f.source_id)?.name.clone()))
            })
            .collect();
        Ok(Self {
            partition_type: calculator.partition_type().clone(),
            calculator,
            spec,
            schema,
            day_fields,
        })
    }

    /// The rows of `batch` grouped by partition, with each group's partition key.
    pub fn split(&self, batch: &RecordBatch) -> Result<Split> {
        let values = self.floor_days(batch, self.calculator.calculate(batch)?)?;
        let columns = values.as_struct().columns();
        // Clustered input (ordered query output, time-ordered events): a few runs of
        // distinct partitions come out as zero-copy slices.
        let runs = partition(columns)?.ranges();
        if runs.len() <= MAX_RUNS {
            let mut parts = Vec::with_capacity(runs.len());
            let mut seen = HashSet::with_capacity(runs.len());
            for run in &runs {
                let key = self.key_at(&values, run.start)?;
                if !seen.insert(key.data().clone()) {
                    parts.clear();
                    break;
                }
                parts.push((key, batch.slice(run.start, run.end - run.start)));
            }
            if !parts.is_empty() || batch.num_rows() == 0 {
                return Ok(Split {
                    parts,
                    sliced: true,
                });
            }
        }
        let converter = RowConverter::new(
            columns
                .iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect(),
        )?;
        let rows = converter.convert_columns(columns)?;
        let mut slot_of = HashMap::new();
        let mut groups: Vec<(usize, Vec<u32>)> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let slot = *slot_of.entry(row).or_insert_with(|| {
                groups.push((i, Vec::new()));
                groups.len() - 1
            });
            groups[slot].1.push(i as u32);
        }
        let mut parts = Vec::with_capacity(groups.len());
        for (first, indices) in groups {
            let key = self.key_at(&values, first)?;
            let part = if indices.len() == batch.num_rows() {
                batch.clone()
            } else {
                take_record_batch(batch, &UInt32Array::from(indices))?
            };
            parts.push((key, part));
        }
        Ok(Split {
            parts,
            sliced: false,
        })
    }

    /// `values` with each `day` of a timestamp recomputed as the Iceberg spec says:
    /// whole days since 1970-01-01, rounded down. iceberg-rust 0.10 rounds a
    /// negative timestamp with a fraction of a second toward zero (1969-12-30
    /// 23:59:59.5 becomes day -1, not -2), which would file the row under the
    /// wrong day.
    fn floor_days(&self, batch: &RecordBatch, values: ArrayRef) -> Result<ArrayRef> {
        if self.day_fields.is_empty() {
            return Ok(values);
        }
        let parts = values.as_struct();
        let mut columns = parts.columns().to_vec();
        for (field, name) in &self.day_fields {
            let (Ok(index), Some(column)) =
                (batch.schema().index_of(name), columns.get_mut(*field))
            else {
                continue;
            };
            if column.data_type() != &DataType::Date32 {
                continue;
            }
            let source = batch.column(index);
            let days = match source.data_type() {
                DataType::Timestamp(TimeUnit::Microsecond, _) => source
                    .as_primitive::<TimestampMicrosecondType>()
                    .unary::<_, Date32Type>(|us| us.div_euclid(86_400_000_000) as i32),
                DataType::Timestamp(TimeUnit::Nanosecond, _) => source
                    .as_primitive::<TimestampNanosecondType>()
                    .unary::<_, Date32Type>(|ns| ns.div_euclid(86_400_000_000_000) as i32),
                _ => continue,
            };
            *column = Arc::new(days);
        }
        Ok(Arc::new(StructArray::try_new(
            parts.fields().clone(),
            columns,
            parts.nulls().cloned(),
        )?))
    }

    /// The partition key of row `row`, from the batch's partition `values`.
    fn key_at(&self, values: &ArrayRef, row: usize) -> Result<PartitionKey> {
        let literal = arrow_struct_to_literal(&values.slice(row, 1), &self.partition_type)?
            .into_iter()
            .next()
            .flatten();
        let Some(Literal::Struct(data)) = literal else {
            return Err(EngineError::Iceberg(iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                "a partition value is not a struct",
            )));
        };
        Ok(PartitionKey::new(
            self.spec.as_ref().clone(),
            self.schema.clone(),
            data,
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, TimestampMicrosecondArray};
    use iceberg::arrow::schema_to_arrow_schema;
    use iceberg::spec::{
        NestedField, PartitionSpec, PartitionSpecRef, PrimitiveLiteral, PrimitiveType, Schema,
        SchemaRef, Transform, Type,
    };

    use super::*;

    /// A `ts`, `n` schema partitioned by `day(ts)`, and a batch with a row per day in
    /// `days` (`n` counts the rows).
    fn daily(days: &[i64]) -> (SchemaRef, PartitionSpecRef, RecordBatch) {
        let day = 86_400_000_000i64;
        at(&days.iter().map(|d| d * day + 5).collect::<Vec<_>>())
    }

    /// The same schema and spec, and a batch with a row at each of `micros`.
    fn at(micros: &[i64]) -> (SchemaRef, PartitionSpecRef, RecordBatch) {
        let schema = Arc::new(
            Schema::builder()
                .with_fields(vec![
                    NestedField::required(1, "ts", Type::Primitive(PrimitiveType::Timestamp))
                        .into(),
                    NestedField::required(2, "n", Type::Primitive(PrimitiveType::Int)).into(),
                ])
                .build()
                .unwrap(),
        );
        let spec = Arc::new(
            PartitionSpec::builder(schema.clone())
                .add_partition_field("ts", "ts_day", Transform::Day)
                .unwrap()
                .build()
                .unwrap(),
        );
        let batch = RecordBatch::try_new(
            Arc::new(schema_to_arrow_schema(&schema).unwrap()),
            vec![
                Arc::new(TimestampMicrosecondArray::from(micros.to_vec())),
                Arc::new(Int32Array::from(
                    (0..micros.len() as i32).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        (schema, spec, batch)
    }

    fn split(
        schema: SchemaRef,
        spec: PartitionSpecRef,
        batch: &RecordBatch,
    ) -> Vec<(PartitionKey, RecordBatch)> {
        PartitionSplitter::try_new(schema, spec)
            .unwrap()
            .split(batch)
            .unwrap()
            .parts
    }

    /// Each part's day and its `n` values.
    fn days_and_rows(parts: &[(PartitionKey, RecordBatch)]) -> Vec<(Literal, Vec<i32>)> {
        parts
            .iter()
            .map(|(key, part)| {
                let n = part.column(1).as_primitive::<arrow::datatypes::Int32Type>();
                (key.data().fields()[0].clone().unwrap(), n.values().to_vec())
            })
            .collect()
    }

    #[test]
    fn clustered_rows_are_split_into_slices_of_the_batch() {
        let (schema, spec, batch) = daily(&[4, 4, 2, 2, 2, 7]);
        let parts = split(schema, spec, &batch);
        let got = days_and_rows(&parts);
        let date = |d: i32| Literal::Primitive(PrimitiveLiteral::Int(d));
        assert_eq!(
            got,
            vec![
                (date(4), vec![0, 1]),
                (date(2), vec![2, 3, 4]),
                (date(7), vec![5]),
            ]
        );
        // Zero-copy: each part's values live in the batch's buffer.
        let whole = batch
            .column(1)
            .as_primitive::<arrow::datatypes::Int32Type>();
        let part = parts[1]
            .1
            .column(1)
            .as_primitive::<arrow::datatypes::Int32Type>();
        assert_eq!(part.values().as_ptr(), whole.values()[2..].as_ptr());
    }

    #[test]
    fn days_before_1970_round_down() {
        // 1969-12-30 23:59:59.5 (day -2), 1969-12-31 23:59:59.999999 (day -1),
        // 1969-12-31 00:00:00 (day -1), 1970-01-01 00:00:00.5 (day 0).
        let (schema, spec, batch) = at(&[-86_400_500_000, -1, -86_400_000_000, 500_000]);
        let parts = split(schema, spec, &batch);
        let date = |d: i32| Literal::Primitive(PrimitiveLiteral::Int(d));
        assert_eq!(
            days_and_rows(&parts),
            vec![
                (date(-2), vec![0]),
                (date(-1), vec![1, 2]),
                (date(0), vec![3])
            ]
        );
    }

    #[test]
    fn rows_are_grouped_by_day_once_each_in_first_seen_order() {
        let (schema, spec, batch) = daily(&[3, 1, 3, 2, 1, 3]);
        let parts = split(schema, spec, &batch);
        let got = days_and_rows(&parts);
        let date = |d: i32| Literal::Primitive(PrimitiveLiteral::Int(d));
        assert_eq!(
            got,
            vec![
                (date(3), vec![0, 2, 5]),
                (date(1), vec![1, 4]),
                (date(2), vec![3]),
            ]
        );
    }
}
