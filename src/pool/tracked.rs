//! The dispatcher's record of one worker: its socket, the window of chunks
//! it holds, its status page, and what becomes of each of those chunks
//! when it dies.
//!
//! When a worker ends, every chunk it held gets an exact fate, from what
//! its socket brought and what its status page says (`status.rs`):
//! - every item it finished is delivered, whether it had sent the result
//!   or left it in its buffer;
//! - the item it was running fails: `WorkerLost` with its pid and exit
//!   code or signal, or `Timeout` or `Cancelled` when the dispatcher killed
//!   it for that;
//! - every item it had not started goes back to the front of the queue, in
//!   order, for another worker (or fails with `Cancelled`, for a job that
//!   was being killed).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dispatch::{Counts, Pending};
use super::job::{ChunkOutcome, Job};
use super::link::Link;
use super::outbox::Outbox;
use super::stats::WorkerStats;
use super::status::{self, Progress, StatusPage};
use super::wire;
use crate::codec::{self, Frame, FrameStream};
use crate::error::{Error, ErrorKind};
use crate::process::MemoryCap;
use crate::sys::{self, ExitStatus};

/// Queued work a worker is given, in its own time.
const WINDOW_WORK_US: f64 = 2000.0;
/// Chunks that take less than this (µs) come back while the dispatcher
/// looks for them without sleeping (`expects_quick_results`).
const QUICK_US: f64 = 20.0;
/// The most chunks in one worker's window (fewer than `status::SLOTS`).
const MAX_WINDOW: usize = 64;
/// Queued work an MPI rank is given, and the most chunks in its window.
const RANK_WINDOW_WORK_US: f64 = 10_000.0;
const MAX_RANK_WINDOW: usize = 1024;
/// How long the dispatcher waits for a worker it froze to stop.
const FREEZE_LIMIT: Duration = Duration::from_secs(1);
/// A chunk that its worker began but died before running any item of, this
/// many times, fails its first item: it is taken for the culprit.
const BEGUN_DEATHS: u8 = 3;

const _: () = assert!((MAX_WINDOW as u64) < status::SLOTS);

/// How fast a worker gets through chunks: the mean time between its
/// results while it is busy.
#[derive(Debug, Default)]
pub(super) struct Pace {
    busy_since: Option<Instant>,
    mean_us: f64,
}

impl Pace {
    /// Notes `results` chunks that came back together at `now` (a worker
    /// sends several in one write when they come fast).
    pub(super) fn note(&mut self, results: usize, now: Instant, still_busy: bool) {
        if let Some(since) = self.busy_since {
            let us = now.saturating_duration_since(since).as_secs_f64() * 1e6 / results as f64;
            self.mean_us = if self.mean_us <= 0.0 { us } else { 0.8 * self.mean_us + 0.2 * us };
        }
        self.busy_since = still_busy.then_some(now);
    }
}

/// Why the dispatcher killed a worker: the fate of the item it ran.
#[derive(Debug, Clone, Copy)]
pub(super) enum Fate {
    /// It ran past its timeout.
    Timeout(Duration),
    /// Its job was killed (`AsyncResult::kill`).
    Cancelled,
}

/// A chunk in a worker's window.
#[derive(Debug)]
pub(super) struct InFlight {
    /// Its number among the chunks sent to this worker.
    pub(super) seq: u64,
    pub(super) chunk: Pending,
}

/// What became of a worker's chunks when it was buried.
#[derive(Debug, Default)]
pub(super) struct Remains {
    /// Items that had not started, to run again, in order.
    pub(super) rerun: Vec<Pending>,
}

