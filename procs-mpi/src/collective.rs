//! The collectives of a communicator, in mpi4py's two forms: objects
//! through serde (`bcast`, `scatter`, `allreduce`, ...) and buffers of
//! plain-old-data elements (`bcast_buf`, `allreduce_buf`, ..., mpi4py's
//! `Bcast`, `Allreduce`), with [`IN_PLACE`] where MPI has it.
//!
//! Each is one round of `crate::coll` (two for a large allreduce and for
//! the `v` forms, whose counts only pairs of ranks can compare): every
//! member sends each other member what it needs, straight, so that a
//! collective of a small job costs one message latency, a large buffer is
//! copied once out of its sender (the transport's single copy), and every
//! member reads every other's header (mismatched calls are an error on
//! every rank). Reductions fold in rank order (see [`Op`]).

use std::borrow::Cow;

use bytemuck::Pod;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::coll::{ANY_LEN, Kind, Sig, body, frame};
use crate::comm::{Comm, decode, encode, via_mpi};
use crate::error::{Error, Result};
use crate::op::{Element, ObjectOp, Op};
#[cfg(feature = "openmpi")]
use crate::openmpi::Fold3;

/// MPI's `IN_PLACE`: the send side of a buffer collective is the receive
/// buffer itself (see each method).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPlace;

/// MPI's `IN_PLACE`, as mpi4py spells it: `comm.allreduce_buf(IN_PLACE,
/// &mut buf, Op::SUM)`.
pub const IN_PLACE: InPlace = InPlace;

/// The send side of a buffer collective: a slice, or [`IN_PLACE`].
#[derive(Debug, Clone, Copy)]
pub enum SendBuf<'a, T> {
    /// These elements.
    Slice(&'a [T]),
    /// The receive buffer's own contents.
    InPlace,
}

impl<'a, T> From<&'a [T]> for SendBuf<'a, T> {
    fn from(s: &'a [T]) -> Self {
        SendBuf::Slice(s)
    }
}

impl<'a, T> From<&'a mut [T]> for SendBuf<'a, T> {
    fn from(s: &'a mut [T]) -> Self {
        SendBuf::Slice(s)
    }
}

impl<'a, T> From<&'a Vec<T>> for SendBuf<'a, T> {
    fn from(s: &'a Vec<T>) -> Self {
        SendBuf::Slice(s)
    }
}

impl<'a, T, const N: usize> From<&'a [T; N]> for SendBuf<'a, T> {
    fn from(s: &'a [T; N]) -> Self {
        SendBuf::Slice(s)
    }
}

impl<T> From<InPlace> for SendBuf<'_, T> {
    fn from(_: InPlace) -> Self {
        SendBuf::InPlace
    }
}

/// Above this many bytes an allreduce reduces in parallel: each rank
/// folds one slice of every rank's buffer, then the slices are shared.
pub(crate) const LARGE: usize = 64 << 10;
/// The bytes of each rank's input a large allreduce folds at a time (they
/// stay in cache between the copy and the fold).
const CHUNK: usize = 64 << 10;

/// Folds elements `c..c + acc.len()` of every rank's input into `acc`, in
/// rank order: this rank's from `input`, the others' read straight out of
/// them (through `scratch`). The first operand is copied straight into
/// `acc`; with `swap` (rank 0, an operation that gives the same bits in
/// either order) the second is, and this rank's folded into it. `Ok(false)`:
/// a copy failed (refused by the kernel, or its rank is gone).
#[allow(clippy::too_many_arguments)]
fn fold_chunk<T: Element>(
    op: &Op<T>,
    acc: &mut [T],
    input: &[T],
    c: usize,
    peers: &[Direct],
    me: usize,
    swap: bool,
    scratch: &mut [T],
) -> Result<bool> {
    let esz = size_of::<T>();
    let e = c + acc.len();
    let first = usize::from(swap);
    if first == me {
        acc.copy_from_slice(&input[c..e]);
    } else if crate::engine::read_remote(
        &peers[first].input,
        c * esz,
        bytemuck::cast_slice_mut(acc),
    )
    .is_err()
    {
        return Ok(false);
    }
    if swap {
        op.apply(acc, &input[c..e])?;
    }
    for (j, d) in peers.iter().enumerate().skip(first + 1) {
        let part: &[T] = if j == me {
            &input[c..e]
        } else {
            let into = &mut scratch[..e - c];
            if crate::engine::read_remote(&d.input, c * esz, bytemuck::cast_slice_mut(into))
                .is_err()
            {
                return Ok(false);
            }
            into
        };
        op.apply(acc, part)?;
    }
    Ok(true)
}

/// Where a rank of a large allreduce keeps its input and its folded slice,
/// and whether it copies straight out of other ranks.
#[derive(Debug, Clone, Copy)]
struct Direct {
    ok: bool,
    /// Its input is its result (IN_PLACE).
    in_place: bool,
    input: crate::frame::Rts,
    /// Its folded slice.
    result: u64,
    /// Its whole result buffer.
    recv: u64,
}

impl Direct {
    const LEN: usize = 56;

    fn encode(&self) -> [u8; Direct::LEN] {
        let mut b = [0u8; Direct::LEN];
        b[0] = u8::from(self.ok);
        b[1] = u8::from(self.in_place);
        let words = [
            u64::from(self.input.pid),
            self.input.addr,
            self.input.nonce_addr,
            self.input.nonce,
            self.result,
            self.recv,
        ];
        for (i, w) in words.iter().enumerate() {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    fn decode(b: &[u8]) -> Option<Direct> {
        if b.len() != Direct::LEN || b[0] > 1 || b[1] > 1 || b[2..8] != [0; 6] {
            return None;
        }
        let w =
            |i: usize| u64::from_le_bytes(b[8 + 8 * i..16 + 8 * i].try_into().unwrap_or([0; 8]));
        Some(Direct {
            ok: b[0] == 1,
            in_place: b[1] == 1,
            input: crate::frame::Rts {
                pid: u32::try_from(w(0)).ok()?,
                addr: w(1),
                nonce_addr: w(2),
                nonce: w(3),
            },
            result: w(4),
            recv: w(5),
        })
    }
}

pub(crate) fn as_bytes<T: Pod>(s: &[T]) -> &[u8] {
    bytemuck::cast_slice(s)
}

/// The elements of a received payload (borrowed when it is aligned, as
/// a message's buffer is).
fn elems<T: Pod>(b: &[u8]) -> Cow<'_, [T]> {
    match bytemuck::try_cast_slice(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            let mut v = vec![T::zeroed(); b.len() / size_of::<T>().max(1)];
            copy_into(&mut v, b);
            Cow::Owned(v)
        }
    }
}

pub(crate) fn copy_into<T: Pod>(dst: &mut [T], src: &[u8]) {
    let d: &mut [u8] = bytemuck::cast_slice_mut(dst);
    let n = d.len().min(src.len());
    d[..n].copy_from_slice(&src[..n]);
}

fn size_of<T>() -> usize {
    std::mem::size_of::<T>()
}

/// `dst <- x_0 ∘ x_1 ∘ ... ` over `parts` in order (each `dst.len()`
/// elements as bytes).
pub(crate) fn fold<'p, T: Element>(
    op: &Op<T>,
    dst: &mut [T],
    mut parts: impl Iterator<Item = &'p [u8]>,
) -> Result<()> {
    if let Some(first) = parts.next() {
        copy_into(dst, first);
    }
    for p in parts {
        op.apply(dst, &elems::<T>(p))?;
    }
    Ok(())
}

