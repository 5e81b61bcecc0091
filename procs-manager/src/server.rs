//! The manager's server: the objects, a thread per connection, and the
//! methods each type of object answers.
//!
//! The server holds values as the bytes clients encoded them to (postcard
//! encodes equal values to equal bytes), so it needs no knowledge of the
//! clients' types: a dictionary is a map of byte strings to byte strings.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use procs_ipc::{Connection, Error as IpcError, Listener};

use crate::link::{Holder, Link, SLOTS, Side, Slots, parse_hello, slot_answer};
use crate::wire::{self, ErrorKind, Fields, Kind, Malformed, Type};
use procs_ipc::ring::Peer;

/// A type whose values a manager's server holds and whose methods clients
/// call by name through a [`CustomProxy`](crate::CustomProxy) (Python's
/// `BaseManager.register(typeid, callable)`). Arguments and results are
/// bytes the client encoded (postcard): [`args`] and [`reply`] do the
/// decoding and encoding.
///
/// ```
/// use procs_manager::{Manager, Served, args, reply};
///
/// #[derive(Default)]
/// struct Counter(i64);
///
/// impl Served for Counter {
///     fn call(&mut self, method: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
///         match method {
///             "add" => {
///                 self.0 += args::<i64>(bytes)?;
///                 reply(&self.0)
///             }
///             "get" => reply(&self.0),
///             other => Err(format!("Counter has no method {other}")),
///         }
///     }
/// }
///
/// let m = Manager::builder()
///     .register("Counter", || Box::new(Counter::default()))
///     .start()?;
/// let c = m.custom("Counter")?;
/// assert_eq!(c.call::<_, i64>("add", &5)?, 5);
/// assert_eq!(c.call::<_, i64>("add", &2)?, 7);
/// assert!(c.call::<_, ()>("nope", &()).is_err());
/// # Ok::<(), procs_manager::Error>(())
/// ```
pub trait Served: Send + 'static {
    /// Runs `method` with its encoded arguments; the encoded result, or
    /// an error message for the caller. A panic is caught and reported to
    /// the caller too.
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, String>;
}

/// Decodes a method's arguments (for [`Served::call`]).
/// All of the bytes must be used: postcard does not describe its types,
/// so a prefix of another value's encoding often decodes.
pub fn args<A: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<A, String> {
    match postcard::take_from_bytes(bytes) {
        Ok((a, [])) => Ok(a),
        Ok(_) => Err("the arguments do not decode: bytes are left over".into()),
        Err(e) => Err(format!("the arguments do not decode: {e}")),
    }
}

/// Encodes a method's result (for [`Served::call`]).
pub fn reply<R: serde::Serialize + ?Sized>(value: &R) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(value).map_err(|e| format!("the result does not encode: {e}"))
}

/// What makes a new value of a registered type.
pub type Make = fn() -> Box<dyn Served>;

/// A function a dictionary's `update_with` applies to a value on the
/// server, atomically: the encoded value now (`None`: no such key) to the
/// encoded value after (`None`: remove the key), or an error message.
pub type Update = Arc<dyn Fn(Option<&[u8]>) -> Result<Option<Vec<u8>>, String> + Send + Sync>;

/// What the starter registered: types, and update functions, by name.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    pub(crate) types: HashMap<String, Make>,
    pub(crate) updates: HashMap<String, Update>,
}

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
    /// The largest request answered (default 64 MiB): a larger one is
    /// refused with [`ErrorKind::Limit`] and its connection goes on. (A
    /// socket refuses messages over procs-ipc's limit before reading them;
    /// a ring hands over what was sent.)
    pub max_request: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_objects: 1_000_000,
            max_connections: 1024,
            ring_connections: SLOTS,
            max_request: 64 << 20,
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
    pub const D_UPDATE_WITH: u16 = 12;
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
    // Values.
    pub const V_GET: u16 = 50;
    pub const V_SET: u16 = 51;
    // Queues.
    pub const Q_PUT: u16 = 60;
    pub const Q_GET: u16 = 61;
    pub const Q_LEN: u16 = 62;
    // Locks.
    pub const K_ACQUIRE: u16 = 70;
    pub const K_RELEASE: u16 = 71;
    pub const K_LOCKED: u16 = 72;
    // Events.
    pub const E_SET: u16 = 80;
    pub const E_CLEAR: u16 = 81;
    pub const E_IS_SET: u16 = 82;
    pub const E_WAIT: u16 = 83;
    // Registered types.
    pub const C_CALL: u16 = 90;
    // Conditions (and K_ACQUIRE, K_RELEASE, K_LOCKED on their lock).
    pub const CV_WAIT: u16 = 100;
    pub const CV_NOTIFY: u16 = 101;
    // Semaphores.
    pub const S_ACQUIRE: u16 = 110;
    pub const S_RELEASE: u16 = 111;
    pub const S_VALUE: u16 = 112;
    // Barriers.
    pub const B_WAIT: u16 = 120;
    pub const B_STATE: u16 = 121;
    pub const B_ABORT: u16 = 122;
    pub const B_RESET: u16 = 123;
    // Joinable queues (and Q_PUT, Q_GET, Q_LEN).
    pub const J_TASK_DONE: u16 = 130;
    pub const J_JOIN: u16 = 131;
    /// What an acquire answers.
    pub const ACQUIRED: u64 = 0;
    pub const ACQUIRED_OWNER_DIED: u64 = 1;
    pub const ACQUIRE_TIMED_OUT: u64 = 2;
}

