//! [`Arena`]: many primitives in one segment, at the cost of one
//! descriptor and one mapping.
//!
//! ```text
//! data: Header (64 bytes) | refs: [u32; n] | next: [u32; n] | slots: [64 bytes; n]
//! ```
//!
//! Each primitive takes a slot of one cache line. Its handles, in every
//! process, are counted in `refs`: a clone adds one, a drop takes one away,
//! and the slot goes back to the free list (`next`, a stack under the
//! header's lock) when the count reaches zero. A handle moved into a child
//! being started is handed over, not dropped: the parent's copy leaves the
//! count as it is, and the child's drop takes its one away
//! ([`procs_core::handing_over_to`]). A process killed while it held
//! handles leaves their slots taken until the arena's segment goes (with
//! its last handle, in the last process that maps it).

use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::cells::Cells;
use crate::error::{Error, Result};
use crate::raw::event::RawEvent;
use crate::raw::lock::RawLock;
use crate::raw::rlock::RawRLock;
use crate::raw::semaphore::RawSemaphore;
use crate::segment::{Kind, Segment};
use crate::shared::{Shared, SharedState};
use crate::{Event, Lock, RLock, Semaphore, Value};

/// A slot's size: one cache line, so that two primitives never share one.
const SLOT: usize = 64;

/// The arena's own state, at the start of its segment's data.
#[repr(C)]
struct Header {
    /// Guards `free`, `next` and `bump` (taking and freeing slots).
    lock: RawLock,
    /// The free list's first slot plus one (0: empty).
    free: AtomicU32,
    /// Slots never used are `bump..capacity`.
    bump: AtomicU32,
    capacity: AtomicU32,
    /// Slots taken now.
    used: AtomicU32,
}

const _: () = {
    assert!(std::mem::size_of::<Header>() <= SLOT);
    assert!(std::mem::size_of::<RawLock>() <= SLOT);
    assert!(std::mem::size_of::<RawRLock>() <= SLOT);
    assert!(std::mem::size_of::<RawSemaphore>() <= SLOT);
    assert!(std::mem::size_of::<RawEvent>() <= SLOT);
};

/// Where the parts of an arena of `n` slots lie in its data.
#[derive(Clone, Copy)]
struct Layout {
    refs: usize,
    next: usize,
    slots: usize,
    size: usize,
}

impl Layout {
    fn of(n: usize) -> Option<Layout> {
        let refs = SLOT;
        let next = refs.checked_add(n.checked_mul(4)?)?;
        let slots = next.checked_add(n.checked_mul(4)?)?.next_multiple_of(SLOT);
        let size = slots.checked_add(n.checked_mul(SLOT)?)?;
        Some(Layout {
            refs,
            next,
            slots,
            size,
        })
    }
}

/// One segment that holds many [`Lock`]s, [`RLock`]s, [`Semaphore`]s,
/// [`Event`]s and small [`Value`]s (Python's multiprocessing heap, for primitives): a program
/// that needs a hundred thousand of them pays one descriptor and one
/// mapping, not one each. Its primitives are the same types, used the same
/// way, and reach children started by a fork with the rest of what a
/// child's target captures; a dropped primitive's slot is used again.
///
/// ```
/// use procs_sync::Arena;
///
/// let arena = Arena::new(10_000)?;
/// let locks = (0..10_000).map(|_| arena.lock()).collect::<Result<Vec<_>, _>>()?;
/// assert_eq!(arena.in_use(), 10_000);
/// let held = locks[7].lock().unwrap();
/// let l = locks[7].clone();
/// let mut child = procs_core::Process::new(move || assert!(l.try_lock().is_err()));
/// child.start()?;
/// assert_eq!(child.join()?, 0);
/// drop(held);
/// drop(locks);
/// assert_eq!(arena.in_use(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Arena {
    seg: Arc<Segment>,
    view: View,
}

/// An arena's memory as its holder reaches it: the start of its segment's
/// data and the layout. Valid while the segment is mapped, which its
/// holder makes sure of (an [`Arena`] holds the segment; a [`Slot`] lives
/// in a primitive's `Shared`, which holds it too).
#[derive(Clone, Copy)]
struct View {
    base: NonNull<u8>,
    layout: Layout,
}

