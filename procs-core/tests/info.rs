//! `procs_core::info` against real processes: this test process, and
//! children started with `std::process::Command`.
//!
//! Tests run as threads of one process (or one process each, under
//! nextest), so nothing here changes the test process's own environment,
//! directory or signal state: what must differ is set on a child. Every
//! child is held by a [`Reaped`] guard that kills and waits for it, also
//! when an assertion fails.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use procs_core::Error;
use procs_core::info::{ProcessInfo, Status, boot_time};

/// A child that is killed and reaped when this goes out of scope.
struct Reaped(Child);

impl Reaped {
    fn spawn(cmd: &mut Command) -> Reaped {
        Reaped::started(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn a child"),
        )
    }

    fn started(child: Child) -> Reaped {
        // `spawn` returns once the exec has begun, but the new program's
        // arguments appear in /proc a moment later: wait for them (or for
        // the child's end), so that what the tests read is the program's.
        let pid = child.id();
        eventually("the child's exec to complete", || {
            let ended = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            });
            ended || std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
        });
        Reaped(child)
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).expect("pids fit in i32")
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        // Both are harmless when the child was already killed or reaped.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn my_pid() -> i32 {
    i32::try_from(std::process::id()).expect("pids fit in i32")
}

/// Polls `f` every few milliseconds until it returns true or 10 s pass.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// `program` found on PATH, with its symlinks resolved as `/proc/<pid>/exe` has them.
fn on_path(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").expect("PATH is set");
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .map(|p| std::fs::canonicalize(p).expect("canonicalize"))
        .unwrap_or_else(|| panic!("{program} not found on PATH"))
}

