//! [`Value`] and [`Array`]: plain-old-data in shared memory behind a lock,
//! as Python's `multiprocessing.Value` and `Array`.
//!
//! The lock is a [`Lock`] of the value's own (`new`: the lock word at the
//! start of the value's segment), or any [`Lock`] or [`RLock`](crate::RLock)
//! given to `with_lock` (Python's `lock=`), which a
//! [`Condition`](crate::Condition) or another value may share. Python's
//! `lock=False` is [`RawValue`](crate::RawValue) and
//! [`RawArray`](crate::RawArray).
//!
//! A guard over a [`Lock`] derefs to the data: the lock is not re-entrant,
//! so no other guard of it exists anywhere while it lives. A guard over an
//! [`RLock`](crate::RLock) does not (the holding thread may take another):
//! it reads and writes by copy (`get`, `set`), as Python's `.value` does.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytemuck::Pod;

use crate::cells::Cells;
use crate::condition::{ConditionLock, Holds, sealed};
use crate::error::{Error, OwnerDied, Result, TryLockError};
use crate::lock::Lock;
use crate::segment::Kind;

/// The value of a [`Value`], locked. Over a [`Lock`] (the default) it
/// derefs to `T`; over any lock it reads and writes by copy with
/// [`get`](ValueGuard::get) and [`set`](ValueGuard::set). A
/// [`Condition`](crate::Condition) over the value's lock waits with it. Not
/// `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: Pod, L: ConditionLock + 'a = Lock> {
    cells: &'a Cells<T>,
    guard: L::Guard<'a>,
}

/// The elements of an [`Array`], locked. Over a [`Lock`] (the default) it
/// derefs to `[T]`; over any lock it reads and writes elements by copy. Not
/// `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Pod, L: ConditionLock + 'a = Lock> {
    cells: &'a Cells<T>,
    guard: L::Guard<'a>,
}

impl<'a, T: Pod, L: ConditionLock> ValueGuard<'a, T, L> {
    /// A copy of the value.
    pub fn get(&self) -> T {
        self.cells.read(0)
    }

    /// Overwrites the value.
    pub fn set(&self, v: T) {
        self.cells.write(0, v);
    }

    /// The guard of the lock itself, which this guard holds.
    pub fn lock_guard(&self) -> &L::Guard<'a> {
        &self.guard
    }
}

impl<'a, T: Pod, L: ConditionLock> ArrayGuard<'a, T, L> {
    /// A copy of element `i`. Panics if out of range, as indexing does.
    pub fn get(&self, i: usize) -> T {
        self.cells.read(i)
    }

    /// Overwrites element `i`. Panics if out of range.
    pub fn set(&self, i: usize, v: T) {
        self.cells.write(i, v);
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.cells.len
    }

    /// Always false: an Array has at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// A copy of every element.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.cells.len).map(|i| self.cells.read(i)).collect()
    }

    /// The guard of the lock itself, which this guard holds.
    pub fn lock_guard(&self) -> &L::Guard<'a> {
        &self.guard
    }
}

impl<T: Pod> Deref for ValueGuard<'_, T, Lock> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the value's Lock, which is not re-entrant
        // and whose guarded hold nobody else may release: no other guard
        // of it, and so no other reference to the value, exists in any
        // thread or process that respects it. The pointer is valid and
        // aligned for the segment's lifetime, which outlives the borrow.
        unsafe { &*self.cells.ptr() }
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T, Lock> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference
        // through this guard.
        unsafe { &mut *self.cells.ptr() }
    }
}

impl<T: Pod> Deref for ArrayGuard<'_, T, Lock> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: as for ValueGuard, for the `len` elements of the array.
        unsafe { std::slice::from_raw_parts(self.cells.ptr(), self.cells.len) }
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T, Lock> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for ValueGuard, for the `len` elements of the array.
        unsafe { std::slice::from_raw_parts_mut(self.cells.ptr(), self.cells.len) }
    }
}

impl<T: Pod, L: ConditionLock> sealed::SealedGuard for ValueGuard<'_, T, L> {}
impl<T: Pod, L: ConditionLock> sealed::SealedGuard for ArrayGuard<'_, T, L> {}

