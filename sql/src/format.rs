//! Result formatting for the CLI and the front doors: `table` (aligned, for
//! people), `json` (one JSON array of row objects) and `csv` (with a header).

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};

use crate::error::{Result, SqlError};

/// How query results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
    Csv,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Self::Table),
            "json" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            other => Err(format!(
                "unknown output format {other:?} (table, json or csv)"
            )),
        }
    }
}

/// Write `batches` (all of `schema`) to `out` in `format`.
pub fn write_batches(
    format: OutputFormat,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    out: &mut dyn Write,
) -> Result<()> {
    match format {
        OutputFormat::Json => {
            // Every row object has every column, null or not (as DuckDB's and
            // psql's JSON output do), so clients can index rows by column name.
            let mut writer = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(Vec::new());
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs)?;
            writer.finish()?;
            let mut bytes = writer.into_inner();
            if bytes.is_empty() {
                bytes.extend_from_slice(b"[]");
            }
            out.write_all(&bytes).map_err(SqlError::Output)?;
            out.write_all(b"\n").map_err(SqlError::Output)?;
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            if batches.is_empty() {
                let header: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                drop(writer);
                writeln!(out, "{}", header.join(",")).map_err(SqlError::Output)?;
            } else {
                for batch in batches {
                    writer.write(batch)?;
                }
            }
        }
        OutputFormat::Table => {
            let table = render_table(schema, batches)?;
            writeln!(out, "{table}").map_err(SqlError::Output)?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            writeln!(out, "{rows} row{}", if rows == 1 { "" } else { "s" })
                .map_err(SqlError::Output)?;
        }
    }
    Ok(())
}

fn render_table(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Table> {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(schema.fields().iter().map(|f| Cell::new(f.name())));
    let options = FormatOptions::default().with_null("NULL");
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            table.add_row(formatters.iter().zip(batch.columns()).map(|(f, c)| {
                let cell = Cell::new(f.value(row));
                if c.data_type().is_numeric() {
                    cell.set_alignment(CellAlignment::Right)
                } else {
                    cell
                }
            }));
        }
    }
    Ok(table)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn sample() -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("category", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("Home"), None])),
                Arc::new(Int64Array::from(vec![3, 4])),
            ],
        )
        .unwrap();
        (schema, vec![batch])
    }

    #[test]
    fn json_is_one_array_of_row_objects() {
        let (schema, batches) = sample();
        let mut out = Vec::new();
        write_batches(OutputFormat::Json, &schema, &batches, &mut out).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value,
            serde_json::json!([{"category": "Home", "n": 3}, {"category": null, "n": 4}])
        );
        let mut out = Vec::new();
        write_batches(OutputFormat::Json, &schema, &[], &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().trim(), "[]");
    }

    #[test]
    fn csv_has_a_header_even_without_rows() {
        let (schema, batches) = sample();
        let mut out = Vec::new();
        write_batches(OutputFormat::Csv, &schema, &batches, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "category,n\nHome,3\n,4\n");
        let mut out = Vec::new();
        write_batches(OutputFormat::Csv, &schema, &[], &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "category,n\n");
    }

    #[test]
    fn table_shows_nulls_and_a_row_count() {
        let (schema, batches) = sample();
        let mut out = Vec::new();
        write_batches(OutputFormat::Table, &schema, &batches, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("NULL") && text.contains("Home") && text.ends_with("2 rows\n"),
            "{text}"
        );
    }
}
