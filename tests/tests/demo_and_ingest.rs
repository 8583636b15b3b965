//! The embedded demo and the first ingest path, checked with pyiceberg: every generated
//! change event lands once, a second run adds nothing, and poison records land in the
//! dead-letter table with their reason while the partition keeps moving.

use std::time::Duration;

use firn_catalog::config::PipelineConfig;
use firn_catalog::{Catalog, TableName};
use firn_ingest::demo::{DEMO_CONFIG, DemoOptions};
use firn_ingest::generator::GeneratorConfig;
use firn_ingest::writer::{IngestOptions, run};
use firn_tests::{generated_source, run_reader};
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

fn reader_count(dir: &std::path::Path, table: &str) -> u64 {
    let catalog = dir.join("warehouse/catalog.db");
    let args = vec![
        "--uri".to_string(),
        catalog.display().to_string(),
        "scan".to_string(),
        table.to_string(),
    ];
    run_reader(&args)["row_count"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_lands_every_event_and_pyiceberg_reads_the_printed_counts() {
    // The pipeline's logs are shown when this test fails or times out.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,datafusion=warn,iceberg=warn".into()),
        )
        .with_ansi(false)
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let options = DemoOptions {
        dir: dir.path().to_path_buf(),
        // Connector restarts re-emit events: bronze must hold each change event once.
        generator: GeneratorConfig::default(),
        partitions: 2,
    };
    let report = firn_ingest::demo::run(&options, &mut |_| {}).await.unwrap();
    assert!(report.matches_expected(), "{report:?}");
    let checked: Vec<&str> = report
        .tables
        .iter()
        .filter(|t| t.expected_rows.is_some())
        .map(|t| t.table.as_str())
        .collect();
    assert_eq!(
        checked.len(),
        9,
        "four bronze, four silver and the order facts: {checked:?}"
    );
    for table in &report.tables {
        assert_eq!(
            reader_count(dir.path(), &table.table),
            table.rows,
            "{}",
            table.table
        );
    }
    let listed = run_reader(&[
        "--uri".into(),
        dir.path()
            .join("warehouse/catalog.db")
            .display()
            .to_string(),
        "list".into(),
    ]);
    assert_eq!(
        listed["namespaces"],
        serde_json::json!(["bronze", "gold", "silver"])
    );

    // The demo refuses to replace a warehouse it did not create.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join("warehouse")).unwrap();
    let options = DemoOptions {
        dir: other.path().to_path_buf(),
        ..options
    };
    let err = firn_ingest::demo::run(&options, &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        err.is_bad_input() && err.to_string().contains("not created by `firn demo`"),
        "{err}"
    );
}

fn ingest_options(brokers: &str) -> IngestOptions {
    IngestOptions {
        brokers: brokers.to_string(),
        writer_id: "test".into(),
        stop_when_caught_up: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_resumes_from_the_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let config = PipelineConfig::from_toml(DEMO_CONFIG, Vec::new(), dir.path()).unwrap();
    let catalog = Catalog::connect(&config).await.unwrap();
    let generator_config = GeneratorConfig {
        restart_duplicates: 3,
        orders: 60,
        customers: 30,
        ..GeneratorConfig::default()
    };
    let source = generated_source(&generator_config, 2).await;
    let (brokers, generator) = (&source.brokers, &source.generator);
    let expected = generator.expected().counts_report().totals.change_events;

    let first = run(&catalog, &config, &ingest_options(brokers))
        .await
        .unwrap();
    let written: u64 = first.tables.values().map(|t| t.rows_written).sum();
    assert_eq!(
        written, expected,
        "every change event once, re-emissions dropped"
    );
    assert!(
        first.duplicates_dropped > 0,
        "the stream had connector re-emissions"
    );
    let second = run(&catalog, &config, &ingest_options(brokers))
        .await
        .unwrap();
    assert_eq!(
        second.records_consumed, 0,
        "resumed at the end: nothing re-read"
    );
    let total: u64 = ["customers", "products", "orders", "order_items"]
        .iter()
        .map(|t| reader_count(dir.path(), &format!("bronze.{t}")))
        .sum();
    assert_eq!(total, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_and_the_partition_keeps_moving() {
    let dir = tempfile::tempdir().unwrap();
    let config = PipelineConfig::from_toml(DEMO_CONFIG, Vec::new(), dir.path()).unwrap();
    let catalog = Catalog::connect(&config).await.unwrap();
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("cdc.acme.shop.orders", 1, 1).unwrap();
    cluster.create_topic("cdc.Acme.shop.orders", 1, 1).unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let good = |id: i64| {
        format!(
            r#"{{"before":null,"after":{{"id":{id},"status":"paid"}},"source":{{"file":"b.000001","pos":{id},"ts_ms":1767225600000}},"op":"c"}}"#
        )
    };
    let key = |id: i64| format!(r#"{{"id":{id}}}"#);
    let messages: Vec<(&str, Option<String>, Option<String>)> = vec![
        ("cdc.acme.shop.orders", Some(key(1)), Some(good(1))),
        (
            "cdc.acme.shop.orders",
            Some(key(2)),
            Some("{not json".into()),
        ),
        ("cdc.acme.shop.orders", None, Some(good(3))),
        (
            "cdc.acme.shop.orders",
            Some(key(4)),
            Some(r#"{"hello":"world"}"#.into()),
        ),
        ("cdc.acme.shop.orders", Some(key(5)), Some(good(5))),
        ("cdc.Acme.shop.orders", Some(key(6)), Some(good(6))),
    ];
    for (topic, k, v) in &messages {
        let mut record: BaseRecord<'_, str, str> = BaseRecord::to(topic);
        if let Some(k) = k {
            record = record.key(k.as_str());
        }
        if let Some(v) = v {
            record = record.payload(v.as_str());
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let report = run(&catalog, &config, &ingest_options(&brokers))
        .await
        .unwrap();
    assert_eq!(report.dead_letters, 4);
    assert_eq!(
        reader_count(dir.path(), "bronze.orders"),
        2,
        "ids 1 and 5 landed around the poison"
    );
    let scan = run_reader(&[
        "--uri".into(),
        dir.path()
            .join("warehouse/catalog.db")
            .display()
            .to_string(),
        "scan".into(),
        "bronze.firn_dead_letters".into(),
        "--rows".into(),
        "--columns".into(),
        "topic,offset,error_kind,error_message".into(),
    ]);
    let kinds: Vec<(String, String)> = scan["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["topic"].as_str().unwrap().to_string(),
                r["error_kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("cdc.acme.shop.orders".into(), "bad_json".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("cdc.acme.shop.orders".into(), "missing_key".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("cdc.acme.shop.orders".into(), "not_an_envelope".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("cdc.Acme.shop.orders".into(), "unknown_tenant".into())),
        "{kinds:?}"
    );

    // Replaying adds nothing to either table.
    let again = run(&catalog, &config, &ingest_options(&brokers))
        .await
        .unwrap();
    assert_eq!(again.dead_letters, 0);
    assert_eq!(reader_count(dir.path(), "bronze.orders"), 2);
    assert_eq!(reader_count(dir.path(), "bronze.firn_dead_letters"), 4);
    let table = catalog
        .load_table(&TableName::parse("bronze.orders").unwrap())
        .await
        .unwrap();
    assert!(table.metadata().current_snapshot().is_some());
}
