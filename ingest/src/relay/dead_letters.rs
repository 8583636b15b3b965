//! Rows StarRocks refuses for good (after a refused batch is split in halves down to single
//! rows) go to the dead-letter table `bronze.firn_dead_letters`, the table ingest uses for
//! records it cannot ingest, through the catalog's commit path. [`letters`] and [`batch`]
//! are pure; [`commit`] does I/O (Parquet files, the catalog).
//!
//! A relay dead letter has `error_kind` [`ERROR_KIND`], `source_table` `gold.<model>`, the
//! gold key as a JSON object in `key`, the refused JSON line in `value`, and `error_message`
//! `<hot table> label <label>: <reason>`. Its topic, partition and offset point at the
//! newest source event of the key inside the batch's offset ranges (the change that made
//! the row), or at the end of the batch's first range when the state no longer has one.
//!
//! Exactly once with the ledger: the commit id is derived from the hot table and the batch
//! label, the commit happens before the ledger entry is acknowledged, and a batch sent
//! again after a crash splits the same way, refuses the same rows, and finds its commit id
//! already in the table's history (nothing is written twice).

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, Int32Builder, Int64Builder, LargeBinaryBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use firn_catalog::history;
use firn_catalog::relay_ledger::OffsetRange;
use firn_catalog::tables::{DEAD_LETTER_TABLE, TableName, Tier};
use firn_catalog::{Catalog, CommitRequest, DataFileSink, Operation};
use serde_json::{Map, Value};

use crate::relay::RelayError;
use crate::relay::shape::RelayModel;
use crate::relay::state::{GoldKey, KeyValue, ModelState};

/// `error_kind` of the relay's dead letters.
pub const ERROR_KIND: &str = "relay_refused";

/// A row StarRocks refused, as the load returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The (sub-)label of the single-row load that was refused.
    pub label: String,
    /// The JSON line, without its newline.
    pub row: Vec<u8>,
    pub reason: String,
}

/// One row of the dead-letter table.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayDeadLetter {
    pub tenant: Option<String>,
    /// `gold.<model>`.
    pub source_table: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The gold key as a JSON object.
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub message: String,
}

/// The dead letters of a batch's refused rows (see the module docs for the columns).
pub fn letters(
    model: &RelayModel,
    state: &ModelState,
    hot_table: &str,
    ranges: &[OffsetRange],
    refused: &[Refused],
) -> Vec<RelayDeadLetter> {
    refused
        .iter()
        .map(|refused| {
            let row: Option<Map<String, Value>> = serde_json::from_slice(&refused.row).ok();
            let key: Option<Map<String, Value>> = row.as_ref().map(|row| {
                model
                    .key
                    .iter()
                    .map(|name| (name.clone(), row.get(name).cloned().unwrap_or(Value::Null)))
                    .collect()
            });
            // In the model's key order (a JSON object's keys are sorted).
            let gold_key: Option<GoldKey> = key.as_ref().map(|key| {
                model
                    .key
                    .iter()
                    .map(|name| match &key[name] {
                        Value::Null => KeyValue::Null,
                        Value::Number(n) if n.is_i64() => KeyValue::Int(n.as_i64().unwrap_or(0)),
                        Value::String(s) => KeyValue::Text(s.clone()),
                        other => KeyValue::Text(other.to_string()),
                    })
                    .collect()
            });
            let (topic, partition, offset) = gold_key
                .and_then(|key| newest_event_in(model, state, &key, ranges))
                .or_else(|| {
                    ranges
                        .first()
                        .map(|r| (r.topic.clone(), r.partition, r.last))
                })
                .unwrap_or_default();
            RelayDeadLetter {
                tenant: row
                    .as_ref()
                    .and_then(|row| row.get(crate::relay::TENANT_COLUMN))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                source_table: format!("gold.{}", model.name),
                topic,
                partition,
                offset,
                key: key.map(|key| Value::Object(key).to_string().into_bytes()),
                value: refused.row.clone(),
                message: format!("{hot_table} label {}: {}", refused.label, refused.reason),
            }
        })
        .collect()
}

