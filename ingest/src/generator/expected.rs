//! The expected outcome of a generated stream, maintained while it is generated. Pure: no
//! I/O (`sink.rs` writes it to files).
//!
//! Two things are tracked:
//! - the final source-table state per (table, tenant): primary key to latest row, deletes
//!   removing keys. This is what `silver.<table>` must contain once everything is ingested.
//!   Rows are held in their compact typed form and decoded to JSON only when asked for:
//!   dates as `YYYY-MM-DD`, timestamps (with or without zone) as RFC 3339 UTC with exactly six
//!   fraction digits, decimals as plain decimal strings (`"12.50"`), enums as their label.
//! - per-topic message counts. `messages = change_events + tombstones + duplicates`, where
//!   `duplicates` counts every re-emitted copy (tombstone or not) and `change_events` /
//!   `tombstones` count originals only. `change_events` is the number of bronze rows the
//!   topic must produce after deduplication.
//!
//! The generator also reads this state back (before-images for updates and deletes), so it
//! doubles as the simulated database: nothing is stored twice.

use std::collections::{BTreeMap, HashMap};

use chrono::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::envelope::{Op, format_decimal};
use super::model::{Cell, ColumnType, PrimaryKey, Row, Table};

/// Message counts for one topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicCounts {
    /// Every Kafka message, including tombstones and duplicates.
    pub messages: u64,
    /// Distinct change events (r/c/u/d), excluding duplicates: expected bronze rows.
    pub change_events: u64,
    /// Tombstones (value `None`), excluding duplicates.
    pub tombstones: u64,
    /// Re-emitted copies injected by simulated connector restarts.
    pub duplicates: u64,
    /// Distinct change events by op.
    pub reads: u64,
    pub creates: u64,
    pub updates: u64,
    pub deletes: u64,
}

impl TopicCounts {
    fn add(&mut self, other: &TopicCounts) {
        self.messages += other.messages;
        self.change_events += other.change_events;
        self.tombstones += other.tombstones;
        self.duplicates += other.duplicates;
        self.reads += other.reads;
        self.creates += other.creates;
        self.updates += other.updates;
        self.deletes += other.deletes;
    }
}

/// One line of `expected/<table>.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectedRow {
    pub tenant: String,
    pub key: Value,
    pub row: Value,
}

/// The content of `counts.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountsReport {
    pub totals: TopicCounts,
    pub topics: BTreeMap<String, TopicCounts>,
    /// Final row count per table name, then tenant.
    pub final_rows: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Debug)]
struct TenantExpected {
    name: String,
    topics: [String; 4],
    rows: [HashMap<PrimaryKey, Row>; 4],
    counts: [TopicCounts; 4],
}

/// Expected final state and counts of a generated stream; see the module docs.
#[derive(Debug)]
pub struct ExpectedState {
    tenants: Vec<TenantExpected>,
}

impl ExpectedState {
    /// `tenants`: name and the four topics (in `Table::ALL` order), in tenant-index order.
    pub(crate) fn new(tenants: impl IntoIterator<Item = (String, [String; 4])>) -> Self {
        let tenants = tenants
            .into_iter()
            .map(|(name, topics)| TenantExpected {
                name,
                topics,
                rows: Default::default(),
                counts: Default::default(),
            })
            .collect();
        Self { tenants }
    }

    pub(crate) fn row(&self, tenant: usize, table: Table, key: PrimaryKey) -> Option<&Row> {
        self.tenants[tenant].rows[table.index()].get(&key)
    }

    pub(crate) fn put(&mut self, tenant: usize, table: Table, key: PrimaryKey, row: Row) {
        self.tenants[tenant].rows[table.index()].insert(key, row);
    }

    pub(crate) fn remove(&mut self, tenant: usize, table: Table, key: PrimaryKey) -> Option<Row> {
        self.tenants[tenant].rows[table.index()].remove(&key)
    }

