//! `AsyncResult`: the handle of a task (or a map) running in a pool.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::callback::{Fire, QueueOnWake, run_guarded};
use super::dispatch::Shared;
use super::job::Job;
use crate::error::{Error, ErrorKind, Result};

/// Turns a finished job into the caller's value.
type Assemble<T> = fn(&Job, u32) -> Result<T>;

/// Where a result's value is: not decoded yet, decoded and waiting to be
/// taken, or gone (and why).
enum Value<T> {
    Pending,
    Kept(Result<T>),
    Gone(&'static str),
}

type OnValue<T> = Box<dyn FnOnce(T) + Send>;
type OnError = Box<dyn FnOnce(Error) + Send>;
type OnDone<T> = Box<dyn FnOnce(&AsyncResult<T>) + Send>;

/// The callbacks registered and not run yet.
struct Callbacks<T> {
    on_value: Option<OnValue<T>>,
    on_error: Option<OnError>,
    on_done: Vec<OnDone<T>>,
    /// A waker is on the job (or the result is queued) to run them.
    armed: bool,
    /// A `callback` or `error_callback` is registered and has not run to
    /// its end: until then the result is not ready, as in Python (whose
    /// result handler runs them before it sets the result's event).
    settling: bool,
    /// Futures waiting for `settling` to end.
    settle_wakers: Vec<Waker>,
}

/// What the handle and its callbacks share.
struct Inner<T> {
    shared: Arc<Shared>,
    job: Arc<Job>,
    chunks: u32,
    assemble: Assemble<T>,
    value: Mutex<Value<T>>,
    callbacks: Mutex<Callbacks<T>>,
    /// Signalled when `settling` turns false.
    settled: Condvar,
}

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
    inner: Arc<Inner<T>>,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("job", &self.inner.job.id)
            .field("ready", &self.inner.job.all_finished())
            .finish_non_exhaustive()
    }
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(shared: Arc<Shared>, job: Arc<Job>, chunks: u32, assemble: Assemble<T>) -> Self {
        let inner = Inner {
            shared,
            job,
            chunks,
            assemble,
            value: Mutex::new(Value::Pending),
            callbacks: Mutex::new(Callbacks {
                on_value: None,
                on_error: None,
                on_done: Vec::new(),
                armed: false,
                settling: false,
                settle_wakers: Vec::new(),
            }),
            settled: Condvar::new(),
        };
        AsyncResult { inner: Arc::new(inner) }
    }

    pub(crate) fn job(&self) -> &Arc<Job> {
        &self.inner.job
    }

    pub(crate) fn chunks(&self) -> u32 {
        self.inner.chunks
    }

    /// Takes the value (once), decoding it if nobody has yet.
    fn take(&self) -> Result<T> {
        let mut value = lock(&self.inner.value);
        match std::mem::replace(&mut *value, Value::Gone("it was already taken by get(); a result can be taken once")) {
            Value::Pending => (self.inner.assemble)(&self.inner.job, self.inner.chunks),
            Value::Kept(result) => result,
            Value::Gone(why) => {
                *value = Value::Gone(why);
                Err(Error::new(ErrorKind::InvalidState, format!("this result has no value to give: {why}")))
            }
        }
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
        self.inner.job.wait_all(None, &|| self.inner.shared.help())?;
        self.settle(None);
        self.take()
    }

    /// Waits until the `callback` or `error_callback` registered has run
    /// (if any), or `deadline` passes; whether it has.
    fn settle(&self, deadline: Option<Instant>) -> bool {
        let mut cbs = lock(&self.inner.callbacks);
        while cbs.settling {
            match deadline {
                None => cbs = self.inner.settled.wait(cbs).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    cbs = self.inner.settled.wait_timeout(cbs, left).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        }
        true
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
        let deadline = Instant::now().checked_add(timeout);
        self.inner.job.wait_all(deadline, &|| self.inner.shared.help())?;
        if !self.settle(deadline) {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("the result's callback was still running after {timeout:?}; try again, or wait longer"),
            ));
        }
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
        let _ = self.inner.job.wait_all(None, &|| self.inner.shared.help());
        self.settle(None);
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
        let deadline = Instant::now().checked_add(timeout);
        self.inner.job.wait_all(deadline, &|| self.inner.shared.help()).is_ok() && self.settle(deadline)
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
        self.inner.job.all_finished() && !lock(&self.inner.callbacks).settling
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
        self.inner.job.all_ok().ok_or_else(|| {
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
        self.inner.shared.cancel(&self.inner.job)
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
        self.inner.shared.kill(&self.inner.job)
    }

    /// What the task used in its worker (CPU time, peak resident memory),
    /// for a pool built with
    /// [`track_usage`](crate::PoolBuilder::track_usage); `None` before it
    /// has finished, without `track_usage`, or for a task that did not
    /// finish. For a call of many chunks, the CPU times of those finished
    /// so far add up.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = Pool::builder().processes(1).track_usage().build()?;
    /// let r = pool.apply_async(one, ())?;
    /// r.wait();
    /// assert!(r.usage().is_some());
    /// let plain = Pool::new(1)?;
    /// let r = plain.apply_async(one, ())?;
    /// r.wait();
    /// assert!(r.usage().is_none());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("getrusage", "ru_maxrss"))]
    pub fn usage(&self) -> Option<crate::TaskUsage> {
        self.inner.job.usage()
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
        self.inner.job.is_cancelled()
    }
}

