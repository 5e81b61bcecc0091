//! Semaphore, Event, Condition, Barrier, Value and Array across real
//! processes, and every timeout.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{Reaper, start};
use procs_sync::{
    Array, Barrier, BoundedSemaphore, Condition, Error, Event, Lock, RLock, RawArray, RawValue,
    Segment, Semaphore, Value,
};

/// Two u32 atomics in shared memory: how many are inside, and the most seen.
struct Gauge(Segment);

impl Gauge {
    fn new() -> Gauge {
        Gauge(Segment::create(8).unwrap())
    }
    fn cell(&self, i: usize) -> &AtomicU32 {
        // SAFETY: the segment holds two aligned u32s for as long as self lives.
        unsafe { &*self.0.as_ptr().cast::<AtomicU32>().add(i) }
    }
    fn enter(&self) {
        let now = self.cell(0).fetch_add(1, Ordering::SeqCst) + 1;
        self.cell(1).fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.cell(0).fetch_sub(1, Ordering::SeqCst);
    }
    fn max(&self) -> u32 {
        self.cell(1).load(Ordering::SeqCst)
    }
}

#[test]
fn semaphore_never_lets_more_than_its_value_in() {
    let sem = Semaphore::new(2).unwrap();
    let gauge = std::sync::Arc::new(Gauge::new());
    let mut kids: Vec<Reaper> = (0..5)
        .map(|_| {
            let (sem, gauge) = (sem.clone(), gauge.clone());
            start(move || {
                for _ in 0..300 {
                    let _permit = sem.access();
                    gauge.enter();
                    for _ in 0..200 {
                        std::hint::spin_loop();
                    }
                    gauge.leave();
                }
            })
        })
        .collect();
    for k in &mut kids {
        assert_eq!(k.0.join().unwrap(), 0);
    }
    let max = gauge.max();
    assert!(max <= 2, "{max} holders at once under Semaphore(2)");
    assert!(max >= 1);
    assert_eq!(sem.value(), 2);
}

#[test]
fn semaphore_acquire_timeout_and_release_from_another_process() {
    let sem = Semaphore::new(0).unwrap();
    assert!(!sem.try_acquire());
    let t = Instant::now();
    assert!(!sem.acquire_timeout(Duration::from_millis(30)));
    assert!(t.elapsed() >= Duration::from_millis(30));
    let s = sem.clone();
    let mut child = start(move || s.release_n(3));
    assert!(sem.acquire_timeout(Duration::from_secs(10)));
    child.0.join().unwrap();
    assert_eq!(sem.value(), 2);
}

#[test]
fn bounded_semaphore_refuses_a_release_above_its_value() {
    let sem = BoundedSemaphore::new(2).unwrap();
    assert!(matches!(
        sem.release(),
        Err(Error::ReleasedTooManyTimes { bound: 2 })
    ));
    sem.acquire();
    sem.release().unwrap();
    assert_eq!(sem.value(), 2);
}

#[test]
fn event_wakes_every_waiting_process() {
    let ev = Event::new().unwrap();
    let ready = Semaphore::new(0).unwrap();
    let mut kids: Vec<Reaper> = (0..3)
        .map(|_| {
            let (ev, ready) = (ev.clone(), ready.clone());
            start(move || {
                ready.release();
                if !ev.wait_timeout(Duration::from_secs(30)) {
                    std::process::exit(2);
                }
            })
        })
        .collect();
    for _ in 0..3 {
        ready.acquire();
    }
    assert!(!ev.is_set());
    ev.set();
    for k in &mut kids {
        assert_eq!(k.0.join().unwrap(), 0);
    }
    assert!(ev.is_set());
    ev.clear();
    assert!(!ev.is_set());
    let t = Instant::now();
    assert!(!ev.wait_timeout(Duration::from_millis(30)));
    assert!(t.elapsed() >= Duration::from_millis(30));
}

