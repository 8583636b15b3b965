//! Whole-generator tests: determinism, Debezium shape, and an independent replay of the
//! emitted bytes checked against the expected state. No I/O.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value, json};

use super::*;

/// What makes a change event unique: (topic, key bytes, source position, op).
type Identity = (String, Vec<u8>, (String, u64), String);

fn small() -> GeneratorConfig {
    GeneratorConfig {
        customers: 40,
        products: 12,
        orders: 60,
        ..GeneratorConfig::default()
    }
}

fn generate(config: &GeneratorConfig) -> (Vec<CdcMessage>, Generator) {
    let mut generator = Generator::new(config).expect("valid config");
    let messages: Vec<CdcMessage> = generator.by_ref().collect();
    assert!(generator.is_finished());
    (messages, generator)
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("message is json")
}

/// The envelope payload, whether or not the schema is embedded.
fn payload(value: &Value) -> &Value {
    if value.get("schema").is_some() {
        &value["payload"]
    } else {
        value
    }
}

/// A sortable, comparable source position: (binlog file, pos) or (0, lsn).
fn position(source: &Value) -> (String, u64) {
    match source["connector"].as_str() {
        Some("mysql") => (
            source["file"].as_str().expect("file").to_owned(),
            source["pos"].as_u64().expect("pos"),
        ),
        _ => (String::new(), source["lsn"].as_u64().expect("lsn")),
    }
}

#[test]
fn same_seed_is_byte_identical_and_other_seed_differs() {
    let (a, _) = generate(&small());
    let (b, _) = generate(&small());
    assert_eq!(a, b);
    let (c, _) = generate(&GeneratorConfig { seed: 7, ..small() });
    assert_ne!(a, c);
}

#[test]
fn every_message_is_a_debezium_envelope() {
    let config = small();
    let specs = config.tenant_specs();
    let (messages, _) = generate(&config);
    assert!(!messages.is_empty());
    for message in &messages {
        let spec = specs
            .iter()
            .find(|s| s.name == message.tenant)
            .expect("known tenant");
        assert_eq!(message.topic, spec.topic(message.table));
        assert_eq!(
            message.topic,
            format!("cdc.{}.shop.{}", message.tenant, message.table)
        );
        let key = parse(message.key.as_deref().expect("every message has a key"));
        assert_eq!(key.get("schema").is_some(), spec.schemas);
        let key_payload = if spec.schemas { &key["payload"] } else { &key };
        for column in message.table.key_columns() {
            assert!(key_payload[column].is_i64(), "{key}");
        }
        let Some(value) = &message.value else {
            continue;
        };
        let value = parse(value);
        assert_eq!(value.get("schema").is_some(), spec.schemas);
        let p = payload(&value);
        for field in ["before", "after", "source", "op", "ts_ms", "transaction"] {
            assert!(p.get(field).is_some(), "missing {field} in {p}");
        }
        let op = p["op"].as_str().expect("op");
        assert!(["r", "c", "u", "d"].contains(&op));
        assert_eq!(p["before"].is_null(), op == "r" || op == "c");
        assert_eq!(p["after"].is_null(), op == "d");
        let source = &p["source"];
        assert_eq!(source["version"], "2.7.0.Final");
        assert_eq!(source["name"], spec.server_name.as_str());
        assert_eq!(source["db"], "shop");
        assert_eq!(source["table"], message.table.name());
        assert!(source["ts_ms"].is_i64());
        let snapshot = source["snapshot"].as_str().expect("snapshot");
        assert_eq!(op == "r", snapshot != "false", "{source}");
        match spec.flavor {
            Flavor::MySql => {
                assert_eq!(source["connector"], "mysql");
                assert_eq!(source["server_id"], 223_344);
                assert!(
                    source["file"]
                        .as_str()
                        .expect("file")
                        .starts_with("mysql-bin.")
                );
                assert_eq!(source["sequence"], Value::Null);
            }
            Flavor::Postgres => {
                assert_eq!(source["connector"], "postgresql");
                assert_eq!(source["schema"], "public");
                assert!(source["txId"].is_u64() && source["lsn"].is_u64());
                let sequence: Vec<Value> =
                    serde_json::from_str(source["sequence"].as_str().expect("sequence"))
                        .expect("sequence is a json array");
                assert_eq!(sequence.len(), 2);
                assert_eq!(sequence[1], source["lsn"].to_string());
            }
        }
        if spec.schemas {
            let schema = &value["schema"];
            let namespace = match spec.flavor {
                Flavor::MySql => format!("{}.shop.{}", spec.server_name, message.table),
                Flavor::Postgres => format!("{}.public.{}", spec.server_name, message.table),
            };
            assert_eq!(schema["name"], format!("{namespace}.Envelope"));
            assert_eq!(schema["type"], "struct");
            assert_eq!(schema["optional"], false);
            assert_eq!(key["schema"]["name"], format!("{namespace}.Key"));
        }
    }
}

