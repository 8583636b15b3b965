//! The commit path: the only code in firn that changes an Iceberg table. Does I/O.
//!
//! Every operation (append, overwrite, rollback, tags, schema evolution, expiry) goes
//! through [`Catalog::commit`]:
//!
//! 1. load the table and its metadata location (a caller holding the table its previous
//!    commit returned passes it as the request's base: when the catalog still points at
//!    that metadata file, only the pointer is read, since metadata files never change);
//! 2. if a snapshot already carries this commit's id, report it as committed (so a caller
//!    retrying after a crash or an unknown outcome never commits twice);
//! 3. run the caller's re-validation against the table as it is now (e.g. "the offsets I
//!    resume from are still the table's"); a refusal aborts without committing;
//! 4. plan the updates against this metadata (writing manifests for new snapshots), check
//!    the requirements, apply the updates and write the new metadata file;
//! 5. compare-and-swap the catalog pointer. Zero rows means another writer won: back off
//!    with jitter and start again at 1. An error means the outcome is unknown: reload and
//!    look for the commit in the history (and for our metadata file in the metadata log)
//!    instead of retrying blindly.
//!
//! Nothing is visible to readers until the swap succeeds. After a successful swap the
//! returned table is built from the metadata just written, not read back.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use iceberg::spec::{
    DataFile, MAIN_BRANCH, NestedField, PrimitiveType, Schema, SnapshotReference,
    SnapshotRetention, TableMetadata, Type,
};
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableRequirement, TableUpdate};
use rand::Rng;

use crate::catalog::Catalog;
use crate::error::{CatalogError, Result};
use crate::history::{self, COMMIT_ID};
use crate::pointer::SwapResult;
use crate::snapshot::{OverwriteScope, SnapshotChange, produce_snapshot};
use crate::tables::TableName;

/// A change to make to a table.
#[derive(Debug, Clone)]
pub enum Operation {
    /// Adds data files (none is allowed: a properties-only snapshot, e.g. offsets).
    Append {
        files: Vec<DataFile>,
    },
    /// Replaces the data files selected by `scope` with `files`.
    Overwrite {
        files: Vec<DataFile>,
        scope: OverwriteScope,
    },
    /// Makes any existing snapshot the current one of `main`.
    SetCurrentSnapshot {
        snapshot_id: i64,
    },
    /// Moves `main` back to an ancestor of its current snapshot.
    Rollback(RollbackTarget),
    /// Creates a tag at a snapshot (the current one when `None`).
    CreateTag {
        name: String,
        snapshot_id: Option<i64>,
    },
    RemoveTag {
        name: String,
    },
    /// Adds optional columns and widens types; already-applied changes are skipped.
    EvolveSchema {
        changes: Vec<SchemaChange>,
    },
    /// Forgets snapshots older than a time (metadata only; files are not deleted), keeping
    /// the newest `retain_last` of `main` and everything a ref points at.
    ExpireSnapshots {
        older_than_ms: i64,
        retain_last: usize,
    },
}

/// Where a rollback goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackTarget {
    SnapshotId(i64),
    /// The newest ancestor of the current snapshot committed at or before this time.
    Timestamp {
        ms: i64,
    },
}

/// A schema change that existing data files stay readable under.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaChange {
    /// Adds an optional top-level column.
    AddColumn {
        name: String,
        field_type: Type,
        doc: Option<String>,
    },
    /// Widens a column: int→long, float→double, decimal(p,s)→decimal(p',s) with p' ≥ p.
    WidenColumn { name: String, to: PrimitiveType },
}

/// Re-validation run against the table on every attempt; `Err(reason)` aborts the commit.
pub type Validator = Arc<dyn Fn(&Table) -> std::result::Result<(), String> + Send + Sync>;

/// Summary properties computed against the table on every attempt, for values that must
/// merge with what concurrent writers committed (e.g. the offsets of partitions another
/// process owns). They are added to (and override) the request's fixed properties.
pub type PropertiesFrom =
    Arc<dyn Fn(&Table) -> std::result::Result<HashMap<String, String>, String> + Send + Sync>;

