//! Kill a process: a process's state before it starts, while it runs,
//! right after `terminate`, and after `join`, and its exit code: -15, for
//! the SIGTERM that ended it.
//!
//! Run it alone with `cargo run -p procs-cookbook --example process_lifecycle`.

use std::thread::sleep;
use std::time::Duration;

use procs_core::Process;

fn foo() {
    println!("Starting function");
    for i in 0..10 {
        println!("-->{i}\n");
        sleep(Duration::from_millis(10));
    }
    println!("Finished function");
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut p = Process::new(foo);
    println!("Process before execution: {p} {}", p.is_alive());
    p.start()?;
    println!("Process running: {p} {}", p.is_alive());
    p.terminate()?;
    println!("Process terminated: {p} {}", p.is_alive());
    p.join()?;
    println!("Process joined: {p} {}", p.is_alive());
    match p.exitcode() {
        Some(code) => println!("Process exit code: {code}"),
        None => println!("Process exit code: None"),
    }
    Ok(())
}
