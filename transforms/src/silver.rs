//! The silver plan: the current state of a source table per (tenant, primary key), computed
//! from its bronze change log. Pure: this module builds a DataFusion logical plan from a
//! [`DataFrame`] and does no I/O of its own (no catalog, no files, no wall clock, no
//! randomness), so the same bronze rows always give the same silver rows.
//!
//! # Semantics
//!
//! - **Latest event wins.** Events are ordered per (`_firn_tenant`, key columns) by
//!   (`_firn_source_pos`, `_firn_offset`), newest first; the first one is the key's current
//!   state. A missing source position sorts before every recorded one (it is compared as the
//!   empty string). Remaining ties (the same position and offset, which exactly-once bronze
//!   never produces for one key) are broken by `_firn_topic` then `_firn_partition`, so the
//!   result never depends on scan order.
//! - **Deletes.** A key whose latest event is a delete (`d`) is not in silver. A key
//!   re-inserted after a delete is present with its re-inserted row.
//! - **Truncates.** A truncate event (`t`) of a tenant removes every key of that tenant whose
//!   latest event precedes the truncate in (`_firn_source_pos`, `_firn_offset`) order. Keys
//!   written after the truncate survive. Only the newest truncate of a tenant matters (an
//!   older one removes a subset of what the newest removes). Truncates of one tenant never
//!   touch another tenant. Offsets only order events of the same Kafka partition, so a
//!   truncate is compared with rows of other partitions by source position first, which is
//!   what orders them in the source database.
//!
//! # Output columns
//!
//! `tenant` (renamed from `_firn_tenant`), then the source columns in bronze order, then two
//! lineage columns kept from bronze: `_firn_source_ts` (when the source committed the row's
//! latest change) and `_firn_source_pos` (its source position, which an incremental run or a
//! reader can compare against bronze). Every other `_firn_*` column (op, topic, partition,
//! offset, ingest time) is dropped: they describe the event, not the row.

use datafusion::common::JoinType;
use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{Expr, ExprFunctionExt, SortExpr};
use datafusion::prelude::{coalesce, ident, lit};
use firn_catalog::tables::bronze_columns::{
    INGESTED_AT, OFFSET, OP, PARTITION, SOURCE_POS, SOURCE_TS, TENANT, TOPIC,
};

/// Name of the tenant column in silver.
pub const SILVER_TENANT: &str = "tenant";

/// Every bronze metadata column; the other bronze columns are source columns.
pub const BRONZE_METADATA_COLUMNS: [&str; 8] = [
    TENANT,
    OP,
    SOURCE_TS,
    SOURCE_POS,
    TOPIC,
    PARTITION,
    OFFSET,
    INGESTED_AT,
];

const ROW_NUMBER: &str = "__firn_row_number";
const TRUNCATE_TENANT: &str = "__firn_truncate_tenant";
const TRUNCATE_POS: &str = "__firn_truncate_pos";
const TRUNCATE_OFFSET: &str = "__firn_truncate_offset";

/// The source columns of a bronze table, in bronze order.
pub fn source_columns(bronze: &DataFrame) -> Vec<String> {
    bronze
        .schema()
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .filter(|name| !BRONZE_METADATA_COLUMNS.contains(&name.as_str()))
        .collect()
}

/// The source position as it is ordered: a missing position sorts first.
fn position() -> Expr {
    coalesce(vec![ident(SOURCE_POS), lit("")])
}

/// Newest event first, with deterministic tie-breakers (see the module docs).
fn newest_first() -> Vec<SortExpr> {
    vec![
        position().sort(false, false),
        ident(OFFSET).sort(false, false),
        ident(TOPIC).sort(false, false),
        ident(PARTITION).sort(false, false),
    ]
}

