//! Transaction Stream Load in the fake (spec §4, §9.2.3, §9.3.5): the BE side (`begin`,
//! `load`, `prepare`, `commit`, `rollback`, `list` with TStatusCode-named `Status`,
//! `TXN_IN_PROCESSING`, `TXN_NOT_EXISTS`, auto-rollback on errors), the FE side (sticky BE
//! per label, FE-side commit/rollback of PREPARED txns with the idempotent messages) and
//! the timeout / idle-timeout / prepared-timeout aborts run by the clock tick.
//! Pure: time is passed in as milliseconds.

use serde::Serialize;

use super::labels::{BeginError, TxnState};
use super::model::RowOp;
use super::parse::{FilteredRow, Headers, LoadOptions, basic_auth, decode_body, parse_body};
use super::response;
use super::state::{
    Commit, Database, Fault, PUBLISH_TIMEOUT_MESSAGE, State, body_hash, publish_delay,
    write_error_log,
};

/// `stream_load_default_timeout_second`.
const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// `prepared_transaction_default_timeout_second`.
const DEFAULT_PREPARED_TIMEOUT_SECS: u64 = 86_400;

/// The BE-side context of a running transaction (PREPARE or PREPARED).
#[derive(Debug, Clone)]
pub struct TxnContext {
    pub txn_id: i64,
    pub label: String,
    pub table: String,
    /// The BE that began it; other BEs do not know the txn.
    pub be: usize,
    /// Options of the first load (later loads must use the same).
    pub opts: Option<LoadOptions>,
    pub ops: Vec<RowOp>,
    pub total: u64,
    pub filtered: Vec<FilteredRow>,
    pub unselected: u64,
    pub bytes: u64,
    pub body_hash: String,
    pub loads: u64,
    /// A `load` is reading its body.
    pub in_process: bool,
    pub started_ms: u64,
    pub deadline_ms: u64,
    pub idle_timeout_ms: Option<u64>,
    pub last_activity_ms: u64,
    pub prepared_deadline_ms: Option<u64>,
    pub error_url: Option<String>,
}

/// A transaction-API reply: BE `to_resp_json` key order (`Status`, `Message`, then `Label`
/// and the op's fields); FE replies use the same keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnResult {
    /// A TStatusCode name (`OK`, `TXN_NOT_EXISTS`, ...) or the FE's `FAILED`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_job_status: Option<&'static str>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txn_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub begin_txn_time_ms: Option<u64>,
    /// Per-op statistics (load, prepare, commit).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Box<TxnStats>>,
}

/// Statistics fields of `load` / `prepare` / `commit` replies, in the BE's order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_total_rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_loaded_rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_filtered_rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_unselected_rows: Option<u64>,
    pub load_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_time_ms: Option<u64>,
    pub stream_load_plan_time_ms: u64,
    pub received_data_time_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_data_time_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_and_publish_time_ms: Option<u64>,
    #[serde(rename = "ErrorURL", skip_serializing_if = "Option::is_none")]
    pub error_url: Option<String>,
}

impl TxnResult {
    pub fn status(status: &'static str, message: impl Into<String>) -> TxnResult {
        TxnResult {
            status,
            message: message.into(),
            ..Default::default()
        }
    }

    fn ok(label: &str, txn_id: i64) -> TxnResult {
        TxnResult {
            label: Some(label.into()),
            txn_id: Some(txn_id),
            ..TxnResult::status("OK", "")
        }
    }

    /// FE failure: `FAILED` with the exception class prefix.
    pub fn fe_failed(message: &str) -> TxnResult {
        TxnResult::status(
            "FAILED",
            format!("class com.starrocks.common.StarRocksException: {message}"),
        )
    }

    fn not_exists(label: &str) -> TxnResult {
        TxnResult::status(
            "TXN_NOT_EXISTS",
            format!("Transaction with label {label} not exists"),
        )
    }

    fn in_processing(label: &str) -> TxnResult {
        TxnResult {
            label: Some(label.into()),
            ..TxnResult::status(
                "TXN_IN_PROCESSING",
                "Transaction in processing, please retry later",
            )
        }
    }

