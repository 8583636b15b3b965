//! Reads the first rows of a table's current snapshot as a printable grid, for the demo
//! and people at a terminal. Does I/O (reads data files).

use std::sync::Arc;

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use firn_catalog::{Catalog, TableName};
use iceberg_datafusion::IcebergStaticTableProvider;

use crate::error::TransformError;

/// Up to `limit` rows of `table`'s current snapshot ordered by `order_by`, as a text grid;
/// `None` when the table has no snapshot yet.
pub async fn preview(
    catalog: &Catalog,
    table: &TableName,
    order_by: &[&str],
    limit: usize,
) -> Result<Option<String>, TransformError> {
    let loaded = catalog.load_table(table).await?;
    let Some(snapshot_id) = loaded.metadata().current_snapshot_id() else {
        return Ok(None);
    };
    let provider = IcebergStaticTableProvider::try_new_from_table_snapshot(loaded, snapshot_id)
        .await
        .map_err(TransformError::iceberg("open snapshot", table))?;
    let context = SessionContext::new();
    context.register_table("preview", Arc::new(provider))?;
    let order = if order_by.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", order_by.join(", "))
    };
    let batches = context
        .sql(&format!("SELECT * FROM preview{order} LIMIT {limit}"))
        .await?
        .collect()
        .await?;
    let grid = pretty_format_batches(&batches).map_err(datafusion::error::DataFusionError::from)?;
    Ok(Some(grid.to_string()))
}
