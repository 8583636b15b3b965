//! Writes Arrow record batches into Parquet data files of a table: split by the table's
//! partition spec, rolled at a target size, named with a random (UUIDv7) prefix so that
//! concurrent or retried writers never collide. Does I/O (writes files) but commits
//! nothing: hand the returned [`DataFile`]s to [`crate::Catalog::commit`].

use std::sync::Arc;

use arrow_array::RecordBatch;
use iceberg::arrow::{RecordBatchPartitionSplitter, schema_to_arrow_schema};
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::{DataFileWriter, DataFileWriterBuilder};
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{CatalogError, Result};

type FileBuilder =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

// One per sink and never stored in bulk, so the size difference of the variants is moot.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Partitioned {
        splitter: RecordBatchPartitionSplitter,
        fanout: FanoutWriter<FileBuilder>,
    },
    Unpartitioned(
        DataFileWriter<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>,
    ),
}

/// Writes batches of one table's current schema into data files.
pub struct DataFileSink {
    table_name: String,
    arrow_schema: arrow_schema::SchemaRef,
    inner: Inner,
    rows: u64,
}

/// The Arrow schema (with Iceberg field ids) that batches for `table` must have.
pub fn arrow_schema_for(table: &Table) -> Result<arrow_schema::SchemaRef> {
    schema_to_arrow_schema(table.metadata().current_schema())
        .map(Arc::new)
        .map_err(CatalogError::iceberg("convert schema", table.identifier()))
}

/// Table property naming the Parquet codec (Iceberg's key).
pub const COMPRESSION_PROPERTY: &str = "write.parquet.compression-codec";

/// Parquet writer settings from the table properties. iceberg 0.10.1 ignores the codec
/// property, so firn maps it here (zstd level 1 by default: fast, about half the size of
/// snappy for CDC rows).
pub fn parquet_properties(
    properties: &std::collections::HashMap<String, String>,
) -> Result<WriterProperties> {
    let codec = properties
        .get(COMPRESSION_PROPERTY)
        .map(|c| c.to_ascii_lowercase())
        .unwrap_or_else(|| "zstd".to_string());
    let compression = match codec.as_str() {
        "zstd" => Compression::ZSTD(ZstdLevel::default()),
        "snappy" => Compression::SNAPPY,
        "gzip" => Compression::GZIP(GzipLevel::default()),
        "lz4" => Compression::LZ4_RAW,
        "uncompressed" | "none" => Compression::UNCOMPRESSED,
        other => {
            return Err(CatalogError::config(
                COMPRESSION_PROPERTY,
                format!("unknown Parquet codec `{other}` (zstd, snappy, gzip, lz4, uncompressed)"),
            ));
        }
    };
    Ok(WriterProperties::builder()
        .set_compression(compression)
        .build())
}

impl DataFileSink {
    /// Opens a sink for `table`'s current schema and default partition spec.
    pub async fn new(table: &Table, target_file_size: u64) -> Result<Self> {
        let name = table.identifier().to_string();
        let io_error = |operation| CatalogError::iceberg(operation, &name);
        let metadata = table.metadata();
        let schema = metadata.current_schema().clone();
        let parquet =
            ParquetWriterBuilder::new(parquet_properties(metadata.properties())?, schema.clone());
        let location =
            DefaultLocationGenerator::new(metadata).map_err(io_error("plan file locations"))?;
        let names = DefaultFileNameGenerator::new(
            uuid::Uuid::now_v7().to_string(),
            None,
            DataFileFormat::Parquet,
        );
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            usize::try_from(target_file_size).unwrap_or(usize::MAX),
            table.file_io().clone(),
            location,
            names,
        );
        let builder = DataFileWriterBuilder::new(rolling);
        let spec = metadata.default_partition_spec().clone();
        let inner = if spec.is_unpartitioned() {
            Inner::Unpartitioned(
                builder
                    .build(None)
                    .await
                    .map_err(io_error("open data file writer"))?,
            )
        } else {
            let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)
                .map_err(io_error("plan partitioning"))?;
            Inner::Partitioned {
                splitter,
                fanout: FanoutWriter::new(builder),
            }
        };
        Ok(DataFileSink {
            arrow_schema: arrow_schema_for(table)?,
            table_name: name,
            inner,
            rows: 0,
        })
    }

    /// The Arrow schema batches must have.
    pub fn arrow_schema(&self) -> &arrow_schema::SchemaRef {
        &self.arrow_schema
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes one batch, splitting it by partition.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let io_error = |operation| CatalogError::iceberg(operation, &self.table_name);
        self.rows += batch.num_rows() as u64;
        match &mut self.inner {
            Inner::Unpartitioned(writer) => writer
                .write(batch)
                .await
                .map_err(io_error("write data file")),
            Inner::Partitioned { splitter, fanout } => {
                let parts = splitter
                    .split(&batch)
                    .map_err(io_error("split batch by partition"))?;
                for (key, part) in parts {
                    fanout
                        .write(key, part)
                        .await
                        .map_err(io_error("write data file"))?;
                }
                Ok(())
            }
        }
    }

    /// Closes every open file and returns the data files, ready to commit.
    pub async fn finish(self) -> Result<Vec<DataFile>> {
        let io_error = |operation| CatalogError::iceberg(operation, &self.table_name);
        match self.inner {
            Inner::Unpartitioned(mut writer) => {
                writer.close().await.map_err(io_error("close data file"))
            }
            Inner::Partitioned { fanout, .. } => {
                fanout.close().await.map_err(io_error("close data file"))
            }
        }
    }
}
