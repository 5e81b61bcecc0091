//! Broadcast with MPI: rank 0 shares `variable_to_share = 100` with every
//! rank in one collective call. mpi4py's
//!
//! ```python
//! variable_to_share = 100 if rank == 0 else None
//! variable_to_share = comm.bcast(variable_to_share, root=0)
//! print("process = %d" % rank + " variable shared = %d " % variable_to_share)
//! ```
//!
//! Run it alone with `cargo run -p procs-cookbook --example mpi_broadcast`: it
//! starts its ten ranks itself with `procs_mpi::run`. Under `procsrun -n N
//! PROGRAM` each rank joins the launcher's world instead, whatever its size.

use std::io::Write;

use procs_mpi::{Communicator, World};

/// The ranks the chapter runs.
const RANKS: usize = 10;

/// What every rank does.
fn body(world: &World) -> procs_mpi::Result<()> {
    let rank = world.rank();
    let variable_to_share = (rank == 0).then_some(100i64);
    let variable_to_share: i64 = world.bcast(variable_to_share.as_ref(), 0)?;
    println!("process = {rank} variable shared = {variable_to_share}");
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
