//! Model checks of the raw lock and re-entrant lock: every interleaving of
//! two or three threads standing in for processes.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release -p procs-sync --test loom_lock`
#![cfg(loom)]

use std::time::Instant;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use procs_sync::raw::lock::{Acquired, RawLock};
use procs_sync::raw::rlock::RawRLock;

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
                    lock.unlock();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(lock.try_lock());
        // SAFETY: the lock is held.
        data.with(|p| assert_eq!(unsafe { *p }, 2));
        lock.unlock();
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
            if l2.lock(Some(Instant::now())).is_some() {
                // SAFETY: loom checks exclusion.
                d2.with_mut(|p| unsafe { *p += 1 });
                l2.unlock();
                1
            } else {
                0
            }
        });
        let mine = if lock.try_lock() {
            // SAFETY: loom checks exclusion.
            data.with_mut(|p| unsafe { *p += 1 });
            lock.unlock();
            1
        } else {
            0
        };
        let theirs = t.join().unwrap();
        // SAFETY: both threads are done.
        data.with(|p| assert_eq!(unsafe { *p }, mine + theirs));
    });
}

#[test]
fn a_sleeping_waiter_is_woken_by_unlock() {
    // Three threads: two contend while the third holds, so one sleeps with
    // the CONTENDED bit set and must get the lock after the releases.
    loom::model(|| {
        let lock = Arc::new(RawLock::new());
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let lock = lock.clone();
                thread::spawn(move || {
                    lock.lock(None);
                    lock.unlock();
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
