//! The MPI backend (feature `openmpi`): the same communicators over a real
//! MPI library, through the `mpi` crate's bindings, for jobs that `mpirun`
//! starts, on one machine or many.
//!
//! Every call maps onto MPI's own: point-to-point onto `MPI_Send`,
//! `MPI_Ssend`, `MPI_Recv`, `MPI_Mprobe`/`MPI_Mrecv` (a receive of any
//! length), `MPI_Isend`/`MPI_Irecv`; collectives onto `MPI_Barrier`,
//! `MPI_Bcast`, `MPI_Gather(v)`, `MPI_Scatter(v)`, `MPI_Allgather(v)`,
//! `MPI_Alltoall(v)`, `MPI_Reduce`, `MPI_Allreduce`, `MPI_Scan`,
//! `MPI_Exscan`, `MPI_Reduce_scatter(_block)` and their nonblocking forms;
//! communicators onto `MPI_Comm_dup`, `MPI_Comm_split`,
//! `MPI_Comm_split_type`, `MPI_Comm_create` and `MPI_Cart_create`. Objects
//! travel as their encodings, with their lengths first (a gather's lengths,
//! then a `Gatherv` of the bytes). A reduction of objects gathers them and
//! folds in rank order, as the shared-memory backend does.
//!
//! Reductions of integers and floats use MPI's predefined operations on
//! MPI's types (MPI chooses the order of a floating-point sum); a user
//! operation, and MAXLOC/MINLOC on [`ValueIndex`](crate::ValueIndex) pairs
//! (whose layouts MPI has no type for), run this crate's fold as an MPI
//! user function over a datatype made for the call, by which the function
//! finds its operation.
//!
//! Every communicator returns MPI's errors (`MPI_ERRORS_RETURN`), and each
//! comes back as [`Error::Mpi`] naming the call. Arguments are checked
//! before the call with the same errors as the shared-memory backend's. A
//! rank that dies ends the job, as MPI does: there is no `RankDied` and no
//! deadlock report on this backend.

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::rc::Rc;

use bytemuck::Pod;
use mpi::ffi;

use crate::error::{Error, Result};
use crate::op::{Builtin, Element, Op};
use crate::request::{Completion, Requests};
use crate::{ANY_SOURCE, ANY_TAG, PROC_NULL, Status, UNDEFINED};

/// Whether this process was started by an MPI launcher (`mpirun`,
/// `mpiexec`, `srun`): its environment names a rank.
pub(crate) fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// MPI initialized for this process; finalized when the last communicator
/// goes.
pub(crate) struct Session {
    _universe: mpi::environment::Universe,
    /// The user function's operations, commutative and not.
    user_ops: [Cell<Option<ffi::MPI_Op>>; 2],
}

impl Session {
    pub(crate) fn start() -> Result<Rc<Session>> {
        let universe = mpi::initialize()
            .ok_or_else(|| Error::Job("MPI was already initialized in this process".into()))?;
        Ok(Rc::new(Session {
            _universe: universe,
            user_ops: [Cell::new(None), Cell::new(None)],
        }))
    }

    fn user_op(&self, commutative: bool) -> Result<ffi::MPI_Op> {
        let slot = &self.user_ops[usize::from(commutative)];
        if let Some(op) = slot.get() {
            return Ok(op);
        }
        let mut op = std::mem::MaybeUninit::<ffi::MPI_Op>::uninit();
        // SAFETY: `user_function` has MPI_User_function's signature; MPI
        // writes the new handle into `op`.
        check("MPI_Op_create", unsafe {
            ffi::MPI_Op_create(
                Some(user_function),
                c_int::from(commutative),
                op.as_mut_ptr(),
            )
        })?;
        // SAFETY: MPI_Op_create succeeded, so it wrote the handle.
        let op = unsafe { op.assume_init() };
        slot.set(Some(op));
        Ok(op)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A rank unwinding from a panic must not finalize: MPI_Finalize
            // waits for the other ranks, which may be waiting for this one
            // in a call it will never make. The job ends instead, as MPI
            // ends it for a rank that dies (101: a panic's exit code).
            // SAFETY: MPI is initialized (this session holds it); aborting
            // the world communicator ends every rank and does not return.
            unsafe { ffi::MPI_Abort(ffi::RSMPI_COMM_WORLD, 101) };
        }
        for slot in &self.user_ops {
            if let Some(mut op) = slot.take() {
                // SAFETY: the handle came from MPI_Op_create and is freed
                // once, before MPI is finalized (the universe drops after).
                unsafe { ffi::MPI_Op_free(&mut op) };
            }
        }
    }
}

/// An MPI call's return code as a result.
fn check(call: &'static str, code: c_int) -> Result<()> {
    if code == ffi::MPI_SUCCESS as c_int {
        return Ok(());
    }
    let mut class: c_int = 0;
    // SAFETY: MPI_Error_class only writes `class`.
    unsafe { ffi::MPI_Error_class(code, &mut class) };
    let mut buf = vec![0u8; ffi::MPI_MAX_ERROR_STRING as usize + 1];
    let mut len: c_int = 0;
    // SAFETY: `buf` holds MPI_MAX_ERROR_STRING bytes and more, as
    // MPI_Error_string requires; it writes `len`.
    unsafe { ffi::MPI_Error_string(code, buf.as_mut_ptr().cast(), &mut len) };
    buf.truncate(len.clamp(0, buf.len() as c_int) as usize);
    Err(Error::Mpi {
        call,
        class,
        message: String::from_utf8_lossy(&buf).into_owned(),
    })
}

fn is_truncate(e: &Error) -> bool {
    matches!(e, Error::Mpi { class, .. } if *class == ffi::MPI_ERR_TRUNCATE as c_int)
}

/// A count as MPI takes it.
fn count(n: usize) -> Result<c_int> {
    c_int::try_from(n)
        .map_err(|_| Error::Argument(format!("{n} elements: MPI counts go up to {}", c_int::MAX)))
}

fn counts(ns: &[usize]) -> Result<Vec<c_int>> {
    ns.iter().map(|&n| count(n)).collect()
}

fn bytes() -> ffi::MPI_Datatype {
    // SAFETY: reading an MPI predefined handle, set at load time.
    unsafe { ffi::RSMPI_UINT8_T }
}

/// MPI's type for `T`, if it has one this crate's reductions agree with.
fn predefined<T: 'static>() -> Option<ffi::MPI_Datatype> {
    let t = TypeId::of::<T>();
    // SAFETY: every read below is of an MPI predefined handle, set at
    // load time.
    unsafe {
        Some(match () {
            _ if t == TypeId::of::<i8>() => ffi::RSMPI_INT8_T,
            _ if t == TypeId::of::<i16>() => ffi::RSMPI_INT16_T,
            _ if t == TypeId::of::<i32>() => ffi::RSMPI_INT32_T,
            _ if t == TypeId::of::<i64>() => ffi::RSMPI_INT64_T,
            _ if t == TypeId::of::<u8>() => ffi::RSMPI_UINT8_T,
            _ if t == TypeId::of::<u16>() => ffi::RSMPI_UINT16_T,
            _ if t == TypeId::of::<u32>() => ffi::RSMPI_UINT32_T,
            _ if t == TypeId::of::<u64>() => ffi::RSMPI_UINT64_T,
            _ if t == TypeId::of::<f32>() => ffi::RSMPI_FLOAT,
            _ if t == TypeId::of::<f64>() => ffi::RSMPI_DOUBLE,
            _ => return None,
        })
    }
}

