//! Results: [`AsyncResult`], the callbacks, and the jobs that turn the
//! workers' outputs into values.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::buffers::Buffers;
use crate::error::{Error, Result};
use crate::task::{decode_chunk, decode_chunk_into, decode_one};

/// What the pool does with the outcome of one of a job's tasks.
pub(crate) trait Job: Send + Sync {
    /// Task `index` of the job, which carried `items` arguments, ended with
    /// `outcome`: the worker's output (a buffer to give back to the pool's
    /// [`Buffers`] once read), or why there is none.
    fn deliver(&self, index: usize, items: usize, outcome: Result<Vec<u8>>);
}

/// Work a result's waiters do themselves: a map's outputs are decoded by
/// the thread that waits for the map (or asks whether it is ready), not
/// by the pool's handler thread, which meanwhile serves the workers.
pub(crate) trait Drive: Send + Sync {
    /// Does what has come (decodes the outputs that arrived); sets the
    /// result once everything is in.
    fn drive(&self);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves consistent data (callbacks
    // run outside them): go on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum State<T> {
    Pending,
    Ready(Result<T>),
    /// The value was taken; whether the task succeeded.
    Taken,
}

/// How long a waiter watches for a result before it sleeps: results of
/// short tasks come within microseconds, and a sleeper costs its waker a
/// system call and itself a context switch.
const SPIN: Duration = Duration::from_micros(30);

/// Watches `ready` for at most [`SPIN`] (or until `deadline`), yielding
/// the processor between looks; whether it became true.
fn spin_for(ready: impl Fn() -> bool, deadline: Option<Instant>) -> bool {
    let start = Instant::now();
    let until = deadline.map_or(start + SPIN, |d| d.min(start + SPIN));
    for i in 0u32.. {
        if ready() {
            return true;
        }
        if i < 64 {
            std::hint::spin_loop();
        } else if Instant::now() >= until {
            return false;
        } else {
            std::thread::yield_now();
        }
    }
    false
}

struct SlotInner<T> {
    state: State<T>,
    /// Run with the result before it is set.
    callbacks: Option<Callbacks<T>>,
    /// Threads asleep on `ready`: a result wakes them only if there are
    /// some (a notify costs a system call even when nobody waits).
    sleepers: usize,
}

/// Where a result lands, and its waiters.
pub(crate) struct Slot<T> {
    inner: Mutex<SlotInner<T>>,
    /// Set once the result is in.
    done: AtomicBool,
    /// Counts what waiters wait for: the result set, or work for them (an
    /// output to decode). Changed under `inner`'s lock; waiters watch it
    /// before they sleep.
    events: AtomicU64,
    ready: Condvar,
}

impl<T> Slot<T> {
    pub(crate) fn new(callbacks: Callbacks<T>) -> Arc<Slot<T>> {
        let callbacks = callbacks.any().then_some(callbacks);
        Arc::new(Slot {
            inner: Mutex::new(SlotInner {
                state: State::Pending,
                callbacks,
                sleepers: 0,
            }),
            done: AtomicBool::new(false),
            events: AtomicU64::new(0),
            ready: Condvar::new(),
        })
    }

    /// Runs the callbacks with `value`, then sets it.
    pub(crate) fn finish(&self, value: Result<T>) {
        let mut s = lock(&self.inner);
        if let Some(cb) = s.callbacks.take() {
            // Outside the lock: a callback may look at this result.
            drop(s);
            cb.run(&value);
            s = lock(&self.inner);
        }
        self.set_locked(&mut s, value);
    }

    fn set_locked(&self, s: &mut SlotInner<T>, value: Result<T>) {
        if matches!(s.state, State::Pending) {
            s.state = State::Ready(value);
            self.done.store(true, Ordering::Release);
            self.events.fetch_add(1, Ordering::Release);
            if s.sleepers > 0 {
                self.ready.notify_all();
            }
        }
    }

    /// Tells waiters there is work for them.
    fn poke(&self) {
        let s = lock(&self.inner);
        self.events.fetch_add(1, Ordering::Release);
        if s.sleepers > 0 {
            self.ready.notify_all();
        }
    }

    /// Waits until `events` is no longer `seen`, or `deadline`.
    fn wait_event(&self, seen: u64, deadline: Option<Instant>) {
        if spin_for(|| self.events.load(Ordering::Acquire) != seen, deadline) {
            return;
        }
        let mut s = lock(&self.inner);
        while self.events.load(Ordering::Acquire) == seen {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return;
            }
            s.sleepers += 1;
            s = match deadline {
                None => self.ready.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    self.ready
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            s.sleepers -= 1;
        }
    }

