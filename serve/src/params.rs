//! Query parameters: values bound to a plan's placeholders, never formatted
//! into SQL text. The PostgreSQL wire binds `$1..` from its `Bind` message; the
//! HTTP API binds `$1..` from the JSON `params` of `POST /v1/query`
//! ([`bind_json`]) and a named endpoint's `$name` from its typed query string
//! ([`bind_named`]).
//!
//! JSON has no dates or decimals, so a JSON value is cast to the type
//! DataFusion infers for its placeholder (e.g. the column it is compared
//! with): `"2024-01-01"` binds to a date column and `7` to an `Int32` one; a
//! value that does not cast is the client's error (SQLSTATE 22P02), not a
//! NULL. An endpoint's values are typed by their declaration and bound as
//! they are.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::scalar::ScalarValue;
use icefjord_runner::endpoint::{ParamType, ParamValue};

use crate::sqlstate::{self, Failure};

/// The parameter types of a plan, `$1` first (DataFusion's inference; `None`
/// where it has none).
pub fn positional_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, DataFusionError> {
    let types = plan.get_parameter_types()?;
    let mut ordered: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(id, ty)| {
            id.trim_start_matches('$')
                .parse::<usize>()
                .ok()
                .map(|n| (n, ty))
        })
        .collect();
    ordered.sort_by_key(|(n, _)| *n);
    let count = ordered.last().map_or(0, |(n, _)| *n);
    let mut out = vec![None; count];
    for (n, ty) in ordered {
        if n >= 1 {
            out[n - 1] = ty;
        }
    }
    Ok(out)
}

/// Bind JSON values to `$1..` of `plan`: exactly one value per placeholder.
pub fn bind_json(plan: &LogicalPlan, values: &[serde_json::Value]) -> Result<ParamValues, Failure> {
    let types = positional_types(plan).map_err(|e| Failure::datafusion(&e))?;
    if values.len() != types.len() {
        return Err(Failure::new(
            sqlstate::UNDEFINED_PARAMETER,
            format!(
                "the query has {} parameter{} ($1…) and {} value{} were given",
                types.len(),
                if types.len() == 1 { "" } else { "s" },
                values.len(),
                if values.len() == 1 { "" } else { "s" },
            ),
        ));
    }
    let bound = values
        .iter()
        .zip(&types)
        .enumerate()
        .map(|(i, (value, ty))| {
            let name = format!("${}", i + 1);
            cast(&name, scalar_of_json(&name, value)?, ty.as_ref())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ParamValues::from(bound))
}

/// Bind `$name` placeholders to typed values (`None`: SQL NULL of the
/// declared type). The values keep their declared types: DataFusion's type
/// coercion then compares them with what they meet (an `Int64` bound for an
/// `Int32` column widens the column), so every value of the declared type is
/// valid, and one outside the column's range simply matches no row.
pub fn bind_named(
    values: Vec<(String, ParamType, Option<ParamValue>)>,
) -> Result<ParamValues, Failure> {
    let bound = values
        .into_iter()
        .map(|(name, ty, value)| {
            let scalar = match value {
                Some(value) => scalar_of(&value),
                None => {
                    ScalarValue::try_from(&data_type_of(ty)).map_err(|e| Failure::datafusion(&e))?
                }
            };
            Ok((name, scalar))
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    Ok(ParamValues::from(bound))
}

/// The Arrow type a declared parameter type binds as.
pub fn data_type_of(ty: ParamType) -> DataType {
    match ty {
        ParamType::Int => DataType::Int64,
        ParamType::Float => DataType::Float64,
        ParamType::String => DataType::Utf8,
        ParamType::Date => DataType::Date32,
        ParamType::Timestamp => {
            DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None)
        }
        ParamType::Bool => DataType::Boolean,
    }
}

fn scalar_of(value: &ParamValue) -> ScalarValue {
    match value {
        ParamValue::Int(i) => ScalarValue::Int64(Some(*i)),
        ParamValue::Float(f) => ScalarValue::Float64(Some(*f)),
        ParamValue::String(s) => ScalarValue::Utf8(Some(s.clone())),
        ParamValue::Date(days) => ScalarValue::Date32(Some(*days)),
        ParamValue::Timestamp(micros) => ScalarValue::TimestampMicrosecond(Some(*micros), None),
        ParamValue::Bool(b) => ScalarValue::Boolean(Some(*b)),
    }
}

fn scalar_of_json(name: &str, value: &serde_json::Value) -> Result<ScalarValue, Failure> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => ScalarValue::Int64(Some(i)),
            (None, Some(u), _) => ScalarValue::UInt64(Some(u)),
            (None, None, Some(f)) => ScalarValue::Float64(Some(f)),
            _ => {
                return Err(Failure::new(
                    sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
                    format!("parameter {name}: {n} is out of range"),
                ))
            }
        },
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        Value::Array(_) | Value::Object(_) => {
            return Err(Failure::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!(
                    "parameter {name}: a parameter is a string, number, boolean or null, \
                     not an array or object"
                ),
            ))
        }
    })
}

