//! Incremental silver end to end, over several ingest cycles: a generated CDC stream
//! (two partitions per topic, connector restarts that re-emit events, deletes, re-inserted
//! keys) is produced to the mock cluster in three parts; after each part is ingested, silver
//! runs incrementally, and its rows must equal a full recompute over the same bronze
//! snapshot. A tenant-restricted run and a `full` rebuild take part too. At the end,
//! pyiceberg's scan of every silver table equals the generator's expected final state.
//!
//! Also here: the split scan has more than one partition for a multi-file table and reads
//! the same rows as iceberg-datafusion's own scan; a run under a small memory pool spills
//! (by DataFusion's own metrics) and commits the same rows as an unconstrained one; and an
//! incremental run whose changed tenants hold most of silver runs full instead.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::{DataFrame, SessionContext, ident};
use firn_catalog::config::PipelineConfig;
use firn_catalog::{
    Catalog, CommitRequest, DataFileSink, Operation, SchemaChange, TableName, Tier,
};
use firn_ingest::demo::DEMO_CONFIG;
use firn_ingest::generator::{Generator, GeneratorConfig, Table, produce_to_kafka};
use firn_ingest::writer::{IngestOptions, run};
use firn_tests::Lake;
use firn_transforms::scan::SnapshotTable;
use firn_transforms::{
    EngineOptions, SilverMode, SilverOptions, TransformStatus, run_silver, silver_plan,
};
use iceberg_datafusion::IcebergStaticTableProvider;
use serde_json::Value;

type Rows = BTreeSet<Vec<String>>;

fn rendered(batches: &[RecordBatch]) -> Rows {
    let mut rows = Rows::new();
    for batch in batches {
        for i in 0..batch.num_rows() {
            let row = batch
                .columns()
                .iter()
                .map(|column| array_value_to_string(column, i).unwrap())
                .collect();
            assert!(rows.insert(row), "a row twice");
        }
    }
    rows
}

async fn collect(frame: DataFrame, columns: &[String]) -> Rows {
    let frame = frame
        .select(columns.iter().map(ident).collect::<Vec<_>>())
        .unwrap();
    rendered(&frame.collect().await.unwrap())
}

fn keys_of(config: &PipelineConfig, table: Table) -> Vec<String> {
    config
        .sources
        .iter()
        .find(|s| s.table == table.name())
        .and_then(|s| s.primary_key.clone())
        .unwrap_or_else(|| table.key_columns().iter().map(|k| k.to_string()).collect())
}

/// The current silver rows, and the rows a full recompute over the bronze snapshot that
/// silver records as its input gives, both with silver's columns.
async fn silver_and_full(catalog: &Catalog, table: Table, keys: &[String]) -> (Rows, Rows) {
    let silver = catalog
        .load_table(&TableName::new(Tier::Silver, table.name()).unwrap())
        .await
        .unwrap();
    let snapshot = silver.metadata().current_snapshot().unwrap();
    let input = firn_catalog::history::input_snapshots(&snapshot.summary().additional_properties)
        [&format!("bronze.{}", table.name())];
    let columns: Vec<String> = silver
        .metadata()
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| f.name.clone())
        .collect();
    let ctx = SessionContext::new();
    let current = ctx
        .read_table(Arc::new(
            SnapshotTable::try_new(silver.clone(), snapshot.snapshot_id(), 2).unwrap(),
        ))
        .unwrap();
    let bronze = catalog
        .load_table(&TableName::new(Tier::Bronze, table.name()).unwrap())
        .await
        .unwrap();
    let provider = IcebergStaticTableProvider::try_new_from_table_snapshot(bronze, input)
        .await
        .unwrap();
    let full = silver_plan(ctx.read_table(Arc::new(provider)).unwrap(), keys).unwrap();
    (
        collect(current, &columns).await,
        collect(full, &columns).await,
    )
}

async fn produce(brokers: &str, generator: &mut Generator, messages: usize) {
    produce_to_kafka(
        brokers,
        &Default::default(),
        2,
        generator.by_ref().take(messages),
        |_| {},
    )
    .await
    .expect("produce part of the generated stream");
}

