//! Synchronize with a Semaphore: five rounds of a producer and a consumer
//! process. The semaphore starts at 0, so the consumer waits in `acquire`
//! until the producer has made an item and released it; then the consumer
//! reads the item the producer made.
//!
//! The recipe's global `item` becomes a [`Value`] in shared memory (a Rust
//! global would be copied into each process), and its 10 s sleep 20 ms.
//!
//! Run it alone with `cargo run -p procs-cookbook --example sync_semaphore`.

use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use procs_core::Process;
use procs_sync::{Semaphore, Value};

fn consumer(semaphore: Semaphore, item: Value<u32>) {
    println!("consumer is waiting.");
    // Acquire the semaphore: wait until the producer releases it.
    semaphore.acquire();
    // The consumer has access to the shared resource.
    println!("Consumer notify : consumed item number {} ", item.get());
}

fn producer(semaphore: Semaphore, item: Value<u32>) {
    sleep(Duration::from_millis(20));
    // Create a random item.
    let new_item = XorShift::new().randint(0, 1000);
    item.set(new_item);
    println!("producer notify : produced item number {new_item}");
    // Release the semaphore, incrementing its counter by one and waking
    // the consumer that waits for it.
    semaphore.release();
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The initial value of the counter: no permit until the producer gives one.
    let semaphore = Semaphore::new(0)?;
    let item = Value::new(0u32)?;
    for _ in 0..5 {
        let (s, i) = (semaphore.clone(), item.clone());
        let mut t1 = Process::new(move || producer(s, i));
        let (s, i) = (semaphore.clone(), item.clone());
        let mut t2 = Process::new(move || consumer(s, i));
        t1.start()?;
        t2.start()?;
        t1.join()?;
        t2.join()?;
    }
    println!("program terminated");
    Ok(())
}

/// A xorshift64 generator, seeded from the clock and the pid: random enough
/// for a recipe, with no dependency.
struct XorShift(u64);

impl XorShift {
    fn new() -> XorShift {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = nanos ^ (u64::from(std::process::id()) << 32);
        // Never zero, which xorshift would keep forever.
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `low..=high`, as Python's `random.randint`.
    fn randint(&mut self, low: u32, high: u32) -> u32 {
        let span = u64::from(high - low) + 1;
        low + (self.next() % span) as u32
    }
}
