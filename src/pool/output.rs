//! Children's output in the parent (`PoolBuilder::forward_output`,
//! `Process::forward_output`): each child's stdout and stderr are pipes
//! whose other ends one reader thread in the parent polls; every whole line
//! a child writes comes out of the parent's own stdout or stderr as one
//! write, tagged with the child's name and pid (`[ForkPoolWorker-1 4242]
//! ...`), so that lines of several children never interleave inside a
//! line. A last line without a newline comes out when the child ends. A
//! third pipe carries its log records (`crate::logging`).

use std::io::Write;
use std::sync::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::logging;
use crate::runtime::registry;
use crate::sys::{self, AsFd, AsRawFd, OwnedFd, PollFd, PollFlags};

/// How many pipes a child's output takes: stdout, stderr, log records.
pub(crate) const PIPES: usize = 3;

/// The child's ends: its stdout, its stderr and its log records. They
/// travel with the child's argument (inherited by a fork child, passed
/// with `SCM_RIGHTS` to the others), last among its fds.
#[derive(Debug)]
pub(crate) struct ChildEnds(pub(crate) [OwnedFd; PIPES]);

/// In the child: its stdout and stderr become the pipes of `ends` (its last
/// [`PIPES`] fds), and its log records go to the third at `levels`
/// (features `log`, `tracing`).
pub(crate) fn redirect(ends: Vec<OwnedFd>, levels: logging::Levels) {
    let Ok([out, err, records]) = <[OwnedFd; PIPES]>::try_from(ends) else { return };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let _ = sys::dup_onto_stdout(out.as_fd());
    let _ = sys::dup_onto_stderr(err.as_fd());
    logging::forward_from_worker(records, levels);
}

/// The parent's ends, until the child has started (its pid is in the tag).
#[derive(Debug)]
pub(crate) struct ParentEnds(Option<[OwnedFd; PIPES]>);

impl Drop for ParentEnds {
    /// Ends never handed to the reader (the child did not start) are no
    /// longer internal fds.
    fn drop(&mut self) {
        if let Some(fds) = self.0.take() {
            let mut reg = registry::lock();
            for fd in &fds {
                reg.remove_internal(fd.as_raw_fd());
            }
        }
    }
}

impl ParentEnds {
    /// Hands the ends to the reader thread, for child `name`, `pid`.
    pub(crate) fn forward(mut self, name: &str, pid: i32) {
        let Some([out, err, records]) = self.0.take() else { return };
        let sources = [
            Source::new(out, name, pid, Stream::Stdout),
            Source::new(err, name, pid, Stream::Stderr),
            Source::new(records, name, pid, Stream::Records),
        ];
        FORWARDED_ANY.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut state = STATE.lock().unwrap_or_else(|p| p.into_inner());
        state.open.push((pid, PIPES));
        state.pending.extend(sources);
        if let Some(wake) = &state.wake {
            let _ = sys::write_all(wake.as_fd(), &1u64.to_ne_bytes());
        }
        if !state.running {
            state.running = true;
            if std::thread::Builder::new().name("multiproc-output".into()).spawn(read_all).is_err() {
                state.running = false;
            }
        }
    }
}

/// The pipes for one child.
pub(crate) fn pipes() -> Result<(ChildEnds, ParentEnds)> {
    let what = "creating a child's output pipes";
    let (out_r, out_w) = sys::pipe().map_err(|e| Error::io(what, e))?;
    let (err_r, err_w) = sys::pipe().map_err(|e| Error::io(what, e))?;
    let (log_r, log_w) = sys::pipe().map_err(|e| Error::io(what, e))?;
    // Forked children close the parent's ends (internal fds), so that they
    // live in the parent only, from now on.
    let mut reg = registry::lock();
    for fd in [&out_r, &err_r, &log_r] {
        reg.add_internal(fd.as_raw_fd());
    }
    drop(reg);
    Ok((ChildEnds([out_w, err_w, log_w]), ParentEnds(Some([out_r, err_r, log_r]))))
}

impl Drop for Source {
    fn drop(&mut self) {
        registry::lock().remove_internal(self.fd.as_raw_fd());
    }
}

/// The most bytes held for one line before it is written as it is.
const LONGEST_LINE: usize = 1 << 20;

/// What a pipe carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
    /// Framed log records.
    Records,
}

/// One pipe the reader thread reads.
struct Source {
    fd: OwnedFd,
    name: String,
    pid: i32,
    stream: Stream,
    /// The start of a line (or record) not ended yet.
    partial: Vec<u8>,
}

impl Source {
    fn new(fd: OwnedFd, name: &str, pid: i32, stream: Stream) -> Source {
        Source { fd, name: name.to_owned(), pid, stream, partial: Vec::new() }
    }

