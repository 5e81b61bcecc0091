//! The errors of procs-mpi: MPI's (a bad rank, a bad tag, a buffer too
//! small) and those of a job whose ranks die, deadlock or abort.

use std::fmt;

/// How a rank's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RankEnd {
    /// It exited with this code (a panic exits with 101 from a program's
    /// main thread, and with 1 from a rank of [`run`](crate::run)).
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
    /// It is gone, and nobody recorded how (no launcher watched it).
    Vanished,
    /// It panicked (its process may still be unwinding).
    Panicked,
}

impl RankEnd {
    /// From an exit code, or minus a signal number (as Python's
    /// `Process.exitcode`).
    pub fn from_code(code: i32) -> RankEnd {
        if code == i32::MIN {
            RankEnd::Vanished
        } else if code < 0 {
            RankEnd::Signaled(-code)
        } else {
            RankEnd::Exited(code)
        }
    }

    /// The exit code, or minus the signal number (`i32::MIN` for
    /// [`Vanished`](RankEnd::Vanished)).
    pub fn code(self) -> i32 {
        match self {
            RankEnd::Exited(c) => c,
            RankEnd::Signaled(s) => -s,
            RankEnd::Vanished => i32::MIN,
            RankEnd::Panicked => 1,
        }
    }

    /// The status a launcher exits with for it (128 + the signal, as a
    /// shell reports).
    pub fn exit_status(self) -> i32 {
        match self {
            RankEnd::Exited(c) => c,
            RankEnd::Signaled(s) => 128 + s,
            RankEnd::Vanished | RankEnd::Panicked => 1,
        }
    }
}

impl fmt::Display for RankEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RankEnd::Exited(c) => write!(f, "exited with code {c}"),
            RankEnd::Signaled(s) => {
                write!(
                    f,
                    "was killed by signal {s} ({})",
                    procs_core::signal_name(s)
                )
            }
            RankEnd::Vanished => write!(f, "ended (no launcher recorded how)"),
            RankEnd::Panicked => write!(f, "panicked"),
        }
    }
}

/// An error of a communicator call or of a job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A rank outside `0..size` (MPI_ERR_RANK).
    #[error("invalid rank {rank}: the communicator has {size} ranks")]
    InvalidRank {
        /// The rank given.
        rank: i32,
        /// The communicator's size.
        size: i32,
    },
    /// A negative tag where a tag must be at least 0 (MPI_ERR_TAG).
    #[error("invalid tag {0}: tags are 0 or more (ANY_TAG only to receive)")]
    InvalidTag(i32),
    /// The message is longer than the receive buffer (MPI_ERR_TRUNCATE);
    /// the message is consumed.
    #[error("message truncated: {len} bytes arrived for a buffer of {capacity}")]
    Truncate {
        /// The message's length in bytes.
        len: usize,
        /// The buffer's length in bytes.
        capacity: usize,
    },
    /// A message's length is not a whole number of the receiving type's
    /// elements.
    #[error("a message of {len} bytes is not a whole number of {size}-byte elements")]
    Misaligned {
        /// The message's length in bytes.
        len: usize,
        /// The element size.
        size: usize,
    },
    /// The rank this call waits on (or sends to) ended (its rank in the
    /// communicator of the call).
    #[error("rank {rank} {how}")]
    RankDied {
        /// The rank.
        rank: i32,
        /// How its process ended.
        how: RankEnd,
    },
    /// The rank this receive waits on has finished its work with nothing
    /// left that could match: the receive can never complete.
    #[error("rank {rank} has finished: nothing it sent matches this call")]
    RankFinished {
        /// The rank.
        rank: i32,
    },
    /// Every live rank is blocked and nothing in flight can wake any of
    /// them; the report names the wait-for chain from this rank.
    #[error("deadlock: {0}")]
    Deadlock(String),
    /// A rank called `abort`.
    #[error("the job was aborted by rank {rank} with code {code}")]
    Aborted {
        /// The aborting rank.
        rank: i32,
        /// Its code.
        code: i32,
    },
    /// A rank of [`run`](crate::run) failed: it panicked, exited without
    /// returning, or was killed.
    #[error("rank {rank} failed: {reason}")]
    RankFailed {
        /// The rank.
        rank: i32,
        /// How: the panic's message, or how the process ended.
        reason: String,
    },
    /// A message too large for this process to hold (the allocation
    /// failed; the message is consumed).
    #[error("cannot allocate {len} bytes for a message")]
    OutOfMemory {
        /// The message's length.
        len: usize,
    },
    /// An object did not serialize.
    #[error("encoding a message: {0}")]
    Encode(String),
    /// A message did not decode as the type asked for.
    #[error("decoding a message from rank {source_rank}: {reason}")]
    Decode {
        /// The sender.
        source_rank: i32,
        /// What is wrong.
        reason: String,
    },
    /// The job's shared memory could not be set up or is not valid, or the
    /// environment of a launcher is malformed.
    #[error("{0}")]
    Job(String),
    /// A frame in shared memory does not parse: a rank wrote garbage.
    #[error("corrupt frame from rank {rank}: {what}")]
    Corrupt {
        /// The rank whose ring it came through.
        rank: i32,
        /// What is wrong.
        what: String,
    },
    /// An object receive from `PROC_NULL`: there is no object to return
    /// (the buffer forms and probes complete at once instead).
    #[error("an object receive from PROC_NULL has no object to return")]
    ProcNull,
    /// The ranks of a collective called it differently (another
    /// collective, another root, lengths or counts that do not agree).
    #[error("collective mismatch: {0}")]
    Mismatch(String),

    /// A rank passed arguments that cannot work (a scatter list whose
    /// length is not the rank count, a buffer too small for its counts, an
    /// operation the element type lacks); every rank of the collective
    /// gets this error, naming the rank.
    #[error("invalid argument: {0}")]
    Argument(String),

    /// A call that needs a Cartesian communicator's grid with arguments
    /// that do not fit it (coordinates outside a non-periodic grid, a
    /// grid larger than the communicator).
    #[error("topology: {0}")]
    Topology(String),

    /// The request was cancelled.
    #[error("the request was cancelled")]
    Cancelled,
    /// A call of the MPI library failed (the MPI backend): MPI's error
    /// class and message.
    #[error("{call}: {message} (MPI error class {class})")]
    Mpi {
        /// The MPI function.
        call: &'static str,
        /// MPI's error class (`MPI_ERR_...`).
        class: i32,
        /// MPI's message for the error.
        message: String,
    },

    /// A call this backend does not have.
    #[error("{0}")]
    Unsupported(String),

    /// An operating system call failed.
    #[error("{what}: {source}")]
    Os {
        /// The call.
        what: &'static str,
        /// Its error.
        source: std::io::Error,
    },
}

/// `Result` with procs-mpi's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
