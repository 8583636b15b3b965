//! The relay's view of its source tables: for every input of a relayed gold model, the
//! current row per (tenant, primary key) built from the Debezium events applied so far,
//! indexed by the gold key the row contributes to. Pure: events in, affected gold keys out.
//!
//! # Semantics (the same as silver, so hot and cold agree)
//!
//! - **Latest event wins** per (tenant, key), ordered by (source position, Kafka offset); a
//!   missing position sorts before every recorded one. Connector re-emissions are dropped
//!   before they get here (see [`crate::dedup`]), so an older event never resurrects a row.
//! - **Deletes** remove the row; **truncates** remove every row of the tenant whose latest
//!   event precedes the truncate.
//! - **Column types** follow bronze: a type from an embedded schema beats an inferred one; a
//!   typed value of a wider compatible type widens the column; anything else refuses the
//!   event (bronze dead-letters it, so silver never sees it either). Values are stored as
//!   decoded and coerced to the column's type when shaped, as bronze coerces them, so a
//!   schemaless tenant's value works in a column another tenant's schema typed.
//! - **Retyping**: when a schema's type replaces a different inferred type (an epoch
//!   integer becomes a timestamp, base64 text a decimal), every live gold key is reported
//!   once by [`ModelState::take_retyped`], so rows shaped with the inferred type are
//!   shaped again.
//!
//! # The relay version
//!
//! Every gold key carries a *relay version*, the hot table's `merge_condition` column:
//! `newest × 1,000,000 + changes`, where `newest` is the newest source time (ms) of any
//! event applied to the key's input rows and `changes` counts those events (capped at
//! 999,999), both since the key last had no rows at all. It grows with *every* applied
//! change, so two different states of a key never share a version and a stale body sent
//! late (a zombie's load, a label StarRocks evicted) can never overwrite a newer row —
//! not even one written by the same source transaction, whose events share a timestamp.
//! Both parts depend only on which events were applied, not on how the partitions
//! interleaved, so a relay that rebuilt its state after a restart continues the versions
//! it loaded before. The gold model's own `source_version` cannot be the condition: it is
//! a maximum over the *current* item rows, so deleting the newest item lowers it and
//! StarRocks would refuse the corrected row.
//!
//! Memory is proportional to the live rows of the input tables (each row's decoded cells,
//! plus one index entry and one version per live gold key); deleted rows leave nothing.

use std::collections::{BTreeMap, BTreeSet};

// hashbrown with foldhash (DataFusion's default map): every event hashes its row and gold
// keys several times, and SipHash was a tenth of the relay's CPU.
use datafusion::common::HashMap;

use firn_catalog::commit::is_widening;
use iceberg::spec::PrimitiveType;

use crate::bronze::{BronzeRow, iceberg_type};
use crate::debezium::{Cell, CellValue, ChangeEvent, ColumnType, Op};

/// One value of a key. Integers of any width compare as integers, so `orders.id` (long)
/// and `order_items.order_id` (int or long) name the same gold key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyValue {
    Null,
    Int(i64),
    Text(String),
}

impl KeyValue {
    pub fn from_cell(value: &CellValue) -> KeyValue {
        match value {
            CellValue::Null => KeyValue::Null,
            CellValue::Int(v) => KeyValue::Int(i64::from(*v)),
            CellValue::Long(v) => KeyValue::Int(*v),
            CellValue::String(v) => KeyValue::Text(v.clone()),
            CellValue::Boolean(v) => KeyValue::Text(v.to_string()),
            CellValue::Date(v) => KeyValue::Int(i64::from(*v)),
            CellValue::Time(v) | CellValue::Micros(v) => KeyValue::Int(*v),
            CellValue::Decimal(v) => KeyValue::Text(v.to_string()),
            CellValue::Float(v) => KeyValue::Text(v.to_string()),
            CellValue::Double(v) => KeyValue::Text(v.to_string()),
            CellValue::Binary(v) => KeyValue::Text(format!("{v:02x?}")),
        }
    }

    /// The value as it goes into a Stream Load JSON row.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            KeyValue::Null => serde_json::Value::Null,
            KeyValue::Int(v) => serde_json::Value::from(*v),
            KeyValue::Text(v) => serde_json::Value::from(v.as_str()),
        }
    }
}

