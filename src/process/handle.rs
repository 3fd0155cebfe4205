//! `Child`: the handle on a started process.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::{self, ChildRecord, registry};
use crate::sys::{self, AsFd, BorrowedFd, ExitStatus};

/// A running (or finished) child process, returned by
/// [`Process::start`](crate::Process::start).
///
/// `R` is the target's return type, which [`join`](Child::join) hands
/// back. Every method takes `&self`, so a handle can be shared between
/// threads: one thread may `join` while another calls `terminate`.
///
/// Dropping the handle of a running child does not stop it: the child is
/// detached, its return value is discarded, and multiproc still reaps it
/// when it ends, so it never lingers as a zombie. At normal exit of the
/// parent, detached children are handled like the others: daemons are
/// terminated and the rest are waited for.
///
/// # Examples
///
/// ```
/// use multiproc::Process;
/// use std::time::Duration;
///
/// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
///
/// let child = Process::new(nap, 60_000).start()?;
/// assert!(child.is_alive());
/// assert!(child.join_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
/// child.terminate()?;
/// assert_eq!(child.join().unwrap_err().exitcode(), Some(-15));
/// assert!(!child.is_alive());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias("Process", "sentinel"))]
pub struct Child<R> {
    record: Arc<ChildRecord>,
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Child<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("name", &self.record.name)
            .field("pid", &self.record.pid)
            .field("daemon", &self.record.daemon)
            .finish_non_exhaustive()
    }
}

/// Python's `repr` of a started process: `<Process name='Process-1'
/// pid=123 parent=100 started daemon>`, then `stopped exitcode=0` (or
/// `exitcode=-SIGTERM`) once it has ended.
///
/// # Examples
///
/// ```
/// use multiproc::Process;
/// fn nothing(_: ()) {}
/// let child = Process::new(nothing, ()).name("worker").start()?;
/// child.join()?;
/// let shown = child.to_string();
/// assert!(shown.starts_with("<Process name='worker' pid="), "{shown}");
/// assert!(shown.ends_with(" stopped exitcode=0>"), "{shown}");
/// # Ok::<(), multiproc::Error>(())
/// ```
impl<R> fmt::Display for Child<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Process name='{}' pid={} parent={}", self.name(), self.pid(), std::process::id())?;
        match self.exitcode() {
            // Python names deaths by signal: exitcode=-SIGTERM.
            Some(code) if code < 0 => write!(f, " stopped exitcode=-{}", crate::sys::signal_name(-code))?,
            Some(code) => write!(f, " stopped exitcode={code}")?,
            None => write!(f, " started")?,
        }
        if self.daemon() {
            write!(f, " daemon")?;
        }
        write!(f, ">")
    }
}

impl<R> Child<R> {
    pub(crate) fn new(record: Arc<ChildRecord>) -> Self {
        Child { record, _result: PhantomData }
    }

    /// The exit status if the child has ended (reaping it).
    fn status(&self) -> Option<ExitStatus> {
        match self.record.poll_status() {
            Ok(Some(status)) => {
                registry::lock().remove(&self.record);
                Some(status)
            }
            Ok(None) => None,
            Err(_) => self.record.has_ended().then_some(ExitStatus::Lost),
        }
    }

