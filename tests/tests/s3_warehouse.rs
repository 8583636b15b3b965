//! The S3 warehouse path: firn's catalog (SQLite catalog database, OpenDAL S3 FileIO) against a
//! real S3 API, moto's server (`tests/scripts/moto.sh`, started by `make test-deps`), each result
//! read back by pyiceberg 0.12 through its own (pyarrow) S3 FileIO.
//!
//! Needs `FIRN_TEST_S3_ENDPOINT` (`make test` sets it to `tests/scripts/moto.sh url`). Every test
//! makes a bucket of its own, so tests share one moto server safely.

use std::path::Path;

use firn_catalog::config::{CatalogDatabase, PipelineConfig, WarehouseLocation};
use firn_catalog::{Catalog, CommitRequest, CommitStatus, Operation, OverwriteScope, TableName};
use firn_tests::{orders_spec, run_reader, write_orders};
use iceberg::spec::{Literal, Struct};
use serde_json::Value;

const ACCESS_KEY_ID: &str = "firn-test-akid-5c1d";
/// Distinctive, so a leak is found by a plain substring search.
const SECRET_ACCESS_KEY: &str = "firn-test-secret-9f3b7e2a41d6";

fn s3_endpoint() -> String {
    std::env::var("FIRN_TEST_S3_ENDPOINT").expect(
        "FIRN_TEST_S3_ENDPOINT is not set: run `make test` (or `make test-deps` and \
         `export FIRN_TEST_S3_ENDPOINT=$(tests/scripts/moto.sh url)`) to start the test S3 API",
    )
}

/// A lake whose warehouse is `s3://<fresh bucket>/wh` on the test S3 API.
struct S3Lake {
    dir: tempfile::TempDir,
    endpoint: String,
    bucket: String,
    config: PipelineConfig,
    catalog: Catalog,
    http: reqwest::Client,
}

impl S3Lake {
    async fn new() -> S3Lake {
        let endpoint = s3_endpoint();
        let bucket = format!("firn-t-{}", uuid::Uuid::new_v4().simple());
        let http = reqwest::Client::new();
        // moto accepts unsigned requests; a real S3 would need SigV4.
        let response = http
            .put(format!("{endpoint}/{bucket}"))
            .send()
            .await
            .unwrap_or_else(|err| panic!("cannot reach the test S3 API at {endpoint}: {err}"));
        assert!(
            response.status().is_success(),
            "create bucket {bucket} on {endpoint}: HTTP {}",
            response.status()
        );

        let dir = tempfile::tempdir().expect("create temp dir");
        let toml = format!(
            r#"
[warehouse]
uri = "s3://{bucket}/wh"

[warehouse.s3]
endpoint = "{endpoint}"
region = "us-east-1"
path-style = true
"#
        );
        // Credentials come in as overrides (as an operator would pass them), not in the file.
        let env = vec![
            (
                "FIRN_WAREHOUSE__S3__ACCESS_KEY_ID".to_string(),
                ACCESS_KEY_ID.to_string(),
            ),
            (
                "FIRN_WAREHOUSE__S3__SECRET_ACCESS_KEY".to_string(),
                SECRET_ACCESS_KEY.to_string(),
            ),
        ];
        let config = PipelineConfig::from_toml(&toml, env, dir.path()).expect("S3 config");
        let catalog = Catalog::connect(&config)
            .await
            .expect("connect the SQLite catalog with the S3 warehouse");
        S3Lake {
            dir,
            endpoint,
            bucket,
            config,
            catalog,
            http,
        }
    }

    /// Runs the pyiceberg reader with the S3 FileIO properties pyarrow needs for moto.
    fn pyiceberg(&self, args: &[&str]) -> Value {
        let CatalogDatabase::Sqlite(db) = self.config.catalog_database().unwrap() else {
            panic!("expected a SQLite catalog");
        };
        let mut full = vec![
            "--uri".to_string(),
            format!("sqlite:///{}", db.display()),
            "--warehouse".to_string(),
            self.config.warehouse_location().unwrap().uri(),
        ];
        for prop in [
            format!("s3.endpoint={}", self.endpoint),
            "s3.region=us-east-1".to_string(),
            format!("s3.access-key-id={ACCESS_KEY_ID}"),
            format!("s3.secret-access-key={SECRET_ACCESS_KEY}"),
            // Path-style (`endpoint/bucket/key`), as firn itself is configured.
            "s3.force-virtual-addressing=false".to_string(),
        ] {
            full.push("--prop".to_string());
            full.push(prop);
        }
        full.extend(args.iter().map(|a| a.to_string()));
        run_reader(&full)
    }

