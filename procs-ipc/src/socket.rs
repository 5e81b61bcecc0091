//! The socket transport of a [`Connection`](crate::Connection): messages as
//! frames on a byte stream (a Unix socket or TCP), for the connections that
//! a [`Listener`](crate::Listener) accepts and a [`Client`](crate::Client)
//! makes.
//!
//! ```text
//! frame: length (4 bytes, big endian, signed), payload
//!        a payload of 2^31 bytes or more: -1 (4 bytes), length (8 bytes,
//!        big endian), payload
//! ```
//!
//! This is the framing of Python's `multiprocessing.connection`. A reader
//! checks a length against [`MAX_MESSAGE`] before it reads anything of the
//! payload, and grows its buffer only as bytes arrive, so a length that lies
//! costs nothing. A message is handed over only once complete: a peer that
//! dies (or closes) mid-message leaves [`Error::Disconnected`], never a torn
//! message. A deadline applies until the first byte of a frame moves; a
//! frame begun is finished (or the peer goes), so a timeout never leaves
//! half a frame in the stream.
//!
//! The socket is non-blocking; every call that would block polls the
//! descriptor for what it needs, until the deadline.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use bytemuck::Pod;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{MsgFlags, send};
use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};
use crate::frame::Header;
use crate::pipe::{pod_items, whole_items};
use crate::ring::Sink;

/// The largest message a socket connection carries, as a pipe's: larger ones
/// are [`Error::TooLarge`], sent or received.
pub(crate) const MAX_MESSAGE: usize = Header::MAX_LEN as usize;

/// Payloads up to this size go out in one system call with their length.
const JOINED: usize = 16 * 1024;

/// A vector that receives a payload grows by at most this much at a time,
/// as the bytes arrive.
const GROW: usize = 64 * 1024;

/// The most descriptors one message carries.
const MAX_FDS: usize = 16;

/// Where a connection's stream stands between two calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a frame boundary.
    Clean,
    /// The length of the next payload was read; the payload was not (a
    /// receive into a buffer too small for it).
    Pending(usize),
    /// The stream ended, or was cut mid-frame: nothing more comes.
    Ended,
    /// The peer sent what no writer of this library (or of Python's) would:
    /// the stream cannot be followed any more.
    Broken(&'static str),
}

/// Waits until `fd` is ready for `events`, or `deadline` passes (`Ok(false)`).
/// A hang-up or an error on the socket counts as ready: the next call
/// reports it.
pub(crate) fn ready(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    deadline: Option<Instant>,
) -> Result<bool> {
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Rounded up: a wait never ends before its deadline.
                let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut set = [PollFd::new(fd, events)];
        match nix::poll::poll(&mut set, timeout) {
            Ok(0) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(false);
                }
            }
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::Io(e.into())),
        }
    }
}

fn gone(e: Errno) -> Error {
    match e {
        Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN | Errno::ESHUTDOWN => {
            Error::Disconnected
        }
        e => Error::Io(e.into()),
    }
}

