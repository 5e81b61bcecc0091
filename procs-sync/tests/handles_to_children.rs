//! Handles as the argument of a child of every start method: a spawned
//! child (a fresh execution, the descriptors inherited through the exec),
//! a forkserver child (the descriptors sent to the server) and a forked
//! one, given the same lock, event, barrier, value and array, work on them
//! together.

use std::time::Duration;

use procs_core::{Process, StartMethod};
use procs_sync::{Array, Barrier, Event, Lock, Value};

procs_core::init_before_main!();

const LONG: Duration = Duration::from_secs(30);

type Kit = (Lock, Event, Barrier, Value<u64>, Array<i32>, usize);

/// Each child: meets the others at the barrier, adds 1,000 to the value
/// under its lock and negates its own cell of the array; the last one
/// sets the event. Returns what the lock saw: whether it was free.
fn work((lock, done, barrier, value, cells, me): Kit) -> bool {
    let free = lock.try_acquire().is_ok();
    if free {
        lock.release().unwrap();
    }
    barrier.wait_timeout(LONG).unwrap();
    for _ in 0..1000 {
        *value.lock().unwrap() += 1;
    }
    cells.lock().unwrap()[me] *= -1;
    if value.get() == 3000 {
        done.set();
    }
    free
}

#[test]
fn children_of_every_method_share_the_handles_of_their_argument() {
    let kit = (
        Lock::new().unwrap(),
        Event::new().unwrap(),
        Barrier::new(4).unwrap(),
        Value::new(0u64).unwrap(),
        Array::from_slice(&[1, 2, 3]).unwrap(),
    );
    let held = kit.0.lock().unwrap();
    let methods = [
        StartMethod::Spawn,
        StartMethod::Forkserver,
        StartMethod::Fork,
    ];
    let children: Vec<_> = methods
        .iter()
        .enumerate()
        .map(|(i, &m)| {
            let arg: Kit = (
                kit.0.clone(),
                kit.1.clone(),
                kit.2.clone(),
                kit.3.clone(),
                kit.4.clone(),
                i,
            );
            Process::builder()
                .start_method(m)
                .spawn_fn(work, arg)
                .unwrap()
        })
        .collect();
    // The children saw the lock this process holds, then meet it here.
    kit.2.wait_timeout(LONG).unwrap();
    drop(held);
    assert!(kit.1.wait_timeout(LONG), "the last child sets the event");
    for (c, m) in children.into_iter().zip(methods) {
        assert!(!c.join().unwrap(), "{m:?}: the held lock was free there");
    }
    assert_eq!(kit.3.get(), 3000);
    assert_eq!(kit.4.to_vec(), [-1, -2, -3]);
}

fn count(_: (Lock, Value<u32>)) {}

#[test]
fn handing_handles_to_children_leaves_no_descriptor_behind() {
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    // In a child of our own: the other test opens descriptors at once.
    let h = procs_core::spawn(move || {
        let kit = (Lock::new().unwrap(), Value::new(0u32).unwrap());
        let warm = |m| {
            Process::builder()
                .start_method(m)
                .spawn_fn(count, (kit.0.clone(), kit.1.clone()))
                .unwrap()
                .join()
                .unwrap()
        };
        // The forkserver's socket stays open: started before counting.
        warm(StartMethod::Forkserver);
        let before = fds();
        for _ in 0..10 {
            for m in [StartMethod::Spawn, StartMethod::Forkserver] {
                warm(m);
            }
        }
        (before, fds())
    })
    .unwrap();
    let (before, after) = h.join().unwrap();
    assert_eq!(before, after, "descriptors left open");
}

fn takes_a_lock(_: Lock) {}

#[test]
fn a_primitive_of_an_arena_does_not_travel_on_its_own() {
    let arena = procs_sync::Arena::new(2).unwrap();
    let lock = arena.lock().unwrap();
    for m in [StartMethod::Spawn, StartMethod::Forkserver] {
        match Process::builder()
            .start_method(m)
            .spawn_fn(takes_a_lock, lock.clone())
        {
            Err(procs_core::Error::Encode(why)) => assert!(why.contains("Arena"), "{why}"),
            other => panic!("{m:?}: unexpected {other:?}"),
        }
    }
    // Forked, it goes with the child as any handle does.
    let h = Process::builder()
        .start_method(StartMethod::Fork)
        .spawn_fn(takes_a_lock, lock)
        .unwrap();
    h.join().unwrap();
    assert_eq!(arena.in_use(), 0);
}
