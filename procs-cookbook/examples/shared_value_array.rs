//! Share state with a Value and an Array: a number and an array of ten
//! integers in shared memory. A child process sets the number and negates
//! every element; the parent, after joining it, sees both changes.
//!
//! Python's `Value('d', 0.0)` is a `Value<f64>` and `Array('i', range(10))`
//! an `Array<i32>`: any plain-old-data type will do.
//!
//! Run it alone with `cargo run -p procs-cookbook --example shared_value_array`.

use procs_core::Process;
use procs_sync::{Array, Value};

#[allow(
    clippy::approx_constant,
    reason = "the recipe's number, which is not meant as π"
)]
fn f(n: Value<f64>, a: Array<i32>) {
    n.set(3.1415927);
    for x in a.lock().unwrap().iter_mut() {
        *x = -*x;
    }
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let num = Value::new(0.0f64)?;
    let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>())?;

    let (n, a) = (num.clone(), arr.clone());
    let mut p = Process::new(move || f(n, a));
    p.start()?;
    p.join()?;

    println!("{}", num.get());
    println!("{:?}", arr.to_vec());
    Ok(())
}
