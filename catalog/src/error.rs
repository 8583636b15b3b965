//! The catalog crate's one error type, with a retryable/not-retryable classification.
//! Pure: no I/O here.

use std::fmt;

/// Everything that can go wrong in configuration, catalog access and commits.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The pipeline configuration is invalid; `key` names the offending setting.
    #[error("invalid config at `{key}`: {message}")]
    Config { key: String, message: String },

    /// A table, namespace or tenant name breaks the naming rules.
    #[error("invalid {kind} name `{name}`: {reason}")]
    InvalidName {
        kind: NameKind,
        name: String,
        reason: String,
    },

    /// The catalog database could not be reached or answered with an error.
    #[error("catalog database {operation} failed: {source}")]
    Database {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },

    /// The table does not exist in the catalog.
    #[error("table `{0}` does not exist")]
    TableNotFound(String),

    /// Reading or writing Iceberg metadata or data files failed.
    #[error("iceberg {operation} failed for `{table}`: {source}")]
    Iceberg {
        operation: &'static str,
        table: String,
        // Boxed: iceberg's error carries a backtrace and context and is large.
        #[source]
        source: Box<iceberg::Error>,
    },

    /// The operation is not valid against the table's current state
    /// (unknown snapshot, tag already exists, incompatible type change, ...).
    #[error("cannot {operation} on `{table}`: {message}")]
    InvalidOperation {
        operation: &'static str,
        table: String,
        message: String,
    },

    /// The caller's re-validation refused to commit against the table's new state.
    #[error("commit to `{table}` rejected by re-validation: {reason}")]
    Rejected { table: String, reason: String },

    /// Every attempt lost the compare-and-swap race.
    #[error("commit to `{table}` lost the race {attempts} times; giving up")]
    TooManyConflicts { table: String, attempts: u32 },

    /// Another writer claimed the relay ledger of a hot table after this one did: this
    /// process is a zombie (paused past a takeover, or a second relay on the same table) and
    /// must stop instead of recording or acknowledging anything.
    #[error("relay ledger of `{table}` was claimed by another relay; this one stops")]
    Fenced { table: String },

    /// The outcome of a commit could not be determined even after reading the history.
    #[error("commit `{commit_id}` to `{table}` has an unknown outcome: {message}")]
    UnknownOutcome {
        table: String,
        commit_id: String,
        message: String,
    },
}

/// What kind of name failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Table,
    Tenant,
    Namespace,
    Column,
    Model,
    Catalog,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Table => "table",
            NameKind::Tenant => "tenant",
            NameKind::Namespace => "namespace",
            NameKind::Column => "column",
            NameKind::Model => "model",
            NameKind::Catalog => "catalog",
        })
    }
}

impl CatalogError {
    /// Returns true when the same call may succeed later without any change by the caller
    /// (a database hiccup, a storage timeout, a lost race).
    pub fn is_retryable(&self) -> bool {
        match self {
            CatalogError::Database { source, .. } => !matches!(
                source,
                sqlx::Error::Configuration(_)
                    | sqlx::Error::ColumnNotFound(_)
                    | sqlx::Error::TypeNotFound { .. }
            ),
            CatalogError::Iceberg { source, .. } => {
                source.retryable() || source.kind() == iceberg::ErrorKind::Unexpected
            }
            CatalogError::TooManyConflicts { .. } | CatalogError::UnknownOutcome { .. } => true,
            CatalogError::Config { .. }
            | CatalogError::InvalidName { .. }
            | CatalogError::TableNotFound(_)
            | CatalogError::InvalidOperation { .. }
            | CatalogError::Rejected { .. }
            | CatalogError::Fenced { .. } => false,
        }
    }

    /// Returns true when the error comes from bad input (config, names, operations) rather
    /// than from a failing service; the CLI maps this to a distinct exit code.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            CatalogError::Config { .. }
                | CatalogError::InvalidName { .. }
                | CatalogError::TableNotFound(_)
                | CatalogError::InvalidOperation { .. }
        )
    }

    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        CatalogError::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    pub(crate) fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| CatalogError::Database { operation, source }
    }

    pub(crate) fn iceberg(
        operation: &'static str,
        table: impl fmt::Display,
    ) -> impl FnOnce(iceberg::Error) -> Self {
        let table = table.to_string();
        move |source| CatalogError::Iceberg {
            operation,
            table,
            source: Box::new(source),
        }
    }

    pub(crate) fn invalid(
        operation: &'static str,
        table: impl fmt::Display,
        message: impl Into<String>,
    ) -> Self {
        CatalogError::InvalidOperation {
            operation,
            table: table.to_string(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
