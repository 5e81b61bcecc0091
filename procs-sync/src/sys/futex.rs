//! The futex, shared between processes: no `FUTEX_PRIVATE_FLAG`, so the
//! kernel keys a waiter by the physical page, and a process waiting on a word
//! of a shared mapping is woken by a process that maps the same page
//! anywhere in its address space.

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

/// Sleeps while `*word == expected`, until woken or `deadline`. Returns
/// `false` if the deadline passed, `true` otherwise (woken, the value had
/// changed already, a signal, or a spurious wake: callers re-check).
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
    // An absolute deadline on CLOCK_MONOTONIC, so that a wait interrupted by
    // a signal and retried by the caller does not start its timeout over.
    let abs = match deadline {
        None => None,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            Some(monotonic_after(left))
        }
    };
    let ts_ptr = abs
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the call; the timeout
    // pointer is null or points at a timespec that outlives the call; the
    // second address is unused by FUTEX_WAIT_BITSET.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    !(r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT))
}

/// Wakes up to `n` processes or threads sleeping on `word`; returns how many.
pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE reads no memory.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    r.max(0) as usize
}

fn monotonic_after(d: Duration) -> libc::timespec {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; CLOCK_MONOTONIC exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let mut sec = now.tv_sec.saturating_add(d.as_secs() as libc::time_t);
    let mut nsec = now.tv_nsec + d.subsec_nanos() as libc::c_long;
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}