    /// Adds the prepare/commit statistics of a context.
    fn with_stats(mut self, ctx: &TxnContext, now_ms: u64) -> TxnResult {
        self.stats = Some(Box::new(TxnStats {
            number_total_rows: Some(ctx.total),
            number_loaded_rows: Some(ctx.ops.len() as u64),
            number_filtered_rows: Some(ctx.filtered.len() as u64),
            number_unselected_rows: Some(ctx.unselected),
            load_bytes: ctx.bytes,
            load_time_ms: Some(now_ms.saturating_sub(ctx.started_ms)),
            stream_load_plan_time_ms: 0,
            received_data_time_ms: 0,
            write_data_time_ms: Some(0),
            commit_and_publish_time_ms: Some(0),
            error_url: ctx.error_url.clone(),
        }));
        self
    }
}

/// What the FE does with a transaction request.
#[derive(Debug, Clone, PartialEq)]
pub enum FeTxn {
    Reply(TxnResult),
    /// 307 to this BE (`None`: any BE, round-robin).
    Redirect(Option<usize>),
    /// Committed by the FE, but the injected fault drops the connection.
    DropConnection,
}

/// A `load` whose header phase passed: the body may be read.
#[derive(Debug, Clone)]
pub struct TxnLoadTicket {
    pub db: String,
    pub label: String,
    pub txn_id: i64,
    pub opts: LoadOptions,
}

fn parse_secs(headers: &Headers, name: &str) -> Result<Option<u64>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("Invalid {name} format")),
    }
}

impl Database {
    /// Aborts a transaction and forgets its context.
    fn abort_txn(&mut self, label: &str, reason: &str, now_ms: u64) {
        if let Some(ctx) = self.txn_contexts.remove(label) {
            self.labels.abort(ctx.txn_id, reason, now_ms);
        }
    }

    /// Timeout, idle-timeout and prepared-timeout aborts.
    pub(crate) fn expire_txns(&mut self, now_ms: u64) {
        let mut expired = Vec::new();
        for (label, ctx) in &self.txn_contexts {
            let state = self.labels.get(ctx.txn_id).map(|t| t.state);
            let reason = match state {
                Some(TxnState::Prepare) if !ctx.in_process && now_ms >= ctx.deadline_ms => {
                    Some("transaction is aborted by timeout.")
                }
                Some(TxnState::Prepare)
                    if !ctx.in_process
                        && ctx
                            .idle_timeout_ms
                            .is_some_and(|idle| now_ms >= ctx.last_activity_ms + idle) =>
                {
                    Some("transaction is aborted by idle timeout.")
                }
                Some(TxnState::Prepared)
                    if ctx.prepared_deadline_ms.is_some_and(|d| now_ms >= d) =>
                {
                    Some("transaction is aborted by prepared timeout.")
                }
                Some(TxnState::Prepare | TxnState::Prepared) => None,
                // Finished through another path: drop the stale context.
                _ => Some(""),
            };
            if let Some(reason) = reason {
                expired.push((label.clone(), reason));
            }
        }
        for (label, reason) in expired {
            if reason.is_empty() {
                self.txn_contexts.remove(&label);
            } else {
                self.abort_txn(&label, reason, now_ms);
            }
        }
    }
}

impl State {
    /// Auth and label checks shared by the BE transaction ops.
    fn txn_preamble(&self, headers: &Headers) -> Result<String, TxnResult> {
        let Some((user, password)) = basic_auth(headers) else {
            return Err(TxnResult::status(
                "INVALID_ARGUMENT",
                "no valid Basic authorization",
            ));
        };
        if !self.check_credentials(&user, &password) {
            return Err(TxnResult::status(
                "INTERNAL_ERROR",
                format!("Access denied for user '{user}'"),
            ));
        }
        match headers.get("label").filter(|l| !l.is_empty()) {
            Some(label) => Ok(label.clone()),
            None => Err(TxnResult::status("INVALID_ARGUMENT", "empty label")),
        }
    }

