//! The pool's wire format on any values: the reader gives back every
//! value the writer wrote, consumes exactly its bytes, and refuses every
//! truncation of them; a chunk reads back only with its own count; and the
//! writer refuses a value nested deeper than the reader reads (and only
//! such a value).
//!
//! `cargo +nightly fuzz run wire_round_trip -- -max_total_time=60` (from procs-pool/)
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use procs_pool::fuzzing::{MAX_DEPTH, decode, decode_chunk, decode_chunk_in_place, encode, encode_chunk};
use procs_pool_fuzz::{Everything, List, Maps, Shape};
use serde::{Serialize, de::DeserializeOwned};

#[derive(Arbitrary, Debug)]
struct Input {
    every: Everything,
    maps: Maps,
    shapes: Vec<Shape>,
    /// A list `levels % 128` long (nested up to twice the limit).
    levels: u8,
}

fuzz_target!(|input: Input| {
    same_bytes(&input.every);
    same_bytes(&input.shapes);
    let bytes = encoded(&input.maps);
    let (back, rest) = decode::<Maps>(&bytes).expect("the reader refused what the writer wrote");
    assert_eq!(back, input.maps);
    assert!(rest.is_empty());
    truncations_are_refused::<Maps>(&bytes);

    // A chunk reads back with its count only.
    let mut chunk = Vec::new();
    encode_chunk(&input.shapes, &mut chunk).expect("encode a chunk");
    let n = input.shapes.len();
    for in_place in [false, true] {
        let read = |expected| {
            if in_place {
                decode_chunk_in_place::<Shape>(&chunk, expected)
            } else {
                decode_chunk::<Shape>(&chunk, expected)
            }
        };
        let values = read(n).expect("a chunk did not read back");
        assert_eq!(encoded_chunk(&values), chunk);
        assert!(read(n + 1).is_err());
        if n > 0 {
            assert!(read(n - 1).is_err());
        }
    }

    // The writer and the reader agree on the deepest value.
    let levels = input.levels as usize % 128;
    let list = List::of(levels);
    let mut bytes = Vec::new();
    match encode(&list, &mut bytes) {
        Ok(()) => {
            assert!(List::wire_depth(levels) <= MAX_DEPTH);
            let (back, rest) = decode::<List>(&bytes).expect("a list did not read back");
            assert_eq!(back, list);
            assert!(rest.is_empty());
        }
        Err(e) => {
            assert!(List::wire_depth(levels) > MAX_DEPTH, "{levels} levels: {e}");
            assert!(e.contains("nested deeper than"), "{e}");
            // What a writer without the limit would write is refused too.
            let mut forged = Vec::new();
            for i in 0..levels {
                forged.extend_from_slice(&1u32.to_le_bytes());
                forged.push(i as u8);
            }
            forged.extend_from_slice(&0u32.to_le_bytes());
            let e = decode::<List>(&forged).expect_err("a list too deep was read");
            assert!(e.contains("nested deeper than"), "{e}");
        }
    }
});

fn encoded<T: Serialize>(v: &T) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode(v, &mut bytes).expect("the writer refused a value");
    bytes
}

fn encoded_chunk<T: Serialize>(v: &[T]) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_chunk(v, &mut bytes).expect("the writer refused a chunk");
    bytes
}

/// Decoded and encoded again, `v` gives the same bytes (floats may be NaN,
/// so the bytes are compared, not the values).
fn same_bytes<T: Serialize + DeserializeOwned>(v: &T) {
    let bytes = encoded(v);
    let (back, rest) = decode::<T>(&bytes).expect("the reader refused what the writer wrote");
    assert!(rest.is_empty(), "{} bytes left after the value", rest.len());
    assert_eq!(encoded(&back), bytes, "a value changed on its way");
    truncations_are_refused::<T>(&bytes);
}

/// No strict prefix of a value's bytes is a value of its type.
fn truncations_are_refused<T: DeserializeOwned>(bytes: &[u8]) {
    // Every cut of a short value, and 64 spread over a long one.
    let step = (bytes.len() / 64).max(1);
    for n in (0..bytes.len()).step_by(step) {
        assert!(decode::<T>(&bytes[..n]).is_err(), "cut at {n} of {}", bytes.len());
    }
}
