//! Nonblocking collectives: `ibarrier`, `ibcast_buf` and `iallreduce_buf`
//! start their round and return a [`Request`]; the result is applied when
//! the request is waited for or tested complete.
//!
//! Their rounds always go as messages (the collective buffers take turns,
//! one collective at a time, and a pending one would hold the turn while
//! this rank makes others). Every member starts the same nonblocking
//! collectives in the same order, as with blocking ones; between start and
//! completion a rank may make other calls, blocking collectives included.

use crate::coll::{ANY_LEN, Kind, Pending, Sig, body, frame};
use crate::collective::{as_bytes, copy_into, fold};
use crate::comm::{Comm, via_mpi};
use crate::error::Result;
use crate::op::{Element, Op};
use crate::request::Request;

/// What is applied to a round's messages once they are all in.
type Finish<'a> = Box<dyn FnOnce(&Comm, Vec<Vec<u8>>) -> Result<()> + 'a>;

/// A collective in flight behind a [`Request`].
pub(crate) struct Nonblocking<'a> {
    comm: &'a Comm,
    pending: Option<Pending>,
    finish: Option<Finish<'a>>,
    /// Its outcome once complete, until the request hands it over.
    outcome: Option<Result<()>>,
}

impl<'a> Nonblocking<'a> {
    fn start(
        comm: &'a Comm,
        sig: Sig,
        failed: Option<String>,
        out: Vec<Vec<u8>>,
        expect: Vec<u64>,
        finish: Finish<'a>,
    ) -> Result<Request<'a>> {
        let pending = comm.start_round_messages(sig, failed, out, expect)?;
        let nb = Nonblocking {
            comm,
            pending: Some(pending),
            finish: Some(finish),
            outcome: None,
        };
        Ok(Request::collective(comm, nb))
    }

    /// Progresses once; whether the collective is complete.
    pub(crate) fn test(&mut self) -> Result<bool> {
        if self.outcome.is_some() {
            return Ok(true);
        }
        let Some(p) = &self.pending else {
            return Ok(true);
        };
        let ids: Vec<u64> = p.ids().collect();
        let mut all = true;
        {
            let mut e = self.comm.engine();
            for id in ids {
                // A request that failed counts as done: finishing the
                // round reports its error.
                if !e.test(id)? {
                    all = false;
                    break;
                }
            }
        }
        if all {
            self.complete();
        }
        Ok(all)
    }

    /// Waits for the collective and returns its outcome (once; later calls
    /// say `Ok`).
    pub(crate) fn wait(&mut self) -> Result<()> {
        if self.outcome.is_none() {
            self.complete();
        }
        self.outcome.take().unwrap_or(Ok(()))
    }

    fn complete(&mut self) {
        let Some(p) = self.pending.take() else { return };
        let finish = self.finish.take();
        let r = self.comm.finish_round(p).and_then(|got| match finish {
            Some(f) => f(self.comm, got),
            None => Ok(()),
        });
        self.outcome = Some(r);
    }
}

