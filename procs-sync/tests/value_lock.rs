//! Value and Array over a given lock (Python's `lock=`), conditions built
//! over a value's lock, and notifying without the lock, across real
//! processes.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{read_line, start};
use procs_sync::{Array, Condition, Error, Lock, RLock, TryLockError, Value};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_condition_over_a_values_lock_ping_pongs_with_a_child_300_rounds() {
    // Parent and child take turns through one Value, waiting on a
    // Condition built over the value's own Lock, with the value's guard.
    const ROUNDS: u64 = 300;
    let turn = Value::new(0u64).unwrap();
    let cond = Condition::with_lock(turn.get_lock().clone()).unwrap();
    let (t, c) = (turn.clone(), cond.clone());
    let mut child = start(move || {
        for i in 0..ROUNDS {
            let g = t.lock().unwrap();
            let (mut g, ok) = c.wait_timeout_while(g, WAIT, |g| **g != 2 * i).unwrap();
            if !ok {
                std::process::exit(2);
            }
            *g = 2 * i + 1;
            c.notify_all().unwrap();
        }
    });
    for i in 0..ROUNDS {
        let g = turn.lock().unwrap();
        let (mut g, ok) = cond
            .wait_timeout_while(g, WAIT, |g| **g != 2 * i + 1)
            .unwrap();
        assert!(ok, "round {i}: the child did not take its turn");
        *g = 2 * i + 2;
        cond.notify_all().unwrap();
    }
    assert_eq!(child.0.join().unwrap(), 0);
    assert_eq!(turn.get(), 2 * ROUNDS);
}

#[test]
fn a_condition_over_a_value_with_an_rlock_is_notified_by_a_child() {
    // Python's default: the value's lock is an RLock, and the waiter reads
    // `.value` (which takes the lock again) inside the condition's lock.
    let ready = Value::with_lock(0u32, RLock::new().unwrap()).unwrap();
    let cond = Condition::with_lock(ready.get_lock().clone()).unwrap();
    let (r, c) = (ready.clone(), cond.clone());
    let mut child = start(move || {
        for n in 1..=200 {
            let g = c.lock().unwrap();
            r.set(n);
            c.notify_all().unwrap();
            drop(g);
        }
    });
    let g = cond.lock().unwrap();
    let (g, ok) = cond
        .wait_for_timeout(g, WAIT, || ready.get() == 200)
        .unwrap();
    assert!(ok, "the child's notifications did not arrive");
    drop(g);
    assert_eq!(child.0.join().unwrap(), 0);
}

#[test]
fn notify_without_holding_the_lock_is_an_error() {
    let cond = Condition::new().unwrap();
    let err = cond.notify_one().unwrap_err();
    assert!(
        matches!(err, Error::NotifyWithoutLock { holder: 0, .. }),
        "{err}"
    );
    assert!(matches!(
        cond.notify_all(),
        Err(Error::NotifyWithoutLock { .. })
    ));
    // Held by a child process: still not held by this thread.
    let (mut ready_r, ready_w) = std::io::pipe().unwrap();
    let (release_r, mut release_w) = std::io::pipe().unwrap();
    let c = cond.clone();
    let mut child = start(move || {
        let g = c.lock().unwrap();
        // The holder may notify.
        if c.notify(1).is_err() {
            std::process::exit(2);
        }
        let mut w = ready_w;
        w.write_all(b"held\n").unwrap();
        let mut r = release_r;
        let _ = read_line(&mut r);
        drop(g);
    });
    assert_eq!(read_line(&mut ready_r), "held");
    let pid = child.0.pid().unwrap() as u32;
    assert!(matches!(
        cond.notify(1),
        Err(Error::NotifyWithoutLock { holder, .. }) if holder == pid
    ));
    release_w.write_all(b"go\n").unwrap();
    assert_eq!(child.0.join().unwrap(), 0);
    // Held by this thread: allowed.
    let g = cond.lock().unwrap();
    cond.notify_all().unwrap();
    drop(g);
}

#[test]
fn notify_over_an_rlock_needs_this_threads_hold() {
    let cond = Condition::with_lock(RLock::new().unwrap()).unwrap();
    assert!(cond.notify(1).is_err());
    let g = cond.lock().unwrap();
    cond.notify(1).unwrap();
    let c = cond.clone();
    let other = std::thread::spawn(move || c.notify(1).is_err())
        .join()
        .unwrap();
    assert!(other, "another thread notified under this thread's RLock");
    drop(g);
}

