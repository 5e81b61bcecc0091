//! The writer's side of a ring: frames written whole or streamed, offers,
//! and the wait for room.

use std::time::Instant;

use super::{Bytes, CHUNK, OFFER_MAX, Peer, Ring, SMALL, whole};
use crate::error::{Error, Result};
use crate::frame::{HEADER, Header, padded};
use crate::sync::Ordering;

impl<B: Bytes> Ring<'_, B> {
    /// Sends `payload` as one frame, waiting for room until `deadline`.
    /// A frame larger than the ring is streamed; its deadline applies until
    /// its first byte is in, then it goes through whole (or the reader dies).
    #[inline]
    pub fn send(&self, payload: &[u8], deadline: Option<Instant>, peer: &dyn Peer) -> Result<()> {
        if payload.len() <= SMALL - HEADER && self.send_small(payload, peer) {
            return Ok(());
        }
        self.send_any(payload, deadline, peer)
    }

    /// Sends a small frame (the payload up to 56 bytes) if nothing stands in
    /// the way: room this side already knows of, a position on a frame
    /// boundary, a reader still there. `false` leaves the frame to
    /// `send_any`, which checks, decides and waits as it must.
    #[inline]
    fn send_small(&self, payload: &[u8], peer: &dyn Peer) -> bool {
        let head = self.ctl.head.load(Ordering::Relaxed);
        let frame = HEADER as u64 + padded(payload.len()) as u64;
        if self.corrupt
            || !head.is_multiple_of(HEADER as u64)
            || frame > self.cap
            || self.known_room(head) < frame
            || peer.closed()
        {
            return false;
        }
        // As `send_any` writes a whole frame: the payload, then the header
        // with release, then `head`.
        self.put_words(head.wrapping_add(HEADER as u64), payload);
        self.put_header(head, Header::new(payload.len() as u32).word_at(head));
        self.publish(head.wrapping_add(frame));
        true
    }

    /// The room at `head` as this side last saw it (a lower bound).
    #[inline]
    fn known_room(&self, head: u64) -> u64 {
        let tail = match self.hints {
            Some(h) => h.tail.load(std::sync::atomic::Ordering::Relaxed),
            // Acquire: the reader is done with the bytes it freed.
            None => self.ctl.tail.load(Ordering::Acquire),
        };
        self.cap.saturating_sub(head.wrapping_sub(tail))
    }

    /// Copies `payload` into the ring at position `pos` (a multiple of 8)
    /// a word at a time, its last word padded with zeros.
    #[inline]
    fn put_words(&self, pos: u64, payload: &[u8]) {
        let mask = self.cap - 1;
        let mut at = pos;
        let mut words = payload.chunks_exact(8);
        for w in &mut words {
            let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            self.data.write_word((at & mask) as usize, w);
            at = at.wrapping_add(8);
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut w = 0u64;
            for (i, b) in rest.iter().enumerate() {
                w |= u64::from(*b) << (8 * i);
            }
            self.data.write_word((at & mask) as usize, w);
        }
    }

    fn send_any(&self, payload: &[u8], deadline: Option<Instant>, peer: &dyn Peer) -> Result<()> {
        self.send_frame(payload, deadline, peer, false)
    }

    /// Sends an offer: a frame of the offer kind whose payload describes a
    /// message that the reader copies straight out of the writer (see
    /// `single_copy`). It is written whole.
    pub(crate) fn send_offer(
        &self,
        description: &[u8],
        deadline: Option<Instant>,
        peer: &dyn Peer,
    ) -> Result<()> {
        debug_assert!(description.len() <= OFFER_MAX);
        self.send_frame(description, deadline, peer, true)
    }

    /// Whether a message of `len` bytes, streamed now, would go in whole
    /// without the reader taking anything out: the ring has room for it. (A
    /// writer that alone writes the ring may then send without waiting.)
    pub fn has_room_for(&self, len: usize) -> bool {
        let head = self.ctl.head.load(Ordering::Relaxed);
        let frame = (HEADER + padded(len)) as u64;
        // The room this side already knows of spares reading the reader's
        // cache line (see `Hints`).
        if self.known_room(head) >= frame {
            return true;
        }
        // Acquire: the reader is done with the bytes it freed.
        let tail = self.ctl.tail.load(Ordering::Acquire);
        if let Some(h) = self.hints {
            h.tail.store(tail, std::sync::atomic::Ordering::Relaxed);
        }
        self.cap.saturating_sub(head.wrapping_sub(tail)) >= frame
    }

    fn send_frame(
        &self,
        payload: &[u8],
        deadline: Option<Instant>,
        peer: &dyn Peer,
        offer: bool,
    ) -> Result<()> {
        self.check()?;
        if peer.closed() {
            return Err(Error::Disconnected);
        }
        let len = match u32::try_from(payload.len()) {
            Ok(l) if l <= Header::MAX_LEN => l,
            _ => {
                return Err(Error::TooLarge {
                    len: payload.len(),
                    max: Header::MAX_LEN as usize,
                });
            }
        };
        let head = self.ctl.head.load(Ordering::Relaxed);
        if !head.is_multiple_of(HEADER as u64) {
            return Err(Error::Corrupt(
                "the writer's position is not a frame boundary",
            ));
        }
        let frame = HEADER as u64 + padded(payload.len()) as u64;
        let header = if offer {
            Header::offer(len)
        } else {
            Header::new(len)
        }
        .word_at(head);
        if !self.streams && frame > self.cap {
            return Err(Error::TooLarge {
                len: payload.len(),
                max: self.cap as usize - HEADER,
            });
        }
        if whole(frame, self.cap, self.streams) {
            self.wait_room(head, frame, deadline, peer)?;
            let body = head.wrapping_add(HEADER as u64);
            // The padding is left as it is: no reader looks at it, and the
            // next header (where readers look) is written for its position.
            self.put(body, payload);
            // The header last, with release: a reader polling it sees the
            // whole frame once it sees the header.
            self.put_header(head, header);
            self.publish(head.wrapping_add(frame));
            return Ok(());
        }
        // Streamed: the header, then the payload in pieces.
        self.wait_room(head, HEADER as u64, deadline, peer)?;
        self.put_header(head, header);
        let mut pos = head.wrapping_add(HEADER as u64);
        self.publish(pos);
        let total = padded(payload.len());
        let mut sent = 0usize;
        while sent < total {
            let room = self.wait_room(pos, 8, None, peer)?;
            let n = (room.min(CHUNK).min((total - sent) as u64) as usize) & !7;
            let data_end = payload.len().min(sent + n);
            if data_end > sent {
                self.put(pos, &payload[sent..data_end]);
            }
            if sent + n > payload.len() {
                let zeros = [0u8; 8];
                let from = data_end.max(sent);
                self.put(
                    pos.wrapping_add((from - sent) as u64),
                    &zeros[..sent + n - from],
                );
            }
            pos = pos.wrapping_add(n as u64);
            sent += n;
            self.publish(pos);
        }
        Ok(())
    }

    #[inline]
    fn put_header(&self, pos: u64, header: u64) {
        self.data
            .store_word((pos & (self.cap - 1)) as usize, header);
    }

    #[inline]
    fn publish(&self, head: u64) {
        // Release: the frame's bytes are seen by a reader that sees `head`.
        self.ctl.head.store(head, Ordering::Release);
        if self.turns.is_none() {
            self.ctl.data_bell.ring();
        }
        if let Some(notify) = self.notify {
            notify(head);
        }
    }

    /// Waits until `need` bytes are free at `head`; returns the room.
    fn wait_room(
        &self,
        head: u64,
        need: u64,
        deadline: Option<Instant>,
        peer: &dyn Peer,
    ) -> Result<u64> {
        let room_at = |tail: u64| {
            let used = head.wrapping_sub(tail);
            self.cap.saturating_sub(used)
        };
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(h) = self.hints {
            // A tail seen before (with acquire): the bytes it freed are free.
            let room = room_at(h.tail.load(Relaxed));
            if room >= need {
                return Ok(room);
            }
        }
        // Acquire: the reader is done with the bytes it freed.
        let room = || room_at(self.ctl.tail.load(Ordering::Acquire));
        self.wait(
            &self.ctl.space_bell,
            || room() >= need,
            &|| false,
            deadline,
            peer,
        )?;
        if let Some(h) = self.hints {
            h.tail.store(self.ctl.tail.load(Ordering::Acquire), Relaxed);
        }
        Ok(room())
    }
}