    fn state(&self) -> MutexGuard<'_, SlotInner<T>> {
        lock(&self.inner)
    }

    /// Waits until ready or `deadline`, doing `drive`'s work as it comes;
    /// the guard, ready or not.
    fn wait(
        &self,
        deadline: Option<Instant>,
        drive: Option<&dyn Drive>,
    ) -> MutexGuard<'_, SlotInner<T>> {
        loop {
            let seen = self.events.load(Ordering::Acquire);
            if let Some(d) = drive {
                d.drive();
            }
            if self.done.load(Ordering::Acquire) || deadline.is_some_and(|d| Instant::now() >= d) {
                return lock(&self.inner);
            }
            self.wait_event(seen, deadline);
        }
    }
}

/// What to call when a result is ready, Python's `callback` and
/// `error_callback`.
///
/// Callbacks run on the pool's handler thread, before the result becomes
/// ready: keep them short (a long one holds up the delivery of other
/// results). A callback that panics is reported on stderr and the pool
/// goes on.
///
/// ```
/// use procs_pool::{Callbacks, Pool};
/// use std::sync::mpsc;
///
/// let pool = Pool::new(2)?;
/// let (tx, rx) = mpsc::channel();
/// let result = pool.apply_async_with(
///     |x: u64| x + 1,
///     41,
///     Callbacks::new().callback(move |v: &u64| tx.send(*v).unwrap()),
/// )?;
/// assert_eq!(result.get()?, 42);
/// assert_eq!(rx.recv().unwrap(), 42);
/// # Ok::<(), procs_pool::Error>(())
/// ```
pub struct Callbacks<T> {
    on_success: Option<OnSuccess<T>>,
    on_error: Option<OnError>,
}

type OnSuccess<T> = Box<dyn FnOnce(&T) + Send>;
type OnError = Box<dyn FnOnce(&Error) + Send>;

/// A chunk of an imap that came back: its index, its values or its error,
/// and how many items it carried.
pub(crate) type Part<R> = (usize, Result<Vec<R>>, usize);

impl<T> Default for Callbacks<T> {
    fn default() -> Self {
        Callbacks {
            on_success: None,
            on_error: None,
        }
    }
}

impl<T> std::fmt::Debug for Callbacks<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("callback", &self.on_success.is_some())
            .field("error_callback", &self.on_error.is_some())
            .finish()
    }
}

impl<T> Callbacks<T> {
    /// No callbacks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether there is a callback.
    fn any(&self) -> bool {
        self.on_success.is_some() || self.on_error.is_some()
    }

    /// Called with the value when the task succeeds.
    pub fn callback(mut self, f: impl FnOnce(&T) + Send + 'static) -> Self {
        self.on_success = Some(Box::new(f));
        self
    }

    /// Called with the error when the task fails.
    pub fn error_callback(mut self, f: impl FnOnce(&Error) + Send + 'static) -> Self {
        self.on_error = Some(Box::new(f));
        self
    }

    fn run(self, value: &Result<T>) {
        let ran = catch_unwind(AssertUnwindSafe(|| match value {
            Ok(v) => {
                if let Some(f) = self.on_success {
                    f(v);
                }
            }
            Err(e) => {
                if let Some(f) = self.on_error {
                    f(e);
                }
            }
        }));
        if ran.is_err() {
            eprintln!("procs-pool: a result callback panicked; the pool goes on");
        }
    }
}

/// A value a pool computes: Python's `AsyncResult`.
///
/// ```
/// use procs_pool::Pool;
/// use std::time::Duration;
///
/// let pool = Pool::new(2)?;
/// let r = pool.apply_async(|x: u32| x * 2, 21)?;
/// r.wait();
/// assert!(r.ready());
/// assert!(r.successful()?);
/// assert_eq!(r.get_timeout(Duration::from_secs(10))?, 42);
/// # Ok::<(), procs_pool::Error>(())
/// ```
#[must_use = "a result does nothing unless got or waited for"]
pub struct AsyncResult<T> {
    slot: Arc<Slot<T>>,
    drive: Option<Arc<dyn Drive>>,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(slot: Arc<Slot<T>>) -> Self {
        AsyncResult { slot, drive: None }
    }

