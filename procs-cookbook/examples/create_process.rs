//! Spawn a process: six processes, one after the other, each running
//! `my_func(i)`, which prints its number and then counts up to it.
//!
//! Run it alone with `cargo run -p procs-cookbook --example create_process`.

use procs_core::Process;

fn my_func(i: usize) {
    println!("calling myFunc from process n°: {i}");
    for j in 0..i {
        println!("output from myFunc is :{j}");
    }
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    for i in 0..6 {
        let mut process = Process::new(move || my_func(i));
        process.start()?;
        process.join()?;
    }
    Ok(())
}
