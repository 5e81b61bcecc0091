//! [`RLock`]: Python's `multiprocessing.RLock`, a lock its holder may take
//! again.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::error::{Error, OwnerDied, Result, TryLockError};
use crate::raw::lock::Acquired;
use crate::raw::rlock::RawRLock;
use crate::segment::Kind;
use crate::shared::Shared;

/// A re-entrant lock shared between processes: the thread that holds it may
/// take it again, and it is free once every guard is dropped. A holder that
/// dies is handled as for [`Lock`](crate::Lock).
///
/// ```
/// use procs_sync::RLock;
///
/// let lock = RLock::new()?;
/// let outer = lock.lock().unwrap();
/// let inner = lock.lock().unwrap();   // the same thread: no deadlock
/// assert_eq!(lock.depth(), 2);
/// drop(inner);
/// drop(outer);
/// assert!(!lock.is_locked());
/// # Ok::<(), procs_sync::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RLock {
    raw: Shared<RawRLock>,
}

/// One level of holding an [`RLock`]; released when dropped. Not `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    _not_send: PhantomData<*const ()>,
}

#[cfg(all(feature = "serde", not(loom)))]
impl RLock {
    pub(crate) fn shared(&self) -> &Shared<RawRLock> {
        &self.raw
    }

    pub(crate) fn from_shared(raw: Shared<RawRLock>) -> Self {
        RLock { raw }
    }
}

impl RLock {
    /// The RLock whose state is a slot of an [`Arena`](crate::Arena).
    pub(crate) fn from_arena(raw: Shared<RawRLock>) -> Self {
        RLock { raw }
    }

    /// A new, free re-entrant lock in its own anonymous segment.
    pub fn new() -> Result<RLock> {
        Ok(RLock {
            raw: Shared::create(Kind::RLOCK, 0, 1)?,
        })
    }

    pub(crate) fn raw(&self) -> &RawRLock {
        self.raw.get()
    }

    fn guard(&self) -> RLockGuard<'_> {
        RLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Takes the lock (once more, if this thread holds it).
    pub fn lock(&self) -> Result<RLockGuard<'_>, OwnerDied<RLockGuard<'_>>> {
        let how = self
            .raw()
            .lock(None)
            .expect("a wait without deadline only ends with the lock");
        OwnerDied::check(how, self.guard())
    }

    /// Takes the lock if it is free or held by this thread.
    pub fn try_lock(&self) -> Result<RLockGuard<'_>, TryLockError<RLockGuard<'_>>> {
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
    ) -> Result<RLockGuard<'_>, TryLockError<RLockGuard<'_>>> {
        TryLockError::timed(self.raw().lock(Instant::now().checked_add(timeout)), || {
            self.guard()
        })
    }

    /// Python's `acquire()` without a guard, for code that releases in
    /// another place; pair it with [`release`](RLock::release).
    pub fn acquire(&self) -> Result<(), OwnerDied<()>> {
        match self.raw().lock(None) {
            Some(Acquired::OwnerDied { holder }) => Err(OwnerDied::new((), holder)),
            _ => Ok(()),
        }
    }

    /// Releases one level taken with [`acquire`](RLock::acquire). Releasing
    /// a lock this thread does not hold is an error, as in Python.
    pub fn release(&self) -> Result<()> {
        self.raw()
            .unlock()
            .map_err(|(holder, caller)| Error::NotOwner { holder, caller })
    }

    /// How many times the calling thread holds the lock (0: not held by it).
    pub fn depth(&self) -> u32 {
        self.raw().depth()
    }

    /// Whether some thread of some process holds the lock.
    pub fn is_locked(&self) -> bool {
        self.raw().holder() != 0
    }
}

impl<'a> RLockGuard<'a> {
    /// The lock this guard holds a level of.
    pub fn lock(&self) -> &'a RLock {
        self.lock
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        // The guard's thread holds the lock (the guard is not Send).
        let _ = self.lock.raw().unlock();
    }
}
