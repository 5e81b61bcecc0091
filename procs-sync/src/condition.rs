//! [`Condition`]: Python's `multiprocessing.Condition`, bound to a
//! [`Lock`] or an [`RLock`].

use std::fmt;
use std::time::{Duration, Instant};

use crate::error::{Error, OwnerDied, Result, TryLockError};
use crate::lock::{Lock, LockGuard};
use crate::raw::condvar::RawCondvar;
use crate::raw::lock::Acquired;
use crate::raw::sync::current_tid;
use crate::rlock::{RLock, RLockGuard};
use crate::segment::Kind;
use crate::shared::Shared;

/// A condition variable shared between processes, bound to a [`Lock`]
/// (`Condition::new`) or to an [`RLock`] (`Condition::with_lock`, what
/// Python's `Condition()` makes): wait releases the lock and sleeps until
/// notified, then takes the lock again. Over an `RLock`, a wait releases
/// every level the waiting thread holds and takes them all back, as in
/// Python, so that the other guards it holds stay valid.
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
///     c.notify_all().unwrap();
/// });
/// producer.start()?;
/// let guard = cond.lock().unwrap();
/// let guard = cond.wait_for(guard, || items.get() == 3).unwrap();
/// drop(guard);
/// producer.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias = "Condition()")]
#[derive(Clone, Debug)]
pub struct Condition<L: ConditionLock = Lock> {
    lock: L,
    raw: Shared<RawCondvar>,
}

type Relocked<T> = Result<T, OwnerDied<T>>;

/// A lock a [`Condition`], a [`Value`](crate::Value) or an
/// [`Array`](crate::Array) can be bound to: [`Lock`] or [`RLock`].
pub trait ConditionLock: Clone + fmt::Debug + sealed::Sealed {
    /// What holding the lock is: [`LockGuard`] or [`RLockGuard`].
    type Guard<'a>: Holds<Self>
    where
        Self: 'a;

    /// Takes the lock.
    #[doc(hidden)]
    fn take(&self) -> Relocked<Self::Guard<'_>>;

    /// Takes the lock, waiting at most `timeout`.
    #[doc(hidden)]
    fn take_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Self::Guard<'_>, TryLockError<Self::Guard<'_>>>;

    /// Whether the calling thread may notify a condition over this lock.
    #[doc(hidden)]
    fn held_for_caller(&self) -> bool;

    /// The lock's holder (0: free), for error messages.
    #[doc(hidden)]
    fn holder(&self) -> u32;

    /// Releases the lock, which `held` (the lock a guard holds) proves the
    /// calling thread holds, waits on `cv` until notified or `deadline`,
    /// and takes the lock back.
    ///
    /// # Panics
    /// If `held` is another lock.
    #[doc(hidden)]
    fn wait_on(&self, held: &Self, cv: &RawCondvar, deadline: Option<Instant>) -> (bool, Acquired);
}

/// A guard that holds a lock `L`: `L`'s own guard, or the guard of a
/// [`Value`](crate::Value) or [`Array`](crate::Array) over `L`. A
/// [`Condition`] over `L` waits with any of them, so that a condition can be
/// built over a value's lock and wait with the value's guard.
pub trait Holds<L: ConditionLock>: sealed::SealedGuard {
    /// The lock held.
    #[doc(hidden)]
    fn held(&self) -> &L;
}

impl Holds<Lock> for LockGuard<'_> {
    fn held(&self) -> &Lock {
        self.lock()
    }
}

impl Holds<RLock> for RLockGuard<'_> {
    fn held(&self) -> &RLock {
        self.lock()
    }
}

/// Panics unless a condition's wait got a guard of the condition's lock.
fn assert_holds(same: bool) {
    assert!(
        same,
        "Condition::wait with a guard of another lock than the condition's"
    );
}

pub(crate) mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::Lock {}
    impl Sealed for crate::RLock {}

    /// Only this crate's guards prove that a lock is held.
    pub trait SealedGuard {}
    impl SealedGuard for crate::LockGuard<'_> {}
    impl SealedGuard for crate::RLockGuard<'_> {}
}

impl ConditionLock for Lock {
    type Guard<'a> = LockGuard<'a>;

    fn take(&self) -> Relocked<LockGuard<'_>> {
        self.lock()
    }

    fn take_timeout(
        &self,
        timeout: Duration,
    ) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        self.lock_timeout(timeout)
    }

    fn held_for_caller(&self) -> bool {
        Lock::held_for_caller(self)
    }

    fn holder(&self) -> u32 {
        self.raw().holder()
    }

    fn wait_on(&self, held: &Lock, cv: &RawCondvar, deadline: Option<Instant>) -> (bool, Acquired) {
        assert_holds(std::ptr::eq(held.raw(), self.raw()));
        // SAFETY: `held` is the lock of a live guard (the `Holds` contract,
        // sealed to this crate's guards), so this thread holds it; it is
        // this lock (asserted).
        unsafe { cv.wait(self.raw(), deadline) }
    }
}

