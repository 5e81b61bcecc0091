//! Synchronize with a Lock: four processes share two counters. Two of them
//! increment and decrement the first counter `COUNT` times each, taking a
//! lock around every update, and it ends at 0. The other two do the same to
//! the second counter without a lock: their read-modify-writes interleave,
//! updates are lost, and it ends somewhere else, a different number each
//! run (or 0, now and then, when the two did not happen to run at once).
//!
//! The recipe's global variables become two [`RawValue`]s, plain integers in
//! shared memory (a Rust global would be copied into each process), and its
//! `threading.Lock` a [`Lock`] in shared memory. (A `procs_sync::Value` has
//! such a lock built in: `*value.lock().unwrap() += 1` is the same update.)
//!
//! Run it alone with `cargo run -p procs-cookbook --example sync_lock`.

use procs_core::Process;
use procs_sync::{Lock, RawValue};

/// Thirty times the recipe's 100,000: a process counts that far in a few
/// milliseconds, and the two without a lock must run at the same time,
/// each on a core, for long enough to lose updates.
const COUNT: u32 = 3_000_000;

// LOCK MANAGEMENT

fn increment_with_lock(shared_resource_with_lock: RawValue<i64>, shared_resource_lock: Lock) {
    for _ in 0..COUNT {
        // acquire() ... release(): the guard releases the lock when dropped.
        let _guard = shared_resource_lock.lock().unwrap();
        shared_resource_with_lock.set(shared_resource_with_lock.get() + 1);
    }
}

fn decrement_with_lock(shared_resource_with_lock: RawValue<i64>, shared_resource_lock: Lock) {
    for _ in 0..COUNT {
        let _guard = shared_resource_lock.lock().unwrap();
        shared_resource_with_lock.set(shared_resource_with_lock.get() - 1);
    }
}

// NO LOCK MANAGEMENT

fn increment_without_lock(shared_resource_with_no_lock: RawValue<i64>) {
    for _ in 0..COUNT {
        shared_resource_with_no_lock.set(shared_resource_with_no_lock.get() + 1);
    }
}

fn decrement_without_lock(shared_resource_with_no_lock: RawValue<i64>) {
    for _ in 0..COUNT {
        shared_resource_with_no_lock.set(shared_resource_with_no_lock.get() - 1);
    }
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shared_resource_with_lock = RawValue::new(0i64)?;
    let shared_resource_with_no_lock = RawValue::new(0i64)?;
    let shared_resource_lock = Lock::new()?;

    let (value, lock) = (
        shared_resource_with_lock.clone(),
        shared_resource_lock.clone(),
    );
    let mut t1 = Process::new(move || increment_with_lock(value, lock));
    let (value, lock) = (
        shared_resource_with_lock.clone(),
        shared_resource_lock.clone(),
    );
    let mut t2 = Process::new(move || decrement_with_lock(value, lock));
    let value = shared_resource_with_no_lock.clone();
    let mut t3 = Process::new(move || increment_without_lock(value));
    let value = shared_resource_with_no_lock.clone();
    let mut t4 = Process::new(move || decrement_without_lock(value));
    t1.start()?;
    t2.start()?;
    t3.start()?;
    t4.start()?;
    t1.join()?;
    t2.join()?;
    t3.join()?;
    t4.join()?;
    println!(
        "the value of shared variable with lock management is {}",
        shared_resource_with_lock.get()
    );
    println!(
        "the value of shared variable with race condition is {}",
        shared_resource_with_no_lock.get()
    );
    Ok(())
}
