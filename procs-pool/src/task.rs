//! What travels between the pool and its workers: task frames, the
//! functions that run them in a worker, and replies.
//!
//! ```text
//! task frame: task id (u64) | call (usize) | func (usize) | tag (u64) | input
//! input:      one argument (apply), or a count (u32) and that many arguments
//!             back to back (a chunk of map, imap or starmap)
//! output:     one result, or a count and that many results
//! ```
//!
//! `call` is a function monomorphized for the task's types (one of
//! [`call_one`], [`call_chunk`], [`call_star_chunk`], [`call_init`]) and
//! `func` the user's `fn` (zero for starmap, whose function is a
//! zero-sized type), both as their distance from procs-core's anchor
//! ([`procs_core::code_offset`]): the same in a forked worker for any
//! function, and in a spawned or served one (a fresh execution of the
//! program) for a function of the program itself, which a pool of those
//! methods checks before it sends one. `tag` is a keyed hash of the two,
//! with a key drawn at random by the pool and given to its workers only: a
//! worker calls an address only if its tag checks.

use std::hash::{BuildHasher, Hasher, RandomState};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::wire;

/// Runs a task in a worker: decodes the input, calls the function, encodes
/// the output. An `Err` is a serialization failure, in words.
pub(crate) type Call = fn(func: usize, input: &[u8], out: &mut Vec<u8>) -> Result<(), String>;

/// Bytes of a task frame before its input.
pub(crate) const HEADER: usize = 32;

/// The head of a task frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub task: u64,
    /// The call and the function, as offsets (see the module's doc).
    pub call: u64,
    pub func: u64,
    pub tag: u64,
}

/// The pool's secret for its tags, drawn at random when it is built and
/// given to each worker (inherited, or in the spawned worker's argument).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Key {
    words: [u64; 2],
    /// The workers are fresh executions of the program (spawn or
    /// forkserver): only its own functions mean the same there.
    pub(crate) execs: bool,
}

impl Key {
    pub(crate) fn random(execs: bool) -> Key {
        let s = RandomState::new();
        Key {
            words: [s.hash_one(1u8), s.hash_one(2u8)],
            execs,
        }
    }
}

/// The keyed hash binding a call to its function (SipHash over the key,
/// then the two offsets).
pub(crate) fn tag(key: &Key, call: u64, func: u64) -> u64 {
    #[allow(deprecated)] // std's SipHasher: the one keyed hasher std names.
    let mut h = std::hash::SipHasher::new_with_keys(key.words[0], key.words[1]);
    h.write_u64(call);
    h.write_u64(func);
    h.finish()
}

impl Header {
    pub(crate) fn write(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.task.to_le_bytes());
        buf.extend_from_slice(&self.call.to_le_bytes());
        buf.extend_from_slice(&self.func.to_le_bytes());
        buf.extend_from_slice(&self.tag.to_le_bytes());
    }

    /// The header and the input of a frame; `None` if it is too short.
    pub(crate) fn parse(frame: &[u8]) -> Option<(Header, &[u8])> {
        let word = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                frame.get(i * 8..i * 8 + 8)?.try_into().ok()?,
            ))
        };
        let header = Header {
            task: word(0)?,
            call: word(1)?,
            func: word(2)?,
            tag: word(3)?,
        };
        Some((header, &frame[HEADER..]))
    }
}

/// A task frame as the pool keeps it until its worker answers: a small
/// one (an apply of a small argument) inline, so that submitting it
/// allocates nothing; a larger one in a buffer.
pub(crate) enum Frame {
    Inline {
        bytes: [u8; INLINE_FRAME],
        len: usize,
    },
    Heap(Vec<u8>),
}

/// The largest frame kept inline: a header and 32 bytes of input.
pub(crate) const INLINE_FRAME: usize = HEADER + 32;

impl Frame {
    /// `bytes` kept inline if they fit, else copied into a buffer.
    pub(crate) fn copy_of(bytes: &[u8]) -> Frame {
        if bytes.len() <= INLINE_FRAME {
            let mut inline = [0u8; INLINE_FRAME];
            inline[..bytes.len()].copy_from_slice(bytes);
            Frame::Inline {
                bytes: inline,
                len: bytes.len(),
            }
        } else {
            Frame::Heap(bytes.to_vec())
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Frame::Inline { bytes, len } => &bytes[..*len],
            Frame::Heap(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            Frame::Inline { bytes, len } => &mut bytes[..*len],
            Frame::Heap(v) => v,
        }
    }

    /// Sets the task id of a frame built before its id was known.
    pub(crate) fn set_task_id(&mut self, task: u64) {
        set_task_id(self.as_mut_slice(), task);
    }
}

/// Sets the task id of a frame built before its id was known.
pub(crate) fn set_task_id(frame: &mut [u8], task: u64) {
    frame[..8].copy_from_slice(&task.to_le_bytes());
}

/// A frame with its header (task id 0 until submitted) and no input yet.
pub(crate) fn frame_for(key: &Key, call: Call, func: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER + 64);
    start_frame(key, call, func, &mut frame);
    frame
}

