//! Process identity, pidfds, waiting and CPU affinity.

use std::io;

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

/// How a process ended, as `waitid` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// `_exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// It ended, but its status could not be collected: the kernel reaped
    /// it (SIGCHLD ignored), something else waited for it, or the fork
    /// server that reaped it died before reporting.
    Lost,
}

impl ExitStatus {
    /// Python's `exitcode`: the code, or minus the signal; `None` when the
    /// status was lost.
    pub(crate) fn exitcode(self) -> Option<i32> {
        match self {
            ExitStatus::Code(c) => Some(c),
            ExitStatus::Signal(s) => Some(-s),
            ExitStatus::Lost => None,
        }
    }

    /// Decodes a raw `wait` status word (as the fork server sends it).
    pub(crate) fn from_raw(raw: i32) -> Self {
        if libc::WIFSIGNALED(raw) {
            ExitStatus::Signal(libc::WTERMSIG(raw))
        } else {
            ExitStatus::Code(libc::WEXITSTATUS(raw))
        }
    }

    /// Encodes as a raw `wait` status word; a lost status has none.
    pub(crate) fn to_raw(self) -> Option<i32> {
        match self {
            ExitStatus::Code(c) => Some((c & 0xff) << 8),
            ExitStatus::Signal(s) => Some(s & 0x7f),
            ExitStatus::Lost => None,
        }
    }
}

/// `getpid()`.
pub(crate) fn getpid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// `gettid()`: the calling thread's id, unique system-wide while it lives.
pub(crate) fn gettid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Whether `tid` is a thread of this process that has not ended.
pub(crate) fn is_own_thread(tid: u32) -> bool {
    std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

/// `getppid()`; 0 when the parent is outside our pid namespace.
fn getppid() -> i32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())
}

/// Whether the calling thread is the process's main thread. A child whose
/// parent-death signal is tied to this thread only dies with the process
/// when this is true (`PR_SET_PDEATHSIG` follows the forking *thread*).
pub(crate) fn is_main_thread() -> bool {
    rustix::thread::gettid() == rustix::process::getpid()
}

/// `pidfd_open(pid, 0)` (CLOEXEC).
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// `pidfd_send_signal(pidfd, sig)`. A process that has already exited is
/// not an error.
pub(crate) fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    let sig = Signal::from_named_raw(sig).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    match rustix::process::pidfd_send_signal(pidfd, sig) {
        Ok(()) | Err(Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `waitid(P_PIDFD, pidfd, WEXITED)`, reaping the child. With `block` false
/// it returns `None` while the child runs. A child that has ended but
/// cannot be waited for (`ECHILD`: SIGCHLD is ignored, so the kernel
/// reaped it, or someone else did) is `ExitStatus::Lost`.
pub(crate) fn pidfd_wait(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<ExitStatus>> {
    match waitid_pidfd(pidfd, block) {
        Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
            let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
            let timeout = if block { None } else { Some(std::time::Duration::ZERO) };
            let ended = super::poll(&mut fds, timeout)? > 0;
            Ok(ended.then_some(ExitStatus::Lost))
        }
        other => other,
    }
}

fn waitid_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<ExitStatus>> {
    let mut options = WaitIdOptions::EXITED;
    if !block {
        options |= WaitIdOptions::NOHANG;
    }
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd), options) {
            Ok(Some(status)) => {
                if let Some(code) = status.exit_status() {
                    return Ok(Some(ExitStatus::Code(code)));
                }
                if let Some(sig) = status.terminating_signal() {
                    return Ok(Some(ExitStatus::Signal(sig)));
                }
                if !block {
                    return Ok(None);
                }
            }
            Ok(None) => return Ok(None),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// SIGKILLs and reaps our own child `pid`, for a child we cannot track
/// (its pidfd could not be opened). The pid cannot be reused before the
/// reap, so the signal reaches the right process.
pub(crate) fn kill_and_reap(pid: i32) {
    // SAFETY: `pid` is an unreaped child of this process; `status` is a
    // valid out-pointer.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
}

/// Asks for SIGKILL when the thread that forked us exits, then checks that
/// `expected_parent` is still our parent. Returns false if it is not (the
/// parent died before the request took effect).
pub(crate) fn set_parent_death_kill(expected_parent: i32) -> bool {
    if rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).is_err() {
        return true;
    }
    getppid() == expected_parent
}

/// The number of CPUs this process may run on (its affinity mask), at
/// least 1.
pub(crate) fn cpu_count() -> usize {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => set.count().max(1) as usize,
        Err(_) => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_status_round_trips() {
        for s in [
            ExitStatus::Code(0),
            ExitStatus::Code(3),
            ExitStatus::Code(255),
            ExitStatus::Signal(9),
            ExitStatus::Signal(15),
        ] {
            assert_eq!(ExitStatus::from_raw(s.to_raw().unwrap()), s);
        }
        assert_eq!(ExitStatus::Signal(9).exitcode(), Some(-9));
        assert_eq!(ExitStatus::Code(3).exitcode(), Some(3));
        assert_eq!(ExitStatus::Lost.exitcode(), None);
        assert_eq!(ExitStatus::Lost.to_raw(), None);
    }

    #[test]
    fn cpu_count_is_positive() {
        assert!(cpu_count() >= 1);
    }
}
