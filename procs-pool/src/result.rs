//! Results: [`AsyncResult`], its [`Callbacks`], and the [`Slot`] where a
//! result lands (an `apply`'s whole job).
//!
//! A slot is set once: its callbacks run first (outside its lock, on the
//! thread that delivers the result), then the value is in and every
//! waiter wakes. `events` counts what waiters wait for (the value set, or
//! work for them: see [`Drive`]); it changes under the slot's lock, and a
//! waiter reads it before it looks, so no wake is lost. Waiters spin
//! briefly before they sleep, and a result notifies only if some sleep.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::scheduler::Job;
use crate::task::decode_one;

/// Work a result's waiters do themselves: a map's outputs are decoded by
/// the thread that waits for the map (or asks whether it is ready), not
/// by the pool's handler thread, which meanwhile serves the workers.
pub(crate) trait Drive: Send + Sync {
    /// Does what has come (decodes the outputs that arrived); sets the
    /// result once everything is in.
    fn drive(&self);
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves consistent data (callbacks
    // run outside them): go on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum State<T> {
    Pending,
    Ready(Result<T>),
    /// The value was taken; whether the task succeeded.
    Taken,
}

/// How long a waiter watches for a result before it sleeps: results of
/// short tasks come within microseconds, and a sleeper costs its waker a
/// system call and itself a context switch.
const SPIN: Duration = Duration::from_micros(30);

/// Watches `ready` for at most [`SPIN`] (or until `deadline`), yielding
/// the processor between looks; whether it became true.
pub(crate) fn spin_for(ready: impl Fn() -> bool, deadline: Option<Instant>) -> bool {
    let start = Instant::now();
    let until = deadline.map_or(start + SPIN, |d| d.min(start + SPIN));
    for i in 0u32.. {
        if ready() {
            return true;
        }
        if i < 64 {
            std::hint::spin_loop();
        } else if Instant::now() >= until {
            return false;
        } else {
            std::thread::yield_now();
        }
    }
    false
}

struct SlotInner<T> {
    state: State<T>,
    /// Run with the result before it is set.
    callbacks: Option<Callbacks<T>>,
    /// Threads asleep on `ready`: a result wakes them only if there are
    /// some (a notify costs a system call even when nobody waits).
    sleepers: usize,
}

/// Where a result lands, and its waiters.
pub(crate) struct Slot<T> {
    inner: Mutex<SlotInner<T>>,
    /// Set once the result is in.
    done: AtomicBool,
    /// Counts what waiters wait for: the result set, or work for them (an
    /// output to decode). Changed under `inner`'s lock; waiters watch it
    /// before they sleep.
    events: AtomicU64,
    ready: Condvar,
}

impl<T> Slot<T> {
    pub(crate) fn new(callbacks: Callbacks<T>) -> Arc<Slot<T>> {
        let callbacks = callbacks.any().then_some(callbacks);
        Arc::new(Slot {
            inner: Mutex::new(SlotInner {
                state: State::Pending,
                callbacks,
                sleepers: 0,
            }),
            done: AtomicBool::new(false),
            events: AtomicU64::new(0),
            ready: Condvar::new(),
        })
    }

    /// Runs the callbacks with `value`, then sets it.
    pub(crate) fn finish(&self, value: Result<T>) {
        let mut s = lock(&self.inner);
        if let Some(cb) = s.callbacks.take() {
            // Outside the lock: a callback may look at this result.
            drop(s);
            cb.run(&value);
            s = lock(&self.inner);
        }
        self.set_locked(&mut s, value);
    }

    fn set_locked(&self, s: &mut SlotInner<T>, value: Result<T>) {
        if matches!(s.state, State::Pending) {
            s.state = State::Ready(value);
            self.done.store(true, Ordering::Release);
            self.events.fetch_add(1, Ordering::Release);
            if s.sleepers > 0 {
                self.ready.notify_all();
            }
        }
    }

    /// Tells waiters there is work for them.
    pub(crate) fn poke(&self) {
        let s = lock(&self.inner);
        self.events.fetch_add(1, Ordering::Release);
        if s.sleepers > 0 {
            self.ready.notify_all();
        }
    }

