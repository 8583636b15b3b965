//! Classification of StarRocks replies (spec §2.3, §4.3, §8.2): what the client does with a
//! stream-load response, a transport failure, a label state or a transaction-API response,
//! and the retry backoff. Pure: bytes and values in, decisions out.

use std::time::Duration;

use serde_json::Value;

use super::{AckKind, LabelState};

/// What came back from one send of a load (after redirects were followed).
#[derive(Debug, Clone, Copy)]
pub enum Reply<'a> {
    /// A final (non-307) HTTP response.
    Response { status: u16, body: &'a [u8] },
    /// No usable response: connect, write or read failure, or timeout. `body_sent`: some
    /// of the body was written, so the server may have committed it (ambiguous).
    Transport { body_sent: bool, message: &'a str },
}

/// Why a load cannot succeed by retrying it unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    Auth(String),
    Config(String),
    Data {
        message: String,
        error_url: Option<String>,
    },
    TooLarge(String),
    Rejected(String),
}

/// What to do after one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Committed: acknowledge the batch.
    Ack {
        kind: AckKind,
        txn_id: Option<i64>,
        rows_loaded: u64,
    },
    /// The outcome is unknown or another attempt holds the label: ask `get_load_state`
    /// and act on [`after_poll`]. `label_conflict` counts as a label conflict.
    Poll {
        reason: String,
        label_conflict: bool,
    },
    /// Transient failure: back off and resend the same body under the same label.
    Retry { reason: String },
    /// Non-retryable.
    Stop(Stop),
}

/// What a failure message means (StarRocks messages are matched case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageClass {
    Auth,
    Config,
    TooLarge,
    Data,
    /// `Label [..] has already been used.` (the #57982 `Fail` form).
    LabelUsed,
    /// The txn may or may not have committed (commit unknown, timeouts).
    Ambiguous,
    Retryable,
    Unknown,
}

const AUTH: &[&str] = &[
    "access denied",
    "no valid basic authorization",
    "need auth information",
];
const CONFIG: &[&str] = &[
    "there is no 100-continue header",
    "no database selected",
    "no table selected",
    "unknown database",
    "unknown table",
    "unknown column",
    "does not exist",
    "only primary key table support partial update",
    "unknown data format",
    "partial update and condition update",
    "partial update requires",
    "empty label",
    "label format",
    "not supported",
    "request database",
    "must provide channel_id",
    "unknown transaction operation",
];
const TOO_LARGE: &[&str] = &["exceed the max size", "exceed limit"];
const DATA: &[&str] = &[
    "too many filtered rows",
    "primary key size exceed the limit",
    "parse error",
    "is not an array-object",
    "is not an object",
    "data quality",
];
const AMBIGUOUS: &[&str] = &["transaction status unknown", "timeout", "timed out"];
const RETRYABLE: &[&str] = &[
    "too many versions",
    "too large compaction score",
    "current running txns on db",
    "cuncurrent limit",
    "concurrent limit",
    "txn num per be exceeds limit",
    "service is shutting down",
    "mem_limit_exceeded",
    "memory limit",
    "memory exceed",
    "no backend alive",
    "no backend or compute node alive",
    "rpc",
    "network",
    "connection",
    "receive body don't equal",
    "transaction in processing",
    "please retry",
    "try again",
];

/// Classifies a failure message. Order matters: `Invalid timeout format` is a
/// configuration error, not a timeout; size checks mention `data`.
pub fn classify_message(message: &str) -> MessageClass {
    let m = message.to_ascii_lowercase();
    let any = |list: &[&str]| list.iter().any(|p| m.contains(p));
    if m.contains("has already been used") {
        MessageClass::LabelUsed
    } else if any(AUTH) {
        MessageClass::Auth
    } else if m.contains("invalid ") && m.contains(" format") || any(CONFIG) {
        MessageClass::Config
    } else if any(TOO_LARGE) {
        MessageClass::TooLarge
    } else if any(DATA) {
        MessageClass::Data
    } else if any(AMBIGUOUS) {
        MessageClass::Ambiguous
    } else if any(RETRYABLE) {
        MessageClass::Retryable
    } else {
        MessageClass::Unknown
    }
}

