//! [`Pool`], the public API (Python's `multiprocessing.Pool`), and
//! [`PoolBuilder`].
//!
//! A pool is a [`Shared`] state: the [`scheduler`](crate::scheduler)
//! decides which worker gets which task, the
//! [`handler`](crate::handler) thread takes the replies and replaces the
//! workers that die, a [`map_job`](crate::map_job) or an [`IMap`] turns
//! many items into chunks and their outputs back into values. What is
//! here encodes a call, hands it to the scheduler, and gives back what
//! will hold its result.

use std::sync::Arc;

use procs_core::StartMethod;
use procs_ipc::Queue;
use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};
use crate::imap::IMap;
use crate::map_job::{MapOptions, map_job};
use crate::result::{AsyncResult, Callbacks, Slot};
use crate::scheduler::{Config, NewTask, Shared};
use crate::task::{
    Call, Frame, Key, Reply, StarFn, call_chunk, call_init, call_one, call_star_chunk, encode,
    frame_for, start_frame,
};
use crate::worker::Init;

/// The capacity of the reply queue (each reply is at most
/// `worker::INLINE_MAX` bytes of output and a few more).
const REPLY_CAPACITY: usize = 1024 * 1024;

thread_local! {
    /// Where a submitting thread encodes an apply's frame.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How to build a [`Pool`]: Python's `Pool(processes, initializer,
/// initargs, maxtasksperchild)`.
///
/// ```
/// use procs_pool::Pool;
///
/// fn setup(greeting: String) {
///     // Runs once in each worker, before its first task.
///     assert_eq!(greeting, "hello");
/// }
///
/// let pool = Pool::builder()
///     .processes(2)
///     .initializer(setup, "hello".to_string())
///     .maxtasksperchild(100)
///     .build()?;
/// assert_eq!(pool.map(|x: u32| x + 1, 0..5)?, vec![1, 2, 3, 4, 5]);
/// # Ok::<(), procs_pool::Error>(())
/// ```
#[derive(Debug)]
pub struct PoolBuilder {
    processes: Option<usize>,
    init: Option<Result<Init>>,
    maxtasks: Option<u64>,
    start_method: StartMethod,
}

impl Default for PoolBuilder {
    /// Python's defaults, and the program's default start method
    /// ([`procs_core::get_start_method`]: fork unless it set another).
    fn default() -> Self {
        PoolBuilder {
            processes: None,
            init: None,
            maxtasks: None,
            start_method: procs_core::get_start_method(),
        }
    }
}

impl PoolBuilder {
    /// A builder with Python's defaults: [`cpu_count`](procs_core::cpu_count)
    /// workers, no initializer, workers that live as long as the pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of worker processes (at least 1).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// A function each worker runs once, with `arg`, before its first task
    /// (Python's `initializer` and `initargs`). If it panics, the pool
    /// cannot run tasks: every task fails with
    /// [`Error::InitializerFailed`].
    pub fn initializer<A>(mut self, f: fn(A), arg: A) -> Self
    where
        A: Serialize + DeserializeOwned,
    {
        let mut bytes = Vec::new();
        self.init = Some(
            encode(&arg, &mut bytes)
                .map(|()| Init {
                    call: procs_core::code_offset(call_init::<A> as Call as usize),
                    func: procs_core::code_offset(f as usize),
                    arg: bytes,
                })
                .map_err(Error::Serde),
        );
        self
    }

    /// Replaces a worker once it has run `n` tasks (at least 1), as
    /// Python's `maxtasksperchild`: resources a task leaks go with its
    /// worker.
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.maxtasks = Some(n);
        self
    }

    /// How workers start: forked (the default), or under
    /// [`StartMethod::Spawn`] or [`StartMethod::Forkserver`] (the program
    /// calls `procs_core::init()` first in `main`), safe from a parent
    /// whose threads hold locks. Task functions are then the program's own
    /// (a shared library's fail their tasks, with why).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.start_method = method;
        self
    }

    /// Starts the workers and the pool's handler thread.
    pub fn build(self) -> Result<Pool> {
        let processes = match self.processes {
            Some(0) => return Err(Error::Invalid("a pool needs at least one process")),
            Some(n) => n,
            None => procs_core::cpu_count().max(1),
        };
        if self.maxtasks == Some(0) {
            return Err(Error::Invalid("maxtasksperchild must be at least 1"));
        }
        let init = self.init.transpose()?;
        crate::worker::install_panic_hook();
        let queue = Queue::<Reply>::builder()
            .capacity(REPLY_CAPACITY)
            .prefault()
            .build::<Reply>()?;
        let (replies_tx, replies_rx) = (queue.sender(), queue.receiver());
        drop(queue);
        let execs = self.start_method != StartMethod::Fork;
        if execs
            && let Some(i) = &init
            && !procs_core::code_of_program(procs_core::code_at(i.func))
        {
            return Err(Error::Invalid(
                "a pool of the spawn or forkserver method runs an initializer of the program itself",
            ));
        }
        let config = Config {
            processes,
            key: Key::random(execs),
            init,
            maxtasks: self.maxtasks,
            start_method: self.start_method,
        };
        let pool = Pool {
            shared: Arc::new(Shared::new(config, replies_tx)),
        };
        {
            let mut st = pool.shared.lock();
            for _ in 0..processes {
                st.spawn_worker(&pool.shared.config)?;
            }
        }
        pool.shared.start_handler(replies_rx)?;
        Ok(pool)
    }
}