// SAFETY: `view` points into the mapping `seg` keeps alive; what it reaches
// is atomics only, through shared references.
unsafe impl Send for Arena {}
// SAFETY: as above.
unsafe impl Sync for Arena {}
// SAFETY: a slot's view points into the mapping its primitive's `Shared`
// keeps alive (see `View`); atomics only.
unsafe impl Send for Slot {}
// SAFETY: as above.
unsafe impl Sync for Slot {}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("capacity", &self.capacity())
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl Arena {
    /// An arena of `slots` primitives (at least 1, at most 2^31), in a new
    /// anonymous segment of about 72 bytes a slot.
    pub fn new(slots: usize) -> Result<Arena> {
        if slots == 0 || slots > 1 << 31 {
            return Err(Error::Invalid("an arena holds 1 to 2^31 primitives"));
        }
        let layout = Layout::of(slots).ok_or(Error::Invalid("an arena's size overflows"))?;
        let seg = Segment::create_anonymous(Kind::ARENA, layout.size)?;
        let base = NonNull::new(seg.as_ptr()).ok_or(Error::Invalid("a mapping at address 0"))?;
        let arena = Arena {
            seg: Arc::new(seg),
            view: View { base, layout },
        };
        arena
            .header()
            .capacity
            .store(slots as u32, Ordering::Relaxed);
        Ok(arena)
    }

    fn header(&self) -> &Header {
        self.view.header()
    }

    /// How many primitives it holds at most.
    pub fn capacity(&self) -> usize {
        self.header().capacity.load(Ordering::Relaxed) as usize
    }

    /// How many slots are taken now (by this process and every other).
    pub fn in_use(&self) -> usize {
        self.header().used.load(Ordering::Acquire) as usize
    }

    /// A new, free [`Lock`] in this arena.
    pub fn lock(&self) -> Result<Lock> {
        Ok(Lock::from_arena(self.take::<RawLock>()?))
    }

    /// A new [`RLock`] in this arena.
    pub fn rlock(&self) -> Result<RLock> {
        Ok(RLock::from_arena(self.take::<RawRLock>()?))
    }

    /// A new [`Semaphore`] with `value` permits in this arena.
    pub fn semaphore(&self, value: u32) -> Result<Semaphore> {
        let raw = self.take::<RawSemaphore>()?;
        raw.get().init(value);
        Ok(Semaphore::from_arena(raw))
    }

    /// A new, cleared [`Event`] in this arena.
    pub fn event(&self) -> Result<Event> {
        Ok(Event::from_arena(self.take::<RawEvent>()?))
    }

    /// A new [`Value`] starting at `init`, behind a lock of its own, in
    /// one slot: `T` fits after the lock word (with its alignment, up to
    /// 60 bytes), else [`Error::Invalid`].
    ///
    /// ```
    /// let arena = procs_sync::Arena::new(1000)?;
    /// let counters = (0..1000).map(|_| arena.value(0u64)).collect::<Result<Vec<_>, _>>()?;
    /// let c = counters[3].clone();
    /// let mut child = procs_core::Process::new(move || *c.lock().unwrap() += 5);
    /// child.start()?;
    /// assert_eq!(child.join()?, 0);
    /// assert_eq!(counters[3].get(), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn value<T: bytemuck::Pod>(&self, init: T) -> Result<Value<T>> {
        let offset = Shared::<RawLock>::extra_offset(std::mem::align_of::<T>());
        if std::mem::align_of::<T>() > SLOT || offset + std::mem::size_of::<T>() > SLOT {
            return Err(Error::Invalid(
                "an arena's value fits in a slot of 64 bytes with its lock word",
            ));
        }
        let raw = self.take::<RawLock>()?;
        Ok(Value::from_cells(Cells::in_slot(raw, init)))
    }

    /// Takes a slot, zeroed, its count at one.
    fn take<R: SharedState>(&self) -> Result<Shared<R>> {
        let h = self.header();
        let index = {
            // A holder that died inside leaves a consistent list: each
            // step below is one store, and a slot popped but not handed out
            // is only lost, never given twice.
            let _g = h.lock.lock_guard(None);
            let free = h.free.load(Ordering::Relaxed);
            let index = if free != 0 {
                let i = free - 1;
                h.free
                    .store(self.next(i).load(Ordering::Relaxed), Ordering::Relaxed);
                i
            } else {
                let b = h.bump.load(Ordering::Relaxed);
                if b as usize >= self.capacity() {
                    return Err(Error::ArenaFull {
                        capacity: self.capacity(),
                    });
                }
                h.bump.store(b + 1, Ordering::Relaxed);
                b
            };
            for word in self.slot_words(index) {
                word.store(0, Ordering::Relaxed);
            }
            self.refs(index).store(1, Ordering::Relaxed);
            h.used.fetch_add(1, Ordering::Release);
            index
        };
        let state = NonNull::new(self.slot_ptr(index).cast::<R>())
            .ok_or(Error::Invalid("a mapping at address 0"))?;
        let slot = Slot {
            view: self.view,
            index,
        };
        Ok(Shared::in_arena(Arc::clone(&self.seg), state, slot))
    }

    fn next(&self, index: u32) -> &AtomicU32 {
        self.view.next(index)
    }

    fn refs(&self, index: u32) -> &AtomicU32 {
        self.view.refs(index)
    }

    fn slot_ptr(&self, index: u32) -> *mut u8 {
        self.view.slot_ptr(index)
    }

    fn slot_words(&self, index: u32) -> &[AtomicU64; SLOT / 8] {
        self.view.slot_words(index)
    }
}

