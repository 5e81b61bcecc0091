//! Process lifecycle with real children: exit codes, joins with timeouts,
//! signals, daemons, zombies, misuse, and forks from a busy parent.

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use procs_core::{Error, Process, Target, active_children, current_process, parent_process};

/// A child that would run for a long time unless stopped.
fn sleeper() -> Process {
    Process::new(|| thread::sleep(Duration::from_secs(60)))
}

/// Kills and joins a process when dropped, so that a failing assertion does
/// not leave a child behind (the exit handler would wait for it).
struct Reaper(Process);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.join();
    }
}

/// The state letter and parent pid of `pid` from /proc, `None` if gone.
fn proc_state(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Polls until `pid` is gone or a zombie, for at most `limit`.
fn wait_dead(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        match proc_state(pid) {
            None | Some(('Z', _)) | Some(('X', _)) => return true,
            Some(_) if Instant::now() >= deadline => return false,
            Some(_) => thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Reads one line of text from a pipe reader.
fn read_line(r: &mut std::io::PipeReader) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while r.read(&mut byte).expect("read") == 1 && byte[0] != b'\n' {
        out.push(byte[0]);
    }
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn exit_code_is_zero_after_a_normal_end() {
    let mut p = Process::new(|| {});
    assert_eq!(p.exitcode(), None);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());
}

#[test]
fn exit_code_is_what_the_child_passed_to_exit() {
    let mut p = Process::new(|| std::process::exit(3));
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 3);
    assert_eq!(
        p.to_string(),
        format!("<Process({}, stopped[3])>", p.name())
    );
}

#[test]
fn exit_code_is_one_after_a_panic() {
    let mut p = Process::new(|| panic!("the child panicked on purpose"));
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 1);
}

#[test]
fn terminate_gives_minus_fifteen() {
    let mut p = sleeper();
    assert_eq!(p.to_string(), format!("<Process({}, initial)>", p.name()));
    p.start().unwrap();
    assert!(p.is_alive());
    assert_eq!(p.to_string(), format!("<Process({}, started)>", p.name()));
    p.terminate().unwrap();
    assert_eq!(p.join().unwrap(), -15);
    assert_eq!(p.exitcode(), Some(-15));
    assert_eq!(
        p.to_string(),
        format!("<Process({}, stopped[SIGTERM])>", p.name())
    );
}

#[test]
fn kill_gives_minus_nine() {
    let mut p = sleeper();
    p.start().unwrap();
    p.kill().unwrap();
    assert_eq!(p.join().unwrap(), -9);
}

#[test]
fn join_timeout_returns_while_the_child_sleeps() {
    let mut p = Reaper(sleeper());
    p.0.start().unwrap();
    let started = Instant::now();
    assert_eq!(p.0.join_timeout(Duration::from_millis(50)).unwrap(), None);
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert!(p.0.is_alive());
    assert_eq!(p.0.exitcode(), None);
    p.0.kill().unwrap();
    assert_eq!(p.0.join_timeout(Duration::from_secs(10)).unwrap(), Some(-9));
}

#[test]
fn a_child_that_ignores_sigterm_survives_terminate_and_dies_of_kill() {
    let (mut ready_r, ready_w) = std::io::pipe().unwrap();
    let mut p = Reaper(Process::new(move || {
        // SAFETY: SIG_IGN is a valid disposition for SIGTERM.
        unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGTERM,
                nix::sys::signal::SigHandler::SigIgn,
            )
            .unwrap();
        }
        let mut w = ready_w;
        w.write_all(b"ready\n").unwrap();
        thread::sleep(Duration::from_secs(60));
    }));
    p.0.start().unwrap();
    assert_eq!(read_line(&mut ready_r), "ready");
    p.0.terminate().unwrap();
    assert_eq!(p.0.join_timeout(Duration::from_millis(100)).unwrap(), None);
    assert!(p.0.is_alive());
    p.0.kill().unwrap();
    assert_eq!(p.0.join().unwrap(), -9);
}

#[test]
fn no_zombie_is_left_after_join() {
    let mut p = Process::new(|| {});
    p.start().unwrap();
    let pid = p.pid().unwrap();
    p.join().unwrap();
    let me = std::process::id() as i32;
    // Either the pid is gone, or it was reused by a process that is not our zombie.
    match proc_state(pid) {
        None => {}
        Some((state, ppid)) => assert!(
            !(state == 'Z' && ppid == me),
            "pid {pid} is still our zombie"
        ),
    }
}

