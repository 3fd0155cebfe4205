//! [`LockProxy`], [`SemaphoreProxy`] and [`EventProxy`]: synchronization
//! objects that live in a manager's server (Python's `manager.Lock()`,
//! `Semaphore(n)`, `BoundedSemaphore(n)` and `Event()`), usable from any
//! process that holds a proxy, pool tasks and other machines included.
//! Waiting happens on the server.

use std::marker::PhantomData;
use std::time::Duration;

use super::protocol::{self, Slot, decode, encode, object};
use super::proxy::{Link, Proxy};
use crate::error::{Error, ErrorKind, Result};

mod method {
    pub(super) const CREATE: u32 = 0;
    pub(super) const ACQUIRE: u32 = 1;
    pub(super) const RELEASE: u32 = 2;
    pub(super) const VALUE: u32 = 3;
    pub(super) const SET: u32 = 4;
    pub(super) const CLEAR: u32 = 5;
    pub(super) const WAIT: u32 = 6;
    pub(super) const ABORT: u32 = 7;
    pub(super) const RESET: u32 = 8;
    pub(super) const WAITING: u32 = 9;
    pub(super) const LEAVE: u32 = 10;
}

/// A counting semaphore on the server; a lock is one with one permit.
struct Permits {
    free: u64,
    /// The most permits a release may bring back (`BoundedSemaphore`, and a
    /// lock); `u64::MAX` for none.
    bound: u64,
}

fn permits_op(args: &[u8], m: u32, slot: &mut Slot) {
    let mut would_block = false;
    let reply = (|| -> Result<Vec<u8>> {
        if m == method::CREATE {
            let (free, bound) = decode::<(u64, u64)>(args)?;
            slot.object = Some(Box::new(Permits { free, bound }));
            return Ok(Vec::new());
        }
        let p = object::<Permits>(slot)?;
        match m {
            method::ACQUIRE => {
                if p.free == 0 {
                    // A wait that runs out answers false, as Python's
                    // acquire(timeout=...) does.
                    would_block = true;
                    return encode(&false);
                }
                p.free -= 1;
                encode(&true)
            }
            method::RELEASE => {
                if p.free >= p.bound {
                    return Err(Error::new(
                        ErrorKind::InvalidState,
                        "released more times than acquired (Python's ValueError or RuntimeError: release unlocked lock)",
                    ));
                }
                p.free += 1;
                encode(&())
            }
            method::VALUE => encode(&p.free),
            other => Err(Error::new(ErrorKind::Protocol, format!("a semaphore has no method {other}"))),
        }
    })();
    slot.reply = reply;
    slot.would_block = would_block;
}

fn event_op(args: &[u8], m: u32, slot: &mut Slot) {
    let mut would_block = false;
    let reply = (|| -> Result<Vec<u8>> {
        if m == method::CREATE {
            let _ = args;
            slot.object = Some(Box::new(false));
            return Ok(Vec::new());
        }
        let flag = object::<bool>(slot)?;
        match m {
            method::SET => {
                *flag = true;
                encode(&())
            }
            method::CLEAR => {
                *flag = false;
                encode(&())
            }
            method::VALUE => encode(&*flag),
            method::WAIT => {
                would_block = !*flag;
                encode(&*flag)
            }
            other => Err(Error::new(ErrorKind::Protocol, format!("an event has no method {other}"))),
        }
    })();
    slot.reply = reply;
    slot.would_block = would_block;
}

/// A barrier on the server. Each wait carries a ticket, so that running
/// it again (while it waits) does not count it twice.
struct Barrier {
    parties: u64,
    arrived: Vec<u64>,
    /// The index each waiter of the last round gets, by ticket.
    passed: std::collections::HashMap<u64, u64>,
    /// Waiters that an abort or a reset broke, by ticket: their wait
    /// fails (Python's BrokenBarrierError), even after a reset.
    failed: std::collections::HashSet<u64>,
    broken: bool,
}

impl Barrier {
    /// Breaks it for everyone waiting now.
    fn fail_waiters(&mut self) {
        let waiting: Vec<u64> = self.arrived.drain(..).collect();
        self.failed.extend(waiting);
    }
}

