//! A manager process that holds shared objects, reached through proxies:
//! Python's `multiprocessing.Manager()`.
//!
//! Part of procs, Python's `multiprocessing` rebuilt in Rust.
//! [`Manager::start`] forks a server process; [`Manager::dict`],
//! [`Manager::list`] and [`Manager::namespace`] make objects it holds and
//! return proxies, handles that any process of the tree can use (move one
//! into a child as any value). Each call through a proxy is one round trip
//! to the server: over shared-memory rings for the processes forked after
//! the manager started, over its socket (authenticated with the manager's
//! key) for the others. Values travel encoded with postcard, so the server
//! knows nothing of the clients' types.
//!
//! ```
//! use procs_manager::Manager;
//!
//! let manager = Manager::start()?;
//! let counts = manager.dict::<String, u64>()?;
//! let mut p = procs_core::Process::new({
//!     let counts = counts.clone();
//!     move || {
//!         counts.insert("child".into(), 1).unwrap();
//!     }
//! });
//! p.start()?;
//! p.join()?;
//! assert_eq!(counts.get(&"child".to_string())?, Some(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Python's names
//!
//! | Python | here |
//! |---|---|
//! | `Manager()`, `SyncManager().start()` | [`Manager::start`] |
//! | `with Manager() as m:` | drop the [`Manager`] |
//! | `m.shutdown()` | [`Manager::shutdown`] |
//! | `m.address` | [`Manager::address`] |
//! | `m.dict()` | [`Manager::dict`] -> [`DictProxy`] |
//! | `m.list()` | [`Manager::list`] -> [`ListProxy`] |
//! | `m.Namespace()` | [`Manager::namespace`] -> [`Namespace`] |
//! | `d[k] = v`, `d[k]`, `del d[k]`, `k in d` | `insert`, `get`/`pop`, `remove`, `contains` |
//! | `l.append`, `l[i]`, `l[i] = v`, `l[a:b]` | `push`, `get`, `set`, `slice` |
//! | `m.Value()`, `m.Array()`, `m.Queue()`, `m.JoinableQueue()` | [`Manager::value`], [`Manager::array`], [`Manager::queue`], [`Manager::joinable_queue`] |
//! | `m.Lock()`, `m.RLock()`, `m.Condition()`, `m.Event()` | [`Manager::lock`], [`Manager::rlock`], [`Manager::condition`], [`Manager::event`] |
//! | `m.Semaphore()`, `m.BoundedSemaphore()`, `m.Barrier()` | [`Manager::semaphore`], [`Manager::bounded_semaphore`], [`Manager::barrier`] |
//! | `BaseManager(address, authkey)`, `connect()`, `serve_forever()` | [`Manager::builder`], [`Manager::connect`], [`Manager::serve`] |
//! | `BaseManager.register(typeid, callable)` | [`ManagerBuilder::register`], [`Served`], [`CustomProxy`] |
//! | `KeyError`, `IndexError`, `ValueError`, `AttributeError`, `queue.Empty` | [`Error::Remote`] with an [`ErrorKind`] |
//!
//! Every proxy is one reference to its object (a clone another, a proxy
//! moved into a child the child's); the server frees an object with its
//! last proxy, or once every process holding one has died.
//!
//! Proxies are serde values: they travel inside other proxies' values (a
//! dict of lists), through managed queues and over connections, to any
//! process that started or connected to their manager.
//!
//! Not yet here (see the crate's README): `m.Pool()`, and
//! `m.Condition(lock)` over a lock of one's own (a condition has its own).

#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod link;
mod manager;
mod proxy;
mod server;
pub mod wire;

pub use error::{Error, Result};
pub use manager::{Bound, Manager, ManagerBuilder};
pub use proxy::{
    Acquired, ArrayProxy, BarrierProxy, ConditionGuard, ConditionProxy, CustomProxy, DictProxy,
    EventProxy, JoinableQueueProxy, ListProxy, LockGuard, LockProxy, Namespace, QueueProxy,
    SemaphoreProxy, ValueProxy,
};
#[doc(hidden)]
pub use server::Loopback;
pub use server::{Limits, Make, Served, Update, args, reply};
pub use wire::ErrorKind;
