//! [`Process`]: a child process that runs a Rust closure, with Python's
//! lifecycle (created, started, joined) and exit codes.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::getpid;

use crate::error::{Error, Result};
use crate::registry::{self, Child, ChildSpec};

/// How a new process is started.
///
/// Only `Fork` exists today: the child is a copy of the parent made by
/// `fork(2)` and runs any `FnOnce() + Send + 'static` closure. Start methods
/// that re-execute the program (`spawn`) or fork from a clean server
/// (`forkserver`) will take a plain `fn` with serializable arguments instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum StartMethod {
    /// `fork(2)` the calling process (Python's default on Linux).
    #[default]
    Fork,
    /// A fresh execution of this program, which runs one plain function
    /// ([`ProcessBuilder::spawn_fn`]): safe from any parent, threads and
    /// all. The program calls [`init`](crate::init) first thing in `main`.
    Spawn,
    /// Forked by a server process of this program, started on first use
    /// as a fresh execution (so single-threaded, whatever the parent's
    /// threads hold), which forks each child of a plain function
    /// ([`ProcessBuilder::spawn_fn`]): an exec once, then a fork a child.
    /// The server ends with this process (also when it is killed); the
    /// program calls [`init`](crate::init) first thing in `main`.
    Forkserver,
}

impl StartMethod {
    /// Python's name for the method: `"fork"`.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::Forkserver => "forkserver",
        }
    }
}

/// What a process runs: Python's `run()` method.
///
/// Every `FnOnce() + Send + 'static` closure is a target. A type of your own
/// is one too, which is the Rust form of subclassing Python's `Process`:
///
/// ```
/// use procs_core::{Process, Target};
///
/// struct Greeter {
///     greeting: String,
/// }
///
/// impl Target for Greeter {
///     const KIND: &'static str = "Greeter";
///     fn run(self) {
///         println!("{} from {}", self.greeting, procs_core::current_process().name);
///     }
/// }
///
/// let mut p = Process::new(Greeter { greeting: "hello".into() });
/// assert!(p.name().starts_with("Greeter-"));
/// p.start()?;
/// assert_eq!(p.join()?, 0);
/// # Ok::<(), procs_core::Error>(())
/// ```
pub trait Target: Send + 'static {
    /// The type name that default process names start with, as Python names
    /// a process after its class: `MyProcess-1`. Closures are `Process`.
    const KIND: &'static str = "Process";

    /// The work of the process, run in the child.
    fn run(self);
}

impl<F: FnOnce() + Send + 'static> Target for F {
    fn run(self) {
        self()
    }
}

/// A process that runs a [`Target`] in a child, as Python's
/// `multiprocessing.Process`.
///
/// A `Process` is created unstarted; [`start`](Process::start) forks the
/// child, [`join`](Process::join) waits for it. Its exit code follows Python:
/// `None` while it runs, `0` for a normal end, `1` when the target panicked
/// (the panic message is printed on the child's stderr), the code passed to
/// `std::process::exit`, and `-N` when a signal N killed it.
///
/// ```
/// use procs_core::Process;
///
/// let mut p = Process::new(|| println!("hello from the child"));
/// assert!(!p.is_alive());
/// p.start()?;
/// assert_eq!(p.join()?, 0);
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), procs_core::Error>(())
/// ```
///
/// Dropping a started `Process` does not stop the child: it goes on, is
/// joined when this program exits normally (daemon children are terminated
/// then), and is reaped by [`active_children`](crate::active_children) or the
/// next `start` once it ends, as in Python.
///
/// [`close`](Process::close) releases an ended child's resources at once (its
/// pidfd, its record), as Python's `close()`; the handle then answers only
/// for its name, daemon flag, start method and exit code.
pub struct Process {
    name: String,
    kind: &'static str,
    daemon: bool,
    identity: Vec<u32>,
    pub(crate) start_method: StartMethod,
    target: Option<Box<dyn FnOnce() + Send>>,
    /// A plain function's start (from [`ProcessBuilder::build_fn`]), by any
    /// method: given this handle's name, daemon flag and method.
    plain: Option<PlainStart>,
    child: Option<Arc<Child>>,
    /// Set by `close`: the exit code the child had (`None` if never started).
    closed: Option<Closed>,
    /// The target executes this program afresh (the spawn method's).
    pub(crate) execs: bool,
}

/// Starts a plain function's child, as [`ProcessBuilder::spawn_fn`] does.
type PlainStart = Box<dyn FnOnce(ProcessBuilder) -> Result<Process> + Send>;

