//! [`Manager`]: a server process that owns shared objects (dicts, lists),
//! and the proxies through which any process uses them (Python's
//! `multiprocessing.Manager()` and `managers.BaseManager`).
//!
//! `protocol.rs` is what clients and server say; `server.rs` the server
//! (an object table, a thread per client, references given back when a
//! client goes away); `proxy.rs` the per-process link to a server and the
//! reference a proxy holds; the typed proxies each in a file of their own
//! (`dict.rs`, `list.rs` with the array, `set.rs`, `namespace.rs` with the
//! value, `queue.rs`, `sync.rs` for locks, semaphores, events and
//! barriers, `condition.rs`, `custom.rs` for your own types); `hash.rs`
//! the hash of the server's dicts and sets.

mod condition;
mod custom;
mod dict;
mod hash;
mod list;
mod namespace;
mod protocol;
mod proxy;
mod queue;
mod server;
mod set;
mod sync;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use condition::ConditionProxy;
pub use custom::CustomProxy;
pub use dict::DictProxy;
pub use list::{ArrayProxy, ListProxy};
pub use namespace::{NamespaceProxy, ValueProxy};
pub use queue::QueueProxy;
pub use set::SetProxy;
pub use sync::{BarrierProxy, EventProxy, LockProxy, RLockProxy, SemaphoreProxy};

use crate::connection::{Connection, Listener, ToAddress};
use crate::context::StartMethod;
use crate::error::{Error, ErrorKind, RemoteError, Result};
use crate::process::{Child, Process};
use crate::target::Message;
use protocol::{Reply, Request};
use proxy::Link;
pub(crate) use proxy::hold_across_fork;

/// A server process that owns shared objects, and the handle that starts
/// and stops it (Python's `multiprocessing.Manager()`). Objects made with
/// [`dict`](Manager::dict) or [`list`](Manager::list) live in the server;
/// every process uses them through proxies, which are messages (they go in
/// process arguments, pool tasks, queues, and other managed objects) and
/// are the same object wherever they arrive.
///
/// The server stops when the manager is dropped (as Python's `with
/// Manager() as m:`) or [`shutdown`](Manager::shutdown); a proxy call after
/// that fails with [`ErrorKind::ManagerGone`], as it does if the server
/// dies. An object lives while any proxy to it exists, in any process: a
/// process that dies gives back its proxies' references.
///
/// # Examples
///
/// ```
/// use multiproc::Manager;
/// use multiproc::manager::{DictProxy, ListProxy};
///
/// fn fill((d, l): (DictProxy<i32, String>, ListProxy<i32>)) {
///     d.insert(1, "1".into()).unwrap();
///     d.insert(2, "2".into()).unwrap();
///     l.reverse().unwrap();
/// }
///
/// let manager = Manager::new()?;
/// let d = manager.dict()?;
/// let l = manager.list_from((0..10).collect())?;
/// multiproc::Process::new(fill, (d.clone(), l.clone())).start()?.join()?;
/// assert_eq!(d.items()?, [(1, "1".to_string()), (2, "2".to_string())]);
/// assert_eq!(l.snapshot()?, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias("SyncManager", "BaseManager"))]
pub struct Manager {
    link: Arc<Link>,
    /// The server, when this handle started it.
    server: Option<Child<()>>,
    owner: u32,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager").field("address", &self.link.address()).finish_non_exhaustive()
    }
}

/// How long a new server may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(30);

/// The server process: listens on `address`, says so on `ready`, serves.
fn server_main((address, authkey, ready): (String, Vec<u8>, Connection)) {
    let listener = match Listener::bind(address.as_str(), Some(&authkey)) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(&Err::<String, RemoteError>(RemoteError::from(&e)));
            return;
        }
    };
    // The address as bound (a TCP port 0 is a real port now).
    let bound = listener.address().to_parseable();
    if ready.send(&Ok::<String, RemoteError>(bound.clone())).is_err() {
        return;
    }
    drop(ready);
    server::Server::new().run(listener)
}

