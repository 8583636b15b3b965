//! Debezium change-event encoding: Kafka keys and values exactly as Debezium 2.7's MySQL and
//! PostgreSQL connectors produce them through Kafka Connect's `JsonConverter`. Pure: it turns
//! rows and source metadata into bytes and does no I/O.
//!
//! Fidelity notes (what a consumer of these bytes must cope with, on purpose):
//! - Field order follows Debezium 2.7 (`before, after, source, transaction, op, ts_ms, ts_us,
//!   ts_ns`; envelope schema `version` 2). JSON is written by hand rather than through
//!   `serde_json::Value`, whose map sorts keys unless the `preserve_order` feature is on.
//! - Schema names use the connector's logical name (`topic.prefix`), which here is
//!   `<prefix>.<tenant>`: `cdc.acme.shop.orders.Envelope` for MySQL and
//!   `cdc.globex.public.orders.Envelope` for Postgres. Postgres topics are
//!   `<prefix>.<tenant>.public.<table>` natively; we model a `RegexRouter` SMT that reroutes
//!   them to `<prefix>.<tenant>.<db>.<table>`, so topic and schema name disagree for Postgres,
//!   as they do in real deployments that reroute. Never derive the table from a schema name.
//! - MySQL `source.ts_ms` has second precision (the binlog event header); Postgres has
//!   millisecond precision with the full value in `ts_us`.
//! - Postgres tables are assumed `REPLICA IDENTITY FULL`, so updates and deletes carry a
//!   complete `before` image, as MySQL with `binlog_row_image=FULL` does.
//! - `ZonedTimestamp` strings: MySQL `TIMESTAMP(3)` is padded to 3 fraction digits, Postgres
//!   `timestamptz` uses Java's ISO formatter (fraction trimmed, none when whole seconds).

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Timelike, Utc};

use super::GeneratorError;
use super::avro::AvroEncoder;
use super::model::{Cell, Column, ColumnType, Flavor, PrimaryKey, Table};

/// The Debezium release whose output this module reproduces (`source.version`).
pub const DEBEZIUM_VERSION: &str = "2.7.0.Final";
/// `source.server_id` of every simulated MySQL server.
pub const MYSQL_SERVER_ID: u64 = 223_344;
const SNAPSHOT_ALLOWED: &str =
    "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental";

/// Debezium operation codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Read,
    Create,
    Update,
    Delete,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
        }
    }
}

/// Value of `source.snapshot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotMarker {
    False,
    True,
    Last,
}

impl SnapshotMarker {
    fn as_str(self) -> &'static str {
        match self {
            SnapshotMarker::False => "false",
            SnapshotMarker::True => "true",
            SnapshotMarker::Last => "last",
        }
    }
}

/// Where in the source log a change was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourcePosition {
    MySql {
        /// Numeric suffix of `mysql-bin.NNNNNN`.
        file_index: u32,
        pos: u64,
        /// Connection thread id; Debezium leaves it null for snapshot reads.
        thread: Option<u64>,
    },
    Postgres {
        lsn: u64,
        /// LSN of the last commit before this event; Debezium renders `null` in snapshots.
        prev_commit_lsn: Option<u64>,
        tx_id: u64,
    },
}

/// Everything needed to encode one change event's value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChangeEvent<'a> {
    pub(crate) op: Op,
    pub(crate) before: Option<&'a [Cell]>,
    pub(crate) after: Option<&'a [Cell]>,
    /// Commit time in the source database, epoch micros (simulated clock).
    pub(crate) source_ts_us: i64,
    pub(crate) snapshot: SnapshotMarker,
    pub(crate) position: SourcePosition,
    /// When the connector processed the event, epoch micros (envelope `ts_*`).
    pub(crate) processed_ts_us: i64,
}

/// Precomputed encoding state for one (tenant, table): schemas are rendered once, because
/// with embedded schemas they are most of every message's bytes.
#[derive(Debug, Clone)]
pub(crate) struct TableCodec {
    table: Table,
    flavor: Flavor,
    with_schemas: bool,
    key_schema: String,
    value_schema: String,
    /// `{"version":..,"connector":..,"name":..,"ts_ms":` — the constant head of `source`.
    source_head: String,
    /// `"db":"shop",` rendered once (escaped).
    db_field: String,
    /// `"table":"orders",` (MySQL) or `"schema":"public","table":"orders",` (Postgres).
    table_fields: String,
    /// Avro mode: key and value encoders (the JSON rendering, then the `AvroConverter`).
    avro: Option<[AvroEncoder; 2]>,
}