/// What a closed [`Process`] remembers.
#[derive(Debug, Clone, Copy)]
struct Closed {
    exitcode: Option<i32>,
}

/// Builds a [`Process`] with a name, a daemon flag or a start method.
///
/// ```
/// use procs_core::Process;
///
/// let mut p = Process::builder().name("worker").daemon(true).build(|| {});
/// assert_eq!(p.name(), "worker");
/// assert!(p.daemon());
/// p.start()?;
/// p.join()?;
/// # Ok::<(), procs_core::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` or `start`"]
pub struct ProcessBuilder {
    name: Option<String>,
    daemon: Option<bool>,
    pub(crate) start_method: StartMethod,
}

impl Default for ProcessBuilder {
    /// No name, the parent's daemon flag, and the default start method
    /// ([`get_start_method`](crate::get_start_method)).
    fn default() -> Self {
        ProcessBuilder {
            name: None,
            daemon: None,
            start_method: crate::context::default_method(),
        }
    }
}

impl ProcessBuilder {
    /// A builder with Python's defaults: a numbered name, the daemon flag of
    /// the current process, the fork start method.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process's name (default `Process-N`, or `Kind-N` for a custom
    /// [`Target`]). Names need not be unique.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whether the process is a daemon: terminated when its parent exits
    /// normally, killed when its parent is killed, and not allowed to start
    /// children of its own.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = Some(daemon);
        self
    }

    /// How the process is started.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.start_method = method;
        self
    }

    /// The unstarted process.
    pub fn build<T: Target>(self, target: T) -> Process {
        let mut st = registry::state();
        st.counter += 1;
        let mut identity = st.identity.clone();
        identity.push(st.counter);
        let daemon = self.daemon.unwrap_or(st.daemon);
        drop(st);
        let name = self.name.unwrap_or_else(|| {
            let numbers: Vec<String> = identity.iter().map(u32::to_string).collect();
            format!("{}-{}", T::KIND, numbers.join(":"))
        });
        Process {
            name,
            kind: T::KIND,
            daemon,
            identity,
            start_method: self.start_method,
            target: Some(Box::new(move || target.run())),
            plain: None,
            child: None,
            closed: None,
            execs: false,
        }
    }

    /// An unstarted process that runs the plain function `f(arg)` by the
    /// builder's start method, any of the three (Python's
    /// `Process(target=f, args=(arg,))`): under spawn and forkserver the
    /// argument travels serialized, handles and all, as with
    /// [`spawn_fn`](ProcessBuilder::spawn_fn) (whose value it does not
    /// keep); the program calls [`init`](crate::init) first in `main`.
    ///
    /// ```no_run
    /// use procs_core::{Process, StartMethod};
    ///
    /// fn greet(name: String) {
    ///     println!("hello {name}");
    /// }
    ///
    /// fn main() -> Result<(), procs_core::Error> {
    ///     procs_core::init();
    ///     let mut p = Process::builder()
    ///         .start_method(StartMethod::Spawn)
    ///         .build_fn(greet, "bob".to_string());
    ///     p.start()?;
    ///     assert_eq!(p.join()?, 0);
    ///     Ok(())
    /// }
    /// ```
    pub fn build_fn<A>(self, f: fn(A), arg: A) -> Process
    where
        A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        let mut p = self.clone().build(|| {});
        p.target = None;
        p.plain = Some(Box::new(move |builder: ProcessBuilder| {
            Ok(builder.spawn_fn(f, arg)?.into_process())
        }));
        p
    }

    /// Builds the process and starts it.
    pub fn start<T: Target>(self, target: T) -> Result<Process> {
        let mut p = self.build(target);
        p.start()?;
        Ok(p)
    }
}

impl Process {
    /// An unstarted process that will run `target`, named `Process-N`.
    pub fn new<T: Target>(target: T) -> Process {
        ProcessBuilder::new().build(target)
    }

    /// A builder for a process with a name, daemon flag or start method.
    pub fn builder() -> ProcessBuilder {
        ProcessBuilder::new()
    }