    /// Writes every whole line held, and with `end` the rest too (also
    /// when the rest has grown past 1 MiB without a newline: it goes as a
    /// line of its own rather than without bound). Records are emitted
    /// again through the parent's logger, whole ones only.
    fn emit(&mut self, end: bool) {
        if self.stream == Stream::Records {
            super::progress::above_bars(|| logging::reemit_all(&mut self.partial, &self.name, self.pid));
            return;
        }
        let end = end || self.partial.len() > LONGEST_LINE;
        let upto =
            if end { self.partial.len() } else { self.partial.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) };
        if upto == 0 {
            return;
        }
        let prefix = format!("[{} {}] ", self.name, self.pid);
        let mut text = Vec::with_capacity(upto + 64);
        for line in self.partial[..upto].split_inclusive(|&b| b == b'\n') {
            text.extend_from_slice(prefix.as_bytes());
            text.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                text.push(b'\n');
            }
        }
        self.partial.drain(..upto);
        // One write per batch of whole lines, under the stream's lock, so
        // that the parent's own prints do not cut into them; above a
        // progress bar being drawn (feature `progress`).
        super::progress::above_bars(|| {
            if self.stream == Stream::Stderr {
                let _ = std::io::stderr().lock().write_all(&text);
            } else {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&text);
                let _ = out.flush();
            }
        });
    }
}

struct State {
    /// Sources registered and not taken by the reader thread yet.
    pending: Vec<Source>,
    /// Each child's pid and how many of its pipes are still open.
    open: Vec<(i32, usize)>,
    /// Wakes the reader thread for new sources.
    wake: Option<OwnedFd>,
    running: bool,
}

static STATE: Mutex<State> = Mutex::new(State { pending: Vec::new(), open: Vec::new(), wake: None, running: false });
/// Whether any child's output was ever forwarded (a join that finds it
/// false has nothing to wait for).
static FORWARDED_ANY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Told when the reader thread has read every source to its end.
static DRAINED: Condvar = Condvar::new();

/// Waits (up to `limit`) until the reader thread has read child `pid`'s
/// output to its end: a child that was joined has printed all it will.
pub(crate) fn drain_child(pid: i32, limit: std::time::Duration) {
    if !FORWARDED_ANY.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let deadline = std::time::Instant::now() + limit;
    let mut state = STATE.lock().unwrap_or_else(|p| p.into_inner());
    while state.open.iter().any(|&(p, _)| p == pid) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        state = DRAINED.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
    }
}

/// Waits (up to `limit`) until the reader thread has read every child's
/// output to its end: a pool that was joined has printed all it will.
pub(crate) fn drain(limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    let mut state = STATE.lock().unwrap_or_else(|p| p.into_inner());
    while state.running {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        state = DRAINED.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
    }
}

/// The reader thread: reads every source until its worker closes it, and
/// ends when none is left.
fn read_all() {
    let wake = match sys::eventfd() {
        Ok(fd) => fd,
        Err(_) => {
            STATE.lock().unwrap_or_else(|p| p.into_inner()).running = false;
            return;
        }
    };
    let mut sources: Vec<Source> = Vec::new();
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        {
            let mut state = STATE.lock().unwrap_or_else(|p| p.into_inner());
            if state.wake.is_none() {
                state.wake = wake.try_clone().ok();
            }
            sources.append(&mut state.pending);
            if sources.is_empty() {
                state.running = false;
                state.wake = None;
                DRAINED.notify_all();
                return;
            }
        }
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(1 + sources.len());
        fds.push(PollFd::new(&wake, PollFlags::IN));
        for s in &sources {
            fds.push(PollFd::new(&s.fd, PollFlags::IN));
        }
        if sys::poll(&mut fds, None).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds[1..].iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        let mut counter = Vec::with_capacity(8);
        let _ = sys::read(wake.as_fd(), &mut counter, 8);
        let mut closed: Vec<i32> = Vec::new();
        let mut i = 0;
        sources.retain_mut(|s| {
            let was_ready = ready.get(i).copied().unwrap_or(false);
            i += 1;
            if !was_ready {
                return true;
            }
            buf.clear();
            match sys::read(s.fd.as_fd(), &mut buf, 64 << 10) {
                Ok(n) if n > 0 => {
                    s.partial.extend_from_slice(&buf);
                    s.emit(false);
                    true
                }
                _ => {
                    s.emit(true);
                    closed.push(s.pid);
                    false
                }
            }
        });
        if !closed.is_empty() {
            let mut state = STATE.lock().unwrap_or_else(|p| p.into_inner());
            for pid in closed {
                if let Some(i) = state.open.iter().position(|&(p, _)| p == pid) {
                    state.open[i].1 -= 1;
                    if state.open[i].1 == 0 {
                        state.open.swap_remove(i);
                    }
                }
            }
            DRAINED.notify_all();
        }
    }
}
