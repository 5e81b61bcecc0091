//! The reader's side of a ring: frames taken whole or gathered from
//! pieces, offers handed to the caller, polling, and the wait for data.

use std::time::Instant;

use super::{Bytes, CHUNK, OFFER_MAX, Peer, Received, Ring, SMALL, Sink, whole};
use crate::doorbell::Doorbell;
use crate::error::{Error, Result};
use crate::frame::{HEADER, Header, padded};
use crate::sync::Ordering;

impl<'a, B: Bytes> Ring<'a, B> {
    /// Copies `dst.len()` bytes out of the ring at position `pos` (a
    /// multiple of 8), a word at a time (the last one in part: the padding
    /// is not copied).
    #[inline]
    fn get_words(&self, pos: u64, dst: &mut [u8]) {
        let mask = self.cap - 1;
        let mut at = pos;
        let mut words = dst.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.data.read_word((at & mask) as usize).to_le_bytes());
            at = at.wrapping_add(8);
        }
        let rest = words.into_remainder();
        if !rest.is_empty() {
            let w = self.data.read_word((at & mask) as usize);
            for (i, b) in rest.iter_mut().enumerate() {
                *b = (w >> (8 * i)) as u8;
            }
        }
    }

    /// Receives one frame into `sink`, waiting until `deadline` for it to
    /// begin. Returns the payload's length. A streamed message that has begun
    /// is received whole, or `Disconnected` if its writer goes: the deadline
    /// applies until its first piece (a message is never half taken).
    #[inline]
    pub fn recv(
        &self,
        sink: &mut Sink<'_>,
        deadline: Option<Instant>,
        peer: &dyn Peer,
    ) -> Result<usize> {
        match self.receive(sink, deadline, peer)? {
            Received::Message(len) => Ok(len),
            Received::Offer { .. } => Err(Error::Corrupt(
                "an offer of a single copy where none is taken",
            )),
        }
    }

    /// Receives one frame into `sink` as [`recv`](Ring::recv) does, or
    /// returns an offer (left in the ring: see [`skip_offer`](Ring::skip_offer))
    /// for the caller to take.
    #[inline]
    pub(crate) fn receive(
        &self,
        sink: &mut Sink<'_>,
        deadline: Option<Instant>,
        peer: &dyn Peer,
    ) -> Result<Received> {
        if let Some(len) = self.recv_small(sink) {
            return Ok(Received::Message(len));
        }
        self.recv_any(sink, deadline, peer)
    }

    /// Consumes the offer at the reader's position, of a `len`-byte
    /// description, once it was taken, refused or found withdrawn.
    pub(crate) fn skip_offer(&self, len: usize) {
        let tail = self.ctl.tail.load(Ordering::Relaxed);
        self.consume(tail.wrapping_add((HEADER + padded(len)) as u64));
    }

    /// Receives a small frame (up to 64 bytes in all) that is already there
    /// and fits `sink`. `None` leaves everything to `recv_any`, which checks,
    /// decides and waits as it must.
    #[inline]
    fn recv_small(&self, sink: &mut Sink<'_>) -> Option<usize> {
        let tail = self.ctl.tail.load(Ordering::Relaxed);
        if self.corrupt || !tail.is_multiple_of(HEADER as u64) {
            return None;
        }
        // Acquire: the frame's bytes, written before its header, are there.
        let word = self.data.load_word((tail & (self.cap - 1)) as usize);
        let header = Header::from_word_at(word, tail)?;
        if header.is_offer() {
            return None;
        }
        let len = header.len();
        let frame = HEADER as u64 + padded(len) as u64;
        if frame > SMALL as u64 || frame > self.cap || sink.room().is_some_and(|r| r < len) {
            return None;
        }
        let body = tail.wrapping_add(HEADER as u64);
        match sink {
            Sink::Vec(v) => {
                let mut small = [0u8; SMALL - HEADER];
                self.get_words(body, &mut small[..len]);
                v.clear();
                v.extend_from_slice(&small[..len]);
            }
            Sink::Slice(s) => self.get_words(body, &mut s[..len]),
        }
        self.consume(tail.wrapping_add(frame));
        Some(len)
    }

    fn recv_any(
        &self,
        sink: &mut Sink<'_>,
        deadline: Option<Instant>,
        peer: &dyn Peer,
    ) -> Result<Received> {
        self.check()?;
        let tail = self.ctl.tail.load(Ordering::Relaxed);
        let header = self.wait_header(tail, deadline, peer)?;
        let len = header.len();
        if header.is_offer() {
            if !self.streams || len > OFFER_MAX {
                return Err(Error::Corrupt("an offer that no writer of this ring sends"));
            }
            // Written whole, with its header last (release), which was
            // loaded with acquire: the description is there.
            let mut description = [0u8; OFFER_MAX];
            self.get(tail.wrapping_add(HEADER as u64), &mut description[..len]);
            return Ok(Received::Offer { description, len });
        }
        if let Some(room) = sink.room()
            && room < len
        {
            return Err(Error::BufferTooSmall {
                needed: len,
                available: room,
            });
        }
        let frame = HEADER as u64 + padded(len) as u64;
        if whole(frame, self.cap, self.streams) {
            // The header was stored after the frame's bytes (release) and
            // loaded here (acquire): they are all there.
            if frame > self.cap {
                return Err(Error::Corrupt("a frame is longer than the ring"));
            }
            let body = tail.wrapping_add(HEADER as u64);
            if frame <= SMALL as u64 {
                match sink {
                    Sink::Vec(v) => {
                        let mut small = [0u8; SMALL - HEADER];
                        self.get(body, &mut small[..len]);
                        v.clear();
                        v.extend_from_slice(&small[..len]);
                    }
                    Sink::Slice(s) => self.get(body, &mut s[..len]),
                }
                self.consume(tail.wrapping_add(frame));
                return Ok(Received::Message(len));
            }
            // A larger whole frame: nothing is allocated for it before its
            // length is checked against what the writer published. A writer
            // publishes a whole frame with one store, right after its
            // header: once `head` moves past the header it covers the frame,
            // or the length lies.
            let head = self.wait_data(tail, HEADER as u64, deadline, peer)?;
            if self.distance(head, tail)? < frame {
                return Err(Error::Corrupt("a frame is longer than what was published"));
            }
            if let Sink::Vec(v) = sink {
                v.resize(len, 0);
            }
            sink.put(0, |dst| self.get(body, &mut dst[..len]));
            self.consume(tail.wrapping_add(frame));
            return Ok(Received::Message(len));
        }
        // Streamed: take the header, then gather the pieces.
        let mut pos = tail.wrapping_add(HEADER as u64);
        self.consume(pos);
        let total = padded(len);
        let mut got = 0usize;
        while got < total {
            let head = match self.wait_data(pos, 1, None, peer) {
                Ok(h) => h,
                Err(e) => {
                    if let Sink::Vec(v) = sink {
                        v.clear();
                    }
                    return Err(e);
                }
            };
            let n = head.wrapping_sub(pos).min(CHUNK).min((total - got) as u64) as usize;
            let useful = len.saturating_sub(got).min(n);
            if useful > 0 {
                if let Sink::Vec(v) = sink {
                    v.resize(got + useful, 0);
                }
                sink.put(got, |dst| self.get(pos, &mut dst[..useful]));
            }
            pos = pos.wrapping_add(n as u64);
            got += n;
            self.consume(pos);
        }
        Ok(Received::Message(len))
    }

    #[inline]
    fn consume(&self, tail: u64) {
        // Release: the bytes were read before the writer may overwrite them.
        self.ctl.tail.store(tail, Ordering::Release);
        if self.turns.is_none() {
            self.ctl.space_bell.ring();
        }
    }

    /// Waits until `need` bytes are published after `tail`; returns `head`.
    fn wait_data(
        &self,
        tail: u64,
        need: u64,
        deadline: Option<Instant>,
        peer: &dyn Peer,
    ) -> Result<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(h) = self.hints {
            // A head seen before (with acquire): the bytes before it are there.
            let head = h.head.load(Relaxed);
            if self.distance(head, tail).is_ok_and(|a| a >= need) {
                return Ok(head);
            }
        }
        // Acquire: the bytes before `head` are seen.
        let available = || self.distance(self.ctl.head.load(Ordering::Acquire), tail);
        available()?;
        self.wait(
            &self.ctl.data_bell,
            || available().is_ok_and(|a| a >= need),
            &|| false,
            deadline,
            peer,
        )?;
        let head = self.ctl.head.load(Ordering::Acquire);
        if let Some(h) = self.hints {
            h.head.store(head, Relaxed);
        }
        Ok(head)
    }

    /// Waits until the header of the frame at `tail` is there (the header
    /// word itself says so: it checks only for this position); returns it.
    fn wait_header(&self, tail: u64, deadline: Option<Instant>, peer: &dyn Peer) -> Result<Header> {
        if !tail.is_multiple_of(HEADER as u64) {
            return Err(Error::Corrupt(
                "the reader's position is not a frame boundary",
            ));
        }
        let at = (tail & (self.cap - 1)) as usize;
        let header = || Header::parse_at(self.data.load_word(at).to_le_bytes(), tail);
        let valid = || Header::from_word_at(self.data.load_word(at), tail).is_some();
        // The writer published past the header, yet it does not check: the
        // ring was written by something else than a writer of this library.
        let stuck = || match self.distance(self.ctl.head.load(Ordering::Acquire), tail) {
            Ok(published) => published >= HEADER as u64 && !valid(),
            Err(_) => true,
        };
        self.wait(&self.ctl.data_bell, valid, &stuck, deadline, peer)?;
        header()
    }

    /// Whether a frame (or its beginning) is waiting, waiting until
    /// `deadline`; `Ok(true)` also when the writer is gone (a receive would
    /// not block: it would report `Disconnected`).
    pub fn poll(&self, deadline: Option<Instant>, peer: &dyn Peer) -> Result<bool> {
        self.check()?;
        let tail = self.ctl.tail.load(Ordering::Relaxed);
        match self.wait_header(tail, deadline, peer) {
            Ok(_) | Err(Error::Disconnected) => Ok(true),
            Err(Error::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether a receive would not wait: a frame (or its beginning) is
    /// there, the writer's side is closed, or the ring is damaged (the
    /// receive reports it at once). Cheap: the writer's life is not checked
    /// (see [`Peer::alive`]).
    pub fn recv_ready(&self, peer: &dyn Peer) -> bool {
        // A wait on several objects calls this after registering on the
        // data bell.
        self.observe_ringer(&self.ctl.data_bell);
        let tail = self.ctl.tail.load(Ordering::Relaxed);
        if self.corrupt || !tail.is_multiple_of(HEADER as u64) {
            return true;
        }
        let word = self.data.load_word((tail & (self.cap - 1)) as usize);
        if Header::from_word_at(word, tail).is_some() {
            return true;
        }
        // Published past a header that does not check: corrupt, at once.
        let published = self.distance(self.ctl.head.load(Ordering::Acquire), tail);
        !published.is_ok_and(|p| p < HEADER as u64) || peer.closed()
    }

    /// Whether a whole frame's header is at the reader's position: the
    /// cheapest look a polling reader can take (one word, on the line the
    /// writer writes the frame to). Unlike [`recv_ready`](Ring::recv_ready)
    /// it does not read `head`, so a reader polling in a loop leaves the
    /// writer's line alone; it does not see a closed peer or a damaged ring
    /// (look with `recv_ready` before sleeping).
    #[inline]
    pub fn frame_waiting(&self) -> bool {
        let tail = self.ctl.tail.load(Ordering::Relaxed);
        if self.corrupt || !tail.is_multiple_of(HEADER as u64) {
            return false;
        }
        let word = self.data.load_word((tail & (self.cap - 1)) as usize);
        Header::from_word_at(word, tail).is_some()
    }

    /// The doorbell the reader sleeps on for data (for a wait on several
    /// rings at once).
    pub fn data_bell(&self) -> &'a Doorbell {
        &self.ctl.data_bell
    }

    /// The doorbell the writer sleeps on for room (for a wait on several
    /// rings at once).
    pub fn space_bell(&self) -> &'a Doorbell {
        &self.ctl.space_bell
    }

    /// Bytes published and not yet consumed.
    pub fn pending(&self) -> u64 {
        let head = self.ctl.head.load(Ordering::Acquire);
        let tail = self.ctl.tail.load(Ordering::Acquire);
        self.distance(head, tail).unwrap_or(head.wrapping_sub(tail))
    }
}
