//! [`SimpleQueue`]: a queue with no limit and no timeouts.

use serde::{Serialize, de::DeserializeOwned};

use super::Queue;
use crate::error::{PutError, Result};

/// A plain queue with no item limit and no timeouts (Python's
/// `SimpleQueue`).
///
/// ```
/// let q = procs_ipc::SimpleQueue::<String>::new()?;
/// q.put("hi".to_string()).unwrap();
/// assert!(!q.is_empty());
/// assert_eq!(q.get()?, "hi");
/// # Ok::<(), procs_ipc::Error>(())
/// ```
#[derive(Debug)]
pub struct SimpleQueue<T> {
    pub(super) queue: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> SimpleQueue<T> {
    /// A simple queue with the default capacity.
    pub fn new() -> Result<SimpleQueue<T>> {
        Ok(SimpleQueue {
            queue: Queue::new()?,
        })
    }

    /// Puts `item`, waiting for room in the ring if it is full.
    pub fn put(&self, item: T) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        self.queue.put(item)
    }

    /// Takes an item, waiting for one.
    pub fn get(&self) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.queue.get()
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
