//! Process-shared memory and the synchronization primitives that live in it,
//! as Python's `multiprocessing` has them.
//!
//! Every primitive lives in a shared memory [`Segment`]: clone a handle and
//! move it into a child process (or open a named segment from an unrelated
//! process), and both sides use the same memory. The primitives are futex
//! based: uncontended, they cost an atomic operation or two and no system
//! call; a waiter spins briefly, then sleeps on the futex, and is woken only
//! when someone sleeps.
//!
//! A lock whose holder dies holding it (SIGKILL included) is taken over by
//! the next taker, which is told through [`OwnerDied`]. Every algorithm is
//! model-checked with loom (`RUSTFLAGS="--cfg loom"`).
//!
//! ```
//! use procs_sync::Lock;
//!
//! let lock = Lock::new()?;
//! let guard = lock.lock().unwrap();
//! assert!(lock.is_locked());
//! drop(guard);
//! assert!(!lock.is_locked());
//! # Ok::<(), procs_sync::Error>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(loom))]
mod sys;

pub mod raw;

mod error;
pub use error::{Error, OwnerDied, Result, TryLockError};

#[cfg(not(loom))]
mod barrier;
#[cfg(not(loom))]
mod cells;
#[cfg(not(loom))]
mod condition;
#[cfg(not(loom))]
mod event;
#[cfg(not(loom))]
mod lock;
#[cfg(not(loom))]
mod rawvalue;
#[cfg(not(loom))]
mod rlock;
#[cfg(not(loom))]
mod segment;
#[cfg(not(loom))]
mod semaphore;
#[cfg(not(loom))]
mod shared;
#[cfg(not(loom))]
mod value;

#[cfg(not(loom))]
pub use barrier::Barrier;
#[cfg(not(loom))]
pub use condition::{Condition, ConditionLock, Holds};
#[cfg(not(loom))]
pub use event::Event;
#[cfg(not(loom))]
pub use lock::{Lock, LockGuard};
#[cfg(not(loom))]
pub use rawvalue::{RawArray, RawValue};
#[cfg(not(loom))]
pub use rlock::{RLock, RLockGuard};
#[cfg(not(loom))]
pub use segment::Segment;
#[cfg(not(loom))]
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};
#[cfg(not(loom))]
pub use value::{Array, ArrayGuard, Value, ValueGuard};
