//! The bronze ingest loop: reads the CDC topics from Kafka, decodes Debezium events,
//! and commits them to `bronze.<table>` with the Kafka positions in the same snapshot.
//! Does I/O (Kafka, catalog, storage).
//!
//! Exactly once: each bronze snapshot's summary holds the next offset of every
//! topic-partition the table consumes. Whenever partitions are assigned to this process
//! (consumer-group rebalance, or static assignment at start) the consumer is positioned at
//! the offsets bronze holds, and every commit is re-validated against the positions this
//! process resumed from, so a stale writer (a zombie paused past its session timeout) can
//! never move them. Offsets of partitions other processes own are merged from the table as
//! it is at commit time. Records that cannot be ingested go to `bronze.firn_dead_letters`,
//! committed *before* the bronze table of the same cycle with the cycle's positions: after
//! a crash between the two, replay starts at the bronze positions and skips dead letters
//! the dead-letter table already holds.
//!
//! Tables commit independently, each by its own policy clock (time, records, bytes): a table
//! whose commit fails drops its uncommitted rows, rewinds its partitions to the positions
//! bronze holds and tries again on its next cycle, while the other tables keep flowing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow_array::builder::{
    Int32Builder, Int64Builder, LargeBinaryBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use base64::Engine as _;
use firn_catalog::config::{
    KafkaAssignment, PipelineConfig, SourceConfig, TenantRule, TopicTemplate,
};
use firn_catalog::history::{self, KAFKA_OFFSETS, KafkaOffsets, WRITER_ID};
use firn_catalog::tables::{DEAD_LETTER_TABLE, TableName, Tier};
use firn_catalog::{Catalog, CommitRequest, DataFileSink, Operation};
use iceberg::spec::PrimitiveType;
use iceberg::table::Table;
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

use crate::admin::Health;
use crate::bronze::{BronzeRow, build_batch, column_types, may_be_refused, plan_schema_changes};
use crate::debezium::{CellValue, Decoded};
use crate::dedup::{SOURCE_WATERMARKS, Watermarks, key_op_hash};
use crate::error::IngestError;
use crate::metrics::{CommitLabel, DeadLetterLabel, IngestMetrics};
use crate::schema_registry::RecordDecoder;
use crate::source::{
    KafkaSource, ResumeFn, SourceEvent, SourceOptions, SourceRecord, TopicPartition,
};

/// A record that could not be ingested.
#[derive(Debug, Clone)]
struct DeadLetter {
    tenant: Option<String>,
    table: Option<String>,
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    /// JSON object of the record's Kafka headers.
    headers: Option<String>,
    kind: String,
    message: String,
}

/// A row waiting for its table's next commit. The raw record is kept only when the row
/// may be refused at commit ([`may_be_refused`], or every row after a refusal found a row
/// without it), for its dead letter.
struct PendingRow {
    row: BronzeRow,
    record: Option<SourceRecord>,
}

/// One bronze table as this process sees it.
#[derive(Default)]
struct TableState {
    /// Next offsets bronze holds for this table's partitions (as last read or committed).
    committed: KafkaOffsets,
    /// Dedup watermarks bronze holds for this table.
    committed_marks: Watermarks,
    /// Next offsets the dead-letter table holds for this table's partitions.
    dead_letter_committed: KafkaOffsets,
    rows: Vec<PendingRow>,
    dead_letters: Vec<DeadLetter>,
    /// Next offsets read in the running cycle.
    reached: KafkaOffsets,
    cycle_started: Option<Instant>,
    cycle_records: u64,
    cycle_bytes: u64,
    /// Newest source timestamp in the running cycle (µs).
    cycle_newest_source_ts: Option<i64>,
    /// Column types as last read from the table, plus the first type seen of new columns.
    column_types: HashMap<String, PrimitiveType>,
    /// Keep every row's raw record: set when a commit refused a row whose record was not
    /// kept (the table changed meanwhile), until the next commit succeeds.
    keep_records: bool,
    /// `records_consumed` of this table.
    consumed: Option<Counter>,
    /// The bronze table as this process last loaded or committed it: the next commit starts
    /// from it when the catalog still points at it (no metadata read per commit).
    table: Option<Table>,
}

impl TableState {
    fn has_work(&self) -> bool {
        self.cycle_records > 0
    }

    /// Drops uncommitted work for `partitions` (revoked, or rewound after a failure).
    fn drop_partitions(&mut self, partitions: &[TopicPartition]) {
        let hit = |topic: &str, partition: i32| {
            partitions
                .iter()
                .any(|(t, p)| t == topic && *p == partition)
        };
        self.rows
            .retain(|pending| !hit(&pending.row.topic, pending.row.partition));
        self.dead_letters
            .retain(|letter| !hit(&letter.topic, letter.partition));
        for (topic, partition) in partitions {
            if let Some(parts) = self.reached.0.get_mut(topic) {
                parts.remove(partition);
                if parts.is_empty() {
                    self.reached.0.remove(topic);
                }
            }
        }
        if self.reached.0.is_empty() {
            self.reset_cycle();
        }
    }

    fn reset_cycle(&mut self) {
        self.rows.clear();
        self.dead_letters.clear();
        self.reached = KafkaOffsets::default();
        self.cycle_started = None;
        self.cycle_records = 0;
        self.cycle_bytes = 0;
        self.cycle_newest_source_ts = None;
    }

    fn touched(&self) -> Vec<TopicPartition> {
        self.reached
            .0
            .iter()
            .flat_map(|(topic, parts)| parts.keys().map(move |p| (topic.clone(), *p)))
            .collect()
    }
}

/// What the resolver read for newly assigned partitions, per bronze table.
pub struct TableResume {
    table: String,
    offsets: KafkaOffsets,
    marks: Watermarks,
    dead_letter_offsets: KafkaOffsets,
    column_types: HashMap<String, PrimitiveType>,
    bronze: Table,
}

/// What one table got in a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableReport {
    pub rows_written: u64,
    pub commits: u64,
    pub failed_commits: u64,
    pub last_snapshot_id: Option<i64>,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    pub records_consumed: u64,
    pub tombstones: u64,
    /// Debezium re-emissions dropped (same source position, key and op as an earlier event).
    pub duplicates_dropped: u64,
    pub dead_letters: u64,
    pub tables: BTreeMap<String, TableReport>,
}

