//! What a process knows about itself, its parent and its children.

use nix::unistd::{getpid, getppid};

use crate::registry;
use crate::sys;

/// The calling process, as Python's `multiprocessing.current_process()`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CurrentProcess {
    /// `MainProcess` in the program's first process, the name it was
    /// started with in a child.
    pub name: String,
    /// The pid.
    pub pid: i32,
    /// Whether this process is a daemon.
    pub daemon: bool,
    /// Its place in the process tree: `[]` for the main process, `[2, 1]` for
    /// the first child of the main process's second child.
    pub identity: Vec<u32>,
}

/// The calling process: its name, pid and daemon flag.
///
/// ```
/// let me = procs_core::current_process();
/// assert_eq!(me.name, "MainProcess");
/// assert_eq!(me.pid, std::process::id() as i32);
/// ```
pub fn current_process() -> CurrentProcess {
    let st = registry::state();
    CurrentProcess {
        name: st.name().to_owned(),
        pid: getpid().as_raw(),
        daemon: st.daemon,
        identity: st.identity.clone(),
    }
}

/// The process that started this one, as Python's
/// `multiprocessing.parent_process()`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParentProcess {
    /// The parent's name.
    pub name: String,
    /// The parent's pid.
    pub pid: i32,
}

impl ParentProcess {
    /// Whether the parent is still alive. A process whose parent died is
    /// adopted by another, so this cannot be fooled by pid reuse.
    pub fn is_alive(&self) -> bool {
        getppid().as_raw() == self.pid
    }
}

/// The parent of the calling process if this library started it, `None` in
/// the main process.
pub fn parent_process() -> Option<ParentProcess> {
    let st = registry::state();
    st.parent.as_ref().map(|(pid, name)| ParentProcess {
        name: name.clone(),
        pid: *pid,
    })
}

/// A child of the calling process that is still running.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActiveChild {
    /// Its name.
    pub name: String,
    /// Its pid.
    pub pid: i32,
    /// Whether it is a daemon.
    pub daemon: bool,
}

/// The children of the calling process that are still running, as Python's
/// `multiprocessing.active_children()`. Children that ended are reaped
/// (they leave no zombie) and forgotten.
pub fn active_children() -> Vec<ActiveChild> {
    let mut st = registry::state();
    st.forget_finished();
    st.children
        .iter()
        .map(|c| ActiveChild {
            name: c.name.clone(),
            pid: c.pid,
            daemon: c.daemon,
        })
        .collect()
}

/// The number of CPUs in the system (Python's `multiprocessing.cpu_count()`),
/// at least 1. For the CPUs this process may use, see
/// [`process_cpu_count`].
pub fn cpu_count() -> usize {
    sys::cpus_online().unwrap_or_else(process_cpu_count)
}

/// The number of CPUs this process may run on, after affinity and cgroup
/// limits (Python 3.13's `os.process_cpu_count()`), at least 1.
pub fn process_cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
