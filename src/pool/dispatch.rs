//! The dispatcher: one thread that owns every worker's socket and pidfd,
//! sends chunks, collects results, and deals with deaths, timeouts and
//! cancellations.
//!
//! Callers add chunks to a queue and send what fits right away (no hand-off
//! to the thread on the fast path). Each worker holds a small window of
//! chunks, so that it never waits for the parent between two of them; the
//! window grows for workers that finish chunks quickly (up to about 2 ms of
//! queued work). Every worker keeps a status page (`status.rs`) that tells,
//! without a syscall, which item it runs and what it finished; so when a
//! worker dies, every chunk it held gets an exact fate (`tracked.rs`): the
//! item it ran fails, what it finished is delivered, what it had not
//! started goes to another worker; and a new worker takes its place.
//!
//! Timeouts are per item: the dispatcher looks at the running item of each
//! worker that holds timed chunks, at least every quarter of the shortest
//! timeout (between 1 ms and 100 ms), and kills a worker whose item has run
//! past its timeout; only that item fails.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::callback::Runner;
use super::job::{ChunkOutcome, Job};
use super::link::Link;
use super::stats::PoolStats;
use super::status::StatusPage;
use super::tracked::{self, Worker};
use super::wire::{self, ItemOffsets};
use super::worker::{self, WorkerConfig};
use crate::codec::{self, Frame};
use crate::context::StartMethod;
use crate::error::{Error, ErrorKind, RemoteError, Result};
use crate::process::{MemoryCap, Process};
use crate::runtime::{TaskId, registry};
use crate::sys::{self, AsFd, AsRawFd, OwnedFd, PollFd, PollFlags};

/// A pool's settings, fixed at creation.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) method: StartMethod,
    pub(crate) initializer: Option<(TaskId, Arc<codec::Encoded>)>,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) max_memory: Option<u64>,
    pub(crate) memory_limit: Option<u64>,
    /// How `memory_limit` is kept (`Rlimit` when there is none).
    pub(crate) memory_cap: MemoryCap,
    pub(crate) track_usage: bool,
    /// The token budget its workers share with nested pools.
    pub(crate) tokens: Option<super::tokens::Budget>,
    /// Forward the workers' stdout and stderr, tagged, to the parent's.
    pub(crate) forward_output: bool,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) max_in_flight: usize,
    pub(crate) max_in_flight_bytes: usize,
    /// Where the workers run.
    pub(crate) backend: Backend,
}

/// Where a pool's workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// Child processes on this machine.
    Local,
    /// The other ranks of the MPI job (feature `mpi`).
    #[cfg(feature = "mpi")]
    Mpi,
}

/// Workers that die of their own before they are ready, in a row, that
/// break the pool.
const STARTUP_DEATHS: u32 = 3;

/// A chunk, or the rest of one, waiting for a worker.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) job: Arc<Job>,
    pub(crate) index: u32,
    /// Where its items start in the chunk.
    pub(crate) first: u32,
    pub(crate) count: u32,
    /// The whole `TASK` frame; kept until the chunk is done, to send the
    /// rest of it again if its worker dies in the middle.
    pub(crate) frame: Arc<Vec<u8>>,
    pub(crate) offsets: ItemOffsets,
    pub(crate) timeout: Option<Duration>,
    /// How many workers died after beginning it, before running any item.
    pub(crate) begun_deaths: u8,
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
        let (count, offsets) = wire::append_task(&mut frame, &head, items)?;
        codec::check_outgoing(&frame, "a chunk of encoded arguments")?;
        Ok(Pending {
            job: Arc::clone(job),
            index: head.index,
            first: 0,
            count,
            frame: Arc::new(frame),
            offsets,
            timeout,
            begun_deaths: 0,
        })
    }

    /// Its items from `skip` on, to run again.
    pub(crate) fn rest(&self, skip: u32) -> Pending {
        let (frame, offsets) = wire::rest_of_task(&self.frame, &self.offsets, skip);
        Pending {
            job: Arc::clone(&self.job),
            index: self.index,
            first: self.first + skip,
            count: self.count - skip,
            frame: Arc::new(frame),
            offsets,
            timeout: self.timeout,
            begun_deaths: 0,
        }
    }

    /// Fails every item it holds with `err`.
    pub(crate) fn fail(self, err: Error, counts: &mut Counts) {
        if err.kind() == ErrorKind::Cancelled {
            counts.note_cancelled(self.count);
        } else {
            counts.note_failed(self.count);
        }
        self.job.finish_part(self.index, self.first, self.count, ChunkOutcome::Failed(err));
    }
}

