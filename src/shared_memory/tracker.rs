//! The shared-memory tracker: the helper process that removes a process's
//! tracked segments once that process has ended, however it ended.
//!
//! # Design
//!
//! Each process that creates a tracked segment gets its own tracker, on
//! its first `create`: this executable re-exec'd with the bootstrap role
//! [`Role::ShmTracker`], so it starts single-threaded with nothing of the
//! creator's but stdio and one end of a `SOCK_SEQPACKET` socketpair. Before
//! anything else it opens a pidfd for its parent (the creator) and checks
//! that the parent is still the creator, so the pidfd cannot name a reused
//! pid. Then it detaches (`sys::detach`): it forks, the first copy exits
//! and is reaped by the creator at once, and the second is adopted by
//! init, in a session of its own, ignoring SIGINT, SIGTERM and SIGHUP. So
//! it is never a child of a multiproc process (no zombie to reap), a
//! Ctrl-C or a signal to the process group does not end it before its
//! work, and the creator's death does not kill it (no parent-death
//! signal). It says `ready` on the socket; `create` waits for that word
//! before it makes the segment, so a tracker is always already waiting
//! when a segment exists to be tracked.
//!
//! The creator sends one message per event: `+` right after the
//! `shm_open(O_CREAT | O_EXCL)` that makes a segment (before it is sized
//! or mapped, so that only a SIGKILL landing in the next `fstat` and
//! `send` leaves a file behind),
//! `-` when it is unlinked, each with the segment's device and inode and
//! its name (at most 272 bytes, one record). The tracker sleeps in `poll`
//! on the socket and on the creator's pidfd. The pidfd, not the socket,
//! says that the creator has ended: it becomes readable when the process
//! is gone, SIGKILL included, even if a forked child still holds a copy of
//! the socket. The tracker then reads what is left on the socket (all of
//! it was sent before the creator died), removes every segment still
//! registered, and exits: the time from death to removal is one wake-up
//! plus an open, an fstat and an unlink per segment.
//!
//! It removes a name only if the name still leads to the inode it was told
//! about: a name that was unlinked and then taken by another process's
//! segment is left alone. (Between the check and the unlink another
//! process could swap the name again; that window is microseconds wide.)
//!
//! # Forks
//!
//! The connection belongs to the process that started the tracker (its pid
//! is recorded). Under `StartMethod::Fork` the child closes its inherited
//! copy at once (the socket is a registry "internal" fd); a child forked
//! any other way closes it on its first use of shared memory. Either way a
//! forked child never writes to its parent's tracker: its own tracked
//! segments get its own tracker, and die with it.
//!
//! # One tracker per process, not per program
//!
//! Python's resource tracker is shared by a process and its children
//! (they inherit or are passed its pipe), so a segment a worker creates
//! lives until the whole program ends. Here every start method gives a
//! child a tracker of its own, so a child's tracked segments go when the
//! child ends; the public docs say so and point to `create_untracked` for
//! segments that must outlive their creator. Sharing the root's tracker
//! would take handing its socket to every child (the fd-passing of process
//! start-up, for spawn and forkserver children too) and a tracker that
//! serves several writers: not done.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::os::fd::IntoRawFd;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::runtime::{self, Role, registry};
use crate::sys::{self, AsFd, AsRawFd, FileId, OwnedFd, PollFd, PollFlags};

/// The longest that starting a tracker may take.
const START_TIMEOUT: Duration = Duration::from_secs(10);

const REGISTER: u8 = b'+';
const UNREGISTER: u8 = b'-';
const READY: &[u8] = b"ready";
/// Room for the longest message: op, device, inode, a 255-byte name.
const MAX_MESSAGE: usize = 1 + 16 + 255;

/// One tracked segment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    name: String,
    id: FileId,
}

