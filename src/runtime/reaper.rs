//! The reaper: a thread that waits for children whose handle was dropped
//! while they ran, so that none of them stays a zombie.
//!
//! It exists only while there are such children, and exits when the last
//! one has been reaped.

use std::sync::Arc;

use super::record::ChildRecord;
use super::registry;
use crate::sys::{self, AsFd, AsRawFd, OwnedFd, PollFd, PollFlags, RawFd};

/// The registry's handle on the running reaper thread.
#[derive(Debug)]
pub(crate) struct Reaper {
    wake: Arc<OwnedFd>,
}

impl Reaper {
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    fn wake(&self) {
        let _ = sys::write_all(self.wake.as_fd(), &1u64.to_ne_bytes());
    }
}

/// Hands a still-running child to the reaper. The child stays in the
/// registry (so `active_children` and the exit handler still see it) until
/// the reaper has waited for it.
pub(crate) fn adopt(child: &ChildRecord) {
    child.detach();
    let mut reg = registry::lock();
    if let Some(reaper) = &reg.reaper {
        reaper.wake();
        return;
    }
    let Ok(wake) = sys::eventfd() else { return };
    let wake = Arc::new(wake);
    let thread_wake = Arc::clone(&wake);
    let spawned = std::thread::Builder::new().name("multiproc-reaper".into()).spawn(move || run(&thread_wake));
    // Without a thread the child is reaped later, by active_children() or
    // at exit.
    if spawned.is_ok() {
        reg.reaper = Some(Reaper { wake });
    }
}

fn run(wake: &OwnedFd) {
    loop {
        let detached: Vec<Arc<ChildRecord>> = {
            let mut reg = registry::lock();
            let detached: Vec<_> = reg.children.iter().filter(|c| c.is_detached()).cloned().collect();
            if detached.is_empty() {
                reg.reaper = None;
                return;
            }
            detached
        };
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(detached.len() + 1);
        fds.push(PollFd::new(wake, PollFlags::IN));
        let child_fds: Vec<_> = detached.iter().map(|c| c.reaper_fd()).collect();
        fds.extend(child_fds.iter().map(|fd| PollFd::new(fd, PollFlags::IN)));
        if sys::poll(&mut fds, None).is_err() {
            return;
        }
        let mut counter = Vec::with_capacity(8);
        let _ = sys::read(wake.as_fd(), &mut counter, 8);
        for child in &detached {
            if let Ok(Some(_)) = child.poll_status() {
                registry::lock().remove(child);
            }
        }
    }
}
