//! Deterministic Debezium change-event generator: a seeded, multi-tenant e-commerce
//! database (customers, products, orders, order lines) whose changes are emitted exactly as
//! Debezium 2.7's MySQL and PostgreSQL connectors write them to Kafka with the JSON
//! converter, together with the outcome a correct pipeline must reach.
//!
//! It is the test source for the whole pipeline: feed its messages to `firn ingest`, then
//! compare bronze row counts with `counts.json` and silver tables with
//! `expected/<table>.jsonl`.
//!
//! Layout (pure modules take values and do no I/O; only `sink` touches files or Kafka):
//! - `mod.rs` — configuration, tenant layout, message type, errors and [`run`].
//! - `stream.rs` (pure) — the [`Generator`] iterator: snapshot, streaming changes, deletes
//!   with tombstones, re-inserts, restart duplicates; tenants and tables interleaved.
//! - `envelope.rs` (pure) — Debezium key/value encoding, Kafka Connect schemas, logical
//!   types (`Date`, `Timestamp`, `MicroTimestamp`, `ZonedTimestamp`, `Decimal`, `Enum`).
//! - `avro.rs` (pure) — [`AvroEncoder`]: Kafka Connect's `AvroConverter`, for
//!   `schemas = "avro"` (Confluent wire format, schemas under [`avro_schema_ids`]).
//! - `expected.rs` (pure) — [`ExpectedState`]: final rows per (table, tenant) and counts per
//!   topic, maintained while generating.
//! - `model.rs`, `rows.rs`, `rng.rs` (pure) — table definitions, row values, the PRNG.
//! - `sink.rs` (I/O) — JSON-lines file, Kafka producer, expected-output files.
//!
//! Tenant layout: tenant `i` (configuration order) is captured by the MySQL connector when
//! `i` is even and by the Postgres connector when odd. With `schemas = "mixed"` tenants come
//! in (MySQL, Postgres) pairs and every other pair embeds schemas, so both flavours are seen
//! with and without schemas once there are four tenants and the default three already cover
//! MySQL with, Postgres with and MySQL without. (Alternating schemas per tenant would tie
//! "embeds schemas" to "is MySQL" and hide half the combinations.)
//!
//! Topics are `<prefix>.<tenant>.<database>.<table>`; the connector's logical name (the
//! `source.name` and schema-name prefix) is `<prefix>.<tenant>`.

mod avro;
mod envelope;
mod expected;
mod model;
mod rng;
mod rows;
mod sink;
mod stream;

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::DateTime;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::{Deserialize, Serialize};

pub use avro::AvroEncoder;
pub use envelope::{
    DEBEZIUM_VERSION, MYSQL_SERVER_ID, Op, binlog_file_name, decimal_base64, decimal_bytes,
    decode_decimal_base64, format_decimal,
};
pub use expected::{
    CountsReport, ExpectedRow, ExpectedState, TopicCounts, decode_date, decode_timestamp_micros,
};
pub use model::{Flavor, PrimaryKey, Table};
pub use sink::{ProduceProgress, SinkStats, produce_to_kafka, write_expected, write_to_file};
pub use stream::Generator;

/// Whether messages embed their Kafka Connect schema (`schemas.enable` of the converter), or
/// are Avro with their schemas in a Schema Registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaMode {
    /// Every tenant embeds schemas: `{"schema":..,"payload":..}`.
    With,
    /// No tenant embeds schemas: the value is the bare envelope.
    Without,
    /// Tenants 0 and 1 embed, 2 and 3 do not, and so on (see the module docs).
    #[default]
    Mixed,
    /// Keys and values are Avro in the Confluent wire format, as Confluent's
    /// `AvroConverter` writes them; the schemas ([`Generator::avro_schemas`]) must be served
    /// by a Schema Registry under the ids [`avro_schema_ids`] gives.
    Avro,
}

impl SchemaMode {
    /// Whether tenant `index` embeds schemas.
    pub fn embeds(self, index: usize) -> bool {
        match self {
            SchemaMode::With => true,
            SchemaMode::Without | SchemaMode::Avro => false,
            SchemaMode::Mixed => (index / 2).is_multiple_of(2),
        }
    }
}

