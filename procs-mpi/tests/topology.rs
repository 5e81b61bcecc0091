//! Cartesian topologies between real rank processes: coordinates, ranks,
//! shifts at the edges with and without periods in 1, 2 and 3 dimensions,
//! `sub`, and the neighbourhood collectives, each against a reference
//! computed here from the grid's arithmetic.

use procs_mpi::{Communicator, Error, PROC_NULL, dims_create};

/// Row-major coordinates of `rank` on `dims`.
fn coords_of(rank: i32, dims: &[i32]) -> Vec<i32> {
    let mut c = vec![0; dims.len()];
    let mut left = rank;
    for i in (0..dims.len()).rev() {
        c[i] = left % dims[i];
        left /= dims[i];
    }
    c
}

/// The rank `disp` steps along `dim` from `rank`, or `PROC_NULL`.
fn step(rank: i32, dims: &[i32], periods: &[bool], dim: usize, disp: i32) -> i32 {
    let mut c = coords_of(rank, dims);
    let v = c[dim] + disp;
    if (0..dims[dim]).contains(&v) {
        c[dim] = v;
    } else if periods[dim] {
        c[dim] = v.rem_euclid(dims[dim]);
    } else {
        return PROC_NULL;
    }
    c.iter().zip(dims).fold(0, |r, (&x, &d)| r * d + x)
}

const GRIDS: &[(&[i32], &[bool])] = &[
    (&[1], &[false]),
    (&[1], &[true]),
    (&[5], &[false]),
    (&[5], &[true]),
    (&[2, 3], &[false, false]),
    (&[2, 3], &[true, false]),
    (&[3, 2], &[false, true]),
    (&[2, 2], &[true, true]),
    (&[2, 2, 2], &[false, false, false]),
    (&[2, 2, 2], &[true, false, true]),
    (&[1, 3, 2], &[true, true, false]),
    (&[2, 1, 3], &[false, true, true]),
];

#[test]
fn shifts_coords_and_ranks_match_the_grid_in_1_2_and_3_dimensions() {
    for &(dims, periods) in GRIDS {
        let cells: i32 = dims.iter().product();
        // One rank more than the grid holds: it is left out.
        let n = cells as usize + 1;
        let (d, p) = (dims.to_vec(), periods.to_vec());
        let got = procs_mpi::run(n, move |w| {
            let cart = w.create_cart(&d, &p, false).unwrap()?;
            assert_eq!(cart.dims(), &d[..]);
            assert_eq!(cart.periods(), &p[..]);
            assert_eq!(cart.size(), cells);
            let me = cart.rank();
            let mut shifts = Vec::new();
            for dim in 0..d.len() {
                for disp in [1, 2, -1, 0] {
                    shifts.push(cart.shift(dim, disp).unwrap());
                }
            }
            let all: Vec<Vec<i32>> = (0..cells).map(|r| cart.coords(r).unwrap()).collect();
            let back: Vec<i32> = all.iter().map(|c| cart.cart_rank(c).unwrap()).collect();
            Some((me, shifts, all, back))
        })
        .unwrap();
        assert_eq!(got[cells as usize], None, "{dims:?}: the extra rank");
        for (r, g) in got.iter().take(cells as usize).enumerate() {
            let (me, shifts, all, back) = g.clone().unwrap();
            let r = r as i32;
            assert_eq!(me, r, "ranks keep their order");
            let mut want = Vec::new();
            for dim in 0..dims.len() {
                for disp in [1, 2, -1, 0] {
                    want.push((
                        step(r, dims, periods, dim, -disp),
                        step(r, dims, periods, dim, disp),
                    ));
                }
            }
            assert_eq!(shifts, want, "{dims:?} {periods:?} rank {r}");
            let coords: Vec<Vec<i32>> = (0..cells).map(|q| coords_of(q, dims)).collect();
            assert_eq!(all, coords);
            assert_eq!(back, (0..cells).collect::<Vec<_>>());
        }
    }
}

