//! The ring's reader against a shared memory image that another process
//! corrupted.
//!
//! The input is a ring capacity (64 to 4096 bytes), a mode (`Ring::new`,
//! which streams frames larger than the ring, or `Ring::whole_frames`) and a
//! sequence of operations: a writer sends messages, another process
//! scribbles on the data bytes, forges headers with lying lengths, or moves
//! `head` and `tail` anywhere; the reader receives into a `Sink::Vec` or a
//! `Sink::Slice` of a chosen size, and polls.
//!
//! Every receive must return `Ok` or a typed error and never panic; no call
//! may block (the writer's reader is gone as soon as the writer would wait,
//! the reader's writer is gone, deadlines are now); and a receive allocates
//! no more than the ring holds, whatever a length prefix claims (a counting
//! global allocator checks each allocation made during a receive). While
//! nothing has been corrupted, messages arrive whole and in order, and a
//! too-small slice gives `BufferTooSmall` and leaves the message in place.
//!
//! `cargo +nightly fuzz run ring_reader -- -max_total_time=60` (from procs-ipc/)
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use procs_ipc::Error;
use procs_ipc::frame::{HEADER, Header, padded};
use procs_ipc::ring::{Bytes, Peer, Ring, RingCtl, Sink};

// ----- the largest allocation made during a receive -----

/// The system allocator, recording the largest allocation while armed.
struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn note(size: usize) {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(size, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// bookkeeping touches only two atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::note(layout.size());
        // SAFETY: forwarded with the caller's layout, as GlobalAlloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::note(layout.size());
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::note(new_size);
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the largest allocation it made.
fn counting<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.store(0, Ordering::Relaxed);
    ARMED.store(true, Ordering::Relaxed);
    let r = f();
    ARMED.store(false, Ordering::Relaxed);
    (r, LARGEST.load(Ordering::Relaxed))
}

// ----- the shared memory image -----

/// The ring's data bytes, in this process.
struct Mem(Vec<Cell<u8>>);

impl Bytes for &Mem {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn write(&self, at: usize, src: &[u8]) {
        // Indexing panics on a write outside the ring: a bug of the ring.
        for (cell, b) in self.0[at..at + src.len()].iter().zip(src) {
            cell.set(*b);
        }
    }

    fn read(&self, at: usize, dst: &mut [u8]) {
        let cells = &self.0[at..at + dst.len()];
        for (d, cell) in dst.iter_mut().zip(cells) {
            *d = cell.get();
        }
    }
}

/// `head` and `tail` of a control block, as another process with the
/// segment mapped could overwrite them.
struct Positions<'a>(&'a RingCtl);

impl Positions<'_> {
    fn head(&self) -> u64 {
        self.0.positions().0
    }

    fn tail(&self) -> u64 {
        self.0.positions().1
    }

    fn set_head(&self, v: u64) {
        self.0.set_positions(v, self.tail());
    }

    fn set_tail(&self, v: u64) {
        self.0.set_positions(self.head(), v);
    }
}

// ----- the peers -----

/// The reader's writer: gone, so that a receive that finds too little
/// returns `Disconnected` instead of waiting.
struct WriterGone;

impl Peer for WriterGone {
    fn closed(&self) -> bool {
        true
    }
    fn alive(&self) -> bool {
        false
    }
}

/// The writer's reader: there when a send starts, gone as soon as the
/// writer would wait for room (so a streamed frame that does not fit is
/// left torn, as by a writer that died mid-stream).
struct ReaderLeaves(Cell<u32>);

impl Peer for ReaderLeaves {
    fn closed(&self) -> bool {
        let n = self.0.get();
        self.0.set(n + 1);
        n > 0
    }
    fn alive(&self) -> bool {
        false
    }
}

// ----- the input -----

