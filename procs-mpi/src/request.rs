//! Requests of nonblocking calls: `wait`, `test`, `cancel`, and
//! `wait_all`, `wait_any`, `test_all` over many.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::Status;
use crate::comm::decode;
use crate::error::{Error, Result};
use crate::nonblocking::Nonblocking;

/// A completed request: its status and the bytes it received.
pub type Completion = Result<(Status, Vec<u8>)>;

/// What a communicator does for its requests (the engine behind them).
#[doc(hidden)]
pub trait Requests {
    /// Waits for the first of `ids` to complete: its index and completion.
    fn wait_any(&self, ids: &[u64]) -> Result<(usize, Completion)>;
    /// Progresses once; whether `id` completed.
    fn test(&self, id: u64) -> Result<bool>;
    /// The completion of `id`, if it completed.
    fn take(&self, id: u64) -> Option<Completion>;
    /// Cancels a pending receive; whether it was still pending.
    fn cancel(&self, id: u64) -> bool;
    /// The request is dropped unfinished.
    fn forget(&self, id: u64);
}

/// A nonblocking send, receive or collective in flight ("MPI_Request").
///
/// Wait for it ([`wait`](Request::wait), or [`wait_all`] and [`wait_any`]
/// for many), or poll it with [`test`](Request::test). A receive that has
/// not matched can be [`cancel`](Request::cancel)ed. Dropped unfinished, a
/// send still completes (its bytes were copied when it started) and a
/// receive is cancelled.
///
/// ```
/// use procs_mpi::{Communicator, CommunicatorExt, wait_all, wait_any};
///
/// let sums = procs_mpi::run(2, |world| {
///     let peer = 1 - world.rank();
///     // Post the receives first, then send: no order between the two ranks
///     // can block them.
///     let mut bufs = [[0u32; 2]; 3];
///     let mut recvs = Vec::new();
///     for (tag, buf) in bufs.iter_mut().enumerate() {
///         recvs.push(world.irecv_buf(buf, peer, tag as i32).unwrap());
///     }
///     let mut sends: Vec<_> = (0..3u32)
///         .map(|tag| world.isend_buf(&[tag, world.rank() as u32], peer, tag as i32).unwrap())
///         .collect();
///     let (first, status) = wait_any(&mut recvs).unwrap();
///     assert_eq!(status.tag, first as i32);
///     wait_all(&mut recvs).unwrap();
///     wait_all(&mut sends).unwrap();
///     drop(recvs);
///     bufs.iter().map(|b| b[0] + b[1]).sum::<u32>()
/// })?;
/// // Tags 0 + 1 + 2, and the sender's rank three times.
/// assert_eq!(sums, [3 + 3, 3]);
/// # Ok::<(), procs_mpi::Error>(())
/// ```
#[must_use = "a request completes only through wait or test"]
pub struct Request<'a> {
    ops: &'a dyn Requests,
    id: u64,
    /// Still in flight (not waited for, tested complete, or cancelled).
    active: bool,
    /// Completed before it was returned (a call on `PROC_NULL`).
    early: Option<Status>,
    /// The buffer of `irecv_buf`, filled on completion, and its element size.
    dest: Option<(&'a mut [u8], usize)>,
    /// A nonblocking collective (`ibarrier`, ...): its round, not `id`.
    coll: Option<Nonblocking<'a>>,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("active", &self.active)
            .finish()
    }
}

impl<'a> Request<'a> {
    pub(crate) fn new(ops: &'a dyn Requests, id: u64) -> Self {
        Request {
            ops,
            id,
            active: true,
            early: None,
            dest: None,
            coll: None,
        }
    }

    pub(crate) fn collective(ops: &'a dyn Requests, nb: Nonblocking<'a>) -> Self {
        Request {
            ops,
            id: 0,
            active: true,
            early: None,
            dest: None,
            coll: Some(nb),
        }
    }

    pub(crate) fn completed(ops: &'a dyn Requests, st: Status) -> Self {
        Request {
            ops,
            id: 0,
            active: true,
            early: Some(st),
            dest: None,
            coll: None,
        }
    }

