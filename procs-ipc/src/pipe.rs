//! [`pipe`]: Python's `multiprocessing.Pipe`, over shared memory.
//!
//! ```text
//! segment: owners of end 0 | owners of end 1 | ring 0 control | ring 1 control
//!          | (page-aligned) ring 0 data | ring 1 data
//! ```
//!
//! End 0 receives on ring 0 and, duplex, sends on ring 1; end 1 the
//! reverse. Each end's holders are recorded ([`Owners`]) so that the other
//! end learns when they are all gone, by close, by drop or by death.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use nix::sys::eventfd::EventFd;
use serde::{Serialize, de::DeserializeOwned};

use crate::doorbell::Doorbell;
use crate::error::{Error, Result};
use crate::notify::{self, Note};
use crate::owners::{DeathWatch, Holders, Owners};
use crate::ring::{Hints, Peer, Received, Ring, RingCtl, SharedBytes, Sink};
use crate::single_copy::{self, Dest, LargeMessages, Offer, Sent, Token};
use crate::socket::SocketEnd;
use crate::sync::AtomicU64;
use crate::wait::{PeerWatch, Readable};
use procs_sync::Segment;
use procs_sync::raw::liveness;

/// The default capacity of each direction of a pipe, in bytes: enough for
/// the two sides to copy a message of a mebibyte at once. The memory is
/// touched only as messages pass.
pub const DEFAULT_CAPACITY: usize = 1024 * 1024;

#[repr(C)]
#[derive(Debug, Default)]
struct PipeCtl {
    owners: [Owners; 2],
    rings: [RingCtl; 2],
    /// Each ring's offers of large messages in one copy.
    offers: [Offer; 2],
    /// The state of each ring's note (its reader's `fileno`).
    notes: [AtomicU64; 2],
}

/// The memory of one pipe, shared by its ends in this process.
#[derive(Debug)]
struct Shared {
    seg: Segment,
    capacity: usize,
    data_offset: usize,
    /// Where the control block starts in the segment's data: the first
    /// offset aligned for it (its fields are padded to cache lines of
    /// their own, 128 bytes apart on x86-64, past the segment's 64-byte
    /// header).
    ctl_offset: usize,
    /// Each ring's note descriptor, made with the pipe so that children
    /// inherit it.
    note_fds: Vec<EventFd>,
}

impl Shared {
    fn create(capacity: usize, rings: usize) -> Result<Shared> {
        if capacity < 64 || !capacity.is_power_of_two() {
            return Err(Error::Invalid(
                "a pipe's capacity is a power of two of at least 64 bytes",
            ));
        }
        // Room for the control block wherever its alignment puts it.
        let data_offset = (std::mem::align_of::<PipeCtl>() + std::mem::size_of::<PipeCtl>())
            .next_multiple_of(4096);
        let size = capacity
            .checked_mul(rings)
            .and_then(|d| d.checked_add(data_offset))
            .ok_or(Error::Invalid("a pipe's capacity overflows"))?;
        let seg = Segment::create(size)?;
        let ctl_offset = seg.as_ptr().align_offset(std::mem::align_of::<PipeCtl>());
        let note_fds = (0..rings)
            .map(|_| notify::new_fd())
            .collect::<Result<_>>()?;
        let shared = Shared {
            seg,
            capacity,
            data_offset,
            ctl_offset,
            note_fds,
        };
        for ring in &shared.ctl().rings[..rings] {
            ring.init(capacity as u64);
        }
        let me = std::process::id() as i32;
        for owners in &shared.ctl().owners {
            owners.add(me, liveness::own_start_ticks(), liveness::is_alive);
        }
        Ok(shared)
    }

    #[inline]
    fn ctl(&self) -> &PipeCtl {
        // SAFETY: a PipeCtl fits at `ctl_offset` (aligned for it, and
        // `data_offset` leaves room for its alignment and size), in memory
        // zero-filled at creation, which is a valid PipeCtl (atomics only);
        // the segment lives as long as self.
        unsafe { &*self.seg.as_ptr().add(self.ctl_offset).cast::<PipeCtl>() }
    }

    #[inline]
    fn ring(&self, i: usize) -> Ring<'_, SharedBytes> {
        // SAFETY: ring i's data is `capacity` bytes at this offset inside the
        // segment, which lives as long as the returned ring borrows self.
        let bytes = unsafe {
            SharedBytes::new(
                self.seg.as_ptr().add(self.data_offset + i * self.capacity),
                self.capacity,
            )
        };
        Ring::new(&self.ctl().rings[i], bytes)
    }

    #[inline]
    fn note(&self, i: usize) -> Note<'_, EventFd> {
        Note {
            state: &self.ctl().notes[i],
            counter: &self.note_fds[i],
        }
    }
}

/// What every end has: its pipe, its side, its rings, and a scratch buffer.
#[derive(Debug)]
struct End {
    shared: Arc<Shared>,
    side: usize,
    send_ring: Option<usize>,
    recv_ring: Option<usize>,
    scratch: RefCell<Vec<u8>>,
    closed: Cell<bool>,
    /// What this end saw of its send ring's and its receive ring's positions.
    send_hints: Hints,
    recv_hints: Hints,
    /// What a [`wait`](crate::wait) last saw of the other end's holders.
    peer_watch: PeerWatch,
    /// When this end last looked at the other end's holders' lives.
    peer_death: DeathWatch,
    /// How this end sends large messages, and whether the kernel refused
    /// single copy between these two processes.
    large: LargeMessages,
    single_copy_refused: Cell<bool>,
    /// What this end writes for the other side to check, during a single
    /// copy.
    token: Token,
}

