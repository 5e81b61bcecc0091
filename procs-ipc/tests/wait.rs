//! `wait` over many pipes between real processes: the end that gets a
//! message wakes it, an end whose writer closed or was killed is ready, and
//! timeouts.

mod common;

use std::time::{Duration, Instant};

use common::start;
use procs_ipc::{Error, PipeBuilder, Receiver, Sender, Wait, pipe, pipe_one_way, wait};

const LONG: Option<Duration> = Some(Duration::from_secs(30));

fn one_way_pipes(n: usize) -> (Vec<Receiver<u64>>, Vec<Sender<u64>>) {
    (0..n).map(|_| pipe_one_way::<u64>().unwrap()).unzip()
}

/// The parent asks a child for a message on pipe `j` and waits on all of
/// them: the wait must report `j` alone, whether it began before the
/// message or after.
fn asks_and_waits(n: usize, rounds: u64) {
    let (rxs, txs) = one_way_pipes(n);
    let (asks, asked) = pipe_one_way::<u64>().unwrap();
    let mut child = start(move || {
        while let Ok(j) = asks.recv() {
            txs[j as usize % txs.len()].send(&j).unwrap();
        }
    });
    let objects: Vec<&dyn Wait> = rxs.iter().map(|r| r as &dyn Wait).collect();
    for round in 0..rounds {
        let j = (round * 7 + 3) % n as u64;
        asked.send(&j).unwrap();
        let ready = wait(&objects, LONG).unwrap();
        assert_eq!(ready, [j as usize], "round {round}");
        assert_eq!(rxs[j as usize].recv().unwrap(), j);
    }
    drop(asked);
    assert_eq!(child.0.join().unwrap(), 0);
}

#[test]
fn the_end_that_gets_a_message_wakes_the_wait() {
    asks_and_waits(8, 300);
}

#[test]
fn more_ends_than_one_system_call_takes_still_wake_the_wait() {
    asks_and_waits(130, 40);
}

#[test]
fn every_message_from_many_writers_is_waited_for_and_received() {
    const N: usize = 4;
    const EACH: u64 = 2000;
    let (rxs, txs) = one_way_pipes(N);
    let children: Vec<_> = txs
        .into_iter()
        .enumerate()
        .map(|(i, tx)| {
            start(move || {
                for k in 0..EACH {
                    tx.send(&(i as u64 * EACH + k)).unwrap();
                }
            })
        })
        .collect();
    let objects: Vec<&dyn Wait> = rxs.iter().map(|r| r as &dyn Wait).collect();
    let mut next = [0u64; N];
    let mut ended = [false; N];
    while ended.iter().any(|e| !e) {
        for i in wait(&objects, LONG).unwrap() {
            match rxs[i].recv() {
                Ok(v) => {
                    assert_eq!(v, i as u64 * EACH + next[i], "pipe {i} out of order");
                    next[i] += 1;
                }
                Err(Error::Disconnected) => ended[i] = true,
                Err(e) => panic!("pipe {i}: {e}"),
            }
        }
    }
    assert_eq!(next, [EACH; N]);
    for mut c in children {
        assert_eq!(c.0.join().unwrap(), 0);
    }
}

#[test]
fn nothing_ready_times_out_empty() {
    let (a, _a_peer) = pipe::<u8>().unwrap();
    let (b, _b_peer) = pipe::<u8>().unwrap();
    let t = Instant::now();
    assert!(
        wait(&[&a, &b], Some(Duration::from_millis(50)))
            .unwrap()
            .is_empty()
    );
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert!(wait(&[&a, &b], Some(Duration::ZERO)).unwrap().is_empty());
    // A message already there is seen by a wait that only looks.
    _b_peer.send(&1).unwrap();
    assert_eq!(wait(&[&a, &b], Some(Duration::ZERO)).unwrap(), [1]);
}

