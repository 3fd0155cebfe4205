//! Python's `multiprocessing`, for Rust: work in real OS processes behind
//! the API Python users know.
//!
//! ```
//! use multiproc::Process;
//!
//! fn square(n: u64) -> u64 {
//!     n * n
//! }
//!
//! let child = Process::new(square, 5).start()?; // a new OS process
//! assert_eq!(child.join()?, 25);                 // its return value
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! Why processes rather than threads: a crash (a segfault in a C library,
//! an abort, the OOM killer) takes down one child, not the program; a
//! child can be killed, so timeouts are hard; memory goes back to the OS
//! when a child exits; libraries with global state or no thread safety can
//! run in parallel; and untrusted input can be parsed in a separate address
//! space.
//!
//! # What it promises
//!
//! - A child that crashes gives an error with its exit code or signal; a
//!   panic comes back with its message and `file:line:column`.
//! - A child never outlives its parent's death by more than about a second,
//!   and never stays a zombie, even when its handle is dropped.
//! - Bad input (an argument that cannot be serialized, an oversized or
//!   corrupt frame, joining twice) gives a typed [`Error`], never a hang.
//!
//! # Start methods
//!
//! [`StartMethod::ForkServer`] (the default), [`StartMethod::Spawn`] and
//! [`StartMethod::Fork`], chosen per process ([`Process::start_method`]),
//! per context ([`get_context`]) or for the whole program
//! ([`set_start_method`]). Spawn and forkserver re-execute the program
//! itself; a constructor in this crate serves the child before `main`
//! runs, so no line needs adding to `main`, and it works the same in
//! binaries, examples, tests, benches and doctests.
//!
//! # Targets
//!
//! A target is a fn item, or a closure that captures nothing, taking one
//! argument and returning one value, both `Serialize + DeserializeOwned +
//! Send` ([`Target`], [`Message`]). Use a tuple for several arguments. A
//! capturing closure is refused at compile time (see [`Process`]).
//!
//! # Where to find what
//!
//! | Python's `multiprocessing` | here |
//! |---|---|
//! | `Process(target, args)`, `start`, `join`, `exitcode`, `terminate`, `kill`, `interrupt` (3.14) | [`Process`] builds one, [`Child`] is the started process |
//! | `current_process`, `parent_process`, `active_children`, `cpu_count` | [`current_process`], [`parent_process`], [`active_children`], [`cpu_count`] |
//! | `set_start_method`, `get_context` | [`StartMethod`], [`set_start_method`], [`get_context`], [`Context`] |
//! | `Pool`, `ProcessPoolExecutor` | [`Pool`] (with [`PoolBuilder`], [`Calls`]); results: [`AsyncResult`] (`callback=`, `error_callback=`, `add_done_callback`: its methods), [`IMap`], [`IMapUnordered`]; [`wait`], [`as_completed`]; what it is doing: [`PoolStats`], what a task used: [`TaskUsage`] |
//! | `Pipe`, `connection.Listener`, `Client`, `wait` | [`Pipe`], and the [`connection`] module |
//! | `Queue`, `SimpleQueue`, `JoinableQueue` | [`Queue`], [`SimpleQueue`], [`JoinableQueue`] |
//! | `Lock`, `RLock`, `Semaphore`, `Condition`, `Event`, `Barrier` | [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Condition`], [`Event`], [`Barrier`] |
//! | `Value`, `Array` (and the `Raw` kinds) | [`Value`], [`Array`], [`AtomicValue`] |
//! | `shared_memory.SharedMemory` | [`SharedMemory`] |
//! | what may be pickled | [`Message`]; a target is a [`Target`] |
//! | sockets and files in `args=` (`reduction.DupFd`, `send_handle`) | [`Handle`] |
//! | `Manager()`, `BaseManager`, `dict()`, `list()`, `Array()`, `Namespace()`, `Value()`, `Queue()`, `Lock()`, `RLock()`, `Condition()`, `Event()`, `Barrier()` proxies | [`Manager`], and the [`manager`] module |
//! | `BaseManager.register` (your own types in the server) | [`managed`], or [`Manager::create`] |
//! | billiard's `max_memory_per_child`, a hard memory cap, nested pools | [`PoolBuilder::max_memory_per_child`], [`PoolBuilder::memory_limit`], [`Process::memory_limit`], [`MemoryCap`], [`PoolBuilder::tokens`] |
//! | `log_to_stderr`, children's prints and logs in the parent | `log_to_stderr` and `ForwardingLogger` (feature `log`), [`PoolBuilder::forward_output`], [`Process::forward_output`] |
//! | mpi4py.futures' `MPIPoolExecutor` (feature `mpi`) | `Pool::builder().mpi()`, and the `mpi` module |
//! | exceptions | one [`Error`] with an [`ErrorKind`] |
//! | — | [`set_max_frame_size`]: the cap on any one message |
//!
//! # How the crate is laid out
//!
//! Each feature is a facade folder under `src/`: `process/`, `pool/`,
//! `connection/`, `queue/`, `synchronize/`, `shared_memory/`, `manager/`, plus
//! `context.rs`, `error.rs`, `handle.rs`, `logging.rs` and `target.rs`. Underneath them:
//! `runtime/` is how a child comes to exist and runs (the bootstrap that
//! serves before `main`, the start methods, the fork server, task identity,
//! the parent's records of its children); `codec/` turns values into
//! frames, with handles' fds beside the bytes; and `sys/` holds every
//! operating-system call, grouped by area. The README's "Architecture"
//! section draws the layers.
//! The hidden `fuzzing` module (feature `fuzzing`, off by default) feeds
//! bytes to the private wire decoders for the fuzz targets in `fuzz/`.
//!
//! # Unsafe code
//!
//! `unsafe_code` is denied for the whole package (`Cargo.toml`), and
//! allowed only in these places, each with a `// SAFETY:` line on every
//! block (a test, `tests/layout.rs`, checks that this list is complete):
//!
//! <!-- unsafe-allowed:start -->
//! - `src/sys/` — every operating-system call;
//! - `src/runtime/trampoline.rs` — a task id turned back into a function;
//! - `src/runtime/bootstrap.rs` — the constructor that runs before `main`;
//! - `src/codec/cast.rs` — `TypeId`-checked casts for the plain fast paths;
//! - `src/shared_memory/buf.rs` — `SharedMemory::buf` and `buf_mut`;
//! - `tests/common/counting_alloc.rs` — a counting global allocator;
//! - `tests/common/crash.rs` — a real segmentation fault, for the fault matrix;
//! - `benches/mp/raw.rs` — the bare `fork` + `waitpid` floor;
//! - `benches/mp/raw_shm.rs` — the shared-memory floors (a mapping, `fork`).
//! <!-- unsafe-allowed:end -->

mod codec;
pub mod connection;
mod context;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod logging;
pub mod manager;
#[cfg(feature = "mpi")]
pub mod mpi;
mod pool;
mod process;
mod queue;
mod runtime;
mod shared_memory;
mod synchronize;
mod sys;
mod target;

pub use bytemuck::Pod;
pub use codec::{DEFAULT_MAX_FRAME_SIZE, max_frame_size, set_max_frame_size};
pub use connection::Pipe;
pub use context::{
    Context, StartMethod, cpu_count, force_start_method, get_all_start_methods, get_context, get_start_method,
    set_start_method,
};
pub use error::{Error, ErrorKind, PanicInfo, Result};
pub use handle::Handle;
#[cfg(feature = "log")]
pub use logging::{ForwardingLogger, log_to_stderr};
pub use manager::Manager;
/// Makes a type's methods callable on a value that lives in a [`Manager`]'s
/// server (Python's `BaseManager.register(typeid, callable)`), on an
/// inherent `impl` block:
///
/// - each associated function that returns `Self` gains a twin with `_in`
///   added, which takes the manager first and makes the value in its
///   server: `Counter::new_in(&manager, 5)?` gives a
///   [`manager::CustomProxy<Counter>`];
/// - each `&self` or `&mut self` method becomes a method of the proxy,
///   through a trait named after the type (`CounterProxy`), returning a
///   [`Result`]: `counter.add(3)?`. It runs in the server, atomically.
///
/// Arguments and results travel (they are [`Message`]s); the type itself
/// never leaves the server and needs no serde. A panic in a method is that
/// call's [`ErrorKind::Panicked`], and the server goes on.
///
/// # Examples
///
/// ```
/// use multiproc::{Manager, Process, managed};
///
/// pub struct Counter {
///     n: i64,
/// }
///
/// #[managed]
/// impl Counter {
///     pub fn new(start: i64) -> Self {
///         Counter { n: start }
///     }
///     pub fn add(&mut self, by: i64) -> i64 {
///         self.n += by;
///         self.n
///     }
///     pub fn get(&self) -> i64 {
///         self.n
///     }
/// }
///
/// fn add_ten(counter: multiproc::manager::CustomProxy<Counter>) -> i64 {
///     counter.add(10).unwrap()
/// }
///
/// let manager = Manager::new()?;
/// let counter = Counter::new_in(&manager, 5)?;
/// assert_eq!(counter.add(1)?, 6);
/// assert_eq!(Process::new(add_ten, counter.clone()).start()?.join()?, 16);
/// assert_eq!(counter.get()?, 16);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// A method whose arguments or result do not travel does not compile:
///
/// ```compile_fail,E0277
/// use multiproc::managed;
/// pub struct Pipe;
/// pub struct NotSerde;
/// #[managed]
/// impl Pipe {
///     pub fn send(&mut self, what: NotSerde) {}
/// }
/// ```
#[doc(alias("register", "BaseManager.register"))]
pub use multiproc_macros::managed;
pub use pool::{
    AsCompleted, AsyncResult, Calls, Done, IMap, IMapUnordered, Pool, PoolBuilder, PoolStats, ReturnWhen, StarFn,
    TaskUsage, WorkerStats, as_completed, wait,
};
pub use process::{
    Child, MemoryCap, ParentProcess, Process, ProcessInfo, active_children, current_process, parent_process,
};
pub use queue::{JoinableQueue, Queue, SimpleQueue};
pub use shared_memory::SharedMemory;
pub use synchronize::{
    Array, AtomicInt, AtomicValue, Barrier, BoundedSemaphore, Condition, ConditionGuard, Event, Lock, LockGuard,
    MAX_WAITERS, RLock, RLockGuard, Semaphore, Value,
};
pub use target::{Message, Target};

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The migration guide's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/from-python.md")]
pub struct FromPythonDoctests;
