//! Nonblocking collectives between real rank processes: `ibarrier`,
//! `ibcast_buf` and `iallreduce_buf` against their blocking forms, left
//! pending across other calls, polled, mixed with point-to-point requests,
//! mismatched, and with a rank that dies.

use procs_mpi::{Communicator, CommunicatorExt, Error, Op, test_all, wait_all, wait_any};

fn x(r: usize, i: usize) -> i64 {
    (r as i64 + 1) * 1_000_003 + (i as i64 * 7919) % 10_007
}

#[test]
fn nonblocking_collectives_equal_the_blocking_ones_across_other_calls() {
    for n in 1..=6 {
        let got = procs_mpi::run(n, move |w| {
            let r = w.rank() as usize;
            let mut ok = true;
            for (s, k) in [0usize, 1, 7, 4096, 200_000].into_iter().enumerate() {
                let root = (s % n) as i32;
                let mine: Vec<i64> = (0..k).map(|i| x(r, i)).collect();
                let mut b = if w.rank() == root {
                    mine.clone()
                } else {
                    vec![0; k]
                };
                let mut sum = vec![0i64; k];
                let bar = w.ibarrier().unwrap();
                let bc = w.ibcast_buf(&mut b, root).unwrap();
                let ar = w.iallreduce_buf(&mine, &mut sum, Op::SUM).unwrap();
                // Blocking collectives and messages while they are pending.
                let mut blocking = vec![0i64; k.min(64)];
                w.allreduce_buf(&mine[..k.min(64)], &mut blocking, Op::MAX)
                    .unwrap();
                let next = ((r + 1) % n) as i32;
                let prev = ((r + n - 1) % n) as i32;
                let from: usize = w.sendrecv(&r, next, 3, prev, 3).unwrap();
                ok &= from == (r + n - 1) % n;
                // Completed in reverse order.
                ar.wait().unwrap();
                bc.wait().unwrap();
                bar.wait().unwrap();
                let root_in: Vec<i64> = (0..k).map(|i| x(root as usize, i)).collect();
                ok &= b == root_in;
                ok &= (0..k).all(|i| sum[i] == (0..n).map(|j| x(j, i)).sum::<i64>());
                ok &= (0..k.min(64)).all(|i| blocking[i] == (0..n).map(|j| x(j, i)).max().unwrap());
            }
            ok
        })
        .unwrap();
        assert!(got.iter().all(|&ok| ok), "{n} ranks: {got:?}");
    }
}

#[test]
fn a_barrier_request_completes_only_once_every_member_started_it() {
    let got = procs_mpi::run(3, |w| {
        if w.rank() == 0 {
            let mut req = w.ibarrier().unwrap();
            // Ranks 1 and 2 start theirs only after this message.
            let mut early = false;
            for _ in 0..200 {
                early |= req.test().unwrap().is_some();
            }
            w.send(&(), 1, 1).unwrap();
            w.send(&(), 2, 1).unwrap();
            // Polled to completion.
            while req.test().unwrap().is_none() {}
            assert!(!req.is_active());
            !early
        } else {
            w.recv::<()>(0, 1).unwrap();
            w.ibarrier().unwrap().wait().is_ok()
        }
    })
    .unwrap();
    assert_eq!(got, [true, true, true]);
}

#[test]
fn collective_requests_mix_with_point_to_point_ones_in_wait_any_all_and_test_all() {
    let got = procs_mpi::run(4, |w| {
        let r = w.rank();
        let peer = r ^ 1;
        let mut sum = [0u32; 3];
        let mut into = [0u32; 2];
        let mut reqs = vec![
            w.iallreduce_buf(&[1, r as u32, 2], &mut sum, Op::SUM)
                .unwrap(),
            w.irecv_buf(&mut into, peer, 4).unwrap(),
        ];
        let send = w.isend_buf(&[r as u32, 9], peer, 4).unwrap();
        let (first, _) = wait_any(&mut reqs).unwrap();
        let rest = wait_all(&mut reqs).unwrap();
        send.wait().unwrap();
        let mut pair = vec![w.ibarrier().unwrap()];
        let all = loop {
            if let Some(st) = test_all(&mut pair).unwrap() {
                break st;
            }
        };
        drop(reqs);
        (first < 2, rest.len(), all.len(), sum, into)
    })
    .unwrap();
    for (r, g) in got.iter().enumerate() {
        assert_eq!(*g, (true, 2, 1, [4, 6, 8], [(r ^ 1) as u32, 9]), "rank {r}");
    }
}

#[test]
fn a_dropped_collective_request_is_finished_and_the_next_ones_agree() {
    let got = procs_mpi::run(3, |w| {
        drop(w.ibarrier().unwrap());
        let mut s = [0u8; 1];
        drop(w.iallreduce_buf(&[1u8], &mut s, Op::SUM).unwrap());
        let after = w.allreduce(&w.rank(), Op::SUM).unwrap();
        (s[0], after)
    })
    .unwrap();
    assert_eq!(got, [(3, 3); 3]);
}

#[test]
fn mismatched_nonblocking_collectives_and_bad_arguments_are_errors_at_wait() {
    let got = procs_mpi::run(2, |w| {
        let mut s = [0i32; 1];
        let r = if w.rank() == 0 {
            w.ibarrier().unwrap().wait()
        } else {
            w.iallreduce_buf(&[1], &mut s, Op::SUM).unwrap().wait()
        };
        let mismatch = matches!(r, Err(Error::Mismatch(m)) if m.contains("ibarrier") && m.contains("iallreduce"));
        let mut b = [0u8; 2];
        let bad_root = matches!(w.ibcast_buf(&mut b, 5).unwrap().wait(), Err(Error::Argument(_)));
        let mut into = [0i32; 2];
        let bad_len = match w.iallreduce_buf(&[1, 2, 3][..w.rank() as usize + 1], &mut into, Op::SUM) {
            Ok(req) => req.wait(),
            Err(e) => Err(e),
        };
        let bad_len = matches!(bad_len, Err(Error::Argument(_)));
        // The communicator still works.
        let fine = w.allreduce(&1, Op::SUM).unwrap() == 2;
        (mismatch, bad_root, bad_len, fine)
    })
    .unwrap();
    assert_eq!(got, [(true, true, true, true); 2]);
}

#[test]
fn a_rank_killed_before_its_part_fails_the_others_wait() {
    let got = procs_mpi::run_all(3, |w| {
        w.barrier().unwrap();
        if w.rank() == 2 {
            // SAFETY: raise has no preconditions; the rank dies by SIGKILL.
            unsafe { libc::raise(libc::SIGKILL) };
        }
        let mut s = [0u64; 4];
        let req = w.iallreduce_buf(&[1; 4], &mut s, Op::SUM).unwrap();
        matches!(req.wait(), Err(Error::RankDied { rank: 2, .. }))
    })
    .unwrap();
    assert!(got[2].is_err());
    assert!(got[..2].iter().all(|g| matches!(g, Ok(true))), "{got:?}");
}
