//! The relay step of `firn demo` when no StarRocks is configured: starts the project's
//! Stream Load test server (`starrocks-test-server`, a binary of the firn-tests crate built
//! into the same directory as `firn`) as a child process, creates the hot table through its
//! control API, runs the relay until caught up and puts the hot table next to the batch
//! `gold.<model>`. Does I/O (a child process, HTTP, Kafka, the catalog).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::AtomicBool;

use firn_catalog::config::{PipelineConfig, RelayConfig};
use firn_catalog::{Catalog, TableName, Tier};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::relay::{RelayError, RelayMetrics, RelayOptions};

/// Name of the test server binary.
pub const BINARY: &str = "starrocks-test-server";
/// The hot database the demo loads.
pub const DEMO_DATABASE: &str = "firn_hot";

/// `firn_hot.order_facts` as `sql/starrocks/01_hot_tables.sql` creates it, in the test
/// server's schema format.
fn order_facts_schema() -> Value {
    let column = |name: &str, ty: &str, nullable: bool| json!({"name": name, "type": ty, "nullable": nullable});
    json!({
        "db": DEMO_DATABASE,
        "table": "order_facts",
        "columns": [
            column("tenant", "varchar", false),
            column("order_id", "bigint", false),
            column("customer_id", "bigint", true),
            column("status", "varchar", true),
            column("ordered_at", "datetime", true),
            column("order_date", "date", true),
            column("item_count", "bigint", true),
            column("units", "bigint", true),
            column("items_total", "decimal", true),
            column("order_total", "decimal", true),
            column("source_version", "bigint", true),
            column("relay_version", "bigint", false),
            column("relay_label", "varchar", true),
        ],
        "key": ["tenant", "order_id"],
    })
}

/// The hot table beside the batch gold table, as the demo reports it.
#[derive(Debug, Clone, Serialize)]
pub struct HotDemo {
    pub fe_url: String,
    pub table: String,
    pub loads: u64,
    pub hot_rows: u64,
    pub gold_rows: u64,
    /// Whether the hot table equals gold on gold's columns, row for row.
    pub equal: bool,
    /// The first rows of both, side by side.
    pub sample: String,
}

/// A running test server; killed when dropped.
struct ServerProcess {
    _child: Child,
    fe_url: String,
}

fn binary_path() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    // `firn` lives in target/<profile>; test binaries in target/<profile>/deps.
    [dir.join(BINARY), dir.parent()?.join(BINARY)]
        .into_iter()
        .find(|path| path.is_file())
}

impl ServerProcess {
    async fn spawn(path: &PathBuf) -> Result<ServerProcess, RelayError> {
        let io = |err: std::io::Error| RelayError::Task(format!("{}: {err}", path.display()));
        let mut child = Command::new(path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(io)?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| RelayError::Task("test server has no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        while let Some(line) = lines.next_line().await.map_err(io)? {
            if let Some(url) = line.strip_prefix("FE ") {
                // Keep reading what the server prints: closing the pipe early would make
                // its next write fail.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return Ok(ServerProcess {
                    _child: child,
                    fe_url: url.trim().to_string(),
                });
            }
        }
        Err(RelayError::Task(format!(
            "{} exited before printing its FE address",
            path.display()
        )))
    }
}

fn http_error(err: reqwest::Error) -> RelayError {
    RelayError::Task(format!("test server control API: {err}"))
}

