//! Property tests of the framing: frame headers, and frames through a real
//! ring in a heap buffer, a writer thread and a reader thread standing in for
//! the two processes.
//!
//! `cargo test -p procs-ipc --test framing`

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::thread;
use std::time::Instant;

use procs_ipc::Error;
use procs_ipc::frame::{HEADER, Header, padded};
use procs_ipc::ring::{Bytes, Peer, Ring, RingCtl, Sink, WHOLE_MAX};
use proptest::prelude::*;

// ----- a ring on the heap -----

/// Ring data on the heap, one atomic per byte: the two threads share it
/// without `unsafe`, and the ring's release and acquire of `head` and `tail`
/// order these relaxed accesses as they order the copies of shared memory.
struct HeapBytes(Vec<AtomicU8>);

impl HeapBytes {
    fn new(len: u64) -> Self {
        HeapBytes((0..len).map(|_| AtomicU8::new(0)).collect())
    }

    /// Flips bits of the byte at offset `at`, as a stray write would.
    fn flip(&self, at: usize, mask: u8) {
        self.0[at].fetch_xor(mask, Ordering::Relaxed);
    }
}

impl Bytes for &HeapBytes {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn write(&self, at: usize, src: &[u8]) {
        for (cell, b) in self.0[at..at + src.len()].iter().zip(src) {
            cell.store(*b, Ordering::Relaxed);
        }
    }

    fn read(&self, at: usize, dst: &mut [u8]) {
        let cells = &self.0[at..at + dst.len()];
        for (d, cell) in dst.iter_mut().zip(cells) {
            *d = cell.load(Ordering::Relaxed);
        }
    }
}

/// One side of a ring, as the other side sees it: closed once its thread is
/// done (or has panicked, so that the other side fails instead of hanging).
#[derive(Default)]
struct Side(AtomicBool);

impl Peer for Side {
    fn closed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
    fn alive(&self) -> bool {
        !self.closed()
    }
}

/// Closes a side when its thread ends, however it ends.
struct Leaves<'a>(&'a Side, &'a RingCtl);

impl Drop for Leaves<'_> {
    fn drop(&mut self) {
        (self.0).0.store(true, Ordering::Release);
        self.1.wake_both();
    }
}

/// A writer that is gone: a receive that finds too little does not wait.
fn writer_gone() -> Side {
    Side(AtomicBool::new(true))
}

fn ring<'a>(ctl: &'a RingCtl, data: &'a HeapBytes, whole_frames: bool) -> Ring<'a, &'a HeapBytes> {
    if whole_frames {
        Ring::whole_frames(ctl, data)
    } else {
        Ring::new(ctl, data)
    }
}

/// Bytes a frame of a `len`-byte payload takes in the ring.
fn frame(len: usize) -> u64 {
    (HEADER + padded(len)) as u64
}

/// A message, and how it is received: into a vector (`None`) or into a
/// slice with some bytes to spare.
type Message = (Vec<u8>, Option<usize>);

