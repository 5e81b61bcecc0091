//! The procs benchmark: one JSON line per case on stdout, in the vocabulary
//! of `shared/bench/CASES.md`, for `compare.py` to set beside CPython's
//! multiprocessing, Open MPI and this machine's limits.
//!
//! ```text
//! cargo run --release -p procs-bench                 # every case
//! cargo run --release -p procs-bench -- spawn_join   # some cases
//! cargo run --release -p procs-bench -- --list       # the cases
//! ```
//!
//! With the `openmpi` feature, the `mpi_` cases also run over procs-mpi's
//! MPI backend, as a job of two ranks that mpirun starts (suite
//! `procs-openmpi`, rank 0 prints), to set beside Open MPI in C:
//!
//! ```text
//! cargo build --release -p procs-bench --features openmpi
//! mpirun -n 2 target/release/procs-bench --backend openmpi mpi_pingpong_buf
//! ```
//!
//! Only the JSON lines go to stdout; notes go to stderr.

#![deny(unsafe_op_in_unsafe_fn)]

use std::process::ExitCode;
use std::time::Instant;

use procs_core::Process;
use procs_sync::{Barrier, Lock, RawValue};

/// How a case reports: value, unit, and whether lower is better.
struct Figure {
    value: f64,
    unit: &'static str,
    better: &'static str,
}

type Case = fn() -> Result<Figure, String>;

/// Every case this binary measures, in the order of CASES.md.
const CASES: &[(&str, Case)] = &[
    ("spawn_join", spawn_join),
    ("lock_uncontended", lock_uncontended),
    ("lock_contended", lock_contended),
    ("barrier_wait", barrier_wait),
    ("pipe_pingpong", pipe_pingpong),
    ("pipe_bandwidth_1mib", pipe_bandwidth_1mib),
    ("queue_throughput", queue_throughput),
    ("queue_mpmc", queue_mpmc),
    ("pool_map", pool_map),
    ("pool_apply_async", pool_apply_async),
    ("manager_dict_rtt", manager_dict_rtt),
    ("mpi_pingpong_obj", mpi_pingpong_obj),
    ("mpi_pingpong_buf", mpi_pingpong_buf),
    ("mpi_bandwidth_1mib", mpi_bandwidth_1mib),
    ("mpi_bcast_obj", mpi_bcast_obj),
    ("mpi_allreduce_obj", mpi_allreduce_obj),
    ("mpi_allreduce_buf", mpi_allreduce_buf),
    ("mpi_barrier", mpi_barrier),
    ("mpi_scatter_obj", mpi_scatter_obj),
    ("mpi_gather_obj", mpi_gather_obj),
    ("mpi_alltoall_obj", mpi_alltoall_obj),
    ("mpi_allreduce_1mib", mpi_allreduce_1mib),
];

/// Cases of CASES.md that later parts of procs will measure.
const PLANNED: &[&str] = &[];

