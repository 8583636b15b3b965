//! The fake's HTTP/1.1 listeners (hyper): FE and BE(s) on loopback over one shared
//! [`State`], routing, the 307 redirect, 100-continue (hyper sends `100 Continue` only when
//! the BE starts reading the body, i.e. after the header phase passed), connection drops
//! for injected faults, and the `/__fake/*` control API. Does I/O (sockets, timers).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::model::TableSchema;
use super::parse::{Headers, basic_auth};
use super::response::{self, pretty};
use super::state::{Fault, FaultRule, HeaderPhase, Limits, RequestRecord, State};
use super::txn::{FeTxn, TxnLoadTicket, TxnResult};

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The leader FE.
    Fe,
    /// A follower FE: redirects label-state and transaction requests to the leader.
    Follower,
    Be(usize),
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    started: Instant,
    pub fe_url: String,
    /// Advertised BE base URLs (what the FE puts in `Location`).
    pub be_urls: Vec<String>,
    next_be: AtomicUsize,
}

impl Shared {
    pub fn new(state: State, fe_url: String, be_urls: Vec<String>) -> Shared {
        Shared {
            state: Mutex::new(state),
            started: Instant::now(),
            fe_url,
            be_urls,
            next_be: AtomicUsize::new(0),
        }
    }

    /// The next BE, round-robin.
    fn next_be(&self) -> usize {
        self.next_be.fetch_add(1, Ordering::Relaxed) % self.be_urls.len().max(1)
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks and publishes/evicts up to now; returns the guard and the time.
    fn lock_at_now(&self) -> (MutexGuard<'_, State>, u64) {
        let mut state = self.lock();
        let now = self.started.elapsed().as_millis() as u64 + state.clock_offset_ms;
        state.tick(now);
        (state, now)
    }

    pub fn tick(&self) {
        drop(self.lock_at_now());
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, content_type.parse().expect("valid header"));
    response
}

fn json_reply(status: StatusCode, body: String) -> Reply {
    reply(status, "application/json", body)
}

fn close(mut response: Reply) -> Reply {
    response
        .headers_mut()
        .insert(CONNECTION, "close".parse().expect("valid header"));
    response
}

fn lost() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "injected connection drop")
}

fn header_map(req: &Request<Incoming>) -> Headers {
    req.headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                match s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn path_segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect()
}

/// Serves one listener until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    role: Role,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        let shared = shared.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { handle(shared, role, peer, req).await }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

