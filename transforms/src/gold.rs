//! The gold model registry. Pure: no I/O here.
//!
//! A gold model is a SQL query (DataFusion dialect, `sql/gold/<name>.sql`) over silver tables
//! and other gold models, with a declared key and partition columns (from the pipeline
//! config). [`GoldModel::new`] parses the query once: it must be a single `SELECT`/`WITH`
//! query, and every table it reads must be `silver.<table>` or `gold.<model>`; the tables it
//! reads are the model's inputs. [`run_order`] orders models so that a model runs after the
//! gold models it reads, and refuses cycles and reads of unconfigured gold models.
//!
//! [`model_fingerprint`] identifies what a model computes (SQL, key, partitioning), so a
//! changed model is recomputed even when its inputs did not move.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use datafusion::sql::TableReference;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::resolve::resolve_table_references;
use datafusion::sql::sqlparser::ast::{SetExpr, Statement as SqlStatement};
use firn_catalog::config::GoldModelConfig;
use firn_catalog::{TableName, Tier};

use crate::error::TransformError;

/// One gold model: its SQL and what it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldModel {
    /// The model name; the output table is `gold.<name>`.
    pub name: String,
    pub sql_text: String,
    /// Columns that identify a row of the output; unique in every result.
    pub key: Vec<String>,
    /// Output columns the table is partitioned by (identity transforms).
    pub partition_by: Vec<String>,
    /// Whether the relay pushes this model to StarRocks.
    pub relay: bool,
    /// Tables the query reads, `silver.<table>` or `gold.<model>`, sorted, no duplicates.
    pub inputs: Vec<String>,
}

impl GoldModel {
    /// Builds a model from its configuration and SQL text, parsing the SQL to find its inputs.
    pub fn new(config: &GoldModelConfig, sql_text: String) -> Result<Self, TransformError> {
        TableName::new(Tier::Gold, &config.name)?;
        let inputs = model_inputs(&config.name, &sql_text)?;
        if config.key.is_empty() {
            return Err(invalid(&config.name, "the model declares no key columns"));
        }
        Ok(GoldModel {
            name: config.name.clone(),
            sql_text,
            key: config.key.clone(),
            partition_by: config.partition_by.clone(),
            relay: config.relay,
            inputs,
        })
    }

    /// `gold.<name>`.
    pub fn table_name(&self) -> Result<TableName, TransformError> {
        Ok(TableName::new(Tier::Gold, &self.name)?)
    }

    /// The gold models this model reads (names without the `gold.` prefix).
    pub fn gold_inputs(&self) -> impl Iterator<Item = &str> {
        self.inputs
            .iter()
            .filter_map(|input| input.strip_prefix("gold."))
    }
}

/// Where a model's SQL file is: its configured path, or `sql/gold/<name>.sql`, relative to
/// the config's base directory.
pub fn model_sql_path(base_dir: &Path, model: &GoldModelConfig) -> PathBuf {
    match &model.sql {
        Some(path) => base_dir.join(path),
        None => base_dir
            .join("sql")
            .join("gold")
            .join(format!("{}.sql", model.name)),
    }
}

/// The tables a model's SQL reads, as sorted `silver.<table>`/`gold.<model>` names.
/// Refuses anything but one `SELECT`/`WITH` query, and reads outside `silver`/`gold`.
pub fn model_inputs(model: &str, sql: &str) -> Result<Vec<String>, TransformError> {
    let mut statements = DFParser::parse_sql(sql)
        .map_err(|err| invalid(model, format!("the SQL does not parse: {err}")))?;
    if statements.len() != 1 {
        return Err(invalid(
            model,
            format!(
                "the SQL must be exactly one query, found {} statements",
                statements.len()
            ),
        ));
    }
    let statement = statements.pop_front().unwrap_or_else(|| unreachable!());
    let is_query = match &statement {
        Statement::Statement(inner) => match inner.as_ref() {
            SqlStatement::Query(query) => match query.body.as_ref() {
                SetExpr::Select(select) => select.into.is_none(),
                _ => true,
            },
            _ => false,
        },
        _ => false,
    };
    if !is_query {
        return Err(invalid(
            model,
            "the SQL must be a single SELECT or WITH query",
        ));
    }
    let (tables, _ctes) = resolve_table_references(&statement, true)
        .map_err(|err| invalid(model, format!("cannot resolve the tables read: {err}")))?;
    let mut inputs = BTreeSet::new();
    for table in tables {
        let TableReference::Partial { schema, table } = &table else {
            return Err(invalid(
                model,
                format!("reads `{table}`; models may read only silver.<table> and gold.<model>"),
            ));
        };
        let tier = match schema.as_ref() {
            "silver" => Tier::Silver,
            "gold" => Tier::Gold,
            other => {
                return Err(invalid(
                    model,
                    format!(
                        "reads `{other}.{table}`; models may read only silver.<table> and gold.<model>"
                    ),
                ));
            }
        };
        let name = TableName::new(tier, table)
            .map_err(|err| invalid(model, format!("reads `{schema}.{table}`: {err}")))?;
        inputs.insert(name.to_string());
    }
    if inputs.is_empty() {
        return Err(invalid(model, "the SQL reads no silver or gold table"));
    }
    Ok(inputs.into_iter().collect())
}

