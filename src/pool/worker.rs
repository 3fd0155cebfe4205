//! A pool worker: a child process that runs chunks until told to stop.
//!
//! It is started as an ordinary multiproc child whose target is [`serve`],
//! and talks to the dispatcher on its control socket. It reads as many
//! task frames as one read brings, runs them in order, and writes their
//! results back in one write. When its input runs dry it keeps looking for
//! a short while before it sleeps, because the next task usually follows
//! within microseconds and a wake-up costs more than that.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::status::{PageFd, WorkerPage};
use super::tokens;
use super::wire;
use crate::codec::{self, FrameStream, Sink};
use crate::runtime::{self, Failure, TaskId, registry};
use crate::sys::{self, AsFd, AsRawFd, BorrowedFd, PollFd, PollFlags};

/// What a worker needs to know, sent as its start argument.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerConfig {
    /// The initializer's task and encoded argument (with the fds of the
    /// handles in it).
    pub(crate) initializer: Option<(TaskId, codec::Encoded)>,
    /// Leave after this many chunks (Python's `maxtasksperchild`).
    pub(crate) max_tasks: Option<u64>,
    /// Leave after a chunk that leaves the resident memory above this
    /// (billiard's `max_memory_per_child`).
    pub(crate) max_memory: Option<u64>,
    /// A hard cap on what the worker's tasks may allocate (RLIMIT_DATA).
    pub(crate) memory_limit: Option<u64>,
    /// Measure each chunk's CPU time and peak memory (`USAGE` frames).
    pub(crate) track_usage: bool,
    /// The token budget it shares with other workers and nested pools: a
    /// token per chunk.
    pub(crate) tokens: Option<tokens::Budget>,
    /// Its status page, where it logs what it does and keeps its results
    /// until they are sent.
    pub(crate) status: PageFd,
}

/// How long an idle worker keeps looking for input before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

/// The worker's main loop. Leaves the process (through `runtime::finish`)
/// when told to, after its quota of chunks, at end of file, or on a broken
/// stream; returns only if it cannot find its control socket.
pub(crate) fn serve(cfg: WorkerConfig) {
    let Some(link) = registry::lock().parent_link.clone() else {
        return;
    };
    sys::watch_parent_from_thread(link.as_raw_fd());
    runtime::quiet_panics();
    let _ = sys::set_nonblocking(link.as_fd(), true);
    runtime::finish(run(&mut Socket(link.as_fd()), cfg))
}

/// Where a worker's tasks come from and where its results go: a local
/// worker's control socket ([`Socket`]), or an MPI rank's messages
/// (`crate::mpi`).
pub(crate) trait Channel {
    /// Waits until `stream` has more input (first looking for a short while
    /// without sleeping); false at the end of the input or on an error.
    fn refill(&mut self, stream: &mut FrameStream) -> bool;
    /// Sends `bytes` (whole frames).
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Called before each task starts: a chance to learn, cheaply, that
    /// the tasks not started are cancelled (which `claim` then sees).
    fn look_for_stop(&mut self) {}
}

/// A local worker's control socket (non-blocking).
pub(crate) struct Socket<'a>(pub(crate) BorrowedFd<'a>);

impl Channel for Socket<'_> {
    fn refill(&mut self, stream: &mut FrameStream) -> bool {
        refill(self.0, stream)
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        sys::send_all(self.0, bytes)
    }
}

