//! [`Shared<R>`]: a raw primitive placed at the start of the data of its own
//! anonymous segment, shared by every clone of the handle and every forked
//! child.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::Result;
use crate::segment::{Kind, Segment};

/// Raw state that may live in shared memory.
///
/// # Safety
/// The type is `#[repr(C)]`, made only of atomics (so every bit pattern is a
/// valid value and every access is through `&self`), and all zeroes is a
/// valid initial state.
pub(crate) unsafe trait SharedState: Sync {}

// SAFETY: a u32 atomic word; zero is a free lock.
unsafe impl SharedState for crate::raw::lock::RawLock {}
// SAFETY: two u32 atomic words; zero is a free lock with no count.
unsafe impl SharedState for crate::raw::rlock::RawRLock {}

pub(crate) struct Shared<R: SharedState> {
    seg: Arc<Segment>,
    _state: PhantomData<R>,
}

impl<R: SharedState> Clone for Shared<R> {
    fn clone(&self) -> Self {
        Shared {
            seg: Arc::clone(&self.seg),
            _state: PhantomData,
        }
    }
}

impl<R: SharedState> Shared<R> {
    /// A zeroed `R` (plus `extra` bytes after it) in a new anonymous segment.
    pub fn create(kind: Kind, extra: usize) -> Result<Self> {
        let seg = Segment::create_anonymous(kind, std::mem::size_of::<R>() + extra)?;
        Ok(Shared {
            seg: Arc::new(seg),
            _state: PhantomData,
        })
    }

    /// The raw state.
    #[inline]
    pub fn get(&self) -> &R {
        // SAFETY: the segment's data is at least size_of::<R>() bytes,
        // 64-byte aligned (more than any atomic needs), zero-filled at
        // creation and mapped for as long as `self.seg` lives; `R` is valid
        // for any bytes and only used through shared references (the
        // SharedState contract).
        unsafe { &*self.seg.as_ptr().cast::<R>() }
    }

    /// The bytes after `R`, for the data a primitive protects.
    pub fn extra_ptr(&self) -> *mut u8 {
        // SAFETY: the segment was created with room for R and then `extra`.
        unsafe { self.seg.as_ptr().add(std::mem::size_of::<R>()) }
    }

    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl<R: SharedState + std::fmt::Debug> std::fmt::Debug for Shared<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}
