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

use crate::doorbell::Doorbell;
use crate::error::{Error, Result};
use crate::frame::{HEADER, Header, padded};
use crate::sync::{AtomicU64, HOLDER_CHECKS, Ordering, spin_loop};

/// How often a sleeping side checks that the other side lives: the bound on
/// how long a death goes unnoticed.
pub const CHECK_EVERY: Duration = Duration::from_millis(20);

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

#[repr(C, align(64))]
#[derive(Debug, Default)]
struct Line<T>(T);

/// The control block of a ring, in shared memory.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RingCtl {
    head: Line<AtomicU64>,
    tail: Line<AtomicU64>,
    data_bell: Line<Doorbell>,
    space_bell: Line<Doorbell>,
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
        self.head.0.store(head, Ordering::Release);
        self.tail.0.store(tail, Ordering::Release);
    }

    /// Where the writer will write next (for the writer itself: it alone
    /// moves it).
    #[inline]
    pub(crate) fn write_position(&self) -> u64 {
        self.head.0.load(Ordering::Relaxed)
    }

    /// Where the reader will read next (for the reader itself: it alone
    /// moves it).
    #[inline]
    pub(crate) fn read_position(&self) -> u64 {
        self.tail.0.load(Ordering::Relaxed)
    }

    /// The positions `(head, tail)`: for tests and fuzzing.
    #[doc(hidden)]
    pub fn positions(&self) -> (u64, u64) {
        (
            self.head.0.load(Ordering::Acquire),
            self.tail.0.load(Ordering::Acquire),
        )
    }

    /// Wakes both sides, so that they check on their peer.
    pub fn wake_both(&self) {
        self.data_bell.0.ring();
        self.space_bell.0.ring();
    }
}

/// The ring's data bytes.
pub trait Bytes {
    /// How many bytes there are: the ring's capacity, as its creator mapped
    /// it (the capacity in the shared control block must agree).
    fn len(&self) -> usize;
    /// Whether there are no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies `src` to offset `at` (`at + src.len()` within the capacity).
    fn write(&self, at: usize, src: &[u8]);
    /// Copies from offset `at` into `dst`.
    fn read(&self, at: usize, dst: &mut [u8]);

    /// Loads the 8-byte word at offset `at` (a multiple of 8) with acquire
    /// ordering: a frame header. The default reads the bytes and fences,
    /// which is right for bytes that are themselves atomics (a torn word only
    /// fails the header's check).
    fn load_word(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        self.read(at, &mut b);
        crate::sync::fence(Ordering::Acquire);
        u64::from_le_bytes(b)
    }

    /// Stores the 8-byte word at offset `at` (a multiple of 8) with release
    /// ordering, after the bytes written before it.
    fn store_word(&self, at: usize, word: u64) {
        crate::sync::fence(Ordering::Release);
        self.write(at, &word.to_le_bytes());
    }

    /// Copies the 8 bytes of `word` (little endian) to offset `at` (a
    /// multiple of 8), as [`write`](Bytes::write) does: a small frame's
    /// payload goes in word by word.
    #[inline]
    fn write_word(&self, at: usize, word: u64) {
        self.write(at, &word.to_le_bytes());
    }

    /// Copies the 8 bytes at offset `at` (a multiple of 8) out as a word
    /// (little endian), as [`read`](Bytes::read) does.
    #[inline]
    fn read_word(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        self.read(at, &mut b);
        u64::from_le_bytes(b)
    }
}

/// Whether the other side of a ring is still there.
pub trait Peer {
    /// Cheap: the other side closed its end (every holder let go).
    fn closed(&self) -> bool;
    /// Thorough: some holder of the other side lives (may read /proc).
    fn alive(&self) -> bool;
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

/// One side's view of a ring: its control block and its data.
pub struct Ring<'a, B: Bytes> {
    ctl: &'a RingCtl,
    data: B,
    cap: u64,
    streams: bool,
    hints: Option<&'a Hints>,
    /// Called by the writer after each publish (see [`Ring::notified`]).
    notify: Option<&'a dyn Fn(u64)>,
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

    // ----- the writer's side -----

