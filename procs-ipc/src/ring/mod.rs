//! The ring: frames of bytes from one writer to one reader through shared
//! memory. (A queue puts a lock before each side to have many of each.)
//!
//! ```text
//! control, each field on a cache line of its own:
//!   head        bytes published by the writer (only the writer stores it)
//!   tail        bytes consumed by the reader (only the reader stores it)
//!   data_bell   the reader sleeps here for data
//!   space_bell  the writer sleeps here for room
//!   capacity    bytes of data, a power of two
//! data: `capacity` bytes, positions taken modulo the capacity
//!
//! frame: header (8 bytes: length, and a check stamped with the frame's
//!        position, see `frame`), payload, zero padding to a multiple of 8
//! ```
//!
//! Positions are byte counts that wrap at 2^64 (a multiple of every
//! capacity), advanced with wrapping arithmetic: a position that another
//! process corrupted is out of range or off a frame boundary, an error,
//! never an overflow.
//!
//! A small frame (up to 16 KiB) is written whole: payload first, then the
//! header word with one release store, then `head`. The reader polls the
//! header word at its own position (a header left from an earlier lap fails
//! its position check), so a message moves one cache line, not two; it sees
//! whole frames or nothing, and a writer that dies mid-frame leaves nothing
//! behind. A larger frame is streamed: header first, then the payload in
//! pieces of at most 32 KiB as the reader frees room (the writer's copy in
//! and the reader's copy out run at once, through a ring much smaller than
//! the message); the reader gathers it in its own memory and hands it over
//! only once complete, so a writer that dies mid-stream leaves the reader a
//! `Disconnected`, never a torn message. The reader checks every header
//! against what the writer published (a length that lies is `Corrupt`, not
//! an allocation) and allocates only what it has received.

use std::time::{Duration, Instant};

use crate::doorbell::{Doorbell, sleep_until};
use crate::error::{Error, Result};
use crate::frame::HEADER;
use crate::sync::{AtomicU64, HOLDER_CHECKS, Ordering, spin_loop};
use crossbeam_utils::CachePadded;
use procs_sync::raw::lock::RawLock;

mod bytes;
mod read;
mod write;

pub use bytes::Bytes;
#[cfg(loom)]
pub use bytes::LoomBytes;
#[cfg(not(loom))]
pub use bytes::SharedBytes;

/// How often a sleeping side checks that the other side lives: the bound on
/// how long a death goes unnoticed (procs-sync's, the one interval of every
/// liveness check in the workspace).
pub use procs_sync::raw::lock::CHECK_EVERY;

/// How long a side spins before it sleeps: a round trip between cores takes
/// well under a microsecond, and a peer that is this late is better slept on.
#[cfg(not(loom))]
const SPIN_BUDGET: Duration = Duration::from_micros(50);
/// How long of that budget a side spins on the processor alone; for the
/// rest it yields the processor between looks, so that when there are more
/// runnable threads than processors (a pool's workers, its handler and its
/// caller on two cores) a waiter does not hold a core its peer needs.
#[cfg(not(loom))]
const SPIN_HOT: Duration = Duration::from_micros(2);

/// Frames up to this size are read without waiting on `head`, and go
/// through the stack into a vector.
const SMALL: usize = 64;

/// The largest frame written whole; larger ones stream in pieces.
pub const WHOLE_MAX: u64 = 16 * 1024;

/// The most bytes one side copies before publishing them to the other, so
/// that the writer's copy in and the reader's copy out overlap.
const CHUNK: u64 = 32 * 1024;

/// Whether a frame of `frame` bytes (header and padding included) is
/// written whole into a ring of `cap` bytes; both sides decide alike. A ring
/// that never streams writes every frame whole.
fn whole(frame: u64, cap: u64, streams: bool) -> bool {
    frame <= cap.min(WHOLE_MAX) || !streams
}

/// The control block of a ring, in shared memory.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RingCtl {
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
    data_bell: CachePadded<Doorbell>,
    space_bell: CachePadded<Doorbell>,
    capacity: AtomicU64,
}

impl RingCtl {
    /// An empty ring of `capacity` bytes (a power of two, at least 16).
    pub fn new(capacity: u64) -> Self {
        let ctl = RingCtl::default();
        ctl.init(capacity);
        ctl
    }

