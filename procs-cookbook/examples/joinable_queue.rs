//! Wait for a queue's work to be done with a JoinableQueue: three worker
//! processes take jobs from the queue and report each one done
//! (`task_done`); the main process puts ten jobs, waits until every one is
//! done (`join`), says so, and then stops the workers with one `None` each,
//! the "poison pill" of the Python recipes.
//!
//! Python's recipe makes the workers daemons that loop forever and are
//! killed when the program ends. Here they end on their own: each stops at
//! the `None` it takes (and reports it done too, so that the count of
//! unfinished tasks ends at zero), and the main process joins them.
//!
//! Run it alone with `cargo run -p procs-cookbook --example joinable_queue`.

use std::thread::sleep;
use std::time::Duration;

use procs_core::{Process, Target, current_process};
use procs_ipc::JoinableQueue;

/// How many worker processes take jobs.
const WORKERS: usize = 3;

/// How many jobs the main process puts.
const JOBS: u32 = 10;

/// A worker: takes jobs until it takes `None`, reporting each one done.
struct Worker {
    queue: JoinableQueue<Option<u32>>,
}

impl Target for Worker {
    const KIND: &'static str = "Worker";

    fn run(self) {
        let name = current_process().name;
        loop {
            let Some(item) = self.queue.get().unwrap() else {
                // The poison pill: no more jobs for this worker.
                self.queue.task_done().unwrap();
                break;
            };
            println!("{name}: working on {item}");
            sleep(Duration::from_millis(20));
            println!("{name}: finished {item}");
            self.queue.task_done().unwrap();
        }
    }
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let queue = JoinableQueue::<Option<u32>>::new()?;
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let mut worker = Process::new(Worker {
            queue: queue.clone(),
        });
        worker.start()?;
        workers.push(worker);
    }
    for item in 0..JOBS {
        queue.put(Some(item))?;
    }
    // Blocks until every job put has been reported done.
    queue.join()?;
    println!("All work completed");
    // One poison pill per worker, then wait for them to end.
    for _ in 0..WORKERS {
        queue.put(None)?;
    }
    for worker in &mut workers {
        worker.join()?;
    }
    Ok(())
}
