//! Information about any process, as psutil's `Process` gives it.
//!
//! A [`ProcessInfo`] names one process by its pid and reads `/proc/<pid>`
//! afresh on every call: nothing is cached but the pid and the start time.
//!
//! # Which process a `ProcessInfo` describes
//!
//! `ProcessInfo::new` opens the directory `/proc/<pid>` and keeps it open
//! (one file descriptor per `ProcessInfo`); every later read goes through
//! that descriptor. The kernel ties the directory to the process, not to
//! the number, so once the process is reaped every read fails with
//! [`Error::NoSuchProcess`], even if a new process has since been given
//! the same pid: a `ProcessInfo` never describes the wrong process. Its
//! start time is recorded too; [`ProcessInfo::is_running`] checks both, as
//! psutil's `is_running` compares creation times.
//!
//! # Errors
//!
//! - [`Error::NoSuchProcess`]: the process is gone (exited and reaped), also
//!   when it vanishes between two reads.
//! - [`Error::ZombieProcess`]: the process has exited but is not reaped, and
//!   the kernel has already dropped what was asked (its cwd, exe, environ;
//!   also its descriptors, for a caller other than root).
//! - [`Error::AccessDenied`]: the kernel refused (another user's environ,
//!   cwd, exe or open descriptors); `what` names the `/proc/<pid>` entry.
//! - [`Error::Os`]: any other failure, e.g. out of file descriptors.
//!
//! # Example
//!
//! ```
//! use procs_core::info::ProcessInfo;
//!
//! let me = ProcessInfo::current()?;
//! assert_eq!(me.pid(), std::process::id() as i32);
//! assert!(me.is_running()?);
//!
//! let mem = me.memory_info()?;
//! println!(
//!     "{} (pid {}, parent {}) is {}, started {:?}, rss {} bytes, cwd {}",
//!     me.name()?,
//!     me.pid(),
//!     me.ppid()?,
//!     me.status()?,
//!     me.create_time()?,
//!     mem.rss,
//!     me.cwd()?.display(),
//! );
//! # Ok::<(), procs_core::Error>(())
//! ```

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use procfs::ProcError;

use crate::{Error, Result};

/// A running (or zombie) process, named by its pid: psutil's `Process`.
///
/// Every method reads `/proc/<pid>` at the time of the call. See the
/// [module documentation](self) for how a `ProcessInfo` stays bound to one
/// process when pids are reused, and for the errors.
///
/// Two `ProcessInfo`s are equal when they have the same pid and the same
/// start time, that is when they describe the same process.
pub struct ProcessInfo {
    proc: procfs::process::Process,
    pid: i32,
    /// `starttime` of `/proc/<pid>/stat`: clock ticks after boot.
    start_ticks: u64,
}

/// What a process is doing, from the state letter of `/proc/<pid>/stat`.
///
/// `Display` gives psutil's strings (`"running"`, `"sleeping"`,
/// `"disk-sleep"`, `"zombie"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// Running or runnable (`R`).
    Running,
    /// Sleeping in an interruptible wait (`S`).
    Sleeping,
    /// Waiting in uninterruptible sleep, usually for I/O (`D`).
    DiskSleep,
    /// Stopped by a signal such as `SIGSTOP` (`T`).
    Stopped,
    /// Stopped by a debugger (`t`).
    TracingStop,
    /// Exited, and not yet reaped by its parent (`Z`).
    Zombie,
    /// Being torn down; seldom seen (`X`, `x`).
    Dead,
    /// Killable disk sleep, Linux 2.6.33 to 3.13 (`K`).
    WakeKill,
    /// Waking up, Linux 2.6.33 to 3.13 (`W`).
    Waking,
    /// A parked kernel thread, Linux 3.9 to 3.13 (`P`).
    Parked,
    /// An idle kernel thread (`I`).
    Idle,
    /// A letter this library does not know (from a newer kernel).
    Unknown(char),
}

impl Status {
    fn from_letter(letter: char) -> Self {
        match letter {
            'R' => Status::Running,
            'S' => Status::Sleeping,
            'D' => Status::DiskSleep,
            'T' => Status::Stopped,
            't' => Status::TracingStop,
            'Z' => Status::Zombie,
            'X' | 'x' => Status::Dead,
            'K' => Status::WakeKill,
            'W' => Status::Waking,
            'P' => Status::Parked,
            'I' => Status::Idle,
            other => Status::Unknown(other),
        }
    }

