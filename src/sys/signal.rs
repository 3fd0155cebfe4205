//! Signal dispositions, and the parent-death watch on a child's control
//! socket.

use std::sync::atomic::{AtomicI32, Ordering};

use rustix::fd::{AsRawFd, BorrowedFd, RawFd};

pub(crate) const SIGKILL: i32 = libc::SIGKILL;
pub(crate) const SIGTERM: i32 = libc::SIGTERM;
pub(crate) const SIGINT: i32 = libc::SIGINT;
pub(crate) const SIGABRT: i32 = libc::SIGABRT;
pub(crate) const SIGSTOP: i32 = libc::SIGSTOP;
pub(crate) const SIGCONT: i32 = libc::SIGCONT;

/// The exit code of a child that saw its parent vanish. Nobody reaps it
/// but init, so the value only shows in tools like `strace`.
const PARENT_GONE_EXIT: i32 = 255;

/// `sigaction(sig, handler)` with `flags` and an empty mask.
fn set_disposition(sig: i32, handler: libc::sighandler_t, flags: i32) {
    // SAFETY: `action` is a fully initialised sigaction (zeroed, then the
    // fields we need); `handler` is SIG_IGN, SIG_DFL or an `extern "C"`
    // function that is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = flags;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, std::ptr::null_mut());
    }
}

/// `sigaction(sig, SIG_IGN)`.
#[doc(alias("sigaction", "SIG_IGN"))]
pub(super) fn ignore(sig: i32) {
    set_disposition(sig, libc::SIG_IGN, 0);
}

/// Holds SIGINT (blocks it in this thread's mask): the fork server, which
/// must outlive a Ctrl-C at the terminal, and whose children inherit the
/// mask until their handler is in place (an interrupt sent before then is
/// kept, not lost). The signal stays pending in the server, harmlessly.
#[doc(alias("SIGINT", "pthread_sigmask"))]
pub(crate) fn hold_sigint() {
    let _ = sigint_mask(libc::SIG_BLOCK);
}

/// SIGINT held in this thread across a fork, for the parent's side: the
/// child starts with it held, so that a Ctrl-C (or `kill -INT`) landing
/// before the child's own handler is in place is kept, not fatal
/// ([`interrupt_only_when_sent`] lets it through). Dropping the guard puts
/// back the mask it found; the child forgets its copy.
#[must_use]
pub(crate) struct SigintHeld(libc::sigset_t);

/// Holds SIGINT in this thread until the returned guard drops.
#[doc(alias("SIGINT", "pthread_sigmask"))]
pub(crate) fn hold_sigint_for_fork() -> SigintHeld {
    SigintHeld(sigint_mask(libc::SIG_BLOCK))
}

impl Drop for SigintHeld {
    fn drop(&mut self) {
        // SAFETY: `self.0` is the mask `pthread_sigmask` returned.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut());
        }
    }
}

/// Changes SIGINT's place in this thread's mask (`how`: block or
/// unblock) and returns the mask it found.
fn sigint_mask(how: i32) -> libc::sigset_t {
    // SAFETY: `set` is initialised by `sigemptyset` before use, and `old`
    // by `pthread_sigmask` before it is read.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(how, &set, &mut old);
        old
    }
}

/// A child's SIGINT: the one `Child::interrupt()` sends (a queued SIGINT
/// carrying [`INTERRUPT`]) ends it as SIGINT's default action does (exit
/// code −2, as Python 3.14's `Process.interrupt()`); any other (Ctrl-C at
/// the terminal reaches the whole foreground process group, a `kill -INT`)
/// is ignored, as before: the parent decides what happens to its children.
/// A child that installs its own SIGINT handler replaces this one.
#[doc(alias("SIGINT", "SA_SIGINFO", "SI_QUEUE"))]
pub(crate) fn interrupt_only_when_sent() {
    set_disposition(libc::SIGINT, on_sigint as *const () as libc::sighandler_t, libc::SA_SIGINFO);
    // An interrupt held since the start (`hold_sigint`, or the spawn
    // child's mask) arrives now.
    let _ = sigint_mask(libc::SIG_UNBLOCK);
}

