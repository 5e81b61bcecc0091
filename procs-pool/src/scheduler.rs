//! The scheduler: the pool's shared state, and which worker gets which
//! task.
//!
//! Each worker has a task pipe of its own, so the pool always knows which
//! tasks each worker holds, in the order it runs them ([`Worker::held`]):
//! the first is the one it is running, the others wait in its pipe.
//! Tasks no worker can take yet wait in [`State::pending`], in order.
//!
//! A send to a worker never waits for room: the pool counts the bytes of
//! the frames each worker holds ([`Worker::load`]) and sends only what its
//! pipe can take at once (a frame larger than a whole pipe goes only to a
//! worker that holds nothing, which is reading). So the handler thread,
//! which also sends, never waits on a worker that waits on it. A worker
//! holds at most [`DEPTH_SLOW`] tasks when its tasks take long and
//! [`DEPTH_FAST`] when they are short, and is sent no more than its
//! `maxtasksperchild` tasks in its life.
//!
//! Everything here is under the one lock of [`Shared::lock`]; outcomes are
//! delivered to their [`Job`]s outside it.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use procs_core::Process;
use procs_ipc::{PipeBuilder, QueueSender, Receiver, Sender};

use crate::buffers::Buffers;
use crate::error::{Error, Result};
use crate::task::{Body, Frame, Reply};
use crate::worker::{Init, WorkerMain};

/// The capacity of each worker's task pipe and result pipe.
const PIPE_CAPACITY: usize = 256 * 1024;

/// Tasks a worker may hold at once when its tasks take long (one running,
/// one ready), and when they are short (so it never waits for the pool).
const DEPTH_SLOW: usize = 2;
const DEPTH_FAST: usize = 32;
/// Below this mean time per task, a worker's tasks are short.
const FAST_TASK: Duration = Duration::from_micros(50);

/// What the pool does with the outcome of one of a job's tasks.
pub(crate) trait Job: Send + Sync {
    /// Task `index` of the job, which carried `items` arguments, ended with
    /// `outcome`: the worker's output (a buffer to give back to the pool's
    /// [`Buffers`] once read), or why there is none.
    fn deliver(&self, index: usize, items: usize, outcome: Result<Vec<u8>>);
}

/// A task's outcome as it came: its index, its item count, its output.
pub(crate) type Arrival = (usize, usize, Result<Vec<u8>>);

/// A task as the pool holds it until its worker answers.
pub(crate) struct Task {
    pub(crate) id: u64,
    pub(crate) job: Arc<dyn Job>,
    pub(crate) index: usize,
    pub(crate) items: usize,
    pub(crate) frame: Frame,
    pub(crate) sent: Option<Instant>,
}

impl Task {
    /// The bytes the frame takes in a pipe: an 8-byte header and the
    /// payload padded to 8.
    pub(crate) fn cost(&self) -> usize {
        8 + self.frame.as_slice().len().next_multiple_of(8)
    }

    pub(crate) fn fail(self, error: Error) {
        self.job.deliver(self.index, self.items, Err(error));
    }
}

/// What a submitter gives the pool: a task's frame and its place in its job.
pub(crate) struct NewTask {
    pub(crate) index: usize,
    pub(crate) items: usize,
    pub(crate) frame: Frame,
}

/// A worker process as the pool sees it: its pipes and what it holds.
pub(crate) struct Worker {
    pub(crate) id: u32,
    pub(crate) pid: i32,
    pub(crate) process: Process,
    pub(crate) tasks: Sender<()>,
    pub(crate) results: Arc<Mutex<Receiver<()>>>,
    /// The tasks sent to it, in the order it runs them.
    pub(crate) held: VecDeque<Task>,
    /// Pipe bytes of `held`.
    pub(crate) load: usize,
    /// Tasks sent to it in its life.
    pub(crate) assigned: u64,
    /// A send to it failed: it is dead or dying.
    pub(crate) broken: bool,
    /// Mean time per task (a moving average), and when it last answered.
    pub(crate) mean: Duration,
    pub(crate) last: Instant,
}

impl Worker {
    pub(crate) fn depth(&self) -> usize {
        if self.mean < FAST_TASK {
            DEPTH_FAST
        } else {
            DEPTH_SLOW
        }
    }
}

/// Where the pool is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Running,
    /// `close` was called: no new jobs.
    Closed,
    /// Someone is taking the pool down; wait for `Finished`.
    Stopping,
    Finished,
}

/// What does not change in a pool's life.
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) key: crate::task::Key,
    pub(crate) init: Option<Init>,
    pub(crate) maxtasks: Option<u64>,
    pub(crate) start_method: procs_core::StartMethod,
}

