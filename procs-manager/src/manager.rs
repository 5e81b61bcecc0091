//! The manager handle, the server's process, and each client thread's
//! connection.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use procs_core::Process;
use procs_ipc::{Address, Client, Connection, Listener};

use crate::error::{Error, Result};
use crate::link::{Holder, Link, Side, Slots, hello, parse_answer};
use crate::proxy::{
    ArrayProxy, BarrierProxy, ConditionProxy, CustomProxy, DictProxy, EventProxy,
    JoinableQueueProxy, ListProxy, LockProxy, Namespace, QueueProxy, SemaphoreProxy, ValueProxy,
};
use crate::server::{self, Limits, Make, Registry, Update};
use crate::wire::{self, Fields, Kind, Type};

/// How long a manager's drop waits for its server to end after asking it
/// to, before killing it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What a proxy needs to reach its manager: where it serves, the key, and
/// (in the manager's process tree) the slots of shared memory.
#[derive(Debug)]
pub(crate) struct Shared {
    address: Address,
    authkey: Vec<u8>,
    slots: Option<Arc<Slots>>,
    /// Names this manager among the connections a thread holds.
    id: u64,
}

/// A server process that holds shared objects, and the way to it
/// (Python's `multiprocessing.Manager()`, a `SyncManager`).
///
/// Objects made through a manager ([`dict`](Manager::dict),
/// [`list`](Manager::list), [`namespace`](Manager::namespace)) live in the
/// server; their proxies are handles that any process of the tree can
/// use, moved into children as any value is. Each call is one round trip
/// to the server, through shared memory for the processes the manager's
/// starter forks (after the start), through the socket for others.
///
/// The server ends with [`shutdown`](Manager::shutdown), when the manager
/// is dropped (Python's `with Manager() as m:`), and when the process that
/// started it dies, by panic or by `SIGKILL` (it watches its parent).
///
/// ```
/// use procs_manager::Manager;
///
/// let manager = Manager::start()?;
/// let d = manager.dict::<String, i32>()?;
/// let mut workers = Vec::new();
/// for i in 0..3 {
///     let d = d.clone();
///     let mut p = procs_core::Process::new(move || {
///         d.insert(format!("worker {i}"), i * i).unwrap();
///     });
///     p.start()?;
///     workers.push(p);
/// }
/// for mut w in workers {
///     w.join()?;
/// }
/// assert_eq!(d.len()?, 3);
/// assert_eq!(d.get(&"worker 2".to_string())?, Some(4));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Manager {
    shared: Arc<Shared>,
    server: Option<Process>,
    /// The process that started the server: only it stops it (a copy of
    /// the handle in a forked child does not).
    starter: u32,
}

/// How to start a manager: where it listens, its key, its limits.
#[derive(Clone, Default)]
pub struct ManagerBuilder {
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    limits: Limits,
    registry: Registry,
}

