//! [`Barrier`]: Python's `multiprocessing.Barrier`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::raw::barrier::{MAX_PARTIES, RawBarrier};
use crate::segment::Kind;
use crate::shared::Shared;

type Action = Arc<dyn Fn() + Send + Sync>;

/// A barrier for a fixed number of parties, shared between processes: each
/// party's [`wait`](Barrier::wait) returns once all have called it.
///
/// As in Python: `wait` returns an arrival index (0 to `parties - 1`); an
/// action, if given, is run by the last party to arrive before the others
/// are released; a timeout, an [`abort`](Barrier::abort) or a panicking
/// action breaks the barrier, and every waiting and later party gets
/// [`Error::BrokenBarrier`] until [`reset`](Barrier::reset).
///
/// ```
/// use procs_sync::Barrier;
///
/// let barrier = Barrier::new(2)?;
/// let b = barrier.clone();
/// let mut child = procs_core::Process::new(move || {
///     b.wait().unwrap();
/// });
/// child.start()?;
/// let index = barrier.wait()?;
/// assert!(index < 2);
/// child.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    raw: Shared<RawBarrier>,
    action: Option<Action>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("has_action", &self.action.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[cfg(all(feature = "serde", not(loom)))]
impl Barrier {
    pub(crate) fn from_shared(raw: Shared<RawBarrier>) -> Self {
        Barrier {
            raw,
            action: None,
            timeout: None,
        }
    }
}

/// A barrier travels as its segment and its default timeout; one with an
/// action does not (the action is a closure of this process, and whichever
/// process arrives last runs it).
#[cfg(all(feature = "serde", not(loom)))]
impl serde::Serialize for Barrier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        if self.action.is_some() {
            return Err(S::Error::custom(
                "a barrier with an action cannot travel: the action is a closure of this process",
            ));
        }
        serde::Serialize::serialize(
            &(
                {
                    use serde::ser::Error as _;
                    self.raw.segment().map_err(S::Error::custom)?
                },
                self.timeout,
            ),
            s,
        )
    }
}

#[cfg(all(feature = "serde", not(loom)))]
impl<'de> serde::Deserialize<'de> for Barrier {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (seg, timeout): (crate::Segment, Option<Duration>) =
            serde::Deserialize::deserialize(d)?;
        let raw = Shared::from_segment(seg, &[crate::segment::Kind::BARRIER])
            .map_err(D::Error::custom)?;
        Ok(Barrier {
            timeout,
            ..Barrier::from_shared(raw)
        })
    }
}

impl Barrier {
    /// A barrier for `parties` parties (1 to 65,535).
    pub fn new(parties: u32) -> Result<Barrier> {
        if parties == 0 {
            return Err(Error::Invalid("a barrier needs at least one party"));
        }
        if parties > MAX_PARTIES {
            return Err(Error::Invalid("a barrier has at most 65,535 parties"));
        }
        let raw = Shared::<RawBarrier>::create(Kind::BARRIER, 0, 1)?;
        raw.get().init(parties);
        Ok(Barrier {
            raw,
            action: None,
            timeout: None,
        })
    }

    /// A barrier whose last arriving party runs `action` before releasing
    /// the others. Every process that waits has the action (it is copied
    /// into forked children with the handle).
    pub fn with_action(parties: u32, action: impl Fn() + Send + Sync + 'static) -> Result<Barrier> {
        let mut b = Self::new(parties)?;
        b.action = Some(Arc::new(action));
        Ok(b)
    }

    /// The timeout that [`wait`](Barrier::wait) uses (Python's `timeout`
    /// argument of the constructor).
    pub fn with_timeout(mut self, timeout: Duration) -> Barrier {
        self.timeout = Some(timeout);
        self
    }

    /// Waits for all parties; returns this party's arrival index.
    pub fn wait(&self) -> Result<u32> {
        self.wait_until(self.timeout.and_then(|t| Instant::now().checked_add(t)))
    }

    /// Waits at most `timeout`; on timeout the barrier breaks.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<u32> {
        let action = || match &self.action {
            None => true,
            Some(f) => catch_unwind(AssertUnwindSafe(|| f())).is_ok(),
        };
        self.raw
            .get()
            .wait(deadline, action)
            .map_err(|_| Error::BrokenBarrier)
    }

    /// Breaks the barrier: waiting and later parties fail until `reset`.
    pub fn abort(&self) {
        self.raw.get().abort();
    }

    /// Returns the barrier to its first state; parties waiting now fail.
    pub fn reset(&self) {
        self.raw.get().reset();
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.raw.get().parties()
    }

    /// How many parties are waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.raw.get().n_waiting()
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.raw.get().broken()
    }
}
