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
//! | `p.map(f, xs, chunksize)`            | [`p.map(f, xs)`](Pool::map), [`p.map_with_chunksize(f, xs, chunksize)`](Pool::map_with_chunksize) |
//! | `p.map_async(f, xs, cs, cb, ecb)`    | [`p.map_async(f, xs)`](Pool::map_async), [`p.map_async_with(f, xs, MapOptions::new().chunksize(cs).callback(cb).error_callback(ecb))`](Pool::map_async_with) |
//! | `p.imap(f, xs, chunksize)`, `p.imap_unordered(f, xs, chunksize)` | [`imap`](Pool::imap), [`imap_unordered`](Pool::imap_unordered) (lazy [`IMap`]), [`imap_with_chunksize`](Pool::imap_with_chunksize), [`imap_unordered_with_chunksize`](Pool::imap_unordered_with_chunksize) |
//! | `it.next(timeout)` (`TimeoutError`) | [`it.next_timeout(timeout)`](IMap::next_timeout) (`Some(Err(Error::Timeout))`) |
//! | `p.starmap(f, [(a, b)], chunksize)`  | [`p.starmap(f, [(a, b)])`](Pool::starmap), [`starmap_with_chunksize`](Pool::starmap_with_chunksize) |
//! | `p.starmap_async(f, xs, cs, cb, ecb)` | [`starmap_async`](Pool::starmap_async), [`starmap_async_with(f, xs, MapOptions)`](Pool::starmap_async_with) |
//! | `p.close()`, `p.terminate()`, `p.join()` | [`close`](Pool::close), [`terminate`](Pool::terminate), [`join`](Pool::join) |
//! | `with Pool() as p:`                  | dropping a `Pool` terminates it              |
//!
//! The plain methods are Python's, with Python's defaults. A suffix says
//! what a method takes beyond them, the same everywhere:
//! `_with_chunksize(.., chunksize)` a chunk size; `_with(.., options)` the
//! call's Python keyword arguments in one value ([`Callbacks`] for an
//! apply, [`MapOptions`] for an asynchronous map); `_timeout(.., timeout)`
//! waits at most that long.
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
pub use map_job::MapOptions;
pub use pool::{Pool, PoolBuilder};
pub use procs_core::StartMethod;
pub use result::{AsyncResult, Callbacks};
pub use task::StarFn;
