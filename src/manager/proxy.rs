//! A reference to a managed object, and the connection to its server that
//! every proxy of one manager shares within a process.
//!
//! A proxy holds one reference to its object on the server: made when the
//! object is created or the proxy cloned (`IncRef`), given back when it is
//! dropped (`DecRef`). A proxy that is serialized (into a process's
//! argument, a pool task, a queue, another managed object) takes a
//! reference for the trip (`Hold`), which the process that reads it adopts
//! (`Adopt`); so the object lives while any proxy to it exists, wherever it
//! is. In the server process itself (a proxy stored inside another managed
//! object), the same changes are made on the server's table directly.

use std::collections::HashMap;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::protocol::{self, OpId, Reply, Request};
use super::server::{self, RefChange};
use crate::connection::{Client, Connection};
use crate::error::{Error, ErrorKind, Result};

/// A connection to one manager's server, shared by this process's proxies.
pub(crate) struct Link {
    address: String,
    authkey: Vec<u8>,
    /// Its entry in [`CONNS`].
    serial: u64,
    /// The server's identity (0 until a connection said it): proxies say
    /// which server they belong to by it, whatever address names it.
    server: AtomicU64,
    /// Whether a connection ever passed the handshake: the key is right,
    /// so a later handshake that fails means the server went away in the
    /// middle of it (a server that dies lets its listening socket go
    /// last, after its threads: a connection can still be taken, then
    /// cut).
    admitted: AtomicBool,
}

/// A link's connections in this process, and who uses them.
struct Conns {
    /// The process they belong to: a forked child that finds its parent's
    /// here forgets them and takes a token of its own.
    pid: u32,
    /// The process's token for the server: its references are the
    /// process's, whichever connection made them.
    token: u64,
    /// Connections not in use: a call takes one (or opens one), so that a
    /// thread that waits (a `get` from an empty queue) does not hold up
    /// the others.
    idle: Vec<LinkConn>,
}

/// Every link's connections, by the link's serial number: one table, so
/// that a fork can hold it (as it holds [`LINKS`]).
static CONNS: OnceLock<Mutex<HashMap<u64, Conns>>> = OnceLock::new();

fn conns() -> MutexGuard<'static, HashMap<u64, Conns>> {
    CONNS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner())
}

fn new_token() -> u64 {
    let mut token = [0u8; 8];
    if crate::sys::random_bytes(&mut token).is_err() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        token = (now.as_nanos() as u64).to_le_bytes();
    }
    u64::from_le_bytes(token) ^ (u64::from(std::process::id()) << 32)
}

/// A link's connection: its fd is one that a forked child closes (the
/// server must see the parent's connections end with the parent).
struct LinkConn(Connection);

impl LinkConn {
    fn new(conn: Connection) -> LinkConn {
        crate::runtime::registry::lock().add_internal(conn.as_fd().as_raw_fd());
        LinkConn(conn)
    }
}

impl Drop for LinkConn {
    fn drop(&mut self) {
        crate::runtime::registry::lock().remove_internal(self.0.as_fd().as_raw_fd());
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let gone = conns().remove(&self.serial);
        // Closed outside the table's lock.
        if let Some(c) = gone {
            if c.pid == crate::sys::own_pid() {
                drop(c);
            } else {
                std::mem::forget(c);
            }
        }
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link").field("address", &self.address).finish_non_exhaustive()
    }
}

/// This process's links, by server address and key (with the pid that
/// made them: a forked child makes its own). Weak: a link goes, with its
/// connections, when its last manager handle and proxy go (held strongly,
/// every manager ever started kept a connection open for the process's
/// life).
type Links = HashMap<(String, Vec<u8>), (u32, std::sync::Weak<Link>)>;
static LINKS: OnceLock<Mutex<Links>> = OnceLock::new();

fn links() -> MutexGuard<'static, Links> {
    LINKS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// The table of links and the table of their connections, locked for a
