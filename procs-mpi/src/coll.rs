//! The round every collective is made of: each member sends one message to
//! every other member and receives one from each, on the communicator's
//! collective context, tagged with the collective's sequence number.
//!
//! Each message starts with a 32-byte header that says what its sender
//! called (which collective, its root, the counts and operation that must
//! agree), whether the sender's own arguments failed, and how many bytes the
//! sender expects from the receiver. Every member reads every other's
//! header, so a mismatch anywhere (another collective, another root, counts
//! that do not add up) is an error on every rank that differs, named, and
//! never a hang or a corrupted buffer; a member's bad argument (a scatter
//! list of the wrong length) fails every member's call, naming that rank.
//!
//! A round waits with every member it still needs a part from (or that
//! still needs its part) watched: one that dies fails the call with
//! `RankDied` naming it, whichever member the wait was looking at. As each
//! member sends to and receives from every other, a death fails the round
//! of every member that had not finished with the dead one; a member that
//! died after its part was delivered fails no one.
//!
//! On a communicator of the whole world in the world's order (the world
//! and its duplicates) a round goes through the job's collective buffers
//! instead of messages: each rank packs its messages for the members into
//! one of its own two buffers (one copy of a payload that is the same for
//! all, as in bcast and allreduce), publishes the world collective's number
//! `k`, and reads each member's part from that member's buffer once it
//! shows `k`. A part too large for the buffer goes as messages, the buffer
//! saying so. Buffer `k % 2` is written again only for collective `k + 2`,
//! and a rank starts that only after it saw every member's part of `k + 1`,
//! which each member wrote after it had read everything of `k`: a buffer is
//! never written while a member may still read it. This holds because every
//! rank makes the same sequence of world collectives (collectives on
//! communicators that share ranks are called in the same order on every
//! rank); one made on another communicator at the same number is a
//! `Mismatch`, as the header carries the context.

use std::sync::atomic::Ordering;

use procs_ipc::ring::Bytes;

use crate::comm::Comm;
use crate::engine::{Call, Engine, WaitDesc};
use crate::error::{Error, Result};
use crate::job::{COLL_BIG, COLL_SAME};

/// The header's length; payloads follow it.
pub(crate) const HDR: usize = 32;
const MAGIC: u8 = 0xC0;
/// Flag: the sender's arguments failed; the payload is the reason.
const FAILED: u8 = 1;
/// No expectation on a length.
pub(crate) const ANY_LEN: u64 = u64::MAX;

/// The collectives, as named in errors and deadlock reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Barrier = 1,
    Bcast,
    Scatter,
    Scatterv,
    Gather,
    Gatherv,
    Allgather,
    Allgatherv,
    Alltoall,
    Alltoallv,
    Reduce,
    Allreduce,
    Scan,
    Exscan,
    ReduceScatter,
    ReduceScatterBlock,
    Dup,
    Split,
    Create,
    NeighborAllgather,
    NeighborAlltoall,
    Ibarrier,
    Ibcast,
    Iallreduce,
    /// The second half of a large allreduce, or a verdict round.
    Continue,
}

const KINDS: [Kind; 25] = [
    Kind::Barrier,
    Kind::Bcast,
    Kind::Scatter,
    Kind::Scatterv,
    Kind::Gather,
    Kind::Gatherv,
    Kind::Allgather,
    Kind::Allgatherv,
    Kind::Alltoall,
    Kind::Alltoallv,
    Kind::Reduce,
    Kind::Allreduce,
    Kind::Scan,
    Kind::Exscan,
    Kind::ReduceScatter,
    Kind::ReduceScatterBlock,
    Kind::Dup,
    Kind::Split,
    Kind::Create,
    Kind::NeighborAllgather,
    Kind::NeighborAlltoall,
    Kind::Ibarrier,
    Kind::Ibcast,
    Kind::Iallreduce,
    Kind::Continue,
];

