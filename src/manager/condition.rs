//! [`ConditionProxy`]: a condition variable that lives in a manager's
//! server (Python's `manager.Condition()`), with its own re-entrant lock.
//!
//! A wait is three steps on the server, so that no call holds the table
//! while it waits: `WAIT_BEGIN` lets the lock go (all levels, kept for
//! later) and queues a ticket; a `Wait` request for `WAIT_END` returns
//! once the ticket was notified and the lock is free, taking it back at
//! its old depth; after a timeout, `GIVE_UP` takes the ticket out of the
//! queue (saying whether a notify came in between) and the lock is taken
//! back with `ACQUIRE`, however long that takes, as Python's does.

use std::collections::{HashSet, VecDeque};
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::protocol::{self, Slot, decode, encode, object};
use super::proxy::{Link, Proxy};
use super::sync::Reentrant;
use crate::error::{Error, ErrorKind, Result};

mod method {
    pub(super) const CREATE: u32 = 0;
    pub(super) const ACQUIRE: u32 = 1;
    pub(super) const RELEASE: u32 = 2;
    pub(super) const WAIT_BEGIN: u32 = 3;
    pub(super) const WAIT_END: u32 = 4;
    pub(super) const GIVE_UP: u32 = 5;
    pub(super) const NOTIFY: u32 = 6;
}

/// The server's condition.
#[derive(Default)]
struct Condition {
    lock: Reentrant,
    /// Tickets of the callers waiting for a notify, oldest first.
    waiting: VecDeque<u64>,
    /// Tickets notified whose callers have not taken the lock back yet.
    notified: HashSet<u64>,
}

fn condition_op(args: &[u8], m: u32, slot: &mut Slot) {
    let mut would_block = false;
    let reply = (|| -> Result<Vec<u8>> {
        if m == method::CREATE {
            slot.object = Some(Box::new(Condition::default()));
            return Ok(Vec::new());
        }
        // Every call says who calls, a ticket (or a count) and a depth.
        let (caller, n, depth) = decode::<(u64, u64, u64)>(args)?;
        let c = object::<Condition>(slot)?;
        match m {
            method::ACQUIRE => {
                would_block = !c.lock.take(caller, depth);
                encode(&!would_block)
            }
            method::RELEASE => {
                c.lock.give(caller, false, "release")?;
                encode(&())
            }
            method::WAIT_BEGIN => {
                let depth = c.lock.give(caller, true, "wait")?;
                c.waiting.push_back(n);
                encode(&depth)
            }
            method::WAIT_END => {
                if c.notified.contains(&n) && c.lock.take(caller, depth) {
                    c.notified.remove(&n);
                    return encode(&true);
                }
                would_block = true;
                encode(&false)
            }
            method::GIVE_UP => {
                c.waiting.retain(|&t| t != n);
                encode(&c.notified.remove(&n))
            }
            method::NOTIFY => {
                c.lock.held_by(caller, "notify")?;
                let k = (n as usize).min(c.waiting.len());
                let woken: Vec<u64> = c.waiting.drain(..k).collect();
                c.notified.extend(woken);
                encode(&(k as u64))
            }
            other => Err(Error::new(ErrorKind::Protocol, format!("a condition has no method {other}"))),
        }
    })();
    slot.reply = reply;
    slot.would_block = would_block;
}

/// A condition variable owned by a [`Manager`](crate::Manager)'s server,
/// with its own re-entrant lock (Python's `manager.Condition()`): take the
/// lock, [`wait`](ConditionProxy::wait) until another process or thread
/// [`notify`](ConditionProxy::notify)s, and find the lock held again.
/// Like every proxy it is a message: it goes to processes and pool tasks.
///
/// # Examples
///
/// ```
/// use multiproc::Manager;
/// let m = Manager::new()?;
/// let (cond, items) = (m.condition()?, m.list::<u32>()?);
/// let (c2, i2) = (cond.clone(), items.clone());
/// let consumer = std::thread::spawn(move || {
///     c2.acquire().unwrap();
///     let ready = c2.wait_for(|| i2.len().unwrap() > 0).unwrap();
///     c2.release().unwrap();
///     ready
/// });
/// cond.acquire()?;
/// items.push(7)?;
/// cond.notify_all()?;
/// cond.release()?;
/// assert!(consumer.join().unwrap());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias("Condition"))]
pub struct ConditionProxy {
    proxy: Proxy,
    _types: PhantomData<()>,
}

super::proxy::typed_proxy!(ConditionProxy);

impl ConditionProxy {
    fn op() -> protocol::OpId {
        protocol::op_id(condition_op)
    }

    pub(crate) fn create(link: std::sync::Arc<Link>) -> Result<Self> {
        Ok(ConditionProxy { proxy: Proxy::create(link, Self::op(), Vec::new())?, _types: PhantomData })
    }

