//! Collectives between real rank processes, each against a serial
//! reference computed from the same inputs: every collective in both
//! forms, 1 to 8 ranks (oversubscribed on small machines), several sizes,
//! every root, every operation, in place, mismatched calls, dead ranks.

use std::time::{Duration, Instant};

use procs_mpi::{Communicator, Error, IN_PLACE, Op, ValueIndex, World};

/// Rank `r`'s input element `i`: distinct per rank and position.
fn x(r: usize, i: usize) -> i64 {
    (r as i64 + 1) * 1_000_003 + (i as i64 * 7919) % 10_007 - 5_000
}

fn input(r: usize, k: usize) -> Vec<i64> {
    (0..k).map(|i| x(r, i)).collect()
}

/// Runs `body` on `n` ranks; every rank must return `true`.
fn on(n: usize, body: impl Fn(&World) -> bool + Send + Sync + 'static) {
    let got = procs_mpi::run(n, move |w| body(w)).unwrap();
    assert!(got.iter().all(|&ok| ok), "{n} ranks: {got:?}");
}

const SIZES: [usize; 4] = [0, 1, 7, 4096];

#[test]
fn object_collectives_match_a_serial_reference_for_1_to_8_ranks() {
    for n in 1..=8 {
        on(n, move |w| {
            let r = w.rank() as usize;
            w.barrier().unwrap();
            for root in 0..n as i32 {
                let v = (root == w.rank()).then(|| format!("from {root}"));
                assert_eq!(w.bcast(v.as_ref(), root).unwrap(), format!("from {root}"));
                let list: Vec<(usize, String)> = (0..n).map(|j| (j, "x".repeat(j))).collect();
                let mine = w
                    .scatter((root == w.rank()).then_some(&list[..]), root)
                    .unwrap();
                assert_eq!(mine, list[r]);
                let g = w.gather(&(r * r), root).unwrap();
                if root == w.rank() {
                    assert_eq!(g.unwrap(), (0..n).map(|j| j * j).collect::<Vec<_>>());
                } else {
                    assert!(g.is_none());
                }
                let red = w.reduce(&(r as i64), Op::SUM, root).unwrap();
                assert_eq!(red.is_some(), root == w.rank());
                if let Some(s) = red {
                    assert_eq!(s, (0..n as i64).sum::<i64>());
                }
            }
            assert_eq!(w.allgather(&r).unwrap(), (0..n).collect::<Vec<_>>());
            let to: Vec<(usize, usize)> = (0..n).map(|j| (r, j)).collect();
            let back: Vec<(usize, usize)> = w.alltoall(&to).unwrap();
            assert_eq!(back, (0..n).map(|j| (j, r)).collect::<Vec<_>>());
            // A non-commutative operation folds in rank order.
            let cat = |a: String, b: String| a + &b;
            let all: String = (0..n).map(|j| j.to_string()).collect();
            assert_eq!(w.allreduce(&r.to_string(), cat).unwrap(), all);
            assert_eq!(w.scan(&r.to_string(), cat).unwrap(), all[..=r]);
            let ex = w.exscan(&r.to_string(), cat).unwrap();
            assert_eq!(ex, (r > 0).then(|| all[..r].to_string()));
            assert_eq!(w.allreduce(&(r as u32), Op::MAX).unwrap(), n as u32 - 1);
            true
        });
    }
}

