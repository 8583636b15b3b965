//! The Kafka source shared by `firn ingest` and `firn relay`: a librdkafka consumer in
//! consumer-group mode (default: subscribe to the topic patterns, partitions move between
//! the group's processes) or static mode (this process owns the listed partitions, or every
//! partition of the matching topics). Does I/O (Kafka).
//!
//! Resume positions never come from Kafka: on every assignment the caller's resolver reads
//! them from its own durable state (bronze snapshot summaries, the relay ledger), inside
//! the rebalance callback, and the partitions are assigned at exactly those offsets. Kafka's
//! group offsets are only a lag mirror committed afterwards ([`KafkaSource::mirror_offsets`]).
//!
//! librdkafka's poll blocks, so polling runs on the blocking pool. Events come out in the
//! order they happened: records, and assignment changes between them; records polled
//! before a revocation belong to the old owner's run and the caller drops what it did not
//! commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firn_catalog::config::{KafkaAssignment, KafkaConfig};
use firn_catalog::history::KafkaOffsets;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientConfig, ClientContext, Offset};

use crate::error::IngestError;
use crate::metrics::{IngestMetrics, PartitionLabel};

/// A topic and partition.
pub type TopicPartition = (String, i32);

/// librdkafka's longest wait for a fetch to fill. Its default (500 ms) is added to every
/// record's latency by brokers that answer a fetch only when it is full or the wait is over
/// (tansu does); the source waits at most this long, unless `kafka.properties` says.
const FETCH_WAIT: &str = "fetch.wait.max.ms";
const FETCH_WAIT_MS: &str = "100";

/// Resolves the next offset to read for newly assigned partitions (`None` = from the
/// beginning), plus whatever else the caller loaded with them (`R`, handed back in
/// [`SourceEvent::Assigned`] so the caller's state comes from the same read). Runs on the
/// poll thread, so it may block.
pub type ResumeFn<R> =
    Arc<dyn Fn(&[TopicPartition]) -> Result<(Vec<Option<i64>>, R), String> + Send + Sync>;

/// One Kafka record with everything the pipeline keeps of it.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Header name and raw value, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl SourceRecord {
    /// Key plus value bytes.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len)
    }
}

/// What a poll saw, in order.
#[derive(Debug)]
pub enum SourceEvent<R> {
    Record(SourceRecord),
    /// These partitions are now this process's, positioned at the offsets the resolver gave.
    Assigned {
        partitions: Vec<TopicPartition>,
        offsets: Vec<Option<i64>>,
        resume: R,
    },
    /// These partitions are no longer this process's: drop uncommitted work for them.
    Revoked(Vec<TopicPartition>),
}

/// How [`KafkaSource::start`] consumes.
pub struct SourceOptions {
    pub brokers: String,
    /// Topic name patterns (regexes, anchored with `^`).
    pub patterns: Vec<String>,
    /// librdkafka `client.id`, for broker logs.
    pub client_id: String,
    pub assignment: KafkaAssignment,
}

/// Shared between the consumer's callbacks (poll thread) and the source handle.
struct SourceContext<R> {
    resume: ResumeFn<R>,
    events: Mutex<Vec<SourceEvent<R>>>,
    /// A rebalance failure the poll must surface (the resolver failed: positions unknown).
    failure: Mutex<Option<String>>,
    /// Static mode: partitions to assign on the first poll.
    static_pending: Mutex<Option<Vec<TopicPartition>>>,
    metrics: IngestMetrics,
}

