//! The algorithms, written against [`crate::facade`] and knowing nothing of
//! segments or of the types they protect. Each is a `#[repr(C)]` struct of
//! atomics that lives in shared memory (or, under loom, on the heap), and
//! starts as all zeroes unless said otherwise.
//!
//! The `new` constructors serve the loom tests; in shared memory the state
//! starts from the zeroes of a fresh segment.

#![cfg_attr(not(loom), allow(dead_code))]

pub mod barrier;
pub mod condvar;
pub mod event;
pub mod lock;
pub mod notify;
pub mod rlock;
pub mod semaphore;
