//! Run history: the Iceberg table `icefjord.runs`, one row per model per run,
//! queryable like any table (`SELECT * FROM icefjord.runs`).
//!
//! A successful run's rows are appended in the same commit that publishes its
//! outputs, so a run is in the history exactly when its outputs are published;
//! that commit's id, `run:<pipeline>:<run id>`, is how a re-run with the same run
//! id is recognised as done. A failed run's rows are committed on their own, under
//! another id, so retrying a failed run id runs it again.
//!
//! `snapshot_id` is the output's published snapshot, or for a Delta output
//! (`target = "delta"`) the Delta version the run committed.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use iceberg::spec::{NestedField, PrimitiveType, Type};
use iceberg::TableIdent;
use icefjord_catalog::{CommitId, LakeCatalog, TableSpec};

use crate::error::Result;
use crate::report::RunReport;

/// `icefjord.runs`.
pub fn runs_table() -> TableIdent {
    TableIdent::new(
        iceberg::NamespaceIdent::new("icefjord".into()),
        "runs".into(),
    )
}

/// The commit id that publishes run `run_id` of `pipeline`.
pub fn publish_commit_id(pipeline: &str, run_id: &str) -> CommitId {
    CommitId::new(format!("run:{pipeline}:{run_id}"))
}

const COLUMNS: [(&str, PrimitiveType, bool); 13] = [
    ("run_id", PrimitiveType::String, true),
    ("pipeline", PrimitiveType::String, true),
    ("model", PrimitiveType::String, true),
    ("kind", PrimitiveType::String, true),
    ("status", PrimitiveType::String, true),
    ("rows", PrimitiveType::Long, false),
    ("files", PrimitiveType::Int, false),
    ("snapshot_id", PrimitiveType::Long, false),
    ("commit_id", PrimitiveType::String, false),
    ("started_at", PrimitiveType::Timestamptz, true),
    ("finished_at", PrimitiveType::Timestamptz, true),
    ("duration_ms", PrimitiveType::Long, true),
    ("error", PrimitiveType::String, false),
];

/// `icefjord.runs`, created on first use.
pub async fn ensure_runs_table(catalog: &LakeCatalog) -> Result<iceberg::table::Table> {
    let fields = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (name, ty, required))| {
            let ty = Type::Primitive(ty.clone());
            let id = i as i32 + 1;
            Arc::new(if *required {
                NestedField::required(id, *name, ty)
            } else {
                NestedField::optional(id, *name, ty)
            })
        })
        .collect::<Vec<_>>();
    let schema = iceberg::spec::Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(icefjord_engine::EngineError::from)?;
    Ok(catalog
        .load_or_create(&runs_table(), || {
            Ok(TableSpec {
                schema,
                partition_spec: None,
                properties: Default::default(),
            })
        })
        .await?)
}

/// The history rows of `report`: one per model.
pub fn rows(report: &RunReport, commit_id: &CommitId) -> Result<RecordBatch> {
    let n = report.models.len();
    let mut run_id = StringBuilder::new();
    let mut pipeline = StringBuilder::new();
    let mut model = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut status = StringBuilder::new();
    let mut rows = Int64Builder::with_capacity(n);
    let mut files = Int32Builder::with_capacity(n);
    let mut snapshot = Int64Builder::with_capacity(n);
    let mut commit = StringBuilder::new();
    let mut started = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("+00:00");
    let mut finished = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("+00:00");
    let mut duration = Int64Builder::with_capacity(n);
    let mut error = StringBuilder::new();
    for m in &report.models {
        run_id.append_value(&report.run_id);
        pipeline.append_value(&report.pipeline);
        model.append_value(&m.model);
        kind.append_value(m.kind.as_str());
        status.append_value(m.status.as_str());
        rows.append_option(m.rows.map(|r| r as i64));
        files.append_option(m.files.map(|f| f as i32));
        snapshot.append_option(m.snapshot_id);
        commit.append_value(commit_id.as_str());
        started.append_value(m.started_at.timestamp_micros());
        finished.append_value(m.finished_at.timestamp_micros());
        duration.append_value((m.finished_at - m.started_at).num_milliseconds());
        error.append_option(m.error.as_deref());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(run_id.finish()),
        Arc::new(pipeline.finish()),
        Arc::new(model.finish()),
        Arc::new(kind.finish()),
        Arc::new(status.finish()),
        Arc::new(rows.finish()),
        Arc::new(files.finish()),
        Arc::new(snapshot.finish()),
        Arc::new(commit.finish()),
        Arc::new(started.finish()),
        Arc::new(finished.finish()),
        Arc::new(duration.finish()),
        Arc::new(error.finish()),
    ];
    let tz = || DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
    let schema = Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("pipeline", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, true),
        Field::new("files", DataType::Int32, true),
        Field::new("snapshot_id", DataType::Int64, true),
        Field::new("commit_id", DataType::Utf8, true),
        Field::new("started_at", tz(), false),
        Field::new("finished_at", tz(), false),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("error", DataType::Utf8, true),
    ]);
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}