#[test]
fn a_lock_taken_with_acquire_may_be_notified_under_and_released_by_a_child() {
    // Python: cond = Condition(Lock()); lock.acquire(); a child notifies
    // and releases. A Lock taken with acquire is held for every thread.
    let lock = Lock::new().unwrap();
    let cond = Condition::with_lock(lock.clone()).unwrap();
    lock.acquire().unwrap();
    let (l, c) = (lock.clone(), cond.clone());
    let mut child = start(move || {
        if c.notify_all().is_err() || l.release().is_err() {
            std::process::exit(2);
        }
    });
    assert_eq!(child.0.join().unwrap(), 0);
    assert!(!lock.is_locked());
    assert!(cond.notify(1).is_err());
}

#[test]
fn values_sharing_one_rlock_change_together_across_processes() {
    // Two values behind one RLock: a child moves units from one to the
    // other under the lock, 20,000 times; the parent, under the same lock,
    // never sees the sum differ from its start.
    const MOVES: i64 = 20_000;
    let lock = RLock::new().unwrap();
    let a = Value::with_lock(MOVES, lock.clone()).unwrap();
    let b = Value::with_lock(0i64, lock.clone()).unwrap();
    let (ca, cb, cl) = (a.clone(), b.clone(), lock.clone());
    let mut child = start(move || {
        for _ in 0..MOVES {
            let _g = cl.lock().unwrap();
            ca.set(ca.get() - 1);
            cb.set(cb.get() + 1);
        }
    });
    let mut checks = 0u64;
    let started = std::time::Instant::now();
    loop {
        assert!(started.elapsed() < WAIT, "the child's moves did not end");
        let _g = lock.lock().unwrap();
        let (x, y) = (a.get(), b.get());
        assert_eq!(x + y, MOVES, "a reader saw a half-done move");
        checks += 1;
        if y == MOVES {
            break;
        }
    }
    assert!(checks > 0);
    assert_eq!(child.0.join().unwrap(), 0);
}

#[test]
fn an_array_over_a_given_lock_waits_on_a_condition_with_its_guard() {
    let lock = Lock::new().unwrap();
    let arr = Array::with_lock(&[0u32; 4], lock.clone()).unwrap();
    let cond = Condition::with_lock(lock.clone()).unwrap();
    assert!(!arr.get_lock().is_locked());
    let (ar, c) = (arr.clone(), cond.clone());
    let mut child = start(move || {
        for i in 0..4 {
            let mut g = ar.lock().unwrap();
            g[i] = i as u32 + 1;
            c.notify_all().unwrap();
        }
    });
    let g = arr.lock().unwrap();
    // The array's lock is the given lock: held now.
    assert!(lock.is_locked());
    assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    let (g, ok) = cond
        .wait_timeout_while(g, WAIT, |g| g.contains(&0))
        .unwrap();
    assert!(ok);
    assert_eq!(&*g, &[1, 2, 3, 4]);
    drop(g);
    assert_eq!(child.0.join().unwrap(), 0);
}

#[test]
fn a_value_over_an_rlock_may_be_read_by_its_holder() {
    let v = Value::with_lock(5u8, RLock::new().unwrap()).unwrap();
    let g = v.lock().unwrap();
    // Re-entrant: the holder's own `get` and `set` take the lock again.
    assert_eq!(v.get(), 5);
    v.set(6);
    assert_eq!(g.get(), 6);
    g.set(7);
    assert_eq!(v.get_lock().depth(), 1);
    drop(g);
    assert_eq!(v.get(), 7);
    assert!(!v.get_lock().is_locked());
}

#[test]
fn a_values_own_lock_is_its_get_lock() {
    let v = Value::new(1u16).unwrap();
    let g = v.lock().unwrap();
    assert!(v.get_lock().is_locked());
    assert!(matches!(
        v.get_lock().lock_timeout(Duration::from_millis(10)),
        Err(TryLockError::Timeout)
    ));
    drop(g);
    // Python's `with v.get_lock(): ...` then `v.value` after it.
    v.get_lock().acquire().unwrap();
    assert!(matches!(
        v.lock_timeout(Duration::from_millis(10)),
        Err(TryLockError::Timeout)
    ));
    v.get_lock().release().unwrap();
    assert_eq!(v.get(), 1);
}
