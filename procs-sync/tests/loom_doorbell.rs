//! Model checks of a sleep on several doorbells: a ring on any one of them
//! wakes the sleeper (a wake-up that never comes is a loom deadlock).
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release -p procs-sync --test loom_doorbell`
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use procs_sync::raw::notify::Doorbell;

/// A publisher sets flag `which` and rings its bell; the sleeper sleeps on
/// both bells until it sees the flag.
fn one_ring_wakes_a_sleeper_on_two(which: usize) {
    loom::model(move || {
        let bells = Arc::new([Doorbell::new(), Doorbell::new()]);
        let flags = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let (b, f) = (bells.clone(), flags.clone());
        let publisher = thread::spawn(move || {
            f[which].store(true, Ordering::Release);
            b[which].ring();
        });
        let both = [&bells[0], &bells[1]];
        let ready = || flags[which].load(Ordering::Acquire);
        while !ready() {
            Doorbell::sleep_any(&both, ready, None);
        }
        publisher.join().unwrap();
    });
}

#[test]
fn a_ring_on_the_first_bell_wakes_a_sleeper_on_both() {
    one_ring_wakes_a_sleeper_on_two(0);
}

#[test]
fn a_ring_on_the_second_bell_wakes_a_sleeper_on_both() {
    one_ring_wakes_a_sleeper_on_two(1);
}

/// A publisher publishes under a lock and rings after releasing it, with
/// no fence of its own (`ring_after_release`); the sleeper reads the lock
/// after registering (`observe`). No wake-up is lost: a loom deadlock
/// otherwise. The flag is read relaxed: what makes it seen is the lock's
/// release, as the item under a queue's put lock. (loom cannot model the
/// order of sequentially consistent accesses that lets the release stand
/// for a fence, so under loom `ring_after_release` fences: the model checks
/// the sleeper's loop and wake-up; that the release stands for the fence is
/// argued by hand in `Doorbell::ring_after_release`.)
#[test]
fn a_ring_after_a_release_wakes_a_sleeper_that_observes_the_lock() {
    loom::model(|| {
        let bell = Arc::new(Doorbell::new());
        let lock = Arc::new(procs_sync::raw::lock::RawLock::new());
        let flag = Arc::new(AtomicBool::new(false));
        let (b, l, f) = (bell.clone(), lock.clone(), flag.clone());
        let publisher = thread::spawn(move || {
            assert!(l.lock(None).is_some());
            f.store(true, Ordering::Relaxed);
            // SAFETY: this thread holds the lock.
            unsafe { l.unlock() };
            b.ring_after_release();
        });
        let ready = || {
            lock.observe();
            flag.load(Ordering::Relaxed)
        };
        while !ready() {
            bell.sleep(ready, None);
        }
        publisher.join().unwrap();
    });
}
