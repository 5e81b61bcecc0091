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
//! re-reads `seq`; a notifier bumps `seq` and then reads `sleepers`. A
//! sequentially consistent fence between the write and the read on each side
//! makes at least one of them see the other: the waiter sees the new `seq`
//! and does not sleep, or the notifier sees the sleeper and wakes it (and the
//! futex itself refuses to sleep on a `seq` that already changed).

use std::time::Instant;

use crate::raw::sync::{AtomicU32, Ordering, SPIN_LIMIT, fence, spin_loop, wait, wake};

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
        // Acquire: pairs with the notifier's release, so that what was written
        // before a notification this read misses is seen by the next read.
        self.seq.load(Ordering::Acquire)
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
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        // Between publishing the sleeper and reading `seq`: see the module doc.
        fence(Ordering::SeqCst);
        let changed = loop {
            if self.seq.load(Ordering::Acquire) != seen {
                break true;
            }
            if !wait(&self.seq, seen, deadline) {
                break self.seq.load(Ordering::Acquire) != seen;
            }
        };
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        changed
    }

    /// Bumps the sequence and wakes up to `n` sleepers.
    #[inline]
    pub fn notify(&self, n: u32) {
        // Release: what was written before the notification is seen by a
        // waiter that sees the new sequence.
        self.seq.fetch_add(1, Ordering::Release);
        // Between bumping `seq` and reading `sleepers`: see the module doc.
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) > 0 {
            wake(&self.seq, n);
        }
    }

    /// Bumps the sequence and wakes every sleeper.
    #[inline]
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }
}
