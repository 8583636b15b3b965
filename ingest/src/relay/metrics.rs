//! Prometheus metrics of `firn relay`, registered into the registry [`crate::admin`]
//! serves. No I/O: handles are atomics updated by the relay loop.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The hot table a value belongs to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    pub table: String,
}

impl TableLabel {
    pub fn new(table: &str) -> TableLabel {
        TableLabel {
            table: table.to_string(),
        }
    }
}

fn latency_histogram() -> Histogram {
    // 10 ms .. ~160 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 15))
}

/// Every metric the relay reports, per hot table. Cloning shares the values.
#[derive(Clone)]
pub struct RelayMetrics {
    pub loads: Family<TableLabel, Counter>,
    pub rows: Family<TableLabel, Counter>,
    pub bytes: Family<TableLabel, Counter>,
    pub retries: Family<TableLabel, Counter>,
    pub label_conflicts: Family<TableLabel, Counter>,
    pub dead_letters: Family<TableLabel, Counter>,
    pub event_to_visible: Family<TableLabel, Histogram, fn() -> Histogram>,
    pub lag: Family<TableLabel, Gauge>,
    pub paused: Gauge,
}

impl RelayMetrics {
    /// Creates the metrics and registers them under the `firn_relay` prefix.
    pub fn register(registry: &mut Registry) -> RelayMetrics {
        let metrics = RelayMetrics {
            loads: Family::default(),
            rows: Family::default(),
            bytes: Family::default(),
            retries: Family::default(),
            label_conflicts: Family::default(),
            dead_letters: Family::default(),
            event_to_visible: Family::new_with_constructor(latency_histogram),
            lag: Family::default(),
            paused: Gauge::default(),
        };
        let registry = registry.sub_registry_with_prefix("firn_relay");
        registry.register(
            "loads",
            "Stream Loads acknowledged, per hot table",
            metrics.loads.clone(),
        );
        registry.register(
            "rows",
            "Rows (upserts and deletes) acknowledged, per hot table",
            metrics.rows.clone(),
        );
        registry.register(
            "bytes",
            "Body bytes acknowledged, per hot table",
            metrics.bytes.clone(),
        );
        registry.register(
            "retries",
            "Stream Load sends beyond the first, per hot table",
            metrics.retries.clone(),
        );
        registry.register(
            "label_conflicts",
            "Label Already Exists answers resolved by polling the label, per hot table",
            metrics.label_conflicts.clone(),
        );
        registry.register(
            "dead_letters",
            "Rows StarRocks refused, isolated by bisection, per hot table",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "event_to_visible_seconds",
            "Kafka timestamp of a change to its load being acknowledged (visible)",
            metrics.event_to_visible.clone(),
        );
        registry.register(
            "lag",
            "Kafka records after the last acknowledged load, per hot table",
            metrics.lag.clone(),
        );
        registry.register(
            "paused",
            "1 while the consumer is paused by backpressure",
            metrics.paused.clone(),
        );
        metrics
    }

    /// Metrics registered nowhere (library callers without an admin endpoint).
    pub fn unregistered() -> RelayMetrics {
        RelayMetrics::register(&mut Registry::default())
    }
}