#[derive(Arbitrary, Debug)]
struct Input {
    /// Capacity 64 << (n % 7): 64 to 4096 bytes.
    capacity: u8,
    /// `Ring::whole_frames` rather than `Ring::new`.
    whole_frames: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// The writer sends a message of `len % (3 * capacity + 1)` bytes.
    Send { len: u16, seed: u8 },
    /// The reader receives into a vector that already holds `prefill`
    /// bytes (the receive replaces them).
    RecvVec { prefill: u8 },
    /// The reader receives into a slice of `len % (3 * capacity + 1)` bytes.
    RecvSlice { len: u16 },
    /// The reader polls.
    Poll,
    /// Another process flips bits of the data byte at `tail + at`.
    Scribble { at: u16, xor: u8 },
    /// Another process writes a well-formed header claiming `len` bytes at
    /// `tail + 8 * slot`.
    Forge { slot: u8, len: u32 },
    /// Another process moves `head` by `delta`.
    MoveHead { delta: i16 },
    /// Another process moves `tail` by `delta`.
    MoveTail { delta: i16 },
    /// Another process stores any value in `head`.
    SetHead(u64),
    /// Another process stores any value in `tail`.
    SetTail(u64),
}

fn message(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i as u8).wrapping_mul(31)))
        .collect()
}

fn frame(len: usize) -> u64 {
    (HEADER + padded(len)) as u64
}

/// What the ring must hold while nothing was corrupted: the messages sent
/// and not yet received, in order.
struct Model {
    sent: VecDeque<Vec<u8>>,
    /// Set once the image is no longer what the protocol would leave.
    corrupt: bool,
}

impl Model {
    fn pending(&self) -> u64 {
        self.sent.iter().map(|m| frame(m.len())).sum()
    }
}

