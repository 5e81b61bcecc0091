//! The three start methods, with Python's
//!
//! ```python
//! def foo(q):
//!     q.put('hello')
//!
//! if __name__ == '__main__':
//!     for method in mp.get_all_start_methods():
//!         ctx = mp.get_context(method)
//!         q = ctx.Queue()
//!         p = ctx.Process(target=foo, args=(q,))
//!         p.start()
//!         print(method, q.get())
//!         p.join()
//! ```
//!
//! Under fork the child is a copy of this process; under spawn a fresh
//! execution of this program; under forkserver a fork of a small server
//! that is itself a fresh execution, started with the first such child. The
//! last two run plain functions, whose argument travels serialized: the
//! queue goes with its descriptor, and the child counts as a producer from
//! its start. `procs_core::init()` comes first in `main` for them.
//!
//! Run it alone with `cargo run -p procs-cookbook --example start_methods`.

use procs_ipc::{Queue, QueueSender};

/// The child's function: a plain `fn`, which every method can run.
fn foo(q: QueueSender<String>) {
    q.put("hello".to_string()).unwrap();
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A child of the spawn or forkserver method runs its function here.
    procs_core::init();
    for &method in procs_core::get_all_start_methods() {
        let ctx = procs_core::get_context(Some(method));
        let q = Queue::<String>::new()?;
        let child = ctx.spawn_fn(foo, q.sender())?;
        println!("{} {}", method.name(), q.get()?);
        child.join()?;
    }
    Ok(())
}