/// Sends `messages` from one thread and receives them in another, each into
/// a vector (`None`) or a slice `extra` bytes longer than the message; the
/// writer expects `TooLarge` for exactly the frames larger than a
/// whole-frame ring. Returns what the reader received.
fn transfer(cap: u64, whole_frames: bool, messages: &[Message]) -> Vec<Vec<u8>> {
    let ctl = RingCtl::new(cap);
    let data = HeapBytes::new(cap);
    let (writer_side, reader_side) = (Side::default(), Side::default());
    let accepted = |m: &Vec<u8>| !whole_frames || frame(m.len()) <= cap;
    let expected: Vec<_> = messages.iter().filter(|(m, _)| accepted(m)).collect();
    thread::scope(|s| {
        s.spawn(|| {
            let _leaves = Leaves(&writer_side, &ctl);
            let w = ring(&ctl, &data, whole_frames);
            for (m, _) in messages {
                let r = w.send(m, None, &reader_side);
                if accepted(m) {
                    r.expect("a send to a live reader");
                } else {
                    let max = cap as usize - HEADER;
                    assert!(
                        matches!(r, Err(Error::TooLarge { len, max: l }) if len == m.len() && l == max),
                        "a frame of {} bytes in a ring of {cap}: {r:?}",
                        frame(m.len())
                    );
                }
            }
        });
        s.spawn(|| {
            let _leaves = Leaves(&reader_side, &ctl);
            let r = ring(&ctl, &data, whole_frames);
            let mut got = Vec::new();
            for (m, sink) in &expected {
                let mut v = Vec::new();
                let len = match sink {
                    None => r.recv(&mut Sink::Vec(&mut v), None, &writer_side),
                    Some(extra) => {
                        v = vec![0xA5; m.len() + extra];
                        r.recv(&mut Sink::Slice(&mut v), None, &writer_side)
                    }
                }
                .expect("a receive from a live writer");
                v.truncate(len);
                got.push(v);
            }
            // Nothing else arrives: the writer is gone and the ring empty.
            let after = r.recv(&mut Sink::Vec(&mut Vec::new()), None, &writer_side);
            assert!(matches!(after, Err(Error::Disconnected)), "{after:?}");
            assert_eq!(r.pending(), 0);
            got
        })
        .join()
        .expect("the reader panicked")
    })
}

/// A capacity and a list of messages of 0 to 3 capacities, each with how
/// it is received (a vector, or a slice with some bytes to spare).
fn messages(caps: &'static [u64], most: usize) -> impl Strategy<Value = (u64, Vec<Message>)> {
    prop::sample::select(caps).prop_flat_map(move |cap| {
        let message = (
            prop::collection::vec(any::<u8>(), 0..=3 * cap as usize),
            prop::option::of(0usize..16),
        );
        (Just(cap), prop::collection::vec(message, 0..=most))
    })
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Report the failing case; do not write regression files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn messages_arrive_whole_and_in_order((cap, msgs) in messages(&[64, 256, 4096], 12)) {
        let got = transfer(cap, false, &msgs);
        let sent: Vec<&Vec<u8>> = msgs.iter().map(|(m, _)| m).collect();
        prop_assert_eq!(got.iter().collect::<Vec<_>>(), sent);
    }

    #[test]
    fn whole_frame_rings_refuse_too_large_frames_and_deliver_the_rest(
        (cap, msgs) in messages(&[64, 256, 4096], 12),
    ) {
        let got = transfer(cap, true, &msgs);
        let fitting: Vec<&Vec<u8>> =
            msgs.iter().map(|(m, _)| m).filter(|m| frame(m.len()) <= cap).collect();
        prop_assert_eq!(got.iter().collect::<Vec<_>>(), fitting);
    }
}