fn broken_barrier() -> Error {
    Error::new(
        ErrorKind::BrokenBarrier,
        "the barrier is broken (a wait timed out, or abort() was called): reset() it (Python's BrokenBarrierError)",
    )
}

fn barrier_op(args: &[u8], m: u32, slot: &mut Slot) {
    let mut would_block = false;
    let reply = (|| -> Result<Vec<u8>> {
        if m == method::CREATE {
            let parties = decode::<u64>(args)?;
            slot.object = Some(Box::new(Barrier {
                parties,
                arrived: Vec::new(),
                passed: Default::default(),
                failed: Default::default(),
                broken: false,
            }));
            return Ok(Vec::new());
        }
        let b = object::<Barrier>(slot)?;
        match m {
            method::WAIT => {
                // Some(index) once through; None while it waits.
                let ticket = decode::<u64>(args)?;
                if let Some(i) = b.passed.remove(&ticket) {
                    return encode(&Some(i));
                }
                if b.failed.remove(&ticket) || b.broken {
                    return Err(broken_barrier());
                }
                if !b.arrived.contains(&ticket) {
                    b.arrived.push(ticket);
                }
                if b.arrived.len() as u64 >= b.parties {
                    for (i, t) in b.arrived.drain(..).enumerate() {
                        b.passed.insert(t, i as u64);
                    }
                    return encode(&b.passed.remove(&ticket));
                }
                would_block = true;
                encode(&None::<u64>)
            }
            method::LEAVE => {
                // A wait whose time ran out: through after all if the
                // round completed meanwhile; else it breaks the barrier for
                // everyone, in the same step (Python breaks it on a
                // timeout).
                let ticket = decode::<u64>(args)?;
                if let Some(i) = b.passed.remove(&ticket) {
                    return encode(&Some(i));
                }
                b.failed.remove(&ticket);
                b.arrived.retain(|&t| t != ticket);
                b.broken = true;
                b.fail_waiters();
                encode(&None::<u64>)
            }
            method::ABORT => {
                b.broken = true;
                b.fail_waiters();
                encode(&())
            }
            method::RESET => {
                b.broken = false;
                b.fail_waiters();
                encode(&())
            }
            method::WAITING => encode(&(b.arrived.len() as u64)),
            method::VALUE => encode(&b.broken),
            other => Err(Error::new(ErrorKind::Protocol, format!("a barrier has no method {other}"))),
        }
    })();
    slot.reply = reply;
    slot.would_block = would_block;
}

/// A barrier owned by a [`Manager`](crate::Manager)'s server (Python's
/// `manager.Barrier(parties)`): `wait` returns once `parties` callers
/// wait, each with a distinct index in `0..parties`. A wait that times out
/// breaks it for everyone (Python's `BrokenBarrierError`) until
/// [`reset`](BarrierProxy::reset).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let m = multiproc::Manager::new()?;
/// let b = m.barrier(2)?;
/// let b2 = b.clone();
/// let t = std::thread::spawn(move || b2.wait().unwrap());
/// let mine = b.wait()?;
/// let theirs = t.join().unwrap();
/// assert_eq!(mine + theirs, 1, "indices 0 and 1");
/// let err = b.wait_timeout(Duration::from_millis(5)).unwrap_err();
/// assert_eq!(err.kind(), multiproc::ErrorKind::BrokenBarrier);
/// assert!(b.broken()?);
/// b.reset()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias("Barrier"))]
pub struct BarrierProxy {
    proxy: Proxy,
    _types: PhantomData<()>,
}

super::proxy::typed_proxy!(BarrierProxy);

impl BarrierProxy {
    fn op() -> protocol::OpId {
        protocol::op_id(barrier_op)
    }

    pub(crate) fn create(link: std::sync::Arc<Link>, parties: u64) -> Result<Self> {
        Ok(BarrierProxy { proxy: Proxy::create(link, Self::op(), protocol::encode(&parties)?)?, _types: PhantomData })
    }

    fn ticket() -> u64 {
        protocol::ticket()
    }

