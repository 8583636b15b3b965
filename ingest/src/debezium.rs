//! Decodes Debezium change events (Kafka Connect JSON converter, with or without the
//! embedded schema) into typed rows. Pure: bytes in, values out; no I/O.
//!
//! Avro input ([`crate::avro`]) is converted to the Connect JSON form first and decoded by
//! [`decode_envelope`] here, so every mapping below applies to both formats. The one
//! Avro-only row: Avro's `timestamp-millis|micros|nanos` on a schema without a Connect name
//! (an instant by the Avro spec) is `timestamptz`.
//!
//! # Type mapping
//!
//! With an embedded schema, a column's Iceberg type comes from its Kafka Connect type and
//! logical name (the `name` of the field schema), following the Debezium connector
//! documentation's type tables:
//!
//! | Kafka Connect type / logical name                    | JSON value                    | Iceberg column                  |
//! |------------------------------------------------------|-------------------------------|---------------------------------|
//! | `boolean`                                            | `true`                        | boolean                         |
//! | `int8`, `int16`, `int32` (also `io.debezium.time.Year`) | number                     | int                             |
//! | `int64` (also `io.debezium.time.MicroDuration`)      | number                        | long                            |
//! | `float32` / `float64` (also `decimal.handling.mode=double`) | number, `"NaN"`, `"Infinity"` | float / double          |
//! | `string` (also `decimal.handling.mode=string`)       | string                        | string                          |
//! | `bytes`, `io.debezium.data.Bits`                     | base64 string                 | binary (bits little-endian, as sent) |
//! | `io.debezium.time.Date`, `connect.data.Date`         | days since epoch              | date                            |
//! | `io.debezium.time.Time`, `connect.data.Time`         | ms since midnight (int32)     | time (µs)                       |
//! | `io.debezium.time.MicroTime`                         | µs since midnight             | time                            |
//! | `io.debezium.time.NanoTime`                          | ns since midnight             | time (truncated to µs)          |
//! | `io.debezium.time.Timestamp`, `connect.data.Timestamp` | epoch ms                    | timestamp (no zone)             |
//! | `io.debezium.time.MicroTimestamp`                    | epoch µs                      | timestamp                       |
//! | `io.debezium.time.NanoTimestamp`                     | epoch ns                      | timestamp (truncated to µs)     |
//! | `io.debezium.time.ZonedTimestamp`                    | ISO-8601 with offset          | timestamptz (UTC µs)            |
//! | `io.debezium.time.ZonedTime`, `io.debezium.time.Interval` | string                   | string, as sent                 |
//! | `connect.data.Decimal`, precision ≤ 38               | base64 two's complement (or a number with `decimal.format=NUMERIC`, see below) | decimal(p, s) |
//! | `connect.data.Decimal`, precision > 38               | same                          | string: the exact decimal text  |
//! | `io.debezium.data.VariableScaleDecimal`              | `{"scale": s, "value": base64}` | string: the exact decimal text |
//! | `io.debezium.data.Json`, `Xml`, `Enum`, `EnumSet`, `Uuid`, `Ltree`, ... | string     | string, as sent                 |
//! | `struct` (`io.debezium.data.geometry.*`, ...), `array`, `map` | object / array       | string: the JSON text           |
//!
//! Choices worth knowing:
//!
//! - Iceberg decimals hold at most 38 digits. A `Decimal` column whose declared precision
//!   (after folding a negative scale into it) exceeds 38 becomes a string column with the
//!   exact decimal text (`"-12.340"`) rather than refusing rows. A value that does not fit
//!   its declared precision is refused as `bad_value`. With `decimal.format=NUMERIC` the
//!   value is a JSON number, which serde_json reads as an f64 unless it is an integer; it
//!   is accepted only where that is exact (integers, or precision ≤ 15), else `bad_value`.
//! - `VariableScaleDecimal` (Postgres `NUMERIC` without a scale) has no fixed scale, so it
//!   cannot be an Iceberg decimal without rounding; it is kept as the exact decimal text.
//! - UUIDs stay strings: Iceberg's `uuid` type is poorly supported by readers.
//! - Iceberg `time` covers one day in microseconds. Values outside `[00:00, 24:00)` (MySQL
//!   `TIME` used as a duration, Postgres `24:00:00`) are refused as `bad_value`.
//!   Nanosecond times and timestamps are truncated towards negative infinity to µs.
//! - An epoch value that overflows microseconds, and a `ZonedTimestamp` that is not an
//!   ISO-8601 instant (Postgres `'infinity'`), are refused as `bad_value`.
//!
//! Without a schema, types are inferred from the JSON values (integers → long, fractions →
//! double, strings → string, a `{"scale", "value"}` object → its exact decimal text, other
//! objects and arrays → their JSON text); a later typed message for the same table then
//! decides the column type and inferred values are coerced to it where that loses nothing
//! (see `bronze`).
//!
//! # Envelopes
//!
//! Ops `c`, `u`, `r` take the row from `after`, `d` from `before`; `t` (truncate) has no
//! row. A null value is a tombstone. A delete whose `before` is null (a Postgres table
//! whose replica identity sends no old row) gets a row built from the message key's
//! fields, typed by the key schema when there is one. The source position is the MySQL
//! binlog coordinates, the Postgres LSN or the MongoDB `ts_ms` + `ord` (see
//! [`source_position`]).
//!
//! MongoDB events carry `after` (and `before`) as a string holding an extended-JSON
//! document. It is parsed and its columns inferred: `{"$oid": ..}` → string of the id,
//! `{"$numberLong"|"$numberInt": ..}` → long, `{"$numberDouble": ..}` → double,
//! `{"$numberDecimal": ..}` → string (exact text), `{"$date": ..}` → timestamptz,
//! `{"$binary": ..}` → binary, other nested documents and arrays → their extended-JSON
//! text. A Mongo delete without a pre-image gets its `_id` from the key's `id` field. A
//! Mongo update without a full document (only `patch` or `updateDescription`, i.e. a
//! connector not in `change_streams_update_full` mode) is refused as `unsupported`: a
//! partial row would make the latest-row-per-key view wrong.

mod borrowed;

use std::cell::RefCell;
use std::sync::Arc;

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
    /// Microseconds since midnight, no time zone.
    Time,
    /// Microseconds, no time zone (MySQL DATETIME, Postgres TIMESTAMP).
    Timestamp,
    /// Microseconds UTC.
    Timestamptz,
    /// `precision` is 1..=38 and `scale` 0..=precision.
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
    /// Microseconds since midnight, in `[0, 86_400_000_000)`.
    Time(i64),
    /// Microseconds since the epoch.
    Micros(i64),
    /// Unscaled value; the scale is the column's.
    Decimal(i128),
}

/// A column name. Names are interned ([`intern`]): the rows of a table share one
/// allocation per name, so cloning a cell's name is a reference-count bump and the
/// commit-time passes over many rows read names that stay in cache.
pub type Name = Arc<str>;

/// Distinct names the per-thread interner keeps before it starts over.
pub const INTERNED_NAMES: usize = 4096;

thread_local! {
    /// Column names seen by this thread's decoder (foldhash: names are short and hashed
    /// once per cell).
    static NAMES: RefCell<datafusion::common::HashSet<Name>> =
        RefCell::new(datafusion::common::HashSet::default());
}

/// The shared [`Name`] for `name`: the one this thread handed out before, or a new one.
/// The set is bounded by [`INTERNED_NAMES`] (emptied when full, so a stream of ever new
/// names costs an allocation each, as before, and no unbounded memory); names already
/// handed out stay valid either way.
pub fn intern(name: &str) -> Name {
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        if let Some(found) = names.get(name) {
            return found.clone();
        }
        if names.len() >= INTERNED_NAMES {
            names.clear();
        }
        let interned: Name = Arc::from(name);
        names.insert(interned.clone());
        interned
    })
}

/// One column of a decoded row.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub name: Name,
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
    /// The row: `after`, or `before` for deletes (the key fields when `before` is null);
    /// empty for truncates.
    pub row: Vec<Cell>,
    /// The primary key fields from the Kafka message key, in key order, as sent (for
    /// MongoDB: `id` holding the extended-JSON text of `_id`).
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
    /// A well-formed event this decoder deliberately does not store (a MongoDB update
    /// without the full document), or an Avro schema firn cannot read.
    Unsupported,
    /// A Confluent wire-format record whose schema id the Schema Registry does not know
    /// (or no `[schema-registry]` is configured).
    UnknownSchemaId,
    /// Avro bytes that do not decode with the schema their id names.
    BadAvro,
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
            DecodeErrorKind::Unsupported => "unsupported",
            DecodeErrorKind::UnknownSchemaId => "unknown_schema_id",
            DecodeErrorKind::BadAvro => "bad_avro",
        }
    }
}

pub(crate) fn error(kind: DecodeErrorKind, message: impl Into<String>) -> DecodeError {
    DecodeError {
        kind,
        message: message.into(),
    }
}

