//! [`wait`]: Python's `multiprocessing.connection.wait`, over the receiving
//! ends of pipes, processes, and descriptors.
//!
//! Each end's ring has a doorbell its reader sleeps on; a wait registers on
//! all of them and sleeps in one `futex_waitv` call (Linux 5.16 and later),
//! so that the first message on any end wakes it. Every 20 ms of sleep it
//! also checks that the other ends' holders live, as a receive does: an end
//! whose writers all died is ready (a receive would report
//! [`Error::Disconnected`](crate::Error::Disconnected) at once).
//! Descriptors (a process's pidfd, a socket, an OS pipe) are slept on with
//! `poll(2)`; when both kinds are waited on, a helper thread polls the
//! descriptors and rings a doorbell of the wait's own.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::doorbell::Doorbell;
use crate::error::{Error, Result};
use crate::ring::CHECK_EVERY;

/// What [`wait`] waits on, ready when reading it would not block: a
/// [`Connection`](crate::Connection) or a [`Receiver`](crate::Receiver)
/// (a message, or the other end gone), a handle of a
/// [`Queue`](crate::Queue) that gets (an item, or no producer left; another
/// consumer may still take the item first), a started
/// [`Process`](procs_core::Process) (it ended: its sentinel), or a
/// [`BorrowedFd`] (readable, or hung up: a socket, an OS pipe, a pidfd).
pub trait Wait: sealed::Sealed {}

pub(crate) mod sealed {
    /// Implemented by this crate only.
    pub trait Sealed {
        fn source(&self) -> crate::error::Result<super::Source<'_>>;
    }
}

/// What an object of a wait is made of.
#[doc(hidden)]
pub enum Source<'a> {
    /// The receiving side of a ring: a pipe's end, a queue's handle.
    Ring(&'a dyn Readable),
    /// A descriptor, for `poll`.
    Fd(BorrowedFd<'a>),
}

/// The receiving side of a ring, as a wait sees it.
#[doc(hidden)]
pub trait Readable {
    /// Whether a receive would not wait (see
    /// [`Ring::recv_ready`](crate::ring::Ring::recv_ready)), or would fail
    /// at once.
    fn recv_ready(&self) -> bool;
    /// The doorbell a receive sleeps on, if it can sleep.
    fn recv_bell(&self) -> Option<&Doorbell>;
    /// Whether every writer is dead, as a [`PeerWatch`] last saw.
    fn peer_gone(&self) -> bool;
}

/// When a wait last looked at a ring's writers (reading /proc), and whether
/// it found them all dead: it looks again once the last look is older than
/// [`CHECK_EVERY`]. Once dead, dead until [`reset`](PeerWatch::reset): only
/// a live holder can hand its side on, or this process make a new one.
#[derive(Debug, Default)]
pub(crate) struct PeerWatch(std::sync::Mutex<(Option<Instant>, bool)>);

impl PeerWatch {
    /// Whether the writers are gone, asking `check` when it is time to look.
    pub(crate) fn gone(&self, check: impl FnOnce() -> bool) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (last, dead) = &mut *seen;
        if *dead {
            return true;
        }
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < CHECK_EVERY) {
            return false;
        }
        *last = Some(now);
        *dead = check();
        *dead
    }

    /// Forgets what was seen: this process made a new writer.
    pub(crate) fn reset(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = (None, false);
    }
}

impl sealed::Sealed for BorrowedFd<'_> {
    fn source(&self) -> Result<Source<'_>> {
        Ok(Source::Fd(self.as_fd()))
    }
}

impl Wait for BorrowedFd<'_> {}

impl sealed::Sealed for procs_core::Process {
    fn source(&self) -> Result<Source<'_>> {
        self.sentinel().map(Source::Fd).ok_or(Error::Invalid(
            "a process is waited on once started, where the kernel has pidfds (Linux 5.3)",
        ))
    }
}

impl Wait for procs_core::Process {}