/// Generator settings. Sizes are per tenant, and the event count scales linearly with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct GeneratorConfig {
    /// Same seed and settings give byte-identical output.
    pub seed: u64,
    /// Tenant names, each `[A-Za-z_][A-Za-z0-9_]*` (they become topic and schema names).
    pub tenants: Vec<String>,
    /// Source database name: `source.db` and the third topic segment.
    pub database: String,
    /// First topic segment; `<prefix>.<tenant>` is the connector's logical name.
    pub topic_prefix: String,
    /// Customers per tenant (snapshot plus streaming inserts).
    pub customers: u64,
    /// Products per tenant.
    pub products: u64,
    /// Orders per tenant, each with 1 to 4 order lines.
    pub orders: u64,
    /// Share of each table's rows that already exist when the connector starts and are
    /// read by the snapshot; the rest are inserted while streaming.
    pub snapshot_fraction: f64,
    /// Share of streaming transactions that update a row.
    pub update_ratio: f64,
    /// Share of streaming transactions that delete a row (an order with its lines).
    pub delete_ratio: f64,
    /// Share of streaming transactions that re-insert a previously deleted key.
    pub reinsert_ratio: f64,
    /// Simulated connector restarts per tenant; each re-emits recent messages unchanged.
    pub restart_duplicates: u32,
    /// Change events (with their tombstones) re-emitted by each restart.
    pub restart_replay: u32,
    /// Whether messages embed schemas.
    pub schemas: SchemaMode,
    /// RFC 3339 start of the simulated clock.
    pub start_time: String,
    /// Simulated days the run spans (approximately), so day partitions differ.
    pub span_days: u32,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            tenants: vec!["acme".into(), "globex".into(), "initech".into()],
            database: "shop".into(),
            topic_prefix: "cdc".into(),
            customers: 100,
            products: 30,
            orders: 200,
            snapshot_fraction: 0.5,
            update_ratio: 0.35,
            delete_ratio: 0.06,
            reinsert_ratio: 0.03,
            restart_duplicates: 2,
            restart_replay: 20,
            schemas: SchemaMode::Mixed,
            start_time: "2026-01-01T00:00:00Z".into(),
            span_days: 4,
        }
    }
}

/// The Schema Registry ids of a tenant's (key, value) schemas for `table` in Avro mode:
/// fixed by position so that generation stays pure and deterministic.
pub fn avro_schema_ids(tenant_index: usize, table: Table) -> (u32, u32) {
    let key = 1 + 2 * (tenant_index * Table::ALL.len() + table.index()) as u32;
    (key, key + 1)
}

/// One tenant's place in the generated world.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantSpec {
    pub index: usize,
    pub name: String,
    pub flavor: Flavor,
    /// Whether this tenant's messages embed schemas.
    pub schemas: bool,
    /// The connector's logical name (`topic.prefix`): `source.name`, schema-name prefix.
    pub server_name: String,
    /// Topics in `Table::ALL` order.
    pub topics: [String; 4],
}

impl TenantSpec {
    pub fn topic(&self, table: Table) -> &str {
        &self.topics[table.index()]
    }
}

impl GeneratorConfig {
    /// Checks everything `Generator::new` relies on.
    pub fn validate(&self) -> Result<(), GeneratorError> {
        let invalid = |message: String| Err(GeneratorError::Config(message));
        if self.tenants.is_empty() {
            return invalid("at least one tenant is required".into());
        }
        for (i, tenant) in self.tenants.iter().enumerate() {
            if !is_identifier(tenant) {
                return invalid(format!(
                    "tenant {tenant:?} must match [A-Za-z_][A-Za-z0-9_]*"
                ));
            }
            if self.tenants[..i].contains(tenant) {
                return invalid(format!("tenant {tenant:?} is listed twice"));
            }
        }
        if !is_identifier(&self.database) {
            return invalid(format!(
                "database {:?} must match [A-Za-z_][A-Za-z0-9_]*",
                self.database
            ));
        }
        if !self.topic_prefix.split('.').all(is_identifier) {
            return invalid(format!(
                "topic prefix {:?} must be dot-separated [A-Za-z_][A-Za-z0-9_]* segments",
                self.topic_prefix
            ));
        }
        if self.customers == 0 || self.products == 0 {
            return invalid("customers and products must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.snapshot_fraction) {
            return invalid(format!(
                "snapshot-fraction {} must be within 0..=1",
                self.snapshot_fraction
            ));
        }
        let ratios = [self.update_ratio, self.delete_ratio, self.reinsert_ratio];
        if ratios.iter().any(|r| !r.is_finite() || *r < 0.0) {
            return invalid("update, delete and re-insert ratios must be non-negative".into());
        }
        // Inserts take the remaining share; it bounds the stream length (steps = inserts /
        // insert share), so it may not vanish.
        if ratios.iter().sum::<f64>() > 0.95 {
            return invalid(
                "update-ratio + delete-ratio + reinsert-ratio must not exceed 0.95".into(),
            );
        }
        if self.restart_duplicates > 0 && self.restart_replay == 0 {
            return invalid("restart-replay must be at least 1 when restarts are injected".into());
        }
        if !(1..=3650).contains(&self.span_days) {
            return invalid(format!(
                "span-days {} must be within 1..=3650",
                self.span_days
            ));
        }
        self.start_micros().map(|_| ())
    }

    pub(crate) fn start_micros(&self) -> Result<i64, GeneratorError> {
        DateTime::parse_from_rfc3339(&self.start_time)
            .map(|t| t.timestamp_micros())
            .map_err(|e| {
                GeneratorError::Config(format!(
                    "start-time {:?} is not RFC 3339: {e}",
                    self.start_time
                ))
            })
    }

    /// The tenants with their connector flavour, schema mode, logical name and topics.
    pub fn tenant_specs(&self) -> Vec<TenantSpec> {
        self.tenants
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let server_name = format!("{}.{name}", self.topic_prefix);
                TenantSpec {
                    index,
                    name: name.clone(),
                    flavor: Flavor::for_tenant_index(index),
                    schemas: self.schemas.embeds(index),
                    topics: Table::ALL
                        .map(|table| format!("{server_name}.{}.{}", self.database, table.name())),
                    server_name,
                }
            })
            .collect()
    }

    /// Every topic, sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .tenant_specs()
            .into_iter()
            .flat_map(|spec| spec.topics)
            .collect();
        topics.sort();
        topics
    }

    /// The same configuration with all table sizes multiplied by `factor` (at least one
    /// customer and product remain).
    pub fn scaled(mut self, factor: f64) -> Self {
        let scale = |n: u64| (n as f64 * factor.max(0.0)).round() as u64;
        self.customers = scale(self.customers).max(1);
        self.products = scale(self.products).max(1);
        self.orders = scale(self.orders);
        self
    }

    /// Approximate number of messages the configuration produces, for progress reporting.
    pub fn estimated_messages(&self) -> u64 {
        stream::estimate(self).messages * self.tenants.len() as u64
    }
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One Kafka message as the connector would produce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdcMessage {
    pub topic: String,
    /// Exact key bytes (JSON text).
    pub key: Option<Vec<u8>>,
    /// Exact value bytes (JSON text); `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    pub table: Table,
    pub tenant: String,
}

