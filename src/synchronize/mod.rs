//! Shared state between processes (Python's `multiprocessing.synchronize`
//! and `sharedctypes`): locks, semaphores, events, and plain data in
//! shared memory. Each object is a small memfd that every holder maps, so
//! nothing is left in `/dev/shm`, and each travels to children in
//! `Process::new`'s or a pool initializer's argument as that fd.

mod barrier;
pub(crate) mod block;

/// The longest any wait here sleeps before it looks again: a process that
/// dies between changing shared state and waking its sleepers (or after
/// being woken, before acting on it) then delays the others by at most
/// this, instead of for ever.
pub(crate) const RECHECK: std::time::Duration = std::time::Duration::from_millis(500);
mod condition;
mod event;
mod lock;
mod semaphore;
mod value;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard, MAX_WAITERS};
pub use event::Event;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore};
pub use value::{Array, AtomicInt, AtomicValue, Value};
