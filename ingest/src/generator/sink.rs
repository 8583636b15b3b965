//! I/O for the generator: JSON-lines files, a Kafka producer, and the expected-outcome
//! files. Everything else in the generator is pure; this is the only module that does I/O.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use serde::Serialize;

use super::envelope::push_str;
use super::expected::ExpectedState;
use super::model::Table;
use super::{CdcMessage, GeneratorError};

/// Upper bound on produced-but-unacknowledged messages: keeps memory flat however long the
/// stream is, while leaving librdkafka enough to batch.
const MAX_IN_FLIGHT: usize = 50_000;
/// How often (in produced messages) the producing loop yields to the runtime.
const YIELD_EVERY: u64 = 1024;
/// How often (in delivered messages) the progress callback runs.
const PROGRESS_EVERY: u64 = 10_000;
/// Timeout of metadata lookups and topic creation.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Client settings copied from the producer config to the admin client (connection and
/// security only; producer tuning would only make the admin client warn).
const SHARED_CLIENT_PREFIXES: [&str; 5] = ["security.", "sasl.", "ssl.", "socket.", "client."];

/// What a sink wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    pub messages: u64,
    /// Messages without a value, re-emitted ones included.
    pub tombstones: u64,
    /// Key plus value bytes.
    pub bytes: u64,
}

impl SinkStats {
    fn count(&mut self, message: &CdcMessage) {
        self.messages += 1;
        if message.value.is_none() {
            self.tombstones += 1;
        }
        let len = |bytes: &Option<Vec<u8>>| bytes.as_ref().map_or(0, |b| b.len() as u64);
        self.bytes += len(&message.key) + len(&message.value);
    }
}

/// Progress of [`produce_to_kafka`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceProgress {
    /// Handed to the producer.
    pub sent: u64,
    /// Acknowledged by the brokers.
    pub delivered: u64,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> GeneratorError + '_ {
    move |source| GeneratorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes messages as JSON lines, `{"topic":..,"key":<json or null>,"value":<json or null>}`.
/// Key and value are embedded verbatim (after checking they are JSON), so the file keeps
/// the exact bytes and field order Kafka would carry. Parent directories are created.
pub fn write_to_file(
    path: &Path,
    messages: impl Iterator<Item = CdcMessage>,
) -> Result<SinkStats, GeneratorError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let file = File::create(path).map_err(io_error(path))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut stats = SinkStats::default();
    let mut line = String::new();
    for message in messages {
        line.clear();
        line.push_str("{\"topic\":");
        push_str(&mut line, &message.topic);
        line.push_str(",\"key\":");
        push_json_bytes(&mut line, &message.topic, message.key.as_deref())?;
        line.push_str(",\"value\":");
        push_json_bytes(&mut line, &message.topic, message.value.as_deref())?;
        line.push_str("}\n");
        out.write_all(line.as_bytes()).map_err(io_error(path))?;
        stats.count(&message);
    }
    out.flush().map_err(io_error(path))?;
    Ok(stats)
}

fn push_json_bytes(
    out: &mut String,
    topic: &str,
    bytes: Option<&[u8]>,
) -> Result<(), GeneratorError> {
    let Some(bytes) = bytes else {
        out.push_str("null");
        return Ok(());
    };
    let invalid = |reason: String| GeneratorError::InvalidMessage {
        topic: topic.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| invalid(e.to_string()))?;
    // Embedding verbatim is only safe for one complete JSON value without raw newlines.
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| invalid(e.to_string()))?;
    if text.contains('\n') {
        out.push_str(&text.replace(['\n', '\r'], " "));
    } else {
        out.push_str(text);
    }
    Ok(())
}

impl ExpectedState {
    /// Same as [`write_expected`]`(self, dir)`.
    pub fn write_expected(&self, dir: &Path) -> Result<(), GeneratorError> {
        write_expected(self, dir)
    }
}