impl Kind {
    fn from_code(c: u8) -> Option<Kind> {
        KINDS.get((c as usize).checked_sub(1)?).copied()
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Barrier => "barrier",
            Kind::Bcast => "bcast",
            Kind::Scatter => "scatter",
            Kind::Scatterv => "scatterv",
            Kind::Gather => "gather",
            Kind::Gatherv => "gatherv",
            Kind::Allgather => "allgather",
            Kind::Allgatherv => "allgatherv",
            Kind::Alltoall => "alltoall",
            Kind::Alltoallv => "alltoallv",
            Kind::Reduce => "reduce",
            Kind::Allreduce => "allreduce",
            Kind::Scan => "scan",
            Kind::Exscan => "exscan",
            Kind::ReduceScatter => "reduce_scatter",
            Kind::ReduceScatterBlock => "reduce_scatter_block",
            Kind::Dup => "dup",
            Kind::Split => "split",
            Kind::Create => "create",
            Kind::NeighborAllgather => "neighbor_allgather",
            Kind::NeighborAlltoall => "neighbor_alltoall",
            Kind::Ibarrier => "ibarrier",
            Kind::Ibcast => "ibcast",
            Kind::Iallreduce => "iallreduce",
            Kind::Continue => "the rest of a collective",
        }
    }

    fn rooted(self) -> bool {
        matches!(
            self,
            Kind::Bcast
                | Kind::Ibcast
                | Kind::Scatter
                | Kind::Scatterv
                | Kind::Gather
                | Kind::Gatherv
                | Kind::Reduce
        )
    }
}

/// What a rank called: the parts that must be the same on every member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sig {
    pub kind: Kind,
    /// The root (rooted collectives), else 0.
    pub root: i32,
    /// The count that must agree (bytes or elements; 0 when none must).
    pub count: u32,
    /// The operation's code (`Op::code`), 0 when none.
    pub op: u8,
    /// Whether this is a buffer form (1) or an object form (0).
    pub buffer: bool,
}

impl Sig {
    pub(crate) fn new(kind: Kind) -> Sig {
        Sig {
            kind,
            root: 0,
            count: 0,
            op: 0,
            buffer: false,
        }
    }

    pub(crate) fn root(mut self, root: i32) -> Sig {
        self.root = root;
        self
    }

    pub(crate) fn count(mut self, count: usize) -> Sig {
        self.count = count.min(u32::MAX as usize) as u32;
        self
    }

    pub(crate) fn op(mut self, code: u64) -> Sig {
        self.op = code.min(0xff) as u8;
        self
    }

    pub(crate) fn buffer(mut self) -> Sig {
        self.buffer = true;
        self
    }

    fn arg(&self) -> u64 {
        u64::from(self.count) | u64::from(self.op) << 32 | u64::from(self.buffer) << 40
    }

    fn from_parts(kind: Kind, root: i32, arg: u64) -> Sig {
        Sig {
            kind,
            root,
            count: arg as u32,
            op: (arg >> 32) as u8,
            buffer: (arg >> 40) & 1 != 0,
        }
    }

    /// `bcast(root=0)`, `allreduce(buffer, count=8, op=SUM)`.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.kind.rooted() {
            parts.push(format!("root={}", self.root));
        }
        if self.buffer {
            parts.push("buffer".to_owned());
        }
        if self.count != 0 {
            parts.push(format!("count={}", self.count));
        }
        match self.op {
            0 => {}
            0xff => parts.push("op=user".to_owned()),
            c => parts.push(format!("op={}", op_name(c))),
        }
        format!("{}({})", self.kind.name(), parts.join(", "))
    }

    /// The code a waiting rank publishes for deadlock reports.
    fn wait_code(&self) -> u64 {
        self.kind as u64 | ((self.root.max(-1) + 1) as u64 & 0xff_ffff) << 8
    }
}

fn op_name(code: u8) -> &'static str {
    use crate::op::Builtin::*;
    let all = [
        Sum, Prod, Max, Min, Land, Lor, Lxor, Band, Bor, Bxor, MaxLoc, MinLoc,
    ];
    all.get((code as usize).wrapping_sub(1))
        .map_or("?", |b| b.name())
}

/// A collective's name from the code a waiting rank published
/// (`Sig::wait_code`), for the deadlock detector's report.
pub(crate) fn describe(code: u64) -> String {
    let Some(kind) = Kind::from_code(code as u8) else {
        return "a collective".to_owned();
    };
    if kind.rooted() {
        format!("{}(root={})", kind.name(), (code >> 8) as i64 - 1)
    } else {
        format!("{}()", kind.name())
    }
}

/// A parsed header.
struct Header {
    sig: Sig,
    seq: u32,
    /// The sender's communicator context.
    ctx: u32,
    failed: bool,
    expect: u64,
}

fn write_header(out: &mut [u8], sig: &Sig, seq: u32, ctx: u32, failed: bool, expect: u64) {
    out[0] = MAGIC;
    out[1] = sig.kind as u8;
    out[2] = if failed { FAILED } else { 0 };
    out[3] = 0;
    out[4..8].copy_from_slice(&sig.root.to_le_bytes());
    out[8..12].copy_from_slice(&seq.to_le_bytes());
    out[12..16].copy_from_slice(&ctx.to_le_bytes());
    out[16..24].copy_from_slice(&sig.arg().to_le_bytes());
    out[24..32].copy_from_slice(&expect.to_le_bytes());
}

