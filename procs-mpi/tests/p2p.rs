//! Point-to-point between real rank processes: matching, sizes, requests,
//! probes, errors.

use procs_mpi::{
    ANY_SOURCE, ANY_TAG, Communicator, CommunicatorExt, Config, Error, PROC_NULL, Status, test_all,
    wait_all, wait_any,
};

fn both(single: bool) -> [Config; 1] {
    [Config::new().single_copy(Some(single))]
}

#[test]
fn objects_and_buffers_go_both_ways() {
    let got = procs_mpi::run(2, |w| {
        if w.rank() == 0 {
            w.send(&(1u32, "one".to_string()), 1, 7).unwrap();
            w.send_buf(&[1.5f64, 2.5, 3.5], 1, 8).unwrap();
            let back: Vec<u8> = w.recv(1, 9).unwrap();
            back.len() as u64
        } else {
            let (n, s): (u32, String) = w.recv(0, 7).unwrap();
            assert_eq!((n, s.as_str()), (1, "one"));
            let mut buf = [0f64; 8];
            let st = w.recv_buf(&mut buf, 0, 8).unwrap();
            assert_eq!((st.source, st.tag, st.count::<f64>()), (0, 8, 3));
            assert_eq!(&buf[..3], &[1.5, 2.5, 3.5]);
            w.send(&vec![9u8; 100], 0, 9).unwrap();
            0
        }
    })
    .unwrap();
    assert_eq!(got, [100, 0]);
}

#[test]
fn sizes_from_zero_to_64_mib_in_both_large_message_paths() {
    for cfg in both(true).into_iter().chain(both(false)) {
        let got = cfg
            .run(2, |w| {
                let sizes = [0usize, 1, 100, 16 << 10, 64 << 10, 1 << 20, 64 << 20];
                if w.rank() == 0 {
                    for (i, &n) in sizes.iter().enumerate() {
                        let data: Vec<u8> = (0..n).map(|k| (k * 31 + i) as u8).collect();
                        w.send_buf(&data, 1, i as i32).unwrap();
                    }
                    0u64
                } else {
                    let mut total = 0u64;
                    for (i, &n) in sizes.iter().enumerate() {
                        let mut buf = vec![0u8; n];
                        let st = w.recv_buf(&mut buf, 0, i as i32).unwrap();
                        assert_eq!(st.count::<u8>(), n);
                        assert!(
                            buf.iter()
                                .enumerate()
                                .all(|(k, &b)| b == (k * 31 + i) as u8),
                            "size {n}"
                        );
                        total += n as u64;
                    }
                    total
                }
            })
            .unwrap();
        assert_eq!(
            got[1],
            (1 + 100 + (16 << 10) + (64 << 10) + (1 << 20) + (64 << 20)) as u64
        );
    }
}

#[test]
fn tags_and_any_source_match_as_mpi_says() {
    procs_mpi::run(3, |w| match w.rank() {
        0 => {
            // Tag 2 sent first, received second.
            let a: i32 = w.recv(1, 1).unwrap();
            let b: i32 = w.recv(1, 2).unwrap();
            assert_eq!((a, b), (10, 20));
            let mut from = Vec::new();
            for _ in 0..2 {
                let (v, st): (i32, Status) = w.recv_with_status(ANY_SOURCE, 5).unwrap();
                assert_eq!(v, st.source * 100);
                from.push(st.source);
            }
            from.sort();
            assert_eq!(from, [1, 2]);
            let (v, st): (i32, Status) = w.recv_with_status(2, ANY_TAG).unwrap();
            assert_eq!((v, st.tag), (7, 77));
        }
        r => {
            if r == 1 {
                w.send(&20, 0, 2).unwrap();
                w.send(&10, 0, 1).unwrap();
            }
            w.send(&(r * 100), 0, 5).unwrap();
            if r == 2 {
                w.send(&7, 0, 77).unwrap();
            }
        }
    })
    .unwrap();
}

