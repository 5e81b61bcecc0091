//! The error type of procs-core.

use std::time::Duration;

/// Everything that can go wrong in procs-core.
///
/// Variants are meant to be matched on: misuse of a [`Process`](crate::Process)
/// handle, a child that failed, a process that is gone, a subprocess that timed
/// out or exited with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `start` was called on a process that was already started.
    #[error("cannot start a process twice (process {name})")]
    AlreadyStarted {
        /// Name of the process.
        name: String,
    },
    /// `join`, `terminate`, `kill` or a similar call was made before `start`.
    #[error("can only {op} a started process (process {name})")]
    NotStarted {
        /// The call that was attempted.
        op: &'static str,
        /// Name of the process.
        name: String,
    },
    /// A call was made on a [`Process`](crate::Process) after
    /// [`close`](crate::Process::close) released it (Python's `ValueError:
    /// process object is closed`).
    #[error("cannot {op}: process object is closed (process {name})")]
    ProcessClosed {
        /// The call that was attempted.
        op: &'static str,
        /// Name of the process.
        name: String,
    },
    /// [`Process::close`](crate::Process::close) was called while the child
    /// still runs (Python's `ValueError`): join or terminate it first.
    #[error(
        "cannot close process {name} (pid {pid}) while it is still running: join or terminate it first"
    )]
    StillRunning {
        /// Name of the process.
        name: String,
        /// Pid of the running child.
        pid: i32,
    },
    /// The spawn start method was asked for in a program that did not
    /// call [`init`](crate::init) first thing in `main` (or
    /// [`init_before_main!`](crate::init_before_main) in a test file):
    /// its child would run `main` again instead of the function.
    #[error(
        "the spawn start method needs procs_core::init() as the first line of main (in a test file: procs_core::init_before_main!();)"
    )]
    SpawnNotReady,
    /// The spawn start method runs plain functions of the program itself;
    /// this one belongs to a shared library, which a fresh execution may
    /// load elsewhere.
    #[error("the spawn start method runs functions of the program itself, not of a shared library")]
    SpawnForeignFunction,
    /// [`set_start_method`](crate::set_start_method) was called before,
    /// without `force` (Python's "context has already been set").
    #[error("the start method was already set (to {current}): pass force to change it")]
    ContextAlreadySet {
        /// The method set before.
        current: &'static str,
    },
    /// A closure cannot cross an exec: the spawn start method runs a plain
    /// function ([`ProcessBuilder::spawn_fn`](crate::ProcessBuilder::spawn_fn)).
    #[error(
        "process {name}: the spawn start method runs a plain function with spawn_fn, not a closure (use StartMethod::Fork for closures)"
    )]
    SpawnNeedsFunction {
        /// Name of the process.
        name: String,
    },
    /// An argument for a spawned child did not serialize.
    #[error("the argument does not serialize: {0}")]
    Encode(String),
    /// A process tried to join itself.
    #[error("a process cannot join itself (pid {pid})")]
    JoinSelf {
        /// Pid of the process.
        pid: i32,
    },
    /// A process tried to wait for a process it did not start.
    #[error(
        "can only {op} a child process: pid {pid} was started by pid {parent}, this is pid {this}"
    )]
    NotAChild {
        /// The call that was attempted.
        op: &'static str,
        /// Pid of the process the call was about.
        pid: i32,
        /// Pid of the process that started it.
        parent: i32,
        /// Pid of the calling process.
        this: i32,
    },
    /// A daemon process tried to start a child, which Python forbids too:
    /// the daemon is terminated when its parent exits and would orphan it.
    #[error("daemonic processes are not allowed to have children (process {name})")]
    DaemonicChildren {
        /// Name of the daemon process.
        name: String,
    },
    /// The child panicked; the message is the panic's payload.
    #[error("process {pid} panicked: {message}")]
    Panicked {
        /// Pid of the child.
        pid: i32,
        /// The panic message.
        message: String,
    },
    /// The child ended without producing its result (it exited early or was
    /// killed). `exitcode` uses Python's signs: `-N` for signal N.
    #[error("process {pid} ended with exit code {exitcode} before returning its result")]
    ChildDied {
        /// Pid of the child.
        pid: i32,
        /// Exit code, `-N` when killed by signal N.
        exitcode: i32,
    },
    /// The bytes a child sent back could not be decoded.
    #[error("the result sent by process {pid} does not decode: {reason}")]
    Decode {
        /// Pid of the child.
        pid: i32,
        /// What was wrong.
        reason: String,
    },
    /// No process has this pid (psutil's `NoSuchProcess`).
    #[error("no such process: pid {pid}")]
    NoSuchProcess {
        /// The pid asked about.
        pid: i32,
    },
    /// The kernel refused to tell (psutil's `AccessDenied`).
    #[error("access denied to {what} of pid {pid}")]
    AccessDenied {
        /// The pid asked about.
        pid: i32,
        /// Which information was refused.
        what: &'static str,
    },
    /// The process has exited but was not reaped yet, and the kernel no
    /// longer keeps this information for it (psutil's `ZombieProcess`).
    #[error("process {pid} is a zombie: its {what} is gone")]
    ZombieProcess {
        /// The pid asked about.
        pid: i32,
        /// Which information is gone.
        what: &'static str,
    },
    /// A program to run was not found.
    #[error("program not found: {program}")]
    ProgramNotFound {
        /// The program as given.
        program: String,
    },
    /// A subprocess did not finish within its timeout (Python's
    /// `TimeoutExpired`). After [`Run::timeout`](crate::subprocess::Run::timeout)
    /// it was killed (with its process group) and reaped; after
    /// [`Popen::wait_timeout`](crate::subprocess::Popen::wait_timeout) or
    /// [`Popen::communicate`](crate::subprocess::Popen::communicate) it is
    /// left running. What it wrote to captured pipes before is kept here, as
    /// bytes even in text mode (as Python's `TimeoutExpired.output`).
    #[error("command {cmd:?} timed out after {timeout:?}")]
    TimeoutExpired {
        /// The command line.
        cmd: Vec<String>,
        /// The timeout that expired.
        timeout: Duration,
        /// Standard output captured so far.
        stdout: Vec<u8>,
        /// Standard error captured so far.
        stderr: Vec<u8>,
    },
    /// A subprocess run with `check` exited with a non-zero code
    /// (Python's `CalledProcessError`).
    #[error("command {cmd:?} returned non-zero exit status {returncode}")]
    CalledProcessError {
        /// The command line.
        cmd: Vec<String>,
        /// Exit code, `-N` when killed by signal N.
        returncode: i32,
        /// Captured standard output, if it was captured.
        stdout: Vec<u8>,
        /// Captured standard error, if it was captured.
        stderr: Vec<u8>,
    },
    /// In text mode, what a subprocess wrote does not decode in the chosen
    /// encoding under the `Strict` error handler (Python's
    /// `UnicodeDecodeError`). The child has ended and was reaped; both
    /// outputs are kept here as bytes, so nothing is lost.
    #[error(
        "{encoding} cannot decode the {stream} of command {cmd:?}: invalid byte at offset {position}"
    )]
    UnicodeDecodeError {
        /// The command line.
        cmd: Vec<String>,
        /// The stream that did not decode: `"stdout"` or `"stderr"`.
        stream: &'static str,
        /// The encoding's name, e.g. `utf-8`.
        encoding: &'static str,
        /// Offset in that stream of the first byte that does not decode.
        position: usize,
        /// The exit code the child ended with, `-N` for signal N.
        returncode: i32,
        /// Standard output as captured, undecoded.
        stdout: Vec<u8>,
        /// Standard error as captured, undecoded.
        stderr: Vec<u8>,
    },
    /// In text mode, the input has a character the chosen encoding has no
    /// byte for, under the `Strict` error handler (Python's
    /// `UnicodeEncodeError`). Nothing was started.
    #[error("{encoding} cannot encode the input of command {cmd:?}: character at byte {position}")]
    UnicodeEncodeError {
        /// The command line.
        cmd: Vec<String>,
        /// The encoding's name, e.g. `latin-1`.
        encoding: &'static str,
        /// Byte offset in the input text of the character.
        position: usize,
    },
    /// A user or group to run a subprocess as does not exist (Python's
    /// `KeyError` from `pwd`/`grp`).
    #[error("no such {kind}: {name}")]
    NoSuchAccount {
        /// `"user"` or `"group"`.
        kind: &'static str,
        /// The name as given.
        name: String,
    },
    /// A subprocess call was given arguments that do not fit together: an
    /// empty command line, `input` for a child whose stdin is not a pipe,
    /// input after communication started (Python's `ValueError`).
    #[error("invalid argument to {op}: {reason}")]
    InvalidArgument {
        /// The call that was made, e.g. `communicate`.
        op: &'static str,
        /// What was wrong with its arguments.
        reason: &'static str,
    },
    /// A wait with a timeout elapsed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// The operation, e.g. `fork` or `pidfd_open`.
        op: &'static str,
        /// The error the kernel returned.
        #[source]
        source: std::io::Error,
    },
}

/// The result type of procs-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Os`] from an errno returned by nix.
    pub(crate) fn os(op: &'static str, errno: nix::errno::Errno) -> Self {
        Error::Os {
            op,
            source: std::io::Error::from_raw_os_error(errno as i32),
        }
    }

    /// An [`Error::Os`] from an `std::io::Error`.
    pub(crate) fn io(op: &'static str, source: std::io::Error) -> Self {
        Error::Os { op, source }
    }
}
