//! [`ShareableList`]: a fixed-length list of numbers, strings and bytes in
//! a shared segment, as Python's `multiprocessing.shared_memory.ShareableList`.
//!
//! Each item has a slot of a fixed capacity, decided when the list is made
//! (as Python does): 8 bytes for a number, a bool or `None`; for a str or
//! bytes of `n` bytes, `n` rounded up to the next multiple of 8 that is
//! greater than `n` (so at least one spare byte, 8 for an empty one). A slot
//! may later hold an item of any kind that fits its capacity; a longer str
//! or bytes is [`Error::TooLong`], and the slot keeps its old value.
//!
//! The segment's data (after the segment header) is laid out as follows;
//! every field is native-endian and aligned for its size:
//!
//! ```text
//! offset          size  field
//!      0             8  list magic "PROCSSHL" (written last, with release ordering)
//!      8             8  number of items N
//!     16             8  data bytes D (the sum of the capacities)
//!     24             8  reserved (zero)
//!     32        32 * N  slots, slot i at 32 + 32 * i:
//!                         +0   8  writes begun   (a sequence counter)
//!                         +8   8  writes ended   (the greatest finished write)
//!                        +16   8  capacity in bytes (fixed; a multiple of 8, at least 8)
//!                        +24   4  kind: 1 None, 2 int, 3 float, 4 bool, 5 str, 6 bytes
//!                        +28   4  length in bytes of a str or bytes
//! 32 + 32 * N            D  the items, each at the sum of the capacities before it
//! ```
//!
//! An int or float is its 8 bytes, a bool the word 0 or 1, a str its UTF-8
//! bytes and bytes themselves (trailing NULs are kept, unlike Python's).
//!
//! Opening a list checks all of this: the segment header (kind included),
//! the list magic, that N slots and D bytes fit the segment, and that the
//! capacities are multiples of 8 that add up to D. Those fixed fields are
//! read once and kept in the handle. The fields that change (kind, length,
//! bytes) are checked at each read: a length above the slot's capacity, an
//! unknown kind, a bool that is neither 0 nor 1 or a str that is not UTF-8
//! is [`Error::Corrupt`], never undefined behaviour or a panic. What a
//! concurrent writer can do is told in [`ShareableList`]'s docs.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::item::{ALIGN, Item};
use crate::segment::{Kind, Segment};

const LIST_MAGIC: u64 = u64::from_le_bytes(*b"PROCSSHL");
const LIST_HEADER: usize = 32;
const SLOT: usize = 32;
/// How long a reader retries a slot that stays half-written.
const TORN_AFTER: Duration = Duration::from_millis(100);

const TAG_NONE: u32 = 1;
const TAG_INT: u32 = 2;
const TAG_FLOAT: u32 = 3;
const TAG_BOOL: u32 = 4;
const TAG_STR: u32 = 5;
const TAG_BYTES: u32 = 6;

/// Where a slot's bytes are, read once from a checked layout.
#[derive(Debug, Clone, Copy)]
struct SlotInfo {
    /// Offset of the slot's bytes in the segment's data.
    data: usize,
    capacity: usize,
}

/// What a read copied out of a slot, to be decoded once the copy is known
/// to be whole.
struct Raw {
    tag: u32,
    len: u32,
    word: u64,
    bytes: Vec<u8>,
}

