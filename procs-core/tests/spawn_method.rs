//! The spawn start method: a child that is a fresh execution of this test
//! binary (the hook below makes it run its function, not the tests).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use procs_core::{Error, Process, StartMethod};

procs_core::init_before_main!();

fn square(x: u64) -> u64 {
    x * x
}

fn whoami(_: ()) -> (String, i32, Option<i32>, bool) {
    let me = procs_core::current_process();
    let parent = procs_core::parent_process().map(|p| p.pid);
    // A child of the spawned child is forked as usual.
    let grandchild = procs_core::spawn(|| 2 + 2).and_then(|h| h.join());
    (me.name, me.pid, parent, matches!(grandchild, Ok(4)))
}

fn fails(message: String) -> u8 {
    panic!("{message}")
}

fn spawned() -> procs_core::ProcessBuilder {
    Process::builder().start_method(StartMethod::Spawn)
}

#[test]
fn a_spawned_child_runs_its_function_and_returns_its_value() {
    let h = spawned().spawn_fn(square, 12).unwrap();
    assert_eq!(h.join().unwrap(), 144);
}

#[test]
fn a_spawned_child_knows_its_name_and_parent_and_may_fork() {
    let h = spawned().name("worker").spawn_fn(whoami, ()).unwrap();
    let pid = h.pid();
    let (name, child_pid, parent, forked) = h.join().unwrap();
    assert_eq!(name, "worker");
    assert_eq!(child_pid, pid);
    assert_eq!(parent, Some(std::process::id() as i32));
    assert!(forked);
}

#[test]
fn a_panic_in_a_spawned_child_comes_back_with_its_message() {
    let h = spawned().spawn_fn(fails, "no luck".to_string()).unwrap();
    match h.join() {
        Err(Error::Panicked { message, .. }) => assert_eq!(message, "no luck"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn spawn_works_from_a_parent_whose_threads_hold_locks() {
    // Eight busy threads, one holding a std Mutex for the whole spawn: a
    // forked child could inherit the lock held for ever; an exec does not.
    let held = Arc::new(Mutex::new(0u64));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let guard_thread = {
        let (held, stop) = (held.clone(), stop.clone());
        std::thread::spawn(move || {
            let _g = held.lock().unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    let busy: Vec<_> = (0..7)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = x.wrapping_add(1);
                }
                x
            })
        })
        .collect();
    let results: Vec<u64> = (0..4)
        .map(|i| spawned().spawn_fn(square, i).unwrap().join().unwrap())
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    guard_thread.join().unwrap();
    for b in busy {
        b.join().unwrap();
    }
    assert_eq!(results, [0, 1, 4, 9]);
}

#[test]
fn a_closure_asks_for_fork_and_fork_still_runs_functions() {
    let mut p = spawned().build(|| {});
    assert!(matches!(p.start(), Err(Error::SpawnNeedsFunction { .. })));
    let h = Process::builder().spawn_fn(square, 3).unwrap();
    assert_eq!(h.join().unwrap(), 9);
}

#[test]
fn a_killed_spawned_child_is_reported_not_waited_for() {
    fn sleeps(_: ()) {
        std::thread::sleep(Duration::from_secs(600));
    }
    let mut h = spawned().spawn_fn(sleeps, ()).unwrap();
    h.process_mut().kill().unwrap();
    assert!(matches!(h.join(), Err(Error::ChildDied { .. })));
}

#[test]
fn spawning_leaves_no_descriptor_and_no_zombie_behind() {
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    // Other tests of this binary run at once and open descriptors of their
    // own: count in a child of our own, forked, that spawns.
    let h = procs_core::spawn(move || {
        let before = fds();
        for i in 0..20 {
            let h = spawned().spawn_fn(square, i).unwrap();
            assert_eq!(h.join().unwrap(), i * i);
        }
        let zombies = procs_core::active_children().len();
        (before, fds(), zombies)
    })
    .unwrap();
    let (before, after, zombies) = h.join().unwrap();
    assert_eq!(before, after, "descriptors left open");
    assert_eq!(zombies, 0);
}