/// The loop itself, on `chan`: runs chunks until told to stop, its quota,
/// the end of its input or a broken stream, and returns the exit code.
pub(crate) fn run(chan: &mut impl Channel, cfg: WorkerConfig) -> i32 {
    let Ok(mut page) = WorkerPage::attach(cfg.status) else {
        return 1;
    };
    let _limit = match cfg.memory_limit.map(|bytes| MemoryLimit::set(&page, bytes)).transpose() {
        Ok(limit) => limit,
        Err(e) => {
            let failure = Failure::Error(crate::error::Error::io("setting the pool's memory_limit (RLIMIT_DATA)", e));
            page.out.extend_from_slice(&wire::init_failed(&failure));
            page.commit();
            let _ = page.flush(|b| chan.send(b));
            return 1;
        }
    };
    if let Some((id, arg)) = cfg.initializer {
        if let Err(failure) = initialize(id, arg) {
            page.out.extend_from_slice(&wire::init_failed(&failure));
            page.commit();
            let _ = page.flush(|b| chan.send(b));
            return 1;
        }
    }
    if let Some(t) = &cfg.tokens {
        tokens::adopt(t);
    }
    let ready = codec::frame_of(wire::READY, &(), "a ready note").expect("() serializes");
    page.out.extend_from_slice(&ready);
    page.commit();
    if page.flush(|b| chan.send(b)).is_err() {
        return 0;
    }
    let mut stream = FrameStream::new(codec::max_frame_size());
    // Chunks received (the next one's number) and chunks done (run, or
    // skipped because they were cancelled), for maxtasksperchild.
    let mut received = 0u64;
    let mut done = 0u64;
    let mut batch = Batch::default();
    // Looked up once: the memory cgroup whose use max_memory_per_child reads.
    let group = cfg.max_memory.and_then(|_| runtime::own_memory_group());
    loop {
        let frame = match stream.next_buffered("the pool's task stream") {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                if page.flush(|b| chan.send(b)).is_err() || !chan.refill(&mut stream) {
                    return 0;
                }
                batch.flushed();
                continue;
            }
            Err(_) => return 1,
        };
        if batch.should_flush(!stream.has_buffered(), page.held()) && page.flush(|b| chan.send(b)).is_err() {
            return 0;
        }
        match Order::of(&frame) {
            Ok(Order::Task(payload)) => {
                let seq = received;
                received += 1;
                chan.look_for_stop();
                if page.claim(seq) {
                    if let Some(t) = &cfg.tokens {
                        tokens::take(t);
                    }
                    let started = Instant::now();
                    let run = if cfg.track_usage { wire::run_task_measured } else { wire::run_task };
                    if run(payload, seq, &mut page).is_err() {
                        let _ = page.flush(|b| chan.send(b));
                        return 1;
                    }
                    batch.ran(started, wire::delivery(payload));
                    if let Some(t) = &cfg.tokens {
                        tokens::give_back(t);
                    }
                }
                done += 1;
                if cfg.max_tasks.is_some_and(|max| done >= max) || over_memory(cfg.max_memory, group.as_deref()) {
                    // What it had not started goes to another worker.
                    let _ = page.flush(|b| chan.send(b));
                    return 0;
                }
            }
            Ok(Order::Exit) => {
                let _ = page.flush(|b| chan.send(b));
                return 0;
            }
            Err(_) => return 1,
        }
    }
}

/// What a frame from the dispatcher tells a worker to do.
#[derive(Debug)]
pub(crate) enum Order<'a> {
    /// Run this `TASK` payload.
    Task(&'a [u8]),
    /// Leave.
    Exit,
}

impl Order<'_> {
    /// The order `frame` gives; a frame of another kind means that the
    /// stream is corrupt, and the worker leaves with exit code 1.
    pub(crate) fn of(frame: &codec::Frame) -> crate::error::Result<Order<'_>> {
        match frame.kind {
            wire::TASK => Ok(Order::Task(&frame.payload)),
            wire::EXIT => Ok(Order::Exit),
            other => Err(crate::error::Error::new(
                crate::error::ErrorKind::Protocol,
                format!("a pool worker got a frame of unknown kind {other}; its task stream is corrupt"),
            )),
        }
    }
}

/// When to send results that are ready. Results always leave before the
/// last task already received starts (it may be a long one, and the
/// dispatcher needs to know to send more), and once 1 MiB is waiting.
/// Otherwise, for a prompt chunk: at once, unless tasks come fast (under
/// 20 µs on average), in which case up to 64 go in one write, none older
/// than 200 µs. For bulk chunks (`map`), up to 2 ms of results go in one
/// write: every write wakes the parent, which takes CPU from the workers.
#[derive(Debug, Default)]
struct Batch {
    /// Results made and not sent, and when the first of them was.
    held: u32,
    since: Option<Instant>,
    /// Whether a held result is wanted promptly.
    prompt: bool,
    /// The mean task time, in µs.
    mean_us: f64,
}