    pub(crate) fn into_buffer(mut self, buf: &'a mut [u8], elem: usize) -> Self {
        self.dest = Some((buf, elem));
        self
    }

    /// Whether the request is still in flight.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Applies a completion: the bytes into the buffer of `irecv_buf`.
    fn finish(&mut self, c: Completion) -> Result<(Status, Vec<u8>)> {
        self.active = false;
        let (st, data) = c?;
        if let Some((buf, elem)) = self.dest.take() {
            if data.len() > buf.len() {
                return Err(Error::Truncate {
                    len: data.len(),
                    capacity: buf.len(),
                });
            }
            buf[..data.len()].copy_from_slice(&data);
            if data.len() % elem.max(1) != 0 {
                return Err(Error::Misaligned {
                    len: data.len(),
                    size: elem,
                });
            }
            return Ok((st, Vec::new()));
        }
        Ok((st, data))
    }

    fn wait_inner(&mut self) -> Result<(Status, Vec<u8>)> {
        if !self.active {
            return Ok((Status::empty(), Vec::new()));
        }
        if let Some(st) = self.early.take() {
            self.active = false;
            return Ok((st, Vec::new()));
        }
        if let Some(c) = &mut self.coll {
            self.active = false;
            return c.wait().map(|()| (Status::empty(), Vec::new()));
        }
        let (_, c) = self.ops.wait_any(&[self.id])?;
        self.finish(c)
    }

    /// Waits until the request completes; its status (for a receive: the
    /// source, tag and length of the message).
    #[doc(alias = "Wait")]
    pub fn wait(mut self) -> Result<Status> {
        self.wait_inner().map(|(st, _)| st)
    }

    /// Waits and returns the status and the bytes received (empty for a
    /// send or a buffer receive).
    pub fn wait_bytes(mut self) -> Result<(Status, Vec<u8>)> {
        self.wait_inner()
    }

    /// Progresses once: `Some(status)` if the request completed (it is then
    /// inactive), `None` if it is still in flight.
    #[doc(alias = "Test")]
    pub fn test(&mut self) -> Result<Option<Status>> {
        self.test_bytes().map(|o| o.map(|(st, _)| st))
    }

    fn test_bytes(&mut self) -> Result<Option<(Status, Vec<u8>)>> {
        if !self.active {
            return Ok(Some((Status::empty(), Vec::new())));
        }
        if let Some(st) = self.early.take() {
            self.active = false;
            return Ok(Some((st, Vec::new())));
        }
        if let Some(c) = &mut self.coll {
            if !c.test()? {
                return Ok(None);
            }
            self.active = false;
            return c.wait().map(|()| Some((Status::empty(), Vec::new())));
        }
        if !self.ops.test(self.id)? {
            return Ok(None);
        }
        let c = self.ops.take(self.id).expect("tested complete");
        self.finish(c).map(Some)
    }

    /// Cancels a receive that has not matched a message yet: `true` if it
    /// was cancelled (a later wait says [`Error::Cancelled`]), `false` if it
    /// already matched, or is a send (sends are not cancelled).
    #[doc(alias = "Cancel")]
    pub fn cancel(&mut self) -> bool {
        self.active && self.early.is_none() && self.coll.is_none() && self.ops.cancel(self.id)
    }

    /// Whether `test` would complete it now, without consuming it.
    fn ready(&mut self) -> Result<bool> {
        if !self.active || self.early.is_some() {
            return Ok(true);
        }
        match &mut self.coll {
            Some(c) => c.test(),
            None => self.ops.test(self.id),
        }
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        if let Some(c) = &mut self.coll {
            // A collective dropped unfinished is finished here: the other
            // members' rounds need this rank's part, and the next
            // collective's numbering needs this one done.
            if self.active {
                let _ = c.wait();
            }
        } else if self.active && self.early.is_none() {
            self.ops.forget(self.id);
        }
    }
}

