//! Who holds a lock, and whether it is still alive.
//!
//! A lock word holds its owner's thread id (tid): unique on the machine (in
//! one pid namespace) while the thread lives, so it names a holder across
//! processes. The tid is cached per thread and the cache is cleared in the
//! child of a fork, whose one thread has a new tid.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

thread_local! {
    static TID: Cell<u32> = const { Cell::new(0) };
}

/// The calling thread's id, from a per-thread cache (no system call after
/// the first).
#[inline]
pub fn current_tid() -> u32 {
    let tid = TID.with(Cell::get);
    if tid != 0 {
        return tid;
    }
    fetch_tid()
}

/// The calling process's id, from a cache (no system call after the first
/// in this process).
#[inline]
pub fn current_pid() -> u32 {
    // Relaxed: the value is this process's own, written by this process.
    let pid = PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    fetch_pid()
}

static PID: AtomicU32 = AtomicU32::new(0);

#[cold]
fn fetch_pid() -> u32 {
    register_at_fork();
    let pid = std::process::id();
    PID.store(pid, Ordering::Relaxed);
    pid
}

/// Clears the cached tid and pid in the child of a fork, whose thread and
/// process have new ids.
extern "C" fn forget_tid_in_child() {
    // Async-signal-safe: a store into this thread's own TLS slot, and an
    // atomic store.
    TID.with(|t| t.set(0));
    PID.store(0, Ordering::Relaxed);
}

static AT_FORK_REGISTERED: AtomicBool = AtomicBool::new(false);

/// Registers [`forget_tid_in_child`] with `pthread_atfork`, once. Never
/// blocks: a `Once` here could be left "running" in the child of a fork made
/// by another thread mid-registration, and block that child for ever.
fn register_at_fork() {
    if !AT_FORK_REGISTERED.swap(true, Ordering::AcqRel) {
        // SAFETY: registers a plain function to run in the child after
        // fork(); no handler for prepare or parent.
        unsafe { libc::pthread_atfork(None, None, Some(forget_tid_in_child)) };
    }
}

/// Registers the handler before `main`, while the program has one thread,
/// so that no fork can come before it.
#[used]
#[unsafe(link_section = ".init_array")]
static REGISTER_AT_FORK: extern "C" fn() = {
    extern "C" fn at_load() {
        register_at_fork();
    }
    at_load
};

#[cold]
fn fetch_tid() -> u32 {
    // Normally done before main; in case the loader skipped it.
    register_at_fork();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    TID.with(|t| t.set(tid));
    tid
}

/// Now, in clock ticks since boot: the unit of a task's start time in
/// `/proc/<tid>/stat`.
pub fn boot_ticks_now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_BOOTTIME exists on
    // Linux >= 2.6.39, the clock of /proc's start times.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    let hz = ticks_per_second();
    ts.tv_sec as u64 * hz + ts.tv_nsec as u64 * hz / 1_000_000_000
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf takes an integer name and returns a value or -1.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as u64 } else { 100 }
}

/// What `/proc/<id>/stat` says of a task (a process, or a thread by its
/// tid): `None` if there is no such task; otherwise whether it has ended
/// (a zombie) and its start time in clock ticks since boot, `None` if the
/// line does not parse. The one reader of that file in this crate.
pub(crate) fn task_stat(id: u32) -> Option<(bool, Option<u64>)> {
    let stat = std::fs::read_to_string(format!("/proc/{id}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // anything: state is field 3, starttime field 22.
    let Some(close) = stat.rfind(')') else {
        return Some((false, None));
    };
    let mut fields = stat[close + 1..].split_whitespace();
    let state = fields.next().unwrap_or("R");
    let ended = matches!(state, "Z" | "X" | "x");
    Some((ended, fields.nth(18).and_then(|s| s.parse().ok())))
}

/// Whether the thread `tid`, seen holding a lock at `seen_at` (boot ticks),
/// is still that same thread and alive. It is dead if `/proc/<tid>` is gone
/// or a zombie; it is another thread (the tid was reused) if that task
/// started after `seen_at`. A line that does not parse counts as alive.
pub fn holder_alive(tid: u32, seen_at: u64) -> bool {
    match task_stat(tid) {
        None | Some((true, _)) => false,
        // One tick of slack: the two clocks are read at different moments.
        Some((false, start)) => !matches!(start, Some(start) if start > seen_at + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fork_handler_is_registered_before_main() {
        // The loader ran REGISTER_AT_FORK: no thread can have raced it.
        assert!(AT_FORK_REGISTERED.load(Ordering::Acquire));
    }

    #[test]
    fn a_forked_child_sees_its_own_tid() {
        let parent = current_tid();
        assert_eq!(current_pid(), std::process::id());
        // SAFETY: the child only calls gettid-backed code and _exit.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: gettid has no preconditions.
                let real = unsafe { libc::gettid() } as u32;
                let ok = current_tid() == real
                    && current_tid() != parent
                    && current_pid() == std::process::id();
                // SAFETY: ends the child at once.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            pid => {
                let mut status = 0;
                // SAFETY: waits for the child just forked.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
            }
        }
    }
}
