//! The `Communicator` trait, its typed extension, and the world
//! communicator of the shared-memory transport.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytemuck::Pod;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::launch::Backend;
use crate::request::{RecvRequest, Request, Requests};
use crate::{ANY_SOURCE, ANY_TAG, PROC_NULL, Status};

/// A group of ranks that exchange messages: MPI's communicator, with
/// mpi4py's names.
///
/// The methods here move bytes; [`CommunicatorExt`] (implemented for every
/// communicator) adds the typed forms users call: objects through serde
/// (`send`, `recv`, ...) and plain-old-data buffers without serialization
/// (`send_buf`, `recv_buf`, ..., mpi4py's `Send`, `Recv`). The trait is
/// object-safe: `&dyn Communicator` works wherever a communicator does.
///
/// MPI's rules hold: a receive matches by source, tag and communicator
/// (`ANY_SOURCE` and `ANY_TAG` match any); two messages from one rank to
/// another on one communicator are received in the order they were sent
/// when both match; `PROC_NULL` as a destination or source makes a call a
/// no-op that completes at once.
pub trait Communicator {
    /// This rank's number, `0..size()`.
    #[doc(alias = "Get_rank")]
    fn rank(&self) -> i32;

    /// The number of ranks.
    #[doc(alias = "Get_size")]
    fn size(&self) -> i32;

    /// The name of the machine this rank runs on.
    #[doc(alias = "Get_processor_name")]
    fn processor_name(&self) -> String {
        hostname()
    }

    /// Stops the whole job: every rank ends, and the launcher exits with
    /// `code`.
    #[doc(alias = "Abort")]
    fn abort(&self, code: i32) -> !;

    /// Sends `data` to `dest` with `tag` (standard mode: returns once the
    /// bytes are on their way or taken; a large message waits for its
    /// receiver).
    fn send_bytes(&self, data: &[u8], dest: i32, tag: i32) -> Result<()>;

    /// Sends `data` and returns only once a receive matched it.
    fn ssend_bytes(&self, data: &[u8], dest: i32, tag: i32) -> Result<()>;

    /// Receives a message into `buf`; the status says its length.
    fn recv_bytes_into(&self, buf: &mut [u8], source: i32, tag: i32) -> Result<Status>;

    /// Receives a message of any length.
    fn recv_bytes(&self, source: i32, tag: i32) -> Result<(Vec<u8>, Status)>;

    /// Waits for a message that a receive of `source` and `tag` would
    /// match, and returns its status without receiving it.
    #[doc(alias = "Probe")]
    fn probe(&self, source: i32, tag: i32) -> Result<Status>;

    /// As [`probe`](Communicator::probe), without waiting: `None` if no
    /// such message has arrived.
    #[doc(alias = "Iprobe")]
    fn iprobe(&self, source: i32, tag: i32) -> Result<Option<Status>>;

    /// Starts a send of `data` (synchronous if `synchronous`); the request
    /// completes as [`send_bytes`](Communicator::send_bytes) or
    /// [`ssend_bytes`](Communicator::ssend_bytes) would return.
    fn isend_bytes(
        &self,
        data: Vec<u8>,
        dest: i32,
        tag: i32,
        synchronous: bool,
    ) -> Result<Request<'_>>;

    /// Starts a receive; with `max_len`, a longer message is
    /// [`Error::Truncate`] (and never allocated).
    fn irecv_bytes(&self, source: i32, tag: i32, max_len: Option<usize>) -> Result<Request<'_>>;
}

