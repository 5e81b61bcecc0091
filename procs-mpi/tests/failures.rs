//! Ranks that die, deadlock, abort or finish early: every waiting call
//! returns an error naming the rank, never hangs.

use std::time::{Duration, Instant};

use procs_mpi::{ANY_SOURCE, Communicator, CommunicatorExt, Config, Error, RankEnd};

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn die_by_sigkill() -> ! {
    // SAFETY: raising a signal at ourselves.
    unsafe { libc::raise(libc::SIGKILL) };
    unreachable!("SIGKILL is not caught")
}

fn spin_for(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn a_rank_killed_while_another_receives_from_it_is_reported_within_100_ms() {
    let mut delays = Vec::new();
    for trial in 0..20u64 {
        let out = procs_mpi::run_all(2, move |w| {
            if w.rank() == 0 {
                w.recv::<()>(1, 1).unwrap();
                // Vary the moment of death around the receiver's entry.
                spin_for(Duration::from_micros(trial * 300));
                w.send(&now_ns(), 1, 2).unwrap();
                die_by_sigkill();
            }
            w.send(&(), 0, 1).unwrap();
            let killed_at: u64 = w.recv(0, 2).unwrap();
            let e = w.recv::<u64>(0, 3).unwrap_err();
            (e.to_string(), now_ns().saturating_sub(killed_at))
        })
        .unwrap();
        match &out[0] {
            Err(Error::RankFailed { rank: 0, reason }) => {
                assert!(reason.contains("signal 9"), "{reason}")
            }
            other => panic!("rank 0: {other:?}"),
        }
        let (msg, ns) = out[1].as_ref().unwrap();
        assert_eq!(msg, "rank 0 was killed by signal 9 (SIGKILL)");
        delays.push(*ns);
    }
    // Each death is seen (none hangs); the typical one well within 100 ms.
    assert!(median(delays.clone()) < 100_000_000, "{delays:?}");
    assert!(delays.iter().all(|&d| d < 2_000_000_000), "{delays:?}");
}

#[test]
fn a_receiver_killed_under_a_send_fails_the_send() {
    for (single, sync, len) in [
        (true, false, 4 << 20),
        (false, false, 4 << 20),
        (true, true, 100),
        (false, true, 0),
    ] {
        let cfg = Config::new().single_copy(Some(single));
        let out = cfg
            .run_all(2, move |w| {
                if w.rank() == 1 {
                    w.send(&(), 0, 1).unwrap();
                    // A first large message, so that the next is copied by both.
                    w.recv_buf(&mut vec![0u8; 1 << 20], 0, 9).unwrap();
                    die_by_sigkill();
                }
                w.recv::<()>(1, 1).unwrap();
                w.send_buf(&vec![1u8; 1 << 20], 1, 9).unwrap();
                let data = vec![7u8; len];
                let r = if sync {
                    w.ssend_buf(&data, 1, 0)
                } else {
                    w.send_buf(&data, 1, 0)
                };
                match r {
                    Err(Error::RankDied { rank: 1, how }) => how,
                    other => panic!("send: {other:?}"),
                }
            })
            .unwrap();
        assert!(matches!(out[0], Ok(RankEnd::Signaled(9))), "{:?}", out[0]);
    }
}

#[test]
fn a_sender_killed_in_the_middle_of_a_large_message_fails_the_receive() {
    for single in [true, false] {
        let out = Config::new()
            .single_copy(Some(single))
            .run_all(2, |w| {
                if w.rank() == 0 {
                    w.send_buf(&vec![2u8; 1 << 20], 1, 9).unwrap();
                    // A thread of the sender kills it while the message moves.
                    std::thread::spawn(|| {
                        spin_for(Duration::from_millis(5));
                        die_by_sigkill();
                    });
                    let data = vec![1u8; 256 << 20];
                    let _ = w.send_buf(&data, 1, 0);
                    spin_for(Duration::from_secs(5));
                    return 0;
                }
                let mut buf = vec![0u8; 256 << 20];
                // A first large message, so that the next is copied by both.
                w.recv_buf(&mut buf[..1 << 20], 0, 9).unwrap();
                match w.recv_buf(&mut buf, 0, 0) {
                    Err(Error::RankDied { rank: 0, .. }) => 1,
                    // The whole message made it before the kill.
                    Ok(st) => {
                        assert_eq!(st.count::<u8>(), 256 << 20);
                        assert!(buf.iter().all(|&b| b == 1));
                        2
                    }
                    other => panic!("recv: {other:?}"),
                }
            })
            .unwrap();
        assert!(
            matches!(out[0], Err(Error::RankFailed { rank: 0, .. })),
            "{:?}",
            out[0]
        );
        assert!(matches!(out[1], Ok(1 | 2)), "{:?}", out[1]);
    }
}

#[test]
fn a_panic_or_an_exit_names_the_rank_and_how() {
    let out = procs_mpi::run_all(3, |w| {
        if w.rank() == 2 {
            panic!("boom");
        }
        // A panicked rank died: it did not finish.
        w.recv::<u8>(2, 0).unwrap_err().to_string()
    })
    .unwrap();
    match &out[2] {
        Err(Error::RankFailed { rank: 2, reason }) => assert_eq!(reason, "panicked: boom"),
        other => panic!("{other:?}"),
    }
    assert_eq!(out[0].as_deref().unwrap(), "rank 2 panicked");
    let r = procs_mpi::run(3, |w| {
        if w.rank() == 2 {
            panic!("boom");
        }
    });
    assert!(matches!(r, Err(Error::RankFailed { rank: 2, .. })), "{r:?}");
    let r = procs_mpi::run(2, |w| {
        if w.rank() == 1 {
            std::process::exit(4);
        }
        w.recv::<u8>(1, 0).map_err(|e| e.to_string())
    });
    match r {
        Err(Error::RankFailed { rank: 1, reason }) => assert_eq!(reason, "exited with code 4"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_receive_from_a_rank_that_finished_fails_at_once() {
    let out = procs_mpi::run(3, |w| match w.rank() {
        0 => {
            let one = w.recv::<u8>(1, 0).map_err(|e| e.to_string());
            let any = w.recv::<u8>(ANY_SOURCE, 0).map_err(|e| e.to_string());
            (one, any)
        }
        _ => (Ok(0), Ok(0)),
    })
    .unwrap();
    assert_eq!(
        out[0].0,
        Err("rank 1 has finished: nothing it sent matches this call".into())
    );
    assert!(
        out[0].1.as_ref().is_err_and(|e| e.contains("has finished")),
        "{:?}",
        out[0].1
    );
}

#[test]
fn abort_stops_every_rank() {
    let r = procs_mpi::run(3, |w| {
        if w.rank() == 1 {
            w.abort(7);
        }
        // The others wait on rank 1, or compute: both are stopped.
        if w.rank() == 0 {
            let _ = w.recv::<u8>(1, 0);
        } else {
            spin_for(Duration::from_secs(30));
        }
    });
    assert!(
        matches!(r, Err(Error::Aborted { rank: 1, code: 7 })),
        "{r:?}"
    );
}

#[test]
fn a_two_cycle_is_reported_with_its_chain() {
    let out = procs_mpi::run(9, |w| {
        let me = w.rank();
        let other = match me {
            1 => 5,
            5 => 1,
            _ => return String::new(),
        };
        let start = Instant::now();
        let e = w.recv::<i32>(other, 0).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        e.to_string()
    })
    .unwrap();
    assert_eq!(
        out[1],
        "deadlock: rank 1 waits in recv(source=5, tag=0) for rank 5; rank 5 waits in recv(source=1, tag=0) for rank 1"
    );
    assert_eq!(
        out[5],
        "deadlock: rank 5 waits in recv(source=1, tag=0) for rank 1; rank 1 waits in recv(source=5, tag=0) for rank 5"
    );
}

#[test]
fn a_three_cycle_of_synchronous_sends_is_reported_and_the_ranks_go_on() {
    let out = procs_mpi::run(3, |w| {
        let me = w.rank();
        let next = (me + 1) % 3;
        let prev = (me + 2) % 3;
        let e = w.ssend(&me, next, 4).unwrap_err();
        // After the report the ranks talk normally.
        w.send(&me, next, 5).unwrap();
        let got: i32 = w.recv(prev, 5).unwrap();
        assert_eq!(got, prev);
        // `prev` withdrew its ssend before it sent tag 5: it is never received.
        assert_eq!(w.iprobe(prev, 4).unwrap(), None);
        e.to_string()
    })
    .unwrap();
    assert_eq!(
        out[0],
        "deadlock: rank 0 waits in ssend(dest=1, tag=4) for rank 1; rank 1 waits in ssend(dest=2, tag=4) for rank 2; rank 2 waits in ssend(dest=0, tag=4) for rank 0"
    );
    assert!(out[1].starts_with("deadlock: rank 1 waits in ssend(dest=2, tag=4) for rank 2;"));
}

#[test]
fn large_sends_first_on_both_sides_deadlock_and_are_withdrawn() {
    for single in [true, false] {
        let out = Config::new()
            .single_copy(Some(single))
            .run(2, |w| {
                let peer = 1 - w.rank();
                let big = vec![w.rank() as u8; w.eager_limit() + 1];
                // Fits the eager buffer: both sends return.
                w.send_buf(&big[..w.eager_limit()], peer, 1).unwrap();
                let mut buf = vec![0u8; big.len()];
                assert_eq!(
                    w.recv_buf(&mut buf, peer, 1).unwrap().count::<u8>(),
                    w.eager_limit()
                );
                // One byte more: both wait for a receive that never comes.
                let e = w.send_buf(&big, peer, 2).unwrap_err().to_string();
                // And the fix: sendrecv.
                let st = w.sendrecv_buf(&big, peer, 3, &mut buf, peer, 3).unwrap();
                assert_eq!((st.count::<u8>(), buf[0]), (big.len(), peer as u8));
                // The peer withdrew its send before the exchange: never received.
                assert_eq!(w.iprobe(peer, 2).unwrap(), None);
                e
            })
            .unwrap();
        assert_eq!(
            out[0],
            "deadlock: rank 0 waits in send(dest=1, tag=2) for rank 1; rank 1 waits in send(dest=0, tag=2) for rank 0"
        );
    }
}

#[test]
fn a_slow_rank_or_a_message_in_flight_is_never_a_deadlock() {
    for trial in 0..10u64 {
        let out = procs_mpi::run(3, move |w| match w.rank() {
            // Waits on a rank that computes.
            0 => w.recv::<u64>(1, 0).unwrap(),
            1 => {
                spin_for(Duration::from_millis(60 + trial * 10));
                w.send(&7u64, 0, 0).unwrap();
                // A large send waits for a receiver that computes first.
                w.send_buf(&vec![3u8; 1 << 20], 2, 0).unwrap();
                0
            }
            _ => {
                spin_for(Duration::from_millis(80));
                let mut buf = vec![0u8; 1 << 20];
                w.recv_buf(&mut buf, 1, 0).unwrap();
                buf[0] as u64
            }
        })
        .unwrap();
        assert_eq!(out, [7, 0, 3]);
    }
}

#[test]
fn with_detection_off_a_deadlock_is_not_reported() {
    let out = Config::new()
        .deadlock_detection(false)
        .run_all(2, |w| {
            if w.rank() == 0 {
                std::thread::spawn(|| {
                    spin_for(Duration::from_millis(300));
                    die_by_sigkill();
                });
            }
            w.recv::<u8>(1 - w.rank(), 0).unwrap_err().to_string()
        })
        .unwrap();
    // Not a deadlock report: the wait lasted until rank 0 was killed.
    assert_eq!(
        out[1].as_deref().unwrap(),
        "rank 0 was killed by signal 9 (SIGKILL)"
    );
}

#[test]
fn ranks_leave_no_process_and_no_shared_memory_file() {
    let shm_before = std::fs::read_dir("/dev/shm")
        .map(|d| d.count())
        .unwrap_or(0);
    let pids = procs_mpi::run(4, |w| {
        let me = w.rank();
        let peer = me ^ 1;
        let got: u32 = w.sendrecv(&std::process::id(), peer, 0, peer, 0).unwrap();
        (std::process::id(), got)
    })
    .unwrap();
    for (pid, _) in &pids {
        assert!(
            procs_sync::raw::liveness::start_ticks(*pid as i32).is_none(),
            "rank {pid} lives on"
        );
    }
    // A job's segment is a memfd: no name anywhere.
    let shm_after = std::fs::read_dir("/dev/shm")
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(shm_after <= shm_before, "{shm_before} -> {shm_after}");
}

#[test]
fn polling_a_dead_rank_with_test_or_iprobe_ends_in_an_error() {
    let out = procs_mpi::run_all(2, |w| {
        if w.rank() == 1 {
            w.send(&(), 0, 0).unwrap();
            die_by_sigkill();
        }
        w.recv::<()>(1, 0).unwrap();
        let mut req = w.irecv::<u32>(1, 5).unwrap();
        let polled = loop {
            match req.test() {
                Ok(None) => std::hint::spin_loop(),
                Ok(Some(v)) => panic!("got {v}"),
                Err(e) => break e.to_string(),
            }
        };
        let probed = loop {
            match w.iprobe(1, 6) {
                Ok(None) => std::hint::spin_loop(),
                Ok(Some(st)) => panic!("probed {st:?}"),
                Err(e) => break e.to_string(),
            }
        };
        (polled, probed)
    })
    .unwrap();
    let (polled, probed) = out[0].as_ref().unwrap();
    assert_eq!(polled, "rank 1 was killed by signal 9 (SIGKILL)");
    assert_eq!(probed, "rank 1 was killed by signal 9 (SIGKILL)");
}

#[test]
fn a_rank_that_hangs_while_it_panics_fails_its_waiters_at_once_and_is_ended() {
    let out = procs_mpi::run_all(2, |w| {
        if w.rank() == 1 {
            // A panic that never finishes unwinding (as a child forked from a
            // multi-threaded parent can hang in the loader's locks).
            let report = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                report(info);
                loop {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }));
            panic!("stuck");
        }
        let start = Instant::now();
        let e = w.recv::<u8>(1, 0).unwrap_err().to_string();
        (e, start.elapsed() < Duration::from_secs(1))
    })
    .unwrap();
    assert_eq!(
        out[0].as_ref().unwrap(),
        &("rank 1 panicked".to_string(), true)
    );
    match &out[1] {
        Err(Error::RankFailed { rank: 1, reason }) => assert_eq!(reason, "panicked: stuck"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rank_in_a_receive_while_the_others_wait_in_a_collective_is_a_deadlock_naming_both() {
    // On the world (collective buffers) and on a part of it (messages).
    for part in [false, true] {
        let out = procs_mpi::run(4, move |w| {
            let sub = w.split(i32::from(w.rank() == 3), 0).unwrap().unwrap();
            if w.rank() == 3 && part {
                return String::new();
            }
            let comm = if part { &sub } else { &**w };
            let start = Instant::now();
            // Rank 2 receives; the others (rank 3 too, on the world) wait
            // in the barrier.
            let e = if comm.rank() == 2 {
                comm.recv::<i32>(0, 0).unwrap_err()
            } else {
                comm.barrier().unwrap_err()
            };
            assert!(start.elapsed() < Duration::from_secs(2));
            e.to_string()
        })
        .unwrap();
        let names = |r: usize| {
            assert!(
                out[r].starts_with("deadlock: ")
                    && out[r].contains("waits in barrier()")
                    && out[r].contains("rank 2 waits in recv(source=0, tag=0) for rank 0"),
                "part {part}, rank {r}: {}",
                out[r]
            );
        };
        for r in [0, 1, 2] {
            names(r);
        }
        assert!(
            out[0].starts_with("deadlock: rank 0 waits in barrier() for rank 2;"),
            "{}",
            out[0]
        );
    }
}

#[test]
fn a_rank_killed_at_any_moment_of_a_collective_fails_the_others_within_100_ms() {
    // Four shapes: small and large parts, on the world (collective
    // buffers) and on a reordered communicator of the same ranks
    // (messages); the victim dies at a moment that moves through the call.
    let mut delays = Vec::new();
    for trial in 0..24u64 {
        let out = procs_mpi::run_all(4, move |w| {
            let comm = w
                .split(0, if trial % 4 < 2 { 0 } else { -w.rank() })
                .unwrap()
                .unwrap();
            let comm = if trial % 4 < 2 { &**w } else { &comm };
            let victim = comm.size() - 1;
            comm.barrier().unwrap();
            if comm.rank() == victim {
                spin_for(Duration::from_micros((trial / 4) * 150));
                let at = now_ns();
                for r in 0..victim {
                    comm.send(&at, r, 9).unwrap();
                }
                die_by_sigkill();
            }
            let res = if trial % 2 == 0 {
                comm.allreduce_buf(&[1u64; 16], &mut [0; 16], procs_mpi::Op::SUM)
            } else {
                let v = (comm.rank() == 0).then_some(vec![3u8; 40_000]);
                comm.bcast(v.as_ref(), 0).map(drop)
            };
            let seen = now_ns();
            let at: u64 = comm.recv(victim, 9).unwrap();
            let named = matches!(res, Err(Error::RankDied { rank, .. }) if rank == victim);
            (named, seen.saturating_sub(at), format!("{res:?}"))
        })
        .unwrap();
        // The victim is the last rank of the communicator: world rank 3,
        // or world rank 0 on the reordered one.
        let victim = if trial % 4 < 2 { 3 } else { 0 };
        assert!(
            matches!(&out[victim], Err(Error::RankFailed { .. })),
            "trial {trial}"
        );
        for (r, o) in out.iter().enumerate().filter(|&(r, _)| r != victim) {
            let (named, ns, _) = o
                .as_ref()
                .unwrap_or_else(|e| panic!("trial {trial}, rank {r}: {e}"));
            assert!(named, "trial {trial}, rank {r}: {o:?}");
            delays.push(*ns);
        }
    }
    assert!(median(delays.clone()) < 100_000_000, "{delays:?}");
    assert!(delays.iter().all(|&d| d < 2_000_000_000), "{delays:?}");
}