proptest! {
    #![proptest_config(config(16))]

    /// In a ring larger than 16 KiB, frames up to 16 KiB go whole and larger
    /// ones stream.
    #[test]
    fn frames_above_16_kib_stream_in_a_larger_ring(
        sizes in prop::collection::vec(
            prop_oneof![
                WHOLE_MAX as usize - 64..WHOLE_MAX as usize + 64,
                0usize..=3 * 65536,
            ],
            1..=4,
        ),
        seed in any::<u8>(),
    ) {
        let msgs: Vec<Message> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let m = (0..n).map(|j| (j as u8).wrapping_mul(7) ^ seed ^ i as u8).collect();
                (m, None)
            })
            .collect();
        let got = transfer(65536, false, &msgs);
        let sent: Vec<&Vec<u8>> = msgs.iter().map(|(m, _)| m).collect();
        prop_assert_eq!(got.iter().collect::<Vec<_>>(), sent);
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn headers_round_trip_for_every_length_up_to_the_limit(len in 0..=Header::MAX_LEN) {
        let h = Header::new(len);
        prop_assert_eq!(Header::parse(h.to_bytes()).ok(), Some(h));
        prop_assert_eq!(h.len(), len as usize);
    }

    #[test]
    fn well_formed_headers_beyond_the_limit_are_refused(len in Header::MAX_LEN + 1..=u32::MAX) {
        let r = Header::parse(Header::new(len).to_bytes());
        prop_assert!(matches!(r, Err(Error::Corrupt(_))), "{:?}", r);
    }

    #[test]
    fn parse_accepts_only_what_to_bytes_writes(raw in any::<[u8; HEADER]>()) {
        let len = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        match Header::parse(raw) {
            Ok(h) => prop_assert_eq!(h.to_bytes(), raw),
            Err(Error::Corrupt(_)) => prop_assert!(
                len > Header::MAX_LEN || Header::new(len).to_bytes() != raw
            ),
            Err(e) => prop_assert!(false, "unexpected {:?}", e),
        }
    }

    #[test]
    fn every_changed_byte_of_a_header_is_refused(
        len in 0..=Header::MAX_LEN,
        at in 0..HEADER,
        mask in 1u8..,
    ) {
        let mut raw = Header::new(len).to_bytes();
        raw[at] ^= mask;
        let r = Header::parse(raw);
        prop_assert!(matches!(r, Err(Error::Corrupt(_))), "{:?}", r);
    }
}

/// A capacity, a filler message that moves the ring's start (so that frames
/// wrap around its end), and messages that fit in the ring together.
fn fitting_messages() -> impl Strategy<Value = (u64, usize, Vec<Vec<u8>>)> {
    prop::sample::select(&[64u64, 256, 4096][..]).prop_flat_map(|cap| {
        let payload = cap as usize - HEADER;
        (
            Just(cap),
            0..=payload,
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..=payload), 1..=6),
        )
            .prop_map(move |(cap, filler, mut msgs)| {
                let mut used = 0;
                msgs.retain(|m| {
                    used += frame(m.len());
                    used <= cap
                });
                (cap, filler, msgs)
            })
            .prop_filter("at least one message fits", |(_, _, m)| !m.is_empty())
    })
}