impl ConditionLock for RLock {
    type Guard<'a> = RLockGuard<'a>;

    fn take(&self) -> Relocked<RLockGuard<'_>> {
        self.lock()
    }

    fn take_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RLockGuard<'_>, TryLockError<RLockGuard<'_>>> {
        self.lock_timeout(timeout)
    }

    fn held_for_caller(&self) -> bool {
        self.depth() > 0
    }

    fn holder(&self) -> u32 {
        self.raw().holder()
    }

    fn wait_on(
        &self,
        held: &RLock,
        cv: &RawCondvar,
        deadline: Option<Instant>,
    ) -> (bool, Acquired) {
        assert_holds(std::ptr::eq(held.raw(), self.raw()));
        // SAFETY: `held` is the lock of a live guard (the `Holds` contract,
        // sealed to this crate's guards), so this thread holds it; it is
        // this lock (asserted).
        unsafe { cv.wait_rlock(self.raw(), deadline) }
    }
}

impl Condition<Lock> {
    /// A condition with a [`Lock`] of its own.
    pub fn new() -> Result<Condition<Lock>> {
        Self::with_lock(Lock::new()?)
    }
}

impl<L: ConditionLock> Condition<L> {
    /// A condition bound to `lock` (Python's `Condition(lock)`); Python's
    /// `Condition()`, bound to a new `RLock`, is
    /// `Condition::with_lock(RLock::new()?)`.
    ///
    /// ```
    /// use procs_sync::{Condition, RLock};
    ///
    /// let cond = Condition::with_lock(RLock::new()?)?;
    /// let outer = cond.lock().unwrap();
    /// let inner = cond.lock().unwrap();
    /// // The wait releases both levels, and takes both back.
    /// let (inner, notified) = cond
    ///     .wait_timeout(inner, std::time::Duration::from_millis(1))
    ///     .unwrap();
    /// assert!(!notified);
    /// assert_eq!(cond.get_lock().depth(), 2);
    /// drop((inner, outer));
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn with_lock(lock: L) -> Result<Condition<L>> {
        Ok(Condition {
            lock,
            raw: Shared::create(Kind::CONDITION, 0, 1)?,
        })
    }

    /// The lock this condition is bound to.
    pub fn get_lock(&self) -> &L {
        &self.lock
    }