impl<T: Send + 'static> AsyncResult<T> {
    /// Runs `f` with the value once the task has succeeded: Python's
    /// `apply_async(..., callback=f)` (for `map_async`, `f` gets the whole
    /// `Vec`). It runs once, in a thread of the pool's (not the caller's),
    /// when the task has finished, even if this handle is dropped; as in
    /// Python, the result is ready only once it has run, so
    /// [`wait`](AsyncResult::wait) and [`get`](AsyncResult::get) return
    /// after it, and the pool's [`join`](crate::Pool::join) waits for it.
    /// Keep it short: callbacks run one at a time (Python's advice too). The value goes to `f`:
    /// [`get`](AsyncResult::get) afterwards fails with
    /// [`ErrorKind::InvalidState`]. A task that fails does not call `f`
    /// (see [`error_callback`](AsyncResult::error_callback)); a panic in
    /// `f` is reported on stderr, and the pool goes on.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// use std::sync::{Arc, Mutex};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let results = Arc::new(Mutex::new(Vec::new()));
    /// let pool = Pool::new(2)?;
    /// for x in 0..5 {
    ///     let results = Arc::clone(&results);
    ///     pool.apply_async(square, x)?.callback(move |y| results.lock().unwrap().push(y));
    /// }
    /// pool.close();
    /// pool.join()?; // every callback has run
    /// let mut got = results.lock().unwrap().clone();
    /// got.sort();
    /// assert_eq!(got, [0, 1, 4, 9, 16]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn callback(self, f: impl FnOnce(T) + Send + 'static) -> Self {
        {
            let mut cbs = lock(&self.inner.callbacks);
            cbs.on_value = Some(Box::new(f));
            cbs.settling = true;
        }
        self.arm();
        self
    }

    /// Runs `f` with the error once the task has failed: Python's
    /// `error_callback=` (for `map_async`, the first error in input order).
    /// Once, in a thread of the pool's, before the result is ready (as
    /// [`callback`](AsyncResult::callback)); the error stays for
    /// [`get`](AsyncResult::get) too. A task that succeeds
    /// does not call `f`.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    /// use std::sync::mpsc;
    ///
    /// fn boom(_: ()) { panic!("no luck") }
    ///
    /// let (tx, rx) = mpsc::channel();
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(boom, ())?.error_callback(move |e| tx.send(e.kind()).unwrap());
    /// assert_eq!(rx.recv().unwrap(), ErrorKind::Panicked);
    /// assert_eq!(r.get().unwrap_err().kind(), ErrorKind::Panicked);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn error_callback(self, f: impl FnOnce(Error) + Send + 'static) -> Self {
        {
            let mut cbs = lock(&self.inner.callbacks);
            cbs.on_error = Some(Box::new(f));
            cbs.settling = true;
        }
        self.arm();
        self
    }

    /// Runs `f` with this result once it is ready, however it ended
    /// (success, failure, cancellation): `concurrent.futures`'
    /// `Future.add_done_callback`. Once, in a thread of the pool's; a
    /// result that is ready already has `f` queued at once. `f` may take
    /// the value with [`get`](AsyncResult::get). Callbacks run in the order
    /// they were added, after a [`callback`](AsyncResult::callback) or
    /// [`error_callback`](AsyncResult::error_callback).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// use std::sync::mpsc;
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let (tx, rx) = mpsc::channel();
    /// let pool = Pool::new(1)?;
    /// let future = pool.submit(square, 9)?;
    /// future.add_done_callback(move |f| tx.send(f.get().unwrap()).unwrap());
    /// assert_eq!(rx.recv().unwrap(), 81);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn add_done_callback(&self, f: impl FnOnce(&AsyncResult<T>) + Send + 'static) {
        lock(&self.inner.callbacks).on_done.push(Box::new(f));
        self.arm();
    }

    /// Makes sure the registered callbacks run once the job is finished.
    fn arm(&self) {
        let mut cbs = lock(&self.inner.callbacks);
        if cbs.armed {
            return;
        }
        cbs.armed = true;
        drop(cbs);
        let runner = self.inner.shared.callbacks();
        let item: Arc<dyn Fire> = Arc::clone(&self.inner) as Arc<dyn Fire>;
        let waker = Waker::from(Arc::new(QueueOnWake { item: Arc::clone(&item), runner: Arc::clone(&runner) }));
        if !self.inner.job.add_waker(&waker) {
            runner.push(item);
        }
    }
}

