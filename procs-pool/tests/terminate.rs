//! `terminate` against workers that ignore SIGTERM: they get one grace
//! period together, not one each, and are then killed and reaped. (A test
//! binary of its own, so that its timing is not shared with other tests.)

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, Signal, signal};
use procs_pool::{Error, Pool};

const WORKERS: usize = 6;

/// The initializer: this worker ignores SIGTERM from now on.
fn ignore_sigterm(_: ()) {
    // SAFETY: SIG_IGN installs no handler code, so nothing can run in a
    // signal context; the worker is single-threaded here.
    unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) }.expect("signal(SIGTERM, SIG_IGN)");
}

/// Writes this worker's pid to `path`, then works for a minute.
fn report_pid_then_sleep(path: String) -> u64 {
    std::fs::write(&path, std::process::id().to_string()).expect("write the pid");
    std::thread::sleep(Duration::from_secs(60));
    0
}

fn wait_for_pid(path: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && let Ok(pid) = s.trim().parse()
        {
            let _ = std::fs::remove_file(path);
            return pid;
        }
        assert!(Instant::now() < deadline, "a task never reported its pid");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn gone(pid: i32) -> bool {
    // ESRCH: no such process, not even a zombie.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH)
}

#[test]
fn terminate_gives_workers_that_ignore_sigterm_one_grace_together() {
    let pool = Pool::builder()
        .processes(WORKERS)
        .initializer(ignore_sigterm, ())
        .build()
        .unwrap();
    let paths: Vec<String> = (0..WORKERS)
        .map(|i| {
            std::env::temp_dir()
                .join(format!("procs-pool-term-{}-{i}", std::process::id()))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let long: Vec<_> = paths
        .iter()
        .map(|p| pool.apply_async(report_pid_then_sleep, p.clone()).unwrap())
        .collect();
    // Every worker ran its initializer and is inside its long task.
    let running: HashSet<i32> = paths.iter().map(|p| wait_for_pid(p)).collect();
    let pids: HashSet<i32> = pool.pids().into_iter().collect();
    assert_eq!(running, pids, "one long task in each worker");
    assert_eq!(pids.len(), WORKERS);

    let start = Instant::now();
    pool.terminate();
    let took = start.elapsed();
    // One 200 ms grace, then SIGKILL: well under a second. A grace given
    // to one worker after another takes 6 x 200 ms = 1.2 s at least.
    assert!(
        took < Duration::from_secs(1),
        "terminate took {took:?} for {WORKERS} workers that ignore SIGTERM"
    );
    for r in long {
        assert!(matches!(
            r.get_timeout(Duration::from_secs(10)),
            Err(Error::Terminated)
        ));
    }
    for pid in pids {
        assert!(gone(pid), "worker {pid} still exists (or is a zombie)");
    }
    pool.join().unwrap();
}