/// What became of the pool's items, for `stats()`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) done: u64,
    pub(crate) failed: u64,
    pub(crate) cancelled: u64,
}

impl Counts {
    /// `count` items came back, `failed` of them failed.
    pub(crate) fn note_items(&mut self, count: u32, failed: u32) {
        let failed = failed.min(count);
        self.done += u64::from(count - failed);
        self.failed += u64::from(failed);
    }

    pub(crate) fn note_failed(&mut self, count: u32) {
        self.failed += u64::from(count);
    }

    pub(crate) fn note_cancelled(&mut self, count: u32) {
        self.cancelled += u64::from(count);
    }
}

#[derive(Debug)]
enum Status {
    Running,
    Closed,
    Terminated,
    Broken(Error),
}

#[derive(Debug)]
pub(crate) struct Dispatch {
    status: Status,
    workers: Vec<Worker>,
    queue: VecDeque<Pending>,
    started: u64,
    counts: Counts,
    /// Workers in a row that died before they were ready.
    startup_deaths: u32,
    /// `pump`'s list of the workers that accept a chunk, with how many
    /// each holds (kept for its allocation).
    open: Vec<(usize, usize)>,
    /// The pool itself, to wake its dispatcher when an MPI rank's results
    /// arrive (on another thread).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    me: Weak<Shared>,
}