async fn ingest(catalog: &Catalog, config: &PipelineConfig, brokers: &str) {
    let options = IngestOptions {
        brokers: brokers.to_string(),
        writer_id: "incremental-test".into(),
        stop_when_caught_up: true,
    };
    run(catalog, config, &options).await.unwrap();
}

/// Two partitions; incremental whatever share of the tenants changed (the generator's
/// events touch every tenant; the fallback to a full run has its own test).
fn options(keys: &[String]) -> SilverOptions {
    let mut options = SilverOptions::new(keys.to_vec());
    options.engine.partitions = 2;
    options.max_incremental_share = 1.0;
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_silver_equals_full_over_ingest_cycles() {
    let lake = Lake::sqlite().await;
    let config =
        PipelineConfig::from_toml(DEMO_CONFIG, Vec::<(String, String)>::new(), lake.dir.path())
            .unwrap();
    let catalog = Catalog::connect(&config).await.unwrap();
    catalog.init(&config).await.unwrap();
    let generator_config = GeneratorConfig {
        orders: 80,
        customers: 30,
        products: 15,
        ..GeneratorConfig::default()
    };
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let mut generator = Generator::new(&generator_config).unwrap();
    for topic in generator.topics() {
        cluster.create_topic(&topic, 2, 1).unwrap();
    }
    let part = (generator_config.estimated_messages() / 3) as usize;
    let tenants: Vec<String> = generator_config.tenants.clone();
    assert!(tenants.len() >= 2, "a tenant run needs other tenants");

    for cycle in 0..3 {
        if cycle < 2 {
            produce(&brokers, &mut generator, part).await;
        } else {
            produce(&brokers, &mut generator, usize::MAX).await;
        }
        ingest(&catalog, &config, &brokers).await;
        for table in Table::ALL {
            let keys = keys_of(&config, table);
            if cycle == 2 && table == Table::Orders {
                // One tenant first: only its partition is read and replaced.
                let mut tenant_run = options(&keys);
                tenant_run.tenant = Some(tenants[0].clone());
                let report = run_silver(&catalog, table.name(), tenant_run)
                    .await
                    .unwrap();
                assert_eq!(report.status, TransformStatus::Committed, "{report:?}");
                assert!(
                    matches!(report.mode, Some(SilverMode::Incremental { .. })),
                    "{report:?}"
                );
                assert_eq!(report.tenants, Some(vec![tenants[0].clone()]));
            }
            let report = run_silver(&catalog, table.name(), options(&keys))
                .await
                .unwrap();
            assert_eq!(report.status, TransformStatus::Committed, "{report:?}");
            if cycle == 0 {
                assert_eq!(report.mode, Some(SilverMode::Full), "{report:?}");
            } else {
                // Bronze only grew: incremental, reading the added files, not all of bronze.
                assert!(
                    matches!(report.mode, Some(SilverMode::Incremental { .. })),
                    "{report:?}"
                );
                let parts: BTreeSet<&str> = report.reads.iter().map(|r| r.part).collect();
                assert!(parts.contains("added files"), "{report:?}");
                assert!(!parts.contains("all"), "{report:?}");
                assert!(report.tenants.is_some(), "{report:?}");
            }
            let (silver, full) = silver_and_full(&catalog, table, &keys).await;
            assert!(!full.is_empty(), "{}: cycle {cycle} has rows", table.name());
            assert_eq!(
                silver,
                full,
                "{} cycle {cycle}: incremental == full",
                table.name()
            );
            // The same input again: nothing to do.
            let again = run_silver(&catalog, table.name(), options(&keys))
                .await
                .unwrap();
            assert_eq!(again.status, TransformStatus::UpToDate, "{again:?}");
        }
    }
    assert!(generator.is_finished());

    // A forced full rebuild (bronze moved by an empty append) commits the same rows.
    for table in Table::ALL {
        let keys = keys_of(&config, table);
        let incremental = lake.pyiceberg(&["scan", &format!("silver.{}", table.name()), "--rows"]);
        catalog
            .commit(
                &TableName::new(Tier::Bronze, table.name()).unwrap(),
                CommitRequest::new(Operation::Append { files: Vec::new() })
                    .with_property("firn.test-marker", "1"),
            )
            .await
            .unwrap();
        let mut full = options(&keys);
        full.full = true;
        // Within the smallest accepted pool, the rows do not change (spilling itself is
        // proven on a larger table below).
        full.engine = EngineOptions {
            memory_limit: firn_transforms::engine::MIN_MEMORY_LIMIT,
            ..full.engine
        };
        let report = run_silver(&catalog, table.name(), full).await.unwrap();
        assert_eq!(report.status, TransformStatus::Committed, "{report:?}");
        assert_eq!(report.mode, Some(SilverMode::Full));
        assert_eq!(report.tenants, None);
        let rebuilt = lake.pyiceberg(&["scan", &format!("silver.{}", table.name()), "--rows"]);
        let sorted = |scan: &Value| {
            let mut rows: Vec<String> = scan["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.to_string())
                .collect();
            rows.sort();
            rows
        };
        assert_eq!(sorted(&incremental), sorted(&rebuilt), "{}", table.name());
    }

    // pyiceberg reads the generator's expected final state: the live keys per tenant.
    let expected = generator.expected();
    for table in Table::ALL {
        let keys = keys_of(&config, table);
        let scan = lake.pyiceberg(&["scan", &format!("silver.{}", table.name()), "--rows"]);
        let mut actual: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for row in scan["rows"].as_array().unwrap() {
            let key: Vec<String> = keys.iter().map(|k| row[k].to_string()).collect();
            actual
                .entry(row["tenant"].as_str().unwrap().to_string())
                .or_default()
                .insert(key.join("|"));
        }
        for tenant in expected.tenants() {
            let wanted: BTreeSet<String> = expected
                .rows(table, tenant)
                .iter()
                .map(|row| {
                    let key: Vec<String> = keys.iter().map(|k| row.row[k].to_string()).collect();
                    key.join("|")
                })
                .collect();
            assert_eq!(
                actual.get(tenant).cloned().unwrap_or_default(),
                wanted,
                "{}/{tenant}: live keys",
                table.name()
            );
        }
    }

    // The split scan: more than one partition over bronze's many files, same rows as
    // iceberg-datafusion's single-partition scan.
    let bronze = catalog
        .load_table(&TableName::new(Tier::Bronze, "orders").unwrap())
        .await
        .unwrap();
    let snapshot = bronze.metadata().current_snapshot_id().unwrap();
    let ctx = SessionContext::new();
    let split = ctx
        .read_table(Arc::new(
            SnapshotTable::try_new(bronze.clone(), snapshot, 2).unwrap(),
        ))
        .unwrap();
    let physical = split.clone().create_physical_plan().await.unwrap();
    assert!(
        physical
            .properties()
            .output_partitioning()
            .partition_count()
            > 1,
        "{}",
        datafusion::physical_plan::displayable(physical.as_ref()).indent(false)
    );
    let columns: Vec<String> = split
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let single = ctx
        .read_table(Arc::new(
            IcebergStaticTableProvider::try_new_from_table_snapshot(bronze, snapshot)
                .await
                .unwrap(),
        ))
        .unwrap();
    let split_rows = collect(split, &columns).await;
    assert!(!split_rows.is_empty());
    assert_eq!(split_rows, collect(single, &columns).await);
}

/// A bronze table written directly (not through Kafka, whose mock keeps only a few MB per
/// partition): `events` change events over `keys` keys of `TENANTS` tenants, every key
/// inserted first, then updates and 4 % deletes, and one truncate per tenant two thirds of
/// the way through. Returns the live keys a replay of those events leaves.
const TENANTS: u64 = 8;

fn bronze_events(
    schema: &datafusion::arrow::datatypes::SchemaRef,
    first: u64,
    events: u64,
    keys: u64,
    truncate_at: u64,
    live: &mut BTreeMap<(String, i64), u64>,
) -> RecordBatch {
    use datafusion::arrow::array::{
        ArrayRef, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    let mut columns: BTreeMap<&str, Vec<Option<String>>> = BTreeMap::new();
    let (mut partitions, mut offsets, mut ids, mut times) = (vec![], vec![], vec![], vec![]);
    for i in first..first + events {
        let scrambled = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
        let (op, key) = if i == truncate_at {
            ("t", None)
        } else if i < keys {
            ("c", Some(i))
        } else if scrambled % 25 == 0 {
            ("d", Some(scrambled % keys))
        } else {
            ("u", Some(scrambled % keys))
        };
        let tenant = format!("t{}", key.unwrap_or(i) % TENANTS);
        let id = key.map(|k| (k / TENANTS) as i64);
        match (op, id) {
            ("t", _) => live.retain(|(t, _), _| *t != tenant),
            ("d", Some(id)) => {
                live.remove(&(tenant.clone(), id));
            }
            (_, Some(id)) => {
                live.insert((tenant.clone(), id), i);
            }
            _ => {}
        }
        for (column, value) in [
            ("_firn_tenant", tenant.clone()),
            ("_firn_op", op.to_string()),
            ("_firn_source_pos", format!("mysql-bin.000001:{i:020}")),
            ("_firn_topic", format!("cdc.{tenant}.shop.events")),
            ("note", format!("note {} of event {i}", scrambled % 1000)),
        ] {
            columns.entry(column).or_default().push(Some(value));
        }
        partitions.push((i % 2) as i32);
        offsets.push(i as i64);
        ids.push(id);
        times.push(1_767_225_600_000_000 + i as i64);
    }
    let strings = |name: &str| -> ArrayRef { Arc::new(StringArray::from(columns[name].clone())) };
    let time = || -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(times.clone()).with_timezone("+00:00"))
    };
    let arrays: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| match field.name().as_str() {
            "_firn_source_ts" | "_firn_ingested_at" => time(),
            "_firn_partition" => Arc::new(Int32Array::from(partitions.clone())) as ArrayRef,
            "_firn_offset" => Arc::new(Int64Array::from(offsets.clone())),
            "id" => Arc::new(Int64Array::from(ids.clone())),
            name => strings(name),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), arrays).unwrap()
}

