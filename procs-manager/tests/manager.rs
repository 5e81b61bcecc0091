//! A manager's server and its proxies, across real processes: children
//! writing at once, errors as Python raises them, a server that never
//! outlives its starter (drop, panic, SIGKILL), clients that die or send
//! garbage.

use std::io::{PipeReader, PipeWriter, Read, Write};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use procs_core::Process;
use procs_ipc::{Client, Connection};
use procs_manager::{Error, ErrorKind, Manager};

/// Kills and joins a process when dropped, so that a failed assertion
/// leaves no child behind.
struct Reaper(Process);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.join();
    }
}

fn start(f: impl FnOnce() + Send + 'static) -> Reaper {
    let mut p = Process::new(f);
    p.start().expect("start");
    Reaper(p)
}

fn read_line(r: &mut PipeReader) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while r.read(&mut byte).expect("read") == 1 && byte[0] != b'\n' {
        out.push(byte[0]);
    }
    String::from_utf8(out).expect("utf-8")
}

/// Whether `pid` is gone (or a zombie nobody reaped yet: its parent died
/// and init reaps it).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Waits up to 10 s for `pid` to be gone.
fn wait_gone(pid: i32) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    gone(pid)
}

#[test]
fn forty_children_write_at_once_and_the_parent_sees_every_write() {
    // More children than the manager's 32 shared-memory slots: the rest
    // are served over the socket, and all at once.
    let m = Manager::start().unwrap();
    let d = m.dict::<u32, Vec<u32>>().unwrap();
    let l = m.list::<u32>().unwrap();
    let ns = m.namespace().unwrap();
    let children: Vec<Reaper> = (0..40)
        .map(|i| {
            let (d, l, ns) = (d.clone(), l.clone(), ns.clone());
            start(move || {
                for j in 0..20 {
                    d.insert(i * 100 + j, vec![i, j]).unwrap();
                    l.push(i).unwrap();
                    ns.add("count", 1).unwrap();
                }
            })
        })
        .collect();
    for mut c in children {
        assert_eq!(c.0.join().unwrap(), 0);
    }
    assert_eq!(d.len().unwrap(), 800);
    assert_eq!(d.get(&3917).unwrap(), Some(vec![39, 17]));
    let mut items = l.to_vec().unwrap();
    items.sort();
    assert_eq!(items.len(), 800);
    assert_eq!(items.iter().filter(|&&x| x == 7).count(), 20);
    assert_eq!(ns.get::<i64>("count").unwrap(), 800);
}

#[test]
fn refused_calls_are_pythons_errors_and_the_object_goes_on() {
    let m = Manager::start().unwrap();
    let l = m.list::<String>().unwrap();
    l.extend(["a".to_string(), "b".to_string()]).unwrap();
    assert_eq!(l.get(2).unwrap_err().remote_kind(), Some(ErrorKind::Index));
    assert_eq!(
        l.set(5, "x".into()).unwrap_err().remote_kind(),
        Some(ErrorKind::Index)
    );
    assert_eq!(
        l.remove(&"z".to_string()).unwrap_err().remote_kind(),
        Some(ErrorKind::Value)
    );
    l.remove(&"a".to_string()).unwrap();
    l.insert(99, "end".into()).unwrap();
    assert_eq!(l.to_vec().unwrap(), ["b", "end"]);
    assert_eq!(l.slice(1..99).unwrap(), ["end"]);
    let d = m.dict::<String, u8>().unwrap();
    assert_eq!(
        d.pop(&"nope".into()).unwrap_err().remote_kind(),
        Some(ErrorKind::Key)
    );
    d.update([("x".to_string(), 1), ("y".to_string(), 2)])
        .unwrap();
    assert!(d.contains(&"y".into()).unwrap());
    assert_eq!(d.get_or(&"q".into(), 9).unwrap(), 9);
    assert_eq!(d.pop(&"x".into()).unwrap(), 1);
    let mut keys = d.keys().unwrap();
    keys.sort();
    assert_eq!(keys, ["y"]);
    d.clear().unwrap();
    assert!(d.is_empty().unwrap());
    // A value of another type than was written: a decode error here, the
    // server untouched.
    let ns = m.namespace().unwrap();
    ns.set("s", &"text".to_string()).unwrap();
    assert!(matches!(ns.add("s", 1), Err(Error::Remote { .. })));
    assert_eq!(ns.names().unwrap(), ["s"]);
    ns.remove("s").unwrap();
    assert_eq!(
        ns.get::<u8>("s").unwrap_err().remote_kind(),
        Some(ErrorKind::Attribute)
    );
}

