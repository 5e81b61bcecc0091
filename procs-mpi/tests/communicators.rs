//! Communicators made from others between real rank processes: dup,
//! split (colors, keys, UNDEFINED), create from a group, and traffic kept
//! apart between them.

use procs_mpi::{Communicator, CommunicatorExt, Error, Op, SplitType, UNDEFINED};

#[test]
fn split_by_color_and_key_with_undefined() {
    for n in 1..=8 {
        let got = procs_mpi::run(n, move |w| {
            let r = w.rank();
            // Three colours, the last rank out; ranked by descending rank.
            let color = if r == n as i32 - 1 && n > 1 {
                UNDEFINED
            } else {
                r % 3
            };
            let sub = w.split(color, -r).unwrap()?;
            let members: Vec<i32> = (0..n as i32 - i32::from(n > 1))
                .filter(|j| j % 3 == color)
                .rev()
                .collect();
            assert_eq!(sub.size() as usize, members.len());
            assert_eq!(members[sub.rank() as usize], r);
            // Collectives and messages stay within the part.
            let all: Vec<i32> = sub.allgather(&r).unwrap();
            assert_eq!(all, members);
            let next = (sub.rank() + 1) % sub.size();
            let prev = (sub.rank() + sub.size() - 1) % sub.size();
            let from: i32 = sub.sendrecv(&r, next, 5, prev, 5).unwrap();
            assert_eq!(from, members[prev as usize]);
            Some(sub.allreduce(&1i32, Op::SUM).unwrap())
        })
        .unwrap();
        for (r, g) in got.iter().enumerate() {
            if n > 1 && r == n - 1 {
                assert_eq!(*g, None);
            } else {
                let size = (0..n - usize::from(n > 1))
                    .filter(|j| j % 3 == r % 3)
                    .count();
                assert_eq!(*g, Some(size as i32));
            }
        }
    }
}

#[test]
fn traffic_on_one_communicator_never_matches_another() {
    let got = procs_mpi::run(3, |w| {
        let dup = w.dup().unwrap();
        let shared = w.split_type(SplitType::Shared, 0).unwrap().unwrap();
        if w.rank() == 0 {
            dup.send(&"on dup", 1, 7).unwrap();
            shared.send(&"on shared", 1, 7).unwrap();
            w.send(&"on world", 1, 7).unwrap();
            w.barrier().unwrap();
            String::new()
        } else if w.rank() == 1 {
            // The world's receive gets the world's message, whatever came
            // first on the others.
            let a: String = w.recv(procs_mpi::ANY_SOURCE, procs_mpi::ANY_TAG).unwrap();
            let b: String = shared.recv(0, 7).unwrap();
            let c: String = dup.recv(procs_mpi::ANY_SOURCE, 7).unwrap();
            w.barrier().unwrap();
            assert!(
                w.iprobe(procs_mpi::ANY_SOURCE, procs_mpi::ANY_TAG)
                    .unwrap()
                    .is_none()
            );
            format!("{a}|{b}|{c}")
        } else {
            w.barrier().unwrap();
            String::new()
        }
    })
    .unwrap();
    assert_eq!(got[1], "on world|on shared|on dup");
}

#[test]
fn create_from_a_group_and_nested_splits() {
    let got = procs_mpi::run(6, |w| {
        let evens = w.group().incl(&[4, 2, 0]).unwrap();
        let c = w.create(&evens).unwrap();
        let in_evens = c
            .as_ref()
            .map(|c| (c.rank(), c.allreduce(&w.rank(), Op::MAX).unwrap()));
        // A split of a split: contexts stay apart.
        let half = w.split(w.rank() / 3, w.rank()).unwrap().unwrap();
        let quarter = half.split(half.rank() % 2, 0).unwrap().unwrap();
        let q = quarter.allgather(&w.rank()).unwrap();
        // A group that differs between ranks is an error on every rank.
        let mine = w.group().incl(&[w.rank() % 2]).unwrap();
        let bad = matches!(w.create(&mine), Err(Error::Mismatch(_)));
        (in_evens, q, bad)
    })
    .unwrap();
    let evens = [Some((2, 4)), None, Some((1, 4)), None, Some((0, 4)), None];
    for (r, (e, q, bad)) in got.into_iter().enumerate() {
        assert_eq!(e, evens[r]);
        let base = r / 3 * 3;
        let want: Vec<i32> = (base..base + 3)
            .filter(|j| (j - base) % 2 == (r - base) % 2)
            .map(|j| j as i32)
            .collect();
        assert_eq!(q, want);
        assert!(bad, "rank {r}");
    }
}

#[test]
fn collectives_in_different_orders_on_two_communicators_are_a_mismatch() {
    let got = procs_mpi::run(2, |w| {
        let dup = w.dup().unwrap();
        let r = if w.rank() == 0 {
            w.barrier()
        } else {
            dup.barrier()
        };
        match r {
            Err(Error::Mismatch(m)) => m.contains("on communicator"),
            _ => false,
        }
    })
    .unwrap();
    assert_eq!(got, [true, true]);
}
