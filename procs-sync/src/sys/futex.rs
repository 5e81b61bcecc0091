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
    let Some(abs) = absolute(deadline) else {
        return false;
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

/// The most words one `futex_waitv` call sleeps on (the kernel's limit).
pub(crate) const WAITV_MAX: usize = 128;

/// How long a wait on more words than one call takes (or on a kernel
/// without `futex_waitv`, before 5.16) sleeps before the caller looks
/// again: it sleeps on the first words only.
const WAIT_ANY_SLICE: Duration = Duration::from_millis(1);

/// The kernel's `struct futex_waitv`.
#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// A 32-bit futex word, shared between processes (no `FUTEX2_PRIVATE`).
const FUTEX2_SIZE_U32: u32 = 0x02;

/// Sleeps while every `*word == expected` of `words`, until one is woken
/// or `deadline`. Returns `false` if the deadline passed, `true` otherwise
/// (as [`wait`], callers re-check). Up to [`WAITV_MAX`] words sleep in one
/// `futex_waitv` call; with more, or on a kernel without it, the first
/// words are slept on a millisecond at a time.
pub(crate) fn wait_any(words: &[(&AtomicU32, u32)], deadline: Option<Instant>) -> bool {
    let Some(&(first, first_expected)) = words.first() else {
        // Nothing can wake an empty set: sleep until the deadline.
        if let Some(d) = deadline {
            std::thread::sleep(d.saturating_duration_since(Instant::now()));
        }
        return deadline.is_none();
    };
    let Some(abs) = absolute(deadline) else {
        return false;
    };
    if words.len() <= WAITV_MAX {
        let waiters: Vec<FutexWaitv> = words
            .iter()
            .map(|&(w, expected)| FutexWaitv {
                val: u64::from(expected),
                uaddr: w.as_ptr() as u64,
                flags: FUTEX2_SIZE_U32,
                reserved: 0,
            })
            .collect();
        let ts_ptr = abs
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `waiters` holds `words.len()` (at most WAITV_MAX)
        // initialized entries, each the address of a valid, aligned u32 that
        // outlives the call; the timeout is null or a timespec that outlives
        // it, absolute on CLOCK_MONOTONIC as the last argument says.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex_waitv,
                waiters.as_ptr(),
                waiters.len() as libc::c_uint,
                0 as libc::c_uint,
                ts_ptr,
                libc::CLOCK_MONOTONIC,
            )
        };
        if r >= 0 {
            return true;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ETIMEDOUT) => return false,
            // A word had changed, or a signal: the caller re-checks.
            Some(libc::EAGAIN | libc::EINTR) => return true,
            // ENOSYS before Linux 5.16, EPERM under a seccomp filter that
            // does not know the call: sleep on one word at a time.
            _ => {}
        }
    }
    let slice = Instant::now() + WAIT_ANY_SLICE;
    wait(
        first,
        first_expected,
        Some(deadline.map_or(slice, |d| d.min(slice))),
    );
    deadline.is_none_or(|d| Instant::now() < d)
}

/// Wakes up to `n` processes or threads sleeping on `word`; returns how many.
pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE reads no memory.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    r.max(0) as usize
}

/// `deadline` as an absolute time on CLOCK_MONOTONIC (so that a wait
/// interrupted by a signal and retried by its caller does not start its
/// timeout over): `Some(None)` for no deadline, `None` once it has passed.
fn absolute(deadline: Option<Instant>) -> Option<Option<libc::timespec>> {
    match deadline {
        None => Some(None),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| Some(monotonic_after(left)))
        }
    }
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
