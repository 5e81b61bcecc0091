//! The errors of a manager and its proxies.

use crate::wire::{ErrorKind, Malformed};

/// What can go wrong with a manager or a call through a proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server is gone (shut down, or dead) or cannot be reached.
    #[error("the manager's server is gone")]
    ManagerGone,
    /// The server refused the call: Python's exception (`KeyError`,
    /// `IndexError`, `ValueError`, `AttributeError`) or the protocol's (no
    /// such object or method, a limit).
    #[error("{kind}: {message}")]
    Remote {
        /// Which error.
        kind: ErrorKind,
        /// The server's words.
        message: String,
    },
    /// A value did not serialize.
    #[error("the value does not serialize: {0}")]
    Encode(String),
    /// The server's bytes did not decode as the proxy's type.
    #[error("the value does not decode: {0}")]
    Decode(String),
    /// The server answered what this library's servers never answer.
    #[error("a malformed answer: {0}")]
    Protocol(&'static str),
    /// Only the process that started the manager may shut it down (not a
    /// child holding a copy of the handle, nor a client that connected).
    #[error("only the process that started the manager may shut it down")]
    NotStarter,
    /// From the transport.
    #[error(transparent)]
    Ipc(#[from] procs_ipc::Error),
    /// From starting the server.
    #[error(transparent)]
    Process(#[from] procs_core::Error),
    /// From the operating system.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<Malformed> for Error {
    fn from(m: Malformed) -> Error {
        Error::Protocol(m.0)
    }
}

impl Error {
    /// The server's kind of error, for a refused call.
    pub fn remote_kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Remote { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// A result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