fn message(op: u8, entry: &Entry) -> Vec<u8> {
    let mut m = Vec::with_capacity(17 + entry.name.len());
    m.push(op);
    m.extend_from_slice(&entry.id.dev.to_le_bytes());
    m.extend_from_slice(&entry.id.ino.to_le_bytes());
    m.extend_from_slice(entry.name.as_bytes());
    m
}

fn parse(msg: &[u8]) -> Option<(u8, Entry)> {
    let (&op, rest) = msg.split_first()?;
    let (dev, rest) = rest.split_first_chunk::<8>()?;
    let (ino, name) = rest.split_first_chunk::<8>()?;
    if name.is_empty() {
        return None;
    }
    let name = std::str::from_utf8(name).ok()?.to_owned();
    Some((op, Entry { name, id: FileId { dev: u64::from_le_bytes(*dev), ino: u64::from_le_bytes(*ino) } }))
}

/// What [`unlink_if_same`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unlinked {
    /// The name led to the segment, and is gone now.
    Done,
    /// No segment has the name.
    Missing,
    /// The name leads to another segment, which was left alone.
    Replaced,
}

/// Unlinks `name` if it still leads to the segment `id`.
pub(crate) fn unlink_if_same(name: &str, id: FileId) -> io::Result<Unlinked> {
    let fd = match sys::shm_open(name, false) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Unlinked::Missing),
        Err(e) => return Err(e),
    };
    if sys::file_id(fd.as_fd())?.0 != id {
        return Ok(Unlinked::Replaced);
    }
    match sys::shm_unlink(name) {
        Ok(()) => Ok(Unlinked::Done),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Unlinked::Missing),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------
// The creator's side.

/// The connection to a running tracker.
#[derive(Debug)]
struct Conn {
    sock: OwnedFd,
    /// The socket's identity, to recognise an inherited copy after a fork.
    sock_id: FileId,
}

#[derive(Debug)]
struct State {
    /// The process this state belongs to; another pid means a forked child
    /// looking at its parent's state.
    pid: i32,
    conn: Option<Conn>,
    /// What this process has registered and not unregistered, to tell a
    /// replacement tracker if the first one was killed.
    entries: BTreeSet<Entry>,
}

static STATE: Mutex<State> = Mutex::new(State { pid: 0, conn: None, entries: BTreeSet::new() });

/// Runs `f` on this process's state. The fd window keeps a `Fork` start
/// from forking while the lock is held (the child would find it locked)
/// and while a new tracker's fds are not yet known to the registry.
fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let _window = registry::fd_window();
    let mut state: MutexGuard<'_, State> = STATE.lock().unwrap_or_else(|p| p.into_inner());
    state.adopt();
    f(&mut state)
}

impl State {
    /// In a process forked from the one that started the connection,
    /// forgets the parent's connection and registrations: closes the
    /// inherited copy of the socket if this process still has it (a `Fork`
    /// start already closed it, and the number may name another file now).
    fn adopt(&mut self) {
        let me = sys::getpid();
        if self.pid == me {
            return;
        }
        if let Some(conn) = self.conn.take() {
            let raw = conn.sock.into_raw_fd();
            registry::lock().remove_internal(raw);
            if sys::raw_fd_is(raw, conn.sock_id) {
                sys::close_raw(raw);
            }
        }
        self.entries.clear();
        self.pid = me;
    }

    /// Starts a tracker (replacing a dead one) and tells it every entry.
    fn restart(&mut self) -> Result<()> {
        if let Some(old) = self.conn.take() {
            registry::lock().remove_internal(old.sock.as_raw_fd());
        }
        let conn = start()?;
        for entry in &self.entries {
            sys::send_all(conn.sock.as_fd(), &message(REGISTER, entry))
                .map_err(|e| Error::io("telling a new shared-memory tracker about this process's segments", e))?;
        }
        registry::lock().add_internal(conn.sock.as_raw_fd());
        self.conn = Some(conn);
        Ok(())
    }
}

