//! The [`Generator`]: a lazy, seeded iterator of Debezium messages for several simulated
//! tenant databases. Pure: no I/O, no wall clock; the same configuration always yields the
//! same bytes in the same order.
//!
//! Memory is bounded by the number of live and deleted keys (the simulated tables), never
//! by the number of events: each tenant buffers at most one transaction plus one
//! restart-replay window of messages.
//!
//! Per tenant the stream is:
//! 1. a snapshot: every pre-existing row as op `r`, table by table in `Table::ALL` order,
//!    `source.snapshot` = `"true"`, and `"last"` on the final snapshot record;
//! 2. streaming: one transaction per step, chosen by the configured ratios: an update, a
//!    delete (an order's lines are deleted with it), a re-insert of a deleted key (op `c`
//!    for an id seen before) or an insert (an order comes with its lines). Every delete is
//!    followed by a tombstone for the same key;
//! 3. throughout, simulated connector restarts: at planned points the tenant re-emits its
//!    last `restart-replay` change events (with their tombstones) byte for byte, as Debezium
//!    does after restarting from an offset older than what it had already produced.
//!
//! Tenants are interleaved message by message by a separate seeded RNG; each tenant's data
//! comes from its own RNG stream so tenants do not perturb one another's rows.

use std::collections::{HashMap, VecDeque};

use super::envelope::{ChangeEvent, Op, SnapshotMarker, SourcePosition, TableCodec};
use super::expected::ExpectedState;
use super::model::{Cell, Flavor, PrimaryKey, Row, Table};
use super::rng::SplitMix64;
use super::rows::{self, MAX_LINES_PER_ORDER};
use super::{CdcMessage, GeneratorConfig, GeneratorError, SchemaMode, TenantSpec, avro_schema_ids};

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// MySQL rotates to a new binlog file past this many bytes: `max_binlog_size` set low
/// (MySQL allows down to 4 KiB) so that even demo-sized runs cross files and consumers must
/// order positions by (file, pos), not by pos alone.
const BINLOG_ROTATE_AT: u64 = 128 * 1024;
/// First event position in a fresh binlog file, after the format description event.
const BINLOG_FIRST_POS: u64 = 157;

/// Weights used to choose which table an update, delete or re-insert touches.
const UPDATE_WEIGHTS: [u64; 4] = [2, 1, 4, 3];
const DELETE_WEIGHTS: [u64; 4] = [1, 1, 2, 2];
const REINSERT_WEIGHTS: [u64; 4] = [1, 1, 2, 2];

/// Deterministic stream of Debezium messages; see the module docs.
#[derive(Debug)]
pub struct Generator {
    tenants: Vec<TenantSim>,
    /// Indices of tenants that may still produce messages.
    active: Vec<usize>,
    interleave: SplitMix64,
    clock: SimClock,
    expected: ExpectedState,
}