    /// A result whose waiters do `drive`'s work.
    pub(crate) fn driven(slot: Arc<Slot<T>>, drive: Arc<dyn Drive>) -> Self {
        AsyncResult {
            slot,
            drive: Some(drive),
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> MutexGuard<'_, SlotInner<T>> {
        self.slot.wait(deadline, self.drive.as_deref())
    }

    fn now_state(&self) -> MutexGuard<'_, SlotInner<T>> {
        if let Some(d) = &self.drive {
            d.drive();
        }
        self.slot.state()
    }

    /// Waits for the result and returns it: the value, or the task's error
    /// ([`Error::TaskPanicked`], [`Error::WorkerDied`],
    /// [`Error::Terminated`], ...).
    pub fn get(self) -> Result<T> {
        Self::take(self.wait_until(None))
    }

    /// Waits at most `timeout`. [`Error::Timeout`] leaves the result to be
    /// got later; a value, once returned, is taken (a later `get` says
    /// [`Error::AlreadyTaken`]); an error is returned every time.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        Self::take(self.wait_until(Instant::now().checked_add(timeout)))
    }

    fn take(mut s: MutexGuard<'_, SlotInner<T>>) -> Result<T> {
        match std::mem::replace(&mut s.state, State::Taken) {
            State::Pending => {
                s.state = State::Pending;
                Err(Error::Timeout)
            }
            State::Ready(Ok(v)) => Ok(v),
            State::Ready(Err(e)) => {
                s.state = State::Ready(Err(e.clone()));
                Err(e)
            }
            State::Taken => Err(Error::AlreadyTaken),
        }
    }

    /// Waits for the result.
    pub fn wait(&self) {
        drop(self.wait_until(None));
    }

    /// Waits at most `timeout`; whether the result is ready.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        !matches!(
            self.wait_until(Instant::now().checked_add(timeout)).state,
            State::Pending
        )
    }

    /// Whether the result is ready.
    pub fn ready(&self) -> bool {
        !matches!(self.now_state().state, State::Pending)
    }

    /// Whether the task succeeded; [`Error::NotReady`] before it is ready
    /// (Python's `ValueError`).
    pub fn successful(&self) -> Result<bool> {
        match &self.now_state().state {
            State::Pending => Err(Error::NotReady),
            State::Ready(r) => Ok(r.is_ok()),
            State::Taken => Ok(true),
        }
    }
}

/// One `apply` is its slot: one allocation per apply, freed by the thread
/// that gets the result.
///
/// It does not give its output's buffer back to the pool: an apply's
/// output is typically small (not worth keeping), and holding the pool's
/// buffers would cost every apply a count on a counter all threads share.
impl<R: DeserializeOwned + Send> Job for Slot<R> {
    fn deliver(&self, _index: usize, _items: usize, outcome: Result<Vec<u8>>) {
        self.finish(outcome.and_then(|b| caught(|| decode_one::<R>(&b))));
    }
}

/// Runs a decode, whose `Deserialize` is user code: a panic in it is the
/// result's [`Error::Serde`], not the end of the thread that decodes (the
/// pool's handler thread, for an apply or a map with callbacks).
fn caught<T>(decode: impl FnOnce() -> std::result::Result<T, String>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(decode)) {
        Ok(r) => r.map_err(Error::Serde),
        Err(payload) => Err(Error::Serde(format!(
            "the result's Deserialize panicked: {}",
            procs_core::panic_message(&*payload)
        ))),
    }
}

/// A task's outcome as it came: its index, its item count, its output.
type Arrival = (usize, usize, Result<Vec<u8>>);

/// One `map`: its chunks' values, in order.
///
/// The handler thread only files each output in `inbox`; the map's waiter
/// decodes them into place (see [`Drive`]). With callbacks, which Python
/// runs on its result thread, the handler thread decodes.
pub(crate) struct MapJob<R> {
    pub slot: Arc<Slot<Vec<R>>>,
    inbox: Mutex<Inbox>,
    /// Taken only by the thread that holds `Inbox::decoding`, so no thread
    /// ever waits for it (the values' `Deserialize`, user code, runs while
    /// it is held).
    parts: Mutex<MapParts<R>>,
    eager: bool,
    buffers: Arc<Buffers>,
}

