//! [`run`], [`Run`] and [`CompletedProcess`]: Python's `subprocess.run`,
//! a [`Popen`](super::Popen) started, talked to and waited for in one call.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::io;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::path::Path;
use std::time::Duration;

use super::{Encoding, ErrorHandler, NameOrId, Output, PopenOptions, Redirect, Stderr};
use crate::error::{Error, Result};

/// Runs `args` (the program, then its arguments) with every stream
/// inherited, waits for it and returns its exit code: Python's
/// `subprocess.run(args)`. A non-zero code is not an error here; use
/// [`Run::check`] or [`CompletedProcess::check_returncode`] for that.
///
/// ```
/// let done = procs_core::subprocess::run(["true"])?;
/// assert_eq!(done.returncode, 0);
/// # Ok::<(), procs_core::Error>(())
/// ```
///
/// # Errors
///
/// As [`Run::run`].
pub fn run<I, S>(args: I) -> Result<CompletedProcess>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Run::new(args).run()
}

/// Runs `args` and returns what it wrote to stdout, or
/// [`Error::CalledProcessError`] if it exited with a non-zero code
/// (Python's `subprocess.check_output`). Stderr is inherited.
///
/// ```
/// let out = procs_core::subprocess::check_output(["echo", "hi"])?;
/// assert_eq!(out, b"hi\n");
/// # Ok::<(), procs_core::Error>(())
/// ```
///
/// # Errors
///
/// As [`Run::run`] with [`Run::check`].
pub fn check_output<I, S>(args: I) -> Result<Vec<u8>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Run::new(args)
        .stdout(Redirect::Pipe)
        .check()
        .run()
        .map(|done| done.stdout)
}

/// Runs `args` with every stream inherited and returns its exit code
/// (Python's `subprocess.call`; `-N` if killed by signal N).
///
/// ```
/// assert_eq!(procs_core::subprocess::call(["sh", "-c", "exit 4"])?, 4);
/// # Ok::<(), procs_core::Error>(())
/// ```
///
/// # Errors
///
/// As [`Run::run`].
pub fn call<I, S>(args: I) -> Result<i32>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Run::new(args).run().map(|done| done.returncode)
}

/// Runs `args` with every stream inherited; a non-zero exit code is
/// [`Error::CalledProcessError`] (Python's `subprocess.check_call`).
///
/// ```
/// procs_core::subprocess::check_call(["true"])?;
/// assert!(procs_core::subprocess::check_call(["false"]).is_err());
/// # Ok::<(), procs_core::Error>(())
/// ```
///
/// # Errors
///
/// As [`Run::run`] with [`Run::check`].
pub fn check_call<I, S>(args: I) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Run::new(args).check().run().map(drop)
}

/// Runs `cmd` in the shell (`sh -c`) and returns its exit code and what it
/// wrote to stdout and stderr together, as text (invalid UTF-8 replaced)
/// with one trailing newline removed (Python's
/// `subprocess.getstatusoutput`). The exit code is `-N` if the shell was
/// killed by signal N.
///
/// ```
/// let (code, out) = procs_core::subprocess::getstatusoutput("echo out; echo err >&2; exit 2")?;
/// assert_eq!((code, out.as_str()), (2, "out\nerr"));
/// # Ok::<(), procs_core::Error>(())
/// ```
///
/// # Errors
///
/// As [`Run::run`]: `sh` could not be started.
pub fn getstatusoutput(cmd: &str) -> Result<(i32, String)> {
    let done = Run::new(["sh", "-c", cmd])
        .stdout(Redirect::Pipe)
        .stderr_to_stdout()
        .run()?;
    let mut out = String::from_utf8_lossy(&done.stdout).into_owned();
    if out.ends_with('\n') {
        out.pop();
    }
    Ok((done.returncode, out))
}

/// Runs `cmd` in the shell and returns what it wrote to stdout and stderr
/// together, as [`getstatusoutput`] does, without the exit code (Python's
/// `subprocess.getoutput`).
///
/// ```
/// assert_eq!(procs_core::subprocess::getoutput("echo hi")?, "hi");
/// # Ok::<(), procs_core::Error>(())
/// ```
///
/// # Errors
///
/// As [`getstatusoutput`].
pub fn getoutput(cmd: &str) -> Result<String> {
    getstatusoutput(cmd).map(|(_, out)| out)
}

/// A program that was run to its end: Python's `CompletedProcess`.
///
/// Its output is bytes (`Vec<u8>`), or text (`String`) for a run in
/// [text mode](Run::text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedProcess<O = Vec<u8>> {
    /// The command line: the program, then its arguments (with
    /// [`Run::shell`], the script first).
    pub args: Vec<String>,
    /// The exit code; `-N` if it was killed by signal N.
    pub returncode: i32,
    /// What it wrote to stdout, if that was captured; empty otherwise.
    pub stdout: O,
    /// What it wrote to stderr, if that was captured; empty otherwise.
    pub stderr: O,
}

