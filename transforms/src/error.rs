//! The transforms crate's one error type. Pure: no I/O here.

use firn_catalog::CatalogError;

/// Everything that can go wrong while computing and committing a derived table.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// Loading, writing or committing through the catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),

    /// Planning or executing a DataFusion query failed.
    #[error("query failed: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),

    /// Reading an input snapshot through iceberg failed.
    #[error("iceberg {operation} failed for `{table}`: {source}")]
    Iceberg {
        operation: &'static str,
        table: String,
        #[source]
        source: Box<iceberg::Error>,
    },

    /// The requested input snapshot does not exist.
    #[error("snapshot {snapshot_id} does not exist in `{table}`")]
    UnknownSnapshot { table: String, snapshot_id: i64 },

    /// The input table does not have what the transform needs (columns, key columns).
    #[error("invalid input for `{table}`: {message}")]
    InvalidInput { table: String, message: String },

    /// A gold model is unusable: its SQL, what it reads, its key, or its result.
    #[error("gold model `{model}`: {message}")]
    InvalidModel { model: String, message: String },

    /// A gold model's SQL file cannot be read.
    #[error("gold model `{model}`: cannot read {path}: {source}")]
    ModelSql {
        model: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The run's options are unusable (e.g. a memory limit too small to run anything).
    #[error("invalid options: {0}")]
    InvalidOptions(String),

    /// The plan's output cannot be written to the existing output table.
    #[error("output `{table}` is incompatible with the plan: {message}")]
    IncompatibleOutput { table: String, message: String },
}

impl TransformError {
    /// Returns true when the error comes from bad input (arguments, table contents,
    /// schemas) rather than from a failing service; the CLI maps this to its own exit code.
    pub fn is_bad_input(&self) -> bool {
        match self {
            TransformError::Catalog(err) => err.is_bad_input(),
            TransformError::DataFusion(err) => matches!(
                err.find_root(),
                datafusion::error::DataFusionError::Plan(_)
                    | datafusion::error::DataFusionError::SchemaError(..)
            ),
            TransformError::UnknownSnapshot { .. }
            | TransformError::InvalidInput { .. }
            | TransformError::InvalidModel { .. }
            | TransformError::ModelSql { .. }
            | TransformError::InvalidOptions(_)
            | TransformError::IncompatibleOutput { .. } => true,
            TransformError::Iceberg { .. } => false,
        }
    }

    /// Returns true when running again unchanged may succeed (a storage hiccup, a lost race).
    pub fn is_retryable(&self) -> bool {
        match self {
            TransformError::Catalog(err) => err.is_retryable(),
            TransformError::Iceberg { source, .. } => source.retryable(),
            _ => false,
        }
    }

    pub(crate) fn iceberg(
        operation: &'static str,
        table: impl std::fmt::Display,
    ) -> impl FnOnce(iceberg::Error) -> Self {
        let table = table.to_string();
        move |source| TransformError::Iceberg {
            operation,
            table,
            source: Box::new(source),
        }
    }
}
