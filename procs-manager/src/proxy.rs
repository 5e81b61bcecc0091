//! Proxies: typed handles, on the client, to objects the server holds as
//! bytes.
//!
//! A proxy encodes keys and values with postcard before they leave and
//! decodes what comes back; equal values encode to equal bytes, which is
//! what the server compares. (A key whose encoding depends on more than
//! its value, a `HashMap` inside a key, whose order varies, is not
//! supported.)

use std::marker::PhantomData;
use std::ops::Range;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::manager::ObjectRef;
use crate::server::method::*;
use crate::wire::{self, Fields, Type};

fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(v).map_err(|e| Error::Encode(e.to_string()))
}

/// All of the bytes: postcard does not describe its types, so a value read
/// as another type than it was written as often decodes from a prefix.
fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    match postcard::take_from_bytes(b) {
        Ok((v, [])) => Ok(v),
        Ok(_) => Err(Error::Decode(
            "bytes are left over: the value was written as another type".into(),
        )),
        Err(e) => Err(Error::Decode(e.to_string())),
    }
}

/// An optional value: no field, or one.
fn maybe<T: DeserializeOwned>(mut f: Fields<'_>) -> Result<Option<T>> {
    f.next_field()?.map(dec).transpose()
}

fn all<T: DeserializeOwned>(mut f: Fields<'_>) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(f.len());
    while let Some(b) = f.next_field()? {
        out.push(dec(b)?);
    }
    Ok(out)
}

fn count(mut f: Fields<'_>) -> Result<usize> {
    Ok(f.take_u64()? as usize)
}

/// Encodes first, then calls: a value that does not serialize fails
/// before anything is sent.
fn fields<'a>(parts: &'a [&'a [u8]]) -> impl FnOnce(&mut Vec<u8>) + 'a {
    move |out| parts.iter().for_each(|p| wire::field(out, p))
}

/// The types a dictionary proxy encodes and decodes (a function type:
/// the proxy is Send and Sync whatever they are, as it holds none).
type Types<K, V> = fn(K, V) -> (K, V);

/// A dictionary held by a manager (Python's `m.dict()`): `K` and `V`
/// travel encoded. Cloning the proxy gives another handle to the same
/// dictionary; move it into a child to share it.
///
/// ```
/// let m = procs_manager::Manager::start()?;
/// let d = m.dict::<String, u32>()?;
/// assert_eq!(d.insert("a".into(), 1)?, None);
/// assert_eq!(d.insert("a".into(), 2)?, Some(1));
/// assert_eq!(d.setdefault("b".into(), 7)?, 7);
/// let mut items = d.items()?;
/// items.sort();
/// assert_eq!(items, [("a".to_string(), 2), ("b".to_string(), 7)]);
/// # Ok::<(), procs_manager::Error>(())
/// ```
#[derive(Debug)]
pub struct DictProxy<K, V> {
    obj: ObjectRef,
    _types: PhantomData<Types<K, V>>,
}

impl<K, V> Clone for DictProxy<K, V> {
    fn clone(&self) -> Self {
        DictProxy::new(self.obj.clone())
    }
}

impl<K, V> DictProxy<K, V> {
    pub(crate) fn new(obj: ObjectRef) -> Self {
        DictProxy {
            obj,
            _types: PhantomData,
        }
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// Sets `d[key] = value`; returns the value it replaced.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        let (k, v) = (enc(&key)?, enc(&value)?);
        self.obj.call(D_INSERT, fields(&[&k, &v]), maybe)
    }

    /// `d.get(key)`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let k = enc(key)?;
        self.obj.call(D_GET, fields(&[&k]), maybe)
    }

    /// `d.get(key, default)`.
    pub fn get_or(&self, key: &K, default: V) -> Result<V> {
        Ok(self.get(key)?.unwrap_or(default))
    }

    /// Removes `key`; returns its value, if it was there.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        let k = enc(key)?;
        self.obj.call(D_REMOVE, fields(&[&k]), maybe)
    }

    /// `d.pop(key)`: the value, or Python's `KeyError` as
    /// [`Error::Remote`] with [`ErrorKind::Key`](crate::ErrorKind::Key).
    pub fn pop(&self, key: &K) -> Result<V> {
        self.remove(key)?.ok_or_else(|| Error::Remote {
            kind: crate::ErrorKind::Key,
            message: "no such key".into(),
        })
    }

    /// `key in d`.
    pub fn contains(&self, key: &K) -> Result<bool> {
        let k = enc(key)?;
        self.obj
            .call(D_CONTAINS, fields(&[&k]), |mut f| Ok(f.take_u64()? != 0))
    }

    /// `len(d)`.
    pub fn len(&self) -> Result<usize> {
        self.obj.call(D_LEN, |_| {}, count)
    }

    /// `len(d) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `list(d.keys())`, in the server's order.
    pub fn keys(&self) -> Result<Vec<K>> {
        self.obj.call(D_KEYS, |_| {}, all)
    }

    /// `list(d.values())`, in the server's order.
    pub fn values(&self) -> Result<Vec<V>> {
        self.obj.call(D_VALUES, |_| {}, all)
    }

    /// `list(d.items())`, in the server's order.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.obj.call(
            D_ITEMS,
            |_| {},
            |mut f| {
                let mut out = Vec::with_capacity(f.len() / 2);
                while let Some(k) = f.next_field()? {
                    out.push((dec(k)?, dec(f.take()?)?));
                }
                Ok(out)
            },
        )
    }

    /// `d.setdefault(key, default)`: the value at `key`, set to `default`
    /// first if there was none. Atomic on the server.
    pub fn setdefault(&self, key: K, default: V) -> Result<V> {
        let (k, v) = (enc(&key)?, enc(&default)?);
        self.obj
            .call(D_SETDEFAULT, fields(&[&k, &v]), |mut f| dec(f.take()?))
    }

    /// `d.update(pairs)`, in one call.
    pub fn update(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let mut enc_pairs = Vec::new();
        for (k, v) in pairs {
            enc_pairs.push(enc(&k)?);
            enc_pairs.push(enc(&v)?);
        }
        self.obj.call(
            D_UPDATE,
            |out| enc_pairs.iter().for_each(|p| wire::field(out, p)),
            |_| Ok(()),
        )
    }

    /// `d.clear()`.
    pub fn clear(&self) -> Result<()> {
        self.obj.call(D_CLEAR, |_| {}, |_| Ok(()))
    }

    /// Applies the function registered as `name`
    /// ([`ManagerBuilder::register_update`](crate::ManagerBuilder::register_update))
    /// to the value at `key` on the server, atomically; returns the new
    /// value (`None`: the function removed the key).
    pub fn update_with(&self, key: &K, name: &str) -> Result<Option<V>> {
        let k = enc(key)?;
        self.obj
            .call(D_UPDATE_WITH, fields(&[&k, name.as_bytes()]), maybe)
    }
}

