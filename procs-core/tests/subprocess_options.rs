//! `subprocess`: Python's keyword arguments of `run` and `Popen` (shell,
//! text, close_fds, pass_fds, pre_exec, user, group, umask,
//! start_new_session), against real programs, with what the child sees read
//! back from the child itself (/proc/self/fd, `id`, `umask`, /proc/<pid>/stat).

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use procs_core::Error;
use procs_core::subprocess::{Encoding, ErrorHandler, Popen, Redirect, Run};

/// Long enough for anything a test waits for on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// A descriptor opened without `O_CLOEXEC`, as a C library or a careless
/// program would leave it: /dev/null, copied to a number of at least 200 so
/// that it cannot be mistaken for one the child opens itself.
fn leaked_fd() -> OwnedFd {
    // SAFETY: open of a NUL-terminated literal without O_CLOEXEC; F_DUPFD
    // makes a copy at the lowest free number from 200 (without
    // close-on-exec, as F_DUPFD never sets it); the original is closed once.
    let fd = unsafe {
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        assert!(fd >= 0, "open /dev/null");
        let high = libc::fcntl(fd, libc::F_DUPFD, 200);
        libc::close(fd);
        high
    };
    assert!(fd >= 200, "F_DUPFD");
    // SAFETY: `fd` was just opened here and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Whether `fd` has close-on-exec set in this process.
fn has_cloexec(fd: RawFd) -> bool {
    // SAFETY: fcntl(F_GETFD) on an integer; no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    assert!(flags >= 0, "fd {fd} is open");
    flags & libc::FD_CLOEXEC != 0
}

/// The descriptors a child of `run` has open, as `ls /proc/self/fd` in it
/// lists them.
fn child_fds(run: Run) -> Vec<RawFd> {
    let done = run.capture_output().check().run().expect("ls runs");
    done.stdout_str()
        .split_whitespace()
        .map(|f| f.parse().expect("a descriptor number"))
        .collect()
}

fn ls_fds() -> Run {
    Run::new(["ls", "/proc/self/fd"])
}

/// Reads `reader` to its end in a thread, giving up after `PATIENCE`.
fn read_to_end_within(mut reader: impl Read + Send + 'static) -> Vec<u8> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = tx.send(reader.read_to_end(&mut buf).map(|_| buf));
    });
    rx.recv_timeout(PATIENCE)
        .expect("the pipe reached its end in time")
        .expect("read")
}