fn read_header(b: &[u8]) -> Option<Header> {
    let h = b.get(..HDR)?;
    if h[0] != MAGIC || h[2] & !FAILED != 0 || h[3] != 0 {
        return None;
    }
    let kind = Kind::from_code(h[1])?;
    let word = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap_or([0; 8]));
    let root = i32::from_le_bytes(h[4..8].try_into().ok()?);
    Some(Header {
        sig: Sig::from_parts(kind, root, word(16)),
        seq: u32::from_le_bytes(h[8..12].try_into().ok()?),
        ctx: u32::from_le_bytes(h[12..16].try_into().ok()?),
        failed: h[2] & FAILED != 0,
        expect: word(24),
    })
}

/// A message of a round: room for the header, then `payload`.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HDR + payload.len());
    v.resize(HDR, 0);
    v.extend_from_slice(payload);
    v
}

/// The payload of a received message.
pub(crate) fn body(msg: &[u8]) -> &[u8] {
    &msg[HDR.min(msg.len())..]
}

/// Waits until world rank `r` has written its part of world collective
/// `k`; its death while this rank waits fails the wait.
fn await_part(e: &mut Engine, r: usize, k: u64) -> Result<()> {
    let parity = (k % 2) as usize;
    let written = |e: &Engine| e.job.coll_buf(r, parity).0.op.load(Ordering::Acquire) == k;
    if written(e) {
        return Ok(());
    }
    e.coll_want = Some((r, parity, k));
    // The rank waited for is the one watched (the wait names it).
    let watch = e.watch.take();
    let w = WaitDesc {
        call: Call::Coll,
        peer: r as i32,
        tag: (k & 0x7fff_ffff) as i32,
    };
    let res = e.block(w, |e| Ok(written(e).then_some(())));
    e.coll_want = None;
    e.watch = watch;
    res
}

/// Where a packed part's table starts: after the header and the count.
const TABLE: usize = HDR + 4;
/// Bytes of a table entry: offset, length (u32 each), expected length.
const ENTRY: usize = 16;

/// Writes a round's messages (`out[j]`, header and payload, for every
/// member `j` but `me`) into a collective buffer: one header (the
/// members' differ only in the expected length, which the table holds),
/// the member count, a table of (offset, length, expected length) by
/// member, then the payloads, one copy of those equal to the one before.
/// Returns the bytes written, or `None` if they do not fit.
fn pack(out: &[Vec<u8>], me: usize, data: &impl Bytes) -> Option<u64> {
    let n = out.len();
    let first = (0..n).find(|&j| j != me)?;
    if out
        .iter()
        .enumerate()
        .any(|(j, m)| j != me && m.len() > data.len())
    {
        return None;
    }
    // One message for all (a barrier, an allreduce, a bcast's root): the
    // message alone, no table.
    if (0..n).all(|j| j == me || out[j] == out[first]) {
        let m = &out[first];
        data.write(0, m);
        return Some(m.len() as u64 | COLL_SAME);
    }
    let mut end = TABLE.checked_add(n.checked_mul(ENTRY)?)?;
    let mut prev: Option<usize> = None;
    for j in (0..n).filter(|&j| j != me) {
        if prev.is_none_or(|q| out[q][HDR..] != out[j][HDR..]) {
            end = end.checked_add(out[j].len() - HDR)?;
        }
        prev = Some(j);
    }
    if end > data.len() || end > u32::MAX as usize {
        return None;
    }
    data.write(0, &out[first][..HDR]);
    data.write(HDR, &(n as u32).to_le_bytes());
    let mut at = TABLE + n * ENTRY;
    let mut prev: Option<(usize, usize)> = None;
    for j in 0..n {
        let mut entry = [0u8; ENTRY];
        if j != me {
            let body = &out[j][HDR..];
            let off = match prev {
                Some((q, off)) if out[q][HDR..] == *body => off,
                _ => {
                    data.write(at, body);
                    at += body.len();
                    at - body.len()
                }
            };
            prev = Some((j, off));
            entry[..4].copy_from_slice(&(off as u32).to_le_bytes());
            entry[4..8].copy_from_slice(&(body.len() as u32).to_le_bytes());
            entry[8..].copy_from_slice(&out[j][24..32]);
        }
        data.write(TABLE + j * ENTRY, &entry);
    }
    Some(at as u64)
}

