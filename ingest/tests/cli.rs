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

    let (code, _, stderr) = firn(dir.path(), &["transform", "silver", "nope"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = firn(
        dir.path(),
        &["transform", "silver", "orders", "--as-of", "1"],
    );
    assert_eq!(code, 2, "an unknown input snapshot is bad input: {stderr}");
}