    /// The running context of `label` on BE `be`, or the reply to send instead.
    fn txn_context(
        &mut self,
        db: &str,
        label: &str,
        be: usize,
    ) -> Result<&mut TxnContext, TxnResult> {
        let ctx = self
            .dbs
            .get_mut(db)
            .and_then(|d| d.txn_contexts.get_mut(label))
            .filter(|c| c.be == be)
            .ok_or_else(|| TxnResult::not_exists(label))?;
        if ctx.in_process {
            return Err(TxnResult::in_processing(label));
        }
        Ok(ctx)
    }

    fn txn_state(&self, db: &str, label: &str) -> Option<(i64, TxnState)> {
        let txn = self.dbs.get(db)?.labels.latest(label)?;
        Some((txn.id, txn.state))
    }

    /// BE `begin`.
    pub fn txn_begin(&mut self, db: &str, headers: &Headers, be: usize, now_ms: u64) -> TxnResult {
        let label = match self.txn_preamble(headers) {
            Ok(l) => l,
            Err(r) => return r,
        };
        if !super::parse::valid_label(&label) {
            return TxnResult::status(
                "INVALID_ARGUMENT",
                format!("Invalid label format: {label}. Label must match ^[-\\w]{{1,128}}$"),
            );
        }
        let Some(table) = headers.get("table").filter(|t| !t.is_empty()).cloned() else {
            return TxnResult::status("INVALID_ARGUMENT", "No table selected.");
        };
        let (timeout, idle) = match (
            parse_secs(headers, "timeout"),
            parse_secs(headers, "idle_transaction_timeout"),
        ) {
            (Ok(t), Ok(i)) => (t.unwrap_or(DEFAULT_TIMEOUT_SECS), i),
            (Err(e), _) | (_, Err(e)) => return TxnResult::status("INVALID_ARGUMENT", e),
        };
        let txn_id = self.next_txn_id;
        let max_running = self.limits.max_running_txn_num_per_db;
        let Some(database) = self.dbs.get_mut(db) else {
            return TxnResult::status("ANALYSIS_ERROR", format!("unknown database, database={db}"));
        };
        if !database.tables.contains_key(&table) {
            return TxnResult::status(
                "ANALYSIS_ERROR",
                format!("unknown table, table={db}.{table}"),
            );
        }
        match database
            .labels
            .begin(txn_id, db, &table, &label, max_running, now_ms)
        {
            Err(BeginError::LabelUsed { existing }) => {
                return TxnResult {
                    existing_job_status: Some(existing.existing_job_status()),
                    ..TxnResult::status(
                        "LABEL_ALREADY_EXISTS",
                        format!("Label [{label}] has already been used."),
                    )
                };
            }
            Err(BeginError::TooManyRunning { running, limit }) => {
                let id = database.id;
                return TxnResult::status(
                    "INTERNAL_ERROR",
                    format!(
                        "current running txns on db {id} is {running}, larger than limit {limit}"
                    ),
                );
            }
            Ok(()) => {}
        }
        self.next_txn_id += 1;
        database.txn_contexts.insert(
            label.clone(),
            TxnContext {
                txn_id,
                label: label.clone(),
                table,
                be,
                opts: None,
                ops: Vec::new(),
                total: 0,
                filtered: Vec::new(),
                unselected: 0,
                bytes: 0,
                body_hash: String::new(),
                loads: 0,
                in_process: false,
                started_ms: now_ms,
                deadline_ms: now_ms + timeout * 1000,
                idle_timeout_ms: idle.map(|s| s * 1000),
                last_activity_ms: now_ms,
                prepared_deadline_ms: None,
                error_url: None,
            },
        );
        TxnResult {
            begin_txn_time_ms: Some(0),
            ..TxnResult::ok(&label, txn_id)
        }
    }