/// How many `P`s `len` received bytes are: [`Error::Decode`] unless a
/// whole number.
pub(crate) fn whole_items<P: Pod>(len: usize) -> Result<usize> {
    let size = std::mem::size_of::<P>().max(1);
    if !len.is_multiple_of(size) {
        return Err(Error::Decode(format!(
            "{len} bytes are not a whole number of {size}-byte items"
        )));
    }
    Ok(len / size)
}

/// The `P`s in `bytes`, copied out (a whole number of them, or
/// [`Error::Decode`]).
pub(crate) fn pod_items<P: Pod>(bytes: &[u8]) -> Result<Vec<P>> {
    let mut out = vec![P::zeroed(); whole_items::<P>(bytes.len())?];
    bytemuck::cast_slice_mut::<P, u8>(&mut out).copy_from_slice(bytes);
    Ok(out)
}

/// Values that encode in this many bytes go through the stack.
const SMALL_VALUE: usize = 48;

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    // A timeout too large to add is no timeout.
    timeout.and_then(|t| Instant::now().checked_add(t))
}

impl End {
    fn new(
        shared: Arc<Shared>,
        side: usize,
        send_ring: Option<usize>,
        recv_ring: Option<usize>,
        large: LargeMessages,
    ) -> End {
        End {
            shared,
            side,
            send_ring,
            recv_ring,
            scratch: RefCell::new(Vec::new()),
            closed: Cell::new(false),
            send_hints: Hints::default(),
            recv_hints: Hints::default(),
            peer_watch: PeerWatch::default(),
            peer_death: DeathWatch::default(),
            large,
            single_copy_refused: Cell::new(false),
            token: Token::default(),
        }
    }

