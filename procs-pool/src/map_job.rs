//! One `map` (and `starmap`): its [`MapOptions`], its chunks going to the
//! workers as they are encoded, and their outputs decoded straight to
//! their places in the result.
//!
//! A map of `total` items in chunks of `chunksize` has `total.div_ceil(
//! chunksize)` chunks; chunk `i` carries items `i * chunksize ..` (the
//! last one may be short), and its values fill the same places of one
//! vector allocated for all of them. The vector's length stays 0 until
//! every chunk is in (so a map that fails half-way drops only the values
//! that came, by their fill marks). The first chunk that fails ends the
//! map with its error; the other chunks still run and their values are
//! dropped.
//!
//! Outputs are decoded by the thread that waits for the map (see
//! [`Drive`]), one decoder at a time, not by the pool's handler thread;
//! with callbacks (which run on the handler thread, as Python runs them on
//! its result thread) the handler thread decodes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Serialize, de::DeserializeOwned};

use crate::buffers::Buffers;
use crate::error::{Error, Result};
use crate::result::{AsyncResult, Callbacks, Drive, Slot, caught, lock};
use crate::scheduler::{Arrival, Job, NewTask, Shared};
use crate::task::{Call, Frame, HEADER, decode_chunk_into, encode, start_frame};

/// How long a paced map waits before it looks again whether the workers
/// need a chunk (it is told sooner when one of its chunks comes back).
const PACE_RECHECK: Duration = Duration::from_millis(1);

/// Python's default chunk size for `map`: items / (4 x processes), rounded
/// up.
fn default_chunksize(items: usize, processes: usize) -> usize {
    items.div_ceil(processes * 4).max(1)
}

/// Python's keyword arguments of `map_async` and `starmap_async`: a chunk
/// size, a `callback` (given the whole list of results) and an
/// `error_callback`, for [`Pool::map_async_with`](crate::Pool::map_async_with)
/// and [`Pool::starmap_async_with`](crate::Pool::starmap_async_with).
///
/// [`MapOptions::new`] is Python's defaults: a chunk size of items / (4 x
/// processes), rounded up, and no callbacks. Callbacks run as
/// [`Callbacks`] do: on the pool's handler thread, before the result is
/// ready.
///
/// ```
/// use procs_pool::{MapOptions, Pool};
///
/// let pool = Pool::new(2)?;
/// let options = MapOptions::new()
///     .chunksize(1)
///     .error_callback(|e| eprintln!("the map failed: {e}"));
/// let squares = pool.map_async_with(|x: u32| x * x, 0..4, options)?;
/// assert_eq!(squares.get()?, vec![0, 1, 4, 9]);
/// # Ok::<(), procs_pool::Error>(())
/// ```
pub struct MapOptions<R> {
    pub(crate) chunksize: Option<usize>,
    pub(crate) callbacks: Callbacks<Vec<R>>,
}

impl<R> Default for MapOptions<R> {
    fn default() -> Self {
        MapOptions {
            chunksize: None,
            callbacks: Callbacks::new(),
        }
    }
}

impl<R> std::fmt::Debug for MapOptions<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapOptions")
            .field("chunksize", &self.chunksize)
            .field("callbacks", &self.callbacks)
            .finish()
    }
}

impl<R> MapOptions<R> {
    /// Python's defaults: its chunk size, no callbacks.
    pub fn new() -> Self {
        Self::default()
    }

    /// `n` items per task (at least 1: a map with a chunk size of zero
    /// fails with [`Error::Invalid`]).
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n);
        self
    }

    /// Called with the whole list of results when the map succeeds.
    pub fn callback(mut self, f: impl FnOnce(&Vec<R>) + Send + 'static) -> Self {
        self.callbacks = self.callbacks.callback(f);
        self
    }

    /// Called with the error when the map fails.
    pub fn error_callback(mut self, f: impl FnOnce(&Error) + Send + 'static) -> Self {
        self.callbacks = self.callbacks.error_callback(f);
        self
    }
}