#[test]
fn schema_embedded_and_schema_less_payloads_agree() {
    let with = GeneratorConfig {
        schemas: SchemaMode::With,
        ..small()
    };
    let without = GeneratorConfig {
        schemas: SchemaMode::Without,
        ..small()
    };
    let (a, _) = generate(&with);
    let (b, _) = generate(&without);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.topic, y.topic);
        let key_x = parse(x.key.as_deref().expect("key"));
        assert_eq!(key_x["payload"], parse(y.key.as_deref().expect("key")));
        match (&x.value, &y.value) {
            (Some(vx), Some(vy)) => assert_eq!(parse(vx)["payload"], parse(vy)),
            (None, None) => {}
            _ => panic!("tombstone mismatch on {}", x.topic),
        }
    }
}

#[test]
fn avro_mode_decodes_to_the_same_events_as_json_with_schemas() {
    let with = GeneratorConfig {
        schemas: SchemaMode::With,
        ..small()
    };
    let avro = GeneratorConfig {
        schemas: SchemaMode::Avro,
        ..small()
    };
    let (json_messages, json_generator) = generate(&with);
    let (avro_messages, avro_generator) = generate(&avro);
    assert!(json_generator.avro_schemas().is_empty());
    let registered: HashMap<u32, std::sync::Arc<crate::avro::AvroSchema>> = avro_generator
        .avro_schemas()
        .into_iter()
        .map(|(id, text)| {
            let schema =
                crate::avro::AvroSchema::parse(id, &text).expect("registered schema parses");
            (id, std::sync::Arc::new(schema))
        })
        .collect();
    // Two schemas (key, value) per tenant and table, ids 1..=n.
    let tenants = avro.tenants.len();
    assert_eq!(registered.len(), tenants * Table::ALL.len() * 2);
    assert!((1..=registered.len() as u32).all(|id| registered.contains_key(&id)));
    let lookup = |id: u32| {
        registered
            .get(&id)
            .cloned()
            .ok_or_else(|| crate::debezium::DecodeError {
                kind: crate::debezium::DecodeErrorKind::UnknownSchemaId,
                message: format!("{id}"),
            })
    };
    assert_eq!(json_messages.len(), avro_messages.len());
    for (j, a) in json_messages.iter().zip(&avro_messages) {
        assert_eq!((&j.topic, j.table), (&a.topic, a.table));
        let key = a.key.as_deref().expect("key");
        let (key_id, _) = crate::avro::confluent_header(key).expect("avro key");
        let (tenant, table) = (
            avro.tenants.iter().position(|t| *t == a.tenant).unwrap(),
            a.table,
        );
        assert_eq!(key_id, avro_schema_ids(tenant, table).0);
        let from_json =
            crate::debezium::decode(j.key.as_deref(), j.value.as_deref()).expect("json decodes");
        let from_avro =
            crate::avro::decode(Some(key), a.value.as_deref(), lookup).expect("avro decodes");
        assert_eq!(from_json, from_avro, "{}", a.topic);
    }
}

