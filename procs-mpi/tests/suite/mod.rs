//! One suite of checks over a world, whatever its backend: run by
//! `tests/backends.rs` over shared memory (four ranks of `run`), and by the
//! `suite` example under `procsrun -n 4` and under `mpirun -n 4` (the MPI
//! backend). Every check is collective: each rank runs each in order, and
//! each returns what went wrong on this rank.
//!
//! Results are exact (integer values, floats that hold integers), so that
//! a backend that reduces in another order still agrees.

#![allow(dead_code)]

use procs_mpi::{
    ANY_SOURCE, ANY_TAG, Communicator, CommunicatorExt, Error, IN_PLACE, Op, PROC_NULL, SplitType,
    UNDEFINED, World, wait_all, wait_any,
};

type Check = fn(&World) -> Result<(), String>;

/// Every check, by name.
pub const CHECKS: &[(&str, Check)] = &[
    ("p2p_objects_and_status", p2p_objects_and_status),
    (
        "p2p_buffers_probe_and_truncate",
        p2p_buffers_probe_and_truncate,
    ),
    ("p2p_nonblocking_and_cancel", p2p_nonblocking_and_cancel),
    ("object_collectives", object_collectives),
    ("object_reductions", object_reductions),
    ("buffer_bcast_scatter_gather", buffer_bcast_scatter_gather),
    ("buffer_v_forms", buffer_v_forms),
    ("buffer_reductions", buffer_reductions),
    ("user_operation_in_rank_order", user_operation_in_rank_order),
    ("nonblocking_collectives", nonblocking_collectives),
    ("communicators", communicators),
    ("cartesian_grid", cartesian_grid),
    ("argument_errors", argument_errors),
];

/// Runs every check on this rank: the names of those that failed, with
/// why. A check that fails on one rank may leave the others waiting in a
/// collective it did not reach: so each check ends in a barrier only when
/// it passed everywhere it can tell.
pub fn run(world: &World) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    for (name, check) in CHECKS {
        if let Err(why) = check(world) {
            failed.push((name.to_string(), why));
        }
    }
    failed
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

fn eq<T: PartialEq + std::fmt::Debug>(got: T, want: T, what: &str) -> Result<(), String> {
    ensure(got == want, || {
        format!("{what}: got {got:?}, want {want:?}")
    })
}

