//! What a child of [`subprocess`](crate::subprocess) does between fork and
//! exec, where only async-signal-safe calls are allowed: every function here
//! makes raw system calls, allocates nothing and takes no lock.

use std::io;

/// Marks every descriptor from `low` up close-on-exec, so that none of them
/// survives the coming exec (Python's `close_fds=True`). They are marked, not
/// closed, because std's spawn keeps a close-on-exec pipe of its own open
/// until the exec, to report an exec that fails; closing it would make that
/// failure look like success.
///
/// `close_range(CLOSE_RANGE_CLOEXEC)` (Linux 5.11) does it in one call;
/// older kernels list /proc/self/fd, and without /proc every number up to
/// the descriptor limit is tried.
pub(crate) fn cloexec_from(low: i32) -> io::Result<()> {
    let Ok(first) = libc::c_uint::try_from(low) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: close_range takes two descriptor numbers and flags; no memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // No close_range, or one without CLOSE_RANGE_CLOEXEC.
        Some(libc::ENOSYS) | Some(libc::EINVAL) => match cloexec_listed(low) {
            Ok(()) => Ok(()),
            Err(_) => cloexec_every(low),
        },
        _ => Err(err),
    }
}

/// [`cloexec_from`] by listing /proc/self/fd with getdents64 into a buffer
/// on the stack (opendir/readdir allocate, so they are out).
pub(crate) fn cloexec_listed(low: i32) -> io::Result<()> {
    // SAFETY: the path is a NUL-terminated literal; open returns a new
    // descriptor or -1.
    let dir = unsafe {
        libc::open(
            c"/proc/self/fd".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return Err(io::Error::last_os_error());
    }
    // u64s, for the 8-byte alignment of linux_dirent64.
    let mut buf = [0u64; 512];
    let outcome = loop {
        // SAFETY: `buf` is writable for its whole length, which is what is
        // passed; `dir` is the directory opened above.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir,
                buf.as_mut_ptr(),
                std::mem::size_of_val(&buf),
            )
        };
        if n < 0 {
            break Err(io::Error::last_os_error());
        }
        if n == 0 {
            break Ok(());
        }
        // SAFETY: the kernel wrote `n` bytes of entries at the start of `buf`.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
        let mut at = 0;
        // linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8,
        // then the NUL-terminated name.
        while at + 19 <= bytes.len() {
            let reclen = usize::from(u16::from_ne_bytes([bytes[at + 16], bytes[at + 17]]));
            if reclen == 0 || at + reclen > bytes.len() {
                break;
            }
            if let Some(fd) = parse_fd(&bytes[at + 19..at + reclen])
                && fd >= low
                && fd != dir
            {
                set_cloexec(fd);
            }
            at += reclen;
        }
    };
    // SAFETY: `dir` was opened above and is closed once.
    unsafe { libc::close(dir) };
    outcome
}

/// No descriptor number reaches this: the kernel's default `fs.nr_open`.
const MAX_FDS: i32 = 1 << 20;

/// [`cloexec_from`] by trying every descriptor number below the limit.
fn cloexec_every(low: i32) -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit to write into.
    let top = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        i32::try_from(limit.rlim_cur).map_or(MAX_FDS, |n| n.min(MAX_FDS))
    } else {
        MAX_FDS
    };
    for fd in low..top {
        set_cloexec(fd);
    }
    Ok(())
}

/// The descriptor number a /proc/self/fd entry names (`None` for `.`, `..`).
fn parse_fd(name: &[u8]) -> Option<i32> {
    let mut fd: i32 = 0;
    let mut digits = 0;
    for &b in name.iter().take_while(|&&b| b != 0) {
        if !b.is_ascii_digit() {
            return None;
        }
        fd = fd.checked_mul(10)?.checked_add(i32::from(b - b'0'))?;
        digits += 1;
    }
    (digits > 0).then_some(fd)
}

/// Sets close-on-exec on `fd`; a number that is not open is skipped.
fn set_cloexec(fd: i32) {
    // SAFETY: fcntl(F_SETFD) takes an integer; FD_CLOEXEC is the only
    // descriptor flag, so setting it alone loses nothing.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// Clears close-on-exec on `fd`, so that it survives the exec (Python's
/// `pass_fds`). `EBADF` if it is not open.
pub(crate) fn clear_cloexec(fd: i32) -> io::Result<()> {
    // SAFETY: fcntl(F_SETFD) takes an integer; no memory.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `fd` is an open descriptor of this process.
pub(crate) fn is_open(fd: i32) -> bool {
    // SAFETY: fcntl(F_GETFD) takes an integer; no memory.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Sets the file mode creation mask (Python's `umask`).
pub(crate) fn set_umask(mask: u32) {
    // SAFETY: umask takes an integer and cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[test]
    fn parse_fd_reads_numbers_and_skips_dots() {
        assert_eq!(parse_fd(b"17\0\0\0"), Some(17));
        assert_eq!(parse_fd(b".\0"), None);
        assert_eq!(parse_fd(b"..\0"), None);
        assert_eq!(parse_fd(b"\0"), None);
    }

    // The /proc fallback, run where it is meant to run: in a child before
    // exec, with a descriptor opened without close-on-exec.
    #[test]
    fn cloexec_listed_hides_a_leaked_descriptor_from_the_exec() {
        // SAFETY: open of a literal path without O_CLOEXEC, to leak it, then
        // a copy (F_DUPFD does not copy close-on-exec either) at a number
        // above the few that ls opens itself.
        let leaked = unsafe {
            let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
            let high = libc::fcntl(fd, libc::F_DUPFD, 200);
            libc::close(fd);
            high
        };
        assert!(leaked >= 200);
        let list = |hide: bool| {
            let mut cmd = Command::new("ls");
            cmd.arg("/proc/self/fd");
            if hide {
                // SAFETY: cloexec_listed is async-signal-safe (open,
                // getdents64, fcntl, close on a stack buffer).
                unsafe { cmd.pre_exec(|| cloexec_listed(3)) };
            }
            let out = cmd.output().expect("ls runs");
            String::from_utf8(out.stdout).expect("ls prints numbers")
        };
        let seen = |out: &str| out.split_whitespace().any(|f| f == leaked.to_string());
        let shown = list(false);
        let hidden = list(true);
        // SAFETY: closing the descriptor opened above, once.
        unsafe { libc::close(leaked) };
        assert!(seen(&shown), "fd {leaked} not inherited: {shown}");
        assert!(!seen(&hidden), "fd {leaked} survived the exec: {hidden}");
    }
}
