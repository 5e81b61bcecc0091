//! The raw lock: one 32-bit word in shared memory, std's futex mutex with
//! the holder's id in the word.
//!
//! ```text
//! bit 31     CONTENDED: a waiter is asleep (or about to be); unlock must wake one
//! bit 30     RELEASABLE: taken with `acquire`; any thread of any process may release it
//! bits 0-29  the holder: its thread id (its process id if RELEASABLE), 0 when free
//! ```
//!
//! The states are std's three (`library/std/src/sys/sync/mutex/futex.rs`):
//! free (0), held with nobody asleep (`id`), held with sleepers
//! (`id | CONTENDED`). Taking a free lock is one compare-and-swap of 0 to
//! the caller's id; releasing is one swap to 0, and a wake-up system call
//! only if the word had CONTENDED.
//!
//! A waiter spins a bounded time while the lock is held and nobody sleeps.
//! If the lock comes free meanwhile it takes it plain (`id`): nobody sleeps,
//! so its unlock owes no wake-up. Otherwise, unless its deadline has passed
//! (a waiter with no time left writes nothing), it sets CONTENDED and sleeps
//! on the futex. After a wake it spins again, and takes the lock as
//! `id | CONTENDED`: other waiters may still sleep, and only the bit makes
//! its unlock wake the next one (std's rule). A waiter that slept and then
//! gives up at its deadline may have taken the wake meant for another
//! sleeper: it leaves CONTENDED set on the held word, so that the holder
//! wakes one more.
//!
//! While it sleeps a waiter wakes every [`CHECK_EVERY`] to check that the
//! holder is alive: if the holder died (killed, or its thread ended), one
//! waiter swaps the dead holder's word for its own and is told so, so that a
//! dead process never hangs the living. Pid reuse: the waiter notes when it
//! first saw the holder, and a task with that id that started later is not
//! the holder.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::raw::sync::{
    AtomicU32, HOLDER_CHECKS, Ordering, SPIN_LIMIT, boot_ticks_now, current_pid, current_tid,
    holder_alive, spin_loop, wait, wake,
};

const CONTENDED: u32 = 1 << 31;
const RELEASABLE: u32 = 1 << 30;
/// Linux ids stay below 2^22 (`PID_MAX_LIMIT`), well inside these bits.
const ID: u32 = RELEASABLE - 1;

/// How long a waiter sleeps before it checks that the holder still lives:
/// the bound on how long a dead holder blocks the others, well under 100 ms.
/// Every wait on another process in the workspace (rings, queues, the
/// pool's handler) looks this often.
pub const CHECK_EVERY: Duration = Duration::from_millis(20);

/// How a lock was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// From a live holder, or free.
    Clean,
    /// From a holder that died holding it: the data may need repair.
    OwnerDied {
        /// The id of the dead holder: its thread id, or its process id if
        /// it took the lock with [`RawLock::acquire`].
        holder: u32,
    },
}

/// Why [`RawLock::release`] did not release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReleased {
    /// The lock is free.
    NotLocked,
    /// The lock is held through [`RawLock::lock`] (a guard), which only its
    /// holder releases.
    Guarded {
        /// The holding thread.
        holder: u32,
    },
}

/// A process-shared mutual exclusion lock.
#[repr(C)]
#[derive(Debug)]
pub struct RawLock {
    word: AtomicU32,
}

impl Default for RawLock {
    fn default() -> Self {
        Self::new()
    }
}

impl RawLock {
    /// A free lock (all zero, as a fresh segment is).
    pub fn new() -> Self {
        RawLock {
            word: AtomicU32::new(0),
        }
    }

