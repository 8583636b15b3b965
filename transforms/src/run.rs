//! Running silver: the I/O shell around [`crate::silver::silver_plan`] and
//! [`crate::silver::incremental_silver_plan`]. Reads `bronze.<table>` at one pinned
//! snapshot (split by data file, [`crate::scan`]), runs the plan, writes the result as
//! Parquet data files of `silver.<table>` and commits them through [`Catalog::commit`] as an
//! overwrite of the partitions (tenants) it recomputed.
//!
//! # Full and incremental runs
//!
//! A full run reads all of bronze and replaces all of silver. An incremental run (the
//! default when possible) starts from the current silver snapshot, whose rows reflect the
//! bronze snapshot recorded in its summary (the base). When bronze only grew since the base
//! (the base is an ancestor of the input and every snapshot after it is an append), the run
//! reads the bronze data files added since, finds the tenants they touch, and recomputes
//! only those tenants from their previous silver rows, their older deletes and truncates and
//! the new events; the other tenants' files stay. It commits exactly the rows a full run
//! would (see [`crate::silver`] and the property test there). When the touched tenants hold
//! more than [`SilverOptions::max_incremental_share`] of the previous silver rows (from the
//! manifests' record counts), recomputing them would re-read most of silver plus their older
//! deletes, which costs more than one pass over bronze: the run goes full instead. Anything
//! else (a rollback or rewrite of bronze, no previous snapshot, a previous snapshot without
//! the lineage columns, `full`, even on an up-to-date input) runs full too; the report says
//! why ([`SilverReport::reason`]).
//!
//! `tenant` restricts a run to one tenant: only its bronze and silver partitions are read
//! and only its silver partition is replaced; the snapshot lists it in `firn.tenants`, and
//! [`crate::lineage`] tracks which bronze snapshot each tenant's rows reflect.
//!
//! # Lineage and idempotence
//!
//! Every silver snapshot records `firn.input-snapshots = {"bronze.<table>": <id>}` in its
//! summary, and `firn.mode` (full or incremental). A run whose input is the snapshot the
//! rows in scope were computed from does nothing ([`TransformStatus::UpToDate`]) unless it
//! is asked to run full. The commit
//! id is derived from the table, the tenant scope, the input snapshot and the silver
//! snapshot the run replaces, never from the clock, so a run retried after a crash or an
//! unknown commit outcome finds its own commit in the history
//! ([`TransformStatus::AlreadyCommitted`]) instead of committing twice. The replaced
//! snapshot is part of the id so that recomputing an older input after a rollback of bronze
//! is a new commit rather than a match with the first computation of that input.
//!
//! # Concurrency
//!
//! The commit re-validates that silver did not move while the run computed (for a tenant
//! run: that only other tenants' runs committed since); otherwise it is rejected (run it
//! again) rather than overwriting a newer result with an older one.
//!
//! # Schema
//!
//! `silver.<table>` is created on first use with the plan's output columns, typed as in
//! bronze (fresh field ids, only `tenant` required) and partitioned by `identity(tenant)`.
//! When bronze gains a column or widens one, silver gets the same change by schema
//! evolution before the data is written; a change that is not a widening is refused.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::{ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow_schema::SchemaRef;
use datafusion::arrow::compute::cast;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::Partitioning;
use datafusion::physical_plan::{ExecutionPlan, execute_stream, execute_stream_partitioned};
use datafusion::prelude::{DataFrame, Expr, SessionContext, ident, lit};
use firn_catalog::commit::is_widening;
use firn_catalog::history::{self, INPUT_SNAPSHOTS};
use firn_catalog::tables::{bronze_columns, derived_spec};
use firn_catalog::{
    Catalog, CommitOutcome, CommitRequest, CommitStatus, DataFileSink, Operation, OverwriteScope,
    SchemaChange, TableName, Tier,
};
use futures::StreamExt;
use iceberg::expr::{Predicate, Reference};
use iceberg::spec::{
    DataFile, Datum, Literal, NestedField, Schema, Struct, Transform, Type, UnboundPartitionSpec,
};
use iceberg::table::Table;

use crate::engine::EngineOptions;
use crate::error::TransformError;
use crate::lineage::{self, BASE_INPUT, MODE, TENANTS};
use crate::scan::{FileSelection, SnapshotTable, data_files, record_count};
use crate::silver::{SILVER_LINEAGE_COLUMNS, SILVER_TENANT, incremental_silver_plan, silver_plan};

/// Default size at which silver data files roll over.
pub const DEFAULT_TARGET_FILE_SIZE: u64 = 128 * 1024 * 1024;

/// Default [`SilverOptions::max_incremental_share`].
pub const DEFAULT_MAX_INCREMENTAL_SHARE: f64 = 0.5;