impl std::fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("address", &self.address)
            .field("limits", &self.limits)
            .field("types", &self.registry.types.keys().collect::<Vec<_>>())
            .field("updates", &self.registry.updates.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ManagerBuilder {
    /// Listens on `address`: a Unix socket path, an abstract name, or a
    /// TCP address such as `127.0.0.1:50000` (port 0: any free port; see
    /// [`Manager::address`]). Default: a fresh abstract Unix name.
    pub fn address(mut self, address: impl Into<Address>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// The key clients must prove they hold (Python's `authkey`).
    /// Default: 32 random bytes, known to this process and its children.
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> Self {
        self.authkey = Some(key.as_ref().to_vec());
        self
    }

    /// The server's limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Registers a type the server will hold (Python's
    /// `BaseManager.register(typeid, callable)`): `make` builds a new
    /// value for each [`Manager::custom`] (see [`Served`](crate::Served)). The server is a
    /// fork of this process, so the function is the same there.
    pub fn register(mut self, typeid: &str, make: Make) -> Self {
        self.registry.types.insert(typeid.to_string(), make);
        self
    }

    /// Registers `f` under `name` for [`DictProxy::update_with`]: the
    /// server applies it to a key's value (`None`: no such key) and stores
    /// what it returns (`None`: removes the key), atomically with respect
    /// to every other call on the dictionary. The server is a fork of this
    /// process, so `f` is the same there.
    ///
    /// ```
    /// let m = procs_manager::Manager::builder()
    ///     .register_update("increment", |n: Option<u64>| Some(n.unwrap_or(0) + 1))
    ///     .start()?;
    /// let d = m.dict::<String, u64>()?;
    /// assert_eq!(d.update_with(&"hits".into(), "increment")?, Some(1));
    /// assert_eq!(d.update_with(&"hits".into(), "increment")?, Some(2));
    /// # Ok::<(), procs_manager::Error>(())
    /// ```
    pub fn register_update<V, F>(mut self, name: &str, f: F) -> Self
    where
        V: serde::Serialize + serde::de::DeserializeOwned,
        F: Fn(Option<V>) -> Option<V> + Send + Sync + 'static,
    {
        let erased: Update = Arc::new(move |now: Option<&[u8]>| {
            let now = match now {
                Some(b) => Some(crate::server::args::<V>(b)?),
                None => None,
            };
            f(now).map(|v| crate::server::reply(&v)).transpose()
        });
        self.registry.updates.insert(name.to_string(), erased);
        self
    }

    /// Starts the server process.
    pub fn start(self) -> Result<Manager> {
        let mut random = [0u8; 40];
        getrandom::fill(&mut random)
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
        let id = u64::from_le_bytes(random[..8].try_into().expect("8 bytes"));
        let authkey = self.authkey.unwrap_or_else(|| random[8..].to_vec());
        let address = self.address.unwrap_or_else(|| {
            Address::abstract_name(format!("procs-manager-{}-{id:016x}", std::process::id()))
        });
        let listener = Listener::bind(&address, &authkey)?;
        // A TCP port 0 is now a real port.
        let address = listener.address().clone();
        let slots = Arc::new(Slots::create(id)?);
        let parent = std::process::id() as i32;
        let server_slots = slots.clone();
        let limits = self.limits;
        let registry = self.registry;
        // A closure: forked, whatever the program's default start method.
        let mut server = procs_core::Process::builder()
            .start_method(procs_core::StartMethod::Fork)
            .name("SyncManager")
            .daemon(false)
            .build(move || {
                server::serve(
                    listener,
                    id,
                    Some(server_slots),
                    limits,
                    registry,
                    Some(parent),
                )
            });
        server.start()?;
        let shared = Arc::new(Shared {
            address,
            authkey,
            slots: Some(slots),
            id,
        });
        register(&shared);
        Ok(Manager {
            shared,
            server: Some(server),
            starter: std::process::id(),
        })
    }
}

impl Manager {
    /// Starts a server process on a fresh abstract Unix socket with a
    /// random authkey (Python's `Manager()`).
    pub fn start() -> Result<Manager> {
        Self::builder().start()
    }

    /// As [`start`](Manager::start), with the server's `limits`.
    pub fn start_with(limits: Limits) -> Result<Manager> {
        Self::builder().limits(limits).start()
    }

    /// Serves a manager from this process, at `address` with `authkey`,
    /// until a client asks it to shut down (Python's
    /// `get_server().serve_forever()`); what the `procs-manager serve`
    /// command runs. Clients reach it with [`connect`](Manager::connect).
    pub fn serve(
        address: impl Into<Address>,
        authkey: impl AsRef<[u8]>,
        limits: Limits,
    ) -> Result<()> {
        let listener = Listener::bind(address, authkey)?;
        server::serve(
            listener,
            random_token()?,
            None,
            limits,
            Registry::default(),
            None,
        );
        Ok(())
    }

    /// Where [`serve`](Manager::serve) would listen once bound, for a
    /// caller that must print it before serving (a TCP port 0 is chosen at
    /// bind).
    pub fn bind(address: impl Into<Address>, authkey: impl AsRef<[u8]>) -> Result<Bound> {
        Ok(Bound(Listener::bind(address, authkey)?))
    }

    /// A builder, to choose the address, the key, the limits.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// A handle to a manager that another program serves at `address`
    /// (Python's `BaseManager(address, authkey).connect()`): its calls go
    /// over the socket; [`shutdown`](Manager::shutdown) and drop leave the
    /// server running. The handshake happens here (a wrong key is
    /// [`Error::Ipc`] with an authentication error).
    pub fn connect(address: impl Into<Address>, authkey: impl AsRef<[u8]>) -> Result<Manager> {
        let mut shared = Shared {
            address: address.into(),
            authkey: authkey.as_ref().to_vec(),
            slots: None,
            id: 0,
        };
        // Connect now, so that a wrong key or nobody listening shows here;
        // the server names itself in its answer (proxies it serves, sent
        // here inside values, name it so).
        let (link, token) = connect(&shared)?;
        shared.id = token;
        let shared = Arc::new(shared);
        LINKS.with(|l| l.borrow_mut().insert(shared.id, link));
        register(&shared);
        Ok(Manager {
            shared,
            server: None,
            starter: std::process::id(),
        })
    }

    /// Where the server listens.
    pub fn address(&self) -> &Address {
        &self.shared.address
    }

    /// The key a client proves it holds before the server reads anything
    /// from it (Python's `authkey`): random, 32 bytes.
    pub fn authkey(&self) -> &[u8] {
        &self.shared.authkey
    }

    /// The server's pid, while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.server.as_ref().and_then(Process::pid)
    }

    /// A new empty dictionary held by the server (Python's `m.dict()`).
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::new(self.create(Type::Dict, "", 0)?))
    }

    /// A new empty list held by the server (Python's `m.list()`).
    pub fn list<T>(&self) -> Result<ListProxy<T>> {
        Ok(ListProxy::new(self.create(Type::List, "", 0)?))
    }

    /// A new namespace (named fields) held by the server (Python's
    /// `m.Namespace()`).
    #[doc(alias = "Namespace")]
    pub fn namespace(&self) -> Result<Namespace> {
        Ok(Namespace::new(self.create(Type::Namespace, "", 0)?))
    }

    /// A new value held by the server, set to `initial` (Python's
    /// `m.Value(typecode, initial)`).
    #[doc(alias = "Value")]
    pub fn value<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        initial: &T,
    ) -> Result<ValueProxy<T>> {
        let v = ValueProxy::new(self.create(Type::Value, "", 0)?);
        v.set(initial)?;
        Ok(v)
    }

    /// A new queue held by the server (Python's `m.Queue(maxsize)`; 0:
    /// no limit).
    #[doc(alias = "Queue")]
    pub fn queue<T>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        Ok(QueueProxy::new(self.create(
            Type::Queue,
            "",
            maxsize as u64,
        )?))
    }

    /// A new lock held by the server (Python's `m.Lock()`): one client
    /// connection holds it at a time; a holder that dies frees it, and the
    /// next acquire is told so.
    #[doc(alias = "Lock")]
    pub fn lock(&self) -> Result<LockProxy> {
        Ok(LockProxy::new(self.create(Type::Lock, "", 0)?))
    }

    /// A new reentrant lock held by the server (Python's `m.RLock()`):
    /// its holder may take it again, and releases it as many times.
    #[doc(alias = "RLock")]
    pub fn rlock(&self) -> Result<LockProxy> {
        Ok(LockProxy::new(self.create(Type::RLock, "", 0)?))
    }

    /// A new condition variable with its own reentrant lock (Python's
    /// `m.Condition()`).
    #[doc(alias = "Condition")]
    pub fn condition(&self) -> Result<ConditionProxy> {
        Ok(ConditionProxy::new(self.create(Type::Condition, "", 0)?))
    }

    /// A new semaphore starting at `value` (Python's `m.Semaphore(value)`).
    #[doc(alias = "Semaphore")]
    pub fn semaphore(&self, value: u64) -> Result<SemaphoreProxy> {
        Ok(SemaphoreProxy::new(self.create(
            Type::Semaphore,
            "",
            value,
        )?))
    }

    /// A new semaphore that refuses a release past `value` (Python's
    /// `m.BoundedSemaphore(value)`).
    #[doc(alias = "BoundedSemaphore")]
    pub fn bounded_semaphore(&self, value: u64) -> Result<SemaphoreProxy> {
        Ok(SemaphoreProxy::new(self.create(
            Type::BoundedSemaphore,
            "",
            value,
        )?))
    }

    /// A new barrier for `parties` (Python's `m.Barrier(parties)`); 0
    /// parties is [`ErrorKind::Value`](crate::ErrorKind::Value).
    #[doc(alias = "Barrier")]
    pub fn barrier(&self, parties: usize) -> Result<BarrierProxy> {
        Ok(BarrierProxy::new(self.create(
            Type::Barrier,
            "",
            parties as u64,
        )?))
    }

    /// A new joinable queue (Python's `m.JoinableQueue(maxsize)`; 0: no
    /// limit).
    #[doc(alias = "JoinableQueue")]
    pub fn joinable_queue<T>(&self, maxsize: usize) -> Result<JoinableQueueProxy<T>> {
        Ok(JoinableQueueProxy::new(self.create(
            Type::JoinableQueue,
            "",
            maxsize as u64,
        )?))
    }

    /// A new array holding `items`, of fixed length (Python's
    /// `m.Array(typecode, items)`).
    #[doc(alias = "Array")]
    pub fn array<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        items: &[T],
    ) -> Result<ArrayProxy<T>> {
        let encoded = items
            .iter()
            .map(|v| postcard::to_allocvec(v).map_err(|e| Error::Encode(e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        let args = |out: &mut Vec<u8>| {
            wire::field(out, b"");
            wire::field_u64(out, 0);
            encoded.iter().for_each(|v| wire::field(out, v));
        };
        let id = call(
            &self.shared,
            Kind::Create,
            0,
            Type::Array as u16,
            args,
            |mut f| Ok(f.take_u64()?),
        )?;
        Ok(ArrayProxy::new(ObjectRef {
            shared: self.shared.clone(),
            id,
            ty: Type::Array,
        }))
    }

    /// A new event held by the server (Python's `m.Event()`).
    #[doc(alias = "Event")]
    pub fn event(&self) -> Result<EventProxy> {
        Ok(EventProxy::new(self.create(Type::Event, "", 0)?))
    }

    /// The dictionary named `name` on the server, made empty on first use:
    /// how clients that connected on their own share one (Python's
    /// `register('get_dict', ...)` pattern). A name taken by an object of
    /// another type is [`ErrorKind::Value`](crate::ErrorKind::Value).
    pub fn named_dict<K, V>(&self, name: &str) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::new(self.create(Type::Dict, name, 0)?))
    }

    /// The list named `name`, as [`named_dict`](Manager::named_dict).
    pub fn named_list<T>(&self, name: &str) -> Result<ListProxy<T>> {
        Ok(ListProxy::new(self.create(Type::List, name, 0)?))
    }

    /// The queue named `name`, as [`named_dict`](Manager::named_dict) (its
    /// `maxsize` is the first user's).
    pub fn named_queue<T>(&self, name: &str, maxsize: usize) -> Result<QueueProxy<T>> {
        Ok(QueueProxy::new(self.create(
            Type::Queue,
            name,
            maxsize as u64,
        )?))
    }

    /// The namespace named `name`, as [`named_dict`](Manager::named_dict).
    pub fn named_namespace(&self, name: &str) -> Result<Namespace> {
        Ok(Namespace::new(self.create(Type::Namespace, name, 0)?))
    }

    /// The lock named `name`, as [`named_dict`](Manager::named_dict).
    pub fn named_lock(&self, name: &str) -> Result<LockProxy> {
        Ok(LockProxy::new(self.create(Type::Lock, name, 0)?))
    }

    /// A new value of the type registered as `typeid` (see
    /// [`ManagerBuilder::register`]); an unknown typeid is
    /// [`ErrorKind::NoMethod`](crate::ErrorKind::NoMethod).
    pub fn custom(&self, typeid: &str) -> Result<CustomProxy> {
        Ok(CustomProxy::new(self.create_typed(
            Type::Custom,
            "",
            0,
            typeid,
        )?))
    }

    /// The value of a registered type named `name`, made on first use, as
    /// [`named_dict`](Manager::named_dict).
    pub fn named_custom(&self, name: &str, typeid: &str) -> Result<CustomProxy> {
        Ok(CustomProxy::new(self.create_typed(
            Type::Custom,
            name,
            0,
            typeid,
        )?))
    }

    fn create(&self, ty: Type, name: &str, param: u64) -> Result<ObjectRef> {
        self.create_typed(ty, name, param, "")
    }

    fn create_typed(&self, ty: Type, name: &str, param: u64, typeid: &str) -> Result<ObjectRef> {
        let args = |out: &mut Vec<u8>| {
            wire::field(out, name.as_bytes());
            wire::field_u64(out, param);
            if ty == Type::Custom {
                wire::field(out, typeid.as_bytes());
            }
        };
        let id = call(&self.shared, Kind::Create, 0, ty as u16, args, |mut f| {
            Ok(f.take_u64()?)
        })?;
        Ok(ObjectRef {
            shared: self.shared.clone(),
            id,
            ty,
        })
    }

    /// How many objects the server holds now (named ones included): an
    /// object is freed when its last proxy is dropped, or when the last
    /// process holding one dies (seen within a second).
    pub fn object_count(&self) -> Result<usize> {
        call(
            &self.shared,
            Kind::Count,
            0,
            0,
            |_| {},
            |mut f| Ok(f.take_u64()? as usize),
        )
    }

    /// Stops the server (Python's `shutdown()`): it answers, then ends;
    /// proxies get [`Error::ManagerGone`] from then on. Waits for it.
    pub fn shutdown(&mut self) -> Result<()> {
        if std::process::id() != self.starter || self.shared.slots.is_none() {
            return Err(Error::NotStarter);
        }
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        let asked = call(&self.shared, Kind::Shutdown, 0, 0, |_| {}, |_| Ok(()));
        forget_connection(self.shared.id);
        if asked.is_err() || server.join_timeout(SHUTDOWN_GRACE)?.is_none() {
            let _ = server.kill();
            server.join()?;
        }
        Ok(())
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if std::process::id() == self.starter && self.server.is_some() {
            let _ = self.shutdown();
        }
    }
}