/// The typed forms of every [`Communicator`]'s calls.
///
/// Objects go through serde (postcard); buffers of [`bytemuck::Pod`]
/// elements go as their bytes, counted in elements by [`Status::count`].
///
/// ```
/// use procs_mpi::{ANY_SOURCE, Communicator, CommunicatorExt, Error};
///
/// let got = procs_mpi::run(2, |world| {
///     if world.rank() == 1 {
///         world.send(&("point", [1.5f64, -2.0]), 0, 7).unwrap();
///         world.send_buf(&[10u16, 20, 30], 0, 8).unwrap();
///         return 0;
///     }
///     let (label, xy): (String, [f64; 2]) = world.recv(1, 7).unwrap();
///     assert_eq!((label.as_str(), xy), ("point", [1.5, -2.0]));
///     // Probe for the size, then receive into a buffer that fits.
///     let status = world.probe(ANY_SOURCE, 8).unwrap();
///     let mut buf = vec![0u16; status.count::<u16>()];
///     world.recv_buf(&mut buf, status.source, 8).unwrap();
///     // A rank outside the communicator is MPI's ERR_RANK.
///     assert!(matches!(world.send(&1, 5, 0), Err(Error::InvalidRank { rank: 5, size: 2 })));
///     buf.iter().map(|&x| x as usize).sum()
/// })?;
/// assert_eq!(got[0], 60);
/// # Ok::<(), procs_mpi::Error>(())
/// ```
pub trait CommunicatorExt: Communicator {
    /// Sends an object.
    fn send<T: Serialize + ?Sized>(&self, obj: &T, dest: i32, tag: i32) -> Result<()> {
        self.send_bytes(&encode(obj)?, dest, tag)
    }

    /// Sends an object and returns once a receive matched it.
    fn ssend<T: Serialize + ?Sized>(&self, obj: &T, dest: i32, tag: i32) -> Result<()> {
        self.ssend_bytes(&encode(obj)?, dest, tag)
    }

    /// Receives an object. From `PROC_NULL` there is no object to return:
    /// that is [`Error::ProcNull`] (the buffer forms complete at once).
    fn recv<T: DeserializeOwned>(&self, source: i32, tag: i32) -> Result<T> {
        self.recv_with_status(source, tag).map(|(t, _)| t)
    }

    /// Receives an object and the status of its message.
    fn recv_with_status<T: DeserializeOwned>(&self, source: i32, tag: i32) -> Result<(T, Status)> {
        if source == PROC_NULL {
            return Err(Error::ProcNull);
        }
        let (bytes, st) = self.recv_bytes(source, tag)?;
        Ok((decode(&bytes, st.source)?, st))
    }

    /// Starts a send of an object.
    fn isend<T: Serialize + ?Sized>(&self, obj: &T, dest: i32, tag: i32) -> Result<Request<'_>> {
        self.isend_bytes(encode(obj)?, dest, tag, false)
    }

    /// Starts a synchronous send of an object.
    fn issend<T: Serialize + ?Sized>(&self, obj: &T, dest: i32, tag: i32) -> Result<Request<'_>> {
        self.isend_bytes(encode(obj)?, dest, tag, true)
    }

    /// Starts a receive of an object.
    fn irecv<T: DeserializeOwned>(&self, source: i32, tag: i32) -> Result<RecvRequest<'_, T>> {
        Ok(RecvRequest::new(self.irecv_bytes(source, tag, None)?))
    }

    /// Sends `sendobj` to `dest` and receives an object from `source` at
    /// once, so two ranks exchanging never wait on each other.
    fn sendrecv<S: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        sendobj: &S,
        dest: i32,
        sendtag: i32,
        source: i32,
        recvtag: i32,
    ) -> Result<R> {
        let req = self.isend(sendobj, dest, sendtag)?;
        exchanged(req, self.recv(source, recvtag))
    }

    /// Sends a buffer of plain-old-data elements.
    #[doc(alias = "Send")]
    fn send_buf<T: Pod>(&self, buf: &[T], dest: i32, tag: i32) -> Result<()> {
        self.send_bytes(bytemuck::cast_slice(buf), dest, tag)
    }

    /// Sends a buffer and returns once a receive matched it.
    #[doc(alias = "Ssend")]
    fn ssend_buf<T: Pod>(&self, buf: &[T], dest: i32, tag: i32) -> Result<()> {
        self.ssend_bytes(bytemuck::cast_slice(buf), dest, tag)
    }

    /// Receives into `buf`; [`Status::count`] says how many elements came.
    /// A message longer than `buf` is [`Error::Truncate`].
    #[doc(alias = "Recv")]
    fn recv_buf<T: Pod>(&self, buf: &mut [T], source: i32, tag: i32) -> Result<Status> {
        let st = self.recv_bytes_into(bytemuck::cast_slice_mut(buf), source, tag)?;
        whole_elements::<T>(st)
    }

    /// Starts a send of a buffer (copied: the buffer is free at once).
    #[doc(alias = "Isend")]
    fn isend_buf<T: Pod>(&self, buf: &[T], dest: i32, tag: i32) -> Result<Request<'_>> {
        self.isend_bytes(bytemuck::cast_slice(buf).to_vec(), dest, tag, false)
    }

    /// Starts a receive into `buf`, filled when the request completes.
    #[doc(alias = "Irecv")]
    fn irecv_buf<'a, T: Pod>(
        &'a self,
        buf: &'a mut [T],
        source: i32,
        tag: i32,
    ) -> Result<Request<'a>> {
        let bytes: &'a mut [u8] = bytemuck::cast_slice_mut(buf);
        let req = self.irecv_bytes(source, tag, Some(bytes.len()))?;
        Ok(req.into_buffer(bytes, std::mem::size_of::<T>()))
    }

    /// Sends `sendbuf` and receives into `recvbuf` at once.
    #[doc(alias = "Sendrecv")]
    fn sendrecv_buf<S: Pod, R: Pod>(
        &self,
        sendbuf: &[S],
        dest: i32,
        sendtag: i32,
        recvbuf: &mut [R],
        source: i32,
        recvtag: i32,
    ) -> Result<Status> {
        let req = self.isend_buf(sendbuf, dest, sendtag)?;
        exchanged(req, self.recv_buf(recvbuf, source, recvtag))
    }

    /// Sends `buf` to `dest` and replaces its contents with a message
    /// from `source`.
    #[doc(alias = "Sendrecv_replace")]
    fn sendrecv_replace<T: Pod>(
        &self,
        buf: &mut [T],
        dest: i32,
        sendtag: i32,
        source: i32,
        recvtag: i32,
    ) -> Result<Status> {
        let req = self.isend_buf(buf, dest, sendtag)?;
        exchanged(req, self.recv_buf(buf, source, recvtag))
    }
}

