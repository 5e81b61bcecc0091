//! One rank's engine: progress over the job's rings, matching, sends that
//! wait for their receiver, and the wait that notices dead ranks and
//! deadlocks. Single-threaded: a communicator is `Send`, not `Sync`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use procs_ipc::ring::Sink;

use crate::error::{Error, RankEnd, Result};
use crate::frame::{DATA, EAGER, ENV, Envelope, RTS, RTS_LEN, Rts, SHORT, SYNC};
use crate::job::{
    COPYING, DONE, ENDED, FINISHED, FREE, Job, OFFERED, PULL, RECEIVER_ALL, RUNNING,
    SENDER_COPYING, SENDER_DONE, SLOTS, SPLIT,
};
use crate::{ANY_SOURCE, ANY_TAG, Status};

/// A hasher for the engine's own small keys (request ids, which count up,
/// and slots): a multiply, where std's keyed hash would cost more than the
/// message it books.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

type Ids = std::hash::BuildHasherDefault<IdHasher>;
type IdMap<K, V> = HashMap<K, V, Ids>;

/// Jobs of up to this many ranks sleep on their rings' bells directly
/// (a futex_waitv of up to this many words); larger ones on one bell that
/// every writer rings.
const DIRECT_BELLS: usize = 32;

/// How long a rank polls before it sleeps on its doorbell.
const SPIN: Duration = Duration::from_micros(50);
/// Of that, how long it spins on the processor alone before yielding it
/// between looks (more ranks than cores must not starve each other).
const SPIN_HOT: Duration = Duration::from_micros(2);
/// How long a rank that has a processor of its own polls, on the processor
/// alone, before it sleeps: a yield or a sleep and its wake-up cost tens of
/// round trips, and a peer late by a few hundred microseconds (a host that
/// steals time) is common on virtual machines. Measured on a 2-vCPU VM,
/// 8-byte round trips: median 1.3 us polling 200 us (outliers to 14 us from
/// wake-ups), 0.71 us polling 2 ms; Open MPI, which never sleeps, 0.84 us.
const SPIN_ALONE: Duration = Duration::from_millis(2);
/// How long a sleep lasts at most: the period of the liveness check and of
/// the deadlock detector.
pub(crate) const TICK: Duration = Duration::from_millis(20);

/// The ring's peer as the engine sees it: the engine watches ranks itself
/// (it needs how they ended), so a ring side is never "closed" to it.
use procs_ipc::ring::Unwatched as Ranks;

/// What a call waits in, for the deadlock report and the liveness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaitDesc {
    pub call: Call,
    /// The rank waited on, or ANY_SOURCE.
    pub peer: i32,
    pub tag: i32,
}

/// The blocking calls, as named in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Call {
    Recv = 1,
    Send = 2,
    Ssend = 3,
    Probe = 4,
    WaitRecv = 5,
    WaitSend = 6,
    Finalize = 7,
    /// Waiting for a member's part of a world collective in its buffer
    /// (the tag is the collective's number, its low 31 bits).
    Coll = 8,
}

impl Call {
    pub(crate) fn from_code(c: u64) -> Option<Call> {
        Some(match c {
            1 => Call::Recv,
            2 => Call::Send,
            3 => Call::Ssend,
            4 => Call::Probe,
            5 => Call::WaitRecv,
            6 => Call::WaitSend,
            7 => Call::Finalize,
            8 => Call::Coll,
            _ => return None,
        })
    }
}

impl WaitDesc {
    /// `recv(source=5, tag=0)`, as the report shows it.
    pub(crate) fn describe(&self) -> String {
        let who = |p: i32| {
            if p == ANY_SOURCE {
                "ANY_SOURCE".to_owned()
            } else {
                p.to_string()
            }
        };
        let tag = if self.tag == ANY_TAG {
            "ANY_TAG".to_owned()
        } else {
            self.tag.to_string()
        };
        let (name, side) = match self.call {
            Call::Recv => ("recv", "source"),
            Call::Send => ("send", "dest"),
            Call::Ssend => ("ssend", "dest"),
            Call::Probe => ("probe", "source"),
            Call::WaitRecv => ("wait for irecv", "source"),
            Call::WaitSend => ("wait for isend", "dest"),
            Call::Finalize => ("finalize, completing a send", "dest"),
            Call::Coll => ("a collective", "source"),
        };
        format!("{name}({side}={}, tag={tag})", who(self.peer))
    }
}

/// A message that arrived before a receive for it was posted.
struct Incoming {
    src: usize,
    comm: u32,
    tag: i32,
    body: Body,
}

enum Body {
    Eager(Vec<u8>),
    Sync {
        data: Vec<u8>,
        slot: u32,
        seq: u32,
    },
    Rts {
        slot: u32,
        seq: u32,
        len: u64,
        rts: Rts,
    },
}

impl Incoming {
    fn len(&self) -> usize {
        match &self.body {
            Body::Eager(d) | Body::Sync { data: d, .. } => d.len(),
            Body::Rts { len, .. } => *len as usize,
        }
    }

    fn status(&self) -> Status {
        Status::new(self.src as i32, self.tag, self.len())
    }
}

/// A receive posted by `irecv`, waiting for its message.
struct Posted {
    id: u64,
    src: i32,
    tag: i32,
    comm: u32,
    /// The buffer's length for the buffer form (a longer message is
    /// truncated, never allocated).
    max: Option<usize>,
}

/// The blocking receive in progress, matched after every posted receive
/// (it was posted last), delivered straight into its caller's buffer.
struct Current {
    src: i32,
    tag: i32,
    comm: u32,
    ptr: *mut u8,
    cap: usize,
    /// Being delivered into.
    busy: bool,
    result: Option<Result<Status>>,
}

/// A message being pulled through the ring into its destination.
struct Pull {
    seq: u32,
    len: usize,
    got: usize,
    status: Status,
    dest: PullDest,
}

enum PullDest {
    /// The blocking receive's buffer (valid until that call returns, and
    /// the call does not return while the pull is registered).
    Raw(*mut u8),
    /// A posted receive's own buffer.
    Owned { id: u64, buf: Vec<u8> },
}

/// A send waiting for its receiver (rendezvous or synchronous).
struct SendOp {
    dest: usize,
    slot: usize,
    seq: u32,
    ptr: *const u8,
    len: usize,
    /// The request's copy of the message (isend): `ptr` points into it.
    _owned: Option<Vec<u8>>,
    /// Bytes streamed so far, once the receiver asked to pull.
    streamed: Option<usize>,
    tag: i32,
}

/// A frame waiting for room in its ring, and the send it completes.
struct Out {
    frame: Vec<u8>,
    completes: Option<u64>,
}

/// What a completed request leaves.
pub(crate) use crate::request::Completion;

/// The sender's nonce: a random number at a fixed address of this process,
/// renewed in each new process (a forked child gets its own).
static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static NONCE_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn nonce() -> u64 {
    let pid = std::process::id();
    if NONCE_PID.load(Ordering::Acquire) != pid {
        // Every thread that gets here computes the same value (a random
        // one would let two first callers store different nonces, and an
        // offer made with the first fail its check): this process's pid and
        // start time, which a process that reuses the pid does not share.
        let start = procs_sync::raw::liveness::own_start_ticks();
        let v = (u64::from(pid) << 32 ^ start.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
        NONCE.store(v, Ordering::Release);
        NONCE_PID.store(pid, Ordering::Release);
    }
    NONCE.load(Ordering::Acquire)
}

/// How a single copy out of a sender failed.
enum CopyFailed {
    /// The kernel does not allow it here: pull through the ring instead.
    Refused,
    /// The sender is gone (or its pid names another process now).
    Gone,
}

/// How the last `process_vm_readv` or `process_vm_writev` failed; `None`
/// for an interrupted call, to make again.
fn failure() -> Option<CopyFailed> {
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EINTR) => None,
        Some(libc::EPERM | libc::ENOSYS | libc::EACCES) => Some(CopyFailed::Refused),
        _ => Some(CopyFailed::Gone),
    }
}

