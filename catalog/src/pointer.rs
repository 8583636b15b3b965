//! The catalog database: the JDBC/pyiceberg SQL schema (`iceberg_tables`,
//! `iceberg_namespace_properties`) on SQLite or Postgres, and the compare-and-swap of a
//! table's metadata pointer. Does I/O (SQL).
//!
//! The swap is a single autocommitted `UPDATE ... WHERE metadata_location = <old>`, the same
//! statement pyiceberg and the Java JDBC catalog run, so every engine sharing the database
//! sees one linear history per table. A swap that errors (as opposed to matching zero rows)
//! has an unknown outcome; the commit path resolves it from the table history.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

use crate::config::{CatalogDatabase, Secret};
use crate::error::{CatalogError, Result};

/// Result of a compare-and-swap of a table pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapResult {
    /// The pointer moved from the expected location to the new one.
    Swapped,
    /// The pointer no longer held the expected location: another writer won the race.
    Conflict,
}

/// Storage of table pointers and namespaces. The SQL implementation is the real one; the
/// trait exists so fault-injection tests can wrap it (lost acknowledgements, outages).
#[async_trait]
pub trait PointerStore: Send + Sync + std::fmt::Debug {
    /// Creates the catalog tables if missing and upgrades a V0 schema (no `iceberg_type`).
    async fn ensure_schema(&self) -> Result<()>;
    async fn ensure_namespace(&self, namespace: &str) -> Result<()>;
    async fn list_namespaces(&self) -> Result<Vec<String>>;
    async fn list_tables(&self, namespace: &str) -> Result<Vec<String>>;
    /// The current metadata location of a table, if the table exists.
    async fn load_pointer(&self, namespace: &str, table: &str) -> Result<Option<String>>;
    /// Registers a new table; returns false if a table of that name already exists.
    async fn insert_pointer(&self, namespace: &str, table: &str, location: &str) -> Result<bool>;
    /// Moves the pointer from `expected` to `new` atomically.
    async fn swap_pointer(
        &self,
        namespace: &str,
        table: &str,
        expected: &str,
        new: &str,
    ) -> Result<SwapResult>;
    /// Removes a table row (the files stay; used by `firn` only for explicit drops).
    async fn delete_pointer(&self, namespace: &str, table: &str) -> Result<bool>;
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The SQL catalog database shared with pyiceberg, the JDBC catalog and StarRocks.
#[derive(Debug, Clone)]
pub struct SqlPointerStore {
    pool: Pool,
    catalog_name: String,
}

/// Runs the same sqlx expression against whichever pool is configured. Both drivers accept
/// `$N` placeholders, so one SQL text serves both.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

const CREATE_TABLES: &str = "CREATE TABLE IF NOT EXISTS iceberg_tables (
    catalog_name VARCHAR(255) NOT NULL,
    table_namespace VARCHAR(255) NOT NULL,
    table_name VARCHAR(255) NOT NULL,
    metadata_location VARCHAR(1000),
    previous_metadata_location VARCHAR(1000),
    iceberg_type VARCHAR(5),
    PRIMARY KEY (catalog_name, table_namespace, table_name))";

const CREATE_NAMESPACE_PROPERTIES: &str =
    "CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (
    catalog_name VARCHAR(255) NOT NULL,
    namespace VARCHAR(255) NOT NULL,
    property_key VARCHAR(255),
    property_value VARCHAR(1000),
    PRIMARY KEY (catalog_name, namespace, property_key))";

impl SqlPointerStore {
    /// Connects to the catalog database. A connection failure is reported with the
    /// (password-free) database address.
    pub async fn connect(
        database: &CatalogDatabase,
        password: Option<&Secret>,
        catalog_name: &str,
        max_connections: u32,
    ) -> Result<Self> {
        let connect_error = |source: sqlx::Error| CatalogError::Database {
            operation: "connect",
            source: sqlx::Error::Configuration(
                format!("cannot connect to the catalog database {database}: {source}").into(),
            ),
        };
        let pool = match database {
            CatalogDatabase::Sqlite(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|err| connect_error(sqlx::Error::Io(err)))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    // WAL lets readers (pyiceberg, `firn snapshots`) run beside a writer.
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(30));
                let pool = SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?;
                Pool::Sqlite(pool)
            }
            CatalogDatabase::Postgres(url) => {
                let mut options = PgConnectOptions::from_str(url).map_err(connect_error)?;
                if let Some(password) = password {
                    options = options.password(password.expose());
                }
                let pool = PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?;
                Pool::Postgres(pool)
            }
        };
        Ok(SqlPointerStore {
            pool,
            catalog_name: catalog_name.to_string(),
        })
    }

    async fn has_iceberg_type_column(&self) -> Result<bool> {
        let probe = "SELECT iceberg_type FROM iceberg_tables WHERE 1 = 0";
        let outcome = on_pool!(self, pool => sqlx::query(probe).execute(pool).await.map(|_| ()));
        match outcome {
            Ok(()) => Ok(true),
            Err(sqlx::Error::Database(_)) => Ok(false),
            Err(source) => Err(CatalogError::Database {
                operation: "inspect catalog schema",
                source,
            }),
        }
    }
}

