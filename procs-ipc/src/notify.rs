//! A ring reader's descriptor for `poll`, epoll, mio or tokio (a pipe
//! end's [`fileno`](crate::Connection::fileno)): a counter (an eventfd,
//! made with the pipe so that every process holding an end inherits it)
//! that is non-zero, so readable, exactly when a receive would not block.
//!
//! ```text
//! state (a u64 in the pipe's shared memory, one per ring):
//!   0                    IDLE: nobody asked for the descriptor
//!   tail | 1             ARMED at `tail` (a multiple of 8): the counter is
//!                        0; the reader has seen everything before `tail`
//!                        and looked for more after it armed
//!   2                    SIGNALED: the counter is 1 (or is being made so)
//! ```
//!
//! Only whoever moves the state from ARMED to SIGNALED (a compare-and-swap:
//! one winner) adds to the counter, and only the reader takes from it,
//! moving the state back to ARMED; so the counter is 0 or 1. While IDLE, a
//! send costs one relaxed load more, and so does a receive; while armed, a
//! send makes a system call only when it makes a message wait where none
//! did, and a receive only when it takes the last one.
//!
//! The writer signals after publishing up to `head` only if the state is
//! ARMED at a `tail` before `head`: bytes the reader had not seen when it
//! armed. The reader re-arms at its new position after every receive, so
//! that a writer's signal for a message already taken fails its swap.
//!
//! The races, and why each ends right:
//!
//! - **A message published while the reader arms.** The reader swaps in
//!   ARMED, fences (SeqCst), then looks for a message; the writer publishes
//!   (a release store), fences (SeqCst: the ring's data bell does, right
//!   before the hook), then loads the state. Of two SeqCst fences one comes
//!   first: the writer sees ARMED and signals, or the reader sees the
//!   message and signals itself. Both may: the swap lets one add.
//! - **The reader takes a message before its writer signals.** The writer
//!   published, the reader took the message and re-armed at its new
//!   `tail`, then the writer's hook runs: it finds ARMED at a `tail` not
//!   before its `head` and does nothing (or its swap from the old ARMED
//!   fails against the re-arm). Had its swap won before the re-arm, the
//!   reader's re-arm fails and it takes the signal back, as next.
//! - **The reader takes the last message while a signal is in flight.** The
//!   state is SIGNALED and the writer may not have added yet (it won the
//!   swap, then was descheduled). The reader waits until the counter is
//!   non-zero (at most [`IN_FLIGHT`]: only a writer killed between its swap
//!   and its add never adds), takes it, stores ARMED at its position,
//!   fences and looks again, as in the first race.
//! - **The writer closes.** Its close marks the end closed, rings the data
//!   bell (a SeqCst fence) and signals whatever `tail` the reader armed at:
//!   a receive would now report `Disconnected` at once.
//!
//! So after every receive, poll and `fileno` of the reader, the descriptor
//! is readable if and only if a receive would not block (`tests/loom_notify.rs`
//! checks every interleaving of a small model). One case it cannot see: a
//! writer killed (SIGKILL) without a close signals nothing. A receive or a
//! `poll` of the end notices the death within 20 ms and then signals; an
//! event loop that only watches the descriptor should also watch the
//! writer's process (its sentinel) or wake now and then.

use std::time::Duration;

use crate::sync::{AtomicU64, Ordering, fence};

const IDLE: u64 = 0;
const ARMED: u64 = 1;
const SIGNALED: u64 = 2;

/// How long a reader waits for a signal that a writer committed to add.
pub const IN_FLIGHT: Duration = Duration::from_millis(250);

fn armed_at(tail: u64) -> u64 {
    (tail & !7) | ARMED
}

/// Whether state `s` is ARMED at a position before `head`.
fn armed_before(s: u64, head: u64) -> bool {
    s & ARMED != 0 && {
        let ahead = head.wrapping_sub(s & !7);
        ahead != 0 && ahead < 1 << 63
    }
}

/// The counter behind a note: an eventfd, or a model of one.
pub trait Counter {
    /// Adds one: the descriptor turns readable.
    fn add(&self);
    /// Waits (at most [`IN_FLIGHT`]) until the counter is non-zero, and
    /// sets it back to zero.
    fn take(&self);
}

#[cfg(not(loom))]
impl Counter for nix::sys::eventfd::EventFd {
    fn add(&self) {
        // The counter is 0 here (the swap's winner is its only adder): the
        // write neither blocks nor fails for a full counter.
        let _ = self.write(1);
    }

