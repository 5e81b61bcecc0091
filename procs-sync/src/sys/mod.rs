//! Linux calls of procs-sync: the shared futex, thread ids and the
//! liveness of a thread that holds a lock, memfd and POSIX shared memory.
//! Everything Linux-only in this crate is here.

pub(crate) mod futex;
pub mod thread;
