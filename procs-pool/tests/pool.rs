//! The pool with real worker processes: results over 100,000 items, chunk
//! sizes, worker replacement, panics, workers killed mid-task, timeouts,
//! misuse, and what is left behind.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use procs_pool::{Callbacks, Error, MapOptions, Pool};

fn square(x: u64) -> u64 {
    x * x
}

fn add3(a: u64, b: u64, c: u64) -> u64 {
    a + 2 * b + 3 * c
}

fn getpid(_: u64) -> i32 {
    std::process::id() as i32
}

fn panics_on_13(x: u64) -> u64 {
    if x == 13 {
        panic!("thirteen is unlucky");
    }
    x + 1
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Kills its own worker with a real SIGKILL when asked to (`x == 0`).
fn killed_on_zero(x: u64) -> u64 {
    if x == 0 {
        // SAFETY: kill(2) on our own pid with a valid signal number.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    x * 10
}

fn aborts(_: u64) -> u64 {
    std::process::abort()
}

fn exits_3(_: u64) -> u64 {
    std::process::exit(3)
}

/// Writes this worker's pid to `path`, then works for a minute.
fn report_pid_then_sleep(path: String) -> u64 {
    std::fs::write(&path, std::process::id().to_string()).unwrap();
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
        assert!(Instant::now() < deadline, "the task never reported its pid");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn temp_path(tag: &str) -> String {
    std::env::temp_dir()
        .join(format!("procs-pool-{tag}-{}", std::process::id()))
        .to_string_lossy()
        .into_owned()
}

fn gone(pid: i32) -> bool {
    // ESRCH: no such process, not even a zombie.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH)
}

const N: u64 = 100_000;

fn squares() -> Vec<u64> {
    (0..N).map(|x| x * x).collect()
}

#[test]
fn map_over_100k_items_in_order() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(square, 0..N).unwrap(), squares());
    // Chunk sizes 1 and larger than the input.
    assert_eq!(pool.map_with_chunksize(square, 0..N, 1).unwrap(), squares());
    assert_eq!(
        pool.map_with_chunksize(square, 0..N, 1_000_000).unwrap(),
        squares()
    );
    assert_eq!(pool.map(square, Vec::new()).unwrap(), Vec::<u64>::new());
}

#[test]
fn imap_and_imap_unordered_over_100k_items() {
    let pool = Pool::new(2).unwrap();
    let got: Vec<u64> = pool
        .imap(square, 0..N)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, squares());
    let got: Vec<u64> = pool
        .imap_with_chunksize(square, 0..N, 1000)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, squares());
    for chunksize in [1, 7, 100_000] {
        let mut got: Vec<u64> = pool
            .imap_unordered_with_chunksize(square, 0..N, chunksize)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        got.sort_unstable();
        assert_eq!(got, squares(), "chunksize {chunksize}");
    }
}

#[test]
fn starmap_over_100k_tuples() {
    let pool = Pool::new(2).unwrap();
    let items: Vec<(u64, u64, u64)> = (0..N).map(|i| (i, i + 1, i + 2)).collect();
    let want: Vec<u64> = items.iter().map(|&(a, b, c)| add3(a, b, c)).collect();
    assert_eq!(pool.starmap(add3, items.clone()).unwrap(), want);
    assert_eq!(
        pool.starmap_with_chunksize(add3, items.clone(), 1).unwrap(),
        want
    );
    let r = pool
        .starmap_async(|a: u64, b: u64| a * b, [(2, 3), (4, 5)])
        .unwrap();
    assert_eq!(r.get().unwrap(), vec![6, 20]);
}

#[test]
fn imap_is_lazy_and_can_stop_early() {
    let pool = Pool::new(2).unwrap();
    // An endless input: only what the consumer asks for (and a bounded
    // window ahead) is ever taken from it.
    let taken = Arc::new(AtomicU32::new(0));
    let counter = taken.clone();
    let input = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let first: Vec<u64> = pool
        .imap(square, input)
        .unwrap()
        .take(10)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, (0..10).map(|x| x * x).collect::<Vec<_>>());
    let n = taken.load(Ordering::Relaxed);
    assert!(n < 100, "{n} items taken from the input for 10 results");
    // The pool goes on.
    assert_eq!(pool.apply(square, 9).unwrap(), 81);
}

#[test]
fn imap_started_before_close_runs_to_its_end() {
    let pool = Pool::new(2).unwrap();
    let it = pool.imap(square, 0..1000).unwrap();
    pool.close();
    assert!(matches!(pool.apply(square, 1), Err(Error::Closed)));
    let got: Vec<u64> = it.map(Result::unwrap).collect();
    assert_eq!(got, (0..1000).map(|x| x * x).collect::<Vec<_>>());
    pool.join().unwrap();
}

