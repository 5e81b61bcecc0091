//! Cartesian topologies: a communicator whose ranks sit on a grid
//! (row-major: the last dimension varies fastest), with `coords`,
//! `cart_rank`, `shift` and `sub`, and the neighbourhood collectives.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::coll::{ANY_LEN, Kind, Sig, body, frame};
use crate::comm::{Comm, decode, encode, via_mpi};
use crate::error::{Error, Result};
use crate::{PROC_NULL, UNDEFINED};

/// Balanced grid dimensions for `nnodes` ranks (MPI's `Dims_create`):
/// the entries of `dims` that are not 0 are kept, the zeros are filled with
/// factors as close to each other as can be, in non-increasing order.
///
/// ```
/// assert_eq!(procs_mpi::dims_create(12, &[0, 0]).unwrap(), [4, 3]);
/// assert_eq!(procs_mpi::dims_create(16, &[0, 0, 0]).unwrap(), [4, 2, 2]);
/// assert_eq!(procs_mpi::dims_create(12, &[0, 3]).unwrap(), [4, 3]);
/// assert!(procs_mpi::dims_create(7, &[2, 0]).is_err());
/// ```
#[doc(alias = "Compute_dims")]
pub fn dims_create(nnodes: i32, dims: &[i32]) -> Result<Vec<i32>> {
    if nnodes < 1 || dims.iter().any(|&d| d < 0) {
        return Err(Error::Topology(format!(
            "dims_create({nnodes}, {dims:?}): counts are positive"
        )));
    }
    let fixed: i64 = dims
        .iter()
        .filter(|&&d| d > 0)
        .map(|&d| i64::from(d))
        .product();
    if i64::from(nnodes) % fixed != 0 {
        return Err(Error::Topology(format!(
            "{nnodes} ranks do not fill a grid with dimensions {dims:?}"
        )));
    }
    let mut left = i64::from(nnodes) / fixed;
    let free = dims.iter().filter(|&&d| d == 0).count();
    if free == 0 {
        return if left == 1 {
            Ok(dims.to_vec())
        } else {
            Err(Error::Topology(format!(
                "{nnodes} ranks do not fill a grid with dimensions {dims:?}"
            )))
        };
    }
    let mut primes = Vec::new();
    let mut p = 2;
    while p * p <= left {
        while left % p == 0 {
            primes.push(p);
            left /= p;
        }
        p += 1;
    }
    if left > 1 {
        primes.push(left);
    }
    // Largest factors first, each to the smallest dimension so far.
    let mut filled = vec![1i64; free];
    for &q in primes.iter().rev() {
        let smallest = (0..free).min_by_key(|&i| filled[i]).unwrap_or(0);
        filled[smallest] *= q;
    }
    filled.sort_unstable_by(|a, b| b.cmp(a));
    let mut it = filled.into_iter();
    Ok(dims
        .iter()
        .map(|&d| {
            if d == 0 {
                it.next().unwrap_or(1) as i32
            } else {
                d
            }
        })
        .collect())
}

/// A communicator with a Cartesian topology, from
/// [`Comm::create_cart`]. It dereferences to its [`Comm`]: every call of a
/// communicator works on it.
///
/// ```
/// use procs_mpi::{Communicator, PROC_NULL};
///
/// let got = procs_mpi::run(4, |world| {
///     let grid = world.create_cart(&[2, 2], &[false, true], false).unwrap().unwrap();
///     let coords = grid.coords(grid.rank()).unwrap();
///     (coords, grid.shift(0, 1).unwrap(), grid.shift(1, 1).unwrap())
/// })?;
/// // Rank 1 is row 0, column 1: nothing above, rank 3 below; columns wrap.
/// assert_eq!(got[1], (vec![0, 1], (PROC_NULL, 3), (0, 0)));
/// # Ok::<(), procs_mpi::Error>(())
/// ```
#[derive(Debug)]
pub struct CartComm {
    comm: Comm,
    dims: Vec<i32>,
    periods: Vec<bool>,
}

impl std::ops::Deref for CartComm {
    type Target = Comm;

    fn deref(&self) -> &Comm {
        &self.comm
    }
}

impl Comm {
    /// A communicator of the first `dims.iter().product()` ranks laid on a
    /// grid of `dims`, periodic in the dimensions whose `periods` entry is
    /// true; the other ranks get `None`. Ranks keep their order (`reorder`
    /// is accepted and changes nothing: on one machine every placement is
    /// as near). Every member calls it.
    #[doc(alias = "Create_cart")]
    pub fn create_cart(
        &self,
        dims: &[i32],
        periods: &[bool],
        reorder: bool,
    ) -> Result<Option<CartComm>> {
        let _ = reorder;
        let cells = dims
            .iter()
            .try_fold(1i64, |a, &d| (d > 0).then(|| a * i64::from(d)));
        let bad = match cells {
            _ if dims.len() != periods.len() => Some(format!(
                "{} dimensions and {} periods",
                dims.len(),
                periods.len()
            )),
            None => Some(format!("dimensions {dims:?} are not all positive")),
            Some(c) if c > i64::from(self.size_of()) => {
                Some(format!("a grid of {c} cells for {} ranks", self.size_of()))
            }
            _ => None,
        };
        if let Some(why) = bad {
            return Err(Error::Topology(why));
        }
        via_mpi!(self, m => Ok(match m.create_cart(dims, periods, reorder)? {
            None => None,
            Some(c) => Some(CartComm {
                comm: self.derived(c)?,
                dims: dims.to_vec(),
                periods: periods.to_vec(),
            }),
        }));
        let cells = cells.unwrap_or(0) as i32;
        let color = if self.rank < cells { 0 } else { UNDEFINED };
        Ok(self.split(color, self.rank)?.map(|comm| CartComm {
            comm,
            dims: dims.to_vec(),
            periods: periods.to_vec(),
        }))
    }

