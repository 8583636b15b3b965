//! The pipeline configuration: serde structs for the TOML file, `FIRN_` environment
//! overrides, and validation that names the offending key. Pure except [`PipelineConfig::load`],
//! which reads the file and the process environment.
//!
//! Overrides: an environment variable `FIRN_<SECTION>__<KEY>[__<KEY>...]` sets the key at
//! that path, with `__` between path segments and `_` standing for `-` inside a key
//! (`FIRN_CATALOG__URI`, `FIRN_COMMIT__MAX_RECORDS`, `FIRN_WAREHOUSE__S3__SECRET_ACCESS_KEY`).
//! Under `kafka.properties` a `_` stands for `.` (`FIRN_KAFKA__PROPERTIES__SASL_PASSWORD`
//! sets `sasl.password`). Values are taken as strings (numeric and boolean keys accept
//! them; `FIRN_CATALOG__PASSWORD=12345` stays a string), except that a value starting with
//! `[` is read as a TOML array for list keys. Variables without `__`
//! (`FIRN_CONFIG`, `FIRN_LOG`, ...) are not overrides.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::{CatalogError, NameKind, Result};
use crate::names;

/// The catalog name every engine uses to share the tables (pyiceberg, StarRocks, Spark).
pub const DEFAULT_CATALOG_NAME: &str = "firn";

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "FIRN_";

/// The whole pipeline: where data lives, where it comes from, how it is committed and served.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default)]
    pub warehouse: WarehouseConfig,
    #[serde(default)]
    pub catalog: CatalogConfig,
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub commit: CommitPolicy,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub gold: Vec<GoldModelConfig>,
    #[serde(default)]
    pub relay: Option<RelayConfig>,
    /// Confluent Schema Registry, for Avro input (`[schema-registry]`).
    #[serde(default)]
    pub schema_registry: Option<SchemaRegistryConfig>,
    #[serde(default)]
    pub admin: AdminConfig,
    /// Directory that relative paths are resolved against (the config file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Where table data and metadata files live.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WarehouseConfig {
    /// `s3://bucket/prefix`, `file:///abs/path`, or a local path (relative to the config
    /// file's directory, or the working directory without a file).
    #[serde(default = "default_warehouse_uri")]
    pub uri: String,
    /// S3 settings; only read when `uri` is `s3://`.
    #[serde(default)]
    pub s3: S3Config,
}

fn default_warehouse_uri() -> String {
    "warehouse".to_string()
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        WarehouseConfig {
            uri: default_warehouse_uri(),
            s3: S3Config::default(),
        }
    }
}

/// S3 connection settings. Credentials left unset come from the standard AWS chain
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, profile, instance metadata).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct S3Config {
    /// Custom endpoint (MinIO, moto, ...); unset means AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most S3-compatible stores.
    #[serde(default, deserialize_with = "de_bool")]
    pub path_style: bool,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
}

/// The SQL catalog database (JDBC/pyiceberg `iceberg_tables` schema).
#[derive(Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CatalogConfig {
    /// `sqlite:path/to/catalog.db` or `postgres://user@host:5432/db`. Unset means a SQLite
    /// file `catalog.db` inside a local warehouse (or beside the config for S3 warehouses).
    pub uri: Option<String>,
    /// Catalog name shared with other engines.
    #[serde(default = "default_catalog_name")]
    pub name: String,
    /// Postgres password, kept out of the URI so it never shows up in logs.
    pub password: Option<Secret>,
    #[serde(default = "default_max_connections", deserialize_with = "de_u32")]
    pub max_connections: u32,
}

fn default_catalog_name() -> String {
    DEFAULT_CATALOG_NAME.to_string()
}

fn default_max_connections() -> u32 {
    4
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            uri: None,
            name: default_catalog_name(),
            password: None,
            max_connections: default_max_connections(),
        }
    }
}

