//! `imap` and `imap_unordered`: results of lazily fed input.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::dispatch::{Pending, Shared};
use super::job::{Chunk, Job};
use super::progress::Bar;
use super::wire::{ChunkHead, Delivery};
use crate::error::{ErrorKind, Result};
use crate::runtime::TaskId;

/// Pulls input lazily into a job. What is submitted and not taken yet is
/// bounded three ways, whichever comes first: in chunks (the pool's
/// `max_in_flight`), in bytes (its `max_in_flight_bytes`: the encoded
/// arguments of those chunks and the results of those finished), and, with
/// a `buffersize`, in items pulled from the input ahead of the consumer. At
/// least one chunk is always in flight.
pub(crate) struct Feeder<It> {
    shared: Arc<Shared>,
    input: Option<It>,
    task: TaskId,
    chunksize: usize,
    timeout: Option<Duration>,
    buffersize: Option<usize>,
    job: Arc<Job>,
    submitted: u32,
    taken: u32,
    /// Items submitted, and items taken (decoded for the consumer).
    submitted_items: u64,
    taken_items: u64,
    /// The encoded bytes of every chunk submitted so far: the chunks not
    /// taken yet count for the mean chunk's size each.
    sent_bytes: u64,
    failed: Option<crate::Error>,
    bar: Bar,
}

impl<It> fmt::Debug for Feeder<It> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feeder")
            .field("job", &self.job.id)
            .field("submitted", &self.submitted)
            .field("taken", &self.taken)
            .field("exhausted", &self.input.is_none())
            .finish_non_exhaustive()
    }
}

