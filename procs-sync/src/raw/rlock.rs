//! The raw re-entrant lock: a [`RawLock`] and a count that only its holder
//! touches.
//!
//! ```text
//! offset 0  RawLock word
//! offset 4  count: how many times the holder took it
//! ```

use std::time::Instant;

use super::lock::{Acquired, RawLock};
use crate::raw::sync::{AtomicU32, Ordering, current_tid};

/// A process-shared lock that its holder may take again.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawRLock {
    lock: RawLock,
    count: AtomicU32,
}

impl RawRLock {
    /// A free lock.
    pub fn new() -> Self {
        RawRLock {
            lock: RawLock::new(),
            count: AtomicU32::new(0),
        }
    }

    /// Takes the lock, or takes it once more if this thread holds it.
    pub fn lock(&self, deadline: Option<Instant>) -> Option<Acquired> {
        if self.lock.held_by_me() {
            // Relaxed: only the holder reads or writes the count.
            let n = self.count.load(Ordering::Relaxed);
            self.count.store(n + 1, Ordering::Relaxed);
            return Some(Acquired::Clean);
        }
        let how = self.lock.lock(deadline)?;
        // A dead holder's count is meaningless: this holder starts at one.
        self.count.store(1, Ordering::Relaxed);
        Some(how)
    }

    /// Takes the lock if free or held by this thread.
    pub fn try_lock(&self) -> bool {
        if self.lock.held_by_me() {
            let n = self.count.load(Ordering::Relaxed);
            self.count.store(n + 1, Ordering::Relaxed);
            return true;
        }
        if self.lock.try_lock() {
            self.count.store(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Releases one level. `Err((holder, caller))` if this thread does not
    /// hold the lock.
    pub fn unlock(&self) -> Result<(), (u32, u32)> {
        let me = current_tid();
        let holder = self.lock.holder();
        if holder != me {
            return Err((holder, me));
        }
        let n = self.count.load(Ordering::Relaxed);
        if n <= 1 {
            self.count.store(0, Ordering::Relaxed);
            // SAFETY: the word holds this thread's tid (checked above), so
            // this thread holds the lock.
            unsafe { self.lock.unlock() };
        } else {
            self.count.store(n - 1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// How many times the calling thread holds the lock (0 if it does not).
    pub fn depth(&self) -> u32 {
        if self.lock.held_by_me() {
            self.count.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Releases every level the calling thread holds and returns how many
    /// (Python's `_release_save`), for a condition variable's wait.
    /// [`acquire_restore`](RawRLock::acquire_restore) takes them back.
    ///
    /// # Safety
    /// The calling thread holds the lock.
    pub unsafe fn release_save(&self) -> u32 {
        let n = self.count.load(Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
        // SAFETY: the caller holds the lock (this function's contract).
        unsafe { self.lock.unlock() };
        n
    }

    /// Takes the lock again with the `depth` levels that
    /// [`release_save`](RawRLock::release_save) returned.
    pub fn acquire_restore(&self, depth: u32) -> Acquired {
        let how = self
            .lock
            .lock(None)
            .expect("a wait without deadline only ends with the lock");
        self.count.store(depth, Ordering::Relaxed);
        how
    }

    /// The holder's thread id, 0 if free.
    pub fn holder(&self) -> u32 {
        self.lock.holder()
    }
}