/// A string field under any of `names` (FE bodies use `Status`/`Message` or
/// `status`/`msg`/`message`).
fn text<'a>(v: &'a Value, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| v.get(*n)?.as_str())
}

fn int(v: &Value, name: &str) -> Option<i64> {
    v.get(name)?.as_i64()
}

/// The action for a failure message (`Fail`, `FAILED`, or a non-OK transaction status).
fn failure(message: &str, error_url: Option<String>) -> Action {
    let m = message.to_string();
    match classify_message(message) {
        MessageClass::Auth => Action::Stop(Stop::Auth(m)),
        MessageClass::Config => Action::Stop(Stop::Config(m)),
        MessageClass::TooLarge => Action::Stop(Stop::TooLarge(m)),
        MessageClass::Data => Action::Stop(Stop::Data {
            message: m,
            error_url,
        }),
        MessageClass::LabelUsed => Action::Poll {
            reason: m,
            label_conflict: true,
        },
        MessageClass::Ambiguous => Action::Poll {
            reason: m,
            label_conflict: false,
        },
        MessageClass::Retryable => Action::Retry { reason: m },
        MessageClass::Unknown => Action::Stop(Stop::Rejected(m)),
    }
}

/// Classifies one send of a plain Stream Load (§8.2 table). The JSON body is parsed
/// whatever the HTTP status; success is never inferred from HTTP 200.
pub fn classify(reply: Reply<'_>) -> Action {
    let (status, body) = match reply {
        Reply::Transport {
            body_sent: true,
            message,
        } => {
            return Action::Poll {
                reason: format!("transport error after the body was sent: {message}"),
                label_conflict: false,
            };
        }
        Reply::Transport {
            body_sent: false,
            message,
        } => {
            return Action::Retry {
                reason: format!("transport error before the body was sent: {message}"),
            };
        }
        Reply::Response { status, body } => (status, body),
    };
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let message = json
        .as_ref()
        .and_then(|v| text(v, &["Message", "msg", "message"]))
        .unwrap_or("")
        .to_string();
    match status {
        401 => {
            let m = if message.is_empty() {
                "HTTP 401 Unauthorized".to_string()
            } else {
                message
            };
            return Action::Stop(Stop::Auth(m));
        }
        404 => return Action::Stop(Stop::Config(format!("HTTP 404 Not Found: {message}"))),
        413 => return Action::Stop(Stop::TooLarge(format!("HTTP 413: {message}"))),
        400..=499 => {
            return Action::Stop(Stop::Rejected(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )));
        }
        500..=599 => {
            return Action::Retry {
                reason: format!("HTTP {status}"),
            };
        }
        _ => {}
    }
    let Some(json) = json else {
        // A 200 without the JSON body (proxy, truncated reply): outcome unknown.
        return Action::Poll {
            reason: format!("unparseable response (HTTP {status})"),
            label_conflict: false,
        };
    };
    let txn_id = int(&json, "TxnId").filter(|id| *id >= 0);
    let rows_loaded = int(&json, "NumberLoadedRows").unwrap_or(0).max(0) as u64;
    let error_url = text(&json, &["ErrorURL"]).map(str::to_string);
    match text(&json, &["Status", "status"]).unwrap_or("") {
        "Success" | "OK" => Action::Ack {
            kind: AckKind::Loaded,
            txn_id,
            rows_loaded,
        },
        "Publish Timeout" => Action::Ack {
            kind: AckKind::PublishTimeout,
            txn_id,
            rows_loaded,
        },
        "Label Already Exists" => match text(&json, &["ExistingJobStatus"]) {
            Some("FINISHED") => Action::Ack {
                kind: AckKind::AlreadyLoaded,
                txn_id: None,
                rows_loaded: 0,
            },
            _ => Action::Poll {
                reason: message,
                label_conflict: true,
            },
        },
        s if s.eq_ignore_ascii_case("fail") || s.eq_ignore_ascii_case("failed") => {
            failure(&message, error_url)
        }
        other => Action::Stop(Stop::Rejected(format!(
            "unexpected status {other:?}: {message}"
        ))),
    }
}

