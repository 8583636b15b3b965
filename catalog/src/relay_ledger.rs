//! The relay ledger: the durable record of every Stream Load batch of `firn relay`, kept in
//! the catalog database (SQLite or Postgres, beside the Iceberg catalog tables). Does I/O
//! (SQL).
//!
//! A batch is recorded — label, Kafka offset ranges, body bytes — *before* its first send,
//! in the same transaction that moves the hot table's resume positions past its ranges.
//! After a crash every `pending` entry is sent again with the same label and the same bytes,
//! so StarRocks either answers that the label is already loaded or loads it once; the
//! consumer resumes after the recorded ranges. An acknowledged entry drops its body; only
//! the newest [`KEEP_ACKED`] acknowledged entries per table are kept, for audits.
//!
//! Tables (created if missing): `firn_relay_ledger` (one row per batch),
//! `firn_relay_positions` (next Kafka offset per hot table and partition) and
//! `firn_relay_epochs` (a random id per hot table, created with its first entry, that labels
//! carry so a fresh ledger never collides with labels an older one used).
//!
//! # One writer per hot table
//!
//! A relay [claims](RelayLedger::claim) a hot table's ledger on start, which stores a fresh
//! owner token in `firn_relay_owners`. Every [`record`](RelayLedger::record) and
//! [`ack`](RelayLedger::ack) checks the token in its own transaction (an `UPDATE` of the
//! owner row, which also serialises it against a claim on Postgres), so once a newer relay
//! has claimed the table, a zombie — a process paused past a takeover, or one whose
//! database writes were still in flight when it was killed — fails with
//! [`CatalogError::Fenced`] and can neither add a stale batch nor move positions. A write
//! that committed before the claim is seen by the claimer's [`load`](RelayLedger::load),
//! which runs after the claim.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

use crate::config::{CatalogDatabase, Secret};
use crate::error::{CatalogError, Result};

/// Acknowledged entries kept per hot table (older ones are deleted).
pub const KEEP_ACKED: i64 = 1000;

/// A topic-partition's offsets covered by one batch, both ends included.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OffsetRange {
    pub topic: String,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
}

/// Whether a batch's load has been acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    Pending,
    Acked,
}

impl EntryState {
    fn as_str(self) -> &'static str {
        match self {
            EntryState::Pending => "pending",
            EntryState::Acked => "acked",
        }
    }
}

/// One batch of one hot table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// `database.table` in StarRocks.
    pub hot_table: String,
    /// Per table, increasing.
    pub seq: i64,
    pub label: String,
    pub ranges: Vec<OffsetRange>,
    pub rows: i64,
    /// The exact body sent (empty once acknowledged).
    pub body: Vec<u8>,
    pub state: EntryState,
}

/// What a hot table's ledger holds on start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerState {
    /// Next offset to read per (topic, partition): everything before is in a recorded batch.
    pub positions: BTreeMap<(String, i32), i64>,
    /// Entries not acknowledged yet, oldest first.
    pub pending: Vec<LedgerEntry>,
    /// The sequence number the next entry gets.
    pub next_seq: i64,
}

/// (seq, label, ranges JSON, rows, body) of a pending ledger row.
type PendingRow = (i64, String, String, i64, Option<Vec<u8>>);

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

macro_rules! on_pool {
    ($ledger:expr, $pool:ident => $body:expr) => {
        match &$ledger.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// The ledger store; see the module docs.
#[derive(Debug, Clone)]
pub struct RelayLedger {
    pool: Pool,
}

fn ledger_table(body_type: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS firn_relay_ledger (
        hot_table VARCHAR(255) NOT NULL,
        seq BIGINT NOT NULL,
        label VARCHAR(128) NOT NULL,
        ranges TEXT NOT NULL,
        state VARCHAR(16) NOT NULL,
        row_count BIGINT NOT NULL,
        body {body_type},
        dead_letters TEXT,
        created_at_ms BIGINT NOT NULL,
        acked_at_ms BIGINT,
        PRIMARY KEY (hot_table, seq))"
    )
}

const POSITIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS firn_relay_positions (
    hot_table VARCHAR(255) NOT NULL,
    topic VARCHAR(255) NOT NULL,
    kafka_partition INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (hot_table, topic, kafka_partition))";

const EPOCHS_TABLE: &str = "CREATE TABLE IF NOT EXISTS firn_relay_epochs (
    hot_table VARCHAR(255) NOT NULL PRIMARY KEY,
    epoch VARCHAR(64) NOT NULL)";

const OWNERS_TABLE: &str = "CREATE TABLE IF NOT EXISTS firn_relay_owners (
    hot_table VARCHAR(255) NOT NULL PRIMARY KEY,
    owner VARCHAR(64) NOT NULL,
    claimed_at_ms BIGINT NOT NULL)";

