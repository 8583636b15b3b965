//! A protocol-faithful fake of StarRocks Stream Load (spec:
//! `docs`/shared reference `starrocks-stream-load.md` §9) for testing the hot-path relay:
//! an FE listener (auth, `Expect` check, 307 to a BE, `get_load_state`) and BE listener(s)
//! (header phase before the body, 100-continue, JSON/CSV parsing, Primary Key upsert/delete,
//! `merge_condition`, partial update, label state machine and eviction, version limit,
//! exact response JSON), plus fault injection and a control API.
//!
//! This file holds the library handle [`StreamLoadServer`] and does I/O (binds listeners,
//! spawns tasks). Pure logic lives in [`model`], [`parse`], [`labels`], [`response`] and
//! [`state`]; [`server`] holds the HTTP plumbing.
//!
//! Transaction Stream Load (`/api/transaction/{begin,load,prepare,commit,rollback,list}`)
//! lives in [`txn`].
//!
//! Control API (JSON, no auth, served on the FE and every BE under `/__fake/`):
//! `POST reset`, `POST tables {db,table,columns:[{name,type,nullable}],key:[..]}`,
//! `GET tables/{db}/{table}/rows`, `GET txns` (each with its server-clock times, e.g.
//! `visible_at_ms`), `GET clock` (`{now_ms, unix_ms}`: the server clock and the wall clock
//! at one instant), `GET attempts`, `GET requests` (the
//! request log: listener, method, path, label, headers without secrets, whether the body
//! was read, status), `GET|POST|DELETE faults`
//! (a [`FaultRule`]), `GET|POST limits` ([`Limits`]), `POST evict {db,label?}`,
//! `POST compact {db,table}`, `POST clock/advance {ms}`.

pub mod labels;
pub mod model;
pub mod parse;
pub mod response;
mod server;
pub mod state;
pub mod txn;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use labels::{Txn, TxnState};
pub use model::{Column, ColumnType, TableSchema};
pub use state::{Fault, FaultRule, LabelConflictMode, Limits, RequestRecord};
pub use txn::TxnResult;

/// How to start the fake.
#[derive(Debug, Clone)]
pub struct StreamLoadConfig {
    pub user: String,
    pub password: String,
    /// FE listen address (port 0 = ephemeral).
    pub fe_addr: SocketAddr,
    /// One listen address per BE (port 0 = ephemeral).
    pub be_addrs: Vec<SocketAddr>,
    /// Host the FE advertises in `Location` (default: the BE's bound IP), e.g. to
    /// reproduce an unreachable registered address.
    pub advertised_be_host: Option<String>,
    /// Also run a follower FE here (307s label-state and transaction requests to the
    /// leader, so transaction calls through it take two redirects).
    pub follower_fe_addr: Option<SocketAddr>,
    pub limits: Limits,
}

impl Default for StreamLoadConfig {
    fn default() -> Self {
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        StreamLoadConfig {
            user: "root".into(),
            password: String::new(),
            fe_addr: loopback,
            be_addrs: vec![loopback],
            advertised_be_host: None,
            follower_fe_addr: None,
            limits: Limits::default(),
        }
    }
}

