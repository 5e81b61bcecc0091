//! Which processes hold an end of a channel.
//!
//! ```text
//! offset   0  count of used slots
//! offset   4  overflow: more holders than slots (never report them gone)
//! offset   8  pids[SLOTS]     (0: free slot)
//! offset  72  starts[SLOTS]   (start time in clock ticks since boot, 0: unknown)
//! ```
//!
//! A process is a holder from when it creates the end, or from when a child
//! it starts takes the end with its target (the parent's copy of the target
//! is dropped right after the fork, under `procs_core::handing_over_to`, and
//! that drop names the child a holder), until its last handle drops or it
//! dies. A holder that died (SIGKILL included) is found by its pid and start
//! time and removed by whoever checks. Copies of a handle that a fork makes
//! in unrelated children hold nothing: only a hand-over does.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// How many holders an end can name; more are counted as "overflow", and an
/// end with overflow is never reported gone.
pub const SLOTS: usize = 16;

/// The holders of one end.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Owners {
    count: AtomicU32,
    overflow: AtomicU32,
    pids: [AtomicU32; SLOTS],
    starts: [AtomicU64; SLOTS],
}

impl Owners {
    /// No holder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names `pid` (started at `start`) a holder.
    pub fn add(&self, pid: i32, start: u64) {
        let pid = pid as u32;
        if self.pids.iter().any(|p| p.load(Ordering::Acquire) == pid) {
            return;
        }
        for (i, slot) in self.pids.iter().enumerate() {
            if slot
                .compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.starts[i].store(start, Ordering::Release);
                self.count.fetch_add(1, Ordering::AcqRel);
                return;
            }
        }
        self.overflow.store(1, Ordering::Release);
    }

    /// Removes `pid` from the holders.
    pub fn remove(&self, pid: i32) {
        for (i, slot) in self.pids.iter().enumerate() {
            if slot.load(Ordering::Acquire) == pid as u32 {
                self.clear(i, pid as u32);
            }
        }
    }

    fn clear(&self, i: usize, pid: u32) {
        let start = self.starts[i].load(Ordering::Acquire);
        if self.pids[i]
            .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            // Only if the slot was not claimed again meanwhile: a new
            // holder's start time must not be wiped.
            let _ = self.starts[i].compare_exchange(start, 0, Ordering::AcqRel, Ordering::Relaxed);
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Whether no process holds the end, without checking that the holders
    /// live: true once every holder closed it.
    pub fn closed(&self) -> bool {
        self.count.load(Ordering::Acquire) == 0 && self.overflow.load(Ordering::Acquire) == 0
    }

    /// Whether some holder lives; the dead ones found are removed.
    pub fn any_alive(&self, alive: impl Fn(i32, u64) -> bool) -> bool {
        if self.overflow.load(Ordering::Acquire) != 0 {
            return true;
        }
        let mut found = false;
        for (i, slot) in self.pids.iter().enumerate() {
            let pid = slot.load(Ordering::Acquire);
            if pid == 0 {
                continue;
            }
            if alive(pid as i32, self.starts[i].load(Ordering::Acquire)) {
                found = true;
            } else {
                self.clear(i, pid);
            }
        }
        found
    }

    /// Whether some holder other than `me` lives; the dead ones found are
    /// removed.
    pub fn any_alive_except(&self, me: i32, alive: impl Fn(i32, u64) -> bool) -> bool {
        if self.overflow.load(Ordering::Acquire) != 0 {
            return true;
        }
        let mut found = false;
        for (i, slot) in self.pids.iter().enumerate() {
            let pid = slot.load(Ordering::Acquire);
            if pid == 0 || pid == me as u32 {
                continue;
            }
            if alive(pid as i32, self.starts[i].load(Ordering::Acquire)) {
                found = true;
            } else {
                self.clear(i, pid);
            }
        }
        found
    }

    /// How many holders are named (not counting overflow).
    pub fn count(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }

    /// Whether `pid` is a holder.
    pub fn holds(&self, pid: i32) -> bool {
        self.pids
            .iter()
            .any(|p| p.load(Ordering::Acquire) == pid as u32)
    }
}