    /// psutil's name for this status: `"running"`, `"sleeping"`,
    /// `"disk-sleep"`, `"stopped"`, `"tracing-stop"`, `"zombie"`, `"dead"`,
    /// `"wake-kill"`, `"waking"`, `"parked"`, `"idle"`, or `"?"` for an
    /// unknown letter.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Sleeping => "sleeping",
            Status::DiskSleep => "disk-sleep",
            Status::Stopped => "stopped",
            Status::TracingStop => "tracing-stop",
            Status::Zombie => "zombie",
            Status::Dead => "dead",
            Status::WakeKill => "wake-kill",
            Status::Waking => "waking",
            Status::Parked => "parked",
            Status::Idle => "idle",
            Status::Unknown(_) => "?",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// CPU time a process has used, as psutil's `cpu_times()`.
///
/// The kernel counts in clock ticks (usually 10 ms), so small amounts read
/// as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CpuTimes {
    /// Time spent in user mode.
    pub user: Duration,
    /// Time spent in the kernel on the process's behalf.
    pub system: Duration,
    /// User time of the children it has waited for.
    pub children_user: Duration,
    /// System time of the children it has waited for.
    pub children_system: Duration,
}

/// Memory a process uses, in bytes, as psutil's `memory_info()` on Linux
/// (from `/proc/<pid>/statm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MemoryInfo {
    /// Resident set size: memory in RAM now.
    pub rss: u64,
    /// Virtual memory size: everything mapped.
    pub vms: u64,
    /// Resident memory that is backed by a file or shared (may be shared
    /// with other processes).
    pub shared: u64,
    /// Code ("text") of the executable.
    pub text: u64,
    /// Data and stack.
    pub data: u64,
}

/// One entry of `/proc/<pid>`: its name in errors, and the operation that
/// reads it.
#[derive(Clone, Copy)]
struct Entry {
    what: &'static str,
    op: &'static str,
}

impl Entry {
    const fn new(what: &'static str, op: &'static str) -> Self {
        Entry { what, op }
    }
}

const DIR: Entry = Entry::new("directory", "open /proc/<pid>");
const STAT: Entry = Entry::new("stat", "read /proc/<pid>/stat");
const STATUS: Entry = Entry::new("status", "read /proc/<pid>/status");
const STATM: Entry = Entry::new("statm", "read /proc/<pid>/statm");
const CMDLINE: Entry = Entry::new("cmdline", "read /proc/<pid>/cmdline");
const ENVIRON: Entry = Entry::new("environ", "read /proc/<pid>/environ");
const CWD: Entry = Entry::new("cwd", "readlink /proc/<pid>/cwd");
const EXE: Entry = Entry::new("exe", "readlink /proc/<pid>/exe");
const FD: Entry = Entry::new("fd", "list /proc/<pid>/fd");

/// Why a read of `/proc/<pid>` failed.
enum Cause {
    /// ENOENT or ESRCH: the entry is not there, usually because the process
    /// is gone (but see [`ProcessInfo::absence`]).
    NotThere,
    /// EACCES or EPERM.
    Denied,
    /// Anything else.
    Other(io::Error),
}

impl From<ProcError> for Cause {
    fn from(e: ProcError) -> Self {
        match e {
            // procfs already folds ESRCH into NotFound.
            ProcError::NotFound(_) => Cause::NotThere,
            ProcError::PermissionDenied(_) => Cause::Denied,
            other => Cause::Other(into_io(other)),
        }
    }
}

impl From<io::Error> for Cause {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound => Cause::NotThere,
            io::ErrorKind::PermissionDenied => Cause::Denied,
            _ if e.raw_os_error() == Some(libc::ESRCH) => Cause::NotThere,
            _ => Cause::Other(e),
        }
    }
}

/// What it means, at this moment, that an entry of `/proc/<pid>` is not there.
enum Absence {
    /// The process is reaped: it is gone.
    Gone,
    /// The process is a zombie: the kernel dropped its memory, files and
    /// directories.
    Zombie,
    /// The process is alive but has no such thing (a kernel thread has no
    /// executable and no environment).
    Lacking,
}