#[test]
fn shutdown_ends_the_server_and_proxies_then_say_so() {
    let mut m = Manager::start().unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    d.insert(1, 1).unwrap();
    let pid = m.pid().unwrap();
    m.shutdown().unwrap();
    assert!(gone(pid), "the server was joined");
    assert!(matches!(d.get(&1), Err(Error::ManagerGone)));
    assert!(matches!(d.insert(2, 2), Err(Error::ManagerGone)));
    // Drop after shutdown does nothing more.
    drop(m);
}

#[test]
fn dropping_the_manager_ends_its_server() {
    let m = Manager::start().unwrap();
    let l = m.list::<u8>().unwrap();
    l.push(1).unwrap();
    let pid = m.pid().unwrap();
    drop(m);
    assert!(gone(pid));
    assert!(matches!(l.len(), Err(Error::ManagerGone)));
}

/// A process that starts a manager, reports its server's pid, then does
/// what `end` says; returns the starter and the server's pid.
fn starter(end: fn(Manager)) -> (Reaper, i32) {
    let (mut r, w): (PipeReader, PipeWriter) = std::io::pipe().unwrap();
    let p = start(move || {
        let m = Manager::start().unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(0, 0).unwrap();
        let mut w = w;
        writeln!(w, "{}", m.pid().unwrap()).unwrap();
        drop(w);
        end(m);
    });
    let pid: i32 = read_line(&mut r).parse().unwrap();
    (p, pid)
}

#[test]
fn the_server_ends_when_its_starter_is_killed() {
    let (mut p, server) = starter(|m| {
        // Not dropped: only the server's watch on its parent can end it.
        std::mem::forget(m);
        loop {
            std::thread::park();
        }
    });
    assert!(!gone(server));
    kill(Pid::from_raw(p.0.pid().unwrap()), Signal::SIGKILL).unwrap();
    p.0.join().unwrap();
    assert!(wait_gone(server), "the server outlived its killed starter");
}

#[test]
fn the_server_ends_when_its_starter_panics() {
    let (mut p, server) = starter(|m| {
        let _keep = m;
        panic!("the starter fails");
    });
    assert_ne!(p.0.join().unwrap(), 0);
    assert!(
        wait_gone(server),
        "the server outlived its panicked starter"
    );
}

#[test]
fn a_client_killed_mid_use_leaves_the_others_served() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u64, u64>().unwrap();
    let (mut r, mut w) = std::io::pipe().unwrap();
    let mut busy = {
        let d = d.clone();
        start(move || {
            d.insert(0, 0).unwrap();
            writeln!(w, "ready").unwrap();
            for i in 0.. {
                d.insert(i % 8, i).unwrap();
            }
        })
    };
    assert_eq!(read_line(&mut r), "ready");
    busy.0.kill().unwrap();
    busy.0.join().unwrap();
    // More new clients than there are slots, one after another: the dead
    // client's slot and every finished one's come back.
    for i in 0..40u64 {
        let d = d.clone();
        let mut c = start(move || d.insert(100 + i, i).unwrap().map_or((), drop));
        assert_eq!(c.0.join().unwrap(), 0);
    }
    assert_eq!(d.get(&139).unwrap(), Some(39));
    assert!(d.len().unwrap() >= 41);
}

#[test]
fn a_wrong_key_and_garbage_get_errors_and_the_server_goes_on() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    d.insert(1, 2).unwrap();
    // A wrong key is refused before anything is read.
    let wrong = Client::connect::<()>(m.address(), b"not the key");
    assert!(wrong.is_err());
    // The right key, then a hello that no client sends: that connection
    // is dropped.
    let c: Connection<()> = Client::connect(m.address(), m.authkey()).unwrap();
    c.send_bytes(b"garbage").unwrap();
    assert!(c.recv_bytes_timeout(Duration::from_secs(10)).is_err());
    // A good hello (no shared memory), then requests that do not parse or
    // name nothing: each gets an error answer on the same connection.
    let c: Connection<()> = Client::connect(m.address(), m.authkey()).unwrap();
    let mut hello = [0u8; 21];
    hello[9..13].copy_from_slice(&(std::process::id() as i32).to_le_bytes());
    c.send_bytes(&hello).unwrap();
    let answer = c.recv_bytes().unwrap();
    assert_eq!(
        (answer.len(), answer[0]),
        (9, u8::MAX),
        "no slot: over the socket"
    );
    let bad: &[&[u8]] = &[
        b"",
        &[1, 0, 0],
        &[9; 11],
        // A call whose field claims 4 GiB.
        &[1, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0xff, 0xff, 0xff, 0xff, 1],
        // A call on an object that does not exist.
        &[1, 0xee, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0, 0, 0, 1],
        // A type that does not exist.
        &[2, 0, 0, 0, 0, 0, 0, 0, 0, 99, 0],
    ];
    for req in bad {
        c.send_bytes(req).unwrap();
        let answer = c.recv_bytes().unwrap();
        assert_ne!(answer.first(), Some(&0), "{req:?} was not refused");
    }
    drop(c);
    // Everyone else is still served.
    assert_eq!(d.get(&1).unwrap(), Some(2));
}

