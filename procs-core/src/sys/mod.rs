//! Linux system calls that nix does not wrap, each wrapped once.
//!
//! Everything Linux-only in procs-core lives here (pidfd, prctl, waitid), so
//! that another platform is an addition beside this module, not a rewrite.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::wait::WaitStatus;

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
