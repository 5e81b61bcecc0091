//! [`PopenOptions`], the builder of a [`Popen`]: Python's `Popen(...)`
//! keyword arguments, and the spawn that turns them into a
//! [`std::process::Command`] (with what the child does between fork and
//! exec: umask, session, the caller's hooks, close_fds and pass_fds).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};

use super::text::TextMode;
use super::{Encoding, ErrorHandler, Popen, Redirect, Stderr};
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
    /// The command line as given (with `shell`, the script first).
    argv: Vec<OsString>,
    /// The same, as text, for [`Popen::args`] and errors.
    args: Vec<String>,
    cwd: Option<PathBuf>,
    /// Changes to the environment, in the order they were asked for.
    env: Vec<EnvChange>,
    shell: bool,
    close_fds: bool,
    pass_fds: Vec<RawFd>,
    pre_exec: Hooks,
    user: Option<NameOrId>,
    group: Option<NameOrId>,
    umask: Option<u32>,
    pub(super) text: TextMode,
    pub(super) stdin: Option<Redirect>,
    pub(super) stdout: Option<Redirect>,
    pub(super) stderr: Option<Stderr>,
    pub(super) process_group: Option<i32>,
    pub(super) start_new_session: bool,
}

/// One change to the child's environment.
#[derive(Debug)]
enum EnvChange {
    Set(OsString, OsString),
    Remove(OsString),
    Clear,
}

/// A hook that runs in the child between fork and exec.
type Hook = Box<dyn FnMut() -> io::Result<()> + Send + Sync>;

/// The [`PopenOptions::pre_exec`] hooks, in order.
#[derive(Default)]
struct Hooks(Vec<Hook>);

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} pre-exec hook(s)", self.0.len())
    }
}

/// A user or a group, by name or by numeric id, to run a child as
/// ([`PopenOptions::user`], [`PopenOptions::group`]). Names are looked up
/// (`getpwnam`, `getgrnam`) in the parent, when the child is spawned.
///
/// `"nobody"` and `65534` both convert into one with `From`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameOrId {
    /// A name, e.g. `nobody`.
    Name(String),
    /// A numeric id.
    Id(u32),
}

impl From<&str> for NameOrId {
    fn from(name: &str) -> Self {
        NameOrId::Name(name.to_owned())
    }
}

impl From<String> for NameOrId {
    fn from(name: String) -> Self {
        NameOrId::Name(name)
    }
}

impl From<u32> for NameOrId {
    fn from(id: u32) -> Self {
        NameOrId::Id(id)
    }
}

impl NameOrId {
    /// The numeric uid (`group` false) or gid (`group` true).
    fn resolve(&self, group: bool) -> Result<u32> {
        let name = match self {
            NameOrId::Id(id) => return Ok(*id),
            NameOrId::Name(name) => name,
        };
        let (kind, found) = if group {
            let found =
                nix::unistd::Group::from_name(name).map_err(|e| Error::os("getgrnam", e))?;
            ("group", found.map(|g| g.gid.as_raw()))
        } else {
            let found = nix::unistd::User::from_name(name).map_err(|e| Error::os("getpwnam", e))?;
            ("user", found.map(|u| u.uid.as_raw()))
        };
        found.ok_or_else(|| Error::NoSuchAccount {
            kind,
            name: name.clone(),
        })
    }
}