#[test]
fn buffer_collectives_match_a_serial_reference_for_every_size_and_root() {
    for n in 1..=8 {
        on(n, move |w| {
            let r = w.rank() as usize;
            for k in SIZES {
                let mine = input(r, k);
                let every: Vec<Vec<i64>> = (0..n).map(|j| input(j, k)).collect();
                let sum: Vec<i64> = (0..k).map(|i| (0..n).map(|j| x(j, i)).sum()).collect();
                let mut out = vec![0i64; k];
                w.allreduce_buf(&mine, &mut out, Op::SUM).unwrap();
                assert_eq!(out, sum);
                let mut inplace = mine.clone();
                w.allreduce_buf(IN_PLACE, &mut inplace, Op::SUM).unwrap();
                assert_eq!(inplace, sum);
                for root in 0..n as i32 {
                    let mut b = if w.rank() == root {
                        mine.clone()
                    } else {
                        vec![0; k]
                    };
                    w.bcast_buf(&mut b, root).unwrap();
                    assert_eq!(b, input(root as usize, k));
                    let mut red = vec![0i64; k];
                    let into = (w.rank() == root).then_some(&mut red[..]);
                    w.reduce_buf(&mine, into, Op::MAX, root).unwrap();
                    if w.rank() == root {
                        let max: Vec<i64> = (0..k)
                            .map(|i| (0..n).map(|j| x(j, i)).max().unwrap())
                            .collect();
                        assert_eq!(red, max);
                    }
                    let flat: Vec<i64> = every.concat();
                    let mut all = vec![0i64; n * k];
                    let into = (w.rank() == root).then_some(&mut all[..]);
                    w.gather_buf(&mine, into, root).unwrap();
                    if w.rank() == root {
                        assert_eq!(all, flat);
                    }
                    let mut part = vec![0i64; k];
                    let from = (w.rank() == root).then_some(&flat[..]);
                    w.scatter_buf(from, Some(&mut part), root).unwrap();
                    assert_eq!(part, every[r]);
                }
                let mut all = vec![0i64; n * k];
                w.allgather_buf(&mine, &mut all).unwrap();
                assert_eq!(all, every.concat());
                let mut place = vec![0i64; n * k];
                place[r * k..(r + 1) * k].copy_from_slice(&mine);
                w.allgather_buf(IN_PLACE, &mut place).unwrap();
                assert_eq!(place, every.concat());
                // Alltoall: block j of rank r's input goes to rank j.
                let send: Vec<i64> = (0..n * k).map(|i| x(r, i)).collect();
                let mut recv = vec![0i64; n * k];
                w.alltoall_buf(&send, &mut recv).unwrap();
                let want: Vec<i64> = (0..n)
                    .flat_map(|j| (r * k..(r + 1) * k).map(move |i| x(j, i)))
                    .collect();
                assert_eq!(recv, want);
                let mut scan = vec![0i64; k];
                w.scan_buf(&mine, &mut scan, Op::SUM).unwrap();
                let pre = |upto: usize| -> Vec<i64> {
                    (0..k).map(|i| (0..upto).map(|j| x(j, i)).sum()).collect()
                };
                assert_eq!(scan, pre(r + 1));
                let mut ex = vec![-1i64; k];
                w.exscan_buf(&mine, &mut ex, Op::SUM).unwrap();
                if r > 0 {
                    assert_eq!(ex, pre(r));
                }
                let big: Vec<i64> = (0..n * k).map(|i| x(r, i)).collect();
                let mut block = vec![0i64; k];
                w.reduce_scatter_block_buf(&big, &mut block, Op::SUM)
                    .unwrap();
                let want: Vec<i64> = (r * k..(r + 1) * k)
                    .map(|i| (0..n).map(|j| x(j, i)).sum())
                    .collect();
                assert_eq!(block, want);
            }
            true
        });
    }
}

