//! The Confluent Schema Registry client (`GET /schemas/ids/{id}`) and [`RecordDecoder`], the
//! ingest loop's decoder for JSON and Confluent Avro records. Does I/O (HTTP).
//!
//! Schemas are immutable by id, so a schema fetched is kept (a deployment has one per table
//! version); at most [`MAX_CACHED_SCHEMAS`] are held, and when a batch would pass that, the
//! schemas the batch does not name are dropped (and fetched again when named). Errors are
//! classified:
//! - unknown id (HTTP 404 with `error_code` 40403): the records naming it are dead letters
//!   of kind `unknown_schema_id`, and the partition keeps moving. The answer is not cached
//!   past the current batch, in case the schema is registered later;
//! - registry unavailable (connection error, timeout, HTTP 408, 429, 5xx): retryable.
//!   [`RecordDecoder::prepare`] waits it out with backoff before any record of the batch is
//!   decoded, so an outage stalls ingestion instead of dead-lettering good records;
//! - credentials refused (HTTP 401, 403) and any other answer (a 404 without 40403 means
//!   the URL is wrong): not retryable, the run stops with the error.
//!
//! The password is sent as HTTP basic auth and never logged or shown in errors.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use firn_catalog::config::{PipelineConfig, SchemaRegistryConfig};
use serde::Deserialize;

use crate::avro::{self, AvroSchema, confluent_header};
use crate::debezium::{DecodeError, DecodeErrorKind, Decoded, error};
use crate::error::IngestError;
use crate::source::SourceEvent;

/// Schema Registry error code for "schema not found".
const SCHEMA_NOT_FOUND: i64 = 40403;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why the registry did not give a schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry {url} is unavailable: {message}")]
    Unavailable { url: String, message: String },
    #[error(
        "schema registry {url} refused the credentials (http {status}: {message}); check \
         schema-registry.user and FIRN_SCHEMA_REGISTRY__PASSWORD"
    )]
    Unauthorized {
        url: String,
        status: u16,
        message: String,
    },
    #[error("schema registry {url} answered http {status} for schema id {id}: {message}")]
    Rejected {
        url: String,
        id: u32,
        status: u16,
        message: String,
    },
}

impl RegistryError {
    /// Whether waiting and asking again may help (the registry is down or overloaded).
    pub fn is_retryable(&self) -> bool {
        matches!(self, RegistryError::Unavailable { .. })
    }
}

/// A schema as the registry returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredSchema {
    pub schema: String,
    /// Absent for Avro; `PROTOBUF` or `JSON` otherwise.
    #[serde(default)]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: Option<i64>,
    message: Option<String>,
}

/// HTTP client for one Schema Registry.
#[derive(Clone)]
pub struct SchemaRegistry {
    http: reqwest::Client,
    /// Base URL without a trailing slash.
    url: String,
    /// `Basic ...`, when credentials are configured.
    authorization: Option<String>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("url", &self.url)
            .field("authenticated", &self.authorization.is_some())
            .finish()
    }
}