/// Waits until at least one of `objects` is ready, or `timeout` passes;
/// returns the indexes of the ready ones, in order (Python's
/// `multiprocessing.connection.wait`). An end is ready when a message (or
/// the beginning of a large one) is waiting, when every holder of the
/// other end has closed it, dropped it or died, or when it was closed here:
/// a receive on it would not block. A process is ready once it has ended
/// (Python's `p.sentinel`), a descriptor once it is readable or hung up.
/// `None` waits as long as it takes; an expired timeout (zero) only looks.
/// An empty list is [`Error::Invalid`] without a timeout (nothing could end
/// the wait), and an empty result after it; so is a process not started.
///
/// Up to 128 ends sleep in one system call; with more (or on a kernel
/// before 5.16) the wait looks at the others every millisecond.
///
/// ```
/// use std::time::Duration;
/// use procs_ipc::{Wait, pipe, wait};
///
/// let (a, a_child) = pipe::<u32>()?;
/// let (b, b_child) = pipe::<u32>()?;
/// let mut p = procs_core::Process::new(move || {
///     b_child.send(&7).unwrap();
///     drop(a_child);
/// });
/// p.start()?;
/// // b has a message, a's other end was dropped by the child, and the
/// // child ends: all three are ready, in time.
/// let objects: [&dyn Wait; 3] = [&a, &b, &p];
/// let mut ready = Vec::new();
/// while ready.len() < 3 {
///     ready = wait(&objects, Some(Duration::from_secs(10)))?;
/// }
/// assert_eq!(ready, [0, 1, 2]);
/// assert_eq!(b.recv()?, 7);
/// assert!(a.recv().is_err());
/// p.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn wait(objects: &[&dyn Wait], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    if objects.is_empty() {
        return match timeout {
            None => Err(Error::Invalid(
                "a wait on nothing without a timeout would never end",
            )),
            Some(t) => {
                std::thread::sleep(t);
                Ok(Vec::new())
            }
        };
    }
    let sources = objects
        .iter()
        .map(|o| o.source())
        .collect::<Result<Vec<_>>>()?;
    let ends: Vec<(usize, &dyn Readable)> = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Source::Ring(e) => Some((i, *e)),
            Source::Fd(_) => None,
        })
        .collect();
    let fds: Vec<(usize, libc::pollfd)> = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Source::Fd(fd) => Some((i, pollfd(fd.as_raw_fd()))),
            Source::Ring(_) => None,
        })
        .collect();
    // Ends that are ready at once have no bell to sleep on (a closed end).
    let bells: Vec<&Doorbell> = ends.iter().filter_map(|(_, e)| e.recv_bell()).collect();
    let any_end_ready = || ends.iter().any(|(_, e)| e.recv_ready());
    loop {
        // An end whose writers are gone is ready as one with a message is:
        // each end looks at its writers' lives at most every CHECK_EVERY.
        let mut ready: Vec<usize> = ends
            .iter()
            .filter(|(_, e)| e.recv_ready() || e.peer_gone())
            .map(|&(i, _)| i)
            .collect();
        ready.extend(readable(&fds, Some(Duration::ZERO))?);
        if !ready.is_empty() {
            ready.sort_unstable();
            return Ok(ready);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(Vec::new());
        }
        if ends.is_empty() {
            readable(&fds, deadline.map(|d| d - now))?;
            continue;
        }
        let check = now + CHECK_EVERY;
        let until = deadline.map_or(check, |d| d.min(check));
        if fds.is_empty() {
            Doorbell::sleep_any(&bells, any_end_ready, Some(until));
        } else {
            sleep_on_both(&bells, &any_end_ready, &fds, until)?;
        }
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Polls `fds` for at most `timeout` (`None`: as long as it takes); returns
/// the indexes of those readable or hung up (a bad descriptor counts: a
/// read would fail at once). A signal ends the poll early, with nothing.
fn readable(fds: &[(usize, libc::pollfd)], timeout: Option<Duration>) -> Result<Vec<usize>> {
    if fds.is_empty() {
        return Ok(Vec::new());
    }
    let mut set: Vec<libc::pollfd> = fds.iter().map(|(_, p)| *p).collect();
    let ms = timeout.map_or(-1, |t| {
        // Rounded up, so that a wait never returns before its deadline.
        t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int
    });
    // SAFETY: `set` holds `set.len()` initialized pollfds, which poll writes
    // the revents of; it outlives the call.
    let n = unsafe { libc::poll(set.as_mut_ptr(), set.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::Interrupted {
            Ok(Vec::new())
        } else {
            Err(Error::Io(e))
        };
    }
    Ok(fds
        .iter()
        .zip(&set)
        .filter(|(_, p)| p.revents != 0)
        .map(|((i, _), _)| *i)
        .collect())
}

/// Sleeps until a ring of `bells`, a readable descriptor of `fds`, or
/// `until`: a helper thread polls the descriptors (and a pipe that ends it
/// when the wait is over) and rings a doorbell the wait sleeps on too.
fn sleep_on_both(
    bells: &[&Doorbell],
    any_end_ready: &dyn Fn() -> bool,
    fds: &[(usize, libc::pollfd)],
    until: Instant,
) -> Result<()> {
    let (stop_reader, stop_writer) = std::io::pipe()?;
    let mut polled: Vec<(usize, libc::pollfd)> = fds.to_vec();
    polled.push((usize::MAX, pollfd(stop_reader.as_raw_fd())));
    let bell = Doorbell::new();
    let fired = AtomicBool::new(false);
    std::thread::scope(|s| {
        let helper = s.spawn(|| {
            // Until a descriptor or the stop pipe is ready (a signal only
            // interrupts the poll), or the poll fails.
            let r = loop {
                match readable(&polled, None) {
                    Ok(v) if v.is_empty() => {}
                    r => break r.map(drop),
                }
            };
            fired.store(true, Ordering::Release);
            bell.ring();
            r
        });
        let mut all: Vec<&Doorbell> = bells.to_vec();
        all.push(&bell);
        Doorbell::sleep_any(
            &all,
            || fired.load(Ordering::Acquire) || any_end_ready(),
            Some(until),
        );
        // Hangs up the stop pipe: the helper's poll returns.
        drop(stop_writer);
        helper
            .join()
            .expect("the helper thread of a wait does not panic")
    })
}
