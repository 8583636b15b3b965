//! `firn relay`: the hot path. Consumes the Debezium CDC topics directly, keeps the current
//! source rows the relayed gold models need, shapes gold rows with the same SQL the batch
//! gold uses, and loads StarRocks Primary Key tables by Stream Load, exactly once. This
//! file is the loop and does I/O (Kafka, the catalog database, HTTP); the logic it drives is
//! pure: [`state`] (source rows per gold key), [`shape`] (gold SQL over those rows → JSON
//! lines), [`batch`] (when to cut a load, when to pause).
//!
//! # Exactly once
//!
//! Each cut batch gets a label derived from the hot table, the ledger's epoch and the Kafka
//! offset ranges it covers ([`crate::stream_load::batch_label`]), and is recorded in the
//! ledger ([`firn_catalog::relay_ledger`]) with its exact body *before* the first send. The
//! Stream Load client retries under that label until StarRocks commits it; a label that is
//! already loaded is acknowledged, never loaded again. On start every pending ledger entry is
//! sent again with the same label and body, and consumption resumes after the recorded
//! ranges. A label StarRocks has already evicted (its label retention keeps ~1000 per
//! database) is loaded again, which the Primary Key table absorbs: upserts carry
//! `relay_version` as `merge_condition`, and the resent batch is the table's newest. Kafka
//! group offsets are committed only after an acknowledgement, as a lag mirror.
//!
//! # State on start
//!
//! The relay keeps the current rows of its input tables in memory, proportional to the
//! live source rows. On start it reads every partition from the beginning and applies the
//! events up to the ledger's positions without loading anything, so start-up costs one read
//! of the change log (the topics need compaction or unlimited retention); no batch is cut
//! until every partition has passed its recorded position.
//!
//! # Scope
//!
//! One relay process owns all partitions of its topics (static assignment) and is the only
//! writer of its hot tables. It claims each table's ledger on start; a relay that another
//! one has claimed since (a zombie) is fenced at its next record or acknowledgement and
//! stops, and a stale body it still sends can never overwrite a newer row: the relay
//! version grows with every change of a key ([`state`]). Deletes are not conditional in StarRocks: while a full replay
//! with a fresh ledger runs, a key can briefly show an older state, and the table is equal to
//! gold again when the replay reaches the end.

pub mod batch;
pub mod dead_letters;
pub mod leader;
pub mod metrics;
pub mod shape;
pub mod source;
pub mod state;
pub mod test_server;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use firn_catalog::CatalogError;
use firn_catalog::config::{PipelineConfig, RelayConfig};
use firn_catalog::relay_ledger::{EntryState, LedgerEntry, OffsetRange, RelayLedger};
use rdkafka::consumer::BaseConsumer;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin::Health;
use crate::debezium::{Decoded, decode};
use crate::dedup::{Watermarks, key_op_hash};
use crate::stream_load::{
    BodyFormat, Half, LoadAck, LoadRequest, StreamLoadClient, StreamLoadClientConfig,
    StreamLoadError, batch_label, sub_label,
};
use batch::{BatchLimits, ClosedBatch, OpenBatch, TableLoad, over_budget, should_pause};
pub use metrics::RelayMetrics;
use metrics::TableLabel;
pub use shape::{RELAY_LABEL, RELAY_VERSION, RelayModel};
use state::{Change, InputSpec, ModelState};

/// The silver tenant column; in `relay-keys` it names the tenant.
pub const TENANT_COLUMN: &str = "tenant";

/// Messages read per poll.
const POLL_MAX: usize = 5_000;
/// Longest wait for the first message of a poll.
const POLL_WAIT: Duration = Duration::from_millis(50);
/// Assumed body bytes per row before the first batch has been shaped.
const INITIAL_BYTES_PER_ROW: u64 = 512;

/// Errors of the relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("relay configuration: {0}")]
    Config(String),
    #[error("kafka {operation} failed: {source}")]
    Kafka {
        operation: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Transform(#[from] firn_transforms::TransformError),
    #[error("shaping gold rows failed: {0}")]
    Shape(String),
    #[error("loading {table} failed: {source}")]
    StreamLoad {
        table: String,
        #[source]
        source: StreamLoadError,
    },
    #[error("relay task failed: {0}")]
    Task(String),
}

impl RelayError {
    pub(crate) fn kafka(
        operation: &'static str,
    ) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        move |source| RelayError::Kafka { operation, source }
    }

    /// Whether the error comes from configuration or input rather than a failing service.
    pub fn is_bad_input(&self) -> bool {
        match self {
            RelayError::Config(_) => true,
            RelayError::Catalog(err) => err.is_bad_input(),
            RelayError::Transform(err) => err.is_bad_input(),
            RelayError::StreamLoad { source, .. } => matches!(
                source,
                StreamLoadError::Auth { .. } | StreamLoadError::Config { .. }
            ),
            _ => false,
        }
    }
}