/// Writes a frame's header (task id 0 until submitted) into `frame`, which
/// must be empty.
pub(crate) fn start_frame(key: &Key, call: Call, func: usize, frame: &mut Vec<u8>) {
    debug_assert!(frame.is_empty());
    // A function of a shared library would be elsewhere in a fresh
    // execution: its task fails there, with why, instead.
    let call = if key.execs
        && !(procs_core::code_of_program(call as usize)
            && (func == 0 || procs_core::code_of_program(func)))
    {
        call_refused as Call
    } else {
        call
    };
    let call = procs_core::code_offset(call as usize);
    let func = procs_core::code_offset(func);
    Header {
        task: 0,
        call,
        func,
        tag: tag(key, call, func),
    }
    .write(frame);
}

/// Appends `value` in the pool's wire format.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) -> Result<(), String> {
    wire::to_extend(value, buf)
}

/// Appends a chunk: its count, then each item.
pub(crate) fn encode_chunk<'a, T: Serialize + 'a>(
    items: impl ExactSizeIterator<Item = &'a T>,
    buf: &mut Vec<u8>,
) -> Result<(), String> {
    let count = u32::try_from(items.len()).map_err(|_| "a chunk of over 2^32 items".to_owned())?;
    buf.extend_from_slice(&count.to_le_bytes());
    for item in items {
        encode(item, buf)?;
    }
    Ok(())
}

/// Reads a chunk of exactly `expected` items. Never allocates more than
/// `expected` items, whatever the count in the bytes says.
pub(crate) fn decode_chunk<T: DeserializeOwned>(
    bytes: &[u8],
    expected: usize,
) -> Result<Vec<T>, String> {
    let (count, mut rest) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| "a chunk shorter than its count".to_owned())?;
    let count = u32::from_le_bytes(*count) as usize;
    if count != expected {
        return Err(format!(
            "a chunk of {count} items where {expected} were sent"
        ));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let (item, tail) = wire::take_from::<T>(rest)?;
        out.push(item);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes after the chunk's last item", rest.len()));
    }
    Ok(out)
}

/// Reads a chunk of exactly `dst.len()` items into `dst`. On an error, the
/// items read so far are dropped and `dst` is left uninitialized.
pub(crate) fn decode_chunk_into<T: DeserializeOwned>(
    bytes: &[u8],
    dst: &mut [std::mem::MaybeUninit<T>],
) -> Result<(), String> {
    let (count, mut rest) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| "a chunk shorter than its count".to_owned())?;
    let count = u32::from_le_bytes(*count) as usize;
    if count != dst.len() {
        return Err(format!(
            "a chunk of {count} items where {} were sent",
            dst.len()
        ));
    }
    /// Drops the first `n` items of `dst` unless forgotten.
    struct Written<'a, T> {
        dst: &'a mut [std::mem::MaybeUninit<T>],
        n: usize,
    }
    impl<T> Drop for Written<'_, T> {
        fn drop(&mut self) {
            for v in &mut self.dst[..self.n] {
                // SAFETY: the first `n` items were written (`n` counts
                // the writes) and not moved out.
                unsafe { v.assume_init_drop() };
            }
        }
    }
    let mut written = Written { dst, n: 0 };
    while written.n < count {
        let (item, tail) = wire::take_from::<T>(rest)?;
        written.dst[written.n].write(item);
        written.n += 1;
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes after the chunk's last item", rest.len()));
    }
    std::mem::forget(written);
    Ok(())
}

/// Decodes a single value, with nothing after it.
pub(crate) fn decode_one<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match wire::take_from::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(format!("{} bytes after the value", rest.len())),
        Err(e) => Err(e),
    }
}

/// Rebuilds the `fn(A) -> R` whose address the pool sent.
///
/// # Safety
/// `func` is the address of an `fn(A) -> R` taken in this process or in
/// the process this one was forked from (same program image).
unsafe fn unary<A, R>(func: usize) -> fn(A) -> R {
    // SAFETY: a fn pointer and a usize have the same size on every target
    // this crate builds for (checked by transmute itself), and the caller
    // guarantees `func` came from an `fn(A) -> R`.
    unsafe { std::mem::transmute::<usize, fn(A) -> R>(func) }
}

/// The call of a task whose function a spawned worker cannot reach.
fn call_refused(_func: usize, _input: &[u8], _out: &mut Vec<u8>) -> Result<(), String> {
    Err(
        "a pool of the spawn or forkserver method runs functions of the program itself, \
         not of a shared library"
            .to_owned(),
    )
}

