//! The tour: every recipe of the cookbook, in order, each in a process of
//! its own, with its output.
//!
//! ```text
//! cargo run --release -p procs-cookbook                    # every recipe
//! cargo run --release -p procs-cookbook -- custom_process  # one recipe
//! cargo run --release -p procs-cookbook -- --list          # their names
//! ```
//!
//! Each recipe is also an example of its own
//! (`cargo run -p procs-cookbook --example custom_process`); this binary
//! includes the same files. A recipe runs as a separate execution of this
//! binary so that what happens when a program ends (daemon children
//! terminated, others joined) happens as it would for the example alone.

#![deny(unsafe_op_in_unsafe_fn)]

use std::process::ExitCode;

type RecipeResult = Result<(), Box<dyn std::error::Error>>;

macro_rules! recipes {
    ($($name:ident = $path:literal: $title:literal,)*) => {
        $(
            #[path = $path]
            mod $name;
        )*
        /// Every recipe: its name, what it shows, and its `main`.
        const RECIPES: &[(&str, &str, fn() -> RecipeResult)] = &[
            $((stringify!($name), $title, $name::main),)*
        ];
    };
}

recipes! {
    create_process = "../examples/create_process.rs": "Spawn a process",
    background_process = "../examples/background_process.rs": "Run processes in the background",
    process_lifecycle = "../examples/process_lifecycle.rs": "Kill a process, and its exit code",
    process_attributes = "../examples/process_attributes.rs": "Process attributes, as psutil shows them",
    custom_process = "../examples/custom_process.rs": "Define a process type of your own",
    subprocess_run = "../examples/subprocess_run.rs": "Run a command: capture, check, timeout",
    subprocess_popen = "../examples/subprocess_popen.rs": "A child in the background with Popen",
    sync_lock = "../examples/sync_lock.rs": "A shared counter with and without a Lock",
    sync_rlock = "../examples/sync_rlock.rs": "An RLock taken twice by its holder",
    sync_semaphore = "../examples/sync_semaphore.rs": "A Semaphore between a producer and a consumer",
    sync_condition = "../examples/sync_condition.rs": "A Condition around a bounded list",
    sync_event = "../examples/sync_event.rs": "An Event between a producer and a consumer",
    sync_barrier = "../examples/sync_barrier.rs": "Synchronize processes with a Barrier",
    shared_value_array = "../examples/shared_value_array.rs": "Share a Value and an Array with a child",
    queue_producer_consumer = "../examples/queue_producer_consumer.rs": "A producer and a consumer exchange objects through a Queue",
    joinable_queue = "../examples/joinable_queue.rs": "Wait for every job to be done with a JoinableQueue",
    manager_state = "../examples/manager_state.rs": "Manage a state between processes with a Manager's dict",
    manager_shared_list = "../examples/manager_shared_list.rs": "A managed list and a counter under a managed lock",
    manager_remote = "../examples/manager_remote.rs": "A manager on 127.0.0.1 with an authkey, and clients that connect to it",
    manager_pool = "../examples/manager_pool.rs": "A pool of workers held by a manager's server, used through a proxy",
    pipe_chain = "../examples/pipe_chain.rs": "Chain two processes with pipes",
    pool_square = "../examples/pool_square.rs": "Map a function over a list with a Pool",
    pool_progress = "../examples/pool_progress.rs": "Show progress with imap_unordered",
    start_methods = "../examples/start_methods.rs": "The fork, spawn and forkserver start methods, a queue to each child",
    mpi_hello = "../examples/mpi_hello.rs": "Hello world from every MPI rank",
    mpi_point_to_point = "../examples/mpi_point_to_point.rs": "Send objects from one rank to another",
    mpi_deadlock = "../examples/mpi_deadlock.rs": "A deadlock between two ranks, reported, and its fixes",
    mpi_broadcast = "../examples/mpi_broadcast.rs": "Broadcast a variable from rank 0 to every rank",
    mpi_scatter = "../examples/mpi_scatter.rs": "Scatter a list from rank 0, one element per rank",
    mpi_gather = "../examples/mpi_gather.rs": "Gather one value from every rank at rank 0",
    mpi_alltoall = "../examples/mpi_alltoall.rs": "Every rank sends a part of its buffer to every rank",
    mpi_reduce = "../examples/mpi_reduce.rs": "Sum the ranks' buffers element by element at rank 0",
    mpi_topology = "../examples/mpi_topology.rs": "Ranks on a 2 x 2 grid, their neighbours on the mesh and on the torus",
}

fn main() -> ExitCode {
    // A child a recipe started with the spawn or forkserver method runs
    // its function here, not the tour.
    procs_core::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => tour(),
        Some("--list") => {
            for (name, title, _) in RECIPES {
                println!("{name:24} {title}");
            }
            ExitCode::SUCCESS
        }
        Some(name) => match RECIPES.iter().find(|(n, _, _)| *n == name) {
            Some((_, _, recipe)) => match recipe() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{name}: {e}");
                    ExitCode::FAILURE
                }
            },
            None => {
                eprintln!("no recipe named {name:?}; `--list` shows them");
                ExitCode::from(2)
            }
        },
    }
}

/// Runs every recipe in order, each as its own process, and says which failed.
fn tour() -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("cannot find this program to run its recipes: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = Vec::new();
    for (i, (name, title, _)) in RECIPES.iter().enumerate() {
        println!("\n=== {}/{} {name}: {title}", i + 1, RECIPES.len());
        let status = std::process::Command::new(&exe).arg(name).status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                println!("=== {name} failed: {s}");
                failed.push(*name);
            }
            Err(e) => {
                println!("=== {name} did not start: {e}");
                failed.push(*name);
            }
        }
    }
    if failed.is_empty() {
        println!("\nAll {} recipes ran.", RECIPES.len());
        ExitCode::SUCCESS
    } else {
        println!("\nFailed: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}