    fn peer(&self) -> Holders<'_> {
        Holders {
            owners: &self.shared.ctl().owners[1 - self.side],
            watch: &self.peer_death,
        }
    }

    fn open(&self) -> Result<()> {
        if self.closed.get() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn send_bytes(&self, bytes: &[u8], deadline: Option<Instant>) -> Result<()> {
        self.open()?;
        let Some(i) = self.send_ring else {
            return Err(Error::Invalid("this end only receives"));
        };
        let note = self.shared.note(i);
        let notify = |head| note.published(head);
        let ring = self
            .shared
            .ring(i)
            .hinted(&self.send_hints)
            .notified(&notify);
        let peer = self.peer();
        // Offered only when the ring cannot take the message now, so that
        // the receiver has to take part anyway: a message the ring can
        // hold is sent without waiting for the receiver, as always.
        if bytes.len() >= single_copy::MIN_LEN
            && !ring.has_room_for(bytes.len())
            && self.offers_single_copy()
        {
            let offer = &self.shared.ctl().offers[i];
            match single_copy::send(&ring, offer, &self.token, bytes, deadline, &peer)? {
                Sent::Copied => return Ok(()),
                Sent::Withdrawn => {}
                Sent::Refused => self.single_copy_refused.set(true),
            }
        }
        ring.send(bytes, deadline, &peer)
    }

    /// Whether a large message is offered for single copy.
    fn offers_single_copy(&self) -> bool {
        !self.single_copy_refused.get()
            && match self.large {
                LargeMessages::Ring => false,
                LargeMessages::SingleCopy => true,
                LargeMessages::Measured => single_copy::faster_here(),
            }
    }

    fn recv_into(&self, sink: &mut Sink<'_>, deadline: Option<Instant>) -> Result<usize> {
        self.open()?;
        let Some(i) = self.recv_ring else {
            return Err(Error::Invalid("this end only sends"));
        };
        let r = self.receive(i, sink, deadline);
        let gone = matches!(r, Err(Error::Disconnected));
        let tail = self.shared.ctl().rings[i].read_position();
        self.shared.note(i).settle(tail, || {
            gone || self.shared.ring(i).recv_ready(&self.peer())
        });
        r
    }

    /// Receives from ring `i` into `sink`: a message in the ring, or one
    /// offered for single copy.
    fn receive(&self, i: usize, sink: &mut Sink<'_>, deadline: Option<Instant>) -> Result<usize> {
        let ring = self.shared.ring(i).hinted(&self.recv_hints);
        let peer = self.peer();
        loop {
            match ring.receive(sink, deadline, &peer)? {
                Received::Message(len) => return Ok(len),
                Received::Offer { description, len } => {
                    let dest = match sink {
                        Sink::Vec(v) => Dest::Vec(v),
                        Sink::Slice(s) => Dest::Slice(s),
                    };
                    let offer = &self.shared.ctl().offers[i];
                    let taken = single_copy::receive(
                        &ring,
                        offer,
                        &self.token,
                        &description,
                        len,
                        dest,
                        &peer,
                    )?;
                    if let Some(len) = taken {
                        return Ok(len);
                    }
                    // Withdrawn or refused: the message follows in the ring.
                }
            }
        }
    }

    /// The descriptor that polls readable when a receive would not block.
    fn fileno(&self) -> Result<BorrowedFd<'_>> {
        self.open()?;
        let Some(ring) = self.recv_ring else {
            return Err(Error::Invalid("this end only sends"));
        };
        let tail = self.shared.ctl().rings[ring].read_position();
        self.shared
            .note(ring)
            .arm(tail, || self.shared.ring(ring).recv_ready(&self.peer()));
        Ok(self.shared.note_fds[ring].as_fd())
    }

    fn send<T: Serialize + ?Sized>(&self, value: &T, deadline: Option<Instant>) -> Result<()> {
        // A small value is encoded on the stack; a larger one in the scratch
        // buffer.
        let mut small = [0u8; SMALL_VALUE];
        match postcard::to_slice(value, &mut small) {
            Ok(bytes) => return self.send_bytes(bytes, deadline),
            Err(postcard::Error::SerializeBufferFull) => {}
            Err(e) => return Err(Error::Encode(e.to_string())),
        }
        let mut buf = self.scratch.borrow_mut();
        buf.clear();
        let bytes = postcard::to_extend(value, std::mem::take(&mut *buf))
            .map_err(|e| Error::Encode(e.to_string()))?;
        let r = self.send_bytes(&bytes, deadline);
        *buf = bytes;
        r
    }

    fn recv<T: DeserializeOwned>(&self, deadline: Option<Instant>) -> Result<T> {
        // A small message is received on the stack; a larger one (refused
        // there, and left in the ring) in the scratch buffer.
        let mut small = [0u8; SMALL_VALUE];
        match self.recv_into(&mut Sink::Slice(&mut small), deadline) {
            Ok(n) => {
                return postcard::from_bytes(&small[..n]).map_err(|e| Error::Decode(e.to_string()));
            }
            Err(Error::BufferTooSmall { .. }) => {}
            Err(e) => return Err(e),
        }
        let mut buf = self.scratch.borrow_mut();
        buf.clear();
        self.recv_into(&mut Sink::Vec(&mut buf), deadline)?;
        postcard::from_bytes(&buf).map_err(|e| Error::Decode(e.to_string()))
    }

    fn send_pod<P: Pod>(&self, items: &[P], deadline: Option<Instant>) -> Result<()> {
        self.send_bytes(bytemuck::cast_slice(items), deadline)
    }

    fn recv_pod<P: Pod>(&self, deadline: Option<Instant>) -> Result<Vec<P>> {
        let mut buf = self.scratch.borrow_mut();
        buf.clear();
        let len = self.recv_into(&mut Sink::Vec(&mut buf), deadline)?;
        pod_items(&buf[..len])
    }

    fn recv_pod_into<P: Pod>(&self, items: &mut [P], deadline: Option<Instant>) -> Result<usize> {
        let len = self.recv_into(&mut Sink::Slice(bytemuck::cast_slice_mut(items)), deadline)?;
        whole_items::<P>(len)
    }

    fn poll(&self, timeout: Duration) -> Result<bool> {
        self.open()?;
        let Some(ring) = self.recv_ring else {
            return Err(Error::Invalid("this end only sends"));
        };
        let r = self
            .shared
            .ring(ring)
            .poll(deadline(Some(timeout)), &self.peer());
        if let Ok(true) = r {
            // Perhaps for a death no close announced: the descriptor says so.
            let tail = self.shared.ctl().rings[ring].read_position();
            self.shared.note(ring).settle(tail, || true);
        }
        r
    }

    /// Lets go of this end in this process: a child it is being handed to
    /// becomes a holder, this process stops being one, and both rings' sides
    /// are woken to see it.
    fn release(&self) {
        if self.closed.replace(true) {
            return;
        }
        let owners = &self.shared.ctl().owners[self.side];
        if let Some(child) = procs_core::handing_over_to() {
            owners.add(
                child,
                liveness::start_ticks(child).unwrap_or(0),
                liveness::is_alive,
            );
        }
        owners.release(std::process::id() as i32);
        for ring in [self.send_ring, self.recv_ring].into_iter().flatten() {
            self.shared.ctl().rings[ring].wake_both();
        }
        // The reader's descriptor turns readable once this side is closed
        // everywhere (after the bell's fence: see `notify`).
        if let Some(ring) = self.send_ring
            && owners.closed()
        {
            self.shared.note(ring).signal();
        }
    }
}

impl Drop for End {
    fn drop(&mut self) {
        self.release();
    }
}

/// Both ends of a duplex pipe (Python's `Pipe()`): each end sends and
/// receives values of type `T`, and raw bytes.
///
/// ```
/// use procs_ipc::pipe;
///
/// let (parent, child) = pipe::<String>()?;
/// let mut p = procs_core::Process::new(move || {
///     let question = child.recv().unwrap();
///     child.send(&format!("{question} pong")).unwrap();
/// });
/// p.start()?;
/// parent.send(&"ping".to_string())?;
/// assert_eq!(parent.recv()?, "ping pong");
/// p.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pipe<T>() -> Result<(Connection<T>, Connection<T>)> {
    PipeBuilder::new().duplex()
}

/// The two ends of a one-way pipe (Python's `Pipe(duplex=False)`), in
/// Python's order: the receiving end first.
pub fn pipe_one_way<T>() -> Result<(Receiver<T>, Sender<T>)> {
    PipeBuilder::new().one_way()
}

/// Builds a pipe with a capacity other than the default.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `duplex` or `one_way`"]
pub struct PipeBuilder {
    capacity: usize,
    prefault: bool,
    large: LargeMessages,
}

