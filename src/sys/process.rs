//! Processes: `fork`, `fork` + `execve`, detaching a helper, pidfds,
//! waiting, exit status, the parent-death signal, identity (pid, tid,
//! parent), CPU affinity, leaving (`_exit`, `atexit`, flushing C stdio),
//! and the environment a child installs.

use std::ffi::{CString, c_char};
use std::io;
use std::os::unix::ffi::OsStrExt;

use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

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
/// In the child, before `execve`: SIGINT is held (blocked until the child
/// installs its handler), SIGCHLD is back to its default, no other signal
/// is blocked, and with `parent_death` the child asks for SIGKILL when this
/// thread exits (and exits at once if the parent is already gone). Returns
/// the child's pid once the `execve` has succeeded; a failed `execve` is
/// reported here, with the child already reaped.
#[doc(alias("fork", "execve"))]
pub(crate) fn spawn_exec(spec: &ExecSpec, child_fd: BorrowedFd<'_>, parent_death: bool) -> io::Result<i32> {
    let (err_r, err_w) = super::pipe()?;
    let child_raw = child_fd.as_raw_fd();
    let err_raw = err_w.as_raw_fd();
    let parent_pid = getpid();
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
                kill_and_reap(pid);
                return Err(e);
            }
        }
    }
    if buf.is_empty() {
        return Ok(pid);
    }
    let errno = buf.get(..4).and_then(|b| b.try_into().ok()).map_or(libc::EIO, i32::from_ne_bytes);
    // The child has written its errno and is exiting: reap it.
    kill_and_reap(pid);
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
        // A parent that ignores SIGCHLD would pass that on through execve,
        // and the child could then not wait for its own children. SIGINT
        // is held (blocked, not ignored, so that an interrupt sent now is
        // kept) until the child's handler is in place.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGCHLD, &dfl, std::ptr::null_mut());
        libc::sigaction(libc::SIGINT, &dfl, std::ptr::null_mut());
        let mut only_sigint: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut only_sigint);
        libc::sigaddset(&mut only_sigint, libc::SIGINT);
        libc::sigprocmask(libc::SIG_SETMASK, &only_sigint, std::ptr::null_mut());
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

/// Turns this freshly exec'd, single-threaded process into a detached
/// helper: it forks, and the original process exits (its parent reaps it
/// at once), so the helper is adopted by init (or the nearest subreaper),
/// which reaps it when it ends; no process that uses multiproc ever has it
/// as a child, so it can never be left a zombie there. Then, in the
/// helper: a new session (signals sent to the user's process group or
/// terminal do not reach it), SIGINT, SIGTERM, SIGHUP and SIGPIPE ignored,
/// stdin and stdout on /dev/null (so that it holds no pipe a caller reads
/// to its end), stderr kept for its warnings, and `/` as its directory.
#[doc(alias("setsid", "daemon"))]
pub(crate) fn detach() -> io::Result<()> {
    match fork()? {
        Forked::Parent(_) => exit_now(0),
        Forked::Child => {}
    }
    let _ = rustix::process::setsid();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
        super::signal::ignore(sig);
    }
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    rustix::stdio::dup2_stdin(&null)?;
    rustix::stdio::dup2_stdout(&null)?;
    let _ = rustix::process::chdir("/");
    Ok(())
}

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