/// The key of one gold row, in the order of the model's declared key.
pub type GoldKey = Vec<KeyValue>;

/// (tenant, primary-key values) of a source row.
type RowKey = (String, Vec<KeyValue>);

/// What the relay needs to know about one input table of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// The silver table name (without `silver.`).
    pub table: String,
    /// Primary-key columns of the source table (empty: the Debezium message key's fields).
    pub primary_key: Vec<String>,
    /// The columns giving the gold key, in key order; `tenant` is the tenant.
    pub gold_key: Vec<String>,
}

/// One Debezium event to apply, with where it came from.
#[derive(Debug, Clone)]
pub struct Change {
    pub tenant: String,
    pub event: ChangeEvent,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The current row of a source key.
#[derive(Debug, Clone, PartialEq)]
struct StoredRow {
    /// Kept in bronze's form, so shaping hands it to [`crate::bronze::build_batch`] without
    /// a copy (`op` is always `Create` and `ingested_at_micros` 0: silver has neither).
    row: BronzeRow,
    gold_key: GoldKey,
}

impl StoredRow {
    fn order(&self) -> (&str, i64) {
        (
            self.row.source_pos.as_deref().unwrap_or(""),
            self.row.offset,
        )
    }
}

/// A column of an input table: its type and whether an embedded schema gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputColumn {
    pub name: String,
    pub column_type: ColumnType,
    pub typed: bool,
}

#[derive(Debug, Clone)]
struct InputState {
    spec: InputSpec,
    rows: HashMap<RowKey, StoredRow>,
    by_gold: HashMap<GoldKey, BTreeSet<RowKey>>,
    /// Source columns in first-seen order.
    columns: Vec<InputColumn>,
    /// Bumped whenever a column is added or its type changes.
    typing: u64,
    /// A schema's type replaced a different inferred type since the last
    /// [`ModelState::take_retyped`].
    retyped: bool,
}

/// The state of every input of one relayed model; see the module docs.
#[derive(Debug, Clone)]
pub struct ModelState {
    inputs: BTreeMap<String, InputState>,
    versions: HashMap<GoldKey, KeyVersion>,
}

/// The parts of a gold key's relay version (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyVersion {
    newest_ms: i64,
    changes: i64,
}

/// The most changes a relay version counts; a key with more keeps the same count until its
/// source time moves on.
const MAX_COUNTED_CHANGES: i64 = 999_999;

impl KeyVersion {
    fn first(ts_micros: i64) -> KeyVersion {
        KeyVersion {
            newest_ms: ts_micros.div_euclid(1000),
            changes: 1,
        }
    }

    fn after(self, ts_micros: i64) -> KeyVersion {
        KeyVersion {
            newest_ms: self.newest_ms.max(ts_micros.div_euclid(1000)),
            changes: (self.changes + 1).min(MAX_COUNTED_CHANGES),
        }
    }

    fn encoded(self) -> i64 {
        self.newest_ms
            .saturating_mul(MAX_COUNTED_CHANGES + 1)
            .saturating_add(self.changes)
    }
}

impl ModelState {
    pub fn new(specs: Vec<InputSpec>) -> ModelState {
        let inputs = specs
            .into_iter()
            .map(|spec| {
                (
                    spec.table.clone(),
                    InputState {
                        spec,
                        rows: HashMap::default(),
                        by_gold: HashMap::default(),
                        columns: Vec::new(),
                        typing: 0,
                        retyped: false,
                    },
                )
            })
            .collect();
        ModelState {
            inputs,
            versions: HashMap::default(),
        }
    }

    /// Whether `table` is an input of the model.
    pub fn reads(&self, table: &str) -> bool {
        self.inputs.contains_key(table)
    }

    /// Live source rows over every input.
    pub fn live_rows(&self) -> usize {
        self.inputs.values().map(|input| input.rows.len()).sum()
    }

    /// The relay version of a gold key that has rows (see the module docs).
    pub fn version(&self, key: &GoldKey) -> Option<i64> {
        self.versions.get(key).map(|version| version.encoded())
    }

    /// The columns seen so far for an input, in first-seen order.
    pub fn columns(&self, table: &str) -> &[InputColumn] {
        self.inputs
            .get(table)
            .map(|input| input.columns.as_slice())
            .unwrap_or_default()
    }

