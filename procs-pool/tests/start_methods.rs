//! Pools whose workers start by the spawn and forkserver methods: fresh
//! executions of this test binary (the hook below makes each run its
//! worker), given their pipes and the reply queue as handles. The same
//! tasks, results, panics, deaths and initializers as a forked pool's.

use std::collections::HashSet;

use procs_core::StartMethod;
use procs_pool::{Error, Pool};

procs_core::init_before_main!();

const METHODS: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::Forkserver];

fn square(x: u64) -> u64 {
    x * x
}

fn fails(x: u64) -> u64 {
    if x == 3 {
        panic!("no luck with {x}");
    }
    x
}

fn killed_on_zero(x: u64) -> u64 {
    if x == 0 {
        // SAFETY: kill(2) on our own pid with a valid signal number.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    x * 10
}

fn whoami(_: ()) -> (String, i32, Option<i32>) {
    let me = procs_core::current_process();
    let parent = procs_core::parent_process().map(|p| p.pid);
    (me.name, me.pid, parent)
}

fn set_marker(v: String) {
    // SAFETY: the initializer runs first in the worker, alone.
    unsafe { std::env::set_var("POOL_MARKER", v) };
}

fn marker(_: ()) -> String {
    std::env::var("POOL_MARKER").unwrap_or_default()
}

fn pool(m: StartMethod, n: usize) -> Pool {
    Pool::builder()
        .processes(n)
        .start_method(m)
        .build()
        .unwrap()
}

#[test]
fn map_apply_and_imap_run_in_spawned_and_served_workers() {
    for m in METHODS {
        let p = pool(m, 2);
        assert_eq!(
            p.map(square, 0..200).unwrap(),
            (0..200u64).map(|x| x * x).collect::<Vec<_>>()
        );
        assert_eq!(p.apply(square, 12).unwrap(), 144);
        let mut got: Vec<u64> = p
            .imap_unordered(square, 0..50)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..50u64).map(|x| x * x).collect::<Vec<_>>());
        // The workers are this program afresh (or forks of its server),
        // named as Python names them, and know the pool's process.
        let (name, pid, parent) = p.apply(whoami, ()).unwrap();
        assert!(name.starts_with("SpawnPoolWorker-"), "{m:?}: {name}");
        assert_ne!(pid, std::process::id() as i32);
        assert_eq!(parent, Some(std::process::id() as i32));
        p.close();
        p.join().unwrap();
    }
}

#[test]
fn a_panic_fails_its_task_and_a_killed_worker_only_its_own() {
    for m in METHODS {
        let p = pool(m, 2);
        match p.apply(fails, 3) {
            Err(Error::TaskPanicked { message, .. }) => {
                assert!(message.contains("no luck with 3"), "{m:?}: {message}")
            }
            other => panic!("{m:?}: {other:?}"),
        }
        assert_eq!(p.apply(fails, 4).unwrap(), 4);
        let before: HashSet<i32> = p.pids().into_iter().collect();
        let results: Vec<_> = (0..40u64)
            .map(|x| p.apply_async(killed_on_zero, (x + 20) % 40).unwrap())
            .collect();
        let mut died = 0;
        for (i, r) in results.into_iter().enumerate() {
            let x = (i as u64 + 20) % 40;
            match r.get() {
                Ok(v) => assert_eq!(v, x * 10),
                Err(Error::WorkerDied { exitcode, .. }) if x == 0 => {
                    assert_eq!(exitcode, -libc::SIGKILL);
                    died += 1;
                }
                Err(e) => panic!("{m:?}: task {x}: {e}"),
            }
        }
        assert_eq!(died, 1);
        // The dead worker was replaced by a new one of the same method.
        assert_eq!(p.apply(square, 5).unwrap(), 25);
        let after: HashSet<i32> = p.pids().into_iter().collect();
        assert_ne!(before, after, "{m:?}: a worker was replaced");
    }
}

#[test]
fn an_initializer_runs_in_each_spawned_worker() {
    for m in METHODS {
        let p = Pool::builder()
            .processes(2)
            .start_method(m)
            .initializer(set_marker, format!("{m:?}"))
            .build()
            .unwrap();
        for _ in 0..10 {
            assert_eq!(p.apply(marker, ()).unwrap(), format!("{m:?}"));
        }
        // Closures that capture nothing are plain functions of the
        // program too.
        assert_eq!(p.map(|x: u32| x + 1, 0..5).unwrap(), vec![1, 2, 3, 4, 5]);
        drop(p);
    }
}

#[test]
fn a_pool_takes_the_programs_default_start_method() {
    // In a process of our own: the default is process-wide.
    let h = procs_core::spawn(|| {
        procs_core::set_start_method(StartMethod::Forkserver, false).unwrap();
        let p = Pool::new(1).unwrap();
        let name = p.apply(whoami, ()).unwrap().0;
        (name, p.apply(square, 9).unwrap())
    })
    .unwrap();
    let (name, nine) = h.join().unwrap();
    assert!(name.starts_with("SpawnPoolWorker-"), "{name}");
    assert_eq!(nine, 81);
}
