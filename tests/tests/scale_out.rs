//! Bronze ingest as a service: several `firn ingest` processes in one consumer group on a real
//! Kafka-protocol broker (tansu) and a Postgres catalog, with kill -9, rebalances and a zombie;
//! a broker outage on the mock cluster; the admin endpoint; oversized messages and headers in
//! the dead letters; and one failing table not stalling the others. Every case is checked
//! against the generator's ground truth, read back by pyiceberg.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use firn_catalog::{Catalog, PipelineConfig};
use firn_ingest::admin::{AdminServer, Health};
use firn_ingest::generator::{Generator, GeneratorConfig, produce_to_kafka};
use firn_ingest::metrics::IngestMetrics;
use firn_ingest::writer::{IngestOptions, run, run_service};
use firn_tests::broker::TansuBroker;
use firn_tests::{Lake, bronze_rows_and_repeats, firn_binary, generated_source};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const TABLES: [&str; 4] = ["customers", "products", "orders", "order_items"];
const EXAMPLE_CONFIG: &str = include_str!("../../docs/firn.example.toml");

/// The example pipeline on `lake`, plus environment overrides.
fn lake_config(lake: &Lake, env: &[(&str, &str)]) -> PipelineConfig {
    let mut all = vec![("FIRN_WAREHOUSE__URI".to_string(), lake.warehouse_uri())];
    if lake.is_postgres() {
        all.push(("FIRN_CATALOG__URI".to_string(), lake.reader_uri()));
    }
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    PipelineConfig::from_toml(EXAMPLE_CONFIG, all, lake.dir.path()).unwrap()
}

/// `run_service` in a task, stopped through [`Service::stop`].
struct Service {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<
        Result<firn_ingest::writer::IngestReport, firn_ingest::IngestError>,
    >,
}

impl Service {
    fn start(
        catalog: &Catalog,
        config: &PipelineConfig,
        brokers: &str,
        writer: &str,
        metrics: IngestMetrics,
        health: Arc<Health>,
    ) -> Service {
        let stop = Arc::new(AtomicBool::new(false));
        let (catalog, config, flag) = (catalog.clone(), config.clone(), stop.clone());
        let options = IngestOptions {
            brokers: brokers.to_string(),
            writer_id: writer.to_string(),
            stop_when_caught_up: false,
        };
        let task = tokio::spawn(async move {
            run_service(&catalog, &config, &options, &flag, &metrics, &health).await
        });
        Service { stop, task }
    }

    async fn stop(self) -> firn_ingest::writer::IngestReport {
        self.stop.store(true, Ordering::SeqCst);
        self.task
            .await
            .unwrap()
            .expect("the service ran without error")
    }
}

/// A service-mode ingest setup: a lake with the example config and `env`, its catalog
/// initialised, a mock cluster with `generator`'s topics (2 partitions each, still empty)
/// and the generator.
struct ServiceSetup {
    lake: Lake,
    config: PipelineConfig,
    catalog: Catalog,
    _cluster: rdkafka::mocking::MockCluster<'static, DefaultProducerContext>,
    brokers: String,
    generator: Generator,
}

impl ServiceSetup {
    async fn new(env: &[(&str, &str)], generator: &GeneratorConfig) -> ServiceSetup {
        let lake = Lake::sqlite().await;
        let config = lake_config(&lake, env);
        let catalog = Catalog::connect(&config).await.unwrap();
        catalog.init(&config).await.unwrap();
        let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
        let brokers = cluster.bootstrap_servers();
        let generator = Generator::new(generator).unwrap();
        for topic in generator.topics() {
            cluster.create_topic(&topic, 2, 1).unwrap();
        }
        ServiceSetup {
            lake,
            config,
            catalog,
            _cluster: cluster,
            brokers,
            generator,
        }
    }
}

/// Produces `messages` to the setup's topics (2 partitions each).
async fn produce(
    brokers: &str,
    messages: impl Iterator<Item = firn_ingest::generator::CdcMessage>,
) {
    produce_to_kafka(brokers, &Default::default(), 2, messages, |_| {})
        .await
        .unwrap();
}

/// Expected bronze rows per table (distinct change events over all tenants).
fn expected_per_table(generator: &Generator) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (topic, counts) in generator.expected().counts_report().topics {
        let table = topic.rsplit('.').next().unwrap().to_string();
        *out.entry(table).or_insert(0) += counts.change_events;
    }
    out
}

