//! Topologies with MPI: the ranks laid on a 2 x 2 Cartesian grid, each
//! printing its row and column and its four neighbours from `shift`, first
//! for the mesh (no wrap: `PROC_NULL`, printed -1, past an edge), then for
//! the torus (both dimensions periodic). mpi4py's
//!
//! ```python
//! grid_rows = int(np.floor(np.sqrt(comm.size)))
//! grid_column = comm.size // grid_rows
//! if rank == 0:
//!     print("Building a %d x %d grid topology:" % (grid_rows, grid_column))
//! cartesian_communicator = comm.Create_cart((grid_rows, grid_column),
//!                                           periods=(False, False), reorder=True)
//! my_mpi_row, my_mpi_col = cartesian_communicator.Get_coords(cartesian_communicator.rank)
//! neighbour_processes[UP], neighbour_processes[DOWN] = cartesian_communicator.Shift(0, 1)
//! neighbour_processes[LEFT], neighbour_processes[RIGHT] = cartesian_communicator.Shift(1, 1)
//! print("Process = %s row = %s column = %s ----> ..." % (...))
//! ```
//!
//! Run it alone with `cargo run -p procs-cookbook --example mpi_topology`:
//! it starts its four ranks itself with `procs_mpi::run`. Under `procsrun -n
//! N PROGRAM` each rank joins the launcher's world instead, whatever its
//! size; ranks the grid has no cell for print nothing.

use std::io::Write;

use procs_mpi::{Communicator, PROC_NULL, World};

/// The ranks the chapter runs.
const RANKS: usize = 4;
const UP: usize = 0;
const DOWN: usize = 1;
const LEFT: usize = 2;
const RIGHT: usize = 3;

/// The grid's rows and columns for `size` ranks, as the chapter picks them.
fn grid(size: i32) -> (i32, i32) {
    let mut grid_rows = f64::from(size).sqrt().floor() as i32;
    let mut grid_column = size / grid_rows;
    if grid_rows * grid_column > size {
        grid_column -= 1;
    }
    if grid_rows * grid_column > size {
        grid_rows -= 1;
    }
    (grid_rows, grid_column)
}

/// One topology: the mesh (`periodic` false) or the torus.
fn topology(world: &World, periodic: bool) -> procs_mpi::Result<()> {
    let rank = world.rank();
    let (grid_rows, grid_column) = grid(world.size());
    if rank == 0 {
        println!("Building a {grid_rows} x {grid_column} grid topology:");
        let _ = std::io::stdout().flush();
    }
    // Rank 0's heading comes first.
    world.barrier()?;
    let periods = [periodic, periodic];
    let cartesian = world.create_cart(&[grid_rows, grid_column], &periods, true)?;
    if let Some(cartesian_communicator) = cartesian {
        let coords = cartesian_communicator.coords(cartesian_communicator.rank())?;
        let (my_mpi_row, my_mpi_col) = (coords[0], coords[1]);
        let mut neighbour_processes = [0; 4];
        (neighbour_processes[UP], neighbour_processes[DOWN]) =
            cartesian_communicator.shift(0, 1)?;
        (neighbour_processes[LEFT], neighbour_processes[RIGHT]) =
            cartesian_communicator.shift(1, 1)?;
        // PROC_NULL is printed as the chapter's MPI prints it.
        let n = neighbour_processes.map(|p| if p == PROC_NULL { -1 } else { p });
        println!(
            "Process = {rank} row = {my_mpi_row} column = {my_mpi_col} ----> \
             neighbour_processes[UP] = {} neighbour_processes[DOWN] = {} \
             neighbour_processes[LEFT] ={} neighbour_processes[RIGHT]={}",
            n[UP], n[DOWN], n[LEFT], n[RIGHT]
        );
        let _ = std::io::stdout().flush();
    }
    // Every line of this topology is out before the next heading.
    world.barrier()
}

/// What every rank does.
fn body(world: &World) -> procs_mpi::Result<()> {
    topology(world, false)?;
    topology(world, true)
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Alone: RANKS ranks of its own; under procsrun: the launcher's world.
    for outcome in procs_mpi::run_or_join(RANKS, |world| body(world).map_err(|e| e.to_string()))? {
        outcome?;
    }
    Ok(())
}