    /// BE `load`, header phase (before the body is read).
    pub fn txn_load_header(
        &mut self,
        db: &str,
        headers: &Headers,
        content_length: Option<u64>,
        be: usize,
        now_ms: u64,
    ) -> Result<TxnLoadTicket, TxnResult> {
        let label = self.txn_preamble(headers)?;
        let limit = self.limits.streaming_load_max_mb * 1024 * 1024;
        let ctx = self.txn_context(db, &label, be)?;
        let txn_id = ctx.txn_id;
        let failure = match LoadOptions::from_headers(headers) {
            Err(e) => e,
            Ok(_) if content_length.is_some_and(|l| l > limit) => format!(
                "body size {} exceed limit: {limit}, load_id: 0. You can increase the limit by setting streaming_load_max_mb in be.conf.",
                content_length.unwrap_or(0)
            ),
            Ok(opts) => {
                ctx.in_process = true;
                ctx.last_activity_ms = now_ms;
                return Ok(TxnLoadTicket {
                    db: db.to_string(),
                    label,
                    txn_id,
                    opts,
                });
            }
        };
        // A failed load rolls the transaction back.
        if let Some(d) = self.dbs.get_mut(db) {
            d.abort_txn(&label, &failure, now_ms);
        }
        Err(TxnResult::status("INVALID_ARGUMENT", failure))
    }

    /// BE `load`, body phase: parse and append to the transaction.
    pub fn txn_load_body(&mut self, ticket: &TxnLoadTicket, body: &[u8], now_ms: u64) -> TxnResult {
        let Some(database) = self.dbs.get_mut(&ticket.db) else {
            return TxnResult::not_exists(&ticket.label);
        };
        let Some(ctx) = database
            .txn_contexts
            .get_mut(&ticket.label)
            .filter(|c| c.txn_id == ticket.txn_id)
        else {
            return TxnResult::not_exists(&ticket.label);
        };
        ctx.in_process = false;
        ctx.last_activity_ms = now_ms;
        let Some(schema) = database.tables.get(&ctx.table).map(|t| t.schema.clone()) else {
            let table = ctx.table.clone();
            database.abort_txn(&ticket.label, "table dropped", now_ms);
            return TxnResult::status("ANALYSIS_ERROR", format!("unknown table, table={table}"));
        };
        let opts = ctx.opts.get_or_insert_with(|| ticket.opts.clone()).clone();
        let parsed =
            match decode_body(body, &ticket.opts).and_then(|b| parse_body(&b, &opts, &schema)) {
                Ok(p) => p,
                Err(e) => {
                    database.abort_txn(&ticket.label, &e, now_ms);
                    return TxnResult::status("INTERNAL_ERROR", e);
                }
            };
        ctx.total += parsed.total;
        ctx.unselected += parsed.unselected;
        ctx.ops.extend(parsed.ops);
        ctx.filtered.extend(parsed.filtered);
        ctx.bytes += body.len() as u64;
        ctx.loads += 1;
        ctx.body_hash = body_hash(format!("{}{}", ctx.body_hash, body_hash(body)).as_bytes());
        TxnResult {
            stats: Some(Box::new(TxnStats {
                load_bytes: body.len() as u64,
                ..TxnStats::default()
            })),
            ..TxnResult::ok(&ticket.label, ticket.txn_id)
        }
    }

    /// A `load` ended without its body (connection dropped): roll back.
    pub fn txn_load_dropped(&mut self, ticket: &TxnLoadTicket, now_ms: u64) {
        if let Some(d) = self.dbs.get_mut(&ticket.db)
            && d.txn_contexts
                .get(&ticket.label)
                .is_some_and(|c| c.txn_id == ticket.txn_id && c.in_process)
        {
            d.abort_txn(
                &ticket.label,
                "connection closed before the load finished",
                now_ms,
            );
        }
    }