fn ok<T>(r: procs_mpi::Result<T>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn p2p_objects_and_status(w: &World) -> Result<(), String> {
    let (me, n) = (w.rank(), w.size());
    let (next, prev) = ((me + 1) % n, (me + n - 1) % n);
    // A ring: each sends to the next, receives from the previous.
    let got: (i32, String) = ok(
        w.sendrecv(&(me, format!("from {me}")), next, 7, prev, 7),
        "sendrecv",
    )?;
    eq(got, (prev, format!("from {prev}")), "ring")?;
    // Any source, any tag: the status names the sender and the tag.
    if me == 0 {
        for _ in 1..n {
            let (v, st): (Vec<u8>, _) = ok(w.recv_with_status(ANY_SOURCE, ANY_TAG), "recv any")?;
            eq(v.len() as i32, st.source, "length is the sender's rank")?;
            eq(st.tag, 100 + st.source, "tag")?;
        }
    } else {
        ok(w.ssend(&vec![0u8; me as usize], 0, 100 + me), "ssend")?;
    }
    // PROC_NULL: a send goes nowhere, a receive completes at once.
    ok(w.send(&1u8, PROC_NULL, 0), "send to PROC_NULL")?;
    let st = ok(
        w.recv_buf(&mut [0u8; 4], PROC_NULL, 0),
        "recv from PROC_NULL",
    )?;
    eq((st.source, st.bytes()), (PROC_NULL, 0), "PROC_NULL status")?;
    ok(w.barrier(), "barrier")
}

fn p2p_buffers_probe_and_truncate(w: &World) -> Result<(), String> {
    let (me, n) = (w.rank(), w.size());
    if me == 0 {
        for j in 1..n {
            let st = ok(w.probe(j, 3), "probe")?;
            eq(st.count::<u32>(), j as usize * 2, "probed count")?;
            let mut buf = vec![0u32; st.count::<u32>()];
            ok(w.recv_buf(&mut buf, j, 3), "recv_buf")?;
            eq(buf, vec![j as u32; j as usize * 2], "buffer")?;
        }
        // A receive buffer too small for the message: a typed error.
        let mut small = [0u64; 1];
        match w.recv_buf(&mut small, 1, 4) {
            Err(Error::Truncate { len, capacity }) => {
                eq((len > capacity, capacity), (true, 8), "truncate")?
            }
            other => return Err(format!("a short buffer gave {other:?}")),
        }
    } else {
        ok(
            w.send_buf(&vec![me as u32; me as usize * 2], 0, 3),
            "send_buf",
        )?;
        if me == 1 {
            ok(w.send_buf(&[1u64, 2, 3], 0, 4), "send_buf long")?;
        }
    }
    // Nothing else is waiting for rank 0 now.
    ok(w.barrier(), "barrier")?;
    eq(
        ok(w.iprobe(ANY_SOURCE, ANY_TAG), "iprobe")?,
        None,
        "nothing left",
    )?;
    // A rank that is not one: a typed error, not a hang.
    match w.send(&0u8, n + 5, 0) {
        Err(Error::InvalidRank { .. }) => {}
        other => return Err(format!("send to rank {} gave {other:?}", n + 5)),
    }
    ok(w.barrier(), "barrier")
}

fn p2p_nonblocking_and_cancel(w: &World) -> Result<(), String> {
    let (me, n) = (w.rank(), w.size());
    let peer = me ^ 1;
    if peer >= n {
        return ok(w.barrier(), "barrier");
    }
    let mut bufs = [[0i64; 3]; 4];
    let mut recvs = Vec::new();
    for (tag, b) in bufs.iter_mut().enumerate() {
        recvs.push(ok(w.irecv_buf(b, peer, tag as i32), "irecv_buf")?);
    }
    let mut sends = Vec::new();
    for tag in 0..4i64 {
        sends.push(ok(
            w.isend_buf(&[tag, me as i64, 9], peer, tag as i32),
            "isend_buf",
        )?);
    }
    let (first, st) = ok(wait_any(&mut recvs), "wait_any")?;
    eq(st.tag, first as i32, "wait_any's tag")?;
    ok(wait_all(&mut recvs), "wait_all recvs")?;
    ok(wait_all(&mut sends), "wait_all sends")?;
    drop(recvs);
    for (tag, b) in bufs.iter().enumerate() {
        eq(*b, [tag as i64, peer as i64, 9], "nonblocking buffer")?;
    }
    // An object receive, and a receive nobody sends to, cancelled.
    let r = ok(w.irecv::<String>(peer, 20), "irecv")?;
    ok(w.isend(&format!("hi {me}"), peer, 20), "isend")?
        .wait()
        .map_err(|e| e.to_string())?;
    eq(
        ok(r.wait(), "irecv wait")?,
        format!("hi {peer}"),
        "irecv object",
    )?;
    let mut never = ok(w.irecv_buf(&mut bufs[0], peer, 999), "irecv unmatched")?;
    ensure(never.cancel(), || {
        "an unmatched receive did not cancel".into()
    })?;
    drop(never);
    ok(w.barrier(), "barrier")
}

fn object_collectives(w: &World) -> Result<(), String> {
    let (me, n) = (w.rank(), w.size());
    let root = n - 1;
    let words = (me == root).then(|| vec!["a".to_string(), "bc".into()]);
    eq(
        ok(w.bcast(words.as_ref(), root), "bcast")?,
        vec!["a".to_string(), "bc".into()],
        "bcast",
    )?;
    let parts: Option<Vec<String>> =
        (me == 1).then(|| (0..n).map(|j| "x".repeat(j as usize)).collect());
    eq(
        ok(w.scatter(parts.as_deref(), 1), "scatter")?,
        "x".repeat(me as usize),
        "scatter",
    )?;
    let all: Vec<i32> = (0..n).collect();
    let g = ok(w.gather(&(me * 10), 0), "gather")?;
    eq(
        g,
        (me == 0).then(|| all.iter().map(|r| r * 10).collect()),
        "gather",
    )?;
    eq(ok(w.allgather(&me), "allgather")?, all.clone(), "allgather")?;
    let out: Vec<(i32, i32)> = (0..n).map(|j| (me, j)).collect();
    eq(
        ok(w.alltoall(&out), "alltoall")?,
        (0..n).map(|j| (j, me)).collect::<Vec<_>>(),
        "alltoall",
    )?;
    ok(w.barrier(), "barrier")
}

fn object_reductions(w: &World) -> Result<(), String> {
    let (me, n) = (w.rank(), w.size());
    let word = |r: i32| char::from(b'a' + r as u8).to_string();
    let concat = |a: String, b: String| a + &b;
    let every: String = (0..n).map(word).collect();
    eq(
        ok(w.allreduce(&word(me), concat), "allreduce")?,
        every.clone(),
        "allreduce in rank order",
    )?;
    let r = ok(w.reduce(&word(me), concat, 1), "reduce")?;
    eq(r, (me == 1).then(|| every.clone()), "reduce")?;
    eq(
        ok(w.scan(&word(me), concat), "scan")?,
        every[..=me as usize].to_string(),
        "scan",
    )?;
    let ex = ok(w.exscan(&word(me), concat), "exscan")?;
    eq(
        ex,
        (me > 0).then(|| every[..me as usize].to_string()),
        "exscan",
    )?;
    eq(
        ok(w.allreduce(&(me as i64), Op::SUM), "allreduce SUM")?,
        (n * (n - 1) / 2) as i64,
        "sum",
    )?;
    ok(w.barrier(), "barrier")
}

fn buffer_bcast_scatter_gather(w: &World) -> Result<(), String> {
    let (me, n) = (w.rank(), w.size());
    let nu = n as usize;
    let mut b = if me == 0 {
        [3.5f64, -1.0, 8.0]
    } else {
        [0.0; 3]
    };
    ok(w.bcast_buf(&mut b, 0), "bcast_buf")?;
    eq(b, [3.5, -1.0, 8.0], "bcast_buf")?;
    // Scatter of two elements each; the root's part in place.
    let all: Vec<u32> = (0..2 * n as u32).collect();
    let mut mine = [0u32; 2];
    if me == 0 {
        ok(w.scatter_buf(Some(&all), Some(&mut mine), 0), "scatter_buf")?;
    } else {
        ok(w.scatter_buf(None, Some(&mut mine), 0), "scatter_buf")?;
    }
    eq(mine, [2 * me as u32, 2 * me as u32 + 1], "scatter_buf")?;
    // Gather back, at the root in place.
    let mut back = vec![0u32; 2 * nu];
    if me == 0 {
        back[..2].copy_from_slice(&mine);
        ok(
            w.gather_buf(IN_PLACE, Some(&mut back), 0),
            "gather_buf in place",
        )?;
        eq(&back, &all, "gather_buf")?;
    } else {
        ok(w.gather_buf(&mine, None, 0), "gather_buf")?;
    }
    let mut every = vec![0u32; 2 * nu];
    ok(w.allgather_buf(&mine, &mut every), "allgather_buf")?;
    eq(&every, &all, "allgather_buf")?;
    let mut inplace = vec![0u32; 2 * nu];
    inplace[2 * me as usize..2 * me as usize + 2].copy_from_slice(&mine);
    ok(
        w.allgather_buf(IN_PLACE, &mut inplace),
        "allgather_buf in place",
    )?;
    eq(&inplace, &all, "allgather_buf in place")?;
    // Alltoall: part j of rank i is 100 i + j.
    let send: Vec<i32> = (0..n).map(|j| 100 * me + j).collect();
    let mut recv = vec![0i32; nu];
    ok(w.alltoall_buf(&send, &mut recv), "alltoall_buf")?;
    eq(
        recv,
        (0..n).map(|i| 100 * i + me).collect::<Vec<_>>(),
        "alltoall_buf",
    )?;
    ok(w.barrier(), "barrier")
}

fn buffer_v_forms(w: &World) -> Result<(), String> {
    let (me, n) = (w.rank(), w.size());
    let nu = n as usize;
    // Rank j's part is j + 1 elements, laid out in reverse rank order.
    let counts: Vec<usize> = (1..=nu).collect();
    let total: usize = counts.iter().sum();
    let mut displs = vec![0usize; nu];
    let mut at = 0;
    for j in (0..nu).rev() {
        displs[j] = at;
        at += counts[j];
    }
    let full: Vec<u16> = (0..total as u16).collect();
    let part_of = |j: usize| full[displs[j]..displs[j] + counts[j]].to_vec();
    let mut mine = vec![0u16; counts[me as usize]];
    let root = 1 % n;
    if me == root {
        ok(
            w.scatterv_buf(Some((&full, &counts, &displs)), Some(&mut mine), root),
            "scatterv",
        )?;
    } else {
        ok(w.scatterv_buf(None, Some(&mut mine), root), "scatterv")?;
    }
    eq(&mine, &part_of(me as usize), "scatterv")?;
    let mut back = vec![0u16; total];
    if me == root {
        ok(
            w.gatherv_buf(&mine, Some((&mut back, &counts, &displs)), root),
            "gatherv",
        )?;
        eq(&back, &full, "gatherv")?;
    } else {
        ok(w.gatherv_buf(&mine, None, root), "gatherv")?;
    }
    let mut every = vec![0u16; total];
    ok(
        w.allgatherv_buf(&mine, &mut every, &counts, &displs),
        "allgatherv",
    )?;
    eq(&every, &full, "allgatherv")?;
    // Alltoallv: rank i sends j + 1 copies of 10 i + j to rank j.
    let scounts: Vec<usize> = (0..nu).map(|j| j + 1).collect();
    let sdispls: Vec<usize> = scounts
        .iter()
        .scan(0, |a, &c| {
            let d = *a;
            *a += c;
            Some(d)
        })
        .collect();
    let send: Vec<i64> = (0..nu)
        .flat_map(|j| vec![10 * me as i64 + j as i64; j + 1])
        .collect();
    let rcounts = vec![me as usize + 1; nu];
    let rdispls: Vec<usize> = (0..nu).map(|i| i * (me as usize + 1)).collect();
    let mut recv = vec![0i64; nu * (me as usize + 1)];
    ok(
        w.alltoallv_buf(&send, &scounts, &sdispls, &mut recv, &rcounts, &rdispls),
        "alltoallv",
    )?;
    let want: Vec<i64> = (0..nu)
        .flat_map(|i| vec![10 * i as i64 + me as i64; me as usize + 1])
        .collect();
    eq(recv, want, "alltoallv")?;
    ok(w.barrier(), "barrier")
}

fn buffer_reductions(w: &World) -> Result<(), String> {
    let (me, n) = (w.rank(), w.size());
    let nu = n as usize;
    let r = me as i64;
    let sum_ranks = (n * (n - 1) / 2) as i64;
    let mut sum = [0i64; 2];
    ok(w.allreduce_buf(&[r, 1], &mut sum, Op::SUM), "allreduce_buf")?;
    eq(sum, [sum_ranks, n as i64], "allreduce_buf SUM")?;
    let mut max = [me as f64 * 2.0];
    ok(
        w.allreduce_buf(IN_PLACE, &mut max, Op::MAX),
        "allreduce_buf in place",
    )?;
    eq(max, [(n - 1) as f64 * 2.0], "allreduce_buf MAX")?;
    let mut bits = [1u32 << me];
    ok(
        w.allreduce_buf(IN_PLACE, &mut bits, Op::BOR),
        "allreduce_buf BOR",
    )?;
    eq(bits, [(1u32 << n) - 1], "BOR")?;
    // A large allreduce (past any small-message path).
    let big: Vec<i32> = (0..100_000).map(|i| i % 7 + me).collect();
    let mut out = vec![0i32; big.len()];
    ok(
        w.allreduce_buf(&big, &mut out, Op::SUM),
        "large allreduce_buf",
    )?;
    ensure(
        out.iter()
            .enumerate()
            .all(|(i, &v)| v as i64 == n as i64 * (i % 7) as i64 + sum_ranks),
        || "large allreduce_buf values".into(),
    )?;
    if me == 0 {
        let mut at_root = [r, -r];
        ok(
            w.reduce_buf(IN_PLACE, Some(&mut at_root), Op::SUM, 0),
            "reduce_buf in place",
        )?;
        eq(at_root, [sum_ranks, -sum_ranks], "reduce_buf")?;
    } else {
        ok(w.reduce_buf(&[r, -r], None, Op::SUM, 0), "reduce_buf")?;
    }
    let mut scan = [0i64];
    ok(w.scan_buf(&[r + 1], &mut scan, Op::PROD), "scan_buf")?;
    eq(scan[0], (1..=r + 1).product::<i64>(), "scan_buf PROD")?;
    let mut ex = [-7i64];
    ok(w.exscan_buf(&[r], &mut ex, Op::SUM), "exscan_buf")?;
    eq(
        ex[0],
        if me == 0 { -7 } else { r * (r - 1) / 2 },
        "exscan_buf (rank 0's left as it was)",
    )?;
    // Reduce-scatter: block j of rank i's input is i + j, counts j + 1.
    let counts: Vec<usize> = (1..=nu).collect();
    let input: Vec<i64> = (0..nu).flat_map(|j| vec![r + j as i64; j + 1]).collect();
    let mut block = vec![0i64; counts[me as usize]];
    ok(
        w.reduce_scatter_buf(&input, &mut block, &counts, Op::SUM),
        "reduce_scatter_buf",
    )?;
    eq(
        block,
        vec![sum_ranks + n as i64 * r; me as usize + 1],
        "reduce_scatter_buf",
    )?;
    let input: Vec<i64> = (0..nu).flat_map(|j| [r * j as i64, 1]).collect();
    let mut block = [0i64; 2];
    ok(
        w.reduce_scatter_block_buf(&input, &mut block, Op::SUM),
        "reduce_scatter_block_buf",
    )?;
    eq(block, [sum_ranks * r, n as i64], "reduce_scatter_block_buf")?;
    ok(w.barrier(), "barrier")
}

/// 2x2 matrices mod a prime, packed in a u64: an associative operation
/// that does not commute, so a fold out of rank order shows.
fn mat(a: u64, b: u64, c: u64, d: u64) -> u64 {
    a | b << 16 | c << 32 | d << 48
}

fn mat_mul(x: u64, y: u64) -> u64 {
    const P: u64 = 65521;
    let e = |m: u64, i: u32| (m >> (16 * i)) & 0xffff;
    let (a, b, c, d) = (e(x, 0), e(x, 1), e(x, 2), e(x, 3));
    let (p, q, r, s) = (e(y, 0), e(y, 1), e(y, 2), e(y, 3));
    mat(
        (a * p + b * r) % P,
        (a * q + b * s) % P,
        (c * p + d * r) % P,
        (c * q + d * s) % P,
    )
}

fn user_operation_in_rank_order(w: &World) -> Result<(), String> {
    let (me, n) = (w.rank(), w.size());
    let m_of = |r: i32| mat(1, r as u64 + 1, 0, 1 + 2 * r as u64);
    let mul = || {
        Op::user(|acc: &mut [u64], x: &[u64]| {
            for (a, &b) in acc.iter_mut().zip(x) {
                *a = mat_mul(*a, b);
            }
        })
    };
    let prefix = |upto: i32| (1..=upto).fold(m_of(0), |a, r| mat_mul(a, m_of(r)));
    let mut all = [0u64; 2];
    ok(
        w.allreduce_buf(&[m_of(me), m_of(n - 1 - me)], &mut all, mul()),
        "allreduce user op",
    )?;
    let rev = (1..n).fold(m_of(n - 1), |a, r| mat_mul(a, m_of(n - 1 - r)));
    eq(
        all,
        [prefix(n - 1), rev],
        "allreduce of a non-commuting op, rank order",
    )?;
    let mut scan = [0u64];
    ok(w.scan_buf(&[m_of(me)], &mut scan, mul()), "scan user op")?;
    eq(scan[0], prefix(me), "scan of a non-commuting op")?;
    let mut at_root = [0u64];
    let root = n - 1;
    let recv = (me == root).then_some(&mut at_root[..]);
    ok(
        w.reduce_buf(&[m_of(me)], recv, mul(), root),
        "reduce user op",
    )?;
    if me == root {
        eq(at_root[0], prefix(n - 1), "reduce of a non-commuting op")?;
    }
    ok(w.barrier(), "barrier")
}

fn nonblocking_collectives(w: &World) -> Result<(), String> {
    let (me, n) = (w.rank(), w.size());
    let req = ok(w.ibarrier(), "ibarrier")?;
    // Other calls while the barrier is in flight.
    let seen = ok(w.allreduce(&1, Op::SUM), "allreduce during ibarrier")?;
    ok(req.wait(), "ibarrier wait")?;
    eq(seen, n, "allreduce during ibarrier")?;
    let mut buf = if me == 1 % n { [7u32, 8, 9] } else { [0; 3] };
    ok(
        ok(w.ibcast_buf(&mut buf, 1 % n), "ibcast_buf")?.wait(),
        "ibcast wait",
    )?;
    eq(buf, [7, 8, 9], "ibcast_buf")?;
    let mut sum = [0i64; 2];
    let mut req = ok(
        w.iallreduce_buf(&[me as i64, 1], &mut sum, Op::SUM),
        "iallreduce_buf",
    )?;
    // Tested until complete, then waited (a no-op).
    while ok(req.test(), "iallreduce test")?.is_none() {
        std::thread::yield_now();
    }
    drop(req);
    eq(sum, [(n * (n - 1) / 2) as i64, n as i64], "iallreduce_buf")?;
    ok(w.barrier(), "barrier")
}

fn communicators(w: &World) -> Result<(), String> {
    let (me, n) = (w.rank(), w.size());
    // A duplicate's traffic never matches the original's.
    let d = ok(w.dup(), "dup")?;
    eq((d.rank(), d.size()), (me, n), "dup")?;
    let peer = (me + 1) % n;
    let from = (me + n - 1) % n;
    let r1 = ok(w.irecv::<i32>(from, 0), "irecv on world")?;
    ok(d.send(&(me + 1000), peer, 0), "send on dup")?;
    ok(w.send(&me, peer, 0), "send on world")?;
    eq(
        ok(d.recv::<i32>(from, 0), "recv on dup")?,
        from + 1000,
        "dup's message",
    )?;
    eq(ok(r1.wait(), "world's message")?, from, "world's message")?;
    // Split by parity, ranked by descending rank; the last rank opts out.
    let color = if me == n - 1 && n > 2 {
        UNDEFINED
    } else {
        me % 2
    };
    let half = ok(w.split(color, -me), "split")?;
    match half {
        None => ensure(color == UNDEFINED, || "no communicator for a colour".into())?,
        Some(h) => {
            let members: Vec<i32> = (0..n)
                .filter(|&r| r % 2 == me % 2 && !(r == n - 1 && n > 2))
                .collect();
            eq(h.size() as usize, members.len(), "split size")?;
            eq(
                h.rank() as usize,
                members.iter().rev().position(|&r| r == me).unwrap_or(99),
                "split rank",
            )?;
            let sum = ok(h.allreduce(&me, Op::SUM), "allreduce on split")?;
            eq(sum, members.iter().sum::<i32>(), "allreduce on split")?;
        }
    }
    let shared = ok(w.split_type(SplitType::Shared, me), "split_type")?
        .ok_or("split_type gave no communicator")?;
    // The machines partition the world: each rank names the lowest rank
    // of its machine's communicator and its size, and as many ranks name
    // a leader as its communicator holds.
    let leader = ok(shared.allreduce(&me, Op::MIN), "allreduce on split_type")?;
    let named = ok(
        w.allgather(&(leader, shared.size())),
        "allgather of machines",
    )?;
    for &(l, size) in &named {
        let count = named.iter().filter(|(m, _)| *m == l).count() as i32;
        eq(count, size, "ranks of one machine")?;
    }
    if w.backend() == procs_mpi::Backend::SharedMemory {
        eq(shared.size(), n, "one machine: every rank shares it")?;
    }
    // A job started across machines says how many (`.ci/mpi-two-hosts`).
    if let Some(want) = std::env::var("PROCS_SUITE_MACHINES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let mut leaders: Vec<i32> = named.iter().map(|(l, _)| *l).collect();
        leaders.dedup();
        leaders.sort_unstable();
        leaders.dedup();
        eq(leaders.len(), want, "machines of the job")?;
    }
    // A group of the even ranks, and the communicator of it.
    let g = w.group();
    let evens: Vec<i32> = (0..n).filter(|r| r % 2 == 0).collect();
    let eg = ok(g.incl(&evens), "incl")?;
    let odd = ok(g.excl(&evens), "excl")?;
    eq(odd.size() as usize, (n / 2) as usize, "excl size")?;
    eq(
        ok(eg.translate_ranks(&[0], &g), "translate")?,
        vec![0],
        "translate",
    )?;
    let c = ok(w.create(&eg), "create")?;
    eq(c.is_some(), me % 2 == 0, "create membership")?;
    if let Some(c) = c {
        eq(c.rank(), me / 2, "create rank")?;
        eq(
            ok(c.allgather(&me), "allgather on create")?,
            evens.clone(),
            "create allgather",
        )?;
    }
    ok(w.barrier(), "barrier")
}

fn cartesian_grid(w: &World) -> Result<(), String> {
    let (me, n) = (w.rank(), w.size());
    let dims = ok(procs_mpi::dims_create(n, &[0, 0]), "dims_create")?;
    let grid = ok(w.create_cart(&dims, &[false, true], false), "create_cart")?
        .ok_or("every rank is on a full grid")?;
    let c = ok(grid.coords(grid.rank()), "coords")?;
    eq(
        c.clone(),
        vec![me / dims[1], me % dims[1]],
        "row-major coordinates",
    )?;
    eq(
        ok(grid.cart_rank(&c), "cart_rank")?,
        grid.rank(),
        "cart_rank",
    )?;
    let (up, down) = ok(grid.shift(0, 1), "shift")?;
    eq(
        up,
        if c[0] == 0 { PROC_NULL } else { me - dims[1] },
        "shift down the rows",
    )?;
    eq(
        down,
        if c[0] == dims[0] - 1 {
            PROC_NULL
        } else {
            me + dims[1]
        },
        "shift",
    )?;
    let got = ok(grid.neighbor_allgather(&me), "neighbor_allgather")?;
    let nb = ok(grid.neighbors(), "neighbors")?;
    let want: Vec<Option<i32>> = nb.iter().map(|&r| (r != PROC_NULL).then_some(r)).collect();
    eq(got, want, "neighbor_allgather")?;
    // Slot k's piece arrives in the neighbour's opposite slot (k ^ 1),
    // also where both neighbours of a periodic dimension are one rank.
    let out: Vec<(i32, usize)> = (0..nb.len()).map(|k| (me, k)).collect();
    let got = ok(grid.neighbor_alltoall(&out), "neighbor_alltoall")?;
    let want: Vec<Option<(i32, usize)>> = nb
        .iter()
        .enumerate()
        .map(|(k, &r)| (r != PROC_NULL).then_some((r, k ^ 1)))
        .collect();
    eq(got, want, "neighbor_alltoall")?;
    let row = ok(grid.sub(&[false, true]), "sub")?;
    eq(
        (row.size(), row.rank()),
        (dims[1], c[1]),
        "a row of the grid",
    )?;
    eq(
        ok(row.allgather(&me), "allgather on a row")?,
        (0..dims[1]).map(|j| c[0] * dims[1] + j).collect::<Vec<_>>(),
        "row",
    )?;
    // A row is a grid of its own: its neighbours wrap (periodic), and
    // its own sub keeps nothing but itself.
    let rnb = ok(row.neighbors(), "neighbors of a row")?;
    let left = (c[1] + dims[1] - 1) % dims[1] + c[0] * dims[1];
    let right = (c[1] + 1) % dims[1] + c[0] * dims[1];
    let got = ok(row.neighbor_allgather(&me), "neighbor_allgather on a row")?;
    eq(
        got,
        vec![Some(left), Some(right)],
        "a row's neighbours (world ranks)",
    )?;
    eq(rnb.len(), 2, "a row has two neighbour slots")?;
    let one = ok(row.sub(&[false]), "sub of a row")?;
    eq((one.size(), one.rank()), (1, 0), "a grid of no dimension")?;
    ok(w.barrier(), "barrier")
}

fn argument_errors(w: &World) -> Result<(), String> {
    let n = w.size();
    // Arguments every rank gets wrong alike: each hears a typed error.
    match w.bcast_buf(&mut [0u8; 2], n) {
        Err(Error::Argument(why)) => ensure(why.contains("root"), || format!("bad root: {why}"))?,
        other => return Err(format!("bcast_buf to root {n} gave {other:?}")),
    }
    // The root alone passes nothing: every rank hears why.
    match w.bcast::<i32>(None, 0) {
        Err(Error::Argument(why)) => {
            ensure(why.starts_with("rank 0"), || format!("no object: {why}"))?
        }
        other => return Err(format!("bcast of no object gave {other:?}")),
    }
    ok(w.barrier(), "barrier")
}
