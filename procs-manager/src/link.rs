//! How a client's calls reach the server: over shared-memory rings for
//! processes of the manager's tree, over the authenticated socket for the
//! others.
//!
//! ```text
//! slots segment (made by `Manager::start` before the server is forked, so
//! the server and every process the starter forks later map it):
//!   header: token u64 (pad to 128) | [SlotCtl; SLOTS]
//!   (page-aligned) data: SLOTS x 2 rings x RING bytes
//! SlotCtl: ring 0 (client -> server), ring 1 (server -> client)
//! ```
//!
//! Every connection starts on the manager's socket, whose handshake
//! proves the authkey. A client that maps the slots segment asks for a
//! slot; the server, which alone hands slots out and takes them back,
//! restarts its two rings and names it, and the calls go through the rings
//! from then on (a round trip of well under a microsecond against tens
//! for a socket here). The socket stays open, unused: its end is how each
//! side learns that the other is gone (checked while a side sleeps on its
//! ring, every `CHECK_EVERY`).

use std::sync::Arc;
use std::time::Duration;

use procs_ipc::ring::{Peer, Ring, RingCtl, SharedBytes, Sink};
use procs_ipc::{Connection, Error as IpcError};
use procs_sync::Segment;

/// Connections of the tree served over rings at once; more go over the
/// socket.
pub(crate) const SLOTS: usize = 32;
/// Each ring's capacity: a larger message streams through it.
const RING: usize = 64 * 1024;
const HEADER: usize = 128;

#[repr(C)]
#[derive(Debug, Default)]
struct SlotCtl {
    rings: [RingCtl; 2],
}

/// The slots segment: rings for the connections of the manager's tree.
#[derive(Debug)]
pub(crate) struct Slots {
    seg: Segment,
    ctl_offset: usize,
    data_offset: usize,
}

impl Slots {
    pub(crate) fn create(token: u64) -> procs_ipc::Result<Slots> {
        let ctl_size = HEADER + SLOTS * std::mem::size_of::<SlotCtl>();
        let data_offset = (ctl_size + std::mem::align_of::<SlotCtl>()).next_multiple_of(4096);
        let seg = Segment::create(data_offset + SLOTS * 2 * RING)?;
        let ctl_offset = seg.as_ptr().align_offset(std::mem::align_of::<SlotCtl>());
        let slots = Slots {
            seg,
            ctl_offset,
            data_offset,
        };
        // SAFETY: the segment's first 8 bytes past `ctl_offset` are inside
        // it (its size covers the header), aligned for a u64 (the offset is
        // aligned for SlotCtl, which holds u64s), and nobody else maps it yet.
        unsafe {
            slots
                .seg
                .as_ptr()
                .add(ctl_offset)
                .cast::<u64>()
                .write(token)
        };
        for i in 0..SLOTS {
            for ring in &slots.slot(i).rings {
                ring.init(RING as u64);
            }
        }
        Ok(slots)
    }

    /// The token the manager wrote: a client proves with it that it maps
    /// this manager's segment.
    pub(crate) fn token(&self) -> u64 {
        // SAFETY: written by `create` before the segment was shared, and
        // never again.
        unsafe { self.seg.as_ptr().add(self.ctl_offset).cast::<u64>().read() }
    }

    fn slot(&self, i: usize) -> &SlotCtl {
        assert!(i < SLOTS);
        // SAFETY: slot i's control lies inside the header (ctl_size counts
        // SLOTS of them past HEADER), aligned (ctl_offset is, and HEADER is
        // a multiple of the alignment), in zero-filled memory, a valid
        // SlotCtl (atomics only); the segment lives as long as self.
        unsafe {
            &*self
                .seg
                .as_ptr()
                .add(self.ctl_offset + HEADER + i * std::mem::size_of::<SlotCtl>())
                .cast::<SlotCtl>()
        }
    }

    fn ring(&self, slot: usize, which: usize) -> Ring<'_, SharedBytes> {
        let at = self.data_offset + (slot * 2 + which) * RING;
        // SAFETY: the ring's RING bytes lie inside the segment (its size
        // counts SLOTS x 2 rings past data_offset), which outlives the
        // borrow; each ring has one writer and one reader, the two ends of
        // one connection, which the server gives the slot to alone.
        let bytes = unsafe { SharedBytes::new(self.seg.as_ptr().add(at), RING) };
        Ring::new(&self.slot(slot).rings[which], bytes)
    }

    /// Readies slot `i` for a new connection (the server, while nobody
    /// uses it).
    pub(crate) fn restart(&self, i: usize) {
        for ring in &self.slot(i).rings {
            ring.restart();
        }
    }
}

