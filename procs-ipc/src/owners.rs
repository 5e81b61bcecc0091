//! Which processes hold an end of a channel, and how many handles each.
//!
//! ```text
//! offset   0  slots in use
//! offset   4  handles held by processes that found no free slot (overflow)
//! offset   8  slots[SLOTS], 16 bytes each:
//!               word   pid << 32 | handles   (0: free)
//!               start  the pid's start time in clock ticks since boot
//!                      (0: not known yet, or the slot is changing hands)
//! ```
//!
//! A process holds the end from when it makes a handle (one handle more in
//! its slot), or from when a child it starts takes a handle with its target:
//! the parent's copy of the target is dropped right after the fork, under
//! `procs_core::handing_over_to`, and that drop counts the handle for the
//! child (procs-core lets the child run only once that drop is over, so the
//! child's own drops always come after it). Each drop counts one handle
//! less; the last one frees the slot. Counting handles here, in the shared
//! memory, rather than in each process, is what makes a fork exact: a child
//! holds what it was handed, not what its parent held.
//!
//! A holder that died (SIGKILL included) is found by its pid and start time
//! and its slot freed by whoever checks, so slots are reused without bound
//! on how many processes come and go. Only more than [`SLOTS`] processes
//! holding the end at the same time spill into the overflow count, which
//! their own drops take back; a process that dies while counted there is
//! never seen dead, and the end then stays open (the one case where a
//! reader waits instead of hearing `Disconnected`).
//!
//! Freeing a slot clears its start before its word (and a claimer writes
//! its start after its word), so a checker never pairs a new holder's pid
//! with an old holder's start and finds a live holder dead: a start of 0
//! is checked by the pid alone.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// How many processes an end names at once; more spill into an overflow
/// count (see the module's doc).
#[cfg(not(loom))]
pub const SLOTS: usize = 128;
/// Under loom, few slots: every one is a model's variable.
#[cfg(loom)]
pub const SLOTS: usize = 2;

const HANDLES: u64 = 0xffff_ffff;

#[inline]
fn pid_of(word: u64) -> u32 {
    (word >> 32) as u32
}

#[inline]
fn handles_of(word: u64) -> u64 {
    word & HANDLES
}

/// One holder: its pid and handle count in one word, its start time.
#[repr(C)]
#[derive(Debug, Default)]
struct Slot {
    word: AtomicU64,
    start: AtomicU64,
}

/// The holders of one end.
#[repr(C)]
#[derive(Debug)]
pub struct Owners {
    used: AtomicU32,
    overflow: AtomicU32,
    slots: [Slot; SLOTS],
}

impl Default for Owners {
    fn default() -> Self {
        Self::new()
    }
}

impl Owners {
    /// No holder.
    pub fn new() -> Self {
        Owners {
            used: AtomicU32::new(0),
            overflow: AtomicU32::new(0),
            slots: std::array::from_fn(|_| Slot::default()),
        }
    }

