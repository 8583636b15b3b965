//! Running gold: the I/O shell around the model registry in [`crate::gold`]. Pins the
//! current snapshot of every table a model reads (or the snapshots given with `as_of`),
//! runs the model's SQL over those snapshots with DataFusion (scans split by data file,
//! [`crate::scan`]), checks the declared key, writes the result as Parquet data files of
//! `gold.<model>` and commits them through [`firn_catalog::Catalog::commit`] as an overwrite
//! of the whole table, or with `tenant` of that tenant's partition only (its inputs are read
//! for that tenant only; the snapshot lists it in `firn.tenants`, see [`crate::lineage`]).
//!
//! # Lineage and idempotence
//!
//! Every gold snapshot records `firn.input-snapshots = {"silver.orders": <id>, ...}` (every
//! input's pinned snapshot) and `firn.model-fingerprint` ([`model_fingerprint`]: the SQL,
//! key and partitioning). A run whose pinned inputs and fingerprint equal the current gold
//! snapshot's (for a tenant run: the newest snapshot covering the tenant) does nothing
//! ([`TransformStatus::UpToDate`]). The commit id is derived from the
//! model, its fingerprint, the pinned inputs and the gold snapshot the run replaces, never
//! from the clock, so a retried run finds its own commit ([`TransformStatus::AlreadyCommitted`]).
//! As in silver, the commit is refused when gold moved while the run computed.
//!
//! # Schema
//!
//! `gold.<model>` is created on first use from the query's output columns (Arrow types
//! mapped to Iceberg, every column optional, fresh field ids), partitioned by identity
//! transforms of the model's `partition_by`. Later runs add new columns and widen types by
//! schema evolution; anything else is refused. The partition spec is fixed at creation.
//!
//! # Key
//!
//! The declared key must be unique and non-null in every result; a model that breaks it is
//! refused as bad input with an example key, and nothing is committed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow_schema::Field;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::prelude::{DataFrame, Expr, ident, lit};
use datafusion::sql::TableReference;
use firn_catalog::OverwriteScope;
use firn_catalog::config::PipelineConfig;
use firn_catalog::history::{self, INPUT_SNAPSHOTS};
use firn_catalog::{Catalog, TableName};
use iceberg::arrow::arrow_schema_to_schema_auto_assign_ids;
use iceberg::expr::Reference;
use iceberg::spec::Schema;
use iceberg::spec::{Datum, Literal, Struct};

use crate::engine::EngineOptions;
use crate::error::TransformError;
use crate::gold::{GoldModel, model_fingerprint, model_sql_path, run_order};
use crate::lineage::{self, TENANTS};
use crate::run::{
    CommitScope, DEFAULT_TARGET_FILE_SIZE, InputRead, TransformStatus, commit_overwrite,
    prepare_output, write_plan,
};
use crate::scan::SnapshotTable;
use crate::silver::SILVER_TENANT;

/// Summary key: the [`model_fingerprint`] of the model that computed a gold snapshot.
pub const MODEL_FINGERPRINT: &str = "firn.model-fingerprint";

/// How to run one gold model.
#[derive(Debug, Clone)]
pub struct GoldOptions {
    /// Data files roll over at about this many bytes.
    pub target_file_size: u64,
    /// Input snapshots to read instead of the current ones: each id pins the input table
    /// that has a snapshot with that id (the others stay at their current snapshot).
    pub as_of: Vec<i64>,
    /// Compute only this tenant: inputs are read and the output replaced only for it. The
    /// model must be partitioned by `tenant` alone and its inputs must have a `tenant`
    /// column.
    pub tenant: Option<String>,
    /// Partitions, memory pool and spill directory.
    pub engine: EngineOptions,
}

impl Default for GoldOptions {
    fn default() -> Self {
        GoldOptions {
            target_file_size: DEFAULT_TARGET_FILE_SIZE,
            as_of: Vec::new(),
            tenant: None,
            engine: EngineOptions::default(),
        }
    }
}

