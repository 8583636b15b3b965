//! firn's transforms crate: the silver and gold tiers as pure DataFusion plans over pinned
//! input snapshots, and the I/O shell that runs them and commits the result through
//! `firn_catalog` (the only code in firn that commits to Iceberg).
//!
//! - [`silver`]: pure. `silver_plan` turns a bronze change log into the current state per
//!   (tenant, primary key). Unit- and property-tested over in-memory batches.
//! - [`run`]: I/O. `run_silver` reads `bronze.<table>` at one snapshot, runs the plan,
//!   writes Parquet data files and commits an overwrite of `silver.<table>` whose snapshot
//!   summary records the input snapshot (lineage). Re-running on the same input commits
//!   nothing.
//! - [`gold`]: pure. The gold model registry: a model's SQL, its inputs (found by parsing
//!   the SQL), its declared key; [`gold::run_order`] sorts models by dependency.
//! - [`gold_run`]: I/O. `load_models` reads `sql/gold/*.sql`; `run_gold` runs one model over
//!   pinned snapshots of its inputs and commits an overwrite of `gold.<model>` with lineage;
//!   `run_all_gold` runs every configured model in dependency order.
//! - [`error`]: the crate's error type.
//!
//! Not built yet: incremental silver (previous silver plus bronze changes since its input
//! snapshot), the transform binary.

pub mod error;
pub mod gold;
pub mod gold_run;
pub mod preview;
pub mod run;
pub mod silver;

pub use error::TransformError;
pub use gold::{GoldModel, run_order};
pub use gold_run::{
    GoldOptions, GoldReport, MODEL_FINGERPRINT, load_models, run_all_gold, run_gold,
};
pub use preview::preview;
pub use run::{SilverOptions, SilverReport, TransformStatus, run_silver};
pub use silver::silver_plan;
