//! Batching policy of the relay: which Kafka offsets and gold keys the next load of a hot
//! table covers, when it is cut, and when the consumer must pause. Pure: the caller passes
//! the time in.
//!
//! - A batch is cut when it has waited `interval` (StarRocks wants about one load per table
//!   per second: every load is a new version of every tablet it touches), or when its
//!   estimated body reaches `max-batch-bytes`, or its rows `max-batch-rows`; earlier when
//!   the whole relay is over its memory budget (the largest batch goes first).
//! - At most one load per table is in flight, so a table's loads apply in order.
//! - When the memory held by open batches plus loads in flight reaches twice the budget, or
//!   a table's next batch is full while its previous load is still in flight, the consumer
//!   pauses; it resumes below the budget (hysteresis), so a failing StarRocks stops
//!   consumption instead of growing memory.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

pub use firn_catalog::relay_ledger::OffsetRange;

use crate::relay::state::GoldKey;

/// Limits of the policy (from `[relay]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub interval: Duration,
    pub max_rows: u64,
    pub max_bytes: u64,
    /// Memory budget over all tables; the consumer pauses at twice this.
    pub budget_bytes: u64,
}

/// The batch a table is building.
#[derive(Debug, Clone, Default)]
pub struct OpenBatch {
    ranges: BTreeMap<(String, i32), (i64, i64)>,
    keys: BTreeSet<GoldKey>,
    opened_at: Option<Instant>,
    /// Kafka timestamps (ms) of the events, kept for the event-to-visible latency (capped).
    event_times: Vec<i64>,
}

/// Most event timestamps one batch keeps for the latency histogram.
const MAX_EVENT_TIMES: usize = 100_000;

/// A cut batch: what its load covers.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedBatch {
    /// Sorted by topic and partition.
    pub ranges: Vec<OffsetRange>,
    pub keys: BTreeSet<GoldKey>,
    pub event_times: Vec<i64>,
}