/// One logical commit.
#[derive(Clone)]
pub struct CommitRequest {
    pub operation: Operation,
    /// Identifies the logical commit across retries and restarts; recorded in the snapshot
    /// summary. Callers that may retry after a crash must derive it deterministically.
    pub commit_id: String,
    /// Extra snapshot summary properties (writer id, Kafka offsets, lineage).
    pub properties: HashMap<String, String>,
    pub validator: Option<Validator>,
    pub properties_from: Option<PropertiesFrom>,
    /// The table as the caller last saw it (e.g. the previous commit's outcome): used
    /// instead of reading its metadata file again when the catalog still points at it.
    pub base: Option<Table>,
}

impl std::fmt::Debug for CommitRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitRequest")
            .field("operation", &self.operation)
            .field("commit_id", &self.commit_id)
            .field("properties", &self.properties)
            .field("validator", &self.validator.is_some())
            .field("properties_from", &self.properties_from.is_some())
            .field(
                "base",
                &self.base.as_ref().and_then(|t| t.metadata_location()),
            )
            .finish()
    }
}

impl CommitRequest {
    /// A request with a fresh random commit id.
    pub fn new(operation: Operation) -> Self {
        CommitRequest {
            operation,
            commit_id: uuid::Uuid::now_v7().to_string(),
            properties: HashMap::new(),
            validator: None,
            properties_from: None,
            base: None,
        }
    }

    /// Starts from `table` (as the caller last saw it) when the catalog still points at its
    /// metadata file, instead of reading that file again; see [`Catalog::refresh_table`].
    pub fn with_base(mut self, table: Table) -> Self {
        self.base = Some(table);
        self
    }

    pub fn with_commit_id(mut self, commit_id: impl Into<String>) -> Self {
        self.commit_id = commit_id.into();
        self
    }

    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    pub fn with_validator(
        mut self,
        validator: impl Fn(&Table) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.validator = Some(Arc::new(validator));
        self
    }

    /// Computes summary properties against the current table on every attempt (after the
    /// validator); `Err(reason)` aborts the commit like a failed validation.
    pub fn with_properties_from(
        mut self,
        properties: impl Fn(&Table) -> std::result::Result<HashMap<String, String>, String>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.properties_from = Some(Arc::new(properties));
        self
    }
}

/// How a commit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitStatus {
    /// This call swapped the pointer.
    Committed,
    /// The swap's answer was lost, and the history shows it landed.
    CommittedResolvedFromHistory,
    /// A snapshot with this commit id already existed before this call did anything.
    AlreadyCommitted,
    /// The change was already in effect (e.g. the columns already exist); nothing written.
    NothingToDo,
}

/// Result of [`Catalog::commit`].
#[derive(Debug, Clone)]
pub struct CommitOutcome {
    pub status: CommitStatus,
    /// The snapshot the commit created (snapshot operations only).
    pub snapshot_id: Option<i64>,
    /// The table's current snapshot after the commit.
    pub current_snapshot_id: Option<i64>,
    pub attempts: u32,
    pub table: Table,
}

/// Updates and requirements planned against one version of the metadata.
struct Plan {
    updates: Vec<TableUpdate>,
    requirements: Vec<TableRequirement>,
    new_snapshot_id: Option<i64>,
}