impl ProcessInfo {
    /// Information about the process `pid`.
    ///
    /// Fails with [`Error::NoSuchProcess`] if there is no such process (a
    /// thread id that is not a process's main thread counts as none: it
    /// names a thread, not a process). A zombie is found: it still exists.
    pub fn new(pid: i32) -> Result<Self> {
        if pid <= 0 {
            return Err(Error::NoSuchProcess { pid });
        }
        let proc = procfs::process::Process::new(pid).map_err(|e| plain_error(pid, DIR, e))?;
        // /proc/<tid> opens for any thread id, but describes one thread of
        // the process <tgid>: refuse it rather than show a thread as a process.
        let status = proc.status().map_err(|e| plain_error(pid, STATUS, e))?;
        if status.tgid != pid {
            return Err(Error::NoSuchProcess { pid });
        }
        let stat = proc.stat().map_err(|e| plain_error(pid, STAT, e))?;
        Ok(ProcessInfo {
            proc,
            pid,
            start_ticks: stat.starttime,
        })
    }

    /// Information about the calling process.
    pub fn current() -> Result<Self> {
        Self::new(nix::unistd::getpid().as_raw())
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The parent's pid: `0` for pid 1 and for `kthreadd`, which have none.
    /// An orphan's parent is the process that adopted it.
    pub fn ppid(&self) -> Result<i32> {
        Ok(self.stat()?.ppid)
    }

    /// The process's name, as psutil gives it: the kernel's name for it
    /// (`comm`, the executable's file name cut to 15 bytes, or what the
    /// process set with `prctl(PR_SET_NAME)`), completed from the first
    /// argument of the command line when the kernel cut it.
    pub fn name(&self) -> Result<String> {
        let comm = self.stat()?.comm;
        // TASK_COMM_LEN is 16 with the NUL: a 15-byte comm may be cut.
        if comm.len() < 15 {
            return Ok(comm);
        }
        // Best effort, as psutil: if the command line cannot be read now,
        // the name read above is still true.
        if let Ok(args) = self.cmdline()
            && let Some(first) = args.first()
        {
            let base = first.rsplit('/').next().unwrap_or(first);
            if base.starts_with(&comm) {
                return Ok(base.to_owned());
            }
        }
        Ok(comm)
    }

    /// The command line (`/proc/<pid>/cmdline`), arguments that are not
    /// UTF-8 decoded lossily (see [`cmdline_os`](Self::cmdline_os)).
    ///
    /// Empty for a zombie and for a kernel thread. A process that rewrote
    /// its own arguments (`setproctitle`) shows what it wrote.
    pub fn cmdline(&self) -> Result<Vec<String>> {
        let raw = self.read_bytes(CMDLINE)?;
        Ok(split_args(&raw)
            .into_iter()
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect())
    }

    /// The command line as the kernel holds it: bytes, not necessarily UTF-8.
    pub fn cmdline_os(&self) -> Result<Vec<OsString>> {
        let raw = self.read_bytes(CMDLINE)?;
        Ok(split_args(&raw)
            .into_iter()
            .map(|arg| OsString::from_vec(arg.to_vec()))
            .collect())
    }

    /// The path of the executable (`/proc/<pid>/exe`), `None` for a kernel
    /// thread, which has none. A path that was deleted after the process
    /// started ends in `" (deleted)"`.
    ///
    /// A zombie's executable is gone: [`Error::ZombieProcess`].
    pub fn exe(&self) -> Result<Option<PathBuf>> {
        match self.proc.exe() {
            Ok(path) => Ok(Some(path)),
            Err(e) => match Cause::from(e) {
                Cause::NotThere => match self.absence() {
                    Absence::Lacking => Ok(None),
                    absence => Err(self.absent_error(absence, EXE)),
                },
                cause => Err(self.error(cause, EXE)),
            },
        }
    }

    /// The current working directory (`/proc/<pid>/cwd`). A directory that
    /// was removed ends in `" (deleted)"`.
    ///
    /// A zombie's is gone: [`Error::ZombieProcess`]. Another user's is
    /// refused unless the caller may ptrace it: [`Error::AccessDenied`].
    pub fn cwd(&self) -> Result<PathBuf> {
        match self.proc.cwd() {
            Ok(path) => Ok(path),
            Err(e) => match Cause::from(e) {
                // A live process always has a cwd (one whose main thread
                // exited while others run on shows as a zombie): not expected.
                Cause::NotThere => match self.absence() {
                    Absence::Lacking => Err(Error::io(CWD.op, io::ErrorKind::NotFound.into())),
                    absence => Err(self.absent_error(absence, CWD)),
                },
                cause => Err(self.error(cause, CWD)),
            },
        }
    }

    /// The environment the process was started with
    /// (`/proc/<pid>/environ`), bytes that are not UTF-8 decoded lossily
    /// (see [`environ_os`](Self::environ_os)).
    ///
    /// This is the environment given to `execve`: variables the process
    /// set or removed afterwards (`setenv`) do not show. Empty for a kernel
    /// thread; gone for a zombie ([`Error::ZombieProcess`]); refused for
    /// another user's process ([`Error::AccessDenied`]).
    pub fn environ(&self) -> Result<HashMap<String, String>> {
        let raw = self.environ_bytes()?;
        Ok(split_env(&raw)
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect())
    }

    /// The environment as the kernel holds it: bytes, not necessarily UTF-8.
    pub fn environ_os(&self) -> Result<HashMap<OsString, OsString>> {
        let raw = self.environ_bytes()?;
        Ok(split_env(&raw)
            .map(|(k, v)| {
                (
                    OsString::from_vec(k.to_vec()),
                    OsString::from_vec(v.to_vec()),
                )
            })
            .collect())
    }

    /// What the process is doing now.
    pub fn status(&self) -> Result<Status> {
        Ok(Status::from_letter(self.stat()?.state))
    }

    /// When the process started, as psutil computes it: the boot time
    /// ([`boot_time`], to the second) plus the clock ticks from boot to the
    /// start. Not read from a clock, so two calls agree (unless the system
    /// clock is set in between, which moves the boot time).
    pub fn create_time(&self) -> Result<SystemTime> {
        let since_boot = ticks(self.start_ticks);
        boot_time()?
            .checked_add(since_boot)
            .ok_or_else(|| Error::io(STAT.op, io::ErrorKind::InvalidData.into()))
    }

    /// Whether the process is still there and is the same process: its pid
    /// has not been reaped, and its start time is the one recorded at
    /// [`new`](Self::new) (psutil's `is_running`).
    ///
    /// A zombie is still running in this sense, as in psutil: it has exited
    /// but has not been reaped; [`status`](Self::status) tells it apart.
    pub fn is_running(&self) -> Result<bool> {
        match self.proc.stat() {
            Ok(stat) => Ok(stat.starttime == self.start_ticks),
            Err(e) => match Cause::from(e) {
                Cause::NotThere => Ok(false),
                // The kernel says it is there; the open directory pins it to
                // this process.
                Cause::Denied => Ok(true),
                Cause::Other(e) => Err(Error::io(STAT.op, e)),
            },
        }
    }

    /// CPU time used by the process and by its waited-for children.
    pub fn cpu_times(&self) -> Result<CpuTimes> {
        let stat = self.stat()?;
        let signed = |t: i64| ticks(u64::try_from(t).unwrap_or(0));
        Ok(CpuTimes {
            user: ticks(stat.utime),
            system: ticks(stat.stime),
            children_user: signed(stat.cutime),
            children_system: signed(stat.cstime),
        })
    }

    /// Memory use, in bytes. All zero for a zombie and a kernel thread.
    pub fn memory_info(&self) -> Result<MemoryInfo> {
        let statm = self.proc.statm().map_err(|e| self.error(e.into(), STATM))?;
        let page = procfs::page_size();
        Ok(MemoryInfo {
            rss: statm.resident.saturating_mul(page),
            vms: statm.size.saturating_mul(page),
            shared: statm.shared.saturating_mul(page),
            text: statm.text.saturating_mul(page),
            data: statm.data.saturating_mul(page),
        })
    }

    /// The number of threads.
    pub fn num_threads(&self) -> Result<usize> {
        // The kernel counts with an int that is at least 1 while the
        // process exists; a negative value cannot come.
        Ok(usize::try_from(self.stat()?.num_threads).unwrap_or(0))
    }

    /// The nice value, from -20 (favoured) to 19 (least favoured).
    pub fn nice(&self) -> Result<i32> {
        let nice = self.stat()?.nice;
        // The kernel prints a value in -20..=19.
        Ok(i32::try_from(nice).unwrap_or(0))
    }

    /// The number of open file descriptors (`/proc/<pid>/fd`). Another
    /// user's are refused unless the caller may ptrace it:
    /// [`Error::AccessDenied`].
    pub fn num_fds(&self) -> Result<usize> {
        // Not procfs's `fd_count`: where the kernel does not give the count
        // (before Linux 6.2, or for a process without descriptors) it counts
        // the directory's `.` and `..` too.
        let count = || -> std::result::Result<usize, Cause> {
            let dir = self.proc.open_relative(FD.what)?;
            // Linux 6.2 and later give the count as the directory's size.
            let size = dir.metadata()?.len();
            if size > 0 {
                return Ok(usize::try_from(size).unwrap_or(usize::MAX));
            }
            // List it through the descriptor just opened, which stays on
            // this process's directory (std skips `.` and `..`).
            let mut n = 0;
            for entry in std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
                entry?;
                n += 1;
            }
            Ok(n)
        };
        count().map_err(|cause| self.error(cause, FD))
    }