/// A side whose peer is alive while its socket is open (the socket
/// carries nothing once the rings are in use, so anything readable on it
/// is its end, or bytes no peer of this library sends: treated as the end
/// too) and, for a client of the manager's tree, while its process lives:
/// a child forked by the client holds a copy of the socket, which must not
/// keep a dead client's connection (and the locks it holds) open.
pub(crate) struct SocketPeer<'a> {
    pub(crate) socket: &'a Connection<()>,
    pub(crate) process: Option<Holder>,
}

impl Peer for SocketPeer<'_> {
    fn closed(&self) -> bool {
        false
    }
    fn alive(&self) -> bool {
        !matches!(self.socket.poll(Duration::ZERO), Ok(true) | Err(_))
            && self
                .process
                .is_none_or(|h| procs_sync::raw::liveness::is_alive(h.pid, h.start))
    }
}

/// One end of a connection: the socket, the slot when it has one, and (on
/// the server, for a client of the tree) the client's process.
pub(crate) struct Link {
    pub(crate) socket: Connection<()>,
    pub(crate) slot: Option<(Arc<Slots>, usize)>,
    pub(crate) process: Option<Holder>,
}

impl Link {
    pub(crate) fn peer(&self) -> SocketPeer<'_> {
        SocketPeer {
            socket: &self.socket,
            process: self.process,
        }
    }
}

/// Which end of a connection a link is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

impl Link {
    /// Sends one message.
    pub(crate) fn send(&self, side: Side, msg: &[u8]) -> procs_ipc::Result<()> {
        match &self.slot {
            Some((slots, i)) => {
                let ring = if side == Side::Client { 0 } else { 1 };
                slots.ring(*i, ring).send(msg, None, &self.peer())
            }
            None => self.socket.send_bytes(msg),
        }
    }

    /// Receives one message into `buf` (replacing what it held).
    pub(crate) fn recv(&self, side: Side, buf: &mut Vec<u8>) -> procs_ipc::Result<()> {
        match &self.slot {
            Some((slots, i)) => {
                let ring = if side == Side::Client { 1 } else { 0 };
                slots
                    .ring(*i, ring)
                    .recv(&mut Sink::Vec(buf), None, &self.peer())
                    .map(|_| ())
            }
            None => {
                *buf = self.socket.recv_bytes()?;
                Ok(())
            }
        }
    }
}

/// The length of a hello.
pub(crate) const HELLO: usize = 1 + 8 + 4 + 8;

/// A client process, as the server counts references: its pid and its
/// start time (which a reused pid does not share).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Holder {
    pub(crate) pid: i32,
    pub(crate) start: u64,
}

/// The first message of a connection, from the client: whether it maps
/// the slots segment (and proves it with the token), and which process it
/// is.
pub(crate) fn hello(token: Option<u64>, me: Holder) -> [u8; HELLO] {
    let mut h = [0u8; HELLO];
    if let Some(t) = token {
        h[0] = 1;
        h[1..9].copy_from_slice(&t.to_le_bytes());
    }
    h[9..13].copy_from_slice(&me.pid.to_le_bytes());
    h[13..].copy_from_slice(&me.start.to_le_bytes());
    h
}

/// The server's reading of a hello: the token, if the client claims one,
/// and the client.
pub(crate) fn parse_hello(bytes: &[u8]) -> Result<(Option<u64>, Holder), IpcError> {
    let bad = || IpcError::Corrupt("a hello that no client sends");
    let h: &[u8; HELLO] = bytes.try_into().map_err(|_| bad())?;
    let token = u64::from_le_bytes(h[1..9].try_into().expect("8 bytes"));
    let token = match h[0] {
        0 => None,
        1 => Some(token),
        _ => return Err(bad()),
    };
    let pid = i32::from_le_bytes(h[9..13].try_into().expect("4 bytes"));
    let start = u64::from_le_bytes(h[13..].try_into().expect("8 bytes"));
    if pid <= 0 {
        return Err(bad());
    }
    Ok((token, Holder { pid, start }))
}

/// The server's answer to a hello: the slot given, if any, and the
/// server's token (which names it in serialized proxies).
pub(crate) fn slot_answer(slot: Option<usize>, token: u64) -> [u8; 9] {
    let mut a = [0u8; 9];
    a[0] = slot.map_or(u8::MAX, |s| s as u8);
    a[1..].copy_from_slice(&token.to_le_bytes());
    a
}

/// The client's reading of the answer: the slot, and the server's token.
pub(crate) fn parse_answer(bytes: &[u8]) -> Option<(Option<usize>, u64)> {
    let a: &[u8; 9] = bytes.try_into().ok()?;
    let slot = (usize::from(a[0]) < SLOTS).then_some(usize::from(a[0]));
    Some((slot, u64::from_le_bytes(a[1..].try_into().ok()?)))
}
