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
//! A round waits with the whole group watched: a member that dies fails
//! every other member's call with `RankDied` naming it, whichever member
//! each was waiting for.

use crate::comm::Comm;
use crate::error::{Error, Result};

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
    failed: bool,
    expect: u64,
}

fn write_header(out: &mut [u8], sig: &Sig, seq: u32, failed: bool, expect: u64) {
    out[0] = MAGIC;
    out[1] = sig.kind as u8;
    out[2] = if failed { FAILED } else { 0 };
    out[3] = 0;
    out[4..8].copy_from_slice(&sig.root.to_le_bytes());
    out[8..12].copy_from_slice(&seq.to_le_bytes());
    out[12..16].copy_from_slice(&[0; 4]);
    out[16..24].copy_from_slice(&sig.arg().to_le_bytes());
    out[24..32].copy_from_slice(&expect.to_le_bytes());
}

fn read_header(b: &[u8]) -> Option<Header> {
    let h = b.get(..HDR)?;
    if h[0] != MAGIC || h[2] & !FAILED != 0 || h[3] != 0 || h[12..16] != [0; 4] {
        return None;
    }
    let kind = Kind::from_code(h[1])?;
    let word = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap_or([0; 8]));
    let root = i32::from_le_bytes(h[4..8].try_into().ok()?);
    Some(Header {
        sig: Sig::from_parts(kind, root, word(16)),
        seq: u32::from_le_bytes(h[8..12].try_into().ok()?),
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

/// A round whose messages are on their way: the receives are posted.
pub(crate) struct Pending {
    sig: Sig,
    seq: u32,
    failed: Option<String>,
    /// Request ids of the receives, by member (none for this rank).
    recvs: Vec<Option<u64>>,
    sends: Vec<u64>,
    /// What this rank sent each member (payload bytes).
    sent: Vec<u64>,
    /// What this rank expects from each member.
    expect: Vec<u64>,
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
        mut out: Vec<Vec<u8>>,
        expect: Vec<u64>,
    ) -> Result<Pending> {
        let n = self.group.len();
        let me = self.rank as usize;
        let seq = self.next_seq();
        let tag = (seq & 0x7fff_ffff) as i32;
        let ctx = self.ctx * 2 + 1;
        let mut recvs = vec![None; n];
        let mut sends = Vec::with_capacity(n.saturating_sub(1));
        let mut sent = vec![0u64; n];
        let mut e = self.engine();
        let mut post = || -> Result<()> {
            for j in (0..n).filter(|&j| j != me) {
                recvs[j] = Some(e.irecv(self.group[j] as i32, ctx, tag, None)?);
            }
            for j in (0..n).filter(|&j| j != me) {
                let mut msg = match &failed {
                    Some(why) => frame(why.as_bytes()),
                    None => std::mem::take(&mut out[j]),
                };
                if msg.len() < HDR {
                    msg.resize(HDR, 0);
                }
                sent[j] = (msg.len() - HDR) as u64;
                write_header(&mut msg, &sig, seq, failed.is_some(), expect[j]);
                sends.push(e.isend(msg, self.group[j], ctx, tag, false)?);
            }
            Ok(())
        };
        if let Err(err) = post() {
            for id in recvs.iter().flatten().chain(&sends) {
                e.forget(*id);
            }
            return Err(err);
        }
        Ok(Pending {
            sig,
            seq,
            failed,
            recvs,
            sends,
            sent,
            expect,
        })
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
    pub(crate) fn finish_round_pairs(&self, p: Pending) -> Result<(Vec<Vec<u8>>, Option<Error>)> {
        let n = self.group.len();
        let mut got: Vec<Vec<u8>> = vec![Vec::new(); n];
        let mut e = self.engine();
        let saved = (e.watch.take(), e.in_coll);
        e.watch = Some(self.group.clone());
        e.in_coll = p.sig.wait_code();
        let mut waiting: Vec<(usize, u64)> = p
            .recvs
            .iter()
            .enumerate()
            .filter_map(|(j, id)| id.map(|id| (j, id)))
            .collect();
        let mut sends = p.sends.clone();
        let mut result = Ok(());
        while !waiting.is_empty() && result.is_ok() {
            let ids: Vec<u64> = waiting.iter().map(|&(_, id)| id).collect();
            match e.wait_any(&ids) {
                Ok((i, c)) => {
                    let (j, _) = waiting.swap_remove(i);
                    match c {
                        Ok((_, v)) => got[j] = v,
                        Err(err) => result = Err(err),
                    }
                }
                Err(err) => result = Err(err),
            }
        }
        while !sends.is_empty() && result.is_ok() {
            match e.wait_any(&sends) {
                Ok((i, c)) => {
                    sends.swap_remove(i);
                    if let Err(err) = c {
                        result = Err(err);
                    }
                }
                Err(err) => result = Err(err),
            }
        }
        for id in waiting.iter().map(|&(_, id)| id).chain(sends) {
            e.forget(id);
        }
        (e.watch, e.in_coll) = saved;
        drop(e);
        result?;
        let pair = self.check(&p, &got)?;
        Ok((got, pair))
    }

    /// A round of no payload that carries each member's outcome of a round
    /// before it (`mine`): a failure anywhere fails every member, naming
    /// the rank that saw it.
    pub(crate) fn verdict(&self, mine: Option<Error>) -> Result<()> {
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

    /// The same verdict from the headers on every rank that differs: a
    /// different call first, then a member's bad arguments (the lowest
    /// rank's), then lengths that do not agree.
    fn check(&self, p: &Pending, got: &[Vec<u8>]) -> Result<Option<Error>> {
        let me = self.rank as usize;
        let mut headers = Vec::with_capacity(got.len());
        for (j, msg) in got.iter().enumerate() {
            if j == me {
                headers.push(None);
                continue;
            }
            let h = read_header(msg).ok_or_else(|| Error::Corrupt {
                rank: j as i32,
                what: "a collective's header does not parse".into(),
            })?;
            headers.push(Some(h));
        }
        for (j, h) in headers.iter().enumerate() {
            let Some(h) = h else { continue };
            if h.sig != p.sig || h.seq != p.seq {
                return Err(Error::Mismatch(format!(
                    "rank {me} called {}, rank {j} called {}",
                    p.sig.describe(),
                    h.sig.describe()
                )));
            }
        }
        for j in 0..got.len() {
            if j == me {
                if let Some(why) = &p.failed {
                    return Err(Error::Argument(format!("rank {me}: {why}")));
                }
            } else if headers[j].as_ref().is_some_and(|h| h.failed) {
                let why = String::from_utf8_lossy(body(&got[j]));
                return Err(Error::Argument(format!("rank {j}: {why}")));
            }
        }
        for (j, h) in headers.iter().enumerate() {
            let Some(h) = h else { continue };
            let len = body(&got[j]).len() as u64;
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
        write_header(&mut b, &sig, 41, false, 56);
        let h = read_header(&b).unwrap();
        assert_eq!((h.sig, h.seq, h.failed, h.expect), (sig, 41, false, 56));
        assert_eq!(body(&b), b"xyz");
        assert_eq!(sig.describe(), "allreduce(buffer, count=7, op=SUM)");
        assert!(read_header(&b[..HDR - 1]).is_none());
        for i in [0usize, 1, 2, 3, 12] {
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

    #[test]
    fn reports_name_the_collective_and_its_root() {
        let s = Sig::new(Kind::Bcast).root(3);
        assert_eq!(describe(s.wait_code()), "bcast(root=3)");
        assert_eq!(describe(Sig::new(Kind::Barrier).wait_code()), "barrier()");
        assert_eq!(describe(0xfe), "a collective");
    }
}