    fn stat(&self) -> Result<procfs::process::Stat> {
        self.proc.stat().map_err(|e| self.error(e.into(), STAT))
    }

    /// Reads a whole entry as bytes.
    fn read_bytes(&self, entry: Entry) -> Result<Vec<u8>> {
        self.read_raw(entry)
            .map_err(|cause| self.error(cause, entry))
    }

    fn read_raw(&self, entry: Entry) -> std::result::Result<Vec<u8>, Cause> {
        let mut file = self.proc.open_relative(entry.what)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn environ_bytes(&self) -> Result<Vec<u8>> {
        match self.read_raw(ENVIRON) {
            Ok(buf) => Ok(buf),
            // The kernel answers ESRCH for a process without memory: a
            // zombie, or a kernel thread, which has no environment.
            Err(Cause::NotThere) => match self.absence() {
                Absence::Lacking => Ok(Vec::new()),
                absence => Err(self.absent_error(absence, ENVIRON)),
            },
            Err(cause) => Err(self.error(cause, ENVIRON)),
        }
    }

    /// Tells why an entry is not there: the process is gone, a zombie, or
    /// simply has no such thing. Reads `stat`, which every process has
    /// until it is reaped.
    fn absence(&self) -> Absence {
        match self.proc.stat() {
            Ok(stat) if stat.state == 'Z' => Absence::Zombie,
            Ok(_) => Absence::Lacking,
            // stat is readable by anyone: failing to read it means the
            // process is gone.
            Err(_) => Absence::Gone,
        }
    }

    fn absent_error(&self, absence: Absence, entry: Entry) -> Error {
        match absence {
            Absence::Zombie => Error::ZombieProcess {
                pid: self.pid,
                what: entry.what,
            },
            Absence::Gone | Absence::Lacking => Error::NoSuchProcess { pid: self.pid },
        }
    }

    /// The error for a failed read of `entry`.
    fn error(&self, cause: Cause, entry: Entry) -> Error {
        if let Cause::Other(e) = cause {
            return Error::io(entry.op, e);
        }
        match (self.absence(), cause) {
            // A zombie has lost its memory, directory and descriptors, and
            // the kernel makes what is left of them root's (a task without
            // memory is owned by root in /proc): whether the entry is not
            // there or refused, it is gone.
            (Absence::Zombie, _) => self.absent_error(Absence::Zombie, entry),
            (_, Cause::Denied) => Error::AccessDenied {
                pid: self.pid,
                what: entry.what,
            },
            // stat, statm, status, cmdline and fd exist for every process
            // until it is reaped: not there means gone.
            _ => Error::NoSuchProcess { pid: self.pid },
        }
    }
}

impl fmt::Debug for ProcessInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessInfo")
            .field("pid", &self.pid)
            .field("start_ticks", &self.start_ticks)
            .finish()
    }
}

