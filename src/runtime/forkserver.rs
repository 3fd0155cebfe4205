//! The fork server: one exec'd, single-threaded process, started on first
//! use, that forks children on request.
//!
//! Its children start from a clean, single-threaded image, so forking is
//! safe no matter how many threads the user's process runs, and it costs
//! about as much as a bare `fork()`.
//!
//! Protocol, over a `SOCK_SEQPACKET` socketpair (one message each way per
//! request, under the client's lock):
//! - server → client, once: [`Hello`] (fingerprint, pid);
//! - client → server: the frame-size limit (8 bytes) and, when it is at
//!   most [`INLINE_TASK`] bytes, the child's task frame, with the child's
//!   end of its control socket attached (a child forked with its task
//!   already in memory starts at once, saving a round of wake-ups; a
//!   larger task is written to the control socket);
//! - server → client, always: `Ok(pid)` with the child's pidfd and the read
//!   end of a status pipe attached, or `Err(errno)`.
//!
//! When the child ends, the server reaps it and writes its raw wait status
//! (4 bytes) into the status pipe; if it cannot, it closes the pipe and
//! the client reports the status as lost. When the client goes away, the
//! server sees end of file and exits, and its children get SIGKILL from
//! their parent-death signal. The client never waits on the server
//! without a bound: a server that does not answer within
//! [`REPLY_TIMEOUT`] is killed and replaced.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::trampoline::fingerprint;
use super::{bootstrap, registry, serve};
use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, AsFd, AsRawFd, BorrowedFd, Forked, OwnedFd, PollFd, PollFlags, RawFd};

#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    fingerprint: Vec<u8>,
    pid: i32,
}

/// The largest task frame sent along with the fork request.
pub(crate) const INLINE_TASK: usize = 32 * 1024;

/// How long the client waits for the server's hello or reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The server's `argv[0]`: padded, because its children overwrite it with
/// their own titles and may not write past its end.
const SERVER_TITLE: &str = "multiproc: forkserver";
const TITLE_ROOM: usize = 96;

/// The errno reported for a failure that has none.
const EIO: i32 = 5;
/// The errno of a request that came without its fd.
const EINVAL: i32 = 22;

/// The server's epoll token for the client's socket; a child's is its pid.
const CONN_TOKEN: u64 = u64::MAX;

/// The client's handle on a running fork server.
#[derive(Debug)]
pub(crate) struct ForkServer {
    pid: i32,
    pidfd: OwnedFd,
    conn: Mutex<OwnedFd>,
    conn_raw: RawFd,
}

/// A child the server forked for us.
#[derive(Debug)]
pub(crate) struct ServerChild {
    pub(crate) pid: i32,
    pub(crate) pidfd: OwnedFd,
    /// The status pipe (non-blocking).
    pub(crate) status: OwnedFd,
    /// Our end of the child's control socket.
    pub(crate) control: OwnedFd,
}

/// Why a request to the server failed.
enum Failure {
    /// The server is dead or stuck: replace it and try again.
    Server(std::io::Error),
    /// The server answered with an error (say, `fork()` failed).
    Request(std::io::Error),
}

impl ForkServer {
    pub(crate) fn raw_fds(&self) -> [RawFd; 2] {
        [self.pidfd.as_raw_fd(), self.conn_raw]
    }