/// Member `me`'s message (header and payload) from a collective buffer
/// of `len` bytes written by [`pack`] for `n` members; `None` if it does
/// not parse.
fn unpack(data: &impl Bytes, len: u64, me: usize, n: usize) -> Option<Vec<u8>> {
    if len & COLL_SAME != 0 {
        let len = usize::try_from(len & !COLL_SAME)
            .ok()
            .filter(|&l| (HDR..=data.len()).contains(&l))?;
        let mut msg = vec![0u8; len];
        data.read(0, &mut msg);
        return Some(msg);
    }
    let len = usize::try_from(len).ok().filter(|&l| l <= data.len())?;
    let table_end = TABLE.checked_add(n.checked_mul(ENTRY)?)?;
    if len < table_end {
        return None;
    }
    let mut count = [0u8; 4];
    data.read(HDR, &mut count);
    if u32::from_le_bytes(count) as usize != n {
        return None;
    }
    let mut entry = [0u8; ENTRY];
    data.read(TABLE + me * ENTRY, &mut entry);
    let off = u32::from_le_bytes(entry[..4].try_into().ok()?) as usize;
    let plen = u32::from_le_bytes(entry[4..8].try_into().ok()?) as usize;
    if off < table_end || off.checked_add(plen)? > len {
        return None;
    }
    let mut msg = vec![0u8; HDR + plen];
    data.read(0, &mut msg[..HDR]);
    msg[24..32].copy_from_slice(&entry[8..]);
    data.read(off, &mut msg[HDR..]);
    Some(msg)
}

/// A round whose messages are on their way: the receives are posted.
pub(crate) struct Pending {
    sig: Sig,
    seq: u32,
    failed: Option<String>,
    /// Request ids of the receives, by member (none for this rank).
    recvs: Vec<Option<u64>>,
    /// Request ids of the sends, with the member each goes to.
    sends: Vec<(usize, u64)>,
    /// What this rank sent each member (payload bytes).
    sent: Vec<u64>,
    /// What this rank expects from each member.
    expect: Vec<u64>,
    /// The world collective's number, when the round goes through the
    /// collective buffers (its receives are then posted as they are found
    /// needed).
    world: Option<u64>,
}

impl Pending {
    /// The engine requests of the round's messages.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.recvs
            .iter()
            .flatten()
            .copied()
            .chain(self.sends.iter().map(|&(_, id)| id))
    }
}

impl Comm {
    /// The tag and collective context of the next collective.
    fn next_seq(&self) -> u32 {
        let s = self.seq.get();
        self.seq.set(s.wrapping_add(1));
        s
    }

    /// Starts a round: `out[j]` (from [`frame`]) goes to member `j` (this
    /// rank's own entry is not sent); `expect[j]` is the payload length
    /// this rank expects from `j` ([`ANY_LEN`]: any). With `failed`, this
    /// rank's arguments were bad: every member is told, with the reason.
    pub(crate) fn start_round(
        &self,
        sig: Sig,
        failed: Option<String>,
        out: Vec<Vec<u8>>,
        expect: Vec<u64>,
    ) -> Result<Pending> {
        self.start_round_via(sig, failed, out, expect, true)
    }

    /// As [`start_round`](Comm::start_round), always as messages: for a
    /// round left pending while this rank makes others (a nonblocking
    /// collective), which the collective buffers' turn-taking cannot hold.
    pub(crate) fn start_round_messages(
        &self,
        sig: Sig,
        failed: Option<String>,
        out: Vec<Vec<u8>>,
        expect: Vec<u64>,
    ) -> Result<Pending> {
        self.start_round_via(sig, failed, out, expect, false)
    }