/// `bronze.events` (primary key `id`, a `note` column) with `events` more events appended.
async fn append_events(
    catalog: &Catalog,
    first: u64,
    events: u64,
    keys: u64,
    truncate_at: u64,
    live: &mut BTreeMap<(String, i64), u64>,
) {
    let name = TableName::new(Tier::Bronze, "events").unwrap();
    let mut table = catalog.load_table(&name).await.unwrap();
    if table
        .metadata()
        .current_schema()
        .field_by_name("id")
        .is_none()
    {
        let changes = [
            ("id", iceberg::spec::PrimitiveType::Long),
            ("note", iceberg::spec::PrimitiveType::String),
        ]
        .map(|(name, kind)| SchemaChange::AddColumn {
            name: name.to_string(),
            field_type: iceberg::spec::Type::Primitive(kind),
            doc: None,
        });
        let request = CommitRequest::new(Operation::EvolveSchema {
            changes: changes.to_vec(),
        });
        table = catalog.commit(&name, request).await.unwrap().table;
    }
    let mut sink = DataFileSink::new(&table, 128 * 1024 * 1024).await.unwrap();
    let schema = sink.arrow_schema().clone();
    let mut at = first;
    while at < first + events {
        let chunk = (first + events - at).min(50_000);
        sink.write(bronze_events(&schema, at, chunk, keys, truncate_at, live))
            .await
            .unwrap();
        at += chunk;
    }
    let files = sink.finish().await.unwrap();
    catalog
        .commit(&name, CommitRequest::new(Operation::Append { files }))
        .await
        .unwrap();
}