/// The value an interrupt carries, to tell it from any other SIGINT.
const INTERRUPT: usize = 0x6d70_696e;

/// The kernel's `siginfo_t` for a queued signal (`SI_QUEUE`): its first
/// three fields, then the sender and the value, within the kernel's 128
/// bytes.
#[repr(C)]
struct QueuedSignal {
    signo: i32,
    errno: i32,
    code: i32,
    body: QueuedBody,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct QueuedFields {
    pid: i32,
    uid: u32,
    value: usize,
}

#[repr(C)]
union QueuedBody {
    queued: QueuedFields,
    _size: [usize; (128 - 12usize.div_ceil(WORD) * WORD) / WORD],
}

const WORD: usize = std::mem::size_of::<usize>();
const _: () = assert!(std::mem::size_of::<QueuedSignal>() == 128);

/// The handler behind [`interrupt_only_when_sent`]: async-signal-safe (it
/// reads the signal's origin, then `sigaction` and `raise`).
extern "C" fn on_sigint(sig: i32, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    let info = info.cast::<QueuedSignal>();
    // SAFETY: with SA_SIGINFO the kernel passes a valid 128-byte siginfo,
    // which `QueuedSignal` lays out; the value is read only for SI_QUEUE.
    let interrupt = unsafe { (*info).code == libc::SI_QUEUE && (*info).body.queued.value == INTERRUPT };
    if !interrupt {
        return;
    }
    set_disposition(sig, libc::SIG_DFL, 0);
    // SAFETY: `raise` is async-signal-safe; SIGINT is blocked while this
    // handler runs, so it is delivered, with the default action, when the
    // handler returns.
    unsafe {
        libc::raise(sig);
    }
}

/// `pidfd_send_signal(pidfd, SIGINT, info)` with a queued SIGINT carrying
/// [`INTERRUPT`]: `Child::interrupt()`.
#[doc(alias("pidfd_send_signal", "sigqueue"))]
pub(crate) fn pidfd_interrupt(pidfd: BorrowedFd<'_>) -> std::io::Result<()> {
    // SAFETY: all-zero is a valid QueuedSignal (integers and a union of
    // integers).
    let mut info: QueuedSignal = unsafe { std::mem::zeroed() };
    info.signo = libc::SIGINT;
    info.code = libc::SI_QUEUE;
    info.body.queued = QueuedFields {
        pid: rustix::process::getpid().as_raw_nonzero().get(),
        uid: rustix::process::getuid().as_raw(),
        value: INTERRUPT,
    };
    // SAFETY: the pidfd is open, `info` is a 128-byte siginfo that lives
    // across the call, flags are 0.
    let rc =
        unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), libc::SIGINT, &raw const info, 0u32) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) { Ok(()) } else { Err(e) }
}

/// Where [`note_out_of_memory`]'s handler writes: a word in a mapping that
/// lives as long as the handler is installed.
static OOM_WORD: super::mm::WordSlot = super::mm::WordSlot::new();

/// Notes, in `word`, an abort that follows a refused allocation: when the
/// process gets SIGABRT while `errno` is `ENOMEM` (Rust's allocation-failure
/// handler aborts right after the allocator failed), the handler stores the
/// process's peak resident memory in bytes there (at least 1), then the
/// abort goes on. `word` must outlive the handler: call
/// [`forget_out_of_memory`] before it goes.
#[doc(alias("SIGABRT", "ENOMEM", "getrusage"))]
pub(crate) fn note_out_of_memory(word: &std::sync::atomic::AtomicU64) {
    OOM_WORD.set(word);
    set_disposition(libc::SIGABRT, on_abort as *const () as libc::sighandler_t, 0);
}

