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
//! `tenant` (renamed from `_firn_tenant`), then the source columns in bronze order, then the
//! lineage of the row's latest change, kept from bronze ([`SILVER_LINEAGE_COLUMNS`]):
//! `_firn_source_ts` (when the source committed it), `_firn_source_pos` (its source
//! position), and `_firn_topic`, `_firn_partition`, `_firn_offset` (where it was read in
//! Kafka). Together they are the row's place in the event order, which an incremental run
//! compares new events against. `_firn_op` and `_firn_ingested_at` are dropped: the op of a
//! live row is never a delete, and the ingest time describes firn, not the source.
//!
//! # Incremental runs
//!
//! [`incremental_silver_plan`] computes the new state of some tenants from their previous
//! silver rows, the delete and truncate events of their older bronze, and the bronze events
//! added since. It equals [`silver_plan`] over all their bronze events: a key's newest event
//! is either new, or its previous silver row (which is its newest older event when it is
//! live), or an older delete (kept); an older event that a truncate removed loses to that
//! truncate whatever happens later, unless a newer event replaces it. Events given twice
//! (the same event in the older and the new part) change nothing.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::JoinType;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use datafusion::functions::core::expr_fn::{get_field, named_struct};
use datafusion::logical_expr::Expr;
use datafusion::prelude::{cast, coalesce, ident, lit};
use firn_catalog::tables::bronze_columns::{
    INGESTED_AT, OFFSET, OP, PARTITION, SOURCE_POS, SOURCE_TS, TENANT, TOPIC,
};

use crate::latest::latest_row;

/// Name of the tenant column in silver.
pub const SILVER_TENANT: &str = "tenant";

/// The bronze metadata columns silver keeps, after the source columns, in this order.
pub const SILVER_LINEAGE_COLUMNS: [&str; 5] = [SOURCE_TS, SOURCE_POS, TOPIC, PARTITION, OFFSET];

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

const LATEST: &str = "__firn_latest";
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

/// The newest row of every `group_by` group of `frame`, with `columns`: the greatest by
/// (position, offset, topic, partition), the deterministic order of the module docs. One
/// hash aggregation ([`latest_row`]): no event is sorted, and a row is copied only when it
/// wins.
fn newest_per(frame: DataFrame, group_by: Vec<Expr>, columns: &[&str]) -> Result<DataFrame> {
    let mut fields = Vec::new();
    for column in columns {
        fields.push(lit(*column));
        fields.push(ident(*column));
    }
    let key = named_struct(vec![
        lit("position"),
        position(),
        lit(OFFSET),
        ident(OFFSET),
        lit(TOPIC),
        ident(TOPIC),
        lit(PARTITION),
        ident(PARTITION),
    ]);
    frame
        .aggregate(
            group_by,
            vec![latest_row(named_struct(fields), key).alias(LATEST)],
        )?
        .select(
            columns
                .iter()
                .map(|column| get_field(ident(LATEST), *column).alias(*column))
                .collect::<Vec<_>>(),
        )
}

/// Builds the silver plan over a bronze change log; see the module docs for the semantics
/// and the output columns. `key_columns` are the source table's primary-key columns.
pub fn silver_plan(bronze: DataFrame, key_columns: &[String]) -> Result<DataFrame> {
    validate(&bronze, key_columns)?;
    let sources = source_columns(&bronze);

    // The newest non-truncate event of every (tenant, key), with what silver outputs and
    // its op.
    let mut group_by = vec![ident(TENANT)];
    group_by.extend(key_columns.iter().map(ident));
    let mut carried = vec![TENANT, OP];
    carried.extend(sources.iter().map(String::as_str));
    carried.extend(SILVER_LINEAGE_COLUMNS);
    let latest = newest_per(
        bronze.clone().filter(ident(OP).not_eq(lit("t")))?,
        group_by,
        &carried,
    )?;

    // The newest truncate of every tenant.
    let truncates = newest_per(
        bronze.filter(ident(OP).eq(lit("t")))?,
        vec![ident(TENANT)],
        &[TENANT, SOURCE_POS, OFFSET, TOPIC, PARTITION],
    )?
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
    output.extend(SILVER_LINEAGE_COLUMNS.into_iter().map(ident));

    // The truncates (a few rows) are the join's build side; the latest rows stream through.
    truncates
        .join(latest, JoinType::Right, &[TRUNCATE_TENANT], &[TENANT], None)?
        .filter(after_truncate)?
        .filter(ident(OP).not_eq(lit("d")))?
        .select(output)
}