impl TableCodec {
    /// `server_name` is the connector's logical name (`topic.prefix`), e.g. `cdc.acme`.
    pub(crate) fn new(
        table: Table,
        flavor: Flavor,
        server_name: &str,
        database: &str,
        with_schemas: bool,
    ) -> Self {
        let namespace = match flavor {
            Flavor::MySql => format!("{server_name}.{database}.{}", table.name()),
            Flavor::Postgres => format!("{server_name}.public.{}", table.name()),
        };
        let mut key_schema = String::new();
        key_schema_node(table, flavor, &namespace).write(&mut key_schema);
        let mut value_schema = String::new();
        envelope_schema_node(table, flavor, &namespace).write(&mut value_schema);

        let mut source_head = String::from("{\"version\":");
        push_str(&mut source_head, DEBEZIUM_VERSION);
        source_head.push_str(",\"connector\":");
        push_str(&mut source_head, flavor.connector());
        source_head.push_str(",\"name\":");
        push_str(&mut source_head, server_name);
        source_head.push_str(",\"ts_ms\":");

        let mut db_field = String::from("\"db\":");
        push_str(&mut db_field, database);
        db_field.push(',');

        let mut table_fields = String::new();
        if flavor == Flavor::Postgres {
            table_fields.push_str("\"schema\":\"public\",");
        }
        table_fields.push_str("\"table\":");
        push_str(&mut table_fields, table.name());
        table_fields.push(',');

        Self {
            table,
            flavor,
            with_schemas,
            key_schema,
            value_schema,
            source_head,
            db_field,
            table_fields,
            avro: None,
        }
    }

