//! Shapes gold rows for the hot table: runs the model's own SQL (the file the batch gold
//! uses) with DataFusion over in-memory `silver.<input>` tables that hold only the rows of
//! the gold keys a batch touched, and writes the result as Stream Load JSON lines. No I/O
//! (DataFusion runs in memory), no clock.
//!
//! The in-memory inputs have silver's layout: `tenant`, the source columns (typed and
//! coerced exactly as bronze does, through [`crate::bronze::build_batch`]), then
//! `_firn_source_ts` and `_firn_source_pos`. Each output row gets `relay_version` (the key's
//! relay version, the `merge_condition` column), `relay_label` and `__op: 0`; every touched
//! key that produced no row gets a delete (`__op: 1`, key columns only).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, TimeUnit};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::TableReference;
use firn_catalog::tables::bronze_columns::{SOURCE_POS, SOURCE_TS, TENANT};
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};

use crate::bronze::{build_batch, iceberg_type};
use crate::generator::format_decimal;
use crate::relay::RelayError;
use crate::relay::state::{GoldKey, InputSpec, KeyValue, ModelState};

/// The hot-table column holding the relay version (the `merge_condition` column).
pub const RELAY_VERSION: &str = "relay_version";
/// The hot-table column holding the label of the load that wrote the row.
pub const RELAY_LABEL: &str = "relay_label";

/// A relayed gold model: its SQL, its key, and how each input maps to the key.
#[derive(Debug, Clone)]
pub struct RelayModel {
    pub name: String,
    pub sql: String,
    pub key: Vec<String>,
    pub inputs: Vec<InputSpec>,
}

/// The body of one load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shaped {
    /// JSON lines, one row each, `\n`-terminated.
    pub body: Vec<u8>,
    pub upserts: usize,
    pub deletes: usize,
    /// Source rows whose values did not fit their column (bronze dead-letters them too).
    pub refused_rows: usize,
}

impl Shaped {
    pub fn rows(&self) -> usize {
        self.upserts + self.deletes
    }
}

/// Why a batch cannot be shaped yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// No event of this input has been seen, so its columns are unknown.
    UnseenInput(String),
    /// These columns (`table.column`) have only types inferred from schemaless JSON so
    /// far (a decimal arrives as text); a typed event decides (see [`shape`]).
    InferredTypes(Vec<String>),
    /// Shaping was allowed with inferred types, and the model's SQL failed on them (e.g.
    /// `CAST(ordered_at AS DATE)` of an epoch integer); a typed event may still fix it.
    FailsWithInferredTypes { columns: Vec<String>, error: String },
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::UnseenInput(table) => write!(f, "input `{table}` has no events yet"),
            NotReady::InferredTypes(columns) => write!(
                f,
                "columns {} have only types inferred from schemaless JSON",
                columns.join(", ")
            ),
            NotReady::FailsWithInferredTypes { columns, error } => write!(
                f,
                "the model fails on the types inferred from schemaless JSON for {}: {error}",
                columns.join(", ")
            ),
        }
    }
}

impl NotReady {
    /// The inputs (source tables) whose events can make the batch ready: the unseen input,
    /// or the tables of the columns typed only by inference.
    pub fn inputs(&self) -> BTreeSet<String> {
        let tables_of = |columns: &[String]| -> BTreeSet<String> {
            columns
                .iter()
                .map(|c| {
                    c.split_once('.')
                        .map_or(c.as_str(), |(table, _)| table)
                        .to_string()
                })
                .collect()
        };
        match self {
            NotReady::UnseenInput(table) => BTreeSet::from([table.clone()]),
            NotReady::InferredTypes(columns) => tables_of(columns),
            NotReady::FailsWithInferredTypes { columns, .. } => tables_of(columns),
        }
    }
}

