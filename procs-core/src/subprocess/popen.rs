//! [`Popen`]: a running child program and its pipes, and [`PopenOptions`],
//! its builder.
//!
//! Invariant: the child is reaped only by this handle (through its
//! [`std::process::Child`]), and `state` records that it was. While `state` is `Running` the pid is
//! still ours (a child that ended stays a zombie until reaped), so a signal
//! sent to it cannot reach an unrelated process that reused the pid; once it
//! is not `Running`, no signal is sent.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::communicate::Progress;
use super::{Redirect, Stderr};
use crate::error::{Error, Result};
use crate::sys;

/// The builder of a [`Popen`]: Python's `Popen(...)` keyword arguments.
///
/// Every stream is inherited unless told otherwise. Setters take and return
/// the builder, and [`spawn`](PopenOptions::spawn) consumes it (the
/// descriptors given as redirects move into the child).
///
/// ```
/// use procs_core::subprocess::{Popen, Redirect};
///
/// let mut p = Popen::builder(["sh", "-c", "echo out; echo err >&2"])
///     .stdout(Redirect::Pipe)
///     .stderr_to_stdout()
///     .spawn()?;
/// let (out, _) = p.communicate(None, None)?;
/// assert_eq!(out, b"out\nerr\n");
/// # Ok::<(), procs_core::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "a PopenOptions does nothing until spawn is called"]
pub struct PopenOptions {
    command: Command,
    args: Vec<String>,
    pub(super) stdin: Option<Redirect>,
    pub(super) stdout: Option<Redirect>,
    pub(super) stderr: Option<Stderr>,
    pub(super) process_group: Option<i32>,
    pub(super) start_new_session: bool,
}

