//! The dispatcher: one thread that owns every worker's socket and pidfd,
//! sends chunks, collects results, and deals with deaths and timeouts.
//!
//! Callers add chunks to a queue and send what fits right away (no hand-off
//! to the thread on the fast path). Each worker holds a small window of
//! chunks, so that it never waits for the parent between two of them; the
//! window grows for workers that finish chunks quickly (up to about 2 ms of
//! queued work) and is a single chunk for a task with a timeout, so that
//! the timeout counts from its start and killing the worker hurts nothing
//! else. When a worker's pidfd fires, its chunks fail with `WorkerLost` (or
//! `Timeout`), a new worker takes its place, and the pool goes on.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::job::{ChunkOutcome, Job};
use super::wire;
use super::worker::{self, WorkerConfig};
use crate::codec::{self, Frame, FrameStream};
use crate::context::StartMethod;
use crate::error::{Error, ErrorKind, RemoteError, Result};
use crate::process::Process;
use crate::runtime::{ChildRecord, TaskId, registry};
use crate::sys::{self, AsFd, AsRawFd, OwnedFd, PollFd, PollFlags};

/// A pool's settings, fixed at creation.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) method: StartMethod,
    pub(crate) initializer: Option<(TaskId, Arc<codec::Encoded>)>,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) max_in_flight: usize,
}

/// A chunk waiting for a worker.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) job: Arc<Job>,
    pub(crate) index: u32,
    pub(crate) count: u32,
    /// The whole `TASK` frame.
    pub(crate) frame: Vec<u8>,
    pub(crate) timeout: Option<Duration>,
}

impl Pending {
    /// Encodes the chunk `head` describes into its `TASK` frame.
    pub(crate) fn encode<A: serde::Serialize + 'static>(
        job: &Arc<Job>,
        head: wire::ChunkHead,
        items: impl IntoIterator<Item = A>,
        timeout: Option<Duration>,
    ) -> Result<Pending> {
        let items = items.into_iter();
        // A first guess only, capped: an endless input reports any size.
        let guess = items.size_hint().0.saturating_mul(std::mem::size_of::<A>().max(1)).min(1 << 20);
        let mut frame = Vec::with_capacity(64 + guess);
        let count = wire::append_task(&mut frame, &head, items)?;
        codec::check_outgoing(&frame, "a chunk of encoded arguments")?;
        Ok(Pending { job: Arc::clone(job), index: head.index, count, frame, timeout })
    }
}

#[derive(Debug)]
struct InFlight {
    job: Arc<Job>,
    index: u32,
    count: u32,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    timed_out: bool,
}

#[derive(Debug)]
enum Status {
    Running,
    Closed,
    Terminated,
    Broken(Error),
}

/// How fast a worker gets through chunks: the mean time between its
/// results while it is busy.
#[derive(Debug, Default)]
struct Pace {
    busy_since: Option<Instant>,
    mean_us: f64,
}

impl Pace {
    /// Notes `results` chunks that came back together at `now` (a worker
    /// sends several in one write when they come fast).
    fn note(&mut self, results: usize, now: Instant, still_busy: bool) {
        if let Some(since) = self.busy_since {
            let us = now.saturating_duration_since(since).as_secs_f64() * 1e6 / results as f64;
            self.mean_us = if self.mean_us <= 0.0 { us } else { 0.8 * self.mean_us + 0.2 * us };
        }
        self.busy_since = still_busy.then_some(now);
    }
}

/// Queued work a worker is given, in its own time.
const WINDOW_WORK_US: f64 = 2000.0;
const MAX_WINDOW: usize = 64;

#[derive(Debug)]
struct Worker {
    child: Arc<ChildRecord>,
    stream: FrameStream,
    out: Vec<u8>,
    in_flight: VecDeque<InFlight>,
    sent: u64,
    /// Told to leave, or at its quota: gets nothing more.
    retiring: bool,
    /// Signalled by us: it is going away.
    killed: bool,
    /// What its chunks fail with if it dies (a broken stream).
    failure: Option<Error>,
    pace: Pace,
    /// Started and initialized (it said READY): until then its timed
    /// chunks' deadlines wait, so that start-up and the initializer do not
    /// count against a task's timeout.
    ready: bool,
}

impl Worker {
    fn window(&self) -> usize {
        if self.pace.mean_us <= 0.0 {
            return 2;
        }
        ((WINDOW_WORK_US / self.pace.mean_us).ceil() as usize).clamp(2, MAX_WINDOW)
    }

