//! Which inputs a derived table's rows reflect, and whether an input only grew since. Pure:
//! everything here reads table metadata passed in as a value.
//!
//! A derived snapshot (silver or gold) records the input snapshots it was computed from
//! (`firn.input-snapshots`). A run restricted to some tenants (`--tenant`) rewrites only
//! their partitions and also records them in [`TENANTS`]; the other tenants' rows still
//! reflect whatever the earlier snapshots computed. So the rows of a tenant reflect the
//! inputs of the newest snapshot in the table's lineage that covers it: one with no
//! [`TENANTS`] (a whole-table run) or one that lists the tenant.

use std::collections::BTreeSet;

use iceberg::spec::{Operation, SnapshotRef, TableMetadataRef};

/// Summary key: the JSON list of tenants a tenant-restricted run rewrote. Absent for runs
/// over the whole table.
pub const TENANTS: &str = "firn.tenants";
/// Summary key: how a silver snapshot was computed, `full` or `incremental`.
pub const MODE: &str = "firn.mode";
/// Summary key: for an incremental silver run, the input snapshot its previous rows reflect.
pub const BASE_INPUT: &str = "firn.base-input-snapshot";

/// The tenants a snapshot's run rewrote: `None` for the whole table.
pub fn scope(snapshot: &SnapshotRef) -> Option<BTreeSet<String>> {
    let text = snapshot.summary().additional_properties.get(TENANTS)?;
    // An unreadable list is treated as covering no tenant, so it is never trusted.
    Some(serde_json::from_str(text).unwrap_or_default())
}

fn covers(snapshot: &SnapshotRef, tenant: &str) -> bool {
    scope(snapshot).is_none_or(|tenants| tenants.contains(tenant))
}

fn ancestors(metadata: &TableMetadataRef) -> impl Iterator<Item = SnapshotRef> + '_ {
    metadata
        .current_snapshot_id()
        .into_iter()
        .flat_map(|current| iceberg::util::snapshot::ancestors_of(metadata, current))
}

/// The snapshots whose inputs the rows in scope reflect, newest first.
///
/// - For one tenant: the newest snapshot covering it (none if no snapshot does).
/// - For the whole table: the newest whole-table snapshot, preceded by every
///   tenant-restricted snapshot committed after it; empty when there is no whole-table
///   snapshot (some tenants would have no known state).
pub fn covering(metadata: &TableMetadataRef, tenant: Option<&str>) -> Vec<SnapshotRef> {
    match tenant {
        Some(tenant) => ancestors(metadata)
            .find(|snapshot| covers(snapshot, tenant))
            .into_iter()
            .collect(),
        None => {
            let mut found = Vec::new();
            for snapshot in ancestors(metadata) {
                let whole = scope(&snapshot).is_none();
                found.push(snapshot);
                if whole {
                    return found;
                }
            }
            Vec::new()
        }
    }
}

/// The oldest of `bases` when every one of them is `target` or one of its ancestors and
/// every snapshot after the oldest, up to `target`, is an append: then the data files of
/// `target` are those of the oldest base plus the files added since. `None` otherwise (a
/// rollback, an overwrite, an unknown snapshot).
pub fn appended_since(metadata: &TableMetadataRef, bases: &[i64], target: i64) -> Option<i64> {
    let mut remaining: BTreeSet<i64> = bases.iter().copied().collect();
    if remaining.is_empty() {
        return None;
    }
    for snapshot in iceberg::util::snapshot::ancestors_of(metadata, target) {
        remaining.remove(&snapshot.snapshot_id());
        if remaining.is_empty() {
            return Some(snapshot.snapshot_id());
        }
        if snapshot.summary().operation != Operation::Append {
            return None;
        }
    }
    None
}

/// Whether every snapshot committed after `base` (up to the current one) is a
/// tenant-restricted run that did not touch `tenant`. True when nothing was committed.
pub fn moved_only_other_tenants(
    metadata: &TableMetadataRef,
    base: Option<i64>,
    tenant: &str,
) -> bool {
    if metadata.current_snapshot_id() == base {
        return true;
    }
    for snapshot in ancestors(metadata) {
        if Some(snapshot.snapshot_id()) == base {
            return true;
        }
        if covers(&snapshot, tenant) {
            return false;
        }
    }
    // Every snapshot is another tenants' run: harmless if the run started from an empty
    // table; if `base` is not in the lineage at all (a rollback), it is not.
    base.is_none()
}
