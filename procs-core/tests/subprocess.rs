//! `subprocess`: run and Popen against real programs (sh, cat, echo, sleep).
//!
//! Nothing here waits by sleeping: a child that must still be running is
//! blocked on something the test controls (its stdin, a gate file), and a
//! condition that only eventually holds (a grandchild gone) is polled
//! within a bound.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use procs_core::Error;
use procs_core::Signal;
use procs_core::subprocess::{self, Popen, Redirect, Run};

/// Long enough for anything a test waits for on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// A path in the temporary directory unique to this test process and
/// `name`, removed (file or directory) when dropped.
fn temp_path(name: &str) -> TempPath {
    let path = std::env::temp_dir().join(format!("procs-subprocess-{}-{name}", std::process::id()));
    let _ = fs::remove_file(&path);
    TempPath(path)
}

struct TempPath(PathBuf);

impl Deref for TempPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child that is killed (with its group, when it leads one) and reaped
/// when dropped, so that a failing test leaves no process behind. `Popen`'s
/// own drop leaves a running child running, as std does.
struct Reaped(Popen);

impl Deref for Reaped {
    type Target = Popen;
    fn deref(&self) -> &Popen {
        &self.0
    }
}

impl DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Popen {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.send_signal_group(Signal::SIGKILL);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `cond` until it holds or `PATIENCE` runs out; returns whether it held.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// The state letter and command name of `pid` from /proc, `None` if gone.
fn proc_state(pid: i32) -> Option<(char, String)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let state = stat[close + 1..].trim_start().chars().next()?;
    Some((state, comm))
}

/// Whether the process `pid` that ran `comm` no longer runs: gone, a zombie,
/// or its pid already reused by another program.
fn is_dead(pid: i32, comm: &str) -> bool {
    match proc_state(pid) {
        None => true,
        Some((state, c)) => state == 'Z' || c != comm,
    }
}

/// Whether `pid` exists and is our zombie child (ended, not reaped).
fn is_our_zombie(pid: i32) -> bool {
    let ours = std::process::id().to_string();
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let mut fields = after.split_whitespace();
        fields.next() == Some("Z") && fields.next() == Some(ours.as_str())
    })
}

/// Whether /proc/<pid> is gone, or is a process that is not our child.
fn is_reaped(pid: i32) -> bool {
    let ours = std::process::id().to_string();
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after.split_whitespace().nth(1) != Some(ours.as_str())
        }
    }
}

// ---------------------------------------------------------------- run

#[test]
fn run_captures_stdout() {
    let done = Run::new(["echo", "hello", "world"])
        .capture_output()
        .run()
        .expect("echo runs");
    assert_eq!(done.args, ["echo", "hello", "world"]);
    assert_eq!(done.returncode, 0);
    assert!(done.success());
    assert_eq!(done.stdout, b"hello world\n");
    assert_eq!(done.stdout_str(), "hello world\n");
    assert!(done.stderr.is_empty());
}

#[test]
fn run_captures_stderr_separately() {
    let done = Run::new(["sh", "-c", "echo out; echo err >&2"])
        .capture_output()
        .run()
        .expect("sh runs");
    assert_eq!(done.stdout, b"out\n");
    assert_eq!(done.stderr, b"err\n");
}

#[test]
fn run_stderr_to_stdout_merges_in_order() {
    let done = Run::new(["sh", "-c", "echo 1; echo 2 >&2; echo 3; echo 4 >&2"])
        .capture_output()
        .stderr_to_stdout()
        .run()
        .expect("sh runs");
    assert_eq!(done.stdout, b"1\n2\n3\n4\n");
    assert!(done.stderr.is_empty());
}

#[test]
fn run_feeds_input_to_cat() {
    let done = Run::new(["cat"])
        .input("line one\nline two\n")
        .capture_output()
        .run()
        .expect("cat runs");
    assert_eq!(done.stdout, b"line one\nline two\n");
}

#[test]
fn run_in_cwd() {
    let dir = temp_path("cwd");
    fs::create_dir_all(&dir).expect("create dir");
    fs::write(dir.join("marker"), b"").expect("create marker");
    let done = Run::new(["ls"]).cwd(&dir).capture_output().run();
    assert_eq!(done.expect("ls runs").stdout, b"marker\n");
}