/// A decoded message key: its fields and, with a schema (the JSON converter's embedded one,
/// or the Avro key schema), the key struct's field schemas in Kafka Connect JSON form.
pub(crate) struct Key {
    pub(crate) fields: Vec<(String, Value)>,
    /// Shared by every key with the same schema text (see `borrowed::decode_key`): only a
    /// delete without `before` reads it.
    pub(crate) schemas: Option<Arc<Vec<Value>>>,
}

/// Decodes one Kafka message (key and value bytes) written by the JSON converter.
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let Some(value) = value else {
        return Ok(Decoded::Tombstone);
    };
    decode_json(key.map(decode_key), value)
}

/// Decodes a JSON converter value with its already decoded key: the borrowed fast path
/// for the common shapes, the `Value`-based [`decode_envelope`] for everything else
/// (including every error).
pub(crate) fn decode_json(
    key: Option<Result<Key, DecodeError>>,
    value: &[u8],
) -> Result<Decoded, DecodeError> {
    let key = match key {
        Some(Ok(known)) => match borrowed::decode(&known, value) {
            Some(event) => {
                return Ok(Decoded::Change(ChangeEvent {
                    op: event.op,
                    source_ts_micros: event.source_ts_micros,
                    source_pos: event.source_pos,
                    row: event.row,
                    key: known.fields,
                }));
            }
            None => Some(Ok(known)),
        },
        other => other,
    };
    decode_dom(key, value)
}

/// The `Value`-based decoding of a JSON converter value.
fn decode_dom(key: Option<Result<Key, DecodeError>>, value: &[u8]) -> Result<Decoded, DecodeError> {
    let (schema, payload) = parse_value(value)?;
    decode_envelope(key, schema.as_ref(), payload)
}

/// A JSON converter value split into its embedded schema (if any) and payload.
pub(crate) fn parse_value(value: &[u8]) -> Result<(Option<Value>, Value), DecodeError> {
    let json: Value = serde_json::from_slice(value).map_err(|err| {
        error(
            DecodeErrorKind::BadJson,
            format!("value is not JSON: {err}"),
        )
    })?;
    Ok(split_schema(json))
}

