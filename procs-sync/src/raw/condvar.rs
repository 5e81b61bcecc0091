//! The raw condition variable: a [`Notifier`] used with a [`RawLock`] or a
//! [`RawRLock`].
//!
//! A waiter reads the sequence while it holds the lock, releases the lock,
//! and sleeps until the sequence changes; a notify under the lock therefore
//! cannot fall between the waiter's check of its condition and its sleep.
//! Like any condition variable, a wait may end without a notification
//! (callers re-check their condition: `wait_for` does).

use std::time::Instant;

use super::lock::{Acquired, RawLock};
use super::notify::Notifier;
use super::rlock::RawRLock;

/// A process-shared condition variable.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawCondvar {
    notifier: Notifier,
}

impl RawCondvar {
    /// A condition variable with no waiter.
    pub fn new() -> Self {
        RawCondvar {
            notifier: Notifier::new(),
        }
    }

    /// Releases `lock` (which the caller holds), waits for a notification
    /// or `deadline`, and takes `lock` again. Returns whether it was
    /// notified (`false`: timed out) and how the lock was retaken.
    pub fn wait(&self, lock: &RawLock, deadline: Option<Instant>) -> (bool, Acquired) {
        let seen = self.notifier.current();
        lock.unlock();
        let notified = self.notifier.wait(seen, deadline);
        let how = lock
            .lock(None)
            .expect("a wait without deadline only ends with the lock");
        (notified, how)
    }

    /// As [`wait`](RawCondvar::wait) with a re-entrant lock: every level
    /// the caller holds is released for the wait and taken back after it
    /// (Python's `Condition` over an `RLock`), so that another thread can
    /// take the lock meanwhile however deep the caller held it.
    pub fn wait_rlock(&self, lock: &RawRLock, deadline: Option<Instant>) -> (bool, Acquired) {
        let seen = self.notifier.current();
        let depth = lock.release_save();
        let notified = self.notifier.wait(seen, deadline);
        (notified, lock.acquire_restore(depth))
    }

    /// Wakes up to `n` waiters.
    pub fn notify(&self, n: u32) {
        if n > 0 {
            self.notifier.notify(n);
        }
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.notifier.notify_all();
    }
}
