//! The fast path of JSON decoding: reads the envelope into borrowed fields (no
//! `serde_json::Value` tree for the envelope, the `source` block or the embedded schema) and
//! walks a schemaless row straight into cells. Pure: bytes in, values out; no I/O.
//!
//! It handles the common shapes only (ops `c`, `u`, `r`, `d` with an object row, a non-Mongo
//! source, a valid key) and gives up on anything else by returning `None`; the caller then
//! decodes the same bytes with the `Value`-based path, which owns every error message and
//! rare case. So the fast path never decides an outcome the DOM path would decide
//! differently: a property test in the parent module checks that they agree.
//!
//! Embedded schemas (about 3.5 kB a message with `schemas.enable=true`) repeat per table
//! version, so each distinct schema is parsed once and kept, keyed by its bytes, in a small
//! per-thread cache that is emptied when it holds [`SCHEMA_CACHE_ENTRIES`]. A cached schema
//! keeps its rows' plan ([`RowPlan`]: interned names, decided readings). The schemas seen
//! last are also matched against the message bytes directly: a value that starts with
//! `{"schema":` followed by the exact text of one of them and `,"payload":` skips the
//! schema without scanning or hashing it (a JSON converter writes its values that way).

use std::borrow::Cow;
use std::cell::RefCell;

// hashbrown with foldhash: the schema cache's keys are kilobytes of text, hashed per message.
use datafusion::common::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Cell, CellValue, ColumnType, Key, Op, RowPlan, infer, intern, position_of};

/// Distinct embedded schemas kept per thread before the cache starts over.
pub const SCHEMA_CACHE_ENTRIES: usize = 256;

/// The schemas seen last, matched against a value's bytes before any parsing.
const RECENT_SCHEMAS: usize = 8;

/// A JSON converter value: `{"schema": .., "payload": ..}` or a bare envelope. Every field
/// is optional so both forms parse; `present` keeps an explicit `null` apart from absence.
///
/// A bare envelope (no embedded schema) is read in one pass: `after` straight into inferred
/// cells and `source` into fields, with no second parse of their text (`before` stays raw:
/// only deletes read it, and `op` comes after the rows). An `after` or `source` that is
/// neither an object nor null fails the parse (the DOM path decides).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    schema: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    payload: Option<&'a RawValue>,
    #[serde(borrow, default)]
    op: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    before: Option<&'a RawValue>,
    #[serde(default)]
    after: Option<InferredRow>,
    #[serde(borrow, default, deserialize_with = "source_object")]
    source: Option<Source<'a>>,
    #[serde(default)]
    ts_ms: Option<i64>,
}

/// The payload of `{"schema": .., "payload": ..}`: its rows stay raw until the schema says
/// how to read them.
#[derive(Deserialize)]
struct PayloadEnvelope<'a> {
    #[serde(borrow, default)]
    op: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    before: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    after: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    source: Option<&'a RawValue>,
    #[serde(default)]
    ts_ms: Option<i64>,
}

/// The `source` block fields that position and time an event.
#[derive(Deserialize)]
struct Source<'a> {
    #[serde(borrow, default)]
    connector: Option<Cow<'a, str>>,
    #[serde(default)]
    ts_us: Option<i64>,
    #[serde(default)]
    ts_ms: Option<i64>,
    #[serde(borrow, default)]
    file: Option<Cow<'a, str>>,
    #[serde(default)]
    pos: Option<i64>,
    #[serde(default)]
    row: Option<i64>,
    #[serde(default)]
    lsn: Option<i64>,
    #[serde(borrow, default)]
    sequence: Option<Cow<'a, str>>,
    #[serde(default)]
    ord: Option<i64>,
}

