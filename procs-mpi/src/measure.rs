//! Which large-message path is faster here, measured on the paths
//! themselves: two engines of a job of two ranks, on two threads of this
//! process, send a mebibyte back and forth, once copying it straight out of
//! the sender (split between the two sides, as between ranks) and once
//! pulling it through the ring. Measured once per process; `run` measures
//! before it forks, so every rank of a job inherits one answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::job::Job;

/// 0: not measured, 1: one copy is faster, 2: the ring is.
static CHOICE: AtomicU8 = AtomicU8::new(0);

/// Whether copying straight out of the sender beat the ring here (false
/// where the kernel refuses it).
pub(crate) fn single_copy_is_faster() -> bool {
    match CHOICE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let faster = compare().unwrap_or(false);
            CHOICE.store(if faster { 1 } else { 2 }, Ordering::Relaxed);
            faster
        }
    }
}

const SIZE: usize = 1 << 20;
/// Rounds of each path, interleaved; the first of each warms up.
const ROUNDS: usize = 6;

/// The best round trip of each path, one after the other, alternating.
fn compare() -> Option<bool> {
    let one = Pair::new(true)?;
    let two = Pair::new(false)?;
    let (mut best_one, mut best_two) = (Duration::MAX, Duration::MAX);
    for round in 0..ROUNDS {
        let a = one.round_trip()?;
        let b = two.round_trip()?;
        if round > 0 {
            best_one = best_one.min(a);
            best_two = best_two.min(b);
        }
    }
    Some(best_one < best_two)
}

/// Two ranks of a private job, in this process.
struct Pair {
    job: Arc<Job>,
    single: bool,
}

impl Pair {
    fn new(single: bool) -> Option<Pair> {
        Some(Pair {
            job: Arc::new(Job::create(2, false).ok()?),
            single,
        })
    }

    /// A mebibyte from rank 0 to rank 1 and an empty reply back: `None` if
    /// a copy failed (the kernel refused: the engine then pulls, which is
    /// not the path being timed).
    fn round_trip(&self) -> Option<Duration> {
        let data = vec![1u8; SIZE];
        // Neither side waits long for a peer that failed.
        let give_up = Instant::now() + Duration::from_secs(1);
        std::thread::scope(|s| {
            let peer = s.spawn(|| {
                let mut e = Engine::new(self.job.clone(), 1, self.single).yielding(give_up);
                let mut buf = vec![0u8; SIZE];
                // The first message is a warm-up (and lets the next one be
                // copied by both sides, as between ranks).
                let ok = (0..2).all(|_| {
                    e.recv_into(&mut buf, 0, 0, 0)
                        .is_ok_and(|st| st.bytes() == SIZE)
                });
                ok && e.send(&[], 0, 0, 1, false).is_ok()
                    && buf[SIZE - 1] == 1
                    && e.single_copy_works() == self.single
            });
            let mut e = Engine::new(self.job.clone(), 0, self.single).yielding(give_up);
            let warm = e.send(&data, 1, 0, 0, false).is_ok();
            let start = Instant::now();
            let ok = e.send(&data, 1, 0, 0, false).is_ok() && e.recv_into(&mut [], 1, 0, 1).is_ok();
            let spent = start.elapsed();
            let peer_ok = peer.join().unwrap_or(false);
            (warm && ok && peer_ok).then_some(spent)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_paths_are_timed_and_the_answer_is_kept() {
        let start = Instant::now();
        let first = single_copy_is_faster();
        let took = start.elapsed();
        // Asked again, the process's answer is the same, without measuring.
        assert_eq!(single_copy_is_faster(), first);
        eprintln!("single copy faster here: {first} (measured in {took:?})");
        // Each path moves its mebibytes whole (or the kernel refused one).
        for single in [true, false] {
            let pair = Pair::new(single).unwrap();
            match pair.round_trip() {
                Some(t) => eprintln!("single={single}: {t:?} per round trip"),
                None => assert!(single, "the ring path cannot be refused"),
            }
        }
    }
}