#[test]
fn run_in_missing_cwd_names_the_directory_not_the_program() {
    let dir = temp_path("no-such-dir");
    let err = Run::new(["true"]).cwd(&dir).run().unwrap_err();
    match err {
        Error::Os {
            op: "chdir",
            source,
        } => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            assert!(
                source.to_string().contains(&*dir.to_string_lossy()),
                "{source}"
            );
        }
        other => panic!("expected a chdir error, got {other:?}"),
    }
}

#[test]
fn run_sets_env() {
    let done = Run::new(["sh", "-c", "echo \"$PROCS_A-$PROCS_B\""])
        .env("PROCS_A", "a")
        .envs([("PROCS_B", "b")])
        .capture_output()
        .run()
        .expect("sh runs");
    assert_eq!(done.stdout, b"a-b\n");
}

#[test]
fn run_env_remove_hides_an_inherited_variable() {
    assert!(
        std::env::var_os("PATH").is_some(),
        "the test needs PATH set"
    );
    let done = Run::new(["env"])
        .env_remove("PATH")
        .env("PROCS_SET", "1")
        .capture_output()
        .run()
        .expect("env runs");
    let vars = done.stdout_str();
    assert!(vars.lines().any(|l| l == "PROCS_SET=1"), "{vars}");
    assert!(!vars.lines().any(|l| l.starts_with("PATH=")), "{vars}");
}

#[test]
fn run_env_clear_leaves_only_what_is_set() {
    let done = Run::new(["env"])
        .env_clear()
        .env("ONLY", "this")
        .capture_output()
        .run()
        .expect("env runs");
    assert_eq!(done.stdout, b"ONLY=this\n");
}

#[test]
fn run_check_with_nonzero_exit_is_called_process_error() {
    let err = Run::new(["sh", "-c", "echo out; echo err >&2; exit 3"])
        .capture_output()
        .check()
        .run()
        .unwrap_err();
    match err {
        Error::CalledProcessError {
            cmd,
            returncode,
            stdout,
            stderr,
        } => {
            assert_eq!(cmd, ["sh", "-c", "echo out; echo err >&2; exit 3"]);
            assert_eq!(returncode, 3);
            assert_eq!(stdout, b"out\n");
            assert_eq!(stderr, b"err\n");
        }
        other => panic!("expected CalledProcessError, got {other:?}"),
    }
}

#[test]
fn run_without_check_returns_the_nonzero_code() {
    let done = Run::new(["sh", "-c", "exit 3"]).run().expect("sh runs");
    assert_eq!(done.returncode, 3);
    assert!(!done.success());
    let err = done.check_returncode().unwrap_err();
    assert!(
        matches!(err, Error::CalledProcessError { returncode: 3, .. }),
        "{err:?}"
    );
}

#[test]
fn run_death_by_signal_is_a_negative_code() {
    let done = subprocess::run(["sh", "-c", "kill -9 $$"]).expect("sh runs");
    assert_eq!(done.returncode, -9);
    let err = Run::new(["sh", "-c", "kill -9 $$"])
        .check()
        .run()
        .unwrap_err();
    assert!(
        matches!(err, Error::CalledProcessError { returncode: -9, .. }),
        "{err:?}"
    );
}

#[test]
fn run_plain_returns_the_code() {
    assert_eq!(subprocess::run(["true"]).expect("true runs").returncode, 0);
    assert_eq!(
        subprocess::run(["false"]).expect("false runs").returncode,
        1
    );
}

