//! The error types of procs-sync.

use std::fmt;

/// Everything that can go wrong in procs-sync, except the two outcomes of
/// taking a lock that carry the guard back ([`OwnerDied`], [`TryLockError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// The operation, e.g. `memfd_create` or `mmap`.
        op: &'static str,
        /// The error the kernel returned.
        #[source]
        source: std::io::Error,
    },
    /// No named segment has this name.
    #[error("no shared memory segment named {name:?}")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// A named segment with this name exists already.
    #[error("a shared memory segment named {name:?} exists already")]
    AlreadyExists {
        /// The name asked for.
        name: String,
    },
    /// The name cannot name a POSIX shared memory object.
    #[error("invalid segment name {name:?}: {why}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The segment does not start with procs' header: it is foreign, or its
    /// header was overwritten.
    #[error("segment {name:?} is not a procs segment (bad magic)")]
    NotASegment {
        /// The segment's name (or `<anonymous>`).
        name: String,
    },
    /// The segment was made by an incompatible version of procs-sync.
    #[error("segment {name:?} has layout version {found}, this library reads {expected}")]
    VersionMismatch {
        /// The segment's name.
        name: String,
        /// The version in its header.
        found: u32,
        /// The version this library writes.
        expected: u32,
    },
    /// The segment is smaller than its header says.
    #[error("segment {name:?} is truncated: its header needs {needed} bytes, it has {actual}")]
    Truncated {
        /// The segment's name.
        name: String,
        /// Bytes the header claims.
        needed: u64,
        /// Bytes the segment has.
        actual: u64,
    },
    /// The segment holds another kind of object than the one asked for.
    #[error("segment {name:?} holds {found}, not {expected}")]
    KindMismatch {
        /// The segment's name.
        name: String,
        /// What was asked for.
        expected: &'static str,
        /// What the header says it holds.
        found: String,
    },
    /// A re-entrant lock was released by a thread that does not hold it.
    #[error("cannot release an RLock held by thread {holder} from thread {caller}")]
    NotOwner {
        /// The thread holding it (0: nobody).
        holder: u32,
        /// The thread that tried.
        caller: u32,
    },
    /// A lock was released that nobody holds (Python's `ValueError: lock
    /// released too many times`, `RuntimeError: release unlocked lock`).
    #[error("cannot release a lock that is not held")]
    NotLocked,
    /// A lock held through a guard was released with `release`: only the
    /// guard releases it, when it drops (take the lock with `acquire` to
    /// release it from anywhere).
    #[error(
        "cannot release a lock that thread {holder} holds through a guard; dropping the guard releases it"
    )]
    Guarded {
        /// The thread holding it.
        holder: u32,
    },
    /// A condition was notified by a thread that does not hold its lock
    /// (Python's `RuntimeError: cannot notify on un-acquired lock`).
    #[error(
        "cannot notify a condition without holding its lock (held by {holder}, 0: nobody; caller {caller})"
    )]
    NotifyWithoutLock {
        /// The lock's holder (0: nobody).
        holder: u32,
        /// The thread that tried.
        caller: u32,
    },
    /// A bounded semaphore was released more often than acquired
    /// (Python's `ValueError: Semaphore released too many times`).
    #[error("semaphore released too many times (its bound is {bound})")]
    ReleasedTooManyTimes {
        /// The initial value, which the count may not exceed.
        bound: u32,
    },
    /// The barrier is broken: a party timed out, the barrier was aborted or
    /// reset while this party waited, or the action panicked (Python's
    /// `BrokenBarrierError`).
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// A wait with a timeout elapsed.
    #[error("timed out")]
    Timeout,
    /// An argument is out of range.
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// Every slot of an [`Arena`](crate::Arena) is taken.
    #[error("the arena's {capacity} slots are all taken")]
    ArenaFull {
        /// The arena's capacity.
        capacity: usize,
    },
    /// An index past the end of a fixed-length list (Python's `IndexError`).
    #[error("index {index} out of range for a list of {len} items")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The list's length.
        len: usize,
    },
    /// A str or bytes item is longer than the slot it should go in
    /// (Python's `ValueError: bytes/str item exceeds available storage`).
    #[error("item {index}: {len} bytes do not fit its slot of {capacity} bytes")]
    TooLong {
        /// The slot.
        index: usize,
        /// The item's length in bytes (UTF-8 for a str).
        len: usize,
        /// The bytes the slot holds at most.
        capacity: usize,
    },
    /// Shared memory holds something this library never writes: a layout
    /// field out of range, a slot that claims more bytes than it has, a str
    /// that is not UTF-8.
    #[error("shared memory {name:?} is corrupt: {why}")]
    Corrupt {
        /// The segment's name (or `<anonymous>`).
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A slot was being written during every attempt to read it, for longer
    /// than a write takes: its writer probably died in the middle of the
    /// write. The next write of the slot repairs it.
    #[error("item {index} stayed half-written (its writer may have died while writing it)")]
    Torn {
        /// The slot.
        index: usize,
    },
    /// The manager was shut down: it makes no more segments.
    #[error("the SharedMemoryManager is shut down")]
    ShutDown,
}