/// How to run silver for one table.
#[derive(Debug, Clone)]
pub struct SilverOptions {
    /// The bronze snapshot to compute from; the current snapshot of `main` when `None`.
    pub as_of: Option<i64>,
    /// The source table's primary-key columns.
    pub key_columns: Vec<String>,
    /// Data files roll over at about this many bytes.
    pub target_file_size: u64,
    /// Recompute from all of bronze even when an incremental run is possible.
    pub full: bool,
    /// Compute only this tenant: read and replace only its partitions.
    pub tenant: Option<String>,
    /// An incremental run whose changed tenants hold more than this share of the previous
    /// silver rows (in scope) runs full instead: it would re-read nearly all of silver plus
    /// the older deletes, which costs more than reading bronze once.
    pub max_incremental_share: f64,
    /// Partitions, memory pool and spill directory.
    pub engine: EngineOptions,
}

impl SilverOptions {
    pub fn new(key_columns: Vec<String>) -> Self {
        SilverOptions {
            as_of: None,
            key_columns,
            target_file_size: DEFAULT_TARGET_FILE_SIZE,
            full: false,
            tenant: None,
            max_incremental_share: DEFAULT_MAX_INCREMENTAL_SHARE,
            engine: EngineOptions::default(),
        }
    }
}

/// What a silver or gold run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransformStatus {
    /// This run committed a new snapshot of the output.
    Committed,
    /// A snapshot with this run's commit id already existed (a retry of a landed run).
    AlreadyCommitted,
    /// The output's current snapshot was computed from these inputs: nothing to do.
    UpToDate,
    /// An input table does not exist or has no snapshot yet: nothing to compute from.
    NoInput,
}

impl TransformStatus {
    /// The status of a run whose overwrite commit ended with `status`.
    pub(crate) fn from_commit(status: &CommitStatus) -> TransformStatus {
        match status {
            CommitStatus::Committed | CommitStatus::CommittedResolvedFromHistory => {
                TransformStatus::Committed
            }
            CommitStatus::AlreadyCommitted | CommitStatus::NothingToDo => {
                TransformStatus::AlreadyCommitted
            }
        }
    }

    /// Whether the output holds a snapshot computed by this run or an identical earlier one.
    pub fn committed(self) -> bool {
        matches!(
            self,
            TransformStatus::Committed | TransformStatus::AlreadyCommitted
        )
    }
}

/// How a silver run computed its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilverMode {
    /// From all of bronze (in scope).
    Full,
    /// From the previous silver rows and the bronze data files added since `base`.
    Incremental { base: i64 },
}

impl SilverMode {
    pub fn name(self) -> &'static str {
        match self {
            SilverMode::Full => "full",
            SilverMode::Incremental { .. } => "incremental",
        }
    }
}

/// One input a run read: which table, at which snapshot, what part of it, how many rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRead {
    pub table: String,
    pub snapshot_id: i64,
    /// `all`, `added files`, `tenants of added files`, `older deletes and truncates`,
    /// `previous rows`.
    pub part: &'static str,
    pub rows: u64,
}

/// Report of one silver run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilverReport {
    /// `silver.<table>`.
    pub table: String,
    /// `bronze.<table>`.
    pub input_table: String,
    pub input_snapshot_id: Option<i64>,
    pub status: TransformStatus,
    /// How the rows were computed; `None` when nothing was computed.
    pub mode: Option<SilverMode>,
    /// Why the run chose `mode` (e.g. why it ran full).
    pub reason: Option<String>,
    /// The tenants whose partitions were replaced; `None` for the whole table.
    pub tenants: Option<Vec<String>>,
    /// What was read, with row counts (empty unless rows were computed).
    pub reads: Vec<InputRead>,
    /// The silver snapshot holding this input's result (the new one, the one found in the
    /// history, or the current one when up to date).
    pub snapshot_id: Option<i64>,
    /// Rows and data files written by this run (0 unless `Committed`).
    pub rows: u64,
    pub data_files: usize,
    /// What the plan spilled to disk under the memory pool.
    pub spilled: Spilled,
}

/// Whether recomputing tenants that hold `changed_rows` of `all_rows` previous silver rows
/// costs more than a full rebuild: their share is above `max_share`. Pure.
pub fn incremental_too_costly(changed_rows: u64, all_rows: u64, max_share: f64) -> bool {
    all_rows > 0 && changed_rows as f64 > max_share * all_rows as f64
}

/// `column IN (values)` over strings, for DataFusion.
fn is_in(column: &str, values: &BTreeSet<String>) -> Expr {
    ident(column).in_list(values.iter().map(|v| lit(v.as_str())).collect(), false)
}

/// `column IN (values)` over strings, for Iceberg pruning.
fn iceberg_in(column: &str, values: &BTreeSet<String>) -> Predicate {
    Reference::new(column).is_in(values.iter().map(|v| Datum::string(v.as_str())))
}

