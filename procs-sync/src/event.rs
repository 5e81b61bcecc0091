//! [`Event`]: Python's `multiprocessing.Event`.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::raw::event::RawEvent;
use crate::segment::Kind;
use crate::shared::Shared;

/// A flag shared between processes that processes can wait for.
///
/// ```
/// use procs_sync::Event;
///
/// let ready = Event::new()?;
/// let child_ready = ready.clone();
/// let mut child = procs_core::Process::new(move || child_ready.set());
/// child.start()?;
/// assert!(ready.wait_timeout(std::time::Duration::from_secs(10)));
/// child.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Event {
    raw: Shared<RawEvent>,
}

#[cfg(all(feature = "serde", not(loom)))]
impl Event {
    pub(crate) fn shared(&self) -> &Shared<RawEvent> {
        &self.raw
    }

    pub(crate) fn from_shared(raw: Shared<RawEvent>) -> Self {
        Event { raw }
    }
}

impl Event {
    /// The Event whose state is a slot of an [`Arena`](crate::Arena).
    pub(crate) fn from_arena(raw: Shared<RawEvent>) -> Self {
        Event { raw }
    }

    /// A new event, not set.
    pub fn new() -> Result<Event> {
        Ok(Event {
            raw: Shared::create(Kind::EVENT, 0, 1)?,
        })
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.raw.get().is_set()
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.raw.get().set();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.raw.get().clear();
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        while !self.raw.get().wait(None) {}
    }

    /// Waits at most `timeout`; returns whether the flag was set (also if
    /// it was set while waiting and cleared since), as Python's
    /// `wait(timeout)`.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.raw.get().wait(Instant::now().checked_add(timeout))
    }
}