/// Runs `f(a)` for one argument: the call of `apply`.
pub(crate) fn call_one<A: DeserializeOwned, R: Serialize>(
    func: usize,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    // SAFETY: this function is only ever called through a frame whose tag
    // the worker checked, and the pool pairs `call_one::<A, R>` only with
    // the address of an `fn(A) -> R` (see `Pool::apply_async`).
    let f = unsafe { unary::<A, R>(func) };
    let a = decode_one::<A>(input).map_err(|e| format!("the argument: {e}"))?;
    encode(&f(a), out).map_err(|e| format!("the result: {e}"))
}

/// Runs `f` over a chunk: the call of `map` and `imap`.
pub(crate) fn call_chunk<A: DeserializeOwned, R: Serialize>(
    func: usize,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    // SAFETY: as in `call_one`: paired only with an `fn(A) -> R`.
    let f = unsafe { unary::<A, R>(func) };
    run_chunk(input, out, f)
}

/// Runs a zero-sized `F` over a chunk of argument tuples: starmap.
pub(crate) fn call_star_chunk<F: StarFn<T, R>, T: DeserializeOwned, R: Serialize>(
    _func: usize,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    const { assert!(std::mem::size_of::<F>() == 0) };
    // SAFETY: F is zero-sized (asserted above), so a value of it has no
    // bytes to be invalid; it is `Copy + 'static`, so a copy of the value
    // the caller of `starmap` passed is as good as that value, and making
    // one from nothing is that copy (fn items and closures that capture
    // nothing are the zero-sized callables).
    let f: F = unsafe { std::mem::zeroed() };
    run_chunk(input, out, |t: T| f.call(t))
}

/// Runs the initializer `f(arg)`.
pub(crate) fn call_init<A: DeserializeOwned>(
    func: usize,
    input: &[u8],
    _out: &mut Vec<u8>,
) -> Result<(), String> {
    // SAFETY: as in `call_one`: paired only with an `fn(A)` (an `fn(A) -> ()`).
    let f = unsafe { unary::<A, ()>(func) };
    let a = decode_one::<A>(input).map_err(|e| format!("the initializer's argument: {e}"))?;
    f(a);
    Ok(())
}

fn run_chunk<T: DeserializeOwned, R: Serialize>(
    input: &[u8],
    out: &mut Vec<u8>,
    mut f: impl FnMut(T) -> R,
) -> Result<(), String> {
    let (count, mut rest) = input
        .split_first_chunk::<4>()
        .ok_or_else(|| "a chunk shorter than its count".to_owned())?;
    // Room for as many results as arguments, each as large as one.
    let guess =
        input.len().saturating_mul(std::mem::size_of::<R>()) / std::mem::size_of::<T>().max(1);
    out.reserve(4 + guess.min(64 << 20));
    out.extend_from_slice(count);
    for _ in 0..u32::from_le_bytes(*count) {
        let (a, tail) = wire::take_from::<T>(rest).map_err(|e| format!("an argument: {e}"))?;
        rest = tail;
        encode(&f(a), out).map_err(|e| format!("a result: {e}"))?;
    }
    Ok(())
}

/// A function of several arguments that [`starmap`](crate::Pool::starmap)
/// calls with the elements of a tuple: implemented for every function item
/// and closure of 1 to 6 arguments.
///
/// `starmap` takes a function item (`pool.starmap(pow, ...)`) or a closure
/// that captures nothing; a function pointer or a capturing closure is
/// refused at compile time (workers are forked: the function has to be
/// found in them by its type alone).
pub trait StarFn<T, R>: Copy + Send + 'static {
    /// Calls the function with the tuple's elements.
    fn call(self, args: T) -> R;
}

macro_rules! star_fn {
    ($($a:ident),+) => {
        impl<Func, $($a,)+ Ret> StarFn<($($a,)+), Ret> for Func
        where
            Func: Fn($($a),+) -> Ret + Copy + Send + 'static,
        {
            #[allow(non_snake_case)]
            fn call(self, ($($a,)+): ($($a,)+)) -> Ret {
                self($($a),+)
            }
        }
    };
}

star_fn!(A);
star_fn!(A, B);
star_fn!(A, B, C);
star_fn!(A, B, C, D);
star_fn!(A, B, C, D, E);
star_fn!(A, B, C, D, E, G);

/// Bytes that postcard writes as one length and a copy (not byte by byte).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(Visit)
    }
}

