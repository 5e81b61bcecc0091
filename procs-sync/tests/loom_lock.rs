//! Model checks of the raw lock and re-entrant lock: every interleaving of
//! two or three threads standing in for processes.
//!
//! The model's futex wakes exactly as many sleepers as asked, in the order
//! they slept, and a timed wait may take a wake-up and still time out (see
//! `raw::sync`): a wake-up the lock forgets, or one a leaving waiter does
//! not pass on, shows as a loom deadlock.
//!
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release -p procs-sync --test loom_lock`
#![cfg(loom)]

use std::time::{Duration, Instant};

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use procs_sync::raw::lock::{Acquired, NotReleased, RawLock};
use procs_sync::raw::rlock::RawRLock;

/// A deadline the model never reaches by the clock: its timed waits end by
/// the model's choice (see `raw::sync`), not by the time of the run.
fn far() -> Option<Instant> {
    Instant::now().checked_add(Duration::from_secs(3600))
}

#[test]
fn lock_excludes_and_loses_no_increment() {
    loom::model(|| {
        let lock = Arc::new(RawLock::new());
        let data = Arc::new(UnsafeCell::new(0u32));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (lock, data) = (lock.clone(), data.clone());
                thread::spawn(move || {
                    assert_eq!(lock.lock(None), Some(Acquired::Clean));
                    // SAFETY: loom checks that no two threads are here at once.
                    data.with_mut(|p| unsafe { *p += 1 });
                    // SAFETY: this thread holds the lock.
                    unsafe { lock.unlock() };
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(lock.try_lock());
        // SAFETY: the lock is held.
        data.with(|p| assert_eq!(unsafe { *p }, 2));
        // SAFETY: this thread holds the lock.
        unsafe { lock.unlock() };
        assert_eq!(lock.holder(), 0);
    });
}

#[test]
fn try_lock_and_timeout_never_admit_two_holders() {
    loom::model(|| {
        let lock = Arc::new(RawLock::new());
        let data = Arc::new(UnsafeCell::new(0u32));
        let (l2, d2) = (lock.clone(), data.clone());
        let t = thread::spawn(move || {
            if let Some(_g) = l2.lock_guard(Some(Instant::now())) {
                // SAFETY: loom checks exclusion.
                d2.with_mut(|p| unsafe { *p += 1 });
                1
            } else {
                0
            }
        });
        let mine = if lock.try_lock() {
            // SAFETY: loom checks exclusion.
            data.with_mut(|p| unsafe { *p += 1 });
            // SAFETY: this thread holds the lock.
            unsafe { lock.unlock() };
            1
        } else {
            0
        };
        let theirs = t.join().unwrap();
        // SAFETY: both threads are done.
        data.with(|p| assert_eq!(unsafe { *p }, mine + theirs));
        assert_eq!(lock.holder(), 0);
    });
}

#[test]
fn an_elapsed_deadline_leaves_the_word_as_it_was() {
    // A take with no time left on a held lock writes nothing: the holder's
    // unlock then owes no wake-up (the CONTENDED bit stays clear).
    loom::model(|| {
        let lock = Arc::new(RawLock::new());
        assert!(lock.try_lock());
        let l = lock.clone();
        let me = lock.holder();
        let t = thread::spawn(move || l.lock(Some(Instant::now())));
        assert_eq!(t.join().unwrap(), None);
        assert_eq!(lock.holder(), me);
        assert!(lock.held_by_me());
        assert!(!lock.has_sleepers());
        // SAFETY: this thread holds the lock.
        unsafe { lock.unlock() };
    });
}

#[test]
fn a_sleeping_waiter_is_woken_by_unlock() {
    // Three threads: two contend while the third holds, so that one sleeps
    // with the CONTENDED bit set and must get the lock after the releases;
    // and a thread woken from its sleep must take the lock marked, or the
    // other sleeper is never woken.
    loom::model(|| {
        let lock = Arc::new(RawLock::new());
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let lock = lock.clone();
                thread::spawn(move || {
                    drop(lock.lock_guard(None).expect("no deadline"));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(lock.holder(), 0);
    });
}

#[test]
fn a_timed_waiter_that_gives_up_passes_its_wake_on() {
    // The holder releases and retakes the lock; a timed waiter may take the
    // release's one wake-up and then time out, while another sleeps: the
    // one that leaves must make the holder's next unlock wake the sleeper.
    loom::model(|| {
        let lock = Arc::new(RawLock::new());
        assert!(lock.try_lock());
        let timed = {
            let lock = lock.clone();
            thread::spawn(move || lock.lock_guard(far()).is_some())
        };
        let sleeper = {
            let lock = lock.clone();
            thread::spawn(move || drop(lock.lock_guard(None).expect("no deadline")))
        };
        // SAFETY: this thread holds the lock.
        unsafe { lock.unlock() };
        let again = lock.lock_guard(None).expect("no deadline");
        drop(again);
        sleeper.join().unwrap();
        timed.join().unwrap();
        assert_eq!(lock.holder(), 0);
    });
}

#[test]
fn a_lock_acquired_by_one_thread_is_released_by_another() {
    loom::model(|| {
        let lock = Arc::new(RawLock::new());
        let data = Arc::new(UnsafeCell::new(0u32));
        assert_eq!(lock.acquire(None), Some(Acquired::Clean));
        assert!(lock.is_acquired());
        assert!(!lock.held_by_me());
        let waiter = {
            let (lock, data) = (lock.clone(), data.clone());
            thread::spawn(move || {
                let _g = lock.lock_guard(None).expect("no deadline");
                // SAFETY: loom checks exclusion.
                data.with_mut(|p| unsafe { *p += 1 });
            })
        };
        let releaser = {
            let lock = lock.clone();
            thread::spawn(move || lock.release())
        };
        assert_eq!(releaser.join().unwrap(), Ok(()));
        waiter.join().unwrap();
        assert_eq!(lock.release(), Err(NotReleased::NotLocked));
        // SAFETY: both threads are done.
        data.with(|p| assert_eq!(unsafe { *p }, 1));
    });
}

#[test]
fn release_leaves_a_guarded_hold_alone() {
    loom::model(|| {
        let lock = Arc::new(RawLock::new());
        let guard = lock.lock_guard(None).expect("no deadline");
        let me = lock.holder();
        let l = lock.clone();
        let other = thread::spawn(move || l.release());
        assert_eq!(
            other.join().unwrap(),
            Err(NotReleased::Guarded { holder: me })
        );
        assert!(lock.held_by_me());
        drop(guard);
        assert_eq!(lock.holder(), 0);
    });
}

#[test]
fn rlock_reenters_and_excludes_others() {
    loom::model(|| {
        let lock = Arc::new(RawRLock::new());
        let data = Arc::new(UnsafeCell::new(0u32));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (lock, data) = (lock.clone(), data.clone());
                thread::spawn(move || {
                    lock.lock(None);
                    lock.lock(None);
                    assert_eq!(lock.depth(), 2);
                    // SAFETY: loom checks exclusion.
                    data.with_mut(|p| unsafe { *p += 1 });
                    lock.unlock().unwrap();
                    assert_eq!(lock.depth(), 1);
                    // SAFETY: still held once.
                    data.with_mut(|p| unsafe { *p += 1 });
                    lock.unlock().unwrap();
                    assert!(lock.unlock().is_err());
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: all threads are done.
        data.with(|p| assert_eq!(unsafe { *p }, 4));
        assert_eq!(lock.holder(), 0);
    });
}
