//! Queues as handles that travel: to children of every start method as
//! `spawn_fn`'s argument, and over a connection to a process already
//! running. The holder records stay right: once every process that could
//! put is gone (ended, or killed), a consumer hears `Disconnected`, and
//! not before.

mod common;

use std::time::Duration;

use common::start;
use procs_core::{Process, StartMethod};
use procs_ipc::{
    Address, Client, Connection, Error, JoinableQueue, Listener, Queue, QueueReceiver, QueueSender,
};

procs_core::init_before_main!();

const LONG: Duration = Duration::from_secs(30);

fn producer((tx, id): (QueueSender<u64>, u64)) -> u64 {
    for k in 0..100 {
        tx.put(id * 1000 + k).unwrap();
    }
    id
}

fn sleeper(tx: QueueSender<u64>) {
    tx.put(7).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// Every item until the queue says no producer is left (a timeout fails).
fn drain<T: serde::de::DeserializeOwned>(rx: &QueueReceiver<T>) -> Vec<T> {
    let mut got = Vec::new();
    loop {
        match rx.get_timeout(LONG) {
            Ok(x) => got.push(x),
            Err(Error::Disconnected) => return got,
            Err(e) => panic!("a get ended with {e:?}"),
        }
    }
}

#[test]
fn children_of_every_method_put_into_the_queue_they_were_given() {
    let q = Queue::<u64>::new().unwrap();
    let rx = q.receiver();
    let methods = [
        StartMethod::Spawn,
        StartMethod::Forkserver,
        StartMethod::Fork,
    ];
    let kids: Vec<_> = methods
        .iter()
        .enumerate()
        .map(|(i, &m)| {
            Process::builder()
                .start_method(m)
                .spawn_fn(producer, (q.sender(), i as u64))
                .unwrap()
        })
        .collect();
    // Only the children can put now.
    drop(q);
    let mut got = drain(&rx);
    got.sort_unstable();
    let want: Vec<u64> = (0..3u64)
        .flat_map(|i| (0..100).map(move |k| i * 1000 + k))
        .collect();
    assert_eq!(got, want);
    for (k, i) in kids.into_iter().zip(0u64..) {
        assert_eq!(k.join().unwrap(), i);
    }
}

#[test]
fn a_killed_child_that_was_given_a_sender_is_no_producer_any_more() {
    for m in [StartMethod::Spawn, StartMethod::Forkserver] {
        let q = Queue::<u64>::new().unwrap();
        let rx = q.receiver();
        let mut child = Process::builder()
            .start_method(m)
            .spawn_fn(sleeper, q.sender())
            .unwrap();
        drop(q);
        assert_eq!(rx.get_timeout(LONG).unwrap(), 7, "{m:?}");
        child.process_mut().kill().unwrap();
        assert!(
            matches!(rx.get_timeout(LONG), Err(Error::Disconnected)),
            "{m:?}"
        );
        assert!(matches!(
            child.join(),
            Err(procs_core::Error::ChildDied { .. })
        ));
    }
}

#[test]
fn a_sender_sent_to_a_running_process_counts_it_before_the_sender_drops_its_own() {
    let name = Address::abstract_name(format!("procs-qtravel-{}", std::process::id()));
    let mut l = Listener::bind(&name, b"queue key").unwrap();
    let _child = start(move || {
        let c: Connection<QueueSender<u64>> = l.accept().unwrap();
        let tx = c.recv_with_handles().unwrap();
        // Tell the parent the sender arrived, then put.
        c.send_bytes(b"got it").unwrap();
        for k in 0..50 {
            tx.put(k).unwrap();
        }
    });
    let q = Queue::<u64>::new().unwrap();
    let rx = q.receiver();
    let c: Connection<QueueSender<u64>> = Client::connect(&name, b"queue key").unwrap();
    c.send_with_handles(&q.sender()).unwrap();
    // Dropped at once: the running process was counted as it was sent, so
    // the consumer does not hear Disconnected before it puts.
    drop(q);
    let mut got = match rx.try_get() {
        Err(Error::Disconnected) => panic!("no producer while the sender was on its way"),
        Ok(x) => vec![x],
        Err(_) => Vec::new(),
    };
    assert_eq!(c.recv_bytes_timeout(LONG).unwrap(), b"got it");
    got.extend(drain(&rx));
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

fn worker(q: JoinableQueue<u32>) {
    while let Ok(x) = q.get_timeout(LONG) {
        q.task_done().unwrap();
        if x == 0 {
            break;
        }
    }
}

#[test]
fn a_joinable_queue_reaches_a_spawned_worker_and_a_wrong_role_is_refused() {
    let q = JoinableQueue::<u32>::new().unwrap();
    let w = Process::builder()
        .start_method(StartMethod::Spawn)
        .spawn_fn(worker, q.clone())
        .unwrap();
    for x in [3, 2, 1, 0] {
        q.put(x).unwrap();
    }
    q.join_timeout(LONG)
        .expect("the worker reported every item done");
    w.join().unwrap();
    // A receiver's bytes read as a sender are refused.
    let plain = Queue::<u32>::new().unwrap();
    let (bytes, fds) = procs_core::handles::collecting(|| postcard::to_allocvec(&plain.receiver()));
    let decoded: Result<QueueSender<u32>, _> =
        procs_core::handles::supplying(fds, || postcard::from_bytes(&bytes.unwrap()));
    assert!(decoded.is_err());
}

type Kit = (
    QueueSender<(u32, u64)>,
    procs_sync::Lock,
    procs_sync::Barrier,
    u32,
);

/// Meets the others at the barrier, then puts 100 items, each under the
/// shared lock (whose holder it checks is no one else).
fn kit_worker((tx, lock, barrier, id): Kit) {
    barrier.wait_timeout(LONG).unwrap();
    for k in 0..100 {
        let _g = lock.lock().unwrap();
        tx.put((id, k)).unwrap();
    }
}

#[test]
fn a_queue_a_lock_and_a_barrier_reach_spawned_served_and_forked_children_together() {
    let q = Queue::<(u32, u64)>::new().unwrap();
    let rx = q.receiver();
    let lock = procs_sync::Lock::new().unwrap();
    let barrier = procs_sync::Barrier::new(4).unwrap();
    let methods = [
        StartMethod::Spawn,
        StartMethod::Forkserver,
        StartMethod::Fork,
    ];
    let kids: Vec<_> = methods
        .iter()
        .zip(0u32..)
        .map(|(&m, id)| {
            let kit: Kit = (q.sender(), lock.clone(), barrier.clone(), id);
            Process::builder()
                .start_method(m)
                .spawn_fn(kit_worker, kit)
                .unwrap()
        })
        .collect();
    drop(q);
    // Nobody puts before all three and this process met.
    assert!(matches!(rx.try_get(), Err(Error::Empty)));
    barrier.wait_timeout(LONG).unwrap();
    let mut got = drain(&rx);
    got.sort_unstable();
    let want: Vec<(u32, u64)> = (0..3).flat_map(|i| (0..100).map(move |k| (i, k))).collect();
    assert_eq!(got, want);
    for k in kids {
        k.join().unwrap();
    }
}
