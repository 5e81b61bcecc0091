//! [`Pool`]: worker processes, the tasks they hold, and the handler thread
//! that collects their replies, replaces the dead and hands out work.
//!
//! Each worker has a task pipe of its own, so the pool always knows which
//! tasks each worker holds, in the order it runs them: when a worker dies,
//! the first task it held is the one it was running (that task fails with
//! the worker's pid and signal) and the others go back to the front of the
//! queue for the other workers. Replies from every worker come through one
//! queue; an output too large for it follows on the worker's own result
//! pipe, which streams.
//!
//! A send to a worker never waits for room: the pool counts the bytes of
//! the frames each worker holds and sends only what its pipe can take at
//! once (a frame larger than a whole pipe goes only to a worker that holds
//! nothing, which is reading). So the handler thread, which also sends,
//! never waits on a worker that waits on it.

use std::collections::VecDeque;
use std::hash::RandomState;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use procs_core::{Process, StartMethod};
use procs_ipc::{PipeBuilder, Queue, QueueReceiver, QueueSender, Receiver, Sender};
use serde::{Serialize, de::DeserializeOwned};

use crate::buffers::Buffers;
use crate::error::{Error, Result};
use crate::imap::IMap;
use crate::result::{AsyncResult, Callbacks, Drive, Job, MapJob, Slot};
use crate::task::{
    Body, Call, Frame, HEADER, Reply, StarFn, call_chunk, call_init, call_one, call_star_chunk,
    encode, frame_for, start_frame,
};
use crate::worker::{Init, WorkerMain};

/// How often the handler thread looks for workers that died.
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// The capacity of each worker's task pipe and result pipe.
const PIPE_CAPACITY: usize = 256 * 1024;

/// The capacity of the reply queue (each reply is at most
/// `worker::INLINE_MAX` bytes of output and a few more).
const REPLY_CAPACITY: usize = 1024 * 1024;

/// How long `terminate` gives the workers, all together, to end after
/// SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_millis(200);

/// Tasks a worker may hold at once when its tasks take long (one running,
/// one ready), and when they are short (so it never waits for the pool).
const DEPTH_SLOW: usize = 2;
const DEPTH_FAST: usize = 32;
/// Below this mean time per task, a worker's tasks are short.
const FAST_TASK: Duration = Duration::from_micros(50);

/// The most replies the handler thread takes at once.
const BATCH: usize = 256;

/// How long a paced map waits before it looks again whether the workers
/// need a chunk (it is told sooner when one of its chunks comes back).
const PACE_RECHECK: Duration = Duration::from_millis(1);

/// A task as the pool holds it until its worker answers.
pub(crate) struct Task {
    id: u64,
    job: Arc<dyn Job>,
    index: usize,
    items: usize,
    frame: Frame,
    sent: Option<Instant>,
}

impl Task {
    /// The bytes the frame takes in a pipe: an 8-byte header and the
    /// payload padded to 8.
    fn cost(&self) -> usize {
        8 + self.frame.as_slice().len().next_multiple_of(8)
    }

    fn fail(self, error: Error) {
        self.job.deliver(self.index, self.items, Err(error));
    }
}