    pub(crate) fn record_event(&mut self, tenant: usize, table: Table, op: Op) {
        let counts = &mut self.tenants[tenant].counts[table.index()];
        counts.messages += 1;
        counts.change_events += 1;
        match op {
            Op::Read => counts.reads += 1,
            Op::Create => counts.creates += 1,
            Op::Update => counts.updates += 1,
            Op::Delete => counts.deletes += 1,
        }
    }

    pub(crate) fn record_tombstone(&mut self, tenant: usize, table: Table) {
        let counts = &mut self.tenants[tenant].counts[table.index()];
        counts.messages += 1;
        counts.tombstones += 1;
    }

    pub(crate) fn record_duplicate(&mut self, tenant: usize, table: Table) {
        let counts = &mut self.tenants[tenant].counts[table.index()];
        counts.messages += 1;
        counts.duplicates += 1;
    }

    /// Tenant names in configuration order.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.tenants.iter().map(|t| t.name.as_str())
    }

    fn tenant(&self, name: &str) -> Option<&TenantExpected> {
        self.tenants.iter().find(|t| t.name == name)
    }

    /// Number of live keys of `table` for `tenant` (0 for an unknown tenant).
    pub fn row_count(&self, table: Table, tenant: &str) -> usize {
        self.tenant(tenant)
            .map_or(0, |t| t.rows[table.index()].len())
    }

    /// The final rows of `table` for `tenant`, decoded, sorted by primary key.
    pub fn rows(&self, table: Table, tenant: &str) -> Vec<ExpectedRow> {
        let Some(expected) = self.tenant(tenant) else {
            return Vec::new();
        };
        let mut keys: Vec<&PrimaryKey> = expected.rows[table.index()].keys().collect();
        keys.sort_unstable();
        keys.into_iter()
            .filter_map(|key| {
                let row = expected.rows[table.index()].get(key)?;
                Some(ExpectedRow {
                    tenant: expected.name.clone(),
                    key: key.to_json(table),
                    row: decode_row(table, row),
                })
            })
            .collect()
    }

    /// The final rows of `table` across all tenants, sorted by tenant name then key: the
    /// lines of `expected/<table>.jsonl`.
    pub fn table_rows(&self, table: Table) -> Vec<ExpectedRow> {
        let mut names: Vec<&str> = self.tenants().collect();
        names.sort_unstable();
        names
            .into_iter()
            .flat_map(|name| self.rows(table, name))
            .collect()
    }

    /// Counts per topic.
    pub fn topic_counts(&self) -> BTreeMap<String, TopicCounts> {
        self.tenants
            .iter()
            .flat_map(|t| t.topics.iter().cloned().zip(t.counts.iter().copied()))
            .collect()
    }

    /// Counts summed over all topics.
    pub fn totals(&self) -> TopicCounts {
        let mut totals = TopicCounts::default();
        for tenant in &self.tenants {
            for counts in &tenant.counts {
                totals.add(counts);
            }
        }
        totals
    }

    /// Everything `counts.json` holds.
    pub fn counts_report(&self) -> CountsReport {
        let mut final_rows: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for table in Table::ALL {
            let per_tenant = final_rows.entry(table.name().to_owned()).or_default();
            for tenant in &self.tenants {
                per_tenant.insert(tenant.name.clone(), tenant.rows[table.index()].len() as u64);
            }
        }
        CountsReport {
            totals: self.totals(),
            topics: self.topic_counts(),
            final_rows,
        }
    }
}

/// A row as a JSON object of decoded values (see the module docs). The connector flavour
/// does not matter: MySQL rows are stored already truncated to their millisecond columns.
pub(crate) fn decode_row(table: Table, row: &[Cell]) -> Value {
    let mut object = Map::new();
    for (column, cell) in table.columns().iter().zip(row.iter()) {
        let value = match (cell, column.ty) {
            (Cell::Null, _) => Value::Null,
            (Cell::Int(v), _) => Value::from(*v),
            (Cell::Text(v), _) => Value::from(v.as_ref()),
            (Cell::Label(v), _) => Value::from(*v),
            (Cell::Bool(v), _) => Value::from(*v),
            (Cell::Date(days), _) => Value::from(decode_date(*days)),
            (Cell::Micros(us), _) => Value::from(decode_timestamp_micros(*us)),
            (Cell::Decimal(unscaled), ColumnType::Decimal { scale, .. }) => {
                Value::from(format_decimal(i128::from(*unscaled), u32::from(scale)))
            }
            (Cell::Decimal(unscaled), _) => Value::from(format_decimal(i128::from(*unscaled), 0)),
        };
        object.insert(column.name.to_owned(), value);
    }
    Value::Object(object)
}

