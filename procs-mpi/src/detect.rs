//! The deadlock detector, run by a blocked rank after a quiet tick.
//!
//! Under the job's detector lock it reads every rank's wait state, then
//! everything that could still wake a blocked rank (bytes in a ring towards
//! it, a send slot its receiver has answered but its sender not yet seen),
//! then the wait states again. If every live, unfinished rank is blocked in
//! the same epoch both times and nothing is in flight, no rank can ever run
//! again. The detector then holds every blocked rank in its epoch (a
//! compare-and-swap on its wait word, which the rank leaves through the same
//! way: a rank that woke meanwhile makes the detector let go of all), writes
//! each one's report of its wait-for chain, and condemns them all; each
//! blocked call returns `Error::Deadlock`. No rank can leave between the
//! decision and its verdict, so all of a cycle are reported, or none.
//!
//! A rank publishes "blocked" only once it has drained its rings and found
//! nothing to do, and publishes "running" (a new epoch) before it consumes
//! anything; a rank that computes, or polls before sleeping, is running.
//! So a slow rank is never reported, and a message in a ring or a slot is
//! seen either in flight or through its receiver's changed epoch.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::engine::{BLOCKED, CONDEMNED, Call, HELD, WaitDesc};
use crate::job::{FREE, GONE, Job, OFFERED, RUNNING, SLOTS, died};

/// Looks for a deadlock among the job's ranks; on finding one, gives every
/// blocked rank its report and wakes it.
pub(crate) fn look(job: &Job) {
    let Some(_guard) = job.detector().lock_guard(Some(Instant::now())) else {
        // Another rank is looking.
        return;
    };
    let n = job.size();
    let first: Vec<u64> = (0..n)
        .map(|r| job.rank(r).wait.load(Ordering::SeqCst))
        .collect();
    let mut blocked = Vec::new();
    for (r, &w) in first.iter().enumerate() {
        let life = job.rank(r).life.load(Ordering::Acquire);
        if life & GONE != 0 {
            continue;
        }
        if life & RUNNING == 0 || w & 3 != BLOCKED {
            // Not started yet, or running.
            return;
        }
        blocked.push(r);
    }
    if blocked.is_empty() {
        return;
    }
    // A rank waiting on a rank that ended or finished fails on its own
    // (RankDied, RankFinished): that is not a deadlock to report.
    let gone = |r: usize| job.rank(r).life.load(Ordering::Acquire) & GONE != 0;
    for &r in &blocked {
        let Some(w) = desc(job, r) else { return };
        let waits_on_gone = if w.peer >= 0 {
            (w.peer as usize) < n && w.peer as usize != r && gone(w.peer as usize)
        } else {
            (0..n)
                .filter(|&o| o != r)
                .any(|o| died(job.rank(o).life.load(Ordering::Acquire)))
                || (n > 1 && (0..n).filter(|&o| o != r).all(gone))
        };
        if waits_on_gone {
            return;
        }
    }
    for &to in &blocked {
        for from in (0..n).filter(|&f| f != to) {
            let (head, tail) = job.ring_ctl(from, to).positions();
            if head != tail {
                return;
            }
        }
    }
    // A part of a world collective written where a blocked rank waits for
    // it: that rank is about to wake.
    for &r in &blocked {
        if let Some(w) = desc(job, r)
            && w.call == Call::Coll
            && w.peer >= 0
            && (w.peer as usize) < n
        {
            let op = job
                .coll_buf(w.peer as usize, (w.tag & 1) as usize)
                .0
                .op
                .load(Ordering::Acquire);
            if op & 0x7fff_ffff == w.tag as u64 {
                return;
            }
        }
    }
    for &r in &blocked {
        for k in 0..SLOTS {
            let state = job.slot(r, k).state.load(Ordering::Acquire) & 0xff;
            // Answered by a receiver (done, pulled, or being copied):
            // work its sender has yet to see, or a copy under way.
            if !matches!(state, FREE | OFFERED) {
                return;
            }
        }
    }
    for &r in &blocked {
        let life = job.rank(r).life.load(Ordering::Acquire);
        if job.rank(r).wait.load(Ordering::SeqCst) != first[r] || life & GONE != 0 {
            return;
        }
    }
    // Hold every blocked rank in its epoch (none may leave while the
    // verdict is given), or give up if one already left.
    for (i, &r) in blocked.iter().enumerate() {
        let word = &job.rank(r).wait;
        let held = first[r] & !3 | HELD;
        if word
            .compare_exchange(first[r], held, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            for &back in &blocked[..i] {
                job.rank(back).wait.store(first[back], Ordering::SeqCst);
            }
            return;
        }
    }
    for &r in &blocked {
        job.write_report(r, &chain(job, r, &blocked));
    }
    for &r in &blocked {
        job.rank(r)
            .wait
            .store(first[r] & !3 | CONDEMNED, Ordering::SeqCst);
    }
    job.ring_all();
}

/// What rank `r` waits in, as it published it.
fn desc(job: &Job, r: usize) -> Option<WaitDesc> {
    let b = job.rank(r);
    Some(WaitDesc {
        call: Call::from_code(b.wait_call.load(Ordering::Relaxed) & 0xff)?,
        peer: b.wait_peer.load(Ordering::Relaxed) as i64 as i32,
        tag: b.wait_tag.load(Ordering::Relaxed) as i64 as i32,
    })
}

/// The wait-for chain from `start` until it repeats: `rank 1 waits in
/// recv(source=5, tag=0) for rank 5; rank 5 waits in recv(source=1, tag=0)
/// for rank 1`.
fn chain(job: &Job, start: usize, blocked: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut seen = Vec::new();
    let mut r = start;
    loop {
        if seen.contains(&r) {
            break;
        }
        if !blocked.contains(&r) {
            parts.push(format!("rank {r} has finished"));
            break;
        }
        seen.push(r);
        let Some(w) = desc(job, r) else {
            parts.push(format!("rank {r} waits"));
            break;
        };
        if w.peer < 0 || w.peer as usize >= job.size() {
            parts.push(format!("rank {r} waits in {} for any rank", w.describe()));
            break;
        }
        let coll = job.rank(r).wait_call.load(Ordering::Relaxed) >> 8;
        let call = if coll != 0 {
            crate::coll::describe(coll)
        } else {
            w.describe()
        };
        parts.push(format!("rank {r} waits in {call} for rank {}", w.peer));
        r = w.peer as usize;
    }
    parts.join("; ")
}
