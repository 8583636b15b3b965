//! The bronze ingest loop: reads the CDC topics from Kafka, decodes Debezium events,
//! and commits them to `bronze.<table>` with the Kafka positions in the same snapshot.
//! Does I/O (Kafka, catalog, storage).
//!
//! Exactly once: each bronze snapshot's summary holds the next offset of every
//! topic-partition the table consumes; on start the consumer seeks there, and a commit is
//! re-validated against those positions so a stale writer can never move them. Records
//! that cannot be ingested go to `bronze.firn_dead_letters`, which is committed *before*
//! the bronze tables of the same cycle with the cycle's positions: after a crash between
//! the two, replay starts at the bronze positions and skips dead letters the dead-letter
//! table already holds.
//!
//! This version assigns every partition of every matching topic to one process and runs
//! commit cycles by time and size until stopped or caught up; consumer groups, metrics and
//! dedup of connector re-emission come with the full ingest service.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{
    Int32Builder, Int64Builder, LargeBinaryBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use firn_catalog::config::{PipelineConfig, SourceConfig, TenantRule, TopicTemplate};
use firn_catalog::history::{self, KAFKA_OFFSETS, KafkaOffsets, WRITER_ID};
use firn_catalog::tables::{DEAD_LETTER_TABLE, TableName, Tier};
use firn_catalog::{Catalog, CommitRequest, DataFileSink, Operation};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

use crate::bronze::{BronzeRow, build_batch, plan_schema_changes};
use crate::debezium::{CellValue, Decoded, decode};
use crate::dedup::{SOURCE_WATERMARKS, Watermarks, key_op_hash};
use crate::error::IngestError;

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
    kind: String,
    message: String,
}

/// Key and value bytes of a Kafka message, kept so a rejected row can be dead-lettered.
type RawMessage = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Rows waiting for the next commit of one table, with their raw bytes for dead-lettering.
#[derive(Default)]
struct Pending {
    rows: Vec<BronzeRow>,
    raw: Vec<RawMessage>,
    /// Next offsets reached for this table's partitions in this cycle.
    reached: KafkaOffsets,
}

/// What one table got in a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableReport {
    pub rows_written: u64,
    pub commits: u64,
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
    /// Stop once every assigned partition has been read to its end.
    pub stop_when_caught_up: bool,
}

/// Ingests until caught up (or forever), committing by the configured policy.
pub async fn run(
    catalog: &Catalog,
    config: &PipelineConfig,
    options: &IngestOptions,
) -> Result<IngestReport, IngestError> {
    run_until(
        catalog,
        config,
        options,
        &std::sync::atomic::AtomicBool::new(false),
    )
    .await
}

