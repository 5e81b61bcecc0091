//! [`JoinableQueue`]: a queue whose items are tasks reported done.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Serialize, de::DeserializeOwned};

use super::shared::{GETS, PUTS};
use super::{Queue, QueueBuilder, deadline};
use crate::doorbell::sleep_until;
use crate::error::{Error, PutError, Result};
use crate::ring::Peer;
use crate::sync::Ordering;

/// A [`Queue`] whose consumers report each item done, so that a producer can
/// wait until all are (Python's `JoinableQueue`).
///
/// ```
/// use procs_ipc::JoinableQueue;
///
/// let q = JoinableQueue::<u32>::new()?;
/// let jobs = q.receiver();
/// let mut worker = procs_core::Process::new(move || {
///     // Ends once the queue is drained and no handle that can put is left.
///     while let Ok(_job) = jobs.get() {
///         jobs.task_done().unwrap();
///     }
/// });
/// worker.start()?;
/// for job in 0..5 {
///     q.put(job).unwrap();
/// }
/// q.join()?; // every job done
/// drop(q); // the worker's get now reports Disconnected
/// worker.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct JoinableQueue<T> {
    pub(super) queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> JoinableQueue<T> {
    /// A joinable queue with no item limit and the default capacity.
    pub fn new() -> Result<JoinableQueue<T>> {
        QueueBuilder::new().joinable()
    }

    /// A handle that only puts (and may `join`).
    pub fn sender(&self) -> JoinableQueue<T> {
        JoinableQueue {
            queue: Queue::with_role(Arc::clone(&self.queue.inner), PUTS),
        }
    }

    /// A handle that only gets and reports tasks done: a worker holding it
    /// learns, through [`Error::Disconnected`], when the queue is drained and
    /// no handle that can put is left.
    pub fn receiver(&self) -> JoinableQueue<T> {
        JoinableQueue {
            queue: Queue::with_role(Arc::clone(&self.queue.inner), GETS),
        }
    }

    /// Puts `item` and counts it as a task not yet done.
    pub fn put(&self, item: T) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        self.queue.put_with(item, None)
    }

    /// Puts `item`, waiting at most `timeout` for room.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        self.queue.put_with(item, deadline(Some(timeout)))
    }

    /// Puts `item` if there is room now.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        self.queue.put_with(item, Some(Instant::now()))
    }

    /// Takes an item (see [`Queue::get`]).
    pub fn get(&self) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.queue.get()
    }

    /// Takes an item, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.queue.get_timeout(timeout)
    }

    /// Takes an item if one is there now.
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.queue.try_get()
    }

    /// How many items were put, as far as anyone can tell: the count put, or
    /// the count got when that is higher (a producer that died between
    /// putting an item and counting it, until the count is repaired).
    fn put_count(&self) -> u64 {
        let ctl = self.queue.ctl();
        let gets = ctl.gets.count.load(Ordering::Acquire);
        ctl.puts.count.load(Ordering::Acquire).max(gets)
    }

    /// Reports one item taken with `get` as done. More reports than items
    /// put is [`Error::TaskDoneTooMany`], as Python's `ValueError`.
    ///
    /// The tasks not done are the items put less the reports: an item
    /// counts as a task once it is in the queue, so a producer killed while
    /// its `put` waited for room leaves no task behind.
    pub fn task_done(&self) -> Result<()> {
        let ctl = self.queue.ctl();
        let mut n = ctl.done.load(Ordering::Acquire);
        let put = loop {
            let put = self.put_count();
            if n >= put {
                return Err(Error::TaskDoneTooMany);
            }
            match ctl
                .done
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break put,
                Err(now) => n = now,
            }
        };
        if n + 1 == put {
            ctl.done_bell.ring();
        }
        Ok(())
    }

    /// Waits until every item put has been reported done.
    pub fn join(&self) -> Result<()> {
        self.join_until(None)
    }

    /// Waits at most `timeout` for every item to be done
    /// ([`Error::Timeout`]).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_until(deadline(Some(timeout)))
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<()> {
        let done = || self.unfinished_tasks() == 0;
        sleep_until(
            &self.queue.ctl().done_bell,
            done,
            deadline,
            Some(|| {
                // Nobody left to get or finish the tasks.
                if self.queue.consumers().alive() {
                    Ok(())
                } else {
                    Err(Error::Disconnected)
                }
            }),
        )
    }

    /// The number of items put and not yet reported done.
    pub fn unfinished_tasks(&self) -> u64 {
        // Reports first: a report read before the puts it answers can only
        // make the number larger, never report work done that is not.
        let done = self.queue.ctl().done.load(Ordering::Acquire);
        self.put_count().saturating_sub(done)
    }

    /// The number of items in the queue, approximately.
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether the queue is empty, approximately.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Closes the queue in this process.
    pub fn close(&self) {
        self.queue.close();
    }
}
