//! Hello world with MPI: five ranks, each a process, each prints its rank.
//! mpi4py's
//!
//! ```python
//! comm = MPI.COMM_WORLD
//! print("hello world from process", comm.Get_rank())
//! ```
//!
//! The ranks run at once, so their lines come in any order.
//!
//! Run it alone with `cargo run -p procs-cookbook --example mpi_hello`: it
//! starts its five ranks itself with `procs_mpi::run`. Under the `procsrun`
//! launcher (`procsrun -n 5 PROGRAM`) each rank joins the launcher's world
//! through `procs_mpi::init` instead, whatever its size.

use std::io::Write;

use procs_mpi::{Communicator, World};

/// The ranks the chapter runs.
const RANKS: usize = 5;

/// What every rank does.
fn body(world: &World) -> procs_mpi::Result<()> {
    println!("hello world from process {}", world.rank());
    // A rank's process ends with this function: nothing may stay buffered.
    let _ = std::io::stdout().flush();
    Ok(())
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Alone: RANKS ranks of its own; under procsrun: the launcher's world.
    for outcome in procs_mpi::run_or_join(RANKS, |world| body(world).map_err(|e| e.to_string()))? {
        outcome?;
    }
    Ok(())
}