#[test]
fn four_processes_write_a_thousand_keys_each_and_all_are_there() {
    let m = Manager::start().unwrap();
    let d = m.dict::<(u8, u16), u64>().unwrap();
    let writers: Vec<Reaper> = (0..4u8)
        .map(|w| {
            let d = d.clone();
            start(move || {
                for k in 0..1000u16 {
                    d.insert((w, k), u64::from(w) * 10_000 + u64::from(k))
                        .unwrap();
                }
            })
        })
        .collect();
    for mut w in writers {
        assert_eq!(w.0.join().unwrap(), 0);
    }
    assert_eq!(d.len().unwrap(), 4000);
    for w in 0..4u8 {
        assert_eq!(d.get(&(w, 999)).unwrap(), Some(u64::from(w) * 10_000 + 999));
    }
}

#[test]
fn a_queue_with_four_producers_and_four_consumers_moves_every_item_once() {
    let m = Manager::start().unwrap();
    let q = m.queue::<Option<u32>>(16).unwrap();
    let got = m.list::<u32>().unwrap();
    let producers: Vec<Reaper> = (0..4u32)
        .map(|p| {
            let q = q.clone();
            start(move || {
                for i in 0..250 {
                    q.put(Some(p * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<Reaper> = (0..4)
        .map(|_| {
            let (q, got) = (q.clone(), got.clone());
            start(move || {
                let mut mine = Vec::new();
                while let Some(x) = q.get_timeout(Duration::from_secs(30)).unwrap() {
                    mine.push(x);
                }
                got.extend(mine).unwrap();
            })
        })
        .collect();
    for mut p in producers {
        assert_eq!(p.0.join().unwrap(), 0);
    }
    for _ in 0..4 {
        q.put(None).unwrap();
    }
    for mut c in consumers {
        assert_eq!(c.0.join().unwrap(), 0);
    }
    let mut all = got.to_vec().unwrap();
    all.sort();
    let want: Vec<u32> = (0..4)
        .flat_map(|p| (0..250).map(move |i| p * 1000 + i))
        .collect();
    assert_eq!(all, want);
    assert_eq!(
        q.try_get().unwrap_err().remote_kind(),
        Some(ErrorKind::Empty)
    );
    let full = m.queue::<u8>(1).unwrap();
    full.put(1).unwrap();
    assert_eq!(
        full.put_timeout(2, Duration::from_millis(20))
            .unwrap_err()
            .remote_kind(),
        Some(ErrorKind::Full)
    );
}

#[test]
fn a_managed_lock_makes_read_modify_writes_of_four_processes_exact() {
    let m = Manager::start().unwrap();
    let (lock, v) = (m.lock().unwrap(), m.value(&0u64).unwrap());
    let workers: Vec<Reaper> = (0..4)
        .map(|_| {
            let (lock, v) = (lock.clone(), v.clone());
            start(move || {
                for _ in 0..100 {
                    let _g = lock.acquire().unwrap();
                    let n = v.get().unwrap();
                    v.set(&(n + 1)).unwrap();
                }
            })
        })
        .collect();
    for mut w in workers {
        assert_eq!(w.0.join().unwrap(), 0);
    }
    assert_eq!(v.get().unwrap(), 400);
    assert!(!lock.locked().unwrap());
}

#[test]
fn a_lock_whose_holder_is_killed_is_taken_with_owner_died() {
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let (mut r, mut w) = std::io::pipe().unwrap();
    let mut holder = {
        let lock = lock.clone();
        start(move || {
            let _g = lock.acquire().unwrap();
            writeln!(w, "held").unwrap();
            loop {
                std::thread::park();
            }
        })
    };
    assert_eq!(read_line(&mut r), "held");
    assert!(lock.try_acquire().unwrap().is_none());
    holder.0.kill().unwrap();
    holder.0.join().unwrap();
    let g = lock
        .acquire_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("the dead holder's lock is freed");
    assert_eq!(g.acquired(), procs_manager::Acquired::OwnerDied);
    drop(g);
    let g = lock.acquire().unwrap();
    assert_eq!(g.acquired(), procs_manager::Acquired::Clean);
}

#[test]
fn an_event_set_in_one_process_wakes_a_waiter_in_another() {
    let m = Manager::start().unwrap();
    let (e, done) = (m.event().unwrap(), m.event().unwrap());
    let mut waiter = {
        let (e, done) = (e.clone(), done.clone());
        start(move || {
            assert!(e.wait_timeout(Duration::from_secs(30)).unwrap());
            done.set().unwrap();
        })
    };
    assert!(!done.wait_timeout(Duration::from_millis(20)).unwrap());
    e.set().unwrap();
    assert!(done.wait_timeout(Duration::from_secs(30)).unwrap());
    assert_eq!(waiter.0.join().unwrap(), 0);
    e.clear().unwrap();
    assert!(!e.is_set().unwrap());
}

#[test]
fn shutdown_with_a_client_waiting_gives_it_an_error_not_a_hang() {
    let mut m = Manager::start().unwrap();
    let q = m.queue::<u8>(0).unwrap();
    let (mut r, mut w) = std::io::pipe().unwrap();
    let mut waiter = {
        let q = q.clone();
        start(move || {
            q.len().unwrap();
            writeln!(w, "waiting").unwrap();
            // No timeout: only the server's end ends this.
            let code = match q.get() {
                Err(Error::ManagerGone) => 0,
                _ => 1,
            };
            std::process::exit(code);
        })
    };
    assert_eq!(read_line(&mut r), "waiting");
    m.shutdown().unwrap();
    assert_eq!(waiter.0.join().unwrap(), 0);
}

#[test]
fn named_objects_are_shared_by_name_and_typed_once() {
    let m = Manager::start().unwrap();
    let a = m.named_dict::<String, u8>("results").unwrap();
    a.insert("x".into(), 1).unwrap();
    let b = m.named_dict::<String, u8>("results").unwrap();
    assert_eq!(b.get(&"x".into()).unwrap(), Some(1));
    assert_eq!(
        m.named_list::<u8>("results").unwrap_err().remote_kind(),
        Some(ErrorKind::Value)
    );
}

#[test]
fn a_tcp_manager_serves_a_client_that_connects_with_its_key() {
    let m = Manager::builder()
        .address("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap())
        .authkey(b"secret")
        .start()
        .unwrap();
    let addr = m.address().clone();
    let mut client = start(move || {
        let remote = Manager::connect(addr.clone(), b"secret").unwrap();
        remote
            .named_list::<String>("log")
            .unwrap()
            .push("remote".into())
            .unwrap();
        assert!(Manager::connect(addr, b"wrong").is_err());
    });
    assert_eq!(client.0.join().unwrap(), 0);
    assert_eq!(
        m.named_list::<String>("log").unwrap().to_vec().unwrap(),
        ["remote"]
    );
}

#[test]
fn a_client_that_connects_and_says_nothing_holds_up_nobody() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    // Connected, not a byte sent: the handshake waits on its own thread.
    let silent = match m.address() {
        procs_ipc::Address::Abstract(name) => std::os::unix::net::UnixStream::connect_addr(
            &<std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name).unwrap(),
        )
        .unwrap(),
        other => panic!("an abstract address, not {other}"),
    };
    let mut other = {
        let d = d.clone();
        start(move || d.insert(1, 1).map(drop).unwrap())
    };
    assert_eq!(other.0.join().unwrap(), 0);
    assert_eq!(d.get(&1).unwrap(), Some(1));
    drop(silent);
}

/// Waits up to 10 s for the server to hold `n` objects.
fn wait_count(m: &Manager, n: usize) -> usize {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let now = m.object_count().unwrap();
        if now == n || Instant::now() >= until {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_object_is_freed_with_its_last_proxy() {
    let m = Manager::start().unwrap();
    let before = m.object_count().unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    let d2 = d.clone();
    assert_eq!(m.object_count().unwrap(), before + 1);
    drop(d);
    d2.insert(1, 1).unwrap();
    assert_eq!(m.object_count().unwrap(), before + 1);
    drop(d2);
    assert_eq!(m.object_count().unwrap(), before);
    // Named objects live as long as the server.
    drop(m.named_list::<u8>("kept").unwrap());
    assert_eq!(m.object_count().unwrap(), before + 1);
}

#[test]
fn a_proxy_handed_to_a_child_keeps_the_object_for_it() {
    let m = Manager::start().unwrap();
    let before = m.object_count().unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    let (mut r, mut w) = std::io::pipe().unwrap();
    let (mut r2, mut w2) = std::io::pipe().unwrap();
    let mut child = {
        let d = d.clone();
        start(move || {
            // Until the parent dropped its own proxy.
            assert_eq!(read_line(&mut r2), "dropped");
            d.insert(7, 7).unwrap();
            writeln!(w, "{:?}", d.get(&7).unwrap()).unwrap();
        })
    };
    drop(d);
    writeln!(w2, "dropped").unwrap();
    assert_eq!(read_line(&mut r), "Some(7)");
    assert_eq!(child.0.join().unwrap(), 0);
    // The child's proxy was its last: dropped as the child ended.
    assert_eq!(wait_count(&m, before), before);
}

#[test]
fn an_object_is_freed_after_its_last_holder_is_killed() {
    let m = Manager::start().unwrap();
    let before = m.object_count().unwrap();
    let l = m.list::<u8>().unwrap();
    let (mut r, mut w) = std::io::pipe().unwrap();
    let mut holder = {
        let l = l.clone();
        start(move || {
            l.push(1).unwrap();
            writeln!(w, "holding").unwrap();
            loop {
                std::thread::park();
            }
        })
    };
    assert_eq!(read_line(&mut r), "holding");
    drop(l);
    assert_eq!(m.object_count().unwrap(), before + 1);
    holder.0.kill().unwrap();
    holder.0.join().unwrap();
    assert_eq!(
        wait_count(&m, before),
        before,
        "the dead holder's list was kept"
    );
}

/// A registered type: a bank account whose withdrawals can fail, and a
/// method that panics.
#[derive(Default)]
struct Account(i64);

impl procs_manager::Served for Account {
    fn call(&mut self, method: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
        match method {
            "deposit" => {
                self.0 += procs_manager::args::<i64>(bytes)?;
                procs_manager::reply(&self.0)
            }
            "withdraw" => {
                let n = procs_manager::args::<i64>(bytes)?;
                if n > self.0 {
                    return Err(format!("cannot withdraw {n} from {}", self.0));
                }
                self.0 -= n;
                procs_manager::reply(&self.0)
            }
            "explode" => panic!("the account exploded"),
            other => Err(format!("no method {other}")),
        }
    }
}

fn account() -> Box<dyn procs_manager::Served> {
    Box::new(Account::default())
}

#[test]
fn a_registered_type_serves_methods_and_survives_errors_and_panics() {
    let m = Manager::builder()
        .register("Account", account)
        .start()
        .unwrap();
    let a = m.custom("Account").unwrap();
    let workers: Vec<Reaper> = (0..4)
        .map(|_| {
            let a = a.clone();
            start(move || {
                for _ in 0..25 {
                    a.call::<_, i64>("deposit", &2).unwrap();
                }
            })
        })
        .collect();
    for mut w in workers {
        assert_eq!(w.0.join().unwrap(), 0);
    }
    assert_eq!(a.call::<_, i64>("deposit", &0).unwrap(), 200);
    let e = a.call::<_, i64>("withdraw", &500).unwrap_err();
    assert_eq!(e.remote_kind(), Some(ErrorKind::Method));
    assert!(
        e.to_string().contains("cannot withdraw 500 from 200"),
        "{e}"
    );
    let e = a.call::<_, ()>("explode", &()).unwrap_err();
    assert_eq!(e.remote_kind(), Some(ErrorKind::Panic));
    assert!(e.to_string().contains("the account exploded"), "{e}");
    // The server and the value go on.
    assert_eq!(a.call::<_, i64>("withdraw", &50).unwrap(), 150);
    assert_eq!(
        a.call::<_, i64>("deposit", &"not a number")
            .unwrap_err()
            .remote_kind(),
        Some(ErrorKind::Method)
    );
    assert_eq!(
        m.custom("Unknown").unwrap_err().remote_kind(),
        Some(ErrorKind::NoMethod)
    );
}

#[test]
fn proxies_travel_inside_values_and_queues() {
    let m = Manager::start().unwrap();
    // A dict of lists, as Python allows.
    let groups = m.dict::<String, procs_manager::ListProxy<u32>>().unwrap();
    let evens = m.list::<u32>().unwrap();
    groups.insert("evens".into(), evens.clone()).unwrap();
    let q = m.queue::<procs_manager::DictProxy<String, u32>>(0).unwrap();
    let scores = m.dict::<String, u32>().unwrap();
    q.put(scores.clone()).unwrap();
    let mut child = {
        let groups = groups.clone();
        let q = q.clone();
        start(move || {
            let evens = groups.get(&"evens".into()).unwrap().unwrap();
            evens.extend([0, 2, 4]).unwrap();
            let scores = q.get().unwrap();
            scores.insert("child".into(), 10).unwrap();
        })
    };
    assert_eq!(child.0.join().unwrap(), 0);
    assert_eq!(evens.to_vec().unwrap(), [0, 2, 4]);
    assert_eq!(scores.get(&"child".into()).unwrap(), Some(10));
    // Read back as another type of proxy: a clear error.
    let lists = m
        .named_dict::<String, procs_manager::ListProxy<u8>>("mixed")
        .unwrap();
    lists.insert("l".into(), m.list::<u8>().unwrap()).unwrap();
    let queues = m
        .named_dict::<String, procs_manager::QueueProxy<u8>>("mixed")
        .unwrap();
    assert!(matches!(queues.get(&"l".into()), Err(Error::Decode(_))));
}

#[test]
fn a_proxy_inside_a_value_reaches_a_client_that_connected_on_its_own() {
    let m = Manager::builder()
        .address("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap())
        .authkey(b"k")
        .start()
        .unwrap();
    let inner = m.list::<String>().unwrap();
    m.named_dict::<String, procs_manager::ListProxy<String>>("boxes")
        .unwrap()
        .insert("inner".into(), inner.clone())
        .unwrap();
    let addr = m.address().clone();
    let mut client = start(move || {
        let remote = Manager::connect(addr, b"k").unwrap();
        let boxes = remote
            .named_dict::<String, procs_manager::ListProxy<String>>("boxes")
            .unwrap();
        let inner = boxes.get(&"inner".into()).unwrap().unwrap();
        inner.push("from afar".into()).unwrap();
    });
    assert_eq!(client.0.join().unwrap(), 0);
    assert_eq!(inner.to_vec().unwrap(), ["from afar"]);
}

#[test]
fn an_rlock_is_taken_again_by_its_holder_and_excludes_others() {
    let m = Manager::start().unwrap();
    let r = m.rlock().unwrap();
    let outer = r.acquire().unwrap();
    let inner = r.acquire().unwrap();
    let r2 = r.clone();
    let mut other = start(move || {
        // Held twice by the parent: not free for this process.
        assert!(r2.try_acquire().unwrap().is_none());
    });
    assert_eq!(other.0.join().unwrap(), 0);
    drop(inner);
    assert!(r.locked().unwrap(), "held once more");
    drop(outer);
    assert!(!r.locked().unwrap());
    // A plain lock taken twice by one client is an error, not a hang.
    let l = m.lock().unwrap();
    let _g = l.acquire().unwrap();
    assert_eq!(
        l.acquire().unwrap_err().remote_kind(),
        Some(ErrorKind::Runtime)
    );
}

#[test]
fn a_semaphore_admits_two_of_four_processes_at_a_time() {
    let m = Manager::start().unwrap();
    let (sem, inside, most) = (
        m.semaphore(2).unwrap(),
        m.namespace().unwrap(),
        m.lock().unwrap(),
    );
    inside.set("now", &0i64).unwrap();
    inside.set("most", &0i64).unwrap();
    let workers: Vec<Reaper> = (0..4)
        .map(|_| {
            let (sem, inside, most) = (sem.clone(), inside.clone(), most.clone());
            start(move || {
                for _ in 0..10 {
                    sem.acquire().unwrap();
                    let now = inside.add("now", 1).unwrap();
                    {
                        let _g = most.acquire().unwrap();
                        if now > inside.get::<i64>("most").unwrap() {
                            inside.set("most", &now).unwrap();
                        }
                    }
                    inside.add("now", -1).unwrap();
                    sem.release().unwrap();
                }
            })
        })
        .collect();
    for mut w in workers {
        assert_eq!(w.0.join().unwrap(), 0);
    }
    let most: i64 = inside.get("most").unwrap();
    assert!((1..=2).contains(&most), "{most} inside at once");
    assert_eq!(sem.value().unwrap(), 2);
    let b = m.bounded_semaphore(1).unwrap();
    assert_eq!(
        b.release().unwrap_err().remote_kind(),
        Some(ErrorKind::Value)
    );
}

#[test]
fn a_barrier_gathers_four_processes_and_breaks_on_timeout_and_abort() {
    let m = Manager::start().unwrap();
    let b = m.barrier(4).unwrap();
    let seen = m.list::<usize>().unwrap();
    let parties: Vec<Reaper> = (0..3)
        .map(|_| {
            let (b, seen) = (b.clone(), seen.clone());
            start(move || {
                for _ in 0..3 {
                    seen.push(b.wait_timeout(Duration::from_secs(30)).unwrap())
                        .unwrap();
                }
            })
        })
        .collect();
    for _ in 0..3 {
        seen.push(b.wait_timeout(Duration::from_secs(30)).unwrap())
            .unwrap();
    }
    for mut p in parties {
        assert_eq!(p.0.join().unwrap(), 0);
    }
    let mut indices = seen.to_vec().unwrap();
    indices.sort();
    assert_eq!(indices, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
    assert_eq!(b.parties().unwrap(), 4);
    // Alone at a barrier of four: the timeout breaks it, for later waits too.
    let e = b.wait_timeout(Duration::from_millis(30)).unwrap_err();
    assert_eq!(e.remote_kind(), Some(ErrorKind::BrokenBarrier));
    assert!(b.broken().unwrap());
    assert!(b.wait_timeout(Duration::from_secs(1)).is_err());
    b.reset().unwrap();
    assert!(!b.broken().unwrap());
    // An abort wakes a waiter in another process with the error.
    let b2 = b.clone();
    let (mut r, mut w) = std::io::pipe().unwrap();
    let mut waiter = start(move || {
        writeln!(w, "waiting").unwrap();
        let code = match b2.wait_timeout(Duration::from_secs(30)) {
            Err(e) if e.remote_kind() == Some(ErrorKind::BrokenBarrier) => 0,
            _ => 1,
        };
        std::process::exit(code);
    });
    assert_eq!(read_line(&mut r), "waiting");
    let until = Instant::now() + Duration::from_secs(10);
    while b.n_waiting().unwrap() == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(2));
    }
    b.abort().unwrap();
    assert_eq!(waiter.0.join().unwrap(), 0);
    assert_eq!(
        m.barrier(0).unwrap_err().remote_kind(),
        Some(ErrorKind::Value)
    );
}

#[test]
fn a_condition_hands_items_from_a_producer_to_consumers() {
    let m = Manager::start().unwrap();
    let (cond, items, got) = (
        m.condition().unwrap(),
        m.list::<u32>().unwrap(),
        m.list::<u32>().unwrap(),
    );
    let consumers: Vec<Reaper> = (0..2)
        .map(|_| {
            let (cond, items, got) = (cond.clone(), items.clone(), got.clone());
            start(move || {
                loop {
                    let g = cond.acquire().unwrap();
                    while items.is_empty().unwrap() {
                        assert!(g.wait_timeout(Duration::from_secs(30)).unwrap());
                    }
                    let x = items.pop().unwrap().unwrap();
                    drop(g);
                    if x == u32::MAX {
                        break;
                    }
                    got.push(x).unwrap();
                }
            })
        })
        .collect();
    for i in 0..20 {
        let g = cond.acquire().unwrap();
        items.insert(0, i).unwrap();
        g.notify(1).unwrap();
    }
    for _ in 0..2 {
        let g = cond.acquire().unwrap();
        items.insert(0, u32::MAX).unwrap();
        g.notify(1).unwrap();
    }
    for mut c in consumers {
        assert_eq!(c.0.join().unwrap(), 0);
    }
    let mut all = got.to_vec().unwrap();
    all.sort();
    assert_eq!(all, (0..20).collect::<Vec<_>>());
    // A wait that nobody notifies times out, with the lock held again.
    let other = m.condition().unwrap();
    let g = other.acquire().unwrap();
    assert!(!g.wait_timeout(Duration::from_millis(10)).unwrap());
    drop(g);
}

#[test]
fn a_joinable_queue_is_joined_once_workers_report_every_item_done() {
    let m = Manager::start().unwrap();
    let q = m.joinable_queue::<u32>(0).unwrap();
    let sum = m.namespace().unwrap();
    let workers: Vec<Reaper> = (0..2)
        .map(|_| {
            let (q, sum) = (q.clone(), sum.clone());
            start(move || {
                while let Ok(x) = q.get_timeout(Duration::from_millis(500)) {
                    sum.add("total", i64::from(x)).unwrap();
                    q.task_done().unwrap();
                }
            })
        })
        .collect();
    for i in 1..=100 {
        q.put(i).unwrap();
    }
    assert!(q.join_timeout(Duration::from_secs(30)).unwrap());
    assert_eq!(sum.get::<i64>("total").unwrap(), 5050);
    for mut w in workers {
        assert_eq!(w.0.join().unwrap(), 0);
    }
    assert_eq!(
        q.task_done().unwrap_err().remote_kind(),
        Some(ErrorKind::Value)
    );
}

#[test]
fn an_array_keeps_its_length_and_is_shared() {
    let m = Manager::start().unwrap();
    let a = m.array(&[0i32; 10]).unwrap();
    let mut p = {
        let a = a.clone();
        start(move || {
            for i in 0..10 {
                a.set(i, -(i as i32)).unwrap();
            }
        })
    };
    assert_eq!(p.0.join().unwrap(), 0);
    assert_eq!(
        a.to_vec().unwrap(),
        (0..10).map(|i| -i).collect::<Vec<i32>>()
    );
    assert_eq!(a.len().unwrap(), 10);
    assert_eq!(a.get(10).unwrap_err().remote_kind(), Some(ErrorKind::Index));
}

#[test]
fn a_request_over_the_limit_is_refused_and_the_connection_goes_on() {
    let mut limits = procs_manager::Limits::default();
    limits.max_request = 1024;
    let m = Manager::start_with(limits).unwrap();
    let l = m.list::<Vec<u8>>().unwrap();
    assert_eq!(
        l.push(vec![7; 4096]).unwrap_err().remote_kind(),
        Some(ErrorKind::Limit)
    );
    l.push(vec![7; 16]).unwrap();
    assert_eq!(l.len().unwrap(), 1);
}

#[test]
fn update_with_applies_a_registered_function_atomically_for_four_processes() {
    let m = Manager::builder()
        .register_update("increment", |n: Option<u64>| Some(n.unwrap_or(0) + 1))
        .register_update("forget", |_: Option<u64>| None)
        .start()
        .unwrap();
    let d = m.dict::<String, u64>().unwrap();
    let workers: Vec<Reaper> = (0..4)
        .map(|_| {
            let d = d.clone();
            start(move || {
                for _ in 0..50 {
                    d.update_with(&"hits".into(), "increment").unwrap();
                }
            })
        })
        .collect();
    for mut w in workers {
        assert_eq!(w.0.join().unwrap(), 0);
    }
    assert_eq!(d.get(&"hits".into()).unwrap(), Some(200));
    assert_eq!(d.update_with(&"hits".into(), "forget").unwrap(), None);
    assert!(!d.contains(&"hits".into()).unwrap());
    assert_eq!(
        d.update_with(&"hits".into(), "unknown")
            .unwrap_err()
            .remote_kind(),
        Some(ErrorKind::NoMethod)
    );
}

#[test]
fn a_killed_holders_lock_is_freed_though_its_child_keeps_a_copy_of_the_socket() {
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let (mut r, w) = std::io::pipe().unwrap();
    let mut holder = {
        let lock = lock.clone();
        start(move || {
            let _g = lock.acquire().unwrap();
            // A child that inherits this process's connection and outlives it.
            let mut w = w;
            let grandchild = Process::new(|| {
                loop {
                    std::thread::park();
                }
            });
            let mut grandchild = grandchild;
            grandchild.start().unwrap();
            writeln!(w, "{}", grandchild.pid().unwrap()).unwrap();
            loop {
                std::thread::park();
            }
        })
    };
    let grandchild: i32 = read_line(&mut r).parse().unwrap();
    kill(Pid::from_raw(holder.0.pid().unwrap()), Signal::SIGKILL).unwrap();
    holder.0.join().unwrap();
    let got = lock.acquire_timeout(Duration::from_secs(10));
    // The grandchild was the holder's: kill it whatever happened.
    let _ = kill(Pid::from_raw(grandchild), Signal::SIGKILL);
    let g = got.unwrap().expect("the dead holder's lock is freed");
    assert_eq!(g.acquired(), procs_manager::Acquired::OwnerDied);
    assert!(wait_gone(grandchild));
}

#[test]
fn a_client_killed_in_the_middle_of_a_get_takes_no_item() {
    let m = Manager::start().unwrap();
    let q = m.queue::<u32>(0).unwrap();
    let (mut r, mut w) = std::io::pipe().unwrap();
    let mut waiter = {
        let q = q.clone();
        start(move || {
            q.len().unwrap();
            writeln!(w, "getting").unwrap();
            let _ = q.get();
            std::process::exit(3);
        })
    };
    assert_eq!(read_line(&mut r), "getting");
    kill(Pid::from_raw(waiter.0.pid().unwrap()), Signal::SIGKILL).unwrap();
    waiter.0.join().unwrap();
    q.put(7).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), 7);
}

#[test]
fn a_client_that_never_reads_its_answers_holds_up_nobody() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u8, Vec<u8>>().unwrap();
    d.insert(1, vec![0; 60_000]).unwrap();
    let c: Connection<()> = Client::connect(m.address(), m.authkey()).unwrap();
    let mut hello = [0u8; 21];
    hello[9..13].copy_from_slice(&(std::process::id() as i32).to_le_bytes());
    c.send_bytes(&hello).unwrap();
    let _ = c.recv_bytes().unwrap();
    // A list's to_vec of the big value, over and over, none read: the
    // server's thread for this client ends up blocked on a full socket.
    let l = m.list::<Vec<u8>>().unwrap();
    l.push(vec![1; 60_000]).unwrap();
    let mut get = Vec::new();
    get.push(1u8); // a call
    get.extend_from_slice(&l.object_id().to_le_bytes());
    get.extend_from_slice(&28u16.to_le_bytes()); // the list's slice
    for n in [0u64, u64::MAX] {
        get.extend_from_slice(&8u32.to_le_bytes());
        get.extend_from_slice(&n.to_le_bytes());
    }
    let mut blocked = false;
    for _ in 0..10_000 {
        if c.send_bytes_timeout(&get, Duration::from_millis(200))
            .is_err()
        {
            blocked = true;
            break;
        }
    }
    assert!(blocked, "the server kept reading a client that never reads");
    // Everyone else is served, at once.
    let mut other = {
        let d = d.clone();
        start(move || assert_eq!(d.get(&1).unwrap().map(|v| v.len()), Some(60_000)))
    };
    assert_eq!(other.0.join().unwrap(), 0);
    assert_eq!(d.len().unwrap(), 1);
    drop(c);
}
