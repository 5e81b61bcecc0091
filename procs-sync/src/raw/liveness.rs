//! Whether a process is alive, safe against pid reuse: a process is named
//! by its pid and its start time (clock ticks since boot, from
//! `/proc/<pid>/stat`), which together never repeat on a running machine.

/// The start time of `pid` in clock ticks since boot; `None` if there is no
/// such process or it is a zombie (it has ended).
pub fn start_ticks(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    match crate::sys::thread::task_stat(pid as u32)? {
        (false, start) => start,
        (true, _) => None,
    }
}

/// Whether the process `pid` that started at `start` (from
/// [`start_ticks`]) is still running. A start of 0 means "not known": then
/// only the pid is checked.
pub fn is_alive(pid: i32, start: u64) -> bool {
    match start_ticks(pid) {
        None => false,
        Some(now) => start == 0 || now == start,
    }
}

/// The calling process's start time, read once per process.
pub fn own_start_ticks() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    // (pid << 32 | valid) and the ticks: refreshed in a forked child, whose
    // pid differs.
    static CACHE_PID: AtomicU64 = AtomicU64::new(0);
    static CACHE_START: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    if CACHE_PID.load(Ordering::Acquire) == u64::from(pid) {
        return CACHE_START.load(Ordering::Relaxed);
    }
    let start = start_ticks(pid as i32).unwrap_or(0);
    CACHE_START.store(start, Ordering::Relaxed);
    CACHE_PID.store(u64::from(pid), Ordering::Release);
    start
}
