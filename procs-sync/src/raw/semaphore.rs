//! The raw semaphore: a count that is the futex word itself, and a count of
//! sleepers.
//!
//! ```text
//! offset 0  count: permits available
//! offset 4  sleepers: how many wait for the count to leave zero
//! ```
//!
//! A taker decrements a positive count with a compare-and-swap (no system
//! call); at zero it publishes itself as a sleeper, re-reads the count, and
//! sleeps on it while it is zero. A releaser increments the count and makes
//! the wake-up call only if it sees a sleeper: a sequentially consistent
//! fence between the write and the read on each side makes one of them see
//! the other.

use std::time::Instant;

use crate::raw::sync::{AtomicU32, Ordering, SPIN_LIMIT, fence, spin_loop, wait, wake};

/// A process-shared counting semaphore.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawSemaphore {
    count: AtomicU32,
    sleepers: AtomicU32,
}

impl RawSemaphore {
    /// A semaphore with `value` permits.
    pub fn new(value: u32) -> Self {
        RawSemaphore {
            count: AtomicU32::new(value),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Sets the count of a semaphore nobody uses yet.
    pub fn init(&self, value: u32) {
        self.count.store(value, Ordering::Release);
    }

    /// Takes a permit if one is available.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let mut c = self.count.load(Ordering::Relaxed);
        while c > 0 {
            // Acquire: what the releaser wrote before releasing is seen.
            match self
                .count
                .compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
        false
    }

    /// Takes a permit, waiting at most until `deadline`. `false` if none
    /// came in time.
    pub fn acquire(&self, deadline: Option<Instant>) -> bool {
        if self.try_acquire() {
            return true;
        }
        for _ in 0..SPIN_LIMIT {
            spin_loop();
            if self.try_acquire() {
                return true;
            }
        }
        loop {
            self.sleepers.fetch_add(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            let awake = if self.count.load(Ordering::Relaxed) == 0 {
                wait(&self.count, 0, deadline)
            } else {
                true
            };
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
            if self.try_acquire() {
                return true;
            }
            if !awake {
                return false;
            }
        }
    }

    /// Returns `n` permits. With `bound`, refuses (and changes nothing) if
    /// the count would exceed it; returns whether the permits were added.
    pub fn release(&self, n: u32, bound: Option<u32>) -> bool {
        let mut c = self.count.load(Ordering::Relaxed);
        loop {
            let Some(next) = c.checked_add(n) else {
                return false;
            };
            if bound.is_some_and(|b| next > b) {
                return false;
            }
            match self
                .count
                .compare_exchange_weak(c, next, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) > 0 {
            wake(&self.count, n);
        }
        true
    }

    /// The number of permits available now.
    pub fn value(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }
}