    fn start_round_via(
        &self,
        sig: Sig,
        failed: Option<String>,
        mut out: Vec<Vec<u8>>,
        expect: Vec<u64>,
        buffers: bool,
    ) -> Result<Pending> {
        // On the MPI backend every collective is MPI's own call; a round
        // reached there is a failed argument (or a call MPI lacks).
        #[cfg(feature = "openmpi")]
        if self.mpi.is_some() {
            return Err(match failed {
                Some(why) => Error::Argument(format!("rank {}: {why}", self.rank)),
                None => Error::Unsupported(format!("{} on the MPI backend", sig.describe())),
            });
        }
        let n = self.group.len();
        let me = self.rank as usize;
        let seq = self.next_seq();
        let tag = (seq & 0x7fff_ffff) as i32;
        let ctx = self.ctx * 2 + 1;
        let mut sent = vec![0u64; n];
        for j in (0..n).filter(|&j| j != me) {
            let msg = &mut out[j];
            if let Some(why) = &failed {
                *msg = frame(why.as_bytes());
            }
            if msg.len() < HDR {
                msg.resize(HDR, 0);
            }
            sent[j] = (msg.len() - HDR) as u64;
            write_header(msg, &sig, seq, self.ctx, failed.is_some(), expect[j]);
        }
        let mut recvs = vec![None; n];
        let mut sends = Vec::new();
        let mut e = self.engine();
        let world = (buffers && self.whole_world(&e)).then(|| {
            let k = self.core.world_colls.get() + 1;
            self.core.world_colls.set(k);
            k
        });
        let packed = match world {
            Some(k) => {
                let (ctl, data) = e.job.coll_buf(me, (k % 2) as usize);
                let len = pack(&out, me, &data);
                ctl.len.store(len.unwrap_or(COLL_BIG), Ordering::Relaxed);
                len.is_some()
            }
            None => false,
        };
        let mut post = || -> Result<()> {
            if world.is_none() {
                for j in (0..n).filter(|&j| j != me) {
                    recvs[j] = Some(e.irecv(self.group[j] as i32, ctx, tag, None)?);
                }
            }
            if !packed {
                for j in (0..n).filter(|&j| j != me) {
                    let msg = std::mem::take(&mut out[j]);
                    sends.push((j, e.isend(msg, self.group[j], ctx, tag, false)?));
                }
            }
            Ok(())
        };
        let posted = post();
        if let Some(k) = world {
            // Published even after a failed post: the members' rounds end
            // (a member that cannot send reports it), and the numbering
            // stays the same on every rank.
            e.job
                .coll_buf(me, (k % 2) as usize)
                .0
                .op
                .store(k, Ordering::Release);
            for &r in self.group.iter().filter(|&&r| r != me) {
                e.job.rank(r).bell.ring();
            }
        }
        if let Err(err) = posted {
            for id in recvs.iter().flatten().chain(sends.iter().map(|(_, id)| id)) {
                e.forget(*id);
            }
            drop(e);
            return self.here(Err(err));
        }
        Ok(Pending {
            sig,
            seq,
            failed,
            recvs,
            sends,
            sent,
            expect,
            world,
        })
    }

    /// A round whose message is the same for every member, `payload`, with
    /// `expect` the length this rank expects from each ([`ANY_LEN`]: any),
    /// through the world's collective buffers without building a message
    /// per member: `each(j, payload_j)` then sees every member's payload in
    /// rank order (this rank's own included). `None`, and nothing done,
    /// when the round cannot go this way (not the whole world, too large):
    /// the caller makes a [`round`](Comm::round). A member whose part is
    /// not the same message (a mismatch, a failed argument) sends the
    /// round the general way, which reports it.
    pub(crate) fn same_round(
        &self,
        sig: Sig,
        payload: &[u8],
        expect: u64,
        mut each: impl FnMut(usize, &[u8]) -> Result<()>,
    ) -> Option<Result<()>> {
        #[cfg(feature = "openmpi")]
        if self.mpi.is_some() {
            return None;
        }
        let n = self.group.len();
        let me = self.rank as usize;
        let mut e = self.engine();
        if !self.whole_world(&e) || HDR + payload.len() > e.job.coll_buf(me, 0).1.len() {
            return None;
        }
        let seq = self.next_seq();
        let k = self.core.world_colls.get() + 1;
        self.core.world_colls.set(k);
        let parity = (k % 2) as usize;
        let mut head = [0u8; HDR];
        write_header(&mut head, &sig, seq, self.ctx, false, expect);
        {
            let (ctl, data) = e.job.coll_buf(me, parity);
            data.write(0, &head);
            data.write(HDR, payload);
            ctl.len
                .store((HDR + payload.len()) as u64 | COLL_SAME, Ordering::Relaxed);
            ctl.op.store(k, Ordering::Release);
        }
        for &r in self.group.iter().filter(|&&r| r != me) {
            e.job.rank(r).bell.ring();
        }
        let saved = (e.watch.take(), e.in_coll);
        e.in_coll = sig.wait_code();
        let mut waited = Ok(());
        for j in (0..n).filter(|&j| j != me) {
            waited = await_part(&mut e, j, k);
            if waited.is_err() {
                break;
            }
        }
        // Every part the same message, as this rank's: read in place.
        let fine = |e: &Engine, j: usize| -> Option<usize> {
            let (ctl, data) = e.job.coll_buf(j, parity);
            let len = ctl.len.load(Ordering::Relaxed);
            if len == COLL_BIG || len & COLL_SAME == 0 {
                return None;
            }
            let len = usize::try_from(len & !COLL_SAME).ok()?;
            if !(HDR..=data.len()).contains(&len) {
                return None;
            }
            let mut h = [0u8; HDR];
            data.read(0, &mut h);
            let h = read_header(&h)?;
            let body = (len - HDR) as u64;
            let agrees = h.ctx == self.ctx
                && h.sig == sig
                && h.seq == seq
                && !h.failed
                && (h.expect == ANY_LEN || h.expect == payload.len() as u64)
                && (expect == ANY_LEN || expect == body);
            agrees.then_some(len - HDR)
        };
        let quick = waited.is_ok() && (0..n).all(|j| j == me || fine(&e, j).is_some());
        if quick {
            let mut scratch = Vec::new();
            let mut out = Ok(());
            for j in 0..n {
                if j == me {
                    out = each(j, payload);
                } else if let Some(len) = fine(&e, j) {
                    scratch.resize(len, 0);
                    e.job.coll_buf(j, parity).1.read(HDR, &mut scratch);
                    out = each(j, &scratch);
                }
                if out.is_err() {
                    break;
                }
            }
            (e.watch, e.in_coll) = saved;
            return Some(out);
        }
        (e.watch, e.in_coll) = saved;
        if let Err(err) = waited {
            drop(e);
            return Some(self.here(Err(err)));
        }
        drop(e);
        // The general way: every part read whole and every header checked.
        let p = Pending {
            sig,
            seq,
            failed: None,
            recvs: vec![None; n],
            sends: Vec::new(),
            sent: vec![payload.len() as u64; n],
            expect: vec![expect; n],
            world: Some(k),
        };
        Some(self.finish_round(p).and_then(|got| {
            for (j, msg) in got.iter().enumerate() {
                each(j, if j == me { payload } else { body(msg) })?;
            }
            Ok(())
        }))
    }

