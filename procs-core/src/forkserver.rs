//! The forkserver start method: a server process, started on first use as
//! a fresh execution of this program (so single-threaded, whatever this
//! process's threads hold), forks each child on request. A child then
//! costs a fork of a small clean process, not an exec.
//!
//! ```text
//! parent -> server  b"F" + SCM_RIGHTS [task memfd, result pipe, status pipe]
//! server -> parent  the child's pid (i32, little-endian), or -errno
//! parent -> server  b"A" + pid: the parent holds a pidfd of it now
//! server -> status  the exit code (i32, Python's signs) once it reaped it
//! ```
//!
//! The server reaps a child only after the parent's acknowledgement, so
//! the pid the parent opens a pidfd for cannot be another process's; the
//! parent signals through that pidfd, and learns the exit code from the
//! status pipe (which is the child's sentinel). Requests are one at a time,
//! under the registry's lock, which a fork of this process also holds: a
//! child forked meanwhile never inherits a request half made. The server
//! dies with this process (a parent-death signal: it is a daemon child)
//! and ends when its socket closes; a daemon child of the server dies with
//! the server.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};
use crate::process::{Process, ProcessBuilder, StartMethod};
use crate::registry::{self, Child};
use crate::respawn::{Image, Plan, memfd};
use crate::spawn::JoinHandle;
use crate::sys;

/// The environment variable that makes a fresh execution the server: the
/// number of its end of the socket.
pub(crate) const ENV: &str = "PROCS_FORKSERVER";

/// The most handles (descriptors) a forkserver child's argument may hold:
/// they travel in one message with the request's three.
const MAX_HANDLES: usize = 61;

/// How long a request waits for the server's answer before the server is
/// taken for dead.
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Room for a message's descriptors: the request's three and the handles.
const CONTROL_WORDS: usize = 48;

/// This process's server.
pub(crate) struct Server {
    /// The process the server belongs to (a fork inherits the record).
    owner: i32,
    sock: OwnedFd,
    process: Process,
}

impl Server {
    /// In a forked child of the owner: closes the inherited socket (the
    /// server is not this process's) and leaves the rest, whose drop would
    /// take the registry's lock, which the child's fork holds.
    pub(crate) fn forget_in_child(self) {
        // SAFETY: closing a descriptor this record owns; close is
        // async-signal-safe. The OwnedFd is forgotten so it is not closed
        // twice.
        unsafe { libc::close(self.sock.as_raw_fd()) };
        std::mem::forget(self);
    }
}

/// Starts a child of `builder` that runs the task `plan` describes,
/// forked by this process's server (started now if it has none).
pub(crate) fn start<A, R: Serialize + DeserializeOwned>(
    builder: ProcessBuilder,
    plan: Plan,
    arg: A,
) -> Result<JoinHandle<R>> {
    let mut arg = Some(arg);
    let mut process = builder.start_method(StartMethod::Forkserver).build(|| {});
    let me = crate::current_process();
    let bytes = plan.task(&process, (me.pid, me.name.clone()))?;
    let task = memfd()?;
    std::fs::File::from(
        task.try_clone()
            .map_err(|e| Error::io("dup the forkserver task", e))?,
    )
    .write_all(&bytes)
    .map_err(|e| Error::io("write the forkserver task", e))?;
    let (result_r, result_w) = pipe(0)?;
    let (status_r, status_w) = pipe(libc::O_NONBLOCK)?;
    if plan.handles.len() > MAX_HANDLES {
        return Err(Error::Encode(format!(
            "{} handles in the argument: a forkserver child takes at most {MAX_HANDLES}",
            plan.handles.len()
        )));
    }
    let mut fds = vec![task.as_raw_fd(), result_w.as_raw_fd(), status_w.as_raw_fd()];
    fds.extend(plan.handles.iter().map(|h| h.as_raw_fd()));
    // A server that died since the last request is replaced once, at once.
    let mut retried = false;
    let record = loop {
        let mut st = registry::state();
        if st.daemon {
            return Err(Error::DaemonicChildren {
                name: st.name().to_owned(),
            });
        }
        let mine = st.forkserver.as_ref().is_some_and(|s| s.owner == me.pid);
        if !mine {
            if let Some(old) = st.forkserver.take() {
                old.forget_in_child();
            }
            drop(st);
            let server = launch(me.pid)?;
            let mut st = registry::state();
            if st.forkserver.is_none() {
                st.forkserver = Some(server);
            }
            continue;
        }
        let server = st.forkserver.as_ref().expect("checked above");
        let sock = server.sock.as_fd();
        let started = request(sock, &fds).and_then(|pid| {
            // The server reaps it only after the acknowledgement: the pid
            // is this child's while the pidfd is opened.
            let pidfd = sys::pidfd_open(pid).map_err(|e| Error::io("pidfd_open", e));
            // The argument's handles are handed over to the child (those
            // that count their holders count it) before it runs: the
            // server holds it until the acknowledgement.
            if let Some(arg) = arg.take() {
                crate::handover::dropping_for(pid, arg);
            }
            let mut ack = [b'A', 0, 0, 0, 0];
            ack[1..].copy_from_slice(&pid.to_le_bytes());
            match (pidfd, send(sock, &ack, &[])) {
                (Ok(fd), Ok(())) => Ok((pid, fd)),
                (Err(e), _) | (_, Err(e)) => {
                    // SAFETY: kill takes a pid and a signal; the pid is the
                    // server's child, not reaped without our ack.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    Err(e)
                }
            }
        });
        match started {
            Ok((pid, pidfd)) => {
                let record = Arc::new(Child::served(
                    pid,
                    me.pid,
                    process.name().to_owned(),
                    process.daemon(),
                    pidfd,
                    status_r,
                ));
                st.children.push(Arc::clone(&record));
                break record;
            }
            Err(e) => {
                // A server that failed is replaced next time; it is ended
                // outside the registry's lock (its handle's drop takes it).
                let old = st.forkserver.take();
                drop(st);
                if let Some(old) = old {
                    stop(old);
                }
                if !retried {
                    retried = true;
                    continue;
                }
                return Err(e);
            }
        }
    };
    drop((task, result_w, status_w));
    process.set_started(record);
    Ok(JoinHandle::new(process, result_r))
}