#[async_trait]
impl PointerStore for SqlPointerStore {
    async fn ensure_schema(&self) -> Result<()> {
        for statement in [CREATE_TABLES, CREATE_NAMESPACE_PROPERTIES] {
            on_pool!(self, pool => sqlx::query(statement).execute(pool).await.map(|done| done.rows_affected()))
                .map_err(CatalogError::db("create catalog schema"))?;
        }
        if !self.has_iceberg_type_column().await? {
            // A V0 catalog (older pyiceberg or JDBC default) lacks this column, which
            // iceberg-rust and pyiceberg 0.12 both expect; adding it is backwards compatible.
            on_pool!(self, pool => sqlx::query("ALTER TABLE iceberg_tables ADD COLUMN iceberg_type VARCHAR(5)").execute(pool).await.map(|done| done.rows_affected()))
                .map_err(CatalogError::db("upgrade catalog schema"))?;
        }
        Ok(())
    }

    async fn ensure_namespace(&self, namespace: &str) -> Result<()> {
        let sql = "INSERT INTO iceberg_namespace_properties
            (catalog_name, namespace, property_key, property_value)
            VALUES ($1, $2, 'exists', 'true') ON CONFLICT DO NOTHING";
        on_pool!(self, pool => sqlx::query(sql).bind(&self.catalog_name).bind(namespace).execute(pool).await.map(|done| done.rows_affected()))
            .map_err(CatalogError::db("create namespace"))?;
        Ok(())
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        let sql = "SELECT DISTINCT namespace FROM iceberg_namespace_properties
            WHERE catalog_name = $1
            UNION SELECT DISTINCT table_namespace FROM iceberg_tables WHERE catalog_name = $1
            ORDER BY 1";
        let rows: Vec<(String,)> = on_pool!(self, pool => sqlx::query_as(sql).bind(&self.catalog_name).fetch_all(pool).await)
            .map_err(CatalogError::db("list namespaces"))?;
        Ok(rows.into_iter().map(|(name,)| name).collect())
    }

    async fn list_tables(&self, namespace: &str) -> Result<Vec<String>> {
        let sql = "SELECT table_name FROM iceberg_tables
            WHERE catalog_name = $1 AND table_namespace = $2
              AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)
            ORDER BY table_name";
        let rows: Vec<(String,)> = on_pool!(self, pool => sqlx::query_as(sql).bind(&self.catalog_name).bind(namespace).fetch_all(pool).await)
            .map_err(CatalogError::db("list tables"))?;
        Ok(rows.into_iter().map(|(name,)| name).collect())
    }

    async fn load_pointer(&self, namespace: &str, table: &str) -> Result<Option<String>> {
        let sql = "SELECT metadata_location FROM iceberg_tables
            WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3
              AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)";
        let row: Option<(Option<String>,)> = on_pool!(self, pool => sqlx::query_as(sql).bind(&self.catalog_name).bind(namespace).bind(table).fetch_optional(pool).await)
            .map_err(CatalogError::db("load table pointer"))?;
        Ok(row.and_then(|(location,)| location))
    }

    async fn insert_pointer(&self, namespace: &str, table: &str, location: &str) -> Result<bool> {
        let sql = "INSERT INTO iceberg_tables
            (catalog_name, table_namespace, table_name, metadata_location, previous_metadata_location, iceberg_type)
            VALUES ($1, $2, $3, $4, NULL, 'TABLE') ON CONFLICT DO NOTHING";
        let done = on_pool!(self, pool => sqlx::query(sql).bind(&self.catalog_name).bind(namespace).bind(table).bind(location).execute(pool).await.map(|done| done.rows_affected()))
            .map_err(CatalogError::db("register table"))?;
        Ok(done == 1)
    }

    async fn swap_pointer(
        &self,
        namespace: &str,
        table: &str,
        expected: &str,
        new: &str,
    ) -> Result<SwapResult> {
        let sql =
            "UPDATE iceberg_tables SET metadata_location = $1, previous_metadata_location = $2
            WHERE catalog_name = $3 AND table_namespace = $4 AND table_name = $5
              AND metadata_location = $2";
        let done = on_pool!(self, pool => sqlx::query(sql).bind(new).bind(expected).bind(&self.catalog_name).bind(namespace).bind(table).execute(pool).await.map(|done| done.rows_affected()))
            .map_err(CatalogError::db("swap table pointer"))?;
        Ok(if done == 1 {
            SwapResult::Swapped
        } else {
            SwapResult::Conflict
        })
    }

    async fn delete_pointer(&self, namespace: &str, table: &str) -> Result<bool> {
        let sql = "DELETE FROM iceberg_tables
            WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3";
        let done = on_pool!(self, pool => sqlx::query(sql).bind(&self.catalog_name).bind(namespace).bind(table).execute(pool).await.map(|done| done.rows_affected()))
            .map_err(CatalogError::db("drop table"))?;
        Ok(done == 1)
    }
}