impl<R: Send + 'static> ClientContext for SourceContext<R> {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                // librdkafka reports -1 for partitions it is not consuming (and the internal
                // "unassigned" partition -1).
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .get_or_create(&PartitionLabel {
                            topic: topic.clone(),
                            partition: *partition,
                        })
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl<R: Send + 'static> ConsumerContext for SourceContext<R> {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        list: &mut TopicPartitionList,
    ) {
        let partitions = partitions_of(list);
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        self.metrics.rebalances.inc();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                match (self.resume)(&partitions) {
                    Ok((offsets, resume)) => {
                        for ((topic, partition), offset) in partitions.iter().zip(&offsets) {
                            let offset = offset.map_or(Offset::Beginning, Offset::Offset);
                            if let Err(err) = list.set_partition_offset(topic, *partition, offset) {
                                self.fail(format!("cannot position {topic}/{partition}: {err}"));
                                return;
                            }
                        }
                        let assigned = if cooperative {
                            consumer.incremental_assign(list)
                        } else {
                            consumer.assign(list)
                        };
                        if let Err(err) = assigned {
                            self.fail(format!("cannot assign partitions: {err}"));
                            return;
                        }
                        tracing::info!(partitions = ?partitions, "assigned");
                        self.push(SourceEvent::Assigned {
                            partitions,
                            offsets,
                            resume,
                        });
                    }
                    Err(message) => {
                        // Without positions nothing may be read; the caller stops and the
                        // group gives the partitions to someone else.
                        self.fail(format!("cannot read resume positions: {message}"));
                    }
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = ?partitions, "revoked");
                self.push(SourceEvent::Revoked(partitions));
                let unassigned = if cooperative {
                    consumer.incremental_unassign(list)
                } else {
                    consumer.unassign()
                };
                if let Err(err) = unassigned {
                    tracing::warn!(%err, "unassign failed");
                }
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                tracing::warn!(error = %code, "rebalance error; unassigning");
                self.push(SourceEvent::Revoked(partitions_of(
                    &consumer.assignment().unwrap_or_default(),
                )));
                let _ = consumer.unassign();
            }
        }
    }
}

impl<R> SourceContext<R> {
    fn push(&self, event: SourceEvent<R>) {
        self.events.lock().expect("source events lock").push(event);
    }

    fn fail(&self, message: String) {
        tracing::error!(%message, "rebalance failed");
        *self.failure.lock().expect("source failure lock") = Some(message);
    }
}

fn partitions_of(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// A running Kafka consumer.
pub struct KafkaSource<R: Send + 'static> {
    consumer: Arc<BaseConsumer<SourceContext<R>>>,
}

impl<R: Send + 'static> KafkaSource<R> {
    /// Creates the consumer and subscribes (group mode) or assigns (static mode).
    pub fn start(
        kafka: &KafkaConfig,
        options: &SourceOptions,
        resume: ResumeFn<R>,
        metrics: IngestMetrics,
    ) -> Result<KafkaSource<R>, IngestError> {
        let mut client = ClientConfig::new();
        for (key, value) in &kafka.properties {
            client.set(key, value);
        }
        client
            .set("bootstrap.servers", &options.brokers)
            .set("group.id", &kafka.group_id)
            .set("client.id", &options.client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A resume offset that Kafka no longer has (retention deleted it) means records
            // were lost before firn read them: stop and say so rather than skip ahead.
            .set("auto.offset.reset", "error");
        if !kafka.properties.contains_key("statistics.interval.ms") {
            client.set("statistics.interval.ms", "5000");
        }
        if !kafka.properties.contains_key(FETCH_WAIT) {
            client.set(FETCH_WAIT, FETCH_WAIT_MS);
        }
        let context = SourceContext {
            resume,
            events: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            static_pending: Mutex::new(None),
            metrics,
        };
        let consumer: BaseConsumer<SourceContext<R>> = client
            .create_with_context(context)
            .map_err(IngestError::kafka("create consumer"))?;
        let source = KafkaSource {
            consumer: Arc::new(consumer),
        };
        match &options.assignment {
            KafkaAssignment::Group => {
                let patterns: Vec<&str> = options.patterns.iter().map(String::as_str).collect();
                source
                    .consumer
                    .subscribe(&patterns)
                    .map_err(IngestError::kafka("subscribe"))?;
                tracing::info!(patterns = ?options.patterns, group = %kafka.group_id, "subscribed (consumer-group mode)");
            }
            KafkaAssignment::Static { partitions } => {
                // Assigned by the first poll: the resolver may block, which is only allowed
                // on the poll thread.
                let wanted = source.static_partitions(&options.patterns, partitions)?;
                *source
                    .consumer
                    .context()
                    .static_pending
                    .lock()
                    .expect("source static lock") = Some(wanted);
            }
        }
        Ok(source)
    }

    /// The partitions static mode owns: the configured ones, or all of the matching topics.
    fn static_partitions(
        &self,
        patterns: &[String],
        configured: &[String],
    ) -> Result<Vec<TopicPartition>, IngestError> {
        let regexes: Vec<regex::Regex> = patterns
            .iter()
            .map(|p| {
                regex::Regex::new(p)
                    .map_err(|err| IngestError::Invalid(format!("topic pattern `{p}`: {err}")))
            })
            .collect::<Result<_, _>>()?;
        let metadata = self
            .consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(IngestError::kafka("fetch metadata"))?;
        let mut all = Vec::new();
        for topic in metadata.topics() {
            if regexes.iter().any(|r| r.is_match(topic.name())) {
                for partition in topic.partitions() {
                    all.push((topic.name().to_string(), partition.id()));
                }
            }
        }
        if configured.is_empty() {
            return Ok(all);
        }
        let mut wanted = Vec::new();
        for entry in configured {
            let parsed = entry.rsplit_once(':').and_then(|(topic, partition)| {
                Some((topic.to_string(), partition.parse::<i32>().ok()?))
            });
            let Some(tp) = parsed else {
                return Err(IngestError::Invalid(format!(
                    "kafka.partitions: `{entry}` is not `topic:partition`"
                )));
            };
            if !all.contains(&tp) {
                return Err(IngestError::Invalid(format!(
                    "kafka.partitions: {entry} does not exist or its topic matches no source"
                )));
            }
            wanted.push(tp);
        }
        Ok(wanted)
    }
}

