//! [`Listener`] and [`Client`]: Python's `multiprocessing.connection`
//! `Listener` and `Client`, over a named Unix socket (a path, or a Linux
//! abstract name) or TCP, with the authkey handshake (see `auth`), giving
//! the same [`Connection`] a pipe gives, carried by the socket.

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{self, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use serde::{Deserialize, Serialize};

use crate::auth::{answer_challenge, deliver_challenge};
use crate::error::{Error, Result};
use crate::pipe::Connection;
use crate::socket::{SocketEnd, ready};

/// How long a handshake may take by default: a peer that does not finish it
/// by then is refused ([`Listener::set_handshake_timeout`] and
/// [`Client::connect_timeout`] set another).
///
/// ```
/// assert_eq!(procs_ipc::HANDSHAKE_TIMEOUT, std::time::Duration::from_secs(10));
/// ```
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a [`Listener`] listens and a [`Client`] connects: a Unix socket
/// (a path in the file system, or a Linux abstract name), or TCP (Python's
/// `'AF_UNIX'` and `'AF_INET'` families).
///
/// ```
/// use procs_ipc::Address;
///
/// let unix = Address::from(std::path::Path::new("/tmp/app.sock"));
/// let tcp = Address::from("127.0.0.1:0".parse::<std::net::SocketAddr>()?);
/// assert_eq!(unix.to_string(), "/tmp/app.sock");
/// assert_eq!(tcp.to_string(), "127.0.0.1:0");
/// assert_eq!(Address::abstract_name("app").to_string(), "@app");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Address {
    /// A Unix socket at this path; the listener makes the file and removes
    /// it when it closes.
    Unix(PathBuf),
    /// A Linux abstract Unix socket: a name outside the file system, gone
    /// with its listener.
    Abstract(Vec<u8>),
    /// A TCP address (port 0: the system picks one, which
    /// [`Listener::address`] then tells).
    Tcp(SocketAddr),
}

impl Address {
    /// A Linux abstract Unix socket name (shown with a leading `@`).
    ///
    /// ```
    /// let a = procs_ipc::Address::abstract_name("my-service");
    /// assert_eq!(a, procs_ipc::Address::Abstract(b"my-service".to_vec()));
    /// ```
    pub fn abstract_name(name: impl AsRef<[u8]>) -> Address {
        Address::Abstract(name.as_ref().to_vec())
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Self {
        Address::Unix(p)
    }
}

impl From<&PathBuf> for Address {
    fn from(p: &PathBuf) -> Self {
        Address::Unix(p.clone())
    }
}

impl From<&Path> for Address {
    fn from(p: &Path) -> Self {
        Address::Unix(p.to_path_buf())
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Tcp(a)
    }
}

impl From<&Address> for Address {
    fn from(a: &Address) -> Self {
        a.clone()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "{}", p.display()),
            Address::Abstract(n) => write!(f, "@{}", String::from_utf8_lossy(n)),
            Address::Tcp(a) => write!(f, "{a}"),
        }
    }
}

fn unix_address(a: &net::SocketAddr) -> Option<Address> {
    if let Some(p) = a.as_pathname() {
        Some(Address::Unix(p.to_path_buf()))
    } else {
        a.as_abstract_name().map(Address::abstract_name)
    }
}

fn io_at(what: &str, address: &Address, e: std::io::Error) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!("{what} {address}: {e}"),
    ))
}