/// Copies `dest.len()` bytes from `addr` in process `pid`, reading the
/// sender's nonce at `nonce_addr` in the same call.
fn copy_from(pid: u32, rts: &Rts, dest: &mut [u8]) -> std::result::Result<(), CopyFailed> {
    let mut seen = 0u64;
    let mut done = 0usize;
    let mut first = true;
    while first || done < dest.len() {
        let rest = &mut dest[done..];
        let local = [
            libc::iovec {
                iov_base: (&mut seen as *mut u64).cast(),
                iov_len: 8,
            },
            libc::iovec {
                iov_base: rest.as_mut_ptr().cast(),
                iov_len: rest.len(),
            },
        ];
        let remote = [
            libc::iovec {
                iov_base: rts.nonce_addr as *mut libc::c_void,
                iov_len: 8,
            },
            libc::iovec {
                iov_base: (rts.addr as usize + done) as *mut libc::c_void,
                iov_len: rest.len(),
            },
        ];
        // SAFETY: the local iovecs name `seen` and the unfilled part of
        // `dest`, both writable for their lengths for the whole call; the
        // remote ones are only addresses in the other process, which the
        // kernel checks (a bad one is EFAULT, not a write here).
        let n =
            unsafe { libc::process_vm_readv(pid as i32, local.as_ptr(), 2, remote.as_ptr(), 2, 0) };
        if n < 0 {
            match failure() {
                Some(f) => return Err(f),
                None => continue,
            }
        }
        let n = n as usize;
        if n < 8 || seen != rts.nonce {
            return Err(CopyFailed::Gone);
        }
        done += n - 8;
        first = false;
    }
    Ok(())
}

/// How another rank reads `addr` straight out of this process (its pid,
/// and the nonce that proves the pid still names it).
pub(crate) fn own_rts(addr: u64) -> Rts {
    Rts {
        pid: std::process::id(),
        addr,
        nonce_addr: &NONCE as *const _ as u64,
        nonce: nonce(),
    }
}

/// Copies `dest.len()` bytes from the memory `rts` names in another rank,
/// at `offset` bytes past its address, checking the nonce in the same call:
/// `Err(true)` if the kernel refuses such copies here, `Err(false)` if the
/// process is gone (or its pid names another one now).
pub(crate) fn read_remote(
    rts: &Rts,
    offset: usize,
    dest: &mut [u8],
) -> std::result::Result<(), bool> {
    let at = Rts {
        addr: rts.addr.wrapping_add(offset as u64),
        ..*rts
    };
    copy_from(at.pid, &at, dest).map_err(|f| matches!(f, CopyFailed::Refused))
}

/// Writes `src` into the memory `rts` names in another rank, at `offset`
/// bytes past its address, after checking its nonce: `Err(true)` if the
/// kernel refuses such copies here, `Err(false)` if the process is gone.
pub(crate) fn write_remote(rts: &Rts, offset: usize, src: &[u8]) -> std::result::Result<(), bool> {
    copy_to(rts, offset, src).map_err(|f| matches!(f, CopyFailed::Refused))
}

/// Under Yama's ptrace scope 1 a process may read only its descendants'
/// memory, and ranks are siblings: each rank then declares that any process
/// of its user may (what scope 0 allows everywhere, and what Open MPI's
/// single copy does too). Elsewhere nothing changes. Where even that is
/// refused, the first copy fails with EPERM and large messages go through
/// the ring.
fn allow_sibling_reads() {
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").unwrap_or_default();
    if scope.trim() == "1" {
        // SAFETY: PR_SET_PTRACER takes two integers and changes only this
        // process's Yama attribute.
        unsafe { libc::prctl(libc::PR_SET_PTRACER, libc::PR_SET_PTRACER_ANY, 0, 0, 0) };
    }
}

/// Writes `src` at offset `at` of the message buffer `to` describes in
/// process `to.pid`, after reading that process's nonce (a pid that names
/// another process now fails the check, and nothing is written).
fn copy_to(to: &Rts, at: usize, src: &[u8]) -> std::result::Result<(), CopyFailed> {
    let mut seen = 0u64;
    let local = [libc::iovec {
        iov_base: (&mut seen as *mut u64).cast(),
        iov_len: 8,
    }];
    let remote = [libc::iovec {
        iov_base: to.nonce_addr as *mut libc::c_void,
        iov_len: 8,
    }];
    // SAFETY: the local iovec names `seen`, writable for 8 bytes; the
    // remote one is an address in the other process, checked by the kernel.
    let n =
        unsafe { libc::process_vm_readv(to.pid as i32, local.as_ptr(), 1, remote.as_ptr(), 1, 0) };
    if n != 8 || seen != to.nonce {
        return Err(CopyFailed::Gone);
    }
    let mut done = 0usize;
    while done < src.len() {
        let rest = &src[done..];
        let local = [libc::iovec {
            iov_base: rest.as_ptr() as *mut libc::c_void,
            iov_len: rest.len(),
        }];
        let remote = [libc::iovec {
            iov_base: (to.addr as usize + at + done) as *mut libc::c_void,
            iov_len: rest.len(),
        }];
        // SAFETY: the local iovec names `rest`, readable for its length;
        // the kernel only reads it. The remote range is the receiver's
        // buffer, which it keeps for this write (the slot says so).
        let n = unsafe {
            libc::process_vm_writev(to.pid as i32, local.as_ptr(), 1, remote.as_ptr(), 1, 0)
        };
        if n < 0 {
            match failure() {
                Some(f) => return Err(f),
                None => continue,
            }
        }
        if n == 0 {
            return Err(CopyFailed::Gone);
        }
        done += n as usize;
    }
    Ok(())
}

/// Messages of at least this many bytes are copied in two parts at once,
/// one by each side.
const SPLIT_MIN: usize = 256 << 10;
/// How long a receiver leaves the sender to claim its part of a split copy
/// before it takes that part itself (a sender computing outside any call
/// never claims).
const STEAL_AFTER: Duration = Duration::from_micros(20);

/// One rank's engine.
pub(crate) struct Engine {
    pub job: Arc<Job>,
    pub rank: usize,
    /// During a collective: the world ranks taking part, each watched for
    /// its death while this rank waits (a rank that died fails every
    /// member's call, not only its neighbours').
    pub watch: Option<std::rc::Rc<[usize]>>,
    /// During a collective: what it is, for the deadlock report
    /// (`crate::coll::describe`); 0 otherwise.
    pub in_coll: u64,
    /// During a world collective: the rank, buffer parity and collective
    /// number this rank waits to see in that rank's collective buffer.
    pub coll_want: Option<(usize, usize, u64)>,
    size: usize,
    /// Messages up to this many bytes go eager through the ring.
    eager_max: usize,
    /// Large messages are copied straight out of their sender.
    single_copy: bool,
    unexpected: VecDeque<Incoming>,
    posted: Vec<Posted>,
    current: Option<Current>,
    pulls: IdMap<(usize, u32), Pull>,
    sends: IdMap<u64, SendOp>,
    outq: Vec<VecDeque<Out>>,
    done: IdMap<u64, Completion>,
    /// Requests dropped unfinished: their completion is not kept.
    detached: std::collections::HashSet<u64, Ids>,
    free_slots: Vec<usize>,
    seqs: [u32; SLOTS],
    next_id: u64,
    scratch: Vec<u8>,
    frame: Vec<u8>,
    epoch: u64,
    finished: bool,
    /// The launcher (this process's parent when it attached).
    parent: i32,
    /// A sleeping rank waits on its rings' own bells (see `frames_out`).
    bells_direct: bool,
    /// In the polling part of a wait: look at rings the cheap way.
    polling: bool,
    /// More ranks than processors: a waiting rank yields its processor.
    crowded: bool,
    /// A wait past this instant fails (the measurement's engines only: a
    /// peer thread that failed must not leave the other waiting).
    give_up: Option<Instant>,
    /// The ids of the sends in flight, gathered for each pass over them.
    ids: Vec<u64>,
    /// What this rank last saw of each outgoing ring's reader, so that a
    /// send with room it knows of does not read the reader's cache line.
    out_hints: Vec<procs_ipc::ring::Hints>,
    /// A single copy succeeded here once (split copies are tried after).
    copies_ok: bool,
    /// Writing into another rank is allowed (until a write is refused).
    writes_ok: bool,
}

// SAFETY: the raw pointers in `current`, `pulls` and `sends` point into
// buffers that the blocking call (or the request) owning them keeps alive
// and that no other thread touches; an Engine moves between threads whole,
// never shared (it is not Sync).
unsafe impl Send for Engine {}

fn matches(want_src: i32, want_tag: i32, want_comm: u32, src: usize, tag: i32, comm: u32) -> bool {
    want_comm == comm
        && (want_src == ANY_SOURCE || want_src == src as i32)
        && (want_tag == ANY_TAG || want_tag == tag)
}

/// A rank's wait word: its epoch and its state (below).
pub(crate) fn wait_word(epoch: u64, state: u64) -> u64 {
    (epoch << 2) | state
}

/// Computing, or polling: not blocked.
pub(crate) const RUNNING_STATE: u64 = 0;
/// Asleep with nothing to do.
pub(crate) const BLOCKED: u64 = 1;
/// Held by a detector that is deciding: the rank may not leave yet.
pub(crate) const HELD: u64 = 2;
/// Deadlocked: the blocked call returns the report.
pub(crate) const CONDEMNED: u64 = 3;

fn state_word(seq: u32, state: u64) -> u64 {
    (u64::from(seq) << 8) | state
}