    fn accepts(&self, timed: bool, max_tasks: Option<u64>) -> bool {
        if self.retiring || self.killed || max_tasks.is_some_and(|m| self.sent >= m) {
            return false;
        }
        if timed {
            return self.in_flight.is_empty();
        }
        self.in_flight.len() < self.window() && !self.in_flight.iter().any(|f| f.timeout.is_some())
    }

    /// Writes what it can of the output without blocking.
    fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        match sys::send_nonblocking(self.child.control(), &self.out) {
            Ok(n) => {
                self.out.drain(..n);
            }
            // A dead peer: its pidfd will say so.
            Err(_) => self.out.clear(),
        }
    }

    fn kill(&mut self) {
        self.killed = true;
        let _ = self.child.signal(sys::SIGKILL);
    }

    /// Reads every frame that has arrived.
    fn read(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            match self.stream.next_buffered("a pool worker's results") {
                Ok(Some(frame)) => {
                    frames.push(frame);
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    self.break_stream(e);
                    break;
                }
            }
            match self.stream.fill(self.child.control(), "a pool worker's results") {
                Ok(Some(n)) if n > 0 => {}
                Ok(_) => break,
                Err(e) => {
                    self.break_stream(e);
                    break;
                }
            }
        }
        frames
    }

    fn break_stream(&mut self, e: Error) {
        self.failure.get_or_insert(e);
        self.kill();
    }
}

#[derive(Debug)]
pub(crate) struct Dispatch {
    status: Status,
    workers: Vec<Worker>,
    queue: VecDeque<Pending>,
    started: u64,
}

/// What the pool's handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    state: Mutex<Dispatch>,
    wake: OwnedFd,
    thread: Mutex<Option<JoinHandle<()>>>,
    owner: u32,
}

impl Drop for Shared {
    fn drop(&mut self) {
        registry::lock().remove_internal(self.wake.as_raw_fd());
    }
}