impl fmt::Debug for CatalogConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatalogConfig")
            .field("uri", &self.uri.as_deref().map(redact_uri))
            .field("name", &self.name)
            .field("password", &self.password)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Kafka connection settings shared by ingest and relay.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`. Unset means librdkafka's in-process mock cluster (demo only).
    pub brokers: Option<String>,
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// `group` (default): the processes sharing `group-id` split the partitions and
    /// rebalance when one joins or leaves. `static`: this process owns `partitions`.
    #[serde(default)]
    pub assignment: AssignmentMode,
    /// Static mode only: `topic:partition` entries this process owns; empty means every
    /// partition of every topic a source matches.
    #[serde(default)]
    pub partitions: Vec<String>,
    /// Larger messages (key plus value) are not decoded: they go to the dead-letter table
    /// as `oversized`, with their first `max-message-bytes` bytes.
    #[serde(default = "default_max_message_bytes", deserialize_with = "de_bytes")]
    pub max_message_bytes: u64,
    /// Extra librdkafka properties (security, timeouts, ...), passed through unchanged.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// How a process gets its partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssignmentMode {
    #[default]
    Group,
    Static,
}

/// The assignment a process uses, as the Kafka source needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaAssignment {
    Group,
    /// `topic:partition` entries; empty means all partitions of the matching topics.
    Static {
        partitions: Vec<String>,
    },
}

fn default_group_id() -> String {
    "firn-ingest".to_string()
}

fn default_max_message_bytes() -> u64 {
    1024 * 1024
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: None,
            group_id: default_group_id(),
            assignment: AssignmentMode::Group,
            partitions: Vec::new(),
            max_message_bytes: default_max_message_bytes(),
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    pub fn assignment(&self) -> KafkaAssignment {
        match self.assignment {
            AssignmentMode::Group => KafkaAssignment::Group,
            AssignmentMode::Static => KafkaAssignment::Static {
                partitions: self.partitions.clone(),
            },
        }
    }
}

/// librdkafka properties that firn sets itself, because exactly-once depends on them.
const RESERVED_KAFKA_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "group.instance.id",
];

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(key, value)| {
                let shown = if is_sensitive_key(key) {
                    Secret::REDACTED
                } else {
                    value.as_str()
                };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("assignment", &self.assignment)
            .field("partitions", &self.partitions)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("properties", &properties)
            .finish()
    }
}

/// Returns true for property names whose values must never be printed.
pub fn is_sensitive_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "credential",
        "private",
        "key.pem",
    ]
    .iter()
    .any(|needle| key.contains(needle))
}

/// When a bronze commit cycle ends. The first limit reached wins.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CommitPolicy {
    /// Longest time between commits (`10s` default, at least `1s`).
    #[serde(default = "default_commit_interval", deserialize_with = "de_duration")]
    pub interval: Duration,
    /// Records per table per commit.
    #[serde(default = "default_max_records", deserialize_with = "de_u64")]
    pub max_records: u64,
    /// Encoded bytes buffered per table per commit.
    #[serde(default = "default_max_bytes", deserialize_with = "de_bytes")]
    pub max_bytes: u64,
    /// Parquet file size at which a writer rolls to a new file.
    #[serde(default = "default_target_file_size", deserialize_with = "de_bytes")]
    pub target_file_size: u64,
    /// Bronze snapshots older than this are expired by ingest (metadata only; the newest
    /// ones and tagged ones stay): every commit rewrites the table metadata, which would
    /// otherwise grow by one snapshot per commit forever.
    #[serde(
        default = "default_snapshot_retention",
        deserialize_with = "de_duration"
    )]
    pub snapshot_retention: Duration,
}

fn default_commit_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_max_records() -> u64 {
    1_000_000
}
fn default_max_bytes() -> u64 {
    // A table holds up to two cycles (one committing, one filling): measured about 2.5×
    // this per table, so 32 MiB keeps a 4-table backlog catch-up near 420 MiB RSS.
    32 * 1024 * 1024
}
fn default_target_file_size() -> u64 {
    128 * 1024 * 1024
}
fn default_snapshot_retention() -> Duration {
    // Long enough for an hourly silver run to stay incremental (its base bronze snapshot
    // must still exist), short enough to keep the metadata of a table committed every few
    // seconds in the low megabytes.
    Duration::from_secs(6 * 3600)
}

impl Default for CommitPolicy {
    fn default() -> Self {
        CommitPolicy {
            interval: default_commit_interval(),
            max_records: default_max_records(),
            max_bytes: default_max_bytes(),
            target_file_size: default_target_file_size(),
            snapshot_retention: default_snapshot_retention(),
        }
    }
}

/// One CDC source table: which topics feed which bronze table.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SourceConfig {
    /// Bronze table name (`bronze.<table>`).
    pub table: String,
    /// Topic template: dot-separated segments, where `{tenant}` captures the tenant and
    /// `{db}`, `{schema}` or `{*}` match any single segment. E.g. `cdc.{tenant}.{db}.orders`.
    pub topic: String,
    /// How the tenant of a record is found.
    #[serde(default)]
    pub tenant: TenantRule,
    /// Primary key columns; unset means the fields of the Debezium message key.
    pub primary_key: Option<Vec<String>>,
    /// Time partitioning of the source timestamp (tenant is always a partition).
    #[serde(default)]
    pub time_partition: TimeGranularity,
}

/// Where a record's tenant comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(tag = "from", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TenantRule {
    /// The `{tenant}` segment of the topic name.
    #[default]
    Topic,
    /// A column of the row (`after`, or `before` for deletes).
    Field { field: String },
    /// A fixed tenant for every record of the source.
    Static { tenant: String },
}

/// Granularity of the time partition of bronze tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeGranularity {
    Hour,
    #[default]
    Day,
    Month,
    None,
}

/// A gold model: a SQL file over silver tables with a declared key.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GoldModelConfig {
    pub name: String,
    /// SQL file path, relative to the config file; default `sql/gold/<name>.sql`.
    pub sql: Option<String>,
    /// Columns that identify a row.
    pub key: Vec<String>,
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// Whether the relay pushes this model's rows to StarRocks.
    #[serde(default, deserialize_with = "de_bool")]
    pub relay: bool,
    /// For a relayed model: per silver input table, the input columns that give a row's
    /// gold key (in the order of `key`), e.g. `{ orders = ["tenant", "id"], order_items =
    /// ["tenant", "order_id"] }`. The relay recomputes exactly the gold keys a change touches.
    #[serde(default)]
    pub relay_keys: BTreeMap<String, Vec<String>>,
}

/// StarRocks hot-path target.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RelayConfig {
    /// FE HTTP endpoints, e.g. `http://starrocks-fe:8030`.
    pub fe_urls: Vec<String>,
    pub database: String,
    #[serde(default = "default_relay_user")]
    pub user: String,
    pub password: Option<Secret>,
    #[serde(default = "default_relay_interval", deserialize_with = "de_duration")]
    pub interval: Duration,
    #[serde(default = "default_relay_max_rows", deserialize_with = "de_u64")]
    pub max_batch_rows: u64,
    #[serde(default = "default_relay_max_bytes", deserialize_with = "de_bytes")]
    pub max_batch_bytes: u64,
    /// Memory budget for batches being built, waiting or in flight (all tables). At this
    /// size the largest table flushes early; at twice this size Kafka partitions pause until
    /// loads are acknowledged.
    #[serde(
        default = "default_relay_max_in_flight_bytes",
        deserialize_with = "de_bytes"
    )]
    pub max_in_flight_bytes: u64,
    /// Rewrites of the BE addresses the FE redirects to (`"host:port" = "host:port"`), for
    /// BEs that advertise an address this process cannot reach.
    #[serde(default)]
    pub host_rewrite: BTreeMap<String, String>,
    /// Sends of one load before the relay gives up and exits with an error (the label stays
    /// valid for the next run). Unset: retry until StarRocks answers in service mode, and
    /// [`ONCE_MAX_ATTEMPTS`] for a `--once` run, which must end.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The tenants this relay serves; empty: all. Relays with different lists are separate
    /// shards, each with its own ledger and its own election group.
    #[serde(default)]
    pub tenants: Vec<String>,
}

impl RelayConfig {
    /// The shard name (the sorted tenant list), `None` when the relay serves every tenant.
    pub fn shard(&self) -> Option<String> {
        if self.tenants.is_empty() {
            return None;
        }
        let mut tenants = self.tenants.clone();
        tenants.sort();
        Some(tenants.join(","))
    }

    /// Whether this relay serves `tenant`.
    pub fn serves(&self, tenant: &str) -> bool {
        self.tenants.is_empty() || self.tenants.iter().any(|t| t == tenant)
    }
}

