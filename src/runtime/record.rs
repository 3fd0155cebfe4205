//! The parent's record of one child: its fds, the reply it is reading, and
//! how the child ended.
//!
//! A record is shared by the user's [`Child`](crate::Child) handle, the
//! process registry (until the child is reaped) and the reaper thread (for
//! detached children). Its fds are never closed while the record lives, so
//! that several threads may poll them at once; every read and every reap
//! happens under the `state` lock, which is never held while blocking.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::serve::ChildInfo;
use crate::codec::{self, Frame, FrameReader, ReadOutcome, kind};
use crate::error::{Error, ErrorKind, PanicInfo, RemoteError, Result};
use crate::process::MemoryCap;
use crate::sys::{self, AsFd, AsRawFd, BorrowedFd, ExitStatus, OwnedFd, PollFd, PollFlags, RawFd};

/// How the parent learns that a child ended.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// A child of this process: `waitid` on its pidfd.
    Direct,
    /// A child of the fork server, which writes the raw wait status into
    /// this pipe once it has reaped the child.
    Server(OwnedFd),
}

/// How long a joiner that has the reply keeps looking for the exit before
/// it sleeps.
const SPIN_MICROS: u64 = 60;

#[derive(Debug)]
pub(crate) struct ChildRecord {
    pub(crate) pid: i32,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pidfd: OwnedFd,
    waiter: Waiter,
    /// The parent's end of the control socket, non-blocking.
    control: OwnedFd,
    state: Mutex<State>,
    detached: AtomicBool,
    /// The control socket belongs to someone else (a pool's dispatcher):
    /// never read it here, only reap.
    exclusive: bool,
    /// The memory cgroup made for the child, if it has one: read when it
    /// has ended, removed with the record.
    memory_group: std::sync::OnceLock<sys::MemoryGroup>,
}

#[derive(Debug)]
struct State {
    reader: FrameReader,
    reply: Option<Frame>,
    /// The reply stream is finished (end of file, or abandoned).
    done_reading: bool,
    /// Why the reply stream was abandoned, if it was.
    stream_error: Option<Error>,
    status: Option<ExitStatus>,
    /// The fork server vanished without reporting; fall back to the pidfd.
    server_lost: bool,
    joined: bool,
}

impl ChildRecord {
    /// The record of a new child. With `exclusive`, its control socket is
    /// read by its owner (a pool's dispatcher), never here.
    pub(crate) fn new(
        pid: i32,
        pidfd: OwnedFd,
        waiter: Waiter,
        control: OwnedFd,
        info: &ChildInfo,
        exclusive: bool,
    ) -> Self {
        let (name, daemon) = (info.name.clone(), info.daemon);
        ChildRecord {
            pid,
            name,
            daemon,
            pidfd,
            waiter,
            control,
            state: Mutex::new(State {
                reader: FrameReader::new(codec::max_frame_size()),
                reply: None,
                done_reading: false,
                stream_error: None,
                status: None,
                server_lost: false,
                joined: false,
            }),
            detached: AtomicBool::new(false),
            exclusive,
            memory_group: std::sync::OnceLock::new(),
        }
    }

    /// Keeps the child's memory group until the record goes.
    pub(crate) fn keep_memory_group(&self, group: sys::MemoryGroup) {
        let _ = self.memory_group.set(group);
    }

    /// The limit and peak of a child that its memory group's OOM killer
    /// ended (with its status `status`), if that is how it ended.
    pub(crate) fn memory_kill(&self, status: Option<ExitStatus>) -> Option<(u64, u64)> {
        let group = self.memory_group.get()?;
        let killed = matches!(status, Some(ExitStatus::Signal(s)) if s == sys::SIGKILL);
        (killed && group.oom_kills() > 0).then(|| (group.limit(), group.peak().unwrap_or(group.limit())))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The parent's end of the control socket.
    pub(crate) fn control(&self) -> BorrowedFd<'_> {
        self.control.as_fd()
    }