/// What a label state means for a load whose outcome is unknown (§8.2, §8.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollAction {
    /// `VISIBLE`/`COMMITTED`: acknowledge.
    Ack,
    /// `PREPARE`/`PREPARED`: an attempt is still running; poll again.
    Wait,
    /// `ABORTED`/`UNKNOWN`: nothing committed (or evicted: PK upsert absorbs the
    /// replay); resend the same body under the same label.
    Resend,
}

pub fn after_poll(state: LabelState) -> PollAction {
    match state {
        LabelState::Visible | LabelState::Committed => PollAction::Ack,
        LabelState::Prepare | LabelState::Prepared => PollAction::Wait,
        LabelState::Aborted | LabelState::Unknown => PollAction::Resend,
    }
}

/// Parses a `get_load_state` body: `Ok(state)`, or `Err(action)` for a FAILED reply.
pub fn parse_load_state(status: u16, body: &[u8]) -> Result<LabelState, Action> {
    if status == 401 {
        return Err(classify(Reply::Response { status, body }));
    }
    let json: Value = serde_json::from_slice(body).map_err(|_| Action::Retry {
        reason: format!("unparseable get_load_state response (HTTP {status})"),
    })?;
    if let Some(state) = json.get("state").and_then(Value::as_str) {
        return Ok(LabelState::parse(state));
    }
    let message = text(&json, &["msg", "message", "Message"]).unwrap_or("");
    Err(failure(message, None))
}

/// A transaction-API response (§4.3): TStatusCode-named `Status` plus per-op fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnResponse {
    pub status: String,
    pub message: String,
    pub txn_id: Option<i64>,
    pub label: Option<String>,
    pub existing_job_status: Option<String>,
    pub rows_total: u64,
    pub rows_loaded: u64,
    pub rows_filtered: u64,
    pub load_bytes: u64,
    pub error_url: Option<String>,
}

/// What to do with a transaction-API response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnAction {
    Ok(TxnResponse),
    /// `LABEL_ALREADY_EXISTS` on begin, with `ExistingJobStatus`.
    LabelInUse {
        existing: String,
    },
    /// `TXN_NOT_EXISTS` (aborted, or a lost earlier reply): check the label state.
    NotExists(String),
    /// Transient (`TXN_IN_PROCESSING`, retryable message, transport before sending).
    Retry(String),
    /// Transport failure after the body was sent, or ambiguous message: check the state.
    Ambiguous(String),
    Stop(Stop),
}