/// Writes `<dir>/expected/<table>.jsonl` (one [`super::ExpectedRow`] per line, sorted by
/// tenant then key) and `<dir>/counts.json` ([`super::CountsReport`], pretty-printed).
pub fn write_expected(expected: &ExpectedState, dir: &Path) -> Result<(), GeneratorError> {
    let table_dir = dir.join("expected");
    fs::create_dir_all(&table_dir).map_err(io_error(&table_dir))?;
    for table in Table::ALL {
        let path = table_dir.join(format!("{}.jsonl", table.name()));
        let file = File::create(&path).map_err(io_error(&path))?;
        let mut out = BufWriter::new(file);
        for row in expected.table_rows(table) {
            serde_json::to_writer(&mut out, &row)
                .map_err(std::io::Error::from)
                .map_err(io_error(&path))?;
            out.write_all(b"\n").map_err(io_error(&path))?;
        }
        out.flush().map_err(io_error(&path))?;
    }
    let path = dir.join("counts.json");
    let mut text = serde_json::to_string_pretty(&expected.counts_report())
        .map_err(std::io::Error::from)
        .map_err(io_error(&path))?;
    text.push('\n');
    fs::write(&path, text).map_err(io_error(&path))
}

/// Produces `messages` to Kafka in order and waits until every one is acknowledged.
///
/// Topics are created on first sight (`partitions` partitions, replication factor 1) with
/// the admin client; existing topics are left alone. The producer is idempotent
/// (`enable.idempotence=true`), so retries cannot reorder or duplicate within a partition,
/// and uses librdkafka's `murmur2_random` partitioner, the same hash as the Java client
/// Debezium runs on, so every key (and its tombstone) lands where Kafka Connect would put
/// it. Entries of `producer_config` override these defaults. Message timestamps are left to
/// the producer (now): simulated timestamps months old would fall out of retention at once.
/// At most `MAX_IN_FLIGHT` deliveries are outstanding; `progress` runs every
/// `PROGRESS_EVERY` deliveries and once at the end.
pub async fn produce_to_kafka(
    brokers: &str,
    producer_config: &HashMap<String, String>,
    partitions: i32,
    messages: impl Iterator<Item = CdcMessage>,
    mut progress: impl FnMut(ProduceProgress),
) -> Result<SinkStats, GeneratorError> {
    let client_error = |client: &'static str| {
        move |source| GeneratorError::KafkaClient {
            client,
            brokers: brokers.to_owned(),
            source,
        }
    };
    let mut producer_settings = ClientConfig::new();
    producer_settings
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000");
    let mut admin_settings = ClientConfig::new();
    // The admin client is a producer-type handle, for which librdkafka lets metadata
    // requests auto-create topics; that would bypass our partition count.
    admin_settings
        .set("bootstrap.servers", brokers)
        .set("allow.auto.create.topics", "false");
    for (key, value) in producer_config {
        producer_settings.set(key, value);
        if SHARED_CLIENT_PREFIXES.iter().any(|p| key.starts_with(p)) {
            admin_settings.set(key, value);
        }
    }
    let producer: FutureProducer = producer_settings
        .create()
        .map_err(client_error("producer"))?;
    let admin: Arc<AdminClient<DefaultClientContext>> = Arc::new(
        admin_settings
            .create()
            .map_err(client_error("admin client"))?,
    );

    let mut known_topics: HashSet<String> = HashSet::new();
    let mut in_flight: FuturesUnordered<DeliveryFuture> = FuturesUnordered::new();
    let mut stats = SinkStats::default();
    let mut delivered: u64 = 0;

    for message in messages {
        if !known_topics.contains(&message.topic) {
            ensure_topic(&admin, &message.topic, partitions).await?;
            known_topics.insert(message.topic.clone());
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&message.topic);
        if let Some(key) = &message.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &message.value {
            record = record.payload(value.as_slice());
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    in_flight.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    // librdkafka's local queue is full: wait for an acknowledgement (or
                    // briefly, if none is pending) and offer the same record again.
                    record = returned;
                    match in_flight.next().await {
                        Some(result) => {
                            settle(result)?;
                            delivered += 1;
                            report(&mut progress, stats.messages, delivered);
                        }
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
                Err((source, _)) => {
                    return Err(GeneratorError::Produce {
                        topic: message.topic.clone(),
                        source,
                    });
                }
            }
        }
        stats.count(&message);
        // Settle whatever has already been acknowledged, without waiting, so errors and
        // progress surface promptly rather than once the in-flight bound is reached.
        while let Some(Some(result)) = in_flight.next().now_or_never() {
            settle(result)?;
            delivered += 1;
            report(&mut progress, stats.messages, delivered);
        }
        if stats.messages.is_multiple_of(YIELD_EVERY) {
            // Generating is CPU work; let other tasks on this runtime (signal handlers,
            // metrics) run between batches.
            tokio::task::yield_now().await;
        }
        while in_flight.len() >= MAX_IN_FLIGHT {
            if let Some(result) = in_flight.next().await {
                settle(result)?;
                delivered += 1;
                report(&mut progress, stats.messages, delivered);
            }
        }
    }
    while let Some(result) = in_flight.next().await {
        settle(result)?;
        delivered += 1;
        report(&mut progress, stats.messages, delivered);
    }
    progress(ProduceProgress {
        sent: stats.messages,
        delivered,
    });
    Ok(stats)
}