enum Object {
    Dict(HashMap<Vec<u8>, Vec<u8>>),
    List(Vec<Vec<u8>>),
    Namespace(BTreeMap<Vec<u8>, Vec<u8>>),
    Value(Vec<u8>),
    Queue {
        items: VecDeque<Vec<u8>>,
        /// 0: no limit.
        maxsize: usize,
    },
    Lock(LockState),
    /// A condition variable with its own lock (Python's `m.Condition()`,
    /// over an RLock): waiters take tickets, a notify frees the oldest.
    Condition {
        lock: LockState,
        next_ticket: u64,
        /// Tickets below this are notified.
        released_below: u64,
    },
    Event(bool),
    Semaphore {
        value: u64,
        /// A bounded semaphore's initial value: a release past it is
        /// Python's `ValueError`.
        bound: Option<u64>,
    },
    Barrier {
        parties: u64,
        waiting: u64,
        generation: u64,
        /// Aborted, or a wait timed out: every wait fails until a reset.
        broken: bool,
        /// A generation a reset ended: its waiters fail.
        reset: Option<u64>,
    },
    /// A joinable queue: a queue, and the items not yet reported done.
    Joinable {
        items: VecDeque<Vec<u8>>,
        maxsize: usize,
        unfinished: u64,
    },
    /// A list of fixed length (Python's `m.Array`).
    Array(Vec<Vec<u8>>),
    Custom(Box<dyn Served>),
}

/// A lock held by one connection at a time (reentrant: an RLock).
#[derive(Debug, Default)]
struct LockState {
    /// The connection holding it.
    holder: Option<u64>,
    /// How many times its holder took it (an RLock's count).
    depth: u32,
    /// Its last holder's connection ended while holding it: the next
    /// acquire says so (`OwnerDied`).
    owner_died: bool,
    reentrant: bool,
}

impl Object {
    fn lock_state(&mut self) -> Option<&mut LockState> {
        match self {
            Object::Lock(l) | Object::Condition { lock: l, .. } => Some(l),
            _ => None,
        }
    }
}

impl Object {
    fn ty(&self) -> Type {
        match self {
            Object::Dict(_) => Type::Dict,
            Object::List(_) => Type::List,
            Object::Namespace(_) => Type::Namespace,
            Object::Value(_) => Type::Value,
            Object::Queue { .. } => Type::Queue,
            Object::Lock(l) if l.reentrant => Type::RLock,
            Object::Lock(_) => Type::Lock,
            Object::Condition { .. } => Type::Condition,
            Object::Event(_) => Type::Event,
            Object::Semaphore { bound: None, .. } => Type::Semaphore,
            Object::Semaphore { .. } => Type::BoundedSemaphore,
            Object::Barrier { .. } => Type::Barrier,
            Object::Joinable { .. } => Type::JoinableQueue,
            Object::Array(_) => Type::Array,
            Object::Custom(_) => Type::Custom,
        }
    }
}

/// An object and the condition its blocking calls wait on.
struct Held {
    obj: Mutex<Object>,
    changed: Condvar,
}

/// How often the server looks for holders that died without a word.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// How long a blocking call waits between looks at its client's life.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// The connection a call comes from.
pub(crate) struct Caller<'a> {
    id: u64,
    /// Its process, which its references count for.
    holder: Holder,
    /// The server's registered functions.
    registry: &'a Registry,
    /// Whether the client is still there (its socket open).
    alive: &'a dyn Fn() -> bool,
    /// The locks it holds, released if it goes.
    locks: RefCell<Vec<u64>>,
    /// Whether a call may wait (false: one that would is answered as if
    /// its client had gone; for the fuzz target, which must never block).
    may_wait: bool,
}

/// What every connection's thread shares.
struct State {
    objects: Mutex<HashMap<u64, Arc<Held>>>,
    /// Objects made by name (`Manager::named_*`): the same one for every
    /// client that asks. They live as long as the server.
    names: Mutex<HashMap<Vec<u8>, (Type, u64)>>,
    /// Names this server in serialized proxies.
    token: u64,
    /// The registered types and update functions.
    registry: Registry,
    /// Each unnamed object's references, by the process holding them.
    refs: Mutex<HashMap<u64, HashMap<Holder, u32>>>,
    next_id: AtomicU64,
    slots: Option<Arc<Slots>>,
    free_slots: Mutex<Vec<usize>>,
    connections: AtomicU64,
    limits: Limits,
    shutdown: AtomicBool,
}

/// Serves `listener` until a client asks for shutdown or `parent` is
/// gone (the process that started the server: its death is seen within
/// a tenth of a second). Clients that map `slots` are served through them.
pub(crate) fn serve(
    mut listener: Listener,
    token: u64,
    slots: Option<Arc<Slots>>,
    limits: Limits,
    registry: Registry,
    parent: Option<i32>,
) {
    let state = Arc::new(State {
        objects: Mutex::new(HashMap::new()),
        names: Mutex::new(HashMap::new()),
        token,
        registry,
        refs: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        slots,
        free_slots: Mutex::new((0..limits.ring_connections.min(SLOTS)).rev().collect()),
        connections: AtomicU64::new(0),
        limits,
        shutdown: AtomicBool::new(false),
    });
    // A process whose parent died is adopted by another: its parent's pid
    // changes, which pid reuse cannot fake.
    let parent_alive = || parent.is_none_or(|p| nix::unistd::getppid().as_raw() == p);
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    while !state.shutdown.load(Ordering::Acquire) && parent_alive() {
        if Instant::now() >= next_sweep {
            sweep(&state);
            next_sweep = Instant::now() + SWEEP_EVERY;
        }
        match listener.accept_incoming(Some(Duration::from_millis(100))) {
            Ok(incoming) => {
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
                        // The handshake runs here: a peer that says nothing
                        // holds up this thread alone.
                        match incoming.authenticate::<()>() {
                            Ok(conn) => serve_connection(&state, conn),
                            Err(e) => eprintln!("procs-manager: a connection refused: {e}"),
                        }
                        state.connections.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    eprintln!("procs-manager: no thread for a connection");
                }
            }
            Err(IpcError::Timeout) => {}
            Err(e) => eprintln!("procs-manager: a connection failed: {e}"),
        }
    }
}