/// The rows a scan read so far, for the report.
struct Counted {
    table: String,
    snapshot_id: i64,
    part: &'static str,
    rows: Arc<AtomicU64>,
}

impl Counted {
    fn report(&self) -> InputRead {
        InputRead {
            table: self.table.clone(),
            snapshot_id: self.snapshot_id,
            part: self.part,
            rows: self.rows.load(Ordering::Relaxed),
        }
    }
}

/// Registers a scan as a DataFrame, restricted to `tenants` (files pruned in the scan, rows
/// filtered exactly in the plan by a hash lookup) when given, and remembers it for the
/// report.
fn read(
    ctx: &SessionContext,
    scan: SnapshotTable,
    tenant_column: &str,
    tenants: Option<&BTreeSet<String>>,
    counted: &mut Vec<Counted>,
    (table, snapshot_id, part): (&TableName, i64, &'static str),
) -> Result<DataFrame, TransformError> {
    let scan = match tenants {
        Some(tenants) => scan.with_file_filter(tenant_column, iceberg_in(tenant_column, tenants)),
        None => scan,
    };
    counted.push(Counted {
        table: table.to_string(),
        snapshot_id,
        part,
        rows: scan.rows_read(),
    });
    let frame = ctx.read_table(Arc::new(scan))?;
    Ok(match tenants {
        Some(tenants) => frame.filter(is_in(tenant_column, tenants))?,
        None => frame,
    })
}

/// Computes `silver.<table>` from `bronze.<table>`; see the module docs.
pub async fn run_silver(
    catalog: &Catalog,
    table: &str,
    options: SilverOptions,
) -> Result<SilverReport, TransformError> {
    let bronze_name = TableName::new(Tier::Bronze, table)?;
    let silver_name = TableName::new(Tier::Silver, table)?;
    let bronze = catalog.load_table(&bronze_name).await?;
    let mut report = SilverReport {
        table: silver_name.to_string(),
        input_table: bronze_name.to_string(),
        input_snapshot_id: None,
        status: TransformStatus::NoInput,
        mode: None,
        reason: None,
        tenants: None,
        reads: Vec::new(),
        snapshot_id: None,
        rows: 0,
        data_files: 0,
        spilled: Spilled::default(),
    };
    let input = match options.as_of {
        Some(id) if bronze.metadata().snapshot_by_id(id).is_some() => id,
        Some(snapshot_id) => {
            return Err(TransformError::UnknownSnapshot {
                table: bronze_name.to_string(),
                snapshot_id,
            });
        }
        None => match bronze.metadata().current_snapshot_id() {
            Some(id) => id,
            None => {
                tracing::info!(table = %bronze_name, "no bronze snapshot yet; nothing to compute");
                return Ok(report);
            }
        },
    };
    report.input_snapshot_id = Some(input);
    let scope: Option<BTreeSet<String>> = options
        .tenant
        .as_ref()
        .map(|tenant| BTreeSet::from([tenant.clone()]));

    // The bronze snapshots the rows in scope reflect, from silver's lineage.
    let existing = catalog.try_load_table(&silver_name).await?;
    let covering = existing
        .as_ref()
        .map(|silver| lineage::covering(&silver.metadata_ref(), options.tenant.as_deref()))
        .unwrap_or_default();
    let bases: Option<Vec<i64>> = covering
        .iter()
        .map(|snapshot| {
            history::input_snapshots(&snapshot.summary().additional_properties)
                .get(&bronze_name.to_string())
                .copied()
        })
        .collect();
    let bases = bases.filter(|bases| !bases.is_empty());
    // `--full` recomputes even an up-to-date input.
    if !options.full
        && let Some(bases) = &bases
        && bases.iter().all(|base| *base == input)
        && let Some(current) = existing
            .as_ref()
            .and_then(|t| t.metadata().current_snapshot())
    {
        tracing::info!(table = %silver_name, input, tenant = ?options.tenant, "silver is up to date");
        report.status = TransformStatus::UpToDate;
        report.snapshot_id = Some(current.snapshot_id());
        return Ok(report);
    }
    let silver_current = existing
        .as_ref()
        .and_then(|silver| silver.metadata().current_snapshot());
    // Incremental needs the previous rows' place in the event order (the lineage columns).
    let has_lineage =
        existing
            .as_ref()
            .zip(silver_current.as_ref())
            .is_some_and(|(silver, snapshot)| {
                snapshot.schema(silver.metadata()).is_ok_and(|schema| {
                    std::iter::once(SILVER_TENANT)
                        .chain(SILVER_LINEAGE_COLUMNS)
                        .all(|column| schema.field_by_name(column).is_some())
                })
            });
    let (mut mode, mut reason) = match (&bases, options.full, has_lineage) {
        (_, true, _) => (SilverMode::Full, "a full rebuild was asked for".to_string()),
        (None, _, _) => (
            SilverMode::Full,
            "no previous silver rows computed from this bronze table".to_string(),
        ),
        (Some(_), _, false) => (
            SilverMode::Full,
            "the previous silver snapshot lacks the lineage columns".to_string(),
        ),
        (Some(bases), false, true) => {
            match lineage::appended_since(&bronze.metadata_ref(), bases, input) {
                Some(base) => (
                    SilverMode::Incremental { base },
                    format!("bronze only grew since snapshot {base}"),
                ),
                None => (
                    SilverMode::Full,
                    "bronze was rewritten or rolled back since the previous input".to_string(),
                ),
            }
        }
    };
    tracing::info!(table = %silver_name, input, mode = mode.name(), reason, tenant = ?options.tenant, "computing silver");

    let ctx = options.engine.session()?;
    let partitions = options.engine.partitions;
    let bronze_scan = || {
        // Split by tenant: silver groups by (tenant, key), so each partition aggregates its
        // tenants alone (crate::scan).
        SnapshotTable::try_new(bronze.clone(), input, partitions)
            .map(|scan| scan.with_split_by(bronze_columns::TENANT))
            .map_err(TransformError::iceberg("open snapshot", &bronze_name))
    };
    let mut counted = Vec::new();
    let mut plan = None;
    let mut replaced = scope.clone();
    if let SilverMode::Incremental { base } = mode {
        let old_files = Arc::new(
            data_files(&bronze, base)
                .await
                .map_err(TransformError::iceberg("plan scan", &bronze_name))?,
        );
        let added = || {
            Ok::<_, TransformError>(
                bronze_scan()?.with_files(FileSelection::Except(old_files.clone())),
            )
        };
        // The tenants the added files touch (a scan of their tenant column only).
        let touched = read(
            &ctx,
            added()?,
            bronze_columns::TENANT,
            scope.as_ref(),
            &mut counted,
            (&bronze_name, input, "tenants of added files"),
        )?
        .select(vec![ident(bronze_columns::TENANT)])?
        .distinct()?
        .collect()
        .await?;
        let mut changed = BTreeSet::new();
        for batch in &touched {
            let column = cast(batch.column(0), &arrow_schema::DataType::Utf8).map_err(|err| {
                datafusion::error::DataFusionError::ArrowError(Box::new(err), None)
            })?;
            if let Some(values) = column.as_any().downcast_ref::<StringArray>() {
                changed.extend(values.iter().flatten().map(str::to_string));
            }
        }
        tracing::info!(table = %silver_name, base, tenants = changed.len(), "tenants with new bronze events");
        let (silver_table, silver_snapshot) = existing
            .clone()
            .zip(silver_current.as_ref().map(|s| s.snapshot_id()))
            .ok_or_else(|| TransformError::InvalidInput {
                table: silver_name.to_string(),
                message: "no previous snapshot for an incremental run".into(),
            })?;
        // The previous rows the changed tenants hold, against all previous rows in scope
        // (from the manifests: silver is partitioned by tenant).
        let silver_rows = |tenants: Option<&BTreeSet<String>>| {
            record_count(
                &silver_table,
                silver_snapshot,
                tenants.map(|tenants| iceberg_in(SILVER_TENANT, tenants)),
            )
        };
        let (changed_rows, all_rows) = if changed.is_empty() {
            (0, 0)
        } else {
            (
                silver_rows(Some(&changed))
                    .await
                    .map_err(TransformError::iceberg("plan scan", &silver_name))?,
                silver_rows(scope.as_ref())
                    .await
                    .map_err(TransformError::iceberg("plan scan", &silver_name))?,
            )
        };
        if incremental_too_costly(changed_rows, all_rows, options.max_incremental_share) {
            mode = SilverMode::Full;
            reason = format!(
                "the {} tenants with new events hold {changed_rows} of {all_rows} previous rows, \
                 more than the incremental limit of {:.0} %: a full rebuild is cheaper",
                changed.len(),
                options.max_incremental_share * 100.0
            );
            tracing::info!(table = %silver_name, reason, "running full instead");
        } else if changed.is_empty() {
            // Bronze moved without new rows in scope: commit the new input only.
            replaced = Some(changed);
        } else {
            let delta = read(
                &ctx,
                added()?,
                bronze_columns::TENANT,
                Some(&changed),
                &mut counted,
                (&bronze_name, input, "added files"),
            )?;
            // Deletes and truncates are a few percent of the events: the op predicate
            // filters rows in the reader (only the op column is decoded for the others);
            // the tenants only prune files.
            let older_scan = bronze_scan()?
                .with_files(FileSelection::Only(old_files.clone()))
                .with_predicate(
                    Reference::new(bronze_columns::OP)
                        .is_in([Datum::string("d"), Datum::string("t")]),
                );
            let older = read(
                &ctx,
                older_scan,
                bronze_columns::TENANT,
                Some(&changed),
                &mut counted,
                (&bronze_name, input, "older deletes and truncates"),
            )?;
            let previous = read(
                &ctx,
                SnapshotTable::try_new(silver_table, silver_snapshot, partitions)
                    .map(|scan| scan.with_split_by(SILVER_TENANT))
                    .map_err(TransformError::iceberg("open snapshot", &silver_name))?,
                SILVER_TENANT,
                Some(&changed),
                &mut counted,
                (&silver_name, silver_snapshot, "previous rows"),
            )?;
            plan = Some(incremental_silver_plan(
                previous,
                older,
                delta,
                &options.key_columns,
            ));
            replaced = Some(changed);
        }
    }
    if mode == SilverMode::Full {
        let frame = read(
            &ctx,
            bronze_scan()?,
            bronze_columns::TENANT,
            scope.as_ref(),
            &mut counted,
            (&bronze_name, input, "all"),
        )?;
        plan = Some(silver_plan(frame, &options.key_columns));
    }
    report.mode = Some(mode);
    report.reason = Some(reason);
    let plan = plan.transpose().map_err(|err| match err.find_root() {
        datafusion::error::DataFusionError::Plan(message) => TransformError::InvalidInput {
            table: bronze_name.to_string(),
            message: message.clone(),
        },
        _ => TransformError::DataFusion(err),
    })?;

    let input_schema = bronze
        .metadata()
        .snapshot_by_id(input)
        .and_then(|snapshot| snapshot.schema(bronze.metadata()).ok())
        .unwrap_or_else(|| bronze.metadata().current_schema().clone());
    let silver = match (&plan, existing) {
        (Some(plan), existing) => {
            let output_columns: Vec<String> = plan
                .schema()
                .fields()
                .iter()
                .map(|field| field.name().clone())
                .collect();
            let schema = silver_schema(&output_columns, &input_schema).map_err(|message| {
                TransformError::InvalidInput {
                    table: bronze_name.to_string(),
                    message,
                }
            })?;
            prepare_output(
                catalog,
                &silver_name,
                existing,
                schema,
                &[SILVER_TENANT.to_string()],
            )
            .await?
        }
        (None, Some(existing)) => existing,
        (None, None) => {
            return Err(TransformError::InvalidInput {
                table: silver_name.to_string(),
                message: "no previous snapshot for an incremental run".into(),
            });
        }
    };

    let base = silver.metadata().current_snapshot_id();
    let tenant_part = options
        .tenant
        .as_ref()
        .map(|tenant| format!("/tenant-{tenant}"))
        .unwrap_or_default();
    let commit_id = format!(
        "silver/{table}{tenant_part}/input-{input}/base-{}",
        base.map_or_else(|| "none".to_string(), |id| id.to_string())
    );
    if let Some(snapshot) = history::find_commit(silver.metadata(), &commit_id) {
        report.status = TransformStatus::AlreadyCommitted;
        report.snapshot_id = Some(snapshot.snapshot_id());
        return Ok(report);
    }

    let (rows, files, spilled) = match plan {
        Some(plan) => {
            write_plan(&silver, plan, options.target_file_size, Some(SILVER_TENANT)).await?
        }
        None => (0, Vec::new(), Spilled::default()),
    };
    report.spilled = spilled;
    report.rows = rows;
    report.data_files = files.len();
    report.reads = counted.iter().map(Counted::report).collect();
    report.tenants = replaced.as_ref().map(|t| t.iter().cloned().collect());

    let overwrite = match &replaced {
        None => OverwriteScope::All,
        Some(tenants) => OverwriteScope::Partitions(
            tenants
                .iter()
                .map(|tenant| Struct::from_iter([Some(Literal::string(tenant.as_str()))]))
                .collect(),
        ),
    };
    let mut properties = vec![
        (
            INPUT_SNAPSHOTS.to_string(),
            serde_json::json!({ bronze_name.to_string(): input }).to_string(),
        ),
        (MODE.to_string(), mode.name().to_string()),
    ];
    if let SilverMode::Incremental { base } = mode {
        properties.push((BASE_INPUT.to_string(), base.to_string()));
    }
    if let Some(scope) = &scope {
        properties.push((TENANTS.to_string(), serde_json::json!(scope).to_string()));
    }
    let outcome = commit_overwrite(
        catalog,
        &silver_name,
        CommitScope {
            files,
            overwrite,
            base,
            tenant: options.tenant.clone(),
        },
        commit_id,
        properties,
    )
    .await?;
    report.snapshot_id = outcome.snapshot_id;
    report.status = TransformStatus::from_commit(&outcome.status);
    if report.status == TransformStatus::AlreadyCommitted {
        report.rows = 0;
        report.data_files = 0;
    }
    tracing::info!(
        table = %silver_name,
        input,
        mode = mode.name(),
        tenants = ?report.tenants,
        status = ?report.status,
        rows = report.rows,
        files = report.data_files,
        "silver run finished"
    );
    Ok(report)
}

/// The silver Iceberg schema: the plan's columns typed as in bronze, with fresh field ids.
/// Pure.
pub fn silver_schema(columns: &[String], bronze: &Schema) -> Result<Schema, String> {
    let fields = columns
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let bronze_name = if name == SILVER_TENANT {
                bronze_columns::TENANT
            } else {
                name.as_str()
            };
            let source = bronze
                .field_by_name(bronze_name)
                .ok_or_else(|| format!("column `{bronze_name}` is not in the bronze schema"))?;
            let id = i32::try_from(index + 1).map_err(|_| "too many columns".to_string())?;
            let field_type: Type = (*source.field_type).clone();
            let mut field = if name == SILVER_TENANT {
                NestedField::required(id, name.clone(), field_type)
            } else {
                NestedField::optional(id, name.clone(), field_type)
            };
            if let Some(doc) = &source.doc {
                field = field.with_doc(doc.clone());
            }
            Ok(Arc::new(field))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Schema::builder()
        .with_schema_id(0)
        .with_fields(fields)
        .build()
        .map_err(|err| err.to_string())
}

/// Schema changes that make `current` hold `wanted`'s columns. Pure.
pub fn schema_changes(current: &Schema, wanted: &Schema) -> Result<Vec<SchemaChange>, String> {
    let mut changes = Vec::new();
    for field in wanted.as_struct().fields() {
        match current.field_by_name(&field.name) {
            None => changes.push(SchemaChange::AddColumn {
                name: field.name.clone(),
                field_type: (*field.field_type).clone(),
                doc: field.doc.clone(),
            }),
            Some(existing) if existing.field_type == field.field_type => {}
            Some(existing) => match (existing.field_type.as_ref(), field.field_type.as_ref()) {
                (Type::Primitive(from), Type::Primitive(to)) if is_widening(from, to) => {
                    changes.push(SchemaChange::WidenColumn {
                        name: field.name.clone(),
                        to: to.clone(),
                    });
                }
                (from, to) => {
                    return Err(format!(
                        "column `{}` is {from} in the table but {to} in the new output",
                        field.name
                    ));
                }
            },
        }
    }
    Ok(changes)
}

/// Creates a derived table (silver or gold) if missing, partitioned by identity transforms
/// of `partition_by`, or evolves its schema to hold the plan's columns.
pub(crate) async fn prepare_output(
    catalog: &Catalog,
    name: &TableName,
    existing: Option<Table>,
    schema: Schema,
    partition_by: &[String],
) -> Result<Table, TransformError> {
    let Some(table) = existing else {
        let mut partition_spec = UnboundPartitionSpec::builder().with_spec_id(0);
        for column in partition_by {
            let field =
                schema
                    .field_by_name(column)
                    .ok_or_else(|| TransformError::IncompatibleOutput {
                        table: name.to_string(),
                        message: format!("partition column `{column}` is not in the output"),
                    })?;
            partition_spec = partition_spec
                .add_partition_field(field.id, column, Transform::Identity)
                .map_err(TransformError::iceberg("build partition spec", name))?;
        }
        let (table, created) = catalog
            .create_table(&derived_spec(name.clone(), schema, partition_spec.build()))
            .await?;
        if created {
            tracing::info!(table = %name, "created derived table");
        }
        return Ok(table);
    };
    let changes =
        schema_changes(table.metadata().current_schema(), &schema).map_err(|message| {
            TransformError::IncompatibleOutput {
                table: name.to_string(),
                message,
            }
        })?;
    if changes.is_empty() {
        return Ok(table);
    }
    tracing::info!(table = %name, ?changes, "evolving the table schema");
    let outcome = catalog
        .commit(
            name,
            CommitRequest::new(Operation::EvolveSchema { changes }),
        )
        .await?;
    Ok(outcome.table)
}

/// A progress line every this many rows written.
const PROGRESS_ROWS: u64 = 1_000_000;

/// What DataFusion's spilling operators wrote to disk during a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spilled {
    /// Spill files written.
    pub count: u64,
    pub bytes: u64,
}

