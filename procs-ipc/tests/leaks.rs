//! Nothing is left open: after pipes with descriptors asked for, listeners
//! and their connections are dropped, this process holds the descriptors
//! it held before, and no socket file is left. (One test alone in its
//! binary, so that no other test opens descriptors meanwhile.)

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::start;
use procs_ipc::{Address, Client, Connection, Listener, pipe};

fn open_fds() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn pipes_listeners_and_connections_leave_no_descriptor_and_no_file() {
    let dir = std::env::temp_dir().join(format!("procs-leaks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let before = open_fds();
    for round in 0..3 {
        let (a, b) = pipe::<u32>().unwrap();
        let _fd = a.fileno().unwrap();
        let mut p = start(move || b.send(&1).unwrap());
        assert_eq!(a.recv().unwrap(), 1);
        assert!(p.0.join_timeout(Duration::from_secs(20)).unwrap().is_some());
        drop(a);
        for address in [
            Address::Unix(dir.join(format!("{round}.sock"))),
            Address::Tcp("127.0.0.1:0".parse::<SocketAddr>().unwrap()),
        ] {
            let mut l = Listener::bind(address, b"k").unwrap();
            let at = l.address().clone();
            let mut p = start(move || {
                let c: Connection<u32> = Client::connect(&at, b"k").unwrap();
                c.send(&2).unwrap();
            });
            let c: Connection<u32> = l.accept().unwrap();
            let _fd = c.fileno().unwrap();
            assert_eq!(c.recv().unwrap(), 2);
            c.close();
            assert!(p.0.join_timeout(Duration::from_secs(20)).unwrap().is_some());
            drop(c);
            drop(l);
        }
    }
    assert_eq!(open_fds(), before);
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "a socket file was left"
    );
    std::fs::remove_dir(&dir).unwrap();
}