/// How to start a [`Manager`]'s server: its start method, the address it
/// listens on, and its authkey (Python's `SyncManager(address, authkey)`
/// then `start()`). By default: the default start method, a private
/// abstract address, and a random key.
///
/// # Examples
///
/// ```
/// use multiproc::{Manager, StartMethod};
/// let m = Manager::builder().start_method(StartMethod::Fork).address("127.0.0.1:0").authkey(b"secret").start()?;
/// assert!(m.address().starts_with("127.0.0.1:"));
/// let other = Manager::connect(m.address(), b"secret")?;
/// assert_eq!(other.object_count()?, 0);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Default)]
#[must_use = "a ManagerBuilder does nothing until start() is called"]
pub struct ManagerBuilder {
    method: Option<StartMethod>,
    address: Option<String>,
    authkey: Option<Vec<u8>>,
}

impl ManagerBuilder {
    /// The server's start method.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::builder().start_method(multiproc::StartMethod::Spawn).start()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Where the server listens (anything [`ToAddress`] takes; port 0
    /// picks a free port, which [`Manager::address`] then tells).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::builder().address("127.0.0.1:0").start()?;
    /// assert!(!m.address().ends_with(":0"));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn address(mut self, address: impl ToAddress) -> Self {
        self.address = Some(address.to_address().map(|a| a.to_parseable()).unwrap_or_default());
        self
    }

    /// The key clients must know.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::builder().authkey(b"k").start()?;
    /// assert_eq!(m.authkey(), b"k");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn authkey(mut self, authkey: &[u8]) -> Self {
        self.authkey = Some(authkey.to_vec());
        self
    }

    /// Starts the server process.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for an address that is not one; as
    /// [`Manager::new`] otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::builder().start()?;
    /// # drop(m);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn start(self) -> Result<Manager> {
        if self.address.as_deref() == Some("") {
            return Err(Error::new(ErrorKind::InvalidInput, "the manager's address is not an address (see Address)"));
        }
        Manager::start_with(self.method, self.address, self.authkey)
    }
}

