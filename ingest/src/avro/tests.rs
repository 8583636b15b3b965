//! Tests of the Avro decoder: every logical type of the Debezium type tables, written the
//! way Confluent's `AvroConverter` writes it, decodes to the cell the JSON converter's
//! rendering of the same value decodes to; plus the wire format and the envelope cases.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::types::Value as A;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::debezium::{Cell, CellValue, ChangeEvent, ColumnType, Op};

const KEY_ID: u32 = 1;
const VALUE_ID: u32 = 2;

fn schemas(list: &[(u32, Value)]) -> HashMap<u32, Arc<AvroSchema>> {
    list.iter()
        .map(|(id, schema)| {
            let parsed = AvroSchema::parse(*id, &schema.to_string()).expect("valid schema");
            (*id, Arc::new(parsed))
        })
        .collect()
}

fn lookup(
    map: &HashMap<u32, Arc<AvroSchema>>,
) -> impl Fn(u32) -> Result<Arc<AvroSchema>, DecodeError> + '_ {
    |id| {
        map.get(&id).cloned().ok_or_else(|| {
            error(
                DecodeErrorKind::UnknownSchemaId,
                format!("schema id {id} is not registered"),
            )
        })
    }
}

fn encode(id: u32, schema: &Value, datum: A) -> Vec<u8> {
    let parsed = apache_avro::Schema::parse(schema).expect("valid avro schema");
    let body = apache_avro::to_avro_datum(&parsed, datum).expect("datum fits its schema");
    confluent_bytes(id, &body)
}

fn some(value: A) -> A {
    A::Union(1, Box::new(value))
}

fn none() -> A {
    A::Union(0, Box::new(A::Null))
}

fn key_schema() -> Value {
    json!({"type": "record", "name": "Key", "namespace": "cdc.t.db.x",
        "fields": [{"name": "id", "type": "long"}], "connect.name": "cdc.t.db.x.Key"})
}

fn mysql_source_schema() -> Value {
    json!({"type": "record", "name": "Source", "namespace": "io.debezium.connector.mysql",
        "fields": [
            {"name": "version", "type": "string"},
            {"name": "connector", "type": "string"},
            {"name": "ts_ms", "type": "long"},
            {"name": "snapshot", "type": [{"type": "string", "connect.version": 1,
                "connect.parameters": {"allowed": "true,last,false,incremental"},
                "connect.default": "false", "connect.name": "io.debezium.data.Enum"}, "null"],
             "default": "false"},
            {"name": "file", "type": "string"},
            {"name": "pos", "type": "long"},
            {"name": "row", "type": "int"},
            {"name": "thread", "type": ["null", "long"], "default": null}
        ],
        "connect.name": "io.debezium.connector.mysql.Source"})
}

fn mysql_source() -> A {
    A::Record(vec![
        ("version".into(), A::String("2.7.0.Final".into())),
        ("connector".into(), A::String("mysql".into())),
        ("ts_ms".into(), A::Long(1_767_225_600_000)),
        (
            "snapshot".into(),
            A::Union(0, Box::new(A::String("false".into()))),
        ),
        ("file".into(), A::String("mysql-bin.000003".into())),
        ("pos".into(), A::Long(154)),
        ("row".into(), A::Int(1)),
        ("thread".into(), some(A::Long(7))),
    ])
}

fn mysql_source_json() -> Value {
    json!({"version": "2.7.0.Final", "connector": "mysql", "ts_ms": 1_767_225_600_000i64,
        "snapshot": "false", "file": "mysql-bin.000003", "pos": 154, "row": 1, "thread": 7})
}

/// A Debezium MySQL envelope whose rows are `id long` plus an optional column `v`.
fn envelope_schema(column: Value) -> Value {
    envelope_schema_raw(json!(["null", column]))
}

/// The same with `v` of exactly `v_type` (a union).
fn envelope_schema_raw(v_type: Value) -> Value {
    json!({"type": "record", "name": "Envelope", "namespace": "cdc.t.db.x",
        "fields": [
            {"name": "before", "type": ["null", {"type": "record", "name": "Value",
                "fields": [
                    {"name": "id", "type": "long"},
                    {"name": "v", "type": v_type, "default": null}
                ],
                "connect.name": "cdc.t.db.x.Value"}], "default": null},
            {"name": "after", "type": ["null", "Value"], "default": null},
            {"name": "source", "type": mysql_source_schema()},
            {"name": "transaction", "type": ["null", {"type": "record", "name": "block",
                "namespace": "event", "fields": [{"name": "id", "type": "string"}],
                "connect.version": 1, "connect.name": "event.block"}], "default": null},
            {"name": "op", "type": "string"},
            {"name": "ts_ms", "type": ["null", "long"], "default": null}
        ],
        "connect.version": 1, "connect.name": "cdc.t.db.x.Envelope"})
}

fn row(id: i64, v: Option<A>) -> A {
    // `v` is `["null", T]`.
    A::Record(vec![
        ("id".into(), A::Long(id)),
        ("v".into(), v.map_or_else(none, some)),
    ])
}