/// Load attempts of a `--once` relay run when `relay.max-attempts` is unset (about two
/// minutes of backoff).
pub const ONCE_MAX_ATTEMPTS: u32 = 12;

fn default_relay_user() -> String {
    "root".to_string()
}
fn default_relay_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_relay_max_rows() -> u64 {
    500_000
}
fn default_relay_max_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_relay_max_in_flight_bytes() -> u64 {
    256 * 1024 * 1024
}

impl fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayConfig")
            .field("fe_urls", &self.fe_urls)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("interval", &self.interval)
            .field("max_batch_rows", &self.max_batch_rows)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("max_in_flight_bytes", &self.max_in_flight_bytes)
            .field("host_rewrite", &self.host_rewrite)
            .field("max_attempts", &self.max_attempts)
            .field("tenants", &self.tenants)
            .finish()
    }
}

/// The Confluent Schema Registry that Avro records' schema ids resolve against. Records are
/// Avro when they start with the Confluent magic byte (see `firn_ingest::avro`); without
/// this section such records are dead-lettered as `unknown_schema_id`.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// `http(s)://host:port[/path]`.
    pub url: String,
    /// Basic-auth user (Confluent Cloud: the API key); requires `password`.
    pub user: Option<String>,
    /// Basic-auth password (Confluent Cloud: the API secret); set it with
    /// `FIRN_SCHEMA_REGISTRY__PASSWORD`.
    pub password: Option<Secret>,
    /// Per-request timeout; failed requests are retried with backoff.
    #[serde(
        default = "default_schema_registry_timeout",
        deserialize_with = "de_duration"
    )]
    pub timeout: Duration,
}

fn default_schema_registry_timeout() -> Duration {
    Duration::from_secs(10)
}

impl fmt::Debug for SchemaRegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistryConfig")
            .field("url", &redact_uri(&self.url))
            .field("user", &self.user)
            .field("password", &self.password)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl SchemaRegistryConfig {
    fn validate(&self) -> Result<()> {
        let url = self.url.trim();
        let Some((_, rest)) = url
            .split_once("://")
            .filter(|(scheme, _)| *scheme == "http" || *scheme == "https")
        else {
            return Err(CatalogError::config(
                "schema-registry.url",
                format!("`{}` must start with http:// or https://", redact_uri(url)),
            ));
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Err(CatalogError::config("schema-registry.url", "has no host"));
        }
        if rest
            .split('/')
            .next()
            .is_some_and(|authority| authority.contains('@'))
        {
            return Err(CatalogError::config(
                "schema-registry.url",
                "must not hold credentials; use schema-registry.user and \
                 FIRN_SCHEMA_REGISTRY__PASSWORD",
            ));
        }
        match (&self.user, &self.password) {
            (Some(user), _) if user.is_empty() => Err(CatalogError::config(
                "schema-registry.user",
                "must not be empty",
            )),
            (Some(_), None) => Err(CatalogError::config(
                "schema-registry.password",
                "is required with schema-registry.user (set FIRN_SCHEMA_REGISTRY__PASSWORD)",
            )),
            (None, Some(_)) => Err(CatalogError::config(
                "schema-registry.user",
                "is required with schema-registry.password",
            )),
            _ if self.timeout < Duration::from_millis(100)
                || self.timeout > Duration::from_secs(300) =>
            {
                Err(CatalogError::config(
                    "schema-registry.timeout",
                    "must be within 100ms..5m",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Admin HTTP endpoint (metrics, health).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: String,
}

fn default_admin_listen() -> String {
    "127.0.0.1:9464".to_string()
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
        }
    }
}

/// A string that never shows up in Debug, Display or logs.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    const REDACTED: &'static str = "<redacted>";

    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Returns the secret value; call only where it is handed to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::REDACTED)
    }
}

/// Removes the password from a `scheme://user:password@host/...` URI.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:{}@{host}{tail}", Secret::REDACTED)
            } else {
                uri.to_string()
            }
        }
        None => uri.to_string(),
    }
}

/// Where the table data lives, after resolving relative paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarehouseLocation {
    /// Absolute local directory.
    Local(PathBuf),
    /// `s3://bucket/prefix` (no trailing slash).
    S3 { bucket: String, prefix: String },
}

impl WarehouseLocation {
    /// The warehouse root as a URI Iceberg's FileIO understands.
    pub fn uri(&self) -> String {
        match self {
            WarehouseLocation::Local(path) => format!("file://{}", path.display()),
            WarehouseLocation::S3 { bucket, prefix } if prefix.is_empty() => {
                format!("s3://{bucket}")
            }
            WarehouseLocation::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }
}

/// The catalog database, after resolving defaults and relative paths.
#[derive(Clone, PartialEq, Eq)]
pub enum CatalogDatabase {
    Sqlite(PathBuf),
    /// The URL as configured (password, if any, inside); use [`redact_uri`] to show it.
    Postgres(String),
}

impl fmt::Debug for CatalogDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogDatabase::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
            CatalogDatabase::Postgres(url) => write!(f, "Postgres({})", redact_uri(url)),
        }
    }
}

impl fmt::Display for CatalogDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogDatabase::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            CatalogDatabase::Postgres(url) => f.write_str(&redact_uri(url)),
        }
    }
}

