//! Building blocks: the algorithms behind the primitives, and the facade
//! they are written against, for crates that build primitives of their own
//! in shared memory (procs-ipc's rings are built on them).
//!
//! Each algorithm is a `#[repr(C)]` struct of atomics that knows nothing of
//! segments or of the data it protects; it lives in shared memory (or, under
//! `--cfg loom`, on the heap) and starts as all zeroes unless said
//! otherwise. `sync` is the facade: std's atomics and the shared futex
//! normally, loom's model under `--cfg loom`, so that code written against it
//! is model-checked as it is; it and `liveness` (whether a pid still names
//! the process it named) serve this workspace's crates and model checks
//! only, hidden from the docs and not covered by semantic versioning.
//!
//! The `new` constructors serve the loom tests; in shared memory the state
//! starts from the zeroes of a fresh segment.

#![cfg_attr(not(loom), allow(dead_code))]

pub mod barrier;
pub mod condvar;
pub mod event;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod liveness;
pub mod lock;
pub mod notify;
pub mod rlock;
pub mod semaphore;
#[doc(hidden)]
pub mod sync;