/// How to run the relay.
#[derive(Clone)]
pub struct RelayOptions {
    pub brokers: String,
    /// StarRocks target (the config's `[relay]`, or the demo's test server).
    pub target: RelayConfig,
    /// Stop once every partition is read to its end and every batch is acknowledged.
    pub stop_when_caught_up: bool,
    /// SQL per model name; models not listed are read from their files.
    pub model_sql: BTreeMap<String, String>,
    pub metrics: RelayMetrics,
    pub health: Option<Arc<Health>>,
}

/// What one hot table got in a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableReport {
    pub loads: u64,
    /// Batches of a previous run sent again on start.
    pub resent: u64,
    /// Rows (upserts and deletes) of the acknowledged batches.
    pub rows: u64,
    pub retries: u64,
    pub label_conflicts: u64,
    pub dead_letters: u64,
    pub labels: Vec<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelayReport {
    pub records_consumed: u64,
    /// Events applied to the state before the ledger's positions (rebuild).
    pub records_replayed: u64,
    /// Records that cannot be applied (bad JSON, unknown tenant, incompatible type).
    pub records_skipped: u64,
    pub duplicates_dropped: u64,
    /// Times the consumer was paused by backpressure.
    pub pauses: u64,
    /// Most bytes held by open batches and loads in flight at once.
    pub peak_buffered_bytes: u64,
    pub tables: BTreeMap<String, TableReport>,
}

/// A batch being loaded.
struct InFlight {
    seq: i64,
    label: String,
    bytes: u64,
    rows: u64,
    event_times: Vec<i64>,
    ranges: Vec<OffsetRange>,
}

/// One relayed model and its StarRocks table.
struct HotTable {
    model: RelayModel,
    /// `database.table` (`database.table[shard]` for a tenant shard): the ledger key.
    ledger_key: String,
    epoch: String,
    /// This process's claim on the ledger key ([`RelayLedger::claim`]).
    owner: String,
    state: ModelState,
    /// Next offset per partition covered by the ledger (recorded batches).
    recorded: BTreeMap<(String, i32), i64>,
    /// Next offset per partition acknowledged by StarRocks.
    acked: BTreeMap<(String, i32), i64>,
    open: OpenBatch,
    next_seq: i64,
    in_flight: Option<InFlight>,
    resend: VecDeque<LedgerEntry>,
    bytes_per_row: u64,
    warned_not_ready: bool,
    /// The state's [`ModelState::typing`] when the model last failed on inferred types:
    /// shaping is not tried again until the typing changes (or the run finishes).
    failed_typing: Option<(u64, String)>,
    /// When this table's last batch was cut for loading (at most one per `interval`).
    last_cut: Option<Instant>,
    /// The inputs (source tables) whose events the last cut waited for
    /// ([`shape::NotReady::inputs`]): read even while the consumer is paused.
    waiting_for: BTreeSet<String>,
}

impl HotTable {
    fn load(&self) -> TableLoad {
        TableLoad {
            open_bytes: self.open.estimated_bytes(self.bytes_per_row),
            in_flight_bytes: self.in_flight.as_ref().map_or(0, |f| f.bytes),
            open_full: false,
        }
    }

    fn idle(&self) -> bool {
        self.in_flight.is_none() && self.resend.is_empty()
    }
}

/// The outcome of one batch's load: the acknowledgements of the batch or its parts, and
/// the rows refused after bisection.
struct Loaded {
    acks: Vec<LoadAck>,
    dead_letters: Vec<dead_letters::Refused>,
}

/// Where refused rows go: `bronze.firn_dead_letters`, through a catalog connected on the
/// first refused row (a relay that never meets one needs no warehouse access).
struct DeadLetterSink {
    config: PipelineConfig,
    catalog: Option<firn_catalog::Catalog>,
}

impl DeadLetterSink {
    async fn commit(
        &mut self,
        hot_table: &str,
        label: &str,
        letters: &[dead_letters::RelayDeadLetter],
    ) -> Result<bool, RelayError> {
        let catalog = match &mut self.catalog {
            Some(catalog) => catalog,
            slot => slot.insert(firn_catalog::Catalog::connect(&self.config).await?),
        };
        dead_letters::commit(
            catalog,
            hot_table,
            label,
            letters,
            self.config.commit.target_file_size,
        )
        .await
    }
}