/// A running fake StarRocks (FE + BEs); stops when dropped.
pub struct StreamLoadServer {
    shared: Arc<server::Shared>,
    fe_addr: SocketAddr,
    follower_addr: Option<SocketAddr>,
    be_addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl StreamLoadServer {
    /// Binds the listeners and starts serving (inside the current tokio runtime).
    pub async fn start(config: StreamLoadConfig) -> io::Result<StreamLoadServer> {
        let fe = TcpListener::bind(config.fe_addr).await?;
        let fe_addr = fe.local_addr()?;
        let mut bes = Vec::new();
        let mut be_addrs = Vec::new();
        let mut be_urls = Vec::new();
        for addr in &config.be_addrs {
            let listener = TcpListener::bind(addr).await?;
            let local = listener.local_addr()?;
            let host = config
                .advertised_be_host
                .clone()
                .unwrap_or_else(|| local.ip().to_string());
            be_urls.push(format!("http://{host}:{}", local.port()));
            be_addrs.push(local);
            bes.push(listener);
        }
        let state = state::State::new(&config.user, &config.password, config.limits);
        let shared = Arc::new(server::Shared::new(
            state,
            format!("http://{fe_addr}"),
            be_urls,
        ));
        let (shutdown, rx) = watch::channel(false);
        let mut follower_addr = None;
        let mut follower_task = None;
        if let Some(addr) = config.follower_fe_addr {
            let listener = TcpListener::bind(addr).await?;
            follower_addr = Some(listener.local_addr()?);
            follower_task = Some(tokio::spawn(server::serve(
                listener,
                shared.clone(),
                server::Role::Follower,
                rx.clone(),
            )));
        }
        let mut tasks = vec![
            tokio::spawn(server::serve(
                fe,
                shared.clone(),
                server::Role::Fe,
                rx.clone(),
            )),
            tokio::spawn(server::ticker(shared.clone(), rx.clone())),
        ];
        tasks.extend(follower_task);
        for (i, listener) in bes.into_iter().enumerate() {
            tasks.push(tokio::spawn(server::serve(
                listener,
                shared.clone(),
                server::Role::Be(i),
                rx.clone(),
            )));
        }
        Ok(StreamLoadServer {
            shared,
            fe_addr,
            follower_addr,
            be_addrs,
            shutdown,
            tasks,
        })
    }

    /// `http://127.0.0.1:<port>` of the FE.
    pub fn fe_url(&self) -> String {
        self.shared.fe_url.clone()
    }

    /// `http://127.0.0.1:<port>` of the follower FE, if configured.
    pub fn follower_url(&self) -> Option<String> {
        self.follower_addr.map(|a| format!("http://{a}"))
    }

    /// The BEs' advertised base URLs.
    pub fn be_urls(&self) -> Vec<String> {
        self.shared.be_urls.clone()
    }

    pub fn fe_addr(&self) -> SocketAddr {
        self.fe_addr
    }

    /// The BEs' bound addresses (reachable even when the advertised host is not).
    pub fn be_addrs(&self) -> Vec<SocketAddr> {
        self.be_addrs.clone()
    }

    /// Creates (or replaces) a Primary Key table, creating the database if needed.
    pub fn create_table(&self, db: &str, table: &str, schema: TableSchema) -> Result<(), String> {
        self.shared.lock().create_table(db, table, schema)
    }

    /// Visible rows in primary-key order (`None` if the table does not exist).
    pub fn rows(&self, db: &str, table: &str) -> Option<Vec<Value>> {
        self.shared.tick();
        self.shared.lock().rows(db, table)
    }

    /// Every txn still known (not evicted), oldest first.
    pub fn labels(&self) -> Vec<Txn> {
        self.shared.tick();
        self.shared.lock().txns()
    }

    /// `get_load_state` for a label (`None` if the database does not exist).
    pub fn load_state(&self, db: &str, label: &str) -> Option<&'static str> {
        self.shared.tick();
        self.shared.lock().load_state(db, label)
    }

    /// Requests seen by the FE, follower and BE listeners, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Advances the virtual clock (txn timeouts, label retention, delayed publish).
    pub fn advance_clock(&self, ms: u64) {
        self.shared.lock().clock_offset_ms += ms;
        self.shared.tick();
    }

    /// Stream-load and transaction-load attempts received per label (by the BEs).
    pub fn attempts(&self, label: &str) -> u64 {
        self.shared.lock().attempts.get(label).copied().unwrap_or(0)
    }

    pub fn set_fault(&self, rule: FaultRule) {
        self.shared.lock().faults.push(rule);
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    pub fn set_limits(&self, limits: Limits) {
        self.shared.lock().limits = limits;
    }

    pub fn limits(&self) -> Limits {
        self.shared.lock().limits.clone()
    }

    /// Evicts finished txns of `label` (or all) in `db`, as label retention would.
    pub fn evict_labels(&self, db: &str, label: Option<&str>) -> usize {
        self.shared.lock().evict_labels(db, label)
    }

    /// Runs compaction on a table (version count back to 1).
    pub fn compact(&self, db: &str, table: &str) -> bool {
        self.shared.lock().compact(db, table)
    }

    /// Stops the listeners (also done on drop).
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for StreamLoadServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}
