//! The views of a ring's data bytes: in shared memory normally, in
//! loom-checked cells under loom, and whatever a test or fuzz target
//! brings.

use crate::sync::Ordering;

/// The ring's data bytes.
pub trait Bytes {
    /// How many bytes there are: the ring's capacity, as its creator mapped
    /// it (the capacity in the shared control block must agree).
    fn len(&self) -> usize;
    /// Whether there are no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies `src` to offset `at` (`at + src.len()` within the capacity).
    fn write(&self, at: usize, src: &[u8]);
    /// Copies from offset `at` into `dst`.
    fn read(&self, at: usize, dst: &mut [u8]);

    /// Loads the 8-byte word at offset `at` (a multiple of 8) with acquire
    /// ordering: a frame header. The default reads the bytes and fences,
    /// which is right for bytes that are themselves atomics (a torn word only
    /// fails the header's check).
    fn load_word(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        self.read(at, &mut b);
        crate::sync::fence(Ordering::Acquire);
        u64::from_le_bytes(b)
    }

    /// Stores the 8-byte word at offset `at` (a multiple of 8) with release
    /// ordering, after the bytes written before it.
    fn store_word(&self, at: usize, word: u64) {
        crate::sync::fence(Ordering::Release);
        self.write(at, &word.to_le_bytes());
    }

    /// Copies the 8 bytes of `word` (little endian) to offset `at` (a
    /// multiple of 8), as [`write`](Bytes::write) does: a small frame's
    /// payload goes in word by word.
    #[inline]
    fn write_word(&self, at: usize, word: u64) {
        self.write(at, &word.to_le_bytes());
    }

    /// Copies the 8 bytes at offset `at` (a multiple of 8) out as a word
    /// (little endian), as [`read`](Bytes::read) does.
    #[inline]
    fn read_word(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        self.read(at, &mut b);
        u64::from_le_bytes(b)
    }
}

/// Ring data in shared memory.
#[cfg(not(loom))]
pub struct SharedBytes {
    ptr: *mut u8,
    len: usize,
}

#[cfg(not(loom))]
impl SharedBytes {
    /// # Safety
    /// `ptr` is valid for reads and writes of `len` bytes for as long as the
    /// value lives, and the ring protocol keeps its two sides off the same
    /// bytes at the same time.
    #[inline]
    pub unsafe fn new(ptr: *mut u8, len: usize) -> Self {
        SharedBytes { ptr, len }
    }
}

#[cfg(not(loom))]
impl Bytes for SharedBytes {
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn write(&self, at: usize, src: &[u8]) {
        assert!(at + src.len() <= self.len, "write outside the ring");
        // SAFETY: in range (checked); `new`'s contract makes the memory
        // valid and this side's alone while the ring protocol lets it write.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(at), src.len()) };
    }

    #[inline]
    fn read(&self, at: usize, dst: &mut [u8]) {
        assert!(at + dst.len() <= self.len, "read outside the ring");
        // SAFETY: in range (checked); the bytes were published by the writer
        // (the acquire load of `head` orders this read after its writes).
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(at), dst.as_mut_ptr(), dst.len()) };
    }

    #[inline]
    fn write_word(&self, at: usize, word: u64) {
        assert!(
            at.is_multiple_of(8) && at + 8 <= self.len,
            "a word outside the ring"
        );
        // SAFETY: in range and 8-aligned (checked; the mapping is page
        // aligned); `new`'s contract makes the memory valid and this side's
        // alone while the ring protocol lets it write.
        unsafe { self.ptr.add(at).cast::<u64>().write(word) };
    }

    #[inline]
    fn read_word(&self, at: usize) -> u64 {
        assert!(
            at.is_multiple_of(8) && at + 8 <= self.len,
            "a word outside the ring"
        );
        // SAFETY: in range and 8-aligned (checked); the bytes were published
        // by the writer (an acquire load orders this read after its writes).
        unsafe { self.ptr.add(at).cast::<u64>().read() }
    }

    #[inline]
    fn load_word(&self, at: usize) -> u64 {
        self.word(at).load(std::sync::atomic::Ordering::Acquire)
    }

    #[inline]
    fn store_word(&self, at: usize, word: u64) {
        self.word(at)
            .store(word, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(not(loom))]
impl SharedBytes {
    #[inline]
    fn word(&self, at: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(
            at.is_multiple_of(8) && at + 8 <= self.len,
            "a header word outside the ring"
        );
        // SAFETY: in range and 8-aligned (checked; the mapping is page
        // aligned); header words are only accessed atomically while they are
        // headers, and the ring protocol orders their reuse as payload.
        unsafe { &*self.ptr.add(at).cast::<std::sync::atomic::AtomicU64>() }
    }
}

/// Ring data under loom: a cell per byte, so that loom reports a read and a
/// write of the same byte that the ring protocol fails to order; and header
/// words as loom atomics of their own (a byte is read as a header only in a
/// lap where it was written as one, so the two never mix).
#[cfg(loom)]
pub struct LoomBytes(
    pub std::sync::Arc<Vec<loom::cell::UnsafeCell<u8>>>,
    pub std::sync::Arc<Vec<loom::sync::atomic::AtomicU64>>,
);

#[cfg(loom)]
impl LoomBytes {
    /// `len` zero bytes.
    pub fn new(len: usize) -> Self {
        LoomBytes(
            std::sync::Arc::new((0..len).map(|_| loom::cell::UnsafeCell::new(0)).collect()),
            std::sync::Arc::new(
                (0..len / 8)
                    .map(|_| loom::sync::atomic::AtomicU64::new(0))
                    .collect(),
            ),
        )
    }
}

#[cfg(loom)]
impl Clone for LoomBytes {
    fn clone(&self) -> Self {
        LoomBytes(self.0.clone(), self.1.clone())
    }
}

#[cfg(loom)]
impl Bytes for LoomBytes {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn write(&self, at: usize, src: &[u8]) {
        for (i, b) in src.iter().enumerate() {
            // SAFETY: loom checks that no read of this byte races the write.
            self.0[at + i].with_mut(|p| unsafe { *p = *b });
        }
    }

    fn read(&self, at: usize, dst: &mut [u8]) {
        for (i, d) in dst.iter_mut().enumerate() {
            // SAFETY: loom checks that no write of this byte races the read.
            *d = self.0[at + i].with(|p| unsafe { *p });
        }
    }

    fn load_word(&self, at: usize) -> u64 {
        self.1[at / 8].load(Ordering::Acquire)
    }

    fn store_word(&self, at: usize, word: u64) {
        self.1[at / 8].store(word, Ordering::Release);
    }
}