impl Default for PipeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PipeBuilder {
    /// A builder with the default capacity ([`DEFAULT_CAPACITY`]).
    pub fn new() -> Self {
        PipeBuilder {
            capacity: DEFAULT_CAPACITY,
            prefault: false,
            large: LargeMessages::Measured,
        }
    }

    /// How messages of 64 KiB and more go
    /// ([`LargeMessages::Measured`] by default): in one copy, straight
    /// from the sender's memory into the receiver's (both copy a part at
    /// once), or through the pipe's memory (a copy in, a copy out). Where
    /// the kernel does not allow one process to copy from or into another
    /// (a ptrace scope, seccomp), they go through the pipe's memory,
    /// whatever is asked.
    ///
    /// ```
    /// use procs_ipc::{LargeMessages, PipeBuilder};
    ///
    /// let (rx, tx) = PipeBuilder::new()
    ///     .large_messages(LargeMessages::SingleCopy)
    ///     .one_way::<()>()?;
    /// let mut p = procs_core::Process::new(move || {
    ///     tx.send_bytes(&vec![7u8; 1 << 20]).unwrap();
    /// });
    /// p.start()?;
    /// assert_eq!(rx.recv_bytes()?, vec![7u8; 1 << 20]);
    /// p.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn large_messages(mut self, how: LargeMessages) -> Self {
        self.large = how;
        self
    }

    /// The bytes each direction holds before a sender waits (a power of two,
    /// at least 64). Larger messages still go through, in pieces.
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// Gives the pipe all its memory when it is built (see
    /// [`Segment::prefault`]), so that its first large messages do not pay
    /// a page fault per 4 KiB; without it, the memory is touched only as
    /// messages pass.
    pub fn prefault(mut self) -> Self {
        self.prefault = true;
        self
    }

    fn create(&self, rings: usize) -> Result<Shared> {
        let shared = Shared::create(self.capacity, rings)?;
        if self.prefault {
            shared.seg.prefault()?;
        }
        Ok(shared)
    }

    /// A duplex pipe.
    pub fn duplex<T>(self) -> Result<(Connection<T>, Connection<T>)> {
        let shared = Arc::new(self.create(2)?);
        let a = End::new(shared.clone(), 0, Some(1), Some(0), self.large);
        let b = End::new(shared, 1, Some(0), Some(1), self.large);
        Ok((Connection::wrap(a), Connection::wrap(b)))
    }

    /// A one-way pipe: the receiving end, then the sending end.
    pub fn one_way<T>(self) -> Result<(Receiver<T>, Sender<T>)> {
        let shared = Arc::new(self.create(1)?);
        let r = End::new(shared.clone(), 0, None, Some(0), self.large);
        let s = End::new(shared, 1, Some(0), None, self.large);
        Ok((Receiver(Connection::wrap(r)), Sender(Connection::wrap(s))))
    }
}

/// One end of a duplex pipe: sends and receives values of type `T`
/// (serialized with postcard), raw bytes, and plain-old-data slices (copied
/// as they are, without serialization).
///
/// A connection belongs to one process at a time: move it into a child's
/// target and the child holds it (this process lets go when it drops its
/// copy). When every holder of the other end has closed it, dropped it or
/// died (SIGKILL included), a receive returns what was completely sent and
/// then [`Error::Disconnected`]; a death is noticed within about 20 ms. A
/// connection is not `Sync`: one thread uses it at a time.
///
/// A connection made by a [`Listener`](crate::Listener) or a
/// [`Client`](crate::Client) has the same methods, carried by its socket:
/// the other side is gone once every process holding the socket closed it
/// or died (the kernel tells at once).
#[derive(Debug)]
pub struct Connection<T> {
    end: Link,
    _t: PhantomData<fn(T) -> T>,
}

/// What carries a connection's messages: a pipe's rings, or a socket (a
/// connection of a [`Listener`](crate::Listener) or a
/// [`Client`](crate::Client)).
#[derive(Debug)]
enum Link {
    Ring(End),
    Socket(SocketEnd),
}

