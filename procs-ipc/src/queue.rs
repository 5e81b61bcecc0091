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
//! its own side only.
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
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, Instant};

use serde::{Serialize, de::DeserializeOwned};

use crate::doorbell::Doorbell;
use crate::error::{Error, PutError, Result};
use crate::owners::Owners;
use crate::ring::{Hints, Peer, Ring, RingCtl, Sink};
use crate::sync::{AtomicU32, AtomicU64, Ordering, SharedBytes};
use crate::wait::{PeerWatch, Readable, Source, Wait, sealed::Sealed};
use procs_sync::Segment;
use procs_sync::raw::liveness;
use procs_sync::raw::lock::RawLock;

/// The default capacity of a queue's ring, in bytes: the most that can be in
/// flight at once, and the largest item.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024 * 1024;

#[repr(C, align(64))]
#[derive(Debug, Default)]
struct Line<T>(T);

#[repr(C)]
#[derive(Debug, Default)]
struct QueueCtl {
    /// Processes holding a handle that can put.
    putters: Owners,
    /// Processes holding a handle that can get.
    getters: Owners,
    maxsize: AtomicU32,
    put_lock: Line<RawLock>,
    get_lock: Line<RawLock>,
    puts: Line<AtomicU64>,
    gets: Line<AtomicU64>,
    unfinished: Line<AtomicU64>,
    slots_bell: Doorbell,
    done_bell: Doorbell,
    ring: RingCtl,
}

/// A queue's memory and this process's part in it.
#[derive(Debug)]
struct Inner {
    seg: Segment,
    capacity: usize,
    data_offset: usize,
    /// Handles of this process that can put, and that can get.
    put_handles: AtomicUsize,
    get_handles: AtomicUsize,
    /// `close` was called in this process.
    closed: AtomicBool,
    /// What this process's producers saw of the ring (used under the put
    /// lock) and its consumers (under the get lock).
    put_hints: Hints,
    get_hints: Hints,
    /// What a [`wait`](crate::wait) last saw of the producers.
    producers_watch: PeerWatch,
}

impl Inner {
    fn create(capacity: usize, maxsize: u32) -> Result<Inner> {
        if capacity < 64 || !capacity.is_power_of_two() {
            return Err(Error::Invalid(
                "a queue's capacity is a power of two of at least 64 bytes",
            ));
        }
        let data_offset = std::mem::size_of::<QueueCtl>().next_multiple_of(4096);
        let size = data_offset
            .checked_add(capacity)
            .ok_or(Error::Invalid("a queue's capacity overflows"))?;
        let inner = Inner {
            seg: Segment::create(size)?,
            capacity,
            data_offset,
            put_handles: AtomicUsize::new(0),
            get_handles: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            put_hints: Hints::default(),
            get_hints: Hints::default(),
            producers_watch: PeerWatch::default(),
        };
        let ctl = inner.ctl();
        ctl.ring.init(capacity as u64);
        ctl.maxsize.store(maxsize, Ordering::Release);
        Ok(inner)
    }

    #[inline]
    fn ctl(&self) -> &QueueCtl {
        // SAFETY: the segment's data starts with a QueueCtl (it is at least
        // `data_offset` bytes), 64-byte aligned, zero-filled at creation,
        // which is a valid QueueCtl (atomics only); it lives as long as self.
        unsafe { &*self.seg.as_ptr().cast::<QueueCtl>() }
    }

