//! The spawn start method: the child is a fresh execution of this very
//! program, which runs one plain function and sends its value back. A
//! parent with threads holding locks (a tokio runtime, a GUI, a thread pool)
//! cannot fork safely; an exec starts from a clean image.
//!
//! How the child finds its function: a plain `fn` of this program lies at
//! the same distance from any other function of it in every execution of
//! the same file (the loader moves the whole image at once). The parent
//! sends the distances from [`anchor`] to the function and to the
//! monomorphized trampoline that decodes the argument, calls it and encodes
//! the result, with the identity of the executable file (device, inode,
//! size, modification time); the child checks that identity against its
//! own before it trusts the distances. A function of another object (a
//! shared library) is refused in the parent.
//!
//! ```text
//! task (a memfd the child inherits): postcard of Task
//! result (a pipe): the frame `spawn` uses, an 8-byte length then Outcome
//! environment: PROCS_SPAWNED=<task fd>:<result fd>
//! ```

use std::ffi::CString;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};
use crate::process::ProcessBuilder;
use crate::spawn::{JoinHandle, Outcome, encode, panic_message};

const ENV: &str = "PROCS_SPAWNED";
const MAGIC: u64 = 0x7072_6f63_7373_7031; // "procssp1"

/// Whether this program called [`init`] (or [`init_before_main!`]).
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// What a spawned child runs, as the parent sends it.
#[derive(Serialize, Deserialize)]
struct Task {
    magic: u64,
    exe: Identity,
    trampoline: i64,
    function: i64,
    name: String,
    identity: Vec<u32>,
    daemon: bool,
    parent: (i32, String),
    arg: Vec<u8>,
}

/// The executable file, as `stat` sees it.
#[derive(Serialize, Deserialize, PartialEq, Eq, Debug, Clone)]
struct Identity {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: i64,
    mtime_nsec: i64,
}

fn exe_identity() -> std::io::Result<Identity> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/self/exe")?;
    Ok(Identity {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size() as i64,
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
    })
}

/// The point every distance is measured from: a function of procs-core,
/// linked into the program.
#[inline(never)]
fn anchor() {}

fn anchor_addr() -> usize {
    anchor as fn() as usize
}

/// A code address as its distance from this library's anchor: the same in
/// every execution of the same program file for a function of the program
/// itself (the loader moves the whole image at once), and the same in a
/// forked child for any function. [`code_at`] turns it back.
#[doc(hidden)]
#[inline]
pub fn code_offset(addr: usize) -> u64 {
    addr.wrapping_sub(anchor_addr()) as u64
}

/// The code address at `offset` from the anchor ([`code_offset`]).
#[doc(hidden)]
#[inline]
pub fn code_at(offset: u64) -> usize {
    anchor_addr().wrapping_add(offset as usize)
}

/// Whether `addr` is code of the program itself (not of a shared library,
/// which another execution may load elsewhere): only then does its
/// [`code_offset`] mean the same in a spawned or served child.
#[doc(hidden)]
pub fn code_of_program(addr: usize) -> bool {
    let main = object_of(anchor_addr());
    main.is_some() && object_of(addr) == main
}

/// The base address of the object (the program, or a shared library) that
/// holds `addr`.
fn object_of(addr: usize) -> Option<usize> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr reads the loader's tables for any address and fills
    // the Dl_info it is given (zeroed, so valid whatever it leaves).
    let found = unsafe { libc::dladdr(addr as *const libc::c_void, info.as_mut_ptr()) };
    // SAFETY: zero-initialized, then filled by dladdr.
    let info = unsafe { info.assume_init() };
    (found != 0).then_some(info.dli_fbase as usize)
}

/// The trampoline a spawned child calls: decodes `A`, calls the function
/// at `f`, encodes its outcome; `true` if it panicked.
fn trampoline<A: DeserializeOwned, R: Serialize>(
    f: usize,
    arg: &[u8],
    handles: Vec<OwnedFd>,
) -> (Vec<u8>, bool) {
    // SAFETY: `f` is the address of a `fn(A) -> R` of this program: the
    // parent took it from one (the type is this trampoline's, which the
    // parent instantiated with the same `A` and `R`), the distance from
    // the anchor came through the task only the parent wrote, and the
    // child checked that it runs the same executable file, so the same
    // code is at the same distance.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(f) };
    // The handles in the argument take their descriptors as it decodes.
    let decoded = crate::handles::supplying(handles, || postcard::from_bytes::<A>(arg));
    let arg = match decoded {
        Ok(a) => a,
        Err(e) => {
            let why = format!("the argument does not decode: {e}");
            return (encode(&Outcome::<R>::Panicked(why)), true);
        }
    };
    match catch_unwind(AssertUnwindSafe(|| f(arg))) {
        Ok(v) => (encode(&Outcome::Returned(v)), false),
        Err(payload) => {
            let message = panic_message(&*payload);
            std::mem::forget(payload);
            (encode(&Outcome::<R>::Panicked(message)), true)
        }
    }
}

