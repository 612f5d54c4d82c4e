//! Rewrites of what drivers send about the catalog, where DataFusion plans
//! less than PostgreSQL does.
//!
//! **Correlated scalar subqueries over `pg_catalog`.** Npgsql's type loading
//! (PostgreSQL ≥ 14) asks `(SELECT rngtypid FROM pg_range WHERE rngmultitypid =
//! typ.oid)`; DataFusion plans a correlated scalar subquery only when it is
//! aggregated ("Correlated scalar subquery must be aggregated to return at most
//! one row"). Over the catalog each such subquery finds at most one row (it
//! looks a row up by its key), so it is wrapped in `max(…)`, which returns the
//! same value. Only subqueries that read `pg_catalog` tables alone are touched:
//! a user's query keeps PostgreSQL's semantics (and DataFusion's error).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem, SetExpr, Statement,
    TableFactor, TableWithJoins, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Aggregates that already return at most one row.
const AGGREGATES: &[&str] = &[
    "count",
    "max",
    "min",
    "sum",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
];

/// Apply the rewrites to `statement`.
pub fn rewrite(statement: &mut Statement) {
    let _ = statement.visit(&mut CatalogSubqueries);
}

struct CatalogSubqueries;

impl VisitorMut for CatalogSubqueries {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Subquery(query) = expr else {
            return ControlFlow::Continue(());
        };
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        if select.projection.len() != 1
            || select.from.is_empty()
            || !select.group_by_is_empty()
            || !select.from.iter().all(reads_catalog_only)
        {
            return ControlFlow::Continue(());
        }
        let item = &mut select.projection[0];
        let (SelectItem::UnnamedExpr(inner) | SelectItem::ExprWithAlias { expr: inner, .. }) = item
        else {
            return ControlFlow::Continue(());
        };
        if is_aggregate(inner) {
            return ControlFlow::Continue(());
        }
        if let Some(wrapped) = max_of(inner.clone()) {
            *inner = wrapped;
        }
        ControlFlow::Continue(())
    }
}

trait GroupByEmpty {
    fn group_by_is_empty(&self) -> bool;
}

impl GroupByEmpty for datafusion::sql::sqlparser::ast::Select {
    fn group_by_is_empty(&self) -> bool {
        match &self.group_by {
            datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(exprs, _) => exprs.is_empty(),
            datafusion::sql::sqlparser::ast::GroupByExpr::All(_) => false,
        }
    }
}

fn reads_catalog_only(table: &TableWithJoins) -> bool {
    std::iter::once(&table.relation)
        .chain(table.joins.iter().map(|join| &join.relation))
        .all(|factor| match factor {
            TableFactor::Table { name, .. } => {
                let parts: Vec<String> = name.0.iter().map(|p| p.to_string()).collect();
                match parts.as_slice() {
                    [table] => table.starts_with("pg_"),
                    [schema, table] => schema == "pg_catalog" && table.starts_with("pg_"),
                    _ => false,
                }
            }
            _ => false,
        })
}

fn is_aggregate(expr: &Expr) -> bool {
    match expr {
        Expr::Function(function) => {
            let name = function.name.to_string().to_ascii_lowercase();
            AGGREGATES.contains(&name.as_str())
        }
        Expr::Nested(inner) => is_aggregate(inner),
        _ => false,
    }
}

/// `max(expr)`, built from a parsed template (no SQL text is assembled).
fn max_of(expr: Expr) -> Option<Expr> {
    let mut template = Parser::new(&PostgreSqlDialect {})
        .try_with_sql("max(NULL)")
        .ok()?
        .parse_expr()
        .ok()?;
    let Expr::Function(function) = &mut template else {
        return None;
    };
    let FunctionArguments::List(list) = &mut function.args else {
        return None;
    };
    *list.args.first_mut()? = FunctionArg::Unnamed(FunctionArgExpr::Expr(expr));
    Some(template)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .remove(0);
        rewrite(&mut statement);
        statement.to_string()
    }

    #[test]
    fn catalog_lookups_are_aggregated() {
        assert_eq!(
            rewritten(
                "SELECT (SELECT rngtypid FROM pg_range WHERE rngmultitypid = typ.oid) FROM pg_type AS typ"
            ),
            "SELECT (SELECT max(rngtypid) FROM pg_range WHERE rngmultitypid = typ.oid) FROM pg_type AS typ"
        );
    }

    #[test]
    fn user_subqueries_and_aggregates_are_left_alone() {
        let user = "SELECT (SELECT a FROM raw.t WHERE t.k = u.k) FROM raw.u";
        assert_eq!(rewritten(user), user);
        let aggregated = "SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = n.oid) FROM pg_namespace AS n";
        assert_eq!(rewritten(aggregated), aggregated);
    }
}
