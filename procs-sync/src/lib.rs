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
//! # Python to procs-sync
//!
//! | Python | procs-sync |
//! |---|---|
//! | `Lock()`, `with lock:` | [`Lock::new()?`](Lock::new), [`lock.lock()`](Lock::lock) (a guard) |
//! | `lock.acquire()`, `acquire(timeout=t)`, `acquire(False)` | [`acquire`](Lock::acquire), [`acquire_timeout(t)`](Lock::acquire_timeout), [`try_acquire`](Lock::try_acquire) (no guard; also [`lock_timeout`](Lock::lock_timeout), [`try_lock`](Lock::try_lock) with one) |
//! | `lock.release()`, from any process; `ValueError` on an unheld lock | [`release`](Lock::release); [`Error::NotLocked`] (and [`Error::Guarded`] for a guard's hold) |
//! | `RLock()`, `acquire()`, `release()` | [`RLock::new()?`](RLock::new), guards, or [`acquire`](RLock::acquire) / [`release`](RLock::release) ([`Error::NotOwner`] from another thread) |
//! | `Semaphore(n)`, `BoundedSemaphore(n)` | [`Semaphore`], [`BoundedSemaphore`]: `acquire`, `acquire_timeout`, `try_acquire`, `release` |
//! | `Event()` | [`Event`]: `set`, `clear`, `is_set`, `wait`, `wait_timeout` |
//! | `Condition()`, `Condition(lock)` | [`Condition::with_lock(RLock::new()?)`](Condition::with_lock), [`Condition::new()`](Condition::new) (over a [`Lock`]) |
//! | `cond.wait()`, `wait(t)`, `wait_for(pred, t)` | [`wait`](Condition::wait), [`wait_timeout`](Condition::wait_timeout), [`wait_for`](Condition::wait_for), [`wait_for_timeout`](Condition::wait_for_timeout), and std's [`wait_while`](Condition::wait_while) |
//! | `cond.notify(n)`, `notify_all()`; `RuntimeError` without the lock | [`notify(n)`](Condition::notify), [`notify_all`](Condition::notify_all); [`Error::NotifyWithoutLock`] |
//! | `Barrier(n, action, timeout)` | [`Barrier`]: `wait`, `abort`, `reset`, `broken`, `n_waiting` |
//! | `Value('d', 0.0)`, `Array('i', 10)` | [`Value::new(0.0f64)?`](Value::new), [`Array::<i32>::new(10)?`](Array::new) (a [`Lock`] of their own) |
//! | `Value(t, x, lock=lock)`, `Array(t, xs, lock=lock)` | [`Value::with_lock(x, lock)`](Value::with_lock), [`Array::with_lock(xs, lock)`](Array::with_lock) (a [`Lock`] or an [`RLock`]) |
//! | `v.get_lock()`, `v.value` | [`get_lock`](Value::get_lock), [`get`](Value::get) / [`set`](Value::set), or `*v.lock()?` |
//! | `Value(t, x, lock=False)`, `RawValue`, `RawArray` | [`RawValue`], [`RawArray`] |
//! | `shared_memory.SharedMemory(name, create, size)` | [`Segment::create_named`], [`Segment::open`], [`Segment::create`] |
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
#[cfg(all(feature = "serde", not(loom)))]
pub mod handles;
pub use error::{Error, OwnerDied, Result, TryLockError};

#[cfg(not(loom))]
mod arena;
#[cfg(not(loom))]
mod barrier;
#[cfg(not(loom))]
mod cells;
#[cfg(not(loom))]
mod condition;
#[cfg(not(loom))]
mod event;
#[cfg(not(loom))]
mod item;
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
mod shareable_list;
#[cfg(not(loom))]
mod shared;
#[cfg(not(loom))]
mod shm_manager;
#[cfg(not(loom))]
mod value;

#[cfg(not(loom))]
pub use arena::Arena;
#[cfg(not(loom))]
pub use barrier::Barrier;
#[cfg(not(loom))]
pub use condition::{Condition, ConditionLock, Holds};
#[cfg(not(loom))]
pub use event::Event;
#[cfg(not(loom))]
pub use item::Item;
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
pub use shareable_list::{Iter, ShareableList};
#[cfg(not(loom))]
pub use shm_manager::SharedMemoryManager;
#[cfg(not(loom))]
pub use value::{Array, ArrayGuard, Value, ValueGuard};
