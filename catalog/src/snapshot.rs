//! Builds new snapshots by hand: writes the manifests and the manifest list for an append
//! or an overwrite, and computes the summary. iceberg 0.10.1 only offers fast-append and
//! cannot attach properties to anything else, so firn produces every snapshot itself.
//! Does I/O (writes Avro manifest files through FileIO); commits nothing.

use std::collections::{HashMap, HashSet};

use iceberg::spec::{
    DataContentType, DataFile, FormatVersion, ManifestContentType, ManifestFile,
    ManifestListWriter, ManifestWriter, ManifestWriterBuilder, Operation, PartitionSpec, Snapshot,
    SnapshotSummaryCollector, Struct, Summary,
};
use iceberg::table::Table;
use rand::Rng;
use uuid::Uuid;

use crate::error::{CatalogError, Result};

/// Which existing data files an overwrite removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverwriteScope {
    /// Every data file of the table.
    All,
    /// Every data file in these partitions (partition tuples of the default spec).
    Partitions(Vec<Struct>),
    /// Every data file in a partition that the added files write to (dynamic replace).
    AddedPartitions,
}

/// What the new snapshot does.
#[derive(Debug, Clone)]
pub(crate) enum SnapshotChange<'a> {
    Append {
        added: &'a [DataFile],
    },
    Overwrite {
        added: &'a [DataFile],
        scope: &'a OverwriteScope,
    },
}

/// Summary keys whose totals roll forward from the parent snapshot.
const TOTALS: &[(&str, &str, &str)] = &[
    ("total-records", "added-records", "deleted-records"),
    ("total-data-files", "added-data-files", "deleted-data-files"),
    ("total-files-size", "added-files-size", "removed-files-size"),
    (
        "total-delete-files",
        "added-delete-files",
        "removed-delete-files",
    ),
    (
        "total-position-deletes",
        "added-position-deletes",
        "removed-position-deletes",
    ),
    (
        "total-equality-deletes",
        "added-equality-deletes",
        "removed-equality-deletes",
    ),
];

