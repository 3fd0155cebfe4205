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
//! - server → client: `Ok(pid)` with the child's pidfd and the read end of
//!   a status pipe attached, or `Err(errno)`.
//!
//! When the child ends, the server reaps it and writes its raw wait status
//! (4 bytes) into the status pipe. When the client goes away, the server
//! sees end of file and exits, and its children get SIGKILL from their
//! parent-death signal.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bootstrap;
use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::registry;
use crate::sys::{self, AsFd, AsRawFd, ExitStatus, Forked, OwnedFd, PollFd, PollFlags, RawFd};
use crate::{child, task};

#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    fingerprint: Vec<u8>,
    pid: i32,
}

/// The largest task frame sent along with the fork request.
pub(crate) const INLINE_TASK: usize = 32 * 1024;

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
    pub(crate) status: OwnedFd,
}

impl ForkServer {
    pub(crate) fn raw_fds(&self) -> [RawFd; 2] {
        [self.pidfd.as_raw_fd(), self.conn_raw]
    }

    fn start() -> Result<ForkServer> {
        let (ours, theirs) = sys::socketpair_seqpacket()
            .map_err(|e| Error::io("creating the fork server's socket", e))?;
        // Empty arguments leave room in argv for the children's titles.
        let mut argv = vec![CString::new("multiproc: forkserver").expect("no NUL")];
        argv.extend(std::iter::repeat_n(CString::default(), 48));
        let spec = bootstrap::exec_spec(argv, bootstrap::Role::ForkServer, &[])?;
        let pid = sys::spawn_exec(&spec, theirs.as_fd(), sys::is_main_thread())
            .map_err(|e| Error::io("starting the fork server", e))?;
        drop(theirs);
        let pidfd = sys::pidfd_open(pid)
            .map_err(|e| Error::io("opening a pidfd for the fork server", e))?;
        let server = ForkServer {
            pid,
            pidfd,
            conn_raw: ours.as_raw_fd(),
            conn: Mutex::new(ours),
        };
        server.check_hello()?;
        Ok(server)
    }

    fn check_hello(&self) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut fds = [PollFd::new(&*conn, PollFlags::IN)];
        let ready = sys::poll(&mut fds, Some(Duration::from_secs(30)))
            .map_err(|e| Error::io("waiting for the fork server", e))?;
        if ready == 0 {
            return Err(Error::new(
                ErrorKind::Timeout,
                "the fork server did not say hello within 30 s; the machine is overloaded or the executable cannot \
                 re-exec itself. Try StartMethod::Fork",
            ));
        }
        let mut buf = Vec::with_capacity(256);
        let n = sys::recv_fds(conn.as_fd(), &mut buf, &mut Vec::new())
            .map_err(|e| Error::io("reading the fork server's hello", e))?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "the fork server exited before saying hello; see its message on stderr",
            ));
        }
        let hello: Hello = codec::decode(&buf, "the fork server's hello")?;
        if hello.fingerprint != task::fingerprint() || hello.pid != self.pid {
            return Err(Error::new(
                ErrorKind::BuildMismatch,
                "the fork server runs a different build of the executable; rebuild and restart the program",
            ));
        }
        Ok(())
    }

    /// Asks the server for a child that will serve on `child_end`, with
    /// its task frame if it is `inline`.
    fn fork(&self, child_end: &OwnedFd, inline: Option<&[u8]>) -> std::io::Result<ServerChild> {
        let mut request = Vec::with_capacity(8 + inline.map_or(0, <[u8]>::len));
        request.extend_from_slice(&codec::max_frame_size().to_le_bytes());
        request.extend_from_slice(inline.unwrap_or_default());
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        sys::send_fds(conn.as_fd(), &request, &[child_end.as_fd()])?;
        let mut buf = Vec::with_capacity(16);
        let mut fds = Vec::new();
        let n = sys::recv_fds(conn.as_fd(), &mut buf, &mut fds)?;
        if n == 0 {
            return Err(std::io::ErrorKind::ConnectionReset.into());
        }
        let reply: std::result::Result<i32, i32> =
            codec::decode(&buf, "the fork server's reply").map_err(std::io::Error::from)?;
        match (reply, fds.len()) {
            (Ok(pid), 2) => {
                let status = fds.pop().expect("two fds");
                let pidfd = fds.pop().expect("two fds");
                sys::set_nonblocking(status.as_fd(), true)?;
                Ok(ServerChild { pid, pidfd, status })
            }
            (Ok(_), _) => Err(std::io::Error::other(
                "the fork server's reply lacked its fds",
            )),
            (Err(errno), _) => Err(std::io::Error::from_raw_os_error(errno)),
        }
    }

    fn reap(&self) {
        let _ = sys::pidfd_signal(self.pidfd.as_fd(), sys::SIGKILL);
        let _ = sys::pidfd_wait(self.pidfd.as_fd(), true);
    }
}

