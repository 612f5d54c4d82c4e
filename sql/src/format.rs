//! Result formatting for the CLI and the front doors: `table` (aligned, for
//! people), `json` (one JSON array of row objects) and `csv` (with a header).

use std::io::Write;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
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
                    writer.write(&nested_as_text(batch)?)?;
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

/// `batch` with its nested columns (structs, lists, maps, which CSV cannot
/// hold, e.g. the `partition` of `raw.t.files`) as text, shown as the table
/// format shows them (`{event_time_day: 2024-01-01}`, `[1, 2]`).
fn nested_as_text(batch: &RecordBatch) -> Result<RecordBatch> {
    if !batch.columns().iter().any(|c| c.data_type().is_nested()) {
        return Ok(batch.clone());
    }
    let options = FormatOptions::default();
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !column.data_type().is_nested() {
            fields.push(field.clone());
            columns.push(column.clone());
            continue;
        }
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
        let text: StringArray = (0..column.len())
            .map(|row| {
                column
                    .is_valid(row)
                    .then(|| formatter.value(row).to_string())
            })
            .collect();
        fields.push(Arc::new(Field::new(field.name(), DataType::Utf8, true)));
        columns.push(Arc::new(text) as ArrayRef);
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
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
    use arrow::array::Int64Array;

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
    fn csv_shows_nested_values_as_text() {
        use arrow::array::{Int32Array, StructArray};
        let day = Arc::new(Field::new("day", DataType::Int32, true));
        let partition = StructArray::from(vec![(
            day,
            Arc::new(Int32Array::from(vec![Some(19_000), None])) as ArrayRef,
        )]);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "partition",
            partition.data_type().clone(),
            false,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(partition)]).unwrap();
        let mut out = Vec::new();
        write_batches(OutputFormat::Csv, &schema, &[batch], &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "partition\n{day: 19000}\n{day: }\n"
        );
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