/// Each call of a connection, to the transport that carries it.
macro_rules! to_transport {
    ($(fn $name:ident $(<$g:ident $(: $b:path)?>)? (&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl Link {
            $(
                fn $name $(<$g $(: $b)?>)? (&self $(, $arg: $ty)*) -> $ret {
                    match self {
                        Link::Ring(e) => e.$name($($arg),*),
                        Link::Socket(s) => s.$name($($arg),*),
                    }
                }
            )*
        }
    };
}

to_transport! {
    fn send_bytes(&self, bytes: &[u8], deadline: Option<Instant>) -> Result<()>;
    fn recv_into(&self, sink: &mut Sink<'_>, deadline: Option<Instant>) -> Result<usize>;
    fn send_pod<P: Pod>(&self, items: &[P], deadline: Option<Instant>) -> Result<()>;
    fn recv_pod<P: Pod>(&self, deadline: Option<Instant>) -> Result<Vec<P>>;
    fn recv_pod_into<P: Pod>(&self, items: &mut [P], deadline: Option<Instant>) -> Result<usize>;
    fn recv<T: DeserializeOwned>(&self, deadline: Option<Instant>) -> Result<T>;
}

impl Link {
    fn send<T: Serialize + ?Sized>(&self, value: &T, deadline: Option<Instant>) -> Result<()> {
        match self {
            Link::Ring(e) => e.send(value, deadline),
            Link::Socket(s) => s.send(value, deadline),
        }
    }

    fn poll(&self, timeout: Duration) -> Result<bool> {
        match self {
            Link::Ring(e) => e.poll(timeout),
            Link::Socket(s) => s.poll(deadline(Some(timeout))),
        }
    }

    fn release(&self) {
        match self {
            Link::Ring(e) => e.release(),
            Link::Socket(s) => s.release(),
        }
    }

    fn closed(&self) -> bool {
        match self {
            Link::Ring(e) => e.closed.get(),
            Link::Socket(s) => s.is_closed(),
        }
    }

    fn fileno(&self) -> Result<BorrowedFd<'_>> {
        match self {
            Link::Ring(e) => e.fileno(),
            Link::Socket(s) if s.is_closed() => Err(Error::Closed),
            Link::Socket(s) => Ok(s.fd()),
        }
    }
}

/// The sending end of a one-way pipe.
#[derive(Debug)]
pub struct Sender<T>(Connection<T>);

/// The receiving end of a one-way pipe.
#[derive(Debug)]
pub struct Receiver<T>(Connection<T>);

impl<T> Connection<T> {
    fn wrap(end: End) -> Self {
        Connection {
            end: Link::Ring(end),
            _t: PhantomData,
        }
    }

    /// The connection carried by a connected, authenticated socket.
    pub(crate) fn from_socket(socket: SocketEnd) -> Self {
        Connection {
            end: Link::Socket(socket),
            _t: PhantomData,
        }
    }
}

macro_rules! sending {
    () => {
        /// Sends `value`, waiting for room as long as it takes.
        pub fn send(&self, value: &T) -> Result<()>
        where
            T: Serialize,
        {
            self.inner().send(value, None)
        }

        /// Sends `value`, waiting for room at most `timeout`.
        pub fn send_timeout(&self, value: &T, timeout: Duration) -> Result<()>
        where
            T: Serialize,
        {
            self.inner().send(value, deadline(Some(timeout)))
        }

        /// Sends `bytes` as one message.
        pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
            self.inner().send_bytes(bytes, None)
        }

        /// Sends `bytes` as one message, waiting for room at most `timeout`.
        pub fn send_bytes_timeout(&self, bytes: &[u8], timeout: Duration) -> Result<()> {
            self.inner().send_bytes(bytes, deadline(Some(timeout)))
        }

        /// Sends a slice of plain-old-data as one message, copied as it is.
        pub fn send_pod<P: Pod>(&self, items: &[P]) -> Result<()> {
            self.inner().send_pod(items, None)
        }
    };
}

macro_rules! receiving {
    () => {
        /// Receives a value, waiting as long as it takes.
        pub fn recv(&self) -> Result<T>
        where
            T: DeserializeOwned,
        {
            self.inner().recv(None)
        }

        /// Receives a value, waiting at most `timeout` ([`Error::Timeout`]).
        pub fn recv_timeout(&self, timeout: Duration) -> Result<T>
        where
            T: DeserializeOwned,
        {
            self.inner().recv(deadline(Some(timeout)))
        }

        /// Receives one message as bytes.
        pub fn recv_bytes(&self) -> Result<Vec<u8>> {
            let mut v = Vec::new();
            self.inner().recv_into(&mut Sink::Vec(&mut v), None)?;
            Ok(v)
        }

        /// Receives one message as bytes, waiting at most `timeout`.
        pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
            let mut v = Vec::new();
            self.inner()
                .recv_into(&mut Sink::Vec(&mut v), deadline(Some(timeout)))?;
            Ok(v)
        }

        /// Receives one message into `buf`; returns its length. A message
        /// larger than `buf` is [`Error::BufferTooSmall`] and stays to be
        /// received.
        pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
            self.inner().recv_into(&mut Sink::Slice(buf), None)
        }

        /// Receives a message sent with `send_pod`.
        pub fn recv_pod<P: Pod>(&self) -> Result<Vec<P>> {
            self.inner().recv_pod(None)
        }

        /// Receives a message sent with `send_pod` into `items`; returns how
        /// many items it held.
        pub fn recv_pod_into<P: Pod>(&self, items: &mut [P]) -> Result<usize> {
            self.inner().recv_pod_into(items, None)
        }

        /// Whether a receive would not block, waiting at most `timeout`
        /// (Python's `poll`): a message is waiting, or the other end is gone.
        pub fn poll(&self, timeout: Duration) -> Result<bool> {
            self.inner().poll(timeout)
        }

        /// A descriptor that polls readable (level-triggered, for `poll`,
        /// epoll, mio or tokio) exactly when a receive would not block: a
        /// message waits, or the other end was closed (Python's `fileno`).
        /// For a pipe it is an eventfd made with the pipe, which the
        /// sending side signals only once this was called (before that a
        /// send costs one load more); for a connection of a
        /// [`Listener`](crate::Listener) or a [`Client`](crate::Client), the
        /// socket. It is only to wait on: receive with this end's methods.
        /// A writer killed without closing signals nothing: a receive or a
        /// [`poll`](Self::poll) notices the death (within 20 ms) and then
        /// makes it readable; watch the writer's process too if that
        /// matters. A closed end is [`Error::Closed`].
        ///
        /// ```
        /// use std::os::fd::AsRawFd;
        /// use procs_ipc::pipe;
        ///
        /// fn readable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
        ///     let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        ///     // SAFETY: one valid pollfd, for the length of the call.
        ///     unsafe { libc::poll(&mut p, 1, 0) == 1 }
        /// }
        ///
        /// let (a, b) = pipe::<u32>()?;
        /// let fd = a.fileno()?;
        /// assert!(!readable(fd));
        /// b.send(&7)?;
        /// assert!(readable(fd));
        /// assert_eq!(a.recv()?, 7);
        /// assert!(!readable(fd));
        /// b.close();
        /// assert!(readable(fd));
        /// # Ok::<(), procs_ipc::Error>(())
        /// ```
        pub fn fileno(&self) -> Result<BorrowedFd<'_>> {
            self.inner().fileno()
        }
    };
}

