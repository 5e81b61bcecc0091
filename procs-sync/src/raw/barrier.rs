//! The raw barrier: one futex word that parties arrive on with a
//! compare-and-swap, and spin on (then sleep on) until their round ends.
//!
//! ```text
//! offset 0  state:    bits 0-15 parties arrived in this round
//!                     bits 16-29 round number (wrapping)
//!                     bit 30 BROKEN: waits fail until reset
//!                     bit 31 SLEEPERS: someone sleeps on the word
//! offset 4  released: the last round that ended by the arrival of all
//! offset 8  parties
//! ```
//!
//! The last party to arrive runs the action, records its round in
//! `released` and moves the state to the next round with its count at zero.
//! A waiter whose round ended reads `released` to learn how: its round is
//! `released` if all arrived, not if a reset moved the round on. No later
//! round can be released while it is still inside (every party must
//! arrive), so `released` cannot move past its round before it reads it. A
//! timeout or an abort sets BROKEN in the same round. Every transition that
//! waiters wait for clears SLEEPERS and wakes them all if it was set; an
//! arrival keeps it: one word, so no wake-up can be lost between a waiter's
//! decision to sleep and a transition.

use std::time::Instant;

use crate::raw::sync::{AtomicU32, Ordering, spin_loop, wait, wake};

const COUNT: u32 = 0xFFFF;
const ROUND_SHIFT: u32 = 16;
const ROUND_MASK: u32 = 0x3FFF << ROUND_SHIFT;
const BROKEN: u32 = 1 << 30;
const SLEEPERS: u32 = 1 << 31;

/// The most parties a barrier can have.
pub const MAX_PARTIES: u32 = COUNT;

/// Why a barrier wait failed: the barrier is broken, or was reset or
/// aborted while this party waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken;

fn round(s: u32) -> u32 {
    (s & ROUND_MASK) >> ROUND_SHIFT
}

/// The first state of the round after `s`'s: nobody arrived, not broken,
/// no sleeper.
fn next_round(s: u32) -> u32 {
    ((round(s) + 1) << ROUND_SHIFT) & ROUND_MASK
}

/// A process-shared barrier.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawBarrier {
    state: AtomicU32,
    released: AtomicU32,
    parties: AtomicU32,
}

impl RawBarrier {
    /// A barrier for `parties` parties (1 to [`MAX_PARTIES`]).
    pub fn new(parties: u32) -> Self {
        let b = RawBarrier::default();
        b.init(parties);
        b
    }

    /// Sets the number of parties of a barrier nobody uses yet. Round 0 is
    /// marked as not released (`released` starts at a round never reached
    /// first).
    pub fn init(&self, parties: u32) {
        self.released.store(u32::MAX, Ordering::Relaxed);
        self.parties.store(parties, Ordering::Release);
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.parties.load(Ordering::Acquire)
    }

    /// Waits for the other parties. `action` is run by the last to arrive,
    /// before the others are released; if it returns `false` (it failed), the
    /// barrier breaks. Returns the arrival index: 0 for the first to arrive,
    /// `parties - 1` for the last.
    pub fn wait(
        &self,
        deadline: Option<Instant>,
        action: impl FnOnce() -> bool,
    ) -> Result<u32, Broken> {
        let parties = self.parties();
        let mut s = self.state.load(Ordering::Acquire);
        let (mine, index) = loop {
            if s & BROKEN != 0 {
                return Err(Broken);
            }
            let count = s & COUNT;
            if count >= parties {
                // More callers than parties: wait for this round to pass.
                s = self.wait_change(s, None).unwrap_or(s);
                continue;
            }
            // Acquire: see what earlier rounds published; keeps SLEEPERS.
            match self
                .state
                .compare_exchange(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break (round(s), count),
                Err(now) => s = now,
            }
        };
        s += 1;
        if index + 1 == parties {
            let ok = action();
            if ok {
                // Published by the release below, read after the round moves.
                self.released.store(mine, Ordering::Relaxed);
            }
            loop {
                if s & BROKEN != 0 {
                    // A waiter timed out while the action ran.
                    return Err(Broken);
                }
                let new = if ok {
                    next_round(s)
                } else {
                    (s | BROKEN) & !SLEEPERS
                };
                // Release: the action's effects and `released` are seen by
                // every waiter that sees the new state.
                match self
                    .state
                    .compare_exchange(s, new, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(old) => {
                        if old & SLEEPERS != 0 {
                            wake(&self.state, u32::MAX);
                        }
                        return if ok { Ok(index) } else { Err(Broken) };
                    }
                    Err(now) => s = now,
                }
            }
        }
        loop {
            if round(s) != mine {
                return if self.released.load(Ordering::Relaxed) == mine {
                    Ok(index)
                } else {
                    Err(Broken)
                };
            }
            if s & BROKEN != 0 {
                return Err(Broken);
            }
            match self.wait_change(s, deadline) {
                Some(now) => s = now,
                None => {
                    // Timed out: break this round, unless it just ended.
                    match self.transition(|s| round(s) == mine && s & BROKEN == 0, |s| s | BROKEN) {
                        Ok(()) => return Err(Broken),
                        Err(now) => s = now,
                    }
                }
            }
        }
    }