    /// The pidfd, readable once the child has ended.
    pub(crate) fn sentinel(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Every fd this record owns, for closing in a forked child.
    pub(crate) fn raw_fds(&self) -> [RawFd; 3] {
        let waiter = match &self.waiter {
            Waiter::Direct => -1,
            Waiter::Server(fd) => fd.as_raw_fd(),
        };
        [self.pidfd.as_raw_fd(), self.control.as_raw_fd(), waiter]
    }

    /// The fd that becomes readable when the child has ended.
    fn wait_fd(&self, st: &State) -> BorrowedFd<'_> {
        match &self.waiter {
            Waiter::Server(fd) if !st.server_lost => fd.as_fd(),
            _ => self.pidfd.as_fd(),
        }
    }

    /// Reads whatever reply bytes have arrived and reaps the child if it
    /// has ended, without blocking. Returns the exit status once known.
    fn progress(&self, st: &mut State) -> Result<Option<ExitStatus>> {
        self.drain(st);
        if st.status.is_none() {
            st.status = self.try_reap(st)?;
            if st.status.is_some() {
                // Everything the child wrote was in the socket before it
                // exited: collect the rest.
                self.drain(st);
            }
        }
        Ok(st.status)
    }

    fn drain(&self, st: &mut State) {
        if self.exclusive {
            return;
        }
        while !st.done_reading {
            if st.reply.is_some() {
                // After the reply only end of file may come: a byte more is
                // refused at once, without reading (or allocating for)
                // whatever follows it.
                let mut byte = Vec::with_capacity(1);
                match sys::read(self.control.as_fd(), &mut byte, 1) {
                    Ok(0) => st.done_reading = true,
                    Ok(_) => self.abandon(
                        st,
                        Error::new(
                            ErrorKind::Protocol,
                            format!(
                                "process '{}' (pid {}) sent more data after its reply; the stream is corrupt",
                                self.name, self.pid
                            ),
                        ),
                    ),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => st.done_reading = true,
                    Err(e) => self.abandon(st, Error::io("reading the child's reply", e)),
                }
                continue;
            }
            match st.reader.read_from(self.control.as_fd(), "the child's reply") {
                Ok(ReadOutcome::Frame(frame)) => st.reply = Some(frame),
                Ok(ReadOutcome::Pending) => return,
                Ok(ReadOutcome::Eof { .. }) => st.done_reading = true,
                Err(e) => self.abandon(st, e),
            }
        }
    }

    /// Stops reading replies; the child's further writes fail instead of
    /// blocking it forever.
    fn abandon(&self, st: &mut State, err: Error) {
        st.done_reading = true;
        st.stream_error.get_or_insert(err);
        let _ = sys::shutdown_read(self.control.as_fd());
    }