impl Generator {
    /// Validates `config` and prepares the simulation; nothing is generated until iterated.
    pub fn new(config: &GeneratorConfig) -> Result<Self, GeneratorError> {
        config.validate()?;
        let start_us = config.start_micros()?;
        let specs = config.tenant_specs();
        let span_us = i64::from(config.span_days) * MICROS_PER_DAY;
        let total_messages = estimate(config).messages * specs.len() as u64;
        let mean_step_us = (span_us as u64 / total_messages.max(1)).max(1);

        let expected = ExpectedState::new(
            specs
                .iter()
                .map(|spec| (spec.name.clone(), spec.topics.clone())),
        );
        let tenants = specs
            .iter()
            .map(|spec| TenantSim::new(spec, config, start_us))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            tenants,
            active: (0..specs.len()).collect(),
            // The NUL prefix keeps these streams apart from any tenant's (tenant names are
            // identifiers, so none can start with NUL).
            interleave: SplitMix64::derive(config.seed, "\u{0}interleave"),
            clock: SimClock {
                now_us: start_us,
                mean_step_us,
                rng: SplitMix64::derive(config.seed, "\u{0}clock"),
            },
            expected,
        })
    }

    /// The expected outcome; complete once the iterator has returned `None`.
    pub fn expected(&self) -> &ExpectedState {
        &self.expected
    }

    /// True once every message has been produced.
    pub fn is_finished(&self) -> bool {
        self.active.is_empty()
    }

    /// Messages generated but not yet returned (pending transactions and restart windows):
    /// bounded by the configuration, independent of how many events have gone by.
    #[cfg(test)]
    pub(crate) fn buffered_messages(&self) -> usize {
        self.tenants
            .iter()
            .map(|t| t.pending.len() + t.restarts.window.iter().map(Vec::len).sum::<usize>())
            .sum()
    }

    /// `schemas = "avro"`: the (Schema Registry id, Avro schema text) of every key and value
    /// schema the messages name, for a registry to serve; empty otherwise.
    pub fn avro_schemas(&self) -> Vec<(u32, String)> {
        self.tenants
            .iter()
            .flat_map(|tenant| tenant.codecs.iter())
            .flat_map(|codec| codec.avro_schemas())
            .map(|(id, text)| (id, text.to_string()))
            .collect()
    }

    /// Every topic this generator writes to, sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .tenants
            .iter()
            .flat_map(|t| t.topics.iter().cloned())
            .collect();
        topics.sort();
        topics
    }
}

impl std::iter::FusedIterator for Generator {}

impl Iterator for Generator {
    type Item = CdcMessage;

    fn next(&mut self) -> Option<CdcMessage> {
        while !self.active.is_empty() {
            let slot = self.interleave.index(self.active.len());
            let tenant = &mut self.tenants[self.active[slot]];
            if let Some(message) = tenant.pending.pop_front() {
                return Some(message);
            }
            if !tenant.step(&mut self.expected, &mut self.clock) {
                self.active.remove(slot);
            }
        }
        None
    }
}

/// Rough event volumes for one tenant, used to spread simulated time over `span-days` and
/// to place restarts. They only shape the data; nothing depends on them being exact.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Estimate {
    /// Change events that certainly happen (snapshot records plus streaming steps).
    pub(crate) lower_bound_events: u64,
    /// Likely number of messages including order lines and tombstones.
    pub(crate) messages: u64,
}

pub(crate) fn estimate(config: &GeneratorConfig) -> Estimate {
    let snapshot = snapshot_counts(config);
    let avg_lines = f64::from(MAX_LINES_PER_ORDER + 1) / 2.0;
    let snapshot_events =
        (snapshot[0] + snapshot[1] + snapshot[2]) as f64 + snapshot[2] as f64 * avg_lines;
    let streaming_inserts = (config.customers + config.products + config.orders) as f64
        - (snapshot[0] + snapshot[1] + snapshot[2]) as f64;
    let insert_share = 1.0 - (config.update_ratio + config.delete_ratio + config.reinsert_ratio);
    let steps = streaming_inserts / insert_share.max(0.01);
    let streaming_lines = (config.orders as f64 - snapshot[2] as f64) * avg_lines;
    let messages = (snapshot_events + steps + streaming_lines) * (1.0 + 2.0 * config.delete_ratio);
    // Every snapshot order has at least one line and every streaming step at least one
    // event; the 0.9 absorbs the randomness in how many steps the inserts take.
    let certain_events = (snapshot[0] + snapshot[1] + 2 * snapshot[2]) as f64 + steps * 0.9;
    Estimate {
        lower_bound_events: certain_events as u64,
        messages: messages as u64,
    }
}

/// Rows of customers, products and orders that exist before the connector starts.
fn snapshot_counts(config: &GeneratorConfig) -> [i64; 3] {
    let fraction = config.snapshot_fraction.clamp(0.0, 1.0);
    [config.customers, config.products, config.orders]
        .map(|total| (total as f64 * fraction).round() as i64)
}