#[test]
fn condition_carries_a_thousand_items_through_a_bounded_buffer() {
    const CAP: usize = 4;
    const N: u64 = 1000;
    let cond = Condition::new().unwrap();
    // buffer, then head and count, all under the condition's lock.
    let buf = Array::<u64>::new(CAP).unwrap();
    let state = Array::<u64>::new(2).unwrap();
    let (c, b, s) = (cond.clone(), buf.clone(), state.clone());
    let mut producer = start(move || {
        for item in 1..=N {
            let g = c.lock().unwrap();
            let g = c.wait_for(g, || s.lock().unwrap()[1] < CAP as u64).unwrap();
            let mut st = s.lock().unwrap();
            let slot = ((st[0] + st[1]) % CAP as u64) as usize;
            b.lock().unwrap()[slot] = item;
            st[1] += 1;
            drop(st);
            c.notify_all().unwrap();
            drop(g);
        }
    });
    let mut got = Vec::new();
    while got.len() < N as usize {
        let g = cond.lock().unwrap();
        let (g, ok) = cond
            .wait_for_timeout(g, Duration::from_secs(30), || state.lock().unwrap()[1] > 0)
            .unwrap();
        assert!(ok, "no item within 30 s after {} items", got.len());
        let mut st = state.lock().unwrap();
        got.push(buf.lock().unwrap()[st[0] as usize]);
        st[0] = (st[0] + 1) % CAP as u64;
        st[1] -= 1;
        drop(st);
        cond.notify_all().unwrap();
        drop(g);
    }
    assert_eq!(producer.0.join().unwrap(), 0);
    assert_eq!(got, (1..=N).collect::<Vec<_>>());
}

#[test]
fn condition_over_an_rlock_releases_every_level_while_waiting() {
    let cond = Condition::with_lock(RLock::new().unwrap()).unwrap();
    let flag = RawValue::new(0u32).unwrap();
    let outer = cond.lock().unwrap();
    let inner = cond.lock().unwrap();
    assert_eq!(cond.get_lock().depth(), 2);
    // The child can take the lock only once the parent's wait has released
    // both of its levels; it then sets the flag and notifies.
    let (c, f) = (cond.clone(), flag.clone());
    let mut child = start(move || {
        let Ok(g) = c.get_lock().lock_timeout(Duration::from_secs(30)) else {
            std::process::exit(2);
        };
        f.set(1);
        c.notify_all().unwrap();
        drop(g);
    });
    let (inner, ok) = cond
        .wait_for_timeout(inner, Duration::from_secs(30), || flag.get() == 1)
        .unwrap();
    assert!(ok, "the child never took the lock: the wait kept a level");
    // Both levels are back: the guards release one each.
    assert_eq!(cond.get_lock().depth(), 2);
    drop(inner);
    assert_eq!(cond.get_lock().depth(), 1);
    drop(outer);
    assert!(!cond.get_lock().is_locked());
    assert_eq!(child.0.join().unwrap(), 0);
}

#[test]
fn condition_over_an_rlock_times_out_holding_every_level() {
    let cond = Condition::with_lock(RLock::new().unwrap()).unwrap();
    let g1 = cond.lock().unwrap();
    let g2 = cond.lock().unwrap();
    let g3 = cond.lock().unwrap();
    let t = Instant::now();
    let (g3, notified) = cond.wait_timeout(g3, Duration::from_millis(30)).unwrap();
    assert!(!notified);
    assert!(t.elapsed() >= Duration::from_millis(30));
    assert_eq!(cond.get_lock().depth(), 3);
    let (g3, ok) = cond
        .wait_for_timeout(g3, Duration::from_millis(10), || false)
        .unwrap();
    assert!(!ok);
    assert_eq!(cond.get_lock().depth(), 3);
    drop((g3, g2, g1));
    assert!(!cond.get_lock().is_locked());
}

#[test]
#[should_panic(expected = "another lock than the condition's")]
fn condition_wait_with_another_rlocks_guard_panics() {
    let cond = Condition::with_lock(RLock::new().unwrap()).unwrap();
    let other = RLock::new().unwrap();
    let g = other.lock().unwrap();
    let _ = cond.wait(g);
}

