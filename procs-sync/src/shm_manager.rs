//! [`SharedMemoryManager`]: named segments and lists that all go when it
//! goes, as Python's `multiprocessing.managers.SharedMemoryManager`.
//!
//! Python runs a server process that unlinks the segments even if their
//! creator dies. This manager has no server: it keeps the names it made
//! and unlinks them at [`shutdown`](SharedMemoryManager::shutdown) or drop.
//! A creator that is SIGKILLed cannot do that, but every name it made is a
//! generated one, which carries its pid and start time: the next
//! [`SharedMemoryManager::start`] anywhere on the machine, the next
//! generated name made by any procs process, or a
//! [`Segment::remove_orphans`] removes them (the creator is no longer
//! running). Segments are freed a little later than with a server, and no
//! process is started for it.

use std::sync::{Mutex, PoisonError};

use crate::error::{Error, Result};
use crate::item::Item;
use crate::segment::Segment;
use crate::shareable_list::ShareableList;

/// Makes named [`Segment`]s and [`ShareableList`]s that live until it is
/// shut down or dropped, whatever becomes of their handles; then every one
/// of them is unlinked. Processes that still have one mapped keep it (as
/// with POSIX unlink), but no process can open it by name any more.
///
/// ```
/// use procs_sync::{Segment, SharedMemoryManager};
///
/// let smm = SharedMemoryManager::start()?;
/// let seg = smm.shared_memory(1024)?;
/// let list = smm.shareable_list([1.into(), "two".into()])?;
/// let name = seg.name().unwrap().to_owned();
/// drop(seg);                              // still there: the manager has it
/// Segment::open(&name)?;
/// drop(smm);                              // now unlinked, the list's too
/// assert!(Segment::open(&name).is_err());
/// assert!(Segment::open(list.name().unwrap()).is_err());
/// assert_eq!(list.len(), 2);              // a handle still maps it
/// # Ok::<(), procs_sync::Error>(())
/// ```
///
/// Only the process that started the manager makes segments through it and
/// unlinks them: a forked child's copy refuses to make any, and its drop
/// does nothing. Should that process be killed, the segments are removed
/// as orphans by the next [`start`](SharedMemoryManager::start) of a
/// manager, or the next generated name any procs process makes.
#[derive(Debug)]
pub struct SharedMemoryManager {
    owner: u32,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    names: Vec<String>,
    shut: bool,
}

impl SharedMemoryManager {
    /// A manager with no segment yet. Removes first what managers and
    /// segments of killed processes left behind.
    ///
    /// ```
    /// let smm = procs_sync::SharedMemoryManager::start()?;
    /// assert!(smm.names().is_empty());
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn start() -> Result<SharedMemoryManager> {
        // A sweep that fails (no /dev/shm to read) leaves only others'
        // leftovers; this manager still works.
        let _ = Segment::remove_orphans();
        Ok(SharedMemoryManager {
            owner: std::process::id(),
            state: Mutex::new(State::default()),
        })
    }

    /// A new named segment of `size` bytes (Python's
    /// `smm.SharedMemory(size)`), unlinked when the manager goes.
    ///
    /// ```
    /// let smm = procs_sync::SharedMemoryManager::start()?;
    /// let seg = smm.shared_memory(64)?;
    /// assert_eq!(seg.size(), 64);
    /// assert_eq!(smm.names(), [seg.name().unwrap()]);
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn shared_memory(&self, size: usize) -> Result<Segment> {
        self.make(|| {
            let seg = Segment::create_named(None, size)?;
            seg.keep();
            let name = seg.name().map(str::to_owned);
            Ok((seg, name))
        })
    }

    /// A new named [`ShareableList`] of `items` (Python's
    /// `smm.ShareableList(sequence)`), unlinked when the manager goes.
    ///
    /// ```
    /// use procs_sync::{Item, ShareableList, SharedMemoryManager};
    ///
    /// let smm = SharedMemoryManager::start()?;
    /// let list = smm.shareable_list([1.into(), 2.5.into()])?;
    /// let again = ShareableList::open(list.name().unwrap())?;
    /// assert_eq!(again.get(1)?, Item::Float(2.5));
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn shareable_list(&self, items: impl IntoIterator<Item = Item>) -> Result<ShareableList> {
        self.make(|| {
            let list = ShareableList::create_named(None, items)?;
            list.shm().keep();
            let name = list.name().map(str::to_owned);
            Ok((list, name))
        })
    }

    fn make<T>(&self, create: impl FnOnce() -> Result<(T, Option<String>)>) -> Result<T> {
        if std::process::id() != self.owner {
            return Err(Error::Invalid(
                "a SharedMemoryManager makes segments only in the process that started it",
            ));
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.shut {
            return Err(Error::ShutDown);
        }
        let (made, name) = create()?;
        let name = name.ok_or(Error::Invalid("a managed segment has no name"))?;
        // The manager unlinks it, not the handle's drop (`create` called
        // `keep`). Recorded under the lock that `shutdown` takes, so no name
        // escapes a shutdown.
        state.names.push(name);
        Ok(made)
    }

    /// The names of the segments the manager will unlink.
    ///
    /// ```
    /// let smm = procs_sync::SharedMemoryManager::start()?;
    /// let list = smm.shareable_list([().into()])?;
    /// assert_eq!(smm.names(), [list.name().unwrap()]);
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn names(&self) -> Vec<String> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.names.clone()
    }

    /// Unlinks every segment made through the manager (Python's
    /// `shutdown`); it makes no more ([`Error::ShutDown`]). Dropping the
    /// manager does the same. In a process other than the one that
    /// started it, does nothing.
    ///
    /// ```
    /// use procs_sync::{Error, Segment, SharedMemoryManager};
    ///
    /// let smm = SharedMemoryManager::start()?;
    /// let seg = smm.shared_memory(8)?;
    /// smm.shutdown()?;
    /// assert!(matches!(Segment::open(seg.name().unwrap()), Err(Error::NotFound { .. })));
    /// assert!(matches!(smm.shared_memory(8), Err(Error::ShutDown)));
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn shutdown(&self) -> Result<()> {
        if std::process::id() != self.owner {
            return Ok(());
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.shut = true;
        let mut first_error = None;
        for name in std::mem::take(&mut state.names) {
            if let Err(e) = unlink(&name) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Unlinks `name`; one already gone is fine.
fn unlink(name: &str) -> Result<()> {
    match nix::sys::mman::shm_unlink(name) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::os("shm_unlink", e)),
    }
}

impl Drop for SharedMemoryManager {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
