//! The one wake-up algorithm of the workspace (Event, Condition, and
//! procs-ipc's rings, queues and waits): a sequence number to sleep on and a
//! count of sleepers, so that waking makes a system call only when someone
//! sleeps.
//!
//! ```text
//! offset 0  seq: the futex word (wrapping)
//! offset 4  sleepers: how many are in (or about to enter) a futex wait
//! ```
//!
//! Two ways to wake, one handshake:
//! - [`notify`](Doorbell::notify): bump `seq` (release), then wake if
//!   someone sleeps; a waiter waits for `seq` to change from what it read
//!   ([`current`](Doorbell::current), [`wait`](Doorbell::wait)): a condition
//!   variable's "the next notification".
//! - [`ring`](Doorbell::ring): after publishing progress in shared memory
//!   (a release store), wake if someone sleeps (bumping `seq` only then); a
//!   sleeper sleeps until a condition on that memory holds
//!   ([`sleep`](Doorbell::sleep), [`sleep_any`](Doorbell::sleep_any)): a
//!   ring's "data is there". A publish nobody waits for costs a fence.
//!
//! No lost wake-up: a sleeper publishes itself in `sleepers` and then reads
//! `seq` (and its condition); a waker writes (`seq`, or its progress) and
//! then reads `sleepers`. A sequentially consistent fence between the write
//! and the read on each side makes at least one of them see the other: the
//! sleeper sees the change and does not sleep, or the waker sees the
//! sleeper and wakes it (and the futex itself refuses to sleep on a `seq`
//! that already changed).

use std::time::Instant;

use crate::raw::sync::{AtomicU32, Ordering, SPIN_LIMIT, fence, spin_loop, wait, wait_any, wake};

/// A sequence number to sleep on, and who sleeps on it, in shared memory.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Doorbell {
    seq: AtomicU32,
    sleepers: AtomicU32,
}

impl Doorbell {
    /// A doorbell at sequence 0 with no sleeper.
    pub fn new() -> Self {
        Doorbell {
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// The sequence number now: pass it to [`wait`](Doorbell::wait) to
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

    /// Wakes the sleepers, if any. Call after publishing with a release store.
    #[inline]
    pub fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            self.wake_all();
        }
    }

    /// Wakes the sleepers, if any, without a fence: for a publisher that
    /// published under a [`RawLock`](crate::raw::lock::RawLock) and has just
    /// released it (its release, a sequentially consistent swap, stands for
    /// the fence), when every sleeper calls
    /// [`RawLock::observe`](crate::raw::lock::RawLock::observe) on that lock
    /// in its `ready` before it checks the progress. Then no wake-up is
    /// lost: if this load misses a sleeper, the sleeper's fence comes after
    /// the release in the single order of sequentially consistent
    /// operations, so its read of the lock sees that release (or a later
    /// take, which continues it) and with it the progress. It saves the
    /// fence of [`ring`](Doorbell::ring) on every item of a queue.
    #[inline]
    pub fn ring_after_release(&self) {
        // loom models sequentially consistent loads and read-modify-writes
        // as acquire/release only (tokio-rs/loom#180), so it cannot check
        // the argument above, which rests on their single order: the model
        // fences here, and checks the rest (the sleeper's observe and
        // re-checks; see procs-sync's tests/loom_doorbell.rs).
        #[cfg(loom)]
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) != 0 {
            self.wake_all();
        }
    }

    #[cold]
    fn wake_all(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        wake(&self.seq, u32::MAX);
    }

    /// Sleeps once: until a ring, `deadline`, or a spurious wake-up, unless
    /// `ready()` already holds. Returns `ready()` as seen last.
    pub fn sleep(&self, ready: impl Fn() -> bool, deadline: Option<Instant>) -> bool {
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let seen = self.seq.load(Ordering::Acquire);
        let r = ready() || {
            wait(&self.seq, seen, deadline);
            ready()
        };
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        r
    }

    /// As [`sleep`](Doorbell::sleep), on several doorbells at once: until
    /// any of them rings, `deadline`, or a spurious wake-up, unless
    /// `ready()` already holds. Each ring is seen as `sleep` sees it: the
    /// sleeper is registered on every bell and fenced before it reads their
    /// sequences and checks `ready()`.
    pub fn sleep_any(
        bells: &[&Doorbell],
        ready: impl Fn() -> bool,
        deadline: Option<Instant>,
    ) -> bool {
        for b in bells {
            b.sleepers.fetch_add(1, Ordering::Relaxed);
        }
        fence(Ordering::SeqCst);
        let seen: Vec<(&AtomicU32, u32)> = bells
            .iter()
            .map(|b| (&b.seq, b.seq.load(Ordering::Acquire)))
            .collect();
        let r = ready() || {
            wait_any(&seen, deadline);
            ready()
        };
        for b in bells {
            b.sleepers.fetch_sub(1, Ordering::Relaxed);
        }
        r
    }
}