#[test]
fn daemon_grandchild_dies_when_its_parent_is_killed() {
    let (mut pid_r, pid_w) = std::io::pipe().unwrap();
    let mut parent = Reaper(Process::new(move || {
        let (mut ready_r, ready_w) = std::io::pipe().unwrap();
        let mut daemon = Process::builder().daemon(true).build(move || {
            let mut w = ready_w;
            w.write_all(b"up\n").unwrap();
            thread::sleep(Duration::from_secs(60));
        });
        daemon.start().unwrap();
        assert_eq!(read_line(&mut ready_r), "up");
        let mut w = pid_w;
        writeln!(w, "{}", daemon.pid().unwrap()).unwrap();
        thread::sleep(Duration::from_secs(60));
    }));
    parent.0.start().unwrap();
    let grandchild: i32 = read_line(&mut pid_r).parse().unwrap();
    assert!(matches!(proc_state(grandchild), Some((s, _)) if s != 'Z'));
    parent.0.kill().unwrap();
    assert_eq!(parent.0.join().unwrap(), -9);
    assert!(
        wait_dead(grandchild, Duration::from_secs(10)),
        "daemon grandchild {grandchild} outlived its killed parent"
    );
}

#[test]
fn daemon_started_from_a_short_lived_thread_outlives_the_thread() {
    // The parent-death signal is tied to the forking thread; the library
    // forks daemons of non-main threads from a thread that lives on.
    let (ping_r, ping_w) = std::io::pipe().unwrap();
    let (mut pong_r, pong_w) = std::io::pipe().unwrap();
    let p = thread::spawn(move || {
        let mut p = Process::builder().daemon(true).build(move || {
            let mut r = ping_r;
            let mut w = pong_w;
            let mut b = [0u8; 1];
            r.read_exact(&mut b).unwrap();
            w.write_all(b"pong\n").unwrap();
            thread::sleep(Duration::from_secs(60));
        });
        p.start().unwrap();
        p
    })
    .join()
    .unwrap();
    let mut p = Reaper(p);
    let mut w = ping_w;
    w.write_all(b"?").unwrap();
    assert_eq!(read_line(&mut pong_r), "pong");
    assert!(p.0.is_alive());
    p.0.terminate().unwrap();
    assert_eq!(p.0.join().unwrap(), -15);
}

#[test]
fn active_children_lists_running_children_and_forgets_ended_ones() {
    let mut kids: Vec<Reaper> = (0..3).map(|_| Reaper(sleeper())).collect();
    for k in &mut kids {
        k.0.start().unwrap();
    }
    let pids: Vec<i32> = kids.iter().map(|k| k.0.pid().unwrap()).collect();
    let active: Vec<i32> = active_children().iter().map(|c| c.pid).collect();
    for pid in &pids {
        assert!(active.contains(pid), "{pid} missing from {active:?}");
    }
    let names: Vec<String> = active_children().into_iter().map(|c| c.name).collect();
    assert!(names.contains(&kids[0].0.name().to_owned()));
    // Killed and left unjoined: active_children reaps them itself.
    for k in &mut kids {
        k.0.kill().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let active: Vec<i32> = active_children().iter().map(|c| c.pid).collect();
        if pids.iter().all(|p| !active.contains(p)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "children still active: {active:?}"
        );
        thread::sleep(Duration::from_millis(1));
    }
    let me = std::process::id() as i32;
    for pid in pids {
        assert!(!matches!(proc_state(pid), Some(('Z', ppid)) if ppid == me));
    }
    for k in &mut kids {
        assert_eq!(k.0.exitcode(), Some(-9));
    }
}

#[test]
fn spawn_returns_the_value() {
    let h = procs_core::spawn(|| vec![String::from("a"), "b".repeat(3)]).unwrap();
    assert!(h.pid() > 0);
    assert_eq!(h.join().unwrap(), vec!["a".to_owned(), "bbb".to_owned()]);
}

#[test]
fn spawn_returns_a_value_larger_than_a_pipe_buffer() {
    let h = procs_core::spawn(|| (0..4_000_000u32).map(|i| i as u8).collect::<Vec<u8>>()).unwrap();
    let v = h.join().unwrap();
    assert_eq!(v.len(), 4_000_000);
    assert!(v.iter().enumerate().all(|(i, &b)| b == i as u8));
}