/// A ring holding `msgs` after a filler went through (a single thread: the
/// writer's reader is there, and the sends need no room they lack).
fn filled<'a>(
    ctl: &'a RingCtl,
    data: &'a HeapBytes,
    whole_frames: bool,
    filler: usize,
    msgs: &[Vec<u8>],
) -> Ring<'a, &'a HeapBytes> {
    let r = ring(ctl, data, whole_frames);
    let reader_there = Side::default();
    let now = Some(Instant::now());
    r.send(&vec![1; filler], now, &reader_there)
        .expect("the filler fits");
    let mut v = Vec::new();
    r.recv(&mut Sink::Vec(&mut v), now, &writer_gone())
        .expect("the filler is there");
    for m in msgs {
        r.send(m, now, &reader_there)
            .expect("the messages fit together");
    }
    r
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn a_too_small_slice_gives_buffer_too_small_and_leaves_the_message(
        (cap, filler, msgs) in fitting_messages(),
        whole_frames in any::<bool>(),
        short in any::<prop::sample::Index>(),
    ) {
        let ctl = RingCtl::new(cap);
        let data = HeapBytes::new(cap);
        let r = filled(&ctl, &data, whole_frames, filler, &msgs);
        let gone = writer_gone();
        for m in &msgs {
            if m.is_empty() {
                let n = r.recv(&mut Sink::Slice(&mut []), Some(Instant::now()), &gone);
                prop_assert_eq!(n.ok(), Some(0));
                continue;
            }
            let pending = r.pending();
            let mut small = vec![0; short.index(m.len())];
            let e = r.recv(&mut Sink::Slice(&mut small), Some(Instant::now()), &gone);
            prop_assert!(
                matches!(e, Err(Error::BufferTooSmall { needed, available })
                    if needed == m.len() && available == small.len()),
                "{:?}", e
            );
            prop_assert_eq!(r.pending(), pending);
            let mut exact = vec![0; m.len()];
            let n = r.recv(&mut Sink::Slice(&mut exact), Some(Instant::now()), &gone);
            prop_assert_eq!(n.ok(), Some(m.len()));
            prop_assert_eq!(&exact, m);
        }
    }

    #[test]
    fn a_too_small_slice_leaves_a_streamed_message_whole(
        cap in prop::sample::select(&[64u64, 256][..]),
        extra in 1usize..=512,
        short in any::<prop::sample::Index>(),
        seed in any::<u8>(),
    ) {
        // Larger than the ring: it streams, and waits for the reader.
        let m: Vec<u8> = (0..cap as usize + extra).map(|i| (i as u8) ^ seed).collect();
        let ctl = RingCtl::new(cap);
        let data = HeapBytes::new(cap);
        let (writer_side, reader_side) = (Side::default(), Side::default());
        let got = thread::scope(|s| {
            s.spawn(|| {
                let _leaves = Leaves(&writer_side, &ctl);
                Ring::new(&ctl, &data).send(&m, None, &reader_side).expect("a live reader");
            });
            s.spawn(|| {
                let _leaves = Leaves(&reader_side, &ctl);
                let r = Ring::new(&ctl, &data);
                let mut small = vec![0; short.index(m.len())];
                let e = r.recv(&mut Sink::Slice(&mut small), None, &writer_side);
                assert!(
                    matches!(e, Err(Error::BufferTooSmall { needed, available })
                        if needed == m.len() && available == small.len()),
                    "{e:?}"
                );
                let mut v = Vec::new();
                let n = r.recv(&mut Sink::Vec(&mut v), None, &writer_side);
                assert_eq!(n.ok(), Some(m.len()));
                v
            })
            .join()
            .expect("the reader panicked")
        });
        prop_assert_eq!(got, m);
    }

    #[test]
    fn a_flipped_byte_gives_corrupt_or_a_changed_payload_never_a_panic(
        (cap, filler, msgs) in fitting_messages(),
        whole_frames in any::<bool>(),
        hit in any::<prop::sample::Index>(),
        mask in 1u8..,
    ) {
        let ctl = RingCtl::new(cap);
        let data = HeapBytes::new(cap);
        let r = filled(&ctl, &data, whole_frames, filler, &msgs);
        // The stream position of the first frame, and of the flipped byte.
        let start = frame(filler);
        let published = r.pending();
        let at = hit.index(published as usize) as u64;
        data.flip(((start + at) % cap) as usize, mask);

        let gone = writer_gone();
        let mut frame_start = 0u64;
        for m in &msgs {
            let mut v = Vec::new();
            let got = r.recv(&mut Sink::Vec(&mut v), Some(Instant::now()), &gone);
            let header = frame_start..frame_start + HEADER as u64;
            let payload = header.end..header.end + m.len() as u64;
            if header.contains(&at) {
                // A broken header stops the reader, every time, in place.
                prop_assert!(matches!(got, Err(Error::Corrupt(_))), "{:?}", got);
                let pending = r.pending();
                let again = r.recv(&mut Sink::Vec(&mut v), Some(Instant::now()), &gone);
                prop_assert!(matches!(again, Err(Error::Corrupt(_))), "{:?}", again);
                prop_assert_eq!(r.pending(), pending);
                return Ok(());
            }
            prop_assert_eq!(got.ok(), Some(m.len()));
            let mut want = m.clone();
            if payload.contains(&at) {
                want[(at - payload.start) as usize] ^= mask;
            }
            prop_assert_eq!(v, want);
            frame_start += frame(m.len());
        }
        let end = r.recv(&mut Sink::Vec(&mut Vec::new()), Some(Instant::now()), &gone);
        prop_assert!(matches!(end, Err(Error::Disconnected)), "{:?}", end);
    }

    #[test]
    fn a_lying_length_is_refused_without_allocating_it(
        (cap, filler, msgs) in fitting_messages(),
        whole_frames in any::<bool>(),
        lie in prop_oneof![0u32..8192, 0..=Header::MAX_LEN],
        prefill in 0usize..64,
    ) {
        let ctl = RingCtl::new(cap);
        let data = HeapBytes::new(cap);
        let r = filled(&ctl, &data, whole_frames, filler, &msgs);
        let published = r.pending();
        // The first frame's header now claims `lie` bytes, checked and all.
        let start = frame(filler);
        for (i, b) in Header::new(lie).to_bytes_at(start).into_iter().enumerate() {
            (&data).write(((start + i as u64) % cap) as usize, &[b]);
        }
        let mut v = vec![0xA5; prefill];
        let got = r.recv(&mut Sink::Vec(&mut v), Some(Instant::now()), &writer_gone());
        // Never more than the ring held (and the vector's own doubling).
        prop_assert!(v.capacity() <= (2 * published as usize).max(prefill).max(8),
            "{} bytes allocated for {} in the ring", v.capacity(), published);
        let streamed = !whole_frames && frame(lie as usize) > cap.min(WHOLE_MAX);
        match got {
            // The claimed frame is within what was published, or small
            // (a frame of up to 64 bytes is read on its header alone,
            // without a look at `head`, into a fixed buffer): the reader
            // cannot tell, and takes the bytes there.
            Ok(n) => prop_assert!(n == lie as usize && (frame(n) <= published || frame(n) <= 64)),
            // A streamed frame: the reader took what was there, then found
            // its writer gone before the rest.
            Err(Error::Disconnected) => prop_assert!(streamed && v.is_empty()),
            Err(Error::Corrupt(_)) => prop_assert!(!streamed && frame(lie as usize) > published),
            Err(e) => prop_assert!(false, "unexpected {:?}", e),
        }
    }
}

