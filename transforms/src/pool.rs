//! The memory pool transforms run in: greedy, except that a spilling operator keeps a floor
//! of the pool and the memory it just released. Pure bookkeeping, no I/O.
//!
//! DataFusion's greedy pool lets one partition's aggregation take the whole pool; another
//! partition that then runs out must spill, and spilling an aggregation first releases its
//! reservation, then reserves again to sort its state, and by then the greedy pool had given
//! the memory away, so the run failed with `ResourcesExhausted` instead of spilling.
//! DataFusion's fair pool avoids that by dividing the pool by every registered spilling
//! operator, busy or idle, which makes silver spill where it need not (docs/benchmarks.md).
//!
//! [`FloorPool`] charges an active spilling consumer (one that holds or just released
//! memory) at least `floor` bytes, and at least what it held before it last shrank, until it
//! next asks to grow; a grow beyond a consumer's charge succeeds only while the charges add
//! up to at most the pool. So a spilling aggregation gets back the memory it released to sort
//! its state (DataFusion reserved twice its state, so the sort fits in it), and any spilling
//! operator can reach its floor (the first batches, or merging spill files). Above that the
//! pool is first come, first served, as the greedy pool is, so a run that fits does not
//! spill. Consumers that cannot spill are charged what they hold.
//!
//! If more spilling consumers are active than floors fit in the pool, each can still grow
//! within its floor (memory then exceeds the pool by at most the floors of the extra
//! consumers), and none beyond it until some finish.

use std::collections::HashMap;
use std::sync::Mutex;

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// A greedy pool with a floor per active spilling consumer; see the module docs.
#[derive(Debug)]
pub struct FloorPool {
    limit: usize,
    floor: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    consumers: HashMap<usize, Consumer>,
    /// What every consumer is charged, added up (see [`FloorPool::charge`]).
    charged: usize,
    /// Bytes reserved, added up.
    reserved: usize,
}

#[derive(Debug, Default, Clone, Copy)]
struct Consumer {
    spills: bool,
    /// Bytes over all its reservations.
    bytes: usize,
    /// The most it held before shrinking since it last asked to grow.
    released: usize,
}

impl FloorPool {
    /// A pool of `limit` bytes that keeps `floor` bytes for each active spilling consumer.
    pub fn new(limit: usize, floor: usize) -> Self {
        FloorPool {
            limit,
            floor: floor.min(limit),
            state: Mutex::new(State::default()),
        }
    }