fn present<'de, D>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: de::Deserializer<'de>,
{
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// A `source` block that is an object (or null): serde would read a struct from an array
/// by position, which the DOM path does not.
fn source_object<'de, D>(deserializer: D) -> Result<Option<Source<'de>>, D::Error>
where
    D: de::Deserializer<'de>,
{
    struct OptionVisitor;
    impl<'de> Visitor<'de> for OptionVisitor {
        type Value = Option<Source<'de>>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object or null")
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: de::Deserializer<'de>>(self, inner: D) -> Result<Self::Value, D::Error> {
            inner.deserialize_map(ObjectVisitor).map(Some)
        }
    }
    struct ObjectVisitor;
    impl<'de> Visitor<'de> for ObjectVisitor {
        type Value = Source<'de>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Source<'de>, A::Error> {
            Source::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    deserializer.deserialize_option(OptionVisitor)
}

/// What the fast path decoded: everything of a [`super::ChangeEvent`] but the key.
pub(super) struct FastEvent {
    pub op: Op,
    pub source_ts_micros: Option<i64>,
    pub source_pos: Option<String>,
    pub row: Vec<Cell>,
}

/// Decodes a JSON converter value, or `None` when the DOM path must decide.
pub(super) fn decode(key: &Key, value: &[u8]) -> Option<FastEvent> {
    // Serde reads a struct from an array too (by position): only objects are envelopes.
    if value.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    if key.fields.is_empty() {
        return None;
    }
    if let Some(event) = decode_with_recent_schema(value) {
        return Some(event);
    }
    let top: Envelope = serde_json::from_slice(value).ok()?;
    match (top.schema, top.payload) {
        (Some(schema), Some(payload)) => {
            let schemas = match schema.get() {
                "null" => None,
                text => Some(row_schemas(text)?),
            };
            let envelope: PayloadEnvelope = serde_json::from_str(object(payload)?).ok()?;
            decode_payload(schemas.as_deref(), envelope)
        }
        _ => {
            let op = Op::parse(top.op.as_deref()?)?;
            if op == Op::Truncate {
                return None;
            }
            let row = if op == Op::Delete {
                serde_json::from_str::<InferredRow>(object(top.before?)?).ok()?
            } else {
                top.after?
            };
            finish(op, top.source, top.ts_ms, row.0)
        }
    }
}

/// `{"schema":S,"payload":P}` where `S` is, byte for byte, a recently parsed schema: `P`
/// decoded with that schema's plan, as the general path would decode it. `None` when the
/// value has another form (the caller then takes the general path).
pub(super) fn decode_with_recent_schema(value: &[u8]) -> Option<FastEvent> {
    const SCHEMA: &[u8] = b"{\"schema\":";
    const PAYLOAD: &[u8] = b",\"payload\":";
    let rest = value.strip_prefix(SCHEMA)?;
    let (schemas, payload) = RECENT.with(|recent| {
        let recent = recent.borrow();
        recent.iter().find_map(|(text, schemas)| {
            let payload = rest
                .get(text.len()..)?
                .strip_prefix(PAYLOAD)
                .filter(|_| rest.starts_with(text.as_bytes()))?;
            Some((schemas.clone(), payload))
        })
    })?;
    // The payload object, then the closing brace of the value (and only whitespace).
    let payload = payload.trim_ascii_end().strip_suffix(b"}")?;
    if payload.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let envelope: PayloadEnvelope = serde_json::from_slice(payload).ok()?;
    decode_payload(Some(&*schemas), envelope)
}

/// The payload of a value with an embedded schema: rows typed by the schema when it has
/// a row struct, inferred otherwise.
fn decode_payload(
    schemas: Option<&Option<RowSchemas>>,
    envelope: PayloadEnvelope,
) -> Option<FastEvent> {
    let op = Op::parse(envelope.op.as_deref()?)?;
    if op == Op::Truncate {
        return None;
    }
    let source: Option<Source> = match envelope.source {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) => Some(serde_json::from_str(object(raw)?).ok()?),
    };
    let row = object(if op == Op::Delete {
        envelope.before?
    } else {
        envelope.after?
    })?;
    let row_plan = schemas.and_then(Option::as_ref).and_then(|s| {
        if op == Op::Delete {
            s.before.as_ref()
        } else {
            s.after.as_ref()
        }
    });
    let row = match row_plan {
        Some(plan) => {
            let mut deserializer = serde_json::Deserializer::from_str(row);
            let values = PlannedRow(plan).deserialize(&mut deserializer).ok()?;
            deserializer.end().ok()?;
            plan.decode(values).ok()?
        }
        None => serde_json::from_str::<InferredRow>(row).ok()?.0,
    };
    finish(op, source, envelope.ts_ms, row)
}

/// The event from its decoded parts; `None` for a Mongo source (the DOM path decides).
fn finish(
    op: Op,
    source: Option<Source>,
    envelope_ts_ms: Option<i64>,
    row: Vec<Cell>,
) -> Option<FastEvent> {
    if source
        .as_ref()
        .is_some_and(|s| s.connector.as_deref() == Some("mongodb"))
    {
        return None;
    }
    let source_ts_micros = source
        .as_ref()
        .and_then(|s| {
            s.ts_us
                .or_else(|| s.ts_ms.map(|ms| ms.saturating_mul(1000)))
        })
        .or_else(|| envelope_ts_ms.map(|ms| ms.saturating_mul(1000)));
    let source_pos = source.as_ref().and_then(|s| {
        position_of(
            s.file.as_deref(),
            s.pos,
            s.row,
            s.lsn,
            s.sequence.as_deref(),
            s.ts_ms,
            s.ord,
        )
    });
    Some(FastEvent {
        op,
        source_ts_micros,
        source_pos,
        row,
    })
}

/// The text of a raw value that is a JSON object.
fn object(raw: &RawValue) -> Option<&str> {
    raw.get().starts_with('{').then(|| raw.get())
}

/// The row plans of an envelope schema's `before` and `after` structs.
#[derive(Debug)]
pub(super) struct RowSchemas {
    before: Option<RowPlan>,
    after: Option<RowPlan>,
}

type CachedSchema = (Arc<str>, Arc<Option<RowSchemas>>);

thread_local! {
    /// Schema text → its parsed row schemas (foldhash: the key is kilobytes long).
    static SCHEMAS: RefCell<HashMap<Arc<str>, Arc<Option<RowSchemas>>>> =
        RefCell::new(HashMap::default());
    /// The last [`RECENT_SCHEMAS`] schemas looked up, most recent first.
    static RECENT: RefCell<Vec<CachedSchema>> = const { RefCell::new(Vec::new()) };
}

/// The row schemas of an embedded envelope schema, parsed once per distinct text; `None`
/// when the schema is not JSON or a row struct names a field twice (the DOM path decides).
/// The inner `None`: a schema without a row struct.
fn row_schemas(text: &str) -> Option<Arc<Option<RowSchemas>>> {
    let (text, parsed) = SCHEMAS.with(|cell| {
        let mut cache = cell.borrow_mut();
        if let Some((text, found)) = cache.get_key_value(text) {
            return Some((text.clone(), found.clone()));
        }
        let schema: Value = serde_json::from_str(text).ok()?;
        let plan = |name: &str| match super::struct_field_schema(&schema, name) {
            Some(fields) => RowPlan::new(fields).map(Some),
            None => Some(None),
        };
        let parsed = Arc::new(match (plan("before")?, plan("after")?) {
            (None, None) => None,
            (before, after) => Some(RowSchemas { before, after }),
        });
        if cache.len() >= SCHEMA_CACHE_ENTRIES {
            cache.clear();
        }
        let text: Arc<str> = Arc::from(text);
        cache.insert(text.clone(), parsed.clone());
        Some((text, parsed))
    })?;
    RECENT.with(|recent| {
        let mut recent = recent.borrow_mut();
        recent.retain(|(seen, _)| !Arc::ptr_eq(seen, &text));
        recent.truncate(RECENT_SCHEMAS - 1);
        recent.insert(0, (text, parsed.clone()));
    });
    Some(parsed)
}

/// A key with its schema embedded: `{"schema": .., "payload": {..}}`.
#[derive(Deserialize)]
struct KeyEnvelope<'a> {
    #[serde(borrow)]
    schema: &'a RawValue,
    payload: serde_json::Map<String, Value>,
}

