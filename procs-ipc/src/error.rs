//! The error types of procs-ipc.

use std::fmt;

/// Everything that can go wrong sending or receiving on a connection, and
/// the errors of queues that carry no value back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The other side is gone: every process holding the other end (or
    /// every other process holding the queue) closed it or died, and
    /// everything they sent completely has been received (Python's
    /// `EOFError` on receive, `BrokenPipeError` on send).
    #[error("disconnected: the other side closed or died")]
    Disconnected,
    /// A wait with a timeout elapsed (a connection's send or receive, a
    /// join).
    #[error("timed out")]
    Timeout,
    /// A queue's get found no item, now or within its timeout (Python's
    /// `queue.Empty`).
    #[error("nothing to receive")]
    Empty,
    /// A queue's put found no room, now or within its timeout (Python's
    /// `queue.Full`); the [`PutError`] gives the item back.
    #[error("no room to send")]
    Full,
    /// The message does not fit the caller's buffer; it is still there, to
    /// receive with a larger one.
    #[error("the message is {needed} bytes, the buffer {available}")]
    BufferTooSmall {
        /// The message's size in bytes.
        needed: usize,
        /// The buffer's size in bytes.
        available: usize,
    },
    /// The message is larger than the channel allows.
    #[error("a message of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge {
        /// The message's size in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value could not be serialized.
    #[error("the value does not serialize: {0}")]
    Encode(String),
    /// Received bytes do not decode as the expected type.
    #[error("the message does not decode: {0}")]
    Decode(String),
    /// The shared memory of the channel holds something that no sender of
    /// this library wrote (a length that lies, a broken header).
    #[error("the channel's shared memory is corrupt: {0}")]
    Corrupt(&'static str),
    /// The peer of a [`Listener`](crate::Listener) or a
    /// [`Client`](crate::Client) did not prove it holds the same authkey,
    /// or did not follow the handshake (Python's `AuthenticationError`).
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// The handle was closed by this process.
    #[error("the handle is closed")]
    Closed,
    /// `task_done` was called more often than items were put (Python's
    /// `ValueError: task_done() called too many times`).
    #[error("task_done() called more times than items were put")]
    TaskDoneTooMany,
    /// An argument is out of range.
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// Shared memory could not be set up.
    #[error(transparent)]
    Sync(#[from] procs_sync::Error),
    /// A system call failed (a [`wait`](crate::wait) on descriptors could
    /// not make the pipe that ends its helper thread).
    #[error("a system call failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The result type of procs-ipc.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a [`Queue::put`](crate::Queue::put) failed, with the item given back.
pub struct PutError<T> {
    /// The item that was not put.
    pub item: T,
    /// Why: [`Error::Full`], [`Error::Disconnected`],
    /// [`Error::Encode`], [`Error::TooLarge`] or [`Error::Closed`].
    pub error: Error,
}

impl<T> PutError<T> {
    // Only the queue makes one, and the queue is not built under loom.
    #[cfg(not(loom))]
    pub(crate) fn new(item: T, error: Error) -> Self {
        PutError { item, error }
    }

    /// The item that was not put.
    pub fn into_inner(self) -> T {
        self.item
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<T> std::error::Error for PutError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
