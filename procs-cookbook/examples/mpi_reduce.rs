//! Reduce with MPI, buffer form: rank `r` sends `(r + 1) * [0, 1, 2]` and
//! rank 0 receives their element-wise SUM, `[0 6 12]` for three ranks.
//! mpi4py's
//!
//! ```python
//! senddata = (rank + 1) * numpy.arange(3, dtype=int)
//! print(" process %s sending %s " % (rank, senddata))
//! comm.Reduce(senddata, recvdata, root=0, op=MPI.SUM)
//! print('on task', rank, 'after Reduce:    data = ', recvdata)
//! ```
//!
//! Run it alone with `cargo run -p procs-cookbook --example mpi_reduce`: it
//! starts its three ranks itself with `procs_mpi::run`. Under `procsrun -n N
//! PROGRAM` each rank joins the launcher's world instead, whatever its size.

use std::io::Write;

use procs_mpi::{Communicator, Op, World};

/// The ranks the chapter runs.
const RANKS: usize = 3;
const ARRAY_SIZE: i64 = 3;

/// What every rank does.
fn body(world: &World) -> procs_mpi::Result<()> {
    let rank = world.rank();
    let mut recvdata = vec![0i64; ARRAY_SIZE as usize];
    let senddata: Vec<i64> = (0..ARRAY_SIZE).map(|i| (i64::from(rank) + 1) * i).collect();
    println!(" process {rank} sending {} ", np(&senddata));
    let _ = std::io::stdout().flush();
    world.reduce_buf(&senddata, Some(&mut recvdata), Op::SUM, 0)?;
    println!("on task {rank} after Reduce:    data =  {}", np(&recvdata));
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
