//! The process-wide state behind [`Process`](crate::Process): who this
//! process is, which children it started, and the fork itself.
//!
//! One mutex, [`STATE`], guards this process's identity (name, numbering,
//! daemon flag), its parent, and the record of every child it started and has
//! not yet reaped. The fork happens while the forking thread holds that mutex
//! and the locks of standard output and standard error: a child of a
//! multi-threaded parent gets copies of every lock, and a lock held by any
//! other thread at the moment of the fork would stay locked forever in the
//! child. Held by the forking thread, which is the child's only thread, they
//! can be released in the child as in the parent.
//!
//! Children are reaped under the lock of their own record ([`Child::status`]),
//! and signals are sent under that lock too, so a signal can never reach a
//! pid that was reaped and reused.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid};

use crate::error::{Error, Result};
use crate::sys;

/// What a process knows of itself and of its children.
pub(crate) struct ForkState {
    /// This process's position in the tree: `[]` for the main process,
    /// `[1]` for its first child, `[1, 2]` for that child's second child.
    pub identity: Vec<u32>,
    /// This process's name (`MainProcess` at the root).
    pub name: String,
    /// Whether this process is a daemon (then it may not start children).
    pub daemon: bool,
    /// How many processes were created here, for numbering the next one.
    pub counter: u32,
    /// The parent's pid and name, `None` in the main process.
    pub parent: Option<(i32, String)>,
    /// Children started and not yet known to be reaped.
    pub children: Vec<Arc<Child>>,
    /// The thread that forks daemon children for threads other than the main
    /// one, with the pid of the process it belongs to.
    forker: Option<(i32, mpsc::Sender<ForkJob>)>,
    /// The forkserver of the process it names (a fork inherits the record).
    pub forkserver: Option<crate::forkserver::Server>,
}

pub(crate) static STATE: Mutex<ForkState> = Mutex::new(ForkState {
    identity: Vec::new(),
    name: String::new(),
    daemon: false,
    counter: 0,
    parent: None,
    children: Vec::new(),
    forker: None,
    forkserver: None,
});

/// Locks the state. A panic while it was held leaves it consistent (every
/// update is a single assignment or push), so poisoning is ignored.
pub(crate) fn state() -> MutexGuard<'static, ForkState> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ForkState {
    /// This process's name: `MainProcess` until a fork gives it another.
    pub fn name(&self) -> &str {
        if self.name.is_empty() {
            "MainProcess"
        } else {
            &self.name
        }
    }

    /// Forgets `child` if it was reaped: nothing is left to wait for, and
    /// its pidfd is closed once its handle is gone too.
    pub fn forget_reaped(&mut self, child: &Arc<Child>) {
        if child.reaped() {
            self.children.retain(|c| !Arc::ptr_eq(c, child));
        }
    }

    /// Reaps the children that ended and forgets them (Python's `_cleanup`).
    pub fn forget_finished(&mut self) {
        self.children.retain(|c| matches!(c.poll(), Ok(None)));
    }
}

/// A started child, shared by its [`Process`](crate::Process) handle and the
/// registry.
pub(crate) struct Child {
    pub pid: i32,
    /// The process that forked it: only that process may wait for it.
    pub creator: i32,
    pub name: String,
    pub daemon: bool,
    /// Readable once the child ended; `None` where the kernel has no pidfd.
    pidfd: Option<OwnedFd>,
    /// The exit code once reaped (Python's signs), or the error of the wait.
    status: Mutex<Option<std::result::Result<i32, Errno>>>,
    /// A child the forkserver forked (and reaps): the pipe on which the
    /// server writes its exit code (non-blocking; readable once written,
    /// or at the server's end).
    served: Option<OwnedFd>,
}

impl Child {
    fn lock_status(&self) -> MutexGuard<'_, Option<std::result::Result<i32, Errno>>> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the child was reaped (its exit code is known).
    pub fn reaped(&self) -> bool {
        self.lock_status().is_some()
    }

