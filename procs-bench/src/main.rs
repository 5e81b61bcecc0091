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
//! Only the JSON lines go to stdout; notes go to stderr.

use std::process::ExitCode;
use std::time::Instant;

use procs_core::Process;

/// How a case reports: value, unit, and whether lower is better.
struct Figure {
    value: f64,
    unit: &'static str,
    better: &'static str,
}

type Case = fn() -> Result<Figure, String>;

/// Every case this binary measures, in the order of CASES.md.
const CASES: &[(&str, Case)] = &[("spawn_join", spawn_join)];

/// Cases of CASES.md that later parts of procs will measure.
const PLANNED: &[&str] = &[
    "pipe_pingpong",
    "pipe_bandwidth_1mib",
    "queue_throughput",
    "queue_mpmc",
    "lock_uncontended",
    "lock_contended",
    "barrier_wait",
    "pool_map",
    "pool_apply_async",
    "manager_dict_rtt",
    "mpi_pingpong_obj",
    "mpi_pingpong_buf",
    "mpi_bandwidth_1mib",
    "mpi_bcast_obj",
    "mpi_allreduce_obj",
    "mpi_allreduce_buf",
    "mpi_barrier",
    "mpi_scatter_obj",
    "mpi_gather_obj",
    "mpi_alltoall_obj",
    "mpi_allreduce_1mib",
];

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
    Ok(Figure {
        value: t.elapsed().as_secs_f64() / n as f64 * 1e6,
        unit: "us",
        better: "lower",
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
            Ok(f) => println!(
                "{{\"suite\": \"procs\", \"case\": \"{name}\", \"value\": {:.4}, \"unit\": \"{}\", \"better\": \"{}\"}}",
                f.value, f.unit, f.better
            ),
            Err(e) => {
                eprintln!("# {name} failed: {e}");
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}