impl<C: Communicator + ?Sized> CommunicatorExt for C {}

/// The end of a send-and-receive: the send is waited for whatever the
/// receive gave, then the receive's error comes first.
fn exchanged<T>(sent: Request<'_>, got: Result<T>) -> Result<T> {
    let sent = sent.wait();
    let got = got?;
    sent?;
    Ok(got)
}

pub(crate) fn encode<T: Serialize + ?Sized>(obj: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(obj).map_err(|e| Error::Encode(e.to_string()))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], source: i32) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::Decode {
        source_rank: source,
        reason: e.to_string(),
    })
}

fn whole_elements<T>(st: Status) -> Result<Status> {
    let size = std::mem::size_of::<T>().max(1);
    if !st.bytes().is_multiple_of(size) {
        return Err(Error::Misaligned {
            len: st.bytes(),
            size,
        });
    }
    Ok(st)
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; gethostname writes at most
    // that many bytes.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "localhost".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// What every communicator of a rank shares: the engine, and the next
/// context number this rank would offer for a new communicator.
pub(crate) struct Core {
    /// The shared-memory engine (none on the MPI backend).
    pub(crate) engine: Option<RefCell<Engine>>,
    pub(crate) next_ctx: Cell<u32>,
    /// The number of collectives this rank made through the world's
    /// collective buffers (the next one is this plus one).
    pub(crate) world_colls: Cell<u64>,
}

/// A communicator of the shared-memory transport: a group of the job's
/// ranks with a context of its own, so that its messages never match a
/// receive on another communicator. [`World`] is the one of every rank;
/// [`dup`](Comm::dup), [`split`](Comm::split) and [`create`](Comm::create)
/// make others.
/// Collectives are its methods, in object and buffer forms
/// ([`bcast`](Comm::bcast), [`allreduce_buf`](Comm::allreduce_buf), ...).
///
/// Not `Send`: the communicators of a rank share its engine, and one
/// thread of a rank talks through them.
pub struct Comm {
    pub(crate) core: Rc<Core>,
    /// Point-to-point traffic goes with context `2 * ctx`, collectives'
    /// with `2 * ctx + 1`.
    pub(crate) ctx: u32,
    /// The world rank of each member, by rank in this communicator.
    pub(crate) group: Rc<[usize]>,
    /// This communicator's rank of each world rank (`-1`: not a member).
    pub(crate) local: Rc<[i32]>,
    pub(crate) rank: i32,
    /// The number of collectives started on this communicator.
    pub(crate) seq: Cell<u32>,
    /// The MPI communicator behind this one, on the MPI backend.
    #[cfg(feature = "openmpi")]
    pub(crate) mpi: Option<crate::openmpi::Mpi>,
}

/// Runs `$e` with `$m`, this communicator's MPI communicator, and returns
/// its value, when the communicator is one of the MPI backend.
/// With `$failed` (an `Option<String>` of this rank's failed arguments),
/// a failure returns as [`Error::Argument`] before MPI is called.
macro_rules! via_mpi {
    ($self:expr, $m:ident => $e:expr) => {
        #[cfg(feature = "openmpi")]
        if let Some($m) = $self.mpi.as_ref() {
            return $e;
        }
    };
    ($self:expr, $failed:expr, $m:ident => $e:expr) => {
        #[cfg(feature = "openmpi")]
        if let Some($m) = $self.mpi.as_ref() {
            if let Some(why) = &$failed {
                return Err($crate::Error::Argument(format!(
                    "rank {}: {why}",
                    $self.rank
                )));
            }
            return $e;
        }
    };
}
pub(crate) use via_mpi;

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Comm")
            .field("rank", &self.rank)
            .field("size", &self.group.len())
            .field("context", &self.ctx)
            .finish()
    }
}