/// Runs the demo's relay step; `None` (with a note) when the test server binary is absent.
pub async fn demo_relay(
    catalog: &Catalog,
    config: &PipelineConfig,
    brokers: &str,
    model_sql: BTreeMap<String, String>,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<HotDemo>, RelayError> {
    let Some(path) = binary_path() else {
        progress(&format!(
            "hot path skipped: no {BINARY} next to this executable (build it with \
             `cargo build --workspace --all-targets`, as `make demo` does)"
        ));
        return Ok(None);
    };
    let server = ServerProcess::spawn(&path).await?;
    progress(&format!(
        "Stream Load test server (StarRocks stand-in) at {}",
        server.fe_url
    ));
    let http = reqwest::Client::new();
    http.post(format!("{}/__fake/tables", server.fe_url))
        .json(&order_facts_schema())
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(http_error)?;
    let target: RelayConfig = PipelineConfig::from_toml(
        &format!(
            "[relay]\nfe-urls = [\"{}\"]\ndatabase = \"{DEMO_DATABASE}\"\ninterval = \"200ms\"\n",
            server.fe_url
        ),
        Vec::new(),
        &config.base_dir,
    )?
    .relay
    .ok_or_else(|| RelayError::Config("the demo's [relay] section did not parse".into()))?;
    let options = RelayOptions {
        brokers: brokers.to_string(),
        target,
        stop_when_caught_up: true,
        model_sql,
        metrics: RelayMetrics::unregistered(),
        health: None,
    };
    let report = crate::relay::run(config, &options, &AtomicBool::new(false)).await?;
    let loads: u64 = report.tables.values().map(|t| t.loads).sum();
    progress(&format!(
        "relay: {} records → {loads} Stream Loads into {DEMO_DATABASE}.order_facts",
        report.records_consumed
    ));
    let hot: Vec<Map<String, Value>> = http
        .get(format!(
            "{}/__fake/tables/{DEMO_DATABASE}/order_facts/rows",
            server.fe_url
        ))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(http_error)?
        .json()
        .await
        .map_err(http_error)?;
    let gold =
        crate::relay::iceberg_rows(catalog, &TableName::new(Tier::Gold, "order_facts")?).await?;
    Ok(Some(HotDemo {
        fe_url: server.fe_url.clone(),
        table: format!("{DEMO_DATABASE}.order_facts"),
        loads,
        hot_rows: hot.len() as u64,
        gold_rows: gold.len() as u64,
        equal: same_rows(&hot, &gold),
        sample: side_by_side(&hot, &gold, 5),
    }))
}

type Key = (String, i64);

fn key(row: &Map<String, Value>) -> Key {
    (
        row.get("tenant")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        row.get("order_id")
            .and_then(Value::as_i64)
            .unwrap_or_default(),
    )
}

/// A value as comparable text: numbers and numeric text (decimals travel as text) to four
/// decimals, other text as is.
fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "null".into(),
        Some(Value::Number(n)) => format!("{:.4}", n.as_f64().unwrap_or_default()),
        Some(Value::String(s)) => s
            .parse::<f64>()
            .map(|f| format!("{f:.4}"))
            .unwrap_or_else(|_| s.clone()),
        Some(other) => other.to_string(),
    }
}

/// Whether `hot` holds exactly `gold`'s rows on gold's columns.
pub fn same_rows(hot: &[Map<String, Value>], gold: &[Map<String, Value>]) -> bool {
    let hot: BTreeMap<Key, &Map<String, Value>> = hot.iter().map(|r| (key(r), r)).collect();
    hot.len() == gold.len()
        && gold.iter().all(|g| {
            hot.get(&key(g))
                .is_some_and(|h| g.iter().all(|(c, v)| text(h.get(c)) == text(Some(v))))
        })
}

fn side_by_side(hot: &[Map<String, Value>], gold: &[Map<String, Value>], limit: usize) -> String {
    let columns = ["item_count", "items_total", "order_total", "status"];
    let gold: BTreeMap<Key, &Map<String, Value>> = gold.iter().map(|r| (key(r), r)).collect();
    let mut hot_sorted: Vec<&Map<String, Value>> = hot.iter().collect();
    hot_sorted.sort_by_key(|r| key(r));
    let mut out = format!(
        "{:<10} {:>8} | {:>30} | {:>30}\n",
        "tenant", "order_id", "hot (StarRocks)", "gold (Iceberg)"
    );
    let show = |row: Option<&&Map<String, Value>>| match row {
        Some(row) => columns
            .iter()
            .map(|c| match row.get(*c) {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => "-".into(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        None => "(missing)".into(),
    };
    for row in hot_sorted.iter().take(limit) {
        let (tenant, id) = key(row);
        out.push_str(&format!(
            "{tenant:<10} {id:>8} | {:>30} | {:>30}\n",
            show(Some(row)),
            show(gold.get(&(tenant.clone(), id)))
        ));
    }
    out.push_str("(item_count items_total order_total status)");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_compare_on_gold_columns_with_decimals_as_numbers() {
        let hot = json!({"tenant": "a", "order_id": 1, "total": 12.5, "relay_version": 9});
        let gold = json!({"tenant": "a", "order_id": 1, "total": "12.50"});
        let as_map = |v: Value| v.as_object().unwrap().clone();
        assert!(same_rows(&[as_map(hot.clone())], &[as_map(gold.clone())]));
        let other = json!({"tenant": "a", "order_id": 1, "total": "12.51"});
        assert!(!same_rows(&[as_map(hot)], &[as_map(other)]));
    }
}