/// This process's id as the last call here saw it; 0 until then, and in a
/// fork child from the fork on.
static OWN_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn forget_own_pid() {
    OWN_PID.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// This process's id, with a syscall only for the first call in a process
/// (glibc no longer caches `getpid`): for checks made on every look of a
/// hot loop (whether a pool is this process's own). A fork child forgets
/// its parent's through a `pthread_atfork` handler; every fork here goes
/// through glibc's `fork`, and a spawned child starts afresh.
#[doc(alias("getpid"))]
pub(crate) fn own_pid() -> u32 {
    use std::sync::atomic::Ordering;
    let pid = OWN_PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    static HANDLER: std::sync::Once = std::sync::Once::new();
    HANDLER.call_once(|| {
        // SAFETY: registers a child handler that only stores to an atomic
        // (async-signal-safe, as a handler run in a fork child must be);
        // the function lives as long as the program.
        unsafe { libc::pthread_atfork(None, None, Some(forget_own_pid)) };
    });
    let pid = std::process::id();
    OWN_PID.store(pid, Ordering::Relaxed);
    pid
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
#[doc(alias("pidfd_send_signal"))]
pub(crate) fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    if sig == libc::SIGINT {
        // The one SIGINT a child does not ignore (see `interrupt_only_when_sent`).
        return super::signal::pidfd_interrupt(pidfd);
    }
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
#[doc(alias("waitid", "P_PIDFD"))]
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
#[doc(alias("kill", "waitpid"))]
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
#[doc(alias("prctl", "PR_SET_PDEATHSIG"))]
pub(crate) fn set_parent_death_kill(expected_parent: i32) -> bool {
    if rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).is_err() {
        return true;
    }
    getppid() == expected_parent
}

/// The number of CPUs this process may run on (its affinity mask), at
/// least 1.
#[doc(alias("sched_getaffinity"))]
pub(crate) fn cpu_count() -> usize {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => set.count().max(1) as usize,
        Err(_) => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// The resident set of process `pid`, in bytes, from `/proc/<pid>/statm`;
/// `None` if it cannot be read (the process is gone).
#[doc(alias("statm", "rss"))]
pub(crate) fn rss_of(pid: i32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

/// The CPU time this thread has used (`CLOCK_THREAD_CPUTIME_ID`).
#[doc(alias("clock_gettime", "CLOCK_THREAD_CPUTIME_ID"))]
pub(crate) fn thread_cpu_time() -> std::time::Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    std::time::Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// Resets this process's peak resident memory (`VmHWM`) to its current
/// resident memory (`echo 5 > /proc/self/clear_refs`, Linux 4.0+).
#[doc(alias("clear_refs", "VmHWM"))]
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak resident memory since it started or since
/// [`reset_peak_rss`], in bytes (`VmHWM` in `/proc/self/status`).
#[doc(alias("VmHWM", "ru_maxrss"))]
pub(crate) fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Whether process `pid` has ended: it is gone (`kill(pid, 0)` finds
/// nobody) or a zombie that its parent has not reaped yet. A process that
/// cannot be looked at (another user's) counts as alive.
#[doc(alias("kill"))]
pub(crate) fn has_exited(pid: i32) -> bool {
    let Some(p) = Pid::from_raw(pid) else { return false };
    match rustix::process::test_kill_process(p) {
        Err(Errno::SRCH) => true,
        _ => matches!(state_letter(pid), Some('Z' | 'X' | 'x')),
    }
}

/// The state letter of process `pid` in `/proc/<pid>/stat`, if it can be
/// read.
fn state_letter(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rfind(')').and_then(|i| stat[i + 1..].trim_start().chars().next())
}

/// Whether process `pid` is stopped (`SIGSTOP`, or a tracer) or gone, from
/// the state letter in `/proc/<pid>/stat`.
#[doc(alias("/proc/pid/stat"))]
pub(crate) fn is_stopped_or_gone(pid: i32) -> bool {
    matches!(state_letter(pid), None | Some('T' | 't' | 'Z' | 'X' | 'x'))
}

/// A pidfd for this process's parent, if the parent is still `expected`.
///
/// The pidfd is opened first and the parent checked after: a live
/// process's pid cannot be reused, so if `expected` is still the parent
/// after the open, the pidfd refers to it. `None` means the parent has
/// already died.
#[doc(alias("getppid", "pidfd_open"))]
pub(crate) fn parent_pidfd(expected: i32) -> io::Result<Option<OwnedFd>> {
    let parent = || rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    if parent() != expected {
        return Ok(None);
    }
    let fd = pidfd_open(expected)?;
    Ok((parent() == expected).then_some(fd))
}

/// `fflush(NULL)`: writes out every C stdio buffer, so that a forked child
/// does not print the parent's pending output a second time, and a child
/// that leaves through `_exit` loses nothing.
#[doc(alias("fflush"))]
pub(crate) fn flush_c_stdio() {
    // SAFETY: `fflush(NULL)` flushes all open C streams; it takes glibc's
    // stream locks, which glibc keeps consistent across fork.
    unsafe { libc::fflush(std::ptr::null_mut()) };
}

/// `_exit(code)`: ends the process now, without running `atexit` handlers
/// or destructors. Callers flush what must be flushed first.
#[doc(alias("_exit"))]
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions.
    unsafe { libc::_exit(code) }
}

/// `atexit(f)`: runs `f` when the process exits normally (returning from
/// `main` or `std::process::exit`).
#[doc(alias("atexit"))]
pub(crate) fn at_exit(f: extern "C" fn()) -> bool {
    // SAFETY: `f` is a plain `extern "C" fn()` that lives for the whole
    // program.
    unsafe { libc::atexit(f) == 0 }
}

/// Removes `key` from the environment.
///
/// Only called from the bootstrap constructor, before `main`: no other
/// thread exists yet to read the environment concurrently.
#[doc(alias("unsetenv"))]
pub(crate) fn remove_var(key: &str) {
    // SAFETY: single-threaded at this point (see above), which is the
    // precondition of `std::env::remove_var`.
    unsafe { std::env::remove_var(key) }
}

/// A complete environment, built ahead of time and installed later by
/// swapping the `environ` pointer.
///
/// A forked child of a multithreaded parent must not touch std's
/// environment lock (another thread may have held it at the moment of the
/// fork), so the parent builds the new environment before forking and the
/// child only installs it.
#[derive(Debug)]
pub(crate) struct Environ {
    _entries: Vec<CString>,
    ptrs: Vec<*mut c_char>,
}

// SAFETY: the pointers point into `_entries`, owned by the same value and
// never mutated; moving the value between threads moves the strings too.
unsafe impl Send for Environ {}

impl Environ {
    /// The current environment plus `additions` (which override), or
    /// `None` when there is nothing to add.
    pub(crate) fn with_additions(additions: &[(Vec<u8>, Vec<u8>)]) -> Option<Environ> {
        if additions.is_empty() {
            return None;
        }
        let mut entries: Vec<CString> = Vec::new();
        for (key, value) in std::env::vars_os() {
            if additions.iter().any(|(k, _)| k.as_slice() == key.as_bytes()) {
                continue;
            }
            let mut entry = key.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            entries.extend(CString::new(entry).ok());
        }
        for (key, value) in additions {
            let mut entry = key.clone();
            entry.push(b'=');
            entry.extend_from_slice(value);
            entries.extend(CString::new(entry).ok());
        }
        let mut ptrs: Vec<*mut c_char> = entries.iter().map(|e| e.as_ptr().cast_mut()).collect();
        ptrs.push(std::ptr::null_mut());
        Some(Environ { _entries: entries, ptrs })
    }

    /// Makes this the process's environment, for the rest of its life.
    /// Called in a freshly started child, which is single-threaded.
    #[doc(alias("environ"))]
    pub(crate) fn install(self) {
        let this = Box::leak(Box::new(self));
        // SAFETY: the process is single-threaded here (a fresh child), so
        // nothing reads `environ` concurrently; the array is NUL-terminated
        // and every entry is a NUL-terminated `KEY=value` string; both are
        // leaked, so they live for the rest of the process. The old array is
        // left in place (it may be inherited memory).
        unsafe { environ = this.ptrs.as_mut_ptr() };
    }
}

unsafe extern "C" {
    static mut environ: *mut *mut c_char;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pid_is_the_childs_own_after_a_fork() {
        assert_eq!(own_pid(), std::process::id());
        // The parent's is cached now; the child must not see it.
        match fork().unwrap() {
            Forked::Child => exit_now(if own_pid() == std::process::id() { 0 } else { 1 }),
            Forked::Parent(pid) => {
                let pidfd = pidfd_open(pid).unwrap();
                assert_eq!(pidfd_wait(rustix::fd::AsFd::as_fd(&pidfd), true).unwrap(), Some(ExitStatus::Code(0)));
            }
        }
        assert_eq!(own_pid(), std::process::id());
    }

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