#[test]
fn maxtasksperchild_replaces_workers() {
    let pool = Pool::builder()
        .processes(2)
        .maxtasksperchild(3)
        .build()
        .unwrap();
    let first = pool.pids();
    let pids = pool.map_with_chunksize(getpid, 0..30, 1).unwrap();
    let distinct: HashSet<i32> = pids.iter().copied().collect();
    // 30 tasks, 3 per worker: at least 10 workers served them.
    assert!(distinct.len() >= 10, "{} distinct workers", distinct.len());
    for pid in &distinct {
        let n = pids.iter().filter(|p| *p == pid).count();
        assert!(n <= 3, "worker {pid} ran {n} tasks");
    }
    let now: HashSet<i32> = pool.pids().into_iter().collect();
    assert_eq!(now.len(), 2);
    assert!(
        first.iter().all(|p| !now.contains(p)),
        "the first workers were replaced"
    );
    pool.close();
    pool.join().unwrap();
    for pid in distinct {
        assert!(gone(pid), "worker {pid} was not reaped");
    }
}

static INIT_CALLS: AtomicU32 = AtomicU32::new(0);
static GREETING: Mutex<String> = Mutex::new(String::new());

fn init(greeting: String) {
    INIT_CALLS.fetch_add(1, Ordering::SeqCst);
    *GREETING.lock().unwrap() = greeting;
}

fn report_init(_: u64) -> (i32, u32, String) {
    (
        std::process::id() as i32,
        INIT_CALLS.load(Ordering::SeqCst),
        GREETING.lock().unwrap().clone(),
    )
}

#[test]
fn initializer_runs_once_per_worker_before_its_tasks() {
    let pool = Pool::builder()
        .processes(2)
        .initializer(init, "hello".to_string())
        .maxtasksperchild(50)
        .build()
        .unwrap();
    let got = pool.map_with_chunksize(report_init, 0..500, 1).unwrap();
    let workers: HashSet<i32> = got.iter().map(|r| r.0).collect();
    assert!(workers.len() >= 10);
    for (pid, calls, greeting) in got {
        assert_eq!(calls, 1, "worker {pid} ran the initializer {calls} times");
        assert_eq!(greeting, "hello");
    }
    // Not in this process.
    assert_eq!(INIT_CALLS.load(Ordering::SeqCst), 0);
}

fn init_panics(_: ()) {
    panic!("no database");
}

#[test]
fn a_panicking_initializer_fails_tasks_instead_of_hanging() {
    let pool = Pool::builder()
        .processes(2)
        .initializer(init_panics, ())
        .build()
        .unwrap();
    match pool.map(square, 0..100) {
        Err(Error::InitializerFailed { message, .. }) => assert_eq!(message, "no database"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        pool.apply(square, 1),
        Err(Error::InitializerFailed { .. })
    ));
    pool.close();
    pool.join().unwrap();
}

#[test]
fn terminate_stops_long_tasks_at_once() {
    let pool = Pool::new(2).unwrap();
    let long: Vec<_> = (0..4)
        .map(|_| pool.apply_async(sleep_ms, 60_000).unwrap())
        .collect();
    let pids = pool.pids();
    let start = Instant::now();
    pool.terminate();
    assert!(start.elapsed() < Duration::from_secs(10));
    for r in long {
        assert!(matches!(r.get(), Err(Error::Terminated)));
    }
    for pid in pids {
        assert!(gone(pid), "worker {pid} still exists");
    }
    assert!(matches!(pool.apply(square, 2), Err(Error::Terminated)));
    pool.join().unwrap();
}

#[test]
fn a_panicking_task_among_good_ones() {
    let pool = Pool::new(2).unwrap();
    match pool.map_with_chunksize(panics_on_13, 0..100, 1) {
        Err(Error::TaskPanicked {
            message, location, ..
        }) => {
            assert_eq!(message, "thirteen is unlucky");
            assert!(location.unwrap().contains("pool.rs"));
        }
        other => panic!("{other:?}"),
    }
    let results: Vec<_> = (0..100)
        .map(|x| pool.apply_async(panics_on_13, x).unwrap())
        .collect();
    for (x, r) in results.into_iter().enumerate() {
        match r.get() {
            Ok(v) => assert_eq!(v, x as u64 + 1),
            Err(Error::TaskPanicked { message, .. }) if x == 13 => {
                assert_eq!(message, "thirteen is unlucky")
            }
            other => panic!("task {x}: {other:?}"),
        }
    }
    // imap yields the error at its place and goes on.
    let got: Vec<_> = pool.imap(panics_on_13, 10..20).unwrap().collect();
    for (i, r) in got.iter().enumerate() {
        if i == 3 {
            assert!(matches!(r, Err(Error::TaskPanicked { .. })));
        } else {
            assert_eq!(*r.as_ref().unwrap(), i as u64 + 11);
        }
    }
}