impl Catalog {
    /// Commits `request` to `name` through the compare-and-swap protocol described in the
    /// module docs.
    pub async fn commit(&self, name: &TableName, request: CommitRequest) -> Result<CommitOutcome> {
        let mut written_locations: Vec<String> = Vec::new();
        let mut base = request.base.clone();
        for attempt in 1..=self.retry.max_attempts {
            // The base only helps the first attempt: a lost race means the table moved.
            let table = self.refresh_table(name, base.take()).await?;
            if let Some(snapshot) = history::find_commit(table.metadata(), &request.commit_id) {
                let status = if attempt == 1 && written_locations.is_empty() {
                    CommitStatus::AlreadyCommitted
                } else {
                    CommitStatus::CommittedResolvedFromHistory
                };
                return Ok(outcome(
                    status,
                    Some(snapshot.snapshot_id()),
                    attempt,
                    table,
                ));
            }
            if let Some(validator) = &request.validator {
                validator(&table).map_err(|reason| CatalogError::Rejected {
                    table: name.to_string(),
                    reason,
                })?;
            }
            let mut extra = HashMap::new();
            if let Some(properties_from) = &request.properties_from {
                extra = properties_from(&table).map_err(|reason| CatalogError::Rejected {
                    table: name.to_string(),
                    reason,
                })?;
            }
            let Some(plan) = plan(&table, &request, extra).await? else {
                return Ok(outcome(CommitStatus::NothingToDo, None, attempt, table));
            };
            let base_location = table
                .metadata_location()
                .ok_or_else(|| {
                    CatalogError::invalid("commit", name, "table has no metadata location")
                })?
                .to_string();
            let (new_location, new_metadata) = self
                .write_metadata(
                    name,
                    &table,
                    &base_location,
                    plan.updates,
                    &plan.requirements,
                )
                .await?;
            written_locations.push(new_location.clone());
            let swap = self
                .store
                .swap_pointer(name.namespace(), &name.name, &base_location, &new_location)
                .await;
            match swap {
                Ok(SwapResult::Swapped) => {
                    if delete_after_commit(table.metadata().properties()) {
                        for file in dropped_metadata_files(
                            table.metadata(),
                            &base_location,
                            &new_metadata,
                            &new_location,
                        ) {
                            // Best effort: a file left behind is only storage.
                            if let Err(err) = self.file_io.delete(&file).await {
                                tracing::warn!(table = %name, file, error = %err, "cannot delete an old metadata file");
                            }
                        }
                    }
                    // The pointer now names the file just written, whose content is
                    // `new_metadata`: no need to read it back.
                    let table = self.table_from(name, new_metadata, new_location)?;
                    tracing::debug!(table = %name, commit_id = %request.commit_id, attempt, "committed");
                    return Ok(outcome(
                        CommitStatus::Committed,
                        plan.new_snapshot_id,
                        attempt,
                        table,
                    ));
                }
                Ok(SwapResult::Conflict) => {
                    tracing::debug!(table = %name, attempt, "lost the commit race; reloading");
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(error) => {
                    tracing::warn!(table = %name, commit_id = %request.commit_id, %error, "commit outcome unknown; resolving from history");
                    match self
                        .resolve_unknown(name, &request.commit_id, &written_locations)
                        .await
                    {
                        Ok(Some(table)) => {
                            let snapshot_id = plan.new_snapshot_id;
                            return Ok(outcome(
                                CommitStatus::CommittedResolvedFromHistory,
                                snapshot_id,
                                attempt,
                                table,
                            ));
                        }
                        Ok(None) => {
                            // The history shows it did not land: planning again is safe.
                            tokio::time::sleep(self.backoff(attempt)).await;
                        }
                        Err(resolve_error) => {
                            return Err(CatalogError::UnknownOutcome {
                                table: name.to_string(),
                                commit_id: request.commit_id.clone(),
                                message: format!(
                                    "swap failed ({error}) and the history could not be read ({resolve_error}); retry with the same commit id"
                                ),
                            });
                        }
                    }
                }
            }
        }
        Err(CatalogError::TooManyConflicts {
            table: name.to_string(),
            attempts: self.retry.max_attempts,
        })
    }

    /// Loads a table, reusing `known` (the table as the caller last saw it) when the catalog
    /// still points at its metadata file: metadata files are immutable, so the same location
    /// means the same table, and only the pointer is read. Otherwise (or without `known`)
    /// this is [`Catalog::load_table`].
    pub async fn refresh_table(&self, name: &TableName, known: Option<Table>) -> Result<Table> {
        let Some(known) = known else {
            return self.load_table(name).await;
        };
        let Some(location) = self
            .store
            .load_pointer(name.namespace(), &name.name)
            .await?
        else {
            return Err(CatalogError::TableNotFound(name.to_string()));
        };
        if known.metadata_location() == Some(location.as_str()) {
            return Ok(known);
        }
        let metadata = TableMetadata::read_from(&self.file_io, &location)
            .await
            .map_err(CatalogError::iceberg("read table metadata", name))?;
        self.table_from(name, metadata, location)
    }

    /// Checks requirements, applies updates and writes the new metadata file; returns its
    /// location and content. The file is unreferenced until the pointer swap.
    async fn write_metadata(
        &self,
        name: &TableName,
        table: &Table,
        base_location: &str,
        updates: Vec<TableUpdate>,
        requirements: &[TableRequirement],
    ) -> Result<(String, TableMetadata)> {
        for requirement in requirements {
            requirement.check(Some(table.metadata())).map_err(|err| {
                CatalogError::invalid("commit", name, format!("requirement failed: {err}"))
            })?;
        }
        let mut builder = table
            .metadata()
            .clone()
            .into_builder(Some(base_location.to_string()));
        for update in updates {
            builder = update
                .apply(builder)
                .map_err(|err| CatalogError::invalid("commit", name, err.to_string()))?;
        }
        let metadata = builder
            .build()
            .map_err(|err| CatalogError::invalid("commit", name, err.to_string()))?
            .metadata;
        let location = MetadataLocation::from_str(base_location)
            .map_err(CatalogError::iceberg("parse metadata location", name))?
            .with_next_version()
            .with_new_metadata(&metadata);
        metadata
            .write_to(&self.file_io, &location)
            .await
            .map_err(CatalogError::iceberg("write table metadata", name))?;
        Ok((location.to_string(), metadata))
    }

    /// After a swap error: returns the table if our commit is visible, `None` if it is
    /// certainly not, or an error if the catalog cannot be read.
    async fn resolve_unknown(
        &self,
        name: &TableName,
        commit_id: &str,
        written_locations: &[String],
    ) -> Result<Option<Table>> {
        let table = self.load_table(name).await?;
        let landed_snapshot = history::find_commit(table.metadata(), commit_id).is_some();
        let current = table.metadata_location().unwrap_or_default().to_string();
        let landed_metadata = written_locations.iter().any(|written| {
            *written == current
                || table
                    .metadata()
                    .metadata_log()
                    .iter()
                    .any(|entry| entry.metadata_file == *written)
        });
        Ok((landed_snapshot || landed_metadata).then_some(table))
    }

    /// Exponential backoff with full jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let ceiling = self
            .retry
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.retry.max_delay);
        let millis = ceiling.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

fn outcome(
    status: CommitStatus,
    snapshot_id: Option<i64>,
    attempts: u32,
    table: Table,
) -> CommitOutcome {
    CommitOutcome {
        status,
        snapshot_id,
        current_snapshot_id: table.metadata().current_snapshot_id(),
        attempts,
        table,
    }
}

fn main_ref(snapshot_id: i64) -> TableUpdate {
    TableUpdate::SetSnapshotRef {
        ref_name: MAIN_BRANCH.to_string(),
        reference: SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
    }
}

fn main_unchanged(table: &Table) -> Vec<TableRequirement> {
    vec![
        TableRequirement::UuidMatch {
            uuid: table.metadata().uuid(),
        },
        TableRequirement::RefSnapshotIdMatch {
            r#ref: MAIN_BRANCH.to_string(),
            snapshot_id: table.metadata().current_snapshot_id(),
        },
    ]
}

/// Plans `request` against the table; `None` when there is nothing to change.
async fn plan(
    table: &Table,
    request: &CommitRequest,
    extra_properties: HashMap<String, String>,
) -> Result<Option<Plan>> {
    let name = table.identifier().to_string();
    let metadata = table.metadata();
    let mut properties = request.properties.clone();
    properties.extend(extra_properties);
    properties.insert(COMMIT_ID.to_string(), request.commit_id.clone());
    let snapshot_plan = |snapshot: iceberg::spec::Snapshot| {
        let snapshot_id = snapshot.snapshot_id();
        Plan {
            updates: vec![TableUpdate::AddSnapshot { snapshot }, main_ref(snapshot_id)],
            requirements: main_unchanged(table),
            new_snapshot_id: Some(snapshot_id),
        }
    };
    let plan = match &request.operation {
        Operation::Append { files } => {
            // Nothing but the commit id: an empty append would record nothing.
            if files.is_empty() && properties.len() == 1 {
                return Ok(None);
            }
            let snapshot =
                produce_snapshot(table, SnapshotChange::Append { added: files }, &properties)
                    .await?;
            snapshot_plan(snapshot)
        }
        Operation::Overwrite { files, scope } => {
            let change = SnapshotChange::Overwrite {
                added: files,
                scope,
            };
            snapshot_plan(produce_snapshot(table, change, &properties).await?)
        }
        Operation::SetCurrentSnapshot { snapshot_id } => {
            if metadata.snapshot_by_id(*snapshot_id).is_none() {
                return Err(CatalogError::invalid(
                    "set the current snapshot",
                    &name,
                    format!("snapshot {snapshot_id} does not exist"),
                ));
            }
            if metadata.current_snapshot_id() == Some(*snapshot_id) {
                return Ok(None);
            }
            Plan {
                updates: vec![main_ref(*snapshot_id)],
                requirements: main_unchanged(table),
                new_snapshot_id: None,
            }
        }
        Operation::Rollback(target) => {
            let metadata_ref = table.metadata_ref();
            let lineage = history::main_lineage(&metadata_ref);
            let found = match target {
                RollbackTarget::SnapshotId(id) => lineage.iter().find(|s| s.snapshot_id() == *id),
                RollbackTarget::Timestamp { ms } => {
                    lineage.iter().find(|s| s.timestamp_ms() <= *ms)
                }
            };
            let Some(snapshot) = found else {
                return Err(CatalogError::invalid(
                    "roll back",
                    &name,
                    format!(
                        "{target:?} is not an ancestor of the current snapshot (use set-current for other snapshots)"
                    ),
                ));
            };
            if metadata.current_snapshot_id() == Some(snapshot.snapshot_id()) {
                return Ok(None);
            }
            Plan {
                updates: vec![main_ref(snapshot.snapshot_id())],
                requirements: main_unchanged(table),
                new_snapshot_id: None,
            }
        }
        Operation::CreateTag {
            name: tag,
            snapshot_id,
        } => {
            crate::names::validate_identifier(crate::error::NameKind::Table, tag)
                .map_err(|err| CatalogError::invalid("create a tag", &name, err.to_string()))?;
            let target = match snapshot_id.or(metadata.current_snapshot_id()) {
                Some(id) if metadata.snapshot_by_id(id).is_some() => id,
                Some(id) => {
                    return Err(CatalogError::invalid(
                        "create a tag",
                        &name,
                        format!("snapshot {id} does not exist"),
                    ));
                }
                None => {
                    return Err(CatalogError::invalid(
                        "create a tag",
                        &name,
                        "the table has no snapshot yet",
                    ));
                }
            };
            if let Some(existing) = history::refs(metadata).into_iter().find(|r| r.name == *tag) {
                if existing.kind == "tag" && existing.snapshot_id == target {
                    return Ok(None);
                }
                return Err(CatalogError::invalid(
                    "create a tag",
                    &name,
                    format!(
                        "ref `{tag}` already exists at snapshot {}",
                        existing.snapshot_id
                    ),
                ));
            }
            Plan {
                updates: vec![TableUpdate::SetSnapshotRef {
                    ref_name: tag.clone(),
                    reference: SnapshotReference::new(
                        target,
                        SnapshotRetention::Tag {
                            max_ref_age_ms: None,
                        },
                    ),
                }],
                requirements: vec![TableRequirement::RefSnapshotIdMatch {
                    r#ref: tag.clone(),
                    snapshot_id: None,
                }],
                new_snapshot_id: None,
            }
        }
        Operation::RemoveTag { name: tag } => {
            let Some(existing) = history::refs(metadata).into_iter().find(|r| r.name == *tag)
            else {
                return Ok(None);
            };
            if existing.kind != "tag" {
                return Err(CatalogError::invalid(
                    "remove a tag",
                    &name,
                    format!("`{tag}` is a branch, not a tag"),
                ));
            }
            Plan {
                updates: vec![TableUpdate::RemoveSnapshotRef {
                    ref_name: tag.clone(),
                }],
                requirements: vec![TableRequirement::RefSnapshotIdMatch {
                    r#ref: tag.clone(),
                    snapshot_id: Some(existing.snapshot_id),
                }],
                new_snapshot_id: None,
            }
        }
        Operation::EvolveSchema { changes } => {
            let Some(schema) = evolve_schema(
                metadata.current_schema(),
                metadata.last_column_id(),
                changes,
            )
            .map_err(|message| CatalogError::invalid("evolve the schema", &name, message))?
            else {
                return Ok(None);
            };
            Plan {
                updates: vec![
                    TableUpdate::AddSchema { schema },
                    TableUpdate::SetCurrentSchema { schema_id: -1 },
                ],
                requirements: vec![
                    TableRequirement::CurrentSchemaIdMatch {
                        current_schema_id: metadata.current_schema_id(),
                    },
                    TableRequirement::LastAssignedFieldIdMatch {
                        last_assigned_field_id: metadata.last_column_id(),
                    },
                ],
                new_snapshot_id: None,
            }
        }
        Operation::ExpireSnapshots {
            older_than_ms,
            retain_last,
        } => {
            let expired = expirable_snapshots(table, *older_than_ms, *retain_last);
            if expired.is_empty() {
                return Ok(None);
            }
            Plan {
                updates: vec![TableUpdate::RemoveSnapshots {
                    snapshot_ids: expired,
                }],
                requirements: main_unchanged(table),
                new_snapshot_id: None,
            }
        }
    };
    Ok(Some(plan))
}

/// Table property: delete the metadata files that fall out of the metadata log
/// (`write.metadata.previous-versions-max` long) after each commit, as Iceberg Java does.
pub const DELETE_METADATA_AFTER_COMMIT: &str = "write.metadata.delete-after-commit.enabled";

fn delete_after_commit(properties: &HashMap<String, String>) -> bool {
    properties
        .get(DELETE_METADATA_AFTER_COMMIT)
        .is_some_and(|value| value.eq_ignore_ascii_case("true"))
}

/// The metadata files the previous version knew (its log and itself) that the new version
/// no longer lists: nothing refers to them any more. Pure.
fn dropped_metadata_files(
    previous: &TableMetadata,
    previous_location: &str,
    new: &TableMetadata,
    new_location: &str,
) -> Vec<String> {
    let kept: HashSet<&str> = new
        .metadata_log()
        .iter()
        .map(|entry| entry.metadata_file.as_str())
        .chain([new_location])
        .collect();
    previous
        .metadata_log()
        .iter()
        .map(|entry| entry.metadata_file.as_str())
        .chain([previous_location])
        .filter(|file| !kept.contains(file))
        .map(str::to_string)
        .collect()
}

/// Snapshots older than the cutoff that nothing keeps alive: what
/// [`Operation::ExpireSnapshots`] with the same arguments would remove. Pure.
pub fn expirable_snapshots(table: &Table, older_than_ms: i64, retain_last: usize) -> Vec<i64> {
    let metadata_ref = table.metadata_ref();
    let mut keep: HashSet<i64> = history::main_lineage(&metadata_ref)
        .iter()
        .take(retain_last.max(1))
        .map(|s| s.snapshot_id())
        .collect();
    keep.extend(
        history::refs(table.metadata())
            .iter()
            .map(|r| r.snapshot_id),
    );
    let mut expired: Vec<i64> = table
        .metadata()
        .snapshots()
        .filter(|s| s.timestamp_ms() < older_than_ms && !keep.contains(&s.snapshot_id()))
        .map(|s| s.snapshot_id())
        .collect();
    expired.sort_unstable();
    expired
}

/// Applies schema changes to `current`; `Ok(None)` when every change is already in effect.
/// Pure. Field ids of existing columns never change; new columns get ids above
/// `last_column_id`.
pub fn evolve_schema(
    current: &Schema,
    last_column_id: i32,
    changes: &[SchemaChange],
) -> std::result::Result<Option<Schema>, String> {
    let mut fields: Vec<NestedField> = current
        .as_struct()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut next_id = last_column_id;
    let mut changed = false;
    for change in changes {
        match change {
            SchemaChange::AddColumn {
                name,
                field_type,
                doc,
            } => {
                if let Some(existing) = fields.iter().find(|f| f.name == *name) {
                    if *existing.field_type == *field_type {
                        continue;
                    }
                    return Err(format!(
                        "column `{name}` already exists as {} (wanted {field_type})",
                        existing.field_type
                    ));
                }
                if !matches!(field_type, Type::Primitive(_)) {
                    return Err(format!(
                        "column `{name}`: only primitive columns can be added"
                    ));
                }
                next_id += 1;
                let mut field = NestedField::optional(next_id, name.clone(), field_type.clone());
                if let Some(doc) = doc {
                    field = field.with_doc(doc.clone());
                }
                fields.push(field);
                changed = true;
            }
            SchemaChange::WidenColumn { name, to } => {
                let Some(existing) = fields.iter_mut().find(|f| f.name == *name) else {
                    return Err(format!("column `{name}` does not exist"));
                };
                let Type::Primitive(from) = existing.field_type.as_ref() else {
                    return Err(format!("column `{name}` is not a primitive column"));
                };
                if from == to {
                    continue;
                }
                if !is_widening(from, to) {
                    return Err(format!("column `{name}`: {from} cannot be widened to {to}"));
                }
                *existing.field_type = Type::Primitive(to.clone());
                changed = true;
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    let identifier_ids: Vec<i32> = current.identifier_field_ids().collect();
    Schema::builder()
        .with_schema_id(current.schema_id() + 1)
        .with_identifier_field_ids(identifier_ids)
        .with_fields(fields.into_iter().map(Arc::new))
        .build()
        .map(Some)
        .map_err(|err| err.to_string())
}

/// The type promotions the Iceberg spec allows.
pub fn is_widening(from: &PrimitiveType, to: &PrimitiveType) -> bool {
    match (from, to) {
        (PrimitiveType::Int, PrimitiveType::Long) => true,
        (PrimitiveType::Float, PrimitiveType::Double) => true,
        (
            PrimitiveType::Decimal {
                precision: p1,
                scale: s1,
            },
            PrimitiveType::Decimal {
                precision: p2,
                scale: s2,
            },
        ) => s1 == s2 && p2 >= p1,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::builder()
            .with_schema_id(0)
            .with_fields(vec![
                NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "qty", Type::Primitive(PrimitiveType::Int)).into(),
                NestedField::optional(
                    3,
                    "price",
                    Type::Primitive(PrimitiveType::Decimal {
                        precision: 10,
                        scale: 2,
                    }),
                )
                .into(),
            ])
            .build()
            .unwrap()
    }

    #[test]
    fn adds_columns_with_fresh_ids_and_widens_in_place() {
        let changes = vec![
            SchemaChange::AddColumn {
                name: "note".into(),
                field_type: Type::Primitive(PrimitiveType::String),
                doc: None,
            },
            SchemaChange::WidenColumn {
                name: "qty".into(),
                to: PrimitiveType::Long,
            },
            SchemaChange::WidenColumn {
                name: "price".into(),
                to: PrimitiveType::Decimal {
                    precision: 18,
                    scale: 2,
                },
            },
        ];
        let evolved = evolve_schema(&schema(), 3, &changes).unwrap().unwrap();
        let note = evolved.field_by_name("note").unwrap();
        assert_eq!(note.id, 4);
        assert!(!note.required);
        assert_eq!(evolved.field_by_name("qty").unwrap().id, 2);
        assert_eq!(
            *evolved.field_by_name("qty").unwrap().field_type,
            Type::Primitive(PrimitiveType::Long)
        );
        // Applying the same changes again is a no-op.
        assert!(evolve_schema(&evolved, 4, &changes).unwrap().is_none());
    }

    #[test]
    fn refuses_narrowing_and_incompatible_changes() {
        let narrow = [SchemaChange::WidenColumn {
            name: "price".into(),
            to: PrimitiveType::Decimal {
                precision: 8,
                scale: 2,
            },
        }];
        assert!(
            evolve_schema(&schema(), 3, &narrow)
                .unwrap_err()
                .contains("cannot be widened")
        );
        let rescale = [SchemaChange::WidenColumn {
            name: "price".into(),
            to: PrimitiveType::Decimal {
                precision: 12,
                scale: 3,
            },
        }];
        assert!(evolve_schema(&schema(), 3, &rescale).is_err());
        let retype = [SchemaChange::AddColumn {
            name: "qty".into(),
            field_type: Type::Primitive(PrimitiveType::String),
            doc: None,
        }];
        assert!(
            evolve_schema(&schema(), 3, &retype)
                .unwrap_err()
                .contains("already exists")
        );
        let to_string = [SchemaChange::WidenColumn {
            name: "id".into(),
            to: PrimitiveType::String,
        }];
        assert!(evolve_schema(&schema(), 3, &to_string).is_err());
    }
}