/// The result type of procs-sync.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn os(op: &'static str, source: impl Into<std::io::Error>) -> Self {
        Error::Os {
            op,
            source: source.into(),
        }
    }
}

/// The lock was taken, but its previous holder died holding it (it was
/// killed, or its thread ended without releasing). The guard is inside: the
/// data it protects may be half-updated, so repair it, then go on with
/// [`into_inner`](OwnerDied::into_inner). Like std's `PoisonError`.
pub struct OwnerDied<G> {
    guard: G,
    holder: u32,
}

impl<G> OwnerDied<G> {
    /// `guard`, as a lock was taken `how`: itself after a clean take, in an
    /// `OwnerDied` after a takeover from a dead holder.
    #[cfg_attr(loom, allow(dead_code))]
    #[inline]
    pub(crate) fn check(how: crate::raw::lock::Acquired, guard: G) -> Result<G, OwnerDied<G>> {
        match how {
            crate::raw::lock::Acquired::Clean => Ok(guard),
            crate::raw::lock::Acquired::OwnerDied { holder } => Err(OwnerDied::new(guard, holder)),
        }
    }

    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn new(guard: G, holder: u32) -> Self {
        Self { guard, holder }
    }

    /// The guard: the lock is held.
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// The guard, borrowed.
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// The guard, mutably borrowed.
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }

    /// The thread id of the holder that died.
    pub fn holder(&self) -> u32 {
        self.holder
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the lock's previous holder (thread {}) died holding it; the lock is now held",
            self.holder
        )
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

/// Why a `try_lock` or `lock_timeout` did not simply return the guard.
pub enum TryLockError<G> {
    /// Another holder has it (`try_lock` only).
    WouldBlock,
    /// The timeout elapsed first (`lock_timeout` only).
    Timeout,
    /// The lock was taken from a holder that died: see [`OwnerDied`].
    OwnerDied(OwnerDied<G>),
}

impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => f.write_str("WouldBlock"),
            TryLockError::Timeout => f.write_str("Timeout"),
            TryLockError::OwnerDied(e) => e.fmt(f),
        }
    }
}

impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => f.write_str("the lock is held by another thread"),
            TryLockError::Timeout => f.write_str("timed out waiting for the lock"),
            TryLockError::OwnerDied(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<G> std::error::Error for TryLockError<G> {}

impl<G> TryLockError<G> {
    /// The guard of a take with a deadline: `None` (the deadline passed) is
    /// `Timeout`, a takeover is `OwnerDied`.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn timed(
        how: Option<crate::raw::lock::Acquired>,
        guard: impl FnOnce() -> G,
    ) -> Result<G, TryLockError<G>> {
        match how {
            None => Err(TryLockError::Timeout),
            Some(how) => OwnerDied::check(how, guard()).map_err(TryLockError::OwnerDied),
        }
    }
}

impl<G> From<OwnerDied<G>> for TryLockError<G> {
    fn from(e: OwnerDied<G>) -> Self {
        TryLockError::OwnerDied(e)
    }
}