impl Comm {
    /// Starts a barrier: the request completes once every member has
    /// started it.
    ///
    /// ```
    /// use procs_mpi::Communicator;
    ///
    /// procs_mpi::run(3, |world| {
    ///     let mut req = world.ibarrier().unwrap();
    ///     // Other work, other calls...
    ///     let seen = world.allreduce(&1, procs_mpi::Op::SUM).unwrap();
    ///     req.wait().unwrap();
    ///     seen
    /// })?;
    /// # Ok::<(), procs_mpi::Error>(())
    /// ```
    #[doc(alias = "Ibarrier")]
    pub fn ibarrier(&self) -> Result<Request<'_>> {
        via_mpi!(self, m => Ok(Request::new(m, m.ibarrier()?)));
        let n = self.group.len();
        Nonblocking::start(
            self,
            Sig::new(Kind::Ibarrier),
            None,
            vec![frame(&[]); n],
            vec![ANY_LEN; n],
            Box::new(|_, _| Ok(())),
        )
    }

    /// Starts a broadcast of the root's `buf` into every member's `buf`
    /// (of one length on every rank), written when the request completes.
    ///
    /// ```
    /// use procs_mpi::Communicator;
    ///
    /// let got = procs_mpi::run(3, |world| {
    ///     let mut buf = if world.rank() == 1 { [7u32, 8] } else { [0, 0] };
    ///     world.ibcast_buf(&mut buf, 1).unwrap().wait().unwrap();
    ///     buf
    /// })?;
    /// assert!(got.iter().all(|b| b == &[7, 8]));
    /// # Ok::<(), procs_mpi::Error>(())
    /// ```
    #[doc(alias = "Ibcast")]
    pub fn ibcast_buf<'a, T: bytemuck::Pod>(
        &'a self,
        buf: &'a mut [T],
        root: i32,
    ) -> Result<Request<'a>> {
        via_mpi!(self, self.bad_root(root), m => {
            let id = m.ibcast(as_bytes(buf).to_vec(), root)?;
            let elem = std::mem::size_of::<T>();
            Ok(Request::new(m, id).into_buffer(bytemuck::cast_slice_mut(buf), elem))
        });
        let (mut sig, failed, out, expect) = self.bcast_round(as_bytes(buf), root);
        sig.kind = Kind::Ibcast;
        let me = self.rank;
        let finish: Finish<'a> = Box::new(move |_, got| {
            if me != root {
                copy_into(buf, body(&got[root as usize]));
            }
            Ok(())
        });
        Nonblocking::start(self, sig, failed, out, expect, finish)
    }

    /// Starts an allreduce of `send` (copied now) into `recv`, written when
    /// the request completes: `recv = send_0 op send_1 op ...`, in rank
    /// order, as [`allreduce_buf`](Comm::allreduce_buf) does.
    ///
    /// ```
    /// use procs_mpi::{Communicator, Op};
    ///
    /// let got = procs_mpi::run(4, |world| {
    ///     let mine = [world.rank() as i64, 1];
    ///     let mut sum = [0i64; 2];
    ///     let req = world.iallreduce_buf(&mine, &mut sum, Op::SUM).unwrap();
    ///     req.wait().unwrap();
    ///     sum
    /// })?;
    /// assert!(got.iter().all(|s| s == &[6, 4]));
    /// # Ok::<(), procs_mpi::Error>(())
    /// ```
    #[doc(alias = "Iallreduce")]
    pub fn iallreduce_buf<'a, T: Element>(
        &'a self,
        send: &[T],
        recv: &'a mut [T],
        op: Op<T>,
    ) -> Result<Request<'a>> {
        let k = recv.len();
        let n = self.group.len();
        let sig = Sig::new(Kind::Iallreduce).count(k).op(op.code()).buffer();
        let mut failed = op.check().err();
        if failed.is_none() && send.len() != k {
            failed = Some(format!("iallreduce of {} elements into {k}", send.len()));
        }
        via_mpi!(self, failed, m => {
            let id = m.iallreduce(send.to_vec(), &op)?;
            let elem = std::mem::size_of::<T>();
            Ok(Request::new(m, id).into_buffer(bytemuck::cast_slice_mut(recv), elem))
        });
        let own = as_bytes(send).to_vec();
        let mut expect = vec![ANY_LEN; n];
        let out = if failed.is_none() {
            expect.fill(std::mem::size_of_val(recv) as u64);
            vec![frame(&own); n]
        } else {
            vec![frame(&[]); n]
        };
        let me = self.rank as usize;
        let finish: Finish<'a> = Box::new(move |_, got| {
            let parts = (0..n).map(|j| if j == me { &own[..] } else { body(&got[j]) });
            fold(&op, recv, parts)
        });
        Nonblocking::start(self, sig, failed, out, expect, finish)
    }
}
