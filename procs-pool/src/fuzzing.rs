//! The decoders of bytes that another process wrote, for the fuzz targets
//! in `fuzz/`. Hidden, and not part of the API: anything here may change
//! in any release.
//!
//! A worker's output and a task's input are in the pool's wire format
//! (`wire`); a chunk is a count and that many values (`task`).

use serde::{Serialize, de::DeserializeOwned};

/// The deepest a value may nest.
pub const MAX_DEPTH: usize = crate::wire::MAX_DEPTH;

/// The most elements of no bytes one value may hold.
pub const MAX_ZERO_SIZED: u64 = crate::wire::MAX_ZERO_SIZED;

/// Appends `value` in the pool's wire format.
pub fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    crate::wire::to_extend(value, out)
}

/// Reads one value from the front of `input`: the value and the bytes
/// after it.
pub fn decode<T: DeserializeOwned>(input: &[u8]) -> Result<(T, &[u8]), String> {
    crate::wire::take_from(input)
}

/// Appends a chunk of `items`: its count, then each item.
pub fn encode_chunk<T: Serialize>(items: &[T], out: &mut Vec<u8>) -> Result<(), String> {
    crate::task::encode_chunk(items.iter(), out)
}

/// Reads a chunk of exactly `expected` items, as `imap` does.
pub fn decode_chunk<T: DeserializeOwned>(bytes: &[u8], expected: usize) -> Result<Vec<T>, String> {
    crate::task::decode_chunk(bytes, expected)
}

/// Reads a chunk of exactly `expected` items in place, as `map` does.
pub fn decode_chunk_in_place<T: DeserializeOwned>(
    bytes: &[u8],
    expected: usize,
) -> Result<Vec<T>, String> {
    let mut out = Vec::with_capacity(expected);
    crate::task::decode_chunk_into(bytes, &mut out.spare_capacity_mut()[..expected])?;
    // SAFETY: `decode_chunk_into` returned Ok, so it initialized each of
    // the first `expected` values (the capacity is at least that).
    unsafe { out.set_len(expected) };
    Ok(out)
}