#[test]
fn v_forms_place_each_part_by_counts_and_displacements() {
    for n in 1..=6 {
        on(n, move |w| {
            let r = w.rank() as usize;
            // Rank j contributes j + 1 elements.
            let counts: Vec<usize> = (1..=n).collect();
            let displs: Vec<usize> = counts
                .iter()
                .scan(0, |a, &c| {
                    let d = *a;
                    *a += c + 1; // a gap after each part
                    Some(d)
                })
                .collect();
            let len = displs[n - 1] + counts[n - 1];
            let mine = input(r, r + 1);
            let mut want = vec![0i64; len];
            for j in 0..n {
                want[displs[j]..displs[j] + counts[j]].copy_from_slice(&input(j, j + 1));
            }
            let mut all = vec![0i64; len];
            w.allgatherv_buf(&mine, &mut all, &counts, &displs).unwrap();
            assert_eq!(all, want);
            let mut g = vec![0i64; len];
            let into = (r == 0).then_some((&mut g[..], &counts[..], &displs[..]));
            w.gatherv_buf(&mine, into, 0).unwrap();
            if r == 0 {
                assert_eq!(g, want);
            }
            let mut part = vec![0i64; r + 1];
            let from = (r == 0).then_some((&want[..], &counts[..], &displs[..]));
            w.scatterv_buf(from, Some(&mut part), 0).unwrap();
            assert_eq!(part, mine);
            // Alltoallv: rank r sends j + 1 elements to rank j.
            let sc: Vec<usize> = (0..n).map(|j| j + 1).collect();
            let sd: Vec<usize> = sc
                .iter()
                .scan(0, |a, &c| Some(std::mem::replace(a, *a + c)))
                .collect();
            let send: Vec<i64> = (0..sc.iter().sum()).map(|i| x(r, i)).collect();
            let rc = vec![r + 1; n];
            let rd: Vec<usize> = (0..n).map(|j| j * (r + 1)).collect();
            let mut recv = vec![0i64; n * (r + 1)];
            w.alltoallv_buf(&send, &sc, &sd, &mut recv, &rc, &rd)
                .unwrap();
            for j in 0..n {
                let want: Vec<i64> = (sd_of(r)..sd_of(r) + r + 1).map(|i| x(j, i)).collect();
                assert_eq!(recv[j * (r + 1)..(j + 1) * (r + 1)], want[..]);
            }
            let mut rs = vec![0i64; r + 1];
            let total: Vec<i64> = (0..counts.iter().sum()).map(|i| x(r, i)).collect();
            w.reduce_scatter_buf(&total, &mut rs, &counts, Op::SUM)
                .unwrap();
            let off: usize = (1..=r).sum();
            let want: Vec<i64> = (off..off + r + 1)
                .map(|i| (0..n).map(|j| x(j, i)).sum())
                .collect();
            assert_eq!(rs, want);
            true
        });
    }
}

/// Where rank `r`'s part starts in a sender's alltoallv buffer (parts of
/// 1, 2, 3, ... elements).
fn sd_of(r: usize) -> usize {
    (1..=r).sum()
}

