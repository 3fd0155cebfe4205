//! [`QueueProxy`]: a queue that lives in a manager's server (Python's
//! `Manager().Queue()` and `JoinableQueue()`), the one that can go through
//! pool tasks.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::time::Duration;

use super::protocol::{self, Slot, decode, encode, object};
use super::proxy::{Link, Proxy};
use crate::error::{Error, ErrorKind, Result};
use crate::target::Message;

mod method {
    pub(super) const CREATE: u32 = 0;
    pub(super) const PUT: u32 = 1;
    pub(super) const GET: u32 = 2;
    pub(super) const QSIZE: u32 = 3;
    pub(super) const TASK_DONE: u32 = 4;
    pub(super) const JOIN: u32 = 5;
    pub(super) const MAXSIZE: u32 = 6;
}

/// The server's queue.
struct Queue<T> {
    items: VecDeque<T>,
    /// 0: no limit.
    maxsize: u64,
    /// Items put and not yet marked done (`JoinableQueue`).
    unfinished: u64,
}

/// The server side of every queue method; a `put` to a full queue and a
/// `get` from an empty one say they would block (and what they fail with
/// if their time runs out).
fn op<T: Message>(args: &[u8], m: u32, slot: &mut Slot) {
    let mut would_block = false;
    let reply = (|| -> Result<Vec<u8>> {
        if m == method::CREATE {
            slot.object =
                Some(Box::new(Queue::<T> { items: VecDeque::new(), maxsize: decode::<u64>(args)?, unfinished: 0 }));
            return Ok(Vec::new());
        }
        let q = object::<Queue<T>>(slot)?;
        match m {
            method::PUT => {
                if q.maxsize > 0 && q.items.len() as u64 >= q.maxsize {
                    would_block = true;
                    return Err(Error::new(ErrorKind::Full, "the queue is full (queue.Full)"));
                }
                q.items.push_back(decode::<T>(args)?);
                q.unfinished += 1;
                encode(&())
            }
            method::GET => match q.items.pop_front() {
                Some(item) => encode(&item),
                None => {
                    would_block = true;
                    Err(Error::new(ErrorKind::Empty, "the queue is empty (queue.Empty)"))
                }
            },
            method::QSIZE => encode(&(q.items.len() as u64)),
            method::MAXSIZE => encode(&q.maxsize),
            method::TASK_DONE => {
                if q.unfinished == 0 {
                    return Err(Error::new(
                        ErrorKind::InvalidState,
                        "task_done() called more times than there were items (Python's ValueError)",
                    ));
                }
                q.unfinished -= 1;
                encode(&())
            }
            method::JOIN => {
                if q.unfinished > 0 {
                    would_block = true;
                    return Err(Error::new(ErrorKind::Timeout, "the queue's items were not all done in time"));
                }
                encode(&())
            }
            other => Err(Error::new(ErrorKind::Protocol, format!("a queue has no method {other}"))),
        }
    })();
    slot.reply = reply;
    slot.would_block = would_block;
}

/// A queue owned by a [`Manager`](crate::Manager)'s server process
/// (Python's `manager.Queue()` and `manager.JoinableQueue()`). Unlike
/// [`multiproc::Queue`](crate::Queue), whose items go through shared
/// memory, it is a proxy: it goes anywhere a message goes, pool tasks
/// included, and to other machines with a remote manager. A `get` that has
/// to wait waits on the server, without holding up this process's other
/// threads.
///
/// # Examples
///
/// ```
/// use multiproc::manager::QueueProxy;
/// use multiproc::{Manager, Pool};
///
/// fn work((q, x): (QueueProxy<u64>, u64)) {
///     q.put(x * x).unwrap();
/// }
///
/// let m = Manager::new()?;
/// let q = m.queue::<u64>()?;
/// let pool = Pool::new(2)?;
/// pool.map(work, (1..=3).map(|x| (q.clone(), x)))?;
/// let mut got: Vec<u64> = (0..3).map(|_| q.get()).collect::<multiproc::Result<_>>()?;
/// got.sort();
/// assert_eq!(got, [1, 4, 9]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias("Queue", "JoinableQueue"))]
pub struct QueueProxy<T> {
    proxy: Proxy,
    _types: PhantomData<fn() -> T>,
}