/// Touches the owner row only when `owner` still holds it: one affected row means the
/// caller still owns the table (and, on Postgres, holds the row lock until it commits).
const CHECK_OWNER: &str = "UPDATE firn_relay_owners SET claimed_at_ms = claimed_at_ms
    WHERE hot_table = $1 AND owner = $2";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Whether `owner` still holds `hot_table`, checked inside the transaction `$tx`.
macro_rules! owns {
    ($tx:expr, $hot_table:expr, $owner:expr) => {
        sqlx::query(CHECK_OWNER)
            .bind($hot_table)
            .bind($owner)
            .execute(&mut *$tx)
            .await?
            .rows_affected()
            == 1
    };
}

fn fenced_unless(owned: bool, hot_table: &str) -> Result<()> {
    if owned {
        Ok(())
    } else {
        Err(CatalogError::Fenced {
            table: hot_table.to_string(),
        })
    }
}

/// Runs `$statements` (with the open transaction as `$tx`) in one transaction on either
/// pool, after checking inside it that `$owner` still holds `$hot_table`; a lost claim
/// commits nothing and is [`CatalogError::Fenced`]. `$what` names the operation in errors.
macro_rules! in_owned_tx {
    ($ledger:expr, $hot_table:expr, $owner:expr, $what:expr, |$tx:ident| $statements:block) => {{
        let outcome: std::result::Result<bool, sqlx::Error> = on_pool!($ledger, pool => {
            async {
                let mut $tx = pool.begin().await?;
                if !owns!($tx, $hot_table, $owner) {
                    return Ok(false);
                }
                $statements
                $tx.commit().await.map(|()| true)
            }
            .await
        });
        fenced_unless(outcome.map_err(CatalogError::db($what))?, $hot_table)
    }};
}

