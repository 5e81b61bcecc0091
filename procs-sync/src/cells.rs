//! [`Cells`]: `len` values of a plain-old-data `T` in shared memory after
//! a lock word, the storage of [`Value`](crate::Value), [`Array`](crate::Array),
//! [`RawValue`](crate::RawValue) and [`RawArray`](crate::RawArray).
//!
//! ```text
//! segment data: RawLock word | padding to T's alignment | T, or [T; len]
//! ```
//!
//! The lock word is the lock of a `Value` or `Array` made with `new`; one
//! made over a lock of its own (`with_lock`), and the raw kinds, leave it
//! unused.

use std::marker::PhantomData;

use bytemuck::Pod;

use crate::error::Result;
use crate::raw::lock::RawLock;
use crate::segment::Kind;
use crate::shared::Shared;

/// Shared memory for `len` values of `T` after a lock.
pub(crate) struct Cells<T: Pod> {
    pub(crate) raw: Shared<RawLock>,
    pub(crate) len: usize,
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

/// Cells travel as their segment; the receiver counts `len` from its size
/// and checks that a whole number of `T` fits (the element type itself is
/// not recorded: a `Value<u64>` read as a `Value<f64>` reads the same bytes).
#[cfg(all(feature = "serde", not(loom)))]
impl<T: Pod> Cells<T> {
    pub(crate) fn from_segment(
        seg: crate::Segment,
        kind: Kind,
        len: Option<usize>,
    ) -> std::result::Result<Self, String> {
        let size = seg.size();
        let raw = Shared::<RawLock>::from_segment(seg, &[kind])?;
        let offset = Shared::<RawLock>::extra_offset(std::mem::align_of::<T>());
        let room = size.saturating_sub(offset);
        let each = std::mem::size_of::<T>().max(1);
        if !room.is_multiple_of(each) {
            return Err("the segment does not hold a whole number of elements of this type".into());
        }
        let found = room / each;
        if len.is_some_and(|l| l != found) {
            return Err("the segment holds another number of elements".into());
        }
        Ok(Cells {
            raw,
            len: found,
            _t: PhantomData,
        })
    }
}

impl<T: Pod> Cells<T> {
    pub(crate) fn create(kind: Kind, init: &[T]) -> Result<Self> {
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

    /// One `init` in `raw`, a fresh arena slot with room for it after the
    /// lock word (checked by the caller).
    pub(crate) fn in_slot(raw: Shared<RawLock>, init: T) -> Self {
        let cells = Cells {
            raw,
            len: 1,
            _t: PhantomData,
        };
        // SAFETY: the slot has room for one T at `ptr()`, aligned for T
        // (the caller checked both); nobody else has the handle yet.
        unsafe { std::ptr::write(cells.ptr(), init) };
        cells
    }

    pub(crate) fn ptr(&self) -> *mut T {
        self.raw.extra_ptr(std::mem::align_of::<T>()).cast::<T>()
    }

    /// A copy of element `i`, read without the lock, with relaxed atomic
    /// loads: another thread or process may write it meanwhile, and a torn
    /// copy of a Pod is still a valid value, but never a data race.
    pub(crate) fn read(&self, i: usize) -> T {
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
    pub(crate) fn write(&self, i: usize, v: T) {
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
