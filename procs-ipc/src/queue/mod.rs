//! [`Queue`], [`JoinableQueue`] and [`SimpleQueue`]: Python's process
//! queues, over one shared memory ring.
//!
//! ```text
//! segment: holders | put lock | get lock | items put | items got
//!          | unfinished tasks | bells | ring control | (page-aligned) ring data
//! ```
//!
//! Many producers and many consumers share one ring: producers take turns
//! at its writing side under the put lock, consumers at its reading side
//! under the get lock (two procs-sync locks, so a process killed holding one
//! is taken over). Every item is one frame written whole and published at
//! once, so an item half-written by a producer that died is never seen, and
//! the next producer writes over it. An item is at most the ring's capacity
//! (1 MiB by default, set with [`QueueBuilder::capacity`]).
//!
//! The number of items is the count put less the count got, each written by
//! its own side only, under its lock. Moving an item and counting it are two
//! steps, so each side first notes in a journal where the ring and its count
//! stood: whoever takes the lock over from a holder that died between the
//! two steps (the next of its side, or a process waiting on the count that
//! finds the holder dead) finishes the count. A get copies the item's bytes
//! under the lock and decodes them after releasing it, and a put encodes
//! before taking it: no user code (`Serialize`, `Deserialize`) runs while a
//! lock is held, so a panic in it leaves every lock free.
//!
//! Handles have roles: a [`Queue`] can put and get, a [`QueueSender`] only
//! puts, a [`QueueReceiver`] only gets. Each role has its table of holding
//! processes. A consumer waiting on an empty queue gets
//! [`Error::Disconnected`] when no process holding a handle that can put is
//! left (its own process included: a `Queue` handle it keeps could still put
//! from another thread); a producer waiting for room, when no process
//! holding a handle that can get is left.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Serialize, de::DeserializeOwned};

use crate::doorbell::sleep_until;
use crate::error::{Error, PutError, Result};
use crate::owners::Holders;
use crate::ring::{Peer, Sink};
use crate::sync::Ordering;

mod joinable;
mod roles;
mod shared;
mod simple;
mod travel;

pub use joinable::JoinableQueue;
pub use roles::{QueueReceiver, QueueSender};
use shared::{BOTH, GETS, Inner, PUTS, QueueCtl, Role};
pub use simple::SimpleQueue;

/// The default capacity of a queue's ring, in bytes: the most that can be in
/// flight at once, and the largest item.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024 * 1024;

/// Items that encode in this many bytes go through the stack.
const SMALL_ITEM: usize = 48;

thread_local! {
    /// Where larger items are encoded and decoded, reused across calls.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// Builds a queue with a maximum number of items or a ring capacity.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until it builds"]
pub struct QueueBuilder {
    maxsize: u32,
    capacity: usize,
    prefault: bool,
}

impl Default for QueueBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl QueueBuilder {
    /// No item limit, the default capacity.
    pub fn new() -> Self {
        QueueBuilder {
            maxsize: 0,
            capacity: DEFAULT_QUEUE_CAPACITY,
            prefault: false,
        }
    }

    /// The most items the queue holds before `put` waits (Python's
    /// `maxsize`; 0: no limit but the ring's capacity).
    pub fn maxsize(mut self, items: u32) -> Self {
        self.maxsize = items;
        self
    }

    /// The ring's capacity in bytes (a power of two, at least 64): the most
    /// bytes in flight, and the largest item.
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// Gives the ring all its memory when the queue is built (see
    /// [`Segment::prefault`](procs_sync::Segment::prefault)), so that its
    /// first items do not pay a page fault per 4 KiB; without it, the
    /// memory is touched only as items pass.
    pub fn prefault(mut self) -> Self {
        self.prefault = true;
        self
    }

    /// A [`Queue`].
    pub fn build<T>(self) -> Result<Queue<T>> {
        let inner = Inner::create(self.capacity, self.maxsize)?;
        if self.prefault {
            inner.seg.prefault()?;
        }
        let inner = Arc::new(inner);
        Ok(Queue::with_role(inner, BOTH))
    }

    /// A [`JoinableQueue`].
    pub fn joinable<T>(self) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue {
            queue: self.build()?,
        })
    }
}

