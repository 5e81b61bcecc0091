//! [`Value`] and [`Array`]: plain-old-data in shared memory behind a lock,
//! as Python's `multiprocessing.Value` and `Array`; and [`RawValue`] and
//! [`RawArray`] without one.
//!
//! ```text
//! segment data: RawLock word | padding to T's alignment | T, or [T; len]
//! ```

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::error::{Error, OwnerDied, Result, TryLockError};
use crate::raw::lock::RawLock;
use crate::segment::Kind;
use crate::shared::Shared;

/// Shared memory for `len` values of `T` after a lock.
struct Cells<T: Pod> {
    raw: Shared<RawLock>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> Clone for Cells<T> {
    fn clone(&self) -> Self {
        Cells {
            raw: self.raw.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Pod> Cells<T> {
    fn create(kind: Kind, init: &[T]) -> Result<Self> {
        let bytes = std::mem::size_of_val(init);
        let raw = Shared::<RawLock>::create(kind, bytes, std::mem::align_of::<T>())?;
        let cells = Cells {
            raw,
            len: init.len(),
            _t: PhantomData,
        };
        // SAFETY: the segment has room for `len` T at `ptr()`, aligned for
        // T; nobody else has the handle yet.
        unsafe { std::ptr::copy_nonoverlapping(init.as_ptr(), cells.ptr(), init.len()) };
        Ok(cells)
    }

    fn ptr(&self) -> *mut T {
        self.raw.extra_ptr(std::mem::align_of::<T>()).cast::<T>()
    }

    fn lock(&self) -> &RawLock {
        self.raw.get()
    }

    /// A copy of element `i`, read without the lock, with relaxed atomic
    /// loads: another thread or process may write it meanwhile, and a torn
    /// copy of a Pod is still a valid value, but never a data race.
    fn read(&self, i: usize) -> T {
        assert!(
            i < self.len,
            "index {i} out of range for length {}",
            self.len
        );
        let mut out = T::zeroed();
        // SAFETY: in range (checked); the element is aligned for T, which
        // is what `atomic_copy` needs for word-sized copies.
        unsafe {
            atomic_copy(
                self.ptr().add(i).cast(),
                bytemuck::bytes_of_mut(&mut out).as_mut_ptr(),
                std::mem::size_of::<T>(),
                true,
            )
        };
        out
    }

    /// Overwrites element `i` with relaxed atomic stores.
    fn write(&self, i: usize, v: T) {
        assert!(
            i < self.len,
            "index {i} out of range for length {}",
            self.len
        );
        // SAFETY: as in `read`.
        unsafe {
            atomic_copy(
                self.ptr().add(i).cast(),
                bytemuck::bytes_of(&v).as_ptr().cast_mut(),
                std::mem::size_of::<T>(),
                false,
            )
        };
    }
}

/// Copies `len` bytes between shared memory at `shared` and local memory at
/// `local` (`out`: shared to local), touching shared memory only with
/// relaxed atomics: whole words where size and alignment allow, bytes
/// otherwise.
///
/// # Safety
/// `shared` is valid for `len` bytes and aligned for the type being copied;
/// `local` is valid for `len` bytes and not shared.
unsafe fn atomic_copy(shared: *mut u8, local: *mut u8, len: usize, out: bool) {
    use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering::Relaxed};
    macro_rules! word {
        ($atomic:ty, $int:ty) => {{
            // SAFETY: the caller's contract: `shared` is valid and aligned
            // for a type of this size (checked by the match below), `local`
            // is valid for as many bytes and read or written unaligned.
            unsafe {
                let a = &*shared.cast::<$atomic>();
                if out {
                    local.cast::<$int>().write_unaligned(a.load(Relaxed));
                } else {
                    a.store(local.cast::<$int>().read_unaligned(), Relaxed);
                }
            }
        }};
    }
    match len {
        1 => word!(AtomicU8, u8),
        2 if (shared as usize).is_multiple_of(2) => word!(AtomicU16, u16),
        4 if (shared as usize).is_multiple_of(4) => word!(AtomicU32, u32),
        8 if (shared as usize).is_multiple_of(8) => word!(AtomicU64, u64),
        _ => {
            for k in 0..len {
                // SAFETY: k < len, so both bytes are inside their regions;
                // a byte needs no alignment.
                unsafe {
                    let a = &*shared.add(k).cast::<AtomicU8>();
                    let l = local.add(k);
                    if out {
                        l.write(a.load(Relaxed));
                    } else {
                        a.store(l.read(), Relaxed);
                    }
                }
            }
        }
    }
}

macro_rules! locked_guard {
    ($guard:ident, $target:ty, $make:expr, $doc:literal) => {
        #[doc = $doc]
        #[must_use = "the lock is released as soon as the guard is dropped"]
        pub struct $guard<'a, T: Pod> {
            cells: &'a Cells<T>,
            _not_send: PhantomData<*const ()>,
        }

        impl<T: Pod> Deref for $guard<'_, T> {
            type Target = $target;
            fn deref(&self) -> &$target {
                let make: fn(&Cells<T>) -> &mut $target = $make;
                make(self.cells)
            }
        }

        impl<T: Pod> DerefMut for $guard<'_, T> {
            fn deref_mut(&mut self) -> &mut $target {
                let make: fn(&Cells<T>) -> &mut $target = $make;
                make(self.cells)
            }
        }

        impl<T: Pod> Drop for $guard<'_, T> {
            fn drop(&mut self) {
                // SAFETY: a guard is made only when this thread took the
                // lock with `RawLock::lock`; it is not Send, so this is that
                // thread, and only this drop releases that hold.
                unsafe { self.cells.lock().unlock() };
            }
        }

