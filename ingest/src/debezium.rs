//! Decodes Debezium change events (Kafka Connect JSON, with or without the embedded
//! schema) into typed rows. Pure: bytes in, values out; no I/O.
//!
//! With an embedded schema every column gets the Iceberg type its Kafka Connect type and
//! logical name call for (`io.debezium.time.Date` → date, `MicroTimestamp` → timestamp,
//! `ZonedTimestamp` → timestamptz, `connect.data.Decimal` → decimal(p, s), ...). Without
//! one, types are inferred from the JSON values (integers → long, fractions → double,
//! strings → string, objects and arrays → their JSON text); a later typed message for the
//! same table then decides the column type and inferred values are coerced to it where that
//! loses nothing.

use base64::Engine;
use serde_json::{Map, Value};

/// The Debezium operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Update,
    Delete,
    Read,
    Truncate,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }

    fn parse(code: &str) -> Option<Op> {
        Some(match code {
            "c" => Op::Create,
            "u" => Op::Update,
            "d" => Op::Delete,
            "r" => Op::Read,
            "t" => Op::Truncate,
            _ => return None,
        })
    }
}

/// The Iceberg type of a decoded column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
    Binary,
    Date,
    /// Microseconds, no time zone (MySQL DATETIME, Postgres TIMESTAMP).
    Timestamp,
    /// Microseconds UTC.
    Timestamptz,
    Decimal {
        precision: u8,
        scale: i8,
    },
}

/// A decoded value.
#[derive(Debug, Clone, PartialEq)]
pub enum CellValue {
    Null,
    Boolean(bool),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    String(String),
    Binary(Vec<u8>),
    /// Days since the epoch.
    Date(i32),
    /// Microseconds since the epoch.
    Micros(i64),
    /// Unscaled value; the scale is the column's.
    Decimal(i128),
}

/// One column of a decoded row.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub name: String,
    pub column_type: ColumnType,
    /// Whether the type came from a schema (true) or was inferred from the JSON value.
    pub typed: bool,
    pub value: CellValue,
}

/// A decoded change event.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub op: Op,
    /// `source.ts_ms` (or `ts_us`) in microseconds.
    pub source_ts_micros: Option<i64>,
    /// Sortable position of the change in the source log.
    pub source_pos: Option<String>,
    /// The row: `after`, or `before` for deletes; empty for truncates.
    pub row: Vec<Cell>,
    /// The primary key fields from the Kafka message key, in key order.
    pub key: Vec<(String, Value)>,
}

/// What a Kafka message turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A delete's follow-up with a null value: nothing to store.
    Tombstone,
    Change(ChangeEvent),
}

/// Why a record could not be decoded; the kind goes to the dead-letter table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    BadJson,
    NotAnEnvelope,
    MissingKey,
    BadValue,
}

impl std::fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DecodeErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeErrorKind::BadJson => "bad_json",
            DecodeErrorKind::NotAnEnvelope => "not_an_envelope",
            DecodeErrorKind::MissingKey => "missing_key",
            DecodeErrorKind::BadValue => "bad_value",
        }
    }
}

fn error(kind: DecodeErrorKind, message: impl Into<String>) -> DecodeError {
    DecodeError {
        kind,
        message: message.into(),
    }
}