/// `fork()` to hold: a child forked while another thread held one would
/// find it locked for ever, and hang at its first proxy. Each is only ever
/// held for a moment (never across I/O), so the fork waits at most that
/// long.
pub(crate) struct ForkGuard {
    conns: MutexGuard<'static, HashMap<u64, Conns>>,
    _links: MutexGuard<'static, Links>,
}

impl ForkGuard {
    /// In the forked child: the parent's connections are not this
    /// process's (their fds were closed with the parent's other internal
    /// fds): they are forgotten, never used nor shut down.
    pub(crate) fn forget_parents_connections(mut self) {
        for c in self.conns.values_mut() {
            for conn in c.idle.drain(..) {
                std::mem::forget(conn);
            }
        }
    }
}

pub(crate) fn hold_across_fork() -> ForkGuard {
    let links = links();
    ForkGuard { conns: conns(), _links: links }
}

impl Link {
    /// This process's link to the server at `address`, made and connected
    /// if needed. The table's lock is never held across I/O, so that a
    /// fork from another thread cannot leave it held in the child.
    pub(crate) fn to(address: &str, authkey: &[u8]) -> Result<Arc<Link>> {
        let me = crate::sys::own_pid();
        let key = (address.to_string(), authkey.to_vec());
        let link = {
            let mut links = links();
            match links.get(&key).filter(|(pid, _)| *pid == me).and_then(|(_, weak)| weak.upgrade()) {
                Some(link) => link,
                None => {
                    links.retain(|_, (_, weak)| weak.strong_count() > 0);
                    let link = Link::lazy(address, authkey, 0);
                    links.insert(key, (me, Arc::downgrade(&link)));
                    link
                }
            }
        };
        link.connected()?;
        Ok(link)
    }

    /// A link that connects at its first call; `server` is the server's
    /// identity if known (0 if not).
    pub(crate) fn lazy(address: &str, authkey: &[u8], server: u64) -> Arc<Link> {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        Arc::new(Link {
            address: address.to_string(),
            authkey: authkey.to_vec(),
            serial: SERIAL.fetch_add(1, Relaxed),
            server: AtomicU64::new(server),
            admitted: AtomicBool::new(false),
        })
    }

    /// The server's identity, once a connection said it.
    pub(crate) fn server(&self) -> u64 {
        self.server.load(Relaxed)
    }