/// Classifies one transaction-API call.
pub fn classify_txn(reply: Reply<'_>) -> TxnAction {
    let (status, body) = match reply {
        Reply::Transport {
            body_sent: true,
            message,
        } => return TxnAction::Ambiguous(message.to_string()),
        Reply::Transport {
            body_sent: false,
            message,
        } => return TxnAction::Retry(message.to_string()),
        Reply::Response { status, body } => (status, body),
    };
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return match classify(Reply::Response { status, body }) {
            Action::Stop(stop) => TxnAction::Stop(stop),
            Action::Retry { reason } => TxnAction::Retry(reason),
            other => TxnAction::Ambiguous(format!("{other:?}")),
        };
    };
    let message = text(&json, &["Message", "msg", "message"])
        .unwrap_or("")
        .to_string();
    if status == 401 {
        return TxnAction::Stop(Stop::Auth(message));
    }
    let count = |name| int(&json, name).unwrap_or(0).max(0) as u64;
    let response = TxnResponse {
        status: text(&json, &["Status", "status"]).unwrap_or("").to_string(),
        message: message.clone(),
        txn_id: int(&json, "TxnId"),
        label: text(&json, &["Label"]).map(str::to_string),
        existing_job_status: text(&json, &["ExistingJobStatus"]).map(str::to_string),
        rows_total: count("NumberTotalRows"),
        rows_loaded: count("NumberLoadedRows"),
        rows_filtered: count("NumberFilteredRows"),
        load_bytes: count("LoadBytes"),
        error_url: text(&json, &["ErrorURL"]).map(str::to_string),
    };
    match response.status.as_str() {
        "OK" | "Success" => TxnAction::Ok(response),
        "LABEL_ALREADY_EXISTS" | "Label Already Exists" => TxnAction::LabelInUse {
            existing: response
                .existing_job_status
                .unwrap_or_else(|| "RUNNING".into()),
        },
        "TXN_NOT_EXISTS" => TxnAction::NotExists(message),
        "TXN_IN_PROCESSING" => TxnAction::Retry(message),
        "PUBLISH_TIMEOUT" => TxnAction::Ok(response),
        "TIMEOUT" | "SERVICE_UNAVAILABLE" | "MEM_LIMIT_EXCEEDED" => TxnAction::Retry(message),
        _ => match failure(&message, response.error_url.clone()) {
            Action::Stop(stop) => TxnAction::Stop(stop),
            Action::Retry { reason } => TxnAction::Retry(reason),
            Action::Poll {
                label_conflict: true,
                ..
            } => TxnAction::LabelInUse {
                existing: "RUNNING".into(),
            },
            Action::Poll { reason, .. } => TxnAction::Ambiguous(reason),
            Action::Ack { .. } => TxnAction::Ok(response),
        },
    }
}

