//! A worker process: runs the initializer, then task after task from its
//! task pipe, and answers each through the pool's reply queue.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use procs_core::Target;
use procs_ipc::{QueueSender, Receiver, Sender};

use serde::{Deserialize, Serialize};

use crate::task::{Body, Bytes, Call, Header, Key, Reply, tag};

/// Outputs larger than this go through the worker's result pipe, which
/// streams (and which the pool reads into a buffer it keeps), instead of
/// inside a reply of the queue (an allocation per reply on each side).
pub(crate) const INLINE_MAX: usize = 8 * 1024;

/// The size of the buffers a worker starts with (those of its pipes).
const WARM_BUFFER: usize = 256 * 1024;

/// The initializer as a worker runs it: a call, a function (as offsets:
/// see `task`), an argument.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Init {
    pub call: u64,
    pub func: u64,
    pub arg: Vec<u8>,
}

/// The target of a worker process (for a spawned or served one, its
/// argument: the pipes and the queue travel as handles).
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerMain {
    pub id: u32,
    pub tasks: Receiver<()>,
    pub results: Sender<()>,
    pub replies: QueueSender<Reply>,
    pub key: Key,
    pub init: Option<Init>,
    pub maxtasks: Option<u64>,
}

impl Target for WorkerMain {
    const KIND: &'static str = "ForkPoolWorker";

    fn run(self) {
        // Panics are the tasks' failures from now on (see
        // `install_panic_hook`); nothing here takes the hook's lock.
        IN_WORKER.store(true, Ordering::Relaxed);
        if let Some(init) = &self.init {
            // SAFETY: the pool made `call` from `call_init::<A>` paired with
            // an `fn(A)` (see `PoolBuilder::initializer`), as offsets that
            // mean the same here (forked, or the program's own functions in
            // a fresh execution: checked by the pool).
            let call =
                unsafe { std::mem::transmute::<usize, Call>(procs_core::code_at(init.call)) };
            let func = procs_core::code_at(init.func);
            let ran = catch_unwind(AssertUnwindSafe(|| call(func, &init.arg, &mut Vec::new())));
            let failure = match ran {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(payload) => Some(take_panic(&*payload).0),
            };
            if let Some(message) = failure {
                let _ = self.replies.put(Reply {
                    worker: self.id,
                    task: 0,
                    body: Body::InitPanicked(message),
                });
                std::process::exit(1);
            }
        }
        // Buffers as large as the pipes, written once now, while the pool
        // starts: the first large tasks then neither grow them nor pay a
        // page fault per 4 KiB (after the fork, a write to memory the
        // worker shares with the pool's process is a copy).
        let mut frame = vec![0u8; WARM_BUFFER];
        frame.fill(1);
        let mut out = frame.clone();
        out.clear();
        let mut done = 0u64;
        while self.maxtasks.is_none_or(|m| done < m) {
            let len = match self.tasks.recv_bytes_into(&mut frame) {
                Ok(n) => n,
                Err(procs_ipc::Error::BufferTooSmall { needed, .. }) => {
                    frame.resize(needed, 0);
                    continue;
                }
                // The pool let go of this worker (close, or the pool is gone).
                Err(procs_ipc::Error::Disconnected | procs_ipc::Error::Closed) => return,
                Err(e) => die(&format!("cannot read a task: {e}")),
            };
            let Some((header, input)) = Header::parse(&frame[..len]) else {
                die("a task frame shorter than its header");
            };
            if header.tag != tag(&self.key, header.call, header.func) {
                die("a task frame whose tag does not check");
            }
            // SAFETY: the tag checks, so these words are a call and a
            // function that the pool paired and sent (see `task`), as
            // offsets that mean the same here (forked from the pool's
            // process; or a fresh execution of its program, where the pool
            // sends only the program's own functions); a call is a `Call`.
            let call =
                unsafe { std::mem::transmute::<usize, Call>(procs_core::code_at(header.call)) };
            let func = procs_core::code_at(header.func);
            out.clear();
            let body = match catch_unwind(AssertUnwindSafe(|| call(func, input, &mut out))) {
                Ok(Ok(())) if out.len() > INLINE_MAX => Body::InPipe,
                Ok(Ok(())) => Body::Done(Bytes(std::mem::take(&mut out))),
                Ok(Err(e)) => Body::Serde(e),
                Err(payload) => {
                    let (message, location) = take_panic(&*payload);
                    Body::Panicked { message, location }
                }
            };
            let in_pipe = matches!(body, Body::InPipe);
            let reply = Reply {
                worker: self.id,
                task: header.task,
                body,
            };
            match self.replies.put(reply) {
                Ok(()) => {}
                Err(e) if matches!(e.error, procs_ipc::Error::Disconnected) => return,
                Err(e) => die(&format!("cannot send a reply: {}", e.error)),
            }
            if in_pipe {
                match self.results.send_bytes(&out) {
                    Ok(()) => {}
                    Err(procs_ipc::Error::Disconnected) => return,
                    Err(e) => die(&format!("cannot send a result: {e}")),
                }
            }
            done += 1;
        }
    }
}

/// A worker of the spawn or forkserver method: the pool's panic hook
/// first (a fresh execution has the default one), then the worker.
pub(crate) fn spawned_worker(main: WorkerMain) {
    install_panic_hook();
    main.run();
}

/// A worker that cannot go on says why and exits; the pool sees the exit
/// and fails the task it held.
fn die(why: &str) -> ! {
    eprintln!("procs-pool worker {}: {why}", std::process::id());
    std::process::exit(70)
}

thread_local! {
    static LAST_PANIC: RefCell<Option<(String, Option<String>)>> = const { RefCell::new(None) };
}

/// Set in a worker process: a panic there is its task's failure.
static IN_WORKER: AtomicBool = AtomicBool::new(false);

/// Installs, once in this process and before its first worker is forked,
/// the panic hook of workers: in a worker it keeps the panic's message and
/// location for the pool and prints nothing; elsewhere it calls the hook it
/// replaced.
///
/// A worker cannot install it itself: a fork copies the hook's lock as it
/// was, and if another thread of the pool's process was panicking at that
/// moment (its hook runs under that lock), the lock stays held forever in
/// the worker, whose `set_hook` then never returns. A hook the program
/// sets after this one replaces it: workers then report a panic's message
/// without its location (and that hook runs in them).
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    if std::thread::panicking() {
        // `take_hook` would panic again (a pool built in a `Drop` during
        // a panic): workers then report panics without their location.
        return;
    }
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_WORKER.load(Ordering::Relaxed) {
                let message = procs_core::panic_message(info.payload());
                let location = info.location().map(|l| l.to_string());
                LAST_PANIC.with(|p| *p.borrow_mut() = Some((message, location)));
            } else {
                previous(info);
            }
        }));
    });
}

/// The message and location of the panic just caught.
fn take_panic(payload: &(dyn std::any::Any + Send)) -> (String, Option<String>) {
    LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .unwrap_or_else(|| (procs_core::panic_message(payload), None))
}