/// An object held by a manager's server: what every proxy holds, one
/// reference counted by the server (Python's incref and decref). A clone
/// takes another; a drop gives it back, and the last frees the object.
/// Dropped by a parent as it hands the proxy to a child it just started,
/// the reference goes to the child, which then holds (and drops) it. A
/// process killed with its proxies has its references dropped by the
/// server, which looks at its holders' lives.
#[derive(Debug)]
pub(crate) struct ObjectRef {
    shared: Arc<Shared>,
    id: u64,
    ty: Type,
}

impl Clone for ObjectRef {
    fn clone(&self) -> Self {
        // A server gone: the clone fails on its first use, as the original.
        let _ = call(&self.shared, Kind::Incref, self.id, 0, |_| {}, |_| Ok(()));
        ObjectRef {
            shared: self.shared.clone(),
            id: self.id,
            ty: self.ty,
        }
    }
}

impl Drop for ObjectRef {
    fn drop(&mut self) {
        let (kind, to) = match procs_core::handing_over_to() {
            Some(child) => (Kind::Transfer, Some(child)),
            None => (Kind::Decref, None),
        };
        let args = |out: &mut Vec<u8>| {
            if let Some(child) = to {
                let start = procs_sync::raw::liveness::start_ticks(child).unwrap_or(0);
                wire::field_u64(out, child as u64);
                wire::field_u64(out, start);
            }
        };
        // Not from inside another call of this thread (a drop in a result
        // decoder), and not once the thread's connections are gone: the
        // server's sweep then drops the reference with the process.
        if LINKS
            .try_with(|l| l.try_borrow_mut().is_ok())
            .unwrap_or(false)
        {
            let _ = call(&self.shared, kind, self.id, 0, args, |_| Ok(()));
        }
    }
}

