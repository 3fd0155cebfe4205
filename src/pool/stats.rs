//! `Pool::stats`: what the pool is doing, read from its queue and its
//! workers' status pages (no message to any worker).

use std::time::Duration;

/// What a pool is doing: its tasks by state, and its workers
/// ([`Pool::stats`](crate::Pool::stats)). A task here is one item (one
/// call of the target): a `map` of 1,000 items is 1,000 tasks.
///
/// # Examples
///
/// ```
/// use multiproc::Pool;
/// fn square(x: u64) -> u64 { x * x }
/// let pool = Pool::new(2)?;
/// pool.map(square, 0..100)?;
/// let stats = pool.stats();
/// assert_eq!(stats.done, 100);
/// assert_eq!((stats.queued, stats.running, stats.failed, stats.cancelled), (0, 0, 0, 0));
/// assert_eq!(stats.workers.len(), 2);
/// assert_eq!(stats.workers.iter().map(|w| w.tasks_run).sum::<u64>(), 100);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Tasks waiting to start: in the pool's queue, or sent to a worker
    /// that has not started them yet.
    pub queued: u64,
    /// Tasks running now.
    pub running: u64,
    /// Tasks that returned a value.
    pub done: u64,
    /// Tasks that failed: a panic, an error, a lost worker, a timeout, a
    /// terminated pool.
    pub failed: u64,
    /// Tasks cancelled or killed before they finished.
    pub cancelled: u64,
    /// The workers, in the order they were started.
    pub workers: Vec<WorkerStats>,
}

/// What a task used in its worker, for a pool built with
/// [`track_usage`](crate::PoolBuilder::track_usage): from
/// [`AsyncResult::usage`](crate::AsyncResult::usage). For a call of many
/// chunks (`map_async`), the CPU times add up and the peak is the largest.
///
/// # Examples
///
/// ```
/// use multiproc::Pool;
/// fn spin(n: u64) -> u64 { (0..n).fold(0u64, |a, x| a.wrapping_add(x * x)) }
/// let pool = Pool::builder().processes(1).track_usage().build()?;
/// let r = pool.apply_async(spin, 1_000_000)?;
/// r.wait();
/// let usage = r.usage().expect("measured");
/// assert!(usage.peak_rss > 0);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskUsage {
    /// The CPU time its worker thread spent on it
    /// (`CLOCK_THREAD_CPUTIME_ID`).
    pub cpu_time: Duration,
    /// The worker's peak resident memory while it ran, in bytes (`VmHWM`,
    /// reset before each chunk).
    pub peak_rss: u64,
}

/// One pool worker, as [`PoolStats`] shows it.
///
/// # Examples
///
/// ```
/// use multiproc::Pool;
/// fn pid(_: ()) -> u32 { std::process::id() }
/// let pool = Pool::new(1)?;
/// let worker_pid = pool.apply(pid, ())?;
/// let w = &pool.stats().workers[0];
/// assert_eq!(w.pid, worker_pid);
/// assert!(w.name.contains("PoolWorker"));
/// assert_eq!(w.tasks_run, 1);
/// assert!(w.current_task_age.is_none(), "idle");
/// assert!(w.rss_bytes.is_some_and(|rss| rss > 0));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Its process id.
    pub pid: u32,
    /// Its name (`ForkServerPoolWorker-3`, as Python names pool workers).
    pub name: String,
    /// Tasks it has finished.
    pub tasks_run: u64,
    /// How long the task it runs now has been running, as first seen by
    /// the pool (`None` when it is idle); at most the time since that task
    /// began.
    pub current_task_age: Option<Duration>,
    /// Its resident memory in bytes (`/proc/<pid>/statm`), if it could be
    /// read.
    pub rss_bytes: Option<u64>,
    /// Its MPI rank, for a worker of an MPI pool (feature `mpi`); `None`
    /// for a local worker.
    pub mpi_rank: Option<u32>,
    /// The host its MPI rank runs on; `None` for a local worker.
    pub host: Option<String>,
}
