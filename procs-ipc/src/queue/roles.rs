//! The handles of a queue with one role, and how every handle that gets
//! takes part in a [`wait`](crate::wait).

use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

use super::{JoinableQueue, Queue, SimpleQueue};
use crate::doorbell::Doorbell;
use crate::error::{Error, PutError, Result};
use crate::ring::Peer;
use crate::wait::{Readable, Source, Wait, sealed::Sealed};

/// A handle of a [`Queue`] that only puts (from [`Queue::sender`]).
#[derive(Debug)]
pub struct QueueSender<T>(pub(super) Queue<T>);

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        QueueSender(self.0.clone())
    }
}

impl<T> QueueSender<T> {
    /// Puts `item`, waiting as long as it takes for room.
    pub fn put(&self, item: T) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        self.0.put(item)
    }

    /// Puts `item`, waiting at most `timeout` for room.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        self.0.put_timeout(item, timeout)
    }

    /// Puts `item` if there is room now.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        self.0.try_put(item)
    }

    /// The number of items in the queue, approximately.
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the queue is empty, approximately.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the queue holds `maxsize` items, approximately.
    #[doc(alias = "full")]
    pub fn is_full(&self) -> bool {
        self.0.is_full()
    }
}

/// A queue handle that gets is ready for a [`wait`](crate::wait) when an
/// item is there, or no handle that can put is left, or it was closed here:
/// a `get` would not wait (unless another consumer takes the item first).
impl<T> Readable for Queue<T> {
    fn recv_ready(&self) -> bool {
        self.inner.open().is_err() || self.inner.ring().recv_ready(&self.producers())
    }

    fn recv_bell(&self) -> Option<&Doorbell> {
        Some(self.inner.ring().data_bell())
    }

    fn peer_gone(&self) -> bool {
        self.inner
            .producers_watch
            .gone(|| !self.producers().alive())
    }
}

impl<T> Sealed for Queue<T> {
    fn source(&self) -> Result<Source<'_>> {
        if self.role.gets {
            Ok(Source::Ring(self))
        } else {
            Err(Error::Invalid("this handle only puts"))
        }
    }
}

impl<T> Wait for Queue<T> {}

impl<T> Sealed for QueueReceiver<T> {
    fn source(&self) -> Result<Source<'_>> {
        self.0.source()
    }
}

impl<T> Wait for QueueReceiver<T> {}

impl<T> Sealed for JoinableQueue<T> {
    fn source(&self) -> Result<Source<'_>> {
        self.queue.source()
    }
}

impl<T> Wait for JoinableQueue<T> {}

impl<T> Sealed for SimpleQueue<T> {
    fn source(&self) -> Result<Source<'_>> {
        self.queue.source()
    }
}

impl<T> Wait for SimpleQueue<T> {}

/// A handle of a [`Queue`] that only gets (from [`Queue::receiver`]).
#[derive(Debug)]
pub struct QueueReceiver<T>(pub(super) Queue<T>);

impl<T> Clone for QueueReceiver<T> {
    fn clone(&self) -> Self {
        QueueReceiver(self.0.clone())
    }
}

impl<T> QueueReceiver<T> {
    /// Takes an item, waiting as long as it takes; [`Error::Disconnected`]
    /// once the queue is drained and no handle that can put is left.
    pub fn get(&self) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.0.get()
    }

    /// Takes an item, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.0.get_timeout(timeout)
    }

    /// Takes an item if one is there now.
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.0.try_get()
    }

    /// The number of items in the queue, approximately.
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the queue is empty, approximately.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// An iterator over the items until the queue is drained and no handle
    /// that can put is left (or another error).
    pub fn iter(&self) -> impl Iterator<Item = T> + '_
    where
        T: DeserializeOwned,
    {
        std::iter::from_fn(move || self.get().ok())
    }
}
