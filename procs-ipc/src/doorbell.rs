//! A doorbell: how one side of a ring sleeps until the other publishes.
//!
//! ```text
//! offset 0  seq: bumped by a ring that finds sleepers (the futex word)
//! offset 4  sleepers
//! ```
//!
//! The publisher stores its progress (a release store), then rings: a
//! sequentially consistent fence, then a read of `sleepers`, and only if
//! someone sleeps a bump of `seq` and a wake-up call. A sleeper adds itself
//! to `sleepers`, fences, reads `seq`, then checks the condition it waits for
//! and sleeps on `seq`. The two fences make at least one side see the other:
//! no wake-up is lost, and a publish that nobody waits for costs a fence.

use std::time::Instant;

use crate::sync::{AtomicU32, Ordering, fence, wait, wait_any, wake};

/// A doorbell in shared memory.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Doorbell {
    seq: AtomicU32,
    sleepers: AtomicU32,
}

impl Doorbell {
    /// A doorbell nobody sleeps on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes the sleepers, if any. Call after publishing with a release store.
    #[inline]
    pub fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            self.wake_all();
        }
    }

    #[cold]
    fn wake_all(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        wake(&self.seq, u32::MAX);
    }

    /// Sleeps once: until a ring, `deadline`, or a spurious wake-up, unless
    /// `ready()` already holds. Returns `ready()` as seen last.
    pub fn sleep(&self, ready: impl Fn() -> bool, deadline: Option<Instant>) -> bool {
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let seen = self.seq.load(Ordering::Acquire);
        let r = ready() || {
            wait(&self.seq, seen, deadline);
            ready()
        };
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        r
    }

    /// As [`sleep`](Doorbell::sleep), on several doorbells at once: until
    /// any of them rings, `deadline`, or a spurious wake-up, unless
    /// `ready()` already holds. Each ring is seen as `sleep` sees it: the
    /// sleeper is registered on every bell and fenced before it reads their
    /// sequences and checks `ready()`.
    pub fn sleep_any(
        bells: &[&Doorbell],
        ready: impl Fn() -> bool,
        deadline: Option<Instant>,
    ) -> bool {
        for b in bells {
            b.sleepers.fetch_add(1, Ordering::Relaxed);
        }
        fence(Ordering::SeqCst);
        let seen: Vec<(&AtomicU32, u32)> = bells
            .iter()
            .map(|b| (&b.seq, b.seq.load(Ordering::Acquire)))
            .collect();
        let r = ready() || {
            wait_any(&seen, deadline);
            ready()
        };
        for b in bells {
            b.sleepers.fetch_sub(1, Ordering::Relaxed);
        }
        r
    }
}

/// Sleeps on `bell` until `ready()`, looking with `look` at once and then
/// every [`CHECK_EVERY`](crate::ring::CHECK_EVERY) (whether the other side
/// lives, whether something needs repair: an error it returns ends the
/// wait), until `deadline` ([`Error::Timeout`](crate::Error::Timeout)).
/// The one loop of every wait for another process. `look` may be `None`
/// (a model check, where no process dies): then only a ring or the
/// deadline ends a sleep.
pub(crate) fn sleep_until(
    bell: &Doorbell,
    ready: impl Fn() -> bool,
    deadline: Option<Instant>,
    mut look: Option<impl FnMut() -> crate::Result<()>>,
) -> crate::Result<()> {
    let mut next_look = look.is_some().then(Instant::now);
    loop {
        if ready() {
            return Ok(());
        }
        let now = Instant::now();
        if let (Some(at), Some(look)) = (next_look, look.as_mut())
            && now >= at
        {
            look()?;
            next_look = Some(Instant::now() + crate::ring::CHECK_EVERY);
            continue;
        }
        if deadline.is_some_and(|d| now >= d) {
            return Err(crate::Error::Timeout);
        }
        let until = match (deadline, next_look) {
            (Some(d), Some(l)) => Some(d.min(l)),
            (d, l) => d.or(l),
        };
        bell.sleep(&ready, until);
    }
}
