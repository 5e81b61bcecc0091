//! The algorithms, written against [`crate::facade`] and knowing nothing of
//! segments or of the types they protect. Each is a `#[repr(C)]` struct of
//! atomics that lives in shared memory (or, under loom, on the heap), and
//! starts as all zeroes unless said otherwise.

pub mod lock;
pub mod rlock;