impl ObjectRef {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Calls `method` on the object: `args` writes the arguments' fields,
    /// `result` reads the answer's.
    pub(crate) fn call<R>(
        &self,
        method: u16,
        args: impl FnOnce(&mut Vec<u8>),
        result: impl FnOnce(Fields<'_>) -> Result<R>,
    ) -> Result<R> {
        call(&self.shared, Kind::Call, self.id, method, args, result)
    }
}

/// This thread's connection to one manager, and the process it was made
/// in (a connection inherited by a fork belongs to the parent).
struct ThreadLink {
    made_in: u64,
    link: Link,
    buf: Vec<u8>,
}

/// Counts the forks this process came through, from a `pthread_atfork`
/// child handler: a connection made under another count was made in an
/// ancestor. Read on every call, so an atomic load, not a `getpid`
/// system call (glibc does not cache the pid).
static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn count_fork() {
    // Async-signal-safe: one atomic add, in the child of a fork.
    FORKS.fetch_add(1, Ordering::Relaxed);
}

fn fork_generation() -> u64 {
    static HANDLER: std::sync::Once = std::sync::Once::new();
    HANDLER.call_once(|| {
        // SAFETY: registers a child handler that only adds to an atomic;
        // no prepare or parent handler.
        let r = unsafe { libc::pthread_atfork(None, None, Some(count_fork)) };
        assert_eq!(r, 0, "pthread_atfork");
    });
    FORKS.load(Ordering::Relaxed)
}

thread_local! {
    static LINKS: RefCell<HashMap<u64, ThreadLink>> = RefCell::new(HashMap::new());
}

fn forget_connection(id: u64) {
    let _ = LINKS.try_with(|l| l.borrow_mut().remove(&id));
}

fn connect(shared: &Shared) -> Result<(ThreadLink, u64)> {
    let socket: Connection<()> =
        Client::connect(&shared.address, &shared.authkey).map_err(|e| match e {
            procs_ipc::Error::Io(_) | procs_ipc::Error::Disconnected => Error::ManagerGone,
            e => Error::Ipc(e),
        })?;
    let token = shared.slots.as_ref().map(|s| s.token());
    let me = Holder {
        pid: std::process::id() as i32,
        start: procs_sync::raw::liveness::own_start_ticks(),
    };
    socket.send_bytes(&hello(token, me)).map_err(gone)?;
    let answer = socket
        .recv_bytes_timeout(procs_ipc::HANDSHAKE_TIMEOUT)
        .map_err(gone)?;
    let (slot, token) =
        parse_answer(&answer).ok_or(Error::Protocol("the server's answer to a hello"))?;
    let slot = match (slot, &shared.slots) {
        (Some(i), Some(slots)) => Some((slots.clone(), i)),
        _ => None,
    };
    let link = ThreadLink {
        made_in: fork_generation(),
        link: Link {
            socket,
            slot,
            process: None,
        },
        buf: Vec::new(),
    };
    Ok((link, token))
}

fn gone(e: procs_ipc::Error) -> Error {
    match e {
        procs_ipc::Error::Disconnected => Error::ManagerGone,
        e => Error::Ipc(e),
    }
}

/// One round trip: the request written by `args` after its head, the
/// answer read by `result`.
fn call<R>(
    shared: &Shared,
    kind: Kind,
    object: u64,
    method: u16,
    args: impl FnOnce(&mut Vec<u8>),
    result: impl FnOnce(Fields<'_>) -> Result<R>,
) -> Result<R> {
    LINKS.with(|links| {
        let mut links = links.borrow_mut();
        let me = fork_generation();
        if links.get(&shared.id).is_none_or(|l| l.made_in != me) {
            // Made in this process: a link inherited from the parent is its
            // parent's to use (dropping this copy closes only this
            // process's descriptor).
            links.remove(&shared.id);
            links.insert(shared.id, connect(shared)?.0);
        }
        let tl = links.get_mut(&shared.id).expect("just made");
        wire::request(&mut tl.buf, kind, object, method);
        args(&mut tl.buf);
        let sent = tl.link.send(Side::Client, &tl.buf);
        let got = sent.and_then(|()| tl.link.recv(Side::Client, &mut tl.buf));
        if let Err(e) = got {
            // The connection is not to be trusted after a failed call (a
            // reply may still come): the next call makes a new one.
            links.remove(&shared.id);
            return Err(gone(e));
        }
        match wire::parse_response(&tl.buf)? {
            Ok(fields) => result(fields),
            Err((kind, message)) => Err(Error::Remote { kind, message }),
        }
    })
}

/// A listening socket, ready to serve (see [`Manager::bind`]).
#[derive(Debug)]
pub struct Bound(Listener);

impl Bound {
    /// Where it listens.
    pub fn address(&self) -> &Address {
        self.0.address()
    }

    /// Serves until a client asks the server to shut down.
    pub fn serve(self, limits: Limits) {
        // A random token: only the proxies it serves name it.
        if let Ok(token) = random_token() {
            server::serve(self.0, token, None, limits, Registry::default(), None);
        }
    }
}

fn random_token() -> Result<u64> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    Ok(u64::from_le_bytes(random))
}

/// The managers this process started or connected to, by their server's
/// token: where a proxy that arrives inside a value finds its way. A list
/// that only grows, by compare-and-swap (no lock, so that a child forked
/// while another thread registers never finds it held); one small node per
/// manager, kept for the process's life.
struct Node {
    token: u64,
    shared: Weak<Shared>,
    next: *const Node,
}

static REGISTRY: AtomicPtr<Node> = AtomicPtr::new(std::ptr::null_mut());

fn register(shared: &Arc<Shared>) {
    let node = Box::into_raw(Box::new(Node {
        token: shared.id,
        shared: Arc::downgrade(shared),
        next: std::ptr::null(),
    }));
    let mut head = REGISTRY.load(Ordering::Acquire);
    loop {
        // SAFETY: `node` is this function's own allocation, not yet shared.
        unsafe { (*node).next = head };
        match REGISTRY.compare_exchange(head, node, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(h) => head = h,
        }
    }
}

fn lookup(token: u64) -> Option<Arc<Shared>> {
    let mut at = REGISTRY.load(Ordering::Acquire).cast_const();
    while !at.is_null() {
        // SAFETY: nodes are never freed, and each was fully written before
        // the release that published it (acquired above or by the load
        // that found the node before it).
        let node = unsafe { &*at };
        if node.token == token
            && let Some(shared) = node.shared.upgrade()
        {
            return Some(shared);
        }
        at = node.next;
    }
    None
}

/// A proxy as it travels inside a value: its manager's token, the object,
/// and its type (checked when it is read back).
#[derive(serde::Serialize, serde::Deserialize)]
struct Wire {
    manager: u64,
    object: u64,
    ty: u16,
}

impl ObjectRef {
    /// Serializes the reference: the object is pinned (it lives as long as
    /// the server), since its count cannot follow bytes.
    pub(crate) fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        call(&self.shared, Kind::Pin, self.id, 0, |_| {}, |_| Ok(()))
            .map_err(|e| S::Error::custom(format!("the proxy cannot travel: {e}")))?;
        serde::Serialize::serialize(
            &Wire {
                manager: self.shared.id,
                object: self.id,
                ty: self.ty as u16,
            },
            s,
        )
    }

    /// Reads a reference back, in a process that started or connected to
    /// its manager, for a proxy of one of the types `accept`.
    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        accept: &[Type],
        d: D,
    ) -> Result<ObjectRef, D::Error> {
        use serde::de::Error as _;
        let w: Wire = serde::Deserialize::deserialize(d)?;
        let ty = Type::from_code(w.ty)
            .filter(|t| accept.contains(t))
            .ok_or_else(|| D::Error::custom("a proxy of another type of object"))?;
        let shared = lookup(w.manager).ok_or_else(|| {
            D::Error::custom("a proxy of a manager this process neither started nor connected to")
        })?;
        Ok(ObjectRef {
            shared,
            id: w.object,
            ty,
        })
    }
}