impl<A: Serialize + 'static, It: Iterator<Item = A>> Feeder<It> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        input: It,
        task: TaskId,
        chunksize: usize,
        timeout: Option<Duration>,
        buffersize: Option<usize>,
    ) -> Self {
        let bar = match input.size_hint() {
            (low, Some(high)) if low == high => Bar::new(low as u64),
            _ => Bar::unbounded(),
        };
        Feeder {
            shared,
            input: Some(input),
            task,
            chunksize,
            timeout,
            buffersize,
            job: Arc::new(Job::new()),
            submitted: 0,
            taken: 0,
            submitted_items: 0,
            taken_items: 0,
            sent_bytes: 0,
            failed: None,
            bar,
        }
    }

    /// Submits chunks until one of the bounds is reached or the input ends.
    fn top_up(&mut self) {
        let cap = self.shared.config.max_in_flight as u32;
        let byte_cap = self.shared.config.max_in_flight_bytes;
        // Refill in batches, once half the cap has been consumed (or when
        // nothing is outstanding): one submission, one write per worker.
        let outstanding = self.submitted - self.taken;
        if outstanding > 0 && outstanding > cap / 2 {
            return;
        }
        let mean_chunk = if self.submitted == 0 { 0 } else { self.sent_bytes / u64::from(self.submitted) };
        let mut bytes = (mean_chunk * u64::from(outstanding)) as usize + self.job.ready_bytes();
        let mut items = self.submitted_items;
        let mut pending = Vec::new();
        loop {
            let outstanding = self.submitted + pending.len() as u32 - self.taken;
            if outstanding >= cap || (outstanding > 0 && bytes >= byte_cap) {
                break;
            }
            // With a buffersize, no more items ahead of the consumer than it.
            let want = match self.buffersize {
                Some(limit) => {
                    (limit as u64).saturating_sub(items - self.taken_items).min(self.chunksize as u64) as usize
                }
                None => self.chunksize,
            };
            if want == 0 {
                break;
            }
            let Some(input) = &mut self.input else { break };
            let index = self.submitted + pending.len() as u32;
            let head = ChunkHead { job: self.job.id, index, task: self.task, delivery: Delivery::Prompt };
            let encoded = Pending::encode(&self.job, head, input.by_ref().take(want), self.timeout);
            match encoded {
                Ok(chunk) => {
                    if (chunk.count as usize) < want {
                        self.input = None;
                    }
                    if chunk.count == 0 {
                        break;
                    }
                    bytes += chunk.frame.len();
                    items += u64::from(chunk.count);
                    pending.push(chunk);
                }
                Err(e) => {
                    self.failed = Some(e);
                    self.input = None;
                    break;
                }
            }
        }
        if pending.is_empty() {
            return;
        }
        let n = pending.len() as u32;
        let size: usize = pending.iter().map(|p| p.frame.len()).sum();
        let count: u64 = pending.iter().map(|p| u64::from(p.count)).sum();
        match self.shared.submit(pending) {
            Ok(()) => {
                self.submitted += n;
                self.sent_bytes += size as u64;
                self.submitted_items += count;
            }
            Err(e) => {
                self.failed = Some(e);
                self.input = None;
            }
        }
    }

    /// Tops up, then says whether anything is left to wait for.
    fn more(&mut self) -> bool {
        self.top_up();
        self.taken < self.submitted
    }

    /// The next result: from `buffer`, else the feeder's own error, else
    /// from the chunk that `take` waits for until `deadline` (`None`:
    /// nothing was ready), decoded into `buffer`. `Err` only when the
    /// deadline passed first; the feeder is then as it was.
    fn next_result<R: DeserializeOwned + 'static>(
        &mut self,
        buffer: &mut VecDeque<Result<R>>,
        deadline: Option<Instant>,
        take: impl Fn(&Job, u32, Option<Instant>) -> Result<Option<Chunk>>,
    ) -> Result<Option<Result<R>>> {
        loop {
            if let Some(item) = buffer.pop_front() {
                return Ok(Some(item));
            }
            if let Some(e) = self.failed.take() {
                return Ok(Some(Err(e)));
            }
            if !self.more() {
                return Ok(self.failed.take().map(Err));
            }
            match take(&self.job, self.taken, deadline) {
                Ok(Some(chunk)) => {
                    self.taken += 1;
                    self.taken_items += u64::from(chunk.count());
                    buffer.extend(chunk.decode::<R>());
                    self.bar.inc(u64::from(chunk.count()));
                }
                Ok(None) => {}
                Err(e) if e.kind() == ErrorKind::Timeout && deadline.is_some() => return Err(e),
                Err(e) => return Ok(Some(Err(e))),
            }
        }
    }
}

/// The error of a `next_timeout` that waited in vain.
fn nothing_within(timeout: Duration) -> crate::Error {
    crate::Error::new(
        ErrorKind::Timeout,
        format!("no result came within {timeout:?}; the iterator is still usable: call it again to wait more"),
    )
}

impl<It> Drop for Feeder<It> {
    fn drop(&mut self) {
        self.shared.forget(&self.job);
        self.bar.finish();
    }
}

/// The iterator of [`Pool::imap`](crate::Pool::imap): results in input
/// order, each `Ok` or that item's `Err`.
///
/// # Examples
///
/// ```
/// use multiproc::Pool;
/// fn halve(x: u32) -> u32 { assert!(x % 2 == 0, "odd"); x / 2 }
/// let pool = Pool::new(2)?;
/// let out: Vec<_> = pool.imap(halve, [2, 3, 4])?.map(|r| r.ok()).collect();
/// assert_eq!(out, [Some(1), None, Some(2)]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct IMap<R, It> {
    feeder: Feeder<It>,
    buffer: VecDeque<Result<R>>,
    _result: PhantomData<fn() -> R>,
}

impl<R, It> fmt::Debug for IMap<R, It> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap").field("feeder", &self.feeder).finish_non_exhaustive()
    }
}

impl<R, It> IMap<R, It> {
    pub(crate) fn new(feeder: Feeder<It>) -> Self {
        IMap { feeder, buffer: VecDeque::new(), _result: PhantomData }
    }
}