impl View {
    fn header(&self) -> &Header {
        // SAFETY: the header is at the start of the segment's data (64-byte
        // aligned, zero-filled at creation: a valid Header, atomics only),
        // mapped while the view is used (see `View`).
        unsafe { self.base.cast::<Header>().as_ref() }
    }

    fn at<T>(&self, offset: usize, index: u32) -> &T {
        // SAFETY: callers pass an index below the capacity and the offset
        // of an array of T (u32 atomics or 64-byte slots) in the layout, all
        // inside the mapping (see `View`); atomics are valid for any bytes.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(offset + index as usize * std::mem::size_of::<T>())
                .cast::<T>()
        }
    }

    fn refs(&self, index: u32) -> &AtomicU32 {
        self.at(self.layout.refs, index)
    }

    fn next(&self, index: u32) -> &AtomicU32 {
        self.at(self.layout.next, index)
    }

    fn slot_ptr(&self, index: u32) -> *mut u8 {
        // SAFETY: slot `index` (below the capacity) is SLOT bytes at this
        // offset, inside the mapping.
        unsafe {
            self.base
                .as_ptr()
                .add(self.layout.slots + index as usize * SLOT)
        }
    }

    fn slot_words(&self, index: u32) -> &[AtomicU64; SLOT / 8] {
        self.at::<[AtomicU64; SLOT / 8]>(self.layout.slots, index)
    }

    /// Puts slot `index` back on the free list.
    fn give_back(&self, index: u32) {
        let h = self.header();
        let _g = h.lock.lock_guard(None);
        self.next(index)
            .store(h.free.load(Ordering::Relaxed), Ordering::Relaxed);
        h.free.store(index + 1, Ordering::Relaxed);
        h.used.fetch_sub(1, Ordering::Release);
    }
}

/// A primitive's slot in its arena: counts the handles.
pub(crate) struct Slot {
    view: View,
    index: u32,
}

impl Slot {
    /// One more handle (a clone).
    pub(crate) fn retain(&self) -> Slot {
        self.view.refs(self.index).fetch_add(1, Ordering::Relaxed);
        Slot {
            view: self.view,
            index: self.index,
        }
    }

    /// One handle less; the last gives the slot back. A handle the
    /// parent drops while handing it to a child it just started is the
    /// child's now: the count stays.
    pub(crate) fn release(&self) {
        if procs_core::handing_over_to().is_some() {
            return;
        }
        // AcqRel: what the other handles did to the primitive happens
        // before its slot is reused.
        if self.view.refs(self.index).fetch_sub(1, Ordering::AcqRel) == 1 {
            self.view.give_back(self.index);
        }
    }
}
