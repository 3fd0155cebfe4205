//! [`Listener`] and [`Client`]: connections between processes that did not
//! start each other, on a Unix socket path, an abstract Unix name, or TCP,
//! with Python's authkey handshake.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::{Connection, auth};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, AsFd, AsRawFd, BorrowedFd, OwnedFd, PollFd, PollFlags, RawFd};

/// Where a [`Listener`] listens and a [`Client`] connects, as Python's
/// addresses: a filesystem path, an abstract name (a string starting with
/// NUL in Python), or a TCP address (Python's `(host, port)`).
///
/// From a string ([`str::parse`], or any call that takes a
/// [`ToAddress`]): one that starts with `\0` is abstract; one with a `/`,
/// or the `unix:` prefix, is a socket file; `host:port` with a numeric port
/// is TCP (`localhost:6000`, `[::1]:6000`; a name is resolved, its first
/// IPv4 address preferred, as Python's `AF_INET` does). Anything else is
/// an error rather than a guess: `"localhost"` alone, or `"app.sock"`,
/// would otherwise name a file in the working directory.
///
/// # Examples
///
/// ```
/// use multiproc::connection::Address;
/// let tcp: Address = "127.0.0.1:6000".parse()?;
/// assert_eq!(tcp, Address::Tcp("127.0.0.1:6000".parse().unwrap()));
/// assert_eq!("localhost:6000".parse::<Address>()?, tcp);
/// assert_eq!("\0name".parse::<Address>()?, Address::Abstract(b"name".to_vec()));
/// assert_eq!("/tmp/app.sock".parse::<Address>()?, Address::Unix("/tmp/app.sock".into()));
/// assert_eq!("unix:app.sock".parse::<Address>()?, Address::Unix("app.sock".into()));
/// assert!("app.sock".parse::<Address>().is_err());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// A Unix socket file.
    Unix(PathBuf),
    /// A name in Linux's abstract Unix socket namespace (no file).
    Abstract(Vec<u8>),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl std::str::FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Address> {
        if let Some(name) = s.strip_prefix('\0') {
            return Ok(Address::Abstract(name.as_bytes().to_vec()));
        }
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        if s.contains('/') {
            return Ok(Address::Unix(PathBuf::from(s)));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Address::Tcp(addr));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                let port: u16 = port.parse().expect("checked");
                resolve(host.trim_start_matches('[').trim_end_matches(']'), port)
            }
            _ => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{s:?} is not an address: give host:port for TCP (\"localhost:6000\"), a path with a '/' or the \
                     \"unix:\" prefix for a socket file (\"./app.sock\", \"unix:app.sock\"), or \\0name for an \
                     abstract socket"
                ),
            )),
        }
    }
}

impl TryFrom<&str> for Address {
    type Error = Error;

    fn try_from(s: &str) -> Result<Address> {
        s.parse()
    }
}

/// `host`'s address on `port`: the first IPv4 one if there is one (as
/// Python's `AF_INET` sockets do with `(host, port)`), else the first.
fn resolve(host: &str, port: u16) -> Result<Address> {
    use std::net::ToSocketAddrs;
    let found: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| {
            Error::new(ErrorKind::InvalidInput, format!("could not resolve the host {host:?}: {e}")).with_source(e)
        })?
        .collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .map(|a| Address::Tcp(*a))
        .ok_or_else(|| Error::new(ErrorKind::InvalidInput, format!("the host {host:?} has no address")))
}

/// What [`Listener::bind`] and [`Client`] take as an address: an
/// [`Address`], a string (parsed as [`Address`] says), a `(host, port)`
/// pair as Python writes it, a [`SocketAddr`], or a path.
///
/// # Examples
///
/// ```
/// use multiproc::connection::{Address, ToAddress};
/// assert_eq!(("localhost", 6000).to_address()?, "127.0.0.1:6000".to_address()?);
/// assert_eq!(std::path::Path::new("app.sock").to_address()?, Address::Unix("app.sock".into()));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub trait ToAddress {
    /// The address, or why this is not one.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a string that is not an address or
    /// a host name that does not resolve.
    fn to_address(self) -> Result<Address>;
}

impl ToAddress for Address {
    fn to_address(self) -> Result<Address> {
        Ok(self)
    }
}

impl ToAddress for &Address {
    fn to_address(self) -> Result<Address> {
        Ok(self.clone())
    }
}

impl ToAddress for &str {
    fn to_address(self) -> Result<Address> {
        self.parse()
    }
}

impl ToAddress for String {
    fn to_address(self) -> Result<Address> {
        self.parse()
    }
}