impl PipelineConfig {
    /// Reads the TOML file (if any) and the process environment, then validates.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let (text, base_dir) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|err| {
                    CatalogError::config("<file>", format!("cannot read {}: {err}", path.display()))
                })?;
                // `firn.toml` has the empty path as its parent: the working directory.
                let base = path
                    .parent()
                    .filter(|parent| !parent.as_os_str().is_empty())
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."));
                (text, base)
            }
            None => (String::new(), PathBuf::from(".")),
        };
        let base_dir = std::path::absolute(&base_dir).map_err(|err| {
            CatalogError::config(
                "<file>",
                format!("cannot resolve the config directory: {err}"),
            )
        })?;
        Self::from_toml(&text, std::env::vars(), &base_dir)
    }

    /// Parses TOML text, applies `FIRN_` overrides from `env`, validates, and resolves
    /// relative paths against `base_dir`. Pure.
    pub fn from_toml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        base_dir: &Path,
    ) -> Result<Self> {
        let mut root: toml::Table = text.parse().map_err(|err: toml::de::Error| {
            CatalogError::config(toml_error_key(&err), err.message())
        })?;
        apply_env_overrides(&mut root, env)?;
        let deserializer = toml::Value::Table(root);
        let mut config: PipelineConfig =
            serde_path_to_error::deserialize(deserializer).map_err(|err| {
                let key = err.path().to_string();
                CatalogError::config(
                    if key == "." { "<root>".into() } else { key },
                    err.inner().to_string(),
                )
            })?;
        // Table locations are written into Iceberg metadata, so they must be absolute.
        config.base_dir = std::path::absolute(base_dir)
            .map_err(|err| CatalogError::config("<base dir>", err.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every rule that needs no I/O; errors name the key.
    pub fn validate(&self) -> Result<()> {
        self.warehouse_location()?;
        self.catalog_database()?;
        names::validate_identifier(NameKind::Catalog, &self.catalog.name)
            .map_err(|err| CatalogError::config("catalog.name", err.to_string()))?;
        if self.catalog.max_connections == 0 {
            return Err(CatalogError::config(
                "catalog.max-connections",
                "must be at least 1",
            ));
        }
        if let Some(s3_endpoint) = &self.warehouse.s3.endpoint
            && !(s3_endpoint.starts_with("http://") || s3_endpoint.starts_with("https://"))
        {
            return Err(CatalogError::config(
                "warehouse.s3.endpoint",
                format!("`{s3_endpoint}` must start with http:// or https://"),
            ));
        }
        self.validate_kafka()?;
        self.validate_commit()?;
        let mut seen_tables = std::collections::BTreeSet::new();
        for (index, source) in self.sources.iter().enumerate() {
            let key = |field: &str| format!("sources[{index}].{field}");
            names::validate_user_table(&source.table)
                .map_err(|err| CatalogError::config(key("table"), err.to_string()))?;
            if !seen_tables.insert(source.table.as_str()) {
                return Err(CatalogError::config(
                    key("table"),
                    format!("table `{}` is configured twice", source.table),
                ));
            }
            let template = TopicTemplate::parse(&source.topic)
                .map_err(|message| CatalogError::config(key("topic"), message))?;
            match &source.tenant {
                TenantRule::Topic if !template.has_tenant() => {
                    return Err(CatalogError::config(
                        key("topic"),
                        "the tenant comes from the topic, so the template needs a `{tenant}` segment",
                    ));
                }
                TenantRule::Field { field } => names::validate_identifier(NameKind::Column, field)
                    .map_err(|err| CatalogError::config(key("tenant.field"), err.to_string()))?,
                TenantRule::Static { tenant } => names::validate_tenant(tenant)
                    .map_err(|err| CatalogError::config(key("tenant.tenant"), err.to_string()))?,
                TenantRule::Topic => {}
            }
            if let Some(columns) = &source.primary_key {
                validate_columns(columns, &key("primary-key"))?;
            }
        }
        let mut seen_models = std::collections::BTreeSet::new();
        for (index, model) in self.gold.iter().enumerate() {
            let key = |field: &str| format!("gold[{index}].{field}");
            names::validate_identifier(NameKind::Model, &model.name)
                .map_err(|err| CatalogError::config(key("name"), err.to_string()))?;
            if !seen_models.insert(model.name.as_str()) {
                return Err(CatalogError::config(
                    key("name"),
                    format!("model `{}` is configured twice", model.name),
                ));
            }
            validate_columns(&model.key, &key("key"))?;
            if model.partition_by.iter().any(|c| !model.key.contains(c)) && model.relay {
                // Relay upserts by key; partitioning outside the key would split a key's rows.
                return Err(CatalogError::config(
                    key("partition-by"),
                    "relayed models must partition by key columns only",
                ));
            }
            validate_columns(&model.partition_by, &key("partition-by"))?;
            validate_relay_keys(model, &key("relay-keys"))?;
            if let Some(sql) = &model.sql
                && (sql.is_empty() || !sql.ends_with(".sql"))
            {
                return Err(CatalogError::config(
                    key("sql"),
                    "must be a path to a .sql file",
                ));
            }
        }
        if let Some(relay) = &self.relay {
            if relay.fe_urls.is_empty() {
                return Err(CatalogError::config(
                    "relay.fe-urls",
                    "at least one FE URL is required",
                ));
            }
            for (index, url) in relay.fe_urls.iter().enumerate() {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(CatalogError::config(
                        format!("relay.fe-urls[{index}]"),
                        format!("`{url}` must start with http:// or https://"),
                    ));
                }
            }
            names::validate_identifier(NameKind::Namespace, &relay.database)
                .map_err(|err| CatalogError::config("relay.database", err.to_string()))?;
            if relay.interval < Duration::from_millis(100) {
                return Err(CatalogError::config(
                    "relay.interval",
                    "must be at least 100ms",
                ));
            }
            if relay.max_batch_rows == 0 || relay.max_batch_bytes == 0 {
                return Err(CatalogError::config(
                    "relay.max-batch-rows",
                    "batch limits must be positive",
                ));
            }
            if relay.max_in_flight_bytes < relay.max_batch_bytes {
                return Err(CatalogError::config(
                    "relay.max-in-flight-bytes",
                    "must be at least relay.max-batch-bytes (one batch must fit the budget)",
                ));
            }
            for (i, tenant) in relay.tenants.iter().enumerate() {
                names::validate_tenant(tenant)
                    .map_err(|err| CatalogError::config("relay.tenants", err.to_string()))?;
                if relay.tenants[..i].contains(tenant) {
                    return Err(CatalogError::config(
                        "relay.tenants",
                        format!("tenant `{tenant}` is listed twice"),
                    ));
                }
            }
            if relay.max_attempts == Some(0) {
                return Err(CatalogError::config(
                    "relay.max-attempts",
                    "must be at least 1 (leave it unset to retry until StarRocks answers)",
                ));
            }
            for (from, to) in &relay.host_rewrite {
                if !from.contains(':') || !to.contains(':') || to.contains('/') {
                    return Err(CatalogError::config(
                        format!("relay.host-rewrite.{from}"),
                        "expected \"host:port\" = \"host:port\"",
                    ));
                }
            }
        }
        if let Some(registry) = &self.schema_registry {
            registry.validate()?;
        }
        self.admin
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|err| CatalogError::config("admin.listen", format!("not host:port: {err}")))?;
        Ok(())
    }

    fn validate_kafka(&self) -> Result<()> {
        if let Some(brokers) = &self.kafka.brokers
            && brokers
                .split(',')
                .any(|b| b.trim().is_empty() || !b.contains(':'))
        {
            return Err(CatalogError::config(
                "kafka.brokers",
                "expected a comma-separated list of host:port",
            ));
        }
        if self.kafka.group_id.trim().is_empty() {
            return Err(CatalogError::config("kafka.group-id", "must not be empty"));
        }
        if self.kafka.assignment == AssignmentMode::Group && !self.kafka.partitions.is_empty() {
            return Err(CatalogError::config(
                "kafka.partitions",
                "only applies with assignment = \"static\"",
            ));
        }
        for entry in &self.kafka.partitions {
            let valid = entry.rsplit_once(':').is_some_and(|(topic, partition)| {
                !topic.is_empty() && partition.parse::<u32>().is_ok()
            });
            if !valid {
                return Err(CatalogError::config(
                    "kafka.partitions",
                    format!("`{entry}` is not `topic:partition`"),
                ));
            }
        }
        if self.kafka.max_message_bytes < 1024 {
            return Err(CatalogError::config(
                "kafka.max-message-bytes",
                "must be at least 1KiB",
            ));
        }
        for key in self.kafka.properties.keys() {
            if RESERVED_KAFKA_PROPERTIES.contains(&key.as_str()) {
                return Err(CatalogError::config(
                    format!("kafka.properties.{key}"),
                    "set by firn itself (brokers and group have their own keys; offsets are \
                     managed by the bronze commits)",
                ));
            }
        }
        Ok(())
    }

    fn validate_commit(&self) -> Result<()> {
        let commit = &self.commit;
        if commit.interval < Duration::from_secs(1) {
            return Err(CatalogError::config(
                "commit.interval",
                "must be at least 1s",
            ));
        }
        if commit.interval > Duration::from_secs(3600) {
            return Err(CatalogError::config(
                "commit.interval",
                "must be at most 1h",
            ));
        }
        if commit.max_records == 0 {
            return Err(CatalogError::config(
                "commit.max-records",
                "must be at least 1",
            ));
        }
        if commit.max_bytes < 1024 * 1024 {
            return Err(CatalogError::config(
                "commit.max-bytes",
                "must be at least 1MiB",
            ));
        }
        if commit.target_file_size < 1024 * 1024 {
            return Err(CatalogError::config(
                "commit.target-file-size",
                "must be at least 1MiB",
            ));
        }
        if commit.snapshot_retention < Duration::from_secs(60) {
            return Err(CatalogError::config(
                "commit.snapshot-retention",
                "must be at least 1m",
            ));
        }
        Ok(())
    }

    /// The warehouse root, with a relative local path resolved against the config directory.
    pub fn warehouse_location(&self) -> Result<WarehouseLocation> {
        let uri = self.warehouse.uri.trim();
        if let Some(rest) = uri
            .strip_prefix("s3://")
            .or_else(|| uri.strip_prefix("s3a://"))
        {
            let rest = rest.trim_end_matches('/');
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(CatalogError::config(
                    "warehouse.uri",
                    "s3:// URI needs a bucket",
                ));
            }
            return Ok(WarehouseLocation::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if let Some((scheme, _)) = uri.split_once("://")
            && scheme != "file"
        {
            return Err(CatalogError::config(
                "warehouse.uri",
                format!("unsupported scheme `{scheme}`; use s3://, file:// or a path"),
            ));
        }
        let path = uri.strip_prefix("file://").unwrap_or(uri);
        if path.is_empty() {
            return Err(CatalogError::config("warehouse.uri", "must not be empty"));
        }
        Ok(WarehouseLocation::Local(normalize(
            &self.base_dir.join(path),
        )))
    }

    /// The catalog database, with the default and relative SQLite paths resolved.
    pub fn catalog_database(&self) -> Result<CatalogDatabase> {
        let Some(uri) = self.catalog.uri.as_deref().map(str::trim) else {
            let dir = match self.warehouse_location()? {
                WarehouseLocation::Local(dir) => dir,
                WarehouseLocation::S3 { .. } => self.base_dir.clone(),
            };
            return Ok(CatalogDatabase::Sqlite(dir.join("catalog.db")));
        };
        if uri.starts_with("postgres://") || uri.starts_with("postgresql://") {
            return Ok(CatalogDatabase::Postgres(uri.to_string()));
        }
        if let Some(path) = uri.strip_prefix("sqlite:") {
            // SQLAlchemy's form: `sqlite:///relative.db`, `sqlite:////absolute.db`.
            let path = path
                .strip_prefix("///")
                .or_else(|| path.strip_prefix("//"))
                .unwrap_or(path);
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() || path == ":memory:" {
                return Err(CatalogError::config(
                    "catalog.uri",
                    "SQLite catalog needs a file path (other processes must see it)",
                ));
            }
            return Ok(CatalogDatabase::Sqlite(normalize(
                &self.base_dir.join(path),
            )));
        }
        Err(CatalogError::config(
            "catalog.uri",
            format!(
                "`{}` is neither sqlite:<path> nor postgres://...",
                redact_uri(uri)
            ),
        ))
    }

    /// The source whose topic template matches `topic`, if any.
    pub fn source_for_topic(&self, topic: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|source| {
            TopicTemplate::parse(&source.topic)
                .map(|template| template.matches(topic).is_some())
                .unwrap_or(false)
        })
    }
}

