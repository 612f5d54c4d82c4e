//! Turning Arrow record batches into Iceberg data files that honour the table's
//! partition spec. The files are not part of the table until committed through
//! `icefjord_catalog::Commit`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{new_null_array, RecordBatch};
use arrow::compute::{cast_with_options, concat_batches, CastOptions};
use arrow::datatypes::{DataType, SchemaRef};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::{DataFile, DataFileFormat, PartitionKey, Struct, TableMetadata};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::{DataFileWriter, DataFileWriterBuilder};
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use icefjord_catalog::writer_columns::{resolve_writer_column, WriterColumn};

use crate::bounds::BoundsWriterBuilder;
use crate::error::{EngineError, Result};
use crate::partition::PartitionSplitter;

type FileWriterBuilder =
    DataFileWriterBuilder<BoundsWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;
type FileWriter =
    DataFileWriter<BoundsWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// Rows per partition gathered before they go to the partition's file: a batch
/// that spans many partitions (e.g. hash-ordered query output) splits into slivers,
/// and writing slivers one by one costs more than copying them together once.
const GATHER_ROWS: usize = 8192;

/// A partition that no row has arrived for during this many rows (of any
/// partition) is finished: its file is closed (see [`Partitioned`]).
const COLD_ROWS: u64 = 1 << 20;

/// How often (in arriving rows) to look for finished partitions.
const COLD_CHECK_ROWS: u64 = 1 << 16;

/// A partition's open file and the rows gathered for it.
struct OpenPartition {
    key: PartitionKey,
    writer: Option<FileWriter>,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    /// [`Partitioned::arrived`] after the last batch that had rows for it.
    last_arrival: u64,
}

/// Writes each partition's rows to its own files.
///
/// Every partition gets an open file when its first row arrives. A partition that
/// no row has arrived for during [`COLD_ROWS`] rows is closed, so input that comes
/// clustered by partition (ordered query output, a sink's time-ordered events)
/// keeps only the few partitions it is passing through open: each open Parquet
/// file holds page buffers and dictionaries for all its columns, and 70 of them
/// cost more memory and CPU (fresh pages) than the data. Input spread over all
/// partitions keeps every partition warm, and so every file open (a fan-out
/// writer). A partition that comes back after being closed gets another file.
struct Partitioned {
    splitter: PartitionSplitter,
    builder: FileWriterBuilder,
    open: HashMap<Struct, OpenPartition>,
    /// Rows that have arrived so far.
    arrived: u64,
    /// `arrived` at the last look for finished partitions.
    checked: u64,
    /// [`COLD_ROWS`] unless set by [`TableWriter::with_cold_rows`].
    cold_rows: u64,
    files: Vec<DataFile>,
}

impl Partitioned {
    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        // Every partition of this batch counts as arrived at its end.
        self.arrived += batch.num_rows() as u64;
        let arrived = self.arrived;
        let split = self.splitter.split(batch)?;
        for (key, mut part) in split.parts {
            if split.sliced
                && part.num_rows() < GATHER_ROWS / 2
                && part.num_rows() < batch.num_rows()
            {
                // A small slice waits for more rows: copy it, so that it does not
                // keep the whole batch alive meanwhile.
                part = concat_batches(&part.schema(), [&part])?;
            }
            let entry = self
                .open
                .entry(key.data().clone())
                .or_insert_with(|| OpenPartition {
                    key,
                    writer: None,
                    pending: Vec::new(),
                    pending_rows: 0,
                    last_arrival: arrived,
                });
            entry.last_arrival = arrived;
            entry.pending_rows += part.num_rows();
            entry.pending.push(part);
            // A big part alone is written as it is, without a copy.
            if entry.pending_rows >= GATHER_ROWS
                || (entry.pending.len() == 1 && entry.pending_rows >= GATHER_ROWS / 2)
            {
                Self::flush(&self.builder, entry).await?;
            }
        }
        if self.arrived - self.checked >= COLD_CHECK_ROWS.min(self.cold_rows) {
            self.checked = self.arrived;
            let cold: Vec<Struct> = self
                .open
                .iter()
                .filter(|(_, open)| self.arrived - open.last_arrival > self.cold_rows)
                .map(|(partition, _)| partition.clone())
                .collect();
            for partition in cold {
                if let Some(open) = self.open.remove(&partition) {
                    self.finish(open).await?;
                }
            }
        }
        Ok(())
    }

    /// Write a partition's gathered rows as one batch.
    async fn flush(builder: &FileWriterBuilder, open: &mut OpenPartition) -> Result<()> {
        let parts = std::mem::take(&mut open.pending);
        open.pending_rows = 0;
        let batch = match parts.len() {
            0 => return Ok(()),
            1 => parts.into_iter().next(),
            _ => parts
                .first()
                .map(|first| concat_batches(&first.schema(), &parts))
                .transpose()?,
        };
        let Some(batch) = batch else {
            return Ok(());
        };
        let writer = match &mut open.writer {
            Some(writer) => writer,
            None => open
                .writer
                .insert(builder.build(Some(open.key.clone())).await?),
        };
        writer.write(batch).await?;
        Ok(())
    }

    /// Write a partition's last rows and close its file.
    async fn finish(&mut self, mut open: OpenPartition) -> Result<()> {
        Self::flush(&self.builder, &mut open).await?;
        if let Some(mut writer) = open.writer {
            self.files.extend(writer.close().await?);
        }
        Ok(())
    }

    async fn close(mut self) -> Result<Vec<DataFile>> {
        let open: Vec<OpenPartition> = self.open.drain().map(|(_, open)| open).collect();
        for partition in open {
            self.finish(partition).await?;
        }
        Ok(self.files)
    }
}

