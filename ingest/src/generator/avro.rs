//! Kafka Connect's `AvroConverter`, for the generator and tests: turns Connect data in its
//! `JsonConverter` form (a Connect JSON schema and a payload) into Avro in the Confluent
//! wire format. Pure.
//!
//! The Avro schema is derived as Confluent's `AvroData.fromConnectSchema` does: `int8` and
//! `int16` become `int` with `connect.type`; every named Connect schema keeps its name in
//! `connect.name`, its version in `connect.version` and its parameters in
//! `connect.parameters`; `Decimal` becomes `bytes` with `logicalType: decimal`, `precision`
//! (64 when the Connect schema has none) and `scale` (legacy form without the logical type
//! when the scale is negative or above the precision); Connect's `Date`, `Time` and
//! `Timestamp` get `date`, `time-millis` and `timestamp-millis`; Debezium's own time types
//! stay plain `int`/`long`; structs become records named after the Connect name (namespace
//! = everything before the last dot), and a record met again is referenced by name
//! (relative to the enclosing namespace, as Avro's Java writer prints it). An optional
//! schema is the union `["null", T]` with field default `null`, or `[T, "null"]` when it
//! has a default, which becomes the field default and `connect.default`.

use std::collections::HashSet;

use apache_avro::types::Value as AvroValue;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::GeneratorError;
use crate::avro::confluent_bytes;

const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
const DATE: &str = "org.apache.kafka.connect.data.Date";
const TIME: &str = "org.apache.kafka.connect.data.Time";
const TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";
/// `AvroData`'s precision for a `Decimal` without `connect.decimal.precision`.
const DEFAULT_DECIMAL_PRECISION: i64 = 64;
/// `AvroData`'s record name for an unnamed struct.
const DEFAULT_RECORD: &str = "io.confluent.connect.avro.ConnectDefault";

/// Encodes values of one Connect schema as Confluent Avro under one schema id.
#[derive(Debug, Clone)]
pub struct AvroEncoder {
    id: u32,
    connect: Value,
    text: String,
    schema: apache_avro::Schema,
}

impl AvroEncoder {
    /// `connect` is a Kafka Connect schema as the `JsonConverter` embeds it; `id` the
    /// Schema Registry id the messages will name.
    pub fn new(id: u32, connect: &Value) -> Result<AvroEncoder, GeneratorError> {
        let invalid = |message: String| {
            GeneratorError::Config(format!("connect schema for avro id {id}: {message}"))
        };
        let avro = AvroSchemaWriter::default()
            .schema(connect, "")
            .map_err(invalid)?;
        let schema = apache_avro::Schema::parse(&avro).map_err(|err| invalid(err.to_string()))?;
        Ok(AvroEncoder {
            id,
            connect: connect.clone(),
            text: avro.to_string(),
            schema,
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// The Avro schema JSON text, as the converter registers it.
    pub fn schema_text(&self) -> &str {
        &self.text
    }

    /// Encodes a `JsonConverter` payload (bytes as base64) in the Confluent wire format.
    pub fn encode(&self, payload: &Value) -> Result<Vec<u8>, GeneratorError> {
        let invalid = |message: String| GeneratorError::InvalidMessage {
            topic: format!("<avro schema id {}>", self.id),
            reason: message,
        };
        let datum = avro_value(&self.connect, payload).map_err(invalid)?;
        let body = apache_avro::to_avro_datum(&self.schema, datum)
            .map_err(|err| invalid(err.to_string()))?;
        Ok(confluent_bytes(self.id, &body))
    }
}

fn text<'a>(schema: &'a Value, key: &str) -> Option<&'a str> {
    schema.get(key).and_then(Value::as_str)
}

fn is_optional(schema: &Value) -> bool {
    schema.get("optional").and_then(Value::as_bool) == Some(true)
}

fn default_of(schema: &Value) -> Option<&Value> {
    schema.get("default").filter(|d| !d.is_null())
}

/// A Connect `parameters` value as a number (`"2"` → 2).
fn parameter(schema: &Value, key: &str) -> Option<i64> {
    let raw = schema.get("parameters")?.get(key)?;
    raw.as_str()
        .and_then(|t| t.parse().ok())
        .or_else(|| raw.as_i64())
}

/// `(precision, scale)` when a `Decimal` gets Avro's decimal logical type.
fn native_decimal(schema: &Value) -> Option<(i64, i64)> {
    if text(schema, "name") != Some(DECIMAL) {
        return None;
    }
    let precision =
        parameter(schema, "connect.decimal.precision").unwrap_or(DEFAULT_DECIMAL_PRECISION);
    let scale = parameter(schema, "scale").unwrap_or(0);
    (0..=precision)
        .contains(&scale)
        .then_some((precision, scale))
}

/// `AvroData.fromConnectSchema`, see the module docs.
#[derive(Default)]
struct AvroSchemaWriter {
    /// Full names of the records written so far.
    defined: HashSet<String>,
}

impl AvroSchemaWriter {
    fn schema(&mut self, connect: &Value, namespace: &str) -> Result<Value, String> {
        let base = self.base(connect, namespace)?;
        Ok(match (is_optional(connect), default_of(connect)) {
            (false, _) => base,
            (true, None) => json!(["null", base]),
            (true, Some(_)) => json!([base, "null"]),
        })
    }