/// Stops [`note_out_of_memory`]'s notes.
pub(crate) fn forget_out_of_memory() {
    set_disposition(libc::SIGABRT, libc::SIG_DFL, 0);
    OOM_WORD.clear();
}

/// The handler behind [`note_out_of_memory`]: async-signal-safe (`errno`,
/// `getrusage`, an atomic store). When it returns, `abort` ends the
/// process with SIGABRT as before.
extern "C" fn on_abort(_sig: i32) {
    // SAFETY: `__errno_location` returns this thread's errno.
    let errno = unsafe { *libc::__errno_location() };
    if errno != libc::ENOMEM {
        return;
    }
    // SAFETY: `usage` is written by `getrusage` before it is read.
    let peak = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        (usage.ru_maxrss.max(0) as u64) * 1024
    };
    if OOM_WORD.is_set() {
        OOM_WORD.store(peak.max(1));
    }
    let frame = OOM_REPLY.load(Ordering::Acquire);
    if !frame.is_null() {
        let len = OOM_REPLY_LEN.load(Ordering::Acquire);
        // SAFETY: `frame` points to `len` bytes leaked by
        // `reply_on_out_of_memory` (never freed, `len` ≥ 8); this handler
        // is their only writer; `write` and `_exit` are
        // async-signal-safe.
        unsafe {
            let bytes = std::slice::from_raw_parts_mut(frame, len);
            bytes[len - 8..].copy_from_slice(&peak.max(1).to_le_bytes());
            let fd = OOM_REPLY_FD.load(Ordering::Acquire);
            let mut off = 0;
            while off < len {
                let n = libc::write(fd, bytes[off..].as_ptr().cast(), len - off);
                if n <= 0 {
                    break;
                }
                off += n as usize;
            }
            libc::_exit(1);
        }
    }
}

static OOM_REPLY: std::sync::atomic::AtomicPtr<u8> = std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());
static OOM_REPLY_LEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static OOM_REPLY_FD: AtomicI32 = AtomicI32::new(-1);

/// For the rest of this (child) process: an abort that follows a refused
/// allocation writes `frame` on `fd`, its last 8 bytes replaced by the
/// process's peak resident memory in bytes (little-endian), and exits with
/// code 1 instead of dying by SIGABRT. `frame` is kept for the handler.
#[doc(alias("SIGABRT", "ENOMEM"))]
pub(crate) fn reply_on_out_of_memory(fd: RawFd, frame: Vec<u8>) {
    assert!(frame.len() >= 8, "the reply ends with the peak's 8 bytes");
    let frame: &'static mut [u8] = Box::leak(frame.into_boxed_slice());
    OOM_REPLY_LEN.store(frame.len(), Ordering::Release);
    OOM_REPLY_FD.store(fd, Ordering::Release);
    OOM_REPLY.store(frame.as_mut_ptr(), Ordering::Release);
    set_disposition(libc::SIGABRT, on_abort as *const () as libc::sighandler_t, 0);
}

/// `setrlimit(RLIMIT_DATA)` to this process's data size now plus `bytes`
/// (soft and hard): from here, allocations past that fail. The cap counts
/// from the current size, because a forked child starts with its parent's
/// heap. Returns the limit set, in bytes.
#[doc(alias("setrlimit", "RLIMIT_DATA"))]
pub(crate) fn limit_data_growth(bytes: u64) -> std::io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let data_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmData:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let limit = (data_kib * 1024).saturating_add(bytes);
    let lim = libc::rlimit { rlim_cur: limit as libc::rlim_t, rlim_max: limit as libc::rlim_t };
    // SAFETY: `lim` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(limit)
}

/// A re-exec'd child serves before Rust's runtime would ignore SIGPIPE, so
/// it does it itself: writes to a closed pipe return `EPIPE` as in any Rust
/// program.
#[doc(alias("SIGPIPE"))]
pub(crate) fn ignore_sigpipe() {
    ignore(libc::SIGPIPE);
}