/// Publishes delayed commits and evicts labels in the background.
pub(crate) async fn ticker(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = interval.tick() => shared.tick(),
            _ = shutdown.changed() => return,
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    role: Role,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Reply, io::Error> {
    let path = req.uri().path().to_string();
    if path.starts_with("/__fake/") {
        return Ok(control(shared, req).await);
    }
    let headers = header_map(&req);
    let mut record = RequestRecord {
        listener: match role {
            Role::Fe => "fe".to_string(),
            Role::Follower => "follower".to_string(),
            Role::Be(i) => format!("be{i}"),
        },
        method: req.method().to_string(),
        path: req
            .uri()
            .path_and_query()
            .map_or(path, |p| p.as_str().to_string()),
        label: headers.get("label").cloned(),
        headers: headers
            .into_iter()
            .map(|(k, v)| {
                let v = if k == "authorization" {
                    "<redacted>".to_string()
                } else {
                    v
                };
                (k, v)
            })
            .collect(),
        body_read: false,
        body_bytes: 0,
        status: None,
    };
    let result = match role {
        Role::Fe | Role::Follower => fe(shared.clone(), role, peer, req).await,
        Role::Be(index) => be(shared.clone(), index, req, &mut record).await,
    };
    record.status = result.as_ref().ok().map(|r| r.status().as_u16());
    shared.lock().log_request(record);
    result
}

fn not_found() -> Reply {
    reply(StatusCode::NOT_FOUND, "text/plain", "Not Found")
}

fn redirect(location: String) -> Result<Reply, io::Error> {
    let mut response = reply(StatusCode::TEMPORARY_REDIRECT, "text/plain", Bytes::new());
    response
        .headers_mut()
        .insert(LOCATION, location.parse().map_err(io::Error::other)?);
    // Never read the body; close so a body sent anyway cannot confuse the next request.
    Ok(close(response))
}

fn with_query(base: String, query: &Option<String>) -> String {
    match query {
        Some(q) => format!("{base}?{q}"),
        None => base,
    }
}

async fn fe(
    shared: Arc<Shared>,
    role: Role,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Reply, io::Error> {
    let headers = header_map(&req);
    let segments = path_segments(req.uri().path());
    let query = req.uri().query().map(str::to_string);
    let strip_expect = {
        let (mut state, _) = shared.lock_at_now();
        if state.has_fault(&Fault::FeDown) {
            return Err(lost());
        }
        let faults = state.take_faults(true, None, None, headers.get("label").map(String::as_str));
        if faults.contains(&Fault::FeDown) {
            return Err(lost());
        }
        if faults.contains(&Fault::FeError500) {
            return Ok(reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "Internal Server Error",
            ));
        }
        faults.contains(&Fault::StripExpect)
    };
    // A follower FE sends label-state and transaction requests to the leader.
    let to_leader = || {
        redirect(with_query(
            format!("{}{}", shared.fe_url, req.uri().path()),
            &query,
        ))
    };
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let auth_failure = |state: &State| -> Option<Reply> {
        let message = match basic_auth(&headers) {
            None => "Need auth information.".to_string(),
            Some((user, password)) if !state.check_credentials(&user, &password) => {
                format!("Access denied for {user}@{}", peer.ip())
            }
            Some(_) => return None,
        };
        let mut response = json_reply(StatusCode::UNAUTHORIZED, response::auth_failure(&message));
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            "Basic realm=\"\"".parse().expect("valid header"),
        );
        Some(close(response))
    };
    match seg.as_slice() {
        ["api", _db, _table, "_stream_load"] if req.method() == Method::PUT => {
            let state = shared.lock();
            if let Some(r) = auth_failure(&state) {
                return Ok(r);
            }
            let expects = !strip_expect
                && headers
                    .get("expect")
                    .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
            if !expects && req.version() != hyper::Version::HTTP_10 {
                return Ok(close(json_reply(
                    StatusCode::OK,
                    response::fe_ddl_failed("There is no 100-continue header"),
                )));
            }
            if state.has_fault(&Fault::BeDown) || shared.be_urls.is_empty() {
                return Ok(close(json_reply(
                    StatusCode::OK,
                    response::fe_ddl_failed("No backend alive."),
                )));
            }
            drop(state);
            let n = shared.next_be();
            redirect(with_query(
                format!("{}{}", shared.be_urls[n], req.uri().path()),
                &query,
            ))
        }
        ["api", _db, "get_load_state"] if role == Role::Follower => to_leader(),
        ["api", "transaction", _op] if role == Role::Follower => to_leader(),
        ["api", "transaction", op] if matches!(*req.method(), Method::POST | Method::PUT) => {
            let (mut state, now) = shared.lock_at_now();
            if let Some(r) = auth_failure(&state) {
                return Ok(r);
            }
            let failed = |message: &str| {
                Ok(close(json_reply(
                    StatusCode::OK,
                    pretty(&TxnResult::fe_failed(message)),
                )))
            };
            let Some(db) = headers.get("db").filter(|d| !d.is_empty()) else {
                return failed("No database selected.");
            };
            let Some(label) = headers.get("label").filter(|l| !l.is_empty()) else {
                return failed("Empty label.");
            };
            match state.fe_txn(op, db, label, now) {
                FeTxn::Reply(result) => Ok(close(json_reply(StatusCode::OK, pretty(&result)))),
                FeTxn::DropConnection => Err(lost()),
                FeTxn::Redirect(be) => {
                    drop(state);
                    if shared.be_urls.is_empty() {
                        return failed("No backend alive.");
                    }
                    let n = be.unwrap_or_else(|| shared.next_be());
                    redirect(with_query(
                        format!("{}{}", shared.be_urls[n], req.uri().path()),
                        &query,
                    ))
                }
            }
        }
        ["api", db, "get_load_state"] if req.method() == Method::GET => {
            let state = shared.lock();
            if let Some(r) = auth_failure(&state) {
                return Ok(r);
            }
            let Some(label) = query_param(query.as_deref(), "label").filter(|l| !l.is_empty())
            else {
                return Ok(json_reply(
                    StatusCode::OK,
                    response::fe_failed("No label selected."),
                ));
            };
            Ok(match state.load_state(db, &label) {
                Some(s) => json_reply(StatusCode::OK, response::load_state(s)),
                None => json_reply(
                    StatusCode::OK,
                    response::fe_failed(format!("unknown database, database={db}")),
                ),
            })
        }
        _ => Ok(not_found()),
    }
}