impl<T: Pod, L: ConditionLock> Holds<L> for ValueGuard<'_, T, L> {
    fn held(&self) -> &L {
        self.guard.held()
    }
}

impl<T: Pod, L: ConditionLock> Holds<L> for ArrayGuard<'_, T, L> {
    fn held(&self) -> &L {
        self.guard.held()
    }
}

impl<T: Pod + std::fmt::Debug, L: ConditionLock> std::fmt::Debug for ValueGuard<'_, T, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl<T: Pod + std::fmt::Debug, L: ConditionLock> std::fmt::Debug for ArrayGuard<'_, T, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_vec().fmt(f)
    }
}

/// A taken lock's guard `g`, or the `OwnerDied` that carries it, with `g`
/// wrapped by `wrap`.
fn rewrap<G, W>(
    taken: Result<G, OwnerDied<G>>,
    wrap: impl FnOnce(G) -> W,
) -> Result<W, OwnerDied<W>> {
    match taken {
        Ok(g) => Ok(wrap(g)),
        Err(died) => {
            let holder = died.holder();
            Err(OwnerDied::new(wrap(died.into_inner()), holder))
        }
    }
}

/// As [`rewrap`], for a take with a timeout.
fn rewrap_timed<G, W>(
    taken: Result<G, TryLockError<G>>,
    wrap: impl FnOnce(G) -> W,
) -> Result<W, TryLockError<W>> {
    match taken {
        Ok(g) => Ok(wrap(g)),
        Err(TryLockError::WouldBlock) => Err(TryLockError::WouldBlock),
        Err(TryLockError::Timeout) => Err(TryLockError::Timeout),
        Err(TryLockError::OwnerDied(died)) => {
            let holder = died.holder();
            Err(TryLockError::OwnerDied(OwnerDied::new(
                wrap(died.into_inner()),
                holder,
            )))
        }
    }
}

/// A `T` in shared memory behind a lock (Python's `Value`): a [`Lock`] of
/// its own with [`new`](Value::new), or a given [`Lock`] or
/// [`RLock`](crate::RLock) with [`with_lock`](Value::with_lock).
///
/// ```
/// use procs_sync::Value;
///
/// let counter = Value::new(0u64)?;
/// let c = counter.clone();
/// let mut child = procs_core::Process::new(move || {
///     for _ in 0..1000 {
///         *c.lock().unwrap() += 1;
///     }
/// });
/// child.start()?;
/// for _ in 0..1000 {
///     *counter.lock().unwrap() += 1;
/// }
/// child.join()?;
/// assert_eq!(counter.get(), 2000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Value<T: Pod, L: ConditionLock = Lock> {
    cells: Cells<T>,
    lock: L,
}

impl<T: Pod, L: ConditionLock> Clone for Value<T, L> {
    fn clone(&self) -> Self {
        Value {
            cells: self.cells.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<T: Pod + std::fmt::Debug, L: ConditionLock> std::fmt::Debug for Value<T, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Value").field(&self.get()).finish()
    }
}

impl<T: Pod> Value<T> {
    /// The value of `cells` (one element), behind their own lock word.
    pub(crate) fn from_cells(cells: Cells<T>) -> Value<T> {
        let lock = Lock::over(cells.raw.clone());
        Value { cells, lock }
    }