    /// Whether this communicator's rounds go through the world's
    /// collective buffers: it holds every rank of the job, in the world's
    /// order (the world, its duplicates). Every rank then makes the same
    /// sequence of them, as collectives on communicators that share ranks
    /// are called in the same order everywhere.
    fn whole_world(&self, e: &Engine) -> bool {
        let n = self.group.len();
        n > 1 && n == e.size() && self.group.iter().enumerate().all(|(i, &r)| i == r)
    }

    /// Waits for a round's messages and checks every header; returns each
    /// member's message (header included; this rank's entry is empty).
    pub(crate) fn finish_round(&self, p: Pending) -> Result<Vec<Vec<u8>>> {
        let (got, pair) = self.finish_round_pairs(p)?;
        match pair {
            Some(err) => Err(err),
            None => Ok(got),
        }
    }

    /// As [`finish_round`](Comm::finish_round), with lengths that do not
    /// agree between two members given apart (`Some`): only those two know
    /// of it, and a verdict round ([`Comm::verdict`]) tells the others.
    /// Every other error is known to every member that differs.
    pub(crate) fn finish_round_pairs(
        &self,
        mut p: Pending,
    ) -> Result<(Vec<Vec<u8>>, Option<Error>)> {
        let n = self.group.len();
        let mut got: Vec<Vec<u8>> = vec![Vec::new(); n];
        let mut e = self.engine();
        let saved = (e.watch.take(), e.in_coll);
        e.in_coll = p.sig.wait_code();
        let mut waiting: Vec<(usize, u64)> = p
            .recvs
            .iter()
            .enumerate()
            .filter_map(|(j, id)| id.map(|id| (j, id)))
            .collect();
        let sends = std::mem::take(&mut p.sends);
        let mut result = Ok(());
        if let Some(k) = p.world {
            result = self.read_buffers(&mut e, k, p.seq, &mut got, &mut waiting);
        }
        // One wait for every receive and send left, so that each
        // completion is seen before any death is judged; while it waits,
        // this rank watches the members those are with: one that dies
        // fails the call at once, whichever request the wait looks at; one
        // that died after its part of the round was done fails nothing.
        let recvs_left = waiting.len();
        let mut left: Vec<(usize, u64)> = waiting.into_iter().chain(sends).collect();
        let mut is_recv: Vec<bool> = (0..left.len()).map(|i| i < recvs_left).collect();
        while !left.is_empty() && result.is_ok() {
            let ids: Vec<u64> = left.iter().map(|&(_, id)| id).collect();
            e.watch = Some(left.iter().map(|&(j, _)| self.group[j]).collect());
            match e.wait_any(&ids) {
                Ok((i, c)) => {
                    let (j, _) = left.swap_remove(i);
                    let recv = is_recv.swap_remove(i);
                    match c {
                        Ok((_, v)) if recv => got[j] = v,
                        Ok(_) => {}
                        Err(err) => result = Err(err),
                    }
                }
                Err(err) => result = Err(err),
            }
        }
        for &(_, id) in &left {
            e.forget(id);
        }
        (e.watch, e.in_coll) = saved;
        drop(e);
        self.here(result)?;
        let pair = self.check(&p, &got)?;
        Ok((got, pair))
    }

