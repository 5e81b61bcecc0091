//! The manager's server: the objects, a thread per connection, and the
//! methods each type of object answers.
//!
//! The server holds values as the bytes clients encoded them to (postcard
//! encodes equal values to equal bytes), so it needs no knowledge of the
//! clients' types: a dictionary is a map of byte strings to byte strings.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use procs_ipc::{Connection, Error as IpcError, Listener};

use crate::link::{Link, SLOTS, Side, Slots, parse_hello, slot_answer};
use crate::wire::{self, ErrorKind, Fields, Kind, Malformed, Type};

/// Limits of a server, so that no client can exhaust it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// The most objects held at once (default 1,000,000).
    pub max_objects: usize,
    /// The most connections served at once (default 1,024).
    pub max_connections: usize,
    /// The most connections of the manager's tree served over shared
    /// memory at once (default and at most 32); the others go over the
    /// socket. 0 sends every call over the socket (to measure it).
    pub ring_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_objects: 1_000_000,
            max_connections: 1024,
            ring_connections: SLOTS,
        }
    }
}

/// The methods, by number (the wire's `method`).
pub(crate) mod method {
    // Dictionaries.
    pub const D_INSERT: u16 = 1;
    pub const D_GET: u16 = 2;
    pub const D_REMOVE: u16 = 3;
    pub const D_CONTAINS: u16 = 4;
    pub const D_LEN: u16 = 5;
    pub const D_KEYS: u16 = 6;
    pub const D_VALUES: u16 = 7;
    pub const D_ITEMS: u16 = 8;
    pub const D_CLEAR: u16 = 9;
    pub const D_SETDEFAULT: u16 = 10;
    pub const D_UPDATE: u16 = 11;
    // Lists.
    pub const L_PUSH: u16 = 20;
    pub const L_POP: u16 = 21;
    pub const L_GET: u16 = 22;
    pub const L_SET: u16 = 23;
    pub const L_LEN: u16 = 24;
    pub const L_EXTEND: u16 = 25;
    pub const L_INSERT: u16 = 26;
    pub const L_REMOVE: u16 = 27;
    pub const L_SLICE: u16 = 28;
    pub const L_CLEAR: u16 = 29;
    // Namespaces.
    pub const N_SET: u16 = 40;
    pub const N_GET: u16 = 41;
    pub const N_DEL: u16 = 42;
    pub const N_NAMES: u16 = 43;
    /// Adds an integer to an i64 field (encoded by postcard), atomically.
    pub const N_ADD: u16 = 44;
}

enum Object {
    Dict(HashMap<Vec<u8>, Vec<u8>>),
    List(Vec<Vec<u8>>),
    Namespace(BTreeMap<Vec<u8>, Vec<u8>>),
}

/// What every connection's thread shares.
struct State {
    objects: Mutex<HashMap<u64, Arc<Mutex<Object>>>>,
    next_id: AtomicU64,
    slots: Arc<Slots>,
    free_slots: Mutex<Vec<usize>>,
    connections: AtomicU64,
    limits: Limits,
    shutdown: AtomicBool,
}