    /// Prepare checks and state change; the reply's stats on success.
    fn prepare_txn(
        &mut self,
        db: &str,
        label: &str,
        prepared_timeout_secs: u64,
        be_url: &str,
        now_ms: u64,
    ) -> Result<TxnResult, TxnResult> {
        let tablet_max_versions = self.limits.tablet_max_versions;
        let Some(database) = self.dbs.get_mut(db) else {
            return Err(TxnResult::not_exists(label));
        };
        let db_id = database.id;
        let Some(ctx) = database.txn_contexts.get_mut(label) else {
            return Err(TxnResult::not_exists(label));
        };
        let txn_id = ctx.txn_id;
        let failure = if ctx.loads == 0 {
            Some(format!("transaction {txn_id} hasn't send any data yet"))
        } else {
            if !ctx.filtered.is_empty() {
                ctx.error_url = Some(write_error_log(
                    &mut self.error_logs,
                    db_id,
                    txn_id,
                    &ctx.filtered,
                    be_url,
                ));
            }
            let ratio = ctx.opts.as_ref().map_or(0.0, |o| o.max_filter_ratio);
            let considered = ctx.total.saturating_sub(ctx.unselected);
            let versions = database.tables.get(&ctx.table).map_or(0, |t| t.versions);
            if ctx.filtered.len() as f64 > ratio * considered as f64 {
                Some("too many filtered rows".to_string())
            } else if versions + 1 > tablet_max_versions {
                Some(response::too_many_versions(
                    db_id * 100 + 1,
                    versions,
                    tablet_max_versions,
                ))
            } else {
                None
            }
        };
        if let Some(message) = failure {
            let mut result = TxnResult::status("INTERNAL_ERROR", message.clone());
            if let Some(url) = &ctx.error_url {
                result = result.with_stats(ctx, now_ms);
                if let Some(stats) = &mut result.stats {
                    stats.error_url = Some(url.clone());
                }
            }
            database.abort_txn(label, &message, now_ms);
            return Err(result);
        }
        ctx.prepared_deadline_ms = Some(now_ms + prepared_timeout_secs * 1000);
        let result = TxnResult::ok(label, txn_id).with_stats(ctx, now_ms);
        database
            .labels
            .set_state(txn_id, TxnState::Prepared, now_ms);
        Ok(result)
    }

    /// Commits a PREPARED txn; returns whether it is visible now.
    fn commit_prepared(&mut self, db: &str, label: &str, faults: &[Fault], now_ms: u64) -> bool {
        let Some(database) = self.dbs.get_mut(db) else {
            return false;
        };
        let Some(ctx) = database.txn_contexts.remove(label) else {
            return false;
        };
        let mode = ctx
            .opts
            .as_ref()
            .map(|o| o.mode.clone())
            .unwrap_or_default();
        database.commit(
            Commit {
                txn_id: ctx.txn_id,
                table: &ctx.table,
                loaded_rows: ctx.ops.len() as u64,
                ops: ctx.ops,
                mode: &mode,
                body_hash: ctx.body_hash,
                publish_delay_ms: publish_delay(faults),
            },
            now_ms,
        )
    }

    /// BE `prepare`.
    pub fn txn_prepare(
        &mut self,
        db: &str,
        headers: &Headers,
        be: usize,
        be_url: &str,
        now_ms: u64,
    ) -> TxnResult {
        let label = match self.txn_preamble(headers) {
            Ok(l) => l,
            Err(r) => return r,
        };
        let prepared_timeout = match parse_secs(headers, "prepared_timeout") {
            Ok(t) => t.unwrap_or(DEFAULT_PREPARED_TIMEOUT_SECS),
            Err(e) => return TxnResult::status("INVALID_ARGUMENT", e),
        };
        match self.txn_context(db, &label, be) {
            Err(r) => return r,
            // After prepare the BE no longer holds the context.
            Ok(ctx) if ctx.prepared_deadline_ms.is_some() => {
                return TxnResult::not_exists(&label);
            }
            Ok(_) => {}
        }
        self.prepare_txn(db, &label, prepared_timeout, be_url, now_ms)
            .unwrap_or_else(|r| r)
    }