fn report(progress: &mut impl FnMut(ProduceProgress), sent: u64, delivered: u64) {
    if delivered.is_multiple_of(PROGRESS_EVERY) {
        progress(ProduceProgress { sent, delivered });
    }
}

fn settle(result: <DeliveryFuture as Future>::Output) -> Result<(), GeneratorError> {
    use rdkafka::message::Message as _;
    match result {
        Ok(Ok(_delivery)) => Ok(()),
        Ok(Err((source, message))) => Err(GeneratorError::Produce {
            topic: message.topic().to_owned(),
            source,
        }),
        Err(_canceled) => Err(GeneratorError::DeliveryCancelled),
    }
}

/// Creates `topic` unless the cluster already has it. Existence is checked first through
/// metadata (with auto-creation off): brokers that cannot create topics through the admin
/// API, such as librdkafka's mock cluster, then work with pre-created topics.
async fn ensure_topic(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    topic: &str,
    partitions: i32,
) -> Result<(), GeneratorError> {
    let create_error = |source| GeneratorError::CreateTopic {
        topic: topic.to_owned(),
        source,
    };
    let lookup = Arc::clone(admin);
    let name = topic.to_owned();
    // `fetch_metadata` blocks; keep it off the async worker threads.
    let exists = tokio::task::spawn_blocking(move || {
        lookup
            .inner()
            .fetch_metadata(Some(&name), ADMIN_TIMEOUT)
            .map(|metadata| {
                metadata
                    .topics()
                    .iter()
                    .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
            })
    })
    .await
    .map_err(GeneratorError::Task)?
    .map_err(create_error)?;
    if exists {
        return Ok(());
    }
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(create_error)?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(GeneratorError::TopicRejected { topic: name, code }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::{Generator, GeneratorConfig};
    use super::*;

    fn small() -> GeneratorConfig {
        GeneratorConfig {
            customers: 10,
            products: 5,
            orders: 10,
            ..GeneratorConfig::default()
        }
    }

    #[test]
    fn file_lines_carry_the_exact_key_and_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/out.jsonl");
        let messages: Vec<CdcMessage> = Generator::new(&small()).expect("valid").collect();
        let stats = write_to_file(&path, messages.clone().into_iter()).expect("written");
        assert_eq!(stats.messages, messages.len() as u64);
        let text = fs::read_to_string(&path).expect("read back");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), messages.len());
        for (line, message) in lines.iter().zip(&messages) {
            let parsed: Value = serde_json::from_str(line).expect("json line");
            assert_eq!(parsed["topic"], message.topic.as_str());
            let expect = |bytes: &Option<Vec<u8>>| {
                bytes
                    .as_ref()
                    .map_or(Value::Null, |b| serde_json::from_slice(b).expect("json"))
            };
            assert_eq!(parsed["key"], expect(&message.key));
            assert_eq!(parsed["value"], expect(&message.value));
            if let Some(value) = &message.value {
                let raw = std::str::from_utf8(value).expect("utf8");
                assert!(line.contains(raw), "value bytes are embedded verbatim");
            }
        }
    }

    #[test]
    fn invalid_json_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let message = CdcMessage {
            topic: "t".into(),
            key: Some(b"{not json".to_vec()),
            value: None,
            table: Table::Orders,
            tenant: "acme".into(),
        };
        let err = write_to_file(&dir.path().join("x.jsonl"), std::iter::once(message));
        assert!(matches!(err, Err(GeneratorError::InvalidMessage { .. })));
    }

    #[tokio::test]
    async fn run_writes_messages_and_expected_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let events = dir.path().join("events.jsonl");
        let report = super::super::run(super::super::GenerateOptions {
            config: small(),
            target: super::super::GenerateTarget::File(events.clone()),
            expected_dir: Some(dir.path().to_path_buf()),
        })
        .await
        .expect("ran");
        assert_eq!(report.sink.messages, report.totals.messages);
        // The sink sees re-emitted tombstones too; the expected counts list them apart.
        assert!(report.sink.tombstones >= report.totals.tombstones);
        assert!(report.sink.tombstones <= report.totals.tombstones + report.totals.duplicates);
        assert_eq!(report.topics.len(), 12);
        let lines = fs::read_to_string(&events).expect("events").lines().count();
        assert_eq!(lines as u64, report.sink.messages);
        assert!(dir.path().join("counts.json").is_file());
        assert!(dir.path().join("expected/order_items.jsonl").is_file());
    }

    #[test]
    fn expected_files_are_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut generator = Generator::new(&small()).expect("valid");
        let total = generator.by_ref().count() as u64;
        write_expected(generator.expected(), dir.path()).expect("written");
        let counts: Value = serde_json::from_str(
            &fs::read_to_string(dir.path().join("counts.json")).expect("counts"),
        )
        .expect("json");
        assert_eq!(counts["totals"]["messages"], json!(total));
        for table in Table::ALL {
            let text = fs::read_to_string(
                dir.path()
                    .join("expected")
                    .join(format!("{}.jsonl", table.name())),
            )
            .expect("table file");
            let rows: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("json"))
                .collect();
            let expected_rows: u64 = ["acme", "globex", "initech"]
                .iter()
                .map(|t| {
                    counts["final_rows"][table.name()][t]
                        .as_u64()
                        .expect("count")
                })
                .sum();
            assert_eq!(rows.len() as u64, expected_rows);
            assert!(
                rows.iter()
                    .all(|r| r["tenant"].is_string() && r["row"].is_object())
            );
        }
    }
}