/// Report of one gold run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldReport {
    /// `gold.<model>`.
    pub table: String,
    /// The pinned snapshot of every input (the inputs that exist, for `NoInput`).
    pub input_snapshots: BTreeMap<String, i64>,
    /// For `NoInput`: the input that has no snapshot.
    pub missing_input: Option<String>,
    pub status: TransformStatus,
    /// The tenants whose partitions were replaced; `None` for the whole table.
    pub tenants: Option<Vec<String>>,
    /// What was read, with row counts (empty unless rows were computed).
    pub reads: Vec<InputRead>,
    /// The gold snapshot holding this result (new, found in the history, or current).
    pub snapshot_id: Option<i64>,
    /// Rows and data files written by this run (0 unless `Committed`).
    pub rows: u64,
    pub data_files: usize,
}

/// Reads every configured model's SQL file and builds the registry, in configuration order.
pub async fn load_models(config: &PipelineConfig) -> Result<Vec<GoldModel>, TransformError> {
    let mut models = Vec::with_capacity(config.gold.len());
    for model in &config.gold {
        let path = model_sql_path(&config.base_dir, model);
        let sql =
            tokio::fs::read_to_string(&path)
                .await
                .map_err(|source| TransformError::ModelSql {
                    model: model.name.clone(),
                    path: path.clone(),
                    source,
                })?;
        models.push(GoldModel::new(model, sql)?);
    }
    Ok(models)
}

/// Runs every configured gold model in dependency order; stops at the first failure.
pub async fn run_all_gold(
    catalog: &Catalog,
    config: &PipelineConfig,
) -> Result<Vec<GoldReport>, TransformError> {
    let models = load_models(config).await?;
    let mut reports = Vec::with_capacity(models.len());
    for model in run_order(&models)? {
        reports.push(run_gold(catalog, model, &GoldOptions::default()).await?);
    }
    Ok(reports)
}

