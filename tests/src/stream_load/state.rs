//! Shared state of the fake StarRocks cluster (databases, tables, txns, faults, error logs)
//! and the stream-load pipeline over it: the BE header phase (checks in the real order,
//! begin txn) and the body phase (parse, filter, version check, commit, publish).
//! Pure: no sockets or sleeping; the current time is passed in (milliseconds).

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::labels::{BeginError, LabelStore, Retention, Txn, TxnState};
use super::model::{ApplyMode, RowOp, Table, TableSchema};
use super::parse::{
    FilteredRow, Format, Headers, LoadOptions, basic_auth, decode_body, parse_body, valid_label,
};
use super::response::{self, StreamLoadResult};
use super::txn::TxnContext;

/// Requests kept in the request log.
const MAX_LOGGED_REQUESTS: usize = 10_000;

/// One request as seen by a listener (control API requests excluded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// `fe`, `follower` or `be{index}`.
    pub listener: String,
    pub method: String,
    /// Path and query.
    pub path: String,
    pub label: Option<String>,
    /// Lowercase names; `authorization` is redacted.
    pub headers: BTreeMap<String, String>,
    /// Whether the handler read the request body (so `100 Continue` was sent).
    pub body_read: bool,
    pub body_bytes: u64,
    /// HTTP status, `None` when the connection was dropped without a response.
    pub status: Option<u16>,
}

/// How a reused label is reported (StarRocks#57982).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelConflictMode {
    /// `Status: "Label Already Exists"` + `ExistingJobStatus`.
    #[default]
    Legacy,
    /// `Status: "Fail"`, message `Label [L] has already been used.`
    Fail,
}

/// Server limits, changeable at run time through the control API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub label_keep_max_second: u64,
    pub label_keep_max_num: usize,
    pub max_running_txn_num_per_db: usize,
    pub tablet_max_versions: u64,
    pub streaming_load_max_mb: u64,
    pub streaming_load_max_batch_size_mb: u64,
    pub label_conflict_mode: LabelConflictMode,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            label_keep_max_second: 259_200,
            label_keep_max_num: 1000,
            max_running_txn_num_per_db: 1000,
            tablet_max_versions: 1000,
            streaming_load_max_mb: 102_400,
            streaming_load_max_batch_size_mb: 100,
            label_conflict_mode: LabelConflictMode::Legacy,
        }
    }
}

impl Limits {
    fn retention(&self) -> Retention {
        Retention {
            label_keep_max_second: self.label_keep_max_second,
            label_keep_max_num: self.label_keep_max_num,
        }
    }
}

/// An injectable fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Commit, answer `Publish Timeout` (state COMMITTED) and publish after `visible_after_ms`.
    PublishTimeout { visible_after_ms: u64 },
    /// Commit and publish, but answer `Fail` + "Transaction status unknown ...".
    CommitUnknown,
    /// Commit and publish, then drop the connection without a response.
    LostResponse,
    /// Drop the connection before reading the body (txn aborted).
    DropConnection,
    /// Delay the BE for `delay_ms` before reading the body (and before `100 Continue`).
    SlowBe { delay_ms: u64 },
    /// The BE answers `Service is shutting down, please retry later!`.
    BeShuttingDown,
    /// The BE drops every connection; the FE answers `No backend alive.`
    BeDown,
    /// The FE drops every (non-control) connection.
    FeDown,
    /// The FE answers HTTP 500.
    FeError500,
    /// The FE acts as if `Expect: 100-continue` were missing (a proxy that strips it).
    StripExpect,
}

impl Fault {
    fn on_fe(&self) -> bool {
        matches!(self, Fault::FeDown | Fault::FeError500 | Fault::StripExpect)
    }
}

/// A fault plus what it applies to; `times: None` = until cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    pub fault: Fault,
    #[serde(default)]
    pub db: Option<String>,
    #[serde(default)]
    pub table: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub times: Option<u32>,
}

impl FaultRule {
    /// A fault for every request until cleared.
    pub fn always(fault: Fault) -> FaultRule {
        FaultRule {
            fault,
            db: None,
            table: None,
            label: None,
            times: None,
        }
    }