/// A `firn ingest` service process on the lake, in consumer group `group`.
fn spawn_ingest(lake: &Lake, brokers: &str, group: &str, writer: &str) -> Child {
    std::fs::write(lake.dir.path().join("firn.toml"), EXAMPLE_CONFIG).unwrap();
    // Rounds of one process each restart faster without a group to rejoin.
    let assignment = if group == "random-kill" {
        "static"
    } else {
        "group"
    };
    let mut command = Command::new(firn_binary());
    if lake.is_postgres() {
        command.env("FIRN_CATALOG__URI", lake.reader_uri());
    }
    command
        .args(["ingest", "--brokers", brokers, "--writer-id", writer])
        .current_dir(lake.dir.path())
        .env_remove("FIRN_CONFIG")
        .env("FIRN_WAREHOUSE__URI", lake.warehouse_uri())
        .env("FIRN_KAFKA__GROUP_ID", group)
        .env("FIRN_KAFKA__ASSIGNMENT", assignment)
        .env("FIRN_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
        .env("FIRN_KAFKA__PROPERTIES__HEARTBEAT_INTERVAL_MS", "1000")
        .env("FIRN_COMMIT__INTERVAL", "1s")
        .env("FIRN_ADMIN__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(lake.dir.path().join(format!("{writer}.log"))).unwrap(),
        ))
        .spawn()
        .expect("start firn ingest")
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
}