/// The payloads of ranks `0..upto` of a round, in rank order, with this
/// rank's (`me`) own bytes in its place.
fn parts<'a>(
    got: &'a [Vec<u8>],
    upto: usize,
    me: usize,
    own: &'a [u8],
) -> impl Iterator<Item = &'a [u8]> {
    (0..upto).map(move |j| if j == me { own } else { body(&got[j]) })
}

/// Checks counts and displacements against a buffer of `len` elements.
fn check_layout(counts: &[usize], displs: &[usize], len: usize, n: usize) -> Option<String> {
    if counts.len() != n || displs.len() != n {
        return Some(format!(
            "{} counts and {} displacements for {n} ranks",
            counts.len(),
            displs.len()
        ));
    }
    for (j, (&c, &d)) in counts.iter().zip(displs).enumerate() {
        if d.checked_add(c).is_none_or(|end| end > len) {
            return Some(format!(
                "rank {j}'s part ({c} elements at {d}) is outside a buffer of {len}"
            ));
        }
    }
    None
}

impl Comm {
    fn n(&self) -> usize {
        self.group.len()
    }

    fn me(&self) -> usize {
        self.rank as usize
    }

    /// Messages of no payload for every member (the round writes their
    /// headers into them).
    fn empties(&self) -> Vec<Vec<u8>> {
        vec![Vec::new(); self.n()]
    }

    fn any_len(&self) -> Vec<u64> {
        vec![ANY_LEN; self.n()]
    }

    /// A root that is not a rank: a failure every member hears of.
    pub(crate) fn bad_root(&self, root: i32) -> Option<String> {
        (root < 0 || root as usize >= self.n())
            .then(|| format!("root {root} is not a rank of {}", self.n()))
    }

    /// Every member's encoding of `bytes`, for a round that sends all the
    /// same.
    fn to_all(&self, bytes: &[u8]) -> Vec<Vec<u8>> {
        // This rank's own entry is never sent: left empty, not a copy.
        let (n, me) = (self.n(), self.me());
        let f = frame(bytes);
        let mut out: Vec<Vec<u8>> = (0..n)
            .map(|j| {
                if j == me || j + 1 == n {
                    Vec::new()
                } else {
                    f.clone()
                }
            })
            .collect();
        if me + 1 != n {
            out[n - 1] = f;
        }
        out
    }

    // ----- object forms -----

    /// Waits until every member has called it.
    #[doc(alias = "Barrier")]
    pub fn barrier(&self) -> Result<()> {
        via_mpi!(self, m => m.barrier());
        let sig = Sig::new(Kind::Barrier);
        if let Some(done) = self.same_round(sig, &[], ANY_LEN, |_, _| Ok(())) {
            return done;
        }
        self.round(
            Sig::new(Kind::Barrier),
            None,
            self.empties(),
            self.any_len(),
        )
        .map(drop)
    }

    /// Broadcasts `obj` from `root` (which passes `Some`; the others'
    /// argument is not used) and returns it on every rank.
    ///
    /// ```
    /// use procs_mpi::Communicator;
    ///
    /// let got = procs_mpi::run(3, |world| {
    ///     let mine = (world.rank() == 0).then(|| vec!["a".to_string(), "b".into()]);
    ///     world.bcast(mine.as_ref(), 0).unwrap()
    /// })?;
    /// assert!(got.iter().all(|v| v == &["a", "b"]));
    /// # Ok::<(), procs_mpi::Error>(())
    /// ```
    pub fn bcast<T: Serialize + DeserializeOwned>(&self, obj: Option<&T>, root: i32) -> Result<T> {
        via_mpi!(self, m => self.mpi_bcast(m, obj, root));
        let sig = Sig::new(Kind::Bcast).root(root);
        let mut failed = self.bad_root(root);
        let mut out = self.empties();
        let mut own = Vec::new();
        if failed.is_none() && self.rank == root {
            match obj {
                None => failed = Some("the root passed no object to broadcast".into()),
                Some(o) => {
                    own = encode(o)?;
                    out = self.to_all(&own);
                }
            }
        }
        if failed.is_none() {
            // The root's object to every member; the others send nothing.
            let mut value = None;
            let done = self.same_round(sig, &own, ANY_LEN, |j, part| {
                if j == root as usize {
                    value = Some(decode(part, root)?);
                }
                Ok(())
            });
            if let Some(done) = done {
                done?;
                return value.ok_or_else(|| Error::Job("bcast: no value from the root".into()));
            }
        }
        let got = self.round(sig, failed, out, self.any_len())?;
        if self.rank == root {
            decode(&own, root)
        } else {
            decode(body(&got[root as usize]), root)
        }
    }

    /// Sends `objs[j]` from `root` to rank `j` (the root passes a list of
    /// one object per rank) and returns this rank's.
    pub fn scatter<T: Serialize + DeserializeOwned>(
        &self,
        objs: Option<&[T]>,
        root: i32,
    ) -> Result<T> {
        via_mpi!(self, m => self.mpi_scatter(m, objs, root));
        let sig = Sig::new(Kind::Scatter).root(root);
        let mut failed = self.bad_root(root);
        let mut out = self.empties();
        let mut own = Vec::new();
        if failed.is_none() && self.rank == root {
            match objs {
                None => failed = Some("the root passed no objects to scatter".into()),
                Some(o) if o.len() != self.n() => {
                    failed = Some(format!(
                        "scatter of {} objects over {} ranks",
                        o.len(),
                        self.n()
                    ))
                }
                Some(o) => {
                    for (j, x) in o.iter().enumerate() {
                        let b = encode(x)?;
                        if j == self.me() {
                            own = b;
                        } else {
                            out[j] = frame(&b);
                        }
                    }
                }
            }
        }
        let got = self.round(sig, failed, out, self.any_len())?;
        if self.rank == root {
            decode(&own, root)
        } else {
            decode(body(&got[root as usize]), root)
        }
    }

    /// Every rank's `obj` at `root`, in rank order (`None` elsewhere).
    pub fn gather<T: Serialize + DeserializeOwned>(
        &self,
        obj: &T,
        root: i32,
    ) -> Result<Option<Vec<T>>> {
        let got = self.gathered(Sig::new(Kind::Gather).root(root), obj, root)?;
        got.map(|parts| {
            parts
                .iter()
                .enumerate()
                .map(|(j, b)| decode(b, j as i32))
                .collect()
        })
        .transpose()
    }

    /// The encodings of every rank's `obj`, in rank order, at `root`.
    fn gathered<T: Serialize>(&self, sig: Sig, obj: &T, root: i32) -> Result<Option<Vec<Vec<u8>>>> {
        let failed = self.bad_root(root);
        let own = encode(obj)?;
        via_mpi!(self, failed, m => m.gather_vecs(&own, root));
        if failed.is_none() {
            // Every member's object to every member: the root keeps them.
            let mut parts = Vec::new();
            let keep = self.rank == root;
            let done = self.same_round(sig, &own, ANY_LEN, |_, part| {
                if keep {
                    parts.push(part.to_vec());
                }
                Ok(())
            });
            if let Some(done) = done {
                done?;
                return Ok(keep.then_some(parts));
            }
        }
        let mut out = self.empties();
        if failed.is_none() && self.rank != root {
            out[root as usize] = frame(&own);
        }
        let mut got = self.round(sig, failed, out, self.any_len())?;
        if self.rank != root {
            return Ok(None);
        }
        for (j, m) in got.iter_mut().enumerate() {
            if j == self.me() {
                *m = own.clone();
            } else {
                m.drain(..crate::coll::HDR);
            }
        }
        Ok(Some(got))
    }

