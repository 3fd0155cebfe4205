//! Queues between processes: [`Queue`], [`SimpleQueue`] and
//! [`JoinableQueue`] (Python's `multiprocessing.Queue` and friends).
//!
//! A queue is a ring in shared memory (a memfd every user maps), guarded by
//! a robust process-shared mutex, with futex wake-ups (see `ring.rs`). A
//! `put` copies the message into the ring before it returns, so there is no
//! feeder thread and nothing to flush: a process may exit right after a
//! `put`, and its messages stay for whoever gets them (Python deadlocks when
//! a child is joined before its queue is drained). A process killed in the
//! middle of a `put` leaves its message whole or absent, and the lock free.

mod ring;
#[cfg(test)]
mod test;

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{self, FdHandle, FdIn, FdOut};
use crate::connection::wait::sealed::Watch;
use crate::error::{Error, ErrorKind, Result};
use crate::synchronize::deadline_after;
use crate::sys::{AsFd, BorrowedFd};
use ring::Ring;

thread_local! {
    /// Where `put` encodes, reused from call to call.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A first-in first-out queue between processes (Python's
/// `multiprocessing.Queue`), optionally bounded.
///
/// Any number of processes and threads may put and get. Pass a queue to a
/// child as (part of) the argument of [`Process::new`](crate::Process::new)
/// or of a pool initializer; clones in one process share one handle.
///
/// Items go through serde (postcard; plain numbers, `String`s and vectors
/// of numbers as raw bytes). `put` returns once the item is in shared
/// memory, so a process can exit right after putting, even before anyone
/// gets (no feeder thread, no join-before-drain deadlock).
///
/// # Examples
///
/// ```
/// use multiproc::{Process, Queue};
///
/// fn produce(q: Queue<String>) -> multiproc::Result<()> {
///     for i in 0..3 {
///         q.put(&format!("item {i}"))?;
///     }
///     Ok(())
/// }
///
/// let q = Queue::new()?;
/// let child = Process::new(produce, q.clone()).start()?;
/// child.join()??;
/// assert_eq!(q.get()?, "item 0");
/// assert_eq!(q.qsize(), 2);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Queue<T> {
    ring: Arc<Ring>,
    _item: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue { ring: Arc::clone(&self.ring), _item: PhantomData }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("item", &std::any::type_name::<T>())
            .field("qsize", &self.ring.count_hint())
            .field("maxsize", &self.ring.maxsize())
            .field("closed", &self.ring.is_closed())
            .finish()
    }
}

fn closed() -> Error {
    Error::new(
        ErrorKind::InvalidState,
        "the queue is closed in this process (close() was called); use a handle that is still open",
    )
}