/// Computes `gold.<model>` from the current snapshots of its inputs; see the module docs.
pub async fn run_gold(
    catalog: &Catalog,
    model: &GoldModel,
    options: &GoldOptions,
) -> Result<GoldReport, TransformError> {
    let gold_name = model.table_name()?;
    let mut report = GoldReport {
        table: gold_name.to_string(),
        input_snapshots: BTreeMap::new(),
        missing_input: None,
        status: TransformStatus::NoInput,
        tenants: None,
        reads: Vec::new(),
        snapshot_id: None,
        rows: 0,
        data_files: 0,
    };

    if let Some(tenant) = &options.tenant
        && model.partition_by != [SILVER_TENANT]
    {
        return Err(TransformError::InvalidModel {
            model: model.name.clone(),
            message: format!(
                "--tenant {tenant} needs a model partitioned by `{SILVER_TENANT}` alone, not by ({})",
                model.partition_by.join(", ")
            ),
        });
    }

    // Pin every input at its current snapshot, or at the `as_of` snapshot it has.
    let mut pinned = Vec::with_capacity(model.inputs.len());
    let mut unused_as_of: BTreeSet<i64> = options.as_of.iter().copied().collect();
    for input in &model.inputs {
        let name = TableName::parse(input)?;
        let table = catalog.try_load_table(&name).await?;
        let snapshot = table.and_then(|t| {
            let as_of = options
                .as_of
                .iter()
                .copied()
                .find(|id| t.metadata().snapshot_by_id(*id).is_some());
            if let Some(id) = as_of {
                unused_as_of.remove(&id);
            }
            as_of
                .or_else(|| t.metadata().current_snapshot_id())
                .map(|id| (t, id))
        });
        match snapshot {
            Some((table, snapshot_id)) => {
                report.input_snapshots.insert(input.clone(), snapshot_id);
                pinned.push((name, table, snapshot_id));
            }
            None if report.missing_input.is_none() => {
                report.missing_input = Some(input.clone());
            }
            None => {}
        }
    }
    if let Some(snapshot_id) = unused_as_of.into_iter().next() {
        return Err(TransformError::UnknownSnapshot {
            table: model.inputs.join(", "),
            snapshot_id,
        });
    }
    if let Some(missing) = &report.missing_input {
        tracing::info!(model = %model.name, input = %missing, "input has no snapshot yet; nothing to compute");
        return Ok(report);
    }

    let fingerprint = model_fingerprint(model);
    let existing = catalog.try_load_table(&gold_name).await?;
    let covering = existing
        .as_ref()
        .map(|gold| lineage::covering(&gold.metadata_ref(), options.tenant.as_deref()))
        .unwrap_or_default();
    let up_to_date = !covering.is_empty()
        && covering.iter().all(|snapshot| {
            let properties = &snapshot.summary().additional_properties;
            history::input_snapshots(properties) == report.input_snapshots
                && properties.get(MODEL_FINGERPRINT) == Some(&fingerprint)
        });
    if up_to_date
        && let Some(current) = existing
            .as_ref()
            .and_then(|t| t.metadata().current_snapshot())
    {
        tracing::info!(table = %gold_name, tenant = ?options.tenant, "gold is up to date");
        report.status = TransformStatus::UpToDate;
        report.snapshot_id = Some(current.snapshot_id());
        return Ok(report);
    }

    let ctx = options.engine.session()?;
    let default_catalog = ctx
        .state()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone();
    let session_catalog = ctx.catalog(&default_catalog).ok_or_else(|| {
        DataFusionError::Internal(format!("no default catalog `{default_catalog}`"))
    })?;
    for schema in ["silver", "gold"] {
        session_catalog.register_schema(schema, Arc::new(MemorySchemaProvider::new()))?;
    }
    let mut counted = Vec::new();
    for (name, table, snapshot_id) in pinned {
        let mut scan = SnapshotTable::try_new(table, snapshot_id, options.engine.partitions)
            .map_err(TransformError::iceberg("open snapshot", &name))?;
        if let Some(tenant) = &options.tenant {
            if scan.arrow_schema().field_with_name(SILVER_TENANT).is_err() {
                return Err(TransformError::InvalidModel {
                    model: model.name.clone(),
                    message: format!("--tenant: input {name} has no `{SILVER_TENANT}` column"),
                });
            }
            scan = scan.with_predicate(
                Reference::new(SILVER_TENANT).equal_to(Datum::string(tenant.as_str())),
            );
        }
        counted.push((name.to_string(), snapshot_id, scan.rows_read()));
        let mut frame = ctx.read_table(Arc::new(scan))?;
        if let Some(tenant) = &options.tenant {
            frame = frame.filter(ident(SILVER_TENANT).eq(lit(tenant.as_str())))?;
        }
        ctx.register_table(
            TableReference::partial(name.namespace(), name.name.as_str()),
            frame.into_view(),
        )?;
    }
    let mut plan = ctx
        .sql(&model.sql_text)
        .await
        .map_err(|err| model_error(model, err))?;
    if let Some(tenant) = &options.tenant {
        plan = plan
            .filter(ident(SILVER_TENANT).eq(lit(tenant.as_str())))
            .map_err(|err| model_error(model, err))?;
    }

    let schema = output_schema(model, &plan)?;
    check_key(model, &plan).await?;

    let gold = prepare_output(catalog, &gold_name, existing, schema, &model.partition_by).await?;
    let base = gold.metadata().current_snapshot_id();
    let inputs_id: Vec<String> = report
        .input_snapshots
        .iter()
        .map(|(table, id)| format!("{table}@{id}"))
        .collect();
    let tenant_part = options
        .tenant
        .as_ref()
        .map(|tenant| format!("/tenant-{tenant}"))
        .unwrap_or_default();
    let commit_id = format!(
        "gold/{}{tenant_part}/model-{fingerprint}/{}/base-{}",
        model.name,
        inputs_id.join(","),
        base.map_or_else(|| "none".to_string(), |id| id.to_string())
    );
    if let Some(snapshot) = history::find_commit(gold.metadata(), &commit_id) {
        report.status = TransformStatus::AlreadyCommitted;
        report.snapshot_id = Some(snapshot.snapshot_id());
        return Ok(report);
    }

    let (rows, files, _) = write_plan(&gold, plan, options.target_file_size, None).await?;
    report.rows = rows;
    report.data_files = files.len();
    report.reads = counted
        .iter()
        .map(|(table, snapshot_id, rows)| InputRead {
            table: table.clone(),
            snapshot_id: *snapshot_id,
            part: "all",
            rows: rows.load(Ordering::Relaxed),
        })
        .collect();
    report.tenants = options.tenant.clone().map(|tenant| vec![tenant]);
    let input_lineage = serde_json::to_string(&report.input_snapshots)
        .map_err(|err| DataFusionError::External(Box::new(err)))?;
    let mut properties = vec![
        (INPUT_SNAPSHOTS.to_string(), input_lineage),
        (MODEL_FINGERPRINT.to_string(), fingerprint),
    ];
    let overwrite = match &options.tenant {
        None => OverwriteScope::All,
        Some(tenant) => {
            properties.push((TENANTS.to_string(), serde_json::json!([tenant]).to_string()));
            OverwriteScope::Partitions(vec![Struct::from_iter([Some(Literal::string(
                tenant.as_str(),
            ))])])
        }
    };
    let outcome = commit_overwrite(
        catalog,
        &gold_name,
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
        table = %gold_name,
        inputs = ?report.input_snapshots,
        status = ?report.status,
        rows = report.rows,
        files = report.data_files,
        "gold run finished"
    );
    Ok(report)
}