/// The methods a list and an array share (`l[i]`, `l[i] = v`, `len`,
/// slices): one implementation, on the server too.
macro_rules! indexed {
    ($what:literal) => {
        #[doc = concat!("`", $what, "[index]`; Python's `IndexError` past the end.")]
        pub fn get(&self, index: usize) -> Result<T> {
            self.obj.call(
                L_GET,
                |out| wire::field_u64(out, index as u64),
                |mut f| dec(f.take()?),
            )
        }

        #[doc = concat!("`", $what, "[index] = value`; Python's `IndexError` past the end.")]
        pub fn set(&self, index: usize, value: T) -> Result<()> {
            let v = enc(&value)?;
            self.obj.call(
                L_SET,
                |out| {
                    wire::field_u64(out, index as u64);
                    wire::field(out, &v);
                },
                |_| Ok(()),
            )
        }

        #[doc = concat!("`len(", $what, ")`.")]
        pub fn len(&self) -> Result<usize> {
            self.obj.call(L_LEN, |_| {}, count)
        }

        #[doc = concat!("`len(", $what, ") == 0`.")]
        pub fn is_empty(&self) -> Result<bool> {
            Ok(self.len()? == 0)
        }

        #[doc = concat!("`", $what, "[range]` (bounds past the end are the end, as Python's slices).")]
        pub fn slice(&self, range: Range<usize>) -> Result<Vec<T>> {
            self.obj.call(
                L_SLICE,
                |out| {
                    wire::field_u64(out, range.start as u64);
                    wire::field_u64(out, range.end as u64);
                },
                all,
            )
        }

        #[doc = concat!("`list(", $what, ")`: every item.")]
        pub fn to_vec(&self) -> Result<Vec<T>> {
            self.slice(0..usize::MAX)
        }
    };
}