    /// Starts the child. Errors if the process was started before, if the
    /// current process is a daemon (daemons may not have children), or if
    /// the system refuses the fork.
    pub fn start(&mut self) -> Result<()> {
        self.check_open("start")?;
        if self.child.is_some() {
            return Err(Error::AlreadyStarted {
                name: self.name.clone(),
            });
        }
        if let Some(plain) = self.plain.take() {
            let builder = ProcessBuilder {
                name: Some(self.name.clone()),
                daemon: Some(self.daemon),
                start_method: self.start_method,
            };
            let mut started = plain(builder)?;
            self.child = started.child.take();
            return Ok(());
        }
        let Some(entry) = self.target.take() else {
            return Err(Error::AlreadyStarted {
                name: self.name.clone(),
            });
        };
        let spec = ChildSpec {
            entry,
            identity: self.identity.clone(),
            name: self.name.clone(),
            daemon: self.daemon,
        };
        match self.start_method {
            StartMethod::Fork => self.child = Some(registry::start_child(spec)?),
            // A target that itself executes this program afresh (made by
            // `spawn_fn`): forked, then it execs.
            StartMethod::Spawn if self.execs => self.child = Some(registry::start_child(spec)?),
            StartMethod::Spawn | StartMethod::Forkserver => {
                // Put back what cannot cross an exec, for a fork instead.
                self.target = Some(spec.entry);
                return Err(Error::SpawnNeedsFunction {
                    name: self.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Takes `child`, started by other means than this handle's target
    /// (the forkserver's), as this handle's.
    pub(crate) fn set_started(&mut self, child: Arc<Child>) {
        self.target = None;
        self.child = Some(child);
    }

    /// [`Error::ProcessClosed`] once [`close`](Self::close) was called.
    fn check_open(&self, op: &'static str) -> Result<()> {
        match self.closed {
            None => Ok(()),
            Some(_) => Err(Error::ProcessClosed {
                op,
                name: self.name.clone(),
            }),
        }
    }

    fn started(&self, op: &'static str) -> Result<&Child> {
        self.check_open(op)?;
        self.child.as_deref().ok_or_else(|| Error::NotStarted {
            op,
            name: self.name.clone(),
        })
    }

    /// The child, checked to be this process's own to wait for.
    fn own_child(&self, op: &'static str) -> Result<&Child> {
        let child = self.started(op)?;
        let this = getpid().as_raw();
        if child.pid == this {
            return Err(Error::JoinSelf { pid: this });
        }
        if child.creator != this {
            return Err(Error::NotAChild {
                op,
                pid: child.pid,
                parent: child.creator,
                this,
            });
        }
        Ok(child)
    }

    /// Waits for the child to end and returns its exit code.
    pub fn join(&mut self) -> Result<i32> {
        let child = self.own_child("join")?;
        child
            .wait(None)?
            .ok_or_else(|| Error::io("join", std::io::Error::other("wait ended early")))
    }

    /// Waits at most `timeout` for the child to end. Returns its exit code,
    /// or `None` if it is still running (as Python's `join(timeout)`, the
    /// process is left alone).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<i32>> {
        self.own_child("join")?.wait(Some(timeout))
    }

    /// Whether the child has been started and has not ended.
    pub fn is_alive(&self) -> bool {
        match &self.child {
            None => false,
            Some(c) if c.creator != getpid().as_raw() => false,
            Some(c) => matches!(c.poll(), Ok(None)),
        }
    }

    /// Sends SIGTERM to the child (Python's `terminate`). A child that ended
    /// already is left alone.
    pub fn terminate(&mut self) -> Result<()> {
        self.send_signal(Signal::SIGTERM)
    }

    /// Sends SIGKILL to the child (Python's `kill`).
    pub fn kill(&mut self) -> Result<()> {
        self.send_signal(Signal::SIGKILL)
    }

    /// Sends `signal` to the child, unless it ended already.
    pub fn send_signal(&mut self, signal: Signal) -> Result<()> {
        self.own_child("signal")?.signal(signal)
    }

    /// The child's pid, `None` before `start` and after
    /// [`close`](Self::close) (from then on the pid may be another
    /// process's). [`ident`](Self::ident) is the same with Python's error
    /// after `close`.
    #[doc(alias = "ident")]
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.pid)
    }

    /// The child's pid, `None` before `start` (Python's `ident`, an alias of
    /// `pid`), or [`Error::ProcessClosed`] after [`close`](Self::close).
    ///
    /// ```
    /// use procs_core::Process;
    ///
    /// let mut p = Process::new(|| {});
    /// assert_eq!(p.ident()?, None);
    /// p.start()?;
    /// assert_eq!(p.ident()?, p.pid());
    /// p.join()?;
    /// p.close()?;
    /// assert!(matches!(p.ident(), Err(procs_core::Error::ProcessClosed { .. })));
    /// # Ok::<(), procs_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::ProcessClosed`] after `close`.
    pub fn ident(&self) -> Result<Option<i32>> {
        self.check_open("ident")?;
        Ok(self.pid())
    }

    /// The exit code: `None` before start and while running; `0`, a positive
    /// code, or `-N` for death by signal N once the child ended. A closed
    /// process keeps the code its child ended with.
    pub fn exitcode(&self) -> Option<i32> {
        if let Some(closed) = self.closed {
            return closed.exitcode;
        }
        match &self.child {
            Some(c) if c.creator == getpid().as_raw() => c.poll().ok().flatten(),
            _ => None,
        }
    }

    /// The process's place in the tree (Python's `_identity`).
    pub(crate) fn identity(&self) -> &[u32] {
        &self.identity
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the process. The child sees the name it was started with.
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// Whether the process is a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// Makes the process a daemon or not; only before `start`.
    pub fn set_daemon(&mut self, daemon: bool) -> Result<()> {
        self.check_open("set daemon")?;
        if self.child.is_some() {
            return Err(Error::AlreadyStarted {
                name: self.name.clone(),
            });
        }
        self.daemon = daemon;
        Ok(())
    }

    /// The start method.
    pub fn start_method(&self) -> StartMethod {
        self.start_method
    }

    /// A descriptor that becomes readable when the child ends (a pidfd), to
    /// wait for several processes at once with `poll(2)` or an event loop.
    /// `None` before `start`, or where the kernel has no pidfd (Linux < 5.3).
    /// `None` after [`close`](Self::close) too: the pidfd is closed then.
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        self.child.as_ref().and_then(|c| c.sentinel())
    }

    /// Releases what the handle holds for its ended child (its pidfd, its
    /// record in this process), as Python's `close()`. From then on
    /// [`start`](Self::start), [`join`](Self::join), the signals and
    /// [`ident`](Self::ident) fail with [`Error::ProcessClosed`];
    /// [`pid`](Self::pid) and [`sentinel`](Self::sentinel) are `None`,
    /// [`is_alive`](Self::is_alive) is `false`, and [`name`](Self::name),
    /// [`daemon`](Self::daemon) and [`exitcode`](Self::exitcode) still
    /// answer. Closing again does nothing, as in Python, and so does closing
    /// a process that was never started (except that it cannot be started
    /// any more).
    ///
    /// ```
    /// use procs_core::{Error, Process};
    ///
    /// let mut p = Process::new(|| {});
    /// p.start()?;
    /// p.join()?;
    /// p.close()?;
    /// assert_eq!(p.exitcode(), Some(0));
    /// assert!(matches!(p.join(), Err(Error::ProcessClosed { op: "join", .. })));
    /// # Ok::<(), procs_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::StillRunning`] if the child has not ended (it is left
    /// alone, and the handle stays open): join or terminate it first.
    /// [`Error::NotAChild`] if another process started it.
    pub fn close(&mut self) -> Result<()> {
        if self.closed.is_some() {
            return Ok(());
        }
        let exitcode = match &self.child {
            None => None,
            Some(_) => {
                let child = self.own_child("close")?;
                match child.poll()? {
                    Some(code) => Some(code),
                    None => {
                        return Err(Error::StillRunning {
                            name: self.name.clone(),
                            pid: child.pid,
                        });
                    }
                }
            }
        };
        if let Some(child) = self.child.take() {
            // Reaped (poll said so), so the registry lets go of its
            // reference; the pidfd closes with the last one, ours.
            registry::state().forget_reaped(&child);
            drop(child);
        }
        self.target = None;
        self.plain = None;
        self.closed = Some(Closed { exitcode });
        Ok(())
    }
}

impl Drop for Process {
    /// A handle dropped after its child was reaped takes the child's record
    /// (and its pidfd) with it; a child still running stays recorded, to be
    /// joined or terminated when this process ends.
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            registry::state().forget_reaped(child);
        }
    }
}

impl fmt::Display for Process {
    /// Python's representation: `<Process(Process-1, started daemon)>`,
    /// `<Process(Process-1, stopped[SIGTERM])>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match (&self.child, self.exitcode()) {
            _ if self.closed.is_some() => "closed".to_owned(),
            (None, _) => "initial".to_owned(),
            (Some(_), None) => "started".to_owned(),
            (Some(_), Some(0)) => "stopped".to_owned(),
            (Some(_), Some(code)) if code < 0 => {
                format!("stopped[{}]", crate::signal_name(-code))
            }
            (Some(_), Some(code)) => format!("stopped[{code}]"),
        };
        let daemon = if self.daemon { " daemon" } else { "" };
        write!(f, "<{}({}, {status}{daemon})>", self.kind, self.name)
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("pid", &self.pid())
            .field("exitcode", &self.exitcode())
            .field("closed", &self.closed.is_some())
            .finish()
    }
}
