//! Turns decoded change events into bronze rows: plans the schema changes a batch needs
//! and builds the Arrow record batch in the table's schema. Pure: values in, values out.
//!
//! Column types: a column is created with the type of the first schema-typed value seen in
//! the batch (inferred types only when no typed value exists). Later values are coerced to
//! the column's type when that loses nothing; a typed value of a wider compatible type
//! widens the column (int→long, float→double, decimal precision); anything else is
//! rejected with a reason and goes to the dead-letter table.
//!
//! Iceberg `time` columns (Debezium `Time`, `MicroTime`, `NanoTime`) are Arrow
//! `Time64(Microsecond)`; they take only typed time values, because a schemaless integer
//! since midnight could be ms, µs or ns.
//!
//! Schemaless integers written to a timestamp column have no unit. They are read as
//! milliseconds below 10^14, microseconds below 10^17 and nanoseconds above: epoch
//! milliseconds reach 10^14 only in the year 5138, microseconds pass it in 1973.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int32Builder, Int64Builder, LargeBinaryBuilder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use firn_catalog::SchemaChange;
use firn_catalog::tables::bronze_columns;
use iceberg::spec::{PrimitiveType, Schema, Type};

use crate::debezium::{Cell, CellValue, ColumnType, Op};

/// Prefix of firn's own bronze columns; source columns may not use it.
pub const METADATA_PREFIX: &str = "_firn_";

/// One change event with its Kafka coordinates and tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct BronzeRow {
    pub tenant: String,
    pub op: Op,
    pub source_ts_micros: Option<i64>,
    pub source_pos: Option<String>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub ingested_at_micros: i64,
    pub cells: Vec<Cell>,
}

/// The Iceberg type for a decoded column type.
pub fn iceberg_type(column_type: ColumnType) -> PrimitiveType {
    match column_type {
        ColumnType::Boolean => PrimitiveType::Boolean,
        ColumnType::Int => PrimitiveType::Int,
        ColumnType::Long => PrimitiveType::Long,
        ColumnType::Float => PrimitiveType::Float,
        ColumnType::Double => PrimitiveType::Double,
        ColumnType::String => PrimitiveType::String,
        ColumnType::Binary => PrimitiveType::Binary,
        ColumnType::Date => PrimitiveType::Date,
        ColumnType::Time => PrimitiveType::Time,
        ColumnType::Timestamp => PrimitiveType::Timestamp,
        ColumnType::Timestamptz => PrimitiveType::Timestamptz,
        ColumnType::Decimal { precision, scale } => PrimitiveType::Decimal {
            precision: u32::from(precision),
            scale: scale.max(0) as u32,
        },
    }
}

/// The primitive column types of a table schema, by name.
pub fn column_types(schema: &Schema) -> HashMap<String, PrimitiveType> {
    schema
        .as_struct()
        .fields()
        .iter()
        .filter_map(|f| match f.field_type.as_ref() {
            Type::Primitive(p) => Some((f.name.clone(), p.clone())),
            _ => None,
        })
        .collect()
}

/// Whether [`plan_schema_changes`] or [`build_batch`] might refuse a row with these cells,
/// judged against `types` (the table's columns as last seen, plus the first type seen of
/// every new column, which this records). False means the row fits unless the table
/// changes in between, so its raw record need not be kept for a dead letter.
pub fn may_be_refused(types: &mut HashMap<String, PrimitiveType>, cells: &[Cell]) -> bool {
    let mut refusable = false;
    for cell in cells {
        if cell.name.starts_with(METADATA_PREFIX) {
            return true;
        }
        if matches!(cell.value, CellValue::Null) {
            continue;
        }
        let wanted = iceberg_type(cell.column_type);
        match types.get(&*cell.name) {
            Some(known) => refusable |= *known != wanted,
            None => {
                types.insert(cell.name.to_string(), wanted);
            }
        }
    }
    refusable
}

