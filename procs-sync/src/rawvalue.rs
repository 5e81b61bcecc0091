//! [`RawValue`] and [`RawArray`]: plain-old-data in shared memory with no
//! lock, as Python's `multiprocessing.RawValue` and `RawArray` (and
//! `Value(..., lock=False)`).

use bytemuck::Pod;

use crate::cells::Cells;
use crate::error::{Error, Result};
use crate::segment::Kind;

/// A `T` in shared memory with no lock (Python's `RawValue`): each `get`
/// and `set` is one copy made of relaxed atomic operations, so concurrent
/// writers may interleave (a value larger than a word can be torn, and a
/// read-modify-write can lose updates) but never race. For updates by
/// several processes use [`Value`](crate::Value), or [`atomic`](RawValue::atomic) for
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