    #[inline]
    fn ring(&self) -> Ring<'_, SharedBytes> {
        // SAFETY: the ring's data is `capacity` bytes at `data_offset`
        // inside the segment, which outlives the returned borrow; the locks
        // keep one writer and one reader on it at a time.
        let bytes =
            unsafe { SharedBytes::new(self.seg.as_ptr().add(self.data_offset), self.capacity) };
        Ring::whole_frames(&self.ctl().ring, bytes)
    }

    #[inline]
    fn open(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn wake_all(&self) {
        let ctl = self.ctl();
        ctl.ring.wake_both();
        ctl.slots_bell.ring();
        ctl.done_bell.ring();
    }

    /// A new handle of this process with `role`.
    fn hold(&self, role: Role) {
        let me = std::process::id() as i32;
        let ctl = self.ctl();
        if role.puts && self.put_handles.fetch_add(1, Ordering::AcqRel) == 0 {
            ctl.putters.add(me, liveness::own_start_ticks());
            // Producers a wait found all dead have one again.
            self.producers_watch.reset();
        }
        if role.gets && self.get_handles.fetch_add(1, Ordering::AcqRel) == 0 {
            ctl.getters.add(me, liveness::own_start_ticks());
        }
    }

    /// A handle of this process with `role` is gone: when it was being
    /// handed to a child, the child holds the role now; when it was this
    /// process's last with the role, this process no longer does.
    fn unhold(&self, role: Role) {
        let ctl = self.ctl();
        if let Some(child) = procs_core::handing_over_to() {
            let start = liveness::start_ticks(child).unwrap_or(0);
            if role.puts {
                ctl.putters.add(child, start);
            }
            if role.gets {
                ctl.getters.add(child, start);
            }
        }
        let me = std::process::id() as i32;
        if role.puts && self.put_handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            ctl.putters.remove(me);
        }
        if role.gets && self.get_handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            ctl.getters.remove(me);
        }
        self.wake_all();
    }

    /// This process closes the queue: it holds no role any more.
    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = std::process::id() as i32;
        self.ctl().putters.remove(me);
        self.ctl().getters.remove(me);
        self.wake_all();
    }
}

/// What a handle may do.
#[derive(Debug, Clone, Copy)]
struct Role {
    puts: bool,
    gets: bool,
}

const BOTH: Role = Role {
    puts: true,
    gets: true,
};
const PUTS: Role = Role {
    puts: true,
    gets: false,
};
const GETS: Role = Role {
    puts: false,
    gets: true,
};

/// The processes on the other side of a queue: those that can put, seen by
/// a waiting consumer, or those that can get, seen by a waiting producer.
struct OtherSide<'a>(&'a Owners);