/// Exponential backoff with jitter: `initial · 2^n` capped at `max`, of which the upper
/// half is randomised (`jitter` ∈ [0, 1) supplied by the caller, so this stays pure).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            step: 0,
        }
    }

    /// The next delay; grows until the cap.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(self.step.min(30));
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        self.step = self.step.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    pub fn reset(&mut self) {
        self.step = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn response(v: Value) -> Action {
        let body = serde_json::to_vec_pretty(&v).unwrap();
        classify(Reply::Response {
            status: 200,
            body: &body,
        })
    }

    fn fail(message: &str) -> Action {
        response(json!({"TxnId": -1, "Label": "l", "Status": "Fail", "Message": message}))
    }

    fn is_retry(a: &Action) -> bool {
        matches!(a, Action::Retry { .. })
    }

    #[test]
    fn success_and_publish_timeout_ack() {
        assert_eq!(
            response(
                json!({"TxnId": 7, "Label": "l", "Status": "Success", "Message": "OK",
                "NumberLoadedRows": 3, "SomeFutureField": 1})
            ),
            Action::Ack {
                kind: AckKind::Loaded,
                txn_id: Some(7),
                rows_loaded: 3
            }
        );
        assert_eq!(
            response(json!({"TxnId": 8, "Status": "Publish Timeout",
                "Message": "Publish timeout. The data will be visible after a while"})),
            Action::Ack {
                kind: AckKind::PublishTimeout,
                txn_id: Some(8),
                rows_loaded: 0
            }
        );
    }

    #[test]
    fn label_already_exists_forms() {
        let finished = response(json!({"TxnId": -1, "Status": "Label Already Exists",
            "ExistingJobStatus": "FINISHED", "Message": "Label [l] has already been used."}));
        assert_eq!(
            finished,
            Action::Ack {
                kind: AckKind::AlreadyLoaded,
                txn_id: None,
                rows_loaded: 0
            }
        );
        let running = response(json!({"TxnId": -1, "Status": "Label Already Exists",
            "ExistingJobStatus": "RUNNING", "Message": "Label [l] has already been used."}));
        assert!(matches!(
            running,
            Action::Poll {
                label_conflict: true,
                ..
            }
        ));
        // StarRocks#57982: Fail + "has already been used", no ExistingJobStatus.
        assert!(matches!(
            fail("Label [l] has already been used."),
            Action::Poll {
                label_conflict: true,
                ..
            }
        ));
    }

    #[test]
    fn retryable_messages() {
        for m in [
            "Failed to load data into tablet 1, because of too many versions, current/limit: 1000/1000.",
            "Failed to load data into partition p, because of too large compaction score, current/limit: 3000/2000.",
            "current running txns on db 11027 is 100, larger than limit 100",
            "Stream Load exceed http cuncurrent limit 47, please try again later",
            "streamload txn num per be exceeds limit 10",
            "Service is shutting down, please retry later!",
            "MEM_LIMIT_EXCEEDED: memory limit exceeded",
            "class com.starrocks.common.DdlException: No backend alive.",
            "receive body don't equal with body bytes, body_bytes=10, receive_bytes=5",
        ] {
            assert!(is_retry(&fail(m)), "{m}");
        }
    }

    #[test]
    fn ambiguous_messages_poll_first() {
        for m in [
            "Commit transaction fail cause RPC timeout, Transaction status unknown, you can retry with same label.",
            "transaction is aborted by timeout.",
            "timeout by txn manager",
        ] {
            assert!(
                matches!(
                    fail(m),
                    Action::Poll {
                        label_conflict: false,
                        ..
                    }
                ),
                "{m}"
            );
        }
    }

    #[test]
    fn non_retryable_messages() {
        let data = response(
            json!({"TxnId": 5, "Status": "Fail", "Message": "too many filtered rows",
            "ErrorURL": "http://be:8040/api/_load_error_log?file=e1"}),
        );
        assert_eq!(
            data,
            Action::Stop(Stop::Data {
                message: "too many filtered rows".into(),
                error_url: Some("http://be:8040/api/_load_error_log?file=e1".into())
            })
        );
        for m in [
            "primary key size exceed the limit",
            "JSON data parse error: expected value",
        ] {
            assert!(matches!(fail(m), Action::Stop(Stop::Data { .. })), "{m}");
        }
        for m in [
            "Only primary key table support partial update",
            "unknown table, table=d.t",
            "Unknown column 'x' in table",
            "unknown data format, format=xml",
            "Invalid timeout format",
            "Invalid strict mode format. Must be bool type",
        ] {
            assert!(matches!(fail(m), Action::Stop(Stop::Config(_))), "{m}");
        }
        for m in [
            "Access denied; you need (at least one of) the INSERT privilege(s)",
            "no valid Basic authorization",
        ] {
            assert!(matches!(fail(m), Action::Stop(Stop::Auth(_))), "{m}");
        }
        for m in [
            "body size 2000000 exceed limit: 1048576, load_id: 0.",
            "The size of this batch exceed the max size [104857600]  of json type data  data [ 200000000 ]. Set ignore_json_size to skip the check",
        ] {
            assert!(matches!(fail(m), Action::Stop(Stop::TooLarge(_))), "{m}");
        }
        assert!(matches!(
            fail("something nobody has seen"),
            Action::Stop(Stop::Rejected(_))
        ));
    }

    #[test]
    fn fe_failures_before_redirect() {
        let expect = response(json!({"Status": "FAILED",
            "Message": "class com.starrocks.common.DdlException: There is no 100-continue header"}));
        assert!(matches!(expect, Action::Stop(Stop::Config(_))));
        let no_be = response(
            json!({"Status": "FAILED", "Message": "class com.starrocks.common.DdlException: No backend alive."}),
        );
        assert!(is_retry(&no_be));
        let body = br#"{"status":"FAILED","code":"1","msg":"Need auth information.","message":"Need auth information."}"#;
        assert_eq!(
            classify(Reply::Response { status: 401, body }),
            Action::Stop(Stop::Auth("Need auth information.".into()))
        );
        assert!(is_retry(&classify(Reply::Response {
            status: 500,
            body: b"Internal Server Error"
        })));
        assert!(matches!(
            classify(Reply::Response {
                status: 404,
                body: b"Not Found"
            }),
            Action::Stop(Stop::Config(_))
        ));
    }

    #[test]
    fn transport_errors() {
        assert!(matches!(
            classify(Reply::Transport {
                body_sent: true,
                message: "connection reset"
            }),
            Action::Poll {
                label_conflict: false,
                ..
            }
        ));
        assert!(is_retry(&classify(Reply::Transport {
            body_sent: false,
            message: "connection refused"
        })));
        assert!(matches!(
            classify(Reply::Response {
                status: 200,
                body: b"<html>"
            }),
            Action::Poll { .. }
        ));
    }

    #[test]
    fn poll_outcomes() {
        assert_eq!(after_poll(LabelState::Visible), PollAction::Ack);
        assert_eq!(after_poll(LabelState::Committed), PollAction::Ack);
        assert_eq!(after_poll(LabelState::Prepare), PollAction::Wait);
        assert_eq!(after_poll(LabelState::Prepared), PollAction::Wait);
        assert_eq!(after_poll(LabelState::Aborted), PollAction::Resend);
        assert_eq!(after_poll(LabelState::Unknown), PollAction::Resend);
        assert_eq!(
            parse_load_state(
                200,
                br#"{"state":"VISIBLE","status":"OK","code":"0","msg":"Success","message":"OK"}"#
            ),
            Ok(LabelState::Visible)
        );
        assert!(matches!(
            parse_load_state(
                200,
                br#"{"status":"FAILED","code":"1","msg":"unknown database, database=x"}"#
            ),
            Err(Action::Stop(Stop::Config(_)))
        ));
    }

    #[test]
    fn txn_statuses() {
        let ok =
            br#"{"Status": "OK", "Message": "", "Label": "l", "TxnId": 9, "BeginTxnTimeMs": 0}"#;
        match classify_txn(Reply::Response {
            status: 200,
            body: ok,
        }) {
            TxnAction::Ok(r) => assert_eq!(r.txn_id, Some(9)),
            other => panic!("{other:?}"),
        }
        let dup = br#"{"Status": "LABEL_ALREADY_EXISTS", "ExistingJobStatus": "FINISHED", "Message": "Label [l] has already been used."}"#;
        assert_eq!(
            classify_txn(Reply::Response {
                status: 200,
                body: dup
            }),
            TxnAction::LabelInUse {
                existing: "FINISHED".into()
            }
        );
        let busy = br#"{"Status": "TXN_IN_PROCESSING", "Message": "Transaction in processing, please retry later", "Label": "l"}"#;
        assert!(matches!(
            classify_txn(Reply::Response {
                status: 200,
                body: busy
            }),
            TxnAction::Retry(_)
        ));
        let gone =
            br#"{"Status": "TXN_NOT_EXISTS", "Message": "Transaction with label l not exists"}"#;
        assert!(matches!(
            classify_txn(Reply::Response {
                status: 200,
                body: gone
            }),
            TxnAction::NotExists(_)
        ));
        let aborted = br#"{"Status":"FAILED","Message":"class com.starrocks.common.StarRocksException: Can not commit ABORTED transaction 5, label is l"}"#;
        assert!(matches!(
            classify_txn(Reply::Response {
                status: 200,
                body: aborted
            }),
            TxnAction::Stop(Stop::Rejected(_))
        ));
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.next_delay(0.0), Duration::from_millis(50));
        assert_eq!(
            b.next_delay(0.999_999),
            Duration::from_millis(200) - Duration::from_nanos(100)
        );
        let later: Vec<Duration> = (0..10).map(|_| b.next_delay(1.0)).collect();
        assert!(later.iter().all(|d| *d <= Duration::from_secs(1)));
        assert_eq!(*later.last().unwrap(), Duration::from_secs(1));
        b.reset();
        assert_eq!(b.next_delay(1.0), Duration::from_millis(100));
    }
}