thread_local! {
    /// Where a submitting thread encodes an apply's frame.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Moves up to `most` of the replies waiting in the queue into `batch`.
fn take_waiting(replies: &QueueReceiver<Reply>, batch: &mut Vec<Reply>, most: usize) {
    for _ in 0..replies.len().min(most) {
        match replies.try_get() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
}

/// A task a worker answered, before the pool takes it off the worker.
struct Answer {
    worker: u32,
    task: u64,
    output: std::result::Result<Vec<u8>, Failure>,
}

/// Why a task has no output, before the pool knows the worker's pid.
enum Failure {
    Panicked {
        message: String,
        location: Option<String>,
    },
    Other(Error),
}

/// What a submitter gives the pool: a task's frame and its place in its job.
pub(crate) struct NewTask {
    pub index: usize,
    pub items: usize,
    pub frame: Frame,
}

struct Worker {
    id: u32,
    pid: i32,
    process: Process,
    tasks: Sender<()>,
    results: Arc<Mutex<Receiver<()>>>,
    /// The tasks sent to it, in the order it runs them.
    held: VecDeque<Task>,
    /// Pipe bytes of `held`.
    load: usize,
    /// Tasks sent to it in its life.
    assigned: u64,
    /// A send to it failed: it is dead or dying.
    broken: bool,
    /// Mean time per task (a moving average), and when it last answered.
    mean: Duration,
    last: Instant,
}

impl Worker {
    fn depth(&self) -> usize {
        if self.mean < FAST_TASK {
            DEPTH_FAST
        } else {
            DEPTH_SLOW
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Running,
    /// `close` was called: no new jobs.
    Closed,
    /// Someone is taking the pool down; wait for `Finished`.
    Stopping,
    Finished,
}

/// What does not change in a pool's life.
pub(crate) struct Config {
    processes: usize,
    key: RandomState,
    init: Option<Init>,
    maxtasks: Option<u64>,
}

pub(crate) struct State {
    mode: Mode,
    workers: Vec<Worker>,
    pending: VecDeque<Task>,
    /// Workers that served their `maxtasksperchild`, to be reaped.
    retired: Vec<Process>,
    next_task: u64,
    next_worker: u32,
    replies: QueueSender<Reply>,
    /// Set when the initializer failed: every task fails with it.
    broken: Option<Error>,
    /// imap iterators that may still submit after `close`.
    open_streams: usize,
    /// `terminate` was called (or the pool dropped).
    terminated: bool,
    handler: Option<JoinHandle<()>>,
    handler_id: Option<ThreadId>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    finished: Condvar,
    pub(crate) config: Config,
    /// Frames and outputs, kept for reuse.
    pub(crate) buffers: Arc<Buffers>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn worker(&mut self, id: u32) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.id == id)
    }

    fn wake_handler(&self) {
        let _ = self.replies.try_put(Reply {
            worker: u32::MAX,
            task: 0,
            body: Body::Wake,
        });
    }

    fn spawn_worker(&mut self, config: &Config) -> Result<()> {
        // The pipes get their memory now: the first large map would
        // otherwise pay a page fault per 4 KiB of them.
        let pipe = PipeBuilder::new().capacity(PIPE_CAPACITY).prefault();
        let (tasks_rx, tasks_tx) = pipe.clone().one_way()?;
        let (results_rx, results_tx) = pipe.one_way()?;
        let id = self.next_worker;
        self.next_worker += 1;
        let main = WorkerMain {
            id,
            tasks: tasks_rx,
            results: results_tx,
            replies: self.replies.clone(),
            key: config.key.clone(),
            init: config.init.clone(),
            maxtasks: config.maxtasks,
        };
        let mut process = Process::builder().daemon(true).build(main);
        process.start()?;
        self.workers.push(Worker {
            id,
            pid: process.pid().unwrap_or(0),
            process,
            tasks: tasks_tx,
            results: Arc::new(Mutex::new(results_rx)),
            held: VecDeque::new(),
            load: 0,
            assigned: 0,
            broken: false,
            mean: Duration::ZERO,
            last: Instant::now(),
        });
        Ok(())
    }

    /// Whether the pool has work in hand.
    fn busy(&self) -> bool {
        !self.pending.is_empty() || self.workers.iter().any(|w| !w.held.is_empty())
    }

    /// Starts workers until there are `processes`, while the pool may need
    /// them. A failure to start one fails the waiting tasks if no worker is
    /// left to run them.
    fn fill(&mut self, config: &Config) -> Vec<Task> {
        let wanted = match self.mode {
            Mode::Running => true,
            Mode::Closed => self.busy() || self.open_streams > 0,
            Mode::Stopping | Mode::Finished => false,
        };
        if !wanted || self.broken.is_some() {
            return Vec::new();
        }
        while self.workers.len() < config.processes {
            if let Err(e) = self.spawn_worker(config) {
                if self.workers.is_empty() {
                    self.broken = Some(e);
                    return self.pending.drain(..).collect();
                }
                break;
            }
        }
        Vec::new()
    }

    /// Sends pending tasks to workers that can take them now.
    fn pump(&mut self, config: &Config) {
        let mut now = None;
        while let Some(task) = self.pending.front() {
            let cost = task.cost();
            let best = self
                .workers
                .iter_mut()
                .filter(|w| {
                    !w.broken
                        && config.maxtasks.is_none_or(|m| w.assigned < m)
                        && w.held.len() < w.depth()
                        && (w.held.is_empty() || w.load + cost <= PIPE_CAPACITY)
                })
                .min_by_key(|w| w.held.len());
            let Some(w) = best else { break };
            let Some(mut task) = self.pending.pop_front() else {
                break;
            };
            match w.tasks.send_bytes(task.frame.as_slice()) {
                Ok(()) => {
                    task.sent = Some(*now.get_or_insert_with(Instant::now));
                    w.load += cost;
                    w.assigned += 1;
                    w.held.push_back(task);
                }
                Err(_) => {
                    // The worker is gone; the next check replaces it.
                    w.broken = true;
                    self.pending.push_front(task);
                }
            }
        }
    }

    fn open(&self, continuing: bool) -> Result<()> {
        if self.terminated {
            return Err(Error::Terminated);
        }
        match self.mode {
            Mode::Running => {}
            Mode::Closed if continuing => {}
            // Closed, or closed and finished since: Python's "Pool not
            // running" either way.
            Mode::Closed | Mode::Stopping | Mode::Finished => return Err(Error::Closed),
        }
        match &self.broken {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub(crate) fn config_processes(&self) -> usize {
        self.config.processes
    }

    /// Queues a job's tasks. `continuing` lets an imap that started before
    /// `close` go on.
    pub(crate) fn submit(
        &self,
        job: Arc<dyn Job>,
        tasks: impl IntoIterator<Item = NewTask>,
        continuing: bool,
    ) -> Result<()> {
        let mut st = self.lock();
        st.open(continuing)?;
        for t in tasks {
            let id = st.next_task;
            st.next_task += 1;
            let mut frame = t.frame;
            frame.set_task_id(id);
            st.pending.push_back(Task {
                id,
                job: job.clone(),
                index: t.index,
                items: t.items,
                frame,
                sent: None,
            });
        }
        st.pump(&self.config);
        Ok(())
    }

    /// An imap iterator opens (it may submit after `close`) or ends.
    pub(crate) fn stream(&self, open: bool) {
        let mut st = self.lock();
        if open {
            st.open_streams += 1;
        } else {
            st.open_streams -= 1;
            st.wake_handler();
        }
    }

    /// Replies from the workers, in the order they came: outputs that
    /// follow on result pipes are read first, then the tasks are taken off
    /// their workers under one lock (and the workers given more work), then
    /// the outcomes are delivered.
    fn on_replies(&self, replies: &mut Vec<Reply>) {
        let mut answered = Vec::with_capacity(replies.len());
        for Reply { worker, task, body } in replies.drain(..) {
            let output = match body {
                Body::Wake => continue,
                Body::InitPanicked(message) => {
                    self.finish_tasks(&mut answered);
                    self.initializer_failed(worker, message);
                    continue;
                }
                // A large output follows on the worker's result pipe: read
                // it before taking the task off the worker (if the worker
                // died mid-way, the task stays held and fails with its
                // death).
                Body::InPipe => match self.read_output(worker) {
                    Some(buf) => Ok(buf),
                    None => continue,
                },
                Body::Done(bytes) => Ok(bytes.0),
                Body::Panicked { message, location } => {
                    Err(Failure::Panicked { message, location })
                }
                Body::Serde(e) => Err(Failure::Other(Error::Serde(e))),
            };
            answered.push(Answer {
                worker,
                task,
                output,
            });
        }
        self.finish_tasks(&mut answered);
    }

    /// The output worker `id` sends on its result pipe, into a buffer used
    /// before (its bytes are mapped, and initialized up to its length: no
    /// zeroing but for growth); `None` if the worker is gone.
    fn read_output(&self, id: u32) -> Option<Vec<u8>> {
        let pipe = self.lock().worker(id)?.results.clone();
        let pipe = pipe.lock().unwrap_or_else(|e| e.into_inner());
        let mut buf = self.buffers.take_any();
        loop {
            buf.resize(buf.capacity().max(64 * 1024), 0);
            match pipe.recv_bytes_into(&mut buf) {
                Err(procs_ipc::Error::BufferTooSmall { needed, .. }) => buf.resize(needed, 0),
                Ok(n) => {
                    buf.truncate(n);
                    return Some(buf);
                }
                Err(_) => return None,
            }
        }
    }

    /// Takes answered tasks off their workers, sends the workers more, and
    /// delivers the outcomes.
    fn finish_tasks(&self, answered: &mut Vec<Answer>) {
        if answered.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut done = Vec::with_capacity(answered.len());
        let mut dropped = Vec::new();
        {
            let mut st = self.lock();
            let config = &self.config;
            for a in answered.drain(..) {
                let Some(w) = st.worker(a.worker) else {
                    continue;
                };
                if w.held.front().is_none_or(|t| t.id != a.task) {
                    // Not the task it was given first: a worker that does
                    // not follow the protocol is killed, and its death
                    // handled.
                    let _ = w.process.kill();
                    continue;
                }
                let Some(task) = w.held.pop_front() else {
                    continue;
                };
                w.load -= task.cost();
                let began = task.sent.map_or(now, |s| s.max(w.last));
                w.mean = (w.mean * 7 + now.saturating_duration_since(began)) / 8;
                w.last = now;
                let pid = w.pid;
                if config.maxtasks.is_some_and(|m| w.assigned >= m) && w.held.is_empty() {
                    // It served its tasks and exits by itself: reap it
                    // later, start its successor now.
                    if let Some(i) = st.workers.iter().position(|w| w.id == a.worker) {
                        let w = st.workers.remove(i);
                        st.retired.push(w.process);
                    }
                    dropped.extend(st.fill(config));
                }
                done.push((task, pid, a.output));
            }
            st.pump(config);
        }
        for t in dropped {
            t.fail(Error::Terminated);
        }
        for (task, pid, output) in done {
            let outcome = output.map_err(|f| match f {
                Failure::Panicked { message, location } => Error::TaskPanicked {
                    pid,
                    message,
                    location,
                },
                Failure::Other(e) => e,
            });
            let Task {
                job,
                index,
                items,
                frame,
                ..
            } = task;
            if let Frame::Heap(buf) = frame {
                self.buffers.give(buf);
            }
            job.deliver(index, items, outcome);
        }
    }

    /// The initializer panicked: no task can run.
    fn initializer_failed(&self, worker: u32, message: String) {
        let failed: Vec<Task> = {
            let mut st = self.lock();
            let pid = st.worker(worker).map_or(0, |w| w.pid);
            let error = Error::InitializerFailed { pid, message };
            st.broken = Some(error);
            let mut failed: Vec<Task> = st.pending.drain(..).collect();
            for w in &mut st.workers {
                failed.extend(w.held.drain(..));
                w.load = 0;
                let _ = w.process.kill();
            }
            failed
        };
        let error = self.lock().broken.clone().unwrap_or(Error::Terminated);
        for t in failed {
            t.fail(error.clone());
        }
    }

    /// Handles workers that died: the task each was running fails, the
    /// others go back to the queue, new workers take their places.
    fn check_workers(&self, replies: &QueueReceiver<Reply>) {
        let dead: Vec<u32> = {
            let mut st = self.lock();
            st.retired.retain(|p| p.exitcode().is_none());
            st.workers
                .iter()
                .filter(|w| w.process.exitcode().is_some())
                .map(|w| w.id)
                .collect()
        };
        if dead.is_empty() {
            return;
        }
        // What they answered before dying is in the queue already (they are
        // reaped): handle it first, so only unanswered tasks fail.
        let mut batch = Vec::new();
        take_waiting(replies, &mut batch, usize::MAX);
        self.on_replies(&mut batch);
        let mut failed = Vec::new();
        {
            let mut st = self.lock();
            for id in dead {
                let Some(i) = st.workers.iter().position(|w| w.id == id) else {
                    continue;
                };
                let w = st.workers.remove(i);
                let exitcode = w.process.exitcode().unwrap_or(0);
                let mut held = w.held;
                if let Some(t) = held.pop_front() {
                    failed.push((
                        t,
                        Error::WorkerDied {
                            pid: w.pid,
                            exitcode,
                        },
                    ));
                }
                // Sent but not started: another worker runs them.
                while let Some(t) = held.pop_back() {
                    st.pending.push_front(t);
                }
            }
            let config = &self.config;
            let dropped = st.fill(config);
            let error = st.broken.clone().unwrap_or(Error::Terminated);
            failed.extend(dropped.into_iter().map(|t| (t, error.clone())));
            st.pump(config);
        }
        for (t, e) in failed {
            t.fail(e);
        }
    }

    /// After `close`, once every task is done: lets the workers go, waits
    /// for them, and marks the pool finished. Whether the handler is done.
    fn finish_if_done(&self) -> bool {
        let (workers, retired) = {
            let mut st = self.lock();
            match st.mode {
                Mode::Running => return false,
                Mode::Stopping | Mode::Finished => return true,
                Mode::Closed if st.busy() || st.open_streams > 0 => return false,
                Mode::Closed => {}
            }
            st.mode = Mode::Stopping;
            (
                std::mem::take(&mut st.workers),
                std::mem::take(&mut st.retired),
            )
        };
        for mut w in workers {
            // Its task pipe closes: it reads the end and exits.
            drop(w.tasks);
            let _ = w.process.join();
        }
        for mut p in retired {
            let _ = p.join();
        }
        let mut st = self.lock();
        st.mode = Mode::Finished;
        self.finished.notify_all();
        true
    }

    fn handler(self: Arc<Self>, replies: QueueReceiver<Reply>) {
        let mut next_check = Instant::now() + CHECK_EVERY;
        let mut batch = Vec::new();
        loop {
            let wait = next_check.saturating_duration_since(Instant::now());
            match replies.get_timeout(wait) {
                Ok(reply) => {
                    // Take what else has come, to handle it all under one
                    // lock of the pool's state.
                    batch.push(reply);
                    take_waiting(&replies, &mut batch, BATCH);
                    self.on_replies(&mut batch);
                }
                Err(procs_ipc::Error::Empty) => {}
                Err(e) => {
                    // The queue itself is damaged: no reply in it can be
                    // trusted. Kill the workers; their deaths fail the tasks
                    // they held and new workers (with a new queue would be
                    // better, but these read the old one) carry on.
                    eprintln!("procs-pool: the reply queue failed: {e}");
                    for w in &mut self.lock().workers {
                        let _ = w.process.kill();
                    }
                }
            }
            let now = Instant::now();
            if now >= next_check {
                self.check_workers(&replies);
                next_check = now + CHECK_EVERY;
            }
            if self.finish_if_done() {
                return;
            }
        }
    }

    /// Waits until the pool is finished.
    fn wait_finished(&self) {
        let mut st = self.lock();
        while st.mode != Mode::Finished {
            st = self.finished.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn on_handler_thread(&self) -> bool {
        self.lock().handler_id == Some(std::thread::current().id())
    }

    fn terminate(&self) {
        let (workers, retired, pending, handler) = {
            let mut st = self.lock();
            st.terminated = true;
            match st.mode {
                Mode::Finished => return,
                Mode::Stopping => {
                    drop(st);
                    if !self.on_handler_thread() {
                        self.wait_finished();
                    }
                    return;
                }
                Mode::Running | Mode::Closed => {}
            }
            st.mode = Mode::Stopping;
            st.wake_handler();
            (
                std::mem::take(&mut st.workers),
                std::mem::take(&mut st.retired),
                std::mem::take(&mut st.pending),
                st.handler.take(),
            )
        };
        let mut failed: Vec<Task> = pending.into_iter().collect();
        let mut processes = retired;
        for mut w in workers {
            failed.extend(w.held.drain(..));
            processes.push(w.process);
        }
        // Every worker is told at once, so they end in parallel.
        for p in &mut processes {
            let _ = p.terminate();
        }
        let grace_ends = Instant::now() + TERM_GRACE;
        if let Some(h) = handler
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
        stop_all(&mut processes, grace_ends);
        for t in failed {
            t.fail(Error::Terminated);
        }
        let mut st = self.lock();
        st.mode = Mode::Finished;
        self.finished.notify_all();
    }
}

/// Waits for every process in `processes` until one shared `grace_ends`,
/// then kills those still running, then reaps them all: however many
/// linger, the grace is spent once.
fn stop_all(processes: &mut [Process], grace_ends: Instant) {
    let mut lingering = Vec::new();
    for p in processes.iter_mut() {
        // Past the deadline this only looks (a wait of zero).
        let left = grace_ends.saturating_duration_since(Instant::now());
        if !matches!(p.join_timeout(left), Ok(Some(_))) {
            let _ = p.kill();
            lingering.push(p);
        }
    }
    for p in lingering {
        let _ = p.join();
    }
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
#[derive(Debug, Default)]
pub struct PoolBuilder {
    processes: Option<usize>,
    init: Option<Result<Init>>,
    maxtasks: Option<u64>,
    start_method: StartMethod,
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
                    call: call_init::<A>,
                    func: f as usize,
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

    /// How workers start; only [`StartMethod::Fork`] exists today.
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
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                mode: Mode::Running,
                workers: Vec::new(),
                pending: VecDeque::new(),
                retired: Vec::new(),
                next_task: 1,
                next_worker: 0,
                replies: replies_tx,
                broken: None,
                open_streams: 0,
                terminated: false,
                handler: None,
                handler_id: None,
            }),
            finished: Condvar::new(),
            buffers: Arc::new(Buffers::new(4 * processes + 4)),
            config: Config {
                processes,
                key: RandomState::new(),
                init,
                maxtasks: self.maxtasks,
            },
        });
        let pool = Pool { shared };
        {
            let mut st = pool.shared.lock();
            for _ in 0..processes {
                st.spawn_worker(&pool.shared.config)?;
            }
            let shared = pool.shared.clone();
            let handler = std::thread::Builder::new()
                .name("procs-pool".into())
                .spawn(move || shared.handler(replies_rx))
                .map_err(|e| Error::Thread(Arc::new(e)))?;
            st.handler_id = Some(handler.thread().id());
            st.handler = Some(handler);
        }
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
        let (mode, pending) = {
            let st = self.shared.lock();
            (st.mode, st.pending.len())
        };
        f.debug_struct("Pool")
            .field("processes", &self.shared.config.processes)
            .field("state", &mode)
            .field("pending", &pending)
            .finish()
    }
}

/// Python's default chunk size for `map`: items / (4 x processes), rounded
/// up.
fn default_chunksize(items: usize, processes: usize) -> usize {
    items.div_ceil(processes * 4).max(1)
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
        self.shared.lock().workers.iter().map(|w| w.pid).collect()
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

    /// [`apply_async`](Self::apply_async) with a callback and an error
    /// callback.
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

    /// A map over `items`. An iterator that tells its exact length (a
    /// range, a vector's) is read chunk by chunk as the chunks go out;
    /// another is collected first, as Python's map does with a generator.
    ///
    /// A `paced` map (one whose caller waits for it) encodes a chunk only
    /// when the workers are short of work, and decodes what came back
    /// meanwhile: its memory stays bounded and its frames are reused. An
    /// asynchronous map encodes every chunk before it returns.
    fn map_job<T, R>(
        &self,
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
                self.map_chunks(call, func, items, lo, chunksize, callbacks, paced)
            }
            _ => {
                let items: Vec<T> = items.collect();
                let n = items.len();
                self.map_chunks(
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
        &self,
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
        let chunksize = chunksize.unwrap_or_else(|| default_chunksize(total, self.processes()));
        let chunks = total.div_ceil(chunksize);
        let job = Arc::new(MapJob::new(
            total,
            chunksize,
            callbacks,
            self.shared.buffers.clone(),
        ));
        let slot = job.slot.clone();
        let result = || AsyncResult::driven(slot.clone(), job.clone());
        if chunks == 0 {
            self.shared.lock().open(false)?;
            job.finish(Ok(Vec::new()));
            return Ok(AsyncResult::new(slot));
        }
        // Each chunk goes to the workers as soon as it is encoded, so they
        // start while the rest is being encoded.
        for index in 0..chunks {
            if paced && index > 0 {
                self.pace(&*job);
            }
            let len = chunksize.min(total - index * chunksize);
            let mut frame = self
                .shared
                .buffers
                .take(HEADER + 4 + len.saturating_mul(std::mem::size_of::<T>()));
            start_frame(&self.shared.config.key, call, func, &mut frame);
            let count =
                u32::try_from(len).map_err(|_| Error::Invalid("a chunk of over 2^32 items"))?;
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
                self.shared.submit(job.clone(), [task], index > 0)
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
    fn pace<R: DeserializeOwned + Send>(&self, job: &MapJob<R>) {
        loop {
            let seen = job.events();
            job.drive();
            if self.shared.lock().pending.len() < self.processes() {
                return;
            }
            // An output of this map comes when a worker is free; another
            // job's output frees one too, without telling this map: look
            // again after a while.
            job.wait_event(seen, Instant::now().checked_add(PACE_RECHECK));
        }
    }

    /// Applies `f` to every item, in chunks of Python's default size, and
    /// returns the results in order. The first task to fail fails the map
    /// (the others still run).
    pub fn map<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_job(
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
        self.map_job(
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
        self.map_async_with(f, items, None, Callbacks::new())
    }

    /// [`map_async`](Self::map_async) with a chunk size (`None`: Python's
    /// default), a callback (given the whole list) and an error callback.
    pub fn map_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_job(
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
        self.starmap_async_with(f, items, None, Callbacks::new())
    }

    /// [`starmap_async`](Self::starmap_async) with a chunk size and
    /// callbacks.
    pub fn starmap_async_with<F, T, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: StarFn<T, R>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
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
        self.map_job(call, 0, items, chunksize, callbacks, paced)
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
        self.shared.lock().open(false)?;
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
        let mut st = self.shared.lock();
        if st.mode == Mode::Running {
            st.mode = Mode::Closed;
            st.wake_handler();
        }
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
        let handler = {
            let mut st = self.shared.lock();
            if st.mode == Mode::Running {
                return Err(Error::StillRunning);
            }
            if st.handler_id == Some(std::thread::current().id()) {
                return Err(Error::Invalid("join from a callback would wait for itself"));
            }
            st.handler.take()
        };
        if let Some(h) = handler {
            let _ = h.join();
        }
        self.shared.wait_finished();
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.terminate();
    }
}
