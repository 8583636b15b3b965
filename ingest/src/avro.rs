//! Decodes Debezium change events written by Confluent's `AvroConverter`: the Confluent wire
//! format (magic byte `0`, a 4-byte big-endian Schema Registry id, the Avro binary datum)
//! for values and keys. Pure: bytes and already fetched schemas in, values out; fetching
//! schemas by id is [`crate::schema_registry`]'s job.
//!
//! # Format detection
//!
//! Per record, and separately for the key and the value: bytes starting with `0x00` and at
//! least 5 long are Confluent Avro, anything else goes to the JSON decoder. A JSON text
//! never starts with a NUL byte, so the two cannot be confused, and one topic (or one
//! connector migrating converters) may carry both.
//!
//! # One mapping for both formats
//!
//! An Avro envelope is turned into exactly what Kafka Connect's `JsonConverter` would have
//! written for the same Connect data: the Avro schema becomes a Connect JSON schema (the
//! `connect.name`, `connect.parameters` and `connect.type` properties the `AvroConverter`
//! writes carry the Connect logical type, parameters and `int8`/`int16`), and the datum
//! becomes a Connect JSON payload (bytes as base64, records as objects, unions unwrapped).
//! [`crate::debezium`] then decodes it with the same envelope, key and logical-type code as
//! JSON input, so both formats produce identical [`ChangeEvent`](crate::debezium::ChangeEvent)s
//! and cells. Converting schemas happens once per schema id.
//!
//! Avro's own logical types, on schemas without a `connect.name` (not Debezium's output,
//! but other producers'), map to their Connect equivalents: `decimal` (bytes or fixed) →
//! `Decimal` with the Avro precision and scale, `date` → `Date`, `time-millis` → `Time`,
//! `time-micros` → `MicroTime`, `local-timestamp-millis|micros|nanos` →
//! `Timestamp`/`MicroTimestamp`/`NanoTimestamp` (Iceberg `timestamp`), and
//! `timestamp-millis|micros|nanos`, which the Avro spec defines as instants, → Iceberg
//! `timestamptz`. `uuid` stays a string, `big-decimal` becomes its exact text, Avro enums
//! their symbol, `fixed` and `duration` binary. Unions of several non-null types keep the
//! JSON text of the branch value.
//!
//! MongoDB: Debezium's MongoDB connector writes `after`/`before` as
//! `io.debezium.data.Json` strings under the Avro converter too, so MongoDB events decode
//! the same way as with JSON (the extended-JSON document is parsed).

use std::collections::HashMap;

use apache_avro::types::Value as AvroValue;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::debezium::{self, DecodeError, DecodeErrorKind, Decoded, Key, error};

/// The Confluent wire format's first byte.
pub const MAGIC_BYTE: u8 = 0;

/// Magic byte plus schema id.
const HEADER_LEN: usize = 5;