fn serve_connection(state: &State, socket: Connection<()>) {
    let Ok(hello) = socket.recv_bytes_timeout(procs_ipc::HANDSHAKE_TIMEOUT) else {
        return;
    };
    let Ok((token, holder)) = parse_hello(&hello) else {
        return;
    };
    // A client that maps the manager's segment is a process of its tree,
    // on this machine: its pid means something here. Another's (over TCP
    // from anywhere) does not: its references count for its connection.
    let in_tree = matches!((token, &state.slots), (Some(t), Some(s)) if t == s.token());
    let slot = match &state.slots {
        Some(slots) if in_tree => state
            .free_slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .map(|i| (slots.clone(), i)),
        _ => None,
    };
    let connection = state.next_id.fetch_add(1, Ordering::Relaxed);
    let holder = if in_tree {
        holder
    } else {
        Holder {
            pid: 0,
            start: connection,
        }
    };
    if let Some((slots, i)) = &slot {
        slots.restart(*i);
    }
    let slot_index = slot.as_ref().map(|(_, i)| *i);
    if socket
        .send_bytes(&slot_answer(slot_index, state.token))
        .is_err()
    {
        free(state, slot_index);
        return;
    }
    let link = Link {
        socket,
        slot,
        process: in_tree.then_some(holder),
    };
    let alive = || link.peer().alive();
    let caller = Caller {
        id: connection,
        holder,
        registry: &state.registry,
        alive: &alive,
        locks: RefCell::new(Vec::new()),
        may_wait: true,
    };
    let (mut req, mut resp) = (Vec::new(), Vec::new());
    while link.recv(Side::Server, &mut req).is_ok() {
        if req.len() > state.limits.max_request {
            wire::failed(
                &mut resp,
                ErrorKind::Limit,
                "a request over the server's limit",
            );
            req = Vec::new();
            if link.send(Side::Server, &resp).is_err() {
                break;
            }
            continue;
        }
        match wire::parse_request(&req) {
            Ok(r) => {
                if answer(state, &caller, r, &mut resp).is_err() {
                    // The client went during a blocking call.
                    break;
                }
            }
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
    release_locks(state, &caller);
    if holder.pid == 0 {
        drop_references(state, holder);
    }
    drop(link);
    free(state, slot_index);
}

/// Frees the locks a connection that ended still held: their next
/// acquire is told that the owner died.
fn release_locks(state: &State, caller: &Caller<'_>) {
    for id in caller.locks.take() {
        let held = state
            .objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned();
        if let Some(held) = held {
            let mut obj = held.obj.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(l) = obj.lock_state()
                && l.holder == Some(caller.id)
            {
                l.holder = None;
                l.depth = 0;
                l.owner_died = true;
                held.changed.notify_all();
            }
        }
    }
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

/// The client went in the middle of a blocking call: the connection ends.
pub(crate) struct Gone;

fn answer(
    state: &State,
    caller: &Caller<'_>,
    r: wire::Request<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Gone> {
    match r.kind {
        Kind::Shutdown => {
            state.shutdown.store(true, Ordering::Release);
            wire::done(out);
        }
        Kind::Create => {
            if let Err((kind, why)) = create(state, caller.holder, r.method, r.args, out) {
                wire::failed(out, kind, why);
            }
        }
        Kind::Incref | Kind::Decref | Kind::Transfer | Kind::Pin => {
            if let Err((kind, why)) = count(state, caller.holder, r, out) {
                wire::failed(out, kind, why);
            }
        }
        Kind::Count => {
            let n = state
                .objects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len();
            wire::done(out);
            wire::field_u64(out, n as u64);
        }
        Kind::Call => {
            let held = state
                .objects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&r.object)
                .cloned();
            let Some(held) = held else {
                wire::failed(out, ErrorKind::NoObject, "no such object");
                return Ok(());
            };
            wire::done(out);
            match call_held(&held, caller, r.object, r.method, r.args, out) {
                Ok(()) => {}
                Err(Call::Failed(f)) => f.write(out),
                Err(Call::Gone) => return Err(Gone),
            }
        }
    }
    Ok(())
}

/// Makes an object (or finds the one of that name): arguments name
/// (empty: none) and a parameter (a queue's maxsize).
fn create(
    state: &State,
    by: Holder,
    ty: u16,
    mut a: Fields<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Failure> {
    let ty = Type::from_code(ty).ok_or((ErrorKind::NoMethod, "no such type of object"))?;
    let (name, param) = (a.take()?, a.take_u64()?);
    let make = match ty {
        Type::Custom => {
            let typeid = a.take()?;
            let typeid = std::str::from_utf8(typeid)
                .map_err(|_| (ErrorKind::BadRequest, "a typeid is UTF-8"))?;
            Some(
                *state
                    .registry
                    .types
                    .get(typeid)
                    .ok_or((ErrorKind::NoMethod, "no type registered under that typeid"))?,
            )
        }
        _ => None,
    };
    // An array's items follow (read as it is made).
    if ty != Type::Array {
        a.end()?;
    }
    let mut names = state.names.lock().unwrap_or_else(|e| e.into_inner());
    if !name.is_empty()
        && let Some(&(t, id)) = names.get(name)
    {
        if t != ty {
            return Err((ErrorKind::Value, "an object of another type has that name"));
        }
        wire::done(out);
        wire::field_u64(out, id);
        return Ok(());
    }
    let mut objects = state.objects.lock().unwrap_or_else(|e| e.into_inner());
    if objects.len() >= state.limits.max_objects {
        return Err((ErrorKind::Limit, "the limit of objects"));
    }
    let obj = match ty {
        Type::Dict => Object::Dict(HashMap::new()),
        Type::List => Object::List(Vec::new()),
        Type::Namespace => Object::Namespace(BTreeMap::new()),
        Type::Value => Object::Value(Vec::new()),
        Type::Queue => Object::Queue {
            items: VecDeque::new(),
            maxsize: usize::try_from(param).unwrap_or(usize::MAX),
        },
        Type::Lock | Type::RLock => Object::Lock(LockState {
            reentrant: ty == Type::RLock,
            ..LockState::default()
        }),
        Type::Condition => Object::Condition {
            lock: LockState {
                reentrant: true,
                ..LockState::default()
            },
            next_ticket: 0,
            released_below: 0,
        },
        Type::Event => Object::Event(false),
        Type::Semaphore | Type::BoundedSemaphore => Object::Semaphore {
            value: param,
            bound: (ty == Type::BoundedSemaphore).then_some(param),
        },
        Type::Barrier => {
            if param == 0 {
                return Err((ErrorKind::Value, "a barrier needs at least one party"));
            }
            Object::Barrier {
                parties: param,
                waiting: 0,
                generation: 0,
                broken: false,
                reset: None,
            }
        }
        Type::JoinableQueue => Object::Joinable {
            items: VecDeque::new(),
            maxsize: usize::try_from(param).unwrap_or(usize::MAX),
            unfinished: 0,
        },
        Type::Array => {
            let mut items = Vec::with_capacity(a.len());
            while let Some(v) = a.next_field()? {
                items.push(v.to_vec());
            }
            Object::Array(items)
        }
        Type::Custom => {
            let make = make.expect("a custom type's maker was found");
            match std::panic::catch_unwind(make) {
                Ok(v) => Object::Custom(v),
                Err(_) => return Err((ErrorKind::Panic, "the type's constructor panicked")),
            }
        }
    };
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    objects.insert(
        id,
        Arc::new(Held {
            obj: Mutex::new(obj),
            changed: Condvar::new(),
        }),
    );
    if name.is_empty() {
        let mut refs = state.refs.lock().unwrap_or_else(|e| e.into_inner());
        refs.entry(id).or_default().insert(by, 1);
    } else {
        names.insert(name.to_vec(), (ty, id));
    }
    wire::done(out);
    wire::field_u64(out, id);
    Ok(())
}

/// Counts a reference up, down, or over to another process. A named
/// object is not counted (it lives as long as the server).
fn count(
    state: &State,
    by: Holder,
    r: wire::Request<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Failure> {
    let mut a = r.args;
    let to = match r.kind {
        Kind::Transfer => {
            let pid = i32::try_from(a.take_u64()?)
                .map_err(|_| (ErrorKind::BadRequest, "a pid out of range"))?;
            Some(Holder {
                pid,
                start: a.take_u64()?,
            })
        }
        _ => None,
    };
    a.end()?;
    let mut refs = state.refs.lock().unwrap_or_else(|e| e.into_inner());
    let known = state
        .objects
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&r.object);
    let Some(held) = refs.get_mut(&r.object) else {
        wire::done(out);
        return if known {
            // Named: not counted.
            Ok(())
        } else {
            Err((ErrorKind::NoObject, "no such object"))
        };
    };
    if r.kind == Kind::Pin {
        // Serialized: counted no more, kept as long as the server.
        refs.remove(&r.object);
        wire::done(out);
        return Ok(());
    }
    if r.kind == Kind::Transfer && by.pid == 0 {
        // A child of a client outside the tree: its pid means nothing
        // here; the reference stays with the parent's connection.
        wire::done(out);
        return Ok(());
    }
    if r.kind == Kind::Incref {
        *held.entry(by).or_default() += 1;
    } else {
        // A decref (or transfer) of a reference this process does not
        // hold is ignored: counts never go below what was taken.
        if let Some(n) = held.get_mut(&by) {
            *n -= 1;
            if *n == 0 {
                held.remove(&by);
            }
            if let Some(to) = to {
                *held.entry(to).or_default() += 1;
            }
        }
    }
    if held.is_empty() {
        refs.remove(&r.object);
        free_object(state, r.object);
    }
    wire::done(out);
    Ok(())
}

/// Drops an object nobody holds (a waiter on it keeps its own handle).
fn free_object(state: &State, id: u64) {
    let held = state
        .objects
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    if let Some(held) = held {
        held.changed.notify_all();
    }
}

/// Drops the references a connection from outside the tree held, as it
/// ends.
fn drop_references(state: &State, holder: Holder) {
    let mut refs = state.refs.lock().unwrap_or_else(|e| e.into_inner());
    let mut freed = Vec::new();
    for (id, held) in refs.iter_mut() {
        held.remove(&holder);
        if held.is_empty() {
            freed.push(*id);
        }
    }
    for id in freed {
        refs.remove(&id);
        free_object(state, id);
    }
}

/// Drops the references of processes of the tree that died without
/// dropping their proxies (SIGKILL), and the objects they leave unheld.
/// (Connections from outside the tree, pid 0, count for themselves.)
fn sweep(state: &State) {
    let mut refs = state.refs.lock().unwrap_or_else(|e| e.into_inner());
    let mut dead: HashMap<Holder, bool> = HashMap::new();
    let mut freed = Vec::new();
    for (id, held) in refs.iter_mut() {
        held.retain(|h, _| {
            h.pid == 0
                || !*dead
                    .entry(*h)
                    .or_insert_with(|| !procs_sync::raw::liveness::is_alive(h.pid, h.start))
        });
        if held.is_empty() {
            freed.push(*id);
        }
    }
    for id in freed {
        refs.remove(&id);
        free_object(state, id);
    }
}

/// How a call failed.
enum Call {
    Failed(Failed),
    Gone,
}

impl From<Failure> for Call {
    fn from(f: Failure) -> Call {
        Call::Failed(f.into())
    }
}

impl From<Failed> for Call {
    fn from(f: Failed) -> Call {
        Call::Failed(f)
    }
}

impl From<Malformed> for Call {
    fn from(m: Malformed) -> Call {
        Call::Failed(m.into())
    }
}

/// A timeout field: milliseconds, `u64::MAX` for none.
fn deadline(ms: u64) -> Option<Instant> {
    (ms != u64::MAX).then(|| Instant::now() + Duration::from_millis(ms))
}

/// Waits on `held` until `ready` holds of its object (then returns the
/// guard) or `until` passes (`None`), looking at the caller's life
/// between waits.
fn wait_for<'h>(
    held: &'h Held,
    caller: &Caller<'_>,
    until: Option<Instant>,
    ready: impl Fn(&Object) -> bool,
) -> Result<Option<std::sync::MutexGuard<'h, Object>>, Call> {
    let mut obj = held.obj.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if ready(&obj) {
            return Ok(Some(obj));
        }
        let now = Instant::now();
        if until.is_some_and(|u| now >= u) {
            return Ok(None);
        }
        if !caller.may_wait {
            return Err(Call::Gone);
        }
        let slice = until.map_or(LOOK_EVERY, |u| (u - now).min(LOOK_EVERY));
        obj = held
            .changed
            .wait_timeout(obj, slice)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        if !(caller.alive)() {
            return Err(Call::Gone);
        }
    }
}

/// Takes a lock (or a condition's) for the caller: answers ACQUIRED,
/// ACQUIRED_OWNER_DIED or ACQUIRE_TIMED_OUT. A reentrant lock its caller
/// holds is taken once more; a plain one is Python's `RuntimeError` (it
/// would wait for ever on itself).
fn acquire(
    held: &Held,
    caller: &Caller<'_>,
    id: u64,
    until: Option<Instant>,
    out: &mut Vec<u8>,
) -> Result<(), Call> {
    use method::*;
    {
        let mut obj = held.obj.lock().unwrap_or_else(|e| e.into_inner());
        let l = obj.lock_state().expect("a lock");
        if l.holder == Some(caller.id) {
            if !l.reentrant {
                return Err(Call::Failed(Failed::Static(
                    ErrorKind::Runtime,
                    "this client holds the lock already",
                )));
            }
            l.depth += 1;
            wire::field_u64(out, ACQUIRED);
            return Ok(());
        }
    }
    let free = |o: &Object| match o {
        Object::Lock(l) | Object::Condition { lock: l, .. } => l.holder.is_none(),
        _ => false,
    };
    match wait_for(held, caller, until, free)? {
        None => wire::field_u64(out, ACQUIRE_TIMED_OUT),
        Some(mut obj) => {
            let l = obj.lock_state().expect("a lock");
            l.holder = Some(caller.id);
            l.depth = 1;
            let died = std::mem::take(&mut l.owner_died);
            caller.locks.borrow_mut().push(id);
            wire::field_u64(out, if died { ACQUIRED_OWNER_DIED } else { ACQUIRED });
        }
    }
    Ok(())
}

/// Runs one method of a held object: the blocking types here, the others
/// in `call`.
fn call_held(
    held: &Held,
    caller: &Caller<'_>,
    id: u64,
    method: u16,
    mut a: Fields<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Call> {
    use method::*;
    let ty = held.obj.lock().unwrap_or_else(|e| e.into_inner()).ty();
    match (ty, method) {
        (Type::Queue | Type::JoinableQueue, Q_PUT) => {
            let (v, ms) = (a.take()?, a.take_u64()?);
            a.end()?;
            let room = |o: &Object| match o {
                Object::Queue { items, maxsize } | Object::Joinable { items, maxsize, .. } => {
                    *maxsize == 0 || items.len() < *maxsize
                }
                _ => false,
            };
            let Some(mut obj) = wait_for(held, caller, deadline(ms), room)? else {
                return Err(Call::Failed(Failed::Static(
                    ErrorKind::Full,
                    "the queue is full",
                )));
            };
            match &mut *obj {
                Object::Queue { items, .. } => items.push_back(v.to_vec()),
                Object::Joinable {
                    items, unfinished, ..
                } => {
                    items.push_back(v.to_vec());
                    *unfinished += 1;
                }
                _ => {}
            }
            held.changed.notify_all();
        }
        (Type::Queue | Type::JoinableQueue, Q_GET) => {
            let ms = a.take_u64()?;
            a.end()?;
            let some = |o: &Object| match o {
                Object::Queue { items, .. } | Object::Joinable { items, .. } => !items.is_empty(),
                _ => false,
            };
            let Some(mut obj) = wait_for(held, caller, deadline(ms), some)? else {
                return Err(Call::Failed(Failed::Static(
                    ErrorKind::Empty,
                    "the queue is empty",
                )));
            };
            if let Object::Queue { items, .. } | Object::Joinable { items, .. } = &mut *obj
                && let Some(v) = items.pop_front()
            {
                wire::field(out, &v);
            }
            held.changed.notify_all();
        }
        (Type::Lock | Type::RLock | Type::Condition, K_ACQUIRE) => {
            let ms = a.take_u64()?;
            a.end()?;
            acquire(held, caller, id, deadline(ms), out)?;
        }
        (Type::Lock | Type::RLock | Type::Condition, K_RELEASE) => {
            a.end()?;
            let mut obj = held.obj.lock().unwrap_or_else(|e| e.into_inner());
            let l = obj.lock_state().expect("a lock");
            if l.holder != Some(caller.id) {
                return Err(Call::Failed(Failed::Static(
                    ErrorKind::Runtime,
                    "release of a lock this client does not hold",
                )));
            }
            l.depth -= 1;
            if l.depth == 0 {
                l.holder = None;
                caller.locks.borrow_mut().retain(|&x| x != id);
                held.changed.notify_all();
            }
        }
        (Type::Condition, CV_WAIT) => {
            let ms = a.take_u64()?;
            a.end()?;
            // Release the lock whole, wait for a notify, take it back (as
            // Python's wait does, however long that takes).
            let (ticket, depth) = {
                let mut obj = held.obj.lock().unwrap_or_else(|e| e.into_inner());
                let Object::Condition {
                    lock, next_ticket, ..
                } = &mut *obj
                else {
                    unreachable!("a condition")
                };
                if lock.holder != Some(caller.id) {
                    return Err(Call::Failed(Failed::Static(
                        ErrorKind::Runtime,
                        "cannot wait on an un-acquired condition",
                    )));
                }
                let depth = std::mem::take(&mut lock.depth);
                lock.holder = None;
                *next_ticket += 1;
                held.changed.notify_all();
                (*next_ticket - 1, depth)
            };
            let notified = |o: &Object| matches!(o, Object::Condition { released_below, .. } if *released_below > ticket);
            let got = wait_for(held, caller, deadline(ms), notified)?.is_some();
            let free =
                |o: &Object| matches!(o, Object::Condition { lock, .. } if lock.holder.is_none());
            let mut obj = wait_for(held, caller, None, free)?.expect("no deadline");
            if let Object::Condition {
                lock,
                released_below,
                next_ticket,
            } = &mut *obj
            {
                lock.holder = Some(caller.id);
                lock.depth = depth;
                if !got && *released_below <= ticket {
                    // Timed out: the ticket leaves the line, so that a
                    // later notify goes to a waiter still there.
                    *released_below = (*released_below).max(ticket + 1).min(*next_ticket);
                }
            }
            wire::field_u64(out, u64::from(got));
        }
        (Type::Condition, CV_NOTIFY) => {
            let n = a.take_u64()?;
            a.end()?;
            let mut obj = held.obj.lock().unwrap_or_else(|e| e.into_inner());
            let Object::Condition {
                lock,
                next_ticket,
                released_below,
            } = &mut *obj
            else {
                unreachable!("a condition")
            };
            if lock.holder != Some(caller.id) {
                return Err(Call::Failed(Failed::Static(
                    ErrorKind::Runtime,
                    "cannot notify on an un-acquired condition",
                )));
            }
            *released_below = released_below.saturating_add(n).min(*next_ticket);
            held.changed.notify_all();
        }
        (Type::Semaphore | Type::BoundedSemaphore, S_ACQUIRE) => {
            let ms = a.take_u64()?;
            a.end()?;
            let positive = |o: &Object| matches!(o, Object::Semaphore { value, .. } if *value > 0);
            let got = match wait_for(held, caller, deadline(ms), positive)? {
                Some(mut obj) => {
                    if let Object::Semaphore { value, .. } = &mut *obj {
                        *value -= 1;
                    }
                    true
                }
                None => false,
            };
            wire::field_u64(out, u64::from(got));
        }
        (Type::Barrier, B_WAIT) => {
            let ms = a.take_u64()?;
            a.end()?;
            let broken = || {
                Call::Failed(Failed::Static(
                    ErrorKind::BrokenBarrier,
                    "the barrier is broken",
                ))
            };
            let (index, generation) = {
                let mut obj = held.obj.lock().unwrap_or_else(|e| e.into_inner());
                let Object::Barrier {
                    parties,
                    waiting,
                    generation,
                    broken: b,
                    ..
                } = &mut *obj
                else {
                    unreachable!("a barrier")
                };
                if *b {
                    return Err(broken());
                }
                let index = *waiting;
                *waiting += 1;
                if *waiting == *parties {
                    *waiting = 0;
                    *generation += 1;
                    held.changed.notify_all();
                    wire::field_u64(out, index);
                    return Ok(());
                }
                (index, *generation)
            };
            let moved = |o: &Object| matches!(o, Object::Barrier { generation: g, broken, .. } if *g != generation || *broken);
            match wait_for(held, caller, deadline(ms), moved) {
                Ok(Some(obj)) => {
                    let Object::Barrier {
                        broken: b,
                        reset,
                        generation: g,
                        ..
                    } = &*obj
                    else {
                        unreachable!("a barrier")
                    };
                    if (*g == generation && *b) || *reset == Some(generation) {
                        return Err(broken());
                    }
                    wire::field_u64(out, index);
                }
                Ok(None) => {
                    // A timeout breaks the barrier, as Python's.
                    let mut obj = held.obj.lock().unwrap_or_else(|e| e.into_inner());
                    if let Object::Barrier { broken: b, .. } = &mut *obj {
                        *b = true;
                    }
                    held.changed.notify_all();
                    return Err(broken());
                }
                Err(Call::Gone) => {
                    // A party that left breaks the barrier for the others.
                    let mut obj = held.obj.lock().unwrap_or_else(|e| e.into_inner());
                    if let Object::Barrier { broken: b, .. } = &mut *obj {
                        *b = true;
                    }
                    held.changed.notify_all();
                    return Err(Call::Gone);
                }
                Err(e) => return Err(e),
            }
        }
        (Type::JoinableQueue, J_JOIN) => {
            let ms = a.take_u64()?;
            a.end()?;
            let done = |o: &Object| matches!(o, Object::Joinable { unfinished: 0, .. });
            let got = wait_for(held, caller, deadline(ms), done)?.is_some();
            wire::field_u64(out, u64::from(got));
        }
        (Type::Event, E_WAIT) => {
            let ms = a.take_u64()?;
            a.end()?;
            let set = |o: &Object| matches!(o, Object::Event(true));
            let got = wait_for(held, caller, deadline(ms), set)?.is_some();
            wire::field_u64(out, u64::from(got));
        }
        _ => {
            let mut obj = held.obj.lock().unwrap_or_else(|e| e.into_inner());
            call(&mut obj, caller.registry, method, a, out)?;
            if matches!(
                method,
                E_SET | E_CLEAR | S_RELEASE | B_ABORT | B_RESET | J_TASK_DONE
            ) {
                held.changed.notify_all();
            }
        }
    }
    Ok(())
}

type Failure = (ErrorKind, &'static str);

/// A refusal with the server's words, or a registered method's.
pub(crate) enum Failed {
    Static(ErrorKind, &'static str),
    Owned(ErrorKind, String),
}

impl Failed {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Failed::Static(kind, why) => wire::failed(out, *kind, why),
            Failed::Owned(kind, why) => wire::failed(out, *kind, why),
        }
    }
}

impl From<Failure> for Failed {
    fn from((kind, why): Failure) -> Failed {
        Failed::Static(kind, why)
    }
}

impl From<Malformed> for Failed {
    fn from(m: Malformed) -> Failed {
        Failed::Static(ErrorKind::BadRequest, m.0)
    }
}

impl From<Malformed> for Failure {
    fn from(m: Malformed) -> Failure {
        (ErrorKind::BadRequest, m.0)
    }
}

/// Runs one method; its results go as fields after `out`'s status.
fn call(
    obj: &mut Object,
    registry: &Registry,
    method: u16,
    mut a: Fields<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Failed> {
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
        (Object::Dict(d), D_UPDATE_WITH) => {
            let (k, name) = (a.take()?, a.take()?);
            a.end()?;
            let f = std::str::from_utf8(name)
                .ok()
                .and_then(|n| registry.updates.get(n))
                .ok_or(Failed::Static(
                    ErrorKind::NoMethod,
                    "no update function registered under that name",
                ))?;
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                f(d.get(k).map(Vec::as_slice))
            }));
            match ran {
                Ok(Ok(Some(v))) => {
                    wire::field(out, &v);
                    d.insert(k.to_vec(), v);
                }
                Ok(Ok(None)) => {
                    d.remove(k);
                }
                Ok(Err(message)) => return Err(Failed::Owned(ErrorKind::Method, message)),
                Err(_) => {
                    return Err(Failed::Static(
                        ErrorKind::Panic,
                        "the update function panicked",
                    ));
                }
            }
        }
        (Object::Dict(d), D_UPDATE) => {
            if !a.len().is_multiple_of(2) {
                return Err(Failed::Static(ErrorKind::BadRequest, "update takes pairs"));
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
        (Object::List(l) | Object::Array(l), L_GET) => {
            let i = a.take_u64()?;
            a.end()?;
            let v = index(l, i)?;
            wire::field(out, &l[v]);
        }
        (Object::List(l) | Object::Array(l), L_SET) => {
            let (i, v) = (a.take_u64()?, a.take()?);
            a.end()?;
            let i = index(l, i)?;
            l[i] = v.to_vec();
        }
        (Object::List(l) | Object::Array(l), L_LEN) => {
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
                return Err(Failed::Static(
                    ErrorKind::Value,
                    "list.remove(x): x not in list",
                ));
            };
            l.remove(i);
        }
        (Object::List(l) | Object::Array(l), L_SLICE) => {
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
                    _ => {
                        return Err(Failed::Static(
                            ErrorKind::Value,
                            "the field is not an integer",
                        ));
                    }
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
        (Object::Value(v), V_GET) => {
            a.end()?;
            wire::field(out, v);
        }
        (Object::Value(v), V_SET) => {
            let new = a.take()?;
            a.end()?;
            *v = new.to_vec();
        }
        (Object::Queue { items, .. }, Q_LEN) => {
            a.end()?;
            wire::field_u64(out, items.len() as u64);
        }
        (Object::Lock(l) | Object::Condition { lock: l, .. }, K_LOCKED) => {
            a.end()?;
            wire::field_u64(out, u64::from(l.holder.is_some()));
        }
        (Object::Semaphore { value, bound }, S_RELEASE) => {
            a.end()?;
            if bound.is_some_and(|b| *value >= b) {
                return Err(Failed::Static(
                    ErrorKind::Value,
                    "Semaphore released too many times",
                ));
            }
            *value += 1;
        }
        (Object::Semaphore { value, .. }, S_VALUE) => {
            a.end()?;
            wire::field_u64(out, *value);
        }
        (
            Object::Barrier {
                parties,
                waiting,
                broken,
                ..
            },
            B_STATE,
        ) => {
            a.end()?;
            wire::field_u64(out, *parties);
            wire::field_u64(out, *waiting);
            wire::field_u64(out, u64::from(*broken));
        }
        (Object::Barrier { broken, .. }, B_ABORT) => {
            a.end()?;
            *broken = true;
        }
        (
            Object::Barrier {
                waiting,
                generation,
                broken,
                reset,
                ..
            },
            B_RESET,
        ) => {
            a.end()?;
            if *waiting > 0 {
                *reset = Some(*generation);
            }
            *waiting = 0;
            *generation += 1;
            *broken = false;
        }
        (Object::Joinable { unfinished, .. }, J_TASK_DONE) => {
            a.end()?;
            if *unfinished == 0 {
                return Err(Failed::Static(
                    ErrorKind::Value,
                    "task_done() called too many times",
                ));
            }
            *unfinished -= 1;
        }
        (Object::Joinable { items, .. }, Q_LEN) => {
            a.end()?;
            wire::field_u64(out, items.len() as u64);
        }
        (Object::Event(e), E_SET | E_CLEAR) => {
            a.end()?;
            *e = method == E_SET;
        }
        (Object::Event(e), E_IS_SET) => {
            a.end()?;
            wire::field_u64(out, u64::from(*e));
        }
        (Object::Custom(v), C_CALL) => {
            let (name, args) = (a.take()?, a.take()?);
            a.end()?;
            let name = std::str::from_utf8(name)
                .map_err(|_| (ErrorKind::BadRequest, "a method's name is UTF-8"))?;
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| v.call(name, args)));
            match ran {
                Ok(Ok(result)) => wire::field(out, &result),
                Ok(Err(message)) => return Err(Failed::Owned(ErrorKind::Method, message)),
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic without a message".into());
                    return Err(Failed::Owned(ErrorKind::Panic, message));
                }
            }
        }
        _ => {
            return Err(Failed::Static(
                ErrorKind::NoMethod,
                "no such method for this object",
            ));
        }
    }
    Ok(())
}

