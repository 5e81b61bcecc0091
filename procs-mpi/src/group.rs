//! Groups of ranks and the communicators made from them: `dup`, `split`,
//! `split_type`, `create`.
//!
//! A new communicator gets a context number of its own, agreed in a round
//! of its parent: the largest of the members' next free numbers, which no
//! member uses yet. The parts of one split may share a number: they have no
//! member in common, so their messages never meet.

use crate::coll::{Kind, Sig, body, frame};
use crate::comm::{Comm, via_mpi};
use crate::error::{Error, Result};
use crate::{PROC_NULL, UNDEFINED};

/// An ordered set of the job's ranks (MPI's group): where a communicator's
/// ranks are, without its context.
///
/// ```
/// use procs_mpi::UNDEFINED;
///
/// procs_mpi::run(4, |world| {
///     let all = world.group();
///     let odd = all.incl(&[1, 3]).unwrap();
///     assert_eq!(odd.size(), 2);
///     assert_eq!(all.translate_ranks(&[0, 1, 3], &odd).unwrap(), [UNDEFINED, 0, 1]);
///     assert_eq!(all.excl(&[0, 1]).unwrap().translate_ranks(&[0], &all).unwrap(), [2]);
/// })?;
/// # Ok::<(), procs_mpi::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// World ranks, by rank in the group.
    ranks: Vec<usize>,
    /// The world rank of the process holding the group.
    me: usize,
}

impl Group {
    /// The number of ranks.
    #[doc(alias = "Get_size")]
    pub fn size(&self) -> i32 {
        self.ranks.len() as i32
    }

    /// This process's rank in the group, or [`UNDEFINED`].
    #[doc(alias = "Get_rank")]
    pub fn rank(&self) -> i32 {
        self.ranks
            .iter()
            .position(|&w| w == self.me)
            .map_or(UNDEFINED, |r| r as i32)
    }

    fn checked(&self, ranks: &[i32]) -> Result<Vec<usize>> {
        let mut seen = vec![false; self.ranks.len()];
        ranks
            .iter()
            .map(|&r| {
                if r < 0 || r >= self.size() {
                    return Err(Error::InvalidRank {
                        rank: r,
                        size: self.size(),
                    });
                }
                if std::mem::replace(&mut seen[r as usize], true) {
                    return Err(Error::Argument(format!("rank {r} is listed twice")));
                }
                Ok(r as usize)
            })
            .collect()
    }

    /// The group of `ranks` (ranks of this group), in that order.
    #[doc(alias = "Incl")]
    pub fn incl(&self, ranks: &[i32]) -> Result<Group> {
        let picked = self.checked(ranks)?;
        Ok(Group {
            ranks: picked.into_iter().map(|r| self.ranks[r]).collect(),
            me: self.me,
        })
    }

    /// This group without `ranks`, in this group's order.
    #[doc(alias = "Excl")]
    pub fn excl(&self, ranks: &[i32]) -> Result<Group> {
        let dropped = self.checked(ranks)?;
        Ok(Group {
            ranks: (0..self.ranks.len())
                .filter(|r| !dropped.contains(r))
                .map(|r| self.ranks[r])
                .collect(),
            me: self.me,
        })
    }

    /// The ranks in `other` of this group's `ranks`: [`UNDEFINED`] for one
    /// that is not in `other`, `PROC_NULL` for `PROC_NULL`.
    #[doc(alias = "Translate_ranks")]
    pub fn translate_ranks(&self, ranks: &[i32], other: &Group) -> Result<Vec<i32>> {
        ranks
            .iter()
            .map(|&r| {
                if r == PROC_NULL {
                    return Ok(PROC_NULL);
                }
                if r < 0 || r >= self.size() {
                    return Err(Error::InvalidRank {
                        rank: r,
                        size: self.size(),
                    });
                }
                let w = self.ranks[r as usize];
                Ok(other
                    .ranks
                    .iter()
                    .position(|&o| o == w)
                    .map_or(UNDEFINED, |p| p as i32))
            })
            .collect()
    }
}

/// How [`Comm::split_type`] groups ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SplitType {
    /// The ranks that can share memory (MPI's `COMM_TYPE_SHARED`): on this
    /// transport, every rank of the job.
    Shared,
}

impl Comm {
    /// The group of this communicator's ranks.
    #[doc(alias = "Get_group")]
    pub fn group(&self) -> Group {
        Group {
            ranks: self.group.to_vec(),
            me: self.group[self.rank as usize],
        }
    }

    /// A round of this communicator in which every member says `extra`
    /// and its next free context number; returns each member's `extra`
    /// (in rank order) and the agreed context.
    fn agree(&self, kind: Kind, extra: &[u8]) -> Result<(Vec<Vec<u8>>, u32)> {
        let n = self.group.len();
        let mine = self.core.next_ctx.get();
        let mut payload = mine.to_le_bytes().to_vec();
        payload.extend_from_slice(extra);
        let got = self.round(
            Sig::new(kind),
            None,
            vec![frame(&payload); n],
            vec![payload.len() as u64; n],
        )?;
        let mut ctx = mine;
        let mut extras = Vec::with_capacity(n);
        for (j, m) in got.iter().enumerate() {
            let b = if j == self.rank as usize {
                &payload[..]
            } else {
                body(m)
            };
            let next = u32::from_le_bytes(b[..4].try_into().unwrap_or([0; 4]));
            ctx = ctx.max(next);
            extras.push(b[4..].to_vec());
        }
        if ctx >= u32::MAX / 2 {
            return Err(Error::Job(
                "no context number is left for a new communicator".into(),
            ));
        }
        self.core.next_ctx.set(ctx + 1);
        Ok((extras, ctx))
    }