    /// This link's entry in the table of connections, made if needed; in
    /// a forked child's first use of its parent's link, the parent's
    /// connections (forgotten at the fork) give way to a token of its own.
    fn entry<'a>(&self, conns: &'a mut HashMap<u64, Conns>) -> &'a mut Conns {
        let me = crate::sys::own_pid();
        let c = conns.entry(self.serial).or_insert_with(|| Conns { pid: me, token: new_token(), idle: Vec::new() });
        if c.pid != me {
            c.idle.drain(..).for_each(std::mem::forget);
            *c = Conns { pid: me, token: new_token(), idle: Vec::new() };
        }
        c
    }

    /// This process's token for the server.
    fn token(&self) -> u64 {
        self.entry(&mut conns()).token
    }

    /// An idle connection, or this process's token to open one with.
    fn idle_or_token(&self) -> std::result::Result<LinkConn, u64> {
        let mut conns = conns();
        let c = self.entry(&mut conns);
        c.idle.pop().ok_or(c.token)
    }

    /// Puts a connection back for the next call.
    fn put_back(&self, conn: LinkConn) {
        if let Some(c) = conns().get_mut(&self.serial) {
            if c.pid == crate::sys::own_pid() {
                c.idle.push(conn);
                return;
            }
        }
        drop(conn);
    }

    /// An idle connection, or a new one.
    fn take(&self) -> Result<LinkConn> {
        match self.idle_or_token() {
            Ok(conn) => Ok(conn),
            Err(token) => self.open(token),
        }
    }

    /// A new connection, introduced with this process's token.
    fn open(&self, token: u64) -> Result<LinkConn> {
        let conn = Client(self.address.as_str(), Some(&self.authkey)).map_err(|e| {
            if e.kind() == ErrorKind::Authentication && self.admitted.load(Relaxed) {
                protocol::gone(Error::new(ErrorKind::Eof, e.to_string()))
            } else {
                protocol::gone(e)
            }
        })?;
        let conn = LinkConn::new(conn);
        self.admitted.store(true, Relaxed);
        match protocol::round_trip(&conn.0, &Request::Hello(token))? {
            Reply::Welcome(server) => {
                self.server.store(server, Relaxed);
                Ok(conn)
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Makes sure one connection is open (for an early error).
    fn connected(&self) -> Result<()> {
        let conn = self.take()?;
        self.put_back(conn);
        Ok(())
    }

    /// One request and its reply; a failure the server reports comes back
    /// as that error.
    pub(crate) fn call(&self, request: &Request) -> Result<Reply> {
        if server::in_op_of(self.server()) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "a managed object's method called a proxy of its own manager, which would wait for itself: \
                 pass the data in the call's argument, or use a proxy of another manager",
            ));
        }
        let conn = self.take()?;
        let reply = match protocol::round_trip(&conn.0, request) {
            Ok(reply) => reply,
            Err(e) => {
                // The connection may be out of step now, so it goes; a new
                // one is opened first, so that this process never has none
                // open while the server lives (its last one closing gives
                // its references back).
                if e.kind() != ErrorKind::ManagerGone {
                    match self.idle_or_token() {
                        Ok(other) => self.put_back(other),
                        Err(token) => {
                            if let Ok(fresh) = self.open(token) {
                                self.put_back(fresh);
                            }
                        }
                    }
                }
                drop(conn);
                return Err(e);
            }
        };
        self.put_back(conn);
        match reply {
            Reply::Failed(remote) => Err(Error::new(remote.kind, remote.message)),
            reply => Ok(reply),
        }
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    pub(crate) fn authkey(&self) -> &[u8] {
        &self.authkey
    }
}

/// A reference to object `id` of the manager at `link`.
pub(crate) struct Proxy {
    link: Arc<Link>,
    id: u64,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<proxy of object {} at {}>", self.id, self.link.address)
    }
}

impl Proxy {
    /// Makes an object on the server with `op` and `args`.
    pub(crate) fn create(link: Arc<Link>, op: OpId, args: Vec<u8>) -> Result<Proxy> {
        match link.call(&Request::Create { op, args })? {
            Reply::Created(id) => Ok(Proxy { link, id }),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs method `method` of `op` on the object, with `args` encoded;
    /// its answer, decoded.
    pub(crate) fn call<R: serde::de::DeserializeOwned + 'static>(
        &self,
        op: OpId,
        method: u32,
        args: &(impl Serialize + ?Sized),
    ) -> Result<R> {
        protocol::decode(&self.call_bytes(op, method, protocol::encode_args(args)?)?)
    }

    /// As [`call`](Proxy::call), with the arguments and the answer as the
    /// op encodes them (a batch: [`protocol::push_batch`]); `args` (a
    /// [`protocol::scratch`] buffer) is kept for the next call.
    pub(crate) fn call_bytes(&self, op: OpId, method: u32, args: Vec<u8>) -> Result<Vec<u8>> {
        let request = Request::Call { id: self.id, op, method, args };
        let reply = self.link.call(&request);
        if let Request::Call { args, .. } = request {
            protocol::recycle(args);
        }
        match reply? {
            Reply::Value(bytes) => Ok(bytes),
            other => Err(unexpected(&other)),
        }
    }

    /// As [`call`](Proxy::call), for a method that may have to wait on the
    /// server (until `timeout`, if any).
    pub(crate) fn call_waiting<R: serde::de::DeserializeOwned + 'static>(
        &self,
        op: OpId,
        method: u32,
        args: &(impl Serialize + ?Sized),
        timeout: Option<std::time::Duration>,
    ) -> Result<R> {
        let args = protocol::encode_args(args)?;
        let timeout_us = timeout.map(|t| u64::try_from(t.as_micros()).unwrap_or(u64::MAX));
        match self.link.call(&Request::Wait { id: self.id, op, method, args, timeout_us })? {
            Reply::Value(bytes) => protocol::decode(&bytes),
            other => Err(unexpected(&other)),
        }
    }

