//! Run processes in the background: a daemon and a non-daemon process run
//! the same function. When the program ends, the non-daemon process is
//! waited for, while the daemon is terminated, as in Python: whatever the
//! daemon had not printed by then is never printed.
//!
//! Run it alone with `cargo run -p procs-cookbook --example background_process`.

use std::thread::sleep;
use std::time::Duration;

use procs_core::{Process, current_process};

fn foo() {
    let name = current_process().name;
    println!("Starting {name} \n");
    if name == "background_process" {
        for i in 0..5 {
            println!("---> {i} \n");
        }
        sleep(Duration::from_millis(10));
    } else {
        for i in 5..10 {
            println!("---> {i} \n");
        }
        sleep(Duration::from_millis(10));
    }
    println!("Exiting {name} \n");
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut background_process = Process::builder()
        .name("background_process")
        .daemon(true)
        .build(foo);
    let mut no_background_process = Process::builder()
        .name("NO_background_process")
        .daemon(false)
        .build(foo);
    background_process.start()?;
    no_background_process.start()?;
    // No join: at exit, procs terminates the daemon and joins the other.
    Ok(())
}
