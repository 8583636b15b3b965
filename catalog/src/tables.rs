//! Table contracts of the three tiers: identifiers, the bronze metadata columns, the
//! dead-letter table, and partition specs. Pure.

use std::collections::HashMap;
use std::fmt;

use iceberg::spec::{NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec};

use crate::config::{SourceConfig, TimeGranularity};
use crate::error::{CatalogError, NameKind, Result};
use crate::names;

/// The three tiers; each is an Iceberg namespace of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    Bronze,
    Silver,
    Gold,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Bronze, Tier::Silver, Tier::Gold];

    pub fn namespace(self) -> &'static str {
        match self {
            Tier::Bronze => "bronze",
            Tier::Silver => "silver",
            Tier::Gold => "gold",
        }
    }

    fn from_namespace(namespace: &str) -> Option<Tier> {
        Tier::ALL
            .into_iter()
            .find(|tier| tier.namespace() == namespace)
    }
}

/// A validated `<tier>.<table>` name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub tier: Tier,
    pub name: String,
}

impl TableName {
    /// Builds a name after checking the naming rules.
    pub fn new(tier: Tier, name: &str) -> Result<Self> {
        names::validate_identifier(NameKind::Table, name)?;
        Ok(TableName {
            tier,
            name: name.to_string(),
        })
    }

    /// Parses `bronze.orders`; a bare name is refused so scripts are never ambiguous.
    pub fn parse(text: &str) -> Result<Self> {
        let (namespace, name) = text
            .split_once('.')
            .ok_or_else(|| CatalogError::InvalidName {
                kind: NameKind::Table,
                name: text.to_string(),
                reason: "expected <tier>.<table>, e.g. bronze.orders".into(),
            })?;
        let tier = Tier::from_namespace(namespace).ok_or_else(|| CatalogError::InvalidName {
            kind: NameKind::Namespace,
            name: namespace.to_string(),
            reason: "expected bronze, silver or gold".into(),
        })?;
        TableName::new(tier, name)
    }

    pub fn namespace(&self) -> &'static str {
        self.tier.namespace()
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.tier.namespace(), self.name)
    }
}

/// Bronze metadata columns; source columns are added after them by schema evolution.
pub mod bronze_columns {
    /// Tenant the record belongs to (partition).
    pub const TENANT: &str = "_firn_tenant";
    /// Debezium op: c, u, d, r (t for truncate).
    pub const OP: &str = "_firn_op";
    /// Source commit timestamp (`source.ts_ms`), microseconds UTC (partition by day).
    pub const SOURCE_TS: &str = "_firn_source_ts";
    /// Sortable source position: binlog file+pos, LSN, or oplog timestamp.
    pub const SOURCE_POS: &str = "_firn_source_pos";
    pub const TOPIC: &str = "_firn_topic";
    pub const PARTITION: &str = "_firn_partition";
    pub const OFFSET: &str = "_firn_offset";
    /// When firn wrote the row (microseconds UTC); informational only.
    pub const INGESTED_AT: &str = "_firn_ingested_at";
}

/// Name of the dead-letter table in the bronze namespace.
pub const DEAD_LETTER_TABLE: &str = "firn_dead_letters";

/// Everything needed to create a table.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: TableName,
    pub schema: Schema,
    pub partition_spec: UnboundPartitionSpec,
    pub properties: HashMap<String, String>,
}

/// Default table properties: Parquet with zstd, metadata log kept bounded and the metadata
/// files that leave it deleted.
fn default_properties() -> HashMap<String, String> {
    HashMap::from([
        ("write.format.default".to_string(), "parquet".to_string()),
        (
            "write.parquet.compression-codec".to_string(),
            "zstd".to_string(),
        ),
        (
            "write.metadata.previous-versions-max".to_string(),
            "100".to_string(),
        ),
        (
            crate::commit::DELETE_METADATA_AFTER_COMMIT.to_string(),
            "true".to_string(),
        ),
        ("firn.managed".to_string(), "true".to_string()),
    ])
}

fn string(id: i32, name: &str, required: bool) -> NestedField {
    field(id, name, PrimitiveType::String, required)
}

fn field(id: i32, name: &str, kind: PrimitiveType, required: bool) -> NestedField {
    if required {
        NestedField::required(id, name, Type::Primitive(kind))
    } else {
        NestedField::optional(id, name, Type::Primitive(kind))
    }
}