        impl<T: Pod + std::fmt::Debug> std::fmt::Debug for $guard<'_, T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                (**self).fmt(f)
            }
        }
    };
}

locked_guard!(
    ValueGuard,
    T,
    // SAFETY: the guard holds the lock, so no other process or thread that
    // respects it touches the value; the pointer is valid and aligned for
    // the segment's lifetime, which outlives the guard's borrow.
    |c| unsafe { &mut *c.ptr() },
    "The value of a [`Value`], locked; derefs to `T`. Not `Send`."
);
locked_guard!(
    ArrayGuard,
    [T],
    // SAFETY: as for ValueGuard, for the `len` elements of the array.
    |c| unsafe { std::slice::from_raw_parts_mut(c.ptr(), c.len) },
    "The elements of an [`Array`], locked; derefs to `[T]`. Not `Send`."
);

/// A `T` in shared memory behind a lock (Python's `Value`).
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
pub struct Value<T: Pod> {
    cells: Cells<T>,
}

impl<T: Pod> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            cells: self.cells.clone(),
        }
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Value").field(&self.get()).finish()
    }
}

impl<T: Pod> Value<T> {
    /// A shared value starting at `init`.
    pub fn new(init: T) -> Result<Value<T>> {
        Ok(Value {
            cells: Cells::create(Kind::VALUE, std::slice::from_ref(&init))?,
        })
    }

    fn guard(cells: &Cells<T>) -> ValueGuard<'_, T> {
        ValueGuard {
            cells,
            _not_send: PhantomData,
        }
    }

    /// Locks the value; the guard derefs to `T`.
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, OwnerDied<ValueGuard<'_, T>>> {
        OwnerDied::check(
            self.cells
                .lock()
                .lock(None)
                .expect("a wait without deadline only ends with the lock"),
            Self::guard(&self.cells),
        )
    }

    /// Locks the value, waiting at most `timeout`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ValueGuard<'_, T>, TryLockError<ValueGuard<'_, T>>> {
        TryLockError::timed(
            self.cells.lock().lock(Instant::now().checked_add(timeout)),
            || Self::guard(&self.cells),
        )
    }

    /// A copy of the value, taken under the lock. A holder that died is
    /// ignored here: use [`lock`](Value::lock) to learn of it.
    pub fn get(&self) -> T {
        match self.lock() {
            Ok(g) => *g,
            Err(died) => *died.into_inner(),
        }
    }

    /// Sets the value under the lock.
    pub fn set(&self, v: T) {
        match self.lock() {
            Ok(mut g) => *g = v,
            Err(died) => *died.into_inner() = v,
        }
    }
}

/// `len` values of `T` in shared memory behind one lock (Python's `Array`).
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
pub struct Array<T: Pod> {
    cells: Cells<T>,
}

impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            cells: self.cells.clone(),
        }
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Array").field(&self.to_vec()).finish()
    }
}

impl<T: Pod> Array<T> {
    /// `len` zeroed elements.
    pub fn new(len: usize) -> Result<Array<T>> {
        Self::from_slice(&vec![T::zeroed(); len])
    }

    /// A copy of `init` in shared memory.
    pub fn from_slice(init: &[T]) -> Result<Array<T>> {
        if init.is_empty() {
            return Err(Error::Invalid("an Array needs at least one element"));
        }
        Ok(Array {
            cells: Cells::create(Kind::ARRAY, init)?,
        })
    }

    fn guard(cells: &Cells<T>) -> ArrayGuard<'_, T> {
        ArrayGuard {
            cells,
            _not_send: PhantomData,
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

    /// Locks the array; the guard derefs to `[T]`.
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, OwnerDied<ArrayGuard<'_, T>>> {
        OwnerDied::check(
            self.cells
                .lock()
                .lock(None)
                .expect("a wait without deadline only ends with the lock"),
            Self::guard(&self.cells),
        )
    }