    /// BE `commit`: one-phase (prepare + commit) for a txn still in PREPARE.
    pub fn txn_commit_be(
        &mut self,
        db: &str,
        headers: &Headers,
        be: usize,
        be_url: &str,
        faults: &[Fault],
        now_ms: u64,
    ) -> TxnResult {
        let label = match self.txn_preamble(headers) {
            Ok(l) => l,
            Err(r) => return r,
        };
        match self.txn_context(db, &label, be) {
            Err(r) => return r,
            Ok(ctx) if ctx.prepared_deadline_ms.is_some() => {}
            Ok(_) => {
                if let Err(r) =
                    self.prepare_txn(db, &label, DEFAULT_PREPARED_TIMEOUT_SECS, be_url, now_ms)
                {
                    return r;
                }
            }
        }
        let stats = self
            .dbs
            .get(db)
            .and_then(|d| d.txn_contexts.get(&label))
            .map(|ctx| TxnResult::ok(&label, ctx.txn_id).with_stats(ctx, now_ms));
        let Some(result) = stats else {
            return TxnResult::not_exists(&label);
        };
        if self.commit_prepared(db, &label, faults, now_ms) {
            result
        } else {
            TxnResult {
                status: "PUBLISH_TIMEOUT",
                message: PUBLISH_TIMEOUT_MESSAGE.into(),
                ..result
            }
        }
    }

    /// BE `rollback` of a txn in PREPARE.
    pub fn txn_rollback_be(
        &mut self,
        db: &str,
        headers: &Headers,
        be: usize,
        now_ms: u64,
    ) -> TxnResult {
        let label = match self.txn_preamble(headers) {
            Ok(l) => l,
            Err(r) => return r,
        };
        if let Err(r) = self.txn_context(db, &label, be) {
            return r;
        }
        if let Some(d) = self.dbs.get_mut(db) {
            d.abort_txn(&label, "transaction is aborted by user.", now_ms);
        }
        TxnResult {
            label: Some(label),
            ..TxnResult::status("OK", "")
        }
    }

    /// BE `list`: the transactions this BE holds.
    pub fn txn_list(&self, be: usize) -> Vec<serde_json::Value> {
        self.dbs
            .iter()
            .flat_map(|(db, d)| {
                d.txn_contexts
                    .values()
                    .filter(|c| c.be == be)
                    .map(move |c| {
                        serde_json::json!({
                            "db": db,
                            "table": c.table,
                            "label": c.label,
                            "txn_id": c.txn_id,
                            "state": d.labels.get(c.txn_id).map(|t| t.state.name()),
                            "loads": c.loads,
                            "load_bytes": c.bytes,
                        })
                    })
            })
            .collect()
    }

    /// The BE holding `label` (sticky per label), if the txn is running.
    pub fn txn_be(&self, db: &str, label: &str) -> Option<usize> {
        self.dbs.get(db)?.txn_contexts.get(label).map(|c| c.be)
    }

