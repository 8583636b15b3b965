//! The relay's Kafka side: the consumer (static assignment of every partition of the topics
//! the relayed models read, from the beginning, because the relay rebuilds its state from
//! the change log), polling in bounded batches, pausing, the caught-up check and the
//! consumer-group lag mirror. Does I/O (Kafka).
//!
//! [`consumer`] is the one place the consumer is made, so a consumer-group source can
//! replace it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use firn_catalog::config::{PipelineConfig, RelayConfig, SourceConfig, TenantRule, TopicTemplate};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::debezium::{Cell, CellValue};
use crate::relay::RelayError;

/// One consumed message.
#[derive(Debug)]
pub struct Polled {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Kafka timestamp (ms), the start of the event-to-visible latency.
    pub timestamp_ms: Option<i64>,
}

/// librdkafka's longest wait for a fetch to fill. Its default (500 ms) is what a broker that
/// answers a fetch only when it is full or the wait is over (tansu does) adds to every
/// event's latency; the hot path waits at most this long, unless `kafka.properties` says.
const FETCH_WAIT: &str = "fetch.wait.max.ms";
const RELAY_FETCH_WAIT_MS: &str = "100";

/// Creates the relay's consumer: no auto commit (resume positions come from the ledger;
/// the group offsets are only a lag mirror), group `<kafka.group-id>-relay`.
pub fn consumer(config: &PipelineConfig, brokers: &str) -> Result<BaseConsumer, RelayError> {
    let mut client = ClientConfig::new();
    for (key, value) in &config.kafka.properties {
        client.set(key, value);
    }
    client
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{}-relay", config.kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Reading from the beginning is the only start the relay makes; a beginning that
        // retention removed is reported, not skipped.
        .set("auto.offset.reset", "error");
    if !config.kafka.properties.contains_key(FETCH_WAIT) {
        client.set(FETCH_WAIT, RELAY_FETCH_WAIT_MS);
    }
    client
        .create()
        .map_err(RelayError::kafka("create consumer"))
}

/// Per topic: its source, the parsed topic template and the partition ids.
pub type Routes = BTreeMap<String, (SourceConfig, TopicTemplate, Vec<i32>)>;

/// The sources whose topics exist, by topic, for the given silver tables, without the topics
/// of tenants `target` does not serve.
pub fn routes(
    consumer: &BaseConsumer,
    config: &PipelineConfig,
    target: &RelayConfig,
    tables: &[String],
) -> Result<Routes, RelayError> {
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(RelayError::kafka("fetch metadata"))?;
    let mut routes = BTreeMap::new();
    for topic in metadata.topics() {
        let Some(source) = config.source_for_topic(topic.name()) else {
            continue;
        };
        if !tables.contains(&source.table) {
            continue;
        }
        let template = TopicTemplate::parse(&source.topic).map_err(RelayError::Config)?;
        if let (TenantRule::Topic, Some(tenant)) = (&source.tenant, template.matches(topic.name()))
            && !target.serves(tenant)
        {
            // Another shard's topic.
            continue;
        }
        let partitions = topic.partitions().iter().map(|p| p.id()).collect();
        routes.insert(
            topic.name().to_string(),
            (source.clone(), template, partitions),
        );
    }
    Ok(routes)
}

/// Assigns every partition of `topics` from its beginning.
pub fn assign_from_beginning(
    consumer: &BaseConsumer,
    topics: &BTreeMap<String, Vec<i32>>,
) -> Result<TopicPartitionList, RelayError> {
    let mut list = TopicPartitionList::new();
    for (topic, partitions) in topics {
        for partition in partitions {
            list.add_partition_offset(topic, *partition, Offset::Beginning)
                .map_err(RelayError::kafka("assign partitions"))?;
        }
    }
    consumer
        .assign(&list)
        .map_err(RelayError::kafka("assign partitions"))?;
    Ok(list)
}

/// Polls up to `max` messages, waiting at most `wait` for the first.
pub fn poll_batch(
    consumer: &BaseConsumer,
    max: usize,
    wait: Duration,
) -> Result<Vec<Polled>, RelayError> {
    let mut out = Vec::new();
    let mut timeout = wait;
    while out.len() < max {
        match consumer.poll(timeout) {
            None => break,
            Some(Ok(message)) => out.push(Polled {
                topic: message.topic().to_string(),
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                timestamp_ms: message.timestamp().to_millis(),
            }),
            Some(Err(rdkafka::error::KafkaError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::AutoOffsetReset,
            ))) => {
                return Err(RelayError::Config(
                    "the beginning of a CDC topic is no longer in Kafka (deleted by \
                     retention?): the relay rebuilds its state from the whole change log, so \
                     the topics need compaction or unlimited retention"
                        .into(),
                ));
            }
            Some(Err(source)) => {
                return Err(RelayError::Kafka {
                    operation: "poll",
                    source,
                });
            }
        }
        // Drain what is already fetched without waiting again.
        timeout = Duration::ZERO;
    }
    Ok(out)
}

