//! Acceptance tests of the relay's Stream Load client (`firn_ingest::stream_load`) against
//! the fake StarRocks (`firn_tests::stream_load`), spec §9.6 tests 1–6, 8, 11–15 (7, 9 and
//! 10 need the relay loop and live with it).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use firn_catalog::config::Secret;
use firn_ingest::stream_load::{
    AckKind, BodyFormat, LabelState, LoadRequest, OffsetRange, StreamLoadClient,
    StreamLoadClientConfig, StreamLoadError, batch_label,
};
use firn_tests::stream_load::{
    Fault, FaultRule, LabelConflictMode, RequestRecord, StreamLoadConfig, StreamLoadServer,
    TableSchema, TxnState,
};
use serde_json::{Value, json};
use tokio::sync::watch;

const DB: &str = "gold_hot";
const TABLE: &str = "orders";

async fn start(config: StreamLoadConfig) -> StreamLoadServer {
    let server = StreamLoadServer::start(config)
        .await
        .expect("start the fake StarRocks");
    let schema: TableSchema = serde_json::from_value(json!({
        "columns": [
            {"name": "tenant", "type": "bigint", "nullable": false},
            {"name": "order_id", "type": "bigint", "nullable": false},
            {"name": "amount", "type": "double"},
            {"name": "ver", "type": "bigint", "nullable": false}
        ],
        "key": ["tenant", "order_id"]
    }))
    .unwrap();
    server.create_table(DB, TABLE, schema).unwrap();
    server
}

async fn server() -> StreamLoadServer {
    start(StreamLoadConfig::default()).await
}

fn config(fe_url: String) -> StreamLoadClientConfig {
    StreamLoadClientConfig {
        fe_urls: vec![fe_url],
        database: DB.into(),
        user: "root".into(),
        password: Some(Secret::new("")),
        timeout: Duration::from_secs(5),
        max_backoff: Duration::from_millis(200),
        max_attempts: Some(20),
        ..StreamLoadClientConfig::default()
    }
}

fn client(server: &StreamLoadServer) -> StreamLoadClient {
    StreamLoadClient::new(config(server.fe_url())).unwrap()
}

fn label(first: i64, last: i64) -> String {
    batch_label(
        TABLE,
        &[OffsetRange {
            topic: "cdc_orders".into(),
            partition: 0,
            first,
            last,
        }],
    )
}

fn row(tenant: i64, order_id: i64, amount: f64, ver: i64) -> Value {
    json!({"tenant": tenant, "order_id": order_id, "amount": amount, "ver": ver})
}

fn json_lines(rows: &[Value]) -> Bytes {
    let mut body = String::new();
    for r in rows {
        body.push_str(&r.to_string());
        body.push('\n');
    }
    Bytes::from(body)
}

fn request(label: &str, rows: &[Value]) -> LoadRequest {
    LoadRequest {
        table: TABLE.into(),
        label: label.into(),
        body: json_lines(rows),
        format: BodyFormat::JsonLines,
        columns: None,
        merge_condition: Some("ver".into()),
        partial_update: false,
    }
}

/// A cancel receiver whose sender stays alive for the test.
fn never_cancelled() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

fn requests_for<'a>(
    log: &'a [RequestRecord],
    listener: &str,
    label: &str,
) -> Vec<&'a RequestRecord> {
    log.iter()
        .filter(|r| r.listener == listener && r.label.as_deref() == Some(label))
        .collect()
}

fn txns_of(server: &StreamLoadServer, label: &str) -> Vec<TxnState> {
    server
        .labels()
        .into_iter()
        .filter(|t| t.label == label)
        .map(|t| t.state)
        .collect()
}