impl Spilled {
    /// The spills of every operator of an executed plan.
    fn of(plan: &dyn ExecutionPlan) -> Spilled {
        let own = plan
            .metrics()
            .map_or(Spilled::default(), |metrics| Spilled {
                count: metrics.spill_count().unwrap_or(0) as u64,
                bytes: metrics.spilled_bytes().unwrap_or(0) as u64,
            });
        plan.children()
            .into_iter()
            .map(|child| Spilled::of(child.as_ref()))
            .fold(own, |a, b| Spilled {
                count: a.count + b.count,
                bytes: a.bytes + b.bytes,
            })
    }
}

/// Executes `plan` and writes its rows as data files of `table` (conformed to the table's
/// schema); returns the rows written, the files (not yet committed) and what the plan
/// spilled. With `split_by` (a partition column of `table`), the rows are hash-partitioned
/// by it and every plan partition is written by its own task, so that encoding and
/// compressing Parquet uses every core while each table partition still gets its files
/// from one writer.
pub(crate) async fn write_plan(
    table: &Table,
    plan: DataFrame,
    target_file_size: u64,
    split_by: Option<&str>,
) -> Result<(u64, Vec<DataFile>, Spilled), TransformError> {
    let partitions = plan.task_ctx().session_config().target_partitions();
    let plan = match split_by {
        Some(column) if partitions > 1 => {
            plan.repartition(Partitioning::Hash(vec![ident(column)], partitions))?
        }
        _ => plan,
    };
    let task = Arc::new(plan.task_ctx());
    let physical = plan.create_physical_plan().await?;
    let streams = match split_by {
        Some(_) => execute_stream_partitioned(physical.clone(), task)?,
        None => vec![execute_stream(physical.clone(), task)?],
    };
    let written = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            tokio::spawn(write_stream(
                table.clone(),
                stream,
                target_file_size,
                written.clone(),
            ))
        })
        .collect();
    let mut rows = 0;
    let mut files = Vec::new();
    for writer in futures::future::join_all(writers).await {
        let (written, written_files) = writer
            .map_err(|err| datafusion::error::DataFusionError::ExecutionJoin(Box::new(err)))??;
        rows += written;
        files.extend(written_files);
    }
    let spilled = Spilled::of(physical.as_ref());
    if spilled.count > 0 {
        tracing::info!(table = %table.identifier(), spills = spilled.count, bytes = spilled.bytes, "the plan spilled to disk");
    }
    Ok((rows, files, spilled))
}