impl Manager {
    /// How to start a manager with a start method, an address or a key of
    /// your choosing.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::builder().authkey(b"k").start()?;
    /// # drop(m);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// Starts a manager's server process, under the default start method,
    /// on a private address with a random authkey (Python's `Manager()`).
    ///
    /// # Errors
    ///
    /// Those of starting a process, or [`ErrorKind::ManagerGone`] if the
    /// server could not start listening.
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = multiproc::Manager::new()?;
    /// let d = manager.dict::<String, i32>()?;
    /// d.insert("answer".into(), 42)?;
    /// assert_eq!(d.get(&"answer".into())?, Some(42));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Result<Manager> {
        Manager::start_with(None, None, None)
    }

    /// The same as [`new`](Manager::new), by the name of Python's
    /// `SyncManager().start()`.
    ///
    /// # Errors
    ///
    /// As [`new`](Manager::new).
    ///
    /// # Examples
    ///
    /// ```
    /// let manager = multiproc::Manager::start()?;
    /// assert_eq!(manager.object_count()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn start() -> Result<Manager> {
        Manager::new()
    }

    /// Starts a manager's server process with start method `method`.
    ///
    /// # Errors
    ///
    /// As [`new`](Manager::new).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Manager, StartMethod};
    /// let manager = Manager::with_start_method(StartMethod::Spawn)?;
    /// assert_eq!(manager.list_from(vec![1u8])?.len()?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_start_method(method: StartMethod) -> Result<Manager> {
        Manager::start_with(Some(method), None, None)
    }

    fn start_with(method: Option<StartMethod>, address: Option<String>, authkey: Option<Vec<u8>>) -> Result<Manager> {
        let mut secret = [0u8; 24];
        crate::sys::random_bytes(&mut secret).map_err(|e| Error::io("making a manager's authkey", e))?;
        let name: String = secret[..8].iter().map(|b| format!("{b:02x}")).collect();
        let address = address.unwrap_or_else(|| format!("\0multiproc-manager-{}-{name}", std::process::id()));
        let authkey = authkey.unwrap_or_else(|| secret[8..].to_vec());
        let (mine, theirs) = crate::Pipe(true)?;
        let mut process =
            Process::new(server_main, (address.clone(), authkey.clone(), theirs)).name("SyncManager-1").daemon(true);
        if let Some(m) = method {
            process = process.start_method(m);
        }
        let server = process.start()?;
        let started = if mine.poll(Some(START_LIMIT))? {
            mine.recv::<std::result::Result<String, RemoteError>>().map_err(protocol::gone)?
        } else {
            Err(RemoteError::new(ErrorKind::Timeout, "the manager's server did not start"))
        };
        let address = match started {
            Ok(bound) => bound,
            Err(e) => {
                let _ = server.kill();
                return Err(Error::new(
                    ErrorKind::ManagerGone,
                    format!("the manager's server could not start: {}", e.message),
                ));
            }
        };
        let link = Link::to(&address, &authkey)?;
        Ok(Manager { link, server: Some(server), owner: std::process::id() })
    }

    /// Connects to a manager that another program serves at `address`
    /// with `authkey` (Python's `BaseManager(address, authkey).connect()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ManagerGone`] if nothing serves there,
    /// [`ErrorKind::Authentication`] for a wrong key, and those of
    /// [`ToAddress`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Manager;
    /// let served = Manager::new()?;
    /// let d = served.dict::<u8, u8>()?;
    /// d.insert(1, 2)?;
    /// let other = Manager::connect(served.address(), served.authkey())?;
    /// assert_eq!(other.object_count()?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn connect(address: impl ToAddress, authkey: &[u8]) -> Result<Manager> {
        let address = address.to_address()?.to_parseable();
        let link = Link::to(&address, authkey)?;
        link.call(&Request::Count)?;
        Ok(Manager { link, server: None, owner: std::process::id() })
    }

    /// Serves a manager at `address` with `authkey` in this process, until
    /// a client calls [`shutdown`](Manager::shutdown), which ends this
    /// process (Python's `manager.get_server().serve_forever()`).
    ///
    /// # Errors
    ///
    /// Those of [`Listener::bind`](crate::connection::Listener::bind),
    /// before serving starts.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// // In one program (or terminal):
    /// multiproc::Manager::serve("127.0.0.1:50000", b"secret")?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn serve(address: impl ToAddress, authkey: &[u8]) -> Result<std::convert::Infallible> {
        let address = address.to_address()?;
        let listener = Listener::bind(address.clone(), Some(authkey))?;
        server::Server::new().run(listener)
    }

    /// Serves a manager on `listener` in this process (its authkey is the
    /// manager's), until a client calls [`shutdown`](Manager::shutdown),
    /// which ends this process: for a server that must say where it
    /// listens before it serves (bind port 0, tell the port, serve).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::connection::Listener;
    /// let listener = Listener::bind("127.0.0.1:0", Some(b"secret"))?;
    /// println!("serving at {}", listener.address());
    /// multiproc::Manager::serve_listener(listener);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn serve_listener(listener: Listener) -> ! {
        server::Server::new().run(listener)
    }

    /// The pid of the server process this manager started (`None` for one
    /// it [`connect`](Manager::connect)ed to).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert!(m.pid().is_some_and(|pid| pid != std::process::id()));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::pid)
    }

    /// The address proxies connect to.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert!(m.address().starts_with('\0'));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn address(&self) -> &str {
        self.link.address()
    }

    /// The key clients must know.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.authkey().len(), 16);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn authkey(&self) -> &[u8] {
        self.link.authkey()
    }

    /// A new empty dict in the server (Python's `manager.dict()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ManagerGone`] if the server is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.dict::<u8, u8>()?.len()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>>
    where
        K: Message + Eq + std::hash::Hash + Clone,
        V: Message + Clone,
    {
        DictProxy::create(Arc::clone(&self.link), Vec::new())
    }

    /// A new dict with `items` (Python's `manager.dict(items)`).
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.dict_from(vec![(1u8, 'a')])?.get(&1)?, Some('a'));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn dict_from<K, V>(&self, items: Vec<(K, V)>) -> Result<DictProxy<K, V>>
    where
        K: Message + Eq + std::hash::Hash + Clone,
        V: Message + Clone,
    {
        DictProxy::create(Arc::clone(&self.link), items)
    }

    /// A new empty list in the server (Python's `manager.list()`).
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.list::<u8>()?.len()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn list<T: Message + Clone>(&self) -> Result<ListProxy<T>> {
        ListProxy::create(Arc::clone(&self.link), Vec::new())
    }

    /// A new list with `items` (Python's `manager.list(items)`).
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.list_from(vec![1u8, 2])?.len()?, 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn list_from<T: Message + Clone>(&self, items: Vec<T>) -> Result<ListProxy<T>> {
        ListProxy::create(Arc::clone(&self.link), items)
    }

    /// A new array in the server, of the items given (Python's
    /// `manager.Array(typecode, sequence)`): fixed length, any message
    /// type.
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let a = m.array(vec![0u32; 8])?;
    /// a.set(7, 1)?;
    /// assert_eq!(a.get(7)?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("Array"))]
    pub fn array<T: Message + Clone>(&self, items: Vec<T>) -> Result<ArrayProxy<T>> {
        ArrayProxy::create(Arc::clone(&self.link), items)
    }

    /// A new object of your own type in the server, made by `new(arg)`
    /// there (Python's `BaseManager.register(typeid, callable)` and
    /// `manager.typeid(arg)`); its methods run on the server through the
    /// [`CustomProxy`]. `new` is a constructor (`Counter::new`) or a
    /// closure that captures nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Panicked`] if `new` panicked, and as
    /// [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Manager;
    /// struct Tally(u64);
    /// let m = Manager::new()?;
    /// let t = m.create(|start: u64| Tally(start), 1)?;
    /// assert_eq!(t.call(|t: &mut Tally, by: u64| { t.0 += by; t.0 }, 2)?, 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("register"))]
    pub fn create<T, F, A>(&self, new: F, arg: A) -> Result<CustomProxy<T>>
    where
        T: Send + 'static,
        F: Fn(A) -> T + Copy + Send + 'static,
        A: Message,
    {
        CustomProxy::create(Arc::clone(&self.link), new, &arg)
    }

    /// A new queue in the server, without a size limit (Python's
    /// `manager.Queue()` and `manager.JoinableQueue()`).
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert!(m.queue::<u8>()?.empty()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("Queue"))]
    pub fn queue<T: Message>(&self) -> Result<QueueProxy<T>> {
        QueueProxy::create(Arc::clone(&self.link), 0)
    }

    /// A new queue whose consumers say when each item is done (Python's
    /// `manager.JoinableQueue()`): a [`queue`](Manager::queue), whose
    /// [`task_done`](QueueProxy::task_done) and
    /// [`join`](QueueProxy::join) every managed queue has.
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let q = m.joinable_queue::<u8>()?;
    /// q.put(1)?;
    /// q.get()?;
    /// q.task_done()?;
    /// q.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("JoinableQueue"))]
    pub fn joinable_queue<T: Message>(&self) -> Result<QueueProxy<T>> {
        self.queue()
    }

    /// A new queue that holds at most `maxsize` items (Python's
    /// `manager.Queue(maxsize)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for 0 (use [`queue`](Manager::queue));
    /// as [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let q = m.bounded_queue::<u8>(2)?;
    /// q.put(1)?;
    /// q.put(2)?;
    /// assert!(q.full()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn bounded_queue<T: Message>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        if maxsize == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a bounded queue holds at least 1 item; use queue() for no limit",
            ));
        }
        QueueProxy::create(Arc::clone(&self.link), maxsize)
    }

    /// A new lock in the server (Python's `manager.Lock()`): a semaphore
    /// with one permit, which any process may release.
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let lock = m.lock()?;
    /// lock.acquire()?;
    /// lock.release()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("Lock"))]
    pub fn lock(&self) -> Result<LockProxy> {
        SemaphoreProxy::create(Arc::clone(&self.link), 1, 1)
    }

    /// A new barrier for `parties` callers in the server (Python's
    /// `manager.Barrier(parties)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for 0 parties; as
    /// [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.barrier(1)?.wait()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("Barrier"))]
    pub fn barrier(&self, parties: u64) -> Result<BarrierProxy> {
        if parties == 0 {
            return Err(Error::new(ErrorKind::InvalidInput, "a barrier needs at least 1 party (Python's ValueError)"));
        }
        BarrierProxy::create(Arc::clone(&self.link), parties)
    }

    /// A new re-entrant lock in the server (Python's `manager.RLock()`).
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let r = m.rlock()?;
    /// r.acquire()?;
    /// r.release()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("RLock"))]
    pub fn rlock(&self) -> Result<RLockProxy> {
        RLockProxy::create(Arc::clone(&self.link))
    }

    /// A new condition variable in the server, with its own re-entrant
    /// lock (Python's `manager.Condition()`).
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let c = m.condition()?;
    /// c.acquire()?;
    /// c.notify_all()?;
    /// c.release()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("Condition"))]
    pub fn condition(&self) -> Result<ConditionProxy> {
        ConditionProxy::create(Arc::clone(&self.link))
    }

    /// A new semaphore with `permits` (Python's `manager.Semaphore(n)`).
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.semaphore(2)?.value()?, 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("Semaphore"))]
    pub fn semaphore(&self, permits: u64) -> Result<SemaphoreProxy> {
        SemaphoreProxy::create(Arc::clone(&self.link), permits, u64::MAX)
    }

    /// A new semaphore that refuses a release past `permits` (Python's
    /// `manager.BoundedSemaphore(n)`).
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert!(m.bounded_semaphore(1)?.release().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("BoundedSemaphore"))]
    pub fn bounded_semaphore(&self, permits: u64) -> Result<SemaphoreProxy> {
        SemaphoreProxy::create(Arc::clone(&self.link), permits, permits)
    }

    /// A new event in the server (Python's `manager.Event()`).
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert!(!m.event()?.is_set()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("Event"))]
    pub fn event(&self) -> Result<EventProxy> {
        EventProxy::create(Arc::clone(&self.link))
    }

    /// A new empty set in the server (Python 3.14's `manager.set()`).
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.set::<u8>()?.len()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn set<T: Message + Eq + std::hash::Hash + Clone>(&self) -> Result<SetProxy<T>> {
        SetProxy::create(Arc::clone(&self.link), Vec::new())
    }

    /// A new set with `items` (Python 3.14's `manager.set(items)`).
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert!(m.set_from(vec!['a'])?.contains(&'a')?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn set_from<T: Message + Eq + std::hash::Hash + Clone>(&self, items: Vec<T>) -> Result<SetProxy<T>> {
        SetProxy::create(Arc::clone(&self.link), items)
    }

    /// A new namespace in the server (Python's `manager.Namespace()`).
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// m.namespace()?.set("x", &1u8)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("Namespace"))]
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        NamespaceProxy::create(Arc::clone(&self.link))
    }

    /// A new value in the server (Python's `manager.Value(typecode,
    /// value)`).
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.value(7i64)?.get()?, 7);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("Value"))]
    pub fn value<T: Message + Clone>(&self, value: T) -> Result<ValueProxy<T>> {
        ValueProxy::create(Arc::clone(&self.link), &value)
    }

    /// How many objects the server holds: those that some proxy, in some
    /// process, still refers to.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ManagerGone`] if the server is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let d = m.dict::<u8, u8>()?;
    /// assert_eq!(m.object_count()?, 1);
    /// drop(d);
    /// assert_eq!(m.object_count()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn object_count(&self) -> Result<u64> {
        match self.link.call(&Request::Count)? {
            Reply::Count(n) => Ok(n),
            other => Err(Error::new(ErrorKind::Protocol, format!("a manager answered {other:?} to a count"))),
        }
    }

    /// Stops the server (Python's `shutdown()`): every proxy's next call
    /// fails with [`ErrorKind::ManagerGone`]. Dropping the manager that
    /// started the server does this too.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ManagerGone`] if it was gone already.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Manager};
    /// let m = Manager::new()?;
    /// let d = m.dict::<u8, u8>()?;
    /// m.shutdown()?;
    /// assert_eq!(d.len().unwrap_err().kind(), ErrorKind::ManagerGone);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn shutdown(&self) -> Result<()> {
        self.link.call(&Request::Shutdown)?;
        if let Some(server) = &self.server {
            let _ = server.join_timeout(START_LIMIT);
        }
        Ok(())
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if self.server.is_some() && std::process::id() == self.owner {
            let _ = self.shutdown();
        }
    }
}
