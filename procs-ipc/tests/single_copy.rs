//! Large messages in one copy between real processes: sizes around the
//! chunks, order among small messages, buffers too small, a message the
//! ring could hold sent and received by one thread, a writer or a reader
//! killed during the copy, and processes the kernel does not let copy from
//! each other (then the ring carries the messages).

mod common;

use std::time::{Duration, Instant};

use common::start;
use procs_ipc::{Error, LargeMessages, PipeBuilder};

const BOUND: Duration = Duration::from_secs(10);

/// A message whose every byte depends on its number and position.
fn message(n: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(n) as u8)
        .collect()
}

/// SIGKILLs `pid` from a thread of its own, `delay` from now (spinning, so
/// that the moment is precise).
fn kill_after(pid: i32, delay: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let until = Instant::now() + delay;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    })
}

fn single_copy() -> PipeBuilder {
    PipeBuilder::new().large_messages(LargeMessages::SingleCopy)
}

const SIZES: [usize; 7] = [
    64 * 1024,
    64 * 1024 + 1,
    300_001,
    1 << 20,
    (1 << 20) + 4095,
    3 << 20,
    9_999_991,
];

#[test]
fn large_messages_arrive_whole_and_in_order_among_small_ones() {
    let (rx, tx) = single_copy().one_way::<u32>().unwrap();
    let _writer = start(move || {
        for (n, &len) in SIZES.iter().enumerate() {
            tx.send(&(n as u32)).unwrap();
            tx.send_bytes(&message(n as u32, len)).unwrap();
        }
        tx.send(&u32::MAX).unwrap();
    });
    for (n, &len) in SIZES.iter().enumerate() {
        assert_eq!(rx.recv_timeout(BOUND).unwrap(), n as u32);
        let got = rx.recv_bytes_timeout(BOUND).unwrap();
        assert_eq!(got.len(), len);
        assert!(got == message(n as u32, len), "message {n} differs");
    }
    assert_eq!(rx.recv_timeout(BOUND).unwrap(), u32::MAX);
}

#[test]
fn large_messages_go_into_a_callers_buffer_and_the_other_way() {
    let (parent, child) = single_copy().duplex::<u32>().unwrap();
    let _echo = start(move || {
        let mut buf = vec![0u8; 10 << 20];
        for _ in SIZES {
            let n = child.recv_bytes_into(&mut buf).unwrap();
            child.send_bytes(&buf[..n]).unwrap();
        }
    });
    let mut back = vec![0u8; 10 << 20];
    for (n, &len) in SIZES.iter().enumerate() {
        let m = message(n as u32, len);
        parent.send_bytes(&m).unwrap();
        let got = parent.recv_bytes_into(&mut back).unwrap();
        assert_eq!(got, len);
        assert!(back[..got] == m[..], "message {n} differs");
    }
}

#[test]
fn a_buffer_too_small_leaves_the_message_for_a_larger_one() {
    let (rx, tx) = single_copy().one_way::<()>().unwrap();
    let _writer = start(move || {
        tx.send_bytes(&message(1, 1 << 20)).unwrap();
    });
    let mut small = vec![0u8; 1000];
    match rx.recv_bytes_into(&mut small) {
        Err(Error::BufferTooSmall { needed, available }) => {
            assert_eq!((needed, available), (1 << 20, 1000));
        }
        other => panic!("{other:?}"),
    }
    // Still there for a second try, and then for a buffer that fits.
    assert!(matches!(
        rx.recv_bytes_into(&mut small),
        Err(Error::BufferTooSmall { .. })
    ));
    assert!(rx.recv_bytes_timeout(BOUND).unwrap() == message(1, 1 << 20));
}

#[test]
fn one_thread_sends_and_then_receives_what_the_ring_can_hold() {
    // Nobody takes the offer while the sender waits: it is withdrawn and
    // the message goes through the ring, as it would without single copy.
    let (a, b) = single_copy().duplex::<()>().unwrap();
    for n in 0..20 {
        let m = message(n, 256 * 1024);
        a.send_bytes_timeout(&m, BOUND).unwrap();
        assert!(b.recv_bytes_timeout(BOUND).unwrap() == m);
    }
}

