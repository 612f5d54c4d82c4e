//! Committing a sealed batch: decode, write data files, one fenced commit of
//! rows, dead letters and offsets.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use iceberg::TableIdent;
use icefjord_catalog::protocol::keys;
use icefjord_catalog::{CatalogError, SchemaEvolution, TableSpec, TableWrite};
use icefjord_engine::schema::kafka_field_specs;
use icefjord_engine::TableWriter;

use super::*;
use crate::decode::{self, EventDecoder, Evolution};
use crate::error::{Result, SinkError};
use crate::offsets::OffsetFence;

impl Ingest {
    pub(super) fn dlq_ident(&self) -> TableIdent {
        TableIdent::new(
            self.route.table.namespace().clone(),
            format!("{}_dlq", self.route.table.name()),
        )
    }

    pub(super) async fn ensure_tables(&self) -> Result<()> {
        let schema = self.route.schema.clone();
        self.catalog
            .load_or_create(&self.route.table, || {
                let extra = kafka_field_specs();
                let iceberg = schema.iceberg_schema(&extra).map_err(engine_to_catalog)?;
                Ok(TableSpec {
                    partition_spec: Some(
                        schema.partition_spec(&iceberg).map_err(engine_to_catalog)?,
                    ),
                    schema: iceberg,
                    properties: Default::default(),
                })
            })
            .await?;
        self.catalog
            .load_or_create(&self.dlq_ident(), || {
                Ok(TableSpec {
                    schema: iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(
                        &decode::dead_letter_schema(),
                    )?,
                    partition_spec: None,
                    properties: Default::default(),
                })
            })
            .await?;
        Ok(())
    }

    /// Write `rows` as data files of `table` (not yet committed), with `schema`
    /// when the commit will evolve the table to it. Parquet encoding is CPU work:
    /// it runs as a task of its own, off the task that polls Kafka.
    pub(super) async fn write(
        &self,
        table: &TableIdent,
        rows: RecordBatch,
        schema: Option<iceberg::spec::SchemaRef>,
    ) -> Result<Vec<iceberg::spec::DataFile>> {
        let catalog = self.catalog.clone();
        let table = table.clone();
        tokio::spawn(async move {
            let table = catalog.load(&table).await?;
            let mut writer = match schema {
                Some(schema) => TableWriter::for_schema(&table, schema).await?,
                None => TableWriter::new(&table).await?,
            };
            writer.write(rows).await?;
            Ok(writer.close().await?.0)
        })
        .await?
    }

