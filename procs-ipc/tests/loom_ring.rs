//! Model checks of the ring: one writer and one reader (threads standing in
//! for processes) through a tiny ring, so that frames wrap around, wait for
//! room, and stream in pieces. The ring's bytes are loom cells: a payload
//! read that the protocol fails to order after its write is reported, and so
//! is a wake-up that never comes (a deadlock).
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release -p procs-ipc --test loom_ring`
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use procs_ipc::Error;
use procs_ipc::ring::LoomBytes;
use procs_ipc::ring::{Peer, Ring, RingCtl, Sink};

/// The other side, as a flag its thread sets when it closes.
#[derive(Clone)]
struct Flag(Arc<AtomicBool>);

impl Peer for Flag {
    fn closed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
    fn alive(&self) -> bool {
        !self.closed()
    }
}

fn ring(cap: u64) -> (Arc<RingCtl>, LoomBytes) {
    (Arc::new(RingCtl::new(cap)), LoomBytes::new(cap as usize))
}

fn message(n: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| n.wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

#[test]
fn frames_arrive_whole_and_in_order_through_a_wrapping_ring() {
    loom::model(|| {
        let (ctl, bytes) = ring(32);
        let writer_gone = Flag(Arc::new(AtomicBool::new(false)));
        let reader_gone = Flag(Arc::new(AtomicBool::new(false)));
        let (wctl, wbytes, rg) = (ctl.clone(), bytes.clone(), reader_gone.clone());
        let writer = thread::spawn(move || {
            let r = Ring::new(&wctl, wbytes);
            // 16 + 16 + 8 bytes: the third waits for room and wraps.
            r.send(&message(1, 8), None, &rg).unwrap();
            r.send(&message(2, 3), None, &rg).unwrap();
            r.send(&[], None, &rg).unwrap();
        });
        let r = Ring::new(&ctl, bytes);
        for (n, len) in [(1u8, 8usize), (2, 3), (0, 0)] {
            let mut v = Vec::new();
            assert_eq!(
                r.recv(&mut Sink::Vec(&mut v), None, &writer_gone).unwrap(),
                len
            );
            if len > 0 {
                assert_eq!(v, message(n, len));
            }
        }
        writer.join().unwrap();
        assert_eq!(r.pending(), 0);
        drop(reader_gone);
    });
}

#[test]
fn a_message_larger_than_the_ring_streams_through() {
    loom::model(|| {
        let (ctl, bytes) = ring(16);
        let peer = Flag(Arc::new(AtomicBool::new(false)));
        let (wctl, wbytes, p) = (ctl.clone(), bytes.clone(), peer.clone());
        let writer = thread::spawn(move || {
            Ring::new(&wctl, wbytes)
                .send(&message(9, 20), None, &p)
                .unwrap();
        });
        let mut v = Vec::new();
        let len = Ring::new(&ctl, bytes)
            .recv(&mut Sink::Vec(&mut v), None, &peer)
            .unwrap();
        assert_eq!(len, 20);
        assert_eq!(v, message(9, 20));
        writer.join().unwrap();
    });
}

#[test]
fn the_reader_gets_what_was_sent_then_disconnected() {
    loom::model(|| {
        let (ctl, bytes) = ring(32);
        let writer_gone = Flag(Arc::new(AtomicBool::new(false)));
        let reader_gone = Flag(Arc::new(AtomicBool::new(false)));
        let (wctl, wbytes, wg, rg) = (
            ctl.clone(),
            bytes.clone(),
            writer_gone.clone(),
            reader_gone.clone(),
        );
        let writer = thread::spawn(move || {
            Ring::new(&wctl, wbytes)
                .send(&message(5, 4), None, &rg)
                .unwrap();
            // Closing: mark it, then wake the reader to look.
            wg.0.store(true, Ordering::Release);
            wctl.wake_both();
        });
        let r = Ring::new(&ctl, bytes);
        let mut v = Vec::new();
        assert_eq!(
            r.recv(&mut Sink::Vec(&mut v), None, &writer_gone).unwrap(),
            4
        );
        assert_eq!(v, message(5, 4));
        let mut v = Vec::new();
        assert!(matches!(
            r.recv(&mut Sink::Vec(&mut v), None, &writer_gone),
            Err(Error::Disconnected)
        ));
        writer.join().unwrap();
    });
}
