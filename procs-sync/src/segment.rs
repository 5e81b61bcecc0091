//! Shared memory segments: anonymous (a memfd, inherited by forked
//! children) or named (a POSIX shared memory object, opened by name from any
//! process), as Python's `multiprocessing.shared_memory.SharedMemory`.
//!
//! Every segment starts with a 64-byte header, checked when a segment is
//! opened, so that a foreign, truncated or corrupt segment is an error and
//! never undefined behaviour:
//!
//! ```text
//! offset  size  field
//!      0     8  magic "PROCSSEG" (written last, with release ordering)
//!      8     4  layout version (1)
//!     12     4  kind: what the segment holds (bytes, lock, event, ...)
//!     16     8  data size in bytes
//!     24     8  data offset (64)
//!     32    32  reserved (zero)
//!     64     -  data, 64-byte aligned
//! ```
//!
//! A named segment is unlinked when the handle of the process that created
//! it is dropped, unless [`Segment::keep`] was called. Names that procs
//! generates carry the creating process's pid and start time, so a segment
//! whose creator was killed before it could unlink is found and removed by
//! the next creation of a generated name (or by [`Segment::remove_orphans`]),
//! with no tracker process.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::Mode;

use crate::error::{Error, Result};

const MAGIC: u64 = u64::from_le_bytes(*b"PROCSSEG");
const VERSION: u32 = 1;
pub(crate) const HEADER: usize = 64;
const GENERATED_PREFIX: &str = "procs.";

/// What a segment holds, recorded in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kind(pub u32);

impl Kind {
    pub const BYTES: Kind = Kind(0);
    pub const LOCK: Kind = Kind(1);
    pub const RLOCK: Kind = Kind(2);
    pub const SEMAPHORE: Kind = Kind(3);
    pub const EVENT: Kind = Kind(4);
    pub const CONDITION: Kind = Kind(5);
    pub const BARRIER: Kind = Kind(6);
    pub const VALUE: Kind = Kind(7);
    pub const ARRAY: Kind = Kind(8);
    pub const ARENA: Kind = Kind(9);
    pub const SHAREABLE_LIST: Kind = Kind(16);

    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "bytes",
            1 => "a Lock",
            2 => "an RLock",
            3 => "a Semaphore",
            4 => "an Event",
            5 => "a Condition",
            6 => "a Barrier",
            7 => "a Value",
            8 => "an Array",
            9 => "an Arena",
            16 => "a ShareableList",
            _ => "something unknown",
        }
    }
}

/// A region of memory shared between processes.
///
/// ```
/// use procs_sync::Segment;
///
/// let seg = Segment::create(1024)?;           // anonymous: forked children share it
/// seg.write(0, b"hello")?;
/// let mut buf = [0u8; 5];
/// seg.read(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
///
/// let named = Segment::create_named(None, 4096)?;   // any process can open it
/// let again = Segment::open(named.name().unwrap())?;
/// again.write(0, b"shared")?;
/// let mut buf = [0u8; 6];
/// named.read(0, &mut buf)?;
/// assert_eq!(&buf, b"shared");
/// # Ok::<(), procs_sync::Error>(())
/// ```
#[doc(alias = "SharedMemory")]
#[derive(Debug)]
pub struct Segment {
    map: MmapRaw,
    file: File,
    name: Option<String>,
    size: usize,
    /// The pid that unlinks the name on drop (the creator), 0 for none.
    unlinker: i32,
    unlink_on_drop: AtomicBool,
}

