//! Silver end to end: generated CDC events go through the mock Kafka cluster into bronze,
//! `run_silver` computes every silver table, and pyiceberg's scan of `silver.<table>` must
//! equal the generator's expected final state for every table and tenant, value by value.
//! A second run commits nothing, and the silver snapshot records its bronze input.

use std::collections::BTreeMap;

use firn_catalog::config::PipelineConfig;
use firn_catalog::history;
use firn_catalog::{Catalog, CommitRequest, Operation, TableName, Tier};
use firn_ingest::demo::DEMO_CONFIG;
use firn_ingest::generator::{GeneratorConfig, Table};
use firn_ingest::writer::{IngestOptions, run};
use firn_tests::{Lake, generated_source};
use firn_transforms::{SilverOptions, TransformStatus, run_silver};
use serde_json::Value;

/// Timestamps are compared as instants: the generator writes `...T00:00:00.123000Z`,
/// pyiceberg `...T00:00:00.123000` (timestamp) or `...+00:00` (timestamptz).
fn normalize(value: &Value) -> Value {
    let Value::String(text) = value else {
        return value.clone();
    };
    if let Ok(instant) = chrono::DateTime::parse_from_rfc3339(text) {
        return Value::from(format!("instant:{}", instant.timestamp_micros()));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Value::from(format!("instant:{}", naive.and_utc().timestamp_micros()));
        }
    }
    value.clone()
}

type KeyedRows = BTreeMap<(String, String), BTreeMap<String, Value>>;

fn key_of(tenant: &str, row: &serde_json::Map<String, Value>, keys: &[&str]) -> (String, String) {
    let key: Vec<String> = keys.iter().map(|k| row[*k].to_string()).collect();
    (tenant.to_string(), key.join("|"))
}

