//! `firn demo`: the whole pipeline on one machine with no services. librdkafka's
//! in-process mock cluster is the broker, SQLite the catalog, `./warehouse` the storage.
//! It generates Debezium events for several tenants, ingests them into bronze, computes
//! silver (the current state per tenant and key) and the gold models, and reports what it committed next to
//! what the generator says should be there. Does I/O.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use firn_catalog::config::PipelineConfig;
use firn_catalog::history;
use firn_catalog::{Catalog, TableName};
use rdkafka::mocking::MockCluster;
use serde::Serialize;

use crate::error::IngestError;
use crate::generator::{Generator, GeneratorConfig, Table, produce_to_kafka};
use crate::writer::{IngestOptions, IngestReport};
use firn_transforms::{GoldModel, GoldOptions, SilverOptions, preview, run_gold, run_order};

/// The demo's pipeline configuration: the documented example with its defaults.
pub const DEMO_CONFIG: &str = include_str!("../../docs/firn.example.toml");

/// The gold models the demo runs, built in so the demo works from any directory.
const DEMO_GOLD_SQL: &[(&str, &str)] = &[
    (
        "order_facts",
        include_str!("../../sql/gold/order_facts.sql"),
    ),
    (
        "daily_revenue",
        include_str!("../../sql/gold/daily_revenue.sql"),
    ),
    (
        "customer_ltv",
        include_str!("../../sql/gold/customer_ltv.sql"),
    ),
];

/// File that marks a warehouse directory as the demo's own, so a re-run may replace it.
const DEMO_MARKER: &str = ".firn-demo";

/// Options for [`run`].
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Directory that receives `warehouse/`.
    pub dir: PathBuf,
    pub generator: GeneratorConfig,
    pub partitions: i32,
}

/// One table as the demo left it.
#[derive(Debug, Clone, Serialize)]
pub struct DemoTable {
    pub table: String,
    pub snapshot_id: Option<i64>,
    pub snapshots: usize,
    pub rows: u64,
    /// Rows the generator says the table must hold, if known: distinct change events for
    /// bronze, live keys for silver.
    pub expected_rows: Option<u64>,
}

/// What the demo did.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub warehouse: String,
    pub catalog: String,
    pub messages_produced: u64,
    pub ingest: IngestReport,
    pub tables: Vec<DemoTable>,
    /// The first rows of `gold.order_facts`, as a text grid.
    pub sample_gold: Option<String>,
    /// The relay's hot table next to `gold.order_facts` (run against the Stream Load test
    /// server when no `[relay]` is configured); `None` when the test server is not built.
    pub hot: Option<crate::relay::test_server::HotDemo>,
}

impl DemoReport {
    /// True when every bronze and silver table holds exactly what the generator expects.
    pub fn matches_expected(&self) -> bool {
        self.tables
            .iter()
            .all(|t| t.expected_rows.is_none_or(|expected| expected == t.rows))
            && self.hot.as_ref().is_none_or(|hot| hot.equal)
    }
}

