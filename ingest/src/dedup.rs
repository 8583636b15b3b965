//! Drops Debezium re-emissions: after a connector restart, Debezium sends events again
//! with the same source position (and new Kafka offsets). Pure: state in, verdicts out.
//!
//! Within one topic-partition a connector's events arrive in source-log order, so each
//! partition keeps a watermark: the highest source position admitted, plus the hashes of
//! the (key, op) pairs admitted at exactly that position (events of one transaction, or a
//! snapshot, can share a position). An event below the watermark, or at it with a known
//! (key, op), has been admitted before and is dropped. State is bounded by the events that
//! share one position, not by the history; it is saved in each bronze snapshot's summary
//! (`firn.source-watermarks`) with the offsets, so a restart resumes with it.
//!
//! Events without a source position cannot be told apart and are always admitted.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

/// Summary key holding the watermarks of a bronze table.
pub const SOURCE_WATERMARKS: &str = "firn.source-watermarks";

/// The watermark of one topic-partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// Highest source position admitted.
    pub position: String,
    /// Hashes (hex) of the (key, op) pairs admitted at `position`.
    pub keys: BTreeSet<String>,
}

/// Watermarks per topic and partition, as saved in the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermarks(pub BTreeMap<String, BTreeMap<i32, Watermark>>);

impl Watermarks {
    /// Returns true when the event is new (and records it), false for a re-emission.
    pub fn admit(
        &mut self,
        topic: &str,
        partition: i32,
        position: Option<&str>,
        key_op_hash: &str,
    ) -> bool {
        let Some(position) = position else {
            return true;
        };
        // Called per event: the topic's name is allocated only the first time.
        if !self.0.contains_key(topic) {
            self.0.insert(topic.to_string(), BTreeMap::new());
        }
        let watermark = self
            .0
            .get_mut(topic)
            .expect("inserted above")
            .entry(partition)
            .or_default();
        match position.cmp(watermark.position.as_str()) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => {
                !watermark.keys.contains(key_op_hash)
                    && watermark.keys.insert(key_op_hash.to_string())
            }
            std::cmp::Ordering::Greater => {
                watermark.position.clear();
                watermark.position.push_str(position);
                watermark.keys.clear();
                watermark.keys.insert(key_op_hash.to_string());
                true
            }
        }
    }

    /// The watermarks of the given topic-partitions only (what one table's summary holds).
    pub fn restricted_to(&self, partitions: &[(String, i32)]) -> Watermarks {
        let mut out = Watermarks::default();
        for (topic, partition) in partitions {
            if let Some(watermark) = self.0.get(topic).and_then(|p| p.get(partition)) {
                out.0
                    .entry(topic.clone())
                    .or_default()
                    .insert(*partition, watermark.clone());
            }
        }
        out
    }

    /// Overlays `newer` onto these watermarks.
    pub fn merged_with(&self, newer: &Watermarks) -> Watermarks {
        let mut merged = self.clone();
        for (topic, partitions) in &newer.0 {
            for (partition, watermark) in partitions {
                merged
                    .0
                    .entry(topic.clone())
                    .or_default()
                    .insert(*partition, watermark.clone());
            }
        }
        merged
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Option<Watermarks> {
        serde_json::from_str(text).ok()
    }
}

