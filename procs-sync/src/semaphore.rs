//! [`Semaphore`] and [`BoundedSemaphore`]: Python's counting semaphores,
//! shared between processes.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::raw::semaphore::RawSemaphore;
use crate::segment::Kind;
use crate::shared::Shared;

/// A counting semaphore shared between processes: `acquire` takes a permit
/// (waiting while there is none), `release` returns one.
///
/// ```
/// use procs_sync::Semaphore;
///
/// let sem = Semaphore::new(2)?;
/// sem.acquire();
/// assert!(sem.try_acquire());
/// assert!(!sem.try_acquire());
/// sem.release();
/// assert_eq!(sem.value(), 1);
/// # Ok::<(), procs_sync::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Semaphore {
    raw: Shared<RawSemaphore>,
}

#[cfg(all(feature = "serde", not(loom)))]
impl Semaphore {
    pub(crate) fn shared(&self) -> &Shared<RawSemaphore> {
        &self.raw
    }

    pub(crate) fn from_shared(raw: Shared<RawSemaphore>) -> Self {
        Semaphore { raw }
    }
}

impl Semaphore {
    /// The Semaphore whose state is a slot of an [`Arena`](crate::Arena).
    pub(crate) fn from_arena(raw: Shared<RawSemaphore>) -> Self {
        Semaphore { raw }
    }

    /// A semaphore with `value` permits.
    pub fn new(value: u32) -> Result<Semaphore> {
        let raw = Shared::<RawSemaphore>::create(Kind::SEMAPHORE, 0, 1)?;
        raw.get().init(value);
        Ok(Semaphore { raw })
    }

    fn raw(&self) -> &RawSemaphore {
        self.raw.get()
    }

    /// Takes a permit, waiting as long as it takes.
    pub fn acquire(&self) {
        self.raw().acquire(None);
    }

    /// Takes a permit, waiting at most `timeout`; returns whether it did
    /// (Python's `acquire(timeout=...)`).
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.raw().acquire(Instant::now().checked_add(timeout))
    }

    /// Takes a permit if one is available now (Python's
    /// `acquire(block=False)`).
    pub fn try_acquire(&self) -> bool {
        self.raw().try_acquire()
    }

    /// Returns a permit, waking a waiter if one sleeps.
    pub fn release(&self) {
        self.release_n(1);
    }

    /// Returns `n` permits at once (Python 3.9's `release(n)`).
    pub fn release_n(&self, n: u32) {
        // Without a bound only an overflow of u32 can refuse.
        let _ = self.raw().release(n, None);
    }

    /// The number of permits available now (Python's `get_value()`).
    pub fn value(&self) -> u32 {
        self.raw().value()
    }

    /// Takes a permit and returns a guard that gives it back when dropped.
    pub fn access(&self) -> SemaphoreGuard<'_> {
        self.acquire();
        SemaphoreGuard { raw: self.raw() }
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`], returned on drop.
#[must_use = "the permit is returned as soon as the guard is dropped"]
#[derive(Debug)]
pub struct SemaphoreGuard<'a> {
    raw: &'a RawSemaphore,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // A guard returns the permit it took, so no bound is exceeded.
        let _ = self.raw.release(1, None);
    }
}

/// A semaphore that refuses to be released above its initial value, as
/// Python's `BoundedSemaphore` (a release too many is a bug, reported).
///
/// ```
/// use procs_sync::{BoundedSemaphore, Error};
///
/// let sem = BoundedSemaphore::new(1)?;
/// sem.acquire();
/// sem.release()?;
/// assert!(matches!(sem.release(), Err(Error::ReleasedTooManyTimes { bound: 1 })));
/// # Ok::<(), procs_sync::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct BoundedSemaphore {
    inner: Semaphore,
    bound: u32,
}

impl BoundedSemaphore {
    /// A semaphore with `value` permits, never more.
    pub fn new(value: u32) -> Result<BoundedSemaphore> {
        Ok(BoundedSemaphore {
            inner: Semaphore::new(value)?,
            bound: value,
        })
    }

    /// Takes a permit, waiting as long as it takes.
    pub fn acquire(&self) {
        self.inner.acquire();
    }

    /// Takes a permit, waiting at most `timeout`; returns whether it did.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.inner.acquire_timeout(timeout)
    }

    /// Takes a permit if one is available now.
    pub fn try_acquire(&self) -> bool {
        self.inner.try_acquire()
    }

    /// Returns a permit; an error if that would exceed the initial value.
    pub fn release(&self) -> Result<()> {
        if self.inner.raw().release(1, Some(self.bound)) {
            Ok(())
        } else {
            Err(Error::ReleasedTooManyTimes { bound: self.bound })
        }
    }

    /// The number of permits available now.
    pub fn value(&self) -> u32 {
        self.inner.value()
    }

    /// The initial value, which the count may not exceed.
    pub fn bound(&self) -> u32 {
        self.bound
    }

    /// Takes a permit and returns a guard that gives it back when dropped.
    pub fn access(&self) -> SemaphoreGuard<'_> {
        self.inner.access()
    }
}