    /// Sends `payload` as one frame, waiting for room until `deadline`.
    /// A frame larger than the ring is streamed; its deadline applies until
    /// its first byte is in, then it goes through whole (or the reader dies).
    #[inline]
    pub fn send(&self, payload: &[u8], deadline: Option<Instant>, peer: &dyn Peer) -> Result<()> {
        if payload.len() <= SMALL - HEADER && self.send_small(payload, peer) {
            return Ok(());
        }
        self.send_any(payload, deadline, peer)
    }

    /// Sends a small frame (the payload up to 56 bytes) if nothing stands in
    /// the way: room this side already knows of, a position on a frame
    /// boundary, a reader still there. `false` leaves the frame to
    /// `send_any`, which checks, decides and waits as it must.
    #[inline]
    fn send_small(&self, payload: &[u8], peer: &dyn Peer) -> bool {
        let head = self.ctl.head.0.load(Ordering::Relaxed);
        let frame = HEADER as u64 + padded(payload.len()) as u64;
        if self.corrupt
            || !head.is_multiple_of(HEADER as u64)
            || frame > self.cap
            || self.known_room(head) < frame
            || peer.closed()
        {
            return false;
        }
        // As `send_any` writes a whole frame: the payload, then the header
        // with release, then `head`.
        self.put_words(head.wrapping_add(HEADER as u64), payload);
        self.put_header(head, Header::new(payload.len() as u32).word_at(head));
        self.publish(head.wrapping_add(frame));
        true
    }

    /// The room at `head` as this side last saw it (a lower bound).
    #[inline]
    fn known_room(&self, head: u64) -> u64 {
        let tail = match self.hints {
            Some(h) => h.tail.load(std::sync::atomic::Ordering::Relaxed),
            // Acquire: the reader is done with the bytes it freed.
            None => self.ctl.tail.0.load(Ordering::Acquire),
        };
        self.cap.saturating_sub(head.wrapping_sub(tail))
    }

    /// Copies `payload` into the ring at position `pos` (a multiple of 8)
    /// a word at a time, its last word padded with zeros.
    #[inline]
    fn put_words(&self, pos: u64, payload: &[u8]) {
        let mask = self.cap - 1;
        let mut at = pos;
        let mut words = payload.chunks_exact(8);
        for w in &mut words {
            let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            self.data.write_word((at & mask) as usize, w);
            at = at.wrapping_add(8);
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut w = 0u64;
            for (i, b) in rest.iter().enumerate() {
                w |= u64::from(*b) << (8 * i);
            }
            self.data.write_word((at & mask) as usize, w);
        }
    }