/// The outputs of a map waiting to be decoded, and whether a thread is at
/// it: one decoder at a time, and the others (the handler thread that
/// filed an output, another waiter, or the decoder itself, from inside a
/// `Deserialize` that looks at its result) leave the work to it instead of
/// waiting. Both are decided under this one lock, so the decoder sees
/// every output filed before it lets go.
struct Inbox {
    arrivals: Vec<Arrival>,
    decoding: bool,
}

/// The values of a map, decoded straight to their places in the result:
/// chunk `i` fills `out`'s spare capacity from `i * chunksize`.
struct MapParts<R> {
    /// Capacity for every value; its length stays 0 until all are in.
    out: Vec<R>,
    /// How many values the map has (the capacity may be more).
    total: usize,
    chunksize: usize,
    filled: Vec<bool>,
    missing: usize,
    done: bool,
}

impl<R> Drop for MapParts<R> {
    fn drop(&mut self) {
        // A map that failed or was dropped half-way: drop the values that
        // came (the vector's length is 0, so it drops none of them).
        let (chunksize, total) = (self.chunksize, self.total);
        let spare = self.out.spare_capacity_mut();
        for (i, _) in self.filled.iter().enumerate().filter(|(_, f)| **f) {
            let start = i * chunksize;
            for v in &mut spare[start..(start + chunksize).min(total)] {
                // SAFETY: chunk i was filled: `decode_chunk_into` initialized
                // every one of its values, and none was moved out (the
                // vector's length was never set).
                unsafe { v.assume_init_drop() };
            }
        }
    }
}

impl<R> MapJob<R> {
    pub(crate) fn new(
        items: usize,
        chunksize: usize,
        callbacks: Callbacks<Vec<R>>,
        buffers: Arc<Buffers>,
    ) -> MapJob<R> {
        let chunks = items.div_ceil(chunksize.max(1));
        MapJob {
            eager: callbacks.any(),
            slot: Slot::new(callbacks),
            inbox: Mutex::new(Inbox {
                arrivals: Vec::new(),
                decoding: false,
            }),
            buffers,
            parts: Mutex::new(MapParts {
                out: Vec::with_capacity(items),
                total: items,
                chunksize,
                filled: vec![false; chunks],
                missing: chunks,
                done: false,
            }),
        }
    }

    /// Ends the job with `value` (the first error, or every value).
    pub(crate) fn finish(&self, value: Result<Vec<R>>) {
        self.slot.finish(value);
    }

    /// Waits until something happens to the map (an output came, or it
    /// ended) or `deadline`; `seen` is [`MapJob::events`] before looking.
    pub(crate) fn wait_event(&self, seen: u64, deadline: Option<Instant>) {
        self.slot.wait_event(seen, deadline);
    }

    pub(crate) fn events(&self) -> u64 {
        self.slot.events.load(Ordering::Acquire)
    }
}

impl<R: DeserializeOwned + Send> Job for MapJob<R> {
    fn deliver(&self, index: usize, items: usize, outcome: Result<Vec<u8>>) {
        lock(&self.inbox).arrivals.push((index, items, outcome));
        if self.eager {
            self.drive();
        } else {
            self.slot.poke();
        }
    }
}

impl<R: DeserializeOwned + Send> Drive for MapJob<R> {
    fn drive(&self) {
        let mut arrivals = {
            let mut inbox = lock(&self.inbox);
            if inbox.decoding || inbox.arrivals.is_empty() {
                // Nothing to do, or the decoder takes it before it stops.
                return;
            }
            inbox.decoding = true;
            std::mem::take(&mut inbox.arrivals)
        };
        // Uncontended: this thread is the decoder.
        let mut p = lock(&self.parts);
        let mut end = None;
        loop {
            for (index, items, outcome) in arrivals {
                if end.is_none() {
                    end = self.place(&mut p, index, items, outcome);
                } else if let Ok(bytes) = outcome {
                    self.buffers.give(bytes);
                }
            }
            let mut inbox = lock(&self.inbox);
            if inbox.arrivals.is_empty() {
                inbox.decoding = false;
                break;
            }
            arrivals = std::mem::take(&mut inbox.arrivals);
        }
        drop(p);
        if let Some(value) = end {
            self.finish(value);
        }
    }
}

