//! Large messages in one copy: the two processes copy the message straight
//! from the writer's memory into the reader's (`process_vm_readv` and
//! `process_vm_writev`), each a part of it at once, instead of through the
//! ring (a copy in, a copy out).
//!
//! ```text
//! the writer                          the reader
//! offer: state OFFERED, then an       finds the offer frame in the ring;
//!   offer frame in the ring (seq,     checks the writer (its token and the
//!   pid, source, length, token)       message's last byte, in one read);
//!                                     posts its destination and its own
//!                                     token, OFFERED -> TAKEN
//! checks the reader (its token);      copies chunks: each read takes the
//! copies chunks into the reader       writer's token in the same call
//! both claim chunks from one counter, count what they copied
//!                                     once all is copied: consumes the
//! sees DONE, returns                  offer frame, TAKEN -> DONE, returns
//! ```
//!
//! The offer's control block (one per direction of a pipe) is in the
//! pipe's shared memory; the writer blocks until the reader has the whole
//! message, since the reader reads the writer's buffer. A token is a number
//! that a process writes at an address of its own for the time of one
//! offer: reading it back in the same call as the data proves the pid still
//! names that process (not a process that got the pid after it died).
//!
//! Either side may be unable to copy (the kernel refuses: EPERM under a
//! ptrace scope or seccomp, ENOSYS); the other then copies everything, and
//! if neither can the offer is *refused* and the writer streams the message
//! through the ring as usual. A message is offered only when the ring has
//! no room for it (the reader has to take part anyway), and a writer whose
//! reader has not taken the offer *withdraws* it (and streams) once the
//! ring has room for the whole message: a message that the ring would have
//! taken without its reader's help never waits for the reader. A side that dies: the other side's
//! copies fail (the process is gone) or its wait sees it dead, and it gets
//! `Disconnected`; the reader never returns a message it has not wholly.
//!
//! Whether single copy is faster than the ring depends on the machine (the
//! kernel pins the pages it copies; on some virtual machines that costs
//! more than a second copy). So it is measured, once per process, on first
//! use: two threads copying a mebibyte, each half of it, with
//! `process_vm_readv` on this process, against the same mebibyte sent by
//! one thread through a ring and received by the other. Single copy is used
//! when it measured faster, for messages of at least [`MIN_LEN`] bytes.

use std::io;
use std::sync::atomic::AtomicU8;
use std::time::{Duration, Instant};

use crate::doorbell::{Doorbell, sleep_until};
use crate::error::{Error, Result};
use crate::frame::Header;
use crate::ring::{Bytes, CHECK_EVERY, OFFER_MAX, Peer, Ring};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Messages smaller than this go through the ring: below it a copy costs
/// less than the system calls and the hand-shake.
pub const MIN_LEN: usize = 64 * 1024;

/// How a pipe moves messages of 64 KiB and more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LargeMessages {
    /// In one copy where this process measured it faster than the ring
    /// (once, on first use), else through the ring.
    #[default]
    Measured,
    /// In one copy wherever the kernel allows it.
    SingleCopy,
    /// Always through the ring.
    Ring,
}

const IDLE: u32 = 0;
const OFFERED: u32 = 1;
const TAKEN: u32 = 2;
const DONE: u32 = 3;
const WITHDRAWN: u32 = 4;
const REFUSED: u32 = 5;
const FAILED: u32 = 6;
/// What [`Offer::state_of`] says of an offer that later ones replaced.
const STALE: u32 = 7;

/// Offers are numbered in the high 56 bits of the state word.
const SEQ_MASK: u64 = u64::MAX >> 8;

/// The control block of one direction's offers, in shared memory.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct Offer {
    /// The current offer's number (high 56 bits) and its state (low 8):
    /// one word, so that a reader's move from OFFERED to TAKEN cannot take
    /// a later offer for the one it read.
    state: AtomicU64,
    /// Whether the reader can copy (1) or leaves it all to the writer (0).
    reader_reads: AtomicU32,
    reader_pid: AtomicU32,
    reader_dst: AtomicU64,
    reader_token_at: AtomicU64,
    reader_token: AtomicU64,
    /// The next chunk to claim.
    next: AtomicU64,
    /// Bytes copied, by either side.
    copied: AtomicU64,
    bell: Doorbell,
}

