//! A ring reader's descriptor for `poll`, epoll, mio or tokio (a pipe
//! end's [`fileno`](crate::Connection::fileno)): an eventfd, made with the
//! pipe so that every process holding an end inherits it, that is readable
//! exactly when a receive would not block.
//!
//! ```text
//! state (a u32 in the pipe's shared memory, one per ring):
//!   IDLE      nobody asked for the descriptor: the writer does nothing
//!   ARMED     the descriptor is not readable, and nothing waits unseen
//!   SIGNALED  the descriptor is readable (or is being made so)
//! ```
//!
//! The descriptor's counter is 0 or 1: it is written only by whoever moves
//! the state from ARMED to SIGNALED (a compare-and-swap: one winner), and
//! read only by the reader, moving it back. While IDLE, a send costs one
//! relaxed load more, and so does a receive; while armed, a send makes a
//! system call only when it makes a message wait where none did, and a
//! receive only when it takes the last one.
//!
//! The races, and why each ends right:
//!
//! - **A message published while the reader arms or re-arms.** The reader
//!   stores ARMED, fences (SeqCst), then looks for a message; the writer
//!   publishes (a release store), fences (SeqCst: the ring's data bell does,
//!   right before the hook), then loads the state. Of two SeqCst fences one
//!   comes first: either the writer sees ARMED and signals, or the reader
//!   sees the message and signals. Both may: the compare-and-swap lets one
//!   write.
//! - **The reader takes the last message while a signal is in flight.** The
//!   state is SIGNALED and the writer may not have written the counter yet
//!   (it won the swap, then was descheduled). The reader waits for the
//!   descriptor to be readable (at most [`IN_FLIGHT`]: only a writer killed
//!   between its swap and its write never writes), reads it, stores ARMED,
//!   fences and looks again, as above.
//! - **A stale signal.** A writer's signal is for a message it published
//!   and the reader had not settled yet: the reader takes it back when it
//!   settles after the receive that took the message, never leaving the
//!   descriptor readable for a message that is gone.
//! - **The writer closes.** Its close marks the end closed, rings the data
//!   bell (a SeqCst fence) and signals: a receive would now report
//!   `Disconnected` at once, and the descriptor stays readable.
//!
//! So after every receive, poll and `fileno` of the reader, the descriptor
//! is readable if and only if a receive would not block. One case the
//! descriptor cannot see: a writer killed (SIGKILL) without a close rings
//! nothing. A receive or a `poll` of the end notices the death within 20 ms
//! and then signals; an event loop that only watches the descriptor should
//! also watch the writer's process (its sentinel) or wake now and then.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::eventfd::EventFd;

use crate::sync::{AtomicU32, Ordering, fence};

const IDLE: u32 = 0;
const ARMED: u32 = 1;
const SIGNALED: u32 = 2;

/// How long a reader waits for a signal that a writer committed to write.
pub(crate) const IN_FLIGHT: Duration = Duration::from_millis(250);

/// One ring's note: its state in shared memory, and its descriptor.
pub(crate) struct Note<'a> {
    pub(crate) state: &'a AtomicU32,
    pub(crate) fd: &'a EventFd,
}

impl Note<'_> {
    /// The writer, right after publishing, after the data bell's SeqCst
    /// fence.
    #[inline]
    pub(crate) fn published(&self) {
        if self.state.load(Ordering::Relaxed) == ARMED {
            self.signal();
        }
    }

    /// Makes the descriptor readable, if armed and not yet signaled.
    #[cold]
    pub(crate) fn signal(&self) {
        if self
            .state
            .compare_exchange(ARMED, SIGNALED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            // The counter is 0 here (the swap's winner is its only writer):
            // the write cannot block or fail for a full counter.
            let _ = self.fd.write(1);
        }
    }

    /// The reader asks for the descriptor: from now on it is kept readable
    /// exactly when `ready()` (a receive would not block).
    pub(crate) fn arm(&self, ready: impl Fn() -> bool) {
        if self
            .state
            .compare_exchange(IDLE, ARMED, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            // See the module's first race: a message published before the
            // writer could see ARMED is seen here.
            fence(Ordering::SeqCst);
            if ready() {
                self.signal();
            }
        }
    }

    /// The reader, after a receive (or a poll): the descriptor is made
    /// readable exactly when `ready()`.
    #[inline]
    pub(crate) fn settle(&self, ready: impl Fn() -> bool) {
        if self.state.load(Ordering::Relaxed) != IDLE {
            self.settle_armed(ready);
        }
    }

    #[cold]
    fn settle_armed(&self, ready: impl Fn() -> bool) {
        if self.state.load(Ordering::Acquire) == SIGNALED {
            if ready() {
                return;
            }
            // Take the signal back (the second race): wait for it to land.
            let deadline = Instant::now() + IN_FLIGHT;
            let _ = crate::socket::ready(self.fd.as_fd(), PollFlags::POLLIN, Some(deadline));
            match self.fd.read() {
                Ok(_) | Err(Errno::EAGAIN) => {}
                Err(_) => return,
            }
            self.state.store(ARMED, Ordering::SeqCst);
        }
        // ARMED: look again after the fence (the first race).
        fence(Ordering::SeqCst);
        if ready() {
            self.signal();
        }
    }
}

/// The descriptor of a ring's note: non-blocking, closed on exec (a
/// spawned child holds no pipe end: ends are inherited through fork).
pub(crate) fn new_fd() -> crate::error::Result<EventFd> {
    use nix::sys::eventfd::EfdFlags;
    EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(|e| crate::error::Error::Io(e.into()))
}
