//! The object collectives of a communicator of the MPI backend.
//!
//! An object travels as its encoding, of a length only its sender knows,
//! so each maps onto MPI's collective of bytes of any length (a broadcast
//! of the length, then of the bytes; `Gatherv` after a gather of the
//! lengths; ...). Where only the root or one rank can find its arguments
//! wrong (the root passed no object, a rank's list is not one per rank),
//! each part carries a flag byte ahead of it: a failed sender's part is its
//! reason, and every rank that receives it returns the same
//! [`Error::Argument`] the shared-memory backend returns, instead of
//! waiting for a call that never comes.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::comm::{Comm, decode, encode};
use crate::error::{Error, Result};
use crate::openmpi::Mpi;

const OK: u8 = 0;
const FAILED: u8 = 1;

/// A part: its flag, then the payload (or the sender's reason).
fn flagged(failed: Option<&str>, payload: &[u8]) -> Vec<u8> {
    let (flag, body) = match failed {
        Some(why) => (FAILED, why.as_bytes()),
        None => (OK, payload),
    };
    let mut v = Vec::with_capacity(1 + body.len());
    v.push(flag);
    v.extend_from_slice(body);
    v
}

/// The payload of a part from rank `from`, or the failure it reports.
fn unflag(part: &[u8], from: i32) -> Result<&[u8]> {
    match part.split_first() {
        Some((&OK, body)) => Ok(body),
        Some((&FAILED, why)) => Err(Error::Argument(format!(
            "rank {from}: {}",
            String::from_utf8_lossy(why)
        ))),
        _ => Err(Error::Corrupt {
            rank: from,
            what: "a collective's part has no flag".into(),
        }),
    }
}

impl Comm {
    fn root_checked(&self, root: i32) -> Result<()> {
        let n = self.group.len();
        if root < 0 || root as usize >= n {
            return Err(Error::Argument(format!(
                "rank {}: root {root} is not a rank of {n}",
                self.rank
            )));
        }
        Ok(())
    }

    pub(crate) fn mpi_bcast<T: Serialize + DeserializeOwned>(
        &self,
        m: &Mpi,
        obj: Option<&T>,
        root: i32,
    ) -> Result<T> {
        self.root_checked(root)?;
        let data = if self.rank == root {
            Some(match obj {
                None => flagged(Some("the root passed no object to broadcast"), &[]),
                Some(o) => flagged(None, &encode(o)?),
            })
        } else {
            None
        };
        let got = m.bcast_vec(data, root)?;
        decode(unflag(&got, root)?, root)
    }

    pub(crate) fn mpi_scatter<T: Serialize + DeserializeOwned>(
        &self,
        m: &Mpi,
        objs: Option<&[T]>,
        root: i32,
    ) -> Result<T> {
        self.root_checked(root)?;
        let n = self.group.len();
        let parts = if self.rank == root {
            let failed = match objs {
                None => Some("the root passed no objects to scatter".to_string()),
                Some(o) if o.len() != n => {
                    Some(format!("scatter of {} objects over {n} ranks", o.len()))
                }
                Some(_) => None,
            };
            Some(match (failed, objs) {
                (None, Some(o)) => o
                    .iter()
                    .map(|x| Ok(flagged(None, &encode(x)?)))
                    .collect::<Result<Vec<_>>>()?,
                (why, _) => vec![flagged(why.as_deref(), &[]); n],
            })
        } else {
            None
        };
        let got = m.scatter_vecs(parts.as_deref(), root)?;
        decode(unflag(&got, root)?, root)
    }

    pub(crate) fn mpi_alltoall<T: Serialize + DeserializeOwned>(
        &self,
        m: &Mpi,
        objs: &[T],
    ) -> Result<Vec<T>> {
        let n = self.group.len();
        let parts = if objs.len() != n {
            let why = format!("alltoall of {} objects over {n} ranks", objs.len());
            vec![flagged(Some(&why), &[]); n]
        } else {
            objs.iter()
                .map(|x| Ok(flagged(None, &encode(x)?)))
                .collect::<Result<Vec<_>>>()?
        };
        let got = m.alltoall_vecs(&parts)?;
        // Every failure is heard before any part is decoded.
        let bodies = got
            .iter()
            .enumerate()
            .map(|(j, p)| unflag(p, j as i32))
            .collect::<Result<Vec<_>>>()?;
        bodies
            .iter()
            .enumerate()
            .map(|(j, b)| decode(b, j as i32))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_carries_its_flag_and_a_failure_its_reason() {
        assert_eq!(unflag(&flagged(None, b"xyz"), 2).unwrap(), b"xyz");
        match unflag(&flagged(Some("no object"), b"ignored"), 3) {
            Err(Error::Argument(why)) => assert_eq!(why, "rank 3: no object"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            unflag(&[], 1),
            Err(Error::Corrupt { rank: 1, .. })
        ));
        assert!(matches!(unflag(&[7, 1], 1), Err(Error::Corrupt { .. })));
    }
}
