//! The hot path end to end: generated Debezium events on the mock Kafka cluster → `firn
//! relay` → the Stream Load test server, checked against the batch path (ingest → silver →
//! gold) over the same offsets: the hot table must equal `gold.order_facts` row for row,
//! every label must be committed at most once, and that must survive full replays, relay
//! crashes between send and acknowledgement, label eviction, and the server's faults.
//! Also the spec's acceptance tests 7, 9 and 10 (shared reference
//! `starrocks-stream-load.md` §9.6).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use firn_catalog::config::PipelineConfig;
use firn_catalog::relay_ledger::RelayLedger;
use firn_catalog::{Catalog, TableName, Tier};
use firn_ingest::demo::DEMO_CONFIG;
use firn_ingest::generator::GeneratorConfig;
use firn_ingest::relay::{self, RelayMetrics, RelayOptions, RelayReport};
use firn_ingest::writer::IngestOptions;
use firn_tests::stream_load::{
    Fault, FaultRule, Limits, StreamLoadConfig, StreamLoadServer, TableSchema, TxnState,
};
use firn_tests::{GeneratedSource, Lake, generated_source};
use serde_json::{Map, Value, json};

const DB: &str = "firn_hot";
const TABLE: &str = "order_facts";

/// `firn_hot.order_facts` as `sql/starrocks/01_hot_tables.sql` creates it.
fn hot_schema() -> TableSchema {
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
    .unwrap()
}

async fn server() -> StreamLoadServer {
    let server = StreamLoadServer::start(StreamLoadConfig::default())
        .await
        .expect("start the Stream Load test server");
    server.create_table(DB, TABLE, hot_schema()).unwrap();
    server
}