/// A pool of worker processes: Python's `multiprocessing.Pool`.
///
/// Task functions are plain `fn(A) -> R` with serde arguments and results
/// (a closure that captures nothing coerces to one): the Rust form of
/// "picklable". Workers are forked from this process, so they run the
/// function directly.
///
/// A task that panics fails with [`Error::TaskPanicked`] and its message;
/// a worker that dies mid-task (SIGKILL, abort, out of memory) fails only
/// the task it was running, with [`Error::WorkerDied`] naming its pid and
/// signal, and a new worker takes its place: the pool never hangs.
/// Dropping the pool terminates it (Python's `with Pool() as p:`).
///
/// ```
/// use procs_pool::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(4)?;
/// let squares = pool.map(square, 0..10)?;
/// assert_eq!(squares, vec![0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
/// let r = pool.apply_async(square, 12)?;
/// assert_eq!(r.get()?, 144);
/// pool.close();
/// pool.join()?;
/// # Ok::<(), procs_pool::Error>(())
/// ```
pub struct Pool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Read, then let go: the formatter writes to whatever the caller
        // gave it, which may call into this pool.
        let (mode, pending) = self.shared.status();
        f.debug_struct("Pool")
            .field("processes", &self.shared.config.processes)
            .field("state", &mode)
            .field("pending", &pending)
            .finish()
    }
}

impl Pool {
    /// A pool of `processes` workers.
    pub fn new(processes: usize) -> Result<Pool> {
        PoolBuilder::new().processes(processes).build()
    }