    /// Switches to Avro output (Confluent's `AvroConverter` instead of the `JsonConverter`),
    /// keys and values under the given Schema Registry ids.
    pub(crate) fn with_avro(mut self, key_id: u32, value_id: u32) -> Result<Self, GeneratorError> {
        let parse = |text: &str| {
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|err| GeneratorError::Config(format!("generated connect schema: {err}")))
        };
        self.avro = Some([
            AvroEncoder::new(key_id, &parse(&self.key_schema)?)?,
            AvroEncoder::new(value_id, &parse(&self.value_schema)?)?,
        ]);
        self.with_schemas = false;
        Ok(self)
    }

    /// Avro mode: the (id, schema text) pairs of the key and value schemas.
    pub(crate) fn avro_schemas(&self) -> impl Iterator<Item = (u32, &str)> {
        self.avro
            .iter()
            .flatten()
            .map(|encoder| (encoder.id(), encoder.schema_text()))
    }

    /// The JSON rendering as is, or converted to Avro (`index` 0 for keys, 1 for values).
    fn finish(&self, json: String, index: usize) -> Vec<u8> {
        let Some(encoders) = &self.avro else {
            return json.into_bytes();
        };
        // The JSON was rendered from the same schema the encoder was built from, so a
        // failure here is a bug in this module, not bad input.
        let payload: serde_json::Value =
            serde_json::from_str(&json).expect("the generator renders valid JSON");
        encoders[index]
            .encode(&payload)
            .expect("generated rows fit their generated avro schema")
    }

    /// The Kafka message key.
    pub(crate) fn key(&self, key: PrimaryKey) -> Vec<u8> {
        let mut out = String::with_capacity(self.key_schema.len() + 64);
        if self.with_schemas {
            out.push_str("{\"schema\":");
            out.push_str(&self.key_schema);
            out.push_str(",\"payload\":");
        }
        let names = self.table.key_columns();
        out.push_str("{\"");
        out.push_str(names[0]);
        out.push_str("\":");
        push_int(&mut out, key.id);
        if let (Some(line_no), Some(name)) = (key.line_no, names.get(1)) {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":");
            push_int(&mut out, i64::from(line_no));
        }
        out.push('}');
        if self.with_schemas {
            out.push('}');
        }
        self.finish(out, 0)
    }

    /// The Kafka message value of a change event (never a tombstone; those have no value).
    pub(crate) fn value(&self, event: &ChangeEvent<'_>) -> Vec<u8> {
        let mut out = String::with_capacity(self.value_schema.len() + 1024);
        if self.with_schemas {
            out.push_str("{\"schema\":");
            out.push_str(&self.value_schema);
            out.push_str(",\"payload\":");
        }
        let columns = self.table.columns();
        out.push_str("{\"before\":");
        self.write_row(&mut out, columns, event.before);
        out.push_str(",\"after\":");
        self.write_row(&mut out, columns, event.after);
        out.push_str(",\"source\":");
        self.write_source(&mut out, event);
        out.push_str(",\"transaction\":null,\"op\":\"");
        out.push_str(event.op.code());
        out.push_str("\",");
        write_ts_triplet(&mut out, event.processed_ts_us);
        out.push('}');
        if self.with_schemas {
            out.push('}');
        }
        self.finish(out, 1)
    }

    fn write_row(&self, out: &mut String, columns: &[Column], row: Option<&[Cell]>) {
        let Some(row) = row else {
            out.push_str("null");
            return;
        };
        out.push('{');
        for (i, (column, cell)) in columns.iter().zip(row.iter()).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(column.name);
            out.push_str("\":");
            self.write_cell(out, column.ty, cell);
        }
        out.push('}');
    }

    fn write_cell(&self, out: &mut String, ty: ColumnType, cell: &Cell) {
        match cell {
            Cell::Null => out.push_str("null"),
            Cell::Int(v) => push_int(out, *v),
            Cell::Text(v) => push_str(out, v),
            Cell::Label(v) => push_str(out, v),
            Cell::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
            Cell::Date(days) => push_int(out, i64::from(*days)),
            Cell::Micros(us) => match (ty, self.flavor) {
                (ColumnType::ZonedTimestamp, flavor) => {
                    push_str(out, &zoned_timestamp(*us, flavor))
                }
                // io.debezium.time.Timestamp: epoch millis of a DATETIME(3).
                (_, Flavor::MySql) => push_int(out, us.div_euclid(1000)),
                // io.debezium.time.MicroTimestamp: epoch micros.
                (_, Flavor::Postgres) => push_int(out, *us),
            },
            Cell::Decimal(unscaled) => {
                out.push('"');
                BASE64.encode_string(decimal_bytes(i128::from(*unscaled)), out);
                out.push('"');
            }
        }
    }

    fn write_source(&self, out: &mut String, event: &ChangeEvent<'_>) {
        // MySQL binlog event headers carry whole seconds; Postgres commit times are micros.
        let source_us = match self.flavor {
            Flavor::MySql => event.source_ts_us - event.source_ts_us.rem_euclid(1_000_000),
            Flavor::Postgres => event.source_ts_us,
        };
        out.push_str(&self.source_head);
        push_int(out, source_us.div_euclid(1000));
        out.push_str(",\"snapshot\":");
        push_str(out, event.snapshot.as_str());
        out.push(',');
        out.push_str(&self.db_field);
        out.push_str("\"sequence\":");
        match event.position {
            SourcePosition::MySql { .. } => out.push_str("null"),
            SourcePosition::Postgres {
                lsn,
                prev_commit_lsn,
                ..
            } => {
                let sequence = match prev_commit_lsn {
                    Some(prev) => format!("[\"{prev}\",\"{lsn}\"]"),
                    None => format!("[null,\"{lsn}\"]"),
                };
                push_str(out, &sequence);
            }
        }
        out.push_str(",\"ts_us\":");
        push_int(out, source_us);
        out.push_str(",\"ts_ns\":");
        push_int(out, source_us.saturating_mul(1000));
        out.push(',');
        out.push_str(&self.table_fields);
        match event.position {
            SourcePosition::MySql {
                file_index,
                pos,
                thread,
            } => {
                out.push_str("\"server_id\":");
                push_uint(out, MYSQL_SERVER_ID);
                out.push_str(",\"gtid\":null,\"file\":");
                push_str(out, &binlog_file_name(file_index));
                out.push_str(",\"pos\":");
                push_uint(out, pos);
                out.push_str(",\"row\":0,\"thread\":");
                match thread {
                    Some(thread) => push_uint(out, thread),
                    None => out.push_str("null"),
                }
                out.push_str(",\"query\":null}");
            }
            SourcePosition::Postgres { lsn, tx_id, .. } => {
                out.push_str("\"txId\":");
                push_uint(out, tx_id);
                out.push_str(",\"lsn\":");
                push_uint(out, lsn);
                out.push_str(",\"xmin\":null}");
            }
        }
    }
}