    /// Sets the capacity of a ring nobody uses yet.
    pub fn init(&self, capacity: u64) {
        self.capacity.store(capacity, Ordering::Release);
    }

    /// Overwrites the positions, as a corrupting process could: for tests
    /// and fuzzing of the reader against a damaged ring.
    #[doc(hidden)]
    pub fn set_positions(&self, head: u64, tail: u64) {
        self.head.store(head, Ordering::Release);
        self.tail.store(tail, Ordering::Release);
    }

    /// Makes a ring whose writer and reader are both gone ready for a new
    /// pair: both positions move a lap past anything written, so that no
    /// frame left in it (a whole frame whose writer died before publishing
    /// it, a stream cut short) can be read by the next reader: every header
    /// is stamped with its position, and none was written at or past the
    /// new one. Only while nobody uses the ring.
    pub fn restart(&self) {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        let cap = self.capacity.load(Ordering::Acquire);
        let at = head
            .max(tail)
            .wrapping_add(cap)
            .next_multiple_of(HEADER as u64);
        self.head.store(at, Ordering::Release);
        self.tail.store(at, Ordering::Release);
    }

    /// Where the writer will write next (for the writer itself: it alone
    /// moves it).
    #[inline]
    pub(crate) fn write_position(&self) -> u64 {
        self.head.load(Ordering::Relaxed)
    }

    /// Where the reader will read next (for the reader itself: it alone
    /// moves it).
    #[inline]
    pub(crate) fn read_position(&self) -> u64 {
        self.tail.load(Ordering::Relaxed)
    }

    /// The positions `(head, tail)`: for tests and fuzzing.
    #[doc(hidden)]
    pub fn positions(&self) -> (u64, u64) {
        (
            self.head.load(Ordering::Acquire),
            self.tail.load(Ordering::Acquire),
        )
    }

    /// Wakes both sides, so that they check on their peer.
    pub fn wake_both(&self) {
        self.data_bell.ring();
        self.space_bell.ring();
    }
}

/// Whether the other side of a ring is still there.
pub trait Peer {
    /// Cheap: the other side closed its end (every holder let go).
    fn closed(&self) -> bool;
    /// Thorough: some holder of the other side lives (may read /proc).
    fn alive(&self) -> bool;
}

/// A peer never seen as gone: for a ring whose user watches the other side
/// itself (or that has none to watch, as a measurement's).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unwatched;

impl Peer for Unwatched {
    fn closed(&self) -> bool {
        false
    }
    fn alive(&self) -> bool {
        true
    }
}

/// The most bytes an offer's description takes (a whole small frame).
pub(crate) const OFFER_MAX: usize = SMALL - HEADER;

/// What a receive found.
pub(crate) enum Received {
    /// A message of this many bytes, now in the sink.
    Message(usize),
    /// An offer of a message to copy straight out of its writer, described
    /// in the first `len` bytes; still in the ring.
    Offer {
        /// The description.
        description: [u8; OFFER_MAX],
        /// Its length.
        len: usize,
    },
}

/// Where a received message goes.
pub enum Sink<'a> {
    /// Into a vector, whose contents the message replaces; it grows as bytes
    /// arrive (never by what a header claims).
    Vec(&'a mut Vec<u8>),
    /// Into a slice, which must be large enough.
    Slice(&'a mut [u8]),
}

impl Sink<'_> {
    fn room(&self) -> Option<usize> {
        match self {
            Sink::Vec(_) => None,
            Sink::Slice(s) => Some(s.len()),
        }
    }

    fn put(&mut self, at: usize, from: impl FnOnce(&mut [u8])) {
        match self {
            Sink::Slice(s) => from(&mut s[at..]),
            Sink::Vec(v) => from(&mut v[at..]),
        }
    }
}

/// What a process last saw of a ring's positions: lower bounds of `head`
/// and `tail` (positions only grow), which spare a side reading the other
/// side's cache line for every message while the last value it saw still
/// says there is room, or data. Kept in the process, not in shared memory.
#[derive(Debug, Default)]
pub struct Hints {
    head: std::sync::atomic::AtomicU64,
    tail: std::sync::atomic::AtomicU64,
}