    /// A round of no payload that carries each member's outcome of a round
    /// before it (`mine`): a failure anywhere fails every member, naming
    /// the rank that saw it.
    pub(crate) fn verdict(&self, mine: Option<Error>) -> Result<()> {
        // MPI's v-form calls have no second round: their own checks stand.
        crate::comm::via_mpi!(self, _m => mine.map_or(Ok(()), Err));
        let n = self.group.len();
        let failed = mine.map(|e| e.to_string());
        self.round(
            Sig::new(Kind::Continue),
            failed,
            vec![frame(&[]); n],
            vec![ANY_LEN; n],
        )
        .map(drop)
    }

    /// One whole round: [`start_round`](Comm::start_round) then
    /// [`finish_round`](Comm::finish_round).
    pub(crate) fn round(
        &self,
        sig: Sig,
        failed: Option<String>,
        out: Vec<Vec<u8>>,
        expect: Vec<u64>,
    ) -> Result<Vec<Vec<u8>>> {
        let p = self.start_round(sig, failed, out, expect)?;
        self.finish_round(p)
    }

    /// Reads each member's part of world collective `k` from its
    /// collective buffer, waiting for it to be written; a part that went
    /// as messages is received (its receive joins `waiting`).
    fn read_buffers(
        &self,
        e: &mut Engine,
        k: u64,
        seq: u32,
        got: &mut [Vec<u8>],
        waiting: &mut Vec<(usize, u64)>,
    ) -> Result<()> {
        let me = self.rank as usize;
        let n = self.group.len();
        let parity = (k % 2) as usize;
        for j in (0..n).filter(|&j| j != me) {
            await_part(e, j, k)?;
            let (ctl, data) = e.job.coll_buf(j, parity);
            let len = ctl.len.load(Ordering::Relaxed);
            if len == COLL_BIG {
                let tag = (seq & 0x7fff_ffff) as i32;
                waiting.push((j, e.irecv(j as i32, self.ctx * 2 + 1, tag, None)?));
            } else {
                got[j] = unpack(&data, len, me, n).ok_or_else(|| Error::Corrupt {
                    rank: j as i32,
                    what: "a collective's buffer does not parse".into(),
                })?;
            }
        }
        Ok(())
    }

