//! Synchronize with an RLock: a box of items in shared memory, an adder
//! process that puts five items in and a remover process that takes five
//! out. The box's `add` and `remove` take its re-entrant lock and then call
//! `execute`, which takes the same lock again: with a plain `Lock` the
//! second take would wait forever for the first, with an `RLock` the
//! holder takes it again. The box ends empty.
//!
//! Run it alone with `cargo run -p procs-cookbook --example sync_rlock`.

use std::thread::sleep;
use std::time::Duration;

use procs_core::Process;
use procs_sync::{RLock, RawValue};

/// The recipe's `Box` (a name Rust's prelude has taken): a count of items
/// in shared memory, guarded by a re-entrant lock. Cloning it gives another
/// handle on the same box, for another process.
#[derive(Clone)]
struct ItemBox {
    lock: RLock,
    total_items: RawValue<i64>,
}

impl ItemBox {
    fn new() -> Result<ItemBox, procs_sync::Error> {
        Ok(ItemBox {
            lock: RLock::new()?,
            total_items: RawValue::new(0)?,
        })
    }

    fn execute(&self, n: i64) {
        let _guard = self.lock.lock().unwrap();
        self.total_items.set(self.total_items.get() + n);
    }

    fn add(&self) {
        let _guard = self.lock.lock().unwrap();
        self.execute(1);
    }

    fn remove(&self) {
        let _guard = self.lock.lock().unwrap();
        self.execute(-1);
    }
}

// These two functions run in separate processes and call the box's methods.

fn adder(item_box: ItemBox, mut items: u32) {
    while items > 0 {
        println!("adding 1 item in the box\n");
        item_box.add();
        sleep(Duration::from_millis(20));
        items -= 1;
    }
}

fn remover(item_box: ItemBox, mut items: u32) {
    while items > 0 {
        println!("removing 1 item in the box");
        item_box.remove();
        sleep(Duration::from_millis(20));
        items -= 1;
    }
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let items = 5;
    println!("putting {items} items in the box ");
    let item_box = ItemBox::new()?;
    let b = item_box.clone();
    let mut t1 = Process::new(move || adder(b, items));
    let b = item_box.clone();
    let mut t2 = Process::new(move || remover(b, items));
    t1.start()?;
    t2.start()?;
    t1.join()?;
    t2.join()?;
    println!(
        "{} items still remain in the box ",
        item_box.total_items.get()
    );
    Ok(())
}
