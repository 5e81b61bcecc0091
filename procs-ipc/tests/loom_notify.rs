//! Model checks of a ring's note (a pipe end's `fileno`): once the reader
//! and the writer are done, the counter is non-zero exactly when a message
//! waits or the writer closed; never more than one.
//!
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release -p procs-ipc --test loom_notify`
//! (unbounded, the last model takes minutes)
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU64 as LoomU64, Ordering};
use loom::thread;
use procs_ipc::notify::{Counter, Note};
use procs_ipc::sync::{AtomicU64, fence};

/// An eventfd's counter, as the note uses it.
#[derive(Default)]
struct Model(LoomU64);

impl Counter for Model {
    fn add(&self) {
        assert_eq!(self.0.fetch_add(1, Ordering::AcqRel), 0, "a second signal");
    }

    fn take(&self) {
        // The swap's winner adds: the wait ends once it runs.
        while self.0.swap(0, Ordering::AcqRel) == 0 {
            thread::yield_now();
        }
    }
}

#[derive(Default)]
struct Pipe {
    /// Bytes published, in 8-byte messages.
    head: AtomicU64,
    /// Bytes taken (only the reader moves it).
    tail: AtomicU64,
    closed: AtomicBool,
    state: AtomicU64,
    counter: Model,
}

impl Pipe {
    fn note(&self) -> Note<'_, Model> {
        Note {
            state: &self.state,
            counter: &self.counter,
        }
    }

    fn ready(&self) -> bool {
        self.head.load(procs_ipc::sync::Ordering::Acquire)
            > self.tail.load(procs_ipc::sync::Ordering::Relaxed)
            || self.closed.load(Ordering::Acquire)
    }

    fn tail(&self) -> u64 {
        self.tail.load(procs_ipc::sync::Ordering::Relaxed)
    }

    /// The writer's `i`th send (from 1): publish, the data bell's fence, the
    /// hook. (The writer keeps its position itself: loom explored fewer
    /// interleavings when it loaded its own `head` back.)
    fn send(&self, i: u64) {
        let head = 8 * i;
        self.head.store(head, procs_ipc::sync::Ordering::Release);
        fence(procs_ipc::sync::Ordering::SeqCst);
        self.note().published(head);
    }

    /// The writer's close: marked, the bell's fence, the signal.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        fence(procs_ipc::sync::Ordering::SeqCst);
        self.note().signal();
    }

    /// The reader's receive, if a message waits, and its settle.
    fn recv(&self) {
        if self.head.load(procs_ipc::sync::Ordering::Acquire) > self.tail() {
            self.tail
                .store(self.tail() + 8, procs_ipc::sync::Ordering::Relaxed);
        }
        self.note().settle(self.tail(), || self.ready());
    }

    fn check(&self) {
        let n = self.counter.0.load(Ordering::Acquire);
        assert_eq!(n != 0, self.ready(), "readable {n}, ready {}", self.ready());
    }
}

/// The writer sends `sends` messages (then closes, if `close`) while the
/// reader arms, then receives `recvs` times.
fn model(arm_first: bool, sends: usize, recvs: usize, close: bool) {
    loom::model(move || {
        let pipe = Arc::new(Pipe::default());
        if arm_first {
            pipe.note().arm(pipe.tail(), || pipe.ready());
        }
        let w = pipe.clone();
        let writer = thread::spawn(move || {
            for i in 1..=sends as u64 {
                w.send(i);
            }
            if close {
                w.close();
            }
        });
        if !arm_first {
            pipe.note().arm(pipe.tail(), || pipe.ready());
        }
        for _ in 0..recvs {
            pipe.recv();
        }
        writer.join().unwrap();
        pipe.check();
        // And once more after a receive that sees everything.
        pipe.recv();
        pipe.check();
        pipe.recv();
        pipe.check();
    });
}

#[test]
fn a_message_published_while_the_reader_arms_is_signaled() {
    model(false, 1, 0, false);
}

#[test]
fn a_message_taken_before_its_writer_signals_leaves_no_stale_signal() {
    model(true, 1, 1, false);
}

#[test]
fn two_messages_and_two_receives_end_right() {
    model(true, 2, 2, false);
}

#[test]
fn a_close_is_signaled_whatever_was_taken() {
    model(true, 1, 1, true);
}

#[test]
fn arming_while_messages_and_a_close_arrive_ends_right() {
    model(false, 1, 1, true);
}

#[test]
fn two_messages_a_close_and_a_late_arm_end_right() {
    model(false, 2, 2, true);
}