/// A list held by a manager (Python's `m.list()`).
///
/// ```
/// let m = procs_manager::Manager::start()?;
/// let l = m.list::<i64>()?;
/// l.extend([1, 2, 3])?;
/// l.push(4)?;
/// l.insert(0, 0)?;
/// assert_eq!(l.to_vec()?, [0, 1, 2, 3, 4]);
/// assert_eq!(l.slice(1..3)?, [1, 2]);
/// assert_eq!(l.pop()?, Some(4));
/// assert!(l.get(10).is_err()); // IndexError
/// # Ok::<(), procs_manager::Error>(())
/// ```
#[derive(Debug)]
pub struct ListProxy<T> {
    obj: ObjectRef,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for ListProxy<T> {
    fn clone(&self) -> Self {
        ListProxy::new(self.obj.clone())
    }
}

impl<T> ListProxy<T> {
    pub(crate) fn new(obj: ObjectRef) -> Self {
        ListProxy {
            obj,
            _type: PhantomData,
        }
    }
}

impl<T> ListProxy<T> {
    /// The object's id on the server (for tests that speak the wire).
    #[doc(hidden)]
    pub fn object_id(&self) -> u64 {
        self.obj.id()
    }
}

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    indexed!("l");

    /// `l.append(value)`.
    #[doc(alias = "append")]
    pub fn push(&self, value: T) -> Result<()> {
        let v = enc(&value)?;
        self.obj.call(L_PUSH, fields(&[&v]), |_| Ok(()))
    }

    /// `l.pop()`: the last item, `None` if the list is empty.
    pub fn pop(&self) -> Result<Option<T>> {
        self.obj.call(L_POP, |_| {}, maybe)
    }

    /// `l.extend(values)`, in one call.
    pub fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<()> {
        let encoded = values
            .into_iter()
            .map(|v| enc(&v))
            .collect::<Result<Vec<_>>>()?;
        self.obj.call(
            L_EXTEND,
            |out| encoded.iter().for_each(|v| wire::field(out, v)),
            |_| Ok(()),
        )
    }

    /// `l.insert(index, value)` (past the end: at the end, as Python).
    pub fn insert(&self, index: usize, value: T) -> Result<()> {
        let v = enc(&value)?;
        self.obj.call(
            L_INSERT,
            |out| {
                wire::field_u64(out, index as u64);
                wire::field(out, &v);
            },
            |_| Ok(()),
        )
    }

    /// `l.remove(value)`: the first equal item; Python's `ValueError` if
    /// there is none.
    pub fn remove(&self, value: &T) -> Result<()> {
        let v = enc(value)?;
        self.obj.call(L_REMOVE, fields(&[&v]), |_| Ok(()))
    }

    /// `l.clear()`.
    pub fn clear(&self) -> Result<()> {
        self.obj.call(L_CLEAR, |_| {}, |_| Ok(()))
    }
}

/// Named fields held by a manager (Python's `m.Namespace()`): each field
/// any serde type, read as the type it was written as.
///
/// ```
/// let m = procs_manager::Manager::start()?;
/// let ns = m.namespace()?;
/// ns.set("name", &"job".to_string())?;
/// assert_eq!(ns.add("count", 2)?, 2);
/// assert_eq!(ns.add("count", 3)?, 5);
/// assert_eq!(ns.get::<String>("name")?, "job");
/// assert!(ns.get::<i64>("missing").is_err()); // AttributeError
/// # Ok::<(), procs_manager::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Namespace {
    obj: ObjectRef,
}

impl Namespace {
    pub(crate) fn new(obj: ObjectRef) -> Self {
        Namespace { obj }
    }

    /// `ns.name = value`.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        let v = enc(value)?;
        self.obj
            .call(N_SET, fields(&[name.as_bytes(), &v]), |_| Ok(()))
    }

    /// `ns.name`; Python's `AttributeError` if there is no such field.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        self.obj
            .call(N_GET, fields(&[name.as_bytes()]), |mut f| dec(f.take()?))
    }

    /// `del ns.name`.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.obj.call(N_DEL, fields(&[name.as_bytes()]), |_| Ok(()))
    }

    /// The fields' names, in order.
    pub fn names(&self) -> Result<Vec<String>> {
        self.obj.call(
            N_NAMES,
            |_| {},
            |mut f| {
                let mut out = Vec::new();
                while let Some(n) = f.next_field()? {
                    out.push(String::from_utf8_lossy(n).into_owned());
                }
                Ok(out)
            },
        )
    }

    /// `ns.name += by` for an `i64` field (a missing field counts as 0),
    /// atomically on the server: the counter of several processes needs
    /// no lock. Returns the new value.
    pub fn add(&self, name: &str, by: i64) -> Result<i64> {
        self.obj.call(
            N_ADD,
            |out| {
                wire::field(out, name.as_bytes());
                wire::field_u64(out, by as u64);
            },
            |mut f| dec(f.take()?),
        )
    }
}