    /// The same verdict from the headers on every rank that differs: a
    /// different call first, then a member's bad arguments (the lowest
    /// rank's), then lengths that do not agree.
    fn check(&self, p: &Pending, got: &[Vec<u8>]) -> Result<Option<Error>> {
        let me = self.rank as usize;
        // Each header is parsed where it is looked at (a few loads): no
        // allocation in the round's common path.
        let header =
            |j: usize| -> Option<Header> { if j == me { None } else { read_header(&got[j]) } };
        for (j, msg) in got.iter().enumerate() {
            if j != me && read_header(msg).is_none() {
                return Err(Error::Corrupt {
                    rank: j as i32,
                    what: "a collective's header does not parse".into(),
                });
            }
        }
        for j in 0..got.len() {
            let Some(h) = header(j) else { continue };
            if h.ctx != self.ctx {
                return Err(Error::Mismatch(format!(
                    "rank {me} called {} on communicator {}, rank {j} called {} on \
                     communicator {}: collectives on communicators that share ranks \
                     are called in the same order on every rank",
                    p.sig.describe(),
                    self.ctx,
                    h.sig.describe(),
                    h.ctx
                )));
            }
            if h.sig != p.sig || h.seq != p.seq {
                return Err(Error::Mismatch(format!(
                    "rank {me} called {}, rank {j} called {}",
                    p.sig.describe(),
                    h.sig.describe()
                )));
            }
        }
        for (j, msg) in got.iter().enumerate() {
            if j == me {
                if let Some(why) = &p.failed {
                    return Err(Error::Argument(format!("rank {me}: {why}")));
                }
            } else if header(j).is_some_and(|h| h.failed) {
                let why = String::from_utf8_lossy(body(msg));
                return Err(Error::Argument(format!("rank {j}: {why}")));
            }
        }
        for (j, msg) in got.iter().enumerate() {
            let Some(h) = header(j) else { continue };
            let len = body(msg).len() as u64;
            if p.expect[j] != ANY_LEN && p.expect[j] != len {
                return Ok(Some(Error::Mismatch(format!(
                    "in {}, rank {me} expects {} bytes from rank {j}, which sends {len}",
                    p.sig.describe(),
                    p.expect[j]
                ))));
            }
            if h.expect != ANY_LEN && h.expect != p.sent[j] {
                return Ok(Some(Error::Mismatch(format!(
                    "in {}, rank {j} expects {} bytes from rank {me}, which sends {}",
                    p.sig.describe(),
                    h.expect,
                    p.sent[j]
                ))));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_garbage_does_not_parse() {
        let sig = Sig::new(Kind::Allreduce).count(7).op(1).buffer();
        let mut b = frame(b"xyz");
        write_header(&mut b, &sig, 41, 9, false, 56);
        let h = read_header(&b).unwrap();
        assert_eq!(
            (h.sig, h.seq, h.ctx, h.failed, h.expect),
            (sig, 41, 9, false, 56)
        );
        assert_eq!(body(&b), b"xyz");
        assert_eq!(sig.describe(), "allreduce(buffer, count=7, op=SUM)");
        assert!(read_header(&b[..HDR - 1]).is_none());
        for i in [0usize, 1, 2, 3] {
            let mut bad = b.clone();
            bad[i] = 0xEE;
            assert!(read_header(&bad).is_none(), "byte {i}");
        }
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            let junk: Vec<u8> = (0..HDR)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = read_header(&junk);
        }
    }

    /// A collective buffer in this process's memory.
    struct Local(std::cell::RefCell<Vec<u8>>);

    impl Bytes for Local {
        fn len(&self) -> usize {
            self.0.borrow().len()
        }
        fn write(&self, at: usize, src: &[u8]) {
            self.0.borrow_mut()[at..at + src.len()].copy_from_slice(src);
        }
        fn read(&self, at: usize, dst: &mut [u8]) {
            dst.copy_from_slice(&self.0.borrow()[at..at + dst.len()]);
        }
    }

    fn msg(sig: &Sig, expect: u64, body: &[u8]) -> Vec<u8> {
        let mut m = frame(body);
        write_header(&mut m, sig, 7, 3, false, expect);
        m
    }

    #[test]
    fn packed_parts_unpack_for_every_member_and_garbage_never_panics() {
        let buf = Local(std::cell::RefCell::new(vec![0; 4096]));
        let sig = Sig::new(Kind::Alltoall);
        // One message for all: no table.
        let same = msg(&sig, ANY_LEN, b"all");
        let out = vec![same.clone(), Vec::new(), same.clone(), same.clone()];
        let len = pack(&out, 1, &buf).unwrap();
        assert_ne!(len & COLL_SAME, 0);
        for j in [0, 2, 3] {
            assert_eq!(unpack(&buf, len, j, 4).unwrap(), same);
        }
        // Parts that differ, two equal neighbours stored once, other
        // expectations per member.
        let out = vec![
            msg(&sig, 5, b"zero"),
            msg(&sig, 1, b"one-one"),
            msg(&sig, 2, b"one-one"),
            Vec::new(),
            msg(&sig, 0, b""),
        ];
        let len = pack(&out, 3, &buf).unwrap();
        assert_eq!(len & COLL_SAME, 0);
        assert_eq!(len as usize, TABLE + 5 * ENTRY + 4 + 7);
        for j in [0, 1, 2, 4] {
            assert_eq!(unpack(&buf, len, j, 5).unwrap(), out[j], "member {j}");
        }
        assert!(unpack(&buf, len, 0, 4).is_none(), "another member count");
        // Too large for the buffer: the round goes as messages.
        let big = msg(&sig, ANY_LEN, &[9; 5000]);
        assert!(pack(&[big.clone(), Vec::new()], 1, &buf).is_none());
        // Whatever the buffer and its length word hold, unpacking returns
        // None or a message, never panics or allocates past the buffer.
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5000 {
            for b in buf.0.borrow_mut().iter_mut().take(256) {
                *b = next() as u8;
            }
            let len = match next() % 4 {
                0 => next(),
                1 => next() % 300,
                2 => (next() % 300) | COLL_SAME,
                _ => next() | COLL_SAME,
            };
            if let Some(m) = unpack(&buf, len, (next() % 6) as usize, 1 + (next() % 6) as usize) {
                assert!(m.len() <= 4096 + HDR);
            }
        }
    }

    #[test]
    fn reports_name_the_collective_and_its_root() {
        let s = Sig::new(Kind::Bcast).root(3);
        assert_eq!(describe(s.wait_code()), "bcast(root=3)");
        assert_eq!(describe(Sig::new(Kind::Barrier).wait_code()), "barrier()");
        assert_eq!(describe(0xfe), "a collective");
    }
}