/// The schema id and Avro body of bytes in the Confluent wire format, or `None` for
/// anything else (JSON).
pub fn confluent_header(bytes: &[u8]) -> Option<(u32, &[u8])> {
    if bytes.len() < HEADER_LEN || bytes[0] != MAGIC_BYTE {
        return None;
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Some((id, &bytes[HEADER_LEN..]))
}

/// Bytes in the Confluent wire format: header and Avro body.
pub fn confluent_bytes(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Bounds what the Avro decoder may allocate for one length-prefixed item, so a corrupt
/// length in a poison record fails instead of allocating gigabytes. The limit is global to
/// the process and the first call sets it; a datum cannot hold a string longer than its
/// Kafka message, so the largest accepted message size is the natural limit.
pub fn limit_allocations(max_message_bytes: usize) {
    apache_avro::util::max_allocation_bytes(max_message_bytes.max(1024));
}

/// A registered Avro schema, parsed once: the Avro schema to decode with and its Kafka
/// Connect JSON form for the shared decoder.
#[derive(Debug)]
pub struct AvroSchema {
    id: u32,
    avro: apache_avro::Schema,
    connect: Value,
}

impl AvroSchema {
    /// Parses a schema as the registry returns it (Avro schema JSON text).
    pub fn parse(id: u32, text: &str) -> Result<AvroSchema, String> {
        let json: Value =
            serde_json::from_str(text).map_err(|err| format!("schema is not JSON: {err}"))?;
        let avro = apache_avro::Schema::parse(&json).map_err(|err| err.to_string())?;
        let connect = ConnectSchemas::default().convert(&json, "")?;
        Ok(AvroSchema { id, avro, connect })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// The schema in Kafka Connect JSON form (`{"type": "struct", "fields": [...]}`).
    pub fn connect_schema(&self) -> &Value {
        &self.connect
    }

    /// Decodes an Avro body into its Kafka Connect JSON payload.
    pub fn read(&self, body: &[u8]) -> Result<Value, DecodeError> {
        let mut reader = body;
        let datum = apache_avro::from_avro_datum(&self.avro, &mut reader, None).map_err(|err| {
            error(
                DecodeErrorKind::BadAvro,
                format!(
                    "avro body does not decode with schema id {}: {err}",
                    self.id
                ),
            )
        })?;
        if !reader.is_empty() {
            return Err(error(
                DecodeErrorKind::BadAvro,
                format!(
                    "avro body has {} bytes left over after decoding with schema id {}",
                    reader.len(),
                    self.id
                ),
            ));
        }
        Ok(connect_value(datum))
    }
}

/// Decodes one Kafka message whose key and value are each Confluent Avro or JSON.
/// `schema` returns the schema of an id, or the dead-letter error for an id that has none
/// (unknown to the registry, not Avro, unparsable).
pub fn decode<S>(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    schema: S,
) -> Result<Decoded, DecodeError>
where
    S: Fn(u32) -> Result<std::sync::Arc<AvroSchema>, DecodeError>,
{
    let Some(value) = value else {
        return Ok(Decoded::Tombstone);
    };
    let key = key.map(|bytes| decode_key(bytes, &schema));
    match confluent_header(value) {
        None => debezium::decode_json(key, value),
        Some((id, body)) => {
            let schema = schema(id)?;
            let payload = schema.read(body)?;
            debezium::decode_envelope(key, Some(&schema.connect), payload)
        }
    }
}

fn decode_key<S>(bytes: &[u8], schema: &S) -> Result<Key, DecodeError>
where
    S: Fn(u32) -> Result<std::sync::Arc<AvroSchema>, DecodeError>,
{
    let Some((id, body)) = confluent_header(bytes) else {
        return debezium::decode_key(bytes);
    };
    let schema = schema(id)?;
    match schema.read(body)? {
        Value::Object(object) => Ok(Key {
            fields: object.into_iter().collect(),
            schemas: schema
                .connect
                .get("fields")
                .and_then(Value::as_array)
                .cloned()
                .map(std::sync::Arc::new),
        }),
        other => Err(error(
            DecodeErrorKind::MissingKey,
            format!("avro key (schema id {id}) is not a record: {other}"),
        )),
    }
}

/// Converts Avro schemas to Kafka Connect JSON schemas, remembering named types so later
/// references to them resolve.
#[derive(Default)]
struct ConnectSchemas {
    named: HashMap<String, Value>,
}

impl ConnectSchemas {
    fn convert(&mut self, avro: &Value, namespace: &str) -> Result<Value, String> {
        match avro {
            Value::String(name) => match connect_primitive(name) {
                Some(connect_type) => Ok(json!({"type": connect_type, "optional": false})),
                None => self.reference(name, namespace),
            },
            Value::Array(branches) => self.union(branches, namespace),
            Value::Object(object) => self.complex(object, namespace),
            other => Err(format!("not an avro schema: {other}")),
        }
    }

    fn reference(&self, name: &str, namespace: &str) -> Result<Value, String> {
        self.named
            .get(&full_name(name, namespace))
            .or_else(|| self.named.get(name))
            .cloned()
            .ok_or_else(|| format!("unknown (or recursive) avro type `{name}`"))
    }

    /// `["null", T]` is an optional `T`; unions of several types keep their branch's text.
    fn union(&mut self, branches: &[Value], namespace: &str) -> Result<Value, String> {
        let mut types = Vec::new();
        let mut optional = false;
        for branch in branches {
            if branch.as_str() == Some("null") {
                optional = true;
            } else {
                types.push(self.convert(branch, namespace)?);
            }
        }
        let mut connect = match <[Value; 1]>::try_from(types) {
            Ok([single]) => single,
            // Connect's AvroData reads these as a struct named
            // `io.confluent.connect.avro.Union`; bronze keeps the branch value's text.
            Err(_) => json!({"type": "struct", "name": "io.confluent.connect.avro.Union"}),
        };
        connect["optional"] = Value::Bool(optional);
        Ok(connect)
    }

    fn complex(&mut self, object: &Map<String, Value>, namespace: &str) -> Result<Value, String> {
        let type_name = match object.get("type") {
            Some(Value::String(type_name)) => type_name.as_str(),
            // `{"type": {...}}` or `{"type": [...]}`: a schema wrapped in an object.
            Some(nested) => return self.convert(nested, namespace),
            None => return Err("avro schema object without `type`".into()),
        };
        let own_namespace = |object: &Map<String, Value>| {
            let name = object.get("name").and_then(Value::as_str).unwrap_or("");
            let full = match object.get("namespace").and_then(Value::as_str) {
                Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
                _ => full_name(name, namespace),
            };
            let child_namespace = full.rsplit_once('.').map_or("", |(ns, _)| ns).to_string();
            (full, child_namespace)
        };
        let mut connect = match type_name {
            "record" | "error" => {
                let (full, child_namespace) = own_namespace(object);
                let mut fields = Vec::new();
                for field in object
                    .get("fields")
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("record `{full}` has no fields"))?
                {
                    let name = field
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("a field of record `{full}` has no name"))?;
                    let field_type = field
                        .get("type")
                        .ok_or_else(|| format!("field `{name}` of `{full}` has no type"))?;
                    let mut schema = self.convert(field_type, &child_namespace)?;
                    schema["field"] = Value::String(name.to_string());
                    fields.push(schema);
                }
                let connect =
                    json!({"type": "struct", "name": full, "optional": false, "fields": fields});
                let connect = with_metadata(connect, object);
                self.named.insert(full, connect.clone());
                return Ok(connect);
            }
            "enum" => {
                let (full, _) = own_namespace(object);
                let connect = with_metadata(json!({"type": "string", "optional": false}), object);
                self.named.insert(full, connect.clone());
                return Ok(connect);
            }
            "fixed" => {
                let (full, _) = own_namespace(object);
                let connect = with_metadata(json!({"type": "bytes", "optional": false}), object);
                self.named.insert(full, connect.clone());
                return Ok(connect);
            }
            "array" => {
                let items = object.get("items").ok_or("array without `items`")?;
                json!({"type": "array", "optional": false, "items": self.convert(items, namespace)?})
            }
            "map" => {
                let values = object.get("values").ok_or("map without `values`")?;
                json!({"type": "map", "optional": false, "values": self.convert(values, namespace)?})
            }
            primitive => match connect_primitive(primitive) {
                Some(connect_type) => json!({"type": connect_type, "optional": false}),
                None => self.reference(primitive, namespace)?,
            },
        };
        connect = with_metadata(connect, object);
        Ok(connect)
    }
}

/// An Avro name resolved against the enclosing namespace.
fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

fn connect_primitive(avro: &str) -> Option<&'static str> {
    Some(match avro {
        "null" => "null",
        "boolean" => "boolean",
        "int" => "int32",
        "long" => "int64",
        "float" => "float32",
        "double" => "float64",
        "bytes" => "bytes",
        "string" => "string",
        _ => return None,
    })
}