impl Peer for OtherSide<'_> {
    fn closed(&self) -> bool {
        self.0.closed()
    }

    fn alive(&self) -> bool {
        self.0.any_alive(liveness::is_alive)
    }
}

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

    fn consumers(&self) -> OtherSide<'_> {
        OtherSide(&self.ctl().getters)
    }

    fn producers(&self) -> OtherSide<'_> {
        OtherSide(&self.ctl().putters)
    }

    fn put_bytes(&self, bytes: &[u8], deadline: Option<Instant>, joinable: bool) -> Result<()> {
        self.inner.open()?;
        if !self.role.puts {
            return Err(Error::Invalid("this handle only gets"));
        }
        let ctl = self.ctl();
        // A previous holder that died left no published half-item: go on.
        // (An explicit branch: an error built eagerly is dropped on every call.)
        if ctl.put_lock.0.lock(deadline).is_none() {
            return Err(Error::Timeout);
        }
        let r = self.put_locked(bytes, deadline, joinable);
        // SAFETY: this thread took put_lock above and has not released it.
        unsafe { ctl.put_lock.0.unlock() };
        r
    }

    fn put_locked(&self, bytes: &[u8], deadline: Option<Instant>, joinable: bool) -> Result<()> {
        let ctl = self.ctl();
        let maxsize = u64::from(ctl.maxsize.load(Ordering::Relaxed));
        let puts = ctl.puts.0.load(Ordering::Relaxed);
        if maxsize > 0 {
            let room = || puts.wrapping_sub(ctl.gets.0.load(Ordering::Acquire)) < maxsize;
            if !room() {
                self.wait_slot(&room, deadline)?;
            }
        }
        if joinable {
            // Counted before it is visible, so task_done can never go below.
            ctl.unfinished.0.fetch_add(1, Ordering::AcqRel);
        }
        let sent = self.inner.ring().hinted(&self.inner.put_hints).send(
            bytes,
            deadline,
            &self.consumers(),
        );
        match sent {
            Ok(()) => {
                ctl.puts.0.store(puts.wrapping_add(1), Ordering::Release);
                Ok(())
            }
            Err(e) => {
                if joinable {
                    ctl.unfinished.0.fetch_sub(1, Ordering::AcqRel);
                }
                Err(e)
            }
        }
    }

    /// Waits for fewer than `maxsize` items, checking on the consumers.
    fn wait_slot(&self, room: &impl Fn() -> bool, deadline: Option<Instant>) -> Result<()> {
        let ctl = self.ctl();
        let mut next_check = Instant::now();
        loop {
            if room() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= next_check {
                if !self.consumers().alive() {
                    return Err(Error::Disconnected);
                }
                next_check = now + crate::ring::CHECK_EVERY;
            }
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout);
            }
            let until = deadline.map_or(next_check, |d| d.min(next_check));
            ctl.slots_bell.sleep(room, Some(until));
        }
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

    fn put_with(
        &self,
        item: T,
        deadline: Option<Instant>,
        joinable: bool,
    ) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        // A small item is encoded on the stack; a larger one in a buffer kept
        // by the thread.
        let mut small = [0u8; SMALL_ITEM];
        let r = match postcard::to_slice(&item, &mut small) {
            Ok(bytes) => self.put_bytes(bytes, deadline, joinable),
            Err(postcard::Error::SerializeBufferFull) => {
                Self::encode_and(&item, |bytes| self.put_bytes(bytes, deadline, joinable))
            }
            Err(e) => Err(Error::Encode(e.to_string())),
        };
        r.map_err(|e| PutError::new(item, e))
    }

    /// Puts `item`, waiting as long as it takes for room.
    pub fn put(&self, item: T) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        self.put_with(item, None, false)
    }

    /// Puts `item`, waiting at most `timeout` for room
    /// ([`Error::Timeout`], with the item given back).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        self.put_with(item, deadline(Some(timeout)), false)
    }

    /// Puts `item` if there is room now (Python's `put_nowait`):
    /// [`Error::Full`] otherwise.
    pub fn try_put(&self, item: T) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        self.put_with(item, Some(Instant::now()), false)
            .map_err(|PutError { item, error }| PutError::new(item, full_if_timeout(error)))
    }

    fn get_with(&self, deadline: Option<Instant>) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.inner.open()?;
        if !self.role.gets {
            return Err(Error::Invalid("this handle only puts"));
        }
        let ctl = self.ctl();
        if ctl.get_lock.0.lock(deadline).is_none() {
            return Err(Error::Timeout);
        }
        let ring = self.inner.ring().hinted(&self.inner.get_hints);
        let producers = self.producers();
        let decode = |bytes: &[u8]| {
            postcard::from_bytes::<T>(bytes).map_err(|e| Error::Decode(e.to_string()))
        };
        // A small item is received on the stack; a larger one (refused there,
        // and left in the ring) in a buffer kept by the thread.
        let mut small = [0u8; SMALL_ITEM];
        let got = match ring.recv(&mut Sink::Slice(&mut small), deadline, &producers) {
            Ok(n) => Ok(decode(&small[..n])),
            Err(Error::BufferTooSmall { .. }) => SCRATCH.with(|s| {
                let mut buf = s.borrow_mut();
                buf.clear();
                ring.recv(&mut Sink::Vec(&mut buf), deadline, &producers)
                    .map(|_| decode(&buf))
            }),
            Err(e) => Err(e),
        };
        if got.is_ok() {
            let gets = ctl.gets.0.load(Ordering::Relaxed);
            ctl.gets.0.store(gets.wrapping_add(1), Ordering::Release);
        }
        // SAFETY: this thread took get_lock above and has not released it.
        unsafe { ctl.get_lock.0.unlock() };
        if got.is_ok() && ctl.maxsize.load(Ordering::Relaxed) > 0 {
            ctl.slots_bell.ring();
        }
        got?
    }

    /// Takes an item, waiting as long as it takes.
    pub fn get(&self) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.get_with(None)
    }

    /// Takes an item, waiting at most `timeout` ([`Error::Timeout`]).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.get_with(deadline(Some(timeout)))
    }

    /// Takes an item if one is there now (Python's `get_nowait`):
    /// [`Error::Empty`] otherwise.
    pub fn try_get(&self) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.get_with(Some(Instant::now())).map_err(|e| match e {
            Error::Timeout => Error::Empty,
            e => e,
        })
    }

    /// The number of items in the queue, approximately (Python's `qsize`):
    /// others may put and get meanwhile.
    pub fn len(&self) -> usize {
        let ctl = self.ctl();
        let gets = ctl.gets.0.load(Ordering::Acquire);
        let puts = ctl.puts.0.load(Ordering::Acquire);
        puts.saturating_sub(gets) as usize
    }

    /// Whether the queue is empty, approximately.
    pub fn is_empty(&self) -> bool {
        self.inner.ring().pending() == 0
    }

    /// Whether the queue holds `maxsize` items, approximately (always false
    /// without a maxsize).
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

