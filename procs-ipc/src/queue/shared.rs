//! A queue's shared memory (its control block, the two sides' locks and
//! journaled counts, the holder tables) and this process's part in it.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::doorbell::Doorbell;
use crate::error::{Error, Result};
use crate::owners::{DeathWatch, Owners};
use crate::ring::SharedBytes;
use crate::ring::{CHECK_EVERY, Hints, Ring, RingCtl};
use crate::sync::{AtomicU32, AtomicU64, Ordering, boot_ticks_now, holder_alive};
use crate::wait::PeerWatch;
use crossbeam_utils::CachePadded;
use procs_sync::Segment;
use procs_sync::raw::liveness;
use procs_sync::raw::lock::{Acquired, RawGuard, RawLock};

#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct QueueCtl {
    /// Processes holding a handle that can put.
    pub(super) putters: Owners,
    /// Processes holding a handle that can get.
    pub(super) getters: Owners,
    pub(super) maxsize: AtomicU32,
    pub(super) put_lock: CachePadded<RawLock>,
    pub(super) get_lock: CachePadded<RawLock>,
    /// Items put, and the producers' journal.
    pub(super) puts: CachePadded<Counted>,
    /// Items got, and the consumers' journal.
    pub(super) gets: CachePadded<Counted>,
    /// Items reported done (a joinable queue's `task_done`).
    pub(super) done: CachePadded<AtomicU64>,
    pub(super) slots_bell: Doorbell,
    pub(super) done_bell: Doorbell,
    pub(super) ring: RingCtl,
}

/// One side's count of items moved, and its journal: where the ring's
/// position (the writer's for puts, the reader's for gets) and the count
/// stood before the move that the lock's holder is making (or made last).
/// A position that moved with the count unchanged is an item moved by a
/// holder that died before it counted it. A new queue's journal (all zero)
/// reads as its ring's start, position 0.
#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct Counted {
    pub(super) count: AtomicU64,
    pub(super) journal_pos: AtomicU64,
    pub(super) journal_count: AtomicU64,
}

impl Counted {
    /// Notes, under the side's lock, where things stand before a move.
    #[inline]
    pub(super) fn begin(&self, pos: u64) -> u64 {
        let count = self.count.load(Ordering::Relaxed);
        // Relaxed: read only by the lock's next holder, whom the lock's
        // release (or a takeover, after the holder is gone) orders after.
        self.journal_pos.store(pos, Ordering::Relaxed);
        self.journal_count.store(count, Ordering::Relaxed);
        count
    }

    /// Counts the item moved.
    #[inline]
    pub(super) fn commit(&self, before: u64) {
        // Release: who sees the count sees the ring's position it counts.
        self.count.store(before.wrapping_add(1), Ordering::Release);
    }

    /// Finishes the count of a holder that died: `pos` is the side's
    /// position now. Under the side's lock (taken over).
    pub(super) fn repair(&self, pos: u64) {
        let before = self.journal_count.load(Ordering::Acquire);
        if pos != self.journal_pos.load(Ordering::Acquire)
            && self.count.load(Ordering::Acquire) == before
        {
            self.commit(before);
        }
        self.journal_pos.store(pos, Ordering::Relaxed);
    }
}

/// A side's lock held; released when dropped, by unwinding too.
pub(super) type Held<'a> = RawGuard<'a>;

/// A queue's memory and this process's part in it.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) seg: Segment,
    pub(super) capacity: usize,
    pub(super) data_offset: usize,
    /// Where the control block starts in the segment's data: the first
    /// offset aligned for it (its fields are padded to cache lines of
    /// their own, 128 bytes apart on x86-64, past the segment's 64-byte
    /// header).
    pub(super) ctl_offset: usize,
    /// `close` was called in this process.
    pub(super) closed: AtomicBool,
    /// What this process's producers saw of the ring (used under the put
    /// lock) and its consumers (under the get lock).
    pub(super) put_hints: Hints,
    pub(super) get_hints: Hints,
    /// What a [`wait`](crate::wait) last saw of the producers.
    pub(super) producers_watch: PeerWatch,
    /// When this process last looked at the producers' and the consumers'
    /// lives.
    pub(super) producers_death: DeathWatch,
    pub(super) consumers_death: DeathWatch,
}