/// A timeout on the wire: milliseconds (rounded up), `u64::MAX` for none.
fn millis(timeout: Option<Duration>) -> u64 {
    timeout.map_or(u64::MAX, |t| {
        u64::try_from(t.as_nanos().div_ceil(1_000_000))
            .unwrap_or(u64::MAX - 1)
            .min(u64::MAX - 1)
    })
}

/// A value held by a manager (Python's `m.Value`).
///
/// ```
/// let m = procs_manager::Manager::start()?;
/// let v = m.value(&1.5f64)?;
/// v.set(&2.5)?;
/// assert_eq!(v.get()?, 2.5);
/// # Ok::<(), procs_manager::Error>(())
/// ```
#[derive(Debug)]
pub struct ValueProxy<T> {
    obj: ObjectRef,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for ValueProxy<T> {
    fn clone(&self) -> Self {
        ValueProxy::new(self.obj.clone())
    }
}

impl<T> ValueProxy<T> {
    pub(crate) fn new(obj: ObjectRef) -> Self {
        ValueProxy {
            obj,
            _type: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// `v.value`.
    pub fn get(&self) -> Result<T> {
        self.obj.call(V_GET, |_| {}, |mut f| dec(f.take()?))
    }

    /// `v.value = value`.
    pub fn set(&self, value: &T) -> Result<()> {
        let v = enc(value)?;
        self.obj.call(V_SET, fields(&[&v]), |_| Ok(()))
    }
}

/// A queue held by a manager (Python's `m.Queue()`): first in, first
/// out, between any processes that hold a proxy. A `get` that waits
/// blocks only its caller (each thread has its own connection).
///
/// ```
/// use std::time::Duration;
/// let m = procs_manager::Manager::start()?;
/// let q = m.queue::<String>(0)?;
/// let tx = q.clone();
/// let mut p = procs_core::Process::new(move || tx.put("hi".into()).unwrap());
/// p.start()?;
/// assert_eq!(q.get_timeout(Duration::from_secs(10))?, "hi");
/// p.join()?;
/// assert!(q.try_get().is_err()); // queue.Empty
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct QueueProxy<T> {
    obj: ObjectRef,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for QueueProxy<T> {
    fn clone(&self) -> Self {
        QueueProxy::new(self.obj.clone())
    }
}

impl<T> QueueProxy<T> {
    pub(crate) fn new(obj: ObjectRef) -> Self {
        QueueProxy {
            obj,
            _type: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    fn put_within(&self, item: &T, timeout: Option<Duration>) -> Result<()> {
        let v = enc(item)?;
        self.obj.call(
            Q_PUT,
            |out| {
                wire::field(out, &v);
                wire::field_u64(out, millis(timeout));
            },
            |_| Ok(()),
        )
    }

    fn get_within(&self, timeout: Option<Duration>) -> Result<T> {
        self.obj.call(
            Q_GET,
            |out| wire::field_u64(out, millis(timeout)),
            |mut f| dec(f.take()?),
        )
    }

    /// `q.put(item)`, waiting for room as long as it takes.
    pub fn put(&self, item: T) -> Result<()> {
        self.put_within(&item, None)
    }

    /// `q.put(item, timeout=...)`: Python's `queue.Full` as
    /// [`ErrorKind::Full`](crate::ErrorKind::Full).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
        self.put_within(&item, Some(timeout))
    }

    /// `q.put_nowait(item)`.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<()> {
        self.put_within(&item, Some(Duration::ZERO))
    }

    /// `q.get()`, waiting as long as it takes.
    pub fn get(&self) -> Result<T> {
        self.get_within(None)
    }

    /// `q.get(timeout=...)`: Python's `queue.Empty` as
    /// [`ErrorKind::Empty`](crate::ErrorKind::Empty).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_within(Some(timeout))
    }

    /// `q.get_nowait()`.
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T> {
        self.get_within(Some(Duration::ZERO))
    }

    /// `q.qsize()`.
    #[doc(alias = "qsize")]
    pub fn len(&self) -> Result<usize> {
        self.obj.call(Q_LEN, |_| {}, count)
    }

    /// `q.empty()`.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// What an acquire through a [`LockProxy`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// The lock was free.
    Clean,
    /// The lock's last holder (a connection, so a thread of some process)
    /// ended while holding it; the lock is now the caller's, and what it
    /// protects may be half-changed.
    OwnerDied,
}

/// A lock held by a manager (Python's `m.Lock()`): held by one thread
/// (one connection) of one process at a time.
///
/// ```
/// use std::time::Duration;
/// let m = procs_manager::Manager::start()?;
/// let lock = m.lock()?;
/// let guard = lock.acquire()?;
/// assert!(lock.locked()?);
/// drop(guard);
/// assert!(lock.acquire_timeout(Duration::from_secs(1))?.is_some());
/// # Ok::<(), procs_manager::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LockProxy {
    obj: ObjectRef,
}

/// A held [`LockProxy`], released when dropped.
#[derive(Debug)]
#[must_use = "the lock is released when the guard drops"]
pub struct LockGuard<'a> {
    lock: &'a LockProxy,
    acquired: Acquired,
    /// Released by the thread that took it: its connection holds the lock.
    _not_send: PhantomData<*const ()>,
}

impl LockGuard<'_> {
    /// Whether the lock was free or its last holder died.
    pub fn acquired(&self) -> Acquired {
        self.acquired
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // A server gone has released every lock with it.
        let _ = self.lock.release();
    }
}

