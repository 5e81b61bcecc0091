//! Processes as Python's `multiprocessing` has them, in Rust.
//!
//! (crate documentation is written with the process module)

#![deny(unsafe_op_in_unsafe_fn)]

mod error;
pub mod info;
pub mod subprocess;
mod sys;

pub use error::{Error, Result};
pub use sys::signal_name;
