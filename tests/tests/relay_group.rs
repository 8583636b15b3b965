//! Several relays for one hot table. Consumer-group mode, as processes on the mock cluster:
//! two relays with one configuration elect one active relay and the other stands by; after
//! the active one is killed (SIGKILL) in the middle of its loads, the standby takes over
//! within the session timeout, resends what the ledger had pending, and the hot table ends
//! equal to `gold.order_facts` with no label committed twice. SIGTERM then stops the
//! survivor cleanly. Tenant shards (`relay.tenants`): relays serving disjoint tenants load
//! their own rows under their own ledgers, and together equal gold. On a Postgres catalog a
//! newer claim on a hot table's ledger fences the older relay.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use firn_catalog::CatalogError;
use firn_catalog::relay_ledger::{EntryState, LedgerEntry, OffsetRange, RelayLedger};
use firn_ingest::relay;
use firn_tests::Lake;
use firn_tests::relay_harness::{
    DB, TABLE, assert_no_label_committed_twice, generator, hot_differences, relay_command,
    relay_config, relay_options, server, setup, write_relay_config,
};
use firn_tests::stream_load::{StreamLoadServer, TxnState};

const ACTIVE: &str = "active: loading the hot tables";
const STANDING_BY: &str = "standing by until the election makes this relay active";

struct RelayProcess {
    child: Child,
    log: PathBuf,
}