#[test]
fn check_output_returns_stdout_or_the_error() {
    assert_eq!(
        subprocess::check_output(["echo", "hi"]).expect("echo runs"),
        b"hi\n"
    );
    let err = subprocess::check_output(["false"]).unwrap_err();
    assert!(
        matches!(err, Error::CalledProcessError { returncode: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn call_and_check_call_report_exit_codes_and_signals() {
    assert_eq!(subprocess::call(["true"]).expect("true runs"), 0);
    assert_eq!(
        subprocess::call(["sh", "-c", "exit 7"]).expect("sh runs"),
        7
    );
    // The shell kills itself: Python's negative code for a signal.
    assert_eq!(
        subprocess::call(["sh", "-c", "kill -9 $$"]).expect("sh runs"),
        -9
    );
    subprocess::check_call(["true"]).expect("true succeeds");
    let err = subprocess::check_call(["sh", "-c", "exit 5"]).unwrap_err();
    assert!(
        matches!(err, Error::CalledProcessError { returncode: 5, .. }),
        "{err:?}"
    );
    assert!(matches!(
        subprocess::call(["no-such-program-here"]),
        Err(Error::ProgramNotFound { .. })
    ));
}

#[test]
fn getstatusoutput_merges_the_streams_and_strips_one_newline() {
    // stderr goes where stdout goes, in the order written.
    assert_eq!(
        subprocess::getstatusoutput("echo one; echo two >&2; echo three; exit 3").expect("sh runs"),
        (3, "one\ntwo\nthree".to_string())
    );
    // One trailing newline only; none added when there was none.
    assert_eq!(
        subprocess::getoutput("printf 'a\\n\\n'").expect("sh runs"),
        "a\n"
    );
    assert_eq!(subprocess::getoutput("printf abc").expect("sh runs"), "abc");
    // Bytes that are not UTF-8 are replaced, not an error.
    assert_eq!(
        subprocess::getoutput("printf 'x\\377y'").expect("sh runs"),
        "x\u{fffd}y"
    );
    let (code, out) = subprocess::getstatusoutput("echo partial; kill -9 $$").expect("sh runs");
    assert_eq!((code, out.as_str()), (-9, "partial"));
}

#[test]
fn run_timeout_kills_and_keeps_the_output_so_far() {
    let started = Instant::now();
    let err = Run::new(["sh", "-c", "echo before; sleep 10"])
        .capture_output()
        .timeout(Duration::from_secs(1))
        .run()
        .unwrap_err();
    // A correctness bound: the run must not have waited for the sleep.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    match err {
        Error::TimeoutExpired {
            cmd,
            timeout,
            stdout,
            stderr,
        } => {
            assert_eq!(cmd, ["sh", "-c", "echo before; sleep 10"]);
            assert_eq!(timeout, Duration::from_secs(1));
            assert_eq!(stdout, b"before\n");
            assert!(stderr.is_empty());
        }
        other => panic!("expected TimeoutExpired, got {other:?}"),
    }
}

#[test]
fn run_timeout_kills_the_whole_process_group() {
    let err = Run::new(["sh", "-c", "sleep 30 & echo $!; wait"])
        .capture_output()
        .timeout(Duration::from_secs(1))
        .run()
        .unwrap_err();
    let Error::TimeoutExpired { stdout, .. } = err else {
        panic!("expected TimeoutExpired, got {err:?}");
    };
    let grandchild: i32 = String::from_utf8_lossy(&stdout)
        .trim()
        .parse()
        .expect("sh printed the pid of its sleep");
    assert!(
        eventually(|| is_dead(grandchild, "sleep")),
        "grandchild {grandchild} still runs: {:?}",
        proc_state(grandchild)
    );
}

#[test]
fn run_missing_program_is_program_not_found() {
    let err = Run::new(["procs-no-such-program", "arg"])
        .run()
        .unwrap_err();
    match err {
        Error::ProgramNotFound { program } => assert_eq!(program, "procs-no-such-program"),
        other => panic!("expected ProgramNotFound, got {other:?}"),
    }
}

#[test]
fn run_not_executable_is_an_os_error_naming_the_file() {
    let path = temp_path("not-executable");
    fs::write(&path, b"#!/bin/sh\necho hi\n").expect("write script");
    let err = Run::new([path.as_os_str()]).run().unwrap_err();
    match err {
        Error::Os { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied);
            assert!(
                source.to_string().contains(&*path.to_string_lossy()),
                "{source}"
            );
        }
        other => panic!("expected a permission error, got {other:?}"),
    }
}

#[test]
fn run_rejects_empty_args_and_input_with_stdin() {
    let err = Run::new(Vec::<String>::new()).run().unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    let err = Run::new(["cat"])
        .stdin(Redirect::Null)
        .input("x")
        .run()
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { op: "run", .. }),
        "{err:?}"
    );
}

