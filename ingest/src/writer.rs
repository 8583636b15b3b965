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
use serde::Serialize;

use crate::admin::Health;
use crate::bronze::{BronzeRow, build_batch, plan_schema_changes};
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

/// A row waiting for its table's next commit, with the raw record for dead-lettering.
struct PendingRow {
    row: BronzeRow,
    record: SourceRecord,
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
        owned: BTreeSet::new(),
        starts: HashMap::new(),
        watermarks: Watermarks::default(),
        report: IngestReport::default(),
        decoder: RecordDecoder::new(config)?,
    };
    loop {
        let events = source.poll(5_000, Duration::from_millis(200)).await?;
        // Avro schemas are fetched before decoding; a registry outage waits here.
        ingest.decoder.prepare(&events, stop).await?;
        let polled_nothing = events.is_empty();
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
        let idle = ingest.tables.values().all(|table| !table.has_work());
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
/// table), on the consumer's poll thread.
fn resume_from_bronze(catalog: Catalog, config: PipelineConfig) -> ResumeFn<Vec<TableResume>> {
    let runtime = tokio::runtime::Handle::current();
    Arc::new(move |partitions: &[TopicPartition]| {
        runtime.block_on(async {
            let dead_letter_name =
                TableName::new(Tier::Bronze, DEAD_LETTER_TABLE).map_err(|err| err.to_string())?;
            let dead_letter_table = catalog
                .load_table(&dead_letter_name)
                .await
                .map_err(|err| err.to_string())?;
            let dead_letter_offsets = committed_offsets(&dead_letter_table);
            let mut loaded: BTreeMap<String, TableResume> = BTreeMap::new();
            let mut offsets = Vec::with_capacity(partitions.len());
            for (topic, partition) in partitions {
                let Some(source) = config.source_for_topic(topic) else {
                    return Err(format!("topic {topic} matches no source"));
                };
                if !loaded.contains_key(&source.table) {
                    let name = TableName::new(Tier::Bronze, &source.table)
                        .map_err(|err| err.to_string())?;
                    let table = catalog
                        .load_table(&name)
                        .await
                        .map_err(|err| err.to_string())?;
                    loaded.insert(
                        source.table.clone(),
                        TableResume {
                            table: source.table.clone(),
                            offsets: committed_offsets(&table),
                            marks: committed_watermarks(&table),
                            dead_letter_offsets: dead_letter_offsets.clone(),
                        },
                    );
                }
                offsets.push(loaded[&source.table].offsets.get(topic, *partition));
            }
            Ok((offsets, loaded.into_values().collect()))
        })
    })
}

/// The ingest loop's state.
struct Ingest<'a> {
    catalog: &'a Catalog,
    config: &'a PipelineConfig,
    options: &'a IngestOptions,
    metrics: &'a IngestMetrics,
    source: &'a KafkaSource<Vec<TableResume>>,
    /// Topic → its source and topic template.
    routes: HashMap<String, (SourceConfig, TopicTemplate)>,
    tables: BTreeMap<String, TableState>,
    owned: BTreeSet<TopicPartition>,
    /// Offset each owned partition was positioned at.
    starts: HashMap<TopicPartition, i64>,
    /// Live dedup watermarks of the owned partitions (including uncommitted events).
    watermarks: Watermarks,
    report: IngestReport,
    /// JSON and Confluent Avro decoding, with the Schema Registry's schemas.
    decoder: RecordDecoder,
}