impl RelayLedger {
    /// Connects to the catalog database and creates the ledger tables if missing.
    pub async fn connect(database: &CatalogDatabase, password: Option<&Secret>) -> Result<Self> {
        let connect_error = |source: sqlx::Error| CatalogError::Database {
            operation: "connect the relay ledger",
            source: sqlx::Error::Configuration(
                format!("cannot connect to the catalog database {database}: {source}").into(),
            ),
        };
        let (pool, body_type) = match database {
            CatalogDatabase::Sqlite(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|err| connect_error(sqlx::Error::Io(err)))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(30));
                let pool = SqlitePoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?;
                (Pool::Sqlite(pool), "BLOB")
            }
            CatalogDatabase::Postgres(url) => {
                let mut options: PgConnectOptions = url.parse().map_err(connect_error)?;
                if let Some(password) = password {
                    options = options.password(password.expose());
                }
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?;
                (Pool::Postgres(pool), "BYTEA")
            }
        };
        let ledger = RelayLedger { pool };
        for statement in [
            ledger_table(body_type),
            POSITIONS_TABLE.into(),
            EPOCHS_TABLE.into(),
            OWNERS_TABLE.into(),
        ] {
            on_pool!(ledger, pool => sqlx::query(&statement).execute(pool).await.map(|_| ()))
                .map_err(CatalogError::db("create the relay ledger"))?;
        }
        Ok(ledger)
    }

    /// Makes the caller the only writer of `hot_table`'s ledger (see the module docs) and
    /// returns its owner token, which [`record`](Self::record) and [`ack`](Self::ack) take.
    pub async fn claim(&self, hot_table: &str) -> Result<String> {
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let upsert = "INSERT INTO firn_relay_owners (hot_table, owner, claimed_at_ms)
            VALUES ($1, $2, $3)
            ON CONFLICT (hot_table) DO UPDATE
            SET owner = excluded.owner, claimed_at_ms = excluded.claimed_at_ms";
        on_pool!(self, pool => sqlx::query(upsert).bind(hot_table).bind(&owner).bind(now_ms()).execute(pool).await.map(|_| ()))
            .map_err(CatalogError::db("claim the relay ledger"))?;
        Ok(owner)
    }

    /// The hot table's epoch: the stored one, or `candidate` if the table has none yet.
    pub async fn epoch(&self, hot_table: &str, candidate: &str) -> Result<String> {
        let insert = "INSERT INTO firn_relay_epochs (hot_table, epoch) VALUES ($1, $2)
            ON CONFLICT DO NOTHING";
        on_pool!(self, pool => sqlx::query(insert).bind(hot_table).bind(candidate).execute(pool).await.map(|_| ()))
            .map_err(CatalogError::db("record the relay epoch"))?;
        let select = "SELECT epoch FROM firn_relay_epochs WHERE hot_table = $1";
        let (epoch,): (String,) =
            on_pool!(self, pool => sqlx::query_as(select).bind(hot_table).fetch_one(pool).await)
                .map_err(CatalogError::db("read the relay epoch"))?;
        Ok(epoch)
    }

    /// The resume positions, the pending entries and the next sequence number of a table.
    pub async fn load(&self, hot_table: &str) -> Result<LedgerState> {
        let positions: Vec<(String, i32, i64)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT topic, kafka_partition, next_offset FROM firn_relay_positions WHERE hot_table = $1")
            .bind(hot_table).fetch_all(pool).await)
            .map_err(CatalogError::db("read relay positions"))?;
        let pending: Vec<PendingRow> = on_pool!(self, pool => sqlx::query_as(
            "SELECT seq, label, ranges, row_count, body FROM firn_relay_ledger
             WHERE hot_table = $1 AND state = 'pending' ORDER BY seq")
            .bind(hot_table).fetch_all(pool).await)
        .map_err(CatalogError::db("read pending relay batches"))?;
        let (max_seq,): (Option<i64>,) = on_pool!(self, pool => sqlx::query_as(
            "SELECT MAX(seq) FROM firn_relay_ledger WHERE hot_table = $1")
            .bind(hot_table).fetch_one(pool).await)
        .map_err(CatalogError::db("read the relay sequence"))?;
        let mut entries = Vec::with_capacity(pending.len());
        for (seq, label, ranges, rows, body) in pending {
            let ranges: Vec<OffsetRange> =
                serde_json::from_str(&ranges).map_err(|err| CatalogError::InvalidOperation {
                    operation: "read the relay ledger",
                    table: hot_table.to_string(),
                    message: format!("entry {seq} has unreadable ranges: {err}"),
                })?;
            entries.push(LedgerEntry {
                hot_table: hot_table.to_string(),
                seq,
                label,
                ranges,
                rows,
                body: body.unwrap_or_default(),
                state: EntryState::Pending,
            });
        }
        Ok(LedgerState {
            positions: positions
                .into_iter()
                .map(|(topic, partition, next)| ((topic, partition), next))
                .collect(),
            pending: entries,
            next_seq: max_seq.map_or(0, |seq| seq + 1),
        })
    }

    /// Records a batch and moves the table's positions past its ranges, atomically, if
    /// `owner` still holds the table ([`CatalogError::Fenced`] otherwise). An entry recorded
    /// as `Acked` (a batch with nothing to load) only moves the positions.
    pub async fn record(&self, entry: &LedgerEntry, owner: &str) -> Result<()> {
        let ranges =
            serde_json::to_string(&entry.ranges).map_err(|err| CatalogError::InvalidOperation {
                operation: "record a relay batch",
                table: entry.hot_table.clone(),
                message: err.to_string(),
            })?;
        let body = (entry.state == EntryState::Pending).then_some(entry.body.as_slice());
        let acked_at = (entry.state == EntryState::Acked).then(now_ms);
        let insert = "INSERT INTO firn_relay_ledger
            (hot_table, seq, label, ranges, state, row_count, body, created_at_ms, acked_at_ms)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        let position =
            "INSERT INTO firn_relay_positions (hot_table, topic, kafka_partition, next_offset)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (hot_table, topic, kafka_partition)
            DO UPDATE SET next_offset = excluded.next_offset";
        in_owned_tx!(
            self,
            &entry.hot_table,
            owner,
            "record a relay batch",
            |tx| {
                sqlx::query(insert)
                    .bind(&entry.hot_table)
                    .bind(entry.seq)
                    .bind(&entry.label)
                    .bind(&ranges)
                    .bind(entry.state.as_str())
                    .bind(entry.rows)
                    .bind(body)
                    .bind(now_ms())
                    .bind(acked_at)
                    .execute(&mut *tx)
                    .await?;
                for range in &entry.ranges {
                    sqlx::query(position)
                        .bind(&entry.hot_table)
                        .bind(&range.topic)
                        .bind(range.partition)
                        .bind(range.last + 1)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        )
    }

    /// Marks an entry acknowledged if `owner` still holds the table
    /// ([`CatalogError::Fenced`] otherwise), drops its body, keeps `dead_letters` (JSON text
    /// of rows StarRocks refused) and prunes old acknowledged entries.
    pub async fn ack(
        &self,
        hot_table: &str,
        seq: i64,
        dead_letters: Option<&str>,
        owner: &str,
    ) -> Result<()> {
        let update = "UPDATE firn_relay_ledger
            SET state = 'acked', body = NULL, dead_letters = $1, acked_at_ms = $2
            WHERE hot_table = $3 AND seq = $4";
        let prune = "DELETE FROM firn_relay_ledger
            WHERE hot_table = $1 AND state = 'acked' AND seq < $2";
        in_owned_tx!(self, hot_table, owner, "acknowledge a relay batch", |tx| {
            sqlx::query(update)
                .bind(dead_letters)
                .bind(now_ms())
                .bind(hot_table)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            sqlx::query(prune)
                .bind(hot_table)
                .bind(seq - KEEP_ACKED)
                .execute(&mut *tx)
                .await?;
        })
    }

    /// Every entry's (seq, label, state) for a table, oldest first (audits and tests).
    pub async fn labels(&self, hot_table: &str) -> Result<Vec<(i64, String, String)>> {
        on_pool!(self, pool => sqlx::query_as(
            "SELECT seq, label, state FROM firn_relay_ledger WHERE hot_table = $1 ORDER BY seq")
            .bind(hot_table).fetch_all(pool).await)
        .map_err(CatalogError::db("list relay batches"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, last: i64, state: EntryState) -> LedgerEntry {
        LedgerEntry {
            hot_table: "firn_hot.order_facts".into(),
            seq,
            label: format!("l{seq}"),
            ranges: vec![OffsetRange {
                topic: "cdc".into(),
                partition: 0,
                first: last - 1,
                last,
            }],
            rows: 2,
            body: b"{\"a\":1}\n".to_vec(),
            state,
        }
    }

    #[tokio::test]
    async fn pending_entries_and_positions_survive_a_reconnect() {
        let dir = tempfile::tempdir().unwrap();
        let database = CatalogDatabase::Sqlite(dir.path().join("catalog.db"));
        let ledger = RelayLedger::connect(&database, None).await.unwrap();
        let table = "firn_hot.order_facts";
        assert_eq!(ledger.load(table).await.unwrap(), LedgerState::default());
        assert_eq!(ledger.epoch(table, "e1").await.unwrap(), "e1");
        assert_eq!(ledger.epoch(table, "e2").await.unwrap(), "e1");
        let owner = ledger.claim(table).await.unwrap();
        ledger
            .record(&entry(0, 1, EntryState::Pending), &owner)
            .await
            .unwrap();
        ledger.ack(table, 0, Some("[]"), &owner).await.unwrap();
        ledger
            .record(&entry(1, 5, EntryState::Acked), &owner)
            .await
            .unwrap();
        ledger
            .record(&entry(2, 9, EntryState::Pending), &owner)
            .await
            .unwrap();

        let again = RelayLedger::connect(&database, None).await.unwrap();
        let state = again.load(table).await.unwrap();
        assert_eq!(
            state.positions,
            BTreeMap::from([(("cdc".to_string(), 0), 10)])
        );
        assert_eq!(state.pending, vec![entry(2, 9, EntryState::Pending)]);
        assert_eq!(state.next_seq, 3);
        assert_eq!(again.labels(table).await.unwrap().len(), 3);
        // Another table's ledger is separate.
        assert_eq!(again.load("firn_hot.other").await.unwrap().next_seq, 0);
    }

    /// A relay that claimed the table after another one fences the first: the zombie can
    /// neither record a batch nor acknowledge one, and the claimer's state is untouched.
    #[tokio::test]
    async fn a_newer_claim_fences_the_older_writer() {
        let dir = tempfile::tempdir().unwrap();
        let database = CatalogDatabase::Sqlite(dir.path().join("catalog.db"));
        let ledger = RelayLedger::connect(&database, None).await.unwrap();
        let table = "firn_hot.order_facts";
        let zombie = ledger.claim(table).await.unwrap();
        ledger
            .record(&entry(0, 1, EntryState::Pending), &zombie)
            .await
            .unwrap();
        let owner = ledger.claim(table).await.unwrap();
        assert_ne!(owner, zombie);
        let before = ledger.load(table).await.unwrap();

        let late = ledger
            .record(&entry(1, 5, EntryState::Pending), &zombie)
            .await;
        assert!(matches!(late, Err(CatalogError::Fenced { .. })), "{late:?}");
        let late_ack = ledger.ack(table, 0, None, &zombie).await;
        assert!(
            matches!(late_ack, Err(CatalogError::Fenced { .. })),
            "{late_ack:?}"
        );
        assert!(!late.unwrap_err().is_retryable());
        assert_eq!(ledger.load(table).await.unwrap(), before);

        // The new owner goes on from what the zombie recorded before the claim.
        assert_eq!(before.pending, vec![entry(0, 1, EntryState::Pending)]);
        ledger.ack(table, 0, None, &owner).await.unwrap();
        ledger
            .record(&entry(1, 5, EntryState::Pending), &owner)
            .await
            .unwrap();
        assert_eq!(ledger.load(table).await.unwrap().next_seq, 2);
        // Another table's claim is separate.
        let other = ledger.claim("firn_hot.other").await.unwrap();
        assert!(ledger.ack(table, 1, None, &other).await.is_err());
    }
}
