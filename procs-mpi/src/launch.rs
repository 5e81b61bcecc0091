//! Starting ranks: [`run`] forks them from inside a program, [`init`]
//! joins the job a launcher (`procsrun`) started, or makes a world of one.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::comm::World;
use crate::engine::Engine;
use crate::error::{Error, RankEnd, Result};
use crate::job::Job;

/// The environment variable that carries the job segment's descriptor
/// from the launcher to its ranks.
pub const ENV_FD: &str = "PROCS_MPI_FD";
/// The environment variable that carries a rank's number.
pub const ENV_RANK: &str = "PROCS_RANK";
/// The environment variable that carries the job's size.
pub const ENV_SIZE: &str = "PROCS_SIZE";
/// Set to `0` to turn deadlock detection off.
pub const ENV_DEADLOCK: &str = "PROCS_MPI_DEADLOCK_DETECTION";
/// Set to `0` or `1` to force large messages through the ring (two
/// copies) or straight out of their sender (one copy) instead of the
/// measured choice.
pub const ENV_SINGLE_COPY: &str = "PROCS_MPI_SINGLE_COPY";

fn env_flag(name: &str) -> Option<bool> {
    match std::env::var(name).ok()?.trim() {
        "0" | "false" | "off" | "no" => Some(false),
        "1" | "true" | "on" | "yes" => Some(true),
        _ => None,
    }
}

/// How a job runs: deadlock detection, and the large-message path.
///
/// ```
/// use procs_mpi::{Communicator, Config};
///
/// let ranks = Config::new().deadlock_detection(false).run(2, |world| world.rank())?;
/// assert_eq!(ranks, [0, 1]);
/// # Ok::<(), procs_mpi::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    detect: bool,
    single_copy: Option<bool>,
    backend: Option<Backend>,
    start_method: procs_core::StartMethod,
}