/// Lexically removes `.` and `..` segments so paths print cleanly; does no I/O.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A relayed model maps each of its inputs to the gold key; only relayed models may.
fn validate_relay_keys(model: &GoldModelConfig, key: &str) -> Result<()> {
    if !model.relay {
        if !model.relay_keys.is_empty() {
            return Err(CatalogError::config(
                key,
                "only relayed models (relay = true) map keys",
            ));
        }
        return Ok(());
    }
    if model.relay_keys.is_empty() {
        return Err(CatalogError::config(
            key,
            "a relayed model needs the gold-key columns of each input table",
        ));
    }
    for (table, columns) in &model.relay_keys {
        let entry = format!("{key}.{table}");
        names::validate_user_table(table)
            .map_err(|err| CatalogError::config(&entry, err.to_string()))?;
        validate_columns(columns, &entry)?;
        if columns.len() != model.key.len() {
            return Err(CatalogError::config(
                entry,
                format!(
                    "needs {} columns, one per key column ({})",
                    model.key.len(),
                    model.key.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn validate_columns(columns: &[String], key: &str) -> Result<()> {
    if columns.is_empty() && key.ends_with(".key") {
        return Err(CatalogError::config(key, "at least one column is required"));
    }
    for column in columns {
        names::validate_identifier(NameKind::Column, column)
            .map_err(|err| CatalogError::config(key, err.to_string()))?;
    }
    Ok(())
}

/// A parsed topic template such as `cdc.{tenant}.{db}.orders`. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    segments: Vec<TopicSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TopicSegment {
    Literal(String),
    Tenant,
    Any,
}

impl TopicTemplate {
    /// Parses a template; the error says what is wrong with it.
    pub fn parse(template: &str) -> std::result::Result<Self, String> {
        if template.is_empty() {
            return Err("must not be empty".into());
        }
        let mut segments = Vec::new();
        for part in template.split('.') {
            let segment = match part {
                "{tenant}" => TopicSegment::Tenant,
                "{db}" | "{schema}" | "{*}" => TopicSegment::Any,
                "" => return Err(format!("`{template}` has an empty segment")),
                literal if literal.contains(['{', '}']) => {
                    return Err(format!(
                        "unknown placeholder in `{literal}`; use {{tenant}}, {{db}}, {{schema}} or {{*}}"
                    ));
                }
                literal
                    if !literal
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
                {
                    return Err(format!(
                        "segment `{literal}` has characters Kafka topics do not allow"
                    ));
                }
                literal => TopicSegment::Literal(literal.to_string()),
            };
            segments.push(segment);
        }
        if segments
            .iter()
            .filter(|s| **s == TopicSegment::Tenant)
            .count()
            > 1
        {
            return Err("`{tenant}` may appear only once".into());
        }
        Ok(TopicTemplate { segments })
    }

    pub fn has_tenant(&self) -> bool {
        self.segments.contains(&TopicSegment::Tenant)
    }

    /// A librdkafka subscription regex (`^...$`) matching the template.
    pub fn subscription_regex(&self) -> String {
        let parts: Vec<String> = self
            .segments
            .iter()
            .map(|segment| match segment {
                TopicSegment::Literal(text) => regex::escape(text),
                TopicSegment::Tenant | TopicSegment::Any => "[^.]+".to_string(),
            })
            .collect();
        format!("^{}$", parts.join("\\."))
    }

    /// Matches a topic; returns the raw tenant segment (unvalidated) when the template
    /// has one, or an empty string when it does not.
    pub fn matches<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let parts: Vec<&str> = topic.split('.').collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut tenant = "";
        for (part, segment) in parts.iter().zip(&self.segments) {
            match segment {
                TopicSegment::Literal(text) if text != part => return None,
                TopicSegment::Tenant if part.is_empty() => return None,
                TopicSegment::Tenant => tenant = part,
                _ => {}
            }
        }
        Some(tenant)
    }
}

/// Parses `500ms`, `10s`, `5m`, `1h` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 10s, 5m, 1h or 7d"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => return Err(format!("unknown duration unit `{other}` in `{text}`")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is too long a duration"))
}

/// Parses `1048576`, `512KiB`, `64MiB`, `1GiB`, `10MB`.
pub fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 64MiB"))?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown size unit `{other}` in `{text}`")),
    };
    value
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}