#[test]
fn every_operation_and_maxloc_ties() {
    on(4, |w| {
        let r = w.rank() as i64;
        let mut b = [0u32; 6];
        let vals = [r as u32, 1 << r, (r % 2) as u32, 3, r as u32 + 1, 0];
        type Check = (Op<u32>, fn(&[u32]) -> u32);
        let ops: [Check; 10] = [
            (Op::SUM, |v| v.iter().sum()),
            (Op::PROD, |v| v.iter().product()),
            (Op::MAX, |v| *v.iter().max().unwrap()),
            (Op::MIN, |v| *v.iter().min().unwrap()),
            (Op::LAND, |v| v.iter().all(|&a| a != 0) as u32),
            (Op::LOR, |v| v.iter().any(|&a| a != 0) as u32),
            (Op::LXOR, |v| {
                (v.iter().filter(|&&a| a != 0).count() % 2) as u32
            }),
            (Op::BAND, |v| v.iter().fold(u32::MAX, |a, &b| a & b)),
            (Op::BOR, |v| v.iter().fold(0, |a, &b| a | b)),
            (Op::BXOR, |v| v.iter().fold(0, |a, &b| a ^ b)),
        ];
        for (op, reference) in ops {
            w.allreduce_buf(&vals, &mut b, op).unwrap();
            for (i, got) in b.iter().enumerate() {
                let column: Vec<u32> = (0..4)
                    .map(|j: i64| [j as u32, 1 << j, (j % 2) as u32, 3, j as u32 + 1, 0][i])
                    .collect();
                assert_eq!(*got, reference(&column));
            }
        }
        // Ties: ranks 1 and 3 hold the largest value; the lowest index wins.
        let v = ValueIndex {
            value: if r % 2 == 1 { 9.5f64 } else { r as f64 },
            index: r,
        };
        let mut out = [ValueIndex::default()];
        w.allreduce_buf(&[v], &mut out, Op::MAXLOC).unwrap();
        assert_eq!(
            out[0],
            ValueIndex {
                value: 9.5,
                index: 1
            }
        );
        w.allreduce_buf(&[v], &mut out, Op::MINLOC).unwrap();
        assert_eq!(
            out[0],
            ValueIndex {
                value: 0.0,
                index: 0
            }
        );
        // A non-commutative user operation: 2x2 matrix products in rank order.
        let m = [1 + r, r, 2, 1];
        let mul = Op::user(|acc: &mut [i64], x: &[i64]| {
            for (a, b) in acc.chunks_mut(4).zip(x.chunks(4)) {
                let p = [
                    a[0] * b[0] + a[1] * b[2],
                    a[0] * b[1] + a[1] * b[3],
                    a[2] * b[0] + a[3] * b[2],
                    a[2] * b[1] + a[3] * b[3],
                ];
                a.copy_from_slice(&p);
            }
        });
        let mut prod = [0i64; 4];
        w.allreduce_buf(&m, &mut prod, mul.clone()).unwrap();
        let mut want = [1, 0, 2, 1];
        for j in 1..4i64 {
            let mut acc = want;
            mul.apply(&mut acc, &[1 + j, j, 2, 1]).unwrap();
            want = acc;
        }
        assert_eq!(prod, want);
        // Floating-point sums: the left fold in rank order, bit for bit.
        let f = [0.1f64 * (r as f64 + 1.0), 1e16, -1e16 * (r as f64)];
        let mut s = [0f64; 3];
        w.allreduce_buf(&f, &mut s, Op::SUM).unwrap();
        let mut want = [0.1f64, 1e16, -0.0];
        for j in 1..4 {
            let g = [0.1f64 * (j as f64 + 1.0), 1e16, -1e16 * (j as f64)];
            for i in 0..3 {
                want[i] += g[i];
            }
        }
        assert_eq!(s.map(f64::to_bits), want.map(f64::to_bits));
        // An operation the type lacks fails on every rank, before sending.
        assert!(matches!(
            w.allreduce_buf(&[1.0f64], &mut [0.0], Op::BAND),
            Err(Error::Argument(_))
        ));
        true
    });
}

#[test]
fn one_mib_of_elements_in_the_large_allreduce_and_bcast() {
    for n in [2, 3, 4] {
        on(n, move |w| {
            let r = w.rank() as usize;
            let k = 1 << 20;
            let mine: Vec<i32> = (0..k)
                .map(|i| (i as i32).wrapping_mul(r as i32 + 3))
                .collect();
            let mut out = vec![0i32; k];
            w.allreduce_buf(&mine, &mut out, Op::SUM).unwrap();
            let ok = (0..k).all(|i| {
                out[i]
                    == (0..n as i32)
                        .fold(0i32, |a, j| a.wrapping_add((i as i32).wrapping_mul(j + 3)))
            });
            let mut b = if r == 1 { mine.clone() } else { vec![0; k] };
            w.bcast_buf(&mut b, 1).unwrap();
            ok && b
                .iter()
                .enumerate()
                .all(|(i, &v)| v == (i as i32).wrapping_mul(4))
        });
    }
}