    /// Copies `dst.len()` bytes out of the ring at position `pos` (a
    /// multiple of 8), a word at a time (the last one in part: the padding
    /// is not copied).
    #[inline]
    fn get_words(&self, pos: u64, dst: &mut [u8]) {
        let mask = self.cap - 1;
        let mut at = pos;
        let mut words = dst.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.data.read_word((at & mask) as usize).to_le_bytes());
            at = at.wrapping_add(8);
        }
        let rest = words.into_remainder();
        if !rest.is_empty() {
            let w = self.data.read_word((at & mask) as usize);
            for (i, b) in rest.iter_mut().enumerate() {
                *b = (w >> (8 * i)) as u8;
            }
        }
    }

    fn send_any(&self, payload: &[u8], deadline: Option<Instant>, peer: &dyn Peer) -> Result<()> {
        self.check()?;
        if peer.closed() {
            return Err(Error::Disconnected);
        }
        let len = match u32::try_from(payload.len()) {
            Ok(l) if l <= Header::MAX_LEN => l,
            _ => {
                return Err(Error::TooLarge {
                    len: payload.len(),
                    max: Header::MAX_LEN as usize,
                });
            }
        };
        let head = self.ctl.head.0.load(Ordering::Relaxed);
        if !head.is_multiple_of(HEADER as u64) {
            return Err(Error::Corrupt(
                "the writer's position is not a frame boundary",
            ));
        }
        let frame = HEADER as u64 + padded(payload.len()) as u64;
        let header = Header::new(len).word_at(head);
        if !self.streams && frame > self.cap {
            return Err(Error::TooLarge {
                len: payload.len(),
                max: self.cap as usize - HEADER,
            });
        }
        if whole(frame, self.cap, self.streams) {
            self.wait_room(head, frame, deadline, peer)?;
            let body = head.wrapping_add(HEADER as u64);
            // The padding is left as it is: no reader looks at it, and the
            // next header (where readers look) is written for its position.
            self.put(body, payload);
            // The header last, with release: a reader polling it sees the
            // whole frame once it sees the header.
            self.put_header(head, header);
            self.publish(head.wrapping_add(frame));
            return Ok(());
        }
        // Streamed: the header, then the payload in pieces.
        self.wait_room(head, HEADER as u64, deadline, peer)?;
        self.put_header(head, header);
        let mut pos = head.wrapping_add(HEADER as u64);
        self.publish(pos);
        let total = padded(payload.len());
        let mut sent = 0usize;
        while sent < total {
            let room = self.wait_room(pos, 8, None, peer)?;
            let n = (room.min(CHUNK).min((total - sent) as u64) as usize) & !7;
            let data_end = payload.len().min(sent + n);
            if data_end > sent {
                self.put(pos, &payload[sent..data_end]);
            }
            if sent + n > payload.len() {
                let zeros = [0u8; 8];
                let from = data_end.max(sent);
                self.put(
                    pos.wrapping_add((from - sent) as u64),
                    &zeros[..sent + n - from],
                );
            }
            pos = pos.wrapping_add(n as u64);
            sent += n;
            self.publish(pos);
        }
        Ok(())
    }

    #[inline]
    fn put_header(&self, pos: u64, header: u64) {
        self.data
            .store_word((pos & (self.cap - 1)) as usize, header);
    }

    #[inline]
    fn publish(&self, head: u64) {
        // Release: the frame's bytes are seen by a reader that sees `head`.
        self.ctl.head.0.store(head, Ordering::Release);
        self.ctl.data_bell.0.ring();
        if let Some(notify) = self.notify {
            notify(head);
        }
    }

    /// Waits until `need` bytes are free at `head`; returns the room.
    fn wait_room(
        &self,
        head: u64,
        need: u64,
        deadline: Option<Instant>,
        peer: &dyn Peer,
    ) -> Result<u64> {
        let room_at = |tail: u64| {
            let used = head.wrapping_sub(tail);
            self.cap.saturating_sub(used)
        };
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(h) = self.hints {
            // A tail seen before (with acquire): the bytes it freed are free.
            let room = room_at(h.tail.load(Relaxed));
            if room >= need {
                return Ok(room);
            }
        }
        // Acquire: the reader is done with the bytes it freed.
        let room = || room_at(self.ctl.tail.0.load(Ordering::Acquire));
        self.wait(
            &self.ctl.space_bell.0,
            || room() >= need,
            &|| false,
            deadline,
            peer,
        )?;
        if let Some(h) = self.hints {
            h.tail
                .store(self.ctl.tail.0.load(Ordering::Acquire), Relaxed);
        }
        Ok(room())
    }

    // ----- the reader's side -----

    /// Receives one frame into `sink`, waiting until `deadline` for it to
    /// begin. Returns the payload's length. A streamed message that has begun
    /// is received whole, or `Disconnected` if its writer goes: the deadline
    /// applies until its first piece (a message is never half taken).
    #[inline]
    pub fn recv(
        &self,
        sink: &mut Sink<'_>,
        deadline: Option<Instant>,
        peer: &dyn Peer,
    ) -> Result<usize> {
        if let Some(len) = self.recv_small(sink) {
            return Ok(len);
        }
        self.recv_any(sink, deadline, peer)
    }

    /// Receives a small frame (up to 64 bytes in all) that is already there
    /// and fits `sink`. `None` leaves everything to `recv_any`, which checks,
    /// decides and waits as it must.
    #[inline]
    fn recv_small(&self, sink: &mut Sink<'_>) -> Option<usize> {
        let tail = self.ctl.tail.0.load(Ordering::Relaxed);
        if self.corrupt || !tail.is_multiple_of(HEADER as u64) {
            return None;
        }
        // Acquire: the frame's bytes, written before its header, are there.
        let word = self.data.load_word((tail & (self.cap - 1)) as usize);
        let len = Header::from_word_at(word, tail)?.len();
        let frame = HEADER as u64 + padded(len) as u64;
        if frame > SMALL as u64 || frame > self.cap || sink.room().is_some_and(|r| r < len) {
            return None;
        }
        let body = tail.wrapping_add(HEADER as u64);
        match sink {
            Sink::Vec(v) => {
                let mut small = [0u8; SMALL - HEADER];
                self.get_words(body, &mut small[..len]);
                v.clear();
                v.extend_from_slice(&small[..len]);
            }
            Sink::Slice(s) => self.get_words(body, &mut s[..len]),
        }
        self.consume(tail.wrapping_add(frame));
        Some(len)
    }

    fn recv_any(
        &self,
        sink: &mut Sink<'_>,
        deadline: Option<Instant>,
        peer: &dyn Peer,
    ) -> Result<usize> {
        self.check()?;
        let tail = self.ctl.tail.0.load(Ordering::Relaxed);
        let header = self.wait_header(tail, deadline, peer)?;
        let len = header.len();
        if let Some(room) = sink.room()
            && room < len
        {
            return Err(Error::BufferTooSmall {
                needed: len,
                available: room,
            });
        }
        let frame = HEADER as u64 + padded(len) as u64;
        if whole(frame, self.cap, self.streams) {
            // The header was stored after the frame's bytes (release) and
            // loaded here (acquire): they are all there.
            if frame > self.cap {
                return Err(Error::Corrupt("a frame is longer than the ring"));
            }
            let body = tail.wrapping_add(HEADER as u64);
            if frame <= SMALL as u64 {
                match sink {
                    Sink::Vec(v) => {
                        let mut small = [0u8; SMALL - HEADER];
                        self.get(body, &mut small[..len]);
                        v.clear();
                        v.extend_from_slice(&small[..len]);
                    }
                    Sink::Slice(s) => self.get(body, &mut s[..len]),
                }
                self.consume(tail.wrapping_add(frame));
                return Ok(len);
            }
            // A larger whole frame: nothing is allocated for it before its
            // length is checked against what the writer published. A writer
            // publishes a whole frame with one store, right after its
            // header: once `head` moves past the header it covers the frame,
            // or the length lies.
            let head = self.wait_data(tail, HEADER as u64, deadline, peer)?;
            if self.distance(head, tail)? < frame {
                return Err(Error::Corrupt("a frame is longer than what was published"));
            }
            if let Sink::Vec(v) = sink {
                v.resize(len, 0);
            }
            sink.put(0, |dst| self.get(body, &mut dst[..len]));
            self.consume(tail.wrapping_add(frame));
            return Ok(len);
        }
        // Streamed: take the header, then gather the pieces.
        let mut pos = tail.wrapping_add(HEADER as u64);
        self.consume(pos);
        let total = padded(len);
        let mut got = 0usize;
        while got < total {
            let head = match self.wait_data(pos, 1, None, peer) {
                Ok(h) => h,
                Err(e) => {
                    if let Sink::Vec(v) = sink {
                        v.clear();
                    }
                    return Err(e);
                }
            };
            let n = head.wrapping_sub(pos).min(CHUNK).min((total - got) as u64) as usize;
            let useful = len.saturating_sub(got).min(n);
            if useful > 0 {
                if let Sink::Vec(v) = sink {
                    v.resize(got + useful, 0);
                }
                sink.put(got, |dst| self.get(pos, &mut dst[..useful]));
            }
            pos = pos.wrapping_add(n as u64);
            got += n;
            self.consume(pos);
        }
        Ok(len)
    }

    #[inline]
    fn consume(&self, tail: u64) {
        // Release: the bytes were read before the writer may overwrite them.
        self.ctl.tail.0.store(tail, Ordering::Release);
        self.ctl.space_bell.0.ring();
    }

    /// Waits until `need` bytes are published after `tail`; returns `head`.
    fn wait_data(
        &self,
        tail: u64,
        need: u64,
        deadline: Option<Instant>,
        peer: &dyn Peer,
    ) -> Result<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(h) = self.hints {
            // A head seen before (with acquire): the bytes before it are there.
            let head = h.head.load(Relaxed);
            if self.distance(head, tail).is_ok_and(|a| a >= need) {
                return Ok(head);
            }
        }
        // Acquire: the bytes before `head` are seen.
        let available = || self.distance(self.ctl.head.0.load(Ordering::Acquire), tail);
        available()?;
        self.wait(
            &self.ctl.data_bell.0,
            || available().is_ok_and(|a| a >= need),
            &|| false,
            deadline,
            peer,
        )?;
        let head = self.ctl.head.0.load(Ordering::Acquire);
        if let Some(h) = self.hints {
            h.head.store(head, Relaxed);
        }
        Ok(head)
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

    /// Waits until the header of the frame at `tail` is there (the header
    /// word itself says so: it checks only for this position); returns it.
    fn wait_header(&self, tail: u64, deadline: Option<Instant>, peer: &dyn Peer) -> Result<Header> {
        if !tail.is_multiple_of(HEADER as u64) {
            return Err(Error::Corrupt(
                "the reader's position is not a frame boundary",
            ));
        }
        let at = (tail & (self.cap - 1)) as usize;
        let header = || Header::parse_at(self.data.load_word(at).to_le_bytes(), tail);
        let valid = || Header::from_word_at(self.data.load_word(at), tail).is_some();
        // The writer published past the header, yet it does not check: the
        // ring was written by something else than a writer of this library.
        let stuck = || match self.distance(self.ctl.head.0.load(Ordering::Acquire), tail) {
            Ok(published) => published >= HEADER as u64 && !valid(),
            Err(_) => true,
        };
        self.wait(&self.ctl.data_bell.0, valid, &stuck, deadline, peer)?;
        header()
    }

    /// Whether a frame (or its beginning) is waiting, waiting until
    /// `deadline`; `Ok(true)` also when the writer is gone (a receive would
    /// not block: it would report `Disconnected`).
    pub fn poll(&self, deadline: Option<Instant>, peer: &dyn Peer) -> Result<bool> {
        self.check()?;
        let tail = self.ctl.tail.0.load(Ordering::Relaxed);
        match self.wait_header(tail, deadline, peer) {
            Ok(_) | Err(Error::Disconnected) => Ok(true),
            Err(Error::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether a receive would not wait: a frame (or its beginning) is
    /// there, the writer's side is closed, or the ring is damaged (the
    /// receive reports it at once). Cheap: the writer's life is not checked
    /// (see [`Peer::alive`]).
    pub fn recv_ready(&self, peer: &dyn Peer) -> bool {
        let tail = self.ctl.tail.0.load(Ordering::Relaxed);
        if self.corrupt || !tail.is_multiple_of(HEADER as u64) {
            return true;
        }
        let word = self.data.load_word((tail & (self.cap - 1)) as usize);
        if Header::from_word_at(word, tail).is_some() {
            return true;
        }
        // Published past a header that does not check: corrupt, at once.
        let published = self.distance(self.ctl.head.0.load(Ordering::Acquire), tail);
        !published.is_ok_and(|p| p < HEADER as u64) || peer.closed()
    }

    /// The doorbell the reader sleeps on for data (for a wait on several
    /// rings at once).
    pub fn data_bell(&self) -> &'a Doorbell {
        &self.ctl.data_bell.0
    }

    /// Bytes published and not yet consumed.
    pub fn pending(&self) -> u64 {
        let head = self.ctl.head.0.load(Ordering::Acquire);
        let tail = self.ctl.tail.0.load(Ordering::Acquire);
        self.distance(head, tail).unwrap_or(head.wrapping_sub(tail))
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
        // When the peer's life is next checked (it reads /proc: not on
        // every wake-up, but at least every CHECK_EVERY while asleep).
        let mut next_check: Option<Instant> = None;
        loop {
            // What can never become ready, whoever lives.
            if stuck() {
                return Err(Error::Corrupt("a frame header fails its check"));
            }
            let due = HOLDER_CHECKS && next_check.is_none_or(|c| Instant::now() >= c);
            if peer.closed() || (due && !peer.alive()) {
                return if ready() {
                    Ok(())
                } else {
                    Err(Error::Disconnected)
                };
            }
            if due {
                next_check = Some(Instant::now() + CHECK_EVERY);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return if ready() { Ok(()) } else { Err(Error::Timeout) };
            }
            let until = match (deadline, next_check) {
                (Some(d), Some(c)) => Some(d.min(c)),
                (d, c) => d.or(c),
            };
            // Closing rings the bell after marking the end closed: checking
            // it again once registered as a sleeper cannot miss the close.
            if bell.sleep(|| ready() || peer.closed(), until) && ready() {
                return Ok(());
            }
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
