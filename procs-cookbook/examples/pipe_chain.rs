//! Exchange objects through pipes: a chain of two pipes and two processes.
//! `create_items` sends the numbers 0 to 9 into the first pipe;
//! `multiply_items` receives them from it and sends their squares into the
//! second; the main process prints what comes out of the second pipe until
//! the end of the stream, then "End".
//!
//! In Python every process gets both ends of each pipe (fork copies them)
//! and closes the ends it does not use, so that the reader of a pipe sees
//! `EOFError` once every writer has closed its copy. In Rust an end is moved
//! into the one process that uses it, and the main process lets go of it
//! when it starts that process: the closes of the recipe happen by moving.
//! The end of the stream is `Err(Error::Disconnected)`, Python's
//! `EOFError`, and it travels down the chain: `create_items` closes its
//! end, `multiply_items` sees the end of the first pipe and closes its end
//! of the second, and the main process sees the end of the second.
//!
//! Run it alone with `cargo run -p procs-cookbook --example pipe_chain`.

use procs_core::Process;
use procs_ipc::{Connection, Error, pipe};

/// Sends the numbers 0 to 9 into its pipe, then closes it.
fn create_items(output_pipe: Connection<u64>) {
    for item in 0..10 {
        output_pipe.send(&item).unwrap();
    }
    output_pipe.close();
}

/// Squares every number of the first pipe into the second, until the first
/// pipe's stream ends; then closes the second.
fn multiply_items(input_pipe: Connection<u64>, output_pipe: Connection<u64>) {
    loop {
        match input_pipe.recv() {
            Ok(item) => output_pipe.send(&(item * item)).unwrap(),
            Err(Error::Disconnected) => {
                output_pipe.close();
                break;
            }
            Err(e) => panic!("multiply_items: {e}"),
        }
    }
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First process: a pipe with the numbers from 0 to 9.
    let pipe_1 = pipe::<u64>()?;
    let (pipe_1_output, pipe_1_input) = pipe_1;
    let mut process_pipe_1 = Process::new(move || create_items(pipe_1_output));
    process_pipe_1.start()?;
    // Second pipe: the squares.
    let pipe_2 = pipe::<u64>()?;
    let (pipe_2_output, pipe_2_input) = pipe_2;
    let mut process_pipe_2 = Process::new(move || multiply_items(pipe_1_input, pipe_2_output));
    process_pipe_2.start()?;
    // The recipe's `pipe_1[0].close()` and `pipe_2[0].close()`: both ends
    // were moved into the children above, and this process let go of them
    // when it started them. It keeps only the receiving end of pipe 2.
    loop {
        match pipe_2_input.recv() {
            Ok(item) => println!("{item}"),
            Err(Error::Disconnected) => {
                println!("End");
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    process_pipe_1.join()?;
    process_pipe_2.join()?;
    Ok(())
}
