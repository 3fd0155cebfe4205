//! `fork()` for the Fork start method, and fork+`execve` for Spawn and the
//! fork server.

use std::ffi::{CString, c_char};
use std::io;

use rustix::fd::{AsRawFd, BorrowedFd};

/// The two sides of a `fork()`.
#[derive(Debug)]
pub(crate) enum Forked {
    /// In the parent, with the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// `fork()`.
///
/// The child is a copy of this process with only the calling thread. Like
/// Python's fork start method, the child goes on to run ordinary Rust code,
/// which is only sound if no other thread held a lock the child needs at the
/// moment of the fork (glibc resets its malloc and stdio locks; multiproc
/// holds the Rust stdout/stderr locks and its own registry across the call).
/// That is the documented hazard of `StartMethod::Fork`.
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: `fork` has no memory-safety preconditions of its own; the
    // hazards of running code in the child of a multithreaded parent are
    // those described above and in `StartMethod::Fork`'s documentation.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Everything `execve` needs, prepared before the fork so that the child
/// allocates nothing.
#[derive(Debug)]
pub(crate) struct ExecSpec {
    path: CString,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
}

// SAFETY: the raw pointers point into the `CString`s owned by the same
// struct, which are never mutated; sharing or sending them is as safe as
// sharing the strings.
unsafe impl Send for ExecSpec {}
// SAFETY: as above; nothing is mutated through `&ExecSpec`.
unsafe impl Sync for ExecSpec {}

impl ExecSpec {
    /// A spec that runs `path` with `argv` and exactly the environment `envp`
    /// (`KEY=value` strings).
    pub(crate) fn new(path: CString, argv: Vec<CString>, envp: Vec<CString>) -> Self {
        let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|s| s.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const c_char> = envp.iter().map(|s| s.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        ExecSpec { path, _argv: argv, _envp: envp, argv_ptrs, envp_ptrs }
    }
}

/// The fd number a re-exec'd child finds its control socket on.
pub(crate) const CHILD_FD: i32 = 3;
const ERR_FD: i32 = 4;

/// Forks and execs `spec` with `child_fd` as fd 3 and no other fd but 0-2.
///
/// In the child, before `execve`: SIGINT is ignored, SIGCHLD is back to its
/// default, the signal mask is cleared, and with `parent_death` the child asks for SIGKILL when this
/// thread exits (and exits at once if the parent is already gone). Returns
/// the child's pid once the `execve` has succeeded; a failed `execve` is
/// reported here, with the child already reaped.
pub(crate) fn spawn_exec(spec: &ExecSpec, child_fd: BorrowedFd<'_>, parent_death: bool) -> io::Result<i32> {
    let (err_r, err_w) = super::pipe()?;
    let child_raw = child_fd.as_raw_fd();
    let err_raw = err_w.as_raw_fd();
    let parent_pid = super::getpid();
    // SAFETY: see `fork`; here the child calls only async-signal-safe
    // functions (`in_child_before_exec`) and then `execve` or `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        in_child_before_exec(spec, child_raw, err_raw, parent_pid, parent_death);
    }
    drop(err_w);
    // End of file on the error pipe means the execve succeeded (the pipe is
    // CLOEXEC); 4 bytes are the errno of a failed one.
    let mut buf = Vec::with_capacity(4);
    while buf.len() < 4 {
        let want = 4 - buf.len();
        match super::read(rustix::fd::AsFd::as_fd(&err_r), &mut buf, want) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                super::kill_and_reap(pid);
                return Err(e);
            }
        }
    }
    if buf.is_empty() {
        return Ok(pid);
    }
    let errno = buf.get(..4).and_then(|b| b.try_into().ok()).map_or(libc::EIO, i32::from_ne_bytes);
    // The child has written its errno and is exiting: reap it.
    super::kill_and_reap(pid);
    Err(io::Error::from_raw_os_error(errno))
}

/// The child side of `spawn_exec`. Async-signal-safe: only raw syscalls on
/// memory prepared before the fork, no allocation, no locks.
fn in_child_before_exec(spec: &ExecSpec, child_raw: i32, err_raw: i32, parent_pid: i32, parent_death: bool) -> ! {
    // SAFETY: every call below is an async-signal-safe libc function (see
    // signal-safety(7)) on fds and memory that this process owns; `spec`'s
    // pointers stay valid because the parent's copy of `spec` outlives the
    // fork (this is a separate copy of the address space).
    unsafe {
        let fail = |err_fd: i32| -> ! {
            let errno = *libc::__errno_location();
            let bytes = errno.to_ne_bytes();
            libc::write(err_fd, bytes.as_ptr().cast(), 4);
            libc::_exit(127)
        };
        if parent_death {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) == -1 {
                fail(err_raw);
            }
            if libc::getppid() != parent_pid {
                libc::_exit(127);
            }
        }
        let mut ign: libc::sigaction = std::mem::zeroed();
        ign.sa_sigaction = libc::SIG_IGN;
        libc::sigaction(libc::SIGINT, &ign, std::ptr::null_mut());
        // A parent that ignores SIGCHLD would pass that on through execve,
        // and the child could then not wait for its own children.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGCHLD, &dfl, std::ptr::null_mut());
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // Move both fds out of the way first, so that placing one cannot
        // clobber the other, then into their fixed numbers.
        let ctl = libc::fcntl(child_raw, libc::F_DUPFD_CLOEXEC, 10);
        let err = libc::fcntl(err_raw, libc::F_DUPFD_CLOEXEC, 10);
        if ctl == -1 || err == -1 {
            fail(err_raw);
        }
        if libc::dup3(err, ERR_FD, libc::O_CLOEXEC) == -1 {
            fail(err);
        }
        if libc::dup2(ctl, CHILD_FD) == -1 {
            fail(ERR_FD);
        }
        libc::syscall(libc::SYS_close_range, (ERR_FD + 1) as libc::c_uint, libc::c_uint::MAX, 0 as libc::c_uint);
        libc::execve(spec.path.as_ptr(), spec.argv_ptrs.as_ptr(), spec.envp_ptrs.as_ptr());
        fail(ERR_FD)
    }
}

/// `fork()` a child that `_exit(0)`s at once, and `waitpid` it: the floor
/// under every start method, for the benchmark harness.
pub(crate) fn raw_fork_and_wait() -> io::Result<()> {
    // SAFETY: the child calls only `_exit`, which is async-signal-safe.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        // SAFETY: `_exit` has no preconditions.
        0 => unsafe { libc::_exit(0) },
        pid => {
            let mut status = 0;
            // SAFETY: `pid` is our own child; `status` is a valid out-pointer.
            if unsafe { libc::waitpid(pid, &mut status, 0) } == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }
    }
}