impl RelayProcess {
    /// A relay in consumer-group mode with a 6 s session timeout.
    fn spawn(config: &Path, brokers: &str, name: &str) -> RelayProcess {
        let log = format!("{name}.log");
        let child = relay_command(config, brokers, &log)
            .env("FIRN_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
            .env("FIRN_KAFKA__PROPERTIES__HEARTBEAT_INTERVAL_MS", "1000")
            .spawn()
            .expect("start firn relay");
        let log = config.parent().expect("config directory").join(log);
        RelayProcess { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal}");
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` every 200 ms until it holds; panics with `what` and `context()` after
/// `timeout`.
async fn wait_until(
    timeout: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn committed_labels(server: &StreamLoadServer) -> usize {
    server
        .labels()
        .iter()
        .filter(|t| matches!(t.state, TxnState::Committed | TxnState::Visible))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_when_the_active_relay_is_killed() {
    let setup = setup(&generator()).await;
    let server = server().await;
    let dir = setup.lake.dir.path();
    // Small batches, so the active relay is killed with most of its loads still to do.
    let config = write_relay_config(dir, &server, "interval = \"200ms\"\nmax-batch-rows = 4");
    let brokers = &setup.source.brokers;

    let first = RelayProcess::spawn(&config, brokers, "first");
    wait_until(
        Duration::from_secs(60),
        "the first relay is active",
        || first.log().contains(ACTIVE),
        || first.log(),
    )
    .await;
    let second = RelayProcess::spawn(&config, brokers, "second");
    wait_until(
        Duration::from_secs(60),
        "the second relay stands by",
        || second.log().contains(STANDING_BY),
        || second.log(),
    )
    .await;
    wait_until(
        Duration::from_secs(60),
        "the first relay committed three loads",
        || committed_labels(&server) >= 3,
        || first.log(),
    )
    .await;
    assert!(
        !second.log().contains(ACTIVE),
        "only one relay is active at a time:\n{}",
        second.log()
    );
    assert!(
        !hot_differences(&server, &setup).is_empty(),
        "the first relay was killed before it finished"
    );
    first.signal("KILL");
    let killed_at = committed_labels(&server);

    wait_until(
        Duration::from_secs(120),
        "the hot table equals gold",
        || hot_differences(&server, &setup).is_empty(),
        || {
            format!(
                "{:#?}\n--- second relay ---\n{}",
                hot_differences(&server, &setup),
                second.log()
            )
        },
    )
    .await;
    assert!(
        second.log().contains(ACTIVE),
        "the standby took over:\n{}",
        second.log()
    );
    let committed = assert_no_label_committed_twice(&server);
    assert!(
        committed > killed_at,
        "the standby loaded the rest ({committed} labels, {killed_at} at the kill)"
    );

    // SIGTERM: the active relay finishes its loads, leaves the group and exits 0.
    let mut second = second;
    second.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.child.try_wait().expect("wait for the relay") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the relay did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}\n{}", second.log());
    assert_no_label_committed_twice(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_shards_load_their_own_tenants_and_together_equal_gold() {
    let setup = setup(&generator()).await;
    let server = server().await;
    let dir = setup.lake.dir.path();
    let shards = [&["acme"][..], &["globex", "initech"][..]];
    let mut ledger_keys = Vec::new();
    let mut served = BTreeSet::new();
    for tenants in shards {
        let list: Vec<String> = tenants.iter().map(|t| format!("\"{t}\"")).collect();
        let config = relay_config(
            dir,
            &server,
            &format!("interval = \"100ms\"\ntenants = [{}]", list.join(", ")),
            None,
        );
        let before = server.rows(DB, TABLE).unwrap_or_default().len();
        relay::run(
            &config,
            &relay_options(&setup, &config),
            &AtomicBool::new(false),
        )
        .await
        .expect("shard relay run");
        let rows = server.rows(DB, TABLE).unwrap_or_default();
        let loaded: BTreeSet<String> = rows
            .iter()
            .filter_map(|row| row["tenant"].as_str().map(str::to_string))
            .collect();
        assert!(rows.len() > before, "the shard {tenants:?} loaded rows");
        served.extend(tenants.iter().map(|t| t.to_string()));
        assert_eq!(loaded, served, "only the shards' own tenants are loaded");
        ledger_keys.push(format!("{DB}.{TABLE}[{}]", tenants.join(",")));
    }
    assert!(
        hot_differences(&server, &setup).is_empty(),
        "{:#?}",
        hot_differences(&server, &setup)
    );
    assert_no_label_committed_twice(&server);
    // Each shard has its own ledger: its batches cover only its tenants' topics.
    let config = relay_config(dir, &server, "", None);
    let ledger = RelayLedger::connect(&config.catalog_database().unwrap(), None)
        .await
        .unwrap();
    for (key, tenants) in ledger_keys.iter().zip(shards) {
        let labels = ledger.labels(key).await.unwrap();
        assert!(!labels.is_empty(), "{key} has a ledger");
        let state = ledger.load(key).await.unwrap();
        for (topic, _) in state.positions.keys() {
            assert!(
                tenants.iter().any(|t| topic.contains(&format!(".{t}."))),
                "{key} covers {topic}"
            );
        }
    }
}

/// The ledger on a Postgres catalog (what several relay hosts share): after a second relay
/// claims the hot table, the first can neither record a batch nor acknowledge one.
#[tokio::test]
async fn a_newer_claim_fences_the_older_relay_on_a_postgres_ledger() {
    let lake = Lake::postgres().await;
    let database = lake.config.catalog_database().unwrap();
    let first = RelayLedger::connect(&database, None).await.unwrap();
    let second = RelayLedger::connect(&database, None).await.unwrap();
    let key = format!("{DB}.{TABLE}");
    let entry = |seq: i64| LedgerEntry {
        hot_table: key.clone(),
        seq,
        label: format!("label-{seq}"),
        ranges: vec![OffsetRange {
            topic: "cdc.acme.shop.orders".into(),
            partition: 0,
            first: seq * 10,
            last: seq * 10 + 9,
        }],
        rows: 10,
        body: b"{}\n".to_vec(),
        state: EntryState::Pending,
    };
    let zombie = first.claim(&key).await.unwrap();
    first.record(&entry(0), &zombie).await.unwrap();
    let owner = second.claim(&key).await.unwrap();
    let seen = second.load(&key).await.unwrap();
    assert_eq!(seen.pending, vec![entry(0)]);

    let late = first.record(&entry(1), &zombie).await;
    assert!(matches!(late, Err(CatalogError::Fenced { .. })), "{late:?}");
    let late_ack = first.ack(&key, 0, None, &zombie).await;
    assert!(
        matches!(late_ack, Err(CatalogError::Fenced { .. })),
        "{late_ack:?}"
    );
    assert_eq!(second.load(&key).await.unwrap(), seen);

    second.ack(&key, 0, None, &owner).await.unwrap();
    second.record(&entry(1), &owner).await.unwrap();
    let now = second.load(&key).await.unwrap();
    assert_eq!(now.pending, vec![entry(1)]);
    assert_eq!(
        now.positions.get(&("cdc.acme.shop.orders".to_string(), 0)),
        Some(&20)
    );
}