/// A path in the temporary directory unique to this test process and
/// `name`, removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "procs-subprocess-options-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_file(&path);
        TempPath(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Whether this process runs as root (then it may change users).
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------- shell

#[test]
fn shell_runs_a_pipeline_through_sh() {
    let done = Run::new(["printf 'c\\nb\\na\\n' | sort | head -n 2"])
        .shell(true)
        .capture_output()
        .check()
        .run()
        .expect("sh runs the pipeline");
    assert_eq!(done.stdout, b"a\nb\n");
    assert_eq!(done.args, ["printf 'c\\nb\\na\\n' | sort | head -n 2"]);
}

#[test]
fn shell_passes_the_other_arguments_as_dollar_zero_and_on() {
    let done = Run::new(["echo \"$0|$1|$2\"", "zero", "one", "two words"])
        .shell(true)
        .capture_output()
        .run()
        .expect("sh runs");
    assert_eq!(done.stdout_str(), "zero|one|two words\n");
}

#[test]
fn shell_reports_the_scripts_exit_code_and_false_runs_the_program_itself() {
    let code = Run::new(["exit 3"]).shell(true).run().expect("sh runs");
    assert_eq!(code.returncode, 3);
    // Without the shell, the whole string is the program's name.
    let err = Run::new(["exit 3"]).shell(false).run().unwrap_err();
    assert!(
        matches!(&err, Error::ProgramNotFound { program } if program == "exit 3"),
        "{err:?}"
    );
}

#[test]
fn popen_shell_with_pipes_and_cwd() {
    let dir = std::env::temp_dir();
    let mut p = Popen::builder(["pwd | tr / :"])
        .shell(true)
        .cwd(&dir)
        .stdout(Redirect::Pipe)
        .spawn()
        .expect("spawn sh");
    assert_eq!(p.args(), ["pwd | tr / :"]);
    let (out, _) = p.communicate(None, Some(PATIENCE)).expect("communicate");
    let expected = dir
        .canonicalize()
        .expect("temp dir")
        .display()
        .to_string()
        .replace('/', ":");
    assert_eq!(String::from_utf8(out).expect("text").trim_end(), expected);
}

// ---------------------------------------------------------------- text

#[test]
fn text_mode_decodes_utf8_both_ways() {
    let done = Run::new(["sh", "-c", "cat; printf 'ß\\n' >&2"])
        .text()
        .input("héllo wörld ✓")
        .capture_output()
        .run()
        .expect("sh runs");
    let stdout: String = done.stdout;
    assert_eq!(stdout, "héllo wörld ✓");
    assert_eq!(done.stderr, "ß\n");
}

#[test]
fn text_mode_with_an_invalid_byte_is_a_decode_error_that_keeps_the_bytes() {
    let err = Run::new([
        "sh",
        "-c",
        "printf 'ok\\303\\050tail'; printf 'err' >&2; exit 5",
    ])
    .capture_output()
    .text()
    .run()
    .unwrap_err();
    match &err {
        Error::UnicodeDecodeError {
            cmd,
            stream,
            encoding,
            position,
            returncode,
            stdout,
            stderr,
        } => {
            assert_eq!(cmd[0], "sh");
            assert_eq!((*stream, *encoding, *position), ("stdout", "utf-8", 2));
            assert_eq!(*returncode, 5);
            assert_eq!(stdout, b"ok\xc3\x28tail");
            assert_eq!(stderr, b"err");
        }
        other => panic!("expected UnicodeDecodeError, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("utf-8 cannot decode the stdout"), "{msg}");
    assert!(msg.contains("offset 2"), "{msg}");
}

#[test]
fn text_mode_names_stderr_when_it_is_the_one_that_does_not_decode() {
    let err = Run::new(["sh", "-c", "printf fine; printf '\\377' >&2"])
        .capture_output()
        .text()
        .run()
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnicodeDecodeError { stream: "stderr", position: 0, stdout, .. } if stdout == b"fine"),
        "{err:?}"
    );
}

#[test]
fn text_mode_replaces_or_ignores_when_asked() {
    let script = ["printf", "a\\377b\\303"];
    let replaced = Run::new(script)
        .capture_output()
        .text()
        .errors(ErrorHandler::Replace)
        .run()
        .expect("printf runs");
    assert_eq!(replaced.stdout, "a\u{fffd}b\u{fffd}");
    let ignored = Run::new(script)
        .capture_output()
        .text()
        .errors(ErrorHandler::Ignore)
        .run()
        .expect("printf runs");
    assert_eq!(ignored.stdout, "ab");
}

#[test]
fn text_mode_in_latin1_decodes_every_byte_and_encodes_the_input() {
    let done = Run::new(["od", "-An", "-tx1"])
        .text()
        .encoding(Encoding::Latin1)
        .input("é")
        .capture_output()
        .run()
        .expect("od runs");
    assert_eq!(done.stdout.trim(), "e9", "é is one byte in latin-1");
    let done = Run::new(["printf", "\\351t\\351"])
        .capture_output()
        .text()
        .encoding(Encoding::Latin1)
        .run()
        .expect("printf runs");
    assert_eq!(done.stdout, "été");
}

#[test]
fn text_input_the_encoding_cannot_represent_starts_nothing() {
    let marker = TempPath::new("never-started");
    let err = Run::new([
        "sh",
        "-c",
        "touch \"$0\"; cat",
        marker.0.to_str().expect("utf-8 path"),
    ])
    .text()
    .encoding(Encoding::Ascii)
    .input("plain, then €")
    .capture_output()
    .run()
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnicodeEncodeError {
                encoding: "ascii",
                position: 12,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!marker.0.exists(), "the child was started");
}

#[test]
fn text_mode_check_failure_carries_the_text_as_bytes() {
    let err = Run::new(["sh", "-c", "printf 'ünder'; exit 2"])
        .capture_output()
        .text()
        .check()
        .run()
        .unwrap_err();
    assert!(
        matches!(&err, Error::CalledProcessError { returncode: 2, stdout, .. } if stdout == "ünder".as_bytes()),
        "{err:?}"
    );
}

#[test]
fn text_mode_timeout_keeps_the_output_so_far_as_bytes() {
    let err = Run::new(["sh", "-c", "printf 'part\\377'; exec sleep 10"])
        .capture_output()
        .text()
        .timeout(Duration::from_millis(300))
        .run()
        .unwrap_err();
    match err {
        Error::TimeoutExpired {
            timeout, stdout, ..
        } => {
            assert_eq!(timeout, Duration::from_millis(300));
            assert_eq!(stdout, b"part\xff");
        }
        other => panic!("expected TimeoutExpired, got {other:?}"),
    }
}

#[test]
fn communicate_text_encodes_and_decodes_with_the_popens_settings() {
    let mut p = Popen::builder(["cat"])
        .stdin(Redirect::Pipe)
        .stdout(Redirect::Pipe)
        .encoding(Encoding::Latin1)
        .spawn()
        .expect("spawn cat");
    let (out, err) = p
        .communicate_text(Some("çà"), Some(PATIENCE))
        .expect("communicate");
    assert_eq!((out.as_str(), err.as_str()), ("çà", ""));
    assert_eq!(p.returncode(), Some(0));

    let mut p = Popen::builder(["printf", "\\377"])
        .stdout(Redirect::Pipe)
        .spawn()
        .expect("spawn printf");
    let err = p.communicate_text(None, Some(PATIENCE)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnicodeDecodeError {
                stream: "stdout",
                returncode: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(p.returncode(), Some(0), "the child was reaped");
}

// ---------------------------------------------------------------- descriptors

#[test]
fn close_fds_hides_a_descriptor_opened_without_cloexec() {
    let leaked = leaked_fd();
    let fd = leaked.as_raw_fd();
    assert!(!has_cloexec(fd));

    let by_default = child_fds(ls_fds());
    assert!(!by_default.contains(&fd), "fd {fd} leaked: {by_default:?}");
    let closed = child_fds(ls_fds().close_fds(true));
    assert!(!closed.contains(&fd), "fd {fd} leaked: {closed:?}");
    // Only what std sets up, and the directory ls reads.
    assert!(closed.iter().all(|&n| n < 200), "{closed:?}");
    assert!(closed.starts_with(&[0, 1, 2]), "{closed:?}");

    // close_fds(false) is std's behaviour: an inheritable one gets through.
    let open = child_fds(ls_fds().close_fds(false));
    assert!(open.contains(&fd), "fd {fd} not inherited: {open:?}");
    // The parent's own descriptor is untouched.
    assert!(!has_cloexec(fd));
}

#[test]
fn close_fds_applies_to_popen_too() {
    let leaked = leaked_fd();
    let fd = leaked.as_raw_fd();
    let mut p = Popen::builder(["ls", "/proc/self/fd"])
        .stdout(Redirect::Pipe)
        .spawn()
        .expect("spawn ls");
    let (out, _) = p.communicate(None, Some(PATIENCE)).expect("communicate");
    let out = String::from_utf8(out).expect("text");
    assert!(
        !out.split_whitespace().any(|n| n == fd.to_string()),
        "fd {fd} leaked: {out}"
    );
}

#[test]
fn pass_fds_keeps_the_listed_descriptor_and_only_it() {
    let passed = leaked_fd();
    let other = leaked_fd();
    let (passed_fd, other_fd) = (passed.as_raw_fd(), other.as_raw_fd());
    let fds = child_fds(ls_fds().pass_fds([passed_fd]));
    assert!(
        fds.contains(&passed_fd),
        "fd {passed_fd} not passed: {fds:?}"
    );
    assert!(!fds.contains(&other_fd), "fd {other_fd} leaked: {fds:?}");
}

#[test]
fn pass_fds_clears_cloexec_in_the_child_only_so_it_can_write_there() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    let fd = writer.as_raw_fd();
    assert!(has_cloexec(fd), "std opens pipes close-on-exec");
    let script = format!("echo \"written to $0\" >&{fd}");
    let mut p = Popen::builder(["sh", "-c", &script, &fd.to_string()])
        .pass_fds([fd])
        .close_fds(true)
        .spawn()
        .expect("spawn sh");
    drop(writer);
    let got = read_to_end_within(reader);
    assert_eq!(got, format!("written to {fd}\n").into_bytes());
    assert_eq!(p.wait_timeout(PATIENCE).expect("wait"), 0);

    // Without pass_fds, the same script finds no such descriptor.
    let (reader, writer) = std::io::pipe().expect("pipe");
    let fd = writer.as_raw_fd();
    let done = Run::new(["sh", "-c", &format!("echo x >&{fd}")])
        .capture_output()
        .run()
        .expect("sh runs");
    drop(writer);
    assert_ne!(done.returncode, 0, "the write should fail");
    assert!(read_to_end_within(reader).is_empty());
}

#[test]
fn pass_fds_with_a_closed_descriptor_is_an_error_before_starting() {
    let fd = leaked_fd();
    let number = fd.as_raw_fd();
    drop(fd);
    let err = Run::new(["true"]).pass_fds([number]).run().unwrap_err();
    match &err {
        Error::Os { op: "pass_fds", .. } => {}
        other => panic!("expected Os pass_fds, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&format!("descriptor {number}")),
        "{err}"
    );
}

// ---------------------------------------------------------------- pre_exec

#[test]
fn pre_exec_hook_writes_to_a_pipe_before_the_program_starts() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    let fd = writer.as_raw_fd();
    let hook = move || {
        let msg = b"hook\n";
        // SAFETY: `msg` is valid for its length; `fd` is the pipe's write
        // end, open in the child until the exec.
        let n = unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
        if n == msg.len() as isize {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: the hook calls write(2) on a descriptor and a static buffer:
    // async-signal-safe, no allocation, no lock.
    let run = unsafe { Run::new(["sh", "-c", "echo program"]).pre_exec(hook) };
    let done = run.capture_output().check().run().expect("sh runs");
    drop(writer);
    assert_eq!(done.stdout, b"program\n");
    assert_eq!(read_to_end_within(reader), b"hook\n");
}

#[test]
fn pre_exec_hook_calls_setpgid() {
    let hook = || {
        // SAFETY: setpgid takes two integers; no memory.
        if unsafe { libc::setpgid(0, 0) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: the hook makes one setpgid(2) call, which is async-signal-safe.
    let run =
        unsafe { Run::new(["sh", "-c", "echo $$; cut -d' ' -f5 /proc/$$/stat"]).pre_exec(hook) };
    let done = run.capture_output().check().run().expect("sh runs");
    let out = done.stdout_str();
    let ids: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(ids.len(), 2, "{out}");
    assert_eq!(ids[0], ids[1], "its group is its own pid");
    // SAFETY: getpgrp has no preconditions.
    let ours = unsafe { libc::getpgrp() };
    assert_ne!(ids[1], ours.to_string());
}

#[test]
fn pre_exec_hook_error_fails_the_spawn_and_runs_nothing() {
    let marker = TempPath::new("hook-failed");
    // SAFETY: the hook only builds an io::Error from an integer.
    let run = unsafe {
        Run::new([
            "sh",
            "-c",
            "touch \"$0\"",
            marker.0.to_str().expect("utf-8 path"),
        ])
        .pre_exec(|| Err(std::io::Error::from_raw_os_error(libc::EPERM)))
    };
    let err = run.run().unwrap_err();
    match &err {
        Error::Os { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied);
            let msg = err.to_string();
            assert!(msg.contains("sh: Operation not permitted"), "{msg}");
        }
        other => panic!("expected Os, got {other:?}"),
    }
    assert!(!marker.0.exists(), "the program ran");
}

// ---------------------------------------------------------------- user, group, umask

#[test]
fn user_and_group_by_name_and_id_as_root() {
    if !is_root() {
        eprintln!("skipped: changing users needs root, and this test runs as uid != 0");
        return;
    }
    let id = |flag: &str| {
        let done = Run::new(["id", flag, "nobody"])
            .capture_output()
            .check()
            .run()
            .expect("id knows nobody");
        done.stdout_str().trim().parse::<u32>().expect("a number")
    };
    let (uid, gid) = (id("-u"), id("-g"));
    assert_ne!(uid, 0);

    let ids = |run: Run| {
        let done = run.capture_output().check().run().expect("sh runs");
        done.stdout_str()
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let script = ["sh", "-c", "id -u; id -g; id -G"];
    let by_name = ids(Run::new(script).user("nobody"));
    assert_eq!(by_name[0], uid.to_string());
    assert_eq!(by_name[1], "0", "the group stays ours without group()");
    let both = ids(Run::new(script).user(uid).group(gid));
    assert_eq!(&both[..2], [uid.to_string(), gid.to_string()]);
    assert_eq!(both[2..], [gid.to_string()], "supplementary groups dropped");
}

#[test]
fn an_unknown_user_or_group_is_named_in_the_error() {
    let err = Run::new(["true"])
        .user("no-such-user-procs")
        .run()
        .unwrap_err();
    assert!(
        matches!(&err, Error::NoSuchAccount { kind: "user", name } if name == "no-such-user-procs"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "no such user: no-such-user-procs");
    let err = Run::new(["true"])
        .group("no-such-group-procs")
        .run()
        .unwrap_err();
    assert!(
        matches!(&err, Error::NoSuchAccount { kind: "group", .. }),
        "{err:?}"
    );
}

#[test]
fn umask_is_what_the_child_reports_and_what_its_files_get() {
    let done = Run::new(["sh", "-c", "umask"])
        .umask(0o027)
        .capture_output()
        .run()
        .expect("sh runs");
    assert_eq!(done.stdout_str().trim(), "0027");
    let file = TempPath::new("umask-file");
    Run::new(["touch", file.0.to_str().expect("utf-8 path")])
        .umask(0o077)
        .check()
        .run()
        .expect("touch runs");
    use std::os::unix::fs::PermissionsExt;
    let mode = File::open(&file.0)
        .and_then(|f| f.metadata())
        .expect("the file exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn run_start_new_session_makes_the_child_lead_a_session() {
    // Field 6 of /proc/<pid>/stat is the session id.
    let done = Run::new(["sh", "-c", "echo $$; cut -d' ' -f6 /proc/$$/stat"])
        .start_new_session()
        .capture_output()
        .check()
        .run()
        .expect("sh runs");
    let out = done.stdout_str();
    let ids: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(ids.len(), 2, "{out}");
    assert_eq!(ids[0], ids[1], "the session id is the child's pid");
    // SAFETY: getsid(0) asks for this process's session; no memory.
    let ours = unsafe { libc::getsid(0) };
    assert_ne!(ids[1], ours.to_string());
}
