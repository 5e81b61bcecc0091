//! Point-to-point communication: nine ranks say their rank; rank 0 sends
//! the integer 10000000 to rank 4, rank 1 sends the string "hello" to rank
//! 8, and each receiver prints what came and from whom. mpi4py's
//!
//! ```python
//! if rank == 0:
//!     comm.send(10000000, dest=4)
//! if rank == 1:
//!     comm.send("hello", dest=8)
//! if rank == 4:
//!     data = comm.recv(source=0)
//! if rank == 8:
//!     data1 = comm.recv(source=1)
//! ```
//!
//! Objects go through serde: a receive names the type it expects. The ranks
//! run at once, so the lines come in any order, but a receiver prints only
//! after its sender has sent.
//!
//! Run it alone with `cargo run -p procs-cookbook --example
//! mpi_point_to_point`: it starts its nine ranks itself. Under the
//! `procsrun` launcher it uses the launcher's world, and with fewer than
//! nine ranks only says so.

use std::io::Write;

use procs_mpi::{Communicator, CommunicatorExt, World};

/// The ranks the chapter runs; rank 8 is the last it names.
const RANKS: usize = 9;

fn say(line: std::fmt::Arguments<'_>) {
    println!("{line}");
    // A rank's process ends with its body: nothing may stay buffered.
    let _ = std::io::stdout().flush();
}

/// What every rank does.
fn body(world: &World) -> procs_mpi::Result<()> {
    let rank = world.rank();
    if world.size() < RANKS as i32 {
        if rank == 0 {
            say(format_args!(
                "this recipe needs {RANKS} ranks (rank 1 sends to rank 8); the world has {}",
                world.size()
            ));
        }
        return Ok(());
    }
    say(format_args!("my rank is : {rank}"));
    match rank {
        0 => {
            let data: i64 = 10_000_000;
            world.send(&data, 4, 0)?;
            say(format_args!("rank 0 sent {data} to rank 4"));
        }
        1 => {
            let data = "hello";
            world.send(data, 8, 0)?;
            say(format_args!("rank 1 sent {data} to rank 8"));
        }
        4 => {
            let (data, status) = world.recv_with_status::<i64>(0, 0)?;
            say(format_args!(
                "rank 4 received {data} from rank {}",
                status.source
            ));
        }
        8 => {
            let (data, status) = world.recv_with_status::<String>(1, 0)?;
            say(format_args!(
                "rank 8 received {data} from rank {}",
                status.source
            ));
        }
        _ => {}
    }
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