impl Offer {
    /// The number of the latest offer.
    fn seq(&self) -> u64 {
        self.state.load(Ordering::Acquire) >> 8
    }

    /// The state of offer `seq`, or [`STALE`] if a later one replaced it.
    fn state_of(&self, seq: u64) -> u32 {
        let word = self.state.load(Ordering::Acquire);
        if word >> 8 == seq & SEQ_MASK {
            (word & 0xff) as u32
        } else {
            STALE
        }
    }

    /// Offer `seq` is now in `state` (release: what was written before is
    /// seen by whoever sees it).
    fn set(&self, seq: u64, state: u32) {
        self.state
            .store((seq & SEQ_MASK) << 8 | u64::from(state), Ordering::Release);
    }

    /// Moves offer `seq` from `from` to `to`, if it is still there.
    fn step(&self, seq: u64, from: u32, to: u32) -> bool {
        let word = |st: u32| (seq & SEQ_MASK) << 8 | u64::from(st);
        self.state
            .compare_exchange(word(from), word(to), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// What an offer frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Description {
    seq: u64,
    pid: u32,
    len: u64,
    src: u64,
    token_at: u64,
    token: u64,
}

const DESCRIPTION_LEN: usize = 44;

impl Description {
    fn encode(&self) -> [u8; DESCRIPTION_LEN] {
        let mut b = [0u8; DESCRIPTION_LEN];
        b[0..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..12].copy_from_slice(&self.pid.to_le_bytes());
        b[12..20].copy_from_slice(&self.len.to_le_bytes());
        b[20..28].copy_from_slice(&self.src.to_le_bytes());
        b[28..36].copy_from_slice(&self.token_at.to_le_bytes());
        b[36..44].copy_from_slice(&self.token.to_le_bytes());
        b
    }

    /// Decodes the bytes of an offer frame (another process wrote them).
    fn decode(b: &[u8]) -> Result<Description> {
        if b.len() != DESCRIPTION_LEN {
            return Err(Error::Corrupt("an offer's description has the wrong size"));
        }
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let d = Description {
            seq: u64_at(0),
            pid: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            len: u64_at(12),
            src: u64_at(20),
            token_at: u64_at(28),
            token: u64_at(36),
        };
        if d.len < MIN_LEN as u64 || d.len > u64::from(Header::MAX_LEN) || d.pid == 0 {
            return Err(Error::Corrupt(
                "an offer describes no message a writer sends",
            ));
        }
        Ok(d)
    }
}

/// The chunk both sides claim in turn: half the message (each side takes
/// one, or the first there both), in whole pages, from 64 KiB to 4 MiB.
/// Measured on 2 cores with 1 MiB messages: halves 28-33 GB/s, quarters
/// 24-26, eighths 11 (each chunk is a system call, and the two sides'
/// claims share a cache line).
fn chunk_len(len: u64) -> u64 {
    (len / 2)
        .next_multiple_of(4096)
        .clamp(64 * 1024, 4 * 1024 * 1024)
}

/// Claims the next chunk: its offset and length.
fn claim(offer: &Offer, len: u64) -> Option<(u64, u64)> {
    let chunk = chunk_len(len);
    let mut i = offer.next.load(Ordering::Relaxed);
    loop {
        let at = i.checked_mul(chunk)?;
        if at >= len {
            return None;
        }
        match offer
            .next
            .compare_exchange_weak(i, i + 1, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return Some((at, chunk.min(len - at))),
            Err(now) => i = now,
        }
    }
}

/// A number written at a stable address of this process for the time of
/// one offer (see the module's doc), and the last process this side found
/// it may copy from or into (its pid, 0: none), so that the kernel's
/// permission is asked once per peer, not per message.
#[derive(Debug, Default)]
pub(crate) struct Token {
    word: Box<std::sync::atomic::AtomicU64>,
    allowed: std::cell::Cell<u32>,
}

impl Token {
    /// A new value, written at the token's address; returns it and the
    /// address.
    fn renew(&self, seq: u64) -> (u64, u64) {
        use std::hash::BuildHasher;
        let value = std::collections::hash_map::RandomState::new().hash_one((
            std::process::id(),
            seq,
            Instant::now(),
        )) | 1;
        self.word.store(value, std::sync::atomic::Ordering::Release);
        (value, std::ptr::from_ref(&*self.word) as u64)
    }
}

// ----- the system calls -----

/// `process_vm_readv` or `process_vm_writev`, as their libc signature.
type VmCall = unsafe extern "C" fn(
    libc::pid_t,
    *const libc::iovec,
    libc::c_ulong,
    *const libc::iovec,
    libc::c_ulong,
    libc::c_ulong,
) -> libc::ssize_t;

/// `process_vm_readv` from `pid` (`local` gets the bytes at `remote`).
fn read_from(pid: u32, local: &[libc::iovec], remote: &[libc::iovec]) -> io::Result<usize> {
    vm_call(libc::process_vm_readv, pid, local, remote)
}

/// `process_vm_writev` into `pid` (the bytes at `local` go to `remote`).
fn write_to(pid: u32, local: &[libc::iovec], remote: &[libc::iovec]) -> io::Result<usize> {
    vm_call(libc::process_vm_writev, pid, local, remote)
}

fn vm_call(
    call: VmCall,
    pid: u32,
    local: &[libc::iovec],
    remote: &[libc::iovec],
) -> io::Result<usize> {
    // SAFETY: every local iovec points into memory of this process that the
    // call may read or write for its length (a caller's buffer, or a token
    // word of its own: see the callers), the remote ones are only addresses
    // in the other process, which the kernel checks, and the counts are the
    // slices' lengths.
    let n = unsafe {
        call(
            pid as libc::pid_t,
            local.as_ptr(),
            local.len() as libc::c_ulong,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn iov(addr: u64, len: u64) -> libc::iovec {
    libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len as usize,
    }
}

/// Whether an error says the kernel does not let this process copy.
fn refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::ENOSYS | libc::EACCES)
    )
}

/// An error of a copy from or to the other side, as what it means here.
fn copy_error(e: &io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ESRCH) => Error::Disconnected,
        _ => Error::Corrupt("a single copy failed: the offer's addresses are not the writer's"),
    }
}