/// A fixed-length list of [`Item`]s in shared memory, as Python's
/// `shared_memory.ShareableList`: any process that has it (a forked child
/// through a clone of the handle, an unrelated process through
/// [`open`](ShareableList::open)) reads and writes the same items.
///
/// ```
/// use procs_sync::{Item, ShareableList};
///
/// let list = ShareableList::create_named(None, [1.into(), "hi".into(), 2.5.into()])?;
/// let other = ShareableList::open(list.name().unwrap())?;
/// other.set(1, "hello")?;               // fits: "hi" got an 8-byte slot
/// assert_eq!(list.get(1)?, Item::Str("hello".into()));
/// assert!(list.set(1, "far too long for it").is_err());
/// assert_eq!(list.format()?, "q8sd");
/// assert_eq!(list.to_vec()?, [Item::Int(1), "hello".into(), Item::Float(2.5)]);
/// # Ok::<(), procs_sync::Error>(())
/// ```
///
/// What another process wrote is checked before it is used: a slot that
/// claims more bytes than its capacity, an unknown kind or a str that is
/// not UTF-8 is [`Error::Corrupt`], never undefined behaviour or a panic.
///
/// # Concurrency
///
/// Python's `ShareableList` takes no lock, and neither does this one: a
/// [`get`](ShareableList::get) and a [`set`](ShareableList::set) of the
/// same slot may run at the same time in two processes. Shared memory is
/// only touched through atomics, so a race is never undefined behaviour.
/// Each slot carries a sequence counter (a seqlock): a read that overlaps a
/// write is retried, so as long as one process at a time writes a given
/// slot, a reader sees either the old item or the new one, never a mix. Two
/// processes writing the same slot at once may leave a mix of both items'
/// bytes (as in Python), which a reader returns if it is still a valid item,
/// or reports as `Corrupt` (a str that is no longer UTF-8); serialize such
/// writers with a [`Lock`](crate::Lock). A writer killed in the middle of a
/// write leaves its slot half-written: readers retry for about 100 ms, then
/// get [`Error::Torn`], until the next `set` of that slot repairs it.
#[derive(Clone)]
pub struct ShareableList {
    seg: Arc<Segment>,
    slots: Arc<[SlotInfo]>,
}

impl ShareableList {
    /// A list of `items` in a new anonymous segment: forked children that
    /// get a clone of the handle share it.
    ///
    /// ```
    /// use procs_sync::{Item, ShareableList};
    ///
    /// let list = ShareableList::new([7.into(), Item::None, b"ab".into()])?;
    /// assert_eq!(list.len(), 3);
    /// assert_eq!(list.name(), None);
    /// assert_eq!(list.get(2)?, Item::Bytes(b"ab".to_vec()));
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn new(items: impl IntoIterator<Item = Item>) -> Result<ShareableList> {
        Self::make(items, |size| {
            Segment::create_anonymous(Kind::SHAREABLE_LIST, size)
        })
    }

    /// A list of `items` in a new named segment (a generated name with
    /// `None`), which any process can [`open`](ShareableList::open). As for
    /// a [`Segment`], the name is unlinked when the creator's last handle
    /// goes, unless [`keep`](Segment::keep) is called on
    /// [`shm`](ShareableList::shm).
    ///
    /// ```
    /// use procs_sync::ShareableList;
    ///
    /// let list = ShareableList::create_named(None, ["a".into(), 1.into()])?;
    /// assert!(list.name().unwrap().starts_with('/'));
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn create_named(
        name: Option<&str>,
        items: impl IntoIterator<Item = Item>,
    ) -> Result<ShareableList> {
        Self::make(items, |size| {
            Segment::create_named_kind(name, Kind::SHAREABLE_LIST, size)
        })
    }

    fn make(
        items: impl IntoIterator<Item = Item>,
        segment: impl FnOnce(usize) -> Result<Segment>,
    ) -> Result<ShareableList> {
        let items: Vec<Item> = items.into_iter().collect();
        let mut slots = Vec::with_capacity(items.len());
        let mut data = 0usize;
        for item in &items {
            let capacity = item.capacity()?;
            slots.push(SlotInfo { data, capacity });
            data = data
                .checked_add(capacity)
                .ok_or(Error::Invalid("list size overflows"))?;
        }
        let table = items
            .len()
            .checked_mul(SLOT)
            .and_then(|t| t.checked_add(LIST_HEADER))
            .ok_or(Error::Invalid("list size overflows"))?;
        let size = table
            .checked_add(data)
            .ok_or(Error::Invalid("list size overflows"))?;
        for s in &mut slots {
            s.data += table;
        }
        let list = ShareableList {
            seg: Arc::new(segment(size)?),
            slots: slots.into(),
        };
        // Nobody can read the list before the magic is published: plain
        // relaxed stores are enough until then.
        list.u64_at(8).store(items.len() as u64, Ordering::Relaxed);
        list.u64_at(16).store(data as u64, Ordering::Relaxed);
        for (i, item) in items.iter().enumerate() {
            list.u64_at(slot(i) + 16)
                .store(list.slots[i].capacity as u64, Ordering::Relaxed);
            list.write(i, item);
        }
        list.u64_at(0).store(LIST_MAGIC, Ordering::Release);
        Ok(list)
    }