/// Writes one stream of plan batches into data files of `table`; `written` counts the rows
/// of every writer of the run, for progress lines.
async fn write_stream(
    table: Table,
    mut stream: SendableRecordBatchStream,
    target_file_size: u64,
    written: Arc<AtomicU64>,
) -> Result<(u64, Vec<DataFile>), TransformError> {
    let mut sink = DataFileSink::new(&table, target_file_size).await?;
    let target = sink.arrow_schema().clone();
    while let Some(batch) = stream.next().await {
        let batch = conform(&batch?, &target)?;
        if batch.num_rows() == 0 {
            continue;
        }
        let rows = batch.num_rows() as u64;
        sink.write(batch).await?;
        let before = written.fetch_add(rows, Ordering::Relaxed);
        if (before + rows) / PROGRESS_ROWS > before / PROGRESS_ROWS {
            tracing::info!(table = %table.identifier(), rows = before + rows, "writing");
        }
    }
    let rows = sink.rows();
    Ok((rows, sink.finish().await?))
}

/// What an overwrite commit replaces, and what it must find when it lands.
pub(crate) struct CommitScope {
    /// The new data files.
    pub files: Vec<DataFile>,
    /// The data files they replace.
    pub overwrite: OverwriteScope,
    /// The snapshot the run started from.
    pub base: Option<i64>,
    /// For a tenant run: the tenant; the table may then have moved by other tenants' runs.
    pub tenant: Option<String>,
}

