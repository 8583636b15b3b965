//! What the relay tests share: a lake whose `gold.order_facts` the batch path computed from a
//! generated source on the mock cluster, the Stream Load test server with the hot table, the
//! relay configuration for them, and the checks (hot table equals gold, no label committed
//! twice). Does I/O.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use firn_catalog::config::PipelineConfig;
use firn_catalog::{Catalog, TableName, Tier};
use firn_ingest::demo::DEMO_CONFIG;
use firn_ingest::generator::GeneratorConfig;
use firn_ingest::relay::{RelayMetrics, RelayOptions};
use firn_ingest::writer::IngestOptions;
use serde_json::{Map, Value, json};

use crate::stream_load::{StreamLoadConfig, StreamLoadServer, TableSchema, TxnState};
use crate::{GeneratedSource, Lake, generated_source};

/// The hot database and table the relay tests load.
pub const DB: &str = "firn_hot";
pub const TABLE: &str = "order_facts";

/// `firn_hot.order_facts` as `sql/starrocks/01_hot_tables.sql` creates it.
pub fn hot_schema() -> TableSchema {
    serde_json::from_value(json!({
        "columns": [
            {"name": "tenant", "type": "varchar", "nullable": false},
            {"name": "order_id", "type": "bigint", "nullable": false},
            {"name": "customer_id", "type": "bigint"},
            {"name": "status", "type": "varchar"},
            {"name": "ordered_at", "type": "datetime"},
            {"name": "order_date", "type": "date"},
            {"name": "item_count", "type": "bigint"},
            {"name": "units", "type": "bigint"},
            {"name": "items_total", "type": "decimal"},
            {"name": "order_total", "type": "decimal"},
            {"name": "source_version", "type": "bigint"},
            {"name": "relay_version", "type": "bigint", "nullable": false},
            {"name": "relay_label", "type": "varchar"}
        ],
        "key": ["tenant", "order_id"]
    }))
    .expect("hot table schema")
}

/// A Stream Load test server with the hot table created.
pub async fn server() -> StreamLoadServer {
    let server = StreamLoadServer::start(StreamLoadConfig::default())
        .await
        .expect("start the Stream Load test server");
    server
        .create_table(DB, TABLE, hot_schema())
        .expect("create the hot table");
    server
}

/// Copies the repository's `sql/gold` models into `to/sql/gold`, where a config in `to`
/// finds them.
pub fn copy_gold_sql(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/gold");
    let to = to.join("sql/gold");
    std::fs::create_dir_all(&to).expect("create sql/gold");
    for entry in std::fs::read_dir(&from).expect("read sql/gold") {
        let entry = entry.expect("sql/gold entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy a gold model");
    }
}

/// A small generated source: the generator's default mixed stream, where two tenants embed
/// schemas and one does not, so the relay meets columns typed by one tenant's schema and
/// values of another's schemaless JSON.
pub fn generator() -> GeneratorConfig {
    GeneratorConfig {
        orders: 60,
        customers: 20,
        products: 10,
        ..GeneratorConfig::default()
    }
}

/// A lake, the generated source, and `gold.order_facts` computed by the batch path.
pub struct Setup {
    pub lake: Lake,
    pub source: GeneratedSource,
    /// Normalized gold rows by (tenant, order_id).
    pub gold: BTreeMap<(String, i64), BTreeMap<String, String>>,
}

/// The demo's pipeline config text with a `[relay]` section for `server` plus `relay_toml`.
pub fn relay_config_text(server: &StreamLoadServer, relay_toml: &str) -> String {
    format!(
        "{DEMO_CONFIG}\n[relay]\nfe-urls = [\"{}\"]\ndatabase = \"{DB}\"\n{relay_toml}\n",
        server.fe_url()
    )
}

/// [`relay_config_text`] as `dir/firn-relay.toml`, for a `firn relay` process.
pub fn write_relay_config(dir: &Path, server: &StreamLoadServer, relay_toml: &str) -> PathBuf {
    let path = dir.join("firn-relay.toml");
    std::fs::write(&path, relay_config_text(server, relay_toml)).expect("write the relay config");
    path
}