#[test]
fn ten_thousand_mixed_messages_never_overtake() {
    procs_mpi::run(2, |w| {
        let size = |i: usize| match i % 5 {
            0 => 0,
            1 => 8,
            2 => 3000,
            3 => 20_000,
            _ => 70_000 + i,
        };
        if w.rank() == 0 {
            let mut reqs = Vec::new();
            for i in 0..10_000usize {
                let mut data = vec![0u8; size(i).max(8)];
                data[..8].copy_from_slice(&(i as u64).to_le_bytes());
                data.truncate(size(i).max(8));
                if i % 3 == 0 {
                    reqs.push(w.isend_buf(&data, 1, (i % 2) as i32).unwrap());
                } else {
                    w.send_buf(&data, 1, (i % 2) as i32).unwrap();
                }
                if reqs.len() > 50 {
                    wait_all(&mut reqs).unwrap();
                    reqs.clear();
                }
            }
            wait_all(&mut reqs).unwrap();
        } else {
            for i in 0..10_000usize {
                let (bytes, st) = w.recv_bytes(0, ANY_TAG).unwrap();
                assert_eq!(st.tag, (i % 2) as i32);
                assert_eq!(bytes.len(), size(i).max(8));
                assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()), i as u64);
            }
        }
    })
    .unwrap();
}

#[test]
fn proc_null_makes_calls_no_ops() {
    procs_mpi::run(2, |w| {
        w.send(&1, PROC_NULL, 0).unwrap();
        w.send_buf(&[1u8; 100_000], PROC_NULL, 0).unwrap();
        let mut buf = [7u8; 4];
        let st = w.recv_buf(&mut buf, PROC_NULL, 0).unwrap();
        assert_eq!(
            (st.source, st.tag, st.count::<u8>(), buf),
            (PROC_NULL, ANY_TAG, 0, [7; 4])
        );
        assert_eq!(w.probe(PROC_NULL, 3).unwrap().source, PROC_NULL);
        assert!(matches!(w.recv::<i32>(PROC_NULL, 0), Err(Error::ProcNull)));
        let r = w.isend(&5, PROC_NULL, 0).unwrap();
        assert_eq!(r.wait().unwrap().source, PROC_NULL);
        let st = w
            .sendrecv_buf(&[1u32], PROC_NULL, 0, &mut [0u32; 1], PROC_NULL, 0)
            .unwrap();
        assert_eq!(st.source, PROC_NULL);
    })
    .unwrap();
}

#[test]
fn probe_and_iprobe_give_counts_without_receiving() {
    procs_mpi::run(2, |w| {
        if w.rank() == 0 {
            w.send_buf(&[1u32, 2, 3, 4, 5], 1, 3).unwrap();
            w.send_buf(&vec![9u16; 50_000], 1, 4).unwrap();
            w.recv::<()>(1, 0).unwrap();
        } else {
            assert_eq!(w.iprobe(0, 99).unwrap(), None);
            let st = w.probe(0, 3).unwrap();
            assert_eq!((st.source, st.tag, st.count::<u32>()), (0, 3, 5));
            let st = loop {
                if let Some(st) = w.iprobe(ANY_SOURCE, 4).unwrap() {
                    break st;
                }
            };
            assert_eq!(st.count::<u16>(), 50_000);
            let mut big = vec![0u16; 50_000];
            w.recv_buf(&mut big, 0, 4).unwrap();
            let mut small = [0u32; 5];
            w.recv_buf(&mut small, 0, 3).unwrap();
            assert_eq!(small, [1, 2, 3, 4, 5]);
            assert!(big.iter().all(|&x| x == 9));
            w.send(&(), 0, 0).unwrap();
        }
    })
    .unwrap();
}

#[test]
fn a_thousand_requests_with_wait_all_and_wait_any() {
    procs_mpi::run(2, |w| {
        let peer = 1 - w.rank();
        let mut bufs = vec![[0u64; 4]; 1000];
        let mut recvs = Vec::new();
        for (i, b) in bufs.iter_mut().enumerate() {
            recvs.push(w.irecv_buf(b, peer, i as i32).unwrap());
        }
        let mut sends = Vec::new();
        for i in (0..1000u64).rev() {
            sends.push(w.isend_buf(&[i; 4], peer, i as i32).unwrap());
        }
        let mut seen = vec![false; 1000];
        for _ in 0..500 {
            let (i, st) = wait_any(&mut recvs).unwrap();
            assert_eq!(st.tag, i as i32);
            assert!(!seen[i]);
            seen[i] = true;
        }
        let rest = wait_all(&mut recvs).unwrap();
        assert_eq!(rest.len(), 1000);
        while test_all(&mut sends).unwrap().is_none() {}
        drop(recvs);
        for (i, b) in bufs.iter().enumerate() {
            assert_eq!(*b, [i as u64; 4]);
        }
    })
    .unwrap();
}