/// Commits an overwrite of `name` with the given commit id and summary properties,
/// provided the table did not move since `scope.base` (the snapshot the run started from)
/// or, for a tenant run, moved only by runs over other tenants; a concurrent newer result
/// is never overwritten by an older one.
pub(crate) async fn commit_overwrite(
    catalog: &Catalog,
    name: &TableName,
    scope: CommitScope,
    commit_id: String,
    properties: Vec<(String, String)>,
) -> Result<CommitOutcome, TransformError> {
    let display = name.to_string();
    let CommitScope {
        files,
        overwrite,
        base,
        tenant,
    } = scope;
    let mut request = CommitRequest::new(Operation::Overwrite {
        files,
        scope: overwrite,
    })
    .with_commit_id(commit_id);
    for (key, value) in properties {
        request = request.with_property(key, value);
    }
    let request = request.with_validator(move |table| {
        let metadata = table.metadata_ref();
        let current = metadata.current_snapshot_id();
        let unmoved = match &tenant {
            None => current == base,
            Some(tenant) => lineage::moved_only_other_tenants(&metadata, base, tenant),
        };
        if unmoved {
            Ok(())
        } else {
            Err(format!(
                "{display} moved from snapshot {base:?} to {current:?} while this run computed; run again"
            ))
        }
    });
    Ok(catalog.commit(name, request).await?)
}

