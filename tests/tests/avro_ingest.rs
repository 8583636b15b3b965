//! Debezium Avro input end to end: Confluent wire-format records produced the way
//! Confluent's `AvroConverter` writes them (the generator's Avro mode and hand-built events
//! covering every logical type), schemas served by a fake Schema Registry with basic auth,
//! ingested into bronze and read back with pyiceberg. Poison cases: an unknown schema id is
//! a dead letter while the partition keeps moving, refused credentials stop the run with a
//! clear error, and a registry outage stalls ingestion without dead letters.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use firn_catalog::{Catalog, PipelineConfig};
use firn_ingest::generator::{AvroEncoder, GeneratorConfig, SchemaMode};
use firn_ingest::writer::{IngestOptions, IngestReport, run};
use firn_tests::schema_registry::FakeSchemaRegistry;
use firn_tests::{generated_source, run_reader};
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::{Value, json};

const EXAMPLE_CONFIG: &str = include_str!("../../docs/firn.example.toml");
const USER: &str = "firn";
const PASSWORD: &str = "registry-secret-7";

/// Test sources: every logical type (MySQL-shaped envelope) and a MongoDB collection.
const TYPES_CONFIG: &str = r#"
[commit]
interval = "1s"

[[sources]]
table = "avro_types"
topic = "cdc.{tenant}.db.avro_types"
primary-key = ["id"]

[[sources]]
table = "mongo_docs"
topic = "cdc.{tenant}.inventory.mongo_docs"
"#;

struct Setup {
    dir: tempfile::TempDir,
    config: PipelineConfig,
    catalog: Catalog,
}

async fn setup(toml: &str, registry: &FakeSchemaRegistry, password: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        (
            "FIRN_SCHEMA_REGISTRY__URL".to_string(),
            registry.url().to_string(),
        ),
        ("FIRN_SCHEMA_REGISTRY__USER".to_string(), USER.to_string()),
        (
            "FIRN_SCHEMA_REGISTRY__PASSWORD".to_string(),
            password.to_string(),
        ),
        (
            "FIRN_SCHEMA_REGISTRY__TIMEOUT".to_string(),
            "2s".to_string(),
        ),
    ];
    let config = PipelineConfig::from_toml(toml, env, dir.path()).unwrap();
    let catalog = Catalog::connect(&config).await.unwrap();
    Setup {
        dir,
        config,
        catalog,
    }
}

fn reader(dir: &Path, args: &[&str]) -> Value {
    let mut full = vec![
        "--uri".to_string(),
        dir.join("warehouse/catalog.db").display().to_string(),
    ];
    full.extend(args.iter().map(|a| a.to_string()));
    run_reader(&full)
}

fn options(brokers: &str) -> IngestOptions {
    IngestOptions {
        brokers: brokers.to_string(),
        writer_id: "avro-test".into(),
        stop_when_caught_up: true,
    }
}