// ----- measuring -----

/// 0: not measured yet, 1: single copy is faster here, 2: the ring is.
static MEASURED: AtomicU8 = AtomicU8::new(0);

/// Whether single copy measured faster than the ring in this process.
pub(crate) fn faster_here() -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    match MEASURED.load(Relaxed) {
        1 => true,
        2 => false,
        _ => {
            // Threads of one process racing here each measure; any answer
            // is a measured one.
            let faster = measure().unwrap_or(false);
            MEASURED.store(if faster { 1 } else { 2 }, Relaxed);
            faster
        }
    }
}

/// Times a mebibyte moved between two threads, best of seven (a host that
/// steals the processor for a moment spoils a few rounds, not the minimum): in one copy
/// (each thread half of it through `process_vm_readv` on this process, as
/// the two sides of an offer do) and through a ring of this crate (one
/// thread sends it, the other receives it: the two copies, the pieces and
/// the cache lines that move between the cores, as a pipe's). `None` if the
/// kernel refuses or a thread cannot start.
fn measure() -> Option<bool> {
    const SIZE: usize = 1 << 20;
    const HALF: usize = SIZE / 2;
    const ROUNDS: usize = 8;
    let src = vec![1u8; SIZE];
    let me = std::process::id();
    let barrier = std::sync::Barrier::new(2);
    let ctl = Box::new(crate::ring::RingCtl::new(SIZE as u64));
    let mut ring_data = vec![0u8; SIZE];
    let ring_at = ring_data.as_mut_ptr() as usize;
    let ring = || {
        // SAFETY: `ring_data` is SIZE bytes that outlive both threads (the
        // scope ends first); the ring's protocol keeps its writer and its
        // reader off the same bytes at once.
        let bytes = unsafe { crate::ring::SharedBytes::new(ring_at as *mut u8, SIZE) };
        Ring::new(&ctl, bytes)
    };
    let one_copy = |dst: &mut [u8], part: std::ops::Range<usize>| {
        let local = [iov(
            dst[part.clone()].as_mut_ptr() as u64,
            part.len() as u64,
        )];
        let remote = [iov(src[part.clone()].as_ptr() as u64, part.len() as u64)];
        read_from(me, &local, &remote).is_ok_and(|n| n == part.len())
    };
    // Each thread runs ROUNDS of both ways, meeting the other at the
    // barrier before and after each; the main thread's clock counts.
    let rounds = |dst: &mut [u8], half: std::ops::Range<usize>, sends: bool| {
        let (mut one, mut two, mut ok) = (Duration::MAX, Duration::MAX, true);
        for round in 0..ROUNDS {
            barrier.wait();
            let t = Instant::now();
            ok &= one_copy(dst, half.clone());
            barrier.wait();
            let spent = t.elapsed();
            barrier.wait();
            let t = Instant::now();
            ok &= if sends {
                ring().send(&src, None, &crate::ring::Unwatched).is_ok()
            } else {
                ring()
                    .recv(
                        &mut crate::ring::Sink::Slice(dst),
                        None,
                        &crate::ring::Unwatched,
                    )
                    .is_ok_and(|n| n == SIZE)
            };
            barrier.wait();
            // The first round warms the pages and the caches.
            if round > 0 {
                one = one.min(spent);
                two = two.min(t.elapsed());
            }
        }
        (one, two, ok)
    };
    std::thread::scope(|s| {
        let helper = std::thread::Builder::new()
            .spawn_scoped(s, || rounds(&mut vec![0u8; SIZE], HALF..SIZE, true))
            .ok()?;
        let (one, two, ok) = rounds(&mut vec![0u8; SIZE], 0..HALF, false);
        let (_, _, helper_ok) = helper.join().ok()?;
        (ok && helper_ok).then_some(one < two)
    })
}