impl CdcMessage {
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// Errors of the generator and its sinks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeneratorError {
    #[error("invalid generator config: {0}")]
    Config(String),
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("message for topic {topic} is not valid json: {reason}")]
    InvalidMessage { topic: String, reason: String },
    #[error("cannot create kafka {client} for brokers {brokers}")]
    KafkaClient {
        client: &'static str,
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot create topic {topic}: {source}")]
    CreateTopic {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("broker refused to create topic {topic}: {code}")]
    TopicRejected {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("cannot produce to topic {topic}")]
    Produce {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("kafka producer shut down before confirming a delivery")]
    DeliveryCancelled,
    #[error("generator task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Where [`run`] sends the messages.
#[derive(Debug, Clone)]
pub enum GenerateTarget {
    /// JSON lines, see [`write_to_file`].
    File(PathBuf),
    /// A Kafka cluster; missing topics are created with `partitions` partitions.
    Kafka {
        brokers: String,
        producer_config: HashMap<String, String>,
        partitions: i32,
    },
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub config: GeneratorConfig,
    pub target: GenerateTarget,
    /// Where to write `expected/<table>.jsonl` and `counts.json`, if anywhere.
    pub expected_dir: Option<PathBuf>,
}

/// What [`run`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenerateReport {
    /// Messages written or acknowledged by Kafka, and their key plus value bytes.
    pub sink: SinkStats,
    /// Every topic, sorted.
    pub topics: Vec<String>,
    /// Expected counts summed over all topics.
    pub totals: TopicCounts,
    pub expected_dir: Option<PathBuf>,
}

/// Generates the configured stream into the target, then writes the expected outcome.
pub async fn run(options: GenerateOptions) -> Result<GenerateReport, GeneratorError> {
    let GenerateOptions {
        config,
        target,
        expected_dir,
    } = options;
    let mut generator = Generator::new(&config)?;
    if config.schemas == SchemaMode::Avro && matches!(target, GenerateTarget::File(_)) {
        return Err(GeneratorError::Config(
            "avro output needs a Kafka target: the file sink writes JSON lines".into(),
        ));
    }
    let topics = generator.topics();
    let estimated = config.estimated_messages();
    let sink = match target {
        GenerateTarget::File(path) => {
            let (returned, stats) = tokio::task::spawn_blocking(move || {
                let stats = write_to_file(&path, &mut generator)?;
                Ok::<_, GeneratorError>((generator, stats))
            })
            .await
            .map_err(GeneratorError::Task)??;
            generator = returned;
            stats
        }
        GenerateTarget::Kafka {
            brokers,
            producer_config,
            partitions,
        } => {
            let report_progress = |p: ProduceProgress| {
                tracing::info!(
                    sent = p.sent,
                    delivered = p.delivered,
                    estimated_total = estimated,
                    "generator progress"
                );
            };
            produce_to_kafka(
                &brokers,
                &producer_config,
                partitions,
                &mut generator,
                report_progress,
            )
            .await?
        }
    };
    if let Some(dir) = &expected_dir {
        let dir = dir.clone();
        generator = tokio::task::spawn_blocking(move || {
            write_expected(generator.expected(), &dir)?;
            Ok::<_, GeneratorError>(generator)
        })
        .await
        .map_err(GeneratorError::Task)??;
    }
    let totals = generator.expected().totals();
    tracing::info!(
        messages = sink.messages,
        change_events = totals.change_events,
        tombstones = totals.tombstones,
        duplicates = totals.duplicates,
        "generator finished"
    );
    Ok(GenerateReport {
        sink,
        topics,
        totals,
        expected_dir,
    })
}

#[cfg(test)]
mod tests;
