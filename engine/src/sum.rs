//! `sum` whose integer and decimal results never wrap: an overflow is an error.
//!
//! DataFusion's `sum` adds integers with wrapping arithmetic, so
//! `sum(9223372036854775807, 1)` over `BIGINT` answers -9223372036854775808. The
//! rule here is DuckDB's and the SQL standard's ("numeric value out of range"):
//! the result keeps its type (`BIGINT` sums are `BIGINT`, `DECIMAL(p, s)` sums are
//! `DECIMAL(min(38, p + 10), s)`), and a sum that does not fit it fails the query
//! with [`overflow`]'s error. PostgreSQL widens `sum(bigint)` to `numeric`
//! instead; we keep the type, as DataFusion's users expect.
//!
//! Invariants:
//! - Every integer, unsigned, duration and decimal add and subtract (row, group,
//!   sliding-window and distinct accumulators, partial and final states) is
//!   checked; a decimal result is also checked against its precision.
//! - Floating-point sums are DataFusion's own (IEEE 754: they overflow to ±inf).
//! - [`LakeSession`](crate::LakeSession) registers [`CheckedSum`] under the name
//!   `sum`, so SQL queries, models and audits use it; code that builds plans
//!   directly uses [`sum`] (DataFusion's `expr_fn::sum` bypasses the registry).
//!
//! Cost: one predictable branch per added value on the group-accumulator fast
//! path, as DataFusion's `PrimitiveGroupsAccumulator` does with its wrapping add.

use std::any::Any;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowNativeTypeOp, ArrowNumericType, AsArray, BooleanArray, PrimitiveArray,
};
use arrow::buffer::NullBuffer;
use arrow::compute::{nullif, prep_null_mask_filter};
use arrow::datatypes::{
    ArrowNativeType, DataType, Decimal128Type, Decimal256Type, Decimal32Type, Decimal64Type,
    DurationMicrosecondType, DurationMillisecondType, DurationNanosecondType, DurationSecondType,
    FieldRef, Int64Type, TimeUnit, UInt64Type,
};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::functions_aggregate::sum::Sum;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, Expr, GroupsAccumulator,
    ReversedUDAF, SetMonotonicity, Signature,
};

/// The error of a sum that does not fit its result type `data_type`; `name` is the
/// aggregate as the query shows it (`sum(t.v)`).
pub fn overflow(name: &str, data_type: &DataType) -> DataFusionError {
    DataFusionError::Execution(format!(
        "arithmetic overflow: {name} does not fit {data_type} (sums never wrap around; \
         a wider argument, e.g. an integer cast to DECIMAL(38, 0), gives a wider sum)"
    ))
}

/// `sum(expr)` with [`CheckedSum`], for plans built without SQL.
pub fn sum(expr: Expr) -> Expr {
    checked_sum_udaf().call(vec![expr])
}

/// The [`CheckedSum`] aggregate function.
pub fn checked_sum_udaf() -> Arc<AggregateUDF> {
    static UDAF: std::sync::OnceLock<Arc<AggregateUDF>> = std::sync::OnceLock::new();
    UDAF.get_or_init(|| Arc::new(AggregateUDF::new_from_impl(CheckedSum::default())))
        .clone()
}

/// DataFusion's `sum` (its signature, result types and float path) with checked
/// integer and decimal arithmetic; see the module invariants.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct CheckedSum {
    inner: Sum,
}

/// Calls `$helper!(ArrowType)` for the checked result types, or evaluates `$other`.
macro_rules! checked_types {
    ($data_type:expr, $helper:ident, $other:expr) => {
        match $data_type {
            DataType::Int64 => $helper!(Int64Type),
            DataType::UInt64 => $helper!(UInt64Type),
            DataType::Decimal32(..) => $helper!(Decimal32Type),
            DataType::Decimal64(..) => $helper!(Decimal64Type),
            DataType::Decimal128(..) => $helper!(Decimal128Type),
            DataType::Decimal256(..) => $helper!(Decimal256Type),
            DataType::Duration(TimeUnit::Second) => $helper!(DurationSecondType),
            DataType::Duration(TimeUnit::Millisecond) => $helper!(DurationMillisecondType),
            DataType::Duration(TimeUnit::Microsecond) => $helper!(DurationMicrosecondType),
            DataType::Duration(TimeUnit::Nanosecond) => $helper!(DurationNanosecondType),
            _ => $other,
        }
    };
}