    fn base(&mut self, connect: &Value, namespace: &str) -> Result<Value, String> {
        let connect_type = text(connect, "type").ok_or("connect schema without `type`")?;
        let name = text(connect, "name");
        let mut avro = Map::new();
        let avro_type = match connect_type {
            "int8" | "int16" => {
                avro.insert("connect.type".into(), connect_type.into());
                "int"
            }
            "int32" => "int",
            "int64" => "long",
            "float32" => "float",
            "float64" => "double",
            "boolean" => "boolean",
            "string" => "string",
            "bytes" => {
                if name == Some(DECIMAL) {
                    let scale = parameter(connect, "scale").unwrap_or(0);
                    let precision = parameter(connect, "connect.decimal.precision")
                        .unwrap_or(DEFAULT_DECIMAL_PRECISION);
                    avro.insert("scale".into(), scale.into());
                    avro.insert("precision".into(), precision.into());
                    // Legacy form (out-of-range scale) keeps the property but Avro
                    // readers ignore the invalid logical type and read the bytes.
                    avro.insert("logicalType".into(), "decimal".into());
                }
                "bytes"
            }
            "array" => {
                let items = connect.get("items").ok_or("array without `items`")?;
                avro.insert("items".into(), self.schema(items, namespace)?);
                "array"
            }
            "map" => {
                let values = connect.get("values").ok_or("map without `values`")?;
                if text(connect.get("keys").unwrap_or(&Value::Null), "type") != Some("string") {
                    return Err("only maps with string keys are supported".into());
                }
                avro.insert("values".into(), self.schema(values, namespace)?);
                "map"
            }
            "struct" => return self.record(connect, namespace),
            other => return Err(format!("unknown connect type `{other}`")),
        };
        avro.insert("type".into(), avro_type.into());
        match name {
            Some(DATE) => avro.insert("logicalType".into(), "date".into()),
            Some(TIME) => avro.insert("logicalType".into(), "time-millis".into()),
            Some(TIMESTAMP) => avro.insert("logicalType".into(), "timestamp-millis".into()),
            _ => None,
        };
        connect_properties(&mut avro, connect);
        Ok(Value::Object(avro))
    }

    fn record(&mut self, connect: &Value, namespace: &str) -> Result<Value, String> {
        let full = text(connect, "name").unwrap_or(DEFAULT_RECORD).to_string();
        let (record_namespace, short) = full.rsplit_once('.').unwrap_or(("", full.as_str()));
        if !self.defined.insert(full.clone()) {
            return Ok(Value::String(if record_namespace == namespace {
                short.to_string()
            } else {
                full.clone()
            }));
        }
        let mut fields = Vec::new();
        for field in connect
            .get("fields")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("struct `{full}` without `fields`"))?
        {
            let field_name = text(field, "field").ok_or("struct field without `field`")?;
            let mut avro_field = Map::new();
            avro_field.insert("name".into(), field_name.into());
            avro_field.insert("type".into(), self.schema(field, record_namespace)?);
            match default_of(field) {
                Some(default) => {
                    avro_field.insert("default".into(), default.clone());
                }
                None if is_optional(field) => {
                    avro_field.insert("default".into(), Value::Null);
                }
                None => {}
            }
            fields.push(Value::Object(avro_field));
        }
        let mut avro = Map::new();
        avro.insert("type".into(), "record".into());
        avro.insert("name".into(), short.into());
        if !record_namespace.is_empty() {
            avro.insert("namespace".into(), record_namespace.into());
        }
        avro.insert("fields".into(), Value::Array(fields));
        connect_properties(&mut avro, connect);
        Ok(Value::Object(avro))
    }
}

