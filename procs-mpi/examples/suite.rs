//! The backend suite as a rank program: every check of `tests/suite` on
//! the world `procs_mpi::init()` gives, whichever launcher started it.
//!
//! ```text
//! cargo build --release -p procs-mpi --features openmpi --example suite
//! target/release/procsrun -n 4 target/release/examples/suite
//! mpirun -n 4 target/release/examples/suite
//! ```
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
