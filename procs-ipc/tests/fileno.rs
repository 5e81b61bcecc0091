//! `fileno` across processes, polled with `poll(2)`: readable exactly when
//! a receive would not block, for a pipe's end (its eventfd) and for a
//! connection of a listener (its socket).

mod common;

use std::os::fd::BorrowedFd;
use std::time::Duration;

use common::start;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use procs_ipc::{Address, Client, Connection, Error, Listener, PipeBuilder, pipe, pipe_one_way};

const LONG: Duration = Duration::from_secs(20);

/// Whether `fd` polls readable within `ms` milliseconds.
fn readable(fd: BorrowedFd<'_>, ms: u16) -> bool {
    let mut set = [PollFd::new(fd, PollFlags::POLLIN)];
    let n = poll(&mut set, PollTimeout::from(ms)).expect("poll");
    n == 1
}

const NOW: u16 = 0;
const SOON: u16 = 20_000;

/// What the child does on each order of the parent.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy)]
enum Order {
    /// Send this many messages.
    Send(u32),
    /// Close the end, and stay.
    Close,
}

/// Rounds of: the child sends one message, which the parent waits for on
/// the descriptor alone; or two, and says so, and then the descriptor is
/// readable at once, still after the first is taken, and not after the
/// second. Then the child closes its end, staying alive, and the
/// descriptor is readable for good.
fn readable_iff_a_message_waits(
    parent: Connection<u32>,
    child: Connection<u32>,
    orders: Connection<Order>,
    take_orders: Connection<Order>,
) {
    let p = start(move || {
        let mut n = 0;
        while let Ok(order) = take_orders.recv() {
            match order {
                Order::Send(k) => {
                    for _ in 0..k {
                        child.send(&n).unwrap();
                        n += 1;
                    }
                    if k > 1 {
                        take_orders.send(&order).unwrap();
                    }
                }
                Order::Close => {
                    child.close();
                    take_orders.send(&Order::Close).unwrap();
                }
            }
        }
    });
    let fd = parent.fileno().unwrap();
    assert!(!readable(fd, NOW), "readable before any message");
    let mut n = 0;
    for round in 0..400 {
        if round % 2 == 0 {
            orders.send(&Order::Send(1)).unwrap();
            assert!(
                readable(fd, SOON),
                "round {round}: not readable after a send"
            );
            assert_eq!(parent.recv().unwrap(), n);
            n += 1;
        } else {
            orders.send(&Order::Send(2)).unwrap();
            assert!(matches!(orders.recv_timeout(LONG), Ok(Order::Send(2))));
            assert!(readable(fd, NOW), "round {round}: two wait, not readable");
            assert_eq!(parent.recv().unwrap(), n);
            assert!(readable(fd, NOW), "round {round}: one waits, not readable");
            assert_eq!(parent.recv().unwrap(), n + 1);
            n += 2;
        }
        assert!(
            !readable(fd, NOW),
            "round {round}: readable after the last recv"
        );
    }
    orders.send(&Order::Close).unwrap();
    assert!(matches!(orders.recv_timeout(LONG), Ok(Order::Close)));
    assert!(readable(fd, NOW), "not readable once the writer closed");
    assert!(matches!(parent.recv(), Err(Error::Disconnected)));
    assert!(readable(fd, NOW), "not readable after the disconnect");
    drop(orders);
    let mut p = p;
    assert_eq!(p.0.join_timeout(LONG).unwrap(), Some(0));
}

#[test]
fn a_pipe_end_is_readable_exactly_when_a_message_waits() {
    let (parent, child) = pipe::<u32>().unwrap();
    let (orders, take) = pipe::<Order>().unwrap();
    readable_iff_a_message_waits(parent, child, orders, take);
}

