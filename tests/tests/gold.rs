//! Gold end to end: generated CDC events go through the mock Kafka cluster into bronze,
//! silver is computed, then every configured gold model (`sql/gold/*.sql`) runs in
//! dependency order. pyiceberg's scan of `gold.order_facts` must hold exactly one row per
//! live order with its items' totals as computed here from the generator's expected state;
//! `gold.daily_revenue` must agree with `gold.order_facts`; every gold snapshot records the
//! snapshots it was computed from, and a second run commits nothing.

use std::collections::BTreeMap;
use std::path::Path;

use firn_catalog::config::{GoldModelConfig, PipelineConfig};
use firn_catalog::history;
use firn_catalog::{Catalog, TableName, Tier};
use firn_ingest::demo::DEMO_CONFIG;
use firn_ingest::generator::{GeneratorConfig, Table};
use firn_ingest::writer::{IngestOptions, run};
use firn_tests::{Lake, generated_source};
use firn_transforms::{
    GoldModel, GoldOptions, SilverOptions, TransformStatus, run_all_gold, run_gold, run_silver,
};
use serde_json::Value;

/// A decimal rendered as a string with scale 2 ("12.50"), or a JSON number, in cents.
fn cents(value: &Value) -> i128 {
    let text = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, text),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let fraction = format!("{fraction:0<2}");
    assert_eq!(fraction.len(), 2, "scale 2: {value}");
    let amount = whole.parse::<i128>().unwrap() * 100 + fraction.parse::<i128>().unwrap();
    if negative { -amount } else { amount }
}

fn int(value: &Value) -> i64 {
    value
        .as_i64()
        .unwrap_or_else(|| panic!("integer: {value:?}"))
}