/// A queue of `T` between any number of processes (Python's
/// `multiprocessing.Queue`).
///
/// Clone the handle, move a clone into each child, and every holder can
/// put and get. Items are serialized (postcard) into shared memory and
/// decoded by the consumer: one copy in, one copy out. `put` waits while
/// the queue holds `maxsize` items or its ring is full; `get` while it is
/// empty. A consumer waiting on a drained queue gets [`Error::Disconnected`]
/// once no handle that can put is left in any process, closed, dropped or
/// killed; [`sender`](Queue::sender) and [`receiver`](Queue::receiver) make
/// handles with one role, so that consumers do not count as producers. A
/// handle that is only shadowed (`let q = q.receiver();`) is still alive:
/// drop the ones you no longer need.
///
/// ```
/// use procs_ipc::Queue;
///
/// let q = Queue::<u32>::new()?;
/// let producer_q = q.sender();
/// let mut producer = procs_core::Process::new(move || {
///     for i in 0..10 {
///         producer_q.put(i).unwrap();
///     }
/// });
/// producer.start()?;
/// // Keep only a handle that gets: once the producer is gone, so is the wait.
/// let rx = q.receiver();
/// drop(q);
/// let got: Vec<u32> = rx.iter().collect();
/// assert_eq!(got, (0..10).collect::<Vec<_>>());
/// producer.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Queue<T> {
    inner: Arc<Inner>,
    role: Role,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue::with_role(Arc::clone(&self.inner), self.role)
    }
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        self.inner.unhold(self.role);
    }
}

impl<T> Queue<T> {
    fn with_role(inner: Arc<Inner>, role: Role) -> Queue<T> {
        inner.hold(role);
        Queue {
            inner,
            role,
            _t: PhantomData,
        }
    }

    /// A handle that only puts: while it lives (here, or in a child it was
    /// moved into), consumers wait for items.
    pub fn sender(&self) -> QueueSender<T> {
        QueueSender(Queue::with_role(Arc::clone(&self.inner), PUTS))
    }

    /// A handle that only gets: it does not keep consumers waiting once
    /// every handle that can put is gone.
    pub fn receiver(&self) -> QueueReceiver<T> {
        QueueReceiver(Queue::with_role(Arc::clone(&self.inner), GETS))
    }

    /// A queue with no item limit and the default capacity.
    pub fn new() -> Result<Queue<T>> {
        QueueBuilder::new().build()
    }

    /// A queue that holds at most `maxsize` items (Python's
    /// `Queue(maxsize)`).
    pub fn with_maxsize(maxsize: u32) -> Result<Queue<T>> {
        QueueBuilder::new().maxsize(maxsize).build()
    }

    /// A builder for the item limit and the capacity.
    pub fn builder() -> QueueBuilder {
        QueueBuilder::new()
    }

    fn ctl(&self) -> &QueueCtl {
        self.inner.ctl()
    }

