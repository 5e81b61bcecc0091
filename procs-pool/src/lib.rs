//! A process pool with Python's `multiprocessing.Pool` API that never hangs
//! when a worker dies.
//!
//! Part of procs, Python's `multiprocessing` rebuilt in Rust.
//!
//! ```
//! use procs_pool::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let pool = Pool::new(4)?;
//! println!("{:?}", pool.map(square, 0..10)?);
//! # Ok::<(), procs_pool::Error>(())
//! ```
//!
//! | Python                               | procs-pool                                   |
//! |--------------------------------------|----------------------------------------------|
//! | `Pool(4)`                            | [`Pool::new(4)`](Pool::new)                  |
//! | `Pool(4, init, (arg,), 100)`         | [`Pool::builder()`](Pool::builder)`.processes(4).initializer(init, arg).maxtasksperchild(100).build()` |
//! | `p.apply(f, (x,))`                   | [`p.apply(f, x)`](Pool::apply)               |
//! | `p.apply_async(f, (x,), cb, ecb)`    | [`p.apply_async_with(f, x, Callbacks::new().callback(cb).error_callback(ecb))`](Pool::apply_async_with) |
//! | `r.get(timeout)`, `r.wait()`, `r.ready()`, `r.successful()` | [`AsyncResult`] |
//! | `p.map(f, xs, chunksize)`            | [`p.map(f, xs)`](Pool::map), [`map_with_chunksize`](Pool::map_with_chunksize) |
//! | `p.map_async(f, xs, cs, cb, ecb)`    | [`map_async`](Pool::map_async), [`map_async_with`](Pool::map_async_with) |
//! | `p.imap(f, xs)`, `p.imap_unordered(f, xs)` | [`imap`](Pool::imap), [`imap_unordered`](Pool::imap_unordered) (lazy [`IMap`]) |
//! | `it.next(timeout)` (`TimeoutError`) | [`it.next_timeout(timeout)`](IMap::next_timeout) (`Some(Err(Error::Timeout))`) |
//! | `p.starmap(f, [(a, b)])`             | [`p.starmap(f, [(a, b)])`](Pool::starmap)    |
//! | `p.close()`, `p.terminate()`, `p.join()` | [`close`](Pool::close), [`terminate`](Pool::terminate), [`join`](Pool::join) |
//! | `with Pool() as p:`                  | dropping a `Pool` terminates it              |
//!
//! Where Python's pool hangs forever when a worker is killed mid-task, this
//! one fails that task with [`Error::WorkerDied`] (the worker's pid and
//! signal), starts a new worker, and completes every other task.

#![deny(unsafe_op_in_unsafe_fn)]

mod buffers;
mod error;
mod handler;
mod imap;
mod map_job;
mod pool;
mod result;
mod scheduler;
mod task;
mod wire;
mod worker;

#[doc(hidden)]
pub mod fuzzing;

pub use error::{Error, Result};
pub use imap::IMap;
pub use pool::{Pool, PoolBuilder};
pub use procs_core::StartMethod;
pub use result::{AsyncResult, Callbacks};
pub use task::StarFn;
