//! [`Popen::communicate`]: write the child's stdin and read its stdout and
//! stderr together, in one thread, with poll(2), as CPython does on POSIX.
//!
//! The parent's pipe ends are non-blocking for the duration of a call (and
//! back to blocking when it returns, for a caller who goes on using them):
//! after poll says an end is ready, one `read` or `write` moves what the
//! pipe has or takes, and never waits. A call that times out keeps what it
//! read and the input it did not write in [`Progress`], and the next call
//! goes on from there, so no byte is lost or repeated.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::mem;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::Popen;
use crate::error::{Error, Result};

/// How much one `read` asks for. A Linux pipe holds 64 KiB by default.
const CHUNK: usize = 64 * 1024;

/// What a [`Popen::communicate`] that timed out leaves for the next one.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// A first call was made: its input was taken (or stdin closed).
    started: bool,
    /// Input not written yet.
    input: Vec<u8>,
    /// Output read so far.
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Popen {
    /// Sends `input` to the child's stdin and closes it, reads its stdout and
    /// stderr until they end, and waits for it to exit; returns what it wrote
    /// to stdout and stderr (Python's `communicate`). A stream that is not a
    /// pipe (or was taken) gives an empty `Vec`.
    ///
    /// Everything happens at once in the calling thread, so any amount of
    /// data can flow each way without deadlock. The output is held in memory:
    /// for a child that writes without end, read [`stdout`](Popen::stdout)
    /// yourself.
    ///
    /// With a `timeout`, a child that has not ended in time gives
    /// [`Error::TimeoutExpired`] carrying the output so far. The child is not
    /// killed, and the call can be made again (with `input` `None`) to go on
    /// where the first stopped: its result holds all the output, from the
    /// start. To give up, [`kill`](Popen::kill) the child, then call again to
    /// collect the rest and reap it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use procs_core::subprocess::{Popen, Redirect};
    ///
    /// let mut p = Popen::builder(["sh", "-c", "echo started; exec sleep 10"])
    ///     .stdout(Redirect::Pipe)
    ///     .spawn()?;
    /// match p.communicate(None, Some(Duration::from_millis(50))) {
    ///     Err(procs_core::Error::TimeoutExpired { .. }) => {}
    ///     other => panic!("expected a timeout, got {other:?}"),
    /// }
    /// p.kill()?;
    /// let (out, _) = p.communicate(None, None)?;
    /// assert_eq!(out, b"started\n");
    /// assert_eq!(p.returncode(), Some(-9));
    /// # Ok::<(), procs_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::TimeoutExpired`] as above; [`Error::InvalidArgument`] for
    /// `input` when stdin is not a pipe or on a call after the first;
    /// [`Error::Os`] if a read, write or wait fails (what was read so far is
    /// kept for the next call).
    pub fn communicate(
        &mut self,
        input: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let input = input.filter(|i| !i.is_empty());
        let pending: Cow<'_, [u8]> = if self.progress.started {
            if input.is_some() {
                return Err(Error::InvalidArgument {
                    op: "communicate",
                    reason: "input can only be given to the first call",
                });
            }
            Cow::Owned(mem::take(&mut self.progress.input))
        } else {
            if input.is_some() && self.stdin.is_none() {
                return Err(Error::InvalidArgument {
                    op: "communicate",
                    reason: "input was given but the child's stdin is not a pipe",
                });
            }
            self.progress.started = true;
            Cow::Borrowed(input.unwrap_or_default())
        };
        if pending.is_empty() {
            // Nothing (more) to send: the child sees end-of-file.
            self.stdin = None;
        }

        let mut stdout = mem::take(&mut self.progress.stdout);
        let mut stderr = mem::take(&mut self.progress.stderr);
        let mut written = 0;
        let mut outcome = self.exchange(&pending, &mut written, deadline, &mut stdout, &mut stderr);
        if let Ok(true) = outcome {
            // The pipes are closed; the child may still be running.
            outcome = match deadline {
                None => self.wait().map(|_| true),
                Some(d) => self
                    .wait_for(d.saturating_duration_since(Instant::now()))
                    .map(|code| code.is_some()),
            };
        }
        match outcome {
            Ok(true) => Ok((stdout, stderr)),
            Ok(false) | Err(_) => {
                if self.stdin.is_some() {
                    self.progress.input = pending[written..].to_vec();
                }
                self.progress.stdout = stdout;
                self.progress.stderr = stderr;
                Err(match outcome {
                    Err(e) => e,
                    Ok(_) => Error::TimeoutExpired {
                        cmd: self.args.clone(),
                        timeout: timeout.unwrap_or_default(),
                        stdout: self.progress.stdout.clone(),
                        stderr: self.progress.stderr.clone(),
                    },
                })
            }
        }
    }

    /// [`communicate`](Self::communicate) in text mode (Python's
    /// `communicate` on a `Popen(..., text=True)`): `input` is encoded and
    /// both outputs decoded with the child's
    /// [`encoding`](super::PopenOptions::encoding) (UTF-8 unless set) and
    /// [`errors`](super::PopenOptions::errors) handler.
    ///
    /// ```
    /// use procs_core::subprocess::{Popen, Redirect};
    ///
    /// let mut p = Popen::builder(["tr", "a-z", "A-Z"])
    ///     .stdin(Redirect::Pipe)
    ///     .stdout(Redirect::Pipe)
    ///     .spawn()?;
    /// let (out, _) = p.communicate_text(Some("abc"), None)?;
    /// assert_eq!(out, "ABC");
    /// # Ok::<(), procs_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`communicate`](Self::communicate) (a timeout's
    /// [`Error::TimeoutExpired`] carries the output so far as bytes, as
    /// Python's does); [`Error::UnicodeEncodeError`] for input the encoding
    /// cannot represent (nothing is sent); [`Error::UnicodeDecodeError`],
    /// carrying both outputs as bytes, for output that does not decode under
    /// [`ErrorHandler::Strict`](super::ErrorHandler::Strict). The child has
    /// ended and been reaped by then.
    pub fn communicate_text(
        &mut self,
        input: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<(String, String)> {
        let mode = self.text;
        let input = match input {
            Some(text) => Some(mode.encode_input(&self.args, text)?),
            None => None,
        };
        let (stdout, stderr) = self.communicate(input.as_deref(), timeout)?;
        let returncode = self.returncode().unwrap_or_default();
        mode.decode_outputs(&self.args, returncode, stdout, stderr)
    }

    /// Moves data until every pipe is closed (`Ok(true)`) or the deadline
    /// passes (`Ok(false)`), with the pipes non-blocking meanwhile.
    fn exchange(
        &mut self,
        input: &[u8],
        written: &mut usize,
        deadline: Option<Instant>,
        stdout: &mut Vec<u8>,
        stderr: &mut Vec<u8>,
    ) -> Result<bool> {
        self.set_pipes_nonblocking(true)?;
        let outcome = self.exchange_nonblocking(input, written, deadline, stdout, stderr);
        let restored = self.set_pipes_nonblocking(false);
        let done = outcome?;
        restored.map(|()| done)
    }

    fn exchange_nonblocking(
        &mut self,
        input: &[u8],
        written: &mut usize,
        deadline: Option<Instant>,
        stdout: &mut Vec<u8>,
        stderr: &mut Vec<u8>,
    ) -> Result<bool> {
        let mut first = true;
        loop {
            if self.stdin.is_none() && self.stdout.is_none() && self.stderr.is_none() {
                return Ok(true);
            }
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() && !first {
                        return Ok(false);
                    }
                    // Round up, so that poll never ends before the deadline.
                    let ms = left.as_nanos().div_ceil(1_000_000);
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
                }
            };
            first = false;

            let [stdin_ready, stdout_ready, stderr_ready] = {
                let ends: [(Option<BorrowedFd<'_>>, PollFlags); 3] = [
                    (self.stdin.as_ref().map(AsFd::as_fd), PollFlags::POLLOUT),
                    (self.stdout.as_ref().map(AsFd::as_fd), PollFlags::POLLIN),
                    (self.stderr.as_ref().map(AsFd::as_fd), PollFlags::POLLIN),
                ];
                let mut fds = Vec::with_capacity(3);
                let mut slots = [None; 3];
                for (slot, (fd, events)) in slots.iter_mut().zip(ends) {
                    if let Some(fd) = fd {
                        *slot = Some(fds.len());
                        fds.push(PollFd::new(fd, events));
                    }
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(Error::os("poll", e)),
                }
                // Any event (ready, hang-up, error) means the next call
                // returns at once, with data, end-of-file or the error.
                slots.map(|slot| {
                    slot.and_then(|i| fds[i].revents())
                        .is_some_and(|r| !r.is_empty())
                })
            };

            if stdin_ready {
                self.write_input(input, written)?;
            }
            if stdout_ready {
                read_chunk(&mut self.stdout, stdout, "read child's stdout")?;
            }
            if stderr_ready {
                read_chunk(&mut self.stderr, stderr, "read child's stderr")?;
            }
        }
    }

    /// Writes what the stdin pipe takes; closes it when all is written, or
    /// when the child closed its end (the rest of the input is dropped, as
    /// Python does).
    fn write_input(&mut self, input: &[u8], written: &mut usize) -> Result<()> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Ok(());
        };
        match stdin.write(&input[*written..]) {
            Ok(n) => *written += n,
            Err(e) if is_retry(&e) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => *written = input.len(),
            Err(e) => return Err(Error::io("write child's stdin", e)),
        }
        if *written >= input.len() {
            self.stdin = None;
        }
        Ok(())
    }

    fn set_pipes_nonblocking(&self, on: bool) -> Result<()> {
        let ends = [
            self.stdin.as_ref().map(AsFd::as_fd),
            self.stdout.as_ref().map(AsFd::as_fd),
            self.stderr.as_ref().map(AsFd::as_fd),
        ];
        for fd in ends.into_iter().flatten() {
            set_nonblocking(fd, on).map_err(|e| Error::os("fcntl", e))?;
        }
        Ok(())
    }
}

/// One `read` from a ready pipe into `buf`; closes the pipe at end-of-file.
fn read_chunk<R: Read>(pipe: &mut Option<R>, buf: &mut Vec<u8>, op: &'static str) -> Result<()> {
    let Some(reader) = pipe.as_mut() else {
        return Ok(());
    };
    let len = buf.len();
    buf.resize(len + CHUNK, 0);
    let result = reader.read(&mut buf[len..]);
    buf.truncate(len + *result.as_ref().unwrap_or(&0));
    match result {
        Ok(0) => *pipe = None,
        Ok(_) => {}
        Err(e) if is_retry(&e) => {}
        Err(e) => return Err(Error::io(op, e)),
    }
    Ok(())
}

fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> nix::Result<()> {
    let mut flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    flags.set(OFlag::O_NONBLOCK, on);
    fcntl(fd, FcntlArg::F_SETFL(flags)).map(drop)
}
