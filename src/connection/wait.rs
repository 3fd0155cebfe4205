//! [`wait`]: block until one of several connections, queues or processes
//! is ready (Python's `multiprocessing.connection.wait`).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::sys::{self, AsFd, BorrowedFd, PollFd, PollFlags};

pub(crate) mod sealed {
    use super::*;

    /// What [`wait`](fn@super::wait) needs of an object; not implementable
    /// outside the crate.
    pub trait Watch {
        /// The fd that polls readable when the object is ready.
        fn wait_fd(&self) -> BorrowedFd<'_>;
        /// Ready without polling (bytes already buffered).
        fn ready_now(&self) -> bool {
            false
        }
        /// Called before polling (a queue starts signalling its fd).
        fn begin_wait(&self) -> Result<()> {
            Ok(())
        }
        /// Called after polling.
        fn end_wait(&self) {}
    }
}

/// An object [`wait`] can watch: a [`Connection`](super::Connection)
/// (ready when a message or end of file is there), a
/// [`Queue`](crate::Queue) or its kin (ready when it holds an item), a
/// [`Listener`](super::Listener) (ready when a client is waiting), or a
/// [`Child`](crate::Child) process (ready when it has ended: Python's
/// `sentinel`).
///
/// # Examples
///
/// ```
/// use multiproc::connection::{Waitable, wait};
/// let (a, b) = multiproc::Pipe(true)?;
/// let q = multiproc::Queue::<u8>::new()?;
/// let objects: [&dyn Waitable; 2] = [&b, &q];
/// a.send_bytes(b"x")?;
/// assert_eq!(wait(&objects, Some(std::time::Duration::from_secs(5)))?, [0]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub trait Waitable: sealed::Watch {}

impl<T: sealed::Watch + ?Sized> Waitable for T {}

/// Waits until at least one of `objects` is ready, or `timeout` passes
/// (`None`: no limit; zero: just a look), and returns the indices of the
/// ready ones, in order (Python's `wait`, which returns the objects).
/// An empty result means the timeout passed.
///
/// Ready means that the next receive, get or join will not block, unless
/// another thread or process takes the message first.
///
/// This is `multiprocessing.connection.wait`, for connections, queues,
/// listeners and processes; for pool results, Python's
/// `concurrent.futures.wait` is [`multiproc::wait`](crate::wait).
///
/// # Errors
///
/// [`ErrorKind::Io`](crate::ErrorKind::Io) if polling fails.
///
/// # Examples
///
/// ```
/// use multiproc::{Pipe, Process, Queue, connection::wait};
/// use std::time::Duration;
///
/// fn nothing(_: ()) {}
///
/// let (a, b) = Pipe(true)?;
/// let q = Queue::<u8>::new()?;
/// let child = Process::new(nothing, ()).start()?;
/// q.put(&1)?;
/// let ready = wait(&[&b, &q, &child], Some(Duration::from_secs(5)))?;
/// assert!(ready.contains(&1));
/// a.send_bytes(b"x")?;
/// assert!(wait(&[&b], Some(Duration::from_secs(5)))?.contains(&0));
/// child.join()?;
/// assert!(wait(&[&child], Some(Duration::ZERO))?.contains(&0));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let mut begun = 0;
    let outcome = (|| {
        for o in objects {
            o.begin_wait()?;
            begun += 1;
        }
        // Something ready already: just look at the others, so that every
        // ready object is reported (as Python does), not only the first kind.
        let timeout = if objects.iter().any(|o| o.ready_now()) { Some(Duration::ZERO) } else { timeout };
        let mut fds: Vec<PollFd<'_>> =
            objects.iter().map(|o| PollFd::from_borrowed_fd(o.wait_fd(), PollFlags::IN)).collect();
        sys::poll(&mut fds, timeout).map_err(|e| Error::io("waiting on connections, queues or processes", e))?;
        Ok((0..objects.len()).filter(|&i| !fds[i].revents().is_empty() || objects[i].ready_now()).collect())
    })();
    for o in &objects[..begun] {
        o.end_wait();
    }
    outcome
}

impl sealed::Watch for super::Connection {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
    fn ready_now(&self) -> bool {
        self.has_buffered()
    }
}

impl<R> sealed::Watch for crate::Child<R> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}