/// The world of a job on this machine: every rank, meeting in one shared
/// segment. From [`init`](crate::init), or handed to each rank by
/// [`run`](crate::run). It dereferences to its [`Comm`], whose methods
/// (collectives, `split`, `create_cart`, ...) it has.
pub struct World {
    comm: Comm,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("rank", &self.comm.rank)
            .field("size", &self.comm.group.len())
            .finish()
    }
}

impl std::ops::Deref for World {
    type Target = Comm;

    fn deref(&self) -> &Comm {
        &self.comm
    }
}

impl World {
    pub(crate) fn new(engine: Engine) -> World {
        engine.attach();
        let n = engine.size();
        let rank = engine.rank as i32;
        let core = Rc::new(Core {
            engine: Some(RefCell::new(engine)),
            next_ctx: Cell::new(1),
            world_colls: Cell::new(0),
        });
        World {
            comm: Comm::with_group(core, 0, (0..n).collect(), n, rank as usize),
        }
    }

    /// The world of an MPI job.
    #[cfg(feature = "openmpi")]
    pub(crate) fn over_mpi(mpi: crate::openmpi::Mpi) -> Result<World> {
        let core = Rc::new(Core {
            engine: None,
            next_ctx: Cell::new(1),
            world_colls: Cell::new(0),
        });
        Ok(World {
            comm: Comm::over_mpi(&core, mpi)?,
        })
    }

    /// The backend this world's communicators run on.
    pub fn backend(&self) -> Backend {
        #[cfg(feature = "openmpi")]
        if self.comm.mpi.is_some() {
            return Backend::Mpi;
        }
        Backend::SharedMemory
    }

    /// The largest message (in bytes) sent eagerly: a standard-mode send of
    /// up to this many bytes returns without waiting for its receiver (while
    /// the ring towards it has room); a larger one waits for a receive. On
    /// the MPI backend, 0: the MPI library chooses, and no send is known to
    /// return before its receive.
    pub fn eager_limit(&self) -> usize {
        via_mpi!(self.comm, _m => 0);
        self.comm.engine().eager_limit()
    }

    /// Completes this rank's sends in flight and marks it finished (it will
    /// send nothing more). [`run`](crate::run) calls it when the closure
    /// returns, and dropping the world does; calls after it fail.
    #[doc(alias = "Finalize")]
    pub fn finalize(&self) -> Result<()> {
        via_mpi!(self.comm, _m => Ok(()));
        self.comm.engine().finalize()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // A rank unwinding from a panic has not finished its work: the
        // others learn of its end from its launcher (RankDied), not as a
        // finish.
        if !std::thread::panicking()
            && let Some(engine) = &self.comm.core.engine
            && let Ok(mut e) = engine.try_borrow_mut()
        {
            let _ = e.finalize();
        }
    }
}

