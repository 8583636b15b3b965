//! The Stream Load client (spec §8): sends a batch through an FE (round-robin), follows the
//! 307 to the BE by hand with the credentials (≤ 3 hops, host rewrite map), classifies the
//! reply ([`super::classify`]), polls `get_load_state` when the outcome is unknown, and
//! retries under the same label with exponential backoff until the batch is committed, a
//! non-retryable error occurs, or it is cancelled. Also the Transaction Stream Load calls.
//! Does I/O (HTTP).
//!
//! Requests with a body go through [`super::http1`] (true `Expect: 100-continue`, see its
//! docs for why); bodiless ones (label state, transaction begin/prepare/commit/rollback,
//! error logs) through reqwest with `redirect::Policy::none()`, because reqwest's own
//! redirect handling drops `Authorization` on the FE:8030 → BE:8040 port change.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use reqwest::{Method, StatusCode, Url};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::classify::{
    Action, Backoff, PollAction, Reply, Stop, TxnAction, TxnResponse, after_poll, classify,
    classify_txn, parse_load_state,
};
use super::http1::{self, Timeouts};
use super::label::is_valid_label;
use super::{
    AckKind, BodyFormat, Compression, LabelState, LoadAck, LoadRequest, StreamLoadClientConfig,
    StreamLoadError,
};

/// Redirects followed per request (follower FE → leader FE → BE needs two).
const MAX_HOPS: usize = 3;
/// Bytes of an `ErrorURL` document kept in [`StreamLoadError::Data`].
const MAX_ERROR_LOG: usize = 64 * 1024;
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_POLL_BACKOFF: Duration = Duration::from_secs(2);
/// Label-state polling lasts at most the load timeout plus this (§8.2).
const POLL_GRACE: Duration = Duration::from_secs(60);

/// A cheap-to-clone Stream Load client; `Debug` never shows the password.
#[derive(Clone)]
pub struct StreamLoadClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: StreamLoadClientConfig,
    fe_urls: Vec<Url>,
    http: reqwest::Client,
    /// `Basic ...`: secret, never logged.
    authorization: String,
    next_fe: AtomicUsize,
}

impl std::fmt::Debug for StreamLoadClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamLoadClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The result of one send, redirects followed.
enum Sent {
    Response {
        status: u16,
        body: Vec<u8>,
    },
    Transport {
        body_sent: bool,
        message: String,
    },
    /// Redirect without `Location`, too many hops, bad URL.
    Broken(String),
}

impl Sent {
    fn reply(&self) -> Result<Reply<'_>, String> {
        match self {
            Sent::Response { status, body } => Ok(Reply::Response {
                status: *status,
                body,
            }),
            Sent::Transport { body_sent, message } => Ok(Reply::Transport {
                body_sent: *body_sent,
                message,
            }),
            Sent::Broken(message) => Err(message.clone()),
        }
    }
}

/// A transaction begun with [`StreamLoadClient::txn_begin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnBegun {
    pub label: String,
    pub txn_id: Option<i64>,
}

/// One `/api/transaction/load` accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLoaded {
    pub label: String,
    pub txn_id: Option<i64>,
    pub load_bytes: u64,
}

/// A transaction in `PREPARED` (data written, awaiting commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnPrepared {
    pub label: String,
    pub txn_id: Option<i64>,
    pub rows_total: u64,
    pub rows_loaded: u64,
    pub rows_filtered: u64,
    /// An earlier prepare had already succeeded (its reply was lost).
    pub already: bool,
}

/// A committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnCommitted {
    pub label: String,
    pub txn_id: Option<i64>,
    /// It was already committed (idempotent re-commit).
    pub already: bool,
}

fn config_error(message: impl Into<String>) -> StreamLoadError {
    StreamLoadError::Config {
        message: message.into(),
    }
}

/// Header values must not contain line breaks.
fn check_header(name: &str, value: &str) -> Result<(), StreamLoadError> {
    if value.contains(['\r', '\n']) {
        return Err(config_error(format!("header {name} contains a line break")));
    }
    Ok(())
}