/// Ends a server that failed us: its socket closes (it then ends) and it
/// is killed and reaped.
fn stop(server: Server) {
    let Server {
        sock, mut process, ..
    } = server;
    drop(sock);
    let _ = process.kill();
    let _ = process.join();
}

/// Starts this process's server: a daemon child that executes this program
/// afresh with its end of a socket pair.
fn launch(owner: i32) -> Result<Server> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for socketpair to fill.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(Error::io("socketpair", std::io::Error::last_os_error()));
    }
    // SAFETY: socketpair succeeded: both descriptors are new and ours.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let image = Image::new(ENV, theirs.as_raw_fd().to_string());
    let mut process = Process::builder()
        .name("procs-forkserver")
        .daemon(true)
        .start_method(StartMethod::Spawn)
        .build(move || {
            let failed = image.exec(&[theirs.as_raw_fd()]);
            let _ = writeln!(
                std::io::stderr(),
                "procs-core: the forkserver could not execute this program: {failed}"
            );
            registry::exit_child(127)
        });
    process.execs = true;
    process.start()?;
    // The server is this module's to end, not a child to join at exit
    // (its children are, and it must outlive them).
    let pid = process.pid();
    registry::state().children.retain(|c| Some(c.pid) != pid);
    Ok(Server {
        owner,
        sock: ours,
        process,
    })
}

/// Sends a fork request with `fds`; the new child's pid.
fn request(sock: BorrowedFd<'_>, fds: &[RawFd]) -> Result<i32> {
    send(sock, b"F", fds)?;
    // The server answers at once (it forks and writes): one that does not
    // (stopped, or stuck) is replaced rather than waited for, since the
    // registry's lock, which every fork of this process takes, is held.
    let answered = sys::wait_readable(sock, Some(REPLY_TIMEOUT))
        .map_err(|e| Error::io("wait for the forkserver", e))?;
    if !answered {
        return Err(Error::io(
            "the forkserver's reply",
            std::io::Error::from(std::io::ErrorKind::TimedOut),
        ));
    }
    let mut reply = [0u8; 4];
    loop {
        // SAFETY: receives at most 4 bytes into a valid buffer.
        let n = unsafe { libc::recv(sock.as_raw_fd(), reply.as_mut_ptr().cast(), 4, 0) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n != 4 {
            return Err(Error::io(
                "the forkserver's reply",
                std::io::Error::other("the server ended"),
            ));
        }
        break;
    }
    match i32::from_le_bytes(reply) {
        pid if pid > 0 => Ok(pid),
        e => Err(Error::io(
            "fork (in the forkserver)",
            std::io::Error::from_raw_os_error(-e),
        )),
    }
}

/// Sends one message of `bytes`, with `fds` (SCM_RIGHTS) if any.
fn send(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) -> Result<()> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut space = [0u64; CONTROL_WORDS];
    // SAFETY: a zeroed msghdr is valid; its pointers are set below to
    // buffers that outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let len = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE only computes a size.
        let need = unsafe { libc::CMSG_SPACE(len) } as usize;
        assert!(
            need <= std::mem::size_of_val(&space),
            "room for the descriptors"
        );
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = need;
        // SAFETY: the control buffer holds one header and `fds` (checked
        // above); CMSG_FIRSTHDR points into it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(len) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
        }
    }
    loop {
        // SAFETY: `msg` and what it points to are valid for the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io("send to the forkserver", e));
        }
    }
}