impl LockProxy {
    pub(crate) fn new(obj: ObjectRef) -> Self {
        LockProxy { obj }
    }

    fn acquire_within(&self, timeout: Option<Duration>) -> Result<Option<LockGuard<'_>>> {
        Ok(take_lock(&self.obj, timeout)?.map(|acquired| LockGuard {
            lock: self,
            acquired,
            _not_send: PhantomData,
        }))
    }

    /// `with lock:` — waits as long as it takes.
    pub fn acquire(&self) -> Result<LockGuard<'_>> {
        self.acquire_within(None)?
            .ok_or(Error::Protocol("an acquire without a timeout timed out"))
    }

    /// `lock.acquire(timeout=...)`: `None` if it stayed held.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockGuard<'_>>> {
        self.acquire_within(Some(timeout))
    }

    /// `lock.acquire(blocking=False)`.
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
        self.acquire_within(Some(Duration::ZERO))
    }

    fn release(&self) -> Result<()> {
        self.obj.call(K_RELEASE, |_| {}, |_| Ok(()))
    }

    /// `lock.locked()`.
    pub fn locked(&self) -> Result<bool> {
        self.obj
            .call(K_LOCKED, |_| {}, |mut f| Ok(f.take_u64()? != 0))
    }
}

/// An event held by a manager (Python's `m.Event()`).
///
/// ```
/// use std::time::Duration;
/// let m = procs_manager::Manager::start()?;
/// let e = m.event()?;
/// assert!(!e.wait_timeout(Duration::from_millis(10))?);
/// e.set()?;
/// assert!(e.is_set()? && e.wait_timeout(Duration::from_secs(1))?);
/// # Ok::<(), procs_manager::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct EventProxy {
    obj: ObjectRef,
}

impl EventProxy {
    pub(crate) fn new(obj: ObjectRef) -> Self {
        EventProxy { obj }
    }

    /// `e.set()`: wakes every waiter.
    pub fn set(&self) -> Result<()> {
        self.obj.call(E_SET, |_| {}, |_| Ok(()))
    }

    /// `e.clear()`.
    pub fn clear(&self) -> Result<()> {
        self.obj.call(E_CLEAR, |_| {}, |_| Ok(()))
    }

    /// `e.is_set()`.
    pub fn is_set(&self) -> Result<bool> {
        self.obj
            .call(E_IS_SET, |_| {}, |mut f| Ok(f.take_u64()? != 0))
    }

    fn wait_within(&self, timeout: Option<Duration>) -> Result<bool> {
        self.obj.call(
            E_WAIT,
            |out| wire::field_u64(out, millis(timeout)),
            |mut f| Ok(f.take_u64()? != 0),
        )
    }

    /// `e.wait()`: until it is set.
    pub fn wait(&self) -> Result<()> {
        self.wait_within(None).map(drop)
    }

    /// `e.wait(timeout)`: whether it was set in time.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_within(Some(timeout))
    }
}

/// A value of a type registered with the server
/// ([`ManagerBuilder::register`](crate::ManagerBuilder::register)), whose
/// methods are called by name.
#[derive(Debug, Clone)]
pub struct CustomProxy {
    obj: ObjectRef,
}

impl CustomProxy {
    pub(crate) fn new(obj: ObjectRef) -> Self {
        CustomProxy { obj }
    }