/// The new silver rows of a set of tenants, incrementally; see "Incremental runs" in the
/// module docs. Every input must be restricted to the same tenants, and the result replaces
/// all silver rows of those tenants:
///
/// - `previous`: their rows in the previous silver snapshot (silver columns);
/// - `older`: the bronze events that snapshot was computed from, or any part of them that
///   holds all their deletes and truncates (other events are ignored);
/// - `delta`: the bronze events added since (more is harmless: an event in both `older`
///   and `delta` counts once).
///
/// Output columns are those of [`silver_plan`] over `delta`'s columns; previous rows lack
/// bronze columns added since (null, as in the bronze rows they came from) and are cast
/// to `delta`'s types where bronze widened one.
pub fn incremental_silver_plan(
    previous: DataFrame,
    older: DataFrame,
    delta: DataFrame,
    key_columns: &[String],
) -> Result<DataFrame> {
    validate(&delta, key_columns)?;
    let has =
        |frame: &DataFrame, name: &str| frame.schema().fields().iter().any(|f| f.name() == name);
    let missing: Vec<&str> = std::iter::once(SILVER_TENANT)
        .chain(SILVER_LINEAGE_COLUMNS)
        .filter(|name| !has(&previous, name))
        .collect();
    if !missing.is_empty() {
        return Err(DataFusionError::Plan(format!(
            "the previous silver rows lack the columns {}; run a full rebuild",
            missing.join(", ")
        )));
    }
    let columns: Vec<(String, DataType)> = delta
        .schema()
        .fields()
        .iter()
        .map(|field| (field.name().clone(), field.data_type().clone()))
        .collect();
    let null = || lit(ScalarValue::Null);

    // Previous rows as the events they are the newest of.
    let as_events: Vec<Expr> = columns
        .iter()
        .map(|(name, data_type)| {
            let value = match name.as_str() {
                TENANT => ident(SILVER_TENANT),
                OP => lit("c"),
                INGESTED_AT => null(),
                other if has(&previous, other) => ident(other),
                _ => null(),
            };
            cast(value, data_type.clone()).alias(name)
        })
        .collect();
    let previous_events = previous.select(as_events)?;

    let older_events = older
        .clone()
        .filter(ident(OP).in_list(vec![lit("d"), lit("t")], false))?
        .select(
            columns
                .iter()
                .map(|(name, data_type)| {
                    let value = if has(&older, name) {
                        ident(name)
                    } else {
                        null()
                    };
                    cast(value, data_type.clone()).alias(name)
                })
                .collect::<Vec<_>>(),
        )?;
    let new_events = delta.select(
        columns
            .iter()
            .map(|(name, _)| ident(name))
            .collect::<Vec<_>>(),
    )?;
    silver_plan(
        new_events.union(previous_events)?.union(older_events)?,
        key_columns,
    )
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
        partition: i32,
        offset: i64,
        value: i64,
    }

    fn ev(tenant: &'static str, key: i64, op: &'static str, pos: &str, offset: i64) -> Event {
        Event {
            tenant,
            key: Some(key),
            op,
            pos: Some(pos.to_string()),
            partition: 0,
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
                Arc::new(Int32Array::from_iter_values(
                    events.iter().map(|e| e.partition),
                )),
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
            [
                "tenant", "id", "value", SOURCE_TS, SOURCE_POS, TOPIC, PARTITION, OFFSET
            ],
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
        let event = (tenants, 0i64..5, ops, pos, 0i32..2);
        // (which event, where): exact copies of events delivered again later.
        let duplicates = proptest::collection::vec((0usize..64, 0usize..64), 0..4);
        (0usize..40)
            .prop_flat_map(move |n| {
                // Unique offsets in a random order: arrival order is not source order.
                let offsets = Just((0..n as i64).collect::<Vec<_>>()).prop_shuffle();
                (
                    proptest::collection::vec(event.clone(), n),
                    offsets,
                    duplicates.clone(),
                )
            })
            .prop_map(|(events, offsets, duplicates)| {
                let mut events: Vec<Event> = events
                    .into_iter()
                    .zip(offsets)
                    .map(|((tenant, key, op, pos, partition), offset)| Event {
                        tenant,
                        key: (op != "t").then_some(key),
                        op,
                        pos: pos.map(|p| format!("{p:04}")),
                        partition,
                        offset,
                        value: offset * 10 + key,
                    })
                    .collect();
                for (which, at) in duplicates {
                    if let Some(copy) = events.get(which % events.len().max(1)).cloned() {
                        let at = at % (events.len() + 1);
                        events.insert(at.max(which % events.len() + 1), copy);
                    }
                }
                events
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

    /// Every output row rendered as strings, all columns.
    fn rendered(batches: &[RecordBatch]) -> BTreeSet<Vec<String>> {
        let mut rows = BTreeSet::new();
        for batch in batches {
            for i in 0..batch.num_rows() {
                let row = batch
                    .columns()
                    .iter()
                    .map(|column| {
                        datafusion::arrow::util::display::array_value_to_string(column, i).unwrap()
                    })
                    .collect();
                assert!(rows.insert(row), "no row twice");
            }
        }
        rows
    }

    fn keys() -> Vec<String> {
        vec!["id".to_string()]
    }

    async fn full(ctx: &SessionContext, events: &[Event]) -> Vec<RecordBatch> {
        let bronze = ctx.read_batch(batch(events)).unwrap();
        silver_plan(bronze, &keys())
            .unwrap()
            .collect()
            .await
            .unwrap()
    }

    fn memory(
        ctx: &SessionContext,
        schema: &arrow_schema::SchemaRef,
        rows: Vec<RecordBatch>,
    ) -> DataFrame {
        let table = datafusion::datasource::MemTable::try_new(schema.clone(), vec![rows]).unwrap();
        ctx.read_table(Arc::new(table)).unwrap()
    }

    fn tenant_in(tenants: &BTreeSet<&'static str>, negated: bool) -> Expr {
        let list = tenants.iter().map(|t| lit(*t)).collect();
        ident(SILVER_TENANT).in_list(list, negated)
    }

    /// Silver computed once over the events before the first split, then incrementally
    /// over each later segment (each segment's delta starting `overlap` events early, as
    /// a re-read of already applied events would).
    async fn incremental(events: &[Event], splits: &[usize], overlap: usize) -> Vec<RecordBatch> {
        let ctx = SessionContext::new();
        let mut bounds: Vec<usize> = splits.iter().map(|s| s % (events.len() + 1)).collect();
        bounds.sort_unstable();
        bounds.insert(0, 0);
        bounds.push(events.len());
        let schema: arrow_schema::SchemaRef = {
            let plan = silver_plan(ctx.read_batch(batch(&[])).unwrap(), &keys()).unwrap();
            Arc::new(plan.schema().as_arrow().clone())
        };
        let mut state = full(&ctx, &events[..bounds[1]]).await;
        for window in bounds[1..].windows(2) {
            let (from, to) = (window[0], window[1]);
            let delta = &events[from.saturating_sub(overlap)..to];
            let changed: BTreeSet<&'static str> = delta.iter().map(|e| e.tenant).collect();
            let older: Vec<Event> = events[..from]
                .iter()
                .filter(|e| changed.contains(e.tenant))
                .cloned()
                .collect();
            let previous = memory(&ctx, &schema, state.clone())
                .filter(tenant_in(&changed, false))
                .unwrap();
            let kept = memory(&ctx, &schema, state)
                .filter(tenant_in(&changed, true))
                .unwrap();
            let new = incremental_silver_plan(
                previous,
                ctx.read_batch(batch(&older)).unwrap(),
                ctx.read_batch(batch(delta)).unwrap(),
                &keys(),
            )
            .unwrap();
            state = kept.union(new).unwrap().collect().await.unwrap();
        }
        state
    }

    #[tokio::test]
    async fn incremental_keeps_late_deletes_and_truncates() {
        let mut late_insert = ev("acme", 1, "c", "0001", 4);
        late_insert.partition = 1;
        let events = [
            ev("acme", 1, "d", "0005", 1),
            truncate("globex", "0009", 2),
            ev("acme", 2, "c", "0002", 3),
            // Split here: an older insert of key 1 arrives from another partition after its
            // delete, and an older globex row after the truncate; neither may come back.
            late_insert,
            ev("globex", 7, "c", "0008", 5),
            ev("acme", 2, "u", "0002", 6),
        ];
        let ctx = SessionContext::new();
        let expected = rendered(&full(&ctx, &events).await);
        let got = rendered(&incremental(&events, &[3], 0).await);
        assert_eq!(got, expected);
        assert_eq!(got.len(), 1, "only acme key 2: {got:?}");
        assert!(
            got.iter().all(|row| row[2] == "60"),
            "the later offset wins: {got:?}"
        );
    }

    #[test]
    fn incremental_refuses_previous_rows_without_lineage() {
        rt().block_on(async {
            let ctx = SessionContext::new();
            let bronze = ctx.read_batch(batch(&[])).unwrap();
            let previous = bronze
                .clone()
                .select(vec![ident(TENANT).alias(SILVER_TENANT)])
                .unwrap();
            let err =
                incremental_silver_plan(previous, bronze.clone(), bronze, &keys()).unwrap_err();
            assert!(err.to_string().contains("full rebuild"), "{err}");
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn incremental_equals_full_for_any_splits(
            events in arb_events(),
            splits in proptest::collection::vec(0usize..64, 0..4),
            overlap in 0usize..3,
        ) {
            let (full_rows, incremental_rows) = rt().block_on(async {
                let ctx = SessionContext::new();
                (
                    rendered(&full(&ctx, &events).await),
                    rendered(&incremental(&events, &splits, overlap).await),
                )
            });
            prop_assert_eq!(&incremental_rows, &full_rows);
            prop_assert_eq!(incremental_rows.len(), replay(&events).len());
        }
    }
}