/// The listening socket.
#[derive(Debug)]
enum Socket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Listens on a Unix socket or a TCP address and accepts [`Connection`]s
/// whose peer proved it holds the same authkey (Python's
/// `multiprocessing.connection.Listener(address, authkey=...)`).
///
/// Each accepted connection goes through the handshake before `accept`
/// returns it: the listener challenges the client, then answers the
/// client's challenge (HMAC-SHA256 with the authkey, as Python 3.12). A
/// client with another key, or one that sends garbage or nothing, is an
/// [`Error::Authentication`] from `accept`, after at most the handshake
/// timeout; the listener goes on accepting others. The socket file of a
/// Unix listener is removed when it closes or drops (but not when it is
/// moved into a child: the child removes it).
///
/// The handshake proves both sides hold the key; it neither encrypts nor
/// signs the messages that follow (as Python's): over TCP, keep to networks
/// you trust.
///
/// The connections it gives are carried by their socket: the peer receives
/// [`Error::Disconnected`] once every process that holds the socket closed
/// it or died. Unlike a pipe's end, which records the processes that took
/// it, a socket is an inherited descriptor: a child forked while this
/// process holds a connection holds the socket too, until it exits.
///
/// ```
/// use procs_ipc::{Client, Connection, Listener};
///
/// let dir = std::env::temp_dir().join(format!("procs-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("listener.sock");
/// let mut listener = Listener::bind(path.as_path(), b"secret")?;
/// let address = listener.address().clone();
/// let mut child = procs_core::Process::new(move || {
///     let c: Connection<String> = Client::connect(&address, b"secret").unwrap();
///     c.send(&"hello".to_string()).unwrap();
///     assert_eq!(c.recv().unwrap(), "hello back");
/// });
/// child.start()?;
/// let c: Connection<String> = listener.accept()?;
/// let hello = c.recv()?;
/// c.send(&format!("{hello} back"))?;
/// child.join()?;
/// assert_eq!(child.exitcode(), Some(0));
/// drop(listener);
/// assert!(!path.exists());
/// std::fs::remove_dir(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Listener {
    socket: Option<Socket>,
    address: Address,
    authkey: Vec<u8>,
    handshake: Duration,
    last_accepted: Option<Address>,
}