    /// Counts one more handle held by `pid` (started at `start`, 0 if not
    /// known). When every slot is taken, the dead holders found by `alive`
    /// are reclaimed first.
    pub fn add(&self, pid: i32, start: u64, alive: impl Fn(i32, u64) -> bool) {
        if self.add_to_slot(pid as u32, start) {
            return;
        }
        self.reclaim(alive);
        if !self.add_to_slot(pid as u32, start) {
            self.overflow.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// One more handle in `pid`'s slot, or a free slot claimed for it;
    /// false if every slot is taken.
    fn add_to_slot(&self, pid: u32, start: u64) -> bool {
        for slot in &self.slots {
            let mut word = slot.word.load(Ordering::Acquire);
            while pid_of(word) == pid && handles_of(word) > 0 {
                // A slot of a process that had this pid before is not ours.
                let s = slot.start.load(Ordering::Acquire);
                if s != 0 && start != 0 && s != start {
                    break;
                }
                match slot.word.compare_exchange_weak(
                    word,
                    word + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return true,
                    Err(now) => word = now,
                }
            }
        }
        for slot in &self.slots {
            if slot
                .word
                .compare_exchange(
                    0,
                    u64::from(pid) << 32 | 1,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                slot.start.store(start, Ordering::Release);
                self.used.fetch_add(1, Ordering::AcqRel);
                return true;
            }
        }
        false
    }

    /// Frees `slot` if its word is still `word`: its start first, so that
    /// nobody reads it beside the next holder's pid.
    fn free(&self, slot: &Slot, word: u64) -> bool {
        slot.start.store(0, Ordering::Release);
        // Had the word changed (the same holder made or dropped a handle
        // meanwhile), its start stays unknown: it is then checked by its pid
        // alone, which can only take it for alive, never for dead.
        let freed = slot
            .word
            .compare_exchange(word, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if freed {
            self.used.fetch_sub(1, Ordering::AcqRel);
        }
        freed
    }

    /// Counts one handle of `pid` less; the last one frees its slot. A
    /// process with no slot takes one back from the overflow.
    pub fn release(&self, pid: i32) {
        let pid = pid as u32;
        for slot in &self.slots {
            let mut word = slot.word.load(Ordering::Acquire);
            while pid_of(word) == pid && handles_of(word) > 0 {
                let done = if handles_of(word) == 1 {
                    self.free(slot, word)
                } else {
                    slot.word
                        .compare_exchange_weak(word, word - 1, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                };
                if done {
                    return;
                }
                word = slot.word.load(Ordering::Acquire);
            }
        }
        let _ = self
            .overflow
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Forgets every handle of `pid` (it closed the end).
    pub fn remove(&self, pid: i32) {
        let pid = pid as u32;
        for slot in &self.slots {
            loop {
                let word = slot.word.load(Ordering::Acquire);
                if pid_of(word) != pid || handles_of(word) == 0 || self.free(slot, word) {
                    break;
                }
            }
        }
    }

    /// Frees the slots of holders that `alive` finds dead; whether some
    /// holder other than `except` lives.
    fn scan(&self, except: Option<u32>, alive: impl Fn(i32, u64) -> bool) -> bool {
        let mut found = false;
        for slot in &self.slots {
            let word = slot.word.load(Ordering::Acquire);
            if handles_of(word) == 0 {
                continue;
            }
            let pid = pid_of(word);
            if Some(pid) == except {
                continue;
            }
            // Acquire after the word: a start read here is this holder's,
            // or 0 (then only the pid is checked).
            let start = slot.start.load(Ordering::Acquire);
            if alive(pid as i32, start) || !self.free(slot, word) {
                found = true;
            }
        }
        found
    }

    fn reclaim(&self, alive: impl Fn(i32, u64) -> bool) {
        self.scan(None, alive);
    }

    /// Whether no process holds the end, without checking that the holders
    /// live: true once every holder let go.
    #[inline]
    pub fn closed(&self) -> bool {
        self.used.load(Ordering::Acquire) == 0 && self.overflow.load(Ordering::Acquire) == 0
    }

    /// Whether some holder lives; the dead ones found are removed.
    pub fn any_alive(&self, alive: impl Fn(i32, u64) -> bool) -> bool {
        let found = self.scan(None, alive);
        found || self.overflow.load(Ordering::Acquire) != 0
    }

    /// Whether some holder other than `me` lives; the dead ones found are
    /// removed.
    pub fn any_alive_except(&self, me: i32, alive: impl Fn(i32, u64) -> bool) -> bool {
        let found = self.scan(Some(me as u32), alive);
        found || self.overflow.load(Ordering::Acquire) != 0
    }

    /// How many processes are named (not counting overflow).
    pub fn count(&self) -> u32 {
        self.used.load(Ordering::Acquire)
    }

    /// How many handles `pid` holds.
    pub fn handles(&self, pid: i32) -> u64 {
        self.slots
            .iter()
            .map(|s| s.word.load(Ordering::Acquire))
            .filter(|&w| pid_of(w) == pid as u32)
            .map(handles_of)
            .sum()
    }

    /// Whether `pid` holds a handle.
    pub fn holds(&self, pid: i32) -> bool {
        self.handles(pid) > 0
    }
}

#[cfg(not(loom))]
pub(crate) use watch::{DeathWatch, Holders};

/// The other side's holders as one side sees them (not under loom: it reads
/// `/proc`).
#[cfg(not(loom))]
mod watch {
    use super::Owners;
    use crate::ring::Peer;
    use procs_sync::raw::liveness;

    /// How often, in calls, a side that only checks whether its peer closed
    /// also looks at whether the peer's holders live.
    const LOOK_EVERY_CALLS: u32 = 4096;

    /// When one side last looked at whether the other side's holders live.
    ///
    /// Whether every holder let go is one load; whether they live reads
    /// `/proc`, too slow for every message. So a side looks when this process
    /// has reaped a child since it last looked ([`procs_core::reaped_children`]:
    /// a peer killed and reaped here is known dead at the next call), and once
    /// every [`LOOK_EVERY_CALLS`] calls otherwise (a peer that someone else
    /// reaps). Waiting sides look every `CHECK_EVERY` besides.
    #[derive(Debug, Default)]
    pub(crate) struct DeathWatch {
        reaped: std::sync::atomic::AtomicU64,
        calls: std::sync::atomic::AtomicU32,
    }

    impl DeathWatch {
        /// Whether it is time to look.
        #[inline]
        fn due(&self) -> bool {
            use std::sync::atomic::Ordering::Relaxed;
            let reaped = procs_core::reaped_children();
            // Plain loads and stores, not read-modify-writes: threads of one
            // process that race here only look a little more or less often.
            let calls = self.calls.load(Relaxed) + 1;
            if reaped == self.reaped.load(Relaxed) && calls < LOOK_EVERY_CALLS {
                self.calls.store(calls, Relaxed);
                return false;
            }
            self.reaped.store(reaped, Relaxed);
            self.calls.store(0, Relaxed);
            true
        }
    }

    /// The other side of a channel as one side sees it: its holders, and when
    /// this side last looked at their lives.
    pub(crate) struct Holders<'a> {
        pub owners: &'a Owners,
        pub watch: &'a DeathWatch,
    }

    impl Peer for Holders<'_> {
        #[inline]
        fn closed(&self) -> bool {
            self.owners.closed() || (self.watch.due() && !self.alive())
        }

        fn alive(&self) -> bool {
            self.owners.any_alive(liveness::is_alive)
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn everyone_alive(_: i32, _: u64) -> bool {
        true
    }

    #[test]
    fn handles_are_counted_per_process_and_the_last_frees_the_slot() {
        let o = Owners::new();
        o.add(10, 5, everyone_alive);
        o.add(10, 5, everyone_alive);
        o.add(11, 6, everyone_alive);
        assert_eq!((o.count(), o.handles(10), o.handles(11)), (2, 2, 1));
        o.release(10);
        assert!(o.holds(10));
        o.release(10);
        assert!(!o.holds(10));
        assert!(!o.closed());
        o.release(11);
        assert!(o.closed());
        // A process that holds nothing takes nothing away.
        o.release(12);
        assert!(o.closed());
    }

    #[test]
    fn dead_holders_are_reclaimed_without_bound_on_how_many_come_and_go() {
        let o = Owners::new();
        for pid in 1..=(3 * SLOTS as i32) {
            // Every earlier holder is dead by the time the next one comes.
            o.add(pid, 1, |p, _| p == pid);
        }
        assert_eq!(o.overflow.load(Ordering::Relaxed), 0);
        assert!(o.any_alive(|p, _| p == 3 * SLOTS as i32));
        assert_eq!(o.count(), 1);
        assert!(!o.any_alive(|_, _| false));
        assert!(o.closed());
    }

    #[test]
    fn overflow_is_taken_back_by_its_holders() {
        let o = Owners::new();
        for pid in 1..=(SLOTS as i32 + 2) {
            o.add(pid, 1, everyone_alive);
        }
        assert_eq!(o.overflow.load(Ordering::Relaxed), 2);
        for pid in 1..=(SLOTS as i32 + 2) {
            assert!(!o.closed());
            o.release(pid);
        }
        assert!(o.closed());
    }

    #[test]
    fn a_reused_pid_is_not_counted_into_a_dead_holders_slot() {
        let o = Owners::new();
        o.add(7, 100, everyone_alive);
        // pid 7 again, started later: a different process.
        o.add(7, 200, everyone_alive);
        assert_eq!(o.count(), 2);
        // The old one is dead: only the new one is left.
        assert!(o.any_alive(|_, start| start == 200));
        assert_eq!(o.count(), 1);
        o.remove(7);
        assert!(o.closed());
    }
}
