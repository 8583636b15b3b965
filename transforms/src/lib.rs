//! firn's transforms crate: the silver and gold tiers as pure DataFusion plans over pinned
//! input snapshots, and the I/O shell that runs them and commits the result through
//! `firn_catalog` (the only code in firn that commits to Iceberg).
//!
//! - [`silver`]: pure. `silver_plan` turns a bronze change log into the current state per
//!   (tenant, primary key); `incremental_silver_plan` computes the same rows for some
//!   tenants from their previous silver rows and the new bronze events. Unit- and
//!   property-tested over in-memory batches (incremental == full for any split).
//! - [`run`]: I/O. `run_silver` reads `bronze.<table>` at one snapshot, runs the plan
//!   (incrementally when bronze only grew since the previous silver snapshot's input),
//!   writes Parquet data files and commits an overwrite of the changed partitions of
//!   `silver.<table>` whose snapshot summary records the input snapshot (lineage).
//!   Re-running on the same input commits nothing.
//! - [`gold`]: pure. The gold model registry: a model's SQL, its inputs (found by parsing
//!   the SQL), its declared key; [`gold::run_order`] sorts models by dependency.
//! - [`gold_run`]: I/O. `load_models` reads `sql/gold/*.sql`; `run_gold` runs one model over
//!   pinned snapshots of its inputs and commits an overwrite of `gold.<model>` with lineage;
//!   `run_all_gold` runs every configured model in dependency order.
//! - [`latest`]: pure. `latest_row`, the aggregate that keeps the newest row per group
//!   (silver's top-1 per key without sorting the events).
//! - [`lineage`]: pure. Which input snapshots a derived table's rows reflect, per tenant;
//!   whether bronze only grew since.
//! - [`scan`]: I/O. An Iceberg snapshot as a DataFusion table with one partition per group
//!   of data files (iceberg-datafusion's scan is a single partition).
//! - [`engine`]: the DataFusion session: partitions, a memory pool that spills to disk.
//! - [`error`]: the crate's error type.

pub mod engine;
pub mod error;
pub mod gold;
pub mod gold_run;
pub mod latest;
pub mod lineage;
pub mod pool;
pub mod preview;
pub mod run;
pub mod scan;
pub mod silver;

pub use engine::EngineOptions;
pub use error::TransformError;
pub use gold::{GoldModel, run_order};
pub use gold_run::{
    GoldOptions, GoldReport, MODEL_FINGERPRINT, load_models, run_all_gold, run_gold,
};
pub use preview::preview;
pub use run::{
    InputRead, SilverMode, SilverOptions, SilverReport, Spilled, TransformStatus, run_silver,
};
pub use silver::{incremental_silver_plan, silver_plan};
