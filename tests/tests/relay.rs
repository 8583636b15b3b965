//! The hot path end to end: generated Debezium events on the mock Kafka cluster → `firn
//! relay` → the Stream Load test server, checked against the batch path (ingest → silver →
//! gold) over the same offsets: the hot table must equal `gold.order_facts` row for row,
//! every label must be committed at most once, and that must survive full replays, relay
//! crashes between send and acknowledgement, label eviction, and the server's faults.
//! Also the spec's acceptance tests 7, 9 and 10 (shared reference
//! `starrocks-stream-load.md` §9.6).

use std::path::Path;
use std::process::Child;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use firn_catalog::config::PipelineConfig;
use firn_catalog::relay_ledger::RelayLedger;
use firn_catalog::{TableName, Tier};
use firn_ingest::relay::{self, RelayMetrics, RelayOptions, RelayReport};
use firn_tests::relay_harness::{
    DB, Setup, TABLE, assert_hot_equals_gold, assert_no_label_committed_twice, copy_topics,
    generator, hot_schema, key, relay_command, relay_config, relay_options, server, setup,
    write_relay_config,
};
use firn_tests::stream_load::{
    Fault, FaultRule, Limits, StreamLoadConfig, StreamLoadServer, TxnState,
};
use serde_json::Value;

async fn relay_once(config: &PipelineConfig, options: &RelayOptions) -> RelayReport {
    relay::run(config, options, &AtomicBool::new(false))
        .await
        .expect("relay run")
}