/// Starts this process's tracker unless it runs already, so that a
/// `create` that goes on to make a segment can register it at once.
pub(crate) fn ensure_started() -> Result<()> {
    with_state(|state| if state.conn.is_none() { state.restart() } else { Ok(()) })
}

/// Registers a segment this process has just created. A tracker that was
/// killed is replaced (and told about every segment still registered).
pub(crate) fn register(name: &str, id: FileId) -> Result<()> {
    let entry = Entry { name: name.to_owned(), id };
    with_state(|state| {
        let msg = message(REGISTER, &entry);
        let sent = state.conn.as_ref().is_some_and(|c| sys::send_all(c.sock.as_fd(), &msg).is_ok());
        state.entries.insert(entry.clone());
        if sent {
            return Ok(());
        }
        state.restart().inspect_err(|_| {
            state.entries.remove(&entry);
        })
    })
}

/// Forgets a segment that was unlinked (nothing happens if this process
/// did not register it).
pub(crate) fn unregister(name: &str, id: FileId) {
    let entry = Entry { name: name.to_owned(), id };
    with_state(|state| {
        if state.entries.remove(&entry) {
            if let Some(conn) = &state.conn {
                let _ = sys::send_all(conn.sock.as_fd(), &message(UNREGISTER, &entry));
            }
        }
    })
}

fn start_error(what: &str, e: io::Error) -> Error {
    Error::new(
        ErrorKind::Io,
        format!(
            "could not start the shared-memory tracker ({what}: {e}); SharedMemory::create_untracked works without \
             it"
        ),
    )
    .with_source(e)
}

/// Starts a tracker for this process and waits until it is ready.
fn start() -> Result<Conn> {
    let me = sys::getpid();
    let (ours, theirs) = sys::socketpair_seqpacket().map_err(|e| start_error("socketpair", e))?;
    let title = CString::new(format!("multiproc: shared-memory tracker for {me}")).expect("no NUL in the title");
    let spec = runtime::exec_spec(vec![title], Role::ShmTracker { creator: me }, &[]).map_err(|e| {
        Error::new(
            e.kind(),
            format!("could not start the shared-memory tracker: {e}; SharedMemory::create_untracked works without it"),
        )
    })?;
    let pid = sys::spawn_exec(&spec, theirs.as_fd(), false).map_err(|e| start_error("fork and exec", e))?;
    drop(theirs);
    let deadline = Instant::now() + START_TIMEOUT;
    reap_first_copy(pid, deadline)?;
    wait_ready(&ours, deadline)?;
    let (sock_id, _) = sys::file_id(ours.as_fd()).map_err(|e| start_error("fstat", e))?;
    Ok(Conn { sock: ours, sock_id })
}

/// Reaps the tracker's first copy, which exits as soon as it has forked
/// the detached one.
fn reap_first_copy(pid: i32, deadline: Instant) -> Result<()> {
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            sys::kill_and_reap(pid);
            return Err(start_error("pidfd_open", e));
        }
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut set = [PollFd::new(&pidfd, PollFlags::IN)];
        let ready = sys::poll(&mut set, Some(left)).map_err(|e| start_error("poll", e))? > 0;
        if ready {
            let _ = sys::pidfd_wait(pidfd.as_fd(), false);
            return Ok(());
        }
        if left.is_zero() {
            let _ = sys::pidfd_signal(pidfd.as_fd(), sys::SIGKILL);
            let _ = sys::pidfd_wait(pidfd.as_fd(), true);
            return Err(start_error("waiting for it to detach", io::ErrorKind::TimedOut.into()));
        }
    }
}