    /// Moves the state with `to` while `when` holds of it, clearing SLEEPERS
    /// and waking the sleepers. `Err(state)` if `when` stopped holding.
    fn transition(&self, when: impl Fn(u32) -> bool, to: impl Fn(u32) -> u32) -> Result<(), u32> {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if !when(s) {
                return Err(s);
            }
            match self.state.compare_exchange(
                s,
                to(s) & !SLEEPERS,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(old) => {
                    if old & SLEEPERS != 0 {
                        wake(&self.state, u32::MAX);
                    }
                    return Ok(());
                }
                Err(now) => s = now,
            }
        }
    }

    /// Waits until the state is not `s`: spins for a while (parties usually
    /// arrive close together), then sleeps. Returns the new state, or `None`
    /// if `deadline` passed first.
    fn wait_change(&self, s: u32, deadline: Option<Instant>) -> Option<u32> {
        if let Some(now) = self.spin_while(s) {
            return Some(now);
        }
        // Ask for a wake-up: set SLEEPERS, unless the state moved meanwhile.
        let asleep = s | SLEEPERS;
        if s != asleep
            && let Err(now) =
                self.state
                    .compare_exchange(s, asleep, Ordering::Acquire, Ordering::Acquire)
        {
            return Some(now);
        }
        let woken = wait(&self.state, asleep, deadline);
        let now = self.state.load(Ordering::Acquire);
        if !woken && now == asleep {
            return None;
        }
        Some(now)
    }

    #[cfg(not(loom))]
    fn spin_while(&self, s: u32) -> Option<u32> {
        // A round trip between two cores is well under a microsecond; a
        // party that is late by more than this budget is better slept on.
        const BUDGET: std::time::Duration = std::time::Duration::from_micros(50);
        let start = Instant::now();
        loop {
            for _ in 0..64 {
                let now = self.state.load(Ordering::Acquire);
                if now != s {
                    return Some(now);
                }
                spin_loop();
            }
            if start.elapsed() > BUDGET {
                return None;
            }
        }
    }

    #[cfg(loom)]
    fn spin_while(&self, s: u32) -> Option<u32> {
        let now = self.state.load(Ordering::Acquire);
        if now != s {
            return Some(now);
        }
        spin_loop();
        None
    }

    /// Breaks the barrier: waiting parties and later callers fail until
    /// [`reset`](RawBarrier::reset).
    pub fn abort(&self) {
        let _ = self.transition(|s| s & BROKEN == 0, |s| s | BROKEN);
    }

    /// Returns the barrier to its first state; parties waiting now fail.
    pub fn reset(&self) {
        let _ = self.transition(|_| true, next_round);
    }

    /// How many parties wait in this round (0 if broken).
    pub fn n_waiting(&self) -> u32 {
        let s = self.state.load(Ordering::Acquire);
        if s & BROKEN != 0 { 0 } else { s & COUNT }
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.state.load(Ordering::Acquire) & BROKEN != 0
    }
}
