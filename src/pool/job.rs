//! Jobs: the result slots that the dispatcher fills and callers wait on.
//!
//! A job is one call (`apply_async`, `map`, an `imap`) split into chunks.
//! A chunk's slot fills with parts: the worker's encoded outcomes for a run
//! of its items, or one error for a run of them (their worker was lost,
//! they timed out, they were cancelled). A chunk usually finishes in one
//! part; it takes more when a worker died in the middle of it (the items
//! it finished, the one it was running, and the rest, run again by another
//! worker). Decoding into the caller's types happens in the caller's
//! thread, when it takes the chunk, so the dispatcher only moves bytes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::stats::TaskUsage;
use super::wire::Outcomes;
use crate::error::{Error, ErrorKind, Result};

/// What one part of a chunk holds.
#[derive(Debug)]
pub(crate) enum ChunkOutcome {
    /// A `RESULT` payload: the outcomes of the part's items.
    Items(Vec<u8>),
    /// One failure for every item of the part.
    Failed(Error),
}

/// A finished chunk: its parts, in item order, with their item counts.
#[derive(Debug)]
pub(crate) struct Chunk {
    head: (u32, ChunkOutcome),
    /// The parts after the first (none unless a worker died inside it).
    rest: Vec<(u32, ChunkOutcome)>,
}

impl Chunk {
    /// Its parts, in item order.
    fn parts(&self) -> impl Iterator<Item = &(u32, ChunkOutcome)> {
        std::iter::once(&self.head).chain(&self.rest)
    }

    /// How many items the chunk has.
    pub(crate) fn count(&self) -> u32 {
        self.parts().map(|(n, _)| n).sum()
    }

    /// The bytes its results take.
    fn bytes(&self) -> usize {
        self.parts().map(|(_, o)| if let ChunkOutcome::Items(p) = o { p.len() } else { 0 }).sum()
    }

    /// Whether every item of the chunk succeeded.
    pub(crate) fn all_ok(&self) -> bool {
        self.parts().all(|(_, o)| match o {
            ChunkOutcome::Items(payload) => super::wire::failed_items(payload) == 0,
            ChunkOutcome::Failed(_) => false,
        })
    }