/// Builds the silver plan over a bronze change log; see the module docs for the semantics
/// and the output columns. `key_columns` are the source table's primary-key columns.
pub fn silver_plan(bronze: DataFrame, key_columns: &[String]) -> Result<DataFrame> {
    validate(&bronze, key_columns)?;
    let sources = source_columns(&bronze);

    // The newest non-truncate event of every (tenant, key).
    let mut partition_by = vec![ident(TENANT)];
    partition_by.extend(key_columns.iter().map(ident));
    let latest_per_key = row_number()
        .partition_by(partition_by)
        .order_by(newest_first())
        .build()?
        .alias(ROW_NUMBER);
    let latest = bronze
        .clone()
        .filter(ident(OP).not_eq(lit("t")))?
        .window(vec![latest_per_key])?
        .filter(ident(ROW_NUMBER).eq(lit(1u64)))?;

    // The newest truncate of every tenant.
    let latest_truncate = row_number()
        .partition_by(vec![ident(TENANT)])
        .order_by(newest_first())
        .build()?
        .alias(ROW_NUMBER);
    let truncates = bronze
        .filter(ident(OP).eq(lit("t")))?
        .window(vec![latest_truncate])?
        .filter(ident(ROW_NUMBER).eq(lit(1u64)))?
        .select(vec![
            ident(TENANT).alias(TRUNCATE_TENANT),
            position().alias(TRUNCATE_POS),
            ident(OFFSET).alias(TRUNCATE_OFFSET),
        ])?;

    let after_truncate = ident(TRUNCATE_TENANT)
        .is_null()
        .or(position().gt(ident(TRUNCATE_POS)))
        .or(position()
            .eq(ident(TRUNCATE_POS))
            .and(ident(OFFSET).gt(ident(TRUNCATE_OFFSET))));

    let mut output = vec![ident(TENANT).alias(SILVER_TENANT)];
    output.extend(sources.iter().map(ident));
    output.push(ident(SOURCE_TS));
    output.push(ident(SOURCE_POS));

    latest
        .join(
            truncates,
            JoinType::Left,
            &[TENANT],
            &[TRUNCATE_TENANT],
            None,
        )?
        .filter(after_truncate)?
        .filter(ident(OP).not_eq(lit("d")))?
        .select(output)
}