impl PopenOptions {
    /// Options for running `args`: the program (looked up in `PATH` when it
    /// has no `/`), then its arguments.
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let argv: Vec<_> = args.into_iter().collect();
        let mut command = Command::new(argv.first().map_or(OsStr::new(""), AsRef::as_ref));
        command.args(argv.iter().skip(1));
        PopenOptions {
            command,
            args: argv
                .iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect(),
            stdin: None,
            stdout: None,
            stderr: None,
            process_group: None,
            start_new_session: false,
        }
    }

    /// Where the child's stdin comes from.
    pub fn stdin(mut self, redirect: impl Into<Redirect>) -> Self {
        self.stdin = Some(redirect.into());
        self
    }

    /// Where the child's stdout goes.
    pub fn stdout(mut self, redirect: impl Into<Redirect>) -> Self {
        self.stdout = Some(redirect.into());
        self
    }

    /// Where the child's stderr goes. Replaces an earlier
    /// [`stderr_to_stdout`](Self::stderr_to_stdout).
    pub fn stderr(mut self, redirect: impl Into<Redirect>) -> Self {
        self.stderr = Some(Stderr::Redirect(redirect.into()));
        self
    }

    /// Sends the child's stderr wherever its stdout goes, through the same
    /// descriptor, so that the order of what it writes is kept (Python's
    /// `stderr=STDOUT`). With stdout a [`Redirect::Pipe`], both are read from
    /// [`Popen::stdout`] and [`Popen::stderr`] is `None`. Replaces an earlier
    /// [`stderr`](Self::stderr).
    #[doc(alias = "STDOUT")]
    pub fn stderr_to_stdout(mut self) -> Self {
        self.stderr = Some(Stderr::ToStdout);
        self
    }

    /// Runs the child in `dir` (Python's `cwd`). A program name without a
    /// `/` is still looked up in `PATH`.
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Sets one environment variable of the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// Sets several environment variables of the child.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.command.envs(vars);
        self
    }

    /// Removes one variable from the child's environment.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.command.env_remove(key);
        self
    }

    /// Starts the child with no environment but the variables set after
    /// this call (Python's `env={...}`, which replaces the whole environment).
    pub fn env_clear(mut self) -> Self {
        self.command.env_clear();
        self
    }

    /// Puts the child in process group `pgid`, or with `0` in a new group
    /// whose id is its pid (Python's `process_group`). A child leading its
    /// own group can be signalled with everything it starts by
    /// [`Popen::send_signal_group`]; it is no longer in the terminal's
    /// foreground group, so Ctrl-C does not reach it.
    pub fn process_group(mut self, pgid: i32) -> Self {
        self.process_group = Some(pgid);
        self
    }

    /// Starts the child in a new session (`setsid`, Python's
    /// `start_new_session=True`): it leads a new session and a new process
    /// group, and has no controlling terminal. This takes precedence over
    /// [`process_group`](Self::process_group).
    pub fn start_new_session(mut self) -> Self {
        self.start_new_session = true;
        self
    }

    /// Starts the child.
    ///
    /// # Errors
    ///
    /// [`Error::ProgramNotFound`] when the program does not exist;
    /// [`Error::Os`] when it cannot be executed, when the working directory
    /// does not exist, or when a descriptor cannot be duplicated;
    /// [`Error::InvalidArgument`] for an empty command line.
    pub fn spawn(self) -> Result<Popen> {
        let PopenOptions {
            mut command,
            args,
            stdin,
            stdout,
            stderr,
            process_group,
            start_new_session,
        } = self;
        if args.is_empty() {
            return Err(Error::InvalidArgument {
                op: "Popen",
                reason: "the command line is empty: it needs at least the program",
            });
        }
        if start_new_session {
            // SAFETY: the closure runs in the child between fork and exec,
            // where only async-signal-safe calls are allowed: setsid(2) is
            // one, and the closure allocates nothing and takes no lock.
            unsafe {
                command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
            }
        } else if let Some(pgid) = process_group {
            command.process_group(pgid);
        }

        command.stdin(stdin.unwrap_or_default().into_stdio());
        let stdout = stdout.unwrap_or_default();
        let mut merged_stdout = None;
        match stderr.unwrap_or(Stderr::Redirect(Redirect::Inherit)) {
            Stderr::Redirect(stderr) => {
                command.stdout(stdout.into_stdio());
                command.stderr(stderr.into_stdio());
            }
            Stderr::ToStdout => {
                let (stdout, stderr): (Stdio, Stdio) = match stdout {
                    Redirect::Pipe => {
                        // One pipe, its write end on both 1 and 2 of the child.
                        let (reader, writer) = std::io::pipe().map_err(|e| Error::io("pipe", e))?;
                        let copy = writer.try_clone().map_err(|e| Error::io("dup", e))?;
                        merged_stdout = Some(ChildStdout::from(OwnedFd::from(reader)));
                        (writer.into(), copy.into())
                    }
                    Redirect::Inherit => {
                        let ours = std::io::stdout()
                            .as_fd()
                            .try_clone_to_owned()
                            .map_err(|e| Error::io("dup", e))?;
                        (Stdio::inherit(), ours.into())
                    }
                    Redirect::Null => (Stdio::null(), Stdio::null()),
                    Redirect::Fd(fd) => {
                        let copy = fd.try_clone().map_err(|e| Error::io("dup", e))?;
                        (fd.into(), copy.into())
                    }
                };
                command.stdout(stdout);
                command.stderr(stderr);
            }
        }

        let spawned = command.spawn();
        let cwd = command.get_current_dir().map(Path::to_path_buf);
        // The command holds the parent's copies of the descriptors given to
        // the child (the write end of a merged pipe among them): close them
        // now, or reading that pipe would never see the end of the data.
        drop(command);
        let mut child = spawned.map_err(|e| spawn_error(&args[0], cwd.as_deref(), e))?;
        let pid = i32::try_from(child.id()).expect("a pid fits in pid_t");
        Ok(Popen {
            stdin: child.stdin.take(),
            stdout: merged_stdout.or_else(|| child.stdout.take()),
            stderr: child.stderr.take(),
            child,
            args,
            pid,
            state: State::Running,
            own_group: start_new_session || process_group == Some(0),
            progress: Progress::default(),
        })
    }
}

/// The error for a failed spawn, naming what was not found.
fn spawn_error(program: &str, cwd: Option<&Path>, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::NotFound => match cwd {
            // std reports a failed chdir as ENOENT too: tell the two apart.
            Some(dir) if !dir.is_dir() => Error::io(
                "chdir",
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("working directory {} does not exist", dir.display()),
                ),
            ),
            _ => Error::ProgramNotFound {
                program: program.to_owned(),
            },
        },
        kind => Error::io("spawn", io::Error::new(kind, format!("{program}: {e}"))),
    }
}

/// Whether the child was reaped, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Exited(i32),
    /// Reaped by someone else (SIGCHLD ignored, a `waitpid(-1)`): its code
    /// is lost and its pid may be reused, so it must not be signalled.
    Lost,
}