/// Waits until bronze holds `expected` rows per table (or the deadline passes) and returns
/// what pyiceberg reads.
fn wait_for_bronze(
    lake: &Lake,
    expected: &BTreeMap<String, u64>,
    timeout: Duration,
) -> (BTreeMap<String, u64>, u64) {
    let deadline = Instant::now() + timeout;
    loop {
        let (rows, repeats) = bronze_rows_and_repeats(lake, &TABLES);
        if &rows == expected || Instant::now() > deadline {
            return (rows, repeats);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn logs(lake: &Lake) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(lake.dir.path()).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- {}\n", entry.path().display()));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Three processes share the partitions through the consumer group on tansu. One is killed
/// with SIGKILL (its partitions move after the session timeout), a replacement joins
/// (rebalance), and one is frozen past its session timeout (a zombie whose partitions were
/// given away) and thawed: every event is in bronze once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_in_one_group_on_a_real_broker_land_every_event_once() {
    let lake = Lake::postgres().await;
    let broker = TansuBroker::start();
    let config = GeneratorConfig {
        orders: 400,
        customers: 200,
        restart_duplicates: 2,
        ..GeneratorConfig::default()
    };
    let mut generator = Generator::new(&config).unwrap();
    broker.create_topics(&generator.topics(), 3).await;
    // Tables exist before three processes race to create them.
    let pipeline = lake_config(&lake, &[]);
    Catalog::connect(&pipeline)
        .await
        .unwrap()
        .init(&pipeline)
        .await
        .unwrap();

    let group = format!("scale-out-{}", uuid::Uuid::new_v4().simple());
    let mut a = spawn_ingest(&lake, &broker.bootstrap, &group, "a");
    let mut b = spawn_ingest(&lake, &broker.bootstrap, &group, "b");
    let mut c = spawn_ingest(&lake, &broker.bootstrap, &group, "c");
    // Produce while the group forms, so records arrive during rebalances.
    produce_to_kafka(
        &broker.bootstrap,
        &Default::default(),
        3,
        &mut generator,
        |_| {},
    )
    .await
    .unwrap();
    let expected = expected_per_table(&generator);
    tokio::time::sleep(Duration::from_secs(4)).await;
    signal(&b, "KILL");
    b.wait().unwrap();
    let mut d = spawn_ingest(&lake, &broker.bootstrap, &group, "d");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The zombie: frozen well past its 6 s session timeout, its partitions go elsewhere.
    signal(&c, "STOP");
    tokio::time::sleep(Duration::from_secs(12)).await;
    signal(&c, "CONT");

    let (rows, repeats) = wait_for_bronze(&lake, &expected, Duration::from_secs(150));
    for child in [&mut a, &mut c, &mut d] {
        signal(child, "TERM");
    }
    for child in [&mut a, &mut c, &mut d] {
        child.wait().unwrap();
    }
    assert_eq!(rows, expected, "every change event once\n{}", logs(&lake));
    assert_eq!(repeats, 0, "no Kafka record twice\n{}", logs(&lake));
    // After SIGTERM everything is committed: nothing more arrives.
    assert_eq!(bronze_rows_and_repeats(&lake, &TABLES).0, expected);
}

/// The broker goes down mid-stream and comes back: the service waits, resumes, and bronze
/// ends with every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_loses_and_duplicates_nothing() {
    let lake = Lake::sqlite().await;
    let config = lake_config(
        &lake,
        &[
            ("FIRN_COMMIT__INTERVAL", "1s"),
            ("FIRN_KAFKA__ASSIGNMENT", "static"),
        ],
    );
    let catalog = Catalog::connect(&config).await.unwrap();
    let generator_config = GeneratorConfig {
        orders: 300,
        customers: 150,
        restart_duplicates: 2,
        ..GeneratorConfig::default()
    };
    let source = generated_source(&generator_config, 2).await;
    let expected = expected_per_table(&source.generator);

    let service = Service::start(
        &catalog,
        &config,
        &source.brokers,
        "outage",
        IngestMetrics::unregistered(),
        Health::new(),
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    source.cluster.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    source.cluster.broker_up(1).unwrap();

    let lake_ref = &lake;
    let (rows, repeats) = tokio::task::block_in_place(|| {
        wait_for_bronze(lake_ref, &expected, Duration::from_secs(90))
    });
    let report = service.stop().await;
    assert_eq!(rows, expected, "every change event once");
    assert_eq!(repeats, 0);
    assert!(
        report.duplicates_dropped > 0,
        "connector re-emissions dropped"
    );
}

/// `/metrics`, `/livez` and `/readyz` describe the running service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_reports_progress_and_health() {
    let lake = Lake::sqlite().await;
    let config = lake_config(&lake, &[("FIRN_COMMIT__INTERVAL", "1s")]);
    let catalog = Catalog::connect(&config).await.unwrap();
    let generator_config = GeneratorConfig {
        orders: 60,
        customers: 30,
        restart_duplicates: 1,
        ..GeneratorConfig::default()
    };
    let source = generated_source(&generator_config, 2).await;
    let expected = expected_per_table(&source.generator);

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = IngestMetrics::register(&mut registry);
    let health = Health::new();
    let admin = AdminServer::start("127.0.0.1:0", Arc::new(registry), health.clone())
        .await
        .unwrap();
    let base = format!("http://{}", admin.local_addr());
    let get = |path: &'static str| {
        let url = format!("{base}{path}");
        async move {
            let response = reqwest::get(&url).await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(get("/livez").await.0, 200);
    assert_eq!(
        get("/readyz").await.0,
        503,
        "not ready before it has partitions"
    );

    let service = Service::start(
        &catalog,
        &config,
        &source.brokers,
        "admin",
        metrics.clone(),
        health.clone(),
    );
    let lake_ref = &lake;
    let (rows, _) = tokio::task::block_in_place(|| {
        wait_for_bronze(lake_ref, &expected, Duration::from_secs(90))
    });
    assert_eq!(rows, expected);
    assert_eq!(get("/readyz").await.0, 200, "ready while consuming");
    let (status, text) = get("/metrics").await;
    assert_eq!(status, 200);
    let value = |name: &str| -> f64 {
        text.lines()
            .filter(|line| line.starts_with(name))
            .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    let written: u64 = expected.values().sum();
    assert_eq!(value("firn_ingest_records_written_total{") as u64, written);
    assert!(value("firn_ingest_duplicates_dropped_total{") > 0.0);
    assert!(value("firn_ingest_commit_duration_seconds_count{") >= 4.0);
    assert!(text.contains("firn_ingest_freshness_seconds{table=\"orders\"}"));
    assert!(text.contains("firn_ingest_last_snapshot_id{table=\"orders\"}"));
    assert_eq!(
        value("firn_ingest_assigned_partitions"),
        24.0,
        "3 tenants × 4 tables × 2 partitions"
    );
    service.stop().await;
    assert_eq!(get("/readyz").await.0, 503, "not ready once stopped");
}

/// An oversized message goes to the dead letters (truncated, with its headers) and the
/// partition keeps moving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_dead_lettered_with_their_headers() {
    let lake = Lake::sqlite().await;
    let config = lake_config(&lake, &[("FIRN_KAFKA__MAX_MESSAGE_BYTES", "2KiB")]);
    let catalog = Catalog::connect(&config).await.unwrap();
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("cdc.acme.shop.orders", 1, 1).unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let event = |id: i64, note: &str| {
        format!(
            r#"{{"before":null,"after":{{"id":{id},"status":"paid","note":"{note}"}},"source":{{"file":"b.000001","pos":{id},"ts_ms":1767225600000}},"op":"c"}}"#
        )
    };
    let big = "x".repeat(5000);
    let messages = [
        (1, event(1, "small")),
        (2, event(2, &big)),
        (3, event(3, "small")),
    ];
    for (id, value) in &messages {
        let key = format!(r#"{{"id":{id}}}"#);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "trace-id",
                value: Some(&format!("t-{id}")),
            })
            .insert(Header {
                key: "raw",
                value: Some(&[0xff_u8, 0x00][..]),
            });
        producer
            .send(
                BaseRecord::to("cdc.acme.shop.orders")
                    .key(&key)
                    .payload(value)
                    .headers(headers),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let options = IngestOptions {
        brokers,
        writer_id: "oversized".into(),
        stop_when_caught_up: true,
    };
    let report = run(&catalog, &config, &options).await.unwrap();
    assert_eq!(report.dead_letters, 1);
    let bronze = lake.pyiceberg(&["scan", "bronze.orders", "--rows", "--columns", "id"]);
    let ids: Vec<i64> = bronze["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "the small ones around it landed: {ids:?}");
    assert!(ids.contains(&1) && ids.contains(&3));
    let letters = lake.pyiceberg(&["scan", "bronze.firn_dead_letters", "--rows"]);
    let letter = &letters["rows"][0];
    assert_eq!(letter["error_kind"], "oversized");
    assert_eq!(letter["offset"], 1);
    assert!(
        letter["error_message"]
            .as_str()
            .unwrap()
            .contains("max-message-bytes"),
        "{letter}"
    );
    let headers: serde_json::Value =
        serde_json::from_str(letter["headers"].as_str().unwrap()).unwrap();
    assert_eq!(headers["trace-id"], "t-2");
    assert_eq!(headers["raw"]["base64"], "/wA=");
}

/// One bronze table whose commits fail (its catalog entry is gone) does not stop the others;
/// once it is back, it catches up with every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_table_does_not_stall_the_others() {
    let ServiceSetup {
        lake,
        config,
        catalog,
        _cluster,
        brokers,
        mut generator,
    } = ServiceSetup::new(
        &[
            ("FIRN_COMMIT__INTERVAL", "1s"),
            ("FIRN_KAFKA__ASSIGNMENT", "static"),
        ],
        &GeneratorConfig {
            orders: 80,
            customers: 40,
            ..GeneratorConfig::default()
        },
    )
    .await;
    // The first part of the stream lands in every table.
    produce(&brokers, generator.by_ref().take(300)).await;
    let service = Service::start(
        &catalog,
        &config,
        &brokers,
        "independent",
        IngestMetrics::unregistered(),
        Health::new(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::task::block_in_place(
        || bronze_rows_and_repeats(&lake, &["customers"]).0["customers"],
    ) == 0
    {
        assert!(
            Instant::now() < deadline,
            "nothing landed in bronze.customers"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Break bronze.customers: its pointer row disappears from the catalog.
    let db = lake.dir.path().join("warehouse/catalog.db");
    let sql = |statement: &str| {
        let output = Command::new(firn_tests::test_python())
            .args([
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); r=c.execute(sys.argv[2]).fetchall(); c.commit(); print(r)",
                db.to_str().unwrap(),
                statement,
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let saved = sql(
        "select metadata_location from iceberg_tables where table_namespace='bronze' and table_name='customers'",
    );
    let location = saved
        .trim()
        .trim_start_matches("[('")
        .trim_end_matches("',)]")
        .to_string();
    assert!(location.ends_with(".metadata.json"), "{saved}");
    sql("delete from iceberg_tables where table_namespace='bronze' and table_name='customers'");
    // The rest of the stream: customers cannot commit, the others must.
    produce(&brokers, generator.by_ref()).await;
    let expected = expected_per_table(&generator);

    let others: BTreeMap<String, u64> = expected
        .iter()
        .filter(|(t, _)| t.as_str() != "customers")
        .map(|(t, n)| (t.clone(), *n))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (rows, _) = tokio::task::block_in_place(|| {
            bronze_rows_and_repeats(&lake, &["products", "orders", "order_items"])
        });
        if rows == others {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the healthy tables stalled: {rows:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(!service.task.is_finished(), "the service keeps running");

    // Put the table back: the next cycle commits it, exactly once.
    sql(&format!(
        "insert into iceberg_tables (catalog_name, table_namespace, table_name, metadata_location, previous_metadata_location) values ('firn', 'bronze', 'customers', '{location}', null)"
    ));
    let lake_ref = &lake;
    let (rows, repeats) = tokio::task::block_in_place(|| {
        wait_for_bronze(lake_ref, &expected, Duration::from_secs(60))
    });
    let report = service.stop().await;
    assert_eq!(rows, expected);
    assert_eq!(repeats, 0);
    assert!(report.tables["bronze.customers"].failed_commits > 0);
}

/// A service committing every second expires bronze snapshots older than
/// `commit.snapshot-retention` (1 minute here, the least allowed): the first snapshots are
/// gone from the metadata after a minute and a half of commits, while every event is still
/// in bronze exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_bronze_snapshots_are_expired_and_nothing_is_lost() {
    // `RUST_LOG=firn_ingest=info` shows the commits and expiries when it fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    // More events than the trickling below takes, all with their schemas: in a trickled
    // mixed stream, which tenant's events arrive first decides the column types, and later
    // ones of the other kind are dead-lettered.
    let ServiceSetup {
        lake,
        config,
        catalog,
        _cluster,
        brokers,
        mut generator,
    } = ServiceSetup::new(
        &[
            ("FIRN_COMMIT__INTERVAL", "1s"),
            ("FIRN_COMMIT__SNAPSHOT_RETENTION", "1m"),
            ("FIRN_KAFKA__ASSIGNMENT", "static"),
        ],
        &GeneratorConfig {
            orders: 1000,
            customers: 300,
            schemas: firn_ingest::generator::SchemaMode::With,
            ..GeneratorConfig::default()
        },
    )
    .await;
    let service = Service::start(
        &catalog,
        &config,
        &brokers,
        "expiry",
        IngestMetrics::unregistered(),
        Health::new(),
    );
    let name = firn_catalog::TableName::new(firn_catalog::Tier::Bronze, "orders").unwrap();
    let snapshot_ids = |table: &iceberg::table::Table| -> Vec<i64> {
        table
            .metadata()
            .snapshots()
            .map(|s| s.snapshot_id())
            .collect()
    };
    // The customers and products come first in the stream, at once; then orders and their
    // items trickle in until bronze.orders has committed for 80 s, more than the retention
    // and its tenth of slack.
    produce(&brokers, generator.by_ref().take(1500)).await;
    let mut first: Option<(i64, Instant)> = None;
    while first.is_none_or(|(_, seen)| seen.elapsed() < Duration::from_secs(80)) {
        produce(&brokers, generator.by_ref().take(40)).await;
        if first.is_none() {
            let table = catalog.load_table(&name).await.unwrap();
            first = table
                .metadata()
                .snapshots()
                .min_by_key(|s| s.timestamp_ms())
                .map(|s| (s.snapshot_id(), Instant::now()));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    produce(&brokers, generator.by_ref()).await;
    let expected = expected_per_table(&generator);
    let lake_ref = &lake;
    let (rows, repeats) = tokio::task::block_in_place(|| {
        wait_for_bronze(lake_ref, &expected, Duration::from_secs(60))
    });
    service.stop().await;
    assert_eq!(rows, expected);
    assert_eq!(repeats, 0);
    let (first, _) = first.expect("bronze.orders committed");
    let table = catalog.load_table(&name).await.unwrap();
    let kept = snapshot_ids(&table);
    assert!(
        !kept.contains(&first),
        "the first snapshot was expired: {kept:?}"
    );
    let cutoff = chrono::Utc::now().timestamp_millis() - 100_000;
    let oldest = table
        .metadata()
        .snapshots()
        .map(|s| s.timestamp_ms())
        .min()
        .unwrap();
    assert!(
        oldest > cutoff,
        "no snapshot is much older than the retention"
    );
}

/// `firn ingest` killed with SIGKILL at random points (seeded, so a failure replays), then
/// a batch run and a replay that starts the consumer group from offset 0: every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_and_a_replay_from_offset_0_land_every_event_once() {
    use rand::{Rng, SeedableRng};
    let lake = Lake::sqlite().await;
    let generator_config = GeneratorConfig {
        orders: 1500,
        customers: 700,
        restart_duplicates: 2,
        ..GeneratorConfig::default()
    };
    let source = generated_source(&generator_config, 4).await;
    let expected = expected_per_table(&source.generator);
    let config = lake_config(&lake, &[]);
    let catalog = Catalog::connect(&config).await.unwrap();
    catalog.init(&config).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut killed_with_progress = 0;
    for round in 0..5 {
        let child = spawn_ingest(&lake, &source.brokers, "random-kill", &format!("k{round}"));
        let wait = Duration::from_millis(rng.random_range(1500..7000));
        tokio::time::sleep(wait).await;
        signal(&child, "KILL");
        let mut child = child;
        child.wait().unwrap();
        let (rows, repeats) =
            tokio::task::block_in_place(|| bronze_rows_and_repeats(&lake, &TABLES));
        assert_eq!(repeats, 0, "round {round}: a Kafka record twice");
        if rows.values().sum::<u64>() > 0 {
            killed_with_progress += 1;
        }
    }
    assert!(
        killed_with_progress > 0,
        "some rounds committed before the kill\n{}",
        logs(&lake)
    );
    let options = IngestOptions {
        brokers: source.brokers.clone(),
        writer_id: "finish".into(),
        stop_when_caught_up: true,
    };
    run(&catalog, &config, &options).await.unwrap();
    let (rows, repeats) = tokio::task::block_in_place(|| bronze_rows_and_repeats(&lake, &TABLES));
    assert_eq!(rows, expected, "every change event once after the kills");
    assert_eq!(repeats, 0);

    // Someone resets the consumer group to offset 0: positions come from bronze, so the
    // service reads nothing again.
    {
        use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &source.brokers)
            .set("group.id", "replay-from-zero")
            .create()
            .unwrap();
        let mut list = rdkafka::TopicPartitionList::new();
        for topic in source.generator.topics() {
            for partition in 0..4 {
                list.add_partition_offset(&topic, partition, rdkafka::Offset::Offset(0))
                    .unwrap();
            }
        }
        consumer.commit(&list, CommitMode::Sync).unwrap();
    }
    let replay_config = lake_config(&lake, &[("FIRN_KAFKA__GROUP_ID", "replay-from-zero")]);
    let service = Service::start(
        &catalog,
        &replay_config,
        &options.brokers,
        "replay",
        IngestMetrics::unregistered(),
        Health::new(),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let report = service.stop().await;
    assert_eq!(report.records_consumed, 0, "nothing read again");
    let (rows, repeats) = tokio::task::block_in_place(|| bronze_rows_and_repeats(&lake, &TABLES));
    assert_eq!(rows, expected);
    assert_eq!(repeats, 0);
}

/// Two processes that both believe they own every partition (what a zombie is, from its own
/// point of view): the commit path's re-validation lets only one of them move a table's
/// positions at a time, the loser rewinds, and bronze holds every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_claiming_the_same_partitions_never_duplicate() {
    let lake = Lake::postgres().await;
    let config = lake_config(
        &lake,
        &[
            ("FIRN_COMMIT__INTERVAL", "1s"),
            ("FIRN_KAFKA__ASSIGNMENT", "static"),
        ],
    );
    let catalog = Catalog::connect(&config).await.unwrap();
    catalog.init(&config).await.unwrap();
    let other_catalog = lake.second_connection().await;
    let source = generated_source(
        &GeneratorConfig {
            orders: 300,
            customers: 150,
            restart_duplicates: 2,
            ..GeneratorConfig::default()
        },
        2,
    )
    .await;
    let expected = expected_per_table(&source.generator);
    let first = Service::start(
        &catalog,
        &config,
        &source.brokers,
        "first",
        IngestMetrics::unregistered(),
        Health::new(),
    );
    let second = Service::start(
        &other_catalog,
        &config,
        &source.brokers,
        "second",
        IngestMetrics::unregistered(),
        Health::new(),
    );
    let lake_ref = &lake;
    let (rows, repeats) = tokio::task::block_in_place(|| {
        wait_for_bronze(lake_ref, &expected, Duration::from_secs(120))
    });
    let reports = [first.stop().await, second.stop().await];
    assert_eq!(rows, expected, "every change event once");
    assert_eq!(repeats, 0, "no Kafka record twice");
    let refused: u64 = reports
        .iter()
        .flat_map(|r| r.tables.values())
        .map(|t| t.failed_commits)
        .sum();
    assert!(
        refused > 0,
        "the race happened and re-validation refused the stale side"
    );
    assert_eq!(
        bronze_rows_and_repeats(&lake, &TABLES).0,
        expected,
        "nothing more after both stopped"
    );
}