/// `mysql-bin.000003` for index 3.
pub fn binlog_file_name(index: u32) -> String {
    format!("mysql-bin.{index:06}")
}

fn write_ts_triplet(out: &mut String, micros: i64) {
    out.push_str("\"ts_ms\":");
    push_int(out, micros.div_euclid(1000));
    out.push_str(",\"ts_us\":");
    push_int(out, micros);
    out.push_str(",\"ts_ns\":");
    push_int(out, micros.saturating_mul(1000));
}

/// The `io.debezium.time.ZonedTimestamp` string for an instant, as the given connector
/// renders it (see the module notes).
pub(crate) fn zoned_timestamp(micros: i64, flavor: Flavor) -> String {
    let Some(instant) = DateTime::<Utc>::from_timestamp_micros(micros) else {
        // Unreachable for generated data (the simulated clock stays in this century); a
        // number keeps the output well-formed JSON rather than aborting the stream.
        return micros.to_string();
    };
    let base = instant.format("%Y-%m-%dT%H:%M:%S");
    let nanos = instant.nanosecond();
    match flavor {
        Flavor::MySql => format!("{base}.{:03}Z", nanos / 1_000_000),
        Flavor::Postgres if nanos == 0 => format!("{base}Z"),
        Flavor::Postgres => {
            let digits = format!("{nanos:09}");
            format!("{base}.{}Z", digits.trim_end_matches('0'))
        }
    }
}

/// Big-endian two's-complement bytes of `unscaled`, minimal length, as Java's
/// `BigInteger.toByteArray()` (what Kafka Connect's `Decimal` logical type carries).
pub fn decimal_bytes(unscaled: i128) -> Vec<u8> {
    let bytes = unscaled.to_be_bytes();
    let mut start = 0;
    // A leading 0x00 (0xff) is redundant when the next byte already has the sign bit clear
    // (set); at least one byte always remains, so zero encodes as [0x00] like Java.
    while start + 1 < bytes.len() {
        let (lead, next) = (bytes[start], bytes[start + 1]);
        let redundant = (lead == 0x00 && next & 0x80 == 0) || (lead == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    bytes[start..].to_vec()
}

/// The base64 text of a `Decimal` value in a JSON payload.
pub fn decimal_base64(unscaled: i128) -> String {
    BASE64.encode(decimal_bytes(unscaled))
}

/// Inverse of [`decimal_base64`]; `None` for bad base64, empty input or more than 16 bytes.
pub fn decode_decimal_base64(text: &str) -> Option<i128> {
    let bytes = BASE64.decode(text).ok()?;
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0x00 };
    let mut buf = [fill; 16];
    buf[16 - bytes.len()..].copy_from_slice(&bytes);
    Some(i128::from_be_bytes(buf))
}

/// Plain decimal text of `unscaled * 10^-scale`: `1250, 2` is `"12.50"`, `-5, 2` is `"-0.05"`.
pub fn format_decimal(unscaled: i128, scale: u32) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    let scale = scale as usize;
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int_part, frac_part) = padded.split_at(padded.len() - scale);
    format!("{sign}{int_part}.{frac_part}")
}

fn push_int(out: &mut String, value: i64) {
    // Writing into a String cannot fail.
    let _ = write!(out, "{value}");
}

fn push_uint(out: &mut String, value: u64) {
    let _ = write!(out, "{value}");
}

