//! procsrun: starts N ranks of a program in one job on this machine, as
//! mpirun does.
//!
//! ```text
//! procsrun -n N [--prefix] [--timeout SECS] PROGRAM [ARGS...]
//! ```
//!
//! Each rank gets `PROCS_RANK`, `PROCS_SIZE` and the job segment's
//! descriptor in `PROCS_MPI_FD`; `procs_mpi::init()` reads them. Rank 0
//! reads procsrun's stdin, the others read nothing. With `--prefix`, every
//! line a rank writes is prefixed with `[R] `. When a rank fails (a non-zero
//! exit, a signal, an abort), procsrun says which and how, stops the
//! others, and exits with the worst status of the ranks that failed (128 +
//! N for signal N); on SIGINT or SIGTERM it stops every rank. After
//! `--timeout SECS` it stops every rank and exits with 124. The segment is
//! a memfd: nothing is left in /dev/shm.

#![deny(unsafe_op_in_unsafe_fn)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use procs_mpi::{ENV_FD, ENV_RANK, ENV_SIZE};

const USAGE: &str = "usage: procsrun -n N [--prefix] [--timeout SECS] PROGRAM [ARGS...]";
/// How long a rank asked to stop (SIGTERM) has before it is killed.
const GRACE: Duration = Duration::from_millis(1000);

struct Options {
    n: usize,
    prefix: bool,
    timeout: Option<Duration>,
    program: String,
    args: Vec<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut n = None;
    let mut prefix = false;
    let mut timeout = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "-n" | "-np" | "--np" => {
                let v = args.next().ok_or("-n needs a number of ranks")?;
                n = Some(
                    v.parse::<usize>()
                        .map_err(|_| format!("-n {v}: not a number"))?,
                );
            }
            "--prefix" | "--tag-output" => prefix = true,
            "--timeout" => {
                let v = args.next().ok_or("--timeout needs seconds")?;
                let s: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or(format!("--timeout {v}: not a positive number of seconds"))?;
                timeout = Some(Duration::from_secs_f64(s));
            }
            "-h" | "--help" => return Err(String::new()),
            "--" => {
                let program = args.next().ok_or("no program to run")?;
                return finish(n, prefix, timeout, program, args.collect());
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => return finish(n, prefix, timeout, a, args.collect()),
        }
    }
    Err("no program to run".into())
}

fn finish(
    n: Option<usize>,
    prefix: bool,
    timeout: Option<Duration>,
    program: String,
    args: Vec<String>,
) -> Result<Options, String> {
    let n = n.unwrap_or(1);
    if n == 0 || n > procs_mpi::MAX_RANKS {
        return Err(format!(
            "-n {n}: a job has 1 to {} ranks",
            procs_mpi::MAX_RANKS
        ));
    }
    Ok(Options {
        n,
        prefix,
        timeout,
        program,
        args,
    })
}

/// The write end of the pipe the signal handler writes to.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    let b = sig as u8;
    // SAFETY: write(2) is async-signal-safe; `b` is a valid byte for the
    // call; a full pipe just drops the byte (the descriptor is nonblocking).
    unsafe {
        libc::write(fd, (&b as *const u8).cast(), 1);
    }
}

/// A pipe whose read end becomes readable when SIGINT or SIGTERM arrives.
fn signal_pipe() -> std::io::Result<OwnedFd> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these two descriptors, owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    SIGNAL_PIPE.store(write.as_raw_fd(), Ordering::Relaxed);
    // The write end lives as long as the process.
    std::mem::forget(write);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a handler that only calls an
        // async-signal-safe function is a valid disposition.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    Ok(read)
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    // SAFETY: a non-negative result is a descriptor this process now owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

struct Rank {
    child: Child,
    pidfd: Option<OwnedFd>,
    /// Its exit code, or minus its signal, once reaped.
    ended: Option<i32>,
    /// procsrun asked it to stop (its end is not its own failure).
    stopped: bool,
}

fn code_of(status: std::process::ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => -s,
        _ => 1,
    }
}

fn status_of(code: i32) -> i32 {
    if code < 0 { 128 - code } else { code }
}

/// Copies `from` to procsrun's stdout or stderr, each line prefixed.
fn relay(
    rank: usize,
    from: impl Read + Send + 'static,
    to_stderr: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if !line.ends_with(b"\n") {
                        line.push(b'\n');
                    }
                    let mut out = Vec::with_capacity(line.len() + 8);
                    out.extend_from_slice(format!("[{rank}] ").as_bytes());
                    out.extend_from_slice(&line);
                    // One write per line, so lines of ranks never interleave.
                    let _ = if to_stderr {
                        std::io::stderr().lock().write_all(&out)
                    } else {
                        std::io::stdout().lock().write_all(&out)
                    };
                }
            }
        }
    })
}

fn main() -> ExitCode {
    let opts = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("procsrun: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(if e.is_empty() { 0 } else { 2 });
        }
    };
    match launch(&opts) {
        Ok(status) => ExitCode::from(status.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("procsrun: {e}");
            ExitCode::from(1)
        }
    }
}