    /// Takes the lock for the calling thread if it is free.
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.try_take(current_tid())
    }

    /// Takes the lock for the calling thread, waiting at most until
    /// `deadline` (`None`: forever); `None` if the deadline passed first.
    /// Release it with [`unlock`](RawLock::unlock) on this thread, or hold
    /// it through [`lock_guard`](RawLock::lock_guard) instead.
    #[inline]
    pub fn lock(&self, deadline: Option<Instant>) -> Option<Acquired> {
        self.take(current_tid(), deadline)
    }

    /// As [`lock`](RawLock::lock), held by a guard that unlocks when
    /// dropped. `None` if the deadline passed first.
    #[inline]
    pub fn lock_guard(&self, deadline: Option<Instant>) -> Option<RawGuard<'_>> {
        let how = self.lock(deadline)?;
        Some(RawGuard {
            lock: self,
            how,
            _not_send: PhantomData,
        })
    }

    /// Takes the lock for the calling process, Python's `acquire()`: any
    /// thread of any process may then [`release`](RawLock::release) it.
    /// The holder watched for death is this process.
    #[inline]
    pub fn acquire(&self, deadline: Option<Instant>) -> Option<Acquired> {
        self.take(current_pid() | RELEASABLE, deadline)
    }

    /// As [`acquire`](RawLock::acquire), if the lock is free now.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.try_take(current_pid() | RELEASABLE)
    }

    /// Releases a lock taken with [`acquire`](RawLock::acquire), from any
    /// thread of any process (Python's `release()`). A free lock, or one
    /// held through [`lock`](RawLock::lock), is left as it is.
    pub fn release(&self) -> Result<(), NotReleased> {
        let mut state = self.word.load(Ordering::Relaxed);
        loop {
            if state & ID == 0 {
                return Err(NotReleased::NotLocked);
            }
            if state & RELEASABLE == 0 {
                return Err(NotReleased::Guarded { holder: state & ID });
            }
            // Release: what was written under the lock is seen by the next
            // taker.
            match self
                .word
                .compare_exchange(state, 0, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(s) => state = s,
            }
        }
        if state & CONTENDED != 0 {
            self.wake_one();
        }
        Ok(())
    }

    #[inline]
    fn try_take(&self, me: u32) -> bool {
        // Acquire: what the previous holder wrote before releasing is seen.
        self.word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[inline]
    fn take(&self, me: u32, deadline: Option<Instant>) -> Option<Acquired> {
        if self.try_take(me) {
            Some(Acquired::Clean)
        } else {
            self.lock_contended(me, deadline)
        }
    }

    #[cold]
    fn lock_contended(&self, me: u32, deadline: Option<Instant>) -> Option<Acquired> {
        let passed = |d: Instant| Instant::now() >= d;
        // A take with no time left neither spins nor writes.
        if deadline.is_some_and(passed) {
            return self.try_take(me).then_some(Acquired::Clean);
        }
        let mut state = self.spin();
        // CONTENDED once this thread has slept: then it takes the lock
        // marked, since others may sleep still.
        let mut mark = 0;
        // The wait ended at the deadline (the model's clock is the wait).
        let mut expired = false;
        // The holder being waited for, when it was first seen (boot ticks),
        // and when to next check that it lives.
        let mut watch: Option<(u32, u64, Instant)> = None;
        loop {
            if state & ID == 0 {
                // Acquire: as in `try_take`.
                match self.word.compare_exchange(
                    state,
                    me | mark,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some(Acquired::Clean),
                    Err(s) => {
                        state = s;
                        continue;
                    }
                }
            }
            if expired || deadline.is_some_and(passed) {
                if mark == 0 || state & CONTENDED != 0 {
                    return None;
                }
                // This thread slept, and the wake that ended its sleep may
                // have been meant for another sleeper: the holder must wake
                // one. Relaxed: the bit only asks for a wake-up.
                match self.word.compare_exchange(
                    state,
                    state | CONTENDED,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return None,
                    Err(s) => {
                        state = s;
                        continue;
                    }
                }
            }
            if state & CONTENDED == 0 {
                // About to sleep: ask the holder for a wake-up. Relaxed: the
                // futex compares the word itself, and the bit carries no data.
                if let Err(s) = self.word.compare_exchange(
                    state,
                    state | CONTENDED,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    state = s;
                    continue;
                }
                state |= CONTENDED;
            }
            let holder = state & ID;
            let until = if HOLDER_CHECKS {
                let check_at = match watch {
                    Some((h, _, at)) if h == holder => at,
                    _ => {
                        let at = Instant::now() + CHECK_EVERY;
                        watch = Some((holder, boot_ticks_now(), at));
                        at
                    }
                };
                Some(deadline.map_or(check_at, |d| d.min(check_at)))
            } else {
                deadline
            };
            // `false`: `until` passed; that is the deadline if it came first.
            expired = !wait(&self.word, state, until) && deadline.is_some() && until == deadline;
            mark = CONTENDED;
            state = self.spin();
            if let Some((h, seen_at, check_at)) = watch
                && HOLDER_CHECKS
                && state & ID == h
                && Instant::now() >= check_at
            {
                if !holder_alive(h, seen_at) {
                    // Only one waiter's swap from this exact word succeeds.
                    match self.word.compare_exchange(
                        state,
                        me | CONTENDED,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return Some(Acquired::OwnerDied { holder: h }),
                        Err(s) => {
                            state = s;
                            continue;
                        }
                    }
                }
                watch = Some((h, seen_at, Instant::now() + CHECK_EVERY));
            }
        }
    }

    /// Spins while the lock is held and nobody sleeps, for a bounded time
    /// ([`SPIN_LIMIT`] pauses); returns the last state seen. The looks back
    /// off (1, 2, 4, 8, then 16 pauses apart, as crossbeam's `Backoff`):
    /// each look pulls the word's cache line from the holder's core, and a
    /// holder that can release and retake the lock in peace goes faster.
    /// Measured on 2 loaded cores (lock_contended, 40 runs each, five
    /// times): a look after every pause ran at 7 M ops/s at worst and 9 to
    /// 10 at the tenth percentile; backing off, 17 and 18 to 20.
    fn spin(&self) -> u32 {
        let mut left = SPIN_LIMIT;
        let mut step = 1;
        loop {
            let state = self.word.load(Ordering::Relaxed);
            if state & ID == 0 || state & CONTENDED != 0 || left == 0 {
                return state;
            }
            let pauses = step.min(left);
            for _ in 0..pauses {
                spin_loop();
            }
            left -= pauses;
            step = (step * 2).min(16);
        }
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// The calling thread holds the lock: it took it with
    /// [`lock`](RawLock::lock) or [`try_lock`](RawLock::try_lock) (or,
    /// for a lock taken with [`acquire`](RawLock::acquire), it releases on
    /// behalf of the taker), and has not released it since. Releasing a lock
    /// that another thread holds lets a third in beside it: whatever data
    /// the lock protects is then raced on.
    #[inline]
    pub unsafe fn unlock(&self) {
        // Release: what the holder wrote is seen by the next one. SeqCst
        // (the same instruction on x86-64): a holder that published under
        // the lock may ring a doorbell right after, without a fence of its
        // own (see [`observe`](RawLock::observe)).
        if self.word.swap(0, Ordering::SeqCst) & CONTENDED != 0 {
            self.wake_one();
        }
    }

    #[cold]
    fn wake_one(&self) {
        wake(&self.word, 1);
    }

    /// Reads the lock's word with acquire, for a sleeper on a doorbell
    /// that its holders ring only after they release the lock
    /// ([`Doorbell::ring_after_release`](crate::raw::notify::Doorbell::ring_after_release)):
    /// read after the sleeper registered (inside the `ready` of
    /// [`Doorbell::sleep`](crate::raw::notify::Doorbell::sleep)), it makes
    /// every release either seen here, with all the holder wrote before it,
    /// or ordered after the registration, so that the holder's ring sees the
    /// sleeper. Every change of the word is a read-modify-write, so a later
    /// holder's take continues the release this read may land on.
    #[inline]
    pub fn observe(&self) {
        let _ = self.word.load(Ordering::Acquire);
    }

    /// The holder's id, 0 if free: a thread id, or a process id for a lock
    /// taken with [`acquire`](RawLock::acquire).
    #[inline]
    pub fn holder(&self) -> u32 {
        self.word.load(Ordering::Relaxed) & ID
    }

    /// Whether the calling thread holds the lock through
    /// [`lock`](RawLock::lock) or [`try_lock`](RawLock::try_lock).
    #[inline]
    pub fn held_by_me(&self) -> bool {
        // Relaxed suffices: if this thread holds it, it wrote its own tid,
        // and program order shows it; no other thread writes that tid.
        self.word.load(Ordering::Relaxed) & (ID | RELEASABLE) == current_tid()
    }

    /// Whether a waiter may sleep on the lock, so that its next unlock will
    /// make a wake-up call (the CONTENDED bit).
    #[inline]
    pub fn has_sleepers(&self) -> bool {
        self.word.load(Ordering::Relaxed) & CONTENDED != 0
    }

    /// Whether the lock is held through [`acquire`](RawLock::acquire), and
    /// so may be released by any thread.
    #[inline]
    pub fn is_acquired(&self) -> bool {
        let state = self.word.load(Ordering::Relaxed);
        state & RELEASABLE != 0 && state & ID != 0
    }
}

/// Holds a [`RawLock`] taken by [`RawLock::lock_guard`]; unlocks it when
/// dropped. It belongs to the thread that took the lock, so it is not
/// `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct RawGuard<'a> {
    lock: &'a RawLock,
    how: Acquired,
    _not_send: PhantomData<*const ()>,
}

impl RawGuard<'_> {
    /// How the lock was taken: from a holder that died, or not.
    pub fn acquired(&self) -> Acquired {
        self.how
    }
}

impl Drop for RawGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard was made when this thread took the lock with
        // `lock`; it is not Send, so this is that thread, and only this drop
        // releases that hold.
        unsafe { self.lock.unlock() }
    }
}