fn copy_gold_sql(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/gold");
    let to = to.join("sql/gold");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Every tenant embeds schemas here: with a mixed stream the relay can meet a column whose
/// schema type (e.g. a date) a schemaless value of another tenant does not cast to, and
/// whether it does depends on arrival order (open bug, see the README's relay status). The
/// demo still runs the relay on the mixed stream.
fn generator() -> GeneratorConfig {
    GeneratorConfig {
        orders: 60,
        customers: 20,
        products: 10,
        schemas: firn_ingest::generator::SchemaMode::With,
        ..GeneratorConfig::default()
    }
}

/// A lake, the generated source, and `gold.order_facts` computed by the batch path.
struct Setup {
    lake: Lake,
    source: GeneratedSource,
    /// Normalized gold rows by (tenant, order_id).
    gold: BTreeMap<(String, i64), BTreeMap<String, String>>,
}

/// The demo's pipeline config in `dir` with a `[relay]` section for `server`; `ledger`
/// names a SQLite catalog database (the relay's ledger) other than the lake's.
fn relay_config(
    dir: &Path,
    server: &StreamLoadServer,
    relay_toml: &str,
    ledger: Option<&str>,
) -> PipelineConfig {
    let text = format!(
        "{DEMO_CONFIG}\n[relay]\nfe-urls = [\"{}\"]\ndatabase = \"{DB}\"\n{relay_toml}\n",
        server.fe_url()
    );
    let env: Vec<(String, String)> = ledger
        .map(|name| vec![("FIRN_CATALOG__URI".to_string(), format!("sqlite:{name}"))])
        .unwrap_or_default();
    PipelineConfig::from_toml(&text, env, dir).unwrap()
}

async fn setup(generator: &GeneratorConfig) -> Setup {
    // `RUST_LOG=firn_ingest=debug` shows what the relay does when a test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let lake = Lake::sqlite().await;
    copy_gold_sql(lake.dir.path());
    let config =
        PipelineConfig::from_toml(DEMO_CONFIG, Vec::<(String, String)>::new(), lake.dir.path())
            .unwrap();
    let catalog = Catalog::connect(&config).await.unwrap();
    catalog.init(&config).await.unwrap();
    let source = generated_source(generator, 2).await;
    let options = IngestOptions {
        brokers: source.brokers.clone(),
        writer_id: "relay-test".into(),
        stop_when_caught_up: true,
    };
    firn_ingest::writer::run(&catalog, &config, &options)
        .await
        .unwrap();
    for source_config in &config.sources {
        let keys = source_config.primary_key.clone().unwrap();
        firn_transforms::run_silver(
            &catalog,
            &source_config.table,
            firn_transforms::SilverOptions::new(keys),
        )
        .await
        .unwrap();
    }
    firn_transforms::run_all_gold(&catalog, &config)
        .await
        .unwrap();
    let rows = relay::iceberg_rows(&catalog, &TableName::new(Tier::Gold, TABLE).unwrap())
        .await
        .unwrap();
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

fn key(row: &Map<String, Value>) -> (String, i64) {
    (
        row["tenant"].as_str().unwrap().to_string(),
        row["order_id"].as_i64().unwrap(),
    )
}

/// Values as comparable text: numbers (and numeric strings, as decimals are sent) to four
/// decimals, other strings as they are. Only `columns` (default: all) are kept.
fn normalize(row: &Map<String, Value>, columns: Option<&[String]>) -> BTreeMap<String, String> {
    row.iter()
        .filter(|(name, _)| columns.is_none_or(|c| c.contains(name)))
        .map(|(name, value)| {
            let text = match value {
                Value::Null => "null".to_string(),
                Value::Number(n) => format!("{:.4}", n.as_f64().unwrap()),
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

fn relay_options(setup: &Setup, config: &PipelineConfig) -> RelayOptions {
    RelayOptions {
        brokers: setup.source.brokers.clone(),
        target: config.relay.clone().unwrap(),
        stop_when_caught_up: true,
        model_sql: BTreeMap::new(),
        metrics: RelayMetrics::unregistered(),
        health: None,
    }
}

async fn relay_once(config: &PipelineConfig, options: &RelayOptions) -> RelayReport {
    relay::run(config, options, &AtomicBool::new(false))
        .await
        .expect("relay run")
}

/// The hot table equals gold on gold's columns, row for row.
fn assert_hot_equals_gold(server: &StreamLoadServer, setup: &Setup) {
    let columns: Vec<String> = setup
        .gold
        .values()
        .next()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let hot: BTreeMap<(String, i64), BTreeMap<String, String>> = server
        .rows(DB, TABLE)
        .unwrap()
        .iter()
        .map(|row| {
            let row = row.as_object().unwrap();
            (key(row), normalize(row, Some(&columns)))
        })
        .collect();
    let missing: Vec<_> = setup.gold.keys().filter(|k| !hot.contains_key(k)).collect();
    let extra: Vec<_> = hot.keys().filter(|k| !setup.gold.contains_key(k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    for (key, gold) in &setup.gold {
        assert_eq!(&hot[key], gold, "row {key:?}");
    }
}

/// No label has two committed transactions among those the server still knows.
fn assert_no_label_committed_twice(server: &StreamLoadServer) -> usize {
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

fn loads(report: &RelayReport) -> u64 {
    report.tables.values().map(|t| t.loads).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_table_equals_gold_and_replays_change_nothing() {
    let setup = setup(&generator()).await;
    let server = server().await;
    let config = relay_config(
        setup.lake.dir.path(),
        &server,
        "interval = \"100ms\"\nmax-batch-rows = 40",
        None,
    );
    let options = relay_options(&setup, &config);
    let first = relay_once(&config, &options).await;
    assert!(loads(&first) > 3, "several batches: {first:?}");
    assert_eq!(first.records_replayed, 0);
    assert_hot_equals_gold(&server, &setup);
    let committed = assert_no_label_committed_twice(&server);
    assert_eq!(committed as u64, loads(&first));
    // Every row carries the label of a load and a relay version at least its source version.
    for row in server.rows(DB, TABLE).unwrap() {
        let label = row["relay_label"].as_str().unwrap();
        assert!(
            first.tables[TABLE].labels.iter().any(|l| l == label),
            "{row}"
        );
        assert!(row["relay_version"].as_i64().unwrap() >= row["source_version"].as_i64().unwrap());
    }

    // Again with the same ledger: the state is rebuilt from Kafka, nothing is loaded.
    let again = relay_once(&config, &options).await;
    assert_eq!(loads(&again), 0, "{again:?}");
    assert!(again.records_replayed > 0);
    assert_hot_equals_gold(&server, &setup);

    // A full Kafka replay with a fresh ledger: every batch is loaded again under new labels
    // and the Primary Key table with merge_condition ends exactly where it was.
    let fresh = relay_config(
        setup.lake.dir.path(),
        &server,
        "interval = \"100ms\"\nmax-batch-rows = 25",
        Some("fresh-ledger.db"),
    );
    let replay = relay_once(&fresh, &relay_options(&setup, &fresh)).await;
    assert!(loads(&replay) > 3);
    assert_hot_equals_gold(&server, &setup);
    assert_eq!(
        assert_no_label_committed_twice(&server) as u64,
        loads(&first) + loads(&replay)
    );
}

/// §9.6 test 9: the relay dies between sending a batch and recording its acknowledgement;
/// on restart the ledger's pending batch is sent again under its label, and every batch is
/// committed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_between_send_and_ack_loads_every_batch_once() {
    let setup = setup(&generator()).await;
    let server = server().await;
    // Slow loads keep a batch in flight most of the time.
    server.set_fault(FaultRule::always(Fault::SlowBe { delay_ms: 250 }));
    let config = relay_config(
        setup.lake.dir.path(),
        &server,
        "interval = \"100ms\"\nmax-batch-rows = 30",
        None,
    );
    let options = relay_options(&setup, &config);
    let ledger = RelayLedger::connect(&config.catalog_database().unwrap(), None)
        .await
        .unwrap();
    let ledger_key = format!("{DB}.{TABLE}");
    let mut restarts_with_pending = 0;
    let mut seed: u64 = 0x5eed;
    for _ in 0..6 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let run_for = Duration::from_millis(300 + (seed >> 33) % 1200);
        // A crash: the relay runs on a runtime of its own that is then abandoned without
        // any cleanup (no drain, no acknowledgement, nothing dropped in order).
        let config_run = config.clone();
        let options_run = options.clone();
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.spawn(async move {
                relay::run(&config_run, &options_run, &AtomicBool::new(false)).await
            });
            std::thread::sleep(run_for);
            runtime.shutdown_background();
        })
        .await
        .unwrap();
        if !ledger.load(&ledger_key).await.unwrap().pending.is_empty() {
            restarts_with_pending += 1;
        }
    }
    assert!(
        restarts_with_pending > 0,
        "some kill landed between send and ack"
    );
    server.clear_faults();
    let last = relay_once(&config, &options).await;
    assert_hot_equals_gold(&server, &setup);
    assert_no_label_committed_twice(&server);
    // Every label the ledger acknowledged is committed once, and every send of it is counted.
    let entries = ledger.labels(&ledger_key).await.unwrap();
    assert!(
        entries.iter().all(|(_, _, state)| state == "acked"),
        "{entries:?}"
    );
    let committed: Vec<String> = server
        .labels()
        .into_iter()
        .filter(|t| matches!(t.state, TxnState::Visible | TxnState::Committed))
        .map(|t| t.label)
        .collect();
    for (_, label, _) in &entries {
        let rows = committed.iter().filter(|l| *l == label).count();
        assert!(rows <= 1, "{label} committed {rows} times");
        if rows == 1 {
            assert!(server.attempts(label) >= 1);
        }
    }
    assert!(
        last.records_replayed > 0,
        "the last run rebuilt its state: {last:?}"
    );
}

/// §9.6 test 10: StarRocks evicts a label before the relay learns the load committed; the
/// same label is then loaded again, and the Primary Key table with `merge_condition` on the
/// relay version stays equal to gold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_label_loaded_again_leaves_the_table_right() {
    let setup = setup(&generator()).await;
    let server = server().await;
    server.set_limits(Limits {
        label_keep_max_num: 0,
        ..Limits::default()
    });
    server.set_fault(FaultRule::times(Fault::LostResponse, 4));
    let config = relay_config(
        setup.lake.dir.path(),
        &server,
        "interval = \"100ms\"\nmax-batch-rows = 30",
        None,
    );
    let report = relay_once(&config, &relay_options(&setup, &config)).await;
    let labels = &report.tables[TABLE].labels;
    let doubled = labels.iter().filter(|l| server.attempts(l) >= 2).count();
    assert!(
        doubled > 0,
        "a lost response was followed by a resend of the evicted label"
    );
    assert_hot_equals_gold(&server, &setup);
}

/// §9.6 test 7: StarRocks refuses every load (running-txn limit): the relay backs off and
/// retries the same label, pauses Kafka instead of buffering, and finishes once the limit
/// lifts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_txn_limit_pauses_the_consumer_instead_of_growing_memory() {
    let setup = setup(&generator()).await;
    let server = server().await;
    server.set_limits(Limits {
        max_running_txn_num_per_db: 0,
        ..Limits::default()
    });
    let budget = 16 * 1024;
    let config = relay_config(
        setup.lake.dir.path(),
        &server,
        &format!(
            "interval = \"100ms\"\nmax-batch-rows = 20\nmax-batch-bytes = {budget}\nmax-in-flight-bytes = {budget}"
        ),
        None,
    );
    let options = relay_options(&setup, &config);
    let metrics = options.metrics.clone();
    let task = {
        let config = config.clone();
        let options = options.clone();
        tokio::spawn(async move { relay::run(&config, &options, &AtomicBool::new(false)).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while metrics.paused.get() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer never paused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        metrics.paused.get(),
        1,
        "still paused while StarRocks refuses"
    );
    let refused = server
        .labels()
        .iter()
        .filter(|t| matches!(t.state, TxnState::Visible | TxnState::Committed))
        .count();
    assert_eq!(refused, 0, "nothing committed under the limit");
    server.set_limits(Limits::default());
    let report = tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("the relay finishes once the limit lifts")
        .unwrap()
        .unwrap();
    assert!(report.pauses >= 1);
    assert!(
        report.peak_buffered_bytes <= 2 * budget + budget,
        "memory stayed bounded: {} bytes",
        report.peak_buffered_bytes
    );
    assert!(
        report.tables[TABLE].retries > 0,
        "the refused load was retried"
    );
    assert_hot_equals_gold(&server, &setup);
    assert_no_label_committed_twice(&server);
}

/// A batch run against a StarRocks that keeps refusing ends with an error after
/// `max-attempts` sends instead of retrying forever; the next run loads the same labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_run_gives_up_after_max_attempts_and_the_next_run_finishes() {
    let setup = setup(&generator()).await;
    let server = server().await;
    server.set_limits(Limits {
        max_running_txn_num_per_db: 0,
        ..Limits::default()
    });
    let config = relay_config(
        setup.lake.dir.path(),
        &server,
        "interval = \"100ms\"\nmax-attempts = 3",
        None,
    );
    let options = relay_options(&setup, &config);
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        relay::run(&config, &options, &AtomicBool::new(false)),
    )
    .await
    .expect("the run ends on its own")
    .expect_err("StarRocks refused every load");
    assert!(
        err.to_string().contains("gave up after 3 attempts"),
        "{err}"
    );
    assert!(
        server.rows(DB, TABLE).unwrap_or_default().is_empty(),
        "nothing was loaded"
    );

    server.set_limits(Limits::default());
    relay_once(&config, &options).await;
    assert_hot_equals_gold(&server, &setup);
    assert_no_label_committed_twice(&server);
}

/// Every fault the test server injects, spread over one run (counted faults while loading,
/// then an FE outage and a BE outage): the table still equals gold and no label is committed
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_under_load_leave_the_table_equal_to_gold() {
    let setup = setup(&generator()).await;
    let server = server().await;
    for (fault, times) in [
        (
            Fault::PublishTimeout {
                visible_after_ms: 300,
            },
            2,
        ),
        (Fault::CommitUnknown, 2),
        (Fault::LostResponse, 2),
        (Fault::DropConnection, 2),
        (Fault::SlowBe { delay_ms: 400 }, 2),
        (Fault::BeShuttingDown, 2),
        (Fault::FeError500, 1),
    ] {
        server.set_fault(FaultRule::times(fault, times));
    }
    let config = relay_config(
        setup.lake.dir.path(),
        &server,
        "interval = \"100ms\"\nmax-batch-rows = 10",
        None,
    );
    let options = relay_options(&setup, &config);
    let task = {
        let config = config.clone();
        let options = options.clone();
        tokio::spawn(async move { relay::run(&config, &options, &AtomicBool::new(false)).await })
    };
    // Outages are states, not counted faults: on for a while, then cleared.
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.set_fault(FaultRule::always(Fault::FeDown));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.clear_faults();
    server.set_fault(FaultRule::always(Fault::BeDown));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.clear_faults();
    let report = tokio::time::timeout(Duration::from_secs(180), task)
        .await
        .expect("the relay finishes after the outages")
        .unwrap()
        .expect("relay run");
    assert!(report.tables[TABLE].retries > 0, "{report:?}");
    assert_hot_equals_gold(&server, &setup);
    assert_no_label_committed_twice(&server);
    // Label retention evicting everything, then a full replay with a fresh ledger.
    server.evict_labels(DB, None);
    let fresh = relay_config(
        setup.lake.dir.path(),
        &server,
        "interval = \"100ms\"",
        Some("second-ledger.db"),
    );
    relay_once(&fresh, &relay_options(&setup, &fresh)).await;
    assert_hot_equals_gold(&server, &setup);
}