#[test]
fn a_worker_killed_mid_task_fails_only_that_task() {
    let pool = Pool::new(2).unwrap();
    let before: HashSet<i32> = pool.pids().into_iter().collect();
    let results: Vec<_> = (0..200u64)
        .map(|x| pool.apply_async(killed_on_zero, (x + 150) % 200).unwrap())
        .collect();
    let mut died = None;
    for (i, r) in results.into_iter().enumerate() {
        let x = (i as u64 + 150) % 200;
        match r.get() {
            Ok(v) => assert_eq!(v, x * 10),
            Err(e @ Error::WorkerDied { pid, exitcode }) if x == 0 => {
                assert_eq!(exitcode, -9);
                assert_eq!(e.signal(), Some(9));
                assert!(e.to_string().contains("SIGKILL"), "{e}");
                assert!(before.contains(&pid));
                died = Some(pid);
            }
            other => panic!("task {x}: {other:?}"),
        }
    }
    let died = died.unwrap();
    // A new worker took its place, and the pool serves new tasks.
    let after: HashSet<i32> = pool.pids().into_iter().collect();
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&died));
    assert!(gone(died));
    assert_eq!(
        pool.map(square, 0..1000).unwrap(),
        (0..1000).map(|x| x * x).collect::<Vec<_>>()
    );
}

#[test]
fn a_worker_killed_from_outside_mid_task() {
    let pool = Pool::new(2).unwrap();
    let path = temp_path("outside");
    let victim = pool
        .apply_async(report_pid_then_sleep, path.clone())
        .unwrap();
    let pid = wait_for_pid(&path);
    let others: Vec<_> = (0..500)
        .map(|x| pool.apply_async(square, x).unwrap())
        .collect();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    match victim.get() {
        Err(Error::WorkerDied { pid: p, exitcode }) => {
            assert_eq!(p, pid);
            assert_eq!(exitcode, -9);
        }
        other => panic!("{other:?}"),
    }
    for (x, r) in others.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), (x * x) as u64);
    }
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
}

