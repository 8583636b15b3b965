//! Tests of the fake StarRocks Stream Load server (`firn_tests::stream_load`) over real
//! HTTP: reqwest (redirects handled by hand, as the relay must) and raw TCP for 100-continue.

use std::time::Duration;

use firn_tests::stream_load::{
    Fault, FaultRule, LabelConflictMode, StreamLoadConfig, StreamLoadServer, TableSchema,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DB: &str = "gold_hot";
const TABLE: &str = "metrics";

async fn server() -> StreamLoadServer {
    let server = StreamLoadServer::start(StreamLoadConfig::default())
        .await
        .expect("start the fake");
    let schema: TableSchema = serde_json::from_value(json!({
        "columns": [
            {"name": "id", "type": "bigint", "nullable": false},
            {"name": "name", "type": "varchar"},
            {"name": "ver", "type": "bigint", "nullable": false}
        ],
        "key": ["id"]
    }))
    .unwrap();
    server.create_table(DB, TABLE, schema).unwrap();
    server
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn load_url(server: &StreamLoadServer) -> String {
    format!("{}/api/{DB}/{TABLE}/_stream_load", server.fe_url())
}

/// The relay's path: zero-length probe to the FE, then the body to the BE's `Location`.
async fn stream_load(server: &StreamLoadServer, headers: &[(&str, &str)], body: &str) -> Value {
    let (status, text) = stream_load_raw(server, headers, body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn stream_load_raw(
    server: &StreamLoadServer,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, String) {
    let client = client();
    let mut probe = client
        .put(load_url(server))
        .basic_auth("root", Some(""))
        .header("Expect", "100-continue");
    for (k, v) in headers {
        probe = probe.header(*k, *v);
    }
    let redirect = probe.send().await.unwrap();
    assert_eq!(redirect.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = redirect.headers()["location"].to_str().unwrap().to_string();
    let mut put = client
        .put(&location)
        .basic_auth("root", Some(""))
        .body(body.to_string());
    for (k, v) in headers {
        put = put.header(*k, *v);
    }
    let response = put.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

const JSON: [(&str, &str); 2] = [("format", "json"), ("strip_outer_array", "true")];

fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = JSON.to_vec();
    h.extend_from_slice(extra);
    h
}

#[tokio::test]
async fn fe_auth_expect_and_redirect_without_credentials() {
    let server = server().await;
    let client = client();
    // No auth on the FE: 401 with the RestBaseResult body.
    let r = client
        .put(load_url(&server))
        .header("Expect", "100-continue")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"\"");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["msg"], "Need auth information.");
    assert_eq!(body["status"], "FAILED");
    // Auth but no Expect: FAILED JSON, HTTP 200.
    let r = client
        .put(load_url(&server))
        .basic_auth("root", Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"Status": "FAILED", "Message": "class com.starrocks.common.DdlException: There is no 100-continue header"})
    );
    // Proper probe: 307 to the BE, same path and query, empty body, connection closed.
    let r = client
        .put(format!("{}?x=1", load_url(&server)))
        .basic_auth("root", Some(""))
        .header("Expect", "100-continue")
        .header("label", "l1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        location,
        format!("{}/api/{DB}/{TABLE}/_stream_load?x=1", server.be_urls()[0])
    );
    assert_eq!(r.headers()["connection"], "close");
    assert!(r.bytes().await.unwrap().is_empty());
    // Following the redirect without re-sending credentials is refused by the BE
    // (spec §1.2: HTTP 200, Status Fail, `no valid Basic authorization`), nothing loaded.
    let r = client
        .put(&location)
        .header("label", "l1")
        .header("format", "json")
        .body(r#"{"id":1,"ver":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["Status"], "Fail");
    assert_eq!(body["Message"], "no valid Basic authorization");
    assert_eq!(body["TxnId"], -1);
    assert_eq!(server.rows(DB, TABLE).unwrap(), Vec::<Value>::new());
    // Wrong password at the FE.
    let r = client
        .put(load_url(&server))
        .basic_auth("root", Some("nope"))
        .header("Expect", "100-continue")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn load_json_and_csv_then_read_back() {
    let server = server().await;
    let r = stream_load(
        &server,
        &with(&[("label", "a1")]),
        r#"[{"id":2,"name":"b","ver":1},{"id":1,"name":"a","ver":1}]"#,
    )
    .await;
    assert_eq!(r["Status"], "Success");
    assert_eq!(r["Message"], "OK");
    assert_eq!(r["NumberTotalRows"], 2);
    assert_eq!(r["NumberLoadedRows"], 2);
    // NDJSON without strip_outer_array.
    let r = stream_load(
        &server,
        &[("label", "a2"), ("format", "json")],
        "{\"id\":3,\"name\":\"c\",\"ver\":1}\n{\"id\":4,\"name\":\"d\",\"ver\":1}\n",
    )
    .await;
    assert_eq!(r["Status"], "Success", "{r}");
    // CSV with a columns mapping.
    let r = stream_load(
        &server,
        &[
            ("label", "a3"),
            ("column_separator", ","),
            ("columns", "ver,id,name"),
        ],
        "1,5,e\n1,6,\\N\n",
    )
    .await;
    assert_eq!(r["Status"], "Success", "{r}");
    let rows = server.rows(DB, TABLE).unwrap();
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[0], json!({"id": 1, "name": "a", "ver": 1}));
    assert_eq!(rows[5], json!({"id": 6, "name": null, "ver": 1}));
    // The control API serves the same rows.
    let control: Value = client()
        .get(format!(
            "{}/__fake/tables/{DB}/{TABLE}/rows",
            server.fe_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(control, Value::Array(rows));
}

#[tokio::test]
async fn upsert_and_op_delete() {
    let server = server().await;
    stream_load(
        &server,
        &with(&[("label", "u1")]),
        r#"[{"id":1,"name":"a","ver":1},{"id":2,"name":"b","ver":1},{"id":3,"name":"c","ver":1}]"#,
    )
    .await;
    let r = stream_load(
        &server,
        &with(&[("label", "u2")]),
        r#"[{"id":1,"name":"a2","ver":2,"__op":0},{"id":2,"ver":2,"__op":1},{"id":3,"name":"x","ver":2},{"id":3,"ver":3,"__op":1}]"#,
    )
    .await;
    assert_eq!(r["Status"], "Success", "{r}");
    assert_eq!(
        server.rows(DB, TABLE).unwrap(),
        vec![json!({"id": 1, "name": "a2", "ver": 2})]
    );
    // All-delete load through `columns: __op='delete'` (CSV with only the key).
    let r = stream_load(
        &server,
        &[("label", "u3"), ("columns", "id,__op='delete'")],
        "1\n",
    )
    .await;
    assert_eq!(r["Status"], "Success", "{r}");
    assert!(server.rows(DB, TABLE).unwrap().is_empty());
}

#[tokio::test]
async fn merge_condition_keeps_newer_row() {
    let server = server().await;
    let mc = [("merge_condition", "ver")];
    stream_load(
        &server,
        &with(&[("label", "m1"), mc[0]]),
        r#"[{"id":1,"name":"new","ver":5}]"#,
    )
    .await;
    let r = stream_load(
        &server,
        &with(&[("label", "m2"), mc[0]]),
        r#"[{"id":1,"name":"old","ver":3},{"id":2,"name":"b","ver":1}]"#,
    )
    .await;
    assert_eq!(r["Status"], "Success");
    assert_eq!(
        server.rows(DB, TABLE).unwrap(),
        vec![
            json!({"id": 1, "name": "new", "ver": 5}),
            json!({"id": 2, "name": "b", "ver": 1})
        ]
    );
    // Unknown merge column fails in the header phase with a txn begun and aborted.
    let r = stream_load(
        &server,
        &with(&[("label", "m3"), ("merge_condition", "nope")]),
        "[]",
    )
    .await;
    assert_eq!(r["Status"], "Fail");
    assert_eq!(server.load_state(DB, "m3"), Some("ABORTED"));
}

async fn get_load_state(server: &StreamLoadServer, label: &str) -> Value {
    client()
        .get(format!(
            "{}/api/{DB}/get_load_state?label={label}",
            server.fe_url()
        ))
        .basic_auth("root", Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn label_reuse_and_eviction() {
    let server = server().await;
    let body = r#"[{"id":1,"name":"a","ver":1}]"#;
    let first = stream_load(&server, &with(&[("label", "dup")]), body).await;
    assert_eq!(first["Status"], "Success");
    assert!(first["TxnId"].as_i64().unwrap() > 0);
    let again = stream_load(&server, &with(&[("label", "dup")]), body).await;
    assert_eq!(again["Status"], "Label Already Exists");
    assert_eq!(again["ExistingJobStatus"], "FINISHED");
    assert_eq!(again["Message"], "Label [dup] has already been used.");
    assert_eq!(again["TxnId"], -1);
    assert_eq!(
        get_load_state(&server, "dup").await,
        json!({"state":"VISIBLE","status":"OK","code":"0","msg":"Success","message":"OK"})
    );
    assert_eq!(get_load_state(&server, "never").await["state"], "UNKNOWN");
    // Newer servers (#57982): Fail with the same message, no ExistingJobStatus.
    let mut limits = server.limits();
    limits.label_conflict_mode = LabelConflictMode::Fail;
    server.set_limits(limits.clone());
    let again = stream_load(&server, &with(&[("label", "dup")]), body).await;
    assert_eq!(again["Status"], "Fail");
    assert!(again.get("ExistingJobStatus").is_none());
    assert!(
        again["Message"]
            .as_str()
            .unwrap()
            .contains("has already been used")
    );
    // A failed (aborted) label is reusable.
    let bad = stream_load(
        &server,
        &with(&[("label", "bad")]),
        r#"[{"id":null,"ver":1}]"#,
    )
    .await;
    assert_eq!(bad["Status"], "Fail");
    assert_eq!(bad["Message"], "too many filtered rows");
    let log_url = bad["ErrorURL"].as_str().unwrap().to_string();
    let log = client()
        .get(&log_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        log.starts_with("Error: NULL value in non-nullable column 'id'"),
        "{log}"
    );
    let ok = stream_load(&server, &with(&[("label", "bad")]), body).await;
    assert_eq!(ok["Status"], "Success");
    // Count eviction: with label_keep_max_num = 2 the oldest labels become UNKNOWN and reusable.
    limits.label_keep_max_num = 2;
    server.set_limits(limits);
    stream_load(&server, &with(&[("label", "e1")]), body).await;
    assert_eq!(get_load_state(&server, "dup").await["state"], "UNKNOWN");
    let reuse = stream_load(&server, &with(&[("label", "dup")]), body).await;
    assert_eq!(reuse["Status"], "Success");
    // On-demand eviction.
    assert_eq!(server.evict_labels(DB, Some("e1")), 1);
    assert_eq!(server.load_state(DB, "e1"), Some("UNKNOWN"));
}

/// Loads one row under `label` while the server answers "Publish Timeout" once (the load
/// becomes visible 300 ms later).
async fn load_with_publish_timeout(server: &StreamLoadServer, label: &str) {
    server.set_fault(FaultRule::times(
        Fault::PublishTimeout {
            visible_after_ms: 300,
        },
        1,
    ));
    let r = stream_load(
        server,
        &with(&[("label", label)]),
        r#"[{"id":1,"name":"a","ver":1}]"#,
    )
    .await;
    assert_eq!(r["Status"], "Publish Timeout");
}

#[tokio::test]
async fn publish_timeout_and_lost_response() {
    let server = server().await;
    load_with_publish_timeout(&server, "p1").await;
    assert_eq!(get_load_state(&server, "p1").await["state"], "COMMITTED");
    assert!(server.rows(DB, TABLE).unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get_load_state(&server, "p1").await["state"], "VISIBLE");
    assert_eq!(server.rows(DB, TABLE).unwrap().len(), 1);

    // Lost response: committed, connection dropped; the retry with the same label dedups.
    server.set_fault(FaultRule {
        label: Some("lost".into()),
        ..FaultRule::times(Fault::LostResponse, 1)
    });
    let client = client();
    let probe = client
        .put(load_url(&server))
        .basic_auth("root", Some(""))
        .header("Expect", "100-continue")
        .header("label", "lost")
        .send()
        .await
        .unwrap();
    let location = probe.headers()["location"].to_str().unwrap().to_string();
    let put = || {
        client
            .put(&location)
            .basic_auth("root", Some(""))
            .header("label", "lost")
            .header("format", "json")
            .body(r#"{"id":2,"name":"b","ver":1}"#)
    };
    assert!(put().send().await.is_err(), "the response must be lost");
    assert_eq!(get_load_state(&server, "lost").await["state"], "VISIBLE");
    let retry: Value = put().send().await.unwrap().json().await.unwrap();
    assert_eq!(retry["Status"], "Label Already Exists");
    assert_eq!(retry["ExistingJobStatus"], "FINISHED");
    assert_eq!(server.rows(DB, TABLE).unwrap().len(), 2);
    assert_eq!(server.attempts("lost"), 2);

    // Commit unknown: applied, but reported as a retryable Fail.
    server.set_fault(FaultRule::times(Fault::CommitUnknown, 1));
    let r = stream_load(
        &server,
        &with(&[("label", "cu")]),
        r#"[{"id":3,"name":"c","ver":1}]"#,
    )
    .await;
    assert_eq!(r["Status"], "Fail");
    assert!(
        r["Message"]
            .as_str()
            .unwrap()
            .contains("Transaction status unknown")
    );
    assert_eq!(server.load_state(DB, "cu"), Some("VISIBLE"));
}

#[tokio::test]
async fn control_api_reports_when_a_label_became_visible_and_the_clock() {
    let server = server().await;
    load_with_publish_timeout(&server, "v1").await;
    let control = |path: &str| {
        let url = format!("{}/__fake/{path}", server.fe_url());
        async move {
            client()
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let txn = |txns: Value| {
        txns.as_array()
            .unwrap()
            .iter()
            .find(|t| t["label"] == "v1")
            .cloned()
            .unwrap()
    };
    let committed = txn(control("txns").await);
    assert_eq!(committed["state"], "COMMITTED");
    assert!(committed["visible_at_ms"].is_null(), "{committed}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let visible = txn(control("txns").await);
    assert_eq!(visible["state"], "VISIBLE");
    let (finished, shown) = (
        visible["finished_at_ms"].as_u64().unwrap(),
        visible["visible_at_ms"].as_u64().unwrap(),
    );
    assert!(shown >= finished + 300, "{visible}");
    let clock = control("clock").await;
    assert!(clock["now_ms"].as_u64().unwrap() >= shown, "{clock}");
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        clock["unix_ms"].as_u64().unwrap().abs_diff(wall) < 60_000,
        "{clock}"
    );
}

#[tokio::test]
async fn response_json_has_exact_keys_in_order() {
    let server = server().await;
    let (_, text) = stream_load_raw(
        &server,
        &with(&[("label", "k1")]),
        r#"[{"id":1,"name":"a","ver":1}]"#,
    )
    .await;
    let keys: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("    \"")?.split('"').next())
        .collect();
    assert_eq!(
        keys,
        [
            "TxnId",
            "Label",
            "Status",
            "Message",
            "NumberTotalRows",
            "NumberLoadedRows",
            "NumberFilteredRows",
            "NumberUnselectedRows",
            "LoadBytes",
            "LoadTimeMs",
            "BeginTxnTimeMs",
            "StreamLoadPlanTimeMs",
            "ReadDataTimeMs",
            "WriteDataTimeMs",
            "CommitAndPublishTimeMs"
        ],
        "{text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["Label"], "k1");
    assert_eq!(v["LoadBytes"], 29);
    // Too many versions: reported after the body, txn begun then aborted.
    let mut limits = server.limits();
    limits.tablet_max_versions = 2;
    server.set_limits(limits);
    let v = stream_load(&server, &with(&[("label", "k2")]), "[]").await;
    assert_eq!(v["Status"], "Fail");
    assert!(v["TxnId"].as_i64().unwrap() > 0);
    assert!(
        v["Message"]
            .as_str()
            .unwrap()
            .contains("too many versions, current/limit: 2/2")
    );
    assert_eq!(server.load_state(DB, "k2"), Some("ABORTED"));
    server.compact(DB, TABLE);
    let v = stream_load(&server, &with(&[("label", "k2")]), "[]").await;
    assert_eq!(v["Status"], "Success");
}

async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains(needle) {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("read timed out")
            .unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn be_sends_100_continue_only_after_the_header_phase() {
    let server = server().await;
    let be = server.be_addrs()[0];
    let body = r#"[{"id":9,"name":"z","ver":1}]"#;
    let head = |auth: bool, label: &str| {
        format!(
            "PUT /api/{DB}/{TABLE}/_stream_load HTTP/1.1\r\nHost: {be}\r\n{}label: {label}\r\nformat: json\r\nstrip_outer_array: true\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            if auth {
                "Authorization: Basic cm9vdDo=\r\n"
            } else {
                ""
            },
            body.len()
        )
    };
    // Good headers: 100 Continue first, then (after the body) the final reply.
    let mut stream = TcpStream::connect(be).await.unwrap();
    stream.write_all(head(true, "c1").as_bytes()).await.unwrap();
    let interim = read_until(&mut stream, "\r\n\r\n").await;
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    stream.write_all(body.as_bytes()).await.unwrap();
    let reply = read_until(&mut stream, "CommitAndPublishTimeMs").await;
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.contains("\"Status\": \"Success\""), "{reply}");
    // Header failure: the final reply comes without 100 Continue and without the body sent.
    let mut stream = TcpStream::connect(be).await.unwrap();
    stream
        .write_all(head(false, "c2").as_bytes())
        .await
        .unwrap();
    let reply = read_until(&mut stream, "CommitAndPublishTimeMs").await;
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(!reply.contains("100 Continue"));
    assert!(reply.contains("no valid Basic authorization"));
    assert_eq!(server.rows(DB, TABLE).unwrap().len(), 1);
}

/// Sends a transaction-API request to `base`, following 307s by hand (with credentials);
/// returns the hops' listeners' statuses and the final JSON.
async fn txn(
    base: &str,
    method: reqwest::Method,
    op: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (Vec<u16>, Value) {
    let client = client();
    let mut url = format!("{base}/api/transaction/{op}");
    let mut statuses = Vec::new();
    loop {
        let mut request = client
            .request(method.clone(), &url)
            .basic_auth("root", Some(""))
            .body(body.to_string());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == StatusCode::TEMPORARY_REDIRECT {
            url = response.headers()["location"].to_str().unwrap().to_string();
            continue;
        }
        let text = response.text().await.unwrap();
        return (statuses, serde_json::from_str(&text).unwrap());
    }
}

fn json_keys(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("    \"")?.split('"').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn transaction_api_two_phase_over_http() {
    let server = server().await;
    let fe = server.fe_url();
    let h = |label: &'static str| vec![("db", DB), ("table", TABLE), ("label", label)];
    let post = reqwest::Method::POST;
    // begin: FE 307 to the BE, BE answers with TStatusCode names and the begin fields.
    let (hops, begin) = txn(&fe, post.clone(), "begin", &h("t1"), "").await;
    assert_eq!(hops, vec![307, 200]);
    assert_eq!(begin["Status"], "OK");
    assert_eq!(begin["Label"], "t1");
    let txn_id = begin["TxnId"].as_i64().unwrap();
    // Exact key order of a BE begin reply.
    let raw = client()
        .post(format!("{}/api/transaction/begin", server.be_urls()[0]))
        .basic_auth("root", Some(""))
        .header("db", DB)
        .header("table", TABLE)
        .header("label", "keys")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        json_keys(&raw),
        ["Status", "Message", "Label", "TxnId", "BeginTxnTimeMs"]
    );
    // Duplicate begin.
    let (_, dup) = txn(&fe, post.clone(), "begin", &h("t1"), "").await;
    assert_eq!(dup["Status"], "LABEL_ALREADY_EXISTS");
    assert_eq!(dup["ExistingJobStatus"], "RUNNING");
    assert_eq!(dup["Message"], "Label [t1] has already been used.");
    // Two loads (PUT, through the FE, sticky BE), then prepare.
    let mut load_h = h("t1");
    load_h.push(("format", "json"));
    for body in [
        r#"{"id":1,"name":"a","ver":1}"#,
        r#"{"id":2,"name":"b","ver":1}"#,
    ] {
        let (hops, r) = txn(&fe, reqwest::Method::PUT, "load", &load_h, body).await;
        assert_eq!(hops, vec![307, 200]);
        assert_eq!(r["Status"], "OK", "{r}");
        assert_eq!(r["TxnId"], txn_id);
        assert_eq!(r["LoadBytes"], body.len());
    }
    let (_, prepared) = txn(&fe, post.clone(), "prepare", &h("t1"), "").await;
    assert_eq!(prepared["Status"], "OK", "{prepared}");
    assert_eq!(prepared["NumberLoadedRows"], 2);
    assert_eq!(server.load_state(DB, "t1"), Some("PREPARED"));
    assert!(server.rows(DB, TABLE).unwrap().is_empty());
    // A second prepare: the BE no longer holds the txn.
    let (_, again) = txn(&fe, post.clone(), "prepare", &h("t1"), "").await;
    assert_eq!(again["Status"], "TXN_NOT_EXISTS");
    assert_eq!(again["Message"], "Transaction with label t1 not exists");
    // Commit of a PREPARED txn: done by the FE itself (no redirect).
    let (hops, committed) = txn(&fe, post.clone(), "commit", &h("t1"), "").await;
    assert_eq!(hops, vec![200]);
    assert_eq!(committed["Status"], "OK");
    assert_eq!(committed["TxnId"], txn_id);
    assert_eq!(server.rows(DB, TABLE).unwrap().len(), 2);
    let (_, recommit) = txn(&fe, post.clone(), "commit", &h("t1"), "").await;
    assert_eq!(recommit["Status"], "OK");
    assert_eq!(
        recommit["Message"],
        format!("Transaction {txn_id} has already committed, label is t1")
    );
    let (_, rollback) = txn(&fe, post.clone(), "rollback", &h("t1"), "").await;
    assert_eq!(rollback["Status"], "FAILED");
    assert_eq!(
        rollback["Message"],
        format!(
            "class com.starrocks.common.StarRocksException: Can not abort VISIBLE transaction {txn_id}, label is t1"
        )
    );
    // FE validation.
    let (_, r) = txn(&fe, post.clone(), "begin", &[("label", "x")], "").await;
    assert_eq!(
        r["Message"],
        "class com.starrocks.common.StarRocksException: No database selected."
    );
    let (_, r) = txn(&fe, post.clone(), "begin", &[("db", DB)], "").await;
    assert_eq!(
        r["Message"],
        "class com.starrocks.common.StarRocksException: Empty label."
    );
    let (_, r) = txn(&fe, post.clone(), "frobnicate", &h("x"), "").await;
    assert_eq!(
        r["Message"],
        "class com.starrocks.common.StarRocksException: Unknown transaction operation: frobnicate"
    );
    let (_, r) = txn(&fe, post.clone(), "commit", &h("nope"), "").await;
    assert_eq!(
        r["Message"],
        format!(
            "class com.starrocks.common.StarRocksException: No transaction found with db[{DB}] and label[nope]"
        )
    );
    // One-phase commit (no prepare) is redirected to the BE, which prepares and commits.
    txn(&fe, post.clone(), "begin", &h("t2"), "").await;
    let mut load_h = h("t2");
    load_h.push(("format", "json"));
    txn(
        &fe,
        reqwest::Method::PUT,
        "load",
        &load_h,
        r#"{"id":3,"name":"c","ver":1}"#,
    )
    .await;
    let (hops, r) = txn(&fe, post.clone(), "commit", &h("t2"), "").await;
    assert_eq!(hops, vec![307, 200]);
    assert_eq!(r["Status"], "OK", "{r}");
    assert_eq!(r["NumberLoadedRows"], 1);
    assert_eq!(server.rows(DB, TABLE).unwrap().len(), 3);
    // BE list shows the still-running txn begun for the key-order check.
    let (_, list) = txn(&server.be_urls()[0], post, "list", &h("keys"), "").await;
    let labels: Vec<&str> = list["Transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["keys"]);
}

#[tokio::test]
async fn transaction_in_processing_auto_rollback_and_timeouts() {
    let server = server().await;
    let fe = server.fe_url();
    let be = server.be_addrs()[0];
    let post = reqwest::Method::POST;
    let h = |label: &'static str| vec![("db", DB), ("table", TABLE), ("label", label)];
    txn(&fe, post.clone(), "begin", &h("busy"), "").await;
    // A load that has passed its header phase (100 Continue received) holds the txn.
    let body = r#"{"id":1,"name":"a","ver":1}"#;
    let mut stream = TcpStream::connect(be).await.unwrap();
    let head = format!(
        "PUT /api/transaction/load HTTP/1.1\r\nHost: {be}\r\nAuthorization: Basic cm9vdDo=\r\ndb: {DB}\r\ntable: {TABLE}\r\nlabel: busy\r\nformat: json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let interim = read_until(&mut stream, "\r\n\r\n").await;
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    let mut load_h = h("busy");
    load_h.push(("format", "json"));
    let (_, r) = txn(&fe, reqwest::Method::PUT, "load", &load_h, body).await;
    assert_eq!(r["Status"], "TXN_IN_PROCESSING");
    assert_eq!(
        r["Message"],
        "Transaction in processing, please retry later"
    );
    assert_eq!(r["Label"], "busy");
    stream.write_all(body.as_bytes()).await.unwrap();
    let reply = read_until(&mut stream, "ReceivedDataTimeMs").await;
    assert!(reply.contains("\"Status\": \"OK\""), "{reply}");
    // A bad body rolls the txn back.
    let (_, r) = txn(&fe, reqwest::Method::PUT, "load", &load_h, "{oops").await;
    assert_ne!(r["Status"], "OK");
    assert_eq!(server.load_state(DB, "busy"), Some("ABORTED"));
    let (_, r) = txn(&fe, reqwest::Method::PUT, "load", &load_h, body).await;
    assert_eq!(r["Status"], "TXN_NOT_EXISTS");
    let (_, r) = txn(&fe, post.clone(), "rollback", &h("busy"), "").await;
    assert_eq!(r["Status"], "OK");
    assert!(
        r["Message"]
            .as_str()
            .unwrap()
            .contains("has already aborted, label is busy")
    );
    // Timeouts on the virtual clock: begin timeout, idle timeout, prepared timeout.
    let mut timed = h("timed");
    timed.push(("timeout", "30"));
    txn(&fe, post.clone(), "begin", &timed, "").await;
    let mut idle = h("idle");
    idle.push(("idle_transaction_timeout", "5"));
    txn(&fe, post.clone(), "begin", &idle, "").await;
    txn(&fe, post.clone(), "begin", &h("prep"), "").await;
    let mut prep_load = h("prep");
    prep_load.push(("format", "json"));
    txn(
        &fe,
        reqwest::Method::PUT,
        "load",
        &prep_load,
        r#"{"id":7,"ver":1}"#,
    )
    .await;
    let mut prep = h("prep");
    prep.push(("prepared_timeout", "10"));
    let (_, r) = txn(&fe, post.clone(), "prepare", &prep, "").await;
    assert_eq!(r["Status"], "OK", "{r}");
    let advance = |ms: u64| {
        let fe = fe.clone();
        async move {
            client()
                .post(format!("{fe}/__fake/clock/advance"))
                .json(&json!({ "ms": ms }))
                .send()
                .await
                .unwrap();
        }
    };
    advance(6_000).await;
    assert_eq!(get_load_state(&server, "idle").await["state"], "ABORTED");
    assert_eq!(get_load_state(&server, "prep").await["state"], "PREPARED");
    advance(5_000).await;
    assert_eq!(get_load_state(&server, "prep").await["state"], "ABORTED");
    assert_eq!(get_load_state(&server, "timed").await["state"], "PREPARE");
    server.advance_clock(20_000);
    assert_eq!(get_load_state(&server, "timed").await["state"], "ABORTED");
    let (_, r) = txn(&fe, post, "commit", &h("prep"), "").await;
    assert!(
        r["Message"]
            .as_str()
            .unwrap()
            .contains("Can not commit ABORTED transaction")
    );
    assert!(server.rows(DB, TABLE).unwrap().is_empty());
}

#[tokio::test]
async fn follower_fe_redirects_to_the_leader_and_requests_are_logged() {
    let server = StreamLoadServer::start(StreamLoadConfig {
        follower_fe_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..StreamLoadConfig::default()
    })
    .await
    .unwrap();
    let schema: TableSchema = serde_json::from_value(json!({
        "columns": [{"name": "id", "type": "bigint", "nullable": false}],
        "key": ["id"]
    }))
    .unwrap();
    server.create_table(DB, TABLE, schema).unwrap();
    let follower = server.follower_url().unwrap();
    // Label state: follower → leader.
    let r = client()
        .get(format!("{follower}/api/{DB}/get_load_state?label=x"))
        .basic_auth("root", Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        r.headers()["location"],
        format!("{}/api/{DB}/get_load_state?label=x", server.fe_url()).as_str()
    );
    // Transaction begin: follower → leader → BE.
    let (hops, begin) = txn(
        &follower,
        reqwest::Method::POST,
        "begin",
        &[("db", DB), ("table", TABLE), ("label", "f1")],
        "",
    )
    .await;
    assert_eq!(hops, vec![307, 307, 200]);
    assert_eq!(begin["Status"], "OK");
    // The request log (library and control API) has every hop, without the password.
    let log: Vec<Value> = client()
        .get(format!("{}/__fake/requests", server.fe_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hops: Vec<(&str, &str)> = log
        .iter()
        .filter(|r| r["label"] == "f1")
        .map(|r| (r["listener"].as_str().unwrap(), r["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        hops,
        [
            ("follower", "/api/transaction/begin"),
            ("fe", "/api/transaction/begin"),
            ("be0", "/api/transaction/begin")
        ]
    );
    assert!(
        log.iter()
            .all(|r| r["headers"]["authorization"] == "<redacted>")
    );
    assert_eq!(server.requests().len(), log.len());
    // StripExpect: the FE acts as if the header were missing.
    server.set_fault(FaultRule::times(Fault::StripExpect, 1));
    let r: Value = client()
        .put(format!("{}/api/{DB}/{TABLE}/_stream_load", server.fe_url()))
        .basic_auth("root", Some(""))
        .header("Expect", "100-continue")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["Message"],
        "class com.starrocks.common.DdlException: There is no 100-continue header"
    );
}

#[tokio::test]
async fn gzip_compressed_body() {
    use std::io::Write;
    let server = server().await;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(br#"[{"id":1,"name":"z","ver":1}]"#).unwrap();
    let gz = enc.finish().unwrap();
    let client = client();
    let probe = client
        .put(load_url(&server))
        .basic_auth("root", Some(""))
        .header("Expect", "100-continue")
        .send()
        .await
        .unwrap();
    let location = probe.headers()["location"].to_str().unwrap().to_string();
    let r: Value = client
        .put(&location)
        .basic_auth("root", Some(""))
        .header("label", "gz")
        .header("format", "json")
        .header("strip_outer_array", "true")
        .header("compression", "GZIP")
        .body(gz)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["Status"], "Success", "{r}");
    assert_eq!(
        server.rows(DB, TABLE).unwrap(),
        vec![json!({"id": 1, "name": "z", "ver": 1})]
    );
}