/// The simulated wall clock shared by all tenants: it only moves forward, by a random step
/// per change event whose mean spreads the whole run over `span-days`.
#[derive(Debug)]
struct SimClock {
    now_us: i64,
    mean_step_us: u64,
    rng: SplitMix64,
}

impl SimClock {
    fn tick(&mut self) -> i64 {
        let step = self.rng.below(self.mean_step_us.saturating_mul(2) + 1);
        self.now_us = self.now_us.saturating_add(step as i64);
        self.now_us
    }
}

/// A set of keys with O(1) insert, remove and uniform random choice.
#[derive(Debug, Default)]
struct KeySet {
    keys: Vec<PrimaryKey>,
    index: HashMap<PrimaryKey, usize>,
}

impl KeySet {
    fn insert(&mut self, key: PrimaryKey) {
        if !self.index.contains_key(&key) {
            self.index.insert(key, self.keys.len());
            self.keys.push(key);
        }
    }

    fn remove(&mut self, key: PrimaryKey) {
        if let Some(slot) = self.index.remove(&key) {
            self.keys.swap_remove(slot);
            if let Some(moved) = self.keys.get(slot) {
                self.index.insert(*moved, slot);
            }
        }
    }

    fn random(&self, rng: &mut SplitMix64) -> Option<PrimaryKey> {
        if self.keys.is_empty() {
            None
        } else {
            Some(self.keys[rng.index(self.keys.len())])
        }
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Debug, Default)]
struct KeySpace {
    live: KeySet,
    deleted: KeySet,
}

/// The tenant's replication log: binlog coordinates or LSNs, plus transaction identity.
#[derive(Debug)]
enum SourceLog {
    MySql {
        file_index: u32,
        pos: u64,
        thread: u64,
    },
    Postgres {
        lsn: u64,
        last_commit_lsn: Option<u64>,
        tx_id: u64,
    },
}

impl SourceLog {
    fn new(flavor: Flavor, rng: &mut SplitMix64) -> Self {
        match flavor {
            Flavor::MySql => SourceLog::MySql {
                file_index: 3,
                pos: BINLOG_FIRST_POS + rng.below(4096),
                thread: 10 + rng.below(90),
            },
            Flavor::Postgres => SourceLog::Postgres {
                lsn: 24_000_000 + rng.below(1_000_000),
                last_commit_lsn: None,
                tx_id: 700 + rng.below(300),
            },
        }
    }

    /// The position of the next event; strictly greater than every earlier one.
    fn next_position(&mut self, rng: &mut SplitMix64, snapshot: bool) -> SourcePosition {
        match self {
            SourceLog::MySql {
                file_index,
                pos,
                thread,
            } => {
                *pos += 120 + rng.below(800);
                if *pos > BINLOG_ROTATE_AT {
                    *file_index += 1;
                    *pos = BINLOG_FIRST_POS + rng.below(400);
                }
                SourcePosition::MySql {
                    file_index: *file_index,
                    pos: *pos,
                    thread: (!snapshot).then_some(*thread),
                }
            }
            SourceLog::Postgres {
                lsn,
                last_commit_lsn,
                tx_id,
            } => {
                *lsn += 56 + rng.below(550);
                SourcePosition::Postgres {
                    lsn: *lsn,
                    // Debezium renders `[null,"<lsn>"]` for snapshot records.
                    prev_commit_lsn: if snapshot { None } else { *last_commit_lsn },
                    tx_id: *tx_id,
                }
            }
        }
    }

    fn begin_transaction(&mut self, rng: &mut SplitMix64) {
        match self {
            SourceLog::MySql { thread, .. } => {
                // Application connections come and go; the thread id drifts occasionally.
                if rng.chance(0.01) {
                    *thread += 1;
                }
            }
            SourceLog::Postgres { tx_id, .. } => *tx_id += 1 + rng.below(3),
        }
    }

