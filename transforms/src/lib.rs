//! firn's transforms crate: silver and gold as pure DataFusion plans over pinned input
//! snapshots, committed through `firn_catalog`. Not built yet: the crate exists so the
//! workspace layout and its dependency set (datafusion, iceberg-datafusion) are fixed and
//! compiled from the start.