    /// A number that changes whenever any input's columns or column types change: a model
    /// that could not run with the columns of one typing may run with the next.
    pub fn typing(&self) -> u64 {
        self.inputs.values().map(|input| input.typing).sum()
    }

    /// Whether a schema's type replaced a different inferred type since the last call; if
    /// so, the rows of every live gold key (see [`ModelState::live_keys`]) may have been
    /// shaped with the wrong type and must be shaped again.
    pub fn take_retyped(&mut self) -> bool {
        let mut retyped = false;
        for input in self.inputs.values_mut() {
            retyped |= std::mem::take(&mut input.retyped);
        }
        retyped
    }

    /// Every gold key that has rows, in key order.
    pub fn live_keys(&self) -> BTreeSet<GoldKey> {
        self.versions.keys().cloned().collect()
    }

    /// The current rows of `table` that belong to any of `keys`, in a stable order.
    pub fn rows_for<'a>(&'a self, table: &str, keys: &BTreeSet<GoldKey>) -> Vec<&'a BronzeRow> {
        let Some(input) = self.inputs.get(table) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|key| input.by_gold.get(key))
            .flatten()
            .filter_map(|row_key| input.rows.get(row_key))
            .map(|stored| &stored.row)
            .collect()
    }

    /// Applies one event of input `table`. Returns the gold keys whose rows changed (empty
    /// when the event was older than the stored row), or why the event cannot be applied.
    pub fn apply(&mut self, table: &str, change: &Change) -> Result<Vec<GoldKey>, String> {
        let input = self
            .inputs
            .get_mut(table)
            .ok_or_else(|| format!("`{table}` is not an input of this model"))?;
        let affected = input.apply(change)?;
        let ts = change.event.source_ts_micros.unwrap_or(0);
        for key in &affected {
            let live = self
                .inputs
                .values()
                .any(|input| input.by_gold.contains_key(key));
            if live {
                self.versions
                    .entry(key.clone())
                    .and_modify(|version| *version = version.after(ts))
                    .or_insert_with(|| KeyVersion::first(ts));
            } else {
                self.versions.remove(key);
            }
        }
        Ok(affected)
    }
}

impl InputState {
    fn apply(&mut self, change: &Change) -> Result<Vec<GoldKey>, String> {
        let event = &change.event;
        let order = (event.source_pos.as_deref().unwrap_or(""), change.offset);
        if event.op == Op::Truncate {
            let doomed: Vec<RowKey> = self
                .rows
                .iter()
                .filter(|(key, row)| key.0 == change.tenant && row.order() < order)
                .map(|(key, _)| key.clone())
                .collect();
            let mut affected = BTreeSet::new();
            for key in doomed {
                if let Some(gold) = self.remove(&key) {
                    affected.insert(gold);
                }
            }
            return Ok(affected.into_iter().collect());
        }
        self.check_columns(&event.row)?;
        let row_key = (change.tenant.clone(), self.primary_key(event)?);
        if let Some(existing) = self.rows.get(&row_key)
            && existing.order() > order
        {
            return Ok(Vec::new());
        }
        let mut affected = BTreeSet::new();
        if let Some(old) = self.remove(&row_key) {
            affected.insert(old);
        }
        let gold_key = self.gold_key(&change.tenant, &event.row)?;
        affected.insert(gold_key.clone());
        if event.op != Op::Delete {
            self.by_gold
                .entry(gold_key.clone())
                .or_default()
                .insert(row_key.clone());
            self.rows.insert(
                row_key,
                StoredRow {
                    row: BronzeRow {
                        tenant: change.tenant.clone(),
                        op: Op::Create,
                        source_ts_micros: event.source_ts_micros,
                        source_pos: event.source_pos.clone(),
                        topic: change.topic.clone(),
                        partition: change.partition,
                        offset: change.offset,
                        ingested_at_micros: 0,
                        cells: event.row.clone(),
                    },
                    gold_key,
                },
            );
        }
        Ok(affected.into_iter().collect())
    }