    fn commit(&mut self, rng: &mut SplitMix64) {
        if let SourceLog::Postgres {
            lsn,
            last_commit_lsn,
            ..
        } = self
        {
            *lsn += 24 + rng.below(40);
            *last_commit_lsn = Some(*lsn);
        }
    }
}

/// Where the snapshot has got to. `held` is the record read but not yet emitted: it can
/// only be marked `true` or `last` once we know whether another record follows it.
#[derive(Debug, Clone, Copy)]
struct SnapshotCursor {
    table: Table,
    id: i64,
    line_no: i32,
    held: Option<(Table, PrimaryKey)>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Snapshot(SnapshotCursor),
    Streaming,
    Finished,
}

/// Simulated connector restarts for one tenant.
#[derive(Debug)]
struct RestartPlan {
    /// Replay window: how many change events (with their tombstones) are re-emitted.
    replay: u64,
    /// Change-event counts after which a restart happens, ascending.
    points: VecDeque<u64>,
    /// Original change events emitted so far.
    events: u64,
    /// The last events before the next restart point, as message groups.
    window: VecDeque<Vec<CdcMessage>>,
}

impl RestartPlan {
    fn new(restarts: u32, replay: u32, expected_events: u64) -> Self {
        let replay = u64::from(replay);
        let mut points = VecDeque::new();
        let mut previous = 0;
        for j in 1..=u64::from(restarts) {
            let spread = expected_events.saturating_mul(j) / (u64::from(restarts) + 1);
            // Windows never overlap, so each restart replays only original messages.
            let point = spread.max(previous + replay).max(replay);
            points.push_back(point);
            previous = point;
        }
        Self {
            replay,
            points,
            events: 0,
            window: VecDeque::new(),
        }
    }
}

/// One tenant's database, connector and pending output.
#[derive(Debug)]
struct TenantSim {
    index: usize,
    flavor: Flavor,
    rng: SplitMix64,
    codecs: [TableCodec; 4],
    topics: [String; 4],
    name: String,
    phase: Phase,
    snapshot_counts: [i64; 3],
    /// Streaming inserts left for customers, products, orders.
    remaining_inserts: [u64; 3],
    /// Next fresh id for customers, products, orders.
    next_id: [i64; 3],
    keys: [KeySpace; 4],
    log: SourceLog,
    pending: VecDeque<CdcMessage>,
    update_ratio: f64,
    delete_ratio: f64,
    reinsert_ratio: f64,
    restarts: RestartPlan,
    start_us: i64,
}

impl TenantSim {
    fn new(
        spec: &TenantSpec,
        config: &GeneratorConfig,
        start_us: i64,
    ) -> Result<Self, GeneratorError> {
        let mut rng = SplitMix64::derive(config.seed, &spec.name);
        let snapshot_counts = snapshot_counts(config);
        let totals = [config.customers, config.products, config.orders];
        let remaining_inserts =
            [0, 1, 2].map(|i| totals[i].saturating_sub(snapshot_counts[i] as u64));
        let log = SourceLog::new(spec.flavor, &mut rng);
        let mut codecs = Vec::with_capacity(Table::ALL.len());
        for table in Table::ALL {
            let codec = TableCodec::new(
                table,
                spec.flavor,
                &spec.server_name,
                &config.database,
                spec.schemas,
            );
            codecs.push(if config.schemas == SchemaMode::Avro {
                let (key_id, value_id) = avro_schema_ids(spec.index, table);
                codec.with_avro(key_id, value_id)?
            } else {
                codec
            });
        }
        let codecs: [TableCodec; 4] = codecs
            .try_into()
            .expect("one codec per table of Table::ALL");
        Ok(Self {
            index: spec.index,
            flavor: spec.flavor,
            rng,
            codecs,
            topics: spec.topics.clone(),
            name: spec.name.clone(),
            phase: Phase::Snapshot(SnapshotCursor {
                table: Table::Customers,
                id: 1,
                line_no: 1,
                held: None,
            }),
            snapshot_counts,
            remaining_inserts,
            next_id: snapshot_counts.map(|n| n + 1),
            keys: Default::default(),
            log,
            pending: VecDeque::new(),
            update_ratio: config.update_ratio,
            delete_ratio: config.delete_ratio,
            reinsert_ratio: config.reinsert_ratio,
            restarts: RestartPlan::new(
                config.restart_duplicates,
                config.restart_replay,
                estimate(config).lower_bound_events,
            ),
            start_us,
        })
    }

