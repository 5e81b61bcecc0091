//! Exchange objects through a queue: a producer process puts ten random
//! numbers into a queue, a consumer process takes them out, each at its own
//! pace, and both print what they did.
//!
//! In the recipe the consumer stops when it finds the queue empty
//! (`if queue.empty(): break`), which can happen before the producer has
//! put its first item, or while it sleeps between two: the consumer then
//! ends early and leaves items behind. Here the producer holds a handle that
//! only puts (`queue.sender()`), the consumer one that only gets
//! (`queue.receiver()`), and the main process keeps none: the consumer's
//! `get` waits while the producer may still put, and answers
//! `Err(Error::Disconnected)` once the producer has ended and the queue is
//! drained. That is when the consumer says the queue is empty and stops,
//! having taken all ten items, every run.
//!
//! Run it alone with `cargo run -p procs-cookbook --example queue_producer_consumer`.

use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use procs_core::{Process, Target, current_process};
use procs_ipc::{Error, Queue, QueueReceiver, QueueSender};

/// The recipe's `producer` class: a process that puts ten random numbers.
struct Producer {
    queue: QueueSender<u32>,
}

impl Target for Producer {
    const KIND: &'static str = "Producer";

    fn run(self) {
        let name = current_process().name;
        let mut random = XorShift::new();
        for _ in 0..10 {
            let item = random.randint(0, 256);
            self.queue.put(item).unwrap();
            println!("Process Producer : item {item} appended to queue {name}");
            sleep(Duration::from_millis(10));
            println!("The size of queue is {}", self.queue.len());
        }
    }
}

/// The recipe's `consumer` class: a process that takes items until the
/// queue is empty for good.
struct Consumer {
    queue: QueueReceiver<u32>,
}

impl Target for Consumer {
    const KIND: &'static str = "Consumer";

    fn run(self) {
        let name = current_process().name;
        loop {
            sleep(Duration::from_millis(20));
            match self.queue.get() {
                Ok(item) => {
                    println!("Process Consumer : item {item} popped from by {name} \n");
                    sleep(Duration::from_millis(10));
                }
                // Drained, and the producer is gone: nothing more will come.
                Err(Error::Disconnected) => {
                    println!("the queue is empty");
                    break;
                }
                Err(e) => panic!("{name}: {e}"),
            }
        }
    }
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let queue = Queue::<u32>::new()?;
    let mut process_producer = Process::new(Producer {
        queue: queue.sender(),
    });
    let mut process_consumer = Process::new(Consumer {
        queue: queue.receiver(),
    });
    // This process neither puts nor gets: dropping its handle leaves the
    // producer as the only one that can put, so the consumer's wait ends
    // with the producer.
    drop(queue);
    process_producer.start()?;
    process_consumer.start()?;
    process_producer.join()?;
    process_consumer.join()?;
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
