//! A manager process that holds shared objects, reached through proxies.
//!
//! Part of procs, Python's `multiprocessing` rebuilt in Rust. This crate is
//! not yet implemented; its README says what it will hold.

#![deny(unsafe_op_in_unsafe_fn)]