#[derive(Debug)]
pub(super) struct Worker {
    pub(super) link: Arc<Link>,
    stream: FrameStream,
    pub(super) out: Outbox,
    pub(super) in_flight: VecDeque<InFlight>,
    /// Chunks sent so far: the next chunk's number.
    pub(super) sent: u64,
    /// Told to leave, or at its quota: gets nothing more.
    pub(super) retiring: bool,
    /// Signalled by us: it is going away.
    pub(super) killed: bool,
    /// What its chunks fail with if it dies (a broken stream).
    failure: Option<Error>,
    pub(super) pace: Pace,
    /// Started and initialized (it said READY).
    pub(super) ready: bool,
    /// Its status page (`None` only once given back, on drop).
    page: Option<StatusPage>,
    /// Set when the dispatcher killed it on purpose: nothing at or after
    /// this position started, and why.
    stop: Option<(u64, Fate)>,
    /// Jobs killed while this worker held some of their items: those items
    /// fail with `Cancelled` instead of running again.
    doomed: Vec<Arc<Job>>,
    /// The item last seen running, and when it was first seen (timeouts and
    /// the age in `stats()`).
    seen: Option<(u64, Instant)>,
    /// Chunks cancelled in its window that it may not have read past yet:
    /// their status-page slots are not free until it has (see `accepts`).
    skipped: VecDeque<u64>,
    /// Items whose results came back over its stream.
    items_back: u64,
    /// The last `USAGE` it sent: for the chunk whose `RESULT` follows.
    pub(super) usage: Option<(u64, u32, Duration, u64)>,
}

impl Worker {
    pub(super) fn new(link: Link, page: StatusPage) -> Worker {
        Worker {
            link: Arc::new(link),
            stream: FrameStream::new(codec::max_frame_size()),
            out: Outbox::default(),
            in_flight: VecDeque::new(),
            sent: 0,
            retiring: false,
            killed: false,
            failure: None,
            pace: Pace::default(),
            ready: false,
            page: Some(page),
            stop: None,
            doomed: Vec::new(),
            seen: None,
            skipped: VecDeque::new(),
            items_back: 0,
            usage: None,
        }
    }

    fn page(&self) -> &StatusPage {
        self.page.as_ref().expect("a worker keeps its page until it is dropped")
    }

    /// Whether the worker holds chunks whose results come back soon: its
    /// chunks take under `QUICK_US` each (or it has not finished one yet).
    /// The dispatcher looks for their results for a short while before it
    /// sleeps, so that a quick round trip (`apply_async(...).get()`) does
    /// not wait for the dispatcher thread to be woken.
    pub(super) fn expects_quick_results(&self) -> bool {
        !self.in_flight.is_empty() && self.pace.mean_us < QUICK_US
    }

    fn window(&self) -> usize {
        if self.pace.mean_us <= 0.0 {
            return 2;
        }
        // A rank is further away (its results take longer to come back)
        // and its status page is its own (no slot limit here): it holds
        // more work.
        let (work, max) =
            if self.link.is_local() { (WINDOW_WORK_US, MAX_WINDOW) } else { (RANK_WINDOW_WORK_US, MAX_RANK_WINDOW) };
        ((work / self.pace.mean_us).ceil() as usize).clamp(2, max)
    }

    pub(super) fn accepts(&self, max_tasks: Option<u64>) -> bool {
        !self.retiring
            && !self.killed
            && max_tasks.is_none_or(|m| self.sent < m)
            && self.in_flight.len() < self.window()
            && self.slot_free()
    }

    /// Whether the status-page slot of the next chunk is free: no chunk
    /// the worker may still read (in the window, or cancelled there and
    /// not passed yet) is `SLOTS` or more chunks older, or the slot would
    /// be reused under it.
    fn slot_free(&self) -> bool {
        if !self.link.is_local() {
            return true;
        }
        let skipped = if self.skipped.is_empty() {
            None
        } else {
            // The worker has passed every chunk before the one it began last.
            let began = self.page().snapshot().chunk;
            self.skipped.iter().copied().filter(|&s| s >= began).min()
        };
        let oldest = [skipped, self.in_flight.front().map(|f| f.seq)].into_iter().flatten().min();
        oldest.is_none_or(|o| self.sent - o < status::SLOTS)
    }

