//! [`spawn`]: run a closure in a child process and get its return value back,
//! as `std::thread::spawn` does for threads.
//!
//! The child sends one frame on a pipe: an 8-byte little-endian length, then
//! a postcard-encoded [`Outcome`]. The parent reads it while waiting on the
//! child's pidfd, so a child that dies before sending, or whose own children
//! keep the pipe open, cannot hang the parent; and it allocates only what
//! actually arrives, never what the length claims.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};
use crate::process::{Process, ProcessBuilder};

#[derive(Serialize, Deserialize)]
pub(crate) enum Outcome<R> {
    Returned(R),
    Panicked(String),
}

/// A child started by [`spawn`], whose [`join`](JoinHandle::join) returns
/// the closure's value.
#[derive(Debug)]
pub struct JoinHandle<R> {
    process: Process,
    result: OwnedFd,
    _marker: std::marker::PhantomData<fn() -> R>,
}

/// Runs `f` in a new child process and returns a handle whose
/// [`join`](JoinHandle::join) gives back what `f` returned.
///
/// The value travels back serialized (postcard), so `R` is
/// `Serialize + DeserializeOwned`. A panic in the child comes back as
/// [`Error::Panicked`] with its message (the child's exit code is 1, as in
/// Python).
///
/// ```
/// let handle = procs_core::spawn(|| (1..=10).sum::<u64>())?;
/// assert_eq!(handle.join()?, 55);
///
/// let handle = procs_core::spawn(|| -> u8 { panic!("boom") })?;
/// match handle.join() {
///     Err(procs_core::Error::Panicked { message, .. }) => assert_eq!(message, "boom"),
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok::<(), procs_core::Error>(())
/// ```
pub fn spawn<F, R>(f: F) -> Result<JoinHandle<R>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Serialize + DeserializeOwned,
{
    spawn_with(Process::builder(), f)
}

/// [`spawn`] with a name, daemon flag or start method from `builder`.
pub fn spawn_with<F, R>(builder: ProcessBuilder, f: F) -> Result<JoinHandle<R>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Serialize + DeserializeOwned,
{
    let (reader, writer) = std::io::pipe().map_err(|e| Error::io("pipe", e))?;
    let mut process = builder.build(move || {
        let mut writer = writer;
        let (frame, panic) = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(value) => (encode(&Outcome::Returned(value)), None),
            Err(payload) => {
                let message = panic_message(&*payload);
                (encode(&Outcome::<R>::Panicked(message)), Some(payload))
            }
        };
        // A parent that went away cannot be told; the exit code still says.
        let _ = writer.write_all(&frame);
        drop(writer);
        if let Some(payload) = panic {
            // Exit code 1, as for any panic in a process.
            resume_unwind(payload);
        }
    });
    process.start()?;
    Ok(JoinHandle {
        process,
        result: reader.into(),
        _marker: std::marker::PhantomData,
    })
}

pub(crate) fn encode<T: Serialize>(outcome: &T) -> Vec<u8> {
    let body = postcard::to_allocvec(outcome).unwrap_or_else(|e| {
        // Serializing the panic message cannot fail; report the failure as one.
        postcard::to_allocvec(&Outcome::<()>::Panicked(format!(
            "the return value does not serialize: {e}"
        )))
        .unwrap_or_default()
    });
    let mut frame = (body.len() as u64).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// The text of a panic payload: the `&str` or `String` that `panic!` makes.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a payload that is not a string".to_owned()
    }
}

impl<R> JoinHandle<R> {
    /// The handle of `process`, whose value arrives on `result`.
    pub(crate) fn new(process: Process, result: OwnedFd) -> Self {
        JoinHandle {
            process,
            result,
            _marker: std::marker::PhantomData,
        }
    }
}

impl<R: DeserializeOwned> JoinHandle<R> {
    /// Waits for the child and returns the closure's value.
    ///
    /// Errors: [`Error::Panicked`] with the panic's message;
    /// [`Error::ChildDied`] if the child ended without sending a value (it
    /// called `std::process::exit`, or a signal killed it);
    /// [`Error::Decode`] if what it sent does not decode as `R`.
    pub fn join(mut self) -> Result<R> {
        let frame = self.read_frame();
        let exitcode = self.process.join()?;
        let pid = self.process.pid().unwrap_or(0);
        let Some(body) = frame.map_err(|e| Error::io("read result", e))? else {
            return Err(Error::ChildDied { pid, exitcode });
        };
        match postcard::from_bytes::<Outcome<R>>(&body) {
            Ok(Outcome::Returned(value)) => Ok(value),
            Ok(Outcome::Panicked(message)) => Err(Error::Panicked { pid, message }),
            Err(e) => Err(Error::Decode {
                pid,
                reason: e.to_string(),
            }),
        }
    }

    /// Reads the child's frame: `None` if the child ended before sending it
    /// whole. Reads only what arrives, whatever the length prefix says.
    fn read_frame(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = Vec::new();
        let mut file = std::fs::File::from(self.result.try_clone()?);
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if let Some(len) = complete_frame(&buf) {
                buf.drain(..8);
                buf.truncate(len);
                return Ok(Some(buf));
            }
            // Block on the pipe and the child's end together: grandchildren
            // may hold the pipe open after the child is gone.
            if !self.readable_or_ended()? {
                // The child ended: take what is left without blocking.
                set_nonblocking(&self.result)?;
                loop {
                    match file.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                }
                if complete_frame(&buf).is_none() {
                    return Ok(None);
                }
                continue;
            }
            match file.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until the pipe has data (`true`) or the child has ended with
    /// nothing more to read right now (`false`).
    fn readable_or_ended(&self) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let Some(sentinel) = self.process.sentinel() else {
            // Without a pidfd, a blocking read is the only wait there is.
            return Ok(true);
        };
        let mut fds = [
            libc::pollfd {
                fd: self.result.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sentinel.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: `fds` is a valid array of two pollfds for the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // Data (or EOF) on the pipe comes first: a child that sent its
            // value and exited is read, not treated as dead.
            return Ok(fds[0].revents != 0);
        }
    }

    /// The process running the closure: its pid, `is_alive`, `terminate`...
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// The process running the closure, mutably, to terminate or kill it.
    pub fn process_mut(&mut self) -> &mut Process {
        &mut self.process
    }

    /// The child's process, without its value: for a child whose value
    /// does not matter (it is then never read).
    #[doc(hidden)]
    pub fn into_process(self) -> Process {
        self.process
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.process.pid().unwrap_or(0)
    }
}

/// The body length if `buf` holds a whole frame (length prefix and body).
fn complete_frame(buf: &[u8]) -> Option<usize> {
    let head: [u8; 8] = buf.get(..8)?.try_into().ok()?;
    let len = usize::try_from(u64::from_le_bytes(head)).ok()?;
    (buf.len() - 8 >= len).then_some(len)
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}