impl<T: Send + 'static> Fire for Inner<T> {
    fn fire(self: Arc<Self>) {
        let (on_value, on_error, on_done) = {
            let mut cbs = lock(&self.callbacks);
            cbs.armed = false;
            (cbs.on_value.take(), cbs.on_error.take(), std::mem::take(&mut cbs.on_done))
        };
        if on_value.is_some() || on_error.is_some() {
            /// Marks the result settled however this ends, a panic in the
            /// result's `Deserialize` or in the callback included, so that
            /// `get()` never waits for a callback that will not finish.
            struct Settle<'a, T>(&'a Inner<T>);
            impl<T> Drop for Settle<'_, T> {
                fn drop(&mut self) {
                    let wakers = {
                        let mut cbs = lock(&self.0.callbacks);
                        cbs.settling = false;
                        std::mem::take(&mut cbs.settle_wakers)
                    };
                    self.0.settled.notify_all();
                    wakers.into_iter().for_each(Waker::wake);
                }
            }
            let _settle = Settle(&*self);
            let mut value = lock(&self.value);
            let result = match std::mem::replace(&mut *value, Value::Pending) {
                Value::Pending => Some((self.assemble)(&self.job, self.chunks)),
                Value::Kept(result) => Some(result),
                gone @ Value::Gone(_) => {
                    *value = gone;
                    None
                }
            };
            match result {
                Some(Ok(v)) => match on_value {
                    Some(f) => {
                        *value = Value::Gone("its value went to the callback registered with callback()");
                        drop(value);
                        run_guarded("callback", move || f(v));
                    }
                    None => *value = Value::Kept(Ok(v)),
                },
                Some(Err(e)) => {
                    let for_callback = e.duplicate();
                    *value = Value::Kept(Err(e));
                    drop(value);
                    if let Some(f) = on_error {
                        run_guarded("error callback", move || f(for_callback));
                    }
                }
                None => {}
            }
        }
        if !on_done.is_empty() {
            let handle = AsyncResult { inner: Arc::clone(&self) };
            for f in on_done {
                run_guarded("done callback", || f(&handle));
            }
        }
    }
}

impl<T> Future for AsyncResult<T> {
    type Output = Result<T>;

    /// Ready once the task has finished: its result, or its error.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        if self.inner.job.add_waker(cx.waker()) {
            return Poll::Pending;
        }
        // A callback registered on it runs first, as for get().
        let mut cbs = lock(&self.inner.callbacks);
        if cbs.settling {
            if !cbs.settle_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                cbs.settle_wakers.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        drop(cbs);
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