    /// A shared value starting at `init`, behind a [`Lock`] of its own
    /// (in the same segment).
    pub fn new(init: T) -> Result<Value<T>> {
        let cells = Cells::create(Kind::VALUE, std::slice::from_ref(&init))?;
        let lock = Lock::over(cells.raw.clone());
        Ok(Value { cells, lock })
    }
}

impl<T: Pod, L: ConditionLock> Value<T, L> {
    /// A shared value starting at `init`, behind `lock` (Python's
    /// `Value(t, init, lock=lock)`): a [`Lock`] or an [`RLock`](crate::RLock)
    /// that other values, or a [`Condition`](crate::Condition), may share.
    ///
    /// ```
    /// use procs_sync::{Condition, Lock, Value};
    ///
    /// let ready = Value::with_lock(0u32, Lock::new()?)?;
    /// let cond = Condition::with_lock(ready.get_lock().clone())?;
    /// let (r, c) = (ready.clone(), cond.clone());
    /// let mut child = procs_core::Process::new(move || {
    ///     let mut g = r.lock().unwrap();
    ///     *g = 1;
    ///     c.notify_all().unwrap();
    /// });
    /// child.start()?;
    /// // The condition waits with the value's own guard.
    /// let mut g = ready.lock().unwrap();
    /// while *g == 0 {
    ///     g = cond.wait(g).unwrap();
    /// }
    /// drop(g);
    /// child.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_lock(init: T, lock: L) -> Result<Value<T, L>> {
        Ok(Value {
            cells: Cells::create(Kind::VALUE, std::slice::from_ref(&init))?,
            lock,
        })
    }

    /// The lock behind the value (Python's `get_lock()`).
    pub fn get_lock(&self) -> &L {
        &self.lock
    }

    fn wrap<'a>(&'a self) -> impl FnOnce(L::Guard<'a>) -> ValueGuard<'a, T, L> {
        |guard| ValueGuard {
            cells: &self.cells,
            guard,
        }
    }

    /// Locks the value; the guard derefs to `T` over a [`Lock`].
    pub fn lock(&self) -> Result<ValueGuard<'_, T, L>, OwnerDied<ValueGuard<'_, T, L>>> {
        rewrap(self.lock.take(), self.wrap())
    }

    /// Locks the value, waiting at most `timeout`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ValueGuard<'_, T, L>, TryLockError<ValueGuard<'_, T, L>>> {
        rewrap_timed(self.lock.take_timeout(timeout), self.wrap())
    }

    /// A copy of the value, taken under the lock (Python's `.value`). A
    /// holder that died is ignored here: use [`lock`](Value::lock) to learn
    /// of it.
    pub fn get(&self) -> T {
        self.lock().unwrap_or_else(OwnerDied::into_inner).get()
    }

    /// Sets the value under the lock.
    pub fn set(&self, v: T) {
        self.lock().unwrap_or_else(OwnerDied::into_inner).set(v);
    }
}

/// `len` values of `T` in shared memory behind one lock (Python's `Array`):
/// a [`Lock`] of its own with [`new`](Array::new), or a given lock with
/// [`with_lock`](Array::with_lock).
///
/// ```
/// use procs_sync::Array;
///
/// let squares = Array::<u32>::new(4)?;
/// let s = squares.clone();
/// let mut child = procs_core::Process::new(move || {
///     for (i, x) in s.lock().unwrap().iter_mut().enumerate() {
///         *x = (i * i) as u32;
///     }
/// });
/// child.start()?;
/// child.join()?;
/// assert_eq!(squares.to_vec(), [0, 1, 4, 9]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Array<T: Pod, L: ConditionLock = Lock> {
    cells: Cells<T>,
    lock: L,
}

impl<T: Pod, L: ConditionLock> Clone for Array<T, L> {
    fn clone(&self) -> Self {
        Array {
            cells: self.cells.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<T: Pod + std::fmt::Debug, L: ConditionLock> std::fmt::Debug for Array<T, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Array").field(&self.to_vec()).finish()
    }
}

fn array_cells<T: Pod>(init: &[T]) -> Result<Cells<T>> {
    if init.is_empty() {
        return Err(Error::Invalid("an Array needs at least one element"));
    }
    Cells::create(Kind::ARRAY, init)
}

impl<T: Pod> Array<T> {
    /// `len` zeroed elements, behind a [`Lock`] of their own.
    pub fn new(len: usize) -> Result<Array<T>> {
        Self::from_slice(&vec![T::zeroed(); len])
    }