/// A pipe, close-on-exec; `read_flags` added to the read end.
fn pipe(read_flags: libc::c_int) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io("pipe2", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 succeeded: both descriptors are new and ours.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    if read_flags != 0 {
        // SAFETY: fcntl on a descriptor we own, adding status flags.
        unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, read_flags) };
    }
    Ok((r, w))
}

/// The exit code on a status pipe: `Ok(None)` while not written yet,
/// `Err` if the server ended without writing it.
pub(crate) fn read_status(fd: BorrowedFd<'_>) -> std::result::Result<Option<i32>, ()> {
    let mut b = [0u8; 4];
    // SAFETY: reads at most 4 bytes into a valid buffer from a non-blocking
    // pipe (the server writes the 4 bytes at once: atomic, below PIPE_BUF).
    let n = unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 4) };
    match n {
        4 => Ok(Some(i32::from_le_bytes(b))),
        n if n < 0 => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(None),
            _ => Err(()),
        },
        _ => Err(()),
    }
}

// ---- the server ----

/// A child the server forked: where its code goes, and whether its parent
/// holds a pidfd of it yet (until then it is not reaped).
struct Forked {
    pid: i32,
    status: OwnedFd,
    acked: bool,
    /// The write end of the pipe the child waits on until its parent's
    /// acknowledgement (closed then, or with the server).
    gate: Option<OwnedFd>,
}

/// The server's loop, in the fresh execution `init` found `ENV` in. Ends
/// the process.
pub(crate) fn serve(fd: &[u8]) -> ! {
    let Some(sock) = std::str::from_utf8(fd)
        .ok()
        .and_then(|s| s.parse::<RawFd>().ok())
    else {
        eprintln!("procs-core: {ENV} is set but is not a descriptor");
        sys::exit_now(127)
    };
    // SAFETY: the parent made this socket end for this server alone and
    // named it in the environment; `init` runs before anything else of
    // this fresh program could read the environment or own the descriptor.
    let sock = unsafe {
        std::env::remove_var(ENV);
        OwnedFd::from_raw_fd(sock)
    };
    // SAFETY: fcntl on the descriptor just taken: its children must not
    // inherit it across their own execs.
    unsafe { libc::fcntl(sock.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    // SIGCHLD through a signalfd: the loop polls the socket and it.
    // SAFETY: plain sigset operations on a local set, and a mask change of
    // this single-threaded process.
    let (sfd, old_mask) = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            eprintln!("procs-core: the forkserver has no signalfd");
            sys::exit_now(127)
        }
        (OwnedFd::from_raw_fd(fd), old)
    };
    let mut forked: Vec<Forked> = Vec::new();
    loop {
        let mut pfds = [
            libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds for the call.
        if unsafe { libc::poll(pfds.as_mut_ptr(), 2, -1) } < 0 {
            continue;
        }
        if pfds[1].revents != 0 {
            let mut info = [0u8; 128];
            // SAFETY: drains signalfd records into a buffer of one record's
            // size (the count does not matter: every child is polled).
            while unsafe { libc::read(sfd.as_raw_fd(), info.as_mut_ptr().cast(), 128) } > 0 {}
        }
        if pfds[0].revents != 0 {
            match receive(sock.as_fd()) {
                Received::End => break,
                Received::Fork(fds) => {
                    let reply = fork_one(fds, &sock, &sfd, &old_mask, &mut forked);
                    let _ = send(sock.as_fd(), &reply.to_le_bytes(), &[]);
                }
                Received::Ack(pid) => {
                    if let Some(f) = forked.iter_mut().find(|f| f.pid == pid) {
                        f.acked = true;
                        // The child may run now: its parent holds a pidfd
                        // of it and has handed its argument over.
                        f.gate = None;
                    }
                }
                Received::Other => {}
            }
        }
        reap(&mut forked);
    }
    // The parent is gone (or closed its end): the children that are not
    // daemons go on as a fork's would; their codes have nobody to go to.
    sys::exit_now(0)
}

enum Received {
    /// The task, the result pipe, the status pipe, then the handles.
    Fork(Vec<OwnedFd>),
    Ack(i32),
    End,
    Other,
}

/// One message from the parent (a request with its three descriptors, or
/// an acknowledgement); anything else is dropped with its descriptors.
fn receive(sock: BorrowedFd<'_>) -> Received {
    let mut buf = [0u8; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut space = [0u64; CONTROL_WORDS];
    // SAFETY: a zeroed msghdr is valid; its buffers outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&space);
    // SAFETY: `msg` describes valid buffers; received descriptors are
    // close-on-exec.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n == 0 {
        return Received::End;
    }
    if n < 0 {
        return match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::Interrupted => Received::Other,
            _ => Received::End,
        };
    }
    let mut fds: Vec<OwnedFd> = Vec::new();
    // SAFETY: walks the control messages the kernel wrote into `space`;
    // each SCM_RIGHTS payload holds (cmsg_len - CMSG_LEN(0)) / 4 new
    // descriptors, now ours.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let count = ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / 4;
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        // Descriptors were cut off: a request is answered EINVAL (a
        // request without its three descriptors), not served in part.
        fds.clear();
    }
    match (&buf[..n as usize], fds.len()) {
        // A request always gets an answer: without its descriptors, EINVAL.
        (b"F", _) => Received::Fork(fds),
        ([b'A', p @ ..], 0) if p.len() == 4 => {
            Received::Ack(i32::from_le_bytes([p[0], p[1], p[2], p[3]]))
        }
        _ => Received::Other,
    }
}

