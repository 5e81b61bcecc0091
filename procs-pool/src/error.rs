//! The pool's errors.

use std::fmt;
use std::sync::Arc;

/// What can go wrong with a pool or one of its tasks.
///
/// Errors are `Clone`: a failed result reports the same error to its error
/// callback and to every `get`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The task panicked in a worker (Python re-raises the task's exception
    /// in `get`). The worker goes on with other tasks.
    #[error("the task panicked in worker {pid}{}: {message}", at(location))]
    TaskPanicked {
        /// The worker's pid.
        pid: i32,
        /// The panic's message.
        message: String,
        /// Where it panicked (`file:line:column`), when known.
        location: Option<String>,
    },
    /// The worker running the task died before answering (a signal such as
    /// SIGKILL, an abort, the out-of-memory killer, or an exit from inside
    /// the task). A new worker took its place; the pool's other tasks go on.
    #[error("worker {pid} {} while running the task", Died(*exitcode))]
    WorkerDied {
        /// The worker's pid.
        pid: i32,
        /// Its exit code as Python reports it: `-N` for signal N.
        exitcode: i32,
    },
    /// The pool's initializer panicked in a worker: the pool cannot run
    /// tasks, and every task fails with this error.
    #[error("the pool's initializer panicked in worker {pid}: {message}")]
    InitializerFailed {
        /// The worker's pid.
        pid: i32,
        /// The panic's message.
        message: String,
    },
    /// A task was submitted after [`close`](crate::Pool::close) (Python's
    /// `ValueError: Pool not running`).
    #[error("the pool is closed: it takes no new tasks")]
    Closed,
    /// The pool was terminated (or dropped) before the task finished, or a
    /// task was submitted after that.
    #[error("the pool was terminated")]
    Terminated,
    /// [`join`](crate::Pool::join) was called on a running pool: call
    /// `close` or `terminate` first (Python's `ValueError`).
    #[error("join needs close() or terminate() first: the pool is still running")]
    StillRunning,
    /// The result was not ready within the timeout
    /// ([`AsyncResult::get_timeout`](crate::AsyncResult::get_timeout),
    /// [`IMap::next_timeout`](crate::IMap::next_timeout)); it can still be
    /// got later. No task fails with this error.
    #[error("the result was not ready in time")]
    Timeout,
    /// [`successful`](crate::AsyncResult::successful) was asked before the
    /// result was ready (Python's `ValueError`).
    #[error("the result is not ready yet")]
    NotReady,
    /// The result's value was taken by an earlier `get_timeout`.
    #[error("the result's value was taken already")]
    AlreadyTaken,
    /// An argument could not be serialized, or a result sent back by a
    /// worker could not be deserialized (in a worker: the argument or the
    /// result); also when the result's `Deserialize` panicked, or a value
    /// nests deeper than the pool's wire format allows (128 levels).
    #[error("cannot serialize or deserialize a task's data: {0}")]
    Serde(String),
    /// A bad argument, such as zero processes or a chunk size of zero.
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// Starting or stopping a worker process failed.
    #[error("worker process: {0}")]
    Process(Arc<procs_core::Error>),
    /// The pool's handler thread could not be started.
    #[error("cannot start the pool's handler thread: {0}")]
    Thread(Arc<std::io::Error>),
    /// A pipe or queue between the pool and its workers failed.
    #[error("pool channel: {0}")]
    Ipc(Arc<procs_ipc::Error>),
}

impl Error {
    /// The signal that killed the worker, for [`Error::WorkerDied`] by a
    /// signal.
    pub fn signal(&self) -> Option<i32> {
        match self {
            Error::WorkerDied { exitcode, .. } if *exitcode < 0 => Some(-exitcode),
            _ => None,
        }
    }
}

impl From<procs_core::Error> for Error {
    fn from(e: procs_core::Error) -> Self {
        Error::Process(Arc::new(e))
    }
}

impl From<procs_ipc::Error> for Error {
    fn from(e: procs_ipc::Error) -> Self {
        Error::Ipc(Arc::new(e))
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn at(location: &Option<String>) -> String {
    location
        .as_ref()
        .map(|l| format!(" at {l}"))
        .unwrap_or_default()
}

/// How a process ended, in words: "was killed by signal 9 (SIGKILL)".
struct Died(i32);

impl fmt::Display for Died {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            let name = nix::sys::signal::Signal::try_from(-self.0)
                .map(|s| s.as_str())
                .unwrap_or("unknown signal");
            write!(f, "was killed by signal {} ({name})", -self.0)
        } else {
            write!(f, "exited with code {}", self.0)
        }
    }
}