    fn count(&self, table: &str, extra: &[&str]) -> u64 {
        let mut args = vec!["scan", table];
        args.extend_from_slice(extra);
        self.pyiceberg(&args)["row_count"]
            .as_u64()
            .expect("row_count")
    }

    /// Every object key in the bucket (unsigned ListObjectsV2, which moto answers).
    async fn list_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = self
                .http
                .get(format!("{}/{}", self.endpoint, self.bucket))
                .query(&[("list-type", "2")]);
            if let Some(token) = &token {
                request = request.query(&[("continuation-token", token)]);
            }
            let body = request
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .expect("list bucket")
                .text()
                .await
                .expect("list body");
            keys.extend(xml_values(&body, "Key"));
            token = xml_values(&body, "NextContinuationToken")
                .into_iter()
                .next();
            if token.is_none() {
                return keys;
            }
        }
    }

    /// An object's bytes, read through firn's own (signed) FileIO: moto refuses anonymous
    /// GETs of objects written with credentials.
    async fn get_object(&self, key: &str) -> Vec<u8> {
        let path = format!("s3://{}/{key}", self.bucket);
        self.catalog
            .file_io()
            .new_input(&path)
            .expect("input file")
            .read()
            .await
            .unwrap_or_else(|err| panic!("read {path}: {err}"))
            .to_vec()
    }
}

/// The text of every `<tag>...</tag>` in an S3 XML response (keys here need no unescaping:
/// they are ASCII paths firn and iceberg generate).
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(value, _)| value.to_string()))
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

async fn append(lake: &S3Lake, name: &TableName, rows: &[(i64, &str, i32, i128)]) -> i64 {
    let table = lake.catalog.load_table(name).await.unwrap();
    let files = write_orders(&table, rows).await;
    let outcome = lake
        .catalog
        .commit(name, CommitRequest::new(Operation::Append { files }))
        .await
        .unwrap();
    assert_eq!(outcome.status, CommitStatus::Committed);
    outcome.snapshot_id.unwrap()
}

