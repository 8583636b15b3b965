//! Reading an Iceberg snapshot as a DataFusion table split by data file. Does I/O (reads
//! manifests when a scan is planned, Parquet data files when it executes).
//!
//! iceberg-datafusion 0.10.1's scan is a single DataFusion partition, so one core decodes
//! every file. [`SnapshotTable`] plans the Iceberg scan itself (projection and predicate
//! pushed into the manifest, row-group and row filters, as iceberg's own scan does), then
//! spreads the planned files over `partitions` groups of about equal size, and reads each
//! group with iceberg's Arrow reader (which resolves columns by field id, so files written
//! under older schemas read correctly). firn's tables have no delete files (only appends
//! and overwrites), and a delete file in a planned task is refused rather than ignored.
//!
//! A scan can be limited to some of the snapshot's data files ([`FileSelection`]): an
//! incremental silver run reads only the bronze files added since its base snapshot.
//!
//! A scan can also be split by an identity partition column ([`SnapshotTable::with_split_by`],
//! silver's tenant): each file goes to the partition DataFusion's hash repartitioning would
//! send its rows to (every row of a file has the file's partition value), and the scan says
//! it is hash-partitioned by that column. A plan grouping by the column then aggregates each
//! partition on its own, without a partial aggregation and a repartition of every row. When
//! the split is uneven (few values), the files are spread by size instead.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema as ArrowSchema, SchemaRef};
use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::catalog::Session;
use datafusion::common::hash_utils::create_hashes;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::TableProviderFilterPushDown;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::repartition::REPARTITION_RANDOM_STATE;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::prelude::Expr;
use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::{ArrowReaderBuilder, schema_to_arrow_schema};
use iceberg::expr::{Bind, Predicate};
use iceberg::io::FileIO;
use iceberg::scan::FileScanTask;
use iceberg::spec::{Literal, PrimitiveLiteral, Transform};
use iceberg::table::Table;
use iceberg_datafusion::physical_plan::convert_filters_to_predicate;

/// Which of a snapshot's data files a scan reads.
#[derive(Debug, Clone, Default)]
pub enum FileSelection {
    /// Every data file of the snapshot.
    #[default]
    All,
    /// Only the snapshot's data files whose path is in the set.
    Only(Arc<HashSet<String>>),
    /// The snapshot's data files whose path is not in the set.
    Except(Arc<HashSet<String>>),
}

impl FileSelection {
    fn keeps(&self, path: &str) -> bool {
        match self {
            FileSelection::All => true,
            FileSelection::Only(paths) => paths.contains(path),
            FileSelection::Except(paths) => !paths.contains(path),
        }
    }
}

/// One snapshot of an Iceberg table as a read-only DataFusion table whose scan has one
/// partition per group of data files.
#[derive(Debug, Clone)]
pub struct SnapshotTable {
    table: Table,
    snapshot_id: i64,
    schema: SchemaRef,
    files: FileSelection,
    predicate: Option<Predicate>,
    /// Prunes files only (see [`SnapshotTable::with_file_filter`]).
    file_filter: Option<(String, Predicate)>,
    /// Splits files by this identity partition column (see the module docs).
    split_by: Option<String>,
    partitions: usize,
    rows_read: Arc<AtomicU64>,
}

/// A hash split is used when no partition gets more than this many times the average bytes.
const MAX_SPLIT_IMBALANCE: f64 = 1.25;

