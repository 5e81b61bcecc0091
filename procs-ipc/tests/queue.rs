//! Queues between real processes: a million items through four producers
//! and four consumers, order, limits, timeouts, tasks, and processes that
//! die.

mod common;

use std::time::{Duration, Instant};

use common::{Reaper, start};
use procs_ipc::{Error, JoinableQueue, Queue, SimpleQueue};

/// A mixing function, so that a lost item and a duplicated one cannot
/// cancel out in the checksums.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn a_million_items_through_four_producers_and_four_consumers() {
    const PRODUCERS: u64 = 4;
    const PER: u64 = 250_000;
    let q = Queue::<u64>::new().unwrap();
    let results = Queue::<(u64, u64, u64)>::new().unwrap();
    let mut kids: Vec<Reaper> = Vec::new();
    for c in 0..4 {
        let (rx, out) = (q.receiver(), results.sender());
        kids.push(start(move || {
            let (mut n, mut sum, mut x) = (0u64, 0u64, 0u64);
            for item in rx.iter() {
                n += 1;
                sum = sum.wrapping_add(mix(item));
                x ^= mix(item ^ 0xABCD);
            }
            out.put((n, sum, x)).unwrap();
            let _ = c;
        }));
    }
    for p in 0..PRODUCERS {
        let tx = q.sender();
        kids.push(start(move || {
            for i in 0..PER {
                tx.put(p << 32 | i).unwrap();
            }
        }));
    }
    // Only the producers can put now: consumers end when they are done.
    drop(q);
    let results = results.receiver();
    let (mut n, mut sum, mut x) = (0u64, 0u64, 0u64);
    for _ in 0..4 {
        let (cn, cs, cx) = results.get_timeout(Duration::from_secs(120)).unwrap();
        n += cn;
        sum = sum.wrapping_add(cs);
        x ^= cx;
    }
    let (mut en, mut es, mut ex) = (0u64, 0u64, 0u64);
    for p in 0..PRODUCERS {
        for i in 0..PER {
            let item = p << 32 | i;
            en += 1;
            es = es.wrapping_add(mix(item));
            ex ^= mix(item ^ 0xABCD);
        }
    }
    assert_eq!(n, en, "items lost or duplicated");
    assert_eq!(sum, es, "items lost or duplicated");
    assert_eq!(x, ex, "items lost or duplicated");
    for k in &mut kids {
        assert_eq!(k.0.join().unwrap(), 0);
    }
}

#[test]
fn one_consumer_sees_each_producers_items_in_order() {
    let q = Queue::<(u32, u32)>::new().unwrap();
    let mut kids: Vec<Reaper> = (0..4)
        .map(|p| {
            let tx = q.sender();
            start(move || {
                for i in 0..20_000 {
                    tx.put((p, i)).unwrap();
                }
            })
        })
        .collect();
    let rx = q.receiver();
    drop(q);
    let mut next = [0u32; 4];
    for (p, i) in rx.iter() {
        assert_eq!(i, next[p as usize], "producer {p} out of order");
        next[p as usize] += 1;
    }
    assert_eq!(next, [20_000; 4]);
    for k in &mut kids {
        assert_eq!(k.0.join().unwrap(), 0);
    }
}

#[test]
fn maxsize_limits_and_timeouts() {
    let q = Queue::<String>::with_maxsize(2).unwrap();
    assert_eq!(q.maxsize(), 2);
    q.put("a".into()).unwrap();
    q.try_put("b".into()).unwrap();
    assert!(q.is_full());
    assert_eq!(q.len(), 2);
    let e = q.try_put("c".into()).unwrap_err();
    assert!(matches!(e.error, Error::Full));
    assert_eq!(e.into_inner(), "c");
    let t = Instant::now();
    let e = q
        .put_timeout("d".into(), Duration::from_millis(30))
        .unwrap_err();
    assert!(matches!(e.error, Error::Full));
    assert_eq!(e.into_inner(), "d");
    assert!(t.elapsed() >= Duration::from_millis(30));
    assert_eq!(q.get().unwrap(), "a");
    assert_eq!(q.try_get().unwrap(), "b");
    assert!(q.is_empty());
    assert!(matches!(q.try_get(), Err(Error::Empty)));
    let t = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(30)),
        Err(Error::Empty)
    ));
    assert!(t.elapsed() >= Duration::from_millis(30));
}

#[test]
fn a_producer_blocked_on_a_full_queue_goes_on_when_a_consumer_takes() {
    let q = Queue::<u32>::with_maxsize(1).unwrap();
    q.put(1).unwrap();
    let tx = q.sender();
    let blocked = procs_core::spawn(move || tx.put(2).is_ok()).unwrap();
    assert_eq!(q.get().unwrap(), 1);
    assert!(blocked.join().unwrap());
    assert_eq!(q.get().unwrap(), 2);
}

#[test]
fn a_producer_waiting_for_room_sees_the_last_consumer_go() {
    let q = Queue::<u32>::with_maxsize(1).unwrap();
    let tx = q.sender();
    let rx = q.receiver();
    drop(q);
    let (go_r, mut go_w) = std::io::pipe().unwrap();
    let mut consumer = start(move || {
        let _ = rx.get();
        let mut r = go_r;
        let _ = common::read_line(&mut r);
    });
    tx.put(1).unwrap();
    tx.put(2).unwrap(); // waits until the consumer takes 1
    std::io::Write::write_all(&mut go_w, b"go\n").unwrap();
    assert_eq!(consumer.0.join().unwrap(), 0);
    // Full (2 is in), and nobody left to take it.
    let e = tx.put(3).unwrap_err();
    assert!(matches!(e.error, Error::Disconnected), "{e:?}");
}

