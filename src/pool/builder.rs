//! `PoolBuilder`: a pool's settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::Pool;
use super::dispatch::{Backend, Config, Shared};
use super::tokens;
use crate::codec;
use crate::context::{Context, StartMethod, cpu_count, get_start_method};
use crate::error::{Error, ErrorKind, Result};
use crate::process::MemoryCap;
use crate::runtime::{Task, TaskId};
use crate::target::{Message, Target};

/// The default cap on what an `imap` keeps in flight and unconsumed: the
/// encoded arguments of the chunks it sent and the results not taken yet.
const DEFAULT_IN_FLIGHT_BYTES: usize = 64 << 20;

/// Builds a [`Pool`] (Python's `Pool(processes, initializer, initargs,
/// maxtasksperchild, context)`, plus a default per-task timeout and a cap
/// on what `imap` keeps in flight).
///
/// # Examples
///
/// ```
/// use multiproc::{Pool, StartMethod};
/// use std::time::Duration;
///
/// fn hello(name: String) { eprintln!("worker {} ready for {name}", std::process::id()) }
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = Pool::builder()
///     .processes(2)
///     .initializer(hello, "the docs".to_string())
///     .maxtasksperchild(100)
///     .start_method(StartMethod::Fork)
///     .task_timeout(Duration::from_secs(60))
///     .build()?;
/// assert_eq!(pool.map(square, [1, 2, 3])?, [1, 4, 9]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "a PoolBuilder does nothing until build() is called"]
#[doc(alias("initializer", "initargs", "maxtasksperchild", "max_workers"))]
pub struct PoolBuilder {
    processes: Option<usize>,
    method: Option<StartMethod>,
    initializer: Option<Result<(TaskId, Arc<codec::Encoded>)>>,
    max_tasks: Option<u64>,
    max_memory: Option<u64>,
    memory_limit: Option<u64>,
    memory_cap: Option<MemoryCap>,
    track_usage: bool,
    forward_output: bool,
    tokens: tokens::Tokens,
    task_timeout: Option<Duration>,
    max_in_flight: Option<usize>,
    max_in_flight_bytes: Option<usize>,
    backend: Backend,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("start_method", &self.method)
            .field("initializer", &self.initializer.is_some())
            .field("maxtasksperchild", &self.max_tasks)
            .field("max_memory_per_child", &self.max_memory)
            .field("memory_limit", &self.memory_limit)
            .field("memory_cap", &self.memory_cap)
            .field("track_usage", &self.track_usage)
            .field("forward_output", &self.forward_output)
            .field("tokens", &self.tokens)
            .field("task_timeout", &self.task_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_in_flight_bytes", &self.max_in_flight_bytes)
            .field("backend", &self.backend)
            .finish()
    }
}

impl PoolBuilder {
    pub(crate) fn new() -> Self {
        PoolBuilder {
            processes: None,
            method: None,
            initializer: None,
            max_tasks: None,
            max_memory: None,
            memory_limit: None,
            memory_cap: None,
            track_usage: false,
            forward_output: false,
            tokens: tokens::Tokens::Shared,
            task_timeout: None,
            max_in_flight: None,
            max_in_flight_bytes: None,
            backend: Backend::Local,
        }
    }