#[test]
#[should_panic(expected = "another lock than the condition's")]
fn condition_wait_with_another_locks_guard_panics() {
    let cond = Condition::new().unwrap();
    let other = Lock::new().unwrap();
    let g = other.lock().unwrap();
    let _ = cond.wait(g);
}

#[test]
fn condition_wait_timeout_reports_no_notification() {
    let cond = Condition::new().unwrap();
    let g = cond.lock().unwrap();
    let t = Instant::now();
    let (g, notified) = cond.wait_timeout(g, Duration::from_millis(30)).unwrap();
    assert!(!notified);
    assert!(t.elapsed() >= Duration::from_millis(30));
    let (_g, ok) = cond
        .wait_for_timeout(g, Duration::from_millis(10), || false)
        .unwrap();
    assert!(!ok);
}

#[test]
fn barrier_keeps_four_processes_in_step_for_1000_rounds() {
    const ROUNDS: u64 = 1000;
    const PARTIES: usize = 4;
    let barrier = Barrier::new(PARTIES as u32).unwrap();
    let slots = RawArray::<u64>::new(PARTIES).unwrap();
    let mut kids: Vec<Reaper> = (0..PARTIES)
        .map(|me| {
            let (barrier, slots) = (barrier.clone(), slots.clone());
            start(move || {
                for round in 1..=ROUNDS {
                    slots.set(me, round);
                    barrier.wait().unwrap();
                    // Everyone wrote this round before anyone passed.
                    for p in 0..PARTIES {
                        assert_eq!(slots.get(p), round, "party {p} behind in round {round}");
                    }
                    barrier.wait().unwrap();
                }
            })
        })
        .collect();
    for k in &mut kids {
        assert_eq!(k.0.join().unwrap(), 0);
    }
    assert_eq!(slots.to_vec(), vec![ROUNDS; PARTIES]);
}

#[test]
fn barrier_indexes_are_distinct_and_the_action_runs_once_per_round() {
    let runs = Value::new(0u32).unwrap();
    let r = runs.clone();
    let barrier = Barrier::with_action(3, move || *r.lock().unwrap() += 1).unwrap();
    let indexes = Array::<u32>::new(3).unwrap();
    let mut kids: Vec<Reaper> = (0..2)
        .map(|i| {
            let (b, idx) = (barrier.clone(), indexes.clone());
            start(move || {
                for _ in 0..50 {
                    let n = b.wait().unwrap();
                    idx.lock().unwrap()[i] = n;
                    b.wait().unwrap();
                }
            })
        })
        .collect();
    for _ in 0..50 {
        let n = barrier.wait().unwrap();
        indexes.lock().unwrap()[2] = n;
        barrier.wait().unwrap();
        let mut seen = indexes.to_vec();
        seen.sort();
        assert_eq!(seen, [0, 1, 2]);
    }
    for k in &mut kids {
        assert_eq!(k.0.join().unwrap(), 0);
    }
    assert_eq!(runs.get(), 100);
    assert_eq!(barrier.n_waiting(), 0);
}