impl Listener {
    /// Listens on `address` (a [`Path`], an [`Address`], a
    /// [`SocketAddr`]), accepting peers that hold `authkey`. A Unix path
    /// that exists already is an error (Python's "Address already in use").
    ///
    /// ```
    /// use procs_ipc::{Address, Listener};
    ///
    /// let listener = Listener::bind("127.0.0.1:0".parse::<std::net::SocketAddr>()?, b"key")?;
    /// let Address::Tcp(a) = listener.address() else { unreachable!() };
    /// assert_ne!(a.port(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bind(address: impl Into<Address>, authkey: impl AsRef<[u8]>) -> Result<Listener> {
        let address = address.into();
        let (socket, bound) = match &address {
            Address::Unix(path) => {
                let l =
                    UnixListener::bind(path).map_err(|e| io_at("cannot listen on", &address, e))?;
                (Socket::Unix(l), address.clone())
            }
            Address::Abstract(name) => {
                let a = net::SocketAddr::from_abstract_name(name)
                    .map_err(|e| io_at("cannot listen on", &address, e))?;
                let l = UnixListener::bind_addr(&a)
                    .map_err(|e| io_at("cannot listen on", &address, e))?;
                (Socket::Unix(l), address.clone())
            }
            Address::Tcp(a) => {
                let l = TcpListener::bind(a).map_err(|e| io_at("cannot listen on", &address, e))?;
                let bound = l.local_addr().map_err(Error::Io)?;
                (Socket::Tcp(l), Address::Tcp(bound))
            }
        };
        Ok(Listener {
            socket: Some(socket),
            address: bound,
            authkey: authkey.as_ref().to_vec(),
            handshake: HANDSHAKE_TIMEOUT,
            last_accepted: None,
        })
    }

    /// How long a peer has to finish the handshake ([`HANDSHAKE_TIMEOUT`]
    /// unless set).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let mut l = procs_ipc::Listener::bind(procs_ipc::Address::abstract_name(
    ///     format!("procs-doc-timeout-{}", std::process::id())), b"key")?;
    /// l.set_handshake_timeout(Duration::from_millis(500));
    /// # Ok::<(), procs_ipc::Error>(())
    /// ```
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.handshake = timeout;
    }

    /// The address listened on (for TCP with port 0, the port chosen):
    /// what a [`Client`] connects to (Python's `Listener.address`).
    ///
    /// ```
    /// use procs_ipc::{Address, Listener};
    ///
    /// let name = Address::abstract_name(format!("procs-doc-address-{}", std::process::id()));
    /// let l = Listener::bind(&name, b"key")?;
    /// assert_eq!(l.address(), &name);
    /// # Ok::<(), procs_ipc::Error>(())
    /// ```
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The address of the last peer accepted, if the socket names it
    /// (Python's `last_accepted`; a Unix client is usually unnamed).
    ///
    /// ```
    /// use procs_ipc::{Address, Client, Connection, Listener};
    ///
    /// let mut l = Listener::bind("127.0.0.1:0".parse::<std::net::SocketAddr>()?, b"key")?;
    /// assert!(l.last_accepted().is_none());
    /// let at = l.address().clone();
    /// let mut child = procs_core::Process::new(move || {
    ///     let _c: Connection<u8> = Client::connect(&at, b"key").unwrap();
    /// });
    /// child.start()?;
    /// let _c: Connection<u8> = l.accept()?;
    /// assert!(matches!(l.last_accepted(), Some(Address::Tcp(a)) if a.ip().is_loopback()));
    /// child.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn last_accepted(&self) -> Option<&Address> {
        self.last_accepted.as_ref()
    }

    /// Waits for a client and authenticates it: a [`Connection`] whose
    /// peer holds the authkey, or [`Error::Authentication`] (the listener
    /// stays usable).
    ///
    /// ```
    /// use procs_ipc::{Address, Client, Connection, Error, Listener};
    ///
    /// let name = Address::abstract_name(format!("procs-doc-accept-{}", std::process::id()));
    /// let mut l = Listener::bind(&name, b"right")?;
    /// let mut child = procs_core::Process::new(move || {
    ///     assert!(Client::connect::<u8>(&name, b"wrong").is_err());
    ///     let c: Connection<u8> = Client::connect(&name, b"right").unwrap();
    ///     c.send(&1).unwrap();
    /// });
    /// child.start()?;
    /// assert!(matches!(l.accept::<u8>(), Err(Error::Authentication(_))));
    /// let c: Connection<u8> = l.accept()?;
    /// assert_eq!(c.recv()?, 1);
    /// child.join()?;
    /// assert_eq!(child.exitcode(), Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn accept<T>(&mut self) -> Result<Connection<T>> {
        self.accept_until(None)
    }

    /// As [`accept`](Listener::accept), waiting at most `timeout` for a
    /// client to connect ([`Error::Timeout`]); the handshake then has its
    /// own timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use procs_ipc::{Error, Listener};
    ///
    /// let mut l = Listener::bind("127.0.0.1:0".parse::<std::net::SocketAddr>()?, b"key")?;
    /// let r = l.accept_timeout::<u32>(Duration::from_millis(10));
    /// assert!(matches!(r, Err(Error::Timeout)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn accept_timeout<T>(&mut self, timeout: Duration) -> Result<Connection<T>> {
        self.accept_until(Instant::now().checked_add(timeout))
    }

    fn accept_until<T>(&mut self, deadline: Option<Instant>) -> Result<Connection<T>> {
        self.accept_raw(deadline)?.authenticate()
    }

    fn accept_raw(&mut self, deadline: Option<Instant>) -> Result<Incoming> {
        let socket = self.socket.as_ref().ok_or(Error::Closed)?;
        let fd = match socket {
            Socket::Unix(l) => l.as_fd(),
            Socket::Tcp(l) => l.as_fd(),
        };
        if deadline.is_some() && !ready(fd, PollFlags::POLLIN, deadline)? {
            return Err(Error::Timeout);
        }
        let (fd, peer): (OwnedFd, Option<Address>) = match socket {
            Socket::Unix(l) => {
                let (s, a) = l
                    .accept()
                    .map_err(|e| io_at("cannot accept on", &self.address, e))?;
                s.set_nonblocking(true).map_err(Error::Io)?;
                (s.into(), unix_address(&a))
            }
            Socket::Tcp(l) => {
                let (s, a) = l
                    .accept()
                    .map_err(|e| io_at("cannot accept on", &self.address, e))?;
                s.set_nonblocking(true).map_err(Error::Io)?;
                s.set_nodelay(true).map_err(Error::Io)?;
                (s.into(), Some(Address::Tcp(a)))
            }
        };
        self.last_accepted = peer.clone();
        Ok(Incoming {
            fd,
            authkey: self.authkey.clone(),
            handshake: self.handshake,
            peer,
        })
    }

    /// Accepts the next peer without authenticating it yet, waiting at
    /// most `timeout` (`None`: as long as it takes): a server that serves
    /// each peer on a thread of its own runs the handshake there
    /// ([`Incoming::authenticate`]), so that a peer that connects and says
    /// nothing holds up only its own thread, never the accepting one.
    ///
    /// ```
    /// use procs_ipc::{Address, Client, Connection, Listener};
    /// use std::time::Duration;
    ///
    /// let name = Address::abstract_name(format!("procs-doc-incoming-{}", std::process::id()));
    /// let mut l = Listener::bind(&name, b"key")?;
    /// let client = std::thread::spawn({
    ///     let name = name.clone();
    ///     move || Client::connect::<u8>(&name, b"key").unwrap().send(&7).unwrap()
    /// });
    /// let incoming = l.accept_incoming(Some(Duration::from_secs(10)))?;
    /// let c: Connection<u8> = std::thread::spawn(move || incoming.authenticate()).join().unwrap()?;
    /// assert_eq!(c.recv()?, 7);
    /// client.join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn accept_incoming(&mut self, timeout: Option<Duration>) -> Result<Incoming> {
        self.accept_raw(timeout.map(|t| Instant::now() + t))
    }

    /// The listening socket, readable when a client waits to be accepted
    /// (for [`wait`](crate::wait), `poll` or an event loop); a closed
    /// listener's is [`Error::Closed`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use procs_ipc::{Listener, wait};
    ///
    /// let l = Listener::bind("127.0.0.1:0".parse::<std::net::SocketAddr>()?, b"k")?;
    /// let fd = l.fileno()?;
    /// assert!(wait(&[&fd], Some(Duration::ZERO))?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fileno(&self) -> Result<BorrowedFd<'_>> {
        match self.socket.as_ref().ok_or(Error::Closed)? {
            Socket::Unix(l) => Ok(l.as_fd()),
            Socket::Tcp(l) => Ok(l.as_fd()),
        }
    }

    /// Stops listening: the socket is closed and a Unix socket's file
    /// removed (as dropping does); later accepts are [`Error::Closed`].
    /// Connections already accepted go on.
    ///
    /// ```
    /// let mut l = procs_ipc::Listener::bind("127.0.0.1:0".parse::<std::net::SocketAddr>()?, b"k")?;
    /// l.close();
    /// assert!(matches!(l.accept::<u8>(), Err(procs_ipc::Error::Closed)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&mut self) {
        if self.socket.take().is_none() {
            return;
        }
        // A parent dropping what it moved into a child leaves the file to
        // the child, which now listens on it.
        if procs_core::handing_over_to().is_some() {
            return;
        }
        if let Address::Unix(path) = &self.address {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}