    fn size_of(&self) -> i32 {
        self.group.len() as i32
    }
}

impl CartComm {
    /// The grid's dimensions.
    #[doc(alias = "Get_dims")]
    pub fn dims(&self) -> &[i32] {
        &self.dims
    }

    /// Which dimensions wrap around.
    pub fn periods(&self) -> &[bool] {
        &self.periods
    }

    /// The number of dimensions.
    #[doc(alias = "Get_dim")]
    pub fn ndim(&self) -> usize {
        self.dims.len()
    }

    /// The grid coordinates of `rank`.
    #[doc(alias = "Get_coords")]
    pub fn coords(&self, rank: i32) -> Result<Vec<i32>> {
        if rank < 0 || rank >= self.comm.size_of() {
            return Err(Error::InvalidRank {
                rank,
                size: self.comm.size_of(),
            });
        }
        let mut left = rank;
        let mut out = vec![0; self.dims.len()];
        for (c, &d) in out.iter_mut().zip(&self.dims).rev() {
            *c = left % d;
            left /= d;
        }
        Ok(out)
    }

    /// The rank at `coords`; in a periodic dimension a coordinate outside
    /// the grid wraps, in another it is [`Error::Topology`].
    #[doc(alias = "Get_cart_rank")]
    pub fn cart_rank(&self, coords: &[i32]) -> Result<i32> {
        if coords.len() != self.dims.len() {
            return Err(Error::Topology(format!(
                "{} coordinates on a grid of {} dimensions",
                coords.len(),
                self.dims.len()
            )));
        }
        let mut rank = 0i32;
        for ((&c, &d), &p) in coords.iter().zip(&self.dims).zip(&self.periods) {
            let c = match (p, (0..d).contains(&c)) {
                (_, true) => c,
                (true, false) => c.rem_euclid(d),
                (false, false) => {
                    return Err(Error::Topology(format!(
                        "coordinates {coords:?} are outside the grid {:?}",
                        self.dims
                    )));
                }
            };
            rank = rank * d + c;
        }
        Ok(rank)
    }

    /// The ranks `disp` steps down and up dimension `dim` from this one:
    /// `(source, dest)`, the one that sends here in a shift and the one this
    /// rank sends to; `PROC_NULL` past a non-periodic edge.
    #[doc(alias = "Shift")]
    pub fn shift(&self, dim: usize, disp: i32) -> Result<(i32, i32)> {
        if dim >= self.dims.len() {
            return Err(Error::Topology(format!(
                "dimension {dim} of a grid of {}",
                self.dims.len()
            )));
        }
        let me = self.coords(self.comm.rank)?;
        let at = |step: i32| -> i32 {
            let mut c = me.clone();
            c[dim] += step;
            self.cart_rank(&c).unwrap_or(PROC_NULL)
        };
        Ok((at(-disp), at(disp)))
    }

    /// The grids of the dimensions `remain` keeps: ranks that share their
    /// coordinates in the other dimensions form one (a row, a column, ...).
    /// Every member calls it.
    #[doc(alias = "Sub")]
    pub fn sub(&self, remain: &[bool]) -> Result<CartComm> {
        if remain.len() != self.dims.len() {
            return Err(Error::Topology(format!(
                "{} flags for a grid of {} dimensions",
                remain.len(),
                self.dims.len()
            )));
        }
        let pick = |v: &[i32]| -> Vec<i32> {
            v.iter()
                .zip(remain)
                .filter(|(_, k)| **k)
                .map(|(x, _)| *x)
                .collect()
        };
        let periods: Vec<bool> = self
            .periods
            .iter()
            .zip(remain)
            .filter(|(_, k)| **k)
            .map(|(p, _)| *p)
            .collect();
        via_mpi!(self.comm, m => Ok(CartComm {
            comm: self.comm.derived(m.cart_sub(remain)?)?,
            dims: pick(&self.dims),
            periods,
        }));
        let me = self.coords(self.comm.rank)?;
        let mut color = 0i32;
        for ((&c, &d), &keep) in me.iter().zip(&self.dims).zip(remain) {
            if !keep {
                color = color * d + c;
            }
        }
        let comm = self
            .comm
            .split(color, self.comm.rank)?
            .ok_or_else(|| Error::Topology("sub: no part".into()))?;
        Ok(CartComm {
            comm,
            dims: pick(&self.dims),
            periods,
        })
    }