impl<O: Output> CompletedProcess<O> {
    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        self.returncode == 0
    }

    /// `self` if it exited with code 0, else [`Error::CalledProcessError`]
    /// carrying the code and the output (Python's `check_returncode`).
    ///
    /// # Errors
    ///
    /// [`Error::CalledProcessError`] for a non-zero code; text output is
    /// carried as the UTF-8 bytes of its `String`.
    pub fn check_returncode(self) -> Result<Self> {
        if self.success() {
            return Ok(self);
        }
        Err(Error::CalledProcessError {
            cmd: self.args,
            returncode: self.returncode,
            stdout: self.stdout.into_bytes(),
            stderr: self.stderr.into_bytes(),
        })
    }
}

impl CompletedProcess {
    /// The captured stdout as text; bytes that are not UTF-8 are replaced
    /// by U+FFFD.
    pub fn stdout_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// The captured stderr as text; bytes that are not UTF-8 are replaced
    /// by U+FFFD.
    pub fn stderr_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

/// The builder of a [`run`]: Python's `subprocess.run(...)` keyword
/// arguments.
///
/// ```
/// use std::time::Duration;
/// use procs_core::subprocess::Run;
///
/// let done = Run::new(["sh", "-c", "echo \"$GREETING\"; echo oops >&2"])
///     .env("GREETING", "hello")
///     .capture_output()
///     .timeout(Duration::from_secs(10))
///     .run()?;
/// assert_eq!(done.stdout_str(), "hello\n");
/// assert_eq!(done.stderr_str(), "oops\n");
/// # Ok::<(), procs_core::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "a Run does nothing until run is called"]
pub struct Run<O = Vec<u8>> {
    options: PopenOptions,
    capture: bool,
    input: Option<Input>,
    timeout: Option<Duration>,
    check: bool,
    output: PhantomData<O>,
}

/// What [`Run::input`] was given.
#[derive(Debug)]
enum Input {
    Bytes(Vec<u8>),
    /// Encoded when the run starts, in its encoding.
    Text(String),
}

impl Run {
    /// A run of `args`: the program (looked up in `PATH` when it has no
    /// `/`), then its arguments.
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run {
            options: PopenOptions::new(args),
            capture: false,
            input: None,
            timeout: None,
            check: false,
            output: PhantomData,
        }
    }

    /// Feeds `input` to the child's stdin (a pipe), then closes it.
    pub fn input(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.input = Some(Input::Bytes(input.into()));
        self
    }

    /// Text mode (Python's `text=True`): the captured output is decoded into
    /// `String`s, in UTF-8 unless [`encoding`](Run::encoding) says otherwise,
    /// and bytes that do not decode are an [`Error::UnicodeDecodeError`]
    /// unless [`errors`](Run::errors) says otherwise (Python's `strict`).
    /// Input given after this call is text, encoded the same way; input
    /// given before it is sent as the bytes it was.
    ///
    /// ```
    /// use procs_core::subprocess::{Encoding, ErrorHandler, Run};
    ///
    /// let done = Run::new(["tr", "a-z", "A-Z"]).text().input("héllo").capture_output().run()?;
    /// assert_eq!(done.stdout, "HéLLO");
    ///
    /// // Python: run(..., capture_output=True, text=True) raises UnicodeDecodeError.
    /// let bad = Run::new(["printf", "ok\\377"]).capture_output().text().run();
    /// assert!(matches!(bad, Err(procs_core::Error::UnicodeDecodeError { position: 2, .. })));
    ///
    /// // Python: errors="replace"
    /// let done = Run::new(["printf", "ok\\377"])
    ///     .capture_output()
    ///     .text()
    ///     .errors(ErrorHandler::Replace)
    ///     .run()?;
    /// assert_eq!(done.stdout, "ok\u{fffd}");
    ///
    /// // Python: encoding="latin-1"
    /// let done = Run::new(["printf", "\\351"]).capture_output().text().encoding(Encoding::Latin1).run()?;
    /// assert_eq!(done.stdout, "é");
    /// # Ok::<(), procs_core::Error>(())
    /// ```
    #[doc(alias = "universal_newlines")]
    pub fn text(self) -> Run<String> {
        Run {
            options: self.options,
            capture: self.capture,
            input: self.input,
            timeout: self.timeout,
            check: self.check,
            output: PhantomData,
        }
    }
}

impl Run<String> {
    /// Feeds `input`, encoded in the run's encoding, to the child's stdin (a
    /// pipe), then closes it.
    pub fn input(mut self, input: impl Into<String>) -> Self {
        self.input = Some(Input::Text(input.into()));
        self
    }