/// Applies the Connect properties the `AvroConverter` writes (`connect.name`,
/// `connect.parameters`, `connect.type`) or, without a Connect name, Avro's own logical
/// type (see the module docs).
fn with_metadata(mut connect: Value, object: &Map<String, Value>) -> Value {
    if let Some(connect_type) = object.get("connect.type").and_then(Value::as_str) {
        connect["type"] = Value::String(connect_type.to_string());
    }
    if let Some(parameters) = object.get("connect.parameters").filter(|p| p.is_object()) {
        connect["parameters"] = parameters.clone();
    }
    if let Some(name) = object.get("connect.name").and_then(Value::as_str) {
        connect["name"] = Value::String(name.to_string());
        return connect;
    }
    let logical = object.get("logicalType").and_then(Value::as_str);
    let name = match logical {
        Some("decimal") => {
            let number = |key: &str| object.get(key).and_then(Value::as_i64);
            if let Some(precision) = number("precision") {
                connect["parameters"] = json!({
                    "scale": number("scale").unwrap_or(0).to_string(),
                    "connect.decimal.precision": precision.to_string(),
                });
                "org.apache.kafka.connect.data.Decimal"
            } else {
                return connect; // invalid: Avro readers fall back to the bytes
            }
        }
        Some("date") => "org.apache.kafka.connect.data.Date",
        Some("time-millis") => "org.apache.kafka.connect.data.Time",
        Some("time-micros") => "io.debezium.time.MicroTime",
        Some("local-timestamp-millis") => "io.debezium.time.Timestamp",
        Some("local-timestamp-micros") => "io.debezium.time.MicroTimestamp",
        Some("local-timestamp-nanos") => "io.debezium.time.NanoTimestamp",
        Some(instant @ ("timestamp-millis" | "timestamp-micros" | "timestamp-nanos")) => {
            connect["logicalType"] = Value::String(instant.to_string());
            return connect;
        }
        Some("big-decimal") => {
            connect["type"] = Value::String("string".into());
            return connect;
        }
        _ => return connect,
    };
    connect["name"] = Value::String(name.to_string());
    connect
}