    /// This rank's neighbours in MPI's order: for each dimension, the one
    /// below (`shift(d, 1).0`), then the one above; `PROC_NULL` at an edge.
    pub fn neighbors(&self) -> Result<Vec<i32>> {
        let mut out = Vec::with_capacity(2 * self.dims.len());
        for d in 0..self.dims.len() {
            let (lo, hi) = self.shift(d, 1)?;
            out.push(lo);
            out.push(hi);
        }
        Ok(out)
    }

    /// Sends `obj` to every neighbour and returns each neighbour's, in
    /// [`neighbors`](CartComm::neighbors) order (`None` at an edge).
    #[doc(alias = "Neighbor_allgather")]
    pub fn neighbor_allgather<T: Serialize + DeserializeOwned>(
        &self,
        obj: &T,
    ) -> Result<Vec<Option<T>>> {
        let nb = self.neighbors()?;
        let bytes = encode(obj)?;
        let pieces: Vec<Vec<u8>> = nb.iter().map(|_| bytes.clone()).collect();
        self.neighbor_round(Kind::NeighborAllgather, &nb, pieces)
    }

    /// Sends `objs[k]` to neighbour `k` (one per neighbour, in
    /// [`neighbors`](CartComm::neighbors) order) and returns what each
    /// neighbour sent this rank (`None` at an edge).
    #[doc(alias = "Neighbor_alltoall")]
    pub fn neighbor_alltoall<T: Serialize + DeserializeOwned>(
        &self,
        objs: &[T],
    ) -> Result<Vec<Option<T>>> {
        let nb = self.neighbors()?;
        if objs.len() != nb.len() {
            return Err(Error::Argument(format!(
                "neighbor_alltoall of {} objects for {} neighbours",
                objs.len(),
                nb.len()
            )));
        }
        let pieces = objs.iter().map(encode).collect::<Result<Vec<_>>>()?;
        self.neighbor_round(Kind::NeighborAlltoall, &nb, pieces)
    }

    /// One round whose message to each rank carries the pieces for the
    /// neighbour slots it fills, each as (slot, length, bytes). What this
    /// rank sent up a dimension (slot `2d + 1`) arrives at that neighbour
    /// in its slot `2d`, and the other way round.
    fn neighbor_round<T: DeserializeOwned>(
        &self,
        kind: Kind,
        nb: &[i32],
        pieces: Vec<Vec<u8>>,
    ) -> Result<Vec<Option<T>>> {
        via_mpi!(self.comm, m => {
            // MPI's own: a piece per neighbour slot, in MPI's order.
            let got = m.neighbor_alltoall_vecs(&pieces)?;
            nb.iter()
                .zip(&got)
                .map(|(&r, piece)| (r != PROC_NULL).then(|| decode(piece, r)).transpose())
                .collect()
        });
        let n = self.comm.size_of() as usize;
        let me = self.comm.rank;
        let mut payloads: Vec<Vec<u8>> = vec![Vec::new(); n];
        for (slot, (&r, piece)) in nb.iter().zip(&pieces).enumerate() {
            if r == PROC_NULL {
                continue;
            }
            let p = &mut payloads[r as usize];
            p.extend_from_slice(&(slot as u32).to_le_bytes());
            p.extend_from_slice(&(piece.len() as u64).to_le_bytes());
            p.extend_from_slice(piece);
        }
        let got = self.exchange(kind, &payloads)?;
        let mut result: Vec<Option<T>> = nb.iter().map(|_| None).collect();
        for (slot, &r) in nb.iter().enumerate() {
            if r == PROC_NULL {
                continue;
            }
            let from = if r == me {
                &payloads[me as usize][..]
            } else {
                &got[r as usize][..]
            };
            let want = (slot ^ 1) as u32;
            let piece = find_piece(from, want).ok_or_else(|| Error::Corrupt {
                rank: r,
                what: format!("no piece for neighbour slot {slot}"),
            })?;
            result[slot] = Some(decode(piece, r)?);
        }
        Ok(result)
    }
}

impl CartComm {
    /// Sends `payloads[j]` to rank `j` of this grid and returns what each
    /// sent this one (this rank's own entry is left empty).
    fn exchange(&self, kind: Kind, payloads: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let n = payloads.len();
        let out: Vec<Vec<u8>> = payloads.iter().map(|p| frame(p)).collect();
        let mut got = self
            .comm
            .round(Sig::new(kind), None, out, vec![ANY_LEN; n])?;
        for m in &mut got {
            *m = body(m).to_vec();
        }
        Ok(got)
    }
}

/// The piece of `slot` in a neighbourhood payload; `None` if absent or if
/// the payload does not parse.
fn find_piece(mut b: &[u8], slot: u32) -> Option<&[u8]> {
    while !b.is_empty() {
        let s = u32::from_le_bytes(b.get(..4)?.try_into().ok()?);
        let len = u64::from_le_bytes(b.get(4..12)?.try_into().ok()?);
        let len = usize::try_from(len).ok()?;
        let piece = b.get(12..12usize.checked_add(len)?)?;
        if s == slot {
            return Some(piece);
        }
        b = &b[12 + len..];
    }
    None
}