/// A 128-bit hash (hex) of an event's key fields and op, stable across runs and versions.
pub fn key_op_hash(key: &[(String, serde_json::Value)], op: &str) -> String {
    use std::fmt::Write as _;
    // Canonical text: fields sorted by name (then by value text, for repeated names), values
    // as compact JSON. Called per event: the values are written straight into the text.
    let mut order: Vec<&(String, serde_json::Value)> = key.iter().collect();
    if !order.is_sorted_by(|a, b| a.0 < b.0) {
        order.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| a.1.to_string().cmp(&b.1.to_string()))
        });
    }
    let mut text = String::with_capacity(64);
    for (name, value) in order {
        text.push_str(name);
        text.push('\u{1f}');
        let _ = write!(text, "{value}");
        text.push('\u{1e}');
    }
    text.push_str(op);
    let half = |seed: u8| {
        // SipHash with fixed keys (DefaultHasher::new) is deterministic.
        let mut hasher = std::hash::DefaultHasher::new();
        seed.hash(&mut hasher);
        text.hash(&mut hasher);
        hasher.finish()
    };
    let mut hex = String::with_capacity(32);
    let _ = write!(hex, "{:016x}{:016x}", half(0), half(1));
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn key(id: i64) -> Vec<(String, serde_json::Value)> {
        vec![("id".to_string(), json!(id))]
    }

    #[test]
    fn re_emissions_below_or_at_the_watermark_are_dropped() {
        let mut marks = Watermarks::default();
        assert!(marks.admit("t", 0, Some("0001"), &key_op_hash(&key(1), "c")));
        assert!(marks.admit("t", 0, Some("0002"), &key_op_hash(&key(2), "c")));
        assert!(
            marks.admit("t", 0, Some("0002"), &key_op_hash(&key(3), "c")),
            "same position, other key"
        );
        assert!(
            !marks.admit("t", 0, Some("0002"), &key_op_hash(&key(2), "c")),
            "same key at the watermark"
        );
        assert!(
            !marks.admit("t", 0, Some("0001"), &key_op_hash(&key(1), "c")),
            "below the watermark"
        );
        assert!(
            marks.admit("t", 1, Some("0001"), &key_op_hash(&key(1), "c")),
            "partitions are independent"
        );
        assert!(
            marks.admit("t", 0, None, &key_op_hash(&key(1), "c")),
            "no position: admitted"
        );
        assert!(marks.admit("t", 0, Some("0003"), &key_op_hash(&key(2), "u")));
        assert_eq!(
            marks.0["t"][&0].keys.len(),
            1,
            "keys are cleared when the watermark moves"
        );
    }

    #[test]
    fn hashes_are_stable() {
        // Saved in snapshot summaries: a change would re-admit re-emissions after an upgrade.
        // Values from the first implementation (text built from sorted `to_string`s).
        assert_eq!(
            key_op_hash(&key(42), "c"),
            "70a820f77ff7b8b4fc092fd01be22b93"
        );
        let two = vec![("b".to_string(), json!("x")), ("a".to_string(), json!(1))];
        assert_eq!(key_op_hash(&two, "d"), "151888c84dfb7a9a65e5d4c566175d99");
    }

    #[test]
    fn hashes_ignore_key_field_order() {
        let a = vec![("a".to_string(), json!(1)), ("b".to_string(), json!(2))];
        let b = vec![("b".to_string(), json!(2)), ("a".to_string(), json!(1))];
        assert_eq!(key_op_hash(&a, "c"), key_op_hash(&b, "c"));
        assert_ne!(key_op_hash(&a, "c"), key_op_hash(&a, "d"));
    }

    proptest! {
        /// Replaying any suffix of an ordered stream admits nothing new, and the saved
        /// state behaves like the live one.
        #[test]
        fn replay_adds_nothing(
            events in proptest::collection::vec((0u32..50, 0i64..20, prop_oneof![Just("c"), Just("u"), Just("d")]), 1..200),
            replay_from in 0usize..200,
        ) {
            let mut positions: Vec<u32> = events.iter().map(|e| e.0).collect();
            positions.sort_unstable();
            let stream: Vec<(String, String)> = positions
                .iter()
                .zip(&events)
                .map(|(pos, (_, id, op))| (format!("{pos:06}"), key_op_hash(&key(*id), op)))
                .collect();
            let mut live = Watermarks::default();
            let admitted: Vec<bool> = stream.iter().map(|(p, h)| live.admit("t", 0, Some(p), h)).collect();
            let mut restored = Watermarks::from_json(&live.to_json()).unwrap();
            let start = replay_from.min(stream.len());
            for (p, h) in &stream[start..] {
                prop_assert!(!restored.admit("t", 0, Some(p), h));
            }
            // Exactly the distinct (position, key, op) triples were admitted.
            let distinct: BTreeSet<_> = stream.iter().collect();
            prop_assert_eq!(admitted.iter().filter(|a| **a).count(), distinct.len());
        }
    }
}