impl<T: Serialize + DeserializeOwned + 'static> Queue<T> {
    /// An unbounded queue (Python's `Queue()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if shared memory cannot be created (out of memory,
    /// or of file descriptors).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiproc::Queue::<u32>::new()?;
    /// assert!(q.empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Result<Self> {
        Ok(Queue { ring: Arc::new(Ring::new(0)?), _item: PhantomData })
    }

    /// A queue that holds at most `maxsize` items (Python's
    /// `Queue(maxsize)`); `put` waits while it is full. 0 means unbounded.
    ///
    /// # Errors
    ///
    /// As [`new`](Queue::new).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ErrorKind;
    /// let q = multiproc::Queue::with_maxsize(1)?;
    /// q.put(&1u8)?;
    /// assert!(q.full());
    /// assert_eq!(q.try_put(&2).unwrap_err().kind(), ErrorKind::Full);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("maxsize"))]
    pub fn with_maxsize(maxsize: usize) -> Result<Self> {
        Ok(Queue { ring: Arc::new(Ring::new(maxsize as u64)?), _item: PhantomData })
    }

    fn put_until(&self, item: &T, deadline: Option<Instant>) -> Result<bool> {
        if self.ring.is_closed() {
            return Err(closed());
        }
        SCRATCH.with(|s| {
            let mut buf = s.try_borrow_mut().map_err(|_| {
                Error::new(ErrorKind::InvalidState, "Queue::put was called from inside an item's Serialize impl")
            })?;
            buf.clear();
            codec::Encoder::new(&mut *buf).push_item(item, "a queue item")?;
            codec::check_outgoing_len(buf.len() as u64, "a queue item")?;
            let ok = self.ring.put(&buf, deadline);
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
            ok
        })
    }

    /// Puts `item` at the back, waiting for room if the queue is bounded
    /// and full. The item is serialized: it is borrowed, not moved.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Serialize`] for an item that does not serialize (nothing
    /// is put); [`ErrorKind::FrameTooLarge`] above
    /// [`max_frame_size`](crate::max_frame_size); [`ErrorKind::InvalidState`]
    /// after [`close`](Queue::close).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiproc::Queue::new()?;
    /// q.put(&vec![1u8, 2, 3])?;
    /// q.put(&vec![4u8])?;
    /// assert_eq!(q.get()?, [1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn put(&self, item: &T) -> Result<()> {
        self.put_until(item, None).map(drop)
    }

    /// Puts `item`, waiting at most `timeout` for room (Python's
    /// `put(item, timeout=...)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if the queue stayed full (nothing is put);
    /// those of [`put`](Queue::put).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc::Queue::with_maxsize(1)?;
    /// q.put_timeout(&1u8, Duration::from_millis(10))?;
    /// assert!(q.put_timeout(&2u8, Duration::from_millis(10)).unwrap_err().is_timeout());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("put"))]
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        if self.put_until(item, Some(deadline_after(timeout)))? {
            return Ok(());
        }
        Err(Error::new(ErrorKind::Timeout, format!("the queue stayed full for {timeout:?}; the item was not put")))
    }

    /// Puts `item` only if there is room right now (Python's `put_nowait`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Full`] if the queue is full (or its lock is busy this
    /// instant, as in Python); those of [`put`](Queue::put).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiproc::Queue::new()?;
    /// q.try_put(&5u8)?;
    /// assert_eq!(q.try_get()?, 5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("put_nowait"))]
    pub fn try_put(&self, item: &T) -> Result<()> {
        if self.put_until(item, Some(Instant::now()))? {
            return Ok(());
        }
        Err(Error::new(ErrorKind::Full, "the queue is full; get an item first, or use put() to wait for room"))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<Option<T>> {
        if self.ring.is_closed() {
            return Err(closed());
        }
        let got = self.ring.get(deadline, |bytes| {
            let mut dec = codec::Decoder::new(bytes);
            let item = dec.next_item::<T>("a queue item")?;
            if dec.remaining() > 0 {
                return Err(Error::new(
                    ErrorKind::Deserialize,
                    format!(
                        "a queue item had {} bytes left after a `{}`; every process must use the same item type",
                        dec.remaining(),
                        std::any::type_name::<T>()
                    ),
                ));
            }
            Ok(item)
        })?;
        got.transpose()
    }

    /// Takes the item at the front, waiting for one.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Deserialize`] if the item is not a `T` (it is removed);
    /// [`ErrorKind::InvalidState`] after [`close`](Queue::close).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiproc::Queue::new()?;
    /// q.put(&1.5f64)?;
    /// assert_eq!(q.get()?, 1.5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self) -> Result<T> {
        Ok(self.get_until(None)?.expect("no deadline"))
    }

    /// Takes the item at the front, waiting at most `timeout` (Python's
    /// `get(timeout=...)`). A zero timeout only looks.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if the queue stayed empty; those of
    /// [`get`](Queue::get).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc::Queue::<u8>::new()?;
    /// assert!(q.get_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("get"))]
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_until(Some(deadline_after(timeout)))?
            .ok_or_else(|| Error::new(ErrorKind::Timeout, format!("the queue stayed empty for {timeout:?}")))
    }

    /// Takes the item at the front if there is one right now (Python's
    /// `get_nowait`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Empty`] if the queue is empty (or its lock is busy this
    /// instant, as in Python); those of [`get`](Queue::get).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ErrorKind;
    /// let q = multiproc::Queue::<u8>::new()?;
    /// assert_eq!(q.try_get().unwrap_err().kind(), ErrorKind::Empty);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("get_nowait"))]
    pub fn try_get(&self) -> Result<T> {
        self.get_until(Some(Instant::now()))?
            .ok_or_else(|| Error::new(ErrorKind::Empty, "the queue is empty; use get() to wait for an item"))
    }

    /// How many items are in the queue; approximate while others put and
    /// get (Python's `qsize`).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiproc::Queue::new()?;
    /// q.put(&1u8)?;
    /// q.put(&2u8)?;
    /// assert_eq!(q.qsize(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn qsize(&self) -> usize {
        self.ring.count_hint() as usize
    }

    /// Whether the queue is empty (approximate, as [`qsize`](Queue::qsize)).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiproc::Queue::<u8>::new()?;
    /// assert!(q.empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether a bounded queue is full (approximate); never for an
    /// unbounded one.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiproc::Queue::with_maxsize(1)?;
    /// assert!(!q.full());
    /// q.put(&0u8)?;
    /// assert!(q.full());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn full(&self) -> bool {
        let max = self.ring.maxsize();
        max > 0 && self.ring.count_hint() >= max
    }

    /// The bound given at creation; 0 for an unbounded queue.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiproc::Queue::<u8>::with_maxsize(3)?.maxsize(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn maxsize(&self) -> usize {
        self.ring.maxsize() as usize
    }

    /// Closes the queue in this process (every clone here): later puts and
    /// gets here fail with [`ErrorKind::InvalidState`]. Other processes, and
    /// the items already put, are not affected; the memory goes when the
    /// last process drops its handle. Python's `close`; there is no feeder
    /// thread to join.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ErrorKind;
    /// let q = multiproc::Queue::new()?;
    /// q.close();
    /// assert_eq!(q.put(&1u8).unwrap_err().kind(), ErrorKind::InvalidState);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&self) {
        self.ring.close();
    }
}