    /// Generates the next transaction (or snapshot record) into `pending`. Returns false
    /// when the tenant has nothing more to produce.
    fn step(&mut self, expected: &mut ExpectedState, clock: &mut SimClock) -> bool {
        loop {
            match self.phase {
                Phase::Snapshot(cursor) => {
                    if self.snapshot_step(cursor, expected, clock) {
                        return true;
                    }
                }
                Phase::Streaming => {
                    if self.streaming_step(expected, clock) {
                        return true;
                    }
                    self.finish(expected);
                    self.phase = Phase::Finished;
                    return !self.pending.is_empty();
                }
                Phase::Finished => return !self.pending.is_empty(),
            }
        }
    }

    /// Advances the snapshot by one record. Returns true if a message was emitted.
    fn snapshot_step(
        &mut self,
        mut cursor: SnapshotCursor,
        expected: &mut ExpectedState,
        clock: &mut SimClock,
    ) -> bool {
        let next = self.next_snapshot_key(&mut cursor, expected);
        let held = cursor.held.take();
        cursor.held = next;
        self.phase = if next.is_some() {
            Phase::Snapshot(cursor)
        } else {
            // The snapshot is over; the log continues from the snapshot's position.
            self.log.commit(&mut self.rng);
            Phase::Streaming
        };
        let Some((table, key)) = held else {
            return false;
        };
        let marker = if next.is_some() {
            SnapshotMarker::True
        } else {
            SnapshotMarker::Last
        };
        let row = expected.row(self.index, table, key).cloned();
        self.emit(
            expected,
            clock,
            table,
            Op::Read,
            key,
            None,
            row.as_deref(),
            marker,
        );
        true
    }

    /// The next pre-existing row to read, creating it in the simulated database on first
    /// visit (orders create their lines, which the order_items pass reads later).
    fn next_snapshot_key(
        &mut self,
        cursor: &mut SnapshotCursor,
        expected: &mut ExpectedState,
    ) -> Option<(Table, PrimaryKey)> {
        loop {
            match cursor.table {
                Table::Customers | Table::Products | Table::Orders => {
                    let slot = cursor.table.index();
                    if cursor.id > self.snapshot_counts[slot] {
                        cursor.table = Table::ALL[slot + 1];
                        cursor.id = 1;
                        continue;
                    }
                    let id = cursor.id;
                    cursor.id += 1;
                    let created =
                        self.start_us - self.rng.between(MICROS_PER_DAY, 400 * MICROS_PER_DAY);
                    let key = PrimaryKey::id(id);
                    let row = match cursor.table {
                        Table::Customers => rows::customer(&mut self.rng, self.flavor, id, created),
                        Table::Products => rows::product(&mut self.rng, self.flavor, id, created),
                        _ => {
                            let status = rows::historic_status(&mut self.rng);
                            let (order, lines) = self.build_order(expected, id, status, created);
                            for (line_key, line) in lines {
                                self.keys[Table::OrderItems.index()].live.insert(line_key);
                                expected.put(self.index, Table::OrderItems, line_key, line);
                            }
                            order
                        }
                    };
                    self.keys[slot].live.insert(key);
                    expected.put(self.index, cursor.table, key, row);
                    return Some((cursor.table, key));
                }
                Table::OrderItems => {
                    while cursor.id <= self.snapshot_counts[Table::Orders.index()] {
                        let key = PrimaryKey::item(cursor.id, cursor.line_no);
                        cursor.line_no += 1;
                        if cursor.line_no > MAX_LINES_PER_ORDER {
                            cursor.line_no = 1;
                            cursor.id += 1;
                        }
                        if expected.row(self.index, Table::OrderItems, key).is_some() {
                            return Some((Table::OrderItems, key));
                        }
                    }
                    return None;
                }
            }
        }
    }