/// A nonblocking receive of an object: [`wait`](RecvRequest::wait) returns it.
#[must_use = "a request completes only through wait or test"]
#[derive(Debug)]
pub struct RecvRequest<'a, T> {
    inner: Request<'a>,
    _t: PhantomData<fn() -> T>,
}

impl<'a, T: DeserializeOwned> RecvRequest<'a, T> {
    pub(crate) fn new(inner: Request<'a>) -> Self {
        RecvRequest {
            inner,
            _t: PhantomData,
        }
    }

    /// Waits for the object.
    pub fn wait(self) -> Result<T> {
        self.wait_with_status().map(|(t, _)| t)
    }

    /// Waits for the object and the status of its message.
    pub fn wait_with_status(mut self) -> Result<(T, Status)> {
        if self.inner.early.is_some() {
            self.inner.active = false;
            return Err(Error::ProcNull);
        }
        let (st, bytes) = self.inner.wait_inner()?;
        Ok((decode(&bytes, st.source)?, st))
    }

    /// Progresses once: the object if it arrived.
    pub fn test(&mut self) -> Result<Option<T>> {
        match self.inner.test_bytes()? {
            None => Ok(None),
            Some((st, bytes)) => decode(&bytes, st.source).map(Some),
        }
    }

    /// Cancels the receive if it has not matched yet.
    pub fn cancel(&mut self) -> bool {
        self.inner.cancel()
    }

    /// The underlying request, for [`wait_all`] and [`wait_any`] (its
    /// bytes are then lost: use it for requests whose object is not needed,
    /// or wait for this one alone).
    pub fn into_request(self) -> Request<'a> {
        self.inner
    }
}

/// Waits for every request; their statuses in order (an inactive request's
/// is empty). The first error is returned once all have been waited for.
#[doc(alias = "Waitall")]
pub fn wait_all(requests: &mut [Request<'_>]) -> Result<Vec<Status>> {
    let mut statuses = Vec::with_capacity(requests.len());
    let mut first_err = None;
    for r in requests.iter_mut() {
        match r.wait_inner() {
            Ok((st, _)) => statuses.push(st),
            Err(e) => {
                statuses.push(Status::empty());
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(statuses),
    }
}

/// Waits for any one active request: its index and status. Every request
/// must come from one communicator. Error if none is active.
#[doc(alias = "Waitany")]
pub fn wait_any(requests: &mut [Request<'_>]) -> Result<(usize, Status)> {
    if let Some(i) = requests.iter().position(|r| r.active && r.early.is_some()) {
        return requests[i].wait_inner().map(|(st, _)| (i, st));
    }
    let active: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].active)
        .collect();
    let Some(&first) = active.first() else {
        return Err(Error::Job("wait_any: no active request".into()));
    };
    if active.iter().any(|&i| requests[i].coll.is_some()) {
        // Collectives among them: each is tested in turn until one is done.
        let mut spins = 0u32;
        loop {
            for &i in &active {
                if requests[i].ready()? {
                    return requests[i].wait_inner().map(|(st, _)| (i, st));
                }
            }
            spins += 1;
            if spins.is_multiple_of(64) {
                std::thread::yield_now();
            }
        }
    }
    let ids: Vec<u64> = active.iter().map(|&i| requests[i].id).collect();
    let (k, c) = requests[first].ops.wait_any(&ids)?;
    let i = active[k];
    requests[i].finish(c).map(|(st, _)| (i, st))
}

/// Progresses once: `Some(statuses)` if every request completed (all are
/// then inactive), else `None` and no request is consumed.
#[doc(alias = "Testall")]
pub fn test_all(requests: &mut [Request<'_>]) -> Result<Option<Vec<Status>>> {
    for r in requests.iter_mut() {
        if !r.ready()? {
            return Ok(None);
        }
    }
    let mut out = Vec::with_capacity(requests.len());
    for r in requests.iter_mut() {
        match r.test_bytes()? {
            Some((st, _)) => out.push(st),
            None => unreachable!("tested complete above"),
        }
    }
    Ok(Some(out))
}
