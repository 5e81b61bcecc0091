//! The atomics and futex of this crate: procs-sync's facade, which
//! `--cfg loom` swaps for loom's model.

pub use procs_sync::raw::sync::*;