/// The current rows of `silver.events`, every column rendered.
async fn silver_events(catalog: &Catalog) -> Rows {
    let silver = catalog
        .load_table(&TableName::new(Tier::Silver, "events").unwrap())
        .await
        .unwrap();
    let snapshot = silver.metadata().current_snapshot_id().unwrap();
    let ctx = SessionContext::new();
    let frame = ctx
        .read_table(Arc::new(
            SnapshotTable::try_new(silver, snapshot, 2).unwrap(),
        ))
        .unwrap();
    rendered(&frame.collect().await.unwrap())
}

async fn events_lake() -> (Lake, Catalog) {
    let lake = Lake::sqlite().await;
    let toml = "[[sources]]\ntable = \"events\"\ntopic = \"cdc.{tenant}.{db}.events\"\nprimary-key = [\"id\"]\n";
    let config =
        PipelineConfig::from_toml(toml, Vec::<(String, String)>::new(), lake.dir.path()).unwrap();
    let catalog = Catalog::connect(&config).await.unwrap();
    catalog.init(&config).await.unwrap();
    (lake, catalog)
}

/// Goal of issue 4: memory bounded by the pool. A full run under the smallest accepted pool
/// spills to disk (DataFusion's spill metrics count files and bytes) and commits exactly
/// the rows of a run under the default pool, which are the live keys of a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silver_spills_under_a_small_pool_and_commits_the_same_rows() {
    let (_lake, catalog) = events_lake().await;
    let (events, keys) = (750_000, 250_000);
    let mut live = BTreeMap::new();
    append_events(&catalog, 0, events, keys, events * 2 / 3, &mut live).await;
    let keys_columns = vec!["id".to_string()];

    let unconstrained = run_silver(&catalog, "events", options(&keys_columns))
        .await
        .unwrap();
    assert_eq!(unconstrained.status, TransformStatus::Committed);
    assert_eq!(unconstrained.rows, live.len() as u64, "{unconstrained:?}");
    let expected = silver_events(&catalog).await;
    let live_keys: BTreeSet<(String, String)> = live
        .keys()
        .map(|(tenant, id)| (tenant.clone(), id.to_string()))
        .collect();
    let silver_keys: BTreeSet<(String, String)> = expected
        .iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect();
    assert_eq!(
        silver_keys, live_keys,
        "silver holds the replay's live keys"
    );

    let mut small = options(&keys_columns);
    small.full = true;
    small.engine.memory_limit = firn_transforms::engine::MIN_MEMORY_LIMIT;
    // Two partitions share the pool: one partition's aggregate must not starve the other's
    // spill.
    small.engine.partitions = 2;
    let report = run_silver(&catalog, "events", small).await.unwrap();
    assert_eq!(report.status, TransformStatus::Committed, "{report:?}");
    assert!(
        report.spilled.count > 0 && report.spilled.bytes > 0,
        "a {} byte pool spills: {report:?}",
        firn_transforms::engine::MIN_MEMORY_LIMIT
    );
    assert_eq!(silver_events(&catalog).await, expected);

    // Below the minimum, the run is refused before it reads anything.
    let mut tiny = options(&keys_columns);
    tiny.full = true;
    tiny.engine.memory_limit = 1024 * 1024;
    let err = run_silver(&catalog, "events", tiny).await.unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    assert!(err.to_string().contains("memory limit"), "{err}");
}