impl AggregateUDFImpl for CheckedSum {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let data_type = args.return_field.data_type().clone();
        let name = args.name.to_string();
        if args.is_distinct {
            let inner = self.inner.accumulator(args)?;
            macro_rules! helper {
                ($t:ty) => {
                    Ok(Box::new(CheckedDistinctSum::<$t> {
                        inner,
                        name,
                        data_type,
                        _type: std::marker::PhantomData,
                    }))
                };
            }
            return checked_types!(&data_type, helper, Ok(inner));
        }
        macro_rules! helper {
            ($t:ty) => {
                Ok(Box::new(CheckedSumAccumulator::<$t>::new(name, data_type)))
            };
        }
        checked_types!(&data_type, helper, self.inner.accumulator(args))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        let data_type = args.return_field.data_type().clone();
        macro_rules! helper {
            ($t:ty) => {
                Ok(Box::new(CheckedSumGroups::<$t> {
                    sums: Vec::new(),
                    seen: Vec::new(),
                    name: args.name.to_string(),
                    data_type,
                }))
            };
        }
        checked_types!(
            &data_type,
            helper,
            self.inner.create_groups_accumulator(args)
        )
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let data_type = args.return_field.data_type().clone();
        if args.is_distinct {
            // DataFusion's sliding distinct sum adds ScalarValues, which is checked.
            return self.inner.create_sliding_accumulator(args);
        }
        let name = args.name.to_string();
        macro_rules! helper {
            ($t:ty) => {
                Ok(Box::new(CheckedSlidingSum::<$t> {
                    sum: CheckedSumAccumulator::new(name, data_type),
                    count: 0,
                }))
            };
        }
        checked_types!(
            &data_type,
            helper,
            self.inner.create_sliding_accumulator(args)
        )
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        ReversedUDAF::Identical
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.inner.set_monotonicity(data_type)
    }
}

/// Fails with [`overflow`] when a decimal `array` has a value beyond the
/// precision of `data_type` (other types fit by construction).
fn check_precision(array: &dyn Array, name: &str, data_type: &DataType) -> Result<()> {
    macro_rules! validate {
        ($t:ty, $precision:expr) => {
            array
                .as_primitive::<$t>()
                .validate_decimal_precision(*$precision)
        };
    }
    let fits = match data_type {
        DataType::Decimal32(p, _) => validate!(Decimal32Type, p),
        DataType::Decimal64(p, _) => validate!(Decimal64Type, p),
        DataType::Decimal128(p, _) => validate!(Decimal128Type, p),
        DataType::Decimal256(p, _) => validate!(Decimal256Type, p),
        _ => Ok(()),
    };
    fits.map_err(|_| overflow(name, data_type))
}

/// The sum of `values`, checked.
fn checked_total<T: ArrowNumericType>(
    values: &PrimitiveArray<T>,
    name: &str,
    data_type: &DataType,
) -> Result<Option<T::Native>> {
    arrow::compute::sum_checked(values).map_err(|_| overflow(name, data_type))
}

/// The row accumulator: one running sum.
struct CheckedSumAccumulator<T: ArrowNumericType> {
    sum: Option<T::Native>,
    name: String,
    data_type: DataType,
}

impl<T: ArrowNumericType> CheckedSumAccumulator<T> {
    fn new(name: String, data_type: DataType) -> Self {
        Self {
            sum: None,
            name,
            data_type,
        }
    }

    fn add(&mut self, values: &ArrayRef) -> Result<()> {
        let values = values.as_primitive::<T>();
        if let Some(x) = checked_total(values, &self.name, &self.data_type)? {
            let sum = self.sum.unwrap_or(T::Native::usize_as(0));
            let sum = sum
                .add_checked(x)
                .map_err(|_| overflow(&self.name, &self.data_type))?;
            self.sum = Some(sum);
        }
        Ok(())
    }

    fn value(&self) -> Result<ScalarValue> {
        ScalarValue::new_primitive::<T>(self.sum, &self.data_type)
    }
}

impl<T: ArrowNumericType> std::fmt::Debug for CheckedSumAccumulator<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckedSumAccumulator({})", T::DATA_TYPE)
    }
}

impl<T: ArrowNumericType> Accumulator for CheckedSumAccumulator<T> {
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.value()?])
    }

    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.add(&states[0])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let value = self.value()?;
        check_precision(&value.to_array()?, &self.name, &self.data_type)?;
        Ok(value)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.name.len()
    }
}

