//! A pool of worker processes held by a manager's server, used by clients
//! through a proxy: Python's `m.Pool()`, built here by registering a type
//! of one's own that holds a procs-pool `Pool` (procs-manager itself knows
//! nothing of pools), and calling its methods by name.
//!
//! Run it alone with `cargo run -p procs-cookbook --example manager_pool`.

use procs_core::Process;
use procs_manager::{Manager, Served, args, reply};
use procs_pool::Pool;

fn square(x: u64) -> u64 {
    x * x
}

/// What the server holds: a pool of two workers, made when a client asks.
struct SharedPool(Pool);

impl Served for SharedPool {
    fn call(&mut self, method: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
        match method {
            "map_square" => {
                let items: Vec<u64> = args(bytes)?;
                let squares = self.0.map(square, items).map_err(|e| e.to_string())?;
                reply(&squares)
            }
            other => Err(format!("the pool has no method {other}")),
        }
    }
}

fn make_pool() -> Box<dyn Served> {
    Box::new(SharedPool(Pool::new(2).expect("a pool in the server")))
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let m = Manager::builder().register("Pool", make_pool).start()?;
    let pool = m.custom("Pool")?;
    let mut clients: Vec<Process> = (0..2u64)
        .map(|c| {
            let pool = pool.clone();
            Process::new(move || {
                let items: Vec<u64> = (c * 5..c * 5 + 5).collect();
                let squares: Vec<u64> = pool.call("map_square", &items).unwrap();
                println!("client {c}: {items:?} -> {squares:?}");
            })
        })
        .collect();
    for c in &mut clients {
        c.start()?;
    }
    for c in &mut clients {
        c.join()?;
    }
    let all: Vec<u64> = pool.call("map_square", &(0..10).collect::<Vec<u64>>())?;
    println!("parent: {all:?}");
    Ok(())
}
