//! Integer `+`, `-` and `*` that fail on overflow instead of wrapping around.
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
//! - Only integer operands (signed and unsigned, any width) are rewritten;
//!   decimals, floats, dates and intervals keep DataFusion's operators.
//! - [`LakeSession`](crate::LakeSession) installs the rule, so queries, models and
//!   audits all follow it.

use std::any::Any;
use std::sync::Arc;

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

/// `expr` with an integer `+ - *` replaced by [`CheckedBinary`].
fn checked(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    if !matches!(op, Operator::Plus | Operator::Minus | Operator::Multiply) {
        return Ok(Transformed::no(expr));
    }
    let integer = |e: &Expr| e.get_type(schema).is_ok_and(|t| t.is_integer());
    if !integer(left) || !integer(right) {
        return Ok(Transformed::no(expr));
    }
    let udf = Arc::new(ScalarUDF::new_from_impl(CheckedBinary::new(*op)));
    let args = vec![left.as_ref().clone(), right.as_ref().clone()];
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(udf, args),
    )))
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