    /// Waits until `parties` callers wait; this caller's index.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BrokenBarrier`] if the barrier is or becomes broken;
    /// [`ErrorKind::ManagerGone`] if the server is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.barrier(1)?.wait()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait(&self) -> Result<u64> {
        let through: Option<u64> = self.proxy.call_waiting(Self::op(), method::WAIT, &Self::ticket(), None)?;
        through.ok_or_else(broken_barrier)
    }

    /// As [`wait`](BarrierProxy::wait), for at most `timeout`; running out
    /// of time breaks the barrier, for every waiter.
    ///
    /// # Errors
    ///
    /// As [`wait`](BarrierProxy::wait).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = multiproc::Manager::new()?;
    /// assert!(m.barrier(2)?.wait_timeout(Duration::ZERO).is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u64> {
        let ticket = Self::ticket();
        let mut through: Option<u64> = self.proxy.call_waiting(Self::op(), method::WAIT, &ticket, Some(timeout))?;
        if through.is_none() {
            through = self.proxy.call(Self::op(), method::LEAVE, &ticket)?;
        }
        through.ok_or_else(broken_barrier)
    }

    /// Breaks the barrier: every waiter, and every later wait until
    /// [`reset`](BarrierProxy::reset), fails (Python's `abort`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ManagerGone`] if the server is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let b = m.barrier(2)?;
    /// b.abort()?;
    /// assert!(b.wait().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn abort(&self) -> Result<()> {
        self.proxy.call(Self::op(), method::ABORT, &())
    }

    /// Makes a broken barrier usable again, empty (Python's `reset`).
    ///
    /// # Errors
    ///
    /// As [`abort`](BarrierProxy::abort).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let b = m.barrier(1)?;
    /// b.abort()?;
    /// b.reset()?;
    /// assert_eq!(b.wait()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn reset(&self) -> Result<()> {
        self.proxy.call(Self::op(), method::RESET, &())
    }

    /// How many callers wait now (Python's `n_waiting`).
    ///
    /// # Errors
    ///
    /// As [`abort`](BarrierProxy::abort).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.barrier(3)?.n_waiting()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn n_waiting(&self) -> Result<u64> {
        self.proxy.call(Self::op(), method::WAITING, &())
    }

    /// Whether the barrier is broken (Python's `broken`).
    ///
    /// # Errors
    ///
    /// As [`abort`](BarrierProxy::abort).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert!(!m.barrier(2)?.broken()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn broken(&self) -> Result<bool> {
        self.proxy.call(Self::op(), method::VALUE, &())
    }
}

/// A re-entrant lock on the server: its owner (a thread of a process) and
/// how many times it holds it.
#[derive(Default)]
pub(super) struct Reentrant {
    owner: Option<u64>,
    depth: u64,
}

impl Reentrant {
    /// Takes it `depth` more times for `caller`; false if another holds it.
    /// (A depth of 0, or one past `u64::MAX` in all, takes nothing: only
    /// a corrupt request asks for that.)
    pub(super) fn take(&mut self, caller: u64, depth: u64) -> bool {
        match self.owner {
            Some(owner) if owner != caller => false,
            _ => match self.depth.checked_add(depth) {
                Some(total) if depth > 0 => {
                    self.owner = Some(caller);
                    self.depth = total;
                    true
                }
                _ => false,
            },
        }
    }

    /// Whether `caller` holds it, or an error in Python's words for
    /// `what` ("release", "wait", "notify").
    pub(super) fn held_by(&self, caller: u64, what: &str) -> Result<()> {
        if self.owner == Some(caller) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::InvalidState,
            format!(
                "{what} of a lock this thread does not hold (Python's RuntimeError: cannot {what} un-acquired \
                 lock); acquire it first"
            ),
        ))
    }

    /// Gives back one level, or all of them (`all`); how many it held.
    pub(super) fn give(&mut self, caller: u64, all: bool, what: &str) -> Result<u64> {
        self.held_by(caller, what)?;
        let had = self.depth;
        self.depth = if all { 0 } else { had - 1 };
        if self.depth == 0 {
            self.owner = None;
        }
        Ok(had)
    }
}