/// Runs the relay until caught up (with `stop_when_caught_up`) or until `stop` is set;
/// then finishes the loads in flight and returns.
pub async fn run(
    config: &PipelineConfig,
    options: &RelayOptions,
    stop: &AtomicBool,
) -> Result<RelayReport, RelayError> {
    let mut tables = hot_tables(config, options).await?;
    if tables.is_empty() {
        return Err(RelayError::Config(
            "no gold model has relay = true: nothing to relay".into(),
        ));
    }
    let ledger = RelayLedger::connect(
        &config.catalog_database()?,
        config.catalog.password.as_ref(),
    )
    .await?;
    let mut report = RelayReport::default();
    for table in &mut tables {
        // Claimed before the load: a zombie's write lands before the claim (and is loaded)
        // or is fenced.
        table.owner = ledger.claim(&table.ledger_key).await?;
        let candidate = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        table.epoch = ledger.epoch(&table.ledger_key, &candidate).await?;
        let saved = ledger.load(&table.ledger_key).await?;
        table.recorded = saved.positions.clone();
        table.acked = saved.positions;
        for entry in &saved.pending {
            for range in &entry.ranges {
                // Not acknowledged yet: the lag mirror stays before them.
                let key = (range.topic.clone(), range.partition);
                let acked = table.acked.entry(key).or_insert(range.first);
                *acked = (*acked).min(range.first);
            }
        }
        table.next_seq = saved.next_seq;
        table.resend = saved.pending.into();
        report
            .tables
            .insert(table.model.name.clone(), TableReport::default());
    }

    let mut client_config = StreamLoadClientConfig::from_relay(&options.target);
    client_config.host_rewrite = options.target.host_rewrite.clone();
    client_config.max_attempts = options.target.max_attempts.or(options
        .stop_when_caught_up
        .then_some(firn_catalog::config::ONCE_MAX_ATTEMPTS));
    let client = StreamLoadClient::new(client_config).map_err(|source| RelayError::StreamLoad {
        table: options.target.database.clone(),
        source,
    })?;
    let limits = BatchLimits {
        interval: options.target.interval,
        max_rows: options.target.max_batch_rows,
        max_bytes: options.target.max_batch_bytes,
        budget_bytes: options.target.max_in_flight_bytes,
    };

    let consumer = Arc::new(source::consumer(config, &options.brokers)?);
    let inputs: Vec<String> = tables
        .iter()
        .flat_map(|t| t.model.inputs.iter().map(|i| i.table.clone()))
        .collect();
    let routes = {
        let consumer = consumer.clone();
        let config = config.clone();
        let target = options.target.clone();
        blocking(move || source::routes(&consumer, &config, &target, &inputs)).await?
    };
    let topics: BTreeMap<String, Vec<i32>> = routes
        .iter()
        .map(|(topic, (_, _, partitions))| (topic.clone(), partitions.clone()))
        .collect();
    let assignment = source::assign_from_beginning(&consumer, &topics)?;
    tracing::info!(
        partitions = assignment.count(),
        topics = routes.len(),
        tables = tables.len(),
        "relay assigned; rebuilding state from the beginning of the topics"
    );
    if let Some(health) = &options.health {
        health.set_ready(true);
    }

    // A poll adds at most one batch's worth of keys, which bounds the overshoot of the
    // memory budget between two backpressure checks.
    let poll_max = POLL_MAX.min(usize::try_from(limits.max_rows).unwrap_or(POLL_MAX));
    let (_cancel_tx, cancel) = watch::channel(false);
    let mut loads: JoinSet<(usize, Result<Loaded, StreamLoadError>)> = JoinSet::new();
    let mut next_offsets: HashMap<(String, i32), i64> = HashMap::new();
    let mut watermarks = Watermarks::default();
    let mut sink = DeadLetterSink {
        config: config.clone(),
        catalog: None,
    };
    let mut paused = false;
    // While paused, the topics still read (see `source::topics_of`).
    let mut kept_reading = BTreeSet::new();
    let mut caught_up = false;
    // A batch run paused with nothing in flight whose waited-for inputs are read to their
    // end: nothing more can arrive to make a batch ready, so the next cut decides (shapes
    // with inferred types, or ends the run with the reason) instead of waiting forever.
    let mut stalled = false;
    let mut draining = false;
    let mut last_lag = Instant::now();
    let mut lag_task: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        // Acknowledgements.
        while let Some(joined) = loads.try_join_next() {
            let (index, outcome) = joined.map_err(|err| RelayError::Task(err.to_string()))?;
            acknowledge(
                &mut tables[index],
                outcome,
                &ledger,
                &mut sink,
                &consumer,
                &options.metrics,
                &mut report,
            )
            .await?;
        }
        if !draining && stop.load(Ordering::SeqCst) {
            tracing::info!("stop requested: loading what was read, then exiting");
            draining = true;
        }
        let finishing = draining || (caught_up && options.stop_when_caught_up);
        let deciding = finishing || std::mem::take(&mut stalled);

        // Cut and send.
        let loads_now: Vec<TableLoad> = tables.iter().map(HotTable::load).collect();
        let squeeze = over_budget(&loads_now, &limits);
        let largest = loads_now
            .iter()
            .enumerate()
            .max_by_key(|(_, l)| l.open_bytes)
            .map(|(i, _)| i);
        for (index, table) in tables.iter_mut().enumerate() {
            if table.in_flight.is_some() {
                continue;
            }
            if let Some(entry) = table.resend.pop_front() {
                tracing::info!(table = %table.ledger_key, label = %entry.label, "sending a pending batch again");
                report
                    .tables
                    .entry(table.model.name.clone())
                    .or_default()
                    .resent += 1;
                start_load(
                    &mut loads,
                    &client,
                    &cancel,
                    index,
                    table,
                    entry,
                    Vec::new(),
                );
                continue;
            }
            if table.open.is_empty() || !rebuilt(table, &next_offsets) {
                continue;
            }
            if !deciding
                && let Some((typing, reason)) = &table.failed_typing
                && *typing == table.state.typing()
            {
                // The model failed on these inferred types; wait for a typed event, but not
                // beyond one full batch (a source without schemas never sends one).
                if table.open.is_full(&limits, table.bytes_per_row) {
                    return Err(RelayError::Config(format!(
                        "gold model `{}` cannot run on what was read: {reason}; its batch \
                         filled up waiting for an event with a schema to type those columns",
                        table.model.name
                    )));
                }
                continue;
            }
            let due = deciding
                || table
                    .open
                    .is_due(&limits, table.bytes_per_row, Instant::now(), table.last_cut)
                || (squeeze && largest == Some(index));
            if !due {
                continue;
            }
            // Cloned: a batch the model cannot shape yet stays open.
            let closed = table.open.clone().take();
            // A source without schemas never sends a typed event: after a while, and when
            // finishing, shape with the inferred types (what bronze then has as well).
            let allow_inferred =
                deciding || table.open.age(Instant::now()) >= inferred_wait(&limits);
            // The interval runs from the start of a cut: shaping takes time too.
            let cut_started = Instant::now();
            match cut(table, &closed, &ledger, allow_inferred).await? {
                Cut::Load(entry) => {
                    table.open = OpenBatch::default();
                    table.last_cut = Some(cut_started);
                    table.waiting_for.clear();
                    start_load(
                        &mut loads,
                        &client,
                        &cancel,
                        index,
                        table,
                        entry,
                        closed.event_times,
                    );
                }
                Cut::Empty => {
                    table.open = OpenBatch::default();
                    table.waiting_for.clear();
                }
                Cut::NotReady(reason) if deciding => {
                    return Err(RelayError::Config(format!(
                        "gold model `{}` cannot run on what was read: {reason}",
                        table.model.name
                    )));
                }
                Cut::NotReady(reason) => {
                    table.waiting_for = reason.inputs();
                    if let shape::NotReady::FailsWithInferredTypes { .. } = reason {
                        table.failed_typing = Some((table.state.typing(), reason.to_string()));
                    }
                }
            }
        }
        if finishing && tables.iter().all(|t| t.open.is_empty() && t.idle()) && loads.is_empty() {
            break;
        }

        // Backpressure.
        let loads_now: Vec<TableLoad> = tables
            .iter()
            .map(|t| TableLoad {
                open_full: t.open.is_full(&limits, t.bytes_per_row),
                ..t.load()
            })
            .collect();
        let used: u64 = loads_now
            .iter()
            .map(|l| l.open_bytes + l.in_flight_bytes)
            .sum();
        report.peak_buffered_bytes = report.peak_buffered_bytes.max(used);
        let pause = should_pause(paused, &loads_now, &limits);
        let waited_for: BTreeSet<&str> = tables
            .iter()
            .flat_map(|t| t.waiting_for.iter().map(String::as_str))
            .collect();
        let keep_reading = source::topics_of(&routes, &waited_for);
        if pause && paused && keep_reading != kept_reading {
            source::set_paused(&consumer, &assignment, true, &keep_reading)?;
        }
        kept_reading = keep_reading;
        if pause != paused {
            source::set_paused(&consumer, &assignment, pause, &kept_reading)?;
            paused = pause;
            options.metrics.paused.set(i64::from(pause));
            if pause {
                report.pauses += 1;
                tracing::info!(buffered_bytes = used, "backpressure: consumer paused");
            } else {
                tracing::info!(
                    buffered_bytes = used,
                    "backpressure released: consumer resumed"
                );
            }
        }

        if draining || (caught_up && options.stop_when_caught_up) {
            // Nothing more to read: wait for a load to finish.
            if let Some(joined) = loads.join_next().await {
                let (index, outcome) = joined.map_err(|err| RelayError::Task(err.to_string()))?;
                acknowledge(
                    &mut tables[index],
                    outcome,
                    &ledger,
                    &mut sink,
                    &consumer,
                    &options.metrics,
                    &mut report,
                )
                .await?;
            } else {
                let stuck: Vec<String> = tables
                    .iter()
                    .filter(|t| !t.open.is_empty())
                    .map(|t| {
                        let behind: Vec<String> = t
                            .recorded
                            .iter()
                            .filter(|(tp, recorded)| {
                                next_offsets.get(*tp).is_none_or(|n| n < *recorded)
                            })
                            .map(|((topic, p), recorded)| {
                                format!(
                                    "{topic}/{p} read to {:?}, recorded {recorded}",
                                    next_offsets.get(&(topic.clone(), *p))
                                )
                            })
                            .collect();
                        format!("{}: {}", t.model.name, behind.join("; "))
                    })
                    .collect();
                return Err(RelayError::Task(format!(
                    "nothing left to read or load, yet batches remain: {}",
                    stuck.join(" | ")
                )));
            }
            continue;
        }

        let polled = {
            let consumer = consumer.clone();
            blocking(move || source::poll_batch(&consumer, poll_max, POLL_WAIT)).await?
        };
        if polled.is_empty() && options.stop_when_caught_up && (!paused || loads.is_empty()) {
            // Unpaused: is everything read? Paused with nothing in flight (the open batches
            // hold the budget and wait for inputs): is everything they wait for read?
            let consumer = consumer.clone();
            let partitions = if paused {
                source::of_topics(&assignment, &kept_reading)
            } else {
                assignment.clone()
            };
            let next = next_offsets.clone();
            let at_end = blocking(move || source::caught_up(&consumer, &partitions, &next)).await?;
            if paused {
                stalled = at_end;
            } else {
                caught_up = at_end;
            }
        }
        let now = Instant::now();
        let now_ms = chrono::Utc::now().timestamp_millis();
        for message in polled {
            report.records_consumed += 1;
            next_offsets.insert(
                (message.topic.clone(), message.partition),
                message.offset + 1,
            );
            let Some((source, template, _)) = routes.get(&message.topic) else {
                continue;
            };
            let change = match decode(message.key.as_deref(), message.value.as_deref()) {
                Ok(Decoded::Tombstone) => None,
                Ok(Decoded::Change(event)) => {
                    match source::tenant(source, template, &message.topic, &event.row) {
                        // Another shard's tenant (on a topic the shards share).
                        Ok(tenant) if !options.target.serves(&tenant) => None,
                        Ok(tenant) => {
                            let key_op = key_op_hash(&event.key, event.op.code());
                            if watermarks.admit(
                                &message.topic,
                                message.partition,
                                event.source_pos.as_deref(),
                                &key_op,
                            ) {
                                Some(Change {
                                    tenant,
                                    event,
                                    topic: message.topic.clone(),
                                    partition: message.partition,
                                    offset: message.offset,
                                })
                            } else {
                                report.duplicates_dropped += 1;
                                None
                            }
                        }
                        Err(reason) => {
                            tracing::debug!(topic = %message.topic, offset = message.offset, %reason, "record skipped");
                            report.records_skipped += 1;
                            None
                        }
                    }
                }
                Err(err) => {
                    tracing::debug!(topic = %message.topic, offset = message.offset, %err, "record skipped");
                    report.records_skipped += 1;
                    None
                }
            };
            for table in tables.iter_mut().filter(|t| t.state.reads(&source.table)) {
                let affected = match &change {
                    Some(change) => match table.state.apply(&source.table, change) {
                        Ok(mut keys) => {
                            if table.state.take_retyped() {
                                // Rows shaped with the inferred type are shaped again.
                                keys.extend(table.state.live_keys());
                            }
                            keys
                        }
                        Err(reason) => {
                            tracing::debug!(topic = %message.topic, offset = message.offset, %reason, "event skipped");
                            report.records_skipped += 1;
                            Vec::new()
                        }
                    },
                    None => Vec::new(),
                };
                let recorded = table
                    .recorded
                    .get(&(message.topic.clone(), message.partition))
                    .copied()
                    .unwrap_or(0);
                if message.offset < recorded {
                    report.records_replayed += 1;
                    continue;
                }
                table.open.add(
                    &message.topic,
                    message.partition,
                    message.offset,
                    affected,
                    message.timestamp_ms,
                    batch::arrival(now, now_ms, message.timestamp_ms, limits.interval),
                );
            }
        }
        if last_lag.elapsed() >= Duration::from_secs(5)
            && lag_task.as_ref().is_none_or(|t| t.is_finished())
        {
            last_lag = Instant::now();
            // Off the loop: each watermark query waits behind the consumer's long-poll
            // fetch (up to `fetch.wait.max.ms` per partition), which would hold up cutting
            // and acknowledging batches for seconds.
            let consumer = consumer.clone();
            let gauges: Vec<_> = tables
                .iter()
                .map(|t| {
                    let gauge = options
                        .metrics
                        .lag
                        .get_or_create(&TableLabel::new(&t.model.name))
                        .clone();
                    (gauge, t.acked.clone())
                })
                .collect();
            lag_task = Some(tokio::task::spawn_blocking(move || {
                for (gauge, acked) in gauges {
                    gauge.set(source::lag(&consumer, &acked));
                }
            }));
        }
    }
    if let Some(health) = &options.health {
        health.set_ready(false);
    }
    for table in &tables {
        source::mirror_offsets(&consumer, &table.acked);
    }
    // Freeing the state (every live source row, many small allocations) took a sixth of a
    // batch run's CPU; a caller about to exit should not wait for it.
    std::thread::spawn(move || drop(tables));
    Ok(report)
}

