//! Who holds an end of a pipe or a queue, under fork and kill timings: a
//! child that lets go at once, a parent that forks holding several handles,
//! hundreds of producers coming and going, a peer killed and reaped,
//! consumers and producers killed in the middle of moving an item, and user
//! code that panics while a queue is in use. Each timing that is a race is
//! tried hundreds of times, and every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use common::start;
use procs_ipc::{Error, Queue, QueueBuilder, pipe_one_way};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Long enough that a missed `Disconnected` shows as a timeout, short
/// enough that a failing trial does not stall the run.
const BOUND: Duration = Duration::from_secs(2);

/// A child that never ends by itself: it is killed by its `Reaper`.
fn live_on() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Waits for the one-byte "done" a child writes on an OS pipe.
fn await_byte(r: &mut std::io::PipeReader) {
    let mut b = [0u8; 1];
    r.read_exact(&mut b).expect("the child's signal");
}

#[test]
fn a_queue_producer_that_lets_go_at_once_is_never_left_recorded() {
    for trial in 0..200 {
        let q = Queue::<u32>::new().unwrap();
        let tx = q.sender();
        let rx = q.receiver();
        drop(q);
        let _child = start(move || {
            drop(tx);
            live_on();
        });
        match rx.get_timeout(BOUND) {
            Err(Error::Disconnected) => {}
            other => panic!("trial {trial}: {other:?} instead of Disconnected"),
        }
    }
}

#[test]
fn a_pipe_writer_that_lets_go_at_once_is_never_left_recorded() {
    for trial in 0..200 {
        let (rx, tx) = pipe_one_way::<u32>().unwrap();
        let _child = start(move || {
            drop(tx);
            live_on();
        });
        match rx.recv_timeout(BOUND) {
            Err(Error::Disconnected) => {}
            other => panic!("trial {trial}: {other:?} instead of Disconnected"),
        }
    }
}

#[test]
fn a_send_to_a_reader_that_let_go_at_once_is_disconnected() {
    for trial in 0..200 {
        let (rx, tx) = pipe_one_way::<u32>().unwrap();
        let (mut signal_r, mut signal_w) = std::io::pipe().unwrap();
        let _child = start(move || {
            drop(rx);
            signal_w.write_all(b"x").unwrap();
            live_on();
        });
        await_byte(&mut signal_r);
        match tx.send(&trial) {
            Err(Error::Disconnected) => {}
            other => panic!("trial {trial}: {other:?} instead of Disconnected"),
        }
    }
}

#[test]
fn a_child_handed_one_sender_of_a_parent_with_two_handles_lets_go_of_it() {
    for trial in 0..50 {
        let q = Queue::<u32>::new().unwrap();
        // The parent holds two handles that put when it forks: the queue
        // itself and the sender it hands over.
        let tx = q.sender();
        let (mut signal_r, mut signal_w) = std::io::pipe().unwrap();
        let _child = start(move || {
            tx.put(7).unwrap();
            drop(tx);
            signal_w.write_all(b"x").unwrap();
            live_on();
        });
        await_byte(&mut signal_r);
        let rx = q.receiver();
        drop(q);
        assert_eq!(rx.get_timeout(BOUND).unwrap(), 7);
        match rx.get_timeout(BOUND) {
            Err(Error::Disconnected) => {}
            other => panic!("trial {trial}: {other:?} instead of Disconnected"),
        }
    }
}

#[test]
fn a_consumer_is_told_the_queue_is_gone_after_hundreds_of_producers_came_and_went() {
    let q = Queue::<u32>::new().unwrap();
    let rx = q.receiver();
    // More producers than the holder table has slots; half of them die
    // without letting go (their handle is forgotten, as a kill would).
    for i in 0..300u32 {
        let tx = q.sender();
        let mut p = procs_core::Process::new(move || {
            tx.put(i).unwrap();
            if i % 2 == 0 {
                std::mem::forget(tx);
            }
        });
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
    }
    drop(q);
    let mut got = Vec::new();
    let started = Instant::now();
    loop {
        match rx.get_timeout(BOUND) {
            Ok(i) => got.push(i),
            Err(Error::Disconnected) => break,
            Err(e) => panic!("after {} items: {e:?} instead of Disconnected", got.len()),
        }
        assert!(started.elapsed() < 4 * BOUND, "the queue never ended");
    }
    assert_eq!(got, (0..300).collect::<Vec<_>>());
}

#[test]
fn a_send_to_a_reader_killed_and_reaped_is_disconnected_at_once() {
    for trial in 0..20 {
        let (rx, tx) = pipe_one_way::<u32>().unwrap();
        let (mut signal_r, mut signal_w) = std::io::pipe().unwrap();
        let mut child = procs_core::Process::new(move || {
            let _rx = rx;
            signal_w.write_all(b"x").unwrap();
            live_on();
        });
        child.start().unwrap();
        await_byte(&mut signal_r);
        child.kill().unwrap();
        assert_eq!(child.join().unwrap(), -9);
        match tx.send(&trial) {
            Err(Error::Disconnected) => {}
            other => panic!("trial {trial}: the first send says {other:?}"),
        }
    }
}