impl<R: DeserializeOwned + 'static, A: Serialize + 'static, It: Iterator<Item = A>> IMap<R, It> {
    /// The next result, waiting at most `timeout` for it: Python's
    /// `IMapIterator.next(timeout)`. `Ok(None)` once every result was
    /// taken, `Ok(Some(item))` for the next one (`Err` inside if that item
    /// failed).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if it did not come
    /// in time, as Python raises `TimeoutError`; the iterator is unchanged
    /// and the next call waits again.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// use std::time::Duration;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// let pool = Pool::new(1)?;
    /// let mut it = pool.imap(nap, [300, 1])?;
    /// assert!(it.next_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// assert_eq!(it.next_timeout(Duration::from_secs(30))?.unwrap()?, 300);
    /// assert_eq!(it.next().unwrap()?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("next"))]
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Result<R>>> {
        let deadline = Instant::now().checked_add(timeout);
        self.feeder.next_result(&mut self.buffer, deadline, Self::take).map_err(|_| nothing_within(timeout))
    }

    fn take(job: &Job, index: u32, deadline: Option<Instant>) -> Result<Option<Chunk>> {
        job.take(index, deadline).map(Some)
    }
}

impl<R: DeserializeOwned + 'static, A: Serialize + 'static, It: Iterator<Item = A>> Iterator for IMap<R, It> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.feeder.next_result(&mut self.buffer, None, Self::take).unwrap_or_else(|e| Some(Err(e)))
    }
}

/// The iterator of [`Pool::imap_unordered`](crate::Pool::imap_unordered):
/// results in the order they complete.
///
/// # Examples
///
/// ```
/// use multiproc::Pool;
/// fn square(x: u64) -> u64 { x * x }
/// let pool = Pool::new(2)?;
/// let total: u64 = pool.imap_unordered(square, 0..100)?.map(|r| r.unwrap()).sum();
/// assert_eq!(total, 328_350);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct IMapUnordered<R, It> {
    feeder: Feeder<It>,
    buffer: VecDeque<Result<R>>,
    _result: PhantomData<fn() -> R>,
}

impl<R, It> fmt::Debug for IMapUnordered<R, It> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMapUnordered").field("feeder", &self.feeder).finish_non_exhaustive()
    }
}

impl<R, It> IMapUnordered<R, It> {
    pub(crate) fn new(feeder: Feeder<It>) -> Self {
        IMapUnordered { feeder, buffer: VecDeque::new(), _result: PhantomData }
    }
}

impl<R: DeserializeOwned + 'static, A: Serialize + 'static, It: Iterator<Item = A>> IMapUnordered<R, It> {
    /// The next result to complete, waiting at most `timeout` for it:
    /// Python's `IMapUnorderedIterator.next(timeout)`; as
    /// [`IMap::next_timeout`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if none came in
    /// time; the iterator is unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// use std::time::Duration;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// let pool = Pool::new(1)?;
    /// let mut it = pool.imap_unordered(nap, [300])?;
    /// assert!(it.next_timeout(Duration::ZERO).unwrap_err().is_timeout());
    /// assert_eq!(it.next_timeout(Duration::from_secs(30))?.unwrap()?, 300);
    /// assert!(it.next_timeout(Duration::ZERO)?.is_none());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("next"))]
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Result<R>>> {
        let deadline = Instant::now().checked_add(timeout);
        self.feeder.next_result(&mut self.buffer, deadline, Self::take).map_err(|_| nothing_within(timeout))
    }

    fn take(job: &Job, _: u32, deadline: Option<Instant>) -> Result<Option<Chunk>> {
        Ok(job.take_any(deadline)?.map(|(_, chunk)| chunk))
    }
}

impl<R: DeserializeOwned + 'static, A: Serialize + 'static, It: Iterator<Item = A>> Iterator for IMapUnordered<R, It> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.feeder.next_result(&mut self.buffer, None, Self::take).unwrap_or_else(|e| Some(Err(e)))
    }
}
