//! Tests of the relay's pure parts together ([`state`](super::state), [`shape`](super::shape),
//! [`batch`](super::batch)) over generated Debezium streams, decoded as the relay decodes
//! them: the hot table a sequence of loads leaves behind does not depend on where batches
//! are cut, on how the topic-partitions interleave, nor on whether schemaless or
//! schema-embedded tenants arrive first.

use std::collections::BTreeMap;
use std::time::Instant;

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::batch::OpenBatch;
use super::shape::tests::model;
use super::shape::{self, NotReady, RelayModel};
use super::state::{Change, GoldKey, ModelState};
use crate::debezium::{Decoded, decode};
use crate::dedup::{Watermarks, key_op_hash};
use crate::generator::{Generator, GeneratorConfig, SchemaMode};

const PARTITIONS: i32 = 2;

/// One Kafka message of an input topic, as the relay sees it.
#[derive(Debug, Clone)]
struct Message {
    topic: String,
    partition: i32,
    offset: i64,
    tenant: String,
    table: String,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// The generated stream's `orders` and `order_items` messages, split into topic-partitions
/// by key (as a producer's partitioner does), each in offset order.
fn partitions(schemas: SchemaMode, seed: u64) -> Vec<Vec<Message>> {
    let config = GeneratorConfig {
        seed,
        orders: 24,
        customers: 6,
        products: 4,
        schemas,
        ..GeneratorConfig::default()
    };
    let mut streams: BTreeMap<(String, i32), Vec<Message>> = BTreeMap::new();
    for message in Generator::new(&config).unwrap() {
        let mut segments = message.topic.split('.');
        let (Some(_), Some(tenant), Some(_), Some(table)) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            panic!("unexpected topic {}", message.topic);
        };
        if table != "orders" && table != "order_items" {
            continue;
        }
        let hash = message
            .key
            .as_deref()
            .unwrap_or_default()
            .iter()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(*b)));
        let partition = (hash % PARTITIONS as u32) as i32;
        let stream = streams
            .entry((message.topic.clone(), partition))
            .or_default();
        stream.push(Message {
            topic: message.topic.clone(),
            partition,
            offset: stream.len() as i64,
            tenant: tenant.to_string(),
            table: table.to_string(),
            key: message.key,
            value: message.value,
        });
    }
    streams.into_values().collect()
}

/// The hot table: rows by key, upserts applied only when their `relay_version` is at least
/// the stored one (`merge_condition`), deletes unconditional, as StarRocks does.
#[derive(Debug, Default, PartialEq)]
struct HotTable(BTreeMap<(String, i64), Map<String, Value>>);

impl HotTable {
    fn load(&mut self, body: &[u8]) {
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let mut row: Map<String, Value> = serde_json::from_slice(line).unwrap();
            let key = (
                row["tenant"].as_str().unwrap().to_string(),
                row["order_id"].as_i64().unwrap(),
            );
            if row["__op"] == 1 {
                self.0.remove(&key);
                continue;
            }
            // The label names the load, which differs between runs cut differently.
            row.remove(super::RELAY_LABEL);
            row.remove("__op");
            let version = row[super::RELAY_VERSION].as_i64().unwrap();
            let stored = self
                .0
                .get(&key)
                .map(|r| r[super::RELAY_VERSION].as_i64().unwrap());
            if stored.is_none_or(|stored| version >= stored) {
                self.0.insert(key, row);
            }
        }
    }
}

/// What the relay loop does with messages, without Kafka and StarRocks.
struct Relay {
    model: RelayModel,
    state: ModelState,
    watermarks: Watermarks,
    open: OpenBatch,
    hot: HotTable,
    loads: usize,
}

impl Relay {
    fn new() -> Relay {
        let model = model();
        Relay {
            state: ModelState::new(model.inputs.clone()),
            model,
            watermarks: Watermarks::default(),
            open: OpenBatch::default(),
            hot: HotTable::default(),
            loads: 0,
        }
    }

    fn consume(&mut self, message: &Message) {
        let mut keys: Vec<GoldKey> = Vec::new();
        if let Decoded::Change(event) =
            decode(message.key.as_deref(), message.value.as_deref()).unwrap()
        {
            let key_op = key_op_hash(&event.key, event.op.code());
            let admitted = self.watermarks.admit(
                &message.topic,
                message.partition,
                event.source_pos.as_deref(),
                &key_op,
            );
            if admitted {
                let change = Change {
                    tenant: message.tenant.clone(),
                    event,
                    topic: message.topic.clone(),
                    partition: message.partition,
                    offset: message.offset,
                };
                keys = self.state.apply(&message.table, &change).unwrap();
                if self.state.take_retyped() {
                    keys.extend(self.state.live_keys());
                }
            }
        }
        self.open.add(
            &message.topic,
            message.partition,
            message.offset,
            keys,
            None,
            Instant::now(),
        );
    }

