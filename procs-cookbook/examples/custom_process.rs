//! Define a process type of your own: Python subclasses `Process` and
//! overrides `run`; in Rust a type implements `Target`. Five of them run one
//! after the other, each printing the name it was given, `MyProcess-N`.
//!
//! Run it alone with `cargo run -p procs-cookbook --example custom_process`.

use procs_core::{Process, Target, current_process};

struct MyProcess;

impl Target for MyProcess {
    const KIND: &'static str = "MyProcess";

    fn run(self) {
        println!("called run method by {}", current_process().name);
    }
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    for _ in 0..5 {
        let mut process = Process::new(MyProcess);
        process.start()?;
        process.join()?;
    }
    Ok(())
}