/// How long a batch waits for typed events before columns typed only by inference are
/// accepted (see [`shape::shape`]).
fn inferred_wait(limits: &BatchLimits) -> Duration {
    (limits.interval * 10).max(Duration::from_secs(10))
}

/// Runs a blocking Kafka call off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RelayError> + Send + 'static,
) -> Result<T, RelayError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| RelayError::Task(err.to_string()))?
}

/// Whether every partition the ledger covers has been read past its recorded position, so
/// the state holds everything already loaded.
fn rebuilt(table: &HotTable, next: &HashMap<(String, i32), i64>) -> bool {
    table
        .recorded
        .iter()
        .all(|(tp, recorded)| next.get(tp).is_some_and(|n| n >= recorded))
}

/// What cutting a batch gave.
enum Cut {
    /// Recorded as pending: load it.
    Load(LedgerEntry),
    /// Nothing to load (only tombstones or ignored events); recorded as acknowledged.
    Empty,
    /// An input has no events yet, or the model cannot run on inferred types yet.
    NotReady(shape::NotReady),
}

/// Shapes a closed batch and records it in the ledger.
async fn cut(
    table: &mut HotTable,
    closed: &ClosedBatch,
    ledger: &RelayLedger,
    allow_inferred: bool,
) -> Result<Cut, RelayError> {
    let label_ranges: Vec<crate::stream_load::OffsetRange> = closed
        .ranges
        .iter()
        .map(|r| crate::stream_load::OffsetRange {
            topic: r.topic.clone(),
            partition: r.partition,
            first: r.first,
            last: r.last,
        })
        .collect();
    let label = batch_label(
        &format!("{}_{}", table.model.name, table.epoch),
        &label_ranges,
    );
    let shaped = if closed.keys.is_empty() {
        shape::Shaped::default()
    } else {
        match shape::shape(
            &table.model,
            &table.state,
            &closed.keys,
            &label,
            allow_inferred,
        )
        .await?
        {
            Ok(shaped) => shaped,
            Err(reason) => {
                if !table.warned_not_ready {
                    tracing::warn!(model = %table.model.name, %reason, "the model cannot run yet; waiting for more events");
                    table.warned_not_ready = true;
                }
                return Ok(Cut::NotReady(reason));
            }
        }
    };
    let rows = shaped.rows() as u64;
    if let Some(per_row) = (shaped.body.len() as u64).checked_div(rows) {
        // Exponential average of the body size per row, for the size-based cut.
        table.bytes_per_row = (table.bytes_per_row * 3 + per_row) / 4;
    }
    let entry = LedgerEntry {
        hot_table: table.ledger_key.clone(),
        seq: table.next_seq,
        label,
        ranges: closed.ranges.clone(),
        rows: rows as i64,
        body: shaped.body,
        state: if rows == 0 {
            EntryState::Acked
        } else {
            EntryState::Pending
        },
    };
    ledger.record(&entry, &table.owner).await?;
    table.next_seq += 1;
    for range in &closed.ranges {
        table
            .recorded
            .insert((range.topic.clone(), range.partition), range.last + 1);
    }
    if rows == 0 {
        for range in &closed.ranges {
            table
                .acked
                .insert((range.topic.clone(), range.partition), range.last + 1);
        }
        return Ok(Cut::Empty);
    }
    Ok(Cut::Load(entry))
}