/// 1. Happy path via the FE: 307 followed, auth re-sent, 100-continue honoured, Success.
#[tokio::test]
async fn happy_path_through_the_fe() {
    let server = server().await;
    let client = client(&server);
    let l = label(0, 1);
    let rows = [row(1, 10, 5.5, 1), row(1, 11, 7.0, 1)];
    let req = request(&l, &rows);
    let (_tx, mut cancel) = never_cancelled();
    let ack = client.load(&req, &mut cancel).await.unwrap();
    assert_eq!(ack.kind, AckKind::Loaded);
    assert_eq!(ack.label, l);
    assert_eq!(ack.rows_loaded, 2);
    assert_eq!(ack.attempts, 1);
    assert_eq!(ack.bytes, req.body.len() as u64);
    assert!(ack.txn_id.is_some_and(|id| id > 0));
    assert_eq!(server.rows(DB, TABLE).unwrap(), rows.to_vec());
    let log = server.requests();
    let fe = requests_for(&log, "fe", &l);
    assert_eq!(fe.len(), 1);
    assert_eq!(fe[0].status, Some(307));
    assert!(!fe[0].body_read, "the FE never reads the body");
    assert_eq!(
        fe[0].headers.get("expect").map(String::as_str),
        Some("100-continue")
    );
    let be = requests_for(&log, "be0", &l);
    assert_eq!(be.len(), 1);
    assert_eq!(be[0].status, Some(200));
    assert!(be[0].body_read);
    assert_eq!(be[0].body_bytes, req.body.len() as u64);
    assert_eq!(
        be[0].headers.get("expect").map(String::as_str),
        Some("100-continue")
    );
    // Credentials were re-sent on the redirect (the log redacts them).
    assert_eq!(
        be[0].headers.get("authorization").map(String::as_str),
        Some("<redacted>")
    );
    assert_eq!(
        be[0].headers.get("merge_condition").map(String::as_str),
        Some("ver")
    );
    assert_eq!(client.load_state(&l).await.unwrap(), LabelState::Visible);
    assert_eq!(
        client.load_state("never-used").await.unwrap(),
        LabelState::Unknown
    );
}