impl OpenBatch {
    /// Adds one consumed message and the gold keys it touched (possibly none); `arrived` is
    /// when the event reached Kafka (see [`arrival`]), which opens the batch.
    pub fn add(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        keys: impl IntoIterator<Item = GoldKey>,
        event_time_ms: Option<i64>,
        arrived: Instant,
    ) {
        let range = self
            .ranges
            .entry((topic.to_string(), partition))
            .or_insert((offset, offset));
        range.0 = range.0.min(offset);
        range.1 = range.1.max(offset);
        self.keys.extend(keys);
        if self.opened_at.is_none() {
            self.opened_at = Some(arrived);
        }
        if let Some(time) = event_time_ms
            && self.event_times.len() < MAX_EVENT_TIMES
        {
            self.event_times.push(time);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn rows(&self) -> u64 {
        self.keys.len() as u64
    }

    /// Estimated body size: rows times the average row size seen so far.
    pub fn estimated_bytes(&self, bytes_per_row: u64) -> u64 {
        self.rows().saturating_mul(bytes_per_row)
    }

    /// Whether the batch must not grow further.
    pub fn is_full(&self, limits: &BatchLimits, bytes_per_row: u64) -> bool {
        self.rows() >= limits.max_rows || self.estimated_bytes(bytes_per_row) >= limits.max_bytes
    }

    /// Whether the batch should be cut now: by size, or once its first event is `interval`
    /// old and the table's previous cut (`last_cut`) is at least `interval` ago, so a table
    /// gets at most one load per interval even when its events are old (catching up).
    pub fn is_due(
        &self,
        limits: &BatchLimits,
        bytes_per_row: u64,
        now: Instant,
        last_cut: Option<Instant>,
    ) -> bool {
        let Some(opened) = self.opened_at else {
            return false;
        };
        let spaced =
            last_cut.is_none_or(|cut| now.saturating_duration_since(cut) >= limits.interval);
        (spaced && now.saturating_duration_since(opened) >= limits.interval)
            || self.is_full(limits, bytes_per_row)
    }

    /// How long the batch has been open.
    pub fn age(&self, now: Instant) -> Duration {
        self.opened_at.map_or(Duration::ZERO, |opened| {
            now.saturating_duration_since(opened)
        })
    }

    /// Closes the batch and starts an empty one.
    pub fn take(&mut self) -> ClosedBatch {
        let taken = std::mem::take(self);
        ClosedBatch {
            ranges: taken
                .ranges
                .into_iter()
                .map(|((topic, partition), (first, last))| OffsetRange {
                    topic,
                    partition,
                    first,
                    last,
                })
                .collect(),
            keys: taken.keys,
            event_times: taken.event_times,
        }
    }
}

/// What a table looks like to the backpressure check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLoad {
    /// Estimated bytes of the batch being built.
    pub open_bytes: u64,
    /// Body bytes of the load in flight (0 when none).
    pub in_flight_bytes: u64,
    /// Whether the open batch is full.
    pub open_full: bool,
}

/// Whether the consumer should be paused, given whether it is now.
pub fn should_pause(paused: bool, tables: &[TableLoad], limits: &BatchLimits) -> bool {
    let used: u64 = tables
        .iter()
        .map(|t| t.open_bytes.saturating_add(t.in_flight_bytes))
        .sum();
    let blocked = tables.iter().any(|t| t.open_full && t.in_flight_bytes > 0);
    if blocked || used >= limits.budget_bytes.saturating_mul(2) {
        return true;
    }
    // Resume only once below the budget, so the consumer does not flap at the threshold.
    paused && used >= limits.budget_bytes
}

/// Whether the relay as a whole is over its budget, so the largest batch is cut early.
pub fn over_budget(tables: &[TableLoad], limits: &BatchLimits) -> bool {
    let used: u64 = tables
        .iter()
        .map(|t| t.open_bytes.saturating_add(t.in_flight_bytes))
        .sum();
    used >= limits.budget_bytes
}

/// When a message reached Kafka, as an [`Instant`]: `now` minus its age by the Kafka
/// timestamp (`timestamp_ms` against the wall clock `now_ms`), at most `interval` (older
/// events, or a skewed producer clock, count as `interval` old) and never in the future. Time a
/// message spent queued in the consumer while the relay was busy shaping counts toward its
/// batch's age.
pub fn arrival(
    now: Instant,
    now_ms: i64,
    timestamp_ms: Option<i64>,
    interval: Duration,
) -> Instant {
    let age_ms = timestamp_ms
        .map_or(0, |ts| now_ms.saturating_sub(ts))
        .max(0);
    let age = Duration::from_millis(u64::try_from(age_ms).unwrap_or(0)).min(interval);
    now.checked_sub(age).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::state::KeyValue;

    fn limits() -> BatchLimits {
        BatchLimits {
            interval: Duration::from_secs(1),
            max_rows: 3,
            max_bytes: 1000,
            budget_bytes: 2000,
        }
    }

    fn key(id: i64) -> GoldKey {
        vec![KeyValue::Int(id)]
    }

    #[test]
    fn a_batch_is_cut_by_age_rows_or_bytes() {
        let start = Instant::now();
        let mut batch = OpenBatch::default();
        assert!(!batch.is_due(&limits(), 10, start + Duration::from_secs(9), None));
        batch.add("t", 0, 5, [key(1)], Some(1), start);
        assert!(!batch.is_due(&limits(), 10, start + Duration::from_millis(999), None));
        assert!(batch.is_due(&limits(), 10, start + Duration::from_secs(1), None));
        // Not within an interval of the table's previous cut, unless full.
        let later = start + Duration::from_secs(1);
        assert!(!batch.is_due(
            &limits(),
            10,
            later,
            Some(start + Duration::from_millis(500))
        ));
        assert!(batch.is_due(&limits(), 10, later, Some(start)));
        // Repeated keys count once.
        batch.add("t", 0, 6, [key(1), key(2)], None, start);
        assert!(!batch.is_full(&limits(), 10));
        batch.add("t", 1, 0, [key(3)], None, start);
        assert!(batch.is_full(&limits(), 10));
        let mut small = OpenBatch::default();
        small.add("t", 0, 1, [key(1)], None, start);
        assert!(small.is_due(&limits(), 1000, start, Some(start)));
    }

    #[test]
    fn a_batch_opens_when_its_first_event_reached_kafka() {
        let now = Instant::now();
        let second = Duration::from_secs(1);
        let now_ms = 1_000_000;
        assert_eq!(
            arrival(now, now_ms, Some(now_ms - 300), second),
            now - Duration::from_millis(300)
        );
        // Old events (catch-up) and skewed clocks are bounded.
        assert_eq!(arrival(now, now_ms, Some(0), second), now - second);
        assert_eq!(arrival(now, now_ms, Some(now_ms + 5_000), second), now);
        assert_eq!(arrival(now, now_ms, None, second), now);
    }

    #[test]
    fn taking_a_batch_reports_sorted_inclusive_ranges() {
        let now = Instant::now();
        let mut batch = OpenBatch::default();
        batch.add("b", 0, 7, [], None, now);
        batch.add("a", 1, 3, [key(1)], Some(5), now);
        batch.add("a", 1, 4, [], None, now);
        batch.add("b", 0, 8, [], None, now);
        let closed = batch.take();
        assert!(batch.is_empty());
        assert_eq!(
            closed.ranges,
            vec![
                OffsetRange {
                    topic: "a".into(),
                    partition: 1,
                    first: 3,
                    last: 4
                },
                OffsetRange {
                    topic: "b".into(),
                    partition: 0,
                    first: 7,
                    last: 8
                },
            ]
        );
        assert_eq!(closed.event_times, vec![5]);
    }

    #[test]
    fn the_consumer_pauses_at_twice_the_budget_and_resumes_below_it() {
        let table = |open, flight, full| TableLoad {
            open_bytes: open,
            in_flight_bytes: flight,
            open_full: full,
        };
        let l = limits();
        assert!(!should_pause(false, &[table(1000, 2000, false)], &l));
        assert!(should_pause(false, &[table(2000, 2000, false)], &l));
        // Paused, still over the budget: stay paused; under it: resume.
        assert!(should_pause(true, &[table(1000, 1000, false)], &l));
        assert!(!should_pause(true, &[table(500, 1000, false)], &l));
        // A full batch behind a load in flight pauses whatever the budget says.
        assert!(should_pause(false, &[table(10, 10, true)], &l));
        assert!(!should_pause(false, &[table(10, 0, true)], &l));
        assert!(over_budget(&[table(1000, 1000, false)], &l));
    }
}
