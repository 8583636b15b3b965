//! Running silver: the I/O shell around [`crate::silver::silver_plan`]. Reads
//! `bronze.<table>` at one pinned snapshot through iceberg-datafusion, runs the plan, writes
//! the result as Parquet data files of `silver.<table>` and commits them through
//! [`Catalog::commit`] as an overwrite of the whole table.
//!
//! # Lineage and idempotence
//!
//! Every silver snapshot records `firn.input-snapshots = {"bronze.<table>": <id>}` in its
//! summary. A run whose input snapshot is the one the current silver snapshot was computed
//! from does nothing ([`TransformStatus::UpToDate`]). The commit id is derived from the table,
//! the input snapshot and the silver snapshot the run replaces, never from the clock, so a
//! run retried after a crash or an unknown commit outcome finds its own commit in the
//! history ([`TransformStatus::AlreadyCommitted`]) instead of committing twice. The replaced
//! snapshot is part of the id so that recomputing an older input after a rollback of
//! bronze is a new commit rather than a match with the first computation of that input.
//!
//! # Concurrency
//!
//! The commit re-validates that silver's current snapshot is still the one the run
//! started from; if another run committed in between, this one is rejected (run it again)
//! rather than overwriting a newer result with an older one.
//!
//! # Schema
//!
//! `silver.<table>` is created on first use with the plan's output columns, typed as in
//! bronze (fresh field ids, only `tenant` required) and partitioned by `identity(tenant)`.
//! When bronze gains a column or widens one, silver gets the same change by schema
//! evolution before the data is written; a change that is not a widening is refused.
//!
//! The bronze scan is a single DataFusion partition (iceberg-datafusion 0.10.1); the window
//! and join above it run on `target_partitions = 2`.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, new_null_array};
use arrow_schema::SchemaRef;
use datafusion::arrow::compute::cast;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use firn_catalog::commit::is_widening;
use firn_catalog::history::{self, INPUT_SNAPSHOTS};
use firn_catalog::tables::{bronze_columns, derived_spec};
use firn_catalog::{
    Catalog, CommitOutcome, CommitRequest, CommitStatus, DataFileSink, Operation, OverwriteScope,
    SchemaChange, TableName, Tier,
};
use futures::StreamExt;
use iceberg::spec::{DataFile, NestedField, Schema, Transform, Type, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg_datafusion::IcebergStaticTableProvider;

use crate::error::TransformError;
use crate::silver::{SILVER_TENANT, silver_plan};

/// Default size at which silver data files roll over.
pub const DEFAULT_TARGET_FILE_SIZE: u64 = 128 * 1024 * 1024;

/// How to run silver for one table.
#[derive(Debug, Clone)]
pub struct SilverOptions {
    /// The bronze snapshot to compute from; the current snapshot of `main` when `None`.
    pub as_of: Option<i64>,
    /// The source table's primary-key columns.
    pub key_columns: Vec<String>,
    /// Data files roll over at about this many bytes.
    pub target_file_size: u64,
}

impl SilverOptions {
    pub fn new(key_columns: Vec<String>) -> Self {
        SilverOptions {
            as_of: None,
            key_columns,
            target_file_size: DEFAULT_TARGET_FILE_SIZE,
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

/// Report of one silver run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilverReport {
    /// `silver.<table>`.
    pub table: String,
    /// `bronze.<table>`.
    pub input_table: String,
    pub input_snapshot_id: Option<i64>,
    pub status: TransformStatus,
    /// The silver snapshot holding this input's result (the new one, the one found in the
    /// history, or the current one when up to date).
    pub snapshot_id: Option<i64>,
    /// Rows and data files written by this run (0 unless `Committed`).
    pub rows: u64,
    pub data_files: usize,
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
        snapshot_id: None,
        rows: 0,
        data_files: 0,
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

    let existing = catalog.try_load_table(&silver_name).await?;
    if let Some(current) = existing
        .as_ref()
        .and_then(|silver| silver.metadata().current_snapshot())
    {
        let inputs = history::input_snapshots(&current.summary().additional_properties);
        if inputs.get(&bronze_name.to_string()) == Some(&input) {
            tracing::info!(table = %silver_name, input, "silver is up to date");
            report.status = TransformStatus::UpToDate;
            report.snapshot_id = Some(current.snapshot_id());
            return Ok(report);
        }
    }

    let input_schema = bronze
        .metadata()
        .snapshot_by_id(input)
        .and_then(|snapshot| snapshot.schema(bronze.metadata()).ok())
        .unwrap_or_else(|| bronze.metadata().current_schema().clone());
    let provider = IcebergStaticTableProvider::try_new_from_table_snapshot(bronze.clone(), input)
        .await
        .map_err(TransformError::iceberg("open snapshot", &bronze_name))?;
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    ctx.register_table("bronze", Arc::new(provider))?;
    let plan = silver_plan(ctx.table("bronze").await?, &options.key_columns).map_err(|err| {
        match err.find_root() {
            datafusion::error::DataFusionError::Plan(message) => TransformError::InvalidInput {
                table: bronze_name.to_string(),
                message: message.clone(),
            },
            _ => TransformError::DataFusion(err),
        }
    })?;
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
    let silver = prepare_output(
        catalog,
        &silver_name,
        existing,
        schema,
        &[SILVER_TENANT.to_string()],
    )
    .await?;

    let base = silver.metadata().current_snapshot_id();
    let commit_id = format!(
        "silver/{table}/input-{input}/base-{}",
        base.map_or_else(|| "none".to_string(), |id| id.to_string())
    );
    if let Some(snapshot) = history::find_commit(silver.metadata(), &commit_id) {
        report.status = TransformStatus::AlreadyCommitted;
        report.snapshot_id = Some(snapshot.snapshot_id());
        return Ok(report);
    }

    let (rows, files) = write_plan(&silver, plan, options.target_file_size).await?;
    report.rows = rows;
    report.data_files = files.len();

    let lineage = serde_json::json!({ bronze_name.to_string(): input }).to_string();
    let outcome = commit_overwrite(
        catalog,
        &silver_name,
        files,
        commit_id,
        vec![(INPUT_SNAPSHOTS.to_string(), lineage)],
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
        table = %silver_name,
        input,
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

/// Executes `plan` and writes its rows as data files of `table` (conformed to the table's
/// schema); returns the rows written and the files, not yet committed.
pub(crate) async fn write_plan(
    table: &Table,
    plan: DataFrame,
    target_file_size: u64,
) -> Result<(u64, Vec<DataFile>), TransformError> {
    let mut sink = DataFileSink::new(table, target_file_size).await?;
    let target = sink.arrow_schema().clone();
    let mut stream = plan.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = conform(&batch?, &target)?;
        if batch.num_rows() > 0 {
            sink.write(batch).await?;
        }
    }
    let rows = sink.rows();
    Ok((rows, sink.finish().await?))
}

/// Commits `files` as an overwrite of all of `name` with the given commit id and summary
/// properties, provided the table's current snapshot is still `base` (the one the run
/// started from); a concurrent newer result is never overwritten by an older one.
pub(crate) async fn commit_overwrite(
    catalog: &Catalog,
    name: &TableName,
    files: Vec<DataFile>,
    commit_id: String,
    properties: Vec<(String, String)>,
    base: Option<i64>,
) -> Result<CommitOutcome, TransformError> {
    let display = name.to_string();
    let mut request = CommitRequest::new(Operation::Overwrite {
        files,
        scope: OverwriteScope::All,
    })
    .with_commit_id(commit_id);
    for (key, value) in properties {
        request = request.with_property(key, value);
    }
    let request = request.with_validator(move |table| {
        let current = table.metadata().current_snapshot_id();
        if current == base {
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
