//! [`IMap`]: the lazy iterator of `imap` and `imap_unordered`, and the
//! [`StreamJob`] its chunks come back to.
//!
//! An imap keeps at most [`AHEAD_PER_WORKER`] chunks per worker sent and
//! not taken back, so its memory stays bounded whatever its input's
//! length. Chunks are decoded by the iterator that takes them, not by the
//! pool's handler thread. While an imap may still send chunks, the pool
//! keeps its workers after `close`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use serde::{Serialize, de::DeserializeOwned};

use crate::buffers::Buffers;
use crate::error::{Error, Result};
use crate::result::{caught, lock, spin_for};
use crate::scheduler::{Arrival, Job, NewTask, Shared};
use crate::task::{Frame, decode_chunk, encode_chunk};

/// How many chunks an imap keeps ahead of its consumer, per worker.
const AHEAD_PER_WORKER: usize = 4;

/// The results of [`Pool::imap`](crate::Pool::imap) and
/// [`Pool::imap_unordered`](crate::Pool::imap_unordered), as they come.
///
/// Items are taken from the input and sent to the workers as the iterator
/// is consumed, a bounded number of chunks ahead: memory stays bounded
/// whatever the input's length, and dropping the iterator stops taking
/// input (tasks already sent still run). Each item is a `Result`: a failed
/// task yields its error in its place (for each item of its chunk), and
/// the iteration goes on. If the pool is terminated, the iterator yields
/// [`Error::Terminated`] once and ends.
///
/// [`next_timeout`](IMap::next_timeout) waits at most a given time for the
/// next result (Python's `next(timeout)`).
#[must_use = "an imap does nothing unless iterated"]
pub struct IMap<I, R> {
    shared: Arc<Shared>,
    job: Arc<StreamJob<R>>,
    input: I,
    input_done: bool,
    header: Vec<u8>,
    chunksize: usize,
    ordered: bool,
    window: usize,
    /// Chunks sent, and chunks taken back.
    sent: usize,
    taken: usize,
    current: std::vec::IntoIter<R>,
    error: Option<(Error, usize)>,
    done: bool,
}

impl<I, R> std::fmt::Debug for IMap<I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMap")
            .field("ordered", &self.ordered)
            .field("chunksize", &self.chunksize)
            .field("chunks_sent", &self.sent)
            .field("chunks_taken", &self.taken)
            .finish()
    }
}

impl<I, R> IMap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    pub(crate) fn new(
        shared: Arc<Shared>,
        input: I,
        header: Vec<u8>,
        chunksize: usize,
        ordered: bool,
    ) -> Self {
        shared.stream(true);
        let buffers = shared.buffers.clone();
        let window = AHEAD_PER_WORKER * shared.config_processes();
        IMap {
            shared,
            job: Arc::new(StreamJob::new(buffers)),
            input,
            input_done: false,
            header,
            chunksize,
            ordered,
            window,
            sent: 0,
            taken: 0,
            current: Vec::new().into_iter(),
            error: None,
            done: false,
        }
    }

    fn end_input(&mut self) {
        if !self.input_done {
            self.input_done = true;
            self.shared.stream(false);
        }
    }

    /// Sends chunks until the window is full or the input ends.
    fn top_up(&mut self) -> Result<()> {
        let mut tasks = Vec::new();
        while !self.input_done && self.sent + tasks.len() - self.taken < self.window {
            let chunk: Vec<I::Item> = self.input.by_ref().take(self.chunksize).collect();
            if chunk.is_empty() {
                self.end_input();
                break;
            }
            let mut frame = self.shared.buffers.take(
                self.header.len() + 4 + chunk.len().saturating_mul(std::mem::size_of::<I::Item>()),
            );
            frame.extend_from_slice(&self.header);
            encode_chunk(chunk.iter(), &mut frame).map_err(Error::Serde)?;
            tasks.push(NewTask {
                index: self.sent + tasks.len(),
                items: chunk.len(),
                frame: Frame::Heap(frame),
            });
        }
        if tasks.is_empty() {
            return Ok(());
        }
        let n = tasks.len();
        self.shared.submit(self.job.clone(), tasks, true)?;
        self.sent += n;
        Ok(())
    }
}

impl<I, R> IMap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    /// The next result, waiting at most `timeout` for it (Python's
    /// `IMapIterator.next(timeout)`).
    ///
    /// `Some(Err(Error::Timeout))` if no result came in time (Python's
    /// `multiprocessing.TimeoutError`): nothing is lost, and the iterator
    /// goes on; a later call (or [`next`](Iterator::next)) yields that
    /// result when it comes. Otherwise what `next` yields: `Some` result,
    /// or `None` once every result was taken. A task never fails with
    /// [`Error::Timeout`], so that error always means "not yet".
    ///
    /// ```
    /// use procs_pool::{Error, Pool};
    /// use std::time::Duration;
    ///
    /// fn slow_square(x: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_secs(1));
    ///     x * x
    /// }
    ///
    /// let pool = Pool::new(2)?;
    /// let mut squares = pool.imap(slow_square, [3, 4])?;
    /// // The first square takes a second: not there yet.
    /// assert!(matches!(
    ///     squares.next_timeout(Duration::ZERO),
    ///     Some(Err(Error::Timeout))
    /// ));
    /// // The iterator goes on where it was.
    /// assert_eq!(squares.next_timeout(Duration::from_secs(30)).transpose()?, Some(9));
    /// assert_eq!(squares.next().transpose()?, Some(16));
    /// assert!(squares.next_timeout(Duration::ZERO).is_none());
    /// # Ok::<(), procs_pool::Error>(())
    /// ```
    pub fn next_timeout(&mut self, timeout: std::time::Duration) -> Option<Result<R>> {
        // A timeout too large for the clock is no timeout.
        self.next_until(Instant::now().checked_add(timeout))
    }

    /// The next result, waiting until `deadline` (`None`: as long as it
    /// takes) for a chunk to come back.
    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<R>> {
        loop {
            if let Some(v) = self.current.next() {
                return Some(Ok(v));
            }
            if let Some((e, left)) = &mut self.error {
                if *left > 0 {
                    *left -= 1;
                    return Some(Err(e.clone()));
                }
                self.error = None;
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.top_up() {
                self.done = true;
                self.end_input();
                return Some(Err(e));
            }
            if self.taken == self.sent {
                self.done = true;
                return None;
            }
            let want = self.ordered.then_some(self.taken);
            // Every task sent ends: with its output, its failure, or the
            // pool's termination; so a wait without a deadline ends.
            let Some((_, part, items)) = self.job.take(want, deadline) else {
                return Some(Err(Error::Timeout));
            };
            self.taken += 1;
            match part {
                Ok(values) => self.current = values.into_iter(),
                Err(e) => self.error = Some((e, items)),
            }
        }
    }
}

impl<I, R> Iterator for IMap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_until(None)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (lo, hi) = if self.input_done {
            (0, Some(0))
        } else {
            self.input.size_hint()
        };
        let inflight = (self.sent - self.taken) * self.chunksize + self.current.len();
        (
            lo + self.current.len(),
            hi.and_then(|h| h.checked_add(inflight)),
        )
    }
}

impl<I, R> Drop for IMap<I, R> {
    fn drop(&mut self) {
        if !self.input_done {
            self.input_done = true;
            self.shared.stream(false);
        }
    }
}

/// A chunk of an imap that came back: its index, its values or its error,
/// and how many items it carried.
pub(crate) type Part<R> = (usize, Result<Vec<R>>, usize);

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
