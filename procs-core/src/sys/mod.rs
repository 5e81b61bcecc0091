//! Linux system calls that nix does not wrap, each wrapped once.
//!
//! Everything Linux-only in procs-core lives here (pidfd, prctl, waitid), so
//! that another platform is an addition beside this module, not a rewrite.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::wait::WaitStatus;

pub(crate) mod exec;

/// Opens a pidfd for `pid`: a descriptor that becomes readable when the
/// process exits. Returns `Ok(None)` where the kernel has no `pidfd_open`
/// (before Linux 5.3, or a seccomp filter that refuses it), so callers fall
/// back to polling.
///
/// The caller must make sure `pid` cannot be reused while this runs: it is a
/// child that has not been reaped.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EPERM) => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

/// Sends `sig` to the process `pidfd` names (never to another that took
/// its pid since).
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal takes a descriptor, a signal number, a null
    // siginfo (the kernel fills one as kill does) and flags 0.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `fd` is readable or `timeout` elapses (`None`: forever).
/// Returns whether it became readable. Retries on EINTR with the time left.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms: libc::c_int = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so that a wait never ends before its deadline.
                let ms = left.as_nanos().div_ceil(1_000_000);
                ms.min(libc::c_int::MAX as u128) as libc::c_int
            }
        };
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd for the duration of the call, and
        // the count passed is 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            return Ok(true);
        }
        if n == 0 {
            if deadline.is_none_or(|d| Instant::now() >= d) {
                return Ok(false);
            }
            continue;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Python's sign convention for an exit status: the code for a normal exit,
/// `-N` for death by signal N. `None` for statuses that are not an end.
pub(crate) fn exitcode_of(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(-(sig as i32)),
        _ => None,
    }
}

/// The same convention for `std::process::ExitStatus`.
pub(crate) fn exitcode_of_std(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => -sig,
        // Neither exited nor signalled cannot come from a wait for an end.
        (None, None) => status.into_raw(),
    }
}

/// The name of a signal number, for messages: `SIGTERM` for 15.
pub fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_owned(),
        Err(_) => format!("signal {sig}"),
    }
}

/// Asks the kernel to send SIGKILL to the calling process when its parent
/// thread dies, then checks that the parent did not die before the request
/// took effect (in which case this process is already orphaned and exits).
///
/// Async-signal-safe: called in a forked child before its entry.
pub(crate) fn die_with_parent(expected_parent: i32) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes an integer signal; no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() };
    if rc != 0 || ppid != expected_parent {
        // SAFETY: _exit ends the process at once, without running anything
        // of the parent's that was copied into this child.
        unsafe { libc::_exit(1) };
    }
}

/// Points standard input at /dev/null, as Python does in a new process so
/// that children do not compete with their parent for a terminal's input.
///
/// Async-signal-safe (open, dup2, close): called in a forked child.
pub(crate) fn stdin_from_devnull() {
    // SAFETY: the path is a NUL-terminated literal; open returns a new
    // descriptor or -1.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd >= 0 {
        // SAFETY: both descriptors are valid; dup2 onto 0 replaces stdin
        // (and clears close-on-exec on the copy), then the original is closed.
        unsafe {
            libc::dup2(fd, 0);
            libc::close(fd);
        }
    }
}

/// Ends the calling process at once with `code`, running no exit handler
/// (the ones copied from the parent are not ours to run).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// Whether the calling thread is the process's main thread. A parent-death
/// signal fires when the thread that forked ends, so only children forked
/// from a thread that lives as long as the process can rely on it.
pub(crate) fn on_main_thread() -> bool {
    nix::unistd::gettid() == nix::unistd::getpid()
}

/// Blocks until the child `pid` has ended, without reaping it (the status
/// stays for a later `waitpid`, so the pid cannot be reused meanwhile).
pub(crate) fn wait_exited_no_reap(pid: i32) -> io::Result<()> {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    loop {
        match waitid(
            Id::Pid(nix::unistd::Pid::from_raw(pid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        ) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from_raw_os_error(e as i32)),
        }
    }
}

/// The number of CPUs online in the system (Python's `os.cpu_count()`).
pub(crate) fn cpus_online() -> Option<usize> {
    // SAFETY: sysconf takes an integer name and returns a value or -1.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (n > 0).then_some(n as usize)
}