#[test]
fn an_end_whose_writer_closes_or_is_killed_is_ready() {
    let (closing, closing_peer) = pipe::<u8>().unwrap();
    let (killed, killed_peer) = pipe::<u8>().unwrap();
    let (quiet, _quiet_peer) = pipe::<u8>().unwrap();
    let (hold, held) = pipe::<u8>().unwrap();
    // One child closes its end and exits; the other blocks holding its end
    // until it is killed.
    let mut closer = start(move || drop(closing_peer));
    let mut victim = start(move || {
        let _keep = killed_peer;
        let _ = held.recv();
    });
    assert_eq!(closer.0.join().unwrap(), 0);
    let objects: [&dyn Wait; 3] = [&closing, &killed, &quiet];
    assert_eq!(wait(&objects, LONG).unwrap(), [0]);
    // The victim is killed while the parent waits, or just before: a
    // death is noticed within the wait's checks either way.
    let pid = victim.0.pid().unwrap();
    let killer = std::thread::spawn(move || {
        // SAFETY: kill has no memory effects; the pid is the victim's,
        // which its Reaper has not reaped yet.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let mut ready = Vec::new();
    while ready != [0, 1] {
        ready = wait(&objects, LONG).unwrap();
        assert!(ready.contains(&0) && !ready.contains(&2), "{ready:?}");
    }
    killer.join().unwrap();
    assert!(matches!(killed.recv(), Err(Error::Disconnected)));
    assert!(victim.0.join().unwrap() != 0);
    drop(hold);
}

#[test]
fn the_first_piece_of_a_large_message_makes_an_end_ready() {
    let (rx, tx) = PipeBuilder::new()
        .capacity(64 * 1024)
        .one_way::<()>()
        .unwrap();
    let mut child = start(move || {
        let big: Vec<u8> = (0..4u32 << 20).map(|i| (i % 253) as u8).collect();
        tx.send_bytes(&big).unwrap();
    });
    assert_eq!(wait(&[&rx], LONG).unwrap(), [0]);
    let got = rx.recv_bytes().unwrap();
    assert_eq!(got.len(), 4 << 20);
    assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
    assert_eq!(child.0.join().unwrap(), 0);
}

#[test]
fn a_closed_end_is_ready_and_a_wait_on_nothing_needs_a_timeout() {
    let (a, _peer) = pipe::<u8>().unwrap();
    let (b, _b_peer) = pipe::<u8>().unwrap();
    b.close();
    assert_eq!(wait(&[&a, &b], LONG).unwrap(), [1]);
    assert!(matches!(b.recv(), Err(Error::Closed)));
    assert!(matches!(wait(&[], None), Err(Error::Invalid(_))));
    assert!(
        wait(&[], Some(Duration::from_millis(1)))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_process_is_ready_when_it_ends_beside_a_quiet_end() {
    // The parent holds the writer: `rx` never becomes ready.
    let (rx, _tx) = pipe_one_way::<u8>().unwrap();
    let (go_rx, go) = pipe_one_way::<u8>().unwrap();
    let mut child = start(move || {
        let _ = go_rx.recv();
    });
    let objects: [&dyn Wait; 2] = [&rx, &child.0];
    assert!(wait(&objects, Some(Duration::ZERO)).unwrap().is_empty());
    go.send(&1).unwrap();
    // Whether the wait starts before the child's end or after, it reports
    // the process alone.
    assert_eq!(wait(&objects, LONG).unwrap(), [1]);
    assert_eq!(child.0.join().unwrap(), 0);
    // A process alone is waited on with poll.
    assert_eq!(wait(&[&child.0], LONG).unwrap(), [0]);
}

#[test]
fn an_end_beside_a_running_process_wakes_the_wait() {
    let (rx, tx) = pipe_one_way::<u8>().unwrap();
    let (go_rx, go) = pipe_one_way::<u8>().unwrap();
    let (stop_rx, stop) = pipe_one_way::<u8>().unwrap();
    let mut child = start(move || {
        while let Ok(n) = go_rx.recv() {
            tx.send(&n).unwrap();
        }
        let _ = stop_rx.recv();
    });
    let objects: [&dyn Wait; 2] = [&child.0, &rx];
    for n in 0..50u8 {
        go.send(&n).unwrap();
        assert_eq!(wait(&objects, LONG).unwrap(), [1], "message {n}");
        assert_eq!(rx.recv().unwrap(), n);
    }
    drop(go);
    drop(stop);
    assert_eq!(child.0.join().unwrap(), 0);
}

#[test]
fn a_descriptor_is_ready_when_readable() {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    let (mut r, w) = std::io::pipe().unwrap();
    let (quiet, _quiet_tx) = pipe_one_way::<u8>().unwrap();
    let fd = r.as_fd();
    let objects: [&dyn Wait; 2] = [&quiet, &fd];
    assert!(wait(&objects, Some(Duration::ZERO)).unwrap().is_empty());
    let mut w = Some(w);
    let mut child = start(move || {
        w.take().unwrap().write_all(b"x").unwrap();
    });
    assert_eq!(wait(&objects, LONG).unwrap(), [1]);
    assert_eq!(child.0.join().unwrap(), 0);
    let mut byte = [0u8; 1];
    r.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"x");
}

#[test]
fn a_process_not_started_is_invalid() {
    let p = procs_core::Process::new(|| {});
    let (rx, _tx) = pipe_one_way::<u8>().unwrap();
    assert!(matches!(
        wait(&[&rx, &p], Some(Duration::ZERO)),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn a_queue_is_ready_with_an_item_or_without_producers() {
    use procs_ipc::Queue;

    let q = Queue::<u64>::new().unwrap();
    let rx = q.receiver();
    let tx = q.sender();
    drop(q);
    let (asks, asked) = pipe_one_way::<u64>().unwrap();
    let mut producer = start(move || {
        while let Ok(n) = asks.recv() {
            tx.put(n).unwrap();
        }
    });
    // A queue beside a running process: the item wakes the wait.
    let objects: [&dyn Wait; 2] = [&producer.0, &rx];
    assert!(wait(&objects, Some(Duration::ZERO)).unwrap().is_empty());
    for n in 0..50 {
        asked.send(&n).unwrap();
        assert_eq!(wait(&objects, LONG).unwrap(), [1], "item {n}");
        assert_eq!(rx.get().unwrap(), n);
    }
    // The producer ends, taking the last handle that puts with it: both
    // the process and the queue are ready, and the queue is drained.
    drop(asked);
    let mut ready = Vec::new();
    while ready != [0, 1] {
        ready = wait(&objects, LONG).unwrap();
    }
    assert!(matches!(rx.get(), Err(Error::Disconnected)));
    assert_eq!(producer.0.join().unwrap(), 0);
}

#[test]
fn a_joinable_queue_handle_that_only_puts_is_not_waited_on() {
    let q = procs_ipc::JoinableQueue::<u8>::new().unwrap();
    let tx = q.sender();
    assert!(matches!(
        wait(&[&tx], Some(Duration::ZERO)),
        Err(Error::Invalid(_))
    ));
    // The whole handle gets: it is waited on, and ready with an item.
    assert!(wait(&[&q], Some(Duration::ZERO)).unwrap().is_empty());
    tx.put(1).unwrap();
    assert_eq!(wait(&[&q], LONG).unwrap(), [0]);
    assert_eq!(q.get().unwrap(), 1);
}

#[test]
fn a_queue_whose_producers_died_waits_again_once_this_process_makes_one() {
    let q = procs_ipc::JoinableQueue::<u8>::new().unwrap();
    let rx = q.receiver();
    let tx = q.sender();
    drop(q);
    // The only producer is killed holding its handle: nothing says it is
    // gone but its death.
    let (hold, held) = pipe_one_way::<u8>().unwrap();
    let mut producer = start(move || {
        let _keep = tx;
        let _ = hold.recv();
    });
    producer.0.kill().unwrap();
    assert!(producer.0.join().unwrap() != 0);
    drop(held);
    // Every producer is gone: ready, and a get says so.
    assert_eq!(wait(&[&rx], LONG).unwrap(), [0]);
    assert!(matches!(rx.get(), Err(Error::Disconnected)));
    // This process makes a producer: the queue is empty and has a producer,
    // so a get would wait, and so does a wait.
    let tx = rx.sender();
    assert!(wait(&[&rx], Some(Duration::ZERO)).unwrap().is_empty());
    tx.put(9).unwrap();
    assert_eq!(wait(&[&rx], LONG).unwrap(), [0]);
    assert_eq!(rx.get().unwrap(), 9);
}

#[test]
fn the_same_end_twice_is_reported_twice() {
    let (rx, tx) = pipe_one_way::<u8>().unwrap();
    let (asks, asked) = pipe_one_way::<u8>().unwrap();
    let mut child = start(move || {
        if asks.recv().is_ok() {
            tx.send(&5).unwrap();
        }
    });
    assert!(wait(&[&rx, &rx], Some(Duration::ZERO)).unwrap().is_empty());
    asked.send(&1).unwrap();
    assert_eq!(wait(&[&rx, &rx], LONG).unwrap(), [0, 1]);
    assert_eq!(rx.recv().unwrap(), 5);
    assert_eq!(child.0.join().unwrap(), 0);
}