/// Start and join, one after another, 300 processes that run an empty function.
fn spawn_join() -> Result<Figure, String> {
    let run = |n: usize| -> Result<(), String> {
        for _ in 0..n {
            let mut p = Process::new(|| {});
            p.start().map_err(|e| e.to_string())?;
            let code = p.join().map_err(|e| e.to_string())?;
            if code != 0 {
                return Err(format!("child exited with {code}"));
            }
        }
        Ok(())
    };
    run(10)?;
    let n = 300;
    let t = Instant::now();
    run(n)?;
    let fork = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    // The spawn start method: a fresh execution of this binary per child;
    // the forkserver: one exec for the server (before timing), then a fork
    // of the server a child.
    for (method, m) in [
        (procs_core::StartMethod::Spawn, 50),
        (procs_core::StartMethod::Forkserver, 300),
    ] {
        fn empty(_: ()) {}
        let builder = procs_core::Process::builder().start_method(method);
        let one = || -> Result<(), String> {
            builder
                .clone()
                .spawn_fn(empty, ())
                .map_err(err)?
                .join()
                .map_err(err)
        };
        one()?;
        let t = Instant::now();
        for _ in 0..m {
            one()?;
        }
        eprintln!(
            "# spawn_join with the {} start method: {:.0} us",
            method.name(),
            t.elapsed().as_secs_f64() / m as f64 * 1e6
        );
    }
    Ok(Figure {
        value: fork,
        unit: "us",
        better: "lower",
    })
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Starts `f` in a child process.
fn child(f: impl FnOnce() + Send + 'static) -> Result<Process, String> {
    let mut p = Process::new(f);
    p.start().map_err(err)?;
    Ok(p)
}

/// Pins the calling thread to `cpu` (when this machine has it); returns
/// the mask it had, for [`unpin`].
///
/// mpirun binds each of its ranks to a core of its own, so the cases set
/// beside Open MPI's (`pipe_pingpong`, `pipe_bandwidth_1mib`,
/// `barrier_wait`, and the `mpi_` cases) run their two processes the same
/// way: the parent (or rank 0) on CPU 0, the child (or rank 1) on CPU 1. Unpinned, two processes that the scheduler puts
/// on one CPU take turns instead of running at once.
fn pin(cpu: usize) -> Option<libc::cpu_set_t> {
    // SAFETY: sysconf has no preconditions; cpu_set_t is plain data (all
    // zeroes is the empty set); the calls get and set the calling thread's
    // mask (pid 0) with the set's true size.
    unsafe {
        // The machine's CPUs, not this thread's mask (which a pinned parent
        // passed on).
        if libc::sysconf(libc::_SC_NPROCESSORS_ONLN) <= cpu as libc::c_long {
            return None;
        }
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) != 0 {
            return None;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        Some(old)
    }
}

/// Gives the calling thread back the mask [`pin`] returned.
fn unpin(old: Option<libc::cpu_set_t>) {
    if let Some(old) = old {
        // SAFETY: as in `pin`: the calling thread's mask, a valid set.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &old) };
    }
}

/// Joins `p` and checks that it ended well.
fn join_ok(p: &mut Process) -> Result<(), String> {
    match p.join().map_err(err)? {
        0 => Ok(()),
        code => Err(format!("child exited with {code}")),
    }
}

/// 1,000,000 acquire + release of a process-shared lock in one process.
fn lock_uncontended() -> Result<Figure, String> {
    let lock = Lock::new().map_err(err)?;
    let n = 1_000_000;
    for _ in 0..1000 {
        drop(lock.lock().map_err(err)?);
    }
    let t = Instant::now();
    for _ in 0..n {
        // The guard as a user holds it, in registers: the atomics cannot be
        // optimized away, and the floor (`limits` atomic_lock_pair) and
        // Python's `with lock: pass` keep nothing in memory either. (A
        // black_box around the guard stored it on the stack between the two
        // locked instructions, which then waited for those stores.)
        drop(lock.lock().map_err(err)?);
    }
    Ok(Figure {
        value: t.elapsed().as_secs_f64() / n as f64 * 1e9,
        unit: "ns",
        better: "lower",
    })
}

/// Two processes each increment a shared 64-bit counter 100,000 times under
/// the lock; the counter must end at 200,000. Timed from the first start to
/// the last join, as the Python peer does.
fn lock_contended() -> Result<Figure, String> {
    let n = 100_000u64;
    let lock = Lock::new().map_err(err)?;
    let counter = RawValue::new(0u64).map_err(err)?;
    let t = Instant::now();
    let mut kids = (0..2)
        .map(|_| {
            let (lock, counter) = (lock.clone(), counter.clone());
            child(move || {
                for _ in 0..n {
                    let _g = lock.lock().unwrap_or_else(|died| died.into_inner());
                    counter.set(counter.get() + 1);
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for k in &mut kids {
        join_ok(k)?;
    }
    let dt = t.elapsed().as_secs_f64();
    if counter.get() != 2 * n {
        return Err(format!("counter ended at {}, not {}", counter.get(), 2 * n));
    }
    Ok(Figure {
        value: (2 * n) as f64 / dt,
        unit: "ops/s",
        better: "higher",
    })
}

/// Two processes pass a two-party barrier 5,000 times.
fn barrier_wait() -> Result<Figure, String> {
    let n = 5000;
    let barrier = Barrier::new(2).map_err(err)?;
    let b = barrier.clone();
    let mask = pin(0);
    let mut other = child(move || {
        pin(1);
        for _ in 0..n {
            if b.wait().is_err() {
                std::process::exit(2);
            }
        }
    })?;
    let t = Instant::now();
    for _ in 0..n {
        barrier.wait().map_err(err)?;
    }
    let dt = t.elapsed().as_secs_f64();
    unpin(mask);
    join_ok(&mut other)?;
    Ok(Figure {
        value: dt / n as f64 * 1e6,
        unit: "us",
        better: "lower",
    })
}

/// 20,000 round trips of one small integer over a duplex pipe between two
/// processes, after 100 warm-up trips.
fn pipe_pingpong() -> Result<Figure, String> {
    let n = 20_000u64;
    let (a, b) = procs_ipc::pipe::<u64>().map_err(err)?;
    let mask = pin(0);
    let mut echo = child(move || {
        pin(1);
        for _ in 0..n + 100 {
            match b.recv() {
                Ok(x) => {
                    if b.send(&x).is_err() {
                        std::process::exit(2);
                    }
                }
                Err(_) => std::process::exit(3),
            }
        }
    })?;
    for i in 0..100 {
        a.send(&i).map_err(err)?;
        a.recv().map_err(err)?;
    }
    let t = Instant::now();
    for i in 0..n {
        a.send(&i).map_err(err)?;
        if a.recv().map_err(err)? != i {
            return Err("the echo differs".into());
        }
    }
    let dt = t.elapsed().as_secs_f64();
    unpin(mask);
    join_ok(&mut echo)?;
    Ok(Figure {
        value: dt / n as f64 * 1e6,
        unit: "us",
        better: "lower",
    })
}

/// One process streams 1,000 messages of 1 MiB through a pipe to another,
/// which acknowledges once at the end.
fn pipe_bandwidth_1mib() -> Result<Figure, String> {
    let (n, size) = (1000, 1 << 20);
    let (a, b) = procs_ipc::pipe::<u8>().map_err(err)?;
    let mask = pin(0);
    let mut sink = child(move || {
        pin(1);
        let mut buf = vec![0u8; size];
        for _ in 0..n {
            if b.recv_bytes_into(&mut buf).is_err() {
                std::process::exit(2);
            }
        }
        if b.send(&0).is_err() {
            std::process::exit(3);
        }
    })?;
    let msg = vec![b'x'; size];
    let t = Instant::now();
    for _ in 0..n {
        a.send_bytes(&msg).map_err(err)?;
    }
    a.recv().map_err(err)?;
    let dt = t.elapsed().as_secs_f64();
    unpin(mask);
    join_ok(&mut sink)?;
    Ok(Figure {
        value: (n * size) as f64 / dt / 1e6,
        unit: "MB/s",
        better: "higher",
    })
}

/// One process puts 200,000 small integers on a queue, another gets them
/// all; timed from the first put to the consumer's exit.
fn queue_throughput() -> Result<Figure, String> {
    let n = 200_000u64;
    let q = procs_ipc::Queue::<u64>::new().map_err(err)?;
    let rx = q.receiver();
    let mut consumer = child(move || {
        for _ in 0..n {
            if rx.get().is_err() {
                std::process::exit(2);
            }
        }
    })?;
    let t = Instant::now();
    for i in 0..n {
        q.put(i).map_err(err)?;
    }
    join_ok(&mut consumer)?;
    Ok(Figure {
        value: n as f64 / t.elapsed().as_secs_f64(),
        unit: "items/s",
        better: "higher",
    })
}

/// 10,000 x (set one key, get one key) on a dictionary held by a manager
/// process, from the process that started it; microseconds per operation.
/// On stderr: the same over TCP to 127.0.0.1 (the way of clients outside
/// the manager's process tree).
fn manager_dict_rtt() -> Result<Figure, String> {
    let run = |builder: procs_manager::ManagerBuilder| -> Result<f64, String> {
        let m = builder.start().map_err(err)?;
        let d = m.dict::<u64, u64>().map_err(err)?;
        let n = 10_000u64;
        let t = Instant::now();
        for i in 0..n {
            d.insert(i % 64, i).map_err(err)?;
            if d.get(&(i % 64)).map_err(err)? != Some(i) {
                return Err("a get saw another value than the set before it".into());
            }
        }
        Ok(t.elapsed().as_secs_f64() / (2 * n) as f64 * 1e6)
    };
    let ring = run(procs_manager::Manager::builder())?;
    let mut socket_only = procs_manager::Limits::default();
    socket_only.ring_connections = 0;
    let tcp = procs_manager::Manager::builder()
        .address(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .limits(socket_only);
    eprintln!(
        "# manager_dict_rtt over TCP (127.0.0.1): {:.2} us",
        run(tcp)?
    );
    Ok(Figure {
        value: ring,
        unit: "us",
        better: "lower",
    })
}

/// Two producers put 0..200,000 between them, two consumers sum what they
/// get (until a `None` each); the sums must add up.
fn queue_mpmc() -> Result<Figure, String> {
    let (n, k) = (200_000u64, 2u64);
    let q = procs_ipc::Queue::<Option<u64>>::new().map_err(err)?;
    let out = procs_ipc::Queue::<u64>::new().map_err(err)?;
    let t = Instant::now();
    let mut consumers = (0..k)
        .map(|_| {
            let (rx, out) = (q.receiver(), out.sender());
            child(move || {
                let mut total = 0u64;
                while let Ok(Some(x)) = rx.get() {
                    total += x;
                }
                if out.put(total).is_err() {
                    std::process::exit(2);
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut producers = (0..k)
        .map(|j| {
            let tx = q.sender();
            child(move || {
                for i in j * n / k..(j + 1) * n / k {
                    if tx.put(Some(i)).is_err() {
                        std::process::exit(2);
                    }
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for p in &mut producers {
        join_ok(p)?;
    }
    for _ in 0..k {
        q.put(None).map_err(err)?;
    }
    let mut total = 0;
    for _ in 0..k {
        total += out.get().map_err(err)?;
    }
    for c in &mut consumers {
        join_ok(c)?;
    }
    let dt = t.elapsed().as_secs_f64();
    if total != n * (n - 1) / 2 {
        return Err(format!(
            "the sums add up to {total}, not {}",
            n * (n - 1) / 2
        ));
    }
    Ok(Figure {
        value: n as f64 / dt,
        unit: "items/s",
        better: "higher",
    })
}

fn square(x: u64) -> u64 {
    x * x
}

/// A pool of 2 maps `x -> x*x` over 0..200,000 after a warm-up map of
/// 1,000; the results are checked. Then, on stderr, the scaling of a
/// CPU-bound map from 1 worker to 2.
fn pool_map() -> Result<Figure, String> {
    let n = 200_000u64;
    let pool = procs_pool::Pool::new(2).map_err(err)?;
    pool.map(square, 0..1000).map_err(err)?;
    let t = Instant::now();
    let out = pool.map(square, 0..n).map_err(err)?;
    let dt = t.elapsed().as_secs_f64();
    if out.len() != n as usize || out.iter().enumerate().any(|(i, &v)| v != (i * i) as u64) {
        return Err("wrong results".into());
    }
    drop(pool);
    pool_scaling()?;
    Ok(Figure {
        value: dt / n as f64 * 1e6,
        unit: "us/task",
        better: "lower",
    })
}

/// About a millisecond of arithmetic.
fn burn(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..400_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// Not a goal row: how a CPU-bound map speeds up from 1 worker to 2.
fn pool_scaling() -> Result<(), String> {
    let time = |workers: usize| -> Result<f64, String> {
        let pool = procs_pool::Pool::new(workers).map_err(err)?;
        pool.map(burn, 0..4).map_err(err)?;
        let t = Instant::now();
        let out = pool.map_with_chunksize(burn, 0..64, 1).map_err(err)?;
        let dt = t.elapsed().as_secs_f64();
        if out.iter().zip(0..).any(|(&v, i)| v != burn(i)) {
            return Err("wrong results".into());
        }
        Ok(dt)
    };
    let (one, two) = (time(1)?, time(2)?);
    eprintln!(
        "# pool scaling: a CPU-bound map of 64 tasks takes {:.1} ms on 1 worker, {:.1} ms on 2: {:.2}x ({} cores here)",
        one * 1e3,
        two * 1e3,
        one / two,
        procs_core::cpu_count()
    );
    Ok(())
}

/// 10,000 applies of `x -> x*x` on a pool of 2, then every result got.
fn pool_apply_async() -> Result<Figure, String> {
    let n = 10_000u64;
    let pool = procs_pool::Pool::new(2).map_err(err)?;
    pool.apply(square, 3).map_err(err)?;
    let t = Instant::now();
    let rs = (0..n)
        .map(|i| pool.apply_async(square, i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    let out = rs
        .into_iter()
        .map(|r| r.get())
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    let dt = t.elapsed().as_secs_f64();
    if out.iter().zip(0..).any(|(&v, i)| v != i * i) {
        return Err("wrong results".into());
    }
    Ok(Figure {
        value: dt / n as f64 * 1e6,
        unit: "us/task",
        better: "lower",
    })
}

thread_local! {
    /// The world of `--backend openmpi`: this process is one rank of the
    /// job mpirun started.
    static MPI_WORLD: std::cell::RefCell<Option<procs_mpi::World>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `rank` on two MPI ranks, rank 0 on CPU 0 and rank 1 on CPU 1 (as
/// mpirun binds them), and returns rank 0's figure; rank 1's errors count.
/// Under `--backend openmpi` this process is one of the two (mpirun binds
/// them), and returns its own figure.
fn mpi_two(
    rank: impl Fn(&procs_mpi::World) -> Result<f64, String> + Send + Sync + 'static,
) -> Result<f64, String> {
    use procs_mpi::Communicator;
    if let Some(r) = MPI_WORLD.with(|w| w.borrow().as_ref().map(&rank)) {
        return r;
    }
    let out = procs_mpi::run(2, move |world| {
        pin(world.rank() as usize);
        rank(world)
    })
    .map_err(err)?;
    let mut values = Vec::with_capacity(2);
    for (r, v) in out.into_iter().enumerate() {
        values.push(v.map_err(|e| format!("rank {r}: {e}"))?);
    }
    Ok(values[0])
}

use procs_mpi::Communicator as _;

/// The peers' barrier before a timed loop.
fn barrier2(world: &procs_mpi::World) -> Result<(), String> {
    world.barrier().map_err(err)
}

/// Two ranks, `n` calls of `call` after a barrier (as the peers time
/// them); us per call on rank 0.
fn mpi_collective(
    n: u32,
    call: impl Fn(&procs_mpi::World) -> Result<(), String> + Send + Sync + 'static,
) -> Result<Figure, String> {
    let us = mpi_two(move |world| {
        barrier2(world)?;
        let t = Instant::now();
        for _ in 0..n {
            call(world)?;
        }
        Ok(t.elapsed().as_secs_f64() / f64::from(n) * 1e6)
    })?;
    Ok(Figure {
        value: us,
        unit: "us",
        better: "lower",
    })
}

fn expect<T: PartialEq + std::fmt::Debug>(got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("got {got:?}, expected {want:?}"))
    }
}

/// Broadcast of the integer 42 from rank 0, as an object.
fn mpi_bcast_obj() -> Result<Figure, String> {
    mpi_collective(20_000, |w| {
        let v = (w.rank() == 0).then_some(42i64);
        expect(w.bcast(v.as_ref(), 0).map_err(err)?, 42)
    })
}

/// Allreduce (sum) of each rank's number, as an object.
fn mpi_allreduce_obj() -> Result<Figure, String> {
    use procs_mpi::Op;
    mpi_collective(20_000, |w| {
        expect(w.allreduce(&i64::from(w.rank()), Op::SUM).map_err(err)?, 1)
    })
}

/// Allreduce (sum) of one f64, as a buffer.
fn mpi_allreduce_buf() -> Result<Figure, String> {
    use procs_mpi::Op;
    mpi_collective(50_000, |w| {
        let mut b = [0.0f64];
        w.allreduce_buf(&[1.0f64], &mut b, Op::SUM).map_err(err)?;
        expect(b[0], 2.0)
    })
}

fn mpi_barrier() -> Result<Figure, String> {
    mpi_collective(50_000, |w| w.barrier().map_err(err))
}

/// Scatter of `[0, 1]` from rank 0, as objects.
fn mpi_scatter_obj() -> Result<Figure, String> {
    mpi_collective(20_000, |w| {
        let list = [0i64, 1];
        let from = (w.rank() == 0).then_some(&list[..]);
        expect(w.scatter(from, 0).map_err(err)?, i64::from(w.rank()))
    })
}

/// Gather of each rank's number at rank 0, as objects.
fn mpi_gather_obj() -> Result<Figure, String> {
    mpi_collective(20_000, |w| {
        let got = w.gather(&i64::from(w.rank()), 0).map_err(err)?;
        expect(got, (w.rank() == 0).then(|| vec![0i64, 1]))
    })
}

/// Alltoall of `[0, 1]` on each rank, as objects.
fn mpi_alltoall_obj() -> Result<Figure, String> {
    mpi_collective(20_000, |w| {
        let r = i64::from(w.rank());
        expect(w.alltoall(&[0i64, 1]).map_err(err)?, vec![r, r])
    })
}

/// Allreduce (sum) of 131,072 f64 (1 MiB), as buffers. Also prints, on
/// stderr, the same at 2, 4 and 8 ranks (unpinned: more ranks than cores
/// here), beside Open MPI at the same counts when mpicc and mpirun are
/// installed, so that the growth with the rank count shows.
fn mpi_allreduce_1mib() -> Result<Figure, String> {
    use procs_mpi::Op;
    let k = 1 << 17;
    // Over the MPI backend the figure is the trait's overhead over the same
    // MPI call in C, so the input is the C peer's: a zeroed allocation
    // never written (calloc: every page the shared zero page, read from
    // cache). Over shared memory, the input is written memory.
    let over_mpi = MPI_WORLD.with(|w| w.borrow().is_some());
    let (x, want) = if over_mpi { (0.0, 0.0) } else { (1.0, 2.0) };
    let a = vec![x; k];
    // One result buffer for every call, as the peers have.
    let out = std::sync::Mutex::new(vec![0.0f64; k]);
    let fig = mpi_collective(200, move |w| {
        let mut out = out.lock().map_err(err)?;
        w.allreduce_buf(&a, &mut out, Op::SUM).map_err(err)?;
        expect((out[0], out[k - 1]), (want, want))
    })?;
    if over_mpi {
        // A job of mpirun's two ranks: no jobs of other sizes from here.
        return Ok(fig);
    }
    let openmpi = OpenMpiAllreduce::build();
    for n in [2usize, 4, 8] {
        let ours = allreduce_1mib_at(n)?;
        let theirs = match &openmpi {
            Some(o) => match o.run(n) {
                Ok(us) => format!("Open MPI {us:.1} us, speedup {:.2}x", us / ours),
                Err(e) => format!("Open MPI failed: {e}"),
            },
            None => "Open MPI: mpicc or mpirun not installed".to_owned(),
        };
        eprintln!("# mpi_allreduce_1mib at {n} ranks: procs {ours:.1} us, {theirs}");
    }
    Ok(fig)
}

/// Us per allreduce of 1 MiB of f64 on `n` unpinned ranks (rank 0's).
fn allreduce_1mib_at(n: usize) -> Result<f64, String> {
    use procs_mpi::Op;
    let k = 1 << 17;
    let calls = 50u32;
    let out = procs_mpi::run(n, move |w| {
        let a = vec![1.0f64; k];
        let mut b = vec![0.0f64; k];
        w.barrier().map_err(err)?;
        let t = Instant::now();
        for _ in 0..calls {
            w.allreduce_buf(&a, &mut b, Op::SUM).map_err(err)?;
        }
        let us = t.elapsed().as_secs_f64() / f64::from(calls) * 1e6;
        expect(b[k - 1], w.size() as f64)?;
        Ok::<f64, String>(us)
    })
    .map_err(err)?;
    out.into_iter().next().unwrap_or(Err("no ranks".into()))
}

/// The same loop in C against Open MPI, built in a temporary directory.
struct OpenMpiAllreduce {
    dir: std::path::PathBuf,
}

const ALLREDUCE_C: &str = r#"#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, n = 50, k = 1 << 17;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    double *a = calloc(k, sizeof(double)), *b = calloc(k, sizeof(double));
    MPI_Barrier(MPI_COMM_WORLD);
    double t = MPI_Wtime();
    for (int i = 0; i < n; i++) MPI_Allreduce(a, b, k, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) printf("%f\n", (MPI_Wtime() - t) / n * 1e6);
    MPI_Finalize();
    return 0;
}
"#;

impl OpenMpiAllreduce {
    fn build() -> Option<OpenMpiAllreduce> {
        let dir = std::env::temp_dir().join(format!("procs-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let me = OpenMpiAllreduce { dir };
        let src = me.dir.join("allreduce.c");
        std::fs::write(&src, ALLREDUCE_C).ok()?;
        let built = std::process::Command::new("mpicc")
            .arg("-O2")
            .arg(&src)
            .arg("-o")
            .arg(me.dir.join("allreduce"))
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        built.then_some(me)
    }

    fn run(&self, n: usize) -> Result<f64, String> {
        let out = std::process::Command::new("mpirun")
            .args(["--allow-run-as-root", "--oversubscribe", "-n"])
            .arg(n.to_string())
            .arg(self.dir.join("allreduce"))
            .stderr(std::process::Stdio::null())
            .output()
            .map_err(err)?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse::<f64>()
            .map_err(|_| format!("mpirun printed {text:?}"))
    }
}

impl Drop for OpenMpiAllreduce {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Two ranks, 20,000 round trips of a small object (the integer 7, as the
/// mpi4py peer sends), after a barrier, as the peer does; us per round trip.
fn mpi_pingpong_obj() -> Result<Figure, String> {
    use procs_mpi::{Communicator, CommunicatorExt};
    let n = 20_000;
    let us = mpi_two(move |world| {
        let obj: i64 = 7;
        barrier2(world)?;
        let t = Instant::now();
        for _ in 0..n {
            let got: i64 = if world.rank() == 0 {
                world.send(&obj, 1, 0).map_err(err)?;
                world.recv(1, 0).map_err(err)?
            } else {
                let got = world.recv(0, 0).map_err(err)?;
                world.send(&obj, 0, 0).map_err(err)?;
                got
            };
            if got != obj {
                return Err(format!("received {got}, not {obj}"));
            }
        }
        Ok(t.elapsed().as_secs_f64() / f64::from(n) * 1e6)
    })?;
    Ok(Figure {
        value: us,
        unit: "us",
        better: "lower",
    })
}

/// Two ranks, 50,000 round trips of an 8-byte buffer (as many as the
/// openmpi-c peer), after a barrier; us per round trip.
fn mpi_pingpong_buf() -> Result<Figure, String> {
    use procs_mpi::{Communicator, CommunicatorExt};
    let n = 50_000;
    let us = mpi_two(move |world| {
        let mut buf = [0u8; 8];
        barrier2(world)?;
        let t = Instant::now();
        for _ in 0..n {
            if world.rank() == 0 {
                world.send_buf(&buf, 1, 0).map_err(err)?;
                world.recv_buf(&mut buf, 1, 0).map_err(err)?;
            } else {
                world.recv_buf(&mut buf, 0, 0).map_err(err)?;
                world.send_buf(&buf, 0, 0).map_err(err)?;
            }
        }
        Ok(t.elapsed().as_secs_f64() / f64::from(n) * 1e6)
    })?;
    Ok(Figure {
        value: us,
        unit: "us",
        better: "lower",
    })
}

/// Two ranks, 500 buffers of 1 MiB from rank 0 to rank 1, between two
/// barriers, as the openmpi-c peer does; MB/s (10^6 bytes) of the 500 MiB
/// over the time from the first barrier to the last. Rank 1 checks the
/// first and last byte of each buffer (rank 0 numbers them).
fn mpi_bandwidth_1mib() -> Result<Figure, String> {
    use procs_mpi::{Communicator, CommunicatorExt};
    let (n, size) = (500usize, 1usize << 20);
    let mbs = mpi_two(move |world| {
        let mut buf = vec![0u8; size];
        barrier2(world)?;
        let t = Instant::now();
        for i in 0..n {
            let (first, last) = (i as u8, !(i as u8));
            if world.rank() == 0 {
                buf[0] = first;
                buf[size - 1] = last;
                world.send_buf(&buf, 1, 0).map_err(err)?;
            } else {
                let st = world.recv_buf(&mut buf, 0, 0).map_err(err)?;
                if st.count::<u8>() != size || buf[0] != first || buf[size - 1] != last {
                    return Err(format!(
                        "buffer {i}: {} bytes, first {} and last {} (expected {size}, {first}, {last})",
                        st.count::<u8>(),
                        buf[0],
                        buf[size - 1]
                    ));
                }
            }
        }
        barrier2(world)?;
        Ok((n * size) as f64 / t.elapsed().as_secs_f64() / 1e6)
    })?;
    Ok(Figure {
        value: mbs,
        unit: "MB/s",
        better: "higher",
    })
}

fn main() -> ExitCode {
    // A child of the spawn start method runs its function here and ends.
    procs_core::init();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut suite = "procs";
    let mut printing = true;
    if let Some(i) = args.iter().position(|a| a == "--backend") {
        let backend = args.get(i + 1).cloned().unwrap_or_default();
        args.drain(i..(i + 2).min(args.len()));
        match open_mpi_world(&backend) {
            Ok(rank) => {
                suite = "procs-openmpi";
                printing = rank == 0;
                // Only the cases of two ranks run over MPI.
                if args.is_empty() {
                    args = CASES
                        .iter()
                        .filter(|(n, _)| n.starts_with("mpi_"))
                        .map(|(n, _)| n.to_string())
                        .collect();
                }
                if let Some(a) = args.iter().find(|a| !a.starts_with("mpi_")) {
                    eprintln!("# {a}: only the mpi_ cases run with --backend {backend}");
                    return ExitCode::from(2);
                }
            }
            Err(e) => {
                eprintln!("# --backend {backend}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if args.iter().any(|a| a == "--list") {
        for (name, _) in CASES {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    let mut status = ExitCode::SUCCESS;
    for arg in &args {
        if !CASES.iter().any(|(n, _)| n == arg) {
            if PLANNED.contains(&arg.as_str()) {
                eprintln!("# {arg}: not measured yet");
            } else {
                eprintln!("# {arg}: no such case (--list shows them)");
                status = ExitCode::from(2);
            }
        }
    }
    for (name, case) in CASES {
        if !args.is_empty() && !args.iter().any(|a| a == name) {
            continue;
        }
        match case() {
            Ok(f) if printing => println!(
                "{{\"suite\": \"{suite}\", \"case\": \"{name}\", \"value\": {:.4}, \"unit\": \"{}\", \"better\": \"{}\"}}",
                f.value, f.unit, f.better
            ),
            Ok(_) => {}
            Err(e) => {
                eprintln!("# {name} failed: {e}");
                status = ExitCode::FAILURE;
            }
        }
    }
    // The MPI world ends (MPI finalized) before the process does.
    drop(MPI_WORLD.with(|w| w.borrow_mut().take()));
    status
}

/// Joins the MPI job this process is a rank of (`--backend openmpi`);
/// this rank.
fn open_mpi_world(backend: &str) -> Result<i32, String> {
    use procs_mpi::{Backend, Communicator, Config};
    if backend != "openmpi" {
        return Err("the backends are openmpi (and the default, shared memory)".into());
    }
    let world = procs_mpi::init_with(&Config::new().backend(Some(Backend::Mpi))).map_err(err)?;
    if world.size() != 2 {
        return Err(format!(
            "a job of {} ranks: run it as mpirun -n 2 procs-bench --backend openmpi",
            world.size()
        ));
    }
    let rank = world.rank();
    MPI_WORLD.with(|w| *w.borrow_mut() = Some(world));
    Ok(rank)
}