    /// The encoding of the input and output (Python's `encoding`; UTF-8 by
    /// default).
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.options = self.options.encoding(encoding);
        self
    }

    /// What to do with output that does not decode and input that does not
    /// encode (Python's `errors`; [`ErrorHandler::Strict`] by default).
    pub fn errors(mut self, errors: ErrorHandler) -> Self {
        self.options = self.options.errors(errors);
        self
    }
}

impl<O: Output> Run<O> {
    /// Captures stdout and stderr, each in its own pipe, into
    /// [`CompletedProcess::stdout`] and [`CompletedProcess::stderr`]
    /// (Python's `capture_output=True`). A stream given its own
    /// [`stdout`](Self::stdout) or [`stderr`](Self::stderr), or stderr sent
    /// to stdout, keeps that.
    pub fn capture_output(mut self) -> Self {
        self.capture = true;
        self
    }

    /// Where the child's stdin comes from. Not together with
    /// [`input`](Run::input).
    pub fn stdin(mut self, redirect: impl Into<Redirect>) -> Self {
        self.options = self.options.stdin(redirect);
        self
    }

    /// Where the child's stdout goes; [`Redirect::Pipe`] captures it.
    pub fn stdout(mut self, redirect: impl Into<Redirect>) -> Self {
        self.options = self.options.stdout(redirect);
        self
    }

    /// Where the child's stderr goes; [`Redirect::Pipe`] captures it.
    /// Replaces an earlier [`stderr_to_stdout`](Self::stderr_to_stdout).
    pub fn stderr(mut self, redirect: impl Into<Redirect>) -> Self {
        self.options = self.options.stderr(redirect);
        self
    }

    /// Sends stderr wherever stdout goes, through the same descriptor, in
    /// the order written (Python's `stderr=STDOUT`). With
    /// [`capture_output`](Self::capture_output), both are captured together
    /// in [`CompletedProcess::stdout`].
    #[doc(alias = "STDOUT")]
    pub fn stderr_to_stdout(mut self) -> Self {
        self.options = self.options.stderr_to_stdout();
        self
    }