async fn be(
    shared: Arc<Shared>,
    index: usize,
    req: Request<Incoming>,
    record: &mut RequestRecord,
) -> Result<Reply, io::Error> {
    let headers = header_map(&req);
    let segments = path_segments(req.uri().path());
    let query = req.uri().query().map(str::to_string);
    let be_url = shared.be_urls.get(index).cloned().unwrap_or_default();
    if shared.lock().has_fault(&Fault::BeDown) {
        return Err(lost());
    }
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    match seg.as_slice() {
        ["api", db, table, "_stream_load"] if req.method() == Method::PUT => {
            let (db, table) = (db.to_string(), table.to_string());
            let content_length = headers.get("content-length").and_then(|l| l.parse().ok());
            let phase = {
                let (mut state, now) = shared.lock_at_now();
                state.be_header_phase(&db, &table, &headers, content_length, now)
            };
            let load = match phase {
                HeaderPhase::DropConnection => return Err(lost()),
                // Header failure: reply without reading the body (so no 100 Continue) and close.
                HeaderPhase::Reply(result) => {
                    return Ok(close(json_reply(StatusCode::OK, pretty(&result))));
                }
                HeaderPhase::Proceed(load) => load,
            };
            let guard = AbortGuard {
                shared: shared.clone(),
                db: db.clone(),
                txn_id: load.txn_id,
            };
            for fault in &load.faults {
                if let Fault::SlowBe { delay_ms } = fault {
                    tokio::time::sleep(Duration::from_millis(*delay_ms)).await;
                }
            }
            if load.faults.contains(&Fault::DropConnection) {
                return Err(lost());
            }
            // Reading the body makes hyper send `100 Continue` first.
            let body = read_body(req, record).await?;
            let outcome = {
                let (mut state, now) = shared.lock_at_now();
                state.complete_load(&load, &body, &be_url, now)
            };
            drop(guard);
            if outcome.lose_response {
                return Err(lost());
            }
            Ok(json_reply(StatusCode::OK, pretty(&outcome.result)))
        }
        ["api", "transaction", op] if matches!(*req.method(), Method::POST | Method::PUT) => {
            let op = op.to_string();
            be_txn(shared, index, &op, &be_url, headers, req, record).await
        }
        ["api", "_load_error_log"] if req.method() == Method::GET => {
            let file = query_param(query.as_deref(), "file").unwrap_or_default();
            Ok(match shared.lock().error_logs.get(&file) {
                Some(text) => reply(StatusCode::OK, "text/plain", text.clone()),
                None => not_found(),
            })
        }
        _ => Ok(not_found()),
    }
}

/// Reads a request body (hyper sends `100 Continue` first), noting it in the request log.
async fn read_body(req: Request<Incoming>, record: &mut RequestRecord) -> Result<Bytes, io::Error> {
    record.body_read = true;
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(io::Error::other)?
        .to_bytes();
    record.body_bytes = body.len() as u64;
    Ok(body)
}

/// The BE transaction endpoints (§4.3).
async fn be_txn(
    shared: Arc<Shared>,
    index: usize,
    op: &str,
    be_url: &str,
    headers: Headers,
    req: Request<Incoming>,
    record: &mut RequestRecord,
) -> Result<Reply, io::Error> {
    let respond = |result: TxnResult| Ok(close(json_reply(StatusCode::OK, pretty(&result))));
    let Some(db) = headers.get("db").filter(|d| !d.is_empty()).cloned() else {
        return respond(TxnResult::status(
            "INVALID_ARGUMENT",
            "No database selected.",
        ));
    };
    let label = headers.get("label").cloned();
    if op == "load" {
        let header_phase = {
            let (mut state, now) = shared.lock_at_now();
            if let Some(l) = &label {
                *state.attempts.entry(l.clone()).or_default() += 1;
            }
            let content_length = headers.get("content-length").and_then(|l| l.parse().ok());
            state.txn_load_header(&db, &headers, content_length, index, now)
        };
        let guard = match header_phase {
            Ok(ticket) => TxnLoadGuard {
                shared: shared.clone(),
                ticket,
            },
            // Header failure: reply without reading the body (no 100 Continue).
            Err(result) => return respond(result),
        };
        let body = read_body(req, record).await?;
        let result = {
            let (mut state, now) = shared.lock_at_now();
            state.txn_load_body(&guard.ticket, &body, now)
        };
        drop(guard);
        return respond(result);
    }
    let (mut state, now) = shared.lock_at_now();
    let result = match op {
        "begin" => state.txn_begin(&db, &headers, index, now),
        "prepare" => state.txn_prepare(&db, &headers, index, be_url, now),
        "rollback" => state.txn_rollback_be(&db, &headers, index, now),
        "commit" => {
            let faults = state.take_faults(false, Some(&db), None, label.as_deref());
            let result = state.txn_commit_be(&db, &headers, index, be_url, &faults, now);
            if faults.contains(&Fault::LostResponse) && result.status == "OK" {
                return Err(lost());
            }
            result
        }
        "list" => {
            let list =
                json!({"Status": "OK", "Message": "", "Transactions": state.txn_list(index)});
            return Ok(json_reply(StatusCode::OK, pretty(&list)));
        }
        other => TxnResult::status(
            "INVALID_ARGUMENT",
            format!("Unknown transaction operation: {other}"),
        ),
    };
    respond(result)
}

