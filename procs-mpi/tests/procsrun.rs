//! The procsrun launcher on real rank processes: this test binary is also
//! the rank program (`rank_main` does nothing unless procsrun started it).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use procs_mpi::{Communicator, CommunicatorExt, Error, RankEnd};

const MODE: &str = "PROCS_MPI_TEST_RANK";

/// The rank program. Run by `cargo test`, it returns at once.
#[test]
fn rank_main() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let world = procs_mpi::init().expect("procsrun's environment");
    let (me, size) = (world.rank(), world.size());
    assert_eq!(std::env::var("PROCS_RANK").unwrap(), me.to_string());
    assert_eq!(std::env::var("PROCS_SIZE").unwrap(), size.to_string());
    match mode.as_str() {
        "hello" => {
            // A ring of tokens, so that the ranks really talk.
            let token: u64 = if me == 0 {
                world.send(&1u64, 1 % size, 0).unwrap();
                world.recv((size - 1) % size, 0).unwrap()
            } else {
                let t: u64 = world.recv(me - 1, 0).unwrap();
                world.send(&(t + 1), (me + 1) % size, 0).unwrap();
                t
            };
            println!("MARK hello from {me} of {size} token {token}");
        }
        "stdin" => {
            if me == 0 {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).unwrap();
                println!("MARK rank 0 read {}", line.trim());
            } else {
                let mut rest = Vec::new();
                std::io::stdin().read_to_end(&mut rest).unwrap();
                println!("MARK rank {me} read {} bytes", rest.len());
            }
        }
        "exit3" | "kill9" => {
            if me == 1 {
                if mode == "exit3" {
                    std::process::exit(3);
                }
                // SAFETY: raising a signal at ourselves.
                unsafe { libc::raise(libc::SIGKILL) };
            }
            let e = world.recv::<u64>(1, 0).unwrap_err();
            println!("MARK rank {me} saw: {e}");
        }
        "wait" => {
            println!("MARK started {me} pid {}", std::process::id());
            std::io::stdout().flush().unwrap();
            // A rank that computes, for the timeout and the signals to stop.
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        other => panic!("unknown mode {other}"),
    }
    std::io::stdout().flush().unwrap();
}

fn procsrun(args: &[&str], mode: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_procsrun"));
    cmd.args(args)
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "rank_main", "--nocapture", "--test-threads=1"])
        .env(MODE, mode);
    cmd
}

fn run(args: &[&str], mode: &str) -> Output {
    procsrun(args, mode).stdin(Stdio::null()).output().unwrap()
}

/// The lines a rank printed (from `MARK` on: the test harness writes its
/// own words before them), with what procsrun put before each.
fn marks(out: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| {
            let at = l.find("MARK")?;
            let prefix = if l.starts_with('[') {
                l.split_once(' ').map_or("", |p| p.0)
            } else {
                ""
            };
            Some(format!(
                "{prefix}{}{}",
                if prefix.is_empty() { "" } else { " " },
                &l[at..]
            ))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_rank_runs_and_the_job_exits_0() {
    let out = run(&["-n", "4"], "hello");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = marks(&out.stdout);
    assert_eq!(m.len(), 4, "{m:?}");
    assert!(m[0].contains("MARK hello from 0 of 4 token 4"), "{m:?}");
    for (r, line) in m.iter().enumerate().skip(1) {
        assert!(
            line.contains(&format!("MARK hello from {r} of 4 token {r}")),
            "{m:?}"
        );
    }
}

#[test]
fn prefix_marks_each_line_with_its_rank() {
    let out = run(&["-n", "3", "--prefix"], "hello");
    assert_eq!(out.status.code(), Some(0));
    let m = marks(&out.stdout);
    assert_eq!(m.len(), 3, "{m:?}");
    for (r, line) in m.iter().enumerate() {
        assert!(
            line.starts_with(&format!("[{r}] MARK hello from {r} of 3")),
            "{m:?}"
        );
    }
}

#[test]
fn stdin_goes_to_rank_0_only() {
    let mut child = procsrun(&["-n", "2"], "stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"forty-two\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let m = marks(&out.stdout);
    assert_eq!(
        m,
        ["MARK rank 0 read forty-two", "MARK rank 1 read 0 bytes"]
    );
}

#[test]
fn a_rank_that_exits_3_stops_the_job_with_status_3() {
    let out = run(&["-n", "3"], "exit3");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("procsrun: rank 1 (pid") && err.contains("exited with code 3"),
        "{err}"
    );
}

#[test]
fn a_rank_killed_by_signal_9_stops_the_job_with_status_137() {
    let out = run(&["-n", "2"], "kill9");
    assert_eq!(out.status.code(), Some(128 + 9));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rank 1 (pid") && err.contains("killed by signal 9 (SIGKILL)"),
        "{err}"
    );
}

/// Starts a job of `n` "wait" ranks with --prefix and returns it once every
/// rank said it started, with their pids.
fn started(
    n: usize,
    extra: &[&str],
) -> (
    std::process::Child,
    Vec<i32>,
    BufReader<std::process::ChildStdout>,
) {
    let mut args = vec!["-n".to_string(), n.to_string(), "--prefix".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = procsrun(&args, "wait")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut pids = Vec::new();
    let mut line = String::new();
    while pids.len() < n {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "procsrun ended early"
        );
        if let Some(p) = line.split(" pid ").nth(1) {
            pids.push(p.trim().parse().unwrap());
        }
    }
    (child, pids, out)
}

fn gone(pid: i32) -> bool {
    // The ranks are procsrun's children: once it exits they are reaped (or
    // reparented and reaped by init); a zombie or a live one is a leak.
    procs_sync::raw::liveness::start_ticks(pid).is_none()
}

#[test]
fn sigterm_stops_every_rank() {
    let (mut child, pids, _out) = started(3, &[]);
    // SAFETY: signalling our own unreaped child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    for pid in pids {
        assert!(gone(pid), "rank pid {pid} outlived procsrun");
    }
}

#[test]
fn the_timeout_stops_every_rank_with_status_124() {
    let (mut child, pids, _out) = started(2, &["--timeout", "2"]);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(124));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("timeout"), "{err}");
    for pid in pids {
        assert!(gone(pid), "rank pid {pid} outlived procsrun");
    }
}

#[test]
fn bad_usage_is_status_2_with_the_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_procsrun"))
        .args(["-n", "x", "prog"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: procsrun -n N"));
    let out = Command::new(env!("CARGO_BIN_EXE_procsrun"))
        .args(["-n", "2", "/nonexistent/program"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
}

#[test]
fn rank_end_statuses_are_what_a_shell_reports() {
    assert_eq!(RankEnd::Signaled(9).exit_status(), 137);
    assert_eq!(RankEnd::from_code(-15), RankEnd::Signaled(15));
    assert!(matches!(
        Error::RankDied {
            rank: 1,
            how: RankEnd::Exited(3)
        }
        .to_string()
        .as_str(),
        "rank 1 exited with code 3"
    ));
}