/// Forks a child through the fork server (started on first use, and
/// restarted once if it has died) that serves on `child_end`, with its task
/// frame if it is `inline` (at most [`INLINE_TASK`] bytes).
pub(crate) fn fork_child(child_end: &OwnedFd, inline: Option<&[u8]>) -> Result<ServerChild> {
    let mut last_err = None;
    for _ in 0..2 {
        let server = current_server()?;
        match server.fork(child_end, inline) {
            Ok(child) => return Ok(child),
            Err(e) if is_disconnect(&e) => {
                // The server died (killed, or crashed): replace it.
                let mut reg = registry::lock();
                if reg.server.as_ref().is_some_and(|s| Arc::ptr_eq(s, &server)) {
                    reg.server = None;
                }
                drop(reg);
                server.reap();
                last_err = Some(e);
            }
            Err(e) => return Err(Error::io("asking the fork server for a child", e)),
        }
    }
    Err(Error::io(
        "asking the fork server for a child (after restarting it)",
        last_err.unwrap_or_else(|| std::io::ErrorKind::ConnectionReset.into()),
    ))
}

fn is_disconnect(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::NotConnected
    )
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
    sys::ignore_sigint();
    sys::ignore_sigpipe();
    sys::set_title("multiproc: forkserver");
    let my_pid = sys::getpid();
    let hello = Hello {
        fingerprint: task::fingerprint().to_vec(),
        pid: my_pid,
    };
    let hello =
        codec::encode(&hello, "the fork server's hello").expect("a Hello always serializes");
    if sys::send_fds(conn.as_fd(), &hello, &[]).is_err() {
        sys::exit_now(1);
    }
    // Children by pid: their pidfd and the write end of their status pipe.
    let mut children: HashMap<i32, (OwnedFd, OwnedFd)> = HashMap::new();
    let mut buf = Vec::with_capacity(8 + INLINE_TASK + 4096);
    loop {
        let order: Vec<i32> = children.keys().copied().collect();
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(order.len() + 1);
        fds.push(PollFd::new(&conn, PollFlags::IN));
        fds.extend(
            order
                .iter()
                .map(|pid| PollFd::new(&children[pid].0, PollFlags::IN)),
        );
        if sys::poll(&mut fds, None).is_err() {
            continue;
        }
        let conn_ready = !fds[0].revents().is_empty();
        let ended: Vec<i32> = order
            .iter()
            .zip(&fds[1..])
            .filter(|(_, fd)| !fd.revents().is_empty())
            .map(|(pid, _)| *pid)
            .collect();
        drop(fds);
        for pid in ended {
            if let Some((pidfd, status_w)) = children.remove(&pid) {
                let status = sys::pidfd_wait(pidfd.as_fd(), true)
                    .ok()
                    .flatten()
                    .unwrap_or(ExitStatus::Signal(sys::SIGKILL));
                let _ = sys::write_all(status_w.as_fd(), &status.to_raw().to_ne_bytes());
            }
        }
        if conn_ready {
            let mut received = Vec::new();
            match sys::recv_fds(conn.as_fd(), &mut buf, &mut received) {
                Ok(0) if received.is_empty() => sys::exit_now(0),
                Err(e) if e.kind() != std::io::ErrorKind::Interrupted => sys::exit_now(0),
                Err(_) => continue,
                Ok(_) => {}
            }
            let limit = buf
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes);
            let (Some(limit), Some(child_end)) = (limit, received.pop()) else {
                continue;
            };
            let inline = (buf.len() > 8).then(|| &buf[8..]);
            let reply: std::result::Result<i32, i32> =
                match fork_one(child_end, inline, limit, my_pid) {
                    Ok((pid, pidfd, status_r, status_w)) => {
                        let reply =
                            codec::encode(&Ok::<i32, i32>(pid), "reply").expect("plain data");
                        let _ =
                            sys::send_fds(conn.as_fd(), &reply, &[pidfd.as_fd(), status_r.as_fd()]);
                        children.insert(pid, (pidfd, status_w));
                        continue;
                    }
                    Err(e) => Err(e.raw_os_error().unwrap_or(EIO)),
                };
            let reply = codec::encode(&reply, "reply").expect("plain data");
            let _ = sys::send_fds(conn.as_fd(), &reply, &[]);
        }
    }
}

/// The errno reported for a failure that has none.
const EIO: i32 = 5;

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
            // The server's own state is gone with the fds; forget it.
            std::mem::forget(status_r);
            std::mem::forget(status_w);
            child::serve(child_end, inline)
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