/// Starts loading a recorded entry as the table's load in flight.
fn start_load(
    loads: &mut JoinSet<(usize, Result<Loaded, StreamLoadError>)>,
    client: &StreamLoadClient,
    cancel: &watch::Receiver<bool>,
    index: usize,
    table: &mut HotTable,
    entry: LedgerEntry,
    event_times: Vec<i64>,
) {
    table.in_flight = Some(InFlight {
        seq: entry.seq,
        label: entry.label.clone(),
        bytes: entry.body.len() as u64,
        rows: entry.rows as u64,
        event_times,
        ranges: entry.ranges.clone(),
    });
    let client = client.clone();
    let mut cancel = cancel.clone();
    let name = table.model.name.clone();
    loads.spawn(async move {
        let outcome = load_all(
            &client,
            &name,
            entry.label,
            Bytes::from(entry.body),
            &mut cancel,
        )
        .await;
        (index, outcome)
    });
}

/// Loads a body under its label; a body StarRocks refuses (bad rows, too large) is split in
/// halves under the deterministic sub-labels `{label}-a` / `{label}-b`, down to single rows,
/// which are dead-lettered. The same body always splits the same way, so a restart in the
/// middle finds the halves already loaded.
async fn load_all(
    client: &StreamLoadClient,
    table: &str,
    label: String,
    body: Bytes,
    cancel: &mut watch::Receiver<bool>,
) -> Result<Loaded, StreamLoadError> {
    let mut loaded = Loaded {
        acks: Vec::new(),
        dead_letters: Vec::new(),
    };
    let mut work = vec![(label, body)];
    while let Some((label, body)) = work.pop() {
        let request = LoadRequest {
            table: table.to_string(),
            label: label.clone(),
            body: body.clone(),
            format: BodyFormat::JsonLines,
            columns: None,
            merge_condition: Some(RELAY_VERSION.to_string()),
            partial_update: false,
        };
        match client.load(&request, cancel).await {
            Ok(ack) => loaded.acks.push(ack),
            Err(err @ (StreamLoadError::Data { .. } | StreamLoadError::TooLarge { .. })) => {
                let lines: Vec<&[u8]> = body
                    .split(|b| *b == b'\n')
                    .filter(|line| !line.is_empty())
                    .collect();
                if lines.len() <= 1 {
                    tracing::warn!(%label, %err, "row refused by StarRocks; dead-lettered");
                    loaded.dead_letters.push(dead_letters::Refused {
                        label,
                        row: lines.first().map(|line| line.to_vec()).unwrap_or_default(),
                        reason: err.to_string(),
                    });
                    continue;
                }
                tracing::info!(%label, rows = lines.len(), %err, "bisecting a refused batch");
                let middle = lines.len() / 2;
                let join = |part: &[&[u8]]| {
                    let mut out = Vec::new();
                    for line in part {
                        out.extend_from_slice(line);
                        out.push(b'\n');
                    }
                    Bytes::from(out)
                };
                // Popped last-in first-out: `a` goes first.
                work.push((sub_label(&label, Half::B), join(&lines[middle..])));
                work.push((sub_label(&label, Half::A), join(&lines[..middle])));
            }
            Err(err) => return Err(err),
        }
    }
    Ok(loaded)
}