fn launch(opts: &Options) -> Result<i32, String> {
    let signals = signal_pipe().map_err(|e| format!("signal pipe: {e}"))?;
    let detect = std::env::var(procs_mpi::ENV_DEADLOCK).map_or(true, |v| v.trim() != "0");
    let job = procs_mpi::launcher_segment(opts.n, detect).map_err(|e| e.to_string())?;
    let seg_fd = job.fd().as_raw_fd();
    // Measured once here (unless the environment says), for every rank.
    let single = procs_mpi::single_copy_here();
    let mut ranks: Vec<Rank> = Vec::with_capacity(opts.n);
    let mut relays = Vec::new();
    for rank in 0..opts.n {
        let mut cmd = Command::new(&opts.program);
        cmd.args(&opts.args)
            .env(ENV_RANK, rank.to_string())
            .env(ENV_SIZE, opts.n.to_string())
            .env(ENV_FD, seg_fd.to_string())
            .env(procs_mpi::ENV_SINGLE_COPY, if single { "1" } else { "0" })
            .stdin(if rank == 0 {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        if opts.prefix {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        // SAFETY: between fork and exec the closure only calls fcntl, which
        // is async-signal-safe, on a descriptor this process holds open.
        unsafe {
            cmd.pre_exec(move || {
                // The segment's descriptor survives exec in the rank.
                if libc::fcntl(seg_fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(mut child) => {
                if let Some(out) = child.stdout.take() {
                    relays.push(relay(rank, out, false));
                }
                if let Some(err) = child.stderr.take() {
                    relays.push(relay(rank, err, true));
                }
                let pidfd = pidfd_open(child.id());
                ranks.push(Rank {
                    child,
                    pidfd,
                    ended: None,
                    stopped: false,
                });
            }
            Err(e) => {
                eprintln!(
                    "procsrun: cannot start {} for rank {rank}: {e}",
                    opts.program
                );
                stop(&mut ranks, &job);
                return Ok(127);
            }
        }
    }
    let status = supervise(opts, &mut ranks, &job, &signals);
    for r in relays {
        let _ = r.join();
    }
    Ok(status)
}

/// Asks every live rank to stop, then kills those still there after a grace.
fn stop(ranks: &mut [Rank], job: &procs_mpi::LauncherJob) {
    for r in ranks.iter_mut().filter(|r| r.ended.is_none()) {
        r.stopped = true;
        // SAFETY: kill(2) on our own unreaped child: its pid is not reused.
        unsafe { libc::kill(r.child.id() as i32, libc::SIGTERM) };
    }
    let deadline = Instant::now() + GRACE;
    loop {
        reap(ranks, job);
        if ranks.iter().all(|r| r.ended.is_some()) {
            return;
        }
        if Instant::now() >= deadline {
            for r in ranks.iter_mut().filter(|r| r.ended.is_none()) {
                let _ = r.child.kill();
            }
            for (rank, r) in ranks
                .iter_mut()
                .enumerate()
                .filter(|(_, r)| r.ended.is_none())
            {
                let code = r.child.wait().map_or(-9, code_of);
                r.ended = Some(code);
                job.record_end(rank, code);
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reaps the ranks that ended; returns the ones that just did.
fn reap(ranks: &mut [Rank], job: &procs_mpi::LauncherJob) -> Vec<usize> {
    let mut just = Vec::new();
    for (rank, r) in ranks.iter_mut().enumerate() {
        if r.ended.is_some() {
            continue;
        }
        if let Ok(Some(status)) = r.child.try_wait() {
            let code = code_of(status);
            r.ended = Some(code);
            job.record_end(rank, code);
            just.push(rank);
        }
    }
    just
}

fn supervise(
    opts: &Options,
    ranks: &mut [Rank],
    job: &procs_mpi::LauncherJob,
    signals: &OwnedFd,
) -> i32 {
    let deadline = opts.timeout.map(|t| Instant::now() + t);
    loop {
        // The ranks that failed on their own in this pass: the job's status
        // is the worst of theirs (ranks that fail after being told of them
        // do not count).
        let mut worst = 0;
        for rank in reap(ranks, job) {
            let r = &ranks[rank];
            let code = r.ended.unwrap_or(0);
            if code == 0 || r.stopped {
                continue;
            }
            let how = procs_mpi::RankEnd::from_code(code);
            match job.aborted() {
                Some((by, c)) if by == rank => eprintln!(
                    "procsrun: rank {rank} (pid {}) called abort with code {c}; stopping the job",
                    r.child.id()
                ),
                _ => eprintln!(
                    "procsrun: rank {rank} (pid {}) {how}; stopping the other ranks",
                    r.child.id()
                ),
            }
            worst = worst.max(status_of(code));
        }
        if worst != 0 {
            stop(ranks, job);
            return worst;
        }
        if ranks.iter().all(|r| r.ended.is_some()) {
            return 0;
        }
        // Sleep until a rank ends, a signal comes, or the timeout.
        let mut fds: Vec<libc::pollfd> = ranks
            .iter()
            .filter(|r| r.ended.is_none())
            .filter_map(|r| r.pidfd.as_ref())
            .map(|fd| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        fds.push(libc::pollfd {
            fd: signals.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        let mut wait_ms: i32 = if ranks.iter().any(|r| r.pidfd.is_none()) {
            10
        } else {
            1000
        };
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            wait_ms = wait_ms.min(left.as_millis().min(i32::MAX as u128) as i32);
        }
        // SAFETY: `fds` is a valid array of pollfds for its length.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        let mut byte = [0u8; 16];
        // SAFETY: reading into a local buffer of its length, nonblocking.
        let got = unsafe { libc::read(signals.as_raw_fd(), byte.as_mut_ptr().cast(), byte.len()) };
        if got > 0 {
            let sig = i32::from(byte[0]);
            eprintln!(
                "procsrun: {}; stopping every rank",
                procs_core::signal_name(sig)
            );
            stop(ranks, job);
            return 128 + sig;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            eprintln!(
                "procsrun: the job ran past its timeout of {:?}; stopping every rank",
                opts.timeout.unwrap_or_default()
            );
            stop(ranks, job);
            return 124;
        }
    }
}