    /// Forgets the cancelled chunks the worker has read past.
    fn prune_skipped(&mut self) {
        if !self.skipped.is_empty() {
            let began = self.page().snapshot().chunk;
            self.skipped.retain(|&s| s >= began);
        }
    }

    /// Adds `chunk` to the output and the window.
    pub(super) fn send(&mut self, chunk: Pending, now: Instant, max_tasks: Option<u64>) {
        if self.in_flight.is_empty() {
            self.pace.busy_since = Some(now);
        }
        let seq = self.sent;
        self.page().queue(seq);
        self.out.push(Arc::clone(&chunk.frame));
        self.in_flight.push_back(InFlight { seq, chunk });
        self.sent += 1;
        if max_tasks.is_some_and(|m| self.sent >= m) {
            self.retiring = true;
        }
    }

    /// Writes what it can of the output without blocking.
    pub(super) fn flush(&mut self) {
        // A dead peer: its pidfd will say so.
        if self.link.flush(&mut self.out).is_err() {
            self.out.clear();
        }
    }

    /// Whether it holds a token of the pool's budget (its page says so).
    pub(super) fn kill(&mut self) {
        self.stop(sys::SIGKILL);
    }

    /// Sends the worker `signal` to end it; what it was running is the
    /// pool's to fail.
    pub(super) fn stop(&mut self, signal: i32) {
        self.killed = true;
        let _ = self.link.signal(signal);
    }

