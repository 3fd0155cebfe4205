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
//! argument and returning one value, both `Serialize + DeserializeOwned`.
//! Use a tuple for several arguments. A capturing closure is refused at
//! compile time (see [`Process`]).

mod codec;
pub mod connection;
mod context;
mod error;
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
pub use pool::{
    AsCompleted, AsyncResult, Calls, Done, IMap, IMapUnordered, Pool, PoolBuilder, ReturnWhen, StarFn, as_completed,
    wait,
};
pub use process::{Child, ParentProcess, Process, ProcessInfo, active_children, current_process, parent_process};
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
