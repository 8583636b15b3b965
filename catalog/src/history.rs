//! Reading a table's history: snapshots, refs (tags and branches), lineage walks, and the
//! summary properties firn writes (commit id, writer id, Kafka offsets, input snapshots).
//! Pure: everything here takes table metadata as a value.

use std::collections::{BTreeMap, HashMap};

use iceberg::spec::{Operation, SnapshotRef, TableMetadata, TableMetadataRef};
use serde::{Deserialize, Serialize};

/// Summary key: the id of the logical commit that produced a snapshot.
pub const COMMIT_ID: &str = "firn.commit-id";
/// Summary key: the process or job that wrote the snapshot.
pub const WRITER_ID: &str = "firn.writer-id";
/// Summary key: JSON of the Kafka positions this snapshot's data reaches (next offsets).
pub const KAFKA_OFFSETS: &str = "firn.kafka-offsets";
/// Summary key: JSON map of input table to the snapshot id a transform read (lineage).
pub const INPUT_SNAPSHOTS: &str = "firn.input-snapshots";

/// Next offset to read per topic and partition. Serialised as `{"topic": {"0": 42}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaOffsets(pub BTreeMap<String, BTreeMap<i32, i64>>);

impl KafkaOffsets {
    pub fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.0.get(topic).and_then(|p| p.get(&partition)).copied()
    }

    pub fn set(&mut self, topic: &str, partition: i32, next_offset: i64) {
        self.0
            .entry(topic.to_string())
            .or_default()
            .insert(partition, next_offset);
    }

    /// Overlays `newer` onto these positions (partitions not in `newer` keep their value).
    pub fn merged_with(&self, newer: &KafkaOffsets) -> KafkaOffsets {
        let mut merged = self.clone();
        for (topic, partitions) in &newer.0 {
            for (partition, offset) in partitions {
                merged.set(topic, *partition, *offset);
            }
        }
        merged
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// A snapshot as shown to people and scripts (`firn snapshots`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    pub snapshot_id: i64,
    pub parent_id: Option<i64>,
    pub sequence_number: i64,
    pub timestamp_ms: i64,
    pub operation: String,
    /// Whether the snapshot is an ancestor of (or is) the current snapshot of `main`.
    pub in_main_lineage: bool,
    pub summary: BTreeMap<String, String>,
}

/// A named reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefInfo {
    pub name: String,
    pub snapshot_id: i64,
    /// `branch` or `tag`.
    pub kind: String,
}

pub fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Append => "append",
        Operation::Replace => "replace",
        Operation::Overwrite => "overwrite",
        Operation::Delete => "delete",
    }
}

/// All snapshots, oldest first.
pub fn snapshots(metadata: &TableMetadataRef) -> Vec<SnapshotInfo> {
    let lineage: std::collections::HashSet<i64> = main_lineage(metadata)
        .iter()
        .map(|s| s.snapshot_id())
        .collect();
    let mut all: Vec<SnapshotInfo> = metadata
        .snapshots()
        .map(|snapshot| SnapshotInfo {
            snapshot_id: snapshot.snapshot_id(),
            parent_id: snapshot.parent_snapshot_id(),
            sequence_number: snapshot.sequence_number(),
            timestamp_ms: snapshot.timestamp_ms(),
            operation: operation_name(&snapshot.summary().operation).to_string(),
            in_main_lineage: lineage.contains(&snapshot.snapshot_id()),
            summary: snapshot
                .summary()
                .additional_properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
        .collect();
    all.sort_by_key(|s| (s.sequence_number, s.timestamp_ms));
    all
}

/// The current snapshot of `main` and its ancestors, newest first.
pub fn main_lineage(metadata: &TableMetadataRef) -> Vec<SnapshotRef> {
    match metadata.current_snapshot_id() {
        Some(current) => iceberg::util::snapshot::ancestors_of(metadata, current).collect(),
        None => Vec::new(),
    }
}

/// Every ref of the table. The refs map is not public in iceberg 0.10.1, so it is read
/// from the metadata's JSON form, which the spec fixes.
pub fn refs(metadata: &TableMetadata) -> Vec<RefInfo> {
    let Ok(json) = serde_json::to_value(metadata) else {
        return Vec::new();
    };
    let mut out: Vec<RefInfo> = json
        .get("refs")
        .and_then(|refs| refs.as_object())
        .map(|refs| {
            refs.iter()
                .filter_map(|(name, value)| {
                    Some(RefInfo {
                        name: name.clone(),
                        snapshot_id: value.get("snapshot-id")?.as_i64()?,
                        kind: value.get("type")?.as_str()?.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The snapshot committed under `commit_id`, anywhere in the table's snapshots.
pub fn find_commit(metadata: &TableMetadata, commit_id: &str) -> Option<SnapshotRef> {
    metadata
        .snapshots()
        .find(|snapshot| {
            snapshot
                .summary()
                .additional_properties
                .get(COMMIT_ID)
                .map(String::as_str)
                == Some(commit_id)
        })
        .cloned()
}

/// The newest snapshot on `main`'s lineage that carries `key` in its summary, with its value.
/// Props-only or maintenance snapshots on top are skipped, as the Kafka Connect sink does.
pub fn latest_summary_value(metadata: &TableMetadataRef, key: &str) -> Option<(i64, String)> {
    main_lineage(metadata).into_iter().find_map(|snapshot| {
        snapshot
            .summary()
            .additional_properties
            .get(key)
            .map(|value| (snapshot.snapshot_id(), value.clone()))
    })
}

/// The Kafka positions recorded by the newest snapshot on `main` that has them.
pub fn latest_kafka_offsets(metadata: &TableMetadataRef) -> Option<(i64, KafkaOffsets)> {
    let (snapshot_id, text) = latest_summary_value(metadata, KAFKA_OFFSETS)?;
    KafkaOffsets::from_json(&text).map(|offsets| (snapshot_id, offsets))
}

/// The lineage map (input table → snapshot id) recorded on a snapshot.
pub fn input_snapshots(summary: &HashMap<String, String>) -> BTreeMap<String, i64> {
    summary
        .get(INPUT_SNAPSHOTS)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn offsets_round_trip_and_merge(
            base in proptest::collection::btree_map("[a-z.]{1,12}", proptest::collection::btree_map(0i32..8, 0i64..1_000_000, 0..4), 0..4),
            newer in proptest::collection::btree_map("[a-z.]{1,12}", proptest::collection::btree_map(0i32..8, 0i64..1_000_000, 0..4), 0..4),
        ) {
            let base = KafkaOffsets(base);
            let newer = KafkaOffsets(newer);
            prop_assert_eq!(KafkaOffsets::from_json(&base.to_json()), Some(base.clone()));
            let merged = base.merged_with(&newer);
            for (topic, partitions) in &newer.0 {
                for (partition, offset) in partitions {
                    prop_assert_eq!(merged.get(topic, *partition), Some(*offset));
                }
            }
            for (topic, partitions) in &base.0 {
                for (partition, offset) in partitions {
                    if newer.get(topic, *partition).is_none() {
                        prop_assert_eq!(merged.get(topic, *partition), Some(*offset));
                    }
                }
            }
        }
    }
}