impl ToAddress for &String {
    fn to_address(self) -> Result<Address> {
        self.parse()
    }
}

impl ToAddress for (&str, u16) {
    fn to_address(self) -> Result<Address> {
        match self.0.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(Address::Tcp(SocketAddr::new(ip, self.1))),
            Err(_) => resolve(self.0, self.1),
        }
    }
}

impl ToAddress for (String, u16) {
    fn to_address(self) -> Result<Address> {
        (self.0.as_str(), self.1).to_address()
    }
}

impl ToAddress for (std::net::IpAddr, u16) {
    fn to_address(self) -> Result<Address> {
        Ok(Address::Tcp(SocketAddr::new(self.0, self.1)))
    }
}

impl ToAddress for SocketAddr {
    fn to_address(self) -> Result<Address> {
        Ok(Address::Tcp(self))
    }
}

impl ToAddress for &Path {
    fn to_address(self) -> Result<Address> {
        Ok(Address::Unix(self.to_path_buf()))
    }
}

impl ToAddress for PathBuf {
    fn to_address(self) -> Result<Address> {
        Ok(Address::Unix(self))
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::Tcp(addr)
    }
}

impl From<&Path> for Address {
    fn from(path: &Path) -> Address {
        Address::Unix(path.to_path_buf())
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Address {
        Address::Unix(path)
    }
}

impl Address {
    /// The address as a string that parses back to it (Display shows an
    /// abstract name's NUL as `\0`, for people).
    pub(crate) fn to_parseable(&self) -> String {
        match self {
            Address::Unix(p) if p.to_string_lossy().contains('/') => p.to_string_lossy().into_owned(),
            Address::Unix(p) => format!("unix:{}", p.to_string_lossy()),
            Address::Abstract(name) => format!("\0{}", String::from_utf8_lossy(name)),
            Address::Tcp(a) => a.to_string(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "{}", p.display()),
            Address::Abstract(name) => write!(f, "\\0{}", String::from_utf8_lossy(name)),
            Address::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// Accepts [`Connection`]s on an [`Address`] (Python's
/// `multiprocessing.connection.Listener`). With an authkey, every new
/// connection must pass Python's challenge/response handshake, in both
/// directions, before `accept` returns it. Until then, each message the
/// client sends is capped at 256 bytes, the whole handshake must end
/// within 20 s, nothing is deserialized, and nothing reaches the caller.
///
/// Unlike Python's, whose `accept` runs one handshake at a time, `accept`
/// takes every client that has connected through its handshake side by
/// side and returns the first to finish: a client that connects and then
/// sends nothing, or one byte a second, does not hold up the others. Up to
/// 1,024 handshakes are in progress at once (the oldest is dropped for a
/// new one beyond that), each holding a socket and a few hundred bytes.
/// A client that fails, or does not finish in time, is one
/// [`ErrorKind::Authentication`] error from `accept`, in the order they
/// end; the listener goes on.
///
/// A Unix socket file is created with mode 0600 and removed when the
/// listener is closed or dropped (if it is still the same file).
///
/// A Python process talks to it with
/// `multiprocessing.connection.Client(address, authkey=...)`, using
/// `send_bytes`/`recv_bytes` (Python's `send`/`recv` would need pickle).
///
/// # Examples
///
/// ```
/// use multiproc::connection::{Client, Listener};
///
/// let listener = Listener::bind("127.0.0.1:0", Some(b"secret"))?;
/// let address = listener.address().clone();
/// let t = std::thread::spawn(move || -> multiproc::Result<Vec<u8>> {
///     let conn = Client(address, Some(b"secret"))?;
///     conn.send_bytes(b"hello")?;
///     conn.recv_bytes()
/// });
/// let conn = listener.accept()?;
/// assert_eq!(conn.recv_bytes()?, b"hello");
/// conn.send_bytes(b"welcome")?;
/// assert_eq!(t.join().unwrap()?, b"welcome");
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Listener {
    fd: OwnedFd,
    address: Address,
    authkey: Option<Vec<u8>>,
    /// The socket file this listener created: its path, device and inode.
    file: Option<(PathBuf, u64, u64)>,
    closed: AtomicBool,
    last_accepted: Mutex<Option<Address>>,
    /// With an authkey: the clients between `accept(2)` and the end of
    /// their handshake.
    handshakes: Option<Handshakes>,
}

/// How many handshakes a listener runs at once.
const MAX_HANDSHAKES: usize = 1024;

/// The poller's token for the listening socket (the others are the fd
/// numbers of the connections in their handshake).
const LISTENING: u64 = u64::MAX;

/// A listener's clients in their handshake, taken through it side by side
/// by whichever thread is in [`Listener::accept`].
struct Handshakes {
    /// Watches the listening socket and every connection in a handshake;
    /// it polls readable while one of them is, so [`wait`](fn@super::wait)
    /// on the listener watches it.
    poller: sys::Poller,
    /// The process that made the poller: a fork child that accepts on an
    /// inherited listener shares its epoll set, so it runs its
    /// handshakes one at a time instead, as Python does.
    pid: i32,
    state: Mutex<InProgress>,
}

/// A client accepted, with its address (TCP only).
type Accepted = (Connection, Option<Address>);

#[derive(Default)]
struct InProgress {
    /// By fd number (the poller's token).
    clients: HashMap<RawFd, (Accepted, auth::Handshake)>,
    /// Handshakes that ended, in the order they did, for `accept` to return.
    ended: VecDeque<Result<Accepted>>,
}

impl Handshakes {
    fn new(listening: BorrowedFd<'_>) -> std::io::Result<Handshakes> {
        let poller = sys::Poller::new()?;
        poller.add(listening, LISTENING)?;
        Ok(Handshakes { poller, pid: sys::getpid(), state: Mutex::new(InProgress::default()) })
    }

    fn lock(&self) -> MutexGuard<'_, InProgress> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs handshakes until one ends, and returns it.
    fn accept(&self, listener: &Listener, key: &[u8]) -> Result<Accepted> {
        let mut state = self.lock();
        let mut ready = Vec::new();
        loop {
            listener.check_open()?;
            if let Some(ended) = state.ended.pop_front() {
                return ended;
            }
            let now = Instant::now();
            let late: Vec<RawFd> =
                state.clients.iter().filter(|(_, (_, h))| h.deadline() <= now).map(|(fd, _)| *fd).collect();
            for fd in late {
                let (_, handshake) = self.forget(&mut state, fd);
                state.ended.push_back(Err(handshake.timed_out()));
            }
            if !state.ended.is_empty() {
                continue;
            }
            let next_deadline = state.clients.values().map(|(_, h)| h.deadline()).min();
            let timeout = next_deadline.map(|d| d.saturating_duration_since(now));
            self.poller.wait(timeout, &mut ready).map_err(|e| Error::io("waiting for clients", e))?;
            for &token in &ready {
                if token == LISTENING {
                    self.admit(&mut state, listener)?;
                    continue;
                }
                let fd = token as RawFd;
                let Some(((conn, _), handshake)) = state.clients.get_mut(&fd) else {
                    continue;
                };
                match handshake.advance(conn, key) {
                    Ok(false) => {}
                    Ok(true) => {
                        let (accepted, _) = self.forget(&mut state, fd);
                        state.ended.push_back(Ok(accepted));
                    }
                    Err(e) => {
                        self.forget(&mut state, fd);
                        state.ended.push_back(Err(e));
                    }
                }
            }
        }
    }

    /// Accepts a waiting client, if one still is, and sends its challenge.
    fn admit(&self, state: &mut InProgress, listener: &Listener) -> Result<()> {
        let accepted = match listener.accept_now() {
            Ok(Some(accepted)) => accepted,
            Ok(None) => return Ok(()),
            // Out of fds: the oldest handshake makes room.
            Err(e) if sys::is_out_of_fds(&e) && !state.clients.is_empty() => {
                self.drop_oldest(state, "this process ran out of file descriptors");
                return Ok(());
            }
            Err(e) => return Err(listener.accept_error(e)),
        };
        if state.clients.len() >= MAX_HANDSHAKES {
            self.drop_oldest(state, &format!("{MAX_HANDSHAKES} other handshakes were in progress"));
        }
        let fd = accepted.0.as_fd().as_raw_fd();
        let started = auth::Handshake::start(&accepted.0).and_then(|h| {
            self.poller.add(accepted.0.as_fd(), fd as u64).map(|()| h).map_err(|e| Error::io("watching a client", e))
        });
        match started {
            Ok(handshake) => {
                state.clients.insert(fd, (accepted, handshake));
            }
            Err(e) => state.ended.push_back(Err(e)),
        }
        Ok(())
    }

    /// Ends the handshake that started first, with an error saying `why`.
    fn drop_oldest(&self, state: &mut InProgress, why: &str) {
        if let Some(fd) = state.clients.iter().min_by_key(|(_, (_, h))| h.deadline()).map(|(fd, _)| *fd) {
            self.forget(state, fd);
            state.ended.push_back(Err(Error::new(
                ErrorKind::Authentication,
                format!("a client in its handshake was disconnected to make room for a new one: {why}"),
            )));
        }
    }

    fn forget(&self, state: &mut InProgress, fd: RawFd) -> (Accepted, auth::Handshake) {
        let client = state.clients.remove(&fd).expect("a client in its handshake");
        let _ = self.poller.remove(client.0.0.as_fd());
        client
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authenticated", &self.authkey.is_some())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

fn bind_error(address: &Address, e: std::io::Error) -> Error {
    let hint = match e.kind() {
        std::io::ErrorKind::AddrInUse => "; the address is in use: pick another, or close the other listener",
        std::io::ErrorKind::PermissionDenied => "; permission denied: pick a place this user may create it",
        _ => "",
    };
    Error::new(ErrorKind::Io, format!("listening on {address} failed: {e}{hint}")).with_source(e)
}

impl Listener {
    /// Listens on `address`. With `authkey`, clients must prove they know
    /// it (and get the same proof back); with `None`, anyone who can reach
    /// the address may connect. TCP port 0 picks a free port:
    /// [`address`](Listener::address) tells which.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the address is in use or cannot be bound.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::connection::{Address, Listener};
    /// let l = Listener::bind("\0multiproc-doc-example", None)?;
    /// assert_eq!(l.address(), &Address::Abstract(b"multiproc-doc-example".to_vec()));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn bind(address: impl ToAddress, authkey: Option<&[u8]>) -> Result<Listener> {
        let mut address = address.to_address()?;
        let mut file = None;
        let fd = match &address {
            Address::Unix(path) => {
                let fd = sys::listen_unix_path(path).map_err(|e| bind_error(&address, e))?;
                let meta = std::fs::metadata(path).map_err(|e| bind_error(&address, e))?;
                file = Some((path.clone(), meta.dev(), meta.ino()));
                fd
            }
            Address::Abstract(name) => sys::listen_unix_abstract(name).map_err(|e| bind_error(&address, e))?,
            Address::Tcp(addr) => {
                let fd = sys::listen_tcp(*addr).map_err(|e| bind_error(&address, e))?;
                address = Address::Tcp(sys::local_tcp_addr(fd.as_fd()).map_err(|e| bind_error(&address, e))?);
                fd
            }
        };
        // Non-blocking, so that an accept after a wake-up never waits
        // (another process may take the client first).
        sys::set_nonblocking(fd.as_fd(), true).map_err(|e| bind_error(&address, e))?;
        let handshakes = match authkey {
            Some(_) => Some(Handshakes::new(fd.as_fd()).map_err(|e| bind_error(&address, e))?),
            None => None,
        };
        Ok(Listener {
            fd,
            address,
            authkey: authkey.map(<[u8]>::to_vec),
            file,
            closed: AtomicBool::new(false),
            last_accepted: Mutex::new(None),
            handshakes,
        })
    }

    /// The address clients connect to (with the real port after binding
    /// TCP port 0).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::connection::{Address, Listener};
    /// let l = Listener::bind("127.0.0.1:0", None)?;
    /// let Address::Tcp(addr) = l.address() else { unreachable!() };
    /// assert_ne!(addr.port(), 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for a client and returns its connection, authenticated if the
    /// listener has an authkey.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Authentication`] if the client failed the handshake (its
    /// connection is closed; the listener goes on); [`ErrorKind::InvalidState`]
    /// after [`close`](Listener::close).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, connection::{Client, Listener}};
    /// let listener = Listener::bind("127.0.0.1:0", Some(b"right"))?;
    /// let address = listener.address().clone();
    /// let t = std::thread::spawn(move || Client(address, Some(b"wrong")).map(drop));
    /// assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::Authentication);
    /// assert_eq!(t.join().unwrap().unwrap_err().kind(), ErrorKind::Authentication);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn accept(&self) -> Result<Connection> {
        let (conn, peer) = match (&self.authkey, &self.handshakes) {
            (Some(key), Some(handshakes)) if handshakes.pid == sys::getpid() => handshakes.accept(self, key)?,
            (key, _) => {
                let (conn, peer) = self.accept_waiting()?;
                if let Some(key) = key {
                    auth::deliver_challenge(&conn, key)?;
                    auth::answer_challenge(&conn, key)?;
                }
                (conn, peer)
            }
        };
        *self.last_accepted.lock().unwrap_or_else(|p| p.into_inner()) = peer;
        Ok(conn)
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::InvalidState, "the listener is closed; bind a new one"));
        }
        Ok(())
    }