/// The sliding-window accumulator: a running sum and the count of its values.
struct CheckedSlidingSum<T: ArrowNumericType> {
    sum: CheckedSumAccumulator<T>,
    count: u64,
}

impl<T: ArrowNumericType> std::fmt::Debug for CheckedSlidingSum<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckedSlidingSum({})", T::DATA_TYPE)
    }
}

impl<T: ArrowNumericType> Accumulator for CheckedSlidingSum<T> {
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.sum.value()?, self.count.into()])
    }

    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.count += (values[0].len() - values[0].null_count()) as u64;
        self.sum.add(&values[0])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.sum.add(&states[0])?;
        if let Some(count) = arrow::compute::sum(states[1].as_primitive::<UInt64Type>()) {
            self.count += count;
        }
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (name, data_type) = (&self.sum.name, &self.sum.data_type);
        if let Some(x) = checked_total(values[0].as_primitive::<T>(), name, data_type)? {
            let sum = self.sum.sum.unwrap_or(T::Native::usize_as(0));
            self.sum.sum = Some(sum.sub_checked(x).map_err(|_| overflow(name, data_type))?);
        }
        self.count -= (values[0].len() - values[0].null_count()) as u64;
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.count == 0 {
            return ScalarValue::new_primitive::<T>(None, &self.sum.data_type);
        }
        self.sum.evaluate()
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sum.name.len()
    }
}

/// `sum(DISTINCT …)`: DataFusion's accumulator keeps the distinct values (its
/// state); the sum over them is taken here, checked.
struct CheckedDistinctSum<T: ArrowNumericType> {
    inner: Box<dyn Accumulator>,
    name: String,
    data_type: DataType,
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: ArrowNumericType> std::fmt::Debug for CheckedDistinctSum<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckedDistinctSum({})", T::DATA_TYPE)
    }
}

impl<T: ArrowNumericType> Accumulator for CheckedDistinctSum<T> {
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.update_batch(values)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.merge_batch(states)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut sum = CheckedSumAccumulator::<T>::new(self.name.clone(), self.data_type.clone());
        for state in self.inner.state()? {
            if let ScalarValue::List(list) = state {
                for values in list.iter().flatten() {
                    sum.add(&values)?;
                }
            }
        }
        sum.evaluate()
    }

    fn size(&self) -> usize {
        self.inner.size() + self.name.len()
    }
}

/// The group accumulator: one running sum per group, and whether it saw a value.
struct CheckedSumGroups<T: ArrowNumericType> {
    sums: Vec<T::Native>,
    seen: Vec<bool>,
    name: String,
    data_type: DataType,
}

impl<T: ArrowNumericType> CheckedSumGroups<T> {
    fn emit(&mut self, emit_to: EmitTo) -> Result<PrimitiveArray<T>> {
        let sums = emit_to.take_needed(&mut self.sums);
        let seen = emit_to.take_needed(&mut self.seen);
        Ok(
            PrimitiveArray::<T>::new(sums.into(), Some(NullBuffer::from(seen)))
                .with_data_type(self.data_type.clone()),
        )
    }
}

impl<T: ArrowNumericType> std::fmt::Debug for CheckedSumGroups<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckedSumGroups({})", T::DATA_TYPE)
    }
}