/// Unblocks every signal for this thread (a forked child inherits the
/// forking thread's mask; `terminate()` must reach it).
#[doc(alias("pthread_sigmask"))]
pub(crate) fn reset_signal_mask() {
    // SAFETY: `set` is initialised by `sigemptyset` before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Blocks SIGTERM in the calling thread, for a test that a forked child
/// does not inherit the mask.
#[cfg(test)]
pub(crate) fn block_sigterm_in_this_thread() {
    // SAFETY: `set` is initialised by `sigemptyset` before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

static WATCHED_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigio(_sig: libc::c_int) {
    // Async-signal-safe: an atomic load, `poll` and `_exit`, with errno
    // saved and restored around them.
    let fd = WATCHED_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    // SAFETY: `__errno_location` returns this thread's errno slot; `poll`
    // gets a valid one-element array; `_exit` ends the process at once.
    unsafe {
        let errno = *libc::__errno_location();
        let mut pfd = libc::pollfd { fd, events: libc::POLLRDHUP, revents: 0 };
        let n = libc::poll(&mut pfd, 1, 0);
        if n == 1 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0 {
            libc::_exit(PARENT_GONE_EXIT);
        }
        *libc::__errno_location() = errno;
    }
}

/// Makes this process exit as soon as the peer of `fd` (the parent's end of
/// the control socket) is closed, which happens when the parent dies in any
/// way, SIGKILL included.
///
/// The socket is switched to `O_ASYNC` with this process as owner, so the
/// kernel sends SIGIO on every state change; the handler exits only when
/// the socket reports a hang-up. The check runs once here too, in case the
/// parent died before the watch was armed. SIGIO is taken over in the child.
#[doc(alias("O_ASYNC", "SIGIO", "F_SETOWN"))]
pub(crate) fn watch_parent(fd: i32) {
    WATCHED_FD.store(fd, Ordering::Relaxed);
    set_disposition(libc::SIGIO, on_sigio as *const () as libc::sighandler_t, libc::SA_RESTART);
    // SAFETY: plain fcntl calls on an fd this process owns. The control
    // socket is a blocking read-write socket, so O_RDWR | O_ASYNC is its
    // whole flag set.
    unsafe {
        libc::fcntl(fd, libc::F_SETOWN, libc::getpid());
        libc::fcntl(fd, libc::F_SETFL, libc::O_RDWR | libc::O_ASYNC);
    }
    on_sigio(libc::SIGIO);
}

/// Like [`watch_parent`], but from a thread blocked in `poll` for a
/// hang-up, instead of a signal on every change of the socket: for a pool
/// worker, whose control socket sees traffic all the time. Turns `O_ASYNC`
/// off first if `watch_parent` had turned it on.
#[doc(alias("POLLRDHUP"))]
pub(crate) fn watch_parent_from_thread(fd: i32) {
    WATCHED_FD.store(-1, Ordering::Relaxed);
    // SAFETY: a plain fcntl on an fd this process owns; the control socket
    // is blocking and read-write, so O_RDWR is its whole flag set.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_RDWR) };
    let spawned =
        std::thread::Builder::new().name("multiproc-parent-watch".into()).stack_size(64 * 1024).spawn(move || {
            loop {
                let mut pfd = libc::pollfd { fd, events: libc::POLLRDHUP, revents: 0 };
                // SAFETY: `pfd` is a valid one-element array; `_exit` ends the
                // process at once.
                unsafe {
                    if libc::poll(&mut pfd, 1, -1) == 1 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0 {
                        libc::_exit(PARENT_GONE_EXIT);
                    }
                }
            }
        });
    if spawned.is_err() {
        // No thread: fall back to the signal.
        watch_parent(fd);
    }
}

/// "SIGKILL" for 9, and so on; "signal N" for numbers without a name.
#[doc(alias("sigabbrev_np"))]
pub(crate) fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {sig}"),
    };
    name.to_owned()
}
