//! Lock and RLock across real processes: exclusion, timeouts, and holders
//! killed with SIGKILL.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{Reaper, read_line, start};
use procs_sync::{Error, Lock, RLock, Segment, TryLockError};

/// A u64 counter in shared memory, read and written without atomics: only
/// the lock keeps increments from being lost.
struct Counter(Segment);

impl Counter {
    fn new() -> Counter {
        Counter(Segment::create(8).unwrap())
    }
    fn get(&self) -> u64 {
        // SAFETY: the segment holds at least 8 aligned bytes.
        unsafe { self.0.as_ptr().cast::<u64>().read_volatile() }
    }
    fn set(&self, v: u64) {
        // SAFETY: as above.
        unsafe { self.0.as_ptr().cast::<u64>().write_volatile(v) }
    }
}

/// Starts a child that takes `lock` (through a guard, or with `acquire`),
/// says so, and keeps it until the returned pipe says "go"; returns once
/// the child holds it.
fn held_by_child(lock: &Lock, through_guard: bool) -> (Reaper, std::io::PipeWriter) {
    let (mut ready_r, mut ready_w) = std::io::pipe().unwrap();
    let (mut release_r, release_w) = std::io::pipe().unwrap();
    let held = lock.clone();
    let child = start(move || {
        let _guard = if through_guard {
            Some(held.lock().unwrap())
        } else {
            held.acquire().unwrap();
            None
        };
        ready_w.write_all(b"held\n").unwrap();
        let _ = read_line(&mut release_r);
    });
    assert_eq!(read_line(&mut ready_r), "held");
    (child, release_w)
}

#[test]
fn four_processes_incrementing_under_a_lock_end_at_400000() {
    let lock = Lock::new().unwrap();
    let counter = std::sync::Arc::new(Counter::new());
    let mut kids: Vec<Reaper> = (0..4)
        .map(|_| {
            let lock = lock.clone();
            let counter = counter.clone();
            start(move || {
                for _ in 0..100_000 {
                    let _g = lock.lock().unwrap();
                    counter.set(counter.get() + 1);
                }
            })
        })
        .collect();
    for k in &mut kids {
        assert_eq!(k.0.join().unwrap(), 0);
    }
    assert_eq!(counter.get(), 400_000);
    assert!(!lock.is_locked());
}