    /// Runs the child in `dir` (Python's `cwd`).
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.options = self.options.cwd(dir);
        self
    }

    /// Sets one environment variable of the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.options = self.options.env(key, value);
        self
    }

    /// Sets several environment variables of the child.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.options = self.options.envs(vars);
        self
    }

    /// Removes one variable from the child's environment.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.options = self.options.env_remove(key);
        self
    }

    /// Starts the child with no environment but the variables set after
    /// this call.
    pub fn env_clear(mut self) -> Self {
        self.options = self.options.env_clear();
        self
    }

    /// Runs the command line through `/bin/sh -c` (Python's `shell=True`);
    /// see [`PopenOptions::shell`].
    ///
    /// ```
    /// use procs_core::subprocess::Run;
    ///
    /// let done = Run::new(["echo one two three | wc -w"]).shell(true).capture_output().run()?;
    /// assert_eq!(done.stdout_str().trim(), "3");
    /// # Ok::<(), procs_core::Error>(())
    /// ```
    pub fn shell(mut self, shell: bool) -> Self {
        self.options = self.options.shell(shell);
        self
    }

    /// Whether descriptors other than 0, 1, 2 and
    /// [`pass_fds`](Self::pass_fds) are closed in the child (Python's
    /// `close_fds`, `true` by default); see [`PopenOptions::close_fds`].
    pub fn close_fds(mut self, close_fds: bool) -> Self {
        self.options = self.options.close_fds(close_fds);
        self
    }

    /// Keeps these descriptors open in the child (Python's `pass_fds`); see
    /// [`PopenOptions::pass_fds`].
    pub fn pass_fds(mut self, fds: impl IntoIterator<Item = RawFd>) -> Self {
        self.options = self.options.pass_fds(fds);
        self
    }

    /// Runs `hook` in the child between fork and exec (Python's
    /// `preexec_fn`); see [`PopenOptions::pre_exec`].
    ///
    /// # Safety
    ///
    /// As [`PopenOptions::pre_exec`]: the hook may do only what is
    /// async-signal-safe.
    #[doc(alias = "preexec_fn")]
    pub unsafe fn pre_exec<F>(mut self, hook: F) -> Self
    where
        F: FnMut() -> io::Result<()> + Send + Sync + 'static,
    {
        // SAFETY: the caller makes the same promise to us.
        self.options = unsafe { self.options.pre_exec(hook) };
        self
    }

    /// Runs the child as this user (Python's `user`); see
    /// [`PopenOptions::user`].
    pub fn user(mut self, user: impl Into<NameOrId>) -> Self {
        self.options = self.options.user(user);
        self
    }

    /// Runs the child with this group (Python's `group`); see
    /// [`PopenOptions::group`].
    pub fn group(mut self, group: impl Into<NameOrId>) -> Self {
        self.options = self.options.group(group);
        self
    }

    /// Sets the child's file mode creation mask (Python's `umask`).
    pub fn umask(mut self, mask: u32) -> Self {
        self.options = self.options.umask(mask);
        self
    }

    /// Starts the child in a new session (Python's `start_new_session`); see
    /// [`PopenOptions::start_new_session`].
    pub fn start_new_session(mut self) -> Self {
        self.options = self.options.start_new_session();
        self
    }

    /// Gives the child at most `timeout` to end. The child is started in a
    /// process group of its own; when the time is up, the group (the child
    /// and whatever it started) is killed with SIGKILL, the child is reaped,
    /// and the run fails with [`Error::TimeoutExpired`] carrying the command,
    /// the timeout and the output captured so far (as bytes, in text mode
    /// too). See the [module documentation](super#timeouts-and-process-groups)
    /// for what the new group means for terminals.
    ///
    /// ```
    /// use std::time::Duration;
    /// use procs_core::{Error, subprocess::Run};
    ///
    /// let err = Run::new(["sh", "-c", "echo partial; exec sleep 10"])
    ///     .capture_output()
    ///     .timeout(Duration::from_millis(200))
    ///     .run()
    ///     .unwrap_err();
    /// let Error::TimeoutExpired { cmd, timeout, stdout, .. } = err else { panic!("{err:?}") };
    /// assert_eq!(cmd[0], "sh");
    /// assert_eq!(timeout, Duration::from_millis(200));
    /// assert_eq!(stdout, b"partial\n");
    /// # Ok::<(), procs_core::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Makes a non-zero exit code (or death by a signal) an
    /// [`Error::CalledProcessError`] (Python's `check=True`).
    pub fn check(mut self) -> Self {
        self.check = true;
        self
    }

    /// Starts the child, feeds it the input, collects the captured output
    /// and waits for it to end.
    ///
    /// # Errors
    ///
    /// [`Error::ProgramNotFound`] or [`Error::Os`] if it cannot be started;
    /// [`Error::TimeoutExpired`] if it outlived its timeout (it was killed);
    /// [`Error::CalledProcessError`] for a non-zero code under
    /// [`check`](Self::check); [`Error::InvalidArgument`] for both `input`
    /// and `stdin`, or an empty command line; in [text mode](Run::text),
    /// [`Error::UnicodeEncodeError`] for input the encoding cannot represent
    /// (nothing is started) and [`Error::UnicodeDecodeError`] for output
    /// that does not decode (the child has ended).
    pub fn run(self) -> Result<CompletedProcess<O>> {
        let Run {
            mut options,
            capture,
            input,
            timeout,
            check,
            output: PhantomData,
        } = self;
        let text = options.text;
        let input = match input {
            None => None,
            Some(Input::Bytes(bytes)) => Some(bytes),
            Some(Input::Text(s)) => Some(text.encode_input(options.args(), &s)?),
        };
        if input.is_some() {
            if options.stdin.is_some() {
                return Err(Error::InvalidArgument {
                    op: "run",
                    reason: "stdin and input cannot both be given",
                });
            }
            options.stdin = Some(Redirect::Pipe);
        }
        if capture {
            options.stdout.get_or_insert(Redirect::Pipe);
            options
                .stderr
                .get_or_insert(Stderr::Redirect(Redirect::Pipe));
        }
        if timeout.is_some() {
            options.process_group = Some(0);
        }

        let mut child = options.spawn()?;
        let (stdout, stderr) = match child.communicate(input.as_deref(), timeout) {
            Ok(output) => output,
            Err(e) => {
                // Python: "except: process.kill(); raise". The output so far
                // is in the error; the rest is not waited for.
                child.kill_and_reap();
                return Err(e);
            }
        };
        let returncode = child.wait()?;
        let args = std::mem::take(&mut child.args);
        let (stdout, stderr) = text.decode_outputs(&args, returncode, stdout, stderr)?;
        let done = CompletedProcess {
            args,
            returncode,
            stdout,
            stderr,
        };
        if check {
            done.check_returncode()
        } else {
            Ok(done)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // capture_output fills in only the streams not given otherwise, so the
    // order of the two calls does not matter.
    #[test]
    fn capture_output_keeps_stderr_to_stdout_in_either_order() {
        let script = ["sh", "-c", "echo 1; echo 2 >&2"];
        let a = Run::new(script).capture_output().stderr_to_stdout().run();
        let b = Run::new(script).stderr_to_stdout().capture_output().run();
        for done in [a, b] {
            let done = done.expect("sh runs");
            assert_eq!(done.stdout, b"1\n2\n");
            assert!(done.stderr.is_empty());
        }
    }
}