fn rows(scan: &Value) -> Vec<serde_json::Map<String, Value>> {
    scan["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_object().unwrap().clone())
        .collect()
}

fn copy_gold_sql(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/gold");
    let to = to.join("sql/gold");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

async fn snapshot_count(catalog: &Catalog, table: &str) -> usize {
    catalog
        .load_table(&TableName::parse(table).unwrap())
        .await
        .unwrap()
        .metadata()
        .snapshots()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_models_agree_with_the_generated_state() {
    let lake = Lake::sqlite().await;
    copy_gold_sql(lake.dir.path());
    let config =
        PipelineConfig::from_toml(DEMO_CONFIG, Vec::<(String, String)>::new(), lake.dir.path())
            .unwrap();
    assert_eq!(
        config.gold.len(),
        3,
        "the example config declares three models"
    );
    let catalog = Catalog::connect(&config).await.unwrap();
    let generator_config = GeneratorConfig {
        restart_duplicates: 0,
        orders: 60,
        customers: 30,
        products: 15,
        ..GeneratorConfig::default()
    };
    let source = generated_source(&generator_config, 2).await;
    catalog.init(&config).await.unwrap();

    // Before silver exists, gold has nothing to compute from.
    for report in run_all_gold(&catalog, &config).await.unwrap() {
        assert_eq!(report.status, TransformStatus::NoInput, "{report:?}");
        assert!(report.missing_input.is_some());
    }

    let options = IngestOptions {
        brokers: source.brokers.clone(),
        writer_id: "gold-test".into(),
        stop_when_caught_up: true,
    };
    run(&catalog, &config, &options).await.unwrap();
    for table in Table::ALL {
        let keys: Vec<String> = config
            .sources
            .iter()
            .find(|s| s.table == table.name())
            .and_then(|s| s.primary_key.clone())
            .unwrap_or_else(|| table.key_columns().iter().map(|k| k.to_string()).collect());
        let report = run_silver(&catalog, table.name(), SilverOptions::new(keys))
            .await
            .unwrap();
        assert_eq!(report.status, TransformStatus::Committed, "{report:?}");
    }
    let silver_snapshot = |table: &'static str| {
        let catalog = &catalog;
        async move {
            catalog
                .load_table(&TableName::new(Tier::Silver, table).unwrap())
                .await
                .unwrap()
                .metadata()
                .current_snapshot_id()
                .unwrap()
        }
    };
    let orders_input = silver_snapshot("orders").await;
    let items_input = silver_snapshot("order_items").await;

    // All models, dependencies first.
    let reports = run_all_gold(&catalog, &config).await.unwrap();
    let order: Vec<&str> = reports.iter().map(|r| r.table.as_str()).collect();
    assert_eq!(order[0], "gold.order_facts", "{order:?}");
    assert_eq!(order.len(), 3);
    for report in &reports {
        assert_eq!(report.status, TransformStatus::Committed, "{report:?}");
    }
    let facts_snapshot = reports[0].snapshot_id.unwrap();

    // Lineage: each gold snapshot lists the snapshots it read.
    let lineage = |table: &'static str| {
        let catalog = &catalog;
        async move {
            let gold = catalog
                .load_table(&TableName::parse(table).unwrap())
                .await
                .unwrap();
            let current = gold.metadata().current_snapshot().unwrap();
            history::input_snapshots(&current.summary().additional_properties)
        }
    };
    assert_eq!(
        lineage("gold.order_facts").await,
        BTreeMap::from([
            ("silver.order_items".to_string(), items_input),
            ("silver.orders".to_string(), orders_input),
        ])
    );
    for table in ["gold.daily_revenue", "gold.customer_ltv"] {
        assert_eq!(
            lineage(table).await,
            BTreeMap::from([("gold.order_facts".to_string(), facts_snapshot)]),
            "{table}"
        );
    }

    // order_facts: one row per live order, totals as computed from the expected state.
    let expected = source.generator.expected();
    let facts = rows(&lake.pyiceberg(&["scan", "gold.order_facts", "--rows"]));
    let mut actual: BTreeMap<(String, i64), serde_json::Map<String, Value>> = BTreeMap::new();
    for row in &facts {
        let key = (
            row["tenant"].as_str().unwrap().to_string(),
            int(&row["order_id"]),
        );
        assert!(
            actual.insert(key, row.clone()).is_none(),
            "one row per order"
        );
    }
    let mut live_orders = 0;
    for tenant in expected.tenants() {
        let mut items: BTreeMap<i64, (i64, i64, i128)> = BTreeMap::new();
        for item in expected.rows(Table::OrderItems, tenant) {
            let quantity = int(&item.row["quantity"]);
            let entry = items.entry(int(&item.row["order_id"])).or_default();
            entry.0 += 1;
            entry.1 += quantity;
            entry.2 += i128::from(quantity) * cents(&item.row["unit_price"]);
        }
        let orders = expected.rows(Table::Orders, tenant);
        assert_eq!(
            actual.keys().filter(|(t, _)| t == tenant).count(),
            orders.len(),
            "{tenant}: one order_facts row per live order"
        );
        for order in orders {
            let id = int(&order.row["id"]);
            let row = &actual[&(tenant.to_string(), id)];
            let (count, units, total) = items.get(&id).copied().unwrap_or_default();
            assert_eq!(int(&row["item_count"]), count, "{tenant}/{id} item_count");
            assert_eq!(int(&row["units"]), units, "{tenant}/{id} units");
            assert_eq!(
                cents(&row["items_total"]),
                total,
                "{tenant}/{id} items_total"
            );
            assert_eq!(
                cents(&row["order_total"]),
                cents(&order.row["total"]),
                "{tenant}/{id} order_total"
            );
            assert_eq!(row["status"], order.row["status"], "{tenant}/{id} status");
            assert_eq!(
                int(&row["customer_id"]),
                int(&order.row["customer_id"]),
                "{tenant}/{id}"
            );
            assert!(int(&row["source_version"]) > 0, "{row:?}");
            let ordered_at = row["ordered_at"].as_str().unwrap();
            assert_eq!(
                row["order_date"].as_str().unwrap(),
                &ordered_at[..10],
                "{row:?}"
            );
            live_orders += 1;
        }
    }
    assert!(live_orders > 0, "the generator produced orders");

    // daily_revenue agrees with order_facts.
    let mut wanted: BTreeMap<(String, String), (i64, i128)> = BTreeMap::new();
    for row in &facts {
        let key = (
            row["tenant"].as_str().unwrap().to_string(),
            row["order_date"].as_str().unwrap().to_string(),
        );
        let entry = wanted.entry(key).or_default();
        entry.0 += 1;
        if row["status"] != "cancelled" {
            entry.1 += cents(&row["order_total"]);
        }
    }
    let mut daily = BTreeMap::new();
    for row in rows(&lake.pyiceberg(&["scan", "gold.daily_revenue", "--rows"])) {
        let key = (
            row["tenant"].as_str().unwrap().to_string(),
            row["order_date"].as_str().unwrap().to_string(),
        );
        let value = (int(&row["orders"]), cents(&row["revenue"]));
        assert!(daily.insert(key, value).is_none(), "one row per day");
    }
    assert_eq!(daily, wanted);

    // customer_ltv: one row per customer with orders, order counts add up.
    let ltv = rows(&lake.pyiceberg(&["scan", "gold.customer_ltv", "--rows"]));
    let ltv_orders: i64 = ltv.iter().map(|row| int(&row["orders"])).sum();
    assert_eq!(ltv_orders, i64::try_from(facts.len()).unwrap());

    // The same inputs again commit nothing.
    let counts_before = [
        snapshot_count(&catalog, "gold.order_facts").await,
        snapshot_count(&catalog, "gold.daily_revenue").await,
        snapshot_count(&catalog, "gold.customer_ltv").await,
    ];
    for (again, first) in run_all_gold(&catalog, &config)
        .await
        .unwrap()
        .iter()
        .zip(&reports)
    {
        assert_eq!(again.status, TransformStatus::UpToDate, "{again:?}");
        assert_eq!(again.snapshot_id, first.snapshot_id);
    }
    let counts_after = [
        snapshot_count(&catalog, "gold.order_facts").await,
        snapshot_count(&catalog, "gold.daily_revenue").await,
        snapshot_count(&catalog, "gold.customer_ltv").await,
    ];
    assert_eq!(counts_before, counts_after);

    // A model whose declared key is not unique is refused, naming the model and a key.
    let bad = GoldModel::new(
        &GoldModelConfig {
            name: "tenant_orders".into(),
            sql: None,
            key: vec!["tenant".into()],
            partition_by: vec!["tenant".into()],
            relay: false,
            relay_keys: Default::default(),
        },
        "SELECT tenant, id FROM silver.orders".into(),
    )
    .unwrap();
    let err = run_gold(&catalog, &bad, &GoldOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("tenant_orders") && text.contains("tenant="),
        "{text}"
    );
    assert!(
        catalog
            .try_load_table(&TableName::new(Tier::Gold, "tenant_orders").unwrap())
            .await
            .unwrap()
            .is_none(),
        "nothing is created for a refused model"
    );
}