/// The Iceberg schema of the model's output: every column optional, fresh field ids. Key
/// and partition columns must be output columns.
fn output_schema(model: &GoldModel, plan: &DataFrame) -> Result<Schema, TransformError> {
    let arrow = plan.schema().as_arrow();
    for column in model.key.iter().chain(&model.partition_by) {
        if arrow.field_with_name(column).is_err() {
            return Err(TransformError::InvalidModel {
                model: model.name.clone(),
                message: format!("declared column `{column}` is not an output column"),
            });
        }
    }
    let fields: Vec<Field> = arrow
        .fields()
        .iter()
        .map(|field| field.as_ref().clone().with_nullable(true))
        .collect();
    arrow_schema_to_schema_auto_assign_ids(&arrow_schema::Schema::new(fields)).map_err(|err| {
        TransformError::InvalidModel {
            model: model.name.clone(),
            message: format!("the output cannot be an Iceberg table: {err}"),
        }
    })
}

/// Refuses a result whose declared key is null or repeated, naming one offending key.
async fn check_key(model: &GoldModel, plan: &DataFrame) -> Result<(), TransformError> {
    const ROWS: &str = "__firn_rows";
    let keys: Vec<Expr> = model.key.iter().map(ident).collect();
    let broken = keys.iter().fold(ident(ROWS).gt(lit(1_i64)), |acc, key| {
        acc.or(key.clone().is_null())
    });
    let found = plan
        .clone()
        .aggregate(keys, vec![count(lit(1_i64)).alias(ROWS)])?
        .filter(broken)?
        .limit(0, Some(1))?
        .collect()
        .await
        .map_err(|err| model_error(model, err))?;
    let Some(batch) = found.iter().find(|batch| batch.num_rows() > 0) else {
        return Ok(());
    };
    let mut example = Vec::with_capacity(model.key.len());
    for (index, column) in model.key.iter().enumerate() {
        let value = array_value_to_string(batch.column(index), 0)
            .map_err(|err| DataFusionError::ArrowError(Box::new(err), None))?;
        let value = if batch.column(index).is_null(0) {
            "NULL".to_string()
        } else {
            value
        };
        example.push(format!("{column}={value}"));
    }
    let rows = array_value_to_string(batch.column(model.key.len()), 0)
        .map_err(|err| DataFusionError::ArrowError(Box::new(err), None))?;
    Err(TransformError::InvalidModel {
        model: model.name.clone(),
        message: format!(
            "the declared key ({}) must be unique and non-null; {rows} rows have key ({})",
            model.key.join(", "),
            example.join(", ")
        ),
    })
}

/// Planning errors (unknown column, type mismatch) are the model's fault: bad input naming
/// the model. Execution failures stay DataFusion errors.
fn model_error(model: &GoldModel, err: DataFusionError) -> TransformError {
    match err.find_root() {
        root @ (DataFusionError::Plan(_) | DataFusionError::SchemaError(..)) => {
            TransformError::InvalidModel {
                model: model.name.clone(),
                message: root.to_string(),
            }
        }
        _ => TransformError::DataFusion(err),
    }
}