    fn accept_error(&self, e: std::io::Error) -> Error {
        if self.closed.load(Ordering::Acquire) {
            Error::new(ErrorKind::InvalidState, "the listener was closed while accepting")
        } else {
            Error::io(&format!("accepting a connection on {}", self.address), e)
        }
    }

    /// Waits for a client and accepts it (no handshake).
    fn accept_waiting(&self) -> Result<Accepted> {
        loop {
            self.check_open()?;
            if let Some(accepted) = self.accept_now().map_err(|e| self.accept_error(e))? {
                return Ok(accepted);
            }
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            sys::poll(&mut fds, None).map_err(|e| self.accept_error(e))?;
        }
    }

    /// Accepts a client if one is waiting (no handshake).
    fn accept_now(&self) -> std::io::Result<Option<Accepted>> {
        let fd = match sys::accept(self.fd.as_fd()) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        let peer = match self.address {
            Address::Tcp(_) => {
                sys::set_nodelay(fd.as_fd());
                sys::peer_tcp_addr(fd.as_fd()).ok().map(Address::Tcp)
            }
            _ => None,
        };
        Ok(Some((Connection::new(fd, true, true), peer)))
    }

    /// The address of the peer of the last connection accepted (Python's
    /// `Listener.last_accepted`): its host and port over TCP; `None` before
    /// the first, and for Unix sockets, whose clients have no address.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::connection::{Address, Client, Listener};
    /// let listener = Listener::bind("127.0.0.1:0", None)?;
    /// assert_eq!(listener.last_accepted(), None);
    /// let client = Client(listener.address(), None)?;
    /// let _conn = listener.accept()?;
    /// let Some(Address::Tcp(peer)) = listener.last_accepted() else { panic!("a TCP peer") };
    /// assert!(peer.ip().is_loopback());
    /// # drop(client);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn last_accepted(&self) -> Option<Address> {
        self.last_accepted.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops listening and removes the socket file; a thread blocked in
    /// [`accept`](Listener::accept) wakes with an error.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::connection::Listener;
    /// let l = Listener::bind("127.0.0.1:0", None)?;
    /// l.close();
    /// assert!(l.accept().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = sys::shutdown_both(self.fd.as_fd());
        if let Some((path, dev, ino)) = &self.file {
            if std::fs::metadata(path).is_ok_and(|m| m.dev() == *dev && m.ino() == *ino) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}

impl super::wait::sealed::Watch for Listener {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        match &self.handshakes {
            Some(h) if h.pid == sys::getpid() => h.poller.as_fd(),
            _ => self.fd.as_fd(),
        }
    }