// ---------------------------------------------------------------- Popen

#[test]
fn communicate_reads_megabytes_of_stdout_and_stderr_at_once() {
    // Each 1 MB chunk is far more than a pipe holds, and the two streams
    // alternate: reading one to its end before the other would deadlock.
    let script = "for i in 1 2 3; do \
                    head -c 1000000 /dev/zero | tr '\\0' o; \
                    head -c 1000000 /dev/zero | tr '\\0' e >&2; \
                  done";
    let mut p = Popen::builder(["sh", "-c", script])
        .stdout(Redirect::Pipe)
        .stderr(Redirect::Pipe)
        .spawn()
        .map(Reaped)
        .expect("spawn sh");
    let (out, err) = p.communicate(None, Some(PATIENCE)).expect("communicate");
    assert_eq!(out.len(), 3_000_000);
    assert!(out.iter().all(|&b| b == b'o'));
    assert_eq!(err.len(), 3_000_000);
    assert!(err.iter().all(|&b| b == b'e'));
    assert_eq!(p.returncode(), Some(0));
}

#[test]
fn communicate_feeds_megabytes_to_cat_while_it_writes_them_back() {
    // cat writes back as it reads: a parent that wrote all the input before
    // reading would block with both pipes full.
    let input: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut p = Popen::builder(["cat"])
        .stdin(Redirect::Pipe)
        .stdout(Redirect::Pipe)
        .stderr(Redirect::Pipe)
        .spawn()
        .map(Reaped)
        .expect("spawn cat");
    let (out, err) = p
        .communicate(Some(&input), Some(PATIENCE))
        .expect("communicate");
    assert!(
        out == input,
        "cat gave back {} bytes of {}",
        out.len(),
        input.len()
    );
    assert!(err.is_empty());
    assert_eq!(p.returncode(), Some(0));
}

#[test]
fn poll_is_none_while_running_then_the_code() {
    // The child cannot end before it reads a line we have not sent yet.
    let mut p = Popen::builder(["sh", "-c", "read line; exit 7"])
        .stdin(Redirect::Pipe)
        .spawn()
        .map(Reaped)
        .expect("spawn sh");
    assert_eq!(p.poll().expect("poll"), None);
    assert_eq!(p.returncode(), None);
    p.stdin()
        .expect("stdin is a pipe")
        .write_all(b"go\n")
        .expect("write");
    let mut code = None;
    assert!(eventually(|| {
        code = p.poll().expect("poll");
        code.is_some()
    }));
    assert_eq!(code, Some(7));
    assert_eq!(p.returncode(), Some(7));
    assert_eq!(p.wait().expect("wait"), 7);
}

#[test]
fn wait_timeout_is_timeout_expired_and_the_child_can_still_be_killed_and_reaped() {
    let mut p = Popen::new(["sleep", "5"]).map(Reaped).expect("spawn sleep");
    let pid = p.pid();
    let started = Instant::now();
    let err = p.wait_timeout(Duration::from_millis(100)).unwrap_err();
    let waited = started.elapsed();
    match &err {
        Error::TimeoutExpired {
            cmd,
            timeout,
            stdout,
            stderr,
        } => {
            assert_eq!(cmd, &["sleep", "5"]);
            assert_eq!(*timeout, Duration::from_millis(100));
            assert!(stdout.is_empty() && stderr.is_empty());
        }
        other => panic!("expected TimeoutExpired, got {other:?}"),
    }
    assert!(err.to_string().contains("timed out after 100ms"), "{err}");
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "took {waited:?}");
    // Left running, and still ours to signal and reap.
    assert_eq!(p.poll().expect("poll"), None);
    assert_eq!(proc_state(pid).map(|(s, _)| s != 'Z'), Some(true));
    p.kill().expect("kill");
    assert_eq!(p.wait_timeout(PATIENCE).expect("wait"), -9);
    assert_eq!(p.returncode(), Some(-9));
    assert!(is_reaped(pid), "pid {pid} left a zombie");
}

