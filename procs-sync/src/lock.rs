//! [`Lock`]: Python's `multiprocessing.Lock`, as a Rust lock with a guard.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::error::{Error, OwnerDied, Result, TryLockError};
use crate::raw::lock::{NotReleased, RawLock};
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
/// Beside the guard, Python's explicit calls: [`acquire`](Lock::acquire)
/// takes the lock for the calling process with no guard, and
/// [`release`](Lock::release) frees it from any thread of any process, as
/// a multiprocessing `Lock` may be released by another process than the one
/// that took it. A lock held through a guard is released only by dropping
/// the guard (`release` refuses it), so that a guard always holds what it
/// says.
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
    /// The lock's word, kept beside the handle: the release right after the
    /// take reads it without first reading the handle (a dependent load
    /// that waits for the take's locked instruction).
    raw: &'a RawLock,
    _not_send: PhantomData<*const ()>,
}

#[cfg(all(feature = "serde", not(loom)))]
impl Lock {
    pub(crate) fn shared(&self) -> &Shared<RawLock> {
        &self.raw
    }

    pub(crate) fn from_shared(raw: Shared<RawLock>) -> Self {
        Lock { raw }
    }
}

impl Lock {
    /// The Lock whose state is a slot of an [`Arena`](crate::Arena).
    pub(crate) fn from_arena(raw: Shared<RawLock>) -> Self {
        Lock { raw }
    }

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

    /// A handle on a lock that lives in another primitive's segment (the
    /// lock of a `Value` or `Array`).
    pub(crate) fn over(raw: Shared<RawLock>) -> Lock {
        Lock { raw }
    }

    #[inline]
    fn guard(&self) -> LockGuard<'_> {
        LockGuard {
            lock: self,
            raw: self.raw(),
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

    /// Python's `acquire()`: takes the lock, waiting as long as it takes,
    /// with no guard; [`release`](Lock::release) frees it, from this or any
    /// other thread or process. The hold belongs to the calling process: if
    /// that process dies before the lock is released, the next taker takes
    /// it over and is told (`OwnerDied`).
    ///
    /// ```
    /// use procs_sync::Lock;
    ///
    /// let lock = Lock::new()?;
    /// lock.acquire().unwrap();
    /// // A child process releases what the parent took, as in Python.
    /// let l = lock.clone();
    /// let mut child = procs_core::Process::new(move || l.release().unwrap());
    /// child.start()?;
    /// assert_eq!(child.join()?, 0);
    /// assert!(!lock.is_locked());
    /// // Releasing it once more is an error.
    /// assert!(matches!(lock.release(), Err(procs_sync::Error::NotLocked)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire(&self) -> Result<(), OwnerDied<()>> {
        let how = self
            .raw()
            .acquire(None)
            .expect("a wait without deadline only ends with the lock");
        OwnerDied::check(how, ())
    }

    /// As [`acquire`](Lock::acquire), waiting at most `timeout` (Python's
    /// `acquire(timeout=t)`, whose `False` is `Err(Timeout)` here).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), TryLockError<()>> {
        TryLockError::timed(
            self.raw().acquire(Instant::now().checked_add(timeout)),
            || (),
        )
    }

    /// As [`acquire`](Lock::acquire), if the lock is free now (Python's
    /// `acquire(False)`).
    pub fn try_acquire(&self) -> Result<(), TryLockError<()>> {
        if self.raw().try_acquire() {
            Ok(())
        } else {
            Err(TryLockError::WouldBlock)
        }
    }

    /// Python's `release()`: frees a lock taken with
    /// [`acquire`](Lock::acquire), from any thread of any process.
    /// [`Error::NotLocked`] if the lock is free (Python's error for
    /// releasing an unlocked lock); [`Error::Guarded`] if it is held through
    /// a guard, which only dropping the guard releases.
    pub fn release(&self) -> Result<()> {
        self.raw().release().map_err(|e| match e {
            NotReleased::NotLocked => Error::NotLocked,
            NotReleased::Guarded { holder } => Error::Guarded { holder },
        })
    }

    /// Whether the calling thread may act as the lock's holder: it holds a
    /// guard of it, or the lock was taken with [`acquire`](Lock::acquire)
    /// (a hold any thread may release). What a [`Condition`](crate::Condition)
    /// checks before a notify.
    pub(crate) fn held_for_caller(&self) -> bool {
        self.raw().held_by_me() || self.raw().is_acquired()
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
        unsafe { self.raw.unlock() };
    }
}
