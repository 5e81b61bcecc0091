//! Handing values over to a child.
//!
//! When a process is started, its target is moved into the child: the child
//! runs it, and the parent drops its own copy right after the fork. For most
//! values that drop is just a drop. Handles that track which processes hold
//! them (a pipe end or a queue of procs-ipc, whose peers must learn when
//! every holder is gone) need to tell the two apart: a handle dropped by the
//! parent in that moment was not closed, it was handed over to the child.
//! [`handing_over_to`] tells them, during that drop, which child it was.
//!
//! ```
//! use procs_core::{Process, handing_over_to};
//!
//! struct Handle;
//! impl Drop for Handle {
//!     fn drop(&mut self) {
//!         match handing_over_to() {
//!             Some(child) => println!("moved into child {child}"),
//!             None => println!("closed"),
//!         }
//!     }
//! }
//!
//! let h = Handle;
//! let mut p = Process::new(move || drop(h));   // parent: "moved into child N"
//! p.start()?;
//! p.join()?;
//! # Ok::<(), procs_core::Error>(())
//! ```

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    static HANDING_OVER_TO: Cell<Option<i32>> = const { Cell::new(None) };
}

/// While the parent drops what a just-started child's target captured, the
/// child's pid; `None` at any other time.
pub fn handing_over_to() -> Option<i32> {
    HANDING_OVER_TO.with(Cell::get)
}

/// Drops `captured`, the parent's copy of what child `pid` took, with
/// [`handing_over_to`] answering `pid` meanwhile.
pub(crate) fn dropping_for<T>(pid: i32, captured: T) {
    struct Restore(Option<i32>);
    impl Drop for Restore {
        fn drop(&mut self) {
            HANDING_OVER_TO.with(|h| h.set(self.0));
        }
    }
    let _restore = Restore(HANDING_OVER_TO.with(|h| h.replace(Some(pid))));
    drop(captured);
}

/// How many children this process has reaped (counted since it started).
static REAPED: AtomicU64 = AtomicU64::new(0);

/// How many children this process has reaped so far; it only grows.
///
/// A handle that records its peers' pids (a pipe end of procs-ipc) can
/// compare it with what it saw before, and look at whether its peers live
/// only when it changed: a peer that died and was reaped here is then known
/// dead at the next call, without reading `/proc` on every call.
#[inline]
pub fn reaped_children() -> u64 {
    REAPED.load(Ordering::Acquire)
}

/// Counts one child reaped.
pub(crate) fn count_reaped() {
    REAPED.fetch_add(1, Ordering::AcqRel);
}