    fn member_of(&self, ctx: u32, group: Vec<usize>) -> Comm {
        let me = self.group[self.rank as usize];
        Comm::with_group(self.core.clone(), ctx, group, self.local.len(), me)
    }

    /// A communicator of the same ranks with a context of its own: its
    /// messages never match a receive on this one (a library's traffic
    /// kept apart from its caller's). Every member calls it.
    #[doc(alias = "Dup")]
    pub fn dup(&self) -> Result<Comm> {
        via_mpi!(self, m => self.derived(m.dup()?));
        let (_, ctx) = self.agree(Kind::Dup, &[])?;
        Ok(self.member_of(ctx, self.group.to_vec()))
    }

    /// Splits the communicator: the ranks that pass one `color` form a
    /// new communicator each, ranked by `key` (ties by rank here); a rank
    /// that passes [`UNDEFINED`] gets `None`. Every member calls it.
    ///
    /// ```
    /// use procs_mpi::{Communicator, Op, UNDEFINED};
    ///
    /// let got = procs_mpi::run(5, |world| {
    ///     let r = world.rank();
    ///     let color = if r == 4 { UNDEFINED } else { r % 2 };
    ///     let half = world.split(color, -r).unwrap()?;
    ///     // The ranks of one colour, ranked by descending world rank.
    ///     Some((half.rank(), half.allreduce(&r, Op::SUM).unwrap()))
    /// })?;
    /// assert_eq!(got, [Some((1, 2)), Some((1, 4)), Some((0, 2)), Some((0, 4)), None]);
    /// # Ok::<(), procs_mpi::Error>(())
    /// ```
    #[doc(alias = "Split")]
    pub fn split(&self, color: i32, key: i32) -> Result<Option<Comm>> {
        if color < 0 && color != UNDEFINED {
            return Err(Error::Argument(format!(
                "color {color}: colors are 0 or more, or UNDEFINED"
            )));
        }
        via_mpi!(self, m => m.split(color, key)?.map(|c| self.derived(c)).transpose());
        let mut extra = color.to_le_bytes().to_vec();
        extra.extend_from_slice(&key.to_le_bytes());
        let (extras, ctx) = self.agree(Kind::Split, &extra)?;
        if color == UNDEFINED {
            return Ok(None);
        }
        let word =
            |b: &[u8], i: usize| i32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
        let mut members: Vec<(i32, usize)> = extras
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() == 8 && word(b, 0) == color)
            .map(|(j, b)| (word(b, 4), j))
            .collect();
        members.sort();
        let group = members.into_iter().map(|(_, j)| self.group[j]).collect();
        Ok(Some(self.member_of(ctx, group)))
    }

    /// Splits by where ranks run: [`SplitType::Shared`] gives every rank
    /// of this machine one communicator (here, all of them), ranked by
    /// `key`.
    #[doc(alias = "Split_type")]
    pub fn split_type(&self, kind: SplitType, key: i32) -> Result<Option<Comm>> {
        via_mpi!(self, m => match kind {
            SplitType::Shared => m.split_shared(key)?.map(|c| self.derived(c)).transpose(),
        });
        match kind {
            SplitType::Shared => self.split(0, key),
        }
    }

    /// A communicator of `group` (a subset of this communicator's ranks,
    /// the same on every member); ranks outside it get `None`. Every
    /// member of this communicator calls it.
    #[doc(alias = "Create")]
    pub fn create(&self, group: &Group) -> Result<Option<Comm>> {
        via_mpi!(self, m => {
            let mut ranks = Vec::with_capacity(group.ranks.len());
            for &w in &group.ranks {
                match self.local.get(w) {
                    Some(&l) if l >= 0 => ranks.push(l),
                    _ => {
                        return Err(Error::Argument(format!(
                            "create: world rank {w} is not in this communicator"
                        )));
                    }
                }
            }
            m.create(&ranks)?.map(|c| self.derived(c)).transpose()
        });
        let list: Vec<u8> = group
            .ranks
            .iter()
            .flat_map(|&w| (w as u32).to_le_bytes())
            .collect();
        let (extras, ctx) = self.agree(Kind::Create, &list)?;
        if let Some(j) = extras.iter().position(|b| b != &list) {
            return Err(Error::Mismatch(format!(
                "create: rank {} and rank {j} pass different groups",
                self.rank
            )));
        }
        if let Some(&w) = group.ranks.iter().find(|&&w| self.local[w] < 0) {
            return Err(Error::Argument(format!(
                "create: world rank {w} is not in this communicator"
            )));
        }
        let me = self.group[self.rank as usize];
        if !group.ranks.contains(&me) {
            return Ok(None);
        }
        Ok(Some(self.member_of(ctx, group.ranks.clone())))
    }
}
