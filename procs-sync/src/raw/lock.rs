//! The raw lock: one 32-bit word in shared memory.
//!
//! ```text
//! bit 31     CONTENDED: someone may sleep on the word; unlock must wake one
//! bits 0-30  the holder's thread id, 0 when free
//! ```
//!
//! Taking a free lock is one compare-and-swap of 0 to the caller's tid;
//! releasing is one swap to 0, and a wake-up system call only if the
//! CONTENDED bit was set. A waiter spins briefly, then marks the word
//! CONTENDED and sleeps on the futex. While it sleeps it wakes every
//! [`CHECK_EVERY`] to check that the holder is alive: if the holder died
//! (killed, or its thread ended), one waiter swaps the dead holder's word for
//! its own and is told so, so that a dead process never hangs the living.
//! Pid reuse: the waiter notes when it first saw the holder, and a task with
//! that tid that started later is not the holder.

use std::time::{Duration, Instant};

use crate::raw::sync::{
    AtomicU32, HOLDER_CHECKS, Ordering, SPIN_LIMIT, boot_ticks_now, current_tid, holder_alive,
    spin_loop, wait, wake,
};

const CONTENDED: u32 = 1 << 31;
const TID: u32 = !CONTENDED;

/// How long a waiter sleeps before it checks that the holder still lives:
/// the bound on how long a dead holder blocks the others, well under 100 ms.
pub const CHECK_EVERY: Duration = Duration::from_millis(20);

/// How a lock was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// From a live holder, or free.
    Clean,
    /// From a holder that died holding it: the data may need repair.
    OwnerDied {
        /// The thread id of the dead holder.
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

    /// Takes the lock if it is free.
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.word
            .compare_exchange(0, current_tid(), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock, waiting at most until `deadline` (`None`: forever).
    /// `None` if the deadline passed first.
    #[inline]
    pub fn lock(&self, deadline: Option<Instant>) -> Option<Acquired> {
        let tid = current_tid();
        // Acquire: what the previous holder wrote before releasing is seen.
        match self
            .word
            .compare_exchange(0, tid, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Some(Acquired::Clean),
            Err(_) => self.lock_contended(tid, deadline),
        }
    }

    #[cold]
    fn lock_contended(&self, tid: u32, deadline: Option<Instant>) -> Option<Acquired> {
        let mut state = self.spin();
        // The holder being waited for, when it was first seen (boot ticks),
        // and when to next check that it lives.
        let mut watch: Option<(u32, u64, Instant)> = None;
        loop {
            if state & TID == 0 {
                // Free: take it marked CONTENDED, since others may sleep and
                // this holder's unlock must then wake one.
                match self.word.compare_exchange(
                    state,
                    tid | CONTENDED,
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
            if state & CONTENDED == 0 {
                // Relaxed: the bit only asks the holder for a wake-up.
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
            let holder = state & TID;
            let now = Instant::now();
            let (seen_at, check_at) = match watch {
                Some((h, seen, at)) if h == holder => (seen, at),
                _ => {
                    let w = (boot_ticks_now(), now + CHECK_EVERY);
                    watch = Some((holder, w.0, w.1));
                    w
                }
            };
            if deadline.is_some_and(|d| now >= d) {
                return None;
            }
            let until = if HOLDER_CHECKS {
                Some(deadline.map_or(check_at, |d| d.min(check_at)))
            } else {
                deadline
            };
            wait(&self.word, state, until);
            state = self.word.load(Ordering::Relaxed);
            if HOLDER_CHECKS && state & TID == holder && Instant::now() >= check_at {
                if !holder_alive(holder, seen_at) {
                    // Only one waiter's swap from this exact word succeeds.
                    match self.word.compare_exchange(
                        state,
                        tid | CONTENDED,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return Some(Acquired::OwnerDied { holder }),
                        Err(s) => {
                            state = s;
                            continue;
                        }
                    }
                }
                watch = Some((holder, seen_at, Instant::now() + CHECK_EVERY));
            }
        }
    }

    /// Spins while the lock is held and nobody sleeps, for a bounded time.
    fn spin(&self) -> u32 {
        let mut spins = SPIN_LIMIT;
        loop {
            let state = self.word.load(Ordering::Relaxed);
            if state & TID == 0 || state & CONTENDED != 0 || spins == 0 {
                return state;
            }
            spin_loop();
            spins -= 1;
        }
    }

    /// Releases the lock. The caller must hold it.
    #[inline]
    pub fn unlock(&self) {
        // Release: what the holder wrote is seen by the next one.
        if self.word.swap(0, Ordering::Release) & CONTENDED != 0 {
            self.wake_one();
        }
    }

    #[cold]
    fn wake_one(&self) {
        wake(&self.word, 1);
    }

    /// The holder's thread id, 0 if free.
    #[inline]
    pub fn holder(&self) -> u32 {
        self.word.load(Ordering::Relaxed) & TID
    }

    /// Whether the calling thread holds the lock.
    #[inline]
    pub fn held_by_me(&self) -> bool {
        // Relaxed suffices: if this thread holds it, it wrote its own tid,
        // and program order shows it; no other thread writes that tid.
        self.holder() == current_tid()
    }
}
