//! Consumer-group mode of `firn relay`: active/standby. Does I/O (Kafka).
//!
//! A relay keeps the current rows of every input table in memory and recomputes gold keys
//! that span topics (an order and its items live in different topics and partitions), so
//! the unit a relay can own is the whole set of topics, not a partition. Several relay
//! processes with the same configuration therefore elect one active relay through a
//! consumer group: each joins `<kafka.group-id>-relay-active`, subscribed to the *anchor*
//! (partition 0 of the first topic the relay reads, by name), and the member the group
//! gives that partition is the active one. The others stand by; when the active one leaves
//! (SIGTERM: at once) or dies (after the group's session timeout), the group hands the
//! anchor to a standby, which rebuilds its state from the topics and resends what the
//! ledger has pending under the same labels. The sticky cooperative assignor keeps the
//! anchor where it is when standbys join.
//!
//! A relay that loses the anchor while running (paused past the session timeout) stops at
//! once, without loading what it was building, and stands by again. The anchor topic's
//! records are never read by this consumer: its partitions are paused on assignment.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use firn_catalog::config::{KafkaAssignment, PipelineConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::IngestMetrics;
use crate::relay::{RelayError, RelayOptions, RelayReport};
use crate::source::{KafkaSource, SourceEvent, SourceOptions, TopicPartition};

/// Suffix of `kafka.group-id` that names the election group.
pub const ELECTION_GROUP_SUFFIX: &str = "-relay-active";
const ELECTION_POLL: Duration = Duration::from_millis(200);
const STANDBY_CHECK: Duration = Duration::from_millis(200);

/// The anchor among the topics a relay reads: partition 0 of the first by name.
pub fn anchor<'a>(topics: impl IntoIterator<Item = &'a String>) -> Option<TopicPartition> {
    topics.into_iter().min().map(|topic| (topic.clone(), 0))
}

/// A librdkafka topic pattern matching exactly `topic`.
fn exact_pattern(topic: &str) -> String {
    let mut pattern = String::from("^");
    for c in topic.chars() {
        if !c.is_ascii_alphanumeric() && c != '_' && c != '-' {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('$');
    pattern
}

/// Membership in the election group, polled by a background task.
struct Election {
    active: watch::Receiver<bool>,
    closing: Arc<AtomicBool>,
    poller: JoinHandle<Result<(), RelayError>>,
}

impl Election {
    fn join(
        config: &PipelineConfig,
        brokers: &str,
        anchor: TopicPartition,
        shard: Option<String>,
    ) -> Result<Self, RelayError> {
        let mut kafka = config.kafka.clone();
        // Each tenant shard elects its own active relay.
        kafka.group_id = match shard {
            None => format!("{}{ELECTION_GROUP_SUFFIX}", config.kafka.group_id),
            Some(shard) => format!("{}{ELECTION_GROUP_SUFFIX}[{shard}]", config.kafka.group_id),
        };
        // Sticky: a standby that joins must not take the anchor from the active relay.
        kafka
            .properties
            .entry("partition.assignment.strategy".into())
            .or_insert_with(|| "cooperative-sticky".into());
        let options = SourceOptions {
            brokers: brokers.to_string(),
            patterns: vec![exact_pattern(&anchor.0)],
            client_id: format!("firn-relay-{}", std::process::id()),
            assignment: KafkaAssignment::Group,
        };
        let resume: crate::source::ResumeFn<()> =
            Arc::new(|partitions: &[TopicPartition]| Ok((vec![None; partitions.len()], ())));
        let source = KafkaSource::start(&kafka, &options, resume, IngestMetrics::unregistered())
            .map_err(|err| RelayError::Task(format!("join the relay election group: {err}")))?;
        tracing::info!(group = %kafka.group_id, anchor = %format!("{}/{}", anchor.0, anchor.1), "joined the relay election group");
        let (tx, active) = watch::channel(false);
        let closing = Arc::new(AtomicBool::new(false));
        let poller = tokio::spawn(poll_election(source, anchor, tx, closing.clone()));
        Ok(Election {
            active,
            closing,
            poller,
        })
    }

    /// Waits until this process is active (`true`) or `stop` is set (`false`).
    async fn wait_active(&mut self, stop: &AtomicBool) -> Result<bool, RelayError> {
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(false);
            }
            if *self.active.borrow_and_update() {
                return Ok(true);
            }
            tokio::select! {
                changed = self.active.changed() => {
                    if changed.is_err() {
                        return Err(self.poller_failure().await);
                    }
                }
                () = tokio::time::sleep(STANDBY_CHECK) => {}
            }
        }
    }

    /// Resolves when this process is no longer active.
    async fn lost(&mut self) -> Result<(), RelayError> {
        while *self.active.borrow_and_update() {
            if self.active.changed().await.is_err() {
                return Err(self.poller_failure().await);
            }
        }
        Ok(())
    }

    async fn poller_failure(&mut self) -> RelayError {
        match (&mut self.poller).await {
            Ok(Err(err)) => err,
            Ok(Ok(())) => RelayError::Task("the relay election consumer stopped".into()),
            Err(err) => RelayError::Task(format!("the relay election task failed: {err}")),
        }
    }

    /// Leaves the group, so a standby takes over at once.
    async fn leave(self) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = self.poller.await;
    }
}