    /// Calls `method` with `args` on the server's value and decodes its
    /// result. The method's own error is [`ErrorKind::Method`](crate::ErrorKind::Method),
    /// a panic [`ErrorKind::Panic`](crate::ErrorKind::Panic) (the server goes on).
    pub fn call<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R> {
        let a = enc(args)?;
        self.obj
            .call(C_CALL, fields(&[method.as_bytes(), &a]), |mut f| {
                dec(f.take()?)
            })
    }
}

/// Proxies travel inside values (a dict of lists, as Python allows), over
/// connections and queues: serialized, a proxy names its manager and its
/// object, and is read back in any process that started or connected to
/// that manager. An object whose proxy was serialized is no longer
/// counted: it lives as long as the server (its count cannot follow
/// bytes that may be copied or lost).
macro_rules! travels {
    ([$($ty:expr),*], $name:ident $(<$($p:ident),*>)?) => {
        impl$(<$($p),*>)? Serialize for $name$(<$($p),*>)? {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.obj.serialize(s)
            }
        }

        impl<'de, $($($p),*)?> serde::Deserialize<'de> for $name$(<$($p),*>)? {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                ObjectRef::deserialize(&[$($ty),*], d).map($name::new)
            }
        }
    };
}

travels!([Type::Dict], DictProxy<K, V>);
travels!([Type::List], ListProxy<T>);
travels!([Type::Namespace], Namespace);
travels!([Type::Value], ValueProxy<T>);
travels!([Type::Queue], QueueProxy<T>);
travels!([Type::Lock, Type::RLock], LockProxy);
travels!([Type::Event], EventProxy);
travels!([Type::Custom], CustomProxy);
travels!([Type::Condition], ConditionProxy);
travels!([Type::Semaphore, Type::BoundedSemaphore], SemaphoreProxy);
travels!([Type::Barrier], BarrierProxy);
travels!([Type::Array], ArrayProxy<T>);

impl<T> Serialize for JoinableQueueProxy<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.obj.serialize(s)
    }
}

impl<'de, T> serde::Deserialize<'de> for JoinableQueueProxy<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        ObjectRef::deserialize(&[Type::JoinableQueue], d).map(JoinableQueueProxy::new)
    }
}

/// Takes a lock or a condition's: the guard's `acquired`, or `None` when
/// the timeout passed.
fn take_lock(obj: &ObjectRef, timeout: Option<Duration>) -> Result<Option<Acquired>> {
    let got = obj.call(
        K_ACQUIRE,
        |out| wire::field_u64(out, millis(timeout)),
        |mut f| Ok(f.take_u64()?),
    )?;
    match got {
        ACQUIRED => Ok(Some(Acquired::Clean)),
        ACQUIRED_OWNER_DIED => Ok(Some(Acquired::OwnerDied)),
        ACQUIRE_TIMED_OUT => Ok(None),
        _ => Err(Error::Protocol("an acquire answered neither yes nor no")),
    }
}

/// A condition variable held by a manager, with its own reentrant lock
/// (Python's `m.Condition()`): wait and notify through the guard of its
/// lock.
///
/// ```
/// use std::time::Duration;
/// let m = procs_manager::Manager::start()?;
/// let (cond, ready) = (m.condition()?, m.value(&false)?);
/// let (c2, r2) = (cond.clone(), ready.clone());
/// let mut p = procs_core::Process::new(move || {
///     let g = c2.acquire().unwrap();
///     r2.set(&true).unwrap();
///     g.notify_all().unwrap();
/// });
/// let g = cond.acquire()?;
/// p.start()?;
/// while !ready.get()? {
///     assert!(g.wait_timeout(Duration::from_secs(30))?);
/// }
/// drop(g);
/// p.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConditionProxy {
    obj: ObjectRef,
}

/// The held lock of a [`ConditionProxy`], released when dropped.
#[derive(Debug)]
#[must_use = "the lock is released when the guard drops"]
pub struct ConditionGuard<'a> {
    cond: &'a ConditionProxy,
    acquired: Acquired,
    _not_send: PhantomData<*const ()>,
}

impl ConditionProxy {
    pub(crate) fn new(obj: ObjectRef) -> Self {
        ConditionProxy { obj }
    }