/// Every ledger entry is acknowledged, and each label is committed at most once (empty
/// batches are acknowledged without a load) after at least one send.
async fn assert_ledger_acked_and_committed_at_most_once(
    ledger: &RelayLedger,
    ledger_key: &str,
    server: &StreamLoadServer,
) {
    let entries = ledger.labels(ledger_key).await.unwrap();
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
    // Every row carries the label of a load and a relay version whose source time (ms, the
    // version's high part) is at least the row's source version (µs).
    for row in server.rows(DB, TABLE).unwrap() {
        let label = row["relay_label"].as_str().unwrap();
        assert!(
            first.tables[TABLE].labels.iter().any(|l| l == label),
            "{row}"
        );
        let newest_ms = row["relay_version"].as_i64().unwrap() / 1_000_000;
        assert!(
            newest_ms >= row["source_version"].as_i64().unwrap() / 1000,
            "{row}"
        );
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
    assert_ledger_acked_and_committed_at_most_once(&ledger, &ledger_key, &server).await;
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

/// A relay config whose batches and in-flight budget are `budget` bytes (20 rows at most).
fn budget_config(setup: &Setup, server: &StreamLoadServer, budget: u64) -> PipelineConfig {
    relay_config(
        setup.lake.dir.path(),
        server,
        &format!(
            "interval = \"100ms\"\nmax-batch-rows = 20\nmax-batch-bytes = {budget}\nmax-in-flight-bytes = {budget}"
        ),
        None,
    )
}

/// Waits (30 s at most, else fails with `failure`) until backpressure pauses the consumer.
async fn until_paused(metrics: &RelayMetrics, failure: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while metrics.paused.get() != 1 {
        assert!(tokio::time::Instant::now() < deadline, "{failure}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let config = budget_config(&setup, &server, budget);
    let options = relay_options(&setup, &config);
    let metrics = options.metrics.clone();
    let task = {
        let config = config.clone();
        let options = options.clone();
        tokio::spawn(async move { relay::run(&config, &options, &AtomicBool::new(false)).await })
    };
    until_paused(&metrics, "the consumer never paused").await;
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

/// Backpressure pauses the consumer while a model still waits for the first event of one
/// of its inputs (all `orders` read, no `order_items` yet): the waited-for input's topics
/// keep being read, otherwise the open batches filling the budget could never be shaped and
/// the relay would wait forever. A service (a batch run would end: every input it waits
/// for is read to its end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_waiting_for_an_input_keeps_reading_it_while_paused() {
    let setup = setup(&generator()).await;
    let server = server().await;
    let partitions = 2;
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("start the mock cluster");
    let brokers = cluster.bootstrap_servers();
    let topics = setup.source.generator.topics();
    for topic in &topics {
        cluster
            .create_topic(topic, partitions, 1)
            .expect("create topic");
    }
    let (items, others): (Vec<String>, Vec<String>) =
        topics.into_iter().partition(|t| t.ends_with("order_items"));
    assert!(
        !items.is_empty() && !others.is_empty(),
        "{items:?} {others:?}"
    );
    copy_topics(&setup.source.brokers, &brokers, &others, partitions);

    let budget = 4 * 1024;
    let config = budget_config(&setup, &server, budget);
    let mut options = relay_options(&setup, &config);
    options.brokers = brokers.clone();
    options.stop_when_caught_up = false;
    let metrics = options.metrics.clone();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let task = {
        let stop = stop.clone();
        tokio::spawn(async move { relay::run(&config, &options, &stop).await })
    };
    until_paused(&metrics, "the consumer never paused on the orders alone").await;
    assert!(
        server.labels().is_empty(),
        "nothing can be shaped without items"
    );
    copy_topics(&setup.source.brokers, &brokers, &items, partitions);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while server.rows(DB, TABLE).unwrap_or_default().len() < setup.gold.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay reads the items while paused and loads every order"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let report = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the relay stops when asked")
        .unwrap()
        .unwrap();
    assert!(report.pauses >= 1);
    assert_hot_equals_gold(&server, &setup);
    assert_no_label_committed_twice(&server);
}

/// A source without schemas whose model fails on the inferred types (decimals arrive as
/// text, timestamps as epoch integers) while backpressure pauses the consumer: the run ends with the
/// model's error once every input the model waits for is read, instead of waiting forever
/// for a typed event; the service ends the same way when the batch fills up waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_failing_on_inferred_types_ends_the_run_instead_of_waiting_forever() {
    let lake = firn_tests::Lake::sqlite().await;
    firn_tests::relay_harness::copy_gold_sql(lake.dir.path());
    let source = firn_tests::generated_source(
        &firn_ingest::generator::GeneratorConfig {
            schemas: firn_ingest::generator::SchemaMode::Without,
            ..generator()
        },
        2,
    )
    .await;
    let server = server().await;
    for (stop_when_caught_up, budget) in [(true, 4 * 1024), (false, 1024 * 1024)] {
        let config = relay_config(
            lake.dir.path(),
            &server,
            &format!(
                "interval = \"100ms\"\nmax-batch-rows = 20\nmax-batch-bytes = {budget}\nmax-in-flight-bytes = {budget}"
            ),
            None,
        );
        let options = RelayOptions {
            brokers: source.brokers.clone(),
            target: config.relay.clone().expect("a [relay] section"),
            stop_when_caught_up,
            model_sql: Default::default(),
            metrics: RelayMetrics::unregistered(),
            health: None,
        };
        let err = tokio::time::timeout(
            Duration::from_secs(90),
            relay::run(&config, &options, &AtomicBool::new(false)),
        )
        .await
        .unwrap_or_else(|_| panic!("the run ends on its own (batch run: {stop_when_caught_up})"))
        .expect_err("the model cannot run on inferred types");
        let message = err.to_string();
        assert!(
            message.contains("gold model `order_facts` cannot run on what was read")
                && message.contains("fails on the types inferred from schemaless JSON")
                && message.contains("orders.ordered_at"),
            "{message}"
        );
        if stop_when_caught_up {
            assert_eq!(options.metrics.paused.get(), 1, "the batch run was paused");
        } else {
            assert!(message.contains("batch filled up"), "{message}");
        }
    }
    assert!(
        server.rows(DB, TABLE).unwrap_or_default().is_empty(),
        "nothing was loaded"
    );
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

/// A `firn relay` process owning every partition (static mode, no election); its log goes
/// to `log` in the config's directory.
fn spawn_relay(
    config: &Path,
    brokers: &str,
    once: bool,
    log: &str,
    env: &[(&str, String)],
) -> Child {
    let mut command = relay_command(config, brokers, log);
    command
        .args(once.then_some("--once"))
        .env("FIRN_KAFKA__ASSIGNMENT", "static");
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("start firn relay")
}

/// Runs `firn relay --once` to its end and asserts it succeeded.
fn relay_process_once(config: &Path, brokers: &str, log: &str, env: &[(&str, String)]) {
    let status = spawn_relay(config, brokers, true, log, env).wait().unwrap();
    let text = std::fs::read_to_string(config.parent().unwrap().join(log)).unwrap_or_default();
    assert!(
        status.success(),
        "firn relay --once failed: {status}\n{text}"
    );
}

/// Goal of issue 5: a real `firn relay` process killed with SIGKILL at seeded random
/// instants and restarted, on the mock cluster's brokers and the test server over TCP. At
/// the end the hot table equals gold, every ledger entry is acknowledged and no label was
/// committed twice; then a full Kafka replay with a fresh ledger converges to gold again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_process_killed_at_random_instants_loads_every_batch_once() {
    let setup = setup(&generator()).await;
    let server = server().await;
    // Slow loads keep a batch in flight most of the time, so kills land mid-load as well.
    server.set_fault(FaultRule::always(Fault::SlowBe { delay_ms: 500 }));
    let dir = setup.lake.dir.path();
    let config_path = write_relay_config(dir, &server, "interval = \"100ms\"\nmax-batch-rows = 10");
    let config = relay_config(dir, &server, "", None);
    let ledger = RelayLedger::connect(&config.catalog_database().unwrap(), None)
        .await
        .unwrap();
    let ledger_key = format!("{DB}.{TABLE}");
    let brokers = &setup.source.brokers;
    let mut kills_with_pending = 0;
    let mut seed: u64 = 0x6b69_6c6c;
    for round in 0..7 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Start-up (connect, rebuild the state from the topics) takes about a second in a
        // debug build; the kills spread over it and over the loads after it.
        let run_for = Duration::from_millis(800 + (seed >> 33) % 2500);
        let log = format!("kill-{round}.log");
        let mut child = spawn_relay(&config_path, brokers, false, &log, &[]);
        tokio::time::sleep(run_for).await;
        if let Some(status) = child.try_wait().unwrap() {
            let text = std::fs::read_to_string(dir.join(&log)).unwrap_or_default();
            panic!("the relay exited before the kill: {status}\n{text}");
        }
        child.kill().expect("SIGKILL the relay");
        child.wait().unwrap();
        if !ledger.load(&ledger_key).await.unwrap().pending.is_empty() {
            kills_with_pending += 1;
        }
    }
    let loaded_before_the_last_run = assert_no_label_committed_twice(&server);
    assert!(
        loaded_before_the_last_run > 0,
        "the killed processes loaded something; last log:\n{}",
        std::fs::read_to_string(dir.join("kill-6.log")).unwrap_or_default()
    );
    assert!(
        kills_with_pending > 0,
        "some kill landed between recording a batch and its acknowledgement"
    );
    server.clear_faults();
    relay_process_once(&config_path, brokers, "final.log", &[]);
    assert_hot_equals_gold(&server, &setup);
    let committed = assert_no_label_committed_twice(&server);
    // Every batch that had rows to load is committed exactly once (empty batches are
    // recorded as acknowledged without a load).
    assert_ledger_acked_and_committed_at_most_once(&ledger, &ledger_key, &server).await;
    assert!(committed > 3, "several batches were loaded: {committed}");

    // A full replay of Kafka with a fresh ledger (new epoch, new labels) converges to gold.
    let fresh = format!("sqlite:{}", dir.join("fresh-ledger.db").display());
    relay_process_once(
        &config_path,
        brokers,
        "replay.log",
        &[("FIRN_CATALOG__URI", fresh)],
    );
    assert_hot_equals_gold(&server, &setup);
    assert!(assert_no_label_committed_twice(&server) > committed);
}

/// Rows StarRocks refuses go to `bronze.firn_dead_letters` (after the refused batch is
/// split down to single rows), once each: a second commit of the same batch's dead letters,
/// as after a crash between the commit and the ledger's acknowledgement, writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rows_go_to_the_dead_letter_table_once() {
    let setup = setup(&generator()).await;
    let server = StreamLoadServer::start(StreamLoadConfig::default())
        .await
        .unwrap();
    // `status` NOT NULL, and a model that gives every seventh order a null status.
    let mut schema = hot_schema();
    schema
        .columns
        .iter_mut()
        .find(|c| c.name == "status")
        .unwrap()
        .nullable = false;
    server.create_table(DB, TABLE, schema).unwrap();
    let sql = include_str!("../../sql/gold/order_facts.sql");
    assert!(sql.contains("    o.status,\n"));
    let sql = sql.replace(
        "    o.status,\n",
        "    CASE WHEN o.id % 7 = 0 THEN NULL ELSE o.status END AS status,\n",
    );
    let config = relay_config(
        setup.lake.dir.path(),
        &server,
        "interval = \"100ms\"\nmax-batch-rows = 40",
        None,
    );
    let mut options = relay_options(&setup, &config);
    options.model_sql.insert(TABLE.to_string(), sql);
    let report = relay_once(&config, &options).await;
    let refused = report.tables[TABLE].dead_letters;
    assert!(refused > 0, "{report:?}");

    let catalog = setup.lake.catalog.clone();
    let dead_name = TableName::new(Tier::Bronze, "firn_dead_letters").unwrap();
    let read_letters = || async {
        relay::iceberg_rows(&catalog, &dead_name)
            .await
            .unwrap()
            .into_iter()
            .filter(|row| row["error_kind"] == "relay_refused")
            .collect::<Vec<_>>()
    };
    let letters = read_letters().await;
    assert_eq!(letters.len() as u64, refused);
    let mut keys = std::collections::BTreeSet::new();
    let mut sub_labels = std::collections::BTreeSet::new();
    for letter in &letters {
        assert_eq!(letter["source_table"], "gold.order_facts");
        let key: Value = serde_json::from_slice(&hex(&letter["key"])).unwrap();
        let row: Value = serde_json::from_slice(&hex(&letter["value"])).unwrap();
        let order_id = key["order_id"].as_i64().unwrap();
        assert_eq!(order_id % 7, 0, "{letter:?}");
        assert_eq!(row["order_id"], order_id);
        assert_eq!(letter["tenant"], key["tenant"]);
        let topic = letter["topic"].as_str().unwrap();
        assert!(
            topic.ends_with(".orders") || topic.ends_with(".order_items"),
            "{topic}"
        );
        let message = letter["error_message"].as_str().unwrap();
        let sub_label = message
            .strip_prefix(&format!("{DB}.{TABLE} label "))
            .and_then(|rest| rest.split(':').next())
            .unwrap_or_else(|| panic!("{message}"));
        assert!(
            sub_labels.insert(sub_label.to_string()),
            "{sub_label} dead-lettered twice"
        );
        keys.insert((key["tenant"].as_str().unwrap().to_string(), order_id));
    }
    // Every live order the model gives a null status was refused; the others are loaded.
    let doomed: Vec<_> = setup.gold.keys().filter(|(_, id)| id % 7 == 0).collect();
    assert!(!doomed.is_empty());
    assert!(doomed.iter().all(|k| keys.contains(*k)), "{doomed:?}");
    let hot: std::collections::BTreeSet<(String, i64)> = server
        .rows(DB, TABLE)
        .unwrap()
        .iter()
        .map(|row| key(row.as_object().unwrap()))
        .collect();
    let expected: std::collections::BTreeSet<(String, i64)> = setup
        .gold
        .keys()
        .filter(|(_, id)| id % 7 != 0)
        .cloned()
        .collect();
    assert_eq!(hot, expected);

    // The same batch's dead letters committed again (a restart resends the batch, which
    // splits and is refused the same way): nothing is written.
    let ledger = RelayLedger::connect(&config.catalog_database().unwrap(), None)
        .await
        .unwrap();
    let batch_label = ledger
        .labels(&format!("{DB}.{TABLE}"))
        .await
        .unwrap()
        .into_iter()
        .map(|(_, label, _)| label)
        .find(|label| {
            sub_labels
                .iter()
                .any(|s| s.starts_with(&format!("{label}-")))
        })
        .expect("a batch with refused rows");
    let again = relay::dead_letters::RelayDeadLetter {
        tenant: None,
        source_table: "gold.order_facts".into(),
        topic: "t".into(),
        partition: 0,
        offset: 0,
        key: None,
        value: b"{}".to_vec(),
        message: "again".into(),
    };
    let written = relay::dead_letters::commit(
        &catalog,
        &format!("{DB}.{TABLE}"),
        &batch_label,
        &[again],
        1 << 20,
    )
    .await
    .unwrap();
    assert!(!written);
    assert_eq!(read_letters().await.len() as u64, refused);
}

/// Bytes of a binary column as the JSON rows show it (hex text).
fn hex(value: &Value) -> Vec<u8> {
    let text = value.as_str().unwrap_or_else(|| panic!("{value}"));
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
