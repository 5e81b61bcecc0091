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
