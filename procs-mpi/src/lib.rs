//! MPI-style communicators over shared memory: mpi4py's API for Rust
//! programs whose ranks are processes on one machine.
//!
//! Start ranks three ways, with one program:
//! - [`run`]: `n` ranks forked from inside a program, a closure on each,
//!   their results back in rank order;
//! - `procsrun -n N PROGRAM`: the launcher of this crate, whose ranks call
//!   [`init`] (and read `PROCS_RANK` and `PROCS_SIZE`, as under mpirun);
//! - [`init`] started alone: a world of one rank.
//!
//! ```
//! use procs_mpi::{Communicator, CommunicatorExt};
//!
//! let sums = procs_mpi::run(3, |world| {
//!     let me = world.rank();
//!     let right = (me + 1) % world.size();
//!     let left = (me + world.size() - 1) % world.size();
//!     // Objects go through serde; sendrecv never deadlocks on a ring.
//!     let got: i32 = world.sendrecv(&me, right, 0, left, 0).unwrap();
//!     // Buffers of plain data go as their bytes.
//!     let mut buf = [0u64; 4];
//!     world.sendrecv_buf(&[me as u64; 4], right, 1, &mut buf, left, 1).unwrap();
//!     got as u64 + buf.iter().sum::<u64>()
//! })?;
//! assert_eq!(sums, [2 + 4 * 2, 0, 1 + 4]);
//! # Ok::<(), procs_mpi::Error>(())
//! ```
//!
//! No call hangs on a dead or deadlocked peer: a call that waits on a rank
//! that ended returns [`Error::RankDied`] (how it ended), and when every
//! live rank is blocked with nothing in flight each blocked call returns
//! [`Error::Deadlock`] naming the wait-for cycle. docs/procs-mpi-transport.md
//! describes the transport: a ring per pair of ranks for small messages, a
//! single `process_vm_readv` (or a pipelined two-copy, whichever measured
//! faster) for large ones.

#![deny(unsafe_op_in_unsafe_fn)]

mod coll;
mod collective;
mod comm;
mod detect;
mod engine;
mod error;
mod frame;
mod group;
mod job;
mod launch;
mod measure;
mod nonblocking;
mod op;
#[cfg(feature = "openmpi")]
mod openmpi;
#[cfg(feature = "openmpi")]
mod over_mpi;
mod request;
mod topo;

pub use collective::{IN_PLACE, InPlace, SendBuf};
pub use comm::{Comm, Communicator, CommunicatorExt, World};
pub use error::{Error, RankEnd, Result};
pub use group::{Group, SplitType};
pub use job::MAX_RANKS;
pub use launch::{
    Backend, Config, ENV_DEADLOCK, ENV_FD, ENV_RANK, ENV_SINGLE_COPY, ENV_SIZE, LauncherJob, init,
    init_with, launcher_segment, run, run_all, run_or_join, single_copy_here,
};
pub use op::{Builtin, Element, ObjectOp, Op, ValueIndex};
pub use request::{RecvRequest, Request, Requests, test_all, wait_all, wait_any};
pub use topo::{CartComm, dims_create};

/// Matches a message from any source.
pub const ANY_SOURCE: i32 = -1;
/// Matches a message of any tag.
pub const ANY_TAG: i32 = -1;
/// A rank that makes a send or receive a no-op.
pub const PROC_NULL: i32 = -2;

/// MPI's `UNDEFINED`: the color of a rank that wants no part of a
/// [`split`](Comm::split), and the rank of a process outside a [`Group`].
pub const UNDEFINED: i32 = -32766;

/// What a receive (or probe) found: the message's source, tag and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The sending rank.
    pub source: i32,
    /// The message's tag.
    pub tag: i32,
    bytes: usize,
}

impl Status {
    pub(crate) fn new(source: i32, tag: i32, bytes: usize) -> Status {
        Status { source, tag, bytes }
    }

    /// The status of a call on `PROC_NULL`: source `PROC_NULL`, tag
    /// `ANY_TAG`, no bytes (as MPI says).
    pub(crate) fn proc_null() -> Status {
        Status::new(PROC_NULL, ANY_TAG, 0)
    }

    /// The status of a request that was already inactive.
    pub(crate) fn empty() -> Status {
        Status::new(ANY_SOURCE, ANY_TAG, 0)
    }

    /// The sending rank.
    #[doc(alias = "Get_source")]
    pub fn source(&self) -> i32 {
        self.source
    }

    /// The message's tag.
    #[doc(alias = "Get_tag")]
    pub fn tag(&self) -> i32 {
        self.tag
    }

    /// The message's length in elements of `T` (bytes for `u8`; for an
    /// object, the length of its encoding).
    #[doc(alias = "Get_count")]
    pub fn count<T>(&self) -> usize {
        self.bytes / std::mem::size_of::<T>().max(1)
    }

    /// The message's length in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}