fn assign_static<R: Send + 'static>(
    consumer: &BaseConsumer<SourceContext<R>>,
    partitions: &[TopicPartition],
) -> Result<(), IngestError> {
    {
        let context = consumer.context();
        let (offsets, resume) = (context.resume)(partitions).map_err(|message| {
            IngestError::Invalid(format!("cannot read resume positions: {message}"))
        })?;
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in partitions.iter().zip(&offsets) {
            list.add_partition_offset(
                topic,
                *partition,
                offset.map_or(Offset::Beginning, Offset::Offset),
            )
            .map_err(IngestError::kafka("assign partitions"))?;
        }
        consumer
            .assign(&list)
            .map_err(IngestError::kafka("assign partitions"))?;
        tracing::info!(partitions = partitions.len(), "assigned (static mode)");
        context.push(SourceEvent::Assigned {
            partitions: partitions.to_vec(),
            offsets,
            resume,
        });
        Ok(())
    }
}

impl<R: Send + 'static> KafkaSource<R> {
    /// Polls up to `max` records, until `wait` passes without one, or for at most `wait` × 2,
    /// returning them with the assignment changes in between.
    pub async fn poll(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<SourceEvent<R>>, IngestError> {
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || poll_blocking(&consumer, max, wait))
            .await
            .map_err(|err| IngestError::Invalid(format!("poll task failed: {err}")))?
    }

    /// True when something is assigned and every assigned partition has been read to its end.
    pub async fn caught_up(
        &self,
        starts: HashMap<TopicPartition, i64>,
    ) -> Result<bool, IngestError> {
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || caught_up_blocking(&consumer, &starts))
            .await
            .map_err(|err| IngestError::Invalid(format!("caught-up task failed: {err}")))?
    }

    /// Leaves the consumer group now (group mode), so the other members rebalance at once
    /// instead of after the session timeout. Work for the revoked partitions is the caller's
    /// to have committed before.
    pub async fn close(&self) {
        let consumer = self.consumer.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if consumer.subscription().map(|s| s.count()).unwrap_or(0) == 0 {
                return;
            }
            consumer.unsubscribe();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                let _ = consumer.poll(Duration::from_millis(100));
                consumer
                    .context()
                    .events
                    .lock()
                    .expect("source events lock")
                    .clear();
                if consumer.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
                    break;
                }
            }
        })
        .await;
    }

    /// The partitions this process owns now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.consumer
            .assignment()
            .map(|list| partitions_of(&list))
            .unwrap_or_default()
    }

    /// Moves a partition back to `offset` (work for it was dropped and must be read again).
    pub async fn rewind(
        &self,
        topic: &str,
        partition: i32,
        offset: Option<i64>,
    ) -> Result<(), IngestError> {
        let consumer = self.consumer.clone();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let offset = offset.map_or(Offset::Beginning, Offset::Offset);
            consumer
                .seek(&topic, partition, offset, Duration::from_secs(10))
                .map_err(IngestError::kafka("seek"))
        })
        .await
        .map_err(|err| IngestError::Invalid(format!("seek task failed: {err}")))?
    }

    /// Stops or restarts fetching the given partitions (backpressure).
    pub fn set_paused(
        &self,
        partitions: &[TopicPartition],
        paused: bool,
    ) -> Result<(), IngestError> {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in partitions {
            list.add_partition(topic, *partition);
        }
        if paused {
            self.consumer
                .pause(&list)
                .map_err(IngestError::kafka("pause"))
        } else {
            self.consumer
                .resume(&list)
                .map_err(IngestError::kafka("resume"))
        }
    }

    /// Commits positions the pipeline has made durable to the consumer group, so lag
    /// monitoring works. Informational only (resume positions come from the caller's own
    /// state), so a failure is logged and ignored.
    pub fn mirror_offsets(&self, reached: &KafkaOffsets) {
        let owned = self.assignment();
        let mut list = TopicPartitionList::new();
        for (topic, partitions) in &reached.0 {
            for (partition, next) in partitions {
                // Committing for a partition another member owns now would fail the whole
                // request (and is not ours to report).
                if !owned.iter().any(|(t, p)| t == topic && p == partition) {
                    continue;
                }
                if let Err(err) =
                    list.add_partition_offset(topic, *partition, Offset::Offset(*next))
                {
                    tracing::warn!(%topic, partition, %err, "cannot mirror offset");
                }
            }
        }
        if list.count() == 0 {
            return;
        }
        if let Err(err) = self.consumer.commit(&list, CommitMode::Async) {
            tracing::warn!(%err, "cannot mirror offsets to the consumer group");
        }
    }
}

