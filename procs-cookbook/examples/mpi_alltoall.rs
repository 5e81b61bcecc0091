//! All-to-all with MPI, buffer form: rank `r` sends `(r + 1) * [0, 1, ...,
//! size - 1]`, element `j` to rank `j`, and receives one element from every
//! rank. mpi4py's
//!
//! ```python
//! senddata = (rank + 1) * numpy.arange(size, dtype=int)
//! recvdata = numpy.empty(size, dtype=int)
//! comm.Alltoall(senddata, recvdata)
//! print(" process %s sending %s receiving %s" % (rank, senddata, recvdata))
//! ```
//!
//! Run it alone with `cargo run -p procs-cookbook --example mpi_alltoall`: it
//! starts its five ranks itself with `procs_mpi::run`. Under `procsrun -n N
//! PROGRAM` each rank joins the launcher's world instead, whatever its size.

use std::io::Write;

use procs_mpi::{Communicator, World};

/// The ranks the chapter runs.
const RANKS: usize = 5;

/// What every rank does.
fn body(world: &World) -> procs_mpi::Result<()> {
    let (rank, size) = (i64::from(world.rank()), i64::from(world.size()));
    let senddata: Vec<i64> = (0..size).map(|i| (rank + 1) * i).collect();
    let mut recvdata = vec![0i64; size as usize];
    world.alltoall_buf(&senddata, &mut recvdata)?;
    println!(
        " process {rank} sending {} receiving {}",
        np(&senddata),
        np(&recvdata)
    );
    let _ = std::io::stdout().flush();
    Ok(())
}

/// An array as numpy prints it: `[0 1 2]`.
fn np(v: &[i64]) -> String {
    let items: Vec<String> = v.iter().map(i64::to_string).collect();
    format!("[{}]", items.join(" "))
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Alone: RANKS ranks of its own; under procsrun: the launcher's world.
    for outcome in procs_mpi::run_or_join(RANKS, |world| body(world).map_err(|e| e.to_string()))? {
        outcome?;
    }
    Ok(())
}