#[test]
fn wait_timeout_returns_the_code_of_a_child_that_ends() {
    let mut p = Popen::new(["sh", "-c", "exit 4"])
        .map(Reaped)
        .expect("spawn sh");
    assert_eq!(p.wait_timeout(PATIENCE).expect("wait"), 4);
}

#[test]
fn terminate_gives_minus_15() {
    let mut p = Popen::new(["sleep", "30"])
        .map(Reaped)
        .expect("spawn sleep");
    p.terminate().expect("terminate");
    assert_eq!(p.wait().expect("wait"), -15);
}

#[test]
fn send_signal_delivers_and_is_skipped_after_reaping() {
    let mut p = Popen::new(["sleep", "30"])
        .map(Reaped)
        .expect("spawn sleep");
    p.send_signal(Signal::SIGUSR1).expect("signal");
    assert_eq!(p.wait().expect("wait"), -(Signal::SIGUSR1 as i32));
    // Reaped: the pid may be anyone's now, so nothing is sent.
    p.kill().expect("kill after reaping is a no-op");
    assert_eq!(p.returncode(), Some(-(Signal::SIGUSR1 as i32)));
}

#[test]
fn send_signal_group_reaches_the_grandchildren() {
    let mut p = Popen::builder(["sh", "-c", "sleep 30 & echo $!; wait"])
        .stdout(Redirect::Pipe)
        .process_group(0)
        .spawn()
        .map(Reaped)
        .expect("spawn sh");
    let mut line = String::new();
    BufReader::new(p.stdout().expect("stdout is a pipe"))
        .read_line(&mut line)
        .expect("read the pid");
    let grandchild: i32 = line.trim().parse().expect("sh printed a pid");
    p.send_signal_group(Signal::SIGKILL).expect("killpg");
    assert_eq!(p.wait().expect("wait"), -9);
    assert!(
        eventually(|| is_dead(grandchild, "sleep")),
        "{:?}",
        proc_state(grandchild)
    );

    let mut alone = Popen::new(["true"]).map(Reaped).expect("spawn true");
    let err = alone.send_signal_group(Signal::SIGTERM).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    alone.wait().expect("wait");
}

#[test]
fn process_group_and_new_session_are_set_in_the_child() {
    // Fields 5 and 6 of /proc/<pid>/stat: process group and session.
    let ids = |options: subprocess::PopenOptions| {
        let mut p = options
            .stdout(Redirect::Pipe)
            .spawn()
            .map(Reaped)
            .expect("spawn sh");
        let (out, _) = p.communicate(None, Some(PATIENCE)).expect("communicate");
        let out = String::from_utf8(out).expect("text");
        let ids: Vec<i32> = out
            .split_whitespace()
            .map(|f| f.parse().expect("an id"))
            .collect();
        (p.pid(), ids)
    };
    let script = ["sh", "-c", "cut -d' ' -f5,6 /proc/$$/stat"];
    let our_session = fs::read_to_string("/proc/self/stat").expect("our stat");
    let our_session: i32 = our_session
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(3))
        .and_then(|f| f.parse().ok())
        .expect("our session id");

    let (pid, group) = ids(Popen::builder(script).process_group(0));
    assert_eq!(group, [pid, our_session]);
    let (pid, session) = ids(Popen::builder(script).start_new_session());
    assert_eq!(session, [pid, pid]);
}

#[test]
fn communicate_timeout_then_a_second_call_gets_the_rest() {
    let gate = temp_path("gate-output");
    let script = format!(
        "echo first; while [ ! -e '{}' ]; do sleep 0.01; done; echo second",
        gate.display()
    );
    let mut p = Popen::builder(["sh", "-c", &script])
        .stdout(Redirect::Pipe)
        .spawn()
        .map(Reaped)
        .expect("spawn sh");
    // The child cannot finish before the gate opens, so every call times
    // out; go on until the first line has been read.
    assert!(eventually(|| {
        match p.communicate(None, Some(Duration::from_millis(50))) {
            Err(Error::TimeoutExpired { stdout, .. }) => stdout == b"first\n",
            other => panic!("expected TimeoutExpired, got {other:?}"),
        }
    }));
    assert!(matches!(
        p.communicate(Some(b"late"), None),
        Err(Error::InvalidArgument {
            op: "communicate",
            ..
        })
    ));
    File::create(&gate).expect("open the gate");
    let result = p.communicate(None, Some(PATIENCE));
    let (out, _) = result.expect("communicate");
    assert_eq!(out, b"first\nsecond\n");
    assert_eq!(p.returncode(), Some(0));
}

