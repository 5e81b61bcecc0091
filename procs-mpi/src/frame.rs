//! The frames ranks write to each other's rings: a 32-byte envelope, then
//! the payload (EAGER, SYNC, DATA) or a description of a message to copy
//! out of the sender (RTS). Decoded with every field checked: a frame is
//! bytes from another process.

/// A message whose bytes follow its envelope.
pub(crate) const EAGER: u8 = 1;
/// As EAGER, for a synchronous send: the receiver that matches it tells
/// the sender through its slot.
pub(crate) const SYNC: u8 = 2;
/// Ready to send: a message too large for the ring, described.
pub(crate) const RTS: u8 = 3;
/// A piece of a message pulled through the ring (the two-copy path).
pub(crate) const DATA: u8 = 4;

/// An EAGER envelope's length: kind, communicator, tag. With the ring's
/// 8-byte header and an 8-byte payload a frame is 32 bytes, so frames of a
/// stream of small messages never straddle two cache lines.
pub(crate) const SHORT: usize = 16;
/// The envelope's length for the other kinds: slot, sequence and a word
/// follow.
pub(crate) const ENV: usize = 32;
/// An RTS frame's length: the envelope and its description.
pub(crate) const RTS_LEN: usize = ENV + 32;

/// A frame's envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub kind: u8,
    /// The communicator's context.
    pub comm: u32,
    pub tag: i32,
    /// The sender's slot (SYNC, RTS, DATA) and its sequence number.
    pub slot: u32,
    pub seq: u32,
    /// RTS: the message's length; DATA: the piece's offset in it.
    pub word: u64,
}

/// What an RTS describes: where the message is in its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rts {
    pub pid: u32,
    pub addr: u64,
    /// The address of the sender's nonce, and its value: read in the same
    /// call as the message, they prove the pid still names the sender.
    pub nonce_addr: u64,
    pub nonce: u64,
}

impl Envelope {
    /// The envelope's length in its frame.
    pub(crate) fn len(&self) -> usize {
        if self.kind == EAGER { SHORT } else { ENV }
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(self.kind);
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&self.comm.to_le_bytes());
        out.extend_from_slice(&self.tag.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        if self.kind != EAGER {
            out.extend_from_slice(&self.slot.to_le_bytes());
            out.extend_from_slice(&self.seq.to_le_bytes());
            out.extend_from_slice(&self.word.to_le_bytes());
        }
    }

    /// The envelope at the start of `frame`; `None` if it does not parse.
    pub(crate) fn read(frame: &[u8]) -> Option<Envelope> {
        let h = frame.get(..SHORT)?;
        let u32_at =
            |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
        let kind = h[0];
        let mut env = Envelope {
            kind,
            comm: u32_at(h, 4),
            tag: u32_at(h, 8) as i32,
            slot: 0,
            seq: 0,
            word: 0,
        };
        if kind != EAGER {
            let x = frame.get(..ENV)?;
            env.slot = u32_at(x, 16);
            env.seq = u32_at(x, 20);
            env.word = u64::from_le_bytes(x[24..32].try_into().ok()?);
        }
        let known = matches!(kind, EAGER | SYNC | RTS | DATA);
        let tagged = kind == DATA || env.tag >= 0;
        let sized = kind != RTS || frame.len() == RTS_LEN;
        let zeros = h[1..4] == [0; 3] && h[12..16] == [0; 4];
        (known && tagged && sized && zeros).then_some(env)
    }
}

impl Rts {
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&u64::from(self.pid).to_le_bytes());
        out.extend_from_slice(&self.addr.to_le_bytes());
        out.extend_from_slice(&self.nonce_addr.to_le_bytes());
        out.extend_from_slice(&self.nonce.to_le_bytes());
    }

    /// The description after an RTS envelope.
    pub(crate) fn read(frame: &[u8]) -> Option<Rts> {
        let b = frame.get(ENV..RTS_LEN)?;
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        let pid = u32::try_from(w(0)).ok()?;
        Some(Rts {
            pid,
            addr: w(1),
            nonce_addr: w(2),
            nonce: w(3),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_garbage_is_refused() {
        let env = Envelope {
            kind: RTS,
            comm: 7,
            tag: 42,
            slot: 3,
            seq: 9,
            word: 1 << 40,
        };
        let rts = Rts {
            pid: 1234,
            addr: 0xdead_beef,
            nonce_addr: 0x1000,
            nonce: 77,
        };
        let mut buf = Vec::new();
        env.write(&mut buf);
        rts.write(&mut buf);
        assert_eq!(Envelope::read(&buf), Some(env));
        assert_eq!(Rts::read(&buf), Some(rts));
        // Too short, unknown kind, negative tag, an RTS of the wrong length.
        assert_eq!(Envelope::read(&buf[..ENV - 1]), None);
        let mut bad = buf.clone();
        bad[0] = 99;
        assert_eq!(Envelope::read(&bad), None);
        let mut bad = buf.clone();
        bad[8..12].copy_from_slice(&(-1i32).to_le_bytes());
        assert_eq!(Envelope::read(&bad), None);
        assert_eq!(Envelope::read(&buf[..ENV]), None);
        for len in 0..buf.len() {
            let _ = Envelope::read(&buf[..len]);
            let _ = Rts::read(&buf[..len]);
        }
    }
}