#[test]
fn out_of_grid_coordinates_wrap_only_where_periodic_and_bad_calls_are_errors() {
    let got = procs_mpi::run(6, |w| {
        let bad = [
            w.create_cart(&[4, 2], &[false, false], false).err(),
            w.create_cart(&[2, 3], &[false], false).err(),
            w.create_cart(&[0, 3], &[false, false], false).err(),
            w.create_cart(&[-2, 3], &[false, false], false).err(),
        ];
        for e in &bad {
            assert!(matches!(e, Some(Error::Topology(_))), "{e:?}");
        }
        let cart = w
            .create_cart(&[2, 3], &[false, true], true)
            .unwrap()
            .unwrap();
        assert_eq!(cart.cart_rank(&[1, 3]).unwrap(), 3);
        assert_eq!(cart.cart_rank(&[1, -1]).unwrap(), 5);
        assert_eq!(cart.cart_rank(&[0, -7]).unwrap(), 2);
        for c in [&[2, 0][..], &[-1, 0], &[0], &[0, 0, 0]] {
            assert!(
                matches!(cart.cart_rank(c), Err(Error::Topology(_))),
                "{c:?}"
            );
        }
        assert!(matches!(
            cart.coords(6),
            Err(Error::InvalidRank { rank: 6, size: 6 })
        ));
        assert!(matches!(cart.coords(-1), Err(Error::InvalidRank { .. })));
        assert!(matches!(cart.shift(2, 1), Err(Error::Topology(_))));
        assert!(matches!(cart.sub(&[true]), Err(Error::Topology(_))));
        // The grid still works after the refused calls.
        cart.allreduce(&cart.rank(), procs_mpi::Op::SUM).unwrap()
    })
    .unwrap();
    assert_eq!(got, vec![15; 6]);
}

#[test]
fn sub_keeps_rows_columns_and_planes() {
    // 2 x 3: rows keep dimension 1, columns keep dimension 0.
    let got = procs_mpi::run(6, |w| {
        let cart = w
            .create_cart(&[2, 3], &[true, false], false)
            .unwrap()
            .unwrap();
        let row = cart.sub(&[false, true]).unwrap();
        let col = cart.sub(&[true, false]).unwrap();
        let none = cart.sub(&[false, false]).unwrap();
        let all = cart.sub(&[true, true]).unwrap();
        assert_eq!(row.dims(), &[3]);
        assert_eq!(row.periods(), &[false]);
        assert_eq!(col.dims(), &[2]);
        assert_eq!(col.periods(), &[true]);
        assert_eq!(none.size(), 1);
        assert_eq!(all.dims(), &[2, 3]);
        let me = cart.rank();
        (
            row.allgather(&me).unwrap(),
            col.allgather(&me).unwrap(),
            row.shift(0, 1).unwrap(),
            col.shift(0, 1).unwrap(),
            all.allgather(&me).unwrap(),
        )
    })
    .unwrap();
    for (r, (row, col, rs, cs, all)) in got.iter().enumerate() {
        let r = r as i32;
        let (i, j) = (r / 3, r % 3);
        assert_eq!(row, &vec![3 * i, 3 * i + 1, 3 * i + 2]);
        assert_eq!(col, &vec![j, 3 + j]);
        let left = if j == 0 { PROC_NULL } else { j - 1 };
        let right = if j == 2 { PROC_NULL } else { j + 1 };
        assert_eq!(rs, &(left, right), "rank {r} in its row");
        assert_eq!(cs, &(1 - i, 1 - i), "rank {r} in its column");
        assert_eq!(all, &(0..6).collect::<Vec<_>>());
    }

    // 2 x 2 x 2: planes keep dimensions 0 and 2.
    let got = procs_mpi::run(8, |w| {
        let cart = w
            .create_cart(&[2, 2, 2], &[false, true, false], false)
            .unwrap()
            .unwrap();
        let plane = cart.sub(&[true, false, true]).unwrap();
        assert_eq!(plane.dims(), &[2, 2]);
        assert_eq!(plane.periods(), &[false, false]);
        (
            plane.rank(),
            plane.allgather(&cart.rank()).unwrap(),
            plane.coords(plane.rank()).unwrap(),
        )
    })
    .unwrap();
    for (r, (prank, members, pc)) in got.iter().enumerate() {
        let c = coords_of(r as i32, &[2, 2, 2]);
        let want: Vec<i32> = (0..8)
            .filter(|&q| coords_of(q, &[2, 2, 2])[1] == c[1])
            .collect();
        assert_eq!(members, &want);
        assert_eq!(want[*prank as usize], r as i32);
        assert_eq!(pc, &vec![c[0], c[2]]);
    }
}

