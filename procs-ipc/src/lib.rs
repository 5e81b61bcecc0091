//! Pipes and queues between processes, over shared memory, as Python's
//! `multiprocessing` has them.
//!
//! - [`pipe`] and [`pipe_one_way`]: the two ends of a pipe ([`Connection`],
//!   or [`Receiver`] and [`Sender`]), for serde values, raw bytes, and
//!   plain-old-data slices (copied as they are), of any size; [`wait`] on
//!   many receiving ends, queues, processes and descriptors at once
//!   (Python's `multiprocessing.connection.wait`).
//! - [`Queue`], [`JoinableQueue`], [`SimpleQueue`]: many producers and many
//!   consumers, with `maxsize`, timeouts and non-blocking variants.
//! - [`Listener`] and [`Client`]: the same [`Connection`] between processes
//!   that share no ancestor's pipe, over a Unix socket or TCP, once both
//!   sides proved they hold the same authkey (Python's
//!   `multiprocessing.connection`); the socket carries its messages.
//! - [`Connection::fileno`]: a descriptor readable exactly when a receive
//!   would not block, for `poll`, epoll, mio or tokio.
//!
//! Data moves through a ring in shared memory: one copy in, one copy out, no
//! system call while the other side keeps up (a side that must wait spins
//! briefly, then sleeps on a futex, and is woken only if it sleeps).
//!
//! A dead process never hangs the living: every end and every queue knows
//! which processes hold it, and a side waiting on one whose holders are all
//! gone (closed, dropped, or killed, SIGKILL included) receives what was
//! completely sent and then [`Error::Disconnected`], within about 20 ms of a
//! death. A message cut short by a death is never delivered.
//!
//! ```
//! use procs_ipc::{Error, pipe};
//!
//! let (parent, child) = pipe::<u64>()?;
//! let mut p = procs_core::Process::new(move || {
//!     for i in 0..3 {
//!         child.send(&(i * i)).unwrap();
//!     }
//! });
//! p.start()?;
//! assert_eq!(parent.recv()?, 0);
//! assert_eq!(parent.recv()?, 1);
//! assert_eq!(parent.recv()?, 4);
//! p.join()?;
//! // The child is gone, and with it every holder of the other end.
//! assert!(matches!(parent.recv(), Err(Error::Disconnected)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | Python | procs-ipc |
//! |---|---|
//! | `a, b = Pipe()`, `r, w = Pipe(duplex=False)` | [`pipe`], [`pipe_one_way`] |
//! | `conn.send(obj)`, `conn.recv()` | [`send`](Connection::send), [`recv`](Connection::recv), [`recv_timeout`](Connection::recv_timeout) |
//! | `send_bytes`, `recv_bytes`, `recv_bytes_into` | [`send_bytes`](Connection::send_bytes), [`recv_bytes`](Connection::recv_bytes), [`recv_bytes_into`](Connection::recv_bytes_into) |
//! | `conn.poll(timeout)`, `conn.close()` | [`poll`](Connection::poll), [`close`](Connection::close) |
//! | `conn.fileno()` | [`fileno`](Connection::fileno) |
//! | `multiprocessing.connection.wait(objects, timeout)` | [`wait`] |
//! | `multiprocessing.connection.Listener(address, authkey=key)` | [`Listener::bind`]; [`accept`](Listener::accept), [`address`](Listener::address), [`last_accepted`](Listener::last_accepted), [`close`](Listener::close) |
//! | `multiprocessing.connection.Client(address, authkey=key)` | [`Client::connect`] |
//! | `AuthenticationError` | [`Error::Authentication`] |
//! | `EOFError`, `BrokenPipeError` | [`Error::Disconnected`] |
//! | `Queue(maxsize)`, `put`, `get`, `put_nowait`, `get_nowait` | [`Queue`]: [`put`](Queue::put), [`get`](Queue::get), [`try_put`](Queue::try_put), [`try_get`](Queue::try_get) |
//! | `JoinableQueue`: `task_done`, `join` | [`JoinableQueue`] |
//! | `SimpleQueue` | [`SimpleQueue`] |
//!
//! The building blocks (the ring, its frames, doorbells, holder tables,
//! the descriptor notes and the loom facade) are public only for this
//! crate's model checks and fuzz targets: they are hidden from the
//! documentation and not covered by semantic versioning.

#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(loom))]
mod auth;
#[doc(hidden)]
pub mod doorbell;
mod error;
#[doc(hidden)]
pub mod frame;
#[cfg(not(loom))]
mod listener;
#[doc(hidden)]
pub mod notify;
#[doc(hidden)]
pub mod owners;
#[cfg(not(loom))]
mod pipe;
#[cfg(not(loom))]
mod queue;
#[doc(hidden)]
pub mod ring;
#[cfg(not(loom))]
mod single_copy;
#[cfg(not(loom))]
mod socket;
#[doc(hidden)]
pub mod sync;
#[cfg(not(loom))]
mod wait;

pub use error::{Error, PutError, Result};
#[cfg(not(loom))]
pub use listener::{Address, Client, HANDSHAKE_TIMEOUT, Incoming, Listener};
#[cfg(not(loom))]
pub use pipe::{Connection, DEFAULT_CAPACITY, PipeBuilder, Receiver, Sender, pipe, pipe_one_way};
#[cfg(not(loom))]
pub use queue::{
    DEFAULT_QUEUE_CAPACITY, JoinableQueue, Queue, QueueBuilder, QueueReceiver, QueueSender,
    SimpleQueue,
};
#[cfg(not(loom))]
pub use single_copy::LargeMessages;
#[cfg(not(loom))]
pub use wait::{Wait, wait};
