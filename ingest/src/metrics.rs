//! Prometheus metrics of `firn ingest`, registered into a `prometheus_client` registry that
//! [`crate::admin`] serves. No I/O: handles are atomics updated by the ingest loop.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabel {
    pub table: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommitLabel {
    pub table: String,
    /// `ok` or `failed`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub topic: String,
    pub partition: i32,
}

fn commit_duration_histogram() -> Histogram {
    // 10 ms .. ~80 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// Every metric the ingest loop reports. Cloning shares the underlying values.
#[derive(Clone)]
pub struct IngestMetrics {
    pub records_consumed: Family<TableLabel, Counter>,
    pub records_written: Family<TableLabel, Counter>,
    pub duplicates_dropped: Family<TableLabel, Counter>,
    pub tombstones: Family<TableLabel, Counter>,
    pub dead_letters: Family<DeadLetterLabel, Counter>,
    pub commits: Family<CommitLabel, Counter>,
    pub commit_duration: Family<TableLabel, Histogram, fn() -> Histogram>,
    pub consumer_lag: Family<PartitionLabel, Gauge>,
    pub freshness_seconds: Family<TableLabel, Gauge<f64, AtomicU64>>,
    pub newest_committed_source_ts: Family<TableLabel, Gauge<f64, AtomicU64>>,
    pub last_snapshot_id: Family<TableLabel, Gauge>,
    pub assigned_partitions: Gauge,
    pub rebalances: Counter,
}

impl IngestMetrics {
    /// Creates the metrics and registers them under the `firn_ingest` prefix.
    pub fn register(registry: &mut Registry) -> IngestMetrics {
        let metrics = IngestMetrics {
            records_consumed: Family::default(),
            records_written: Family::default(),
            duplicates_dropped: Family::default(),
            tombstones: Family::default(),
            dead_letters: Family::default(),
            commits: Family::default(),
            commit_duration: Family::new_with_constructor(commit_duration_histogram),
            consumer_lag: Family::default(),
            freshness_seconds: Family::default(),
            newest_committed_source_ts: Family::default(),
            last_snapshot_id: Family::default(),
            assigned_partitions: Gauge::default(),
            rebalances: Counter::default(),
        };
        let registry = registry.sub_registry_with_prefix("firn_ingest");
        registry.register(
            "records_consumed",
            "Kafka records read, per bronze table",
            metrics.records_consumed.clone(),
        );
        registry.register(
            "records_written",
            "Rows committed to bronze, per table",
            metrics.records_written.clone(),
        );
        registry.register(
            "duplicates_dropped",
            "Debezium re-emissions dropped by the source-position dedup, per table",
            metrics.duplicates_dropped.clone(),
        );
        registry.register(
            "tombstones",
            "Kafka tombstones (null values) skipped, per table",
            metrics.tombstones.clone(),
        );
        registry.register(
            "dead_letters",
            "Records committed to the dead-letter table, per table and error kind",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "commits",
            "Bronze commit attempts per table, by outcome",
            metrics.commits.clone(),
        );
        registry.register(
            "commit_duration_seconds",
            "Time to write the Parquet files and commit one bronze snapshot",
            metrics.commit_duration.clone(),
        );
        registry.register(
            "consumer_lag",
            "Records between the consumer position and the partition end (librdkafka statistics)",
            metrics.consumer_lag.clone(),
        );
        registry.register(
            "freshness_seconds",
            "Now minus the newest source timestamp committed to the bronze table",
            metrics.freshness_seconds.clone(),
        );
        registry.register(
            "newest_committed_source_timestamp_seconds",
            "Newest Debezium source timestamp committed to the bronze table (epoch seconds)",
            metrics.newest_committed_source_ts.clone(),
        );
        registry.register(
            "last_snapshot_id",
            "Id of the last bronze snapshot this process committed",
            metrics.last_snapshot_id.clone(),
        );
        registry.register(
            "assigned_partitions",
            "Kafka partitions currently assigned to this process",
            metrics.assigned_partitions.clone(),
        );
        registry.register(
            "rebalances",
            "Consumer-group assignments and revocations seen",
            metrics.rebalances.clone(),
        );
        metrics
    }

    /// Metrics registered nowhere (for library callers that serve no admin endpoint).
    pub fn unregistered() -> IngestMetrics {
        IngestMetrics::register(&mut Registry::default())
    }

    pub fn table(table: &str) -> TableLabel {
        TableLabel {
            table: table.to_string(),
        }
    }

    /// Refreshes every table's freshness from its newest committed source timestamp.
    pub fn refresh_freshness(&self, now_seconds: f64, tables: &[String]) {
        for table in tables {
            let label = IngestMetrics::table(table);
            let newest = self.newest_committed_source_ts.get_or_create(&label).get();
            if newest > 0.0 {
                self.freshness_seconds
                    .get_or_create(&label)
                    .set((now_seconds - newest).max(0.0));
            }
        }
    }
}