/// `io.debezium.time.Date` days since the epoch as `YYYY-MM-DD`.
pub fn decode_date(days: i32) -> String {
    DateTime::from_timestamp(i64::from(days) * 86_400, 0)
        .map_or_else(|| days.to_string(), |d| d.format("%Y-%m-%d").to_string())
}

/// Epoch microseconds as RFC 3339 UTC with six fraction digits,
/// e.g. `2026-01-01T00:00:00.123000Z`.
pub fn decode_timestamp_micros(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros).map_or_else(
        || micros.to_string(),
        |d| d.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn decodes_logical_values() {
        assert_eq!(decode_date(0), "1970-01-01");
        assert_eq!(decode_date(-1), "1969-12-31");
        assert_eq!(decode_date(20_454), "2026-01-01");
        assert_eq!(
            decode_timestamp_micros(1_767_225_600_123_000),
            "2026-01-01T00:00:00.123000Z"
        );
        let row = decode_row(
            Table::Orders,
            &[
                Cell::Int(1),
                Cell::Int(2),
                Cell::Label("paid"),
                Cell::Decimal(1250),
                Cell::Micros(0),
            ],
        );
        assert_eq!(
            row,
            json!({"id":1,"customer_id":2,"status":"paid","total":"12.50",
                   "ordered_at":"1970-01-01T00:00:00.000000Z"})
        );
    }

    #[test]
    fn counts_add_up_and_rows_sort_by_key() {
        let topics = |t: &str| Table::ALL.map(|table| format!("cdc.{t}.shop.{table}"));
        let mut state =
            ExpectedState::new([("b".to_owned(), topics("b")), ("a".to_owned(), topics("a"))]);
        let product = |id| -> Row {
            vec![
                Cell::Int(id),
                Cell::Text(format!("SKU-{id}").into()),
                Cell::Text("x".into()),
                Cell::Decimal(-5),
                Cell::Bool(true),
                Cell::Micros(0),
            ]
            .into_boxed_slice()
        };
        for id in [3, 1, 2] {
            state.put(0, Table::Products, PrimaryKey::id(id), product(id));
            state.record_event(0, Table::Products, Op::Create);
        }
        state.put(1, Table::Products, PrimaryKey::id(9), product(9));
        state.record_event(1, Table::Products, Op::Read);
        state.remove(0, Table::Products, PrimaryKey::id(2));
        state.record_event(0, Table::Products, Op::Delete);
        state.record_tombstone(0, Table::Products);
        state.record_duplicate(0, Table::Products);

        let rows = state.table_rows(Table::Products);
        let keys: Vec<(String, Value)> = rows
            .iter()
            .map(|r| (r.tenant.clone(), r.key.clone()))
            .collect();
        assert_eq!(
            keys,
            [
                ("a".to_owned(), json!({"id": 9})),
                ("b".to_owned(), json!({"id": 1})),
                ("b".to_owned(), json!({"id": 3})),
            ]
        );
        assert_eq!(rows[0].row["price"], "-0.05");
        let totals = state.totals();
        assert_eq!(
            totals.messages,
            totals.change_events + totals.tombstones + totals.duplicates
        );
        assert_eq!((totals.creates, totals.reads, totals.deletes), (3, 1, 1));
        let report = state.counts_report();
        assert_eq!(report.final_rows["products"]["b"], 2);
        assert_eq!(report.topics["cdc.b.shop.products"].messages, 6);
    }
}