    /// A copy of `init` in shared memory, behind a [`Lock`] of its own.
    pub fn from_slice(init: &[T]) -> Result<Array<T>> {
        let cells = array_cells(init)?;
        let lock = Lock::over(cells.raw.clone());
        Ok(Array { cells, lock })
    }
}

impl<T: Pod, L: ConditionLock> Array<T, L> {
    /// A copy of `init` in shared memory, behind `lock` (Python's
    /// `Array(t, init, lock=lock)`).
    ///
    /// ```
    /// use procs_sync::{Array, RLock};
    ///
    /// let arr = Array::with_lock(&[1u8, 2, 3], RLock::new()?)?;
    /// // Over an RLock, the holder may go on using the array's own calls.
    /// let g = arr.lock().unwrap();
    /// g.set(0, 7);
    /// assert_eq!(arr.to_vec(), [7, 2, 3]);
    /// drop(g);
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn with_lock(init: &[T], lock: L) -> Result<Array<T, L>> {
        Ok(Array {
            cells: array_cells(init)?,
            lock,
        })
    }

    /// The lock behind the array (Python's `get_lock()`).
    pub fn get_lock(&self) -> &L {
        &self.lock
    }

    fn wrap<'a>(&'a self) -> impl FnOnce(L::Guard<'a>) -> ArrayGuard<'a, T, L> {
        |guard| ArrayGuard {
            cells: &self.cells,
            guard,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.cells.len
    }

    /// Always false: an Array has at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Locks the array; the guard derefs to `[T]` over a [`Lock`].
    pub fn lock(&self) -> Result<ArrayGuard<'_, T, L>, OwnerDied<ArrayGuard<'_, T, L>>> {
        rewrap(self.lock.take(), self.wrap())
    }

    /// Locks the array, waiting at most `timeout`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ArrayGuard<'_, T, L>, TryLockError<ArrayGuard<'_, T, L>>> {
        rewrap_timed(self.lock.take_timeout(timeout), self.wrap())
    }

    /// A copy of the elements, taken under the lock.
    pub fn to_vec(&self) -> Vec<T> {
        self.lock().unwrap_or_else(OwnerDied::into_inner).to_vec()
    }
}

/// A value travels as its segment and its lock (the value's own, in the
/// same segment, or one of its own: a [`Lock`] or an [`RLock`](crate::RLock)
/// travels too).
#[cfg(all(feature = "serde", not(loom)))]
impl<T: Pod, L: ConditionLock + serde::Serialize> serde::Serialize for Value<T, L> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serde::Serialize::serialize(
            &(
                {
                    use serde::ser::Error as _;
                    self.cells.raw.segment().map_err(S::Error::custom)?
                },
                &self.lock,
            ),
            s,
        )
    }
}

#[cfg(all(feature = "serde", not(loom)))]
impl<'de, T: Pod, L: ConditionLock + serde::Deserialize<'de>> serde::Deserialize<'de>
    for Value<T, L>
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (seg, lock): (crate::Segment, L) = serde::Deserialize::deserialize(d)?;
        let cells = Cells::from_segment(seg, Kind::VALUE, Some(1)).map_err(D::Error::custom)?;
        Ok(Value { cells, lock })
    }
}

/// An array travels as a value does: its segment (its length counted from
/// it) and its lock.
#[cfg(all(feature = "serde", not(loom)))]
impl<T: Pod, L: ConditionLock + serde::Serialize> serde::Serialize for Array<T, L> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let len = self.cells.len as u64;
        serde::Serialize::serialize(
            &(
                {
                    use serde::ser::Error as _;
                    self.cells.raw.segment().map_err(S::Error::custom)?
                },
                len,
                &self.lock,
            ),
            s,
        )
    }
}

#[cfg(all(feature = "serde", not(loom)))]
impl<'de, T: Pod, L: ConditionLock + serde::Deserialize<'de>> serde::Deserialize<'de>
    for Array<T, L>
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (seg, len, lock): (crate::Segment, u64, L) = serde::Deserialize::deserialize(d)?;
        let len =
            usize::try_from(len).map_err(|_| D::Error::custom("an array longer than memory"))?;
        let cells = Cells::from_segment(seg, Kind::ARRAY, Some(len)).map_err(D::Error::custom)?;
        Ok(Array { cells, lock })
    }
}
