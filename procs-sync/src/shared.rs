//! [`Shared<R>`]: a raw primitive placed at the start of the data of its own
//! anonymous segment, shared by every clone of the handle and every forked
//! child.

use std::marker::PhantomData;
use std::ptr::NonNull;
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

// SAFETY: two u32 atomic words; zero is no permit, no sleeper (the count
// is set by `init` before the handle is shared).
unsafe impl SharedState for crate::raw::semaphore::RawSemaphore {}
// SAFETY: atomics only; zero is a cleared event with no waiter.
unsafe impl SharedState for crate::raw::event::RawEvent {}
// SAFETY: atomics only; zero is a condition variable with no waiter.
unsafe impl SharedState for crate::raw::condvar::RawCondvar {}
// SAFETY: three u32 atomics; zero is round 0 with nobody arrived (the
// number of parties is set by `init` before the handle is shared).
unsafe impl SharedState for crate::raw::barrier::RawBarrier {}

pub(crate) struct Shared<R: SharedState> {
    seg: Arc<Segment>,
    /// The state at the start of the segment's data (or in its arena
    /// slot), kept here so that reaching it is one load, not two (the
    /// lock's fast path counts).
    state: NonNull<R>,
    /// In an [`Arena`](crate::Arena): the slot, whose count of handles
    /// (in every process) lives in the arena.
    slot: Option<crate::arena::Slot>,
    _state: PhantomData<R>,
}

impl<R: SharedState> Drop for Shared<R> {
    fn drop(&mut self) {
        if let Some(slot) = &self.slot {
            slot.release();
        }
    }
}

// SAFETY: `state` points into the mapping that `seg` keeps alive, and `R`
// is only reached through shared references and is Sync (SharedState); the
// segment handle is Send and Sync.
unsafe impl<R: SharedState> Send for Shared<R> {}
// SAFETY: as above.
unsafe impl<R: SharedState> Sync for Shared<R> {}

impl<R: SharedState> Clone for Shared<R> {
    fn clone(&self) -> Self {
        Shared {
            seg: Arc::clone(&self.seg),
            state: self.state,
            slot: self.slot.as_ref().map(crate::arena::Slot::retain),
            _state: PhantomData,
        }
    }
}

impl<R: SharedState> Shared<R> {
    /// A zeroed `R`, then `extra` bytes at [`extra_offset`] for
    /// `extra_align`, in a new anonymous segment.
    ///
    /// [`extra_offset`]: Shared::extra_offset
    /// The segment the state lives in (for a handle that travels).
    #[cfg(all(feature = "serde", not(loom)))]
    pub fn segment(&self) -> std::result::Result<&Segment, String> {
        match self.slot {
            None => Ok(&self.seg),
            Some(_) => Err(procs_core::handles::refused(
                "a primitive of an Arena reaches forked children only: it cannot travel on its \
                 own (its arena's segment holds others)",
            )),
        }
    }

    /// The state in `slot` of an arena's segment `seg` (zeroed, its count
    /// of handles at one).
    pub fn in_arena(seg: Arc<Segment>, state: NonNull<R>, slot: crate::arena::Slot) -> Self {
        Shared {
            seg,
            state,
            slot: Some(slot),
            _state: PhantomData,
        }
    }

    /// The state at the start of `seg`, a segment of one of `kinds` that
    /// came from another process; its header was checked as it was
    /// attached.
    #[cfg(all(feature = "serde", not(loom)))]
    pub fn from_segment(seg: Segment, kinds: &[Kind]) -> std::result::Result<Self, String> {
        let kind = seg.kind();
        if !kinds.iter().any(|k| k.0 == kind.0) {
            return Err(format!(
                "a {} segment where a {} was expected",
                kind.name(),
                kinds[0].name()
            ));
        }
        if seg.size() < std::mem::size_of::<R>() {
            return Err("a segment too small for its state".into());
        }
        let state = NonNull::new(seg.as_ptr().cast::<R>()).ok_or("a mapping at address 0")?;
        Ok(Shared {
            seg: Arc::new(seg),
            state,
            slot: None,
            _state: PhantomData,
        })
    }

    pub fn create(kind: Kind, extra: usize, extra_align: usize) -> Result<Self> {
        if extra_align > 64 {
            return Err(crate::Error::Invalid("alignment above 64 bytes"));
        }
        let offset = Self::extra_offset(extra_align);
        let size = offset
            .checked_add(extra)
            .ok_or(crate::Error::Invalid("size overflows"))?;
        let seg = Segment::create_anonymous(kind, size)?;
        let state = NonNull::new(seg.as_ptr().cast::<R>())
            .ok_or(crate::Error::Invalid("a mapping at address 0"))?;
        Ok(Shared {
            seg: Arc::new(seg),
            state,
            slot: None,
            _state: PhantomData,
        })
    }

    /// Where the extra bytes start: after `R`, aligned for `align`.
    pub fn extra_offset(align: usize) -> usize {
        std::mem::size_of::<R>().next_multiple_of(align.max(1))
    }

    /// The raw state.
    #[inline]
    pub fn get(&self) -> &R {
        // SAFETY: `state` is the start of the segment's data, which is at
        // least size_of::<R>() bytes, 64-byte aligned (more than any atomic
        // needs), zero-filled at creation and mapped for as long as
        // `self.seg` lives; `R` is valid for any bytes and only used through
        // shared references (the SharedState contract).
        unsafe { self.state.as_ref() }
    }

    /// The extra bytes, for the data a primitive protects.
    pub fn extra_ptr(&self, align: usize) -> *mut u8 {
        // SAFETY: the state's place (the segment's data, or an arena's
        // slot) was made with room for R and then the extra bytes at this
        // offset (`create`, `Arena::value`).
        unsafe {
            self.state
                .as_ptr()
                .cast::<u8>()
                .add(Self::extra_offset(align))
        }
    }
}

impl<R: SharedState + std::fmt::Debug> std::fmt::Debug for Shared<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}