    /// The processes that can get, as a waiting producer sees them.
    fn consumers(&self) -> Holders<'_> {
        Holders {
            owners: &self.ctl().getters,
            watch: &self.inner.consumers_death,
        }
    }

    /// The processes that can put, as a waiting consumer sees them.
    fn producers(&self) -> Holders<'_> {
        Holders {
            owners: &self.ctl().putters,
            watch: &self.inner.producers_death,
        }
    }

    #[inline]
    fn put_bytes(&self, bytes: &[u8], deadline: Option<Instant>) -> Result<()> {
        self.inner.open()?;
        if !self.role.puts {
            return Err(Error::Invalid("this handle only gets"));
        }
        let ctl = self.ctl();
        let ring = self.inner.ring().hinted(&self.inner.put_hints);
        {
            let _held = self.inner.lock_puts(deadline)?;
            let maxsize = u64::from(ctl.maxsize.load(Ordering::Relaxed));
            let puts = ctl.puts.begin(ctl.ring.write_position());
            if maxsize > 0 {
                // Saturating: a consumer may have taken (and counted) an item
                // whose producer died before counting it, until the repair.
                let room = || puts.saturating_sub(ctl.gets.count.load(Ordering::Acquire)) < maxsize;
                if !room() {
                    self.wait_slot(&room, deadline)?;
                }
            }
            ring.send(bytes, deadline, &self.consumers())?;
            ctl.puts.commit(puts);
        }
        // The lock is released: its release orders the item before this
        // look for a sleeping consumer (the ring is taken in turns).
        ring.wake_reader();
        Ok(())
    }

    /// Waits for fewer than `maxsize` items, checking on the consumers.
    fn wait_slot(&self, room: &impl Fn() -> bool, deadline: Option<Instant>) -> Result<()> {
        sleep_until(
            &self.ctl().slots_bell,
            room,
            deadline,
            Some(|| {
                if !self.consumers().alive() {
                    return Err(Error::Disconnected);
                }
                // A consumer that died between taking an item and counting it
                // holds the count back until its lock is taken over.
                self.inner.repair_gets_if_holder_died();
                Ok(())
            }),
        )
    }

    fn encode_and<R>(item: &T, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R>
    where
        T: Serialize,
    {
        SCRATCH.with(|s| {
            let mut buf = s.borrow_mut();
            buf.clear();
            let bytes = postcard::to_extend(item, std::mem::take(&mut *buf))
                .map_err(|e| Error::Encode(e.to_string()));
            match bytes {
                Ok(bytes) => {
                    let r = f(&bytes);
                    *buf = bytes;
                    r
                }
                Err(e) => Err(e),
            }
        })
    }

    fn put_with(&self, item: T, deadline: Option<Instant>) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        // A small item is encoded on the stack; a larger one in a buffer kept
        // by the thread.
        let mut small = [0u8; SMALL_ITEM];
        let r = match postcard::to_slice(&item, &mut small) {
            Ok(bytes) => self.put_bytes(bytes, deadline),
            Err(postcard::Error::SerializeBufferFull) => {
                Self::encode_and(&item, |bytes| self.put_bytes(bytes, deadline))
            }
            Err(e) => Err(Error::Encode(e.to_string())),
        };
        // No room in time is Python's `queue.Full`.
        r.map_err(|e| PutError::new(item, full_if_timeout(e)))
    }

    /// Puts `item`, waiting as long as it takes for room.
    pub fn put(&self, item: T) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        self.put_with(item, None)
    }

    /// Puts `item`, waiting at most `timeout` for room: [`Error::Full`]
    /// (Python's `queue.Full`), with the item given back, when there was
    /// none in time.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        self.put_with(item, deadline(Some(timeout)))
    }

    /// Puts `item` if there is room now (Python's `put_nowait`):
    /// [`Error::Full`] otherwise.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        self.put_with(item, Some(Instant::now()))
    }

    fn get_with(&self, deadline: Option<Instant>) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.inner.open()?;
        if !self.role.gets {
            return Err(Error::Invalid("this handle only puts"));
        }
        let decode = |bytes: &[u8]| {
            postcard::from_bytes::<T>(bytes).map_err(|e| Error::Decode(e.to_string()))
        };
        // A small item is received on the stack; a larger one (refused there,
        // and left in the ring) in a buffer kept by the thread. Either is
        // decoded once the lock is let go.
        let mut small = [0u8; SMALL_ITEM];
        match self.take(&mut Sink::Slice(&mut small), deadline) {
            Ok(n) => decode(&small[..n]),
            Err(Error::BufferTooSmall { .. }) => SCRATCH.with(|s| {
                let mut buf = s.borrow_mut();
                buf.clear();
                self.take(&mut Sink::Vec(&mut buf), deadline)?;
                decode(&buf)
            }),
            // Nothing in time is Python's `queue.Empty`.
            Err(Error::Timeout) => Err(Error::Empty),
            Err(e) => Err(e),
        }
    }

    /// Takes one item's bytes out of the ring into `sink`, under the
    /// consumers' lock, and counts it; `BufferTooSmall` leaves it there.
    #[inline]
    fn take(&self, sink: &mut Sink<'_>, deadline: Option<Instant>) -> Result<usize> {
        let ctl = self.ctl();
        let ring = self.inner.ring().hinted(&self.inner.get_hints);
        let n = {
            let _held = self.inner.lock_gets(deadline)?;
            let gets = ctl.gets.begin(ctl.ring.read_position());
            let n = ring.recv(sink, deadline, &self.producers())?;
            ctl.gets.commit(gets);
            n
        };
        // After the release, as `put_bytes` wakes a consumer.
        ring.wake_writer();
        if ctl.maxsize.load(Ordering::Relaxed) > 0 {
            ctl.slots_bell.ring();
        }
        Ok(n)
    }

    /// Takes an item, waiting as long as it takes.
    pub fn get(&self) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.get_with(None)
    }

    /// Takes an item, waiting at most `timeout`: [`Error::Empty`] (Python's
    /// `queue.Empty`) when none came in time.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.get_with(deadline(Some(timeout)))
    }

    /// Takes an item if one is there now (Python's `get_nowait`):
    /// [`Error::Empty`] otherwise.
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.get_with(Some(Instant::now()))
    }

    /// The number of items in the queue, approximately (Python's `qsize`):
    /// others may put and get meanwhile.
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        let ctl = self.ctl();
        let gets = ctl.gets.count.load(Ordering::Acquire);
        let puts = ctl.puts.count.load(Ordering::Acquire);
        puts.saturating_sub(gets) as usize
    }

    /// Whether the queue is empty, approximately.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.inner.ring().pending() == 0
    }

    /// Whether the queue holds `maxsize` items, approximately (always false
    /// without a maxsize).
    #[doc(alias = "full")]
    pub fn is_full(&self) -> bool {
        let maxsize = self.ctl().maxsize.load(Ordering::Relaxed) as usize;
        maxsize > 0 && self.len() >= maxsize
    }

    /// The item limit (0: none).
    pub fn maxsize(&self) -> u32 {
        self.ctl().maxsize.load(Ordering::Relaxed)
    }

    /// Closes the queue in this process (Python's `close`): every handle of
    /// this process then fails with [`Error::Closed`], and this process no
    /// longer counts as a holder.
    pub fn close(&self) {
        self.inner.close();
    }
}

fn full_if_timeout(e: Error) -> Error {
    match e {
        Error::Timeout => Error::Full,
        e => e,
    }
}