#[test]
fn neighbourhood_collectives_reach_each_neighbour_slot() {
    for &(dims, periods) in GRIDS {
        let cells: i32 = dims.iter().product();
        let (d, p) = (dims.to_vec(), periods.to_vec());
        let got = procs_mpi::run(cells as usize, move |w| {
            let cart = w.create_cart(&d, &p, false).unwrap().unwrap();
            let me = cart.rank();
            let nb = cart.neighbors().unwrap();
            let gathered: Vec<Option<i32>> = cart.neighbor_allgather(&(me * 10)).unwrap();
            let sent: Vec<(i32, usize)> = (0..nb.len()).map(|k| (me, k)).collect();
            let swapped: Vec<Option<(i32, usize)>> = cart.neighbor_alltoall(&sent).unwrap();
            // A wrong count is refused before anything is sent.
            assert!(matches!(
                cart.neighbor_alltoall(&sent[1..]),
                Err(Error::Argument(_))
            ));
            (nb, gathered, swapped)
        })
        .unwrap();
        for (r, (nb, gathered, swapped)) in got.iter().enumerate() {
            let r = r as i32;
            let mut want_nb = Vec::new();
            for dim in 0..dims.len() {
                want_nb.push(step(r, dims, periods, dim, -1));
                want_nb.push(step(r, dims, periods, dim, 1));
            }
            assert_eq!(nb, &want_nb, "{dims:?} {periods:?} rank {r}");
            for (k, &q) in nb.iter().enumerate() {
                if q == PROC_NULL {
                    assert_eq!(gathered[k], None);
                    assert_eq!(swapped[k], None);
                } else {
                    assert_eq!(gathered[k], Some(q * 10));
                    // The neighbour below sent this rank its "up" piece.
                    assert_eq!(swapped[k], Some((q, k ^ 1)), "{dims:?} rank {r} slot {k}");
                }
            }
        }
    }
}

#[test]
fn dims_create_balances_and_keeps_fixed_entries() {
    let cases: &[(i32, &[i32], &[i32])] = &[
        (1, &[0], &[1]),
        (7, &[0], &[7]),
        (6, &[0, 0], &[3, 2]),
        (7, &[0, 0], &[7, 1]),
        (12, &[0, 0], &[4, 3]),
        (8, &[0, 0, 0], &[2, 2, 2]),
        (12, &[0, 0, 0], &[3, 2, 2]),
        (24, &[0, 0, 0], &[4, 3, 2]),
        (16, &[0, 0, 0], &[4, 2, 2]),
        (36, &[0, 0], &[6, 6]),
        (12, &[0, 3], &[4, 3]),
        (12, &[2, 0, 0], &[2, 3, 2]),
        (6, &[2, 3], &[2, 3]),
    ];
    for &(n, dims, want) in cases {
        assert_eq!(
            dims_create(n, dims).unwrap(),
            want,
            "dims_create({n}, {dims:?})"
        );
    }
    for n in 1..=64 {
        for nd in 1..=3 {
            let d = dims_create(n, &vec![0; nd]).unwrap();
            assert_eq!(d.iter().product::<i32>(), n);
            assert!(d.windows(2).all(|w| w[0] >= w[1]), "{n}: {d:?}");
        }
    }
    for (n, dims) in [
        (7, &[2, 0][..]),
        (6, &[4]),
        (0, &[0]),
        (6, &[-1, 0]),
        (6, &[2, 2]),
    ] {
        assert!(
            matches!(dims_create(n, dims), Err(Error::Topology(_))),
            "dims_create({n}, {dims:?})"
        );
    }
}
