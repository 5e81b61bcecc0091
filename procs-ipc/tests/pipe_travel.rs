//! Pipe ends as handles that travel: to children of every start method as
//! `spawn_fn`'s argument, and over a connection to a process already
//! running. A receiver hears `Disconnected` once every holder of the other
//! end is gone (ended or killed), and not while an end is on its way.

mod common;

use std::time::Duration;

use common::start;
use procs_core::{Process, StartMethod};
use procs_ipc::{
    Address, Client, Connection, Error, Listener, Receiver, Sender, pipe, pipe_one_way,
};

procs_core::init_before_main!();

const LONG: Duration = Duration::from_secs(30);

fn sends((tx, id): (Sender<u64>, u64)) {
    for k in 0..100 {
        tx.send(&(id * 1000 + k)).unwrap();
    }
}

fn echo(c: Connection<String>) -> usize {
    let mut n = 0;
    // Until the parent drops its end.
    while let Ok(s) = c.recv_timeout(LONG) {
        c.send(&s.to_uppercase()).unwrap();
        n += 1;
    }
    n
}

fn holds(tx: Sender<u64>) {
    tx.send(&7).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// Every value until the other end is gone (a timeout fails).
fn drain(rx: &Receiver<u64>) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        match rx.recv_timeout(LONG) {
            Ok(x) => got.push(x),
            Err(Error::Disconnected) => return got,
            Err(e) => panic!("a receive ended with {e:?}"),
        }
    }
}

#[test]
fn a_sending_end_reaches_children_of_every_method() {
    for m in [
        StartMethod::Spawn,
        StartMethod::Forkserver,
        StartMethod::Fork,
    ] {
        let (rx, tx) = pipe_one_way::<u64>().unwrap();
        let child = Process::builder()
            .start_method(m)
            .spawn_fn(sends, (tx, 3))
            .unwrap();
        // The sending end is the child's alone now.
        assert_eq!(drain(&rx), (3000..3100).collect::<Vec<_>>(), "{m:?}");
        child.join().unwrap();
    }
}

#[test]
fn a_duplex_end_serves_a_spawned_child_until_the_parent_lets_go() {
    let (here, there) = pipe::<String>().unwrap();
    let child = Process::builder()
        .start_method(StartMethod::Spawn)
        .spawn_fn(echo, there)
        .unwrap();
    for w in ["a", "bc", "def"] {
        here.send(&w.to_string()).unwrap();
        assert_eq!(here.recv_timeout(LONG).unwrap(), w.to_uppercase());
    }
    drop(here);
    assert_eq!(child.join().unwrap(), 3);
}

#[test]
fn a_killed_child_holding_a_sending_end_disconnects_its_receiver() {
    for m in [StartMethod::Spawn, StartMethod::Forkserver] {
        let (rx, tx) = pipe_one_way::<u64>().unwrap();
        let mut child = Process::builder()
            .start_method(m)
            .spawn_fn(holds, tx)
            .unwrap();
        assert_eq!(rx.recv_timeout(LONG).unwrap(), 7);
        child.process_mut().kill().unwrap();
        assert!(
            matches!(rx.recv_timeout(LONG), Err(Error::Disconnected)),
            "{m:?}"
        );
        assert!(child.join().is_err());
    }
}

#[test]
fn an_end_sent_to_a_running_process_is_counted_on_its_way() {
    let name = Address::abstract_name(format!("procs-ptravel-{}", std::process::id()));
    let mut l = Listener::bind(&name, b"pipe key").unwrap();
    let _child = start(move || {
        let c: Connection<Sender<u64>> = l.accept().unwrap();
        let tx = c.recv_with_handles().unwrap();
        c.send_bytes(b"got it").unwrap();
        for k in 0..10 {
            tx.send(&k).unwrap();
        }
    });
    let (rx, tx) = pipe_one_way::<u64>().unwrap();
    let c: Connection<Sender<u64>> = Client::connect(&name, b"pipe key").unwrap();
    c.send_with_handles(&tx).unwrap();
    // Gone from here at once: the end on its way is still counted.
    drop(tx);
    let mut got = match rx.recv_timeout(Duration::ZERO) {
        Err(Error::Disconnected) => panic!("no sender while the end was on its way"),
        Ok(x) => vec![x],
        Err(_) => Vec::new(),
    };
    assert_eq!(c.recv_bytes_timeout(LONG).unwrap(), b"got it");
    got.extend(drain(&rx));
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    // A receiving end read as a sending one is refused; a socket's
    // connection does not travel as a handle.
    let (rx2, _tx2) = pipe_one_way::<u64>().unwrap();
    let (bytes, fds) = procs_core::handles::collecting(|| postcard::to_allocvec(&rx2));
    let wrong: Result<Sender<u64>, _> =
        procs_core::handles::supplying(fds, || postcard::from_bytes(&bytes.unwrap()));
    assert!(wrong.is_err());
    let (encoded, _) = procs_core::handles::collecting(|| postcard::to_allocvec(&c));
    assert!(encoded.is_err());
}