/// `value` as `target` (when the placeholder's type is known).
fn cast(name: &str, value: ScalarValue, target: Option<&DataType>) -> Result<ScalarValue, Failure> {
    let Some(target) = target else {
        return Ok(value);
    };
    if &value.data_type() == target {
        return Ok(value);
    }
    if value.is_null() {
        return ScalarValue::try_from(target).map_err(|e| Failure::datafusion(&e));
    }
    let fractional = matches!(value, ScalarValue::Float64(Some(f)) if f.fract() != 0.0);
    if fractional && target.is_integer() {
        return Err(Failure::new(
            sqlstate::INVALID_TEXT_REPRESENTATION,
            format!("parameter {name}: {value} is not an integer ({target})"),
        ));
    }
    value.cast_to(target).map_err(|e| {
        Failure::new(
            sqlstate::INVALID_TEXT_REPRESENTATION,
            format!("parameter {name}: {value} is not a {target}: {e}"),
        )
    })
}

/// Put the PostgreSQL client's `$1..` values into `statement` as typed
/// literals, before it is planned.
///
/// A value keeps the type the client sent (psycopg's `Decimal('16.175')` is a
/// `numeric`, `100` an `int8`), and the query is then planned as if it had
/// been written with those literals, as `icefjord sql` would plan it: a
/// comparison widens both sides, as PostgreSQL does with a `numeric`
/// parameter. Casting the value to the column's type instead (what binding to
/// an inferred placeholder type does) rounded `16.175` to `16.18` and found
/// rows that PostgreSQL would not. An untyped NULL stays NULL. Literals are
/// AST nodes (DataFusion's unparser), never SQL text.
pub fn bind_literals(
    statement: &mut datafusion::sql::sqlparser::ast::Statement,
    values: &[ScalarValue],
) -> Result<(), Failure> {
    use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Value, VisitMut, VisitorMut};
    use datafusion::sql::unparser::Unparser;
    use std::ops::ControlFlow;

    let unparser = Unparser::default();
    let literals = values
        .iter()
        .map(|value| match decimal_literal(value) {
            Some(literal) => Ok(literal),
            None => unparser
                .expr_to_sql(&datafusion::logical_expr::lit(value.clone()))
                .map_err(|e| Failure::datafusion(&e)),
        })
        .collect::<Result<Vec<_>, _>>()?;

    struct Bind<'a> {
        literals: &'a [SqlExpr],
        missing: Option<String>,
    }

    impl VisitorMut for Bind<'_> {
        type Break = ();

        fn post_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
            if let SqlExpr::Value(value) = expr {
                if let Value::Placeholder(name) = &value.value {
                    let index = name
                        .strip_prefix('$')
                        .and_then(|n| n.parse::<usize>().ok())
                        .and_then(|n| n.checked_sub(1));
                    match index.and_then(|i| self.literals.get(i)) {
                        Some(literal) => *expr = SqlExpr::Nested(Box::new(literal.clone())),
                        None => {
                            self.missing = Some(name.clone());
                            return ControlFlow::Break(());
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }

    let mut bind = Bind {
        literals: &literals,
        missing: None,
    };
    let _ = statement.visit(&mut bind);
    match bind.missing {
        Some(name) => Err(Failure::new(
            sqlstate::UNDEFINED_PARAMETER,
            format!(
                "there is no parameter {name}: {} value(s) were bound",
                values.len()
            ),
        )),
        None => Ok(()),
    }
}

/// A `numeric` value as `CAST('16.175' AS DECIMAL(p, s))`: a bare number
/// literal would be planned as a float (`1.10` times a price gave
/// `17.798000000000002`, and 17 digits and more lost their last ones).
fn decimal_literal(value: &ScalarValue) -> Option<datafusion::sql::sqlparser::ast::Expr> {
    use datafusion::arrow::datatypes::{Decimal128Type, DecimalType};
    use datafusion::sql::sqlparser::ast::{
        CastKind, DataType, ExactNumberInfo, Expr as SqlExpr, Value,
    };
    let ScalarValue::Decimal128(Some(unscaled), precision, scale) = value else {
        return None;
    };
    let text = Decimal128Type::format_decimal(*unscaled, *precision, *scale);
    Some(SqlExpr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(SqlExpr::value(Value::SingleQuotedString(text))),
        data_type: DataType::Decimal(ExactNumberInfo::PrecisionAndScale(
            u64::from(*precision),
            i64::from(*scale),
        )),
        array: false,
        format: None,
    })
}

/// The parameter number of a `$n` placeholder (1-based), if `expr` is one.
fn placeholder_number(expr: &datafusion::sql::sqlparser::ast::Expr) -> Option<usize> {
    use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Value};
    match expr {
        SqlExpr::Value(value) => match &value.value {
            Value::Placeholder(name) => name.strip_prefix('$')?.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// Give the placeholders whose type nothing in the query decides (`SELECT $1`)
/// the type PostgreSQL resolves them to: the type the client declared at
/// Parse, else `text` (an `unknown` literal becomes `text`, PostgreSQL's
/// "Type Conversion" chapter, UNION/CASE and unknown resolution). Each `$n`
/// in `types` (indexed by `n - 1`, `None`: leave it) becomes `CAST($n AS t)`,
/// so Describe reports the column's real type and Execute encodes the value
/// by that type.
pub fn type_placeholders(
    statement: &mut datafusion::sql::sqlparser::ast::Statement,
    types: &[Option<datafusion::sql::sqlparser::ast::DataType>],
) {
    use datafusion::sql::sqlparser::ast::{
        CastKind, DataType, Expr as SqlExpr, VisitMut, VisitorMut,
    };
    use std::ops::ControlFlow;

    struct Typed<'a>(&'a [Option<DataType>]);

    impl VisitorMut for Typed<'_> {
        type Break = ();

        fn post_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
            let typed = placeholder_number(expr)
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| self.0.get(i).cloned().flatten());
            if let Some(data_type) = typed {
                *expr = SqlExpr::Cast {
                    kind: CastKind::Cast,
                    expr: Box::new(expr.clone()),
                    data_type,
                    array: false,
                    format: None,
                };
            }
            ControlFlow::Continue(())
        }
    }

    let _ = statement.visit(&mut Typed(types));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::prelude::SessionContext;
    use serde_json::json;

    use super::*;

    async fn plan(sql: &str) -> LogicalPlan {
        let ctx = SessionContext::new();
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("day", DataType::Date32, false),
            Field::new("name", DataType::Utf8, true),
        ]);
        ctx.register_batch(
            "t",
            datafusion::arrow::record_batch::RecordBatch::new_empty(Arc::new(schema)),
        )
        .unwrap();
        ctx.state().create_logical_plan(sql).await.unwrap()
    }

    fn list(values: ParamValues) -> Vec<ScalarValue> {
        match values {
            ParamValues::List(list) => list.into_iter().map(|v| v.value).collect(),
            ParamValues::Map(_) => panic!("not a list"),
        }
    }

    #[tokio::test]
    async fn json_values_cast_to_the_inferred_types() {
        let plan = plan("SELECT * FROM t WHERE id = $1 AND day >= $2 AND name = $3").await;
        let bound = bind_json(&plan, &[json!(7), json!("2024-01-31"), json!(null)]).unwrap();
        assert_eq!(
            list(bound),
            vec![
                ScalarValue::Int32(Some(7)),
                ScalarValue::Date32(Some(19753)),
                ScalarValue::Utf8(None),
            ]
        );
    }

    #[tokio::test]
    async fn bad_values_are_the_clients_error() {
        let plan = plan("SELECT * FROM t WHERE id = $1").await;
        let e = bind_json(&plan, &[json!("seven")]).unwrap_err();
        assert_eq!(e.code, sqlstate::INVALID_TEXT_REPRESENTATION, "{e}");
        assert!(e.message.contains("parameter $1"), "{e}");
        let e = bind_json(&plan, &[json!(7.5)]).unwrap_err();
        assert_eq!(e.code, sqlstate::INVALID_TEXT_REPRESENTATION, "{e}");
        let e = bind_json(&plan, &[json!([1])]).unwrap_err();
        assert_eq!(e.code, sqlstate::INVALID_PARAMETER_VALUE, "{e}");
        let e = bind_json(&plan, &[]).unwrap_err();
        assert_eq!(e.code, sqlstate::UNDEFINED_PARAMETER, "{e}");
        assert!(e.message.contains("1 parameter ($1…) and 0 values"), "{e}");
        let e = bind_json(&plan, &[json!(1), json!(2)]).unwrap_err();
        assert_eq!(e.code, sqlstate::UNDEFINED_PARAMETER, "{e}");
    }

    #[tokio::test]
    async fn named_values_bind_typed_and_null_when_absent() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (id INT, name VARCHAR) AS VALUES (1, 'a'), (2, NULL), (3, 'c')")
            .await
            .unwrap();
        let sql = "SELECT id FROM t WHERE id <= $top AND ($who IS NULL OR name = $who) ORDER BY id";
        let ids = |top: i64, who: Option<&str>| {
            let ctx = ctx.clone();
            let who = who.map(|w| ParamValue::String(w.into()));
            async move {
                let bound = bind_named(vec![
                    ("top".into(), ParamType::Int, Some(ParamValue::Int(top))),
                    ("who".into(), ParamType::String, who),
                ])
                .unwrap();
                let frame = ctx
                    .sql(sql)
                    .await
                    .unwrap()
                    .with_param_values(bound)
                    .unwrap();
                let batches = frame.collect().await.unwrap();
                let mut out = Vec::new();
                for batch in batches {
                    let ids = batch
                        .column(0)
                        .as_any()
                        .downcast_ref::<datafusion::arrow::array::Int32Array>()
                        .unwrap()
                        .clone();
                    out.extend(ids.iter().flatten());
                }
                out
            }
        };
        assert_eq!(ids(2, None).await, vec![1, 2]);
        assert_eq!(ids(3, Some("c")).await, vec![3]);
        // Beyond the Int32 column's range: no error, the comparison widens.
        assert_eq!(ids(i64::MAX, None).await, vec![1, 2, 3]);
        assert_eq!(ids(i64::MIN, None).await, Vec::<i32>::new());
    }

    #[test]
    fn literals_keep_the_clients_type_and_precision() {
        use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
        use datafusion::sql::sqlparser::parser::Parser;
        let mut statement = Parser::parse_sql(
            &PostgreSqlDialect {},
            "SELECT * FROM t WHERE price = $1 AND name = $2 OR $3 IS NULL",
        )
        .expect("parses")
        .remove(0);
        bind_literals(
            &mut statement,
            &[
                ScalarValue::Decimal128(Some(16175), 38, 3),
                ScalarValue::Utf8(Some("{a, b}".into())),
                ScalarValue::Utf8(None),
            ],
        )
        .expect("binds");
        let text = statement.to_string();
        assert!(text.contains("CAST('16.175' AS DECIMAL(38,3))"), "{text}");
        assert!(text.contains("'{a, b}'"), "{text}");
        assert!(text.contains("NULL"), "{text}");
        let mut missing = Parser::parse_sql(&PostgreSqlDialect {}, "SELECT $2")
            .expect("parses")
            .remove(0);
        let err = bind_literals(&mut missing, &[ScalarValue::Int64(Some(1))]).expect_err("no $2");
        assert_eq!(err.code, sqlstate::UNDEFINED_PARAMETER);
    }

    #[test]
    fn untyped_placeholders_are_cast_where_a_type_is_given() {
        use datafusion::sql::sqlparser::ast::DataType;
        use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
        use datafusion::sql::sqlparser::parser::Parser;
        let mut statement =
            Parser::parse_sql(&PostgreSqlDialect {}, "SELECT $1 AS a, $2 + 1, $1 || 'x'")
                .expect("parses")
                .remove(0);
        type_placeholders(&mut statement, &[Some(DataType::Text), None]);
        assert_eq!(
            statement.to_string(),
            "SELECT CAST($1 AS TEXT) AS a, $2 + 1, CAST($1 AS TEXT) || 'x'"
        );
    }
}