impl PartialEq for ProcessInfo {
    fn eq(&self, other: &Self) -> bool {
        self.pid == other.pid && self.start_ticks == other.start_ticks
    }
}

impl Eq for ProcessInfo {}

impl Hash for ProcessInfo {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.pid.hash(state);
        self.start_ticks.hash(state);
    }
}

/// When the system booted (`btime` of `/proc/stat`, to the second), as
/// psutil's `boot_time()`.
pub fn boot_time() -> Result<SystemTime> {
    const OP: &str = "read /proc/stat";
    let secs = procfs::boot_time_secs().map_err(|e| Error::io(OP, into_io(e)))?;
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .ok_or_else(|| Error::io(OP, io::ErrorKind::InvalidData.into()))
}

/// Converts clock ticks to a duration, without overflow.
fn ticks(n: u64) -> Duration {
    let per_sec = procfs::ticks_per_second().max(1);
    let frac_nanos = (n % per_sec) * 1_000_000_000 / per_sec;
    Duration::from_secs(n / per_sec) + Duration::from_nanos(frac_nanos)
}

/// The arguments of a `cmdline`: each is followed by a NUL.
fn split_args(raw: &[u8]) -> Vec<&[u8]> {
    // An empty file (zombie, kernel thread) has no arguments, not one empty one.
    if raw.is_empty() {
        return Vec::new();
    }
    let body = raw.strip_suffix(b"\0").unwrap_or(raw);
    body.split(|b| *b == 0).collect()
}