/// Resumes every assigned partition, or pauses them all except those of the `keep_reading`
/// topics (which are resumed).
pub fn set_paused(
    consumer: &BaseConsumer,
    assignment: &TopicPartitionList,
    paused: bool,
    keep_reading: &BTreeSet<String>,
) -> Result<(), RelayError> {
    if !paused {
        return consumer
            .resume(assignment)
            .map_err(RelayError::kafka("resume partitions"));
    }
    let (mut pause, mut resume) = (TopicPartitionList::new(), TopicPartitionList::new());
    for element in assignment.elements() {
        let list = if keep_reading.contains(element.topic()) {
            &mut resume
        } else {
            &mut pause
        };
        list.add_partition(element.topic(), element.partition());
    }
    if pause.count() > 0 {
        consumer
            .pause(&pause)
            .map_err(RelayError::kafka("pause partitions"))?;
    }
    if resume.count() > 0 {
        consumer
            .resume(&resume)
            .map_err(RelayError::kafka("resume partitions"))?;
    }
    Ok(())
}

/// The topics of `inputs` (source tables): those keep being read while the consumer is
/// paused, because a model waiting for its first event of an input cannot shape the open
/// batches that fill the budget until that event arrives.
pub fn topics_of(routes: &Routes, inputs: &BTreeSet<&str>) -> BTreeSet<String> {
    routes
        .iter()
        .filter(|(_, (source, _, _))| inputs.contains(source.table.as_str()))
        .map(|(topic, _)| topic.clone())
        .collect()
}

/// The partitions of `assignment` whose topic is one of `topics`.
pub fn of_topics(assignment: &TopicPartitionList, topics: &BTreeSet<String>) -> TopicPartitionList {
    let mut partitions = TopicPartitionList::new();
    for element in assignment.elements() {
        if topics.contains(element.topic()) {
            partitions.add_partition(element.topic(), element.partition());
        }
    }
    partitions
}

/// Whether every assigned partition has been read to its end: `next` holds the next
/// offset per partition read so far.
pub fn caught_up(
    consumer: &BaseConsumer,
    assignment: &TopicPartitionList,
    next: &HashMap<(String, i32), i64>,
) -> Result<bool, RelayError> {
    let partitions: Vec<(String, i32)> = assignment
        .elements()
        .iter()
        .map(|element| (element.topic().to_string(), element.partition()))
        .collect();
    // One thread per partition: a watermark query waits behind the consumer's long-poll
    // fetch (`fetch.wait.max.ms`), so asking one partition after the other costs that
    // wait once per partition.
    let watermarks: Vec<_> = std::thread::scope(|scope| {
        let queries: Vec<_> = partitions
            .iter()
            .map(|(topic, partition)| {
                scope.spawn(move || {
                    consumer.fetch_watermarks(topic, *partition, Duration::from_secs(5))
                })
            })
            .collect();
        queries
            .into_iter()
            .map(|query| {
                query
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    for (tp, watermarks) in partitions.iter().zip(watermarks) {
        let (low, high) = watermarks.map_err(RelayError::kafka("fetch watermarks"))?;
        let position = next.get(tp).copied().unwrap_or(low);
        if position < high {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Records between the acknowledged positions and each partition's end.
pub fn lag(consumer: &BaseConsumer, acked: &BTreeMap<(String, i32), i64>) -> i64 {
    acked
        .iter()
        .filter_map(|((topic, partition), next)| {
            consumer
                .fetch_watermarks(topic, *partition, Duration::from_secs(1))
                .ok()
                .map(|(_, high)| (high - next).max(0))
        })
        .sum()
}

/// Commits acknowledged positions to the consumer group, for lag dashboards. Informational:
/// resume positions come from the ledger, so a failure is only logged.
pub fn mirror_offsets(consumer: &BaseConsumer, acked: &BTreeMap<(String, i32), i64>) {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), next) in acked {
        if let Err(err) = list.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
            tracing::warn!(%topic, partition, %err, "cannot mirror offset");
        }
    }
    if let Err(err) = consumer.commit(&list, CommitMode::Async) {
        tracing::warn!(%err, "cannot mirror relay offsets to the consumer group");
    }
}

/// The tenant of a record, as bronze finds it.
pub fn tenant(
    source: &SourceConfig,
    template: &TopicTemplate,
    topic: &str,
    row: &[Cell],
) -> Result<String, String> {
    let tenant = match &source.tenant {
        TenantRule::Static { tenant } => tenant.clone(),
        TenantRule::Topic => template.matches(topic).unwrap_or_default().to_string(),
        TenantRule::Field { field } => {
            match row.iter().find(|c| *c.name == **field).map(|c| &c.value) {
                Some(CellValue::String(text)) => text.clone(),
                Some(CellValue::Long(v)) => v.to_string(),
                Some(CellValue::Int(v)) => v.to_string(),
                _ => return Err(format!("tenant field `{field}` is missing or not a string")),
            }
        }
    };
    firn_catalog::names::validate_tenant(&tenant).map_err(|err| err.to_string())?;
    Ok(tenant)
}
