//! The process-wide multiproc state: children not yet reaped, who this
//! process is, its link to its parent, the fork server and the reaper.
//!
//! It sits behind one mutex that the Fork start method holds across
//! `fork()`, so a forked child always sees it consistent. The child then
//! closes every fd the parent's state held and forgets that state without
//! running destructors (`reset_after_fork`), so no fd is closed twice.

use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::forkserver::ForkServer;
use super::reaper::Reaper;
use super::record::ChildRecord;
use super::serve::ChildInfo;
use crate::context::StartMethod;
use crate::sys::{self, AsRawFd, OwnedFd, RawFd};

#[derive(Debug)]
pub(crate) struct Registry {
    /// Children started here and not yet reaped.
    pub(crate) children: Vec<Arc<ChildRecord>>,
    /// Who this process is, when it is a multiproc child.
    pub(crate) current: Option<Arc<ChildInfo>>,
    /// The control socket to this process's parent, when it is a child.
    pub(crate) parent_link: Option<Arc<OwnedFd>>,
    /// Children started so far (Python's `_counter`), for default names.
    counter: u32,
    atexit_registered: bool,
    pub(crate) server: Option<Arc<ForkServer>>,
    pub(crate) reaper: Option<Reaper>,
    /// Other internal fds (a pool dispatcher's wake-up eventfd) that a
    /// forked child must not keep.
    internal: Vec<RawFd>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    children: Vec::new(),
    current: None,
    parent_link: None,
    counter: 0,
    atexit_registered: false,
    server: None,
    reaper: None,
    internal: Vec::new(),
});

/// Fork starts hold this exclusively across `fork()`; every window in
/// which multiproc holds an fd that the registry does not know yet (a new
/// control socket, a spawn's error pipe, the fork server's socket and the
/// fds it sends back) holds it shared. So a forked child never inherits an
/// internal fd that `reset_after_fork` cannot close: such a stray fd would
/// keep another child's socket open, or make a concurrent spawn wait on its
/// error pipe for as long as the forked child lives.
static FD_WINDOWS: RwLock<()> = RwLock::new(());

/// Enters a window in which internal fds are created before they are
/// registered. Take it once per start, never nested.
pub(crate) fn fd_window() -> RwLockReadGuard<'static, ()> {
    FD_WINDOWS.read().unwrap_or_else(|p| p.into_inner())
}

/// Waits until no such window is open and keeps new ones from opening,
/// for the duration of a `fork()`.
pub(crate) fn no_fd_windows() -> RwLockWriteGuard<'static, ()> {
    FD_WINDOWS.write().unwrap_or_else(|p| p.into_inner())
}

/// Locks the registry. A panic while it was held leaves plain data behind,
/// so a poisoned lock is taken over.
pub(crate) fn lock() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// Names and numbers the next child, Python-style: `Process-1`,
    /// `Process-1:2` for a grandchild, and so on.
    pub(crate) fn next_child_info(
        &mut self,
        name: Option<String>,
        daemon: Option<bool>,
        start_method: StartMethod,
        env: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> ChildInfo {
        self.counter += 1;
        let mut identity = self.current.as_ref().map(|c| c.identity.clone()).unwrap_or_default();
        identity.push(self.counter);
        let name = name.unwrap_or_else(|| {
            let parts: Vec<String> = identity.iter().map(u32::to_string).collect();
            format!("Process-{}", parts.join(":"))
        });
        let (parent_name, parent_daemon) = match &self.current {
            Some(c) => (c.name.clone(), c.daemon),
            None => ("MainProcess".to_owned(), false),
        };
        ChildInfo {
            name,
            daemon: daemon.unwrap_or(parent_daemon),
            identity,
            parent_pid: sys::getpid(),
            parent_name,
            start_method,
            default_method: crate::context::default_start_method(),
            env,
            memory: None,
            log_level: crate::logging::inherited_level(),
            forward_output: None,
        }
    }

    /// Records a started child; the first one also registers the exit
    /// handler that terminates daemon children and waits for the others.
    pub(crate) fn add(&mut self, child: Arc<ChildRecord>) {
        if !self.atexit_registered {
            self.atexit_registered = sys::at_exit(on_exit);
        }
        self.children.push(child);
    }

    /// Notes an internal fd that forked children must not keep.
    pub(crate) fn add_internal(&mut self, fd: RawFd) {
        self.internal.push(fd);
    }

    /// Forgets an internal fd that is about to be closed.
    pub(crate) fn remove_internal(&mut self, fd: RawFd) {
        self.internal.retain(|&f| f != fd);
    }

    /// Forgets a reaped child.
    pub(crate) fn remove(&mut self, child: &ChildRecord) {
        self.children.retain(|c| !std::ptr::eq(Arc::as_ptr(c), child));
    }

    /// In a freshly forked child: closes every fd that the parent's
    /// multiproc state held and forgets that state, without destructors.
    /// The fds are closed together ([`sys::close_raw_all`]): there are two
    /// or three per running child, and a start beside hundreds of them
    /// should not pay a syscall each.
    pub(crate) fn reset_after_fork(&mut self) {
        let mut fds = Vec::with_capacity(3 * self.children.len() + self.internal.len() + 4);
        for child in std::mem::take(&mut self.children) {
            fds.extend(child.raw_fds());
            std::mem::forget(child);
        }
        if let Some(link) = self.parent_link.take() {
            fds.push(link.as_raw_fd());
            std::mem::forget(link);
        }
        if let Some(server) = self.server.take() {
            fds.extend(server.raw_fds());
            std::mem::forget(server);
        }
        fds.append(&mut self.internal);
        if let Some(reaper) = self.reaper.take() {
            fds.push(reaper.raw_fd());
            std::mem::forget(reaper);
        }
        sys::close_raw_all(fds);
        self.counter = 0;
        // The exit handler registration is inherited with the memory.
    }
}

/// Becomes a child: records who this process is and keeps the control
/// socket to the parent. Returns the socket, for the reply.
pub(crate) fn enter_child(info: ChildInfo, link: OwnedFd) -> Arc<OwnedFd> {
    let link = Arc::new(link);
    let mut reg = lock();
    reg.current = Some(Arc::new(info));
    reg.parent_link = Some(Arc::clone(&link));
    reg.counter = 0;
    link
}

/// Python's exit handling for children: daemon children get SIGTERM (and
/// SIGKILL if they are still there a second later), then every child is
/// waited for, its reply discarded.
pub(crate) fn exit_children() {
    let children: Vec<Arc<ChildRecord>> = lock().children.clone();
    if children.is_empty() {
        return;
    }
    let daemons: Vec<&Arc<ChildRecord>> = children.iter().filter(|c| c.daemon).collect();
    for child in &daemons {
        let _ = child.signal(sys::SIGTERM);
    }
    let grace = std::time::Instant::now() + std::time::Duration::from_secs(1);
    for child in &daemons {
        if matches!(child.wait(Some(grace)), Ok(None)) {
            let _ = child.signal(sys::SIGKILL);
        }
    }
    for child in &children {
        child.detach();
        let _ = child.wait(None);
        lock().remove(child);
    }
}

extern "C" fn on_exit() {
    let _ = std::panic::catch_unwind(exit_children);
}