    /// Takes the condition's lock, waiting as long as it takes.
    pub fn acquire(&self) -> Result<ConditionGuard<'_>> {
        self.acquire_within(None)?
            .ok_or(Error::Protocol("an acquire without a timeout timed out"))
    }

    /// Takes the condition's lock, or `None` after `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<ConditionGuard<'_>>> {
        self.acquire_within(Some(timeout))
    }

    fn acquire_within(&self, timeout: Option<Duration>) -> Result<Option<ConditionGuard<'_>>> {
        Ok(
            take_lock(&self.obj, timeout)?.map(|acquired| ConditionGuard {
                cond: self,
                acquired,
                _not_send: PhantomData,
            }),
        )
    }
}

impl ConditionGuard<'_> {
    /// Whether the lock was free or its last holder died.
    pub fn acquired(&self) -> Acquired {
        self.acquired
    }

    fn wait_within(&self, timeout: Option<Duration>) -> Result<bool> {
        self.cond.obj.call(
            CV_WAIT,
            |out| wire::field_u64(out, millis(timeout)),
            |mut f| Ok(f.take_u64()? != 0),
        )
    }

    /// `cond.wait()`: releases the lock, waits for a notify, takes the
    /// lock back.
    pub fn wait(&self) -> Result<()> {
        self.wait_within(None).map(drop)
    }

    /// `cond.wait(timeout)`: whether a notify came in time (the lock is
    /// held again either way).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_within(Some(timeout))
    }

    /// `cond.notify(n)`: wakes up to `n` waiters.
    pub fn notify(&self, n: usize) -> Result<()> {
        self.cond
            .obj
            .call(CV_NOTIFY, |out| wire::field_u64(out, n as u64), |_| Ok(()))
    }

    /// `cond.notify_all()`.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(usize::MAX)
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        let _ = self.cond.obj.call(K_RELEASE, |_| {}, |_| Ok(()));
    }
}

/// A semaphore held by a manager (Python's `m.Semaphore(value)` and
/// `m.BoundedSemaphore(value)`).
///
/// ```
/// let m = procs_manager::Manager::start()?;
/// let s = m.bounded_semaphore(1)?;
/// assert!(s.try_acquire()?);
/// assert!(!s.try_acquire()?);
/// s.release()?;
/// assert!(s.release().is_err()); // ValueError: released too many times
/// # Ok::<(), procs_manager::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SemaphoreProxy {
    obj: ObjectRef,
}

impl SemaphoreProxy {
    pub(crate) fn new(obj: ObjectRef) -> Self {
        SemaphoreProxy { obj }
    }

    fn acquire_within(&self, timeout: Option<Duration>) -> Result<bool> {
        self.obj.call(
            S_ACQUIRE,
            |out| wire::field_u64(out, millis(timeout)),
            |mut f| Ok(f.take_u64()? != 0),
        )
    }

    /// `s.acquire()`, waiting as long as it takes.
    pub fn acquire(&self) -> Result<()> {
        self.acquire_within(None).map(drop)
    }

    /// `s.acquire(timeout=...)`: whether it was taken.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.acquire_within(Some(timeout))
    }

    /// `s.acquire(blocking=False)`.
    pub fn try_acquire(&self) -> Result<bool> {
        self.acquire_within(Some(Duration::ZERO))
    }

    /// `s.release()`; past a bounded semaphore's value, Python's
    /// `ValueError`.
    pub fn release(&self) -> Result<()> {
        self.obj.call(S_RELEASE, |_| {}, |_| Ok(()))
    }

    /// The count now (Python's `get_value()`).
    pub fn value(&self) -> Result<u64> {
        self.obj.call(S_VALUE, |_| {}, |mut f| Ok(f.take_u64()?))
    }
}

/// A barrier held by a manager (Python's `m.Barrier(parties)`).
///
/// ```
/// use std::time::Duration;
/// let m = procs_manager::Manager::start()?;
/// let b = m.barrier(2)?;
/// let b2 = b.clone();
/// let mut p = procs_core::Process::new(move || {
///     b2.wait_timeout(Duration::from_secs(30)).unwrap();
/// });
/// p.start()?;
/// let index = b.wait_timeout(Duration::from_secs(30))?;
/// assert!(index < 2);
/// p.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct BarrierProxy {
    obj: ObjectRef,
}

impl BarrierProxy {
    pub(crate) fn new(obj: ObjectRef) -> Self {
        BarrierProxy { obj }
    }

    fn wait_within(&self, timeout: Option<Duration>) -> Result<usize> {
        self.obj.call(
            B_WAIT,
            |out| wire::field_u64(out, millis(timeout)),
            |mut f| Ok(f.take_u64()? as usize),
        )
    }

