//! `AsyncResult`: the handle of a task (or a map) running in a pool.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::dispatch::Shared;
use super::job::Job;
use crate::error::{Error, ErrorKind, Result};

/// Turns a finished job into the caller's value.
type Assemble<T> = fn(&Job, u32) -> Result<T>;

/// The result of [`Pool::apply_async`](crate::Pool::apply_async),
/// [`Pool::map_async`](crate::Pool::map_async) or
/// [`Pool::submit`](crate::Pool::submit): Python's `AsyncResult` and
/// `concurrent.futures.Future` in one.
///
/// Wait for it with [`get`](AsyncResult::get) or
/// [`get_timeout`](AsyncResult::get_timeout), look at it with
/// [`ready`](AsyncResult::ready) and [`successful`](AsyncResult::successful),
/// cancel it before it starts with [`cancel`](AsyncResult::cancel), or
/// `.await` it: it implements [`Future`] without tying you to an async
/// runtime. Dropping it does not cancel the task.
///
/// # Examples
///
/// ```
/// use multiproc::Pool;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = Pool::new(2)?;
/// let result = pool.apply_async(square, 7)?;
/// assert_eq!(result.get()?, 49);
/// assert!(result.ready());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias("Future", "ApplyResult", "MapResult"))]
pub struct AsyncResult<T> {
    shared: Arc<Shared>,
    job: Arc<Job>,
    chunks: u32,
    assemble: Assemble<T>,
    taken: AtomicBool,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("job", &self.job.id)
            .field("ready", &self.job.all_finished())
            .finish_non_exhaustive()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(shared: Arc<Shared>, job: Arc<Job>, chunks: u32, assemble: Assemble<T>) -> Self {
        AsyncResult { shared, job, chunks, assemble, taken: AtomicBool::new(false) }
    }

    pub(crate) fn job(&self) -> &Arc<Job> {
        &self.job
    }

    pub(crate) fn chunks(&self) -> u32 {
        self.chunks
    }

