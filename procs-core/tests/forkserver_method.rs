//! The forkserver start method: children forked by a server that is a
//! fresh execution of this test binary (the hook below makes it serve, or
//! run a child's function, instead of the tests).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use procs_core::{Error, Process, StartMethod};

procs_core::init_before_main!();

fn square(x: u64) -> u64 {
    x * x
}

fn whoami(_: ()) -> (String, i32, Option<i32>, bool, bool) {
    let me = procs_core::current_process();
    let parent = procs_core::parent_process().map(|p| p.pid);
    // A child of the served child is forked as usual.
    let grandchild = procs_core::spawn(|| 2 + 2).and_then(|h| h.join());
    (
        me.name,
        me.pid,
        parent,
        me.daemon,
        matches!(grandchild, Ok(4)),
    )
}

fn fails(message: String) -> u8 {
    panic!("{message}")
}

fn exits(code: i32) {
    std::process::exit(code)
}

fn sleeps(_: ()) {
    std::thread::sleep(Duration::from_secs(600));
}

fn served() -> procs_core::ProcessBuilder {
    Process::builder().start_method(StartMethod::Forkserver)
}

/// The pid of this process's forkserver: the parent of a served child.
fn server_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_served_child_runs_its_function_and_returns_its_value() {
    let h = served().spawn_fn(square, 12).unwrap();
    assert_eq!(h.process().start_method(), StartMethod::Forkserver);
    assert_eq!(h.join().unwrap(), 144);
}

#[test]
fn a_served_child_knows_its_name_parent_and_daemon_flag_and_may_fork() {
    let h = served().name("worker").spawn_fn(whoami, ()).unwrap();
    let pid = h.pid();
    let (name, child_pid, parent, daemon, forked) = h.join().unwrap();
    assert_eq!(name, "worker");
    assert_eq!(child_pid, pid);
    // Its parent is the program that asked, not the server that forked.
    assert_eq!(parent, Some(std::process::id() as i32));
    assert!(!daemon);
    assert!(forked);
    let h = served().daemon(true).spawn_fn(whoami, ()).unwrap();
    assert!(h.join().unwrap().3);
}

#[test]
fn one_server_forks_every_child_and_is_not_a_child_to_join() {
    let a = served().spawn_fn(sleeps, ()).unwrap();
    let b = served().spawn_fn(sleeps, ()).unwrap();
    let server = server_of(a.pid());
    assert_eq!(server_of(b.pid()), server);
    assert_ne!(server, std::process::id() as i32);
    let active: Vec<i32> = procs_core::active_children()
        .iter()
        .map(|c| c.pid)
        .collect();
    assert!(active.contains(&a.pid()) && active.contains(&b.pid()));
    assert!(
        !active.contains(&server),
        "the server is not a child to join"
    );
    for mut h in [a, b] {
        h.process_mut().kill().unwrap();
        assert!(matches!(h.join(), Err(Error::ChildDied { .. })));
    }
}

#[test]
fn exit_codes_panics_and_signals_come_back() {
    let h = served().spawn_fn(fails, "no luck".to_string()).unwrap();
    match h.join() {
        Err(Error::Panicked { message, .. }) => assert_eq!(message, "no luck"),
        other => panic!("unexpected {other:?}"),
    }
    let mut h = served().spawn_fn(exits, 7).unwrap();
    let p = h.process_mut();
    assert_eq!(p.join().unwrap(), 7);
    assert_eq!(p.exitcode(), Some(7));
    assert!(!p.is_alive());
    let mut h = served().spawn_fn(sleeps, ()).unwrap();
    let p = h.process_mut();
    assert!(p.is_alive());
    assert_eq!(p.join_timeout(Duration::from_millis(20)).unwrap(), None);
    p.terminate().unwrap();
    assert_eq!(p.join().unwrap(), -libc::SIGTERM);
    // Signals after the end reach nobody (the pidfd names the process).
    p.kill().unwrap();
}

#[test]
fn a_sentinel_becomes_readable_when_the_child_ends() {
    let mut h = served().spawn_fn(sleeps, ()).unwrap();
    let fd = {
        let s = h.process().sentinel().expect("a sentinel");
        use std::os::fd::AsRawFd;
        s.as_raw_fd()
    };
    let readable = |ms| {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) > 0 }
    };
    assert!(!readable(20));
    h.process_mut().kill().unwrap();
    assert!(readable(5_000));
    assert!(matches!(h.join(), Err(Error::ChildDied { .. })));
}

#[test]
fn forkserver_works_from_a_parent_whose_threads_hold_locks() {
    let held = Arc::new(Mutex::new(0u64));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (held, stop) = (held.clone(), stop.clone());
            std::thread::spawn(move || {
                let _g = (i == 0).then(|| held.lock().unwrap());
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = x.wrapping_add(1);
                }
                x
            })
        })
        .collect();
    while held.try_lock().is_ok() {
        std::thread::yield_now();
    }
    let t = Instant::now();
    for i in 0..10u64 {
        let h = served().spawn_fn(square, i).unwrap();
        assert_eq!(h.join().unwrap(), i * i);
    }
    assert!(t.elapsed() < Duration::from_secs(60));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_closure_asks_for_a_function() {
    let mut p = served().build(|| {});
    assert!(matches!(p.start(), Err(Error::SpawnNeedsFunction { .. })));
}

