//! StarRocks Stream Load client of the relay (spec: shared reference
//! `starrocks-stream-load.md` §1–§5 and §8): plain Stream Load with deterministic labels and
//! exactly-once retries, label-state polling, and the two-phase Transaction Stream Load API.
//!
//! This file holds the public types (configuration, request, acknowledgement, errors).
//! Pure logic lives in [`label`] (label derivation) and [`classify`] (response
//! classification, backoff); [`client`] and the private `http1` module do the I/O.

pub mod classify;
pub mod client;
mod http1;
pub mod label;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use firn_catalog::config::{RelayConfig, Secret};

pub use classify::{Action, Reply, Stop, classify};
pub use client::{StreamLoadClient, TxnBegun, TxnCommitted, TxnLoaded, TxnPrepared};
pub use label::{Half, OffsetRange, batch_label, sub_label};

/// Body compression (the `compression` header; StarRocks ≥ 3.2.7 for JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
}

/// How the client reaches StarRocks.
#[derive(Clone)]
pub struct StreamLoadClientConfig {
    /// FE base URLs (`http://fe:8030`), used round-robin.
    pub fe_urls: Vec<String>,
    pub database: String,
    pub user: String,
    pub password: Option<Secret>,
    /// Sent as the `timeout` header (seconds); the HTTP request timeout is this + 10 s.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// How long to wait for `100 Continue` before sending the body anyway (§8.5).
    pub expect_timeout: Duration,
    /// Advertised BE (or FE) `host:port` → reachable `host:port`, applied to every hop.
    pub host_rewrite: BTreeMap<String, String>,
    /// Cap of the exponential backoff between attempts (starts at 100 ms).
    pub max_backoff: Duration,
    /// `None`: retry retryable failures until cancelled; `Some(n)`: give up after n sends
    /// with [`StreamLoadError::Unavailable`] (the label stays valid for a later retry).
    pub max_attempts: Option<u32>,
    pub compression: Option<Compression>,
}

impl Default for StreamLoadClientConfig {
    fn default() -> Self {
        StreamLoadClientConfig {
            fe_urls: Vec::new(),
            database: String::new(),
            user: "root".into(),
            password: None,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(2),
            expect_timeout: Duration::from_secs(3),
            host_rewrite: BTreeMap::new(),
            max_backoff: Duration::from_secs(30),
            max_attempts: None,
            compression: None,
        }
    }
}

impl StreamLoadClientConfig {
    /// The client settings of a `[relay]` section; the rest keep the §8.5 defaults.
    pub fn from_relay(config: &RelayConfig) -> Self {
        StreamLoadClientConfig {
            fe_urls: config.fe_urls.clone(),
            database: config.database.clone(),
            user: config.user.clone(),
            password: config.password.clone(),
            ..StreamLoadClientConfig::default()
        }
    }
}

impl fmt::Debug for StreamLoadClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamLoadClientConfig")
            .field("fe_urls", &self.fe_urls)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("expect_timeout", &self.expect_timeout)
            .field("host_rewrite", &self.host_rewrite)
            .field("max_backoff", &self.max_backoff)
            .field("max_attempts", &self.max_attempts)
            .field("compression", &self.compression)
            .finish()
    }
}

/// Body encoding of a load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BodyFormat {
    /// Newline-delimited JSON objects (`format: json`).
    #[default]
    JsonLines,
    /// One JSON array of objects (`format: json`, `strip_outer_array: true`).
    JsonArray,
    /// CSV with these separators (`\N` is NULL).
    Csv {
        column_separator: String,
        row_delimiter: String,
    },
}

/// One batch for one table, sent under one label. The body never changes for a label.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadRequest {
    pub table: String,
    pub label: String,
    pub body: Bytes,
    pub format: BodyFormat,
    /// The `columns` header, e.g. `tenant,order_id,amount,__op`.
    pub columns: Option<String>,
    pub merge_condition: Option<String>,
    pub partial_update: bool,
}

/// How a load was acknowledged as committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// `Success`: committed and visible.
    Loaded,
    /// `Publish Timeout`: committed, visible later.
    PublishTimeout,
    /// An earlier attempt under this label committed (`Label Already Exists`/`FINISHED`
    /// or `get_load_state` said `VISIBLE`/`COMMITTED`); row counts are unknown (0).
    AlreadyLoaded,
}

/// A committed load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadAck {
    pub label: String,
    pub txn_id: Option<i64>,
    pub kind: AckKind,
    pub rows_loaded: u64,
    /// Sends of the body (1 when the first attempt succeeded).
    pub attempts: u32,
    /// Label conflicts seen (each resolved by polling the label state).
    pub label_conflicts: u32,
    /// Body bytes sent per attempt (after compression).
    pub bytes: u64,
}

/// `get_load_state` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelState {
    Prepare,
    Prepared,
    Committed,
    Visible,
    Aborted,
    /// Never used, or evicted by label retention.
    Unknown,
}

impl LabelState {
    pub fn parse(state: &str) -> LabelState {
        match state.trim().to_ascii_uppercase().as_str() {
            "PREPARE" => LabelState::Prepare,
            "PREPARED" => LabelState::Prepared,
            "COMMITTED" => LabelState::Committed,
            "VISIBLE" => LabelState::Visible,
            "ABORTED" => LabelState::Aborted,
            _ => LabelState::Unknown,
        }
    }

    /// Committed (durable) or visible.
    pub fn is_committed(self) -> bool {
        matches!(self, LabelState::Committed | LabelState::Visible)
    }
}

/// Errors of the Stream Load client.
#[derive(Debug, thiserror::Error)]
pub enum StreamLoadError {
    /// HTTP 401, `Access denied`, missing credentials: fix the configuration.
    #[error("stream load authentication failed: {message}")]
    Auth { message: String },
    /// Missing `Expect` support, unknown database/table/column, bad URL or options.
    #[error("stream load configuration error: {message}")]
    Config { message: String },
    /// The data was rejected (too many filtered rows, bad JSON): bisect and dead-letter.
    #[error("stream load of {label} rejected its data: {message}")]
    Data {
        label: String,
        message: String,
        error_url: Option<String>,
        /// The content of `error_url` (first 64 KiB), when it could be fetched.
        error_log: Option<String>,
    },
    /// The body exceeds a server size limit (header phase, body not sent): split the batch.
    #[error("stream load of {label} is too large: {message}")]
    TooLarge { label: String, message: String },
    /// Any other non-retryable failure.
    #[error("stream load of {label} failed: {message}")]
    Rejected { label: String, message: String },
    /// A retryable failure (or retries exhausted): retry later under the same label.
    #[error("stream load of {label} is unavailable: {message}")]
    Unavailable { label: String, message: String },
    /// Transaction begin found the label held by a running or finished txn.
    #[error("label {label} is already used by a {existing} transaction")]
    LabelInUse { label: String, existing: String },
    #[error("stream load of {label} cancelled")]
    Cancelled { label: String },
}

impl StreamLoadError {
    /// Whether retrying later under the same label may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StreamLoadError::Unavailable { .. })
    }
}