impl<T: ArrowNumericType> GroupsAccumulator for CheckedSumGroups<T> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let values = values[0].as_primitive::<T>();
        self.sums.resize(total_num_groups, T::Native::usize_as(0));
        self.seen.resize(total_num_groups, false);
        let mut overflowed = false;
        if values.null_count() == 0 && opt_filter.is_none() {
            for (&group, &value) in group_indices.iter().zip(values.values().iter()) {
                match self.sums[group].add_checked(value) {
                    Ok(sum) => self.sums[group] = sum,
                    Err(_) => overflowed = true,
                }
                self.seen[group] = true;
            }
        } else {
            for (row, &group) in group_indices.iter().enumerate() {
                let kept = opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
                if !kept || values.is_null(row) {
                    continue;
                }
                match self.sums[group].add_checked(values.value(row)) {
                    Ok(sum) => self.sums[group] = sum,
                    Err(_) => overflowed = true,
                }
                self.seen[group] = true;
            }
        }
        if overflowed {
            return Err(overflow(&self.name, &self.data_type));
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.update_batch(values, group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let sums = self.emit(emit_to)?;
        check_precision(&sums, &self.name, &self.data_type)?;
        Ok(Arc::new(sums))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![Arc::new(self.emit(emit_to)?)])
    }

    /// The state of one row is its value (filtered-out rows are null), as for
    /// DataFusion's `sum`: partial aggregation can be skipped.
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // The state type may be wider (decimal precision + 10): same values.
        let values: ArrayRef = Arc::new(
            values[0]
                .as_primitive::<T>()
                .clone()
                .with_data_type(self.data_type.clone()),
        );
        let values = match opt_filter {
            None => values,
            Some(filter) => {
                let dropped = arrow::compute::not(&prep_null_mask_filter(filter))?;
                nullif(&values, &dropped)?
            }
        };
        Ok(vec![values])
    }

    fn supports_convert_to_state(&self) -> bool {
        true
    }

    fn size(&self) -> usize {
        self.sums.capacity() * std::mem::size_of::<T::Native>() + self.seen.capacity()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn groups() -> CheckedSumGroups<Int64Type> {
        CheckedSumGroups {
            sums: Vec::new(),
            seen: Vec::new(),
            name: "sum(v)".into(),
            data_type: DataType::Int64,
        }
    }

    fn longs(values: &[Option<i64>]) -> ArrayRef {
        Arc::new(Int64Array::from(values.to_vec()))
    }

    #[test]
    fn group_sums_are_exact_until_one_overflows() {
        let mut sums = groups();
        let rows = longs(&[Some(i64::MAX), Some(1), None, Some(-1)]);
        sums.update_batch(&[rows], &[0, 1, 1, 0], None, 3).unwrap();
        let out = sums.evaluate(EmitTo::All).unwrap();
        let expected = longs(&[Some(i64::MAX - 1), Some(1), None]);
        assert_eq!(&out, &expected);

        let mut sums = groups();
        let rows = longs(&[Some(i64::MAX), Some(1)]);
        let err = sums.update_batch(&[rows], &[0, 0], None, 1).unwrap_err();
        assert!(
            err.to_string()
                .contains("overflow: sum(v) does not fit Int64"),
            "{err}"
        );
    }

    #[test]
    fn group_sums_skip_filtered_rows_and_merge_states_checked() {
        let mut sums = groups();
        let rows = longs(&[Some(i64::MAX), Some(1), Some(2)]);
        let filter = BooleanArray::from(vec![Some(true), Some(false), None]);
        sums.update_batch(std::slice::from_ref(&rows), &[0, 0, 0], Some(&filter), 1)
            .unwrap();
        assert_eq!(
            &sums.state(EmitTo::First(1)).unwrap()[0],
            &longs(&[Some(i64::MAX)])
        );

        let state = sums.convert_to_state(&[rows], Some(&filter)).unwrap();
        assert_eq!(&state[0], &longs(&[Some(i64::MAX), None, None]));
        let mut merged = groups();
        merged
            .merge_batch(&[longs(&[Some(i64::MAX)])], &[0], None, 1)
            .unwrap();
        assert!(merged
            .merge_batch(&[longs(&[Some(1)])], &[0], None, 1)
            .is_err());
    }

    #[test]
    fn sliding_sums_retract_without_overflow() {
        let mut sum = CheckedSlidingSum::<Int64Type> {
            sum: CheckedSumAccumulator::new("sum(v)".into(), DataType::Int64),
            count: 0,
        };
        sum.update_batch(&[longs(&[Some(i64::MAX)])]).unwrap();
        sum.retract_batch(&[longs(&[Some(i64::MAX)])]).unwrap();
        assert_eq!(sum.evaluate().unwrap(), ScalarValue::Int64(None));
        sum.update_batch(&[longs(&[Some(5), None])]).unwrap();
        assert_eq!(sum.evaluate().unwrap(), ScalarValue::Int64(Some(5)));
        sum.update_batch(&[longs(&[Some(i64::MAX)])]).unwrap_err();
    }

    #[test]
    fn decimal_sums_beyond_their_precision_are_errors() {
        let mut sum = CheckedSumAccumulator::<Decimal128Type>::new(
            "sum(d)".into(),
            DataType::Decimal128(3, 0),
        );
        let values: ArrayRef = Arc::new(
            arrow::array::Decimal128Array::from(vec![999, 1])
                .with_precision_and_scale(3, 0)
                .unwrap(),
        );
        sum.update_batch(&[values]).unwrap();
        let err = sum.evaluate().unwrap_err();
        assert!(err.to_string().contains("Decimal128(3, 0)"), "{err}");
    }
}
