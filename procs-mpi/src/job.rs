//! The job segment: the one piece of shared memory every rank of a job maps
//! (see docs/procs-mpi-transport.md).
//!
//! ```text
//! header      magic, layout version, size n, ring capacity, flags,
//!             abort word, the deadlock detector's lock
//! rank i      pid, start time, life, wait state and what it waits in,
//!             report, doorbell (one 128-byte aligned block each)
//! slots       n x SLOTS send slots: state (seq << 8 | state), address,
//!             length, and the receiver's half of a split copy
//! coll        n x 2 collective buffers (control line, then data): a
//!             rank writes its part of a collective of the whole world
//!             into its own, alternating between the two
//! rings       n x n ring blocks (control, then data); the n on the
//!             diagonal are never touched, so cost no memory
//! ```
//!
//! Every field is an atomic (or a structure of atomics) that is valid all
//! zero, as a fresh memfd is: the creator only writes the header and each
//! ring's capacity.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use procs_ipc::ring::{Ring, RingCtl, SharedBytes};
use procs_sync::Segment;
use procs_sync::raw::lock::RawLock;
use procs_sync::raw::notify::Doorbell;

use crate::error::{Error, RankEnd, Result};

const MAGIC: u64 = u64::from_le_bytes(*b"procsmpi");
const VERSION: u64 = 3;
/// Send slots per rank: rendezvous and synchronous sends in flight at once.
pub(crate) const SLOTS: usize = 64;
/// Words of a rank's deadlock report (1 KiB of text).
const REPORT_WORDS: usize = 128;
const ALIGN: usize = 128;
/// Bytes of one collective buffer, its control line included.
pub(crate) const COLL_BUF: usize = 16 << 10;

/// Life bits of a rank.
pub(crate) const RUNNING: u64 = 1;
/// The rank's closure returned (or it finalized): it sends nothing more.
pub(crate) const FINISHED: u64 = 2;
/// The process is gone; bits 32.. hold how it ended.
pub(crate) const ENDED: u64 = 4;
/// The rank panicked (its report holds the message): it is failing, even
/// if its process has not ended yet.
pub(crate) const PANICKED: u64 = 8;
/// A rank that will send nothing more, however it stopped.
pub(crate) const GONE: u64 = FINISHED | ENDED | PANICKED;

/// Whether a life word says the rank died (ended without finishing, or
/// panicked).
pub(crate) fn died(life: u64) -> bool {
    life & PANICKED != 0 || (life & ENDED != 0 && life & FINISHED == 0)
}

/// Send slot states (the low 8 bits of the state word).
pub(crate) const FREE: u64 = 0;
pub(crate) const OFFERED: u64 = 1;
pub(crate) const COPYING: u64 = 2;
pub(crate) const DONE: u64 = 3;
pub(crate) const PULL: u64 = 4;
/// A split copy: the receiver reads the first part and wrote where the
/// message goes into the slot; the sender may claim the rest.
pub(crate) const SPLIT: u64 = 5;
/// The sender claimed the rest and is writing it into the receiver.
pub(crate) const SENDER_COPYING: u64 = 6;
/// The sender wrote the rest.
pub(crate) const SENDER_DONE: u64 = 7;
/// The receiver took the rest itself (the sender was not there to claim it).
pub(crate) const RECEIVER_ALL: u64 = 8;

/// Flag: deadlock detection is on for this job.
pub(crate) const DETECT: u64 = 1;

#[repr(C)]
struct Header {
    magic: AtomicU64,
    version: AtomicU64,
    size: AtomicU64,
    ring_cap: AtomicU64,
    flags: AtomicU64,
    /// 0, or (rank + 1) << 32 | the code as u32: `abort` was called.
    abort: AtomicU64,
    detector: RawLock,
}

