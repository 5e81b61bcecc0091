//! The doorbell a ring's side sleeps on until the other publishes:
//! procs-sync's [`Doorbell`], the workspace's one wake-up algorithm; and
//! the one loop of every wait on another process.

use std::time::Instant;

pub use procs_sync::raw::notify::Doorbell;

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