/// The `KEY=value` pairs of an `environ`; entries without `=` are skipped.
fn split_env(raw: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    raw.split(|b| *b == 0).filter_map(|entry| {
        let eq = entry.iter().position(|b| *b == b'=')?;
        Some((&entry[..eq], &entry[eq + 1..]))
    })
}

/// The error of a read that happened before a `ProcessInfo` existed.
fn plain_error(pid: i32, entry: Entry, e: ProcError) -> Error {
    match Cause::from(e) {
        Cause::NotThere => Error::NoSuchProcess { pid },
        Cause::Denied => Error::AccessDenied {
            pid,
            what: entry.what,
        },
        Cause::Other(e) => Error::io(entry.op, e),
    }
}

fn into_io(e: ProcError) -> io::Error {
    match e {
        ProcError::Io(e, _) => e,
        ProcError::NotFound(_) => io::ErrorKind::NotFound.into(),
        ProcError::PermissionDenied(_) => io::ErrorKind::PermissionDenied.into(),
        ProcError::Incomplete(_) => io::Error::new(io::ErrorKind::UnexpectedEof, "incomplete"),
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_keeps_empty_arguments_and_drops_the_final_nul() {
        assert_eq!(split_args(b"sh\0-c\0\0x\0"), [&b"sh"[..], b"-c", b"", b"x"]);
        assert!(split_args(b"").is_empty());
        // A rewritten title without a final NUL is kept whole.
        assert_eq!(split_args(b"nginx: worker"), [&b"nginx: worker"[..]]);
    }

    #[test]
    fn environ_splits_at_the_first_equals_sign() {
        let pairs: Vec<_> = split_env(b"A=1\0B=x=y\0junk\0=v\0").collect();
        assert_eq!(
            pairs,
            [(&b"A"[..], &b"1"[..]), (b"B", b"x=y"), (b"", b"v"),]
        );
    }

    #[test]
    fn ticks_convert_without_overflow() {
        let per_sec = procfs::ticks_per_second();
        assert_eq!(ticks(per_sec * 3), Duration::from_secs(3));
        assert!(ticks(u64::MAX) > Duration::from_secs(u64::MAX / per_sec - 1));
    }

    #[test]
    fn status_strings_are_psutils() {
        assert_eq!(Status::from_letter('D').to_string(), "disk-sleep");
        assert_eq!(Status::from_letter('t').to_string(), "tracing-stop");
        assert_eq!(Status::from_letter('Z').to_string(), "zombie");
        assert_eq!(Status::from_letter('?'), Status::Unknown('?'));
    }
}