    /// The exit code if the child ended (reaping it), `None` if it runs.
    pub fn poll(&self) -> Result<Option<i32>> {
        let mut status = self.lock_status();
        if let Some(done) = *status {
            return done.map(Some).map_err(|e| Error::os("waitpid", e));
        }
        if let Some(fd) = &self.served {
            return match crate::forkserver::read_status(fd.as_fd()) {
                Ok(Some(code)) => {
                    *status = Some(Ok(code));
                    crate::handover::count_reaped();
                    Ok(Some(code))
                }
                Ok(None) => Ok(None),
                // The server ended before it could say: the code is lost,
                // as when another waiter reaped a child.
                Err(()) => {
                    *status = Some(Err(Errno::ECHILD));
                    crate::handover::count_reaped();
                    Err(Error::os("waitpid", Errno::ECHILD))
                }
            };
        }
        match waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(ws) => match sys::exitcode_of(ws) {
                Some(code) => {
                    *status = Some(Ok(code));
                    crate::handover::count_reaped();
                    Ok(Some(code))
                }
                None => Ok(None),
            },
            Err(Errno::EINTR) => Ok(None),
            // ECHILD: someone outside this library reaped it (a SIGCHLD set
            // to SIG_IGN, a waitpid(-1)). It is gone, its code unknown.
            Err(e) => {
                *status = Some(Err(e));
                crate::handover::count_reaped();
                Err(Error::os("waitpid", e))
            }
        }
    }

    /// Waits for the child to end, for at most `timeout` (`None`: no limit).
    /// Returns its exit code, or `None` if the time ran out.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Option<i32>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut backoff = Duration::from_micros(100);
        loop {
            if let Some(code) = self.poll()? {
                return Ok(Some(code));
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(None);
            }
            if let Some(fd) = &self.served {
                // Readable once the server wrote the code (or ended).
                sys::wait_readable(fd.as_fd(), left).map_err(|e| Error::io("poll", e))?;
                continue;
            }
            match (&self.pidfd, left) {
                (Some(fd), _) => {
                    sys::wait_readable(fd.as_fd(), left).map_err(|e| Error::io("poll", e))?;
                }
                (None, None) => {
                    sys::wait_exited_no_reap(self.pid).map_err(|e| Error::io("waitid", e))?
                }
                // No pidfd and a deadline: poll the status with a growing pause.
                (None, Some(left)) => {
                    std::thread::sleep(backoff.min(left));
                    backoff = (backoff * 2).min(Duration::from_millis(10));
                }
            }
        }
    }

    /// Sends `sig` unless the child was already reaped (then it is a no-op,
    /// as in Python: the pid may belong to another process by now).
    pub fn signal(&self, sig: Signal) -> Result<()> {
        let status = self.lock_status();
        if status.is_some() {
            return Ok(());
        }
        if self.served.is_some()
            && let Some(fd) = &self.pidfd
        {
            // Reaped by the server, not here: the pidfd names this very
            // process, whatever now has its pid.
            return match sys::pidfd_send_signal(fd.as_fd(), sig as i32) {
                Ok(()) => Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
                Err(e) => Err(Error::io("pidfd_send_signal", e)),
            };
        }
        match kill(Pid::from_raw(self.pid), sig) {
            // ESRCH cannot happen for an unreaped child, but a zombie
            // ignoring the signal is no error either.
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(Error::os("kill", e)),
        }
    }

    /// The pidfd, readable once the child ended (for a child of the
    /// forkserver, its status pipe, readable once its code is known).
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        self.served
            .as_ref()
            .or(self.pidfd.as_ref())
            .map(|fd| fd.as_fd())
    }

    /// The record of a child the forkserver forked for `creator`.
    pub fn served(
        pid: i32,
        creator: i32,
        name: String,
        daemon: bool,
        pidfd: Option<OwnedFd>,
        status: OwnedFd,
    ) -> Child {
        Child {
            pid,
            creator,
            name,
            daemon,
            pidfd,
            status: Mutex::new(None),
            served: Some(status),
        }
    }
}

/// What a new child needs to know, moved to the thread that forks it.
pub(crate) struct ChildSpec {
    pub entry: Box<dyn FnOnce() + Send>,
    pub identity: Vec<u32>,
    pub name: String,
    pub daemon: bool,
}