    /// Takes the condition's lock (once more, for an [`RLock`] this thread
    /// holds).
    pub fn lock(&self) -> Relocked<L::Guard<'_>> {
        self.lock.take()
    }

    /// Releases the lock held by `guard`, waits for a notification, and
    /// returns the lock retaken. The wait may also end without one (as any
    /// condition variable's): check the condition, or use
    /// [`wait_for`](Condition::wait_for).
    ///
    /// `guard` is the lock's own guard, or the guard of a
    /// [`Value`](crate::Value) or [`Array`](crate::Array) over it.
    ///
    /// # Panics
    /// If `guard` holds another lock than this condition's.
    pub fn wait<G: Holds<L>>(&self, guard: G) -> Relocked<G> {
        let (_, how) = self.lock.wait_on(guard.held(), self.raw.get(), None);
        OwnerDied::check(how, guard)
    }

    /// As [`wait`](Condition::wait), for at most `timeout`; the flag is
    /// `false` if the time ran out (Python's `wait(timeout)`).
    ///
    /// # Panics
    /// If `guard` holds another lock than this condition's.
    pub fn wait_timeout<G: Holds<L>>(&self, guard: G, timeout: Duration) -> Relocked<(G, bool)> {
        let deadline = Instant::now().checked_add(timeout);
        let (notified, how) = self.lock.wait_on(guard.held(), self.raw.get(), deadline);
        OwnerDied::check(how, (guard, notified))
    }

    /// Waits until `predicate` is true, checking it under the lock before
    /// each wait.
    pub fn wait_for<G: Holds<L>>(
        &self,
        mut guard: G,
        mut predicate: impl FnMut() -> bool,
    ) -> Relocked<G> {
        while !predicate() {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Waits while `condition` holds, giving it the guard (std's
    /// `Condvar::wait_while`): with the guard of a [`Value`](crate::Value)
    /// or [`Array`](crate::Array) over this condition's lock, the condition
    /// reads the data it guards.
    ///
    /// ```
    /// use procs_sync::{Condition, Value};
    ///
    /// let items = Value::new(0u32)?;
    /// let cond = Condition::with_lock(items.get_lock().clone())?;
    /// let (i, c) = (items.clone(), cond.clone());
    /// let mut producer = procs_core::Process::new(move || {
    ///     let mut g = i.lock().unwrap();
    ///     *g = 3;
    ///     // Under the lock, which `g` holds: without it, an error.
    ///     c.notify_all().unwrap();
    /// });
    /// producer.start()?;
    /// let g = cond.wait_while(items.lock().unwrap(), |g| **g == 0).unwrap();
    /// assert_eq!(*g, 3);
    /// drop(g);
    /// producer.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_while<G: Holds<L>>(
        &self,
        mut guard: G,
        mut condition: impl FnMut(&mut G) -> bool,
    ) -> Relocked<G> {
        while condition(&mut guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// As [`wait_while`](Condition::wait_while), for at most `timeout`; the
    /// flag is `false` if the time ran out with `condition` still true.
    pub fn wait_timeout_while<G: Holds<L>>(
        &self,
        mut guard: G,
        timeout: Duration,
        mut condition: impl FnMut(&mut G) -> bool,
    ) -> Relocked<(G, bool)> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if !condition(&mut guard) {
                return Ok((guard, true));
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok((guard, false));
            }
            let (_, how) = self.lock.wait_on(guard.held(), self.raw.get(), deadline);
            guard = match OwnerDied::check(how, guard) {
                Ok(g) => g,
                Err(died) => {
                    let holder = died.holder();
                    let mut g = died.into_inner();
                    let met = !condition(&mut g);
                    return Err(OwnerDied::new((g, met), holder));
                }
            };
        }
    }

    /// Waits at most `timeout` for `predicate`; the flag is its last value
    /// (Python's `wait_for(predicate, timeout)`).
    pub fn wait_for_timeout<G: Holds<L>>(
        &self,
        guard: G,
        timeout: Duration,
        mut predicate: impl FnMut() -> bool,
    ) -> Relocked<(G, bool)> {
        self.wait_timeout_while(guard, timeout, |_| !predicate())
    }

    /// Wakes up to `n` waiters (Python's `notify(n)`). The calling thread
    /// must hold the lock, as in Python, so that a waiter cannot miss the
    /// notification between checking its condition and sleeping:
    /// [`Error::NotifyWithoutLock`] otherwise (Python's `RuntimeError`). A
    /// [`Lock`] taken with [`acquire`](Lock::acquire) counts as held by
    /// every thread, since any may release it.
    ///
    /// ```
    /// use procs_sync::{Condition, Error};
    ///
    /// let cond = Condition::new()?;
    /// assert!(matches!(cond.notify(1), Err(Error::NotifyWithoutLock { .. })));
    /// let guard = cond.lock().unwrap();
    /// cond.notify(1)?;
    /// drop(guard);
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn notify(&self, n: u32) -> Result<()> {
        self.check_held()?;
        self.raw.get().notify(n);
        Ok(())
    }

    /// Wakes one waiter; the calling thread holds the lock.
    pub fn notify_one(&self) -> Result<()> {
        self.notify(1)
    }

    /// Wakes every waiter (Python's `notify_all()`); the calling thread
    /// holds the lock.
    pub fn notify_all(&self) -> Result<()> {
        self.check_held()?;
        self.raw.get().notify_all();
        Ok(())
    }

    fn check_held(&self) -> Result<()> {
        if self.lock.held_for_caller() {
            Ok(())
        } else {
            Err(Error::NotifyWithoutLock {
                holder: self.lock.holder(),
                caller: current_tid(),
            })
        }
    }
}

/// A condition travels as its segment and its lock (a [`Lock`] or an
/// [`RLock`], which travel too).
#[cfg(all(feature = "serde", not(loom)))]
impl<L: ConditionLock + serde::Serialize> serde::Serialize for Condition<L> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serde::Serialize::serialize(
            &(
                {
                    use serde::ser::Error as _;
                    self.raw.segment().map_err(S::Error::custom)?
                },
                &self.lock,
            ),
            s,
        )
    }
}

#[cfg(all(feature = "serde", not(loom)))]
impl<'de, L: ConditionLock + serde::Deserialize<'de>> serde::Deserialize<'de> for Condition<L> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (seg, lock): (crate::Segment, L) = serde::Deserialize::deserialize(d)?;
        let raw = Shared::from_segment(seg, &[Kind::CONDITION]).map_err(D::Error::custom)?;
        Ok(Condition { lock, raw })
    }
}