/// Key schema text → the key struct's field schemas (`None`: the schema has none).
type KeySchemas = HashMap<Box<str>, Option<Arc<Vec<Value>>>>;

thread_local! {
    static KEY_SCHEMAS: RefCell<KeySchemas> = RefCell::new(HashMap::default());
}

/// A JSON converter key with its schema embedded, without a `Value` tree of the schema: the
/// schema's field list is parsed once per distinct text (at most [`SCHEMA_CACHE_ENTRIES`]
/// kept per thread) and shared. `None` for any other form (the DOM path decides), which
/// includes a bare key.
pub(super) fn decode_key(bytes: &[u8]) -> Option<Key> {
    if !bytes.starts_with(b"{\"schema\":") {
        return None;
    }
    let key: KeyEnvelope = serde_json::from_slice(bytes).ok()?;
    let schemas = match key.schema.get() {
        "null" => None,
        text => KEY_SCHEMAS.with(|cell| {
            let mut cache = cell.borrow_mut();
            if let Some(found) = cache.get(text) {
                return Some(found.clone());
            }
            let schema: Value = serde_json::from_str(text).ok()?;
            let fields = schema
                .get("fields")
                .and_then(Value::as_array)
                .cloned()
                .map(Arc::new);
            if cache.len() >= SCHEMA_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(text.into(), fields.clone());
            Some(fields)
        })?,
    };
    Some(Key {
        fields: key.payload.into_iter().collect(),
        schemas,
    })
}