/// Appends `value` as a JSON string literal, escaping like serde_json and Jackson do.
pub(crate) fn push_str(out: &mut String, value: &str) {
    out.push('"');
    for ch in value.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A Kafka Connect schema as `JsonConverter` renders it. Key order matters for fidelity:
/// type, fields, optional, name, version, parameters, default, then the parent's `field`.
#[derive(Debug, Clone)]
struct SchemaNode {
    ty: &'static str,
    fields: Vec<SchemaNode>,
    optional: bool,
    name: Option<String>,
    version: Option<u32>,
    parameters: Vec<(&'static str, String)>,
    default: Option<&'static str>,
    field: Option<String>,
}

impl SchemaNode {
    fn primitive(ty: &'static str, optional: bool, field: &str) -> Self {
        Self {
            ty,
            fields: Vec::new(),
            optional,
            name: None,
            version: None,
            parameters: Vec::new(),
            default: None,
            field: Some(field.to_owned()),
        }
    }

    fn logical(ty: &'static str, name: &str, optional: bool, field: &str) -> Self {
        Self {
            name: Some(name.to_owned()),
            version: Some(1),
            ..Self::primitive(ty, optional, field)
        }
    }

    fn structure(fields: Vec<SchemaNode>, optional: bool, name: &str) -> Self {
        Self {
            ty: "struct",
            fields,
            optional,
            name: Some(name.to_owned()),
            version: None,
            parameters: Vec::new(),
            default: None,
            field: None,
        }
    }

    fn with_field(mut self, field: &str) -> Self {
        self.field = Some(field.to_owned());
        self
    }

    fn write(&self, out: &mut String) {
        out.push_str("{\"type\":");
        push_str(out, self.ty);
        if self.ty == "struct" {
            out.push_str(",\"fields\":[");
            for (i, field) in self.fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                field.write(out);
            }
            out.push(']');
        }
        out.push_str(",\"optional\":");
        out.push_str(if self.optional { "true" } else { "false" });
        if let Some(name) = &self.name {
            out.push_str(",\"name\":");
            push_str(out, name);
        }
        if let Some(version) = self.version {
            out.push_str(",\"version\":");
            push_uint(out, u64::from(version));
        }
        if !self.parameters.is_empty() {
            out.push_str(",\"parameters\":{");
            for (i, (key, value)) in self.parameters.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_str(out, key);
                out.push(':');
                push_str(out, value);
            }
            out.push('}');
        }
        if let Some(default) = self.default {
            out.push_str(",\"default\":");
            push_str(out, default);
        }
        if let Some(field) = &self.field {
            out.push_str(",\"field\":");
            push_str(out, field);
        }
        out.push('}');
    }
}

fn column_schema(column: &Column, flavor: Flavor) -> SchemaNode {
    let (optional, field) = (column.nullable, column.name);
    match column.ty {
        ColumnType::Int64 => SchemaNode::primitive("int64", optional, field),
        ColumnType::Int32 => SchemaNode::primitive("int32", optional, field),
        ColumnType::Text => SchemaNode::primitive("string", optional, field),
        ColumnType::Bool => SchemaNode::primitive("boolean", optional, field),
        ColumnType::Date => SchemaNode::logical("int32", "io.debezium.time.Date", optional, field),
        ColumnType::Timestamp => {
            let name = match flavor {
                Flavor::MySql => "io.debezium.time.Timestamp",
                Flavor::Postgres => "io.debezium.time.MicroTimestamp",
            };
            SchemaNode::logical("int64", name, optional, field)
        }
        ColumnType::ZonedTimestamp => {
            SchemaNode::logical("string", "io.debezium.time.ZonedTimestamp", optional, field)
        }
        ColumnType::Decimal { precision, scale } => SchemaNode {
            parameters: vec![
                ("scale", scale.to_string()),
                ("connect.decimal.precision", precision.to_string()),
            ],
            ..SchemaNode::logical(
                "bytes",
                "org.apache.kafka.connect.data.Decimal",
                optional,
                field,
            )
        },
        ColumnType::Enum(labels) => SchemaNode {
            parameters: vec![("allowed", labels.join(","))],
            ..SchemaNode::logical("string", "io.debezium.data.Enum", optional, field)
        },
    }
}

fn key_schema_node(table: Table, flavor: Flavor, namespace: &str) -> SchemaNode {
    let key_count = table.key_columns().len();
    let fields = table.columns()[..key_count]
        .iter()
        .map(|column| column_schema(column, flavor))
        .collect();
    SchemaNode::structure(fields, false, &format!("{namespace}.Key"))
}