/// The locks a ring's writers and readers take turns under.
#[derive(Clone, Copy)]
struct Turns<'a> {
    writers: &'a RawLock,
    readers: &'a RawLock,
}

/// One side's view of a ring: its control block and its data.
pub struct Ring<'a, B: Bytes> {
    ctl: &'a RingCtl,
    data: B,
    cap: u64,
    streams: bool,
    hints: Option<&'a Hints>,
    /// Called by the writer after each publish (see [`Ring::notified`]).
    notify: Option<&'a dyn Fn(u64)>,
    /// The locks the sides are used under, when each side rings the other's
    /// bell after releasing its lock (see [`Ring::taken_in_turns`]).
    turns: Option<Turns<'a>>,
    /// The control block's capacity disagrees with the data: every call is
    /// `Corrupt`.
    corrupt: bool,
}

impl<'a, B: Bytes> Ring<'a, B> {
    /// The ring with control `ctl` and data `data`: frames above 16 KiB
    /// stream in pieces, so a message of any size goes through.
    #[inline]
    pub fn new(ctl: &'a RingCtl, data: B) -> Self {
        let cap = data.len() as u64;
        let corrupt =
            ctl.capacity.load(Ordering::Acquire) != cap || cap < 16 || !cap.is_power_of_two();
        Ring {
            ctl,
            data,
            cap,
            streams: true,
            hints: None,
            notify: None,
            turns: None,
            corrupt,
        }
    }

    /// The same ring, remembering what this process saw of the positions
    /// in `hints` (one `Hints` per process and side of a ring; a side shared
    /// by threads must be used under a lock, as a queue's sides are).
    #[inline]
    pub fn hinted(mut self, hints: &'a Hints) -> Self {
        self.hints = Some(hints);
        self
    }

    /// The same ring, calling `notify` with the new `head` each time the
    /// writer publishes bytes, right after it rings the data bell (so after
    /// that bell's SeqCst fence): a pipe end's descriptor for `poll` is
    /// signaled there (see [`notify`](crate::notify)).
    #[inline]
    pub fn notified(mut self, notify: &'a dyn Fn(u64)) -> Self {
        self.notify = Some(notify);
        self
    }

    /// The same ring, whose writers take turns under `writers` and readers
    /// under `readers` (a queue's put and get locks): a publish or a consume
    /// then rings no bell, and its side calls [`wake_reader`](Ring::wake_reader)
    /// or [`wake_writer`](Ring::wake_writer) once it released its lock (the
    /// release's swap stands for the bell's fence: one locked instruction an
    /// item instead of two); a side that sleeps reads the other side's lock
    /// after registering, which is what makes the release enough (see
    /// procs-sync's `Doorbell::ring_after_release`).
    #[inline]
    pub fn taken_in_turns(mut self, writers: &'a RawLock, readers: &'a RawLock) -> Self {
        // A streamed frame is published in pieces, each needing its ring
        // while the writer still holds its lock.
        debug_assert!(!self.streams, "a ring taken in turns writes whole frames");
        self.turns = Some(Turns { writers, readers });
        self
    }

    /// For a writer under [`taken_in_turns`](Ring::taken_in_turns), after
    /// it released the writers' lock: wakes a reader that sleeps for data.
    #[inline]
    pub fn wake_reader(&self) {
        self.ctl.data_bell.ring_after_release();
    }

    /// For a reader under [`taken_in_turns`](Ring::taken_in_turns), after
    /// it released the readers' lock: wakes a writer that sleeps for room.
    #[inline]
    pub fn wake_writer(&self) {
        self.ctl.space_bell.ring_after_release();
    }

    /// Reads the lock of the side that rings `bell` after releasing it, if
    /// the sides take turns: a sleeper calls it after registering, before
    /// it checks (see [`taken_in_turns`](Ring::taken_in_turns)).
    #[inline]
    fn observe_ringer(&self, bell: &Doorbell) {
        if let Some(t) = self.turns {
            if std::ptr::eq(bell, &*self.ctl.data_bell) {
                t.writers.observe();
            } else {
                t.readers.observe();
            }
        }
    }

