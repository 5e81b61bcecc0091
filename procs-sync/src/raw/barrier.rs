//! The raw barrier: Python's `threading.Barrier` state machine, its fields
//! under a [`RawLock`], its sleepers on a [`Notifier`].
//!
//! ```text
//! offset  0  lock word
//! offset  4  notifier (seq, sleepers)
//! offset 12  state: FILLING, DRAINING, RESETTING or BROKEN
//! offset 16  count: parties inside wait()
//! offset 20  parties
//! ```
//!
//! Parties arrive while FILLING; the last to arrive runs the action and
//! switches to DRAINING, which releases the others. No party may enter
//! while the previous round drains (so a released party always learns that
//! it was released, not that a later round broke); the last party to leave
//! switches back to FILLING. A timeout or an abort switches to BROKEN:
//! every waiter and every later caller fails until `reset`.

use std::time::Instant;

use super::lock::RawLock;
use super::notify::Notifier;
use crate::facade::{AtomicU32, Ordering};

const FILLING: u32 = 0;
const DRAINING: u32 = 1;
const RESETTING: u32 = 2;
const BROKEN: u32 = 3;

/// Why a barrier wait failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken;

/// A process-shared barrier.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawBarrier {
    lock: RawLock,
    notifier: Notifier,
    // Read and written only under `lock`; atomics so that the struct may
    // live in shared memory, relaxed since the lock orders them.
    state: AtomicU32,
    count: AtomicU32,
    parties: AtomicU32,
}

impl RawBarrier {
    /// A barrier for `parties` parties.
    pub fn new(parties: u32) -> Self {
        let b = RawBarrier::default();
        b.init(parties);
        b
    }

    /// Sets the number of parties of a barrier nobody uses yet.
    pub fn init(&self, parties: u32) {
        self.parties.store(parties, Ordering::Release);
    }

    fn take(&self) {
        // A holder that died leaves the fields as they were at a whole
        // assignment: the state machine stays readable.
        self.lock
            .lock(None)
            .expect("a wait without deadline only ends with the lock");
    }

    fn get(&self, field: &AtomicU32) -> u32 {
        field.load(Ordering::Relaxed)
    }

    fn put(&self, field: &AtomicU32, v: u32) {
        field.store(v, Ordering::Relaxed);
    }

    /// Waits (the lock held) until the state is not `from`, or `deadline`.
    /// Returns false on timeout. The lock is held again on return.
    fn wait_while(&self, from: u32, deadline: Option<Instant>) -> bool {
        while self.get(&self.state) == from {
            let seen = self.notifier.current();
            self.lock.unlock();
            let changed = self.notifier.wait(seen, deadline);
            self.take();
            if !changed && self.get(&self.state) == from {
                return false;
            }
        }
        true
    }

    /// Waits for the other parties. `action` is run by the last party to
    /// arrive, before the others are released; it returns `false` if it
    /// failed, which breaks the barrier. Returns the arrival index (0 for the
    /// first to arrive, `parties - 1` for the last).
    pub fn wait(
        &self,
        deadline: Option<Instant>,
        action: impl FnOnce() -> bool,
    ) -> Result<u32, Broken> {
        self.take();
        // A previous round still draining, or a reset in progress: wait.
        while matches!(self.get(&self.state), DRAINING | RESETTING) {
            let s = self.get(&self.state);
            self.wait_while(s, None);
        }
        if self.get(&self.state) == BROKEN {
            self.lock.unlock();
            return Err(Broken);
        }
        let index = self.get(&self.count);
        self.put(&self.count, index + 1);
        if index + 1 == self.get(&self.parties) {
            if action() {
                self.put(&self.state, DRAINING);
                self.notifier.notify_all();
            } else {
                self.break_locked();
            }
        } else if !self.wait_while(FILLING, deadline) {
            self.break_locked();
        }
        let result = if self.get(&self.state) == DRAINING {
            Ok(index)
        } else {
            Err(Broken)
        };
        self.leave_locked();
        self.lock.unlock();
        result
    }

    fn leave_locked(&self) {
        let left = self.get(&self.count) - 1;
        self.put(&self.count, left);
        if left == 0 && matches!(self.get(&self.state), DRAINING | RESETTING) {
            self.put(&self.state, FILLING);
            self.notifier.notify_all();
        }
    }

    fn break_locked(&self) {
        self.put(&self.state, BROKEN);
        self.notifier.notify_all();
    }

    /// Breaks the barrier: waiting parties and later callers fail until
    /// [`reset`](RawBarrier::reset).
    pub fn abort(&self) {
        self.take();
        self.break_locked();
        self.lock.unlock();
    }

    /// Returns the barrier to its first state; parties waiting now fail.
    pub fn reset(&self) {
        self.take();
        if self.get(&self.count) > 0 {
            // The last waiter to leave switches to FILLING.
            self.put(&self.state, RESETTING);
        } else {
            self.put(&self.state, FILLING);
        }
        self.notifier.notify_all();
        self.lock.unlock();
    }

    /// How many parties wait now.
    pub fn n_waiting(&self) -> u32 {
        self.take();
        let n = if self.get(&self.state) == FILLING {
            self.get(&self.count)
        } else {
            0
        };
        self.lock.unlock();
        n
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.take();
        let b = self.get(&self.state) == BROKEN;
        self.lock.unlock();
        b
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.parties.load(Ordering::Acquire)
    }
}