impl Engine {
    pub(crate) fn new(job: Arc<Job>, rank: usize, single_copy: bool) -> Engine {
        let size = job.size();
        let eager_max = job.ring_cap() / 4 - ENV;
        Engine {
            rank,
            size,
            eager_max,
            single_copy,
            unexpected: VecDeque::new(),
            posted: Vec::new(),
            current: None,
            pulls: IdMap::default(),
            sends: IdMap::default(),
            outq: (0..size).map(|_| VecDeque::new()).collect(),
            done: IdMap::default(),
            detached: Default::default(),
            free_slots: (0..SLOTS).rev().collect(),
            seqs: [0; SLOTS],
            next_id: 1,
            scratch: Vec::new(),
            frame: Vec::new(),
            epoch: 0,
            finished: false,
            // SAFETY: getppid has no preconditions.
            parent: unsafe { libc::getppid() },
            bells_direct: size <= DIRECT_BELLS,
            polling: false,
            give_up: None,
            watch: None,
            in_coll: 0,
            coll_want: None,
            crowded: std::thread::available_parallelism().map_or(true, |p| size > p.get()),
            ids: Vec::new(),
            out_hints: (0..size).map(|_| Default::default()).collect(),
            copies_ok: false,
            writes_ok: true,
            job,
        }
    }