impl Comm {
    /// A communicator of `group` (world ranks, by new rank) with context
    /// `ctx`, seen from world rank `me` (a member).
    pub(crate) fn with_group(
        core: Rc<Core>,
        ctx: u32,
        group: Vec<usize>,
        world_size: usize,
        me: usize,
    ) -> Comm {
        let mut local = vec![-1i32; world_size];
        for (i, &w) in group.iter().enumerate() {
            local[w] = i as i32;
        }
        Comm {
            rank: local[me],
            core,
            ctx,
            group: group.into(),
            local: local.into(),
            seq: Cell::new(0),
            #[cfg(feature = "openmpi")]
            mpi: None,
        }
    }

    /// A communicator over an MPI communicator (its group in world ranks).
    #[cfg(feature = "openmpi")]
    pub(crate) fn over_mpi(core: &Rc<Core>, mpi: crate::openmpi::Mpi) -> Result<Comm> {
        let group = mpi.world_ranks()?;
        let world_size = group.iter().max().map_or(0, |&w| w + 1);
        let me = group[mpi.rank() as usize];
        let mut c = Comm::with_group(core.clone(), 0, group, world_size, me);
        c.mpi = Some(mpi);
        Ok(c)
    }

    /// A communicator of this one's rank over `mpi`, made from it.
    #[cfg(feature = "openmpi")]
    pub(crate) fn derived(&self, mpi: crate::openmpi::Mpi) -> Result<Comm> {
        Comm::over_mpi(&self.core, mpi)
    }

    pub(crate) fn engine(&self) -> std::cell::RefMut<'_, Engine> {
        self.core
            .engine
            .as_ref()
            .expect("a call of the shared-memory backend on an MPI communicator")
            .borrow_mut()
    }

    /// The world rank of this communicator's rank `r` (in range).
    pub(crate) fn world_of(&self, r: i32) -> usize {
        self.group[r as usize]
    }

    /// A status from the engine (world ranks) in this communicator's ranks.
    pub(crate) fn local_status(&self, mut st: Status) -> Status {
        if st.source >= 0 {
            st.source = self.local.get(st.source as usize).copied().unwrap_or(-1);
        }
        st
    }

    /// An engine's outcome with the rank it names (world ranks) in this
    /// communicator's ranks, as the caller knows them.
    pub(crate) fn here<T>(&self, r: Result<T>) -> Result<T> {
        let local = |w: i32| match self.local.get(w as usize) {
            Some(&l) if w >= 0 && l >= 0 => l,
            _ => w,
        };
        r.map_err(|e| match e {
            Error::RankDied { rank, how } => Error::RankDied {
                rank: local(rank),
                how,
            },
            Error::RankFinished { rank } => Error::RankFinished { rank: local(rank) },
            other => other,
        })
    }

    fn dest(&self, dest: i32) -> Result<Option<usize>> {
        if dest == PROC_NULL {
            return Ok(None);
        }
        if dest < 0 || dest as usize >= self.group.len() {
            return Err(Error::InvalidRank {
                rank: dest,
                size: self.group.len() as i32,
            });
        }
        Ok(Some(self.world_of(dest)))
    }

    fn source(&self, source: i32) -> Result<Option<i32>> {
        if source == PROC_NULL {
            return Ok(None);
        }
        if source == ANY_SOURCE {
            return Ok(Some(ANY_SOURCE));
        }
        if source < 0 || source as usize >= self.group.len() {
            return Err(Error::InvalidRank {
                rank: source,
                size: self.group.len() as i32,
            });
        }
        Ok(Some(self.world_of(source) as i32))
    }

    fn send_tag(tag: i32) -> Result<i32> {
        if tag < 0 {
            return Err(Error::InvalidTag(tag));
        }
        Ok(tag)
    }

    fn recv_tag(tag: i32) -> Result<i32> {
        if tag < 0 && tag != ANY_TAG {
            return Err(Error::InvalidTag(tag));
        }
        Ok(tag)
    }

    /// The context of this communicator's point-to-point messages.
    fn p2p(&self) -> u32 {
        self.ctx * 2
    }

    /// A receive's status in this communicator's ranks. (An ANY_SOURCE
    /// receive never matches a rank outside the communicator: communicators
    /// that share a context number, as the parts of one split do, have no
    /// member in common, and a rank sends on a context only to its own
    /// communicator's members.)
    fn recv_status(&self, r: Result<Status>) -> Result<Status> {
        r.map(|st| self.local_status(st))
    }
}