impl<T> Connection<T> {
    sending!();
    receiving!();

    fn inner(&self) -> &Link {
        &self.end
    }

    /// Sends `bytes` as one message with the descriptors `fds` (Python's
    /// `multiprocessing.reduction.send_handle`): the other process gets
    /// descriptors of its own for the same open files (SCM_RIGHTS), at most
    /// 16 a message. Only over a socket connection ([`Listener`](crate::Listener)
    /// and [`Client`](crate::Client)); a pipe of shared memory is
    /// [`Error::Invalid`]. Receive it with
    /// [`recv_bytes_with_fds`](Connection::recv_bytes_with_fds): another
    /// receive takes the bytes and the kernel closes the descriptors.
    ///
    /// ```
    /// use std::io::{Read, Seek, Write};
    /// use procs_ipc::{Address, Client, Connection, Listener};
    ///
    /// let name = Address::abstract_name(format!("procs-doc-fds-{}", std::process::id()));
    /// let mut l = Listener::bind(&name, b"key")?;
    /// let mut child = procs_core::Process::new(move || {
    ///     let c: Connection<()> = l.accept().unwrap();
    ///     let (bytes, fds) = c.recv_bytes_with_fds().unwrap();
    ///     let mut file = std::fs::File::from(fds.into_iter().next().unwrap());
    ///     let mut text = String::new();
    ///     file.rewind().unwrap();
    ///     file.read_to_string(&mut text).unwrap();
    ///     assert_eq!((bytes.as_slice(), text.as_str()), (&b"a file"[..], "shared"));
    /// });
    /// child.start()?;
    /// let c: Connection<()> = Client::connect(&name, b"key")?;
    /// let mut file = tempfile_in_memory()?;
    /// file.write_all(b"shared")?;
    /// use std::os::fd::AsFd;
    /// c.send_bytes_with_fds(b"a file", &[file.as_fd()])?;
    /// assert_eq!(child.join()?, 0);
    /// # fn tempfile_in_memory() -> std::io::Result<std::fs::File> {
    /// #     std::fs::File::options().read(true).write(true).create(true).truncate(true)
    /// #         .open(std::env::temp_dir().join(format!("procs-doc-fds-{}", std::process::id())))
    /// # }
    /// # std::fs::remove_file(std::env::temp_dir().join(format!("procs-doc-fds-{}", std::process::id())))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_bytes_with_fds(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.send_fds_until(bytes, fds, None)
    }

    /// As [`send_bytes_with_fds`](Connection::send_bytes_with_fds), waiting
    /// for room at most `timeout`.
    pub fn send_bytes_with_fds_timeout(
        &self,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
        timeout: Duration,
    ) -> Result<()> {
        self.send_fds_until(bytes, fds, deadline(Some(timeout)))
    }

    fn send_fds_until(
        &self,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
        until: Option<Instant>,
    ) -> Result<()> {
        match &self.end {
            Link::Socket(s) => s.send_with_fds(bytes, fds, until),
            Link::Ring(_) => Err(Error::Invalid(
                "descriptors travel only over a socket connection (Listener and Client)",
            )),
        }
    }

    /// Sends `value` with the descriptors of the handles inside it (a
    /// procs-sync `Segment`, and what lives in one): the receiving process,
    /// which may have been running long before, maps the same memory. Over
    /// a socket connection only (as [`send_bytes_with_fds`](Connection::send_bytes_with_fds)).
    ///
    /// ```
    /// use procs_ipc::{Address, Client, Connection, Listener};
    /// use procs_sync::Segment;
    ///
    /// let name = Address::abstract_name(format!("procs-doc-handles-{}", std::process::id()));
    /// let mut l = Listener::bind(&name, b"key")?;
    /// // A process already running when the segment is made.
    /// let mut child = procs_core::Process::new(move || {
    ///     let c: Connection<Segment> = l.accept().unwrap();
    ///     let seg = c.recv_with_handles().unwrap();
    ///     // SAFETY: the segment is at least 8 bytes; only this process
    ///     // writes them while the parent waits.
    ///     unsafe { seg.as_ptr().write_bytes(7, 8) };
    /// });
    /// child.start()?;
    /// let seg = Segment::create(4096)?;
    /// let c: Connection<Segment> = Client::connect(&name, b"key")?;
    /// c.send_with_handles(&seg)?;
    /// assert_eq!(child.join()?, 0);
    /// // SAFETY: the child wrote the bytes and ended.
    /// assert_eq!(unsafe { seg.as_ptr().read() }, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_with_handles(&self, value: &T) -> Result<()>
    where
        T: Serialize,
    {
        // Queues in the value count one more for this process until the
        // receiver counts itself.
        let (bytes, fds) = procs_core::handles::collecting_to_send(|| postcard::to_allocvec(value));
        let bytes = bytes.map_err(|e| {
            Error::Encode(procs_core::handles::take_refusal().unwrap_or_else(|| e.to_string()))
        })?;
        let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        self.send_fds_until(&bytes, &fds, None)
    }

    /// Receives a value sent with [`send_with_handles`](Connection::send_with_handles),
    /// its handles attached to the descriptors that came with it.
    pub fn recv_with_handles(&self) -> Result<T>
    where
        T: DeserializeOwned,
    {
        let (bytes, fds) = self.recv_fds_until(None)?;
        procs_sync::handles::supplying(fds, || postcard::from_bytes(&bytes))
            .map_err(|e| Error::Decode(e.to_string()))
    }

    /// Receives one message and the descriptors that came with it (none
    /// if it was sent without), close-on-exec (Python's
    /// `reduction.recv_handle`).
    pub fn recv_bytes_with_fds(&self) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        self.recv_fds_until(None)
    }

    /// As [`recv_bytes_with_fds`](Connection::recv_bytes_with_fds), waiting
    /// at most `timeout` ([`Error::Timeout`]).
    pub fn recv_bytes_with_fds_timeout(
        &self,
        timeout: Duration,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        self.recv_fds_until(deadline(Some(timeout)))
    }

    fn recv_fds_until(&self, until: Option<Instant>) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        match &self.end {
            Link::Socket(s) => s.recv_with_fds(until),
            Link::Ring(_) => Err(Error::Invalid(
                "descriptors travel only over a socket connection (Listener and Client)",
            )),
        }
    }

    /// Closes this end in this process (as dropping it does); later calls
    /// are [`Error::Closed`].
    pub fn close(&self) {
        self.end.release();
    }

    /// Whether this end was closed here.
    pub fn closed(&self) -> bool {
        self.end.closed()
    }
}

