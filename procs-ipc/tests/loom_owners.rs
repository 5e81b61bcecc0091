//! Model checks of the holder table: threads stand in for processes (each
//! with a pid of its own) that make and drop handles, hand one to a child,
//! and free the slots of holders found dead, all at once. Under loom the
//! table has two slots, so that a full table and reclaimed slots are
//! explored too.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release -p procs-ipc --test loom_owners`
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use procs_ipc::owners::Owners;

fn everyone_alive(_: i32, _: u64) -> bool {
    true
}

#[test]
fn handles_of_two_processes_counted_at_once_are_exact() {
    loom::model(|| {
        let o = Arc::new(Owners::new());
        let o2 = o.clone();
        let b = thread::spawn(move || {
            o2.add(2, 20, everyone_alive);
            o2.release(2);
        });
        o.add(1, 10, everyone_alive);
        o.add(1, 10, everyone_alive);
        o.release(1);
        b.join().unwrap();
        assert_eq!((o.handles(1), o.handles(2), o.count()), (1, 0, 1));
        o.release(1);
        assert!(o.closed());
    });
}

/// The parent (pid 1) hands its handle to a child (pid 2) that drops it at
/// once; `gated` says whether the child runs only once the parent recorded
/// the hand-over (as procs-core's start gate makes it). Sets
/// `left_recorded` (a flag of the calling test's own) if some interleaving
/// left the child recorded for ever.
type Flag = std::sync::atomic::AtomicBool;

fn hand_over(gated: bool, left_recorded: &'static Flag) -> bool {
    loom::model(move || {
        let o = Arc::new(Owners::new());
        o.add(1, 10, everyone_alive);
        let gate = Arc::new(AtomicBool::new(false));
        let (o2, g2) = (o.clone(), gate.clone());
        let child = thread::spawn(move || {
            while gated && !g2.load(Ordering::Acquire) {
                thread::yield_now();
            }
            o2.release(2);
        });
        // The parent's drop of its copy of the child's target.
        o.add(2, 20, everyone_alive);
        o.release(1);
        gate.store(true, Ordering::Release);
        child.join().unwrap();
        if !o.closed() {
            left_recorded.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    left_recorded.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn a_child_that_runs_after_its_hand_over_is_recorded_leaves_nothing_behind() {
    static LEFT_RECORDED: Flag = Flag::new(false);
    assert!(!hand_over(true, &LEFT_RECORDED));
}

#[test]
fn a_child_that_ran_before_its_hand_over_was_recorded_could_stay_recorded() {
    // The race the start gate closes: without it, the model finds it.
    static LEFT_RECORDED: Flag = Flag::new(false);
    assert!(hand_over(false, &LEFT_RECORDED));
}

#[test]
fn a_slot_reclaimed_from_a_dead_holder_is_never_taken_from_its_new_one() {
    loom::model(|| {
        let o = Arc::new(Owners::new());
        // Pid 1 (started at 5) died holding its slot; pid 3 lives.
        o.add(1, 5, everyone_alive);
        o.add(3, 30, everyone_alive);
        // Pid 4 started at 7 (a new process; its start may also be seen as
        // not known yet, 0). Nothing else lives.
        let alive = |pid: i32, start: u64| pid == 3 || (pid == 4 && (start == 0 || start == 7));
        let (o2, o3) = (o.clone(), o.clone());
        // A new holder, into the full table: it reclaims a slot.
        let newcomer = thread::spawn(move || o2.add(4, 7, alive));
        // A checker looking at the holders meanwhile.
        let checker = thread::spawn(move || {
            o3.any_alive(alive);
        });
        o.any_alive(alive);
        newcomer.join().unwrap();
        checker.join().unwrap();
        assert!(o.holds(4), "the new holder was freed as dead");
        assert!(o.holds(3));
        assert!(!o.holds(1));
        assert_eq!(o.count(), 2);
    });
}