/// The trampoline's type: the function's address, the encoded argument
/// and the descriptors of the handles in it; the outcome's frame and
/// whether it panicked.
type Trampoline = fn(usize, &[u8], Vec<OwnedFd>) -> (Vec<u8>, bool);

/// Readies this program for the spawn start method: call it first thing
/// in `main`. In a child the spawn method started, it runs the child's
/// function and ends the process (it never returns); elsewhere it notes
/// that the program opted in, and returns at once.
///
/// ```no_run
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() -> Result<(), procs_core::Error> {
///     procs_core::init();
///     let child = procs_core::Process::builder()
///         .start_method(procs_core::StartMethod::Spawn)
///         .spawn_fn(square, 7)?;
///     assert_eq!(child.join()?, 49);
///     Ok(())
/// }
/// ```
pub fn init() {
    INITIALIZED.store(true, Ordering::Release);
    if let Some(fds) = std::env::var_os(ENV) {
        run_spawned(fds.as_bytes())
    }
    if let Some(fd) = std::env::var_os(crate::forkserver::ENV) {
        crate::forkserver::serve(fd.as_bytes())
    }
}

/// [`init`] for a binary whose `main` is not yours (an integration test's
/// harness): put `procs_core::init_before_main!();` at the top level of the
/// test file, and [`init`] runs before `main`, so that a spawned child runs
/// its function instead of the whole test suite.
#[macro_export]
macro_rules! init_before_main {
    () => {
        #[used]
        #[unsafe(link_section = ".init_array")]
        static PROCS_CORE_INIT_BEFORE_MAIN: extern "C" fn() = {
            extern "C" fn procs_core_init_before_main() {
                $crate::init()
            }
            procs_core_init_before_main
        };
    };
}

/// The spawned child's side: runs the task and ends.
fn run_spawned(fds: &[u8]) -> ! {
    // "task:result" or "task:result:h1,h2,..." (the argument's handles).
    let parsed = std::str::from_utf8(fds).ok().and_then(|s| {
        let mut parts = s.split(':');
        let t = parts.next()?.parse::<i32>().ok()?;
        let r = parts.next()?.parse::<i32>().ok()?;
        let hs = match parts.next() {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|h| h.parse::<i32>().ok())
                .collect::<Option<Vec<_>>>()?,
        };
        Some((t, r, hs))
    });
    let Some((task_fd, result_fd, handle_fds)) = parsed else {
        eprintln!("procs-core: {ENV} is set but does not name the child's descriptors");
        std::process::exit(127);
    };
    // SAFETY: the parent made these descriptors for this child alone and
    // named them in the environment; nothing else in this fresh program
    // owns them.
    let (task, result, handles) = unsafe {
        (
            std::fs::File::from(OwnedFd::from_raw_fd(task_fd)),
            std::fs::File::from(OwnedFd::from_raw_fd(result_fd)),
            handle_fds
                .into_iter()
                .map(|fd| OwnedFd::from_raw_fd(fd))
                .collect::<Vec<_>>(),
        )
    };
    for h in &handles {
        // SAFETY: fcntl on a descriptor just taken: the child's own
        // children must not inherit it through their execs.
        unsafe { libc::fcntl(h.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: `init` runs first in `main` (or before it): no other thread
    // of this fresh program reads the environment yet. The variable must
    // not reach this child's own children.
    unsafe { std::env::remove_var(ENV) };
    run_task(task, result, handles)
}

/// Runs the task of `task` (this program's own function, by its distance)
/// and writes its outcome to `result`; ends the process. The spawned
/// child's, and the forkserver's children's.
pub(crate) fn run_task(task: std::fs::File, mut result: std::fs::File, handles: Vec<OwnedFd>) -> ! {
    let (frame, panicked) = match read_task(task) {
        Ok(task) => {
            {
                let mut st = crate::registry::state();
                st.name = task.name.clone();
                st.identity = task.identity.clone();
                st.daemon = task.daemon;
                st.parent = Some(task.parent.clone());
            }
            let base = anchor_addr();
            let trampoline = base.wrapping_add_signed(task.trampoline as isize);
            let function = base.wrapping_add_signed(task.function as isize);
            // SAFETY: as in `trampoline`: the address is that of the
            // parent's `trampoline::<A, R>`, of exactly this signature,
            // in the same executable file (checked by `read_task`).
            let run = unsafe { std::mem::transmute::<usize, Trampoline>(trampoline) };
            run(function, &task.arg, handles)
        }
        Err(why) => (encode(&Outcome::<()>::Panicked(why)), true),
    };
    let _ = result.write_all(&frame);
    drop(result);
    crate::registry::exit_child(if panicked { 1 } else { 0 })
}

fn read_task(mut file: std::fs::File) -> std::result::Result<Task, String> {
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| format!("the spawned child cannot read its task: {e}"))?;
    let task: Task = postcard::from_bytes(&bytes)
        .map_err(|e| format!("the spawned child's task does not decode: {e}"))?;
    if task.magic != MAGIC {
        return Err("the spawned child's task is not one this library writes".into());
    }
    let mine = exe_identity().map_err(|e| format!("the spawned child cannot stat itself: {e}"))?;
    if mine != task.exe {
        return Err(
            "the program file changed between the parent's start and the spawned child's".into(),
        );
    }
    Ok(task)
}

impl ProcessBuilder {
    /// Starts a child that runs `f(arg)` and returns a handle whose
    /// [`join`](JoinHandle::join) gives back its value, by the builder's
    /// start method: forked ([`StartMethod::Fork`](crate::StartMethod::Fork)),
    /// a fresh execution of this program
    /// ([`StartMethod::Spawn`](crate::StartMethod::Spawn)), or forked by
    /// this program's forkserver
    /// ([`StartMethod::Forkserver`](crate::StartMethod::Forkserver)). The
    /// last two need [`init`] first thing in `main` (without it,
    /// [`Error::SpawnNotReady`]). `f` is a plain function (no captures:
    /// nothing else crosses an exec); its argument and value travel
    /// serialized.
    ///
    /// ```no_run
    /// use procs_core::{Process, StartMethod};
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// fn main() -> Result<(), procs_core::Error> {
    ///     procs_core::init();
    ///     // The first starts the server; every one is a fork of it.
    ///     for i in 0..3 {
    ///         let child = Process::builder()
    ///             .start_method(StartMethod::Forkserver)
    ///             .spawn_fn(square, i)?;
    ///         assert_eq!(child.join()?, i * i);
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn spawn_fn<A, R>(self, f: fn(A) -> R, arg: A) -> Result<JoinHandle<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        match self.start_method {
            crate::StartMethod::Fork => crate::spawn::spawn_with(self, move || f(arg)),
            crate::StartMethod::Spawn | crate::StartMethod::Forkserver => self.spawn_exec(f, arg),
        }
    }

    fn spawn_exec<A, R>(self, f: fn(A) -> R, arg: A) -> Result<JoinHandle<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned,
    {
        let mut plan = Plan::new(f, &arg)?;
        if self.start_method == crate::StartMethod::Forkserver {
            return crate::forkserver::start(self, plan, arg);
        }
        let me = crate::current_process();
        let task_fd = memfd()?;
        let mut task_file = std::fs::File::from(
            task_fd
                .try_clone()
                .map_err(|e| Error::io("dup the spawn task", e))?,
        );
        let (reader, writer) = std::io::pipe().map_err(|e| Error::io("pipe", e))?;
        let writer: OwnedFd = writer.into();
        let handles: Vec<String> = plan
            .handles
            .iter()
            .map(|h| h.as_raw_fd().to_string())
            .collect();
        let env_value = format!(
            "{}:{}:{}",
            task_fd.as_raw_fd(),
            writer.as_raw_fd(),
            handles.join(",")
        );
        let image = Image::new(ENV, env_value);
        let mut keep = vec![task_fd.as_raw_fd(), writer.as_raw_fd()];
        keep.extend(plan.handles.iter().map(|h| h.as_raw_fd()));
        let handle_fds = std::mem::take(&mut plan.handles);
        // The argument goes into the child as a forked target's captures
        // do: the parent's copy is dropped as handed over to the child
        // (handles that count their holders count the child), before the
        // child may run; its own copy goes with its image at the exec.
        let mut process = self.build(move || {
            let failed = image.exec(&keep);
            drop(handle_fds);
            drop(arg);
            let why = format!("the spawn start method could not execute this program: {failed}");
            let mut w = std::fs::File::from(writer);
            let _ = w.write_all(&encode(&Outcome::<()>::Panicked(why)));
            drop(w);
            drop(task_fd);
            crate::registry::exit_child(1)
        });
        process.execs = true;
        let bytes = plan.task(&process, (me.pid, me.name))?;
        task_file
            .write_all(&bytes)
            .map_err(|e| Error::io("write the spawn task", e))?;
        drop(task_file);
        process.start()?;
        Ok(JoinHandle::new(process, reader.into()))
    }
}

/// This program, ready to be executed afresh in a forked child: its path,
/// its first argument and the environment, with one variable set (and the
/// variables of both methods otherwise removed). Made before the fork: the
/// child only clears flags and calls execve.
pub(crate) struct Image {
    program: CString,
    argv0: CString,
    env: Vec<CString>,
}

impl Image {
    pub(crate) fn new(var: &str, value: String) -> Image {
        let program = CString::new("/proc/self/exe").expect("no NUL");
        let argv0 = std::env::args_os()
            .next()
            .and_then(|a| CString::new(a.as_bytes()).ok())
            .unwrap_or_else(|| program.clone());
        let ours = [ENV.as_bytes(), crate::forkserver::ENV.as_bytes()];
        let mut env: Vec<CString> = std::env::vars_os()
            .filter(|(k, _)| !ours.contains(&k.as_bytes()))
            .filter_map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect();
        env.push(CString::new(format!("{var}={value}")).expect("no NUL"));
        Image {
            program,
            argv0,
            env,
        }
    }

    /// In the forked child: lets the new program inherit `keep`, and
    /// executes it. Returns only if the exec failed, with why.
    pub(crate) fn exec(&self, keep: &[i32]) -> std::io::Error {
        for &fd in keep {
            // SAFETY: fcntl on descriptors the caller owns; it only clears
            // their close-on-exec flag, so the program inherits them.
            unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        }
        let argv = [self.argv0.as_ptr(), std::ptr::null()];
        let mut envp: Vec<*const libc::c_char> = self.env.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        // SAFETY: the program path, argv and envp are NUL-terminated
        // strings and NULL-terminated arrays that live until the call
        // (which replaces this process's image or fails).
        unsafe { libc::execve(self.program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        std::io::Error::last_os_error()
    }
}

/// What a child of the spawn or forkserver method is to run, checked and
/// encoded in the parent: the distances of its function and trampoline
/// from the anchor, the executable's identity, the argument.
pub(crate) struct Plan {
    exe: Identity,
    trampoline: i64,
    function: i64,
    arg: Vec<u8>,
    /// The descriptors of the handles in the argument, by index.
    pub(crate) handles: Vec<OwnedFd>,
}

impl Plan {
    fn new<A, R>(f: fn(A) -> R, arg: &A) -> Result<Plan>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        if !INITIALIZED.load(Ordering::Acquire) {
            return Err(Error::SpawnNotReady);
        }
        let base = anchor_addr();
        let tramp = trampoline::<A, R> as Trampoline as usize;
        let func = f as usize;
        let main_object = object_of(base);
        if main_object.is_none()
            || object_of(func) != main_object
            || object_of(tramp) != main_object
        {
            return Err(Error::SpawnForeignFunction);
        }
        let (arg, handles) = crate::handles::collecting(|| postcard::to_allocvec(arg));
        Ok(Plan {
            exe: exe_identity().map_err(|e| Error::io("stat /proc/self/exe", e))?,
            trampoline: tramp.wrapping_sub(base) as i64,
            function: func.wrapping_sub(base) as i64,
            arg: arg.map_err(|e| {
                Error::Encode(crate::handles::take_refusal().unwrap_or_else(|| e.to_string()))
            })?,
            handles,
        })
    }

    /// The encoded task of `process` (its name, place and daemon flag),
    /// started by `parent`.
    pub(crate) fn task(&self, process: &crate::Process, parent: (i32, String)) -> Result<Vec<u8>> {
        let task = Task {
            magic: MAGIC,
            exe: self.exe.clone(),
            trampoline: self.trampoline,
            function: self.function,
            name: process.name().to_owned(),
            identity: process.identity().to_vec(),
            daemon: process.daemon(),
            parent,
            arg: self.arg.clone(),
        };
        postcard::to_allocvec(&task).map_err(|e| Error::Encode(e.to_string()))
    }
}

/// The task's daemon flag, read before it runs (a daemon child of the
/// forkserver dies with the server).
pub(crate) fn task_is_daemon(task: &mut std::fs::File) -> bool {
    let mut bytes = Vec::new();
    let ok = task
        .rewind()
        .and_then(|_| task.read_to_end(&mut bytes))
        .is_ok();
    ok && postcard::from_bytes::<Task>(&bytes).is_ok_and(|t| t.daemon)
}

/// An empty memfd, close-on-exec until the child clears the flag.
pub(crate) fn memfd() -> Result<OwnedFd> {
    // SAFETY: a NUL-terminated name and valid flags for memfd_create.
    let fd = unsafe { libc::memfd_create(c"procs-spawn-task".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::io("memfd_create", std::io::Error::last_os_error()));
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