/// A child program, running or ended: Python's `subprocess.Popen`.
///
/// Start one with [`Popen::new`] (all streams inherited) or
/// [`Popen::builder`]. The pipe ends asked for with [`Redirect::Pipe`] are
/// [`stdin`](Popen::stdin), [`stdout`](Popen::stdout) and
/// [`stderr`](Popen::stderr); [`communicate`](Popen::communicate) uses them
/// all at once without deadlock.
///
/// # Dropping
///
/// As with [`std::process::Child`], dropping a `Popen` does not kill or wait
/// for the child: it goes on running. The parent's pipe ends are closed (the
/// child sees end-of-file on its stdin, and a broken pipe if it writes to a
/// stdout nobody reads any more), so no descriptor leaks. A child that has
/// already ended is reaped; one that ends later stays a zombie until this
/// process exits, as with std. Call [`wait`](Popen::wait), or
/// [`kill`](Popen::kill) then `wait`, to end it deterministically.
#[derive(Debug)]
pub struct Popen {
    /// Used only to wait: its pipes were taken out at spawn.
    child: Child,
    pub(super) args: Vec<String>,
    pid: i32,
    state: State,
    own_group: bool,
    pub(super) stdin: Option<ChildStdin>,
    pub(super) stdout: Option<ChildStdout>,
    pub(super) stderr: Option<ChildStderr>,
    pub(super) progress: Progress,
}

