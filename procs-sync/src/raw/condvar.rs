//! The raw condition variable: a [`Doorbell`] used with a [`RawLock`] or a
//! [`RawRLock`].
//!
//! A waiter reads the sequence while it holds the lock, releases the lock,
//! and sleeps until the sequence changes; a notify under the lock therefore
//! cannot fall between the waiter's check of its condition and its sleep.
//! Like any condition variable, a wait may end without a notification
//! (callers re-check their condition: `wait_for` does).

use std::time::Instant;

use super::lock::{Acquired, RawLock};
use super::notify::Doorbell;
use super::rlock::RawRLock;

/// A process-shared condition variable.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawCondvar {
    bell: Doorbell,
}

impl RawCondvar {
    /// A condition variable with no waiter.
    pub fn new() -> Self {
        RawCondvar {
            bell: Doorbell::new(),
        }
    }

    /// Releases `lock`, waits for a notification or `deadline`, and takes
    /// `lock` again. Returns whether it was notified (`false`: timed out)
    /// and how the lock was retaken.
    ///
    /// # Safety
    /// The calling thread holds `lock` (taken with [`RawLock::lock`]).
    pub unsafe fn wait(&self, lock: &RawLock, deadline: Option<Instant>) -> (bool, Acquired) {
        let seen = self.bell.current();
        // SAFETY: the caller holds the lock (this function's contract).
        unsafe { lock.unlock() };
        let notified = self.bell.wait(seen, deadline);
        let how = lock
            .lock(None)
            .expect("a wait without deadline only ends with the lock");
        (notified, how)
    }

    /// As [`wait`](RawCondvar::wait) with a re-entrant lock: every level
    /// the caller holds is released for the wait and taken back after it
    /// (Python's `Condition` over an `RLock`), so that another thread can
    /// take the lock meanwhile however deep the caller held it.
    ///
    /// # Safety
    /// The calling thread holds `lock`.
    pub unsafe fn wait_rlock(
        &self,
        lock: &RawRLock,
        deadline: Option<Instant>,
    ) -> (bool, Acquired) {
        let seen = self.bell.current();
        // SAFETY: the caller holds the lock (this function's contract).
        let depth = unsafe { lock.release_save() };
        let notified = self.bell.wait(seen, deadline);
        (notified, lock.acquire_restore(depth))
    }

    /// Wakes up to `n` waiters.
    pub fn notify(&self, n: u32) {
        if n > 0 {
            self.bell.notify(n);
        }
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.bell.notify_all();
    }
}