/// 2. Missing auth ⇒ Auth error, one request, no retry storm; a server that does not see
///    `Expect: 100-continue` ⇒ Config error.
#[tokio::test]
async fn auth_and_expect_failures_are_fatal_without_retries() {
    let server = start(StreamLoadConfig {
        password: "s3cret".into(),
        ..StreamLoadConfig::default()
    })
    .await;
    let (_tx, mut cancel) = never_cancelled();
    let l = label(0, 0);
    let req = request(&l, &[row(1, 1, 1.0, 1)]);
    for password in [None, Some(Secret::new("wrong"))] {
        let no_auth = StreamLoadClient::new(StreamLoadClientConfig {
            password,
            ..config(server.fe_url())
        })
        .unwrap();
        let err = no_auth.load(&req, &mut cancel).await.unwrap_err();
        assert!(matches!(err, StreamLoadError::Auth { .. }), "{err:?}");
        assert!(!err.is_retryable());
        assert!(!err.to_string().contains("wrong"), "{err}");
    }
    let log = server.requests();
    let fe = requests_for(&log, "fe", &l);
    assert_eq!(fe.len(), 2, "one request per load, no retries: {fe:?}");
    assert!(fe.iter().all(|r| r.status == Some(401)));
    assert_eq!(server.attempts(&l), 0, "nothing reached a BE");

    // A proxy that strips `Expect`: the FE refuses the load; that is configuration.
    server.set_fault(FaultRule::always(Fault::StripExpect));
    let good = StreamLoadClient::new(StreamLoadClientConfig {
        password: Some(Secret::new("s3cret")),
        ..config(server.fe_url())
    })
    .unwrap();
    let err = good.load(&req, &mut cancel).await.unwrap_err();
    match &err {
        StreamLoadError::Config { message } => {
            assert!(
                message.contains("There is no 100-continue header"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(requests_for(&server.requests(), "fe", &l).len(), 3);
    server.clear_faults();
    assert_eq!(
        good.load(&req, &mut cancel).await.unwrap().kind,
        AckKind::Loaded
    );
}

/// 3. Lost response after commit ⇒ the label state says VISIBLE ⇒ acked; a replay of the
///    batch (same label) ⇒ `Label Already Exists`/`FINISHED` ⇒ exactly one copy.
#[tokio::test]
async fn lost_response_after_commit_loads_exactly_once() {
    let server = server().await;
    let client = client(&server);
    let (_tx, mut cancel) = never_cancelled();
    let l = label(100, 101);
    let rows = [row(2, 1, 1.0, 1), row(2, 2, 2.0, 1)];
    server.set_fault(FaultRule {
        label: Some(l.clone()),
        ..FaultRule::times(Fault::LostResponse, 1)
    });
    let ack = client.load(&request(&l, &rows), &mut cancel).await.unwrap();
    assert_eq!(ack.kind, AckKind::AlreadyLoaded);
    assert_eq!(ack.attempts, 1, "resolved by polling, not by resending");
    assert_eq!(server.attempts(&l), 1);
    // The relay restarts and replays the same offsets: same label, deduplicated.
    let restarted = StreamLoadClient::new(config(server.fe_url())).unwrap();
    let replay = restarted
        .load(&request(&l, &rows), &mut cancel)
        .await
        .unwrap();
    assert_eq!(replay.kind, AckKind::AlreadyLoaded);
    assert_eq!(replay.label_conflicts, 1);
    assert_eq!(server.attempts(&l), 2);
    assert_eq!(txns_of(&server, &l), vec![TxnState::Visible]);
    assert_eq!(server.rows(DB, TABLE).unwrap(), rows.to_vec());

    // Commit unknown: applied, reported as Fail ⇒ polled ⇒ acked without a resend.
    let l2 = label(102, 102);
    server.set_fault(FaultRule {
        label: Some(l2.clone()),
        ..FaultRule::times(Fault::CommitUnknown, 1)
    });
    let ack = client
        .load(&request(&l2, &[row(2, 3, 3.0, 1)]), &mut cancel)
        .await
        .unwrap();
    assert_eq!(ack.kind, AckKind::AlreadyLoaded);
    assert_eq!(server.attempts(&l2), 1);
    assert_eq!(txns_of(&server, &l2), vec![TxnState::Visible]);
    assert_eq!(server.rows(DB, TABLE).unwrap().len(), 3);
}

/// 4. The same with `label_conflict_mode = fail` (StarRocks#57982): `Fail` + "has already
///    been used" ⇒ label state ⇒ acked, one copy.
#[tokio::test]
async fn label_conflict_fail_form_is_a_dedup_hit() {
    let server = server().await;
    let mut limits = server.limits();
    limits.label_conflict_mode = LabelConflictMode::Fail;
    server.set_limits(limits);
    let client = client(&server);
    let (_tx, mut cancel) = never_cancelled();
    let l = label(200, 201);
    let rows = [row(3, 1, 1.0, 1)];
    server.set_fault(FaultRule {
        label: Some(l.clone()),
        ..FaultRule::times(Fault::LostResponse, 1)
    });
    let ack = client.load(&request(&l, &rows), &mut cancel).await.unwrap();
    assert_eq!(ack.kind, AckKind::AlreadyLoaded);
    let replay = client.load(&request(&l, &rows), &mut cancel).await.unwrap();
    assert_eq!(replay.kind, AckKind::AlreadyLoaded);
    assert_eq!(replay.label_conflicts, 1);
    assert_eq!(replay.attempts, 1);
    let be = requests_for(&server.requests(), "be0", &l).len();
    assert_eq!(be, 2);
    assert_eq!(txns_of(&server, &l), vec![TxnState::Visible]);
    assert_eq!(server.rows(DB, TABLE).unwrap(), rows.to_vec());
}

/// 5. `Publish Timeout` ⇒ acked once, never resent (with this or a new label).
#[tokio::test]
async fn publish_timeout_is_acked_once() {
    let server = server().await;
    let client = client(&server);
    let (_tx, mut cancel) = never_cancelled();
    let l = label(300, 300);
    server.set_fault(FaultRule::times(
        Fault::PublishTimeout {
            visible_after_ms: 300,
        },
        1,
    ));
    let ack = client
        .load(&request(&l, &[row(4, 1, 1.0, 1)]), &mut cancel)
        .await
        .unwrap();
    assert_eq!(ack.kind, AckKind::PublishTimeout);
    assert_eq!(ack.attempts, 1);
    assert_eq!(client.load_state(&l).await.unwrap(), LabelState::Committed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(client.load_state(&l).await.unwrap(), LabelState::Visible);
    assert_eq!(server.attempts(&l), 1);
    assert_eq!(server.labels().len(), 1, "no other label was used");
    assert_eq!(server.rows(DB, TABLE).unwrap().len(), 1);
}

/// 6. `too many versions` ⇒ backoff, same label and body, success after compaction.
#[tokio::test]
async fn too_many_versions_backs_off_under_the_same_label() {
    let server = server().await;
    let mut limits = server.limits();
    limits.tablet_max_versions = 2;
    server.set_limits(limits);
    let client = client(&server);
    let (_tx, mut cancel) = never_cancelled();
    client
        .load(&request(&label(0, 0), &[row(5, 1, 1.0, 1)]), &mut cancel)
        .await
        .unwrap();
    let l = label(1, 1);
    let req = request(&l, &[row(5, 2, 2.0, 1)]);
    let compactor = {
        let fe = server.fe_url();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            reqwest::Client::new()
                .post(format!("{fe}/__fake/compact"))
                .json(&json!({"db": DB, "table": TABLE}))
                .send()
                .await
                .unwrap();
        })
    };
    let ack = client.load(&req, &mut cancel).await.unwrap();
    compactor.await.unwrap();
    assert_eq!(ack.kind, AckKind::Loaded);
    assert!(ack.attempts >= 2, "{ack:?}");
    assert_eq!(server.attempts(&l), u64::from(ack.attempts));
    let be = requests_for(&server.requests(), "be0", &l)
        .into_iter()
        .map(|r| r.body_bytes)
        .collect::<Vec<_>>();
    assert!(be.iter().all(|b| *b == req.body.len() as u64), "{be:?}");
    let states = txns_of(&server, &l);
    assert_eq!(states.last(), Some(&TxnState::Visible));
    assert!(
        states[..states.len() - 1]
            .iter()
            .all(|s| *s == TxnState::Aborted)
    );
    assert_eq!(server.rows(DB, TABLE).unwrap().len(), 2);
}

/// 8. `too many filtered rows` ⇒ Data error with the ErrorURL content, no retry.
#[tokio::test]
async fn filtered_rows_are_a_data_error_with_the_error_log() {
    let server = server().await;
    let client = client(&server);
    let (_tx, mut cancel) = never_cancelled();
    let l = label(400, 402);
    let rows = [
        row(6, 1, 1.0, 1),
        json!({"tenant": 6, "order_id": null, "amount": 2.0, "ver": 1}),
        row(6, 3, 3.0, 1),
    ];
    let err = client
        .load(&request(&l, &rows), &mut cancel)
        .await
        .unwrap_err();
    match &err {
        StreamLoadError::Data {
            label,
            message,
            error_url,
            error_log,
        } => {
            assert_eq!(label, &l);
            assert_eq!(message, "too many filtered rows");
            assert!(
                error_url
                    .as_deref()
                    .is_some_and(|u| u.contains("_load_error_log"))
            );
            let log = error_log.as_deref().unwrap();
            assert!(
                log.contains("NULL value in non-nullable column 'order_id'"),
                "{log}"
            );
            assert!(log.contains(r#""order_id":null"#), "{log}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(server.attempts(&l), 1);
    assert!(server.rows(DB, TABLE).unwrap().is_empty());
    assert_eq!(txns_of(&server, &l), vec![TxnState::Aborted]);
}

/// 11. `merge_condition`: an older version arriving after a newer one does not overwrite.
#[tokio::test]
async fn merge_condition_keeps_the_newest_version() {
    let server = server().await;
    let client = client(&server);
    let (_tx, mut cancel) = never_cancelled();
    client
        .load(&request(&label(0, 0), &[row(7, 1, 50.0, 5)]), &mut cancel)
        .await
        .unwrap();
    client
        .load(
            &request(&label(1, 2), &[row(7, 1, 30.0, 3), row(7, 2, 1.0, 1)]),
            &mut cancel,
        )
        .await
        .unwrap();
    client
        .load(&request(&label(3, 3), &[row(7, 2, 9.0, 2)]), &mut cancel)
        .await
        .unwrap();
    assert_eq!(
        server.rows(DB, TABLE).unwrap(),
        vec![row(7, 1, 50.0, 5), row(7, 2, 9.0, 2)]
    );
}

/// 12. Delete via `__op`; a mixed upsert/delete batch applies in order (JSON and CSV).
#[tokio::test]
async fn op_deletes_apply_in_batch_order() {
    let server = server().await;
    let client = client(&server);
    let (_tx, mut cancel) = never_cancelled();
    let with_op = |r: Value, op: i64| {
        let mut r = r;
        r["__op"] = json!(op);
        r
    };
    let batch = [
        with_op(row(8, 1, 1.0, 1), 0),
        with_op(row(8, 2, 2.0, 1), 0),
        with_op(row(8, 1, 1.0, 2), 1),
        with_op(row(8, 3, 3.0, 1), 0),
        with_op(row(8, 2, 2.0, 2), 1),
        with_op(row(8, 2, 22.0, 3), 0),
    ];
    let mut req = request(&label(0, 5), &batch);
    req.merge_condition = None;
    client.load(&req, &mut cancel).await.unwrap();
    assert_eq!(
        server.rows(DB, TABLE).unwrap(),
        vec![row(8, 2, 22.0, 3), row(8, 3, 3.0, 1)]
    );
    // CSV with the op as a named column, tab-separated.
    let csv = LoadRequest {
        table: TABLE.into(),
        label: label(6, 7),
        body: Bytes::from("8\t3\t3.0\t2\t1\n8\t4\t4.0\t1\t0\n"),
        format: BodyFormat::Csv {
            column_separator: "\t".into(),
            row_delimiter: "\n".into(),
        },
        columns: Some("tenant,order_id,amount,ver,__op".into()),
        merge_condition: None,
        partial_update: false,
    };
    let ack = client.load(&csv, &mut cancel).await.unwrap();
    assert_eq!(ack.rows_loaded, 2);
    assert_eq!(
        server.rows(DB, TABLE).unwrap(),
        vec![row(8, 2, 22.0, 3), row(8, 4, 4.0, 1)]
    );
}

/// 13. Transaction Stream Load: begin/load/prepare/commit; after a crash following
///     prepare, a new client recommits (or rolls back) by label.
#[tokio::test]
async fn transaction_two_phase_commit_and_recovery() {
    let server = server().await;
    let client = client(&server);
    let txn_request = |label: &str, rows: &[Value]| LoadRequest {
        merge_condition: None,
        ..request(label, rows)
    };
    // Straight 2PC.
    let l = label(500, 503);
    let begun = client.txn_begin(TABLE, &l).await.unwrap();
    assert!(begun.txn_id.is_some());
    client
        .txn_load(&txn_request(&l, &[row(9, 1, 1.0, 1), row(9, 2, 2.0, 1)]))
        .await
        .unwrap();
    let loaded = client
        .txn_load(&txn_request(&l, &[row(9, 3, 3.0, 1)]))
        .await
        .unwrap();
    assert!(loaded.load_bytes > 0);
    let prepared = client.txn_prepare(&l).await.unwrap();
    assert_eq!(prepared.rows_loaded, 3);
    assert!(!prepared.already);
    assert_eq!(client.load_state(&l).await.unwrap(), LabelState::Prepared);
    assert!(
        server.rows(DB, TABLE).unwrap().is_empty(),
        "not visible before commit"
    );
    let committed = client.txn_commit(&l).await.unwrap();
    assert!(!committed.already);
    assert_eq!(server.rows(DB, TABLE).unwrap().len(), 3);
    assert!(
        client.txn_commit(&l).await.unwrap().already,
        "re-commit is idempotent"
    );
    let err = client.txn_begin(TABLE, &l).await.unwrap_err();
    assert!(
        matches!(err, StreamLoadError::LabelInUse { ref existing, .. } if existing == "FINISHED"),
        "{err:?}"
    );

    // Crash after prepare, recovery recommits.
    let l2 = label(504, 504);
    client.txn_begin(TABLE, &l2).await.unwrap();
    client
        .txn_load(&txn_request(&l2, &[row(9, 4, 4.0, 1)]))
        .await
        .unwrap();
    client.txn_prepare(&l2).await.unwrap();
    drop(client);
    let recovered = StreamLoadClient::new(config(server.fe_url())).unwrap();
    assert_eq!(
        recovered.load_state(&l2).await.unwrap(),
        LabelState::Prepared
    );
    // A retried prepare whose first reply was lost is recognised.
    assert!(recovered.txn_prepare(&l2).await.unwrap().already);
    recovered.txn_commit(&l2).await.unwrap();
    assert_eq!(server.rows(DB, TABLE).unwrap().len(), 4);

    // Crash after prepare, recovery rolls back: nothing visible, label reusable.
    let l3 = label(505, 505);
    recovered.txn_begin(TABLE, &l3).await.unwrap();
    recovered
        .txn_load(&txn_request(&l3, &[row(9, 5, 5.0, 1)]))
        .await
        .unwrap();
    recovered.txn_prepare(&l3).await.unwrap();
    recovered.txn_rollback(&l3).await.unwrap();
    recovered.txn_rollback(&l3).await.unwrap();
    assert_eq!(
        recovered.load_state(&l3).await.unwrap(),
        LabelState::Aborted
    );
    assert_eq!(server.rows(DB, TABLE).unwrap().len(), 4);
    let err = recovered.txn_commit(&l3).await.unwrap_err();
    assert!(matches!(err, StreamLoadError::Rejected { .. }), "{err:?}");

    // Commit whose reply is lost: the label state shows it committed.
    let l4 = label(506, 506);
    recovered.txn_begin(TABLE, &l4).await.unwrap();
    recovered
        .txn_load(&txn_request(&l4, &[row(9, 6, 6.0, 1)]))
        .await
        .unwrap();
    recovered.txn_prepare(&l4).await.unwrap();
    server.set_fault(FaultRule {
        label: Some(l4.clone()),
        ..FaultRule::times(Fault::LostResponse, 1)
    });
    assert!(recovered.txn_commit(&l4).await.unwrap().already);
    assert_eq!(server.rows(DB, TABLE).unwrap().len(), 5);

    // A bad body in a txn load rolls the txn back (auto-rollback).
    let l5 = label(507, 507);
    recovered.txn_begin(TABLE, &l5).await.unwrap();
    let mut bad = txn_request(&l5, &[]);
    bad.body = Bytes::from_static(b"{not json");
    let err = recovered.txn_load(&bad).await.unwrap_err();
    assert!(matches!(err, StreamLoadError::Data { .. }), "{err:?}");
    assert_eq!(
        recovered.load_state(&l5).await.unwrap(),
        LabelState::Aborted
    );
}

/// 14. Unreachable advertised BE host ⇒ the rewrite map works; a follower FE ⇒ double
///     redirect (follower → leader → BE) for the transaction API.
#[tokio::test]
async fn host_rewrite_and_follower_double_redirect() {
    let server = start(StreamLoadConfig {
        advertised_be_host: Some("127.0.0.2".into()),
        follower_fe_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..StreamLoadConfig::default()
    })
    .await;
    let be = server.be_addrs()[0];
    let (_tx, mut cancel) = never_cancelled();
    // Without the rewrite map the advertised address is refused (127.0.0.2 is not bound).
    let lost = StreamLoadClient::new(StreamLoadClientConfig {
        max_attempts: Some(2),
        ..config(server.fe_url())
    })
    .unwrap();
    let l = label(600, 600);
    let err = lost
        .load(&request(&l, &[row(10, 1, 1.0, 1)]), &mut cancel)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(server.rows(DB, TABLE).unwrap().is_empty());
    let rewrite: BTreeMap<String, String> =
        [(format!("127.0.0.2:{}", be.port()), be.to_string())].into();
    let client = StreamLoadClient::new(StreamLoadClientConfig {
        host_rewrite: rewrite.clone(),
        ..config(server.fe_url())
    })
    .unwrap();
    let ack = client
        .load(&request(&l, &[row(10, 1, 1.0, 1)]), &mut cancel)
        .await
        .unwrap();
    assert_eq!(ack.kind, AckKind::Loaded);

    // Through the follower FE.
    let follower = server.follower_url().unwrap();
    let via_follower = StreamLoadClient::new(StreamLoadClientConfig {
        host_rewrite: rewrite,
        ..config(follower)
    })
    .unwrap();
    let l2 = label(601, 601);
    via_follower.txn_begin(TABLE, &l2).await.unwrap();
    via_follower
        .txn_load(&LoadRequest {
            merge_condition: None,
            ..request(&l2, &[row(10, 2, 2.0, 1)])
        })
        .await
        .unwrap();
    via_follower.txn_prepare(&l2).await.unwrap();
    via_follower.txn_commit(&l2).await.unwrap();
    assert_eq!(
        via_follower.load_state(&l2).await.unwrap(),
        LabelState::Visible
    );
    let log = server.requests();
    let begin_hops: Vec<(&str, Option<u16>)> = log
        .iter()
        .filter(|r| r.path == "/api/transaction/begin")
        .map(|r| (r.listener.as_str(), r.status))
        .collect();
    assert_eq!(
        begin_hops,
        vec![
            ("follower", Some(307)),
            ("fe", Some(307)),
            ("be0", Some(200))
        ]
    );
    let load_hops: Vec<(&str, bool)> = log
        .iter()
        .filter(|r| r.path == "/api/transaction/load")
        .map(|r| (r.listener.as_str(), r.body_read))
        .collect();
    assert_eq!(
        load_hops,
        vec![("follower", false), ("fe", false), ("be0", true)]
    );
    // Plain stream load through the follower goes straight to the BE.
    let ack = via_follower
        .load(
            &request(&label(602, 602), &[row(10, 3, 3.0, 1)]),
            &mut cancel,
        )
        .await
        .unwrap();
    assert_eq!(ack.kind, AckKind::Loaded);
    assert_eq!(server.rows(DB, TABLE).unwrap().len(), 3);
}

/// 15. A JSON body over the limit ⇒ TooLarge in the header phase; the body is never read.
#[tokio::test]
async fn oversized_json_is_rejected_before_the_body() {
    let server = server().await;
    let mut limits = server.limits();
    limits.streaming_load_max_batch_size_mb = 1;
    server.set_limits(limits);
    let client = client(&server);
    let (_tx, mut cancel) = never_cancelled();
    let rows: Vec<Value> = (0..20_000).map(|i| row(11, i, i as f64, 1)).collect();
    let l = label(700, 719_999);
    let req = request(&l, &rows);
    assert!(req.body.len() > 1024 * 1024);
    let err = client.load(&req, &mut cancel).await.unwrap_err();
    match &err {
        StreamLoadError::TooLarge { label, message } => {
            assert_eq!(label, &l);
            assert!(
                message.contains("exceed the max size [1048576]"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let log = server.requests();
    let be = requests_for(&log, "be0", &l);
    assert_eq!(be.len(), 1, "no retry");
    assert!(!be[0].body_read, "the BE must not read the body");
    assert_eq!(be[0].body_bytes, 0);
    assert!(requests_for(&log, "fe", &l).iter().all(|r| !r.body_read));
    assert!(server.labels().is_empty(), "no txn was begun");
}

/// Cancellation ends retrying.
#[tokio::test]
async fn cancel_stops_retrying() {
    let server = server().await;
    server.set_fault(FaultRule::always(Fault::BeShuttingDown));
    let client = StreamLoadClient::new(StreamLoadClientConfig {
        max_attempts: None,
        ..config(server.fe_url())
    })
    .unwrap();
    let (tx, mut cancel) = watch::channel(false);
    let l = label(800, 800);
    let req = request(&l, &[row(12, 1, 1.0, 1)]);
    let task = tokio::spawn(async move { client.load(&req, &mut cancel).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    tx.send(true).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("cancel is prompt")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, StreamLoadError::Cancelled { .. }), "{err:?}");
    assert!(server.attempts(&l) >= 2, "it was retrying");
}
