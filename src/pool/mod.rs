//! Pools of worker processes: [`Pool`] (Python's `multiprocessing.Pool`
//! and `ProcessPoolExecutor` in one), its results ([`AsyncResult`],
//! [`IMap`], [`IMapUnordered`]) and the executor helpers ([`wait`],
//! [`as_completed`]).
//!
//! This file holds `Pool` and its lifecycle; `calls.rs` holds every call
//! (`map`, `imap`, `apply_async`, ...) once, for `Pool` and for its per-call
//! options ([`Calls`]). Underneath: `dispatch.rs` (one thread per pool owns
//! the workers' sockets and pidfds, windows, deadlines, replacements),
//! `tracked.rs` (the parent's record of one worker, and the fate of every
//! chunk it held when it dies), `status.rs` (the status page each worker
//! logs its items and keeps its results in), `worker.rs` (the loop in each
//! worker process), `wire.rs` (their frames), `job.rs` (result slots),
//! then the user-facing handles (`result.rs`, `iter.rs`, `executor.rs`,
//! `stats.rs`), `callback.rs` (the thread callbacks run in) and
//! `progress.rs`.

mod builder;
mod callback;
mod calls;
mod dispatch;
mod executor;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;
mod iter;
mod job;
mod link;
mod outbox;
pub(crate) mod output;
mod progress;
mod result;
mod star;
mod stats;
mod status;
pub(crate) mod tokens;
mod tracked;
mod wire;
mod worker;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use builder::PoolBuilder;
pub use calls::Calls;
#[cfg(feature = "mpi")]
pub(crate) use dispatch::Config;
use dispatch::Shared;
pub use executor::{AsCompleted, Done, ReturnWhen, as_completed, wait};
pub use iter::{IMap, IMapUnordered};
pub use result::AsyncResult;
pub use star::StarFn;
pub use stats::{PoolStats, TaskUsage, WorkerStats};
#[cfg(feature = "mpi")]
pub(crate) use status::StatusPage;
#[cfg(feature = "mpi")]
pub(crate) use worker::{Channel, WorkerConfig, run as run_worker};

/// The frame kind of a task, for the MPI transport's frame counter.
#[cfg(feature = "mpi")]
pub(crate) fn wire_kind_task() -> u8 {
    wire::TASK
}

use crate::error::Result;
use crate::sys;

/// A group of worker processes that applies functions to many inputs in
/// parallel: Python's `multiprocessing.Pool` and `ProcessPoolExecutor` in
/// one.
///
/// Workers are real processes (started with the pool's start method). A
/// task that panics fails alone and its worker goes on. A worker that dies
/// (a crash, an abort, the OOM killer, `exit()`, a kill) fails only the
/// task it was running, with [`ErrorKind::WorkerLost`](crate::ErrorKind::WorkerLost), and is replaced:
/// what it finished is delivered, and what it had not started (even inside
/// its chunk) runs on another worker, once. A task that runs past its
/// timeout, or is [`kill`](AsyncResult::kill)ed, fails the same way, alone.
/// Dropping the pool terminates it, as Python's `with Pool() as p:` does.
///
/// Per-call options go through [`chunksize`](Pool::chunksize),
/// [`timeout`](Pool::timeout) and [`buffersize`](Pool::buffersize):
/// `pool.chunksize(100).map(f, items)` is Python's `pool.map(f, items,
/// chunksize=100)`.
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
#[doc(alias("ProcessPoolExecutor", "Executor"))]
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

/// Python's `repr`: `<Pool state=RUN pool_size=4>`.
///
/// # Examples
///
/// ```
/// let pool = multiproc::Pool::new(2)?;
/// assert_eq!(pool.to_string(), "<Pool state=RUN pool_size=2>");
/// pool.close();
/// assert_eq!(pool.to_string(), "<Pool state=CLOSE pool_size=2>");
/// # Ok::<(), multiproc::Error>(())
/// ```
impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Pool state={} pool_size={}>", self.shared.state_name(), self.shared.config.processes)
    }
}

impl Pool {
    /// A pool of `processes` workers, started with the default start
    /// method. See [`Pool::builder`] for the other settings.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for 0 processes; the errors of starting
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

