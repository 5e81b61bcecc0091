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
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::{Serialize, de::DeserializeOwned};

use crate::doorbell::Doorbell;
use crate::error::{Error, PutError, Result};
use crate::owners::{DeathWatch, Holders, Owners};
use crate::ring::{CHECK_EVERY, Hints, Peer, Ring, RingCtl, Sink};
use crate::sync::{AtomicU32, AtomicU64, Ordering, SharedBytes, boot_ticks_now, holder_alive};
use crate::wait::{PeerWatch, Readable, Source, Wait, sealed::Sealed};
use procs_sync::Segment;
use procs_sync::raw::liveness;
use procs_sync::raw::lock::{Acquired, RawLock};

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
    /// Items put, and the producers' journal.
    puts: Line<Counted>,
    /// Items got, and the consumers' journal.
    gets: Line<Counted>,
    /// Items reported done (a joinable queue's `task_done`).
    done: Line<AtomicU64>,
    slots_bell: Doorbell,
    done_bell: Doorbell,
    ring: RingCtl,
}

/// One side's count of items moved, and its journal: where the ring's
/// position (the writer's for puts, the reader's for gets) and the count
/// stood before the move that the lock's holder is making (or made last).
/// A position that moved with the count unchanged is an item moved by a
/// holder that died before it counted it. A new queue's journal (all zero)
/// reads as its ring's start, position 0.
#[repr(C)]
#[derive(Debug, Default)]
struct Counted {
    count: AtomicU64,
    journal_pos: AtomicU64,
    journal_count: AtomicU64,
}

impl Counted {
    /// Notes, under the side's lock, where things stand before a move.
    #[inline]
    fn begin(&self, pos: u64) -> u64 {
        let count = self.count.load(Ordering::Relaxed);
        // Relaxed: read only by the lock's next holder, whom the lock's
        // release (or a takeover, after the holder is gone) orders after.
        self.journal_pos.store(pos, Ordering::Relaxed);
        self.journal_count.store(count, Ordering::Relaxed);
        count
    }

    /// Counts the item moved.
    #[inline]
    fn commit(&self, before: u64) {
        // Release: who sees the count sees the ring's position it counts.
        self.count.store(before.wrapping_add(1), Ordering::Release);
    }

    /// Finishes the count of a holder that died: `pos` is the side's
    /// position now. Under the side's lock (taken over).
    fn repair(&self, pos: u64) {
        let before = self.journal_count.load(Ordering::Acquire);
        if pos != self.journal_pos.load(Ordering::Acquire)
            && self.count.load(Ordering::Acquire) == before
        {
            self.commit(before);
        }
        self.journal_pos.store(pos, Ordering::Relaxed);
    }
}

/// A side's lock held; released when dropped, by unwinding too.
struct Held<'a>(&'a RawLock);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

/// A queue's memory and this process's part in it.
#[derive(Debug)]
struct Inner {
    seg: Segment,
    capacity: usize,
    data_offset: usize,
    /// `close` was called in this process.
    closed: AtomicBool,
    /// What this process's producers saw of the ring (used under the put
    /// lock) and its consumers (under the get lock).
    put_hints: Hints,
    get_hints: Hints,
    /// What a [`wait`](crate::wait) last saw of the producers.
    producers_watch: PeerWatch,
    /// When this process last looked at the producers' and the consumers'
    /// lives.
    producers_death: DeathWatch,
    consumers_death: DeathWatch,
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
            closed: AtomicBool::new(false),
            put_hints: Hints::default(),
            get_hints: Hints::default(),
            producers_watch: PeerWatch::default(),
            producers_death: DeathWatch::default(),
            consumers_death: DeathWatch::default(),
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