#[test]
fn avro_schemas_follow_confluents_avro_data() {
    let avro = GeneratorConfig {
        schemas: SchemaMode::Avro,
        tenants: vec!["acme".into()],
        ..small()
    };
    let generator = Generator::new(&avro).unwrap();
    let (_, value_id) = avro_schema_ids(0, Table::Orders);
    let text = generator
        .avro_schemas()
        .into_iter()
        .find(|(id, _)| *id == value_id)
        .expect("orders value schema")
        .1;
    let schema: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (&schema["name"], &schema["namespace"]),
        (&json!("Envelope"), &json!("cdc.acme.shop.orders"))
    );
    let field = |name: &str| {
        schema["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()
            .clone()
    };
    // `after` refers to the `Value` record `before` defined, relative to the namespace.
    assert_eq!(field("after")["type"], json!(["null", "Value"]));
    assert_eq!(field("after")["default"], Value::Null);
    let value_record = &field("before")["type"][1];
    assert_eq!(value_record["connect.name"], "cdc.acme.shop.orders.Value");
    let column = |name: &str| {
        value_record["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()["type"]
            .clone()
    };
    let total = column("total");
    let total = if total.is_array() {
        total[1].clone()
    } else {
        total
    };
    assert_eq!(total["logicalType"], "decimal");
    assert_eq!(
        total["connect.name"],
        "org.apache.kafka.connect.data.Decimal"
    );
    assert_eq!(total["connect.parameters"]["scale"], "2");
    // An optional field with a default puts the null branch second.
    let snapshot = field("source")["type"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "snapshot")
        .unwrap()
        .clone();
    assert_eq!(snapshot["type"][1], "null");
    assert_eq!(snapshot["default"], "false");
    assert_eq!(snapshot["type"][0]["connect.name"], "io.debezium.data.Enum");
    // A file target cannot hold Avro.
    let file = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = runtime
        .block_on(run(GenerateOptions {
            config: avro,
            target: GenerateTarget::File(file.path().join("out.jsonl")),
            expected_dir: None,
        }))
        .unwrap_err();
    assert!(
        err.to_string().contains("avro output needs a Kafka target"),
        "{err}"
    );
}

#[test]
fn mixed_mode_covers_both_flavours_with_schemas() {
    let specs = GeneratorConfig::default().tenant_specs();
    let layout: Vec<(Flavor, bool)> = specs.iter().map(|s| (s.flavor, s.schemas)).collect();
    assert_eq!(
        layout,
        [
            (Flavor::MySql, true),
            (Flavor::Postgres, true),
            (Flavor::MySql, false)
        ]
    );
}

/// Decodes a Kafka Connect value using only its embedded field schema: an implementation
/// independent of `expected.rs`, on purpose.
fn decode_with_schema(field_schema: &Value, value: &Value) -> Value {
    if value.is_null() {
        return Value::Null;
    }
    let micros_to_text = |micros: i64| {
        DateTime::<Utc>::from_timestamp_micros(micros)
            .expect("in range")
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string()
    };
    match field_schema["name"].as_str() {
        Some("io.debezium.time.Date") => {
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
            let days = value.as_i64().expect("days");
            let date = epoch + chrono::Duration::days(days);
            Value::from(date.format("%Y-%m-%d").to_string())
        }
        Some("io.debezium.time.Timestamp") => {
            Value::from(micros_to_text(value.as_i64().expect("millis") * 1000))
        }
        Some("io.debezium.time.MicroTimestamp") => {
            Value::from(micros_to_text(value.as_i64().expect("micros")))
        }
        Some("io.debezium.time.ZonedTimestamp") => {
            let parsed =
                DateTime::parse_from_rfc3339(value.as_str().expect("zoned")).expect("rfc3339");
            Value::from(micros_to_text(parsed.timestamp_micros()))
        }
        Some("org.apache.kafka.connect.data.Decimal") => {
            let scale: usize = field_schema["parameters"]["scale"]
                .as_str()
                .expect("scale")
                .parse()
                .expect("scale number");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.as_str().expect("base64"))
                .expect("valid base64");
            let mut unscaled: i128 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
            for byte in bytes {
                unscaled = (unscaled << 8) | i128::from(byte);
            }
            let negative = unscaled < 0;
            let digits = format!("{:0>width$}", unscaled.unsigned_abs(), width = scale + 1);
            let (int_part, frac) = digits.split_at(digits.len() - scale);
            let sign = if negative { "-" } else { "" };
            Value::from(format!("{sign}{int_part}.{frac}"))
        }
        _ => value.clone(),
    }
}

fn decode_row_with_schema(struct_schema: &Value, row: &Value) -> Value {
    let mut object = Map::new();
    for field in struct_schema["fields"].as_array().expect("fields") {
        let name = field["field"].as_str().expect("field name");
        object.insert(name.to_owned(), decode_with_schema(field, &row[name]));
    }
    Value::Object(object)
}

