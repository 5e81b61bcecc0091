//! Byte buffers that go around: task frames, and outputs on their way from
//! the handler thread to whoever decodes them. A buffer used once is kept
//! for the next frame or output, so that a large map writes into memory
//! that is already mapped instead of paying a page fault per 4 KiB of
//! every frame.

use std::sync::Mutex;

/// Buffers smaller than this are not worth keeping (the allocator serves
/// them as fast).
const KEEP_MIN: usize = 4 * 1024;
/// Buffers larger than this are let go (a huge map should not pin its
/// memory for the pool's life).
const KEEP_MAX: usize = 64 * 1024 * 1024;

/// A stack of spare buffers; the last one given is the first taken (its
/// memory is the most likely to be in cache).
#[derive(Debug)]
pub(crate) struct Buffers {
    spare: Mutex<Vec<Vec<u8>>>,
    /// The most buffers kept.
    keep: usize,
}

impl Buffers {
    pub(crate) fn new(keep: usize) -> Buffers {
        Buffers {
            spare: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// A buffer, empty, with room for `bytes` at least.
    pub(crate) fn take(&self, bytes: usize) -> Vec<u8> {
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut buf = spare.unwrap_or_default();
        buf.clear();
        buf.reserve(bytes);
        buf
    }

    /// A buffer for an output of unknown size: its length is what it last
    /// held (its bytes are initialized up to there, so a reader can reuse
    /// them without zeroing).
    pub(crate) fn take_any(&self) -> Vec<u8> {
        self.spare
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Gives a buffer back for later use.
    pub(crate) fn give(&self, buf: Vec<u8>) {
        if !(KEEP_MIN..=KEEP_MAX).contains(&buf.capacity()) {
            return;
        }
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < self.keep {
            spare.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_small_or_huge_ones_are_let_go() {
        let b = Buffers::new(2);
        let mut one = b.take(10_000);
        one.extend_from_slice(&[7; 10_000]);
        let at = one.as_ptr();
        b.give(one);
        let again = b.take(100);
        assert_eq!(again.as_ptr(), at);
        assert!(again.is_empty() && again.capacity() >= 10_000);
        b.give(Vec::with_capacity(16));
        assert_eq!(b.spare.lock().unwrap().len(), 0);
        for _ in 0..5 {
            b.give(Vec::with_capacity(8192));
        }
        assert_eq!(b.spare.lock().unwrap().len(), 2);
        // An output buffer keeps the length it had.
        let mut out = b.take_any();
        out.resize(5000, 1);
        b.give(out);
        let out = b.take_any();
        assert_eq!(out.len(), 5000);
    }
}