/// Writes all of `bytes`, waiting for room until `first` before the first
/// byte goes and until `rest` after it.
pub(crate) fn write_all(
    fd: BorrowedFd<'_>,
    mut bytes: &[u8],
    first: Option<Instant>,
    rest: Option<Instant>,
    started: &mut bool,
) -> Result<()> {
    while !bytes.is_empty() {
        match send(fd.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => {
                *started = true;
                bytes = &bytes[n..];
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let deadline = if *started { rest } else { first };
                if !ready(fd, PollFlags::POLLOUT, deadline)? {
                    return Err(Error::Timeout);
                }
            }
            Err(e) => return Err(gone(e)),
        }
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes, waiting until `first` for the first
/// byte and until `rest` after it. The end of the stream before the last
/// byte is [`Error::Disconnected`]; `started` tells whether any byte came.
pub(crate) fn read_exact(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    first: Option<Instant>,
    rest: Option<Instant>,
    started: &mut bool,
) -> Result<()> {
    let mut at = 0;
    while at < buf.len() {
        match nix::unistd::read(fd, &mut buf[at..]) {
            Ok(0) => return Err(Error::Disconnected),
            Ok(n) => {
                *started = true;
                at += n;
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let deadline = if *started { rest } else { first };
                if !ready(fd, PollFlags::POLLIN, deadline)? {
                    return Err(Error::Timeout);
                }
            }
            Err(e) => return Err(gone(e)),
        }
    }
    Ok(())
}

/// The header of a frame of `len` bytes (at most [`MAX_MESSAGE`]): its
/// bytes, and how many of them.
pub(crate) fn header(len: usize) -> ([u8; 12], usize) {
    let mut h = [0u8; 12];
    match i32::try_from(len) {
        Ok(n) => {
            h[..4].copy_from_slice(&n.to_be_bytes());
            (h, 4)
        }
        Err(_) => {
            h[..4].copy_from_slice(&(-1i32).to_be_bytes());
            h[4..].copy_from_slice(&(len as u64).to_be_bytes());
            (h, 12)
        }
    }
}

/// Reads a frame's length: `Err(Timeout)` if nothing came by `first` (and
/// then nothing was read), `Err(Disconnected)` if the stream ended,
/// `Ok(Err(why))` if the length is not one a writer sends.
pub(crate) fn read_len(
    fd: BorrowedFd<'_>,
    first: Option<Instant>,
    rest: Option<Instant>,
    started: &mut bool,
) -> Result<Result<u64, &'static str>> {
    let mut b = [0u8; 4];
    read_exact(fd, &mut b, first, rest, started)?;
    match i32::from_be_bytes(b) {
        -1 => {
            let mut b = [0u8; 8];
            read_exact(fd, &mut b, rest, rest, started)?;
            let len = u64::from_be_bytes(b);
            if len <= i32::MAX as u64 {
                Ok(Err("a long frame's length would fit a short one"))
            } else {
                Ok(Ok(len))
            }
        }
        n if n < 0 => Ok(Err("a frame's length is negative")),
        n => Ok(Ok(n as u64)),
    }
}

/// A connection's socket, with the state of its stream.
#[derive(Debug)]
pub(crate) struct SocketEnd {
    fd: OwnedFd,
    closed: Cell<bool>,
    state: Cell<State>,
    scratch: RefCell<Vec<u8>>,
    /// A small payload and its length, joined to go out in one call.
    joined: RefCell<Vec<u8>>,
}

impl SocketEnd {
    /// The end of a connected, authenticated, non-blocking stream socket.
    pub(crate) fn new(fd: OwnedFd) -> SocketEnd {
        SocketEnd {
            fd,
            closed: Cell::new(false),
            state: Cell::new(State::Clean),
            scratch: RefCell::new(Vec::new()),
            joined: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    fn open(&self) -> Result<()> {
        if self.closed.get() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Closes the socket in this process: its descriptor is made to refer to
    /// `/dev/null`, so that the peer sees the end of the stream once every
    /// process that holds the socket closed it, while a descriptor borrowed
    /// from this end (its `fileno`) stays a valid one until the end drops.
    pub(crate) fn release(&self) {
        if self.closed.replace(true) {
            return;
        }
        let Ok(null) = std::fs::File::open("/dev/null") else {
            // Without a replacement the socket stays open until the drop,
            // which closes it.
            return;
        };
        // SAFETY: both descriptors are open and owned (`null` by this
        // function, `self.fd` by this end, which keeps owning the number):
        // dup2 atomically makes the number refer to /dev/null and drops this
        // process's reference to the socket. Nothing else closes the number.
        unsafe { libc::dup2(null.as_raw_fd(), self.fd.as_raw_fd()) };
    }

    pub(crate) fn send_bytes(&self, bytes: &[u8], deadline: Option<Instant>) -> Result<()> {
        self.open()?;
        if bytes.len() > MAX_MESSAGE {
            return Err(Error::TooLarge {
                len: bytes.len(),
                max: MAX_MESSAGE,
            });
        }
        let (h, hn) = header(bytes.len());
        let mut started = false;
        let fd = self.fd.as_fd();
        if bytes.len() <= JOINED {
            let mut joined = self.joined.borrow_mut();
            joined.clear();
            joined.extend_from_slice(&h[..hn]);
            joined.extend_from_slice(bytes);
            write_all(fd, &joined, deadline, None, &mut started)
        } else {
            write_all(fd, &h[..hn], deadline, None, &mut started)?;
            write_all(fd, bytes, None, None, &mut started)
        }
    }

    pub(crate) fn recv_into(
        &self,
        sink: &mut Sink<'_>,
        deadline: Option<Instant>,
    ) -> Result<usize> {
        self.open()?;
        let fd = self.fd.as_fd();
        let len = match self.state.get() {
            State::Ended => return Err(Error::Disconnected),
            State::Broken(why) => return Err(Error::Corrupt(why)),
            State::Pending(len) => len,
            State::Clean => {
                let mut started = false;
                let len = match read_len(fd, deadline, None, &mut started) {
                    Ok(Ok(len)) => len,
                    Ok(Err(why)) => return Err(self.broken(why)),
                    Err(Error::Disconnected) => {
                        self.state.set(State::Ended);
                        return Err(Error::Disconnected);
                    }
                    Err(e) => return Err(e),
                };
                match usize::try_from(len) {
                    Ok(len) if len <= MAX_MESSAGE => len,
                    _ => {
                        self.broken("a message longer than the limit was refused");
                        return Err(Error::TooLarge {
                            len: usize::try_from(len).unwrap_or(usize::MAX),
                            max: MAX_MESSAGE,
                        });
                    }
                }
            }
        };
        if let Sink::Slice(s) = sink
            && s.len() < len
        {
            self.state.set(State::Pending(len));
            return Err(Error::BufferTooSmall {
                needed: len,
                available: s.len(),
            });
        }
        self.state.set(State::Clean);
        let mut started = false;
        let r = match sink {
            Sink::Slice(s) => read_exact(fd, &mut s[..len], None, None, &mut started),
            Sink::Vec(v) => {
                v.clear();
                let mut r = Ok(());
                while v.len() < len && r.is_ok() {
                    let at = v.len();
                    v.resize(at + (len - at).min(GROW), 0);
                    r = read_exact(fd, &mut v[at..], None, None, &mut started);
                }
                if r.is_err() {
                    v.clear();
                }
                r
            }
        };
        match r {
            Ok(()) => Ok(len),
            Err(e) => {
                self.state.set(State::Ended);
                Err(e)
            }
        }
    }

    /// Sends `bytes` as one message with `fds` attached (SCM_RIGHTS, on
    /// its first bytes): the receiver gets its own descriptors for the same
    /// open files.
    pub(crate) fn send_with_fds(
        &self,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
        deadline: Option<Instant>,
    ) -> Result<()> {
        use nix::sys::socket::{ControlMessage, sendmsg};
        use std::io::IoSlice;
        self.open()?;
        if fds.len() > MAX_FDS {
            return Err(Error::Invalid(
                "at most 16 descriptors travel with one message",
            ));
        }
        if bytes.len() > MAX_MESSAGE {
            return Err(Error::TooLarge {
                len: bytes.len(),
                max: MAX_MESSAGE,
            });
        }
        let (h, hn) = header(bytes.len());
        let mut frame = Vec::with_capacity(hn + bytes.len());
        frame.extend_from_slice(&h[..hn]);
        frame.extend_from_slice(bytes);
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let fd = self.fd.as_fd();
        let sent = loop {
            let iov = [IoSlice::new(&frame)];
            let cmsg = [ControlMessage::ScmRights(&raw)];
            match sendmsg::<()>(fd.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
                Ok(n) => break n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    if !ready(fd, PollFlags::POLLOUT, deadline)? {
                        return Err(Error::Timeout);
                    }
                }
                Err(e) => return Err(gone(e)),
            }
        };
        // The descriptors went with the first bytes; the rest as usual.
        let mut started = true;
        write_all(fd, &frame[sent..], None, None, &mut started)
    }

    /// Receives one message sent with [`send_with_fds`](Self::send_with_fds)
    /// (or without descriptors: then none), with the descriptors that came
    /// with it, close-on-exec. Bytes are allocated only as they arrive.
    pub(crate) fn recv_with_fds(
        &self,
        deadline: Option<Instant>,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        use nix::sys::socket::{ControlMessageOwned, recvmsg};
        use std::io::IoSliceMut;
        use std::os::fd::FromRawFd;
        self.open()?;
        match self.state.get() {
            State::Ended => return Err(Error::Disconnected),
            State::Broken(why) => return Err(Error::Corrupt(why)),
            State::Pending(_) => {
                return Err(Error::Invalid(
                    "a message is half taken: receive it with recv_bytes",
                ));
            }
            State::Clean => {}
        }
        let fd = self.fd.as_fd();
        let mut head = [0u8; 4];
        let mut got = 0usize;
        let mut fds: Vec<OwnedFd> = Vec::new();
        // The first byte carries the descriptors: read it with recvmsg.
        while got == 0 {
            let mut cmsg = nix::cmsg_space!([i32; MAX_FDS]);
            let mut iov = [IoSliceMut::new(&mut head)];
            match recvmsg::<()>(
                fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
                    for c in msg.cmsgs().map_err(|e| Error::Io(e.into()))? {
                        if let ControlMessageOwned::ScmRights(received) = c {
                            for raw in received {
                                // SAFETY: the kernel just installed these
                                // descriptors in this process for this
                                // message; nothing else owns them.
                                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                            }
                        }
                    }
                    if msg.bytes == 0 {
                        self.state.set(State::Ended);
                        return Err(Error::Disconnected);
                    }
                    if truncated {
                        return Err(self.broken("more descriptors came than a message carries"));
                    }
                    got = msg.bytes;
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    if !ready(fd, PollFlags::POLLIN, deadline)? {
                        return Err(Error::Timeout);
                    }
                }
                Err(e) => return Err(gone(e)),
            }
        }
        let mut started = true;
        let fail = |e: Error| {
            self.state.set(State::Ended);
            e
        };
        read_exact(fd, &mut head[got..], None, None, &mut started).map_err(fail)?;
        let len = match i32::from_be_bytes(head) {
            -1 => {
                let mut b = [0u8; 8];
                read_exact(fd, &mut b, None, None, &mut started).map_err(fail)?;
                u64::from_be_bytes(b)
            }
            n if n < 0 => return Err(self.broken("a frame's length is negative")),
            n => n as u64,
        };
        let len = match usize::try_from(len) {
            Ok(l) if l <= MAX_MESSAGE => l,
            _ => return Err(self.broken("a message longer than the limit was refused")),
        };
        let mut body = Vec::new();
        while body.len() < len {
            let at = body.len();
            body.resize(at + (len - at).min(GROW), 0);
            read_exact(fd, &mut body[at..], None, None, &mut started).map_err(fail)?;
        }
        Ok((body, fds))
    }

    /// The stream cannot be followed any more: later receives say why, and
    /// its reading side is shut, so that the socket polls readable (a
    /// receive would not block: it fails at once).
    fn broken(&self, why: &'static str) -> Error {
        self.state.set(State::Broken(why));
        let _ = nix::sys::socket::shutdown(self.fd.as_raw_fd(), nix::sys::socket::Shutdown::Read);
        Error::Corrupt(why)
    }

    pub(crate) fn send<T: Serialize + ?Sized>(
        &self,
        value: &T,
        deadline: Option<Instant>,
    ) -> Result<()> {
        let mut buf = self.scratch.borrow_mut();
        buf.clear();
        let bytes = postcard::to_extend(value, std::mem::take(&mut *buf))
            .map_err(|e| Error::Encode(e.to_string()))?;
        let r = self.send_bytes(&bytes, deadline);
        *buf = bytes;
        r
    }

    pub(crate) fn recv<T: DeserializeOwned>(&self, deadline: Option<Instant>) -> Result<T> {
        let mut buf = self.scratch.borrow_mut();
        self.recv_into(&mut Sink::Vec(&mut buf), deadline)?;
        postcard::from_bytes(&buf).map_err(|e| Error::Decode(e.to_string()))
    }

    pub(crate) fn send_pod<P: Pod>(&self, items: &[P], deadline: Option<Instant>) -> Result<()> {
        self.send_bytes(bytemuck::cast_slice(items), deadline)
    }

    pub(crate) fn recv_pod<P: Pod>(&self, deadline: Option<Instant>) -> Result<Vec<P>> {
        let mut buf = self.scratch.borrow_mut();
        let len = self.recv_into(&mut Sink::Vec(&mut buf), deadline)?;
        pod_items(&buf[..len])
    }

    pub(crate) fn recv_pod_into<P: Pod>(
        &self,
        items: &mut [P],
        deadline: Option<Instant>,
    ) -> Result<usize> {
        let len = self.recv_into(&mut Sink::Slice(bytemuck::cast_slice_mut(items)), deadline)?;
        whole_items::<P>(len)
    }

    /// Whether a receive would not wait for its message to begin: bytes are
    /// there, the stream ended, or it cannot be followed.
    pub(crate) fn poll(&self, deadline: Option<Instant>) -> Result<bool> {
        self.open()?;
        match self.state.get() {
            State::Clean => ready(self.fd.as_fd(), PollFlags::POLLIN, deadline),
            _ => Ok(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    /// A socket end reading what `bytes` are, then the end of the stream.
    fn fed(bytes: &[u8]) -> SocketEnd {
        let (a, mut b) = UnixStream::pair().expect("socketpair");
        a.set_nonblocking(true).expect("nonblocking");
        b.write_all(bytes).expect("write");
        drop(b);
        SocketEnd::new(a.into())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever bytes come, each receive is a message or a typed error,
        /// the receives end, and no more is delivered than was sent.
        #[test]
        fn any_bytes_give_messages_or_typed_errors(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let end = fed(&bytes);
            let mut delivered = 0usize;
            for _ in 0..bytes.len() + 2 {
                let mut v = Vec::new();
                match end.recv_into(&mut Sink::Vec(&mut v), None) {
                    Ok(n) => {
                        prop_assert_eq!(n, v.len());
                        delivered += 4 + n;
                    }
                    Err(Error::Disconnected) | Err(Error::Corrupt(_)) | Err(Error::TooLarge { .. }) => break,
                    Err(e) => prop_assert!(false, "unexpected {e:?}"),
                }
            }
            prop_assert!(delivered <= bytes.len());
        }

        /// The same for receives that take descriptors too: a message or a
        /// typed error, never more than was sent, no descriptor out of
        /// nowhere.
        #[test]
        fn any_bytes_give_messages_or_typed_errors_with_fds(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let end = fed(&bytes);
            let mut delivered = 0usize;
            for _ in 0..bytes.len() + 2 {
                match end.recv_with_fds(None) {
                    Ok((v, fds)) => {
                        prop_assert!(fds.is_empty());
                        delivered += 4 + v.len();
                    }
                    Err(Error::Disconnected) | Err(Error::Corrupt(_)) => break,
                    Err(e) => prop_assert!(false, "unexpected {e:?}"),
                }
            }
            prop_assert!(delivered <= bytes.len());
        }

        /// Messages sent with `send_bytes` come out whole, in order, into
        /// vectors and into slices alike.
        #[test]
        fn framed_messages_come_out_whole(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let (a, b) = UnixStream::pair().expect("socketpair");
            a.set_nonblocking(true).expect("nonblocking");
            b.set_nonblocking(true).expect("nonblocking");
            let (rx, tx) = (SocketEnd::new(a.into()), SocketEnd::new(b.into()));
            for m in &msgs {
                tx.send_bytes(m, None).expect("send");
            }
            tx.release();
            for (i, m) in msgs.iter().enumerate() {
                if i % 2 == 0 {
                    let mut v = Vec::new();
                    prop_assert_eq!(rx.recv_into(&mut Sink::Vec(&mut v), None).expect("recv"), m.len());
                    prop_assert_eq!(&v, m);
                } else {
                    let mut small = [0u8; 4];
                    if m.len() > 4 {
                        let too_small = matches!(
                            rx.recv_into(&mut Sink::Slice(&mut small), None),
                            Err(Error::BufferTooSmall { .. })
                        );
                        prop_assert!(too_small);
                    }
                    let mut buf = [0u8; 300];
                    prop_assert_eq!(rx.recv_into(&mut Sink::Slice(&mut buf), None).expect("recv"), m.len());
                    prop_assert_eq!(&buf[..m.len()], &m[..]);
                }
            }
            let end = rx.recv_into(&mut Sink::Vec(&mut Vec::new()), None);
            prop_assert!(matches!(end, Err(Error::Disconnected)));
        }
    }

    #[test]
    fn a_deadline_before_the_first_byte_is_a_timeout_and_takes_nothing() {
        let (a, b) = UnixStream::pair().expect("socketpair");
        a.set_nonblocking(true).expect("nonblocking");
        b.set_nonblocking(true).expect("nonblocking");
        let (rx, tx) = (SocketEnd::new(a.into()), SocketEnd::new(b.into()));
        let soon = Some(Instant::now() + std::time::Duration::from_millis(10));
        assert!(matches!(
            rx.recv_into(&mut Sink::Vec(&mut Vec::new()), soon),
            Err(Error::Timeout)
        ));
        tx.send_bytes(b"late", None).expect("send");
        let mut v = Vec::new();
        assert_eq!(rx.recv_into(&mut Sink::Vec(&mut v), None).expect("recv"), 4);
        assert_eq!(v, b"late");
    }
}