    /// Decodes every item.
    pub(crate) fn decode<R: DeserializeOwned + 'static>(&self) -> Vec<Result<R>> {
        let mut out = Vec::with_capacity(self.count() as usize);
        for (count, outcome) in self.parts() {
            match outcome {
                ChunkOutcome::Items(payload) => {
                    let mut outcomes = Outcomes::of(payload);
                    out.extend((0..*count).map(|_| outcomes.next_item::<R>()));
                }
                ChunkOutcome::Failed(e) => out.extend((0..*count).map(|_| Err(e.duplicate()))),
            }
        }
        out
    }

    /// Decodes the items onto `out`, stopping at the first failed one,
    /// whose error comes back.
    pub(crate) fn decode_into<R: DeserializeOwned + 'static>(&self, out: &mut Vec<R>) -> Result<()> {
        out.reserve(self.count() as usize);
        for (count, outcome) in self.parts() {
            match outcome {
                ChunkOutcome::Items(payload) => {
                    let mut outcomes = Outcomes::of(payload);
                    for _ in 0..*count {
                        out.push(outcomes.next_item::<R>()?);
                    }
                }
                ChunkOutcome::Failed(e) if *count > 0 => return Err(e.duplicate()),
                ChunkOutcome::Failed(_) => {}
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
enum Slot {
    /// Submitted, not finished: the parts that came so far, by first item.
    Pending(Vec<(u32, u32, ChunkOutcome)>),
    /// Finished, not taken yet.
    Ready(Chunk),
    /// Handed to the caller.
    Taken,
    /// Not added yet (a later chunk was added first).
    Absent,
}

#[derive(Debug)]
pub(crate) struct JobState {
    /// Chunks `base..`: taken chunks at the front are dropped, so that an
    /// endless `imap` keeps flat memory.
    slots: VecDeque<(u32, Slot)>,
    base: usize,
    /// Finished chunks not taken yet, in the order they finished.
    finished: VecDeque<u32>,
    pending: usize,
    /// The result bytes of finished chunks not taken yet.
    ready_bytes: usize,
    wakers: Vec<Waker>,
    /// Threads asleep on the condition variable, waiting for any chunk and
    /// for every chunk: only they need a (costly) notification, and the
    /// latter only once all is done.
    sleepers: usize,
    whole_sleepers: usize,
}

/// One call's chunks.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) id: u64,
    state: Mutex<JobState>,
    cond: Condvar,
    cancelled: AtomicBool,
    /// What its chunks used, summed (CPU) and at most (peak memory), for
    /// pools with `track_usage`.
    usage: Mutex<Option<TaskUsage>>,
    /// Whether the last wait ended within the spin period, so that the next
    /// one should spin too. A job of slow chunks stops spinning, which
    /// leaves the CPU to the workers.
    spin: AtomicBool,
}

static NEXT_JOB: AtomicU64 = AtomicU64::new(1);

/// How long a waiter looks for its result before it sleeps: a short task's
/// result usually arrives sooner than a wake-up would take.
const SPIN: Duration = Duration::from_micros(60);

impl Job {
    pub(crate) fn new() -> Job {
        Job {
            id: NEXT_JOB.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(JobState {
                slots: VecDeque::new(),
                base: 0,
                finished: VecDeque::new(),
                pending: 0,
                ready_bytes: 0,
                wakers: Vec::new(),
                sleepers: 0,
                whole_sleepers: 0,
            }),
            cond: Condvar::new(),
            usage: Mutex::new(None),
            cancelled: AtomicBool::new(false),
            spin: AtomicBool::new(true),
        }
    }

    /// Notes that the job was cancelled (before its chunks are failed).
    pub(crate) fn mark_cancelled(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl JobState {
    /// Chunk `index`'s slot; `None` once taken and dropped, or never added.
    fn slot(&self, index: u32) -> Option<&(u32, Slot)> {
        (index as usize).checked_sub(self.base).and_then(|i| self.slots.get(i))
    }

    fn slot_mut(&mut self, index: u32) -> Option<&mut (u32, Slot)> {
        (index as usize).checked_sub(self.base).and_then(|i| self.slots.get_mut(i))
    }

    /// Whether chunk `index` is still to finish.
    fn is_pending(&self, index: u32) -> bool {
        matches!(self.slot(index), Some((_, Slot::Pending(_))))
    }

    /// Takes chunk `index`, and drops the taken chunks at the front.
    fn take_slot(&mut self, index: u32) -> Option<Chunk> {
        let (_, slot) = self.slot_mut(index)?;
        if !matches!(slot, Slot::Ready(_)) {
            return None;
        }
        let Slot::Ready(chunk) = std::mem::replace(slot, Slot::Taken) else { unreachable!() };
        self.ready_bytes -= chunk.bytes();
        while matches!(self.slots.front(), Some((_, Slot::Taken))) {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(chunk)
    }
}

impl Job {
    /// Adds chunk `index` of `count` items, pending.
    pub(crate) fn add_chunk(&self, index: u32, count: u32) {
        let mut st = self.lock();
        let Some(at) = (index as usize).checked_sub(st.base) else {
            return;
        };
        if st.slots.len() <= at {
            st.slots.resize_with(at + 1, || (0, Slot::Absent));
        }
        st.slots[at] = (count, Slot::Pending(Vec::new()));
        st.pending += 1;
    }

    /// Delivers `count` items of chunk `index` from item `first` on; the
    /// chunk is finished once every item has come. A part that overlaps one
    /// already delivered is ignored (each item keeps its first outcome).
    /// Adds a chunk's usage.
    pub(crate) fn note_usage(&self, cpu: Duration, peak: u64) {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let u = usage.get_or_insert(TaskUsage { cpu_time: Duration::ZERO, peak_rss: 0 });
        u.cpu_time += cpu;
        u.peak_rss = u.peak_rss.max(peak);
    }

    /// What its chunks used so far (`None` without `track_usage`).
    pub(crate) fn usage(&self) -> Option<TaskUsage> {
        *self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn finish_part(&self, index: u32, first: u32, count: u32, outcome: ChunkOutcome) {
        let (wakers, sleepers) = {
            let mut st = self.lock();
            let Some((total, slot)) = st.slot_mut(index) else {
                return;
            };
            let total = *total;
            let Slot::Pending(parts) = slot else {
                return;
            };
            let end = first.saturating_add(count);
            if end > total || parts.iter().any(|&(f, n, _)| first < f + n && f < end) {
                return;
            }
            let chunk = if parts.is_empty() && count == total {
                // The common case: the whole chunk in one part.
                Chunk { head: (count, outcome), rest: Vec::new() }
            } else {
                parts.push((first, count, outcome));
                if parts.iter().map(|&(_, n, _)| n).sum::<u32>() < total {
                    return;
                }
                parts.sort_by_key(|&(f, _, _)| f);
                let mut parts = std::mem::take(parts).into_iter().map(|(_, n, o)| (n, o));
                let head = parts.next().expect("a finished chunk has a part");
                Chunk { head, rest: parts.collect() }
            };
            let bytes = chunk.bytes();
            *slot = Slot::Ready(chunk);
            st.ready_bytes += bytes;
            st.pending -= 1;
            st.finished.push_back(index);
            let wakers = if st.pending == 0 { std::mem::take(&mut st.wakers) } else { Vec::new() };
            (wakers, st.sleepers + if st.pending == 0 { st.whole_sleepers } else { 0 })
        };
        if sleepers > 0 {
            self.cond.notify_all();
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Whether every chunk added so far has finished.
    pub(crate) fn all_finished(&self) -> bool {
        self.lock().pending == 0
    }

    /// Registers a waker to wake when every chunk has finished; false if
    /// they already have.
    pub(crate) fn add_waker(&self, waker: &Waker) -> bool {
        let mut st = self.lock();
        if st.pending == 0 {
            return false;
        }
        if !st.wakers.iter().any(|w| w.will_wake(waker)) {
            st.wakers.push(waker.clone());
        }
        true
    }

    /// Whether every finished chunk succeeded in full; `None` while some
    /// chunk is pending.
    pub(crate) fn all_ok(&self) -> Option<bool> {
        let st = self.lock();
        if st.pending > 0 {
            return None;
        }
        Some(st.slots.iter().all(|(_, slot)| match slot {
            Slot::Ready(chunk) => chunk.all_ok(),
            _ => true,
        }))
    }

    /// Whether any item of the job has finished (in a chunk finished or
    /// not).
    pub(crate) fn any_finished_part(&self) -> bool {
        let st = self.lock();
        st.base > 0
            || st.slots.iter().any(|(_, slot)| match slot {
                Slot::Pending(parts) => !parts.is_empty(),
                Slot::Ready(_) | Slot::Taken => true,
                Slot::Absent => false,
            })
    }

    /// The result bytes of finished chunks not taken yet.
    pub(crate) fn ready_bytes(&self) -> usize {
        self.lock().ready_bytes
    }

    /// Waits until `ready(state)` holds or `deadline` passes, looking
    /// without sleeping for a short while first if the last wait was short.
    /// `whole` says that `ready` needs every chunk finished, so that the
    /// waiter sleeps through the others.
    fn wait_for(
        &self,
        deadline: Option<Instant>,
        whole: bool,
        ready: impl Fn(&JobState) -> bool,
        help: &dyn Fn(),
    ) -> Result<MutexGuard<'_, JobState>> {
        let start = Instant::now();
        let spin_until = if self.spin.load(Ordering::Relaxed) { start + SPIN } else { start };
        loop {
            let st = self.lock();
            if ready(&st) {
                return Ok(st);
            }
            drop(st);
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(timeout());
            }
            if now >= spin_until {
                break;
            }
            help();
            std::thread::yield_now();
        }
        let mut st = self.lock();
        // A pool worker whose task waits here lends its token meanwhile
        // (`tokens.rs`), and takes one again, with no lock held, before it
        // goes on.
        let mut lent = false;
        loop {
            if ready(&st) {
                if std::mem::take(&mut lent) {
                    drop(st);
                    super::tokens::take_back();
                    st = self.lock();
                    continue;
                }
                self.spin.store(start.elapsed() < SPIN, Ordering::Relaxed);
                return Ok(st);
            }
            let Some(left) = crate::synchronize::time_left(deadline) else {
                if lent {
                    drop(st);
                    super::tokens::take_back();
                }
                return Err(timeout());
            };
            if !lent {
                lent = super::tokens::lend();
            }
            fn count(st: &mut JobState, whole: bool) -> &mut usize {
                if whole { &mut st.whole_sleepers } else { &mut st.sleepers }
            }
            *count(&mut st, whole) += 1;
            st = match left {
                None => self.cond.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(left) => self.cond.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0,
            };
            *count(&mut st, whole) -= 1;
        }
    }

    /// Waits for chunk `index` to finish, without taking it; its item count.
    pub(crate) fn wait_chunk(&self, index: u32) -> Result<u32> {
        let st = self.wait_for(None, false, |st| !st.is_pending(index), &|| {})?;
        Ok(st.slot(index).map_or(0, |(count, _)| *count))
    }

    /// Waits for every chunk (up to `deadline`).
    /// While it looks without sleeping, it calls `help` between looks:
    /// the pool's `Shared::help`, which takes results that have come.
    pub(crate) fn wait_all(&self, deadline: Option<Instant>, help: &dyn Fn()) -> Result<()> {
        self.wait_for(deadline, true, |st| st.pending == 0, help).map(drop)
    }

    /// Waits for chunk `index` and takes it.
    pub(crate) fn take(&self, index: u32, deadline: Option<Instant>) -> Result<Chunk> {
        let mut st = self.wait_for(deadline, false, |st| !st.is_pending(index), &|| {})?;
        // Taken in order, as `map` does, it is at the front: no scan of
        // every finished chunk per take.
        if let Some(at) = st.finished.iter().position(|&f| f == index) {
            st.finished.remove(at);
        }
        st.take_slot(index).ok_or_else(|| {
            Error::new(ErrorKind::InvalidState, "this result was already taken; a result can be taken once")
        })
    }

    /// Waits for any finished chunk not taken yet and takes it (up to
    /// `deadline`); `None` when no chunk is pending or waiting.
    pub(crate) fn take_any(&self, deadline: Option<Instant>) -> Result<Option<(u32, Chunk)>> {
        let mut st = self.wait_for(deadline, false, |st| !st.finished.is_empty() || st.pending == 0, &|| {})?;
        let Some(index) = st.finished.pop_front() else {
            return Ok(None);
        };
        let chunk = st.take_slot(index).expect("only ready chunks are in the finished queue");
        Ok(Some((index, chunk)))
    }
}

fn timeout() -> Error {
    Error::new(
        ErrorKind::Timeout,
        "the result is not ready yet; the task goes on running: wait again, or cancel it if it has not started",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_chunks_are_dropped_so_an_endless_job_keeps_flat_memory() {
        let job = Job::new();
        for i in 0..10_000u32 {
            job.add_chunk(i, 1);
            job.finish_part(i, 0, 1, ChunkOutcome::Items(Vec::new()));
            if i % 2 == 1 {
                // In order, and out of order through take_any.
                job.take(i - 1, None).unwrap();
                job.take_any(None).unwrap().unwrap();
            }
            assert!(job.lock().slots.len() <= 2, "slots kept: {}", job.lock().slots.len());
        }
        assert_eq!(job.take(4, None).unwrap_err().kind(), ErrorKind::InvalidState, "taken long ago");
        job.add_chunk(10_001, 1);
        job.add_chunk(10_000, 1);
        job.finish_part(10_001, 0, 1, ChunkOutcome::Items(Vec::new()));
        assert_eq!(job.take_any(None).unwrap().unwrap().0, 10_001);
        assert!(!job.all_finished());
        job.finish_part(10_000, 0, 1, ChunkOutcome::Items(Vec::new()));
        assert_eq!(job.take(10_000, None).unwrap().count(), 1);
        assert!(job.lock().slots.is_empty());
    }

    #[test]
    fn a_chunk_finishes_when_its_parts_cover_it_and_overlaps_are_ignored() {
        let job = Job::new();
        job.add_chunk(0, 10);
        let lost = || ChunkOutcome::Failed(Error::new(ErrorKind::WorkerLost, "lost"));
        job.finish_part(0, 4, 1, lost());
        job.finish_part(0, 0, 4, ChunkOutcome::Items(Vec::new()));
        job.finish_part(0, 3, 2, lost());
        job.finish_part(0, 9, 2, lost());
        assert!(!job.all_finished(), "6 of 10 items are still to come");
        job.finish_part(0, 5, 5, ChunkOutcome::Items(Vec::new()));
        assert!(job.all_finished());
        let chunk = job.take(0, None).unwrap();
        assert_eq!(chunk.count(), 10);
        assert!(!chunk.all_ok());
        assert_eq!(chunk.parts().map(|(n, _)| *n).collect::<Vec<_>>(), [4, 1, 5]);
    }
}
