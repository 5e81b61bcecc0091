//! The pool's wire format for arguments and results: serde data as fixed
//! width little-endian numbers, written and read with one bounds check per
//! value (no variable-length integers: a map over numbers is dominated by
//! their encoding, and a fixed width is a copy).
//!
//! ```text
//! bool, u8, i8          1 byte          char           4 bytes (u32)
//! u16/i16, u32/i32/f32  2, 4 bytes      u64/i64/f64    8 bytes
//! u128/i128             16 bytes        length         8 bytes (u64)
//! str, bytes            length, bytes   seq, map       length, elements
//! option                0 | 1 value     enum variant   u32 index, fields
//! unit, unit struct     nothing         tuple, struct  fields in order
//! ```
//!
//! The reader never panics and never allocates from a length it read
//! before checking that the input holds that many bytes (each element
//! takes at least one byte, except zero-sized ones: a value holds at most
//! [`MAX_ZERO_SIZED`] elements of no bytes, all its sequences together, so
//! that its decoding takes time in proportion to its bytes). Values nest at
//! most [`MAX_DEPTH`] levels deep (a recursive type would otherwise
//! overflow the reader's stack, which aborts the process); the writer
//! refuses what the reader would. It is not self-describing:
//! `deserialize_any` is an error.
//!
//! The writer is [`write`], the reader [`read`]; what both keep to (the
//! limits, the error) is here.

use std::fmt;

use serde::{de, ser};

mod read;
mod write;

pub(crate) use read::take_from;
pub(crate) use write::to_extend;

/// A wire error, in words.
#[derive(Debug)]
pub(crate) struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

impl ser::Error for WireError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WireError(msg.to_string())
    }
}

impl de::Error for WireError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WireError(msg.to_string())
    }
}

type Res<T> = Result<T, WireError>;

/// The deepest a value may nest: sequences, maps, tuples, structs,
/// enums, options and newtypes each count a level (a tuple or struct
/// variant two). Decoding a level takes some hundreds of bytes of stack in
/// a debug build; 128 levels fit with room to spare in the smallest stack
/// the reader runs on (a thread's 2 MiB).
pub(crate) const MAX_DEPTH: usize = 128;

/// The most elements of no bytes one value may hold, all its sequences
/// and maps together.
pub(crate) const MAX_ZERO_SIZED: u64 = 1 << 24;

