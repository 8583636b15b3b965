//! Label / transaction state machine of one fake database: begin with the label-conflict
//! rule, finish, publish, `get_load_state`, and retention eviction by age and count
//! (`label_keep_max_second`, `label_keep_max_num`). Pure: time is passed in as milliseconds.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TxnState {
    Prepare,
    Prepared,
    Committed,
    Visible,
    Aborted,
}

impl TxnState {
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Prepare => "PREPARE",
            TxnState::Prepared => "PREPARED",
            TxnState::Committed => "COMMITTED",
            TxnState::Visible => "VISIBLE",
            TxnState::Aborted => "ABORTED",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, TxnState::Visible | TxnState::Aborted)
    }

    pub fn is_running(self) -> bool {
        matches!(self, TxnState::Prepare | TxnState::Prepared)
    }

    /// `ExistingJobStatus` for a label conflict on a txn in this state.
    pub fn existing_job_status(self) -> &'static str {
        match self {
            TxnState::Committed | TxnState::Visible => "FINISHED",
            _ => "RUNNING",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Txn {
    pub id: i64,
    pub label: String,
    pub db: String,
    pub table: String,
    pub state: TxnState,
    pub created_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// When the txn became VISIBLE (server clock, ms): its rows are readable from then on.
    #[serde(default)]
    pub visible_at_ms: Option<u64>,
    pub body_hash: Option<String>,
    pub loaded_rows: u64,
    pub abort_reason: Option<String>,
}

/// Why a begin failed.
#[derive(Debug, Clone, PartialEq)]
pub enum BeginError {
    /// A non-aborted txn holds the label.
    LabelUsed { existing: TxnState },
    /// `current running txns on db ...`.
    TooManyRunning { running: usize, limit: usize },
}

/// Retention limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub label_keep_max_second: u64,
    pub label_keep_max_num: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            label_keep_max_second: 259_200,
            label_keep_max_num: 1000,
        }
    }
}

/// All txns of one database, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelStore {
    pub txns: Vec<Txn>,
}

impl LabelStore {
    pub fn running(&self) -> usize {
        self.txns.iter().filter(|t| t.state.is_running()).count()
    }

    /// The newest txn with this label.
    pub fn latest(&self, label: &str) -> Option<&Txn> {
        self.txns.iter().rev().find(|t| t.label == label)
    }

    pub fn get_mut(&mut self, id: i64) -> Option<&mut Txn> {
        self.txns.iter_mut().find(|t| t.id == id)
    }

    pub fn get(&self, id: i64) -> Option<&Txn> {
        self.txns.iter().find(|t| t.id == id)
    }

    /// Checks the label rule and running-txn limit, then records a PREPARE txn with `id`.
    #[allow(clippy::too_many_arguments)]
    pub fn begin(
        &mut self,
        id: i64,
        db: &str,
        table: &str,
        label: &str,
        max_running: usize,
        now_ms: u64,
    ) -> Result<(), BeginError> {
        if let Some(existing) = self
            .txns
            .iter()
            .rev()
            .find(|t| t.label == label && t.state != TxnState::Aborted)
        {
            return Err(BeginError::LabelUsed {
                existing: existing.state,
            });
        }
        let running = self.running();
        if running >= max_running {
            return Err(BeginError::TooManyRunning {
                running,
                limit: max_running,
            });
        }
        self.txns.push(Txn {
            id,
            label: label.to_string(),
            db: db.to_string(),
            table: table.to_string(),
            state: TxnState::Prepare,
            created_at_ms: now_ms,
            finished_at_ms: None,
            visible_at_ms: None,
            body_hash: None,
            loaded_rows: 0,
            abort_reason: None,
        });
        Ok(())
    }

    /// Moves a txn to `state`, stamping the finish time for final states.
    pub fn set_state(&mut self, id: i64, state: TxnState, now_ms: u64) {
        if let Some(txn) = self.get_mut(id) {
            txn.state = state;
            if state.is_finished() || state == TxnState::Committed {
                txn.finished_at_ms.get_or_insert(now_ms);
            }
            if state == TxnState::Visible {
                txn.visible_at_ms.get_or_insert(now_ms);
            }
        }
    }