/// Records the outcome of a table's load in flight: its refused rows in the dead-letter
/// table first, then the acknowledgement in the ledger (see [`dead_letters`]).
async fn acknowledge(
    table: &mut HotTable,
    outcome: Result<Loaded, StreamLoadError>,
    ledger: &RelayLedger,
    sink: &mut DeadLetterSink,
    consumer: &BaseConsumer,
    metrics: &RelayMetrics,
    report: &mut RelayReport,
) -> Result<(), RelayError> {
    let Some(flight) = table.in_flight.take() else {
        return Err(RelayError::Task("an acknowledgement without a load".into()));
    };
    let loaded = outcome.map_err(|source| RelayError::StreamLoad {
        table: table.ledger_key.clone(),
        source,
    })?;
    let refused = if loaded.dead_letters.is_empty() {
        None
    } else {
        let letters = dead_letters::letters(
            &table.model,
            &table.state,
            &table.ledger_key,
            &flight.ranges,
            &loaded.dead_letters,
        );
        let written = sink
            .commit(&table.ledger_key, &flight.label, &letters)
            .await?;
        tracing::info!(table = %table.ledger_key, label = %flight.label, rows = letters.len(), written, "refused rows in the dead-letter table");
        let summary: Vec<serde_json::Value> = loaded
            .dead_letters
            .iter()
            .map(|refused| {
                serde_json::json!({
                    "label": refused.label,
                    "row": String::from_utf8_lossy(&refused.row),
                    "error": refused.reason,
                })
            })
            .collect();
        Some(serde_json::Value::from(summary).to_string())
    };
    ledger
        .ack(
            &table.ledger_key,
            flight.seq,
            refused.as_deref(),
            &table.owner,
        )
        .await?;
    for range in &flight.ranges {
        table
            .acked
            .insert((range.topic.clone(), range.partition), range.last + 1);
    }
    source::mirror_offsets(consumer, &table.acked);

    let label = TableLabel::new(&table.model.name);
    let entry = report.tables.entry(table.model.name.clone()).or_default();
    for ack in &loaded.acks {
        entry.loads += 1;
        entry.retries += u64::from(ack.attempts.saturating_sub(1));
        entry.label_conflicts += u64::from(ack.label_conflicts);
        entry.labels.push(ack.label.clone());
        metrics.loads.get_or_create(&label).inc();
        metrics.bytes.get_or_create(&label).inc_by(ack.bytes);
        metrics
            .retries
            .get_or_create(&label)
            .inc_by(u64::from(ack.attempts.saturating_sub(1)));
        metrics
            .label_conflicts
            .get_or_create(&label)
            .inc_by(u64::from(ack.label_conflicts));
    }
    entry.rows += flight.rows;
    entry.dead_letters += loaded.dead_letters.len() as u64;
    metrics
        .dead_letters
        .get_or_create(&label)
        .inc_by(loaded.dead_letters.len() as u64);
    metrics.rows.get_or_create(&label).inc_by(flight.rows);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let histogram = metrics.event_to_visible.get_or_create(&label);
    for time in &flight.event_times {
        histogram.observe((now_ms - time).max(0) as f64 / 1000.0);
    }
    tracing::debug!(table = %table.ledger_key, seq = flight.seq, rows = flight.rows, "batch acknowledged");
    Ok(())
}