/// `firn --config <config> relay --brokers <brokers>` run in the config's directory, its
/// admin endpoint on a free port and its log in `log` there; callers add arguments and
/// environment.
pub fn relay_command(config: &Path, brokers: &str, log: &str) -> Command {
    let dir = config.parent().expect("config directory");
    let mut command = Command::new(crate::firn_binary());
    command
        .arg("--config")
        .arg(config)
        .args(["relay", "--brokers", brokers])
        .current_dir(dir)
        .env_remove("FIRN_CONFIG")
        .env("FIRN_ADMIN__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join(log)).expect("create the relay log"),
        ));
    command
}

/// [`relay_config_text`] parsed in `dir`; `ledger` names a SQLite catalog database (the
/// relay's ledger) other than the lake's.
pub fn relay_config(
    dir: &Path,
    server: &StreamLoadServer,
    relay_toml: &str,
    ledger: Option<&str>,
) -> PipelineConfig {
    let env: Vec<(String, String)> = ledger
        .map(|name| vec![("FIRN_CATALOG__URI".to_string(), format!("sqlite:{name}"))])
        .unwrap_or_default();
    PipelineConfig::from_toml(&relay_config_text(server, relay_toml), env, dir)
        .expect("relay config")
}

/// Options of an in-process `--once` relay run over the setup's topics to `config`'s target.
pub fn relay_options(setup: &Setup, config: &PipelineConfig) -> RelayOptions {
    RelayOptions {
        brokers: setup.source.brokers.clone(),
        target: config.relay.clone().expect("a [relay] section"),
        stop_when_caught_up: true,
        model_sql: BTreeMap::new(),
        metrics: RelayMetrics::unregistered(),
        health: None,
    }
}

/// Produces `generator`'s stream, runs ingest, silver and gold over it, and keeps gold.
pub async fn setup(generator: &GeneratorConfig) -> Setup {
    // `RUST_LOG=firn_ingest=debug` shows what the relay does when a test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let lake = Lake::sqlite().await;
    copy_gold_sql(lake.dir.path());
    let config =
        PipelineConfig::from_toml(DEMO_CONFIG, Vec::<(String, String)>::new(), lake.dir.path())
            .expect("demo config");
    let catalog = Catalog::connect(&config)
        .await
        .expect("connect the catalog");
    catalog.init(&config).await.expect("create the tables");
    let source = generated_source(generator, 2).await;
    let options = IngestOptions {
        brokers: source.brokers.clone(),
        writer_id: "relay-test".into(),
        stop_when_caught_up: true,
    };
    firn_ingest::writer::run(&catalog, &config, &options)
        .await
        .expect("ingest");
    for source_config in &config.sources {
        let keys = source_config.primary_key.clone().expect("primary key");
        firn_transforms::run_silver(
            &catalog,
            &source_config.table,
            firn_transforms::SilverOptions::new(keys),
        )
        .await
        .expect("silver");
    }
    firn_transforms::run_all_gold(&catalog, &config)
        .await
        .expect("gold");
    let rows = firn_ingest::relay::iceberg_rows(
        &catalog,
        &TableName::new(Tier::Gold, TABLE).expect("gold table name"),
    )
    .await
    .expect("read gold");
    assert!(
        rows.len() > 20,
        "the generator produced live orders: {}",
        rows.len()
    );
    let gold = rows
        .iter()
        .map(|row| (key(row), normalize(row, None)))
        .collect();
    Setup { lake, source, gold }
}

/// A hot or gold row's key.
pub fn key(row: &Map<String, Value>) -> (String, i64) {
    (
        row["tenant"].as_str().expect("tenant").to_string(),
        row["order_id"].as_i64().expect("order_id"),
    )
}