    fn start() -> Result<ForkServer> {
        let (ours, theirs) =
            sys::socketpair_seqpacket().map_err(|e| Error::io("creating the fork server's socket", e))?;
        let mut argv = vec![CString::new(format!("{SERVER_TITLE:<TITLE_ROOM$}")).expect("no NUL")];
        argv.extend(std::env::args_os().skip(1).filter_map(|a| CString::new(a.as_bytes()).ok()));
        let spec = bootstrap::exec_spec(argv, bootstrap::Role::ForkServer, &[])?;
        let pid = sys::spawn_exec(&spec, theirs.as_fd(), sys::is_main_thread())
            .map_err(|e| Error::io("starting the fork server", e))?;
        drop(theirs);
        let pidfd = match sys::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                sys::kill_and_reap(pid);
                return Err(Error::io("opening a pidfd for the fork server", e));
            }
        };
        let server = ForkServer { pid, pidfd, conn_raw: ours.as_raw_fd(), conn: Mutex::new(ours) };
        if let Err(e) = server.check_hello() {
            server.reap();
            return Err(e);
        }
        Ok(server)
    }

    /// Waits, with a bound, until the server has a message for us.
    fn await_message(&self, conn: BorrowedFd<'_>) -> std::io::Result<()> {
        let mut fds = [PollFd::new(&conn, PollFlags::IN), PollFd::new(&self.pidfd, PollFlags::IN)];
        if sys::poll(&mut fds, Some(REPLY_TIMEOUT))? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the fork server did not answer within {REPLY_TIMEOUT:?}"),
            ));
        }
        Ok(())
    }

    fn check_hello(&self) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        self.await_message(conn.as_fd()).map_err(|e| Error::io("waiting for the fork server's hello", e))?;
        let mut buf = Vec::with_capacity(256);
        let n = sys::recv_fds(conn.as_fd(), &mut buf, &mut Vec::new())
            .map_err(|e| Error::io("reading the fork server's hello", e))?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "the fork server exited before saying hello; see its message on stderr, or use StartMethod::Fork",
            ));
        }
        let hello: Hello = codec::decode(&buf, "the fork server's hello")?;
        if hello.fingerprint != fingerprint() || hello.pid != self.pid {
            return Err(Error::new(
                ErrorKind::BuildMismatch,
                "the fork server runs a different build of the executable; rebuild and restart the program",
            ));
        }
        Ok(())
    }

    /// Asks the server for a child that will serve on `child_end`, with
    /// its task frame if it is `inline`.
    fn fork(
        &self,
        child_end: &OwnedFd,
        inline: Option<&[u8]>,
    ) -> std::result::Result<(i32, OwnedFd, OwnedFd), Failure> {
        let mut request = Vec::with_capacity(8 + inline.map_or(0, <[u8]>::len));
        request.extend_from_slice(&codec::max_frame_size().to_le_bytes());
        request.extend_from_slice(inline.unwrap_or_default());
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        sys::send_fds(conn.as_fd(), &request, &[child_end.as_fd()]).map_err(Failure::Server)?;
        self.await_message(conn.as_fd()).map_err(Failure::Server)?;
        let mut buf = Vec::with_capacity(16);
        let mut fds = Vec::new();
        let n = sys::recv_fds(conn.as_fd(), &mut buf, &mut fds).map_err(Failure::Server)?;
        if n == 0 {
            return Err(Failure::Server(std::io::ErrorKind::ConnectionReset.into()));
        }
        let reply: std::result::Result<i32, i32> =
            codec::decode(&buf, "the fork server's reply").map_err(|e| Failure::Server(std::io::Error::from(e)))?;
        match (reply, fds.len()) {
            (Ok(pid), 2) => {
                let status = fds.pop().expect("two fds");
                let pidfd = fds.pop().expect("two fds");
                if let Err(e) = sys::set_nonblocking(status.as_fd(), true) {
                    let _ = sys::pidfd_signal(pidfd.as_fd(), sys::SIGKILL);
                    return Err(Failure::Request(e));
                }
                Ok((pid, pidfd, status))
            }
            (Ok(_), _) => Err(Failure::Server(std::io::Error::other("the fork server's reply lacked its fds"))),
            (Err(errno), _) => Err(Failure::Request(std::io::Error::from_raw_os_error(errno))),
        }
    }

    /// Kills the server and waits for it.
    fn reap(&self) {
        let _ = sys::pidfd_signal(self.pidfd.as_fd(), sys::SIGKILL);
        let _ = sys::pidfd_wait(self.pidfd.as_fd(), true);
    }
}

/// Forks a child through the fork server (started on first use, and
/// replaced once if it has died or hangs), with its task frame if it is
/// `inline` (at most [`INLINE_TASK`] bytes). Each attempt uses a fresh
/// control socket, so that a child the failed attempt may have started can
/// never reach the next one.
pub(crate) fn fork_child(inline: Option<&[u8]>) -> Result<ServerChild> {
    let mut last_err = None;
    for _ in 0..2 {
        let (control, child_end) =
            sys::socketpair_stream().map_err(|e| Error::io("creating a control socket for the child", e))?;
        let server = current_server()?;
        match server.fork(&child_end, inline) {
            Ok((pid, pidfd, status)) => {
                return Ok(ServerChild { pid, pidfd, status, control });
            }
            Err(Failure::Request(e)) => {
                return Err(Error::io("asking the fork server for a child", e));
            }
            Err(Failure::Server(e)) => {
                let mut reg = registry::lock();
                if reg.server.as_ref().is_some_and(|s| Arc::ptr_eq(s, &server)) {
                    reg.server = None;
                }
                drop(reg);
                server.reap();
                last_err = Some(e);
            }
        }
    }
    Err(Error::io(
        "asking the fork server for a child (after replacing it once)",
        last_err.unwrap_or_else(|| std::io::ErrorKind::ConnectionReset.into()),
    ))
}

fn current_server() -> Result<Arc<ForkServer>> {
    if let Some(server) = &registry::lock().server {
        return Ok(Arc::clone(server));
    }
    // Start outside the registry lock (it takes a while); if another thread
    // won the race, keep theirs.
    let started = Arc::new(ForkServer::start()?);
    let mut reg = registry::lock();
    if let Some(server) = &reg.server {
        let theirs = Arc::clone(server);
        drop(reg);
        started.reap();
        return Ok(theirs);
    }
    reg.server = Some(Arc::clone(&started));
    Ok(started)
}