/// A thread that stays alive until the returned sender is dropped; gives
/// its thread id.
fn parked_thread() -> (i32, mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (tid_tx, tid_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let handle = thread::spawn(move || {
        tid_tx
            .send(nix::unistd::gettid().as_raw())
            .expect("send tid");
        let _ = stop_rx.recv();
    });
    let tid = tid_rx.recv().expect("receive tid");
    (tid, stop_tx, handle)
}

// ---------------------------------------------------------------- this process

#[test]
fn current_process_knows_its_pid_parent_name_and_exe() {
    let me = ProcessInfo::current().expect("current");
    assert_eq!(me.pid(), my_pid());
    assert_eq!(me.ppid().expect("ppid"), nix::unistd::getppid().as_raw());

    let exe = std::env::current_exe().expect("current_exe");
    assert_eq!(me.exe().expect("exe"), Some(exe.clone()));
    // The test binary's name (`info-<hash>`) is longer than the kernel's 15
    // bytes: name() completes it from the command line, as psutil does.
    let file_name = exe.file_name().expect("file name").to_string_lossy();
    assert_eq!(me.name().expect("name"), file_name);
    // A process's state is its main thread's, which under libtest may be
    // waiting for the test threads.
    let status = me.status().expect("status");
    assert!(
        matches!(status, Status::Running | Status::Sleeping),
        "{status}"
    );
}

#[test]
fn current_process_cmdline_is_its_args() {
    let me = ProcessInfo::current().expect("current");
    let args: Vec<String> = std::env::args().collect();
    assert_eq!(me.cmdline().expect("cmdline"), args);
    let args_os: Vec<OsString> = std::env::args_os().collect();
    assert_eq!(me.cmdline_os().expect("cmdline_os"), args_os);
}

#[test]
fn current_process_cwd_is_current_dir() {
    let me = ProcessInfo::current().expect("current");
    assert_eq!(
        me.cwd().expect("cwd"),
        std::env::current_dir().expect("current_dir")
    );
}

#[test]
fn current_process_environ_has_what_it_was_started_with() {
    // Cargo and nextest start the test binary with PATH; nobody here sets it.
    let me = ProcessInfo::current().expect("current");
    let env = me.environ().expect("environ");
    assert_eq!(
        env.get("PATH").map(String::as_str),
        std::env::var("PATH").ok().as_deref()
    );
    assert!(!env.is_empty());
}

#[test]
fn create_time_lies_between_boot_and_now() {
    let me = ProcessInfo::current().expect("current");
    let created = me.create_time().expect("create_time");
    let boot = boot_time().expect("boot_time");
    assert!(boot <= created, "boot {boot:?} after creation {created:?}");
    assert!(
        created <= SystemTime::now(),
        "created {created:?} in the future"
    );
    // Stable: computed from fixed numbers, not from a clock read each time.
    assert_eq!(me.create_time().expect("create_time"), created);
}

#[test]
fn cpu_times_grow_with_busy_work() {
    let me = ProcessInfo::current().expect("current");
    let total = |t: procs_core::info::CpuTimes| t.user + t.system;
    let before = total(me.cpu_times().expect("cpu_times"));
    let mut x = 0u64;
    eventually("cpu time to grow", || {
        for i in 0..1_000_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
        total(me.cpu_times().expect("cpu_times")) > before
    });
    assert!(total(me.cpu_times().expect("cpu_times")) > Duration::ZERO);
}

#[test]
fn memory_info_of_current_process() {
    let mem = ProcessInfo::current()
        .expect("current")
        .memory_info()
        .expect("memory_info");
    assert!(mem.rss > 0, "{mem:?}");
    assert!(mem.vms >= mem.rss, "{mem:?}");
    assert!(mem.text > 0, "{mem:?}");
}

#[test]
fn num_threads_counts_a_live_thread() {
    let (_tid, stop, handle) = parked_thread();
    let n = ProcessInfo::current()
        .expect("current")
        .num_threads()
        .expect("num_threads");
    assert!(n >= 2, "{n} threads while one is parked");
    drop(stop);
    handle.join().expect("join");
}

#[test]
fn a_thread_id_is_not_a_process() {
    let (tid, stop, handle) = parked_thread();
    assert_ne!(tid, my_pid());
    let res = ProcessInfo::new(tid);
    drop(stop);
    handle.join().expect("join");
    assert!(
        matches!(res, Err(Error::NoSuchProcess { pid }) if pid == tid),
        "{res:?}"
    );
}

#[test]
fn same_process_compares_equal() {
    let a = ProcessInfo::current().expect("current");
    let b = ProcessInfo::new(my_pid()).expect("new");
    assert_eq!(a, b);
    assert!(a.is_running().expect("is_running"));
    let child = Reaped::spawn(Command::new("sleep").arg("30"));
    let c = ProcessInfo::new(child.pid()).expect("child");
    assert_ne!(a, c);
}

// ---------------------------------------------------------------- children

#[test]
fn child_shows_its_parent_cmdline_cwd_environ_and_status() {
    let dir = std::fs::canonicalize(std::env::temp_dir()).expect("temp dir");
    let tag = format!("tag-{}", my_pid());
    let before = SystemTime::now();
    let child = Reaped::spawn(
        Command::new("sleep")
            .arg("30")
            .current_dir(&dir)
            .env("PROCS_INFO_TEST", &tag)
            .env("PROCS_INFO_BYTES", OsStr::from_bytes(b"caf\xe9")),
    );
    let after = SystemTime::now();
    let info = ProcessInfo::new(child.pid()).expect("child info");

    assert_eq!(info.pid(), child.pid());
    assert_eq!(info.ppid().expect("ppid"), my_pid());
    assert_eq!(info.name().expect("name"), "sleep");
    assert_eq!(info.cmdline().expect("cmdline"), ["sleep", "30"]);
    assert_eq!(info.exe().expect("exe"), Some(on_path("sleep")));
    assert_eq!(info.cwd().expect("cwd"), dir);

    let env = info.environ().expect("environ");
    assert_eq!(env.get("PROCS_INFO_TEST"), Some(&tag));
    assert_eq!(
        env.get("PROCS_INFO_BYTES").map(String::as_str),
        Some("caf\u{fffd}")
    );
    let env_os = info.environ_os().expect("environ_os");
    assert_eq!(
        env_os
            .get(OsStr::new("PROCS_INFO_BYTES"))
            .map(|v| v.as_bytes()),
        Some(&b"caf\xe9"[..])
    );

    // The kernel gives boot time to the second: allow that much before.
    let created = info.create_time().expect("create_time");
    assert!(
        created <= after,
        "created {created:?}, spawn returned {after:?}"
    );
    assert!(
        created >= before - Duration::from_secs(2),
        "created {created:?}, spawn called {before:?}"
    );

    eventually("the child to sleep", || {
        info.status().expect("status") == Status::Sleeping
    });
    let fds = std::fs::read_dir(format!("/proc/{}/fd", child.pid()))
        .expect("list fds")
        .count();
    assert_eq!(info.num_fds().expect("num_fds"), fds);
    assert!(fds >= 3, "stdin, stdout, stderr at least: {fds}");
    assert!(info.is_running().expect("is_running"));
}

#[test]
fn cmdline_os_keeps_bytes_and_empty_arguments() {
    // sh blocks reading its stdin (a pipe nobody writes) until killed.
    let child = Reaped::started(
        Command::new("sh")
            .args([OsStr::new("-c"), OsStr::new("read x"), OsStr::new("")])
            .arg(OsStr::from_bytes(b"\xff"))
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh"),
    );
    let info = ProcessInfo::new(child.pid()).expect("child info");
    let args = info.cmdline_os().expect("cmdline_os");
    let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    assert_eq!(bytes, [&b"sh"[..], b"-c", b"read x", b"", b"\xff"]);
    assert_eq!(
        info.cmdline().expect("cmdline"),
        ["sh", "-c", "read x", "", "\u{fffd}"]
    );
}

#[test]
fn nice_of_a_niced_child() {
    let mine = ProcessInfo::current()
        .expect("current")
        .nice()
        .expect("nice");
    let child = Reaped::spawn(Command::new("nice").args(["-n", "5", "sleep", "30"]));
    let info = ProcessInfo::new(child.pid()).expect("child info");
    // `nice` sets the value, then execs sleep.
    eventually("nice to exec sleep", || {
        info.name().expect("name") == "sleep"
    });
    assert_eq!(info.nice().expect("nice"), (mine + 5).min(19));
}

#[test]
fn stopped_child_shows_stopped_then_sleeping() {
    let child = Reaped::spawn(Command::new("sleep").arg("30"));
    let info = ProcessInfo::new(child.pid()).expect("child info");
    let pid = Pid::from_raw(child.pid());
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    eventually("the child to stop", || {
        info.status().expect("status") == Status::Stopped
    });
    assert_eq!(info.status().expect("status").to_string(), "stopped");
    kill(pid, Signal::SIGCONT).expect("SIGCONT");
    eventually("the child to sleep again", || {
        info.status().expect("status") == Status::Sleeping
    });
}

#[test]
fn killed_child_is_a_zombie_until_reaped() {
    let mut child = Reaped::spawn(Command::new("sleep").arg("30"));
    let pid = child.pid();
    let info = ProcessInfo::new(pid).expect("child info");

    child.0.kill().expect("kill");
    eventually("the child to become a zombie", || {
        info.status().expect("status") == Status::Zombie
    });
    assert_eq!(info.status().expect("status").to_string(), "zombie");
    // Still there (psutil's is_running says so too), and still ours.
    assert!(info.is_running().expect("is_running"));
    assert_eq!(info.ppid().expect("ppid"), my_pid());
    assert_eq!(ProcessInfo::new(pid).expect("a zombie is found"), info);
    // The kernel dropped its memory, directory and executable.
    assert!(info.cmdline().expect("cmdline").is_empty());
    assert_eq!(info.memory_info().expect("memory_info").rss, 0);
    for (what, res) in [
        ("cwd", info.cwd().map(|_| ())),
        ("exe", info.exe().map(|_| ())),
        ("environ", info.environ().map(|_| ())),
    ] {
        assert!(
            matches!(res, Err(Error::ZombieProcess { pid: p, what: w }) if p == pid && w == what),
            "{what}: {res:?}"
        );
    }
    // It has no descriptors left; a caller other than root is told so.
    let fds = info.num_fds();
    assert!(
        matches!(fds, Ok(0) | Err(Error::ZombieProcess { what: "fd", .. })),
        "{fds:?}"
    );

    child.0.wait().expect("reap");
    // The handle stays bound to the reaped process: every read says gone.
    assert!(!info.is_running().expect("is_running"));
    for res in [
        info.status().map(|_| ()),
        info.ppid().map(|_| ()),
        info.cmdline().map(|_| ()),
        info.cwd().map(|_| ()),
        info.environ().map(|_| ()),
        info.memory_info().map(|_| ()),
        info.num_fds().map(|_| ()),
    ] {
        assert!(
            matches!(res, Err(Error::NoSuchProcess { pid: p }) if p == pid),
            "{res:?}"
        );
    }
}

#[test]
fn reaped_child_pid_is_no_such_process() {
    let mut child = Reaped::spawn(&mut Command::new("true"));
    let pid = child.pid();
    assert!(child.0.wait().expect("reap").success());
    // Honest caveat: the kernel could give `pid` to a new process between
    // the wait and this call. Pids are handed out in increasing order and
    // reused only after wrapping around pid_max, so on any real machine
    // this does not happen within microseconds.
    let res = ProcessInfo::new(pid);
    assert!(
        matches!(res, Err(Error::NoSuchProcess { pid: p }) if p == pid),
        "{res:?}"
    );
}

#[test]
fn nonpositive_pids_are_no_such_process() {
    for pid in [0, -1, i32::MIN] {
        let res = ProcessInfo::new(pid);
        assert!(
            matches!(res, Err(Error::NoSuchProcess { pid: p }) if p == pid),
            "{res:?}"
        );
    }
}

// ---------------------------------------------------------------- permissions

fn euid() -> u32 {
    // SAFETY: geteuid takes nothing and cannot fail. (nix has it behind its
    // `user` feature, which procs-core does not enable.)
    unsafe { libc::geteuid() }
}

fn is_root() -> bool {
    euid() == 0
}

/// Reads `target`, a process of another user, and returns a bit mask of
/// the checks that failed (0: all as expected). Does not panic or print:
/// it also runs in a forked child.
fn denied_checks(target: i32) -> i32 {
    let Ok(info) = ProcessInfo::new(target) else {
        return 1;
    };
    let denied = |res: procs_core::Result<()>, what: &str| match res {
        Err(Error::AccessDenied { pid, what: w }) => pid == target && w == what,
        _ => false,
    };
    let mut failed = 0;
    if !denied(info.environ().map(|_| ()), "environ") {
        failed |= 2;
    }
    if !denied(info.cwd().map(|_| ()), "cwd") {
        failed |= 4;
    }
    if !denied(info.exe().map(|_| ()), "exe") {
        failed |= 8;
    }
    // Linux 6.2 and later give the count of another user's descriptors to
    // anyone (stat of /proc/<pid>/fd); older kernels refuse the listing.
    let fds_ok = match info.num_fds() {
        Ok(n) => n > 0,
        res => denied(res.map(|_| ()), "fd"),
    };
    if !fds_ok {
        failed |= 16;
    }
    // What everyone may read stays readable.
    if info.ppid().is_err() || info.name().is_err() || info.status().is_err() {
        failed |= 32;
    }
    failed
}

#[test]
fn another_users_environ_cwd_and_exe_are_access_denied() {
    if !is_root() {
        let owner = std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata("/proc/1").expect("stat /proc/1"),
        );
        if owner == euid() {
            println!("skipped: pid 1 belongs to us, and we cannot become another user");
            return;
        }
        assert_eq!(denied_checks(1), 0, "checks failed (bit mask)");
        return;
    }
    // As root, a forked child drops to `nobody` and reads this process.
    let target = my_pid();
    // Prime procfs's caches (kernel version) before forking.
    let _ = ProcessInfo::current().expect("current");
    // SAFETY: the child only makes system calls and allocates (glibc's
    // malloc is fork-safe), takes no lock another thread may hold (no
    // printing, no panics), and leaves with _exit.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            // SAFETY: plain system calls; _exit never returns.
            unsafe {
                let code = if libc::setgroups(0, std::ptr::null()) == 0
                    && libc::setgid(65534) == 0
                    && libc::setuid(65534) == 0
                {
                    denied_checks(target)
                } else {
                    64
                };
                libc::_exit(code)
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            let status = nix::sys::wait::waitpid(child, None).expect("waitpid");
            assert_eq!(
                status,
                nix::sys::wait::WaitStatus::Exited(child, 0),
                "checks failed (bit mask in the exit code; 64: could not become nobody)"
            );
        }
    }
}