/// Values as comparable text: numbers (and numeric strings, as decimals are sent) to four
/// decimals, other strings as they are. Only `columns` (default: all) are kept.
pub fn normalize(row: &Map<String, Value>, columns: Option<&[String]>) -> BTreeMap<String, String> {
    row.iter()
        .filter(|(name, _)| columns.is_none_or(|c| c.contains(name)))
        .map(|(name, value)| {
            let text = match value {
                Value::Null => "null".to_string(),
                Value::Number(n) => format!("{:.4}", n.as_f64().unwrap_or(f64::NAN)),
                Value::String(s) => s
                    .parse::<f64>()
                    .map(|f| format!("{f:.4}"))
                    .unwrap_or_else(|_| s.clone()),
                other => other.to_string(),
            };
            (name.clone(), text)
        })
        .collect()
}

/// How the hot table differs from gold on gold's columns; empty when equal.
pub fn hot_differences(server: &StreamLoadServer, setup: &Setup) -> Vec<String> {
    let columns: Vec<String> = setup
        .gold
        .values()
        .next()
        .map(|row| row.keys().cloned().collect())
        .unwrap_or_default();
    let hot: BTreeMap<(String, i64), BTreeMap<String, String>> = server
        .rows(DB, TABLE)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_object)
        .map(|row| (key(row), normalize(row, Some(&columns))))
        .collect();
    let mut differences: Vec<String> = setup
        .gold
        .keys()
        .filter(|k| !hot.contains_key(k))
        .map(|k| format!("missing {k:?}"))
        .collect();
    differences.extend(
        hot.keys()
            .filter(|k| !setup.gold.contains_key(k))
            .map(|k| format!("extra {k:?}")),
    );
    for (key, gold) in &setup.gold {
        if let Some(row) = hot.get(key).filter(|row| *row != gold) {
            differences.push(format!("row {key:?}: hot {row:?}, gold {gold:?}"));
        }
    }
    differences
}

/// The hot table equals gold on gold's columns, row for row.
pub fn assert_hot_equals_gold(server: &StreamLoadServer, setup: &Setup) {
    let differences = hot_differences(server, setup);
    assert!(differences.is_empty(), "{differences:#?}");
}

/// No label has two committed transactions among those the server still knows; returns the
/// number of committed labels.
pub fn assert_no_label_committed_twice(server: &StreamLoadServer) -> usize {
    let mut committed: BTreeMap<String, u32> = BTreeMap::new();
    for txn in server.labels() {
        if matches!(txn.state, TxnState::Committed | TxnState::Visible) {
            *committed.entry(txn.label.clone()).or_default() += 1;
        }
    }
    let twice: Vec<_> = committed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "labels committed twice: {twice:?}");
    committed.len()
}

/// Copies every message of the `from` cluster's topics that `pick` selects to the same
/// topic-partition of `to` (which has the topics already), in offset order, so offsets,
/// keys, values and timestamps stay as they were.
pub fn copy_topics(from: &str, to: &str, topics: &[String], partitions: i32) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    use std::time::Duration;

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", from)
        .set("group.id", "firn-test-copy")
        .set("enable.auto.commit", "false")
        .create()
        .expect("copy consumer");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", to)
        .set("enable.idempotence", "true")
        .create()
        .expect("copy producer");
    let mut remaining = 0;
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        for partition in 0..partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .expect("watermarks");
            remaining += high - low;
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("assign");
        }
    }
    consumer.assign(&assignment).expect("assign");
    while remaining > 0 {
        let message = consumer
            .poll(Duration::from_secs(10))
            .expect("a message to copy")
            .expect("consume");
        let mut record =
            BaseRecord::<[u8], [u8]>::to(message.topic()).partition(message.partition());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(value) = message.payload() {
            record = record.payload(value);
        }
        if let Some(ms) = message.timestamp().to_millis() {
            record = record.timestamp(ms);
        }
        producer
            .send(record)
            .map_err(|(err, _)| err)
            .expect("produce");
        producer.poll(Duration::ZERO);
        remaining -= 1;
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}