#[test]
fn a_forked_child_gets_a_server_of_its_own() {
    // A fork inherits the parent's server record but not its server: its
    // own requests go to a new one, whose parent it is.
    let mut warm = served().spawn_fn(sleeps, ()).unwrap();
    let parents_server = server_of(warm.pid());
    warm.process_mut().kill().unwrap();
    assert!(matches!(warm.join(), Err(Error::ChildDied { .. })));
    let h = procs_core::spawn(move || {
        let h = served().spawn_fn(sleeps, ()).unwrap();
        let server = server_of(h.pid());
        let mut h = h;
        h.process_mut().kill().unwrap();
        let died = matches!(h.join(), Err(Error::ChildDied { .. }));
        (server, server_of(server), died)
    })
    .unwrap();
    let child = h.pid();
    let (server, servers_parent, died) = h.join().unwrap();
    assert_ne!(server, parents_server);
    assert_eq!(servers_parent, child);
    assert!(died);
}

#[test]
fn the_server_and_its_daemons_go_when_their_process_is_killed() {
    // A process of our own starts a server and a daemon child of it, then
    // is SIGKILLed: the server dies with it (parent-death signal), and the
    // daemon with the server.
    let (r, w) = std::io::pipe().unwrap();
    let mut owner = Process::new(move || {
        let h = served().daemon(true).spawn_fn(sleeps, ()).unwrap();
        let server = server_of(h.pid());
        let mut w = w;
        use std::io::Write;
        writeln!(w, "{} {}", server, h.pid()).unwrap();
        drop(w);
        std::thread::sleep(Duration::from_secs(600));
    });
    owner.start().unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(r).read_line(&mut line).unwrap();
    let pids: Vec<i32> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    owner.kill().unwrap();
    assert_eq!(owner.join().unwrap(), -libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    for pid in pids {
        // Gone, or a zombie of a parent that is itself gone (reaped by init).
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.contains(") Z "))
        {
            assert!(
                Instant::now() < deadline,
                "process {pid} outlived its owner"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn serving_leaves_no_descriptor_and_no_zombie_behind() {
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    // In a child of our own (the other tests open descriptors at once);
    // the server's socket is opened by the first request, before counting.
    let h = procs_core::spawn(move || {
        assert_eq!(served().spawn_fn(square, 1).unwrap().join().unwrap(), 1);
        let before = fds();
        for i in 0..50 {
            let h = served().spawn_fn(square, i).unwrap();
            assert_eq!(h.join().unwrap(), i * i);
        }
        let mut dropped = served().spawn_fn(square, 3).unwrap();
        dropped.process_mut().join().unwrap();
        drop(dropped);
        let left = procs_core::active_children().len();
        (before, fds(), left)
    })
    .unwrap();
    let (before, after, left) = h.join().unwrap();
    assert_eq!(before, after, "descriptors left open");
    assert_eq!(left, 0);
}

#[test]
fn a_killed_server_is_replaced_and_its_children_do_not_hang_their_joins() {
    // In a process of our own, whose server this test may kill.
    let h = procs_core::spawn(move || {
        let daemon = served().daemon(true).spawn_fn(sleeps, ()).unwrap();
        let server = server_of(daemon.pid());
        // SAFETY: kill takes a pid and a signal.
        unsafe { libc::kill(server, libc::SIGKILL) };
        // The daemon dies with its server; its join returns (its code is
        // lost with the server) instead of waiting.
        let t = Instant::now();
        let joined = daemon.join();
        let prompt = t.elapsed() < Duration::from_secs(10);
        // The next child gets a new server.
        let mut next = served().spawn_fn(sleeps, ()).unwrap();
        let new_server = server_of(next.pid());
        next.process_mut().kill().unwrap();
        let killed = matches!(next.join(), Err(Error::ChildDied { .. }));
        let works = served().spawn_fn(square, 9).unwrap().join().unwrap();
        (joined.is_err(), prompt, killed, works, new_server != server)
    })
    .unwrap();
    assert_eq!(h.join().unwrap(), (true, true, true, 81, true));
}

fn named(code: i32) {
    let me = procs_core::current_process();
    assert_eq!(me.name, "plain-worker");
    std::process::exit(code)
}

fn panics(_: ()) {
    panic!("a plain target panics")
}

#[test]
fn a_process_of_a_plain_function_starts_by_every_method() {
    for m in [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::Forkserver,
    ] {
        let mut p = Process::builder()
            .name("plain-worker")
            .start_method(m)
            .build_fn(named, 5);
        assert_eq!(p.name(), "plain-worker");
        assert!(!p.is_alive());
        p.start().unwrap();
        assert!(
            matches!(p.start(), Err(Error::AlreadyStarted { .. })),
            "{m:?}"
        );
        assert_eq!(p.join().unwrap(), 5, "{m:?}");
        assert_eq!(p.exitcode(), Some(5));
        let mut p = Process::builder().start_method(m).build_fn(panics, ());
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 1, "{m:?}: a panic is exit code 1");
        p.close().unwrap();
    }
}

#[test]
fn a_server_that_does_not_answer_is_replaced_not_waited_for() {
    // In a process of our own, whose server this test stops.
    let h = procs_core::spawn(move || {
        let mut first = served().spawn_fn(sleeps, ()).unwrap();
        let server = server_of(first.pid());
        first.process_mut().kill().unwrap();
        let _ = first.join();
        // SAFETY: kill takes a pid and a signal.
        unsafe { libc::kill(server, libc::SIGSTOP) };
        // The request to the stopped server times out; a new one serves.
        let t = Instant::now();
        let next = served().spawn_fn(square, 6).unwrap();
        let waited = t.elapsed();
        let value = next.join().unwrap();
        // SAFETY: as above; the old server is killed when replaced, this
        // only makes sure.
        unsafe { libc::kill(server, libc::SIGKILL) };
        (value, waited < Duration::from_secs(60))
    })
    .unwrap();
    assert_eq!(h.join().unwrap(), (36, true));
}