    fn try_reap(&self, st: &mut State) -> Result<Option<ExitStatus>> {
        let what = || format!("waiting for process '{}' (pid {})", self.name, self.pid);
        match &self.waiter {
            Waiter::Server(fd) if !st.server_lost => {
                let mut buf = Vec::with_capacity(4);
                match sys::read(fd.as_fd(), &mut buf, 4) {
                    Ok(4) => {
                        let raw = i32::from_ne_bytes(buf[..4].try_into().expect("4 bytes"));
                        Ok(Some(ExitStatus::from_raw(raw)))
                    }
                    Ok(_) => {
                        // The server died without a word (or could not wait
                        // for the child); watch the pidfd instead. Its
                        // children die with it (parent-death signal).
                        st.server_lost = true;
                        self.try_reap(st)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
                    Err(e) => Err(Error::io(&what(), e)),
                }
            }
            Waiter::Server(_) => {
                let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
                let ended = sys::poll(&mut fds, Some(Duration::ZERO)).map_err(|e| Error::io(&what(), e))? > 0;
                Ok(ended.then_some(ExitStatus::Lost))
            }
            Waiter::Direct => sys::pidfd_wait(self.pidfd.as_fd(), false).map_err(|e| Error::io(&what(), e)),
        }
    }

    /// Waits until the child has ended and its reply is collected, or until
    /// `deadline`. Returns the exit status, or `None` at the deadline.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Result<Option<ExitStatus>> {
        let mut spun = false;
        loop {
            let (read_control, replied, server_lost) = {
                let mut st = self.lock();
                if let Some(status) = self.progress(&mut st)? {
                    return Ok(Some(status));
                }
                (!st.done_reading && !self.exclusive, st.reply.is_some(), st.server_lost)
            };
            // The reply is in: the child is on its way out. Exiting takes it
            // a few tens of microseconds, less than sleeping and being woken
            // costs us, so look again for a short while before sleeping.
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if replied && !spun {
                spun = true;
                let budget = Duration::from_micros(SPIN_MICROS).min(left.unwrap_or(Duration::MAX));
                if let Some(status) = self.spin_for_exit(budget)? {
                    return Ok(Some(status));
                }
            }
            let Some(timeout) = crate::synchronize::time_left(deadline) else { return Ok(None) };
            let wait_fd = match (&self.waiter, server_lost) {
                (Waiter::Server(fd), false) => fd.as_fd(),
                _ => self.pidfd.as_fd(),
            };
            let mut fds = [PollFd::new(&wait_fd, PollFlags::IN), PollFd::new(&self.control, PollFlags::IN)];
            let n = if read_control { 2 } else { 1 };
            sys::poll(&mut fds[..n], timeout)
                .map_err(|e| Error::io(&format!("waiting for process '{}' (pid {})", self.name, self.pid), e))?;
        }
    }

    /// Polls for the child's exit for up to `budget`, yielding the CPU
    /// between looks (the child may share it).
    fn spin_for_exit(&self, budget: Duration) -> Result<Option<ExitStatus>> {
        let start = Instant::now();
        while start.elapsed() < budget {
            std::thread::yield_now();
            let mut st = self.lock();
            if let Some(status) = self.progress(&mut st)? {
                return Ok(Some(status));
            }
        }
        Ok(None)
    }

    /// The exit status if the child has ended, without blocking (reaping
    /// it if need be).
    pub(crate) fn poll_status(&self) -> Result<Option<ExitStatus>> {
        let mut st = self.lock();
        self.progress(&mut st)
    }

    /// Whether the child has ended, judged from its fds alone (no reap).
    pub(crate) fn has_ended(&self) -> bool {
        let st = self.lock();
        if st.status.is_some() {
            return true;
        }
        let fd = self.wait_fd(&st);
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        matches!(sys::poll(&mut fds, Some(Duration::ZERO)), Ok(n) if n > 0)
    }

    /// Sends `sig` through the pidfd; a child that already ended is left
    /// alone.
    pub(crate) fn signal(&self, sig: i32) -> Result<()> {
        if self.lock().status.is_some() {
            return Ok(());
        }
        sys::pidfd_signal(self.pidfd.as_fd(), sig).map_err(|e| {
            Error::io(&format!("sending {} to process '{}' (pid {})", sys::signal_name(sig), self.name, self.pid), e)
        })
    }

    /// Marks the record as detached (its handle was dropped while the child
    /// ran): the reply will never be read, so the child's writes should fail
    /// rather than block.
    pub(crate) fn detach(&self) {
        self.detached.store(true, Ordering::Release);
        let mut st = self.lock();
        st.joined = true;
        st.reply = None;
        if !st.done_reading {
            st.done_reading = true;
            let _ = sys::shutdown_read(self.control.as_fd());
        }
    }

    pub(crate) fn is_detached(&self) -> bool {
        self.detached.load(Ordering::Acquire)
    }

