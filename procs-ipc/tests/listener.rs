//! Listeners and clients between real processes, over a Unix socket and
//! TCP on 127.0.0.1: values both ways, the authkey handshake refusing wrong
//! keys, garbage, huge lengths and silence while the listener goes on, and
//! a peer killed mid-message.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Reaper, start};
use procs_ipc::{Address, Client, Connection, Error, Listener, pipe};

const LONG: Duration = Duration::from_secs(20);

/// A directory of its own for a test's socket files, removed (it must be
/// empty by then: nothing leaked) when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("procs-listener-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn sock(&self) -> PathBuf {
        self.0.join("l.sock")
    }

    fn is_empty(&self) -> bool {
        std::fs::read_dir(&self.0).unwrap().next().is_none()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tcp_any() -> Address {
    Address::Tcp("127.0.0.1:0".parse::<SocketAddr>().unwrap())
}

fn join_ok(mut p: Reaper) {
    assert_eq!(p.0.join_timeout(LONG).unwrap(), Some(0), "the child failed");
}

/// A child listens on `address`, tells the parent where, accepts one
/// client, and answers every number with its double and every string with
/// itself reversed, until told to stop; the parent is the client.
///
/// (The child stops on a message, not on the end of the stream: under
/// `cargo test` another test's child, forked meanwhile, holds a copy of
/// this process's socket until it exits, as any inherited descriptor.)
fn exchange_with_a_child_listener(address: Address) {
    let (tell, told) = pipe::<Address>().unwrap();
    let p = start(move || {
        let mut l = Listener::bind(address, b"key").unwrap();
        tell.send(l.address()).unwrap();
        let c: Connection<(u64, String)> = l.accept().unwrap();
        loop {
            match c.recv().unwrap() {
                (u64::MAX, _) => break,
                (n, s) => c.send(&(2 * n, s.chars().rev().collect())).unwrap(),
            }
        }
    });
    let at = told.recv_timeout(LONG).unwrap();
    let c: Connection<(u64, String)> = Client::connect(&at, b"key").unwrap();
    for i in 0..500u64 {
        c.send(&(i, format!("abc{i}"))).unwrap();
        let (n, s) = c.recv_timeout(LONG).unwrap();
        assert_eq!(n, 2 * i);
        assert_eq!(s, format!("abc{i}").chars().rev().collect::<String>());
    }
    // Large values go through too, bytes unchanged.
    let big: String = (0..3_000_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    c.send(&(1, big.clone())).unwrap();
    let (_, back) = c.recv_timeout(LONG).unwrap();
    assert_eq!(back, big.chars().rev().collect::<String>());
    c.send(&(u64::MAX, String::new())).unwrap();
    drop(c);
    join_ok(p);
}

#[test]
fn values_go_both_ways_over_a_unix_socket() {
    let dir = Dir::new("unix");
    exchange_with_a_child_listener(Address::Unix(dir.sock()));
    // The child's listener removed its socket file.
    assert!(dir.is_empty());
}

#[test]
fn values_go_both_ways_over_an_abstract_unix_socket() {
    exchange_with_a_child_listener(Address::abstract_name(format!(
        "procs-listener-test-{}",
        std::process::id()
    )));
}

#[test]
fn values_go_both_ways_over_tcp() {
    exchange_with_a_child_listener(tcp_any());
}

/// Starts a client in a child that connects with `key`, then sends `n`
/// and expects `n + 1` back; it reports how its connect ended.
fn client(at: &Address, key: &'static [u8], n: u32) -> (Reaper, Connection<String>) {
    let (report, reported) = pipe::<String>().unwrap();
    let at = at.clone();
    let p = start(move || {
        let r = Client::connect::<u32>(&at, key);
        report
            .send(&match &r {
                Ok(_) => "ok".to_string(),
                Err(e) => e.to_string(),
            })
            .unwrap();
        if let Ok(c) = r {
            c.send(&n).unwrap();
            assert_eq!(c.recv().unwrap(), n + 1);
        }
    });
    (p, reported)
}

fn wrong_key_then_right_key(address: Address) {
    let mut l = Listener::bind(address, b"right key").unwrap();
    let at = l.address().clone();
    let (bad, bad_said) = client(&at, b"wrong key", 0);
    let e = l.accept::<u32>().expect_err("a wrong key is refused");
    assert!(matches!(e, Error::Authentication(_)), "{e:?}");
    let said = bad_said.recv_timeout(LONG).unwrap();
    assert!(said.starts_with("authentication failed"), "{said}");
    join_ok(bad);
    // The listener goes on.
    let (good, good_said) = client(&at, b"right key", 41);
    // The listening socket is readable once the client is there.
    let fd = l.fileno().unwrap();
    assert_eq!(procs_ipc::wait(&[&fd], Some(LONG)).unwrap(), vec![0]);
    let c = l.accept::<u32>().unwrap();
    assert_eq!(good_said.recv_timeout(LONG).unwrap(), "ok");
    let n = c.recv_timeout(LONG).unwrap();
    c.send(&(n + 1)).unwrap();
    join_ok(good);
}

#[test]
fn a_wrong_authkey_is_refused_on_both_sides_and_a_right_one_accepted_after() {
    let dir = Dir::new("wrong-key");
    wrong_key_then_right_key(Address::Unix(dir.sock()));
    assert!(dir.is_empty());
    wrong_key_then_right_key(tcp_any());
}

fn write_frame(s: &mut UnixStream, bytes: &[u8]) {
    s.write_all(&(bytes.len() as u32).to_be_bytes()).unwrap();
    s.write_all(bytes).unwrap();
}

fn read_frame(s: &mut UnixStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut v = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut v).unwrap();
    v
}

#[test]
fn a_listener_that_cannot_answer_the_clients_challenge_is_refused_by_the_client() {
    // A fake listener welcomes any answer, then answers the client's own
    // challenge with a made-up digest: the client must refuse it.
    let dir = Dir::new("fake-listener");
    let server = std::os::unix::net::UnixListener::bind(dir.sock()).unwrap();
    let (seen, wait_seen) = pipe::<Vec<u8>>().unwrap();
    let p = start(move || {
        let (mut s, _) = server.accept().unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        let mut challenge = b"#CHALLENGE#{sha256}".to_vec();
        challenge.extend_from_slice(&[7u8; 40]);
        write_frame(&mut s, &challenge);
        let _answer = read_frame(&mut s);
        write_frame(&mut s, b"#WELCOME#");
        let theirs = read_frame(&mut s);
        let mut made_up = b"{sha256}".to_vec();
        made_up.extend_from_slice(&[0u8; 32]);
        write_frame(&mut s, &made_up);
        seen.send(&theirs).unwrap();
        seen.send(&read_frame(&mut s)).unwrap();
    });
    let r = Client::connect::<u8>(dir.sock().as_path(), b"key");
    let e = r.expect_err("the client refuses the fake listener");
    assert!(matches!(e, Error::Authentication(_)), "{e:?}");
    assert!(e.to_string().contains("wrong"), "{e}");
    // The client challenged with Python 3.12's form, and said so.
    let theirs = wait_seen.recv_timeout(LONG).unwrap();
    assert!(theirs.starts_with(b"#CHALLENGE#{sha256}"));
    assert_eq!(theirs.len(), b"#CHALLENGE#{sha256}".len() + 40);
    assert_eq!(wait_seen.recv_timeout(LONG).unwrap(), b"#FAILURE#");
    join_ok(p);
    std::fs::remove_file(dir.sock()).unwrap();
}

/// What a misbehaving client does once connected.
#[derive(Clone, Copy, Debug)]
enum Misbehave {
    /// Claims a response of 2 GiB.
    HugeLength,
    /// Claims a response of 2^62 bytes, in the long form.
    HugeLongLength,
    /// Writes bytes that are no frame (a negative length).
    Garbage,
    /// Writes a well-formed response of the wrong digest size.
    WrongResponse,
    /// Says nothing.
    Silence,
    /// Connects and closes at once.
    Hangup,
}

fn misbehave<S: Write>(mut s: S, how: Misbehave) -> S {
    let bytes: Vec<u8> = match how {
        Misbehave::HugeLength => 0x7fff_ffffu32.to_be_bytes().to_vec(),
        Misbehave::HugeLongLength => {
            let mut v = (-1i32).to_be_bytes().to_vec();
            v.extend_from_slice(&(1u64 << 62).to_be_bytes());
            v
        }
        Misbehave::Garbage => vec![0xff, 0x00, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef],
        Misbehave::WrongResponse => {
            let mut v = 12u32.to_be_bytes().to_vec();
            v.extend_from_slice(b"{sha256}abcd");
            v
        }
        Misbehave::Silence | Misbehave::Hangup => Vec::new(),
    };
    s.write_all(&bytes).unwrap();
    s
}

#[test]
fn garbage_huge_lengths_and_silence_in_the_handshake_are_refused_and_the_next_client_accepted() {
    let dir = Dir::new("garbage");
    for address in [Address::Unix(dir.sock()), tcp_any()] {
        let mut l = Listener::bind(address, b"key").unwrap();
        l.set_handshake_timeout(Duration::from_millis(300));
        let at = l.address().clone();
        for how in [
            Misbehave::HugeLength,
            Misbehave::HugeLongLength,
            Misbehave::Garbage,
            Misbehave::WrongResponse,
            Misbehave::Silence,
            Misbehave::Hangup,
        ] {
            let (done, wait_done) = pipe::<()>().unwrap();
            let to = at.clone();
            let p = start(move || {
                // Raw sockets: the bytes are not what a client writes. The
                // socket stays open until the parent has seen the refusal.
                let hold: Box<dyn std::any::Any> = match &to {
                    Address::Unix(path) => {
                        Box::new(misbehave(UnixStream::connect(path).unwrap(), how))
                    }
                    Address::Tcp(a) => Box::new(misbehave(TcpStream::connect(a).unwrap(), how)),
                    _ => unreachable!(),
                };
                if !matches!(how, Misbehave::Hangup) {
                    let _ = wait_done.recv_timeout(LONG);
                }
                drop(hold);
            });
            let started = Instant::now();
            let e = l.accept::<u32>().expect_err("refused");
            assert!(matches!(e, Error::Authentication(_)), "{how:?}: {e:?}");
            // Refused at once, or at the handshake's deadline for silence.
            assert!(started.elapsed() < Duration::from_secs(5), "{how:?}");
            let _ = done.send(&());
            join_ok(p);
        }
        // And the next, proper client is served.
        let (good, said) = client(&at, b"key", 7);
        let c = l.accept::<u32>().unwrap();
        assert_eq!(said.recv_timeout(LONG).unwrap(), "ok");
        let n = c.recv_timeout(LONG).unwrap();
        c.send(&(n + 1)).unwrap();
        join_ok(good);
    }
    assert!(dir.is_empty());
}

fn killed_mid_message(address: Address) {
    let mut l = Listener::bind(address, b"key").unwrap();
    let at = l.address().clone();
    let mut p = start(move || {
        let c: Connection<u32> = Client::connect(&at, b"key").unwrap();
        for i in 0..3 {
            c.send_bytes(&[i; 100]).unwrap();
        }
        // Far more than the socket holds: the child blocks inside it until
        // it is killed.
        c.send_bytes(&vec![9u8; 64 << 20]).unwrap();
        unreachable!("nobody read the large message");
    });
    let c: Connection<u32> = l.accept().unwrap();
    for i in 0..3 {
        assert_eq!(c.recv_bytes_timeout(LONG).unwrap(), vec![i; 100]);
    }
    // The large message has begun to arrive.
    assert!(c.poll(LONG).unwrap());
    p.0.kill().unwrap();
    assert!(p.0.join_timeout(LONG).unwrap().is_some());
    let start = Instant::now();
    assert!(matches!(c.recv_bytes(), Err(Error::Disconnected)));
    assert!(matches!(c.recv_bytes(), Err(Error::Disconnected)));
    assert!(start.elapsed() < LONG);
}

#[test]
fn a_peer_killed_mid_message_leaves_disconnected_and_no_torn_message() {
    let dir = Dir::new("killed");
    killed_mid_message(Address::Unix(dir.sock()));
    killed_mid_message(tcp_any());
    assert!(dir.is_empty());
}

#[test]
fn a_socket_connection_has_the_pipe_methods() {
    let mut l = Listener::bind(tcp_any(), b"key").unwrap();
    let at = l.address().clone();
    let p = start(move || {
        let c: Connection<String> = Client::connect(&at, b"key").unwrap();
        // Echo every message as bytes until told to stop.
        loop {
            match c.recv_bytes().unwrap() {
                b if b == b"quit" => break,
                b => c.send_bytes(&b).unwrap(),
            }
        }
    });
    let c: Connection<String> = l.accept().unwrap();
    assert!(!c.poll(Duration::ZERO).unwrap());
    assert!(matches!(
        c.recv_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    c.send(&"text".to_string()).unwrap();
    assert_eq!(c.recv_timeout(LONG).unwrap(), "text");
    // An empty message, and pod slices.
    c.send_bytes(&[]).unwrap();
    assert_eq!(c.recv_bytes_timeout(LONG).unwrap(), Vec::<u8>::new());
    c.send_pod(&[1u64, 2, 3]).unwrap();
    assert_eq!(c.recv_pod::<u64>().unwrap(), vec![1, 2, 3]);
    // A buffer too small leaves the message to a larger one.
    c.send_bytes(b"0123456789").unwrap();
    assert!(c.poll(LONG).unwrap());
    let mut small = [0u8; 4];
    assert!(matches!(
        c.recv_bytes_into(&mut small),
        Err(Error::BufferTooSmall {
            needed: 10,
            available: 4
        })
    ));
    let mut big = [0u8; 16];
    assert_eq!(c.recv_bytes_into(&mut big).unwrap(), 10);
    assert_eq!(&big[..10], b"0123456789");
    // A wait sees the socket connection as it sees a pipe's.
    c.send_bytes(b"x").unwrap();
    assert_eq!(procs_ipc::wait(&[&c], Some(LONG)).unwrap(), vec![0]);
    assert_eq!(c.recv_bytes().unwrap(), b"x");
    c.send_bytes(b"quit").unwrap();
    c.close();
    assert!(c.closed());
    assert!(matches!(c.recv_bytes(), Err(Error::Closed)));
    join_ok(p);
}

#[test]
fn a_unix_path_in_use_is_refused_and_the_file_goes_with_the_listener() {
    let dir = Dir::new("in-use");
    let l = Listener::bind(dir.sock().as_path(), b"k").unwrap();
    assert!(dir.sock().exists());
    assert!(matches!(
        Listener::bind(dir.sock().as_path(), b"k"),
        Err(Error::Io(_))
    ));
    drop(l);
    assert!(dir.is_empty());
}

#[test]
fn a_listener_moved_into_a_child_keeps_its_file_until_the_child_drops_it() {
    let dir = Dir::new("moved");
    let mut l = Listener::bind(dir.sock().as_path(), b"k").unwrap();
    let at = l.address().clone();
    let p = start(move || {
        let c: Connection<u8> = l.accept().unwrap();
        c.send(&5).unwrap();
        drop(l);
    });
    // The parent let go of its copy: the file is still there for clients.
    let c: Connection<u8> = Client::connect(&at, b"k").unwrap();
    assert_eq!(c.recv_timeout(LONG).unwrap(), 5);
    join_ok(p);
    assert!(dir.is_empty());
}

/// What an authenticated peer writes raw on the socket, and what the
/// receive that meets it must say.
fn raw_after_handshake(
    bytes: Vec<u8>,
    then_close: bool,
    check: fn(&Error) -> bool,
    again: fn(&Error) -> bool,
) {
    let mut l = Listener::bind(tcp_any(), b"key").unwrap();
    let at = l.address().clone();
    let (done, wait_done) = pipe::<()>().unwrap();
    let p = start(move || {
        let c: Connection<u8> = Client::connect(&at, b"key").unwrap();
        // The connection's own socket, written without its framing.
        let mut raw = TcpStream::from(c.fileno().unwrap().try_clone_to_owned().unwrap());
        raw.write_all(&bytes).unwrap();
        if then_close {
            drop(raw);
            drop(c);
        } else {
            let _ = wait_done.recv_timeout(LONG);
        }
    });
    let c: Connection<u8> = l.accept().unwrap();
    let e = c.recv_bytes().expect_err("refused");
    assert!(check(&e), "{e:?}");
    // A receive would not block (it fails at once): the socket says so.
    let mut set = [nix::poll::PollFd::new(
        c.fileno().unwrap(),
        nix::poll::PollFlags::POLLIN,
    )];
    assert_eq!(
        nix::poll::poll(&mut set, nix::poll::PollTimeout::ZERO).unwrap(),
        1
    );
    let e = c.recv_bytes().expect_err("refused again");
    assert!(again(&e), "{e:?}");
    let _ = done.send(&());
    join_ok(p);
}

#[test]
fn lengths_that_lie_after_the_handshake_are_refused_before_anything_is_allocated() {
    let long = |len: u64| {
        let mut v = (-1i32).to_be_bytes().to_vec();
        v.extend_from_slice(&len.to_be_bytes());
        v
    };
    // More than the limit: refused from the length alone, and the stream
    // cannot be followed after it.
    raw_after_handshake(
        long(1 << 62),
        false,
        |e| matches!(e, Error::TooLarge { len, .. } if *len as u64 == 1 << 62),
        |e| matches!(e, Error::Corrupt(_)),
    );
    // Lengths no writer sends.
    raw_after_handshake(
        (-5i32).to_be_bytes().to_vec(),
        false,
        |e| matches!(e, Error::Corrupt(_)),
        |e| matches!(e, Error::Corrupt(_)),
    );
    raw_after_handshake(
        long(10),
        false,
        |e| matches!(e, Error::Corrupt(_)),
        |e| matches!(e, Error::Corrupt(_)),
    );
    // A gigabyte promised, ten bytes given, and the peer gone: nothing
    // torn is delivered, and nothing near a gigabyte was allocated.
    let mut lie = (1u32 << 30).to_be_bytes().to_vec();
    lie.extend_from_slice(b"0123456789");
    raw_after_handshake(
        lie,
        true,
        |e| matches!(e, Error::Disconnected),
        |e| matches!(e, Error::Disconnected),
    );
}

/// A listener on a fresh abstract name, and its name.
fn abstract_listener(tag: &str) -> (Listener, Address) {
    let name = Address::abstract_name(format!("procs-fds-{tag}-{}", std::process::id()));
    (Listener::bind(&name, b"fd key").unwrap(), name)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn descriptors_travel_both_ways_between_processes() {
    use std::os::fd::AsFd;
    let (mut l, name) = abstract_listener("both");
    let mut child = start(move || {
        let c: Connection<()> = l.accept().unwrap();
        // A pipe's write end came: write through it to the parent.
        let (bytes, fds) = c.recv_bytes_with_fds().unwrap();
        assert_eq!(bytes, b"write here");
        assert_eq!(fds.len(), 1);
        let mut w = std::fs::File::from(fds.into_iter().next().unwrap());
        w.write_all(b"from the child").unwrap();
        drop(w);
        // And one of the child's own goes back.
        let (r2, mut w2) = std::io::pipe().unwrap();
        w2.write_all(b"child's pipe").unwrap();
        drop(w2);
        c.send_bytes_with_fds(b"read this", &[r2.as_fd()]).unwrap();
        // Sent without descriptors: received with none.
        c.send_bytes(b"plain").unwrap();
    });
    let c: Connection<()> = Client::connect(&name, b"fd key").unwrap();
    let (mut r, w) = std::io::pipe().unwrap();
    c.send_bytes_with_fds(b"write here", &[w.as_fd()]).unwrap();
    drop(w);
    let (bytes, fds) = c.recv_bytes_with_fds_timeout(LONG).unwrap();
    assert_eq!(bytes, b"read this");
    let mut text = String::new();
    std::fs::File::from(fds.into_iter().next().unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "child's pipe");
    let (bytes, fds) = c.recv_bytes_with_fds_timeout(LONG).unwrap();
    assert_eq!((bytes.as_slice(), fds.len()), (&b"plain"[..], 0));
    assert_eq!(child.0.join().unwrap(), 0);
    let mut got = String::new();
    r.read_to_string(&mut got).unwrap();
    assert_eq!(got, "from the child");
}

#[test]
fn descriptors_received_as_plain_bytes_are_closed_not_leaked() {
    use std::os::fd::AsFd;
    let (mut l, name) = abstract_listener("plain");
    let mut child = start(move || {
        let c: Connection<()> = l.accept().unwrap();
        let before = open_fds();
        for _ in 0..50 {
            assert_eq!(c.recv_bytes().unwrap(), b"with fds");
        }
        assert_eq!(open_fds(), before, "descriptors left in the receiver");
        c.send_bytes(b"done").unwrap();
    });
    let c: Connection<()> = Client::connect(&name, b"fd key").unwrap();
    let (r, w) = std::io::pipe().unwrap();
    for _ in 0..50 {
        c.send_bytes_with_fds(b"with fds", &[r.as_fd(), w.as_fd()])
            .unwrap();
    }
    assert_eq!(c.recv_bytes_timeout(LONG).unwrap(), b"done");
    assert_eq!(child.0.join().unwrap(), 0);
}

#[test]
fn descriptors_need_a_socket_and_at_most_sixteen_a_message() {
    use std::os::fd::AsFd;
    let (a, _b) = pipe::<()>().unwrap();
    let (r, _w) = std::io::pipe().unwrap();
    assert!(matches!(
        a.send_bytes_with_fds(b"x", &[r.as_fd()]),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(a.recv_bytes_with_fds(), Err(Error::Invalid(_))));
    let (mut l, name) = abstract_listener("many");
    let mut child = start(move || {
        let c: Connection<()> = l.accept().unwrap();
        let _ = c.recv_bytes_timeout(LONG);
    });
    let c: Connection<()> = Client::connect(&name, b"fd key").unwrap();
    let many: Vec<_> = (0..17).map(|_| r.as_fd()).collect();
    assert!(matches!(
        c.send_bytes_with_fds(b"x", &many),
        Err(Error::Invalid(_))
    ));
    c.send_bytes(b"bye").unwrap();
    assert_eq!(child.0.join().unwrap(), 0);
}

#[test]
fn a_segment_sent_with_its_handle_maps_the_same_memory_in_a_running_process() {
    use procs_sync::Segment;
    let (mut l, name) = abstract_listener("segment");
    // Started before the segments exist: only the connection can bring them.
    let mut child = start(move || {
        let c: Connection<(String, Vec<Segment>)> = l.accept().unwrap();
        let (label, segs) = c.recv_with_handles().unwrap();
        assert_eq!(label, "two");
        for (i, seg) in segs.iter().enumerate() {
            // SAFETY: each segment holds at least a page; the parent waits.
            unsafe { seg.as_ptr().write(i as u8 + 1) };
        }
        // The same bytes received without their descriptors: an error
        // naming the way, not a segment.
        assert!(matches!(c.recv(), Err(Error::Decode(_))));
    });
    let value = (
        "two".to_string(),
        vec![
            Segment::create(4096).unwrap(),
            Segment::create(8192).unwrap(),
        ],
    );
    let c: Connection<(String, Vec<Segment>)> = Client::connect(&name, b"fd key").unwrap();
    // A plain send cannot carry the descriptors: refused before a byte goes.
    assert!(matches!(c.send(&value), Err(Error::Encode(_))));
    c.send_with_handles(&value).unwrap();
    c.send_with_handles(&value).unwrap();
    assert_eq!(child.0.join().unwrap(), 0);
    // SAFETY: the child wrote the first byte of each and ended.
    let firsts: Vec<u8> = value
        .1
        .iter()
        .map(|s| unsafe { s.as_ptr().read() })
        .collect();
    assert_eq!(firsts, [1, 2]);
}

#[test]
fn primitives_sent_with_their_handles_work_across_processes_already_running() {
    use procs_sync::{Barrier, Event, Lock, Semaphore};
    type Kit = (Lock, Event, Semaphore, Barrier);
    let (mut l, name) = abstract_listener("kit");
    let mut child = start(move || {
        let c: Connection<Kit> = l.accept().unwrap();
        let (lock, event, sem, barrier) = c.recv_with_handles().unwrap();
        // The parent holds the lock: not free here.
        assert!(lock.try_acquire().is_err());
        event.set();
        assert!(sem.acquire_timeout(LONG));
        barrier.wait_timeout(LONG).unwrap();
    });
    let kit: Kit = (
        Lock::new().unwrap(),
        Event::new().unwrap(),
        Semaphore::new(0).unwrap(),
        Barrier::new(2).unwrap(),
    );
    let c: Connection<Kit> = Client::connect(&name, b"fd key").unwrap();
    let held = kit.0.lock().unwrap();
    c.send_with_handles(&kit).unwrap();
    assert!(
        kit.1.wait_timeout(LONG),
        "the child's set reaches this event"
    );
    kit.2.release();
    kit.3.wait_timeout(LONG).unwrap();
    drop(held);
    assert_eq!(child.0.join().unwrap(), 0);
}

#[test]
fn a_handle_read_as_another_kind_or_a_barrier_with_an_action_is_refused() {
    use procs_sync::{Event, Lock};
    let (mut l, name) = abstract_listener("kinds");
    let mut child = start(move || {
        let c: Connection<Event> = l.accept().unwrap();
        // A lock's segment is not an event's.
        assert!(matches!(c.recv_with_handles(), Err(Error::Decode(_))));
    });
    let c: Connection<Lock> = Client::connect(&name, b"fd key").unwrap();
    c.send_with_handles(&Lock::new().unwrap()).unwrap();
    assert_eq!(child.0.join().unwrap(), 0);
    // A barrier's action is a closure of this process: it cannot travel.
    let b = procs_sync::Barrier::with_action(2, || {}).unwrap();
    let (encoded, fds) = procs_sync::handles::collecting(|| postcard::to_allocvec(&b));
    assert!(encoded.is_err());
    assert!(fds.is_empty());
    let plain = procs_sync::Barrier::new(2).unwrap();
    let (encoded, fds) = procs_sync::handles::collecting(|| postcard::to_allocvec(&plain));
    assert!(encoded.is_ok());
    assert_eq!(fds.len(), 1);
}

#[test]
fn values_and_arrays_sent_with_their_handles_are_shared_with_a_running_process() {
    use procs_sync::{Array, Value};
    type Cells = (Value<u64>, Array<i32>);
    let (mut l, name) = abstract_listener("cells");
    let mut child = start(move || {
        let c: Connection<Cells> = l.accept().unwrap();
        let (v, a) = c.recv_with_handles().unwrap();
        for _ in 0..1000 {
            *v.lock().unwrap() += 1;
        }
        assert_eq!(a.len(), 5);
        for x in a.lock().unwrap().iter_mut() {
            *x = -*x;
        }
    });
    let cells: Cells = (
        Value::new(0).unwrap(),
        Array::from_slice(&[1, 2, 3, 4, 5]).unwrap(),
    );
    let c: Connection<Cells> = Client::connect(&name, b"fd key").unwrap();
    c.send_with_handles(&cells).unwrap();
    for _ in 0..1000 {
        *cells.0.lock().unwrap() += 1;
    }
    assert_eq!(child.0.join().unwrap(), 0);
    assert_eq!(cells.0.get(), 2000);
    assert_eq!(cells.1.to_vec(), [-1, -2, -3, -4, -5]);
}

#[test]
fn a_condition_sent_with_its_handles_wakes_a_waiter_in_a_running_process() {
    use procs_sync::{Condition, Value};
    type Pair = (Condition, Value<u32>);
    let (mut l, name) = abstract_listener("condition");
    let mut child = start(move || {
        let c: Connection<Pair> = l.accept().unwrap();
        let (cond, ready) = c.recv_with_handles().unwrap();
        let g = cond.lock().unwrap();
        // Tell the parent the wait is about to begin, under the lock.
        c.send_bytes(b"waiting").unwrap();
        let (_g, met) = cond
            .wait_timeout_while(g, LONG, |_| ready.get() == 0)
            .unwrap();
        assert!(met, "the parent's notify reached this process");
    });
    let pair: Pair = (Condition::new().unwrap(), Value::new(0).unwrap());
    let c: Connection<Pair> = Client::connect(&name, b"fd key").unwrap();
    c.send_with_handles(&pair).unwrap();
    assert_eq!(c.recv_bytes_timeout(LONG).unwrap(), b"waiting");
    {
        let _g = pair.0.lock().unwrap();
        pair.1.set(1);
        pair.0.notify_all().unwrap();
    }
    assert_eq!(child.0.join().unwrap(), 0);
}