#[test]
fn a_writer_killed_during_the_copy_leaves_disconnected_and_no_torn_message() {
    const LEN: usize = 48 << 20;
    let expected = message(9, LEN);
    let (mut whole, mut cut) = (0, 0);
    for trial in 0..60u64 {
        let (rx, tx) = single_copy().one_way::<()>().unwrap();
        let m = expected.clone();
        let mut writer = procs_core::Process::new(move || {
            for _ in 0..1000 {
                tx.send_bytes(&m).unwrap();
            }
        });
        writer.start().unwrap();
        let pid = writer.pid().unwrap();
        // The killer lands somewhere in the first messages' copies.
        let killer = kill_after(pid, Duration::from_micros(trial * 211 % 12_000));
        let mut buf = vec![0u8; LEN];
        loop {
            match rx.recv_bytes_into(&mut buf) {
                Ok(n) => {
                    assert_eq!(n, LEN, "trial {trial}");
                    assert!(buf == expected, "trial {trial}: a torn message");
                    whole += 1;
                }
                Err(Error::Disconnected) => {
                    cut += 1;
                    break;
                }
                Err(e) => panic!("trial {trial}: {e:?}"),
            }
        }
        killer.join().unwrap();
        assert_eq!(writer.join().unwrap(), -9);
    }
    assert!(
        cut == 60,
        "every writer was killed ({whole} messages whole)"
    );
}

#[test]
fn a_reader_killed_during_the_copy_leaves_the_writer_disconnected() {
    const LEN: usize = 48 << 20;
    let m = message(3, LEN);
    for trial in 0..40u64 {
        let (rx, tx) = single_copy().one_way::<()>().unwrap();
        let mut reader = procs_core::Process::new(move || {
            let mut buf = vec![0u8; LEN];
            while rx.recv_bytes_into(&mut buf).is_ok() {}
        });
        reader.start().unwrap();
        let pid = reader.pid().unwrap();
        let killer = kill_after(pid, Duration::from_micros(trial * 307 % 12_000));
        let started = Instant::now();
        loop {
            match tx.send_bytes(&m) {
                Ok(()) => assert!(started.elapsed() < 4 * BOUND, "trial {trial}: never ends"),
                Err(Error::Disconnected) => break,
                Err(e) => panic!("trial {trial}: {e:?}"),
            }
        }
        killer.join().unwrap();
        assert_eq!(reader.join().unwrap(), -9);
    }
}

/// Runs `f` in a child as user `uid` (root can switch to any): a process
/// of one user may not copy from or into a process of another.
fn as_user(uid: u32, f: impl FnOnce() + Send + 'static) -> common::Reaper {
    start(move || {
        nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)).unwrap();
        f();
    })
}

#[test]
fn processes_that_may_not_copy_from_each_other_use_the_ring() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: switching users needs root");
        return;
    }
    // A writer and a reader of two users other than this one's: neither
    // may copy from or into the other, and every offer is refused.
    let (rx, tx) = single_copy().one_way::<()>().unwrap();
    let (done_rx, done_tx) = single_copy().one_way::<bool>().unwrap();
    let _writer = as_user(65_534, move || {
        for n in 0..4 {
            tx.send_bytes(&message(n, 2 << 20)).unwrap();
        }
    });
    let _reader = as_user(65_533, move || {
        let ok = (0..4).all(|n| rx.recv_bytes().is_ok_and(|m| m == message(n, 2 << 20)));
        done_tx.send(&ok).unwrap();
    });
    assert!(done_rx.recv_timeout(BOUND).unwrap());
}

#[test]
fn a_reader_that_may_not_read_its_writer_has_the_writer_copy_it_all() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: switching users needs root");
        return;
    }
    // The reader (another user) may not read this process; this process
    // (root) may write into it.
    let (rx, tx) = single_copy().one_way::<()>().unwrap();
    let (done_rx, done_tx) = single_copy().one_way::<bool>().unwrap();
    let _reader = as_user(65_534, move || {
        let ok = (0..4).all(|n| rx.recv_bytes().is_ok_and(|m| m == message(n, 3 << 20)));
        done_tx.send(&ok).unwrap();
    });
    for n in 0..4 {
        tx.send_bytes_timeout(&message(n, 3 << 20), BOUND).unwrap();
    }
    assert!(done_rx.recv_timeout(BOUND).unwrap());
}

#[test]
fn offers_withdrawn_and_made_again_while_the_reader_looks_lose_nothing() {
    // The ring has room for several messages, so the writer withdraws each
    // offer the reader is slow to take and offers the next: the reader
    // often finds an offer at the moment it is withdrawn or replaced.
    const N: u32 = 400;
    let (rx, tx) = single_copy().one_way::<()>().unwrap();
    let _writer = start(move || {
        for n in 0..N {
            tx.send_bytes(&message(n, 100_000 + n as usize)).unwrap();
        }
    });
    for n in 0..N {
        // A pause of 0 to 120 us now and then: the writer's offers time out
        // around the reader's looks.
        let until = Instant::now() + Duration::from_micros(u64::from(n * 37 % 121));
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        let got = rx
            .recv_bytes_timeout(BOUND)
            .unwrap_or_else(|e| panic!("message {n}: {e:?}"));
        assert!(
            got == message(n, 100_000 + n as usize),
            "message {n} differs"
        );
    }
}