/// Serves `listener` until a client asks for shutdown or `parent` is
/// gone (the process that started the server: its death is seen within
/// a tenth of a second).
pub(crate) fn serve(mut listener: Listener, slots: Arc<Slots>, limits: Limits, parent: i32) {
    let state = Arc::new(State {
        objects: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        slots,
        free_slots: Mutex::new((0..limits.ring_connections.min(SLOTS)).rev().collect()),
        connections: AtomicU64::new(0),
        limits,
        shutdown: AtomicBool::new(false),
    });
    // A process whose parent died is adopted by another: its parent's pid
    // changes, which pid reuse cannot fake.
    let parent_alive = || nix::unistd::getppid().as_raw() == parent;
    while !state.shutdown.load(Ordering::Acquire) && parent_alive() {
        match listener.accept_timeout::<()>(Duration::from_millis(100)) {
            Ok(conn) => {
                let n = state.connections.fetch_add(1, Ordering::AcqRel);
                if n as usize >= state.limits.max_connections {
                    state.connections.fetch_sub(1, Ordering::AcqRel);
                    eprintln!("procs-manager: connection refused: the limit of connections");
                    continue;
                }
                let state = state.clone();
                let spawned = std::thread::Builder::new()
                    .name("procs-manager-conn".into())
                    .spawn(move || {
                        serve_connection(&state, conn);
                        state.connections.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    eprintln!("procs-manager: no thread for a connection");
                }
            }
            // A wrong key is refused (and logged by the listener); a
            // handshake cut short or late ends that peer only.
            Err(IpcError::Timeout) => {}
            Err(e) => eprintln!("procs-manager: a connection failed: {e}"),
        }
    }
}

fn serve_connection(state: &State, socket: Connection<()>) {
    let Ok(hello) = socket.recv_bytes_timeout(procs_ipc::HANDSHAKE_TIMEOUT) else {
        return;
    };
    let slot = match parse_hello(&hello) {
        Ok(Some(token)) if token == state.slots.token() => state
            .free_slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop(),
        Ok(_) => None,
        Err(_) => return,
    };
    if let Some(i) = slot {
        state.slots.restart(i);
    }
    if socket.send_bytes(&slot_answer(slot)).is_err() {
        free(state, slot);
        return;
    }
    let link = Link {
        socket,
        slot: slot.map(|i| (state.slots.clone(), i)),
    };
    let (mut req, mut resp) = (Vec::new(), Vec::new());
    while link.recv(Side::Server, &mut req).is_ok() {
        match wire::parse_request(&req) {
            Ok(r) => answer(state, r, &mut resp),
            Err(Malformed(why)) => {
                // The stream is still whole (the transport frames each
                // message): answer, and go on.
                wire::failed(&mut resp, ErrorKind::BadRequest, why);
            }
        }
        if link.send(Side::Server, &resp).is_err() {
            break;
        }
        if state.shutdown.load(Ordering::Acquire) {
            break;
        }
    }
    drop(link);
    free(state, slot);
}

fn free(state: &State, slot: Option<usize>) {
    if let Some(i) = slot {
        state
            .free_slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(i);
    }
}

fn answer(state: &State, r: wire::Request<'_>, out: &mut Vec<u8>) {
    match r.kind {
        Kind::Shutdown => {
            state.shutdown.store(true, Ordering::Release);
            wire::done(out);
        }
        Kind::Create => {
            let Some(ty) = Type::from_code(r.method) else {
                return wire::failed(out, ErrorKind::NoMethod, "no such type of object");
            };
            let mut objects = state.objects.lock().unwrap_or_else(|e| e.into_inner());
            if objects.len() >= state.limits.max_objects {
                return wire::failed(out, ErrorKind::Limit, "the limit of objects");
            }
            let obj = match ty {
                Type::Dict => Object::Dict(HashMap::new()),
                Type::List => Object::List(Vec::new()),
                Type::Namespace => Object::Namespace(BTreeMap::new()),
            };
            let id = state.next_id.fetch_add(1, Ordering::Relaxed);
            objects.insert(id, Arc::new(Mutex::new(obj)));
            wire::done(out);
            wire::field_u64(out, id);
        }
        Kind::Call => {
            let obj = state
                .objects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&r.object)
                .cloned();
            let Some(obj) = obj else {
                return wire::failed(out, ErrorKind::NoObject, "no such object");
            };
            let mut obj = obj.lock().unwrap_or_else(|e| e.into_inner());
            wire::done(out);
            if let Err((kind, why)) = call(&mut obj, r.method, r.args, out) {
                wire::failed(out, kind, why);
            }
        }
    }
}

