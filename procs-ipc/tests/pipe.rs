//! Pipes between real processes: values, bytes, large and empty messages,
//! timeouts, and ends that close or die.

mod common;

use std::time::{Duration, Instant};

use common::start;
use procs_ipc::{Error, PipeBuilder, pipe, pipe_one_way};

#[test]
fn duplex_ping_pong_between_processes() {
    let (parent, child) = pipe::<(u32, String)>().unwrap();
    let mut p = start(move || {
        while let Ok((n, s)) = child.recv() {
            child.send(&(n + 1, s + "!")).unwrap();
        }
    });
    for i in 0..1000 {
        parent.send(&(i, format!("m{i}"))).unwrap();
        assert_eq!(parent.recv().unwrap(), (i + 1, format!("m{i}!")));
    }
    drop(parent);
    assert_eq!(p.0.join().unwrap(), 0);
}

#[test]
fn one_way_keeps_order_and_ends_with_disconnected() {
    let (rx, tx) = pipe_one_way::<u64>().unwrap();
    let mut p = start(move || {
        for i in 0..100_000u64 {
            tx.send(&i).unwrap();
        }
    });
    for i in 0..100_000u64 {
        assert_eq!(rx.recv().unwrap(), i);
    }
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
    assert_eq!(p.0.join().unwrap(), 0);
}

#[test]
fn a_64_mib_message_goes_through_a_small_ring() {
    let (rx, tx) = PipeBuilder::new()
        .capacity(64 * 1024)
        .one_way::<()>()
        .unwrap();
    let mut p = start(move || {
        let big: Vec<u8> = (0..64 << 20).map(|i: u32| (i % 251) as u8).collect();
        tx.send_bytes(&big).unwrap();
        tx.send_bytes(b"after").unwrap();
    });
    let got = rx.recv_bytes().unwrap();
    assert_eq!(got.len(), 64 << 20);
    assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    assert_eq!(rx.recv_bytes().unwrap(), b"after");
    assert_eq!(p.0.join().unwrap(), 0);
}

#[test]
fn empty_messages_are_messages() {
    let (a, b) = pipe::<()>().unwrap();
    a.send_bytes(b"").unwrap();
    a.send(&()).unwrap();
    a.send_bytes(b"x").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"");
    b.recv().unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"x");
    assert!(!b.poll(Duration::ZERO).unwrap());
}

#[test]
fn a_buffer_too_small_leaves_the_message_receivable() {
    let (a, b) = pipe::<()>().unwrap();
    a.send_bytes(b"hello world").unwrap();
    let mut small = [0u8; 4];
    assert!(matches!(
        b.recv_bytes_into(&mut small),
        Err(Error::BufferTooSmall {
            needed: 11,
            available: 4
        })
    ));
    let mut big = [0u8; 64];
    assert_eq!(b.recv_bytes_into(&mut big).unwrap(), 11);
    assert_eq!(&big[..11], b"hello world");
    // The same for a message streamed through the ring.
    let (rx, tx) = PipeBuilder::new().capacity(64).one_way::<()>().unwrap();
    let mut p = start(move || tx.send_bytes(&[7u8; 1000]).unwrap());
    let mut small = [0u8; 999];
    assert!(matches!(
        rx.recv_bytes_into(&mut small),
        Err(Error::BufferTooSmall { needed: 1000, .. })
    ));
    let mut buf = vec![0u8; 1000];
    assert_eq!(rx.recv_bytes_into(&mut buf).unwrap(), 1000);
    assert!(buf.iter().all(|&b| b == 7));
    p.0.join().unwrap();
}

#[test]
fn pod_slices_go_without_serialization() {
    let (a, b) = pipe::<()>().unwrap();
    let xs: Vec<f64> = (0..1000).map(|i| i as f64 * 0.5).collect();
    a.send_pod(&xs).unwrap();
    assert_eq!(b.recv_pod::<f64>().unwrap(), xs);
    a.send_pod(&[1u32, 2, 3]).unwrap();
    let mut out = [0u32; 8];
    assert_eq!(b.recv_pod_into(&mut out).unwrap(), 3);
    assert_eq!(&out[..3], &[1, 2, 3]);
    a.send_bytes(&[1, 2, 3]).unwrap();
    assert!(matches!(b.recv_pod::<u32>(), Err(Error::Decode(_))));
}

