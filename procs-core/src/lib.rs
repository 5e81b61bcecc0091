//! Processes as Python's `multiprocessing` has them, in Rust.
//!
//! procs-core starts, watches and stops processes: [`Process`] runs a
//! closure (or a [`Target`] type of your own) in a forked child, with
//! Python's lifecycle and exit codes; [`spawn`] runs a closure and hands its
//! return value back; [`current_process`], [`parent_process`],
//! [`active_children`] and [`cpu_count`] answer what Python's module-level
//! functions answer. [`info`] reads what the kernel knows of any process
//! (psutil's ground), and [`subprocess`] runs other programs.
//!
//! ```
//! use procs_core::Process;
//!
//! let mut workers: Vec<Process> = (0..3)
//!     .map(|i| Process::new(move || println!("worker {i}")))
//!     .collect();
//! for w in &mut workers {
//!     w.start()?;
//! }
//! for w in &mut workers {
//!     assert_eq!(w.join()?, 0);
//! }
//!
//! let total = procs_core::spawn(|| (1..=100u64).sum::<u64>())?.join()?;
//! assert_eq!(total, 5050);
//! # Ok::<(), procs_core::Error>(())
//! ```
//!
//! # From Python's names
//!
//! | Python | procs-core |
//! |---|---|
//! | `Process(target=f)`, `p.start()`, `p.join()`, `p.join(t)` | [`Process::new(f)`](Process::new), [`start`](Process::start), [`join`](Process::join), [`join_timeout`](Process::join_timeout) |
//! | `p.is_alive()`, `p.terminate()`, `p.kill()`, `p.close()` | [`is_alive`](Process::is_alive), [`terminate`](Process::terminate), [`kill`](Process::kill), [`close`](Process::close) |
//! | `p.pid`, `p.ident`, `p.exitcode`, `p.name`, `p.daemon`, `p.sentinel` | [`pid`](Process::pid), [`ident`](Process::ident), [`exitcode`](Process::exitcode), [`name`](Process::name), [`daemon`](Process::daemon), [`sentinel`](Process::sentinel) |
//! | `Process(name=.., daemon=..)` | [`Process::builder()`](Process::builder)`.name(..).daemon(..)` |
//! | a `Process` subclass with `run` | a type implementing [`Target`] |
//! | `current_process()`, `parent_process()`, `active_children()`, `cpu_count()` | [`current_process`], [`parent_process`], [`active_children`], [`cpu_count`] |
//! | `psutil.Process(pid)` | [`info::ProcessInfo`] |
//! | `subprocess.run`, `check_output`, `call`, `check_call`, `getoutput`, `getstatusoutput` | [`subprocess::run`], [`subprocess::check_output`], [`subprocess::call`], [`subprocess::check_call`], [`subprocess::getoutput`], [`subprocess::getstatusoutput`] |
//! | `subprocess.Popen(args, ...)`, `communicate`, `wait(timeout)` | [`subprocess::Popen`], [`communicate`](subprocess::Popen::communicate), [`wait_timeout`](subprocess::Popen::wait_timeout) |
//! | `subprocess.TimeoutExpired`, `CalledProcessError` | [`Error::TimeoutExpired`], [`Error::CalledProcessError`] |
//!
//! # Exit codes
//!
//! As Python reports them: `None` while running, `0` for a normal end, the
//! code given to `std::process::exit`, `1` for a panic, and `-N` when
//! killed by signal N (`-15` after [`Process::terminate`], `-9` after
//! [`Process::kill`]).
//!
//! # Daemons
//!
//! When a program ends normally (returns from `main` or calls
//! `std::process::exit`), its daemon children are terminated and its other
//! children joined, as Python does. When it is killed, even by SIGKILL, its
//! daemon children are killed too (a parent-death signal), which Python does
//! not manage. A daemon may not start children.
//!
//! # Fork safety
//!
//! The fork start method copies the calling process with only the calling
//! thread. Between the fork and the target, the child does only what is safe
//! there; the locks of standard output and standard error and the library's
//! own state are held by the forking thread across the fork, so the child
//! finds them free. What the target does is the target's business: locks
//! that other threads of the parent held at the fork stay locked in the child.

#![deny(unsafe_op_in_unsafe_fn)]

mod context;
mod current;
mod error;
mod forkserver;
pub mod handles;
mod handover;
pub mod info;
mod process;
mod registry;
mod respawn;
mod spawn;
pub mod subprocess;
mod sys;

pub use context::{
    Context, get_all_start_methods, get_context, get_start_method, set_start_method,
    start_method_is_set,
};
pub use current::{
    ActiveChild, CurrentProcess, ParentProcess, active_children, cpu_count, current_process,
    parent_process, process_cpu_count,
};
pub use error::{Error, Result};
#[doc(hidden)]
pub use handover::{handing_over_to, reaped_children};
pub use nix::sys::signal::Signal;
pub use process::{Process, ProcessBuilder, StartMethod, Target};
pub use respawn::init;
#[doc(hidden)]
pub use respawn::{code_at, code_of_program, code_offset};
pub use spawn::{JoinHandle, panic_message, spawn, spawn_with};
pub use sys::signal_name;
