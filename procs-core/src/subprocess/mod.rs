//! Running other programs: Python's `subprocess`, built on
//! [`std::process::Command`].
//!
//! [`run`] and its builder [`Run`] start a program, feed it input, collect
//! what it writes and wait for it, with an optional timeout and exit-code
//! check (Python's `subprocess.run`); [`check_output`] is the one-liner for
//! "give me its output or an error", and [`call`], [`check_call`],
//! [`getoutput`] and [`getstatusoutput`] are Python's other one-liners. [`Popen`] is the handle for everything
//! else: a child that runs while the parent goes on, which can be polled,
//! waited for with a timeout, talked to through its pipes with
//! [`Popen::communicate`], and signalled.
//!
//! Python's other keyword arguments are builder methods of [`Run`] and
//! [`PopenOptions`]: `shell` ([`Run::shell`], through `/bin/sh -c`), `text`,
//! `encoding` and `errors` ([`Run::text`], [`Popen::communicate_text`]),
//! `close_fds` (on by default) and `pass_fds`, `preexec_fn`
//! ([`PopenOptions::pre_exec`], `unsafe`), `user`, `group`, `umask`,
//! `start_new_session`, `process_group`, `cwd` and `env`.
//!
//! ```
//! use std::time::Duration;
//! use procs_core::subprocess::{Popen, Redirect, Run};
//!
//! // Python: subprocess.run(["echo", "hello"], capture_output=True)
//! let done = Run::new(["echo", "hello"]).capture_output().run()?;
//! assert_eq!(done.returncode, 0);
//! assert_eq!(done.stdout, b"hello\n");
//!
//! // Python: subprocess.run(["sort"], input=b"b\na\n", capture_output=True, check=True)
//! let sorted = Run::new(["sort"]).input("b\na\n").capture_output().check().run()?;
//! assert_eq!(sorted.stdout_str(), "a\nb\n");
//!
//! // Python: subprocess.run(["sh", "-c", "exit 3"], check=True) raises
//! let err = Run::new(["sh", "-c", "exit 3"]).check().run().unwrap_err();
//! assert!(matches!(err, procs_core::Error::CalledProcessError { returncode: 3, .. }));
//!
//! // Python: p = Popen(["cat"], stdin=PIPE, stdout=PIPE); p.communicate(b"hi", timeout=10)
//! let mut p = Popen::builder(["cat"])
//!     .stdin(Redirect::Pipe)
//!     .stdout(Redirect::Pipe)
//!     .spawn()?;
//! let (out, _err) = p.communicate(Some(b"hi"), Some(Duration::from_secs(10)))?;
//! assert_eq!(out, b"hi");
//! assert_eq!(p.returncode(), Some(0));
//! # Ok::<(), procs_core::Error>(())
//! ```
//!
//! # Exit codes
//!
//! As Python reports them: the code the program exited with, and `-N` when
//! it was killed by signal N (`-9` after [`Popen::kill`], `-15` after
//! [`Popen::terminate`]).
//!
//! # Pipes and deadlocks
//!
//! A pipe holds 64 KiB on Linux. A child that writes more than that to a
//! pipe nobody reads blocks, and a parent that waits for it then waits
//! forever. [`Popen::communicate`] (and [`Run`], which uses it) writes the
//! input and reads both outputs together, in one thread, so it never
//! deadlocks however much flows each way. [`Popen::wait`] does not read:
//! use it only when the child's outputs are not pipes, or are read by
//! someone else.
//!
//! # Timeouts and process groups
//!
//! When a [`Run`] has a timeout, its child is started in a new process group
//! of its own (`setpgid(0, 0)`), so that on timeout the child *and everything
//! it started* (a shell's children, a build's compilers) are killed with
//! SIGKILL, reaped, and reported as [`Error::TimeoutExpired`] with the output
//! captured so far. Python kills only the child and leaves the grandchildren
//! running. The cost of the new group: the child is no longer in the
//! terminal's foreground group, so Ctrl-C at the terminal reaches the parent
//! but not the child (a parent that dies of it leaves the child running),
//! and a child that reads from the terminal is stopped by SIGTTIN. For a
//! [`Popen`], ask for the group with
//! [`PopenOptions::process_group`] or [`PopenOptions::start_new_session`] and
//! signal it with [`Popen::send_signal_group`].
//!
//! # Descriptors
//!
//! A child gets stdin, stdout and stderr, and by default nothing else: as
//! Python's `close_fds=True`, every descriptor from 3 up is closed when the
//! program starts, including those this process opened without
//! `O_CLOEXEC` (std closes only its own). [`PopenOptions::pass_fds`] keeps
//! chosen ones open at their numbers; [`PopenOptions::close_fds`]`(false)`
//! lets every inheritable one through.
//!
//! # Text
//!
//! Output is bytes unless asked for as text: [`Run::text`] makes
//! [`CompletedProcess::stdout`] and `stderr` `String`s, decoded in UTF-8 or
//! another [`Encoding`]. Bytes that do not decode are an
//! [`Error::UnicodeDecodeError`] naming the stream and offset and carrying
//! all the output as bytes (Python's `errors="strict"`, the default), or are
//! replaced by U+FFFD or left out, as chosen with an [`ErrorHandler`].
//!
//! # Errors
//!
//! A program that cannot be found is [`Error::ProgramNotFound`] naming it; a
//! program that exists but cannot be executed, or a working directory that
//! does not exist, is [`Error::Os`] naming the file. A non-zero exit under
//! `check` is [`Error::CalledProcessError`], carrying the code and whatever
//! was captured. Arguments that do not fit together are
//! [`Error::InvalidArgument`].
//!
//! # Differences from Python
//!
//! - Output that was not captured is empty, not `None`.
//! - Python's `wait(timeout)` is [`Popen::wait_timeout`]; both fail with
//!   `TimeoutExpired` and leave the child running.
//! - Text mode is a type, not a flag: [`Run::text`] turns a `Run` into a
//!   `Run<String>`, whose result holds `String`s. A `Popen`'s pipes stay
//!   bytes; [`Popen::communicate_text`] decodes what `communicate` read.
//! - `close_fds` marks descriptors close-on-exec instead of closing them
//!   before the exec (the effect on the program is the same).
//! - `user` also drops the supplementary groups when allowed (std's
//!   choice); `extra_groups` is not offered.
//!
//! [`Error::TimeoutExpired`]: crate::Error::TimeoutExpired
//! [`Error::ProgramNotFound`]: crate::Error::ProgramNotFound
//! [`Error::Os`]: crate::Error::Os
//! [`Error::CalledProcessError`]: crate::Error::CalledProcessError
//! [`Error::InvalidArgument`]: crate::Error::InvalidArgument
//! [`Error::UnicodeDecodeError`]: crate::Error::UnicodeDecodeError

