//! What the fuzz targets share: values of every kind of serde data the
//! pool's wire format knows, and a global allocator that records the
//! largest allocation made while armed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use serde::{Deserialize, Serialize};

// ----- the largest allocation made during a decode -----

/// The system allocator, recording the largest allocation while armed.
pub struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn note(size: usize) {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(size, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// bookkeeping touches only two atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::note(layout.size());
        // SAFETY: forwarded with the caller's layout, as GlobalAlloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::note(layout.size());
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::note(new_size);
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the largest allocation it made.
pub fn counting<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.store(0, Ordering::Relaxed);
    ARMED.store(true, Ordering::Relaxed);
    let r = f();
    ARMED.store(false, Ordering::Relaxed);
    (r, LARGEST.load(Ordering::Relaxed))
}

// ----- the values -----

/// Bytes written as one length and a copy (`serialize_bytes`), read with
/// `deserialize_byte_buf`: the pool's outputs travel so.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct ByteBuf(pub Vec<u8>);

impl Serialize for ByteBuf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
        }
        d.deserialize_byte_buf(Visit)
    }
}

/// Every kind of enum variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Arbitrary)]
pub enum Shape {
    Unit,
    Circle(f64),
    Rect { w: u32, h: u32 },
    Pair(i8, String),
    Tagged(Option<Marker>),
}

/// A newtype struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Arbitrary)]
pub struct Meters(pub f32);

/// A unit struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Arbitrary)]
pub struct Marker;

/// Every kind of serde data but maps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Arbitrary)]
pub struct Everything {
    pub b: bool,
    pub c: char,
    pub i: (i8, i16, i32, i64, i128),
    pub u: (u8, u16, u32, u64, u128),
    pub f: (f32, f64),
    pub s: String,
    pub bytes: ByteBuf,
    pub seq: Vec<u8>,
    pub o: (Option<u16>, Option<String>),
    pub shapes: Vec<Shape>,
    pub units: Vec<()>,
    pub unit_seqs: Vec<Vec<()>>,
    pub arr: [u16; 3],
    pub unit: (),
    pub meters: Meters,
    pub marker: Marker,
    pub boxed: Box<[u32]>,
    pub nested: Vec<Vec<Option<(u8, char)>>>,
}

/// Maps (whose encodings a decode does not give back byte for byte: keys
/// that repeat are merged, and a `HashMap` has no order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
pub struct Maps {
    pub tree: BTreeMap<String, Vec<u64>>,
    pub hash: HashMap<u16, Option<()>>,
    pub units: HashMap<(), ()>,
}

/// A recursive type: one level is two of the wire's levels (the enum and
/// the tuple variant's fields), and `Nil` one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum List {
    Nil,
    Cons(u8, Box<List>),
}

impl List {
    /// A list `levels` long.
    pub fn of(levels: usize) -> List {
        (0..levels).fold(List::Nil, |l, i| List::Cons(i as u8, Box::new(l)))
    }

    /// The wire's levels of nesting of a list `levels` long.
    pub fn wire_depth(levels: usize) -> usize {
        2 * levels + 1
    }
}

/// A type that needs a self-describing format (`deserialize_any`), which
/// the wire is not: every decode is an error.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Untagged {
    Number(u64),
    Text(String),
}