    /// Decode, write and commit one sealed batch (see the module docs): its rows
    /// to the table and its dead letters to `<table>_dlq` in one commit, guarded
    /// by the offset fence.
    pub(super) async fn commit_batch(
        &self,
        decoder: EventDecoder,
        sealed: Sealed,
    ) -> Result<Settled> {
        let route = &self.route;
        let Sealed {
            records,
            spans,
            commit_id,
        } = sealed;
        let consumed = records.len();
        // Decoding is CPU work: off the runtime's threads. Dropping the records
        // there too keeps their deallocation off the loop.
        let phase = Instant::now();
        let (decoded, mut records) = tokio::task::spawn_blocking(move || {
            let decoded = decoder.decode(&records);
            let mut records = records;
            records.clear();
            (decoded, records)
        })
        .await?;
        let decoded = decoded?;
        std::mem::swap(&mut *lock(&self.spare_records), &mut records);
        let decode_time = phase.elapsed();
        // Tombstones are no errors: the ratio is over the records with a value.
        let with_value = consumed - decoded.tombstones;
        if let Some(first) = decoded.dead.first() {
            let ratio = decoded.dead.len() as f64 / with_value as f64;
            if ratio > self.max_error_ratio {
                return Err(SinkError::TooManyErrors {
                    topic: route.topic.clone(),
                    consumed: with_value,
                    dead: decoded.dead.len(),
                    ratio,
                    max: self.max_error_ratio,
                    partition: first.record.partition,
                    offset: first.record.offset,
                    error: first.error.clone(),
                });
            }
        }
        let fence = Arc::new(OffsetFence {
            group: route.group.clone(),
            topic: route.topic.clone(),
            spans: spans.clone(),
        });
        let schema = match &decoded.evolution {
            Some(evolution) => Some(self.evolved_schema(evolution).await?),
            None => None,
        };
        let written = decoded.rows.num_rows() as u64;
        let watermark = max_event_time(&decoded.rows);
        let mut main = TableWrite::append(
            route.table.clone(),
            self.write(&route.table, decoded.rows, schema.clone())
                .await?,
        )
        .with_guard(fence)
        .with_property(keys::WRITER, keys::writer::INGEST)
        .with_property(keys::KAFKA_RECORDS, consumed.to_string());
        if let Some(watermark) = watermark {
            main = main.with_property(keys::WATERMARK, watermark);
        }
        if let Some(schema) = schema {
            main = main.with_schema(schema);
        }
        let mut commit = self.catalog.commit(commit_id).with_write(main);
        if !decoded.dead.is_empty() {
            let files = self
                .write(
                    &self.dlq_ident(),
                    decode::dead_letter_batch(&decoded.dead)?,
                    None,
                )
                .await?;
            commit = commit.with_write(
                TableWrite::append(self.dlq_ident(), files)
                    .with_property(keys::WRITER, keys::writer::INGEST),
            );
        }
        let started = Instant::now();
        let write_time = phase.elapsed() - decode_time;
        let outcome = commit.execute().await;
        tracing::debug!(?decode_time, ?write_time, commit_time = ?started.elapsed(), "batch timings");
        match outcome {
            Ok(result) => Ok(Settled::Landed {
                spans,
                written,
                dead: decoded.dead.len() as u64,
                tombstones: decoded.tombstones as u64,
                evolution: decoded.evolution,
                already_applied: result.already_applied,
                seconds: started.elapsed().as_secs_f64(),
            }),
            Err(CatalogError::Refused { reason, .. }) => Ok(Settled::Refused {
                reason,
                schema: false,
            }),
            Err(CatalogError::Conflict { reason, .. }) if decoded.evolution.is_some() => {
                Ok(Settled::Refused {
                    reason,
                    schema: true,
                })
            }
            Err(e) => {
                crate::metrics::commit_result(&icefjord_catalog::display(&route.table), "error");
                Err(e.into())
            }
        }
    }

    /// The table's schema with `evolution` applied (new ids above the table's
    /// last column id).
    pub(super) async fn evolved_schema(
        &self,
        evolution: &Evolution,
    ) -> Result<iceberg::spec::SchemaRef> {
        let table = self.catalog.load(&self.route.table).await?;
        let metadata = table.metadata();
        let failed = |message: String| SinkError::SchemaEvolution {
            table: icefjord_catalog::display(&self.route.table),
            message,
        };
        let primitive = |name: &str, ty: &DataType| {
            iceberg::arrow::arrow_type_to_type(ty)
                .ok()
                .and_then(|t| t.as_primitive_type().cloned())
                .ok_or_else(|| failed(format!("column {name}: no Iceberg type for {ty}")))
        };
        let mut next = SchemaEvolution::new(metadata.current_schema(), metadata.last_column_id());
        for (name, ty) in &evolution.widened {
            next = next.promote(name, primitive(name, ty)?).map_err(failed)?;
        }
        for (name, ty) in &evolution.added {
            next = next
                .add_column(name, primitive(name, ty)?)
                .map_err(failed)?;
        }
        Ok(Arc::new(next.build().map_err(failed)?))
    }
}

fn engine_to_catalog(e: icefjord_engine::EngineError) -> CatalogError {
    match e {
        icefjord_engine::EngineError::Catalog(c) => c,
        other => CatalogError::Config {
            field: "schema".into(),
            message: other.to_string(),
        },
    }
}

/// The largest event timestamp of the batch (first timestamp column), as text.
fn max_event_time(rows: &RecordBatch) -> Option<String> {
    let (i, _) = rows.schema().fields().iter().enumerate().find(|(_, f)| {
        matches!(f.data_type(), DataType::Timestamp(..)) && !f.name().starts_with("_kafka")
    })?;
    let column = rows.column(i);
    let micros = arrow::compute::cast(column, &DataType::Int64).ok()?;
    let micros = micros.as_any().downcast_ref::<arrow::array::Int64Array>()?;
    arrow::compute::max(micros).map(icefjord_engine::generate::format_micros)
}