impl Shared {
    /// Starts `config.processes` workers and the dispatcher thread.
    pub(crate) fn start(config: Config) -> Result<Arc<Shared>> {
        let wake = sys::eventfd().map_err(|e| Error::io("creating the pool's wake-up eventfd", e))?;
        registry::lock().add_internal(wake.as_raw_fd());
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(Dispatch {
                status: Status::Running,
                workers: Vec::new(),
                queue: VecDeque::new(),
                started: 0,
            }),
            wake,
            thread: Mutex::new(None),
            owner: std::process::id(),
        });
        {
            let mut d = shared.lock();
            for _ in 0..shared.config.processes {
                if let Err(e) = d.spawn_worker(&shared.config) {
                    d.terminate();
                    drop(d);
                    shared.reap_all();
                    return Err(e);
                }
            }
        }
        let runner = Arc::clone(&shared);
        let thread =
            std::thread::Builder::new().name("multiproc-pool".into()).spawn(move || runner.run()).map_err(|e| {
                shared.lock().terminate();
                shared.reap_all();
                Error::io("starting the pool's dispatcher thread", e)
            })?;
        *shared.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        Ok(shared)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Dispatch> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        let _ = sys::write_all(self.wake.as_fd(), &1u64.to_ne_bytes());
    }

    /// Fails unless this process owns the pool: a pool copied into a
    /// forked child has no workers and no dispatcher there.
    pub(crate) fn check_owner(&self) -> Result<()> {
        if std::process::id() == self.owner {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::InvalidState,
            format!(
                "this pool belongs to process {}, and a forked child only has a copy of it; create a new pool in the child",
                self.owner
            ),
        ))
    }

    /// Queues chunks and sends what fits.
    pub(crate) fn submit(&self, chunks: Vec<Pending>) -> Result<()> {
        self.check_owner()?;
        let mut d = self.lock();
        d.check_open()?;
        for p in &chunks {
            p.job.add_chunk(p.index, p.count);
        }
        d.queue.extend(chunks);
        let stuck = d.pump(&self.config);
        drop(d);
        if stuck {
            self.wake();
        }
        Ok(())
    }

    /// Cancels every queued chunk of `job`, if none of them has been sent;
    /// true if the job is now cancelled.
    pub(crate) fn cancel(&self, job: &Arc<Job>) -> bool {
        let mut d = self.lock();
        let sent = d.workers.iter().any(|w| w.in_flight.iter().any(|f| Arc::ptr_eq(&f.job, job)));
        let queued = d.queue.iter().any(|p| Arc::ptr_eq(&p.job, job));
        if sent || !queued {
            return false;
        }
        job.mark_cancelled();
        let mut kept = VecDeque::with_capacity(d.queue.len());
        for p in d.queue.drain(..) {
            if Arc::ptr_eq(&p.job, job) {
                p.job.finish(p.index, ChunkOutcome::Failed(cancelled()));
            } else {
                kept.push_back(p);
            }
        }
        d.queue = kept;
        true
    }

    /// Drops the queued chunks of a job nobody waits for any more.
    pub(crate) fn forget(&self, job: &Arc<Job>) {
        self.lock().queue.retain(|p| !Arc::ptr_eq(&p.job, job));
    }

    /// Cancels every queued chunk (`shutdown(cancel_futures=True)`).
    pub(crate) fn cancel_queued(&self) {
        let mut d = self.lock();
        for p in d.queue.drain(..) {
            p.job.mark_cancelled();
            p.job.finish(p.index, ChunkOutcome::Failed(cancelled()));
        }
    }

    /// No more tasks; the workers leave once the queued ones are done.
    pub(crate) fn close(&self) {
        let mut d = self.lock();
        if matches!(d.status, Status::Running) {
            d.status = Status::Closed;
        }
        drop(d);
        self.wake();
    }

    /// Stops now: queued and running tasks fail, workers are killed.
    pub(crate) fn terminate(&self) {
        self.lock().terminate();
        self.wake();
    }

    /// Whether the pool takes new tasks.
    pub(crate) fn is_running(&self) -> bool {
        matches!(self.lock().status, Status::Running)
    }

    /// Waits for the workers and the dispatcher thread to finish.
    pub(crate) fn join(&self) -> Result<()> {
        if matches!(self.lock().status, Status::Running) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "join() needs close() or terminate() first, as in Python; otherwise the pool would wait for tasks \
                 that may never come",
            ));
        }
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            if std::thread::current().id() != thread.thread().id() {
                let _ = thread.join();
            }
        }
        Ok(())
    }

    /// Kills and reaps every worker, without the dispatcher thread.
    fn reap_all(&self) {
        let workers = std::mem::take(&mut self.lock().workers);
        for mut w in workers {
            w.kill();
            let _ = w.child.wait(None);
            registry::lock().remove(&w.child);
        }
    }

    /// The dispatcher thread.
    fn run(&self) {
        loop {
            let (children, want_write, timeout) = {
                let d = self.lock();
                if d.finished() {
                    return;
                }
                let children: Vec<Arc<ChildRecord>> = d.workers.iter().map(|w| Arc::clone(&w.child)).collect();
                let want_write: Vec<bool> = d.workers.iter().map(|w| !w.out.is_empty()).collect();
                let timeout = d.next_deadline().map(|t| t.saturating_duration_since(Instant::now()));
                (children, want_write, timeout)
            };
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(1 + 2 * children.len());
            fds.push(PollFd::new(&self.wake, PollFlags::IN));
            for (child, &write) in children.iter().zip(&want_write) {
                let events = if write { PollFlags::IN | PollFlags::OUT } else { PollFlags::IN };
                fds.push(PollFd::from_borrowed_fd(child.control(), events));
                fds.push(PollFd::from_borrowed_fd(child.reaper_fd(), PollFlags::IN));
            }
            if sys::poll(&mut fds, timeout).is_err() {
                std::thread::yield_now();
            }
            let ended: Vec<bool> = (0..children.len()).map(|i| !fds[2 + 2 * i].revents().is_empty()).collect();
            drop(fds);
            let mut counter = Vec::with_capacity(8);
            let _ = sys::read(self.wake.as_fd(), &mut counter, 8);
            let mut d = self.lock();
            d.service(&self.config, &children, &ended);
        }
    }
}

fn cancelled() -> Error {
    Error::new(ErrorKind::Cancelled, "the task was cancelled before it started")
}

impl Dispatch {
    fn check_open(&self) -> Result<()> {
        match &self.status {
            Status::Running => Ok(()),
            Status::Closed | Status::Terminated => Err(Error::new(
                ErrorKind::InvalidState,
                "the pool is closed (close(), terminate() or shutdown() was called); submit tasks before closing it, \
                 or create a new pool",
            )),
            Status::Broken(e) => Err(e.duplicate()),
        }
    }

    fn finished(&self) -> bool {
        !matches!(self.status, Status::Running) && self.workers.is_empty()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.workers.iter().flat_map(|w| w.in_flight.iter()).filter(|f| !f.timed_out).filter_map(|f| f.deadline).min()
    }