    /// The number of workers; the default is [`cpu_count()`](crate::cpu_count).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = multiproc::Pool::builder().processes(3).build()?;
    /// assert_eq!(pool.processes(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn processes(mut self, processes: usize) -> Self {
        self.processes = Some(processes);
        self
    }

    /// Runs `f(arg)` once in every worker before its first task,
    /// replacements included. If it panics or fails, the pool is broken:
    /// every task fails with [`ErrorKind::BrokenPool`], instead of workers
    /// being replaced forever.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    /// fn bad_init(_: ()) { panic!("no config file") }
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = Pool::builder().processes(1).initializer(bad_init, ()).build()?;
    /// let err = pool.apply(one, ()).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::BrokenPool);
    /// assert!(err.to_string().contains("no config file"));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn initializer<F: Target<A, ()>, A: Message>(mut self, f: F, arg: A) -> Self {
        self.initializer = Some(
            codec::encode_with_fds(&arg, "the initializer's argument")
                .map(|arg| (Task::of::<F, A, ()>(f).id(), Arc::new(arg))),
        );
        self
    }

    /// Replaces each worker after it has run this many tasks (chunks), to
    /// give memory back (Python's `maxtasksperchild`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn pid(_: u32) -> u32 { std::process::id() }
    /// let pool = Pool::builder().processes(1).maxtasksperchild(1).build()?;
    /// let pids = pool.chunksize(1).map(pid, 0..3)?;
    /// assert!(pids[0] != pids[1] && pids[1] != pids[2]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn maxtasksperchild(mut self, tasks: u64) -> Self {
        self.max_tasks = Some(tasks);
        self
    }

    /// Replaces a worker whose resident memory (RSS, from
    /// `/proc/self/statm`) is above `bytes` after a task (a chunk): it
    /// sends that task's results, leaves, and what it had not started goes
    /// to another worker; no task fails (celery/billiard's
    /// `max_memory_per_child`). A soft cap, checked between tasks: a task
    /// that allocates too much still runs to its end.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn hog(mib: usize) -> u32 {
    ///     // Keeps 64 MiB, touched, for the rest of the worker's life.
    ///     Box::leak(vec![1u8; mib << 20].into_boxed_slice());
    ///     std::process::id()
    /// }
    /// let pool = Pool::builder().processes(1).max_memory_per_child(48 << 20).build()?;
    /// let pids = pool.chunksize(1).map(hog, [64, 64])?;
    /// assert_ne!(pids[0], pids[1], "the first worker went over 48 MiB and was replaced");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("worker_max_memory_per_child"))]
    pub fn max_memory_per_child(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// A hard cap: each worker's tasks may allocate at most `bytes` more
    /// than the worker holds when it starts. A task whose allocation would
    /// go past it fails alone with [`ErrorKind::MemoryExceeded`]
    /// ([`Error::memory`](crate::Error::memory) has the limit and the
    /// worker's peak), its worker is replaced, and the other tasks go on
    /// (Ray's and Dask's memory-based worker kills, per task).
    ///
    /// The mechanism is [`MemoryCap::detect`]'s unless
    /// [`memory_cap`](PoolBuilder::memory_cap) chooses: a memory cgroup of
    /// its own per worker where this process may make one (the kernel's
    /// OOM killer ends the worker, and the group's `oom_kill` count tells
    /// the pool why), else `RLIMIT_DATA` (the allocator gets `ENOMEM`, Rust
    /// aborts the worker, and the worker's abort handler notes it in its
    /// status page so that the pool can tell it from any other crash). The
    /// error's message names the mechanism. Either way the limit counts
    /// from the worker's start, because a fork child starts with its
    /// parent's heap. Under `RLIMIT_DATA`, workers run with
    /// `RUST_BACKTRACE=0` (a backtrace printed on the refused allocation
    /// would hide its cause) and memory outside the data limit (files
    /// mapped shared, `SharedMemory`) is not capped. MPI ranks always use
    /// `RLIMIT_DATA`.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    /// fn hog(mib: usize) -> usize { vec![1u8; mib << 20].len() }
    /// let pool = Pool::builder().processes(1).memory_limit(64 << 20).build()?;
    /// assert_eq!(pool.apply(hog, 8)?, 8 << 20);
    /// let err = pool.apply(hog, 256).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::MemoryExceeded);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("RLIMIT_DATA", "memory.max", "MemoryError"))]
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// The mechanism behind [`memory_limit`](PoolBuilder::memory_limit);
    /// the default is [`MemoryCap::detect`]. Asking for
    /// [`MemoryCap::Cgroup`] where this process cannot make cgroups makes
    /// `build()` fail with [`ErrorKind::Unsupported`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, MemoryCap, Pool};
    /// fn hog(mib: usize) -> usize { vec![1u8; mib << 20].len() }
    /// let pool = Pool::builder().processes(1).memory_limit(64 << 20).memory_cap(MemoryCap::Rlimit).build()?;
    /// let err = pool.apply(hog, 256).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::MemoryExceeded);
    /// assert!(err.to_string().contains("RLIMIT_DATA"));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("cgroup", "RLIMIT_DATA"))]
    pub fn memory_cap(mut self, cap: MemoryCap) -> Self {
        self.memory_cap = Some(cap);
        self
    }

    /// The workers' start method; the default is the process-wide one.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Pool, StartMethod};
    /// let pool = Pool::builder().processes(1).start_method(StartMethod::Spawn).build()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// The start method of `context` (Python's `context=`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Pool, StartMethod};
    /// let ctx = multiproc::get_context(StartMethod::Fork);
    /// let pool = Pool::builder().processes(1).context(ctx).build()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn context(self, context: Context) -> Self {
        self.start_method(context.start_method())
    }

    /// A timeout for every task, unless a call sets its own (see
    /// [`Pool::timeout`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    /// use std::time::Duration;
    /// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
    /// let pool = Pool::builder().processes(1).task_timeout(Duration::from_millis(100)).build()?;
    /// assert_eq!(pool.apply(nap, 60_000).unwrap_err().kind(), ErrorKind::Timeout);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// The most chunks an `imap` keeps submitted but not yet consumed (the
    /// default is 64 per worker, at least 256).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn id(x: u64) -> u64 { x }
    /// let pool = Pool::builder().processes(1).max_in_flight(4).build()?;
    /// assert_eq!(pool.imap(id, 0..100)?.count(), 100);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn max_in_flight(mut self, chunks: usize) -> Self {
        self.max_in_flight = Some(chunks);
        self
    }

    /// The most bytes an `imap` keeps in flight and unconsumed: the encoded
    /// arguments of the chunks it has sent and the encoded results not
    /// taken yet (the default is 64 MiB). Whichever of this and
    /// [`max_in_flight`](PoolBuilder::max_in_flight) comes first stops it
    /// from reading more input until the consumer catches up; at least one
    /// chunk is always in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn len(v: Vec<u8>) -> usize { v.len() }
    /// let pool = Pool::builder().processes(1).max_in_flight_bytes(1 << 20).build()?;
    /// let big = (0..20).map(|_| vec![0u8; 256 << 10]);
    /// assert_eq!(pool.imap(len, big)?.count(), 20);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn max_in_flight_bytes(mut self, bytes: usize) -> Self {
        self.max_in_flight_bytes = Some(bytes);
        self
    }

    /// Runs the workers on the other ranks of the MPI job this program was
    /// started in (`mpirun -np N ./app`: rank 0 runs `main`, ranks 1 to
    /// N−1 serve as workers), instead of child processes: mpi4py.futures'
    /// `MPIPoolExecutor` in its static mode. The pool is the same `Pool`,
    /// with every method; [`processes`](PoolBuilder::processes) defaults to
    /// N−1, one worker per rank. See [`crate::mpi`] for what differs (no
    /// per-task timeouts or kills: a rank cannot be killed without ending
    /// the job).
    ///
    /// # Errors
    ///
    /// At [`build`](PoolBuilder::build): [`ErrorKind::InvalidState`] when
    /// the program was not started by `mpirun` with at least 2 ranks (the
    /// message says how to start it), or is not rank 0;
    /// [`ErrorKind::BuildMismatch`] when a rank runs another build of the
    /// program (it names the host); [`ErrorKind::InvalidInput`] for more
    /// processes than free ranks, or a task timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// match Pool::builder().mpi().build() {
    ///     Ok(pool) => assert_eq!(pool.map(square, [1, 2, 3])?, [1, 4, 9]),
    ///     // Not started by `mpirun -np N` with N >= 2, as in this doctest.
    ///     Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidState),
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[cfg(feature = "mpi")]
    #[doc(alias("MPIPoolExecutor", "mpi4py.futures"))]
    pub fn mpi(mut self) -> Self {
        self.backend = Backend::Mpi;
        self
    }

    /// The token budget its workers share (GNU make's jobserver): each
    /// worker takes a token to run a chunk, and a task that waits for a
    /// pool of its own gives its token back while it waits. By default a
    /// top-level pool makes a budget of `max(processes, cpu_count())`
    /// tokens (independent pools do not hold each other back), and every
    /// pool created inside its tasks (and theirs) shares it, so nested pools
    /// never have more busy workers than that in total (Python forbids pools inside pool
    /// workers instead: "daemonic processes are not allowed to have
    /// children"). `Some(n)` gives this pool a budget of its own, of `n`
    /// tokens, that its nested pools share (65,536 at most: more are as
    /// good as no limit); `None` takes it out of any budget. A worker
    /// that dies holding a token, however it dies, has it given back by
    /// its pool.
    ///
    /// # Errors
    ///
    /// At [`build`](PoolBuilder::build): [`ErrorKind::InvalidInput`] for
    /// `Some(0)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn inner(n: u64) -> u64 {
    ///     // A pool inside a task: it shares the outer pool's budget.
    ///     let pool = Pool::new(2).unwrap();
    ///     pool.map(|x: u64| x * x, 0..n).unwrap().iter().sum()
    /// }
    /// let outer = Pool::builder().processes(2).build()?;
    /// assert_eq!(outer.map(inner, [3, 4])?, [5, 14]);
    /// let free = Pool::builder().processes(2).tokens(None).build()?;
    /// assert_eq!(free.apply(inner, 3)?, 5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("jobserver", "daemonic processes are not allowed to have children"))]
    pub fn tokens(mut self, budget: Option<u32>) -> Self {
        self.tokens = match budget {
            None => tokens::Tokens::Off,
            Some(n) => tokens::Tokens::Own(n),
        };
        self
    }

    /// Sends what the workers write to stdout and stderr to the parent's
    /// stdout and stderr, each line tagged with the worker's name and pid
    /// (`[ForkPoolWorker-1 4242] ...`), through one reader thread in the
    /// parent that writes whole lines only, so that the workers' lines never
    /// mix within a line (Python's `log_to_stderr()` for a pool's
    /// workers). What the workers print goes where the parent's output
    /// goes, a file or a pipe included.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn hello(i: u32) -> u32 { println!("hello from task {i}"); i }
    /// let pool = Pool::builder().processes(2).forward_output().build()?;
    /// // Prints "[ForkPoolWorker-1 4242] hello from task 0" and so on.
    /// assert_eq!(pool.map(hello, 0..4)?, [0, 1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("log_to_stderr", "get_logger"))]
    pub fn forward_output(mut self) -> Self {
        self.forward_output = true;
        self
    }

    /// Measures each task's CPU time and its worker's peak resident memory
    /// while it ran ([`AsyncResult::usage`](crate::AsyncResult::usage)), to
    /// find the task that eats CPU or memory. It adds work to every chunk
    /// (two clock reads, and a write and a read of `/proc/self` files), so
    /// it is off unless asked for.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn grow(mib: usize) -> usize { vec![1u8; mib << 20].len() }
    /// let pool = Pool::builder().processes(1).track_usage().build()?;
    /// let small = pool.apply_async(grow, 1)?;
    /// let big = pool.apply_async(grow, 64)?;
    /// small.wait();
    /// big.wait();
    /// let (small, big) = (small.usage().unwrap(), big.usage().unwrap());
    /// assert!(big.peak_rss > small.peak_rss + (32 << 20));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("getrusage", "resource_usage"))]
    pub fn track_usage(mut self) -> Self {
        self.track_usage = true;
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for 0 processes, `maxtasksperchild` 0,
    /// `max_in_flight` 0, or an initializer argument that does not
    /// serialize; the errors of starting a process.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    /// let err = Pool::builder().maxtasksperchild(0).build().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn build(self) -> Result<Pool> {
        let processes = match self.backend {
            Backend::Local => self.processes.unwrap_or_else(cpu_count),
            #[cfg(feature = "mpi")]
            Backend::Mpi => {
                if self.task_timeout.is_some() {
                    return Err(super::dispatch::untimed_backend());
                }
                crate::mpi::worker_ranks(self.processes)?
            }
        };
        if processes == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a pool needs at least 1 process (Python: 'Number of processes must be at least 1'); pass 1 or more, \
                 or leave it to cpu_count()",
            ));
        }
        if self.max_tasks == Some(0) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "maxtasksperchild must be at least 1, as in Python; leave it unset for workers that live as long as \
                 the pool",
            ));
        }
        if self.tokens == tokens::Tokens::Own(0) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a token budget of 0 would let no worker run; give at least 1, or None for no budget",
            ));
        }
        if self.memory_limit == Some(0) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "memory_limit must be at least 1 byte; leave it unset for workers without a cap",
            ));
        }
        if self.max_memory == Some(0) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "max_memory_per_child must be at least 1 byte; leave it unset for workers whose memory is not watched",
            ));
        }
        if self.max_in_flight == Some(0) {
            return Err(Error::new(ErrorKind::InvalidInput, "max_in_flight must be at least 1 chunk"));
        }
        if self.max_in_flight_bytes == Some(0) {
            return Err(Error::new(ErrorKind::InvalidInput, "max_in_flight_bytes must be at least 1 byte"));
        }
        if self.task_timeout == Some(Duration::ZERO) {
            return Err(zero_timeout());
        }
        let initializer = self.initializer.transpose()?;
        let (budget, memory_cap) = match self.backend {
            Backend::Local => {
                let cap = self.memory_limit.map(|_| MemoryCap::resolve(self.memory_cap)).transpose()?;
                (tokens::for_pool(self.tokens, processes)?, cap.unwrap_or(MemoryCap::Rlimit))
            }
            #[cfg(feature = "mpi")]
            Backend::Mpi => (None, MemoryCap::Rlimit),
        };
        let config = Config {
            processes,
            method: self.method.unwrap_or_else(get_start_method),
            initializer,
            max_tasks: self.max_tasks,
            max_memory: self.max_memory,
            memory_limit: self.memory_limit,
            memory_cap,
            track_usage: self.track_usage,
            forward_output: self.forward_output,
            tokens: budget,
            task_timeout: self.task_timeout,
            max_in_flight: self.max_in_flight.unwrap_or((processes * 64).max(256)),
            max_in_flight_bytes: self.max_in_flight_bytes.unwrap_or(DEFAULT_IN_FLIGHT_BYTES),
            backend: self.backend,
        };
        Ok(Pool { shared: Shared::start(config)? })
    }
}

/// The error for a task timeout of zero, which no task could meet.
pub(crate) fn zero_timeout() -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        "a task timeout of zero would stop every task before it starts; give a positive duration, or no timeout",
    )
}