/// The (topic, partition, offset) of the newest current source row of `key` that lies in
/// `ranges`.
fn newest_event_in(
    model: &RelayModel,
    state: &ModelState,
    key: &GoldKey,
    ranges: &[OffsetRange],
) -> Option<(String, i32, i64)> {
    let keys = std::collections::BTreeSet::from([key.clone()]);
    model
        .inputs
        .iter()
        .flat_map(|input| state.rows_for(&input.table, &keys))
        .filter(|row| {
            ranges.iter().any(|r| {
                r.topic == row.topic
                    && r.partition == row.partition
                    && (r.first..=r.last).contains(&row.offset)
            })
        })
        .max_by_key(|row| (row.source_ts_micros, row.offset))
        .map(|row| (row.topic.clone(), row.partition, row.offset))
}

/// The dead letters as a record batch of the dead-letter table's `schema` (columns matched
/// by name, so the table's Arrow types decide the builders).
pub fn batch(
    schema: &SchemaRef,
    letters: &[RelayDeadLetter],
    ingested_at_micros: i64,
) -> Result<RecordBatch, RelayError> {
    let strings = |values: &mut dyn Iterator<Item = Option<String>>| {
        let mut builder = StringBuilder::new();
        for value in values {
            builder.append_option(value);
        }
        Arc::new(builder.finish()) as ArrayRef
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column: ArrayRef = match (field.name().as_str(), field.data_type()) {
            ("tenant", _) => strings(&mut letters.iter().map(|l| l.tenant.clone())),
            ("source_table", _) => {
                strings(&mut letters.iter().map(|l| Some(l.source_table.clone())))
            }
            ("topic", _) => strings(&mut letters.iter().map(|l| Some(l.topic.clone()))),
            ("partition", _) => {
                let mut builder = Int32Builder::new();
                letters
                    .iter()
                    .for_each(|l| builder.append_value(l.partition));
                Arc::new(builder.finish())
            }
            ("offset", _) => {
                let mut builder = Int64Builder::new();
                letters.iter().for_each(|l| builder.append_value(l.offset));
                Arc::new(builder.finish())
            }
            ("key" | "value", data_type) => {
                let values: Vec<Option<&[u8]>> = letters
                    .iter()
                    .map(|l| match field.name().as_str() {
                        "key" => l.key.as_deref(),
                        _ => Some(l.value.as_slice()),
                    })
                    .collect();
                match data_type {
                    DataType::LargeBinary => {
                        let mut builder = LargeBinaryBuilder::new();
                        values.iter().for_each(|v| builder.append_option(*v));
                        Arc::new(builder.finish())
                    }
                    _ => {
                        let mut builder = BinaryBuilder::new();
                        values.iter().for_each(|v| builder.append_option(*v));
                        Arc::new(builder.finish())
                    }
                }
            }
            ("headers", _) => strings(&mut letters.iter().map(|_| None)),
            ("error_kind", _) => strings(&mut letters.iter().map(|_| Some(ERROR_KIND.into()))),
            ("error_message", _) => strings(&mut letters.iter().map(|l| Some(l.message.clone()))),
            ("ingested_at", DataType::Timestamp(TimeUnit::Microsecond, zone)) => {
                let mut builder =
                    TimestampMicrosecondBuilder::new().with_timezone_opt(zone.clone());
                letters
                    .iter()
                    .for_each(|_| builder.append_value(ingested_at_micros));
                Arc::new(builder.finish())
            }
            (name, data_type) => {
                return Err(RelayError::Shape(format!(
                    "the dead-letter table has a column `{name}` ({data_type}) the relay does \
                     not know"
                )));
            }
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|err| RelayError::Shape(format!("build the dead-letter batch: {err}")))
}

/// The commit id of a batch's dead letters.
pub fn commit_id(hot_table: &str, label: &str) -> String {
    format!("firn-relay:{hot_table}:{label}")
}

/// Appends a batch's dead letters to `bronze.firn_dead_letters` unless a previous attempt
/// already did (same commit id). Returns whether this call wrote them.
pub async fn commit(
    catalog: &Catalog,
    hot_table: &str,
    label: &str,
    letters: &[RelayDeadLetter],
    target_file_size: u64,
) -> Result<bool, RelayError> {
    let name = TableName::new(Tier::Bronze, DEAD_LETTER_TABLE)?;
    let table = catalog.load_table(&name).await?;
    let id = commit_id(hot_table, label);
    if letters.is_empty() || history::find_commit(table.metadata(), &id).is_some() {
        return Ok(false);
    }
    let schema = firn_catalog::writer::arrow_schema_for(&table)?;
    let batch = batch(&schema, letters, chrono::Utc::now().timestamp_micros())?;
    let mut sink = DataFileSink::new(&table, target_file_size).await?;
    sink.write(batch).await?;
    let files = sink.finish().await?;
    let request = CommitRequest::new(Operation::Append { files }).with_commit_id(id);
    let outcome = catalog.commit(&name, request).await?;
    Ok(matches!(
        outcome.status,
        firn_catalog::CommitStatus::Committed
            | firn_catalog::CommitStatus::CommittedResolvedFromHistory
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debezium::{Cell, CellValue, ChangeEvent, ColumnType, Op};
    use crate::relay::state::{Change, InputSpec};

    fn model() -> RelayModel {
        RelayModel {
            name: "order_facts".into(),
            sql: String::new(),
            key: vec!["tenant".into(), "order_id".into()],
            inputs: vec![InputSpec {
                table: "orders".into(),
                primary_key: vec!["id".into()],
                gold_key: vec!["tenant".into(), "id".into()],
            }],
        }
    }

    fn order(state: &mut ModelState, id: i64, offset: i64) {
        let change = Change {
            tenant: "acme".into(),
            event: ChangeEvent {
                op: Op::Create,
                source_ts_micros: Some(offset),
                source_pos: Some(format!("{offset:04}")),
                row: vec![Cell {
                    name: "id".into(),
                    column_type: ColumnType::Long,
                    typed: true,
                    value: CellValue::Long(id),
                }],
                key: Vec::new(),
            },
            topic: "cdc.acme.shop.orders".into(),
            partition: 1,
            offset,
        };
        state.apply("orders", &change).unwrap();
    }

    #[test]
    fn a_refused_row_points_at_the_newest_event_of_its_key_in_the_batch() {
        let model = model();
        let mut state = ModelState::new(model.inputs.clone());
        order(&mut state, 5, 10);
        order(&mut state, 6, 11);
        let ranges = [OffsetRange {
            topic: "cdc.acme.shop.orders".into(),
            partition: 1,
            first: 10,
            last: 11,
        }];
        let refused = [
            Refused {
                label: "l-a".into(),
                row: br#"{"tenant":"acme","order_id":6,"status":null,"__op":0}"#.to_vec(),
                reason: "null in status".into(),
            },
            Refused {
                label: "l-b".into(),
                row: br#"{"tenant":"acme","order_id":99,"__op":1}"#.to_vec(),
                reason: "refused".into(),
            },
        ];
        let letters = letters(&model, &state, "firn_hot.order_facts", &ranges, &refused);
        assert_eq!(letters[0].tenant.as_deref(), Some("acme"));
        assert_eq!(letters[0].source_table, "gold.order_facts");
        assert_eq!(
            (
                letters[0].topic.as_str(),
                letters[0].partition,
                letters[0].offset
            ),
            ("cdc.acme.shop.orders", 1, 11)
        );
        assert_eq!(
            letters[0].key.as_deref(),
            Some(br#"{"order_id":6,"tenant":"acme"}"#.as_slice())
        );
        assert_eq!(
            letters[0].message,
            "firn_hot.order_facts label l-a: null in status"
        );
        // A key the state no longer has: the end of the batch's first range.
        assert_eq!(letters[1].offset, 11);
    }
}
