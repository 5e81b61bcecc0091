//! The authkey handshake of a [`Listener`](crate::Listener) and a
//! [`Client`](crate::Client), as Python's `multiprocessing.connection` does
//! it (Python 3.12's `{sha256}` form), each side challenging the other:
//!
//! ```text
//! challenger -> answerer: "#CHALLENGE#" "{sha256}" 40 random bytes
//! answerer -> challenger: "{sha256}" HMAC-SHA256(authkey, "{sha256}" random bytes)
//! challenger -> answerer: "#WELCOME#" or "#FAILURE#"
//! ```
//!
//! The listener challenges first, then answers the client's challenge; the
//! client answers, then challenges. Every message is a frame of the socket
//! transport of at most 256 bytes (a longer length is refused before
//! anything of it is read), and the whole handshake has one deadline, so a
//! peer that sends a huge length, garbage or nothing at all gets an
//! [`Error::Authentication`] and costs at most the deadline. No message of
//! the user is read before both sides are authenticated.

use std::os::fd::BorrowedFd;
use std::time::Instant;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::socket::{header, read_exact, read_len, write_all};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
const DIGEST: &[u8] = b"{sha256}";
/// Random bytes in a challenge, as Python 3.12 sends.
const NONCE: usize = 40;
/// The longest message of the handshake (Python reads them with
/// `recv_bytes(256)`).
const MAX_MESSAGE: usize = 256;

type HmacSha256 = Hmac<Sha256>;

fn failed(why: impl Into<String>) -> Error {
    Error::Authentication(why.into())
}

/// What a transport error means during the handshake.
fn during(e: Error) -> Error {
    match e {
        Error::Timeout => failed("the peer did not finish the handshake in time"),
        Error::Disconnected => failed("the peer closed the connection during the handshake"),
        e => e,
    }
}

fn send_message(fd: BorrowedFd<'_>, bytes: &[u8], deadline: Instant) -> Result<()> {
    let (h, hn) = header(bytes.len());
    let mut frame = Vec::with_capacity(hn + bytes.len());
    frame.extend_from_slice(&h[..hn]);
    frame.extend_from_slice(bytes);
    let mut started = false;
    write_all(fd, &frame, Some(deadline), Some(deadline), &mut started).map_err(during)
}

fn recv_message(fd: BorrowedFd<'_>, deadline: Instant) -> Result<Vec<u8>> {
    let mut started = false;
    let d = Some(deadline);
    let len = match read_len(fd, d, d, &mut started).map_err(during)? {
        Ok(len) => len,
        Err(why) => return Err(failed(format!("bad handshake message: {why}"))),
    };
    let len = match usize::try_from(len) {
        Ok(len) if len <= MAX_MESSAGE => len,
        _ => {
            return Err(failed(format!(
                "a handshake message of {len} bytes is longer than {MAX_MESSAGE}"
            )));
        }
    };
    let mut buf = vec![0u8; len];
    read_exact(fd, &mut buf, d, d, &mut started).map_err(during)?;
    Ok(buf)
}

fn mac(authkey: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length (a long one is hashed first).
    <HmacSha256 as KeyInit>::new_from_slice(authkey).expect("HMAC takes keys of any length")
}

/// Challenges the peer: it must prove it holds `authkey`.
pub(crate) fn deliver_challenge(
    fd: BorrowedFd<'_>,
    authkey: &[u8],
    deadline: Instant,
) -> Result<()> {
    let mut message = Vec::with_capacity(DIGEST.len() + NONCE);
    message.extend_from_slice(DIGEST);
    let mut nonce = [0u8; NONCE];
    getrandom::fill(&mut nonce).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    message.extend_from_slice(&nonce);
    let mut challenge = CHALLENGE.to_vec();
    challenge.extend_from_slice(&message);
    send_message(fd, &challenge, deadline)?;
    let response = recv_message(fd, deadline)?;
    let mut m = mac(authkey);
    m.update(&message);
    let right = response
        .strip_prefix(DIGEST)
        .is_some_and(|digest| m.verify_slice(digest).is_ok());
    if right {
        send_message(fd, WELCOME, deadline)
    } else {
        // Tell the peer, if it still listens; the answer is the refusal.
        let _ = send_message(fd, FAILURE, deadline);
        Err(failed(
            "the digest received was wrong (a different authkey)",
        ))
    }
}

/// Answers the peer's challenge with `authkey`.
pub(crate) fn answer_challenge(
    fd: BorrowedFd<'_>,
    authkey: &[u8],
    deadline: Instant,
) -> Result<()> {
    let challenge = recv_message(fd, deadline)?;
    let Some(message) = challenge.strip_prefix(CHALLENGE) else {
        return Err(failed("the peer's first message is not a challenge"));
    };
    if !message.starts_with(DIGEST) {
        return Err(failed(
            "the peer's challenge asks for a digest other than {sha256}",
        ));
    }
    if message.len() < DIGEST.len() + 20 {
        return Err(failed("the peer's challenge is too short"));
    }
    let mut m = mac(authkey);
    m.update(message);
    let mut response = DIGEST.to_vec();
    response.extend_from_slice(&m.finalize().into_bytes());
    send_message(fd, &response, deadline)?;
    match recv_message(fd, deadline)?.as_slice() {
        WELCOME => Ok(()),
        FAILURE => Err(failed(
            "the digest sent was rejected (the peer has a different authkey)",
        )),
        _ => Err(failed("the peer answered neither welcome nor failure")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    fn pair() -> (UnixStream, UnixStream) {
        let (a, b) = UnixStream::pair().expect("socketpair");
        a.set_nonblocking(true).expect("nonblocking");
        b.set_nonblocking(true).expect("nonblocking");
        (a, b)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn the_same_key_is_welcome_both_ways() {
        let (a, b) = pair();
        let t = std::thread::spawn(move || {
            answer_challenge(b.as_fd(), b"key", soon())?;
            deliver_challenge(b.as_fd(), b"key", soon())
        });
        deliver_challenge(a.as_fd(), b"key", soon()).expect("deliver");
        answer_challenge(a.as_fd(), b"key", soon()).expect("answer");
        t.join().expect("thread").expect("client side");
    }

    #[test]
    fn a_different_key_fails_on_both_sides() {
        let (a, b) = pair();
        let t = std::thread::spawn(move || answer_challenge(b.as_fd(), b"other", soon()));
        let here = deliver_challenge(a.as_fd(), b"key", soon());
        let there = t.join().expect("thread");
        assert!(matches!(here, Err(Error::Authentication(_))), "{here:?}");
        assert!(matches!(there, Err(Error::Authentication(_))), "{there:?}");
    }

    #[test]
    fn a_huge_length_is_refused_before_it_is_read() {
        let (a, b) = pair();
        let mut started = false;
        let (h, n) = header(MAX_MESSAGE + 1);
        write_all(b.as_fd(), &h[..n], None, None, &mut started).expect("write");
        let e = answer_challenge(a.as_fd(), b"key", soon()).expect_err("refused");
        assert!(e.to_string().contains("longer than 256"), "{e}");
    }

    #[test]
    fn silence_ends_at_the_deadline() {
        let (a, _b) = pair();
        let start = Instant::now();
        let e = answer_challenge(a.as_fd(), b"key", start + Duration::from_millis(50))
            .expect_err("refused");
        assert!(matches!(e, Error::Authentication(_)), "{e:?}");
        assert!(start.elapsed() >= Duration::from_millis(50));
    }
}