    /// Opens the list in the named segment `name`, made by any process
    /// (Python's `ShareableList(name=...)`), checking its layout.
    ///
    /// ```
    /// use procs_sync::{Error, Item, Segment, ShareableList};
    ///
    /// let list = ShareableList::create_named(None, [1.into()])?;
    /// assert_eq!(ShareableList::open(list.name().unwrap())?.get(0)?, Item::Int(1));
    ///
    /// let bytes = Segment::create_named(None, 64)?;
    /// assert!(matches!(
    ///     ShareableList::open(bytes.name().unwrap()),
    ///     Err(Error::KindMismatch { .. })
    /// ));
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<ShareableList> {
        let seg = Segment::open_kind(name, Some(Kind::SHAREABLE_LIST))?;
        Self::attach(seg)
    }

    fn attach(seg: Segment) -> Result<ShareableList> {
        let size = seg.size();
        let mut list = ShareableList {
            seg: Arc::new(seg),
            slots: Arc::from([]),
        };
        if size < LIST_HEADER {
            return Err(list.corrupt(format!("{size} bytes cannot hold a list header")));
        }
        if list.u64_at(0).load(Ordering::Acquire) != LIST_MAGIC {
            return Err(list.corrupt("no list magic (not a list, or not finished)".into()));
        }
        let count = list.u64_at(8).load(Ordering::Relaxed);
        let data = list.u64_at(16).load(Ordering::Relaxed);
        let table = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(SLOT))
            .and_then(|t| t.checked_add(LIST_HEADER))
            .filter(|&t| t <= size);
        let Some(table) = table else {
            return Err(list.corrupt(format!("{count} items cannot fit {size} bytes")));
        };
        let data = usize::try_from(data)
            .ok()
            .filter(|&d| d <= size - table)
            .ok_or_else(|| list.corrupt(format!("{data} data bytes cannot fit {size} bytes")))?;
        let count = (table - LIST_HEADER) / SLOT;
        let mut slots = Vec::with_capacity(count);
        let mut offset = 0usize;
        for i in 0..count {
            let capacity = list.u64_at(slot(i) + 16).load(Ordering::Relaxed);
            let capacity = usize::try_from(capacity)
                .ok()
                .filter(|&c| {
                    // Lengths are 32-bit: no slot made here is 4 GiB.
                    c >= ALIGN
                        && c.is_multiple_of(ALIGN)
                        && c <= data - offset
                        && c <= u32::MAX as usize
                })
                .ok_or_else(|| {
                    list.corrupt(format!(
                        "item {i} has a capacity of {capacity} bytes, with {} left",
                        data - offset
                    ))
                })?;
            slots.push(SlotInfo {
                data: table + offset,
                capacity,
            });
            offset += capacity;
        }
        if offset != data {
            return Err(list.corrupt(format!(
                "the capacities add up to {offset} bytes, the header says {data}"
            )));
        }
        list.slots = slots.into();
        Ok(list)
    }

    /// The number of items (fixed when the list was made).
    ///
    /// ```
    /// let list = procs_sync::ShareableList::new([1.into(), 2.into()])?;
    /// assert_eq!(list.len(), 2);
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the list has no items.
    ///
    /// ```
    /// assert!(procs_sync::ShareableList::new([])?.is_empty());
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The most bytes a str or bytes item `index` can hold.
    ///
    /// ```
    /// let list = procs_sync::ShareableList::new(["".into(), "12345678".into(), 1.into()])?;
    /// assert_eq!(list.capacity(0)?, 8);
    /// assert_eq!(list.capacity(1)?, 16);
    /// assert_eq!(list.capacity(2)?, 8);
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn capacity(&self, index: usize) -> Result<usize> {
        Ok(self.info(index)?.capacity)
    }

    /// Item `index` (Python's `sl[index]`).
    ///
    /// ```
    /// use procs_sync::{Error, Item, ShareableList};
    ///
    /// let list = ShareableList::new(["x".into()])?;
    /// assert_eq!(list.get(0)?, Item::Str("x".into()));
    /// assert!(matches!(list.get(1), Err(Error::IndexOutOfRange { index: 1, len: 1 })));
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn get(&self, index: usize) -> Result<Item> {
        let info = self.info(index)?;
        let s = slot(index);
        let (begun, ended) = (self.u64_at(s), self.u64_at(s + 8));
        let mut tries = 0u32;
        let mut since: Option<Instant> = None;
        loop {
            // Seqlock read: a write that finished is seen whole (acquire
            // on `ended`); one that overlapped the copy changed `begun`,
            // which the acquire fence orders after the copied loads.
            let e1 = ended.load(Ordering::Acquire);
            let b1 = begun.load(Ordering::Acquire);
            if b1 == e1 {
                let raw = self.copy_out(index, info);
                fence(Ordering::Acquire);
                if begun.load(Ordering::Relaxed) == b1 {
                    return self.decode(index, info, raw);
                }
            }
            tries += 1;
            if tries < 64 {
                std::hint::spin_loop();
            } else if tries < 128 {
                std::thread::yield_now();
            } else {
                let start = *since.get_or_insert_with(Instant::now);
                if start.elapsed() > TORN_AFTER {
                    return Err(Error::Torn { index });
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Replaces item `index` with `item` (Python's `sl[index] = item`). Any
    /// kind may replace any other if it fits the slot; a str or bytes
    /// longer than [`capacity`](ShareableList::capacity) is
    /// [`Error::TooLong`] and leaves the old item.
    ///
    /// ```
    /// use procs_sync::{Error, Item, ShareableList};
    ///
    /// let list = ShareableList::new(["abc".into(), 0.into()])?;
    /// list.set(1, "8 bytes!")?;            // a number's slot holds 8 bytes
    /// list.set(0, 3.5)?;
    /// assert!(matches!(list.set(0, "more than 8"), Err(Error::TooLong { capacity: 8, .. })));
    /// assert_eq!(list.to_vec()?, [Item::Float(3.5), "8 bytes!".into()]);
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn set(&self, index: usize, item: impl Into<Item>) -> Result<()> {
        let info = self.info(index)?;
        let item = item.into();
        let len = match &item {
            Item::Str(s) => s.len(),
            Item::Bytes(b) => b.len(),
            _ => 0,
        };
        if len > info.capacity {
            return Err(Error::TooLong {
                index,
                len,
                capacity: info.capacity,
            });
        }
        self.write(index, &item);
        Ok(())
    }

    /// How many items equal `item` (Python's `count`). Kinds are compared
    /// too: `Int(1)` does not equal `Float(1.0)` or `Bool(true)`, as it
    /// does in Python.
    ///
    /// ```
    /// let list = procs_sync::ShareableList::new([1.into(), 2.into(), 1.into()])?;
    /// assert_eq!(list.count(&1.into())?, 2);
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn count(&self, item: &Item) -> Result<usize> {
        let mut n = 0;
        for got in self {
            n += usize::from(got? == *item);
        }
        Ok(n)
    }

    /// The index of the first item equal to `item`, `None` if there is none
    /// (where Python's `index` raises `ValueError`).
    ///
    /// ```
    /// let list = procs_sync::ShareableList::new(["a".into(), "b".into()])?;
    /// assert_eq!(list.index(&"b".into())?, Some(1));
    /// assert_eq!(list.index(&"c".into())?, None);
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn index(&self, item: &Item) -> Result<Option<usize>> {
        for (i, got) in self.iter().enumerate() {
            if got? == *item {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// The items in order, each read as by [`get`](ShareableList::get).
    ///
    /// ```
    /// let list = procs_sync::ShareableList::new([1.into(), 2.into()])?;
    /// let sum: i64 = list
    ///     .iter()
    ///     .map(|item| match item? {
    ///         procs_sync::Item::Int(n) => Ok(n),
    ///         _ => Ok(0),
    ///     })
    ///     .sum::<procs_sync::Result<i64>>()?;
    /// assert_eq!(sum, 3);
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            list: self,
            next: 0,
        }
    }

    /// A copy of every item.
    ///
    /// ```
    /// use procs_sync::{Item, ShareableList};
    ///
    /// let list = ShareableList::new([true.into(), ().into()])?;
    /// assert_eq!(list.to_vec()?, [Item::Bool(true), Item::None]);
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn to_vec(&self) -> Result<Vec<Item>> {
        self.iter().collect()
    }

    /// The `struct` format of the items as Python's `ShareableList.format`
    /// gives it: `q` for an int, `d` for a float, `xxxxxxx?` for a bool,
    /// `xxxxxx?x` for `None`, `<capacity>s` for a str or bytes.
    ///
    /// ```
    /// let list = procs_sync::ShareableList::new([1.into(), "hi".into(), ().into()])?;
    /// assert_eq!(list.format()?, "q8sxxxxxx?x");
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn format(&self) -> Result<String> {
        let mut out = String::new();
        for (i, item) in self.iter().enumerate() {
            out.push_str(&item?.format(self.slots[i].capacity));
        }
        Ok(out)
    }

    /// The segment the list lives in (Python's `sl.shm`).
    ///
    /// ```
    /// let list = procs_sync::ShareableList::new([1.into()])?;
    /// assert!(list.shm().size() >= 8);
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn shm(&self) -> &Segment {
        &self.seg
    }

    /// The segment's name (Python's `sl.shm.name`), `None` if anonymous.
    ///
    /// ```
    /// use procs_sync::ShareableList;
    ///
    /// let list = ShareableList::create_named(None, [1.into()])?;
    /// let name = list.name().unwrap();
    /// assert_eq!(ShareableList::open(name)?.name(), Some(name));
    /// assert_eq!(ShareableList::new([1.into()])?.name(), None);
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.seg.name()
    }

    fn info(&self, index: usize) -> Result<SlotInfo> {
        self.slots
            .get(index)
            .copied()
            .ok_or(Error::IndexOutOfRange {
                index,
                len: self.slots.len(),
            })
    }

    /// Writes `item`, which fits the slot, as one seqlock write.
    fn write(&self, index: usize, item: &Item) {
        let info = self.slots[index];
        let s = slot(index);
        let b = self
            .u64_at(s)
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        // Orders the increment before the stores below for any reader that
        // sees one of them (it then sees `begun` changed and retries).
        fence(Ordering::Release);
        let (tag, len, word, bytes): (u32, usize, u64, &[u8]) = match item {
            Item::None => (TAG_NONE, 0, 0, &[]),
            Item::Int(v) => (TAG_INT, 0, *v as u64, &[]),
            Item::Float(v) => (TAG_FLOAT, 0, v.to_bits(), &[]),
            Item::Bool(v) => (TAG_BOOL, 0, u64::from(*v), &[]),
            Item::Str(v) => (TAG_STR, v.len(), 0, v.as_bytes()),
            Item::Bytes(v) => (TAG_BYTES, v.len(), 0, v),
        };
        self.u32_at(s + 24).store(tag, Ordering::Relaxed);
        // The length fits: it is at most the capacity, which is below 4 GiB.
        self.u32_at(s + 28).store(len as u32, Ordering::Relaxed);
        if matches!(tag, TAG_STR | TAG_BYTES) {
            for (k, chunk) in bytes.chunks(ALIGN).enumerate() {
                let mut w = [0u8; ALIGN];
                w[..chunk.len()].copy_from_slice(chunk);
                self.u64_at(info.data + k * ALIGN)
                    .store(u64::from_ne_bytes(w), Ordering::Relaxed);
            }
        } else {
            self.u64_at(info.data).store(word, Ordering::Relaxed);
        }
        // The greatest finished write: also repairs a slot whose writer
        // died mid-write, once a later write ends.
        self.u64_at(s + 8).fetch_max(b, Ordering::Release);
    }

    /// Copies a slot's fields and bytes out, as they are now; the bytes
    /// only up to the slot's capacity, whatever its length field says.
    fn copy_out(&self, index: usize, info: SlotInfo) -> Raw {
        let s = slot(index);
        let tag = self.u32_at(s + 24).load(Ordering::Relaxed);
        let len = self.u32_at(s + 28).load(Ordering::Relaxed);
        let mut raw = Raw {
            tag,
            len,
            word: 0,
            bytes: Vec::new(),
        };
        if matches!(tag, TAG_STR | TAG_BYTES) {
            let n = (len as usize).min(info.capacity);
            raw.bytes.reserve_exact(n.next_multiple_of(ALIGN));
            for k in 0..n.div_ceil(ALIGN) {
                let w = self.u64_at(info.data + k * ALIGN).load(Ordering::Relaxed);
                raw.bytes.extend_from_slice(&w.to_ne_bytes());
            }
            raw.bytes.truncate(n);
        } else {
            raw.word = self.u64_at(info.data).load(Ordering::Relaxed);
        }
        raw
    }

    fn decode(&self, index: usize, info: SlotInfo, raw: Raw) -> Result<Item> {
        if matches!(raw.tag, TAG_STR | TAG_BYTES) && raw.len as usize > info.capacity {
            return Err(self.corrupt(format!(
                "item {index} claims {} bytes in a slot of {}",
                raw.len, info.capacity
            )));
        }
        Ok(match raw.tag {
            TAG_NONE => Item::None,
            TAG_INT => Item::Int(raw.word as i64),
            TAG_FLOAT => Item::Float(f64::from_bits(raw.word)),
            TAG_BOOL => match raw.word {
                0 => Item::Bool(false),
                1 => Item::Bool(true),
                w => return Err(self.corrupt(format!("item {index} is a bool of value {w}"))),
            },
            TAG_STR => Item::Str(String::from_utf8(raw.bytes).map_err(|_| {
                self.corrupt(format!(
                    "item {index} is a str that is not UTF-8 (or was torn by concurrent writers)"
                ))
            })?),
            TAG_BYTES => Item::Bytes(raw.bytes),
            tag => return Err(self.corrupt(format!("item {index} has unknown kind {tag}"))),
        })
    }

    fn corrupt(&self, why: String) -> Error {
        Error::Corrupt {
            name: self.seg.name().unwrap_or("<anonymous>").to_owned(),
            why,
        }
    }

    /// The 8-byte word at `offset` of the data.
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.seg.size());
        // SAFETY: in bounds and aligned (asserted; the data is 64-byte
        // aligned); the mapping lives as long as `self.seg`, and shared
        // memory is only accessed through atomics, for which any bits are
        // a valid value.
        unsafe { &*self.seg.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// The 4-byte word at `offset` of the data.
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= self.seg.size());
        // SAFETY: as in `u64_at`.
        unsafe { &*self.seg.as_ptr().add(offset).cast::<AtomicU32>() }
    }
}

/// Offset of slot `i`'s fields in the data.
fn slot(i: usize) -> usize {
    LIST_HEADER + SLOT * i
}

impl fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_list();
        for item in self {
            match item {
                Ok(item) => l.entry(&item),
                Err(e) => l.entry(&format_args!("<{e}>")),
            };
        }
        l.finish()?;
        write!(f, " in {:?}", self.name().unwrap_or("<anonymous>"))
    }
}