/// Decodes a Debezium envelope in Kafka Connect JSON form: the JSON converter's payload
/// and (optional) schema, or an Avro envelope converted to that form by [`crate::avro`],
/// so both formats share every mapping below. `key` is the already decoded message key;
/// its error is reported only after the envelope itself proved valid.
pub(crate) fn decode_envelope(
    key: Option<Result<Key, DecodeError>>,
    schema: Option<&Value>,
    payload: Value,
) -> Result<Decoded, DecodeError> {
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
    let key = match key {
        Some(decoded) => decoded?,
        None if op == Op::Truncate => Key {
            fields: Vec::new(),
            schemas: None,
        },
        None => return Err(error(DecodeErrorKind::MissingKey, "message has no key")),
    };
    if key.fields.is_empty() && op != Op::Truncate {
        return Err(error(
            DecodeErrorKind::MissingKey,
            "message key has no fields",
        ));
    }
    let row_field = if op == Op::Delete { "before" } else { "after" };
    let row_value = payload.remove(row_field).unwrap_or(Value::Null);
    let mongo =
        source.get("connector").and_then(Value::as_str) == Some("mongodb") || row_value.is_string();
    let row = match (op, row_value) {
        (Op::Truncate, _) => Vec::new(),
        (_, Value::Object(row_object)) => {
            let field_schemas = schema.and_then(|s| struct_field_schema(s, row_field));
            decode_row(row_object, field_schemas)?
        }
        (_, Value::String(document)) => decode_mongo_document(row_field, &document)?,
        (Op::Delete, Value::Null) => cells_from_key(&key, mongo)?,
        (Op::Update, Value::Null)
            if mongo
                && (payload.contains_key("updateDescription") || payload.contains_key("patch")) =>
        {
            return Err(error(
                DecodeErrorKind::Unsupported,
                "MongoDB update without the full document (only `patch`/`updateDescription`); \
                 run the connector with capture.mode=change_streams_update_full",
            ));
        }
        (_, Value::Null) => {
            return Err(error(
                DecodeErrorKind::NotAnEnvelope,
                format!("`{row_field}` is missing for op `{op_code}`"),
            ));
        }
        (_, other) => {
            return Err(error(
                DecodeErrorKind::NotAnEnvelope,
                format!("`{row_field}` is neither an object nor a document string: {other}"),
            ));
        }
    };
    Ok(Decoded::Change(ChangeEvent {
        op,
        source_ts_micros: source_ts_micros(&source, &payload),
        source_pos: source_position(&source),
        row,
        key: key.fields,
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

/// A JSON converter key: `{"id": 7}`, or with its schema embedded (read by the borrowed
/// fast path when it can, which gives the same key).
pub(crate) fn decode_key(bytes: &[u8]) -> Result<Key, DecodeError> {
    if let Some(key) = borrowed::decode_key(bytes) {
        return Ok(key);
    }
    decode_key_dom(bytes)
}

/// The `Value`-based decoding of a JSON converter key.
fn decode_key_dom(bytes: &[u8]) -> Result<Key, DecodeError> {
    let json: Value = serde_json::from_slice(bytes).map_err(|err| {
        error(
            DecodeErrorKind::MissingKey,
            format!("key is not JSON: {err}"),
        )
    })?;
    let (schema, payload) = split_schema(json);
    match payload {
        Value::Object(object) => Ok(Key {
            fields: object.into_iter().collect(),
            schemas: schema
                .as_ref()
                .and_then(|s| s.get("fields"))
                .and_then(Value::as_array)
                .cloned()
                .map(Arc::new),
        }),
        other => Err(error(
            DecodeErrorKind::MissingKey,
            format!("key is not a JSON object: {other}"),
        )),
    }
}

/// The row of a delete without `before`: the key's fields. A MongoDB key's `id` holds
/// the extended-JSON text of `_id`.
fn cells_from_key(key: &Key, mongo: bool) -> Result<Vec<Cell>, DecodeError> {
    if mongo
        && let [(name, id)] = key.fields.as_slice()
        && name == "id"
    {
        let parsed = match id {
            Value::String(text) => serde_json::from_str(text).unwrap_or_else(|_| id.clone()),
            other => other.clone(),
        };
        let (column_type, value) = infer_extended(&parsed);
        return Ok(vec![Cell {
            name: intern("_id"),
            column_type,
            typed: false,
            value,
        }]);
    }
    let row: Map<String, Value> = key.fields.iter().cloned().collect();
    decode_row(row, key.schemas.as_deref())
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
                    name: intern(name),
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
                    name: intern(&name),
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
    let mut shown = value.to_string();
    if shown.len() > 200 {
        let mut end = 200;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push('…');
    }
    error(
        DecodeErrorKind::BadValue,
        format!("column `{name}`: expected {expected}, got {shown}"),
    )
}

/// How a field's JSON value is read, from its Kafka Connect type and logical name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reading {
    Plain(ColumnType),
    Date,
    /// Time of day; the value's unit as a divisor/multiplier of microseconds.
    Time(TimeUnit),
    Timestamp(TimeUnit),
    /// Avro's own `timestamp-millis|micros|nanos`: an instant, UTC.
    Instant(TimeUnit),
    Zoned,
    /// `shift` folds a negative Connect scale into the unscaled value.
    Decimal {
        precision: u8,
        scale: i8,
        shift: u32,
    },
    /// A Connect decimal too wide for Iceberg, kept as its exact text.
    WideDecimal {
        scale: i32,
    },
    VariableScaleDecimal,
    /// Structs, arrays and maps: the JSON text.
    JsonText,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TimeUnit {
    Millis,
    Micros,
    Nanos,
}

impl TimeUnit {
    fn to_micros(self, raw: i64) -> Option<i64> {
        match self {
            TimeUnit::Millis => raw.checked_mul(1000),
            TimeUnit::Micros => Some(raw),
            TimeUnit::Nanos => Some(raw.div_euclid(1000)),
        }
    }
}

/// Iceberg decimals carry at most this many digits.
const MAX_DECIMAL_PRECISION: i64 = 38;

fn reading(schema: &Value) -> Reading {
    let connect_type = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string");
    let logical = schema.get("name").and_then(Value::as_str).unwrap_or("");
    let parameter = |key: &str| {
        let raw = schema.get("parameters")?.get(key)?;
        match raw {
            Value::String(text) => text.trim().parse::<i64>().ok(),
            other => other.as_i64(),
        }
    };
    match (logical, connect_type) {
        ("io.debezium.time.Date" | "org.apache.kafka.connect.data.Date", _) => Reading::Date,
        ("io.debezium.time.Time" | "org.apache.kafka.connect.data.Time", _) => {
            Reading::Time(TimeUnit::Millis)
        }
        ("io.debezium.time.MicroTime", _) => Reading::Time(TimeUnit::Micros),
        ("io.debezium.time.NanoTime", _) => Reading::Time(TimeUnit::Nanos),
        ("io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp", _) => {
            Reading::Timestamp(TimeUnit::Millis)
        }
        ("io.debezium.time.MicroTimestamp", _) => Reading::Timestamp(TimeUnit::Micros),
        ("io.debezium.time.NanoTimestamp", _) => Reading::Timestamp(TimeUnit::Nanos),
        ("io.debezium.time.ZonedTimestamp", _) => Reading::Zoned,
        ("org.apache.kafka.connect.data.Decimal", _) => {
            let scale = parameter("scale").unwrap_or(0).clamp(-1000, 1000);
            let declared = parameter("connect.decimal.precision")
                .filter(|p| *p > 0)
                .unwrap_or(MAX_DECIMAL_PRECISION);
            // A negative scale (Oracle NUMBER(p, -s)) moves digits left of the point:
            // fold it into the unscaled value and the precision.
            let shift = (-scale).max(0);
            let precision = declared.saturating_add(shift).max(scale);
            if precision > MAX_DECIMAL_PRECISION {
                Reading::WideDecimal {
                    scale: scale as i32,
                }
            } else {
                Reading::Decimal {
                    precision: precision as u8,
                    scale: scale.max(0) as i8,
                    shift: shift as u32,
                }
            }
        }
        ("io.debezium.data.VariableScaleDecimal", _) => Reading::VariableScaleDecimal,
        // Avro's instant types carry no Connect name (see `avro`, which maps Avro's other
        // logical types to their Connect equivalents); JSON schemas never have this key.
        ("", "int64") => match schema.get("logicalType").and_then(Value::as_str) {
            Some("timestamp-millis") => Reading::Instant(TimeUnit::Millis),
            Some("timestamp-micros") => Reading::Instant(TimeUnit::Micros),
            Some("timestamp-nanos") => Reading::Instant(TimeUnit::Nanos),
            _ => Reading::Plain(ColumnType::Long),
        },
        (_, "boolean") => Reading::Plain(ColumnType::Boolean),
        (_, "int8" | "int16" | "int32") => Reading::Plain(ColumnType::Int),
        (_, "int64") => Reading::Plain(ColumnType::Long),
        (_, "float32" | "float") => Reading::Plain(ColumnType::Float),
        (_, "float64" | "double") => Reading::Plain(ColumnType::Double),
        (_, "bytes") => Reading::Plain(ColumnType::Binary),
        (_, "struct" | "array" | "map") => Reading::JsonText,
        _ => Reading::Plain(ColumnType::String),
    }
}

impl Reading {
    fn column_type(self) -> ColumnType {
        match self {
            Reading::Plain(column_type) => column_type,
            Reading::Date => ColumnType::Date,
            Reading::Time(_) => ColumnType::Time,
            Reading::Timestamp(_) => ColumnType::Timestamp,
            Reading::Instant(_) | Reading::Zoned => ColumnType::Timestamptz,
            Reading::Decimal {
                precision, scale, ..
            } => ColumnType::Decimal { precision, scale },
            Reading::WideDecimal { .. } | Reading::VariableScaleDecimal | Reading::JsonText => {
                ColumnType::String
            }
        }
    }
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Maps a Kafka Connect field schema and its JSON value to an Iceberg type and value.
fn decode_typed(
    name: &str,
    schema: &Value,
    value: &Value,
) -> Result<(ColumnType, CellValue), DecodeError> {
    decode_read(name, reading(schema), value)
}

/// A row struct's field schemas prepared once per schema: every field's name interned and
/// its reading decided, so a row typed by a cached schema costs neither per cell.
#[derive(Debug)]
pub(crate) struct RowPlan {
    fields: Vec<(Name, Reading)>,
}

impl RowPlan {
    /// The plan of a struct's `fields`; fields without a name are skipped, as
    /// [`decode_row`] skips them. `None` when two fields share a name (a row value then
    /// feeds two cells, which only [`decode_row`] handles).
    pub(crate) fn new(fields: &[Value]) -> Option<RowPlan> {
        let fields: Vec<(Name, Reading)> = fields
            .iter()
            .filter_map(|field| {
                let name = field.get("field").and_then(Value::as_str)?;
                Some((intern(name), reading(field)))
            })
            .collect();
        let mut names: Vec<&str> = fields.iter().map(|(name, _)| &**name).collect();
        names.sort_unstable();
        let unique = names.windows(2).all(|pair| pair[0] != pair[1]);
        unique.then_some(RowPlan { fields })
    }

    pub(crate) fn len(&self) -> usize {
        self.fields.len()
    }

    /// The position of field `name`, looked for first at `hint` (rows list their fields
    /// in schema order).
    pub(crate) fn position(&self, name: &str, hint: usize) -> Option<usize> {
        match self.fields.get(hint) {
            Some((field, _)) if &**field == name => Some(hint),
            _ => self.fields.iter().position(|(field, _)| &**field == name),
        }
    }

    /// The cells of a row whose values are in field order (`None`: absent, read as null),
    /// as [`decode_row`] gives them for the same fields and values.
    pub(crate) fn decode(&self, values: Vec<Option<Value>>) -> Result<Vec<Cell>, DecodeError> {
        let mut cells = Vec::with_capacity(self.fields.len());
        for ((name, reading), value) in self.fields.iter().zip(values) {
            let value = value.unwrap_or(Value::Null);
            let (column_type, decoded) = decode_read(name, *reading, &value)?;
            cells.push(Cell {
                name: name.clone(),
                column_type,
                typed: true,
                value: decoded,
            });
        }
        Ok(cells)
    }
}

/// Maps a JSON value read as `reading` to an Iceberg type and value.
fn decode_read(
    name: &str,
    reading: Reading,
    value: &Value,
) -> Result<(ColumnType, CellValue), DecodeError> {
    let column_type = reading.column_type();
    if value.is_null() {
        return Ok((column_type, CellValue::Null));
    }
    let integer = |expected: &str| value.as_i64().ok_or_else(|| bad(name, expected, value));
    let decoded = match reading {
        Reading::Plain(ColumnType::Boolean) => CellValue::Boolean(
            value
                .as_bool()
                .ok_or_else(|| bad(name, "a boolean", value))?,
        ),
        Reading::Plain(ColumnType::Int) => CellValue::Int(
            i32::try_from(integer("a 32-bit integer")?)
                .map_err(|_| bad(name, "a 32-bit integer", value))?,
        ),
        Reading::Plain(ColumnType::Long) => CellValue::Long(integer("an integer")?),
        Reading::Plain(ColumnType::Float) => {
            CellValue::Float(float(value).ok_or_else(|| bad(name, "a number", value))? as f32)
        }
        Reading::Plain(ColumnType::Double) => {
            CellValue::Double(float(value).ok_or_else(|| bad(name, "a number", value))?)
        }
        Reading::Plain(ColumnType::Binary) => CellValue::Binary(
            value
                .as_str()
                .and_then(base64_bytes)
                .ok_or_else(|| bad(name, "base64 bytes", value))?,
        ),
        Reading::Plain(_) => CellValue::String(json_text(value)),
        Reading::Date => CellValue::Date(
            i32::try_from(integer("days since epoch")?)
                .map_err(|_| bad(name, "days since epoch", value))?,
        ),
        Reading::Time(unit) => {
            let micros = unit
                .to_micros(integer("a time of day")?)
                .filter(|us| (0..MICROS_PER_DAY).contains(us))
                .ok_or_else(|| bad(name, "a time of day within 00:00..24:00", value))?;
            CellValue::Time(micros)
        }
        Reading::Timestamp(unit) | Reading::Instant(unit) => CellValue::Micros(
            unit.to_micros(integer("an epoch timestamp")?)
                .ok_or_else(|| bad(name, "an epoch timestamp within ±292,000 years", value))?,
        ),
        Reading::Zoned => CellValue::Micros(
            value
                .as_str()
                .and_then(parse_zoned_timestamp)
                .ok_or_else(|| bad(name, "an ISO-8601 timestamp with offset", value))?,
        ),
        Reading::Decimal {
            precision,
            scale,
            shift,
        } => CellValue::Decimal(decimal_value(value, precision, scale, shift).ok_or_else(
            || {
                bad(
                    name,
                    &format!(
                        "a decimal({precision}, {scale}) as base64 bytes, or as a JSON number \
                         only when an f64 holds it exactly (an integer, or precision ≤ 15)"
                    ),
                    value,
                )
            },
        )?),
        Reading::WideDecimal { scale } => CellValue::String(match value {
            // `decimal.format=NUMERIC`: only integers survive JSON parsing exactly.
            Value::Number(number) if number.is_i64() || number.is_u64() => {
                let mut text = number.to_string();
                if scale > 0 {
                    text.push('.');
                    text.extend(std::iter::repeat_n('0', scale.unsigned_abs() as usize));
                }
                text
            }
            other => other
                .as_str()
                .and_then(base64_bytes)
                .and_then(|bytes| decimal_text(&bytes, scale))
                .ok_or_else(|| bad(name, "base64 decimal bytes", value))?,
        }),
        Reading::VariableScaleDecimal => CellValue::String(
            variable_scale_decimal(value)
                .ok_or_else(|| bad(name, "a {scale, value} decimal struct", value))?,
        ),
        Reading::JsonText => CellValue::String(json_text(value)),
    };
    Ok((column_type, decoded))
}

/// A string as itself, anything else as its JSON text.
fn json_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A JSON number, or the strings Jackson writes for non-finite doubles.
fn float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => match text.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn base64_bytes(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// RFC 3339 as Debezium's `ZonedTimestamp` writes it; seconds may be absent.
fn parse_zoned_timestamp(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .or_else(|_| chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M%#z"))
        .ok()
        .map(|parsed| parsed.timestamp_micros())
}

/// The unscaled value of a Connect decimal: base64 bytes, or a JSON number
/// (`decimal.format=NUMERIC`) that must be exact at `scale`. Checked against `precision`.
fn decimal_value(value: &Value, precision: u8, scale: i8, shift: u32) -> Option<i128> {
    let unscaled = match value {
        Value::String(text) => {
            unscaled_from_bytes(&base64_bytes(text)?)?.checked_mul(10i128.checked_pow(shift)?)?
        }
        // Without serde_json's `arbitrary_precision` a fractional number is an f64: its
        // shortest text is the sent text only up to 15 significant digits.
        Value::Number(number) if number.is_i64() || number.is_u64() || precision <= 15 => {
            decimal_text_to_unscaled(&number.to_string(), i32::from(scale))?
        }
        _ => return None,
    };
    (unscaled.unsigned_abs() < 10u128.pow(u32::from(precision))).then_some(unscaled)
}

/// `{"scale": 3, "value": "MDk="}` → `"12.345"`.
fn variable_scale_decimal(value: &Value) -> Option<String> {
    let scale = i32::try_from(value.get("scale")?.as_i64()?).ok()?;
    let bytes = base64_bytes(value.get("value")?.as_str()?)?;
    decimal_text(&bytes, scale)
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

/// Longest unscaled value (in bytes) and scale magnitude written out as text; Postgres
/// `NUMERIC` can be far longer, but no real column is.
const MAX_TEXT_DECIMAL_BYTES: usize = 1024;
const MAX_TEXT_DECIMAL_SCALE: i32 = 1000;

/// Big-endian two's-complement bytes at `scale` to exact decimal text (`"-0.050"`).
fn decimal_text(bytes: &[u8], scale: i32) -> Option<String> {
    if bytes.is_empty()
        || bytes.len() > MAX_TEXT_DECIMAL_BYTES
        || scale.unsigned_abs() > MAX_TEXT_DECIMAL_SCALE.unsigned_abs()
    {
        return None;
    }
    let negative = bytes[0] & 0x80 != 0;
    let mut magnitude = bytes.to_vec();
    if negative {
        // Two's complement: invert and add one.
        for byte in &mut magnitude {
            *byte = !*byte;
        }
        for byte in magnitude.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
    }
    // Repeated division by ten, least significant digit first.
    let mut digits = Vec::new();
    let mut start = magnitude
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(magnitude.len());
    while start < magnitude.len() {
        let mut remainder = 0u32;
        for byte in &mut magnitude[start..] {
            let current = (remainder << 8) | u32::from(*byte);
            *byte = (current / 10) as u8;
            remainder = current % 10;
        }
        digits.push(b'0' + remainder as u8);
        while start < magnitude.len() && magnitude[start] == 0 {
            start += 1;
        }
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    let mut text = String::from_utf8(digits).ok()?;
    if scale < 0 && text != "0" {
        text.extend(std::iter::repeat_n('0', scale.unsigned_abs() as usize));
    } else if scale > 0 {
        let scale = scale as usize;
        if text.len() <= scale {
            text = format!("{}{text}", "0".repeat(scale + 1 - text.len()));
        }
        text.insert(text.len() - scale, '.');
    }
    if negative {
        text.insert(0, '-');
    }
    Some(text)
}

/// Decimal text (`"-12.5"`, `"1.25e3"`) to its unscaled value at `scale`, when exact.
fn decimal_text_to_unscaled(text: &str, scale: i32) -> Option<i128> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fraction_len = i32::try_from(fraction.len()).ok()?;
    // value = digits × 10^(exponent − fraction_len); unscaled = value × 10^scale.
    let shift = scale.checked_add(exponent)?.checked_sub(fraction_len)?;
    let digits = digits.trim_start_matches('0');
    let unscaled: i128 = if digits.is_empty() {
        0
    } else if shift >= 0 {
        let base: i128 = digits.parse().ok()?;
        base.checked_mul(10i128.checked_pow(u32::try_from(shift).ok()?)?)?
    } else {
        let cut = usize::try_from(shift.unsigned_abs()).ok()?;
        if cut >= digits.len() {
            return None; // nonzero digits would be dropped
        }
        let (kept, dropped) = digits.split_at(digits.len() - cut);
        if dropped.bytes().any(|b| b != b'0') {
            return None;
        }
        kept.parse().ok()?
    };
    Some(if negative { -unscaled } else { unscaled })
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
        Value::Object(object)
            if object.len() == 2
                && object.contains_key("scale")
                && object.contains_key("value") =>
        {
            // A schemaless `VariableScaleDecimal`; anything else of that shape stays JSON.
            match variable_scale_decimal(value) {
                Some(text) => (ColumnType::String, CellValue::String(text)),
                None => (ColumnType::String, CellValue::String(value.to_string())),
            }
        }
        other => (ColumnType::String, CellValue::String(other.to_string())),
    }
}

/// Parses a MongoDB extended-JSON document (`after`/`before`) into inferred cells.
fn decode_mongo_document(field: &str, document: &str) -> Result<Vec<Cell>, DecodeError> {
    let parsed: Value = serde_json::from_str(document).map_err(|err| {
        error(
            DecodeErrorKind::BadJson,
            format!("`{field}` is not an extended-JSON document: {err}"),
        )
    })?;
    let Value::Object(object) = parsed else {
        return Err(error(
            DecodeErrorKind::NotAnEnvelope,
            format!("`{field}` is not a document"),
        ));
    };
    Ok(object
        .into_iter()
        .map(|(name, value)| {
            let (column_type, value) = infer_extended(&value);
            Cell {
                name: intern(&name),
                column_type,
                typed: false,
                value,
            }
        })
        .collect())
}

/// Infers a type from a MongoDB extended-JSON value (relaxed, canonical or legacy form).
fn infer_extended(value: &Value) -> (ColumnType, CellValue) {
    let Value::Object(object) = value else {
        return infer(value);
    };
    let wrapper = object.iter().next().filter(|_| object.len() <= 2);
    let Some((tag, inner)) = wrapper else {
        return (ColumnType::String, CellValue::String(value.to_string()));
    };
    let text = inner.as_str();
    let typed = match (tag.as_str(), object.len()) {
        ("$oid" | "$symbol" | "$uuid", 1) => {
            text.map(|t| (ColumnType::String, CellValue::String(t.to_string())))
        }
        ("$numberLong" | "$numberInt", 1) => text
            .and_then(|t| t.parse::<i64>().ok())
            .map(|l| (ColumnType::Long, CellValue::Long(l))),
        ("$numberDouble", 1) => text
            .and_then(|t| match t {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                _ => t.parse::<f64>().ok(),
            })
            .map(|d| (ColumnType::Double, CellValue::Double(d))),
        // No fixed scale: keep the exact text, as for `VariableScaleDecimal`.
        ("$numberDecimal", 1) => {
            text.map(|t| (ColumnType::String, CellValue::String(t.to_string())))
        }
        ("$date", 1) => {
            mongo_date(inner).map(|us| (ColumnType::Timestamptz, CellValue::Micros(us)))
        }
        ("$binary", _) => {
            let encoded = match inner {
                Value::Object(canonical) if object.len() == 1 => {
                    canonical.get("base64").and_then(Value::as_str)
                }
                Value::String(legacy) if object.contains_key("$type") => Some(legacy.as_str()),
                _ => None,
            };
            encoded
                .and_then(base64_bytes)
                .map(|bytes| (ColumnType::Binary, CellValue::Binary(bytes)))
        }
        _ => None,
    };
    typed.unwrap_or_else(|| (ColumnType::String, CellValue::String(value.to_string())))
}

/// `{"$date": ..}` in its three spellings: epoch ms, ISO-8601, `{"$numberLong": ms}`.
fn mongo_date(inner: &Value) -> Option<i64> {
    let millis = match inner {
        Value::Number(number) => number.as_i64()?,
        Value::String(text) => return parse_zoned_timestamp(text),
        Value::Object(object) => object.get("$numberLong")?.as_str()?.parse().ok()?,
        _ => return None,
    };
    millis.checked_mul(1000)
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
/// and row; Postgres LSN; MongoDB oplog time (`ts_ms`, whole seconds) and ordinal within
/// that second. Numbers are zero-padded.
pub fn source_position(source: &Value) -> Option<String> {
    let number = |key: &str| source.get(key).and_then(Value::as_i64);
    let text = |key: &str| source.get(key).and_then(Value::as_str);
    position_of(
        text("file"),
        number("pos"),
        number("row"),
        number("lsn"),
        text("sequence"),
        number("ts_ms"),
        number("ord"),
    )
}

/// [`source_position`] from the `source` fields it reads.
fn position_of(
    file: Option<&str>,
    pos: Option<i64>,
    row: Option<i64>,
    lsn: Option<i64>,
    sequence: Option<&str>,
    ts_ms: Option<i64>,
    ord: Option<i64>,
) -> Option<String> {
    if let (Some(file), Some(pos)) = (file, pos) {
        return Some(format!("{file}:{pos:020}:{:06}", row.unwrap_or(0)));
    }
    if let Some(lsn) = lsn {
        // LSNs of different transactions interleave; Debezium's `sequence`
        // ["last committed LSN", "LSN"] orders events as they were emitted.
        let last_commit = sequence
            .and_then(|text| serde_json::from_str::<Vec<Option<String>>>(text).ok())
            .and_then(|parts| parts.first().cloned().flatten())
            .and_then(|text| text.parse::<i64>().ok())
            .unwrap_or(0);
        return Some(format!("{last_commit:020}:{lsn:020}"));
    }
    if let (Some(ts), Some(ord)) = (ts_ms, ord) {
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
        let cell = |name: &str| event.row.iter().find(|c| &*c.name == name).unwrap().clone();
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
        assert_eq!(
            event.source_pos.as_deref(),
            Some("00000000000000000000:00000000000000012345")
        );
        let names: Vec<_> = event
            .row
            .iter()
            .map(|c| (&*c.name, c.column_type))
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

    // ---- helpers for one-column envelopes -------------------------------------------------

    /// A `c` event whose `after` has the single field `v` with `field_schema`, as the JSON
    /// converter writes it with `schemas.enable=true`.
    fn typed_event(field_schema: Value, value: Value) -> Vec<u8> {
        let mut field = field_schema;
        field["field"] = json!("v");
        field["optional"] = json!(true);
        let id = json!({"field": "id", "type": "int32", "optional": false});
        json!({
            "schema": {"type": "struct", "name": "dbserver1.inventory.t.Envelope", "fields": [
                {"field": "before", "type": "struct", "optional": true, "fields": [id, field]},
                {"field": "after", "type": "struct", "optional": true, "fields": [id, field]},
                {"field": "source", "type": "struct", "fields": []},
                {"field": "op", "type": "string"},
                {"field": "ts_ms", "type": "int64", "optional": true}
            ]},
            "payload": {
                "before": null,
                "after": {"id": 1, "v": value},
                "source": {"connector": "postgresql", "lsn": 24023128, "ts_ms": 1700000000000i64},
                "op": "c", "ts_ms": 1700000000100i64
            }
        })
        .to_string()
        .into_bytes()
    }

    fn schemaless_event(value: Value) -> Vec<u8> {
        json!({"before": null, "after": {"id": 1, "v": value},
               "source": {"connector": "mysql", "file": "binlog.000001", "pos": 4, "ts_ms": 1},
               "op": "c"})
        .to_string()
        .into_bytes()
    }

    fn change(value: &[u8]) -> ChangeEvent {
        match decode(Some(br#"{"id":1}"#), Some(value)).unwrap() {
            Decoded::Change(event) => event,
            Decoded::Tombstone => panic!("expected a change"),
        }
    }

    fn cell_v(value: &[u8]) -> (ColumnType, CellValue) {
        let event = change(value);
        let cell = event
            .row
            .iter()
            .find(|c| &*c.name == "v")
            .expect("column v");
        (cell.column_type, cell.value.clone())
    }

    fn typed(schema: Value, value: Value) -> (ColumnType, CellValue) {
        cell_v(&typed_event(schema, value))
    }

    fn typed_err(schema: Value, value: Value) -> DecodeErrorKind {
        decode(Some(br#"{"id":1}"#), Some(&typed_event(schema, value)))
            .unwrap_err()
            .kind
    }

    fn schemaless(value: Value) -> (ColumnType, CellValue) {
        cell_v(&schemaless_event(value))
    }

    fn logical(connect_type: &str, name: &str) -> Value {
        json!({"type": connect_type, "name": name, "version": 1})
    }

    fn decimal_schema(precision: i64, scale: i64) -> Value {
        json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
               "parameters": {"scale": scale.to_string(),
                              "connect.decimal.precision": precision.to_string()}})
    }

    /// Minimal big-endian two's complement, as Java's `BigInteger.toByteArray`.
    fn twos_complement(value: i128) -> Vec<u8> {
        let bytes = value.to_be_bytes();
        let mut start = 0;
        while start < 15 {
            let (head, next) = (bytes[start], bytes[start + 1]);
            if (head == 0x00 && next & 0x80 == 0) || (head == 0xff && next & 0x80 != 0) {
                start += 1;
            } else {
                break;
            }
        }
        bytes[start..].to_vec()
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    // ---- temporal types ---------------------------------------------------------------------

    #[test]
    fn date_is_days_since_epoch() {
        let date = logical("int32", "io.debezium.time.Date");
        assert_eq!(
            typed(date, json!(19723)),
            (ColumnType::Date, CellValue::Date(19723))
        );
        let connect = logical("int32", "org.apache.kafka.connect.data.Date");
        assert_eq!(
            typed(connect, json!(-1)),
            (ColumnType::Date, CellValue::Date(-1))
        );
        // Schemaless: a plain integer, coerced to date by bronze when the column is a date.
        assert_eq!(
            schemaless(json!(19723)),
            (ColumnType::Long, CellValue::Long(19723))
        );
    }

    #[test]
    fn time_is_milliseconds_since_midnight() {
        // MySQL TIME(3) / Postgres TIME(3) with adaptive precision: int32 ms.
        let time = logical("int32", "io.debezium.time.Time");
        assert_eq!(
            typed(time, json!(45_296_789)), // 12:34:56.789
            (ColumnType::Time, CellValue::Time(45_296_789_000))
        );
        let connect = logical("int32", "org.apache.kafka.connect.data.Time");
        assert_eq!(
            typed(connect, json!(1000)),
            (ColumnType::Time, CellValue::Time(1_000_000))
        );
    }

    #[test]
    fn micro_time_and_nano_time() {
        let micro = logical("int64", "io.debezium.time.MicroTime");
        assert_eq!(
            typed(micro.clone(), json!(45_296_789_123i64)),
            (ColumnType::Time, CellValue::Time(45_296_789_123))
        );
        let nano = logical("int64", "io.debezium.time.NanoTime");
        assert_eq!(
            typed(nano, json!(45_296_789_123_456i64)),
            (ColumnType::Time, CellValue::Time(45_296_789_123))
        );
        // MySQL TIME as a duration (-01:00:00, 25:00:00) and Postgres 24:00:00 do not fit
        // Iceberg time.
        assert_eq!(
            typed_err(micro.clone(), json!(-3_600_000_000i64)),
            DecodeErrorKind::BadValue
        );
        assert_eq!(
            typed_err(micro, json!(86_400_000_000i64)),
            DecodeErrorKind::BadValue
        );
    }

    #[test]
    fn timestamps_in_three_units() {
        let ms = logical("int64", "io.debezium.time.Timestamp");
        assert_eq!(
            typed(ms, json!(1_529_476_623_000i64)), // DATETIME 2018-06-20 06:37:03
            (
                ColumnType::Timestamp,
                CellValue::Micros(1_529_476_623_000_000)
            )
        );
        let connect = logical("int64", "org.apache.kafka.connect.data.Timestamp");
        assert_eq!(
            typed(connect, json!(-1)),
            (ColumnType::Timestamp, CellValue::Micros(-1000))
        );
        let us = logical("int64", "io.debezium.time.MicroTimestamp");
        assert_eq!(
            typed(us, json!(1_529_476_623_123_456i64)),
            (
                ColumnType::Timestamp,
                CellValue::Micros(1_529_476_623_123_456)
            )
        );
        let ns = logical("int64", "io.debezium.time.NanoTimestamp");
        assert_eq!(
            typed(ns.clone(), json!(1_529_476_623_123_456_789i64)),
            (
                ColumnType::Timestamp,
                CellValue::Micros(1_529_476_623_123_456)
            )
        );
        // Before the epoch, truncation goes towards the past.
        assert_eq!(
            typed(ns, json!(-1)),
            (ColumnType::Timestamp, CellValue::Micros(-1))
        );
        let overflow = logical("int64", "io.debezium.time.Timestamp");
        assert_eq!(
            typed_err(overflow, json!(i64::MAX)),
            DecodeErrorKind::BadValue
        );
    }

    #[test]
    fn zoned_timestamp_is_timestamptz_in_utc() {
        let zoned = logical("string", "io.debezium.time.ZonedTimestamp");
        assert_eq!(
            typed(zoned.clone(), json!("2018-06-20T13:37:03Z")),
            (
                ColumnType::Timestamptz,
                CellValue::Micros(1_529_501_823_000_000)
            )
        );
        assert_eq!(
            typed(zoned.clone(), json!("2018-06-20T15:37:03.123456+02:00")),
            (
                ColumnType::Timestamptz,
                CellValue::Micros(1_529_501_823_123_456)
            )
        );
        assert_eq!(
            typed_err(zoned, json!("yesterday")),
            DecodeErrorKind::BadValue
        );
        // Schemaless: the ISO text; bronze parses it into a timestamptz column.
        assert_eq!(
            schemaless(json!("2018-06-20T13:37:03Z")),
            (
                ColumnType::String,
                CellValue::String("2018-06-20T13:37:03Z".into())
            )
        );
    }

    #[test]
    fn zoned_time_interval_year_and_duration_keep_their_form() {
        assert_eq!(
            typed(
                logical("string", "io.debezium.time.ZonedTime"),
                json!("13:37:03.5Z")
            ),
            (ColumnType::String, CellValue::String("13:37:03.5Z".into()))
        );
        assert_eq!(
            typed(
                logical("string", "io.debezium.time.Interval"),
                json!("P1Y2M3DT4H5M6.78S")
            ),
            (
                ColumnType::String,
                CellValue::String("P1Y2M3DT4H5M6.78S".into())
            )
        );
        assert_eq!(
            typed(logical("int32", "io.debezium.time.Year"), json!(2024)),
            (ColumnType::Int, CellValue::Int(2024))
        );
        assert_eq!(
            typed(
                logical("int64", "io.debezium.time.MicroDuration"),
                json!(3_600_000_000i64)
            ),
            (ColumnType::Long, CellValue::Long(3_600_000_000))
        );
    }

    // ---- numbers ---------------------------------------------------------------------------

    #[test]
    fn connect_decimal_from_base64_and_from_numeric_format() {
        // -12.34 at scale 2: unscaled -1234 = 0xFB2E.
        assert_eq!(
            typed(decimal_schema(10, 2), json!("+y4=")),
            (
                ColumnType::Decimal {
                    precision: 10,
                    scale: 2
                },
                CellValue::Decimal(-1234)
            )
        );
        // decimal.format=NUMERIC writes a JSON number.
        assert_eq!(
            typed(decimal_schema(10, 2), json!(12.3)).1,
            CellValue::Decimal(1230)
        );
        assert_eq!(
            typed_err(decimal_schema(10, 2), json!(12.345)),
            DecodeErrorKind::BadValue
        );
        // Beyond 15 digits a fractional JSON number has already lost digits to f64.
        assert_eq!(
            typed_err(decimal_schema(20, 2), json!(12.3)),
            DecodeErrorKind::BadValue
        );
        assert_eq!(
            typed(decimal_schema(20, 2), json!(123_456_789_012_345_678u64)).1,
            CellValue::Decimal(12_345_678_901_234_567_800)
        );
        assert_eq!(
            typed(decimal_schema(65, 2), json!(7)).1,
            CellValue::String("7.00".into())
        );
        // 10^10 does not fit decimal(10, 0).
        assert_eq!(
            typed_err(
                decimal_schema(10, 0),
                json!(b64(&twos_complement(10_000_000_000)))
            ),
            DecodeErrorKind::BadValue
        );
        // Schemaless: the base64 text, coerced by bronze once the column is typed.
        assert_eq!(
            schemaless(json!("+y4=")),
            (ColumnType::String, CellValue::String("+y4=".into()))
        );
    }

    #[test]
    fn negative_scale_folds_into_the_precision() {
        // NUMBER(5, -2): unscaled 123 means 12300.
        assert_eq!(
            typed(decimal_schema(5, -2), json!(b64(&[123]))),
            (
                ColumnType::Decimal {
                    precision: 7,
                    scale: 0
                },
                CellValue::Decimal(12300)
            )
        );
    }

    #[test]
    fn decimals_wider_than_38_digits_become_exact_text() {
        // MySQL DECIMAL(65, 2) holding 2^128 / 100.
        let mut bytes = vec![0x01];
        bytes.extend([0u8; 16]);
        assert_eq!(
            typed(decimal_schema(65, 2), json!(b64(&bytes))),
            (
                ColumnType::String,
                CellValue::String("3402823669209384634633746074317682114.56".into())
            )
        );
        let mut negative = vec![0xff];
        negative.extend([0u8; 16]);
        assert_eq!(
            typed(decimal_schema(65, 2), json!(b64(&negative))).1,
            CellValue::String("-3402823669209384634633746074317682114.56".into())
        );
    }

    #[test]
    fn variable_scale_decimal_is_exact_text() {
        let schema = json!({"type": "struct", "name": "io.debezium.data.VariableScaleDecimal",
            "version": 1, "fields": [
                {"field": "scale", "type": "int32", "optional": false},
                {"field": "value", "type": "bytes", "optional": false}]});
        // 12.340: unscaled 12340 = 0x3034, scale 3.
        let value = json!({"scale": 3, "value": b64(&[0x30, 0x34])});
        assert_eq!(
            typed(schema.clone(), value.clone()),
            (ColumnType::String, CellValue::String("12.340".into()))
        );
        assert_eq!(
            typed(schema, json!({"scale": 4, "value": b64(&[0xff])})).1,
            CellValue::String("-0.0001".into())
        );
        // Schemaless, the struct arrives as an object of the same shape.
        assert_eq!(
            schemaless(value),
            (ColumnType::String, CellValue::String("12.340".into()))
        );
    }

    #[test]
    fn decimal_handling_modes_string_and_double() {
        assert_eq!(
            typed(json!({"type": "string"}), json!("12.340")),
            (ColumnType::String, CellValue::String("12.340".into()))
        );
        assert_eq!(
            typed(json!({"type": "double"}), json!(12.34)),
            (ColumnType::Double, CellValue::Double(12.34))
        );
        // Postgres NUMERIC 'NaN' in double mode; Jackson quotes non-finite numbers.
        let (column_type, value) = typed(json!({"type": "float64"}), json!("NaN"));
        assert_eq!(column_type, ColumnType::Double);
        assert!(matches!(value, CellValue::Double(d) if d.is_nan()));
        assert_eq!(
            typed(json!({"type": "float32"}), json!("-Infinity")),
            (ColumnType::Float, CellValue::Float(f32::NEG_INFINITY))
        );
    }

    #[test]
    fn small_integers_are_int() {
        assert_eq!(
            typed(json!({"type": "int8"}), json!(-128)),
            (ColumnType::Int, CellValue::Int(-128))
        );
        assert_eq!(
            typed(json!({"type": "int16"}), json!(255)), // MySQL TINYINT UNSIGNED
            (ColumnType::Int, CellValue::Int(255))
        );
        assert_eq!(
            typed_err(json!({"type": "int32"}), json!(1i64 << 40)),
            DecodeErrorKind::BadValue
        );
    }

    // ---- other logical names ---------------------------------------------------------------

    #[test]
    fn string_logical_types_keep_their_text() {
        for (name, text) in [
            ("io.debezium.data.Json", r#"{"a": [1, 2]}"#),
            ("io.debezium.data.Enum", "shipped"),
            ("io.debezium.data.EnumSet", "red,green"),
            (
                "io.debezium.data.Uuid",
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            ),
            ("io.debezium.data.Xml", "<a>1</a>"),
        ] {
            assert_eq!(
                typed(logical("string", name), json!(text)),
                (ColumnType::String, CellValue::String(text.into())),
                "{name}"
            );
        }
    }

    #[test]
    fn bits_are_binary() {
        // BIT(10) b'1000000001': little-endian bytes 0x01 0x02.
        let schema = json!({"type": "bytes", "name": "io.debezium.data.Bits", "version": 1,
                            "parameters": {"length": "10"}});
        assert_eq!(
            typed(schema, json!("AQI=")),
            (ColumnType::Binary, CellValue::Binary(vec![0x01, 0x02]))
        );
    }

    #[test]
    fn geometry_and_arrays_are_json_text() {
        let point = json!({"type": "struct", "name": "io.debezium.data.geometry.Point",
            "version": 1, "fields": [
                {"field": "x", "type": "float64"}, {"field": "y", "type": "float64"},
                {"field": "wkb", "type": "bytes", "optional": true},
                {"field": "srid", "type": "int32", "optional": true}]});
        let value = json!({"x": 1.5, "y": 2.0, "wkb": null, "srid": null});
        let (column_type, cell) = typed(point, value.clone());
        assert_eq!(column_type, ColumnType::String);
        let CellValue::String(text) = cell else {
            panic!("expected text")
        };
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
        let geometry = json!({"type": "struct", "name": "io.debezium.data.geometry.Geometry",
            "fields": [{"field": "wkb", "type": "bytes"}, {"field": "srid", "type": "int32"}]});
        assert_eq!(
            typed(geometry, json!({"wkb": "AQEAAAA=", "srid": 4326})).0,
            ColumnType::String
        );
        let array = json!({"type": "array", "items": {"type": "int32"}});
        assert_eq!(
            typed(array, json!([1, 2, 3])),
            (ColumnType::String, CellValue::String("[1,2,3]".into()))
        );
        assert_eq!(
            schemaless(json!(["a", "b"])),
            (ColumnType::String, CellValue::String(r#"["a","b"]"#.into()))
        );
    }

    // ---- envelopes -------------------------------------------------------------------------

    #[test]
    fn postgres_delete_without_before_takes_the_row_from_the_key() {
        let key = json!({
            "schema": {"type": "struct", "name": "dbserver1.public.customers.Key", "optional": false,
                       "fields": [{"field": "id", "type": "int32", "optional": false}]},
            "payload": {"id": 1004}
        })
        .to_string();
        let value = json!({
            "schema": {"type": "struct", "fields": []},
            "payload": {"before": null, "after": null,
                        "source": {"connector": "postgresql", "lsn": 46523128, "ts_ms": 1559033904863i64},
                        "op": "d", "ts_ms": 1559033904961i64}
        })
        .to_string();
        let Decoded::Change(event) = decode(Some(key.as_bytes()), Some(value.as_bytes())).unwrap()
        else {
            panic!("expected a change");
        };
        assert_eq!(event.op, Op::Delete);
        assert_eq!(
            event.row,
            vec![Cell {
                name: "id".into(),
                column_type: ColumnType::Int,
                typed: true,
                value: CellValue::Int(1004),
            }]
        );
        // Schemaless key: inferred.
        let bare = br#"{"before":null,"after":null,"source":{"lsn":5},"op":"d"}"#;
        let Decoded::Change(event) = decode(Some(br#"{"id":7}"#), Some(bare)).unwrap() else {
            panic!("expected a change");
        };
        assert_eq!(event.row[0].value, CellValue::Long(7));
        // An insert without `after` is still not an envelope.
        let broken = br#"{"before":null,"after":null,"source":{},"op":"c"}"#;
        assert_eq!(
            decode(Some(br#"{"id":7}"#), Some(broken)).unwrap_err().kind,
            DecodeErrorKind::NotAnEnvelope
        );
    }

    const MONGO_KEY: &str = r#"{"schema":{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"}],"optional":false,"name":"fulfillment.inventory.customers.Key"},"payload":{"id":"{\"$oid\": \"5cebf1d4ea8a6ed1a4c1bd77\"}"}}"#;

    fn mongo_event(op: &str, before: Value, after: Value, extra: Value) -> Vec<u8> {
        let json_field = |name: &str| {
            json!({"type": "string", "optional": true, "name": "io.debezium.data.Json",
                   "version": 1, "field": name})
        };
        let mut payload = json!({
            "before": before, "after": after,
            "source": {"version": "2.5.0.Final", "connector": "mongodb", "name": "fulfillment",
                       "ts_ms": 1558965508000i64, "snapshot": "false", "db": "inventory",
                       "rs": "rs0", "collection": "customers", "ord": 31,
                       "lsid": null, "txnNumber": null},
            "op": op, "ts_ms": 1558965515240i64
        });
        if let (Value::Object(payload), Value::Object(extra)) = (&mut payload, extra) {
            payload.extend(extra);
        }
        json!({
            "schema": {"type": "struct", "name": "fulfillment.inventory.customers.Envelope",
                       "fields": [json_field("before"), json_field("after"),
                                  {"type": "struct", "field": "source", "fields": []},
                                  {"type": "string", "field": "op"}]},
            "payload": payload
        })
        .to_string()
        .into_bytes()
    }

    fn mongo_change(value: &[u8]) -> ChangeEvent {
        match decode(Some(MONGO_KEY.as_bytes()), Some(value)).unwrap() {
            Decoded::Change(event) => event,
            Decoded::Tombstone => panic!("expected a change"),
        }
    }

    const MONGO_DOC: &str = r#"{"_id": {"$oid": "5cebf1d4ea8a6ed1a4c1bd77"}, "first_name": "Anne", "visits": {"$numberLong": "9007199254740993"}, "score": 4.5, "n": 3, "joined": {"$date": 1558965508123}, "seen": {"$date": "2019-05-27T13:58:28.123Z"}, "balance": {"$numberDecimal": "12.340"}, "address": {"city": "Oslo", "zip": {"$numberInt": "150"}}, "tags": ["a", "b"], "photo": {"$binary": {"base64": "AQI=", "subType": "00"}}}"#;

    #[test]
    fn mongo_insert_parses_the_extended_json_document() {
        let event = mongo_change(&mongo_event("c", Value::Null, json!(MONGO_DOC), json!({})));
        assert_eq!(event.op, Op::Create);
        assert_eq!(
            event.source_pos.as_deref(),
            Some("00000001558965508000:0000000031")
        );
        assert_eq!(event.source_ts_micros, Some(1_558_965_508_000_000));
        let cell = |name: &str| {
            let c = event.row.iter().find(|c| &*c.name == name).unwrap();
            (c.column_type, c.value.clone())
        };
        assert_eq!(
            cell("_id"),
            (
                ColumnType::String,
                CellValue::String("5cebf1d4ea8a6ed1a4c1bd77".into())
            )
        );
        assert_eq!(
            cell("visits"),
            (ColumnType::Long, CellValue::Long(9_007_199_254_740_993))
        );
        assert_eq!(cell("score"), (ColumnType::Double, CellValue::Double(4.5)));
        assert_eq!(cell("n"), (ColumnType::Long, CellValue::Long(3)));
        assert_eq!(
            cell("joined"),
            (
                ColumnType::Timestamptz,
                CellValue::Micros(1_558_965_508_123_000)
            )
        );
        assert_eq!(cell("seen"), cell("joined"));
        assert_eq!(
            cell("balance"),
            (ColumnType::String, CellValue::String("12.340".into()))
        );
        let (column_type, CellValue::String(address)) = cell("address") else {
            panic!("nested document is text")
        };
        assert_eq!(column_type, ColumnType::String);
        assert_eq!(
            serde_json::from_str::<Value>(&address).unwrap(),
            json!({"city": "Oslo", "zip": {"$numberInt": "150"}})
        );
        assert_eq!(
            cell("tags"),
            (ColumnType::String, CellValue::String(r#"["a","b"]"#.into()))
        );
        assert_eq!(
            cell("photo"),
            (ColumnType::Binary, CellValue::Binary(vec![1, 2]))
        );
        assert!(event.row.iter().all(|c| !c.typed));
    }

    #[test]
    fn mongo_update_with_full_document_and_partial_update() {
        let updated = MONGO_DOC.replace("Anne", "Anne Marie");
        let description = json!({"updateDescription": {
            "removedFields": null,
            "updatedFields": r#"{"first_name": "Anne Marie"}"#,
            "truncatedArrays": null}});
        let event = mongo_change(&mongo_event(
            "u",
            Value::Null,
            json!(updated),
            description.clone(),
        ));
        assert_eq!(event.op, Op::Update);
        let name = event.row.iter().find(|c| &*c.name == "first_name").unwrap();
        assert_eq!(name.value, CellValue::String("Anne Marie".into()));
        // Without the full document only a partial row exists: refused, not guessed.
        let partial = mongo_event("u", Value::Null, Value::Null, description);
        assert_eq!(
            decode(Some(MONGO_KEY.as_bytes()), Some(&partial))
                .unwrap_err()
                .kind,
            DecodeErrorKind::Unsupported
        );
        // The 1.x oplog form with `patch`.
        let patch = mongo_event(
            "u",
            Value::Null,
            Value::Null,
            json!({"patch": r#"{"$v": 1, "$set": {"first_name": "Anne Marie"}}"#}),
        );
        assert_eq!(
            decode(Some(MONGO_KEY.as_bytes()), Some(&patch))
                .unwrap_err()
                .kind,
            DecodeErrorKind::Unsupported
        );
    }

    #[test]
    fn mongo_delete_gets_its_id_from_the_key() {
        let event = mongo_change(&mongo_event("d", Value::Null, Value::Null, json!({})));
        assert_eq!(event.op, Op::Delete);
        assert_eq!(
            event.row,
            vec![Cell {
                name: "_id".into(),
                column_type: ColumnType::String,
                typed: false,
                value: CellValue::String("5cebf1d4ea8a6ed1a4c1bd77".into()),
            }]
        );
        assert_eq!(
            event.key,
            vec![(
                "id".to_string(),
                json!(r#"{"$oid": "5cebf1d4ea8a6ed1a4c1bd77"}"#)
            )]
        );
        // A numeric _id is sent as its JSON text.
        let value = mongo_event("d", Value::Null, Value::Null, json!({}));
        let Decoded::Change(event) = decode(Some(br#"{"id":"1004"}"#), Some(&value)).unwrap()
        else {
            panic!("expected a change");
        };
        assert_eq!(event.row[0].value, CellValue::Long(1004));
        // With a pre-image, `before` is the document.
        let event = mongo_change(&mongo_event("d", json!(MONGO_DOC), Value::Null, json!({})));
        assert!(event.row.iter().any(|c| &*c.name == "first_name"));
        // A tombstone follows.
        assert_eq!(
            decode(Some(MONGO_KEY.as_bytes()), None).unwrap(),
            Decoded::Tombstone
        );
    }

    #[test]
    fn truncate_and_read_ops() {
        let truncate = br#"{"before":null,"after":null,"source":{"lsn":9},"op":"t"}"#;
        let Decoded::Change(event) = decode(None, Some(truncate)).unwrap() else {
            panic!("expected a change");
        };
        assert_eq!(event.op, Op::Truncate);
        assert!(event.row.is_empty());
        let read = br#"{"before":null,"after":{"id":1},"source":{"lsn":9},"op":"r"}"#;
        assert_eq!(change(read).op, Op::Read);
    }

    #[test]
    fn decimal_text_handles_zero_and_scales() {
        assert_eq!(decimal_text(&[0], 2).as_deref(), Some("0.00"));
        assert_eq!(decimal_text(&[0], -2).as_deref(), Some("0"));
        assert_eq!(decimal_text(&[5], -2).as_deref(), Some("500"));
        assert_eq!(decimal_text(&[0x80], 0).as_deref(), Some("-128"));
        assert_eq!(decimal_text(&[], 0), None);
        assert_eq!(decimal_text_to_unscaled("1.25e3", 0), Some(1250));
        assert_eq!(decimal_text_to_unscaled("-0.5", 1), Some(-5));
        assert_eq!(decimal_text_to_unscaled("0.05", 1), None);
        assert_eq!(decimal_text_to_unscaled("1e-400", 2), None);
    }

    // ---- properties ------------------------------------------------------------------------

    proptest::proptest! {
        #[test]
        fn decimal_bytes_round_trip(
            raw in proptest::prelude::any::<i128>(),
            scale in 0i64..=38,
        ) {
            let unscaled = raw % 10i128.pow(38); // |unscaled| < 10^38: precision 38
            let encoded = b64(&twos_complement(unscaled));
            let (column_type, value) = typed(decimal_schema(38, scale), json!(encoded));
            proptest::prop_assert_eq!(
                column_type,
                ColumnType::Decimal { precision: 38, scale: scale as i8 }
            );
            proptest::prop_assert_eq!(value, CellValue::Decimal(unscaled));
            // The exact text agrees and parses back.
            let text = decimal_text(&twos_complement(unscaled), scale as i32).unwrap();
            proptest::prop_assert_eq!(decimal_text_to_unscaled(&text, scale as i32), Some(unscaled));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            key in proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)),
            value in proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)),
        ) {
            let _ = decode(key.as_deref(), value.as_deref());
        }

        #[test]
        fn decoding_arbitrary_values_under_any_logical_type_never_panics(
            name in proptest::sample::select(vec![
                "io.debezium.time.Date", "io.debezium.time.Time", "io.debezium.time.MicroTime",
                "io.debezium.time.NanoTime", "io.debezium.time.Timestamp",
                "io.debezium.time.MicroTimestamp", "io.debezium.time.NanoTimestamp",
                "io.debezium.time.ZonedTimestamp", "org.apache.kafka.connect.data.Decimal",
                "io.debezium.data.VariableScaleDecimal", "io.debezium.data.Bits", "",
            ]),
            connect_type in proptest::sample::select(vec![
                "int8", "int32", "int64", "float32", "float64", "boolean", "string", "bytes",
                "struct", "array",
            ]),
            scale in proptest::prelude::any::<i64>(),
            precision in proptest::prelude::any::<i64>(),
            value in json_value(),
            mongo_doc in json_value(),
        ) {
            let schema = json!({"type": connect_type, "name": name, "parameters": {
                "scale": scale.to_string(), "connect.decimal.precision": precision.to_string()}});
            let _ = decode(Some(br#"{"id":1}"#), Some(&typed_event(schema, value.clone())));
            let _ = decode(Some(br#"{"id":1}"#), Some(&schemaless_event(value)));
            let doc = mongo_doc.to_string();
            let _ = decode(Some(MONGO_KEY.as_bytes()), Some(&mongo_event("c", Value::Null, json!(doc), json!({}))));
            let _ = decode(Some(br#"{"id":"{\"$date\":1}"}"#), Some(&mongo_event("d", Value::Null, Value::Null, json!({}))));
        }
    }

    /// An envelope of arbitrary shape: bare or wrapped with a schema, any op, rows and
    /// source blocks of arbitrary JSON or of the usual shapes.
    fn any_envelope() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let row = prop_oneof![
            json_value(),
            proptest::collection::btree_map("[a-c_]{1,2}", json_value(), 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ];
        let source =
            prop_oneof![
            json_value(),
            (any::<i64>(), 0i64..9, proptest::option::of("[a-z.0-9]{1,8}")).prop_map(
                |(pos, row, file)| json!({"file": file, "pos": pos, "row": row, "ts_ms": pos})
            ),
            (any::<i64>(), proptest::option::of(Just(r#"["12","34"]"#))).prop_map(
                |(lsn, sequence)| json!({"lsn": lsn, "sequence": sequence, "ts_us": lsn})
            ),
            (any::<i64>(), any::<i64>()).prop_map(|(ts, ord)| json!({"ts_ms": ts, "ord": ord})),
            Just(json!({"connector": "mongodb", "ts_ms": 1, "ord": 2})),
        ];
        let op = prop_oneof![
            Just(json!("c")),
            Just(json!("u")),
            Just(json!("d")),
            Just(json!("r")),
            Just(json!("t")),
            Just(json!("x")),
            json_value(),
        ];
        let schema = prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            Just(Some(json!({"type": "struct", "fields": [
                {"field": "after", "type": "struct", "fields": [
                    {"field": "a", "type": "int32"},
                    {"field": "b", "type": "string", "optional": true},
                ]},
                {"field": "before", "type": "struct", "fields": [
                    {"field": "a", "type": "int64"},
                ]},
            ]}))),
            json_value().prop_map(Some),
        ];
        (
            op,
            row.clone(),
            row,
            source,
            schema,
            any::<bool>(),
            any::<i64>(),
            any::<bool>(),
        )
            .prop_map(
                |(op, before, after, source, schema, with_ts, ts, schema_first)| {
                    let mut payload =
                        json!({"op": op, "before": before, "after": after, "source": source});
                    if with_ts {
                        payload["ts_ms"] = json!(ts);
                    }
                    match schema {
                        // The order a JSON converter writes, which the recent-schema match reads.
                        Some(schema) if schema_first => {
                            format!(r#"{{"schema":{schema},"payload":{payload}}}"#).into_bytes()
                        }
                        Some(schema) => {
                            serde_json::to_vec(&json!({"schema": schema, "payload": payload}))
                                .unwrap()
                        }
                        None => serde_json::to_vec(&payload).unwrap(),
                    }
                },
            )
    }

    proptest::proptest! {
        #[test]
        fn fast_path_agrees_with_the_value_path(value in any_envelope(), pretty in proptest::prelude::any::<bool>()) {
            let value = if pretty {
                serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&value).unwrap()).unwrap()
            } else {
                value
            };
            let key = || Some(decode_key(br#"{"a": 1}"#));
            let expected = decode_dom(key(), &value);
            // Twice: the second decode may take the recent-schema match the first one primed.
            proptest::prop_assert_eq!(decode_json(key(), &value), expected.clone());
            proptest::prop_assert_eq!(decode_json(key(), &value), expected);
        }
    }

    #[test]
    fn fast_path_decodes_common_envelopes() {
        // Duplicate names keep the last value; rows come out sorted by name.
        let value = br#"{"op":"c","after":{"b":"x","a":1,"b":"y"},"source":{"file":"f","pos":3}}"#;
        let key = decode_key(br#"{"a": 1}"#).unwrap();
        let event = borrowed::decode(&key, value).expect("the fast path handles it");
        let names: Vec<&str> = event.row.iter().map(|c| &*c.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(event.row[1].value, CellValue::String("y".into()));
        assert_eq!(
            event.source_pos.as_deref(),
            Some("f:00000000000000000003:000000")
        );
        // Schema-wrapped envelopes decode typed, with the schema parsed once.
        let typed = serde_json::to_vec(&envelope_with_schema()).unwrap();
        let first = decode_json(Some(decode_key(br#"{"id": 1}"#)), &typed).unwrap();
        let second = decode_json(Some(decode_key(br#"{"id": 1}"#)), &typed).unwrap();
        assert_eq!(first, second);
        assert_eq!(
            first,
            decode_dom(Some(decode_key(br#"{"id": 1}"#)), &typed).unwrap()
        );
        assert!(borrowed::decode(&decode_key(br#"{"id": 1}"#).unwrap(), &typed).is_some());
        // In a JSON converter's order, a schema seen before is matched by its bytes.
        let envelope = envelope_with_schema();
        let converter_order = format!(
            r#"{{"schema":{},"payload":{}}}"#,
            envelope["schema"], envelope["payload"]
        )
        .into_bytes();
        let general = decode_json(Some(decode_key(br#"{"id": 1}"#)), &converter_order).unwrap();
        let matched = borrowed::decode_with_recent_schema(&converter_order)
            .expect("the schema was just parsed");
        assert_eq!(
            general,
            decode_dom(Some(decode_key(br#"{"id": 1}"#)), &converter_order).unwrap()
        );
        let Decoded::Change(general) = general else {
            panic!("a change event")
        };
        assert_eq!(matched.row, general.row);
        assert_eq!(matched.source_pos, general.source_pos);
    }

    /// Arbitrary JSON, biased towards the shapes the decoder looks into.
    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-zA-Z0-9+/=$.:-]{0,24}".prop_map(Value::from),
            Just(json!("NaN")),
            Just(json!("2018-06-20T13:37:03Z")),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            let key = prop_oneof![
                Just("scale".to_string()),
                Just("value".to_string()),
                Just("$oid".to_string()),
                Just("$date".to_string()),
                Just("$numberLong".to_string()),
                Just("$numberDecimal".to_string()),
                Just("$binary".to_string()),
                Just("$type".to_string()),
                Just("base64".to_string()),
                "[a-z_]{1,6}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(key, inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
