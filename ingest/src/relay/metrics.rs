//! Prometheus metrics of `firn relay`, registered into the registry [`crate::admin`]
//! serves. No I/O: handles are atomics updated by the relay loop.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
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

/// Upper bounds (s) of the event-to-visible buckets: 50 ms steps up to 3 s, where a
/// 1-second interval puts its percentiles (a p99 target of 1.5 s needs that resolution),
/// then coarser up to 10 minutes for a relay that fell behind.
fn latency_buckets() -> impl Iterator<Item = f64> {
    (1..=60).map(|step| f64::from(step) * 0.05).chain([
        4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ])
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
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
    /// 1 while this process is the active relay (consumer-group mode elects one).
    pub active: Gauge,
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
            active: Gauge::default(),
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
        registry.register(
            "active",
            "1 while this process is the active relay, 0 while it stands by",
            metrics.active.clone(),
        );
        metrics
    }

    /// Metrics registered nowhere (library callers without an admin endpoint).
    pub fn unregistered() -> RelayMetrics {
        RelayMetrics::register(&mut Registry::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_step_by_50_ms_to_3_s_then_widen() {
        let buckets: Vec<f64> = latency_buckets().collect();
        assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{buckets:?}");
        assert!((buckets[0] - 0.05).abs() < 1e-9);
        // 1.5 s, the p99 target, is a bucket bound.
        assert!(buckets.iter().any(|b| (b - 1.5).abs() < 1e-9));
        assert!((buckets[59] - 3.0).abs() < 1e-9);
        assert_eq!(buckets.last(), Some(&600.0));
    }
}