    /// Who calls: this thread of this process, as a number the server can
    /// compare (an `RLock`'s owner).
    pub(crate) fn caller(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        self.link.token().hash(&mut h);
        std::thread::current().id().hash(&mut h);
        h.finish()
    }

    /// Whether two proxies refer to the same object.
    pub(crate) fn same(&self, other: &Proxy) -> bool {
        self.id == other.id && self.link.address == other.link.address
    }
}

fn unexpected(reply: &Reply) -> Error {
    Error::new(ErrorKind::Protocol, format!("a manager answered {reply:?} to a request that expects otherwise"))
}

impl Clone for Proxy {
    fn clone(&self) -> Proxy {
        if !server::change_refs_here(self.link.server(), RefChange::Inc(self.id)) {
            // A manager that is gone has nothing to count; the clone fails
            // on its first call, as the original does.
            let _ = self.link.call(&Request::IncRef(self.id));
        }
        Proxy { link: Arc::clone(&self.link), id: self.id }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if !server::change_refs_here(self.link.server(), RefChange::Dec(self.id)) {
            let _ = self.link.call(&Request::DecRef(self.id));
        }
    }
}

/// A proxy as it travels: where its server is, the key, and the object.
#[derive(Serialize, Deserialize)]
struct Wire {
    address: String,
    authkey: Vec<u8>,
    id: u64,
    /// The server's identity: the same server may be named by several
    /// addresses (`0.0.0.0:5000` where it bound, `host:5000` where a
    /// client connected).
    server: u64,
}

impl Serialize for Proxy {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        // A reference for the trip, which the reader adopts.
        if !server::change_refs_here(self.link.server(), RefChange::Inc(self.id)) {
            self.link.call(&Request::Hold(self.id)).map_err(serde::ser::Error::custom)?;
        }
        Wire {
            address: self.link.address.clone(),
            authkey: self.link.authkey.clone(),
            id: self.id,
            server: self.link.server(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Proxy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Proxy, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        if server::is_this_server(wire.server) {
            // Stored inside another managed object: the trip's reference
            // becomes the object's own.
            return Ok(Proxy { link: Link::lazy(&wire.address, &wire.authkey, wire.server), id: wire.id });
        }
        let link = Link::to(&wire.address, &wire.authkey).map_err(serde::de::Error::custom)?;
        link.call(&Request::Adopt(wire.id)).map_err(serde::de::Error::custom)?;
        Ok(Proxy { link, id: wire.id })
    }
}

/// The impls every typed proxy shares, over its `proxy` field and its
/// `_types` marker: `Debug`, `Clone` (another reference), serde (the
/// proxy's wire form), and `PartialEq` (the same object).
macro_rules! typed_proxy {
    ($name:ident) => {
        super::proxy::typed_proxy!($name<>);
    };
    ($name:ident<$($t:ident),*>) => {
        impl<$($t),*> std::fmt::Debug for $name<$($t),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.proxy)
            }
        }

        impl<$($t),*> Clone for $name<$($t),*> {
            fn clone(&self) -> Self {
                $name { proxy: self.proxy.clone(), _types: std::marker::PhantomData }
            }
        }

        impl<$($t),*> serde::Serialize for $name<$($t),*> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                self.proxy.serialize(serializer)
            }
        }

        impl<'de, $($t),*> serde::Deserialize<'de> for $name<$($t),*> {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                Ok($name { proxy: super::proxy::Proxy::deserialize(deserializer)?, _types: std::marker::PhantomData })
            }
        }

        impl<$($t),*> PartialEq for $name<$($t),*> {
            /// Whether both proxies refer to the same object.
            fn eq(&self, other: &Self) -> bool {
                self.proxy.same(&other.proxy)
            }
        }
    };
}

pub(crate) use typed_proxy;
