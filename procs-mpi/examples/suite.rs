//! The backend suite as a rank program: every check of `tests/suite` on
//! the world `procs_mpi::init()` gives, whichever launcher started it.
//!
//! ```text
//! cargo build --release -p procs-mpi --features openmpi --example suite
//! target/release/procsrun -n 4 target/release/examples/suite
//! mpirun -n 4 target/release/examples/suite
//! ```
//!
//! With `panic`, `exit` or `kill`, rank 1 panics, exits or is killed
//! (SIGKILL) while the others wait in a barrier: the job must end with a
//! failure, not hang.
//!
//! Each rank prints one line, `suite: rank R of N (backend): P passed, F
//! failed`, and every failed check with why; the process fails if any
//! check did.

#[path = "../tests/suite/mod.rs"]
mod suite;

fn main() {
    let world = match procs_mpi::init() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("suite: init: {e}");
            std::process::exit(2);
        }
    };
    use procs_mpi::Communicator;
    // `suite panic` / `exit` / `kill`: rank 1 panics, exits or is killed
    // while the others wait for it in a barrier; the job must end, not hang.
    match std::env::args().nth(1).as_deref() {
        Some("panic") if world.rank() == 1 => panic!("rank 1 panics on purpose"),
        Some("exit") if world.rank() == 1 => std::process::exit(3),
        Some("kill") if world.rank() == 1 => {
            // SAFETY: raise only sends this process a signal.
            unsafe { libc::raise(libc::SIGKILL) };
        }
        Some("panic" | "exit" | "kill") => {
            let r = world.barrier();
            println!("suite: rank {} left the barrier: {r:?}", world.rank());
            std::process::exit(4);
        }
        _ => {}
    }
    let failed = suite::run(&world);
    let total = suite::CHECKS.len();
    println!(
        "suite: rank {} of {} ({:?}): {} passed, {} failed",
        world.rank(),
        world.size(),
        world.backend(),
        total - failed.len(),
        failed.len()
    );
    for (name, why) in &failed {
        println!("suite: rank {} FAILED {name}: {why}", world.rank());
    }
    if let Err(e) = world.finalize() {
        eprintln!("suite: finalize: {e}");
        std::process::exit(2);
    }
    drop(world);
    std::process::exit(if failed.is_empty() { 0 } else { 1 });
}