    /// Removes a row; returns its gold key.
    fn remove(&mut self, key: &RowKey) -> Option<GoldKey> {
        let row = self.rows.remove(key)?;
        if let Some(members) = self.by_gold.get_mut(&row.gold_key) {
            members.remove(key);
            if members.is_empty() {
                self.by_gold.remove(&row.gold_key);
            }
        }
        Some(row.gold_key)
    }

    fn primary_key(&self, event: &ChangeEvent) -> Result<Vec<KeyValue>, String> {
        if self.spec.primary_key.is_empty() {
            return Ok(event
                .key
                .iter()
                .map(|(_, value)| match value {
                    serde_json::Value::Number(n) if n.is_i64() => {
                        KeyValue::Int(n.as_i64().unwrap_or_default())
                    }
                    serde_json::Value::String(s) => KeyValue::Text(s.clone()),
                    other => KeyValue::Text(other.to_string()),
                })
                .collect());
        }
        self.spec
            .primary_key
            .iter()
            .map(|column| {
                cell(&event.row, column)
                    .map(KeyValue::from_cell)
                    .ok_or_else(|| format!("primary-key column `{column}` is missing"))
            })
            .collect()
    }

    fn gold_key(&self, tenant: &str, row: &[Cell]) -> Result<GoldKey, String> {
        self.spec
            .gold_key
            .iter()
            .map(|column| {
                if column == crate::relay::TENANT_COLUMN {
                    return Ok(KeyValue::Text(tenant.to_string()));
                }
                cell(row, column)
                    .map(KeyValue::from_cell)
                    .ok_or_else(|| format!("gold-key column `{column}` is missing"))
            })
            .collect()
    }

    /// Registers the row's columns, refusing a typed value of an incompatible type.
    fn check_columns(&mut self, row: &[Cell]) -> Result<(), String> {
        for (position, cell) in row.iter().enumerate() {
            if cell.name.starts_with(crate::bronze::METADATA_PREFIX) {
                return Err(format!(
                    "source column `{}` uses the reserved prefix {}",
                    cell.name,
                    crate::bronze::METADATA_PREFIX
                ));
            }
            // Rows mostly list their columns in first-seen order: try the same position first.
            let found = match self.columns.get(position) {
                Some(column) if *column.name == *cell.name => Some(position),
                _ => self.columns.iter().position(|c| *c.name == *cell.name),
            };
            let Some(column) = found.map(|index| &mut self.columns[index]) else {
                if cell.typed || cell.value != CellValue::Null {
                    self.columns.push(InputColumn {
                        name: cell.name.to_string(),
                        column_type: cell.column_type,
                        typed: cell.typed,
                    });
                    self.typing += 1;
                }
                continue;
            };
            if !cell.typed || column.column_type == cell.column_type {
                if cell.typed && !column.typed {
                    column.typed = true;
                    self.typing += 1;
                }
                continue;
            }
            if !column.typed {
                // A schema's type beats one inferred from schemaless JSON; the values seen
                // so far are coerced to it when shaped (as bronze does).
                column.column_type = cell.column_type;
                column.typed = true;
                self.typing += 1;
                self.retyped = true;
                continue;
            }
            let (current, wanted): (PrimitiveType, PrimitiveType) = (
                iceberg_type(column.column_type),
                iceberg_type(cell.column_type),
            );
            if is_widening(&current, &wanted) {
                column.column_type = cell.column_type;
                self.typing += 1;
            } else if !is_widening(&wanted, &current) {
                return Err(format!(
                    "column `{}` is {current} but the record has {wanted}",
                    cell.name
                ));
            }
        }
        Ok(())
    }
}