/// One rank's block.
#[repr(C, align(128))]
pub(crate) struct RankBlock {
    pub pid: AtomicU64,
    pub start: AtomicU64,
    pub life: AtomicU64,
    /// epoch << 2 | state (running, blocked, held, condemned).
    pub wait: AtomicU64,
    /// What the rank waits in while blocked: call, peer, tag (see `WaitDesc`).
    pub wait_call: AtomicU64,
    pub wait_peer: AtomicU64,
    pub wait_tag: AtomicU64,
    pub report_len: AtomicU64,
    pub report: [AtomicU64; REPORT_WORDS],
    pub bell: CachePadded<Doorbell>,
}

/// The control words of a collective buffer, owned by its writing rank;
/// its data follows them, so that a small part shares their cache line.
#[repr(C)]
pub(crate) struct CollCtl {
    /// The number of the world collective whose part the buffer holds
    /// (1, 2, ...; 0: none yet), stored last with release.
    pub op: AtomicU64,
    /// The bytes of data written (with [`COLL_SAME`] when one message
    /// for every member), or [`COLL_BIG`]: the part went as messages.
    pub len: AtomicU64,
}

/// A collective buffer's `len` bit: the data is one message (header and
/// payload) that every member reads.
pub(crate) const COLL_SAME: u64 = 1 << 62;

/// A collective buffer's `len` when its writer sent its part as messages
/// (it did not fit).
pub(crate) const COLL_BIG: u64 = u64::MAX;