/// A worker's word to the pool, through the pool's reply queue.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Reply {
    /// The worker (the pool's number for it, not its pid).
    pub worker: u32,
    /// The task answered.
    pub task: u64,
    pub body: Body,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Body {
    /// The task's output.
    Done(Bytes),
    /// The output is too large for the queue: it follows on the worker's
    /// own result pipe.
    InPipe,
    /// The task panicked.
    Panicked {
        message: String,
        location: Option<String>,
    },
    /// The argument or the result could not be (de)serialized.
    Serde(String),
    /// The initializer panicked; the worker exits.
    InitPanicked(String),
    /// Not from a worker: the pool wakes its handler thread to look at its
    /// state.
    Wake,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_refuse_lies() {
        let items: Vec<u64> = (0..100).map(|i| i * 1_000_003).collect();
        let mut buf = Vec::new();
        encode_chunk(items.iter(), &mut buf).unwrap();
        assert_eq!(decode_chunk::<u64>(&buf, 100).unwrap(), items);
        // A count that is not what was sent.
        assert!(decode_chunk::<u64>(&buf, 99).is_err());
        // A count that lies about a huge number of items: refused before
        // any allocation.
        let mut lie = buf.clone();
        lie[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_chunk::<u64>(&lie, 100).is_err());
        // Truncated and trailing bytes.
        assert!(decode_chunk::<u64>(&buf[..buf.len() - 1], 100).is_err());
        let mut long = buf.clone();
        long.push(0);
        assert!(decode_chunk::<u64>(&long, 100).is_err());
        assert!(decode_chunk::<u64>(&[1, 0], 1).is_err());
    }

    #[test]
    fn chunks_decode_in_place_and_drop_what_they_read_on_error() {
        let items: Vec<String> = (0..50).map(|i| format!("item {i}")).collect();
        let mut buf = Vec::new();
        encode_chunk(items.iter(), &mut buf).unwrap();
        let mut dst: Vec<std::mem::MaybeUninit<String>> =
            (0..50).map(|_| std::mem::MaybeUninit::uninit()).collect();
        decode_chunk_into(&buf, &mut dst).unwrap();
        // SAFETY: decode_chunk_into succeeded, so all 50 are initialized.
        let back: Vec<String> = dst
            .into_iter()
            .map(|v| unsafe { v.assume_init() })
            .collect();
        assert_eq!(back, items);
        // Cut in the middle of item 30: the 30 read are dropped, no panic.
        let cut = buf.len() * 30 / 50 + 3;
        let mut dst: Vec<std::mem::MaybeUninit<String>> =
            (0..50).map(|_| std::mem::MaybeUninit::uninit()).collect();
        assert!(decode_chunk_into(&buf[..cut], &mut dst).is_err());
        assert!(decode_chunk_into(&buf, &mut dst[..49]).is_err());
    }

    #[test]
    fn headers_parse_back_and_short_frames_are_refused() {
        let key = Key::random(false);
        let mut frame = frame_for(&key, call_one::<u64, u64>, 1234);
        frame.extend_from_slice(b"input");
        set_task_id(&mut frame, 77);
        let (h, input) = Header::parse(&frame).unwrap();
        assert_eq!(h.task, 77);
        assert_eq!(procs_core::code_at(h.func), 1234);
        assert_eq!(h.tag, tag(&key, h.call, h.func));
        assert_ne!(h.tag, tag(&Key::random(false), h.call, h.func));
        assert_eq!(input, b"input");
        for n in 0..HEADER {
            assert!(Header::parse(&frame[..n]).is_none());
        }
    }

    #[test]
    fn small_frames_are_kept_inline_and_large_ones_in_a_buffer() {
        let key = Key::random(false);
        let mut bytes = frame_for(&key, call_one::<u64, u64>, 99);
        bytes.extend_from_slice(&7u64.to_le_bytes());
        let mut small = Frame::copy_of(&bytes);
        assert!(matches!(small, Frame::Inline { .. }));
        small.set_task_id(5);
        let (h, input) = Header::parse(small.as_slice()).unwrap();
        let func = procs_core::code_at(h.func);
        assert_eq!((h.task, func, input), (5, 99, &7u64.to_le_bytes()[..]));
        bytes.extend_from_slice(&[1; INLINE_FRAME]);
        let mut large = Frame::copy_of(&bytes);
        assert!(matches!(large, Frame::Heap(_)));
        large.set_task_id(6);
        assert_eq!(Header::parse(large.as_slice()).unwrap().0.task, 6);
        assert_eq!(large.as_slice()[8..], bytes[8..]);
    }

    #[test]
    fn bytes_are_one_length_and_a_copy() {
        let b = Bytes(vec![7; 300]);
        let enc = postcard::to_allocvec(&b).unwrap();
        assert_eq!(enc.len(), 302);
        assert_eq!(postcard::from_bytes::<Bytes>(&enc).unwrap(), b);
    }
}