    /// The fd the reaper thread polls for this child.
    pub(crate) fn reaper_fd(&self) -> BorrowedFd<'_> {
        let st = self.lock();
        match &self.waiter {
            Waiter::Server(fd) if !st.server_lost => fd.as_fd(),
            _ => self.pidfd.as_fd(),
        }
    }

    /// Takes the outcome of a child that has ended: the decoded reply, or
    /// the error that explains why there is none. Fails with
    /// `InvalidState` the second time.
    pub(crate) fn take_outcome(&self) -> Result<Outcome> {
        let mut st = self.lock();
        let status = st.status.expect("take_outcome after the child ended");
        if st.joined {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "process '{}' (pid {}) was already joined and its result handed out; join a process once, \
                     and use exitcode() to look at it again",
                    self.name, self.pid
                ),
            ));
        }
        st.joined = true;
        if let Some(err) = st.stream_error.take() {
            return Err(err.with_exitcode(status.exitcode()));
        }
        match st.reply.take() {
            Some(frame) => self.interpret(frame, status),
            None => Err(self.ended_without_reply(status)),
        }
    }

    fn interpret(&self, frame: Frame, status: ExitStatus) -> Result<Outcome> {
        let code = status.exitcode();
        match frame.kind {
            kind::VALUE => Ok(Outcome(frame.payload)),
            kind::PANIC => {
                let panic: PanicInfo = codec::decode(&frame.payload, "a panic report")?;
                Err(Error::new(
                    ErrorKind::Panicked,
                    format!(
                        "process '{}' (pid {}) {panic}; the child exited with code {}. Fix the target, or catch the \
                         panic inside it and return an error value",
                        self.name,
                        self.pid,
                        code.map_or("unknown".to_owned(), |c| c.to_string())
                    ),
                )
                .with_panic(panic)
                .with_exitcode(code))
            }
            kind::ERROR => {
                let remote: RemoteError = codec::decode(&frame.payload, "an error report")?;
                if let Some((limit, peak)) = remote.memory {
                    let then = format!("it exited with code {}", code.unwrap_or(1));
                    return Err(self.over_memory(limit, u64::from_le_bytes(peak), MemoryCap::Rlimit, &then, code));
                }
                let message = format!("in process '{}' (pid {}): {}", self.name, self.pid, remote.message);
                Err(remote.into_error(message).with_exitcode(code))
            }
            other => Err(Error::new(
                ErrorKind::Protocol,
                format!("process '{}' (pid {}) replied with an unknown frame kind {other}", self.name, self.pid),
            )
            .with_exitcode(code)),
        }
    }

    /// The `MemoryExceeded` error of this child.
    fn over_memory(&self, limit: u64, peak: u64, cap: MemoryCap, then: &str, code: Option<i32>) -> Error {
        let who = format!("process '{}' (pid {})", self.name, self.pid);
        crate::process::memory_exceeded(&who, limit, peak, cap, then).with_exitcode(code)
    }

    fn ended_without_reply(&self, status: ExitStatus) -> Error {
        if let Some((limit, peak)) = self.memory_kill(Some(status)) {
            return self.over_memory(limit, peak, MemoryCap::Cgroup, "it was killed by SIGKILL", status.exitcode());
        }
        match status {
            ExitStatus::Code(code) => Error::new(
                ErrorKind::Exited,
                format!(
                    "process '{}' (pid {}) exited with code {code} before returning a value; the target called \
                     std::process::exit (or something did on its behalf). Return a value from the target instead",
                    self.name, self.pid
                ),
            )
            .with_exitcode(Some(code)),
            ExitStatus::Signal(sig) => Error::new(
                ErrorKind::Signaled,
                format!(
                    "process '{}' (pid {}) was killed by {} (exitcode {}) before returning a value: it was \
                     terminated or killed, ran out of memory, or crashed. Check the child's stderr and the system log",
                    self.name,
                    self.pid,
                    sys::signal_name(sig),
                    -sig
                ),
            )
            .with_exitcode(Some(-sig)),
            ExitStatus::Lost => Error::new(
                ErrorKind::Io,
                format!(
                    "process '{}' (pid {}) ended without a reply, and how it ended is unknown: its exit status was                      lost (SIGCHLD is ignored in this process, so the kernel reaped it, or something else waited                      for it). Do not ignore SIGCHLD, and do not wait for children you did not start",
                    self.name, self.pid
                ),
            ),
        }
    }
}

/// The encoded return value of a child that returned.
#[derive(Debug)]
pub(crate) struct Outcome(pub(crate) Vec<u8>);