    /// The encodings of every rank's `obj`, in rank order, on every rank.
    fn all_gathered<T: Serialize>(&self, sig: Sig, obj: &T) -> Result<Vec<Vec<u8>>> {
        let own = encode(obj)?;
        via_mpi!(self, m => m.allgather_vecs(&own));
        let mut parts = Vec::with_capacity(self.n());
        let done = self.same_round(sig, &own, ANY_LEN, |_, part| {
            parts.push(part.to_vec());
            Ok(())
        });
        if let Some(done) = done {
            done?;
            return Ok(parts);
        }
        let mut got = self.round(sig, None, self.to_all(&own), self.any_len())?;
        for (j, m) in got.iter_mut().enumerate() {
            if j == self.me() {
                *m = own.clone();
            } else {
                m.drain(..crate::coll::HDR);
            }
        }
        Ok(got)
    }

    /// Every rank's `obj`, in rank order, on every rank.
    pub fn allgather<T: Serialize + DeserializeOwned>(&self, obj: &T) -> Result<Vec<T>> {
        let parts = self.all_gathered(Sig::new(Kind::Allgather), obj)?;
        parts
            .iter()
            .enumerate()
            .map(|(j, b)| decode(b, j as i32))
            .collect()
    }

    /// Sends `objs[j]` to rank `j` (one object per rank) and returns what
    /// each rank sent this one, in rank order.
    pub fn alltoall<T: Serialize + DeserializeOwned>(&self, objs: &[T]) -> Result<Vec<T>> {
        via_mpi!(self, m => self.mpi_alltoall(m, objs));
        let sig = Sig::new(Kind::Alltoall);
        let mut out = self.empties();
        let mut failed = None;
        let mut own = Vec::new();
        if objs.len() != self.n() {
            failed = Some(format!(
                "alltoall of {} objects over {} ranks",
                objs.len(),
                self.n()
            ));
        } else {
            for (j, x) in objs.iter().enumerate() {
                let b = encode(x)?;
                if j == self.me() {
                    own = b;
                } else {
                    out[j] = frame(&b);
                }
            }
        }
        let got = self.round(sig, failed, out, self.any_len())?;
        (0..self.n())
            .map(|j| {
                let b = if j == self.me() {
                    &own[..]
                } else {
                    body(&got[j])
                };
                decode(b, j as i32)
            })
            .collect()
    }

    /// Folds decoded parts in rank order.
    fn fold_objects<T: DeserializeOwned>(
        parts: &[Vec<u8>],
        op: &impl ObjectOp<T>,
    ) -> Result<Option<T>> {
        let mut acc: Option<T> = None;
        for (j, b) in parts.iter().enumerate() {
            let x: T = decode(b, j as i32)?;
            acc = Some(match acc {
                None => x,
                Some(a) => op.combine(a, x)?,
            });
        }
        Ok(acc)
    }

    /// Reduces every rank's `obj` with `op` in rank order
    /// (`((x0 ∘ x1) ∘ x2) ...`) at `root`; `None` elsewhere. `op` is a
    /// closure `Fn(T, T) -> T` or an [`Op`] on one element.
    pub fn reduce<T: Serialize + DeserializeOwned>(
        &self,
        obj: &T,
        op: impl ObjectOp<T>,
        root: i32,
    ) -> Result<Option<T>> {
        let sig = Sig::new(Kind::Reduce).root(root).op(op.code());
        match self.gathered(sig, obj, root)? {
            None => Ok(None),
            Some(parts) => Self::fold_objects(&parts, &op),
        }
    }

    /// Reduces every rank's `obj` with `op` in rank order, on every rank.
    ///
    /// ```
    /// use procs_mpi::{Communicator, Op};
    ///
    /// let got = procs_mpi::run(4, |world| {
    ///     let r = world.rank() as i64;
    ///     let sum = world.allreduce(&r, Op::SUM).unwrap();
    ///     let words = world.allreduce(&r.to_string(), |a: String, b: String| a + &b).unwrap();
    ///     (sum, words)
    /// })?;
    /// assert!(got.iter().all(|g| g == &(6, "0123".to_string())));
    /// # Ok::<(), procs_mpi::Error>(())
    /// ```
    pub fn allreduce<T: Serialize + DeserializeOwned>(
        &self,
        obj: &T,
        op: impl ObjectOp<T>,
    ) -> Result<T> {
        let sig = Sig::new(Kind::Allreduce).op(op.code());
        let parts = self.all_gathered(sig, obj)?;
        Self::fold_objects(&parts, &op)?.ok_or_else(|| Error::Job("no rank".into()))
    }

    /// The inclusive prefix reduction: rank `r` gets `x0 ∘ ... ∘ xr`.
    pub fn scan<T: Serialize + DeserializeOwned>(
        &self,
        obj: &T,
        op: impl ObjectOp<T>,
    ) -> Result<T> {
        let parts = self.prefix_parts(Sig::new(Kind::Scan).op(op.code()), obj)?;
        Self::fold_objects(&parts, &op)?.ok_or_else(|| Error::Job("no rank".into()))
    }

    /// The exclusive prefix reduction: rank `r > 0` gets `x0 ∘ ... ∘
    /// x(r-1)`; rank 0 gets `None`.
    pub fn exscan<T: Serialize + DeserializeOwned>(
        &self,
        obj: &T,
        op: impl ObjectOp<T>,
    ) -> Result<Option<T>> {
        let mut parts = self.prefix_parts(Sig::new(Kind::Exscan).op(op.code()), obj)?;
        parts.pop();
        Self::fold_objects(&parts, &op)
    }

    /// The encodings of ranks `0..=me`'s objects: each rank sends its
    /// object to the ranks above it.
    fn prefix_parts<T: Serialize>(&self, sig: Sig, obj: &T) -> Result<Vec<Vec<u8>>> {
        let own = encode(obj)?;
        // Objects have no fixed size for MPI_Scan: every rank's encoding to
        // every rank, of which each keeps those up to its own.
        via_mpi!(self, m => m.allgather_vecs(&own).map(|mut all| {
            all.truncate(self.me() + 1);
            all
        }));
        let mut out = self.empties();
        for o in out.iter_mut().skip(self.me() + 1) {
            *o = frame(&own);
        }
        let got = self.round(sig, None, out, self.any_len())?;
        let mut parts: Vec<Vec<u8>> = got
            .into_iter()
            .take(self.me())
            .map(|mut m| {
                m.drain(..crate::coll::HDR);
                m
            })
            .collect();
        parts.push(own);
        Ok(parts)
    }

    // ----- buffer forms -----

    /// Broadcasts `buf` from `root` into every rank's `buf` (of one
    /// length on every rank).
    #[doc(alias = "Bcast")]
    pub fn bcast_buf<T: Pod>(&self, buf: &mut [T], root: i32) -> Result<()> {
        via_mpi!(self, self.bad_root(root), m => m.bcast_bytes(bytemuck::cast_slice_mut(buf), root));
        let (sig, failed, out, expect) = self.bcast_round(as_bytes(buf), root);
        let got = self.round(sig, failed, out, expect)?;
        if self.rank != root {
            copy_into(buf, body(&got[root as usize]));
        }
        Ok(())
    }

    /// A broadcast round's messages (shared with `ibcast_buf`).
    pub(crate) fn bcast_round(
        &self,
        bytes: &[u8],
        root: i32,
    ) -> (Sig, Option<String>, Vec<Vec<u8>>, Vec<u64>) {
        let sig = Sig::new(Kind::Bcast).root(root).count(bytes.len()).buffer();
        let failed = self.bad_root(root);
        let mut out = self.empties();
        let mut expect = self.any_len();
        if failed.is_none() {
            if self.rank == root {
                out = self.to_all(bytes);
            } else {
                expect[root as usize] = bytes.len() as u64;
            }
        }
        (sig, failed, out, expect)
    }