// ----- waiting -----

/// Waits on the offer's bell until `ready()`, spinning a little first (a
/// copy's hand-shake is microseconds away), checking every
/// [`CHECK_EVERY`] that the other side lives; `Disconnected` if it does not.
fn wait_for(offer: &Offer, ready: impl Fn() -> bool, peer: &dyn Peer) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_micros(50) {
        for _ in 0..64 {
            if ready() {
                return Ok(());
            }
            std::hint::spin_loop();
        }
        if start.elapsed() > Duration::from_micros(2) {
            std::thread::yield_now();
        }
    }
    sleep_until(
        &offer.bell,
        &ready,
        None,
        Some(|| {
            if peer.alive() || ready() {
                Ok(())
            } else {
                Err(Error::Disconnected)
            }
        }),
    )
}

// ----- the writer's side -----

/// What became of a message offered.
pub(crate) enum Sent {
    /// The reader has it.
    Copied,
    /// Withdrawn (the ring had room for it): send it through the ring.
    Withdrawn,
    /// Neither side may copy: send it, and the next ones, through the ring.
    Refused,
}

/// Offers `bytes` to the reader of `ring` and copies it with the reader:
/// returns once the reader has it whole, or what says it is to go through
/// the ring after all. `deadline` applies until the reader
/// takes the offer.
pub(crate) fn send<B: Bytes>(
    ring: &Ring<'_, B>,
    offer: &Offer,
    token: &Token,
    bytes: &[u8],
    deadline: Option<Instant>,
    peer: &dyn Peer,
) -> Result<Sent> {
    let seq = offer.seq().wrapping_add(1) & SEQ_MASK;
    let (token_value, token_at) = token.renew(seq);
    let len = bytes.len() as u64;
    offer.next.store(0, Ordering::Relaxed);
    offer.copied.store(0, Ordering::Relaxed);
    // Release: the reader that sees the offer frame (published after this)
    // sees the fields above.
    offer.set(seq, OFFERED);
    let description = Description {
        seq,
        pid: std::process::id(),
        len,
        src: bytes.as_ptr() as u64,
        token_at,
        token: token_value,
    }
    .encode();
    if let Err(e) = ring.send_offer(&description, deadline, peer) {
        offer.set(seq, IDLE);
        return Err(e);
    }
    // Until the reader takes it, the offer can be withdrawn: for the
    // deadline, and once the ring could take the message without its
    // reader (then the reader is not waiting for it, and the send should
    // not wait for the reader either).
    let offered = Instant::now();
    let answered = || offer.state_of(seq) != OFFERED;
    let mut next_check = offered + CHECK_EVERY;
    loop {
        match offer.state_of(seq) {
            OFFERED => {}
            REFUSED => {
                offer.set(seq, IDLE);
                return Ok(Sent::Refused);
            }
            // Taken, and maybe copied whole by the reader already.
            TAKEN | DONE | FAILED => break,
            _ => {
                return Err(Error::Corrupt(
                    "a single-copy offer in a state it cannot be in",
                ));
            }
        }
        let now = Instant::now();
        let expired = deadline.is_some_and(|d| now >= d);
        let dead = now >= next_check && !peer.alive();
        let unneeded = now - offered > Duration::from_micros(50) && ring.has_room_for(bytes.len());
        if expired || dead || unneeded {
            if offer.step(seq, OFFERED, WITHDRAWN) {
                offer.bell.ring();
                return if dead {
                    Err(Error::Disconnected)
                } else if expired {
                    Err(Error::Timeout)
                } else {
                    Ok(Sent::Withdrawn)
                };
            }
            continue;
        }
        if now >= next_check {
            next_check = now + CHECK_EVERY;
        }
        if now - offered < Duration::from_micros(50) {
            std::hint::spin_loop();
            continue;
        }
        let until = deadline.map_or(next_check, |d| d.min(next_check));
        // Withdrawing needs no wake-up: it is looked at every time.
        offer
            .bell
            .sleep(answered, Some(until.min(now + Duration::from_millis(1))));
    }
    if offer.state_of(seq) == TAKEN {
        help(offer, seq, token, bytes)?;
    }
    // The reader reads from `bytes` until it is done: wait for that.
    let over = || offer.state_of(seq) != TAKEN;
    wait_for(offer, over, peer)?;
    match offer.state_of(seq) {
        DONE => {
            offer.set(seq, IDLE);
            Ok(Sent::Copied)
        }
        REFUSED => Ok(Sent::Refused),
        FAILED => Err(Error::Corrupt(
            "the reader's single copy failed: the offer's addresses are not the writer's",
        )),
        _ => Err(Error::Disconnected),
    }
}

