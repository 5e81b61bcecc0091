//! Several processes append to a managed list and count their work in a
//! managed namespace, the read-modify-write of the counter under a managed
//! lock; the parent prints the list and the count.
//!
//! Python's `m.list()`, `m.Namespace()` and `m.Lock()`: the proxies go to
//! the workers as arguments. (`Namespace::add` alone would be atomic on
//! the server; the lock shows the general way, for a change of several
//! steps.)
//!
//! Run it alone with `cargo run -p procs-cookbook --example manager_shared_list`.

use procs_core::Process;
use procs_manager::{ListProxy, LockProxy, Manager, Namespace};

fn worker(n: u32, items: ListProxy<String>, ns: Namespace, lock: LockProxy) {
    for i in 0..3 {
        items.push(format!("worker {n} item {i}")).unwrap();
        let _held = lock.acquire().unwrap();
        let count: i64 = ns.get("count").unwrap();
        ns.set("count", &(count + 1)).unwrap();
    }
    println!("worker {n} done");
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let m = Manager::start()?;
    let items = m.list::<String>()?;
    let ns = m.namespace()?;
    ns.set("count", &0i64)?;
    let lock = m.lock()?;
    let mut workers: Vec<Process> = (0..4)
        .map(|n| {
            let (items, ns, lock) = (items.clone(), ns.clone(), lock.clone());
            Process::new(move || worker(n, items, ns, lock))
        })
        .collect();
    for w in &mut workers {
        w.start()?;
    }
    for w in &mut workers {
        w.join()?;
    }
    let mut all = items.to_vec()?;
    all.sort();
    println!("{} items:", all.len());
    for item in &all {
        println!("  {item}");
    }
    println!("count = {}", ns.get::<i64>("count")?);
    Ok(())
}