/// Reshapes a plan batch into the table's Arrow schema (with field ids): columns by name,
/// cast where the types differ, nulls for table columns the plan does not produce.
pub fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, TransformError> {
    let columns = target
        .fields()
        .iter()
        .map(|field| -> Result<ArrayRef, TransformError> {
            let Ok(index) = batch.schema().index_of(field.name()) else {
                return Ok(new_null_array(field.data_type(), batch.num_rows()));
            };
            let column = batch.column(index);
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                Ok(cast(column, field.data_type()).map_err(|err| {
                    datafusion::error::DataFusionError::ArrowError(Box::new(err), None)
                })?)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(target.clone(), columns)
        .map_err(|err| datafusion::error::DataFusionError::ArrowError(Box::new(err), None))?)
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, Int32Array, StringArray};
    use arrow_schema::{DataType, Field};
    use iceberg::spec::PrimitiveType;

    use super::*;

    fn bronze_schema() -> Schema {
        let field = |id, name: &str, kind| NestedField::optional(id, name, Type::Primitive(kind));
        Schema::builder()
            .with_schema_id(0)
            .with_fields(vec![
                NestedField::required(
                    1,
                    bronze_columns::TENANT,
                    Type::Primitive(PrimitiveType::String),
                )
                .into(),
                field(3, bronze_columns::SOURCE_TS, PrimitiveType::Timestamptz).into(),
                field(4, bronze_columns::SOURCE_POS, PrimitiveType::String).into(),
                field(9, "id", PrimitiveType::Long).into(),
                field(10, "qty", PrimitiveType::Int).into(),
            ])
            .build()
            .unwrap()
    }

    fn columns(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn silver_schema_types_columns_as_in_bronze_with_fresh_ids() {
        let names = columns(&[
            "tenant",
            "id",
            "qty",
            bronze_columns::SOURCE_TS,
            bronze_columns::SOURCE_POS,
        ]);
        let schema = silver_schema(&names, &bronze_schema()).unwrap();
        let tenant = schema.field_by_name("tenant").unwrap();
        assert_eq!((tenant.id, tenant.required), (1, true));
        let qty = schema.field_by_name("qty").unwrap();
        assert_eq!((qty.id, qty.required), (3, false));
        assert_eq!(*qty.field_type, Type::Primitive(PrimitiveType::Int));
        let err = silver_schema(&columns(&["tenant", "nope"]), &bronze_schema()).unwrap_err();
        assert!(err.contains("`nope`"), "{err}");
    }

    #[test]
    fn schema_changes_add_columns_widen_and_refuse_the_rest() {
        let names = columns(&["tenant", "id", "qty"]);
        let current = silver_schema(&names, &bronze_schema()).unwrap();
        assert!(schema_changes(&current, &current).unwrap().is_empty());

        let wider = Schema::builder()
            .with_fields(vec![
                NestedField::required(1, "tenant", Type::Primitive(PrimitiveType::String)).into(),
                NestedField::optional(2, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(3, "qty", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(4, "note", Type::Primitive(PrimitiveType::String)).into(),
            ])
            .build()
            .unwrap();
        let changes = schema_changes(&current, &wider).unwrap();
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(matches!(&changes[0], SchemaChange::WidenColumn { name, .. } if name == "qty"));
        assert!(matches!(&changes[1], SchemaChange::AddColumn { name, .. } if name == "note"));

        let retyped = Schema::builder()
            .with_fields(vec![
                NestedField::optional(2, "id", Type::Primitive(PrimitiveType::String)).into(),
            ])
            .build()
            .unwrap();
        let err = schema_changes(&current, &retyped).unwrap_err();
        assert!(err.contains("column `id`"), "{err}");
    }

    #[test]
    fn conform_reorders_casts_and_fills_missing_columns() {
        let batch = RecordBatch::try_new(
            Arc::new(arrow_schema::Schema::new(vec![
                Field::new("qty", DataType::Int32, true),
                Field::new("tenant", DataType::Utf8View, false),
            ])),
            vec![
                Arc::new(Int32Array::from(vec![Some(1), None])),
                Arc::new(arrow_array::StringViewArray::from(vec!["acme", "globex"])),
            ],
        )
        .unwrap();
        let target: SchemaRef = Arc::new(arrow_schema::Schema::new(vec![
            Field::new("tenant", DataType::Utf8, false),
            Field::new("qty", DataType::Int64, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        let out = conform(&batch, &target).unwrap();
        assert_eq!(out.schema(), target);
        let tenant = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(tenant.value(1), "globex");
        assert_eq!(out.column(1).null_count(), 1);
        assert_eq!(out.column(2).null_count(), 2);
    }
}
