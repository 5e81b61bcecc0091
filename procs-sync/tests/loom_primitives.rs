//! Model checks of the semaphore, event, condition variable (over a lock
//! and over a re-entrant lock) and barrier:
//! no lost wake-up (a forgotten wake shows as a loom deadlock), counts kept.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release -p procs-sync --test loom_primitives`
#![cfg(loom)]

use std::time::Instant;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use procs_sync::raw::barrier::RawBarrier;
use procs_sync::raw::condvar::RawCondvar;
use procs_sync::raw::event::RawEvent;
use procs_sync::raw::lock::RawLock;
use procs_sync::raw::rlock::RawRLock;
use procs_sync::raw::semaphore::RawSemaphore;

#[test]
fn semaphore_release_wakes_a_sleeping_acquirer() {
    loom::model(|| {
        let sem = Arc::new(RawSemaphore::new(0));
        let s = sem.clone();
        let t = thread::spawn(move || assert!(s.acquire(None)));
        assert!(sem.release(1, None));
        t.join().unwrap();
        assert_eq!(sem.value(), 0);
    });
}

#[test]
fn semaphore_counts_permits_exactly() {
    loom::model(|| {
        let sem = Arc::new(RawSemaphore::new(1));
        let inside = Arc::new(UnsafeCell::new(0u32));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (sem, inside) = (sem.clone(), inside.clone());
                thread::spawn(move || {
                    assert!(sem.acquire(None));
                    // SAFETY: one permit: loom checks that no two threads are here.
                    inside.with_mut(|p| unsafe { *p += 1 });
                    assert!(sem.release(1, None));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(sem.value(), 1);
        assert!(!sem.release(1, Some(1)), "bound exceeded");
    });
}

#[test]
fn semaphore_timeout_takes_no_permit_it_does_not_report() {
    loom::model(|| {
        let sem = Arc::new(RawSemaphore::new(0));
        let s = sem.clone();
        let t = thread::spawn(move || s.acquire(Some(Instant::now())));
        sem.release(1, None);
        let got = t.join().unwrap();
        assert_eq!(sem.value(), if got { 0 } else { 1 });
    });
}

#[test]
fn event_set_wakes_a_waiter() {
    loom::model(|| {
        let ev = Arc::new(RawEvent::new());
        let e = ev.clone();
        let t = thread::spawn(move || assert!(e.wait(None)));
        ev.set();
        t.join().unwrap();
        assert!(ev.is_set());
    });
}

#[test]
fn event_pulses_are_never_lost_on_a_waiter() {
    // Set, clear, set: wherever the waiter starts, it wakes (a waiter that
    // slept through a notification would be a loom deadlock).
    loom::model(|| {
        let ev = Arc::new(RawEvent::new());
        let e = ev.clone();
        let t = thread::spawn(move || e.wait(None));
        ev.set();
        ev.clear();
        ev.set();
        assert!(t.join().unwrap());
    });
}

#[test]
fn condvar_notify_under_the_lock_is_never_lost() {
    loom::model(|| {
        let lock = Arc::new(RawLock::new());
        let cv = Arc::new(RawCondvar::new());
        let ready = Arc::new(UnsafeCell::new(false));
        let (l, c, r) = (lock.clone(), cv.clone(), ready.clone());
        let waiter = thread::spawn(move || {
            l.lock(None);
            // SAFETY: read under the lock.
            while !r.with(|p| unsafe { *p }) {
                // SAFETY: this thread holds the lock.
                unsafe { c.wait(&l, None) };
            }
            // SAFETY: this thread holds the lock.
            unsafe { l.unlock() };
        });
        lock.lock(None);
        // SAFETY: written under the lock.
        ready.with_mut(|p| unsafe { *p = true });
        cv.notify(1);
        // SAFETY: this thread holds the lock.
        unsafe { lock.unlock() };
        waiter.join().unwrap();
    });
}

#[test]
fn condvar_over_an_rlock_releases_every_level_and_restores_them() {
    loom::model(|| {
        let lock = Arc::new(RawRLock::new());
        let cv = Arc::new(RawCondvar::new());
        let ready = Arc::new(UnsafeCell::new(false));
        let (l, c, r) = (lock.clone(), cv.clone(), ready.clone());
        let waiter = thread::spawn(move || {
            l.lock(None);
            l.lock(None);
            // SAFETY: read under the lock.
            while !r.with(|p| unsafe { *p }) {
                // SAFETY: this thread holds the lock.
                unsafe { c.wait_rlock(&l, None) };
                assert_eq!(l.depth(), 2);
            }
            l.unlock().unwrap();
            l.unlock().unwrap();
        });
        // The waiter may hold the lock twice here: it is free for this
        // thread only once the wait released both levels.
        lock.lock(None);
        // SAFETY: written under the lock.
        ready.with_mut(|p| unsafe { *p = true });
        cv.notify(1);
        lock.unlock().unwrap();
        waiter.join().unwrap();
        assert_eq!(lock.holder(), 0);
    });
}

#[test]
fn barrier_releases_both_parties_with_distinct_indexes() {
    loom::model(|| {
        let b = Arc::new(RawBarrier::new(2));
        let b2 = b.clone();
        let t = thread::spawn(move || b2.wait(None, || true).unwrap());
        let mine = b.wait(None, || true).unwrap();
        let theirs = t.join().unwrap();
        assert_eq!(mine + theirs, 1);
        assert_eq!(b.n_waiting(), 0);
        assert!(!b.broken());
    });
}

#[test]
fn barrier_can_be_reused_round_after_round() {
    loom::model(|| {
        let b = Arc::new(RawBarrier::new(2));
        let b2 = b.clone();
        let t = thread::spawn(move || {
            b2.wait(None, || true).unwrap();
            b2.wait(None, || true).unwrap();
        });
        b.wait(None, || true).unwrap();
        b.wait(None, || true).unwrap();
        t.join().unwrap();
    });
}

#[test]
fn barrier_timeout_breaks_it_for_the_other_party() {
    loom::model(|| {
        let b = Arc::new(RawBarrier::new(3));
        let b2 = b.clone();
        let t = thread::spawn(move || b2.wait(None, || true));
        // Times out at once (the model's deadline), breaking the barrier.
        assert!(b.wait(Some(Instant::now()), || true).is_err());
        assert!(t.join().unwrap().is_err());
        assert!(b.broken());
        b.reset();
        assert!(!b.broken());
    });
}