/// `connect.version`, `connect.parameters`, `connect.default`, `connect.name`.
fn connect_properties(avro: &mut Map<String, Value>, connect: &Value) {
    if let Some(version) = connect.get("version").filter(|v| v.is_number()) {
        avro.insert("connect.version".into(), version.clone());
    }
    if let Some(parameters) = connect.get("parameters").filter(|p| p.is_object()) {
        avro.insert("connect.parameters".into(), parameters.clone());
    }
    if let Some(default) = default_of(connect) {
        avro.insert("connect.default".into(), default.clone());
    }
    if let Some(name) = text(connect, "name") {
        avro.insert("connect.name".into(), name.into());
    }
}

/// `AvroData.fromConnectData` for a `JsonConverter` payload.
fn avro_value(connect: &Value, payload: &Value) -> Result<AvroValue, String> {
    if !is_optional(connect) {
        return base_value(connect, payload);
    }
    // The null branch is first unless the schema has a default (see the module docs).
    let null_first = default_of(connect).is_none();
    Ok(match (payload.is_null(), null_first) {
        (true, true) => AvroValue::Union(0, Box::new(AvroValue::Null)),
        (true, false) => AvroValue::Union(1, Box::new(AvroValue::Null)),
        (false, true) => AvroValue::Union(1, Box::new(base_value(connect, payload)?)),
        (false, false) => AvroValue::Union(0, Box::new(base_value(connect, payload)?)),
    })
}

fn base_value(connect: &Value, payload: &Value) -> Result<AvroValue, String> {
    let connect_type = text(connect, "type").unwrap_or("string");
    let name = text(connect, "name");
    let bad = || format!("{payload} is not a valid {connect_type} value");
    let integer = || payload.as_i64().ok_or_else(bad);
    let int32 = || integer().and_then(|i| i32::try_from(i).map_err(|_| bad()));
    let float = || match payload {
        Value::String(special) => match special.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(bad()),
        },
        other => other.as_f64().ok_or_else(bad),
    };
    Ok(match connect_type {
        "int8" | "int16" | "int32" => match name {
            Some(DATE) => AvroValue::Date(int32()?),
            Some(TIME) => AvroValue::TimeMillis(int32()?),
            _ => AvroValue::Int(int32()?),
        },
        "int64" if name == Some(TIMESTAMP) => AvroValue::TimestampMillis(integer()?),
        "int64" => AvroValue::Long(integer()?),
        "float32" => AvroValue::Float(float()? as f32),
        "float64" => AvroValue::Double(float()?),
        "boolean" => AvroValue::Boolean(payload.as_bool().ok_or_else(bad)?),
        "string" => AvroValue::String(payload.as_str().ok_or_else(bad)?.to_string()),
        "bytes" => {
            let bytes = payload
                .as_str()
                .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
                .ok_or_else(bad)?;
            if native_decimal(connect).is_some() {
                AvroValue::Decimal(apache_avro::Decimal::from(bytes))
            } else {
                AvroValue::Bytes(bytes)
            }
        }
        "array" => {
            let items = connect.get("items").ok_or("array without `items`")?;
            AvroValue::Array(
                payload
                    .as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|item| avro_value(items, item))
                    .collect::<Result<_, _>>()?,
            )
        }
        "map" => {
            let values = connect.get("values").ok_or("map without `values`")?;
            AvroValue::Map(
                payload
                    .as_object()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), avro_value(values, v)?)))
                    .collect::<Result<_, String>>()?,
            )
        }
        "struct" => {
            let object = payload.as_object().ok_or_else(bad)?;
            let fields = connect
                .get("fields")
                .and_then(Value::as_array)
                .ok_or("struct without `fields`")?;
            AvroValue::Record(
                fields
                    .iter()
                    .map(|field| {
                        let field_name = text(field, "field").unwrap_or_default();
                        let value = object.get(field_name).unwrap_or(&Value::Null);
                        Ok((field_name.to_string(), avro_value(field, value)?))
                    })
                    .collect::<Result<_, String>>()?,
            )
        }
        other => return Err(format!("unknown connect type `{other}`")),
    })
}