    /// What a consumer is charged: a spilling one that holds or just released anything at
    /// least the floor and what it released.
    fn charge(&self, c: Consumer) -> usize {
        if c.spills && (c.bytes > 0 || c.released > 0) {
            c.bytes.max(c.released).max(self.floor)
        } else {
            c.bytes
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain counters updated in one step: a panic elsewhere cannot leave
        // it half-written.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `change` to `reservation`'s consumer if `admit(consumer after, charges
    /// after)`; returns whether it did.
    fn update(
        &self,
        reservation: &MemoryReservation,
        change: impl FnOnce(&mut Consumer),
        admit: impl FnOnce(&Consumer, usize) -> bool,
    ) -> bool {
        let consumer = reservation.consumer();
        let mut state = self.state();
        let before = state
            .consumers
            .get(&consumer.id())
            .copied()
            .unwrap_or(Consumer {
                spills: consumer.can_spill(),
                ..Consumer::default()
            });
        let mut after = before;
        change(&mut after);
        let charged = state.charged - self.charge(before) + self.charge(after);
        if !admit(&after, charged) {
            return false;
        }
        state.charged = charged;
        state.reserved = state.reserved - before.bytes + after.bytes;
        state.consumers.insert(consumer.id(), after);
        true
    }
}

impl MemoryPool for FloorPool {
    fn register(&self, consumer: &MemoryConsumer) {
        self.state().consumers.insert(
            consumer.id(),
            Consumer {
                spills: consumer.can_spill(),
                ..Consumer::default()
            },
        );
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        let mut state = self.state();
        if let Some(gone) = state.consumers.remove(&consumer.id()) {
            state.charged -= self.charge(gone);
            state.reserved -= gone.bytes;
        }
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.update(reservation, |c| c.bytes += additional, |_, _| true);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.update(
            reservation,
            |c| {
                c.released = c.released.max(c.bytes);
                c.bytes = c.bytes.saturating_sub(shrink);
            },
            |_, _| true,
        );
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let (limit, floor) = (self.limit, self.floor);
        // A spilling consumer gets back what it just released, and its floor; beyond them, a
        // grow succeeds only while the charges fit in the pool.
        let admitted = self.update(
            reservation,
            |c| c.bytes += additional,
            |c, charged| (c.spills && c.bytes <= c.released.max(floor)) || charged <= limit,
        );
        // Asking to grow ends the hold on what the consumer released, granted or not.
        self.update(reservation, |c| c.released = 0, |_, _| true);
        if admitted {
            return Ok(());
        }
        let state = self.state();
        Err(DataFusionError::ResourcesExhausted(format!(
            "Failed to allocate additional {additional} bytes for {} with {} bytes already \
             allocated for this reservation - {} bytes remain available for the total pool \
             ({} bytes reserved, {} more kept for spilling operators)",
            reservation.consumer().name(),
            reservation.size(),
            limit.saturating_sub(state.charged),
            state.reserved,
            state.charged.saturating_sub(state.reserved),
        )))
    }

    fn reserved(&self) -> usize {
        self.state().reserved
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const MIB: usize = 1024 * 1024;

    fn pool(limit: usize, floor: usize) -> Arc<dyn MemoryPool> {
        Arc::new(FloorPool::new(limit, floor))
    }

    fn consumer(pool: &Arc<dyn MemoryPool>, name: &str, spills: bool) -> MemoryReservation {
        MemoryConsumer::new(name)
            .with_can_spill(spills)
            .register(pool)
    }

    /// The failure of the greedy pool: one spilling consumer takes everything it can, and
    /// another one can still get its floor (to sort and write its state), but no more.
    #[test]
    fn a_greedy_consumer_leaves_the_floor_of_another_active_one() {
        let pool = pool(64 * MIB, 8 * MIB);
        let a = consumer(&pool, "a", true);
        let b = consumer(&pool, "b", true);
        b.try_grow(1024).unwrap();
        // `a` may take all but `b`'s floor.
        a.try_grow(56 * MIB).unwrap();
        assert!(a.try_grow(1).is_err());
        // `b` grows within its floor whatever `a` holds, and not beyond.
        b.try_grow(8 * MIB - 1024).unwrap();
        let err = b.try_grow(1).unwrap_err();
        assert!(
            matches!(err, DataFusionError::ResourcesExhausted(_)),
            "{err}"
        );
        assert_eq!(pool.reserved(), 64 * MIB);
        // What `a` releases stays its own until it next asks to grow, as a spilling
        // aggregation releases its state and then reserves memory to sort it ...
        a.shrink(40 * MIB);
        assert!(b.try_grow(MIB).is_err());
        a.try_grow(30 * MIB).unwrap();
        // ... and what it did not take back is first come, first served.
        b.try_grow(10 * MIB).unwrap();
        assert!(a.try_grow(1).is_err());
        assert_eq!(pool.reserved(), 64 * MIB);
    }

    /// An idle spilling consumer (registered, nothing reserved) keeps no floor, so a plan's
    /// many registered operators do not divide the pool as the fair pool does.
    #[test]
    fn idle_consumers_and_those_that_cannot_spill_keep_no_floor() {
        let pool = pool(64 * MIB, 8 * MIB);
        let _idle: Vec<_> = (0..10)
            .map(|i| consumer(&pool, &format!("idle {i}"), true))
            .collect();
        let fixed = consumer(&pool, "fixed", false);
        let a = consumer(&pool, "a", true);
        fixed.try_grow(1024).unwrap();
        a.try_grow(64 * MIB - 1024).unwrap();
        assert!(fixed.try_grow(1).is_err());
        // A consumer that is done gives everything back.
        drop(a);
        fixed.try_grow(64 * MIB - 1024).unwrap();
        assert_eq!(pool.reserved(), 64 * MIB);
    }

    /// Reservations of one consumer (DataFusion splits them) share its floor, and dropping
    /// them returns everything.
    #[test]
    fn reservations_of_one_consumer_share_its_floor_and_return_it() {
        let pool = pool(32 * MIB, 8 * MIB);
        let a = consumer(&pool, "a", true);
        let other = consumer(&pool, "other", true);
        a.try_grow(MIB).unwrap();
        let merge = a.new_empty();
        merge.try_grow(7 * MIB).unwrap();
        other.try_grow(24 * MIB).unwrap();
        assert!(merge.try_grow(1).is_err());
        drop(merge);
        drop(a);
        assert_eq!(pool.reserved(), 24 * MIB);
        other.try_grow(8 * MIB).unwrap();
        drop(other);
        assert_eq!(pool.reserved(), 0);
    }

    /// More active spilling consumers than floors fit: each still grows within its floor,
    /// none beyond it.
    #[test]
    fn oversubscribed_floors_still_let_each_consumer_reach_its_own() {
        let pool = pool(16 * MIB, 8 * MIB);
        let consumers: Vec<_> = (0..3)
            .map(|i| consumer(&pool, &format!("c{i}"), true))
            .collect();
        for c in &consumers {
            c.try_grow(1).unwrap();
        }
        for c in &consumers {
            c.try_grow(8 * MIB - 1).unwrap();
            assert!(c.try_grow(1).is_err());
        }
    }
}