    /// Waits until `events` is no longer `seen`, or `deadline`.
    pub(crate) fn wait_event(&self, seen: u64, deadline: Option<Instant>) {
        if spin_for(|| self.events.load(Ordering::Acquire) != seen, deadline) {
            return;
        }
        let mut s = lock(&self.inner);
        while self.events.load(Ordering::Acquire) == seen {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return;
            }
            s.sleepers += 1;
            s = match deadline {
                None => self.ready.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    self.ready
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            s.sleepers -= 1;
        }
    }

    /// What [`events`](Self::events) counts so far.
    pub(crate) fn events(&self) -> u64 {
        self.events.load(Ordering::Acquire)
    }

    fn state(&self) -> MutexGuard<'_, SlotInner<T>> {
        lock(&self.inner)
    }

    /// Waits until ready or `deadline`, doing `drive`'s work as it comes;
    /// the guard, ready or not.
    fn wait(
        &self,
        deadline: Option<Instant>,
        drive: Option<&dyn Drive>,
    ) -> MutexGuard<'_, SlotInner<T>> {
        loop {
            let seen = self.events.load(Ordering::Acquire);
            if let Some(d) = drive {
                d.drive();
            }
            if self.done.load(Ordering::Acquire) || deadline.is_some_and(|d| Instant::now() >= d) {
                return lock(&self.inner);
            }
            self.wait_event(seen, deadline);
        }
    }
}

/// What to call when a result is ready, Python's `callback` and
/// `error_callback`: the options of
/// [`Pool::apply_async_with`](crate::Pool::apply_async_with) (a map's are
/// in [`MapOptions`](crate::MapOptions)).
///
/// Callbacks run on the pool's handler thread, before the result becomes
/// ready: keep them short (a long one holds up the delivery of other
/// results). A callback that panics is reported on stderr and the pool
/// goes on.
///
/// ```
/// use procs_pool::{Callbacks, Pool};
/// use std::sync::mpsc;
///
/// let pool = Pool::new(2)?;
/// let (tx, rx) = mpsc::channel();
/// let result = pool.apply_async_with(
///     |x: u64| x + 1,
///     41,
///     Callbacks::new().callback(move |v: &u64| tx.send(*v).unwrap()),
/// )?;
/// assert_eq!(result.get()?, 42);
/// assert_eq!(rx.recv().unwrap(), 42);
/// # Ok::<(), procs_pool::Error>(())
/// ```
pub struct Callbacks<T> {
    on_success: Option<OnSuccess<T>>,
    on_error: Option<OnError>,
}

type OnSuccess<T> = Box<dyn FnOnce(&T) + Send>;
type OnError = Box<dyn FnOnce(&Error) + Send>;

impl<T> Default for Callbacks<T> {
    fn default() -> Self {
        Callbacks {
            on_success: None,
            on_error: None,
        }
    }
}

impl<T> std::fmt::Debug for Callbacks<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("callback", &self.on_success.is_some())
            .field("error_callback", &self.on_error.is_some())
            .finish()
    }
}

impl<T> Callbacks<T> {
    /// No callbacks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether there is a callback.
    pub(crate) fn any(&self) -> bool {
        self.on_success.is_some() || self.on_error.is_some()
    }

    /// Called with the value when the task succeeds.
    pub fn callback(mut self, f: impl FnOnce(&T) + Send + 'static) -> Self {
        self.on_success = Some(Box::new(f));
        self
    }

    /// Called with the error when the task fails.
    pub fn error_callback(mut self, f: impl FnOnce(&Error) + Send + 'static) -> Self {
        self.on_error = Some(Box::new(f));
        self
    }

    fn run(self, value: &Result<T>) {
        let ran = catch_unwind(AssertUnwindSafe(|| match value {
            Ok(v) => {
                if let Some(f) = self.on_success {
                    f(v);
                }
            }
            Err(e) => {
                if let Some(f) = self.on_error {
                    f(e);
                }
            }
        }));
        if ran.is_err() {
            eprintln!("procs-pool: a result callback panicked; the pool goes on");
        }
    }
}