/// A typed row's values in its plan's field order, read as the `serde_json::Map` the DOM
/// path parses would hold them (the last of duplicate keys wins; fields the plan does not
/// name are parsed and dropped, so the same texts are refused).
struct PlannedRow<'p>(&'p RowPlan);

impl<'de> DeserializeSeed<'de> for PlannedRow<'_> {
    type Value = Vec<Option<Value>>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PlannedRow<'_> {
    type Value = Vec<Option<Value>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values: Vec<Option<Value>> = vec![None; self.0.len()];
        let mut next = 0;
        while let Some(position) = map.next_key_seed(FieldPosition(self.0, next))? {
            let value: Value = map.next_value()?;
            if let Some(position) = position {
                values[position] = Some(value);
                next = position + 1;
            }
        }
        Ok(values)
    }
}

/// A row key as its field's position in the plan (`None`: not a field of the plan), looked
/// for first where the previous key's successor is.
struct FieldPosition<'p>(&'p RowPlan, usize);

impl<'de> DeserializeSeed<'de> for FieldPosition<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldPosition<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Option<usize>, E> {
        Ok(self.0.position(name, self.1))
    }
}

/// A row key as its interned [`super::Name`], without an owned copy of its text.
struct InternedName(super::Name);

impl<'de> Deserialize<'de> for InternedName {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = InternedName;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_str<E>(self, name: &str) -> Result<InternedName, E> {
                Ok(InternedName(intern(name)))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// A schemaless row: its cells with inferred types, sorted by name, the last of duplicate
/// names kept (what iterating a parsed `serde_json::Map` gives).
struct InferredRow(Vec<Cell>);

impl<'de> Deserialize<'de> for InferredRow {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RowVisitor)
    }
}

struct RowVisitor;

impl<'de> Visitor<'de> for RowVisitor {
    type Value = InferredRow;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InferredRow, A::Error> {
        let mut cells: Vec<Cell> = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(InternedName(name)) = map.next_key()? {
            let Inferred(column_type, value) = map.next_value()?;
            cells.push(Cell {
                name,
                column_type,
                typed: false,
                value,
            });
        }
        if !cells.is_sorted_by(|a, b| a.name < b.name) {
            // Stable: among equal names the last one sent comes last, and is kept.
            cells.sort_by(|a, b| a.name.cmp(&b.name));
            let mut kept: Vec<Cell> = Vec::with_capacity(cells.len());
            for cell in cells {
                match kept.last_mut() {
                    Some(last) if last.name == cell.name => *last = cell,
                    _ => kept.push(cell),
                }
            }
            cells = kept;
        }
        Ok(InferredRow(cells))
    }
}

/// One schemaless value with its inferred type, as [`infer`] gives for the parsed value.
struct Inferred(ColumnType, CellValue);

impl<'de> Deserialize<'de> for Inferred {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(InferredVisitor)
    }
}

struct InferredVisitor;

impl<'de> Visitor<'de> for InferredVisitor {
    type Value = Inferred;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Inferred, E> {
        Ok(Inferred(ColumnType::String, CellValue::Null))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Inferred, E> {
        Ok(Inferred(ColumnType::Boolean, CellValue::Boolean(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Inferred, E> {
        Ok(Inferred(ColumnType::Long, CellValue::Long(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Inferred, E> {
        Ok(match i64::try_from(v) {
            Ok(long) => Inferred(ColumnType::Long, CellValue::Long(long)),
            Err(_) => Inferred(ColumnType::Double, CellValue::Double(v as f64)),
        })
    }

    fn visit_f64<E>(self, v: f64) -> Result<Inferred, E> {
        Ok(Inferred(ColumnType::Double, CellValue::Double(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Inferred, E> {
        Ok(Inferred(
            ColumnType::String,
            CellValue::String(v.to_owned()),
        ))
    }

    fn visit_string<E>(self, v: String) -> Result<Inferred, E> {
        Ok(Inferred(ColumnType::String, CellValue::String(v)))
    }

    // Objects and arrays are rare in rows: build the value and infer as the DOM path does.
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Inferred, A::Error> {
        let value = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        let (column_type, cell) = infer(&value);
        Ok(Inferred(column_type, cell))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Inferred, A::Error> {
        let value = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        let (column_type, cell) = infer(&value);
        Ok(Inferred(column_type, cell))
    }
}