    /// A new handle of this process with `role`: one more counted for it
    /// in the shared tables.
    fn hold(&self, role: Role) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let me = std::process::id() as i32;
        let start = liveness::own_start_ticks();
        let ctl = self.ctl();
        if role.puts {
            ctl.putters.add(me, start, liveness::is_alive);
            // Producers a wait found all dead have one again.
            self.producers_watch.reset();
        }
        if role.gets {
            ctl.getters.add(me, start, liveness::is_alive);
        }
    }

    /// A handle of this process with `role` is gone: one less counted for
    /// this process, and, when it was being handed to a child, one more for
    /// the child.
    fn unhold(&self, role: Role) {
        if self.closed.load(Ordering::Acquire) {
            // This process's handles were all forgotten when it closed.
            return;
        }
        let ctl = self.ctl();
        let tables = [(role.puts, &ctl.putters), (role.gets, &ctl.getters)];
        if let Some(child) = procs_core::handing_over_to() {
            let start = liveness::start_ticks(child).unwrap_or(0);
            for (_, owners) in tables.iter().filter(|(has, _)| *has) {
                owners.add(child, start, liveness::is_alive);
            }
        }
        let me = std::process::id() as i32;
        for (_, owners) in tables.iter().filter(|(has, _)| *has) {
            owners.release(me);
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

    /// Takes the producers' lock; a takeover from a producer that died
    /// finishes its count.
    fn lock_puts(&self, deadline: Option<Instant>) -> Result<Held<'_>> {
        let ctl = self.ctl();
        Self::lock_side(&ctl.put_lock.0, deadline, || {
            ctl.puts.0.repair(ctl.ring.write_position());
        })
    }

    /// Takes the consumers' lock; a takeover from a consumer that died
    /// finishes its count.
    fn lock_gets(&self, deadline: Option<Instant>) -> Result<Held<'_>> {
        let ctl = self.ctl();
        Self::lock_side(&ctl.get_lock.0, deadline, || {
            ctl.gets.0.repair(ctl.ring.read_position());
        })
    }

    #[inline]
    fn lock_side<'a>(
        lock: &'a RawLock,
        deadline: Option<Instant>,
        repair: impl FnOnce(),
    ) -> Result<Held<'a>> {
        match lock.lock(deadline) {
            // (An explicit branch: an error built eagerly is dropped on
            // every call.)
            None => Err(Error::Timeout),
            Some(Acquired::Clean) => Ok(Held(lock)),
            Some(Acquired::OwnerDied { .. }) => {
                let held = Held(lock);
                repair();
                Ok(held)
            }
        }
    }

    /// For a process waiting on the count of items got: when the
    /// consumers' lock is held by a thread that is gone, takes it over (so
    /// the count is finished) and lets it go. Called every `CHECK_EVERY`.
    fn repair_gets_if_holder_died(&self) {
        let lock = &self.ctl().get_lock.0;
        let holder = lock.holder();
        if holder == 0 || holder_alive(holder, boot_ticks_now()) {
            return;
        }
        // The lock's own takeover finds the holder dead within CHECK_EVERY.
        let _ = self.lock_gets(Some(Instant::now() + 3 * CHECK_EVERY));
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

    fn put_bytes(&self, bytes: &[u8], deadline: Option<Instant>) -> Result<()> {
        self.inner.open()?;
        if !self.role.puts {
            return Err(Error::Invalid("this handle only gets"));
        }
        let _held = self.inner.lock_puts(deadline)?;
        let ctl = self.ctl();
        let maxsize = u64::from(ctl.maxsize.load(Ordering::Relaxed));
        let puts = ctl.puts.0.begin(ctl.ring.write_position());
        if maxsize > 0 {
            // Saturating: a consumer may have taken (and counted) an item
            // whose producer died before counting it, until the repair.
            let room = || puts.saturating_sub(ctl.gets.0.count.load(Ordering::Acquire)) < maxsize;
            if !room() {
                self.wait_slot(&room, deadline)?;
            }
        }
        self.inner
            .ring()
            .hinted(&self.inner.put_hints)
            .send(bytes, deadline, &self.consumers())?;
        ctl.puts.0.commit(puts);
        Ok(())
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
                // A consumer that died between taking an item and counting
                // it holds the count back until its lock is taken over.
                self.inner.repair_gets_if_holder_died();
                next_check = Instant::now() + CHECK_EVERY;
                continue;
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
    fn take(&self, sink: &mut Sink<'_>, deadline: Option<Instant>) -> Result<usize> {
        let ctl = self.ctl();
        let n = {
            let _held = self.inner.lock_gets(deadline)?;
            let gets = ctl.gets.0.begin(ctl.ring.read_position());
            let n = self.inner.ring().hinted(&self.inner.get_hints).recv(
                sink,
                deadline,
                &self.producers(),
            )?;
            ctl.gets.0.commit(gets);
            n
        };
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
    pub fn try_get(&self) -> Result<T>
    where
        T: DeserializeOwned,
    {
        self.get_with(Some(Instant::now()))
    }

    /// The number of items in the queue, approximately (Python's `qsize`):
    /// others may put and get meanwhile.
    pub fn len(&self) -> usize {
        let ctl = self.ctl();
        let gets = ctl.gets.0.count.load(Ordering::Acquire);
        let puts = ctl.puts.0.count.load(Ordering::Acquire);
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
        let gets = ctl.gets.0.count.load(Ordering::Acquire);
        ctl.puts.0.count.load(Ordering::Acquire).max(gets)
    }

    /// Reports one item taken with `get` as done. More reports than items
    /// put is [`Error::TaskDoneTooMany`], as Python's `ValueError`.
    ///
    /// The tasks not done are the items put less the reports: an item
    /// counts as a task once it is in the queue, so a producer killed while
    /// its `put` waited for room leaves no task behind.
    pub fn task_done(&self) -> Result<()> {
        let ctl = self.queue.ctl();
        let mut n = ctl.done.0.load(Ordering::Acquire);
        let put = loop {
            let put = self.put_count();
            if n >= put {
                return Err(Error::TaskDoneTooMany);
            }
            match ctl
                .done
                .0
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
        let ctl = self.queue.ctl();
        let done = || self.unfinished_tasks() == 0;
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
                next_check = now + CHECK_EVERY;
            }
            let until = deadline.map_or(next_check, |d| d.min(next_check));
            ctl.done_bell.sleep(done, Some(until));
        }
    }

    /// The number of items put and not yet reported done.
    pub fn unfinished_tasks(&self) -> u64 {
        // Reports first: a report read before the puts it answers can only
        // make the number larger, never report work done that is not.
        let done = self.queue.ctl().done.0.load(Ordering::Acquire);
        self.put_count().saturating_sub(done)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A side moves items from the ring's start on, 8 bytes each. Its holder
    /// dies after `steps` of the three steps of its next move (note, move,
    /// count), and the next holder repairs: the count is then the number of
    /// items that left the position, whichever step the death cut.
    #[test]
    fn a_takeover_finishes_the_count_whichever_step_the_holder_died_at() {
        for done_before in 0..3u64 {
            for steps in 0..=3 {
                // All zero, as a new queue's memory is: the journal reads
                // as the ring's start.
                let side = Counted::default();
                let mut pos = 0;
                for _ in 0..done_before {
                    let before = side.begin(pos);
                    pos += 8;
                    side.commit(before);
                }
                let before = (steps >= 1).then(|| side.begin(pos));
                if steps >= 2 {
                    pos += 8;
                }
                if steps >= 3 {
                    side.commit(before.unwrap());
                }
                side.repair(pos);
                let moved = done_before + u64::from(steps >= 2);
                assert_eq!(
                    side.count.load(Ordering::Relaxed),
                    moved,
                    "{done_before} moves, then death after {steps} steps"
                );
                // A second repair (another takeover) changes nothing, and
                // the next move counts from there.
                side.repair(pos);
                let before = side.begin(pos);
                side.commit(before);
                assert_eq!(side.count.load(Ordering::Relaxed), moved + 1);
            }
        }
    }
}