/// An Avro datum as the `JsonConverter` would render the same Connect value.
fn connect_value(value: AvroValue) -> Value {
    let base64 =
        |bytes: &[u8]| Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    match value {
        AvroValue::Null => Value::Null,
        AvroValue::Boolean(b) => Value::Bool(b),
        AvroValue::Int(i) | AvroValue::Date(i) | AvroValue::TimeMillis(i) => Value::from(i),
        AvroValue::Long(i)
        | AvroValue::TimeMicros(i)
        | AvroValue::TimestampMillis(i)
        | AvroValue::TimestampMicros(i)
        | AvroValue::TimestampNanos(i)
        | AvroValue::LocalTimestampMillis(i)
        | AvroValue::LocalTimestampMicros(i)
        | AvroValue::LocalTimestampNanos(i) => Value::from(i),
        AvroValue::Float(f) => float_value(f64::from(f)),
        AvroValue::Double(f) => float_value(f),
        AvroValue::Bytes(bytes) | AvroValue::Fixed(_, bytes) => base64(&bytes),
        AvroValue::String(text) => Value::String(text),
        AvroValue::Enum(_, symbol) => Value::String(symbol),
        AvroValue::Union(_, inner) => connect_value(*inner),
        AvroValue::Array(items) => Value::Array(items.into_iter().map(connect_value).collect()),
        AvroValue::Map(entries) => Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k, connect_value(v)))
                .collect(),
        ),
        AvroValue::Record(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, connect_value(v)))
                .collect(),
        ),
        AvroValue::Decimal(decimal) => match <Vec<u8>>::try_from(&decimal) {
            Ok(bytes) => base64(&bytes),
            Err(_) => Value::Null,
        },
        AvroValue::BigDecimal(decimal) => Value::String(decimal.to_string()),
        AvroValue::Duration(duration) => base64(&<[u8; 12]>::from(duration)),
        AvroValue::Uuid(uuid) => Value::String(uuid.to_string()),
    }
}

/// Finite numbers as numbers; NaN and infinities as the strings Jackson writes.
fn float_value(f: f64) -> Value {
    match serde_json::Number::from_f64(f) {
        Some(number) => Value::Number(number),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

#[cfg(test)]
mod tests;
