//! Handles that travel: a value holding handles (procs-sync's `Segment`,
//! and what lives in one) is serialized with each handle's descriptor set
//! aside, out of band, and the index of that descriptor in its place; the
//! receiving side hands the descriptors back while it deserializes. The
//! transport moves the bytes and the descriptors together: procs-ipc's
//! `Connection::send_with_handles` (SCM_RIGHTS over a socket), or
//! [`ProcessBuilder::spawn_fn`](crate::ProcessBuilder::spawn_fn), whose
//! argument reaches a child of the spawn or forkserver method with its
//! descriptors (inherited through the exec, or sent to the forkserver).
//!
//! Serializing a handle outside [`collecting`] is an error that names the
//! way; so is a descriptor taken twice, or one that did not come.

use std::cell::RefCell;
use std::os::fd::{BorrowedFd, OwnedFd};

thread_local! {
    static OUTGOING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
    static REFUSED: RefCell<Option<String>> = const { RefCell::new(None) };
    static SENDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// [`collecting`], for a value sent to a process already running (by
/// procs-ipc's `Connection::send_with_handles`): handles that count the
/// processes holding them (procs-ipc's queues) count one more for the
/// sender as they serialize, which the receiver takes back once it counts
/// itself. So the sender may drop its own at once, and its peers never
/// see nobody holding the queue in between. (A value for a child being
/// started needs none of this: the parent's copy is dropped as handed over
/// to the child, as a forked target's captures are.)
pub fn collecting_to_send<R>(f: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let saved = SENDING.with(|r| r.replace(true));
    let out = collecting(f);
    SENDING.with(|r| r.set(saved));
    out
}

/// Whether the value being serialized is sent to a running process (under
/// [`collecting_to_send`]).
pub fn sending() -> bool {
    SENDING.with(std::cell::Cell::get)
}

/// Notes why a handle refuses to travel, and returns it for the
/// serializer's error: a format's error may not keep the text (postcard's
/// does not), so the transport reports it from here ([`take_refusal`]).
#[doc(hidden)]
pub fn refused(why: impl Into<String>) -> String {
    let why = why.into();
    REFUSED.with(|r| *r.borrow_mut() = Some(why.clone()));
    why
}

/// Why the last handle refused to travel on this thread, if one did
/// since the last call.
pub fn take_refusal() -> Option<String> {
    REFUSED.with(|r| r.borrow_mut().take())
}

/// Runs `f` (a serialization) with a collector for the descriptors of the
/// handles it meets; returns its result and those descriptors (duplicates,
/// close-on-exec), in the order of their indices.
pub fn collecting<R>(f: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let saved = OUTGOING.with(|o| o.replace(Some(Vec::new())));
    take_refusal();
    let r = f();
    let fds = OUTGOING.with(|o| o.replace(saved)).unwrap_or_default();
    (r, fds)
}

/// Runs `f` (a deserialization) with `fds`, the descriptors that came with
/// the bytes, for the handles it reads to take. Those it does not take are
/// closed when it returns.
pub fn supplying<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> R {
    let saved = INCOMING.with(|i| i.replace(Some(fds.into_iter().map(Some).collect())));
    let r = f();
    INCOMING.with(|i| i.replace(saved));
    r
}

/// Sets a duplicate of `fd` aside for the value being serialized; its
/// index.
#[doc(hidden)]
pub fn put(fd: BorrowedFd<'_>) -> Result<u32, String> {
    let dup = fd
        .try_clone_to_owned()
        .map_err(|e| refused(format!("a handle's descriptor does not duplicate: {e}")))?;
    OUTGOING.with(|o| match o.borrow_mut().as_mut() {
        Some(fds) => {
            fds.push(dup);
            Ok((fds.len() - 1) as u32)
        }
        None => Err(refused(
            "a handle travels only with its descriptor: send it with Connection::send_with_handles, \
             or as the argument of spawn_fn",
        )),
    })
}

/// Takes the descriptor at `index` for the handle being deserialized.
#[doc(hidden)]
pub fn take(index: u32) -> Result<OwnedFd, String> {
    INCOMING.with(|i| match i.borrow_mut().as_mut() {
        None => Err(
            "a handle arrives only with its descriptor: receive it with Connection::recv_with_handles"
                .to_string(),
        ),
        Some(fds) => match fds.get_mut(index as usize) {
            None => Err(format!("a handle names descriptor {index}, which did not come")),
            Some(slot) => slot
                .take()
                .ok_or_else(|| format!("a handle takes descriptor {index} twice")),
        },
    })
}