/// Decodes one Kafka message (key and value bytes).
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let Some(value) = value else {
        return Ok(Decoded::Tombstone);
    };
    let json: Value = serde_json::from_slice(value).map_err(|err| {
        error(
            DecodeErrorKind::BadJson,
            format!("value is not JSON: {err}"),
        )
    })?;
    let (schema, payload) = split_schema(json);
    let Value::Object(mut payload) = payload else {
        return Err(error(
            DecodeErrorKind::NotAnEnvelope,
            "value is not a JSON object",
        ));
    };
    let op_code = payload
        .get("op")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            error(
                DecodeErrorKind::NotAnEnvelope,
                "no `op` field; is this a Debezium envelope?",
            )
        })?;
    let op = Op::parse(&op_code).ok_or_else(|| {
        error(
            DecodeErrorKind::NotAnEnvelope,
            format!("unknown op `{op_code}`"),
        )
    })?;
    let source = payload.remove("source").unwrap_or(Value::Null);
    let row_field = if op == Op::Delete { "before" } else { "after" };
    let row = match op {
        Op::Truncate => Vec::new(),
        _ => {
            let row_value = payload.remove(row_field).unwrap_or(Value::Null);
            let Value::Object(row_object) = row_value else {
                return Err(error(
                    DecodeErrorKind::NotAnEnvelope,
                    format!("`{row_field}` is missing for op `{op_code}`"),
                ));
            };
            let field_schemas = schema
                .as_ref()
                .and_then(|s| struct_field_schema(s, row_field));
            decode_row(row_object, field_schemas)?
        }
    };
    let key = match key {
        Some(bytes) => decode_key(bytes)?,
        None if op == Op::Truncate => Vec::new(),
        None => return Err(error(DecodeErrorKind::MissingKey, "message has no key")),
    };
    if key.is_empty() && op != Op::Truncate {
        return Err(error(
            DecodeErrorKind::MissingKey,
            "message key has no fields",
        ));
    }
    Ok(Decoded::Change(ChangeEvent {
        op,
        source_ts_micros: source_ts_micros(&source, &payload),
        source_pos: source_position(&source),
        row,
        key,
    }))
}

/// Splits `{"schema":..,"payload":..}` into its parts; a bare envelope has no schema.
fn split_schema(json: Value) -> (Option<Value>, Value) {
    match json {
        Value::Object(mut object)
            if object.contains_key("payload") && object.contains_key("schema") =>
        {
            let schema = object.remove("schema").filter(|s| !s.is_null());
            let payload = object.remove("payload").unwrap_or(Value::Null);
            (schema, payload)
        }
        other => (None, other),
    }
}

/// The `fields` array of the struct schema of `field` inside an envelope schema.
fn struct_field_schema<'a>(envelope: &'a Value, field: &str) -> Option<&'a Vec<Value>> {
    envelope
        .get("fields")?
        .as_array()?
        .iter()
        .find(|f| f.get("field").and_then(Value::as_str) == Some(field))?
        .get("fields")?
        .as_array()
}

fn decode_key(bytes: &[u8]) -> Result<Vec<(String, Value)>, DecodeError> {
    let json: Value = serde_json::from_slice(bytes).map_err(|err| {
        error(
            DecodeErrorKind::MissingKey,
            format!("key is not JSON: {err}"),
        )
    })?;
    let (_, payload) = split_schema(json);
    match payload {
        Value::Object(object) => Ok(object.into_iter().collect()),
        other => Err(error(
            DecodeErrorKind::MissingKey,
            format!("key is not a JSON object: {other}"),
        )),
    }
}

fn decode_row(
    row: Map<String, Value>,
    schemas: Option<&Vec<Value>>,
) -> Result<Vec<Cell>, DecodeError> {
    let mut cells = Vec::with_capacity(row.len());
    match schemas {
        Some(fields) => {
            for field in fields {
                let Some(name) = field.get("field").and_then(Value::as_str) else {
                    continue;
                };
                let value = row.get(name).unwrap_or(&Value::Null);
                let (column_type, decoded) = decode_typed(name, field, value)?;
                cells.push(Cell {
                    name: name.to_string(),
                    column_type,
                    typed: true,
                    value: decoded,
                });
            }
        }
        None => {
            for (name, value) in row {
                let (column_type, decoded) = infer(&value);
                cells.push(Cell {
                    name,
                    column_type,
                    typed: false,
                    value: decoded,
                });
            }
        }
    }
    Ok(cells)
}