fn cell<'a>(row: &'a [Cell], name: &str) -> Option<&'a CellValue> {
    row.iter().find(|c| &*c.name == name).map(|c| &c.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_orders() -> InputSpec {
        InputSpec {
            table: "orders".into(),
            primary_key: vec!["id".into()],
            gold_key: vec!["tenant".into(), "id".into()],
        }
    }

    fn spec_items() -> InputSpec {
        InputSpec {
            table: "order_items".into(),
            primary_key: vec!["order_id".into(), "line_no".into()],
            gold_key: vec!["tenant".into(), "order_id".into()],
        }
    }

    fn long(name: &str, value: i64) -> Cell {
        Cell {
            name: name.into(),
            column_type: ColumnType::Long,
            typed: true,
            value: CellValue::Long(value),
        }
    }

    fn change(op: Op, pos: &str, offset: i64, ts: i64, row: Vec<Cell>) -> Change {
        Change {
            tenant: "t0".into(),
            event: ChangeEvent {
                op,
                // The tests speak of milliseconds, the relay version's unit.
                source_ts_micros: Some(ts * 1000),
                source_pos: Some(pos.into()),
                row,
                key: Vec::new(),
            },
            topic: "cdc".into(),
            partition: 0,
            offset,
        }
    }

    /// The encoded relay version of `changes` changes, the newest at `newest_ms`.
    fn version(newest_ms: i64, changes: i64) -> Option<i64> {
        Some(newest_ms * 1_000_000 + changes)
    }

    fn key(id: i64) -> GoldKey {
        vec![KeyValue::Text("t0".into()), KeyValue::Int(id)]
    }

    fn item(order: i64, line: i64, qty: i64) -> Vec<Cell> {
        vec![
            long("order_id", order),
            long("line_no", line),
            long("quantity", qty),
        ]
    }

    #[test]
    fn latest_event_wins_and_deletes_remove() {
        let mut state = ModelState::new(vec![spec_orders(), spec_items()]);
        let a = state
            .apply(
                "orders",
                &change(Op::Create, "p1", 0, 10, vec![long("id", 1)]),
            )
            .unwrap();
        assert_eq!(a, vec![key(1)]);
        // An older event (lower position) for the same key changes nothing.
        let older = change(Op::Update, "p0", 5, 5, vec![long("id", 1), long("x", 9)]);
        assert_eq!(
            state.apply("orders", &older).unwrap(),
            Vec::<GoldKey>::new()
        );
        assert_eq!(
            state.rows_for("orders", &BTreeSet::from([key(1)]))[0].offset,
            0
        );
        state
            .apply(
                "order_items",
                &change(Op::Create, "p2", 1, 20, item(1, 1, 3)),
            )
            .unwrap();
        assert_eq!(state.live_rows(), 2);
        // Two changes applied (the older event was not).
        assert_eq!(state.version(&key(1)), version(20, 2));
        state
            .apply(
                "orders",
                &change(Op::Delete, "p3", 2, 30, vec![long("id", 1)]),
            )
            .unwrap();
        // The item still belongs to key 1, so the key lives on with a newer version.
        assert_eq!(state.version(&key(1)), version(30, 3));
        let gone = state
            .apply(
                "order_items",
                &change(Op::Delete, "p4", 3, 40, item(1, 1, 3)),
            )
            .unwrap();
        assert_eq!(gone, vec![key(1)]);
        assert_eq!(state.live_rows(), 0);
        assert_eq!(state.version(&key(1)), None);
    }

    #[test]
    fn the_relay_version_never_drops_while_a_key_lives() {
        let mut state = ModelState::new(vec![spec_orders(), spec_items()]);
        state
            .apply(
                "orders",
                &change(Op::Create, "p1", 0, 10, vec![long("id", 1)]),
            )
            .unwrap();
        state
            .apply(
                "order_items",
                &change(Op::Create, "p2", 1, 50, item(1, 1, 3)),
            )
            .unwrap();
        state
            .apply(
                "order_items",
                &change(Op::Create, "p3", 2, 20, item(1, 2, 3)),
            )
            .unwrap();
        assert_eq!(state.version(&key(1)), version(50, 3));
        // Deleting the newest item: gold's source_version would fall back to 20.
        state
            .apply(
                "order_items",
                &change(Op::Delete, "p4", 3, 60, item(1, 1, 3)),
            )
            .unwrap();
        assert_eq!(state.version(&key(1)), version(60, 4));
    }

    /// One source transaction (one timestamp) creating an order and its items, applied in
    /// every interleaving of the two topics: each change raises the version, and the final
    /// version is the same whatever the interleaving (a restarted relay continues it).
    #[test]
    fn every_change_raises_the_version_and_the_final_one_ignores_interleaving() {
        let orders = [
            change(Op::Create, "p1", 0, 7, vec![long("id", 1)]),
            change(Op::Update, "p4", 1, 7, vec![long("id", 1), long("x", 2)]),
        ];
        let items: Vec<Change> = (1..=3)
            .map(|line| {
                change(
                    Op::Create,
                    &format!("p{}", line + 1),
                    line,
                    7,
                    item(1, line, 1),
                )
            })
            .collect();
        let mut finals = BTreeSet::new();
        // Bit i of `mask` says whether the i-th applied event comes from orders.
        for mask in 0u32..(1 << (orders.len() + items.len())) {
            if mask.count_ones() as usize != orders.len() {
                continue;
            }
            let mut state = ModelState::new(vec![spec_orders(), spec_items()]);
            let (mut next_order, mut next_item) = (orders.iter(), items.iter());
            let mut previous = None;
            for step in 0..orders.len() + items.len() {
                if mask & (1 << step) != 0 {
                    state.apply("orders", next_order.next().unwrap()).unwrap();
                } else {
                    state
                        .apply("order_items", next_item.next().unwrap())
                        .unwrap();
                }
                let now = state.version(&key(1));
                assert!(
                    now > previous,
                    "step {step} of {mask:b}: {now:?} after {previous:?}"
                );
                previous = now;
            }
            finals.insert(previous);
        }
        assert_eq!(finals, BTreeSet::from([version(7, 5)]));
    }

    #[test]
    fn a_truncate_clears_older_rows_of_the_tenant() {
        let mut state = ModelState::new(vec![spec_orders()]);
        for id in 1..=3 {
            state
                .apply(
                    "orders",
                    &change(Op::Create, &format!("p{id}"), id, id, vec![long("id", id)]),
                )
                .unwrap();
        }
        let mut other = change(Op::Create, "p1", 9, 1, vec![long("id", 1)]);
        other.tenant = "t1".into();
        state.apply("orders", &other).unwrap();
        let cleared = state
            .apply("orders", &change(Op::Truncate, "p2z", 10, 99, vec![]))
            .unwrap();
        // Rows at p1 and p2 precede the truncate at p2z; p3 survives; t1 is untouched.
        assert_eq!(cleared, vec![key(1), key(2)]);
        assert_eq!(state.live_rows(), 2);
    }

    #[test]
    fn rows_are_indexed_by_their_gold_key() {
        let mut state = ModelState::new(vec![spec_items()]);
        state
            .apply(
                "order_items",
                &change(Op::Create, "p1", 0, 1, item(1, 1, 1)),
            )
            .unwrap();
        let line = change(Op::Update, "p2", 1, 2, item(1, 1, 2));
        assert_eq!(state.apply("order_items", &line).unwrap(), vec![key(1)]);
        // Keys are (tenant, order_id, line_no) for items, so a different order is a new row.
        let other = change(Op::Create, "p3", 2, 3, item(2, 1, 1));
        assert_eq!(state.apply("order_items", &other).unwrap(), vec![key(2)]);
        assert_eq!(
            state
                .rows_for("order_items", &BTreeSet::from([key(1), key(2)]))
                .len(),
            2
        );
    }

    #[test]
    fn schema_types_beat_inferred_ones_and_incompatible_types_are_refused() {
        let mut state = ModelState::new(vec![spec_orders()]);
        let mut row = vec![long("id", 1)];
        row.push(Cell {
            name: "total".into(),
            column_type: ColumnType::String,
            typed: false,
            value: CellValue::String("BNI=".into()),
        });
        state
            .apply("orders", &change(Op::Create, "p1", 0, 1, row))
            .unwrap();
        let decimal = ColumnType::Decimal {
            precision: 12,
            scale: 2,
        };
        let typed = Cell {
            name: "total".into(),
            column_type: decimal,
            typed: true,
            value: CellValue::Decimal(1234),
        };
        state
            .apply(
                "orders",
                &change(Op::Update, "p2", 1, 2, vec![long("id", 1), typed]),
            )
            .unwrap();
        assert_eq!(state.columns("orders")[1].column_type, decimal);
        let wrong = Cell {
            name: "total".into(),
            column_type: ColumnType::Boolean,
            typed: true,
            value: CellValue::Boolean(true),
        };
        let err = state
            .apply(
                "orders",
                &change(Op::Update, "p3", 2, 3, vec![long("id", 1), wrong]),
            )
            .unwrap_err();
        assert!(err.contains("total"), "{err}");
    }
}