impl Ingest<'_> {
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
        }
        for ((topic, partition), offset) in partitions.into_iter().zip(offsets) {
            if let Some(source) = self.config.source_for_topic(&topic)
                && let Some(table) = self.tables.get(&source.table)
            {
                self.reset_watermark(&topic, partition, &table.committed_marks.clone());
            }
            self.starts
                .insert((topic.clone(), partition), offset.unwrap_or(0));
            self.owned.insert((topic, partition));
        }
        self.metrics
            .assigned_partitions
            .set(self.owned.len() as i64);
    }

    fn revoked(&mut self, partitions: &[TopicPartition]) {
        for table in self.tables.values_mut() {
            table.drop_partitions(partitions);
        }
        for (topic, partition) in partitions {
            self.owned.remove(&(topic.clone(), *partition));
            self.starts.remove(&(topic.clone(), *partition));
            if let Some(parts) = self.watermarks.0.get_mut(topic) {
                parts.remove(partition);
            }
        }
        self.metrics
            .assigned_partitions
            .set(self.owned.len() as i64);
    }

    /// Sets a partition's live watermark back to what bronze holds.
    fn reset_watermark(&mut self, topic: &str, partition: i32, committed: &Watermarks) {
        if let Some(parts) = self.watermarks.0.get_mut(topic) {
            parts.remove(&partition);
        }
        let key = [(topic.to_string(), partition)];
        self.watermarks = self.watermarks.merged_with(&committed.restricted_to(&key));
    }

    fn route(&mut self, topic: &str) -> Option<(SourceConfig, TopicTemplate)> {
        if !self.routes.contains_key(topic) {
            let source = self.config.source_for_topic(topic)?.clone();
            let template = TopicTemplate::parse(&source.topic).ok()?;
            self.routes.insert(topic.to_string(), (source, template));
        }
        self.routes.get(topic).cloned()
    }

    fn record(&mut self, record: SourceRecord) {
        let (topic, partition, offset) = (record.topic.clone(), record.partition, record.offset);
        if !self.owned.contains(&(topic.clone(), partition)) {
            return; // Fetched before a revocation; the new owner reads it.
        }
        let Some((source, template)) = self.route(&topic) else {
            return;
        };
        self.report.records_consumed += 1;
        let label = IngestMetrics::table(&source.table);
        self.metrics.records_consumed.get_or_create(&label).inc();
        let max_message_bytes = self.config.kafka.max_message_bytes as usize;
        let table = self.tables.entry(source.table.clone()).or_default();
        if offset < table.committed.get(&topic, partition).unwrap_or(0) {
            return; // Already in bronze (replay after a crash between commits).
        }
        table.reached.set(&topic, partition, offset + 1);
        table.cycle_records += 1;
        table.cycle_bytes += record.size() as u64;
        table.cycle_started.get_or_insert_with(Instant::now);

        let failure = if record.size() > max_message_bytes {
            Some((
                "oversized".to_string(),
                format!(
                    "message is {} bytes (key + value), above kafka.max-message-bytes = {}; the \
                     dead letter keeps the first {} bytes of the value",
                    record.size(),
                    max_message_bytes,
                    max_message_bytes
                ),
                resolve_tenant(&source, &template, &topic).ok(),
            ))
        } else {
            self.decode_into(&source, &template, &record)
        };
        if let Some((kind, message, tenant)) = failure {
            let table = self
                .tables
                .get_mut(&source.table)
                .expect("table state exists");
            let already = table
                .dead_letter_committed
                .get(&topic, partition)
                .is_some_and(|next| offset < next);
            if !already {
                let mut value = record.value.clone();
                if kind == "oversized"
                    && let Some(bytes) = value.as_mut()
                {
                    bytes.truncate(max_message_bytes);
                }
                table.dead_letters.push(DeadLetter {
                    tenant,
                    table: Some(source.table.clone()),
                    topic,
                    partition,
                    offset,
                    key: record.key.clone(),
                    value,
                    headers: headers_json(&record.headers),
                    kind,
                    message,
                });
            }
        }
    }

    /// Decodes a record into its table's pending rows; returns the dead-letter reason
    /// (kind, message, tenant) when it cannot be ingested.
    fn decode_into(
        &mut self,
        source: &SourceConfig,
        template: &TopicTemplate,
        record: &SourceRecord,
    ) -> Option<(String, String, Option<String>)> {
        let label = IngestMetrics::table(&source.table);
        let tenant = resolve_tenant(source, template, &record.topic);
        let decoded = self
            .decoder
            .decode(record.key.as_deref(), record.value.as_deref());
        match (tenant, decoded) {
            (_, Ok(Decoded::Tombstone)) => {
                self.report.tombstones += 1;
                self.metrics.tombstones.get_or_create(&label).inc();
                None
            }
            (Ok(tenant), Ok(Decoded::Change(event))) => {
                let tenant = match &source.tenant {
                    TenantRule::Field { field } => match field_tenant(&event.row, field) {
                        Ok(tenant) => tenant,
                        Err(message) => return Some(("unknown_tenant".into(), message, None)),
                    },
                    _ => tenant,
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
                    self.metrics.duplicates_dropped.get_or_create(&label).inc();
                    return None;
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
                table.rows.push(PendingRow {
                    row: BronzeRow {
                        tenant,
                        op: event.op,
                        source_ts_micros: event.source_ts_micros,
                        source_pos: event.source_pos,
                        topic: record.topic.clone(),
                        partition: record.partition,
                        offset: record.offset,
                        ingested_at_micros: chrono::Utc::now().timestamp_micros(),
                        cells: event.row,
                    },
                    record: record.clone(),
                });
                None
            }
            (Err(message), _) => Some(("unknown_tenant".into(), message, None)),
            (Ok(tenant), Err(err)) => {
                Some((err.kind.as_str().to_string(), err.message, Some(tenant)))
            }
        }
    }

    /// Commits every table whose cycle is due (all with work when `flush`).
    async fn commit_due(&mut self, flush: bool) -> Result<(), IngestError> {
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
            let started = Instant::now();
            let label = IngestMetrics::table(&table);
            let result = self.commit_table(&table).await;
            self.metrics
                .commit_duration
                .get_or_create(&label)
                .observe(started.elapsed().as_secs_f64());
            let outcome = if result.is_ok() { "ok" } else { "failed" };
            self.metrics
                .commits
                .get_or_create(&CommitLabel {
                    table: table.clone(),
                    outcome: outcome.into(),
                })
                .inc();
            if let Err(err) = result {
                let entry = self
                    .report
                    .tables
                    .entry(format!("bronze.{table}"))
                    .or_default();
                entry.failed_commits += 1;
                if self.options.stop_when_caught_up {
                    return Err(err);
                }
                tracing::error!(%table, error = %err, "commit failed; rewinding the table's partitions and retrying next cycle");
                self.rewind(&table).await?;
            }
        }
        Ok(())
    }

    /// After a failed commit: drop the table's uncommitted work and read it again from the
    /// positions bronze holds now (re-read, in case another process moved them).
    async fn rewind(&mut self, table: &str) -> Result<(), IngestError> {
        let state = self.tables.get_mut(table).expect("table state exists");
        let touched = state.touched();
        state.reset_cycle();
        if let Ok(name) = TableName::new(Tier::Bronze, table)
            && let Ok(loaded) = self.catalog.load_table(&name).await
        {
            state.committed = committed_offsets(&loaded);
            state.committed_marks = committed_watermarks(&loaded);
        }
        let committed = state.committed.clone();
        let marks = state.committed_marks.clone();
        for (topic, partition) in touched {
            if !self.owned.contains(&(topic.clone(), partition)) {
                continue;
            }
            self.reset_watermark(&topic, partition, &marks);
            let offset = committed.get(&topic, partition);
            self.source.rewind(&topic, partition, offset).await?;
            self.starts.insert((topic, partition), offset.unwrap_or(0));
        }
        Ok(())
    }

    /// Commits one table's cycle: its dead letters first, then its bronze rows and offsets.
    async fn commit_table(&mut self, table: &str) -> Result<(), IngestError> {
        let name = TableName::new(Tier::Bronze, table)?;
        let state = self.tables.get_mut(table).expect("table state exists");
        let mut loaded = self.catalog.load_table(&name).await?;

        // Schema evolution first, so rejected rows join this cycle's dead letters.
        let rows: Vec<BronzeRow> = state.rows.iter().map(|p| p.row.clone()).collect();
        let (changes, mut rejected) =
            plan_schema_changes(loaded.metadata().current_schema(), &rows);
        if !changes.is_empty() {
            tracing::info!(table = %name, changes = changes.len(), "evolving schema");
            loaded = self
                .catalog
                .commit(
                    &name,
                    CommitRequest::new(Operation::EvolveSchema { changes }),
                )
                .await?
                .table;
        }
        let arrow_schema = firn_catalog::writer::arrow_schema_for(&loaded)?;
        let rejected_set: std::collections::HashSet<usize> =
            rejected.iter().map(|(i, _)| *i).collect();
        let kept_index: Vec<usize> = (0..rows.len())
            .filter(|i| !rejected_set.contains(i))
            .collect();
        let keep: Vec<BronzeRow> = kept_index.iter().map(|i| rows[*i].clone()).collect();
        let (batch, late_rejects) =
            build_batch(&arrow_schema, loaded.metadata().current_schema(), &keep);
        rejected.extend(
            late_rejects
                .into_iter()
                .map(|(i, reason)| (kept_index[i], reason)),
        );
        let mut dead_letters = state.dead_letters.clone();
        for (index, reason) in &rejected {
            let pending = &state.rows[*index];
            let already = state
                .dead_letter_committed
                .get(&pending.row.topic, pending.row.partition)
                .is_some_and(|next| pending.row.offset < next);
            if !already {
                dead_letters.push(DeadLetter {
                    tenant: Some(pending.row.tenant.clone()),
                    table: Some(table.to_string()),
                    topic: pending.row.topic.clone(),
                    partition: pending.row.partition,
                    offset: pending.row.offset,
                    key: pending.record.key.clone(),
                    value: pending.record.value.clone(),
                    headers: headers_json(&pending.record.headers),
                    kind: "incompatible_schema".into(),
                    message: reason.clone(),
                });
            }
        }
        let touched = state.touched();
        let reached = state.reached.clone();

        if !dead_letters.is_empty() {
            let dead_letter_committed = commit_dead_letters(
                self.catalog,
                self.config,
                self.options,
                &dead_letters,
                &touched,
                &state.dead_letter_committed,
                &reached,
            )
            .await?;
            state.dead_letter_committed = dead_letter_committed;
            self.report.dead_letters += dead_letters.len() as u64;
            for letter in &dead_letters {
                self.metrics
                    .dead_letters
                    .get_or_create(&DeadLetterLabel {
                        table: table.to_string(),
                        kind: letter.kind.clone(),
                    })
                    .inc();
            }
            tracing::warn!(table = %name, count = dead_letters.len(), "records dead-lettered");
        }

        let written = batch.num_rows() as u64;
        let mut files = Vec::new();
        if written > 0 {
            let mut sink = DataFileSink::new(&loaded, self.config.commit.target_file_size).await?;
            sink.write(batch).await?;
            files = sink.finish().await?;
        }
        let expected = state.committed.clone();
        let live_marks = self.watermarks.restricted_to(&touched);
        let validate_touched = touched.clone();
        let request = CommitRequest::new(Operation::Append { files })
            .with_property(WRITER_ID, self.options.writer_id.clone())
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
        let outcome = self.catalog.commit(&name, request).await?;
        state.committed = committed_offsets(&outcome.table);
        state.committed_marks = committed_watermarks(&outcome.table);
        tracing::info!(table = %name, rows = written, snapshot_id = ?outcome.snapshot_id, "committed");
        let label = IngestMetrics::table(table);
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
        if let Some(newest) = state.cycle_newest_source_ts {
            let gauge = self
                .metrics
                .newest_committed_source_ts
                .get_or_create(&label);
            gauge.set(gauge.get().max(newest as f64 / 1e6));
        }
        let committed_positions = state.committed.clone();
        state.reset_cycle();
        self.source.mirror_offsets(&committed_positions);
        let entry = self.report.tables.entry(name.to_string()).or_default();
        entry.rows_written += written;
        entry.commits += 1;
        entry.last_snapshot_id = outcome.snapshot_id;
        Ok(())
    }
}