/// Schema changes needed so that every row fits, plus the rows (by index) that cannot fit
/// whatever the schema does, with the reason.
pub fn plan_schema_changes<R: Borrow<BronzeRow>>(
    schema: &Schema,
    rows: &[R],
) -> (Vec<SchemaChange>, Vec<(usize, String)>) {
    let mut column_types = column_types(schema);
    let mut changes = Vec::new();
    let mut rejected = Vec::new();
    // New columns: typed values decide first, inferred ones only if nothing typed exists.
    for pass_typed in [true, false] {
        // Forgotten whenever a column is added, so no answer goes stale.
        let mut known = ByPosition::new();
        for row in rows {
            let row: &BronzeRow = row.borrow();
            for (position, cell) in row.cells.iter().enumerate() {
                if cell.typed != pass_typed
                    || cell.name.starts_with(METADATA_PREFIX)
                    || known.get(position, &cell.name, || {
                        column_types.contains_key(&*cell.name)
                    })
                {
                    continue;
                }
                if !pass_typed && cell.value == CellValue::Null {
                    // An all-null schemaless column has no type yet; wait for a value.
                    continue;
                }
                let kind = iceberg_type(cell.column_type);
                column_types.insert(cell.name.to_string(), kind.clone());
                known.clear();
                changes.push(SchemaChange::AddColumn {
                    name: cell.name.to_string(),
                    field_type: Type::Primitive(kind),
                    doc: None,
                });
            }
        }
    }
    let mut current_types = ByPosition::new();
    for (index, row) in rows.iter().enumerate() {
        let row: &BronzeRow = row.borrow();
        for (position, cell) in row.cells.iter().enumerate() {
            if cell.name.starts_with(METADATA_PREFIX) {
                rejected.push((
                    index,
                    format!(
                        "source column `{}` uses the reserved prefix {METADATA_PREFIX}",
                        cell.name
                    ),
                ));
                break;
            }
            let Some(current) = current_types.get(position, &cell.name, || {
                column_types.get(&*cell.name).cloned()
            }) else {
                continue;
            };
            let wanted = iceberg_type(cell.column_type);
            if current == wanted
                || cell.value == CellValue::Null
                || coerce(&cell.value, &current).is_some()
            {
                continue;
            }
            if cell.typed && firn_catalog::commit::is_widening(&current, &wanted) {
                column_types.insert(cell.name.to_string(), wanted.clone());
                current_types.clear();
                changes.retain(
                    |c| !matches!(c, SchemaChange::WidenColumn { name, .. } if **name == *cell.name),
                );
                changes.push(SchemaChange::WidenColumn {
                    name: cell.name.to_string(),
                    to: wanted,
                });
                continue;
            }
            rejected.push((
                index,
                format!(
                    "column `{}` is {current} in the table but the record has {wanted}",
                    cell.name
                ),
            ));
            break;
        }
    }
    (changes, rejected)
}

/// Lookups by column name remembered per cell position: the rows of a table mostly list the
/// same columns in the same order, so the previous row's answer at a position is reused when
/// the name there is the same (a string compare instead of hashing the name per cell; the
/// decoder interns names, so that is mostly the same pointer, and the text is not read).
struct ByPosition<'a, T> {
    memo: Vec<Option<(&'a str, T)>>,
}

impl<'a, T: Clone> ByPosition<'a, T> {
    fn new() -> Self {
        ByPosition { memo: Vec::new() }
    }

    /// The answer for `name` at `position`: remembered, or `lookup`'s (then remembered).
    fn get(&mut self, position: usize, name: &'a str, lookup: impl FnOnce() -> T) -> T {
        if let Some(Some((known, value))) = self.memo.get(position)
            && (std::ptr::eq(*known, name) || *known == name)
        {
            return value.clone();
        }
        let value = lookup();
        self.set(position, name, value.clone());
        value
    }

    fn set(&mut self, position: usize, name: &'a str, value: T) {
        if self.memo.len() <= position {
            self.memo.resize_with(position + 1, || None);
        }
        self.memo[position] = Some((name, value));
    }

    /// Forgets every answer (the map they came from changed).
    fn clear(&mut self) {
        self.memo.clear();
    }
}