/// What the pool's handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    state: Mutex<Dispatch>,
    wake: OwnedFd,
    thread: Mutex<Option<JoinHandle<()>>>,
    owner: u32,
    callbacks: Arc<Runner>,
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
        let shared = Arc::new_cyclic(|me| Shared {
            config,
            state: Mutex::new(Dispatch {
                status: Status::Running,
                workers: Vec::new(),
                queue: VecDeque::new(),
                started: 0,
                counts: Counts::default(),
                startup_deaths: 0,
                open: Vec::new(),
                me: me.clone(),
            }),
            wake,
            thread: Mutex::new(None),
            owner: sys::own_pid(),
            callbacks: Arc::new(Runner::default()),
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
        if sys::own_pid() == self.owner {
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
        if self.config.backend != Backend::Local && chunks.iter().any(|p| p.timeout.is_some()) {
            return Err(untimed_backend());
        }
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

    /// Cancels every chunk of `job` that no worker has started, wherever it
    /// waits (the queue, or a worker's window); true if the whole job is
    /// now cancelled (none of it had started or finished).
    pub(crate) fn cancel(&self, job: &Arc<Job>) -> bool {
        let mut d = self.lock();
        let (started, taken) = d.take_unstarted(job);
        let whole = !started && !taken.is_empty() && !job.any_finished_part();
        for p in taken {
            p.fail(tracked::cancelled(), &mut d.counts);
        }
        drop(d);
        if whole {
            job.mark_cancelled();
        }
        whole
    }

    /// Stops `job` wherever it is: cancels what has not started and kills
    /// the workers running its items (their other work goes to other
    /// workers). True if anything was stopped; false if the job had already
    /// finished.
    pub(crate) fn kill(&self, job: &Arc<Job>) -> bool {
        let mut d = self.lock();
        let (_, taken) = d.take_unstarted(job);
        let mut acted = !taken.is_empty();
        for p in taken {
            p.fail(tracked::cancelled(), &mut d.counts);
        }
        for w in &mut d.workers {
            acted |= w.kill_job(job);
        }
        drop(d);
        if acted {
            job.mark_cancelled();
            self.wake();
        }
        acted
    }

    /// Drops the queued chunks of a job nobody waits for any more.
    pub(crate) fn forget(&self, job: &Arc<Job>) {
        self.lock().queue.retain(|p| !Arc::ptr_eq(&p.job, job));
    }

    /// Cancels every queued chunk (`shutdown(cancel_futures=True)`).
    pub(crate) fn cancel_queued(&self) {
        let mut d = self.lock();
        let queued: Vec<Pending> = d.queue.drain(..).collect();
        for p in queued {
            p.job.mark_cancelled();
            p.fail(tracked::cancelled(), &mut d.counts);
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

    /// Stops now: queued and running tasks fail, workers are killed (with
    /// `signal`).
    pub(crate) fn terminate(&self) {
        self.lock().terminate();
        self.wake();
    }

    /// Python 3.14's `terminate_workers()` / `kill_workers()`: the tasks
    /// not sent to a worker yet are cancelled, the ones sent fail, and
    /// every worker gets `signal`.
    pub(crate) fn stop_workers(&self, signal: i32) {
        self.lock().stop_workers(signal);
        self.wake();
    }

    /// Takes the results that have come, and sends what they made room
    /// for, if the dispatcher thread is not at it: a caller that waits
    /// for a quick result calls this between its looks, and so gets the
    /// result without waiting for the dispatcher thread's turn. (The
    /// thread still deals with ended workers and timeouts; it sees their
    /// pidfds as before.)
    pub(crate) fn help(&self) {
        // A forked child's copy of the pool must not read its parent's
        // workers.
        if sys::own_pid() != self.owner {
            return;
        }
        let Ok(mut d) = self.state.try_lock() else {
            return;
        };
        if d.finished() {
            return;
        }
        // Only workers with chunks out have results to give (and a rank's
        // come through its thread): one `recv` per look, not one per worker.
        d.take_results(Instant::now(), |_, w| !w.in_flight.is_empty() || !w.link.is_local());
        let stuck = d.after_results(&self.config);
        drop(d);
        if stuck {
            self.wake();
        }
    }

    /// What the pool is doing.
    pub(crate) fn stats(&self) -> PoolStats {
        let mut d = self.lock();
        let now = Instant::now();
        let mut queued: u64 = d.queue.iter().map(|p| u64::from(p.count)).sum();
        let mut running = 0;
        let mut workers = Vec::with_capacity(d.workers.len());
        for w in &mut d.workers {
            let (stats, waiting, runs) = w.stats(now);
            queued += waiting;
            running += runs;
            workers.push(stats);
        }
        let c = d.counts;
        PoolStats { queued, running, done: c.done, failed: c.failed, cancelled: c.cancelled, workers }
    }

    /// The pool's state as Python's `repr` names it: `RUN`, `CLOSE`,
    /// `TERMINATE`, or `BROKEN`.
    pub(crate) fn state_name(&self) -> &'static str {
        match self.lock().status {
            Status::Running => "RUN",
            Status::Closed => "CLOSE",
            Status::Terminated => "TERMINATE",
            Status::Broken(_) => "BROKEN",
        }
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
        // Every job has finished: their callbacks are queued, and run now.
        self.callbacks.drain();
        if self.config.forward_output {
            // The workers are gone: what they printed is read to its end.
            super::output::drain(std::time::Duration::from_secs(2));
        }
        Ok(())
    }

    /// The pool's callback runner.
    pub(crate) fn callbacks(&self) -> Arc<Runner> {
        Arc::clone(&self.callbacks)
    }

    /// Kills and reaps every worker, without the dispatcher thread; the
    /// tokens they held go back to the budget (which pools nested around
    /// this one may share).
    fn reap_all(&self) {
        let workers = std::mem::take(&mut self.lock().workers);
        for mut w in workers {
            w.kill();
            let _ = w.link.wait(None);
            reclaim_tokens(&self.config, &w.link);
        }
    }

    /// The dispatcher thread.
    fn run(&self) {
        loop {
            let (children, want_write, timeout, quick) = {
                let mut d = self.lock();
                if d.finished() {
                    return;
                }
                let children: Vec<Arc<Link>> = d.workers.iter().map(|w| Arc::clone(&w.link)).collect();
                let want_write: Vec<bool> = d.workers.iter().map(|w| !w.out.is_empty()).collect();
                let quick = d.workers.iter().any(Worker::expects_quick_results);
                let now = Instant::now();
                let timeout = d.watch_timeouts(now).map(|t| t.saturating_duration_since(now));
                (children, want_write, timeout, quick)
            };
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(1 + 2 * children.len());
            fds.push(PollFd::new(&self.wake, PollFlags::IN));
            for (child, &write) in children.iter().zip(&want_write) {
                let events = if write { PollFlags::IN | PollFlags::OUT } else { PollFlags::IN };
                fds.push(PollFd::from_borrowed_fd(child.control(), events));
                fds.push(PollFd::from_borrowed_fd(child.ended_fd(), PollFlags::IN));
            }
            if !(quick && look_without_sleeping(&mut fds)) && sys::poll(&mut fds, timeout).is_err() {
                std::thread::yield_now();
            }
            let readable: Vec<bool> = (0..children.len()).map(|i| !fds[1 + 2 * i].revents().is_empty()).collect();
            let ended: Vec<bool> = (0..children.len()).map(|i| !fds[2 + 2 * i].revents().is_empty()).collect();
            drop(fds);
            let mut counter = Vec::with_capacity(8);
            let _ = sys::read(self.wake.as_fd(), &mut counter, 8);
            let mut d = self.lock();
            d.service(&self.config, &children, &readable, &ended);
        }
    }
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

    /// Takes every chunk of `job` that has not started out of the queue and
    /// the windows: whether some chunk of it had started, and the chunks.
    fn take_unstarted(&mut self, job: &Arc<Job>) -> (bool, Vec<Pending>) {
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for p in self.queue.drain(..) {
            if Arc::ptr_eq(&p.job, job) {
                taken.push(p);
            } else {
                kept.push_back(p);
            }
        }
        self.queue = kept;
        let mut started = false;
        for w in &mut self.workers {
            let (s, cancelled) = w.cancel(job);
            started |= s;
            taken.extend(cancelled);
        }
        (started, taken)
    }

    /// Looks at the running items of workers with timed chunks (killing
    /// those past their timeout); when to look again.
    fn watch_timeouts(&mut self, now: Instant) -> Option<Instant> {
        self.workers.iter_mut().filter_map(|w| w.watch(now)).min()
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
        let page = StatusPage::new()?;
        let link = match config.backend {
            Backend::Local => {
                // A cgroup is made and joined as for any Process; the
                // worker itself keeps an RLIMIT_DATA limit.
                let cgroup = config.memory_limit.filter(|_| config.memory_cap == MemoryCap::Cgroup);
                let cfg = WorkerConfig {
                    initializer,
                    max_tasks: config.max_tasks,
                    max_memory: config.max_memory,
                    memory_limit: config.memory_limit.filter(|_| cgroup.is_none()),
                    track_usage: config.track_usage,
                    tokens: config.tokens.clone(),
                    status: page.for_worker()?,
                };
                let mut process = Process::new(worker::serve, cfg)
                    .name(name.clone())
                    .daemon(true)
                    .start_method(config.method)
                    .forward_output(config.forward_output);
                if let Some(limit) = cgroup {
                    process = process.memory_limit(limit).memory_cap(MemoryCap::Cgroup);
                } else if config.memory_limit.is_some() {
                    process = process.without_backtraces();
                }
                Link::Process(process.start_worker()?)
            }
            #[cfg(feature = "mpi")]
            Backend::Mpi => {
                let me = self.me.clone();
                // Results from the rank: the dispatcher thread takes them
                // (this runs on the MPI receiver thread).
                let on_data = Box::new(move || {
                    if let Some(shared) = me.upgrade() {
                        shared.wake();
                    }
                });
                Link::Rank(crate::mpi::start_worker(initializer, config, on_data)?)
            }
        };
        self.workers.push(Worker::new(link, page));
        Ok(())
    }

    /// Sends queued chunks to workers with room; true if the dispatcher
    /// thread must look again: some output could not be written yet, or a
    /// timed chunk went out (its timer is the thread's to keep).
    fn pump(&mut self, config: &Config) -> bool {
        let now = Instant::now();
        let mut any_timed = false;
        if !self.queue.is_empty() {
            // Each chunk goes to the accepting worker with the fewest
            // chunks (the first of them on a tie). The workers are asked
            // once here, and then only the one that took a chunk: asking
            // each of them for each chunk cost a pool of 64 workers a
            // seventh of its dispatcher's time.
            let mut open = std::mem::take(&mut self.open);
            open.clear();
            open.extend(
                self.workers
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| w.accepts(config.max_tasks))
                    .map(|(i, w)| (w.in_flight.len(), i)),
            );
            while let Some(k) = (0..open.len()).min_by_key(|&k| open[k]) {
                let Some(p) = self.queue.pop_front() else { break };
                any_timed |= p.timeout.is_some();
                let w = &mut self.workers[open[k].1];
                w.send(p, now, config.max_tasks);
                if w.accepts(config.max_tasks) {
                    open[k].0 = w.in_flight.len();
                } else {
                    open.remove(k);
                }
            }
            self.open = open;
        }
        let mut stuck = any_timed;
        for w in &mut self.workers {
            w.flush();
            stuck |= !w.out.is_empty();
        }
        stuck
    }

    /// Puts chunks that must run again at the front of the queue, in their
    /// order, or fails them if the pool no longer runs tasks.
    fn requeue(&mut self, chunks: Vec<Pending>) {
        if let Status::Terminated | Status::Broken(_) = self.status {
            let err = self.stopped_error();
            for p in chunks {
                p.fail(err.duplicate(), &mut self.counts);
            }
            return;
        }
        for p in chunks.into_iter().rev() {
            self.queue.push_front(p);
        }
    }

    fn stopped_error(&self) -> Error {
        match &self.status {
            Status::Broken(e) => e.duplicate(),
            _ => Error::new(
                ErrorKind::BrokenPool,
                "the pool was stopped before this task finished (terminate(), terminate_workers(), kill_workers(), \
                 or the pool was dropped); make a new pool for more work",
            ),
        }
    }

    /// Stops the pool for good (if it is not broken already).
    fn stop(&mut self) {
        if !matches!(self.status, Status::Broken(_)) {
            self.status = Status::Terminated;
        }
    }

    fn terminate(&mut self) {
        self.stop();
        let err = self.stopped_error();
        self.fail_everything(&err, &err, sys::SIGKILL);
    }

    fn stop_workers(&mut self, signal: i32) {
        self.stop();
        let cancelled = Error::new(
            ErrorKind::Cancelled,
            "cancelled before it started: the pool's workers were stopped (terminate_workers() or kill_workers())",
        );
        let err = self.stopped_error();
        self.fail_everything(&cancelled, &err, signal);
    }

    /// Fails every queued item with `queued`, and every item sent to a
    /// worker with `sent`; sends the workers `signal`.
    fn fail_everything(&mut self, queued: &Error, sent: &Error, signal: i32) {
        for p in self.queue.drain(..).collect::<Vec<Pending>>() {
            p.fail(queued.duplicate(), &mut self.counts);
        }
        for w in &mut self.workers {
            for f in w.in_flight.drain(..) {
                f.chunk.fail(sent.duplicate(), &mut self.counts);
            }
            w.stop(signal);
        }
    }

    /// Marks the pool broken by `err`: everything fails with it.
    fn break_pool(&mut self, err: Error) {
        self.fail_everything(&err, &err, sys::SIGKILL);
        self.status = Status::Broken(err);
    }

    /// One round of the dispatcher's work, after a poll of the `polled`
    /// workers' control sockets (`readable`) and ends (`ended`).
    fn service(&mut self, config: &Config, polled: &[Arc<Link>], readable: &[bool], ended: &[bool]) {
        let now = Instant::now();
        // Results first, also from workers that ended: what they wrote
        // before they died is good. Only the workers with something to
        // read are read: a read of each of 64 workers per round would cost
        // more than the round's result.
        let same = polled.len() == self.workers.len()
            && polled.iter().zip(&self.workers).all(|(p, w)| Arc::ptr_eq(p, &w.link));
        self.take_results(now, |i, w| !same || readable[i] || ended[i] || !w.link.is_local());
        for (child, _) in polled.iter().zip(ended).filter(|(_, e)| **e) {
            if let Some(i) = self.workers.iter().position(|w| Arc::ptr_eq(&w.link, child)) {
                self.bury(i, config);
            }
        }
        self.replace_workers(config);
        self.after_results(config);
    }

    /// What follows taking results: sends queued chunks where there is
    /// room, and, once the pool is closed and its queue empty, tells each
    /// idle worker to leave. True if the dispatcher thread must look
    /// again (as `pump`).
    fn after_results(&mut self, config: &Config) -> bool {
        let mut stuck = self.pump(config);
        if matches!(self.status, Status::Closed) && self.queue.is_empty() {
            for w in &mut self.workers {
                if w.in_flight.is_empty() && !w.retiring {
                    w.retiring = true;
                    let mut exit = Vec::new();
                    let _ = codec::append_frame(&mut exit, wire::EXIT, |_| Ok(()));
                    w.out.push(Arc::new(exit));
                    w.flush();
                    stuck |= !w.out.is_empty();
                }
            }
        }
        stuck
    }

    /// Reads and handles the results of the workers that `to_read`
    /// (given each worker's index) picks.
    fn take_results(&mut self, now: Instant, to_read: impl Fn(usize, &Worker) -> bool) {
        for i in 0..self.workers.len() {
            if !to_read(i, &self.workers[i]) {
                continue;
            }
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
    }

    fn handle_frame(&mut self, i: usize, frame: Frame) {
        match frame.kind {
            wire::RESULT => {
                if let Some(rest) = self.workers[i].take_result(frame.payload, &mut self.counts) {
                    self.requeue(vec![rest]);
                }
            }
            wire::USAGE => match wire::usage(&frame.payload) {
                Ok(usage) => self.workers[i].usage = Some(usage),
                Err(e) => self.workers[i].break_stream(e),
            },
            wire::READY => {
                self.workers[i].ready = true;
                self.startup_deaths = 0;
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
                        w.link.name(),
                        w.link.pid()
                    ),
                );
                self.break_pool(err);
            }
            other => {
                let w = &mut self.workers[i];
                let pid = w.link.pid();
                w.break_stream(Error::new(
                    ErrorKind::Protocol,
                    format!("pool worker (pid {pid}) sent an unknown frame kind {other}"),
                ));
            }
        }
    }

    /// Removes a worker that has ended: every chunk it held gets its fate.
    fn bury(&mut self, i: usize, config: &Config) {
        let w = self.workers.remove(i);
        let (name, pid, ready) = (w.link.name().to_owned(), w.link.pid(), w.ready);
        // A worker that ends of its own before it is ready (a crash, an
        // abort, an exit in the initializer or at start-up) counts; one
        // killed from outside (SIGKILL, SIGTERM: a user, the OOM killer) does
        // not, nor does one we killed.
        let own_death = !w.killed
            && !matches!(w.link.poll_status(), Ok(Some(sys::ExitStatus::Signal(s))) if s == sys::SIGKILL || s == sys::SIGTERM);
        let link = Arc::clone(&w.link);
        let remains = w.bury(&mut self.counts);
        // Only now is it surely gone (a worker whose fork server died first
        // is killed and waited for there): its token goes back.
        reclaim_tokens(config, &link);
        self.requeue(remains.rerun);
        if ready || !own_death {
            return;
        }
        self.startup_deaths += 1;
        if self.startup_deaths >= STARTUP_DEATHS && matches!(self.status, Status::Running | Status::Closed) {
            self.break_pool(Error::new(
                ErrorKind::BrokenPool,
                format!(
                    "{STARTUP_DEATHS} pool workers in a row died before they were ready (the last one '{name}', pid \
                     {pid}); the pool runs no more tasks. Check the workers' stderr, and what runs when one starts \
                     (the initializer, the environment)"
                ),
            ));
        }
    }

    fn replace_workers(&mut self, config: &Config) {
        let wanted = match self.status {
            Status::Running => config.processes,
            Status::Closed if !self.queue.is_empty() => config.processes,
            _ => 0,
        };
        // A rank serves one worker at a time: its next worker starts once
        // the last one has gone, not when it was told to leave.
        let active = self.workers.iter().filter(|w| !w.link.is_local() || (!w.killed && !w.retiring)).count();
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

/// Gives back the token that a worker which has ended held, if it held one
/// (it may have died between any two of its instructions). A rank takes
/// none from this process's budget.
fn reclaim_tokens(config: &Config, link: &Link) {
    if let Some(tokens) = config.tokens.as_ref().filter(|_| link.is_local()) {
        tokens.reclaim(link.pid() as u32);
    }
}

/// How long the dispatcher looks for quick results before it sleeps in
/// `poll`: about what a wake-up costs it on a busy machine.
const SPIN: Duration = Duration::from_micros(50);

/// Polls `fds` without sleeping, yielding the CPU between looks, for up to
/// `SPIN`; whether any is ready.
fn look_without_sleeping(fds: &mut [PollFd<'_>]) -> bool {
    let until = Instant::now() + SPIN;
    loop {
        if matches!(sys::poll(fds, Some(Duration::ZERO)), Ok(n) if n > 0) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::yield_now();
    }
}

/// The error of a timeout asked of a pool whose workers cannot be killed.
pub(crate) fn untimed_backend() -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        "per-task timeouts need workers that can be killed, and an MPI rank cannot be killed without ending the whole \
         job (Open MPI 4 has no fault tolerance); leave the timeout out, or time tasks inside each rank with a local \
         Pool",
    )
}
