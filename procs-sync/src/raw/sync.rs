//! The one door through which the algorithms touch atomics, futexes and
//! thread identity.
//!
//! Normally these are std's atomics, the shared futex and the thread's tid.
//! Under `--cfg loom` they are loom's model: threads stand in for processes
//! (the memory is the same), a futex wait is a yield that may return
//! spuriously or time out, a wake is nothing (waiters re-check), and every
//! holder is alive. The algorithms are written once and checked there.

#[cfg(not(loom))]
mod imp {
    pub use std::hint::spin_loop;
    pub use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
    use std::time::Instant;

    /// Spins before sleeping: a lock is often released within this time.
    pub const SPIN_LIMIT: u32 = 100;

    /// Sleeps while `*word == expected` until woken or `deadline`; `false`
    /// once the deadline has passed. May return early: callers re-check.
    #[inline]
    pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
        crate::sys::futex::wait(word, expected, deadline)
    }

    /// Sleeps while every `(word, expected)` of `words` holds, until one
    /// is woken or `deadline`; `false` once the deadline has passed. May
    /// return early: callers re-check.
    #[inline]
    pub fn wait_any(words: &[(&AtomicU32, u32)], deadline: Option<Instant>) -> bool {
        crate::sys::futex::wait_any(words, deadline)
    }

    /// Wakes up to `n` sleepers on `word`.
    #[inline]
    pub fn wake(word: &AtomicU32, n: u32) {
        crate::sys::futex::wake(word, n);
    }

    pub use crate::sys::thread::{boot_ticks_now, current_tid, holder_alive};

    /// Waiters wake up now and then to check that a lock's holder lives.
    pub const HOLDER_CHECKS: bool = true;
}

#[cfg(loom)]
mod imp {
    pub use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
    use std::time::Instant;

    /// Spins before sleeping: once, in the model.
    pub const SPIN_LIMIT: u32 = 1;

    /// A spin is a yield in the model, so that the others make progress.
    pub fn spin_loop() {
        loom::thread::yield_now();
    }

    /// The futex in the model: one mutex and condition variable stand for
    /// the kernel's wait queue. The value check and the sleep happen under
    /// the mutex, as the kernel does them under its bucket lock, so a wake
    /// that comes between a waiter's check and its sleep is never lost, and a
    /// wake-up the algorithm forgets to make shows up as a loom deadlock.
    /// A wait with a deadline times out at once (the real call may too).
    pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
        let guard = FUTEX.0.lock().unwrap();
        // The kernel compares with the latest value of the word; a loom load
        // may return an older one, a read-modify-write may not.
        if word.fetch_add(0, Ordering::SeqCst) != expected {
            return true;
        }
        if deadline.is_some() {
            return false;
        }
        drop(FUTEX.1.wait(guard).unwrap());
        true
    }

    /// As `wait`, on several words: sleeps while every word holds its
    /// expected value.
    pub fn wait_any(words: &[(&AtomicU32, u32)], deadline: Option<Instant>) -> bool {
        let guard = FUTEX.0.lock().unwrap();
        if words
            .iter()
            .any(|(w, expected)| w.fetch_add(0, Ordering::SeqCst) != *expected)
        {
            return true;
        }
        if deadline.is_some() {
            return false;
        }
        drop(FUTEX.1.wait(guard).unwrap());
        true
    }

    /// Wakes every sleeper of the model (waking more than asked is allowed:
    /// a woken waiter re-checks).
    pub fn wake(_word: &AtomicU32, _n: u32) {
        let _guard = FUTEX.0.lock().unwrap();
        FUTEX.1.notify_all();
    }

    loom::lazy_static! {
        static ref FUTEX: (loom::sync::Mutex<()>, loom::sync::Condvar) =
            (loom::sync::Mutex::new(()), loom::sync::Condvar::new());
    }

    /// Loom cannot model a holder's death: waiters sleep until woken.
    pub const HOLDER_CHECKS: bool = false;

    loom::thread_local! {
        static TID: std::cell::Cell<u32> = std::cell::Cell::new(0);
    }
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

    /// A small number per model thread, standing in for its tid.
    pub fn current_tid() -> u32 {
        TID.with(|t| {
            if t.get() == 0 {
                t.set(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            }
            t.get()
        })
    }

    /// No clock in the model.
    pub fn boot_ticks_now() -> u64 {
        0
    }

    /// Every holder lives in the model.
    pub fn holder_alive(_tid: u32, _seen_at: u64) -> bool {
        true
    }
}

pub use imp::*;