impl Communicator for Comm {
    fn rank(&self) -> i32 {
        self.rank
    }

    fn size(&self) -> i32 {
        self.group.len() as i32
    }

    fn processor_name(&self) -> String {
        via_mpi!(self, m => m.processor_name().unwrap_or_else(hostname));
        hostname()
    }

    fn abort(&self, code: i32) -> ! {
        #[cfg(feature = "openmpi")]
        if let Some(m) = &self.mpi {
            m.abort(code)
        }
        let engine = self.engine();
        engine.job.set_aborted(engine.rank, code);
        std::process::exit(code)
    }

    fn send_bytes(&self, data: &[u8], dest: i32, tag: i32) -> Result<()> {
        let tag = Self::send_tag(tag)?;
        let d = self.dest(dest)?;
        via_mpi!(self, m => d.map_or(Ok(()), |_| m.send(data, dest, tag, false)));
        match d {
            None => Ok(()),
            Some(d) => self.here(self.engine().send(data, d, self.p2p(), tag, false)),
        }
    }

    fn ssend_bytes(&self, data: &[u8], dest: i32, tag: i32) -> Result<()> {
        let tag = Self::send_tag(tag)?;
        let d = self.dest(dest)?;
        via_mpi!(self, m => d.map_or(Ok(()), |_| m.send(data, dest, tag, true)));
        match d {
            None => Ok(()),
            Some(d) => self.here(self.engine().send(data, d, self.p2p(), tag, true)),
        }
    }

    fn recv_bytes_into(&self, buf: &mut [u8], source: i32, tag: i32) -> Result<Status> {
        let tag = Self::recv_tag(tag)?;
        let s = self.source(source)?;
        via_mpi!(self, m => match s {
            None => Ok(Status::proc_null()),
            Some(_) => m.recv_into(buf, source, tag),
        });
        match s {
            None => Ok(Status::proc_null()),
            Some(s) => {
                let r = self.here(self.engine().recv_into(buf, s, self.p2p(), tag));
                self.recv_status(r)
            }
        }
    }

    fn recv_bytes(&self, source: i32, tag: i32) -> Result<(Vec<u8>, Status)> {
        let tag = Self::recv_tag(tag)?;
        let s = self.source(source)?;
        via_mpi!(self, m => match s {
            None => Ok((Vec::new(), Status::proc_null())),
            Some(_) => m.recv_vec(source, tag),
        });
        match s {
            None => Ok((Vec::new(), Status::proc_null())),
            Some(s) => {
                let (v, st) = self.here(self.engine().recv_vec(s, self.p2p(), tag))?;
                Ok((v, self.local_status(st)))
            }
        }
    }

    fn probe(&self, source: i32, tag: i32) -> Result<Status> {
        let tag = Self::recv_tag(tag)?;
        let s = self.source(source)?;
        via_mpi!(self, m => match s {
            None => Ok(Status::proc_null()),
            Some(_) => m.probe(source, tag),
        });
        match s {
            None => Ok(Status::proc_null()),
            Some(s) => {
                let r = self.here(self.engine().probe(s, self.p2p(), tag));
                self.recv_status(r)
            }
        }
    }

    fn iprobe(&self, source: i32, tag: i32) -> Result<Option<Status>> {
        let tag = Self::recv_tag(tag)?;
        let s = self.source(source)?;
        via_mpi!(self, m => match s {
            None => Ok(Some(Status::proc_null())),
            Some(_) => m.iprobe(source, tag),
        });
        match s {
            None => Ok(Some(Status::proc_null())),
            Some(s) => Ok(self
                .here(self.engine().iprobe(s, self.p2p(), tag))?
                .map(|st| self.local_status(st))),
        }
    }