impl SnapshotTable {
    /// Reads `snapshot_id` of `table` (with that snapshot's schema) in up to `partitions`
    /// parallel partitions.
    pub fn try_new(table: Table, snapshot_id: i64, partitions: usize) -> iceberg::Result<Self> {
        let snapshot = table
            .metadata()
            .snapshot_by_id(snapshot_id)
            .ok_or_else(|| {
                iceberg::Error::new(
                    iceberg::ErrorKind::DataInvalid,
                    format!("snapshot {snapshot_id} does not exist"),
                )
            })?;
        let schema = snapshot.schema(table.metadata())?;
        // Without the Parquet field-id metadata iceberg puts on each field: the reader has
        // resolved columns by id already, and DataFusion refuses a union of inputs whose
        // field metadata differ (bronze events with previous silver rows).
        let schema = schema_to_arrow_schema(&schema)?;
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|field| field.as_ref().clone().with_metadata(HashMap::new()))
            .collect();
        let schema = Arc::new(ArrowSchema::new(fields));
        Ok(SnapshotTable {
            table,
            snapshot_id,
            schema,
            files: FileSelection::All,
            predicate: None,
            file_filter: None,
            split_by: None,
            partitions: partitions.max(1),
            rows_read: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Reads only the selected data files.
    pub fn with_files(mut self, files: FileSelection) -> Self {
        self.files = files;
        self
    }

    /// Reads only rows that may match `predicate` (it prunes files, row groups and rows;
    /// the caller still filters exactly where it matters).
    pub fn with_predicate(mut self, predicate: Predicate) -> Self {
        self.predicate = Some(match self.predicate.take() {
            Some(existing) => existing.and(predicate),
            None => predicate,
        });
        self
    }

    /// Reads only the data files that may hold rows matching `predicate`, a predicate on
    /// `column` (a partition column: a tenant scope), without filtering rows: neither
    /// `predicate` nor a DataFusion filter on `column` alone pushed into the scan is
    /// applied to rows by iceberg's reader, whose IN list costs one string comparison per
    /// listed value and row. The plan above must filter on `column` exactly (DataFusion's
    /// IN list is a hash set).
    pub fn with_file_filter(mut self, column: &str, predicate: Predicate) -> Self {
        self.file_filter = Some((column.to_string(), predicate));
        self
    }

    /// Splits the files by `column`, an identity partition column of the table, when that
    /// spreads them evenly enough (see the module docs).
    pub fn with_split_by(mut self, column: &str) -> Self {
        self.split_by = Some(column.to_string());
        self
    }

    /// The value of the identity partition field `field` (an index in the table's only
    /// partition spec) in a task's file.
    fn partition_value(task: &FileScanTask, field: usize) -> Option<String> {
        match task.partition.as_ref()?.fields().get(field)? {
            Some(Literal::Primitive(PrimitiveLiteral::String(value))) => Some(value.clone()),
            _ => None,
        }
    }

    /// The files split by the `split_by` column into `self.partitions` hash partitions, with
    /// the column's index in `schema`, or `None` when the split does not apply (no such
    /// column in the projection, a file without its value, an uneven split).
    fn split(
        &self,
        tasks: &[FileScanTask],
        schema: &ArrowSchema,
    ) -> Option<(usize, Vec<Vec<FileScanTask>>)> {
        let column = self.split_by.as_ref()?;
        let index = schema.index_of(column).ok()?;
        let field_id = self
            .table
            .metadata()
            .snapshot_by_id(self.snapshot_id)?
            .schema(self.table.metadata())
            .ok()?
            .field_id_by_name(column)?;
        // iceberg's planned tasks do not say under which spec their file was written: the
        // split needs the table to have had one partition spec only (firn's tables do).
        let metadata = self.table.metadata();
        if metadata.partition_specs_iter().count() != 1 {
            return None;
        }
        let field = metadata
            .default_partition_spec()
            .fields()
            .iter()
            .position(|f| f.source_id == field_id && f.transform == Transform::Identity)?;
        let values = tasks
            .iter()
            .map(|task| Self::partition_value(task, field))
            .collect::<Option<Vec<String>>>()?;
        let partitions = hash_partitions(values, schema.field(index).data_type(), self.partitions)?;
        let mut groups: Vec<Vec<FileScanTask>> = vec![Vec::new(); self.partitions];
        let mut bytes = vec![0u64; self.partitions];
        for (task, partition) in tasks.iter().zip(partitions) {
            bytes[partition] += task.length;
            groups[partition].push(task.clone());
        }
        let total: u64 = bytes.iter().sum();
        let largest = bytes.iter().copied().max().unwrap_or_default();
        let even = total as f64 / self.partitions as f64;
        (self.partitions == 1 || largest as f64 <= even * MAX_SPLIT_IMBALANCE)
            .then_some((index, groups))
    }

    /// The table's Arrow schema (the snapshot's columns).
    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows the scans of this table have produced so far (for reports).
    pub fn rows_read(&self) -> Arc<AtomicU64> {
        self.rows_read.clone()
    }

    /// Plans the Iceberg scan: the data files to read, with projection and predicate.
    async fn plan(
        &self,
        columns: Option<Vec<String>>,
        filters: &[Expr],
    ) -> iceberg::Result<Vec<FileScanTask>> {
        let mut builder = self.table.scan().snapshot_id(self.snapshot_id);
        builder = match columns {
            Some(columns) => builder.select(columns),
            None => builder.select_all(),
        };
        // Filters on the file-filter column alone prune files; the others filter rows too.
        let (file_only, row_filters): (Vec<Expr>, Vec<Expr>) =
            filters.iter().cloned().partition(|filter| {
                self.file_filter.as_ref().is_some_and(|(column, _)| {
                    let columns = filter.column_refs();
                    !columns.is_empty() && columns.iter().all(|c| c.name() == column)
                })
            });
        let and = |a: Option<Predicate>, b: Option<Predicate>| match (a, b) {
            (Some(a), Some(b)) => Some(a.and(b)),
            (a, b) => a.or(b),
        };
        let rows = and(
            self.predicate.clone(),
            convert_filters_to_predicate(&row_filters),
        );
        let files = and(
            self.file_filter
                .as_ref()
                .map(|(_, predicate)| predicate.clone()),
            convert_filters_to_predicate(&file_only),
        );
        if let Some(predicate) = and(rows.clone(), files.clone()) {
            builder = builder.with_filter(predicate);
        }
        let mut tasks: Vec<FileScanTask> =
            builder.build()?.plan_files().await?.try_collect().await?;
        if files.is_some() {
            // The planned tasks carry the whole predicate as their row filter: keep only
            // the row part.
            let bound = match rows {
                Some(rows) => {
                    let schema = self
                        .table
                        .metadata()
                        .snapshot_by_id(self.snapshot_id)
                        .map(|snapshot| snapshot.schema(self.table.metadata()))
                        .transpose()?
                        .unwrap_or_else(|| self.table.metadata().current_schema().clone());
                    Some(rows.rewrite_not().bind(schema, true)?)
                }
                None => None,
            };
            for task in &mut tasks {
                task.predicate = bound.clone();
            }
        }
        let mut kept = Vec::with_capacity(tasks.len());
        for task in tasks {
            if !task.deletes.is_empty() {
                return Err(iceberg::Error::new(
                    iceberg::ErrorKind::FeatureUnsupported,
                    format!(
                        "data file {} has delete files, which firn's tables never have",
                        task.data_file_path
                    ),
                ));
            }
            if self.files.keeps(&task.data_file_path) {
                kept.push(task);
            }
        }
        Ok(kept)
    }
}

/// The paths of every data file of a snapshot.
pub async fn data_files(table: &Table, snapshot_id: i64) -> iceberg::Result<HashSet<String>> {
    let tasks: Vec<FileScanTask> = table
        .scan()
        .snapshot_id(snapshot_id)
        .select_empty()
        .build()?
        .plan_files()
        .await?
        .try_collect()
        .await?;
    Ok(tasks.into_iter().map(|task| task.data_file_path).collect())
}

/// The rows of a snapshot's data files that may match `filter` (all files without one),
/// from the manifests' record counts: exact when `filter` is on identity partition columns.
pub async fn record_count(
    table: &Table,
    snapshot_id: i64,
    filter: Option<Predicate>,
) -> iceberg::Result<u64> {
    let mut builder = table.scan().snapshot_id(snapshot_id).select_empty();
    if let Some(filter) = filter {
        builder = builder.with_filter(filter);
    }
    let tasks: Vec<FileScanTask> = builder.build()?.plan_files().await?.try_collect().await?;
    Ok(tasks.iter().filter_map(|task| task.record_count).sum())
}

/// Spreads files over at most `groups` groups of about equal bytes: largest file first,
/// each to the lightest group (ties to the lowest index), so the split is deterministic.
/// Pure. Never returns an empty list; a group is empty only when there are no files.
pub fn group_files<T>(files: Vec<T>, groups: usize, size: impl Fn(&T) -> u64) -> Vec<Vec<T>> {
    let count = groups.max(1).min(files.len().max(1));
    let mut sized: Vec<(u64, T)> = files.into_iter().map(|f| (size(&f), f)).collect();
    sized.sort_by_key(|(bytes, _)| std::cmp::Reverse(*bytes));
    let mut out: Vec<(u64, Vec<T>)> = (0..count).map(|_| (0, Vec::new())).collect();
    for (bytes, file) in sized {
        let lightest = (0..count)
            .min_by_key(|&i| (out[i].0, i))
            .unwrap_or_default();
        out[lightest].0 += bytes;
        out[lightest].1.push(file);
    }
    out.into_iter().map(|(_, files)| files).collect()
}

#[async_trait::async_trait]
impl TableProvider for SnapshotTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(indices) => Arc::new(self.schema.project(indices)?),
            None => self.schema.clone(),
        };
        let columns = projection.map(|_| {
            schema
                .fields()
                .iter()
                .map(|field| field.name().clone())
                .collect::<Vec<_>>()
        });
        let tasks = self
            .plan(columns, filters)
            .await
            .map_err(|err| DataFusionError::External(Box::new(err)))?;
        let (groups, partitioning) = match self.split(&tasks, &schema) {
            Some((index, groups)) => {
                let column = Arc::new(Column::new(schema.field(index).name(), index));
                let partitioning = Partitioning::Hash(vec![column], groups.len());
                (groups, partitioning)
            }
            None => {
                let groups = group_files(tasks, self.partitions, |task| task.length);
                let partitioning = Partitioning::UnknownPartitioning(groups.len().max(1));
                (groups, partitioning)
            }
        };
        tracing::debug!(
            table = %self.table.identifier(),
            snapshot = self.snapshot_id,
            files = groups.iter().map(Vec::len).sum::<usize>(),
            partitioning = %partitioning,
            "planned scan"
        );
        Ok(Arc::new(FileGroupsExec::new(
            self.table.file_io().clone(),
            schema,
            groups,
            partitioning,
            self.rows_read.clone(),
        )))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        // Pruning only: the reader may return rows that do not match.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

/// Reads groups of planned Iceberg file scan tasks, one DataFusion partition per group.
pub struct FileGroupsExec {
    file_io: FileIO,
    schema: SchemaRef,
    groups: Vec<Vec<FileScanTask>>,
    properties: Arc<PlanProperties>,
    rows_read: Arc<AtomicU64>,
}

impl FileGroupsExec {
    fn new(
        file_io: FileIO,
        schema: SchemaRef,
        groups: Vec<Vec<FileScanTask>>,
        partitioning: Partitioning,
        rows_read: Arc<AtomicU64>,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            partitioning,
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        FileGroupsExec {
            file_io,
            schema,
            groups,
            properties,
            rows_read,
        }
    }