#[test]
fn aborts_and_exits_inside_tasks() {
    let pool = Pool::new(2).unwrap();
    match pool.apply(aborts, 0) {
        Err(e @ Error::WorkerDied { exitcode: -6, .. }) => {
            assert!(e.to_string().contains("SIGABRT"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    match pool.apply(exits_3, 0) {
        Err(e @ Error::WorkerDied { exitcode: 3, .. }) => {
            assert!(e.to_string().contains("exited with code 3"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.map(square, 0..10).unwrap().len(), 10);
}

#[test]
fn apply_async_timeouts_leave_the_result() {
    let pool = Pool::new(1).unwrap();
    let r = pool.apply_async(sleep_ms, 300).unwrap();
    assert!(matches!(
        r.get_timeout(Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    assert!(!r.ready());
    assert!(matches!(r.successful(), Err(Error::NotReady)));
    assert!(!r.wait_timeout(Duration::from_millis(1)));
    assert_eq!(r.get_timeout(Duration::from_secs(30)).unwrap(), 300);
    assert!(matches!(
        r.get_timeout(Duration::from_secs(1)),
        Err(Error::AlreadyTaken)
    ));
    assert!(r.successful().unwrap());
    // An error is returned as often as asked.
    let e = pool.apply_async(panics_on_13, 13).unwrap();
    e.wait();
    assert!(!e.successful().unwrap());
    for _ in 0..2 {
        assert!(matches!(
            e.get_timeout(Duration::from_secs(1)),
            Err(Error::TaskPanicked { .. })
        ));
    }
}

#[test]
fn misuse_gets_clear_errors() {
    assert!(matches!(Pool::new(0), Err(Error::Invalid(_))));
    assert!(matches!(
        Pool::builder().maxtasksperchild(0).build(),
        Err(Error::Invalid(_))
    ));
    let pool = Pool::new(1).unwrap();
    assert!(matches!(
        pool.map_with_chunksize(square, 0..3, 0),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(pool.join(), Err(Error::StillRunning)));
    // An iterator that tells a length it does not keep to fails the map,
    // never hangs it.
    struct Liar(u64, u64);
    impl Iterator for Liar {
        type Item = u64;
        fn next(&mut self) -> Option<u64> {
            (self.0 < self.1).then(|| {
                self.0 += 1;
                self.0
            })
        }
        fn size_hint(&self) -> (usize, Option<usize>) {
            (10, Some(10))
        }
    }
    for yielded in [3, 7, 12] {
        assert!(matches!(
            pool.map_with_chunksize(square, Liar(0, yielded), 4),
            Err(Error::Invalid(_))
        ));
    }
    assert_eq!(pool.map(square, Liar(0, 10)).unwrap().len(), 10);
    pool.close();
    assert!(matches!(pool.apply(square, 1), Err(Error::Closed)));
    assert!(matches!(pool.map(square, 0..3), Err(Error::Closed)));
    assert!(matches!(pool.imap(square, 0..3), Err(Error::Closed)));
    pool.join().unwrap();
    assert_eq!(
        Error::StillRunning.to_string(),
        "join needs close() or terminate() first: the pool is still running"
    );
}

#[test]
fn results_of_a_terminated_pool_say_so() {
    let pool = Pool::new(1).unwrap();
    let r = pool.apply_async(sleep_ms, 60_000).unwrap();
    let queued = pool.map_async(square, 0..100).unwrap();
    drop(pool);
    assert!(matches!(r.get(), Err(Error::Terminated)));
    assert!(matches!(queued.get(), Err(Error::Terminated)));
}

#[test]
fn callbacks_and_error_callbacks() {
    let pool = Pool::new(2).unwrap();
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    let r = pool
        .map_async_with(
            square,
            0..100,
            MapOptions::new()
                .chunksize(7)
                .callback(move |v: &Vec<u64>| tx.send(Ok(v.iter().sum::<u64>())).unwrap()),
        )
        .unwrap();
    assert_eq!(r.get().unwrap().len(), 100);
    assert_eq!(rx.recv().unwrap(), Ok(328_350));
    let r = pool
        .apply_async_with(
            panics_on_13,
            13,
            Callbacks::new()
                .callback(|_| unreachable!())
                .error_callback(move |e| tx2.send(Err(e.to_string())).unwrap()),
        )
        .unwrap();
    assert!(r.get().is_err());
    let msg = rx.recv().unwrap().unwrap_err();
    assert!(msg.contains("thirteen is unlucky"), "{msg}");
    // A callback that panics does not stop the pool.
    let r = pool
        .apply_async_with(square, 3, Callbacks::new().callback(|_| panic!("callback")))
        .unwrap();
    assert_eq!(r.get().unwrap(), 9);
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
}

fn echo_len(v: Vec<u8>) -> Vec<u8> {
    let mut out = v;
    out.reverse();
    out
}

#[test]
fn arguments_and_results_larger_than_any_pipe() {
    let pool = Pool::new(2).unwrap();
    // 8 MiB each way: larger than a worker's task pipe and than the reply
    // queue takes.
    let big: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut want = big.clone();
    want.reverse();
    let rs: Vec<_> = (0..3)
        .map(|_| pool.apply_async(echo_len, big.clone()).unwrap())
        .collect();
    for r in rs {
        assert!(r.get().unwrap() == want);
    }
    // Chunks of a map larger than a pipe.
    let items: Vec<Vec<u8>> = (0..8).map(|i| vec![i as u8; 1024 * 1024]).collect();
    let got = pool.map_with_chunksize(echo_len, items.clone(), 4).unwrap();
    assert!(got == items);
}

#[test]
fn closed_pools_finish_their_work_then_join() {
    let pool = Pool::new(2).unwrap();
    let pids = pool.pids();
    let r = pool.map_async(sleep_ms, [50, 50, 50, 50]).unwrap();
    pool.close();
    pool.join().unwrap();
    assert_eq!(r.get().unwrap(), vec![50; 4]);
    for pid in pids {
        assert!(gone(pid));
    }
}

#[test]
fn async_maps_become_ready_without_a_get() {
    let pool = Pool::new(2).unwrap();
    // Its chunks are decoded by whoever looks at the result: `ready` and
    // `successful` look, so a map nobody gets still ends.
    let r = pool
        .map_async_with(square, 0..N, MapOptions::new().chunksize(100))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !r.ready() {
        assert!(Instant::now() < deadline, "the map never became ready");
        std::thread::yield_now();
    }
    assert!(r.successful().unwrap());
    assert_eq!(r.get().unwrap(), squares());
    // A map whose result is dropped unread does not hold the pool up.
    drop(pool.map_async(square, 0..N).unwrap());
    assert_eq!(pool.map(square, 0..N).unwrap(), squares());
}

#[test]
fn a_map_waits_its_turn_behind_another_job() {
    let pool = Pool::new(2).unwrap();
    // Slow tasks hold both workers; a map submitted meanwhile encodes its
    // chunks as the workers free up, and both end with every value.
    let slow = pool
        .map_async_with(sleep_ms, vec![20; 8], MapOptions::new().chunksize(1))
        .unwrap();
    let quick = pool.map_with_chunksize(square, 0..10_000, 10).unwrap();
    assert_eq!(quick, (0..10_000).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(slow.get().unwrap(), vec![20; 8]);
}

/// Waits until the file `gate` exists (for at most 30 s), unless `gate` is
/// empty; then returns `x`.
fn gated((gate, x): (String, u64)) -> u64 {
    if !gate.is_empty() {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::path::Path::new(&gate).exists() {
            assert!(Instant::now() < deadline, "the gate never opened");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    x
}

/// Item 0 waits for the gate `gate`; items 1 to n - 1 do not.
fn gated_items(gate: &str, n: u64) -> Vec<(String, u64)> {
    (0..n)
        .map(|x| {
            (
                if x == 0 {
                    gate.to_owned()
                } else {
                    String::new()
                },
                x,
            )
        })
        .collect()
}

#[test]
fn imap_next_timeout_times_out_then_yields_in_order() {
    let pool = Pool::new(2).unwrap();
    let gate = temp_path("imap-gate");
    let _ = std::fs::remove_file(&gate);
    let mut it = pool.imap(gated, gated_items(&gate, 6)).unwrap();
    // Item 0 cannot end while the gate is closed, and an ordered imap
    // yields nothing before it, however many of the others are done.
    for _ in 0..3 {
        assert!(matches!(
            it.next_timeout(Duration::from_millis(20)),
            Some(Err(Error::Timeout))
        ));
    }
    std::fs::write(&gate, b"open").unwrap();
    // The iterator goes on where it was: nothing was lost or skipped.
    let mut got = Vec::new();
    while let Some(r) = it.next_timeout(Duration::from_secs(30)) {
        got.push(r.unwrap());
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
    assert!(it.next_timeout(Duration::ZERO).is_none());
    assert!(it.next().is_none());
    let _ = std::fs::remove_file(&gate);
}

#[test]
fn imap_unordered_next_timeout_yields_what_came_then_the_late_item() {
    let pool = Pool::new(2).unwrap();
    let gate = temp_path("imap-unordered-gate");
    let _ = std::fs::remove_file(&gate);
    let mut it = pool.imap_unordered(gated, gated_items(&gate, 8)).unwrap();
    // Whatever comes before the gate opens is not item 0; item 0 does not
    // end before then, so a timeout comes after at most the 7 others.
    let mut before = Vec::new();
    loop {
        match it.next_timeout(Duration::from_millis(20)) {
            Some(Ok(x)) => before.push(x),
            Some(Err(Error::Timeout)) => break,
            other => panic!("before the gate opened: {other:?}"),
        }
        assert!(before.len() < 8, "{before:?} came with the gate closed");
    }
    assert!(!before.contains(&0), "{before:?}");
    std::fs::write(&gate, b"open").unwrap();
    // Plain `next` goes on after a timeout too.
    let mut after: Vec<u64> = it.by_ref().map(Result::unwrap).collect();
    assert!(after.contains(&0), "{after:?}");
    after.extend(&before);
    after.sort_unstable();
    assert_eq!(after, (0..8).collect::<Vec<_>>());
    assert!(it.next_timeout(Duration::ZERO).is_none());
    let _ = std::fs::remove_file(&gate);
}

#[test]
fn imap_next_timeout_reports_a_terminated_pool() {
    let pool = Pool::new(2).unwrap();
    let gate = temp_path("imap-term-gate");
    let _ = std::fs::remove_file(&gate);
    let mut it = pool.imap(gated, gated_items(&gate, 4)).unwrap();
    assert!(matches!(
        it.next_timeout(Duration::from_millis(20)),
        Some(Err(Error::Timeout))
    ));
    pool.terminate();
    // The gated task was stopped: its place says so, instead of timing
    // out again.
    assert!(matches!(
        it.next_timeout(Duration::from_secs(30)),
        Some(Err(Error::Terminated))
    ));
}