/// Separators as header values: printable ASCII as is, other bytes as `\xNN`.
fn encode_separator(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if (0x21..0x7f).contains(&b) && b != b'\\' {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

fn jitter() -> f64 {
    rand::random::<f64>()
}

/// Sleeps for `delay`; returns true if `cancel` became true.
async fn pause(delay: Duration, cancel: &mut watch::Receiver<bool>) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return *cancel.borrow(),
            changed = cancel.changed() => {
                if changed.is_err() {
                    // No sender left: nobody can cancel any more.
                    (&mut sleep).await;
                    return *cancel.borrow();
                }
                if *cancel.borrow() {
                    return true;
                }
            }
        }
    }
}

impl StreamLoadClient {
    pub fn new(config: StreamLoadClientConfig) -> Result<Self, StreamLoadError> {
        if config.fe_urls.is_empty() {
            return Err(config_error("no fe-urls configured"));
        }
        if config.database.is_empty() {
            return Err(config_error("no database configured"));
        }
        let mut fe_urls = Vec::new();
        for raw in &config.fe_urls {
            let url = Url::parse(raw).map_err(|e| config_error(format!("fe url {raw}: {e}")))?;
            if url.scheme() != "http" {
                // StarRocks serves Stream Load over plain HTTP (the FE even hard-codes
                // `http` in the redirect), and the 100-continue client speaks only HTTP.
                return Err(config_error(format!(
                    "fe url {raw}: only http:// is supported"
                )));
            }
            fe_urls.push(url);
        }
        for (from, to) in &config.host_rewrite {
            if !from.contains(':') || !to.contains(':') {
                return Err(config_error(format!(
                    "host rewrite {from} -> {to}: use host:port on both sides"
                )));
            }
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout + Duration::from_secs(10))
            .build()
            .map_err(|e| config_error(format!("http client: {e}")))?;
        let password = config
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default();
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", config.user))
        );
        Ok(StreamLoadClient {
            inner: Arc::new(Inner {
                config,
                fe_urls,
                http,
                authorization,
                next_fe: AtomicUsize::new(0),
            }),
        })
    }

    pub fn config(&self) -> &StreamLoadClientConfig {
        &self.inner.config
    }

    fn database(&self) -> &str {
        &self.inner.config.database
    }

    /// The next FE, round-robin.
    fn next_fe(&self) -> Url {
        let urls = &self.inner.fe_urls;
        urls[self.inner.next_fe.fetch_add(1, Ordering::Relaxed) % urls.len()].clone()
    }

    /// Applies the host rewrite map to a URL's `host:port`.
    fn rewrite(&self, mut url: Url) -> Url {
        let Some(host) = url.host_str() else {
            return url;
        };
        let authority = format!("{host}:{}", url.port_or_known_default().unwrap_or(80));
        if let Some(target) = self.inner.config.host_rewrite.get(&authority)
            && let Some((h, p)) = target.rsplit_once(':')
            && let Ok(port) = p.parse::<u16>()
            && url.set_host(Some(h)).is_ok()
            && url.set_port(Some(port)).is_ok()
        {
            debug!(from = %authority, to = %target, "rewrote stream load host");
        }
        url
    }

    fn timeouts(&self) -> Timeouts {
        let c = &self.inner.config;
        Timeouts {
            connect: c.connect_timeout,
            expect: c.expect_timeout,
            total: c.timeout + Duration::from_secs(10),
        }
    }

    /// Sends a request with a body through an FE, following redirects with all headers
    /// and credentials.
    async fn send_with_body(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Sent {
        let mut url = match self.next_fe().join(path) {
            Ok(u) => u,
            Err(e) => return Sent::Broken(format!("bad path {path}: {e}")),
        };
        let mut all = vec![(
            "Authorization".to_string(),
            self.inner.authorization.clone(),
        )];
        all.extend(headers.iter().cloned());
        for hop in 0..=MAX_HOPS {
            let target = self.rewrite(url.clone());
            let response =
                match http1::send(method, &target, &all, body, true, self.timeouts()).await {
                    Ok(r) => r,
                    Err(e) => {
                        return Sent::Transport {
                            body_sent: e.body_sent,
                            message: format!("{target}: {}", e.message),
                        };
                    }
                };
            if response.status != 307 {
                return Sent::Response {
                    status: response.status,
                    body: response.body,
                };
            }
            let Some(location) = response.header("location") else {
                return Sent::Broken(format!("redirect from {target} without Location"));
            };
            url = match target.join(location) {
                Ok(u) => u,
                Err(e) => return Sent::Broken(format!("bad Location {location}: {e}")),
            };
            debug!(hop, %url, "following stream load redirect");
        }
        Sent::Broken(format!("more than {MAX_HOPS} redirects"))
    }

    /// A bodyless request through an FE (reqwest), following redirects by hand.
    async fn send_bodyless(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Sent {
        let mut url = match self.next_fe().join(path) {
            Ok(u) => u,
            Err(e) => return Sent::Broken(format!("bad path {path}: {e}")),
        };
        for _ in 0..=MAX_HOPS {
            let target = self.rewrite(url.clone());
            let mut request = self
                .inner
                .http
                .request(method.clone(), target.clone())
                .header("Authorization", &self.inner.authorization)
                .header("Content-Length", "0");
            for (k, v) in headers {
                request = request.header(*k, *v);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    return Sent::Transport {
                        body_sent: false,
                        message: format!("{target}: {e}"),
                    };
                }
            };
            let status = response.status();
            if status == StatusCode::TEMPORARY_REDIRECT {
                let Some(location) = response
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                else {
                    return Sent::Broken(format!("redirect from {target} without Location"));
                };
                url = match target.join(location) {
                    Ok(u) => u,
                    Err(e) => return Sent::Broken(format!("bad Location {location}: {e}")),
                };
                continue;
            }
            return match response.bytes().await {
                Ok(body) => Sent::Response {
                    status: status.as_u16(),
                    body: body.to_vec(),
                },
                Err(e) => Sent::Transport {
                    body_sent: false,
                    message: format!("{target}: reading the response: {e}"),
                },
            };
        }
        Sent::Broken(format!("more than {MAX_HOPS} redirects"))
    }

    /// The data headers of a load (same for every attempt of a label).
    fn data_headers(
        &self,
        request: &LoadRequest,
        body: &Bytes,
    ) -> Result<Vec<(String, String)>, StreamLoadError> {
        if !is_valid_label(&request.label) {
            return Err(config_error(format!(
                "invalid label {:?}: 1-128 characters of [-A-Za-z0-9_]",
                request.label
            )));
        }
        let mut h: Vec<(String, String)> = vec![
            ("label".into(), request.label.clone()),
            (
                "timeout".into(),
                self.inner.config.timeout.as_secs().max(1).to_string(),
            ),
        ];
        match &request.format {
            BodyFormat::JsonLines => {
                h.push(("format".into(), "json".into()));
                h.push(("Content-Type".into(), "application/json".into()));
            }
            BodyFormat::JsonArray => {
                h.push(("format".into(), "json".into()));
                h.push(("strip_outer_array".into(), "true".into()));
                h.push(("Content-Type".into(), "application/json".into()));
            }
            BodyFormat::Csv {
                column_separator,
                row_delimiter,
            } => {
                h.push(("format".into(), "csv".into()));
                h.push((
                    "column_separator".into(),
                    encode_separator(column_separator),
                ));
                h.push(("row_delimiter".into(), encode_separator(row_delimiter)));
            }
        }
        if let Some(columns) = &request.columns {
            check_header("columns", columns)?;
            h.push(("columns".into(), columns.clone()));
        }
        if let Some(column) = &request.merge_condition {
            check_header("merge_condition", column)?;
            h.push(("merge_condition".into(), column.clone()));
        }
        if request.partial_update {
            h.push(("partial_update".into(), "true".into()));
        }
        if self.inner.config.compression.is_some() && !body.is_empty() {
            h.push(("compression".into(), "GZIP".into()));
        }
        Ok(h)
    }

    /// The body as sent: compressed once per call, deterministically.
    fn encode_body(&self, body: &Bytes) -> Result<Bytes, StreamLoadError> {
        match self.inner.config.compression {
            None => Ok(body.clone()),
            Some(_) if body.is_empty() => Ok(body.clone()),
            Some(Compression::Gzip) => {
                use std::io::Write;
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder
                    .write_all(body)
                    .and_then(|_| encoder.finish())
                    .map(Bytes::from)
                    .map_err(|e| config_error(format!("gzip: {e}")))
            }
        }
    }

    /// Maps a non-retryable outcome to an error, fetching the error log for data errors.
    async fn stop_error(&self, label: &str, stop: Stop) -> StreamLoadError {
        match stop {
            Stop::Auth(message) => StreamLoadError::Auth { message },
            Stop::Config(message) => StreamLoadError::Config { message },
            Stop::TooLarge(message) => StreamLoadError::TooLarge {
                label: label.into(),
                message,
            },
            Stop::Rejected(message) => StreamLoadError::Rejected {
                label: label.into(),
                message,
            },
            Stop::Data { message, error_url } => {
                let error_log = match &error_url {
                    Some(url) => self.error_log(url).await,
                    None => None,
                };
                StreamLoadError::Data {
                    label: label.into(),
                    message,
                    error_url,
                    error_log,
                }
            }
        }
    }

    /// Fetches an `ErrorURL` (no credentials: it is served by the BE without auth).
    async fn error_log(&self, url: &str) -> Option<String> {
        let url = self.rewrite(Url::parse(url).ok()?);
        let response = self.inner.http.get(url.clone()).send().await;
        match response {
            Ok(r) if r.status().is_success() => match r.bytes().await {
                Ok(bytes) => {
                    let keep = &bytes[..bytes.len().min(MAX_ERROR_LOG)];
                    Some(String::from_utf8_lossy(keep).into_owned())
                }
                Err(e) => {
                    warn!(%url, error = %e, "reading stream load error log failed");
                    None
                }
            },
            Ok(r) => {
                warn!(%url, status = %r.status(), "stream load error log unavailable");
                None
            }
            Err(e) => {
                warn!(%url, error = %e, "fetching stream load error log failed");
                None
            }
        }
    }

    /// Loads one batch under its label until it is committed (see the module docs).
    pub async fn load(
        &self,
        request: &LoadRequest,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<LoadAck, StreamLoadError> {
        let label = request.label.as_str();
        let body = self.encode_body(&request.body)?;
        let headers = self.data_headers(request, &body)?;
        let path = format!("/api/{}/{}/_stream_load", self.database(), request.table);
        let mut backoff = Backoff::new(INITIAL_BACKOFF, self.inner.config.max_backoff);
        let mut attempts = 0u32;
        let mut label_conflicts = 0u32;
        let ack = |kind, txn_id, rows_loaded, attempts, label_conflicts| LoadAck {
            label: label.to_string(),
            txn_id,
            kind,
            rows_loaded,
            attempts,
            label_conflicts,
            bytes: body.len() as u64,
        };
        loop {
            if *cancel.borrow() {
                return Err(StreamLoadError::Cancelled {
                    label: label.into(),
                });
            }
            attempts += 1;
            let sent = self.send_with_body("PUT", &path, &headers, &body).await;
            let action = match sent.reply() {
                Ok(reply) => classify(reply),
                Err(broken) => Action::Stop(Stop::Config(broken)),
            };
            let reason = match action {
                Action::Ack {
                    kind,
                    txn_id,
                    rows_loaded,
                } => {
                    label_conflicts += u32::from(kind == AckKind::AlreadyLoaded);
                    info!(label, table = %request.table, ?kind, rows_loaded, attempts, "stream load committed");
                    return Ok(ack(kind, txn_id, rows_loaded, attempts, label_conflicts));
                }
                Action::Stop(stop) => {
                    let error = self.stop_error(label, stop).await;
                    warn!(label, table = %request.table, attempts, error = %error, "stream load failed");
                    return Err(error);
                }
                Action::Retry { reason } => reason,
                Action::Poll {
                    reason,
                    label_conflict,
                } => {
                    label_conflicts += u32::from(label_conflict);
                    info!(label, %reason, "stream load outcome unknown, polling the label state");
                    if self.poll_until_settled(label, cancel).await? {
                        return Ok(ack(
                            AckKind::AlreadyLoaded,
                            None,
                            0,
                            attempts,
                            label_conflicts,
                        ));
                    }
                    reason
                }
            };
            if self
                .inner
                .config
                .max_attempts
                .is_some_and(|max| attempts >= max)
            {
                return Err(StreamLoadError::Unavailable {
                    label: label.into(),
                    message: format!("gave up after {attempts} attempts: {reason}"),
                });
            }
            let delay = backoff.next_delay(jitter());
            warn!(label, table = %request.table, attempts, %reason, ?delay, "stream load will be retried under the same label");
            if pause(delay, cancel).await {
                return Err(StreamLoadError::Cancelled {
                    label: label.into(),
                });
            }
        }
    }

    /// Polls the label state until it settles: `Ok(true)` committed, `Ok(false)` resend.
    async fn poll_until_settled(
        &self,
        label: &str,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<bool, StreamLoadError> {
        let deadline = Instant::now() + self.inner.config.timeout + POLL_GRACE;
        let mut backoff = Backoff::new(INITIAL_BACKOFF, MAX_POLL_BACKOFF);
        loop {
            match self.load_state(label).await {
                Ok(state) => match after_poll(state) {
                    PollAction::Ack => return Ok(true),
                    PollAction::Resend => {
                        debug!(label, ?state, "label not committed, resending");
                        return Ok(false);
                    }
                    PollAction::Wait => debug!(label, ?state, "label still running"),
                },
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => warn!(label, error = %e, "get_load_state failed"),
            }
            if Instant::now() >= deadline {
                // Resending under the same label is safe: a running txn answers with a
                // label conflict and polling starts over.
                return Ok(false);
            }
            if pause(backoff.next_delay(jitter()), cancel).await {
                return Err(StreamLoadError::Cancelled {
                    label: label.into(),
                });
            }
        }
    }

    /// `GET /api/{db}/get_load_state?label=L` (a follower FE redirects to the leader).
    pub async fn load_state(&self, label: &str) -> Result<LabelState, StreamLoadError> {
        let mut path =
            Url::parse("http://placeholder/").map_err(|e| config_error(e.to_string()))?;
        path.path_segments_mut()
            .map_err(|_| config_error("bad path"))?
            .extend(["api", self.database(), "get_load_state"]);
        path.query_pairs_mut().append_pair("label", label);
        let relative = format!("{}?{}", path.path(), path.query().unwrap_or(""));
        let sent = self.send_bodyless(Method::GET, &relative, &[]).await;
        let unavailable = |message: String| StreamLoadError::Unavailable {
            label: label.into(),
            message,
        };
        match sent {
            Sent::Response { status, body } => match parse_load_state(status, &body) {
                Ok(state) => Ok(state),
                Err(Action::Stop(stop)) => Err(self.stop_error(label, stop).await),
                Err(other) => Err(unavailable(format!("get_load_state: {other:?}"))),
            },
            Sent::Transport { message, .. } => Err(unavailable(message)),
            Sent::Broken(message) => Err(config_error(message)),
        }
    }

    /// One transaction-API call; maps the outcome.
    async fn txn_call(
        &self,
        op: &str,
        label: &str,
        table: Option<&str>,
        extra: &[(&str, &str)],
    ) -> (TxnAction, String) {
        let db = self.database().to_string();
        let mut headers: Vec<(&str, &str)> = vec![("db", &db), ("label", label)];
        if let Some(t) = table {
            headers.push(("table", t));
        }
        headers.extend_from_slice(extra);
        let sent = self
            .send_bodyless(Method::POST, &format!("/api/transaction/{op}"), &headers)
            .await;
        let action = match sent.reply() {
            Ok(reply) => classify_txn(reply),
            Err(broken) => TxnAction::Stop(Stop::Config(broken)),
        };
        let description = format!("{action:?}");
        (action, description)
    }

    async fn txn_error(&self, op: &str, label: &str, action: TxnAction) -> StreamLoadError {
        match action {
            TxnAction::Stop(stop) => self.stop_error(label, stop).await,
            TxnAction::LabelInUse { existing } => StreamLoadError::LabelInUse {
                label: label.into(),
                existing,
            },
            TxnAction::NotExists(message) => StreamLoadError::Rejected {
                label: label.into(),
                message: format!("transaction {op}: {message}"),
            },
            TxnAction::Retry(message) | TxnAction::Ambiguous(message) => {
                StreamLoadError::Unavailable {
                    label: label.into(),
                    message: format!("transaction {op}: {message}"),
                }
            }
            TxnAction::Ok(_) => StreamLoadError::Rejected {
                label: label.into(),
                message: format!("transaction {op}: unexpected success"),
            },
        }
    }

    /// `begin`: opens a transaction for `table` under `label` (state `PREPARE`).
    pub async fn txn_begin(&self, table: &str, label: &str) -> Result<TxnBegun, StreamLoadError> {
        if !is_valid_label(label) {
            return Err(config_error(format!("invalid label {label:?}")));
        }
        let timeout = self.inner.config.timeout.as_secs().max(1).to_string();
        let (action, _) = self
            .txn_call("begin", label, Some(table), &[("timeout", &timeout)])
            .await;
        match action {
            TxnAction::Ok(r) => Ok(TxnBegun {
                label: label.into(),
                txn_id: r.txn_id,
            }),
            other => Err(self.txn_error("begin", label, other).await),
        }
    }

    /// `load`: appends `request.body` to the transaction `request.label`. A failed load
    /// rolls the transaction back on the server; a transport error after the body was
    /// sent is reported as [`StreamLoadError::Unavailable`] — roll back and start over.
    pub async fn txn_load(&self, request: &LoadRequest) -> Result<TxnLoaded, StreamLoadError> {
        let body = self.encode_body(&request.body)?;
        let mut headers = self.data_headers(request, &body)?;
        headers.push(("db".into(), self.database().to_string()));
        headers.push(("table".into(), request.table.clone()));
        let sent = self
            .send_with_body("PUT", "/api/transaction/load", &headers, &body)
            .await;
        let action = match sent.reply() {
            Ok(reply) => classify_txn(reply),
            Err(broken) => TxnAction::Stop(Stop::Config(broken)),
        };
        match action {
            TxnAction::Ok(r) => Ok(TxnLoaded {
                label: request.label.clone(),
                txn_id: r.txn_id,
                load_bytes: r.load_bytes,
            }),
            other => Err(self.txn_error("load", &request.label, other).await),
        }
    }

    /// `prepare` (2PC phase 1). A lost earlier reply is recognised by the label state.
    pub async fn txn_prepare(&self, label: &str) -> Result<TxnPrepared, StreamLoadError> {
        let (action, _) = self.txn_call("prepare", label, None, &[]).await;
        let prepared = |r: TxnResponse, already| TxnPrepared {
            label: label.into(),
            txn_id: r.txn_id,
            rows_total: r.rows_total,
            rows_loaded: r.rows_loaded,
            rows_filtered: r.rows_filtered,
            already,
        };
        match action {
            TxnAction::Ok(r) => Ok(prepared(r, false)),
            TxnAction::NotExists(_) | TxnAction::Ambiguous(_)
                if self.load_state(label).await? == LabelState::Prepared =>
            {
                Ok(prepared(TxnResponse::default(), true))
            }
            other => Err(self.txn_error("prepare", label, other).await),
        }
    }

    /// `commit` (2PC phase 2, or one-phase without prepare). Idempotent: a transaction
    /// already committed or visible is reported with `already: true`.
    pub async fn txn_commit(&self, label: &str) -> Result<TxnCommitted, StreamLoadError> {
        let timeout = self.inner.config.timeout.as_secs().max(1).to_string();
        let (action, _) = self
            .txn_call("commit", label, None, &[("timeout", &timeout)])
            .await;
        match action {
            TxnAction::Ok(r) => Ok(TxnCommitted {
                label: label.into(),
                txn_id: r.txn_id,
                already: r.message.contains("already committed"),
            }),
            other => {
                if self
                    .load_state(label)
                    .await
                    .is_ok_and(LabelState::is_committed)
                {
                    return Ok(TxnCommitted {
                        label: label.into(),
                        txn_id: None,
                        already: true,
                    });
                }
                Err(self.txn_error("commit", label, other).await)
            }
        }
    }

    /// `rollback`: aborts the transaction. Idempotent for aborted or unknown labels.
    pub async fn txn_rollback(&self, label: &str) -> Result<(), StreamLoadError> {
        let (action, _) = self.txn_call("rollback", label, None, &[]).await;
        match action {
            TxnAction::Ok(_) => Ok(()),
            other => {
                if matches!(
                    self.load_state(label).await,
                    Ok(LabelState::Aborted | LabelState::Unknown)
                ) {
                    return Ok(());
                }
                Err(self.txn_error("rollback", label, other).await)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firn_catalog::config::Secret;

    fn client(rewrite: &[(&str, &str)]) -> StreamLoadClient {
        StreamLoadClient::new(StreamLoadClientConfig {
            fe_urls: vec!["http://fe1:8030".into(), "http://fe2:8030".into()],
            database: "gold_hot".into(),
            password: Some(Secret::new("hunter2")),
            host_rewrite: rewrite
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ..StreamLoadClientConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn client_is_cheap_to_share() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<StreamLoadClient>();
    }

    #[test]
    fn debug_hides_the_password() {
        let c = client(&[]);
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("aHVudGVyMg"),
            "{debug}"
        );
        assert!(debug.contains("gold_hot"));
    }

    #[test]
    fn round_robin_and_rewrite() {
        let c = client(&[("10.0.0.5:8040", "127.0.0.1:18040")]);
        assert_eq!(c.next_fe().host_str(), Some("fe1"));
        assert_eq!(c.next_fe().host_str(), Some("fe2"));
        assert_eq!(c.next_fe().host_str(), Some("fe1"));
        let u = c.rewrite(Url::parse("http://10.0.0.5:8040/api/d/t/_stream_load?x=1").unwrap());
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:18040/api/d/t/_stream_load?x=1"
        );
        let other = Url::parse("http://10.0.0.6:8040/a").unwrap();
        assert_eq!(c.rewrite(other.clone()), other);
    }

    #[test]
    fn config_validation() {
        let bad = |config: StreamLoadClientConfig| StreamLoadClient::new(config).unwrap_err();
        assert!(matches!(
            bad(StreamLoadClientConfig {
                database: "d".into(),
                ..Default::default()
            }),
            StreamLoadError::Config { .. }
        ));
        assert!(matches!(
            bad(StreamLoadClientConfig {
                fe_urls: vec!["https://fe:8030".into()],
                database: "d".into(),
                ..Default::default()
            }),
            StreamLoadError::Config { .. }
        ));
    }

    #[test]
    fn headers_per_format() {
        let c = client(&[]);
        let request = LoadRequest {
            table: "t".into(),
            label: "firn-t-1".into(),
            body: Bytes::from_static(b"1\t2\n"),
            format: BodyFormat::Csv {
                column_separator: "\t".into(),
                row_delimiter: "\n".into(),
            },
            columns: Some("a,b,__op".into()),
            merge_condition: Some("ver".into()),
            partial_update: false,
        };
        let h = c.data_headers(&request, &request.body).unwrap();
        let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("column_separator"), Some("\\x09"));
        assert_eq!(get("row_delimiter"), Some("\\x0a"));
        assert_eq!(get("columns"), Some("a,b,__op"));
        assert_eq!(get("merge_condition"), Some("ver"));
        assert_eq!(get("timeout"), Some("60"));
        assert_eq!(get("partial_update"), None);
        let bad = LoadRequest {
            label: "no spaces".into(),
            ..request.clone()
        };
        assert!(matches!(
            c.data_headers(&bad, &bad.body),
            Err(StreamLoadError::Config { .. })
        ));
        let array = LoadRequest {
            format: BodyFormat::JsonArray,
            ..request
        };
        let h = c.data_headers(&array, &array.body).unwrap();
        assert!(h.contains(&("strip_outer_array".into(), "true".into())));
    }
}