#[test]
fn communicate_timeout_keeps_the_input_not_yet_written() {
    // The child reads nothing before the gate opens: of 1 MiB of input, the
    // first call can only write what the pipe holds.
    let gate = temp_path("gate-input");
    let script = format!(
        "while [ ! -e '{}' ]; do sleep 0.01; done; exec cat",
        gate.display()
    );
    let input: Vec<u8> = (0..1024 * 1024).map(|i| (i % 253) as u8).collect();
    let mut p = Popen::builder(["sh", "-c", &script])
        .stdin(Redirect::Pipe)
        .stdout(Redirect::Pipe)
        .spawn()
        .map(Reaped)
        .expect("spawn sh");
    let first = p.communicate(Some(&input), Some(Duration::from_millis(100)));
    assert!(
        matches!(first, Err(Error::TimeoutExpired { .. })),
        "{first:?}"
    );
    File::create(&gate).expect("open the gate");
    let result = p.communicate(None, Some(PATIENCE));
    let (out, _) = result.expect("communicate");
    assert!(
        out == input,
        "cat gave back {} bytes of {}",
        out.len(),
        input.len()
    );
}

#[test]
fn communicate_input_needs_a_stdin_pipe() {
    let mut p = Popen::new(["true"]).map(Reaped).expect("spawn true");
    let err = p.communicate(Some(b"x"), None).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert_eq!(
        p.communicate(None, None).expect("communicate"),
        (vec![], vec![])
    );
    assert_eq!(p.returncode(), Some(0));
}

#[test]
fn popen_stdout_and_merged_stderr_to_a_file() {
    let path = temp_path("stdout-file");
    let file = File::create(&path).expect("create file");
    let mut p = Popen::builder(["sh", "-c", "echo to-file; echo err-too >&2"])
        .stdout(file)
        .stderr_to_stdout()
        .spawn()
        .map(Reaped)
        .expect("spawn sh");
    assert!(p.stdout().is_none() && p.stderr().is_none());
    assert_eq!(p.wait().expect("wait"), 0);
    let written = fs::read(&path).expect("read file");
    assert_eq!(written, b"to-file\nerr-too\n");
}

#[test]
fn popen_stdin_from_null() {
    let mut p = Popen::builder(["readlink", "/proc/self/fd/0"])
        .stdin(Redirect::Null)
        .stdout(Redirect::Pipe)
        .spawn()
        .map(Reaped)
        .expect("spawn readlink");
    let (out, _) = p.communicate(None, Some(PATIENCE)).expect("communicate");
    assert_eq!(out, b"/dev/null\n");

    let mut p = Popen::builder(["cat"])
        .stdin(Redirect::Null)
        .stdout(Redirect::Pipe)
        .spawn()
        .map(Reaped)
        .expect("spawn cat");
    assert_eq!(
        p.communicate(None, Some(PATIENCE)).expect("communicate").0,
        b""
    );
}

#[test]
fn popen_chains_one_childs_stdout_into_the_next() {
    let mut producer = Popen::builder(["printf", "b\\nc\\na\\n"])
        .stdout(Redirect::Pipe)
        .spawn()
        .map(Reaped)
        .expect("spawn printf");
    let pipe = producer.take_stdout().expect("stdout is a pipe");
    let mut sorter = Popen::builder(["sort"])
        .stdin(pipe)
        .stdout(Redirect::Pipe)
        .spawn()
        .map(Reaped)
        .expect("spawn sort");
    let (out, _) = sorter
        .communicate(None, Some(PATIENCE))
        .expect("communicate");
    assert_eq!(out, b"a\nb\nc\n");
    assert_eq!(producer.wait().expect("wait"), 0);
}