/// Results held before a write, at most.
const HOLD_BYTES: usize = 1 << 20;
const HOLD_PROMPT: Duration = Duration::from_micros(200);
const HOLD_BULK: Duration = Duration::from_millis(2);

impl Batch {
    /// Whether to send what is ready before the next task, `last` being
    /// whether it is the last task received so far and `bytes` what is
    /// held.
    fn should_flush(&mut self, last: bool, bytes: usize) -> bool {
        if self.held == 0 {
            return false;
        }
        let age = self.since.map_or(Duration::ZERO, |t| t.elapsed());
        let flush = last
            || bytes >= HOLD_BYTES
            || if self.prompt {
                self.held >= 64 || self.mean_us >= 20.0 || age >= HOLD_PROMPT
            } else {
                age >= HOLD_BULK
            };
        if flush {
            self.flushed();
        }
        flush
    }

    fn ran(&mut self, started: Instant, delivery: wire::Delivery) {
        let us = started.elapsed().as_secs_f64() * 1e6;
        // The first task sets the mean outright: a pool of slow tasks should
        // not hold its first results while the average catches up.
        self.mean_us = if self.mean_us == 0.0 { us } else { 0.9 * self.mean_us + 0.1 * us };
        self.held += 1;
        self.since.get_or_insert(started);
        self.prompt |= delivery == wire::Delivery::Prompt;
    }

    fn flushed(&mut self) {
        self.held = 0;
        self.since = None;
        self.prompt = false;
    }
}

/// A worker's hard memory cap, while it runs: `RLIMIT_DATA`, and a
/// SIGABRT handler that notes in the status page an abort that follows a
/// refused allocation, for the parent to report as `MemoryExceeded`.
struct MemoryLimit;

impl MemoryLimit {
    fn set(page: &WorkerPage, bytes: u64) -> std::io::Result<MemoryLimit> {
        sys::limit_data_growth(bytes)?;
        // The limit as the user gave it, for the error.
        sys::note_out_of_memory(page.memory_limit(bytes));
        Ok(MemoryLimit)
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        sys::forget_out_of_memory();
    }
}

/// Whether this process's memory is above `cap`: what its memory cgroup
/// (`group`) holds, if it has one, else its resident memory.
fn over_memory(cap: Option<u64>, group: Option<&std::path::Path>) -> bool {
    cap.is_some_and(|cap| {
        let used = group.and_then(sys::memory_group_usage);
        used.or_else(|| sys::rss_of(sys::getpid())).is_some_and(|bytes| bytes > cap)
    })
}

/// Runs the initializer; its failure (panic or error) comes back.
fn initialize(id: TaskId, arg: codec::Encoded) -> std::result::Result<(), Failure> {
    let call = id.resolve().map_err(Failure::Error)?;
    let reply = codec::with_incoming(arg.fds, || call(&arg.bytes));
    match codec::parse_frame(&reply, u64::MAX >> 8, "the initializer's reply") {
        Ok(frame) if frame.kind == codec::kind::VALUE => Ok(()),
        Ok(frame) if frame.kind == codec::kind::PANIC => {
            let panic = codec::decode(&frame.payload, "a panic report").map_err(Failure::Error)?;
            Err(Failure::Panic(panic))
        }
        Ok(frame) => {
            let remote: crate::error::RemoteError =
                codec::decode(&frame.payload, "an error report").map_err(Failure::Error)?;
            Err(Failure::Error(crate::error::Error::new(remote.kind, remote.message)))
        }
        Err(e) => Err(Failure::Error(e)),
    }
}

/// Reads more input: first without sleeping (but yielding the CPU between
/// attempts), for a short while, then blocking. False at end of file or on an error.
fn refill(fd: BorrowedFd<'_>, stream: &mut FrameStream) -> bool {
    let start = Instant::now();
    loop {
        match stream.fill(fd, "the pool's task stream") {
            Ok(Some(0)) | Err(_) => return false,
            Ok(Some(_)) => return true,
            Ok(None) => {}
        }
        if start.elapsed() >= SPIN {
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            if sys::poll(&mut fds, None).is_err() {
                return false;
            }
        } else {
            // On a busy machine this worker's core is likely wanted by the
            // parent, which is about to send the next task: let it run.
            std::thread::yield_now();
        }
    }
}