/// Replays messages into final tables: applies r/c/u/d by key, ignores tombstones and
/// drops duplicates identified by (topic, key, source position, op).
fn replay(messages: &[CdcMessage]) -> BTreeMap<(String, String), BTreeMap<String, Value>> {
    let mut tables: BTreeMap<(String, String), BTreeMap<String, Value>> = BTreeMap::new();
    let mut seen: HashSet<Identity> = HashSet::new();
    for message in messages {
        let Some(value) = &message.value else {
            continue;
        };
        let value = parse(value);
        let key = parse(message.key.as_deref().expect("key"));
        let p = &value["payload"];
        let op = p["op"].as_str().expect("op").to_owned();
        let identity = (
            message.topic.clone(),
            message.key.clone().expect("key"),
            position(&p["source"]),
            op.clone(),
        );
        if !seen.insert(identity) {
            continue;
        }
        let table = tables
            .entry((message.table.name().to_owned(), message.tenant.clone()))
            .or_default();
        let key_text = key["payload"].to_string();
        if op == "d" {
            assert!(table.remove(&key_text).is_some(), "delete of a missing key");
        } else {
            let after_schema = &value["schema"]["fields"][1];
            assert_eq!(after_schema["field"], "after");
            table.insert(key_text, decode_row_with_schema(after_schema, &p["after"]));
        }
    }
    tables
}

#[test]
fn independent_replay_reaches_the_expected_state() {
    let config = GeneratorConfig {
        schemas: SchemaMode::With,
        tenants: vec![
            "acme".into(),
            "globex".into(),
            "initech".into(),
            "umbrella".into(),
        ],
        ..small()
    };
    let (messages, generator) = generate(&config);
    let expected = generator.expected();
    let replayed = replay(&messages);
    for tenant in &config.tenants {
        for table in Table::ALL {
            let want: BTreeMap<String, Value> = expected
                .rows(table, tenant)
                .into_iter()
                .map(|row| (row.key.to_string(), row.row))
                .collect();
            let got = replayed
                .get(&(table.name().to_owned(), tenant.clone()))
                .cloned()
                .unwrap_or_default();
            assert_eq!(got, want, "{table} for {tenant}");
            assert_eq!(expected.row_count(table, tenant), want.len());
        }
    }
    // The expected rows use the documented decoded forms.
    let customers = expected.rows(Table::Customers, "globex");
    let row = &customers[0].row;
    let created = row["created_at"].as_str().expect("timestamp text");
    assert_eq!(created.len(), "2026-01-01T00:00:00.000000Z".len());
    assert!(created.ends_with('Z'));
    let orders = expected.rows(Table::Orders, "acme");
    assert!(
        orders[0].row["total"]
            .as_str()
            .expect("decimal text")
            .contains('.')
    );
}

#[test]
fn counts_match_the_messages() {
    let (messages, generator) = generate(&small());
    let counts = generator.expected().topic_counts();
    let mut seen: HashMap<String, TopicCounts> = HashMap::new();
    for message in &messages {
        let c = seen.entry(message.topic.clone()).or_default();
        c.messages += 1;
    }
    assert_eq!(counts.len(), 12);
    for (topic, expected) in &counts {
        assert_eq!(
            seen.get(topic).map_or(0, |c| c.messages),
            expected.messages,
            "{topic}"
        );
        assert_eq!(
            expected.messages,
            expected.change_events + expected.tombstones + expected.duplicates
        );
        assert_eq!(
            expected.change_events,
            expected.reads + expected.creates + expected.updates + expected.deletes
        );
        assert_eq!(expected.tombstones, expected.deletes);
    }
    let totals = generator.expected().totals();
    assert_eq!(totals.messages, messages.len() as u64);
    assert!(totals.reads > 0 && totals.creates > 0 && totals.updates > 0);
    assert!(totals.deletes > 0 && totals.duplicates > 0);
}

#[test]
fn restart_duplicates_repeat_positions_and_bytes() {
    let config = small();
    let (messages, generator) = generate(&config);
    let mut first_seen: HashMap<Identity, &CdcMessage> = HashMap::new();
    let mut duplicates = 0u64;
    let mut last_was_duplicate_delete: HashMap<String, bool> = HashMap::new();
    let mut per_tenant_duplicates: HashMap<String, u64> = HashMap::new();
    for message in &messages {
        let Some(value) = &message.value else {
            if last_was_duplicate_delete
                .get(&message.topic)
                .copied()
                .unwrap_or(false)
            {
                duplicates += 1;
            }
            last_was_duplicate_delete.insert(message.topic.clone(), false);
            continue;
        };
        let value = parse(value);
        let p = payload(&value);
        let op = p["op"].as_str().expect("op").to_owned();
        let identity = (
            message.topic.clone(),
            message.key.clone().expect("key"),
            position(&p["source"]),
            op.clone(),
        );
        let duplicate = match first_seen.get(&identity) {
            Some(original) => {
                assert_eq!(*original, message, "a restart re-emits the same bytes");
                duplicates += 1;
                *per_tenant_duplicates
                    .entry(message.tenant.clone())
                    .or_default() += 1;
                true
            }
            None => {
                first_seen.insert(identity, message);
                false
            }
        };
        last_was_duplicate_delete.insert(message.topic.clone(), duplicate && op == "d");
    }
    assert_eq!(duplicates, generator.expected().totals().duplicates);
    for tenant in &config.tenants {
        let count = per_tenant_duplicates.get(tenant).copied().unwrap_or(0);
        assert_eq!(
            count,
            u64::from(config.restart_duplicates * config.restart_replay),
            "{tenant}"
        );
    }
}

