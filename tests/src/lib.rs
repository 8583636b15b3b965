//! Test harness shared by firn's integration tests: throwaway lakes (SQLite or Postgres
//! catalog plus a local warehouse), the independent pyiceberg reader, and small table
//! fixtures. Does I/O (temp dirs, databases, subprocesses).
//!
//! Tests need what `make test-deps` installs: `FIRN_TEST_PYTHON` (a venv with pyiceberg
//! 0.12) and, for Postgres, `FIRN_TEST_POSTGRES_URL` (an admin URL; each lake creates and
//! drops its own database). Without them the tests fail with a message saying so; they
//! never pass by skipping.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow_array::{ArrayRef, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray};
use firn_catalog::config::{CatalogDatabase, PipelineConfig};
use firn_catalog::tables::derived_spec;
use firn_catalog::{Catalog, DataFileSink, TableName, TableSpec, Tier};
use iceberg::spec::{
    DataFile, NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec,
};
use iceberg::table::Table;
use serde_json::Value;
use tempfile::TempDir;

pub use firn_catalog;

pub mod broker;
pub mod relay_harness;
pub mod schema_registry;
pub mod stream_load;

/// A throwaway lake: a warehouse directory and a catalog database.
pub struct Lake {
    pub dir: TempDir,
    pub config: PipelineConfig,
    pub catalog: Catalog,
    postgres: Option<PostgresDatabase>,
}

impl Lake {
    /// A lake on an embedded SQLite catalog.
    pub async fn sqlite() -> Lake {
        let dir = tempfile::tempdir().expect("create temp dir");
        let config = PipelineConfig::from_toml("", Vec::new(), dir.path()).expect("default config");
        let catalog = Catalog::connect(&config)
            .await
            .expect("connect sqlite catalog");
        Lake {
            dir,
            config,
            catalog,
            postgres: None,
        }
    }

    /// A lake on its own Postgres database (dropped when the lake is dropped).
    pub async fn postgres() -> Lake {
        let database = PostgresDatabase::create().await;
        let dir = tempfile::tempdir().expect("create temp dir");
        let env = vec![("FIRN_CATALOG__URI".to_string(), database.url.clone())];
        let config = PipelineConfig::from_toml("", env, dir.path()).expect("postgres config");
        let catalog = Catalog::connect(&config)
            .await
            .expect("connect postgres catalog");
        Lake {
            dir,
            config,
            catalog,
            postgres: Some(database),
        }
    }

    /// A second, independent connection to the same lake (as another process would have).
    pub async fn second_connection(&self) -> Catalog {
        Catalog::connect(&self.config)
            .await
            .expect("second connection")
    }

    pub fn warehouse_uri(&self) -> String {
        self.config.warehouse_location().unwrap().uri()
    }

    /// The catalog address as pyiceberg's reader takes it.
    pub fn reader_uri(&self) -> String {
        match self.config.catalog_database().unwrap() {
            CatalogDatabase::Sqlite(path) => format!("sqlite:///{}", path.display()),
            CatalogDatabase::Postgres(url) => url,
        }
    }

    /// Runs the pyiceberg reader (`tests/python/firn_read.py`) and parses its JSON.
    pub fn pyiceberg(&self, args: &[&str]) -> Value {
        let mut full = vec![
            "--uri".to_string(),
            self.reader_uri(),
            "--warehouse".to_string(),
            self.warehouse_uri(),
        ];
        full.extend(args.iter().map(|a| a.to_string()));
        run_reader(&full)
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }
}

/// Runs the pyiceberg reader with explicit arguments.
pub fn run_reader(args: &[String]) -> Value {
    let python = test_python();
    let output = Command::new(&python)
        .arg(reader_script())
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", python.display()));
    assert!(
        output.status.success(),
        "pyiceberg reader failed ({:?}): {}",
        args,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("reader prints JSON")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn reader_script() -> PathBuf {
    std::env::var_os("FIRN_TEST_READER")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests/python/firn_read.py"))
}

/// The Python interpreter with pyiceberg 0.12.
pub fn test_python() -> PathBuf {
    if let Some(python) = std::env::var_os("FIRN_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let cache = std::env::var_os("FIRN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/firn")
        });
    let python = cache.join("venv/bin/python");
    assert!(
        python.exists(),
        "no Python test env at {}: run `make test-deps` (or `make test`)",
        python.display()
    );
    python
}

/// A database of its own on the test Postgres server.
struct PostgresDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PostgresDatabase {
    async fn create() -> PostgresDatabase {
        let admin_url = std::env::var("FIRN_TEST_POSTGRES_URL").expect(
            "FIRN_TEST_POSTGRES_URL is not set: run `make test-deps` to start the test Postgres",
        );
        let name = format!("firn_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .expect("connect to the test Postgres");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&admin_url);
        let url = format!("{base}/{name}");
        PostgresDatabase {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
                    .await
                    .ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// A small partitioned table used by the commit-path tests:
/// `id long, tenant string, qty int, amount decimal(10,2)`, partitioned by tenant.
pub fn orders_spec(name: &str) -> TableSpec {
    let schema = Schema::builder()
        .with_schema_id(0)
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::required(2, "tenant", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::optional(3, "qty", Type::Primitive(PrimitiveType::Int)).into(),
            NestedField::optional(
                4,
                "amount",
                Type::Primitive(PrimitiveType::Decimal {
                    precision: 10,
                    scale: 2,
                }),
            )
            .into(),
        ])
        .build()
        .unwrap();
    let spec = UnboundPartitionSpec::builder()
        .with_spec_id(0)
        .add_partition_field(2, "tenant", Transform::Identity)
        .unwrap()
        .build();
    derived_spec(TableName::new(Tier::Silver, name).unwrap(), schema, spec)
}

/// Rows `(id, tenant, qty, amount_cents)` for [`orders_spec`] tables; extra columns of the
/// table's current schema (added by evolution) are written as nulls.
pub fn orders_batch(table: &Table, rows: &[(i64, &str, i32, i128)]) -> RecordBatch {
    let schema = firn_catalog::writer::arrow_schema_for(table).unwrap();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for field in schema.fields() {
        let column: ArrayRef = match field.name().as_str() {
            "id" => Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            "tenant" => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            "qty" => match field.data_type() {
                arrow_schema::DataType::Int64 => Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|r| r.2 as i64),
                )),
                _ => Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2))),
            },
            "amount" => {
                let arrow_schema::DataType::Decimal128(precision, scale) = field.data_type() else {
                    panic!("amount is a decimal");
                };
                Arc::new(
                    Decimal128Array::from_iter_values(rows.iter().map(|r| r.3))
                        .with_precision_and_scale(*precision, *scale)
                        .unwrap(),
                )
            }
            _ => arrow_array::new_null_array(field.data_type(), rows.len()),
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema, columns).unwrap()
}