/// Runs the demo; `progress` receives one line per step.
pub async fn run(
    options: &DemoOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<DemoReport, IngestError> {
    let dir = std::path::absolute(&options.dir).map_err(|source| IngestError::Io {
        path: options.dir.display().to_string(),
        source,
    })?;
    let warehouse = dir.join("warehouse");
    prepare_warehouse(&warehouse)?;
    let config = PipelineConfig::from_toml(DEMO_CONFIG, Vec::new(), &dir)?;
    let catalog = Catalog::connect(&config).await?;
    let init = catalog.init(&config).await?;
    progress(&format!(
        "catalog ready: {} tables created",
        init.created.len()
    ));

    let cluster = MockCluster::new(1).map_err(IngestError::kafka("start the mock cluster"))?;
    let brokers = cluster.bootstrap_servers();
    progress(&format!("in-process Kafka mock cluster at {brokers}"));

    let mut generator = Generator::new(&options.generator)?;
    for topic in generator.topics() {
        cluster
            .create_topic(&topic, options.partitions, 1)
            .map_err(IngestError::kafka("create a topic on the mock cluster"))?;
    }
    let stats = produce_to_kafka(
        &brokers,
        &Default::default(),
        options.partitions,
        &mut generator,
        |p| {
            tracing::debug!(sent = p.sent, delivered = p.delivered, "producing");
        },
    )
    .await?;
    let counts = generator.expected().counts_report();
    progress(&format!(
        "generated {} Debezium messages for tenants {} ({} change events, {} tombstones, {} restart duplicates)",
        stats.messages,
        options.generator.tenants.join(", "),
        counts.totals.change_events,
        counts.totals.tombstones,
        counts.totals.duplicates,
    ));

    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (topic, topic_counts) in &counts.topics {
        let table = topic.rsplit('.').next().unwrap_or(topic);
        *expected.entry(format!("bronze.{table}")).or_default() += topic_counts.change_events;
    }

    let ingest = crate::writer::run(
        &catalog,
        &config,
        &IngestOptions {
            brokers: brokers.clone(),
            writer_id: "firn-demo".into(),
            stop_when_caught_up: true,
        },
    )
    .await?;
    progress(&format!(
        "ingested {} records ({} tombstones skipped, {} connector re-emissions dropped, {} dead letters)",
        ingest.records_consumed, ingest.tombstones, ingest.duplicates_dropped, ingest.dead_letters
    ));

    // Silver: the current state per tenant and key, computed from the bronze just written.
    for source in &config.sources {
        let keys = source.primary_key.clone().ok_or_else(|| {
            IngestError::Invalid(format!(
                "source `{}` needs primary-key for silver",
                source.table
            ))
        })?;
        let silver =
            firn_transforms::run_silver(&catalog, &source.table, SilverOptions::new(keys)).await?;
        progress(&format!(
            "{} from {} snapshot {}: {} rows ({:?})",
            silver.table,
            silver.input_table,
            silver
                .input_snapshot_id
                .map(|id| id.to_string())
                .unwrap_or_else(|| "-".into()),
            silver.rows,
            silver.status
        ));
    }
    for table in Table::ALL {
        let rows: usize = options
            .generator
            .tenants
            .iter()
            .map(|tenant| generator.expected().row_count(table, tenant))
            .sum();
        expected.insert(format!("silver.{}", table.name()), rows as u64);
    }
    // One order fact per live order.
    let live_orders = expected.get("silver.orders").copied();
    if let Some(orders) = live_orders {
        expected.insert("gold.order_facts".to_string(), orders);
    }

    // Gold: the SQL models over silver, in dependency order.
    let mut models = Vec::new();
    for model in &config.gold {
        let sql = DEMO_GOLD_SQL
            .iter()
            .find(|(name, _)| *name == model.name)
            .map(|(_, sql)| sql.to_string())
            .ok_or_else(|| {
                IngestError::Invalid(format!("no built-in SQL for gold model `{}`", model.name))
            })?;
        models.push(GoldModel::new(model, sql)?);
    }
    for model in run_order(&models)? {
        let gold = run_gold(&catalog, model, &GoldOptions::default()).await?;
        progress(&format!(
            "{} from {:?}: {} rows ({:?})",
            gold.table, gold.input_snapshots, gold.rows, gold.status
        ));
    }
    let order_facts = TableName::new(firn_catalog::Tier::Gold, "order_facts")?;
    let sample_gold = preview(&catalog, &order_facts, &["tenant", "order_id"], 5).await?;

    // Hot path: the relay shapes the same gold rows from the topics and loads them into the
    // Stream Load test server, a stand-in for StarRocks.
    let hot = if config.relay.is_none() {
        let model_sql = DEMO_GOLD_SQL
            .iter()
            .map(|(name, sql)| (name.to_string(), sql.to_string()))
            .collect();
        crate::relay::test_server::demo_relay(&catalog, &config, &brokers, model_sql, progress)
            .await
            .map_err(|err| IngestError::Invalid(format!("hot path: {err}")))?
    } else {
        None
    };

    let mut tables = Vec::new();
    for name in catalog.list_tables().await? {
        tables.push(describe(&catalog, &name, expected.get(&name.to_string()).copied()).await?);
    }
    drop(cluster);
    Ok(DemoReport {
        warehouse: warehouse.display().to_string(),
        catalog: config.catalog_database()?.to_string(),
        messages_produced: stats.messages,
        ingest,
        tables,
        sample_gold,
        hot,
    })
}

async fn describe(
    catalog: &Catalog,
    name: &TableName,
    expected_rows: Option<u64>,
) -> Result<DemoTable, IngestError> {
    let table = catalog.load_table(name).await?;
    let metadata = table.metadata_ref();
    let current = metadata.current_snapshot();
    let rows = current
        .and_then(|s| s.summary().additional_properties.get("total-records"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(DemoTable {
        table: name.to_string(),
        snapshot_id: current.map(|s| s.snapshot_id()),
        snapshots: history::snapshots(&metadata).len(),
        rows,
        expected_rows,
    })
}

/// Creates `warehouse`, replacing it only if an earlier demo run made it.
fn prepare_warehouse(warehouse: &Path) -> Result<(), IngestError> {
    let io = |source| IngestError::Io {
        path: warehouse.display().to_string(),
        source,
    };
    if warehouse.exists() {
        if !warehouse.join(DEMO_MARKER).exists() {
            return Err(IngestError::Invalid(format!(
                "{} exists and was not created by `firn demo`; move it away or run the demo elsewhere",
                warehouse.display()
            )));
        }
        std::fs::remove_dir_all(warehouse).map_err(io)?;
    }
    std::fs::create_dir_all(warehouse).map_err(io)?;
    std::fs::write(
        warehouse.join(DEMO_MARKER),
        "created by `firn demo`; re-running the demo replaces this directory\n",
    )
    .map_err(io)
}