/// The writer's part of a taken offer: copies chunks into the reader, if
/// it may, or refuses the offer if neither side may.
fn help(offer: &Offer, seq: u64, token: &Token, bytes: &[u8]) -> Result<()> {
    let len = bytes.len() as u64;
    // Taken: the reader's fields are there (acquire by the caller).
    let reader = offer.reader_pid.load(Ordering::Relaxed);
    let dst = offer.reader_dst.load(Ordering::Relaxed);
    let reader_reads = offer.reader_reads.load(Ordering::Relaxed) != 0;
    let writes = can_write_to(
        reader,
        offer.reader_token_at.load(Ordering::Relaxed),
        offer.reader_token.load(Ordering::Relaxed),
        token,
    );
    if !writes && !reader_reads {
        // The reader consumes the offer frame; the message follows it.
        offer.set(seq, REFUSED);
        offer.bell.ring();
        return Ok(());
    }
    if writes {
        while let Some((at, n)) = claim(offer, len) {
            let local = [iov(bytes.as_ptr() as u64 + at, n)];
            let remote = [iov(dst + at, n)];
            match write_to(reader, &local, &remote) {
                Ok(w) if w as u64 == n => {
                    // Release: the reader that counts these bytes sees them.
                    offer.copied.fetch_add(n, Ordering::Release);
                    offer.bell.ring();
                }
                Ok(_) => return fail(offer, seq, Error::Disconnected),
                Err(e) => return fail(offer, seq, copy_error(&e)),
            }
        }
    }
    Ok(())
}

/// Marks the offer failed (the other side stops and reports it) and
/// returns `e`.
fn fail<T>(offer: &Offer, seq: u64, e: Error) -> Result<T> {
    offer.set(seq, FAILED);
    offer.bell.ring();
    Err(e)
}