fn index(l: &[Vec<u8>], i: u64) -> Result<usize, Failure> {
    usize::try_from(i)
        .ok()
        .filter(|&i| i < l.len())
        .ok_or((ErrorKind::Index, "list index out of range"))
}

/// A server without a socket, answering request bytes in this process:
/// what the fuzz target drives. Calls that would wait are refused at once.
#[doc(hidden)]
pub struct Loopback {
    state: State,
}

impl Default for Loopback {
    fn default() -> Self {
        Self::new()
    }
}

impl Loopback {
    /// A server with no object yet and small limits.
    pub fn new() -> Loopback {
        Loopback {
            state: State {
                objects: Mutex::new(HashMap::new()),
                names: Mutex::new(HashMap::new()),
                token: 0,
                registry: Registry::default(),
                refs: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                slots: None,
                free_slots: Mutex::new(Vec::new()),
                connections: AtomicU64::new(0),
                limits: Limits {
                    max_objects: 64,
                    ..Limits::default()
                },
                shutdown: AtomicBool::new(false),
            },
        }
    }

    /// Answers each request in turn as one connection would (the locks
    /// it still holds are released at the end, as when a client goes);
    /// returns the answers, `None` where the connection would have ended.
    pub fn answer_all(&self, requests: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
        let alive = || true;
        let caller = Caller {
            id: u64::MAX,
            holder: Holder {
                pid: i32::MAX,
                start: 0,
            },
            registry: &self.state.registry,
            alive: &alive,
            locks: RefCell::new(Vec::new()),
            may_wait: false,
        };
        let mut out = Vec::new();
        for req in requests {
            let mut resp = Vec::new();
            let answered = match wire::parse_request(req) {
                Ok(r) => answer(&self.state, &caller, r, &mut resp).is_ok(),
                Err(Malformed(why)) => {
                    wire::failed(&mut resp, ErrorKind::BadRequest, why);
                    true
                }
            };
            out.push(answered.then_some(resp));
        }
        release_locks(&self.state, &caller);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request built from parts.
    fn req(kind: Kind, object: u64, method: u16, fields: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        wire::request(&mut out, kind, object, method);
        for f in fields {
            wire::field(&mut out, f);
        }
        out
    }

    #[test]
    fn the_loopback_answers_every_request_and_refuses_waits() {
        let s = Loopback::new();
        let create_q = req(
            Kind::Create,
            0,
            Type::Queue as u16,
            &[b"", &0u64.to_le_bytes()],
        );
        let get_forever = req(Kind::Call, 1, method::Q_GET, &[&u64::MAX.to_le_bytes()]);
        let get_now = req(Kind::Call, 1, method::Q_GET, &[&0u64.to_le_bytes()]);
        let answers = s.answer_all(&[&create_q, &get_now, &get_forever, b"\x01"]);
        assert!(matches!(
            wire::parse_response(answers[0].as_ref().unwrap()),
            Ok(Ok(_))
        ));
        let (kind, _) = wire::parse_response(answers[1].as_ref().unwrap())
            .unwrap()
            .unwrap_err();
        assert_eq!(kind, ErrorKind::Empty);
        assert!(answers[2].is_none(), "a wait is refused, not blocked on");
        let (kind, _) = wire::parse_response(answers[3].as_ref().unwrap())
            .unwrap()
            .unwrap_err();
        assert_eq!(kind, ErrorKind::BadRequest);
    }

    #[test]
    fn pseudo_random_requests_get_answers_and_never_panic() {
        // The fuzz target's check, on stable, for a few thousand inputs:
        // valid heads with random methods and fields, and raw noise.
        let s = Loopback::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..3000 {
            let r = next();
            let mut m = Vec::new();
            let kind = [Kind::Call, Kind::Create][(r & 1) as usize];
            wire::request(&mut m, kind, next() % 8, (next() % 90) as u16);
            for _ in 0..(r >> 8) % 4 {
                let len = (next() % 12) as usize;
                let f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                wire::field(&mut m, &f);
            }
            if r & 0x10000 != 0 {
                let cut = (next() as usize) % (m.len() + 1);
                m.truncate(cut);
            }
            for a in s.answer_all(&[&m]).into_iter().flatten() {
                assert!(wire::parse_response(&a).is_ok());
            }
        }
    }
}