#[test]
fn wait_leaves_no_zombie() {
    let mut p = Popen::new(["true"]).map(Reaped).expect("spawn true");
    let pid = p.pid();
    assert_eq!(p.wait().expect("wait"), 0);
    assert!(is_reaped(pid), "{:?}", proc_state(pid));
}

#[test]
fn dropping_an_ended_popen_reaps_it() {
    let p = Popen::new(["true"]).expect("spawn true");
    let pid = p.pid();
    assert!(eventually(|| is_our_zombie(pid)), "{:?}", proc_state(pid));
    drop(p);
    assert!(is_reaped(pid), "{:?}", proc_state(pid));
}

#[test]
fn dropping_a_popen_closes_its_pipes() {
    // cat ends only when its stdin closes: the drop must have closed it.
    let p = Popen::builder(["cat"])
        .stdin(Redirect::Pipe)
        .stdout(Redirect::Pipe)
        .spawn()
        .expect("spawn cat");
    let pid = p.pid();
    drop(p);
    assert!(eventually(|| is_our_zombie(pid)), "{:?}", proc_state(pid));
    // Reap it here, which the dropped handle could not.
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    assert!(status.is_ok(), "{status:?}");
}

#[test]
fn popen_missing_program_is_program_not_found() {
    let err = Popen::new(["procs-no-such-program"]).unwrap_err();
    assert!(
        matches!(&err, Error::ProgramNotFound { program } if program == "procs-no-such-program"),
        "{err:?}"
    );
}

#[test]
fn popen_reports_args_and_pid() {
    let mut p = Popen::new(["true"]).map(Reaped).expect("spawn true");
    assert_eq!(p.args(), ["true"]);
    assert!(p.pid() > 0);
    assert!(Path::new(&format!("/proc/{}", p.pid())).exists());
    p.wait().expect("wait");
}

#[test]
fn stderr_to_stdout_follows_an_inherited_or_null_stdout() {
    // The child reports, into a file, what its fds 1 and 2 are.
    let report = temp_path("fd-report");
    let script = format!(
        "out=$(readlink /proc/$$/fd/1); err=$(readlink /proc/$$/fd/2); \
         printf '%s\\n%s\\n' \"$out\" \"$err\" > '{}'",
        report.display()
    );
    let ours = fs::read_link("/proc/self/fd/1").expect("our stdout");
    let ours = ours.to_string_lossy();

    let mut p = Popen::builder(["sh", "-c", &script])
        .stderr_to_stdout()
        .spawn()
        .map(Reaped)
        .expect("spawn sh");
    assert_eq!(p.wait().expect("wait"), 0);
    let inherited = fs::read_to_string(&report).expect("read report");
    assert_eq!(inherited, format!("{ours}\n{ours}\n"));

    let mut p = Popen::builder(["sh", "-c", &script])
        .stdout(Redirect::Null)
        .stderr_to_stdout()
        .spawn()
        .map(Reaped)
        .expect("spawn sh");
    assert_eq!(p.wait().expect("wait"), 0);
    let null = fs::read_to_string(&report).expect("read report");
    assert_eq!(null, "/dev/null\n/dev/null\n");
}

#[test]
fn pipes_are_blocking_again_after_a_timed_out_communicate() {
    let gate = temp_path("gate-blocking");
    let script = format!(
        "echo first; while [ ! -e '{}' ]; do sleep 0.01; done; echo second",
        gate.display()
    );
    let mut p = Popen::builder(["sh", "-c", &script])
        .stdout(Redirect::Pipe)
        .spawn()
        .map(Reaped)
        .expect("spawn sh");
    assert!(eventually(|| {
        match p.communicate(None, Some(Duration::from_millis(50))) {
            Err(Error::TimeoutExpired { stdout, .. }) => stdout == b"first\n",
            other => panic!("expected TimeoutExpired, got {other:?}"),
        }
    }));
    File::create(&gate).expect("open the gate");
    // A blocking read waits for the child; a non-blocking one would fail
    // with WouldBlock.
    let mut rest = String::new();
    let read = BufReader::new(p.stdout().expect("stdout is a pipe")).read_line(&mut rest);
    read.expect("a blocking read");
    assert_eq!(rest, "second\n");
    assert_eq!(p.wait().expect("wait"), 0);
}
