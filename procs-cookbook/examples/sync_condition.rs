//! Synchronize with a Condition: a producer process appends items to a list
//! of at most ten, a consumer process pops them, twenty each, both under a
//! condition's lock. The producer waits while the list is full, the
//! consumer while it is empty, and each notifies the other after its
//! change.
//!
//! The recipe's sleeps (5 s for the producer, 10 s for the consumer) become
//! 10 ms and 30 ms: the producer outpaces the consumer, so the list fills up
//! and the producer has to wait for room, a few times near the end.
//!
//! Run it alone with `cargo run -p procs-cookbook --example sync_condition`.

use std::thread::sleep;
use std::time::Duration;

use procs_core::{Process, Target};
use procs_sync::{Condition, RawArray, RawValue};

/// How many items the list may hold.
const CAPACITY: usize = 10;

/// The recipe's `items` list: room for [`CAPACITY`] items in shared memory
/// and how many there are, guarded by the condition's lock. A `Vec` would
/// live in one process only.
#[derive(Clone)]
struct Items {
    slots: RawArray<u32>,
    len: RawValue<u32>,
}

impl Items {
    fn new() -> Result<Items, procs_sync::Error> {
        Ok(Items {
            slots: RawArray::new(CAPACITY)?,
            len: RawValue::new(0)?,
        })
    }

    fn len(&self) -> usize {
        self.len.get() as usize
    }

    /// Appends `item`; call it holding the lock, with room in the list.
    fn append(&self, item: u32) {
        let len = self.len.get();
        self.slots.set(len as usize, item);
        self.len.set(len + 1);
    }

    /// Removes and returns the last item; call it holding the lock, with an
    /// item in the list.
    fn pop(&self) -> u32 {
        let len = self.len.get() - 1;
        self.len.set(len);
        self.slots.get(len as usize)
    }
}

struct Consumer {
    items: Items,
    condition: Condition,
}

impl Consumer {
    fn consume(&self) {
        let items = &self.items;
        let mut guard = self.condition.lock().unwrap();
        if items.len() == 0 {
            // The recipe waits once; a wait may end without a notification,
            // so wait until there is an item.
            guard = self.condition.wait_for(guard, || items.len() > 0).unwrap();
            println!("Consumer notify : no item to consume");
        }
        items.pop();
        println!("Consumer notify : consumed 1 item");
        println!("Consumer notify : items to consume are {}", items.len());
        self.condition.notify_one().unwrap();
        drop(guard);
    }
}

impl Target for Consumer {
    const KIND: &'static str = "Consumer";

    fn run(self) {
        for _ in 0..20 {
            sleep(Duration::from_millis(30));
            self.consume();
        }
    }
}

struct Producer {
    items: Items,
    condition: Condition,
}

impl Producer {
    fn produce(&self) {
        let items = &self.items;
        let mut guard = self.condition.lock().unwrap();
        if items.len() == CAPACITY {
            guard = self
                .condition
                .wait_for(guard, || items.len() < CAPACITY)
                .unwrap();
            println!("Producer notify : items producted are {}", items.len());
            println!("Producer notify : stop the production!!");
        }
        items.append(1);
        println!("Producer notify : total items producted {}", items.len());
        self.condition.notify_one().unwrap();
        drop(guard);
    }
}

impl Target for Producer {
    const KIND: &'static str = "Producer";

    fn run(self) {
        for _ in 0..20 {
            sleep(Duration::from_millis(10));
            self.produce();
        }
    }
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let items = Items::new()?;
    let condition = Condition::new()?;
    let mut producer = Process::new(Producer {
        items: items.clone(),
        condition: condition.clone(),
    });
    let mut consumer = Process::new(Consumer { items, condition });
    producer.start()?;
    consumer.start()?;
    producer.join()?;
    consumer.join()?;
    Ok(())
}