fn ids(scan: &Value) -> Vec<i64> {
    scan["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_path_on_s3_reads_back_with_pyiceberg_and_keeps_secrets_out() {
    let lake = S3Lake::new().await;
    let warehouse = format!("s3://{}/wh", lake.bucket);
    assert_eq!(
        lake.config.warehouse_location().unwrap(),
        WarehouseLocation::S3 {
            bucket: lake.bucket.clone(),
            prefix: "wh".to_string()
        }
    );
    // An S3 warehouse keeps its SQLite catalog beside the config (here: the temp dir).
    assert_eq!(
        lake.config.catalog_database().unwrap(),
        CatalogDatabase::Sqlite(lake.dir.path().join("catalog.db"))
    );

    let spec = orders_spec("orders");
    let (table, created) = lake.catalog.create_table(&spec).await.unwrap();
    assert!(created);
    assert_eq!(
        table.metadata().location(),
        format!("{warehouse}/silver/orders")
    );

    let s1 = append(
        &lake,
        &spec.name,
        &[
            (1, "acme", 1, 100),
            (2, "acme", 2, 200),
            (3, "globex", 3, 300),
        ],
    )
    .await;
    let s2 = append(&lake, &spec.name, &[(4, "initech", 4, 400)]).await;

    // Replace the acme partition only.
    let table = lake.catalog.load_table(&spec.name).await.unwrap();
    let files = write_orders(&table, &[(10, "acme", 5, 1000)]).await;
    assert!(
        files.iter().all(|f| f
            .file_path()
            .starts_with(&format!("{warehouse}/silver/orders/"))),
        "data files are written under the table location on S3"
    );
    let outcome = lake
        .catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::Overwrite {
                files,
                scope: OverwriteScope::Partitions(vec![Struct::from_iter([Some(
                    Literal::string("acme"),
                )])]),
            }),
        )
        .await
        .unwrap();
    assert_eq!(outcome.status, CommitStatus::Committed);
    let s3 = outcome.snapshot_id.unwrap();

    // What firn sees.
    let table = lake.catalog.load_table(&spec.name).await.unwrap();
    let firn_snapshots: Vec<i64> = table
        .metadata()
        .snapshots()
        .map(|s| s.snapshot_id())
        .collect();
    assert_eq!(firn_snapshots.len(), 3);
    assert_eq!(table.metadata().current_snapshot_id(), Some(s3));

    // What pyiceberg sees, through its own S3 FileIO.
    let described = lake.pyiceberg(&["describe", "silver.orders"]);
    let location = described["location"].as_str().unwrap();
    assert!(location.starts_with("s3://"), "location {location}");
    assert_eq!(location, format!("{warehouse}/silver/orders"));
    let metadata_location = described["metadata_location"].as_str().unwrap();
    assert!(
        metadata_location.starts_with(&format!("{warehouse}/silver/orders/metadata/")),
        "metadata location {metadata_location}"
    );
    assert_eq!(described["current_snapshot_id"], s3);
    let snapshots = described["snapshots"].as_array().unwrap();
    let py_ids: Vec<i64> = snapshots
        .iter()
        .map(|s| s["snapshot_id"].as_i64().unwrap())
        .collect();
    assert_eq!(py_ids, vec![s1, s2, s3]);
    let mut sorted_firn = firn_snapshots.clone();
    sorted_firn.sort_unstable();
    let mut sorted_py = py_ids.clone();
    sorted_py.sort_unstable();
    assert_eq!(sorted_py, sorted_firn);
    let operations: Vec<&str> = snapshots
        .iter()
        .map(|s| s["summary"]["operation"].as_str().unwrap())
        .collect();
    assert_eq!(operations, vec!["append", "append", "overwrite"]);
    assert_eq!(snapshots[1]["parent_snapshot_id"], s1);
    assert_eq!(snapshots[2]["parent_snapshot_id"], s2);
    assert_eq!(snapshots[2]["summary"]["deleted-records"], "2");
    assert_eq!(snapshots[2]["summary"]["total-records"], "3");
    for snapshot in snapshots {
        let manifest_list = snapshot["manifest_list"].as_str().unwrap();
        assert!(
            manifest_list.starts_with(&format!("{warehouse}/silver/orders/metadata/")),
            "manifest list {manifest_list}"
        );
    }

    // Row counts per snapshot, read from the Parquet files on S3.
    assert_eq!(
        lake.count("silver.orders", &["--snapshot-id", &s1.to_string()]),
        3
    );
    assert_eq!(
        lake.count("silver.orders", &["--snapshot-id", &s2.to_string()]),
        4
    );
    let scan = lake.pyiceberg(&["scan", "silver.orders", "--rows"]);
    assert_eq!(scan["row_count"], 3);
    assert_eq!(scan["snapshot_id"], s3);
    assert_eq!(ids(&scan), vec![3, 4, 10]);
    assert_eq!(scan["rows"][2]["amount"], "10.00");

    // Secrets stay out of the config's Debug, the table as pyiceberg describes it, and every
    // object written to the bucket (metadata JSON, manifest lists, manifests, data files).
    let debug = format!("{:?} {:?}", lake.config, lake.catalog);
    assert!(!debug.contains(SECRET_ACCESS_KEY), "config Debug: {debug}");
    assert!(!debug.contains(ACCESS_KEY_ID), "config Debug: {debug}");
    let described_text = described.to_string();
    assert!(!described_text.contains(SECRET_ACCESS_KEY));
    assert!(!described_text.contains(ACCESS_KEY_ID));

    let keys = lake.list_keys().await;
    assert!(
        keys.iter().all(|k| k.starts_with("wh/silver/orders/")),
        "everything is under the table location: {keys:?}"
    );
    let metadata_files: Vec<&String> = keys
        .iter()
        .filter(|k| k.ends_with(".metadata.json"))
        .collect();
    // create + 3 commits
    assert_eq!(
        metadata_files.len(),
        4,
        "metadata files: {metadata_files:?}"
    );
    let current_key = metadata_location
        .strip_prefix(&format!("s3://{}/", lake.bucket))
        .unwrap();
    assert!(keys.iter().any(|k| k == current_key));
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".parquet")).count(),
        4,
        "one data file per tenant per write: {keys:?}"
    );
    for key in &keys {
        let body = lake.get_object(key).await;
        assert!(!body.is_empty(), "{key} is empty");
        assert!(!contains(&body, SECRET_ACCESS_KEY), "secret key in {key}");
        assert!(!contains(&body, ACCESS_KEY_ID), "access key id in {key}");
        if key.ends_with(".metadata.json") {
            let metadata: Value = serde_json::from_slice(&body).expect("metadata JSON");
            assert_eq!(metadata["location"], format!("{warehouse}/silver/orders"));
        }
    }

    // Nothing was written to the local disk but the catalog database.
    let local: Vec<String> = std::fs::read_dir(lake.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("catalog.db"))
        .collect();
    assert!(local.is_empty(), "unexpected local files: {local:?}");
    assert!(Path::new(&lake.dir.path().join("catalog.db")).exists());
}
