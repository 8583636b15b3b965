//! The `firn` binary's exit codes and messages: 0 success, 1 failure, 2 bad input.

use std::process::Command;

fn firn(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_firn"))
        .args(args)
        .current_dir(dir)
        .env_remove("FIRN_CONFIG")
        .output()
        .expect("run firn");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_config_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("firn.toml"),
        "[commit]\ninterval = '200ms'\n",
    )
    .unwrap();
    let (code, _, stderr) = firn(dir.path(), &["tables"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("commit.interval"), "{stderr}");

    std::fs::write(dir.path().join("firn.toml"), "[catalog]\nurl = 'x'\n").unwrap();
    let (code, _, stderr) = firn(dir.path(), &["tables"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("catalog.url"), "{stderr}");
}

#[test]
fn unreachable_catalog_is_a_failure_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = Command::new(env!("CARGO_BIN_EXE_firn"))
        .args(["tables"])
        .current_dir(dir.path())
        .env(
            "FIRN_CATALOG__URI",
            "postgres://firn:hunter2@127.0.0.1:1/firn",
        )
        .output()
        .map(|o| {
            (
                o.status.code().unwrap_or(-1),
                (),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot connect to the catalog database"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn init_tables_and_snapshots_work_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("firn.toml"),
        "[[sources]]\ntable = 'orders'\ntopic = 'cdc.{tenant}.{db}.orders'\n",
    )
    .unwrap();
    let (code, stdout, stderr) = firn(dir.path(), &["--json", "init"]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report["created"],
        serde_json::json!(["bronze.firn_dead_letters", "bronze.orders"])
    );
    let (code, stdout, _) = firn(dir.path(), &["--json", "init"]);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report["existing"].as_array().unwrap().len(),
        2,
        "init is idempotent"
    );

    let (code, stdout, _) = firn(dir.path(), &["--json", "tables"]);
    assert_eq!(code, 0);
    let tables: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(tables[1]["table"], "bronze.orders");
    assert_eq!(tables[1]["snapshots"], 0);

    let (code, stdout, _) = firn(dir.path(), &["--json", "snapshots", "bronze.orders"]);
    assert_eq!(code, 0);
    let snapshots: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(snapshots["snapshots"], serde_json::json!([]));

    let (code, _, stderr) = firn(dir.path(), &["snapshots", "bronze.Orders"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("invalid table name"), "{stderr}");
    let (code, _, stderr) = firn(dir.path(), &["snapshots", "gold.missing"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn gen_writes_a_deterministic_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let (code, stdout, stderr) = firn(
            dir.path(),
            &[
                "--json", "gen", "--seed", "7", "--scale", "0.2", "--out", name,
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert!(report["sink"]["messages"].as_u64().unwrap() > 0);
        std::fs::read(dir.path().join(name)).unwrap()
    };
    assert_eq!(run("a.jsonl"), run("b.jsonl"));
    let (code, _, stderr) = firn(dir.path(), &["gen"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn transform_reports_nothing_to_do_and_bad_tables() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = firn(dir.path(), &["demo", "--dir", "."]);
    assert_eq!(code, 0, "{stderr}");
    // The example config is the demo's: same warehouse, same sources.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/firn.example.toml");
    std::fs::copy(example, dir.path().join("firn.toml")).unwrap();

    let (code, stdout, stderr) = firn(dir.path(), &["--json", "transform", "silver", "all"]);
    assert_eq!(
        code, 3,
        "silver is already computed from the current bronze: {stderr}"
    );
    let reports: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(reports.as_array().unwrap().len(), 4);
    assert!(
        reports
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "UpToDate"),
        "{reports}"
    );

    // Gold reads its SQL files relative to the config: the same files the demo built in.
    let sql_dir = dir.path().join("sql/gold");
    std::fs::create_dir_all(&sql_dir).unwrap();
    for model in ["order_facts", "daily_revenue", "customer_ltv"] {
        let source = format!("{}/../sql/gold/{model}.sql", env!("CARGO_MANIFEST_DIR"));
        std::fs::copy(source, sql_dir.join(format!("{model}.sql"))).unwrap();
    }
    let (code, stdout, stderr) = firn(dir.path(), &["--json", "transform", "gold", "all"]);
    assert_eq!(
        code, 3,
        "gold is already computed from the current silver: {stderr}"
    );
    let reports: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(reports.as_array().unwrap().len(), 3);
    assert!(
        reports
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "UpToDate"),
        "{reports}"
    );
    let (code, _, stderr) = firn(dir.path(), &["transform", "gold", "nope"]);
    assert_eq!(code, 2, "{stderr}");

    let (code, _, stderr) = firn(dir.path(), &["transform", "silver", "nope"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = firn(
        dir.path(),
        &["transform", "silver", "orders", "--as-of", "1"],
    );
    assert_eq!(code, 2, "an unknown input snapshot is bad input: {stderr}");
}

/// Produces a generated stream into a mock cluster that lives in this test process; `firn`
/// subprocesses reach it over loopback.
fn mock_source(
    orders: u64,
) -> (
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    String,
    u64,
) {
    use firn_ingest::generator::{Generator, GeneratorConfig, produce_to_kafka};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let config = GeneratorConfig {
        orders,
        customers: orders / 2,
        ..GeneratorConfig::default()
    };
    let mut generator = Generator::new(&config).unwrap();
    for topic in generator.topics() {
        // The mock cluster keeps about 5 MB per partition; spread the stream so nothing is
        // deleted before it is read.
        cluster.create_topic(&topic, 8, 1).unwrap();
    }
    runtime
        .block_on(produce_to_kafka(
            &brokers,
            &Default::default(),
            2,
            &mut generator,
            |_| {},
        ))
        .unwrap();
    let expected = generator.expected().counts_report().totals.change_events;
    (cluster, brokers, expected)
}

fn bronze_rows(dir: &std::path::Path) -> u64 {
    let (code, stdout, stderr) = firn(dir, &["--json", "tables"]);
    assert_eq!(code, 0, "{stderr}");
    let tables: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    tables
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["table"].as_str().unwrap().starts_with("bronze.")
                && t["table"] != "bronze.firn_dead_letters"
        })
        .map(|t| t["rows"].as_u64().unwrap_or(0))
        .sum()
}

/// SIGTERM commits what was read; SIGKILL loses nothing either: a restart finishes the
/// stream and every change event is in bronze exactly once.
#[test]
fn sigterm_and_sigkill_lose_and_duplicate_nothing() {
    let (_cluster, brokers, expected) = mock_source(4000);
    for signal in ["TERM", "KILL"] {
        let dir = tempfile::tempdir().unwrap();
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/firn.example.toml");
        std::fs::copy(example, dir.path().join("firn.toml")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_firn"))
            .args(["--json", "ingest", "--brokers", &brokers])
            .current_dir(dir.path())
            .env_remove("FIRN_CONFIG")
            .env("FIRN_COMMIT__INTERVAL", "1s")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2500));
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let output = child.wait_with_output().unwrap();
        let partial = bronze_rows(dir.path());
        if signal == "TERM" {
            assert_eq!(
                output.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            let written: u64 = report["tables"]
                .as_object()
                .unwrap()
                .values()
                .map(|t| t["rows_written"].as_u64().unwrap())
                .sum();
            assert_eq!(
                written, partial,
                "everything the stopped run wrote is committed"
            );
        }
        assert!(
            partial < expected,
            "{signal}: stopped before the end ({partial} of {expected})"
        );
        let (code, _, stderr) = firn(dir.path(), &["ingest", "--brokers", &brokers, "--once"]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            bronze_rows(dir.path()),
            expected,
            "{signal}: every change event exactly once"
        );
    }
}