/// Shapes the hot rows of `keys` from the current state. Unless `allow_inferred`, a state
/// where some column's type was only inferred from schemaless JSON is not shaped: with
/// sources that mix schemas and schemaless JSON, bronze types such a column from the typed
/// events (a decimal, not its base64 text; a timestamp, not an integer), so the relay waits
/// for one rather than compute with the wrong type. With `allow_inferred`, a model that
/// fails on inferred types is not ready either (rather than an error): the failure depends
/// on which events arrived first, and a typed event later decides the type.
pub async fn shape(
    model: &RelayModel,
    state: &ModelState,
    keys: &BTreeSet<GoldKey>,
    label: &str,
    allow_inferred: bool,
) -> Result<Result<Shaped, NotReady>, RelayError> {
    if let Some(unseen) = model
        .inputs
        .iter()
        .find(|input| state.columns(&input.table).is_empty())
    {
        return Ok(Err(NotReady::UnseenInput(unseen.table.clone())));
    }
    let inferred: Vec<String> = model
        .inputs
        .iter()
        .flat_map(|input| {
            state
                .columns(&input.table)
                .iter()
                .filter(|c| !c.typed)
                .map(move |c| format!("{}.{}", input.table, c.name))
        })
        .collect();
    if !allow_inferred && !inferred.is_empty() {
        return Ok(Err(NotReady::InferredTypes(inferred)));
    }
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    let default_catalog = ctx
        .state()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone();
    let catalog = ctx
        .catalog(&default_catalog)
        .ok_or_else(|| RelayError::Shape(format!("no default catalog `{default_catalog}`")))?;
    catalog
        .register_schema("silver", Arc::new(MemorySchemaProvider::new()))
        .map_err(shape_error)?;
    let mut refused_rows = 0;
    for input in &model.inputs {
        let (batch, refused) = input_batch(state, &input.table, keys)?;
        refused_rows += refused;
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(shape_error)?;
        ctx.register_table(
            TableReference::partial("silver", input.table.as_str()),
            Arc::new(table),
        )
        .map_err(shape_error)?;
    }
    let batches = match run_sql(&ctx, &model.sql).await {
        Ok(batches) => batches,
        Err(error) if !inferred.is_empty() => {
            return Ok(Err(NotReady::FailsWithInferredTypes {
                columns: inferred,
                error: error.to_string(),
            }));
        }
        Err(error) => return Err(shape_error(error)),
    };
    let mut shaped = rows_to_lines(model, state, keys, label, &batches)?;
    shaped.refused_rows = refused_rows;
    Ok(Ok(shaped))
}

async fn run_sql(
    ctx: &SessionContext,
    sql: &str,
) -> Result<Vec<RecordBatch>, datafusion::error::DataFusionError> {
    ctx.sql(sql).await?.collect().await
}

fn shape_error(err: impl std::fmt::Display) -> RelayError {
    RelayError::Shape(err.to_string())
}

/// The silver-shaped batch of `table` holding the rows of `keys`; also the count of rows
/// whose values did not fit the column types.
fn input_batch(
    state: &ModelState,
    table: &str,
    keys: &BTreeSet<GoldKey>,
) -> Result<(RecordBatch, usize), RelayError> {
    let mut fields =
        vec![NestedField::optional(1, TENANT, Type::Primitive(PrimitiveType::String)).into()];
    let mut id = 2;
    for column in state.columns(table) {
        fields.push(
            NestedField::optional(
                id,
                &column.name,
                Type::Primitive(iceberg_type(column.column_type)),
            )
            .into(),
        );
        id += 1;
    }
    fields.push(
        NestedField::optional(id, SOURCE_TS, Type::Primitive(PrimitiveType::Timestamptz)).into(),
    );
    fields.push(
        NestedField::optional(id + 1, SOURCE_POS, Type::Primitive(PrimitiveType::String)).into(),
    );
    let iceberg = Schema::builder()
        .with_schema_id(0)
        .with_fields(fields)
        .build()
        .map_err(shape_error)?;
    let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(&iceberg).map_err(shape_error)?);
    let rows = state.rows_for(table, keys);
    let (batch, refused) = build_batch(&arrow, &iceberg, &rows);
    for (index, reason) in &refused {
        tracing::warn!(table, row = index, %reason, "source row does not fit its column; left out");
    }
    // Silver calls the tenant `tenant`; field-id metadata is of no use in memory.
    let silver_fields: Vec<Field> = arrow
        .fields()
        .iter()
        .map(|field| {
            let name = if field.name() == TENANT {
                crate::relay::TENANT_COLUMN
            } else {
                field.name().as_str()
            };
            Field::new(name, field.data_type().clone(), true)
        })
        .collect();
    let batch = RecordBatch::try_new(
        Arc::new(ArrowSchema::new(silver_fields)),
        batch.columns().to_vec(),
    )
    .map_err(shape_error)?;
    Ok((batch, refused.len()))
}