fn de_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Duration, D::Error> {
    match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Number(seconds) => Ok(Duration::from_secs(seconds)),
        NumberOrText::Text(text) => parse_duration(&text).map_err(serde::de::Error::custom),
    }
}

fn de_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<u64, D::Error> {
    match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Number(bytes) => Ok(bytes),
        NumberOrText::Text(text) => parse_bytes(&text).map_err(serde::de::Error::custom),
    }
}

fn de_u64<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<u64, D::Error> {
    match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Number(value) => Ok(value),
        NumberOrText::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a whole number"))),
    }
}

fn de_u32<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<u32, D::Error> {
    let value = de_u64(deserializer)?;
    u32::try_from(value).map_err(|_| serde::de::Error::custom(format!("{value} is too large")))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BoolOrText {
    Bool(bool),
    Text(String),
}

fn de_bool<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<bool, D::Error> {
    match BoolOrText::deserialize(deserializer)? {
        BoolOrText::Bool(value) => Ok(value),
        BoolOrText::Text(text) => match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "`{other}` is not true or false"
            ))),
        },
    }
}

fn toml_error_key(err: &toml::de::Error) -> String {
    match err.span() {
        Some(span) => format!("<toml at byte {}>", span.start),
        None => "<toml>".to_string(),
    }
}