#[test]
fn spawn_reports_a_panic_with_its_message() {
    let h = procs_core::spawn(|| -> u32 { panic!("bad input: {}", 42) }).unwrap();
    let pid = h.pid();
    match h.join() {
        Err(Error::Panicked { pid: p, message }) => {
            assert_eq!(p, pid);
            assert_eq!(message, "bad input: 42");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
}

#[test]
fn spawn_reports_a_child_that_exits_without_a_value() {
    let h = procs_core::spawn(|| -> u32 { std::process::exit(7) }).unwrap();
    assert!(matches!(
        h.join(),
        Err(Error::ChildDied { exitcode: 7, .. })
    ));
}

#[test]
fn spawn_reports_a_child_killed_before_returning() {
    let mut h = procs_core::spawn(|| -> u32 {
        thread::sleep(Duration::from_secs(60));
        0
    })
    .unwrap();
    h.process_mut().kill().unwrap();
    assert!(matches!(
        h.join(),
        Err(Error::ChildDied { exitcode: -9, .. })
    ));
}

#[test]
fn starting_twice_is_an_error() {
    let mut p = Process::new(|| {});
    p.start().unwrap();
    assert!(matches!(p.start(), Err(Error::AlreadyStarted { .. })));
    p.join().unwrap();
    assert!(matches!(p.start(), Err(Error::AlreadyStarted { .. })));
}

#[test]
fn join_and_terminate_before_start_are_errors() {
    let mut p = Process::new(|| {});
    assert!(matches!(
        p.join(),
        Err(Error::NotStarted { op: "join", .. })
    ));
    assert!(matches!(
        p.join_timeout(Duration::from_millis(1)),
        Err(Error::NotStarted { .. })
    ));
    assert!(matches!(p.terminate(), Err(Error::NotStarted { .. })));
    assert!(matches!(p.kill(), Err(Error::NotStarted { .. })));
    assert!(!p.is_alive());
    assert_eq!(p.pid(), None);
    let msg = p.join().unwrap_err().to_string();
    assert!(msg.contains("can only join a started process"), "{msg}");
}

#[test]
fn joining_a_process_this_one_did_not_start_is_an_error() {
    // A handle to a child of this process, moved into another child that
    // tries to wait for its sibling.
    let mut sibling = Process::new(|| {});
    sibling.start().unwrap();
    let sibling_pid = sibling.pid().unwrap();
    sibling.join().unwrap();
    let h = procs_core::spawn(move || match sibling.join() {
        Err(e @ Error::NotAChild { .. }) => Ok(e.to_string()),
        other => Err(format!("{other:?}")),
    })
    .unwrap();
    let msg = h.join().unwrap().unwrap();
    assert!(msg.contains("can only join a child process"), "{msg}");
    assert!(msg.contains(&sibling_pid.to_string()), "{msg}");
}

#[test]
fn a_daemon_may_not_start_children() {
    let h = procs_core::spawn_with(Process::builder().daemon(true), || {
        assert!(current_process().daemon);
        match Process::new(|| {}).start() {
            Err(e @ Error::DaemonicChildren { .. }) => Ok(e.to_string()),
            other => Err(format!("{other:?}")),
        }
    })
    .unwrap();
    let msg = h.join().unwrap().unwrap();
    assert!(msg.contains("daemonic processes are not allowed to have children"));
}

#[test]
fn names_are_numbered_like_python() {
    let p = Process::new(|| {});
    let name = p.name().to_owned();
    let n: u32 = name.strip_prefix("Process-").unwrap().parse().unwrap();
    assert!(n >= 1);
    // In a child: its own name, its parent, and numbering below its own.
    let h = procs_core::spawn(|| {
        let me = current_process();
        let parent = parent_process().expect("a child has a parent");
        let grandchild = Process::new(|| {}).name().to_owned();
        let alive = parent.is_alive();
        (me.name, parent.name, parent.pid, alive, grandchild)
    })
    .unwrap();
    let child_name = h.process().name().to_owned();
    let (me, parent, parent_pid, alive, grandchild) = h.join().unwrap();
    assert_eq!(me, child_name);
    assert_eq!(parent, "MainProcess");
    assert_eq!(parent_pid, std::process::id() as i32);
    assert!(alive);
    assert_eq!(grandchild, format!("{child_name}:1"));
    assert_eq!(current_process().name, "MainProcess");
    assert!(parent_process().is_none());
    assert!(procs_core::cpu_count() >= 1);
    assert!(procs_core::process_cpu_count() >= 1);
}

struct Counter {
    upto: u32,
    out: std::io::PipeWriter,
}

impl Target for Counter {
    const KIND: &'static str = "Counter";
    fn run(mut self) {
        let name = current_process().name;
        for i in 0..self.upto {
            writeln!(self.out, "{name} {i}").unwrap();
        }
    }
}

#[test]
fn a_custom_target_runs_with_its_own_fields_and_kind_name() {
    let (mut r, w) = std::io::pipe().unwrap();
    let mut p = Process::new(Counter { upto: 3, out: w });
    assert!(p.name().starts_with("Counter-"), "{}", p.name());
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    let name = p.name().to_owned();
    for i in 0..3 {
        assert_eq!(read_line(&mut r), format!("{name} {i}"));
    }
    assert!(p.to_string().starts_with("<Counter(Counter-"));
}

#[test]
fn builder_sets_name_and_daemon() {
    let mut p = Process::builder().name("worker").daemon(true).build(|| {});
    assert_eq!(p.name(), "worker");
    assert!(p.daemon());
    p.set_daemon(false).unwrap();
    p.start().unwrap();
    assert!(matches!(
        p.set_daemon(true),
        Err(Error::AlreadyStarted { .. })
    ));
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(p.to_string(), "<Process(worker, stopped)>");
}

#[test]
fn the_sentinel_becomes_readable_when_the_child_ends() {
    use std::os::fd::AsRawFd;
    let (mut r, w) = std::io::pipe().unwrap();
    let mut p = Reaper(Process::new(move || {
        let mut w = w;
        w.write_all(b"x").unwrap();
    }));
    p.0.start().unwrap();
    let fd = p.0.sentinel().expect("pidfd on this kernel").as_raw_fd();
    let mut b = [0u8; 1];
    r.read_exact(&mut b).unwrap();
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
    assert_eq!(n, 1);
    assert_eq!(p.0.join().unwrap(), 0);
}

#[test]
fn fork_from_a_parent_with_busy_threads() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Mutex::new(Vec::<String>::new()));
    let busy: Vec<_> = (0..4)
        .map(|t| {
            let stop = Arc::clone(&stop);
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Allocate, format and lock: what busy threads hold at a fork.
                    let s = format!("thread {t} round {n}");
                    let mut v = shared.lock().unwrap();
                    v.push(s);
                    if v.len() > 1000 {
                        v.clear();
                    }
                    n += 1;
                }
            })
        })
        .collect();
    for i in 0..30u64 {
        // The child allocates, formats and prints while the others run.
        let h = procs_core::spawn(move || {
            let v: Vec<String> = (0..100).map(|j| format!("{i}-{j}")).collect();
            println!("child {i} made {} strings", v.len());
            v.len() as u64 + i
        })
        .unwrap();
        assert_eq!(h.join().unwrap(), 100 + i);
    }
    stop.store(true, Ordering::Relaxed);
    for t in busy {
        t.join().unwrap();
    }
}