/// Whether this process may write into `reader`, which must be the process
/// that posted `token` at `token_at`: the token is read back (every time:
/// it proves the pid still names the reader), and the first time for this
/// reader written back unchanged (which the kernel allows only if writes
/// are allowed).
fn can_write_to(reader: u32, token_at: u64, token: u64, mine: &Token) -> bool {
    let mut seen = 0u64;
    let local = [iov(std::ptr::from_mut(&mut seen) as u64, 8)];
    let remote = [iov(token_at, 8)];
    if !read_from(reader, &local, &remote).is_ok_and(|n| n == 8) || seen != token {
        return false;
    }
    if mine.allowed.get() == reader {
        return true;
    }
    let local = [iov(std::ptr::from_ref(&token) as u64, 8)];
    let allowed = write_to(reader, &local, &remote).is_ok_and(|n| n == 8);
    if allowed {
        mine.allowed.set(reader);
    }
    allowed
}

// ----- the reader's side -----

/// Where the reader puts a message taken by single copy.
pub(crate) enum Dest<'a> {
    /// Replaces the vector's contents.
    Vec(&'a mut Vec<u8>),
    /// The slice's first bytes.
    Slice(&'a mut [u8]),
}

/// Takes the offer described by `description` (the payload of the offer
/// frame at the reader's position of `ring`) into `dest`: `Some(len)` once
/// the message is there whole, `None` if it was withdrawn or refused (the
/// offer frame is then consumed, and the message follows in the ring).
/// `BufferTooSmall` leaves the offer where it is.
pub(crate) fn receive<B: Bytes>(
    ring: &Ring<'_, B>,
    offer: &Offer,
    token: &Token,
    description: &[u8; OFFER_MAX],
    description_len: usize,
    dest: Dest<'_>,
    peer: &dyn Peer,
) -> Result<Option<usize>> {
    let d = Description::decode(&description[..description_len])?;
    match offer.state_of(d.seq) {
        OFFERED => {}
        WITHDRAWN => {
            ring.skip_offer(description_len);
            return Ok(None);
        }
        STALE => {
            // An earlier offer, withdrawn: the writer went on (it streamed
            // that message, and may have offered another since).
            let behind = offer.seq().wrapping_sub(d.seq) & SEQ_MASK;
            if behind > 0 && behind < 1 << 32 {
                ring.skip_offer(description_len);
                return Ok(None);
            }
            return Err(Error::Corrupt("an offer frame that no offer was made for"));
        }
        _ => return Err(Error::Corrupt("an offer frame whose offer is not open")),
    }
    let len = d.len as usize;
    if let Dest::Slice(s) = &dest
        && s.len() < len
    {
        return Err(Error::BufferTooSmall {
            needed: len,
            available: s.len(),
        });
    }
    // The writer's token and the message's last byte in one read: the pid
    // is still the writer, and it has every byte it claims, before anything
    // is allocated for them; and whether the kernel lets this process read
    // the writer. Into a slice of the caller's, from a writer already
    // read, each chunk's read checks the token (and the bytes) itself.
    let known = matches!(dest, Dest::Slice(_)) && token.allowed.get() == d.pid;
    let mut seen = 0u64;
    let mut last = 0u8;
    let local = [
        iov(std::ptr::from_mut(&mut seen) as u64, 8),
        iov(std::ptr::from_mut(&mut last) as u64, 1),
    ];
    let remote = [iov(d.token_at, 8), iov(d.src + d.len - 1, 1)];
    let checked = if known {
        Ok(9)
    } else {
        read_from(d.pid, &local, &remote)
    };
    let reads = match checked {
        Ok(9) if known || seen == d.token => {
            token.allowed.set(d.pid);
            true
        }
        // Another token: the writer withdrew this offer (and made another),
        // or the pid is no longer the writer's (it is gone).
        Ok(n) if n >= 8 && seen != d.token => {
            if offer.state_of(d.seq) != OFFERED {
                ring.skip_offer(description_len);
                return Ok(None);
            }
            return Err(Error::Disconnected);
        }
        Ok(_) => {
            return Err(Error::Corrupt(
                "an offer claims more bytes than its writer holds",
            ));
        }
        Err(e) if refused(&e) => false,
        Err(e) => return Err(copy_error(&e)),
    };
    let (dst, vec) = match dest {
        Dest::Slice(s) => (s.as_mut_ptr() as u64, None),
        Dest::Vec(v) => {
            v.clear();
            v.reserve_exact(len);
            (v.as_mut_ptr() as u64, Some(v))
        }
    };
    let (my_token, my_token_at) = token.renew(d.seq);
    offer
        .reader_pid
        .store(std::process::id(), Ordering::Relaxed);
    offer.reader_dst.store(dst, Ordering::Relaxed);
    offer.reader_token_at.store(my_token_at, Ordering::Relaxed);
    offer.reader_token.store(my_token, Ordering::Relaxed);
    offer
        .reader_reads
        .store(u32::from(reads), Ordering::Relaxed);
    // Release: the writer that sees TAKEN sees the fields above.
    if !offer.step(d.seq, OFFERED, TAKEN) {
        // Withdrawn meanwhile.
        ring.skip_offer(description_len);
        return Ok(None);
    }
    offer.bell.ring();
    let result = take(offer, &d, dst, reads, peer);
    match result {
        Ok(true) => {
            if let Some(v) = vec {
                // SAFETY: `len` bytes were reserved, and every one of them
                // was written by a copy that reported its whole length
                // (counted in `copied`, read with acquire in `take`).
                unsafe { v.set_len(len) };
            }
            ring.skip_offer(description_len);
            offer.set(d.seq, DONE);
            offer.bell.ring();
            Ok(Some(len))
        }
        Ok(false) => {
            // Refused by both sides: the message follows in the ring.
            ring.skip_offer(description_len);
            Ok(None)
        }
        Err(e) => {
            ring.skip_offer(description_len);
            fail(offer, d.seq, e)
        }
    }
}

/// The reader's copies and its wait for the writer's: `true` once all
/// bytes are there, `false` if the writer refused (neither side can copy).
fn take(offer: &Offer, d: &Description, dst: u64, reads: bool, peer: &dyn Peer) -> Result<bool> {
    if reads {
        let mut seen = 0u64;
        while let Some((at, n)) = claim(offer, d.len) {
            let local = [
                iov(std::ptr::from_mut(&mut seen) as u64, 8),
                iov(dst + at, n),
            ];
            let remote = [iov(d.token_at, 8), iov(d.src + at, n)];
            match read_from(d.pid, &local, &remote) {
                Ok(r) if r as u64 == 8 + n && seen == d.token => {
                    offer.copied.fetch_add(n, Ordering::Release);
                    offer.bell.ring();
                }
                Ok(r) if r >= 8 && seen != d.token => return Err(Error::Disconnected),
                Ok(_) => return Err(Error::Disconnected),
                Err(e) => return Err(copy_error(&e)),
            }
        }
    }
    let ready = || offer.copied.load(Ordering::Acquire) >= d.len || offer.state_of(d.seq) != TAKEN;
    wait_for(offer, ready, peer)?;
    if offer.copied.load(Ordering::Acquire) == d.len {
        return Ok(true);
    }
    match offer.state_of(d.seq) {
        REFUSED => Ok(false),
        FAILED => Err(Error::Corrupt(
            "the writer's single copy failed: the offer's addresses are not the reader's",
        )),
        _ => Err(Error::Corrupt(
            "a single copy counted more bytes than its message",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_round_trip_and_bad_ones_are_refused() {
        let d = Description {
            seq: 7,
            pid: 42,
            len: 1 << 20,
            src: 0x7fff_0000_1000,
            token_at: 0x7fff_0000_2000,
            token: 0xdead_beef,
        };
        assert_eq!(Description::decode(&d.encode()).unwrap(), d);
        assert!(Description::decode(&d.encode()[..40]).is_err());
        for bad in [
            Description { len: 10, ..d },
            Description {
                len: u64::from(u32::MAX),
                ..d
            },
            Description { pid: 0, ..d },
        ] {
            assert!(matches!(
                Description::decode(&bad.encode()),
                Err(Error::Corrupt(_))
            ));
        }
    }

    #[test]
    fn chunks_cover_the_message_once() {
        for len in [MIN_LEN as u64, 1 << 20, (1 << 20) + 1, 123_456_789] {
            let offer = Offer::default();
            let mut covered = 0;
            while let Some((at, n)) = claim(&offer, len) {
                assert_eq!(at, covered);
                covered += n;
            }
            assert_eq!(covered, len);
        }
    }

    #[test]
    fn the_measure_answers() {
        // Whichever way, once: a second call is the cached answer.
        let first = faster_here();
        assert_eq!(faster_here(), first);
    }
}