fn too_deep() -> WireError {
    WireError(format!("a value nested deeper than {MAX_DEPTH} levels"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Serialize};
    use std::collections::{BTreeMap, HashMap};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Unit,
        Circle(f64),
        Rect { w: u32, h: u32 },
        Pair(i8, String),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Everything {
        b: bool,
        c: char,
        i: (i8, i16, i32, i64, i128),
        u: (u8, u16, u32, u64, u128),
        f: (f32, f64),
        s: String,
        bytes: Vec<u8>,
        o: (Option<u16>, Option<String>),
        shapes: Vec<Shape>,
        map: BTreeMap<String, Vec<u64>>,
        hash: HashMap<u8, ()>,
        unit: (),
        nested: Vec<Vec<Option<(u8, char)>>>,
    }

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + fmt::Debug>(v: &T) {
        let mut buf = Vec::new();
        to_extend(v, &mut buf).unwrap();
        let (back, rest) = take_from::<T>(&buf).unwrap();
        assert_eq!(&back, v);
        assert!(rest.is_empty());
        // Every truncation is an error, never a panic.
        for n in 0..buf.len() {
            assert!(take_from::<T>(&buf[..n]).is_err(), "truncated at {n}");
        }
    }

    #[test]
    fn every_kind_of_value_round_trips() {
        round_trip(&Everything {
            b: true,
            c: 'é',
            i: (-1, -300, -70_000, i64::MIN, i128::MIN),
            u: (255, 65535, u32::MAX, u64::MAX, u128::MAX),
            f: (1.5, -2.25e300),
            s: "héllo".into(),
            bytes: vec![0, 1, 2, 255],
            o: (Some(7), None),
            shapes: vec![
                Shape::Unit,
                Shape::Circle(2.0),
                Shape::Rect { w: 3, h: 4 },
                Shape::Pair(-1, "x".into()),
            ],
            map: [("a".to_string(), vec![1, 2]), ("b".into(), vec![])]
                .into_iter()
                .collect(),
            hash: [(1, ()), (2, ())].into_iter().collect(),
            unit: (),
            nested: vec![vec![Some((1, 'a')), None], vec![]],
        });
        round_trip(&u64::MAX);
        round_trip(&Vec::<()>::from([(), (), ()]));
    }

    #[test]
    fn lying_lengths_and_bad_values_are_errors() {
        // A Vec<u64> claiming 2^60 elements in 16 bytes.
        let mut lie = (1u64 << 60).to_le_bytes().to_vec();
        lie.extend_from_slice(&[0; 16]);
        assert!(take_from::<Vec<u64>>(&lie).is_err());
        assert!(take_from::<String>(&lie).is_err());
        assert!(take_from::<Vec<()>>(&lie).is_err());
        assert!(take_from::<bool>(&[2]).is_err());
        assert!(take_from::<Option<u8>>(&[9, 0]).is_err());
        assert!(take_from::<char>(&0xD800u32.to_le_bytes()).is_err());
        let mut bad_utf8 = 2u64.to_le_bytes().to_vec();
        bad_utf8.extend_from_slice(&[0xff, 0xfe]);
        assert!(take_from::<String>(&bad_utf8).is_err());
        // An enum index that names no variant.
        assert!(take_from::<Shape>(&9u32.to_le_bytes()).is_err());
    }

    #[test]
    fn zero_sized_elements_are_capped_per_value_not_per_sequence() {
        // Three sequences of 2^24 units each, in 32 bytes: each count is
        // within the cap, but together they would make the reader loop
        // 3 x 2^24 times (and 2^60 times for a longer input).
        let mut three = 3u64.to_le_bytes().to_vec();
        for _ in 0..3 {
            three.extend_from_slice(&MAX_ZERO_SIZED.to_le_bytes());
        }
        let err = take_from::<Vec<Vec<()>>>(&three).unwrap_err();
        assert!(err.contains("elements of no bytes"), "{err}");
        // One sequence of 2^24 units is fine.
        let mut one = 1u64.to_le_bytes().to_vec();
        one.extend_from_slice(&MAX_ZERO_SIZED.to_le_bytes());
        let (v, _) = take_from::<Vec<Vec<()>>>(&one).unwrap();
        assert_eq!(v[0].len(), MAX_ZERO_SIZED as usize);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum List {
        Nil,
        Cons(u8, Box<List>),
    }

    fn list(depth: usize) -> List {
        (0..depth).fold(List::Nil, |l, i| List::Cons(i as u8, Box::new(l)))
    }

    #[test]
    fn nesting_is_limited_instead_of_overflowing_the_stack() {
        // A recursive type, 1 million levels deep in 5 MB: without a limit
        // the reader recurses once per level and overflows its stack (an
        // abort of the whole process, not an error).
        let mut deep = Vec::new();
        for _ in 0..1_000_000 {
            deep.extend_from_slice(&1u32.to_le_bytes());
            deep.push(7);
        }
        deep.extend_from_slice(&0u32.to_le_bytes());
        let err = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || take_from::<List>(&deep).map(|_| ()))
            .unwrap()
            .join()
            .unwrap()
            .unwrap_err();
        assert!(err.contains("nested deeper than"), "{err}");
        // The writer refuses such a value too, with the same words.
        let too_deep = list(MAX_DEPTH + 1);
        let mut buf = Vec::new();
        let err = to_extend(&too_deep, &mut buf).unwrap_err();
        assert!(err.contains("nested deeper than"), "{err}");
        std::mem::forget(too_deep);
        // What is within the limit round-trips.
        let ok = list(MAX_DEPTH / 2 - 1);
        round_trip(&ok);
        std::mem::forget(ok);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..2000 {
            let bytes: Vec<u8> = (0..len % 97)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = take_from::<Everything>(&bytes);
            let _ = take_from::<Vec<Shape>>(&bytes);
            let _ = take_from::<(String, Vec<u8>, Option<char>)>(&bytes);
        }
    }
}