    fn spawn_worker(&mut self, config: &Config) -> Result<()> {
        self.started += 1;
        let name = format!(
            "{}PoolWorker-{}",
            match config.method {
                StartMethod::Fork => "Fork",
                StartMethod::Spawn => "Spawn",
                StartMethod::ForkServer => "ForkServer",
            },
            self.started
        );
        let initializer = match &config.initializer {
            Some((id, arg)) => Some((*id, arg.try_clone()?)),
            None => None,
        };
        let cfg = WorkerConfig { initializer, max_tasks: config.max_tasks };
        let child =
            Process::new(worker::serve, cfg).name(name).daemon(true).start_method(config.method).start_worker()?;
        self.workers.push(Worker {
            child,
            stream: FrameStream::new(codec::max_frame_size()),
            out: Vec::new(),
            in_flight: VecDeque::new(),
            sent: 0,
            retiring: false,
            killed: false,
            failure: None,
            pace: Pace::default(),
            ready: false,
        });
        Ok(())
    }

    /// Sends queued chunks to workers with room; true if the dispatcher
    /// thread must look again: some output could not be written yet, or a
    /// chunk with a deadline went out (its timer is the thread's to keep).
    fn pump(&mut self, config: &Config) -> bool {
        let now = Instant::now();
        let mut any_timed = false;
        while let Some(p) = self.queue.front() {
            let timed = p.timeout.is_some();
            let pick = self
                .workers
                .iter()
                .enumerate()
                .filter(|(_, w)| w.accepts(timed, config.max_tasks))
                .min_by_key(|(_, w)| w.in_flight.len())
                .map(|(i, _)| i);
            let Some(i) = pick else { break };
            let p = self.queue.pop_front().expect("front exists");
            let w = &mut self.workers[i];
            if w.in_flight.is_empty() {
                w.pace.busy_since = Some(now);
            }
            w.out.extend_from_slice(&p.frame);
            w.in_flight.push_back(InFlight {
                job: p.job,
                index: p.index,
                count: p.count,
                timeout: p.timeout,
                deadline: p.timeout.filter(|_| w.ready).map(|t| {
                    any_timed = true;
                    now + t
                }),
                timed_out: false,
            });
            w.sent += 1;
            if config.max_tasks.is_some_and(|m| w.sent >= m) {
                w.retiring = true;
            }
        }
        let mut stuck = any_timed;
        for w in &mut self.workers {
            w.flush();
            stuck |= !w.out.is_empty();
        }
        stuck
    }

    fn terminate(&mut self) {
        if matches!(self.status, Status::Terminated) {
            return;
        }
        if !matches!(self.status, Status::Broken(_)) {
            self.status = Status::Terminated;
        }
        let err = || {
            Error::new(
                ErrorKind::BrokenPool,
                "the pool was terminated before this task finished (terminate(), or the pool was dropped)",
            )
        };
        for p in self.queue.drain(..) {
            p.job.finish(p.index, ChunkOutcome::Failed(err()));
        }
        for w in &mut self.workers {
            for f in w.in_flight.drain(..) {
                f.job.finish(f.index, ChunkOutcome::Failed(err()));
            }
            w.kill();
        }
    }

    /// Marks the pool broken by `err`: everything fails with it.
    fn break_pool(&mut self, err: Error) {
        for p in self.queue.drain(..) {
            p.job.finish(p.index, ChunkOutcome::Failed(err.duplicate()));
        }
        for w in &mut self.workers {
            for f in w.in_flight.drain(..) {
                f.job.finish(f.index, ChunkOutcome::Failed(err.duplicate()));
            }
            w.kill();
        }
        self.status = Status::Broken(err);
    }

    /// One round of the dispatcher's work, after a poll.
    fn service(&mut self, config: &Config, polled: &[Arc<ChildRecord>], ended: &[bool]) {
        let now = Instant::now();
        // Results first, also from workers that ended: what they wrote
        // before they died is good.
        for i in 0..self.workers.len() {
            let frames = self.workers[i].read();
            let results = frames.iter().filter(|f| f.kind == wire::RESULT).count();
            for frame in frames {
                self.handle_frame(i, frame);
            }
            let w = &mut self.workers[i];
            if results > 0 {
                w.pace.note(results, now, !w.in_flight.is_empty());
            }
        }
        for (child, _) in polled.iter().zip(ended).filter(|(_, e)| **e) {
            if let Some(i) = self.workers.iter().position(|w| Arc::ptr_eq(&w.child, child)) {
                self.bury(i);
            }
        }
        for w in &mut self.workers {
            for f in &mut w.in_flight {
                if !f.timed_out && f.deadline.is_some_and(|d| d <= now) {
                    f.timed_out = true;
                    w.killed = true;
                    let _ = w.child.signal(sys::SIGKILL);
                }
            }
        }
        self.replace_workers(config);
        self.pump(config);
        if matches!(self.status, Status::Closed) && self.queue.is_empty() {
            for w in &mut self.workers {
                if w.in_flight.is_empty() && !w.retiring {
                    w.retiring = true;
                    let _ = codec::append_frame(&mut w.out, wire::EXIT, |_| Ok(()));
                    w.flush();
                }
            }
        }
    }

