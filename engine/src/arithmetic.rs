//! Integer `+`, `-`, `*` and negation, and decimal `+ - *`, that fail on overflow
//! instead of wrapping around or leaving their precision.
//!
//! DataFusion evaluates integer arithmetic with wrapping kernels
//! (`BIGINT 9223372036854775807 + 1` is -9223372036854775808); its checked mode
//! (`BinaryExpr::with_fail_on_overflow`) has no setting. [`CheckedArithmetic`], an
//! analyzer rule that runs after type coercion, replaces every `+`, `-` and `*`
//! whose operands are both integers by [`CheckedBinary`], which evaluates with
//! Arrow's checked kernels: an overflow fails the query with Arrow's error
//! (`Arithmetic overflow: Overflow happened on: 9223372036854775807 + 1`), as
//! DuckDB and PostgreSQL do. Invariants:
//!
//! - Result types and column names are unchanged: `CheckedBinary` names its
//!   column as the operator did (`t.v + Int64(1)`).
//! - Only integer operands (signed and unsigned, any width) are rewritten; an
//!   integer negation (`-v`) is checked the same way ([`CheckedUnary::Negate`]).
//! - A decimal `+ - *` keeps DataFusion's operator, and its result is checked
//!   against the result type's precision ([`CheckedUnary::DecimalPrecision`]):
//!   DataFusion computes it in 128 bits and would keep a 39-digit value in a
//!   `DECIMAL(38, 0)`. Floats, dates and intervals keep DataFusion's operators.
//! - [`LakeSession`](crate::LakeSession) installs the rule, so queries, models and
//!   audits all follow it.

use std::any::Any;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::compute::kernels::numeric;
use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule; see the module invariants.
#[derive(Debug, Default)]
pub struct CheckedArithmetic;

impl AnalyzerRule for CheckedArithmetic {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let mut schema = merge_schema(&node.inputs());
            if let LogicalPlan::TableScan(scan) = &node {
                schema.merge(scan.projected_schema.as_ref());
            }
            node.map_expressions(|expr| expr.transform_up(|e| checked(e, &schema)))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "icefjord_checked_arithmetic"
    }
}

/// `expr` with an integer `+ - *` replaced by [`CheckedBinary`], an integer
/// negation by [`CheckedUnary::Negate`], and a decimal `+ - *` checked against
/// its result's precision by [`CheckedUnary::DecimalPrecision`].
fn checked(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let integer = |e: &Expr| e.get_type(schema).is_ok_and(|t| t.is_integer());
    let unary = |check: CheckedUnary, arg: Expr| {
        let udf = Arc::new(ScalarUDF::new_from_impl(check));
        Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
            udf,
            vec![arg],
        )))
    };
    match &expr {
        Expr::Negative(inner) if integer(inner) => {
            Ok(unary(CheckedUnary::Negate, inner.as_ref().clone()))
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(op, Operator::Plus | Operator::Minus | Operator::Multiply) =>
        {
            if integer(left) && integer(right) {
                let udf = Arc::new(ScalarUDF::new_from_impl(CheckedBinary::new(*op)));
                let args = vec![left.as_ref().clone(), right.as_ref().clone()];
                return Ok(Transformed::yes(Expr::ScalarFunction(
                    ScalarFunction::new_udf(udf, args),
                )));
            }
            match expr.get_type(schema) {
                Ok(DataType::Decimal128(..)) => Ok(unary(CheckedUnary::DecimalPrecision, expr)),
                _ => Ok(Transformed::no(expr)),
            }
        }
        _ => Ok(Transformed::no(expr)),
    }
}

/// A check of one value that DataFusion leaves unchecked.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
pub enum CheckedUnary {
    /// `-v` of an integer (`-(-9223372036854775808)` does not exist as BIGINT).
    Negate,
    /// A decimal `+ - *` result that needs more digits than its type's
    /// precision (DataFusion computes it in 128 bits and keeps it).
    DecimalPrecision,
}

impl ScalarUDFImpl for CheckedUnary {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        match self {
            Self::Negate => "checked_negate",
            Self::DecimalPrecision => "checked_decimal_precision",
        }
    }

    fn signature(&self) -> &Signature {
        static SIGNATURE: std::sync::OnceLock<Signature> = std::sync::OnceLock::new();
        SIGNATURE.get_or_init(|| Signature::any(1, Volatility::Immutable))
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    /// The checked expression's own column name (`(- t.v)`, `t.a + t.b`).
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(match self {
            Self::Negate => format!("(- {})", args[0].schema_name()),
            Self::DecimalPrecision => args[0].schema_name().to_string(),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arg = &args.args[0];
        let array = arg.to_array(1)?;
        let result = match self {
            Self::Negate => numeric::neg(&array)?,
            Self::DecimalPrecision => {
                if let DataType::Decimal128(precision, scale) = array.data_type() {
                    array
                        .as_primitive::<arrow::datatypes::Decimal128Type>()
                        .validate_decimal_precision(*precision)
                        .map_err(|_| {
                            datafusion::error::DataFusionError::ArrowError(
                                Box::new(arrow::error::ArrowError::ArithmeticOverflow(format!(
                                    "a result does not fit DECIMAL({precision}, {scale})"
                                ))),
                                None,
                            )
                        })?;
                }
                array
            }
        };
        Ok(match arg {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&result, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(result),
        })
    }
}

/// `left op right` over integers of one type, with Arrow's checked kernels.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CheckedBinary {
    op: Operator,
    name: String,
    signature: Signature,
}

impl CheckedBinary {
    /// `op` is `+`, `-` or `*`.
    pub fn new(op: Operator) -> Self {
        let name = match op {
            Operator::Minus => "checked_subtract",
            Operator::Multiply => "checked_multiply",
            _ => "checked_add",
        };
        Self {
            op,
            name: name.to_string(),
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for CheckedBinary {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    /// The operator's own column name, e.g. `t.v + Int64(1)`.
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(format!(
            "{} {} {}",
            args[0].schema_name(),
            self.op,
            args[1].schema_name()
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [left, right] = [&args.args[0], &args.args[1]];
        let scalars = matches!(
            (left, right),
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
        );
        let datum = |v: &ColumnarValue| -> Result<Box<dyn arrow::array::Datum>> {
            Ok(match v {
                ColumnarValue::Array(a) => Box::new(a.clone()),
                ColumnarValue::Scalar(s) => Box::new(s.to_scalar()?),
            })
        };
        let (l, r) = (datum(left)?, datum(right)?);
        let result = match self.op {
            Operator::Minus => numeric::sub(l.as_ref(), r.as_ref())?,
            Operator::Multiply => numeric::mul(l.as_ref(), r.as_ref())?,
            _ => numeric::add(l.as_ref(), r.as_ref())?,
        };
        if scalars {
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&result, 0)?,
            ));
        }
        Ok(ColumnarValue::Array(result))
    }
}