use std::fs::File;
use std::io::{PipeReader, PipeWriter};
use std::os::fd::OwnedFd;
use std::process::{ChildStderr, ChildStdin, ChildStdout, Stdio};

mod communicate;
mod options;
mod popen;
mod run;
mod text;

pub use options::{NameOrId, PopenOptions};
pub use popen::Popen;
pub use run::{
    CompletedProcess, Run, call, check_call, check_output, getoutput, getstatusoutput, run,
};
pub use text::{Encoding, ErrorHandler, Output};

/// Where one standard stream of a child goes: Python's `PIPE`, `DEVNULL`,
/// `None` (inherit) or a file.
///
/// A [`File`], an [`OwnedFd`], a pipe end or another child's pipe (to chain
/// programs) converts into a `Redirect` with `From`, so
/// `.stdout(File::create(path)?)` works. To send stderr where stdout goes
/// (Python's `stderr=STDOUT`), use [`PopenOptions::stderr_to_stdout`] or
/// [`Run::stderr_to_stdout`].
#[derive(Debug, Default)]
#[non_exhaustive]
pub enum Redirect {
    /// A new pipe between parent and child (Python's `PIPE`): the parent's
    /// end is [`Popen::stdin`], [`Popen::stdout`] or [`Popen::stderr`].
    #[doc(alias = "PIPE")]
    Pipe,
    /// The parent's own stream (Python's `None`, the default).
    #[default]
    Inherit,
    /// `/dev/null` (Python's `DEVNULL`).
    #[doc(alias = "DEVNULL")]
    Null,
    /// This descriptor: a file, a pipe end, a socket. The child gets a copy;
    /// the parent's is closed when the child has been started.
    Fd(OwnedFd),
}

impl Redirect {
    fn into_stdio(self) -> Stdio {
        match self {
            Redirect::Pipe => Stdio::piped(),
            Redirect::Inherit => Stdio::inherit(),
            Redirect::Null => Stdio::null(),
            Redirect::Fd(fd) => Stdio::from(fd),
        }
    }
}

impl From<OwnedFd> for Redirect {
    fn from(fd: OwnedFd) -> Self {
        Redirect::Fd(fd)
    }
}

macro_rules! redirect_from_fd {
    ($($t:ty),*) => {$(
        impl From<$t> for Redirect {
            fn from(f: $t) -> Self {
                Redirect::Fd(OwnedFd::from(f))
            }
        }
    )*};
}

redirect_from_fd!(
    File,
    PipeReader,
    PipeWriter,
    ChildStdin,
    ChildStdout,
    ChildStderr
);

/// Where stderr goes: a redirect of its own, or wherever stdout goes.
#[derive(Debug)]
enum Stderr {
    Redirect(Redirect),
    ToStdout,
}