/// Forks a child that runs `spec.entry` and records it. Daemon children
/// forked from a thread other than the main one are forked by a helper
/// thread that lives as long as the process, because the parent-death signal
/// that kills them with their parent is tied to the forking thread.
pub(crate) fn start_child(spec: ChildSpec) -> Result<Arc<Child>> {
    if spec.daemon && !sys::on_main_thread() {
        return on_forker(spec);
    }
    fork_child(spec)
}

fn fork_child(spec: ChildSpec) -> Result<Arc<Child>> {
    ensure_exit_handler();
    // Lock order: stdout, stderr, state. Flushing first means the child does
    // not inherit (and print twice) what the parent had buffered.
    let mut stdout = io::stdout().lock();
    let _ = stdout.flush();
    let stderr = io::stderr().lock();
    let mut st = state();
    if st.daemon {
        return Err(Error::DaemonicChildren {
            name: st.name().to_owned(),
        });
    }
    st.forget_finished();
    let parent_pid = getpid().as_raw();
    let gate = StartGate::new()?;

    // SAFETY: the child of a multi-threaded parent may only do what is
    // async-signal-safe until it runs its entry; the branch below does so
    // (prctl, getppid, open/dup2/close, and unlocking mutexes this thread
    // holds), and a glibc child may allocate: glibc's malloc resets its locks
    // across fork. Everything else the child runs is its entry.
    // The child also waits at the start gate (a read and a poll) before it
    // runs its entry.
    match unsafe { fork() } {
        Err(e) => Err(Error::os("fork", e)),
        Ok(ForkResult::Child) => {
            let parent_name = st.name().to_owned();
            st.identity = spec.identity;
            st.name = spec.name;
            st.daemon = spec.daemon;
            st.counter = 0;
            st.parent = Some((parent_pid, parent_name));
            // Forget the parent's children (this child may not wait for
            // them) and its fork helper thread (it does not exist here).
            // Dropping the parent's channel to its helper could touch locks
            // that another thread held at the fork; leaking it touches none.
            st.children.clear();
            std::mem::forget(st.forker.take());
            if let Some(server) = st.forkserver.take() {
                server.forget_in_child();
            }
            drop(st);
            drop(stderr);
            drop(stdout);
            if spec.daemon {
                sys::die_with_parent(parent_pid);
            }
            sys::stdin_from_devnull();
            gate.wait_in_child(parent_pid);
            run_child(spec.entry)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(stderr);
            drop(stdout);
            let pid = child.as_raw();
            // The child is not reaped yet, so its pid cannot be reused here.
            let pidfd = sys::pidfd_open(pid).map_err(|e| Error::io("pidfd_open", e));
            let pidfd = match pidfd {
                Ok(fd) => fd,
                Err(e) => {
                    let _ = kill(child, Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    return Err(e);
                }
            };
            let record = Arc::new(Child {
                pid,
                creator: parent_pid,
                name: spec.name,
                daemon: spec.daemon,
                pidfd,
                status: Mutex::new(None),
                served: None,
            });
            st.children.push(Arc::clone(&record));
            // The entry was moved into the child; the parent's copy of what it
            // captured is dropped here, after the lock (it may hold handles
            // whose drop takes locks of its own).
            drop(st);
            crate::handover::dropping_for(pid, spec.entry);
            // Only now may the child run: what its handles' drops record
            // comes after what the parent's hand-over recorded for them.
            gate.open();
            Ok(record)
        }
    }
}

/// Holds a new child back until the parent has handed it what its target
/// captured.
///
/// The parent drops its copy of the target right after the fork, and the
/// handles in it record the child as their holder as they drop
/// ([`handing_over_to`](crate::handing_over_to)). A child that ran at once
/// could drop its handle before the parent recorded it, and would then stay
/// recorded for ever after. So the child first waits for one byte on a pipe
/// that the parent writes once the hand-over is done. The parent's end is
/// closed when it is dropped, so a parent that failed (or unwound) in
/// between lets the child go too; and a parent that died (which another
/// child forked meanwhile could outlive, holding a copy of the write end)
/// is noticed by the child's parent pid changing.
struct StartGate {
    read: OwnedFd,
    write: OwnedFd,
}

impl StartGate {
    fn new() -> Result<StartGate> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(Error::io("pipe2", io::Error::last_os_error()));
        }
        // SAFETY: pipe2 succeeded: both descriptors are open and ours alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(StartGate { read, write })
    }

    /// The parent's side: lets the child run.
    fn open(self) {
        let byte = 1u8;
        // SAFETY: writes one byte from a valid buffer to our open pipe end.
        // A failure (the child died) needs nothing: it is not waiting.
        let _ = unsafe { libc::write(self.write.as_raw_fd(), (&raw const byte).cast(), 1) };
    }

    /// The child's side: waits until the parent opens the gate, drops it, or
    /// dies. Only async-signal-safe calls (close, poll, read, getppid).
    fn wait_in_child(self, parent: i32) {
        drop(self.write);
        let mut pfd = libc::pollfd {
            fd: self.read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd for a descriptor this child owns.
            let n = unsafe { libc::poll(&mut pfd, 1, 100) };
            if n > 0 {
                // Readable: the byte, or the end of the pipe.
                break;
            }
            // SAFETY: getppid has no preconditions.
            if unsafe { libc::getppid() } != parent {
                break;
            }
        }
        let mut byte = 0u8;
        // SAFETY: reads at most one byte into a valid buffer; the result
        // does not matter (the byte, EOF or an error all mean "go").
        let _ = unsafe { libc::read(self.read.as_raw_fd(), (&raw mut byte).cast(), 1) };
    }
}