impl<T> Watch for Queue<T> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.ring.event().as_fd()
    }
    fn ready_now(&self) -> bool {
        self.ring.count_hint() > 0
    }
    fn begin_wait(&self) -> Result<()> {
        self.ring.watch()
    }
    fn end_wait(&self) {
        self.ring.unwatch()
    }
}

/// SimpleQueue and JoinableQueue are watched through the Queue inside.
macro_rules! watch_inner {
    ($($q:ident),*) => {$(
        impl<T> Watch for $q<T> {
            fn wait_fd(&self) -> BorrowedFd<'_> {
                self.inner.wait_fd()
            }
            fn ready_now(&self) -> bool {
                self.inner.ready_now()
            }
            fn begin_wait(&self) -> Result<()> {
                self.inner.begin_wait()
            }
            fn end_wait(&self) {
                self.inner.end_wait()
            }
        }
    )*};
}
watch_inner!(SimpleQueue, JoinableQueue);

/// A queue in a process's argument travels as its two fds (shared memory
/// and the `wait` signal).
impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (FdOut::<Self>::new(self.ring.memfd().as_fd()), FdOut::<Self>::new(self.ring.event().as_fd()))
            .serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (memfd, event): (FdIn<Self>, FdIn<Self>) = Deserialize::deserialize(deserializer)?;
        let ring = Ring::attach(memfd.into_fd(), event.into_fd()).map_err(serde::de::Error::custom)?;
        Ok(Queue { ring: Arc::new(ring), _item: PhantomData })
    }
}

impl<T> FdHandle for Queue<T> {
    const WHAT: &'static str = "a Queue";
}

/// Python's `SimpleQueue`: an unbounded [`Queue`] with only `put`, `get`,
/// `empty` and `close`.
///
/// # Examples
///
/// ```
/// let q = multiproc::SimpleQueue::new()?;
/// q.put(&"hi".to_string())?;
/// assert_eq!(q.get()?, "hi");
/// assert!(q.empty());
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct SimpleQueue<T> {
    inner: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue { inner: self.inner.clone() }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.inner).finish()
    }
}

