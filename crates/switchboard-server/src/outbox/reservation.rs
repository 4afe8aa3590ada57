//! A connection's share of the server's memory budget for its queued bytes.
//!
//! Every byte queued for a connection beyond a small allowance is covered by budget the
//! connection holds, taken in steps: a queue growing past what it holds takes the next
//! step from the shared account (or is refused, as if full, when the account has no
//! room), and a queue draining gives steps back only once it holds two steps more than it
//! needs, so that a queue going up and down around a step's edge does not touch the
//! shared account per message. A writer that goes idle gives back everything, and so
//! does a connection that closes. Between steps, queuing costs one plain load.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::budget::MemoryBudget;

/// Queued bytes every connection may hold without taking budget: enough for replies and
/// a reader that keeps up, so that a connection that keeps up never touches the shared
/// account, and a server whose budget is full of state still answers everyone.
pub(crate) const ALLOWANCE: usize = 64 * 1024;

/// What a connection takes from (and gives back to) the shared account at a time.
pub(crate) const STEP: usize = 1024 * 1024;

#[derive(Debug)]
pub(super) struct Reservation {
    /// Queued bytes covered: the allowance plus what is held from the budget. Its
    /// changes are serialised by a lock its holder lends (`changing`, taken only at step
    /// edges), which lives beside it rather than in it: in here its padding would make
    /// every connection's state larger.
    covered: AtomicUsize,
}

impl Reservation {
    pub fn new() -> Self {
        Reservation {
            covered: AtomicUsize::new(ALLOWANCE),
        }
    }

    /// Whether `queued` bytes (counted already) are covered; the hot path.
    #[inline]
    pub fn covers(&self, queued: usize) -> bool {
        queued <= self.covered.load(Ordering::Relaxed)
    }

    /// Queued bytes covered now (the allowance and what is held).
    pub fn covered(&self) -> usize {
        self.covered.load(Ordering::Relaxed)
    }

    /// Takes the steps needed to cover the queue's bytes (as counted now, plus `extra`)
    /// from the budget; false if the budget has no room for them.
    pub fn grow(
        &self,
        changing: &Mutex<()>,
        budget: &MemoryBudget,
        queued: &AtomicUsize,
        extra: usize,
    ) -> bool {
        let _changing = changing.lock();
        let needed = queued.load(Ordering::SeqCst).saturating_add(extra);
        let covered = self.covered.load(Ordering::Relaxed);
        if needed <= covered {
            return true;
        }
        let steps = (needed - covered).div_ceil(STEP);
        let bytes = steps.saturating_mul(STEP);
        if budget.charge(bytes as u64, "queued bytes").is_err() {
            return false;
        }
        self.covered.store(covered + bytes, Ordering::Relaxed);
        true
    }

    /// Called as the queue drains to `queued` bytes: gives back steps once two more than
    /// needed are held (keeping one spare).
    #[inline]
    pub fn drained_to(
        &self,
        changing: &Mutex<()>,
        budget: &MemoryBudget,
        queued: &AtomicUsize,
        now: usize,
    ) {
        if self.covered.load(Ordering::Relaxed) > now.saturating_add(2 * STEP + ALLOWANCE) {
            self.shrink(changing, budget, queued, 1);
        }
    }

    /// Gives back every step the queue's bytes do not need, keeping `spare` steps.
    pub fn shrink(
        &self,
        changing: &Mutex<()>,
        budget: &MemoryBudget,
        queued: &AtomicUsize,
        spare: usize,
    ) {
        let _changing = changing.lock();
        let queued = queued.load(Ordering::SeqCst);
        let covered = self.covered.load(Ordering::Relaxed);
        let needed = queued.saturating_sub(ALLOWANCE).div_ceil(STEP) + spare;
        let held = (covered - ALLOWANCE) / STEP;
        if held > needed {
            let freed = (held - needed) * STEP;
            self.covered.store(covered - freed, Ordering::Relaxed);
            budget.release(freed as u64);
        }
    }

    /// Gives back all it holds, as its connection's state goes (the state holds the
    /// budget, so that a connection's reservation need not hold a pointer to it).
    pub fn release_all(&self, budget: &MemoryBudget) {
        let held = self.covered.load(Ordering::Relaxed) - ALLOWANCE;
        budget.release(held as u64);
    }
}