    fn call<R: serde::de::DeserializeOwned + 'static>(&self, m: u32, n: u64, depth: u64) -> Result<R> {
        self.proxy.call(Self::op(), m, &(self.proxy.caller(), n, depth))
    }

    fn call_waiting<R: serde::de::DeserializeOwned + 'static>(
        &self,
        m: u32,
        n: u64,
        depth: u64,
        timeout: Option<Duration>,
    ) -> Result<R> {
        self.proxy.call_waiting(Self::op(), m, &(self.proxy.caller(), n, depth), timeout)
    }

    /// Takes the condition's lock (again, if this thread holds it),
    /// waiting while another holds it; always true.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ManagerGone`] if the server is gone (every method).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let c = m.condition()?;
    /// assert!(c.acquire()?);
    /// c.release()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<bool> {
        self.call_waiting(method::ACQUIRE, 0, 1, None)
    }

    /// As [`acquire`](ConditionProxy::acquire), waiting at most
    /// `timeout`; whether it got the lock.
    ///
    /// # Errors
    ///
    /// As [`acquire`](ConditionProxy::acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = multiproc::Manager::new()?;
    /// assert!(m.condition()?.acquire_timeout(Duration::ZERO)?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.call_waiting(method::ACQUIRE, 0, 1, Some(timeout))
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
    /// assert!(m.condition()?.release().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn release(&self) -> Result<()> {
        self.call(method::RELEASE, 0, 0)
    }

    /// Lets the lock go, waits for a notify, and takes the lock back (at
    /// the depth this thread held it); true, as Python's `wait()`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if this thread does not hold the lock;
    /// [`ErrorKind::ManagerGone`] if the server is gone.
    ///
    /// # Examples
    ///
    /// See [`ConditionProxy`].
    pub fn wait(&self) -> Result<bool> {
        self.wait_until(None)
    }

    /// As [`wait`](ConditionProxy::wait), for a notify within `timeout`:
    /// false if none came (the lock is held again either way, as in
    /// Python).
    ///
    /// # Errors
    ///
    /// As [`wait`](ConditionProxy::wait).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = multiproc::Manager::new()?;
    /// let c = m.condition()?;
    /// c.acquire()?;
    /// assert!(!c.wait_timeout(Duration::from_millis(10))?);
    /// c.release()?; // still held after the timeout
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_until(Some(timeout))
    }

    fn wait_until(&self, timeout: Option<Duration>) -> Result<bool> {
        let ticket = protocol::ticket();
        let depth: u64 = self.call(method::WAIT_BEGIN, ticket, 0)?;
        if self.call_waiting::<bool>(method::WAIT_END, ticket, depth, timeout)? {
            return Ok(true);
        }
        // Out of time: leave the queue, then take the lock back whatever
        // it costs (a notify that came in between still counts).
        let notified: bool = self.call(method::GIVE_UP, ticket, 0)?;
        let _: bool = self.call_waiting(method::ACQUIRE, 0, depth, None)?;
        Ok(notified)
    }

    /// Waits until `predicate()` is true, checking it first and after
    /// each notify, with the lock held (Python's `wait_for`); its last
    /// answer.
    ///
    /// # Errors
    ///
    /// As [`wait`](ConditionProxy::wait).
    ///
    /// # Examples
    ///
    /// See [`ConditionProxy`].
    pub fn wait_for(&self, mut predicate: impl FnMut() -> bool) -> Result<bool> {
        while !predicate() {
            self.wait()?;
        }
        Ok(true)
    }

    /// As [`wait_for`](ConditionProxy::wait_for), for at most `timeout`
    /// in all; false if `predicate()` is still false then.
    ///
    /// # Errors
    ///
    /// As [`wait`](ConditionProxy::wait).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = multiproc::Manager::new()?;
    /// let c = m.condition()?;
    /// c.acquire()?;
    /// assert!(!c.wait_for_timeout(|| false, Duration::from_millis(10))?);
    /// c.release()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_for_timeout(&self, mut predicate: impl FnMut() -> bool, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return Ok(false);
            }
            self.wait_until(deadline.map(|_| left))?;
        }
    }

    /// Wakes the longest waiting caller, if any (Python's `notify()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if this thread does not hold the lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let c = m.condition()?;
    /// assert!(c.notify().is_err(), "the lock is not held");
    /// c.acquire()?;
    /// c.notify()?;
    /// c.release()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn notify(&self) -> Result<()> {
        self.notify_n(1)
    }

    /// Wakes up to `n` waiting callers, longest waiting first (Python's
    /// `notify(n)`).
    ///
    /// # Errors
    ///
    /// As [`notify`](ConditionProxy::notify).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let c = m.condition()?;
    /// c.acquire()?;
    /// c.notify_n(3)?;
    /// c.release()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn notify_n(&self, n: usize) -> Result<()> {
        let _: u64 = self.call(method::NOTIFY, n as u64, 0)?;
        Ok(())
    }

    /// Wakes every waiting caller (Python's `notify_all`).
    ///
    /// # Errors
    ///
    /// As [`notify`](ConditionProxy::notify).
    ///
    /// # Examples
    ///
    /// See [`ConditionProxy`].
    #[doc(alias("notifyAll"))]
    pub fn notify_all(&self) -> Result<()> {
        self.notify_n(usize::MAX)
    }
}