impl Inner {
    pub(super) fn create(capacity: usize, maxsize: u32) -> Result<Inner> {
        if capacity < 64 || !capacity.is_power_of_two() {
            return Err(Error::Invalid(
                "a queue's capacity is a power of two of at least 64 bytes",
            ));
        }
        // Room for the control block wherever its alignment puts it.
        let data_offset = (std::mem::align_of::<QueueCtl>() + std::mem::size_of::<QueueCtl>())
            .next_multiple_of(4096);
        let size = data_offset
            .checked_add(capacity)
            .ok_or(Error::Invalid("a queue's capacity overflows"))?;
        let seg = Segment::create(size)?;
        let inner = Inner::over(seg, capacity, data_offset);
        let ctl = inner.ctl();
        ctl.ring.init(capacity as u64);
        ctl.maxsize.store(maxsize, Ordering::Release);
        Ok(inner)
    }

    /// This process's part in a queue whose segment came from another
    /// process, which said its capacity: checked against the segment.
    pub(super) fn attach(seg: Segment, capacity: u64) -> std::result::Result<Inner, String> {
        let capacity = usize::try_from(capacity)
            .ok()
            .filter(|c| *c >= 64 && c.is_power_of_two())
            .ok_or("a queue's capacity is a power of two of at least 64 bytes")?;
        let data_offset = (std::mem::align_of::<QueueCtl>() + std::mem::size_of::<QueueCtl>())
            .next_multiple_of(4096);
        if data_offset.checked_add(capacity) != Some(seg.size()) {
            return Err(format!(
                "a segment of {} bytes is not a queue of capacity {capacity}",
                seg.size()
            ));
        }
        Ok(Inner::over(seg, capacity, data_offset))
    }

    /// This process's part in the queue in `seg`, its ring of `capacity`
    /// bytes at `data_offset`.
    fn over(seg: Segment, capacity: usize, data_offset: usize) -> Inner {
        let ctl_offset = seg.as_ptr().align_offset(std::mem::align_of::<QueueCtl>());
        Inner {
            seg,
            capacity,
            data_offset,
            ctl_offset,
            closed: AtomicBool::new(false),
            put_hints: Hints::default(),
            get_hints: Hints::default(),
            producers_watch: PeerWatch::default(),
            producers_death: DeathWatch::default(),
            consumers_death: DeathWatch::default(),
        }
    }

    /// One count less for `pid` in `role`'s tables: the count a sender
    /// held for a handle in transit, taken back by its receiver once it
    /// counted itself.
    pub(super) fn release_for(&self, pid: i32, role: Role) {
        let ctl = self.ctl();
        if role.puts {
            ctl.putters.release(pid);
        }
        if role.gets {
            ctl.getters.release(pid);
        }
        self.wake_all();
    }

    #[inline]
    pub(super) fn ctl(&self) -> &QueueCtl {
        // SAFETY: a QueueCtl fits at `ctl_offset` (aligned for it, and
        // `data_offset` leaves room for its alignment and size), in memory
        // zero-filled at creation, which is a valid QueueCtl (atomics only);
        // the segment lives as long as self.
        unsafe { &*self.seg.as_ptr().add(self.ctl_offset).cast::<QueueCtl>() }
    }

