//! Result formats of the HTTP API, chosen by `?format=` (which wins) or the
//! `Accept` header (JSON when neither names one we have):
//!
//! | `format=` | media type | body |
//! |---|---|---|
//! | `json` | `application/json` | `{"columns": [{"name": "…", "type": "<Arrow type>"}, …], "rows": [{"<column>": value, …}, …]}`: every row object has every column, nulls included; decimals are JSON numbers, timestamps and dates ISO 8601 strings |
//! | `ndjson` | `application/x-ndjson` | one row object a line, no header |
//! | `csv` | `text/csv` | a header line, then the rows (the CSV of `icefjord sql -o csv`) |
//! | `arrow` | `application/vnd.apache.arrow.stream` | an Arrow IPC stream: the schema, one message per record batch, end of stream |
//!
//! Every format streams: each record batch is encoded and sent as it comes
//! from the query, so a response is never held whole in memory.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::writer::LineDelimited;
use datafusion::arrow::record_batch::RecordBatch;
use serde::Serialize;
use utoipa::openapi::{
    ContentBuilder, KnownFormat, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder,
    SchemaFormat, Type,
};
use utoipa::ToSchema;

use super::error::ApiError;

/// A result format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Ndjson,
    Csv,
    Arrow,
}

pub const JSON: &str = "application/json";
pub const NDJSON: &str = "application/x-ndjson";
pub const CSV: &str = "text/csv";
pub const ARROW: &str = "application/vnd.apache.arrow.stream";

impl Format {
    const ALL: [Format; 4] = [Self::Json, Self::Ndjson, Self::Csv, Self::Arrow];

    pub fn media_type(self) -> &'static str {
        match self {
            Self::Json => JSON,
            Self::Ndjson => NDJSON,
            Self::Csv => CSV,
            Self::Arrow => ARROW,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            other => other.media_type(),
        }
    }

    /// The format a request asks for: `?format=` wins over `Accept`; among the
    /// media types of `Accept`, the first of highest `q` that we have
    /// (`*/*` and no header mean JSON, as do types we do not have).
    pub fn negotiate(query: Option<Format>, accept: Option<&str>) -> Format {
        if let Some(format) = query {
            return format;
        }
        let Some(accept) = accept else {
            return Format::Json;
        };
        let mut best: Option<(f32, Format)> = None;
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let Some(format) = Self::ALL.into_iter().find(|f| f.media_type() == media) else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::Json, |(_, format)| format)
    }
}

/// The 200 response of a route answering rows, one content per [`Format`],
/// for the OpenAPI document (`responses(RowsResponse, …)`).
pub struct RowsResponse;

impl utoipa::IntoResponses for RowsResponse {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([("200".to_string(), RefOr::T(rows_response()))])
    }
}

/// See [`RowsResponse`].
pub fn rows_response() -> Response {
    let text = || ObjectBuilder::new().schema_type(Type::String);
    let binary = text().format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)));
    let content = |schema: Option<ObjectBuilder>| match schema {
        Some(schema) => ContentBuilder::new().schema(Some(schema)).build(),
        None => ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("QueryResult")))
            .build(),
    };
    ResponseBuilder::new()
        .description("The rows, streamed in the asked format (`format` parameter or Accept header)")
        .content(JSON, content(None))
        .content(NDJSON, content(Some(text())))
        .content(CSV, content(Some(text())))
        .content(ARROW, content(Some(binary)))
        .build()
}

/// The `columns` of a JSON result.
#[derive(Debug, Serialize, ToSchema)]
pub struct Column {
    pub name: String,
    /// The Arrow data type, e.g. `Int64`, `Utf8`, `Decimal128(38, 2)`.
    #[serde(rename = "type")]
    pub data_type: String,
}

/// A JSON result (`format=json`): the shape of the stream [`Encoder`] writes.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueryResult {
    pub columns: Vec<Column>,
    /// One object per row, column name to value.
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

pub fn columns(schema: &SchemaRef) -> Vec<Column> {
    schema
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
        })
        .collect()
}

/// Encodes one result in one format: [`Encoder::head`], then
/// [`Encoder::batch`] for each record batch, then [`Encoder::tail`].
pub struct Encoder {
    format: Format,
    schema: SchemaRef,
    /// JSON: a row was written (the next needs a comma). CSV: the header was.
    started: bool,
    arrow: Option<StreamWriter<Vec<u8>>>,
}

impl Encoder {
    pub fn new(format: Format, schema: SchemaRef) -> Self {
        Self {
            format,
            schema,
            started: false,
            arrow: None,
        }
    }