// SAFETY: the mapping is shared memory reached through raw pointers only;
// every access to it goes through atomics or explicit volatile copies, so
// handles may move and be shared between threads.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl Segment {
    /// An anonymous segment of `size` bytes (a memfd), zero-filled. Forked
    /// children inherit it; it goes away with the last process that maps it.
    pub fn create(size: usize) -> Result<Segment> {
        Self::create_anonymous(Kind::BYTES, size)
    }

    pub(crate) fn create_anonymous(kind: Kind, size: usize) -> Result<Segment> {
        let fd = nix::sys::memfd::memfd_create(c"procs", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| Error::os("memfd_create", e))?;
        Self::init(File::from(fd), None, kind, size)
    }

    /// A named segment of `size` bytes that any process can
    /// [`open`](Segment::open). With `None`, a unique name is generated. The
    /// name is unlinked when this handle is dropped, unless
    /// [`keep`](Segment::keep) is called.
    pub fn create_named(name: Option<&str>, size: usize) -> Result<Segment> {
        Self::create_named_kind(name, Kind::BYTES, size)
    }

    pub(crate) fn create_named_kind(
        name: Option<&str>,
        kind: Kind,
        size: usize,
    ) -> Result<Segment> {
        let name = match name {
            Some(n) => shm_name(n)?,
            None => {
                // Clean up after creators that were killed before unlinking.
                let _ = Self::remove_orphans();
                generated_name()
            }
        };
        let fd = shm_open(
            name.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .map_err(|e| match e {
            Errno::EEXIST => Error::AlreadyExists { name: name.clone() },
            e => Error::os("shm_open", e),
        })?;
        let file = File::from(fd);
        match Self::init(file, Some(name.clone()), kind, size) {
            Ok(seg) => Ok(seg),
            Err(e) => {
                let _ = shm_unlink(name.as_str());
                Err(e)
            }
        }
    }

    fn init(file: File, name: Option<String>, kind: Kind, size: usize) -> Result<Segment> {
        let total = HEADER
            .checked_add(size)
            .ok_or(Error::Invalid("segment size overflows"))?;
        file.set_len(total as u64)
            .map_err(|e| Error::os("ftruncate", e))?;
        let map = MmapOptions::new()
            .len(total)
            .map_raw(&file)
            .map_err(|e| Error::os("mmap", e))?;
        let unlinker = if name.is_some() {
            std::process::id() as i32
        } else {
            0
        };
        let seg = Segment {
            map,
            file,
            name,
            size,
            unlinker,
            unlink_on_drop: AtomicBool::new(true),
        };
        seg.write_header(kind);
        Ok(seg)
    }

    fn write_header(&self, kind: Kind) {
        let base = self.map.as_mut_ptr();
        // SAFETY: the mapping is at least HEADER bytes, page-aligned, and
        // nobody else can see it before the magic is published below; the
        // fields are written at offsets that are aligned for their types.
        unsafe {
            base.add(8).cast::<u32>().write(VERSION);
            base.add(12).cast::<u32>().write(kind.0);
            base.add(16).cast::<u64>().write(self.size as u64);
            base.add(24).cast::<u64>().write(HEADER as u64);
        }
        // The magic goes last: a process that sees it sees the fields.
        self.magic().store(MAGIC, Ordering::Release);
    }

    fn magic(&self) -> &AtomicU64 {
        // SAFETY: offset 0 of a page-aligned mapping is aligned for u64,
        // lives as long as `self`, and is only accessed atomically.
        unsafe { &*self.map.as_mut_ptr().cast::<AtomicU64>() }
    }

    /// Opens the named segment `name` (created by any process), checking its
    /// header.
    pub fn open(name: &str) -> Result<Segment> {
        Self::open_kind(name, None)
    }

    /// The segment behind `fd`, a descriptor of a segment that another
    /// process created and handed over (inherited across `exec`, as a
    /// launcher hands its job's segment to the programs it starts). The
    /// header is checked as [`open`](Segment::open) checks it.
    pub fn from_fd(fd: std::os::fd::OwnedFd) -> Result<Segment> {
        use std::os::fd::AsRawFd;
        let label = format!("descriptor {}", fd.as_raw_fd());
        let mut seg = Self::attach(File::from(fd), label, None)?;
        seg.name = None;
        Ok(seg)
    }

    pub(crate) fn open_kind(name: &str, kind: Option<Kind>) -> Result<Segment> {
        let name = shm_name(name)?;
        let fd = shm_open(
            name.as_str(),
            OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::ENOENT => Error::NotFound { name: name.clone() },
            e => Error::os("shm_open", e),
        })?;
        Self::attach(File::from(fd), name, kind)
    }

    fn attach(file: File, name: String, kind: Option<Kind>) -> Result<Segment> {
        let actual = file.metadata().map_err(|e| Error::os("fstat", e))?.len();
        if actual < HEADER as u64 {
            return Err(Error::Truncated {
                name,
                needed: HEADER as u64,
                actual,
            });
        }
        let total = usize::try_from(actual).map_err(|_| Error::Invalid("segment too large"))?;
        let map = MmapOptions::new()
            .len(total)
            .map_raw(&file)
            .map_err(|e| Error::os("mmap", e))?;
        let mut seg = Segment {
            map,
            file,
            name: Some(name.clone()),
            size: 0,
            unlinker: 0,
            unlink_on_drop: AtomicBool::new(false),
        };
        if seg.magic().load(Ordering::Acquire) != MAGIC {
            return Err(Error::NotASegment { name });
        }
        let base = seg.map.as_mut_ptr();
        // SAFETY: the mapping is at least HEADER bytes (checked above) and
        // the fields are aligned; they were published before the magic.
        let (version, found, size, offset) = unsafe {
            (
                base.add(8).cast::<u32>().read_volatile(),
                base.add(12).cast::<u32>().read_volatile(),
                base.add(16).cast::<u64>().read_volatile(),
                base.add(24).cast::<u64>().read_volatile(),
            )
        };
        if version != VERSION {
            return Err(Error::VersionMismatch {
                name,
                found: version,
                expected: VERSION,
            });
        }
        if offset != HEADER as u64 {
            return Err(Error::NotASegment { name });
        }
        let needed = size.saturating_add(offset);
        if needed > actual {
            return Err(Error::Truncated {
                name,
                needed,
                actual,
            });
        }
        if let Some(kind) = kind
            && found != kind.0
        {
            return Err(Error::KindMismatch {
                name,
                expected: kind.name(),
                found: Kind(found).name().to_owned(),
            });
        }
        seg.size = size as usize;
        Ok(seg)
    }

    /// The kind of state its creator put in it (from its header).
    #[cfg(all(feature = "serde", not(loom)))]
    pub(crate) fn kind(&self) -> Kind {
        // SAFETY: the header (checked when the segment was made or
        // attached) holds the kind at offset 12, aligned for a u32, and
        // nobody writes it after creation.
        Kind(unsafe { self.map.as_mut_ptr().add(12).cast::<u32>().read() })
    }

    /// The segment's name (with its leading `/`), `None` if anonymous.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The size of the data in bytes (the header not counted).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Keeps the name after this handle is dropped, so that processes can
    /// still open it; someone must then [`unlink`](Segment::unlink) it.
    pub fn keep(&self) {
        self.unlink_on_drop.store(false, Ordering::Relaxed);
    }

    /// Removes the name now (Python's `unlink`). Processes that have the
    /// segment open keep it; no new process can open it.
    pub fn unlink(&self) -> Result<()> {
        let Some(name) = &self.name else {
            return Ok(());
        };
        self.unlink_on_drop.store(false, Ordering::Relaxed);
        match shm_unlink(name.as_str()) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::os("shm_unlink", e)),
        }
    }

    /// Gives the segment its memory now, instead of page by page as it is
    /// first written: the kernel allocates (and zeroes) every page and maps
    /// it in this process. Worth it for a buffer that will be written
    /// through soon and whose first writes should not pay for the faults;
    /// the memory is then in use until the segment goes away.
    ///
    /// ```
    /// use procs_sync::Segment;
    ///
    /// let seg = Segment::create(1 << 20)?;
    /// seg.prefault()?;
    /// # Ok::<(), procs_sync::Error>(())
    /// ```
    pub fn prefault(&self) -> Result<()> {
        let len = self.map.len();
        // Allocate the pages of the file (the costly part: zeroed pages in
        // the page cache). Mapping them later is a cheap fault.
        nix::fcntl::fallocate(
            &self.file,
            nix::fcntl::FallocateFlags::empty(),
            0,
            len as libc::off_t,
        )
        .map_err(|e| Error::os("fallocate", e))?;
        // SAFETY: the range is this segment's own mapping, which lives as
        // long as `self`; MADV_POPULATE_WRITE only fills page tables and
        // changes no byte of the memory.
        let rc =
            unsafe { libc::madvise(self.map.as_mut_ptr().cast(), len, libc::MADV_POPULATE_WRITE) };
        // A kernel older than 5.14 does not know the advice: the pages are
        // allocated anyway, only their mapping waits for the first touch.
        if rc != 0 && Errno::last() != Errno::EINVAL {
            return Err(Error::os("madvise", Errno::last()));
        }
        Ok(())
    }

    /// The descriptor behind the segment.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// A pointer to the first byte of the data, 64-byte aligned. Other
    /// processes may write the data at any time: access it with atomics or
    /// volatile copies, not through references.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        // SAFETY: HEADER is within the mapping, which is at least HEADER bytes.
        unsafe { self.map.as_mut_ptr().add(HEADER) }
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Error::Invalid("range outside the segment")),
        }
    }

    /// Copies `buf.len()` bytes from the data at `offset` into `buf`.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len())?;
        // SAFETY: the range is inside the data (checked); the copy is
        // byte-wise into memory this function owns exclusively.
        unsafe {
            std::ptr::copy_nonoverlapping(self.as_ptr().add(offset), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    /// Copies `buf` into the data at `offset`.
    pub fn write(&self, offset: usize, buf: &[u8]) -> Result<()> {
        self.check_range(offset, buf.len())?;
        // SAFETY: the range is inside the data (checked) and the mapping is
        // writable; concurrent writers race on bytes, as with any shared
        // memory, but cannot make this copy unsound.
        unsafe {
            std::ptr::copy_nonoverlapping(buf.as_ptr(), self.as_ptr().add(offset), buf.len())
        };
        Ok(())
    }

    /// Removes generated segments whose creating process is gone (it was
    /// killed before it could unlink them). Returns how many were removed.
    pub fn remove_orphans() -> Result<usize> {
        let dir = match std::fs::read_dir("/dev/shm") {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::os("read /dev/shm", e)),
        };
        let mut removed = 0;
        for entry in dir.flatten() {
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            let Some((pid, start)) = parse_generated(file) else {
                continue;
            };
            if !creator_alive(pid, start) && shm_unlink(format!("/{file}").as_str()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Only the creating process unlinks: forked children hold copies of
        // its handle, and their ending must not remove the name.
        if self.unlinker != 0
            && self.unlinker == std::process::id() as i32
            && self.unlink_on_drop.load(Ordering::Relaxed)
            && let Some(name) = &self.name
        {
            let _ = shm_unlink(name.as_str());
        }
    }
}

/// `name` as a POSIX shared memory name: one leading `/`, no other.
fn shm_name(name: &str) -> Result<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let why = if bare.is_empty() {
        Some("it is empty")
    } else if bare.contains('/') {
        Some("it contains '/'")
    } else if bare.len() > 250 {
        Some("it is longer than 250 bytes")
    } else if bare.contains('\0') {
        Some("it contains a NUL byte")
    } else if bare == "." || bare == ".." {
        Some("it is a directory name")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::InvalidName {
            name: name.to_owned(),
            why,
        }),
        None => Ok(format!("/{bare}")),
    }
}

/// `/procs.<pid>.<start ticks>.<counter>`: unique on the machine, and
/// telling which process created it.
fn generated_name() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let start = crate::raw::liveness::own_start_ticks();
    format!("/{GENERATED_PREFIX}{pid}.{start}.{n}")
}

fn parse_generated(file: &str) -> Option<(i32, u64)> {
    let rest = file.strip_prefix(GENERATED_PREFIX)?;
    let mut parts = rest.split('.');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    Some((pid, start))
}

fn creator_alive(pid: i32, start: u64) -> bool {
    crate::raw::liveness::start_ticks(pid) == Some(start)
}
