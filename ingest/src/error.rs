//! The ingest crate's error type. Pure.

/// Errors of the ingest service, the generator excepted (it has its own).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Catalog(#[from] firn_catalog::CatalogError),
    #[error("kafka {operation} failed: {source}")]
    Kafka {
        operation: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error(transparent)]
    Generator(#[from] crate::generator::GeneratorError),
    #[error(transparent)]
    Transform(#[from] firn_transforms::TransformError),
    #[error(transparent)]
    SchemaRegistry(#[from] crate::schema_registry::RegistryError),
    #[error("{0}")]
    Invalid(String),
    #[error("i/o on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl IngestError {
    pub(crate) fn kafka(
        operation: &'static str,
    ) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        move |source| IngestError::Kafka { operation, source }
    }

    /// Returns true when the error comes from bad input rather than a failing service.
    pub fn is_bad_input(&self) -> bool {
        match self {
            IngestError::Catalog(err) => err.is_bad_input(),
            IngestError::Invalid(_) => true,
            IngestError::Transform(err) => err.is_bad_input(),
            IngestError::SchemaRegistry(err) => !err.is_retryable(),
            _ => false,
        }
    }
}
