//! Show progress on long work: `imap_unordered` yields each result as soon
//! as a worker has it, so a progress bar moves as the work is done, with
//! indicatif's `ProgressIterator` (the iterator is a plain `Iterator`).
//!
//! Twenty slow tasks (tens of milliseconds each, seconds in the Python
//! recipe) run on a pool of four; the bar advances as each finishes, in
//! whatever order they finish. (indicatif draws the bar only on a
//! terminal.)
//!
//! Run it alone with `cargo run -p procs-cookbook --example pool_progress`.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressIterator, ProgressStyle};
use procs_pool::Pool;

/// How many tasks.
const TASKS: u64 = 20;

/// A slow task: sleeps a little, then returns its number squared.
fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(10 + 5 * (x % 4)));
    x * x
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new(4)?;
    let bar = ProgressBar::new(TASKS)
        .with_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")?);
    let mut results = Vec::new();
    for result in pool
        .imap_unordered(slow_square, 0..TASKS)?
        .progress_with(bar.clone())
    {
        results.push(result?);
    }
    bar.finish_with_message("done");
    results.sort_unstable();
    println!("{} tasks done, results sorted: {results:?}", results.len());
    Ok(())
}