impl<T: Serialize + DeserializeOwned + 'static> SimpleQueue<T> {
    /// A new, empty queue.
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiproc::SimpleQueue::<u8>::new()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Result<Self> {
        Ok(SimpleQueue { inner: Queue::new()? })
    }

    /// See [`Queue::put`].
    ///
    /// # Errors
    ///
    /// See [`Queue::put`].
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiproc::SimpleQueue::new()?;
    /// q.put(&3u8)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn put(&self, item: &T) -> Result<()> {
        self.inner.put(item)
    }

    /// See [`Queue::get`].
    ///
    /// # Errors
    ///
    /// See [`Queue::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiproc::SimpleQueue::new()?;
    /// q.put(&3u8)?;
    /// assert_eq!(q.get()?, 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self) -> Result<T> {
        self.inner.get()
    }

    /// See [`Queue::empty`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(multiproc::SimpleQueue::<u8>::new()?.empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn empty(&self) -> bool {
        self.inner.empty()
    }

    /// See [`Queue::close`].
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiproc::SimpleQueue::<u8>::new()?;
    /// q.close();
    /// assert!(q.get().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&self) {
        self.inner.close()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(SimpleQueue { inner: Queue::deserialize(deserializer)? })
    }
}

/// Python's `JoinableQueue`: a [`Queue`] (all its methods, through
/// `Deref`) that counts unfinished items: each `put` adds one,
/// [`task_done`](JoinableQueue::task_done) removes one, and
/// [`join`](JoinableQueue::join) waits for none to be left.
///
/// # Examples
///
/// ```
/// use multiproc::{JoinableQueue, Process};
///
/// fn worker(q: JoinableQueue<u32>) -> multiproc::Result<()> {
///     loop {
///         let n = q.get()?;
///         q.task_done()?;
///         if n == 0 {
///             return Ok(());
///         }
///     }
/// }
///
/// let q = JoinableQueue::new()?;
/// let child = Process::new(worker, q.clone()).start()?;
/// for n in [3, 2, 1, 0] {
///     q.put(&n)?;
/// }
/// q.join()?;
/// child.join()??;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct JoinableQueue<T> {
    inner: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue { inner: self.inner.clone() }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JoinableQueue").field(&self.inner).finish()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.inner
    }
}

impl<T: Serialize + DeserializeOwned + 'static> JoinableQueue<T> {
    /// An unbounded joinable queue.
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiproc::JoinableQueue::<u8>::new()?;
    /// q.join()?; // nothing to wait for
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Result<Self> {
        Ok(JoinableQueue { inner: Queue::new()? })
    }

    /// A joinable queue of at most `maxsize` items.
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiproc::JoinableQueue::<u8>::with_maxsize(2)?;
    /// assert_eq!(q.maxsize(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("maxsize"))]
    pub fn with_maxsize(maxsize: usize) -> Result<Self> {
        Ok(JoinableQueue { inner: Queue::with_maxsize(maxsize)? })
    }

    /// Marks one item got from the queue as processed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if it is called more times than items
    /// were put (Python's `ValueError`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ErrorKind;
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put(&1u8)?;
    /// q.get()?;
    /// q.task_done()?;
    /// assert_eq!(q.task_done().unwrap_err().kind(), ErrorKind::InvalidState);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn task_done(&self) -> Result<()> {
        self.inner.ring.task_done()
    }

    /// Waits until every item put has been marked done with
    /// [`task_done`](JoinableQueue::task_done).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] only if the queue's lock fails.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put(&1u8)?;
    /// q.get()?;
    /// q.task_done()?;
    /// q.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join(&self) -> Result<()> {
        self.inner.ring.join(None).map(drop)
    }

    /// Like [`join`](JoinableQueue::join), but waits at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if items are still unfinished then.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put(&1u8)?;
    /// assert!(q.join_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("join"))]
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        if self.inner.ring.join(Some(deadline_after(timeout)))? {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Timeout,
            format!("items were still unfinished after {timeout:?}; each get needs a task_done()"),
        ))
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(JoinableQueue { inner: Queue::deserialize(deserializer)? })
    }
}