/// Writes manifests and a manifest list for `change` on top of the table's current
/// snapshot and returns the snapshot to add. The data files must already be written.
pub(crate) async fn produce_snapshot(
    table: &Table,
    change: SnapshotChange<'_>,
    properties: &HashMap<String, String>,
) -> Result<Snapshot> {
    let metadata = table.metadata();
    let name = table.identifier().to_string();
    let io_error = |operation| CatalogError::iceberg(operation, &name);
    if metadata.format_version() != FormatVersion::V2 {
        return Err(CatalogError::invalid(
            "write a snapshot",
            &name,
            "only format version 2 tables are supported",
        ));
    }
    let snapshot_id = unused_snapshot_id(table);
    let sequence_number = metadata.next_sequence_number();
    let parent_id = metadata.current_snapshot_id();
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().clone();
    let commit_uuid = Uuid::now_v7();

    let (added, scope, operation) = match change {
        SnapshotChange::Append { added } => (added, None, Operation::Append),
        SnapshotChange::Overwrite { added, scope } => (added, Some(scope), Operation::Overwrite),
    };
    for file in added {
        if file.content_type() != DataContentType::Data {
            return Err(CatalogError::invalid(
                "write a snapshot",
                &name,
                "only data files can be added",
            ));
        }
    }
    let replaced_partitions: Option<HashSet<Struct>> = match scope {
        None | Some(OverwriteScope::All) => None,
        Some(OverwriteScope::Partitions(partitions)) => Some(partitions.iter().cloned().collect()),
        Some(OverwriteScope::AddedPartitions) => {
            Some(added.iter().map(|file| file.partition().clone()).collect())
        }
    };

    let mut collector = SnapshotSummaryCollector::default();
    let mut manifests: Vec<ManifestFile> = Vec::new();
    let mut manifest_counter = 0u32;
    // A writer for this snapshot's next manifest, for files of `manifest_spec`.
    let mut new_manifest = |manifest_spec: &PartitionSpec| -> Result<ManifestWriter> {
        manifest_counter += 1;
        let output = table
            .file_io()
            .new_output(format!(
                "{}/metadata/{commit_uuid}-m{manifest_counter}.avro",
                metadata.location()
            ))
            .map_err(io_error("create manifest"))?;
        Ok(ManifestWriterBuilder::new(
            output,
            Some(snapshot_id),
            schema.clone(),
            manifest_spec.clone(),
        )
        .build_v2_data())
    };

    if !added.is_empty() {
        let mut writer = new_manifest(&spec)?;
        for file in added {
            collector.add_file(file, schema.clone(), spec.clone());
            // -1: the sequence number is inherited from the manifest list at read time.
            writer
                .add_file(file.clone(), -1)
                .map_err(io_error("write manifest"))?;
        }
        manifests.push(
            writer
                .write_manifest_file()
                .await
                .map_err(io_error("write manifest"))?,
        );
    }

    if let Some(current) = metadata.current_snapshot() {
        let manifest_list = table
            .manifest_list_reader(current)
            .load()
            .await
            .map_err(io_error("read manifest list"))?;
        // Collected first: the iterator is not Send and must not live across awaits.
        let existing: Vec<ManifestFile> = manifest_list.consume_entries().into_iter().collect();
        for manifest_file in existing {
            if scope.is_none() {
                manifests.push(manifest_file);
                continue;
            }
            if manifest_file.content != ManifestContentType::Data {
                // Delete files are never written by firn; keep foreign ones untouched.
                manifests.push(manifest_file);
                continue;
            }
            // Partition tuples are only comparable within one spec.
            let same_spec = manifest_file.partition_spec_id == spec.spec_id();
            let replaced = |file: &DataFile| match &replaced_partitions {
                None => true,
                Some(partitions) => same_spec && partitions.contains(file.partition()),
            };
            let manifest = manifest_file
                .load_manifest(table.file_io())
                .await
                .map_err(io_error("read manifest"))?;
            let touches = manifest
                .entries()
                .iter()
                .any(|entry| entry.is_alive() && replaced(entry.data_file()));
            if !touches {
                manifests.push(manifest_file);
                continue;
            }
            let manifest_spec = metadata
                .partition_spec_by_id(manifest_file.partition_spec_id)
                .cloned()
                .unwrap_or_else(|| spec.clone());
            let mut writer = new_manifest(&manifest_spec)?;
            for entry in manifest.entries() {
                if !entry.is_alive() {
                    continue;
                }
                let data_file = entry.data_file().clone();
                let entry_sequence = entry.sequence_number().unwrap_or(0);
                if replaced(&data_file) {
                    collector.remove_file(&data_file, schema.clone(), manifest_spec.clone());
                    writer
                        .add_delete_file(data_file, entry_sequence, entry.file_sequence_number)
                        .map_err(io_error("write manifest"))?;
                } else {
                    let entry_snapshot = entry.snapshot_id().unwrap_or(snapshot_id);
                    writer
                        .add_existing_file(
                            data_file,
                            entry_snapshot,
                            entry_sequence,
                            entry.file_sequence_number,
                        )
                        .map_err(io_error("write manifest"))?;
                }
            }
            manifests.push(
                writer
                    .write_manifest_file()
                    .await
                    .map_err(io_error("write manifest"))?,
            );
        }
    }

    if scope.is_none() {
        let candidates = manifests
            .iter()
            .skip(usize::from(!added.is_empty()))
            .filter(|m| {
                m.content == ManifestContentType::Data && m.partition_spec_id == spec.spec_id()
            })
            .count();
        if merge_min_count(metadata.properties()).is_some_and(|min| candidates >= min) {
            let mut writer = new_manifest(&spec)?;
            let mut kept = Vec::with_capacity(manifests.len() - candidates + 1);
            for (index, manifest_file) in manifests.into_iter().enumerate() {
                let is_new = index == 0 && !added.is_empty();
                if is_new
                    || manifest_file.content != ManifestContentType::Data
                    || manifest_file.partition_spec_id != spec.spec_id()
                {
                    kept.push(manifest_file);
                    continue;
                }
                let manifest = manifest_file
                    .load_manifest(table.file_io())
                    .await
                    .map_err(io_error("read manifest"))?;
                for entry in manifest.entries().iter().filter(|entry| entry.is_alive()) {
                    writer
                        .add_existing_file(
                            entry.data_file().clone(),
                            entry.snapshot_id().unwrap_or(snapshot_id),
                            entry.sequence_number().unwrap_or(0),
                            entry.file_sequence_number,
                        )
                        .map_err(io_error("write manifest"))?;
                }
            }
            kept.push(
                writer
                    .write_manifest_file()
                    .await
                    .map_err(io_error("write manifest"))?,
            );
            manifests = kept;
        }
    }

    let manifest_list_path = format!(
        "{}/metadata/snap-{snapshot_id}-1-{commit_uuid}.avro",
        metadata.location()
    );
    let list_output = table
        .file_io()
        .new_output(&manifest_list_path)
        .map_err(io_error("create manifest list"))?
        .writer()
        .await
        .map_err(io_error("create manifest list"))?;
    let mut list_writer =
        ManifestListWriter::v2(list_output, snapshot_id, parent_id, sequence_number);
    list_writer
        .add_manifests(manifests.into_iter())
        .map_err(io_error("write manifest list"))?;
    list_writer
        .close()
        .await
        .map_err(io_error("write manifest list"))?;

    let computed = collector.build();
    let mut summary_properties = properties.clone();
    // Computed metrics win over caller properties, as in Iceberg Java.
    summary_properties.extend(computed);
    let parent_summary = metadata
        .current_snapshot()
        .map(|snapshot| &snapshot.summary().additional_properties);
    roll_totals(
        &mut summary_properties,
        parent_summary,
        operation == Operation::Overwrite && scope == Some(&OverwriteScope::All),
    );

    Ok(Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent_id)
        .with_sequence_number(sequence_number)
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
        .with_manifest_list(manifest_list_path)
        .with_schema_id(metadata.current_schema_id())
        .with_summary(Summary {
            operation,
            additional_properties: summary_properties,
        })
        .build())
}