    /// A builder, for an initializer or `maxtasksperchild`.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.shared.config.processes
    }

    /// The pids of the current workers.
    pub fn pids(&self) -> Vec<i32> {
        self.shared.pids()
    }

    fn frame(&self, call: Call, func: usize) -> Vec<u8> {
        frame_for(&self.shared.config.key, call, func)
    }

    /// Runs `f(arg)` in a worker and waits for the result (Python's
    /// `apply`).
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async(f, arg)?.get()
    }

    /// Runs `f(arg)` in a worker; the result comes later.
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async_with(f, arg, Callbacks::new())
    }

    /// [`apply_async`](Self::apply_async) with Python's keyword arguments
    /// in `callbacks`: a callback and an error callback (an apply has no
    /// other options).
    pub fn apply_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        arg: A,
        callbacks: Callbacks<R>,
    ) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        // Encoded in this thread's scratch buffer, then kept inline if
        // small: an apply of a small argument allocates nothing for it.
        let encode_in = |scratch: &mut Vec<u8>| {
            scratch.clear();
            start_frame(
                &self.shared.config.key,
                call_one::<A, R>,
                f as usize,
                scratch,
            );
            encode(&arg, scratch).map_err(Error::Serde)?;
            Ok::<_, Error>(Frame::copy_of(scratch))
        };
        let frame = SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => {
                let frame = encode_in(&mut scratch);
                if scratch.capacity() > 64 * 1024 {
                    *scratch = Vec::new();
                }
                frame
            }
            // Re-entered (a Serialize that submits): a buffer of its own.
            Err(_) => encode_in(&mut Vec::new()),
        })?;
        let slot = Slot::new(callbacks);
        self.shared.submit(
            slot.clone(),
            [NewTask {
                index: 0,
                items: 1,
                frame,
            }],
            false,
        )?;
        Ok(AsyncResult::new(slot))
    }

    /// Applies `f` to every item, in chunks of Python's default size, and
    /// returns the results in order. The first task to fail fails the map
    /// (the others still run).
    pub fn map<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        map_job(
            &self.shared,
            call_chunk::<A, R>,
            f as usize,
            items,
            None,
            Callbacks::new(),
            true,
        )?
        .get()
    }

    /// [`map`](Self::map) with `chunksize` items per task.
    pub fn map_with_chunksize<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let call = call_chunk::<A, R>;
        map_job(
            &self.shared,
            call,
            f as usize,
            items,
            Some(chunksize),
            Callbacks::new(),
            true,
        )?
        .get()
    }

    /// [`map`](Self::map) whose result comes later.
    pub fn map_async<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_async_with(f, items, MapOptions::new())
    }

    /// [`map_async`](Self::map_async) with Python's keyword arguments in
    /// `options`: a chunk size, a callback (given the whole list) and an
    /// error callback.
    ///
    /// ```
    /// use procs_pool::{MapOptions, Pool};
    /// use std::sync::mpsc;
    ///
    /// let pool = Pool::new(2)?;
    /// let (tx, rx) = mpsc::channel();
    /// let options = MapOptions::new()
    ///     .chunksize(10)
    ///     .callback(move |squares: &Vec<u64>| tx.send(squares.len()).unwrap());
    /// let squares = pool.map_async_with(|x: u64| x * x, 0..100, options)?;
    /// assert_eq!(squares.get()?[9], 81);
    /// assert_eq!(rx.recv().unwrap(), 100);
    /// # Ok::<(), procs_pool::Error>(())
    /// ```
    pub fn map_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        options: MapOptions<R>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let MapOptions {
            chunksize,
            callbacks,
        } = options;
        map_job(
            &self.shared,
            call_chunk::<A, R>,
            f as usize,
            items,
            chunksize,
            callbacks,
            false,
        )
    }

    /// Like [`map`](Self::map), for a function of several arguments given
    /// as tuples: `pool.starmap(pow, [(2, 3), (3, 2)])` (Python's
    /// `starmap`).
    ///
    /// ```
    /// # let pool = procs_pool::Pool::new(2)?;
    /// fn pow(base: u64, exp: u32) -> u64 {
    ///     base.pow(exp)
    /// }
    /// assert_eq!(pool.starmap(pow, [(2, 3), (3, 2)])?, vec![8, 9]);
    /// assert_eq!(pool.starmap(|a: u8, b: u8, c: u8| a + b + c, [(1, 2, 3)])?, vec![6]);
    /// # Ok::<(), procs_pool::Error>(())
    /// ```
    pub fn starmap<F, T, R>(&self, f: F, items: impl IntoIterator<Item = T>) -> Result<Vec<R>>
    where
        F: StarFn<T, R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.star_job(f, items, None, Callbacks::new(), true)?.get()
    }

    /// [`starmap`](Self::starmap) with `chunksize` tuples per task.
    pub fn starmap_with_chunksize<F, T, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        F: StarFn<T, R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.star_job(f, items, Some(chunksize), Callbacks::new(), true)?
            .get()
    }

    /// [`starmap`](Self::starmap) whose result comes later.
    pub fn starmap_async<F, T, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: StarFn<T, R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.starmap_async_with(f, items, MapOptions::new())
    }

    /// [`starmap_async`](Self::starmap_async) with Python's keyword
    /// arguments in `options`: a chunk size, a callback and an error
    /// callback.
    pub fn starmap_async_with<F, T, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        options: MapOptions<R>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: StarFn<T, R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let MapOptions {
            chunksize,
            callbacks,
        } = options;
        self.star_job(f, items, chunksize, callbacks, false)
    }

    fn star_job<F, T, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
        paced: bool,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: StarFn<T, R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        const {
            assert!(
                std::mem::size_of::<F>() == 0,
                "starmap takes a function item or a closure that captures nothing"
            )
        };
        let _ = f;
        let call = call_star_chunk::<F, T, R>;
        map_job(&self.shared, call, 0, items, chunksize, callbacks, paced)
    }

    /// Applies `f` to each item lazily, one item per task, yielding the
    /// results in order (Python's `imap`). The items are taken from
    /// `items` as the iterator is consumed, and only a bounded number of
    /// tasks is ahead of the consumer, so memory stays bounded and a
    /// consumer can stop early. Each result is a `Result`: a failed task
    /// yields its error at its place, and iteration goes on.
    ///
    /// The iterator works with any iterator adapter, progress bars
    /// included (indicatif's `ProgressIterator`):
    ///
    /// ```
    /// use indicatif::ProgressIterator;
    /// # let pool = procs_pool::Pool::new(2)?;
    /// let total: u64 = pool
    ///     .imap(|x: u64| x * x, 0..100)?
    ///     .progress_count(100)
    ///     .map(|r| r.unwrap())
    ///     .sum();
    /// assert_eq!(total, 328_350);
    /// # Ok::<(), procs_pool::Error>(())
    /// ```
    pub fn imap<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<IMap<I::IntoIter, R>>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.imap_with_chunksize(f, items, 1)
    }

    /// [`imap`](Self::imap) with `chunksize` items per task.
    pub fn imap_with_chunksize<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<IMap<I::IntoIter, R>>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.stream(f, items.into_iter(), chunksize, true)
    }

    /// Like [`imap`](Self::imap), yielding results as they come, in any
    /// order (Python's `imap_unordered`).
    pub fn imap_unordered<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<IMap<I::IntoIter, R>>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.imap_unordered_with_chunksize(f, items, 1)
    }

    /// [`imap_unordered`](Self::imap_unordered) with `chunksize` items per
    /// task.
    pub fn imap_unordered_with_chunksize<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<IMap<I::IntoIter, R>>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.stream(f, items.into_iter(), chunksize, false)
    }

    fn stream<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<IMap<I, R>>
    where
        I: Iterator<Item = A>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        if chunksize == 0 {
            return Err(Error::Invalid("a chunk size of zero"));
        }
        self.shared.check_open()?;
        let header = self.frame(call_chunk::<A, R>, f as usize);
        Ok(IMap::new(
            self.shared.clone(),
            items,
            header,
            chunksize,
            ordered,
        ))
    }

    /// Takes no more tasks (Python's `close`); the workers exit once every
    /// task is done (and every imap iterator is consumed or dropped).
    pub fn close(&self) {
        self.shared.close();
    }

    /// Stops the workers now and fails every unfinished task with
    /// [`Error::Terminated`] (Python's `terminate`). Every worker gets
    /// SIGTERM at once and 200 ms, together, to end; those still running
    /// then get SIGKILL. All are reaped before this returns, so it takes
    /// about 200 ms at most however many workers ignore SIGTERM.
    pub fn terminate(&self) {
        self.shared.terminate();
    }

    /// Waits for the workers to exit, after [`close`](Self::close) or
    /// [`terminate`](Self::terminate) ([`Error::StillRunning`] before).
    pub fn join(&self) -> Result<()> {
        self.shared.join()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.terminate();
    }
}
