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
    let (mut ready_r, ready_w) = std::io::pipe().unwrap();
    let (release_r, mut release_w) = std::io::pipe().unwrap();
    let held = lock.clone();
    let mut child = start(move || {
        let _g = held.lock().unwrap();
        let mut w = ready_w;
        w.write_all(b"held\n").unwrap();
        let mut r = release_r;
        let _ = read_line(&mut r);
    });
    assert_eq!(read_line(&mut ready_r), "held");
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