#[test]
fn consumers_killed_inside_get_leave_the_count_exact() {
    // Items of 1.2 MB: copying one out and decoding it takes long enough
    // for a kill to land inside a get. (Strings: their bytes are encoded
    // and decoded whole, fast even in a debug build.)
    let item = "x".repeat(1_200_000);
    for trial in 0..150u64 {
        let q = Queue::<String>::builder()
            .maxsize(2)
            .capacity(4 << 20)
            .build()
            .unwrap();
        q.put(item.clone()).unwrap();
        q.put(item.clone()).unwrap();
        let rx = q.receiver();
        let (mut signal_r, mut signal_w) = std::io::pipe().unwrap();
        let mut consumer = procs_core::Process::new(move || {
            signal_w.write_all(b"x").unwrap();
            while rx.get().is_ok() {}
        });
        consumer.start().unwrap();
        await_byte(&mut signal_r);
        // Somewhere inside the first or the second get.
        let until = Instant::now() + Duration::from_micros(trial * 131 % 20_000);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        consumer.kill().unwrap();
        consumer.join().unwrap();
        // Drain what the consumer did not take.
        while q.get_timeout(Duration::from_millis(60)).is_ok() {}
        assert_eq!(q.len(), 0, "trial {trial}");
        assert!(!q.is_full(), "trial {trial}");
        for _ in 0..2 {
            q.put_timeout(item.clone(), BOUND)
                .unwrap_or_else(|e| panic!("trial {trial}: {:?}", e.error));
        }
        assert!(q.is_full(), "trial {trial}");
    }
}

#[test]
fn a_joinable_producer_killed_while_its_put_waits_for_room_leaves_no_task() {
    for trial in 0..30 {
        // Room for one 600-byte item at a time.
        let q = QueueBuilder::new()
            .capacity(1024)
            .joinable::<Vec<u8>>()
            .unwrap();
        q.put(vec![1; 600]).unwrap();
        let tx = q.sender();
        let (mut signal_r, mut signal_w) = std::io::pipe().unwrap();
        let mut producer = procs_core::Process::new(move || {
            signal_w.write_all(b"x").unwrap();
            let _ = tx.put(vec![2; 600]);
        });
        producer.start().unwrap();
        await_byte(&mut signal_r);
        wait_until_asleep(producer.pid().unwrap());
        producer.kill().unwrap();
        producer.join().unwrap();
        assert_eq!(q.get_timeout(BOUND).unwrap(), vec![1; 600]);
        q.task_done().unwrap();
        assert_eq!(q.unfinished_tasks(), 0, "trial {trial}");
        q.join_timeout(BOUND)
            .unwrap_or_else(|e| panic!("trial {trial}: join says {e:?}"));
    }
}

/// Waits (bounded) until `pid` sleeps in the kernel: a child that signalled
/// it is about to block is then blocked.
fn wait_until_asleep(pid: i32) {
    let started = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let state = stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap();
        if state == 'S' {
            return;
        }
        assert!(started.elapsed() < BOUND, "the child never blocked");
        std::thread::yield_now();
    }
}

/// A value whose decoding panics when it is 13, as a user's `Deserialize`
/// might.
#[derive(Debug, PartialEq)]
struct Touchy(u32);

impl Serialize for Touchy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 666 {
            panic!("this value refuses to be encoded");
        }
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Touchy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        if n == 13 {
            panic!("this value refuses to be decoded");
        }
        Ok(Touchy(n))
    }
}

#[test]
fn a_deserialize_that_panics_leaves_the_queue_to_other_consumers() {
    let q = Queue::<Touchy>::new().unwrap();
    for n in [13, 1, 2] {
        q.put(Touchy(n)).unwrap();
    }
    // This thread lives on after its get panicked.
    let panicked = catch_unwind(AssertUnwindSafe(|| q.get()));
    assert!(panicked.is_err());
    let results = Queue::<u32>::new().unwrap();
    let (rx, out) = (q.receiver(), results.sender());
    let _consumer = start(move || {
        for _ in 0..2 {
            out.put(rx.get_timeout(BOUND).unwrap().0).unwrap();
        }
    });
    let got: Vec<u32> = (0..2)
        .map(|_| results.get_timeout(2 * BOUND).unwrap())
        .collect();
    assert_eq!(got, [1, 2]);
}

#[test]
fn a_serialize_that_panics_leaves_the_queue_to_other_producers() {
    let q = Queue::<Touchy>::new().unwrap();
    let panicked = catch_unwind(AssertUnwindSafe(|| q.put(Touchy(666))));
    assert!(panicked.is_err());
    let tx = q.sender();
    let _producer = start(move || {
        tx.put_timeout(Touchy(5), BOUND).unwrap();
    });
    assert_eq!(q.get_timeout(2 * BOUND).unwrap(), Touchy(5));
    assert!(q.try_get().is_err());
}