    /// Cuts the open batch and loads it, unless the model cannot run yet (the batch then
    /// stays open, as in the relay).
    async fn cut(&mut self, allow_inferred: bool) -> Result<(), NotReady> {
        let closed = self.open.clone().take();
        if closed.keys.is_empty() {
            self.open = OpenBatch::default();
            return Ok(());
        }
        let label = format!("load-{}", self.loads);
        let shaped = shape::shape(
            &self.model,
            &self.state,
            &closed.keys,
            &label,
            allow_inferred,
        )
        .await
        .expect("shaping never fails with an error on a valid stream")?;
        self.hot.load(&shaped.body);
        self.open = OpenBatch::default();
        self.loads += 1;
        Ok(())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// The hot table of one batch over the stream read one partition after another.
async fn reference(streams: &[Vec<Message>]) -> HotTable {
    let mut relay = Relay::new();
    for message in streams.iter().flatten() {
        relay.consume(message);
    }
    relay.cut(true).await.unwrap();
    assert!(relay.hot.0.len() > 20, "live orders: {}", relay.hot.0.len());
    relay.hot
}

/// A mixed stream where the schemaless tenant's orders, and every tenant's order items,
/// arrive before any schema-embedded order: `order_items` is typed by the embedded tenants'
/// schemas (the schemaless items are coerced to it), but `orders.ordered_at` has only its
/// inferred type, an epoch integer. Once the relay stops waiting for typed events, the gold
/// SQL's `CAST(o.ordered_at AS DATE)` fails with `Can't cast value … to type Int32` — the
/// arrival-order dependent failure that used to end the relay. It is now "not ready"; the
/// first typed order decides the types and every key shaped so far is shaped again.
#[test]
fn a_mixed_stream_shapes_whichever_tenants_come_first() {
    let runtime = runtime();
    let streams = partitions(SchemaMode::Mixed, 7);
    let expected = runtime.block_on(reference(&streams));
    let embeds = |m: &Message| ["acme", "globex"].contains(&m.tenant.as_str());
    let early = |m: &&Message| !embeds(m) || m.table == "order_items";
    let mut relay = Relay::new();
    for message in streams.iter().flatten().filter(early) {
        relay.consume(message);
    }
    match runtime.block_on(relay.cut(true)) {
        Err(NotReady::FailsWithInferredTypes { columns, error }) => {
            assert!(
                columns.contains(&"orders.ordered_at".to_string()),
                "{columns:?}"
            );
            assert!(
                !columns.iter().any(|c| c.starts_with("order_items.")),
                "{columns:?}"
            );
            assert!(
                error.contains("Can't cast value") && error.contains("Int32"),
                "{error}"
            );
        }
        other => panic!("shaped with inferred types: {other:?}"),
    }
    for message in streams.iter().flatten().filter(|m| !early(m)) {
        relay.consume(message);
    }
    runtime.block_on(relay.cut(false)).unwrap();
    assert_eq!(relay.hot, expected);

    // Schema-embedded tenants first: every column is typed before a schemaless value
    // arrives, and those values are coerced to the schema's types.
    let mut relay = Relay::new();
    for message in streams.iter().flatten().filter(|m| embeds(m)) {
        relay.consume(message);
    }
    runtime.block_on(relay.cut(false)).unwrap();
    for message in streams.iter().flatten().filter(|m| !embeds(m)) {
        relay.consume(message);
    }
    runtime.block_on(relay.cut(false)).unwrap();
    assert_eq!(relay.hot, expected);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any interleaving of the topic-partitions (each in offset order) and any cut points
    /// give the hot table of one batch over the whole stream; a cut that is refused for
    /// inferred types, or by a model that fails on them, only makes the batch longer.
    #[test]
    fn any_split_into_batches_gives_the_same_hot_table(
        seed in 0u64..4,
        picks in proptest::collection::vec(any::<u16>(), 2000),
        cuts in proptest::collection::vec(0u8..40, 2000),
        allow_inferred in proptest::collection::vec(any::<bool>(), 2000),
    ) {
        let runtime = runtime();
        let streams = partitions(SchemaMode::Mixed, seed);
        let expected = runtime.block_on(reference(&streams));
        let mut relay = Relay::new();
        let mut next: Vec<usize> = vec![0; streams.len()];
        let mut step = 0;
        loop {
            let open: Vec<usize> = (0..streams.len())
                .filter(|s| next[*s] < streams[*s].len())
                .collect();
            if open.is_empty() {
                break;
            }
            let stream = open[usize::from(picks[step % picks.len()]) % open.len()];
            relay.consume(&streams[stream][next[stream]]);
            next[stream] += 1;
            if cuts[step % cuts.len()] == 0 {
                let _ = runtime.block_on(relay.cut(allow_inferred[step % allow_inferred.len()]));
            }
            step += 1;
        }
        // Finishing: inferred types are accepted, and this stream has typed events.
        runtime.block_on(relay.cut(true)).unwrap();
        prop_assert_eq!(&relay.hot, &expected);
    }
}