/// The relayed models with their state, from the config and the models' SQL.
async fn hot_tables(
    config: &PipelineConfig,
    options: &RelayOptions,
) -> Result<Vec<HotTable>, RelayError> {
    let mut tables = Vec::new();
    for model in config.gold.iter().filter(|m| m.relay) {
        let sql = match options.model_sql.get(&model.name) {
            Some(sql) => sql.clone(),
            None => {
                let path = firn_transforms::gold::model_sql_path(&config.base_dir, model);
                std::fs::read_to_string(&path).map_err(|source| {
                    firn_transforms::TransformError::ModelSql {
                        model: model.name.clone(),
                        path: path.clone(),
                        source,
                    }
                })?
            }
        };
        let parsed = firn_transforms::GoldModel::new(model, sql)?;
        let mut inputs = Vec::new();
        for input in &parsed.inputs {
            let Some(table) = input.strip_prefix("silver.") else {
                return Err(RelayError::Config(format!(
                    "gold.{} reads {input}: a relayed model may read silver tables only",
                    model.name
                )));
            };
            let gold_key = model.relay_keys.get(table).cloned().ok_or_else(|| {
                RelayError::Config(format!(
                    "gold[{}].relay-keys has no entry for input table `{table}`",
                    model.name
                ))
            })?;
            let source = config
                .sources
                .iter()
                .find(|s| s.table == table)
                .ok_or_else(|| {
                    RelayError::Config(format!(
                        "gold.{} reads silver.{table}, which no [[sources]] entry feeds",
                        model.name
                    ))
                })?;
            inputs.push(InputSpec {
                table: table.to_string(),
                primary_key: source.primary_key.clone().unwrap_or_default(),
                gold_key,
            });
        }
        let relay_model = RelayModel {
            name: model.name.clone(),
            sql: parsed.sql_text.clone(),
            key: model.key.clone(),
            inputs: inputs.clone(),
        };
        tables.push(HotTable {
            model: relay_model,
            ledger_key: match options.target.shard() {
                None => format!("{}.{}", options.target.database, model.name),
                Some(shard) => format!("{}.{}[{shard}]", options.target.database, model.name),
            },
            epoch: String::new(),
            owner: String::new(),
            state: ModelState::new(inputs),
            recorded: BTreeMap::new(),
            acked: BTreeMap::new(),
            open: OpenBatch::default(),
            next_seq: 0,
            in_flight: None,
            resend: VecDeque::new(),
            bytes_per_row: INITIAL_BYTES_PER_ROW,
            warned_not_ready: false,
            failed_typing: None,
            last_cut: None,
            waiting_for: BTreeSet::new(),
        });
    }
    Ok(tables)
}

/// Every row of an Iceberg table's current snapshot in the hot table's JSON representation
/// (see [`shape::push_value`]), e.g. to put `gold.<model>` next to its hot table. Does I/O.
pub async fn iceberg_rows(
    catalog: &firn_catalog::Catalog,
    name: &firn_catalog::TableName,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, RelayError> {
    use futures::TryStreamExt;
    let table = catalog.load_table(name).await?;
    if table.metadata().current_snapshot_id().is_none() {
        return Ok(Vec::new());
    }
    let scan_error = |err: iceberg::Error| RelayError::Shape(format!("scan {name}: {err}"));
    let batches: Vec<arrow_array::RecordBatch> = table
        .scan()
        .select_all()
        .build()
        .map_err(scan_error)?
        .to_arrow()
        .await
        .map_err(scan_error)?
        .try_collect()
        .await
        .map_err(scan_error)?;
    shape::batches_to_json(&batches)
}