fuzz_target!(|input: Input| {
    let cap = 64u64 << (input.capacity % 7);
    let ctl = RingCtl::new(cap);
    let mem = Mem((0..cap).map(|_| Cell::new(0)).collect());
    let (writer, reader) = if input.whole_frames {
        (
            Ring::whole_frames(&ctl, &mem),
            Ring::whole_frames(&ctl, &mem),
        )
    } else {
        (Ring::new(&ctl, &mem), Ring::new(&ctl, &mem))
    };
    let pos = Positions(&ctl);
    let mut model = Model {
        sent: VecDeque::new(),
        corrupt: false,
    };
    let max_len = 3 * cap as usize + 1;

    for op in input.ops.iter().take(64) {
        match *op {
            Op::Send { len, seed } => {
                let m = message(len as usize % max_len, seed);
                let before = pos.head();
                let r = writer.send(&m, Some(Instant::now()), &ReaderLeaves(Cell::new(0)));
                match r {
                    Ok(()) => {
                        assert_eq!(pos.head(), before.wrapping_add(frame(m.len())));
                        model.sent.push_back(m);
                    }
                    Err(Error::TooLarge { len, max }) => {
                        assert!(input.whole_frames, "only whole frames are limited");
                        assert_eq!((len, max), (m.len(), cap as usize - HEADER));
                        assert!(frame(m.len()) > cap);
                        assert_eq!(pos.head(), before, "a refused send published");
                    }
                    Err(Error::Disconnected | Error::Timeout) => {
                        // A frame written whole publishes nothing until it is
                        // all in; a streamed one may leave its beginning.
                        if pos.head() != before {
                            assert!(!input.whole_frames && frame(m.len()) > cap);
                            model.corrupt = true;
                        }
                    }
                    // Positions another process moved off a frame boundary.
                    Err(Error::Corrupt(_)) if model.corrupt => {}
                    Err(e) => panic!("send: unexpected {e:?}"),
                }
            }
            Op::RecvVec { prefill } => {
                let pending = reader.pending();
                let mut v = vec![0xA5u8; prefill as usize];
                let (r, largest) = counting(|| {
                    reader.recv(&mut Sink::Vec(&mut v), Some(Instant::now()), &WriterGone)
                });
                // What was published, at most the ring (an out-of-range
                // head is refused before anything is read).
                let there = pending.min(cap) as usize;
                assert!(
                    // A small frame (at most 64 bytes) may come through a corrupted head.
                    largest <= 2 * there.max(prefill as usize).max(64),
                    "a receive allocated {largest} bytes with {there} in the ring: {r:?}"
                );
                if let Ok(n) = r {
                    assert_eq!(v.len(), n, "the vector does not hold the message alone");
                }
                check_recv(&mut model, r, &v, pending, cap);
            }
            Op::RecvSlice { len } => {
                let pending = reader.pending();
                let mut buf = vec![0u8; len as usize % max_len];
                let (r, largest) = counting(|| {
                    reader.recv(
                        &mut Sink::Slice(&mut buf),
                        Some(Instant::now()),
                        &WriterGone,
                    )
                });
                assert_eq!(largest, 0, "a receive into a slice allocated: {r:?}");
                if let Ok(n) = r {
                    assert!(n <= buf.len());
                }
                if let Err(Error::BufferTooSmall { needed, available }) = r {
                    assert!(needed > available && available == buf.len());
                    assert_eq!(reader.pending(), pending, "a refused receive consumed");
                }
                check_recv(&mut model, r, &buf, pending, cap);
            }
            Op::Poll => {
                let r = reader.poll(Some(Instant::now()), &WriterGone);
                match r {
                    Ok(_) => {}
                    Err(Error::Corrupt(_)) => assert!(model.corrupt),
                    Err(e) => panic!("poll: unexpected {e:?}"),
                }
            }
            Op::Scribble { at, xor } => {
                let i = (pos.tail().wrapping_add(at as u64) % cap) as usize;
                let c = &mem.0[i];
                c.set(c.get() ^ xor);
                model.corrupt |= xor != 0;
            }
            Op::Forge { slot, len } => {
                let at = (pos.tail().wrapping_add(8 * slot as u64) % cap) as usize;
                for (i, b) in Header::new(len).to_bytes().into_iter().enumerate() {
                    mem.0[(at + i) % cap as usize].set(b);
                }
                model.corrupt = true;
            }
            Op::MoveHead { delta } => {
                pos.set_head(pos.head().wrapping_add_signed(delta as i64));
                model.corrupt |= delta != 0;
            }
            Op::MoveTail { delta } => {
                pos.set_tail(pos.tail().wrapping_add_signed(delta as i64));
                model.corrupt |= delta != 0;
            }
            Op::SetHead(v) => {
                pos.set_head(v);
                model.corrupt = true;
            }
            Op::SetTail(v) => {
                pos.set_tail(v);
                model.corrupt = true;
            }
        }
        if !model.corrupt {
            assert_eq!(reader.pending(), model.pending());
        }
    }
});

/// Checks a receive's result: a typed error or a length that fits what was
/// there; and, while nothing was corrupted, exactly what the model expects.
fn check_recv(model: &mut Model, r: procs_ipc::Result<usize>, got: &[u8], pending: u64, cap: u64) {
    match &r {
        Ok(n) => {
            // The reader trusts a header stamped for its position even where
            // a corrupted `head` says nothing is published: a small frame
            // (read on the stack) may then come through.
            assert!(
                (*n as u64) < pending.min(cap) || (model.corrupt && *n <= 56),
                "received {n} of {pending} bytes"
            );
        }
        Err(
            Error::Corrupt(_) | Error::Disconnected | Error::BufferTooSmall { .. } | Error::Timeout,
        ) => {}
        Err(e) => panic!("recv: unexpected {e:?}"),
    }
    if model.corrupt {
        return;
    }
    match (r, model.sent.front()) {
        (Ok(n), Some(m)) => {
            assert_eq!(n, m.len());
            assert_eq!(&got[..n], &m[..], "a message changed on its way");
            model.sent.pop_front();
        }
        (Err(Error::BufferTooSmall { needed, .. }), Some(m)) => assert_eq!(needed, m.len()),
        (Err(Error::Disconnected), None) => {}
        (r, front) => panic!(
            "recv gave {r:?} with {:?} bytes waiting",
            front.map(|m| m.len())
        ),
    }
}