/// A peer accepted by [`Listener::accept_incoming`], not yet
/// authenticated: nothing has been read from it.
#[derive(Debug)]
pub struct Incoming {
    fd: OwnedFd,
    authkey: Vec<u8>,
    handshake: Duration,
    peer: Option<Address>,
}

impl Incoming {
    /// Where the peer connected from, when the socket says.
    pub fn peer(&self) -> Option<&Address> {
        self.peer.as_ref()
    }

    /// The mutual challenge of the listener's key, bounded by its
    /// handshake timeout: the connection, or
    /// [`Error::Authentication`] for a peer without the key (or
    /// [`Error::Timeout`] for one too slow).
    pub fn authenticate<T>(self) -> Result<Connection<T>> {
        let until = Instant::now() + self.handshake;
        deliver_challenge(self.fd.as_fd(), &self.authkey, until)?;
        answer_challenge(self.fd.as_fd(), &self.authkey, until)?;
        Ok(Connection::from_socket(SocketEnd::new(self.fd)))
    }
}

/// Connects to a [`Listener`] and authenticates both ways (Python's
/// `multiprocessing.connection.Client(address, authkey=...)`): the client
/// answers the listener's challenge, then challenges it.
///
/// ```
/// use procs_ipc::{Client, Connection, Error, Listener};
///
/// let mut listener = Listener::bind("127.0.0.1:0".parse::<std::net::SocketAddr>()?, b"key")?;
/// let address = listener.address().clone();
/// let mut child = procs_core::Process::new(move || {
///     let c: Connection<u32> = Client::connect(&address, b"key").unwrap();
///     c.send(&41).unwrap();
/// });
/// child.start()?;
/// let c: Connection<u32> = listener.accept()?;
/// assert_eq!(c.recv()? + 1, 42);
/// child.join()?;
/// assert!(matches!(c.recv(), Err(Error::Disconnected)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Client {
    _private: (),
}