#[test]
fn positions_increase_per_tenant_and_time_spans_days() {
    let (messages, _) = generate(&small());
    let mut last: HashMap<String, (String, u64)> = HashMap::new();
    let mut seen: HashSet<Identity> = HashSet::new();
    let mut days: HashSet<i64> = HashSet::new();
    let mut files: HashSet<String> = HashSet::new();
    for message in &messages {
        let Some(value) = &message.value else {
            continue;
        };
        let value = parse(value);
        let p = payload(&value);
        let source = &p["source"];
        let pos = position(source);
        let identity = (
            message.topic.clone(),
            message.key.clone().expect("key"),
            pos.clone(),
            p["op"].to_string(),
        );
        if !seen.insert(identity) {
            continue; // restart duplicate: an old position, by design
        }
        if let Some(previous) = last.get(&message.tenant) {
            assert!(
                pos > *previous,
                "{} went from {previous:?} to {pos:?}",
                message.tenant
            );
        }
        last.insert(message.tenant.clone(), pos.clone());
        if source["connector"] == "mysql" {
            files.insert(pos.0);
        }
        let ts_ms = source["ts_ms"].as_i64().expect("ts_ms");
        assert!(
            ts_ms >= 1_767_225_600_000,
            "never before the simulated start"
        );
        days.insert(ts_ms.div_euclid(86_400_000));
    }
    assert!(
        days.len() >= 3,
        "source timestamps cover {} days",
        days.len()
    );
    assert!(files.len() >= 2, "binlog rotation is exercised");
}

#[test]
fn tombstone_follows_every_delete() {
    let (messages, _) = generate(&small());
    let mut by_topic: HashMap<&str, Vec<&CdcMessage>> = HashMap::new();
    for message in &messages {
        by_topic
            .entry(message.topic.as_str())
            .or_default()
            .push(message);
    }
    let mut deletes = 0;
    for sequence in by_topic.values() {
        for (i, message) in sequence.iter().enumerate() {
            match &message.value {
                Some(value) if payload(&parse(value))["op"] == "d" => {
                    deletes += 1;
                    let next = sequence.get(i + 1).expect("a tombstone follows");
                    assert!(next.value.is_none());
                    assert_eq!(next.key, message.key);
                }
                None => {
                    let previous = &sequence[i - 1];
                    assert_eq!(
                        payload(&parse(previous.value.as_deref().expect("delete")))["op"],
                        "d"
                    );
                }
                _ => {}
            }
        }
    }
    assert!(deletes > 0);
}

#[test]
fn snapshot_then_streaming_with_reinserts() {
    let config = small();
    let (messages, _) = generate(&config);
    for tenant in &config.tenants {
        let events: Vec<Value> = messages
            .iter()
            .filter(|m| &m.tenant == tenant)
            .filter_map(|m| m.value.as_deref().map(|v| payload(&parse(v)).clone()))
            .collect();
        let snapshot_len = events.iter().take_while(|e| e["op"] == "r").count();
        assert!(snapshot_len > 0);
        assert!(
            events[snapshot_len..].iter().all(|e| e["op"] != "r"),
            "{tenant}"
        );
        let markers: Vec<&str> = events[..snapshot_len]
            .iter()
            .map(|e| e["source"]["snapshot"].as_str().expect("marker"))
            .collect();
        assert_eq!(markers.last(), Some(&"last"));
        assert!(markers[..snapshot_len - 1].iter().all(|m| *m == "true"));
        assert!(
            events[snapshot_len..]
                .iter()
                .all(|e| e["source"]["snapshot"] == "false")
        );
    }
    // Some key is deleted and later created again (per topic and key).
    let mut deleted: HashSet<(String, Vec<u8>)> = HashSet::new();
    let mut reinserted = 0;
    for message in &messages {
        let Some(value) = &message.value else {
            continue;
        };
        let op = payload(&parse(value))["op"].clone();
        let id = (message.topic.clone(), message.key.clone().expect("key"));
        if op == "d" {
            deleted.insert(id);
        } else if op == "c" && deleted.contains(&id) {
            reinserted += 1;
        }
    }
    assert!(reinserted > 0, "re-inserts of deleted keys are generated");
}