#[test]
fn a_buffer_too_small_is_truncate_and_bad_ranks_and_tags_are_refused() {
    procs_mpi::run(2, |w| {
        assert!(matches!(
            w.send(&1, 2, 0),
            Err(Error::InvalidRank { rank: 2, size: 2 })
        ));
        assert!(matches!(w.send(&1, -5, 0), Err(Error::InvalidRank { .. })));
        assert!(matches!(w.send(&1, 0, -1), Err(Error::InvalidTag(-1))));
        assert!(matches!(w.recv::<i32>(0, -3), Err(Error::InvalidTag(-3))));
        if w.rank() == 0 {
            w.send_buf(&[1u8; 10], 1, 0).unwrap();
            w.send_buf(&[1u8; 200_000], 1, 1).unwrap();
            w.send_buf(&[2u8; 3], 1, 2).unwrap();
        } else {
            let mut small = [0u8; 4];
            assert!(matches!(
                w.recv_buf(&mut small, 0, 0),
                Err(Error::Truncate {
                    len: 10,
                    capacity: 4
                })
            ));
            assert!(matches!(
                w.recv_buf(&mut small, 0, 1),
                Err(Error::Truncate { len: 200_000, .. })
            ));
            // The stream goes on after both.
            assert_eq!(w.recv_buf(&mut small, 0, 2).unwrap().count::<u8>(), 3);
        }
    })
    .unwrap();
}

#[test]
fn one_to_eight_ranks_pass_a_token_round_a_ring() {
    for n in 1..=8usize {
        let got = procs_mpi::run(n, |w| {
            let (me, size) = (w.rank(), w.size());
            let token: u64 = if me == 0 {
                w.send(&1u64, (me + 1) % size, 0).unwrap();
                w.recv(size - 1, 0).unwrap()
            } else {
                let t: u64 = w.recv(me - 1, 0).unwrap();
                w.send(&(t + 1), (me + 1) % size, 0).unwrap();
                t
            };
            token
        })
        .unwrap();
        assert_eq!(got[0], n as u64, "{n} ranks");
    }
}

#[test]
fn cancel_takes_back_an_unmatched_receive() {
    procs_mpi::run(2, |w| {
        if w.rank() == 1 {
            let mut r = w.irecv::<i32>(0, 5).unwrap();
            assert!(r.cancel());
            assert!(matches!(r.wait(), Err(Error::Cancelled)));
            let v: i32 = w.recv(0, 5).unwrap();
            assert_eq!(v, 55);
        } else {
            w.send(&55, 1, 5).unwrap();
        }
    })
    .unwrap();
}

#[test]
fn large_messages_arrive_whole_whether_the_sender_waits_or_computes() {
    // Split copies (each side copies a part) when the sender waits in its
    // send; the receiver takes the sender's part when it is off computing.
    let got = Config::new()
        .single_copy(Some(true))
        .run(2, |w| {
            let n = 3 << 20;
            if w.rank() == 0 {
                for round in 0..40u32 {
                    let data: Vec<u8> = (0..n).map(|k| (k as u32 * 7 + round) as u8).collect();
                    if round % 2 == 0 {
                        w.send_buf(&data, 1, 0).unwrap();
                    } else {
                        let r = w.isend_buf(&data, 1, 0).unwrap();
                        drop(data);
                        // Away from any call for a while.
                        let t = std::time::Instant::now();
                        while t.elapsed() < std::time::Duration::from_millis(2) {}
                        r.wait().unwrap();
                    }
                }
                0
            } else {
                let mut buf = vec![0u8; n];
                let mut good = 0;
                for round in 0..40u32 {
                    w.recv_buf(&mut buf, 0, 0).unwrap();
                    good += buf
                        .iter()
                        .enumerate()
                        .all(|(k, &b)| b == (k as u32 * 7 + round) as u8)
                        as u32;
                }
                good
            }
        })
        .unwrap();
    assert_eq!(got[1], 40);
}