fn bad(name: &str, expected: &str, value: &Value) -> DecodeError {
    error(
        DecodeErrorKind::BadValue,
        format!("column `{name}`: expected {expected}, got {value}"),
    )
}

/// Maps a Kafka Connect field schema and its JSON value to an Iceberg type and value.
fn decode_typed(
    name: &str,
    schema: &Value,
    value: &Value,
) -> Result<(ColumnType, CellValue), DecodeError> {
    let connect_type = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string");
    let logical = schema.get("name").and_then(Value::as_str).unwrap_or("");
    let parameter = |key: &str| {
        schema
            .get("parameters")
            .and_then(|p| p.get(key))
            .and_then(Value::as_str)
            .and_then(|text| text.parse::<i64>().ok())
    };
    let column_type = match (logical, connect_type) {
        ("io.debezium.time.Date" | "org.apache.kafka.connect.data.Date", _) => ColumnType::Date,
        (
            "io.debezium.time.Timestamp"
            | "io.debezium.time.MicroTimestamp"
            | "io.debezium.time.NanoTimestamp"
            | "org.apache.kafka.connect.data.Timestamp",
            _,
        ) => ColumnType::Timestamp,
        ("io.debezium.time.ZonedTimestamp", _) => ColumnType::Timestamptz,
        ("org.apache.kafka.connect.data.Decimal", _) => {
            let scale = parameter("scale").unwrap_or(0).clamp(0, 38) as i8;
            let precision = parameter("connect.decimal.precision")
                .unwrap_or(38)
                .clamp(1, 38) as u8;
            ColumnType::Decimal {
                precision: precision.max(scale as u8),
                scale,
            }
        }
        (_, "boolean") => ColumnType::Boolean,
        (_, "int8" | "int16" | "int32") => ColumnType::Int,
        (_, "int64") => ColumnType::Long,
        (_, "float32" | "float") => ColumnType::Float,
        (_, "float64" | "double") => ColumnType::Double,
        (_, "bytes") => ColumnType::Binary,
        _ => ColumnType::String,
    };
    if value.is_null() {
        return Ok((column_type, CellValue::Null));
    }
    let decoded = match column_type {
        ColumnType::Boolean => CellValue::Boolean(
            value
                .as_bool()
                .ok_or_else(|| bad(name, "a boolean", value))?,
        ),
        ColumnType::Int => CellValue::Int(
            value
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| bad(name, "a 32-bit integer", value))?,
        ),
        ColumnType::Long => CellValue::Long(
            value
                .as_i64()
                .ok_or_else(|| bad(name, "an integer", value))?,
        ),
        ColumnType::Float => {
            CellValue::Float(value.as_f64().ok_or_else(|| bad(name, "a number", value))? as f32)
        }
        ColumnType::Double => {
            CellValue::Double(value.as_f64().ok_or_else(|| bad(name, "a number", value))?)
        }
        ColumnType::Binary => CellValue::Binary(
            value
                .as_str()
                .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
                .ok_or_else(|| bad(name, "base64 bytes", value))?,
        ),
        ColumnType::Date => CellValue::Date(
            value
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| bad(name, "days since epoch", value))?,
        ),
        ColumnType::Timestamp => {
            let raw = value
                .as_i64()
                .ok_or_else(|| bad(name, "an epoch timestamp", value))?;
            CellValue::Micros(match logical {
                "io.debezium.time.MicroTimestamp" => raw,
                "io.debezium.time.NanoTimestamp" => raw.div_euclid(1000),
                _ => raw.saturating_mul(1000),
            })
        }
        ColumnType::Timestamptz => {
            let text = value
                .as_str()
                .ok_or_else(|| bad(name, "an ISO-8601 timestamp", value))?;
            let parsed = chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|_| bad(name, "an ISO-8601 timestamp", value))?;
            CellValue::Micros(parsed.timestamp_micros())
        }
        ColumnType::Decimal { .. } => {
            let bytes = value
                .as_str()
                .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
                .ok_or_else(|| bad(name, "base64 decimal bytes", value))?;
            CellValue::Decimal(
                unscaled_from_bytes(&bytes)
                    .ok_or_else(|| bad(name, "a decimal of at most 16 bytes", value))?,
            )
        }
        ColumnType::String => CellValue::String(match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        }),
    };
    Ok((column_type, decoded))
}

