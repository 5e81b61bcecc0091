//! The frame header: the first 8 bytes of every message in a ring.
//!
//! ```text
//! bytes 0-3  payload length, little endian
//! bytes 4-7  the length XOR MAGIC XOR the frame's position in 8-byte units:
//!            a check that the header is one, and one written for this
//!            position (a header left from an earlier lap of the ring fails)
//! ```
//!
//! An *offer* (a message handed over by single copy, see `single_copy`)
//! has a header of its own kind: the same layout with another magic, so
//! that no data header can be taken for one.
//!
//! The payload follows, padded with zeros to a multiple of 8 so that every
//! header is 8-byte aligned in the ring. Because a stale header never
//! passes, a reader can poll the header word itself to learn that a frame
//! arrived. [`Header::parse_at`] is the decoder of bytes another process
//! wrote: it refuses a header whose check fails or whose length is beyond
//! [`Header::MAX_LEN`], and never panics.

use crate::error::{Error, Result};

/// Bytes in a header.
pub const HEADER: usize = 8;

const MAGIC: u32 = 0x9E37_79B9;
const MAGIC_OFFER: u32 = 0x7F4A_7C15;

/// The position's part of a header's check: the position in 8-byte units.
/// Positions a multiple of 2^35 bytes apart share a stamp; a ring is much
/// smaller, and every lap rewrites all of it.
fn stamp(pos: u64) -> u32 {
    (pos >> 3) as u32
}

/// `len` rounded up to a multiple of 8.
pub const fn padded(len: usize) -> usize {
    (len + 7) & !7
}

/// A checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    len: u32,
    offer: bool,
}

impl Header {
    /// The largest payload a frame can carry (4 GiB less 8 bytes, so that
    /// the padded frame still counts in 32 bits).
    pub const MAX_LEN: u32 = u32::MAX - 15;

    /// The header of a payload of `len` bytes (at most [`Header::MAX_LEN`]).
    pub fn new(len: u32) -> Self {
        Header { len, offer: false }
    }

    /// The header of an offer whose payload (its description) is `len`
    /// bytes.
    pub fn offer(len: u32) -> Self {
        Header { len, offer: true }
    }

    /// Whether the frame is an offer rather than a message.
    pub fn is_offer(self) -> bool {
        self.offer
    }

    fn magic(self) -> u32 {
        if self.offer { MAGIC_OFFER } else { MAGIC }
    }

    /// The payload's length.
    pub fn len(self) -> usize {
        self.len as usize
    }

    /// Whether the payload is empty.
    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// The 8 bytes to write at stream position 0.
    pub fn to_bytes(self) -> [u8; HEADER] {
        self.to_bytes_at(0)
    }

    /// The 8 bytes to write at stream position `pos`.
    pub fn to_bytes_at(self, pos: u64) -> [u8; HEADER] {
        let mut b = [0u8; HEADER];
        b[..4].copy_from_slice(&self.len.to_le_bytes());
        b[4..].copy_from_slice(&(self.len ^ self.magic() ^ stamp(pos)).to_le_bytes());
        b
    }

    /// The header word (its 8 bytes, little endian) to write at stream
    /// position `pos`.
    #[inline]
    pub fn word_at(self, pos: u64) -> u64 {
        u64::from(self.len) | u64::from(self.len ^ self.magic() ^ stamp(pos)) << 32
    }

    /// The header in a word read at stream position `pos`, if it is one
    /// (the check of [`Header::parse_at`], without building an error).
    #[inline]
    pub fn from_word_at(word: u64, pos: u64) -> Option<Header> {
        let len = word as u32;
        let check = (word >> 32) as u32;
        let offer = match check ^ len ^ stamp(pos) {
            MAGIC => false,
            MAGIC_OFFER => true,
            _ => return None,
        };
        (len <= Self::MAX_LEN).then_some(Header { len, offer })
    }

    /// Decodes and checks 8 bytes read at stream position 0.
    pub fn parse(b: [u8; HEADER]) -> Result<Header> {
        Self::parse_at(b, 0)
    }

    /// Decodes and checks 8 bytes read from a ring at stream position `pos`.
    pub fn parse_at(b: [u8; HEADER], pos: u64) -> Result<Header> {
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let check = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let offer = match check ^ len ^ stamp(pos) {
            MAGIC => false,
            MAGIC_OFFER => true,
            _ => return Err(Error::Corrupt("a frame header fails its check")),
        };
        if len > Self::MAX_LEN {
            return Err(Error::Corrupt(
                "a frame header claims a length beyond the limit",
            ));
        }
        Ok(Header { len, offer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_bad_ones_are_refused() {
        for len in [0, 1, 7, 8, 9, 1 << 20, Header::MAX_LEN] {
            let h = Header::new(len);
            assert_eq!(Header::parse(h.to_bytes()).unwrap(), h);
        }
        let mut b = Header::new(5).to_bytes();
        b[0] ^= 1;
        assert!(matches!(Header::parse(b), Err(Error::Corrupt(_))));
        assert!(Header::parse([0; 8]).is_err());
        let huge = u32::MAX;
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&huge.to_le_bytes());
        b[4..].copy_from_slice(&(huge ^ MAGIC).to_le_bytes());
        assert!(Header::parse(b).is_err());
        let h = Header::new(3);
        assert_eq!(Header::parse_at(h.to_bytes_at(4096), 4096).unwrap(), h);
        assert!(Header::parse_at(h.to_bytes_at(4096), 4096 - 1024).is_err());
        assert!(Header::parse_at(h.to_bytes_at(u64::MAX - 7), u64::MAX - 7).is_ok());
        for (len, pos) in [
            (0, 0),
            (3, 4096),
            (Header::MAX_LEN, u64::MAX - 7),
            (u32::MAX, 8),
        ] {
            let bytes = Header::new(len).to_bytes_at(pos);
            let word = u64::from_le_bytes(bytes);
            assert_eq!(Header::new(len).word_at(pos), word);
            assert_eq!(
                Header::from_word_at(word, pos),
                Header::parse_at(bytes, pos).ok()
            );
            assert_eq!(Header::from_word_at(word, pos.wrapping_add(8)), None);
        }
        let o = Header::offer(40);
        assert!(o.is_offer() && !Header::new(40).is_offer());
        assert_eq!(Header::parse_at(o.to_bytes_at(64), 64).unwrap(), o);
        assert_ne!(o.to_bytes_at(64), Header::new(40).to_bytes_at(64));
        assert_eq!(padded(0), 0);
        assert_eq!(padded(1), 8);
        assert_eq!(padded(8), 8);
        assert_eq!(padded(9), 16);
    }
}