    fn handle_frame(&mut self, i: usize, frame: Frame) {
        match frame.kind {
            wire::RESULT => {
                let w = &mut self.workers[i];
                let head = wire::result_head(&frame.payload);
                let matches = |f: &InFlight, (job, index, count): (u64, u32, u32)| {
                    f.job.id == job && f.index == index && f.count == count
                };
                match (head, w.in_flight.front()) {
                    (Ok(head), Some(f)) if matches(f, head) => {
                        let f = w.in_flight.pop_front().expect("front exists");
                        f.job.finish(f.index, ChunkOutcome::Items(frame.payload));
                    }
                    _ => w.break_stream(Error::new(
                        ErrorKind::Protocol,
                        format!(
                            "pool worker '{}' (pid {}) sent a result that matches no task it holds; its stream is corrupt",
                            w.child.name, w.child.pid
                        ),
                    )),
                }
            }
            wire::READY => {
                let w = &mut self.workers[i];
                w.ready = true;
                let now = Instant::now();
                for f in &mut w.in_flight {
                    if f.deadline.is_none() && !f.timed_out {
                        f.deadline = f.timeout.map(|t| now + t);
                    }
                }
            }
            wire::INIT_FAILED => {
                let w = &self.workers[i];
                let message = match codec::decode::<RemoteError>(&frame.payload, "an error report") {
                    Ok(remote) => remote.message,
                    Err(e) => e.to_string(),
                };
                let err = Error::new(
                    ErrorKind::BrokenPool,
                    format!(
                        "the pool's initializer failed in worker '{}' (pid {}): {message}; the pool runs no more \
                         tasks. Fix the initializer and create a new pool",
                        w.child.name, w.child.pid
                    ),
                );
                self.break_pool(err);
            }
            other => {
                let w = &mut self.workers[i];
                w.break_stream(Error::new(
                    ErrorKind::Protocol,
                    format!("pool worker (pid {}) sent an unknown frame kind {other}", w.child.pid),
                ));
            }
        }
    }

    /// Removes a worker that has ended, failing the chunks it held.
    fn bury(&mut self, i: usize) {
        let w = self.workers.remove(i);
        let status = w.child.poll_status().ok().flatten();
        let code = status.and_then(sys::ExitStatus::exitcode);
        let how = match status {
            Some(sys::ExitStatus::Code(c)) => format!("exited with code {c}"),
            Some(sys::ExitStatus::Signal(s)) => format!("was killed by {}", sys::signal_name(s)),
            _ => "ended".to_owned(),
        };
        for f in w.in_flight {
            let err = if f.timed_out {
                Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "the task ran past its timeout of {:?}; its worker '{}' (pid {}) was killed and replaced, and \
                         nothing else was affected",
                        f.timeout.unwrap_or_default(),
                        w.child.name,
                        w.child.pid
                    ),
                )
            } else if let Some(e) = &w.failure {
                e.duplicate()
            } else {
                Error::new(
                    ErrorKind::WorkerLost,
                    format!(
                        "pool worker '{}' (pid {}) {how} while it held this task (a crash, an abort, the OOM killer, \
                         exit() or a kill); the task was not retried and a new worker took its place",
                        w.child.name, w.child.pid
                    ),
                )
                .with_pid(w.child.pid as u32)
                .with_exitcode(code)
            };
            f.job.finish(f.index, ChunkOutcome::Failed(err));
        }
        registry::lock().remove(&w.child);
    }

    fn replace_workers(&mut self, config: &Config) {
        let wanted = match self.status {
            Status::Running => config.processes,
            Status::Closed if !self.queue.is_empty() => config.processes,
            _ => 0,
        };
        let active = self.workers.iter().filter(|w| !w.killed && !w.retiring).count();
        for _ in active..wanted {
            if let Err(e) = self.spawn_worker(config) {
                self.break_pool(Error::new(
                    ErrorKind::BrokenPool,
                    format!("a new pool worker could not be started: {e}; the pool runs no more tasks"),
                ));
                return;
            }
        }
    }
}
