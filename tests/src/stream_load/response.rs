//! Response bodies of the fake StarRocks, with the exact keys, key order and pretty-printing
//! (4-space indent) of the real FE/BE: the BE stream-load JSON (§2.2), FE `Status/Message`
//! results, the FE 401 body and the `get_load_state` body. Pure: builds strings.

use serde::Serialize;

/// Pretty-prints with a 4-space indent, as rapidjson's `PrettyWriter` does.
pub fn pretty<T: Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    value
        .serialize(&mut ser)
        .expect("serialising to memory cannot fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// BE `Status` values of a plain stream load.
pub const SUCCESS: &str = "Success";
pub const PUBLISH_TIMEOUT: &str = "Publish Timeout";
pub const LABEL_ALREADY_EXISTS: &str = "Label Already Exists";
pub const FAIL: &str = "Fail";

/// The BE stream-load reply (`StreamLoadContext::to_json`), fields in the real order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamLoadResult {
    pub txn_id: i64,
    pub label: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_job_status: Option<String>,
    pub message: String,
    pub number_total_rows: u64,
    pub number_loaded_rows: u64,
    pub number_filtered_rows: u64,
    pub number_unselected_rows: u64,
    pub load_bytes: u64,
    pub load_time_ms: u64,
    pub begin_txn_time_ms: u64,
    pub stream_load_plan_time_ms: u64,
    pub read_data_time_ms: u64,
    pub write_data_time_ms: u64,
    pub commit_and_publish_time_ms: u64,
    #[serde(rename = "ErrorURL", skip_serializing_if = "Option::is_none")]
    pub error_url: Option<String>,
}

impl StreamLoadResult {
    /// A failure before any txn was begun (`TxnId: -1`).
    pub fn fail(label: &str, message: impl Into<String>) -> Self {
        StreamLoadResult {
            txn_id: -1,
            label: label.to_string(),
            status: FAIL.into(),
            message: message.into(),
            ..Default::default()
        }
    }

    /// A label conflict: legacy `Label Already Exists` or the newer `Fail` form (#57982).
    pub fn label_conflict(label: &str, existing_job_status: &str, legacy: bool) -> Self {
        let message = format!("Label [{label}] has already been used.");
        if legacy {
            StreamLoadResult {
                txn_id: -1,
                label: label.to_string(),
                status: LABEL_ALREADY_EXISTS.into(),
                existing_job_status: Some(existing_job_status.to_string()),
                message,
                ..Default::default()
            }
        } else {
            StreamLoadResult::fail(label, message)
        }
    }
}

/// FE business result: `{"Status":"FAILED","Message":"..."}` (HTTP 200).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeResult {
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "Message")]
    pub message: String,
}

pub fn fe_failed(message: impl Into<String>) -> String {
    pretty(&FeResult {
        status: "FAILED".into(),
        message: message.into(),
    })
}

/// FE `DdlException` failure, message prefixed with the exception class.
pub fn fe_ddl_failed(message: &str) -> String {
    fe_failed(format!(
        "class com.starrocks.common.DdlException: {message}"
    ))
}

/// FE REST result with lowercase keys (`RestBaseResult`), used for 401 and label state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    pub status: String,
    pub code: String,
    pub msg: String,
    pub message: String,
}

pub fn auth_failure(message: &str) -> String {
    serde_json::to_string(&RestResult {
        state: None,
        status: "FAILED".into(),
        code: "1".into(),
        msg: message.into(),
        message: message.into(),
    })
    .expect("serialisable")
}

pub fn load_state(state: &str) -> String {
    serde_json::to_string(&RestResult {
        state: Some(state.into()),
        status: "OK".into(),
        code: "0".into(),
        msg: "Success".into(),
        message: "OK".into(),
    })
    .expect("serialisable")
}

/// Error text for a too-many-versions failure.
pub fn too_many_versions(tablet: i64, current: u64, limit: u64) -> String {
    format!(
        "Failed to load data into tablet {tablet}, because of too many versions, current/limit: {current}/{limit}. You can reduce the loading job concurrency, or increase loading data batch size. If you are loading data with Routine Load, you can increase FE configs routine_load_task_consume_second and max_routine_load_batch_size,"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_load_key_order() {
        let body = pretty(&StreamLoadResult {
            txn_id: 7,
            label: "l".into(),
            status: SUCCESS.into(),
            message: "OK".into(),
            ..Default::default()
        });
        let keys: Vec<&str> = body
            .lines()
            .filter_map(|l| l.trim().strip_prefix('"')?.split('"').next())
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
            ]
        );
        assert!(body.starts_with("{\n    \"TxnId\": 7,"));
    }

    #[test]
    fn conflict_forms() {
        let legacy = StreamLoadResult::label_conflict("a", "FINISHED", true);
        assert_eq!(legacy.status, LABEL_ALREADY_EXISTS);
        assert_eq!(legacy.existing_job_status.as_deref(), Some("FINISHED"));
        let fail = StreamLoadResult::label_conflict("a", "FINISHED", false);
        assert_eq!(fail.status, FAIL);
        assert_eq!(fail.message, "Label [a] has already been used.");
        assert_eq!(
            load_state("VISIBLE"),
            r#"{"state":"VISIBLE","status":"OK","code":"0","msg":"Success","message":"OK"}"#
        );
    }
}