    fn take(&self) -> Result<T> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "this result was already taken by get(); a result can be taken once",
            ));
        }
        (self.assemble)(&self.job, self.chunks)
    }

    /// Waits for the result and takes it.
    ///
    /// # Errors
    ///
    /// The task's own error (a panic in it, with message and location), or
    /// [`ErrorKind::WorkerLost`], [`ErrorKind::Timeout`] (its per-task
    /// timeout), [`ErrorKind::Cancelled`], [`ErrorKind::BrokenPool`];
    /// [`ErrorKind::InvalidState`] the second time.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn add((a, b): (i32, i32)) -> i32 { a + b }
    /// let pool = Pool::new(1)?;
    /// assert_eq!(pool.apply_async(add, (2, 3))?.get()?, 5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("result"))]
    pub fn get(&self) -> Result<T> {
        self.job.wait_all(None)?;
        self.take()
    }

    /// Like [`get`](AsyncResult::get), but gives up after `timeout`, leaving
    /// the task running. A zero timeout never blocks.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if the result is not ready in time; otherwise
    /// those of [`get`](AsyncResult::get).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// use std::time::Duration;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// let pool = Pool::new(1)?;
    /// let slow = pool.apply_async(nap, 60_000)?;
    /// assert!(slow.get_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// pool.terminate();
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("get", "result"))]
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.job.wait_all(Instant::now().checked_add(timeout))?;
        self.take()
    }

    /// Waits until the result is ready, without taking it.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(one, ())?;
    /// r.wait();
    /// assert!(r.ready());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait(&self) {
        let _ = self.job.wait_all(None);
    }

    /// Waits up to `timeout` until the result is ready; whether it is.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// use std::time::Duration;
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = Pool::new(1)?;
    /// assert!(pool.apply_async(one, ())?.wait_timeout(Duration::from_secs(30)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("wait"))]
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.job.wait_all(Instant::now().checked_add(timeout)).is_ok()
    }

    /// Whether the result is ready (done, failed or cancelled).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(one, ())?;
    /// r.wait();
    /// assert!(r.ready());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("done"))]
    pub fn ready(&self) -> bool {
        self.job.all_finished()
    }

    /// Whether the task succeeded (for a map: every item did).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if the result is not ready yet, as
    /// Python raises `ValueError`.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn boom(_: ()) { panic!("no") }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(boom, ())?;
    /// r.wait();
    /// assert!(!r.successful()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn successful(&self) -> Result<bool> {
        self.job.all_ok().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidState,
                "successful() was asked before the result was ready; wait() for it first",
            )
        })
    }

    /// Cancels the task if no worker has started it, wherever it waits
    /// (the pool's queue, or a worker's window of prefetched tasks);
    /// whether it is now cancelled. Python's `Future.cancel()`: false once
    /// the task runs or has finished. A cancelled task never runs, and its
    /// [`get`](AsyncResult::get) fails with [`ErrorKind::Cancelled`]. To
    /// stop a task that is running, use [`kill`](AsyncResult::kill).
    ///
    /// For a `map_async`, every chunk that has not started is cancelled; the
    /// result is true only if none had started or finished.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    /// use std::time::Duration;
    /// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
    /// let pool = Pool::new(1)?;
    /// let _busy: Vec<_> = (0..8).map(|_| pool.apply_async(nap, 200)).collect::<Result<_, _>>()?;
    /// let last = pool.apply_async(nap, 0)?;
    /// assert!(last.cancel());
    /// assert_eq!(last.get().unwrap_err().kind(), ErrorKind::Cancelled);
    /// pool.terminate();
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn cancel(&self) -> bool {
        self.shared.cancel(&self.job)
    }

    /// Stops the task even if it is running: cancels it if it has not
    /// started, or kills the worker running it (a new worker takes its
    /// place, and the tasks that worker had not started run elsewhere:
    /// nothing else is affected). Its [`get`](AsyncResult::get) then fails
    /// with [`ErrorKind::Cancelled`]. True if something was stopped, false
    /// if the task had already finished. A task that finishes at the very
    /// moment it is killed ends either delivered or cancelled, never both.
    ///
    /// For a `map_async`, every chunk that has not started is cancelled and
    /// every item that runs is killed; the items already done stay done.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    /// use std::time::Duration;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// let pool = Pool::new(1)?;
    /// let stuck = pool.apply_async(nap, 60_000)?;
    /// let next = pool.apply_async(nap, 1)?;
    /// std::thread::sleep(Duration::from_millis(100));
    /// assert!(stuck.kill());
    /// assert_eq!(stuck.get().unwrap_err().kind(), ErrorKind::Cancelled);
    /// assert_eq!(next.get()?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("terminate", "stop"))]
    pub fn kill(&self) -> bool {
        self.shared.kill(&self.job)
    }

    /// Whether the task was cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(one, ())?;
    /// r.wait();
    /// assert!(!r.cancelled());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn cancelled(&self) -> bool {
        self.job.is_cancelled()
    }
}

impl<T> Future for AsyncResult<T> {
    type Output = Result<T>;

    /// Ready once the task has finished: its result, or its error.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        if self.job.add_waker(cx.waker()) {
            return Poll::Pending;
        }
        Poll::Ready(self.take())
    }
}

/// `apply`'s assembly: the one item of the one chunk.
pub(crate) fn one<R: DeserializeOwned + 'static>(job: &Job, _chunks: u32) -> Result<R> {
    job.take(0, None)?
        .decode::<R>()
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(Error::new(ErrorKind::Protocol, "a task came back without its result")))
}

/// `map`'s assembly: every item in input order, or the first error in
/// input order (after every chunk has finished, as in Python).
pub(crate) fn all<R: DeserializeOwned + 'static>(job: &Job, chunks: u32) -> Result<Vec<R>> {
    // Chunks are decoded in order as they arrive, while later ones run.
    let mut out = Vec::new();
    let mut first_err = None;
    for index in 0..chunks {
        let chunk = job.take(index, None)?;
        if index == 0 {
            out.reserve(chunk.count() as usize * chunks as usize);
        }
        if first_err.is_none() {
            if let Err(e) = chunk.decode_into(&mut out) {
                first_err = Some(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
