//! A pool of worker processes maps a function over a list: Python's
//!
//! ```python
//! with Pool(processes=4) as pool:
//!     print(pool.map(square, range(100)))
//! ```
//!
//! The pool splits the hundred numbers into chunks (Python's default size:
//! items / (4 x processes), rounded up), its four workers square them, and
//! the results come back in order. Dropping the pool at the end of the
//! block terminates it, as leaving Python's `with` block does.
//!
//! Run it alone with `cargo run -p procs-cookbook --example pool_square`.

use procs_pool::Pool;

/// The task: a plain function, which every worker can run.
fn square(x: u64) -> u64 {
    x * x
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new(4)?;
    let result = pool.map(square, 0..100)?;
    println!("{result:?}");
    Ok(())
}