/// Writes the model's result rows for `keys`, then deletes for the keys without a row.
fn rows_to_lines(
    model: &RelayModel,
    state: &ModelState,
    keys: &BTreeSet<GoldKey>,
    label: &str,
    batches: &[RecordBatch],
) -> Result<Shaped, RelayError> {
    let mut shaped = Shaped::default();
    let mut seen: BTreeSet<GoldKey> = BTreeSet::new();
    // Straight into the body: a row is a few hundred bytes, and formatting each value into
    // its own `String` first cost more than the model's SQL.
    let out = &mut shaped.body;
    for batch in batches {
        let schema = batch.schema();
        let key_columns: Vec<&ArrayRef> = model
            .key
            .iter()
            .map(|name| {
                schema.index_of(name).map(|i| batch.column(i)).map_err(|_| {
                    RelayError::Shape(format!(
                        "key column `{name}` is not an output column of {}",
                        model.name
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let names: Vec<Vec<u8>> = schema
            .fields()
            .iter()
            .map(|field| {
                let mut name = Vec::new();
                push_name(&mut name, field.name());
                name
            })
            .collect();
        for row in 0..batch.num_rows() {
            let key: GoldKey = key_columns
                .iter()
                .map(|array| key_value(array, row))
                .collect::<Result<_, _>>()?;
            if !keys.contains(&key) {
                continue;
            }
            let version = state.version(&key).unwrap_or(0);
            if !seen.insert(key) {
                continue;
            }
            out.push(b'{');
            for (index, name) in names.iter().enumerate() {
                out.extend_from_slice(name);
                push_value(out, batch.column(index), row)?;
                out.push(b',');
            }
            push_name(out, RELAY_VERSION);
            let _ = write!(out, "{version},");
            push_name(out, RELAY_LABEL);
            push_string(out, label);
            out.extend_from_slice(b",\"__op\":0}\n");
            shaped.upserts += 1;
        }
    }
    for key in keys.difference(&seen) {
        let mut row = serde_json::Map::new();
        for (name, value) in model.key.iter().zip(key) {
            row.insert(name.clone(), value.to_json());
        }
        row.insert("__op".into(), serde_json::Value::from(1));
        serde_json::to_writer(&mut *out, &row).map_err(shape_error)?;
        out.push(b'\n');
        shaped.deletes += 1;
    }
    Ok(shaped)
}

fn key_value(array: &ArrayRef, row: usize) -> Result<KeyValue, RelayError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int8Type, Int16Type, Int32Type, Int64Type};
    if array.is_null(row) {
        return Ok(KeyValue::Null);
    }
    Ok(match array.data_type() {
        DataType::Int8 => KeyValue::Int(i64::from(array.as_primitive::<Int8Type>().value(row))),
        DataType::Int16 => KeyValue::Int(i64::from(array.as_primitive::<Int16Type>().value(row))),
        DataType::Int32 => KeyValue::Int(i64::from(array.as_primitive::<Int32Type>().value(row))),
        DataType::Int64 => KeyValue::Int(array.as_primitive::<Int64Type>().value(row)),
        _ => KeyValue::Text(array_value_to_string(array, row).map_err(shape_error)?),
    })
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    push_string(out, name);
    out.push(b':');
}

fn push_string(out: &mut Vec<u8>, text: &str) {
    // serde_json escapes exactly as JSON requires; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// One value as StarRocks JSON loading reads it: numbers, strings, `DATE` as
/// `YYYY-MM-DD`, `DATETIME` as `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC), decimals as exact text.
pub fn push_value(out: &mut Vec<u8>, array: &ArrayRef, row: usize) -> Result<(), RelayError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    if array.is_null(row) {
        out.extend_from_slice(b"null");
        return Ok(());
    }
    match array.data_type() {
        DataType::Boolean => {
            let _ = write!(out, "{}", array.as_boolean().value(row));
        }
        DataType::Int8 => {
            let _ = write!(out, "{}", array.as_primitive::<Int8Type>().value(row));
        }
        DataType::Int16 => {
            let _ = write!(out, "{}", array.as_primitive::<Int16Type>().value(row));
        }
        DataType::Int32 => {
            let _ = write!(out, "{}", array.as_primitive::<Int32Type>().value(row));
        }
        DataType::Int64 => {
            let _ = write!(out, "{}", array.as_primitive::<Int64Type>().value(row));
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            out.extend_from_slice(
                array_value_to_string(array, row)
                    .map_err(shape_error)?
                    .as_bytes(),
            );
        }
        DataType::Float32 | DataType::Float64 => {
            let value = match array.data_type() {
                DataType::Float32 => f64::from(array.as_primitive::<Float32Type>().value(row)),
                _ => array.as_primitive::<Float64Type>().value(row),
            };
            if value.is_finite() {
                let _ = write!(out, "{value}");
            } else {
                out.extend_from_slice(b"null");
            }
        }
        DataType::Decimal128(_, scale) => {
            let value = array.as_primitive::<Decimal128Type>().value(row);
            push_string(out, &format_decimal(value, (*scale).max(0) as u32));
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|epoch| {
                    epoch.checked_add_signed(chrono::TimeDelta::days(i64::from(days)))
                })
                .ok_or_else(|| RelayError::Shape(format!("date {days} is out of range")))?;
            let _ = write!(out, "\"{}\"", date.format("%Y-%m-%d"));
        }
        DataType::Timestamp(unit, _) => {
            let raw = match unit {
                TimeUnit::Second => {
                    array.as_primitive::<TimestampSecondType>().value(row) * 1_000_000
                }
                TimeUnit::Millisecond => {
                    array.as_primitive::<TimestampMillisecondType>().value(row) * 1000
                }
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => {
                    array.as_primitive::<TimestampNanosecondType>().value(row) / 1000
                }
            };
            push_string(out, &datetime_text(raw)?);
        }
        DataType::Utf8 => push_string(out, array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => push_string(out, array.as_string::<i64>().value(row)),
        DataType::Utf8View => push_string(out, array.as_string_view().value(row)),
        _ => push_string(
            out,
            &array_value_to_string(array, row).map_err(shape_error)?,
        ),
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS`, with `.ffffff` when there are microseconds (UTC).
pub fn datetime_text(micros: i64) -> Result<String, RelayError> {
    let time = chrono::DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| RelayError::Shape(format!("timestamp {micros} µs is out of range")))?
        .naive_utc();
    Ok(if micros.rem_euclid(1_000_000) == 0 {
        time.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        time.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
    })
}

/// Every row of `batches` as JSON objects in the hot table's representation (what
/// [`shape`] sends), for comparing a gold Iceberg table with the hot table.
pub fn batches_to_json(
    batches: &[RecordBatch],
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, RelayError> {
    let mut rows = Vec::new();
    let mut text = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            text.clear();
            text.push(b'{');
            for (index, field) in batch.schema().fields().iter().enumerate() {
                if index > 0 {
                    text.push(b',');
                }
                push_name(&mut text, field.name());
                push_value(&mut text, batch.column(index), row)?;
            }
            text.push(b'}');
            rows.push(serde_json::from_slice(&text).map_err(shape_error)?);
        }
    }
    Ok(rows)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::debezium::{Cell, CellValue, ChangeEvent, ColumnType, Op};
    use crate::relay::state::Change;

    const SQL: &str = include_str!("../../../sql/gold/order_facts.sql");

    #[test]
    fn a_batch_not_ready_waits_for_the_inputs_that_can_make_it_ready() {
        let unseen = NotReady::UnseenInput("order_items".into());
        assert_eq!(unseen.inputs(), BTreeSet::from(["order_items".to_string()]));
        let inferred = NotReady::FailsWithInferredTypes {
            columns: vec!["orders.ordered_at".into(), "orders.total".into()],
            error: "cast".into(),
        };
        assert_eq!(inferred.inputs(), BTreeSet::from(["orders".to_string()]));
        let both = NotReady::InferredTypes(vec!["orders.total".into(), "order_items.price".into()]);
        assert_eq!(
            both.inputs(),
            BTreeSet::from(["order_items".to_string(), "orders".to_string()])
        );
    }

    /// The demo's `order_facts` model over `order_items` and `orders`.
    pub(crate) fn model() -> RelayModel {
        RelayModel {
            name: "order_facts".into(),
            sql: SQL.into(),
            key: vec!["tenant".into(), "order_id".into()],
            inputs: vec![
                InputSpec {
                    table: "order_items".into(),
                    primary_key: vec!["order_id".into(), "line_no".into()],
                    gold_key: vec!["tenant".into(), "order_id".into()],
                },
                InputSpec {
                    table: "orders".into(),
                    primary_key: vec!["id".into()],
                    gold_key: vec!["tenant".into(), "id".into()],
                },
            ],
        }
    }

    fn cell(name: &str, column_type: ColumnType, value: CellValue) -> Cell {
        Cell {
            name: name.into(),
            column_type,
            typed: true,
            value,
        }
    }

    fn apply(state: &mut ModelState, table: &str, op: Op, offset: i64, row: Vec<Cell>) {
        let change = Change {
            tenant: "acme".into(),
            event: ChangeEvent {
                op,
                source_ts_micros: Some(1_000_000 + offset),
                source_pos: Some(format!("{offset:08}")),
                row,
                key: Vec::new(),
            },
            topic: format!("cdc.acme.shop.{table}"),
            partition: 0,
            offset,
        };
        state.apply(table, &change).unwrap();
    }

    fn order(id: i64) -> Vec<Cell> {
        let decimal = ColumnType::Decimal {
            precision: 12,
            scale: 2,
        };
        vec![
            cell("id", ColumnType::Long, CellValue::Long(id)),
            cell("customer_id", ColumnType::Long, CellValue::Long(7)),
            cell(
                "status",
                ColumnType::String,
                CellValue::String("paid".into()),
            ),
            cell(
                "ordered_at",
                ColumnType::Timestamp,
                CellValue::Micros(1_700_000_000_000_000),
            ),
            cell("total", decimal, CellValue::Decimal(1250)),
        ]
    }

    fn item(order: i64, line: i64) -> Vec<Cell> {
        let decimal = ColumnType::Decimal {
            precision: 10,
            scale: 2,
        };
        vec![
            cell("order_id", ColumnType::Long, CellValue::Long(order)),
            cell("line_no", ColumnType::Int, CellValue::Int(line as i32)),
            cell("quantity", ColumnType::Int, CellValue::Int(2)),
            cell("unit_price", decimal, CellValue::Decimal(325)),
        ]
    }

    fn key(id: i64) -> GoldKey {
        vec![KeyValue::Text("acme".into()), KeyValue::Int(id)]
    }

    fn lines(shaped: &Shaped) -> Vec<serde_json::Value> {
        String::from_utf8(shaped.body.clone())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn the_gold_sql_shapes_touched_keys_and_deletes_vanished_ones() {
        let model = model();
        let mut state = ModelState::new(model.inputs.clone());
        apply(&mut state, "orders", Op::Create, 1, order(1));
        apply(&mut state, "orders", Op::Create, 2, order(2));
        apply(&mut state, "order_items", Op::Create, 3, item(1, 1));
        apply(&mut state, "order_items", Op::Create, 4, item(1, 2));
        // Only key 1 and a key that has no rows are asked for.
        let keys = BTreeSet::from([key(1), key(3)]);
        let shaped = shape(&model, &state, &keys, "lbl", false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((shaped.upserts, shaped.deletes), (1, 1));
        let rows = lines(&shaped);
        let upsert = &rows[0];
        assert_eq!(upsert["tenant"], "acme");
        assert_eq!(upsert["order_id"], 1);
        assert_eq!(upsert["item_count"], 2);
        assert_eq!(upsert["units"], 4);
        assert_eq!(upsert["items_total"], "13.00");
        assert_eq!(upsert["order_total"], "12.50");
        assert_eq!(upsert["ordered_at"], "2023-11-14 22:13:20");
        assert_eq!(upsert["order_date"], "2023-11-14");
        assert_eq!(upsert["source_version"], 1_000_004);
        // Newest source time 1,000 ms, three changes applied to the key.
        assert_eq!(upsert["relay_version"], 1_000_000_003_i64);
        assert_eq!(upsert["relay_label"], "lbl");
        assert_eq!(upsert["__op"], 0);
        assert_eq!(
            rows[1],
            serde_json::json!({"tenant": "acme", "order_id": 3, "__op": 1})
        );
    }

    #[tokio::test]
    async fn an_input_never_seen_is_not_ready() {
        let model = model();
        let mut state = ModelState::new(model.inputs.clone());
        apply(&mut state, "orders", Op::Create, 1, order(1));
        let outcome = shape(&model, &state, &BTreeSet::from([key(1)]), "l", false)
            .await
            .unwrap();
        assert_eq!(outcome, Err(NotReady::UnseenInput("order_items".into())));
    }

    #[tokio::test]
    async fn a_decimal_seen_only_as_schemaless_text_waits_for_a_typed_event() {
        let model = model();
        let mut state = ModelState::new(model.inputs.clone());
        apply(&mut state, "orders", Op::Create, 1, order(1));
        let mut line = item(1, 1);
        line[3] = Cell {
            name: "unit_price".into(),
            column_type: ColumnType::String,
            typed: false,
            value: CellValue::String("AUU=".into()),
        };
        apply(&mut state, "order_items", Op::Create, 2, line);
        let keys = BTreeSet::from([key(1)]);
        let outcome = shape(&model, &state, &keys, "l", false).await.unwrap();
        assert_eq!(
            outcome,
            Err(NotReady::InferredTypes(vec![
                "order_items.unit_price".into()
            ]))
        );
        // A typed event of the column decides its type; the schemaless value is coerced.
        apply(&mut state, "order_items", Op::Create, 3, item(1, 2));
        let shaped = shape(&model, &state, &keys, "l", false)
            .await
            .unwrap()
            .unwrap();
        let rows = lines(&shaped);
        assert_eq!(rows[0]["items_total"], "13.00", "{rows:?}");
    }

    #[test]
    fn datetimes_are_written_as_starrocks_reads_them() {
        assert_eq!(datetime_text(0).unwrap(), "1970-01-01 00:00:00");
        assert_eq!(
            datetime_text(1_500_000).unwrap(),
            "1970-01-01 00:00:01.500000"
        );
        assert_eq!(datetime_text(-1).unwrap(), "1969-12-31 23:59:59.999999");
    }
}