#[test]
fn positions_that_wrap_past_two_to_the_64_keep_working() {
    // Honest traffic takes centuries to get here; a corrupt position gets
    // here at once. Either way: wrapping arithmetic, no overflow panic.
    let ctl = RingCtl::new(64);
    let data = HeapBytes::new(64);
    let start = u64::MAX - 23; // a frame boundary: a multiple of 8
    ctl.set_positions(start, start);
    let open = Side(AtomicBool::new(false));
    let r = ring(&ctl, &data, false);
    for round in 0..10u8 {
        let msg = vec![round; 13];
        r.send(&msg, Some(Instant::now()), &open).unwrap();
        let mut got = Vec::new();
        assert_eq!(
            r.recv(&mut Sink::Vec(&mut got), Some(Instant::now()), &open)
                .unwrap(),
            13
        );
        assert_eq!(got, msg);
    }
    assert!(ctl.positions().0 < start, "the positions wrapped");
}

#[test]
fn a_capacity_that_disagrees_with_the_memory_is_corrupt() {
    let ctl = RingCtl::new(64);
    let data = HeapBytes::new(128);
    let open = Side(AtomicBool::new(false));
    let r = ring(&ctl, &data, false);
    assert!(matches!(r.send(b"x", None, &open), Err(Error::Corrupt(_))));
    let mut v = Vec::new();
    assert!(matches!(
        r.recv(&mut Sink::Vec(&mut v), None, &open),
        Err(Error::Corrupt(_))
    ));
}

#[test]
fn a_position_off_a_frame_boundary_is_corrupt() {
    let ctl = RingCtl::new(64);
    let data = HeapBytes::new(64);
    ctl.set_positions(13, 13);
    let open = Side(AtomicBool::new(false));
    let r = ring(&ctl, &data, false);
    assert!(matches!(r.send(b"x", None, &open), Err(Error::Corrupt(_))));
    let mut v = Vec::new();
    assert!(matches!(
        r.recv(&mut Sink::Vec(&mut v), None, &open),
        Err(Error::Corrupt(_))
    ));
}
