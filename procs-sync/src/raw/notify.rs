//! The wake-up protocol shared by Event, Condition and Barrier: a sequence
//! number that changes on every notification, and a count of sleepers, so
//! that notifying makes a system call only when someone sleeps.
//!
//! ```text
//! offset 0  seq: bumped by every notify (wrapping)
//! offset 4  sleepers: how many are in (or about to enter) a futex wait
//! ```
//!
//! No lost wake-up: a waiter publishes itself in `sleepers` and then
//! re-reads `seq`; a notifier bumps `seq` and then reads `sleepers`. Both
//! with sequentially consistent operations, so at least one of them sees
//! the other: the waiter sees the new `seq` and does not sleep, or the
//! notifier sees the sleeper and wakes it (and the futex itself refuses to
//! sleep on a `seq` that already changed).

use std::time::Instant;

use crate::facade::{AtomicU32, Ordering, SPIN_LIMIT, spin_loop, wait, wake};

/// A sequence number to wait on for a change.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Notifier {
    seq: AtomicU32,
    sleepers: AtomicU32,
}

impl Notifier {
    /// A notifier at sequence 0 with no sleeper.
    pub fn new() -> Self {
        Notifier {
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// The sequence number now: pass it to [`wait`](Notifier::wait) to
    /// wait for the next notification.
    #[inline]
    pub fn current(&self) -> u32 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Waits until the sequence is no longer `seen` or `deadline` passes.
    /// Returns whether it changed. Spins briefly before sleeping.
    pub fn wait(&self, seen: u32, deadline: Option<Instant>) -> bool {
        for _ in 0..SPIN_LIMIT {
            if self.seq.load(Ordering::Acquire) != seen {
                return true;
            }
            spin_loop();
        }
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let changed = loop {
            if self.seq.load(Ordering::SeqCst) != seen {
                break true;
            }
            if !wait(&self.seq, seen, deadline) {
                break self.seq.load(Ordering::SeqCst) != seen;
            }
        };
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        changed
    }

    /// Bumps the sequence and wakes up to `n` sleepers.
    #[inline]
    pub fn notify(&self, n: u32) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            wake(&self.seq, n);
        }
    }

    /// Bumps the sequence and wakes every sleeper.
    #[inline]
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }
}