/// Like [`run`], and when `stop` is set (e.g. on SIGTERM) it commits what has been read
/// and returns. A kill without warning is safe too: uncommitted records are read again.
pub async fn run_until(
    catalog: &Catalog,
    config: &PipelineConfig,
    options: &IngestOptions,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<IngestReport, IngestError> {
    catalog.init(config).await?;
    let consumer = consumer(config, &options.brokers)?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(IngestError::kafka("fetch metadata"))?;

    // Topic → source, and the resume positions of each bronze table.
    let mut routes: HashMap<String, (SourceConfig, TopicTemplate)> = HashMap::new();
    let mut positions: HashMap<String, KafkaOffsets> = HashMap::new();
    // Committed dedup watermarks per bronze table, and the live ones of every partition.
    let mut table_watermarks: HashMap<String, Watermarks> = HashMap::new();
    let mut watermarks = Watermarks::default();
    let mut assignment = TopicPartitionList::new();
    let mut starts: HashMap<(String, i32), Option<i64>> = HashMap::new();
    for topic in metadata.topics() {
        let Some(source) = config.source_for_topic(topic.name()) else {
            continue;
        };
        let template = TopicTemplate::parse(&source.topic).map_err(IngestError::Invalid)?;
        let table = TableName::new(Tier::Bronze, &source.table)?;
        if !positions.contains_key(&source.table) {
            let loaded = catalog.load_table(&table).await?;
            let offsets = history::latest_kafka_offsets(&loaded.metadata_ref())
                .map(|(_, o)| o)
                .unwrap_or_default();
            positions.insert(source.table.clone(), offsets);
            let saved = history::latest_summary_value(&loaded.metadata_ref(), SOURCE_WATERMARKS)
                .and_then(|(_, text)| Watermarks::from_json(&text))
                .unwrap_or_default();
            watermarks = watermarks.merged_with(&saved);
            table_watermarks.insert(source.table.clone(), saved);
        }
        let resume = &positions[&source.table];
        for partition in topic.partitions() {
            starts.insert(
                (topic.name().to_string(), partition.id()),
                resume.get(topic.name(), partition.id()),
            );
            let offset = match resume.get(topic.name(), partition.id()) {
                Some(next) => Offset::Offset(next),
                None => Offset::Beginning,
            };
            assignment
                .add_partition_offset(topic.name(), partition.id(), offset)
                .map_err(IngestError::kafka("assign partitions"))?;
        }
        routes.insert(topic.name().to_string(), (source.clone(), template));
    }
    let dead_letter_name = TableName::new(Tier::Bronze, DEAD_LETTER_TABLE)?;
    let dead_letter_table = catalog.load_table(&dead_letter_name).await?;
    let mut dead_letter_positions =
        history::latest_kafka_offsets(&dead_letter_table.metadata_ref())
            .map(|(_, o)| o)
            .unwrap_or_default();
    let partition_count = assignment.count();
    consumer
        .assign(&assignment)
        .map_err(IngestError::kafka("assign partitions"))?;
    tracing::info!(
        partitions = partition_count,
        topics = routes.len(),
        "assigned"
    );

    let consumer = Arc::new(consumer);
    let starts = Arc::new(starts);
    let mut report = IngestReport::default();
    let mut pending: BTreeMap<String, Pending> = BTreeMap::new();
    let mut dead_letters: Vec<DeadLetter> = Vec::new();
    let mut cycle_reached = KafkaOffsets::default();
    let mut cycle_started = Instant::now();
    let mut cycle_records = 0u64;
    loop {
        let (polled, caught_up) = {
            let consumer = consumer.clone();
            let starts = starts.clone();
            // librdkafka's poll blocks; keep it off the async worker threads.
            tokio::task::spawn_blocking(move || {
                let polled = poll_batch(&consumer, 5_000, Duration::from_millis(200))?;
                let caught_up = polled.is_empty() && caught_up(&consumer, &starts)?;
                Ok::<_, IngestError>((polled, caught_up))
            })
            .await
            .map_err(|err| IngestError::Invalid(format!("poll task failed: {err}")))??
        };
        for Polled {
            topic,
            partition,
            offset,
            key,
            value,
        } in polled
        {
            {
                {
                    report.records_consumed += 1;
                    cycle_records += 1;
                    cycle_reached.set(&topic, partition, offset + 1);
                    let Some((source, template)) = routes.get(&topic) else {
                        continue;
                    };
                    let table_pending = pending.entry(source.table.clone()).or_default();
                    table_pending.reached.set(&topic, partition, offset + 1);
                    let resume = positions
                        .get(&source.table)
                        .and_then(|p| p.get(&topic, partition))
                        .unwrap_or(0);
                    if offset < resume {
                        continue; // Already in bronze (replay after a crash between commits).
                    }
                    let tenant = resolve_tenant(source, template, &topic);
                    let decoded = decode(key.as_deref(), value.as_deref());
                    let failure = match (&tenant, decoded) {
                        (_, Ok(Decoded::Tombstone)) => {
                            report.tombstones += 1;
                            None
                        }
                        (Ok(tenant), Ok(Decoded::Change(event))) => {
                            let tenant = match (&source.tenant, tenant) {
                                (TenantRule::Field { field }, _) => field_tenant(&event.row, field),
                                (_, tenant) => Ok(tenant.clone()),
                            };
                            let key_op = key_op_hash(&event.key, event.op.code());
                            let fresh = watermarks.admit(
                                &topic,
                                partition,
                                event.source_pos.as_deref(),
                                &key_op,
                            );
                            match tenant {
                                Ok(_) if !fresh => {
                                    report.duplicates_dropped += 1;
                                    None
                                }
                                Ok(tenant) => {
                                    table_pending.rows.push(BronzeRow {
                                        tenant,
                                        op: event.op,
                                        source_ts_micros: event.source_ts_micros,
                                        source_pos: event.source_pos,
                                        topic: topic.clone(),
                                        partition,
                                        offset,
                                        ingested_at_micros: chrono::Utc::now().timestamp_micros(),
                                        cells: event.row,
                                    });
                                    table_pending.raw.push((key.clone(), value.clone()));
                                    None
                                }
                                Err(message) => Some(("unknown_tenant".to_string(), message, None)),
                            }
                        }
                        (Err(message), _) => {
                            Some(("unknown_tenant".to_string(), message.clone(), None))
                        }
                        (Ok(tenant), Err(err)) => Some((
                            err.kind.as_str().to_string(),
                            err.message,
                            Some(tenant.clone()),
                        )),
                    };
                    if let Some((kind, message, tenant)) = failure {
                        let skip = dead_letter_positions
                            .get(&topic, partition)
                            .is_some_and(|next| offset < next);
                        if !skip {
                            dead_letters.push(DeadLetter {
                                tenant,
                                table: Some(source.table.clone()),
                                topic: topic.clone(),
                                partition,
                                offset,
                                key,
                                value,
                                kind,
                                message,
                            });
                        }
                    }
                }
            }
        }
        let due = cycle_started.elapsed() >= config.commit.interval
            || cycle_records >= config.commit.max_records
            || caught_up;
        let stopping = stop.load(std::sync::atomic::Ordering::SeqCst);
        if (due || stopping) && cycle_records > 0 {
            commit_cycle(
                catalog,
                config,
                options,
                &mut pending,
                &mut dead_letters,
                &cycle_reached,
                CycleState {
                    positions: &mut positions,
                    dead_letter_positions: &mut dead_letter_positions,
                    table_watermarks: &mut table_watermarks,
                    watermarks: &watermarks,
                },
                &mut report,
            )
            .await?;
            mirror_offsets_to_group(&consumer, &cycle_reached);
            cycle_reached = KafkaOffsets::default();
            cycle_records = 0;
            cycle_started = Instant::now();
        }
        if stopping {
            tracing::info!("stop requested: committed what was read");
            return Ok(report);
        }
        if caught_up && options.stop_when_caught_up && cycle_records == 0 {
            return Ok(report);
        }
    }
}

/// Where the ingest loop stands, handed to a commit cycle.
struct CycleState<'a> {
    /// Committed next offsets per bronze table.
    positions: &'a mut HashMap<String, KafkaOffsets>,
    dead_letter_positions: &'a mut KafkaOffsets,
    /// Committed dedup watermarks per bronze table.
    table_watermarks: &'a mut HashMap<String, Watermarks>,
    /// Live dedup watermarks of every partition.
    watermarks: &'a Watermarks,
}

