//! The handler thread: it takes the workers' replies, delivers the
//! outcomes to their jobs, notices workers that died, starts new ones,
//! and ends the pool (once closed and done, or terminated).
//!
//! Replies from every worker come through one queue; an output too large
//! for it follows on the worker's own result pipe, which streams. A reply
//! is for the first task its worker holds (workers run their tasks in
//! order): a worker that answers another is killed. When a worker dies,
//! the first task it held is the one it was running (that task fails with
//! the worker's pid and exit code) and the others go back to the front of
//! the queue for the other workers; the death is seen within
//! [`CHECK_EVERY`]. Outcomes are delivered outside the pool's lock, after
//! the tasks are taken off their workers and the workers given more work.

use std::sync::Arc;
use std::time::{Duration, Instant};

use procs_core::Process;
use procs_ipc::QueueReceiver;

use crate::error::{Error, Result};
use crate::scheduler::{Mode, Shared, Task};
use crate::task::{Body, Frame, Reply};

/// How often the handler thread looks for workers that died: the
/// workspace's one interval of liveness checks.
use procs_ipc::ring::CHECK_EVERY;

/// How long `terminate` gives the workers, all together, to end after
/// SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_millis(200);

/// The most replies the handler thread takes at once.
const BATCH: usize = 256;

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

impl Shared {
    /// Starts the handler thread, which reads `replies`.
    pub(crate) fn start_handler(self: &Arc<Self>, replies: QueueReceiver<Reply>) -> Result<()> {
        let mut st = self.lock();
        let shared = self.clone();
        let handler = std::thread::Builder::new()
            .name("procs-pool".into())
            .spawn(move || shared.handler(replies))
            .map_err(|e| Error::Thread(Arc::new(e)))?;
        st.handler_id = Some(handler.thread().id());
        st.handler = Some(handler);
        Ok(())
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

    pub(crate) fn terminate(&self) {
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

    /// Waits for the handler thread and the workers to end, after `close`
    /// or `terminate`.
    pub(crate) fn join(&self) -> Result<()> {
        let handler = {
            let mut st = self.lock();
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
        self.wait_finished();
        Ok(())
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