#[test]
fn a_normal_exit_terminates_daemons_and_joins_the_others() {
    // A child starts a daemon that would sleep a minute and a non-daemon
    // worker that waits for this test's go, then returns from its target
    // without joining either.
    let (mut report_r, report_w) = std::io::pipe().unwrap();
    let (go_r, mut go_w) = std::io::pipe().unwrap();
    let mut parent = Reaper(Process::new(move || {
        let mut daemon = Process::builder()
            .daemon(true)
            .build(|| thread::sleep(Duration::from_secs(60)));
        daemon.start().unwrap();
        let worker_out = report_w.try_clone().unwrap();
        let mut worker = Process::new(move || {
            let mut go = go_r;
            let _ = read_line(&mut go);
            let mut w = worker_out;
            w.write_all(b"worker done\n").unwrap();
        });
        worker.start().unwrap();
        let mut w = report_w;
        writeln!(w, "{} {}", daemon.pid().unwrap(), worker.pid().unwrap()).unwrap();
    }));
    parent.0.start().unwrap();
    let pids = read_line(&mut report_r);
    let mut it = pids.split(' ').map(|p| p.parse::<i32>().unwrap());
    let (daemon, worker) = (it.next().unwrap(), it.next().unwrap());
    // The parent's target has returned, but the parent waits for its worker.
    assert_eq!(
        parent.0.join_timeout(Duration::from_millis(100)).unwrap(),
        None,
        "the parent ended without joining its non-daemon child"
    );
    go_w.write_all(b"go\n").unwrap();
    assert_eq!(read_line(&mut report_r), "worker done");
    assert_eq!(parent.0.join().unwrap(), 0);
    // The daemon was terminated, and both children reaped by the parent.
    assert!(
        proc_state(daemon).is_none(),
        "daemon {daemon} outlived its parent"
    );
    assert!(
        proc_state(worker).is_none(),
        "worker {worker} was not reaped"
    );
}