/// The server's main loop, in the re-exec'd server process. Never returns.
pub(crate) fn serve(conn: OwnedFd) -> ! {
    sys::hold_sigint();
    sys::ignore_sigpipe();
    sys::set_title(SERVER_TITLE);
    let my_pid = sys::getpid();
    let hello = Hello { fingerprint: fingerprint().to_vec(), pid: my_pid };
    let hello = codec::encode(&hello, "the fork server's hello").expect("a Hello always serializes");
    if sys::send_fds(conn.as_fd(), &hello, &[]).is_err() {
        sys::exit_now(1);
    }
    // Children by pid: their pidfd and the write end of their status pipe.
    // The pidfds are watched in one epoll set, by pid, beside the client's
    // socket: a request costs the same with 10 children running or 1,000
    // (a poll of every pidfd per request made each start slower by about
    // 0.2 µs per child alive).
    let mut children: HashMap<i32, (OwnedFd, OwnedFd)> = HashMap::new();
    let Ok(poller) = sys::Poller::new() else { sys::exit_now(1) };
    if poller.add(conn.as_fd(), CONN_TOKEN).is_err() {
        sys::exit_now(1);
    }
    let mut ready = Vec::new();
    let mut buf = Vec::with_capacity(8 + INLINE_TASK + 4096);
    loop {
        if poller.wait(None, &mut ready).is_err() {
            continue;
        }
        let conn_ready = ready.contains(&CONN_TOKEN);
        for pid in ready.iter().filter(|&&token| token != CONN_TOKEN).map(|&token| token as i32) {
            if let Some((pidfd, status_w)) = children.remove(&pid) {
                let _ = poller.remove(pidfd.as_fd());
                // No status (the wait failed): closing the pipe tells the
                // client that it is lost.
                let raw = sys::pidfd_wait(pidfd.as_fd(), true).ok().flatten().and_then(sys::ExitStatus::to_raw);
                if let Some(raw) = raw {
                    let _ = sys::write_all(status_w.as_fd(), &raw.to_ne_bytes());
                }
            }
        }
        if conn_ready {
            let mut received = Vec::new();
            let reply: std::result::Result<i32, i32> = match sys::recv_fds(conn.as_fd(), &mut buf, &mut received) {
                Ok(0) if received.is_empty() => sys::exit_now(0),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error().is_some() => sys::exit_now(0),
                // A message we could not take whole (fds dropped): say so.
                Err(_) => Err(EIO),
                Ok(_) => match (buf.get(..8), received.pop()) {
                    (Some(limit), Some(child_end)) => {
                        let limit = u64::from_le_bytes(limit.try_into().expect("8 bytes"));
                        let inline = (buf.len() > 8).then(|| &buf[8..]);
                        match fork_one(child_end, inline, limit, my_pid) {
                            Ok((pid, pidfd, status_r, status_w)) => match poller.add(pidfd.as_fd(), pid as u64) {
                                Ok(()) => {
                                    let reply = codec::encode(&Ok::<i32, i32>(pid), "reply").expect("plain data");
                                    let _ = sys::send_fds(conn.as_fd(), &reply, &[pidfd.as_fd(), status_r.as_fd()]);
                                    children.insert(pid, (pidfd, status_w));
                                    continue;
                                }
                                // A child the server could not watch would
                                // never be reaped: it goes, and the request
                                // fails.
                                Err(e) => {
                                    let _ = sys::pidfd_signal(pidfd.as_fd(), sys::SIGKILL);
                                    let _ = sys::pidfd_wait(pidfd.as_fd(), true);
                                    Err(e.raw_os_error().unwrap_or(EIO))
                                }
                            },
                            Err(e) => Err(e.raw_os_error().unwrap_or(EIO)),
                        }
                    }
                    _ => Err(EINVAL),
                },
            };
            let reply = codec::encode(&reply, "reply").expect("plain data");
            let _ = sys::send_fds(conn.as_fd(), &reply, &[]);
        }
    }
}

/// Forks one child that serves on `child_end`. In the child: every other
/// fd is closed, the parent-death signal is set, and the task is served.
fn fork_one(
    child_end: OwnedFd,
    inline: Option<&[u8]>,
    limit: u64,
    server_pid: i32,
) -> std::io::Result<(i32, OwnedFd, OwnedFd, OwnedFd)> {
    let (status_r, status_w) = sys::pipe()?;
    match sys::fork()? {
        Forked::Child => {
            sys::close_all_except(child_end.as_raw_fd());
            if !sys::set_parent_death_kill(server_pid) {
                sys::exit_now(255);
            }
            let _ = codec::set_max_frame_size(limit);
            // The server's own fds are closed; forget their owners.
            std::mem::forget(status_r);
            std::mem::forget(status_w);
            serve::serve(child_end, inline)
        }
        Forked::Parent(pid) => {
            drop(child_end);
            match sys::pidfd_open(pid) {
                Ok(pidfd) => Ok((pid, pidfd, status_r, status_w)),
                Err(e) => {
                    sys::kill_and_reap(pid);
                    Err(e)
                }
            }
        }
    }
}
