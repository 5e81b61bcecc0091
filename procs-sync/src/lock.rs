//! [`Lock`]: Python's `multiprocessing.Lock`, as a Rust lock with a guard.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::error::{OwnerDied, Result, TryLockError};
use crate::raw::lock::RawLock;
use crate::segment::Kind;
use crate::shared::Shared;

/// A lock shared between processes: clone it, move the clone into a child,
/// and both sides exclude each other.
///
/// Uncontended, taking and releasing it are one atomic operation each, with
/// no system call. If a holder dies holding it (even by SIGKILL), the next
/// taker gets it within about 20 ms and is told, through [`OwnerDied`], which
/// carries the guard so the protected data can be repaired.
///
/// ```
/// use procs_sync::Lock;
///
/// let lock = Lock::new()?;
/// let child_lock = lock.clone();
/// let mut child = procs_core::Process::new(move || {
///     let _guard = child_lock.lock().unwrap();
///     // ... the child alone here ...
/// });
/// child.start()?;
/// {
///     let _guard = lock.lock().unwrap();
///     // ... the parent alone here ...
/// }
/// child.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Lock {
    raw: Shared<RawLock>,
}

/// Holds a [`Lock`]; releases it when dropped. It belongs to the thread that
/// took it, so it is not `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    _not_send: PhantomData<*const ()>,
}

impl Lock {
    /// A new, free lock in its own anonymous shared memory segment.
    pub fn new() -> Result<Lock> {
        Ok(Lock {
            raw: Shared::create(Kind::LOCK, 0, 1)?,
        })
    }

    #[inline]
    pub(crate) fn raw(&self) -> &RawLock {
        self.raw.get()
    }

    #[inline]
    fn guard(&self) -> LockGuard<'_> {
        LockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Takes the lock, waiting as long as it takes. `Err(OwnerDied)` means
    /// the lock is held, taken over from a holder that died.
    #[inline]
    pub fn lock(&self) -> Result<LockGuard<'_>, OwnerDied<LockGuard<'_>>> {
        let how = self
            .raw()
            .lock(None)
            .expect("a wait without deadline only ends with the lock");
        OwnerDied::check(how, self.guard())
    }

    /// Takes the lock if it is free now. Does not check whether a holder
    /// died: use [`lock_timeout`](Lock::lock_timeout) for that.
    #[inline]
    pub fn try_lock(&self) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        if self.raw().try_lock() {
            Ok(self.guard())
        } else {
            Err(TryLockError::WouldBlock)
        }
    }

    /// Takes the lock, waiting at most `timeout`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        let deadline = Instant::now().checked_add(timeout);
        TryLockError::timed(self.raw().lock(deadline), || self.guard())
    }

    /// Whether some thread of some process holds the lock now.
    pub fn is_locked(&self) -> bool {
        self.raw().holder() != 0
    }
}

impl<'a> LockGuard<'a> {
    /// The lock this guard holds.
    pub fn lock(&self) -> &'a Lock {
        self.lock
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: a guard is made only when this thread took the lock with
        // `RawLock::lock`; it is not Send, so this is that thread, and only
        // this drop releases that hold.
        unsafe { self.lock.raw().unlock() };
    }
}