    fn isend_bytes(
        &self,
        data: Vec<u8>,
        dest: i32,
        tag: i32,
        synchronous: bool,
    ) -> Result<Request<'_>> {
        let tag = Self::send_tag(tag)?;
        let d = self.dest(dest)?;
        via_mpi!(self, m => match d {
            None => Ok(Request::completed(m, Status::proc_null())),
            Some(_) => Ok(Request::new(m, m.isend(data, dest, tag, synchronous)?)),
        });
        match d {
            None => Ok(Request::completed(self, Status::proc_null())),
            Some(d) => {
                let id = self.here(self.engine().isend(data, d, self.p2p(), tag, synchronous))?;
                Ok(Request::new(self, id))
            }
        }
    }

    fn irecv_bytes(&self, source: i32, tag: i32, max_len: Option<usize>) -> Result<Request<'_>> {
        let tag = Self::recv_tag(tag)?;
        let s = self.source(source)?;
        via_mpi!(self, m => match s {
            None => Ok(Request::completed(m, Status::proc_null())),
            Some(_) => Ok(Request::new(m, m.irecv(source, tag, max_len)?)),
        });
        match s {
            None => Ok(Request::completed(self, Status::proc_null())),
            Some(s) => {
                let id = self.here(self.engine().irecv(s, self.p2p(), tag, max_len))?;
                Ok(Request::new(self, id))
            }
        }
    }
}

impl Requests for Comm {
    fn wait_any(&self, ids: &[u64]) -> Result<(usize, crate::request::Completion)> {
        let (i, c) = self.here(self.engine().wait_any(ids))?;
        Ok((i, self.here(c.map(|(st, v)| (self.local_status(st), v)))))
    }

    fn test(&self, id: u64) -> Result<bool> {
        self.here(self.engine().test(id))
    }

    fn take(&self, id: u64) -> Option<crate::request::Completion> {
        let c = self.engine().take(id)?;
        Some(self.here(c.map(|(st, v)| (self.local_status(st), v))))
    }

    fn cancel(&self, id: u64) -> bool {
        self.engine().cancel(id)
    }

    fn forget(&self, id: u64) {
        if let Some(engine) = &self.core.engine
            && let Ok(mut e) = engine.try_borrow_mut()
        {
            e.forget(id);
        }
    }
}

/// The world is a communicator: every call goes to its [`Comm`].
impl Communicator for World {
    fn rank(&self) -> i32 {
        self.comm.rank()
    }

    fn size(&self) -> i32 {
        self.comm.size()
    }

    fn abort(&self, code: i32) -> ! {
        self.comm.abort(code)
    }

    fn send_bytes(&self, data: &[u8], dest: i32, tag: i32) -> Result<()> {
        self.comm.send_bytes(data, dest, tag)
    }

    fn ssend_bytes(&self, data: &[u8], dest: i32, tag: i32) -> Result<()> {
        self.comm.ssend_bytes(data, dest, tag)
    }

    fn recv_bytes_into(&self, buf: &mut [u8], source: i32, tag: i32) -> Result<Status> {
        self.comm.recv_bytes_into(buf, source, tag)
    }

    fn recv_bytes(&self, source: i32, tag: i32) -> Result<(Vec<u8>, Status)> {
        self.comm.recv_bytes(source, tag)
    }

    fn probe(&self, source: i32, tag: i32) -> Result<Status> {
        self.comm.probe(source, tag)
    }

    fn iprobe(&self, source: i32, tag: i32) -> Result<Option<Status>> {
        self.comm.iprobe(source, tag)
    }

    fn isend_bytes(
        &self,
        data: Vec<u8>,
        dest: i32,
        tag: i32,
        synchronous: bool,
    ) -> Result<Request<'_>> {
        self.comm.isend_bytes(data, dest, tag, synchronous)
    }

    fn irecv_bytes(&self, source: i32, tag: i32, max_len: Option<usize>) -> Result<Request<'_>> {
        self.comm.irecv_bytes(source, tag, max_len)
    }
}