/// Table property: the number of data manifests at which an append merges them into one.
pub const MANIFEST_MERGE_MIN_COUNT: &str = "commit.manifest.min-count-to-merge";
/// Table property: whether appends merge manifests at all.
pub const MANIFEST_MERGE_ENABLED: &str = "commit.manifest-merge.enabled";

/// How many data manifests of the current spec an append lets pile up before it rewrites
/// them into one (Iceberg Java's defaults: enabled, 100); `None` when merging is off. Each
/// append adds a manifest, so a table committed every few seconds would otherwise make every
/// later commit and every scan read thousands. Pure.
fn merge_min_count(properties: &HashMap<String, String>) -> Option<usize> {
    if properties
        .get(MANIFEST_MERGE_ENABLED)
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
    {
        return None;
    }
    let min = properties
        .get(MANIFEST_MERGE_MIN_COUNT)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(100);
    // One manifest left alone is already merged.
    Some(min.max(2))
}

/// Rolls `total-*` forward: parent total + added - removed. Without a parent total the
/// total is unknown and left out, except after a full overwrite where it is just the added.
fn roll_totals(
    summary: &mut HashMap<String, String>,
    parent: Option<&HashMap<String, String>>,
    replaces_everything: bool,
) {
    let number = |map: &HashMap<String, String>, key: &str| -> Option<i64> {
        map.get(key).and_then(|v| v.parse().ok())
    };
    for (total_key, added_key, removed_key) in TOTALS {
        let added = number(summary, added_key).unwrap_or(0);
        let removed = number(summary, removed_key).unwrap_or(0);
        let previous = match parent {
            None => Some(0),
            Some(_) if replaces_everything => Some(removed),
            Some(parent) => number(parent, total_key),
        };
        if let Some(previous) = previous {
            summary.insert(
                total_key.to_string(),
                (previous + added - removed).max(0).to_string(),
            );
        }
    }
}

/// A random positive snapshot id that the table does not use yet.
fn unused_snapshot_id(table: &Table) -> i64 {
    let mut rng = rand::rng();
    loop {
        let candidate: i64 = rng.random_range(1..i64::MAX);
        if table.metadata().snapshot_by_id(candidate).is_none() {
            return candidate;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_roll_forward_from_parent() {
        let parent = HashMap::from([("total-records".to_string(), "10".to_string())]);
        let mut summary = HashMap::from([
            ("added-records".to_string(), "5".to_string()),
            ("deleted-records".to_string(), "3".to_string()),
        ]);
        roll_totals(&mut summary, Some(&parent), false);
        assert_eq!(summary["total-records"], "12");
        // Parent without a total: unknown, not invented.
        assert!(!summary.contains_key("total-data-files"));
    }

    #[test]
    fn first_snapshot_totals_start_at_zero() {
        let mut summary = HashMap::from([("added-records".to_string(), "7".to_string())]);
        roll_totals(&mut summary, None, false);
        assert_eq!(summary["total-records"], "7");
        assert_eq!(summary["total-data-files"], "0");
    }
}