#[test]
fn a_thousand_back_to_back_allreduces_of_mixed_sizes() {
    on(3, |w| {
        let r = w.rank() as i64;
        for i in 0..1000usize {
            let k = [1usize, 9, 300, 20_000][i % 4];
            let mine: Vec<i64> = (0..k).map(|e| r * 31 + e as i64 + i as i64).collect();
            let mut out = vec![0i64; k];
            w.allreduce_buf(&mine, &mut out, Op::SUM).unwrap();
            if (0..k).any(|e| out[e] != 3 * (e as i64 + i as i64) + 93) {
                return false;
            }
            if i % 100 == 0 {
                w.barrier().unwrap();
            }
        }
        true
    });
}

#[test]
fn mismatched_calls_are_an_error_on_every_rank() {
    // Roots that differ.
    let got = procs_mpi::run(3, |w| {
        let root = if w.rank() == 2 { 1 } else { 0 };
        let v = (w.rank() == root).then_some(5u8);
        match w.bcast(v.as_ref(), root) {
            Err(Error::Mismatch(m)) => m.contains("bcast(root=0)") && m.contains("bcast(root=1)"),
            _ => false,
        }
    })
    .unwrap();
    assert_eq!(got, [true, true, true]);
    // A scatter list whose length is not the rank count.
    let got = procs_mpi::run(3, |w| {
        let list = [1u8, 2];
        let from = (w.rank() == 0).then_some(&list[..]);
        match w.scatter(from, 0) {
            Err(Error::Argument(m)) => m.starts_with("rank 0:"),
            _ => false,
        }
    })
    .unwrap();
    assert_eq!(got, [true, true, true]);
    // Different collectives.
    let got = procs_mpi::run(2, |w| {
        let r = if w.rank() == 0 {
            w.barrier()
        } else {
            w.allreduce(&1u8, Op::SUM).map(drop)
        };
        matches!(r, Err(Error::Mismatch(m)) if m.contains("barrier") && m.contains("allreduce"))
    })
    .unwrap();
    assert_eq!(got, [true, true]);
    // Counts that do not add up between two ranks: every rank hears of it.
    let got = procs_mpi::run(4, |w| {
        let n = 4;
        let mut rc = vec![1usize; n];
        if w.rank() == 3 {
            rc[2] = 2; // rank 2 sends it 1
        }
        let rd: Vec<usize> = rc
            .iter()
            .scan(0, |a, &c| Some(std::mem::replace(a, *a + c)))
            .collect();
        let sc = vec![1usize; n];
        let sd: Vec<usize> = (0..n).collect();
        let mut recv = vec![0u8; rc.iter().sum()];
        let r = w.alltoallv_buf(&[7u8; 4], &sc, &sd, &mut recv, &rc, &rd);
        matches!(r, Err(Error::Argument(m)) if m.contains("rank 2") || m.contains("rank 3"))
    })
    .unwrap();
    assert_eq!(got, [true; 4]);
    // A buffer bcast whose lengths differ.
    let got = procs_mpi::run(2, |w| {
        let mut b = vec![0u16; 3 + w.rank() as usize];
        matches!(w.bcast_buf(&mut b, 0), Err(Error::Mismatch(_)))
    })
    .unwrap();
    assert_eq!(got, [true, true]);
}

#[test]
fn a_rank_killed_inside_a_collective_fails_every_other_ranks_call() {
    for trial in 0..6 {
        let allreduce = trial % 2 == 0;
        let got = procs_mpi::run_all(4, move |w| {
            let r = w.rank();
            if r == 3 {
                // SAFETY: raise has no preconditions; the rank dies by SIGKILL.
                unsafe { libc::raise(libc::SIGKILL) };
            }
            let t = Instant::now();
            let res = if allreduce {
                w.allreduce_buf(&[1u64; 100], &mut [0; 100], Op::SUM)
            } else {
                let v = (r == 0).then_some(vec![1u8; 50_000]);
                w.bcast(v.as_ref(), 0).map(drop)
            };
            let named = matches!(res, Err(Error::RankDied { rank: 3, .. }));
            (named, t.elapsed() < Duration::from_secs(2))
        })
        .unwrap();
        for (r, out) in got.into_iter().enumerate().take(3) {
            let (named, quick) = out.unwrap_or_else(|e| panic!("rank {r}: {e}"));
            assert!(named && quick, "trial {trial}: rank {r}: {named} {quick}");
        }
    }
}

