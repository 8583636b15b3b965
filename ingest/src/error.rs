//! The ingest crate's error type and its retryable / bad-input classification. Pure.

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

    /// Returns true when the same run may succeed later without any change by the operator:
    /// a broker, catalog, storage or registry that is down or slow, a lost commit race.
    /// Bad input, bad configuration and refused credentials are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            IngestError::Catalog(err) => err.is_retryable(),
            IngestError::Transform(err) => err.is_retryable(),
            IngestError::SchemaRegistry(err) => err.is_retryable(),
            IngestError::Kafka { source, .. } => kafka_is_retryable(source),
            IngestError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
            ),
            IngestError::Generator(_) | IngestError::Invalid(_) => false,
        }
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

/// Broker-side and transport conditions that pass on their own; configuration, authorization
/// and unknown-topic errors do not.
fn kafka_is_retryable(err: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        err.rdkafka_error_code(),
        Some(
            Code::BrokerTransportFailure
                | Code::AllBrokersDown
                | Code::OperationTimedOut
                | Code::RequestTimedOut
                | Code::BrokerNotAvailable
                | Code::LeaderNotAvailable
                | Code::NotLeaderForPartition
                | Code::NetworkException
                | Code::CoordinatorNotAvailable
                | Code::NotCoordinator
                | Code::CoordinatorLoadInProgress
                | Code::RebalanceInProgress
                | Code::IllegalGeneration
                | Code::UnknownMemberId
                | Code::Resolve
                | Code::QueueFull
                | Code::NotEnoughReplicas
                | Code::NotEnoughReplicasAfterAppend
                | Code::KafkaStorageError
                | Code::FencedLeaderEpoch
                | Code::UnknownLeaderEpoch
                | Code::OffsetNotAvailable
                | Code::ThrottlingQuotaExceeded,
        )
    )
}

#[cfg(test)]
mod tests {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    use super::IngestError;

    fn kafka(code: RDKafkaErrorCode) -> IngestError {
        IngestError::Kafka {
            operation: "test",
            source: KafkaError::MessageConsumption(code),
        }
    }

    #[test]
    fn outages_are_retryable_and_bad_input_is_not() {
        assert!(kafka(RDKafkaErrorCode::AllBrokersDown).is_retryable());
        assert!(kafka(RDKafkaErrorCode::RequestTimedOut).is_retryable());
        assert!(!kafka(RDKafkaErrorCode::TopicAuthorizationFailed).is_retryable());
        assert!(!kafka(RDKafkaErrorCode::UnknownTopicOrPartition).is_retryable());
        let invalid = IngestError::Invalid("source `x` needs primary-key".into());
        assert!(!invalid.is_retryable() && invalid.is_bad_input());
        let refused = IngestError::Io {
            path: "broker".into(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert!(refused.is_retryable() && !refused.is_bad_input());
        let missing = IngestError::Io {
            path: "config.toml".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert!(!missing.is_retryable());
    }
}
