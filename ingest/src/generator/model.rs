//! The simulated source database: tables, columns, column types, keys and row values.
//! Pure data definitions, no I/O.
//!
//! The same four tables exist in every tenant's database. Column types are described once,
//! in source-neutral terms; `envelope.rs` maps them to the Kafka Connect types the MySQL or
//! Postgres Debezium connector would emit, and `expected.rs` maps them to decoded values.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A source table of the simulated shop database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Customers,
    Products,
    Orders,
    OrderItems,
}

impl Table {
    /// All tables, in the order the snapshot reads them.
    pub const ALL: [Table; 4] = [
        Table::Customers,
        Table::Products,
        Table::Orders,
        Table::OrderItems,
    ];

    /// The table name as it appears in topics, schema names and the `source.table` field.
    pub fn name(self) -> &'static str {
        match self {
            Table::Customers => "customers",
            Table::Products => "products",
            Table::Orders => "orders",
            Table::OrderItems => "order_items",
        }
    }

    /// Primary-key column names, in key order.
    pub fn key_columns(self) -> &'static [&'static str] {
        match self {
            Table::OrderItems => &["order_id", "line_no"],
            _ => &["id"],
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Table::Customers => 0,
            Table::Products => 1,
            Table::Orders => 2,
            Table::OrderItems => 3,
        }
    }

    /// Column definitions; key columns come first so a key can be read off a row's prefix.
    pub(crate) fn columns(self) -> &'static [Column] {
        match self {
            Table::Customers => &CUSTOMERS,
            Table::Products => &PRODUCTS,
            Table::Orders => &ORDERS,
            Table::OrderItems => &ORDER_ITEMS,
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which Debezium connector a tenant's database is captured by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Debezium MySQL connector: binlog file/pos positions, millisecond `DATETIME(3)`.
    MySql,
    /// Debezium PostgreSQL connector: LSN positions, microsecond `timestamp`.
    Postgres,
}

impl Flavor {
    /// Tenant `i` (0-based, in configuration order) is MySQL when `i` is even, else Postgres.
    pub fn for_tenant_index(index: usize) -> Self {
        if index.is_multiple_of(2) {
            Flavor::MySql
        } else {
            Flavor::Postgres
        }
    }

    /// The `source.connector` value.
    pub fn connector(self) -> &'static str {
        match self {
            Flavor::MySql => "mysql",
            Flavor::Postgres => "postgresql",
        }
    }

    /// Drops precision the source column cannot hold: MySQL columns are `DATETIME(3)` and
    /// `TIMESTAMP(3)` (milliseconds), Postgres `timestamp`/`timestamptz` keep microseconds.
    pub(crate) fn truncate_micros(self, micros: i64) -> i64 {
        match self {
            Flavor::MySql => micros - micros.rem_euclid(1000),
            Flavor::Postgres => micros,
        }
    }
}

/// Source-neutral column types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnType {
    Int64,
    Int32,
    Text,
    Bool,
    /// Calendar date, carried as days since 1970-01-01.
    Date,
    /// Timestamp without time zone (`DATETIME(3)` / `timestamp`), carried as epoch micros.
    Timestamp,
    /// Timestamp with time zone (`TIMESTAMP(3)` / `timestamptz`), carried as epoch micros.
    ZonedTimestamp,
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// `ENUM(...)` in MySQL, a user-defined enum type in Postgres.
    Enum(&'static [&'static str]),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    pub(crate) name: &'static str,
    pub(crate) ty: ColumnType,
    pub(crate) nullable: bool,
}

const fn col(name: &'static str, ty: ColumnType) -> Column {
    Column {
        name,
        ty,
        nullable: false,
    }
}

const fn nullable(name: &'static str, ty: ColumnType) -> Column {
    Column {
        name,
        ty,
        nullable: true,
    }
}

pub(crate) const ORDER_STATUSES: [&str; 4] = ["pending", "paid", "shipped", "cancelled"];

const PRICE: ColumnType = ColumnType::Decimal {
    precision: 10,
    scale: 2,
};
const TOTAL: ColumnType = ColumnType::Decimal {
    precision: 12,
    scale: 2,
};

