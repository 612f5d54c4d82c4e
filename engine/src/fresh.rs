//! The rows of a sink table that an incremental output has not read yet: the
//! shared definition of an output's *boundary* (see `icefjord_runner::boundary`
//! for the protocol), and the `@since:` tables that read past it.
//!
//! `raw."retail_events@since:historical.sales_hourly"` names the rows of
//! `raw.retail_events` past the boundary that `historical.sales_hourly`'s current
//! snapshot records, as of the session's catalog state. Only the data files
//! committed after the input snapshot the output read are scanned (the sink
//! appends in offset order); the offset filter still applies to every row, so a
//! rewritten (compacted) file cannot bring old rows back. A unified view is
//! `output ∪ input@since:output`, exact and as cheap as the new data.

use arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::logical_expr::{cast, lit, Expr};

pub use icefjord_catalog::protocol::columns::{OFFSET, PARTITION, TOPIC};
/// `(topic, partition) → next offset`.
pub use icefjord_catalog::protocol::BoundaryOffsets as Boundary;

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// A filter keeping the rows at or past `boundary` (all rows when it is empty).
/// Built from values, never from SQL text; a handful of partitions makes a small
/// expression, and `_kafka_offset >= n` lets file statistics skip old files.
pub fn fresh_filter(boundary: &Boundary) -> Expr {
    let mut known: Option<Expr> = None;
    let mut past: Option<Expr> = None;
    for ((topic, partition), next) in boundary {
        let here = cast(column(TOPIC), DataType::Utf8)
            .eq(lit(topic.clone()))
            .and(column(PARTITION).eq(lit(*partition)));
        past = Some(match past {
            None => here.clone().and(column(OFFSET).gt_eq(lit(*next))),
            Some(e) => e.or(here.clone().and(column(OFFSET).gt_eq(lit(*next)))),
        });
        known = Some(match known {
            None => here,
            Some(e) => e.or(here),
        });
    }
    match (known, past) {
        (Some(known), Some(past)) => past.or(!known),
        _ => lit(true),
    }
}

/// Marks a `@since:` table name.
pub const SINCE: &str = "@since:";

/// The name, within the input's namespace, of the input's rows past `output`'s
/// boundary: `retail_events@since:historical.sales_hourly`.
pub fn since_name(input_table: &str, output: &str) -> String {
    format!("{input_table}{SINCE}{output}")
}

/// `(input table, output)` of a `@since:` name.
pub fn parse_since(name: &str) -> Option<(&str, &str)> {
    let (input, output) = name.split_once(SINCE)?;
    (!input.is_empty() && output.contains('.')).then_some((input, output))
}