fn poll_blocking<R: Send + 'static>(
    consumer: &BaseConsumer<SourceContext<R>>,
    max: usize,
    wait: Duration,
) -> Result<Vec<SourceEvent<R>>, IngestError> {
    let context = consumer.context();
    let static_pending = context
        .static_pending
        .lock()
        .expect("source static lock")
        .take();
    if let Some(partitions) = static_pending {
        assign_static(consumer, &partitions)?;
    }
    // Events queued outside a poll (static assignment at start).
    let mut out: Vec<SourceEvent<R>> =
        std::mem::take(&mut *context.events.lock().expect("source events lock"));
    let mut records = 0;
    // A batch also ends after `wait` × 2 in total, so the caller's commit clock is looked at
    // often even when records never stop coming.
    let deadline = std::time::Instant::now() + wait * 2;
    while records < max && std::time::Instant::now() < deadline {
        let polled = consumer.poll(wait);
        // A rebalance callback runs inside poll, before the message it returns: its events
        // go first so the order is right.
        out.append(&mut context.events.lock().expect("source events lock"));
        if let Some(message) = context.failure.lock().expect("source failure lock").take() {
            return Err(IngestError::Invalid(message));
        }
        match polled {
            None => break,
            Some(Ok(message)) => {
                records += 1;
                let headers = message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(SourceEvent::Record(SourceRecord {
                    topic: message.topic().to_string(),
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                    headers,
                }));
            }
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                return Err(IngestError::Invalid(
                    "a resume offset recorded by firn is no longer in Kafka (deleted by \
                     retention?): the records in between were never read; roll the table back \
                     or reset the offsets explicitly"
                        .into(),
                ));
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(err)) => {
                // Broker or network trouble is retried by librdkafka; report and go on.
                tracing::warn!(%err, "kafka consumer error");
                break;
            }
        }
    }
    Ok(out)
}

/// A partition nothing was read from yet is at its assigned start offset (`starts`).
fn caught_up_blocking<R: Send + 'static>(
    consumer: &BaseConsumer<SourceContext<R>>,
    starts: &HashMap<TopicPartition, i64>,
) -> Result<bool, IngestError> {
    let positions = consumer
        .position()
        .map_err(IngestError::kafka("read positions"))?;
    if positions.count() == 0 {
        return Ok(false);
    }
    for element in positions.elements() {
        let (low, high) = match consumer.fetch_watermarks(
            element.topic(),
            element.partition(),
            Duration::from_secs(5),
        ) {
            Ok(watermarks) => watermarks,
            Err(err) => {
                // The broker is unreachable: not caught up, and the next poll retries.
                tracing::debug!(%err, "cannot read the partition end");
                return Ok(false);
            }
        };
        let position = match element.offset() {
            Offset::Offset(position) => position,
            _ => starts
                .get(&(element.topic().to_string(), element.partition()))
                .copied()
                .unwrap_or(low),
        };
        if position < high {
            return Ok(false);
        }
    }
    Ok(true)
}