#[cfg(test)]
mod kafka_tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message as _;
    use rdkafka::mocking::MockCluster;

    use super::super::{Generator, GeneratorConfig};
    use super::*;

    type Payload = Option<Vec<u8>>;
    /// (topic, key, value) of one Kafka message.
    type Record = (String, Payload, Payload);

    #[tokio::test]
    async fn produces_every_message_to_an_in_process_mock_cluster() {
        // librdkafka's in-process mock broker (loopback only). It has no CreateTopics API,
        // so topics are pre-created, which also exercises the "already exists" path.
        let cluster = MockCluster::new(1).expect("mock cluster");
        let brokers = cluster.bootstrap_servers();
        let config = GeneratorConfig {
            customers: 10,
            products: 5,
            orders: 10,
            ..GeneratorConfig::default()
        };
        for topic in config.topics() {
            cluster.create_topic(&topic, 3, 1).expect("topic");
        }
        let messages: Vec<CdcMessage> = Generator::new(&config).expect("valid").collect();
        let mut last = None;
        let stats = produce_to_kafka(
            &brokers,
            &HashMap::new(),
            3,
            messages.clone().into_iter(),
            |p| last = Some(p),
        )
        .await
        .expect("produced");
        assert_eq!(stats.messages, messages.len() as u64);
        assert_eq!(
            last.map(|p| (p.sent, p.delivered)),
            Some((stats.messages, stats.messages))
        );

        // Read everything back: same multiset of (topic, key, value), and per key the
        // original order (a delete's tombstone comes right after it).
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "generator-test")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        let topics = config.topics();
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topic_refs).expect("subscribe");
        let mut received: Vec<Record> = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while received.len() < messages.len() && std::time::Instant::now() < deadline {
            if let Some(result) = consumer.poll(Duration::from_millis(200)) {
                let m = result.expect("consumed");
                received.push((
                    m.topic().to_owned(),
                    m.key().map(<[u8]>::to_vec),
                    m.payload().map(<[u8]>::to_vec),
                ));
            }
        }
        assert_eq!(received.len(), messages.len());
        let per_key = |items: Vec<Record>| {
            let mut map: HashMap<(String, Option<Vec<u8>>), Vec<Payload>> = HashMap::new();
            for (topic, key, value) in items {
                map.entry((topic, key)).or_default().push(value);
            }
            map
        };
        let sent = messages
            .into_iter()
            .map(|m| (m.topic, m.key, m.value))
            .collect();
        assert_eq!(per_key(received), per_key(sent));
    }
}
