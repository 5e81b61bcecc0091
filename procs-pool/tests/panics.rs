//! Workers forked while another thread of the pool's process is panicking
//! run their tasks. (A test binary of its own: it sets the process's panic
//! hook.)

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use procs_pool::{Error, Pool};

fn square(x: u64) -> u64 {
    x * x
}

fn panics(_: u64) -> u64 {
    panic!("in a task")
}

#[test]
fn workers_forked_while_another_thread_panics_run_their_tasks() {
    // A panic hook that takes its time, and a thread that panics over and
    // over: a fork nearly always finds a panic under way, its hook running
    // under the hook's lock.
    std::panic::set_hook(Box::new(|_| std::thread::sleep(Duration::from_millis(20))));
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let panicker = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let _ = catch_unwind(AssertUnwindSafe(|| panic!("noise")));
        }
    });
    for round in 0..4 {
        let pool = Pool::new(2).unwrap();
        let results: Vec<_> = (0..4)
            .map(|x| pool.apply_async(square, x).unwrap())
            .collect();
        for (x, r) in (0..4).zip(results) {
            assert_eq!(
                r.get_timeout(Duration::from_secs(10)).ok(),
                Some(x * x),
                "round {round}: a worker never ran its task"
            );
        }
        // A task's panic still reports where it was.
        match pool
            .apply_async(panics, 0)
            .unwrap()
            .get_timeout(Duration::from_secs(10))
        {
            Err(Error::TaskPanicked {
                message, location, ..
            }) => {
                assert_eq!(message, "in a task");
                assert!(location.is_some_and(|l| l.contains("panics.rs")));
            }
            other => panic!("{other:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    panicker.join().unwrap();
}
