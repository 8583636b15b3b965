//! The DataFusion session every transform runs in: how many partitions plans use and a
//! bounded memory pool that spills to disk. Builds values only; the session it returns
//! writes spill files when a plan runs.
//!
//! Memory: a [`FairSpillPool`] of `memory_limit` bytes shared by the spilling operators
//! (sort, aggregate, join) of one run; a sort that does not fit spills sorted runs to the
//! spill directory and merges them. Scans read one file at a time per partition, so the
//! pool plus about one row group per partition is what a run holds.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

/// Default memory pool size: 1 GiB.
pub const DEFAULT_MEMORY_LIMIT: usize = 1024 * 1024 * 1024;

/// The most a sorting partition reserves for merging spilled runs (DataFusion's default).
const SORT_MERGE_RESERVATION: usize = 10 * 1024 * 1024;

/// How a transform uses the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// Partitions of scans and of the plan above them (default: available cores).
    pub partitions: usize,
    /// Bytes the spilling operators may hold before they spill.
    pub memory_limit: usize,
    /// Where spill files go (default: the OS temporary directory).
    pub spill_dir: Option<PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            partitions: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            spill_dir: None,
        }
    }
}

impl EngineOptions {
    /// A session with these partitions, the memory pool and the spill directory.
    pub fn session(&self) -> Result<SessionContext> {
        let mode = match &self.spill_dir {
            Some(dir) => DiskManagerMode::Directories(vec![dir.clone()]),
            None => DiskManagerMode::OsTmpDirectory,
        };
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(self.memory_limit)))
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(mode))
            .build_arc()?;
        let partitions = self.partitions.max(1);
        // Each sorting partition reserves this much up front for merging its spilled runs;
        // DataFusion's 10 MiB default would not fit a small pool.
        let merge_reservation = (self.memory_limit / (4 * partitions)).min(SORT_MERGE_RESERVATION);
        let config = SessionConfig::new()
            .with_target_partitions(partitions)
            .with_sort_spill_reservation_bytes(merge_reservation);
        Ok(SessionContext::new_with_config_rt(config, runtime))
    }
}