    #[inline]
    pub(super) fn ring(&self) -> Ring<'_, SharedBytes> {
        // SAFETY: the ring's data is `capacity` bytes at `data_offset`
        // inside the segment, which outlives the returned borrow; the locks
        // keep one writer and one reader on it at a time.
        let bytes =
            unsafe { SharedBytes::new(self.seg.as_ptr().add(self.data_offset), self.capacity) };
        let ctl = self.ctl();
        Ring::whole_frames(&ctl.ring, bytes).taken_in_turns(&ctl.put_lock, &ctl.get_lock)
    }

    #[inline]
    pub(super) fn open(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    pub(super) fn wake_all(&self) {
        let ctl = self.ctl();
        ctl.ring.wake_both();
        ctl.slots_bell.ring();
        ctl.done_bell.ring();
    }

    /// A new handle of this process with `role`: one more counted for it
    /// in the shared tables.
    pub(super) fn hold(&self, role: Role) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let me = std::process::id() as i32;
        let start = liveness::own_start_ticks();
        let ctl = self.ctl();
        if role.puts {
            ctl.putters.add(me, start, liveness::is_alive);
            // Producers a wait found all dead have one again.
            self.producers_watch.reset();
        }
        if role.gets {
            ctl.getters.add(me, start, liveness::is_alive);
        }
    }

    /// A handle of this process with `role` is gone: one less counted for
    /// this process, and, when it was being handed to a child, one more for
    /// the child.
    pub(super) fn unhold(&self, role: Role) {
        if self.closed.load(Ordering::Acquire) {
            // This process's handles were all forgotten when it closed.
            return;
        }
        let ctl = self.ctl();
        let tables = [(role.puts, &ctl.putters), (role.gets, &ctl.getters)];
        if let Some(child) = procs_core::handing_over_to() {
            let start = liveness::start_ticks(child).unwrap_or(0);
            for (_, owners) in tables.iter().filter(|(has, _)| *has) {
                owners.add(child, start, liveness::is_alive);
            }
        }
        let me = std::process::id() as i32;
        for (_, owners) in tables.iter().filter(|(has, _)| *has) {
            owners.release(me);
        }
        self.wake_all();
    }

    /// This process closes the queue: it holds no role any more.
    pub(super) fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = std::process::id() as i32;
        self.ctl().putters.remove(me);
        self.ctl().getters.remove(me);
        self.wake_all();
    }

    /// Takes the producers' lock; a takeover from a producer that died
    /// finishes its count.
    #[inline]
    pub(super) fn lock_puts(&self, deadline: Option<Instant>) -> Result<Held<'_>> {
        let ctl = self.ctl();
        Self::lock_side(&ctl.put_lock, deadline, || {
            ctl.puts.repair(ctl.ring.write_position());
        })
    }

    /// Takes the consumers' lock; a takeover from a consumer that died
    /// finishes its count.
    #[inline]
    pub(super) fn lock_gets(&self, deadline: Option<Instant>) -> Result<Held<'_>> {
        let ctl = self.ctl();
        Self::lock_side(&ctl.get_lock, deadline, || {
            ctl.gets.repair(ctl.ring.read_position());
        })
    }

    #[inline]
    pub(super) fn lock_side<'a>(
        lock: &'a RawLock,
        deadline: Option<Instant>,
        repair: impl FnOnce(),
    ) -> Result<Held<'a>> {
        // (An explicit branch: an error built eagerly is dropped on every
        // call.)
        let Some(held) = lock.lock_guard(deadline) else {
            return Err(Error::Timeout);
        };
        if let Acquired::OwnerDied { .. } = held.acquired() {
            repair();
        }
        Ok(held)
    }

    /// For a process waiting on the count of items got: when the
    /// consumers' lock is held by a thread that is gone, takes it over (so
    /// the count is finished) and lets it go. Called every `CHECK_EVERY`.
    pub(super) fn repair_gets_if_holder_died(&self) {
        let lock = &self.ctl().get_lock;
        let holder = lock.holder();
        if holder == 0 || holder_alive(holder, boot_ticks_now()) {
            return;
        }
        // The lock's own takeover finds the holder dead within CHECK_EVERY.
        let _ = self.lock_gets(Some(Instant::now() + 3 * CHECK_EVERY));
    }
}

/// What a handle may do.
#[derive(Debug, Clone, Copy)]
pub(super) struct Role {
    pub(super) puts: bool,
    pub(super) gets: bool,
}

pub(super) const BOTH: Role = Role {
    puts: true,
    gets: true,
};
pub(super) const PUTS: Role = Role {
    puts: true,
    gets: false,
};
pub(super) const GETS: Role = Role {
    puts: false,
    gets: true,
};

#[cfg(test)]
mod tests {
    use super::*;

    /// A side moves items from the ring's start on, 8 bytes each. Its holder
    /// dies after `steps` of the three steps of its next move (note, move,
    /// count), and the next holder repairs: the count is then the number of
    /// items that left the position, whichever step the death cut.
    #[test]
    fn a_takeover_finishes_the_count_whichever_step_the_holder_died_at() {
        for done_before in 0..3u64 {
            for steps in 0..=3 {
                // All zero, as a new queue's memory is: the journal reads
                // as the ring's start.
                let side = Counted::default();
                let mut pos = 0;
                for _ in 0..done_before {
                    let before = side.begin(pos);
                    pos += 8;
                    side.commit(before);
                }
                let before = (steps >= 1).then(|| side.begin(pos));
                if steps >= 2 {
                    pos += 8;
                }
                if steps >= 3 {
                    side.commit(before.unwrap());
                }
                side.repair(pos);
                let moved = done_before + u64::from(steps >= 2);
                assert_eq!(
                    side.count.load(Ordering::Relaxed),
                    moved,
                    "{done_before} moves, then death after {steps} steps"
                );
                // A second repair (another takeover) changes nothing, and
                // the next move counts from there.
                side.repair(pos);
                let before = side.begin(pos);
                side.commit(before);
                assert_eq!(side.count.load(Ordering::Relaxed), moved + 1);
            }
        }
    }
}