#[test]
fn try_lock_and_lock_timeout_fail_while_another_process_holds_it() {
    let lock = Lock::new().unwrap();
    let (mut child, mut release_w) = held_by_child(&lock, true);
    assert!(lock.is_locked());
    assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    let t = Instant::now();
    assert!(matches!(
        lock.lock_timeout(Duration::from_millis(50)),
        Err(TryLockError::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(50));
    release_w.write_all(b"go\n").unwrap();
    // Released by the child: taken within the timeout, cleanly.
    let g = lock.lock_timeout(Duration::from_secs(10)).unwrap();
    drop(g);
    assert_eq!(child.0.join().unwrap(), 0);
}

#[test]
fn lock_is_taken_over_when_holder_is_killed() {
    let lock = Lock::new().unwrap();
    let (mut ready_r, ready_w) = std::io::pipe().unwrap();
    let held = lock.clone();
    let mut holder = start(move || {
        let g = held.lock().unwrap();
        let mut w = ready_w;
        w.write_all(b"held\n").unwrap();
        std::thread::sleep(Duration::from_secs(60));
        drop(g);
    });
    assert_eq!(read_line(&mut ready_r), "held");
    holder.0.kill().unwrap();
    assert_eq!(holder.0.join().unwrap(), -9);
    let died = match lock.lock() {
        Err(died) => died,
        Ok(_) => panic!("the dead holder's lock was taken as if released"),
    };
    assert_eq!(died.holder() as i32, holder.0.pid().unwrap());
    let guard = died.into_inner();
    assert!(lock.is_locked());
    drop(guard);
    // Repaired and released: the next taker finds it clean.
    drop(lock.lock().expect("clean after the takeover"));
}

#[test]
fn a_waiting_process_takes_over_when_the_holder_is_killed() {
    let lock = Lock::new().unwrap();
    let (mut ready_r, ready_w) = std::io::pipe().unwrap();
    let held = lock.clone();
    let mut holder = start(move || {
        let _g = held.lock().unwrap();
        let mut w = ready_w;
        w.write_all(b"held\n").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    assert_eq!(read_line(&mut ready_r), "held");
    // A second process blocks on the lock, then reports how it got it.
    let waiting = lock.clone();
    let waiter = procs_core::spawn(move || match waiting.lock() {
        Ok(_) => "clean".to_owned(),
        Err(died) => format!("owner died: {}", died.holder()),
    })
    .unwrap();
    holder.0.kill().unwrap();
    holder.0.join().unwrap();
    let pid = holder.0.pid().unwrap();
    assert_eq!(waiter.join().unwrap(), format!("owner died: {pid}"));
}

#[test]
fn lock_held_by_a_thread_that_ended_is_taken_over() {
    let lock = Lock::new().unwrap();
    let l = lock.clone();
    std::thread::spawn(move || std::mem::forget(l.lock().unwrap()))
        .join()
        .unwrap();
    assert!(lock.is_locked());
    assert!(matches!(
        lock.lock_timeout(Duration::from_secs(10)),
        Err(TryLockError::OwnerDied(_))
    ));
}

#[test]
fn rlock_is_reentrant_and_exclusive_across_processes() {
    let lock = RLock::new().unwrap();
    let counter = std::sync::Arc::new(Counter::new());
    let mut kids: Vec<Reaper> = (0..2)
        .map(|_| {
            let lock = lock.clone();
            let counter = counter.clone();
            start(move || {
                for _ in 0..20_000 {
                    let _outer = lock.lock().unwrap();
                    let _inner = lock.lock().unwrap();
                    assert_eq!(lock.depth(), 2);
                    counter.set(counter.get() + 1);
                }
            })
        })
        .collect();
    for k in &mut kids {
        assert_eq!(k.0.join().unwrap(), 0);
    }
    assert_eq!(counter.get(), 40_000);
    assert!(!lock.is_locked());
}

#[test]
fn rlock_release_by_a_thread_that_does_not_hold_it_is_an_error() {
    let lock = RLock::new().unwrap();
    assert!(matches!(
        lock.release(),
        Err(Error::NotOwner { holder: 0, .. })
    ));
    lock.acquire().unwrap();
    lock.acquire().unwrap();
    let other = lock.clone();
    let err = std::thread::spawn(move || other.release()).join().unwrap();
    assert!(matches!(err, Err(Error::NotOwner { .. })), "{err:?}");
    lock.release().unwrap();
    assert!(lock.is_locked());
    lock.release().unwrap();
    assert!(!lock.is_locked());
}

#[test]
fn rlock_is_taken_over_when_holder_is_killed() {
    let lock = RLock::new().unwrap();
    let (mut ready_r, ready_w) = std::io::pipe().unwrap();
    let held = lock.clone();
    let mut holder = start(move || {
        let _a = held.lock().unwrap();
        let _b = held.lock().unwrap();
        let mut w = ready_w;
        w.write_all(b"held\n").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    assert_eq!(read_line(&mut ready_r), "held");
    holder.0.kill().unwrap();
    holder.0.join().unwrap();
    let g = lock.lock().expect_err("owner died").into_inner();
    // The dead holder's depth of two is forgotten: one release frees it.
    assert_eq!(lock.depth(), 1);
    drop(g);
    assert!(!lock.is_locked());
}

#[test]
fn a_lock_acquired_in_the_parent_is_released_by_a_child_500_times() {
    // The parent acquires; the child releases each hold. Every acquire
    // after the first waits for a release made by another process, so the
    // sleep and wake-up between processes are exercised each round.
    const ROUNDS: u32 = 500;
    let lock = Lock::new().unwrap();
    let l = lock.clone();
    let mut child = start(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        for _ in 0..ROUNDS {
            loop {
                match l.release() {
                    Ok(()) => break,
                    Err(Error::NotLocked) if Instant::now() < deadline => std::thread::yield_now(),
                    Err(_) => std::process::exit(2),
                }
            }
        }
    });
    for round in 0..ROUNDS {
        lock.acquire_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    assert_eq!(child.0.join().unwrap(), 0);
    assert!(!lock.is_locked());
}

#[test]
fn a_child_waiting_on_an_acquired_lock_gets_it_when_another_child_releases_it() {
    let lock = Lock::new().unwrap();
    lock.acquire().unwrap();
    let (mut ready_r, ready_w) = std::io::pipe().unwrap();
    let waiting = lock.clone();
    let mut waiter = start(move || {
        let mut w = ready_w;
        w.write_all(b"waiting\n").unwrap();
        match waiting.lock_timeout(Duration::from_secs(30)) {
            Ok(_) => {}
            Err(_) => std::process::exit(2),
        }
    });
    assert_eq!(read_line(&mut ready_r), "waiting");
    // Give the waiter time to fall asleep on the futex (not needed for
    // correctness: it takes the lock whenever it comes).
    std::thread::sleep(Duration::from_millis(20));
    let releasing = lock.clone();
    let mut releaser = start(move || {
        if releasing.release().is_err() {
            std::process::exit(3);
        }
    });
    assert_eq!(releaser.0.join().unwrap(), 0);
    assert_eq!(waiter.0.join().unwrap(), 0);
    assert!(!lock.is_locked());
}

#[test]
fn releasing_a_free_lock_is_an_error() {
    let lock = Lock::new().unwrap();
    assert!(matches!(lock.release(), Err(Error::NotLocked)));
    lock.acquire().unwrap();
    lock.release().unwrap();
    let err = lock.release().unwrap_err();
    assert!(matches!(err, Error::NotLocked));
    assert_eq!(err.to_string(), "cannot release a lock that is not held");
}

#[test]
fn release_refuses_a_lock_held_through_a_guard_in_another_process() {
    let lock = Lock::new().unwrap();
    let (mut child, mut release_w) = held_by_child(&lock, true);
    let pid = child.0.pid().unwrap() as u32;
    assert!(matches!(lock.release(), Err(Error::Guarded { holder }) if holder == pid));
    assert!(lock.is_locked(), "a refused release left the lock held");
    release_w.write_all(b"go\n").unwrap();
    assert_eq!(child.0.join().unwrap(), 0);
    assert!(!lock.is_locked());
}

#[test]
fn try_acquire_and_acquire_timeout_fail_while_another_process_holds_it() {
    let lock = Lock::new().unwrap();
    let (mut child, mut release_w) = held_by_child(&lock, false);
    assert!(matches!(lock.try_acquire(), Err(TryLockError::WouldBlock)));
    assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    let t = Instant::now();
    assert!(matches!(
        lock.acquire_timeout(Duration::from_millis(50)),
        Err(TryLockError::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(50));
    // The child's hold outlives its thread's wish to keep it: released here.
    lock.release().unwrap();
    lock.try_acquire().unwrap();
    lock.release().unwrap();
    release_w.write_all(b"go\n").unwrap();
    assert_eq!(child.0.join().unwrap(), 0);
}

#[test]
fn an_acquired_lock_is_taken_over_when_its_process_is_killed() {
    let lock = Lock::new().unwrap();
    let (mut ready_r, ready_w) = std::io::pipe().unwrap();
    let held = lock.clone();
    let mut holder = start(move || {
        held.acquire().unwrap();
        let mut w = ready_w;
        w.write_all(b"held\n").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    assert_eq!(read_line(&mut ready_r), "held");
    holder.0.kill().unwrap();
    assert_eq!(holder.0.join().unwrap(), -9);
    let pid = holder.0.pid().unwrap() as u32;
    match lock.acquire_timeout(Duration::from_secs(10)) {
        Err(TryLockError::OwnerDied(died)) => assert_eq!(died.holder(), pid),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    // Taken over with `acquire`: released with `release`.
    lock.release().unwrap();
    assert!(!lock.is_locked());
}

#[test]
fn an_acquired_lock_outlives_the_thread_that_took_it() {
    // The hold belongs to the process: a thread that acquired and ended
    // leaves the lock held (no takeover), for another thread to release.
    let lock = Lock::new().unwrap();
    let l = lock.clone();
    std::thread::spawn(move || l.acquire().unwrap())
        .join()
        .unwrap();
    assert!(matches!(
        lock.lock_timeout(Duration::from_millis(100)),
        Err(TryLockError::Timeout)
    ));
    lock.release().unwrap();
    drop(lock.lock().unwrap());
}
