//! Start a program in the background with `Popen`: the parent goes on while
//! the child runs (`poll` says `None`), then waits for it and collects its
//! exit code and output. A second child that would run too long is waited
//! for with a timeout, then killed.
//!
//! Run it alone with `cargo run -p procs-cookbook --example subprocess_popen`.

use std::time::Duration;

use procs_core::Error;
use procs_core::subprocess::{Popen, Redirect};

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut child = Popen::builder(["sh", "-c", "sleep 0.05; echo done"])
        .stdout(Redirect::Pipe)
        .spawn()?;
    println!("started {:?} as pid {}", child.args(), child.pid());
    println!(
        "poll() = {:?}: the child runs, the parent goes on",
        child.poll()?
    );

    let work: u64 = (1..=1_000_000).sum();
    println!("the parent computed {work} meanwhile");

    // communicate reads the output while waiting, so a child that prints
    // a lot never blocks on a full pipe.
    let (stdout, _) = child.communicate(None, None)?;
    println!(
        "the child exited with {:?} and printed {:?}",
        child.returncode(),
        String::from_utf8_lossy(&stdout)
    );

    // wait_timeout gives up waiting (Python's TimeoutExpired) but leaves
    // the child running.
    let mut sleeper = Popen::new(["sleep", "10"])?;
    match sleeper.wait_timeout(Duration::from_millis(20)) {
        Err(Error::TimeoutExpired { timeout, .. }) => {
            println!("after {timeout:?}, wait_timeout says TimeoutExpired: still running")
        }
        other => println!("wait_timeout = {other:?}"),
    }
    sleeper.kill()?;
    println!("killed: exit code {}", sleeper.wait()?);
    Ok(())
}