    /// Locks the array, waiting at most `timeout`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ArrayGuard<'_, T>, TryLockError<ArrayGuard<'_, T>>> {
        TryLockError::timed(
            self.cells.lock().lock(Instant::now().checked_add(timeout)),
            || Self::guard(&self.cells),
        )
    }

    /// A copy of the elements, taken under the lock.
    pub fn to_vec(&self) -> Vec<T> {
        match self.lock() {
            Ok(g) => g.to_vec(),
            Err(died) => died.into_inner().to_vec(),
        }
    }
}

/// A `T` in shared memory with no lock (Python's `RawValue`): each `get`
/// and `set` is one copy made of relaxed atomic operations, so concurrent
/// writers may interleave (a value larger than a word can be torn, and a
/// read-modify-write can lose updates) but never race. For updates by
/// several processes use [`Value`], or [`atomic`](RawValue::atomic) for
/// integers.
pub struct RawValue<T: Pod> {
    cells: Cells<T>,
}

impl<T: Pod> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue {
            cells: self.cells.clone(),
        }
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

impl<T: Pod> RawValue<T> {
    /// A shared value starting at `init`.
    pub fn new(init: T) -> Result<RawValue<T>> {
        Ok(RawValue {
            cells: Cells::create(Kind::VALUE, std::slice::from_ref(&init))?,
        })
    }

    /// A copy of the value.
    pub fn get(&self) -> T {
        self.cells.read(0)
    }

    /// Overwrites the value.
    pub fn set(&self, v: T) {
        self.cells.write(0, v);
    }

    /// A pointer to the value in shared memory, for atomics of your own.
    pub fn as_ptr(&self) -> *mut T {
        self.cells.ptr()
    }
}

/// `len` values of `T` in shared memory with no lock (Python's `RawArray`).
pub struct RawArray<T: Pod> {
    cells: Cells<T>,
}

impl<T: Pod> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            cells: self.cells.clone(),
        }
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RawArray").field(&self.to_vec()).finish()
    }
}

impl<T: Pod> RawArray<T> {
    /// `len` zeroed elements.
    pub fn new(len: usize) -> Result<RawArray<T>> {
        Self::from_slice(&vec![T::zeroed(); len])
    }

    /// A copy of `init` in shared memory.
    pub fn from_slice(init: &[T]) -> Result<RawArray<T>> {
        if init.is_empty() {
            return Err(Error::Invalid("a RawArray needs at least one element"));
        }
        Ok(RawArray {
            cells: Cells::create(Kind::ARRAY, init)?,
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.cells.len
    }

    /// Always false: a RawArray has at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// A copy of element `i`. Panics if out of range, as indexing does.
    pub fn get(&self, i: usize) -> T {
        self.cells.read(i)
    }

    /// Overwrites element `i`. Panics if out of range.
    pub fn set(&self, i: usize, v: T) {
        self.cells.write(i, v);
    }

    /// A copy of every element.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// A pointer to the first element in shared memory.
    pub fn as_ptr(&self) -> *mut T {
        self.cells.ptr()
    }
}

macro_rules! atomic_views {
    ($($int:ty => $atomic:ident),* $(,)?) => {$(
        impl RawValue<$int> {
            /// The value as an atomic integer in shared memory: lock-free
            /// counters and flags shared between processes.
            ///
            /// ```
            /// use std::sync::atomic::Ordering;
            ///
            #[doc = concat!("let hits = procs_sync::RawValue::new(0 as ", stringify!($int), ")?;")]
            /// let h = hits.clone();
            /// let mut child = procs_core::Process::new(move || {
            ///     h.atomic().fetch_add(1, Ordering::Relaxed);
            /// });
            /// child.start()?;
            /// hits.atomic().fetch_add(1, Ordering::Relaxed);
            /// child.join()?;
            /// assert_eq!(hits.atomic().load(Ordering::Relaxed), 2);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn atomic(&self) -> &std::sync::atomic::$atomic {
                const {
                    assert!(
                        std::mem::align_of::<$int>()
                            == std::mem::align_of::<std::sync::atomic::$atomic>()
                    )
                };
                // SAFETY: the value is aligned for its integer type, which
                // has the size and alignment of its atomic; the memory lives
                // as long as `self`; any bit pattern is a valid integer.
                unsafe { &*self.cells.ptr().cast::<std::sync::atomic::$atomic>() }
            }
        }
    )*};
}

atomic_views!(
    u8 => AtomicU8, u16 => AtomicU16, u32 => AtomicU32, u64 => AtomicU64, usize => AtomicUsize,
    i8 => AtomicI8, i16 => AtomicI16, i32 => AtomicI32, i64 => AtomicI64, isize => AtomicIsize,
);