#[test]
fn items_larger_than_the_ring_are_refused_with_the_item() {
    let q = Queue::<Vec<u8>>::builder().capacity(4096).build().unwrap();
    let e = q.put(vec![0u8; 5000]).unwrap_err();
    assert!(
        matches!(e.error, Error::TooLarge { max: 4088, .. }),
        "{e:?}"
    );
    assert_eq!(e.item.len(), 5000);
    q.put(vec![1u8; 4000]).unwrap();
    assert_eq!(q.get().unwrap(), vec![1u8; 4000]);
    assert!(Queue::<u8>::builder().capacity(1000).build::<u8>().is_err());
}

#[test]
fn empty_items_and_simple_queues() {
    let q = SimpleQueue::<()>::new().unwrap();
    let c = q.clone();
    let mut child = start(move || {
        for _ in 0..3 {
            c.put(()).unwrap();
        }
    });
    for _ in 0..3 {
        q.get().unwrap();
    }
    assert_eq!(child.0.join().unwrap(), 0);
    assert!(q.is_empty());
    q.close();
    assert!(matches!(q.get(), Err(Error::Closed)));
}

#[test]
fn joinable_queue_join_waits_for_every_task() {
    let q = JoinableQueue::<u32>::new().unwrap();
    assert!(matches!(q.task_done(), Err(Error::TaskDoneTooMany)));
    let done = procs_sync::RawValue::new(0u32).unwrap();
    let mut workers: Vec<Reaper> = (0..2)
        .map(|_| {
            let (q, done) = (q.clone(), done.clone());
            start(move || {
                while let Ok(job) = q.get_timeout(Duration::from_secs(30)) {
                    done.atomic()
                        .fetch_add(job, std::sync::atomic::Ordering::SeqCst);
                    q.task_done().unwrap();
                }
            })
        })
        .collect();
    for job in 1..=100 {
        q.put(job).unwrap();
    }
    q.join_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(q.unfinished_tasks(), 0);
    // Every task was finished before join returned.
    assert_eq!(done.get(), 5050);
    q.put(1).unwrap();
    let e = JoinableQueue::<u32>::new().unwrap();
    e.put(1).unwrap();
    assert!(matches!(
        e.join_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    for w in &mut workers {
        w.0.kill().unwrap();
    }
}

#[test]
fn a_producer_killed_while_putting_leaves_only_whole_items() {
    // Items carry their own checksum; a producer is killed at some point of
    // its stream, and another producer goes on after it.
    let q = Queue::<Vec<u64>>::new().unwrap();
    let tx = q.sender();
    let mut victim = start(move || {
        for i in 0u64.. {
            let item: Vec<u64> = (0..1000).map(|k| mix(i * 1000 + k)).collect();
            tx.put(item).unwrap();
        }
    });
    let rx = q.receiver();
    // Let it run until some items are in, then kill it mid-stream.
    rx.get().unwrap();
    victim.0.kill().unwrap();
    victim.0.join().unwrap();
    let tx = q.sender();
    let mut survivor = start(move || tx.put(vec![7u64; 10]).unwrap());
    drop(q);
    let mut last = None;
    for item in rx.iter() {
        if item.len() == 10 {
            assert_eq!(item, vec![7u64; 10]);
            last = Some(());
            continue;
        }
        assert_eq!(item.len(), 1000, "a torn item");
        let base = (0u64..)
            .find(|i| mix(i * 1000) == item[0])
            .filter(|&i| i < 1_000_000)
            .expect("a known first value");
        for (k, v) in item.iter().enumerate() {
            assert_eq!(*v, mix(base * 1000 + k as u64), "a torn item");
        }
    }
    assert!(last.is_some(), "the survivor's item was lost");
    assert_eq!(survivor.0.join().unwrap(), 0);
}

#[test]
fn a_consumer_waiting_sees_a_killed_producer_within_bounds() {
    let q = Queue::<u32>::new().unwrap();
    let tx = q.sender();
    let mut p = start(move || {
        tx.put(1).unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    let rx = q.receiver();
    drop(q);
    assert_eq!(rx.get().unwrap(), 1);
    p.0.kill().unwrap();
    p.0.join().unwrap();
    let t = Instant::now();
    assert!(matches!(rx.get(), Err(Error::Disconnected)));
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_queue_handle_kept_by_the_consumer_keeps_it_waiting() {
    let q = Queue::<u32>::new().unwrap();
    // This process keeps a handle that can put: no Disconnected, a timeout.
    assert!(matches!(
        q.get_timeout(Duration::from_millis(30)),
        Err(Error::Empty)
    ));
    let rx = q.receiver();
    drop(q);
    assert!(matches!(rx.get(), Err(Error::Disconnected)));
}

#[test]
fn joinable_workers_end_when_the_producers_are_gone() {
    let q = JoinableQueue::<u32>::new().unwrap();
    let jobs = q.receiver();
    let mut worker = start(move || {
        while let Ok(_job) = jobs.get() {
            jobs.task_done().unwrap();
        }
    });
    for job in 0..50 {
        q.put(job).unwrap();
    }
    q.join().unwrap();
    let rx = q.receiver();
    assert!(matches!(rx.put(1), Err(e) if matches!(e.error, Error::Invalid(_))));
    assert!(matches!(
        q.sender().get_timeout(Duration::ZERO),
        Err(Error::Invalid(_))
    ));
    drop((q, rx));
    assert_eq!(worker.0.join().unwrap(), 0);
}