fn source_schema_node(flavor: Flavor) -> SchemaNode {
    let p = SchemaNode::primitive;
    let snapshot = SchemaNode {
        parameters: vec![("allowed", SNAPSHOT_ALLOWED.to_owned())],
        default: Some("false"),
        ..SchemaNode::logical("string", "io.debezium.data.Enum", true, "snapshot")
    };
    let mut fields = vec![
        p("string", false, "version"),
        p("string", false, "connector"),
        p("string", false, "name"),
        p("int64", false, "ts_ms"),
        snapshot,
        p("string", false, "db"),
        p("string", true, "sequence"),
        p("int64", true, "ts_us"),
        p("int64", true, "ts_ns"),
    ];
    let name = match flavor {
        Flavor::MySql => {
            fields.extend([
                p("string", true, "table"),
                p("int64", false, "server_id"),
                p("string", true, "gtid"),
                p("string", false, "file"),
                p("int64", false, "pos"),
                p("int32", false, "row"),
                p("int64", true, "thread"),
                p("string", true, "query"),
            ]);
            "io.debezium.connector.mysql.Source"
        }
        Flavor::Postgres => {
            fields.extend([
                p("string", false, "schema"),
                p("string", false, "table"),
                p("int64", true, "txId"),
                p("int64", true, "lsn"),
                p("int64", true, "xmin"),
            ]);
            "io.debezium.connector.postgresql.Source"
        }
    };
    SchemaNode::structure(fields, false, name).with_field("source")
}

fn transaction_schema_node() -> SchemaNode {
    let fields = vec![
        SchemaNode::primitive("string", false, "id"),
        SchemaNode::primitive("int64", false, "total_order"),
        SchemaNode::primitive("int64", false, "data_collection_order"),
    ];
    SchemaNode {
        version: Some(1),
        ..SchemaNode::structure(fields, true, "event.block")
    }
    .with_field("transaction")
}