    /// Options for the next call: a per-task timeout, counted from the
    /// moment the task starts in its worker. A task still running after it
    /// has its worker killed and replaced, and fails with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout); nothing else is
    /// affected: the tasks its worker had finished are delivered and the
    /// ones it had not started run on another worker. A zero timeout is
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput).
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

    /// Options for the next call: for `imap` and `imap_unordered`, at most
    /// this many input items are read ahead of the consumer (Python 3.14's
    /// `buffersize=`). See [`Calls::buffersize`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn double(x: u32) -> u32 { 2 * x }
    /// let pool = Pool::new(2)?;
    /// let firsts: Vec<u32> = pool.buffersize(8).imap(double, 0..)?.take(3).collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, [0, 2, 4]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn buffersize(&self, items: usize) -> Calls<'_> {
        self.calls().buffersize(items)
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
    /// [`ErrorKind::BrokenPool`](crate::ErrorKind::BrokenPool) and the workers are killed (Python's
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

    /// Sends every worker `SIGTERM` now (Python 3.14's
    /// `ProcessPoolExecutor.terminate_workers()`): tasks not sent to a
    /// worker yet are cancelled ([`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled)), those sent fail
    /// with [`ErrorKind::BrokenPool`](crate::ErrorKind::BrokenPool), and the pool takes no more tasks. A
    /// worker whose task ignores `SIGTERM` goes on until
    /// [`kill_workers`](Pool::kill_workers), [`terminate`](Pool::terminate)
    /// or the pool's drop.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    /// use std::time::Duration;
    /// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
    /// let pool = Pool::new(1)?;
    /// let running = pool.apply_async(nap, 60_000)?;
    /// pool.terminate_workers();
    /// assert_eq!(running.get().unwrap_err().kind(), ErrorKind::BrokenPool);
    /// assert_eq!(pool.apply(nap, 1).unwrap_err().kind(), ErrorKind::InvalidState);
    /// pool.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn terminate_workers(&self) {
        self.shared.stop_workers(sys::SIGTERM);
    }

    /// Sends every worker `SIGKILL` now (Python 3.14's
    /// `ProcessPoolExecutor.kill_workers()`); otherwise as
    /// [`terminate_workers`](Pool::terminate_workers).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    /// use std::time::Duration;
    /// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
    /// let pool = Pool::new(1)?;
    /// let running = pool.apply_async(nap, 60_000)?;
    /// pool.kill_workers();
    /// assert_eq!(running.get().unwrap_err().kind(), ErrorKind::BrokenPool);
    /// pool.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn kill_workers(&self) {
        self.shared.stop_workers(sys::SIGKILL);
    }

    /// Waits for the workers to leave, after [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) if the pool is still running, as Python
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

    /// What the pool is doing: its tasks by state, and each worker's pid,
    /// tasks run, current task's age and memory. Cheap: it reads the
    /// workers' status pages, without a message to any of them, so it can
    /// be called in a loop (a progress display, a watchdog).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// use std::time::Duration;
    /// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(nap, 50)?;
    /// let stats = pool.stats();
    /// assert_eq!(stats.queued + stats.running + stats.done, 1);
    /// r.get()?;
    /// assert_eq!(pool.stats().done, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn stats(&self) -> PoolStats {
        self.shared.stats()
    }

    /// The MPI rank and host of each worker, for a pool made with
    /// [`PoolBuilder::mpi`] (empty for a local pool): where the work goes.
    ///
    /// # Examples
    ///
    /// ```
    /// // A local pool has no ranks; under mpirun, Pool::builder().mpi()
    /// // gives [(1, "node1"), (2, "node2"), ...].
    /// let pool = multiproc::Pool::new(1)?;
    /// assert!(pool.mpi_ranks().is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[cfg(feature = "mpi")]
    #[doc(alias("Get_processor_name", "MPI_Get_processor_name"))]
    pub fn mpi_ranks(&self) -> Vec<(u32, String)> {
        let mut ranks: Vec<(u32, String)> =
            self.stats().workers.into_iter().filter_map(|w| Some((w.mpi_rank?, w.host?))).collect();
        ranks.sort();
        ranks
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