impl SchemaRegistry {
    pub fn new(config: &SchemaRegistryConfig) -> Result<SchemaRegistry, IngestError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|err| IngestError::Invalid(format!("schema registry http client: {err}")))?;
        let authorization = config.user.as_ref().map(|user| {
            let password = config.password.as_ref().map_or("", |p| p.expose());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )
        });
        Ok(SchemaRegistry {
            http,
            url: config.url.trim().trim_end_matches('/').to_string(),
            authorization,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One `GET /schemas/ids/{id}`: the schema, `None` when the registry does not know the
    /// id, or the classified error.
    pub async fn fetch(&self, id: u32) -> Result<Option<RegisteredSchema>, RegistryError> {
        let unavailable = |message: String| RegistryError::Unavailable {
            url: self.url.clone(),
            message,
        };
        let mut request = self
            .http
            .get(format!("{}/schemas/ids/{id}", self.url))
            .header(
                reqwest::header::ACCEPT,
                "application/vnd.schemaregistry.v1+json, application/json",
            );
        if let Some(authorization) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let response = request
            .send()
            .await
            .map_err(|err| unavailable(transport_message(&err)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|err| unavailable(transport_message(&err)))?;
        let code = status.as_u16();
        if status.is_success() {
            return serde_json::from_slice::<RegisteredSchema>(&body)
                .map(Some)
                .map_err(|err| RegistryError::Rejected {
                    url: self.url.clone(),
                    id,
                    status: code,
                    message: format!(
                        "not a schema response ({err}); is schema-registry.url right? body: {}",
                        shorten(&body)
                    ),
                });
        }
        let error_body = serde_json::from_slice::<ErrorBody>(&body).ok();
        let message = error_body
            .as_ref()
            .and_then(|e| e.message.clone())
            .unwrap_or_else(|| shorten(&body));
        match code {
            404 if error_body.and_then(|e| e.error_code) == Some(SCHEMA_NOT_FOUND) => Ok(None),
            401 | 403 => Err(RegistryError::Unauthorized {
                url: self.url.clone(),
                status: code,
                message,
            }),
            408 | 429 | 500..=599 => Err(unavailable(format!("http {code}: {message}"))),
            _ => Err(RegistryError::Rejected {
                url: self.url.clone(),
                id,
                status: code,
                message,
            }),
        }
    }

    /// [`fetch`](Self::fetch), retrying while the registry is unavailable with exponential
    /// backoff (100 ms doubling to 5 s), until it answers or `stop` is set (then the last
    /// error is returned).
    pub async fn fetch_retrying(
        &self,
        id: u32,
        stop: &AtomicBool,
    ) -> Result<Option<RegisteredSchema>, RegistryError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1u64;
        loop {
            match self.fetch(id).await {
                Err(err) if err.is_retryable() && !stop.load(Ordering::SeqCst) => {
                    tracing::warn!(schema_id = id, attempt, retry_in_ms = backoff.as_millis() as u64, error = %err, "schema registry unavailable; ingestion waits for it");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }
}

/// A transport error with its causes (reqwest's own message is terse).
fn transport_message(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn shorten(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The most schemas (or unusable-schema answers) a [`RecordDecoder`] keeps.
pub const MAX_CACHED_SCHEMAS: usize = 4096;

/// Makes room for `wanted` more schemas: when the cache would hold more than `cap`, keeps
/// only the ids the current batch names. Pure.
fn make_room<V>(schemas: &mut HashMap<u32, V>, named: &BTreeSet<u32>, wanted: usize, cap: usize) {
    if schemas.len() + wanted > cap {
        schemas.retain(|id, _| named.contains(id));
    }
}

/// The ingest loop's decoder: JSON records directly, Confluent Avro records with schemas
/// from the registry, fetched by [`prepare`](Self::prepare) before a batch is decoded.
#[derive(Debug)]
pub struct RecordDecoder {
    registry: Option<SchemaRegistry>,
    /// Schemas by id, and ids whose schema firn cannot use (not Avro, unparsable); both
    /// are permanent because a schema never changes under its id.
    /// An id missing here after [`prepare`](Self::prepare) is unknown to the registry:
    /// it is asked again in the next batch that names it.
    schemas: HashMap<u32, Result<Arc<AvroSchema>, DecodeError>>,
}

impl RecordDecoder {
    pub fn new(config: &PipelineConfig) -> Result<RecordDecoder, IngestError> {
        avro::limit_allocations(config.kafka.max_message_bytes as usize);
        Ok(RecordDecoder {
            registry: config
                .schema_registry
                .as_ref()
                .map(SchemaRegistry::new)
                .transpose()?,
            schemas: HashMap::new(),
        })
    }

    /// Fetches the schemas the batch's Avro records name and this decoder does not hold
    /// yet. While the registry is unavailable it waits (see [`SchemaRegistry::fetch_retrying`]);
    /// it returns an error only for a non-retryable answer, or when `stop` is set during
    /// an outage.
    pub async fn prepare<R>(
        &mut self,
        events: &[SourceEvent<R>],
        stop: &AtomicBool,
    ) -> Result<(), IngestError> {
        let Some(registry) = &self.registry else {
            return Ok(());
        };
        let named: BTreeSet<u32> = events
            .iter()
            .filter_map(|event| match event {
                SourceEvent::Record(record) => Some(record),
                _ => None,
            })
            .flat_map(|record| [record.key.as_deref(), record.value.as_deref()])
            .flatten()
            .filter_map(|bytes| confluent_header(bytes).map(|(id, _)| id))
            .collect();
        let wanted: Vec<u32> = named
            .iter()
            .copied()
            .filter(|id| !self.schemas.contains_key(id))
            .collect();
        make_room(&mut self.schemas, &named, wanted.len(), MAX_CACHED_SCHEMAS);
        for id in wanted {
            match registry.fetch_retrying(id, stop).await? {
                Some(registered) => {
                    let parsed = usable_schema(id, &registered);
                    match &parsed {
                        Ok(_) => tracing::info!(schema_id = id, "fetched avro schema"),
                        Err(err) => {
                            tracing::warn!(schema_id = id, error = %err, "schema cannot be used; its records are dead-lettered")
                        }
                    }
                    self.schemas.insert(id, parsed);
                }
                None => {
                    tracing::warn!(
                        schema_id = id,
                        "schema id unknown to the registry; its records are dead-lettered"
                    );
                }
            }
        }
        Ok(())
    }

    /// Decodes one record; Avro schemas must have been [`prepare`](Self::prepare)d.
    pub fn decode(&self, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Decoded, DecodeError> {
        avro::decode(key, value, |id| self.schema(id))
    }

    fn schema(&self, id: u32) -> Result<Arc<AvroSchema>, DecodeError> {
        match self.schemas.get(&id) {
            Some(known) => known.clone(),
            None => Err(error(
                DecodeErrorKind::UnknownSchemaId,
                match &self.registry {
                    None => format!(
                        "record is confluent avro (schema id {id}) but no [schema-registry] \
                         is configured"
                    ),
                    Some(registry) => format!(
                        "schema id {id} is not registered in the schema registry at {}",
                        registry.url()
                    ),
                },
            )),
        }
    }
}

/// The parsed schema, or why its records cannot be decoded.
fn usable_schema(id: u32, registered: &RegisteredSchema) -> Result<Arc<AvroSchema>, DecodeError> {
    if let Some(schema_type) = registered
        .schema_type
        .as_deref()
        .filter(|t| !t.eq_ignore_ascii_case("AVRO"))
    {
        return Err(error(
            DecodeErrorKind::Unsupported,
            format!("schema id {id} is a {schema_type} schema; firn reads Avro and JSON"),
        ));
    }
    if !registered.references.is_empty() {
        return Err(error(
            DecodeErrorKind::Unsupported,
            format!("schema id {id} uses schema references, which firn does not resolve"),
        ));
    }
    AvroSchema::parse(id, &registered.schema)
        .map(Arc::new)
        .map_err(|message| {
            error(
                DecodeErrorKind::BadAvro,
                format!("schema id {id} is not a usable avro schema: {message}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_cache_keeps_only_the_batchs_ids_when_it_would_overflow() {
        let mut schemas: HashMap<u32, ()> = (0..4).map(|id| (id, ())).collect();
        let named = BTreeSet::from([1, 3, 9]);
        // Room left: nothing is dropped.
        make_room(&mut schemas, &named, 1, 5);
        assert_eq!(schemas.len(), 4);
        // Over the cap: only what the batch names stays.
        make_room(&mut schemas, &named, 2, 5);
        let mut kept: Vec<u32> = schemas.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![1, 3]);
    }

    #[test]
    fn avro_without_a_registry_is_an_unknown_schema_id_and_json_still_decodes() {
        let config = PipelineConfig::from_toml("", Vec::new(), std::path::Path::new("/tmp"))
            .expect("default config");
        let decoder = RecordDecoder::new(&config).unwrap();
        let avro = avro::confluent_bytes(7, &[0]);
        let err = decoder
            .decode(Some(br#"{"id":1}"#), Some(&avro))
            .unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::UnknownSchemaId);
        assert!(err.message.contains("no [schema-registry]"), "{err}");
        let json = br#"{"before":null,"after":{"id":1},"source":{},"op":"c"}"#;
        assert!(matches!(
            decoder.decode(Some(br#"{"id":1}"#), Some(json)),
            Ok(Decoded::Change(_))
        ));
    }

    #[test]
    fn only_an_unavailable_registry_is_retryable_and_debug_hides_credentials() {
        let unavailable = RegistryError::Unavailable {
            url: "http://r".into(),
            message: "connection refused".into(),
        };
        let unauthorized = RegistryError::Unauthorized {
            url: "http://r".into(),
            status: 401,
            message: "Unauthorized".into(),
        };
        assert!(unavailable.is_retryable() && !unauthorized.is_retryable());
        assert!(!IngestError::from(unavailable).is_bad_input());
        assert!(IngestError::from(unauthorized).is_bad_input());
        let registry = SchemaRegistry::new(&SchemaRegistryConfig {
            url: "http://registry:8081/".into(),
            user: Some("firn".into()),
            password: Some(firn_catalog::config::Secret::new("hunter2")),
            timeout: Duration::from_secs(1),
        })
        .unwrap();
        assert_eq!(registry.url(), "http://registry:8081");
        let shown = format!("{registry:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("Basic"),
            "{shown}"
        );
    }
}