/// One send slot, owned by its sending rank.
#[repr(C)]
pub(crate) struct SendSlot {
    pub state: AtomicU64,
    /// The message in the sender, and its length.
    pub addr: AtomicU64,
    pub len: AtomicU64,
    /// For a split copy (written by the receiver before SPLIT): where the
    /// message goes in the receiver, its pid, its nonce's address and
    /// value, and where the sender's part starts.
    pub dest: AtomicU64,
    pub dest_pid: AtomicU64,
    pub dest_nonce_addr: AtomicU64,
    pub dest_nonce: AtomicU64,
    pub split_at: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Layout {
    n: usize,
    cap: usize,
    ranks: usize,
    slots: usize,
    coll: usize,
    rings: usize,
    ring_stride: usize,
    total: usize,
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

impl Layout {
    fn new(n: usize, cap: usize) -> Option<Layout> {
        let ranks = round_up(std::mem::size_of::<Header>(), ALIGN);
        let slots = ranks.checked_add(n.checked_mul(std::mem::size_of::<RankBlock>())?)?;
        let coll = round_up(
            slots.checked_add(
                n.checked_mul(SLOTS)?
                    .checked_mul(std::mem::size_of::<SendSlot>())?,
            )?,
            ALIGN,
        );
        let rings = coll.checked_add(n.checked_mul(2 * COLL_BUF)?)?;
        let ring_stride = round_up(std::mem::size_of::<RingCtl>(), ALIGN).checked_add(cap)?;
        let total = rings.checked_add(n.checked_mul(n)?.checked_mul(ring_stride)?)?;
        Some(Layout {
            n,
            cap,
            ranks,
            slots,
            coll,
            rings,
            ring_stride,
            total,
        })
    }
}

/// The ring capacity for `n` ranks: the largest power of two that keeps all
/// rings within 32 MiB, between 4 KiB and 64 KiB.
pub(crate) fn ring_capacity(n: usize) -> usize {
    let pairs = (n * n.saturating_sub(1)).max(1);
    let share = (32usize << 20) / pairs;
    let pow = if share.is_power_of_two() {
        share
    } else {
        share.next_power_of_two() / 2
    };
    pow.clamp(4 << 10, 64 << 10)
}

/// The most ranks a job can have.
pub const MAX_RANKS: usize = 1024;

/// A job segment, mapped.
#[derive(Debug)]
pub(crate) struct Job {
    seg: Segment,
    /// The segment's data, 128-byte aligned.
    base: *mut u8,
    layout: Layout,
}

// SAFETY: the mapping is shared memory reached through atomics (and the
// rings' own protocol) only; `base` points into `seg`, which lives as long
// as the Job.
unsafe impl Send for Job {}
// SAFETY: as above.
unsafe impl Sync for Job {}

impl Job {
    /// A new job of `n` ranks.
    pub(crate) fn create(n: usize, detect: bool) -> Result<Job> {
        if n == 0 || n > MAX_RANKS {
            return Err(Error::Job(format!(
                "a job has 1 to {MAX_RANKS} ranks, not {n}"
            )));
        }
        let layout = Layout::new(n, ring_capacity(n))
            .ok_or_else(|| Error::Job("the job segment's size overflows".into()))?;
        let seg = Segment::create(layout.total + ALIGN)
            .map_err(|e| Error::Job(format!("creating the job segment: {e}")))?;
        let base = aligned(&seg);
        let job = Job { seg, base, layout };
        let h = job.header();
        h.version.store(VERSION, Ordering::Relaxed);
        h.size.store(n as u64, Ordering::Relaxed);
        h.ring_cap.store(layout.cap as u64, Ordering::Relaxed);
        h.flags
            .store(if detect { DETECT } else { 0 }, Ordering::Relaxed);
        for from in 0..n {
            for to in 0..n {
                if from != to {
                    job.ring_ctl(from, to).init(layout.cap as u64);
                }
            }
        }
        // The magic last: a rank that sees it sees the rest.
        h.magic.store(MAGIC, Ordering::Release);
        Ok(job)
    }

    /// The job in a segment handed over by a launcher, checked.
    pub(crate) fn attach(seg: Segment) -> Result<Job> {
        let bad = |what: &str| Error::Job(format!("the job segment is not valid: {what}"));
        let base = aligned(&seg);
        let room = seg.size().saturating_sub(ALIGN);
        if room < std::mem::size_of::<Header>() {
            return Err(bad("too small"));
        }
        // SAFETY: `base` is 128-byte aligned, within the mapping, with room
        // for a header (checked above); the header is atomics only.
        let h = unsafe { &*base.cast::<Header>() };
        if h.magic.load(Ordering::Acquire) != MAGIC {
            return Err(bad("no magic"));
        }
        if h.version.load(Ordering::Relaxed) != VERSION {
            return Err(bad("another layout version"));
        }
        let n = h.size.load(Ordering::Relaxed) as usize;
        let cap = h.ring_cap.load(Ordering::Relaxed) as usize;
        if n == 0 || n > MAX_RANKS || cap != ring_capacity(n) {
            return Err(bad("size or ring capacity out of range"));
        }
        let layout = Layout::new(n, cap).ok_or_else(|| bad("overflow"))?;
        if layout.total > room {
            return Err(bad("shorter than its layout"));
        }
        Ok(Job { seg, base, layout })
    }

    /// The descriptor of the segment, for a launcher to hand over.
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    pub(crate) fn size(&self) -> usize {
        self.layout.n
    }

    pub(crate) fn ring_cap(&self) -> usize {
        self.layout.cap
    }

    fn header(&self) -> &Header {
        // SAFETY: the header is at the aligned base, inside the mapping
        // (checked at creation or attach), made of atomics.
        unsafe { &*self.base.cast::<Header>() }
    }

    pub(crate) fn detects(&self) -> bool {
        self.header().flags.load(Ordering::Relaxed) & DETECT != 0
    }

    pub(crate) fn detector(&self) -> &RawLock {
        &self.header().detector
    }

    /// `Some((rank, code))` once some rank called `abort`.
    pub(crate) fn aborted(&self) -> Option<(usize, i32)> {
        let w = self.header().abort.load(Ordering::Acquire);
        (w != 0).then(|| ((w >> 32) as usize - 1, w as u32 as i32))
    }

    /// Records that `rank` aborts with `code` (the first abort wins), and
    /// wakes every rank.
    pub(crate) fn set_aborted(&self, rank: usize, code: i32) {
        let w = ((rank as u64 + 1) << 32) | u64::from(code as u32);
        let _ = self
            .header()
            .abort
            .compare_exchange(0, w, Ordering::AcqRel, Ordering::Acquire);
        self.ring_all();
    }

    pub(crate) fn rank(&self, r: usize) -> &RankBlock {
        assert!(r < self.layout.n);
        // SAFETY: r < n, so the block is inside the rank area of the
        // layout, which fits the mapping; the offset keeps 128-byte
        // alignment (RankBlock's size is a multiple of 128); atomics only.
        unsafe {
            &*self
                .base
                .add(self.layout.ranks + r * std::mem::size_of::<RankBlock>())
                .cast::<RankBlock>()
        }
    }

    pub(crate) fn slot(&self, r: usize, k: usize) -> &SendSlot {
        assert!(r < self.layout.n && k < SLOTS);
        // SAFETY: inside the slot area (r < n, k < SLOTS), 8-byte aligned,
        // atomics only.
        unsafe {
            &*self
                .base
                .add(self.layout.slots + (r * SLOTS + k) * std::mem::size_of::<SendSlot>())
                .cast::<SendSlot>()
        }
    }

    /// Rank `r`'s collective buffer `parity` (0 or 1): its control words
    /// and its data, the rest of `COLL_BUF` bytes, that only `r` writes,
    /// and only while no member can still read them (see `coll.rs`).
    pub(crate) fn coll_buf(&self, r: usize, parity: usize) -> (&CollCtl, SharedBytes) {
        assert!(r < self.layout.n && parity < 2);
        // SAFETY: inside the collective area (r < n, parity < 2: one of
        // the n x 2 buffers of COLL_BUF bytes), 128-byte aligned (the area
        // and COLL_BUF are multiples of 128); the control line is atomics
        // only, valid zeroed.
        let at = unsafe {
            self.base
                .add(self.layout.coll + (2 * r + parity) * COLL_BUF)
        };
        let line = std::mem::size_of::<CollCtl>();
        // SAFETY: as above; `at` is valid for COLL_BUF bytes.
        let ctl = unsafe { &*at.cast::<CollCtl>() };
        // SAFETY: the data follows the control words inside the same
        // buffer; its writer and readers take turns as coll.rs argues.
        let data = unsafe { SharedBytes::new(at.add(line), COLL_BUF - line) };
        (ctl, data)
    }

    fn ring_block(&self, from: usize, to: usize) -> *mut u8 {
        assert!(from < self.layout.n && to < self.layout.n && from != to);
        // SAFETY: inside the ring area: (from * n + to) < n * n blocks of
        // `ring_stride` bytes each.
        unsafe {
            self.base
                .add(self.layout.rings + (from * self.layout.n + to) * self.layout.ring_stride)
        }
    }

    pub(crate) fn ring_ctl(&self, from: usize, to: usize) -> &RingCtl {
        // SAFETY: the block starts 128-byte aligned with room for a RingCtl
        // (made of atomics and doorbells, all valid zeroed).
        unsafe { &*self.ring_block(from, to).cast::<RingCtl>() }
    }

    /// The ring that carries frames from `from` to `to`.
    pub(crate) fn ring(&self, from: usize, to: usize) -> Ring<'_, SharedBytes> {
        let ctl = self.ring_ctl(from, to);
        let off = round_up(std::mem::size_of::<RingCtl>(), ALIGN);
        // SAFETY: the data follows the control block in the same ring block,
        // `cap` bytes inside the mapping; only this pair's writer and reader
        // touch it, through the ring's protocol.
        let data = unsafe { SharedBytes::new(self.ring_block(from, to).add(off), self.layout.cap) };
        Ring::whole_frames(ctl, data)
    }

    /// How rank `r` ended, if the launcher (or the rank itself) recorded it.
    pub(crate) fn ended(&self, r: usize) -> Option<RankEnd> {
        let life = self.rank(r).life.load(Ordering::Acquire);
        (life & ENDED != 0).then(|| RankEnd::from_code((life >> 32) as u32 as i32))
    }

    /// Records that rank `r`'s process ended with `code` (an exit code, or
    /// minus a signal number), and wakes every rank.
    pub(crate) fn record_end(&self, r: usize, code: i32) {
        let end = ENDED | (u64::from(code as u32) << 32);
        let _ = self
            .rank(r)
            .life
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                // The launcher's record replaces a rank's "vanished" guess.
                let guessed = l & ENDED != 0 && (l >> 32) as u32 as i32 == i32::MIN;
                (l & ENDED == 0 || guessed).then_some((l & 0xff) | end)
            });
        self.ring_all();
    }

    /// Records that rank `r` panicked with `message`, and wakes every rank:
    /// its waiters fail at once, even while its process still unwinds.
    pub(crate) fn record_panic(&self, r: usize, message: &str) {
        self.write_report(r, message);
        self.rank(r).life.fetch_or(PANICKED, Ordering::AcqRel);
        self.ring_all();
    }

    /// The panic message of rank `r`, if it panicked.
    pub(crate) fn panicked(&self, r: usize) -> Option<String> {
        let life = self.rank(r).life.load(Ordering::Acquire);
        (life & PANICKED != 0).then(|| self.read_report(r))
    }

    /// How rank `r` died: as recorded, or a panic.
    pub(crate) fn how_died(&self, r: usize) -> RankEnd {
        if self.rank(r).life.load(Ordering::Acquire) & PANICKED != 0 {
            return RankEnd::Panicked;
        }
        self.ended(r).unwrap_or(RankEnd::Vanished)
    }

    /// Wakes every rank (after a change all of them must look at).
    pub(crate) fn ring_all(&self) {
        for r in 0..self.layout.n {
            self.rank(r).bell.notify_all();
        }
    }

    /// Writes `text` as rank `r`'s report (cut at 1 KiB).
    pub(crate) fn write_report(&self, r: usize, text: &str) {
        let b = self.rank(r);
        let bytes = &text.as_bytes()[..text.len().min(REPORT_WORDS * 8)];
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            b.report[i].store(u64::from_le_bytes(w), Ordering::Relaxed);
        }
        b.report_len.store(bytes.len() as u64, Ordering::Release);
    }

    pub(crate) fn read_report(&self, r: usize) -> String {
        let b = self.rank(r);
        let len = (b.report_len.load(Ordering::Acquire) as usize).min(REPORT_WORDS * 8);
        let mut bytes = Vec::with_capacity(len);
        for w in &b.report[..len.div_ceil(8)] {
            bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        bytes.truncate(len);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn aligned(seg: &Segment) -> *mut u8 {
    let p = seg.as_ptr();
    let pad = p.align_offset(ALIGN);
    // SAFETY: every segment of a job is created ALIGN bytes larger than its
    // layout (and `attach` checks the room), so `pad < ALIGN` stays inside.
    unsafe { p.add(pad.min(seg.size())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_are_powers_of_two_within_bounds() {
        for n in 1..=MAX_RANKS {
            let c = ring_capacity(n);
            assert!(
                c.is_power_of_two() && (4 << 10..=64 << 10).contains(&c),
                "{n}: {c}"
            );
        }
        assert_eq!(ring_capacity(2), 64 << 10);
        assert_eq!(ring_capacity(64), 8 << 10);
    }

    #[test]
    fn a_created_job_attaches_and_a_foreign_segment_does_not() {
        let job = Job::create(3, true).unwrap();
        let fd = job.segment().fd().try_clone_to_owned().unwrap();
        let again = Job::attach(Segment::from_fd(fd).unwrap()).unwrap();
        assert_eq!(again.size(), 3);
        assert!(again.detects());
        job.write_report(1, "rank 1 waits");
        assert_eq!(again.read_report(1), "rank 1 waits");
        job.record_end(2, -9);
        assert_eq!(again.ended(2), Some(RankEnd::Signaled(9)));
        let other = Segment::create(4096).unwrap();
        assert!(matches!(Job::attach(other), Err(Error::Job(_))));
    }
}