enum Sink {
    Unpartitioned(Box<FileWriter>),
    Partitioned(Box<Partitioned>),
}

/// What a [`TableWriter`] wrote.
#[derive(Clone, Debug, Default)]
pub struct WriteMetrics {
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
}

/// Writes record batches of any compatible schema into data files of one table.
///
/// Columns are matched by name, or by a renamed column's old name
/// ([`conform_to_table`]); missing nullable columns become nulls; types are cast
/// safely (a value that does not fit is an error naming the column).
pub struct TableWriter {
    table_name: String,
    schema: SchemaRef,
    /// The table's schemas, for columns renamed since the writer named them.
    metadata: iceberg::spec::TableMetadataRef,
    /// The schema the files are written with (`schema` as Iceberg).
    iceberg_schema: iceberg::spec::SchemaRef,
    sink: Sink,
    rows: u64,
}

impl TableWriter {
    /// A writer for the table's current schema and default partition spec.
    pub async fn new(table: &Table) -> Result<Self> {
        Self::for_schema(table, table.metadata().current_schema().clone()).await
    }

    /// A writer for `iceberg_schema`, an evolution of the table's schema that the
    /// commit of these files will make current (`TableWrite::with_schema`).
    pub async fn for_schema(
        table: &Table,
        iceberg_schema: iceberg::spec::SchemaRef,
    ) -> Result<Self> {
        let metadata = table.metadata();
        let schema = Arc::new(schema_to_arrow_schema(&iceberg_schema)?);
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
            .set_max_row_group_row_count(Some(1 << 20));
        // Measures (decimals, floats) are rarely repeated values: a dictionary
        // costs a hash per value and is then dropped for plain encoding anyway.
        // A sink table's Kafka offsets never repeat within a partition (DESIGN
        // §5: one row per record), so their dictionary is as long as the column:
        // plain encoding is smaller and saves the hash and the index encoding.
        for field in schema.fields() {
            if field.name() == icefjord_catalog::protocol::columns::OFFSET
                || matches!(
                    field.data_type(),
                    DataType::Decimal128(..) | DataType::Float32 | DataType::Float64
                )
            {
                props = props
                    .set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
            }
        }
        let builder =
            DataFileWriterBuilder::new(RollingFileWriterBuilder::new_with_default_file_size(
                // Data files whose column bounds hold for every value (see bounds.rs).
                BoundsWriterBuilder::new(props, iceberg_schema.clone()),
                table.file_io().clone(),
                DefaultLocationGenerator::new(metadata)?,
                DefaultFileNameGenerator::new(
                    uuid::Uuid::now_v7().to_string(),
                    None,
                    DataFileFormat::Parquet,
                ),
            ));
        let spec = metadata.default_partition_spec().clone();
        let sink = if spec.is_unpartitioned() {
            Sink::Unpartitioned(Box::new(builder.build(None).await?))
        } else {
            Sink::Partitioned(Box::new(Partitioned {
                splitter: PartitionSplitter::try_new(iceberg_schema.clone(), spec)?,
                builder,
                open: HashMap::new(),
                arrived: 0,
                checked: 0,
                cold_rows: COLD_ROWS,
                files: Vec::new(),
            }))
        };
        Ok(Self {
            table_name: icefjord_catalog::display(table.identifier()),
            schema,
            metadata: table.metadata_ref(),
            iceberg_schema,
            sink,
            rows: 0,
        })
    }

    /// Close a partition's file once no row has arrived for it during `rows` rows
    /// (default 1 Mi rows).
    pub fn with_cold_rows(mut self, rows: u64) -> Self {
        if let Sink::Partitioned(p) = &mut self.sink {
            p.cold_rows = rows.max(1);
        }
        self
    }