/// Converts a value to the representation of a column of type `target`, or `None` when
/// that would lose information.
fn coerce(value: &CellValue, target: &PrimitiveType) -> Option<CellValue> {
    use CellValue as V;
    Some(match (value, target) {
        (V::Null, _) => V::Null,
        (V::Boolean(b), PrimitiveType::Boolean) => V::Boolean(*b),
        (V::Int(i), PrimitiveType::Int) => V::Int(*i),
        (V::Long(l), PrimitiveType::Int) => V::Int(i32::try_from(*l).ok()?),
        (V::Int(i), PrimitiveType::Long) => V::Long(i64::from(*i)),
        (V::Long(l), PrimitiveType::Long) => V::Long(*l),
        (V::Float(f), PrimitiveType::Float) => V::Float(*f),
        (V::Double(d), PrimitiveType::Float) if (*d as f32) as f64 == *d => V::Float(*d as f32),
        (V::Float(f), PrimitiveType::Double) => V::Double(f64::from(*f)),
        (V::Double(d), PrimitiveType::Double) => V::Double(*d),
        (V::Long(l), PrimitiveType::Double) if l.unsigned_abs() < (1 << 53) => V::Double(*l as f64),
        (V::String(s), PrimitiveType::String) => V::String(s.clone()),
        (V::Binary(b), PrimitiveType::Binary) => V::Binary(b.clone()),
        (V::Date(d), PrimitiveType::Date) => V::Date(*d),
        (V::Long(l), PrimitiveType::Date) => V::Date(i32::try_from(*l).ok()?),
        // Schemaless integers are not coerced to time: ms, µs and ns since midnight
        // overlap, so the unit cannot be told from the magnitude.
        (V::Time(t), PrimitiveType::Time) => V::Time(*t),
        (V::Micros(m), PrimitiveType::Timestamp | PrimitiveType::Timestamptz) => V::Micros(*m),
        (V::Long(l), PrimitiveType::Timestamp | PrimitiveType::Timestamptz) => {
            V::Micros(epoch_integer_to_micros(*l))
        }
        (V::String(s), PrimitiveType::Timestamptz | PrimitiveType::Timestamp) => V::Micros(
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()?
                .timestamp_micros(),
        ),
        (V::Decimal(d), PrimitiveType::Decimal { .. }) => V::Decimal(*d),
        (V::String(s), PrimitiveType::Decimal { scale, .. }) => {
            V::Decimal(parse_decimal(s, *scale)?)
        }
        _ => return None,
    })
}

fn epoch_integer_to_micros(value: i64) -> i64 {
    const MILLIS_LIMIT: u64 = 100_000_000_000_000; // 10^14
    const MICROS_LIMIT: u64 = 100_000_000_000_000_000; // 10^17
    match value.unsigned_abs() {
        v if v < MILLIS_LIMIT => value.saturating_mul(1000),
        v if v < MICROS_LIMIT => value,
        _ => value.div_euclid(1000),
    }
}

/// Parses `"12.34"` (or base64 big-endian bytes, the schemaless Debezium form) at `scale`.
fn parse_decimal(text: &str, scale: u32) -> Option<i128> {
    if let Some((whole, fraction)) = text.split_once('.').or(Some((text, ""))) {
        let digits_ok = !whole.is_empty()
            && whole
                .trim_start_matches('-')
                .chars()
                .all(|c| c.is_ascii_digit())
            && fraction.chars().all(|c| c.is_ascii_digit())
            && fraction.len() <= scale as usize;
        if digits_ok {
            let padded = format!("{whole}{fraction:0<width$}", width = scale as usize);
            return padded.parse().ok();
        }
    }
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let mut buffer = if bytes[0] & 0x80 != 0 {
        [0xffu8; 16]
    } else {
        [0u8; 16]
    };
    buffer[16 - bytes.len()..].copy_from_slice(&bytes);
    Some(i128::from_be_bytes(buffer))
}

/// A value converted to a column's representation, borrowing text and bytes from the cell.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fitted<'a> {
    Null,
    Boolean(bool),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    Date(i32),
    Time(i64),
    Micros(i64),
    Decimal(i128),
}

/// [`coerce`] without copying text or bytes: `None` when the value does not fit.
fn fit<'a>(value: &'a CellValue, target: &PrimitiveType) -> Option<Fitted<'a>> {
    use CellValue as V;
    Some(match (value, target) {
        (V::String(s), PrimitiveType::String) => Fitted::Str(s),
        (V::Binary(b), PrimitiveType::Binary) => Fitted::Bytes(b),
        _ => match coerce(value, target)? {
            V::Null => Fitted::Null,
            V::Boolean(b) => Fitted::Boolean(b),
            V::Int(i) => Fitted::Int(i),
            V::Long(l) => Fitted::Long(l),
            V::Float(f) => Fitted::Float(f),
            V::Double(d) => Fitted::Double(d),
            V::Date(d) => Fitted::Date(d),
            V::Time(t) => Fitted::Time(t),
            V::Micros(m) => Fitted::Micros(m),
            V::Decimal(d) => Fitted::Decimal(d),
            // Text and bytes only fit their own types, matched above.
            V::String(_) | V::Binary(_) => return None,
        },
    })
}