#[test]
fn a_socket_connection_is_readable_exactly_when_a_message_waits() {
    let mut l = Listener::bind(
        Address::abstract_name(format!("procs-fileno-{}", std::process::id())),
        b"k",
    )
    .unwrap();
    let at = l.address().clone();
    let (tell, told) = pipe::<()>().unwrap();
    // The child's end is made in the child; the parent's by accept.
    let (orders, take) = pipe::<Order>().unwrap();
    let p = start(move || {
        let child: Connection<u32> = Client::connect(&at, b"k").unwrap();
        tell.send(&()).unwrap();
        let mut n = 0;
        while let Ok(order) = take.recv() {
            match order {
                Order::Send(k) => {
                    for _ in 0..k {
                        child.send(&n).unwrap();
                        n += 1;
                    }
                }
                Order::Close => {
                    child.close();
                    take.send(&Order::Close).unwrap();
                }
            }
        }
    });
    let parent: Connection<u32> = l.accept().unwrap();
    told.recv_timeout(LONG).unwrap();
    let fd = parent.fileno().unwrap();
    assert!(!readable(fd, NOW));
    for round in 0..100 {
        orders.send(&Order::Send(1)).unwrap();
        assert!(readable(fd, SOON), "round {round}");
        assert_eq!(parent.recv_timeout(LONG).unwrap(), round);
        assert!(!readable(fd, NOW), "round {round}");
    }
    orders.send(&Order::Close).unwrap();
    assert!(matches!(orders.recv_timeout(LONG), Ok(Order::Close)));
    assert!(readable(fd, SOON));
    assert!(matches!(parent.recv(), Err(Error::Disconnected)));
    drop(orders);
    let mut p = p;
    assert_eq!(p.0.join_timeout(LONG).unwrap(), Some(0));
}

#[test]
fn messages_sent_before_fileno_make_it_readable_at_once() {
    let (rx, tx) = pipe_one_way::<u32>().unwrap();
    let (done, wait_done) = pipe::<()>().unwrap();
    let mut p = start(move || {
        for i in 0..3 {
            tx.send(&i).unwrap();
        }
        done.send(&()).unwrap();
        // Stay until the parent is done, holding the sending end.
        let _ = done.recv();
    });
    wait_done.recv_timeout(LONG).unwrap();
    let fd = rx.fileno().unwrap();
    assert!(readable(fd, NOW));
    for i in 0..3 {
        assert_eq!(rx.recv().unwrap(), i);
    }
    assert!(!readable(fd, NOW));
    drop(wait_done);
    assert_eq!(p.0.join_timeout(LONG).unwrap(), Some(0));
}

#[test]
fn a_message_larger_than_the_ring_makes_it_readable_as_it_begins() {
    // The writer cannot finish before the reader takes pieces: the
    // descriptor must turn readable when the message begins.
    let (rx, tx) = PipeBuilder::new()
        .capacity(64 * 1024)
        .one_way::<u8>()
        .unwrap();
    let fd = rx.fileno().unwrap();
    let big: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let sent = big.clone();
    let mut p = start(move || tx.send_bytes(&sent).unwrap());
    assert!(readable(fd, SOON));
    assert_eq!(rx.recv_bytes().unwrap(), big);
    assert_eq!(p.0.join_timeout(LONG).unwrap(), Some(0));
    // The writer is gone (its end dropped at exit): readable for good.
    assert!(readable(fd, SOON));
    assert!(matches!(rx.recv_bytes(), Err(Error::Disconnected)));
}

#[test]
fn a_burst_keeps_readable_a_promise_and_loses_no_wakeup() {
    let (rx, tx) = PipeBuilder::new().capacity(4096).one_way::<u32>().unwrap();
    let fd = rx.fileno().unwrap();
    const N: u32 = 20_000;
    let mut p = start(move || {
        for i in 0..N {
            tx.send(&i).unwrap();
        }
    });
    let mut next = 0;
    while next < N {
        // Every message is announced: sleeping on the descriptor alone gets
        // them all.
        assert!(readable(fd, SOON), "no wake-up for message {next}");
        while rx.poll(Duration::ZERO).unwrap() && next < N {
            assert_eq!(rx.recv().unwrap(), next);
            next += 1;
            // Readable means a message waits (only this process takes them).
            if readable(fd, NOW) && next < N {
                assert!(
                    rx.poll(Duration::ZERO).unwrap(),
                    "readable, yet nothing waits"
                );
            }
        }
    }
    assert_eq!(p.0.join_timeout(LONG).unwrap(), Some(0));
    assert!(readable(fd, SOON));
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
}