    /// The FE's decision for `commit`/`rollback`/`load`/`prepare`/`begin` (§4.2).
    pub fn fe_txn(&mut self, op: &str, db: &str, label: &str, now_ms: u64) -> FeTxn {
        match op {
            "begin" => FeTxn::Redirect(None),
            "load" | "prepare" => FeTxn::Redirect(self.txn_be(db, label)),
            "commit" => match self.txn_state(db, label) {
                None => FeTxn::Reply(TxnResult::fe_failed(&format!(
                    "No transaction found with db[{db}] and label[{label}]"
                ))),
                Some((_, TxnState::Prepare)) => FeTxn::Redirect(self.txn_be(db, label)),
                Some((id, TxnState::Prepared)) => {
                    let faults = self.take_faults(false, Some(db), None, Some(label));
                    self.commit_prepared(db, label, &faults, now_ms);
                    if faults.contains(&Fault::LostResponse) {
                        return FeTxn::DropConnection;
                    }
                    FeTxn::Reply(TxnResult::ok(label, id))
                }
                Some((id, TxnState::Committed | TxnState::Visible)) => FeTxn::Reply(TxnResult {
                    message: format!("Transaction {id} has already committed, label is {label}"),
                    ..TxnResult::ok(label, id)
                }),
                Some((id, TxnState::Aborted)) => FeTxn::Reply(TxnResult::fe_failed(&format!(
                    "Can not commit ABORTED transaction {id}, label is {label}"
                ))),
            },
            "rollback" => match self.txn_state(db, label) {
                None => FeTxn::Reply(TxnResult::fe_failed(&format!(
                    "No transaction found with db[{db}] and label[{label}]"
                ))),
                Some((_, TxnState::Prepare)) => FeTxn::Redirect(self.txn_be(db, label)),
                Some((id, TxnState::Prepared)) => {
                    if let Some(d) = self.dbs.get_mut(db) {
                        d.abort_txn(label, "User Aborted", now_ms);
                    }
                    FeTxn::Reply(TxnResult::ok(label, id))
                }
                Some((id, TxnState::Aborted)) => FeTxn::Reply(TxnResult {
                    message: format!("Transaction {id} has already aborted, label is {label}"),
                    ..TxnResult::ok(label, id)
                }),
                Some((id, state)) => FeTxn::Reply(TxnResult::fe_failed(&format!(
                    "Can not abort {} transaction {id}, label is {label}",
                    state.name()
                ))),
            },
            other => FeTxn::Reply(TxnResult::fe_failed(&format!(
                "Unknown transaction operation: {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream_load::state::Limits;
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

    fn headers(label: &str, extra: &[(&str, &str)]) -> Headers {
        let mut h: Headers = [
            ("authorization", "Basic cm9vdDo="),
            ("label", label),
            ("table", "t"),
            ("format", "json"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            h.insert(k.to_string(), v.to_string());
        }
        h
    }

    fn load(s: &mut State, label: &str, body: &str, now: u64) -> TxnResult {
        match s.txn_load_header("d", &headers(label, &[]), None, 0, now) {
            Ok(ticket) => s.txn_load_body(&ticket, body.as_bytes(), now),
            Err(r) => r,
        }
    }

    #[test]
    fn two_phase_commit_via_fe() {
        let mut s = state();
        let begin = s.txn_begin("d", &headers("x", &[]), 0, 0);
        assert_eq!(begin.status, "OK");
        assert_eq!(load(&mut s, "x", r#"{"id":1,"v":1}"#, 1).status, "OK");
        assert_eq!(load(&mut s, "x", r#"{"id":2,"v":1}"#, 2).status, "OK");
        let prepared = s.txn_prepare("d", &headers("x", &[]), 0, "http://be", 3);
        assert_eq!(prepared.status, "OK");
        assert_eq!(prepared.stats.unwrap().number_loaded_rows, Some(2));
        assert_eq!(s.load_state("d", "x"), Some("PREPARED"));
        // A second prepare: the BE no longer holds the context.
        assert_eq!(
            s.txn_prepare("d", &headers("x", &[]), 0, "http://be", 3)
                .status,
            "TXN_NOT_EXISTS"
        );
        assert!(s.rows("d", "t").unwrap().is_empty());
        assert!(matches!(s.fe_txn("commit", "d", "x", 4), FeTxn::Reply(r) if r.status == "OK"));
        assert_eq!(s.rows("d", "t").unwrap().len(), 2);
        match s.fe_txn("commit", "d", "x", 5) {
            FeTxn::Reply(r) => {
                assert_eq!(r.status, "OK");
                assert!(r.message.contains("has already committed"), "{}", r.message);
            }
            other => panic!("{other:?}"),
        }
        match s.fe_txn("rollback", "d", "x", 5) {
            FeTxn::Reply(r) => {
                assert!(r.message.contains("Can not abort VISIBLE"), "{}", r.message)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn in_processing_not_exists_and_auto_rollback() {
        let mut s = state();
        s.txn_begin("d", &headers("x", &[]), 0, 0);
        let ticket = s
            .txn_load_header("d", &headers("x", &[]), None, 0, 1)
            .unwrap();
        assert_eq!(load(&mut s, "x", "{}", 1).status, "TXN_IN_PROCESSING");
        assert_eq!(
            s.txn_load_header("d", &headers("x", &[]), None, 1, 1)
                .unwrap_err()
                .status,
            "TXN_NOT_EXISTS",
            "another BE does not know the txn"
        );
        s.txn_load_body(&ticket, br#"{"id":1}"#, 2);
        // A malformed body rolls the txn back.
        let bad = load(&mut s, "x", "{not json", 3);
        assert_eq!(bad.status, "INTERNAL_ERROR");
        assert_eq!(s.load_state("d", "x"), Some("ABORTED"));
        assert_eq!(load(&mut s, "x", "{}", 4).status, "TXN_NOT_EXISTS");
        match s.fe_txn("commit", "d", "x", 5) {
            FeTxn::Reply(r) => assert!(
                r.message.contains("Can not commit ABORTED"),
                "{}",
                r.message
            ),
            other => panic!("{other:?}"),
        }
        match s.fe_txn("rollback", "d", "x", 5) {
            FeTxn::Reply(r) => assert!(r.message.contains("has already aborted")),
            other => panic!("{other:?}"),
        }
        match s.fe_txn("commit", "d", "nope", 5) {
            FeTxn::Reply(r) => assert_eq!(
                r.message,
                "class com.starrocks.common.StarRocksException: No transaction found with db[d] and label[nope]"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timeouts_abort() {
        let mut s = state();
        s.txn_begin("d", &headers("t1", &[("timeout", "10")]), 0, 0);
        s.txn_begin(
            "d",
            &headers("t2", &[("idle_transaction_timeout", "2")]),
            0,
            0,
        );
        s.txn_begin("d", &headers("t3", &[]), 0, 0);
        load(&mut s, "t3", r#"{"id":1}"#, 0);
        s.txn_prepare(
            "d",
            &headers("t3", &[("prepared_timeout", "5")]),
            0,
            "http://be",
            0,
        );
        s.tick(1_000);
        assert_eq!(s.load_state("d", "t2"), Some("PREPARE"));
        s.tick(2_000);
        assert_eq!(s.load_state("d", "t2"), Some("ABORTED"));
        assert_eq!(s.load_state("d", "t3"), Some("PREPARED"));
        s.tick(5_000);
        assert_eq!(s.load_state("d", "t3"), Some("ABORTED"));
        assert_eq!(s.load_state("d", "t1"), Some("PREPARE"));
        s.tick(10_000);
        assert_eq!(s.load_state("d", "t1"), Some("ABORTED"));
        let reason = s
            .txns()
            .into_iter()
            .find(|t| t.label == "t1")
            .and_then(|t| t.abort_reason);
        assert_eq!(
            reason.as_deref(),
            Some("transaction is aborted by timeout.")
        );
    }

    #[test]
    fn label_conflict_and_one_phase_commit() {
        let mut s = state();
        s.txn_begin("d", &headers("x", &[]), 0, 0);
        let dup = s.txn_begin("d", &headers("x", &[]), 0, 0);
        assert_eq!(dup.status, "LABEL_ALREADY_EXISTS");
        assert_eq!(dup.existing_job_status, Some("RUNNING"));
        assert_eq!(
            s.txn_prepare("d", &headers("x", &[]), 0, "http://be", 1)
                .message,
            format!("transaction {} hasn't send any data yet", 1000)
        );
        s.txn_begin("d", &headers("y", &[]), 0, 2);
        load(&mut s, "y", r#"{"id":5,"v":1}"#, 2);
        assert_eq!(s.fe_txn("commit", "d", "y", 3), FeTxn::Redirect(Some(0)));
        let r = s.txn_commit_be("d", &headers("y", &[]), 0, "http://be", &[], 3);
        assert_eq!(r.status, "OK");
        assert_eq!(s.load_state("d", "y"), Some("VISIBLE"));
        assert_eq!(s.rows("d", "t").unwrap(), vec![json!({"id": 5, "v": 1})]);
    }
}
