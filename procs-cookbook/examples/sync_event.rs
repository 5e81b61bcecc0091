//! Synchronize with an Event: a producer process appends random numbers to
//! a list in shared memory and sets an event; a consumer process waits for
//! the event, pops the number, and clears the event once the list is empty.
//!
//! In the recipe the producer clears the event right after setting it, and
//! the consumer loops forever: a consumer that is not waiting at that
//! instant misses the item, and the program never ends. Here the consumer
//! clears the event, under the list's lock, when it has emptied the list, so
//! the event is set whenever the list holds an item, no item is missed, and
//! the consumer stops after the producer's five items.
//!
//! Run it alone with `cargo run -p procs-cookbook --example sync_event`.

use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use procs_core::{Process, Target, current_process};
use procs_sync::{Event, Lock, RawArray, RawValue};

/// How many items the producer makes.
const ITEMS: usize = 5;

/// The recipe's `items` list: room for [`ITEMS`] numbers in shared memory and
/// how many there are, both guarded by `lock`. A `Vec` would live in one
/// process only.
#[derive(Clone)]
struct Items {
    lock: Lock,
    slots: RawArray<u32>,
    len: RawValue<u32>,
}

impl Items {
    fn new() -> Result<Items, procs_sync::Error> {
        Ok(Items {
            lock: Lock::new()?,
            slots: RawArray::new(ITEMS)?,
            len: RawValue::new(0)?,
        })
    }

    /// Appends `item`; call it holding `lock`.
    fn append(&self, item: u32) {
        let len = self.len.get();
        self.slots.set(len as usize, item);
        self.len.set(len + 1);
    }

    /// Removes and returns the last item, if any; call it holding `lock`.
    fn pop(&self) -> Option<u32> {
        let len = self.len.get().checked_sub(1)?;
        self.len.set(len);
        Some(self.slots.get(len as usize))
    }

    /// Whether the list is empty; call it holding `lock`.
    fn is_empty(&self) -> bool {
        self.len.get() == 0
    }
}

struct Consumer {
    items: Items,
    event: Event,
}

impl Target for Consumer {
    const KIND: &'static str = "Consumer";

    fn run(self) {
        let name = current_process().name;
        for _ in 0..ITEMS {
            sleep(Duration::from_millis(10));
            // The producer sets the event before it releases the list's
            // lock, and it is cleared only when the list is empty: once it
            // is set, an item waits.
            self.event.wait();
            let _guard = self.items.lock.lock().unwrap();
            let item = self
                .items
                .pop()
                .expect("the event is set only while an item waits");
            println!("Consumer notify : {item} popped from list by {name}");
            if self.items.is_empty() {
                self.event.clear();
                println!("Consumer notify : event cleared by {name} \n");
            }
        }
    }
}

struct Producer {
    items: Items,
    event: Event,
}

impl Target for Producer {
    const KIND: &'static str = "Producer";

    fn run(self) {
        let name = current_process().name;
        let mut random = XorShift::new();
        for _ in 0..ITEMS {
            sleep(Duration::from_millis(30));
            let item = random.randint(0, 256);
            let _guard = self.items.lock.lock().unwrap();
            self.items.append(item);
            println!("Producer notify : item N° {item} appended to list by {name}");
            println!("Producer notify : event set by {name}");
            self.event.set();
        }
    }
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let items = Items::new()?;
    let event = Event::new()?;
    let mut t1 = Process::new(Producer {
        items: items.clone(),
        event: event.clone(),
    });
    let mut t2 = Process::new(Consumer { items, event });
    t1.start()?;
    t2.start()?;
    t1.join()?;
    t2.join()?;
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
