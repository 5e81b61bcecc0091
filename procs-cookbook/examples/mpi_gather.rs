//! Gather with MPI: every rank sends `(rank + 1)²` to rank 0, which prints
//! what it received from each other rank. mpi4py's
//!
//! ```python
//! data = (rank + 1) ** 2
//! data = comm.gather(data, root=0)
//! if rank == 0:
//!     print("rank = %s " % rank + "...receiving data to other process")
//!     for i in range(1, size):
//!         print(" process %s receiving %s from process %s" % (rank, data[i], i))
//! ```
//!
//! Run it alone with `cargo run -p procs-cookbook --example mpi_gather`: it
//! starts its five ranks itself with `procs_mpi::run`. Under `procsrun -n N
//! PROGRAM` each rank joins the launcher's world instead, whatever its size.

use std::io::Write;

use procs_mpi::{Communicator, World};

/// The ranks the chapter runs.
const RANKS: usize = 5;

/// What every rank does.
fn body(world: &World) -> procs_mpi::Result<()> {
    let rank = world.rank();
    let data = (i64::from(rank) + 1).pow(2);
    if let Some(data) = world.gather(&data, 0)? {
        println!("rank = {rank} ...receiving data to other process");
        for (i, value) in data.iter().enumerate().skip(1) {
            println!(" process {rank} receiving {value} from process {i}");
        }
    }
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