/// Orders models so each runs after the gold models it reads (ties by configuration
/// order). Refuses a read of a gold model that is not configured, and dependency cycles.
pub fn run_order(models: &[GoldModel]) -> Result<Vec<&GoldModel>, TransformError> {
    let index: BTreeMap<&str, usize> = models
        .iter()
        .enumerate()
        .map(|(i, model)| (model.name.as_str(), i))
        .collect();
    for model in models {
        if let Some(missing) = model.gold_inputs().find(|dep| !index.contains_key(dep)) {
            return Err(invalid(
                &model.name,
                format!("reads gold.{missing}, which is not a configured gold model"),
            ));
        }
    }
    // Depth-first, in configuration order; `Visiting` on the stack means a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    fn visit<'a>(
        at: usize,
        models: &'a [GoldModel],
        index: &BTreeMap<&str, usize>,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
        order: &mut Vec<&'a GoldModel>,
    ) -> Result<(), TransformError> {
        match marks[at] {
            Mark::Done => return Ok(()),
            Mark::Visiting => {
                let start = path.iter().position(|&i| i == at).unwrap_or(0);
                let cycle: Vec<&str> = path[start..]
                    .iter()
                    .chain(std::iter::once(&at))
                    .map(|&i| models[i].name.as_str())
                    .collect();
                return Err(invalid(
                    &models[at].name,
                    format!(
                        "gold models read each other in a cycle: {}",
                        cycle.join(" -> ")
                    ),
                ));
            }
            Mark::New => {}
        }
        marks[at] = Mark::Visiting;
        path.push(at);
        for dep in models[at].gold_inputs() {
            visit(index[dep], models, index, marks, path, order)?;
        }
        path.pop();
        marks[at] = Mark::Done;
        order.push(&models[at]);
        Ok(())
    }
    let mut marks = vec![Mark::New; models.len()];
    let mut order = Vec::with_capacity(models.len());
    for at in 0..models.len() {
        visit(at, models, &index, &mut marks, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

/// A stable fingerprint of what a model computes: its SQL text, key and partitioning
/// (FNV-1a 64, hex). Recorded in every gold snapshot so an edited model is recomputed.
pub fn model_fingerprint(model: &GoldModel) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator no identifier or SQL text byte sequence can fake at a field boundary.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    };
    feed(model.sql_text.as_bytes());
    feed(model.key.join("\u{1f}").as_bytes());
    feed(model.partition_by.join("\u{1f}").as_bytes());
    format!("{hash:016x}")
}