/// Where a column's values come from.
#[derive(Clone, Copy)]
enum Slot {
    Tenant,
    Op,
    SourceTs,
    SourcePos,
    Topic,
    Partition,
    Offset,
    IngestedAt,
    /// A source column: the cell fitted into this column.
    Source,
}

fn slot(name: &str) -> Slot {
    use bronze_columns::*;
    match name {
        TENANT => Slot::Tenant,
        OP => Slot::Op,
        SOURCE_TS => Slot::SourceTs,
        SOURCE_POS => Slot::SourcePos,
        TOPIC => Slot::Topic,
        PARTITION => Slot::Partition,
        OFFSET => Slot::Offset,
        INGESTED_AT => Slot::IngestedAt,
        _ => Slot::Source,
    }
}

/// An Arrow builder for one column of the batch.
enum ColumnBuilder {
    Boolean(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    LargeBinary(LargeBinaryBuilder),
    Date32(Date32Builder),
    Time64(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Decimal(Decimal128Builder),
    /// A type bronze never writes: all nulls.
    Other(DataType, usize),
}

impl ColumnBuilder {
    fn new(data_type: &DataType, rows: usize) -> ColumnBuilder {
        match data_type {
            DataType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::with_capacity(rows)),
            DataType::Int32 => ColumnBuilder::Int32(Int32Builder::with_capacity(rows)),
            DataType::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(rows)),
            DataType::Float32 => ColumnBuilder::Float32(Float32Builder::with_capacity(rows)),
            DataType::Float64 => ColumnBuilder::Float64(Float64Builder::with_capacity(rows)),
            DataType::Utf8 => ColumnBuilder::Utf8(StringBuilder::with_capacity(rows, rows * 8)),
            DataType::Binary => ColumnBuilder::Binary(BinaryBuilder::with_capacity(rows, rows * 8)),
            DataType::LargeBinary => {
                ColumnBuilder::LargeBinary(LargeBinaryBuilder::with_capacity(rows, rows * 8))
            }
            DataType::Date32 => ColumnBuilder::Date32(Date32Builder::with_capacity(rows)),
            // What `iceberg::arrow::schema_to_arrow_schema` gives Iceberg `time`.
            DataType::Time64(TimeUnit::Microsecond) => {
                ColumnBuilder::Time64(Time64MicrosecondBuilder::with_capacity(rows))
            }
            DataType::Timestamp(TimeUnit::Microsecond, zone) => ColumnBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone_opt(zone.clone()),
            ),
            DataType::Decimal128(precision, scale) => ColumnBuilder::Decimal(
                Decimal128Builder::with_capacity(rows)
                    .with_precision_and_scale(*precision, *scale)
                    .expect("valid decimal type"),
            ),
            other => ColumnBuilder::Other(other.clone(), 0),
        }
    }

    /// Appends a value; a value of another kind than the column's is a null.
    fn append(&mut self, value: Fitted) {
        use ColumnBuilder as B;
        use Fitted as F;
        match (self, value) {
            (B::Boolean(b), F::Boolean(v)) => b.append_value(v),
            (B::Int32(b), F::Int(v)) => b.append_value(v),
            (B::Int64(b), F::Long(v)) => b.append_value(v),
            (B::Float32(b), F::Float(v)) => b.append_value(v),
            (B::Float64(b), F::Double(v)) => b.append_value(v),
            (B::Utf8(b), F::Str(v)) => b.append_value(v),
            (B::Binary(b), F::Bytes(v)) => b.append_value(v),
            (B::LargeBinary(b), F::Bytes(v)) => b.append_value(v),
            (B::Date32(b), F::Date(v)) => b.append_value(v),
            (B::Time64(b), F::Time(v)) => b.append_value(v),
            (B::Timestamp(b), F::Micros(v)) => b.append_value(v),
            (B::Decimal(b), F::Decimal(v)) => b.append_value(v),
            (B::Boolean(b), _) => b.append_null(),
            (B::Int32(b), _) => b.append_null(),
            (B::Int64(b), _) => b.append_null(),
            (B::Float32(b), _) => b.append_null(),
            (B::Float64(b), _) => b.append_null(),
            (B::Utf8(b), _) => b.append_null(),
            (B::Binary(b), _) => b.append_null(),
            (B::LargeBinary(b), _) => b.append_null(),
            (B::Date32(b), _) => b.append_null(),
            (B::Time64(b), _) => b.append_null(),
            (B::Timestamp(b), _) => b.append_null(),
            (B::Decimal(b), _) => b.append_null(),
            (B::Other(_, rows), _) => *rows += 1,
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            ColumnBuilder::Boolean(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Float32(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Utf8(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Binary(mut b) => Arc::new(b.finish()),
            ColumnBuilder::LargeBinary(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Date32(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Time64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Other(data_type, rows) => arrow_array::new_null_array(&data_type, rows),
        }
    }
}

/// Builds the record batch of `rows` in `schema` (the table's Arrow schema with field ids).
/// Rows whose values cannot be coerced are left out and returned (by index) with the
/// reason. Values go straight from the cells into the column builders, one row at a time.
pub fn build_batch<R: Borrow<BronzeRow>>(
    schema: &SchemaRef,
    iceberg: &Schema,
    rows: &[R],
) -> (RecordBatch, Vec<(usize, String)>) {
    let fields = schema.fields();
    let position: HashMap<&str, usize> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name().as_str(), i))
        .collect();
    // Name → (column position, Iceberg type) for every column a cell may fill.
    let columns: HashMap<&str, (usize, PrimitiveType)> = iceberg
        .as_struct()
        .fields()
        .iter()
        .filter_map(|f| match f.field_type.as_ref() {
            Type::Primitive(p) => Some((
                f.name.as_str(),
                (*position.get(f.name.as_str())?, p.clone()),
            )),
            _ => None,
        })
        .collect();
    let slots: Vec<Slot> = fields.iter().map(|f| slot(f.name())).collect();
    let mut builders: Vec<ColumnBuilder> = fields
        .iter()
        .map(|f| ColumnBuilder::new(f.data_type(), rows.len()))
        .collect();
    let mut rejected = Vec::new();
    // The row's fitted source values by column; all are checked before any is appended so
    // a bad row never leaves a half-written column.
    let mut fitted: Vec<Fitted> = vec![Fitted::Null; fields.len()];
    let mut lookups = ByPosition::new();
    'rows: for (index, row) in rows.iter().enumerate() {
        let row: &BronzeRow = row.borrow();
        fitted.fill(Fitted::Null);
        for (position, cell) in row.cells.iter().enumerate() {
            let found = lookups.get(position, &cell.name, || columns.get(&*cell.name));
            let Some((column, target)) = found else {
                if cell.value == CellValue::Null {
                    continue;
                }
                rejected.push((
                    index,
                    format!("column `{}` is not in the table schema", cell.name),
                ));
                continue 'rows;
            };
            match fit(&cell.value, target) {
                Some(value) => fitted[*column] = value,
                None => {
                    rejected.push((
                        index,
                        format!(
                            "column `{}`: {:?} does not fit {target}",
                            cell.name, cell.value
                        ),
                    ));
                    continue 'rows;
                }
            }
        }
        for ((builder, slot), value) in builders.iter_mut().zip(&slots).zip(&fitted) {
            let value = match slot {
                Slot::Tenant => Fitted::Str(&row.tenant),
                Slot::Op => Fitted::Str(row.op.code()),
                Slot::SourceTs => row.source_ts_micros.map_or(Fitted::Null, Fitted::Micros),
                Slot::SourcePos => row.source_pos.as_deref().map_or(Fitted::Null, Fitted::Str),
                Slot::Topic => Fitted::Str(&row.topic),
                Slot::Partition => Fitted::Int(row.partition),
                Slot::Offset => Fitted::Long(row.offset),
                Slot::IngestedAt => Fitted::Micros(row.ingested_at_micros),
                Slot::Source => *value,
            };
            builder.append(value);
        }
    }
    let columns: Vec<ArrayRef> = builders.into_iter().map(ColumnBuilder::finish).collect();
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .expect("columns are built from the schema they are checked against");
    (batch, rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(name: &str, column_type: ColumnType, value: CellValue) -> Cell {
        Cell {
            name: name.into(),
            column_type,
            typed: false,
            value,
        }
    }

    /// A created row of tenant `t` on topic `cdc` with `cells`.
    fn created(cells: Vec<Cell>) -> BronzeRow {
        BronzeRow {
            tenant: "t".into(),
            op: Op::Create,
            source_ts_micros: None,
            source_pos: None,
            topic: "cdc".into(),
            partition: 0,
            offset: 0,
            ingested_at_micros: 0,
            cells,
        }
    }

    #[test]
    fn rows_that_may_be_refused_are_told_apart() {
        let mut types = HashMap::from([("id".to_string(), PrimitiveType::Long)]);
        let fits = [
            cell("id", ColumnType::Long, CellValue::Long(1)),
            cell("name", ColumnType::String, CellValue::String("a".into())),
        ];
        assert!(!may_be_refused(&mut types, &fits));
        assert_eq!(types.get("name"), Some(&PrimitiveType::String));
        // A later row whose `name` is a number might not fit the column the first one made.
        let other = [cell("name", ColumnType::Long, CellValue::Long(5))];
        assert!(may_be_refused(&mut types, &other));
        let null = [cell("name", ColumnType::Long, CellValue::Null)];
        assert!(!may_be_refused(&mut types, &null));
        let reserved = [cell("_firn_op", ColumnType::String, CellValue::Null)];
        assert!(may_be_refused(&mut types, &reserved));
        // What `plan_schema_changes` refuses is always flagged.
        let schema = Schema::builder()
            .with_schema_id(0)
            .with_fields(vec![
                iceberg::spec::NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long))
                    .into(),
            ])
            .build()
            .unwrap();
        let row = created;
        let rows = [
            row(vec![cell("id", ColumnType::Long, CellValue::Long(1))]),
            row(vec![cell(
                "id",
                ColumnType::String,
                CellValue::String("x".into()),
            )]),
        ];
        let (_, refused) = plan_schema_changes(&schema, &rows);
        let mut types = column_types(&schema);
        let flagged: Vec<usize> = (0..rows.len())
            .filter(|i| may_be_refused(&mut types, &rows[*i].cells))
            .collect();
        assert_eq!(refused.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1]);
        assert_eq!(flagged, [1]);
    }

    #[test]
    fn decimals_parse_from_text_and_base64() {
        assert_eq!(parse_decimal("12.5", 2), Some(1250));
        assert_eq!(parse_decimal("-3", 2), Some(-300));
        assert_eq!(parse_decimal("BNI=", 2), Some(1234));
        assert_eq!(parse_decimal("1.234", 2), None);
    }

    #[test]
    fn epoch_integers_get_a_unit_by_magnitude() {
        assert_eq!(
            epoch_integer_to_micros(1_700_000_000_000),
            1_700_000_000_000_000
        );
        assert_eq!(
            epoch_integer_to_micros(1_700_000_000_000_000),
            1_700_000_000_000_000
        );
        assert_eq!(
            epoch_integer_to_micros(1_700_000_000_000_000_000),
            1_700_000_000_000_000
        );
    }

    #[test]
    fn coercion_never_loses_information() {
        assert_eq!(
            coerce(&CellValue::Long(5), &PrimitiveType::Int),
            Some(CellValue::Int(5))
        );
        assert_eq!(coerce(&CellValue::Long(1 << 40), &PrimitiveType::Int), None);
        assert_eq!(
            coerce(&CellValue::String("x".into()), &PrimitiveType::Long),
            None
        );
        assert_eq!(coerce(&CellValue::Double(0.1), &PrimitiveType::Float), None);
    }

    #[test]
    fn time_columns_build_as_the_arrow_type_iceberg_derives() {
        use iceberg::spec::NestedField;
        let iceberg = Schema::builder()
            .with_schema_id(0)
            .with_fields(vec![
                NestedField::optional(1, "at", Type::Primitive(iceberg_type(ColumnType::Time)))
                    .into(),
            ])
            .build()
            .unwrap();
        let arrow: SchemaRef = Arc::new(iceberg::arrow::schema_to_arrow_schema(&iceberg).unwrap());
        assert_eq!(
            arrow.field(0).data_type(),
            &DataType::Time64(TimeUnit::Microsecond)
        );
        let row = |value| {
            created(vec![Cell {
                name: "at".into(),
                column_type: ColumnType::Time,
                typed: true,
                value,
            }])
        };
        let rows = [
            row(CellValue::Time(45_296_789_123)),
            row(CellValue::Null),
            // A schemaless integer has no unit; refused rather than guessed.
            row(CellValue::Long(1000)),
        ];
        let (batch, rejected) = build_batch(&arrow, &iceberg, &rows);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, 2);
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::Time64MicrosecondArray>()
            .unwrap();
        assert_eq!(column.value(0), 45_296_789_123);
        assert!(arrow_array::Array::is_null(column, 1));
    }
}