/// Commits the dead letters first, then every bronze table that moved.
#[allow(clippy::too_many_arguments)]
async fn commit_cycle(
    catalog: &Catalog,
    config: &PipelineConfig,
    options: &IngestOptions,
    pending: &mut BTreeMap<String, Pending>,
    dead_letters: &mut Vec<DeadLetter>,
    cycle_reached: &KafkaOffsets,
    state: CycleState<'_>,
    report: &mut IngestReport,
) -> Result<(), IngestError> {
    let CycleState {
        positions,
        dead_letter_positions,
        table_watermarks,
        watermarks,
    } = state;
    // Schema planning first, so rejected rows join this cycle's dead letters.
    let mut prepared = Vec::new();
    for (table, table_pending) in std::mem::take(pending) {
        let name = TableName::new(Tier::Bronze, &table)?;
        let mut loaded = catalog.load_table(&name).await?;
        let (changes, rejected) =
            plan_schema_changes(loaded.metadata().current_schema(), &table_pending.rows);
        if !changes.is_empty() {
            tracing::info!(table = %name, changes = changes.len(), "evolving schema");
            loaded = catalog
                .commit(
                    &name,
                    CommitRequest::new(Operation::EvolveSchema { changes }),
                )
                .await?
                .table;
        }
        let arrow_schema = firn_catalog::writer::arrow_schema_for(&loaded)?;
        let mut rejected_rows: Vec<(usize, String)> = rejected;
        let rejected_set: std::collections::HashSet<usize> =
            rejected_rows.iter().map(|(i, _)| *i).collect();
        let keep: Vec<BronzeRow> = table_pending
            .rows
            .iter()
            .enumerate()
            .filter(|(i, _)| !rejected_set.contains(i))
            .map(|(_, r)| r.clone())
            .collect();
        let kept_index: Vec<usize> = (0..table_pending.rows.len())
            .filter(|i| !rejected_set.contains(i))
            .collect();
        let (batch, late_rejects) =
            build_batch(&arrow_schema, loaded.metadata().current_schema(), &keep);
        rejected_rows.extend(
            late_rejects
                .into_iter()
                .map(|(i, reason)| (kept_index[i], reason)),
        );
        for (index, reason) in &rejected_rows {
            let row = &table_pending.rows[*index];
            let (key, value) = table_pending.raw[*index].clone();
            let skip = dead_letter_positions
                .get(&row.topic, row.partition)
                .is_some_and(|next| row.offset < next);
            if !skip {
                dead_letters.push(DeadLetter {
                    tenant: Some(row.tenant.clone()),
                    table: Some(table.clone()),
                    topic: row.topic.clone(),
                    partition: row.partition,
                    offset: row.offset,
                    key,
                    value,
                    kind: "incompatible_schema".into(),
                    message: reason.clone(),
                });
            }
        }
        prepared.push((name, loaded, batch, table_pending.reached));
    }

    if !dead_letters.is_empty() {
        let name = TableName::new(Tier::Bronze, DEAD_LETTER_TABLE)?;
        let table = catalog.load_table(&name).await?;
        let batch = dead_letter_batch(
            &firn_catalog::writer::arrow_schema_for(&table)?,
            dead_letters,
        );
        let mut sink = DataFileSink::new(&table, config.commit.target_file_size).await?;
        sink.write(batch).await?;
        let files = sink.finish().await?;
        let offsets = dead_letter_positions.merged_with(cycle_reached);
        catalog
            .commit(
                &name,
                CommitRequest::new(Operation::Append { files })
                    .with_property(WRITER_ID, options.writer_id.clone())
                    .with_property(KAFKA_OFFSETS, offsets.to_json()),
            )
            .await?;
        report.dead_letters += dead_letters.len() as u64;
        tracing::warn!(count = dead_letters.len(), "records dead-lettered");
        *dead_letter_positions = offsets;
        dead_letters.clear();
    }

    for (name, table, batch, reached) in prepared {
        let rows = batch.num_rows() as u64;
        let resumed = positions.get(&name.name).cloned().unwrap_or_default();
        let offsets = resumed.merged_with(&reached);
        if offsets == resumed && rows == 0 {
            continue;
        }
        let mut files = Vec::new();
        if rows > 0 {
            let mut sink = DataFileSink::new(&table, config.commit.target_file_size).await?;
            sink.write(batch).await?;
            files = sink.finish().await?;
        }
        let expected = resumed.clone();
        let touched: Vec<(String, i32)> = reached
            .0
            .iter()
            .flat_map(|(topic, parts)| parts.keys().map(move |p| (topic.clone(), *p)))
            .collect();
        let table_marks = table_watermarks
            .get(&name.name)
            .cloned()
            .unwrap_or_default()
            .merged_with(&watermarks.restricted_to(&touched));
        let request = CommitRequest::new(Operation::Append { files })
            .with_property(WRITER_ID, options.writer_id.clone())
            .with_property(KAFKA_OFFSETS, offsets.to_json())
            .with_property(SOURCE_WATERMARKS, table_marks.to_json())
            .with_validator(move |current| {
                let now = history::latest_kafka_offsets(&current.metadata_ref())
                    .map(|(_, o)| o)
                    .unwrap_or_default();
                for (topic, partition) in &touched {
                    if now.get(topic, *partition) != expected.get(topic, *partition) {
                        return Err(format!(
                            "{topic}/{partition} moved to {:?} while this writer resumed from {:?}",
                            now.get(topic, *partition),
                            expected.get(topic, *partition)
                        ));
                    }
                }
                Ok(())
            });
        let outcome = catalog.commit(&name, request).await?;
        tracing::info!(table = %name, rows, snapshot_id = ?outcome.snapshot_id, "committed");
        positions.insert(name.name.clone(), offsets);
        table_watermarks.insert(name.name.clone(), table_marks);
        let entry = report.tables.entry(name.to_string()).or_default();
        entry.rows_written += rows;
        entry.commits += 1;
        entry.last_snapshot_id = outcome.snapshot_id;
    }
    Ok(())
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

struct Polled {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// Commits the positions bronze now holds to the Kafka consumer group, so lag monitoring
/// works. Informational only: resume positions always come from the bronze summaries, so a
/// failure here is logged and ignored.
fn mirror_offsets_to_group(consumer: &BaseConsumer, reached: &KafkaOffsets) {
    let mut list = TopicPartitionList::new();
    for (topic, partitions) in &reached.0 {
        for (partition, next) in partitions {
            if let Err(err) = list.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                tracing::warn!(%topic, partition, %err, "cannot mirror offset");
            }
        }
    }
    if let Err(err) = consumer.commit(&list, rdkafka::consumer::CommitMode::Async) {
        tracing::warn!(%err, "cannot mirror offsets to the consumer group");
    }
}

/// Returns true when every assigned partition has been read to its high watermark.
/// A partition nothing was read from yet is at its assigned start offset.
fn caught_up(
    consumer: &BaseConsumer,
    starts: &HashMap<(String, i32), Option<i64>>,
) -> Result<bool, IngestError> {
    let positions = consumer
        .position()
        .map_err(IngestError::kafka("read positions"))?;
    for element in positions.elements() {
        let (low, high) = consumer
            .fetch_watermarks(element.topic(), element.partition(), Duration::from_secs(5))
            .map_err(IngestError::kafka("fetch watermarks"))?;
        let position = match element.offset() {
            Offset::Offset(position) => position,
            _ => starts
                .get(&(element.topic().to_string(), element.partition()))
                .copied()
                .flatten()
                .unwrap_or(low),
        };
        tracing::trace!(
            topic = element.topic(),
            partition = element.partition(),
            position,
            low,
            high,
            "caught-up check"
        );
        if position < high {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Polls up to `max` messages or until `wait` passes without one.
fn poll_batch(
    consumer: &BaseConsumer,
    max: usize,
    wait: Duration,
) -> Result<Vec<Polled>, IngestError> {
    let mut out = Vec::new();
    while out.len() < max {
        match consumer.poll(wait) {
            None => break,
            Some(Ok(message)) => out.push(Polled {
                topic: message.topic().to_string(),
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
            }),
            Some(Err(rdkafka::error::KafkaError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::AutoOffsetReset,
            ))) => {
                return Err(IngestError::Invalid(
                    "a resume offset recorded in bronze is no longer in Kafka (deleted by \
                     retention?): the records in between were never ingested; roll bronze back \
                     or reset the offsets explicitly"
                        .into(),
                ));
            }
            Some(Err(err)) => {
                return Err(IngestError::Kafka {
                    operation: "poll",
                    source: err,
                });
            }
        }
    }
    Ok(out)
}

fn consumer(config: &PipelineConfig, brokers: &str) -> Result<BaseConsumer, IngestError> {
    let mut client = ClientConfig::new();
    for (key, value) in &config.kafka.properties {
        client.set(key, value);
    }
    client
        .set("bootstrap.servers", brokers)
        .set("group.id", &config.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A resume offset that Kafka no longer has (retention deleted it) means records
        // were lost before firn read them: stop and say so rather than skip ahead.
        .set("auto.offset.reset", "error");
    client
        .create()
        .map_err(IngestError::kafka("create consumer"))
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
        strings(&|_| None),
        strings(&|l| Some(l.kind.clone())),
        strings(&|l| Some(l.message.clone())),
        Arc::new(times.finish()),
    ];
    RecordBatch::try_new(schema.clone(), columns)
        .expect("dead-letter columns follow the table schema")
}
