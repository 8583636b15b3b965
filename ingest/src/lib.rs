//! firn's ingest crate: the Kafka → bronze ingest loop, Debezium decoding, the
//! deterministic Debezium generator, the demo, and the `firn` command line.

pub mod admin;
pub mod avro;
pub mod bronze;
pub mod cli;
pub mod debezium;
pub mod dedup;
pub mod demo;
pub mod error;
pub mod generator;
pub mod metrics;
pub mod relay;
pub mod schema_registry;
pub mod source;
pub mod stream_load;
pub mod writer;

pub use error::IngestError;