    /// How many data files each partition reads.
    pub fn files_per_partition(&self) -> Vec<usize> {
        self.groups.iter().map(Vec::len).collect()
    }
}

impl fmt::Debug for FileGroupsExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileGroupsExec")
            .field("files_per_partition", &self.files_per_partition())
            .finish()
    }
}

impl DisplayAs for FileGroupsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "FileGroupsExec: files_per_partition={:?}",
            self.files_per_partition()
        )
    }
}

impl ExecutionPlan for FileGroupsExec {
    fn name(&self) -> &str {
        "FileGroupsExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "FileGroupsExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let tasks = self.groups.get(partition).cloned().unwrap_or_default();
        let file_io = self.file_io.clone();
        let rows_read = self.rows_read.clone();
        let open = async move {
            let runtime = iceberg::Runtime::try_current()?;
            // One file at a time per partition: the partitions are the parallelism, and
            // memory stays at one file's row groups per partition.
            let reader = ArrowReaderBuilder::new(file_io, runtime)
                .with_data_file_concurrency_limit(1)
                .build();
            let tasks = futures::stream::iter(tasks.into_iter().map(Ok)).boxed();
            Ok::<_, iceberg::Error>(reader.read(tasks)?.stream())
        };
        let schema = self.schema.clone();
        let stream = futures::stream::once(open)
            .try_flatten()
            .map_err(|err| DataFusionError::External(Box::new(err)))
            .and_then(move |batch| {
                rows_read.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                // The same columns under the scan's schema (no field-id metadata).
                let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                    .map_err(|err| DataFusionError::ArrowError(Box::new(err), None));
                futures::future::ready(batch)
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

/// The partition DataFusion's hash repartitioning into `partitions` sends each value to
/// (values cast to `data_type`, the column's type, as the rows are hashed). Pure.
pub fn hash_partitions(
    values: Vec<String>,
    data_type: &arrow_schema::DataType,
    partitions: usize,
) -> Option<Vec<usize>> {
    let array: ArrayRef = cast(&StringArray::from(values), data_type).ok()?;
    let mut hashes = vec![0; array.len()];
    create_hashes(
        &[array],
        REPARTITION_RANDOM_STATE.random_state(),
        &mut hashes,
    )
    .ok()?;
    Some(
        hashes
            .into_iter()
            .map(|hash| (hash % partitions.max(1) as u64) as usize)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_spread_evenly_and_deterministically() {
        let groups = group_files(vec![10u64, 70, 30, 30, 20, 40], 2, |s| *s);
        let totals: Vec<u64> = groups.iter().map(|g| g.iter().sum()).collect();
        assert_eq!(totals, [100, 100]);
        assert_eq!(
            groups,
            group_files(vec![10u64, 70, 30, 30, 20, 40], 2, |s| *s)
        );
        // Never more groups than files, never zero groups.
        assert_eq!(group_files(vec![5u64], 4, |s| *s), vec![vec![5]]);
        assert_eq!(
            group_files(Vec::<u64>::new(), 4, |s| *s),
            vec![Vec::<u64>::new()]
        );
        assert_eq!(group_files(vec![1u64, 2, 3], 0, |s| *s).len(), 1);
    }

    /// A file goes to the partition DataFusion's hash repartitioning sends its rows to, so
    /// that a scan split by a column is hash-partitioned by it as DataFusion means it.
    #[tokio::test]
    async fn hash_partitions_agree_with_datafusion_repartitioning() {
        use datafusion::arrow::array::AsArray;
        use datafusion::datasource::memory::MemorySourceConfig;
        use datafusion::physical_plan::collect_partitioned;
        use datafusion::physical_plan::repartition::RepartitionExec;
        use datafusion::prelude::SessionContext;

        let values: Vec<String> = (0..40).map(|i| format!("t{i:03}")).collect();
        for partitions in [1, 2, 3, 8] {
            let expected =
                hash_partitions(values.clone(), &arrow_schema::DataType::Utf8, partitions).unwrap();
            let schema = Arc::new(ArrowSchema::new(vec![Field::new(
                "tenant",
                arrow_schema::DataType::Utf8,
                false,
            )]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(StringArray::from(values.clone()))],
            )
            .unwrap();
            let source = MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None).unwrap();
            let column = Arc::new(Column::new("tenant", 0));
            let repartition =
                RepartitionExec::try_new(source, Partitioning::Hash(vec![column], partitions))
                    .unwrap();
            let repartitioned =
                collect_partitioned(Arc::new(repartition), SessionContext::new().task_ctx())
                    .await
                    .unwrap();
            let mut got = vec![usize::MAX; values.len()];
            for (partition, batches) in repartitioned.iter().enumerate() {
                for batch in batches {
                    for value in batch.column(0).as_string::<i32>().iter().flatten() {
                        let index = values.iter().position(|v| v == value).unwrap();
                        got[index] = partition;
                    }
                }
            }
            assert_eq!(got, expected, "{partitions} partitions");
        }
    }
}