fn written(report: &IngestReport) -> u64 {
    report.tables.values().map(|t| t.rows_written).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_avro_stream_lands_once_with_json_types() {
    let registry = FakeSchemaRegistry::start_with_auth(Some((USER, PASSWORD)))
        .await
        .unwrap();
    let generator_config = GeneratorConfig {
        schemas: SchemaMode::Avro,
        customers: 30,
        products: 10,
        orders: 50,
        ..GeneratorConfig::default()
    };
    let source = generated_source(&generator_config, 2).await;
    for (id, schema) in source.generator.avro_schemas() {
        registry.register(id, &schema);
    }
    let setup = setup(EXAMPLE_CONFIG, &registry, PASSWORD).await;
    let report = run(&setup.catalog, &setup.config, &options(&source.brokers))
        .await
        .unwrap();
    assert_eq!(report.dead_letters, 0, "{report:?}");
    assert!(
        report.duplicates_dropped > 0,
        "connector re-emissions are dropped"
    );
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (topic, counts) in source.generator.expected().counts_report().topics {
        let table = topic.rsplit('.').next().unwrap().to_string();
        *expected.entry(table).or_default() += counts.change_events;
    }
    assert_eq!(written(&report), expected.values().sum::<u64>());
    for (table, rows) in &expected {
        let scan = reader(setup.dir.path(), &["scan", &format!("bronze.{table}")]);
        assert_eq!(scan["row_count"].as_u64(), Some(*rows), "bronze.{table}");
    }
    // The same logical types as JSON input: decimals, dates, timestamps, zoned timestamps.
    let described = reader(setup.dir.path(), &["describe", "bronze.customers"]);
    let types: BTreeMap<String, String> = described["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().into(),
                f["type"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(types["id"], "long");
    assert_eq!(types["birth_date"], "date");
    assert_eq!(types["updated_at"], "timestamptz");
    let orders = reader(setup.dir.path(), &["describe", "bronze.orders"]);
    let total = orders["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "total")
        .unwrap();
    assert_eq!(total["type"], "decimal(12, 2)");

    // The schemas were fetched once each, not per record.
    let schema_count = source.generator.avro_schemas().len() as u64;
    assert!(
        registry.requests() <= schema_count,
        "{} requests for {schema_count} schemas",
        registry.requests()
    );
}

fn optional(mut schema: Value, field: &str) -> Value {
    schema["optional"] = json!(true);
    schema["field"] = json!(field);
    schema
}

fn named(connect_type: &str, name: &str) -> Value {
    json!({"type": connect_type, "name": name, "version": 1})
}

fn decimal(precision: u32, scale: u32) -> Value {
    json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
        "parameters": {"scale": scale.to_string(), "connect.decimal.precision": precision.to_string()}})
}

/// Every column type of the Debezium type tables, as Connect schemas.
fn type_columns() -> Vec<Value> {
    let columns = vec![
        ("b", json!({"type": "boolean"})),
        ("i8", json!({"type": "int8"})),
        ("i16", json!({"type": "int16"})),
        ("i32", json!({"type": "int32"})),
        ("i64", json!({"type": "int64"})),
        ("f32", json!({"type": "float32"})),
        ("f64", json!({"type": "float64"})),
        ("s", json!({"type": "string"})),
        ("raw", json!({"type": "bytes"})),
        (
            "bits",
            json!({"type": "bytes", "name": "io.debezium.data.Bits", "version": 1, "parameters": {"length": "12"}}),
        ),
        ("d", named("int32", "io.debezium.time.Date")),
        ("cd", named("int32", "org.apache.kafka.connect.data.Date")),
        ("t", named("int32", "io.debezium.time.Time")),
        ("ct", named("int32", "org.apache.kafka.connect.data.Time")),
        ("mt", named("int64", "io.debezium.time.MicroTime")),
        ("nt", named("int64", "io.debezium.time.NanoTime")),
        ("ts", named("int64", "io.debezium.time.Timestamp")),
        (
            "cts",
            named("int64", "org.apache.kafka.connect.data.Timestamp"),
        ),
        ("mts", named("int64", "io.debezium.time.MicroTimestamp")),
        ("nts", named("int64", "io.debezium.time.NanoTimestamp")),
        ("zts", named("string", "io.debezium.time.ZonedTimestamp")),
        ("ztime", named("string", "io.debezium.time.ZonedTime")),
        ("yr", named("int32", "io.debezium.time.Year")),
        ("dur", named("int64", "io.debezium.time.MicroDuration")),
        ("ivl", named("string", "io.debezium.time.Interval")),
        ("dec", decimal(10, 2)),
        ("wide", decimal(50, 3)),
        (
            "vsd",
            json!({"type": "struct", "name": "io.debezium.data.VariableScaleDecimal", "version": 1,
            "fields": [{"field": "scale", "type": "int32", "optional": false},
                       {"field": "value", "type": "bytes", "optional": false}]}),
        ),
        ("js", named("string", "io.debezium.data.Json")),
        ("xml", named("string", "io.debezium.data.Xml")),
        (
            "en",
            json!({"type": "string", "name": "io.debezium.data.Enum", "version": 1, "parameters": {"allowed": "new,paid"}}),
        ),
        (
            "es",
            json!({"type": "string", "name": "io.debezium.data.EnumSet", "version": 1, "parameters": {"allowed": "a,b,c"}}),
        ),
        ("uid", named("string", "io.debezium.data.Uuid")),
        ("lt", named("string", "io.debezium.data.Ltree")),
        (
            "geo",
            json!({"type": "struct", "name": "io.debezium.data.geometry.Geometry", "version": 1,
            "fields": [{"field": "wkb", "type": "bytes", "optional": false},
                       {"field": "srid", "type": "int32", "optional": true}]}),
        ),
        (
            "tags",
            json!({"type": "array", "items": {"type": "string", "optional": false}}),
        ),
        (
            "attrs",
            json!({"type": "map", "keys": {"type": "string", "optional": false}, "values": {"type": "string", "optional": true}}),
        ),
    ];
    let mut fields = vec![json!({"type": "int64", "optional": false, "field": "id"})];
    fields.extend(
        columns
            .into_iter()
            .map(|(name, schema)| optional(schema, name)),
    );
    fields
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Values as the JSON converter renders them (the Debezium docs' examples).
fn full_row(id: i64, dec_cents: i128) -> Value {
    json!({
        "id": id, "b": true, "i8": -5, "i16": -300, "i32": 70000, "i64": 1i64 << 40,
        "f32": 1.5, "f64": -2.25, "s": "héllo", "raw": b64(&[0, 1, 255]), "bits": b64(&[5, 2]),
        "d": 19723, "cd": 19723, "t": 45_296_123, "ct": 45_296_123,
        "mt": 45_296_123_456i64, "nt": 45_296_123_456_789i64,
        "ts": 1_704_067_200_123i64, "cts": 1_704_067_200_123i64,
        "mts": 1_704_067_200_123_456i64, "nts": 1_704_067_200_123_456_789i64,
        "zts": "2024-01-01T02:00:00.5+02:00", "ztime": "10:15:30.123Z", "yr": 2024,
        "dur": 3_600_000_000i64, "ivl": "P1Y2M3DT4H5M6.78S",
        "dec": b64(&firn_ingest::generator::decimal_bytes(dec_cents)),
        "wide": b64(&firn_ingest::generator::decimal_bytes(-123_456)),
        "vsd": {"scale": 3, "value": b64(&firn_ingest::generator::decimal_bytes(12_345))},
        "js": "{\"a\": [1, 2]}", "xml": "<a>1</a>", "en": "paid", "es": "a,c",
        "uid": "b2f2c9e6-0d6b-4f3e-9b7a-1c2d3e4f5a6b", "lt": "Top.Science",
        "geo": {"wkb": "AQE=", "srid": 4326}, "tags": ["x", "y"], "attrs": {"k": "v"}
    })
}

fn null_row(id: i64) -> Value {
    let mut row = json!({"id": id});
    for field in type_columns().iter().skip(1) {
        row[field["field"].as_str().unwrap()] = Value::Null;
    }
    row
}

fn mysql_source_schema() -> Value {
    let p = |t: &str, field: &str, optional: bool| json!({"type": t, "optional": optional, "field": field});
    json!({"type": "struct", "name": "io.debezium.connector.mysql.Source", "optional": false, "field": "source",
        "fields": [p("string", "version", false), p("string", "connector", false), p("string", "name", false),
            p("int64", "ts_ms", false),
            {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
             "parameters": {"allowed": "true,last,false,incremental"}, "default": "false", "field": "snapshot"},
            p("string", "db", false), p("string", "table", true), p("int64", "server_id", false),
            p("string", "file", false), p("int64", "pos", false), p("int32", "row", false)]})
}

fn envelope_schema(namespace: &str, row_fields: Vec<Value>) -> Value {
    let row = json!({"type": "struct", "name": format!("{namespace}.Value"), "optional": true, "fields": row_fields});
    let mut before = row.clone();
    before["field"] = json!("before");
    let mut after = row;
    after["field"] = json!("after");
    json!({"type": "struct", "name": format!("{namespace}.Envelope"), "optional": false, "version": 2,
        "fields": [before, after, mysql_source_schema(),
            {"type": "struct", "name": "event.block", "optional": true, "version": 1, "field": "transaction",
             "fields": [{"type": "string", "optional": false, "field": "id"}]},
            {"type": "string", "optional": false, "field": "op"},
            {"type": "int64", "optional": true, "field": "ts_ms"}]})
}

fn envelope(op: &str, before: Value, after: Value, pos: i64) -> Value {
    json!({"before": before, "after": after,
        "source": {"version": "2.7.0.Final", "connector": "mysql", "name": "cdc.acme", "ts_ms": 1_767_225_600_000i64 + pos,
            "snapshot": "false", "db": "db", "table": "avro_types", "server_id": 1,
            "file": "mysql-bin.000001", "pos": pos, "row": 0},
        "transaction": null, "op": op, "ts_ms": 1_767_225_601_000i64 + pos})
}

type Message = (String, Option<Vec<u8>>, Option<Vec<u8>>);

fn produce(brokers: &str, messages: &[Message]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for (topic, key, value) in messages {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(key) = key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = value {
            record = record.payload(value.as_slice());
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Avro encoders for the all-types table (key id 101, value id 102), registered.
fn type_encoders(registry: &FakeSchemaRegistry) -> (AvroEncoder, AvroEncoder) {
    let key_schema = json!({"type": "struct", "name": "cdc.acme.db.avro_types.Key", "optional": false,
        "fields": [{"type": "int64", "optional": false, "field": "id"}]});
    let key = AvroEncoder::new(101, &key_schema).unwrap();
    let value = AvroEncoder::new(
        102,
        &envelope_schema("cdc.acme.db.avro_types", type_columns()),
    )
    .unwrap();
    registry.register(key.id(), key.schema_text());
    registry.register(value.id(), value.schema_text());
    (key, value)
}

/// A MongoDB change stream as Debezium writes it with the Avro converter: the documents are
/// `io.debezium.data.Json` strings.
fn mongo_messages(registry: &FakeSchemaRegistry) -> Vec<Message> {
    let json_field = |field: &str| json!({"type": "string", "optional": true, "name": "io.debezium.data.Json", "version": 1, "field": field});
    let schema = json!({"type": "struct", "name": "cdc.acme.inventory.mongo_docs.Envelope", "optional": false,
        "fields": [json_field("before"), json_field("after"),
            {"type": "struct", "name": "io.debezium.connector.mongo.Source", "optional": false, "field": "source",
             "fields": [{"type": "string", "optional": false, "field": "connector"},
                        {"type": "int64", "optional": false, "field": "ts_ms"},
                        {"type": "int32", "optional": false, "field": "ord"}]},
            {"type": "string", "optional": true, "field": "op"},
            {"type": "int64", "optional": true, "field": "ts_ms"}]});
    let key_schema = json!({"type": "struct", "name": "cdc.acme.inventory.mongo_docs.Key", "optional": false,
        "fields": [{"type": "string", "optional": false, "field": "id"}]});
    let key = AvroEncoder::new(111, &key_schema).unwrap();
    let value = AvroEncoder::new(112, &schema).unwrap();
    registry.register(key.id(), key.schema_text());
    registry.register(value.id(), value.schema_text());
    let topic = "cdc.acme.inventory.mongo_docs".to_string();
    let oid = r#"{"$oid": "5f1e7d0c9d3b2a0001a1b2c3"}"#;
    let document = r#"{"_id": {"$oid": "5f1e7d0c9d3b2a0001a1b2c3"}, "n": {"$numberLong": "7"}, "at": {"$date": 1767225600000}}"#;
    let event = |op: &str, after: Value, ord: i64| {
        json!({"before": null, "after": after,
            "source": {"connector": "mongodb", "ts_ms": 1_767_225_600_000i64, "ord": ord},
            "op": op, "ts_ms": 1_767_225_600_500i64})
    };
    let key_bytes = key.encode(&json!({"id": oid})).unwrap();
    vec![
        (
            topic.clone(),
            Some(key_bytes.clone()),
            Some(value.encode(&event("c", json!(document), 1)).unwrap()),
        ),
        (
            topic.clone(),
            Some(key_bytes.clone()),
            Some(value.encode(&event("d", Value::Null, 2)).unwrap()),
        ),
        (topic, Some(key_bytes), None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_logical_type_reads_back_from_bronze_with_its_type() {
    let registry = FakeSchemaRegistry::start_with_auth(Some((USER, PASSWORD)))
        .await
        .unwrap();
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let topic = "cdc.acme.db.avro_types";
    cluster.create_topic(topic, 1, 1).unwrap();
    cluster
        .create_topic("cdc.acme.inventory.mongo_docs", 1, 1)
        .unwrap();
    let (key, value) = type_encoders(&registry);
    let k = |id: i64| Some(key.encode(&json!({"id": id})).unwrap());
    let v = |event: Value| Some(value.encode(&event).unwrap());
    let mut messages: Vec<Message> = vec![
        (
            topic.into(),
            k(1),
            v(envelope("c", Value::Null, full_row(1, 123_456), 100)),
        ),
        (
            topic.into(),
            k(2),
            v(envelope("c", Value::Null, null_row(2), 200)),
        ),
        (
            topic.into(),
            k(1),
            v(envelope("u", full_row(1, 123_456), full_row(1, -5), 300)),
        ),
        (
            topic.into(),
            k(2),
            v(envelope("d", null_row(2), Value::Null, 400)),
        ),
        (topic.into(), k(2), None),
    ];
    messages.extend(mongo_messages(&registry));
    produce(&brokers, &messages);

    let setup = setup(TYPES_CONFIG, &registry, PASSWORD).await;
    let report = run(&setup.catalog, &setup.config, &options(&brokers))
        .await
        .unwrap();
    assert_eq!(report.dead_letters, 0, "{report:?}");
    assert_eq!(report.tombstones, 2);
    assert_eq!(written(&report), 6, "four type events and two mongo events");

    let described = reader(setup.dir.path(), &["describe", "bronze.avro_types"]);
    let types: BTreeMap<String, String> = described["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().into(),
                f["type"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected_types = [
        ("id", "long"),
        ("b", "boolean"),
        ("i8", "int"),
        ("i16", "int"),
        ("i32", "int"),
        ("i64", "long"),
        ("f32", "float"),
        ("f64", "double"),
        ("s", "string"),
        ("raw", "binary"),
        ("bits", "binary"),
        ("d", "date"),
        ("cd", "date"),
        ("t", "time"),
        ("ct", "time"),
        ("mt", "time"),
        ("nt", "time"),
        ("ts", "timestamp"),
        ("cts", "timestamp"),
        ("mts", "timestamp"),
        ("nts", "timestamp"),
        ("zts", "timestamptz"),
        ("ztime", "string"),
        ("yr", "int"),
        ("dur", "long"),
        ("ivl", "string"),
        ("dec", "decimal(10, 2)"),
        ("wide", "string"),
        ("vsd", "string"),
        ("js", "string"),
        ("xml", "string"),
        ("en", "string"),
        ("es", "string"),
        ("uid", "string"),
        ("lt", "string"),
        ("geo", "string"),
        ("tags", "string"),
        ("attrs", "string"),
    ];
    for (column, expected) in expected_types {
        assert_eq!(
            types.get(column).map(String::as_str),
            Some(expected),
            "column {column}"
        );
    }

    let scan = reader(setup.dir.path(), &["scan", "bronze.avro_types", "--rows"]);
    let rows = scan["rows"].as_array().unwrap();
    let ops: Vec<(i64, &str)> = rows
        .iter()
        .map(|r| (r["id"].as_i64().unwrap(), r["_firn_op"].as_str().unwrap()))
        .collect();
    assert_eq!(ops.len(), 4);
    for expected in [(1, "c"), (2, "c"), (1, "u"), (2, "d")] {
        assert!(ops.contains(&expected), "{ops:?}");
    }
    let created = rows
        .iter()
        .find(|r| r["id"] == 1 && r["_firn_op"] == "c")
        .unwrap();
    let expected_values = json!({
        "b": true, "i8": -5, "i16": -300, "i32": 70000, "i64": 1i64 << 40, "f32": 1.5,
        "f64": -2.25, "s": "héllo", "raw": "AAH/", "bits": "BQI=", "d": "2024-01-01",
        "cd": "2024-01-01", "t": "12:34:56.123000", "ct": "12:34:56.123000",
        "mt": "12:34:56.123456", "nt": "12:34:56.123456", "ts": "2024-01-01T00:00:00.123000",
        "cts": "2024-01-01T00:00:00.123000", "mts": "2024-01-01T00:00:00.123456",
        "nts": "2024-01-01T00:00:00.123456", "zts": "2024-01-01T00:00:00.500000+00:00",
        "ztime": "10:15:30.123Z", "yr": 2024, "dur": 3_600_000_000i64,
        "ivl": "P1Y2M3DT4H5M6.78S", "dec": "1234.56", "wide": "-123.456", "vsd": "12.345",
        "js": "{\"a\": [1, 2]}", "xml": "<a>1</a>", "en": "paid", "es": "a,c",
        "uid": "b2f2c9e6-0d6b-4f3e-9b7a-1c2d3e4f5a6b", "lt": "Top.Science",
        "geo": "{\"srid\":4326,\"wkb\":\"AQE=\"}", "tags": "[\"x\",\"y\"]", "attrs": "{\"k\":\"v\"}"
    });
    for (column, expected) in expected_values.as_object().unwrap() {
        assert_eq!(&created[column], expected, "column {column}");
    }
    let updated = rows
        .iter()
        .find(|r| r["id"] == 1 && r["_firn_op"] == "u")
        .unwrap();
    assert_eq!(updated["dec"], "-0.05");
    // The null row and the delete (its row from `before`) hold nulls.
    for row in rows.iter().filter(|r| r["id"] == 2) {
        assert!(
            row["dec"].is_null() && row["zts"].is_null() && row["geo"].is_null(),
            "{row}"
        );
    }

    let mongo = reader(setup.dir.path(), &["scan", "bronze.mongo_docs", "--rows"]);
    let mongo_rows = mongo["rows"].as_array().unwrap();
    assert_eq!(mongo_rows.len(), 2);
    let inserted = mongo_rows.iter().find(|r| r["_firn_op"] == "c").unwrap();
    assert_eq!(inserted["_id"], "5f1e7d0c9d3b2a0001a1b2c3");
    assert_eq!(inserted["n"], 7);
    assert_eq!(inserted["at"], "2026-01-01T00:00:00+00:00");
    let deleted = mongo_rows.iter().find(|r| r["_firn_op"] == "d").unwrap();
    assert_eq!(
        deleted["_id"], "5f1e7d0c9d3b2a0001a1b2c3",
        "a delete keeps its key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_schema_id_is_a_dead_letter_and_the_partition_moves_on() {
    let registry = FakeSchemaRegistry::start_with_auth(Some((USER, PASSWORD)))
        .await
        .unwrap();
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let topic = "cdc.acme.db.avro_types";
    cluster.create_topic(topic, 1, 1).unwrap();
    let (key, value) = type_encoders(&registry);
    let k = |id: i64| Some(key.encode(&json!({"id": id})).unwrap());
    let event = |id: i64| {
        value
            .encode(&envelope("c", Value::Null, null_row(id), id))
            .unwrap()
    };
    let mut unknown = event(2);
    unknown[1..5].copy_from_slice(&999u32.to_be_bytes());
    produce(
        &brokers,
        &[
            (topic.into(), k(1), Some(event(1))),
            (topic.into(), k(2), Some(unknown)),
            (topic.into(), k(3), Some(event(3))),
        ],
    );
    let setup = setup(TYPES_CONFIG, &registry, PASSWORD).await;
    let report = run(&setup.catalog, &setup.config, &options(&brokers))
        .await
        .unwrap();
    assert_eq!(
        (report.dead_letters, written(&report)),
        (1, 2),
        "{report:?}"
    );
    let bronze = reader(
        setup.dir.path(),
        &["scan", "bronze.avro_types", "--rows", "--columns", "id"],
    );
    assert_eq!(bronze["rows"], json!([{"id": 1}, {"id": 3}]));
    let letters = reader(
        setup.dir.path(),
        &[
            "scan",
            "bronze.firn_dead_letters",
            "--rows",
            "--columns",
            "offset,error_kind,error_message",
        ],
    );
    let letter = &letters["rows"][0];
    assert_eq!(letters["row_count"], 1);
    assert_eq!(
        (&letter["offset"], &letter["error_kind"]),
        (&json!(1), &json!("unknown_schema_id"))
    );
    assert!(
        letter["error_message"].as_str().unwrap().contains("999"),
        "{letter}"
    );

    // A second run re-reads nothing and adds no dead letter.
    let again = run(&setup.catalog, &setup.config, &options(&brokers))
        .await
        .unwrap();
    assert_eq!((again.records_consumed, again.dead_letters), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_registry_credentials_stop_the_run_with_a_clear_error() {
    let registry = FakeSchemaRegistry::start_with_auth(Some((USER, PASSWORD)))
        .await
        .unwrap();
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let topic = "cdc.acme.db.avro_types";
    cluster.create_topic(topic, 1, 1).unwrap();
    let (key, value) = type_encoders(&registry);
    produce(
        &brokers,
        &[(
            topic.into(),
            Some(key.encode(&json!({"id": 1})).unwrap()),
            Some(
                value
                    .encode(&envelope("c", Value::Null, null_row(1), 1))
                    .unwrap(),
            ),
        )],
    );
    let wrong = "not-the-password";
    let setup = setup(TYPES_CONFIG, &registry, wrong).await;
    let err = run(&setup.catalog, &setup.config, &options(&brokers))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("refused the credentials (http 401"),
        "{message}"
    );
    assert!(
        message.contains("FIRN_SCHEMA_REGISTRY__PASSWORD"),
        "{message}"
    );
    assert!(!message.contains(wrong) && !format!("{err:?}").contains(wrong));
    assert!(err.is_bad_input());
    let bronze = reader(setup.dir.path(), &["scan", "bronze.firn_dead_letters"]);
    assert_eq!(
        bronze["row_count"], 0,
        "nothing dead-lettered for a registry problem"
    );
}

/// 40 Avro records of `avro_types` on a mock cluster, a lake set up for them, and their
/// (authenticated) registry, which is down.
async fn outage_setup() -> (
    FakeSchemaRegistry,
    MockCluster<'static, DefaultProducerContext>,
    String,
    Setup,
) {
    let registry = FakeSchemaRegistry::start_with_auth(Some((USER, PASSWORD)))
        .await
        .unwrap();
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let topic = "cdc.acme.db.avro_types";
    cluster.create_topic(topic, 2, 1).unwrap();
    let (key, value) = type_encoders(&registry);
    let messages: Vec<Message> = (1..=40)
        .map(|id| {
            (
                topic.to_string(),
                Some(key.encode(&json!({"id": id})).unwrap()),
                Some(
                    value
                        .encode(&envelope("c", Value::Null, full_row(id, id.into()), id))
                        .unwrap(),
                ),
            )
        })
        .collect();
    produce(&brokers, &messages);
    registry.set_down(true);
    let setup = setup(TYPES_CONFIG, &registry, PASSWORD).await;
    (registry, cluster, brokers, setup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_stalls_ingestion_without_dead_letters() {
    let (registry, _cluster, brokers, setup) = outage_setup().await;
    let ingest = {
        let (catalog, config, brokers) =
            (setup.catalog.clone(), setup.config.clone(), brokers.clone());
        tokio::spawn(async move { run(&catalog, &config, &options(&brokers)).await })
    };
    // Down for a while: the run waits rather than finishing or dead-lettering.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        registry.refused() >= 3,
        "the run kept asking: {}",
        registry.refused()
    );
    assert!(!ingest.is_finished(), "the run waits for the registry");
    registry.set_down(false);
    let report = tokio::time::timeout(Duration::from_secs(60), ingest)
        .await
        .expect("the run finishes once the registry is back")
        .unwrap()
        .unwrap();
    assert_eq!(
        (report.dead_letters, written(&report)),
        (0, 40),
        "{report:?}"
    );
    let bronze = reader(setup.dir.path(), &["scan", "bronze.avro_types"]);
    assert_eq!(bronze["row_count"], 40, "every record once");
    let letters = reader(setup.dir.path(), &["scan", "bronze.firn_dead_letters"]);
    assert_eq!(letters["row_count"], 0);
}

/// A stop requested while the registry is down ends the run cleanly (no error, nothing
/// committed for the records that wait for their schema), and the next run lands them once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_registry_outage_ends_cleanly_and_loses_nothing() {
    let (registry, _cluster, brokers, setup) = outage_setup().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ingest = {
        let (catalog, config, brokers, stop) = (
            setup.catalog.clone(),
            setup.config.clone(),
            brokers.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            firn_ingest::writer::run_service(
                &catalog,
                &config,
                &options(&brokers),
                &stop,
                &firn_ingest::metrics::IngestMetrics::unregistered(),
                &firn_ingest::admin::Health::new(),
            )
            .await
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while registry.refused() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never asked the registry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let report = tokio::time::timeout(Duration::from_secs(30), ingest)
        .await
        .expect("the run stops while the registry is down")
        .unwrap()
        .expect("a requested stop is not an error");
    assert_eq!(
        (report.dead_letters, written(&report)),
        (0, 0),
        "{report:?}"
    );

    registry.set_down(false);
    let report = run(&setup.catalog, &setup.config, &options(&brokers))
        .await
        .unwrap();
    assert_eq!(
        (report.dead_letters, written(&report)),
        (0, 40),
        "{report:?}"
    );
    let bronze = reader(setup.dir.path(), &["scan", "bronze.avro_types"]);
    assert_eq!(bronze["row_count"], 40, "every record once");
}
