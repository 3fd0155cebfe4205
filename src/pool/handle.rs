//! `Pool` and its per-call options (`Calls`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::builder::PoolBuilder;
use super::dispatch::{Pending, Shared};
use super::iter::{IMap, IMapUnordered};
use super::job::Job;
use super::progress::Bar;
use super::result::{self, AsyncResult};
use super::star::StarFn;
use super::wire::{self, ChunkHead, Delivery};
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::Task;

/// A group of worker processes that applies functions to many inputs in
/// parallel: Python's `multiprocessing.Pool` and `ProcessPoolExecutor` in
/// one.
///
/// Workers are real processes (started with the pool's start method). A
/// task that panics fails alone and its worker goes on; a worker that dies
/// (a crash, an abort, the OOM killer, `exit()`, a kill) fails exactly the
/// tasks it held, with [`ErrorKind::WorkerLost`], and is replaced; a task
/// that runs past its timeout kills only its own worker. Dropping the pool
/// terminates it, as Python's `with Pool() as p:` does.
///
/// Per-call options go through [`chunksize`](Pool::chunksize) and
/// [`timeout`](Pool::timeout): `pool.chunksize(100).map(f, items)` is
/// Python's `pool.map(f, items, chunksize=100)`.
///
/// # Examples
///
/// ```
/// use multiproc::Pool;
///
/// fn square(n: u64) -> u64 { n * n }
///
/// let pool = Pool::new(4)?;
/// assert_eq!(pool.map(square, [1, 2, 3, 4])?, vec![1, 4, 9, 16]);
/// let lazy: Vec<u64> = pool.imap(square, 0..5)?.collect::<Result<_, _>>()?;
/// assert_eq!(lazy, [0, 1, 4, 9, 16]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Pool {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.shared.config.processes)
            .field("start_method", &self.shared.config.method)
            .field("running", &self.shared.is_running())
            .finish_non_exhaustive()
    }
}

/// Python's default `map` chunk size: a quarter of the items each worker
/// would get, rounded up.
fn default_chunksize(items: usize, processes: usize) -> usize {
    items.div_ceil(4 * processes).max(1)
}

fn bad_chunksize() -> Error {
    Error::new(ErrorKind::InvalidInput, "chunksize must be at least 1, as in Python")
}

impl Pool {
    /// A pool of `processes` workers, started with the default start
    /// method. See [`Pool::builder`] for the other settings.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for 0 processes; the errors of starting
    /// a process.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    /// assert_eq!(Pool::new(0).unwrap_err().kind(), ErrorKind::InvalidInput);
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.processes(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A builder for a pool with an initializer, `maxtasksperchild`, a
    /// start method, a task timeout or an in-flight cap.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Pool, StartMethod};
    /// let pool = Pool::builder().processes(2).start_method(StartMethod::Spawn).build()?;
    /// assert_eq!(pool.processes(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// The number of workers.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiproc::Pool::new(3)?.processes(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn processes(&self) -> usize {
        self.shared.config.processes
    }

