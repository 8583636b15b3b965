//! Primary Key table model of the fake StarRocks: schema, typed values, and the apply
//! semantics of a committed load (upsert, `__op` delete, `merge_condition`, partial update).
//! Pure: no I/O, no clocks.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Column types the fake understands (StarRocks names, case-insensitive on input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    #[serde(
        alias = "tinyint",
        alias = "smallint",
        alias = "int",
        alias = "integer"
    )]
    Int,
    #[serde(alias = "largeint")]
    Bigint,
    #[serde(alias = "float", alias = "decimal")]
    Double,
    #[serde(alias = "bool")]
    Boolean,
    #[serde(alias = "varchar", alias = "char", alias = "date", alias = "datetime")]
    String,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    #[serde(default = "default_true")]
    pub nullable: bool,
}

fn default_true() -> bool {
    true
}

/// Ordered columns plus primary-key column names (key columns are implicitly NOT NULL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSchema {
    pub columns: Vec<Column>,
    pub key: Vec<String>,
}

impl TableSchema {
    /// Checks that every key column exists.
    pub fn validate(&self) -> Result<(), String> {
        if self.key.is_empty() {
            return Err("a Primary Key table needs at least one key column".into());
        }
        for k in &self.key {
            if self.index_of(k).is_none() {
                return Err(format!("key column {k} is not a column"));
            }
        }
        Ok(())
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }

    fn key_indices(&self) -> Vec<usize> {
        self.key.iter().filter_map(|k| self.index_of(k)).collect()
    }

    pub fn is_key(&self, index: usize) -> bool {
        self.key_indices().contains(&index)
    }
}

/// Converts a raw value (JSON value, or CSV text as a JSON string) to a column's type.
/// `Ok(Value::Null)` for null input; `Err` for a conversion failure.
pub fn convert(value: &Value, ty: ColumnType) -> Result<Value, String> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let fail = || format!("cannot convert {value} to {ty:?}");
    match ty {
        ColumnType::Int | ColumnType::Bigint => match value {
            Value::Number(n) if n.is_i64() => Ok(value.clone()),
            Value::String(s) => s.trim().parse::<i64>().map(Value::from).map_err(|_| fail()),
            Value::Bool(b) => Ok(Value::from(*b as i64)),
            _ => Err(fail()),
        },
        ColumnType::Double => match value {
            Value::Number(n) => n.as_f64().map(Value::from).ok_or_else(fail),
            Value::String(s) => s.trim().parse::<f64>().map(Value::from).map_err(|_| fail()),
            _ => Err(fail()),
        },
        ColumnType::Boolean => match value {
            Value::Bool(_) => Ok(value.clone()),
            Value::Number(n) => Ok(Value::Bool(n.as_i64().unwrap_or(0) != 0)),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Value::Bool(true)),
                "false" | "0" => Ok(Value::Bool(false)),
                _ => Err(fail()),
            },
            _ => Err(fail()),
        },
        ColumnType::String => match value {
            Value::String(_) => Ok(value.clone()),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            other => Ok(Value::String(other.to_string())),
        },
        ColumnType::Json => match value {
            Value::String(s) => Ok(serde_json::from_str(s).unwrap_or_else(|_| value.clone())),
            other => Ok(other.clone()),
        },
    }
}

/// Total order on stored values: null < bool < number < string < other; numbers numerically.
pub fn cmp_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            _ => 4,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&y.as_f64().unwrap_or(0.0)),
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => rank(a)
            .cmp(&rank(b))
            .then_with(|| a.to_string().cmp(&b.to_string())),
    }
}

/// A primary-key value (key columns in key order), ordered by [`cmp_values`].
#[derive(Debug, Clone, PartialEq)]
pub struct Key(pub Vec<Value>);

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.0.iter().zip(&other.0) {
            let c = cmp_values(a, b);
            if c != Ordering::Equal {
                return c;
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

/// One row operation of a load, values aligned with the schema's columns;
/// `None` = column not provided by the load (kept on partial update, NULL otherwise).
#[derive(Debug, Clone, PartialEq)]
pub enum RowOp {
    Upsert(Vec<Option<Value>>),
    Delete(Vec<Option<Value>>),
}

/// How a load's rows are applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplyMode {
    pub merge_condition: Option<String>,
    pub partial_update: bool,
}

/// Counts of what [`Table::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub upserted: u64,
    pub deleted: u64,
    /// Upserts skipped because `merge_condition` compared lower than the stored row.
    pub skipped_by_condition: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub schema: TableSchema,
    pub rows: BTreeMap<Key, Vec<Value>>,
    /// Tablet version count (one per successful load; compaction lowers it).
    pub versions: u64,
}