#[test]
fn barrier_timeout_breaks_it_for_everyone_until_reset() {
    let barrier = Barrier::new(3).unwrap();
    let b = barrier.clone();
    let waiter = procs_core::spawn(move || matches!(b.wait(), Err(Error::BrokenBarrier))).unwrap();
    // The waiter is in (n_waiting counts it) before this party times out.
    let deadline = Instant::now() + Duration::from_secs(30);
    while barrier.n_waiting() < 1 {
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
    assert!(matches!(
        barrier.wait_timeout(Duration::from_millis(20)),
        Err(Error::BrokenBarrier)
    ));
    assert!(waiter.join().unwrap(), "the other waiter was not told");
    assert!(barrier.broken());
    assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
    barrier.reset();
    assert!(!barrier.broken());
    assert_eq!(barrier.parties(), 3);
}

#[test]
fn barrier_abort_fails_waiting_and_later_parties() {
    let barrier = Barrier::new(2).unwrap();
    let b = barrier.clone();
    let waiter = procs_core::spawn(move || matches!(b.wait(), Err(Error::BrokenBarrier))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while barrier.n_waiting() < 1 {
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
    barrier.abort();
    assert!(waiter.join().unwrap());
    assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
    barrier.reset();
    // Usable again: two parties pass.
    let b = barrier.clone();
    let other = procs_core::spawn(move || b.wait().is_ok()).unwrap();
    assert!(barrier.wait().is_ok());
    assert!(other.join().unwrap());
}

#[test]
fn barrier_with_a_panicking_action_is_broken() {
    let barrier = Barrier::with_action(1, || panic!("action failed")).unwrap();
    assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
    assert!(barrier.broken());
    assert!(matches!(Barrier::new(0), Err(Error::Invalid(_))));
}

#[test]
fn value_and_array_are_shared_with_children() {
    let num = Value::new(0.0f64).unwrap();
    let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>()).unwrap();
    let (n, a) = (num.clone(), arr.clone());
    let mut child = start(move || {
        n.set(2.5);
        for x in a.lock().unwrap().iter_mut() {
            *x = -*x;
        }
    });
    assert_eq!(child.0.join().unwrap(), 0);
    assert_eq!(num.get(), 2.5);
    assert_eq!(arr.to_vec(), (0..10).map(|x| -x).collect::<Vec<i32>>());
    assert_eq!(arr.len(), 10);
    assert!(Array::<u8>::new(0).is_err());
    let raw = RawValue::new(7u16).unwrap();
    let r = raw.clone();
    let mut child = start(move || r.set(r.get() * 6));
    child.0.join().unwrap();
    assert_eq!(raw.get(), 42);
}

#[test]
fn value_increments_from_four_processes_are_not_lost() {
    let v = Value::new(0u64).unwrap();
    let mut kids: Vec<Reaper> = (0..4)
        .map(|_| {
            let v = v.clone();
            start(move || {
                for _ in 0..25_000 {
                    *v.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for k in &mut kids {
        k.0.join().unwrap();
    }
    assert_eq!(v.get(), 100_000);
    assert!(matches!(
        v.lock_timeout(Duration::from_millis(1)).map(|g| *g),
        Ok(100_000)
    ));
}

extern "C" fn on_sigusr1(_: libc::c_int) {}

#[test]
fn timeouts_hold_while_signals_interrupt_the_wait() {
    use std::io::{Read, Write};
    let sem = Semaphore::new(0).unwrap();
    let ev = Event::new().unwrap();
    let lock = procs_sync::Lock::new().unwrap();
    let _held = lock.lock().unwrap();
    let (mut ready_r, ready_w) = std::io::pipe().unwrap();
    let (s, e, l) = (sem.clone(), ev.clone(), lock.clone());
    let waiter = procs_core::spawn(move || {
        // SAFETY: installs a handler that does nothing, without SA_RESTART,
        // so that the futex waits below return EINTR on each signal.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigusr1 as *const () as usize;
            libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        }
        let mut w = ready_w;
        w.write_all(b"r").unwrap();
        let d = Duration::from_millis(150);
        let t = Instant::now();
        let a = s.acquire_timeout(d);
        let ta = t.elapsed();
        let t = Instant::now();
        let b = e.wait_timeout(d);
        let tb = t.elapsed();
        let t = Instant::now();
        let c = l.lock_timeout(d).is_ok();
        let tc = t.elapsed();
        (a, b, c, [ta, tb, tc].map(|x| x.as_millis() as u64))
    })
    .unwrap();
    let mut b = [0u8; 1];
    ready_r.read_exact(&mut b).unwrap();
    let pid = nix::unistd::Pid::from_raw(waiter.pid());
    // Interrupt the waits over and over until the child is done.
    while nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).is_ok()
        && waiter.process().is_alive()
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    let (a, b, c, ms) = waiter.join().unwrap();
    assert!(!a && !b && !c, "a wait succeeded: {a} {b} {c}");
    for m in ms {
        assert!(m >= 150, "a wait ended early after {m} ms: {ms:?}");
        assert!(m < 10_000, "a wait overran: {ms:?}");
    }
}