    /// An order and its lines (not yet stored): lines reference existing products at
    /// their current price, the total is the sum of the lines.
    fn build_order(
        &mut self,
        expected: &ExpectedState,
        order_id: i64,
        status: &'static str,
        ordered_us: i64,
    ) -> (Row, Vec<(PrimaryKey, Row)>) {
        let line_count = self.rng.between(1, i64::from(MAX_LINES_PER_ORDER)) as i32;
        let newest_product = (self.next_id[Table::Products.index()] - 1).max(1);
        let mut lines = Vec::with_capacity(line_count as usize);
        for line_no in 1..=line_count {
            let product_id = self.rng.between(1, newest_product);
            let product = expected.row(self.index, Table::Products, PrimaryKey::id(product_id));
            let price = rows::product_price(product, &mut self.rng);
            let line = rows::order_item(&mut self.rng, order_id, line_no, product_id, price);
            lines.push((PrimaryKey::item(order_id, line_no), line));
        }
        let total = rows::order_total(lines.iter().map(|(_, row)| row));
        let newest_customer = (self.next_id[Table::Customers.index()] - 1).max(1);
        let customer_id = self.rng.between(1, newest_customer);
        let order = rows::order(
            self.flavor,
            order_id,
            customer_id,
            status,
            total,
            ordered_us,
        );
        (order, lines)
    }

    /// One streaming transaction. Returns false when all planned inserts are done.
    fn streaming_step(&mut self, expected: &mut ExpectedState, clock: &mut SimClock) -> bool {
        let remaining: u64 = self.remaining_inserts.iter().sum();
        if remaining == 0 {
            return false;
        }
        self.log.begin_transaction(&mut self.rng);
        let roll = self.rng.unit();
        let update_below = self.update_ratio;
        let delete_below = update_below + self.delete_ratio;
        let reinsert_below = delete_below + self.reinsert_ratio;
        let done = if roll < update_below {
            self.update(expected, clock)
        } else if roll < delete_below {
            self.delete(expected, clock)
        } else if roll < reinsert_below {
            self.reinsert(expected, clock)
        } else {
            false
        };
        if !done {
            self.insert(expected, clock, remaining);
        }
        self.log.commit(&mut self.rng);
        true
    }

    fn pick_table(
        &mut self,
        weights: [u64; 4],
        eligible: impl Fn(&KeySpace) -> bool,
    ) -> Option<Table> {
        let weights: [u64; 4] = std::array::from_fn(|i| {
            if eligible(&self.keys[i]) {
                weights[i]
            } else {
                0
            }
        });
        let total: u64 = weights.iter().sum();
        if total == 0 {
            return None;
        }
        let mut roll = self.rng.below(total);
        for (i, weight) in weights.iter().enumerate() {
            if roll < *weight {
                return Some(Table::ALL[i]);
            }
            roll -= weight;
        }
        None
    }

    fn update(&mut self, expected: &mut ExpectedState, clock: &mut SimClock) -> bool {
        let Some(table) = self.pick_table(UPDATE_WEIGHTS, |k| !k.live.is_empty()) else {
            return false;
        };
        let Some(key) = self.keys[table.index()].live.random(&mut self.rng) else {
            return false;
        };
        let Some(old) = expected.row(self.index, table, key).cloned() else {
            return false;
        };
        let now = clock.now_us;
        let new = match table {
            Table::Customers => rows::updated_customer(&mut self.rng, self.flavor, &old, now),
            Table::Products => rows::updated_product(&mut self.rng, self.flavor, &old, now),
            Table::Orders => rows::updated_order(&mut self.rng, &old),
            Table::OrderItems => rows::updated_order_item(&mut self.rng, &old),
        };
        self.emit(
            expected,
            clock,
            table,
            Op::Update,
            key,
            Some(&old),
            Some(&new),
            SnapshotMarker::False,
        );
        expected.put(self.index, table, key, new);
        true
    }