    /// Partitions with an open file or rows not yet written (0 when unpartitioned).
    pub fn open_partitions(&self) -> usize {
        match &self.sink {
            Sink::Unpartitioned(_) => 0,
            Sink::Partitioned(p) => p.open.len(),
        }
    }

    /// The Arrow schema of the table (with Iceberg field ids in the field metadata).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = conform_to_table(
            &self.table_name,
            &self.schema,
            &self.metadata,
            &self.iceberg_schema,
            &batch,
        )?;
        self.rows += batch.num_rows() as u64;
        match &mut self.sink {
            Sink::Unpartitioned(writer) => writer.write(batch).await?,
            Sink::Partitioned(p) => p.write(&batch).await?,
        }
        Ok(())
    }

    /// Finish every open file and return the data files with their statistics.
    pub async fn close(self) -> Result<(Vec<DataFile>, WriteMetrics)> {
        let files = match self.sink {
            Sink::Unpartitioned(mut writer) => writer.close().await?,
            Sink::Partitioned(p) => p.close().await?,
        };
        let metrics = WriteMetrics {
            rows: self.rows,
            files: files.len(),
            bytes: files.iter().map(|f| f.file_size_in_bytes()).sum(),
        };
        Ok((files, metrics))
    }
}

/// Reshape `batch` to `schema`: columns by name, nulls for missing optional columns,
/// safe casts. For tables without a schema history (Delta); Iceberg tables use
/// [`conform_to_table`].
pub fn conform(table: &str, schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    conform_by(table, schema, batch, |name| {
        Ok(schema.index_of(name).ok().map(|_| name.to_string()))
    })
}

/// Reshape `batch` to `schema`, the Arrow form of `target` (the table's current
/// schema in `metadata`, or the evolution of it this write makes current): each
/// batch column goes to the table column the catalog's writer rule names
/// ([`icefjord_catalog::writer_columns`]): the column of its name, else the
/// column it was renamed to; values of a dropped column are refused
/// ([`EngineError::DroppedColumn`]). Then as [`conform`].
pub fn conform_to_table(
    table: &str,
    schema: &SchemaRef,
    metadata: &TableMetadata,
    target: &iceberg::spec::Schema,
    batch: &RecordBatch,
) -> Result<RecordBatch> {
    conform_by(table, schema, batch, |name| {
        match resolve_writer_column(metadata, target, name) {
            WriterColumn::Current(field) | WriterColumn::Renamed { field, .. } => {
                Ok(Some(field.name.clone()))
            }
            WriterColumn::Dropped { field_id, .. } => Err(EngineError::DroppedColumn {
                table: table.to_string(),
                column: name.to_string(),
                field_id,
            }),
            WriterColumn::Unknown => Ok(None),
        }
    })
}

/// [`conform`] with `target_of` naming the table column each batch column goes
/// to (`None`: no column of the table).
fn conform_by(
    table: &str,
    schema: &SchemaRef,
    batch: &RecordBatch,
    target_of: impl Fn(&str) -> Result<Option<String>>,
) -> Result<RecordBatch> {
    let mismatch = |message: String| EngineError::SchemaMismatch {
        table: table.to_string(),
        message,
    };
    let input = batch.schema();
    let mut sources: HashMap<String, usize> = HashMap::with_capacity(input.fields().len());
    for (i, field) in input.fields().iter().enumerate() {
        let Some(target) = target_of(field.name())? else {
            return Err(mismatch(format!(
                "the table has no column {}",
                field.name()
            )));
        };
        if let Some(other) = sources.insert(target.clone(), i) {
            return Err(mismatch(format!(
                "columns {} and {} both go to column {target}",
                input.field(other).name(),
                field.name()
            )));
        }
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = match sources.get(field.name()) {
            Some(&i) => {
                let column = batch.column(i);
                if column.data_type() == field.data_type() {
                    column.clone()
                } else {
                    cast_with_options(column, field.data_type(), &options).map_err(|e| {
                        mismatch(format!(
                            "column {}: cannot convert {} to {}: {e}",
                            field.name(),
                            column.data_type(),
                            field.data_type()
                        ))
                    })?
                }
            }
            None if field.is_nullable() => new_null_array(field.data_type(), batch.num_rows()),
            None => {
                return Err(mismatch(format!(
                    "required column {} is missing",
                    field.name()
                )))
            }
        };
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(mismatch(format!(
                "required column {} has {} null values",
                field.name(),
                column.null_count()
            )));
        }
        columns.push(column);
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
