//! Pipes and queues between processes, over shared memory.
//!
//! (crate documentation is written with the pipe module)

#![deny(unsafe_op_in_unsafe_fn)]

pub mod doorbell;
mod error;
pub mod frame;
pub mod owners;
#[cfg(not(loom))]
mod pipe;
#[cfg(not(loom))]
mod queue;
pub mod ring;
pub mod sync;

pub use error::{Error, PutError, Result};
#[cfg(not(loom))]
pub use pipe::{Connection, DEFAULT_CAPACITY, PipeBuilder, Receiver, Sender, pipe, pipe_one_way};
#[cfg(not(loom))]
pub use queue::{
    DEFAULT_QUEUE_CAPACITY, JoinableQueue, Queue, QueueBuilder, QueueReceiver, QueueSender,
    SimpleQueue,
};