/// The transport under a job's communicators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// This crate's shared memory: ranks on one machine, started by
    /// [`run`] or `procsrun`, with deadlock detection and dead-rank
    /// reports.
    SharedMemory,
    /// A real MPI library (the `openmpi` feature), for jobs that `mpirun`
    /// starts on one machine or many. A rank that dies ends the job, as
    /// MPI does.
    Mpi,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// The defaults, with the environment's overrides
    /// ([`ENV_DEADLOCK`], [`ENV_SINGLE_COPY`]).
    pub fn new() -> Config {
        Config {
            detect: env_flag(ENV_DEADLOCK).unwrap_or(true),
            single_copy: env_flag(ENV_SINGLE_COPY),
            backend: None,
            start_method: procs_core::get_start_method(),
        }
    }

    /// The backend [`init_with`] takes: `None` (the default) picks it from
    /// how the program was started: under `mpirun` (with the `openmpi`
    /// feature), MPI; under `procsrun` or alone, shared memory.
    pub fn backend(mut self, backend: Option<Backend>) -> Config {
        self.backend = backend;
        self
    }

    /// The backend [`init_with`] would take here.
    pub fn chosen_backend(&self) -> Backend {
        if let Some(b) = self.backend {
            return b;
        }
        #[cfg(feature = "openmpi")]
        if std::env::var_os(ENV_FD).is_none() && crate::openmpi::launched_by_mpi() {
            return Backend::Mpi;
        }
        Backend::SharedMemory
    }

    /// Whether a deadlock of every live rank is reported (on by default):
    /// each blocked call then returns [`Error::Deadlock`] within 100 ms
    /// instead of waiting forever.
    pub fn deadlock_detection(mut self, on: bool) -> Config {
        self.detect = on;
        self
    }

    /// `Some(true)`: large messages are copied straight out of the sender
    /// (where the kernel allows it); `Some(false)`: through the ring, in
    /// pieces; `None` (the default): whichever measured faster on this
    /// machine.
    pub fn single_copy(mut self, single: Option<bool>) -> Config {
        self.single_copy = single;
        self
    }

    pub(crate) fn single_copy_here(&self) -> bool {
        self.single_copy
            .unwrap_or_else(crate::measure::single_copy_is_faster)
    }

    /// How [`run_fn`](Config::run_fn) starts its ranks: forked (the
    /// default, or the program's [`procs_core::set_start_method`]), or
    /// under [`StartMethod::Spawn`](procs_core::StartMethod::Spawn) or
    /// [`Forkserver`](procs_core::StartMethod::Forkserver), fresh
    /// executions of the program (which calls `procs_core::init()` first in
    /// `main`), safe from a parent whose threads hold locks. [`run`] runs a
    /// closure, which only a fork carries: it forks whatever this says.
    pub fn start_method(mut self, method: procs_core::StartMethod) -> Config {
        self.start_method = method;
        self
    }

    /// [`run`] for a plain function, by this configuration's start method:
    /// each rank a fresh execution (or a fork of the forkserver) that joins
    /// the job's segment, runs `f`, and sends its value back. Dead ranks,
    /// deadlocks and aborts are reported as for forked ranks.
    ///
    /// ```no_run
    /// use procs_mpi::{Communicator, Config, Op, World};
    ///
    /// fn sum_of_ranks(world: &World) -> i64 {
    ///     world.allreduce(&(world.rank() as i64), Op::SUM).unwrap()
    /// }
    ///
    /// fn main() -> Result<(), procs_mpi::Error> {
    ///     procs_core::init();
    ///     let cfg = Config::new().start_method(procs_core::StartMethod::Spawn);
    ///     assert_eq!(cfg.run_fn(4, sum_of_ranks)?, [6, 6, 6, 6]);
    ///     Ok(())
    /// }
    /// ```
    pub fn run_fn<R>(&self, n: usize, f: fn(&World) -> R) -> Result<Vec<R>>
    where
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        first_failure(self.run_all_fn(n, f)?)
    }

    /// [`run_all`] for a plain function (see [`run_fn`](Config::run_fn)).
    pub fn run_all_fn<R>(&self, n: usize, f: fn(&World) -> R) -> Result<Vec<Result<R>>>
    where
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        launch_fn(self, n, f)
    }

    /// [`run`] with this configuration.
    pub fn run<F, R>(&self, n: usize, f: F) -> Result<Vec<R>>
    where
        F: Fn(&World) -> R + Send + Sync + 'static,
        R: Serialize + DeserializeOwned + Send,
    {
        first_failure(self.run_all(n, f)?)
    }

    /// [`run_all`] with this configuration.
    pub fn run_all<F, R>(&self, n: usize, f: F) -> Result<Vec<Result<R>>>
    where
        F: Fn(&World) -> R + Send + Sync + 'static,
        R: Serialize + DeserializeOwned + Send,
    {
        launch(self, n, f)
    }
}

/// Runs `f` on `n` ranks, each a process forked from this one, and returns
/// what each returned, in rank order.
///
/// A rank that panics, exits without returning or is killed makes this an
/// [`Error::RankFailed`] naming the first such rank and how it ended; the
/// other ranks' calls that wait on it return [`Error::RankDied`], so none
/// of them hangs. A rank that calls `abort` stops every rank.
///
/// ```
/// use procs_mpi::{Communicator, CommunicatorExt};
///
/// let got = procs_mpi::run(2, |world| {
///     if world.rank() == 0 {
///         world.send(&"hello", 1, 0).unwrap();
///         String::new()
///     } else {
///         world.recv::<String>(0, 0).unwrap()
///     }
/// })?;
/// assert_eq!(got[1], "hello");
/// # Ok::<(), procs_mpi::Error>(())
/// ```
pub fn run<F, R>(n: usize, f: F) -> Result<Vec<R>>
where
    F: Fn(&World) -> R + Send + Sync + 'static,
    R: Serialize + DeserializeOwned + Send,
{
    Config::new().run(n, f)
}

/// As [`run`], with each rank's own outcome: its value, or how it failed
/// ([`Error::RankFailed`], or [`Error::Aborted`]). The outer error is for a
/// job that could not start.
pub fn run_all<F, R>(n: usize, f: F) -> Result<Vec<Result<R>>>
where
    F: Fn(&World) -> R + Send + Sync + 'static,
    R: Serialize + DeserializeOwned + Send,
{
    Config::new().run_all(n, f)
}