    fn delete(&mut self, expected: &mut ExpectedState, clock: &mut SimClock) -> bool {
        let Some(table) = self.pick_table(DELETE_WEIGHTS, |k| !k.live.is_empty()) else {
            return false;
        };
        let Some(key) = self.keys[table.index()].live.random(&mut self.rng) else {
            return false;
        };
        if table == Table::Orders {
            // The application removes an order's lines in the same transaction (no reliance
            // on FK cascades, which MySQL does not write to the binlog).
            for line_no in 1..=MAX_LINES_PER_ORDER {
                self.delete_key(
                    expected,
                    clock,
                    Table::OrderItems,
                    PrimaryKey::item(key.id, line_no),
                );
            }
        }
        self.delete_key(expected, clock, table, key);
        true
    }

    fn delete_key(
        &mut self,
        expected: &mut ExpectedState,
        clock: &mut SimClock,
        table: Table,
        key: PrimaryKey,
    ) {
        let Some(old) = expected.remove(self.index, table, key) else {
            return;
        };
        let keys = &mut self.keys[table.index()];
        keys.live.remove(key);
        keys.deleted.insert(key);
        self.emit(
            expected,
            clock,
            table,
            Op::Delete,
            key,
            Some(&old),
            None,
            SnapshotMarker::False,
        );
    }

    /// Brings a deleted key back with fresh values: op `c` for an id seen before.
    fn reinsert(&mut self, expected: &mut ExpectedState, clock: &mut SimClock) -> bool {
        let Some(table) = self.pick_table(REINSERT_WEIGHTS, |k| !k.deleted.is_empty()) else {
            return false;
        };
        let Some(key) = self.keys[table.index()].deleted.random(&mut self.rng) else {
            return false;
        };
        let now = clock.now_us;
        match table {
            Table::Customers => {
                let row = rows::customer(&mut self.rng, self.flavor, key.id, now);
                self.create(expected, clock, table, key, row);
            }
            Table::Products => {
                let row = rows::product(&mut self.rng, self.flavor, key.id, now);
                self.create(expected, clock, table, key, row);
            }
            Table::Orders => self.create_order(expected, clock, key.id, now),
            Table::OrderItems => {
                // A line only comes back while its order exists.
                let order = PrimaryKey::id(key.id);
                if expected.row(self.index, Table::Orders, order).is_none() {
                    return false;
                }
                let newest_product = (self.next_id[Table::Products.index()] - 1).max(1);
                let product_id = self.rng.between(1, newest_product);
                let product = expected.row(self.index, Table::Products, PrimaryKey::id(product_id));
                let price = rows::product_price(product, &mut self.rng);
                let line_no = key.line_no.unwrap_or(1);
                let row = rows::order_item(&mut self.rng, key.id, line_no, product_id, price);
                self.create(expected, clock, table, key, row);
            }
        }
        true
    }

    fn insert(&mut self, expected: &mut ExpectedState, clock: &mut SimClock, remaining: u64) {
        let mut roll = self.rng.below(remaining);
        let mut slot = 0;
        while slot < 2 && roll >= self.remaining_inserts[slot] {
            roll -= self.remaining_inserts[slot];
            slot += 1;
        }
        self.remaining_inserts[slot] = self.remaining_inserts[slot].saturating_sub(1);
        let id = self.next_id[slot];
        self.next_id[slot] += 1;
        let key = PrimaryKey::id(id);
        let now = clock.now_us;
        match Table::ALL[slot] {
            Table::Customers => {
                let row = rows::customer(&mut self.rng, self.flavor, id, now);
                self.create(expected, clock, Table::Customers, key, row);
            }
            Table::Products => {
                let row = rows::product(&mut self.rng, self.flavor, id, now);
                self.create(expected, clock, Table::Products, key, row);
            }
            _ => self.create_order(expected, clock, id, now),
        }
    }

