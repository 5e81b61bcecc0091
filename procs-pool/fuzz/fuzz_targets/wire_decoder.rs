//! The pool's wire decoder on any bytes, as a broken or hostile worker
//! could send them: as one value of a type, and as a chunk of values (what
//! `map` and `imap` read).
//!
//! The input is a selector (which type), a chunk's expected count, and the
//! bytes. Every decode returns `Ok` or an error and never panics, and no
//! allocation it makes is larger than the bytes could hold (a length
//! prefix that claims more than what follows is refused before anything
//! is allocated for it). What it accepts is exactly what the writer
//! writes: the value decoded, encoded again, gives back the bytes it was
//! read from (maps excepted, whose keys may repeat: there, what is decoded
//! round-trips).
//!
//! `cargo +nightly fuzz run wire_decoder -- -max_total_time=240` (from procs-pool/)
#![no_main]

use libfuzzer_sys::fuzz_target;
use procs_pool::fuzzing::{decode, decode_chunk, decode_chunk_in_place, encode, encode_chunk};
use procs_pool_fuzz::{ByteBuf, Everything, List, Maps, Shape, Untagged, counting};
use serde::{Serialize, de::DeserializeOwned};

fuzz_target!(|data: &[u8]| {
    let [selector, expected, bytes @ ..] = data else {
        return;
    };
    let expected = *expected as usize;
    match selector % 11 {
        0 => canonical::<Everything>(bytes, expected),
        1 => canonical::<Vec<Shape>>(bytes, expected),
        2 => canonical::<(String, ByteBuf, Option<char>)>(bytes, expected),
        3 => canonical::<List>(bytes, expected),
        4 => canonical::<Vec<Vec<()>>>(bytes, expected),
        5 => canonical::<u64>(bytes, expected),
        6 => canonical::<Vec<String>>(bytes, expected),
        7 => canonical::<Vec<(u8, Option<bool>, [u32; 2])>>(bytes, expected),
        8 => canonical::<Option<Box<Shape>>>(bytes, expected),
        9 => round_trips::<Maps>(bytes, expected),
        _ => {
            let (r, largest) = counting(|| decode::<Untagged>(bytes));
            assert!(r.is_err(), "a format that is not self-describing decoded {r:?}");
            check_alloc(largest, bytes.len(), 0, 0);
        }
    }
});

/// The largest allocation a decode of `len` bytes may make: its sequences
/// and maps reserve room for no more elements than the bytes can hold
/// (each takes a byte at least), and at most 1 MiB each (serde's own cap);
/// a chunk reserves `expected` values of `size` bytes.
fn check_alloc(largest: usize, len: usize, expected: usize, size: usize) {
    let bound = (64 * len).min(4 << 20) + expected * size + 4096;
    assert!(
        largest <= bound,
        "decoding {len} bytes allocated {largest} at once (at most {bound})"
    );
}

/// A value decoded from `bytes` is encoded back to the bytes it came from.
fn canonical<T: Serialize + DeserializeOwned>(bytes: &[u8], expected: usize) {
    let (r, largest) = counting(|| decode::<T>(bytes));
    check_alloc(largest, bytes.len(), 0, 0);
    if let Ok((v, rest)) = r {
        let used = &bytes[..bytes.len() - rest.len()];
        let mut again = Vec::new();
        encode(&v, &mut again).expect("the writer refused a value the reader accepted");
        assert_eq!(again, used, "the reader accepted bytes the writer does not write");
    }
    for in_place in [false, true] {
        let (r, largest) = counting(|| chunk::<T>(bytes, expected, in_place));
        check_alloc(largest, bytes.len(), expected, std::mem::size_of::<T>());
        if let Ok(values) = r {
            assert_eq!(values.len(), expected);
            let mut again = Vec::new();
            encode_chunk(&values, &mut again).expect("the writer refused a chunk");
            assert_eq!(again, bytes, "a chunk decoded from bytes the writer does not write");
        }
    }
}

/// A value decoded from `bytes` round-trips.
fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
    expected: usize,
) {
    let (r, largest) = counting(|| decode::<T>(bytes));
    check_alloc(largest, bytes.len(), 0, 0);
    if let Ok((v, _)) = r {
        let mut again = Vec::new();
        encode(&v, &mut again).expect("the writer refused a value the reader accepted");
        let (back, rest) = decode::<T>(&again).expect("the reader refused what the writer wrote");
        assert_eq!(back, v);
        assert!(rest.is_empty());
    }
    for in_place in [false, true] {
        let (r, largest) = counting(|| chunk::<T>(bytes, expected, in_place));
        check_alloc(largest, bytes.len(), expected, std::mem::size_of::<T>());
        if let Ok(values) = r {
            assert_eq!(values.len(), expected);
        }
    }
}

fn chunk<T: DeserializeOwned>(bytes: &[u8], expected: usize, in_place: bool) -> Result<Vec<T>, String> {
    if in_place {
        decode_chunk_in_place::<T>(bytes, expected)
    } else {
        decode_chunk::<T>(bytes, expected)
    }
}
