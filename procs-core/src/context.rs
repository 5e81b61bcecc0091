//! Python's start-method functions: `set_start_method`,
//! `get_start_method`, `get_all_start_methods` and `get_context`.
//!
//! The default method is what a [`ProcessBuilder`] starts with (and so
//! [`Process::new`](crate::Process::new) and [`spawn`](crate::spawn)). It
//! stays [`StartMethod::Fork`] unless the program sets another: a closure
//! can only be forked, so under spawn or forkserver a closure's `start` is
//! [`Error::SpawnNeedsFunction`], and plain functions go through
//! [`ProcessBuilder::spawn_fn`]. This library's own processes that run
//! closures (a manager's server, the ranks of `procs_mpi::run`) are forked
//! whatever the default; a pool's workers take the method of its builder.

use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};
use crate::process::{ProcessBuilder, StartMethod};
use crate::spawn::JoinHandle;

/// 0: never set (fork); otherwise the method's number plus one.
static DEFAULT: AtomicU8 = AtomicU8::new(0);

const ALL: [StartMethod; 3] = [
    StartMethod::Fork,
    StartMethod::Spawn,
    StartMethod::Forkserver,
];

fn number(m: StartMethod) -> u8 {
    ALL.iter().position(|&x| x == m).unwrap_or(0) as u8 + 1
}

pub(crate) fn default_method() -> StartMethod {
    match DEFAULT.load(Ordering::Acquire) {
        0 => StartMethod::Fork,
        n => ALL[(n - 1) as usize],
    }
}

/// Sets the default start method (Python's `set_start_method`). A second
/// call is [`Error::ContextAlreadySet`] unless `force`.
///
/// ```no_run
/// use procs_core::{StartMethod, get_start_method, set_start_method};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() -> Result<(), procs_core::Error> {
///     procs_core::init();
///     set_start_method(StartMethod::Forkserver, false)?;
///     assert_eq!(get_start_method(), StartMethod::Forkserver);
///     let child = procs_core::Process::builder().spawn_fn(square, 5)?;
///     assert_eq!(child.join()?, 25);
///     Ok(())
/// }
/// ```
pub fn set_start_method(method: StartMethod, force: bool) -> Result<()> {
    let new = number(method);
    if force {
        DEFAULT.store(new, Ordering::Release);
        return Ok(());
    }
    match DEFAULT.compare_exchange(0, new, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(()),
        Err(n) => Err(Error::ContextAlreadySet {
            current: ALL[(n - 1) as usize].name(),
        }),
    }
}

/// The default start method (Python's `get_start_method()`): fork unless
/// [`set_start_method`] said otherwise.
pub fn get_start_method() -> StartMethod {
    default_method()
}

/// Whether [`set_start_method`] was called (Python's
/// `get_start_method(allow_none=True)` is `None` until then).
pub fn start_method_is_set() -> bool {
    DEFAULT.load(Ordering::Acquire) != 0
}

/// Every start method this platform has, the default first (Python's
/// `get_all_start_methods`).
pub fn get_all_start_methods() -> &'static [StartMethod] {
    &ALL
}

/// A context of one start method (Python's `get_context(method)`): its
/// builders use that method whatever the default.
///
/// ```
/// use procs_core::{StartMethod, get_context};
///
/// let ctx = get_context(Some(StartMethod::Fork));
/// assert_eq!(ctx.get_start_method(), StartMethod::Fork);
/// let child = ctx.process_builder().name("worker").spawn_fn(|x: u32| x + 1, 41)?;
/// assert_eq!(child.join()?, 42);
/// # Ok::<(), procs_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

/// The context of `method`, or of the default method for `None`.
pub fn get_context(method: Option<StartMethod>) -> Context {
    Context {
        method: method.unwrap_or_else(default_method),
    }
}

impl Context {
    /// This context's start method.
    pub fn get_start_method(&self) -> StartMethod {
        self.method
    }

    /// A builder of this context's method.
    pub fn process_builder(&self) -> ProcessBuilder {
        ProcessBuilder::new().start_method(self.method)
    }

    /// Starts a child of this context's method that runs `f(arg)` (see
    /// [`ProcessBuilder::spawn_fn`]).
    pub fn spawn_fn<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<JoinHandle<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.process_builder().spawn_fn(f, arg)
    }
}