#[test]
fn pid_1_environ_is_readable_or_access_denied() {
    // Which one depends on who we are and on what the sandbox allows: even
    // root is refused when pid 1 holds capabilities we lack (ptrace rules).
    let init = ProcessInfo::new(1).expect("pid 1 exists");
    match init.environ() {
        Ok(env) => println!("pid 1's environ is readable: {} variables", env.len()),
        Err(Error::AccessDenied {
            pid: 1,
            what: "environ",
        }) => {
            println!("pid 1's environ is refused (euid {})", euid());
        }
        Err(e) => panic!("neither readable nor AccessDenied: {e:?}"),
    }
}

#[test]
fn kernel_thread_has_no_exe_environ_or_memory() {
    // kthreadd is pid 2 on a machine, absent in a pid namespace.
    let kthreadd = match ProcessInfo::new(2) {
        Ok(p) if p.ppid().ok() == Some(0) && p.name().ok().as_deref() == Some("kthreadd") => p,
        _ => {
            println!("skipped: pid 2 is not kthreadd (a pid namespace?)");
            return;
        }
    };
    // A kernel thread belongs to root: a caller that may not ptrace it is
    // refused before the kernel looks for an executable or environment.
    match kthreadd.exe() {
        Ok(exe) => assert_eq!(exe, None),
        Err(Error::AccessDenied {
            pid: 2,
            what: "exe",
        }) => {
            println!("kthreadd's exe is refused (euid {})", euid());
        }
        Err(e) => panic!("neither None nor AccessDenied: {e:?}"),
    }
    assert!(kthreadd.cmdline().expect("cmdline").is_empty());
    assert_eq!(kthreadd.memory_info().expect("memory_info").vms, 0);
    match kthreadd.environ() {
        Ok(env) => assert!(env.is_empty(), "{env:?}"),
        Err(Error::AccessDenied {
            pid: 2,
            what: "environ",
        }) => println!("kthreadd's environ is refused (euid {})", euid()),
        Err(e) => panic!("neither empty nor AccessDenied: {e:?}"),
    }
}
