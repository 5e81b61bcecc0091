//! [`Popen`]: a running child program and its pipes (its builder,
//! [`PopenOptions`], is in `options.rs`).
//!
//! Invariant: the child is reaped only by this handle (through its
//! [`std::process::Child`]), and `state` records that it was. While `state` is `Running` the pid is
//! still ours (a child that ended stays a zombie until reaped), so a signal
//! sent to it cannot reach an unrelated process that reused the pid; once it
//! is not `Running`, no signal is sent.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::PopenOptions;
use super::communicate::Progress;
use super::text::TextMode;
use crate::error::{Error, Result};
use crate::sys;

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
/// [`Popen::builder`]. The pipe ends asked for with [`Redirect::Pipe`](super::Redirect::Pipe) are
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
    /// Encoding and error handler of `communicate_text`.
    pub(super) text: TextMode,
    pub(super) stdin: Option<ChildStdin>,
    pub(super) stdout: Option<ChildStdout>,
    pub(super) stderr: Option<ChildStderr>,
    pub(super) progress: Progress,
}

impl Popen {
    /// The handle of a child just spawned; `merged_stdout` is the read end
    /// of the pipe its stdout and stderr share, if they do.
    pub(super) fn started(
        mut child: Child,
        args: Vec<String>,
        merged_stdout: Option<ChildStdout>,
        own_group: bool,
        text: TextMode,
    ) -> Popen {
        let pid = i32::try_from(child.id()).expect("a pid fits in pid_t");
        Popen {
            stdin: child.stdin.take(),
            stdout: merged_stdout.or_else(|| child.stdout.take()),
            stderr: child.stderr.take(),
            child,
            args,
            pid,
            state: State::Running,
            own_group,
            text,
            progress: Progress::default(),
        }
    }

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

    /// Waits at most `timeout` for the child to end and returns its exit
    /// code (Python's `wait(timeout)`). A child still running then is left
    /// running, and the call fails with [`Error::TimeoutExpired`] naming the
    /// command and the timeout: the child can be waited for again, or
    /// killed and then waited for.
    ///
    /// Sleeps on a pidfd where the kernel has them (Linux 5.3), and polls
    /// with a backoff of up to 50 ms where it does not. As with
    /// [`wait`](Self::wait), the pipes are not read.
    ///
    /// ```
    /// use std::time::Duration;
    /// use procs_core::{Error, subprocess::Popen};
    ///
    /// let mut p = Popen::new(["sleep", "10"])?;
    /// match p.wait_timeout(Duration::from_millis(50)) {
    ///     Err(Error::TimeoutExpired { cmd, timeout, .. }) => {
    ///         assert_eq!(cmd, ["sleep", "10"]);
    ///         assert_eq!(timeout, Duration::from_millis(50));
    ///     }
    ///     other => panic!("expected a timeout, got {other:?}"),
    /// }
    /// p.kill()?;
    /// assert_eq!(p.wait()?, -9);
    /// # Ok::<(), procs_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::TimeoutExpired`] as above (its `stdout` and `stderr` are
    /// empty: nothing is read); [`Error::Os`] if the kernel refuses.
    #[doc(alias = "wait")]
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<i32> {
        match self.wait_for(timeout)? {
            Some(code) => Ok(code),
            None => Err(Error::TimeoutExpired {
                cmd: self.args.clone(),
                timeout,
                stdout: Vec::new(),
                stderr: Vec::new(),
            }),
        }
    }

    /// [`wait_timeout`](Self::wait_timeout) with `None` for a child still
    /// running.
    pub(super) fn wait_for(&mut self, timeout: Duration) -> Result<Option<i32>> {
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
    use crate::subprocess::Redirect;

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