#[test]
fn decimals_in_data_include_negative_values() {
    let (_, generator) = generate(&small());
    let negative = ["acme", "globex", "initech"].iter().any(|tenant| {
        generator
            .expected()
            .rows(Table::OrderItems, tenant)
            .iter()
            .any(|r| {
                r.row["unit_price"]
                    .as_str()
                    .is_some_and(|p| p.starts_with('-'))
            })
    });
    assert!(negative);
}

#[test]
fn generation_is_lazy_and_streams_quickly() {
    // Around ten million messages if drained; taking a few must not build them all.
    let huge = GeneratorConfig::default().scaled(3_000.0);
    assert!(huge.estimated_messages() > 5_000_000);
    let started = Instant::now();
    let first: Vec<CdcMessage> = Generator::new(&huge).expect("valid").take(1_000).collect();
    assert_eq!(first.len(), 1_000);
    assert!(started.elapsed().as_secs() < 5);

    // A full run of a few hundred thousand messages in a debug build, bounded in time.
    let medium = GeneratorConfig::default().scaled(40.0);
    let started = Instant::now();
    let mut generator = Generator::new(&medium).expect("valid");
    let mut count = 0u64;
    let mut bytes = 0usize;
    let mut max_buffered = 0;
    while let Some(message) = generator.next() {
        count += 1;
        bytes += message.value.as_ref().map_or(0, Vec::len);
        max_buffered = max_buffered.max(generator.buffered_messages());
    }
    // At most one transaction plus one restart window (with tombstones) per tenant.
    let per_tenant = 2 * (medium.restart_replay as usize + 2 * 5);
    assert!(
        max_buffered <= medium.tenants.len() * per_tenant,
        "{max_buffered}"
    );
    assert_eq!(count, generator.expected().totals().messages);
    assert!(count > 100_000, "{count}");
    assert!(bytes > 0);
    eprintln!(
        "{count} messages, {bytes} value bytes in {:?}",
        started.elapsed()
    );
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
}

#[test]
fn config_parsing_is_strict_and_kebab_case() {
    let config: GeneratorConfig = serde_json::from_value(json!({
        "seed": 9,
        "restart-duplicates": 3,
        "schemas": "without",
        "topic-prefix": "dbz"
    }))
    .expect("valid config");
    assert_eq!(config.seed, 9);
    assert_eq!(config.restart_duplicates, 3);
    assert_eq!(config.schemas, SchemaMode::Without);
    assert_eq!(config.tenants.len(), 3);
    assert_eq!(config.topics()[0], "dbz.acme.shop.customers");
    let unknown = serde_json::from_value::<GeneratorConfig>(json!({"sed": 1}));
    assert!(unknown.is_err());
}

#[test]
fn invalid_configs_are_rejected() {
    let bad = [
        GeneratorConfig {
            tenants: vec![],
            ..GeneratorConfig::default()
        },
        GeneratorConfig {
            tenants: vec!["a-b".into()],
            ..GeneratorConfig::default()
        },
        GeneratorConfig {
            tenants: vec!["a".into(), "a".into()],
            ..GeneratorConfig::default()
        },
        GeneratorConfig {
            update_ratio: 0.9,
            delete_ratio: 0.1,
            ..GeneratorConfig::default()
        },
        GeneratorConfig {
            start_time: "yesterday".into(),
            ..GeneratorConfig::default()
        },
        GeneratorConfig {
            restart_replay: 0,
            ..GeneratorConfig::default()
        },
    ];
    for config in bad {
        let err = Generator::new(&config).expect_err("rejected");
        assert!(matches!(err, GeneratorError::Config(_)), "{err}");
        assert!(err.to_string().starts_with("invalid generator config: "));
    }
}

#[test]
fn default_demo_is_a_few_thousand_events() {
    let (messages, _) = generate(&GeneratorConfig::default());
    assert!(
        (1_000..10_000).contains(&messages.len()),
        "{}",
        messages.len()
    );
}