/// Waits for the detached tracker's `ready`.
fn wait_ready(sock: &OwnedFd, deadline: Instant) -> Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut set = [PollFd::new(sock, PollFlags::IN)];
        if sys::poll(&mut set, Some(left)).map_err(|e| start_error("poll", e))? > 0 {
            let mut buf = Vec::new();
            return match sys::read(sock.as_fd(), &mut buf, 64) {
                Ok(_) if buf == READY => Ok(()),
                Ok(0) => Err(start_error("it exited before it was ready", io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => Err(start_error("it answered something else than ready", io::ErrorKind::InvalidData.into())),
                Err(e) => Err(start_error("reading its answer", e)),
            };
        }
        if left.is_zero() {
            return Err(start_error("waiting for it to be ready", io::ErrorKind::TimedOut.into()));
        }
    }
}

// ---------------------------------------------------------------------------
// The tracker's side.

/// Serves as the tracker of process `creator` on `control`, and exits
/// once `creator` has ended and its segments are removed. Runs from the
/// bootstrap, before `main`, in a fresh copy of the executable.
pub(crate) fn serve(control: OwnedFd, creator: i32) -> ! {
    let creator_fd = match sys::parent_pidfd(creator) {
        Ok(Some(fd)) => fd,
        // The creator is gone already: it registered nothing.
        _ => sys::exit_now(0),
    };
    if sys::detach().is_err() {
        sys::exit_now(1);
    }
    // argv[0] has the title already; this sets the name `top` shows.
    sys::set_title(&format!("multiproc: shared-memory tracker for {creator}"));
    if sys::set_nonblocking(control.as_fd(), true).is_err() || sys::send_all(control.as_fd(), READY).is_err() {
        sys::exit_now(0);
    }
    let mut live = BTreeSet::new();
    let mut open = true;
    loop {
        let (readable, creator_gone) = {
            let mut set = vec![PollFd::new(&creator_fd, PollFlags::IN)];
            if open {
                set.push(PollFd::new(&control, PollFlags::IN));
            }
            if sys::poll(&mut set, None).is_err() {
                // Out of memory for the poll set, say; try again shortly.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            (open && !set[1].revents().is_empty(), !set[0].revents().is_empty())
        };
        if open && (readable || creator_gone) {
            open = drain(&control, &mut live);
        }
        if creator_gone {
            remove_all(&live);
            sys::exit_now(0);
        }
        if !open && live.is_empty() {
            // The creator closed the connection with nothing registered
            // (its start-up gave up on us): nothing will ever need removing.
            sys::exit_now(0);
        }
    }
}

/// Applies every message waiting on the socket; false at end of file.
fn drain(control: &OwnedFd, live: &mut BTreeSet<Entry>) -> bool {
    let mut buf = Vec::with_capacity(MAX_MESSAGE + 1);
    loop {
        buf.clear();
        match sys::read(control.as_fd(), &mut buf, MAX_MESSAGE + 1) {
            Ok(0) => return false,
            Ok(_) => match parse(&buf) {
                Some((REGISTER, entry)) => {
                    live.insert(entry);
                }
                Some((UNREGISTER, entry)) => {
                    live.remove(&entry);
                }
                _ => {}
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

fn remove_all(live: &BTreeSet<Entry>) {
    for entry in live {
        if let Err(e) = unlink_if_same(&entry.name, entry.id) {
            eprintln!("multiproc: the shared-memory tracker could not remove segment {:?}: {e}", entry.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_junk_is_ignored() {
        let entry = Entry { name: "psm_0123abcd".into(), id: FileId { dev: 7, ino: u64::MAX - 1 } };
        let m = message(REGISTER, &entry);
        assert_eq!(parse(&m), Some((REGISTER, entry.clone())));
        assert_eq!(parse(&message(UNREGISTER, &entry)).map(|(op, _)| op), Some(UNREGISTER));
        let longest = Entry { name: "n".repeat(255), id: entry.id };
        assert_eq!(message(REGISTER, &longest).len(), MAX_MESSAGE);
        assert_eq!(parse(&m[..17]), None, "no name");
        assert_eq!(parse(&m[..5]), None);
        assert_eq!(parse(b""), None);
        let mut bad = m.clone();
        bad.push(0xff);
        assert_eq!(parse(&bad), None, "not UTF-8");
    }
}