/// Runs `f` as a job's ranks however the program was started: under a
/// launcher (`procsrun`), on this rank's world, and the vector holds this
/// rank's value alone; started alone, on `n` ranks forked as [`run`] forks
/// them. The one `main` of a program that runs both ways:
///
/// ```
/// use procs_mpi::Communicator;
///
/// let ranks = procs_mpi::run_or_join(3, |world| world.rank())?;
/// // Started by cargo, not by procsrun: three ranks of its own.
/// assert_eq!(ranks, [0, 1, 2]);
/// # Ok::<(), procs_mpi::Error>(())
/// ```
pub fn run_or_join<F, R>(n: usize, f: F) -> Result<Vec<R>>
where
    F: Fn(&World) -> R + Send + Sync + 'static,
    R: Serialize + DeserializeOwned + Send,
{
    if std::env::var_os(ENV_FD).is_none() && Config::new().chosen_backend() != Backend::Mpi {
        return run(n, f);
    }
    let world = init()?;
    let value = f(&world);
    world.finalize()?;
    Ok(vec![value])
}

fn first_failure<R>(all: Vec<Result<R>>) -> Result<Vec<R>> {
    let mut out = Vec::with_capacity(all.len());
    for r in all {
        out.push(r?);
    }
    Ok(out)
}

/// Makes a panic of this rank's main thread known to the job at once (its
/// waiters fail with `RankDied`, how: panicked), before the default hook
/// prints it. Printing a panic and unwinding take the dynamic loader's
/// locks, which another thread of a multi-threaded parent may have held at
/// the fork: then the child hangs in them, alive. So the hook also sets a
/// two-second alarm, whose default action ends a process that did not end
/// by itself; the launcher still reports the panic and its message.
fn report_panics(job: Arc<Job>, rank: usize) {
    let main = std::thread::current().id();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == main {
            job.record_panic(rank, &procs_core::panic_message(info.payload()));
            // SAFETY: alarm(2) only arms this process's timer.
            unsafe { libc::alarm(2) };
        }
        previous(info);
    }));
}