type Failure = (ErrorKind, &'static str);

impl From<Malformed> for Failure {
    fn from(m: Malformed) -> Failure {
        (ErrorKind::BadRequest, m.0)
    }
}

/// Runs one method; its results go as fields after `out`'s status.
fn call(
    obj: &mut Object,
    method: u16,
    mut a: Fields<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Failure> {
    use method::*;
    let opt = |out: &mut Vec<u8>, v: Option<&[u8]>| {
        if let Some(v) = v {
            wire::field(out, v);
        }
    };
    match (obj, method) {
        (Object::Dict(d), D_INSERT) => {
            let (k, v) = (a.take()?, a.take()?);
            a.end()?;
            opt(out, d.insert(k.to_vec(), v.to_vec()).as_deref());
        }
        (Object::Dict(d), D_GET) => {
            let k = a.take()?;
            a.end()?;
            opt(out, d.get(k).map(Vec::as_slice));
        }
        (Object::Dict(d), D_REMOVE) => {
            let k = a.take()?;
            a.end()?;
            opt(out, d.remove(k).as_deref());
        }
        (Object::Dict(d), D_CONTAINS) => {
            let k = a.take()?;
            a.end()?;
            wire::field_u64(out, u64::from(d.contains_key(k)));
        }
        (Object::Dict(d), D_LEN) => {
            a.end()?;
            wire::field_u64(out, d.len() as u64);
        }
        (Object::Dict(d), D_KEYS) => d.keys().for_each(|k| wire::field(out, k)),
        (Object::Dict(d), D_VALUES) => d.values().for_each(|v| wire::field(out, v)),
        (Object::Dict(d), D_ITEMS) => d.iter().for_each(|(k, v)| {
            wire::field(out, k);
            wire::field(out, v);
        }),
        (Object::Dict(d), D_CLEAR) => d.clear(),
        (Object::Dict(d), D_SETDEFAULT) => {
            let (k, v) = (a.take()?, a.take()?);
            a.end()?;
            let v = d.entry(k.to_vec()).or_insert_with(|| v.to_vec());
            wire::field(out, v);
        }
        (Object::Dict(d), D_UPDATE) => {
            if !a.len().is_multiple_of(2) {
                return Err((ErrorKind::BadRequest, "update takes pairs"));
            }
            while let Some(k) = a.next_field()? {
                let v = a.take()?;
                d.insert(k.to_vec(), v.to_vec());
            }
        }
        (Object::List(l), L_PUSH) => {
            let v = a.take()?;
            a.end()?;
            l.push(v.to_vec());
        }
        (Object::List(l), L_POP) => {
            a.end()?;
            opt(out, l.pop().as_deref());
        }
        (Object::List(l), L_GET) => {
            let i = a.take_u64()?;
            a.end()?;
            let v = index(l, i)?;
            wire::field(out, &l[v]);
        }
        (Object::List(l), L_SET) => {
            let (i, v) = (a.take_u64()?, a.take()?);
            a.end()?;
            let i = index(l, i)?;
            l[i] = v.to_vec();
        }
        (Object::List(l), L_LEN) => {
            a.end()?;
            wire::field_u64(out, l.len() as u64);
        }
        (Object::List(l), L_EXTEND) => {
            while let Some(v) = a.next_field()? {
                l.push(v.to_vec());
            }
        }
        (Object::List(l), L_INSERT) => {
            let (i, v) = (a.take_u64()?, a.take()?);
            a.end()?;
            // Python's insert: past the end appends.
            let i = (i as usize).min(l.len());
            l.insert(i, v.to_vec());
        }
        (Object::List(l), L_REMOVE) => {
            let v = a.take()?;
            a.end()?;
            let Some(i) = l.iter().position(|x| x == v) else {
                return Err((ErrorKind::Value, "list.remove(x): x not in list"));
            };
            l.remove(i);
        }
        (Object::List(l), L_SLICE) => {
            let (from, to) = (a.take_u64()?, a.take_u64()?);
            a.end()?;
            // Python's slices: bounds past the end are the end.
            let to = (to as usize).min(l.len());
            let from = (from as usize).min(to);
            l[from..to].iter().for_each(|v| wire::field(out, v));
        }
        (Object::List(l), L_CLEAR) => l.clear(),
        (Object::Namespace(n), N_SET) => {
            let (k, v) = (a.take()?, a.take()?);
            a.end()?;
            n.insert(k.to_vec(), v.to_vec());
        }
        (Object::Namespace(n), N_GET) => {
            let k = a.take()?;
            a.end()?;
            let v = n.get(k).ok_or((ErrorKind::Attribute, "no such field"))?;
            wire::field(out, v);
        }
        (Object::Namespace(n), N_DEL) => {
            let k = a.take()?;
            a.end()?;
            n.remove(k).ok_or((ErrorKind::Attribute, "no such field"))?;
        }
        (Object::Namespace(n), N_NAMES) => n.keys().for_each(|k| wire::field(out, k)),
        (Object::Namespace(n), N_ADD) => {
            let (k, by) = (a.take()?, a.take_u64()? as i64);
            a.end()?;
            let now = match n.get(k) {
                // The whole field, not a prefix of it: a string's length
                // would decode as an integer too.
                Some(v) => match postcard::take_from_bytes::<i64>(v) {
                    Ok((n, [])) => n,
                    _ => return Err((ErrorKind::Value, "the field is not an integer")),
                },
                None => 0,
            };
            let sum = now
                .checked_add(by)
                .ok_or((ErrorKind::Value, "the sum overflows an i64"))?;
            let bytes = postcard::to_allocvec(&sum).expect("an i64 encodes");
            wire::field(out, &bytes);
            n.insert(k.to_vec(), bytes);
        }
        _ => return Err((ErrorKind::NoMethod, "no such method for this object")),
    }
    Ok(())
}

fn index(l: &[Vec<u8>], i: u64) -> Result<usize, Failure> {
    usize::try_from(i)
        .ok()
        .filter(|&i| i < l.len())
        .ok_or((ErrorKind::Index, "list index out of range"))
}