    /// Reads every frame that has arrived.
    pub(super) fn read(&mut self) -> Vec<Frame> {
        self.prune_skipped();
        self.link.take_incoming(&mut self.stream);
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
            match self.stream.fill(self.link.control(), "a pool worker's results") {
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

    pub(super) fn break_stream(&mut self, e: Error) {
        self.failure.get_or_insert(e);
        self.kill();
    }

    /// Takes a `RESULT` payload: the outcomes of the front chunk (or of its
    /// first items, when the worker stopped it early: the rest comes back,
    /// to run again).
    pub(super) fn take_result(&mut self, payload: Vec<u8>, counts: &mut Counts) -> Option<Pending> {
        let head = wire::result_head(&payload);
        let front = self.in_flight.front().map(|f| &f.chunk);
        match (head, front) {
            (Ok(head @ (job, index, first, count)), Some(c))
                if wire::answers(head, (c.job.id, c.index, c.first, c.count)) =>
            {
                let f = self.in_flight.pop_front().expect("front exists");
                self.items_back += u64::from(count);
                if let Some((_, _, cpu, peak)) = self.usage.take().filter(|u| u.0 == job && u.1 == index) {
                    f.chunk.job.note_usage(cpu, peak);
                }
                let rest = (count < f.chunk.count).then(|| f.chunk.rest(count));
                counts.note_items(count, wire::failed_items(&payload));
                f.chunk.job.finish_part(index, first, count, ChunkOutcome::Items(payload));
                rest
            }
            _ => {
                let (name, pid) = (self.link.name().to_owned(), self.link.pid());
                self.break_stream(Error::new(
                    ErrorKind::Protocol,
                    format!("pool worker '{name}' (pid {pid}) sent a result that matches no task it holds; its stream is corrupt"),
                ));
                None
            }
        }
    }

    /// Takes back the chunks of `job` it has not started: whether any of
    /// its chunks had started, and the cancelled ones.
    pub(super) fn cancel(&mut self, job: &Arc<Job>) -> (bool, Vec<Pending>) {
        let mut started = false;
        let mut cancelled = Vec::new();
        let mut kept = VecDeque::with_capacity(self.in_flight.len());
        let in_flight = std::mem::take(&mut self.in_flight);
        for f in in_flight {
            if !Arc::ptr_eq(&f.chunk.job, job) {
                kept.push_back(f);
            } else if self.link.is_local() && self.page().cancel(f.seq) {
                self.skipped.push_back(f.seq);
                cancelled.push(f.chunk);
            } else {
                started = true;
                kept.push_back(f);
            }
        }
        self.in_flight = kept;
        (started, cancelled)
    }

    /// Kills this worker if it is running (or about to run) an item of
    /// `job`, making sure that nothing after `job`'s chunk starts first, so
    /// that only `job`'s items are lost: they fail with `Cancelled`. Whether
    /// it did.
    pub(super) fn kill_job(&mut self, job: &Arc<Job>) -> bool {
        // A rank cannot be stopped in the middle of an item.
        if !self.link.is_local() || !self.in_flight.iter().any(|f| Arc::ptr_eq(&f.chunk.job, job)) {
            return false;
        }
        // A worker already killed (for another job) is frozen too: it may
        // have finished this job's chunk before it stopped (a chunk sent
        // again after another worker died can come before that job's in
        // the window), and then its result, on its way, is delivered.
        let now = self.freeze();
        // The job's first chunk here that had not finished when the worker
        // stopped (its earlier ones may have finished, their results on
        // their way): the one running, or about to.
        let unfinished = self
            .in_flight
            .iter()
            .filter(|f| Arc::ptr_eq(&f.chunk.job, job))
            .map(|f| f.seq)
            .find(|&seq| now.pos() < status::pos(seq, self.count_of(seq)));
        let Some(seq) = unfinished else {
            // Every chunk of the job here finished before the worker
            // stopped: nothing of it is left to stop.
            self.thaw();
            return false;
        };
        self.doomed.push(Arc::clone(job));
        if self.killed {
            // Let it go on to its end: the signal it was sent may be one
            // it handles (`terminate_workers` sends `SIGTERM`).
            self.thaw();
        } else {
            self.stop = Some((status::pos(seq + 1, 0), Fate::Cancelled));
            self.kill();
        }
        true
    }

    /// The item count of chunk `seq` in the window.
    fn count_of(&self, seq: u64) -> u32 {
        self.in_flight.iter().find(|f| f.seq == seq).map_or(0, |f| f.chunk.count)
    }

    /// Kills this worker if it still runs the item at `pos`, making sure
    /// nothing after it starts first; false if that item has finished.
    fn stop_item(&mut self, pos: u64, fate: Fate) -> bool {
        let now = self.freeze();
        if !(now.running() && now.pos() == pos) {
            self.thaw();
            return false;
        }
        self.stop = Some((pos + 1, fate));
        self.kill();
        true
    }

    /// Stops the worker where it is (`SIGSTOP`, then a wait until the
    /// kernel says it has stopped) and returns what it is doing: that
    /// cannot change until [`thaw`](Worker::thaw) or a kill. A worker that
    /// does not stop within [`FREEZE_LIMIT`] (stuck in the kernel) is read
    /// as it is.
    fn freeze(&self) -> status::Progress {
        if self.link.signal(sys::SIGSTOP).is_ok() {
            let deadline = Instant::now() + FREEZE_LIMIT;
            let mut looks = 0u32;
            while !sys::is_stopped_or_gone(self.link.pid()) && Instant::now() < deadline {
                looks += 1;
                if looks < 50 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
        self.page().progress()
    }

    /// Lets a frozen worker go on.
    fn thaw(&self) {
        let _ = self.link.signal(sys::SIGCONT);
    }

    /// Looks at the item running now, for timeouts: kills the worker if it
    /// has run past its chunk's timeout. Returns when to look again (`None`
    /// when nothing it holds is timed).
    pub(super) fn watch(&mut self, now: Instant) -> Option<Instant> {
        let shortest = self.in_flight.iter().filter_map(|f| f.chunk.timeout).min();
        let Some(shortest) = shortest.filter(|_| !self.killed && self.ready) else {
            self.seen = None;
            return None;
        };
        // Look at least this often, so that an item that starts right after
        // a look is seen soon: a task is stopped at most this late.
        let period = (shortest / 4).clamp(Duration::from_millis(1), Duration::from_millis(100));
        let p = self.page().progress();
        let timeout = self.running_timeout(p);
        let Some(timeout) = timeout else {
            self.seen = None;
            return Some(now + period);
        };
        match self.seen {
            Some((pos, since)) if pos == p.pos() => {
                if now.saturating_duration_since(since) >= timeout {
                    if self.stop_item(pos, Fate::Timeout(timeout)) {
                        return None;
                    }
                    self.seen = None;
                    return Some(now + period);
                }
                Some((since + timeout).min(now + period))
            }
            _ => {
                self.seen = Some((p.pos(), now));
                Some((now + timeout).min(now + period))
            }
        }
    }

    /// The timeout of the item running per `p`, if it runs and is timed.
    fn running_timeout(&self, p: Progress) -> Option<Duration> {
        if !p.running() {
            return None;
        }
        self.in_flight.iter().find(|f| f.seq == p.seq()).and_then(|f| f.chunk.timeout)
    }

    /// How long the item running now has been seen running, if one runs.
    pub(super) fn current_age(&mut self, now: Instant) -> Option<Duration> {
        let p = self.page().progress();
        if !p.running() {
            self.seen = None;
            return None;
        }
        match self.seen {
            Some((pos, since)) if pos == p.pos() => Some(now.saturating_duration_since(since)),
            _ => {
                self.seen = Some((p.pos(), now));
                Some(Duration::ZERO)
            }
        }
    }

    /// What it is doing, for `stats()`: its numbers, and how many of its
    /// items wait (sent, not started) and run.
    pub(super) fn stats(&mut self, now: Instant) -> (WorkerStats, u64, u64) {
        let snap = self.page().snapshot();
        let p = snap.progress;
        let running = p.running() && !self.killed;
        let waiting: u64 = self
            .in_flight
            .iter()
            .map(|f| match f.seq.cmp(&p.seq()) {
                std::cmp::Ordering::Less => 0,
                std::cmp::Ordering::Equal => u64::from(f.chunk.count.saturating_sub(p.item() + u32::from(p.running()))),
                std::cmp::Ordering::Greater => u64::from(f.chunk.count),
            })
            .sum();
        let age = if running { self.current_age(now) } else { None };
        let (mpi_rank, host) = self.link.rank().unzip();
        let stats = WorkerStats {
            pid: self.link.pid() as u32,
            name: self.link.name().to_owned(),
            // A rank's page is its own: count what came back instead.
            tasks_run: if self.link.is_local() { snap.items } else { self.items_back },
            current_task_age: age,
            rss_bytes: self.link.rss_bytes(),
            mpi_rank,
            host,
        };
        (stats, waiting, u64::from(running))
    }

    /// Gives every chunk this (ended) worker held its fate: delivers what
    /// it finished, fails the item it ran, and returns the rest to run
    /// again.
    pub(super) fn bury(mut self, counts: &mut Counts) -> Remains {
        let mut status = self.link.poll_status().ok().flatten();
        if status.is_none() {
            // Its end was reported by a fork server that died, before the
            // worker itself did: make sure it is gone before its page is
            // read, or an item it starts afterwards would run here and
            // again elsewhere.
            let _ = self.link.signal(sys::SIGKILL);
            let fd = self.link.ended_fd();
            let mut fds = [sys::PollFd::new(&fd, sys::PollFlags::IN)];
            let _ = sys::poll(&mut fds, Some(Duration::from_secs(1)));
            status = self.link.poll_status().ok().flatten();
        }
        if !self.link.is_local() && !self.in_flight.is_empty() && self.failure.is_none() {
            // A rank's page is its own: which of these it ran is not known
            // here, so none runs again (it could run twice).
            self.failure = Some(self.lost_error(status));
        }
        if let Some(e) = self.failure.take() {
            // A broken stream: nothing it says can be trusted.
            for f in self.in_flight.drain(..) {
                f.chunk.fail(e.duplicate(), counts);
            }
            return Remains::default();
        }
        let snap = self.page().snapshot();
        // Whole frames it made but had not sent.
        let taken = self.stream.consumed();
        if snap.committed > taken {
            match self.page().left_behind(snap.base, taken, snap.committed) {
                Ok(bytes) => self.take_left_frames(&bytes, counts),
                Err(e) => {
                    // The chunks it finished cannot be read back: they fail
                    // (they ran; running them again could run them twice).
                    let err = Error::io("reading what a dead pool worker left unsent", e);
                    let (finished, rest): (VecDeque<InFlight>, VecDeque<InFlight>) =
                        std::mem::take(&mut self.in_flight).into_iter().partition(|f| f.seq < snap.chunk);
                    self.in_flight = rest;
                    for f in finished {
                        f.chunk.fail(err.duplicate(), counts);
                    }
                }
            }
        }
        let mut remains = Remains::default();
        if let Some(f) = self.in_flight.pop_front() {
            let lost = self.lost_error(status);
            if snap.chunk == f.seq {
                self.begun_chunk(f, &snap, lost, counts, &mut remains);
            } else {
                self.not_started(f.chunk, counts, &mut remains);
            }
        }
        for f in std::mem::take(&mut self.in_flight) {
            self.not_started(f.chunk, counts, &mut remains);
        }
        remains
    }

    /// The whole frames in `bytes`, which a dead worker left unsent.
    fn take_left_frames(&mut self, bytes: &[u8], counts: &mut Counts) {
        let mut rest = bytes;
        while rest.len() >= codec::HEADER {
            let raw = u64::from_le_bytes(rest[..codec::HEADER].try_into().expect("8 header bytes"));
            let len = (raw & codec::LEN_MASK) as usize;
            let Some(payload) = rest.get(codec::HEADER..codec::HEADER + len) else { break };
            let kind = (raw >> 56) as u8;
            if kind == wire::RESULT {
                if let Some(more) = self.take_result(payload.to_vec(), counts) {
                    // Stopped early: the rest runs again, before anything
                    // that came after it.
                    self.in_flight.push_front(InFlight { seq: u64::MAX, chunk: more });
                }
            }
            rest = &rest[codec::HEADER + len..];
        }
    }

    /// The fate of the chunk the worker was in when it died.
    fn begun_chunk(
        &mut self,
        mut f: InFlight,
        snap: &status::Snapshot,
        lost: Error,
        counts: &mut Counts,
        remains: &mut Remains,
    ) {
        let p = snap.progress;
        let (mut done, running) = if p.seq() == f.seq { (p.item(), p.running()) } else { (0, false) };
        // An item at or after the one the pool stopped started only if the
        // worker did not freeze in time: it is lost as in any death (it may
        // have run partly), not given the stopped item's fate.
        let past_stop = running && self.stop.is_some_and(|(limit, _)| p.pos() >= limit);
        done = done.min(f.chunk.count);
        let c = &f.chunk;
        if done > 0 {
            let from = snap.frame + (codec::HEADER + wire::RESULT_HEAD) as u64;
            match self.page().left_behind(snap.base, from, snap.done_end) {
                Ok(outcomes) => {
                    let payload = wire::partial_result(c.job.id, c.index, c.first, done, snap.failed, &outcomes);
                    counts.note_items(done, snap.failed);
                    c.job.finish_part(c.index, c.first, done, ChunkOutcome::Items(payload));
                }
                Err(e) => {
                    let err = Error::io("reading the results a dead pool worker finished", e);
                    counts.note_failed(done);
                    c.job.finish_part(c.index, c.first, done, ChunkOutcome::Failed(err));
                }
            }
        }
        if running && done < c.count {
            let err = if past_stop {
                lost
            } else if self.is_doomed(&c.job) {
                cancelled()
            } else {
                match self.stop {
                    Some((_, Fate::Timeout(t))) => timed_out(t, &self.link),
                    _ => lost,
                }
            };
            if err.kind() == ErrorKind::Cancelled {
                counts.note_cancelled(1);
            } else {
                counts.note_failed(1);
            }
            c.job.finish_part(c.index, c.first + done, 1, ChunkOutcome::Failed(err));
            done += 1;
        } else if done == 0 && !running {
            // Begun, nothing run: the worker may have died of this chunk.
            f.chunk.begun_deaths += 1;
            if f.chunk.begun_deaths >= BEGUN_DEATHS {
                counts.note_failed(1);
                let c = &f.chunk;
                c.job.finish_part(c.index, c.first, 1, ChunkOutcome::Failed(lost));
                done = 1;
            }
        }
        if done < f.chunk.count {
            let rest = if done == 0 { f.chunk } else { f.chunk.rest(done) };
            self.not_started(rest, counts, remains);
        }
    }

    /// A chunk (or its rest) that never started: it runs again, unless its
    /// job was being killed.
    fn not_started(&self, chunk: Pending, counts: &mut Counts, remains: &mut Remains) {
        if self.is_doomed(&chunk.job) {
            chunk.fail(cancelled(), counts);
        } else {
            remains.rerun.push(chunk);
        }
    }

    fn is_doomed(&self, job: &Arc<Job>) -> bool {
        self.doomed.iter().any(|d| Arc::ptr_eq(d, job))
    }

    /// The error of an item that was running when the worker died, for no
    /// reason of ours.
    fn lost_error(&self, status: Option<ExitStatus>) -> Error {
        let code = status.and_then(ExitStatus::exitcode);
        let aborted = matches!(status, Some(ExitStatus::Signal(s)) if s == sys::SIGABRT);
        let memory = self.page().memory_note().filter(|_| aborted);
        let exceeded = match self.link.memory_kill(status) {
            Some((limit, peak)) => Some((limit, peak, MemoryCap::Cgroup)),
            None => memory.filter(|&(_, peak)| peak > 0).map(|(limit, peak)| (limit, peak, MemoryCap::Rlimit)),
        };
        if let Some((limit, peak, cap)) = exceeded {
            let who = format!("the task (in pool worker '{}', pid {})", self.link.name(), self.link.pid());
            let then = "it failed alone, and a new worker took its place";
            return crate::process::memory_exceeded(&who, limit, peak, cap, then)
                .with_pid(self.link.pid() as u32)
                .with_exitcode(code);
        }
        let how = match status {
            // A limit, but the handler could not tell (a backtrace printed
            // on the refused allocation hid it): say what is likely.
            Some(ExitStatus::Signal(_)) if memory.is_some() => {
                "was killed by SIGABRT (it has a memory_limit: most likely an allocation was refused)".to_owned()
            }
            Some(ExitStatus::Code(c)) => format!("exited with code {c}"),
            Some(ExitStatus::Signal(s)) => format!("was killed by {}", sys::signal_name(s)),
            _ => "ended".to_owned(),
        };
        Error::new(
            ErrorKind::WorkerLost,
            format!(
                "pool worker '{}' (pid {}) {how} while it ran this task (a crash, an abort, the OOM killer, exit() or \
                 a kill); the task was not retried, the tasks it had not started went to other workers, and a new \
                 worker took its place",
                self.link.name(),
                self.link.pid()
            ),
        )
        .with_pid(self.link.pid() as u32)
        .with_exitcode(code)
    }
}

/// The error of a task that was cancelled, or killed while it ran.
pub(super) fn cancelled() -> Error {
    Error::new(ErrorKind::Cancelled, "the task was cancelled (cancel() or kill()) before it finished")
}

fn timed_out(t: Duration, link: &Link) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "the task ran past its timeout of {t:?}; its worker '{}' (pid {}) was killed and replaced, the tasks it \
             had not started went to other workers, and nothing else was affected",
            link.name(),
            link.pid()
        ),
    )
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.link.forget();
        // The page of a worker that has ended can serve the next one.
        if let Some(page) = self.page.take().filter(|_| self.link.has_ended()) {
            page.recycle();
        }
    }
}