fn rlock_op(args: &[u8], m: u32, slot: &mut Slot) {
    let mut would_block = false;
    let reply = (|| -> Result<Vec<u8>> {
        if m == method::CREATE {
            slot.object = Some(Box::new(Reentrant::default()));
            return Ok(Vec::new());
        }
        let caller = decode::<u64>(args)?;
        let lock = object::<Reentrant>(slot)?;
        match m {
            method::ACQUIRE => {
                would_block = !lock.take(caller, 1);
                encode(&!would_block)
            }
            method::RELEASE => {
                lock.give(caller, false, "release")?;
                encode(&())
            }
            other => Err(Error::new(ErrorKind::Protocol, format!("an RLock has no method {other}"))),
        }
    })();
    slot.reply = reply;
    slot.would_block = would_block;
}

/// A re-entrant lock owned by a [`Manager`](crate::Manager)'s server
/// (Python's `manager.RLock()`): the thread that holds it may acquire it
/// again, and must release it as many times; only it may release it.
///
/// # Examples
///
/// ```
/// let m = multiproc::Manager::new()?;
/// let r = m.rlock()?;
/// assert!(r.acquire()? && r.acquire()?);
/// r.release()?;
/// r.release()?;
/// assert!(r.release().is_err(), "not held any more");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias("RLock"))]
pub struct RLockProxy {
    proxy: Proxy,
    _types: PhantomData<()>,
}

super::proxy::typed_proxy!(RLockProxy);

impl RLockProxy {
    fn op() -> protocol::OpId {
        protocol::op_id(rlock_op)
    }

    pub(crate) fn create(link: std::sync::Arc<Link>) -> Result<Self> {
        Ok(RLockProxy { proxy: Proxy::create(link, Self::op(), Vec::new())?, _types: PhantomData })
    }

    /// Takes the lock (again, if this thread holds it), waiting while
    /// another holds it; always true.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ManagerGone`] if the server is gone (every method).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert!(m.rlock()?.acquire()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<bool> {
        self.proxy.call_waiting(Self::op(), method::ACQUIRE, &self.proxy.caller(), None)
    }

    /// As [`acquire`](RLockProxy::acquire), waiting at most `timeout`;
    /// whether it got the lock.
    ///
    /// # Errors
    ///
    /// As [`acquire`](RLockProxy::acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = multiproc::Manager::new()?;
    /// assert!(m.rlock()?.acquire_timeout(Duration::ZERO)?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.proxy.call_waiting(Self::op(), method::ACQUIRE, &self.proxy.caller(), Some(timeout))
    }

    /// Releases one level of the lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if this thread does not hold it.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert!(m.rlock()?.release().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn release(&self) -> Result<()> {
        self.proxy.call(Self::op(), method::RELEASE, &self.proxy.caller())
    }
}

/// A semaphore owned by a [`Manager`](crate::Manager)'s server (Python's
/// `manager.Semaphore(n)` and `BoundedSemaphore(n)`); a lock is one with
/// one permit ([`Manager::lock`](crate::Manager::lock)). It is a message:
/// it goes through pool tasks. A permit taken by a process that dies is not
/// given back (as in Python).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let m = multiproc::Manager::new()?;
/// let lock = m.lock()?;
/// assert!(lock.acquire()?);
/// assert!(!lock.acquire_timeout(Duration::ZERO)?, "held");
/// lock.release()?;
/// assert!(lock.release().is_err(), "not held any more");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias("Lock", "Semaphore", "BoundedSemaphore"))]
pub struct SemaphoreProxy {
    proxy: Proxy,
    _types: PhantomData<()>,
}

super::proxy::typed_proxy!(SemaphoreProxy);

/// A manager's lock: a [`SemaphoreProxy`] with one permit.
pub type LockProxy = SemaphoreProxy;

impl SemaphoreProxy {
    fn op() -> protocol::OpId {
        protocol::op_id(permits_op)
    }

    pub(crate) fn create(link: std::sync::Arc<Link>, permits: u64, bound: u64) -> Result<Self> {
        let proxy = Proxy::create(link, Self::op(), protocol::encode(&(permits, bound))?)?;
        Ok(SemaphoreProxy { proxy, _types: PhantomData })
    }