fn predefined_op(b: Builtin) -> Option<ffi::MPI_Op> {
    // SAFETY: every read below is of an MPI predefined handle.
    unsafe {
        Some(match b {
            Builtin::Sum => ffi::RSMPI_SUM,
            Builtin::Prod => ffi::RSMPI_PROD,
            Builtin::Max => ffi::RSMPI_MAX,
            Builtin::Min => ffi::RSMPI_MIN,
            Builtin::Land => ffi::RSMPI_LAND,
            Builtin::Lor => ffi::RSMPI_LOR,
            Builtin::Lxor => ffi::RSMPI_LXOR,
            Builtin::Band => ffi::RSMPI_BAND,
            Builtin::Bor => ffi::RSMPI_BOR,
            Builtin::Bxor => ffi::RSMPI_BXOR,
            Builtin::MaxLoc | Builtin::MinLoc => return None,
        })
    }
}

/// A fold of `n` elements: `inout <- in ∘ inout`, on raw buffers.
type Fold = Box<dyn Fn(*const u8, *mut u8, usize)>;

thread_local! {
    /// The user folds of the reductions in flight on this thread, by the
    /// datatype made for each.
    static FOLDS: RefCell<Vec<(ffi::MPI_Datatype, Rc<Fold>)>> = const { RefCell::new(Vec::new()) };
}

/// MPI's user function for every user fold: finds the fold by the
/// datatype, which is made for one reduction.
unsafe extern "C" fn user_function(
    invec: *mut c_void,
    inoutvec: *mut c_void,
    len: *mut c_int,
    datatype: *mut ffi::MPI_Datatype,
) {
    // SAFETY: MPI passes valid pointers to the length and the datatype.
    let (n, dt) = unsafe { (*len, *datatype) };
    let fold = FOLDS.with(|f| {
        f.borrow()
            .iter()
            .find(|(d, _)| *d == dt)
            .map(|(_, fold)| fold.clone())
    });
    let Some(fold) = fold else {
        eprintln!("procs-mpi: an MPI reduction called a user function it does not know");
        std::process::abort();
    };
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fold(invec.cast(), inoutvec.cast(), n.max(0) as usize)
    }));
    if done.is_err() {
        // Unwinding through MPI is undefined: the job ends, as an MPI
        // user function's failure ends it.
        std::process::abort();
    }
}

/// The datatype and operation of one reduction; a user fold's datatype is
/// freed and its registration dropped with it.
pub(crate) struct Reduction {
    datatype: ffi::MPI_Datatype,
    op: ffi::MPI_Op,
    made: bool,
}

impl Reduction {
    fn new<T: Element>(session: &Session, op: &Op<T>) -> Result<Reduction> {
        op.check().map_err(Error::Argument)?;
        if let (Some(dt), Some(b)) = (predefined::<T>(), op.builtin())
            && let Some(mop) = predefined_op(b)
        {
            return Ok(Reduction {
                datatype: dt,
                op: mop,
                made: false,
            });
        }
        let size = count(std::mem::size_of::<T>())?;
        let mut dt = std::mem::MaybeUninit::<ffi::MPI_Datatype>::uninit();
        // SAFETY: a contiguous type of `size` bytes; MPI writes the handle.
        check("MPI_Type_contiguous", unsafe {
            ffi::MPI_Type_contiguous(size, bytes(), dt.as_mut_ptr())
        })?;
        // SAFETY: written by the successful call above.
        let mut dt = unsafe { dt.assume_init() };
        // SAFETY: `dt` is a datatype just made.
        if let Err(e) = check("MPI_Type_commit", unsafe { ffi::MPI_Type_commit(&mut dt) }) {
            // SAFETY: `dt` was made above and is freed once.
            unsafe { ffi::MPI_Type_free(&mut dt) };
            return Err(e);
        }
        let mop = session.user_op(op.is_commutative())?;
        let op = op.clone();
        let fold: Fold = Box::new(move |inp, inout, n| {
            let width = std::mem::size_of::<T>();
            let mut acc = vec![T::zeroed(); n];
            let mut x = vec![T::zeroed(); n];
            // SAFETY: MPI hands `n` elements of this reduction's datatype
            // (`width` bytes each) at both pointers, perhaps unaligned: they
            // are copied bytewise into aligned vectors.
            unsafe {
                std::ptr::copy_nonoverlapping(inp, acc.as_mut_ptr().cast::<u8>(), n * width);
                std::ptr::copy_nonoverlapping(inout, x.as_mut_ptr().cast::<u8>(), n * width);
            }
            // `in` holds the lower ranks' part: in ∘ inout, in rank order.
            if op.apply(&mut acc, &x).is_err() {
                std::process::abort();
            }
            // SAFETY: as above; `inout` is writable for `n` elements.
            unsafe { std::ptr::copy_nonoverlapping(acc.as_ptr().cast::<u8>(), inout, n * width) };
        });
        FOLDS.with(|f| f.borrow_mut().push((dt, Rc::new(fold))));
        Ok(Reduction {
            datatype: dt,
            op: mop,
            made: true,
        })
    }
}

impl Drop for Reduction {
    fn drop(&mut self) {
        if self.made {
            let dt = self.datatype;
            FOLDS.with(|f| f.borrow_mut().retain(|(d, _)| *d != dt));
            // SAFETY: the datatype was made for this reduction alone and is
            // freed once, after its last use.
            unsafe { ffi::MPI_Type_free(&mut self.datatype) };
        }
    }
}

/// What a nonblocking call keeps until it completes.
enum Pending {
    /// A send: its bytes.
    Send(ffi::MPI_Request, #[allow(dead_code)] Vec<u8>),
    /// A receive into a buffer of the given length.
    Recv(ffi::MPI_Request, Vec<u8>),
    /// A receive of any length, matched by a probe when it is waited for
    /// or tested.
    Probe { source: c_int, tag: c_int },
    /// A collective, and what it keeps alive (its buffers, its reduction)
    /// until it completes; then its result's bytes.
    Coll(ffi::MPI_Request, Box<dyn Kept>),
    /// Completed, until taken.
    Done(Completion),
}

/// What a nonblocking collective keeps while MPI works on it; its result
/// once it completes.
trait Kept {
    fn into_bytes(self: Box<Self>) -> Vec<u8>;
}

impl Kept for () {
    fn into_bytes(self: Box<Self>) -> Vec<u8> {
        Vec::new()
    }
}

impl Kept for Vec<u8> {
    fn into_bytes(self: Box<Self>) -> Vec<u8> {
        *self
    }
}

/// A nonblocking reduction's buffers and operation.
struct Reduced<T> {
    #[allow(dead_code)]
    send: Vec<T>,
    recv: Vec<T>,
    #[allow(dead_code)]
    red: Reduction,
}

impl<T: Element> Kept for Reduced<T> {
    fn into_bytes(self: Box<Self>) -> Vec<u8> {
        bytemuck::cast_slice(&self.recv).to_vec()
    }
}

/// A communicator of the MPI backend.
pub(crate) struct Mpi {
    comm: ffi::MPI_Comm,
    /// Freed on drop (not the world).
    owned: bool,
    rank: i32,
    size: i32,
    pending: RefCell<HashMap<u64, Pending>>,
    next: Cell<u64>,
    /// Dropped last: MPI is finalized with the last communicator.
    session: Rc<Session>,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .finish()
    }
}

