//! firn's catalog crate: the pipeline configuration, the Iceberg SQL catalog (SQLite or
//! Postgres, shared with pyiceberg, Spark and StarRocks), FileIO for local disk and S3,
//! the table contracts of the bronze, silver and gold tiers, and **the only code that
//! commits to Iceberg** ([`Catalog::commit`]). It depends on no Kafka, HTTP or DataFusion
//! code.

pub mod catalog;
pub mod commit;
pub mod config;
pub mod error;
pub mod fileio;
pub mod history;
pub mod names;
pub mod pointer;
pub mod relay_ledger;
pub mod snapshot;
pub mod tables;
pub mod writer;

pub use catalog::{Catalog, InitReport, RetryPolicy};
pub use commit::{
    CommitOutcome, CommitRequest, CommitStatus, Operation, RollbackTarget, SchemaChange, Validator,
};
pub use config::PipelineConfig;
pub use error::{CatalogError, Result};
pub use snapshot::OverwriteScope;
pub use tables::{TableName, TableSpec, Tier};
pub use writer::DataFileSink;