impl Table {
    pub fn new(schema: TableSchema) -> Table {
        Table {
            schema,
            rows: BTreeMap::new(),
            versions: 1,
        }
    }

    pub fn key_of(&self, values: &[Option<Value>]) -> Key {
        Key(self
            .schema
            .key_indices()
            .into_iter()
            .map(|i| values.get(i).cloned().flatten().unwrap_or(Value::Null))
            .collect())
    }

    /// Applies operations in order (last one wins for a repeated key).
    pub fn apply(&mut self, ops: &[RowOp], mode: &ApplyMode) -> ApplyStats {
        let merge_index = mode
            .merge_condition
            .as_deref()
            .and_then(|c| self.schema.index_of(c));
        let mut stats = ApplyStats::default();
        for op in ops {
            match op {
                RowOp::Delete(values) => {
                    // Deletes are not conditional (StarRocks docs).
                    let key = self.key_of(values);
                    self.rows.remove(&key);
                    stats.deleted += 1;
                }
                RowOp::Upsert(values) => {
                    let key = self.key_of(values);
                    let existing = self.rows.get(&key);
                    if let (Some(i), Some(old)) = (merge_index, existing) {
                        let new = values[i].clone().unwrap_or(Value::Null);
                        if cmp_values(&new, &old[i]) == Ordering::Less {
                            stats.skipped_by_condition += 1;
                            continue;
                        }
                    }
                    let row: Vec<Value> = values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| match (v, existing, mode.partial_update) {
                            (Some(v), _, _) => v.clone(),
                            (None, Some(old), true) => old[i].clone(),
                            (None, _, _) => Value::Null,
                        })
                        .collect();
                    self.rows.insert(key, row);
                    stats.upserted += 1;
                }
            }
        }
        stats
    }

    /// Rows as JSON objects (column name → value), in primary-key order.
    pub fn rows_json(&self) -> Vec<Value> {
        self.rows
            .values()
            .map(|row| {
                let mut map = Map::new();
                for (c, v) in self.schema.columns.iter().zip(row) {
                    map.insert(c.name.clone(), v.clone());
                }
                Value::Object(map)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> Table {
        Table::new(
            serde_json::from_value(json!({
                "columns": [
                    {"name": "id", "type": "bigint", "nullable": false},
                    {"name": "name", "type": "varchar"},
                    {"name": "ver", "type": "bigint"}
                ],
                "key": ["id"]
            }))
            .unwrap(),
        )
    }

    fn up(id: i64, name: &str, ver: i64) -> RowOp {
        RowOp::Upsert(vec![Some(json!(id)), Some(json!(name)), Some(json!(ver))])
    }

    #[test]
    fn upsert_delete_last_wins() {
        let mut t = table();
        let ops = vec![
            up(1, "a", 1),
            up(2, "b", 1),
            up(1, "c", 2),
            RowOp::Delete(vec![Some(json!(2)), None, None]),
        ];
        let stats = t.apply(&ops, &ApplyMode::default());
        assert_eq!(stats.upserted, 3);
        assert_eq!(t.rows_json(), vec![json!({"id": 1, "name": "c", "ver": 2})]);
    }

    #[test]
    fn merge_condition_keeps_newer() {
        let mut t = table();
        let mode = ApplyMode {
            merge_condition: Some("ver".into()),
            partial_update: false,
        };
        t.apply(&[up(1, "new", 5)], &mode);
        let stats = t.apply(&[up(1, "old", 3), up(2, "x", 0)], &mode);
        assert_eq!(stats.skipped_by_condition, 1);
        t.apply(&[up(2, "y", 0)], &mode); // equal: applied
        assert_eq!(
            t.rows_json(),
            vec![
                json!({"id": 1, "name": "new", "ver": 5}),
                json!({"id": 2, "name": "y", "ver": 0})
            ]
        );
    }

    #[test]
    fn partial_update_keeps_unlisted() {
        let mut t = table();
        t.apply(&[up(1, "a", 1)], &ApplyMode::default());
        let mode = ApplyMode {
            merge_condition: None,
            partial_update: true,
        };
        t.apply(
            &[RowOp::Upsert(vec![Some(json!(1)), None, Some(json!(9))])],
            &mode,
        );
        assert_eq!(t.rows_json(), vec![json!({"id": 1, "name": "a", "ver": 9})]);
    }

    #[test]
    fn conversion() {
        assert_eq!(convert(&json!("12"), ColumnType::Bigint), Ok(json!(12)));
        assert!(convert(&json!("x"), ColumnType::Int).is_err());
        assert_eq!(convert(&json!(3), ColumnType::String), Ok(json!("3")));
        assert_eq!(cmp_values(&json!(10), &json!(9)), Ordering::Greater);
    }
}