    /// Inserts a new order, then its lines, in one transaction.
    fn create_order(
        &mut self,
        expected: &mut ExpectedState,
        clock: &mut SimClock,
        id: i64,
        now: i64,
    ) {
        let (order, lines) = self.build_order(expected, id, "pending", now);
        self.create(expected, clock, Table::Orders, PrimaryKey::id(id), order);
        for (key, line) in lines {
            self.create(expected, clock, Table::OrderItems, key, line);
        }
    }

    fn create(
        &mut self,
        expected: &mut ExpectedState,
        clock: &mut SimClock,
        table: Table,
        key: PrimaryKey,
        row: Row,
    ) {
        let keys = &mut self.keys[table.index()];
        keys.deleted.remove(key);
        keys.live.insert(key);
        self.emit(
            expected,
            clock,
            table,
            Op::Create,
            key,
            None,
            Some(&row),
            SnapshotMarker::False,
        );
        expected.put(self.index, table, key, row);
    }

    /// Encodes one change event (plus a tombstone after a delete), queues it, counts it and
    /// runs any restart that is due.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        expected: &mut ExpectedState,
        clock: &mut SimClock,
        table: Table,
        op: Op,
        key: PrimaryKey,
        before: Option<&[Cell]>,
        after: Option<&[Cell]>,
        snapshot: SnapshotMarker,
    ) {
        let source_ts_us = clock.tick();
        let position = self
            .log
            .next_position(&mut self.rng, snapshot != SnapshotMarker::False);
        // Connector lag between commit and processing: a few ms to about a second.
        let processed_ts_us = source_ts_us + 2_000 + self.rng.below(1_500_000) as i64;
        let codec = &self.codecs[table.index()];
        let key_bytes = codec.key(key);
        let value = codec.value(&ChangeEvent {
            op,
            before,
            after,
            source_ts_us,
            snapshot,
            position,
            processed_ts_us,
        });
        let mut group = Vec::with_capacity(2);
        group.push(self.message(table, Some(key_bytes.clone()), Some(value)));
        expected.record_event(self.index, table, op);
        if op == Op::Delete {
            // Debezium's default `tombstones.on.delete=true`: lets compaction drop the key.
            group.push(self.message(table, Some(key_bytes), None));
            expected.record_tombstone(self.index, table);
        }
        self.queue_group(expected, group);
    }

    fn message(&self, table: Table, key: Option<Vec<u8>>, value: Option<Vec<u8>>) -> CdcMessage {
        CdcMessage {
            topic: self.topics[table.index()].clone(),
            key,
            value,
            table,
            tenant: self.name.clone(),
        }
    }

    fn queue_group(&mut self, expected: &mut ExpectedState, group: Vec<CdcMessage>) {
        let plan = &mut self.restarts;
        plan.events += 1;
        let Some(&point) = plan.points.front() else {
            self.pending.extend(group);
            return;
        };
        if plan.events + plan.replay > point {
            plan.window.push_back(group.clone());
            if plan.window.len() as u64 > plan.replay {
                plan.window.pop_front();
            }
        }
        self.pending.extend(group);
        if plan.events >= point {
            plan.points.pop_front();
            self.replay_window(expected);
        }
    }

    /// A simulated connector restart: the window's messages again, unchanged.
    fn replay_window(&mut self, expected: &mut ExpectedState) {
        for group in std::mem::take(&mut self.restarts.window) {
            for message in group {
                expected.record_duplicate(self.index, message.table);
                self.pending.push_back(message);
            }
        }
    }

    /// Restarts planned past the real end of the stream happen at the end, replaying
    /// whatever window was collected.
    fn finish(&mut self, expected: &mut ExpectedState) {
        if !self.restarts.points.is_empty() {
            self.restarts.points.clear();
            self.replay_window(expected);
        }
    }
}