    fn ready_now(&self) -> bool {
        // A thread in `accept` holds the lock; what it finds, it returns.
        let ended = |h: &Handshakes| h.state.try_lock().is_ok_and(|s| !s.ended.is_empty());
        self.handshakes.as_ref().is_some_and(ended)
    }
}

/// Connects to a [`Listener`] (or to a Python
/// `multiprocessing.connection.Listener`) at `address` (Python's
/// `multiprocessing.connection.Client`). With `authkey`, the handshake runs
/// in both directions before the connection is returned.
///
/// # Errors
///
/// [`ErrorKind::Io`] if nothing listens there; [`ErrorKind::Authentication`]
/// if the keys differ (or the listener expects none).
///
/// # Examples
///
/// ```
/// use multiproc::connection::{Client, Listener};
/// let listener = Listener::bind("\0multiproc-client-doc", None)?;
/// let conn = Client("\0multiproc-client-doc", None)?;
/// conn.send(&7u32)?;
/// assert_eq!(listener.accept()?.recv::<u32>()?, 7);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[allow(non_snake_case)]
pub fn Client(address: impl ToAddress, authkey: Option<&[u8]>) -> Result<Connection> {
    let address = address.to_address()?;
    let fd = match &address {
        Address::Unix(path) => sys::connect_unix_path(path),
        Address::Abstract(name) => sys::connect_unix_abstract(name),
        Address::Tcp(addr) => sys::connect_tcp(*addr),
    }
    .map_err(|e| {
        Error::new(ErrorKind::Io, format!("connecting to {address} failed: {e}; is a Listener there?")).with_source(e)
    })?;
    let conn = Connection::new(fd, true, true);
    if let Some(key) = authkey {
        auth::answer_challenge(&conn, key)?;
        auth::deliver_challenge(&conn, key)?;
    }
    Ok(conn)
}
