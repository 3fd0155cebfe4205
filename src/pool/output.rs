//! Workers' output in the parent (`PoolBuilder::forward_output`): each
//! worker's stdout and stderr are pipes whose other ends one reader thread
//! in the parent polls; every whole line a worker writes comes out of the
//! parent's own stdout or stderr as one write, tagged with the worker's
//! name and pid (`[ForkPoolWorker-1 4242] ...`), so that lines of several
//! workers never interleave inside a line. A last line without a newline
//! comes out when the worker ends.

use std::io::Write;
use std::sync::{Condvar, Mutex};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, Result};
use crate::logging;
use crate::runtime::registry;
use crate::sys::{self, AsFd, AsRawFd, OwnedFd, PollFd, PollFlags};

codec::fd_newtype!(
    /// A pipe end a worker writes its output to, as it travels in the
    /// worker's configuration.
    OutputFd,
    "a pool worker's output pipe"
);

/// The worker's ends: its stdout, its stderr and its log records, with
/// the levels of records to send.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerEnds(OutputFd, OutputFd, OutputFd, logging::Levels);

impl WorkerEnds {
    /// In the worker: its stdout and stderr become the pipes, and its log
    /// records go to the third (features `log`, `tracing`).
    pub(crate) fn redirect(self) {
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        let _ = sys::dup_onto_stdout(self.0.0.as_fd());
        let _ = sys::dup_onto_stderr(self.1.0.as_fd());
        logging::forward_from_worker(self.2.0, self.3);
    }
}

/// The parent's ends, until the worker has started (its pid is in the tag).
#[derive(Debug)]
pub(crate) struct ParentEnds(OwnedFd, OwnedFd, OwnedFd);

impl ParentEnds {
    /// Hands the ends to the reader thread, for worker `name`, `pid`.
    pub(crate) fn forward(self, name: &str, pid: i32) {
        let sources = [
            Source::new(self.0, name, pid, Stream::Stdout),
            Source::new(self.1, name, pid, Stream::Stderr),
            Source::new(self.2, name, pid, Stream::Records),
        ];
        let mut state = STATE.lock().unwrap_or_else(|p| p.into_inner());
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

/// Three pipes for one worker.
pub(crate) fn pipes() -> Result<(WorkerEnds, ParentEnds)> {
    let what = "creating a pool worker's output pipes";
    let (out_r, out_w) = sys::pipe().map_err(|e| Error::io(what, e))?;
    let (err_r, err_w) = sys::pipe().map_err(|e| Error::io(what, e))?;
    let (log_r, log_w) = sys::pipe().map_err(|e| Error::io(what, e))?;
    let levels = logging::Levels::current();
    Ok((WorkerEnds(OutputFd(out_w), OutputFd(err_w), OutputFd(log_w), levels), ParentEnds(out_r, err_r, log_r)))
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
    pid: String,
    stream: Stream,
    /// The start of a line (or record) not ended yet.
    partial: Vec<u8>,
}

impl Source {
    fn new(fd: OwnedFd, name: &str, pid: i32, stream: Stream) -> Source {
        // Forked children close it (an internal fd), so that it lives in the
        // parent only.
        registry::lock().add_internal(fd.as_raw_fd());
        Source { fd, name: name.to_owned(), pid: pid.to_string(), stream, partial: Vec::new() }
    }

    /// Writes every whole line held, and with `end` the rest too (also
    /// when the rest has grown past 1 MiB without a newline: it goes as a
    /// line of its own rather than without bound). Records are emitted
    /// again through the parent's logger, whole ones only.
    fn emit(&mut self, end: bool) {
        if self.stream == Stream::Records {
            super::progress::above_bars(|| logging::reemit_all(&mut self.partial, &self.name, &self.pid));
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
    /// Wakes the reader thread for new sources.
    wake: Option<OwnedFd>,
    running: bool,
}

static STATE: Mutex<State> = Mutex::new(State { pending: Vec::new(), wake: None, running: false });
/// Told when the reader thread has read every source to its end.
static DRAINED: Condvar = Condvar::new();

/// Waits (up to `limit`) until the reader thread has read every worker's
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
                    false
                }
            }
        });
    }
}