super::proxy::typed_proxy!(QueueProxy<T>);

impl<T: Message> QueueProxy<T> {
    fn op() -> protocol::OpId {
        protocol::op_id(op::<T>)
    }

    pub(crate) fn create(link: std::sync::Arc<Link>, maxsize: usize) -> Result<Self> {
        let proxy = Proxy::create(link, Self::op(), protocol::encode(&(maxsize as u64))?)?;
        Ok(QueueProxy { proxy, _types: PhantomData })
    }

    /// Puts `item`, waiting while the queue is full (Python's `put`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ManagerGone`] if the server is gone (every method).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let q = m.queue::<String>()?;
    /// q.put("hi".into())?;
    /// assert_eq!(q.get()?, "hi");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn put(&self, item: T) -> Result<()> {
        self.proxy.call_waiting(Self::op(), method::PUT, &item, None)
    }

    /// Puts `item`, waiting at most `timeout` for room (Python's
    /// `put(item, timeout=...)`; zero is `put_nowait`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Full`] if there was no room in time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = multiproc::Manager::new()?;
    /// let q = m.bounded_queue::<u8>(1)?;
    /// q.put_timeout(1, Duration::ZERO)?;
    /// assert_eq!(q.put_timeout(2, Duration::ZERO).unwrap_err().kind(), multiproc::ErrorKind::Full);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("put_nowait"))]
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
        self.proxy.call_waiting(Self::op(), method::PUT, &item, Some(timeout))
    }

    /// Takes the next item, waiting for one (Python's `get`).
    ///
    /// # Errors
    ///
    /// As [`put`](QueueProxy::put).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let q = m.queue::<u8>()?;
    /// q.put(7)?;
    /// assert_eq!(q.get()?, 7);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self) -> Result<T> {
        self.proxy.call_waiting(Self::op(), method::GET, &(), None)
    }

    /// Takes the next item, waiting at most `timeout` (Python's
    /// `get(timeout=...)`; zero is `get_nowait`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Empty`] if none came in time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = multiproc::Manager::new()?;
    /// let q = m.queue::<u8>()?;
    /// assert_eq!(q.get_timeout(Duration::from_millis(10)).unwrap_err().kind(), multiproc::ErrorKind::Empty);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("get_nowait"))]
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.proxy.call_waiting(Self::op(), method::GET, &(), Some(timeout))
    }

    /// How many items wait (Python's `qsize`).
    ///
    /// # Errors
    ///
    /// As [`put`](QueueProxy::put).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let q = m.queue::<u8>()?;
    /// q.put(1)?;
    /// assert_eq!(q.qsize()?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn qsize(&self) -> Result<usize> {
        Ok(self.proxy.call::<u64>(Self::op(), method::QSIZE, &())? as usize)
    }

    /// Whether no item waits (Python's `empty`).
    ///
    /// # Errors
    ///
    /// As [`put`](QueueProxy::put).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// assert!(m.queue::<u8>()?.empty()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    /// Whether the queue is at its size limit (Python's `full`).
    ///
    /// # Errors
    ///
    /// As [`put`](QueueProxy::put).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let q = m.bounded_queue::<u8>(1)?;
    /// q.put(1)?;
    /// assert!(q.full()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn full(&self) -> Result<bool> {
        let max: u64 = self.proxy.call(Self::op(), method::MAXSIZE, &())?;
        Ok(max > 0 && self.qsize()? as u64 >= max)
    }

    /// Marks one item taken as done (Python's `JoinableQueue.task_done`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if called more times than items were
    /// put.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let q = m.queue::<u8>()?;
    /// q.put(1)?;
    /// q.get()?;
    /// q.task_done()?;
    /// assert!(q.task_done().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn task_done(&self) -> Result<()> {
        self.proxy.call(Self::op(), method::TASK_DONE, &())
    }

    /// Waits until every item put has been marked done (Python's
    /// `JoinableQueue.join`).
    ///
    /// # Errors
    ///
    /// As [`put`](QueueProxy::put).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = multiproc::Manager::new()?;
    /// let q = m.queue::<u8>()?;
    /// q.put(1)?;
    /// q.get()?;
    /// q.task_done()?;
    /// q.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join(&self) -> Result<()> {
        self.proxy.call_waiting(Self::op(), method::JOIN, &(), None)
    }
}