fn validate(bronze: &DataFrame, key_columns: &[String]) -> Result<()> {
    let schema = bronze.schema();
    let has = |name: &str| schema.fields().iter().any(|f| f.name() == name);
    let missing: Vec<&str> = [TENANT, OP, SOURCE_TS, SOURCE_POS, TOPIC, PARTITION, OFFSET]
        .into_iter()
        .filter(|name| !has(name))
        .collect();
    if !missing.is_empty() {
        return Err(DataFusionError::Plan(format!(
            "not a bronze change log: missing metadata columns {}",
            missing.join(", ")
        )));
    }
    if key_columns.is_empty() {
        return Err(DataFusionError::Plan(
            "no key columns: silver needs the source table's primary key".into(),
        ));
    }
    let sources = source_columns(bronze);
    for key in key_columns {
        if !sources.contains(key) {
            return Err(DataFusionError::Plan(format!(
                "key column `{key}` is not a source column of the bronze table (source columns: {})",
                sources.join(", ")
            )));
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(duplicate) = key_columns.iter().find(|k| !seen.insert(k.as_str())) {
        return Err(DataFusionError::Plan(format!(
            "key column `{duplicate}` is listed twice"
        )));
    }
    if sources.iter().any(|s| s == SILVER_TENANT) {
        return Err(DataFusionError::Plan(format!(
            "the source has a column named `{SILVER_TENANT}`, which silver reserves for the tenant"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use arrow_array::{Array, Int32Array, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;
    use proptest::prelude::*;

    use super::*;

    /// One bronze event: tenant, key, op, source position, offset, value.
    #[derive(Debug, Clone)]
    struct Event {
        tenant: &'static str,
        key: Option<i64>,
        op: &'static str,
        pos: Option<String>,
        offset: i64,
        value: i64,
    }

    fn ev(tenant: &'static str, key: i64, op: &'static str, pos: &str, offset: i64) -> Event {
        Event {
            tenant,
            key: Some(key),
            op,
            pos: Some(pos.to_string()),
            offset,
            value: offset * 10,
        }
    }

    fn truncate(tenant: &'static str, pos: &str, offset: i64) -> Event {
        Event {
            key: None,
            ..ev(tenant, 0, "t", pos, offset)
        }
    }

    fn batch(events: &[Event]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new(TENANT, DataType::Utf8, false),
            Field::new(OP, DataType::Utf8, false),
            Field::new(
                SOURCE_TS,
                DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("+00:00".into())),
                true,
            ),
            Field::new(SOURCE_POS, DataType::Utf8, true),
            Field::new(TOPIC, DataType::Utf8, false),
            Field::new(PARTITION, DataType::Int32, false),
            Field::new(OFFSET, DataType::Int64, false),
            Field::new(
                INGESTED_AT,
                DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("+00:00".into())),
                false,
            ),
            Field::new("id", DataType::Int64, true),
            Field::new("value", DataType::Int64, true),
        ]);
        let ts = arrow_array::TimestampMicrosecondArray::from(
            events.iter().map(|e| Some(e.offset)).collect::<Vec<_>>(),
        )
        .with_timezone("+00:00");
        let ingested = arrow_array::TimestampMicrosecondArray::from(vec![0; events.len()])
            .with_timezone("+00:00");
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from_iter_values(
                    events.iter().map(|e| e.tenant),
                )),
                Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.op))),
                Arc::new(ts),
                Arc::new(StringArray::from(
                    events.iter().map(|e| e.pos.clone()).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from_iter_values(
                    events.iter().map(|e| format!("cdc.{}.db.t", e.tenant)),
                )),
                Arc::new(Int32Array::from(vec![0; events.len()])),
                Arc::new(Int64Array::from_iter_values(
                    events.iter().map(|e| e.offset),
                )),
                Arc::new(ingested),
                Arc::new(Int64Array::from(
                    events.iter().map(|e| e.key).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    events.iter().map(|e| Some(e.value)).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    /// (tenant, id) → (value, source pos) of the silver output.
    type Rows = BTreeMap<(String, i64), (i64, Option<String>)>;

    async fn silver(events: &[Event]) -> Rows {
        let ctx = SessionContext::new();
        let bronze = ctx.read_batch(batch(events)).unwrap();
        let plan = silver_plan(bronze, &["id".to_string()]).unwrap();
        let columns: Vec<String> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            columns,
            ["tenant", "id", "value", SOURCE_TS, SOURCE_POS],
            "output columns"
        );
        let mut rows = Rows::new();
        for batch in plan.collect().await.unwrap() {
            let tenant = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let id = batch
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            let value = batch
                .column(2)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            let pos = batch
                .column(4)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            for i in 0..batch.num_rows() {
                let key = (tenant.value(i).to_string(), id.value(i));
                let row = (
                    value.value(i),
                    (!pos.is_null(i)).then(|| pos.value(i).to_string()),
                );
                assert!(rows.insert(key, row).is_none(), "one row per key");
            }
        }
        rows
    }

    /// The obvious replay of the semantics in the module docs, with no DataFusion.
    fn replay(events: &[Event]) -> Rows {
        let order = |e: &Event| (e.pos.clone().unwrap_or_default(), e.offset);
        let mut latest: BTreeMap<(String, Option<i64>), &Event> = BTreeMap::new();
        let mut truncates: BTreeMap<String, (String, i64)> = BTreeMap::new();
        for event in events {
            if event.op == "t" {
                let newest = truncates.entry(event.tenant.to_string()).or_default();
                if order(event) > *newest {
                    *newest = order(event);
                }
                continue;
            }
            let slot = latest
                .entry((event.tenant.to_string(), event.key))
                .or_insert(event);
            if order(event) > order(slot) {
                *slot = event;
            }
        }
        latest
            .into_iter()
            .filter(|(_, e)| e.op != "d")
            .filter(|((tenant, _), e)| truncates.get(tenant).is_none_or(|t| order(e) > *t))
            .filter_map(|((tenant, key), e)| Some(((tenant, key?), (e.value, e.pos.clone()))))
            .collect()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn latest_event_wins_by_position_then_offset() {
        let events = [
            ev("acme", 1, "c", "0002", 5),
            // An older position read later (e.g. another partition replay) does not win.
            ev("acme", 1, "u", "0001", 9),
            ev("acme", 2, "c", "0003", 1),
            // Same position: the higher offset wins.
            ev("acme", 2, "u", "0003", 2),
        ];
        let rows = silver(&events).await;
        assert_eq!(rows[&("acme".into(), 1)], (50, Some("0002".into())));
        assert_eq!(rows[&("acme".into(), 2)], (20, Some("0003".into())));
        assert_eq!(rows, replay(&events));
    }

    #[tokio::test]
    async fn deletes_remove_keys_and_reinserts_bring_them_back() {
        let events = [
            ev("acme", 1, "r", "0001", 1),
            ev("acme", 1, "d", "0002", 2),
            ev("acme", 2, "c", "0003", 3),
            ev("acme", 2, "d", "0004", 4),
            ev("acme", 2, "c", "0005", 5),
            ev("acme", 3, "c", "0006", 6),
        ];
        let rows = silver(&events).await;
        let keys: BTreeSet<i64> = rows.keys().map(|(_, id)| *id).collect();
        assert_eq!(keys, BTreeSet::from([2, 3]));
        assert_eq!(rows[&("acme".into(), 2)].0, 50);
    }

    #[tokio::test]
    async fn tenants_are_independent() {
        let events = [
            ev("acme", 1, "c", "0001", 1),
            ev("globex", 1, "c", "0001", 1),
            ev("globex", 1, "d", "0002", 2),
            ev("initech", 1, "c", "0009", 1),
            truncate("initech", "0010", 2),
        ];
        let rows = silver(&events).await;
        assert_eq!(
            rows.keys().cloned().collect::<Vec<_>>(),
            vec![("acme".to_string(), 1)]
        );
    }

    #[tokio::test]
    async fn a_truncate_removes_only_keys_written_before_it() {
        let events = [
            ev("acme", 1, "c", "0001", 1),
            ev("acme", 2, "c", "0002", 2),
            truncate("acme", "0003", 3),
            ev("acme", 3, "c", "0004", 4),
            // Key 1 written again after the truncate: present.
            ev("acme", 1, "u", "0005", 5),
            // An older truncate changes nothing.
            truncate("acme", "0000", 0),
        ];
        let rows = silver(&events).await;
        let keys: BTreeSet<i64> = rows.keys().map(|(_, id)| *id).collect();
        assert_eq!(keys, BTreeSet::from([1, 3]));
        assert_eq!(rows, replay(&events));
    }

    #[tokio::test]
    async fn a_missing_position_sorts_first() {
        let mut unknown = ev("acme", 1, "u", "", 9);
        unknown.pos = None;
        let events = [ev("acme", 1, "c", "0001", 1), unknown];
        let rows = silver(&events).await;
        assert_eq!(rows[&("acme".into(), 1)], (10, Some("0001".into())));
    }

    #[tokio::test]
    async fn bad_key_columns_are_refused() {
        let ctx = SessionContext::new();
        let bronze = ctx.read_batch(batch(&[])).unwrap();
        let err = silver_plan(bronze.clone(), &["nope".to_string()]).unwrap_err();
        assert!(err.to_string().contains("key column `nope`"), "{err}");
        let err = silver_plan(bronze.clone(), &[]).unwrap_err();
        assert!(err.to_string().contains("no key columns"), "{err}");
        let err = silver_plan(bronze, &[OFFSET.to_string()]).unwrap_err();
        assert!(err.to_string().contains("not a source column"), "{err}");
    }

    fn arb_events() -> impl Strategy<Value = Vec<Event>> {
        let tenants = prop_oneof![Just("acme"), Just("globex")];
        let ops = prop_oneof![
            3 => Just("c"),
            3 => Just("u"),
            1 => Just("r"),
            2 => Just("d"),
            1 => Just("t"),
        ];
        let pos = proptest::option::weighted(0.9, 0u32..8);
        let event = (tenants, 0i64..5, ops, pos);
        (0usize..40)
            .prop_flat_map(move |n| {
                // Unique offsets in a random order: arrival order is not source order.
                let offsets = Just((0..n as i64).collect::<Vec<_>>()).prop_shuffle();
                (proptest::collection::vec(event.clone(), n), offsets)
            })
            .prop_map(|(events, offsets)| {
                events
                    .into_iter()
                    .zip(offsets)
                    .map(|((tenant, key, op, pos), offset)| Event {
                        tenant,
                        key: (op != "t").then_some(key),
                        op,
                        pos: pos.map(|p| format!("{p:04}")),
                        offset,
                        value: offset * 10 + key,
                    })
                    .collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn silver_equals_a_naive_replay(events in arb_events()) {
            let rows = rt().block_on(silver(&events));
            prop_assert_eq!(rows, replay(&events));
        }
    }
}
