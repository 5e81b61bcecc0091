//! Manage a state between processes: ten worker processes each write one
//! entry to a dictionary held by a manager, and print it; the parent, once
//! they are joined, prints the whole dictionary.
//!
//! Python's `mgr = multiprocessing.Manager(); dictionary = mgr.dict()`:
//! here the proxy is typed (`DictProxy<i32, i32>`), and a clone of it goes
//! to each worker as any value does.
//!
//! Run it alone with `cargo run -p procs-cookbook --example manager_state`.

use procs_core::Process;
use procs_manager::{DictProxy, Manager};

fn worker(dictionary: DictProxy<i32, i32>, key: i32, item: i32) {
    dictionary.insert(key, item).unwrap();
    println!("key = {key} value = {item}");
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mgr = Manager::start()?;
    let dictionary = mgr.dict::<i32, i32>()?;
    let mut jobs: Vec<Process> = (0..10)
        .map(|i| {
            let d = dictionary.clone();
            Process::new(move || worker(d, i, i * 2))
        })
        .collect();
    for j in &mut jobs {
        j.start()?;
    }
    for j in &mut jobs {
        j.join()?;
    }
    let mut items = dictionary.items()?;
    items.sort();
    let shown: Vec<String> = items.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!("Results: {{{}}}", shown.join(", "));
    Ok(())
}