/// What changes in a pool's life, under [`Shared::lock`].
pub(crate) struct State {
    pub(crate) mode: Mode,
    pub(crate) workers: Vec<Worker>,
    pub(crate) pending: VecDeque<Task>,
    /// Workers that served their `maxtasksperchild`, to be reaped.
    pub(crate) retired: Vec<Process>,
    pub(crate) next_task: u64,
    pub(crate) next_worker: u32,
    pub(crate) replies: QueueSender<Reply>,
    /// Set when the initializer failed: every task fails with it.
    pub(crate) broken: Option<Error>,
    /// imap iterators that may still submit after `close`.
    pub(crate) open_streams: usize,
    /// `terminate` was called (or the pool dropped).
    pub(crate) terminated: bool,
    pub(crate) handler: Option<JoinHandle<()>>,
    pub(crate) handler_id: Option<ThreadId>,
}

/// A pool's state, shared by its [`Pool`](crate::Pool), its handler
/// thread and its imap iterators.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Notified when the mode becomes [`Mode::Finished`].
    pub(crate) finished: Condvar,
    pub(crate) config: Config,
    /// Frames and outputs, kept for reuse.
    pub(crate) buffers: Arc<Buffers>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    pub(crate) fn worker(&mut self, id: u32) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.id == id)
    }

    pub(crate) fn wake_handler(&self) {
        let _ = self.replies.try_put(Reply {
            worker: u32::MAX,
            task: 0,
            body: Body::Wake,
        });
    }

    pub(crate) fn spawn_worker(&mut self, config: &Config) -> Result<()> {
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
            key: config.key,
            init: config.init.clone(),
            maxtasks: config.maxtasks,
        };
        let process = match config.start_method {
            procs_core::StartMethod::Fork => {
                // The worker's target forked, whatever the program's
                // default start method.
                let mut process = Process::builder()
                    .start_method(procs_core::StartMethod::Fork)
                    .daemon(true)
                    .build(main);
                process.start()?;
                process
            }
            // A fresh execution of the program (or a fork of its
            // forkserver) that runs the worker: its pipes and queue go
            // with it as handles.
            method => Process::builder()
                .start_method(method)
                .name(format!("SpawnPoolWorker-{id}"))
                .daemon(true)
                .spawn_fn(crate::worker::spawned_worker, main)?
                .into_process(),
        };
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
    pub(crate) fn busy(&self) -> bool {
        !self.pending.is_empty() || self.workers.iter().any(|w| !w.held.is_empty())
    }

    /// Starts workers until there are `processes`, while the pool may need
    /// them. A failure to start one fails the waiting tasks if no worker is
    /// left to run them.
    pub(crate) fn fill(&mut self, config: &Config) -> Vec<Task> {
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
    pub(crate) fn pump(&mut self, config: &Config) {
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

    pub(crate) fn open(&self, continuing: bool) -> Result<()> {
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
    /// A pool with no workers yet, whose workers answer on `replies`.
    pub(crate) fn new(config: Config, replies: QueueSender<Reply>) -> Shared {
        let processes = config.processes;
        Shared {
            state: Mutex::new(State {
                mode: Mode::Running,
                workers: Vec::new(),
                pending: VecDeque::new(),
                retired: Vec::new(),
                next_task: 1,
                next_worker: 0,
                replies,
                broken: None,
                open_streams: 0,
                terminated: false,
                handler: None,
                handler_id: None,
            }),
            finished: Condvar::new(),
            buffers: Arc::new(Buffers::new(4 * processes + 4)),
            config,
        }
    }

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

    /// Whether the pool takes a new job now: the error it would be refused
    /// with if not.
    pub(crate) fn check_open(&self) -> Result<()> {
        self.lock().open(false)
    }

    /// Whether fewer tasks wait for a worker than there are workers.
    pub(crate) fn short_of_work(&self) -> bool {
        self.lock().pending.len() < self.config.processes
    }

    /// The pids of the current workers.
    pub(crate) fn pids(&self) -> Vec<i32> {
        self.lock().workers.iter().map(|w| w.pid).collect()
    }

    /// Where the pool is in its life, and how many tasks wait for a worker.
    pub(crate) fn status(&self) -> (Mode, usize) {
        let st = self.lock();
        (st.mode, st.pending.len())
    }

    /// Takes no more jobs; the handler thread lets the workers go once
    /// every task is done.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        if st.mode == Mode::Running {
            st.mode = Mode::Closed;
            st.wake_handler();
        }
    }
}
