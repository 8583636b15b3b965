//! The catalog handle: connects to the SQL catalog database and the warehouse storage,
//! creates namespaces and tables idempotently, loads and lists tables. Does I/O.
//! Commits live in `commit.rs`; nothing here changes an existing table.

use std::sync::Arc;

use iceberg::io::FileIO;
use iceberg::spec::{TableMetadata, TableMetadataBuilder};
use iceberg::table::Table;
use iceberg::{MetadataLocation, NamespaceIdent, TableCreation, TableIdent};

use crate::config::{PipelineConfig, WarehouseLocation};
use crate::error::{CatalogError, Result};
use crate::fileio::file_io_for;
use crate::pointer::{PointerStore, SqlPointerStore};
use crate::tables::{self, TableName, TableSpec, Tier};

/// How often and how patiently a commit retries a lost race.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: std::time::Duration,
    pub max_delay: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 30,
            base_delay: std::time::Duration::from_millis(20),
            max_delay: std::time::Duration::from_secs(2),
        }
    }
}

/// A connected catalog: the pointer store plus the warehouse FileIO.
#[derive(Clone)]
pub struct Catalog {
    pub(crate) store: Arc<dyn PointerStore>,
    pub(crate) file_io: FileIO,
    pub(crate) warehouse: WarehouseLocation,
    pub(crate) retry: RetryPolicy,
}

impl std::fmt::Debug for Catalog {
    // FileIO's own Debug prints its properties, S3 secret key included; leave it out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("store", &self.store)
            .field("warehouse", &self.warehouse)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// What `init` did, for the CLI to print.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct InitReport {
    pub created: Vec<String>,
    pub existing: Vec<String>,
}

impl Catalog {
    /// Connects to the configured catalog database and warehouse, and makes sure the
    /// catalog schema exists. Fails with the database address (never its password).
    pub async fn connect(config: &PipelineConfig) -> Result<Self> {
        let warehouse = config.warehouse_location()?;
        let database = config.catalog_database()?;
        let store = SqlPointerStore::connect(
            &database,
            config.catalog.password.as_ref(),
            &config.catalog.name,
            config.catalog.max_connections,
        )
        .await?;
        store.ensure_schema().await?;
        let file_io = file_io_for(&warehouse, &config.warehouse.s3);
        Ok(Catalog::from_parts(Arc::new(store), file_io, warehouse))
    }

    /// Builds a catalog over any pointer store (fault-injection tests wrap the SQL one).
    pub fn from_parts(
        store: Arc<dyn PointerStore>,
        file_io: FileIO,
        warehouse: WarehouseLocation,
    ) -> Self {
        Catalog {
            store,
            file_io,
            warehouse,
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn file_io(&self) -> &FileIO {
        &self.file_io
    }

    pub fn warehouse(&self) -> &WarehouseLocation {
        &self.warehouse
    }

    /// Creates the catalog schema, the three namespaces, the bronze table of every source
    /// and the dead-letter table. Safe to run again and concurrently.
    pub async fn init(&self, config: &PipelineConfig) -> Result<InitReport> {
        self.store.ensure_schema().await?;
        for tier in Tier::ALL {
            self.store.ensure_namespace(tier.namespace()).await?;
        }
        let mut specs = vec![tables::dead_letter_spec()?];
        for source in &config.sources {
            specs.push(tables::bronze_spec(source)?);
        }
        let mut report = InitReport::default();
        for spec in &specs {
            let (_, created) = self.create_table(spec).await?;
            if created {
                report.created.push(spec.name.to_string());
            } else {
                report.existing.push(spec.name.to_string());
            }
        }
        Ok(report)
    }

    /// Creates a table unless it exists; returns the table and whether it was created.
    /// An existing table is returned as it is (its schema is not compared).
    pub async fn create_table(&self, spec: &TableSpec) -> Result<(Table, bool)> {
        if let Some(table) = self.try_load_table(&spec.name).await? {
            return Ok((table, false));
        }
        self.store.ensure_namespace(spec.name.namespace()).await?;
        let location = format!(
            "{}/{}/{}",
            self.warehouse.uri(),
            spec.name.namespace(),
            spec.name.name
        );
        let creation = TableCreation::builder()
            .name(spec.name.name.clone())
            .location(location.clone())
            .schema(spec.schema.clone())
            .partition_spec(spec.partition_spec.clone())
            .properties(spec.properties.clone())
            .build();
        let metadata = TableMetadataBuilder::from_table_creation(creation)
            .and_then(|builder| builder.build())
            .map_err(CatalogError::iceberg("build table metadata", &spec.name))?
            .metadata;
        let metadata_location = MetadataLocation::new_with_metadata(&location, &metadata);
        metadata
            .write_to(&self.file_io, &metadata_location)
            .await
            .map_err(CatalogError::iceberg("write table metadata", &spec.name))?;
        let inserted = self
            .store
            .insert_pointer(
                spec.name.namespace(),
                &spec.name.name,
                &metadata_location.to_string(),
            )
            .await?;
        // Another process may have created the table between our check and insert; its
        // table wins and our metadata file is simply never referenced.
        let table = self.load_table(&spec.name).await?;
        Ok((table, inserted))
    }

    /// Loads a table's current metadata.
    pub async fn load_table(&self, name: &TableName) -> Result<Table> {
        self.try_load_table(name)
            .await?
            .ok_or_else(|| CatalogError::TableNotFound(name.to_string()))
    }

    /// Loads a table, or `None` when it does not exist.
    pub async fn try_load_table(&self, name: &TableName) -> Result<Option<Table>> {
        let Some(location) = self
            .store
            .load_pointer(name.namespace(), &name.name)
            .await?
        else {
            return Ok(None);
        };
        let metadata = TableMetadata::read_from(&self.file_io, &location)
            .await
            .map_err(CatalogError::iceberg("read table metadata", name))?;
        Ok(Some(self.table_from(name, metadata, location)?))
    }

    pub(crate) fn table_from(
        &self,
        name: &TableName,
        metadata: TableMetadata,
        location: String,
    ) -> Result<Table> {
        let ident = TableIdent::new(
            NamespaceIdent::new(name.namespace().to_string()),
            name.name.clone(),
        );
        Table::builder()
            .metadata(metadata)
            .metadata_location(location)
            .identifier(ident)
            .file_io(self.file_io.clone())
            // Scans run their I/O on the caller's tokio runtime.
            .runtime(iceberg::Runtime::current())
            .build()
            .map_err(CatalogError::iceberg("open table", name))
    }

    /// Every table of the three tiers, sorted.
    pub async fn list_tables(&self) -> Result<Vec<TableName>> {
        let mut names = Vec::new();
        for tier in Tier::ALL {
            for table in self.store.list_tables(tier.namespace()).await? {
                // Tables another engine created with names firn cannot represent are skipped.
                if let Ok(name) = TableName::new(tier, &table) {
                    names.push(name);
                }
            }
        }
        Ok(names)
    }

    /// Names of all namespaces in the catalog.
    pub async fn list_namespaces(&self) -> Result<Vec<String>> {
        self.store.list_namespaces().await
    }
}