impl Drop for Mpi {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.pending.borrow().keys().copied().collect();
        for id in ids {
            self.forget(id);
        }
        if self.owned {
            // SAFETY: the communicator was made for this value alone and is
            // freed once; MPI is still initialized (`session` drops after).
            unsafe { ffi::MPI_Comm_free(&mut self.comm) };
        }
    }
}

fn status_of(st: &ffi::MPI_Status) -> Result<Status> {
    let mut n: c_int = 0;
    // SAFETY: `st` is a status MPI filled; MPI_Get_count writes `n`.
    check("MPI_Get_count", unsafe {
        ffi::MPI_Get_count(st, bytes(), &mut n)
    })?;
    Ok(Status::new(st.MPI_SOURCE, st.MPI_TAG, n.max(0) as usize))
}

fn new_status() -> ffi::MPI_Status {
    // SAFETY: MPI_Status is a plain C struct; all zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}

fn any(source: i32) -> c_int {
    // SAFETY: reading MPI predefined constants.
    unsafe {
        match source {
            ANY_SOURCE => ffi::RSMPI_ANY_SOURCE,
            PROC_NULL => ffi::RSMPI_PROC_NULL,
            s => s,
        }
    }
}

fn any_tag(tag: i32) -> c_int {
    if tag == ANY_TAG {
        // SAFETY: reading an MPI predefined constant.
        unsafe { ffi::RSMPI_ANY_TAG }
    } else {
        tag
    }
}

impl Mpi {
    /// The world of this MPI job, with MPI's errors returned.
    pub(crate) fn world(session: Rc<Session>) -> Result<Mpi> {
        // SAFETY: reading MPI's world handle, valid once initialized.
        let comm = unsafe { ffi::RSMPI_COMM_WORLD };
        Mpi::wrap(session, comm, false)
    }

    fn wrap(session: Rc<Session>, comm: ffi::MPI_Comm, owned: bool) -> Result<Mpi> {
        let (mut rank, mut size) = (0, 0);
        // SAFETY: `comm` is a valid communicator; the calls write their
        // outputs only.
        unsafe {
            check(
                "MPI_Comm_set_errhandler",
                ffi::MPI_Comm_set_errhandler(comm, ffi::RSMPI_ERRORS_RETURN),
            )?;
            check("MPI_Comm_rank", ffi::MPI_Comm_rank(comm, &mut rank))?;
            check("MPI_Comm_size", ffi::MPI_Comm_size(comm, &mut size))?;
        }
        Ok(Mpi {
            comm,
            owned,
            rank,
            size,
            pending: RefCell::new(HashMap::new()),
            next: Cell::new(1),
            session,
        })
    }

    /// A new communicator from a call that writes one (`COMM_NULL`: this
    /// rank is not in it).
    fn made(
        &self,
        call: &'static str,
        f: impl FnOnce(*mut ffi::MPI_Comm) -> c_int,
    ) -> Result<Option<Mpi>> {
        // SAFETY: reading MPI's null handle.
        let null = unsafe { ffi::RSMPI_COMM_NULL };
        let mut comm = null;
        check(call, f(&mut comm))?;
        if comm == null {
            return Ok(None);
        }
        Mpi::wrap(self.session.clone(), comm, true).map(Some)
    }

    pub(crate) fn rank(&self) -> i32 {
        self.rank
    }

    /// The world ranks of this communicator's ranks, in its rank order.
    pub(crate) fn world_ranks(&self) -> Result<Vec<usize>> {
        let mut mine = std::mem::MaybeUninit::<ffi::MPI_Group>::uninit();
        let mut world = std::mem::MaybeUninit::<ffi::MPI_Group>::uninit();
        let ranks: Vec<c_int> = (0..self.size).collect();
        let mut out = vec![0 as c_int; ranks.len()];
        // SAFETY: the groups are written by MPI_Comm_group before they are
        // read and freed once each; `ranks` and `out` hold `size` entries.
        unsafe {
            check(
                "MPI_Comm_group",
                ffi::MPI_Comm_group(self.comm, mine.as_mut_ptr()),
            )?;
            let mut mine = mine.assume_init();
            let r = check(
                "MPI_Comm_group",
                ffi::MPI_Comm_group(ffi::RSMPI_COMM_WORLD, world.as_mut_ptr()),
            );
            if r.is_ok() {
                let mut world = world.assume_init();
                let t = check(
                    "MPI_Group_translate_ranks",
                    ffi::MPI_Group_translate_ranks(
                        mine,
                        self.size,
                        ranks.as_ptr(),
                        world,
                        out.as_mut_ptr(),
                    ),
                );
                ffi::MPI_Group_free(&mut world);
                ffi::MPI_Group_free(&mut mine);
                t?;
            } else {
                ffi::MPI_Group_free(&mut mine);
                r?;
            }
        }
        Ok(out.into_iter().map(|r| r.max(0) as usize).collect())
    }

    pub(crate) fn abort(&self, code: i32) -> ! {
        // SAFETY: MPI_Abort ends every process of the communicator's job.
        unsafe { ffi::MPI_Abort(self.comm, code) };
        std::process::exit(code)
    }

    pub(crate) fn processor_name(&self) -> Option<String> {
        let mut buf = vec![0u8; ffi::MPI_MAX_PROCESSOR_NAME as usize + 1];
        let mut len: c_int = 0;
        // SAFETY: `buf` holds MPI_MAX_PROCESSOR_NAME bytes and more.
        let r = unsafe { ffi::MPI_Get_processor_name(buf.as_mut_ptr().cast(), &mut len) };
        check("MPI_Get_processor_name", r).ok()?;
        buf.truncate(len.clamp(0, buf.len() as c_int) as usize);
        Some(String::from_utf8_lossy(&buf).into_owned())
    }

    // ---- point to point (ranks and tags are checked by the caller) ----

    pub(crate) fn send(&self, data: &[u8], dest: i32, tag: i32, sync: bool) -> Result<()> {
        let n = count(data.len())?;
        // SAFETY: `data` is readable for `n` bytes during the call.
        unsafe {
            if sync {
                check(
                    "MPI_Ssend",
                    ffi::MPI_Ssend(data.as_ptr().cast(), n, bytes(), dest, tag, self.comm),
                )
            } else {
                check(
                    "MPI_Send",
                    ffi::MPI_Send(data.as_ptr().cast(), n, bytes(), dest, tag, self.comm),
                )
            }
        }
    }

    pub(crate) fn recv_into(&self, buf: &mut [u8], source: i32, tag: i32) -> Result<Status> {
        let mut st = new_status();
        let cap = buf.len();
        // SAFETY: `buf` is writable for its length, which is the count.
        let r = check("MPI_Recv", unsafe {
            ffi::MPI_Recv(
                buf.as_mut_ptr().cast(),
                count(cap)?,
                bytes(),
                any(source),
                any_tag(tag),
                self.comm,
                &mut st,
            )
        });
        match r {
            Err(e) if is_truncate(&e) => Err(Error::Truncate {
                len: cap + 1,
                capacity: cap,
            }),
            Err(e) => Err(e),
            Ok(()) => status_of(&st),
        }
    }

    /// Receives a matched message of any length.
    fn mrecv(&self, mut msg: ffi::MPI_Message, st: &ffi::MPI_Status) -> Result<(Vec<u8>, Status)> {
        let status = status_of(st)?;
        let mut v = vec![0u8; status.bytes()];
        let mut st2 = new_status();
        // SAFETY: `v` has room for the probed message's length; `msg` is the
        // matched message handle, received once.
        check("MPI_Mrecv", unsafe {
            ffi::MPI_Mrecv(
                v.as_mut_ptr().cast(),
                count(v.len())?,
                bytes(),
                &mut msg,
                &mut st2,
            )
        })?;
        Ok((v, status))
    }

    pub(crate) fn recv_vec(&self, source: i32, tag: i32) -> Result<(Vec<u8>, Status)> {
        let mut msg = std::mem::MaybeUninit::<ffi::MPI_Message>::uninit();
        let mut st = new_status();
        // SAFETY: MPI writes the message handle and the status.
        check("MPI_Mprobe", unsafe {
            ffi::MPI_Mprobe(
                any(source),
                any_tag(tag),
                self.comm,
                msg.as_mut_ptr(),
                &mut st,
            )
        })?;
        // SAFETY: written by the successful probe.
        self.mrecv(unsafe { msg.assume_init() }, &st)
    }

    pub(crate) fn probe(&self, source: i32, tag: i32) -> Result<Status> {
        let mut st = new_status();
        // SAFETY: MPI writes the status.
        check("MPI_Probe", unsafe {
            ffi::MPI_Probe(any(source), any_tag(tag), self.comm, &mut st)
        })?;
        status_of(&st)
    }

    pub(crate) fn iprobe(&self, source: i32, tag: i32) -> Result<Option<Status>> {
        let mut st = new_status();
        let mut flag: c_int = 0;
        // SAFETY: MPI writes the flag and the status.
        check("MPI_Iprobe", unsafe {
            ffi::MPI_Iprobe(any(source), any_tag(tag), self.comm, &mut flag, &mut st)
        })?;
        if flag == 0 {
            return Ok(None);
        }
        status_of(&st).map(Some)
    }

    fn add(&self, p: Pending) -> u64 {
        let id = self.next.get();
        self.next.set(id + 1);
        self.pending.borrow_mut().insert(id, p);
        id
    }

    pub(crate) fn isend(&self, data: Vec<u8>, dest: i32, tag: i32, sync: bool) -> Result<u64> {
        let n = count(data.len())?;
        let mut req = std::mem::MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: `data`'s heap buffer stays where it is while the request
        // is pending (the vector is kept in the table, never grown, until
        // the request completes).
        unsafe {
            let (p, r) = (data.as_ptr().cast(), req.as_mut_ptr());
            if sync {
                check(
                    "MPI_Issend",
                    ffi::MPI_Issend(p, n, bytes(), dest, tag, self.comm, r),
                )?;
            } else {
                check(
                    "MPI_Isend",
                    ffi::MPI_Isend(p, n, bytes(), dest, tag, self.comm, r),
                )?;
            }
        }
        // SAFETY: written by the successful call.
        Ok(self.add(Pending::Send(unsafe { req.assume_init() }, data)))
    }

    pub(crate) fn irecv(&self, source: i32, tag: i32, max_len: Option<usize>) -> Result<u64> {
        let Some(max) = max_len else {
            return Ok(self.add(Pending::Probe {
                source: any(source),
                tag: any_tag(tag),
            }));
        };
        let mut buf = vec![0u8; max];
        let mut req = std::mem::MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: `buf` stays in the table, unmoved on the heap, while the
        // request is pending.
        check("MPI_Irecv", unsafe {
            ffi::MPI_Irecv(
                buf.as_mut_ptr().cast(),
                count(max)?,
                bytes(),
                any(source),
                any_tag(tag),
                self.comm,
                req.as_mut_ptr(),
            )
        })?;
        // SAFETY: written by the successful call.
        Ok(self.add(Pending::Recv(unsafe { req.assume_init() }, buf)))
    }

    /// Registers a collective started with `req`, keeping `keep` alive.
    fn add_coll(&self, req: ffi::MPI_Request, keep: Box<dyn Kept>) -> u64 {
        self.add(Pending::Coll(req, keep))
    }

    /// The completion of a finished request.
    fn completed(p: Pending, st: &ffi::MPI_Status, code: c_int, call: &'static str) -> Completion {
        match p {
            Pending::Send(..) => {
                check(call, code)?;
                Ok((Status::empty(), Vec::new()))
            }
            Pending::Coll(_, kept) => {
                check(call, code)?;
                Ok((Status::empty(), kept.into_bytes()))
            }
            Pending::Recv(_, mut buf) => {
                if let Err(e) = check(call, code) {
                    if is_truncate(&e) {
                        return Err(Error::Truncate {
                            len: buf.len() + 1,
                            capacity: buf.len(),
                        });
                    }
                    return Err(e);
                }
                let mut cancelled: c_int = 0;
                // SAFETY: `st` is a status the completed request filled;
                // MPI writes the flag.
                unsafe { ffi::MPI_Test_cancelled(st, &mut cancelled) };
                if cancelled != 0 {
                    return Err(Error::Cancelled);
                }
                let status = status_of(st)?;
                buf.truncate(status.bytes());
                Ok((status, buf))
            }
            Pending::Probe { .. } | Pending::Done(_) => unreachable!("not an MPI request"),
        }
    }

    /// Tries to complete `id` once; whether it is now complete.
    fn progress(&self, id: u64) -> Result<bool> {
        let mut table = self.pending.borrow_mut();
        let Some(p) = table.get_mut(&id) else {
            return Ok(true);
        };
        let done = match p {
            Pending::Done(_) => return Ok(true),
            Pending::Probe { source, tag } => {
                let mut msg = std::mem::MaybeUninit::<ffi::MPI_Message>::uninit();
                let mut st = new_status();
                let mut flag: c_int = 0;
                // SAFETY: MPI writes the flag, the message and the status.
                check("MPI_Improbe", unsafe {
                    ffi::MPI_Improbe(
                        *source,
                        *tag,
                        self.comm,
                        &mut flag,
                        msg.as_mut_ptr(),
                        &mut st,
                    )
                })?;
                if flag == 0 {
                    return Ok(false);
                }
                // SAFETY: the probe matched, so it wrote the message handle.
                self.mrecv(unsafe { msg.assume_init() }, &st)
                    .map(|(v, st)| (st, v))
            }
            Pending::Send(req, _) | Pending::Recv(req, _) | Pending::Coll(req, _) => {
                let mut st = new_status();
                let mut flag: c_int = 0;
                // SAFETY: `req` is a pending request of this table; MPI
                // writes the flag and the status.
                let code = unsafe { ffi::MPI_Test(req, &mut flag, &mut st) };
                if flag == 0 && code == ffi::MPI_SUCCESS as c_int {
                    return Ok(false);
                }
                let owned = table.remove(&id).expect("present");
                Mpi::completed(owned, &st, code, "MPI_Test")
            }
        };
        table.insert(id, Pending::Done(done));
        Ok(true)
    }

    fn wait_one(&self, id: u64) -> Completion {
        let p = self.pending.borrow_mut().remove(&id);
        match p {
            None => Ok((Status::empty(), Vec::new())),
            Some(Pending::Done(c)) => c,
            Some(Pending::Probe { source, tag }) => {
                self.recv_vec(source, tag).map(|(v, st)| (st, v))
            }
            Some(mut p) => {
                let mut st = new_status();
                let code = match &mut p {
                    Pending::Send(req, _) | Pending::Recv(req, _) | Pending::Coll(req, _) => {
                        // SAFETY: a pending request of this table, waited
                        // for once.
                        unsafe { ffi::MPI_Wait(req, &mut st) }
                    }
                    _ => unreachable!(),
                };
                Mpi::completed(p, &st, code, "MPI_Wait")
            }
        }
    }

    // ---- collectives (arguments checked by the caller) ----

    pub(crate) fn barrier(&self) -> Result<()> {
        // SAFETY: a collective on a valid communicator.
        check("MPI_Barrier", unsafe { ffi::MPI_Barrier(self.comm) })
    }

    pub(crate) fn bcast_bytes(&self, buf: &mut [u8], root: i32) -> Result<()> {
        // SAFETY: `buf` is writable for its length, the count.
        check("MPI_Bcast", unsafe {
            ffi::MPI_Bcast(
                buf.as_mut_ptr().cast(),
                count(buf.len())?,
                bytes(),
                root,
                self.comm,
            )
        })
    }

    /// Broadcasts the root's bytes (any length) to every rank.
    pub(crate) fn bcast_vec(&self, data: Option<Vec<u8>>, root: i32) -> Result<Vec<u8>> {
        let mut len = [data.as_ref().map_or(0, Vec::len) as u64];
        self.bcast_bytes(bytemuck::cast_slice_mut(&mut len), root)?;
        let mut v = match data {
            Some(v) if self.rank == root => v,
            _ => vec![
                0u8;
                usize::try_from(len[0]).map_err(|_| Error::OutOfMemory { len: usize::MAX })?
            ],
        };
        self.bcast_bytes(&mut v, root)?;
        Ok(v)
    }

    /// Every rank's bytes at the root (`None` elsewhere).
    pub(crate) fn gather_vecs(&self, mine: &[u8], root: i32) -> Result<Option<Vec<Vec<u8>>>> {
        let n = self.size as usize;
        let at_root = self.rank == root;
        let mut lens = vec![0 as c_int; if at_root { n } else { 0 }];
        let my = [count(mine.len())?];
        // SAFETY: one int sent; at the root `lens` has one per rank.
        check("MPI_Gather", unsafe {
            ffi::MPI_Gather(
                my.as_ptr().cast(),
                1,
                ffi::RSMPI_INT32_T,
                lens.as_mut_ptr().cast(),
                1,
                ffi::RSMPI_INT32_T,
                root,
                self.comm,
            )
        })?;
        let displs = displacements(&lens)?;
        let mut all = vec![0u8; if at_root { total(&lens) } else { 0 }];
        // SAFETY: `mine` is readable for its length; at the root `all` holds
        // the sum of the lengths, laid out by `displs`.
        check("MPI_Gatherv", unsafe {
            ffi::MPI_Gatherv(
                mine.as_ptr().cast(),
                my[0],
                bytes(),
                all.as_mut_ptr().cast(),
                lens.as_ptr(),
                displs.as_ptr(),
                bytes(),
                root,
                self.comm,
            )
        })?;
        at_root
            .then(|| split_parts(&all, &lens, &displs))
            .transpose()
    }

    /// Every rank's bytes on every rank.
    pub(crate) fn allgather_vecs(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        let n = self.size as usize;
        let mut lens = vec![0 as c_int; n];
        let my = [count(mine.len())?];
        // SAFETY: one int sent, one per rank received.
        check("MPI_Allgather", unsafe {
            ffi::MPI_Allgather(
                my.as_ptr().cast(),
                1,
                ffi::RSMPI_INT32_T,
                lens.as_mut_ptr().cast(),
                1,
                ffi::RSMPI_INT32_T,
                self.comm,
            )
        })?;
        let displs = displacements(&lens)?;
        let mut all = vec![0u8; total(&lens)];
        // SAFETY: `all` holds every rank's bytes, laid out by `displs`.
        check("MPI_Allgatherv", unsafe {
            ffi::MPI_Allgatherv(
                mine.as_ptr().cast(),
                my[0],
                bytes(),
                all.as_mut_ptr().cast(),
                lens.as_ptr(),
                displs.as_ptr(),
                bytes(),
                self.comm,
            )
        })?;
        split_parts(&all, &lens, &displs)
    }

    /// Part `j` of the root's `parts` to rank `j`.
    pub(crate) fn scatter_vecs(&self, parts: Option<&[Vec<u8>]>, root: i32) -> Result<Vec<u8>> {
        let at_root = self.rank == root;
        let (lens, displs, flat) = match parts.filter(|_| at_root) {
            Some(p) => {
                let lens: Vec<c_int> = p.iter().map(|v| count(v.len())).collect::<Result<_>>()?;
                let displs = displacements(&lens)?;
                (lens, displs, p.concat())
            }
            None => (Vec::new(), Vec::new(), Vec::new()),
        };
        let mut my = [0 as c_int];
        // SAFETY: at the root `lens` has one int per rank; one received.
        check("MPI_Scatter", unsafe {
            ffi::MPI_Scatter(
                lens.as_ptr().cast(),
                1,
                ffi::RSMPI_INT32_T,
                my.as_mut_ptr().cast(),
                1,
                ffi::RSMPI_INT32_T,
                root,
                self.comm,
            )
        })?;
        if my[0] < 0 {
            return Err(Error::Corrupt {
                rank: root,
                what: format!("a part of {} bytes", my[0]),
            });
        }
        let mut v = vec![0u8; my[0] as usize];
        // SAFETY: at the root `flat` is laid out by `lens` and `displs`;
        // `v` has room for this rank's part.
        check("MPI_Scatterv", unsafe {
            ffi::MPI_Scatterv(
                flat.as_ptr().cast(),
                lens.as_ptr(),
                displs.as_ptr(),
                bytes(),
                v.as_mut_ptr().cast(),
                my[0],
                bytes(),
                root,
                self.comm,
            )
        })?;
        Ok(v)
    }

    /// Part `j` of `parts` to rank `j`; what each rank sent this one.
    pub(crate) fn alltoall_vecs(&self, parts: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        exchange_vecs(
            self.comm,
            parts,
            ("MPI_Alltoall", ffi::MPI_Alltoall),
            ("MPI_Alltoallv", ffi::MPI_Alltoallv),
        )
    }

    // Buffer collectives: `send` of None is MPI's IN_PLACE, done by the
    // caller copying (the library's IN_PLACE value differs between MPI
    // implementations).

    pub(crate) fn scatterv_buf<T: Pod>(
        &self,
        send: Option<(&[T], &[usize], &[usize])>,
        recv: &mut [T],
        root: i32,
    ) -> Result<()> {
        let w = std::mem::size_of::<T>();
        let (sp, sc, sd) = match send {
            Some((s, c, d)) => (s.as_ptr().cast::<c_void>(), scaled(c, w)?, scaled(d, w)?),
            None => (std::ptr::null(), Vec::new(), Vec::new()),
        };
        let recv: &mut [u8] = bytemuck::cast_slice_mut(recv);
        // SAFETY: the root's buffer holds the parts its counts and
        // displacements name (checked by the caller); `recv` has room for
        // this rank's part.
        check("MPI_Scatterv", unsafe {
            ffi::MPI_Scatterv(
                sp,
                sc.as_ptr(),
                sd.as_ptr(),
                bytes(),
                recv.as_mut_ptr().cast(),
                count(recv.len())?,
                bytes(),
                root,
                self.comm,
            )
        })
    }

    pub(crate) fn gatherv_buf<T: Pod>(
        &self,
        send: &[T],
        recv: Option<(&mut [T], &[usize], &[usize])>,
        root: i32,
    ) -> Result<()> {
        let w = std::mem::size_of::<T>();
        let send: &[u8] = bytemuck::cast_slice(send);
        let (rp, rc, rdd) = match recv {
            Some((r, c, d)) => (
                bytemuck::cast_slice_mut::<T, u8>(r)
                    .as_mut_ptr()
                    .cast::<c_void>(),
                scaled(c, w)?,
                scaled(d, w)?,
            ),
            None => (std::ptr::null_mut(), Vec::new(), Vec::new()),
        };
        // SAFETY: `send` is readable; the root's buffer has room for every
        // part at its displacement (checked by the caller).
        check("MPI_Gatherv", unsafe {
            ffi::MPI_Gatherv(
                send.as_ptr().cast(),
                count(send.len())?,
                bytes(),
                rp,
                rc.as_ptr(),
                rdd.as_ptr(),
                bytes(),
                root,
                self.comm,
            )
        })
    }

    pub(crate) fn allgatherv_buf<T: Pod>(
        &self,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
        displs: &[usize],
    ) -> Result<()> {
        let w = std::mem::size_of::<T>();
        let send: &[u8] = bytemuck::cast_slice(send);
        let (c, d) = (scaled(counts, w)?, scaled(displs, w)?);
        let recv: &mut [u8] = bytemuck::cast_slice_mut(recv);
        // SAFETY: `recv` has room for every part at its displacement
        // (checked by the caller).
        check("MPI_Allgatherv", unsafe {
            ffi::MPI_Allgatherv(
                send.as_ptr().cast(),
                count(send.len())?,
                bytes(),
                recv.as_mut_ptr().cast(),
                c.as_ptr(),
                d.as_ptr(),
                bytes(),
                self.comm,
            )
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn alltoallv_buf<T: Pod>(
        &self,
        send: &[T],
        scounts: &[usize],
        sdispls: &[usize],
        recv: &mut [T],
        rcounts: &[usize],
        rdispls: &[usize],
    ) -> Result<()> {
        let w = std::mem::size_of::<T>();
        let (sc, sd) = (scaled(scounts, w)?, scaled(sdispls, w)?);
        let (rc, rdd) = (scaled(rcounts, w)?, scaled(rdispls, w)?);
        let send: &[u8] = bytemuck::cast_slice(send);
        let recv: &mut [u8] = bytemuck::cast_slice_mut(recv);
        // SAFETY: both buffers hold the parts their layouts name (checked
        // by the caller).
        check("MPI_Alltoallv", unsafe {
            ffi::MPI_Alltoallv(
                send.as_ptr().cast(),
                sc.as_ptr(),
                sd.as_ptr(),
                bytes(),
                recv.as_mut_ptr().cast(),
                rc.as_ptr(),
                rdd.as_ptr(),
                bytes(),
                self.comm,
            )
        })
    }

    pub(crate) fn reduce_buf<T: Element>(
        &self,
        send: &[T],
        recv: Option<&mut [T]>,
        op: &Op<T>,
        root: i32,
    ) -> Result<()> {
        let red = Reduction::new(&self.session, op)?;
        let rp = recv.map_or(std::ptr::null_mut(), |r| r.as_mut_ptr().cast::<c_void>());
        // SAFETY: `send` is readable for its length; at the root `recv` has
        // as many elements (checked by the caller).
        check("MPI_Reduce", unsafe {
            ffi::MPI_Reduce(
                send.as_ptr().cast(),
                rp,
                count(send.len())?,
                red.datatype,
                red.op,
                root,
                self.comm,
            )
        })
    }

    /// `MPI_Allreduce`, `MPI_Scan` or `MPI_Exscan` of `send` into `recv`
    /// (of one length).
    pub(crate) fn fold_buf<T: Element>(
        &self,
        which: Fold3,
        send: &[T],
        recv: &mut [T],
        op: &Op<T>,
    ) -> Result<()> {
        let red = Reduction::new(&self.session, op)?;
        let n = count(send.len())?;
        let (s, r) = (send.as_ptr().cast(), recv.as_mut_ptr().cast());
        // SAFETY: `send` and `recv` hold `n` elements each (checked by the
        // caller) and do not overlap (one is borrowed shared, one unique).
        unsafe {
            match which {
                Fold3::All => check(
                    "MPI_Allreduce",
                    ffi::MPI_Allreduce(s, r, n, red.datatype, red.op, self.comm),
                ),
                Fold3::Scan => check(
                    "MPI_Scan",
                    ffi::MPI_Scan(s, r, n, red.datatype, red.op, self.comm),
                ),
                Fold3::Exscan => check(
                    "MPI_Exscan",
                    ffi::MPI_Exscan(s, r, n, red.datatype, red.op, self.comm),
                ),
            }
        }
    }

    pub(crate) fn reduce_scatter_buf<T: Element>(
        &self,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
        op: &Op<T>,
    ) -> Result<()> {
        let red = Reduction::new(&self.session, op)?;
        let c = self::counts(counts)?;
        // SAFETY: `send` holds the sum of the counts, `recv` this rank's
        // count (checked by the caller).
        check("MPI_Reduce_scatter", unsafe {
            ffi::MPI_Reduce_scatter(
                send.as_ptr().cast(),
                recv.as_mut_ptr().cast(),
                c.as_ptr(),
                red.datatype,
                red.op,
                self.comm,
            )
        })
    }

    pub(crate) fn reduce_scatter_block_buf<T: Element>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: &Op<T>,
    ) -> Result<()> {
        let red = Reduction::new(&self.session, op)?;
        // SAFETY: `send` holds `size` blocks of `recv.len()` elements
        // (checked by the caller).
        check("MPI_Reduce_scatter_block", unsafe {
            ffi::MPI_Reduce_scatter_block(
                send.as_ptr().cast(),
                recv.as_mut_ptr().cast(),
                count(recv.len())?,
                red.datatype,
                red.op,
                self.comm,
            )
        })
    }

    // ---- nonblocking collectives ----

    pub(crate) fn ibarrier(&self) -> Result<u64> {
        let mut req = std::mem::MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: MPI writes the request.
        check("MPI_Ibarrier", unsafe {
            ffi::MPI_Ibarrier(self.comm, req.as_mut_ptr())
        })?;
        // SAFETY: written by the successful call.
        Ok(self.add_coll(unsafe { req.assume_init() }, Box::new(())))
    }

    /// Starts a broadcast of the root's `buf` (a buffer of the same length
    /// elsewhere), which the table owns until it completes: its bytes are
    /// the completion's (copied to the caller's buffer then), so that a
    /// request forgotten without a drop leaves MPI writing into memory it
    /// still owns.
    pub(crate) fn ibcast(&self, mut buf: Vec<u8>, root: i32) -> Result<u64> {
        let mut req = std::mem::MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: `buf`'s heap block is moved into the table with the
        // request (a Vec's move does not move its block) and lives until
        // the request completes.
        check("MPI_Ibcast", unsafe {
            ffi::MPI_Ibcast(
                buf.as_mut_ptr().cast(),
                count(buf.len())?,
                bytes(),
                root,
                self.comm,
                req.as_mut_ptr(),
            )
        })?;
        // SAFETY: written by the successful call.
        Ok(self.add_coll(unsafe { req.assume_init() }, Box::new(buf)))
    }

    /// Starts an allreduce of `send` into a result the table owns (as
    /// [`ibcast`](Mpi::ibcast)'s buffer).
    pub(crate) fn iallreduce<T: Element>(&self, send: Vec<T>, op: &Op<T>) -> Result<u64> {
        let red = Reduction::new(&self.session, op)?;
        let mut recv = send.clone();
        let mut req = std::mem::MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: `send` and `recv` (of one length) are moved into the
        // table with the request, their heap blocks unmoved, and live until
        // it completes; the reduction's datatype and operation too.
        check("MPI_Iallreduce", unsafe {
            ffi::MPI_Iallreduce(
                send.as_ptr().cast(),
                recv.as_mut_ptr().cast(),
                count(send.len())?,
                red.datatype,
                red.op,
                self.comm,
                req.as_mut_ptr(),
            )
        })?;
        // SAFETY: written by the successful call.
        Ok(self.add_coll(
            unsafe { req.assume_init() },
            Box::new(Reduced { send, recv, red }),
        ))
    }

    // ---- communicators ----

    pub(crate) fn dup(&self) -> Result<Mpi> {
        // SAFETY: MPI writes the new communicator.
        let made = self.made("MPI_Comm_dup", |out| unsafe {
            ffi::MPI_Comm_dup(self.comm, out)
        })?;
        made.ok_or_else(|| Error::Job("MPI_Comm_dup made no communicator".into()))
    }

    pub(crate) fn split(&self, color: i32, key: i32) -> Result<Option<Mpi>> {
        let color = if color == UNDEFINED {
            // SAFETY: reading an MPI predefined constant.
            unsafe { ffi::RSMPI_UNDEFINED }
        } else {
            color
        };
        // SAFETY: MPI writes the new communicator (COMM_NULL for UNDEFINED).
        self.made("MPI_Comm_split", |out| unsafe {
            ffi::MPI_Comm_split(self.comm, color, key, out)
        })
    }

    pub(crate) fn split_shared(&self, key: i32) -> Result<Option<Mpi>> {
        // SAFETY: MPI writes the new communicator.
        self.made("MPI_Comm_split_type", |out| unsafe {
            ffi::MPI_Comm_split_type(
                self.comm,
                ffi::RSMPI_COMM_TYPE_SHARED,
                key,
                ffi::RSMPI_INFO_NULL,
                out,
            )
        })
    }

    /// The communicator of `ranks` (ranks of this one, in that order).
    pub(crate) fn create(&self, ranks: &[i32]) -> Result<Option<Mpi>> {
        let mut all = std::mem::MaybeUninit::<ffi::MPI_Group>::uninit();
        let mut part = std::mem::MaybeUninit::<ffi::MPI_Group>::uninit();
        // SAFETY: each group is written by MPI before it is read, and freed
        // once; `ranks` holds `len` entries.
        unsafe {
            check(
                "MPI_Comm_group",
                ffi::MPI_Comm_group(self.comm, all.as_mut_ptr()),
            )?;
            let mut all = all.assume_init();
            let r = check(
                "MPI_Group_incl",
                ffi::MPI_Group_incl(all, count(ranks.len())?, ranks.as_ptr(), part.as_mut_ptr()),
            );
            ffi::MPI_Group_free(&mut all);
            r?;
            let mut part = part.assume_init();
            let made = self.made("MPI_Comm_create", |out| {
                ffi::MPI_Comm_create(self.comm, part, out)
            });
            ffi::MPI_Group_free(&mut part);
            made
        }
    }

    pub(crate) fn create_cart(
        &self,
        dims: &[i32],
        periods: &[bool],
        reorder: bool,
    ) -> Result<Option<Mpi>> {
        let p: Vec<c_int> = periods.iter().map(|&b| c_int::from(b)).collect();
        // SAFETY: `dims` and `p` hold `ndims` entries; MPI writes the new
        // communicator (COMM_NULL for ranks outside the grid).
        self.made("MPI_Cart_create", |out| unsafe {
            ffi::MPI_Cart_create(
                self.comm,
                dims.len() as c_int,
                dims.as_ptr(),
                p.as_ptr(),
                c_int::from(reorder),
                out,
            )
        })
    }
}

impl Mpi {
    /// The grid of the dimensions `remain` keeps (`MPI_Cart_sub`); this
    /// communicator has a Cartesian topology.
    pub(crate) fn cart_sub(&self, remain: &[bool]) -> Result<Mpi> {
        let keep: Vec<c_int> = remain.iter().map(|&b| c_int::from(b)).collect();
        // SAFETY: `keep` holds one flag per dimension of this grid
        // (checked by the caller); MPI writes the new communicator.
        let made = self.made("MPI_Cart_sub", |out| unsafe {
            ffi::MPI_Cart_sub(self.comm, keep.as_ptr(), out)
        })?;
        made.ok_or_else(|| Error::Topology("MPI_Cart_sub made no communicator".into()))
    }

    /// Sends `parts[k]` to neighbour `k` of this grid (MPI's order: per
    /// dimension, the one below, then the one above) and returns what each
    /// neighbour sent this rank (`MPI_Neighbor_alltoall` of the lengths,
    /// then `MPI_Neighbor_alltoallv`); a `PROC_NULL` neighbour's is empty.
    pub(crate) fn neighbor_alltoall_vecs(&self, parts: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        exchange_vecs(
            self.comm,
            parts,
            ("MPI_Neighbor_alltoall", ffi::MPI_Neighbor_alltoall),
            ("MPI_Neighbor_alltoallv", ffi::MPI_Neighbor_alltoallv),
        )
    }
}

/// Which prefix or whole reduction [`Mpi::fold_buf`] makes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fold3 {
    All,
    Scan,
    Exscan,
}

/// Element counts or offsets in bytes, as MPI counts.
fn scaled(ns: &[usize], width: usize) -> Result<Vec<c_int>> {
    ns.iter()
        .map(|&n| {
            n.checked_mul(width)
                .ok_or_else(|| Error::Argument(format!("{n} elements overflow")))
                .and_then(count)
        })
        .collect()
}

/// The offsets of parts of `lens` laid end to end.
/// MPI's all-to-all of fixed counts (`MPI_Alltoall`, `MPI_Neighbor_alltoall`).
type AllToAll = unsafe extern "C" fn(
    *const c_void,
    c_int,
    ffi::MPI_Datatype,
    *mut c_void,
    c_int,
    ffi::MPI_Datatype,
    ffi::MPI_Comm,
) -> c_int;

/// MPI's all-to-all of counts and displacements per peer (`MPI_Alltoallv`,
/// `MPI_Neighbor_alltoallv`).
type AllToAllV = unsafe extern "C" fn(
    *const c_void,
    *const c_int,
    *const c_int,
    ffi::MPI_Datatype,
    *mut c_void,
    *const c_int,
    *const c_int,
    ffi::MPI_Datatype,
    ffi::MPI_Comm,
) -> c_int;

/// Sends `parts[k]` to peer `k` of `comm` (a rank, or a neighbour of a
/// grid): the lengths first with `lengths`, then the bytes with `bytes_v`,
/// over buffers laid out by those lengths; what each peer sent.
fn exchange_vecs(
    comm: ffi::MPI_Comm,
    parts: &[Vec<u8>],
    (name, lengths): (&'static str, AllToAll),
    (name_v, bytes_v): (&'static str, AllToAllV),
) -> Result<Vec<Vec<u8>>> {
    let slens = parts
        .iter()
        .map(|p| count(p.len()))
        .collect::<Result<Vec<c_int>>>()?;
    let mut rlens = vec![0 as c_int; parts.len()];
    // SAFETY: one int to and from each of the communicator's peers (the
    // caller passes one part per peer: a rank, or a grid's neighbour).
    check(name, unsafe {
        lengths(
            slens.as_ptr().cast(),
            1,
            ffi::RSMPI_INT32_T,
            rlens.as_mut_ptr().cast(),
            1,
            ffi::RSMPI_INT32_T,
            comm,
        )
    })?;
    let (sdispls, rdispls) = (displacements(&slens)?, displacements(&rlens)?);
    let send = parts.concat();
    let mut recv = vec![0u8; total(&rlens)];
    // SAFETY: both buffers are laid out by their counts and displacements,
    // made from the lengths just exchanged (checked by `displacements`).
    check(name_v, unsafe {
        bytes_v(
            send.as_ptr().cast(),
            slens.as_ptr(),
            sdispls.as_ptr(),
            bytes(),
            recv.as_mut_ptr().cast(),
            rlens.as_ptr(),
            rdispls.as_ptr(),
            bytes(),
            comm,
        )
    })?;
    split_parts(&recv, &rlens, &rdispls)
}

/// The displacements of parts of `lens` bytes laid end to end (lengths
/// other ranks said: a negative one is an error, as is a sum past MPI's
/// counts).
fn displacements(lens: &[c_int]) -> Result<Vec<c_int>> {
    let mut at: c_int = 0;
    lens.iter()
        .enumerate()
        .map(|(j, &l)| {
            if l < 0 {
                return Err(Error::Corrupt {
                    rank: j as i32,
                    what: format!("a part of {l} bytes"),
                });
            }
            let d = at;
            at = at
                .checked_add(l)
                .ok_or_else(|| Error::Argument("more than 2 GiB in one collective".into()))?;
            Ok(d)
        })
        .collect()
}

/// The bytes of parts of `lens` (checked by [`displacements`] first).
fn total(lens: &[c_int]) -> usize {
    lens.iter().map(|&l| l.max(0) as usize).sum()
}

/// The parts of `all` at `displs`, of `lens` bytes (as other ranks said):
/// a length that does not fit is an error, not a panic.
fn split_parts(all: &[u8], lens: &[c_int], displs: &[c_int]) -> Result<Vec<Vec<u8>>> {
    lens.iter()
        .zip(displs)
        .enumerate()
        .map(|(j, (&l, &d))| {
            let part = usize::try_from(d)
                .ok()
                .zip(usize::try_from(l).ok())
                .and_then(|(d, l)| all.get(d..d.checked_add(l)?));
            part.map(<[u8]>::to_vec).ok_or_else(|| Error::Corrupt {
                rank: j as i32,
                what: format!("a part of {l} bytes at {d} in {} bytes", all.len()),
            })
        })
        .collect()
}

impl Requests for Mpi {
    fn wait_any(&self, ids: &[u64]) -> Result<(usize, Completion)> {
        if let [id] = ids {
            return Ok((0, self.wait_one(*id)));
        }
        loop {
            for (i, &id) in ids.iter().enumerate() {
                if self.progress(id)? {
                    return Ok((i, self.wait_one(id)));
                }
            }
            std::thread::yield_now();
        }
    }

    fn test(&self, id: u64) -> Result<bool> {
        self.progress(id)
    }

    fn take(&self, id: u64) -> Option<Completion> {
        let p = self.pending.borrow_mut().remove(&id);
        match p {
            Some(Pending::Done(c)) => Some(c),
            Some(other) => {
                self.pending.borrow_mut().insert(id, other);
                None
            }
            None => None,
        }
    }

    fn cancel(&self, id: u64) -> bool {
        let mut table = self.pending.borrow_mut();
        match table.get_mut(&id) {
            Some(Pending::Probe { .. }) => {
                table.insert(id, Pending::Done(Err(Error::Cancelled)));
                true
            }
            Some(Pending::Recv(req, _)) => {
                // SAFETY: a pending receive of this table.
                unsafe { ffi::MPI_Cancel(req) };
                drop(table);
                let done = self.wait_one(id);
                let cancelled = matches!(done, Err(Error::Cancelled));
                self.pending.borrow_mut().insert(id, Pending::Done(done));
                cancelled
            }
            _ => false,
        }
    }

    fn forget(&self, id: u64) {
        let is_recv = matches!(self.pending.borrow().get(&id), Some(Pending::Recv(..)));
        if is_recv {
            self.cancel(id);
        }
        // A send or a collective dropped unfinished is finished here: its
        // buffers are freed only once MPI is done with them.
        let _ = self.wait_one(id);
    }
}