/// Writes rows into data files of `table` (uncommitted).
pub async fn write_orders(table: &Table, rows: &[(i64, &str, i32, i128)]) -> Vec<DataFile> {
    let mut sink = DataFileSink::new(table, 64 * 1024 * 1024).await.unwrap();
    sink.write(orders_batch(table, rows)).await.unwrap();
    sink.finish().await.unwrap()
}

/// Row count of a table (or snapshot) as pyiceberg sees it.
pub fn pyiceberg_count(lake: &Lake, table: &str, extra: &[&str]) -> u64 {
    let mut args = vec!["scan", table];
    args.extend_from_slice(extra);
    lake.pyiceberg(&args)["row_count"]
        .as_u64()
        .expect("row_count")
}

/// librdkafka's in-process mock cluster holding a generated Debezium stream.
pub struct GeneratedSource {
    /// Keeps the brokers alive for as long as the source is.
    pub cluster: rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    pub brokers: String,
    /// The exhausted generator: its `expected()` state describes what was produced.
    pub generator: firn_ingest::generator::Generator,
}

/// Starts a mock cluster, creates the generator's topics with `partitions` partitions and
/// produces the whole stream into them.
pub async fn generated_source(
    config: &firn_ingest::generator::GeneratorConfig,
    partitions: i32,
) -> GeneratedSource {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("start the mock cluster");
    let brokers = cluster.bootstrap_servers();
    let mut generator =
        firn_ingest::generator::Generator::new(config).expect("valid generator config");
    for topic in generator.topics() {
        cluster
            .create_topic(&topic, partitions, 1)
            .expect("create topic");
    }
    firn_ingest::generator::produce_to_kafka(
        &brokers,
        &Default::default(),
        partitions,
        &mut generator,
        |_| {},
    )
    .await
    .expect("produce the generated stream");
    GeneratedSource {
        cluster,
        brokers,
        generator,
    }
}

/// The `firn` binary of this workspace build (next to the test executable's `deps/`).
pub fn firn_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let firn = dir.join("firn");
    assert!(
        firn.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace --all-targets`)",
        firn.display()
    );
    firn
}

/// Runs `firn --config <config> --json <args>` (without `FIRN_CONFIG` or a catalog override
/// from the environment): its exit code, its stdout as JSON (`Null` when it is not JSON) and
/// its stderr.
pub fn run_firn_json(config: &Path, args: &[&str]) -> (Option<i32>, Value, String) {
    let output = Command::new(firn_binary())
        .arg("--config")
        .arg(config)
        .arg("--json")
        .args(args)
        .env_remove("FIRN_CONFIG")
        .env_remove("FIRN_CATALOG__URI")
        .output()
        .expect("run firn");
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    (output.status.code(), report, stderr)
}

/// Bronze rows per table, and how many of them repeat a (topic, partition, offset) already
/// seen, read by pyiceberg.
pub fn bronze_rows_and_repeats(lake: &Lake, tables: &[&str]) -> (BTreeMap<String, u64>, u64) {
    let mut rows = BTreeMap::new();
    let mut repeats = 0;
    for table in tables {
        let scan = lake.pyiceberg(&[
            "scan",
            &format!("bronze.{table}"),
            "--rows",
            "--columns",
            "_firn_topic,_firn_partition,_firn_offset",
        ]);
        let mut seen = std::collections::HashSet::new();
        let list = scan["rows"].as_array().expect("rows in the scan output");
        for row in list {
            let key = (
                row["_firn_topic"].as_str().unwrap_or_default().to_string(),
                row["_firn_partition"].as_i64().unwrap_or(-1),
                row["_firn_offset"].as_i64().unwrap_or(-1),
            );
            if !seen.insert(key) {
                repeats += 1;
            }
        }
        rows.insert(table.to_string(), list.len() as u64);
    }
    (rows, repeats)
}
