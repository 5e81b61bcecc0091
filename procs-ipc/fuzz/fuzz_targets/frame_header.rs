//! `Header::parse` on any 8 bytes: it never panics, accepts exactly the
//! bytes that `Header::to_bytes` produces for a length up to
//! `Header::MAX_LEN`, and refuses the rest with `Error::Corrupt`.
//!
//! `cargo +nightly fuzz run frame_header -- -max_total_time=60` (from procs-ipc/)
#![no_main]

use libfuzzer_sys::fuzz_target;
use procs_ipc::Error;
use procs_ipc::frame::{HEADER, Header, padded};

fuzz_target!(|raw: [u8; HEADER]| {
    let len = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    match Header::parse(raw) {
        Ok(h) => {
            assert_eq!(
                h.to_bytes(),
                raw,
                "parse accepted bytes to_bytes does not write"
            );
            assert_eq!(h.len(), len as usize);
            assert!(len <= Header::MAX_LEN);
            let p = padded(h.len());
            assert!(p >= h.len() && p - h.len() < 8 && p.is_multiple_of(8));
            // The padded frame still counts in 32 bits.
            assert!(u32::try_from(HEADER + p).is_ok());
        }
        Err(Error::Corrupt(_)) => {
            // Refused: then no length up to the limit writes these bytes.
            assert!(len > Header::MAX_LEN || Header::new(len).to_bytes() != raw);
        }
        Err(e) => panic!("parse: unexpected {e:?}"),
    }
    // Whatever the bytes, the header of their length (within the limit)
    // round-trips.
    let h = Header::new(len.min(Header::MAX_LEN));
    assert_eq!(Header::parse(h.to_bytes()).ok(), Some(h));
});