impl Readable for End {
    /// A closed end is ready too (the receive fails at once).
    fn recv_ready(&self) -> bool {
        match self.recv_ring {
            Some(ring) if !self.closed.get() => self.shared.ring(ring).recv_ready(&self.peer()),
            _ => true,
        }
    }

    fn recv_bell(&self) -> Option<&Doorbell> {
        self.recv_ring
            .map(|ring| self.shared.ring(ring).data_bell())
    }

    fn peer_gone(&self) -> bool {
        self.peer_watch.gone(|| !self.peer().alive())
    }
}

impl<T> crate::wait::sealed::Sealed for Connection<T> {
    fn source(&self) -> Result<crate::wait::Source<'_>> {
        Ok(match &self.end {
            Link::Ring(e) => crate::wait::Source::Ring(e),
            Link::Socket(s) => crate::wait::Source::Fd(s.fd()),
        })
    }
}

impl<T> crate::wait::Wait for Connection<T> {}

impl<T> crate::wait::sealed::Sealed for Receiver<T> {
    fn source(&self) -> Result<crate::wait::Source<'_>> {
        crate::wait::sealed::Sealed::source(&self.0)
    }
}

impl<T> crate::wait::Wait for Receiver<T> {}

impl<T> Sender<T> {
    sending!();

    fn inner(&self) -> &Link {
        &self.0.end
    }

    /// Closes this end in this process.
    pub fn close(&self) {
        self.0.close();
    }
}

impl<T> Receiver<T> {
    receiving!();

    fn inner(&self) -> &Link {
        &self.0.end
    }

    /// Closes this end in this process.
    pub fn close(&self) {
        self.0.close();
    }
}

/// Pipe ends as handles that travel: to a child of any start method as
/// `spawn_fn`'s argument, or with `send_with_handles` to a running
/// process. An end travels as its pipe's segment and note descriptors (out
/// of band), its side and rings; the holder records follow the queues'
/// rules (see `queue/travel.rs`): handed over to a child being started,
/// counted once more for the sender while in transit to a running process.
/// A socket's connection does not travel this way (its stream's state is
/// this process's).
mod travel {
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    use std::sync::Arc;