/// Sends `SIGKILL` through a pidfd (never to a pid another process took).
fn kill(pidfd: &OwnedFd) {
    // SAFETY: pidfd_send_signal takes a descriptor we own, a signal
    // number, and a null siginfo; it touches no memory of ours.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}

fn launch<F, R>(cfg: &Config, n: usize, f: F) -> Result<Vec<Result<R>>>
where
    F: Fn(&World) -> R + Send + Sync + 'static,
    R: Serialize + DeserializeOwned + Send,
{
    let job = Arc::new(Job::create(n, cfg.detect)?);
    // Measured once here, inherited by every rank.
    let single = cfg.single_copy_here();
    let f = Arc::new(f);
    launch_ranks(job, n, |job, rank| {
        let (job2, f2) = (job.clone(), f.clone());
        // A closure: forked, whatever the program's default start method.
        let builder = procs_core::Process::builder()
            .start_method(procs_core::StartMethod::Fork)
            .name(format!("rank-{rank}"));
        procs_core::spawn_with(builder, move || {
            report_panics(job2.clone(), rank);
            let world = World::new(Engine::new(job2, rank, single));
            let value = f2(&world);
            drop(world);
            value
        })
        .map_err(|e| e.to_string())
    })
}

/// What a rank of the spawn or forkserver method gets: the job's segment,
/// its rank, the single-copy choice, and its function (as its distance
/// from procs-core's anchor).
#[derive(Serialize, serde::Deserialize)]
struct RankArgs {
    job: procs_sync::Segment,
    rank: usize,
    single: bool,
    f: u64,
}

/// A rank of the spawn or forkserver method: joins the job, runs `f`.
fn spawned_rank<R: Serialize + DeserializeOwned>(a: RankArgs) -> R {
    let job = match Job::attach(a.job) {
        Ok(j) => Arc::new(j),
        Err(e) => panic!("rank {}: the job's segment: {e}", a.rank),
    };
    report_panics(job.clone(), a.rank);
    // SAFETY: the parent took this offset from an `fn(&World) -> R` of the
    // program itself (checked with `code_of_program`), and this rank is a
    // fresh execution of the same program file (checked by procs-core), so
    // the same function is at the same distance from the anchor.
    let f = unsafe { std::mem::transmute::<usize, fn(&World) -> R>(procs_core::code_at(a.f)) };
    let world = World::new(Engine::new(job, a.rank, a.single));
    let value = f(&world);
    drop(world);
    value
}

fn launch_fn<R>(cfg: &Config, n: usize, f: fn(&World) -> R) -> Result<Vec<Result<R>>>
where
    R: Serialize + DeserializeOwned + Send + 'static,
{
    let method = cfg.start_method;
    if method == procs_core::StartMethod::Fork {
        return launch(cfg, n, f);
    }
    if !procs_core::code_of_program(f as usize) {
        return Err(Error::Job(
            "a job of the spawn or forkserver method runs a function of the program itself".into(),
        ));
    }
    let job = Arc::new(Job::create(n, cfg.detect)?);
    let single = cfg.single_copy_here();
    let offset = procs_core::code_offset(f as usize);
    launch_ranks(job, n, |job, rank| {
        // The rank maps the same segment, through a duplicate of its
        // descriptor that travels with the argument.
        let fd = job
            .segment()
            .fd()
            .try_clone_to_owned()
            .map_err(|e| format!("dup the job's segment: {e}"))?;
        let seg =
            procs_sync::Segment::from_fd(fd).map_err(|e| format!("the job's segment: {e}"))?;
        let args = RankArgs {
            job: seg,
            rank,
            single,
            f: offset,
        };
        procs_core::Process::builder()
            .start_method(method)
            .name(format!("rank-{rank}"))
            .spawn_fn(spawned_rank::<R>, args)
            .map_err(|e| e.to_string())
    })
}

/// Starts `n` ranks of `job` with `start` and gathers their outcomes.
fn launch_ranks<R>(
    job: Arc<Job>,
    n: usize,
    start: impl Fn(&Arc<Job>, usize) -> std::result::Result<procs_core::JoinHandle<R>, String>,
) -> Result<Vec<Result<R>>>
where
    R: Serialize + DeserializeOwned + Send,
{
    let mut handles = Vec::with_capacity(n);
    let mut pidfds = Vec::with_capacity(n);
    for rank in 0..n {
        let started = start(&job, rank);
        match started {
            Ok(h) => {
                pidfds.push(
                    h.process()
                        .sentinel()
                        .and_then(|fd| fd.try_clone_to_owned().ok()),
                );
                handles.push(h);
            }
            Err(e) => {
                for fd in pidfds.iter().flatten() {
                    kill(fd);
                }
                for h in handles {
                    let _ = h.join();
                }
                return Err(Error::Job(format!("starting rank {rank}: {e}")));
            }
        }
    }
    let aborting = AtomicBool::new(false);
    let outcomes: Vec<Result<R>> = std::thread::scope(|s| {
        let threads: Vec<_> = handles
            .into_iter()
            .enumerate()
            .map(|(rank, h)| {
                let (job, pidfds, aborting) = (&job, &pidfds, &aborting);
                s.spawn(move || {
                    let r = h.join();
                    let code = match &r {
                        Ok(_) => 0,
                        Err(procs_core::Error::Panicked { .. }) => 1,
                        Err(procs_core::Error::ChildDied { exitcode, .. }) => *exitcode,
                        Err(_) => 1,
                    };
                    job.record_end(rank, code);
                    if job.aborted().is_some() && !aborting.swap(true, Ordering::AcqRel) {
                        for fd in pidfds.iter().flatten() {
                            kill(fd);
                        }
                    }
                    (r, code)
                })
            })
            .collect();
        threads
            .into_iter()
            .enumerate()
            .map(|(rank, t)| {
                let (r, code) = t.join().unwrap_or((
                    Err(procs_core::Error::ChildDied {
                        pid: 0,
                        exitcode: 1,
                    }),
                    1,
                ));
                let rank = rank as i32;
                if let Some((by, code)) = job.aborted()
                    && (r.is_err() || by == rank as usize)
                {
                    return Err(Error::Aborted {
                        rank: by as i32,
                        code,
                    });
                }
                let panic = job.panicked(rank as usize);
                r.map_err(|e| Error::RankFailed {
                    rank,
                    reason: match e {
                        procs_core::Error::Panicked { message, .. } => {
                            format!("panicked: {message}")
                        }
                        // Ended by its alarm while it unwound (see report_panics).
                        _ if panic.is_some() => format!("panicked: {}", panic.unwrap_or_default()),
                        procs_core::Error::ChildDied { .. } => RankEnd::from_code(code).to_string(),
                        other => other.to_string(),
                    },
                })
            })
            .collect()
    });
    Ok(outcomes)
}

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// The world communicator of this process: inside `procsrun`, the job's
/// ranks; started alone, a world of one rank (an MPI singleton). Called
/// once per process.
///
/// ```
/// use procs_mpi::Communicator;
///
/// let world = procs_mpi::init()?;
/// // Run by `cargo test`, not by procsrun: a world of one.
/// assert_eq!((world.rank(), world.size()), (0, 1));
/// # Ok::<(), procs_mpi::Error>(())
/// ```
#[doc(alias = "Init")]
pub fn init() -> Result<World> {
    init_with(&Config::new())
}

/// [`init`] with a configuration (its deadlock setting applies to a
/// singleton; a launcher's job has its own).
pub fn init_with(cfg: &Config) -> Result<World> {
    if INITIALIZED.swap(true, Ordering::AcqRel) {
        return Err(Error::Job(
            "procs_mpi::init was already called in this process".into(),
        ));
    }
    if cfg.chosen_backend() == Backend::Mpi {
        return init_mpi();
    }
    let Ok(fd) = std::env::var(ENV_FD) else {
        let job = Arc::new(Job::create(1, cfg.detect)?);
        return Ok(World::new(Engine::new(job, 0, false)));
    };
    let bad = |what: String| Error::Job(format!("the launcher's environment: {what}"));
    let fd: i32 = fd
        .trim()
        .parse()
        .map_err(|_| bad(format!("{ENV_FD}={fd:?} is not a descriptor")))?;
    let number = |name: &str| -> Result<usize> {
        let v = std::env::var(name).map_err(|_| bad(format!("{name} is not set")))?;
        v.trim()
            .parse()
            .map_err(|_| bad(format!("{name}={v:?} is not a number")))
    };
    let (rank, size) = (number(ENV_RANK)?, number(ENV_SIZE)?);
    // SAFETY: F_GETFD only reads the descriptor's flags.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(bad(format!("{ENV_FD}={fd} is not an open descriptor")));
    }
    // SAFETY: the descriptor is open (checked above) and was handed to this
    // process for it alone; INITIALIZED makes sure it is taken once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let seg =
        procs_sync::Segment::from_fd(owned).map_err(|e| bad(format!("the job segment: {e}")))?;
    let job = Job::attach(seg)?;
    if job.size() != size || rank >= size {
        return Err(bad(format!(
            "rank {rank} of {size} does not fit a job of {}",
            job.size()
        )));
    }
    let single = cfg.single_copy_here();
    Ok(World::new(Engine::new(Arc::new(job), rank, single)))
}

