//! The raw event: a flag and a [`Doorbell`].
//!
//! ```text
//! offset 0  flag: 1 when set
//! offset 4  bell (seq, sleepers)
//! ```
//!
//! A waiter returns `true` if the flag is set, or if it was set at any time
//! while the waiter waited (even if cleared since), as Python's
//! `threading.Event.wait` does: a set is never lost on a waiter.

use std::time::Instant;

use super::notify::Doorbell;
use crate::raw::sync::{AtomicU32, Ordering};

/// A process-shared event flag.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawEvent {
    flag: AtomicU32,
    bell: Doorbell,
}

impl RawEvent {
    /// A cleared event.
    pub fn new() -> Self {
        RawEvent {
            flag: AtomicU32::new(0),
            bell: Doorbell::new(),
        }
    }

    /// Whether the flag is set.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire) == 1
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        // The bell's bump is a release after this store: a waiter that
        // misses the flag has not seen the bump yet (see `wait`).
        if self.flag.swap(1, Ordering::Relaxed) == 0 {
            self.bell.notify_all();
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.flag.store(0, Ordering::Relaxed);
    }

    /// Waits until the flag is set or `deadline` passes; returns whether it
    /// was set.
    pub fn wait(&self, deadline: Option<Instant>) -> bool {
        // Read the sequence (acquire) before the flag: a set whose flag this
        // read misses had not bumped the sequence (release) when it was read,
        // so the wait below sees the bump.
        let seen = self.bell.current();
        if self.flag.load(Ordering::Relaxed) == 1 {
            return true;
        }
        self.bell.wait(seen, deadline) || self.is_set()
    }
}