    /// Options for the next call: its chunk size (Python's `chunksize=`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn double(x: u32) -> u32 { 2 * x }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.chunksize(3).map(double, 0..7)?, [0, 2, 4, 6, 8, 10, 12]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn chunksize(&self, chunksize: usize) -> Calls<'_> {
        self.calls().chunksize(chunksize)
    }

    /// Options for the next call: a per-task timeout. A task still running
    /// after it has its worker killed and replaced, and fails with
    /// [`ErrorKind::Timeout`]; nothing else is affected. (Tasks with a
    /// timeout run one at a time per worker, so that their timeout counts
    /// from their start.)
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    /// use std::time::Duration;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// let pool = Pool::new(2)?;
    /// let err = pool.timeout(Duration::from_millis(100)).apply(nap, 60_000).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Timeout);
    /// assert_eq!(pool.apply(nap, 1)?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn timeout(&self, timeout: Duration) -> Calls<'_> {
        self.calls().timeout(timeout)
    }

    fn calls(&self) -> Calls<'_> {
        Calls { pool: self, chunksize: None, timeout: self.shared.config.task_timeout }
    }

    /// Runs `f(arg)` in a worker and waits for the result (Python's
    /// `apply`).
    ///
    /// # Errors
    ///
    /// Those of [`AsyncResult::get`], and of submitting (a closed pool, an
    /// argument that does not serialize).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn pid(_: ()) -> u32 { std::process::id() }
    /// let pool = Pool::new(1)?;
    /// assert_ne!(pool.apply(pid, ())?, std::process::id());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn apply<F, A, R>(&self, f: F, arg: A) -> Result<R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.calls().apply(f, arg)
    }

    /// Starts `f(arg)` in a worker and returns its handle (Python's
    /// `apply_async`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] on a closed pool, [`ErrorKind::Serialize`]
    /// for an argument that does not serialize, [`ErrorKind::BrokenPool`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let handles: Vec<_> = (0..4).map(|i| pool.apply_async(square, i)).collect::<Result<_, _>>()?;
    /// let squares: Vec<u64> = handles.iter().map(|h| h.get()).collect::<Result<_, _>>()?;
    /// assert_eq!(squares, [0, 1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn apply_async<F, A, R>(&self, f: F, arg: A) -> Result<AsyncResult<R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.calls().apply_async(f, arg)
    }

    /// `apply_async` under its executor name (Python's
    /// `ProcessPoolExecutor.submit`).
    ///
    /// # Errors
    ///
    /// Those of [`apply_async`](Pool::apply_async).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn pow((b, e): (u64, u32)) -> u64 { b.pow(e) }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.submit(pow, (2, 8))?.get()?, 256);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn submit<F, A, R>(&self, f: F, arg: A) -> Result<AsyncResult<R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(f, arg)
    }

    /// Applies `f` to every item in parallel and returns the results in
    /// input order (Python's `map`). The items are split into chunks of
    /// Python's default size (a quarter of each worker's share).
    ///
    /// # Errors
    ///
    /// The error of the first failing item in input order, once every
    /// chunk has finished; the errors of submitting.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.map(square, 1..=4)?, [1, 4, 9, 16]);
    /// assert!(pool.map(square, Vec::new())?.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map<F, A, R, I>(&self, f: F, items: I) -> Result<Vec<R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.calls().map(f, items)
    }

    /// Like [`map`](Pool::map), but returns at once with a handle on the
    /// whole result (Python's `map_async`).
    ///
    /// # Errors
    ///
    /// The errors of submitting.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let all = pool.map_async(square, 0..100)?;
    /// assert_eq!(all.get()?[99], 9801);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map_async<F, A, R, I>(&self, f: F, items: I) -> Result<AsyncResult<Vec<R>>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.calls().map_async(f, items)
    }

    /// Applies a function of several arguments to every tuple of arguments
    /// (Python's `starmap`): `f(a, b)` for each `(a, b)`.
    ///
    /// # Errors
    ///
    /// Those of [`map`](Pool::map).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn mul(a: u32, b: u32) -> u32 { a * b }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.starmap(mul, [(1, 2), (3, 4)])?, [2, 12]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap<F, Args, R, I>(&self, f: F, items: I) -> Result<Vec<R>>
    where
        F: StarFn<Args, R>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.calls().starmap(f, items)
    }

    /// [`starmap`](Pool::starmap) with a handle (Python's `starmap_async`).
    ///
    /// # Errors
    ///
    /// The errors of submitting.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn add(a: i32, b: i32, c: i32) -> i32 { a + b + c }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.starmap_async(add, [(1, 2, 3)])?.get()?, [6]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap_async<F, Args, R, I>(&self, f: F, items: I) -> Result<AsyncResult<Vec<R>>>
    where
        F: StarFn<Args, R>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.calls().starmap_async(f, items)
    }

    /// Applies `f` to items pulled lazily from `items`, yielding the
    /// results in input order, each `Ok` or that item's `Err` (Python's
    /// `imap`, chunk size 1 by default). Only a bounded number of chunks is
    /// in flight, so an endless iterator works in flat memory; dropping the
    /// iterator cancels what has not started. Because the input is read as
    /// results are taken, `close()` ends it: items not yet sent then give
    /// one `InvalidState` error and the iterator stops (Python's `imap`
    /// reads all its input at the call). Consume the results, then close.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] on a closed pool.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let first: Vec<u64> = pool.imap(square, 0..)?.take(3).collect::<Result<_, _>>()?;
    /// assert_eq!(first, [0, 1, 4]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap<F, A, R, I>(&self, f: F, items: I) -> Result<IMap<R, I::IntoIter>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.calls().imap(f, items)
    }

    /// Like [`imap`](Pool::imap), but yields results as they complete
    /// (Python's `imap_unordered`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] on a closed pool.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let mut all: Vec<u64> = pool.imap_unordered(square, 0..10)?.collect::<Result<_, _>>()?;
    /// all.sort();
    /// assert_eq!(all, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap_unordered<F, A, R, I>(&self, f: F, items: I) -> Result<IMapUnordered<R, I::IntoIter>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.calls().imap_unordered(f, items)
    }

    /// Stops taking tasks; the workers leave once the queued ones are done
    /// (Python's `close`). Call [`join`](Pool::join) to wait for that.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = Pool::new(1)?;
    /// let pending = pool.apply_async(one, ())?;
    /// pool.close();
    /// assert_eq!(pool.apply(one, ()).unwrap_err().kind(), ErrorKind::InvalidState);
    /// pool.join()?;
    /// assert_eq!(pending.get()?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&self) {
        self.shared.close();
    }

    /// Stops now: queued and running tasks fail with
    /// [`ErrorKind::BrokenPool`] and the workers are killed (Python's
    /// `terminate`). [`Drop`] does this too.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    /// use std::time::Duration;
    /// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
    /// let pool = Pool::new(1)?;
    /// let slow = pool.apply_async(nap, 60_000)?;
    /// pool.terminate();
    /// assert_eq!(slow.get().unwrap_err().kind(), ErrorKind::BrokenPool);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn terminate(&self) {
        self.shared.terminate();
    }

    /// Waits for the workers to leave, after [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if the pool is still running, as Python
    /// raises `ValueError`.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// let pool = Pool::new(1)?;
    /// assert!(pool.join().is_err());
    /// pool.close();
    /// pool.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join(&self) -> Result<()> {
        self.shared.join()
    }

    /// Shuts the pool down the executor way (Python's
    /// `Executor.shutdown`): no new tasks; with `cancel_futures`, queued
    /// tasks are cancelled; with `wait`, returns once the workers are gone.
    ///
    /// # Errors
    ///
    /// None today; reserved for a failed wait.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = Pool::new(2)?;
    /// let r = pool.submit(one, ())?;
    /// pool.shutdown(true, false)?;
    /// assert_eq!(r.get()?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) -> Result<()> {
        if cancel_futures {
            self.shared.cancel_queued();
        }
        self.shared.close();
        if wait {
            self.shared.join()?;
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.shared.check_owner().is_ok() {
            self.shared.terminate();
            let _ = self.shared.join();
        }
    }
}

