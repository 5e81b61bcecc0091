//! [`wait`]: Python's `multiprocessing.connection.wait`, over the receiving
//! ends of pipes.
//!
//! Each end's ring has a doorbell its reader sleeps on; a wait registers on
//! all of them and sleeps in one `futex_waitv` call (Linux 5.16 and later),
//! so that the first message on any end wakes it. Every 20 ms of sleep it
//! also checks that the other ends' holders live, as a receive does: an end
//! whose writers all died is ready (a receive would report
//! [`Error::Disconnected`](crate::Error::Disconnected) at once).

use std::time::{Duration, Instant};

use crate::doorbell::Doorbell;
use crate::error::{Error, Result};
use crate::pipe::End;
use crate::ring::CHECK_EVERY;

/// What [`wait`] waits on: a [`Connection`](crate::Connection) or a
/// [`Receiver`](crate::Receiver), ready when a receive would not block.
pub trait Wait: sealed::Sealed {}

pub(crate) mod sealed {
    /// Implemented by the receiving ends of this crate only.
    pub trait Sealed {
        fn end(&self) -> &crate::pipe::End;
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes;
/// returns the indexes of the ready ones, in order (Python's
/// `multiprocessing.connection.wait`). An end is ready when a message (or
/// the beginning of a large one) is waiting, when every holder of the
/// other end has closed it, dropped it or died, or when it was closed here:
/// a receive on it would not block. `None` waits as long as it takes; an
/// expired timeout (zero) only looks. An empty list is
/// [`Error::Invalid`] without a timeout (nothing could end the wait), and
/// an empty result after it.
///
/// Up to 128 ends sleep in one system call; with more (or on a kernel
/// before 5.16) the wait looks at the others every millisecond.
///
/// ```
/// use std::time::Duration;
/// use procs_ipc::{pipe, wait};
///
/// let (a, a_child) = pipe::<u32>()?;
/// let (b, b_child) = pipe::<u32>()?;
/// let mut p = procs_core::Process::new(move || {
///     b_child.send(&7).unwrap();
///     drop(a_child);
/// });
/// p.start()?;
/// // b has a message; a's other end was dropped by the child: both ready.
/// let mut ready = Vec::new();
/// while ready.len() < 2 {
///     ready = wait(&[&a, &b], Some(Duration::from_secs(10)))?;
/// }
/// assert_eq!(ready, [0, 1]);
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
    let ends: Vec<&End> = objects.iter().map(|o| o.end()).collect();
    // Ends that are ready at once have no bell to sleep on (a closed end).
    let bells: Vec<&Doorbell> = ends.iter().filter_map(|e| e.recv_bell()).collect();
    loop {
        // An end whose writers are gone is ready as one with a message is:
        // each end looks at its writers' lives at most every CHECK_EVERY.
        let ready: Vec<usize> = (0..ends.len())
            .filter(|&i| ends[i].recv_ready() || ends[i].peer_gone())
            .collect();
        if !ready.is_empty() {
            return Ok(ready);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(Vec::new());
        }
        let check = now + CHECK_EVERY;
        let until = deadline.map_or(check, |d| d.min(check));
        Doorbell::sleep_any(&bells, || ends.iter().any(|e| e.recv_ready()), Some(until));
    }
}