    /// `b.wait()`: this party's arrival index (0 to parties - 1). A broken
    /// barrier is Python's `BrokenBarrierError`
    /// ([`ErrorKind::BrokenBarrier`](crate::ErrorKind::BrokenBarrier)).
    pub fn wait(&self) -> Result<usize> {
        self.wait_within(None)
    }

    /// `b.wait(timeout)`: a timeout breaks the barrier, as in Python.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait_within(Some(timeout))
    }

    fn state(&self) -> Result<(usize, usize, bool)> {
        self.obj.call(
            B_STATE,
            |_| {},
            |mut f| {
                Ok((
                    f.take_u64()? as usize,
                    f.take_u64()? as usize,
                    f.take_u64()? != 0,
                ))
            },
        )
    }

    /// `b.parties`.
    pub fn parties(&self) -> Result<usize> {
        Ok(self.state()?.0)
    }

    /// `b.n_waiting`.
    pub fn n_waiting(&self) -> Result<usize> {
        Ok(self.state()?.1)
    }

    /// `b.broken`.
    pub fn broken(&self) -> Result<bool> {
        Ok(self.state()?.2)
    }

    /// `b.abort()`: breaks the barrier for every waiter.
    pub fn abort(&self) -> Result<()> {
        self.obj.call(B_ABORT, |_| {}, |_| Ok(()))
    }

    /// `b.reset()`: waiters get `BrokenBarrierError`; the barrier is whole
    /// again.
    pub fn reset(&self) -> Result<()> {
        self.obj.call(B_RESET, |_| {}, |_| Ok(()))
    }
}

/// A joinable queue held by a manager (Python's `m.JoinableQueue()`): a
/// [`QueueProxy`] (it derefs to one) whose items are reported done.
///
/// ```
/// use std::time::Duration;
/// let m = procs_manager::Manager::start()?;
/// let q = m.joinable_queue::<u32>(0)?;
/// q.put(1)?;
/// assert!(!q.join_timeout(Duration::from_millis(10))?);
/// assert_eq!(q.get()?, 1);
/// q.task_done()?;
/// assert!(q.join_timeout(Duration::from_secs(1))?);
/// # Ok::<(), procs_manager::Error>(())
/// ```
#[derive(Debug)]
pub struct JoinableQueueProxy<T> {
    queue: QueueProxy<T>,
}

impl<T> Clone for JoinableQueueProxy<T> {
    fn clone(&self) -> Self {
        JoinableQueueProxy {
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::ops::Deref for JoinableQueueProxy<T> {
    type Target = QueueProxy<T>;
    fn deref(&self) -> &QueueProxy<T> {
        &self.queue
    }
}

impl<T> JoinableQueueProxy<T> {
    pub(crate) fn new(obj: ObjectRef) -> Self {
        JoinableQueueProxy {
            queue: QueueProxy::new(obj),
        }
    }

    /// `q.task_done()`; more than were put is Python's `ValueError`.
    pub fn task_done(&self) -> Result<()> {
        self.queue.obj.call(J_TASK_DONE, |_| {}, |_| Ok(()))
    }

    fn join_within(&self, timeout: Option<Duration>) -> Result<bool> {
        self.queue.obj.call(
            J_JOIN,
            |out| wire::field_u64(out, millis(timeout)),
            |mut f| Ok(f.take_u64()? != 0),
        )
    }

    /// `q.join()`: until every item put was reported done.
    pub fn join(&self) -> Result<()> {
        self.join_within(None).map(drop)
    }

    /// As [`join`](JoinableQueueProxy::join), at most `timeout`: whether
    /// every item was done.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.join_within(Some(timeout))
    }
}

/// An array of fixed length held by a manager (Python's `m.Array`).
///
/// ```
/// let m = procs_manager::Manager::start()?;
/// let a = m.array(&[1.0f64, 2.0, 3.0])?;
/// a.set(1, 20.0)?;
/// assert_eq!(a.to_vec()?, [1.0, 20.0, 3.0]);
/// assert!(a.set(3, 0.0).is_err()); // IndexError
/// # Ok::<(), procs_manager::Error>(())
/// ```
#[derive(Debug)]
pub struct ArrayProxy<T> {
    obj: ObjectRef,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for ArrayProxy<T> {
    fn clone(&self) -> Self {
        ArrayProxy::new(self.obj.clone())
    }
}

impl<T> ArrayProxy<T> {
    pub(crate) fn new(obj: ObjectRef) -> Self {
        ArrayProxy {
            obj,
            _type: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> ArrayProxy<T> {
    indexed!("a");
}
