//! Running gold: the I/O shell around the model registry in [`crate::gold`]. Pins the
//! current snapshot of every table a model reads, runs the model's SQL over those snapshots
//! with DataFusion, checks the declared key, writes the result as Parquet data files of
//! `gold.<model>` and commits them through [`firn_catalog::Catalog::commit`] as an overwrite
//! of the whole table.
//!
//! # Lineage and idempotence
//!
//! Every gold snapshot records `firn.input-snapshots = {"silver.orders": <id>, ...}` (every
//! input's pinned snapshot) and `firn.model-fingerprint` ([`model_fingerprint`]: the SQL,
//! key and partitioning). A run whose pinned inputs and fingerprint equal the current gold
//! snapshot's does nothing ([`TransformStatus::UpToDate`]). The commit id is derived from the
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

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::Field;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::prelude::{DataFrame, Expr, SessionConfig, SessionContext, ident, lit};
use datafusion::sql::TableReference;
use firn_catalog::config::PipelineConfig;
use firn_catalog::history::{self, INPUT_SNAPSHOTS};
use firn_catalog::{Catalog, TableName};
use iceberg::arrow::arrow_schema_to_schema_auto_assign_ids;
use iceberg::spec::Schema;
use iceberg_datafusion::IcebergStaticTableProvider;

use crate::error::TransformError;
use crate::gold::{GoldModel, model_fingerprint, model_sql_path, run_order};
use crate::run::{
    DEFAULT_TARGET_FILE_SIZE, TransformStatus, commit_overwrite, prepare_output, write_plan,
};

/// Summary key: the [`model_fingerprint`] of the model that computed a gold snapshot.
pub const MODEL_FINGERPRINT: &str = "firn.model-fingerprint";

/// How to run one gold model.
#[derive(Debug, Clone)]
pub struct GoldOptions {
    /// Data files roll over at about this many bytes.
    pub target_file_size: u64,
}

impl Default for GoldOptions {
    fn default() -> Self {
        GoldOptions {
            target_file_size: DEFAULT_TARGET_FILE_SIZE,
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
        snapshot_id: None,
        rows: 0,
        data_files: 0,
    };

    // Pin every input at its current snapshot.
    let mut pinned = Vec::with_capacity(model.inputs.len());
    for input in &model.inputs {
        let name = TableName::parse(input)?;
        let table = catalog.try_load_table(&name).await?;
        match table.and_then(|t| t.metadata().current_snapshot_id().map(|id| (t, id))) {
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
    if let Some(missing) = &report.missing_input {
        tracing::info!(model = %model.name, input = %missing, "input has no snapshot yet; nothing to compute");
        return Ok(report);
    }

    let fingerprint = model_fingerprint(model);
    let existing = catalog.try_load_table(&gold_name).await?;
    if let Some(current) = existing
        .as_ref()
        .and_then(|t| t.metadata().current_snapshot())
    {
        let properties = &current.summary().additional_properties;
        if history::input_snapshots(properties) == report.input_snapshots
            && properties.get(MODEL_FINGERPRINT) == Some(&fingerprint)
        {
            tracing::info!(table = %gold_name, "gold is up to date");
            report.status = TransformStatus::UpToDate;
            report.snapshot_id = Some(current.snapshot_id());
            return Ok(report);
        }
    }

    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
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
    for (name, table, snapshot_id) in pinned {
        let provider = IcebergStaticTableProvider::try_new_from_table_snapshot(table, snapshot_id)
            .await
            .map_err(TransformError::iceberg("open snapshot", &name))?;
        ctx.register_table(
            TableReference::partial(name.namespace(), name.name.as_str()),
            Arc::new(provider),
        )?;
    }
    let plan = ctx
        .sql(&model.sql_text)
        .await
        .map_err(|err| model_error(model, err))?;

    let schema = output_schema(model, &plan)?;
    check_key(model, &plan).await?;

    let gold = prepare_output(catalog, &gold_name, existing, schema, &model.partition_by).await?;
    let base = gold.metadata().current_snapshot_id();
    let inputs_id: Vec<String> = report
        .input_snapshots
        .iter()
        .map(|(table, id)| format!("{table}@{id}"))
        .collect();
    let commit_id = format!(
        "gold/{}/model-{fingerprint}/{}/base-{}",
        model.name,
        inputs_id.join(","),
        base.map_or_else(|| "none".to_string(), |id| id.to_string())
    );
    if let Some(snapshot) = history::find_commit(gold.metadata(), &commit_id) {
        report.status = TransformStatus::AlreadyCommitted;
        report.snapshot_id = Some(snapshot.snapshot_id());
        return Ok(report);
    }

    let (rows, files) = write_plan(&gold, plan, options.target_file_size).await?;
    report.rows = rows;
    report.data_files = files.len();
    let lineage = serde_json::to_string(&report.input_snapshots)
        .map_err(|err| DataFusionError::External(Box::new(err)))?;
    let outcome = commit_overwrite(
        catalog,
        &gold_name,
        files,
        commit_id,
        vec![
            (INPUT_SNAPSHOTS.to_string(), lineage),
            (MODEL_FINGERPRINT.to_string(), fingerprint),
        ],
        base,
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