/// Appends dead letters with the positions they cover; returns the dead-letter table's
/// positions after the commit.
async fn commit_dead_letters(
    catalog: &Catalog,
    config: &PipelineConfig,
    options: &IngestOptions,
    letters: &[DeadLetter],
    touched: &[TopicPartition],
    known: &KafkaOffsets,
    reached: &KafkaOffsets,
) -> Result<KafkaOffsets, IngestError> {
    let name = TableName::new(Tier::Bronze, DEAD_LETTER_TABLE)?;
    let table = catalog.load_table(&name).await?;
    let batch = dead_letter_batch(&firn_catalog::writer::arrow_schema_for(&table)?, letters);
    let mut sink = DataFileSink::new(&table, config.commit.target_file_size).await?;
    sink.write(batch).await?;
    let files = sink.finish().await?;
    let expected = known.clone();
    let touched = touched.to_vec();
    let reached = reached.clone();
    let request = CommitRequest::new(Operation::Append { files })
        .with_property(WRITER_ID, options.writer_id.clone())
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
    let outcome = catalog.commit(&name, request).await?;
    Ok(committed_offsets(&outcome.table))
}

/// The next offsets a table's latest snapshot records (empty before the first commit).
fn committed_offsets(table: &iceberg::table::Table) -> KafkaOffsets {
    history::latest_kafka_offsets(&table.metadata_ref())
        .map(|(_, offsets)| offsets)
        .unwrap_or_default()
}

/// The dedup watermarks a bronze table's latest snapshot records.
fn committed_watermarks(table: &iceberg::table::Table) -> Watermarks {
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
    let value = row.iter().find(|c| c.name == field).map(|c| &c.value);
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
