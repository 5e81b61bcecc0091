//! The one door through which the algorithms touch atomics, futexes and
//! thread identity.
//!
//! Normally these are std's atomics, the shared futex and the thread's tid.
//! Under `--cfg loom` they are loom's model: threads stand in for processes
//! (the memory is the same), the futex is a FIFO wait queue under a loom
//! mutex whose `wake(word, n)` wakes exactly `n` sleepers, a timed wait may
//! be woken and still time out, and every holder is alive. The algorithms are written once and checked there.

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

    pub use crate::sys::thread::{boot_ticks_now, current_pid, current_tid, holder_alive};

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

    /// The futex in the model: a loom mutex and condition variable stand
    /// for the kernel's wait queue, which is kept as the kernel keeps it: a
    /// FIFO of sleepers, each on one or more words. The value check and the
    /// enqueueing happen under the mutex, as the kernel does them under its
    /// bucket lock, so a wake that comes between a waiter's check and its
    /// sleep is never lost; `wake(word, n)` wakes exactly the first `n`
    /// sleepers on `word`, so a wake-up the algorithm forgets to make, or a
    /// wake-up consumed by a waiter that then leaves without passing it on,
    /// shows up as a loom deadlock.
    ///
    /// A wait with a deadline that has passed returns `false` at once (as
    /// the real call does). One with a deadline still ahead sleeps for one
    /// yield, the model's "a while", in the queue: a wake in that window
    /// picks it, as the kernel may, and then it returns `false` all the
    /// same: the worst case of a real timed wait, woken just before its
    /// time ran out. Tests use deadlines far ahead (or already past), so
    /// that the model does not depend on the clock.
    pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
        sleep_on(&[(word, expected)], deadline)
    }

    /// As `wait`, on several words: sleeps while every word holds its
    /// expected value, and a wake on any of them wakes it.
    pub fn wait_any(words: &[(&AtomicU32, u32)], deadline: Option<Instant>) -> bool {
        sleep_on(words, deadline)
    }

    fn sleep_on(words: &[(&AtomicU32, u32)], deadline: Option<Instant>) -> bool {
        let mut q = FUTEX.0.lock().unwrap();
        // The kernel compares with the latest value of the word; a loom load
        // may return an older one, a read-modify-write may not.
        if words
            .iter()
            .any(|(w, expected)| w.fetch_add(0, Ordering::SeqCst) != *expected)
        {
            return true;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        let ticket = q.next;
        q.next += 1;
        let addrs = words.iter().map(|(w, _)| address(w)).collect();
        q.sleepers.push((addrs, ticket));
        if deadline.is_none() {
            loop {
                if let Some(i) = q.woken.iter().position(|t| *t == ticket) {
                    q.woken.swap_remove(i);
                    return true;
                }
                q = FUTEX.1.wait(q).unwrap();
            }
        }
        drop(q);
        loom::thread::yield_now();
        let mut q = FUTEX.0.lock().unwrap();
        if let Some(i) = q.woken.iter().position(|t| *t == ticket) {
            q.woken.swap_remove(i);
        } else if let Some(i) = q.sleepers.iter().position(|(_, t)| *t == ticket) {
            q.sleepers.remove(i);
        }
        false
    }

    /// Wakes the first `n` sleepers on `word`, in the order they slept.
    pub fn wake(word: &AtomicU32, n: u32) {
        let mut q = FUTEX.0.lock().unwrap();
        let addr = address(word);
        let (mut left, mut i) = (n, 0);
        while left > 0 && i < q.sleepers.len() {
            if q.sleepers[i].0.contains(&addr) {
                let (_, ticket) = q.sleepers.remove(i);
                q.woken.push(ticket);
                left -= 1;
            } else {
                i += 1;
            }
        }
        if left < n {
            FUTEX.1.notify_all();
        }
    }

    fn address(word: &AtomicU32) -> usize {
        word as *const AtomicU32 as usize
    }

    /// The model's wait queue: who sleeps on which words (by address), in
    /// order, and who has been woken and not yet run.
    #[derive(Default)]
    struct Queue {
        next: u64,
        sleepers: Vec<(Vec<usize>, u64)>,
        woken: Vec<u64>,
    }

    loom::lazy_static! {
        static ref FUTEX: (loom::sync::Mutex<Queue>, loom::sync::Condvar) =
            (loom::sync::Mutex::new(Queue::default()), loom::sync::Condvar::new());
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

    /// Threads stand in for processes in the model: a thread's process id
    /// is its own.
    pub fn current_pid() -> u32 {
        current_tid()
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