fn envelope(op: &str, before: Option<A>, after: Option<A>) -> A {
    A::Record(vec![
        ("before".into(), before.map_or_else(none, some)),
        ("after".into(), after.map_or_else(none, some)),
        ("source".into(), mysql_source()),
        ("transaction".into(), none()),
        ("op".into(), A::String(op.into())),
        ("ts_ms".into(), some(A::Long(1_767_225_600_999))),
    ])
}

/// The `JsonConverter` rendering of the same event (schema embedded).
fn json_event(field_schema: &Value, value: &Value) -> Vec<u8> {
    let mut column = field_schema.clone();
    column["field"] = json!("v");
    column["optional"] = json!(true);
    json!({
        "schema": {"type": "struct", "name": "cdc.t.db.x.Envelope", "fields": [
            {"field": "before", "type": "struct", "optional": true, "fields": []},
            {"field": "after", "type": "struct", "optional": true, "name": "cdc.t.db.x.Value",
             "fields": [{"field": "id", "type": "int64", "optional": false}, column]},
            {"field": "source", "type": "struct", "fields": []},
            {"field": "op", "type": "string"}
        ]},
        "payload": {"before": null, "after": {"id": 1, "v": value},
            "source": mysql_source_json(), "op": "c", "ts_ms": 1_767_225_600_999i64}
    })
    .to_string()
    .into_bytes()
}

fn json_key() -> Vec<u8> {
    json!({"schema": {"type": "struct", "fields": [{"field": "id", "type": "int64"}]},
        "payload": {"id": 1}})
    .to_string()
    .into_bytes()
}

fn change(decoded: Result<Decoded, DecodeError>) -> ChangeEvent {
    match decoded {
        Ok(Decoded::Change(event)) => event,
        other => panic!("expected a change, got {other:?}"),
    }
}

/// Decodes a one-column Avro event and returns its `v` cell.
fn avro_cell(column: Value, value: A) -> Cell {
    avro_cell_raw(json!(["null", column]), some(value))
}

fn avro_cell_raw(v_type: Value, v: A) -> Cell {
    let schema = envelope_schema_raw(v_type);
    let registered = schemas(&[(KEY_ID, key_schema()), (VALUE_ID, schema.clone())]);
    let key = encode(
        KEY_ID,
        &key_schema(),
        A::Record(vec![("id".into(), A::Long(1))]),
    );
    let after = A::Record(vec![("id".into(), A::Long(1)), ("v".into(), v)]);
    let bytes = encode(VALUE_ID, &schema, envelope("c", None, Some(after)));
    let event = change(decode(Some(&key), Some(&bytes), lookup(&registered)));
    event
        .row
        .into_iter()
        .find(|c| &*c.name == "v")
        .expect("column v")
}

fn json_cell(field_schema: &Value, value: &Value) -> Cell {
    let event = change(debezium::decode(
        Some(&json_key()),
        Some(&json_event(field_schema, value)),
    ));
    event
        .row
        .into_iter()
        .find(|c| &*c.name == "v")
        .expect("column v")
}

struct Case {
    /// The Kafka Connect field schema, as the JSON converter embeds it.
    connect: Value,
    /// The JSON converter's payload value.
    json: Value,
    /// The field type as Confluent's AvroConverter writes it.
    avro: Value,
    datum: A,
    column_type: ColumnType,
    value: CellValue,
}

fn case(
    connect: Value,
    json: Value,
    avro: Value,
    datum: A,
    column_type: ColumnType,
    value: CellValue,
) -> Case {
    Case {
        connect,
        json,
        avro,
        datum,
        column_type,
        value,
    }
}

fn logical(connect_type: &str, name: &str) -> Value {
    json!({"type": connect_type, "name": name, "version": 1})
}

fn avro_logical(avro_type: &str, name: &str) -> Value {
    json!({"type": avro_type, "connect.version": 1, "connect.name": name})
}

fn decimal_connect(precision: Option<u32>, scale: i32) -> Value {
    let mut parameters = json!({"scale": scale.to_string()});
    if let Some(precision) = precision {
        parameters["connect.decimal.precision"] = json!(precision.to_string());
    }
    json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
        "parameters": parameters})
}

fn decimal_avro(precision: Option<u32>, scale: i32) -> Value {
    let mut parameters = json!({"scale": scale.to_string()});
    if let Some(precision) = precision {
        parameters["connect.decimal.precision"] = json!(precision.to_string());
    }
    json!({"type": "bytes", "scale": scale, "precision": precision.unwrap_or(64),
        "connect.version": 1, "connect.parameters": parameters,
        "connect.name": "org.apache.kafka.connect.data.Decimal", "logicalType": "decimal"})
}

/// Big-endian two's complement, minimal length (Java's `BigInteger.toByteArray`).
fn twos(value: i128) -> Vec<u8> {
    crate::generator::decimal_bytes(value)
}