/// An incremental run whose changed tenants hold more than the configured share of the
/// previous silver rows runs full and says why; a change confined to one tenant stays
/// incremental. Both commit the rows of a full recompute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_touching_most_tenants_runs_full() {
    let (_lake, catalog) = events_lake().await;
    let (events, keys) = (40_000, 8_000);
    let mut live = BTreeMap::new();
    append_events(&catalog, 0, events, keys, u64::MAX, &mut live).await;
    let key_columns = vec!["id".to_string()];
    let mut options = SilverOptions::new(key_columns.clone());
    options.max_incremental_share = 0.5;
    let first = run_silver(&catalog, "events", options.clone())
        .await
        .unwrap();
    assert_eq!(first.mode, Some(SilverMode::Full), "{first:?}");

    // Events over all keys: every tenant changed.
    append_events(&catalog, events, 1_000, keys, u64::MAX, &mut live).await;
    let spread = run_silver(&catalog, "events", options.clone())
        .await
        .unwrap();
    assert_eq!(spread.status, TransformStatus::Committed, "{spread:?}");
    assert_eq!(spread.mode, Some(SilverMode::Full), "{spread:?}");
    let reason = spread.reason.clone().unwrap_or_default();
    assert!(
        reason.contains(&format!("{TENANTS} tenants with new events")) && reason.contains("50 %"),
        "{reason}"
    );
    assert_eq!(spread.tenants, None, "a full run replaces every tenant");
    assert_eq!(spread.rows, live.len() as u64);

    // Events of one tenant's keys only (key ≡ 3 mod TENANTS): incremental.
    let first_key = (events + 1_000..).find(|i| {
        let scrambled = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
        (scrambled % keys) % TENANTS == 3
    });
    let one = first_key.unwrap();
    append_events(&catalog, one, 1, keys, u64::MAX, &mut live).await;
    let local = run_silver(&catalog, "events", options).await.unwrap();
    assert!(
        matches!(local.mode, Some(SilverMode::Incremental { .. })),
        "{local:?}"
    );
    assert_eq!(local.tenants, Some(vec!["t3".to_string()]));
    let rows = silver_events(&catalog).await;
    let keys_now: BTreeSet<(String, String)> = rows
        .iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect();
    let live_keys: BTreeSet<(String, String)> = live
        .keys()
        .map(|(tenant, id)| (tenant.clone(), id.to_string()))
        .collect();
    assert_eq!(keys_now, live_keys);
}