/// Big-endian two's-complement bytes to an i128.
fn unscaled_from_bytes(bytes: &[u8]) -> Option<i128> {
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let negative = bytes[0] & 0x80 != 0;
    let mut buffer = if negative { [0xffu8; 16] } else { [0u8; 16] };
    buffer[16 - bytes.len()..].copy_from_slice(bytes);
    Some(i128::from_be_bytes(buffer))
}

/// Infers a type from a schemaless JSON value.
fn infer(value: &Value) -> (ColumnType, CellValue) {
    match value {
        Value::Null => (ColumnType::String, CellValue::Null),
        Value::Bool(b) => (ColumnType::Boolean, CellValue::Boolean(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => (ColumnType::Long, CellValue::Long(i)),
            None => (
                ColumnType::Double,
                CellValue::Double(n.as_f64().unwrap_or(f64::NAN)),
            ),
        },
        Value::String(s) => (ColumnType::String, CellValue::String(s.clone())),
        other => (ColumnType::String, CellValue::String(other.to_string())),
    }
}

fn source_ts_micros(source: &Value, payload: &Map<String, Value>) -> Option<i64> {
    if let Some(us) = source.get("ts_us").and_then(Value::as_i64) {
        return Some(us);
    }
    source
        .get("ts_ms")
        .and_then(Value::as_i64)
        .or_else(|| payload.get("ts_ms").and_then(Value::as_i64))
        .map(|ms| ms.saturating_mul(1000))
}

/// A position that sorts in log order within one connector: MySQL binlog file, position
/// and row; Postgres LSN; MongoDB oplog time and ordinal. Numbers are zero-padded.
pub fn source_position(source: &Value) -> Option<String> {
    let number = |key: &str| source.get(key).and_then(Value::as_i64);
    if let (Some(file), Some(pos)) = (source.get("file").and_then(Value::as_str), number("pos")) {
        return Some(format!(
            "{file}:{pos:020}:{:06}",
            number("row").unwrap_or(0)
        ));
    }
    if let Some(lsn) = number("lsn") {
        return Some(format!("{lsn:020}"));
    }
    if let (Some(ts), Some(ord)) = (number("ts_ms"), number("ord")) {
        return Some(format!("{ts:020}:{ord:010}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope_with_schema() -> Value {
        json!({
            "schema": {"type": "struct", "fields": [
                {"field": "before", "type": "struct", "optional": true, "fields": []},
                {"field": "after", "type": "struct", "optional": true, "fields": [
                    {"field": "id", "type": "int64", "optional": false},
                    {"field": "qty", "type": "int32", "optional": true},
                    {"field": "born", "type": "int32", "optional": true, "name": "io.debezium.time.Date"},
                    {"field": "at", "type": "int64", "optional": true, "name": "io.debezium.time.Timestamp"},
                    {"field": "at_us", "type": "int64", "optional": true, "name": "io.debezium.time.MicroTimestamp"},
                    {"field": "zoned", "type": "string", "optional": true, "name": "io.debezium.time.ZonedTimestamp"},
                    {"field": "price", "type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal",
                     "parameters": {"scale": "2", "connect.decimal.precision": "10"}}
                ]},
                {"field": "source", "type": "struct", "fields": []},
                {"field": "op", "type": "string"}
            ]},
            "payload": {
                "before": null,
                "after": {"id": 7, "qty": 3, "born": 19000, "at": 1700000000123i64, "at_us": 1700000000123456i64,
                          "zoned": "2026-01-01T00:00:00.5Z", "price": "BNI="},
                "source": {"connector": "mysql", "file": "mysql-bin.000003", "pos": 154, "row": 1, "ts_ms": 1700000000000i64},
                "op": "c", "ts_ms": 1700000000999i64
            }
        })
    }

    #[test]
    fn decodes_typed_envelope_with_logical_types() {
        let value = envelope_with_schema().to_string();
        let key = json!({"schema": {"type": "struct"}, "payload": {"id": 7}}).to_string();
        let Decoded::Change(event) = decode(Some(key.as_bytes()), Some(value.as_bytes())).unwrap()
        else {
            panic!("expected a change");
        };
        assert_eq!(event.op, Op::Create);
        assert_eq!(event.key, vec![("id".to_string(), json!(7))]);
        assert_eq!(
            event.source_pos.as_deref(),
            Some("mysql-bin.000003:00000000000000000154:000001")
        );
        assert_eq!(event.source_ts_micros, Some(1_700_000_000_000_000));
        let cell = |name: &str| event.row.iter().find(|c| c.name == name).unwrap().clone();
        assert_eq!(cell("qty").column_type, ColumnType::Int);
        assert_eq!(cell("born").value, CellValue::Date(19000));
        assert_eq!(cell("at").value, CellValue::Micros(1_700_000_000_123_000));
        assert_eq!(
            cell("at_us").value,
            CellValue::Micros(1_700_000_000_123_456)
        );
        assert_eq!(cell("zoned").column_type, ColumnType::Timestamptz);
        assert_eq!(
            cell("zoned").value,
            CellValue::Micros(1_767_225_600_500_000)
        );
        // 0x04D2 = 1234 → 12.34
        assert_eq!(cell("price").value, CellValue::Decimal(1234));
        assert_eq!(
            cell("price").column_type,
            ColumnType::Decimal {
                precision: 10,
                scale: 2
            }
        );
    }

    #[test]
    fn schemaless_envelopes_infer_types_and_deletes_use_before() {
        let value =
            json!({"before": {"id": 1, "name": "x", "score": 1.5, "tags": ["a"]}, "after": null,
            "source": {"lsn": 12345, "ts_ms": 10}, "op": "d"})
            .to_string();
        let Decoded::Change(event) = decode(Some(br#"{"id":1}"#), Some(value.as_bytes())).unwrap()
        else {
            panic!("expected a change");
        };
        assert_eq!(event.op, Op::Delete);
        assert_eq!(event.source_pos.as_deref(), Some("00000000000000012345"));
        let names: Vec<_> = event
            .row
            .iter()
            .map(|c| (c.name.as_str(), c.column_type))
            .collect();
        assert!(names.contains(&("score", ColumnType::Double)));
        assert!(names.contains(&("tags", ColumnType::String)));
        assert!(event.row.iter().all(|c| !c.typed));
    }

    #[test]
    fn tombstones_and_poison_records() {
        assert_eq!(decode(Some(b"{}"), None).unwrap(), Decoded::Tombstone);
        assert_eq!(
            decode(None, Some(b"{oops")).unwrap_err().kind,
            DecodeErrorKind::BadJson
        );
        assert_eq!(
            decode(None, Some(b"{\"a\":1}")).unwrap_err().kind,
            DecodeErrorKind::NotAnEnvelope
        );
        let value = br#"{"before":null,"after":{"id":1},"source":{},"op":"c"}"#;
        assert_eq!(
            decode(None, Some(value)).unwrap_err().kind,
            DecodeErrorKind::MissingKey
        );
    }

    #[test]
    fn negative_decimals_decode() {
        assert_eq!(unscaled_from_bytes(&[0xff]), Some(-1));
        assert_eq!(unscaled_from_bytes(&[0xfb, 0x2e]), Some(-1234));
        assert_eq!(unscaled_from_bytes(&[0x00, 0x80]), Some(128));
    }
}