fn b64(bytes: &[u8]) -> Value {
    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn geometry_connect() -> Value {
    json!({"type": "struct", "name": "io.debezium.data.geometry.Geometry", "version": 1,
        "fields": [{"field": "wkb", "type": "bytes", "optional": false},
                   {"field": "srid", "type": "int32", "optional": true}]})
}

fn geometry_avro() -> Value {
    json!({"type": "record", "name": "Geometry", "namespace": "io.debezium.data.geometry",
        "fields": [{"name": "wkb", "type": "bytes"},
                   {"name": "srid", "type": ["null", "int"], "default": null}],
        "connect.doc": "Geometry", "connect.version": 1,
        "connect.name": "io.debezium.data.geometry.Geometry"})
}

/// The Debezium documentation's type tables (MySQL, PostgreSQL and the Kafka Connect
/// logical types), with values as the documentation describes them.
fn cases() -> Vec<Case> {
    use CellValue as V;
    use ColumnType as T;
    let date = 19_723; // 2024-01-01
    let ms_of_day = 45_296_123; // 12:34:56.123
    let epoch_ms = 1_704_067_200_123i64; // 2024-01-01T00:00:00.123
    vec![
        case(
            json!({"type": "boolean"}),
            json!(true),
            json!("boolean"),
            A::Boolean(true),
            T::Boolean,
            V::Boolean(true),
        ),
        case(
            json!({"type": "int8"}),
            json!(-5),
            json!({"type": "int", "connect.type": "int8"}),
            A::Int(-5),
            T::Int,
            V::Int(-5),
        ),
        case(
            json!({"type": "int16"}),
            json!(-300),
            json!({"type": "int", "connect.type": "int16"}),
            A::Int(-300),
            T::Int,
            V::Int(-300),
        ),
        case(
            json!({"type": "int32"}),
            json!(70_000),
            json!("int"),
            A::Int(70_000),
            T::Int,
            V::Int(70_000),
        ),
        case(
            json!({"type": "int64"}),
            json!(1i64 << 40),
            json!("long"),
            A::Long(1 << 40),
            T::Long,
            V::Long(1 << 40),
        ),
        case(
            json!({"type": "float32"}),
            json!(1.5),
            json!("float"),
            A::Float(1.5),
            T::Float,
            V::Float(1.5),
        ),
        case(
            json!({"type": "float64"}),
            json!(-2.25),
            json!("double"),
            A::Double(-2.25),
            T::Double,
            V::Double(-2.25),
        ),
        case(
            json!({"type": "float64"}),
            json!("Infinity"),
            json!("double"),
            A::Double(f64::INFINITY),
            T::Double,
            V::Double(f64::INFINITY),
        ),
        case(
            json!({"type": "string"}),
            json!("héllo"),
            json!("string"),
            A::String("héllo".into()),
            T::String,
            V::String("héllo".into()),
        ),
        case(
            json!({"type": "bytes"}),
            b64(&[0, 1, 255]),
            json!("bytes"),
            A::Bytes(vec![0, 1, 255]),
            T::Binary,
            V::Binary(vec![0, 1, 255]),
        ),
        case(
            json!({"type": "bytes", "name": "io.debezium.data.Bits", "version": 1, "parameters": {"length": "10"}}),
            b64(&[5, 2]),
            json!({"type": "bytes", "connect.version": 1, "connect.parameters": {"length": "10"}, "connect.name": "io.debezium.data.Bits"}),
            A::Bytes(vec![5, 2]),
            T::Binary,
            V::Binary(vec![5, 2]),
        ),
        case(
            json!({"type": "boolean", "name": "io.debezium.data.Bits"}),
            json!(true),
            avro_logical("boolean", "io.debezium.data.Bits"),
            A::Boolean(true),
            T::Boolean,
            V::Boolean(true),
        ),
        case(
            logical("int32", "io.debezium.time.Date"),
            json!(date),
            avro_logical("int", "io.debezium.time.Date"),
            A::Int(date),
            T::Date,
            V::Date(date),
        ),
        case(
            logical("int32", "org.apache.kafka.connect.data.Date"),
            json!(date),
            json!({"type": "int", "connect.version": 1, "connect.name": "org.apache.kafka.connect.data.Date", "logicalType": "date"}),
            A::Date(date),
            T::Date,
            V::Date(date),
        ),
        case(
            logical("int32", "io.debezium.time.Time"),
            json!(ms_of_day),
            avro_logical("int", "io.debezium.time.Time"),
            A::Int(ms_of_day),
            T::Time,
            V::Time(i64::from(ms_of_day) * 1000),
        ),
        case(
            logical("int32", "org.apache.kafka.connect.data.Time"),
            json!(ms_of_day),
            json!({"type": "int", "connect.version": 1, "connect.name": "org.apache.kafka.connect.data.Time", "logicalType": "time-millis"}),
            A::TimeMillis(ms_of_day),
            T::Time,
            V::Time(i64::from(ms_of_day) * 1000),
        ),
        case(
            logical("int64", "io.debezium.time.MicroTime"),
            json!(45_296_123_456i64),
            avro_logical("long", "io.debezium.time.MicroTime"),
            A::Long(45_296_123_456),
            T::Time,
            V::Time(45_296_123_456),
        ),
        case(
            logical("int64", "io.debezium.time.NanoTime"),
            json!(45_296_123_456_789i64),
            avro_logical("long", "io.debezium.time.NanoTime"),
            A::Long(45_296_123_456_789),
            T::Time,
            V::Time(45_296_123_456),
        ),
        case(
            logical("int64", "io.debezium.time.Timestamp"),
            json!(epoch_ms),
            avro_logical("long", "io.debezium.time.Timestamp"),
            A::Long(epoch_ms),
            T::Timestamp,
            V::Micros(epoch_ms * 1000),
        ),
        case(
            logical("int64", "org.apache.kafka.connect.data.Timestamp"),
            json!(epoch_ms),
            json!({"type": "long", "connect.version": 1, "connect.name": "org.apache.kafka.connect.data.Timestamp", "logicalType": "timestamp-millis"}),
            A::TimestampMillis(epoch_ms),
            T::Timestamp,
            V::Micros(epoch_ms * 1000),
        ),
        case(
            logical("int64", "io.debezium.time.MicroTimestamp"),
            json!(epoch_ms * 1000 + 456),
            avro_logical("long", "io.debezium.time.MicroTimestamp"),
            A::Long(epoch_ms * 1000 + 456),
            T::Timestamp,
            V::Micros(epoch_ms * 1000 + 456),
        ),
        case(
            logical("int64", "io.debezium.time.NanoTimestamp"),
            json!(epoch_ms * 1_000_000 + 456_789),
            avro_logical("long", "io.debezium.time.NanoTimestamp"),
            A::Long(epoch_ms * 1_000_000 + 456_789),
            T::Timestamp,
            V::Micros(epoch_ms * 1000 + 456),
        ),
        case(
            logical("string", "io.debezium.time.ZonedTimestamp"),
            json!("2024-01-01T02:00:00.5+02:00"),
            avro_logical("string", "io.debezium.time.ZonedTimestamp"),
            A::String("2024-01-01T02:00:00.5+02:00".into()),
            T::Timestamptz,
            V::Micros(1_704_067_200_500_000),
        ),
        case(
            logical("string", "io.debezium.time.ZonedTime"),
            json!("10:15:30.123Z"),
            avro_logical("string", "io.debezium.time.ZonedTime"),
            A::String("10:15:30.123Z".into()),
            T::String,
            V::String("10:15:30.123Z".into()),
        ),
        case(
            logical("int32", "io.debezium.time.Year"),
            json!(2024),
            avro_logical("int", "io.debezium.time.Year"),
            A::Int(2024),
            T::Int,
            V::Int(2024),
        ),
        case(
            logical("int64", "io.debezium.time.MicroDuration"),
            json!(3_600_000_000i64),
            avro_logical("long", "io.debezium.time.MicroDuration"),
            A::Long(3_600_000_000),
            T::Long,
            V::Long(3_600_000_000),
        ),
        case(
            logical("string", "io.debezium.time.Interval"),
            json!("P1Y2M3DT4H5M6.78S"),
            avro_logical("string", "io.debezium.time.Interval"),
            A::String("P1Y2M3DT4H5M6.78S".into()),
            T::String,
            V::String("P1Y2M3DT4H5M6.78S".into()),
        ),
        case(
            decimal_connect(Some(10), 2),
            b64(&twos(123_456)),
            decimal_avro(Some(10), 2),
            A::Decimal(apache_avro::Decimal::from(twos(123_456))),
            T::Decimal {
                precision: 10,
                scale: 2,
            },
            V::Decimal(123_456),
        ),
        case(
            decimal_connect(Some(5), 2),
            b64(&twos(-5)),
            decimal_avro(Some(5), 2),
            A::Decimal(apache_avro::Decimal::from(twos(-5))),
            T::Decimal {
                precision: 5,
                scale: 2,
            },
            V::Decimal(-5),
        ),
        // No precision parameter: AvroData writes precision 64, Connect means "unbounded".
        case(
            decimal_connect(None, 2),
            b64(&twos(-123_456)),
            decimal_avro(None, 2),
            A::Decimal(apache_avro::Decimal::from(twos(-123_456))),
            T::Decimal {
                precision: 38,
                scale: 2,
            },
            V::Decimal(-123_456),
        ),
        case(
            decimal_connect(Some(50), 3),
            b64(&twos(123_456)),
            decimal_avro(Some(50), 3),
            A::Decimal(apache_avro::Decimal::from(twos(123_456))),
            T::String,
            V::String("123.456".into()),
        ),
        case(
            json!({"type": "struct", "name": "io.debezium.data.VariableScaleDecimal", "version": 1,
                "fields": [{"field": "scale", "type": "int32"}, {"field": "value", "type": "bytes"}]}),
            json!({"scale": 3, "value": b64(&twos(-12_345))}),
            json!({"type": "record", "name": "VariableScaleDecimal", "namespace": "io.debezium.data",
                "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}],
                "connect.doc": "Variable scaled decimal", "connect.version": 1,
                "connect.name": "io.debezium.data.VariableScaleDecimal"}),
            A::Record(vec![
                ("scale".into(), A::Int(3)),
                ("value".into(), A::Bytes(twos(-12_345))),
            ]),
            T::String,
            V::String("-12.345".into()),
        ),
        case(
            logical("string", "io.debezium.data.Json"),
            json!(r#"{"a": [1, 2]}"#),
            avro_logical("string", "io.debezium.data.Json"),
            A::String(r#"{"a": [1, 2]}"#.into()),
            T::String,
            V::String(r#"{"a": [1, 2]}"#.into()),
        ),
        case(
            logical("string", "io.debezium.data.Xml"),
            json!("<a>1</a>"),
            avro_logical("string", "io.debezium.data.Xml"),
            A::String("<a>1</a>".into()),
            T::String,
            V::String("<a>1</a>".into()),
        ),
        case(
            json!({"type": "string", "name": "io.debezium.data.Enum", "version": 1, "parameters": {"allowed": "new,paid"}}),
            json!("paid"),
            json!({"type": "string", "connect.version": 1, "connect.parameters": {"allowed": "new,paid"}, "connect.name": "io.debezium.data.Enum"}),
            A::String("paid".into()),
            T::String,
            V::String("paid".into()),
        ),
        case(
            json!({"type": "string", "name": "io.debezium.data.EnumSet", "version": 1, "parameters": {"allowed": "a,b,c"}}),
            json!("a,c"),
            json!({"type": "string", "connect.version": 1, "connect.parameters": {"allowed": "a,b,c"}, "connect.name": "io.debezium.data.EnumSet"}),
            A::String("a,c".into()),
            T::String,
            V::String("a,c".into()),
        ),
        case(
            logical("string", "io.debezium.data.Uuid"),
            json!("b2f2c9e6-0d6b-4f3e-9b7a-1c2d3e4f5a6b"),
            avro_logical("string", "io.debezium.data.Uuid"),
            A::String("b2f2c9e6-0d6b-4f3e-9b7a-1c2d3e4f5a6b".into()),
            T::String,
            V::String("b2f2c9e6-0d6b-4f3e-9b7a-1c2d3e4f5a6b".into()),
        ),
        case(
            logical("string", "io.debezium.data.Ltree"),
            json!("Top.Science"),
            avro_logical("string", "io.debezium.data.Ltree"),
            A::String("Top.Science".into()),
            T::String,
            V::String("Top.Science".into()),
        ),
        case(
            geometry_connect(),
            json!({"wkb": "AQE=", "srid": 4326}),
            geometry_avro(),
            A::Record(vec![
                ("wkb".into(), A::Bytes(vec![1, 1])),
                ("srid".into(), some(A::Int(4326))),
            ]),
            T::String,
            V::String(r#"{"srid":4326,"wkb":"AQE="}"#.into()),
        ),
        case(
            json!({"type": "struct", "name": "io.debezium.data.geometry.Point", "version": 1, "fields": [
                {"field": "x", "type": "float64"}, {"field": "y", "type": "float64"},
                {"field": "wkb", "type": "bytes", "optional": true}, {"field": "srid", "type": "int32", "optional": true}]}),
            json!({"x": 1.5, "y": -2.0, "wkb": null, "srid": null}),
            json!({"type": "record", "name": "Point", "namespace": "io.debezium.data.geometry", "fields": [
                {"name": "x", "type": "double"}, {"name": "y", "type": "double"},
                {"name": "wkb", "type": ["null", "bytes"], "default": null},
                {"name": "srid", "type": ["null", "int"], "default": null}],
                "connect.version": 1, "connect.name": "io.debezium.data.geometry.Point"}),
            A::Record(vec![
                ("x".into(), A::Double(1.5)),
                ("y".into(), A::Double(-2.0)),
                ("wkb".into(), none()),
                ("srid".into(), none()),
            ]),
            T::String,
            V::String(r#"{"srid":null,"wkb":null,"x":1.5,"y":-2.0}"#.into()),
        ),
        case(
            json!({"type": "array", "items": {"type": "string", "optional": true}}),
            json!(["a", null]),
            json!({"type": "array", "items": ["null", "string"]}),
            A::Array(vec![some(A::String("a".into())), none()]),
            T::String,
            V::String(r#"["a",null]"#.into()),
        ),
        case(
            json!({"type": "map", "keys": {"type": "string"}, "values": {"type": "string", "optional": true}}),
            json!({"k": "v"}),
            json!({"type": "map", "values": ["null", "string"]}),
            A::Map(
                [("k".to_string(), some(A::String("v".into())))]
                    .into_iter()
                    .collect(),
            ),
            T::String,
            V::String(r#"{"k":"v"}"#.into()),
        ),
    ]
}

#[test]
fn every_logical_type_decodes_as_the_json_converter_rendering_does() {
    for case in cases() {
        let avro = avro_cell(case.avro.clone(), case.datum.clone());
        let json = json_cell(&case.connect, &case.json);
        assert_eq!(avro, json, "avro {} vs json {}", case.avro, case.connect);
        assert_eq!(
            (avro.column_type, &avro.value),
            (case.column_type, &case.value),
            "{}",
            case.avro
        );
        assert!(avro.typed);
    }
}

#[test]
fn nan_and_nulls_decode_like_json() {
    let nan = avro_cell(json!("double"), A::Double(f64::NAN));
    assert!(matches!(nan.value, CellValue::Double(d) if d.is_nan()));
    let registered = schemas(&[(VALUE_ID, envelope_schema(json!("long")))]);
    let bytes = encode(
        VALUE_ID,
        &envelope_schema(json!("long")),
        envelope("c", None, Some(row(1, None))),
    );
    let event = change(decode(Some(&json_key()), Some(&bytes), lookup(&registered)));
    let v = event.row.iter().find(|c| &*c.name == "v").unwrap();
    assert_eq!(
        (v.column_type, &v.value),
        (ColumnType::Long, &CellValue::Null)
    );
}

#[test]
fn avro_native_logical_types_without_connect_names() {
    use CellValue as V;
    use ColumnType as T;
    let us = 1_704_067_200_123_456i64;
    let cases = [
        (
            json!({"type": "long", "logicalType": "timestamp-millis"}),
            A::TimestampMillis(us / 1000),
            T::Timestamptz,
            V::Micros(us / 1000 * 1000),
        ),
        (
            json!({"type": "long", "logicalType": "timestamp-micros"}),
            A::TimestampMicros(us),
            T::Timestamptz,
            V::Micros(us),
        ),
        (
            json!({"type": "long", "logicalType": "timestamp-nanos"}),
            A::TimestampNanos(us * 1000 + 789),
            T::Timestamptz,
            V::Micros(us),
        ),
        (
            json!({"type": "long", "logicalType": "local-timestamp-millis"}),
            A::LocalTimestampMillis(us / 1000),
            T::Timestamp,
            V::Micros(us / 1000 * 1000),
        ),
        (
            json!({"type": "long", "logicalType": "local-timestamp-micros"}),
            A::LocalTimestampMicros(us),
            T::Timestamp,
            V::Micros(us),
        ),
        (
            json!({"type": "long", "logicalType": "local-timestamp-nanos"}),
            A::LocalTimestampNanos(us * 1000),
            T::Timestamp,
            V::Micros(us),
        ),
        (
            json!({"type": "int", "logicalType": "date"}),
            A::Date(-1),
            T::Date,
            V::Date(-1),
        ),
        (
            json!({"type": "int", "logicalType": "time-millis"}),
            A::TimeMillis(1_000),
            T::Time,
            V::Time(1_000_000),
        ),
        (
            json!({"type": "long", "logicalType": "time-micros"}),
            A::TimeMicros(1_000),
            T::Time,
            V::Time(1_000),
        ),
        (
            json!({"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 4}),
            A::Decimal(apache_avro::Decimal::from(twos(-987_654))),
            T::Decimal {
                precision: 12,
                scale: 4,
            },
            V::Decimal(-987_654),
        ),
        (
            json!({"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 2}),
            A::Decimal(apache_avro::Decimal::from((-250i64).to_be_bytes().to_vec())),
            T::Decimal {
                precision: 18,
                scale: 2,
            },
            V::Decimal(-250),
        ),
        (
            json!({"type": "string", "logicalType": "uuid"}),
            A::Uuid("b2f2c9e6-0d6b-4f3e-9b7a-1c2d3e4f5a6b".parse().unwrap()),
            T::String,
            V::String("b2f2c9e6-0d6b-4f3e-9b7a-1c2d3e4f5a6b".into()),
        ),
        (
            json!({"type": "enum", "name": "Status", "symbols": ["new", "paid"]}),
            A::Enum(1, "paid".into()),
            T::String,
            V::String("paid".into()),
        ),
        (
            json!({"type": "fixed", "name": "Hash", "size": 4}),
            A::Fixed(4, vec![1, 2, 3, 4]),
            T::Binary,
            V::Binary(vec![1, 2, 3, 4]),
        ),
    ];
    for (avro, datum, column_type, value) in cases {
        let cell = avro_cell(avro.clone(), datum);
        assert_eq!(
            (cell.column_type, &cell.value),
            (column_type, &value),
            "{avro}"
        );
        assert!(cell.typed);
    }
    // Several non-null branches (Connect's `io.confluent.connect.avro.Union`): the branch
    // value's text.
    let union = json!(["null", "int", "string"]);
    let int = avro_cell_raw(union.clone(), A::Union(1, Box::new(A::Int(5))));
    assert_eq!(
        (int.column_type, int.value),
        (ColumnType::String, CellValue::String("5".into()))
    );
    let text = avro_cell_raw(union.clone(), A::Union(2, Box::new(A::String("x".into()))));
    assert_eq!(text.value, CellValue::String("x".into()));
    assert_eq!(avro_cell_raw(union, none()).value, CellValue::Null);
}

#[test]
fn confluent_header_needs_the_magic_byte_and_five_bytes() {
    assert_eq!(
        confluent_header(&[0, 0, 0, 1, 2, 9, 9]),
        Some((258, &[9u8, 9][..]))
    );
    assert_eq!(confluent_header(&[0, 0, 0, 0, 7]), Some((7, &[][..])));
    assert_eq!(confluent_header(&[0, 0, 0, 7]), None, "too short");
    assert_eq!(confluent_header(b"{\"id\":1}"), None, "json");
    assert_eq!(confluent_header(&[1, 0, 0, 0, 7]), None, "other magic byte");
    assert_eq!(confluent_bytes(258, &[9]), vec![0, 0, 0, 1, 2, 9]);
}

fn long_envelope() -> (HashMap<u32, Arc<AvroSchema>>, Value) {
    let schema = envelope_schema(json!("long"));
    (
        schemas(&[(KEY_ID, key_schema()), (VALUE_ID, schema.clone())]),
        schema,
    )
}

fn avro_key(id: i64) -> Vec<u8> {
    encode(
        KEY_ID,
        &key_schema(),
        A::Record(vec![("id".into(), A::Long(id))]),
    )
}

#[test]
fn an_avro_event_equals_its_json_twin() {
    let (registered, schema) = long_envelope();
    let bytes = encode(
        VALUE_ID,
        &schema,
        envelope("c", None, Some(row(1, Some(A::Long(5))))),
    );
    let avro = change(decode(
        Some(&avro_key(1)),
        Some(&bytes),
        lookup(&registered),
    ));
    let json = change(debezium::decode(
        Some(&json_key()),
        Some(&json_event(&json!({"type": "int64"}), &json!(5))),
    ));
    assert_eq!(avro, json);
    assert_eq!(avro.op, Op::Create);
    assert_eq!(avro.key, vec![("id".to_string(), json!(1))]);
    assert_eq!(avro.source_ts_micros, Some(1_767_225_600_000_000));
    assert_eq!(
        avro.source_pos.as_deref(),
        Some("mysql-bin.000003:00000000000000000154:000001")
    );
}

#[test]
fn deletes_take_before_or_the_key_and_tombstones_are_skipped() {
    let (registered, schema) = long_envelope();
    let delete = encode(
        VALUE_ID,
        &schema,
        envelope("d", Some(row(4, Some(A::Long(9)))), None),
    );
    let event = change(decode(
        Some(&avro_key(4)),
        Some(&delete),
        lookup(&registered),
    ));
    assert_eq!(event.op, Op::Delete);
    let values: Vec<_> = event.row.iter().map(|c| c.value.clone()).collect();
    assert_eq!(values, vec![CellValue::Long(4), CellValue::Long(9)]);

    // No `before` (Postgres without REPLICA IDENTITY FULL): the row is the Avro key,
    // typed by the key schema.
    let bare = encode(VALUE_ID, &schema, envelope("d", None, None));
    let event = change(decode(Some(&avro_key(4)), Some(&bare), lookup(&registered)));
    assert_eq!(
        event.row,
        vec![Cell {
            name: "id".into(),
            column_type: ColumnType::Long,
            typed: true,
            value: CellValue::Long(4),
        }]
    );

    assert_eq!(
        decode(Some(&avro_key(4)), None, lookup(&registered)),
        Ok(Decoded::Tombstone)
    );
    let truncate = encode(VALUE_ID, &schema, envelope("t", None, None));
    let event = change(decode(None, Some(&truncate), lookup(&registered)));
    assert_eq!((event.op, event.row.len()), (Op::Truncate, 0));
}

#[test]
fn formats_mix_per_key_and_value() {
    let (registered, schema) = long_envelope();
    // JSON value with an Avro key, Avro value with a JSON key: same event.
    let json_value = json_event(&json!({"type": "int64"}), &json!(5));
    let avro_value = encode(
        VALUE_ID,
        &schema,
        envelope("c", None, Some(row(1, Some(A::Long(5))))),
    );
    let a = change(decode(
        Some(&avro_key(1)),
        Some(&json_value),
        lookup(&registered),
    ));
    let b = change(decode(
        Some(&json_key()),
        Some(&avro_value),
        lookup(&registered),
    ));
    assert_eq!(a, b);
}

#[test]
fn mongodb_documents_arrive_as_json_strings_in_avro_too() {
    let json_type =
        json!({"type": "string", "connect.version": 1, "connect.name": "io.debezium.data.Json"});
    let schema = json!({"type": "record", "name": "Envelope", "namespace": "cdc.m.inventory.customers",
    "fields": [
        {"name": "before", "type": ["null", json_type], "default": null},
        {"name": "after", "type": ["null", json_type], "default": null},
        {"name": "source", "type": {"type": "record", "name": "Source",
            "namespace": "io.debezium.connector.mongo", "fields": [
                {"name": "connector", "type": "string"},
                {"name": "ts_ms", "type": "long"},
                {"name": "ord", "type": "int"}]}},
        {"name": "op", "type": ["null", "string"], "default": null},
        {"name": "ts_ms", "type": ["null", "long"], "default": null}
    ]});
    let key_schema = json!({"type": "record", "name": "Key", "namespace": "cdc.m.inventory.customers",
        "fields": [{"name": "id", "type": "string"}]});
    let registered = schemas(&[(10, key_schema.clone()), (11, schema.clone())]);
    let oid = r#"{"$oid": "5f1e7d0c9d3b2a0001a1b2c3"}"#;
    let key = encode(
        10,
        &key_schema,
        A::Record(vec![("id".into(), A::String(oid.into()))]),
    );
    let source = A::Record(vec![
        ("connector".into(), A::String("mongodb".into())),
        ("ts_ms".into(), A::Long(1_767_225_600_000)),
        ("ord".into(), A::Int(3)),
    ]);
    let document = r#"{"_id": {"$oid": "5f1e7d0c9d3b2a0001a1b2c3"}, "n": {"$numberLong": "7"}}"#;
    let insert = A::Record(vec![
        ("before".into(), none()),
        ("after".into(), some(A::String(document.into()))),
        ("source".into(), source.clone()),
        ("op".into(), some(A::String("c".into()))),
        ("ts_ms".into(), none()),
    ]);
    let event = change(decode(
        Some(&key),
        Some(&encode(11, &schema, insert)),
        lookup(&registered),
    ));
    let cells: Vec<_> = event
        .row
        .iter()
        .map(|c| (&*c.name, c.value.clone()))
        .collect();
    assert_eq!(
        cells,
        vec![
            ("_id", CellValue::String("5f1e7d0c9d3b2a0001a1b2c3".into())),
            ("n", CellValue::Long(7)),
        ]
    );
    assert_eq!(
        event.source_pos.as_deref(),
        Some("00000001767225600000:0000000003")
    );
    // A delete without a pre-image takes `_id` from the key.
    let delete = A::Record(vec![
        ("before".into(), none()),
        ("after".into(), none()),
        ("source".into(), source),
        ("op".into(), some(A::String("d".into()))),
        ("ts_ms".into(), none()),
    ]);
    let event = change(decode(
        Some(&key),
        Some(&encode(11, &schema, delete)),
        lookup(&registered),
    ));
    assert_eq!(&*event.row[0].name, "_id");
    assert_eq!(
        event.row[0].value,
        CellValue::String("5f1e7d0c9d3b2a0001a1b2c3".into())
    );
}

fn kind(result: Result<Decoded, DecodeError>) -> DecodeErrorKind {
    result.expect_err("a dead letter").kind
}

#[test]
fn poison_avro_records_name_their_reason() {
    let (registered, schema) = long_envelope();
    let good = encode(
        VALUE_ID,
        &schema,
        envelope("c", None, Some(row(1, Some(A::Long(5))))),
    );
    let look = lookup(&registered);

    let mut unknown = good.clone();
    unknown[4] = 99;
    assert_eq!(
        kind(decode(Some(&avro_key(1)), Some(&unknown), &look)),
        DecodeErrorKind::UnknownSchemaId
    );
    let mut unknown_key = avro_key(1);
    unknown_key[4] = 98;
    assert_eq!(
        kind(decode(Some(&unknown_key), Some(&good), &look)),
        DecodeErrorKind::UnknownSchemaId
    );

    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        kind(decode(Some(&avro_key(1)), Some(&trailing), &look)),
        DecodeErrorKind::BadAvro
    );
    let truncated = &good[..good.len() - 3];
    assert_eq!(
        kind(decode(Some(&avro_key(1)), Some(truncated), &look)),
        DecodeErrorKind::BadAvro
    );

    // A key that is not a record, and a record that is not an envelope.
    let string_key_schema = json!("string");
    let registered_more = schemas(&[
        (KEY_ID, key_schema()),
        (VALUE_ID, schema.clone()),
        (20, string_key_schema.clone()),
        (21, key_schema()),
    ]);
    let look_more = lookup(&registered_more);
    let string_key = encode(20, &string_key_schema, A::String("k".into()));
    assert_eq!(
        kind(decode(Some(&string_key), Some(&good), &look_more)),
        DecodeErrorKind::MissingKey
    );
    let not_envelope = encode(
        21,
        &key_schema(),
        A::Record(vec![("id".into(), A::Long(1))]),
    );
    assert_eq!(
        kind(decode(Some(&avro_key(1)), Some(&not_envelope), &look_more)),
        DecodeErrorKind::NotAnEnvelope
    );
    assert_eq!(
        kind(decode(None, Some(&good), &look)),
        DecodeErrorKind::MissingKey
    );

    assert!(AvroSchema::parse(1, "{not json").is_err());
    assert!(
        AvroSchema::parse(
            1,
            r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": "Nope"}]}"#
        )
        .is_err()
    );
}

proptest! {
    #[test]
    fn arbitrary_avro_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let (registered, _) = long_envelope();
        let value = confluent_bytes(VALUE_ID, &body);
        let _ = decode(Some(&avro_key(1)), Some(&value), lookup(&registered));
    }
}