/// Applies `FIRN_A__B__C=value` variables onto the TOML tree.
fn apply_env_overrides(
    root: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<()> {
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name.contains("__"))
        .collect();
    // Deterministic order, so a conflict always resolves the same way.
    overrides.sort();
    for (name, raw_value) in overrides {
        let path_text = &name[ENV_PREFIX.len()..];
        let raw_segments: Vec<&str> = path_text.split("__").collect();
        if raw_segments.iter().any(|s| s.is_empty()) {
            return Err(CatalogError::config(
                name.clone(),
                "empty path segment in override",
            ));
        }
        let mut segments = Vec::with_capacity(raw_segments.len());
        for (depth, raw) in raw_segments.iter().enumerate() {
            let lower = raw.to_ascii_lowercase();
            let is_kafka_property = depth == 2
                && segments.first().map(String::as_str) == Some("kafka")
                && segments[1] == "properties";
            segments.push(if is_kafka_property {
                lower.replace('_', ".")
            } else {
                lower.replace('_', "-")
            });
        }
        let value = parse_env_value(&raw_value);
        let mut table = &mut *root;
        for segment in &segments[..segments.len() - 1] {
            let entry = table
                .entry(segment.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry.as_table_mut().ok_or_else(|| {
                CatalogError::config(
                    segments.join("."),
                    format!("{name} overrides inside `{segment}`, which is not a table"),
                )
            })?;
        }
        table.insert(segments[segments.len() - 1].clone(), value);
    }
    Ok(())
}

/// Environment values are strings (numeric and boolean keys accept strings), except that
/// `[...]` is read as a TOML array, for list-valued keys.
fn parse_env_value(raw: &str) -> toml::Value {
    if raw.trim_start().starts_with('[') {
        let wrapped = format!("value = {raw}");
        if let Some(value) = wrapped
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("value"))
        {
            return value;
        }
    }
    toml::Value::String(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PipelineConfig> {
        PipelineConfig::from_toml(text, Vec::new(), Path::new("/etc/firn"))
    }

    fn parse_env(text: &str, env: &[(&str, &str)]) -> Result<PipelineConfig> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        PipelineConfig::from_toml(text, env, Path::new("/etc/firn"))
    }

    fn key_of(err: CatalogError) -> String {
        match err {
            CatalogError::Config { key, .. } => key,
            other => panic!("expected a config error, got {other}"),
        }
    }

    #[test]
    fn empty_config_gives_embedded_defaults() {
        let config = parse("").unwrap();
        assert_eq!(
            config.warehouse_location().unwrap(),
            WarehouseLocation::Local(PathBuf::from("/etc/firn/warehouse"))
        );
        assert_eq!(
            config.catalog_database().unwrap(),
            CatalogDatabase::Sqlite(PathBuf::from("/etc/firn/warehouse/catalog.db"))
        );
        assert_eq!(config.catalog.name, "firn");
        assert_eq!(config.commit.interval, Duration::from_secs(10));
    }

    #[test]
    fn sqlite_uris_follow_the_sqlalchemy_forms() {
        let cases = [
            ("sqlite:cat.db", "/etc/firn/cat.db"),
            ("sqlite:///cat.db", "/etc/firn/cat.db"),
            ("sqlite:////var/lib/firn/cat.db", "/var/lib/firn/cat.db"),
            ("sqlite:/var/lib/firn/cat.db", "/var/lib/firn/cat.db"),
        ];
        for (uri, path) in cases {
            let config = parse(&format!("[catalog]\nuri = '{uri}'\n")).unwrap();
            assert_eq!(
                config.catalog_database().unwrap(),
                CatalogDatabase::Sqlite(PathBuf::from(path)),
                "{uri}"
            );
        }
    }

    #[test]
    fn shipped_example_config_is_valid() {
        let text = include_str!("../../docs/firn.example.toml");
        let config = parse(text).unwrap();
        assert!(!config.sources.is_empty());
        assert!(!config.gold.is_empty());
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let err = parse("[catalog]\nurl = 'x'\n").unwrap_err();
        assert_eq!(key_of(err), "catalog.url");
        let err = parse("[[sources]]\ntable='orders'\ntopic='cdc.{tenant}.x.orders'\nkey=['id']\n")
            .unwrap_err();
        assert!(key_of(err).starts_with("sources[0]"));
    }

    #[test]
    fn invalid_values_name_the_key() {
        let cases = [
            ("[commit]\ninterval = '500ms'\n", "commit.interval"),
            ("[commit]\ninterval = 'soon'\n", "commit.interval"),
            (
                "[commit]\nsnapshot-retention = '30s'\n",
                "commit.snapshot-retention",
            ),
            (
                "[commit]\nsnapshot-retention = '99999999999999999999d'\n",
                "commit.snapshot-retention",
            ),
            ("[warehouse]\nuri = 'gs://bucket'\n", "warehouse.uri"),
            ("[catalog]\nuri = 'mysql://x'\n", "catalog.uri"),
            (
                "[kafka.properties]\n'enable.auto.commit' = 'true'\n",
                "kafka.properties.enable.auto.commit",
            ),
            (
                "[[sources]]\ntable = 'Orders'\ntopic = 'cdc.{tenant}.db.orders'\n",
                "sources[0].table",
            ),
            (
                "[[sources]]\ntable = 'orders'\ntopic = 'cdc.db.orders'\n",
                "sources[0].topic",
            ),
            (
                "[[sources]]\ntable = 'orders'\ntopic = 'cdc.{tenant}.{x}.orders'\n",
                "sources[0].topic",
            ),
            (
                "[[sources]]\ntable = 'orders'\ntopic = 'cdc.x.orders'\ntenant = { from = 'static', tenant = 'a/b' }\n",
                "sources[0].tenant.tenant",
            ),
            ("[admin]\nlisten = 'nope'\n", "admin.listen"),
        ];
        for (text, expected_key) in cases {
            let err = parse(text).unwrap_err();
            let message = err.to_string();
            assert_eq!(key_of(err), expected_key, "{text} -> {message}");
        }
    }

    #[test]
    fn env_overrides_apply_and_unknown_ones_are_refused() {
        let config = parse_env(
            "",
            &[
                ("FIRN_CATALOG__URI", "postgres://firn@db:5432/firn"),
                ("FIRN_COMMIT__MAX_RECORDS", "5000"),
                ("FIRN_COMMIT__INTERVAL", "2s"),
                ("FIRN_KAFKA__PROPERTIES__SASL_PASSWORD", "hunter2"),
                ("FIRN_CONFIG", "ignored.toml"),
                ("FIRN_CATALOG__PASSWORD", "12345"),
                ("FIRN_WAREHOUSE__S3__PATH_STYLE", "true"),
            ],
        )
        .unwrap();
        assert_eq!(config.commit.max_records, 5000);
        assert_eq!(config.commit.interval, Duration::from_secs(2));
        assert_eq!(config.kafka.properties["sasl.password"], "hunter2");
        assert_eq!(config.catalog.password.as_ref().unwrap().expose(), "12345");
        assert!(config.warehouse.s3.path_style);
        let err = parse_env("", &[("FIRN_COMMIT__MAX_RECORDS", "lots")]).unwrap_err();
        assert_eq!(key_of(err), "commit.max-records");
        assert!(matches!(
            config.catalog_database().unwrap(),
            CatalogDatabase::Postgres(_)
        ));
        let err = parse_env("", &[("FIRN_CATALG__URI", "x")]).unwrap_err();
        assert_eq!(key_of(err), "catalg");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let config = parse_env(
            "[catalog]\nuri = 'postgres://firn:topsecret1@db/firn'\n[warehouse]\nuri = 's3://b/p'\n",
            &[
                ("FIRN_KAFKA__PROPERTIES__SASL_PASSWORD", "topsecret2"),
                ("FIRN_WAREHOUSE__S3__SECRET_ACCESS_KEY", "topsecret3"),
                ("FIRN_CATALOG__PASSWORD", "topsecret4"),
            ],
        )
        .unwrap();
        let shown = format!(
            "{config:?} {:?} {}",
            config.catalog_database().unwrap(),
            config.catalog_database().unwrap()
        );
        for secret in ["topsecret1", "topsecret2", "topsecret3", "topsecret4"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert_eq!(
            config
                .warehouse
                .s3
                .secret_access_key
                .as_ref()
                .unwrap()
                .expose(),
            "topsecret3"
        );
    }

    #[test]
    fn schema_registry_section_validates_and_hides_its_password() {
        let config = parse_env(
            "[schema-registry]\nurl = 'https://registry.example:8081'\nuser = 'firn'\ntimeout = '2s'\n",
            &[("FIRN_SCHEMA_REGISTRY__PASSWORD", "topsecret5")],
        )
        .unwrap();
        let registry = config.schema_registry.as_ref().unwrap();
        assert_eq!(registry.url, "https://registry.example:8081");
        assert_eq!(registry.timeout, Duration::from_secs(2));
        assert_eq!(registry.password.as_ref().unwrap().expose(), "topsecret5");
        assert!(!format!("{config:?}").contains("topsecret5"));
        assert!(parse("").unwrap().schema_registry.is_none());

        let cases = [
            ("url = 'registry:8081'", "schema-registry.url"),
            ("url = 'http://u:p@registry:8081'", "schema-registry.url"),
            (
                "url = 'http://registry'\nuser = 'firn'",
                "schema-registry.password",
            ),
            (
                "url = 'http://registry'\npassword = 'x'",
                "schema-registry.user",
            ),
            (
                "url = 'http://registry'\ntimeout = '10ms'",
                "schema-registry.timeout",
            ),
            (
                "url = 'http://registry'\nusr = 'firn'",
                "schema-registry.usr",
            ),
            ("user = 'firn'", "schema-registry"),
        ];
        for (body, key) in cases {
            let err = parse(&format!("[schema-registry]\n{body}\n")).unwrap_err();
            assert_eq!(key_of(err), key, "{body}");
        }
        let leaked = parse("[schema-registry]\nurl = 'ftp://u:hunter2@registry'\n").unwrap_err();
        assert!(!leaked.to_string().contains("hunter2"), "{leaked}");
    }

    #[test]
    fn topic_templates_match_and_extract_tenants() {
        let template = TopicTemplate::parse("cdc.{tenant}.{db}.orders").unwrap();
        assert_eq!(template.matches("cdc.acme.shop.orders"), Some("acme"));
        assert_eq!(template.matches("cdc.acme.shop.customers"), None);
        assert_eq!(template.matches("cdc.acme.orders"), None);
        let regex = regex::Regex::new(&template.subscription_regex()).unwrap();
        assert!(regex.is_match("cdc.acme.shop.orders"));
        assert!(!regex.is_match("cdcXacme.shop.orders"));
        assert!(TopicTemplate::parse("cdc.{tenant}.{tenant}").is_err());
    }

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(
            parse_duration("2d").unwrap(),
            Duration::from_secs(2 * 86_400)
        );
        assert_eq!(parse_bytes("64MiB").unwrap(), 64 << 20);
        assert!(parse_bytes("12XB").is_err());
    }

    #[test]
    fn relay_keys_and_budget_are_validated_with_their_keys_named() {
        let model = |extra: &str| {
            format!("[[gold]]\nname = 'facts'\nkey = ['tenant', 'order_id']\n{extra}\n")
        };
        let ok = parse(&model(
            "relay = true\nrelay-keys = { orders = ['tenant', 'id'], order_items = ['tenant', 'order_id'] }",
        ))
        .unwrap();
        assert_eq!(ok.gold[0].relay_keys["orders"], vec!["tenant", "id"]);
        let cases = [
            ("relay = true", "gold[0].relay-keys"),
            (
                "relay-keys = { orders = ['tenant', 'id'] }",
                "gold[0].relay-keys",
            ),
            (
                "relay = true\nrelay-keys = { orders = ['tenant'] }",
                "gold[0].relay-keys.orders",
            ),
            (
                "relay = true\nrelay-keys = { orders = ['tenant', 'bad-col'] }",
                "gold[0].relay-keys.orders",
            ),
        ];
        for (extra, key) in cases {
            assert_eq!(key_of(parse(&model(extra)).unwrap_err()), key, "{extra}");
        }
        let relay = "[relay]\nfe-urls = ['http://fe:8030']\ndatabase = 'hot'\n";
        let budget = parse(&format!(
            "{relay}max-batch-bytes = '2MiB'\nmax-in-flight-bytes = '1MiB'"
        ));
        assert_eq!(key_of(budget.unwrap_err()), "relay.max-in-flight-bytes");
        let rewrite = parse(&format!(
            "{relay}host-rewrite = {{ '10.0.0.1:8040' = 'be' }}"
        ));
        assert_eq!(
            key_of(rewrite.unwrap_err()),
            "relay.host-rewrite.10.0.0.1:8040"
        );
        let defaults = parse(relay).unwrap().relay.unwrap();
        assert_eq!(defaults.max_in_flight_bytes, 256 << 20);
        assert!(defaults.host_rewrite.is_empty());
        assert_eq!((defaults.shard(), defaults.max_attempts), (None, None));
        assert!(defaults.serves("acme"));
        for bad in [
            "max-attempts = 0",
            "tenants = ['acme', 'acme']",
            "tenants = ['Bad Name']",
        ] {
            let key = key_of(parse(&format!("{relay}{bad}")).unwrap_err());
            assert_eq!(
                key,
                format!("relay.{}", bad.split(' ').next().unwrap()),
                "{bad}"
            );
        }
        let shard = parse(&format!("{relay}tenants = ['globex', 'acme']"))
            .unwrap()
            .relay
            .unwrap();
        assert_eq!(shard.shard().as_deref(), Some("acme,globex"));
        assert!(shard.serves("acme") && !shard.serves("initech"));
    }

    #[test]
    fn uri_passwords_are_redacted() {
        assert_eq!(
            redact_uri("postgres://u:p@h:5/db"),
            "postgres://u:<redacted>@h:5/db"
        );
        assert_eq!(redact_uri("postgres://u@h/db"), "postgres://u@h/db");
    }
}