/// A handle of a [`Queue`] that only puts (from [`Queue::sender`]).
#[derive(Debug)]
pub struct QueueSender<T>(Queue<T>);

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
    pub fn try_put(&self, item: T) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        self.0.try_put(item)
    }

    /// The number of items in the queue, approximately.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the queue is empty, approximately.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the queue holds `maxsize` items, approximately.
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
pub struct QueueReceiver<T>(Queue<T>);

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
    pub fn try_get(&self) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.0.try_get()
    }

    /// The number of items in the queue, approximately.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the queue is empty, approximately.
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

fn full_if_timeout(e: Error) -> Error {
    match e {
        Error::Timeout => Error::Full,
        e => e,
    }
}

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
    queue: Queue<T>,
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
        self.queue.put_with(item, None, true)
    }

    /// Puts `item`, waiting at most `timeout` for room.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        self.queue.put_with(item, deadline(Some(timeout)), true)
    }

    /// Puts `item` if there is room now.
    pub fn try_put(&self, item: T) -> Result<(), PutError<T>>
    where
        T: Serialize,
    {
        self.queue
            .put_with(item, Some(Instant::now()), true)
            .map_err(|PutError { item, error }| PutError::new(item, full_if_timeout(error)))
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
    pub fn try_get(&self) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.queue.try_get()
    }

    /// Reports one item taken with `get` as done. More reports than items
    /// put is [`Error::TaskDoneTooMany`], as Python's `ValueError`.
    pub fn task_done(&self) -> Result<()> {
        let ctl = self.queue.ctl();
        let mut n = ctl.unfinished.0.load(Ordering::Acquire);
        loop {
            if n == 0 {
                return Err(Error::TaskDoneTooMany);
            }
            match ctl.unfinished.0.compare_exchange_weak(
                n,
                n - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        if n == 1 {
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
        let ctl = self.queue.ctl();
        let done = || ctl.unfinished.0.load(Ordering::Acquire) == 0;
        let mut next_check = Instant::now();
        loop {
            if done() {
                return Ok(());
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout);
            }
            if now >= next_check {
                // Nobody left to get or finish the tasks.
                if !self.queue.consumers().alive() {
                    return Err(Error::Disconnected);
                }
                next_check = now + crate::ring::CHECK_EVERY;
            }
            let until = deadline.map_or(next_check, |d| d.min(next_check));
            ctl.done_bell.sleep(done, Some(until));
        }
    }

    /// The number of items put and not yet reported done.
    pub fn unfinished_tasks(&self) -> u64 {
        self.queue.ctl().unfinished.0.load(Ordering::Acquire)
    }

    /// The number of items in the queue, approximately.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether the queue is empty, approximately.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Closes the queue in this process.
    pub fn close(&self) {
        self.queue.close();
    }
}

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
    queue: Queue<T>,
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
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Closes the queue in this process.
    pub fn close(&self) {
        self.queue.close();
    }
}