#[test]
fn parts_too_large_for_a_collective_buffer_go_as_messages_beside_packed_ones() {
    // On the world, rounds go through the ranks' collective buffers (16 KiB
    // each); a rank whose part does not fit sends it as messages, while the
    // others' stay packed. On a part of the world, every round is messages.
    for n in 2..=5 {
        let got = procs_mpi::run(n, move |w| {
            let half = w
                .split(i32::from(w.rank() == 0 && n > 2), 0)
                .unwrap()
                .unwrap();
            let mut out = Vec::new();
            for comm in [&**w, &half] {
                let cr = comm.rank() as usize;
                let cn = comm.size() as usize;
                // allgather: one payload for all, of 0, 6000, 12000, 18000... bytes.
                let mine = vec![cr as u8 + 1; cr * 6000];
                let all: Vec<Vec<u8>> = comm.allgather(&mine).unwrap();
                let ok_gather = all
                    .iter()
                    .enumerate()
                    .all(|(j, v)| v.len() == j * 6000 && v.iter().all(|&b| b == j as u8 + 1));
                // alltoall: a different part for each member, (cr + 1) * 1500 bytes each.
                let parts: Vec<Vec<u8>> = (0..cn)
                    .map(|j| vec![(cr * 16 + j) as u8; (cr + 1) * 1500])
                    .collect();
                let back: Vec<Vec<u8>> = comm.alltoall(&parts).unwrap();
                let ok_swap = back.iter().enumerate().all(|(j, v)| {
                    v.len() == (j + 1) * 1500 && v.iter().all(|&b| b == (j * 16 + cr) as u8)
                });
                // gather at the last rank and bcast from rank 1 % cn of the
                // same mixed sizes.
                let root = cn as i32 - 1;
                let at_root = comm.gather(&mine, root).unwrap();
                let ok_root = match at_root {
                    Some(all) => {
                        cr as i32 == root
                            && all.iter().enumerate().all(|(j, v)| v.len() == j * 6000)
                    }
                    None => cr as i32 != root,
                };
                let from = (1 % cn) as i32;
                let sent = (cr as i32 == from).then(|| vec![7u8; 20_000 + cr]);
                let b: Vec<u8> = comm.bcast(sent.as_ref(), from).unwrap();
                let ok_bcast = b.len() == 20_000 + from as usize && b.iter().all(|&x| x == 7);
                out.push((ok_gather && ok_root && ok_bcast, ok_swap));
            }
            out
        })
        .unwrap();
        for (r, g) in got.iter().enumerate() {
            assert!(g.iter().all(|&(a, b)| a && b), "{n} ranks, rank {r}: {g:?}");
        }
    }
}