fn invalid(model: &str, message: impl Into<String>) -> TransformError {
    TransformError::InvalidModel {
        model: model.to_string(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> GoldModelConfig {
        GoldModelConfig {
            name: name.to_string(),
            sql: None,
            key: vec!["tenant".into(), "id".into()],
            partition_by: vec!["tenant".into()],
            relay: false,
            relay_keys: Default::default(),
        }
    }

    fn model(name: &str, sql: &str) -> GoldModel {
        GoldModel::new(&config(name), sql.to_string()).unwrap()
    }

    fn refused(name: &str, sql: &str) -> String {
        let err = GoldModel::new(&config(name), sql.to_string()).unwrap_err();
        assert!(err.is_bad_input(), "{err}");
        let text = err.to_string();
        assert!(text.contains(name), "names the model: {text}");
        text
    }

    #[test]
    fn inputs_are_the_silver_and_gold_tables_read() {
        let m = model(
            "facts",
            "WITH items AS (SELECT tenant, order_id FROM silver.order_items) \
             SELECT o.tenant, o.id FROM silver.orders o \
             LEFT JOIN items i ON i.order_id = o.id \
             WHERE o.id IN (SELECT id FROM Silver.Orders) \
             UNION ALL SELECT tenant, id FROM gold.other",
        );
        assert_eq!(
            m.inputs,
            ["gold.other", "silver.order_items", "silver.orders"]
        );
        assert_eq!(m.gold_inputs().collect::<Vec<_>>(), ["other"]);
    }

    #[test]
    fn anything_but_one_query_is_refused() {
        for sql in [
            "INSERT INTO silver.orders SELECT * FROM silver.orders",
            "DELETE FROM silver.orders",
            "DROP TABLE silver.orders",
            "CREATE TABLE x AS SELECT * FROM silver.orders",
            "SELECT * FROM silver.orders; SELECT * FROM silver.customers",
            "SELECT * INTO gold.x FROM silver.orders",
            "",
        ] {
            let text = refused("bad_model", sql);
            assert!(
                text.contains("query") || text.contains("statements") || text.contains("parse"),
                "{sql}: {text}"
            );
        }
        refused("bad_model", "SELEC nonsense FROM");
    }

    #[test]
    fn reads_outside_silver_and_gold_are_refused() {
        for sql in [
            "SELECT * FROM bronze.orders",
            "SELECT * FROM orders",
            "SELECT * FROM datafusion.silver.orders",
            "SELECT * FROM information_schema.tables",
            "SELECT 1",
        ] {
            refused("sneaky", sql);
        }
        let text = refused(
            "sneaky",
            "SELECT * FROM silver.orders JOIN bronze.orders USING (id)",
        );
        assert!(text.contains("bronze.orders"), "{text}");
    }

    #[test]
    fn run_order_puts_dependencies_first() {
        let models = vec![
            model("c", "SELECT * FROM gold.b JOIN gold.a USING (id)"),
            model("b", "SELECT * FROM gold.a"),
            model("a", "SELECT * FROM silver.orders"),
            model("d", "SELECT * FROM silver.customers"),
        ];
        let order: Vec<&str> = run_order(&models)
            .unwrap()
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
        assert!(run_order(&[]).unwrap().is_empty());
    }

    #[test]
    fn run_order_refuses_cycles_and_unknown_models() {
        let models = vec![
            model("a", "SELECT * FROM gold.c"),
            model("b", "SELECT * FROM gold.a"),
            model("c", "SELECT * FROM gold.b"),
        ];
        let err = run_order(&models).unwrap_err();
        assert!(err.is_bad_input());
        assert!(err.to_string().contains("cycle"), "{err}");
        assert!(err.to_string().contains("a -> c -> b -> a"), "{err}");

        let selfish = vec![model("me", "SELECT * FROM gold.me")];
        assert!(
            run_order(&selfish)
                .unwrap_err()
                .to_string()
                .contains("cycle")
        );

        let orphan = vec![model("x", "SELECT * FROM gold.nope")];
        let err = run_order(&orphan).unwrap_err();
        assert!(err.to_string().contains("gold.nope"), "{err}");
    }

    #[test]
    fn fingerprint_changes_with_the_model() {
        let a = model("m", "SELECT * FROM silver.orders");
        assert_eq!(model_fingerprint(&a), model_fingerprint(&a.clone()));
        let mut b = a.clone();
        b.sql_text.push(' ');
        assert_ne!(model_fingerprint(&a), model_fingerprint(&b));
        let mut c = a.clone();
        c.key = vec!["tenant".into()];
        assert_ne!(model_fingerprint(&a), model_fingerprint(&c));
    }

    #[test]
    fn sql_path_defaults_under_sql_gold() {
        let pipeline = Path::new("/etc/firn");
        assert_eq!(
            model_sql_path(pipeline, &config("facts")),
            PathBuf::from("/etc/firn/sql/gold/facts.sql")
        );
        let mut custom = config("facts");
        custom.sql = Some("models/f.sql".into());
        assert_eq!(
            model_sql_path(pipeline, &custom),
            PathBuf::from("/etc/firn/models/f.sql")
        );
    }
}