/// A value a pool computes: Python's `AsyncResult`.
///
/// ```
/// use procs_pool::Pool;
/// use std::time::Duration;
///
/// let pool = Pool::new(2)?;
/// let r = pool.apply_async(|x: u32| x * 2, 21)?;
/// r.wait();
/// assert!(r.ready());
/// assert!(r.successful()?);
/// assert_eq!(r.get_timeout(Duration::from_secs(10))?, 42);
/// # Ok::<(), procs_pool::Error>(())
/// ```
#[must_use = "a result does nothing unless got or waited for"]
pub struct AsyncResult<T> {
    slot: Arc<Slot<T>>,
    drive: Option<Arc<dyn Drive>>,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(slot: Arc<Slot<T>>) -> Self {
        AsyncResult { slot, drive: None }
    }

    /// A result whose waiters do `drive`'s work.
    pub(crate) fn driven(slot: Arc<Slot<T>>, drive: Arc<dyn Drive>) -> Self {
        AsyncResult {
            slot,
            drive: Some(drive),
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> MutexGuard<'_, SlotInner<T>> {
        self.slot.wait(deadline, self.drive.as_deref())
    }

    fn now_state(&self) -> MutexGuard<'_, SlotInner<T>> {
        if let Some(d) = &self.drive {
            d.drive();
        }
        self.slot.state()
    }

    /// Waits for the result and returns it: the value, or the task's error
    /// ([`Error::TaskPanicked`], [`Error::WorkerDied`],
    /// [`Error::Terminated`], ...).
    pub fn get(self) -> Result<T> {
        Self::take(self.wait_until(None))
    }

    /// Waits at most `timeout`. [`Error::Timeout`] leaves the result to be
    /// got later; a value, once returned, is taken (a later `get` says
    /// [`Error::AlreadyTaken`]); an error is returned every time.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        Self::take(self.wait_until(Instant::now().checked_add(timeout)))
    }

    fn take(mut s: MutexGuard<'_, SlotInner<T>>) -> Result<T> {
        match std::mem::replace(&mut s.state, State::Taken) {
            State::Pending => {
                s.state = State::Pending;
                Err(Error::Timeout)
            }
            State::Ready(Ok(v)) => Ok(v),
            State::Ready(Err(e)) => {
                s.state = State::Ready(Err(e.clone()));
                Err(e)
            }
            State::Taken => Err(Error::AlreadyTaken),
        }
    }

    /// Waits for the result.
    pub fn wait(&self) {
        drop(self.wait_until(None));
    }

    /// Waits at most `timeout`; whether the result is ready.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        !matches!(
            self.wait_until(Instant::now().checked_add(timeout)).state,
            State::Pending
        )
    }

    /// Whether the result is ready.
    pub fn ready(&self) -> bool {
        !matches!(self.now_state().state, State::Pending)
    }

    /// Whether the task succeeded; [`Error::NotReady`] before it is ready
    /// (Python's `ValueError`).
    pub fn successful(&self) -> Result<bool> {
        match &self.now_state().state {
            State::Pending => Err(Error::NotReady),
            State::Ready(r) => Ok(r.is_ok()),
            State::Taken => Ok(true),
        }
    }
}

/// One `apply` is its slot: one allocation per apply, freed by the thread
/// that gets the result.
///
/// It does not give its output's buffer back to the pool: an apply's
/// output is typically small (not worth keeping), and holding the pool's
/// buffers would cost every apply a count on a counter all threads share.
impl<R: DeserializeOwned + Send> Job for Slot<R> {
    fn deliver(&self, _index: usize, _items: usize, outcome: Result<Vec<u8>>) {
        self.finish(outcome.and_then(|b| caught(|| decode_one::<R>(&b))));
    }
}

/// Runs a decode, whose `Deserialize` is user code: a panic in it is the
/// result's [`Error::Serde`], not the end of the thread that decodes (the
/// pool's handler thread, for an apply or a map with callbacks).
pub(crate) fn caught<T>(decode: impl FnOnce() -> std::result::Result<T, String>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(decode)) {
        Ok(r) => r.map_err(Error::Serde),
        Err(payload) => Err(Error::Serde(format!(
            "the result's Deserialize panicked: {}",
            procs_core::panic_message(&*payload)
        ))),
    }
}