    use nix::sys::eventfd::EventFd;
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Connection, End, Link, PipeCtl, Receiver, Sender, Shared};
    use crate::single_copy::LargeMessages;
    use procs_sync::Segment;
    use procs_sync::raw::liveness;

    /// What an end's bytes say: the segment, the capacity, the note
    /// descriptors' indices, the side, the rings, how large messages go,
    /// and the sender while in transit.
    type Wire = (
        Segment,
        u64,
        Vec<u32>,
        u8,
        Option<u8>,
        Option<u8>,
        u8,
        Option<i32>,
    );

    fn large_code(l: LargeMessages) -> u8 {
        match l {
            LargeMessages::Measured => 0,
            LargeMessages::SingleCopy => 1,
            LargeMessages::Ring => 2,
        }
    }

    impl Shared {
        /// The pipe in `seg`, from another process: its layout checked
        /// against what the sender said.
        fn attach(
            seg: Segment,
            capacity: u64,
            notes: Vec<OwnedFd>,
        ) -> std::result::Result<Shared, String> {
            let rings = notes.len();
            let capacity = usize::try_from(capacity)
                .ok()
                .filter(|c| *c >= 64 && c.is_power_of_two())
                .ok_or("a pipe's capacity is a power of two of at least 64 bytes")?;
            if !(1..=2).contains(&rings) {
                return Err(format!("a pipe of {rings} rings"));
            }
            let data_offset = (std::mem::align_of::<PipeCtl>() + std::mem::size_of::<PipeCtl>())
                .next_multiple_of(4096);
            if capacity
                .checked_mul(rings)
                .and_then(|d| d.checked_add(data_offset))
                != Some(seg.size())
            {
                return Err(format!(
                    "a segment of {} bytes is not a pipe of {rings} rings of {capacity}",
                    seg.size()
                ));
            }
            let mut note_fds = Vec::with_capacity(rings);
            for fd in notes {
                let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                    .map_err(|e| format!("a pipe's note descriptor: {e}"))?;
                if link.as_os_str() != "anon_inode:[eventfd]" {
                    return Err("a pipe's note descriptor is not an eventfd".into());
                }
                // SAFETY: the descriptor is an eventfd (checked above),
                // owned here alone.
                note_fds.push(unsafe { EventFd::from_owned_fd(fd) });
            }
            let ctl_offset = seg.as_ptr().align_offset(std::mem::align_of::<PipeCtl>());
            Ok(Shared {
                seg,
                capacity,
                data_offset,
                ctl_offset,
                note_fds,
            })
        }
    }

    impl Serialize for End {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if self.closed.get() {
                return Err(S::Error::custom(procs_core::handles::refused(
                    "a closed pipe end does not travel",
                )));
            }
            let mut notes = Vec::with_capacity(self.shared.note_fds.len());
            for fd in &self.shared.note_fds {
                notes.push(procs_core::handles::put(fd.as_fd()).map_err(S::Error::custom)?);
            }
            let owners = &self.shared.ctl().owners[self.side];
            // In transit to a running process: one more count for this
            // one, which the receiver takes back.
            let transit = procs_core::handles::sending().then(|| {
                let me = std::process::id() as i32;
                owners.add(me, liveness::own_start_ticks(), liveness::is_alive);
                me
            });
            // As `Wire`, by reference (a segment serializes as its
            // descriptor's index).
            let wire = (
                &self.shared.seg,
                self.shared.capacity as u64,
                notes,
                self.side as u8,
                self.send_ring.map(|r| r as u8),
                self.recv_ring.map(|r| r as u8),
                large_code(self.large),
                transit,
            );
            wire.serialize(s)
        }
    }

    impl<'de> Deserialize<'de> for End {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let (seg, capacity, notes, side, send, recv, large, transit) = Wire::deserialize(d)?;
            let notes = notes
                .into_iter()
                .map(procs_core::handles::take)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(D::Error::custom)?;
            let rings = notes.len();
            let shared = Shared::attach(seg, capacity, notes).map_err(D::Error::custom)?;
            let ring = |r: Option<u8>| -> Result<Option<usize>, D::Error> {
                match r {
                    Some(r) if (r as usize) < rings => Ok(Some(r as usize)),
                    Some(r) => Err(D::Error::custom(format!("ring {r} of a pipe of {rings}"))),
                    None => Ok(None),
                }
            };
            let (send, recv) = (ring(send)?, ring(recv)?);
            if side > 1 || (send.is_none() && recv.is_none()) {
                return Err(D::Error::custom("not a pipe end's side and rings"));
            }
            let large = match large {
                0 => LargeMessages::Measured,
                1 => LargeMessages::SingleCopy,
                _ => LargeMessages::Ring,
            };
            let side = side as usize;
            if let Some(sender) = transit {
                // From a running process: this one counts itself, then
                // takes the sender's count for the end in transit back.
                let owners = &shared.ctl().owners[side];
                owners.add(
                    std::process::id() as i32,
                    liveness::own_start_ticks(),
                    liveness::is_alive,
                );
                owners.release(sender);
            }
            // From a parent that started this process: counted already.
            Ok(End::new(Arc::new(shared), side, send, recv, large))
        }
    }

    impl<T> Serialize for Connection<T> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match &self.end {
                Link::Ring(e) => e.serialize(s),
                Link::Socket(_) => Err(S::Error::custom(procs_core::handles::refused(
                    "a socket's connection does not travel as a handle (send its descriptor \
                     with send_bytes_with_fds)",
                ))),
            }
        }
    }

    impl<'de, T> Deserialize<'de> for Connection<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Ok(Connection::wrap(End::deserialize(d)?))
        }
    }

    /// A one-way end travels as its connection, its direction checked on
    /// arrival.
    macro_rules! one_way {
        ($ty:ident, $field:ident, $what:literal) => {
            impl<T> Serialize for $ty<T> {
                fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    self.0.serialize(s)
                }
            }

            impl<'de, T> Deserialize<'de> for $ty<T> {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    let c = Connection::<T>::deserialize(d)?;
                    match &c.end {
                        Link::Ring(e) if e.$field.is_some() => Ok($ty(c)),
                        _ => Err(D::Error::custom(concat!("this end is not ", $what))),
                    }
                }
            }
        };
    }

    one_way!(Sender, send_ring, "a pipe's sending end");
    one_way!(Receiver, recv_ring, "a pipe's receiving end");
}