fn envelope_schema_node(table: Table, flavor: Flavor, namespace: &str) -> SchemaNode {
    let row_fields: Vec<SchemaNode> = table
        .columns()
        .iter()
        .map(|column| column_schema(column, flavor))
        .collect();
    let value_name = format!("{namespace}.Value");
    let fields = vec![
        SchemaNode::structure(row_fields.clone(), true, &value_name).with_field("before"),
        SchemaNode::structure(row_fields, true, &value_name).with_field("after"),
        source_schema_node(flavor),
        transaction_schema_node(),
        SchemaNode::primitive("string", false, "op"),
        SchemaNode::primitive("int64", true, "ts_ms"),
        SchemaNode::primitive("int64", true, "ts_us"),
        SchemaNode::primitive("int64", true, "ts_ns"),
    ];
    SchemaNode {
        version: Some(2),
        ..SchemaNode::structure(fields, false, &format!("{namespace}.Envelope"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    fn sample_order() -> Vec<Cell> {
        vec![
            Cell::Int(7),
            Cell::Int(3),
            Cell::Label("paid"),
            Cell::Decimal(-1250),
            Cell::Micros(1_767_225_600_123_456),
        ]
    }

    fn event<'a>(
        before: Option<&'a [Cell]>,
        after: Option<&'a [Cell]>,
        flavor: Flavor,
    ) -> ChangeEvent<'a> {
        let position = match flavor {
            Flavor::MySql => SourcePosition::MySql {
                file_index: 3,
                pos: 1234,
                thread: Some(14),
            },
            Flavor::Postgres => SourcePosition::Postgres {
                lsn: 5000,
                prev_commit_lsn: Some(4000),
                tx_id: 771,
            },
        };
        ChangeEvent {
            op: Op::Update,
            before,
            after,
            source_ts_us: 1_767_225_601_987_654,
            snapshot: SnapshotMarker::False,
            position,
            processed_ts_us: 1_767_225_602_000_001,
        }
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("valid json")
    }

    #[test]
    fn decimal_bytes_match_java_big_integer() {
        assert_eq!(decimal_bytes(0), vec![0x00]);
        assert_eq!(decimal_bytes(127), vec![0x7f]);
        assert_eq!(decimal_bytes(128), vec![0x00, 0x80]);
        assert_eq!(decimal_bytes(-1), vec![0xff]);
        assert_eq!(decimal_bytes(-128), vec![0x80]);
        assert_eq!(decimal_bytes(-129), vec![0xff, 0x7f]);
        assert_eq!(decimal_bytes(1250), vec![0x04, 0xe2]);
        // 12.50 as Kafka Connect Decimal(scale 2) is the well-known "BOI=".
        assert_eq!(decimal_base64(1250), "BOI=");
    }

    #[test]
    fn format_decimal_places_the_point() {
        assert_eq!(format_decimal(1250, 2), "12.50");
        assert_eq!(format_decimal(-5, 2), "-0.05");
        assert_eq!(format_decimal(0, 2), "0.00");
        assert_eq!(format_decimal(9_999_999_999, 2), "99999999.99");
        assert_eq!(format_decimal(-42, 0), "-42");
    }

    proptest! {
        #[test]
        fn decimal_round_trips(unscaled in any::<i64>(), scale in 0u32..6) {
            let text = decimal_base64(i128::from(unscaled));
            let decoded = decode_decimal_base64(&text);
            prop_assert_eq!(decoded, Some(i128::from(unscaled)));
            prop_assert_eq!(
                format_decimal(decoded.unwrap_or_default(), scale),
                format_decimal(i128::from(unscaled), scale)
            );
        }

        #[test]
        fn decimal_round_trips_full_i128(unscaled in any::<i128>()) {
            prop_assert_eq!(decode_decimal_base64(&decimal_base64(unscaled)), Some(unscaled));
        }

        #[test]
        fn json_strings_round_trip(text in any::<String>()) {
            let mut out = String::new();
            push_str(&mut out, &text);
            let parsed: String = serde_json::from_str(&out).expect("valid json string");
            prop_assert_eq!(parsed, text);
        }
    }

    #[test]
    fn zoned_timestamps_follow_connector_formatting() {
        let us = 1_767_225_600_120_000; // 2026-01-01T00:00:00.12Z
        assert_eq!(
            zoned_timestamp(us, Flavor::MySql),
            "2026-01-01T00:00:00.120Z"
        );
        assert_eq!(
            zoned_timestamp(us, Flavor::Postgres),
            "2026-01-01T00:00:00.12Z"
        );
        assert_eq!(
            zoned_timestamp(1_767_225_600_000_000, Flavor::Postgres),
            "2026-01-01T00:00:00Z"
        );
    }

    #[test]
    fn mysql_value_with_schema_has_debezium_shape() {
        let codec = TableCodec::new(Table::Orders, Flavor::MySql, "cdc.acme", "shop", true);
        let before = sample_order();
        let mut after = sample_order();
        after[2] = Cell::Label("shipped");
        let value = parse(&codec.value(&event(Some(&before), Some(&after), Flavor::MySql)));
        let schema = &value["schema"];
        assert_eq!(schema["name"], "cdc.acme.shop.orders.Envelope");
        assert_eq!(schema["version"], 2);
        let names: Vec<&str> = schema["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| f["field"].as_str().expect("field name"))
            .collect();
        assert_eq!(
            names,
            [
                "before",
                "after",
                "source",
                "transaction",
                "op",
                "ts_ms",
                "ts_us",
                "ts_ns"
            ]
        );
        let after_fields = &schema["fields"][1]["fields"];
        assert_eq!(
            after_fields[3],
            json!({"type":"bytes","optional":false,"name":"org.apache.kafka.connect.data.Decimal",
                   "version":1,"parameters":{"scale":"2","connect.decimal.precision":"12"},
                   "field":"total"})
        );
        assert_eq!(after_fields[4]["name"], "io.debezium.time.Timestamp");
        assert_eq!(
            after_fields[2]["parameters"]["allowed"],
            "pending,paid,shipped,cancelled"
        );

        let payload = &value["payload"];
        assert_eq!(payload["op"], "u");
        assert_eq!(payload["before"]["status"], "paid");
        assert_eq!(payload["after"]["status"], "shipped");
        assert_eq!(payload["after"]["total"], decimal_base64(-1250));
        assert_eq!(payload["after"]["ordered_at"], 1_767_225_600_123_i64);
        assert_eq!(payload["transaction"], Value::Null);
        assert_eq!(payload["ts_ms"], 1_767_225_602_000_i64);
        let source = &payload["source"];
        assert_eq!(
            *source,
            json!({"version":"2.7.0.Final","connector":"mysql","name":"cdc.acme",
                   "ts_ms":1_767_225_601_000_i64,"snapshot":"false","db":"shop","sequence":null,
                   "ts_us":1_767_225_601_000_000_i64,"ts_ns":1_767_225_601_000_000_000_i64,
                   "table":"orders","server_id":223344,"gtid":null,"file":"mysql-bin.000003",
                   "pos":1234,"row":0,"thread":14,"query":null})
        );
        // Raw text keeps Debezium's field order, which a sorted JSON map would lose.
        let text = String::from_utf8(codec.value(&event(None, Some(&after), Flavor::MySql)))
            .expect("utf8");
        let payload_at = text.find("\"payload\":{\"before\":null,\"after\":{\"id\":7,");
        assert!(payload_at.is_some(), "{text}");
    }

    #[test]
    fn postgres_value_and_key_shape() {
        let codec = TableCodec::new(
            Table::OrderItems,
            Flavor::Postgres,
            "cdc.globex",
            "shop",
            true,
        );
        let row = vec![
            Cell::Int(9),
            Cell::Int(2),
            Cell::Int(5),
            Cell::Int(3),
            Cell::Decimal(999),
        ];
        let value = parse(&codec.value(&event(Some(&row), None, Flavor::Postgres)));
        assert_eq!(
            value["schema"]["name"],
            "cdc.globex.public.order_items.Envelope"
        );
        let source = &value["payload"]["source"];
        assert_eq!(source["connector"], "postgresql");
        assert_eq!(source["sequence"], "[\"4000\",\"5000\"]");
        assert_eq!(source["lsn"], 5000);
        assert_eq!(source["txId"], 771);
        assert_eq!(source["schema"], "public");
        assert_eq!(source["ts_us"], 1_767_225_601_987_654_i64);
        assert_eq!(source["ts_ms"], 1_767_225_601_987_i64);
        assert_eq!(value["payload"]["after"], Value::Null);

        let key = parse(&codec.key(PrimaryKey::item(9, 2)));
        assert_eq!(key["payload"], json!({"order_id": 9, "line_no": 2}));
        assert_eq!(key["schema"]["name"], "cdc.globex.public.order_items.Key");
        assert_eq!(
            key["schema"]["fields"][1],
            json!({"type":"int32","optional":false,"field":"line_no"})
        );

        let bare = TableCodec::new(
            Table::OrderItems,
            Flavor::Postgres,
            "cdc.globex",
            "shop",
            false,
        );
        assert_eq!(
            parse(&bare.key(PrimaryKey::item(9, 2))),
            json!({"order_id": 9, "line_no": 2})
        );
        let bare_value = parse(&bare.value(&event(Some(&row), None, Flavor::Postgres)));
        assert_eq!(bare_value, value["payload"]);
    }

    #[test]
    fn customers_cover_date_zoned_and_micro_timestamp() {
        let codec = TableCodec::new(Table::Customers, Flavor::Postgres, "cdc.g", "shop", true);
        let row = vec![
            Cell::Int(1),
            Cell::Text("a\"b@example.com".into()),
            Cell::Text("Zoë O'Brien".into()),
            Cell::Null,
            Cell::Date(-1),
            Cell::Micros(1_000_001),
            Cell::Micros(1_767_225_600_500_000),
        ];
        let value = parse(&codec.value(&event(None, Some(&row), Flavor::Postgres)));
        let fields = &value["schema"]["fields"][1]["fields"];
        assert_eq!(fields[4]["name"], "io.debezium.time.Date");
        assert_eq!(fields[4]["optional"], true);
        assert_eq!(fields[5]["name"], "io.debezium.time.MicroTimestamp");
        assert_eq!(fields[6]["name"], "io.debezium.time.ZonedTimestamp");
        let after = &value["payload"]["after"];
        assert_eq!(after["email"], "a\"b@example.com");
        assert_eq!(after["full_name"], "Zoë O'Brien");
        assert_eq!(after["country"], Value::Null);
        assert_eq!(after["birth_date"], -1);
        assert_eq!(after["created_at"], 1_000_001);
        assert_eq!(after["updated_at"], "2026-01-01T00:00:00.5Z");
    }
}