    /// Splits the root's `send` (`size() * recv.len()` elements) into one
    /// part per rank, in rank order, into each rank's `recv`. At the root,
    /// `recv = None` is MPI's `IN_PLACE`: its part stays where it is.
    #[doc(alias = "Scatter")]
    pub fn scatter_buf<T: Pod>(
        &self,
        send: Option<&[T]>,
        recv: Option<&mut [T]>,
        root: i32,
    ) -> Result<()> {
        let n = self.n();
        let k = match (&recv, send) {
            (Some(r), _) => r.len(),
            (None, Some(s)) if self.rank == root => s.len() / n.max(1),
            _ => 0,
        };
        let counts = vec![k; n];
        let displs: Vec<usize> = (0..n).map(|j| j * k).collect();
        self.scatter_parts(
            Sig::new(Kind::Scatter).root(root).count(k).buffer(),
            send.map(|s| (s, &counts[..], &displs[..])),
            recv,
            root,
            k,
        )
        .map(drop)
    }

    /// Sends `counts[j]` elements at `displs[j]` of the root's `send` to
    /// rank `j`, into its `recv` (MPI's `Scatterv`; `recv = None` at the
    /// root is `IN_PLACE`).
    #[doc(alias = "Scatterv")]
    pub fn scatterv_buf<T: Pod>(
        &self,
        send: Option<(&[T], &[usize], &[usize])>,
        recv: Option<&mut [T]>,
        root: i32,
    ) -> Result<()> {
        let k = recv.as_ref().map_or(0, |r| r.len());
        let pair = self.scatter_parts(
            Sig::new(Kind::Scatterv).root(root).buffer(),
            send,
            recv,
            root,
            k,
        )?;
        self.verdict(pair)
    }

    fn scatter_parts<T: Pod>(
        &self,
        sig: Sig,
        send: Option<(&[T], &[usize], &[usize])>,
        recv: Option<&mut [T]>,
        root: i32,
        k: usize,
    ) -> Result<Option<Error>> {
        let n = self.n();
        let mut failed = self.bad_root(root);
        if failed.is_none() {
            if self.rank == root {
                match send {
                    None => failed = Some("the root passed no buffer to scatter".into()),
                    Some((s, counts, displs)) => {
                        failed = check_layout(counts, displs, s.len(), n);
                        if failed.is_none()
                            && let Some(r) = &recv
                            && r.len() != counts[self.me()]
                        {
                            failed = Some(format!(
                                "the root's receive buffer holds {} elements, its part {}",
                                r.len(),
                                counts[self.me()]
                            ));
                        }
                    }
                }
            } else if recv.is_none() {
                failed = Some("IN_PLACE is for the root alone".into());
            }
        }
        via_mpi!(self, failed, m => {
            let at_root = if self.rank == root { send } else { None };
            match recv {
                Some(r) => m.scatterv_buf(at_root, r, root),
                // IN_PLACE at the root: its part stays; MPI gets a copy.
                None => {
                    let (s, counts, displs) = send.expect("checked above");
                    let me = self.me();
                    let mut own = s[displs[me]..displs[me] + counts[me]].to_vec();
                    m.scatterv_buf(at_root, &mut own, root)
                }
            }
            .map(|()| None)
        });
        let mut out = self.empties();
        let mut expect = self.any_len();
        if failed.is_none() {
            if self.rank == root {
                if let Some((s, counts, displs)) = send {
                    for j in (0..n).filter(|&j| j != self.me()) {
                        out[j] = frame(as_bytes(&s[displs[j]..displs[j] + counts[j]]));
                    }
                }
            } else {
                expect[root as usize] = (k * size_of::<T>()) as u64;
            }
        }
        let p = self.start_round(sig, failed, out, expect)?;
        let (got, pair) = self.finish_round_pairs(p)?;
        if pair.is_none()
            && let Some(r) = recv
        {
            if self.rank == root {
                if let Some((s, _, displs)) = send {
                    let d = displs[self.me()];
                    r.copy_from_slice(&s[d..d + r.len()]);
                }
            } else {
                copy_into(r, body(&got[root as usize]));
            }
        }
        Ok(pair)
    }