    /// A fault for the next `n` matching requests.
    pub fn times(fault: Fault, n: u32) -> FaultRule {
        FaultRule {
            times: Some(n),
            ..FaultRule::always(fault)
        }
    }

    fn matches(&self, db: Option<&str>, table: Option<&str>, label: Option<&str>) -> bool {
        let ok = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        ok(&self.db, db) && ok(&self.table, table) && ok(&self.label, label)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PendingPublish {
    txn_id: i64,
    table: String,
    ops: Vec<RowOp>,
    mode: ApplyMode,
    visible_at_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Database {
    pub id: i64,
    pub tables: BTreeMap<String, Table>,
    pub labels: LabelStore,
    pub(crate) pending: Vec<PendingPublish>,
    /// Transaction Stream Load contexts of running (PREPARE/PREPARED) txns, by label.
    pub txn_contexts: BTreeMap<String, TxnContext>,
}

/// A load whose header phase passed: a txn in PREPARE.
#[derive(Debug, Clone)]
pub struct BegunLoad {
    pub db: String,
    pub table: String,
    pub label: String,
    pub txn_id: i64,
    pub opts: LoadOptions,
    pub faults: Vec<Fault>,
    pub started_ms: u64,
}

/// The body-phase result: the reply, and whether to drop the connection instead of replying.
#[derive(Debug, Clone)]
pub struct LoadOutcome {
    pub result: StreamLoadResult,
    pub lose_response: bool,
}

/// What the BE header phase decided.
#[derive(Debug)]
pub enum HeaderPhase {
    Reply(StreamLoadResult),
    DropConnection,
    Proceed(BegunLoad),
}

/// Txn record as listed by the control API.
pub type TxnInfo = Txn;

#[derive(Debug)]
pub struct State {
    pub user: String,
    pub password: String,
    pub limits: Limits,
    pub dbs: BTreeMap<String, Database>,
    pub faults: Vec<FaultRule>,
    pub error_logs: BTreeMap<String, String>,
    /// Stream-load attempts per label (any outcome).
    pub attempts: BTreeMap<String, u64>,
    pub clock_offset_ms: u64,
    /// Requests seen by the FE/BE listeners (newest last, bounded).
    pub requests: Vec<RequestRecord>,
    pub(crate) next_txn_id: i64,
    next_db_id: i64,
}

impl State {
    pub fn new(user: &str, password: &str, limits: Limits) -> State {
        State {
            user: user.into(),
            password: password.into(),
            limits,
            dbs: BTreeMap::new(),
            faults: Vec::new(),
            error_logs: BTreeMap::new(),
            attempts: BTreeMap::new(),
            clock_offset_ms: 0,
            requests: Vec::new(),
            next_txn_id: 1000,
            next_db_id: 10_000,
        }
    }

    pub fn reset(&mut self) {
        let fresh = State::new(&self.user, &self.password, self.limits.clone());
        *self = fresh;
    }

    pub fn create_table(
        &mut self,
        db: &str,
        table: &str,
        schema: TableSchema,
    ) -> Result<(), String> {
        schema.validate()?;
        let next_id = &mut self.next_db_id;
        let database = self.dbs.entry(db.to_string()).or_insert_with(|| {
            *next_id += 1;
            Database {
                id: *next_id,
                tables: BTreeMap::new(),
                labels: LabelStore::default(),
                pending: Vec::new(),
                txn_contexts: BTreeMap::new(),
            }
        });
        database
            .tables
            .insert(table.to_string(), Table::new(schema));
        Ok(())
    }

    pub fn rows(&self, db: &str, table: &str) -> Option<Vec<Value>> {
        Some(self.dbs.get(db)?.tables.get(table)?.rows_json())
    }

    pub fn txns(&self) -> Vec<TxnInfo> {
        let mut all: Vec<TxnInfo> = self
            .dbs
            .values()
            .flat_map(|d| d.labels.txns.iter().cloned())
            .collect();
        all.sort_by_key(|t| t.id);
        all
    }

    pub fn load_state(&self, db: &str, label: &str) -> Option<&'static str> {
        Some(self.dbs.get(db)?.labels.load_state(label))
    }

    /// Forgets finished txns (of `label`, or all) as if evicted by retention.
    pub fn evict_labels(&mut self, db: &str, label: Option<&str>) -> usize {
        self.dbs
            .get_mut(db)
            .map_or(0, |d| d.labels.evict_label(label))
    }

    /// Compaction: brings the table's version count down to 1.
    pub fn compact(&mut self, db: &str, table: &str) -> bool {
        match self.dbs.get_mut(db).and_then(|d| d.tables.get_mut(table)) {
            Some(t) => {
                t.versions = 1;
                true
            }
            None => false,
        }
    }

    pub fn check_credentials(&self, user: &str, password: &str) -> bool {
        user == self.user && password == self.password
    }

    /// Takes the matching faults for one place (FE or BE), consuming one-shot counts.
    pub fn take_faults(
        &mut self,
        fe: bool,
        db: Option<&str>,
        table: Option<&str>,
        label: Option<&str>,
    ) -> Vec<Fault> {
        let mut taken = Vec::new();
        for rule in &mut self.faults {
            if rule.fault.on_fe() == fe && rule.times != Some(0) && rule.matches(db, table, label) {
                taken.push(rule.fault.clone());
                if let Some(n) = &mut rule.times {
                    *n -= 1;
                }
            }
        }
        self.faults.retain(|r| r.times != Some(0));
        taken
    }

    /// Whether an unlimited fault of this kind is set (BE down, FE down) without consuming it.
    pub fn has_fault(&self, fault: &Fault) -> bool {
        self.faults.iter().any(|r| &r.fault == fault)
    }

    /// Publishes due commits and evicts labels per retention.
    pub fn tick(&mut self, now_ms: u64) {
        let retention = self.limits.retention();
        for db in self.dbs.values_mut() {
            let mut blocked: Vec<String> = Vec::new();
            let mut remaining = Vec::new();
            for p in std::mem::take(&mut db.pending) {
                if p.visible_at_ms <= now_ms && !blocked.contains(&p.table) {
                    if let Some(t) = db.tables.get_mut(&p.table) {
                        t.apply(&p.ops, &p.mode);
                    }
                    db.labels.set_state(p.txn_id, TxnState::Visible, now_ms);
                } else {
                    blocked.push(p.table.clone());
                    remaining.push(p);
                }
            }
            db.pending = remaining;
            db.expire_txns(now_ms);
            db.labels.evict(retention, now_ms);
        }
    }

    /// Appends to the request log, dropping the oldest beyond the bound.
    pub fn log_request(&mut self, record: RequestRecord) {
        if self.requests.len() >= MAX_LOGGED_REQUESTS {
            self.requests.remove(0);
        }
        self.requests.push(record);
    }

    /// The BE header phase (§1.6 order), ending with begin-txn. Never reads the body.
    pub fn be_header_phase(
        &mut self,
        db: &str,
        table: &str,
        headers: &Headers,
        content_length: Option<u64>,
        now_ms: u64,
    ) -> HeaderPhase {
        let label = headers
            .get("label")
            .cloned()
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        *self.attempts.entry(label.clone()).or_default() += 1;
        let fail = |message: String| HeaderPhase::Reply(StreamLoadResult::fail(&label, message));
        let faults = self.take_faults(false, Some(db), Some(table), Some(&label));
        if faults.contains(&Fault::BeDown) {
            return HeaderPhase::DropConnection;
        }
        let Some((user, password)) = basic_auth(headers) else {
            return fail("no valid Basic authorization".into());
        };
        if let Some(len) = content_length {
            let limit = self.limits.streaming_load_max_mb * 1024 * 1024;
            if len > limit {
                return fail(format!(
                    "body size {len} exceed limit: {limit}, load_id: 0. You can increase the limit by setting streaming_load_max_mb in be.conf."
                ));
            }
        }
        let opts = match LoadOptions::from_headers(headers) {
            Ok(o) => o,
            Err(e) => return fail(e),
        };
        if opts.format == Format::Json && !opts.ignore_json_size {
            let limit = self.limits.streaming_load_max_batch_size_mb * 1024 * 1024;
            if let Some(len) = content_length.filter(|len| *len > limit) {
                return fail(format!(
                    "The size of this batch exceed the max size [{limit}]  of json type data  data [ {len} ]. Set ignore_json_size to skip the check, although it may lead huge memory consuming."
                ));
            }
        }
        if faults.contains(&Fault::BeShuttingDown) {
            return fail("Service is shutting down, please retry later!".into());
        }
        // loadTxnBegin on the FE.
        if !self.check_credentials(&user, &password) {
            return fail(format!(
                "Access denied; you need (at least one of) the INSERT privilege(s) on TABLE {table} for this operation. user: '{user}'@'%'"
            ));
        }
        if !valid_label(&label) {
            return fail(format!(
                "Invalid label format: {label}. Label must match ^[-\\w]{{1,128}}$"
            ));
        }
        let txn_id = self.next_txn_id;
        let legacy = self.limits.label_conflict_mode == LabelConflictMode::Legacy;
        let max_running = self.limits.max_running_txn_num_per_db;
        let Some(database) = self.dbs.get_mut(db) else {
            return fail(format!("unknown database, database={db}"));
        };
        let Some(schema) = database.tables.get(table).map(|t| t.schema.clone()) else {
            return fail(format!("unknown table, table={db}.{table}"));
        };
        match database
            .labels
            .begin(txn_id, db, table, &label, max_running, now_ms)
        {
            Err(BeginError::LabelUsed { existing }) => {
                return HeaderPhase::Reply(StreamLoadResult::label_conflict(
                    &label,
                    existing.existing_job_status(),
                    legacy,
                ));
            }
            Err(BeginError::TooManyRunning { running, limit }) => {
                let id = database.id;
                return fail(format!(
                    "current running txns on db {id} is {running}, larger than limit {limit}"
                ));
            }
            Ok(()) => {}
        }
        self.next_txn_id += 1;
        // Plan phase: columns / merge_condition validation; failure aborts the txn.
        if let Err(e) = opts.validate_against(&schema) {
            database.labels.abort(txn_id, &e, now_ms);
            let mut result = StreamLoadResult::fail(&label, e);
            result.txn_id = txn_id;
            return HeaderPhase::Reply(result);
        }
        HeaderPhase::Proceed(BegunLoad {
            db: db.to_string(),
            table: table.to_string(),
            label,
            txn_id,
            opts,
            faults,
            started_ms: now_ms,
        })
    }

    /// Aborts a begun txn (body read failed, connection dropped).
    pub fn abort(&mut self, db: &str, txn_id: i64, reason: &str, now_ms: u64) {
        if let Some(d) = self.dbs.get_mut(db)
            && d.labels.get(txn_id).is_some_and(|t| t.state.is_running())
        {
            d.labels.abort(txn_id, reason, now_ms);
        }
    }

    /// The body phase: parse, filter, version check, commit and publish.
    /// `be_url` is the BE's base URL for `ErrorURL`.
    pub fn complete_load(
        &mut self,
        load: &BegunLoad,
        body: &[u8],
        be_url: &str,
        now_ms: u64,
    ) -> LoadOutcome {
        let mut result = StreamLoadResult {
            txn_id: load.txn_id,
            label: load.label.clone(),
            load_bytes: body.len() as u64,
            load_time_ms: now_ms.saturating_sub(load.started_ms),
            ..Default::default()
        };
        let outcome = |result| LoadOutcome {
            result,
            lose_response: false,
        };
        let limits = self.limits.clone();
        let Some(database) = self.dbs.get_mut(&load.db) else {
            result.status = response::FAIL.into();
            result.message = format!("unknown database, database={}", load.db);
            return outcome(result);
        };
        let Some(table) = database.tables.get_mut(&load.table) else {
            database.labels.abort(load.txn_id, "table dropped", now_ms);
            result.status = response::FAIL.into();
            result.message = format!("unknown table, table={}.{}", load.db, load.table);
            return outcome(result);
        };
        let abort = |database: &mut Database, mut result: StreamLoadResult, message: String| {
            database.labels.abort(load.txn_id, &message, now_ms);
            result.status = response::FAIL.into();
            result.message = message;
            outcome(result)
        };
        let parsed = match decode_body(body, &load.opts)
            .and_then(|body| parse_body(&body, &load.opts, &table.schema))
        {
            Ok(p) => p,
            Err(e) => return abort(database, result, e),
        };
        result.number_total_rows = parsed.total;
        result.number_filtered_rows = parsed.filtered.len() as u64;
        result.number_unselected_rows = parsed.unselected;
        result.number_loaded_rows = parsed.ops.len() as u64;
        if !parsed.filtered.is_empty() {
            result.error_url = Some(write_error_log(
                &mut self.error_logs,
                database.id,
                load.txn_id,
                &parsed.filtered,
                be_url,
            ));
        }
        let considered = parsed.total.saturating_sub(parsed.unselected);
        if result.number_filtered_rows as f64 > load.opts.max_filter_ratio * considered as f64 {
            result.number_loaded_rows = 0;
            return abort(database, result, "too many filtered rows".into());
        }
        if table.versions + 1 > limits.tablet_max_versions {
            let message = response::too_many_versions(
                database.id * 100 + 1,
                table.versions,
                limits.tablet_max_versions,
            );
            return abort(database, result, message);
        }
        let visible = database.commit(
            Commit {
                txn_id: load.txn_id,
                table: &load.table,
                ops: parsed.ops,
                mode: &load.opts.mode,
                body_hash: body_hash(body),
                loaded_rows: result.number_loaded_rows,
                publish_delay_ms: publish_delay(&load.faults),
            },
            now_ms,
        );
        if visible {
            result.status = response::SUCCESS.into();
            result.message = "OK".into();
        } else {
            result.status = response::PUBLISH_TIMEOUT.into();
            result.message = PUBLISH_TIMEOUT_MESSAGE.into();
        }
        if load.faults.contains(&Fault::CommitUnknown) {
            result.status = response::FAIL.into();
            result.message = "Commit transaction fail cause RPC timeout, Transaction status unknown, you can retry with same label.".into();
        }
        database.labels.evict(limits.retention(), now_ms);
        LoadOutcome {
            lose_response: load.faults.contains(&Fault::LostResponse),
            result,
        }
    }
}

pub(crate) const PUBLISH_TIMEOUT_MESSAGE: &str = "Publish timeout. The data will be visible after a while, which is caused by the publish timeout.";

/// A hex hash of a body, recorded on the txn (for the "no body accepted twice" checks).
pub(crate) fn body_hash(body: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// The publish delay of an injected `PublishTimeout`, if any.
pub(crate) fn publish_delay(faults: &[Fault]) -> Option<u64> {
    faults.iter().find_map(|f| match f {
        Fault::PublishTimeout { visible_after_ms } => Some(*visible_after_ms),
        _ => None,
    })
}

/// Stores the error log of filtered rows; returns its `ErrorURL`.
pub(crate) fn write_error_log(
    logs: &mut BTreeMap<String, String>,
    db_id: i64,
    txn_id: i64,
    filtered: &[FilteredRow],
    be_url: &str,
) -> String {
    let file = format!("error_log_{db_id}_{txn_id}");
    let text: String = filtered
        .iter()
        .map(|f| format!("Error: {}. Row: {}\n", f.error, f.row))
        .collect();
    logs.insert(file.clone(), text);
    format!("{be_url}/api/_load_error_log?file={file}")
}

/// What a commit writes.
pub(crate) struct Commit<'a> {
    pub txn_id: i64,
    pub table: &'a str,
    pub ops: Vec<RowOp>,
    pub mode: &'a ApplyMode,
    pub body_hash: String,
    pub loaded_rows: u64,
    /// Injected publish delay (`Publish Timeout`).
    pub publish_delay_ms: Option<u64>,
}

impl Database {
    /// Commits a txn: one more version, state COMMITTED, then applied and VISIBLE now,
    /// or later (publish delay, or an earlier publish of the table still pending).
    /// Returns whether it is visible now.
    pub(crate) fn commit(&mut self, commit: Commit<'_>, now_ms: u64) -> bool {
        if let Some(t) = self.tables.get_mut(commit.table) {
            t.versions += 1;
        }
        if let Some(txn) = self.labels.get_mut(commit.txn_id) {
            txn.body_hash = Some(commit.body_hash);
            txn.loaded_rows = commit.loaded_rows;
        }
        self.labels
            .set_state(commit.txn_id, TxnState::Committed, now_ms);
        let blocked = self.pending.iter().any(|p| p.table == commit.table);
        if commit.publish_delay_ms.is_some() || blocked {
            self.pending.push(PendingPublish {
                txn_id: commit.txn_id,
                table: commit.table.to_string(),
                ops: commit.ops,
                mode: commit.mode.clone(),
                visible_at_ms: now_ms + commit.publish_delay_ms.unwrap_or(0),
            });
            false
        } else {
            if let Some(t) = self.tables.get_mut(commit.table) {
                t.apply(&commit.ops, commit.mode);
            }
            self.labels
                .set_state(commit.txn_id, TxnState::Visible, now_ms);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> State {
        let mut s = State::new("root", "", Limits::default());
        s.create_table(
            "d",
            "t",
            serde_json::from_value(json!({
                "columns": [
                    {"name": "id", "type": "bigint", "nullable": false},
                    {"name": "v", "type": "bigint"}
                ],
                "key": ["id"]
            }))
            .unwrap(),
        )
        .unwrap();
        s
    }

    fn headers(label: &str) -> Headers {
        [
            ("authorization", "Basic cm9vdDo="),
            ("label", label),
            ("format", "json"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn load(s: &mut State, label: &str, body: &str, now: u64) -> StreamLoadResult {
        match s.be_header_phase("d", "t", &headers(label), None, now) {
            HeaderPhase::Proceed(b) => {
                s.complete_load(&b, body.as_bytes(), "http://be", now)
                    .result
            }
            HeaderPhase::Reply(r) => r,
            HeaderPhase::DropConnection => panic!("dropped"),
        }
    }

    #[test]
    fn load_then_reuse_label() {
        let mut s = state();
        let r = load(&mut s, "a", r#"{"id":1,"v":2}"#, 0);
        assert_eq!(r.status, "Success");
        assert_eq!(r.number_loaded_rows, 1);
        assert_eq!(s.rows("d", "t").unwrap(), vec![json!({"id":1,"v":2})]);
        let r = load(&mut s, "a", r#"{"id":1,"v":3}"#, 1);
        assert_eq!(r.status, "Label Already Exists");
        assert_eq!(r.txn_id, -1);
        s.limits.label_conflict_mode = LabelConflictMode::Fail;
        let r = load(&mut s, "a", r#"{"id":1,"v":3}"#, 1);
        assert_eq!(r.status, "Fail");
        assert!(r.message.contains("has already been used"));
    }

    #[test]
    fn publish_timeout_then_visible() {
        let mut s = state();
        s.faults.push(FaultRule::times(
            Fault::PublishTimeout {
                visible_after_ms: 100,
            },
            1,
        ));
        let r = load(&mut s, "a", r#"{"id":1,"v":2}"#, 0);
        assert_eq!(r.status, "Publish Timeout");
        assert_eq!(s.load_state("d", "a"), Some("COMMITTED"));
        assert!(s.rows("d", "t").unwrap().is_empty());
        s.tick(100);
        assert_eq!(s.load_state("d", "a"), Some("VISIBLE"));
        assert_eq!(s.rows("d", "t").unwrap().len(), 1);
    }

    #[test]
    fn filtered_rows_and_versions() {
        let mut s = state();
        let r = load(&mut s, "a", r#"{"id":null}"#, 0);
        assert_eq!(r.message, "too many filtered rows");
        assert!(r.error_url.is_some());
        assert_eq!(s.load_state("d", "a"), Some("ABORTED"));
        s.limits.tablet_max_versions = 2;
        assert_eq!(load(&mut s, "b", r#"{"id":1}"#, 0).status, "Success");
        let r = load(&mut s, "c", r#"{"id":2}"#, 0);
        assert!(r.message.contains("too many versions, current/limit: 2/2"));
        assert!(r.txn_id >= 0);
        s.compact("d", "t");
        assert_eq!(load(&mut s, "c", r#"{"id":2}"#, 0).status, "Success");
    }
}