    fn take(&self) {
        use std::os::fd::AsFd;
        let deadline = std::time::Instant::now() + IN_FLIGHT;
        let _ = crate::socket::ready(self.as_fd(), nix::poll::PollFlags::POLLIN, Some(deadline));
        // Non-blocking: nothing to take (a writer died before adding) is
        // EAGAIN.
        let _ = self.read();
    }
}

/// One ring's note: its state in shared memory, and its counter.
///
/// ```
/// use std::cell::Cell;
/// use procs_ipc::notify::{Counter, Note};
/// use procs_ipc::sync::AtomicU64;
///
/// struct Count(Cell<u64>);
/// impl Counter for Count {
///     fn add(&self) { self.0.set(self.0.get() + 1) }
///     fn take(&self) { self.0.set(0) }
/// }
///
/// let (state, count) = (AtomicU64::new(0), Count(Cell::new(0)));
/// let note = Note { state: &state, counter: &count };
/// let (mut head, mut tail) = (0u64, 0u64);
/// note.arm(tail, || head > tail); // nothing waits: no signal
/// assert_eq!(count.0.get(), 0);
/// head = 8;
/// note.published(head); // a message past where the reader armed
/// assert_eq!(count.0.get(), 1);
/// note.published(head); // signaled already: once is enough
/// assert_eq!(count.0.get(), 1);
/// tail = 8; // the reader took it
/// note.settle(tail, || head > tail);
/// assert_eq!(count.0.get(), 0);
/// ```
pub struct Note<'a, C: Counter + ?Sized> {
    /// The state word (IDLE, ARMED at a position, SIGNALED).
    pub state: &'a AtomicU64,
    /// The counter the descriptor polls.
    pub counter: &'a C,
}

impl<C: Counter + ?Sized> Note<'_, C> {
    /// The writer, right after publishing up to `head`, after a SeqCst
    /// fence (the ring's data bell rings with one).
    #[inline]
    pub fn published(&self, head: u64) {
        let s = self.state.load(Ordering::Relaxed);
        if armed_before(s, head) {
            self.signal_from(s, head);
        }
    }

    #[cold]
    fn signal_from(&self, mut s: u64, head: u64) {
        while armed_before(s, head) {
            match self
                .state
                .compare_exchange(s, SIGNALED, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return self.counter.add(),
                Err(now) => s = now,
            }
        }
    }

    /// Signals whatever position the reader armed at: the writer closed
    /// (after a SeqCst fence), or the reader found a message or a death.
    #[cold]
    pub fn signal(&self) {
        let mut s = self.state.load(Ordering::Relaxed);
        while s & ARMED != 0 {
            match self
                .state
                .compare_exchange(s, SIGNALED, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return self.counter.add(),
                Err(now) => s = now,
            }
        }
    }

    /// The reader, at position `tail`, asks for the descriptor: from now on
    /// the counter is kept non-zero exactly when `ready()` (a receive would
    /// not block).
    pub fn arm(&self, tail: u64, ready: impl Fn() -> bool) {
        if self
            .state
            .compare_exchange(IDLE, armed_at(tail), Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            // The first race: what was published before the writer could
            // see ARMED is seen here.
            fence(Ordering::SeqCst);
            if ready() {
                self.signal();
            }
        }
    }

    /// The reader, now at position `tail`, after a receive (or a poll): the
    /// counter is made non-zero exactly when `ready()`.
    #[inline]
    pub fn settle(&self, tail: u64, ready: impl Fn() -> bool) {
        if self.state.load(Ordering::Relaxed) != IDLE {
            self.settle_armed(tail, ready);
        }
    }

    #[cold]
    fn settle_armed(&self, tail: u64, ready: impl Fn() -> bool) {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if s == SIGNALED {
                if ready() {
                    return;
                }
                // The third race: take the signal back once it landed.
                self.counter.take();
                self.state.store(armed_at(tail), Ordering::SeqCst);
                break;
            }
            if s == armed_at(tail) {
                break;
            }
            // Re-arm at the new position, so that a writer's signal for a
            // message taken already fails (the second race).
            match self.state.compare_exchange(
                s,
                armed_at(tail),
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        // ARMED at `tail`: look again after the fence (the first race).
        fence(Ordering::SeqCst);
        if ready() {
            self.signal();
        }
    }
}

/// The descriptor of a ring's note: non-blocking, closed on exec (a
/// spawned child holds no pipe end: ends are inherited through fork).
#[cfg(not(loom))]
pub(crate) fn new_fd() -> crate::error::Result<nix::sys::eventfd::EventFd> {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(|e| crate::error::Error::Io(e.into()))
}