impl<R: DeserializeOwned + Send> MapJob<R> {
    /// Decodes one output into its place; the map's value if it ended.
    fn place(
        &self,
        p: &mut MapParts<R>,
        index: usize,
        items: usize,
        outcome: Result<Vec<u8>>,
    ) -> Option<Result<Vec<R>>> {
        if p.done {
            if let Ok(bytes) = outcome {
                self.buffers.give(bytes);
            }
            return None;
        }
        let start = index.saturating_mul(p.chunksize);
        let fits = p.filled.get(index) == Some(&false)
            && items <= p.chunksize
            && start.saturating_add(items) <= p.total;
        let placed = outcome.and_then(|bytes| {
            let placed = if fits {
                let dst = &mut p.out.spare_capacity_mut()[start..start + items];
                caught(|| decode_chunk_into(&bytes, dst))
            } else {
                Err(Error::Serde(format!("chunk {index} does not fit its map")))
            };
            self.buffers.give(bytes);
            placed
        });
        match placed {
            // The first failure ends the map (Python's map raises it);
            // the other chunks still run, their values are dropped.
            Err(e) => {
                p.done = true;
                Some(Err(e))
            }
            Ok(()) => {
                p.filled[index] = true;
                p.missing -= 1;
                if p.missing == 0 {
                    p.done = true;
                    let total = p.total;
                    p.filled.clear();
                    let mut out = std::mem::take(&mut p.out);
                    // SAFETY: every chunk was filled, and the chunks
                    // (i * chunksize, `items` each, the last one short)
                    // cover 0..total, so every value is initialized; the
                    // fill marks are cleared so `MapParts::drop` drops
                    // none of them again.
                    unsafe { out.set_len(total) };
                    Some(Ok(out))
                } else {
                    None
                }
            }
        }
    }
}

/// The chunks of an `imap` that have come back and not been taken. They
/// are decoded by the iterator that takes them, not by the handler thread.
pub(crate) struct StreamJob<R> {
    ready: Mutex<StreamInner>,
    /// Chunks delivered so far: waiters watch it before they sleep.
    delivered: AtomicUsize,
    arrived: Condvar,
    buffers: Arc<Buffers>,
    _values: std::marker::PhantomData<fn() -> R>,
}

struct StreamInner {
    parts: VecDeque<Arrival>,
    sleepers: usize,
}

impl<R: DeserializeOwned> StreamJob<R> {
    pub(crate) fn new(buffers: Arc<Buffers>) -> StreamJob<R> {
        StreamJob {
            ready: Mutex::new(StreamInner {
                parts: VecDeque::new(),
                sleepers: 0,
            }),
            delivered: AtomicUsize::new(0),
            arrived: Condvar::new(),
            buffers,
            _values: std::marker::PhantomData,
        }
    }

    /// Waits for a chunk until `deadline` (`None`: for as long as it
    /// takes): chunk `index` if given, else the first to come. Returns
    /// `(index, values or error, items)`, or `None` if the deadline passed
    /// first (the chunk stays to be taken later).
    pub(crate) fn take(&self, index: Option<usize>, deadline: Option<Instant>) -> Option<Part<R>> {
        let (index, items, outcome) = self.take_raw(index, deadline)?;
        let values = outcome.and_then(|bytes| {
            let values = caught(|| decode_chunk::<R>(&bytes, items));
            self.buffers.give(bytes);
            values
        });
        Some((index, values, items))
    }

    fn take_raw(&self, index: Option<usize>, deadline: Option<Instant>) -> Option<Arrival> {
        let find = |parts: &VecDeque<Arrival>| match index {
            None => (!parts.is_empty()).then_some(0),
            Some(i) => parts.iter().position(|(j, _, _)| *j == i),
        };
        let seen = self.delivered.load(Ordering::Acquire);
        let mut ready = lock(&self.ready);
        if find(&ready.parts).is_none() {
            drop(ready);
            spin_for(|| self.delivered.load(Ordering::Acquire) != seen, deadline);
            ready = lock(&self.ready);
        }
        loop {
            if let Some(part) = find(&ready.parts).and_then(|at| ready.parts.remove(at)) {
                return Some(part);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return None;
            }
            ready.sleepers += 1;
            ready = match deadline {
                None => self.arrived.wait(ready).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    self.arrived
                        .wait_timeout(ready, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            ready.sleepers -= 1;
        }
    }
}

impl<R: DeserializeOwned + Send> Job for StreamJob<R> {
    fn deliver(&self, index: usize, items: usize, outcome: Result<Vec<u8>>) {
        let mut ready = lock(&self.ready);
        ready.parts.push_back((index, items, outcome));
        self.delivered.fetch_add(1, Ordering::Release);
        if ready.sleepers > 0 {
            self.arrived.notify_all();
        }
    }
}