    fn check(&self) -> Result<()> {
        if self.corrupt {
            Err(Error::Corrupt(
                "the ring's capacity disagrees with its memory",
            ))
        } else {
            Ok(())
        }
    }

    /// The same ring where every frame is written whole, so a writer that
    /// dies leaves nothing half-sent whoever writes next (a queue's many
    /// producers take turns); a frame larger than the ring is
    /// [`Error::TooLarge`].
    #[inline]
    pub fn whole_frames(ctl: &'a RingCtl, data: B) -> Self {
        Ring {
            streams: false,
            ..Self::new(ctl, data)
        }
    }

    /// Copies `src` into the ring at stream position `pos`, wrapping.
    fn put(&self, pos: u64, src: &[u8]) {
        let off = (pos & (self.cap - 1)) as usize;
        let first = src.len().min(self.cap as usize - off);
        self.data.write(off, &src[..first]);
        if first < src.len() {
            self.data.write(0, &src[first..]);
        }
    }

    /// Copies from the ring at stream position `pos` into `dst`, wrapping.
    fn get(&self, pos: u64, dst: &mut [u8]) {
        let off = (pos & (self.cap - 1)) as usize;
        let first = dst.len().min(self.cap as usize - off);
        self.data.read(off, &mut dst[..first]);
        if first < dst.len() {
            let rest = &mut dst[first..];
            self.data.read(0, rest);
        }
    }

    /// The ring's capacity in bytes. Frames up to 16 KiB (and up to the
    /// capacity) are written whole, larger ones stream in pieces; a ring of
    /// [`whole_frames`](Ring::whole_frames) refuses frames above it.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// How far position `ahead` is past `behind`. The reader may take a
    /// frame as soon as its header is there, before the writer publishes
    /// `head` past it: a `behind` that is up to a ring ahead is distance 0.
    /// Farther apart either way, a position is corrupt.
    fn distance(&self, ahead: u64, behind: u64) -> Result<u64> {
        let d = ahead.wrapping_sub(behind);
        if d <= self.cap {
            Ok(d)
        } else if d.wrapping_neg() <= self.cap {
            Ok(0)
        } else {
            Err(Error::Corrupt("the writer's position is out of range"))
        }
    }

    // ----- waiting, for both sides -----

    /// Waits until `ready()`: spins a while, then sleeps on `bell`, checking
    /// on the peer. Once the peer is gone, `ready()` still wins (what was
    /// sent is received), else `Disconnected`.
    fn wait(
        &self,
        bell: &Doorbell,
        ready: impl Fn() -> bool,
        stuck: &dyn Fn() -> bool,
        deadline: Option<Instant>,
        peer: &dyn Peer,
    ) -> Result<()> {
        let expired = deadline.is_some_and(|d| Instant::now() >= d);
        if ready() || (!expired && self.spin(&ready)) {
            return Ok(());
        }
        // Closing rings the bell after marking the end closed, and a stuck
        // ring never becomes ready: both end the sleep too. The peer's life
        // is looked at (it reads /proc) every CHECK_EVERY, not on every
        // wake-up.
        let look = || {
            if peer.alive() {
                Ok(())
            } else {
                Err(Error::Disconnected)
            }
        };
        let woke = sleep_until(
            bell,
            || {
                self.observe_ringer(bell);
                ready() || peer.closed() || stuck()
            },
            deadline,
            HOLDER_CHECKS.then_some(look),
        );
        if stuck() {
            return Err(Error::Corrupt("a frame header fails its check"));
        }
        // Once the peer is gone, what it sent is still received.
        match woke {
            _ if ready() => Ok(()),
            Ok(()) => Err(Error::Disconnected),
            Err(e) => Err(e),
        }
    }

    #[cfg(not(loom))]
    fn spin(&self, ready: &impl Fn() -> bool) -> bool {
        let start = Instant::now();
        loop {
            for _ in 0..32 {
                spin_loop();
                if ready() {
                    return true;
                }
            }
            let spent = start.elapsed();
            if spent > SPIN_BUDGET {
                return false;
            }
            if spent > SPIN_HOT {
                std::thread::yield_now();
            }
        }
    }

    #[cfg(loom)]
    fn spin(&self, ready: &impl Fn() -> bool) -> bool {
        spin_loop();
        ready()
    }
}