/// Whether descriptor `fd` of this process is open and a pidfd.
fn is_open_pidfd(fd: i32) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|link| link.to_string_lossy().contains("pidfd"))
}

#[test]
fn close_on_a_running_process_is_an_error_and_leaves_it_usable() {
    let mut p = Reaper(sleeper());
    p.0.start().unwrap();
    let pid = p.0.pid().unwrap();
    let err = p.0.close().unwrap_err();
    assert!(
        matches!(err, Error::StillRunning { pid: p2, .. } if p2 == pid),
        "{err:?}"
    );
    assert!(err.to_string().contains("still running"), "{err}");
    // Still open: the child can be killed and joined through the handle.
    assert!(p.0.is_alive());
    p.0.kill().unwrap();
    assert_eq!(p.0.join().unwrap(), -9);
    p.0.close().unwrap();
    assert_eq!(p.0.exitcode(), Some(-9));
}

#[test]
fn close_releases_the_pidfd_and_the_record() {
    // In a child of its own, where no other test's thread opens descriptors
    // that could take the closed pidfd's number.
    let h = procs_core::spawn(|| -> Result<(), String> {
        use std::os::fd::AsRawFd;
        let mut p = Process::new(|| {});
        p.start().map_err(|e| e.to_string())?;
        let pid = p.pid().ok_or("no pid")?;
        let Some(fd) = p.sentinel().map(|s| s.as_raw_fd()) else {
            return Ok(()); // no pidfd on this kernel: nothing to release
        };
        if !is_open_pidfd(fd) {
            return Err(format!("the sentinel {fd} is not a pidfd"));
        }
        p.join().map_err(|e| e.to_string())?;
        p.close().map_err(|e| e.to_string())?;
        if is_open_pidfd(fd) {
            return Err(format!("pidfd {fd} is still open after close"));
        }
        if active_children().iter().any(|c| c.pid == pid) {
            return Err(format!("{pid} is still recorded"));
        }
        Ok(())
    })
    .unwrap();
    h.join().unwrap().unwrap();
}

#[test]
fn after_close_only_what_python_allows_answers() {
    let mut p = Process::builder().name("closing").build(|| {});
    p.start().unwrap();
    let pid = p.pid().unwrap();
    assert_eq!(p.ident().unwrap(), Some(pid));
    assert_eq!(p.join().unwrap(), 0);
    p.close().unwrap();

    assert_eq!(p.pid(), None);
    assert!(p.sentinel().is_none());
    assert!(!p.is_alive());
    // What Python still allows after close.
    assert_eq!(p.name(), "closing");
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(p.to_string(), "<Process(closing, closed)>");
    p.close().expect("a second close does nothing");

    let closed = |r: Result<(), Error>, want: &str| match r {
        Err(Error::ProcessClosed { op, ref name }) => {
            assert_eq!((op, name.as_str()), (want, "closing"));
            let msg = r.unwrap_err().to_string();
            assert!(msg.contains("process object is closed"), "{msg}");
        }
        other => panic!("{want}: expected ProcessClosed, got {other:?}"),
    };
    closed(p.join().map(drop), "join");
    closed(p.join_timeout(Duration::from_millis(1)).map(drop), "join");
    closed(p.terminate(), "signal");
    closed(p.kill(), "signal");
    closed(p.start(), "start");
    closed(p.ident().map(drop), "ident");
    closed(p.set_daemon(true), "set daemon");
}

#[test]
fn close_before_start_makes_the_process_unstartable() {
    let mut p = Process::new(|| {});
    p.close().unwrap();
    assert!(matches!(
        p.start(),
        Err(Error::ProcessClosed { op: "start", .. })
    ));
    assert_eq!(p.exitcode(), None);
    assert_eq!(p.pid(), None);
}