#[test]
fn a_bad_argument_or_another_length_beside_quick_rounds_fails_every_rank_and_the_next_calls_work() {
    for n in [2usize, 3, 5] {
        let got = procs_mpi::run(n, move |w| {
            let r = w.rank();
            // Rank 1's input is one element short: the others' rounds are
            // the quick kind, its own is not.
            let send: Vec<i32> = vec![r; if r == 1 { 1 } else { 2 }];
            let mut out = [0i32; 2];
            let bad = matches!(
                w.allreduce_buf(&send[..], &mut out, Op::SUM),
                Err(Error::Argument(m)) if m.starts_with("rank 1:")
            );
            // Lengths that differ: a mismatch on every rank.
            let mut other = vec![0u8; if r == 0 { 3 } else { 4 }];
            let mismatch = matches!(
                w.allreduce_buf(&other.clone()[..], &mut other, Op::BOR),
                Err(Error::Mismatch(_))
            );
            // A barrier against an allreduce.
            let cross = if r == 0 {
                w.barrier()
            } else {
                w.allreduce_buf(&[1u8], &mut [0u8], Op::SUM)
            };
            let cross = matches!(cross, Err(Error::Mismatch(m)) if m.contains("barrier"));
            w.barrier().unwrap();
            let mut sum = [0i64; 1];
            w.allreduce_buf(&[i64::from(r)], &mut sum, Op::SUM).unwrap();
            (bad, mismatch, cross, sum[0])
        })
        .unwrap();
        let total = (0..n as i64).sum::<i64>();
        assert!(
            got.iter().all(|g| *g == (true, true, true, total)),
            "{n} ranks: {got:?}"
        );
    }
}

#[test]
fn large_allreduces_by_single_copies_and_by_messages_agree_in_place_and_not() {
    // Both ways forced (the default is measured where the test runs), odd
    // lengths that split unevenly, a non-commutative operation applied in
    // rank order, and one rank whose input is its result (IN_PLACE).
    for single in [true, false] {
        for n in [2usize, 3, 5] {
            let cfg = procs_mpi::Config::new().single_copy(Some(single));
            let got = cfg
                .run(n, move |w| {
                    let r = w.rank() as usize;
                    let k = 300_001;
                    let mine: Vec<i64> = (0..k).map(|i| x(r, i)).collect();
                    let mut out = vec![0i64; k];
                    w.allreduce_buf(&mine, &mut out, Op::SUM).unwrap();
                    let sum_ok = (0..k).all(|i| out[i] == (0..n).map(|j| x(j, i)).sum::<i64>());
                    // acc = acc * 3 + x: not commutative, so rank order shows.
                    let horner = Op::<i64>::user(|acc, x| {
                        for (a, b) in acc.iter_mut().zip(x) {
                            *a = a.wrapping_mul(3).wrapping_add(*b);
                        }
                    });
                    let mut inplace = mine.clone();
                    if r == 1 {
                        w.allreduce_buf(IN_PLACE, &mut inplace, horner).unwrap();
                    } else {
                        w.allreduce_buf(&mine, &mut inplace, horner).unwrap();
                    }
                    let order_ok = (0..k).all(|i| {
                        let want =
                            (1..n).fold(x(0, i), |a, j| a.wrapping_mul(3).wrapping_add(x(j, i)));
                        inplace[i] == want
                    });
                    sum_ok && order_ok
                })
                .unwrap();
            assert!(
                got.iter().all(|&ok| ok),
                "single copy {single}, {n} ranks: {got:?}"
            );
        }
    }
}

#[test]
fn a_rank_killed_inside_a_large_allreduce_fails_the_others() {
    for single in [true, false] {
        let cfg = procs_mpi::Config::new().single_copy(Some(single));
        let got = cfg
            .run_all(3, move |w| {
                let k = 1 << 18;
                let mine = vec![1u64; k];
                let mut out = vec![0u64; k];
                w.allreduce_buf(&mine, &mut out, Op::SUM).unwrap();
                if w.rank() == 2 {
                    // SAFETY: raise has no preconditions; the rank dies by SIGKILL.
                    unsafe { libc::raise(libc::SIGKILL) };
                }
                let t = Instant::now();
                let res = w.allreduce_buf(&mine, &mut out, Op::SUM);
                (
                    matches!(res, Err(Error::RankDied { rank: 2, .. })),
                    t.elapsed() < Duration::from_secs(2),
                )
            })
            .unwrap();
        assert!(got[2].is_err());
        for g in &got[..2] {
            assert!(
                matches!(g, Ok((true, true))),
                "single copy {single}: {got:?}"
            );
        }
    }
}