    /// Whether the child is still running. A child that has ended is
    /// reaped by this call, as Python's `is_alive` does.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// fn nothing(_: ()) {}
    /// let child = Process::new(nothing, ()).start()?;
    /// child.join()?;
    /// assert!(!child.is_alive());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        self.status().is_none()
    }

    /// The exit code in Python's convention, or `None` while the child
    /// runs: 0 after the target returned, 1 after a panic, `n` after
    /// `std::process::exit(n)`, and `-signal` after death by a signal
    /// (`-15` after [`terminate`](Child::terminate), `-9` after
    /// [`kill`](Child::kill)). Also `None` for a child that has ended but
    /// whose status was lost (when this process ignores SIGCHLD, the kernel
    /// reaps children before anyone can ask): then
    /// [`is_alive`](Child::is_alive) is false.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// fn quit(code: i32) { std::process::exit(code) }
    /// let child = Process::new(quit, 3).start()?;
    /// let _ = child.join();
    /// assert_eq!(child.exitcode(), Some(3));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn exitcode(&self) -> Option<i32> {
        self.status().and_then(ExitStatus::exitcode)
    }

    /// The child's process id.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// fn my_pid(_: ()) -> u32 { std::process::id() }
    /// let child = Process::new(my_pid, ()).start()?;
    /// assert_eq!(child.join()?, child.pid());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("ident"))]
    pub fn pid(&self) -> u32 {
        self.record.pid as u32
    }

    /// The child's name (see [`Process::name`](crate::Process::name)).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// fn nothing(_: ()) {}
    /// let child = Process::new(nothing, ()).name("n").start()?;
    /// assert_eq!(child.name(), "n");
    /// child.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// Whether the child is a daemon (see [`Process::daemon`](crate::Process::daemon)).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// fn nothing(_: ()) {}
    /// let child = Process::new(nothing, ()).daemon(true).start()?;
    /// assert!(child.daemon());
    /// child.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn daemon(&self) -> bool {
        self.record.daemon
    }

    /// Sends SIGTERM (Python's `terminate`). The child's exit code becomes
    /// `-15` unless it handles the signal. A child that has already ended
    /// is left alone.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the signal cannot be sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// fn forever(_: ()) { loop { std::thread::park() } }
    /// let child = Process::new(forever, ()).start()?;
    /// child.terminate()?;
    /// let _ = child.join();
    /// assert_eq!(child.exitcode(), Some(-15));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("SIGTERM"))]
    pub fn terminate(&self) -> Result<()> {
        self.record.signal(sys::SIGTERM)
    }

    /// Sends SIGINT (Python 3.14's `interrupt`); the exit code becomes `-2`
    /// unless the child handles the signal. Children ignore every other
    /// SIGINT: a Ctrl-C at the terminal (which reaches the whole foreground
    /// process group) or a `kill -INT` does not end them, and the parent
    /// decides what happens to them; `interrupt()` sends a queued SIGINT
    /// that carries a mark, which their handler recognises. A child that
    /// wants to handle SIGINT itself (to stop cleanly) installs its own
    /// handler, which replaces multiproc's. A child that has already ended
    /// is left alone.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the signal cannot be sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// fn forever(_: ()) { loop { std::thread::park() } }
    /// let child = Process::new(forever, ()).start()?;
    /// child.interrupt()?;
    /// let _ = child.join();
    /// assert_eq!(child.exitcode(), Some(-2));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("SIGINT", "KeyboardInterrupt"))]
    pub fn interrupt(&self) -> Result<()> {
        self.record.signal(sys::SIGINT)
    }

    /// Sends SIGKILL (Python's `kill`); the exit code becomes `-9`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the signal cannot be sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// fn forever(_: ()) { loop { std::thread::park() } }
    /// let child = Process::new(forever, ()).start()?;
    /// child.kill()?;
    /// let _ = child.join();
    /// assert_eq!(child.exitcode(), Some(-9));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("SIGKILL"))]
    pub fn kill(&self) -> Result<()> {
        self.record.signal(sys::SIGKILL)
    }
}

impl<R: DeserializeOwned> Child<R> {
    /// Waits for the child to end and returns the target's return value.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Panicked`]: the target panicked; see
    ///   [`Error::panic_info`] for the message and `file:line:column`;
    /// - [`ErrorKind::Exited`]: the child exited without returning, such as
    ///   through `std::process::exit(n)`; [`Error::exitcode`] is `n`;
    /// - [`ErrorKind::Signaled`]: the child died by a signal (terminated,
    ///   killed, crashed); [`Error::exitcode`] is minus the signal;
    /// - [`ErrorKind::Deserialize`]: the return value could not be decoded;
    /// - [`ErrorKind::Serialize`] or [`ErrorKind::FrameTooLarge`]: the child
    ///   could not send its return value;
    /// - [`ErrorKind::InvalidState`]: the child was already joined.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Process};
    /// fn square(x: u64) -> u64 { x * x }
    /// let child = Process::new(square, 12).start()?;
    /// assert_eq!(child.join()?, 144);
    /// assert_eq!(child.join().unwrap_err().kind(), ErrorKind::InvalidState);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join(&self) -> Result<R> {
        self.record.wait(None)?;
        self.take()
    }

    /// Like [`join`](Child::join), but gives up after `timeout`, leaving
    /// the child running. A zero timeout never blocks.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if the child is still running at the
    /// deadline; otherwise those of [`join`](Child::join).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    /// use std::time::Duration;
    /// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
    /// let child = Process::new(nap, 60_000).start()?;
    /// let err = child.join_timeout(Duration::from_millis(50)).unwrap_err();
    /// assert!(err.is_timeout());
    /// assert!(child.is_alive());
    /// child.kill()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("join"))]
    pub fn join_timeout(&self, timeout: Duration) -> Result<R> {
        let deadline = Instant::now().checked_add(timeout);
        match self.record.wait(deadline)? {
            Some(_) => self.take(),
            None => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "process '{}' (pid {}) is still running after {timeout:?}; it was left running: join again \
                     later, or stop it with terminate() or kill()",
                    self.record.name, self.record.pid
                ),
            )),
        }
    }

    fn take(&self) -> Result<R> {
        // What it printed (forward_output) is out before join returns.
        crate::pool::output::drain_child(self.record.pid, std::time::Duration::from_secs(2));
        let outcome = self.record.take_outcome();
        registry::lock().remove(&self.record);
        codec::decode(&outcome?.0, "the return value")
    }
}

/// The child's pidfd: it becomes readable when the child has ended, so it
/// can be polled together with other fds (Python's `sentinel`).
impl<R> AsFd for Child<R> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.record.sentinel()
    }
}

impl<R> Drop for Child<R> {
    fn drop(&mut self) {
        match self.record.poll_status() {
            Ok(None) => runtime::adopt(&self.record),
            _ => registry::lock().remove(&self.record),
        }
    }
}