/// Forks a child for a request: its pid, or -errno.
fn fork_one(
    fds: Vec<OwnedFd>,
    sock: &OwnedFd,
    sfd: &OwnedFd,
    old_mask: &libc::sigset_t,
    forked: &mut Vec<Forked>,
) -> i32 {
    let mut fds = fds.into_iter();
    let (Some(task), Some(result), Some(status)) = (fds.next(), fds.next(), fds.next()) else {
        return -libc::EINVAL;
    };
    let handles: Vec<OwnedFd> = fds.collect();
    let server = std::process::id() as i32;
    let Ok((gate_r, gate_w)) = pipe(0) else {
        return -libc::EMFILE;
    };
    // SAFETY: this server is single-threaded: the child may do anything.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return -std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EAGAIN);
    }
    if pid == 0 {
        // SAFETY: closing descriptors of the server this child must not
        // hold, and restoring the signal mask the server changed.
        unsafe {
            libc::close(sock.as_raw_fd());
            libc::close(sfd.as_raw_fd());
            libc::sigprocmask(libc::SIG_SETMASK, old_mask, std::ptr::null_mut());
        }
        drop(status);
        drop(gate_w);
        for f in forked.drain(..) {
            drop(f.status);
            drop(f.gate);
        }
        // Wait for the parent's acknowledgement: the gate's end closing
        // (or the server's end, with it).
        let mut byte = 0u8;
        // SAFETY: a blocking read of at most one byte into a valid buffer;
        // it returns at the end of the pipe.
        while unsafe { libc::read(gate_r.as_raw_fd(), (&raw mut byte).cast(), 1) } < 0 {}
        drop(gate_r);
        let mut task = std::fs::File::from(task);
        if crate::respawn::task_is_daemon(&mut task) {
            sys::die_with_parent(server);
        }
        crate::respawn::run_task(task, std::fs::File::from(result), handles)
    }
    drop(handles);
    drop(gate_r);
    forked.push(Forked {
        pid,
        status,
        acked: false,
        gate: Some(gate_w),
    });
    pid
}

/// Reaps the children whose parent acknowledged them and that ended, and
/// writes each one's exit code to its status pipe.
fn reap(forked: &mut Vec<Forked>) {
    forked.retain(|f| {
        if !f.acked {
            return true;
        }
        match nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(f.pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        ) {
            Ok(ws) => match sys::exitcode_of(ws) {
                Some(code) => {
                    let b = code.to_le_bytes();
                    // SAFETY: writes 4 bytes from a valid buffer to the
                    // status pipe this record owns (closed with it, below).
                    let _ = unsafe { libc::write(f.status.as_raw_fd(), b.as_ptr().cast(), 4) };
                    false
                }
                None => true,
            },
            Err(nix::errno::Errno::EINTR) => true,
            Err(_) => false,
        }
    });
}