impl Popen {
    /// Starts `args` (the program, then its arguments) with every stream
    /// inherited: Python's `Popen(args)`.
    pub fn new<I, S>(args: I) -> Result<Popen>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        PopenOptions::new(args).spawn()
    }

    /// The builder for a child of `args` with pipes, a working directory, an
    /// environment or a process group.
    pub fn builder<I, S>(args: I) -> PopenOptions
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        PopenOptions::new(args)
    }

    /// The command line the child was started with.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The child's pid. Once the child has been reaped, the pid may belong
    /// to another process: do not signal it yourself, use
    /// [`send_signal`](Self::send_signal).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The exit code once the child has been reaped (by [`poll`](Self::poll),
    /// a wait or [`communicate`](Self::communicate)): `-N` if it was killed by
    /// signal N. `None` before that, even if it has ended: this call does not
    /// ask the kernel, `poll` does.
    pub fn returncode(&self) -> Option<i32> {
        match self.state {
            State::Exited(code) => Some(code),
            State::Running | State::Lost => None,
        }
    }

    /// Reaps the child if it has ended: its exit code, or `None` while it
    /// runs. Never blocks.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the kernel refuses, e.g. `ECHILD` when someone else
    /// reaped the child.
    pub fn poll(&mut self) -> Result<Option<i32>> {
        self.reap(false)
    }

    /// Waits for the child to end and returns its exit code.
    ///
    /// This does not read the child's pipes: a child that fills a pipe
    /// nobody reads blocks, and so does this call. Use
    /// [`communicate`](Self::communicate) when stdout or stderr is a pipe.
    /// Unlike [`std::process::Child::wait`], stdin is not closed first.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the kernel refuses.
    pub fn wait(&mut self) -> Result<i32> {
        loop {
            if let Some(code) = self.reap(true)? {
                return Ok(code);
            }
        }
    }

    /// Waits at most `timeout` for the child to end: its exit code, or
    /// `None` if it is still running, in which case it is left running (Python
    /// raises `TimeoutExpired` here; it leaves the child alone too).
    ///
    /// Sleeps on a pidfd where the kernel has them (Linux 5.3), and polls
    /// with a backoff of up to 50 ms where it does not.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the kernel refuses.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<i32>> {
        if let Some(code) = self.poll()? {
            return Ok(Some(code));
        }
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            return self.wait().map(Some);
        };
        // The child is not reaped (poll said so, and only we reap it), so its
        // pid cannot have been reused: the pidfd is for our child.
        match sys::pidfd_open(self.pid).map_err(|e| Error::io("pidfd_open", e))? {
            Some(pidfd) => loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let ended = sys::wait_readable(pidfd.as_fd(), Some(left))
                    .map_err(|e| Error::io("poll", e))?;
                if let Some(code) = self.poll()? {
                    return Ok(Some(code));
                }
                if !ended || Instant::now() >= deadline {
                    return Ok(None);
                }
            },
            None => self.wait_polling(deadline),
        }
    }

    /// [`wait_timeout`](Self::wait_timeout) without a pidfd: `poll` with a
    /// backoff, as Python does.
    pub(super) fn wait_polling(&mut self, deadline: Instant) -> Result<Option<i32>> {
        let mut delay = Duration::from_micros(500);
        loop {
            if let Some(code) = self.poll()? {
                return Ok(Some(code));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            std::thread::sleep(delay.min(left));
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    /// Sends `signal` to the child, unless it has been reaped already (then
    /// nothing is sent: its pid may be another process's by now).
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the kernel refuses.
    pub fn send_signal(&mut self, signal: Signal) -> Result<()> {
        if self.state != State::Running {
            return Ok(());
        }
        kill(Pid::from_raw(self.pid), signal).map_err(|e| Error::os("kill", e))
    }

    /// Sends SIGTERM to the child (Python's `terminate`): its exit code will
    /// be `-15` unless it handles the signal.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the kernel refuses.
    pub fn terminate(&mut self) -> Result<()> {
        self.send_signal(Signal::SIGTERM)
    }

    /// Sends SIGKILL to the child (Python's `kill`): its exit code will be
    /// `-9`.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the kernel refuses.
    pub fn kill(&mut self) -> Result<()> {
        self.send_signal(Signal::SIGKILL)
    }

    /// Sends `signal` to the child's whole process group: the child and
    /// everything it started that stayed in its group. The child must lead
    /// a group of its own ([`PopenOptions::process_group`]`(0)` or
    /// [`PopenOptions::start_new_session`]). As with
    /// [`send_signal`](Self::send_signal), nothing is sent once the child has
    /// been reaped: from then on the group's id may be reused.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the child does not lead its own group;
    /// [`Error::Os`] if the kernel refuses.
    pub fn send_signal_group(&mut self, signal: Signal) -> Result<()> {
        if !self.own_group {
            return Err(Error::InvalidArgument {
                op: "send_signal_group",
                reason: "the child does not lead a process group of its own \
                         (start it with process_group(0) or start_new_session)",
            });
        }
        if self.state != State::Running {
            return Ok(());
        }
        match killpg(Pid::from_raw(self.pid), signal) {
            // Only zombies left: nothing to signal.
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(Error::os("killpg", e)),
        }
    }

    /// Kills the child (and its group when it leads one) and reaps it: the
    /// cleanup after a failed or timed-out [`Run`](super::Run). Errors are
    /// dropped, since the caller is already returning one.
    pub(super) fn kill_and_reap(&mut self) {
        if self.own_group {
            let _ = self.send_signal_group(Signal::SIGKILL);
        }
        let _ = self.kill();
        let _ = self.wait();
    }

    /// The parent's end of the child's stdin, when it is a pipe.
    pub fn stdin(&mut self) -> Option<&mut ChildStdin> {
        self.stdin.as_mut()
    }

    /// The parent's end of the child's stdout, when it is a pipe.
    pub fn stdout(&mut self) -> Option<&mut ChildStdout> {
        self.stdout.as_mut()
    }

    /// The parent's end of the child's stderr, when it is a pipe of its own.
    pub fn stderr(&mut self) -> Option<&mut ChildStderr> {
        self.stderr.as_mut()
    }

    /// Takes the stdin pipe out of the handle (dropping it closes the
    /// child's stdin). [`communicate`](Self::communicate) then ignores it.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Takes the stdout pipe out of the handle (to give it to another child
    /// as its stdin, for example). [`communicate`](Self::communicate) then
    /// ignores it.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// Takes the stderr pipe out of the handle.
    /// [`communicate`](Self::communicate) then ignores it.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.stderr.take()
    }

    /// One `waitpid` on the child (blocking or not), recording how it ended.
    fn reap(&mut self, block: bool) -> Result<Option<i32>> {
        match self.state {
            State::Exited(code) => return Ok(Some(code)),
            State::Lost => return Err(Error::os("waitpid", Errno::ECHILD)),
            State::Running => {}
        }
        // The child's stdin was taken out at spawn, so std's `wait` has no
        // stdin to close: it only waits.
        let status = if block {
            self.child.wait().map(Some)
        } else {
            self.child.try_wait()
        };
        match status {
            Ok(Some(status)) => {
                let code = sys::exitcode_of_std(status);
                self.state = State::Exited(code);
                Ok(Some(code))
            }
            Ok(None) => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                self.state = State::Lost;
                Err(Error::io("waitpid", e))
            }
            Err(e) => Err(Error::io("waitpid", e)),
        }
    }
}

impl Drop for Popen {
    /// Closes the pipes (by dropping them) and reaps the child if it has
    /// ended; a running child is left running.
    fn drop(&mut self) {
        if self.state == State::Running {
            let _ = self.child.try_wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_polling_times_out_then_sees_the_end() {
        let mut p = Popen::builder(["cat"])
            .stdin(Redirect::Pipe)
            .spawn()
            .expect("spawn cat");
        let started = Instant::now();
        let early = p.wait_polling(Instant::now() + Duration::from_millis(30));
        assert!(matches!(early, Ok(None)), "{early:?}");
        assert!(started.elapsed() >= Duration::from_millis(30));
        drop(p.take_stdin());
        let code = p.wait_polling(Instant::now() + Duration::from_secs(30));
        assert!(matches!(code, Ok(Some(0))), "{code:?}");
    }
}