/// The child's side: run the entry, turn a panic into exit code 1, flush
/// standard output, and end without running the parent's exit handlers.
fn run_child(entry: Box<dyn FnOnce() + Send>) -> ! {
    let code = match catch_unwind(AssertUnwindSafe(entry)) {
        Ok(()) => 0,
        Err(payload) => {
            // Dropping a payload can panic again; it is not ours to drop.
            std::mem::forget(payload);
            1
        }
    };
    exit_child(code)
}

/// Ends a forked child: joins its own children as a normal exit would,
/// flushes standard output (the panic hook already wrote to stderr), and
/// leaves at once.
pub(crate) fn exit_child(code: i32) -> ! {
    join_children_at_exit();
    let _ = io::stdout().lock().flush();
    sys::exit_now(code)
}

type ForkJob = Box<dyn FnOnce() + Send>;

/// Runs `fork_child(spec)` on this process's fork helper thread.
fn on_forker(spec: ChildSpec) -> Result<Arc<Child>> {
    let jobs = {
        let mut st = state();
        let me = getpid().as_raw();
        match &st.forker {
            Some((pid, tx)) if *pid == me => tx.clone(),
            _ => {
                let (tx, rx) = mpsc::channel::<ForkJob>();
                std::thread::Builder::new()
                    .name("procs-forker".into())
                    .spawn(move || {
                        for job in rx {
                            job();
                        }
                    })
                    .map_err(|e| Error::io("spawn fork helper thread", e))?;
                st.forker = Some((me, tx.clone()));
                tx
            }
        }
    };
    let (reply, result) = mpsc::sync_channel(1);
    let job: ForkJob = Box::new(move || {
        let _ = reply.send(fork_child(spec));
    });
    let gone = || Error::io("fork helper thread", io::Error::other("it ended"));
    jobs.send(job).map_err(|_| gone())?;
    result.recv().map_err(|_| gone())?
}

/// Registers, once per process, the handler that runs when the process exits
/// normally: daemon children are terminated and every child is joined, as
/// Python's multiprocessing does at interpreter exit.
///
/// A flag, not a `Once`: a `Once` caught mid-call by another thread's fork
/// would stay "running" in the child and block it for ever.
fn ensure_exit_handler() {
    static REGISTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !REGISTERED.swap(true, std::sync::atomic::Ordering::AcqRel) {
        extern "C" fn at_exit() {
            join_children_at_exit();
        }
        // SAFETY: `at_exit` is a plain extern "C" function that lives for the
        // whole program; registering it has no other precondition.
        unsafe {
            libc::atexit(at_exit);
        }
    }
}

/// Terminates daemon children and joins all children of this process.
pub(crate) fn join_children_at_exit() {
    let children = std::mem::take(&mut state().children);
    for child in children.iter().filter(|c| c.daemon) {
        let _ = child.signal(Signal::SIGTERM);
    }
    for child in &children {
        let _ = child.wait(None);
    }
}
