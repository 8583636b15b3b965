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

/// Schema changes needed so that every row fits, plus the rows (by index) that cannot fit
/// whatever the schema does, with the reason.
pub fn plan_schema_changes(
    schema: &Schema,
    rows: &[BronzeRow],
) -> (Vec<SchemaChange>, Vec<(usize, String)>) {
    let mut column_types: HashMap<String, PrimitiveType> = schema
        .as_struct()
        .fields()
        .iter()
        .filter_map(|f| match f.field_type.as_ref() {
            Type::Primitive(p) => Some((f.name.clone(), p.clone())),
            _ => None,
        })
        .collect();
    let mut changes = Vec::new();
    let mut rejected = Vec::new();
    // New columns: typed values decide first, inferred ones only if nothing typed exists.
    for pass_typed in [true, false] {
        for row in rows {
            for cell in row.cells.iter().filter(|c| c.typed == pass_typed) {
                if cell.name.starts_with(METADATA_PREFIX) || column_types.contains_key(&cell.name) {
                    continue;
                }
                if !pass_typed && cell.value == CellValue::Null {
                    // An all-null schemaless column has no type yet; wait for a value.
                    continue;
                }
                let kind = iceberg_type(cell.column_type);
                column_types.insert(cell.name.clone(), kind.clone());
                changes.push(SchemaChange::AddColumn {
                    name: cell.name.clone(),
                    field_type: Type::Primitive(kind),
                    doc: None,
                });
            }
        }
    }
    for (index, row) in rows.iter().enumerate() {
        for cell in &row.cells {
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
            let Some(current) = column_types.get(&cell.name).cloned() else {
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
                column_types.insert(cell.name.clone(), wanted.clone());
                changes.retain(
                    |c| !matches!(c, SchemaChange::WidenColumn { name, .. } if *name == cell.name),
                );
                changes.push(SchemaChange::WidenColumn {
                    name: cell.name.clone(),
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

/// Builds the record batch of `rows` in `schema` (the table's Arrow schema with field ids).
/// Rows whose values cannot be coerced are left out and returned with the reason.
pub fn build_batch(
    schema: &SchemaRef,
    iceberg: &Schema,
    rows: &[BronzeRow],
) -> (RecordBatch, Vec<(usize, String)>) {
    let types: HashMap<&str, PrimitiveType> = iceberg
        .as_struct()
        .fields()
        .iter()
        .filter_map(|f| match f.field_type.as_ref() {
            Type::Primitive(p) => Some((f.name.as_str(), p.clone())),
            _ => None,
        })
        .collect();
    // Coerce every row first so that a bad row never leaves a half-written column.
    let mut accepted: Vec<(&BronzeRow, HashMap<&str, CellValue>)> = Vec::with_capacity(rows.len());
    let mut rejected = Vec::new();
    'rows: for (index, row) in rows.iter().enumerate() {
        let mut values = HashMap::with_capacity(row.cells.len());
        for cell in &row.cells {
            let Some(target) = types.get(cell.name.as_str()) else {
                if cell.value == CellValue::Null {
                    continue;
                }
                rejected.push((
                    index,
                    format!("column `{}` is not in the table schema", cell.name),
                ));
                continue 'rows;
            };
            match coerce(&cell.value, target) {
                Some(value) => {
                    values.insert(cell.name.as_str(), value);
                }
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
        accepted.push((row, values));
    }
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| build_column(field.name(), field.data_type(), &accepted))
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .expect("columns are built from the schema they are checked against");
    (batch, rejected)
}

fn metadata_value(row: &BronzeRow, name: &str) -> Option<CellValue> {
    use bronze_columns::*;
    Some(match name {
        TENANT => CellValue::String(row.tenant.clone()),
        OP => CellValue::String(row.op.code().to_string()),
        SOURCE_TS => {
            return row
                .source_ts_micros
                .map(CellValue::Micros)
                .or(Some(CellValue::Null));
        }
        SOURCE_POS => {
            return row
                .source_pos
                .clone()
                .map(CellValue::String)
                .or(Some(CellValue::Null));
        }
        TOPIC => CellValue::String(row.topic.clone()),
        PARTITION => CellValue::Int(row.partition),
        OFFSET => CellValue::Long(row.offset),
        INGESTED_AT => CellValue::Micros(row.ingested_at_micros),
        _ => return None,
    })
}

fn build_column(
    name: &str,
    data_type: &DataType,
    rows: &[(&BronzeRow, HashMap<&str, CellValue>)],
) -> ArrayRef {
    let values = rows.iter().map(|(row, cells)| {
        metadata_value(row, name)
            .unwrap_or_else(|| cells.get(name).cloned().unwrap_or(CellValue::Null))
    });
    macro_rules! build {
        ($builder:expr, $pattern:pat => $value:expr) => {{
            let mut builder = $builder;
            for value in values {
                match value {
                    $pattern => builder.append_value($value),
                    _ => builder.append_null(),
                }
            }
            Arc::new(builder.finish()) as ArrayRef
        }};
    }
    match data_type {
        DataType::Boolean => build!(BooleanBuilder::new(), CellValue::Boolean(v) => v),
        DataType::Int32 => build!(Int32Builder::new(), CellValue::Int(v) => v),
        DataType::Int64 => build!(Int64Builder::new(), CellValue::Long(v) => v),
        DataType::Float32 => build!(Float32Builder::new(), CellValue::Float(v) => v),
        DataType::Float64 => build!(Float64Builder::new(), CellValue::Double(v) => v),
        DataType::Utf8 => build!(StringBuilder::new(), CellValue::String(v) => v),
        DataType::Binary => build!(BinaryBuilder::new(), CellValue::Binary(v) => v),
        DataType::LargeBinary => build!(LargeBinaryBuilder::new(), CellValue::Binary(v) => v),
        DataType::Date32 => build!(Date32Builder::new(), CellValue::Date(v) => v),
        // What `iceberg::arrow::schema_to_arrow_schema` gives Iceberg `time`.
        DataType::Time64(TimeUnit::Microsecond) => {
            build!(Time64MicrosecondBuilder::new(), CellValue::Time(v) => v)
        }
        DataType::Timestamp(TimeUnit::Microsecond, zone) => build!(
            TimestampMicrosecondBuilder::new().with_timezone_opt(zone.clone()),
            CellValue::Micros(v) => v
        ),
        DataType::Decimal128(precision, scale) => build!(
            Decimal128Builder::new().with_precision_and_scale(*precision, *scale).expect("valid decimal type"),
            CellValue::Decimal(v) => v
        ),
        other => arrow_array::new_null_array(other, rows.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let row = |value| BronzeRow {
            tenant: "t".into(),
            op: Op::Create,
            source_ts_micros: None,
            source_pos: None,
            topic: "cdc".into(),
            partition: 0,
            offset: 0,
            ingested_at_micros: 0,
            cells: vec![Cell {
                name: "at".into(),
                column_type: ColumnType::Time,
                typed: true,
                value,
            }],
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