impl PopenOptions {
    /// Options for running `args`: the program (looked up in `PATH` when it
    /// has no `/`), then its arguments.
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let argv: Vec<OsString> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        PopenOptions {
            args: argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            argv,
            cwd: None,
            env: Vec::new(),
            shell: false,
            close_fds: true,
            pass_fds: Vec::new(),
            pre_exec: Hooks::default(),
            user: None,
            group: None,
            umask: None,
            text: TextMode::default(),
            stdin: None,
            stdout: None,
            stderr: None,
            process_group: None,
            start_new_session: false,
        }
    }

    /// The command line as given.
    pub(super) fn args(&self) -> &[String] {
        &self.args
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
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Sets one environment variable of the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push(EnvChange::Set(
            key.as_ref().to_os_string(),
            value.as_ref().to_os_string(),
        ));
        self
    }

    /// Sets several environment variables of the child.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (key, value) in vars {
            self = self.env(key, value);
        }
        self
    }

    /// Removes one variable from the child's environment.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env
            .push(EnvChange::Remove(key.as_ref().to_os_string()));
        self
    }

    /// Starts the child with no environment but the variables set after
    /// this call (Python's `env={...}`, which replaces the whole environment).
    pub fn env_clear(mut self) -> Self {
        self.env.push(EnvChange::Clear);
        self
    }

    /// Runs the command line through the shell, `/bin/sh -c` (Python's
    /// `shell=True`): its first element is the shell script, with pipes,
    /// redirections and globs, and the others become the script's `$0`,
    /// `$1`, ... Quote what comes from outside yourself: the shell
    /// interprets it.
    ///
    /// ```
    /// use procs_core::subprocess::{Popen, Redirect};
    ///
    /// let mut p = Popen::builder(["printf 'b\na\n' | sort | tr a-z A-Z"])
    ///     .shell(true)
    ///     .stdout(Redirect::Pipe)
    ///     .spawn()?;
    /// let (out, _) = p.communicate(None, None)?;
    /// assert_eq!(out, b"A\nB\n");
    /// # Ok::<(), procs_core::Error>(())
    /// ```
    pub fn shell(mut self, shell: bool) -> Self {
        self.shell = shell;
        self
    }

    /// Whether descriptors other than stdin, stdout, stderr and
    /// [`pass_fds`](Self::pass_fds) are closed in the child (Python's
    /// `close_fds`, `true` by default). std marks the descriptors it opens
    /// close-on-exec, but not those the program (or a C library) opened
    /// without `O_CLOEXEC`; with `close_fds`, the child marks every one of
    /// its descriptors from 3 up close-on-exec before it executes the
    /// program, so none of those leaks into it. `false` lets them through,
    /// as a bare [`std::process::Command`] does.
    ///
    /// Passing descriptors with [`pass_fds`](Self::pass_fds) sets this back
    /// to `true`, as in Python.
    pub fn close_fds(mut self, close_fds: bool) -> Self {
        self.close_fds = close_fds;
        self
    }

    /// Keeps these descriptors open in the child, at the same numbers
    /// (Python's `pass_fds`), and every other one from 3 up closed (this
    /// sets [`close_fds`](Self::close_fds)). Each must be open in this
    /// process when the child is spawned; its close-on-exec flag is cleared
    /// in the child only.
    ///
    /// ```
    /// use std::os::fd::AsRawFd;
    /// use procs_core::subprocess::Run;
    ///
    /// let (reader, writer) = std::io::pipe()?;
    /// let fd = writer.as_raw_fd();
    /// Run::new(["sh", "-c", &format!("echo through {fd} >&{fd}")])
    ///     .pass_fds([fd])
    ///     .check()
    ///     .run()?;
    /// drop(writer);
    /// assert_eq!(std::io::read_to_string(reader)?, format!("through {fd}\n"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pass_fds(mut self, fds: impl IntoIterator<Item = RawFd>) -> Self {
        self.pass_fds.extend(fds);
        self.close_fds = true;
        self
    }

    /// Runs `hook` in the child after fork and before exec (Python's
    /// `preexec_fn`, std's [`CommandExt::pre_exec`]). Hooks run in the order
    /// given, after the child's streams, working directory, user, group,
    /// process group, [`umask`](Self::umask) and session are set, and before
    /// [`close_fds`](Self::close_fds) is applied. An error from a hook makes
    /// [`spawn`](Self::spawn) fail with it; the program is not executed.
    ///
    /// # Safety
    ///
    /// The hook runs in a forked copy of this process that has only the
    /// forking thread. Any lock another thread held at the fork (the
    /// allocator's in some C libraries, stdout's, a `Mutex` of your own)
    /// stays locked for ever there, so the hook must do only what is
    /// async-signal-safe (`signal-safety(7)`): raw system calls such as
    /// `setpgid`, `dup2`, `write`, `prctl`, `setrlimit`, without allocating,
    /// printing, or taking locks. Python's `preexec_fn` has the same hazard
    /// and says so. Descriptors the hook opens are closed by `close_fds`
    /// unless it clears their close-on-exec flag itself and `close_fds` is
    /// off.
    ///
    /// ```
    /// use procs_core::subprocess::Run;
    ///
    /// // The child makes itself the leader of a new process group.
    /// let run = Run::new(["sh", "-c", "cut -d' ' -f5 /proc/$$/stat; echo $$"]).capture_output();
    /// // SAFETY: setpgid(2) is async-signal-safe; nothing is allocated or locked.
    /// let run = unsafe {
    ///     run.pre_exec(|| nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))
    ///         .map_err(std::io::Error::from))
    /// };
    /// let done = run.run()?;
    /// let out = done.stdout_str();
    /// let ids: Vec<&str> = out.split_whitespace().collect();
    /// assert_eq!(ids[0], ids[1], "the group id is the child's pid");
    /// # Ok::<(), procs_core::Error>(())
    /// ```
    #[doc(alias = "preexec_fn")]
    pub unsafe fn pre_exec<F>(mut self, hook: F) -> Self
    where
        F: FnMut() -> io::Result<()> + Send + Sync + 'static,
    {
        self.pre_exec.0.push(Box::new(hook));
        self
    }

    /// Runs the child as this user (Python's `user`): by name, looked up in
    /// the parent, or by uid. The child calls `setgroups(0)` (when allowed)
    /// and `setuid` before the program starts; its group stays this
    /// process's unless [`group`](Self::group) is given too. Needs the
    /// privilege to change users (root, or `CAP_SETUID`).
    ///
    /// ```no_run
    /// use procs_core::subprocess::Run;
    ///
    /// // As root: Python's run(["id", "-u"], user="nobody", group="nogroup").
    /// let done = Run::new(["id", "-u"]).user("nobody").group(65534).capture_output().run()?;
    /// assert_ne!(done.stdout_str().trim(), "0");
    /// # Ok::<(), procs_core::Error>(())
    /// ```
    pub fn user(mut self, user: impl Into<NameOrId>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Runs the child with this group (Python's `group`): by name, looked up
    /// in the parent, or by gid (`setgid` in the child).
    pub fn group(mut self, group: impl Into<NameOrId>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Sets the child's file mode creation mask (Python's `umask`), e.g.
    /// `0o077` for files only their owner can read.
    ///
    /// ```
    /// use procs_core::subprocess::Run;
    ///
    /// let done = Run::new(["sh", "-c", "umask"]).umask(0o027).capture_output().run()?;
    /// assert_eq!(done.stdout_str().trim(), "0027");
    /// # Ok::<(), procs_core::Error>(())
    /// ```
    pub fn umask(mut self, mask: u32) -> Self {
        self.umask = Some(mask);
        self
    }

    /// The encoding [`Popen::communicate_text`] uses for the input and the
    /// output (Python's `encoding`; UTF-8 by default).
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.text.encoding = encoding;
        self
    }

    /// What [`Popen::communicate_text`] does with bytes that do not decode
    /// (Python's `errors`; [`ErrorHandler::Strict`] by default).
    pub fn errors(mut self, errors: ErrorHandler) -> Self {
        self.text.errors = errors;
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
    /// does not exist, when a descriptor cannot be duplicated, when a
    /// descriptor of [`pass_fds`](Self::pass_fds) is not open, or when the
    /// child cannot take the user or group (or a [`pre_exec`](Self::pre_exec)
    /// hook fails); [`Error::NoSuchAccount`] for a user or group name that
    /// does not exist; [`Error::InvalidArgument`] for an empty command line.
    pub fn spawn(self) -> Result<Popen> {
        let PopenOptions {
            argv,
            args,
            cwd,
            env,
            shell,
            close_fds,
            mut pass_fds,
            pre_exec,
            user,
            group,
            umask,
            text,
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
        let (program, mut command) = if shell {
            let mut command = Command::new(SHELL);
            command.arg("-c").args(&argv);
            (SHELL.to_owned(), command)
        } else {
            let mut command = Command::new(&argv[0]);
            command.args(&argv[1..]);
            (args[0].clone(), command)
        };
        if let Some(dir) = &cwd {
            command.current_dir(dir);
        }
        for change in env {
            match change {
                EnvChange::Set(key, value) => command.env(key, value),
                EnvChange::Remove(key) => command.env_remove(key),
                EnvChange::Clear => command.env_clear(),
            };
        }
        if let Some(user) = &user {
            command.uid(user.resolve(false)?);
        }
        if let Some(group) = &group {
            command.gid(group.resolve(true)?);
        }
        for &fd in &pass_fds {
            if !sys::exec::is_open(fd) {
                return Err(Error::io(
                    "pass_fds",
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("descriptor {fd} is not open in this process"),
                    ),
                ));
            }
        }
        pass_fds.sort_unstable();
        pass_fds.dedup();

        // The hooks run in the child between fork and exec, in this order,
        // after std has set the streams, directory, user, group and process
        // group: umask, session, the caller's hooks, then close_fds last so
        // that it also covers what the hooks opened.
        if let Some(mask) = umask {
            // SAFETY: umask(2) is async-signal-safe; the closure allocates
            // nothing and takes no lock.
            unsafe {
                command.pre_exec(move || {
                    sys::exec::set_umask(mask);
                    Ok(())
                });
            }
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
        for hook in pre_exec.0 {
            // SAFETY: the caller of `PopenOptions::pre_exec` promised that the
            // hook is async-signal-safe, which is what std's pre_exec asks.
            unsafe {
                command.pre_exec(hook);
            }
        }
        if close_fds {
            // SAFETY: the closure runs between fork and exec: it makes only
            // close_range, open, getdents64, fcntl and close calls (all
            // async-signal-safe), on a stack buffer, and reads `pass_fds`,
            // which was allocated in the parent and is not freed in the child
            // before the exec.
            unsafe {
                command.pre_exec(move || {
                    sys::exec::cloexec_from(3)?;
                    for &fd in &pass_fds {
                        sys::exec::clear_cloexec(fd)?;
                    }
                    Ok(())
                });
            }
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
        // The command holds the parent's copies of the descriptors given to
        // the child (the write end of a merged pipe among them): close them
        // now, or reading that pipe would never see the end of the data.
        drop(command);
        let child = spawned.map_err(|e| spawn_error(&program, cwd.as_deref(), e))?;
        let own_group = start_new_session || process_group == Some(0);
        Ok(Popen::started(child, args, merged_stdout, own_group, text))
    }
}

/// The shell of [`PopenOptions::shell`], as Python's on POSIX.
const SHELL: &str = "/bin/sh";

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