static CUSTOMERS: [Column; 7] = [
    col("id", ColumnType::Int64),
    col("email", ColumnType::Text),
    col("full_name", ColumnType::Text),
    nullable("country", ColumnType::Text),
    nullable("birth_date", ColumnType::Date),
    col("created_at", ColumnType::Timestamp),
    col("updated_at", ColumnType::ZonedTimestamp),
];

static PRODUCTS: [Column; 6] = [
    col("id", ColumnType::Int64),
    col("sku", ColumnType::Text),
    col("name", ColumnType::Text),
    col("price", PRICE),
    col("active", ColumnType::Bool),
    col("updated_at", ColumnType::Timestamp),
];

static ORDERS: [Column; 5] = [
    col("id", ColumnType::Int64),
    col("customer_id", ColumnType::Int64),
    col("status", ColumnType::Enum(&ORDER_STATUSES)),
    col("total", TOTAL),
    col("ordered_at", ColumnType::Timestamp),
];

static ORDER_ITEMS: [Column; 5] = [
    col("order_id", ColumnType::Int64),
    col("line_no", ColumnType::Int32),
    col("product_id", ColumnType::Int64),
    col("quantity", ColumnType::Int32),
    col("unit_price", PRICE),
];

/// Column positions inside rows, so row builders and updates name what they touch.
pub(crate) mod pos {
    pub(crate) const CUSTOMER_EMAIL: usize = 1;
    pub(crate) const CUSTOMER_NAME: usize = 2;
    pub(crate) const CUSTOMER_COUNTRY: usize = 3;
    pub(crate) const CUSTOMER_UPDATED_AT: usize = 6;
    pub(crate) const PRODUCT_PRICE: usize = 3;
    pub(crate) const PRODUCT_ACTIVE: usize = 4;
    pub(crate) const PRODUCT_UPDATED_AT: usize = 5;
    pub(crate) const ORDER_STATUS: usize = 2;
    pub(crate) const ORDER_TOTAL: usize = 3;
    pub(crate) const ITEM_QUANTITY: usize = 3;
    pub(crate) const ITEM_UNIT_PRICE: usize = 4;
}

/// One column value, in the source-neutral representation of its `ColumnType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(Box<str>),
    /// Text drawn from a static vocabulary (enum labels, countries): no allocation per row.
    Label(&'static str),
    Bool(bool),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since the epoch, UTC (both timestamp kinds).
    Micros(i64),
    /// Unscaled decimal value; the scale comes from the column type.
    Decimal(i64),
}

/// A full row, one cell per column of its table, in column order.
pub(crate) type Row = Box<[Cell]>;

/// A primary-key value: `id` for single-column keys, `(order_id, line_no)` for order items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PrimaryKey {
    pub id: i64,
    pub line_no: Option<i32>,
}

impl PrimaryKey {
    pub fn id(id: i64) -> Self {
        Self { id, line_no: None }
    }

    pub fn item(order_id: i64, line_no: i32) -> Self {
        Self {
            id: order_id,
            line_no: Some(line_no),
        }
    }

    /// The key as the JSON object Debezium puts in the Kafka key payload.
    pub fn to_json(self, table: Table) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        let names = table.key_columns();
        map.insert(names[0].to_owned(), self.id.into());
        if let (Some(line_no), Some(name)) = (self.line_no, names.get(1)) {
            map.insert((*name).to_owned(), line_no.into());
        }
        serde_json::Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_columns_are_the_leading_columns() {
        for table in Table::ALL {
            let columns = table.columns();
            for (i, name) in table.key_columns().iter().enumerate() {
                assert_eq!(columns[i].name, *name);
                assert!(!columns[i].nullable);
            }
            assert_eq!(Table::ALL[table.index()], table);
        }
    }

    #[test]
    fn mysql_truncates_to_millis_including_before_epoch() {
        assert_eq!(Flavor::MySql.truncate_micros(1_234_567), 1_234_000);
        assert_eq!(Flavor::MySql.truncate_micros(-1), -1000);
        assert_eq!(Flavor::Postgres.truncate_micros(1_234_567), 1_234_567);
    }
}