async fn silver_matches_the_generated_final_state(lake: Lake) {
    let mut env = Vec::new();
    if lake.is_postgres() {
        env.push(("FIRN_CATALOG__URI".to_string(), lake.reader_uri()));
    }
    let config = PipelineConfig::from_toml(DEMO_CONFIG, env, lake.dir.path()).unwrap();
    let catalog = Catalog::connect(&config).await.unwrap();
    let generator_config = GeneratorConfig {
        restart_duplicates: 0,
        orders: 60,
        customers: 30,
        products: 15,
        ..GeneratorConfig::default()
    };
    let source = generated_source(&generator_config, 2).await;
    let (brokers, generator) = (&source.brokers, &source.generator);

    // Before anything is ingested, bronze has no snapshot and silver has nothing to do.
    catalog.init(&config).await.unwrap();
    let early = run_silver(&catalog, "orders", SilverOptions::new(vec!["id".into()]))
        .await
        .unwrap();
    assert_eq!(early.status, TransformStatus::NoInput, "{early:?}");

    let options = IngestOptions {
        brokers: brokers.clone(),
        writer_id: "silver-test".into(),
        stop_when_caught_up: true,
    };
    run(&catalog, &config, &options).await.unwrap();
    let expected = generator.expected();
    let tenants: Vec<String> = expected.tenants().map(str::to_string).collect();

    for table in Table::ALL {
        let name = table.name();
        let keys: Vec<String> = config
            .sources
            .iter()
            .find(|s| s.table == name)
            .and_then(|s| s.primary_key.clone())
            .unwrap_or_else(|| table.key_columns().iter().map(|k| k.to_string()).collect());
        let bronze = catalog
            .load_table(&TableName::new(Tier::Bronze, name).unwrap())
            .await
            .unwrap();
        let input = bronze.metadata().current_snapshot_id().unwrap();

        let report = run_silver(&catalog, name, SilverOptions::new(keys.clone()))
            .await
            .unwrap();
        assert_eq!(report.status, TransformStatus::Committed, "{report:?}");
        assert_eq!(report.input_snapshot_id, Some(input));
        let silver_snapshot = report.snapshot_id.unwrap();

        // Lineage: the silver snapshot records the bronze snapshot it was computed from.
        let silver_name = TableName::new(Tier::Silver, name).unwrap();
        let silver = catalog.load_table(&silver_name).await.unwrap();
        let current = silver.metadata().current_snapshot().unwrap();
        assert_eq!(current.snapshot_id(), silver_snapshot);
        assert_eq!(
            history::input_snapshots(&current.summary().additional_properties),
            BTreeMap::from([(format!("bronze.{name}"), input)])
        );

        // pyiceberg reads exactly the expected rows, value by value.
        let scan = lake.pyiceberg(&["scan", &format!("silver.{name}"), "--rows"]);
        let columns: Vec<&str> = scan["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(columns[0], "tenant");
        assert_eq!(
            &columns[columns.len() - 5..],
            firn_transforms::silver::SILVER_LINEAGE_COLUMNS
        );
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut actual = KeyedRows::new();
        for row in scan["rows"].as_array().unwrap() {
            let row = row.as_object().unwrap();
            let tenant = row["tenant"].as_str().unwrap();
            assert!(
                row["_firn_source_pos"].is_string(),
                "lineage column set: {row:?}"
            );
            let values = row
                .iter()
                .filter(|(column, _)| *column != "tenant" && !column.starts_with("_firn_"))
                .map(|(column, value)| (column.clone(), normalize(value)))
                .collect();
            let previous = actual.insert(key_of(tenant, row, &key_refs), values);
            assert!(previous.is_none(), "one silver row per key in {name}");
        }
        let mut wanted = KeyedRows::new();
        for tenant in &tenants {
            for row in expected.rows(table, tenant) {
                let object = row.row.as_object().unwrap();
                let values = object
                    .iter()
                    .map(|(column, value)| (column.clone(), normalize(value)))
                    .collect();
                wanted.insert(key_of(tenant, object, &key_refs), values);
            }
            let live = actual.keys().filter(|(t, _)| t == tenant).count();
            assert_eq!(
                live,
                expected.row_count(table, tenant),
                "{name}/{tenant} key count"
            );
        }
        assert!(!wanted.is_empty(), "{name}: the generator produced rows");
        let missing: Vec<_> = wanted.keys().filter(|k| !actual.contains_key(k)).collect();
        let extra: Vec<_> = actual.keys().filter(|k| !wanted.contains_key(k)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{name}: missing {missing:?}, extra {extra:?}"
        );
        for (key, row) in &wanted {
            assert_eq!(&actual[key], row, "{name} {key:?}");
        }

        // The same input again commits nothing.
        let again = run_silver(&catalog, name, SilverOptions::new(keys.clone()))
            .await
            .unwrap();
        assert_eq!(again.status, TransformStatus::UpToDate, "{again:?}");
        assert_eq!(again.snapshot_id, Some(silver_snapshot));
        let after = catalog.load_table(&silver_name).await.unwrap();
        assert_eq!(
            after.metadata().snapshots().count(),
            silver.metadata().snapshots().count()
        );

        // Pinning an unknown bronze snapshot is refused as bad input.
        let mut pinned = SilverOptions::new(keys.clone());
        pinned.as_of = Some(input.wrapping_add(1));
        let err = run_silver(&catalog, name, pinned).await.unwrap_err();
        assert!(err.is_bad_input(), "{err}");
    }

    // A new bronze snapshot is a new input; recomputing the older one afterwards (as after a
    // rollback of bronze) commits again instead of matching the first run's commit.
    let orders = TableName::new(Tier::Bronze, "orders").unwrap();
    let first_input = catalog
        .load_table(&orders)
        .await
        .unwrap()
        .metadata()
        .current_snapshot_id()
        .unwrap();
    let marker = catalog
        .commit(
            &orders,
            CommitRequest::new(Operation::Append { files: Vec::new() })
                .with_property("firn.test-marker", "1"),
        )
        .await
        .unwrap();
    let second_input = marker.snapshot_id.unwrap();
    let keys = vec!["id".to_string()];
    let count = |lake: &Lake| lake.pyiceberg(&["scan", "silver.orders"])["row_count"].clone();
    let rows_before = count(&lake);
    for (as_of, input) in [(None, second_input), (Some(first_input), first_input)] {
        let mut options = SilverOptions::new(keys.clone());
        options.as_of = as_of;
        let report = run_silver(&catalog, "orders", options).await.unwrap();
        assert_eq!(report.status, TransformStatus::Committed, "{report:?}");
        assert_eq!(report.input_snapshot_id, Some(input));
        let silver = catalog
            .load_table(&TableName::new(Tier::Silver, "orders").unwrap())
            .await
            .unwrap();
        let summary = &silver.metadata().current_snapshot().unwrap().summary();
        assert_eq!(
            history::input_snapshots(&summary.additional_properties),
            BTreeMap::from([("bronze.orders".to_string(), input)])
        );
        assert_eq!(
            count(&lake),
            rows_before,
            "same bronze rows, same silver rows"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silver_equals_the_generated_final_state_on_sqlite() {
    silver_matches_the_generated_final_state(Lake::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silver_equals_the_generated_final_state_on_postgres() {
    silver_matches_the_generated_final_state(Lake::postgres().await).await;
}