impl Client {
    /// Connects to `address` and authenticates with `authkey`, within
    /// [`HANDSHAKE_TIMEOUT`]. A listener with another key is
    /// [`Error::Authentication`]; nobody listening is [`Error::Io`].
    ///
    /// ```
    /// use procs_ipc::{Address, Client, Connection, Listener};
    ///
    /// let name = Address::abstract_name(format!("procs-doc-connect-{}", std::process::id()));
    /// let mut l = Listener::bind(&name, b"key")?;
    /// let mut child = procs_core::Process::new(move || {
    ///     let c: Connection<String> = l.accept().unwrap();
    ///     c.send(&c.recv().unwrap().to_uppercase()).unwrap();
    /// });
    /// child.start()?;
    /// let c: Connection<String> = Client::connect(&name, b"key")?;
    /// c.send(&"shout".to_string())?;
    /// assert_eq!(c.recv()?, "SHOUT");
    /// child.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect<T>(
        address: impl Into<Address>,
        authkey: impl AsRef<[u8]>,
    ) -> Result<Connection<T>> {
        Self::connect_timeout(address, authkey, HANDSHAKE_TIMEOUT)
    }

    /// As [`connect`](Client::connect), giving up after `timeout` for the
    /// connection and the handshake together.
    ///
    /// ```
    /// use std::time::Duration;
    /// use procs_ipc::{Client, Error};
    ///
    /// let nobody = std::env::temp_dir().join("procs-doc-nobody-listens.sock");
    /// let r = Client::connect_timeout::<u8>(nobody.as_path(), b"k", Duration::from_secs(1));
    /// assert!(matches!(r, Err(Error::Io(_))));
    /// ```
    pub fn connect_timeout<T>(
        address: impl Into<Address>,
        authkey: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<Connection<T>> {
        let address = address.into();
        let until = Instant::now() + timeout;
        let fd: OwnedFd = match &address {
            Address::Unix(path) => {
                let s = UnixStream::connect(path)
                    .map_err(|e| io_at("cannot connect to", &address, e))?;
                s.set_nonblocking(true).map_err(Error::Io)?;
                s.into()
            }
            Address::Abstract(name) => {
                let a = net::SocketAddr::from_abstract_name(name)
                    .map_err(|e| io_at("cannot connect to", &address, e))?;
                let s = UnixStream::connect_addr(&a)
                    .map_err(|e| io_at("cannot connect to", &address, e))?;
                s.set_nonblocking(true).map_err(Error::Io)?;
                s.into()
            }
            Address::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, timeout)
                    .map_err(|e| io_at("cannot connect to", &address, e))?;
                s.set_nonblocking(true).map_err(Error::Io)?;
                s.set_nodelay(true).map_err(Error::Io)?;
                s.into()
            }
        };
        let authkey = authkey.as_ref();
        answer_challenge(fd.as_fd(), authkey, until)?;
        deliver_challenge(fd.as_fd(), authkey, until)?;
        Ok(Connection::from_socket(SocketEnd::new(fd)))
    }
}