/// The items of a [`ShareableList`], each a `Result` as from
/// [`get`](ShareableList::get).
///
/// ```
/// let list = procs_sync::ShareableList::new([1.into(), 2.into()])?;
/// for item in &list {
///     println!("{:?}", item?);
/// }
/// # Ok::<(), procs_sync::Error>(())
/// ```
#[derive(Debug)]
pub struct Iter<'a> {
    list: &'a ShareableList,
    next: usize,
}

impl Iterator for Iter<'_> {
    type Item = Result<Item>;

    fn next(&mut self) -> Option<Result<Item>> {
        if self.next >= self.list.len() {
            return None;
        }
        self.next += 1;
        Some(self.list.get(self.next - 1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.list.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a ShareableList {
    type Item = Result<Item>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_holds_exactly_its_capacity() {
        let list = ShareableList::new(["1234567".into()]).unwrap();
        list.set(0, "12345678").unwrap();
        assert_eq!(list.get(0).unwrap(), Item::Str("12345678".into()));
        list.set(0, b"\0\0".to_vec()).unwrap();
        assert_eq!(list.get(0).unwrap(), Item::Bytes(vec![0, 0]));
        assert!(matches!(
            list.set(0, "123456789"),
            Err(Error::TooLong {
                index: 0,
                len: 9,
                capacity: 8
            })
        ));
    }
}