/// The bronze table of a source, before any source column has been seen.
pub fn bronze_spec(source: &SourceConfig) -> Result<TableSpec> {
    use bronze_columns::*;
    let name = TableName::new(Tier::Bronze, &source.table)?;
    let schema = Schema::builder()
        .with_schema_id(0)
        .with_fields(vec![
            string(1, TENANT, true).into(),
            string(2, OP, true).into(),
            field(3, SOURCE_TS, PrimitiveType::Timestamptz, false).into(),
            string(4, SOURCE_POS, false).into(),
            string(5, TOPIC, true).into(),
            field(6, PARTITION, PrimitiveType::Int, true).into(),
            field(7, OFFSET, PrimitiveType::Long, true).into(),
            field(8, INGESTED_AT, PrimitiveType::Timestamptz, true).into(),
        ])
        .build()
        .map_err(CatalogError::iceberg("build schema", &name))?;
    let mut spec = UnboundPartitionSpec::builder()
        .with_spec_id(0)
        .add_partition_field(1, TENANT, Transform::Identity)
        .map_err(CatalogError::iceberg("build partition spec", &name))?;
    let time_transform = match source.time_partition {
        TimeGranularity::Hour => Some((Transform::Hour, "hour")),
        TimeGranularity::Day => Some((Transform::Day, "day")),
        TimeGranularity::Month => Some((Transform::Month, "month")),
        TimeGranularity::None => None,
    };
    if let Some((transform, suffix)) = time_transform {
        spec = spec
            .add_partition_field(3, format!("{SOURCE_TS}_{suffix}"), transform)
            .map_err(CatalogError::iceberg("build partition spec", &name))?;
    }
    let mut properties = default_properties();
    properties.insert("firn.source-topic".to_string(), source.topic.clone());
    Ok(TableSpec {
        name,
        schema,
        partition_spec: spec.build(),
        properties,
    })
}

/// The dead-letter table: records that could not be ingested, with the reason.
pub fn dead_letter_spec() -> Result<TableSpec> {
    let name = TableName::new(Tier::Bronze, DEAD_LETTER_TABLE)?;
    let schema = Schema::builder()
        .with_schema_id(0)
        .with_fields(vec![
            string(1, "tenant", false).into(),
            string(2, "source_table", false).into(),
            string(3, "topic", true).into(),
            field(4, "partition", PrimitiveType::Int, true).into(),
            field(5, "offset", PrimitiveType::Long, true).into(),
            field(6, "key", PrimitiveType::Binary, false).into(),
            field(7, "value", PrimitiveType::Binary, false).into(),
            string(8, "headers", false).into(),
            string(9, "error_kind", true).into(),
            string(10, "error_message", true).into(),
            field(11, "ingested_at", PrimitiveType::Timestamptz, true).into(),
        ])
        .build()
        .map_err(CatalogError::iceberg("build schema", &name))?;
    let spec = UnboundPartitionSpec::builder()
        .with_spec_id(0)
        .add_partition_field(11, "ingested_at_day", Transform::Day)
        .map_err(CatalogError::iceberg("build partition spec", &name))?
        .build();
    Ok(TableSpec {
        name,
        schema,
        partition_spec: spec,
        properties: default_properties(),
    })
}

/// A silver or gold table with a schema decided by its transform.
pub fn derived_spec(
    name: TableName,
    schema: Schema,
    partition_spec: UnboundPartitionSpec,
) -> TableSpec {
    TableSpec {
        name,
        schema,
        partition_spec,
        properties: default_properties(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TenantRule;

    #[test]
    fn table_names_parse_and_print() {
        let name = TableName::parse("bronze.orders").unwrap();
        assert_eq!(name.to_string(), "bronze.orders");
        assert!(TableName::parse("orders").is_err());
        assert!(TableName::parse("platinum.orders").is_err());
        assert!(TableName::parse("bronze.Orders").is_err());
        assert!(TableName::parse("bronze.a.b").is_err());
    }

    #[test]
    fn bronze_spec_partitions_by_tenant_and_day() {
        let source = SourceConfig {
            table: "orders".into(),
            topic: "cdc.{tenant}.{db}.orders".into(),
            tenant: TenantRule::Topic,
            primary_key: None,
            time_partition: TimeGranularity::Day,
        };
        let spec = bronze_spec(&source).unwrap();
        let fields = spec.partition_spec.fields();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0].transform, Transform::Identity);
        assert_eq!(fields[1].transform, Transform::Day);
        assert!(
            spec.schema
                .field_by_name(bronze_columns::SOURCE_POS)
                .is_some()
        );
    }
}
