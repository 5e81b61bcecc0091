//! [`Condition`]: Python's `multiprocessing.Condition`, bound to a
//! [`Lock`].

use std::time::{Duration, Instant};

use crate::error::{OwnerDied, Result};
use crate::lock::{Lock, LockGuard};
use crate::raw::condvar::RawCondvar;
use crate::segment::Kind;
use crate::shared::Shared;

/// A condition variable shared between processes, bound to a [`Lock`]:
/// wait releases the lock and sleeps until notified, then takes the lock
/// again.
///
/// ```
/// use procs_sync::{Condition, Value};
///
/// let cond = Condition::new()?;
/// let items = Value::new(0u32)?;
/// let (c, i) = (cond.clone(), items.clone());
/// let mut producer = procs_core::Process::new(move || {
///     let _g = c.lock().unwrap();
///     *i.lock().unwrap() = 3;
///     c.notify_all();
/// });
/// producer.start()?;
/// let guard = cond.lock().unwrap();
/// let guard = cond.wait_for(guard, || items.get() == 3).unwrap();
/// drop(guard);
/// producer.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Condition {
    lock: Lock,
    raw: Shared<RawCondvar>,
}

type Relocked<T> = Result<T, OwnerDied<T>>;

impl Condition {
    /// A condition with a lock of its own.
    pub fn new() -> Result<Condition> {
        Self::with_lock(Lock::new()?)
    }

    /// A condition bound to `lock` (Python's `Condition(lock)`).
    pub fn with_lock(lock: Lock) -> Result<Condition> {
        Ok(Condition {
            lock,
            raw: Shared::create(Kind::CONDITION, 0, 1)?,
        })
    }

    /// The lock this condition is bound to.
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// Takes the condition's lock.
    pub fn lock(&self) -> Result<LockGuard<'_>, OwnerDied<LockGuard<'_>>> {
        self.lock.lock()
    }

    fn check<'a>(&self, guard: &LockGuard<'a>) {
        assert!(
            std::ptr::eq(guard.lock().raw(), self.lock.raw()),
            "Condition::wait with a guard of another lock than the condition's"
        );
    }

    /// Releases the lock held by `guard`, waits for a notification, and
    /// returns the lock retaken. The wait may also end without one (as any
    /// condition variable's): check the condition, or use
    /// [`wait_for`](Condition::wait_for).
    ///
    /// # Panics
    /// If `guard` holds another lock than this condition's.
    pub fn wait<'a>(&self, guard: LockGuard<'a>) -> Relocked<LockGuard<'a>> {
        self.check(&guard);
        let (_, how) = self.raw.get().wait(guard.lock().raw(), None);
        OwnerDied::check(how, guard)
    }

    /// As [`wait`](Condition::wait), for at most `timeout`; the flag is
    /// `false` if the time ran out (Python's `wait(timeout)`).
    ///
    /// # Panics
    /// If `guard` holds another lock than this condition's.
    pub fn wait_timeout<'a>(
        &self,
        guard: LockGuard<'a>,
        timeout: Duration,
    ) -> Relocked<(LockGuard<'a>, bool)> {
        self.check(&guard);
        let deadline = Instant::now().checked_add(timeout);
        let (notified, how) = self.raw.get().wait(guard.lock().raw(), deadline);
        OwnerDied::check(how, (guard, notified))
    }

    /// Waits until `predicate` is true, checking it under the lock before
    /// each wait.
    pub fn wait_for<'a>(
        &self,
        mut guard: LockGuard<'a>,
        mut predicate: impl FnMut() -> bool,
    ) -> Relocked<LockGuard<'a>> {
        while !predicate() {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Waits at most `timeout` for `predicate`; the flag is its last value
    /// (Python's `wait_for(predicate, timeout)`).
    pub fn wait_for_timeout<'a>(
        &self,
        mut guard: LockGuard<'a>,
        timeout: Duration,
        mut predicate: impl FnMut() -> bool,
    ) -> Relocked<(LockGuard<'a>, bool)> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if predicate() {
                return Ok((guard, true));
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok((guard, false));
            }
            self.check(&guard);
            let (_, how) = self.raw.get().wait(guard.lock().raw(), deadline);
            guard = match OwnerDied::check(how, guard) {
                Ok(g) => g,
                Err(died) => {
                    let holder = died.holder();
                    let g = died.into_inner();
                    let now = predicate();
                    return Err(OwnerDied::new((g, now), holder));
                }
            };
        }
    }

    /// Wakes up to `n` waiters (Python's `notify(n)`). Call it holding the
    /// lock, as in Python, so that a waiter cannot miss it between checking
    /// its condition and sleeping.
    pub fn notify(&self, n: u32) {
        self.raw.get().notify(n);
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.notify(1);
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.raw.get().notify_all();
    }
}
