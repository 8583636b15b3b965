//! A real Kafka-protocol broker process for end-to-end tests: tansu 0.6.0 (built with
//! `--features dynostore` by `tests/scripts/tansu.sh`, path in `FIRN_TEST_TANSU`), in-memory
//! storage, on a free loopback port, one broker per test. Does I/O (subprocess, sockets).
//!
//! Client rules from the broker's quirks: topics are created explicitly (no auto-create),
//! consumer groups use the classic protocol with one assignment strategy and a unique group
//! id per test, and `session.timeout.ms` stays at 6 s or more (a joining follower is held
//! 3 s). ListOffsets (`fetch_watermarks`) is wrong on in-memory storage, so tests assert on
//! what landed in bronze, never on watermarks.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// A running tansu broker; killed when dropped.
pub struct TansuBroker {
    child: Child,
    pub bootstrap: String,
}

/// The tansu binary `make test-deps` built.
pub fn tansu_binary() -> String {
    std::env::var("FIRN_TEST_TANSU").unwrap_or_else(|_| {
        panic!(
            "FIRN_TEST_TANSU is not set: run `make test` (or `tests/scripts/tansu.sh install` and \
             export FIRN_TEST_TANSU=$(tests/scripts/tansu.sh path))"
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("pick a free port")
}

impl TansuBroker {
    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> TansuBroker {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        // An empty working directory: tansu reads a `.env` file from it at start.
        let cwd = tempfile::tempdir().expect("temp dir for tansu");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .current_dir(cwd.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let broker = TansuBroker {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&broker.bootstrap).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// Creates topics with `partitions` partitions each.
    pub async fn create_topics(&self, topics: &[String], partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("admin client");
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        let results = admin
            .create_topics(&new, &AdminOptions::new())
            .await
            .expect("create topics");
        for result in results {
            result.expect("topic created");
        }
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
