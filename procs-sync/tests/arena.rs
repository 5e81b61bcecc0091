//! Primitives by the thousand: an Arena's Locks, RLocks, Semaphores and
//! Events, shared with forked children, their slots counted in every
//! process and used again.

use std::time::Duration;

use procs_core::Process;
use procs_sync::{Arena, Error, RawArray};

const LONG: Duration = Duration::from_secs(30);

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_hundred_thousand_locks_in_one_arena_are_shared_with_four_children() {
    const N: usize = 100_000;
    // Counted in a process of our own: the other tests open descriptors.
    let h = procs_core::spawn(|| {
        let before = fds();
        let arena = Arena::new(N).unwrap();
        let locks: Vec<_> = (0..N).map(|_| arena.lock().unwrap()).collect();
        let one_descriptor = fds() == before + 1;
        // Each child takes every lock once and counts under it.
        let counts = RawArray::<u32>::new(N).unwrap();
        let mut kids: Vec<Process> = (0..4)
            .map(|_| {
                let (locks, counts) = (locks.clone(), counts.clone());
                let mut p = Process::new(move || {
                    for (i, l) in locks.iter().enumerate() {
                        let _g = l.lock().unwrap();
                        counts.set(i, counts.get(i) + 1);
                    }
                });
                p.start().unwrap();
                p
            })
            .collect();
        for k in &mut kids {
            assert_eq!(k.join().unwrap(), 0);
        }
        let all_four = (0..N).all(|i| counts.get(i) == 4);
        // The children's copies were theirs: gone with them.
        let in_use = arena.in_use();
        drop(locks);
        (one_descriptor, all_four, in_use, arena.in_use())
    })
    .unwrap();
    assert_eq!(h.join().unwrap(), (true, true, N, 0));
}

#[test]
fn making_and_dropping_primitives_in_a_loop_leaks_nothing() {
    let arena = Arena::new(8).unwrap();
    for i in 0..200_000u32 {
        let l = arena.lock().unwrap();
        let e = arena.event().unwrap();
        let s = arena.semaphore(i % 3).unwrap();
        let r = arena.rlock().unwrap();
        let c = l.clone();
        drop((l, e, s, r));
        drop(c);
    }
    assert_eq!(arena.in_use(), 0);
    // A slot used again starts as new: a lock left held is free there.
    let l = arena.lock().unwrap();
    std::mem::forget(l.lock().unwrap());
    drop(l);
    let again = arena.lock().unwrap();
    assert!(again.try_lock().is_ok());
}

#[test]
fn a_full_arena_says_so_and_a_freed_slot_serves_again() {
    let arena = Arena::new(3).unwrap();
    let held: Vec<_> = (0..3).map(|_| arena.event().unwrap()).collect();
    match arena.lock() {
        Err(Error::ArenaFull { capacity }) => assert_eq!(capacity, 3),
        other => panic!("unexpected {other:?}"),
    }
    drop(held);
    assert!(arena.lock().is_ok());
    assert!(matches!(Arena::new(0), Err(Error::Invalid(_))));
}

#[test]
fn a_slot_stays_taken_while_a_child_holds_its_primitive() {
    let arena = Arena::new(4).unwrap();
    let go = arena.event().unwrap();
    let done = arena.event().unwrap();
    let sem = arena.semaphore(0).unwrap();
    let (g, d, s) = (go.clone(), done.clone(), sem.clone());
    let mut child = Process::new(move || {
        assert!(g.wait_timeout(LONG));
        // Still the same semaphore and event: the parent dropped its own.
        s.release();
        d.set();
    });
    child.start().unwrap();
    // The parent's copies of what the child took were handed over: three
    // slots, held by both.
    assert_eq!(arena.in_use(), 3);
    drop(sem);
    assert_eq!(arena.in_use(), 3, "the child still holds the semaphore");
    // A new primitive does not take the child's slot.
    let other = arena.event().unwrap();
    go.set();
    assert!(done.wait_timeout(LONG));
    assert!(!other.is_set());
    assert_eq!(child.join().unwrap(), 0);
    drop((go, done, other));
    assert_eq!(arena.in_use(), 0);
}

#[test]
fn every_kind_of_an_arena_works_across_a_fork() {
    let arena = Arena::new(16).unwrap();
    let rlock = arena.rlock().unwrap();
    let sem = arena.semaphore(2).unwrap();
    let event = arena.event().unwrap();
    let outer = rlock.lock().unwrap();
    let inner = rlock.lock().unwrap();
    let (r, s, e) = (rlock.clone(), sem.clone(), event.clone());
    let mut child = Process::new(move || {
        // The parent holds the RLock twice: not this process's to take.
        assert!(r.try_lock().is_err());
        assert!(s.acquire_timeout(LONG));
        assert!(s.acquire_timeout(LONG));
        e.set();
        // The parent lets go; then it is ours.
        let g = r.lock_timeout(LONG).unwrap();
        drop(g);
    });
    child.start().unwrap();
    assert!(event.wait_timeout(LONG));
    assert!(
        !sem.acquire_timeout(Duration::from_millis(10)),
        "both permits went to the child"
    );
    drop(inner);
    drop(outer);
    assert_eq!(child.join().unwrap(), 0);
}

#[test]
fn small_values_live_in_an_arena_and_their_lock_guards_them_across_processes() {
    let arena = Arena::new(10_000).unwrap();
    let values: Vec<_> = (0..10_000u64).map(|i| arena.value(i).unwrap()).collect();
    let mut kids: Vec<Process> = (0..2)
        .map(|_| {
            let values = values.clone();
            let mut p = Process::new(move || {
                for _ in 0..10 {
                    for v in &values {
                        *v.lock().unwrap() += 1;
                    }
                }
            });
            p.start().unwrap();
            p
        })
        .collect();
    for v in &values {
        *v.lock().unwrap() += 1;
    }
    for k in &mut kids {
        assert_eq!(k.join().unwrap(), 0);
    }
    assert!(
        values
            .iter()
            .enumerate()
            .all(|(i, v)| v.get() == i as u64 + 21)
    );
    // The largest that fits after the lock word, and one that does not.
    assert!(matches!(arena.value(0u8), Err(Error::ArenaFull { .. })));
    drop(values);
    assert_eq!(arena.in_use(), 0);
    let big = arena.value([7u64; 7]);
    assert!(big.is_ok_and(|v| v.get() == [7; 7]));
    assert!(matches!(arena.value([0u32; 16]), Err(Error::Invalid(_))));
    assert_eq!(arena.in_use(), 0);
}