    pub fn abort(&mut self, id: i64, reason: &str, now_ms: u64) {
        self.set_state(id, TxnState::Aborted, now_ms);
        if let Some(txn) = self.get_mut(id) {
            txn.abort_reason = Some(reason.to_string());
        }
    }

    /// `get_load_state`: the newest txn's state, or `UNKNOWN`.
    pub fn load_state(&self, label: &str) -> &'static str {
        self.latest(label).map_or("UNKNOWN", |t| t.state.name())
    }

    /// Evicts finished txns older than the age limit, then the oldest finished ones while
    /// the total exceeds the count limit. Returns the evicted labels.
    pub fn evict(&mut self, retention: Retention, now_ms: u64) -> Vec<String> {
        let mut evicted = Vec::new();
        let max_age_ms = retention.label_keep_max_second.saturating_mul(1000);
        self.txns.retain(|t| {
            let old = t.state.is_finished()
                && t.finished_at_ms
                    .is_some_and(|f| now_ms.saturating_sub(f) >= max_age_ms);
            if old {
                evicted.push(t.label.clone());
            }
            !old
        });
        while self.txns.len() > retention.label_keep_max_num {
            let Some(pos) = self.txns.iter().position(|t| t.state.is_finished()) else {
                break;
            };
            evicted.push(self.txns.remove(pos).label);
        }
        evicted
    }

    /// Forgets every finished txn with `label` (or all finished txns when `None`).
    pub fn evict_label(&mut self, label: Option<&str>) -> usize {
        let before = self.txns.len();
        self.txns
            .retain(|t| !(t.state.is_finished() && label.is_none_or(|l| l == t.label)));
        before - self.txns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_rule() {
        let mut s = LabelStore::default();
        s.begin(1, "d", "t", "L", 10, 0).unwrap();
        assert_eq!(
            s.begin(2, "d", "t", "L", 10, 0),
            Err(BeginError::LabelUsed {
                existing: TxnState::Prepare
            })
        );
        s.abort(1, "x", 1);
        s.begin(3, "d", "t", "L", 10, 2).unwrap();
        s.set_state(3, TxnState::Visible, 3);
        assert_eq!(s.load_state("L"), "VISIBLE");
        assert_eq!(
            s.begin(4, "d", "t", "L", 10, 4),
            Err(BeginError::LabelUsed {
                existing: TxnState::Visible
            })
        );
        assert_eq!(TxnState::Visible.existing_job_status(), "FINISHED");
        assert_eq!(s.load_state("nope"), "UNKNOWN");
    }

    #[test]
    fn visibility_is_stamped_once_after_the_commit() {
        let mut s = LabelStore::default();
        s.begin(1, "d", "t", "L", 10, 0).unwrap();
        s.set_state(1, TxnState::Committed, 5);
        assert_eq!(s.get(1).unwrap().visible_at_ms, None);
        s.set_state(1, TxnState::Visible, 8);
        s.set_state(1, TxnState::Visible, 9);
        let txn = s.get(1).unwrap();
        assert_eq!((txn.finished_at_ms, txn.visible_at_ms), (Some(5), Some(8)));
    }

    #[test]
    fn running_limit() {
        let mut s = LabelStore::default();
        s.begin(1, "d", "t", "a", 1, 0).unwrap();
        assert_eq!(
            s.begin(2, "d", "t", "b", 1, 0),
            Err(BeginError::TooManyRunning {
                running: 1,
                limit: 1
            })
        );
    }

    #[test]
    fn eviction_by_count_and_age() {
        let mut s = LabelStore::default();
        for i in 0..5 {
            s.begin(i, "d", "t", &format!("l{i}"), 10, i as u64)
                .unwrap();
            s.set_state(i, TxnState::Visible, i as u64);
        }
        s.begin(9, "d", "t", "running", 10, 9).unwrap();
        let retention = Retention {
            label_keep_max_second: 100,
            label_keep_max_num: 3,
        };
        assert_eq!(s.evict(retention, 10), vec!["l0", "l1", "l2"]);
        assert_eq!(s.load_state("l0"), "UNKNOWN");
        assert_eq!(s.evict(retention, 200_000), vec!["l3", "l4"]);
        assert_eq!(s.load_state("running"), "PREPARE");
    }
}