#[test]
fn timeouts_on_an_idle_pipe() {
    let (a, b) = PipeBuilder::new().capacity(64).duplex::<u64>().unwrap();
    let t = Instant::now();
    assert!(matches!(
        b.recv_timeout(Duration::from_millis(30)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(30));
    assert!(!b.poll(Duration::from_millis(10)).unwrap());
    // Fill the 64-byte ring: 4 frames of 16 bytes.
    for _ in 0..4 {
        a.send_bytes_timeout(&[0u8; 8], Duration::ZERO).unwrap();
    }
    let t = Instant::now();
    assert!(matches!(
        a.send_bytes_timeout(&[0u8; 8], Duration::from_millis(30)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(30));
    assert!(b.poll(Duration::ZERO).unwrap());
    b.recv_bytes().unwrap();
    a.send_bytes_timeout(&[0u8; 8], Duration::ZERO).unwrap();
}

#[test]
fn closing_the_sender_delivers_what_was_sent_then_disconnected() {
    let (a, b) = pipe::<u32>().unwrap();
    a.send(&1).unwrap();
    a.send(&2).unwrap();
    a.close();
    assert!(matches!(a.send(&3), Err(Error::Closed)));
    assert_eq!(b.recv().unwrap(), 1);
    assert_eq!(b.recv().unwrap(), 2);
    assert!(matches!(b.recv(), Err(Error::Disconnected)));
    assert!(
        b.poll(Duration::ZERO).unwrap(),
        "poll says a receive would not block"
    );
}

#[test]
fn a_sender_whose_receiver_is_gone_gets_disconnected() {
    let (rx, tx) = pipe_one_way::<u32>().unwrap();
    let mut p = start(move || {
        let _ = rx.recv();
    });
    tx.send(&1).unwrap();
    assert_eq!(p.0.join().unwrap(), 0);
    // The child dropped its end when it returned.
    assert!(matches!(tx.send(&2), Err(Error::Disconnected)));
}

#[test]
fn a_receiver_sees_a_killed_sender_within_bounds() {
    let (rx, tx) = pipe_one_way::<u32>().unwrap();
    let mut p = start(move || {
        tx.send(&7).unwrap();
        std::thread::sleep(Duration::from_secs(60));
        drop(tx);
    });
    assert_eq!(rx.recv().unwrap(), 7);
    p.0.kill().unwrap();
    p.0.join().unwrap();
    let t = Instant::now();
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "noticed after {:?}",
        t.elapsed()
    );
}

#[test]
fn a_writer_killed_mid_stream_leaves_no_torn_message() {
    let (rx, tx) = PipeBuilder::new().capacity(4096).one_way::<()>().unwrap();
    let (mut ready_r, ready_w) = std::io::pipe().unwrap();
    let mut p = start(move || {
        tx.send_bytes(b"whole").unwrap();
        let mut w = ready_w;
        std::io::Write::write_all(&mut w, b"sending\n").unwrap();
        // 16 MiB through a 4 KiB ring: it blocks until read, and is killed
        // part way.
        tx.send_bytes(&vec![1u8; 16 << 20]).unwrap();
    });
    assert_eq!(rx.recv_bytes().unwrap(), b"whole");
    assert_eq!(common::read_line(&mut ready_r), "sending");
    // Take some of the stream, then kill the writer.
    let mut first = [0u8; 16];
    assert!(matches!(
        rx.recv_bytes_into(&mut first),
        Err(Error::BufferTooSmall { .. })
    ));
    p.0.kill().unwrap();
    p.0.join().unwrap();
    assert!(matches!(rx.recv_bytes(), Err(Error::Disconnected)));
    assert!(matches!(rx.recv_bytes(), Err(Error::Disconnected)));
}

#[test]
fn a_child_that_never_uses_its_end_still_holds_it() {
    // Moved into a child that waits: the parent's drop handed it over.
    let (a, b) = pipe::<u32>().unwrap();
    let (go_r, mut go_w) = std::io::pipe().unwrap();
    let mut p = start(move || {
        let mut r = go_r;
        let _ = common::read_line(&mut r);
        b.send(&42).unwrap();
    });
    assert!(matches!(
        a.recv_timeout(Duration::from_millis(60)),
        Err(Error::Timeout)
    ));
    std::io::Write::write_all(&mut go_w, b"go\n").unwrap();
    assert_eq!(a.recv().unwrap(), 42);
    assert_eq!(p.0.join().unwrap(), 0);
    assert!(matches!(a.recv(), Err(Error::Disconnected)));
}

#[test]
fn ends_in_one_process_behave_as_a_pipe() {
    let (a, b) = pipe::<String>().unwrap();
    a.send(&"to b".into()).unwrap();
    b.send(&"to a".into()).unwrap();
    assert_eq!(b.recv().unwrap(), "to b");
    assert_eq!(a.recv().unwrap(), "to a");
    drop(b);
    assert!(matches!(a.recv(), Err(Error::Disconnected)));
    assert!(matches!(a.send(&"x".into()), Err(Error::Disconnected)));
    assert!(PipeBuilder::new().capacity(100).duplex::<()>().is_err());
}

#[test]
fn a_prefaulted_pipe_carries_messages_larger_than_itself() {
    let (rx, tx) = PipeBuilder::new()
        .capacity(64 * 1024)
        .prefault()
        .one_way::<()>()
        .unwrap();
    let mut p = start(move || {
        for n in [10usize, 60 * 1024, 1 << 20] {
            let msg: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
            tx.send_bytes(&msg).unwrap();
        }
    });
    for n in [10usize, 60 * 1024, 1 << 20] {
        let got = rx.recv_bytes().unwrap();
        assert_eq!(got.len(), n);
        assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
    }
    assert_eq!(p.0.join().unwrap(), 0);
    assert!(matches!(rx.recv_bytes(), Err(Error::Disconnected)));
}