    /// Takes a permit, waiting for one (Python's `acquire()`); always true.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ManagerGone`] if the server is gone (every method).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let s = m.semaphore(2)?;
    /// assert!(s.acquire()? && s.acquire()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<bool> {
        self.proxy.call_waiting(Self::op(), method::ACQUIRE, &(), None)
    }

    /// Takes a permit, waiting at most `timeout`; whether it got one
    /// (Python's `acquire(timeout=...)`, and `acquire(False)` for zero).
    ///
    /// # Errors
    ///
    /// As [`acquire`](SemaphoreProxy::acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = multiproc::Manager::new()?;
    /// let s = m.semaphore(0)?;
    /// assert!(!s.acquire_timeout(Duration::from_millis(5))?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.proxy.call_waiting(Self::op(), method::ACQUIRE, &(), Some(timeout))
    }

    /// Gives a permit back (any process may, as in Python).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] past the bound (a lock not held, a
    /// bounded semaphore at its initial value).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let s = m.bounded_semaphore(1)?;
    /// s.acquire()?;
    /// s.release()?;
    /// assert!(s.release().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn release(&self) -> Result<()> {
        self.proxy.call(Self::op(), method::RELEASE, &())
    }

    /// The permits free now (Python's `get_value()`).
    ///
    /// # Errors
    ///
    /// As [`acquire`](SemaphoreProxy::acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert_eq!(m.semaphore(3)?.value()?, 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("get_value"))]
    pub fn value(&self) -> Result<u64> {
        self.proxy.call(Self::op(), method::VALUE, &())
    }
}

/// An event owned by a [`Manager`](crate::Manager)'s server (Python's
/// `manager.Event()`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let m = multiproc::Manager::new()?;
/// let e = m.event()?;
/// assert!(!e.wait_timeout(Duration::ZERO)?);
/// e.set()?;
/// assert!(e.is_set()? && e.wait()?);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias("Event"))]
pub struct EventProxy {
    proxy: Proxy,
    _types: PhantomData<()>,
}

super::proxy::typed_proxy!(EventProxy);

impl EventProxy {
    fn op() -> protocol::OpId {
        protocol::op_id(event_op)
    }

    pub(crate) fn create(link: std::sync::Arc<Link>) -> Result<Self> {
        Ok(EventProxy { proxy: Proxy::create(link, Self::op(), Vec::new())?, _types: PhantomData })
    }

    /// Sets the flag, waking every waiter.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ManagerGone`] if the server is gone (every method).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let e = m.event()?;
    /// e.set()?;
    /// assert!(e.is_set()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn set(&self) -> Result<()> {
        self.proxy.call(Self::op(), method::SET, &())
    }

    /// Clears the flag.
    ///
    /// # Errors
    ///
    /// As [`set`](EventProxy::set).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let e = m.event()?;
    /// e.set()?;
    /// e.clear()?;
    /// assert!(!e.is_set()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn clear(&self) -> Result<()> {
        self.proxy.call(Self::op(), method::CLEAR, &())
    }

    /// Whether the flag is set.
    ///
    /// # Errors
    ///
    /// As [`set`](EventProxy::set).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert!(!m.event()?.is_set()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_set(&self) -> Result<bool> {
        self.proxy.call(Self::op(), method::VALUE, &())
    }

    /// Waits until the flag is set; true.
    ///
    /// # Errors
    ///
    /// As [`set`](EventProxy::set).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let e = m.event()?;
    /// e.set()?;
    /// assert!(e.wait()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait(&self) -> Result<bool> {
        self.proxy.call_waiting(Self::op(), method::WAIT, &(), None)
    }

    /// Waits at most `timeout` for the flag; whether it is set (Python's
    /// `wait(timeout)`).
    ///
    /// # Errors
    ///
    /// As [`set`](EventProxy::set).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = multiproc::Manager::new()?;
    /// assert!(!m.event()?.wait_timeout(Duration::from_millis(5))?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.proxy.call_waiting(Self::op(), method::WAIT, &(), Some(timeout))
    }
}