#[cfg(feature = "openmpi")]
fn init_mpi() -> Result<World> {
    let session = crate::openmpi::Session::start()?;
    World::over_mpi(crate::openmpi::Mpi::world(session)?)
}

#[cfg(not(feature = "openmpi"))]
fn init_mpi() -> Result<World> {
    Err(Error::Unsupported(
        "the MPI backend needs procs-mpi's `openmpi` feature".into(),
    ))
}

/// Creates a job segment of `n` ranks for a launcher, whose descriptor it
/// hands to each rank in [`ENV_FD`].
#[doc(hidden)]
pub fn launcher_segment(n: usize, detect: bool) -> Result<LauncherJob> {
    Ok(LauncherJob {
        job: Job::create(n, detect)?,
    })
}

/// Whether large messages go by single copy on this machine (measured once
/// per process): a launcher measures once and hands the answer to its
/// ranks in [`ENV_SINGLE_COPY`], so that they neither measure all at once
/// nor disagree.
#[doc(hidden)]
pub fn single_copy_here() -> bool {
    Config::new().single_copy_here()
}

/// A launcher's view of its job.
#[doc(hidden)]
#[derive(Debug)]
pub struct LauncherJob {
    job: Job,
}

impl LauncherJob {
    /// The segment's descriptor.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.job.segment().fd()
    }

    /// Records that `rank` ended with `code` (exit code, or minus a signal).
    pub fn record_end(&self, rank: usize, code: i32) {
        self.job.record_end(rank, code);
    }

    /// The rank and code of an `abort`, if one was called.
    pub fn aborted(&self) -> Option<(usize, i32)> {
        self.job.aborted()
    }
}