    pub fn content_type(&self) -> &'static str {
        self.format.content_type()
    }

    /// What comes before the rows.
    pub fn head(&mut self) -> Result<Bytes, ArrowError> {
        match self.format {
            Format::Json => {
                let columns = serde_json::to_string(&columns(&self.schema))
                    .map_err(|e| ArrowError::JsonError(e.to_string()))?;
                Ok(Bytes::from(format!("{{\"columns\":{columns},\"rows\":[")))
            }
            Format::Arrow => {
                let mut writer = StreamWriter::try_new(Vec::new(), &self.schema)?;
                let bytes = std::mem::take(writer.get_mut());
                self.arrow = Some(writer);
                Ok(Bytes::from(bytes))
            }
            Format::Ndjson | Format::Csv => Ok(Bytes::new()),
        }
    }

    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, ArrowError> {
        match self.format {
            Format::Json => {
                let lines = json_lines(batch)?;
                let mut out = Vec::with_capacity(lines.len() + 1);
                for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    if self.started {
                        out.push(b',');
                    }
                    self.started = true;
                    out.extend_from_slice(line);
                }
                Ok(Bytes::from(out))
            }
            Format::Ndjson => Ok(Bytes::from(json_lines(batch)?)),
            Format::Csv => {
                let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(!self.started)
                    .build(Vec::new());
                writer.write(batch)?;
                self.started = true;
                Ok(Bytes::from(writer.into_inner()))
            }
            Format::Arrow => {
                let writer = self.arrow_writer()?;
                writer.write(batch)?;
                Ok(Bytes::from(std::mem::take(writer.get_mut())))
            }
        }
    }

    /// What comes after the rows.
    pub fn tail(&mut self) -> Result<Bytes, ArrowError> {
        match self.format {
            Format::Json => Ok(Bytes::from_static(b"]}\n")),
            Format::Ndjson => Ok(Bytes::new()),
            Format::Csv if !self.started => {
                self.batch(&RecordBatch::new_empty(Arc::clone(&self.schema)))
            }
            Format::Csv => Ok(Bytes::new()),
            Format::Arrow => {
                let writer = self.arrow_writer()?;
                writer.finish()?;
                Ok(Bytes::from(std::mem::take(writer.get_mut())))
            }
        }
    }

    fn arrow_writer(&mut self) -> Result<&mut StreamWriter<Vec<u8>>, ArrowError> {
        self.arrow
            .as_mut()
            .ok_or_else(|| ArrowError::IpcError("the stream's head was not written".into()))
    }
}

/// The rows of `batch` as JSON objects, one a line, nulls included.
fn json_lines(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut writer = datafusion::arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, LineDelimited>(Vec::new());
    writer.write(batch)?;
    writer.finish()?;
    Ok(writer.into_inner())
}

/// The one row of `batch` (which has exactly one) as a JSON object.
pub fn json_object(batch: &RecordBatch) -> Result<Bytes, ApiError> {
    let mut line = json_lines(batch).map_err(|e| {
        ApiError::from(crate::sqlstate::Failure::datafusion(
            &datafusion::error::DataFusionError::from(e),
        ))
    })?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(Bytes::from(line))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn format_wins_over_accept() {
        assert_eq!(Format::negotiate(None, None), Format::Json);
        assert_eq!(Format::negotiate(None, Some("*/*")), Format::Json);
        assert_eq!(Format::negotiate(None, Some("text/csv")), Format::Csv);
        assert_eq!(
            Format::negotiate(Some(Format::Ndjson), Some("text/csv")),
            Format::Ndjson
        );
        assert_eq!(
            Format::negotiate(
                None,
                Some("text/csv;q=0.5, application/vnd.apache.arrow.stream")
            ),
            Format::Arrow
        );
        assert_eq!(
            Format::negotiate(None, Some("application/x-ndjson;q=0.9, text/csv;q=0")),
            Format::Ndjson
        );
        assert_eq!(Format::negotiate(None, Some("text/html")), Format::Json);
        assert_eq!(Format::negotiate(None, Some("TEXT/CSV ; q=1")), Format::Csv);
    }

    fn batches() -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("category", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let batch = |c: Vec<Option<&str>>, n: Vec<i64>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(c)),
                    Arc::new(Int64Array::from(n)),
                ],
            )
            .unwrap()
        };
        let one = batch(vec![Some("Home, garden"), None], vec![3, 4]);
        let two = batch(vec![Some("Toys")], vec![5]);
        (schema, vec![one, two])
    }

    fn encode(format: Format, schema: SchemaRef, batches: &[RecordBatch]) -> Vec<u8> {
        let mut encoder = Encoder::new(format, schema);
        let mut out = encoder.head().unwrap().to_vec();
        for batch in batches {
            out.extend_from_slice(&encoder.batch(batch).unwrap());
        }
        out.extend_from_slice(&encoder.tail().unwrap());
        out
    }

    #[test]
    fn json_is_columns_and_row_objects_across_batches() {
        let (schema, batches) = batches();
        let out = encode(Format::Json, schema.clone(), &batches);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "columns": [{"name": "category", "type": "Utf8"}, {"name": "n", "type": "Int64"}],
                "rows": [
                    {"category": "Home, garden", "n": 3},
                    {"category": null, "n": 4},
                    {"category": "Toys", "n": 5}
                ]
            })
        );
        let empty: serde_json::Value =
            serde_json::from_slice(&encode(Format::Json, schema, &[])).unwrap();
        assert_eq!(empty["rows"], serde_json::json!([]));
    }

    #[test]
    fn csv_and_ndjson() {
        let (schema, batches) = batches();
        let csv = String::from_utf8(encode(Format::Csv, schema.clone(), &batches)).unwrap();
        assert_eq!(csv, "category,n\n\"Home, garden\",3\n,4\nToys,5\n");
        let empty = String::from_utf8(encode(Format::Csv, schema.clone(), &[])).unwrap();
        assert_eq!(empty, "category,n\n");
        let ndjson = String::from_utf8(encode(Format::Ndjson, schema, &batches)).unwrap();
        assert_eq!(
            ndjson,
            "{\"category\":\"Home, garden\",\"n\":3}\n{\"category\":null,\"n\":4}\n{\"category\":\"Toys\",\"n\":5}\n"
        );
    }

    #[test]
    fn arrow_reads_back() {
        let (schema, batches) = batches();
        let out = encode(Format::Arrow, schema.clone(), &batches);
        let reader =
            datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(out), None)
                .unwrap();
        assert_eq!(reader.schema(), schema);
        let read: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(read, batches);
    }
}