/// Rolls a transaction back if its `load` ends without the body (connection dropped).
struct TxnLoadGuard {
    shared: Arc<Shared>,
    ticket: TxnLoadTicket,
}

impl Drop for TxnLoadGuard {
    fn drop(&mut self) {
        let (mut state, now) = self.shared.lock_at_now();
        state.txn_load_dropped(&self.ticket, now);
    }
}

/// Aborts a begun txn if the handler ends without completing it (connection dropped).
struct AbortGuard {
    shared: Arc<Shared>,
    db: String,
    txn_id: i64,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        let (mut state, now) = self.shared.lock_at_now();
        state.abort(
            &self.db,
            self.txn_id,
            "connection closed before the load finished",
            now,
        );
    }
}

#[derive(Deserialize)]
struct CreateTable {
    db: String,
    table: String,
    #[serde(flatten)]
    schema: TableSchema,
}

#[derive(Deserialize)]
struct DbLabel {
    db: String,
    #[serde(default)]
    label: Option<String>,
}

#[derive(Deserialize)]
struct DbTable {
    db: String,
    table: String,
}

#[derive(Deserialize)]
struct Advance {
    ms: u64,
}

fn ok_json(value: Value) -> Reply {
    json_reply(StatusCode::OK, value.to_string())
}

fn bad_request(message: impl std::fmt::Display) -> Reply {
    json_reply(
        StatusCode::BAD_REQUEST,
        json!({"error": message.to_string()}).to_string(),
    )
}

/// The test-control API (no auth): see the module docs of [`super`].
async fn control(shared: Arc<Shared>, req: Request<Incoming>) -> Reply {
    let method = req.method().clone();
    let segments = path_segments(req.uri().path());
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return bad_request(e),
    };
    fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Box<Reply>> {
        serde_json::from_slice(body).map_err(|e| Box::new(bad_request(e)))
    }
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let result: Result<Reply, Box<Reply>> = (|| {
        let (mut state, now) = shared.lock_at_now();
        Ok(match (&method, &seg[1..]) {
            (&Method::POST, ["reset"]) => {
                state.reset();
                ok_json(json!({"ok": true}))
            }
            (&Method::POST, ["tables"]) => {
                let t: CreateTable = parse(&body)?;
                state
                    .create_table(&t.db, &t.table, t.schema)
                    .map_err(|e| Box::new(bad_request(e)))?;
                ok_json(json!({"ok": true}))
            }
            (&Method::GET, ["tables", db, table, "rows"]) => match state.rows(db, table) {
                Some(rows) => ok_json(Value::Array(rows)),
                None => not_found(),
            },
            (&Method::GET, ["clock"]) => {
                // The server clock (what txn times are in) next to the wall clock, so a
                // reader can place `visible_at_ms` in real time.
                let unix_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                ok_json(json!({"now_ms": now, "unix_ms": unix_ms}))
            }
            (&Method::GET, ["txns"]) => {
                ok_json(serde_json::to_value(state.txns()).unwrap_or_default())
            }
            (&Method::GET, ["requests"]) => {
                ok_json(serde_json::to_value(&state.requests).unwrap_or_default())
            }
            (&Method::GET, ["attempts"]) => {
                ok_json(serde_json::to_value(&state.attempts).unwrap_or_default())
            }
            (&Method::GET, ["faults"]) => {
                ok_json(serde_json::to_value(&state.faults).unwrap_or_default())
            }
            (&Method::POST, ["faults"]) => {
                let rule: FaultRule = parse(&body)?;
                state.faults.push(rule);
                ok_json(json!({"ok": true}))
            }
            (&Method::DELETE, ["faults"]) => {
                state.faults.clear();
                ok_json(json!({"ok": true}))
            }
            (&Method::GET, ["limits"]) => {
                ok_json(serde_json::to_value(&state.limits).unwrap_or_default())
            }
            (&Method::POST, ["limits"]) => {
                state.limits = parse::<Limits>(&body)?;
                ok_json(json!({"ok": true}))
            }
            (&Method::POST, ["evict"]) => {
                let d: DbLabel = parse(&body)?;
                let n = state.evict_labels(&d.db, d.label.as_deref());
                ok_json(json!({"evicted": n}))
            }
            (&Method::POST, ["compact"]) => {
                let d: DbTable = parse(&body)?;
                ok_json(json!({"ok": state.compact(&d.db, &d.table)}))
            }
            (&Method::POST, ["clock", "advance"]) => {
                let a: Advance = parse(&body)?;
                state.clock_offset_ms += a.ms;
                let now = now + a.ms;
                state.tick(now);
                ok_json(json!({"now_ms": now}))
            }
            _ => not_found(),
        })
    })();
    result.unwrap_or_else(|e| *e)
}
