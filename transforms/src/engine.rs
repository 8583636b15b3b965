//! The DataFusion session every transform runs in: how many partitions plans use and a
//! bounded memory pool that spills to disk. Builds values only; the session it returns
//! writes spill files when a plan runs.
//!
//! Memory: a pool of `memory_limit` bytes shared by the operators of one run (the largest
//! consumers are named when it runs out). An operator that cannot grow its share spills (an
//! aggregation writes its sorted state, a sort its sorted runs, a repartition its buffered
//! batches) or, for a partial aggregation, emits what it holds early. The pool is greedy
//! above a floor kept for every active spilling operator ([`FloorPool`]): a plain greedy pool
//! let one partition's aggregation take everything, and another partition then could not
//! sort its state to spill it; a fair pool divides the memory by every registered spilling
//! operator, busy or idle, so silver's aggregation got a twelfth of it and spilled where a
//! greedy pool does not (docs/benchmarks.md). Scans read one file at a time per partition,
//! so the pool plus about one row group per partition is what a run holds.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::TrackConsumersPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::TransformError;
use crate::pool::FloorPool;

/// Default memory pool size: 2 GiB, which holds silver's state for a million keys of the
/// benchmark's rows (about 700 bytes per key) without spilling (docs/benchmarks.md).
pub const DEFAULT_MEMORY_LIMIT: usize = 2 * 1024 * 1024 * 1024;

/// The smallest pool a run accepts: below it a batch per partition of each aggregation or
/// sort, plus the room an aggregation needs to sort its state when it spills, does not fit,
/// and the run would fail only after reading its input.
pub const MIN_MEMORY_LIMIT: usize = 64 * 1024 * 1024;

/// Floors of the pool per partition: an active spilling operator keeps
/// `memory_limit / (FLOORS_PER_PARTITION * partitions)` bytes (8 MiB of the smallest pool
/// with 1 partition, 4 MiB with 2), so that a partition's aggregations, repartitions and
/// sorts fit their floors in its share of the pool.
const FLOORS_PER_PARTITION: usize = 8;

/// Rows per batch (DataFusion's default) when each partition has at least
/// [`FULL_BATCH_SHARE`] bytes of the pool; proportionally fewer (at least
/// [`MIN_BATCH_ROWS`]) below, so that a few batches of wide rows fit an operator's floor.
const BATCH_ROWS: usize = 8192;
const FULL_BATCH_SHARE: usize = 256 * 1024 * 1024;
const MIN_BATCH_ROWS: usize = 1024;

/// The most a sorting partition reserves for merging spilled runs (DataFusion's default).
const SORT_MERGE_RESERVATION: usize = 10 * 1024 * 1024;

/// How many of the largest memory consumers an out-of-memory error names.
const REPORTED_CONSUMERS: NonZeroUsize = NonZeroUsize::new(5).unwrap();

/// How a transform uses the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// Partitions of scans and of the plan above them (default: two per available core).
    pub partitions: usize,
    /// Bytes the operators of a run may hold before they spill.
    pub memory_limit: usize,
    /// Where spill files go (default: the OS temporary directory).
    pub spill_dir: Option<PathBuf>,
}

/// Default partitions per available core.
const PARTITIONS_PER_CORE: usize = 2;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            // Two partitions per core: silver's scan hands each partition whole tenants
            // (scan.rs), and with one per core the partition that drew more bytes finished
            // alone; with two per core the runtime's workers even the load out (full silver
            // rebuild of docs/benchmarks.md: 4.7-6.2 s wall instead of 5.5-6.5 s, same CPU).
            partitions: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1)
                * PARTITIONS_PER_CORE,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            spill_dir: None,
        }
    }
}

impl EngineOptions {
    /// A session with these partitions, the memory pool and the spill directory; refuses a
    /// memory limit below [`MIN_MEMORY_LIMIT`].
    pub fn session(&self) -> Result<SessionContext, TransformError> {
        if self.memory_limit < MIN_MEMORY_LIMIT {
            return Err(TransformError::InvalidOptions(format!(
                "memory limit of {} bytes is below the minimum of {MIN_MEMORY_LIMIT} bytes \
                 ({} MiB)",
                self.memory_limit,
                MIN_MEMORY_LIMIT / (1024 * 1024)
            )));
        }
        let mode = match &self.spill_dir {
            Some(dir) => DiskManagerMode::Directories(vec![dir.clone()]),
            None => DiskManagerMode::OsTmpDirectory,
        };
        let partitions = self.partitions.max(1);
        let floor = self.memory_limit / (FLOORS_PER_PARTITION * partitions);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(TrackConsumersPool::new(
                FloorPool::new(self.memory_limit, floor),
                REPORTED_CONSUMERS,
            )))
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(mode))
            .build_arc()?;
        // Each sorting partition reserves this much up front for merging its spilled runs;
        // DataFusion's 10 MiB default would not fit a small pool.
        let merge_reservation = (self.memory_limit / (4 * partitions)).min(SORT_MERGE_RESERVATION);
        let share = self.memory_limit / partitions;
        let batch_rows = if share >= FULL_BATCH_SHARE {
            BATCH_ROWS
        } else {
            (BATCH_ROWS * (share / (1024 * 1024)) / (FULL_BATCH_SHARE / (1024 * 1024)))
                .max(MIN_BATCH_ROWS)
        };
        let mut config = SessionConfig::new()
            .with_target_partitions(partitions)
            .with_batch_size(batch_rows)
            .with_sort_spill_reservation_bytes(merge_reservation);
        // A scan hash-partitioned by a column (silver's tenant, crate::scan) satisfies an
        // aggregation grouped by that column and more, whatever the partition count: each
        // partition then aggregates alone instead of repartitioning every row.
        config.options_mut().optimizer.subset_repartition_threshold = 1;
        Ok(SessionContext::new_with_config_rt(config, runtime))
    }
}
