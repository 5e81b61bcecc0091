//! Scatter with MPI: rank 0 holds `[1, 2, ..., 10]` and sends element `r`
//! to rank `r`. mpi4py's
//!
//! ```python
//! array_to_share = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] if rank == 0 else None
//! recvbuf = comm.scatter(array_to_share, root=0)
//! print("process = %d" % rank + " variable shared = %d " % recvbuf)
//! ```
//!
//! The list must have one element per rank: under a launcher of another
//! size, rank 0 shares `1..=size` instead.
//!
//! Run it alone with `cargo run -p procs-cookbook --example mpi_scatter`: it
//! starts its ten ranks itself with `procs_mpi::run`. Under `procsrun -n N
//! PROGRAM` each rank joins the launcher's world instead, whatever its size.

use std::io::Write;

use procs_mpi::{Communicator, World};

/// The ranks the chapter runs.
const RANKS: usize = 10;

/// What every rank does.
fn body(world: &World) -> procs_mpi::Result<()> {
    let rank = world.rank();
    let array_to_share: Option<Vec<i64>> =
        (rank == 0).then(|| (1..=i64::from(world.size())).collect());
    let recvbuf: i64 = world.scatter(array_to_share.as_deref(), 0)?;
    println!("process = {rank} variable shared = {recvbuf}");
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