/// One call's options: a chunk size and a per-task timeout, set with
/// [`Pool::chunksize`] and [`Pool::timeout`]; the call methods are those of
/// [`Pool`].
///
/// # Examples
///
/// ```
/// use multiproc::Pool;
/// use std::time::Duration;
/// fn square(x: u64) -> u64 { x * x }
/// let pool = Pool::new(2)?;
/// let calls = pool.chunksize(50).timeout(Duration::from_secs(60));
/// assert_eq!(calls.map(square, 0..1000)?.len(), 1000);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Calls<'p> {
    pool: &'p Pool,
    chunksize: Option<usize>,
    timeout: Option<Duration>,
}

impl<'p> Calls<'p> {
    /// Sets the chunk size.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn id(x: u8) -> u8 { x }
    /// let pool = Pool::new(1)?;
    /// assert_eq!(pool.chunksize(1).chunksize(2).map(id, [1, 2, 3])?, [1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = Some(chunksize);
        self
    }

    /// Sets the per-task timeout (see [`Pool::timeout`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// use std::time::Duration;
    /// fn id(x: u8) -> u8 { x }
    /// let pool = Pool::new(1)?;
    /// assert_eq!(pool.chunksize(2).timeout(Duration::from_secs(9)).map(id, [1, 2])?, [1, 2]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.pool.shared
    }

    /// Encodes `len` items into chunks of one job and submits each as soon
    /// as it is encoded, so that the workers start while the rest is
    /// encoded.
    fn submit_chunks<F, A, R>(
        &self,
        mut items: impl Iterator<Item = A>,
        len: usize,
        chunksize: usize,
        delivery: Delivery,
    ) -> Result<(Arc<Job>, u32)>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        if chunksize == 0 {
            return Err(bad_chunksize());
        }
        self.shared().check_owner()?;
        let job = Arc::new(Job::new());
        let task = wire::chunk_task::<F, A, R>();
        let chunks = u32::try_from(len.div_ceil(chunksize)).map_err(|_| {
            Error::new(ErrorKind::InvalidInput, "more than 2^32 chunks in one call; use a larger chunksize")
        })?;
        for index in 0..chunks {
            let head = ChunkHead { job: job.id, index, task, delivery };
            let submitted = Pending::encode(&job, head, items.by_ref().take(chunksize), self.timeout)
                .and_then(|p| self.shared().submit(vec![p]));
            if let Err(e) = submitted {
                self.shared().forget(&job);
                return Err(e);
            }
        }
        Ok((job, chunks))
    }

    /// See [`Pool::apply`].
    ///
    /// # Errors
    ///
    /// See [`Pool::apply`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// use std::time::Duration;
    /// fn id(x: u8) -> u8 { x }
    /// let pool = Pool::new(1)?;
    /// assert_eq!(pool.timeout(Duration::from_secs(9)).apply(id, 4)?, 4);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn apply<F, A, R>(&self, f: F, arg: A) -> Result<R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(f, arg)?.get()
    }

    /// See [`Pool::apply_async`].
    ///
    /// # Errors
    ///
    /// See [`Pool::apply_async`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// use std::time::Duration;
    /// fn id(x: u8) -> u8 { x }
    /// let pool = Pool::new(1)?;
    /// assert_eq!(pool.timeout(Duration::from_secs(9)).apply_async(id, 4)?.get()?, 4);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn apply_async<F, A, R>(&self, f: F, arg: A) -> Result<AsyncResult<R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let _ = Task::of(f);
        let (job, chunks) = self.submit_chunks::<F, A, R>(std::iter::once(arg), 1, 1, Delivery::Prompt)?;
        Ok(AsyncResult::new(Arc::clone(self.shared()), job, chunks, result::one::<R>))
    }

    /// See [`Pool::submit`].
    ///
    /// # Errors
    ///
    /// See [`Pool::apply_async`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// use std::time::Duration;
    /// fn id(x: u8) -> u8 { x }
    /// let pool = Pool::new(1)?;
    /// assert_eq!(pool.timeout(Duration::from_secs(9)).submit(id, 4)?.get()?, 4);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn submit<F, A, R>(&self, f: F, arg: A) -> Result<AsyncResult<R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(f, arg)
    }

    /// See [`Pool::map`].
    ///
    /// # Errors
    ///
    /// See [`Pool::map`]; [`ErrorKind::InvalidInput`] for a chunk size of 0.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::{ErrorKind, Pool};
    /// fn id(x: u8) -> u8 { x }
    /// let pool = Pool::new(1)?;
    /// assert_eq!(pool.chunksize(0).map(id, [1]).unwrap_err().kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map<F, A, R, I>(&self, f: F, items: I) -> Result<Vec<R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let items = items.into_iter();
        let total = items.size_hint().0 as u64;
        let all = self.map_async(f, items)?;
        let bar = Bar::new(total);
        let out = all.get_with_progress(&bar);
        bar.finish();
        out
    }

    /// See [`Pool::map_async`].
    ///
    /// # Errors
    ///
    /// See [`Pool::map_async`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn id(x: u8) -> u8 { x }
    /// let pool = Pool::new(1)?;
    /// assert_eq!(pool.chunksize(2).map_async(id, [1, 2, 3])?.get()?, [1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map_async<F, A, R, I>(&self, f: F, items: I) -> Result<AsyncResult<Vec<R>>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let _ = Task::of(f);
        let items = items.into_iter();
        // Python takes the length first (to size the chunks); an iterator
        // that knows its length exactly is not collected.
        let (job, chunks) = match items.size_hint() {
            (low, Some(high)) if low == high => self.submit_map::<F, A, R>(items, low)?,
            _ => {
                let items: Vec<A> = items.collect();
                let len = items.len();
                self.submit_map::<F, A, R>(items.into_iter(), len)?
            }
        };
        Ok(AsyncResult::new(Arc::clone(self.shared()), job, chunks, result::all::<R>))
    }

    fn submit_map<F, A, R>(&self, items: impl Iterator<Item = A>, len: usize) -> Result<(Arc<Job>, u32)>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let chunksize = self.chunksize.unwrap_or_else(|| default_chunksize(len, self.pool.processes()));
        self.submit_chunks::<F, A, R>(items, len, chunksize, Delivery::Bulk)
    }

    /// See [`Pool::starmap`].
    ///
    /// # Errors
    ///
    /// See [`Pool::starmap`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn mul(a: u8, b: u8) -> u8 { a * b }
    /// let pool = Pool::new(1)?;
    /// assert_eq!(pool.chunksize(1).starmap(mul, [(2, 3)])?, [6]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap<F, Args, R, I>(&self, f: F, items: I) -> Result<Vec<R>>
    where
        F: StarFn<Args, R>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.map(f.unary(), items)
    }

    /// See [`Pool::starmap_async`].
    ///
    /// # Errors
    ///
    /// See [`Pool::starmap_async`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn mul(a: u8, b: u8) -> u8 { a * b }
    /// let pool = Pool::new(1)?;
    /// assert_eq!(pool.chunksize(1).starmap_async(mul, [(2, 3)])?.get()?, [6]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap_async<F, Args, R, I>(&self, f: F, items: I) -> Result<AsyncResult<Vec<R>>>
    where
        F: StarFn<Args, R>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.map_async(f.unary(), items)
    }

    /// See [`Pool::imap`].
    ///
    /// # Errors
    ///
    /// See [`Pool::imap`]; [`ErrorKind::InvalidInput`] for a chunk size of 0.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn id(x: u8) -> u8 { x }
    /// let pool = Pool::new(1)?;
    /// let v: Vec<u8> = pool.chunksize(2).imap(id, [1, 2, 3])?.collect::<Result<_, _>>()?;
    /// assert_eq!(v, [1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap<F, A, R, I>(&self, f: F, items: I) -> Result<IMap<R, I::IntoIter>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let _ = Task::of(f);
        self.check_lazy()?;
        Ok(IMap::new(self.feeder::<F, A, R, I::IntoIter>(items.into_iter())?))
    }

    /// See [`Pool::imap_unordered`].
    ///
    /// # Errors
    ///
    /// See [`Pool::imap_unordered`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn id(x: u8) -> u8 { x }
    /// let pool = Pool::new(1)?;
    /// let n = pool.chunksize(2).imap_unordered(id, [1, 2, 3])?.count();
    /// assert_eq!(n, 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap_unordered<F, A, R, I>(&self, f: F, items: I) -> Result<IMapUnordered<R, I::IntoIter>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let _ = Task::of(f);
        self.check_lazy()?;
        Ok(IMapUnordered::new(self.feeder::<F, A, R, I::IntoIter>(items.into_iter())?))
    }

    fn check_lazy(&self) -> Result<()> {
        if self.chunksize == Some(0) {
            return Err(bad_chunksize());
        }
        self.shared().check_owner()?;
        if !self.shared().is_running() {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "the pool is closed (close(), terminate() or shutdown() was called); create a new pool",
            ));
        }
        Ok(())
    }

    fn feeder<F, A, R, It>(&self, input: It) -> Result<super::iter::Feeder<It>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        It: Iterator<Item = A>,
    {
        Ok(super::iter::Feeder::new(
            Arc::clone(self.shared()),
            input,
            wire::chunk_task::<F, A, R>(),
            self.chunksize.unwrap_or(1),
            self.timeout,
        ))
    }
}

impl<R: DeserializeOwned + 'static> AsyncResult<Vec<R>> {
    /// `get`, advancing `bar` chunk by chunk as results arrive.
    fn get_with_progress(&self, bar: &Bar) -> Result<Vec<R>> {
        if !bar.is_hidden() {
            for index in 0..self.chunks() {
                bar.inc(u64::from(self.job().wait_chunk(index)?));
            }
        }
        self.get()
    }
}