/// A map over `items`. An iterator that tells its exact length (a
/// range, a vector's) is read chunk by chunk as the chunks go out;
/// another is collected first, as Python's map does with a generator.
///
/// A `paced` map (one whose caller waits for it) encodes a chunk only
/// when the workers are short of work, and decodes what came back
/// meanwhile: its memory stays bounded and its frames are reused. An
/// asynchronous map encodes every chunk before it returns.
pub(crate) fn map_job<T, R>(
    shared: &Shared,
    call: Call,
    func: usize,
    items: impl IntoIterator<Item = T>,
    chunksize: Option<usize>,
    callbacks: Callbacks<Vec<R>>,
    paced: bool,
) -> Result<AsyncResult<Vec<R>>>
where
    T: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    if chunksize == Some(0) {
        return Err(Error::Invalid("a chunk size of zero"));
    }
    let items = items.into_iter();
    match items.size_hint() {
        (lo, Some(hi)) if lo == hi => {
            map_chunks(shared, call, func, items, lo, chunksize, callbacks, paced)
        }
        _ => {
            let items: Vec<T> = items.collect();
            let n = items.len();
            map_chunks(
                shared,
                call,
                func,
                items.into_iter(),
                n,
                chunksize,
                callbacks,
                paced,
            )
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn map_chunks<T, R>(
    shared: &Shared,
    call: Call,
    func: usize,
    mut items: impl Iterator<Item = T>,
    total: usize,
    chunksize: Option<usize>,
    callbacks: Callbacks<Vec<R>>,
    paced: bool,
) -> Result<AsyncResult<Vec<R>>>
where
    T: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    let chunksize = chunksize.unwrap_or_else(|| default_chunksize(total, shared.config.processes));
    let chunks = total.div_ceil(chunksize);
    let job = Arc::new(MapJob::new(
        total,
        chunksize,
        callbacks,
        shared.buffers.clone(),
    ));
    let slot = job.slot.clone();
    let result = || AsyncResult::driven(slot.clone(), job.clone());
    if chunks == 0 {
        shared.check_open()?;
        job.finish(Ok(Vec::new()));
        return Ok(AsyncResult::new(slot));
    }
    // Each chunk goes to the workers as soon as it is encoded, so they
    // start while the rest is being encoded.
    for index in 0..chunks {
        if paced && index > 0 {
            pace(shared, &*job);
        }
        let len = chunksize.min(total - index * chunksize);
        let mut frame = shared
            .buffers
            .take(HEADER + 4 + len.saturating_mul(std::mem::size_of::<T>()));
        start_frame(&shared.config.key, call, func, &mut frame);
        let count = u32::try_from(len).map_err(|_| Error::Invalid("a chunk of over 2^32 items"))?;
        frame.extend_from_slice(&count.to_le_bytes());
        let mut got = 0;
        for item in items.by_ref().take(len) {
            encode(&item, &mut frame).map_err(Error::Serde)?;
            got += 1;
        }
        let short = got < len;
        let sent = if short {
            // The iterator told a length it did not keep to.
            Err(Error::Invalid(
                "the items ended before the length their iterator told",
            ))
        } else {
            // The first chunk is refused by a closed pool; the others
            // are part of a map that was accepted.
            let task = NewTask {
                index,
                items: len,
                frame: Frame::Heap(frame),
            };
            shared.submit(job.clone(), [task], index > 0)
        };
        if let Err(e) = sent {
            if index == 0 {
                return Err(e);
            }
            // The map fails with it (the chunks sent still run).
            job.deliver(index, len, Err(e));
            return Ok(result());
        }
    }
    if items.next().is_some() {
        return Err(Error::Invalid(
            "the items went on past the length their iterator told",
        ));
    }
    Ok(result())
}

/// Waits while the workers have chunks enough waiting for them,
/// decoding the outputs of `job` that come meanwhile.
fn pace<R: DeserializeOwned + Send>(shared: &Shared, job: &MapJob<R>) {
    loop {
        let seen = job.events();
        job.drive();
        if shared.short_of_work() {
            return;
        }
        // An output of this map comes when a worker is free; another
        // job's output frees one too, without telling this map: look
        // again after a while.
        job.wait_event(seen, Instant::now().checked_add(PACE_RECHECK));
    }
}

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
        self.slot.events()
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