/// `firn transform silver` as a process: exit 3 when silver is up to date, `--full`
/// rebuilds an up-to-date input (exit 0, mode full and the reason in the JSON report), and a
/// `--memory-limit` below the minimum is refused as bad input (exit 2) naming the option.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_rebuilds_with_full_and_refuses_a_tiny_memory_limit() {
    let (lake, catalog) = events_lake().await;
    let mut live = BTreeMap::new();
    append_events(&catalog, 0, 5_000, 1_000, u64::MAX, &mut live).await;
    let config = lake.dir.path().join("firn.toml");
    std::fs::write(
        &config,
        "[[sources]]\ntable = \"events\"\ntopic = \"cdc.{tenant}.{db}.events\"\nprimary-key = [\"id\"]\n",
    )
    .unwrap();
    let firn = |args: &[&str]| {
        let output = std::process::Command::new(firn_tests::firn_binary())
            .arg("--config")
            .arg(&config)
            .args(["--json", "transform", "silver", "events"])
            .args(args)
            .env_remove("FIRN_CONFIG")
            .env_remove("FIRN_CATALOG__URI")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let report: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        (output.status.code(), report, stderr)
    };
    let (code, report, stderr) = firn(&[]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(report[0]["rows"], live.len() as u64, "{report}");
    let (code, report, stderr) = firn(&[]);
    assert_eq!(code, Some(3), "up to date: {report} {stderr}");
    assert_eq!(report[0]["status"], "UpToDate", "{report}");

    let (code, report, stderr) = firn(&["--full"]);
    assert_eq!(code, Some(0), "--full rebuilds: {report} {stderr}");
    assert_eq!(report[0]["status"], "Committed", "{report}");
    assert_eq!(report[0]["mode"], "full", "{report}");
    assert_eq!(report[0]["rows"], live.len() as u64, "{report}");
    assert!(
        report[0]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("full rebuild was asked")),
        "{report}"
    );
    assert_eq!(report[0]["spilled"]["count"], 0, "{report}");

    let (code, _, stderr) = firn(&["--full", "--memory-limit", "1000000"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--memory-limit 1000000 is below the minimum"),
        "{stderr}"
    );
}
