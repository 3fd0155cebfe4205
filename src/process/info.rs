//! Who is who: `current_process`, `parent_process`, `active_children`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::runtime::registry;
use crate::sys::{self, OwnedFd, PollFd, PollFlags};

/// A process's name, pid and daemon flag.
///
/// # Examples
///
/// ```
/// let me = multiproc::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// assert!(!me.daemon());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcessInfo {
    name: String,
    pid: u32,
    daemon: bool,
}

impl ProcessInfo {
    /// The process's name: `MainProcess` for a program's own process, or
    /// the name its parent gave it.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiproc::current_process().name(), "MainProcess");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiproc::current_process().pid(), std::process::id());
    /// ```
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process is a daemon (see
    /// [`Process::daemon`](crate::Process::daemon)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!multiproc::current_process().daemon());
    /// ```
    pub fn daemon(&self) -> bool {
        self.daemon
    }
}

/// The process that is running this code: `MainProcess` in a program's
/// own process, or the child's name, pid and daemon flag in a child.
///
/// # Examples
///
/// ```
/// use multiproc::Process;
/// fn who(_: ()) -> String { multiproc::current_process().name().to_string() }
/// assert_eq!(multiproc::current_process().name(), "MainProcess");
/// assert_eq!(Process::new(who, ()).name("kid").start()?.join()?, "kid");
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn current_process() -> ProcessInfo {
    let reg = registry::lock();
    match &reg.current {
        Some(info) => ProcessInfo { name: info.name.clone(), pid: std::process::id(), daemon: info.daemon },
        None => ProcessInfo { name: "MainProcess".to_owned(), pid: std::process::id(), daemon: false },
    }
}

/// The parent of a multiproc child, as seen from the child.
///
/// # Examples
///
/// ```
/// use multiproc::Process;
/// fn parent(_: ()) -> (u32, String, bool) {
///     let p = multiproc::parent_process().expect("a child has a parent");
///     (p.pid(), p.name().to_string(), p.is_alive())
/// }
/// let (pid, name, alive) = Process::new(parent, ()).start()?.join()?;
/// assert_eq!(pid, std::process::id());
/// assert_eq!(name, "MainProcess");
/// assert!(alive);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ParentProcess {
    name: String,
    pid: u32,
    link: Arc<OwnedFd>,
}

impl ParentProcess {
    /// The parent's name.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Process;
    /// fn name(_: ()) -> String { multiproc::parent_process().unwrap().name().to_string() }
    /// assert_eq!(Process::new(name, ()).start()?.join()?, "MainProcess");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parent's process id.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Process;
    /// fn ppid(_: ()) -> u32 { multiproc::parent_process().unwrap().pid() }
    /// assert_eq!(Process::new(ppid, ()).start()?.join()?, std::process::id());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the parent is still running (its end of the control socket
    /// is still open).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Process;
    /// fn alive(_: ()) -> bool { multiproc::parent_process().unwrap().is_alive() }
    /// assert!(Process::new(alive, ()).start()?.join()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        !self.wait_gone(Some(Duration::ZERO))
    }

    /// Waits up to `timeout` for the parent to end (Python's
    /// `parent_process().join(timeout)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if the parent is still running at the deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Process;
    /// use std::time::Duration;
    /// fn wait_parent(_: ()) -> bool {
    ///     let p = multiproc::parent_process().unwrap();
    ///     p.join_timeout(Duration::from_millis(10)).unwrap_err().is_timeout()
    /// }
    /// assert!(Process::new(wait_parent, ()).start()?.join()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("join"))]
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        if self.wait_gone(Some(timeout)) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Timeout,
            format!("the parent process '{}' (pid {}) is still running after {timeout:?}", self.name, self.pid),
        ))
    }

    fn wait_gone(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let mut fds = [PollFd::new(&*self.link, PollFlags::RDHUP)];
            if sys::poll(&mut fds, left).is_err() {
                return false;
            }
            if fds[0].revents().intersects(PollFlags::RDHUP | PollFlags::HUP) {
                return true;
            }
            if left.is_some_and(|l| l.is_zero()) {
                return false;
            }
        }
    }
}

/// The parent of this process when it is a multiproc child; `None` in a
/// program's own (main) process.
///
/// # Examples
///
/// ```
/// assert!(multiproc::parent_process().is_none());
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    let reg = registry::lock();
    let info = reg.current.as_ref()?;
    let link = reg.parent_link.as_ref()?;
    Some(ParentProcess { name: info.parent_name.clone(), pid: info.parent_pid as u32, link: Arc::clone(link) })
}

/// The children of this process that are still running, including those
/// whose handle was dropped. Children that have ended are reaped, as in
/// Python.
///
/// # Examples
///
/// ```
/// use multiproc::Process;
/// fn forever(_: ()) { loop { std::thread::park() } }
/// let child = Process::new(forever, ()).name("looper").start()?;
/// assert!(multiproc::active_children().iter().any(|c| c.name() == "looper"));
/// child.kill()?;
/// let _ = child.join();
/// assert!(!multiproc::active_children().iter().any(|c| c.name() == "looper"));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn active_children() -> Vec<ProcessInfo> {
    let children = registry::lock().children.clone();
    let mut alive = Vec::with_capacity(children.len());
    for child in children {
        match child.poll_status() {
            Ok(None) => {
                alive.push(ProcessInfo { name: child.name.clone(), pid: child.pid as u32, daemon: child.daemon })
            }
            _ => registry::lock().remove(&child),
        }
    }
    alive
}