/// Options for [`run`].
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub brokers: String,
    pub writer_id: String,
    /// Stop once every assigned partition has been read to its end and committed. In this
    /// mode a failed commit ends the run with its error instead of being retried.
    pub stop_when_caught_up: bool,
}

/// Ingests until caught up (or forever), committing by the configured policy.
pub async fn run(
    catalog: &Catalog,
    config: &PipelineConfig,
    options: &IngestOptions,
) -> Result<IngestReport, IngestError> {
    run_until(catalog, config, options, &AtomicBool::new(false)).await
}

/// Like [`run`], and when `stop` is set (e.g. on SIGTERM) it commits what has been read
/// and returns. A kill without warning is safe too: uncommitted records are read again.
pub async fn run_until(
    catalog: &Catalog,
    config: &PipelineConfig,
    options: &IngestOptions,
    stop: &AtomicBool,
) -> Result<IngestReport, IngestError> {
    run_service(
        catalog,
        config,
        options,
        stop,
        &IngestMetrics::unregistered(),
        &Health::new(),
    )
    .await
}

/// The ingest service: [`run_until`] reporting to `metrics` and `health` (served by
/// [`crate::admin`]).
pub async fn run_service(
    catalog: &Catalog,
    config: &PipelineConfig,
    options: &IngestOptions,
    stop: &AtomicBool,
    metrics: &IngestMetrics,
    health: &Health,
) -> Result<IngestReport, IngestError> {
    catalog.init(config).await?;
    let patterns = config
        .sources
        .iter()
        .map(|source| {
            TopicTemplate::parse(&source.topic)
                .map(|template| template.subscription_regex())
                .map_err(IngestError::Invalid)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let source = KafkaSource::start(
        &config.kafka,
        &SourceOptions {
            brokers: options.brokers.clone(),
            patterns,
            client_id: options.writer_id.clone(),
            assignment: assignment_for(config, options),
        },
        resume_from_bronze(catalog.clone(), config.clone()),
        metrics.clone(),
    )?;
    let mut ingest = Ingest {
        catalog,
        config,
        options,
        metrics,
        source: &source,
        routes: HashMap::new(),
        tables: BTreeMap::new(),
        owned: BTreeMap::new(),
        starts: HashMap::new(),
        watermarks: Watermarks::default(),
        report: IngestReport::default(),
        decoder: RecordDecoder::new(config)?,
        rewound: false,
        commits: tokio::task::JoinSet::new(),
        in_flight: BTreeSet::new(),
        polled_at_micros: 0,
    };
    // A consumer-group member may lose partitions in any poll (the rebalance callback runs
    // inside it); it has its commits finished by then, so that the next owner resumes
    // from them. Static assignment never revokes: its commits overlap the polls.
    let drain_before_poll = matches!(assignment_for(config, options), KafkaAssignment::Group);
    loop {
        if drain_before_poll {
            ingest.finish_all().await?;
        }
        let mut events = source.poll(5_000, ingest.poll_wait()).await?;
        // Avro schemas are fetched before decoding; a registry outage waits here, until it
        // is over or a stop is requested.
        if let Err(err) = ingest.decoder.prepare(&events, stop).await {
            if !err.is_retryable() || !stop.load(Ordering::SeqCst) {
                return Err(err);
            }
            // Stopping during the outage: these records stay uncommitted (the next owner
            // reads them again); what was read before them is committed below.
            tracing::warn!(error = %err, "stop requested while the schema registry is unavailable: the last poll's records are left for the next run");
            events.retain(|event| !matches!(event, SourceEvent::Record(_)));
        }
        let polled_nothing = events.is_empty();
        ingest.polled_at_micros = chrono::Utc::now().timestamp_micros();
        for event in events {
            ingest.handle(event);
        }
        health.set_ready(!ingest.owned.is_empty());
        let stopping = stop.load(Ordering::SeqCst);
        // Only a batch run needs to know it reached the end: the check costs a ListOffsets
        // round trip per partition, which a service would pay on every quiet poll.
        let caught_up = options.stop_when_caught_up
            && polled_nothing
            && !ingest.owned.is_empty()
            && source.caught_up(ingest.starts.clone()).await?;
        ingest.commit_due(caught_up || stopping).await?;
        metrics.refresh_freshness(
            chrono::Utc::now().timestamp_micros() as f64 / 1e6,
            &ingest.tables.keys().cloned().collect::<Vec<_>>(),
        );
        if stopping {
            tracing::info!("stop requested: committed what was read");
            health.set_ready(false);
            source.close().await;
            return Ok(ingest.report);
        }
        let idle = ingest.tables.values().all(|table| !table.has_work())
            && !ingest.committing()
            && !std::mem::take(&mut ingest.rewound);
        if caught_up && options.stop_when_caught_up && idle {
            source.close().await;
            return Ok(ingest.report);
        }
    }
}

/// A run that stops when caught up is a batch job: it reads every partition itself (static
/// assignment) rather than joining the consumer group, where it would take partitions away
/// from the running service and pay a rebalance on every start.
fn assignment_for(config: &PipelineConfig, options: &IngestOptions) -> KafkaAssignment {
    match config.kafka.assignment() {
        KafkaAssignment::Group if options.stop_when_caught_up => KafkaAssignment::Static {
            partitions: Vec::new(),
        },
        assignment => assignment,
    }
}

/// Reads the resume positions of newly assigned partitions from bronze (and the dead-letter
/// table), on the consumer's poll thread. A retryable catalog or storage failure is tried
/// again for up to [`RESUME_RETRY_FOR`] before the assignment fails (which stops the
/// process: nothing may be read without positions).
fn resume_from_bronze(catalog: Catalog, config: PipelineConfig) -> ResumeFn<Vec<TableResume>> {
    let runtime = tokio::runtime::Handle::current();
    Arc::new(move |partitions: &[TopicPartition]| {
        runtime
            .block_on(retrying(RESUME_RETRY_FOR, || {
                read_resume(&catalog, &config, partitions)
            }))
            .map_err(|err| err.to_string())
    })
}

/// How long reading the resume positions of an assignment is retried. It blocks the poll
/// thread, so it stays well below librdkafka's `max.poll.interval.ms` (5 minutes).
const RESUME_RETRY_FOR: Duration = Duration::from_secs(60);

/// Runs `attempt` until it succeeds, fails in a way that is not retryable, or has kept
/// failing for `retry_for` (backoff from 250 ms, doubling up to 5 s).
async fn retrying<T, F: Future<Output = Result<T, IngestError>>>(
    retry_for: Duration,
    mut attempt: impl FnMut() -> F,
) -> Result<T, IngestError> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(250);
    loop {
        match attempt().await {
            Err(err) if err.is_retryable() && started.elapsed() < retry_for => {
                tracing::warn!(error = %err, retry_in = ?backoff, "cannot read resume positions; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            outcome => return outcome,
        }
    }
}

/// The resume positions of `partitions` and the bronze state they come with.
async fn read_resume(
    catalog: &Catalog,
    config: &PipelineConfig,
    partitions: &[TopicPartition],
) -> Result<(Vec<Option<i64>>, Vec<TableResume>), IngestError> {
    let dead_letter_table = catalog
        .load_table(&TableName::new(Tier::Bronze, DEAD_LETTER_TABLE)?)
        .await?;
    let dead_letter_offsets = committed_offsets(&dead_letter_table);
    let mut loaded: BTreeMap<String, TableResume> = BTreeMap::new();
    let mut offsets = Vec::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        let Some(source) = config.source_for_topic(topic) else {
            return Err(IngestError::Invalid(format!(
                "topic {topic} matches no source"
            )));
        };
        if !loaded.contains_key(&source.table) {
            let table = catalog
                .load_table(&TableName::new(Tier::Bronze, &source.table)?)
                .await?;
            loaded.insert(
                source.table.clone(),
                TableResume {
                    table: source.table.clone(),
                    offsets: committed_offsets(&table),
                    marks: committed_watermarks(&table),
                    dead_letter_offsets: dead_letter_offsets.clone(),
                    column_types: column_types(table.metadata().current_schema()),
                    bronze: table,
                },
            );
        }
        offsets.push(loaded[&source.table].offsets.get(topic, *partition));
    }
    Ok((offsets, loaded.into_values().collect()))
}

/// The ingest loop's state.
struct Ingest<'a> {
    catalog: &'a Catalog,
    config: &'a PipelineConfig,
    options: &'a IngestOptions,
    metrics: &'a IngestMetrics,
    source: &'a KafkaSource<Vec<TableResume>>,
    /// Topic → its source and topic template.
    /// Topic → its source and the tenant its name resolves to (or why it does not).
    routes: HashMap<String, Arc<Route>>,
    tables: BTreeMap<String, TableState>,
    /// Owned partitions by topic (looked up per record without allocating).
    owned: BTreeMap<String, BTreeSet<i32>>,
    /// Offset each owned partition was positioned at.
    starts: HashMap<TopicPartition, i64>,
    /// Live dedup watermarks of the owned partitions (including uncommitted events).
    watermarks: Watermarks,
    report: IngestReport,
    /// JSON and Confluent Avro decoding, with the Schema Registry's schemas.
    decoder: RecordDecoder,
    /// Set when a commit gave up and rewound its table: the run is not caught up.
    rewound: bool,
    /// Running commit tasks: (table, start, result).
    commits: tokio::task::JoinSet<(String, Instant, Result<Committed, CommitFailed>)>,
    /// Tables with a commit task running.
    in_flight: BTreeSet<String>,
    /// When the records being handled were polled: their ingest time (one clock read per
    /// poll, not per record; a poll lasts at most twice its wait).
    polled_at_micros: i64,
}

/// A topic's source and the tenant its name resolves to (or why it does not), worked out
/// once per topic.
type Route = (SourceConfig, Result<String, String>);

/// How long a poll waits for records at most when no commit is near.
const POLL_WAIT: Duration = Duration::from_millis(200);
/// The shortest poll wait, so a due commit does not turn the loop into a busy spin.
const MIN_POLL_WAIT: Duration = Duration::from_millis(5);

impl Ingest<'_> {
    /// The poll's wait: [`POLL_WAIT`], cut so that the poll (which takes at most twice its
    /// wait) returns by the time the first table's commit clock runs out.
    fn poll_wait(&self) -> Duration {
        let interval = self.config.commit.interval;
        let now = Instant::now();
        self.tables
            .values()
            .filter_map(|table| table.cycle_started)
            .map(|started| (started + interval).saturating_duration_since(now) / 2)
            .fold(POLL_WAIT, Duration::min)
            .max(MIN_POLL_WAIT)
    }

    fn handle(&mut self, event: SourceEvent<Vec<TableResume>>) {
        match event {
            SourceEvent::Assigned {
                partitions,
                offsets,
                resume,
            } => self.assigned(partitions, offsets, resume),
            SourceEvent::Revoked(partitions) => self.revoked(&partitions),
            SourceEvent::Record(record) => self.record(record),
        }
    }

    fn assigned(
        &mut self,
        partitions: Vec<TopicPartition>,
        offsets: Vec<Option<i64>>,
        resume: Vec<TableResume>,
    ) {
        for loaded in resume {
            let table = self.tables.entry(loaded.table.clone()).or_default();
            table.committed = loaded.offsets;
            table.committed_marks = loaded.marks;
            table.dead_letter_committed = loaded.dead_letter_offsets;
            table.column_types = loaded.column_types;
            table.table = Some(loaded.bronze);
        }
        for ((topic, partition), offset) in partitions.into_iter().zip(offsets) {
            if let Some(source) = self.config.source_for_topic(&topic)
                && let Some(table) = self.tables.get(&source.table)
            {
                self.reset_watermark(&topic, partition, &table.committed_marks.clone());
            }
            self.starts
                .insert((topic.clone(), partition), offset.unwrap_or(0));
            self.owned.entry(topic).or_default().insert(partition);
        }
        self.metrics
            .assigned_partitions
            .set(self.owned_count() as i64);
    }

    fn revoked(&mut self, partitions: &[TopicPartition]) {
        for table in self.tables.values_mut() {
            table.drop_partitions(partitions);
        }
        for (topic, partition) in partitions {
            if let Some(parts) = self.owned.get_mut(topic) {
                parts.remove(partition);
                if parts.is_empty() {
                    self.owned.remove(topic);
                }
            }
            self.starts.remove(&(topic.clone(), *partition));
            if let Some(parts) = self.watermarks.0.get_mut(topic) {
                parts.remove(partition);
            }
        }
        self.metrics
            .assigned_partitions
            .set(self.owned_count() as i64);
    }

    fn owns(&self, topic: &str, partition: i32) -> bool {
        self.owned
            .get(topic)
            .is_some_and(|parts| parts.contains(&partition))
    }

    fn owned_count(&self) -> usize {
        self.owned.values().map(BTreeSet::len).sum()
    }

    /// Sets a partition's live watermark back to what bronze holds.
    fn reset_watermark(&mut self, topic: &str, partition: i32, committed: &Watermarks) {
        if let Some(parts) = self.watermarks.0.get_mut(topic) {
            parts.remove(&partition);
        }
        let key = [(topic.to_string(), partition)];
        self.watermarks = self.watermarks.merged_with(&committed.restricted_to(&key));
    }

    fn route(&mut self, topic: &str) -> Option<Arc<Route>> {
        if let Some(route) = self.routes.get(topic) {
            return Some(route.clone());
        }
        let source = self.config.source_for_topic(topic)?.clone();
        let template = TopicTemplate::parse(&source.topic).ok()?;
        let tenant = resolve_tenant(&source, &template, topic);
        let route = Arc::new((source, tenant));
        self.routes.insert(topic.to_string(), route.clone());
        Some(route)
    }

    fn record(&mut self, record: SourceRecord) {
        let (partition, offset) = (record.partition, record.offset);
        if !self.owns(&record.topic, partition) {
            return; // Fetched before a revocation; the new owner reads it.
        }
        let Some(route) = self.route(&record.topic) else {
            return;
        };
        let (source, tenant) = (&route.0, &route.1);
        self.report.records_consumed += 1;
        let max_message_bytes = self.config.kafka.max_message_bytes as usize;
        let metrics = self.metrics;
        if !self.tables.contains_key(&source.table) {
            self.tables
                .insert(source.table.clone(), TableState::default());
        }
        let table = self.tables.get_mut(&source.table).expect("inserted above");
        table
            .consumed
            .get_or_insert_with(|| {
                metrics
                    .records_consumed
                    .get_or_create(&IngestMetrics::table(&source.table))
                    .clone()
            })
            .inc();
        if offset < table.committed.get(&record.topic, partition).unwrap_or(0) {
            return; // Already in bronze (replay after a crash between commits).
        }
        table.reached.set(&record.topic, partition, offset + 1);
        table.cycle_records += 1;
        table.cycle_bytes += record.size() as u64;
        table.cycle_started.get_or_insert_with(Instant::now);

        let outcome = if record.size() > max_message_bytes {
            Err((
                "oversized".to_string(),
                format!(
                    "message is {} bytes (key + value), above kafka.max-message-bytes = {}; the \
                     dead letter keeps the first {} bytes of the value",
                    record.size(),
                    max_message_bytes,
                    max_message_bytes
                ),
                tenant.clone().ok(),
            ))
        } else {
            self.decode_row(source, tenant, &record)
        };
        let table = self
            .tables
            .get_mut(&source.table)
            .expect("table state exists");
        match outcome {
            Ok(None) => {}
            Ok(Some(row)) => {
                let keep =
                    table.keep_records || may_be_refused(&mut table.column_types, &row.cells);
                table.rows.push(PendingRow {
                    row,
                    record: keep.then_some(record),
                });
            }
            Err((kind, message, tenant)) => {
                let already = table
                    .dead_letter_committed
                    .get(&record.topic, partition)
                    .is_some_and(|next| offset < next);
                if !already {
                    let headers = headers_json(&record.headers);
                    let mut value = record.value;
                    if kind == "oversized"
                        && let Some(bytes) = value.as_mut()
                    {
                        bytes.truncate(max_message_bytes);
                    }
                    table.dead_letters.push(DeadLetter {
                        tenant,
                        table: Some(source.table.clone()),
                        topic: record.topic,
                        partition,
                        offset,
                        key: record.key,
                        value,
                        headers,
                        kind,
                        message,
                    });
                }
            }
        }
    }

    /// Decodes a record into a bronze row (`None`: a tombstone or a re-emission); the
    /// error is the dead-letter reason (kind, message, tenant) when it cannot be ingested.
    fn decode_row(
        &mut self,
        source: &SourceConfig,
        tenant: &Result<String, String>,
        record: &SourceRecord,
    ) -> Result<Option<BronzeRow>, (String, String, Option<String>)> {
        let decoded = self
            .decoder
            .decode(record.key.as_deref(), record.value.as_deref());
        match (tenant, decoded) {
            (_, Ok(Decoded::Tombstone)) => {
                self.report.tombstones += 1;
                self.metrics
                    .tombstones
                    .get_or_create(&IngestMetrics::table(&source.table))
                    .inc();
                Ok(None)
            }
            (Ok(tenant), Ok(Decoded::Change(event))) => {
                let tenant = match &source.tenant {
                    TenantRule::Field { field } => match field_tenant(&event.row, field) {
                        Ok(tenant) => tenant,
                        Err(message) => return Err(("unknown_tenant".into(), message, None)),
                    },
                    _ => tenant.clone(),
                };
                let key_op = key_op_hash(&event.key, event.op.code());
                let fresh = self.watermarks.admit(
                    &record.topic,
                    record.partition,
                    event.source_pos.as_deref(),
                    &key_op,
                );
                if !fresh {
                    self.report.duplicates_dropped += 1;
                    self.metrics
                        .duplicates_dropped
                        .get_or_create(&IngestMetrics::table(&source.table))
                        .inc();
                    return Ok(None);
                }
                let table = self
                    .tables
                    .get_mut(&source.table)
                    .expect("table state exists");
                if let Some(ts) = event.source_ts_micros {
                    table.cycle_newest_source_ts = Some(
                        table
                            .cycle_newest_source_ts
                            .map_or(ts, |newest| newest.max(ts)),
                    );
                }
                Ok(Some(BronzeRow {
                    tenant,
                    op: event.op,
                    source_ts_micros: event.source_ts_micros,
                    source_pos: event.source_pos,
                    topic: record.topic.clone(),
                    partition: record.partition,
                    offset: record.offset,
                    ingested_at_micros: self.polled_at_micros,
                    cells: event.row,
                }))
            }
            (Err(message), _) => Err(("unknown_tenant".into(), message.clone(), None)),
            (Ok(tenant), Err(err)) => Err((
                err.kind.as_str().to_string(),
                err.message,
                Some(tenant.clone()),
            )),
        }
    }

    /// Hands every table whose cycle is due (all with work when `flush`) to a commit task,
    /// and takes in the commits that finished. A table has at most one commit in flight;
    /// while it runs, the table's next cycle fills, and once that one is full too this
    /// waits (so a table holds at most two cycles: memory stays bounded by the limits).
    async fn commit_due(&mut self, flush: bool) -> Result<(), IngestError> {
        self.finish_commits(false).await?;
        let policy = &self.config.commit;
        let due: Vec<String> = self
            .tables
            .iter()
            .filter(|(_, table)| {
                table.has_work()
                    && (flush
                        || table
                            .cycle_started
                            .is_some_and(|t| t.elapsed() >= policy.interval)
                        || table.cycle_records >= policy.max_records
                        || table.cycle_bytes >= policy.max_bytes)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for table in due {
            if self.in_flight.contains(&table) {
                let state = &self.tables[&table];
                let full = state.cycle_bytes >= policy.max_bytes
                    || state.cycle_records >= policy.max_records;
                if !(flush || full) {
                    continue;
                }
                while self.in_flight.contains(&table) {
                    self.finish_commits(true).await?;
                }
            }
            // A rewind while waiting may have dropped the cycle.
            if self.tables[&table].has_work() {
                self.start_commit(&table);
            }
        }
        if flush {
            self.finish_all().await?;
        }
        Ok(())
    }

    /// Waits for every running commit and takes it in.
    async fn finish_all(&mut self) -> Result<(), IngestError> {
        while self.committing() {
            self.finish_commits(true).await?;
        }
        Ok(())
    }

    /// Takes in finished commits: all that are done, or (`wait`) at least one.
    async fn finish_commits(&mut self, wait: bool) -> Result<(), IngestError> {
        let mut first = wait;
        loop {
            let joined = if first {
                first = false;
                self.commits.join_next().await
            } else {
                self.commits.try_join_next()
            };
            let Some(joined) = joined else {
                return Ok(());
            };
            let (table, started, result) =
                joined.map_err(|err| IngestError::Invalid(format!("commit task failed: {err}")))?;
            self.in_flight.remove(&table);
            self.committed(&table, started, result).await?;
        }
    }

    /// Whether any commit is still running.
    fn committing(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Moves a table's cycle into a commit task; the table starts its next cycle.
    fn start_commit(&mut self, table: &str) {
        let state = self.tables.get_mut(table).expect("table state exists");
        let touched = state.touched();
        let job = CommitJob {
            catalog: self.catalog.clone(),
            table: table.to_string(),
            writer_id: self.options.writer_id.clone(),
            target_file_size: self.config.commit.target_file_size,
            snapshot_retention: self.config.commit.snapshot_retention,
            rows: std::mem::take(&mut state.rows),
            dead_letters: std::mem::take(&mut state.dead_letters),
            live_marks: self.watermarks.restricted_to(&touched),
            touched,
            reached: state.reached.clone(),
            expected: state.committed.clone(),
            dead_letter_committed: state.dead_letter_committed.clone(),
            newest_source_ts: state.cycle_newest_source_ts,
            base: state.table.clone(),
        };
        state.reset_cycle();
        self.in_flight.insert(table.to_string());
        let started = Instant::now();
        let name = table.to_string();
        self.commits
            .spawn(async move { (name, started, job.run().await) });
    }

    /// Applies a finished commit: the table's new positions, metrics and report; after a
    /// failure (or rows refused without their records) the table rewinds.
    async fn committed(
        &mut self,
        table: &str,
        started: Instant,
        result: Result<Committed, CommitFailed>,
    ) -> Result<(), IngestError> {
        let label = IngestMetrics::table(table);
        self.metrics
            .commit_duration
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        self.metrics
            .commits
            .get_or_create(&CommitLabel {
                table: table.to_string(),
                outcome: outcome.into(),
            })
            .inc();
        let done = match result {
            Ok(done) => done,
            Err(err) => {
                let entry = self
                    .report
                    .tables
                    .entry(format!("bronze.{table}"))
                    .or_default();
                entry.failed_commits += 1;
                if self.options.stop_when_caught_up {
                    return Err(err.job_error);
                }
                tracing::error!(%table, error = %err.job_error, "commit failed; rewinding the table's partitions and retrying next cycle");
                return self.rewind(table, &err.touched).await;
            }
        };
        let state = self.tables.get_mut(table).expect("table state exists");
        if let Some(dead_letter_committed) = done.dead_letter_committed {
            state.dead_letter_committed = dead_letter_committed;
        }
        self.report.dead_letters += done.dead_letter_kinds.len() as u64;
        for kind in done.dead_letter_kinds {
            self.metrics
                .dead_letters
                .get_or_create(&DeadLetterLabel {
                    table: table.to_string(),
                    kind,
                })
                .inc();
        }
        let Some(outcome) = done.outcome else {
            // Rows were refused whose records the cycle did not keep: read it again,
            // keeping every record.
            state.keep_records = true;
            self.rewound = true;
            return self.rewind(table, &done.touched).await;
        };
        state.committed = committed_offsets(&outcome.table);
        state.committed_marks = committed_watermarks(&outcome.table);
        state.column_types = column_types(outcome.table.metadata().current_schema());
        state.table = Some(outcome.table.clone());
        state.keep_records = false;
        let written = done.written;
        tracing::info!(table = %format!("bronze.{table}"), rows = written, snapshot_id = ?outcome.snapshot_id, "committed");
        self.metrics
            .records_written
            .get_or_create(&label)
            .inc_by(written);
        if let Some(snapshot_id) = outcome.snapshot_id {
            self.metrics
                .last_snapshot_id
                .get_or_create(&label)
                .set(snapshot_id);
        }
        if let Some(newest) = done.newest_source_ts {
            let gauge = self
                .metrics
                .newest_committed_source_ts
                .get_or_create(&label);
            gauge.set(gauge.get().max(newest as f64 / 1e6));
        }
        self.source.mirror_offsets(&state.committed);
        let entry = self
            .report
            .tables
            .entry(format!("bronze.{table}"))
            .or_default();
        entry.rows_written += written;
        entry.commits += 1;
        entry.last_snapshot_id = outcome.snapshot_id;
        Ok(())
    }

    /// After a failed commit: drop the table's uncommitted work and read it again from the
    /// positions bronze holds now (re-read, in case another process moved them). `also`:
    /// the partitions of the failed commit, which the running cycle may not touch yet.
    async fn rewind(&mut self, table: &str, also: &[TopicPartition]) -> Result<(), IngestError> {
        let state = self.tables.get_mut(table).expect("table state exists");
        let mut touched = state.touched();
        for partition in also {
            if !touched.contains(partition) {
                touched.push(partition.clone());
            }
        }
        state.reset_cycle();
        if let Ok(name) = TableName::new(Tier::Bronze, table)
            && let Ok(loaded) = self.catalog.load_table(&name).await
        {
            state.committed = committed_offsets(&loaded);
            state.committed_marks = committed_watermarks(&loaded);
            state.column_types = column_types(loaded.metadata().current_schema());
            state.table = Some(loaded);
        }
        let committed = state.committed.clone();
        let marks = state.committed_marks.clone();
        for (topic, partition) in touched {
            if !self.owns(&topic, partition) {
                continue;
            }
            self.reset_watermark(&topic, partition, &marks);
            let offset = committed.get(&topic, partition);
            self.source.rewind(&topic, partition, offset).await?;
            self.starts.insert((topic, partition), offset.unwrap_or(0));
        }
        Ok(())
    }
}

/// A table's finished cycle on its way to bronze, run by a commit task.
struct CommitJob {
    catalog: Catalog,
    table: String,
    writer_id: String,
    target_file_size: u64,
    snapshot_retention: Duration,
    rows: Vec<PendingRow>,
    dead_letters: Vec<DeadLetter>,
    touched: Vec<TopicPartition>,
    /// Next offsets the cycle read.
    reached: KafkaOffsets,
    /// Next offsets bronze held when the cycle was handed over.
    expected: KafkaOffsets,
    dead_letter_committed: KafkaOffsets,
    live_marks: Watermarks,
    newest_source_ts: Option<i64>,
    /// The table as the previous commit left it, if this process knows it.
    base: Option<Table>,
}

/// What a commit task did.
struct Committed {
    /// The bronze commit; `None` when rows were refused without their records and nothing
    /// was committed but the dead letters already known.
    outcome: Option<firn_catalog::CommitOutcome>,
    touched: Vec<TopicPartition>,
    written: u64,
    /// The dead-letter table's positions after its commit, when there was one.
    dead_letter_committed: Option<KafkaOffsets>,
    dead_letter_kinds: Vec<String>,
    newest_source_ts: Option<i64>,
}

/// A failed commit task, with the partitions to rewind.
struct CommitFailed {
    job_error: IngestError,
    touched: Vec<TopicPartition>,
}

impl CommitJob {
    async fn run(self) -> Result<Committed, CommitFailed> {
        let touched = self.touched.clone();
        self.commit()
            .await
            .map_err(|job_error| CommitFailed { job_error, touched })
    }

    /// Commits the cycle: its dead letters first, then its bronze rows and offsets.
    async fn commit(self) -> Result<Committed, IngestError> {
        let CommitJob {
            catalog,
            table,
            writer_id,
            target_file_size,
            snapshot_retention,
            rows: pending,
            mut dead_letters,
            touched,
            reached,
            expected,
            dead_letter_committed,
            live_marks,
            newest_source_ts,
            base,
        } = self;
        let name = TableName::new(Tier::Bronze, &table)?;
        let mut loaded = catalog.refresh_table(&name, base).await?;

        // Schema evolution first, so rejected rows join this cycle's dead letters.
        let rows: Vec<&BronzeRow> = pending.iter().map(|p| &p.row).collect();
        let (changes, mut rejected) =
            plan_schema_changes(loaded.metadata().current_schema(), &rows);
        if !changes.is_empty() {
            tracing::info!(table = %name, changes = changes.len(), "evolving schema");
            loaded = catalog
                .commit(
                    &name,
                    CommitRequest::new(Operation::EvolveSchema { changes })
                        .with_base(loaded.clone()),
                )
                .await?
                .table;
        }
        let arrow_schema = firn_catalog::writer::arrow_schema_for(&loaded)?;
        let (batch, late_rejects) = if rejected.is_empty() {
            build_batch(&arrow_schema, loaded.metadata().current_schema(), &rows)
        } else {
            let rejected_set: std::collections::HashSet<usize> =
                rejected.iter().map(|(i, _)| *i).collect();
            let kept_index: Vec<usize> = (0..rows.len())
                .filter(|i| !rejected_set.contains(i))
                .collect();
            let keep: Vec<&BronzeRow> = kept_index.iter().map(|i| rows[*i]).collect();
            let (batch, late) =
                build_batch(&arrow_schema, loaded.metadata().current_schema(), &keep);
            let late = late
                .into_iter()
                .map(|(i, reason)| (kept_index[i], reason))
                .collect();
            (batch, late)
        };
        drop(rows);
        rejected.extend(late_rejects);
        let reread = rejected
            .iter()
            .any(|(index, _)| pending[*index].record.is_none());
        if reread {
            // Refused rows need their raw record for the dead letter, and this cycle did
            // not keep it (the table changed since the rows were read): the caller reads
            // the cycle again, keeping every record, and commits it then.
            tracing::warn!(table = %name, refused = rejected.len(), "rows refused at commit without their records; reading the table's partitions again");
            return Ok(Committed {
                outcome: None,
                touched,
                written: 0,
                dead_letter_committed: None,
                dead_letter_kinds: Vec::new(),
                newest_source_ts,
            });
        }
        for (index, reason) in &rejected {
            let pending = &pending[*index];
            let record = pending.record.as_ref().expect("checked above");
            let already = dead_letter_committed
                .get(&pending.row.topic, pending.row.partition)
                .is_some_and(|next| pending.row.offset < next);
            if !already {
                dead_letters.push(DeadLetter {
                    tenant: Some(pending.row.tenant.clone()),
                    table: Some(table.clone()),
                    topic: pending.row.topic.clone(),
                    partition: pending.row.partition,
                    offset: pending.row.offset,
                    key: record.key.clone(),
                    value: record.value.clone(),
                    headers: headers_json(&record.headers),
                    kind: "incompatible_schema".into(),
                    message: reason.clone(),
                });
            }
        }
        // The batch holds the rows now.
        drop(pending);

        let mut new_dead_letter_positions = None;
        if !dead_letters.is_empty() {
            let committed = commit_dead_letters(
                &catalog,
                target_file_size,
                &writer_id,
                &dead_letters,
                &touched,
                &dead_letter_committed,
                &reached,
            )
            .await?;
            let dead_letter_table = TableName::new(Tier::Bronze, DEAD_LETTER_TABLE)?;
            let committed =
                expire_old_snapshots(&catalog, &dead_letter_table, committed, snapshot_retention)
                    .await;
            new_dead_letter_positions = Some(committed_offsets(&committed.table));
            tracing::warn!(table = %name, count = dead_letters.len(), "records dead-lettered");
        }

        let written = batch.num_rows() as u64;
        let mut files = Vec::new();
        if written > 0 {
            let mut sink = DataFileSink::new(&loaded, target_file_size).await?;
            sink.write(batch).await?;
            files = sink.finish().await?;
        }
        let validate_touched = touched.clone();
        let request = CommitRequest::new(Operation::Append { files })
            .with_base(loaded)
            .with_property(WRITER_ID, writer_id)
            .with_validator(move |current| {
                let now = committed_offsets(current);
                for (topic, partition) in &validate_touched {
                    if now.get(topic, *partition) != expected.get(topic, *partition) {
                        return Err(format!(
                            "{topic}/{partition} moved to {:?} while this writer resumed from {:?} \
                             (another process owns it now)",
                            now.get(topic, *partition),
                            expected.get(topic, *partition)
                        ));
                    }
                }
                Ok(())
            })
            .with_properties_from(move |current| {
                // Partitions other processes own keep the values they committed.
                let offsets = committed_offsets(current).merged_with(&reached);
                let marks = committed_watermarks(current).merged_with(&live_marks);
                Ok(HashMap::from([
                    (KAFKA_OFFSETS.to_string(), offsets.to_json()),
                    (SOURCE_WATERMARKS.to_string(), marks.to_json()),
                ]))
            });
        let outcome = catalog.commit(&name, request).await?;
        let outcome = expire_old_snapshots(&catalog, &name, outcome, snapshot_retention).await;
        Ok(Committed {
            outcome: Some(outcome),
            touched,
            written,
            dead_letter_committed: new_dead_letter_positions,
            dead_letter_kinds: dead_letters.into_iter().map(|l| l.kind).collect(),
            newest_source_ts,
        })
    }
}

/// The newest snapshots of `main` an expiry always keeps (besides tagged ones).
const RETAIN_LAST_SNAPSHOTS: usize = 10;

/// After a bronze commit: expires the snapshots older than `retention` once some are a
/// tenth of the retention past it, so a table committed every second expires in batches
/// rather than on every commit. Metadata only (the data files stay: bronze only appends).
/// Best effort: a failed expiry is logged and tried again after a later commit; the append
/// it follows stays committed either way.
async fn expire_old_snapshots(
    catalog: &Catalog,
    name: &TableName,
    mut appended: firn_catalog::CommitOutcome,
    retention: Duration,
) -> firn_catalog::CommitOutcome {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff = chrono::Utc::now()
        .timestamp_millis()
        .saturating_sub(retention_ms);
    let due = !firn_catalog::commit::expirable_snapshots(
        &appended.table,
        cutoff.saturating_sub(retention_ms / 10),
        RETAIN_LAST_SNAPSHOTS,
    )
    .is_empty();
    if !due {
        return appended;
    }
    let request = CommitRequest::new(Operation::ExpireSnapshots {
        older_than_ms: cutoff,
        retain_last: RETAIN_LAST_SNAPSHOTS,
    })
    .with_base(appended.table.clone());
    match catalog.commit(name, request).await {
        Ok(expired) => {
            tracing::info!(table = %name, snapshots = expired.table.metadata().snapshots().count(), "expired old snapshots");
            appended.table = expired.table;
        }
        Err(err) => {
            tracing::warn!(table = %name, error = %err, "expiring old snapshots failed; trying again after a later commit");
        }
    }
    appended
}

/// Appends dead letters with the positions they cover (the table's positions after the
/// commit are in the returned table).
async fn commit_dead_letters(
    catalog: &Catalog,
    target_file_size: u64,
    writer_id: &str,
    letters: &[DeadLetter],
    touched: &[TopicPartition],
    known: &KafkaOffsets,
    reached: &KafkaOffsets,
) -> Result<firn_catalog::CommitOutcome, IngestError> {
    let name = TableName::new(Tier::Bronze, DEAD_LETTER_TABLE)?;
    let table = catalog.load_table(&name).await?;
    let batch = dead_letter_batch(&firn_catalog::writer::arrow_schema_for(&table)?, letters);
    let mut sink = DataFileSink::new(&table, target_file_size).await?;
    sink.write(batch).await?;
    let files = sink.finish().await?;
    let expected = known.clone();
    let touched = touched.to_vec();
    let reached = reached.clone();
    let request = CommitRequest::new(Operation::Append { files })
        .with_property(WRITER_ID, writer_id.to_string())
        .with_validator(move |current| {
            let now = committed_offsets(current);
            for (topic, partition) in &touched {
                // Ahead of what this process knew: another process dead-lettered this range.
                if now.get(topic, *partition).unwrap_or(0)
                    > expected.get(topic, *partition).unwrap_or(0)
                {
                    return Err(format!(
                        "dead letters of {topic}/{partition} were committed by another process"
                    ));
                }
            }
            Ok(())
        })
        .with_properties_from(move |current| {
            let offsets = committed_offsets(current).merged_with(&reached);
            Ok(HashMap::from([(
                KAFKA_OFFSETS.to_string(),
                offsets.to_json(),
            )]))
        });
    Ok(catalog.commit(&name, request).await?)
}

/// The next offsets a table's latest snapshot records (empty before the first commit).
fn committed_offsets(table: &Table) -> KafkaOffsets {
    history::latest_kafka_offsets(&table.metadata_ref())
        .map(|(_, offsets)| offsets)
        .unwrap_or_default()
}

/// The dedup watermarks a bronze table's latest snapshot records.
fn committed_watermarks(table: &Table) -> Watermarks {
    history::latest_summary_value(&table.metadata_ref(), SOURCE_WATERMARKS)
        .and_then(|(_, text)| Watermarks::from_json(&text))
        .unwrap_or_default()
}

/// Kafka headers as a JSON object: UTF-8 values as strings, others as `{"base64": ...}`.
fn headers_json(headers: &[(String, Option<Vec<u8>>)]) -> Option<String> {
    if headers.is_empty() {
        return None;
    }
    let object: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(name, value)| {
            let value = match value {
                None => serde_json::Value::Null,
                Some(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) => serde_json::Value::String(text.to_string()),
                    Err(_) => serde_json::json!({
                        "base64": base64::engine::general_purpose::STANDARD.encode(bytes)
                    }),
                },
            };
            (name.clone(), value)
        })
        .collect();
    Some(serde_json::Value::Object(object).to_string())
}

fn resolve_tenant(
    source: &SourceConfig,
    template: &TopicTemplate,
    topic: &str,
) -> Result<String, String> {
    let tenant = match &source.tenant {
        TenantRule::Static { tenant } => tenant.clone(),
        TenantRule::Field { .. } => return Ok(String::new()),
        TenantRule::Topic => template.matches(topic).unwrap_or_default().to_string(),
    };
    firn_catalog::names::validate_tenant(&tenant).map_err(|err| err.to_string())?;
    Ok(tenant)
}

fn field_tenant(row: &[crate::debezium::Cell], field: &str) -> Result<String, String> {
    let value = row.iter().find(|c| &*c.name == field).map(|c| &c.value);
    let tenant = match value {
        Some(CellValue::String(text)) => text.clone(),
        Some(CellValue::Long(v)) => v.to_string(),
        Some(CellValue::Int(v)) => v.to_string(),
        _ => return Err(format!("tenant field `{field}` is missing or not a string")),
    };
    firn_catalog::names::validate_tenant(&tenant).map_err(|err| err.to_string())?;
    Ok(tenant)
}

fn dead_letter_batch(schema: &arrow_schema::SchemaRef, letters: &[DeadLetter]) -> RecordBatch {
    let now = chrono::Utc::now().timestamp_micros();
    let strings = |f: &dyn Fn(&DeadLetter) -> Option<String>| {
        let mut b = StringBuilder::new();
        for letter in letters {
            b.append_option(f(letter));
        }
        Arc::new(b.finish()) as ArrayRef
    };
    let bytes = |f: &dyn Fn(&DeadLetter) -> Option<Vec<u8>>| {
        let mut b = LargeBinaryBuilder::new();
        for letter in letters {
            b.append_option(f(letter));
        }
        Arc::new(b.finish()) as ArrayRef
    };
    let mut partitions = Int32Builder::new();
    let mut offsets = Int64Builder::new();
    let mut times = TimestampMicrosecondBuilder::new().with_timezone("+00:00");
    for letter in letters {
        partitions.append_value(letter.partition);
        offsets.append_value(letter.offset);
        times.append_value(now);
    }
    let columns: Vec<ArrayRef> = vec![
        strings(&|l| l.tenant.clone()),
        strings(&|l| l.table.clone()),
        strings(&|l| Some(l.topic.clone())),
        Arc::new(partitions.finish()),
        Arc::new(offsets.finish()),
        bytes(&|l| l.key.clone()),
        bytes(&|l| l.value.clone()),
        strings(&|l| l.headers.clone()),
        strings(&|l| Some(l.kind.clone())),
        strings(&|l| Some(l.message.clone())),
        Arc::new(times.finish()),
    ];
    RecordBatch::try_new(schema.clone(), columns)
        .expect("dead-letter columns follow the table schema")
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn timed_out() -> IngestError {
        IngestError::Io {
            path: "catalog".into(),
            source: std::io::Error::from(std::io::ErrorKind::TimedOut),
        }
    }

    #[tokio::test]
    async fn a_retryable_failure_is_tried_again_until_it_succeeds() {
        let attempts = Cell::new(0);
        let outcome = retrying(Duration::from_secs(10), || {
            attempts.set(attempts.get() + 1);
            let n = attempts.get();
            async move { if n < 3 { Err(timed_out()) } else { Ok(n) } }
        })
        .await;
        assert_eq!(outcome.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_failure_that_is_not_retryable_ends_at_once() {
        let attempts = Cell::new(0);
        let outcome: Result<(), _> = retrying(Duration::from_secs(10), || {
            attempts.set(attempts.get() + 1);
            async { Err(IngestError::Invalid("topic t matches no source".into())) }
        })
        .await;
        assert!(matches!(outcome, Err(IngestError::Invalid(_))));
        assert_eq!(attempts.get(), 1);
    }

    #[tokio::test]
    async fn retries_stop_after_their_time() {
        let attempts = Cell::new(0);
        let started = Instant::now();
        let outcome: Result<(), _> = retrying(Duration::from_millis(600), || {
            attempts.set(attempts.get() + 1);
            async { Err(timed_out()) }
        })
        .await;
        assert!(outcome.unwrap_err().is_retryable());
        // 250 ms, then 500 ms: the third attempt starts after the 600 ms and is the last.
        assert_eq!(attempts.get(), 3);
        assert!(started.elapsed() >= Duration::from_millis(750));
    }
}