    /// Gathers every rank's `send` into the root's `recv` (`size()` parts
    /// of `send.len()` elements, in rank order). At the root, `send =
    /// IN_PLACE` leaves its part in `recv` where it is.
    #[doc(alias = "Gather")]
    pub fn gather_buf<'s, T: Pod>(
        &self,
        send: impl Into<SendBuf<'s, T>>,
        recv: Option<&mut [T]>,
        root: i32,
    ) -> Result<()> {
        let send = send.into();
        let n = self.n();
        let k = match (&send, &recv) {
            (SendBuf::Slice(s), _) => s.len(),
            (SendBuf::InPlace, Some(r)) => r.len() / n.max(1),
            (SendBuf::InPlace, None) => 0,
        };
        let counts = vec![k; n];
        let displs: Vec<usize> = (0..n).map(|j| j * k).collect();
        self.gather_parts(
            Sig::new(Kind::Gather).root(root).count(k).buffer(),
            send,
            recv.map(|r| (r, &counts[..], &displs[..])),
            root,
        )
        .map(drop)
    }

    /// Gathers `send` from each rank `j` into `counts[j]` elements at
    /// `displs[j]` of the root's `recv` (MPI's `Gatherv`).
    #[doc(alias = "Gatherv")]
    pub fn gatherv_buf<'s, T: Pod>(
        &self,
        send: impl Into<SendBuf<'s, T>>,
        recv: Option<(&mut [T], &[usize], &[usize])>,
        root: i32,
    ) -> Result<()> {
        let pair = self.gather_parts(
            Sig::new(Kind::Gatherv).root(root).buffer(),
            send.into(),
            recv,
            root,
        )?;
        self.verdict(pair)
    }

    fn gather_parts<T: Pod>(
        &self,
        sig: Sig,
        send: SendBuf<'_, T>,
        recv: Option<(&mut [T], &[usize], &[usize])>,
        root: i32,
    ) -> Result<Option<Error>> {
        let n = self.n();
        let mut failed = self.bad_root(root);
        if failed.is_none() {
            if self.rank == root {
                match &recv {
                    None => failed = Some("the root passed no buffer to gather into".into()),
                    Some((r, counts, displs)) => {
                        failed = check_layout(counts, displs, r.len(), n);
                        if failed.is_none()
                            && let SendBuf::Slice(s) = send
                            && s.len() != counts[self.me()]
                        {
                            failed = Some(format!(
                                "the root sends {} elements, its part is {}",
                                s.len(),
                                counts[self.me()]
                            ));
                        }
                    }
                }
            } else if let SendBuf::InPlace = send {
                failed = Some("IN_PLACE is for the root alone".into());
            }
        }
        via_mpi!(self, failed, m => {
            let recv = if self.rank == root { recv } else { None };
            match (send, recv) {
                (SendBuf::Slice(s), recv) => m.gatherv_buf(s, recv, root),
                // IN_PLACE at the root: MPI gets a copy of its part.
                (SendBuf::InPlace, Some((r, counts, displs))) => {
                    let me = self.me();
                    let own = r[displs[me]..displs[me] + counts[me]].to_vec();
                    m.gatherv_buf(&own, Some((r, counts, displs)), root)
                }
                (SendBuf::InPlace, None) => unreachable!("checked above"),
            }
            .map(|()| None)
        });
        let mut out = self.empties();
        let mut expect = self.any_len();
        if failed.is_none() {
            if self.rank == root {
                if let Some((_, counts, _)) = &recv {
                    for j in (0..n).filter(|&j| j != self.me()) {
                        expect[j] = (counts[j] * size_of::<T>()) as u64;
                    }
                }
            } else if let SendBuf::Slice(s) = send {
                out[root as usize] = frame(as_bytes(s));
            }
        }
        let p = self.start_round(sig, failed, out, expect)?;
        let (got, pair) = self.finish_round_pairs(p)?;
        if pair.is_none()
            && self.rank == root
            && let Some((r, counts, displs)) = recv
        {
            for j in 0..n {
                let at = &mut r[displs[j]..displs[j] + counts[j]];
                if j != self.me() {
                    copy_into(at, body(&got[j]));
                } else if let SendBuf::Slice(s) = send {
                    at.copy_from_slice(s);
                }
            }
        }
        Ok(pair)
    }

    /// Gathers every rank's `send` into every rank's `recv` (`size()`
    /// parts of `send.len()` elements). `send = IN_PLACE`: this rank's
    /// part is already at its place in `recv`.
    #[doc(alias = "Allgather")]
    pub fn allgather_buf<'s, T: Pod>(
        &self,
        send: impl Into<SendBuf<'s, T>>,
        recv: &mut [T],
    ) -> Result<()> {
        let send = send.into();
        let n = self.n();
        let k = match send {
            SendBuf::Slice(s) => s.len(),
            SendBuf::InPlace => recv.len() / n.max(1),
        };
        let counts = vec![k; n];
        let displs: Vec<usize> = (0..n).map(|j| j * k).collect();
        self.allgather_parts(
            Sig::new(Kind::Allgather).count(k).buffer(),
            send,
            recv,
            &counts,
            &displs,
        )
    }

    /// Gathers each rank `j`'s `send` into `counts[j]` elements at
    /// `displs[j]` of every rank's `recv` (MPI's `Allgatherv`; the counts
    /// are the same on every rank).
    #[doc(alias = "Allgatherv")]
    pub fn allgatherv_buf<'s, T: Pod>(
        &self,
        send: impl Into<SendBuf<'s, T>>,
        recv: &mut [T],
        counts: &[usize],
        displs: &[usize],
    ) -> Result<()> {
        let sig = Sig::new(Kind::Allgatherv)
            .count(counts.iter().sum::<usize>())
            .buffer();
        self.allgather_parts(sig, send.into(), recv, counts, displs)
    }

    fn allgather_parts<T: Pod>(
        &self,
        sig: Sig,
        send: SendBuf<'_, T>,
        recv: &mut [T],
        counts: &[usize],
        displs: &[usize],
    ) -> Result<()> {
        let n = self.n();
        let me = self.me();
        let mut failed = check_layout(counts, displs, recv.len(), n);
        let mut out = self.empties();
        let mut expect = self.any_len();
        if failed.is_none() {
            let mine: &[T] = match send {
                SendBuf::Slice(s) => s,
                SendBuf::InPlace => &recv[displs[me]..displs[me] + counts[me]],
            };
            if mine.len() != counts[me] {
                failed = Some(format!(
                    "sends {} elements, its part is {}",
                    mine.len(),
                    counts[me]
                ));
            }
        }
        via_mpi!(self, failed, m => match send {
            SendBuf::Slice(s) => m.allgatherv_buf(s, recv, counts, displs),
            // IN_PLACE: MPI gets a copy of this rank's part.
            SendBuf::InPlace => {
                let own = recv[displs[me]..displs[me] + counts[me]].to_vec();
                m.allgatherv_buf(&own, recv, counts, displs)
            }
        });
        if failed.is_none() {
            let mine: &[T] = match send {
                SendBuf::Slice(s) => s,
                SendBuf::InPlace => &recv[displs[me]..displs[me] + counts[me]],
            };
            {
                out = self.to_all(as_bytes(mine));
                for (j, e) in expect.iter_mut().enumerate() {
                    *e = (counts[j] * size_of::<T>()) as u64;
                }
            }
        }
        let got = self.round(sig, failed, out, expect)?;
        for j in 0..n {
            let at = &mut recv[displs[j]..displs[j] + counts[j]];
            if j != me {
                copy_into(at, body(&got[j]));
            } else if let SendBuf::Slice(s) = send {
                at.copy_from_slice(s);
            }
        }
        Ok(())
    }

    /// Sends part `j` of `send` (`size()` parts of equal length) to rank
    /// `j`; part `j` of `recv` is what rank `j` sent this one. `send =
    /// IN_PLACE`: the parts to send are in `recv`.
    #[doc(alias = "Alltoall")]
    pub fn alltoall_buf<'s, T: Pod>(
        &self,
        send: impl Into<SendBuf<'s, T>>,
        recv: &mut [T],
    ) -> Result<()> {
        let n = self.n().max(1);
        let k = recv.len() / n;
        let counts = vec![k; n];
        let displs: Vec<usize> = (0..n).map(|j| j * k).collect();
        let sig = Sig::new(Kind::Alltoall).count(k).buffer();
        let send = send.into();
        if let SendBuf::Slice(s) = send
            && (s.len() != recv.len() || !recv.len().is_multiple_of(n))
        {
            let why = format!(
                "alltoall of {} elements into {} over {n} ranks",
                s.len(),
                recv.len()
            );
            return self
                .round(sig, Some(why), self.empties(), self.any_len())
                .map(drop);
        }
        let pair = self.alltoall_parts(sig, send, (&counts, &displs), recv, (&counts, &displs))?;
        match pair {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Sends `scounts[j]` elements at `sdispls[j]` of `send` to rank `j`
    /// and receives `rcounts[j]` elements from it at `rdispls[j]` of
    /// `recv` (MPI's `Alltoallv`; `send = IN_PLACE` sends from `recv` with
    /// the receive layout).
    #[doc(alias = "Alltoallv")]
    pub fn alltoallv_buf<'s, T: Pod>(
        &self,
        send: impl Into<SendBuf<'s, T>>,
        scounts: &[usize],
        sdispls: &[usize],
        recv: &mut [T],
        rcounts: &[usize],
        rdispls: &[usize],
    ) -> Result<()> {
        let send = send.into();
        let sig = Sig::new(Kind::Alltoallv).buffer();
        let slayout = match send {
            SendBuf::Slice(_) => (scounts, sdispls),
            SendBuf::InPlace => (rcounts, rdispls),
        };
        let pair = self.alltoall_parts(sig, send, slayout, recv, (rcounts, rdispls))?;
        self.verdict(pair)
    }

    fn alltoall_parts<T: Pod>(
        &self,
        sig: Sig,
        send: SendBuf<'_, T>,
        (scounts, sdispls): (&[usize], &[usize]),
        recv: &mut [T],
        (rcounts, rdispls): (&[usize], &[usize]),
    ) -> Result<Option<Error>> {
        let n = self.n();
        let me = self.me();
        let src: &[T] = match send {
            SendBuf::Slice(s) => s,
            SendBuf::InPlace => recv,
        };
        let mut failed = check_layout(scounts, sdispls, src.len(), n)
            .or_else(|| check_layout(rcounts, rdispls, recv.len(), n));
        if failed.is_none() && scounts[me] != rcounts[me] {
            failed = Some(format!(
                "sends itself {} elements and expects {}",
                scounts[me], rcounts[me]
            ));
        }
        via_mpi!(self, failed, m => {
            let copy;
            let src = match send {
                SendBuf::Slice(s) => s,
                // IN_PLACE: MPI gets a copy of what is sent.
                SendBuf::InPlace => {
                    copy = recv.to_vec();
                    &copy[..]
                }
            };
            m.alltoallv_buf(src, scounts, sdispls, recv, rcounts, rdispls).map(|()| None)
        });
        let mut out = self.empties();
        let mut expect = self.any_len();
        let mut own = Vec::new();
        if failed.is_none() {
            for j in 0..n {
                let part = &src[sdispls[j]..sdispls[j] + scounts[j]];
                if j == me {
                    own = part.to_vec();
                } else {
                    out[j] = frame(as_bytes(part));
                    expect[j] = (rcounts[j] * size_of::<T>()) as u64;
                }
            }
        }
        let p = self.start_round(sig, failed, out, expect)?;
        let (got, pair) = self.finish_round_pairs(p)?;
        if pair.is_none() {
            for j in 0..n {
                let at = &mut recv[rdispls[j]..rdispls[j] + rcounts[j]];
                if j == me {
                    at.copy_from_slice(&own);
                } else {
                    copy_into(at, body(&got[j]));
                }
            }
        }
        Ok(pair)
    }

    /// The input of a reduction: `send`, or `recv` in place.
    fn input<'a, T: Pod>(send: &SendBuf<'a, T>, recv: &'a [T]) -> Cow<'a, [T]> {
        match send {
            SendBuf::Slice(s) => Cow::Borrowed(s),
            SendBuf::InPlace => Cow::Owned(recv.to_vec()),
        }
    }

    /// Reduces every rank's `send` element by element with `op`, in rank
    /// order, into the root's `recv` (`None` elsewhere is fine). At the
    /// root, `send = IN_PLACE` takes its input from `recv`.
    #[doc(alias = "Reduce")]
    pub fn reduce_buf<'s, T: Element>(
        &self,
        send: impl Into<SendBuf<'s, T>>,
        recv: Option<&mut [T]>,
        op: Op<T>,
        root: i32,
    ) -> Result<()> {
        let send = send.into();
        let mut failed = self.bad_root(root).or_else(|| op.check().err());
        let k = match (&send, &recv) {
            (SendBuf::Slice(s), _) => s.len(),
            (SendBuf::InPlace, Some(r)) => r.len(),
            (SendBuf::InPlace, None) => 0,
        };
        let sig = Sig::new(Kind::Reduce)
            .root(root)
            .count(k)
            .op(op.code())
            .buffer();
        let is_root = self.rank == root;
        if failed.is_none() {
            failed = match (&send, &recv) {
                (SendBuf::InPlace, _) if !is_root => Some("IN_PLACE is for the root alone".into()),
                (_, None) if is_root => Some("the root passed no buffer to reduce into".into()),
                (_, Some(r)) if is_root && r.len() != k => {
                    Some(format!("reduce of {k} elements into {}", r.len()))
                }
                _ => None,
            };
        }
        via_mpi!(self, failed, m => {
            let recv = if is_root { recv } else { None };
            match (send, recv) {
                (SendBuf::Slice(s), r) => m.reduce_buf(s, r, &op, root),
                // IN_PLACE at the root: MPI gets a copy of its input.
                (SendBuf::InPlace, Some(r)) => {
                    let own = r.to_vec();
                    m.reduce_buf(&own, Some(r), &op, root)
                }
                (SendBuf::InPlace, None) => unreachable!("checked above"),
            }
        });
        let mut out = self.empties();
        let mut expect = self.any_len();
        if failed.is_none() {
            match &send {
                SendBuf::Slice(s) if !is_root => out[root as usize] = frame(as_bytes(s)),
                _ => {
                    for (j, e) in expect.iter_mut().enumerate() {
                        if j != self.me() {
                            *e = (k * size_of::<T>()) as u64;
                        }
                    }
                }
            }
        }
        let got = self.round(sig, failed, out, expect)?;
        if let (true, Some(r)) = (is_root, recv) {
            let own = Self::input(&send, r).into_owned();
            let me = self.me();
            let parts = parts(&got, self.n(), me, as_bytes(&own));
            fold(&op, r, parts)?;
        }
        Ok(())
    }

    /// Reduces every rank's `send` element by element with `op`, in rank
    /// order, into every rank's `recv`; `send = IN_PLACE` takes the input
    /// from `recv`.
    ///
    /// ```
    /// use procs_mpi::{Communicator, IN_PLACE, Op};
    ///
    /// let got = procs_mpi::run(3, |world| {
    ///     let r = world.rank() as f64;
    ///     let mut sum = [0.0; 2];
    ///     world.allreduce_buf(&[r, 10.0 * r], &mut sum, Op::SUM).unwrap();
    ///     let mut max = [r as i32];
    ///     world.allreduce_buf(IN_PLACE, &mut max, Op::MAX).unwrap();
    ///     (sum, max[0])
    /// })?;
    /// assert!(got.iter().all(|g| g == &([3.0, 30.0], 2)));
    /// # Ok::<(), procs_mpi::Error>(())
    /// ```
    #[doc(alias = "Allreduce")]
    pub fn allreduce_buf<'s, T: Element>(
        &self,
        send: impl Into<SendBuf<'s, T>>,
        recv: &mut [T],
        op: Op<T>,
    ) -> Result<()> {
        let send = send.into();
        let k = recv.len();
        let sig = Sig::new(Kind::Allreduce).count(k).op(op.code()).buffer();
        let mut failed = op.check().err();
        if let SendBuf::Slice(s) = send
            && s.len() != k
        {
            failed = Some(format!("allreduce of {} elements into {k}", s.len()));
        }
        via_mpi!(self, failed, m => match send {
            SendBuf::Slice(s) => m.fold_buf(Fold3::All, s, recv, &op),
            SendBuf::InPlace => {
                let own = recv.to_vec();
                m.fold_buf(Fold3::All, &own, recv, &op)
            }
        });
        if failed.is_none() && k * size_of::<T>() > LARGE && self.n() > 1 {
            return self.allreduce_large(sig, &send, recv, &op);
        }
        let own: Cow<'_, [T]> = match send {
            SendBuf::Slice(s) => Cow::Borrowed(s),
            SendBuf::InPlace => Cow::Owned(recv.to_vec()),
        };
        if failed.is_none() {
            // Each part folded as it is read, in rank order.
            let bytes = as_bytes(&own);
            let mut first = true;
            let done = self.same_round(sig, bytes, bytes.len() as u64, |_, part| {
                if std::mem::take(&mut first) {
                    copy_into(recv, part);
                    Ok(())
                } else {
                    op.apply(recv, &elems::<T>(part))
                }
            });
            if let Some(done) = done {
                return done;
            }
        }
        let mut expect = self.any_len();
        let out = if failed.is_none() {
            expect.fill((k * size_of::<T>()) as u64);
            self.to_all(as_bytes(&own))
        } else {
            self.empties()
        };
        let got = self.round(sig, failed, out, expect)?;
        let me = self.me();
        let parts = parts(&got, self.n(), me, as_bytes(&own));
        fold(&op, recv, parts)
    }

    /// The slice of `k` elements rank `j` of `n` reduces: `[lo, hi)`.
    fn slice_of(k: usize, n: usize, j: usize) -> (usize, usize) {
        let (base, extra) = (k / n, k % n);
        let lo = j * base + j.min(extra);
        (lo, lo + base + usize::from(j < extra))
    }

    /// A large allreduce: by single copies where every rank can make them,
    /// else by messages.
    fn allreduce_large<T: Element>(
        &self,
        sig: Sig,
        send: &SendBuf<'_, T>,
        recv: &mut [T],
        op: &Op<T>,
    ) -> Result<()> {
        let n = self.n();
        let me = self.me();
        let k = recv.len();
        let (lo, hi) = Self::slice_of(k, n, me);
        // In place, this rank's slice is folded apart (its input stays
        // whole for the others to read) and copied in at the end.
        let mut apart: Vec<T> = match send {
            SendBuf::InPlace => vec![T::zeroed(); hi - lo],
            SendBuf::Slice(_) => Vec::new(),
        };
        let input_addr = match send {
            SendBuf::Slice(s) => s.as_ptr() as u64,
            SendBuf::InPlace => recv.as_ptr() as u64,
        };
        let result_addr = match send {
            SendBuf::Slice(_) => recv[lo..].as_ptr() as u64,
            SendBuf::InPlace => apart.as_ptr() as u64,
        };
        // Every rank says whether it copies straight out of others (as
        // measured where it runs) and where its input and result are: the
        // single-copy way is taken only if every rank can.
        let mine = Direct {
            ok: self.engine().single_copy_works(),
            in_place: matches!(send, SendBuf::InPlace),
            input: crate::engine::own_rts(input_addr),
            result: result_addr,
            recv: recv.as_ptr() as u64,
        };
        let got = self.round(sig, None, self.to_all(&mine.encode()), self.any_len())?;
        let mut peers = Vec::with_capacity(n);
        for (j, msg) in got.iter().enumerate() {
            peers.push(if j == me {
                mine
            } else {
                Direct::decode(body(msg)).ok_or_else(|| Error::Corrupt {
                    rank: j as i32,
                    what: "a large allreduce's addresses do not parse".into(),
                })?
            });
        }
        if peers.iter().all(|d| d.ok) {
            if let SendBuf::Slice(s) = send
                && !peers.iter().any(|d| d.in_place)
            {
                return self.allreduce_push(s, recv, op, &peers);
            }
            return self.allreduce_direct(send, recv, op, &peers, &mut apart);
        }
        self.allreduce_messages(send, recv, op)
    }

    /// A large allreduce by single copies: each rank folds its slice of
    /// every rank's input, read straight out of that rank in chunks that
    /// stay in cache, then reads every other rank's folded slice straight
    /// into its result. Two small rounds order the phases (no rank reads a
    /// result before it is folded, or returns while another reads from it)
    /// and agree that every copy worked; where the kernel refused one in
    /// the first phase, every rank takes the message way instead.
    fn allreduce_direct<T: Element>(
        &self,
        send: &SendBuf<'_, T>,
        recv: &mut [T],
        op: &Op<T>,
        peers: &[Direct],
        apart: &mut [T],
    ) -> Result<()> {
        let n = self.n();
        let me = self.me();
        let k = recv.len();
        let esz = size_of::<T>();
        let (lo, hi) = Self::slice_of(k, n, me);
        let chunk = (CHUNK / esz.max(1)).max(1);
        let mut scratch: Vec<T> = vec![T::zeroed(); chunk.min(hi - lo)];
        // Phase 1: fold this rank's slice.
        // A copy that failed (refused, or its rank gone: the round below
        // tells the two apart).
        let mut failed = false;
        {
            let (input, target): (&[T], &mut [T]) = match send {
                SendBuf::Slice(s) => (s, &mut recv[lo..hi]),
                SendBuf::InPlace => (&*recv, apart),
            };
            let swap = me == 0 && n > 1 && op.swaps_exactly();
            for c in (lo..hi).step_by(chunk) {
                let e = (c + chunk).min(hi);
                let acc = &mut target[c - lo..e - lo];
                if !fold_chunk(op, acc, input, c, peers, me, swap, &mut scratch)? {
                    failed = true;
                    break;
                }
            }
        }
        // Everyone folded (or says why not); a dead rank fails this round.
        let ok = self.all_true(!failed)?;
        if !ok {
            // A refused copy (nothing written to any input): messages.
            return self.allreduce_messages(send, recv, op);
        }
        // Phase 2: every other slice, straight into this rank's result.
        let mut failed = false;
        for (j, d) in peers.iter().enumerate().filter(|&(j, _)| j != me) {
            let (a, b) = Self::slice_of(k, n, j);
            let rts = crate::frame::Rts {
                addr: d.result,
                ..d.input
            };
            if crate::engine::read_remote(&rts, 0, bytemuck::cast_slice_mut(&mut recv[a..b]))
                .is_err()
            {
                failed = true;
                break;
            }
        }
        // No rank returns (and frees or changes its buffers) while another
        // still reads from it.
        let ok = self.all_true(!failed)?;
        if matches!(send, SendBuf::InPlace) {
            recv[lo..hi].copy_from_slice(apart);
        }
        if ok {
            Ok(())
        } else {
            Err(Error::Job(
                "a large allreduce's single copy failed after it had worked".into(),
            ))
        }
    }

    /// A large allreduce by single copies where no rank works in place:
    /// each rank folds its slice of every rank's input, read straight out
    /// of that rank in chunks that stay in cache, and writes each folded
    /// chunk, still in cache, into every other rank's result. One small
    /// round then agrees that every copy worked and keeps every rank until
    /// no one writes into it; where the kernel refused a copy, every rank
    /// takes the message way (the inputs are untouched, the results are
    /// written whole again).
    fn allreduce_push<T: Element>(
        &self,
        input: &[T],
        recv: &mut [T],
        op: &Op<T>,
        peers: &[Direct],
    ) -> Result<()> {
        let n = self.n();
        let me = self.me();
        let k = recv.len();
        let esz = size_of::<T>();
        let (lo, hi) = Self::slice_of(k, n, me);
        let chunk = (CHUNK / esz.max(1)).max(1);
        let mut scratch: Vec<T> = vec![T::zeroed(); chunk.min(hi - lo)];
        let mut failed = false;
        let swap = me == 0 && op.swaps_exactly();
        'fold: for c in (lo..hi).step_by(chunk) {
            let e = (c + chunk).min(hi);
            let acc = &mut recv[c..e];
            if !fold_chunk(op, acc, input, c, peers, me, swap, &mut scratch)? {
                failed = true;
                break;
            }
            for (_, d) in peers.iter().enumerate().filter(|&(j, _)| j != me) {
                let to = crate::frame::Rts {
                    addr: d.recv,
                    ..d.input
                };
                if crate::engine::write_remote(&to, c * esz, bytemuck::cast_slice(acc)).is_err() {
                    failed = true;
                    break 'fold;
                }
            }
        }
        // Everyone folded and wrote (or says why not); a dead rank fails
        // this round.
        if self.all_true(!failed)? {
            Ok(())
        } else {
            self.allreduce_messages(&SendBuf::Slice(input), recv, op)
        }
    }

    /// Whether `mine` holds on every member (a small round).
    fn all_true(&self, mine: bool) -> Result<bool> {
        let mut all = [0u8];
        self.allreduce_buf(&[u8::from(mine)], &mut all, Op::BAND)?;
        Ok(all[0] == 1)
    }

    /// A large allreduce by messages: each rank folds its slice of every
    /// rank's buffer (one copy of each slice, out of its owner), then every
    /// rank gathers the folded slices.
    fn allreduce_messages<T: Element>(
        &self,
        send: &SendBuf<'_, T>,
        recv: &mut [T],
        op: &Op<T>,
    ) -> Result<()> {
        let sig = Sig::new(Kind::Continue).count(recv.len());
        let n = self.n();
        let me = self.me();
        let k = recv.len();
        // The input, borrowed from `send` (a copy only in place).
        let own: Cow<'_, [T]> = match send {
            SendBuf::Slice(s) => Cow::Borrowed(s),
            SendBuf::InPlace => Cow::Owned(recv.to_vec()),
        };
        let mut out = self.empties();
        let mut expect = self.any_len();
        let (lo, hi) = Self::slice_of(k, n, me);
        for j in (0..n).filter(|&j| j != me) {
            let (a, b) = Self::slice_of(k, n, j);
            out[j] = frame(as_bytes(&own[a..b]));
            expect[j] = ((hi - lo) * size_of::<T>()) as u64;
        }
        let got = self.round(sig, None, out, expect)?;
        // This rank's slice, folded straight into its place in `recv`.
        let parts = parts(&got, n, me, as_bytes(&own[lo..hi]));
        fold(op, &mut recv[lo..hi], parts)?;
        drop(got);
        drop(own);
        let mut expect = self.any_len();
        for (j, e) in expect.iter_mut().enumerate() {
            let (a, b) = Self::slice_of(k, n, j);
            *e = ((b - a) * size_of::<T>()) as u64;
        }
        let got = self.round(
            Sig::new(Kind::Continue).count(k),
            None,
            self.to_all(as_bytes(&recv[lo..hi])),
            expect,
        )?;
        for (j, msg) in got.iter().enumerate().filter(|&(j, _)| j != me) {
            let (a, b) = Self::slice_of(k, n, j);
            copy_into(&mut recv[a..b], body(msg));
        }
        Ok(())
    }

    /// The inclusive prefix reduction of buffers: rank `r`'s `recv` gets
    /// `x0 ∘ ... ∘ xr` element by element (`send = IN_PLACE`: from `recv`).
    #[doc(alias = "Scan")]
    pub fn scan_buf<'s, T: Element>(
        &self,
        send: impl Into<SendBuf<'s, T>>,
        recv: &mut [T],
        op: Op<T>,
    ) -> Result<()> {
        self.prefix_buf(Kind::Scan, send.into(), recv, op)
    }

    /// The exclusive prefix reduction of buffers: rank `r > 0`'s `recv`
    /// gets `x0 ∘ ... ∘ x(r-1)`; rank 0's `recv` is left as it is.
    #[doc(alias = "Exscan")]
    pub fn exscan_buf<'s, T: Element>(
        &self,
        send: impl Into<SendBuf<'s, T>>,
        recv: &mut [T],
        op: Op<T>,
    ) -> Result<()> {
        self.prefix_buf(Kind::Exscan, send.into(), recv, op)
    }

    fn prefix_buf<T: Element>(
        &self,
        kind: Kind,
        send: SendBuf<'_, T>,
        recv: &mut [T],
        op: Op<T>,
    ) -> Result<()> {
        let k = recv.len();
        let sig = Sig::new(kind).count(k).op(op.code()).buffer();
        let mut failed = op.check().err();
        if let SendBuf::Slice(s) = send
            && s.len() != k
        {
            failed = Some(format!("{} of {} elements into {k}", kind.name(), s.len()));
        }
        via_mpi!(self, failed, m => {
            let which = if kind == Kind::Scan { Fold3::Scan } else { Fold3::Exscan };
            let own = Self::input(&send, recv);
            // MPI leaves rank 0's receive buffer of an exscan undefined;
            // here it is left as it was.
            let keep = (which == Fold3::Exscan && self.rank == 0).then(|| recv.to_vec());
            let own = own.into_owned();
            m.fold_buf(which, &own, recv, &op)?;
            if let Some(k) = keep {
                recv.copy_from_slice(&k);
            }
            Ok(())
        });
        let own = Self::input(&send, recv).into_owned();
        let me = self.me();
        let mut out = self.empties();
        let mut expect = self.any_len();
        if failed.is_none() {
            let f = frame(as_bytes(&own));
            for o in out.iter_mut().skip(me + 1) {
                o.clone_from(&f);
            }
            for e in expect.iter_mut().take(me) {
                *e = (k * size_of::<T>()) as u64;
            }
        }
        let got = self.round(sig, failed, out, expect)?;
        let upto = if kind == Kind::Scan { me + 1 } else { me };
        if upto == 0 {
            return Ok(());
        }
        let parts = parts(&got, upto, me, as_bytes(&own));
        fold(&op, recv, parts)
    }

    /// Reduces every rank's `send` (`size()` blocks of `recv.len()`
    /// elements) element by element, and leaves block `j` of the result on
    /// rank `j` (MPI's `Reduce_scatter_block`). `send = IN_PLACE`: the
    /// input is `recv` (then `size()` blocks long; the result is its first
    /// block).
    #[doc(alias = "Reduce_scatter_block")]
    pub fn reduce_scatter_block_buf<'s, T: Element>(
        &self,
        send: impl Into<SendBuf<'s, T>>,
        recv: &mut [T],
        op: Op<T>,
    ) -> Result<()> {
        let send = send.into();
        let n = self.n();
        let k = match send {
            SendBuf::Slice(_) => recv.len(),
            SendBuf::InPlace => recv.len() / n.max(1),
        };
        let counts = vec![k; n];
        let sig = Sig::new(Kind::ReduceScatterBlock)
            .count(k)
            .op(op.code())
            .buffer();
        self.reduce_scatter_parts(sig, send, recv, &counts, op)
    }

    /// Reduces every rank's `send` (`counts.iter().sum()` elements) and
    /// leaves the `counts[j]` elements of block `j` of the result on rank
    /// `j` (MPI's `Reduce_scatter`; the counts are the same on every rank).
    /// `send = IN_PLACE`: the input is `recv`, the result its first block.
    #[doc(alias = "Reduce_scatter")]
    pub fn reduce_scatter_buf<'s, T: Element>(
        &self,
        send: impl Into<SendBuf<'s, T>>,
        recv: &mut [T],
        counts: &[usize],
        op: Op<T>,
    ) -> Result<()> {
        let sig = Sig::new(Kind::ReduceScatter)
            .count(counts.iter().sum::<usize>())
            .op(op.code())
            .buffer();
        self.reduce_scatter_parts(sig, send.into(), recv, counts, op)
    }

    fn reduce_scatter_parts<T: Element>(
        &self,
        sig: Sig,
        send: SendBuf<'_, T>,
        recv: &mut [T],
        counts: &[usize],
        op: Op<T>,
    ) -> Result<()> {
        let n = self.n();
        let me = self.me();
        let total: usize = counts.iter().sum();
        let displs: Vec<usize> = counts
            .iter()
            .scan(0, |at, &c| {
                let d = *at;
                *at += c;
                Some(d)
            })
            .collect();
        let src = Self::input(&send, recv).into_owned();
        let mut failed = op.check().err();
        if failed.is_none() && counts.len() != n {
            failed = Some(format!("{} counts for {n} ranks", counts.len()));
        }
        if failed.is_none() && src.len() != total {
            failed = Some(format!(
                "reduces {} elements, the counts add up to {total}",
                src.len()
            ));
        }
        if failed.is_none() {
            let room = match send {
                SendBuf::Slice(_) => recv.len(),
                SendBuf::InPlace => recv.len().min(counts[me]),
            };
            if room != counts[me] {
                failed = Some(format!(
                    "its block is {} elements, its receive buffer {}",
                    counts[me],
                    recv.len()
                ));
            }
        }
        via_mpi!(self, failed, m => {
            let mine = &mut recv[..counts[me]];
            if counts.iter().all(|&c| c == counts[0]) {
                m.reduce_scatter_block_buf(&src, mine, &op)
            } else {
                m.reduce_scatter_buf(&src, mine, counts, &op)
            }
        });
        let mut out = self.empties();
        let mut expect = self.any_len();
        if failed.is_none() {
            for j in (0..n).filter(|&j| j != me) {
                out[j] = frame(as_bytes(&src[displs[j]..displs[j] + counts[j]]));
                expect[j] = (counts[me] * size_of::<T>()) as u64;
            }
        }
        let got = self.round(sig, failed, out, expect)?;
        let own = &src[displs[me]..displs[me] + counts[me]];
        let parts = parts(&got, n, me, as_bytes(own));
        fold(&op, &mut recv[..counts[me]], parts)
    }
}