#[test]
fn a_killed_writer_is_announced_once_a_poll_notices_the_death() {
    let (rx, tx) = pipe_one_way::<u32>().unwrap();
    let fd = rx.fileno().unwrap();
    let (ready, wait_ready) = pipe::<()>().unwrap();
    let mut p = start(move || {
        let _hold = tx;
        ready.send(&()).unwrap();
        loop {
            std::thread::park();
        }
    });
    wait_ready.recv_timeout(LONG).unwrap();
    assert!(!readable(fd, NOW));
    p.0.kill().unwrap();
    assert!(p.0.join_timeout(LONG).unwrap().is_some());
    // The death rang nothing; the end's poll notices it and says so.
    assert!(rx.poll(LONG).unwrap());
    assert!(readable(fd, NOW));
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
    assert!(readable(fd, NOW));
}

#[test]
fn a_closed_or_sending_only_end_has_no_descriptor() {
    let (a, _b) = pipe::<u8>().unwrap();
    a.close();
    assert!(matches!(a.fileno(), Err(Error::Closed)));
    let (rx, _tx) = pipe_one_way::<u8>().unwrap();
    assert!(rx.fileno().is_ok());
}

#[test]
fn epoll_sees_a_pipe_end_and_a_socket_connection_level_triggered() {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
    let (rx, tx) = pipe_one_way::<u32>().unwrap();
    let mut l = Listener::bind(
        Address::abstract_name(format!("procs-fileno-epoll-{}", std::process::id())),
        b"k",
    )
    .unwrap();
    let at = l.address().clone();
    let (go, wait_go) = pipe::<u32>().unwrap();
    let mut p = start(move || {
        let c: Connection<u32> = Client::connect(&at, b"k").unwrap();
        // Order 1: a message on the pipe; 2: on the socket; 0: stop.
        while let Ok(order) = wait_go.recv() {
            match order {
                1 => tx.send(&10).unwrap(),
                2 => c.send(&20).unwrap(),
                _ => break,
            }
            wait_go.send(&order).unwrap();
        }
    });
    let c: Connection<u32> = l.accept().unwrap();
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    epoll
        .add(
            rx.fileno().unwrap(),
            EpollEvent::new(EpollFlags::EPOLLIN, 1),
        )
        .unwrap();
    epoll
        .add(c.fileno().unwrap(), EpollEvent::new(EpollFlags::EPOLLIN, 2))
        .unwrap();
    let ready = |ms: u16| {
        let mut events = [EpollEvent::empty(); 4];
        let n = epoll.wait(&mut events, ms).unwrap();
        let mut v: Vec<u64> = events[..n].iter().map(EpollEvent::data).collect();
        v.sort_unstable();
        v
    };
    assert!(ready(0).is_empty());
    for order in [1, 2] {
        go.send(&order).unwrap();
        assert_eq!(go.recv_timeout(LONG).unwrap(), order);
    }
    // Level-triggered: reported on every wait until received.
    assert_eq!(ready(SOON), vec![1, 2]);
    assert_eq!(ready(0), vec![1, 2]);
    assert_eq!(rx.recv().unwrap(), 10);
    assert_eq!(ready(0), vec![2]);
    assert_eq!(c.recv().unwrap(), 20);
    assert!(ready(0).is_empty());
    go.send(&0).unwrap();
    assert_eq!(p.0.join_timeout(LONG).unwrap(), Some(0));
    // Both writers are gone: both ready for good.
    assert_eq!(ready(SOON), vec![1, 2]);
    epoll.delete(rx.fileno().unwrap()).unwrap();
    epoll.delete(c.fileno().unwrap()).unwrap();
}