async fn poll_election(
    source: KafkaSource<()>,
    anchor: TopicPartition,
    active: watch::Sender<bool>,
    closing: Arc<AtomicBool>,
) -> Result<(), RelayError> {
    let failed =
        |err: crate::error::IngestError| RelayError::Task(format!("relay election: {err}"));
    while !closing.load(Ordering::SeqCst) {
        for event in source.poll(64, ELECTION_POLL).await.map_err(failed)? {
            match event {
                SourceEvent::Assigned { partitions, .. } => {
                    source.set_paused(&partitions, true).map_err(failed)?;
                    if partitions.contains(&anchor) {
                        tracing::info!("this relay holds the anchor partition: becoming active");
                        active.send_replace(true);
                    }
                }
                SourceEvent::Revoked(partitions) => {
                    if partitions.contains(&anchor) {
                        tracing::warn!("the anchor partition was revoked: no longer active");
                        active.send_replace(false);
                    }
                }
                // Fetched before the pause took effect; the relay's own consumer reads them.
                SourceEvent::Record(_) => {}
            }
        }
    }
    active.send_replace(false);
    source.close().await;
    Ok(())
}

/// Runs the relay in consumer-group mode: stands by until the election makes this process
/// active, then runs [`super::run`] until `stop`; stands by again if the election moves on.
pub async fn run_elected(
    config: &PipelineConfig,
    options: &RelayOptions,
    stop: &AtomicBool,
) -> Result<RelayReport, RelayError> {
    let tables = super::hot_tables(config, options).await?;
    let inputs: Vec<String> = tables
        .iter()
        .flat_map(|t| t.model.inputs.iter().map(|i| i.table.clone()))
        .collect();
    let routes = {
        let consumer = Arc::new(super::source::consumer(config, &options.brokers)?);
        let config = config.clone();
        let target = options.target.clone();
        tokio::task::spawn_blocking(move || {
            super::source::routes(&consumer, &config, &target, &inputs)
        })
        .await
        .map_err(|err| RelayError::Task(err.to_string()))??
    };
    let anchor = anchor(routes.keys()).ok_or_else(|| {
        RelayError::Config("no topic of the relayed models' inputs exists yet".into())
    })?;
    let mut election = Election::join(config, &options.brokers, anchor, options.target.shard())?;
    loop {
        options.metrics.active.set(0);
        if let Some(health) = &options.health {
            // A standby is healthy and ready: it takes over when the active relay goes.
            health.set_ready(true);
        }
        tracing::info!("standing by until the election makes this relay active");
        if !election.wait_active(stop).await? {
            election.leave().await;
            return Ok(RelayReport::default());
        }
        options.metrics.active.set(1);
        tracing::info!("active: loading the hot tables");
        tokio::select! {
            result = super::run(config, options, stop) => {
                options.metrics.active.set(0);
                election.leave().await;
                return result;
            }
            lost = election.lost() => {
                lost?;
                tracing::warn!(
                    "another relay took over (this one was unresponsive past the session \
                     timeout): stopped without loading; it resends what was pending"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_anchor_is_partition_zero_of_the_first_topic() {
        let topics = [
            "dbz.globex.orders".to_string(),
            "dbz.acme.orders".to_string(),
        ];
        assert_eq!(anchor(&topics), Some(("dbz.acme.orders".to_string(), 0)));
        assert_eq!(anchor(&[] as &[String]), None);
    }

    #[test]
    fn the_pattern_matches_only_the_anchor_topic() {
        assert_eq!(
            exact_pattern("dbz.acme.order_items"),
            r"^dbz\.acme\.order_items$"
        );
    }
}
