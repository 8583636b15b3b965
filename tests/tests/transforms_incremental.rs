//! Incremental silver end to end, over several ingest cycles: a generated CDC stream
//! (two partitions per topic, connector restarts that re-emit events, deletes, re-inserted
//! keys) is produced to the mock cluster in three parts; after each part is ingested, silver
//! runs incrementally, and its rows must equal a full recompute over the same bronze
//! snapshot. A tenant-restricted run and a `full` rebuild take part too. At the end,
//! pyiceberg's scan of every silver table equals the generator's expected final state.
//!
//! Also here: the split scan has more than one partition for a multi-file table and reads
//! the same rows as iceberg-datafusion's own scan, and a run under a tiny memory pool
//! (spilling) commits the same rows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::{DataFrame, SessionContext, ident};
use firn_catalog::config::PipelineConfig;
use firn_catalog::{Catalog, CommitRequest, Operation, TableName, Tier};
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

fn options(keys: &[String]) -> SilverOptions {
    let mut options = SilverOptions::new(keys.to_vec());
    options.engine.partitions = 2;
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
        // Within a small memory pool (sorts spill beyond it), the rows do not change. 4 MiB
        // was too small: one sort batch did not fit beside the merge reservation (seen in
        // CI), so a pool this small is refused at run time rather than spilling.
        full.engine = EngineOptions {
            memory_limit: 16 * 1024 * 1024,
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