    /// Marks this rank running in the job (its pid and start time first,
    /// for the liveness check of the others).
    pub(crate) fn attach(&self) {
        if self.single_copy && self.size > 1 {
            allow_sibling_reads();
        }
        let b = self.job.rank(self.rank);
        b.pid
            .store(u64::from(std::process::id()), Ordering::Relaxed);
        b.start.store(
            procs_sync::raw::liveness::own_start_ticks(),
            Ordering::Relaxed,
        );
        b.life.fetch_or(RUNNING, Ordering::AcqRel);
        self.job.ring_all();
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// The same engine, yielding its processor while it polls (for the
    /// measurement, whose threads share the processors with other ranks).
    pub(crate) fn yielding(mut self, give_up: Instant) -> Engine {
        self.crowded = true;
        self.give_up = Some(give_up);
        self
    }

    /// Whether large messages still go by single copy (the kernel did not
    /// refuse one).
    pub(crate) fn single_copy_works(&self) -> bool {
        self.single_copy
    }

    /// The largest message sent eager (through the ring, whatever the
    /// receiver is doing).
    pub(crate) fn eager_limit(&self) -> usize {
        self.eager_max
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    // ----- sending -----

    /// Writes `frame` to `dest` now if nothing is queued before it and the
    /// ring has room, else queues a copy. Returns whether it is in the ring.
    fn push_frame(&mut self, dest: usize, frame: &[u8], completes: Option<u64>) -> Result<bool> {
        if self.outq[dest].is_empty() {
            let ring = self.job.ring(self.rank, dest).hinted(&self.out_hints[dest]);
            if ring.has_room_for(frame.len()) {
                ring.send(frame, None, &Ranks).map_err(|e| Error::Corrupt {
                    rank: dest as i32,
                    what: format!("the ring to rank {dest}: {e}"),
                })?;
                self.frames_out(dest);
                if let Some(id) = completes {
                    self.complete(
                        id,
                        Ok((Status::new(dest as i32, 0, frame.len() - SHORT), Vec::new())),
                    );
                }
                return Ok(true);
            }
        }
        self.outq[dest].push_back(Out {
            frame: frame.to_vec(),
            completes,
        });
        self.flush(dest)?;
        Ok(self.outq[dest].is_empty())
    }

    /// Writes queued frames for `dest` while its ring has room.
    fn flush(&mut self, dest: usize) -> Result<bool> {
        let mut wrote = false;
        while let Some(out) = self.outq[dest].front() {
            let ring = self.job.ring(self.rank, dest).hinted(&self.out_hints[dest]);
            if !ring.has_room_for(out.frame.len()) {
                break;
            }
            ring.send(&out.frame, None, &Ranks)
                .map_err(|e| Error::Corrupt {
                    rank: dest as i32,
                    what: format!("the ring to rank {dest}: {e}"),
                })?;
            wrote = true;
            let out = self.outq[dest].pop_front().expect("front exists");
            if let Some(id) = out.completes {
                self.complete(
                    id,
                    Ok((
                        Status::new(dest as i32, 0, out.frame.len() - SHORT),
                        Vec::new(),
                    )),
                );
            }
        }
        if wrote {
            self.frames_out(dest);
        }
        Ok(wrote)
    }

    /// Frames were published to `dest`. In a small job the ring's own data
    /// bell (rung by the publish) is enough: a rank sleeps on the data
    /// bells of all its incoming rings at once. In a large one it sleeps on
    /// its own bell alone, which every writer rings.
    #[inline]
    fn frames_out(&self, dest: usize) {
        if !self.bells_direct {
            self.job.rank(dest).bell.ring();
        }
    }

    fn complete(&mut self, id: u64, c: Completion) {
        if self.detached.is_empty() || !self.detached.remove(&id) {
            self.done.insert(id, c);
        }
    }

    /// Starts a send of `data` (at `ptr`, `len` bytes; `owned` keeps it
    /// alive for a request). Returns the request id; the send is complete
    /// once `done` holds it.
    ///
    /// # Safety
    /// `ptr..ptr+len` stays valid and unchanged until the send completes
    /// or is withdrawn.
    unsafe fn start_send(
        &mut self,
        ptr: *const u8,
        len: usize,
        owned: Option<Vec<u8>>,
        (dest, comm, tag): (usize, u32, i32),
        sync: bool,
    ) -> Result<u64> {
        let id = self.new_id();
        if dest == self.rank {
            // To itself: through the engine's own queue, never the segment.
            // SAFETY: the caller keeps `ptr..ptr+len` valid for this call.
            let data = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
            let inc = Incoming {
                src: self.rank,
                comm,
                tag,
                body: Body::Eager(data),
            };
            self.arrive(inc)?;
            self.complete(id, Ok((Status::new(dest as i32, tag, len), Vec::new())));
            return Ok(id);
        }
        let mut frame = std::mem::take(&mut self.frame);
        if len <= self.eager_max && !sync {
            Envelope {
                kind: EAGER,
                comm,
                tag,
                slot: 0,
                seq: 0,
                word: 0,
            }
            .write(&mut frame);
            // SAFETY: as above.
            frame.extend_from_slice(unsafe { std::slice::from_raw_parts(ptr, len) });
            let r = self.push_frame(dest, &frame, Some(id));
            self.frame = frame;
            r?;
            return Ok(id);
        }
        let slot = self.take_slot(WaitDesc {
            call: if sync { Call::Ssend } else { Call::Send },
            peer: dest as i32,
            tag,
        })?;
        self.seqs[slot] = self.seqs[slot].wrapping_add(1);
        let seq = self.seqs[slot];
        let s = self.job.slot(self.rank, slot);
        s.addr.store(ptr as u64, Ordering::Relaxed);
        s.len.store(len as u64, Ordering::Relaxed);
        s.state.store(state_word(seq, OFFERED), Ordering::Release);
        if len <= self.eager_max {
            Envelope {
                kind: SYNC,
                comm,
                tag,
                slot: slot as u32,
                seq,
                word: 0,
            }
            .write(&mut frame);
            // SAFETY: as above.
            frame.extend_from_slice(unsafe { std::slice::from_raw_parts(ptr, len) });
        } else {
            Envelope {
                kind: RTS,
                comm,
                tag,
                slot: slot as u32,
                seq,
                word: len as u64,
            }
            .write(&mut frame);
            let n = nonce();
            Rts {
                pid: std::process::id(),
                addr: ptr as u64,
                nonce_addr: &NONCE as *const _ as u64,
                nonce: n,
            }
            .write(&mut frame);
            debug_assert_eq!(frame.len(), RTS_LEN);
        }
        self.sends.insert(
            id,
            SendOp {
                dest,
                slot,
                seq,
                ptr,
                len,
                _owned: owned,
                streamed: None,
                tag,
            },
        );
        let r = self.push_frame(dest, &frame, None);
        self.frame = frame;
        r?;
        Ok(id)
    }

    /// A free send slot, waiting (and progressing) while all are in use.
    fn take_slot(&mut self, w: WaitDesc) -> Result<usize> {
        if let Some(s) = self.free_slots.pop() {
            return Ok(s);
        }
        self.block(w, |e| Ok(e.free_slots.pop()))
    }

    /// Looks at the slots of the sends in flight: completes those the
    /// receiver finished, streams those it asked to pull.
    fn progress_sends(&mut self) -> Result<bool> {
        if self.sends.is_empty() {
            return Ok(false);
        }
        // The ids in a buffer kept between passes: no allocation per pass.
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        ids.extend(self.sends.keys().copied());
        let (mut moved, mut failed) = (false, None);
        for &id in &ids {
            match self.move_send(id) {
                Ok(m) => moved |= m,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        self.ids = ids;
        failed.map_or(Ok(moved), Err)
    }

    /// Moves the send `id` along as its slot says; whether anything moved.
    fn move_send(&mut self, id: u64) -> Result<bool> {
        let op = &self.sends[&id];
        let word = self
            .job
            .slot(self.rank, op.slot)
            .state
            .load(Ordering::Acquire);
        if word >> 8 != u64::from(op.seq) {
            return Ok(false);
        }
        match word & 0xff {
            DONE => {
                let op = self.sends.remove(&id).expect("present");
                self.release_slot(op.slot);
                let st = Status::new(op.dest as i32, op.tag, op.len);
                self.complete(id, Ok((st, Vec::new())));
                Ok(true)
            }
            PULL => self.stream(id),
            SPLIT => Ok(self.copy_my_part(id)),
            _ => Ok(false),
        }
    }

    /// The sender's part of a split copy: claims the rest of the message
    /// (unless the receiver took it already) and writes it into the
    /// receiver's buffer. Returns whether it claimed.
    fn copy_my_part(&mut self, id: u64) -> bool {
        let op = &self.sends[&id];
        let s = self.job.slot(self.rank, op.slot);
        if !self.writes_ok
            || s.state
                .compare_exchange(
                    state_word(op.seq, SPLIT),
                    state_word(op.seq, SENDER_COPYING),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
        {
            return false;
        }
        let at = (s.split_at.load(Ordering::Relaxed) as usize).min(op.len);
        let target = Rts {
            pid: s.dest_pid.load(Ordering::Relaxed) as u32,
            addr: s.dest.load(Ordering::Relaxed),
            nonce_addr: s.dest_nonce_addr.load(Ordering::Relaxed),
            nonce: s.dest_nonce.load(Ordering::Relaxed),
        };
        // SAFETY: the send's buffer stays valid until it completes
        // (start_send's contract), and at <= len.
        let part = unsafe { std::slice::from_raw_parts(op.ptr.add(at), op.len - at) };
        let end = match copy_to(&target, at, part) {
            Ok(()) => SENDER_DONE,
            Err(CopyFailed::Refused) => {
                // Not allowed to write here: the receiver takes it all.
                self.writes_ok = false;
                SPLIT
            }
            // The receiver is gone: its own wait sees that.
            Err(CopyFailed::Gone) => SPLIT,
        };
        s.state.store(state_word(op.seq, end), Ordering::Release);
        self.job.rank(op.dest).bell.notify_all();
        true
    }

    /// Streams the pulled send `id` through the ring as room allows.
    fn stream(&mut self, id: u64) -> Result<bool> {
        let (dest, slot, seq, ptr, len, mut at) = {
            let op = &self.sends[&id];
            (
                op.dest,
                op.slot,
                op.seq,
                op.ptr,
                op.len,
                op.streamed.unwrap_or(0),
            )
        };
        // Frames queued before the pull go first.
        if !self.outq[dest].is_empty() && !self.flush(dest)? {
            return Ok(false);
        }
        if !self.outq[dest].is_empty() {
            return Ok(false);
        }
        let ring = self.job.ring(self.rank, dest).hinted(&self.out_hints[dest]);
        let piece = self.eager_max;
        let mut moved = false;
        let mut frame = std::mem::take(&mut self.frame);
        while at < len {
            let n = piece.min(len - at);
            if !ring.has_room_for(ENV + n) {
                break;
            }
            Envelope {
                kind: DATA,
                comm: 0,
                tag: 0,
                slot: slot as u32,
                seq,
                word: at as u64,
            }
            .write(&mut frame);
            // SAFETY: the send's buffer stays valid until it completes
            // (start_send's contract), and at + n <= len.
            frame.extend_from_slice(unsafe { std::slice::from_raw_parts(ptr.add(at), n) });
            ring.send(&frame, None, &Ranks)
                .map_err(|e| Error::Corrupt {
                    rank: dest as i32,
                    what: format!("the ring to rank {dest}: {e}"),
                })?;
            at += n;
            moved = true;
        }
        self.frame = frame;
        if moved {
            self.frames_out(dest);
        }
        if at >= len {
            let op = self.sends.remove(&id).expect("present");
            self.release_slot(op.slot);
            self.complete(id, Ok((Status::new(dest as i32, op.tag, len), Vec::new())));
        } else if let Some(op) = self.sends.get_mut(&id) {
            op.streamed = Some(at);
        }
        Ok(moved)
    }

    fn release_slot(&mut self, slot: usize) {
        let s = self.job.slot(self.rank, slot);
        s.state
            .store(state_word(self.seqs[slot], FREE), Ordering::Release);
        self.free_slots.push(slot);
    }

    /// Takes back a send that will not complete (its call failed). A slot
    /// under a copy is waited for: its receiver reads this process's memory.
    fn withdraw(&mut self, id: u64) {
        let Some(op) = self.sends.remove(&id) else {
            self.done.remove(&id);
            return;
        };
        // A frame still queued is dropped with it.
        self.outq[op.dest].retain(|o| {
            Envelope::read(&o.frame)
                .is_none_or(|e| !(e.kind == RTS || e.kind == SYNC) || e.slot != op.slot as u32)
        });
        let s = self.job.slot(self.rank, op.slot);
        let offered = state_word(op.seq, OFFERED);
        if s.state
            .compare_exchange(
                offered,
                state_word(op.seq, FREE),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            // Under a copy: wait for DONE while the receiver lives (it
            // reads this process's memory until then).
            let copying = |w: u64| {
                w >> 8 == u64::from(op.seq)
                    && matches!(w & 0xff, COPYING | SPLIT | SENDER_DONE | RECEIVER_ALL)
            };
            while copying(s.state.load(Ordering::Acquire)) && self.job.ended(op.dest).is_none() {
                std::thread::yield_now();
            }
        }
        self.release_slot(op.slot);
    }

    // ----- receiving -----

    /// Drains every incoming ring and moves every send along. Returns
    /// whether anything happened.
    pub(crate) fn progress(&mut self) -> Result<bool> {
        let mut moved = false;
        for src in 0..self.size {
            if src == self.rank {
                continue;
            }
            let mut took = false;
            loop {
                let ring = self.job.ring(src, self.rank);
                // The cheap look while polling; the thorough one (a damaged
                // ring, seen at once) before this rank sleeps, in `ready`.
                if !ring.frame_waiting() && (self.polling || !ring.recv_ready(&Ranks)) {
                    break;
                }
                let mut buf = std::mem::take(&mut self.scratch);
                let got = ring.recv(&mut Sink::Vec(&mut buf), None, &Ranks);
                let r = match got {
                    Ok(_) => self.frame_in(src, &buf),
                    Err(e) => Err(Error::Corrupt {
                        rank: src as i32,
                        what: e.to_string(),
                    }),
                };
                self.scratch = buf;
                r?;
                took = true;
            }
            if took {
                moved = true;
                if !self.bells_direct {
                    // A writer waiting for room sleeps on its own bell.
                    self.job.rank(src).bell.ring();
                }
            }
        }
        for dest in 0..self.size {
            if !self.outq[dest].is_empty() {
                moved |= self.flush(dest)?;
            }
        }
        moved |= self.progress_sends()?;
        Ok(moved)
    }

    fn frame_in(&mut self, src: usize, frame: &[u8]) -> Result<()> {
        let corrupt = |what: &str| Error::Corrupt {
            rank: src as i32,
            what: what.to_owned(),
        };
        let env =
            Envelope::read(frame).ok_or_else(|| corrupt("an envelope that does not parse"))?;
        if env.kind == DATA {
            return self.data_in(src, env, &frame[ENV..]);
        }
        // The blocking receive in progress, if it is the first to match
        // (posted receives come before it).
        let first_posted = self
            .posted
            .iter()
            .position(|p| matches(p.src, p.tag, p.comm, src, env.tag, env.comm));
        if first_posted.is_none()
            && let Some(cur) = &mut self.current
            && cur.result.is_none()
            && !cur.busy
            && matches(cur.src, cur.tag, cur.comm, src, env.tag, env.comm)
        {
            let (ptr, cap) = (cur.ptr, cur.cap);
            if env.kind == EAGER {
                // Straight from the frame into the caller's buffer.
                let payload = &frame[SHORT..];
                cur.result = Some(if payload.len() > cap {
                    Err(Error::Truncate {
                        len: payload.len(),
                        capacity: cap,
                    })
                } else {
                    // SAFETY: as below: the caller's buffer of `cap` bytes,
                    // referenced by nothing else during `recv_into`.
                    let dest = unsafe { std::slice::from_raw_parts_mut(ptr, cap) };
                    dest[..payload.len()].copy_from_slice(payload);
                    Ok(Status::new(src as i32, env.tag, payload.len()))
                });
                return Ok(());
            }
            // While it is delivered (a pull waits), nothing else matches it.
            cur.busy = true;
            let inc = self.incoming_from(src, env, frame).and_then(|inc| {
                let live = self.still_offered(&inc)?;
                Ok(live.then_some(inc))
            });
            let r = inc.map(|inc| {
                let inc = inc?;
                // SAFETY: `current` is set only by `recv_into` for the
                // duration of the call, with its caller's buffer of `cap`
                // bytes, which nothing else references meanwhile.
                let dest = unsafe { std::slice::from_raw_parts_mut(ptr, cap) };
                self.deliver_into(inc, dest)
            });
            if let Some(cur) = &mut self.current {
                cur.busy = false;
                match r {
                    Ok(r) => cur.result = r,
                    Err(e) => cur.result = Some(Err(e)),
                }
            }
            return Ok(());
        }
        let inc = self.incoming_from(src, env, frame)?;
        if !self.still_offered(&inc)? {
            return Ok(());
        }
        self.arrive(inc)
    }

    fn incoming_from(&self, src: usize, env: Envelope, frame: &[u8]) -> Result<Incoming> {
        let payload = &frame[env.len()..];
        let body = match env.kind {
            EAGER => Body::Eager(payload.to_vec()),
            SYNC => Body::Sync {
                data: payload.to_vec(),
                slot: env.slot,
                seq: env.seq,
            },
            _ => {
                let rts = Rts::read(frame).ok_or(Error::Corrupt {
                    rank: src as i32,
                    what: "an RTS that does not parse".into(),
                })?;
                if env.slot as usize >= SLOTS {
                    return Err(Error::Corrupt {
                        rank: src as i32,
                        what: "a slot out of range".into(),
                    });
                }
                Body::Rts {
                    slot: env.slot,
                    seq: env.seq,
                    len: env.word,
                    rts,
                }
            }
        };
        if let Body::Sync { slot, .. } = &body
            && *slot as usize >= SLOTS
        {
            return Err(Error::Corrupt {
                rank: src as i32,
                what: "a slot out of range".into(),
            });
        }
        Ok(Incoming {
            src,
            comm: env.comm,
            tag: env.tag,
            body,
        })
    }

    /// Whether the send behind a SYNC or RTS frame is still offered (else
    /// its sender withdrew it, and the frame is dropped), checking that the
    /// slot's record agrees with the frame's length.
    fn still_offered(&self, inc: &Incoming) -> Result<bool> {
        let (slot, seq, len) = match &inc.body {
            Body::Eager(_) => return Ok(true),
            Body::Sync { data, slot, seq } => (*slot, *seq, data.len() as u64),
            Body::Rts { slot, seq, len, .. } => (*slot, *seq, *len),
        };
        let s = self.job.slot(inc.src, slot as usize);
        if s.state.load(Ordering::Acquire) != state_word(seq, OFFERED) {
            return Ok(false);
        }
        if s.len.load(Ordering::Relaxed) != len {
            return Err(Error::Corrupt {
                rank: inc.src as i32,
                what: "a message whose length disagrees with its sender's slot".into(),
            });
        }
        Ok(true)
    }

    /// A message arrived: to the first posted receive it matches, else to
    /// the unexpected queue.
    fn arrive(&mut self, inc: Incoming) -> Result<()> {
        let Some(i) = self
            .posted
            .iter()
            .position(|p| matches(p.src, p.tag, p.comm, inc.src, inc.tag, inc.comm))
        else {
            self.unexpected.push_back(inc);
            return Ok(());
        };
        let p = self.posted.remove(i);
        self.deliver_owned(p, inc)
    }

    /// Delivers `inc` to the posted receive `p` (into its own buffer).
    fn deliver_owned(&mut self, p: Posted, inc: Incoming) -> Result<()> {
        let (id, max) = (p.id, p.max);
        let st = inc.status();
        let len = inc.len();
        if let Some(max) = max
            && len > max
        {
            self.refuse(&inc);
            self.complete(id, Err(Error::Truncate { len, capacity: max }));
            return Ok(());
        }
        match inc.body {
            Body::Eager(data) => self.complete(id, Ok((st, data))),
            Body::Sync { data, slot, seq } => {
                if self.ack(inc.src, slot, seq, DONE) {
                    self.complete(id, Ok((st, data)));
                } else {
                    // Withdrawn by its sender (whose ssend failed): gone.
                    self.repost(p);
                }
            }
            Body::Rts { slot, seq, rts, .. } => {
                let mut buf = Vec::new();
                if buf.try_reserve_exact(len).is_err() {
                    self.ack(inc.src, slot, seq, DONE);
                    self.complete(id, Err(Error::OutOfMemory { len }));
                    return Ok(());
                }
                buf.resize(len, 0);
                match self.take_rts(inc.src, slot, seq, &rts, &mut buf)? {
                    Taken::Copied => self.complete(id, Ok((st, buf))),
                    Taken::Pulling => {
                        self.start_pull(inc.src, slot, seq, st, PullDest::Owned { id, buf })
                    }
                    Taken::Withdrawn => self.repost(p),
                    Taken::Died(e) => self.complete(id, Err(e)),
                }
            }
        }
        Ok(())
    }

    /// Registers a pull of the message `st` describes from `src`'s `slot`.
    fn start_pull(&mut self, src: usize, slot: u32, seq: u32, st: Status, dest: PullDest) {
        let pull = Pull {
            seq,
            len: st.bytes(),
            got: 0,
            status: st,
            dest,
        };
        self.pulls.insert((src, slot), pull);
    }

    /// Posts the receive `p` again, first in line: the message it had
    /// matched was withdrawn by its sender.
    fn repost(&mut self, p: Posted) {
        self.posted.insert(0, p);
    }

    /// Delivers `inc` into `dest`; `None` if its sender withdrew it.
    fn deliver_into(&mut self, inc: Incoming, dest: &mut [u8]) -> Option<Result<Status>> {
        let st = inc.status();
        let len = inc.len();
        if len > dest.len() {
            self.refuse(&inc);
            return Some(Err(Error::Truncate {
                len,
                capacity: dest.len(),
            }));
        }
        match inc.body {
            Body::Eager(data) => {
                dest[..len].copy_from_slice(&data);
                Some(Ok(st))
            }
            Body::Sync { data, slot, seq } => {
                if !self.ack(inc.src, slot, seq, DONE) {
                    // Withdrawn by its sender (whose ssend failed): gone.
                    return None;
                }
                dest[..len].copy_from_slice(&data);
                Some(Ok(st))
            }
            Body::Rts { slot, seq, rts, .. } => {
                match self.take_rts(inc.src, slot, seq, &rts, &mut dest[..len]) {
                    Err(e) => Some(Err(e)),
                    Ok(Taken::Copied) => Some(Ok(st)),
                    Ok(Taken::Withdrawn) => None,
                    Ok(Taken::Died(e)) => Some(Err(e)),
                    Ok(Taken::Pulling) => {
                        self.start_pull(inc.src, slot, seq, st, PullDest::Raw(dest.as_mut_ptr()));
                        let r = self.wait_pull(inc.src, slot, st);
                        Some(r)
                    }
                }
            }
        }
    }

    /// Waits until the pull into a caller's buffer is complete.
    fn wait_pull(&mut self, src: usize, slot: u32, st: Status) -> Result<Status> {
        let w = WaitDesc {
            call: Call::Recv,
            peer: src as i32,
            tag: st.tag,
        };
        let r = self.block(w, |e| {
            Ok((!e.pulls.contains_key(&(src, slot))).then_some(()))
        });
        // Never leave a pointer into the caller's buffer behind.
        self.pulls.remove(&(src, slot));
        r.map(|()| st)
    }

    /// A message refused for truncation: its sender is released all the same.
    fn refuse(&mut self, inc: &Incoming) {
        match inc.body {
            Body::Sync { slot, seq, .. } | Body::Rts { slot, seq, .. } => {
                let s = self.job.slot(inc.src, slot as usize);
                if s.state
                    .compare_exchange(
                        state_word(seq, OFFERED),
                        state_word(seq, DONE),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
                {
                    self.job.rank(inc.src).bell.notify_all();
                }
            }
            Body::Eager(_) => {}
        }
    }

    /// Moves the sender's slot from OFFERED to `to` and wakes it. Returns
    /// whether the slot was still offered.
    fn ack(&self, src: usize, slot: u32, seq: u32, to: u64) -> bool {
        let s = self.job.slot(src, slot as usize);
        let ok = s
            .state
            .compare_exchange(
                state_word(seq, OFFERED),
                state_word(seq, to),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if ok {
            self.job.rank(src).bell.notify_all();
        }
        ok
    }

    /// Takes a rendezvous message: one copy out of the sender, or a pull.
    fn take_rts(
        &mut self,
        src: usize,
        slot: u32,
        seq: u32,
        rts: &Rts,
        dest: &mut [u8],
    ) -> Result<Taken> {
        let s = self.job.slot(src, slot as usize);
        if self.single_copy {
            if s.state
                .compare_exchange(
                    state_word(seq, OFFERED),
                    state_word(seq, COPYING),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
            {
                return Ok(Taken::Withdrawn);
            }
            // The slot's own record of the message must agree with the frame.
            let (addr, len) = (
                s.addr.load(Ordering::Relaxed),
                s.len.load(Ordering::Relaxed),
            );
            if addr != rts.addr || len != dest.len() as u64 {
                s.state.store(state_word(seq, DONE), Ordering::Release);
                self.job.rank(src).bell.notify_all();
                return Err(Error::Corrupt {
                    rank: src as i32,
                    what: "an RTS that disagrees with its slot".into(),
                });
            }
            let copied = if self.copies_ok && dest.len() >= SPLIT_MIN {
                self.split_copy(src, s, seq, rts, dest)
            } else {
                copy_from(rts.pid, rts, dest)
            };
            match copied {
                Ok(()) => {
                    self.copies_ok = true;
                    s.state.store(state_word(seq, DONE), Ordering::Release);
                    self.job.rank(src).bell.notify_all();
                    return Ok(Taken::Copied);
                }
                Err(CopyFailed::Gone) => {
                    s.state.store(state_word(seq, DONE), Ordering::Release);
                    self.job.rank(src).bell.notify_all();
                    let how = self.job.how_died(src);
                    return Ok(Taken::Died(Error::RankDied {
                        rank: src as i32,
                        how,
                    }));
                }
                Err(CopyFailed::Refused) => {
                    // Not allowed here: pull through the ring from now on.
                    self.single_copy = false;
                    s.state.store(state_word(seq, PULL), Ordering::Release);
                    self.job.rank(src).bell.notify_all();
                }
            }
        } else if !self.ack(src, slot, seq, PULL) {
            return Ok(Taken::Withdrawn);
        }
        if dest.is_empty() {
            return Ok(Taken::Copied);
        }
        Ok(Taken::Pulling)
    }

    /// A copy in two parts at once: this rank reads the first part out of
    /// the sender while the sender (if it is in a call to see it) writes
    /// the rest into `dest`; a sender that does not claim its part soon is
    /// not waited for, the receiver takes it too. On return nobody writes
    /// into `dest` any more. The slot is COPYING on entry.
    ///
    /// The kernel writes the sender's part into `dest[at..]` while this
    /// function holds `dest`, as it writes a read's bytes: this side does
    /// not touch that part until the sender's SENDER_DONE (acquire) says
    /// the write is over, or it took the part back before any write began.
    fn split_copy(
        &self,
        src: usize,
        s: &crate::job::SendSlot,
        seq: u32,
        rts: &Rts,
        dest: &mut [u8],
    ) -> std::result::Result<(), CopyFailed> {
        let at = (dest.len() / 2).next_multiple_of(4096).min(dest.len());
        s.dest.store(dest.as_mut_ptr() as u64, Ordering::Relaxed);
        s.dest_pid
            .store(u64::from(std::process::id()), Ordering::Relaxed);
        s.dest_nonce_addr
            .store(&NONCE as *const _ as u64, Ordering::Relaxed);
        s.dest_nonce.store(nonce(), Ordering::Relaxed);
        s.split_at.store(at as u64, Ordering::Relaxed);
        s.state.store(state_word(seq, SPLIT), Ordering::Release);
        self.job.rank(src).bell.notify_all();
        let mine = copy_from(rts.pid, rts, &mut dest[..at]);
        // The rest: written by the sender, or taken here if it has not
        // claimed it by now, or once its claim failed.
        let started = Instant::now();
        let mut rest = Ok(());
        loop {
            let w = s.state.load(Ordering::Acquire);
            match w & 0xff {
                SENDER_DONE => break,
                SPLIT if mine.is_err() || started.elapsed() >= STEAL_AFTER => {
                    if s.state
                        .compare_exchange(
                            w,
                            state_word(seq, RECEIVER_ALL),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                    {
                        if mine.is_ok() {
                            let tail = Rts {
                                addr: rts.addr + at as u64,
                                ..*rts
                            };
                            rest = copy_from(rts.pid, &tail, &mut dest[at..]);
                        }
                        break;
                    }
                }
                // The sender writes into `dest`: wait while it lives.
                SENDER_COPYING if self.job.ended(src).is_some() => break,
                _ => std::thread::yield_now(),
            }
        }
        mine.and(rest)
    }

    fn data_in(&mut self, src: usize, env: Envelope, body: &[u8]) -> Result<()> {
        let key = (src, env.slot);
        let Some(pull) = self.pulls.get_mut(&key) else {
            // A piece of a pull its receiver gave up on: dropped.
            return Ok(());
        };
        if pull.seq != env.seq || env.word != pull.got as u64 || pull.got + body.len() > pull.len {
            return Err(Error::Corrupt {
                rank: src as i32,
                what: "a piece out of order or beyond its message".into(),
            });
        }
        match &mut pull.dest {
            PullDest::Raw(p) => {
                // SAFETY: the blocking receive that registered this pull
                // owns a buffer of `len` bytes at `p` and waits in
                // `wait_pull` until the pull is gone; got + body <= len.
                unsafe {
                    std::ptr::copy_nonoverlapping(body.as_ptr(), p.add(pull.got), body.len())
                };
            }
            PullDest::Owned { buf, .. } => {
                buf[pull.got..pull.got + body.len()].copy_from_slice(body)
            }
        }
        pull.got += body.len();
        if pull.got == pull.len {
            let pull = self.pulls.remove(&key).expect("present");
            if let PullDest::Owned { id, buf } = pull.dest {
                self.complete(id, Ok((pull.status, buf)));
            }
        }
        Ok(())
    }

    /// The first unexpected message matching, removed.
    fn take_unexpected(&mut self, src: i32, tag: i32, comm: u32) -> Option<Incoming> {
        let i = self
            .unexpected
            .iter()
            .position(|m| matches(src, tag, comm, m.src, m.tag, m.comm))?;
        self.unexpected.remove(i)
    }

    // ----- the calls -----

    /// A blocking send.
    pub(crate) fn send(
        &mut self,
        data: &[u8],
        dest: usize,
        comm: u32,
        tag: i32,
        sync: bool,
    ) -> Result<()> {
        // SAFETY: `data` is borrowed for this whole call, which waits until
        // the send completes or withdraws it.
        let id =
            unsafe { self.start_send(data.as_ptr(), data.len(), None, (dest, comm, tag), sync) }?;
        if let Some(c) = self.done.remove(&id) {
            return c.map(|_| ());
        }
        let w = WaitDesc {
            call: if sync { Call::Ssend } else { Call::Send },
            peer: dest as i32,
            tag,
        };
        match self.block(w, |e| Ok(e.done.remove(&id))) {
            Ok(c) => c.map(|_| ()),
            Err(e) => {
                self.withdraw(id);
                Err(e)
            }
        }
    }

    /// A blocking receive into `buf`.
    pub(crate) fn recv_into(
        &mut self,
        buf: &mut [u8],
        src: i32,
        comm: u32,
        tag: i32,
    ) -> Result<Status> {
        while let Some(inc) = self.take_unexpected(src, tag, comm) {
            if let Some(r) = self.deliver_into(inc, buf) {
                return r;
            }
        }
        self.current = Some(Current {
            src,
            tag,
            comm,
            ptr: buf.as_mut_ptr(),
            cap: buf.len(),
            busy: false,
            result: None,
        });
        let w = WaitDesc {
            call: Call::Recv,
            peer: src,
            tag,
        };
        let r = self.block(w, |e| Ok(e.current.as_mut().and_then(|c| c.result.take())));
        self.current = None;
        r?
    }

    /// A blocking receive of a message of any length.
    pub(crate) fn recv_vec(&mut self, src: i32, comm: u32, tag: i32) -> Result<(Vec<u8>, Status)> {
        // A receive of unknown length: it waits as a receive does.
        let st = self.probe_as(src, comm, tag, Call::Recv)?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(st.bytes())
            .map_err(|_| Error::OutOfMemory { len: st.bytes() })?;
        buf.resize(st.bytes(), 0);
        let got = self.recv_into(&mut buf, st.source, comm, st.tag)?;
        buf.truncate(got.bytes());
        Ok((buf, got))
    }

    /// Waits for a message matching, and says what it is without taking it.
    pub(crate) fn probe(&mut self, src: i32, comm: u32, tag: i32) -> Result<Status> {
        self.probe_as(src, comm, tag, Call::Probe)
    }

    fn probe_as(&mut self, src: i32, comm: u32, tag: i32, call: Call) -> Result<Status> {
        let w = WaitDesc {
            call,
            peer: src,
            tag,
        };
        self.block(w, |e| Ok(e.peek(src, comm, tag)))
    }

    pub(crate) fn iprobe(&mut self, src: i32, comm: u32, tag: i32) -> Result<Option<Status>> {
        let before = self.lives(&WaitDesc {
            call: Call::Probe,
            peer: src,
            tag,
        });
        self.progress()?;
        match self.peek(src, comm, tag) {
            Some(st) => Ok(Some(st)),
            // Nothing can come from a rank that died: a polling loop ends.
            // (From one that finished, "nothing" is simply the answer.)
            None if matches!(before, PeerLife::Died(_)) => self.judge_read(before).map(|()| None),
            None => self.check_abort().map(|()| None),
        }
    }

    fn peek(&self, src: i32, comm: u32, tag: i32) -> Option<Status> {
        self.unexpected
            .iter()
            .find(|m| {
                matches(src, tag, comm, m.src, m.tag, m.comm)
                    && self.still_offered(m).unwrap_or(false)
            })
            .map(Incoming::status)
    }

    pub(crate) fn isend(
        &mut self,
        data: Vec<u8>,
        dest: usize,
        comm: u32,
        tag: i32,
        sync: bool,
    ) -> Result<u64> {
        let (ptr, len) = (data.as_ptr(), data.len());
        // SAFETY: `data` moves into the send's record (a Vec's heap buffer
        // does not move with it) and lives until the send completes.
        unsafe { self.start_send(ptr, len, Some(data), (dest, comm, tag), sync) }
    }

    pub(crate) fn irecv(
        &mut self,
        src: i32,
        comm: u32,
        tag: i32,
        max: Option<usize>,
    ) -> Result<u64> {
        let id = self.new_id();
        let p = Posted {
            id,
            src,
            tag,
            comm,
            max,
        };
        match self.take_unexpected(src, tag, comm) {
            Some(inc) => self.deliver_owned(p, inc)?,
            None => self.posted.push(p),
        }
        Ok(id)
    }

    /// What a request waits in, for reports.
    fn request_desc(&self, id: u64) -> WaitDesc {
        if let Some(op) = self.sends.get(&id) {
            return WaitDesc {
                call: Call::WaitSend,
                peer: op.dest as i32,
                tag: op.tag,
            };
        }
        if let Some(p) = self.posted.iter().find(|p| p.id == id) {
            return WaitDesc {
                call: Call::WaitRecv,
                peer: p.src,
                tag: p.tag,
            };
        }
        if let Some(((src, _), p)) = self
            .pulls
            .iter()
            .find(|(_, p)| matches!(p.dest, PullDest::Owned { id: i, .. } if i == id))
        {
            return WaitDesc {
                call: Call::WaitRecv,
                peer: *src as i32,
                tag: p.status.tag,
            };
        }
        // An eager send waiting for room in its ring.
        let dest = self
            .outq
            .iter()
            .position(|q| q.iter().any(|o| o.completes == Some(id)))
            .map_or(ANY_SOURCE, |d| d as i32);
        WaitDesc {
            call: Call::WaitSend,
            peer: dest,
            tag: ANY_TAG,
        }
    }

    /// Waits for the first of `ids` to complete; returns its index.
    pub(crate) fn wait_any(&mut self, ids: &[u64]) -> Result<(usize, Completion)> {
        if ids.is_empty() {
            return Err(Error::Job("wait_any on no active request".into()));
        }
        loop {
            if let Some(i) = ids.iter().position(|id| self.done.contains_key(id)) {
                let c = self.done.remove(&ids[i]).expect("present");
                return Ok((i, c));
            }
            let w = ids
                .iter()
                .map(|&id| self.request_desc(id))
                .next()
                .expect("non-empty");
            let r = self.block(w, |e| {
                Ok(ids.iter().any(|id| e.done.contains_key(id)).then_some(()))
            });
            if let Err(e) = r {
                for &id in ids {
                    self.fail_request(id);
                }
                return Err(e);
            }
        }
    }

    /// A request whose wait failed: a send is withdrawn, a receive stays
    /// posted (the caller may wait again).
    fn fail_request(&mut self, id: u64) {
        if self.sends.contains_key(&id) {
            self.withdraw(id);
        }
    }

    /// Whether `id` completed (progressing once first).
    pub(crate) fn test(&mut self, id: u64) -> Result<bool> {
        if !self.done.contains_key(&id) {
            // A loop of tests waits as a wait does: a rank it waits on that
            // ended fails the request instead of leaving it pending forever.
            let w = self.request_desc(id);
            let before = self.lives(&w);
            self.progress()?;
            if !self.done.contains_key(&id)
                && let Err(e) = self.judge_read(before)
            {
                self.fail_request(id);
                if let Some(i) = self.posted.iter().position(|p| p.id == id) {
                    self.posted.remove(i);
                }
                self.done.insert(id, Err(e));
            }
        }
        Ok(self.done.contains_key(&id))
    }

    pub(crate) fn take(&mut self, id: u64) -> Option<Completion> {
        self.done.remove(&id)
    }

    /// Cancels a pending receive; `true` if it was still pending.
    pub(crate) fn cancel(&mut self, id: u64) -> bool {
        if let Some(i) = self.posted.iter().position(|p| p.id == id) {
            self.posted.remove(i);
            self.done.insert(id, Err(Error::Cancelled));
            return true;
        }
        false
    }

    /// A request dropped before completion: a receive is cancelled, a send
    /// goes on and its completion is not kept.
    pub(crate) fn forget(&mut self, id: u64) {
        if self.done.remove(&id).is_some() {
            return;
        }
        if let Some(i) = self.posted.iter().position(|p| p.id == id) {
            self.posted.remove(i);
            return;
        }
        if let Some(key) = self
            .pulls
            .iter()
            .find(|(_, p)| matches!(p.dest, PullDest::Owned { id: i, .. } if i == id))
            .map(|(k, _)| *k)
        {
            // Pieces still coming are dropped on arrival.
            self.pulls.remove(&key);
            return;
        }
        self.detached.insert(id);
    }

    /// Completes every send in flight (also those whose requests were
    /// dropped), then marks this rank finished: it sends nothing more.
    pub(crate) fn finalize(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        let r = loop {
            let pending = self
                .sends
                .values()
                .next()
                .map(|op| (op.dest, op.tag))
                .or_else(|| {
                    self.outq
                        .iter()
                        .position(|q| !q.is_empty())
                        .map(|d| (d, ANY_TAG))
                });
            let Some((dest, tag)) = pending else {
                break Ok(());
            };
            let w = WaitDesc {
                call: Call::Finalize,
                peer: dest as i32,
                tag,
            };
            if let Err(e) = self.block(w, |e| {
                Ok((e.sends.is_empty() && e.outq.iter().all(VecDeque::is_empty)).then_some(()))
            }) {
                let ids: Vec<u64> = self.sends.keys().copied().collect();
                for id in ids {
                    self.withdraw(id);
                }
                break Err(e);
            }
        };
        self.finished = true;
        self.job
            .rank(self.rank)
            .life
            .fetch_or(FINISHED, Ordering::AcqRel);
        self.job.ring_all();
        r
    }

    // ----- waiting -----

    fn check_abort(&self) -> Result<()> {
        match self.job.aborted() {
            Some((rank, code)) => Err(Error::Aborted {
                rank: rank as i32,
                code,
            }),
            None => Ok(()),
        }
    }

    /// The life words of the ranks `w` waits on, read before a progress
    /// pass: what they say holds for everything that pass found.
    fn lives(&self, w: &WaitDesc) -> PeerLife {
        let life = |r: usize| self.job.rank(r).life.load(Ordering::Acquire);
        if let Some(group) = &self.watch
            && let Some(&r) = group
                .iter()
                .find(|&&r| r != self.rank && crate::job::died(life(r)))
        {
            return PeerLife::Died(r);
        }
        if w.peer >= 0 {
            let p = w.peer as usize;
            if p == self.rank || p >= self.size {
                return PeerLife::Fine;
            }
            let l = life(p);
            if crate::job::died(l) {
                PeerLife::Died(p)
            } else if l & FINISHED != 0 {
                PeerLife::Finished(p)
            } else {
                PeerLife::Fine
            }
        } else {
            let mut all_finished = self.size > 1;
            for r in (0..self.size).filter(|&r| r != self.rank) {
                let l = life(r);
                if crate::job::died(l) {
                    return PeerLife::Died(r);
                }
                all_finished &= l & FINISHED != 0;
            }
            if all_finished && self.size > 1 {
                PeerLife::Finished(if self.rank == 0 { 1 } else { 0 })
            } else {
                PeerLife::Fine
            }
        }
    }

    /// [`judge`](Engine::judge), once the frames a dead rank left in its
    /// ring (a message streamed through it, the last frames of a pass that
    /// did not read them all) are read: they came before its death.
    fn judge_read(&self, before: PeerLife) -> Result<()> {
        match before {
            PeerLife::Died(r) if self.job.ring(r, self.rank).recv_ready(&Ranks) => Ok(()),
            _ => self.judge(before),
        }
    }

    fn judge(&self, before: PeerLife) -> Result<()> {
        self.check_abort()?;
        match before {
            PeerLife::Fine => Ok(()),
            PeerLife::Died(r) => Err(Error::RankDied {
                rank: r as i32,
                how: self.job.how_died(r),
            }),
            // A finished rank sends, receives and matches nothing more: a
            // call still waiting on it never completes.
            PeerLife::Finished(r) => Err(Error::RankFinished { rank: r as i32 }),
        }
    }

    /// Runs `step` after each progress pass until it returns a value:
    /// polls a while, then sleeps on this rank's doorbell (waking for every
    /// frame, slot change, death and verdict), checking on the ranks it
    /// waits for and running the deadlock detector every tick.
    pub(crate) fn block<T>(
        &mut self,
        w: WaitDesc,
        mut step: impl FnMut(&mut Engine) -> Result<Option<T>>,
    ) -> Result<T> {
        let mut idle: Option<Instant> = None;
        let mut looks = 0u32;
        loop {
            let before = self.lives(&w);
            self.polling = looks > 0;
            let moved = self.progress();
            self.polling = false;
            let moved = moved?;
            if let Some(t) = step(self)? {
                return Ok(t);
            }
            self.judge_read(before)?;
            if moved {
                idle = None;
                looks = 0;
                continue;
            }
            // The clock is read once every few looks: a look is a few
            // nanoseconds, a clock read tens.
            looks += 1;
            if !looks.is_multiple_of(16) {
                std::hint::spin_loop();
                continue;
            }
            let since = *idle.get_or_insert_with(Instant::now);
            let spent = since.elapsed();
            if self.crowded {
                if spent < SPIN {
                    if spent > SPIN_HOT {
                        std::thread::yield_now();
                    }
                    continue;
                }
            } else if spent < SPIN_ALONE {
                continue;
            }
            self.sleep(&w)?;
            idle = None;
            looks = 0;
            if self.give_up.is_some_and(|t| Instant::now() >= t) {
                return Err(Error::Job("the measurement's peer did not answer".into()));
            }
        }
    }

    /// Whether something may have arrived for this rank.
    fn ready(&self) -> bool {
        let me = self.job.rank(self.rank);
        (0..self.size)
            .filter(|&s| s != self.rank)
            .any(|s| self.job.ring(s, self.rank).recv_ready(&Ranks))
            || self.sends.values().any(|op| {
                self.job
                    .slot(self.rank, op.slot)
                    .state
                    .load(Ordering::Acquire)
                    != state_word(op.seq, OFFERED)
            })
            || self.outq.iter().enumerate().any(|(d, q)| {
                q.front()
                    .is_some_and(|o| self.job.ring(self.rank, d).has_room_for(o.frame.len()))
            })
            || self.coll_want.is_some_and(|(r, parity, op)| {
                self.job.coll_buf(r, parity).0.op.load(Ordering::Acquire) == op
            })
            || self.job.aborted().is_some()
            || me.wait.load(Ordering::Acquire) == wait_word(self.epoch, CONDEMNED)
    }

    /// One sleep: publishes what this rank waits in, sleeps until woken or
    /// a tick passes, then (after a quiet tick) checks the ranks it waits
    /// for and looks for a deadlock.
    fn sleep(&mut self, w: &WaitDesc) -> Result<()> {
        let me = self.job.rank(self.rank);
        me.wait_call
            .store(w.call as u64 | self.in_coll << 8, Ordering::Relaxed);
        me.wait_peer.store(w.peer as i64 as u64, Ordering::Relaxed);
        me.wait_tag.store(w.tag as i64 as u64, Ordering::Relaxed);
        self.epoch += 1;
        let blocked = wait_word(self.epoch, BLOCKED);
        me.wait.store(blocked, Ordering::SeqCst);
        let deadline = Instant::now() + TICK;
        let woke = if self.bells_direct {
            let mut bells: Vec<&procs_sync::raw::notify::Doorbell> = vec![&me.bell];
            for other in (0..self.size).filter(|&o| o != self.rank) {
                bells.push(self.job.ring(other, self.rank).data_bell());
                if !self.outq[other].is_empty() {
                    bells.push(self.job.ring(self.rank, other).space_bell());
                }
            }
            procs_sync::raw::notify::Doorbell::sleep_any(&bells, || self.ready(), Some(deadline))
        } else {
            me.bell.sleep(|| self.ready(), Some(deadline))
        };
        if !woke && Instant::now() >= deadline {
            self.look_at(w);
            if self.job.detects() {
                crate::detect::look(&self.job);
            }
        }
        // Leaving the blocked state races with the detector's hold: one
        // compare-and-swap decides.
        let running = wait_word(self.epoch + 1, RUNNING_STATE);
        loop {
            match me
                .wait
                .compare_exchange(blocked, running, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(w) if w == wait_word(self.epoch, CONDEMNED) => {
                    me.wait.store(running, Ordering::SeqCst);
                    self.epoch += 1;
                    return Err(Error::Deadlock(self.job.read_report(self.rank)));
                }
                Err(w) if w == wait_word(self.epoch, HELD) => {
                    // A detector is deciding: its lock is free once it has.
                    // Taken here, a hold still there is a dead detector's.
                    let guard = self.job.detector().lock_guard(Some(Instant::now() + TICK));
                    if guard.is_some() {
                        let _ = me.wait.compare_exchange(
                            wait_word(self.epoch, HELD),
                            blocked,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        );
                    }
                }
                Err(_) => {
                    // Only this rank and a detector write the word.
                    me.wait.store(running, Ordering::SeqCst);
                    break;
                }
            }
        }
        self.epoch += 1;
        Ok(())
    }

    /// Checks that the ranks `w` waits on still live, for a rank whose end
    /// no launcher recorded (pid and start time: a reused pid is not it).
    fn look_at(&self, w: &WaitDesc) {
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } == self.parent {
            // The launcher lives: it records every end, with how.
            return;
        }
        let peers: Vec<usize> = if let Some(group) = &self.watch {
            group.to_vec()
        } else if w.peer >= 0 {
            vec![w.peer as usize]
        } else {
            (0..self.size).filter(|&r| r != self.rank).collect()
        };
        for p in peers
            .into_iter()
            .filter(|&p| p < self.size && p != self.rank)
        {
            let b = self.job.rank(p);
            let life = b.life.load(Ordering::Acquire);
            let pid = b.pid.load(Ordering::Relaxed) as i32;
            if life & RUNNING != 0
                && life & ENDED == 0
                && !procs_sync::raw::liveness::is_alive(pid, b.start.load(Ordering::Relaxed))
            {
                self.job.record_end(p, RankEnd::Vanished.code());
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum PeerLife {
    Fine,
    Died(usize),
    Finished(usize),
}

enum Taken {
    Copied,
    Pulling,
    Withdrawn,
    Died(Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames of random bytes (and random envelopes with random bodies)
    /// from another rank are refused or dropped, never a panic, and never
    /// an allocation of what they claim.
    #[test]
    fn garbage_frames_never_panic() {
        let job = Arc::new(Job::create(2, false).unwrap());
        let mut e = Engine::new(job, 0, false);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let len = (next() % 200) as usize;
            let mut frame: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 && frame.len() >= ENV {
                // A well-formed envelope with wild fields.
                let kind = [EAGER, SYNC, RTS, DATA][(next() % 4) as usize];
                let env = Envelope {
                    kind,
                    comm: (next() % 2) as u32,
                    tag: (next() % 4) as i32,
                    slot: (next() % 80) as u32,
                    seq: next() as u32,
                    word: if next() % 2 == 0 {
                        next()
                    } else {
                        next() % 100
                    },
                };
                let mut head = Vec::new();
                env.write(&mut head);
                frame[..head.len()].copy_from_slice(&head);
            }
            let _ = e.frame_in(1, &frame);
        }
        // What was taken in is well-formed: eager and sync bodies only (a
        // slot nobody offered drops its frame).
        assert!(
            e.unexpected
                .iter()
                .all(|m| matches!(m.body, Body::Eager(_)))
        );
    }
}
